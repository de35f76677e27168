//! `capwatch alert-test`: one test notification to every configured sink, and what each said.
//! Exit code 0 when every sink took it, 1 otherwise, 2 when none is configured.

use std::path::Path;
use std::process::ExitCode;

use tokio::runtime::Runtime;

use super::{CliError, load_config};
use crate::notify::{self, DeliveryOutcome, Sink};

pub fn run(config_path: &Path, runtime: &Runtime) -> Result<ExitCode, CliError> {
    let config = load_config(config_path)?;
    let sinks = Sink::resolve_all(&config.alerts.sinks.0, &|var| std::env::var(var).ok())
        .map_err(|err| CliError::Usage(err.to_string()))?;
    if sinks.is_empty() {
        return Err(CliError::Usage(format!(
            "no alert sinks are configured (alerts.sinks in {})",
            config_path.display()
        )));
    }
    let delivery = &config.alerts.delivery;
    println!(
        "Sending a test notification to {} sink(s) (timeout {:.1} s, up to {} attempts each)…",
        sinks.len(),
        delivery.timeout_s.0.as_secs_f64(),
        delivery.max_attempts
    );
    let outcomes = runtime
        .block_on(notify::send_test(&sinks, &config.alerts, &config.service.model_name()))
        .map_err(|err| CliError::coded(err.exit_code(), err))?;
    for (sink, outcome) in sinks.iter().zip(&outcomes) {
        println!("{}", notify::test_outcome_line(sink, outcome));
    }
    let failed = outcomes.iter().filter(|outcome| !matches!(outcome, DeliveryOutcome::Delivered { .. })).count();
    if failed == 0 {
        println!("All {} sink(s) took the test notification.", sinks.len());
        Ok(ExitCode::SUCCESS)
    } else {
        println!("{failed} of {} sink(s) failed.", sinks.len());
        Ok(ExitCode::FAILURE)
    }
}
