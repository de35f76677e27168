//! The subcommands, one file each. Each takes its parsed flags and returns the exit code of a
//! run that did its work, or a [`CliError`] that `main` prints and turns into the exit code: the
//! one place where errors become messages. The async runtime is built here, once per process.
//! What a command prints is formatted by the module that owns the data; a command only wires.
//!
//! Layout: [`dashboard`] (no subcommand: the server as a child, watched), [`serve`],
//! [`monitor`], [`report`], [`alert_test`], [`drill`], [`export`], [`drift`], [`plan`].

use std::process::ExitCode;

use tokio::runtime::Runtime;

use crate::cli::{Cli, Command, Export};
use crate::config::{Config, ConfigError};

mod alert_test;
mod dashboard;
mod demo;
mod drift;
mod drill;
mod export;
mod monitor;
mod plan;
mod report;
mod serve;

/// Why a command stopped without doing its work; [`CliError::exit_code`] says which code.
#[derive(Debug, thiserror::Error)]
pub enum CliError {
    /// A bad config file: exit 2.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// Bad flags or arguments: exit 2.
    #[error("{0}")]
    Usage(String),
    /// The command could not do its work: exit 1.
    #[error("{0}")]
    Failed(String),
    /// A failure with an exit code of its own (`crate::exit_code`: model, runtime, address).
    #[error("{message}")]
    Coded { code: u8, message: String },
}

impl CliError {
    /// `err` with the exit code `code`.
    pub fn coded(code: u8, err: impl std::fmt::Display) -> Self {
        Self::Coded { code, message: err.to_string() }
    }

    pub fn exit_code(&self) -> ExitCode {
        ExitCode::from(match self {
            Self::Config(_) | Self::Usage(_) => crate::exit_code::CONFIG,
            Self::Failed(_) => crate::exit_code::FAILURE,
            Self::Coded { code, .. } => *code,
        })
    }
}

/// Runs the command `cli` names.
pub fn run(cli: Cli) -> Result<ExitCode, CliError> {
    let runtime = runtime()?;
    match cli.command {
        Some(Command::Serve(args)) => serve::run(&args, &runtime),
        Some(Command::Monitor(args)) => monitor::run(&args, &runtime),
        Some(Command::Report { file, html, config }) => report::run(&file, html.as_deref(), &config),
        Some(Command::AlertTest { config }) => alert_test::run(&config, &runtime),
        Some(Command::Drill(args)) => drill::run(&args, &runtime),
        Some(Command::Demo(args)) => demo::run(&args, &runtime),
        Some(Command::Export(Export::PrometheusRules(args))) => export::prometheus_rules(&args),
        Some(Command::Export(Export::GrafanaDashboard(args))) => export::grafana_dashboard(&args),
        Some(Command::Export(Export::Kubernetes(args))) => export::kubernetes(&args, &runtime),
        Some(Command::Drift(command)) => drift::run(&command, &runtime),
        Some(Command::Plan(args)) => plan::run(&args, &runtime),
        None => dashboard::run(&cli.run, &cli.serve, &runtime),
    }
}

fn runtime() -> Result<Runtime, CliError> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|err| CliError::Failed(format!("cannot start the async runtime: {err}")))
}

/// The config file at `path`, or the defaults when the default path has no file.
fn load_config(path: &std::path::Path) -> Result<Config, CliError> {
    Ok(Config::load_or_default(path)?)
}

/// Writes `text` to `path`, saying so on stderr, or prints it when there is no path.
fn write_or_print(path: Option<&std::path::Path>, text: &str) -> Result<(), CliError> {
    match path {
        Some(path) => {
            std::fs::write(path, text)
                .map_err(|err| CliError::Failed(format!("cannot write {}: {err}", path.display())))?;
            eprintln!("wrote {}", path.display());
        }
        None => print!("{text}"),
    }
    Ok(())
}

/// Sends one request (drift, plan): the body of a 2xx answer, else why not.
async fn http_call(request: reqwest::RequestBuilder, url: &str) -> Result<String, CliError> {
    let answer = async {
        let response = request.timeout(std::time::Duration::from_secs(30)).send().await?;
        let status = response.status();
        Ok::<_, reqwest::Error>((status, response.text().await?))
    };
    let (status, body) = answer.await.map_err(|err| CliError::Failed(format!("cannot reach {url}: {err}")))?;
    if !status.is_success() {
        let message = serde_json::from_str::<serde_json::Value>(&body)
            .ok()
            .and_then(|v| v["error"].as_str().map(str::to_owned))
            .unwrap_or(body);
        return Err(CliError::Failed(format!("{url} answered {status}: {message}")));
    }
    Ok(body)
}
