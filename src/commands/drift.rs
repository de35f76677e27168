//! `capwatch drift baseline|status|traffic --url URL`: freeze a server's drift reference,
//! read its verdict, or send it scenes (stable or shifted) to watch the verdict move.

use std::process::ExitCode;

use tokio::runtime::Runtime;

use super::{CliError, http_call};
use crate::cli::{DriftCommand, ExpectDrift, TrafficArgs};
use crate::protocol::drift::DriftStatus;
use crate::traffic::{self, TrafficPlan};

pub fn run(command: &DriftCommand, runtime: &Runtime) -> Result<ExitCode, CliError> {
    let client = |ca_file: &Option<std::path::PathBuf>| {
        crate::http_client::for_capwatch(ca_file.as_deref())
            .and_then(|builder| builder.build().map_err(|err| format!("cannot build an HTTP client: {err}")))
            .map_err(CliError::Usage)
    };
    let base = |url: &str| url.trim_end_matches('/').to_owned();
    let unexpected =
        |url: &str, err: serde_json::Error| CliError::Failed(format!("unexpected answer from {url}: {err}"));
    match command {
        DriftCommand::Traffic(args) => runtime.block_on(send_traffic(args)),
        DriftCommand::Baseline { url, ca_file } => {
            let info = runtime.block_on(traffic::freeze_reference(url, ca_file.as_deref())).map_err(cli_error)?;
            println!("{info}");
            Ok(ExitCode::SUCCESS)
        }
        DriftCommand::Status { url, ca_file } => {
            let body = runtime.block_on(http_call(client(ca_file)?.get(format!("{}/drift", base(url))), url))?;
            let drift: DriftStatus = serde_json::from_str(&body).map_err(|err| unexpected(url, err))?;
            print!("{}", drift.table());
            Ok(match &drift.report {
                None => ExitCode::from(2),
                Some(report) if report.detected => ExitCode::FAILURE,
                Some(_) => ExitCode::SUCCESS,
            })
        }
    }
}

/// Scenes to a local server, with a line per drift check.
async fn send_traffic(args: &TrafficArgs) -> Result<ExitCode, CliError> {
    let plan = TrafficPlan {
        url: args.url.clone(),
        shift: args.shift,
        requests: args.requests,
        concurrency: args.concurrency,
        seed: args.seed,
        check_every: Some(if args.check_every == 0 { args.requests } else { args.check_every }),
        ca_file: args.ca_file.clone(),
    };
    println!("Sending {} {} scenes to {} ({} at a time)", plan.requests, plan.shift.name(), plan.url, plan.concurrency);
    let outcome = traffic::send(&plan, |check| println!("{check}")).await.map_err(cli_error)?;
    println!("{outcome}");
    let last = outcome.checks.last().and_then(|c| c.detected);
    let expected = match args.expect {
        None => true,
        Some(ExpectDrift::Drift) => last == Some(true),
        Some(ExpectDrift::None) => outcome.checks.iter().all(|c| c.detected == Some(false)),
    };
    if !expected {
        let said = match last {
            None => "there is no reference",
            Some(true) => "drift",
            Some(false) => "no drift",
        };
        eprintln!("error: expected {:?}, but the last check said {said}", args.expect);
    }
    Ok(if outcome.failed == 0 && expected { ExitCode::SUCCESS } else { ExitCode::FAILURE })
}

/// A traffic error as the command's: a wrong plan or URL is a usage error, the rest a failure.
fn cli_error(err: traffic::TrafficError) -> CliError {
    if err.is_usage() { CliError::Usage(err.to_string()) } else { CliError::Failed(err.to_string()) }
}
