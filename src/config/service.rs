//! `service:` — the settings only `capwatch serve` reads (bind address, model, limits) and
//! their defaults. Plain data: it must not read files, environment variables or start anything.

use std::num::NonZeroUsize;
use std::path::PathBuf;

use serde::Deserialize;

use super::nz;

/// `service:` — where and how `capwatch serve` runs the model.
#[derive(Debug, Clone, Deserialize, serde::Serialize)]
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
    /// Worker threads, each running its own ONNX Runtime sessions (on one shared copy of the
    /// weights). Unset: chosen from the cores and the model (`engine::threads`).
    pub workers: Option<NonZeroUsize>,
    /// ONNX Runtime intra-op threads per worker. Unset: chosen likewise.
    pub intra_op_threads: Option<NonZeroUsize>,
    /// Requests a worker captions together as one batch (1 turns batching off).
    pub max_batch_size: NonZeroUsize,
    /// How long a worker holding a request waits for more to fill its batch (0: no added wait).
    pub batch_wait_ms: u64,
    /// Whether requests join a batch that is already decoding, at the next step boundary
    /// (where the model's decoder allows it); off: they wait for the next batch.
    pub join_running_batch: bool,
    /// Requests allowed to wait for a worker; beyond that the server answers 503.
    pub queue_capacity: NonZeroUsize,
    /// Largest accepted request body, in bytes.
    pub max_body_bytes: NonZeroUsize,
    /// Largest accepted image, in pixels (width × height), checked before decoding.
    pub max_image_pixels: NonZeroUsize,
    /// Upper bound for a request's `max_new_tokens`.
    pub max_new_tokens_limit: NonZeroUsize,
    /// Upper bound for a request's `num_beams` (beam search costs that many decoder rows).
    pub max_num_beams: NonZeroUsize,
    /// Time a caption request may take in total (queue included) before 504.
    pub request_timeout_s: NonZeroUsize,
    /// Fault injection for rehearsing alerts (`POST /chaos` from loopback); `serve --chaos`.
    pub chaos: bool,
    /// Several model variants served side by side (A/B); empty: the one model in `model_dir`.
    pub models: Vec<ModelVariantConfig>,
    /// A variant that also captions a share of the routed requests, after their answer is sent.
    pub shadow: Option<ShadowConfig>,
    /// Drift detection: the live window and the reference it is compared with.
    pub drift: DriftConfig,
    /// API keys: when set, `/caption`, `/chaos` and `/drift*` need `Authorization: Bearer KEY`.
    pub auth: Option<AuthConfig>,
    /// HTTPS: the certificate chain and private key (PEM) to serve with; unset: plain HTTP.
    pub tls: Option<TlsConfig>,
    /// How long a client may take and how many may be connected at once.
    pub limits: ConnectionLimits,
}

/// `service.tls`: PEM files for HTTPS (rustls). The key file is read once, at start.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields)]
pub struct TlsConfig {
    /// The server's certificate, followed by any intermediates.
    pub cert: PathBuf,
    /// Its private key (PKCS#8, PKCS#1 or SEC1).
    pub key: PathBuf,
}

/// `service.limits`: what a client may hold. Defaults sit beside nginx's (`client_header_timeout`
/// 60 s, `client_body_timeout` 60 s between reads, `keepalive_timeout` 75 s, 512
/// `worker_connections`) and hyper's (30 s header read timeout), tighter where a caption API
/// allows it: requests are one small image.
#[derive(Debug, Clone, PartialEq, Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct ConnectionLimits {
    /// From connecting (TLS handshake included) or the end of the last answer, until a request's
    /// headers are in; then the connection is closed.
    pub header_timeout_s: super::Seconds,
    /// From the headers until the whole body is in (a total, not between reads, so trickling a
    /// byte at a time does not extend it); then `408` and the connection is closed.
    pub body_timeout_s: super::Seconds,
    /// A keep-alive connection with no request for this long is closed.
    pub idle_timeout_s: super::Seconds,
    /// Connections open at once; one more is closed as soon as it is accepted.
    pub max_connections: NonZeroUsize,
}

impl Default for ConnectionLimits {
    fn default() -> Self {
        Self {
            header_timeout_s: super::Seconds(std::time::Duration::from_secs(10)),
            body_timeout_s: super::Seconds(std::time::Duration::from_secs(30)),
            idle_timeout_s: super::Seconds(std::time::Duration::from_secs(60)),
            max_connections: nz(2048),
        }
    }
}

/// `service.auth`: where the API keys are, and which routes need one. The keys themselves are
/// never in the config: it names the environment variable or the file that holds them.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct AuthConfig {
    /// The environment variable holding the keys, comma-separated (several while rotating).
    pub keys_env: String,
    /// A file holding the keys instead (one per line or comma-separated, `#` comments), re-read
    /// when it changes: keys rotate without a restart (a mounted Kubernetes Secret updates so).
    pub keys_file: Option<PathBuf>,
    /// Also require a key for `/health`, `/ready`, `/metrics`, `/docs` and `/openapi.json`
    /// (then probes and scrapers must send one too).
    pub protect_all: bool,
}

impl AuthConfig {
    /// The keys in `keys_file` when set, else in `keys_env` (read through `env`); an unreadable
    /// file or an empty source is an error that names the source (never a value).
    pub fn read_keys(&self, env: &dyn Fn(&str) -> Option<String>) -> Result<Vec<String>, String> {
        let (text, source) = match &self.keys_file {
            Some(path) => (
                std::fs::read_to_string(path)
                    .map_err(|err| format!("service.auth.keys_file: cannot read {}: {err}", path.display()))?,
                format!("file {}", path.display()),
            ),
            None => (env(&self.keys_env).unwrap_or_default(), format!("environment variable {}", self.keys_env)),
        };
        let keys: Vec<String> = text
            .lines()
            .filter(|line| !line.trim_start().starts_with('#'))
            .flat_map(|line| line.split(','))
            .map(str::trim)
            .filter(|key| !key.is_empty())
            .map(str::to_owned)
            .collect();
        if keys.is_empty() {
            return Err(format!("service.auth is set but {source} holds no key (one or more, comma-separated)"));
        }
        Ok(keys)
    }
}

impl Default for AuthConfig {
    fn default() -> Self {
        Self { keys_env: "CAPWATCH_API_KEYS".to_owned(), keys_file: None, protect_all: false }
    }
}

/// `service.drift`.
#[derive(Debug, Clone, PartialEq, Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct DriftConfig {
    /// Requests in the live window (the most recent ones; probes excluded).
    pub window_requests: NonZeroUsize,
    /// Also leave out requests older than this many minutes (unset: the count alone).
    pub window_minutes: Option<std::num::NonZeroU32>,
    /// The window drifts when at least this share of the features do (0.25: measured one false
    /// alarm per ~260 stable windows of the bundled model; `make bench-drift-calibration`).
    pub drift_share: Share,
    /// The reference file: loaded at start when it exists, written by `POST /drift/baseline`.
    pub reference: Option<PathBuf>,
}

impl Default for DriftConfig {
    fn default() -> Self {
        Self {
            window_requests: nz(500),
            window_minutes: None,
            drift_share: Share(crate::drift::report::DRIFT_SHARE),
            reference: None,
        }
    }
}

/// `service.models[]`: one model variant.
#[derive(Debug, Clone, PartialEq, Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields)]
pub struct ModelVariantConfig {
    /// The name requests choose it by (`?model=NAME`), answers and metrics carry.
    pub name: VariantName,
    /// Its model directory.
    pub dir: PathBuf,
    /// Share of the routed requests relative to the other variants' weights. Unset: 1, or 0
    /// for the shadow variant; 0: only asked for by name (or mirrored as the shadow).
    pub weight: Option<u32>,
}

/// `service.shadow`: mirror routed requests onto one more variant, off the answer's path.
#[derive(Debug, Clone, PartialEq, Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields)]
pub struct ShadowConfig {
    /// The variant (one of `service.models`) that gets the copies.
    pub model: VariantName,
    /// Share of routed requests mirrored, in [0, 1] (default 1: all).
    #[serde(default = "full_share")]
    pub share: Share,
    /// Mirrored requests allowed to wait or run at once; more are dropped and counted.
    #[serde(default = "default_shadow_queue")]
    pub queue_capacity: NonZeroUsize,
}

impl ShadowConfig {
    /// A shadow with the default queue.
    pub fn new(model: VariantName, share: Share) -> Self {
        Self { model, share, queue_capacity: default_shadow_queue() }
    }
}

fn full_share() -> Share {
    Share(1.0)
}

fn default_shadow_queue() -> NonZeroUsize {
    nz(16)
}

/// A variant name: 1–32 characters of `A-Z a-z 0-9 _ . -`, so it fits a URL and a label.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Deserialize, serde::Serialize)]
#[serde(try_from = "String", into = "String")]
pub struct VariantName(String);

impl VariantName {
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Display for VariantName {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl From<VariantName> for String {
    fn from(name: VariantName) -> Self {
        name.0
    }
}

impl TryFrom<String> for VariantName {
    type Error = String;

    fn try_from(name: String) -> Result<Self, String> {
        let allowed = |c: char| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-');
        if name.is_empty() || name.len() > 32 || !name.chars().all(allowed) {
            return Err(format!("a model name is 1–32 characters of A-Z a-z 0-9 _ . - (got `{name}`)"));
        }
        Ok(Self(name))
    }
}

/// A fraction in [0, 1].
#[derive(Debug, Clone, Copy, PartialEq, Deserialize, serde::Serialize)]
#[serde(try_from = "f64", into = "f64")]
pub struct Share(pub f64);

impl From<Share> for f64 {
    fn from(share: Share) -> Self {
        share.0
    }
}

impl TryFrom<f64> for Share {
    type Error = String;

    fn try_from(value: f64) -> Result<Self, String> {
        if (0.0..=1.0).contains(&value) { Ok(Self(value)) } else { Err(format!("a share is in [0, 1], got {value}")) }
    }
}

/// One variant as the server routes to it (see [`ServiceConfig::variants`]).
#[derive(Debug, Clone, PartialEq)]
pub struct VariantRoute {
    pub name: String,
    pub dir: PathBuf,
    pub weight: u32,
}

impl Default for ServiceConfig {
    fn default() -> Self {
        Self {
            host: "127.0.0.1".to_owned(),
            port: 8000,
            model_dir: PathBuf::from("models/default"),
            onnxruntime_library: None,
            workers: None,
            intra_op_threads: None,
            max_batch_size: nz(8),
            batch_wait_ms: 0,
            join_running_batch: true,
            queue_capacity: nz(64),
            max_body_bytes: nz(10 * 1024 * 1024),
            max_image_pixels: nz(40_000_000),
            max_new_tokens_limit: nz(128),
            max_num_beams: nz(8),
            request_timeout_s: nz(30),
            chaos: false,
            models: Vec::new(),
            shadow: None,
            drift: DriftConfig::default(),
            auth: None,
            tls: None,
            limits: ConnectionLimits::default(),
        }
    }
}

impl ServiceConfig {
    /// The model's name as notifications and the UI show it: the model directory's name, or
    /// the variants' names (`a, b`) when there are several.
    pub fn model_name(&self) -> String {
        if !self.models.is_empty() {
            return self.models.iter().map(|m| m.name.as_str()).collect::<Vec<_>>().join(", ");
        }
        self.single_model_name()
    }

    /// The name of the one model in `model_dir`: its directory's name.
    fn single_model_name(&self) -> String {
        self.model_dir
            .file_name()
            .map_or_else(|| self.model_dir.display().to_string(), |name| name.to_string_lossy().into_owned())
    }

    /// The variants the server routes to, weights resolved: `models`, or the one model in
    /// `model_dir` (named after its directory). The error names the key that is wrong.
    pub fn variants(&self) -> Result<Vec<VariantRoute>, (&'static str, String)> {
        if self.models.is_empty() {
            if self.shadow.is_some() {
                return Err(("service.shadow", "a shadow needs two or more `service.models`".to_owned()));
            }
            return Ok(vec![VariantRoute { name: self.single_model_name(), dir: self.model_dir.clone(), weight: 1 }]);
        }
        let shadow = self.shadow.as_ref().map(|shadow| &shadow.model);
        let mut variants: Vec<VariantRoute> = Vec::with_capacity(self.models.len());
        for model in &self.models {
            if variants.iter().any(|v| v.name == model.name.as_str()) {
                return Err(("service.models", format!("two models are named `{}`", model.name)));
            }
            let default_weight = if shadow == Some(&model.name) { 0 } else { 1 };
            variants.push(VariantRoute {
                name: model.name.to_string(),
                dir: model.dir.clone(),
                weight: model.weight.unwrap_or(default_weight),
            });
        }
        if let Some(shadow) = shadow
            && !variants.iter().any(|v| v.name == shadow.as_str())
        {
            let names: Vec<&str> = variants.iter().map(|v| v.name.as_str()).collect();
            return Err((
                "service.shadow.model",
                format!("no model is named `{shadow}` (models: {})", names.join(", ")),
            ));
        }
        if variants.iter().all(|v| v.weight == 0) {
            return Err(("service.models", "every weight is 0: no request could be routed".to_owned()));
        }
        Ok(variants)
    }
}

#[cfg(test)]
mod tests {
    use crate::config::tests::parse;

    #[test]
    fn empty_file_gives_defaults() {
        let config = parse("").unwrap();
        assert_eq!(config.service.port, 8000);
        assert_eq!(config.service.host, "127.0.0.1");
        assert_eq!(config.service.max_body_bytes.get(), 10 * 1024 * 1024);
        assert_eq!(config.service.queue_capacity.get(), 64);
        assert_eq!(config.service.workers, None);
        assert_eq!(config.service.max_batch_size.get(), 8);
        assert!(config.service.join_running_batch);
        assert_eq!(config.service.max_num_beams.get(), 8);
    }

    #[test]
    fn values_override_defaults() {
        let config = parse("service:\n  port: 9001\n  workers: 3\n  join_running_batch: false\n").unwrap();
        assert_eq!(config.service.port, 9001);
        assert!(!config.service.join_running_batch);
        assert_eq!(config.service.workers.map(std::num::NonZeroUsize::get), Some(3));
        assert_eq!(config.service.intra_op_threads, None);
    }

    #[test]
    fn model_variants_resolve_weights_and_name_what_does_not_fit() {
        let text = "service:\n  models:\n    - {name: a, dir: m/a}\n    - {name: b, dir: m/b, weight: 3}\n    - {name: s, dir: m/s}\n  shadow: {model: s, share: 0.5}\n";
        let config = parse(text).unwrap();
        let weights: Vec<(String, u32)> =
            config.service.variants().unwrap().into_iter().map(|v| (v.name, v.weight)).collect();
        assert_eq!(
            weights,
            [("a".to_owned(), 1), ("b".to_owned(), 3), ("s".to_owned(), 0)],
            "the shadow defaults to 0"
        );
        let unknown = parse("service:\n  models:\n    - {name: a, dir: m}\n  shadow: {model: z}\n").unwrap_err();
        assert!(unknown.to_string().contains("`service.shadow.model`: no model is named `z`"), "{unknown}");
        let bad_name = parse("service:\n  models:\n    - {name: \"a b\", dir: m}\n").unwrap_err().to_string();
        assert!(bad_name.contains("service.models[0].name") && bad_name.contains(":3:"), "{bad_name}");
        let bad_share = parse("service:\n  models:\n    - {name: a, dir: m}\n  shadow: {model: a, share: 2}\n");
        assert!(bad_share.unwrap_err().to_string().contains("share"));
    }
}
