//! The config file (`config/monitoring_config.yaml`): the whole `Config`, loading, and errors
//! that name the key path and the line. The sections live in `service`, `monitor` and `alerts`
//! and are re-exported here, so every `config::X` path is the same as before the split.
//!
//! Every section rejects unknown keys, and every error names the key path and the line, so
//! a typo never silently falls back to a default. Validation lives in the types
//! (`NonZeroUsize`, `u16`, ...) so the YAML deserializer reports the position itself.
//! This module reads files; it must not start anything.

mod alerts;
mod monitor;
mod service;

use std::num::NonZeroUsize;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

pub use alerts::{AlertsConfig, DeliveryConfig, MinSeverity, SinkConfig, SinkKind, SinkTarget, Sinks};
pub use monitor::{
    AbWorseLevel, DEFAULT_DISCOVERY_PORT, DiscoveryConfig, DiscoverySource, HeaderFromEnv, HealthMethod, Levels,
    LogsConfig, MonitoringConfig, PrometheusConfig, QualityConfig, RestartConfig, Scheme, ServiceContractConfig,
    ServicePreset, TestImage, ThresholdsConfig, Upload, WatchTarget,
};
pub use service::{
    AuthConfig, ConnectionLimits, DriftConfig, ModelVariantConfig, ServiceConfig, ShadowConfig, Share, TlsConfig,
    VariantName, VariantRoute,
};

/// The environment variable through which the dashboard hands its child server the config
/// it resolved (file and flags), serialised by [`Config::to_text`]; `serve` reads it in
/// place of the file.
pub const CHILD_CONFIG_ENV: &str = "CAPWATCH_SERVE_CONFIG";

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
    /// Keys that are each valid but do not fit together (or flags that contradict the file).
    #[error("{path}: invalid config at key `{key}`: {message}")]
    Inconsistent { path: PathBuf, key: String, message: String },
}

/// The whole config file.
#[derive(Debug, Clone, Default, Deserialize, serde::Serialize)]
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

impl serde::Serialize for Seconds {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_f64(self.0.as_secs_f64())
    }
}

const fn secs(value: u64) -> Seconds {
    Seconds(Duration::from_secs(value))
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

    /// The config as YAML text that [`Config::parse`] reads back to the same config.
    pub fn to_text(&self) -> Result<String, String> {
        serde_yaml_ng::to_string(self).map_err(|err| format!("cannot serialise the config: {err}"))
    }

    /// Parses config text; `path` is only used in error messages.
    pub fn parse(text: &str, path: &Path) -> Result<Self, ConfigError> {
        if text.trim().is_empty() {
            return Ok(Self::default());
        }
        let deserializer = serde_yaml_ng::Deserializer::from_str(text);
        let config: Self = serde_path_to_error::deserialize(deserializer).map_err(|err| {
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
        })?;
        config.check(path)?;
        Ok(config)
    }

    /// The checks that span keys (each key alone was checked while parsing).
    pub fn check(&self, path: &Path) -> Result<(), ConfigError> {
        self.service.variants().map(drop).map_err(|(key, message)| ConfigError::Inconsistent {
            path: path.to_owned(),
            key: key.to_owned(),
            message,
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

    /// Parses `text` as if read from `test.yaml`; the section modules' tests use it too.
    pub(super) fn parse(text: &str) -> Result<Config, ConfigError> {
        Config::parse(text, Path::new("test.yaml"))
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
    fn shipped_config_parses() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join(DEFAULT_CONFIG_PATH);
        Config::load(&path).unwrap();
    }

    /// The text a child server gets reads back to the same config, key for key.
    #[test]
    fn the_serialised_config_reads_back_the_same() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join(DEFAULT_CONFIG_PATH);
        let busy = parse(
            "service:\n  port: 0\n  workers: 3\n  chaos: true\n  models:\n    - {name: a, dir: models/default, weight: 90}\n    - {name: b, dir: /tmp/b, weight: 10}\n  shadow: {model: b, share: 0.25}\n\
             thresholds:\n  for_s: 2.5\n  ab_worse: critical\n  hysteresis_percent: 12.5\n\
             alerts:\n  cooldown_s: 0.75\n  sinks:\n    - {kind: slack, webhook_url_env: SLACK_URL}\n    - {kind: telegram, name: tg, bot_token_env: TG, chat_id: -100123, min_severity: critical}\n    - {kind: webhook, url_env: HOOK, bearer_token_env: HOOK_TOKEN}\n",
        )
        .unwrap();
        for config in [Config::default(), Config::load(&path).unwrap(), busy] {
            let text = config.to_text().unwrap();
            let again = parse(&text).unwrap_or_else(|err| panic!("{err}\n{text}"));
            assert_eq!(again.to_text().unwrap(), text);
            assert_eq!(again.service.variants().unwrap(), config.service.variants().unwrap());
            assert_eq!(again.service.shadow, config.service.shadow);
            assert_eq!(again.alerts.sinks, config.alerts.sinks);
            assert_eq!(again.alerts.cooldown_s, config.alerts.cooldown_s);
            assert_eq!(again.thresholds.for_s, config.thresholds.for_s);
        }
    }
}
