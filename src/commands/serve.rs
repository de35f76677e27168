//! `capwatch serve`: the captioning server alone. Its exit code tells the supervisor whether a
//! restart can help (`crate::exit_code`): 3 model, 4 ONNX Runtime, 5 address, 2 config, 1
//! anything else.

use std::process::ExitCode;

use tokio::runtime::Runtime;

use super::CliError;
use crate::cli::ServeArgs;
use crate::config::ServiceConfig;
use crate::{exit_code, server, shutdown, telemetry};

pub fn run(args: &ServeArgs, runtime: &Runtime) -> Result<ExitCode, CliError> {
    telemetry::init(args.log_format);
    let config = args.resolve_config()?;
    runtime.block_on(serve(config.service))?;
    Ok(ExitCode::SUCCESS)
}

async fn serve(service: ServiceConfig) -> Result<(), CliError> {
    let address = format!("{}:{}", service.host, service.port);
    let listener = tokio::net::TcpListener::bind(&address)
        .await
        .map_err(|err| CliError::coded(exit_code::ADDRESS, format!("cannot listen on {address}: {err}")))?;
    let local = listener.local_addr().map_err(|err| CliError::Failed(format!("listener has no address: {err}")))?;
    tracing::info!(
        url = %format!("http://{local}"),
        model_dir = %service.model_dir.display(),
        "capwatch serve listening (docs at /docs)"
    );
    let stop = async {
        let signal = shutdown::signal().await;
        tracing::info!(signal, "stopping");
    };
    server::run(service, listener, stop).await.map_err(|err| CliError::coded(err.exit_code(), with_causes(&err)))?;
    tracing::info!("server stopped cleanly");
    Ok(())
}

/// `err` and each error that caused it, joined by `: `.
fn with_causes(err: &dyn std::error::Error) -> String {
    let mut text = err.to_string();
    let mut source = err.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}
