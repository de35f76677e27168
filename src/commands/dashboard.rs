//! `capwatch` with no subcommand: launch `capwatch serve` as a child process of this same
//! executable and watch it (the full-screen dashboard, or `--headless`).

use std::process::ExitCode;

use tokio::runtime::Runtime;

use super::CliError;
use super::monitor::watch;
use crate::cli::{RunArgs, ServeArgs};
use crate::config::Config;
use crate::dash::app::Target;
use crate::dash::preflight::Preflight;
use crate::dash::supervisor::ServeCommand;

pub fn run(run: &RunArgs, serve: &ServeArgs, runtime: &Runtime) -> Result<ExitCode, CliError> {
    let config = serve.resolve_config()?;
    let target = Target::Child(child_command(serve, &config)?);
    watch(run, config, target, runtime)
}

/// The child server's command line: this executable, `serve`, and flags for `config`.
pub(super) fn child_command(serve: &ServeArgs, config: &Config) -> Result<ServeCommand, CliError> {
    let program = std::env::current_exe()
        .map_err(|err| CliError::Failed(format!("cannot find the capwatch executable to launch the server: {err}")))?;
    let preflight = Some(Preflight::new(&config.service));
    Ok(ServeCommand { program, args: serve.child_args(config), preflight })
}
