//! `capwatch` with no subcommand: launch `capwatch serve` as a child process of this same
//! executable and watch it (the full-screen dashboard, or `--headless`).

use std::ffi::OsString;
use std::process::ExitCode;

use tokio::runtime::Runtime;

use super::CliError;
use super::monitor::watch;
use crate::cli::{RunArgs, ServeArgs};
use crate::config::{CHILD_CONFIG_ENV, Config};
use crate::dash::app::Target;
use crate::dash::preflight::Preflight;
use crate::dash::supervisor::ServeCommand;

pub fn run(run: &RunArgs, serve: &ServeArgs, runtime: &Runtime) -> Result<ExitCode, CliError> {
    let config = serve.resolve_config()?;
    let target = Target::Child(child_command(&config)?);
    watch(run, config, target, runtime)
}

/// The child server's command: this executable, `serve` with JSON logs (the supervisor reads
/// them), and `config` — file and flags, resolved once here — serialised into its environment.
pub(super) fn child_command(config: &Config) -> Result<ServeCommand, CliError> {
    let program = std::env::current_exe()
        .map_err(|err| CliError::Failed(format!("cannot find the capwatch executable to launch the server: {err}")))?;
    let preflight = Some(Preflight::new(&config.service));
    let args = ["serve", "--log-format", "json"].into_iter().map(OsString::from).collect();
    let env = vec![(OsString::from(CHILD_CONFIG_ENV), OsString::from(config.to_text().map_err(CliError::Failed)?))];
    Ok(ServeCommand { program, args, env, preflight })
}
