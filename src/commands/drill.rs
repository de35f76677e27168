//! `capwatch drill`: rehearse every alert against a chaos-enabled child server, and report
//! what fired, repeated, resolved and restarted within its bounds. Exit code 0 when
//! everything held, 1 otherwise, 2 for a bad config.

use std::process::ExitCode;

use tokio::runtime::Runtime;

use super::CliError;
use super::dashboard::child_command;
use super::monitor::start_logs;
use crate::cli::DrillArgs;
use crate::clock::Clock;
use crate::dash::app::{self, StopAfter};
use crate::dash::console::Mode;
use crate::dash::drill::{self, Conductor, DrillReport};
use crate::dash::target::Target;
use crate::shutdown;

pub fn run(args: &DrillArgs, runtime: &Runtime) -> Result<ExitCode, CliError> {
    let base = args.serve.resolve_config()?;
    let faults = if args.faults.is_empty() { drill::ALL_FAULTS.to_vec() } else { args.faults.clone() };
    let plan = drill::plan(&base, &faults);
    let config = plan.config.clone();
    start_logs(&config, Mode::Headless)?;
    println!("{}", plan.describe());
    let target = Target::Child(child_command(&config)?);
    let sinks = config.alerts.sinks.0.iter().map(|sink| sink.name.clone()).collect();
    let started = Clock::read();
    let steps = runtime
        .block_on(async {
            let mut conductor =
                Conductor::new(plan.steps.clone(), plan.timings.clone(), sinks, tokio::time::Instant::now());
            let stop_after = StopAfter { cycles: None, duration: Some(plan.time_limit()) };
            let end =
                app::run_with(config, target, stop_after, shutdown::signal(), Mode::Headless, &mut conductor).await;
            end.map(|_| conductor.results())
        })
        .map_err(|err| CliError::coded(err.exit_code(), err))?;
    let elapsed = Clock::read().now.saturating_duration_since(started.now);
    let report = DrillReport::new(&plan.timings, steps, started.timestamp(), elapsed);
    println!();
    print!("{}", report.markdown());
    if let Some(path) = &args.report {
        match std::fs::write(path, report.file_text(path)) {
            Ok(()) => println!("\nReport written to {}", path.display()),
            Err(err) => eprintln!("error: cannot write {}: {err}", path.display()),
        }
    }
    Ok(if report.passed() { ExitCode::SUCCESS } else { ExitCode::FAILURE })
}
