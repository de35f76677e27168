//! `capwatch monitor --url URL …`: watch servers that are already running (no child), and the
//! session runner that the dashboard shares: logs, the monitoring loop, the summary at the
//! end. Exit code 0 when no alert fired, 1 when only warnings did, 2 when a critical one did.

use std::process::ExitCode;

use tokio::runtime::Runtime;

use super::{CliError, load_config};
use crate::cli::{MonitorArgs, RunArgs};
use crate::config::Config;
use crate::dash::app::{self, StopAfter};
use crate::dash::console::Mode;
use crate::dash::fleet::Companion;
use crate::dash::target::{Target, Watched};
use crate::{shutdown, telemetry};

pub fn run(args: &MonitorArgs, runtime: &Runtime) -> Result<ExitCode, CliError> {
    let mut config = load_config(&args.config)?;
    if let Some(preset) = args.service_preset {
        config.monitoring.service.preset = preset;
    }
    if args.chaos {
        config.service.chaos = true;
    }
    if let Some(ca_file) = &args.ca_file {
        config.monitoring.ca_file = Some(ca_file.clone());
    }
    if let Some(source) = &args.discover {
        config.monitoring.discovery.source = Some(source.clone());
    }
    let discovering = config.monitoring.discovery.source.is_some();
    let watched = Watched::resolve(&args.url, &config.monitoring.targets, discovering).map_err(CliError::Usage)?;
    watch(&args.run, config, Target::Urls(watched), runtime)
}

/// Starts the monitor's log file (no console logging under the terminal UI).
pub(super) fn start_logs(config: &Config, mode: Mode) -> Result<(), CliError> {
    telemetry::init_monitor(&config.logs.dir, &config.logs.log_file, mode == Mode::Tui)
        .map_err(|err| CliError::Failed(err.to_string()))
}

/// One monitoring session of `target` until it stops; prints its summary.
pub(super) fn watch(run: &RunArgs, config: Config, target: Target, runtime: &Runtime) -> Result<ExitCode, CliError> {
    watch_with(run, config, target, runtime, &mut ()).map(ExitCode::from)
}

/// [`watch`], with a companion (the demo's director) riding along the loop; returns the
/// session's exit code (0 no alert fired, 1 only warnings, 2 a critical one).
pub(super) fn watch_with(
    run: &RunArgs,
    mut config: Config,
    target: Target,
    runtime: &Runtime,
    companion: &mut dyn Companion,
) -> Result<u8, CliError> {
    if let Some(address) = &run.metrics_listen {
        config.prometheus.listen = Some(address.clone());
    }
    let mode = if run.headless { Mode::Headless } else { Mode::Tui };
    start_logs(&config, mode)?;
    let stop_after = StopAfter { cycles: run.cycles, duration: run.duration };
    let end = runtime
        .block_on(app::run_with(config, target, stop_after, shutdown::signal(), mode, companion))
        .map_err(|err| CliError::coded(err.exit_code(), err))?;
    println!();
    if let Some(summary) = &end.summary {
        print!("{}", summary.markdown());
    }
    if let Some((json, markdown)) = &end.summary_paths {
        println!("\nSummary written to {} and {}", json.display(), markdown.display());
    }
    if let Some(report) = &end.report_path {
        println!("Report with charts: {}", report.display());
    }
    if let Some(wrong_shape) = &end.wrong_shape {
        eprintln!("error: {wrong_shape}");
    }
    Ok(end.exit_code())
}
