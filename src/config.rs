//! The config file (`config/monitoring_config.yaml`): typed sections, defaults, validation.
//!
//! Every section rejects unknown keys, and every error names the key path and the line, so
//! a typo never silently falls back to a default. Validation lives in the types
//! (`NonZeroUsize`, `u16`, ...) so the YAML deserializer reports the position itself.
//! This module reads files; it must not start anything.

use std::num::NonZeroUsize;
use std::path::{Path, PathBuf};

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
    pub quality: QualityConfig,
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
    fn shipped_config_parses() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join(DEFAULT_CONFIG_PATH);
        Config::load(&path).unwrap();
    }
}
