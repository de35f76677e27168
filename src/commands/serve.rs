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
    raise_open_files_limit(service.limits.max_connections.get());
    let address = format!("{}:{}", service.host, service.port);
    let listener = tokio::net::TcpListener::bind(&address)
        .await
        .map_err(|err| CliError::coded(exit_code::ADDRESS, format!("cannot listen on {address}: {err}")))?;
    let local = listener.local_addr().map_err(|err| CliError::Failed(format!("listener has no address: {err}")))?;
    tracing::info!(
        url = %format!("{}://{local}", if service.tls.is_some() { "https" } else { "http" }),
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

/// Lifts the soft limit on open files to the hard one (as Go's runtime and nginx's
/// `worker_rlimit_nofile` do), so that `service.limits.max_connections` is not cut short by a
/// 1,024 default; warns when even the hard limit is below what the connections need.
fn raise_open_files_limit(max_connections: usize) {
    use nix::sys::resource::{Resource, getrlimit, setrlimit};
    let Ok((soft, hard)) = getrlimit(Resource::RLIMIT_NOFILE) else { return };
    // An unlimited hard limit is not a valid soft one for files (the kernel caps it at nr_open).
    let target = hard.min(1 << 20);
    if soft < target
        && let Err(err) = setrlimit(Resource::RLIMIT_NOFILE, target, hard)
    {
        tracing::debug!(error = %err, "cannot raise the open-files limit");
    }
    let limit = getrlimit(Resource::RLIMIT_NOFILE).map_or(soft, |(soft, _)| soft);
    // The model, logs and listener need some files of their own.
    let needed = max_connections as u64 + 64;
    if limit < needed {
        tracing::warn!(
            open_files_limit = limit,
            max_connections,
            "the open-files limit is below service.limits.max_connections: accepting fails beyond it (raise `ulimit -n`)"
        );
    }
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
