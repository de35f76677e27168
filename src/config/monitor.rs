//! The dashboard's sections (`monitoring`, `thresholds`, `restart`, `logs`, `quality`,
//! `prometheus`): types and defaults only. It must not read files or start anything.

use std::num::NonZeroUsize;
use std::path::PathBuf;

use serde::Deserialize;

use super::{Seconds, nz, secs};

/// `monitoring:` — how often and how hard the dashboard probes the service.
#[derive(Debug, Clone, Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct MonitoringConfig {
    /// `GET /health` every this many seconds.
    pub health_interval_s: Seconds,
    /// An inference test cycle every this many seconds.
    pub inference_interval_s: Seconds,
    /// Captions per cycle (test images are used in turn).
    pub tests_per_cycle: NonZeroUsize,
    /// Each probe's time limit.
    pub probe_timeout_s: Seconds,
    /// Rolling statistics window.
    pub window_s: Seconds,
    /// Time the child server has to become ready.
    pub startup_timeout_s: Seconds,
    /// How to talk to the service: its probe contract (a preset, and overrides).
    pub service: ServiceContractConfig,
    /// The instances `capwatch monitor` watches when no `--url` is given: several replicas
    /// of one service on one dashboard.
    pub targets: Vec<WatchTarget>,
    /// Instances that come and go (an autoscaled Deployment): listed by DNS, a file or an
    /// HTTP endpoint, re-read every `refresh_s`; watched beside the static `targets`.
    pub discovery: DiscoveryConfig,
    /// CA certificates (PEM) to trust for `https://` services with a private CA (the dashboard
    /// trusts its own child's `service.tls.cert` without it).
    pub ca_file: Option<std::path::PathBuf>,
}

/// One instance to watch: `{url: http://10.0.0.5:8000, name: gpu-1}` (name: the URL's host
/// and port when left out).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields)]
pub struct WatchTarget {
    pub url: String,
    #[serde(default)]
    pub name: Option<String>,
}

/// `monitoring.discovery:` — where the watched instances are listed when they come and go.
#[derive(Debug, Clone, PartialEq, Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct DiscoveryConfig {
    /// `dns:NAME[:PORT]`, `file:PATH` or an `http(s)://` URL (Prometheus `http_sd`); none:
    /// only the static targets are watched.
    pub source: Option<DiscoverySource>,
    /// The source is read again this often (a file is also re-read as soon as it changes).
    pub refresh_s: Seconds,
    /// `http` or `https`, for addresses given as `host:port` (a file or `http_sd` group's
    /// `__scheme__` label overrides it).
    pub scheme: Scheme,
    /// `dns:` only: ask this server (`IP:PORT`) instead of the system's resolvers.
    pub nameserver: Option<std::net::SocketAddr>,
}

impl Default for DiscoveryConfig {
    fn default() -> Self {
        Self { source: None, refresh_s: secs(30), scheme: Scheme::Http, nameserver: None }
    }
}

/// Where discovered instances are listed.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, serde::Serialize)]
#[serde(try_from = "String", into = "String")]
pub enum DiscoverySource {
    /// The A and AAAA records of `name` (a Kubernetes headless Service: one per ready pod), each at `port`.
    Dns { name: String, port: u16 },
    /// A Prometheus `file_sd` file (JSON or YAML): `[{targets: [host:port, …], labels: {…}}, …]`.
    File(PathBuf),
    /// A Prometheus `http_sd` endpoint answering that list as JSON.
    Http(String),
}

/// The port `dns:NAME` means without one: `capwatch serve`'s default.
pub const DEFAULT_DISCOVERY_PORT: u16 = 8000;

impl std::str::FromStr for DiscoverySource {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, String> {
        let expected = "expected dns:NAME[:PORT], file:PATH or an http(s):// URL";
        if text.starts_with("http://") || text.starts_with("https://") {
            let url = reqwest::Url::parse(text).map_err(|err| format!("bad discovery URL {text:?}: {err}"))?;
            if url.host_str().is_none() {
                return Err(format!("bad discovery URL {text:?}: no host"));
            }
            return Ok(Self::Http(text.to_owned()));
        }
        if let Some(path) = text.strip_prefix("file:") {
            if path.is_empty() {
                return Err(format!("discovery source {text:?} names no file: {expected}"));
            }
            return Ok(Self::File(PathBuf::from(path)));
        }
        if let Some(rest) = text.strip_prefix("dns:") {
            let (name, port) = match rest.rsplit_once(':') {
                Some((name, port)) => {
                    let port = port.parse::<u16>().ok().filter(|port| *port > 0).ok_or_else(|| {
                        format!("discovery source {text:?}: the port must be a number from 1 to 65535")
                    })?;
                    (name, port)
                }
                None => (rest, DEFAULT_DISCOVERY_PORT),
            };
            let valid = |c: char| c.is_ascii_alphanumeric() || matches!(c, '-' | '.' | '_');
            if name.is_empty() || !name.chars().all(valid) {
                return Err(format!("discovery source {text:?}: {name:?} is not a DNS name"));
            }
            return Ok(Self::Dns { name: name.to_owned(), port });
        }
        Err(format!("unknown discovery source {text:?}: {expected}"))
    }
}

impl TryFrom<String> for DiscoverySource {
    type Error = String;

    fn try_from(text: String) -> Result<Self, String> {
        text.parse()
    }
}

impl std::fmt::Display for DiscoverySource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Dns { name, port } => write!(f, "dns:{name}:{port}"),
            Self::File(path) => write!(f, "file:{}", path.display()),
            Self::Http(url) => f.write_str(url),
        }
    }
}

impl From<DiscoverySource> for String {
    fn from(source: DiscoverySource) -> Self {
        source.to_string()
    }
}

/// How discovered `host:port` addresses are reached.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Scheme {
    #[default]
    Http,
    Https,
}

impl Scheme {
    pub fn name(self) -> &'static str {
        match self {
            Self::Http => "http",
            Self::Https => "https",
        }
    }
}

/// `monitoring.service:` — the probe contract of the watched service. A preset gives every
/// value; the keys set here override it.
#[derive(Debug, Clone, Default, Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct ServiceContractConfig {
    pub preset: ServicePreset,
    /// Health check path (`/health`) and method (`GET`, `HEAD` or `POST`).
    pub health_path: Option<String>,
    pub health_method: Option<HealthMethod>,
    /// Where captions are asked for (`/caption`; `/` for the URL itself).
    pub caption_path: Option<String>,
    /// How the image is sent: the raw body with its content type, or a multipart form.
    pub upload: Option<Upload>,
    /// The multipart field that carries the image (`file`).
    pub multipart_field: Option<String>,
    /// JSON pointer to the caption in the answer (`/caption`, `/0/generated_text`).
    pub caption_pointer: Option<String>,
    /// JSON pointers to server-side model times in ms, summed (none: not reported).
    pub model_time_pointers: Option<Vec<String>>,
    /// JSON pointer to the server's own total time in ms.
    pub server_time_pointer: Option<String>,
    /// JSON pointer to the time a request waited in the server's queue, in ms.
    pub queue_time_pointer: Option<String>,
    /// Extra request headers whose values come from environment variables.
    pub headers: Vec<HeaderFromEnv>,
}

/// The shapes of captioning services capwatch knows.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, serde::Serialize, clap::ValueEnum)]
#[serde(rename_all = "kebab-case")]
pub enum ServicePreset {
    /// `capwatch serve`: `GET /health`, raw image to `POST /caption`, `{"caption", "timings_ms"}`.
    #[default]
    Capwatch,
    /// The original Python design (FastAPI): `GET /health`, multipart `file` to `POST /caption`, `{"caption"}`.
    Fastapi,
    /// Hugging Face inference servers: raw image to `POST /`, `[{"generated_text"}]`, `GET /health`.
    HfInference,
}

impl ServicePreset {
    pub fn name(self) -> &'static str {
        match self {
            Self::Capwatch => "capwatch",
            Self::Fastapi => "fastapi",
            Self::HfInference => "hf-inference",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, serde::Serialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum HealthMethod {
    Get,
    Head,
    Post,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Upload {
    Raw,
    Multipart,
}

/// A request header whose value is read from an environment variable (never from the
/// config, never logged): `{name: Authorization, env: HF_TOKEN, prefix: "Bearer "}`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields)]
pub struct HeaderFromEnv {
    pub name: String,
    pub env: String,
    #[serde(default)]
    pub prefix: String,
}

impl Default for MonitoringConfig {
    fn default() -> Self {
        Self {
            health_interval_s: secs(30),
            inference_interval_s: secs(10),
            tests_per_cycle: nz(5),
            probe_timeout_s: secs(30),
            window_s: secs(300),
            startup_timeout_s: secs(60),
            service: ServiceContractConfig::default(),
            targets: Vec::new(),
            discovery: DiscoveryConfig::default(),
            ca_file: None,
        }
    }
}

/// Warning and critical levels of one rule.
#[derive(Debug, Clone, Copy, PartialEq, Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields)]
pub struct Levels {
    pub warning: f64,
    pub critical: f64,
}

/// `thresholds:` — when the alert rules fire (the original design's defaults).
#[derive(Debug, Clone, Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct ThresholdsConfig {
    pub p95_latency_ms: Levels,
    pub error_rate_percent: Levels,
    pub consecutive_failures: Levels,
    /// Fires when the window's mean quality score drops to these levels or below.
    pub quality_score: Levels,
    /// Probes needed in the window before percentile and rate rules judge.
    pub min_samples: u64,
    /// Evaluations in a row that must agree before a rule escalates, de-escalates or
    /// resolves (firing is immediate).
    pub for_evaluations: std::num::NonZeroU32,
    /// Time the new state must also have held (Prometheus's `for:`); none by default.
    pub for_s: Option<Seconds>,
    /// How far past a threshold (percent of it) a value must go back to leave that level.
    #[serde(deserialize_with = "percent")]
    pub hysteresis_percent: f64,
    /// The severity of the `ab_worse` alert: a model variant is significantly worse than the
    /// baseline on errors or caption quality (A/B, always-valid p < 0.05); `off` for none.
    pub ab_worse: AbWorseLevel,
    /// The `drift` alert: the share of drift features (0..1) of a capwatch server's live window
    /// that drifted from its reference (`GET /drift`); 0.2 is the server's own verdict.
    pub drift_share: Levels,
}

/// `thresholds.ab_worse`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum AbWorseLevel {
    Off,
    Warning,
    Critical,
}

/// A percentage from 0 up to (not including) 100.
fn percent<'de, D: serde::Deserializer<'de>>(deserializer: D) -> Result<f64, D::Error> {
    let value = f64::deserialize(deserializer)?;
    if (0.0..100.0).contains(&value) {
        Ok(value)
    } else {
        Err(serde::de::Error::custom(format!("expected a percentage from 0 to below 100, got {value}")))
    }
}

impl Default for ThresholdsConfig {
    fn default() -> Self {
        Self {
            p95_latency_ms: Levels { warning: 4000.0, critical: 8000.0 },
            error_rate_percent: Levels { warning: 10.0, critical: 25.0 },
            consecutive_failures: Levels { warning: 3.0, critical: 5.0 },
            quality_score: Levels { warning: 0.75, critical: 0.5 },
            min_samples: 5,
            for_evaluations: std::num::NonZeroU32::MIN.saturating_add(1),
            for_s: None,
            hysteresis_percent: 10.0,
            ab_worse: AbWorseLevel::Warning,
            drift_share: Levels { warning: 0.25, critical: 0.5 },
        }
    }
}

/// `prometheus:` — the dashboard's own `/metrics` endpoint and the exported alerting rules.
#[derive(Debug, Clone, Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct PrometheusConfig {
    /// Address for the dashboard's `/metrics` (e.g. `127.0.0.1:9465`); off when unset.
    pub listen: Option<String>,
    /// `for:` of the exported alerting rules: how long a condition must hold before firing.
    pub rule_for_s: Seconds,
}

impl Default for PrometheusConfig {
    fn default() -> Self {
        Self { listen: None, rule_for_s: secs(60) }
    }
}

/// `restart:` — self-healing of the child server.
#[derive(Debug, Clone, Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct RestartConfig {
    /// Restart on unexpected exit or repeated failed health checks.
    pub automatic: bool,
    /// Consecutive failed health checks that trigger a restart.
    pub health_failures: NonZeroUsize,
    pub initial_backoff_s: Seconds,
    pub max_backoff_s: Seconds,
    /// More restarts than this within `window_s` stops restarting (crash loop).
    pub max_restarts: usize,
    pub window_s: Seconds,
    /// Time between SIGTERM and SIGKILL when stopping the server.
    pub grace_s: Seconds,
}

impl Default for RestartConfig {
    fn default() -> Self {
        Self {
            automatic: true,
            health_failures: nz(3),
            initial_backoff_s: secs(1),
            max_backoff_s: secs(60),
            max_restarts: 5,
            window_s: secs(600),
            grace_s: secs(5),
        }
    }
}

/// `logs:` — where the dashboard writes.
#[derive(Debug, Clone, Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct LogsConfig {
    pub dir: PathBuf,
    pub log_file: String,
    pub metrics_file: String,
}

impl Default for LogsConfig {
    fn default() -> Self {
        Self {
            dir: PathBuf::from("logs"),
            log_file: "service_monitoring.log".to_owned(),
            metrics_file: "service_metrics.jsonl".to_owned(),
        }
    }
}

/// `quality:` — the images the prober sends and what their captions should contain.
#[derive(Debug, Clone, Default, Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct QualityConfig {
    pub test_images: Vec<TestImage>,
}

/// One test image: its file, the keywords a good caption contains, and (optionally) the
/// exact caption the bundled model gives it.
#[derive(Debug, Clone, Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields)]
pub struct TestImage {
    pub file: PathBuf,
    pub keywords: Vec<String>,
    #[serde(default)]
    pub expected_caption: Option<String>,
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::config::tests::parse;

    #[test]
    fn monitoring_sections_have_the_original_defaults_and_validate() {
        let config = parse("").unwrap();
        assert_eq!(config.monitoring.health_interval_s, Seconds(Duration::from_secs(30)));
        assert_eq!(config.monitoring.inference_interval_s, Seconds(Duration::from_secs(10)));
        assert_eq!(config.monitoring.tests_per_cycle.get(), 5);
        assert_eq!(config.thresholds.p95_latency_ms, Levels { warning: 4000.0, critical: 8000.0 });
        assert_eq!(config.thresholds.error_rate_percent, Levels { warning: 10.0, critical: 25.0 });
        assert_eq!(config.thresholds.consecutive_failures, Levels { warning: 3.0, critical: 5.0 });
        assert_eq!(config.alerts.cooldown_s, Seconds(Duration::from_secs(300)));
        assert_eq!(config.restart.max_restarts, 5);
        let config = parse("monitoring:\n  inference_interval_s: 0.5\n").unwrap();
        assert_eq!(config.monitoring.inference_interval_s, Seconds(Duration::from_millis(500)));
        let err = parse("monitoring:\n  health_interval_s: 30\n  window_s: -1\n").unwrap_err();
        assert!(err.to_string().contains(":3:") && err.to_string().contains("monitoring.window_s"), "{err}");
        let err = parse("thresholds:\n  p95_latency_ms: {warning: 1, critcal: 2}\n").unwrap_err();
        assert!(err.to_string().contains("thresholds.p95_latency_ms.critcal"), "{err}");
        assert_eq!((config.thresholds.for_evaluations.get(), config.thresholds.hysteresis_percent), (2, 10.0));
        assert_eq!(config.thresholds.for_s, None);
        let err = parse("thresholds:\n  min_samples: 3\n  hysteresis_percent: 120\n").unwrap_err();
        let text = err.to_string();
        assert!(text.contains(":3:") && text.contains("thresholds.hysteresis_percent"), "{text}");
        assert!(parse("thresholds:\n  for_evaluations: 0\n").is_err(), "at least one evaluation");
    }

    #[test]
    fn quality_section_lists_test_images() {
        let config = parse(
            "quality:\n  test_images:\n    - file: test_images/a.png\n      keywords: [red, circle]\n      expected_caption: a small red circle\n    - file: noise.png\n      keywords: [blue]\n",
        )
        .unwrap();
        let images = &config.quality.test_images;
        assert_eq!(images.len(), 2);
        assert_eq!(images[0].keywords, ["red", "circle"]);
        assert_eq!(images[0].expected_caption.as_deref(), Some("a small red circle"));
        assert_eq!(images[1].expected_caption, None);
        let err = parse("quality:\n  test_images:\n    - file: a.png\n      keyword: [red]\n").unwrap_err();
        assert!(err.to_string().contains("quality.test_images[0].keyword"), "{err}");
    }
}
