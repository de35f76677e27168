//! capwatch entry point: parses the command line, wires the parts together, and is the
//! only place that turns errors into exit codes (0 ok, 1 failure, 2 bad usage or config).

use std::process::ExitCode;

use anyhow::Context;
use clap::{CommandFactory, Parser};

use capwatch::cli::{Cli, Command, ServeArgs};
use capwatch::{server, shutdown, telemetry};

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Some(Command::Serve(args)) => serve(&args),
        None => {
            // The dashboard is not built yet; until then `capwatch` explains what exists.
            if Cli::command().print_help().is_err() {
                return ExitCode::from(2);
            }
            ExitCode::from(2)
        }
    }
}

fn serve(args: &ServeArgs) -> ExitCode {
    telemetry::init(args.log_format);
    let config = match args.resolve_config() {
        Ok(config) => config,
        Err(err) => {
            eprintln!("error: {err}");
            return ExitCode::from(2);
        }
    };
    match run_server(config) {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("error: {err:#}");
            ExitCode::FAILURE
        }
    }
}

fn run_server(config: capwatch::config::Config) -> anyhow::Result<()> {
    let runtime =
        tokio::runtime::Builder::new_multi_thread().enable_all().build().context("cannot start the async runtime")?;
    runtime.block_on(async move {
        let service = config.service;
        let address = format!("{}:{}", service.host, service.port);
        let listener =
            tokio::net::TcpListener::bind(&address).await.with_context(|| format!("cannot listen on {address}"))?;
        let local = listener.local_addr().context("listener has no address")?;
        tracing::info!(
            url = %format!("http://{local}"),
            model_dir = %service.model_dir.display(),
            "capwatch serve listening (docs at /docs)"
        );
        let stop = async {
            let signal = shutdown::signal().await;
            tracing::info!(signal, "stopping");
        };
        server::run(service, listener, stop).await?;
        tracing::info!("server stopped cleanly");
        Ok(())
    })
}
