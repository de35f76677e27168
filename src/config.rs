//! The config file (`config/monitoring_config.yaml`): typed sections, defaults, validation.
//!
//! Every section rejects unknown keys, and every error names the key path and the line, so
//! a typo never silently falls back to a default. Validation lives in the types
//! (`NonZeroUsize`, `u16`, ...) so the YAML deserializer reports the position itself.
//! This module reads files; it must not start anything.

use std::num::NonZeroUsize;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

/// Default location of the config file, relative to the working directory.
pub const DEFAULT_CONFIG_PATH: &str = "config/monitoring_config.yaml";

/// Errors reading or validating the config file.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config file {path}: {source}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{path}:{line}:{column}: invalid config at key `{key}`: {message}")]
    Invalid { path: PathBuf, key: String, line: usize, column: usize, message: String },
}

/// The whole config file.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    pub service: ServiceConfig,
    pub monitoring: MonitoringConfig,
    pub thresholds: ThresholdsConfig,
    pub alerts: AlertsConfig,
    pub restart: RestartConfig,
    pub logs: LogsConfig,
    pub quality: QualityConfig,
    pub prometheus: PrometheusConfig,
}

/// A positive number of seconds (fractions allowed), read as a `Duration`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Seconds(pub Duration);

impl<'de> Deserialize<'de> for Seconds {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let value = f64::deserialize(deserializer)?;
        if value.is_finite() && value > 0.0 && value < 1e9 {
            Ok(Self(Duration::from_secs_f64(value)))
        } else {
            Err(serde::de::Error::custom(format!("expected a positive number of seconds, got {value}")))
        }
    }
}

const fn secs(value: u64) -> Seconds {
    Seconds(Duration::from_secs(value))
}

/// `monitoring:` — how often and how hard the dashboard probes the service.
#[derive(Debug, Clone, Deserialize)]
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
        }
    }
}

/// Warning and critical levels of one rule.
#[derive(Debug, Clone, Copy, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Levels {
    pub warning: f64,
    pub critical: f64,
}

/// `thresholds:` — when the alert rules fire (the original design's defaults).
#[derive(Debug, Clone, Deserialize)]
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
        }
    }
}

/// `alerts:` — how often a still-firing alert repeats, and where notifications go.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AlertsConfig {
    pub cooldown_s: Seconds,
    /// The service name notifications carry (several capwatch instances can share a channel).
    pub service_name: String,
    /// Notification sinks (Slack, Telegram, generic webhook); none by default.
    pub sinks: Sinks,
    /// Timeouts, retries and queueing, shared by every sink.
    pub delivery: DeliveryConfig,
}

impl Default for AlertsConfig {
    fn default() -> Self {
        Self {
            cooldown_s: secs(300),
            service_name: "capwatch".to_owned(),
            sinks: Sinks::default(),
            delivery: DeliveryConfig::default(),
        }
    }
}

/// The configured sinks, with unique names.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(try_from = "Vec<SinkConfig>")]
pub struct Sinks(pub Vec<SinkConfig>);

impl TryFrom<Vec<SinkConfig>> for Sinks {
    type Error = String;

    fn try_from(sinks: Vec<SinkConfig>) -> Result<Self, String> {
        for (index, sink) in sinks.iter().enumerate() {
            if sinks[..index].iter().any(|other| other.name == sink.name) {
                return Err(format!(
                    "two sinks are named `{}`: give sink {} (counting from 0) its own `name`",
                    sink.name, index
                ));
            }
        }
        Ok(Self(sinks))
    }
}

/// Which API a notification sink speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum SinkKind {
    /// Slack incoming webhook: POST `{text, attachments}` to the webhook URL.
    Slack,
    /// Telegram Bot API: POST `{chat_id, text}` to `{api_url}/bot{token}/sendMessage`.
    Telegram,
    /// Any HTTP endpoint: POST the documented JSON payload.
    Webhook,
}

impl SinkKind {
    pub fn name(self) -> &'static str {
        match self {
            Self::Slack => "slack",
            Self::Telegram => "telegram",
            Self::Webhook => "webhook",
        }
    }
}

/// The least severe alert a sink is told about.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum MinSeverity {
    #[default]
    Warning,
    Critical,
}

/// One notification sink, checked when the file is read. Secrets (URLs, tokens) are never
/// in the config: it names the environment variables that hold them.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(try_from = "RawSinkConfig")]
pub struct SinkConfig {
    /// Shown in the UI, logs and metric labels; defaults to the kind. Unique.
    pub name: String,
    pub min_severity: MinSeverity,
    pub target: SinkTarget,
}

/// Where a sink posts, by kind.
#[derive(Debug, Clone, PartialEq)]
pub enum SinkTarget {
    /// Slack incoming webhook; the variable holds the webhook URL.
    Slack { webhook_url_env: String },
    /// Telegram Bot API `sendMessage`; the variable holds the bot token.
    Telegram { bot_token_env: String, chat_id: String, api_url: String },
    /// Generic JSON webhook; the variables hold the URL and an optional bearer token.
    Webhook { url_env: String, bearer_token_env: Option<String> },
}

impl SinkTarget {
    pub fn kind(&self) -> SinkKind {
        match self {
            Self::Slack { .. } => SinkKind::Slack,
            Self::Telegram { .. } => SinkKind::Telegram,
            Self::Webhook { .. } => SinkKind::Webhook,
        }
    }
}

/// A sink as written in the file: every key of every kind, checked in `try_from`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSinkConfig {
    kind: SinkKind,
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    min_severity: MinSeverity,
    #[serde(default)]
    webhook_url_env: Option<String>,
    #[serde(default)]
    bot_token_env: Option<String>,
    #[serde(default, deserialize_with = "string_or_number")]
    chat_id: Option<String>,
    #[serde(default)]
    api_url: Option<String>,
    #[serde(default)]
    url_env: Option<String>,
    #[serde(default)]
    bearer_token_env: Option<String>,
}

/// Telegram chat ids are numbers (`-1001234567890`) or `@channel` names; take either.
fn string_or_number<'de, D: serde::Deserializer<'de>>(deserializer: D) -> Result<Option<String>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Id {
        Text(String),
        Number(i64),
    }
    Ok(Option::<Id>::deserialize(deserializer)?.map(|id| match id {
        Id::Text(text) => text,
        Id::Number(number) => number.to_string(),
    }))
}

impl TryFrom<RawSinkConfig> for SinkConfig {
    type Error = String;

    fn try_from(raw: RawSinkConfig) -> Result<Self, String> {
        let kind = raw.kind.name();
        let required = |value: Option<String>, key: &str, what: &str| {
            value.filter(|v| !v.trim().is_empty()).ok_or_else(|| format!("a {kind} sink needs `{key}` ({what})"))
        };
        let mut foreign = Vec::new();
        let mut not_for = |value: &Option<String>, key: &'static str| {
            if value.is_some() {
                foreign.push(key);
            }
        };
        let target = match raw.kind {
            SinkKind::Slack => {
                not_for(&raw.bot_token_env, "bot_token_env");
                not_for(&raw.chat_id, "chat_id");
                not_for(&raw.api_url, "api_url");
                not_for(&raw.url_env, "url_env");
                not_for(&raw.bearer_token_env, "bearer_token_env");
                SinkTarget::Slack {
                    webhook_url_env: required(
                        raw.webhook_url_env,
                        "webhook_url_env",
                        "the environment variable holding the incoming-webhook URL",
                    )?,
                }
            }
            SinkKind::Telegram => {
                not_for(&raw.webhook_url_env, "webhook_url_env");
                not_for(&raw.url_env, "url_env");
                not_for(&raw.bearer_token_env, "bearer_token_env");
                SinkTarget::Telegram {
                    bot_token_env: required(
                        raw.bot_token_env,
                        "bot_token_env",
                        "the environment variable holding the bot token",
                    )?,
                    chat_id: required(raw.chat_id, "chat_id", "the chat to post to")?,
                    api_url: raw.api_url.unwrap_or_else(|| "https://api.telegram.org".to_owned()),
                }
            }
            SinkKind::Webhook => {
                not_for(&raw.webhook_url_env, "webhook_url_env");
                not_for(&raw.bot_token_env, "bot_token_env");
                not_for(&raw.chat_id, "chat_id");
                not_for(&raw.api_url, "api_url");
                SinkTarget::Webhook {
                    url_env: required(raw.url_env, "url_env", "the environment variable holding the endpoint URL")?,
                    bearer_token_env: raw.bearer_token_env,
                }
            }
        };
        if let Some(key) = foreign.first() {
            return Err(format!("`{key}` does not apply to a {kind} sink"));
        }
        Ok(Self { name: raw.name.unwrap_or_else(|| kind.to_owned()), min_severity: raw.min_severity, target })
    }
}

/// `alerts.delivery:` — how hard notifications are pushed.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DeliveryConfig {
    /// One HTTP attempt's time limit.
    pub timeout_s: Seconds,
    /// Attempts per notification (first try included).
    pub max_attempts: NonZeroUsize,
    /// Wait before the first retry; doubles on each retry up to `max_backoff_s`.
    pub initial_backoff_s: Seconds,
    pub max_backoff_s: Seconds,
    /// Notifications waiting per sink; beyond this new ones are dropped (and reported).
    pub queue_capacity: NonZeroUsize,
    /// Extra CA certificates (PEM) to trust for HTTPS sinks, e.g. a company CA; the system
    /// store and the webpki roots are always trusted.
    pub ca_file: Option<PathBuf>,
}

impl Default for DeliveryConfig {
    fn default() -> Self {
        Self {
            timeout_s: secs(5),
            max_attempts: nz(4),
            initial_backoff_s: secs(1),
            max_backoff_s: secs(30),
            queue_capacity: nz(32),
            ca_file: None,
        }
    }
}

/// `prometheus:` — the dashboard's own `/metrics` endpoint and the exported alerting rules.
#[derive(Debug, Clone, Deserialize)]
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
#[derive(Debug, Clone, Deserialize)]
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
#[derive(Debug, Clone, Deserialize)]
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
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct QualityConfig {
    pub test_images: Vec<TestImage>,
}

/// One test image: its file, the keywords a good caption contains, and (optionally) the
/// exact caption the bundled model gives it.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TestImage {
    pub file: PathBuf,
    pub keywords: Vec<String>,
    #[serde(default)]
    pub expected_caption: Option<String>,
}

/// `service:` — where and how `capwatch serve` runs the model.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ServiceConfig {
    /// Address to bind.
    pub host: String,
    /// Port to bind (0 picks a free port).
    pub port: u16,
    /// Model directory (see DESIGN.md "Models" for the layouts).
    pub model_dir: PathBuf,
    /// Explicit path to `libonnxruntime.so`; `ORT_DYLIB_PATH` wins over it.
    pub onnxruntime_library: Option<PathBuf>,
    /// Worker threads, each owning its own ONNX Runtime sessions.
    pub workers: NonZeroUsize,
    /// ONNX Runtime intra-op threads per session.
    pub intra_op_threads: NonZeroUsize,
    /// Requests allowed to wait for a worker; beyond that the server answers 503.
    pub queue_capacity: NonZeroUsize,
    /// Largest accepted request body, in bytes.
    pub max_body_bytes: NonZeroUsize,
    /// Largest accepted image, in pixels (width × height), checked before decoding.
    pub max_image_pixels: NonZeroUsize,
    /// Upper bound for a request's `max_new_tokens`.
    pub max_new_tokens_limit: NonZeroUsize,
    /// Time a caption request may take in total (queue included) before 504.
    pub request_timeout_s: NonZeroUsize,
}

impl Default for ServiceConfig {
    fn default() -> Self {
        Self {
            host: "127.0.0.1".to_owned(),
            port: 8000,
            model_dir: PathBuf::from("models/default"),
            onnxruntime_library: None,
            workers: nz(2),
            intra_op_threads: nz(1),
            queue_capacity: nz(64),
            max_body_bytes: nz(10 * 1024 * 1024),
            max_image_pixels: nz(40_000_000),
            max_new_tokens_limit: nz(128),
            request_timeout_s: nz(30),
        }
    }
}

impl ServiceConfig {
    /// The model's name as notifications and the UI show it: the model directory's name.
    pub fn model_name(&self) -> String {
        self.model_dir
            .file_name()
            .map_or_else(|| self.model_dir.display().to_string(), |name| name.to_string_lossy().into_owned())
    }
}

/// A `NonZeroUsize` from a literal (zero becomes one; only used with constants).
const fn nz(value: usize) -> NonZeroUsize {
    match NonZeroUsize::new(value) {
        Some(value) => value,
        None => NonZeroUsize::MIN,
    }
}

impl Config {
    /// Reads and validates the config file at `path`.
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let text =
            std::fs::read_to_string(path).map_err(|source| ConfigError::Read { path: path.to_owned(), source })?;
        Self::parse(&text, path)
    }

    /// Like [`Config::load`], but a missing file at the default path means the defaults
    /// (a missing file given explicitly is still an error).
    pub fn load_or_default(path: &Path) -> Result<Self, ConfigError> {
        if path == Path::new(DEFAULT_CONFIG_PATH) && !path.exists() { Ok(Self::default()) } else { Self::load(path) }
    }

    /// Parses config text; `path` is only used in error messages.
    pub fn parse(text: &str, path: &Path) -> Result<Self, ConfigError> {
        if text.trim().is_empty() {
            return Ok(Self::default());
        }
        let deserializer = serde_yaml_ng::Deserializer::from_str(text);
        serde_path_to_error::deserialize(deserializer).map_err(|err| {
            let key = err.path().to_string();
            let inner = err.into_inner();
            let (line, column) = inner.location().map_or((0, 0), |loc| (loc.line(), loc.column()));
            ConfigError::Invalid {
                path: path.to_owned(),
                key,
                line,
                column,
                message: strip_location(&inner.to_string()),
            }
        })
    }
}

/// serde_yaml_ng appends " at line L column C" to its messages; the error already carries both.
fn strip_location(message: &str) -> String {
    match message.find(" at line ") {
        Some(index) => message[..index].to_owned(),
        None => message.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<Config, ConfigError> {
        Config::parse(text, Path::new("test.yaml"))
    }

    #[test]
    fn empty_file_gives_defaults() {
        let config = parse("").unwrap();
        assert_eq!(config.service.port, 8000);
        assert_eq!(config.service.host, "127.0.0.1");
        assert_eq!(config.service.max_body_bytes.get(), 10 * 1024 * 1024);
        assert_eq!(config.service.queue_capacity.get(), 64);
        assert_eq!(config.service.workers.get(), 2);
    }

    #[test]
    fn values_override_defaults() {
        let config = parse("service:\n  port: 9001\n  workers: 3\n").unwrap();
        assert_eq!(config.service.port, 9001);
        assert_eq!(config.service.workers.get(), 3);
        assert_eq!(config.service.intra_op_threads.get(), 1);
    }

    #[test]
    fn unknown_key_names_key_and_line() {
        let err = parse("service:\n  port: 8000\n  prot: 9000\n").unwrap_err();
        let ConfigError::Invalid { key, line, message, .. } = &err else {
            panic!("unexpected error {err:?}");
        };
        assert_eq!(key, "service.prot");
        assert_eq!(*line, 3);
        assert!(message.contains("unknown field `prot`"), "{message}");
        assert!(err.to_string().starts_with("test.yaml:3:"), "{err}");
    }

    #[test]
    fn bad_value_names_key_and_line() {
        let err = parse("service:\n  host: localhost\n  workers: 0\n").unwrap_err();
        let ConfigError::Invalid { key, line, .. } = &err else {
            panic!("unexpected error {err:?}");
        };
        assert_eq!(key, "service.workers");
        assert_eq!(*line, 3);

        let err = parse("service:\n  port: 70000\n").unwrap_err();
        let ConfigError::Invalid { key, line, .. } = &err else {
            panic!("unexpected error {err:?}");
        };
        assert_eq!(key, "service.port");
        assert_eq!(*line, 2);
    }

    #[test]
    fn unknown_section_is_rejected() {
        let err = parse("servcie:\n  port: 1\n").unwrap_err();
        assert!(err.to_string().contains("unknown field `servcie`"), "{err}");
    }

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

    #[test]
    fn sinks_are_checked_with_key_and_line() {
        let config = parse(
            "alerts:\n  sinks:\n    - kind: slack\n      webhook_url_env: SLACK_URL\n    - kind: telegram\n      name: oncall\n      bot_token_env: TG_TOKEN\n      chat_id: \"-100\"\n      min_severity: critical\n    - kind: webhook\n      url_env: HOOK_URL\n",
        )
        .unwrap();
        let sinks = &config.alerts.sinks.0;
        assert_eq!(sinks[0].name, "slack");
        assert_eq!(sinks[0].target, SinkTarget::Slack { webhook_url_env: "SLACK_URL".to_owned() });
        assert_eq!(sinks[1].name, "oncall");
        assert_eq!(sinks[1].min_severity, MinSeverity::Critical);
        assert!(
            matches!(&sinks[1].target, SinkTarget::Telegram { api_url, .. } if api_url == "https://api.telegram.org")
        );
        assert_eq!(sinks[2].min_severity, MinSeverity::Warning);

        let config =
            parse("alerts:\n  sinks:\n    - kind: telegram\n      bot_token_env: TG\n      chat_id: -1001234567890\n")
                .unwrap();
        assert!(
            matches!(&config.alerts.sinks.0[0].target, SinkTarget::Telegram { chat_id, .. } if chat_id == "-1001234567890")
        );
        let err = parse("alerts:\n  sinks:\n    - kind: telegram\n      bot_token_env: TG\n").unwrap_err();
        assert!(err.to_string().contains("alerts.sinks[0]") && err.to_string().contains("`chat_id`"), "{err}");
        assert!(err.to_string().starts_with("test.yaml:3:"), "{err}");
        let err = parse("alerts:\n  sinks:\n    - kind: slack\n      url_env: X\n").unwrap_err();
        assert!(err.to_string().contains("webhook_url_env"), "{err}");
        let err =
            parse("alerts:\n  sinks:\n    - kind: slack\n      webhook_url_env: A\n      chat_id: x\n").unwrap_err();
        assert!(err.to_string().contains("`chat_id` does not apply to a slack sink"), "{err}");
        let err = parse("alerts:\n  sinks:\n    - kind: pager\n").unwrap_err();
        assert!(err.to_string().contains("alerts.sinks[0].kind") && err.to_string().contains(":3:"), "{err}");
        let err =
            parse("alerts:\n  sinks:\n    - kind: webhook\n      url_env: A\n    - kind: webhook\n      url_env: B\n")
                .unwrap_err();
        assert!(err.to_string().contains("two sinks are named `webhook`"), "{err}");
        assert!(err.to_string().contains("alerts.sinks"), "{err}");
    }

    #[test]
    fn shipped_config_parses() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join(DEFAULT_CONFIG_PATH);
        Config::load(&path).unwrap();
    }
}
