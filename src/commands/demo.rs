//! `capwatch demo`: the dashboard on the bundled model, played through a latency spike,
//! failing requests, a crash, a bad canary and drifting traffic under a banner that says what
//! to look at; then the session summary. Exit code 0 when every scene showed what it set out
//! to, 1 otherwise, 2 for a bad config.

use std::process::ExitCode;

use tokio::runtime::Runtime;

use super::dashboard::child_command;
use super::monitor::watch_with;
use super::{CliError, load_config};
use crate::cli::{DemoArgs, RunArgs};
use crate::dash::demo::{self, Director};
use crate::dash::fleet::Companion;
use crate::dash::target::Target;

pub fn run(args: &DemoArgs, runtime: &Runtime) -> Result<ExitCode, CliError> {
    let base = load_config(&args.config)?;
    let plan = demo::plan(&base, args.quick);
    // Each demo freezes its own drift reference; one left by an earlier demo would be loaded at start.
    match std::fs::remove_file(&plan.drift_reference) {
        Err(err) if err.kind() != std::io::ErrorKind::NotFound => {
            return Err(CliError::Failed(format!("cannot remove {}: {err}", plan.drift_reference.display())));
        }
        _ => {}
    }
    println!("{}", plan.describe());
    let target = Target::Child(child_command(&plan.config)?);
    let run =
        RunArgs { headless: args.headless, cycles: None, duration: Some(plan.time_limit()), metrics_listen: None };
    let mut director = Director::new(plan.scenes.clone(), plan.pause, tokio::time::Instant::now());
    let logs = plan.config.logs.dir.clone();
    watch_with(&run, plan.config, target, runtime, &mut director)?;
    println!();
    if director.misses().is_empty() && director.finished() {
        println!("🎬 The demo showed every scene. Its files are in {}.", logs.display());
        return Ok(ExitCode::SUCCESS);
    }
    if !director.finished() {
        let at = director.banner().map_or_else(String::new, |banner| format!(" (at {})", banner.heading));
        println!("🎬 The demo stopped before its last scene{at}. Its files are in {}.", logs.display());
    }
    if !director.misses().is_empty() {
        println!("🎬 What did not show (the demo went on without it):");
        for miss in director.misses() {
            println!("  - {miss}");
        }
    }
    Ok(ExitCode::FAILURE)
}
