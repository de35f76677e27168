//! Probes of the captioning service over HTTP, as its [`ProbeContract`] says: health checks
//! (`GET /health`) and inference tests (`POST /caption` with a test image), each timed by
//! the client and classified.
//!
//! The prober only measures and classifies; it knows nothing about the UI, statistics or
//! alerts. Scheduling (intervals, pause, "test now") belongs to the event loop.

use std::fmt;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;

use tokio::time::Instant;

use super::contract::ProbeContract;
use crate::config::{HealthMethod, TestImage, Upload};
use crate::protocol::shadow::ShadowReport;
use crate::quality::{KeywordMatch, match_keywords};

/// Why a probe failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ProbeError {
    Timeout,
    ConnectionRefused,
    /// The server answered with this non-success status.
    Http(u16),
    /// 2xx, but not the shape the probe contract expects (no caption where it says).
    Shape(String),
    Other(String),
}

impl ProbeError {
    /// Stable short name, for logs, metrics and the summary.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::Timeout => "timeout",
            Self::ConnectionRefused => "connection_refused",
            Self::Http(status) if *status >= 500 => "http_5xx",
            Self::Http(_) => "http_4xx",
            Self::Shape(_) => "bad_body",
            Self::Other(_) => "other",
        }
    }
}

impl ProbeError {
    /// Why this failure, before any caption succeeded, says the service speaks another API
    /// (a 2xx answer of another shape, or an endpoint or body it does not take).
    pub fn contract_mismatch(&self) -> Option<String> {
        match self {
            Self::Shape(what) => Some(what.clone()),
            Self::Http(status @ (404 | 405 | 415 | 422)) => Some(format!(
                "the caption request was answered with HTTP {status} (no such endpoint, or not that body)"
            )),
            _ => None,
        }
    }
}

impl fmt::Display for ProbeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Timeout => f.write_str("timeout"),
            Self::ConnectionRefused => f.write_str("connection refused"),
            Self::Http(status) => write!(f, "HTTP {status}"),
            Self::Shape(reason) => write!(f, "unexpected answer: {reason}"),
            Self::Other(reason) => f.write_str(reason),
        }
    }
}

/// A test image loaded from the config's `quality` section.
#[derive(Debug, Clone)]
pub struct ProbeImage {
    /// File name, for display.
    pub name: String,
    pub bytes: Bytes,
    pub content_type: &'static str,
    pub keywords: Vec<String>,
}

impl ProbeImage {
    /// Reads every configured test image; the error names the file.
    pub fn load_all(images: &[TestImage], base: &Path) -> Result<Vec<Self>, String> {
        images
            .iter()
            .map(|image| {
                let path = if image.file.is_absolute() { image.file.clone() } else { base.join(&image.file) };
                let bytes =
                    std::fs::read(&path).map_err(|e| format!("cannot read test image {}: {e}", path.display()))?;
                let extension = path.extension().and_then(|e| e.to_str()).unwrap_or_default().to_ascii_lowercase();
                let content_type = match extension.as_str() {
                    "png" => "image/png",
                    "jpg" | "jpeg" => "image/jpeg",
                    "gif" => "image/gif",
                    "webp" => "image/webp",
                    "bmp" => "image/bmp",
                    _ => "application/octet-stream",
                };
                let name =
                    path.file_name().map_or_else(|| path.display().to_string(), |n| n.to_string_lossy().into_owned());
                Ok(Self { name, bytes: Bytes::from(bytes), content_type, keywords: image.keywords.clone() })
            })
            .collect()
    }
}

/// What a health check learned. Tolerant: any 2xx is healthy unless its JSON body says
/// otherwise (`status` of unhealthy / down / fail …, or `healthy` / `ok` false); fields the
/// monitor does not know never fail it, and capwatch's own are kept for the screen.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct HealthBody {
    pub healthy: bool,
    /// The `status` word, when the body had one.
    pub status: Option<String>,
    pub model: Option<String>,
    pub workers_alive: Option<u64>,
    pub queue_depth: Option<u64>,
    /// Requests the server is answering now (capwatch's `in_flight`).
    pub in_flight: Option<u64>,
    pub uptime_s: Option<f64>,
    /// The model variants a capwatch server lists (`models[].name`); empty for one model or
    /// a service that does not say.
    pub models: Vec<String>,
    /// A capwatch server's shadow copies and their agreement, when it has a shadow.
    pub shadow: Option<ShadowReport>,
}

/// Status words that mean up, and that mean down (compared without case).
const UP_WORDS: [&str; 8] = ["healthy", "ok", "up", "pass", "passing", "green", "ready", "serving"];
const DOWN_WORDS: [&str; 9] =
    ["unhealthy", "down", "fail", "failing", "error", "red", "unready", "not_serving", "loading"];

impl HealthBody {
    /// Reads an answer to the health check: `success` is whether the status was 2xx.
    pub fn read(success: bool, text: &str) -> Self {
        let json: serde_json::Value = serde_json::from_str(text).unwrap_or_default();
        let status = json.get("status").and_then(|s| s.as_str()).map(str::to_owned);
        let word = status.as_deref().map(str::to_ascii_lowercase);
        let flag = ["healthy", "ok"].iter().find_map(|key| json.get(key).and_then(serde_json::Value::as_bool));
        let says_down = word.as_deref().is_some_and(|w| DOWN_WORDS.contains(&w)) || flag == Some(false);
        let says_up = word.as_deref().is_some_and(|w| UP_WORDS.contains(&w)) || flag == Some(true);
        Self {
            healthy: success && !says_down,
            status: status.or_else(|| says_up.then(|| "ok".to_owned())),
            model: json.get("model").and_then(|m| m.as_str()).map(str::to_owned),
            workers_alive: json.get("workers_alive").and_then(serde_json::Value::as_u64),
            queue_depth: json.get("queue_depth").and_then(serde_json::Value::as_u64),
            in_flight: json.get("in_flight").and_then(serde_json::Value::as_u64),
            uptime_s: json.get("uptime_s").and_then(serde_json::Value::as_f64),
            models: json
                .get("models")
                .and_then(serde_json::Value::as_array)
                .map(|models| models.iter().filter_map(|m| m.get("name")?.as_str().map(str::to_owned)).collect())
                .unwrap_or_default(),
            shadow: json.get("shadow").and_then(|s| serde_json::from_value(s.clone()).ok()),
        }
    }
}

/// One health check.
#[derive(Debug, Clone, PartialEq)]
pub struct HealthCheck {
    pub at: Instant,
    pub latency: Duration,
    pub result: Result<HealthBody, ProbeError>,
}

impl HealthCheck {
    pub fn is_healthy(&self) -> bool {
        self.result.as_ref().is_ok_and(|body| body.healthy)
    }
}

/// A successful caption.
#[derive(Debug, Clone, PartialEq)]
pub struct CaptionResult {
    pub caption: String,
    /// Model time as the server reported it (capwatch: encoder + decoder), if it does.
    pub model_time: Option<Duration>,
    /// The server's own total, if it reports one.
    pub server_total: Option<Duration>,
    /// How long the request waited in the server's queue, if it says.
    pub server_queue: Option<Duration>,
    pub quality: KeywordMatch,
}

/// One inference test.
#[derive(Debug, Clone, PartialEq)]
pub struct InferenceProbe {
    pub at: Instant,
    pub image: String,
    pub latency: Duration,
    pub result: Result<CaptionResult, ProbeError>,
    /// The variant asked for by name, when the server has several (A/B).
    pub variant: Option<VariantTag>,
}

/// Which variant a probe asked for, and which round of the same image it belongs to: every
/// variant gets the image once per round, so their answers pair up.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VariantTag {
    pub name: String,
    pub round: u64,
}

fn ms(value: f64) -> Duration {
    Duration::from_secs_f64(value.max(0.0) / 1000.0)
}

/// Sends probes to one service, as its contract says.
#[derive(Debug, Clone)]
pub struct Prober {
    client: reqwest::Client,
    timeout: Duration,
    contract: Arc<ProbeContract>,
}

impl Prober {
    /// `timeout` bounds each probe, connection included; `ca_file` is trusted for `https://`
    /// services (the error names the file and why).
    pub fn new(timeout: Duration, contract: ProbeContract, ca_file: Option<&std::path::Path>) -> Result<Self, String> {
        let client = crate::http_client::builder(ca_file)?
            .build()
            .map_err(|err| format!("cannot build the probe client: {err}"))?;
        Ok(Self { client, timeout, contract: Arc::new(contract) })
    }

    fn url(base_url: &str, path: &str) -> String {
        if path == "/" { base_url.to_owned() } else { format!("{base_url}{path}") }
    }

    fn request(&self, method: reqwest::Method, url: String) -> reqwest::RequestBuilder {
        let request = self.client.request(method, url).timeout(self.timeout);
        self.contract.headers.iter().fold(request, |request, (name, value)| request.header(name, value))
    }

    pub async fn health(&self, base_url: &str) -> HealthCheck {
        let at = Instant::now();
        let method = match self.contract.health_method {
            HealthMethod::Get => reqwest::Method::GET,
            HealthMethod::Head => reqwest::Method::HEAD,
            HealthMethod::Post => reqwest::Method::POST,
        };
        let result = async {
            let url = Self::url(base_url, &self.contract.health_path);
            let response = self.request(method, url).send().await.map_err(|e| self.classify(e))?;
            let status = response.status();
            let text = response.text().await.map_err(|e| self.classify(e))?;
            let body = HealthBody::read(status.is_success(), &text);
            // A non-2xx answer without a body that explains it is an HTTP error.
            if !status.is_success() && body.status.is_none() {
                return Err(ProbeError::Http(status.as_u16()));
            }
            Ok(body)
        }
        .await;
        HealthCheck { at, latency: at.elapsed(), result }
    }

    /// A capwatch server's drift status (`GET /drift`); None when it does not answer one.
    pub async fn drift(&self, base_url: &str) -> Option<crate::protocol::drift::DriftStatus> {
        let response = self.request(reqwest::Method::GET, format!("{base_url}/drift")).send().await.ok()?;
        if !response.status().is_success() {
            return None;
        }
        response.json().await.ok()
    }

    /// Captions `image`; with a `variant`, asks for that one by name (`?model=`).
    pub async fn caption(&self, base_url: &str, image: &ProbeImage, variant: Option<VariantTag>) -> InferenceProbe {
        let at = Instant::now();
        let contract = &self.contract;
        let result = async {
            // Marked as a probe: a capwatch server keeps its fixed test images out of drift detection.
            let mut request = self
                .request(reqwest::Method::POST, Self::url(base_url, &contract.caption_path))
                .header(crate::protocol::drift::PROBE_HEADER, "1");
            if let Some(variant) = &variant {
                request = request.query(&[("model", variant.name.as_str())]);
            }
            let request = match contract.upload {
                Upload::Raw => {
                    request.header(reqwest::header::CONTENT_TYPE, image.content_type).body(image.bytes.clone())
                }
                Upload::Multipart => {
                    let part = reqwest::multipart::Part::stream(image.bytes.clone())
                        .file_name(image.name.clone())
                        .mime_str(image.content_type)
                        .map_err(|e| ProbeError::Other(e.to_string()))?;
                    request.multipart(reqwest::multipart::Form::new().part(contract.multipart_field.clone(), part))
                }
            };
            let response = request.send().await.map_err(|e| self.classify(e))?;
            let status = response.status();
            if !status.is_success() {
                return Err(ProbeError::Http(status.as_u16()));
            }
            let text = response.text().await.map_err(|e| self.classify(e))?;
            let answer: serde_json::Value = serde_json::from_str(&text)
                .map_err(|e| ProbeError::Shape(format!("the answer is not JSON ({e}): {}", excerpt(&text))))?;
            let caption = answer.pointer(&contract.caption_pointer).and_then(|c| c.as_str()).ok_or_else(|| {
                ProbeError::Shape(format!(
                    "no caption (a string) at {} in {}",
                    contract.caption_pointer,
                    excerpt(&text)
                ))
            })?;
            let number = |pointer: &str| answer.pointer(pointer).and_then(serde_json::Value::as_f64);
            let model_ms: Option<f64> = if contract.model_time_pointers.is_empty() {
                None
            } else {
                contract.model_time_pointers.iter().map(|p| number(p)).sum()
            };
            Ok(CaptionResult {
                quality: match_keywords(caption, &image.keywords),
                caption: caption.to_owned(),
                model_time: model_ms.map(ms),
                server_total: contract.server_time_pointer.as_deref().and_then(number).map(ms),
                server_queue: contract.queue_time_pointer.as_deref().and_then(number).map(ms),
            })
        }
        .await;
        InferenceProbe { at, image: image.name.clone(), latency: at.elapsed(), result, variant }
    }

    fn classify(&self, err: reqwest::Error) -> ProbeError {
        match classify(err) {
            ProbeError::Other(reason) => ProbeError::Other(self.contract.redact(&reason)),
            other => other,
        }
    }
}

/// The first 120 characters of an answer, for an error message.
fn excerpt(text: &str) -> String {
    const EXCERPT: usize = 120;
    let mut short: String = text.trim().chars().take(EXCERPT).collect();
    if text.trim().chars().count() > EXCERPT {
        short.push('…');
    }
    short
}

fn classify(err: reqwest::Error) -> ProbeError {
    if err.is_timeout() {
        ProbeError::Timeout
    } else if err.is_connect() {
        ProbeError::ConnectionRefused
    } else if let Some(status) = err.status() {
        ProbeError::Http(status.as_u16())
    } else {
        ProbeError::Other(err.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn health_is_tolerant_of_any_2xx_and_reads_what_it_knows() {
        let peer = HealthBody::read(true, r#"{"status": "healthy", "uptime_s": 3.5}"#);
        assert!(peer.healthy && peer.model.is_none() && peer.uptime_s == Some(3.5));
        assert!(HealthBody::read(true, "OK").healthy, "a plain-text 2xx");
        assert!(HealthBody::read(true, "").healthy, "an empty 2xx");
        assert!(HealthBody::read(true, r#"{"status": "UP", "checks": []}"#).healthy, "unknown fields");
        assert!(HealthBody::read(true, r#"{"status": "warming"}"#).healthy, "unknown words on a 2xx");
        assert!(!HealthBody::read(true, r#"{"status": "down"}"#).healthy);
        assert!(!HealthBody::read(true, r#"{"ok": false}"#).healthy);
        assert!(!HealthBody::read(false, r#"{"status": "healthy"}"#).healthy, "a 5xx is not healthy");
        let capwatch =
            HealthBody::read(true, r#"{"status":"healthy","model":"default","workers_alive":2,"queue_depth":0}"#);
        assert_eq!(
            (capwatch.model.as_deref(), capwatch.workers_alive, capwatch.queue_depth),
            (Some("default"), Some(2), Some(0))
        );
    }

    #[test]
    fn a_wrong_api_is_told_apart_from_a_failing_one() {
        assert!(ProbeError::Shape("no caption".to_owned()).contract_mismatch().is_some());
        assert!(ProbeError::Http(404).contract_mismatch().is_some());
        assert!(ProbeError::Http(422).contract_mismatch().is_some());
        assert_eq!(ProbeError::Http(500).contract_mismatch(), None);
        assert_eq!(ProbeError::Timeout.contract_mismatch(), None);
    }
}
