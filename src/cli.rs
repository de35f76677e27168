//! Command-line interface: subcommands and flags, parsed with clap.
//!
//! Flags override the config file; the config file overrides built-in defaults.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

use crate::config::{Config, DEFAULT_CONFIG_PATH};
use crate::telemetry::LogFormat;

#[derive(Debug, Parser)]
#[command(
    name = "capwatch",
    version,
    about = "Serve an ONNX image-captioning model and watch it live",
    long_about = "Without a subcommand, capwatch launches `capwatch serve` as a child process and monitors it \
                  (health checks, inference tests, latency percentiles, error rate, caption quality, alerts, restarts).",
    args_conflicts_with_subcommands = true
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Option<Command>,
    #[command(flatten)]
    pub run: RunArgs,
    #[command(flatten)]
    pub serve: ServeArgs,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Serve the captioning model over HTTP (no dashboard).
    Serve(ServeArgs),
    /// Monitor a server that is already running (no child process).
    Monitor(MonitorArgs),
    /// Print the summary of a past session from its metrics file.
    Report {
        /// A `service_metrics.jsonl` written by the monitor.
        file: PathBuf,
    },
    /// Send a test notification to every configured alert sink and report what each answered.
    /// Exit code 0 when every sink took it, 1 otherwise, 2 when none is configured.
    AlertTest {
        /// Config file (YAML).
        #[arg(long, short, default_value = DEFAULT_CONFIG_PATH)]
        config: PathBuf,
    },
    /// Fire drill: launch a chaos-enabled server under the monitor, inject each fault and check
    /// that the expected alert fires, repeats and resolves, that hung, unready and crashed
    /// servers are restarted, and that every sink is notified (marked as a drill).
    /// Exit code 0 when everything held, 1 otherwise, 2 for a bad config.
    Drill(DrillArgs),
    /// Write files for an existing monitoring stack, derived from the config.
    #[command(subcommand)]
    Export(Export),
}

#[derive(Debug, Subcommand)]
pub enum Export {
    /// Prometheus alerting rules equivalent to the configured thresholds (check with
    /// `promtool check rules`).
    PrometheusRules(ExportArgs),
    /// A Grafana dashboard (JSON) with the terminal dashboard's panes.
    GrafanaDashboard(ExportArgs),
}

#[derive(Debug, Clone, Args)]
pub struct ExportArgs {
    /// Config file (YAML).
    #[arg(long, short, default_value = DEFAULT_CONFIG_PATH)]
    pub config: PathBuf,
    /// Write here instead of stdout.
    #[arg(long, short)]
    pub output: Option<PathBuf>,
}

#[derive(Debug, Clone, Args)]
pub struct DrillArgs {
    #[command(flatten)]
    pub serve: ServeArgs,
    /// Also write the report here: Markdown, or JSON when the name ends in `.json`.
    #[arg(long, value_name = "FILE.md|FILE.json")]
    pub report: Option<PathBuf>,
    /// The faults to rehearse, in order (default: errors, latency, garbage, slow_decoder,
    /// unready, hang, crash).
    #[arg(long, value_delimiter = ',', value_parser = parse_fault_kind, value_name = "KIND,...")]
    pub faults: Vec<crate::server::chaos::FaultKind>,
}

fn parse_fault_kind(text: &str) -> Result<crate::server::chaos::FaultKind, String> {
    use crate::server::chaos::FaultKind;
    FaultKind::ALL.into_iter().find(|kind| kind.name() == text).ok_or_else(|| {
        let names: Vec<&str> = FaultKind::ALL.iter().map(|kind| kind.name()).collect();
        format!("unknown fault `{text}`; one of {}", names.join(", "))
    })
}

/// How long a monitoring session runs and how it shows itself.
#[derive(Debug, Clone, Args)]
pub struct RunArgs {
    /// No terminal UI: print coloured log lines (for CI and cron). Exit code 0 when no alert
    /// fired, 1 when only warnings did, 2 when a critical one did.
    #[arg(long)]
    pub headless: bool,
    /// Stop after this many inference test cycles.
    #[arg(long)]
    pub cycles: Option<u64>,
    /// Stop after this long (e.g. `90s`, `10m`).
    #[arg(long, value_parser = humantime::parse_duration)]
    pub duration: Option<std::time::Duration>,
    /// Serve the dashboard's own Prometheus `/metrics` here, e.g. `127.0.0.1:9465`
    /// (overrides `prometheus.listen`).
    #[arg(long, value_name = "ADDRESS")]
    pub metrics_listen: Option<String>,
}

#[derive(Debug, Clone, Args)]
pub struct MonitorArgs {
    /// Base URL of the running server, e.g. http://127.0.0.1:8000
    #[arg(long)]
    pub url: String,
    /// Config file (YAML).
    #[arg(long, short, default_value = DEFAULT_CONFIG_PATH)]
    pub config: PathBuf,
    /// The shape of the service's API (overrides `monitoring.service.preset`).
    #[arg(long, value_enum, value_name = "PRESET")]
    pub service_preset: Option<crate::config::ServicePreset>,
    /// The server was started with `--chaos` (on this machine): follow its faults and enable
    /// the fault menu (`f`). Only for the `capwatch` service shape.
    #[arg(long)]
    pub chaos: bool,
    #[command(flatten)]
    pub run: RunArgs,
}

/// Flags shared by everything that starts the server.
#[derive(Debug, Clone, Args)]
pub struct ServeArgs {
    /// Config file (YAML).
    #[arg(long, short, default_value = DEFAULT_CONFIG_PATH)]
    pub config: PathBuf,
    /// Model directory (overrides `service.model_dir`).
    #[arg(long)]
    pub model: Option<PathBuf>,
    /// Address to bind (overrides `service.host`).
    #[arg(long)]
    pub host: Option<String>,
    /// Port to bind, 0 for any free port (overrides `service.port`).
    #[arg(long)]
    pub port: Option<u16>,
    /// Worker threads (overrides `service.workers`).
    #[arg(long)]
    pub workers: Option<std::num::NonZeroUsize>,
    /// Log format on stderr.
    #[arg(long, value_enum, default_value = "text")]
    pub log_format: LogFormat,
    /// Enable fault injection: `POST /chaos` from loopback makes the server slow, failing,
    /// hung, crashed, wrong or unready for a while (to rehearse alerts; sets `service.chaos`).
    #[arg(long)]
    pub chaos: bool,
}

impl ServeArgs {
    /// Arguments that make a child `capwatch serve` use this resolved config (JSON logs, so
    /// the supervisor can read its URL).
    pub fn child_args(&self, config: &Config) -> Vec<std::ffi::OsString> {
        let service = &config.service;
        let mut args: Vec<std::ffi::OsString> = vec!["serve".into()];
        if self.config.exists() {
            args.extend(["--config".into(), self.config.clone().into_os_string()]);
        }
        args.extend([
            "--host".into(),
            service.host.clone().into(),
            "--port".into(),
            service.port.to_string().into(),
            "--model".into(),
            service.model_dir.clone().into_os_string(),
            "--log-format".into(),
            "json".into(),
        ]);
        if let Some(workers) = service.workers {
            args.extend(["--workers".into(), workers.to_string().into()]);
        }
        if service.chaos {
            args.push("--chaos".into());
        }
        args
    }
}

impl ServeArgs {
    /// The config file with the flags applied. A missing default config file means defaults;
    /// a missing file given explicitly is an error.
    pub fn resolve_config(&self) -> Result<Config, crate::config::ConfigError> {
        let mut config = Config::load_or_default(&self.config)?;
        let service = &mut config.service;
        if let Some(model) = &self.model {
            service.model_dir.clone_from(model);
        }
        if let Some(host) = &self.host {
            service.host.clone_from(host);
        }
        if let Some(port) = self.port {
            service.port = port;
        }
        if let Some(workers) = self.workers {
            service.workers = Some(workers);
        }
        if self.chaos {
            service.chaos = true;
        }
        Ok(config)
    }
}
