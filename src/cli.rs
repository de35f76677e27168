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
    },
    /// Print the live window against the reference, per feature (`GET /drift`). Exit code 0
    /// without drift, 1 when the window drifts, 2 when there is no reference yet.
    Status {
        /// The server, e.g. http://127.0.0.1:8000.
        #[arg(long, default_value = "http://127.0.0.1:8000")]
        url: String,
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
    #[arg(long, value_name = "[NAME=]DIR")]
    pub model: Vec<String>,
    /// Weights of the variants, e.g. `a=90,b=10` (overrides their `weight`; unnamed: 0).
    #[arg(long, value_name = "NAME=WEIGHT,...")]
    pub split: Option<String>,
    /// Also caption routed requests on this variant after answering, e.g. `b` or `b=25` (a
    /// percentage of the requests; overrides `service.shadow`).
    #[arg(long, value_name = "NAME[=PERCENT]")]
    pub shadow: Option<String>,
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
            "--log-format".into(),
            "json".into(),
        ]);
        match config.service.variants() {
            Ok(variants) if !service.models.is_empty() => {
                for variant in &variants {
                    let mut arg = std::ffi::OsString::from(format!("{}=", variant.name));
                    arg.push(variant.dir.as_os_str());
                    args.extend(["--model".into(), arg]);
                }
                let split: Vec<String> = variants.iter().map(|v| format!("{}={}", v.name, v.weight)).collect();
                args.extend(["--split".into(), split.join(",").into()]);
                if let Some(shadow) = &service.shadow {
                    args.extend(["--shadow".into(), format!("{}={}", shadow.model, shadow.share.0 * 100.0).into()]);
                }
            }
            _ => args.extend(["--model".into(), service.model_dir.clone().into_os_string()]),
        }
        if let Some(workers) = service.workers {
            args.extend(["--workers".into(), workers.to_string().into()]);
        }
        if let Some(threads) = service.intra_op_threads {
            args.extend(["--intra-op-threads".into(), threads.to_string().into()]);
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
        let flag_error = |key: &str, message: String| crate::config::ConfigError::Inconsistent {
            path: self.config.clone(),
            key: key.to_owned(),
            message,
        };
        match self.model.as_slice() {
            [] => {}
            [only] if split_variant(only).is_none() => {
                service.model_dir = PathBuf::from(only);
                service.models.clear();
                service.shadow = None;
            }
            several => {
                service.models = several
                    .iter()
                    .map(|arg| {
                        let (name, dir) = split_variant(arg).ok_or_else(|| {
                            flag_error("--model", format!("name every variant, as NAME=DIR (got `{arg}`)"))
                        })?;
                        Ok(crate::config::ModelVariantConfig { name, dir: PathBuf::from(dir), weight: None })
                    })
                    .collect::<Result<_, crate::config::ConfigError>>()?;
            }
        }
        if let Some(shadow) = &self.shadow {
            let (name, percent) = shadow.split_once('=').map_or((shadow.as_str(), None), |(n, p)| (n, Some(p)));
            let share = match percent {
                None => 1.0,
                Some(text) => {
                    text.trim_end_matches('%')
                        .parse::<f64>()
                        .ok()
                        .filter(|p| (0.0..=100.0).contains(p))
                        .ok_or_else(|| flag_error("--shadow", format!("a percentage 0–100 after `=`, got `{text}`")))?
                        / 100.0
                }
            };
            let model = crate::config::VariantName::try_from(name.to_owned()).map_err(|e| flag_error("--shadow", e))?;
            let mut config = crate::config::ShadowConfig::new(model, crate::config::Share(share));
            if let Some(old) = &service.shadow {
                config.queue_capacity = old.queue_capacity;
            }
            service.shadow = Some(config);
        }
        if let Some(split) = &self.split {
            let mut weights = std::collections::HashMap::new();
            for part in split.split(',').map(str::trim).filter(|p| !p.is_empty()) {
                let (name, weight) = part
                    .split_once('=')
                    .and_then(|(n, w)| Some((n.trim(), w.trim().parse::<u32>().ok()?)))
                    .ok_or_else(|| flag_error("--split", format!("expected NAME=WEIGHT, got `{part}`")))?;
                if !service.models.iter().any(|m| m.name.as_str() == name) {
                    return Err(flag_error("--split", format!("no model is named `{name}`")));
                }
                weights.insert(name.to_owned(), weight);
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

/// `NAME=DIR` as a variant name and a directory; None for a plain directory (no `=`, or a
/// name that is not one: then the whole is a path).
fn split_variant(arg: &str) -> Option<(crate::config::VariantName, &str)> {
    let (name, dir) = arg.split_once('=')?;
    let name = crate::config::VariantName::try_from(name.to_owned()).ok()?;
    (!dir.is_empty()).then_some((name, dir))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn serve(args: &[&str]) -> ServeArgs {
        let mut argv = vec!["capwatch", "serve", "--config", "/nonexistent/config.yaml"];
        argv.extend_from_slice(args);
        match Cli::parse_from(argv).command {
            Some(Command::Serve(serve)) => serve,
            _ => unreachable!("a serve command"),
        }
    }

    fn resolve(args: &[&str]) -> Result<Config, String> {
        // The shipped config (tests run in the crate's directory) under the flags.
        let flags = ServeArgs { config: PathBuf::from(DEFAULT_CONFIG_PATH), ..serve(args) };
        flags.resolve_config().map_err(|e| e.to_string())
    }

    #[test]
    fn variants_split_and_shadow_come_from_flags_and_survive_the_child_arguments() {
        let config = resolve(&[
            "--model",
            "a=models/default",
            "--model",
            "b=/tmp/b",
            "--split",
            "a=90,b=10",
            "--shadow",
            "b=25",
        ])
        .unwrap();
        let variants = config.service.variants().unwrap();
        let summary: Vec<(String, u32)> = variants.iter().map(|v| (v.name.clone(), v.weight)).collect();
        assert_eq!(summary, [("a".to_owned(), 90), ("b".to_owned(), 10)]);
        let shadow = config.service.shadow.as_ref().unwrap();
        assert_eq!((shadow.model.as_str(), shadow.share.0), ("b", 0.25));

        // What the dashboard hands its child resolves to the same service.
        let child: Vec<String> =
            serve(&[]).child_args(&config).into_iter().skip(1).map(|a| a.to_string_lossy().into_owned()).collect();
        let child_refs: Vec<&str> = child.iter().map(String::as_str).collect();
        let again = resolve(&child_refs).unwrap();
        assert_eq!(again.service.variants().unwrap(), variants);
        assert_eq!(again.service.shadow, config.service.shadow);

        let single = resolve(&["--model", "models/default"]).unwrap();
        assert!(single.service.models.is_empty());
        assert_eq!(single.service.variants().unwrap()[0].name, "default");
    }

    #[test]
    fn thread_flags_override_the_config_and_reach_the_child() {
        let config = resolve(&["--workers", "3", "--intra-op-threads", "2"]).unwrap();
        let threads = |c: &Config| (c.service.workers.map(|n| n.get()), c.service.intra_op_threads.map(|n| n.get()));
        assert_eq!(threads(&config), (Some(3), Some(2)));
        let child: Vec<String> =
            serve(&[]).child_args(&config).into_iter().skip(1).map(|a| a.to_string_lossy().into_owned()).collect();
        assert!(child.windows(2).any(|pair| pair == ["--intra-op-threads", "2"]), "{child:?}");
        let child_refs: Vec<&str> = child.iter().map(String::as_str).collect();
        assert_eq!(threads(&resolve(&child_refs).unwrap()), (Some(3), Some(2)));
    }

    #[test]
    fn bad_variant_flags_name_the_flag() {
        let errors = [
            (&["--model", "a=x", "--model", "y"][..], "--model"),
            (&["--model", "a=x", "--model", "b=y", "--split", "c=1"][..], "--split"),
            (&["--model", "a=x", "--model", "b=y", "--split", "a=ten"][..], "--split"),
            (&["--model", "a=x", "--model", "b=y", "--shadow", "b=150"][..], "--shadow"),
            (&["--model", "a=x", "--model", "b=y", "--shadow", "c"][..], "service.shadow.model"),
            (&["--model", "a=x", "--model", "a=y"][..], "two models are named `a`"),
            (&["--model", "a=x", "--model", "b=y", "--split", "a=0,b=0"][..], "every weight is 0"),
        ];
        for (args, expected) in errors {
            let error = resolve(args).unwrap_err();
            assert!(error.contains(expected), "{args:?}: {error}");
        }
    }
}
