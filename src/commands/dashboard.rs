//! `capwatch` with no subcommand: launch `capwatch serve` as a child process of this same
//! executable and watch it (the full-screen dashboard, or `--headless`).

use std::ffi::OsString;
use std::process::ExitCode;

use tokio::runtime::Runtime;

use super::CliError;
use super::monitor::watch;
use crate::cli::{RunArgs, ServeArgs};
use crate::config::{CHILD_CONFIG_ENV, Config};
use crate::dash::preflight::Preflight;
use crate::dash::supervisor::ServeCommand;
use crate::dash::target::Target;

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
    Ok(ServeCommand { program, args, env, preflight, ready_client: ready_client(config)? })
}

/// The client that asks the child's `/ready`: it trusts `monitoring.ca_file`, else the
/// certificate the child serves; it sends the first API key when `/ready` needs one.
fn ready_client(config: &Config) -> Result<reqwest::Client, CliError> {
    let ca_file = config.monitoring.ca_file.as_ref().or(config.service.tls.as_ref().map(|tls| &tls.cert));
    let mut headers = reqwest::header::HeaderMap::new();
    let auth = config.service.auth.as_ref().filter(|auth| auth.protect_all);
    if let Some(key) = auth.and_then(|auth| auth.read_keys(&|var| std::env::var(var).ok()).ok()?.into_iter().next()) {
        let mut value = reqwest::header::HeaderValue::from_str(&format!("Bearer {key}"))
            .map_err(|_| CliError::Usage("an API key holds characters a header cannot carry".to_owned()))?;
        value.set_sensitive(true);
        headers.insert(reqwest::header::AUTHORIZATION, value);
    }
    crate::http_client::builder(ca_file.map(std::path::PathBuf::as_path))
        .map_err(|err| CliError::Usage(format!("monitoring.ca_file: {err}")))?
        .default_headers(headers)
        .build()
        .map_err(|err| CliError::Failed(format!("cannot build an HTTP client: {err}")))
}
