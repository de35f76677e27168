//! Command-line interface: subcommands and flags, parsed with clap.
//!
//! Flags override the config file; the config file overrides built-in defaults.

use std::path::{Path, PathBuf};

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
        /// Also write the session as one self-contained HTML page with charts here.
        #[arg(long, value_name = "OUT.html")]
        html: Option<PathBuf>,
        /// Config file whose thresholds the charts draw.
        #[arg(long, short, default_value = DEFAULT_CONFIG_PATH)]
        config: PathBuf,
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
    /// A two-minute tour: the dashboard on the bundled model through a latency spike, failing
    /// requests, a crash, a bad canary and drifting traffic, with a banner saying what to look
    /// at; then the session summary. Exit code 0 when every scene showed, 1 otherwise.
    Demo(DemoArgs),
    /// Write files for an existing monitoring stack, derived from the config.
    #[command(subcommand)]
    Export(Export),
    /// Drift of a running server's recent requests from its reference.
    #[command(subcommand)]
    Drift(DriftCommand),
    /// Capacity planning: replicas × workers for a request rate and a P95 target, from the
    /// service times a running server measured (its `/metrics`), by simulating its queue.
    /// Exit code 0 with a plan, 1 when none fits or the server cannot be read, 2 for bad arguments.
    Plan(PlanArgs),
}

#[derive(Debug, Clone, Args)]
pub struct PlanArgs {
    /// The server whose `/metrics` to read, e.g. http://127.0.0.1:8000.
    #[arg(long, default_value = "http://127.0.0.1:8000", conflicts_with_all = ["metrics", "session"])]
    pub url: String,
    /// CA certificates (PEM) to trust for an `https://` server with a private CA.
    #[arg(long, env = "CAPWATCH_CA_FILE", value_name = "PEM")]
    pub ca_file: Option<PathBuf>,
    /// Read a saved `/metrics` text instead of a server.
    #[arg(long, conflicts_with = "session")]
    pub metrics: Option<PathBuf>,
    /// Read a past dashboard session instead (its `logs/service_metrics.jsonl`): the server's
    /// time on each probed caption, one at a time.
    #[arg(long)]
    pub session: Option<PathBuf>,
    /// With `--session` of a dashboard that watched several instances: the one to plan from.
    #[arg(long, requires = "session")]
    pub instance: Option<String>,
    /// The model variant to plan for (default: the one with the most captions).
    #[arg(long)]
    pub model: Option<String>,
    /// Requests per second to plan for (the table adds 10×, 100× and 1000×).
    #[arg(long)]
    pub rate: f64,
    /// P95 response time to stay within, milliseconds.
    #[arg(long = "p95-ms")]
    pub p95_ms: f64,
    /// Workers per replica (default: as many as the server runs).
    #[arg(long)]
    pub workers: Option<usize>,
    /// Most replicas to consider.
    #[arg(long, default_value_t = 100_000)]
    pub max_replicas: usize,
    /// Most waiting requests a worker takes as one batch (the server's `service.max_batch_size`).
    #[arg(long, default_value_t = 8)]
    pub max_batch: usize,
}

#[derive(Debug, Subcommand)]
pub enum DriftCommand {
    /// Freeze the server's live window as its drift reference (`POST /drift/baseline`; the
    /// server must be on this machine). Exit code 0 when frozen, 1 otherwise.
    Baseline {
        /// The server, e.g. http://127.0.0.1:8000.
        #[arg(long, default_value = "http://127.0.0.1:8000")]
        url: String,
        /// CA certificates (PEM) to trust for an `https://` server with a private CA.
        #[arg(long, env = "CAPWATCH_CA_FILE", value_name = "PEM")]
        ca_file: Option<PathBuf>,
    },
    /// Print the live window against the reference, per feature (`GET /drift`). Exit code 0
    /// without drift, 1 when the window drifts, 2 when there is no verdict yet (no reference,
    /// or too few requests in the window).
    Status {
        /// The server, e.g. http://127.0.0.1:8000.
        #[arg(long, default_value = "http://127.0.0.1:8000")]
        url: String,
        /// CA certificates (PEM) to trust for an `https://` server with a private CA.
        #[arg(long, env = "CAPWATCH_CA_FILE", value_name = "PEM")]
        ca_file: Option<PathBuf>,
    },
    /// Send scenes like the bundled model's training world, or shifted ones, to a server on
    /// this machine (loopback only), reading `GET /drift` as it goes. Exit code 0 when every
    /// request was answered (and `--expect` held), 1 otherwise, 2 for bad arguments.
    Traffic(TrafficArgs),
}

#[derive(Debug, Clone, Args)]
pub struct TrafficArgs {
    /// The server (loopback only), e.g. http://127.0.0.1:8000.
    #[arg(long, default_value = "http://127.0.0.1:8000")]
    pub url: String,
    /// CA certificates (PEM) to trust for an `https://` server with a private CA.
    #[arg(long, env = "CAPWATCH_CA_FILE", value_name = "PEM")]
    pub ca_file: Option<PathBuf>,
    /// What the scenes look like.
    #[arg(long, value_enum, default_value = "stable")]
    pub shift: crate::drift::scenes::Shift,
    /// Requests to send (at most 100,000).
    #[arg(long, default_value_t = 500)]
    pub requests: usize,
    /// Requests in flight at once.
    #[arg(long, default_value_t = 2)]
    pub concurrency: usize,
    /// Read `GET /drift` after every this many requests (0: only at the end).
    #[arg(long, default_value_t = 20)]
    pub check_every: usize,
    /// Seed of the scenes (the same seed sends the same pictures).
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// Fail (exit 1) unless the last check agrees: `drift` or `none`.
    #[arg(long, value_enum)]
    pub expect: Option<ExpectDrift>,
}

/// What `capwatch drift traffic --expect` checks at the end.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum ExpectDrift {
    /// The last check found drift.
    Drift,
    /// No check found drift.
    None,
}

#[derive(Debug, Subcommand)]
pub enum Export {
    /// Prometheus alerting rules equivalent to the configured thresholds (check with
    /// `promtool check rules`).
    PrometheusRules(ExportArgs),
    /// A Grafana dashboard (JSON) with the terminal dashboard's panes.
    GrafanaDashboard(ExportArgs),
    /// Kubernetes manifests: Deployment (sized from the model, loaded and measured here),
    /// ConfigMap, Service, PodDisruptionBudget, HorizontalPodAutoscaler, a prometheus-adapter
    /// rule, ServiceMonitor and PrometheusRule. Exit codes as `capwatch serve`'s when the
    /// model cannot load (3 model, 4 ONNX Runtime, 2 config).
    Kubernetes(KubernetesArgs),
}

#[derive(Debug, Clone, Args)]
pub struct KubernetesArgs {
    /// Config file (YAML); it goes into the ConfigMap as it is.
    #[arg(long, short, default_value = DEFAULT_CONFIG_PATH)]
    pub config: PathBuf,
    /// Write one file per object into this directory (created) instead of one multi-document
    /// YAML to stdout.
    #[arg(long, short, value_name = "DIR")]
    pub output: Option<PathBuf>,
    /// Container image (default: capwatch:<this version>).
    #[arg(long)]
    pub image: Option<String>,
    /// Name of the objects and `app.kubernetes.io/instance`.
    #[arg(long, default_value = "capwatch")]
    pub name: String,
    /// Namespace of the objects (default: none, so `kubectl apply -n` decides).
    #[arg(long)]
    pub namespace: Option<String>,
    /// Fewest replicas the autoscaler keeps.
    #[arg(long, default_value_t = 2)]
    pub min_replicas: u32,
    /// Most replicas the autoscaler makes.
    #[arg(long, default_value_t = 10)]
    pub max_replicas: u32,
    /// Worker threads per pod (overrides `service.workers`; default: what the engine chooses
    /// on this machine). The pod is pinned to what was measured.
    #[arg(long)]
    pub workers: Option<std::num::NonZeroUsize>,
    /// ONNX Runtime threads per worker (overrides `service.intra_op_threads`; default likewise).
    #[arg(long)]
    pub intra_op_threads: Option<std::num::NonZeroUsize>,
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
    pub faults: Vec<crate::protocol::faults::FaultKind>,
}

#[derive(Debug, Clone, Args)]
pub struct DemoArgs {
    /// Config file (YAML): the model, test images, logs directory (the demo writes into its
    /// `demo/` folder) and restart policy come from it; the demo sets the rest.
    #[arg(long, short, default_value = DEFAULT_CONFIG_PATH)]
    pub config: PathBuf,
    /// No terminal UI: the same scenes as coloured log lines.
    #[arg(long)]
    pub headless: bool,
    /// No pauses for reading between scenes (the events still take their time).
    #[arg(long)]
    pub quick: bool,
}

fn parse_fault_kind(text: &str) -> Result<crate::protocol::faults::FaultKind, String> {
    use crate::protocol::faults::FaultKind;
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
    /// Base URL of a running server, e.g. http://127.0.0.1:8000; repeat it to watch several
    /// instances on one dashboard (none: the config's `monitoring.targets`).
    #[arg(long)]
    pub url: Vec<String>,
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
    /// CA certificates (PEM) to trust for `https://` servers with a private CA (overrides
    /// `monitoring.ca_file`).
    #[arg(long, env = "CAPWATCH_CA_FILE", value_name = "PEM")]
    pub ca_file: Option<PathBuf>,
    /// Watch the instances a source lists as they come and go: `dns:NAME[:PORT]` (A/AAAA
    /// records, e.g. a Kubernetes headless Service), `file:PATH` (Prometheus file_sd) or an
    /// http(s):// URL (Prometheus http_sd); overrides `monitoring.discovery.source`.
    #[arg(long, value_name = "SOURCE")]
    pub discover: Option<crate::config::DiscoverySource>,
    #[command(flatten)]
    pub run: RunArgs,
}

/// Flags shared by everything that starts the server.
#[derive(Debug, Clone, Args)]
pub struct ServeArgs {
    /// Config file (YAML).
    #[arg(long, short, default_value = DEFAULT_CONFIG_PATH)]
    pub config: PathBuf,
    /// Model directory (overrides `service.model_dir`); repeated as `NAME=DIR`, the variants
    /// to serve side by side (overrides `service.models`).
    #[arg(long, value_name = "[NAME=]DIR", value_parser = parse_model)]
    pub model: Vec<ModelArg>,
    /// Weights of the variants, e.g. `a=90,b=10` (overrides their `weight`; unnamed: 0).
    #[arg(long, value_name = "NAME=WEIGHT,...", value_delimiter = ',', value_parser = parse_weight)]
    pub split: Option<Vec<(String, u32)>>,
    /// Also caption routed requests on this variant after answering, e.g. `b` or `b=25` (a
    /// percentage of the requests; overrides `service.shadow`).
    #[arg(long, value_name = "NAME[=PERCENT]", value_parser = parse_shadow)]
    pub shadow: Option<ShadowArg>,
    /// Address to bind (overrides `service.host`).
    #[arg(long)]
    pub host: Option<String>,
    /// Port to bind, 0 for any free port (overrides `service.port`).
    #[arg(long)]
    pub port: Option<u16>,
    /// Worker threads (overrides `service.workers`).
    #[arg(long)]
    pub workers: Option<std::num::NonZeroUsize>,
    /// ONNX Runtime threads per worker (overrides `service.intra_op_threads`).
    #[arg(long)]
    pub intra_op_threads: Option<std::num::NonZeroUsize>,
    /// Log format on stderr.
    #[arg(long, value_enum, default_value = "text")]
    pub log_format: LogFormat,
    /// Enable fault injection: `POST /chaos` from loopback makes the server slow, failing,
    /// hung, crashed, wrong or unready for a while (to rehearse alerts; sets `service.chaos`).
    #[arg(long)]
    pub chaos: bool,
}

impl ServeArgs {
    /// The config with the flags applied. The config is the text in `$CAPWATCH_SERVE_CONFIG`
    /// when that is set (how the dashboard hands its child the config it resolved), else the
    /// file; a missing default config file means defaults, a missing file given explicitly is
    /// an error.
    pub fn resolve_config(&self) -> Result<Config, crate::config::ConfigError> {
        let base = match std::env::var(crate::config::CHILD_CONFIG_ENV) {
            Ok(text) => Config::parse(&text, Path::new(&format!("${}", crate::config::CHILD_CONFIG_ENV)))?,
            Err(_) => Config::load_or_default(&self.config)?,
        };
        self.apply_to(base)
    }

    /// `config` with the flags applied and checked.
    pub fn apply_to(&self, mut config: Config) -> Result<Config, crate::config::ConfigError> {
        let service = &mut config.service;
        let flag_error = |key: &str, message: String| crate::config::ConfigError::Inconsistent {
            path: self.config.clone(),
            key: key.to_owned(),
            message,
        };
        match self.model.as_slice() {
            [] => {}
            [ModelArg::Dir(dir)] => {
                service.model_dir.clone_from(dir);
                service.models.clear();
                service.shadow = None;
            }
            several => {
                service.models = several
                    .iter()
                    .map(|arg| match arg {
                        ModelArg::Variant { name, dir } => {
                            Ok(crate::config::ModelVariantConfig { name: name.clone(), dir: dir.clone(), weight: None })
                        }
                        ModelArg::Dir(dir) => Err(flag_error(
                            "--model",
                            format!("name every variant, as NAME=DIR (got `{}`)", dir.display()),
                        )),
                    })
                    .collect::<Result<_, crate::config::ConfigError>>()?;
            }
        }
        if let Some(shadow) = &self.shadow {
            let mut config = crate::config::ShadowConfig::new(shadow.model.clone(), crate::config::Share(shadow.share));
            if let Some(old) = &service.shadow {
                config.queue_capacity = old.queue_capacity;
            }
            service.shadow = Some(config);
        }
        if let Some(split) = &self.split {
            let mut weights = std::collections::HashMap::new();
            for (name, weight) in split {
                if !service.models.iter().any(|m| m.name.as_str() == name) {
                    return Err(flag_error("--split", format!("no model is named `{name}`")));
                }
                weights.insert(name.clone(), *weight);
            }
            for model in &mut service.models {
                model.weight = Some(weights.get(model.name.as_str()).copied().unwrap_or(0));
            }
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
        if let Some(threads) = self.intra_op_threads {
            service.intra_op_threads = Some(threads);
        }
        if self.chaos {
            service.chaos = true;
        }
        config.check(&self.config)?;
        Ok(config)
    }
}

/// `--model`: a directory, or a named variant's.
#[derive(Debug, Clone, PartialEq)]
pub enum ModelArg {
    Dir(PathBuf),
    Variant { name: crate::config::VariantName, dir: PathBuf },
}

/// `NAME=DIR` as a variant; anything else (no `=`, or a name that is not one) is a path.
fn parse_model(text: &str) -> Result<ModelArg, String> {
    let variant = text.split_once('=').and_then(|(name, dir)| {
        let name = crate::config::VariantName::try_from(name.to_owned()).ok()?;
        (!dir.is_empty()).then(|| ModelArg::Variant { name, dir: PathBuf::from(dir) })
    });
    Ok(variant.unwrap_or_else(|| ModelArg::Dir(PathBuf::from(text))))
}

/// One `NAME=WEIGHT` of `--split`.
fn parse_weight(part: &str) -> Result<(String, u32), String> {
    part.split_once('=')
        .and_then(|(name, weight)| Some((name.trim().to_owned(), weight.trim().parse::<u32>().ok()?)))
        .ok_or_else(|| format!("expected NAME=WEIGHT, got `{part}`"))
}

/// `--shadow NAME[=PERCENT]`: the variant and the share of requests it copies.
#[derive(Debug, Clone, PartialEq)]
pub struct ShadowArg {
    pub model: crate::config::VariantName,
    /// 0–1 (the flag says a percentage).
    pub share: f64,
}

fn parse_shadow(text: &str) -> Result<ShadowArg, String> {
    let (name, percent) = text.split_once('=').map_or((text, None), |(n, p)| (n, Some(p)));
    let share = match percent {
        None => 1.0,
        Some(percent) => {
            percent
                .trim_end_matches('%')
                .parse::<f64>()
                .ok()
                .filter(|p| (0.0..=100.0).contains(p))
                .ok_or_else(|| format!("a percentage 0–100 after `=`, got `{percent}`"))?
                / 100.0
        }
    };
    Ok(ShadowArg { model: crate::config::VariantName::try_from(name.to_owned())?, share })
}

#[cfg(test)]
mod tests;
