//! `capwatch plan`: replicas × workers for a request rate and a P95 target, from the service
//! times a running server measured (its `/metrics`, or a saved copy) or a past dashboard
//! session recorded. Exit code 0 with a plan, 1 when none fits or nothing can be read, 2 for
//! bad arguments.

use std::path::Path;
use std::process::ExitCode;

use tokio::runtime::Runtime;

use super::{CliError, http_call};
use crate::cli::PlanArgs;
use crate::dash::records_file::RecordsFile;
use crate::plan::scrape::{self, Measured};
use crate::plan::{session, table};

pub fn run(args: &PlanArgs, runtime: &Runtime) -> Result<ExitCode, CliError> {
    if !(args.rate > 0.0 && args.rate.is_finite() && args.p95_ms > 0.0 && args.p95_ms.is_finite()) {
        return Err(CliError::Usage("--rate and --p95-ms must be positive numbers".to_owned()));
    }
    let (source, exposition) = match (&args.session, &args.metrics) {
        (Some(path), _) => return from_session(args, path),
        (None, Some(path)) => (
            path.display().to_string(),
            std::fs::read_to_string(path)
                .map_err(|err| CliError::Failed(format!("cannot read {}: {err}", path.display())))?,
        ),
        (None, None) => {
            let url = format!("{}/metrics", args.url.trim_end_matches('/'));
            let client = crate::http_client::for_capwatch(args.ca_file.as_deref())
                .and_then(|builder| builder.build().map_err(|err| format!("cannot build an HTTP client: {err}")))
                .map_err(CliError::Usage)?;
            let text = runtime.block_on(http_call(client.get(&url), &url))?;
            (url, text)
        }
    };
    let models = scrape::measured(&exposition, args.max_batch);
    let chosen = match &args.model {
        Some(name) => models.iter().find(|m| &m.model == name),
        None => models.iter().max_by(|a, b| a.count.total_cmp(&b.count)),
    };
    let Some(measured) = chosen else {
        let names: Vec<&str> = models.iter().map(|m| m.model.as_str()).collect();
        return Err(CliError::Failed(format!(
            "{source} has no measured service times{} (the server records them once it has captioned; names: {names:?})",
            args.model.as_ref().map_or_else(String::new, |m| format!(" for model `{m}`"))
        )));
    };
    print_plan(args, &source, measured)
}

/// The plan from a past dashboard session's service times.
fn from_session(args: &PlanArgs, path: &Path) -> Result<ExitCode, CliError> {
    let (records, _) =
        RecordsFile::read(path).map_err(|err| CliError::Failed(format!("cannot read {}: {err}", path.display())))?;
    let measured = session::measured(&records, args.instance.as_deref())
        .map_err(|err| CliError::Failed(format!("cannot plan from {}: {err}", path.display())))?;
    println!("{}", session::ONE_AT_A_TIME);
    print_plan(args, &path.display().to_string(), &measured)
}

fn print_plan(args: &PlanArgs, source: &str, measured: &Measured) -> Result<ExitCode, CliError> {
    let goal = table::Goal {
        rate_per_s: args.rate,
        p95_ms: args.p95_ms,
        workers: args.workers.unwrap_or(measured.workers).max(1),
        max_batch: args.max_batch,
        max_replicas: args.max_replicas,
    };
    let table = table::render(source, measured, &goal);
    print!("{}", table.text);
    if let Some(err) = table.impossible {
        return Err(CliError::Failed(err.to_string()));
    }
    Ok(if table.unplannable { ExitCode::FAILURE } else { ExitCode::SUCCESS })
}
