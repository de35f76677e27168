//! Probes of the captioning service over HTTP: health checks (`GET /health`) and inference
//! tests (`POST /caption` with a test image), each timed by the client and classified.
//!
//! The prober only measures and classifies; it knows nothing about the UI, statistics or
//! alerts. Scheduling (intervals, pause, "test now") belongs to the event loop.

use std::fmt;
use std::path::Path;
use std::time::Duration;

use bytes::Bytes;
use serde::Deserialize;
use tokio::time::Instant;

use crate::config::TestImage;
use crate::quality::{KeywordMatch, match_keywords};

/// Why a probe failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ProbeError {
    Timeout,
    ConnectionRefused,
    /// The server answered with this non-success status.
    Http(u16),
    /// 2xx, but not the JSON the API promises.
    BadBody(String),
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
            Self::BadBody(_) => "bad_body",
            Self::Other(_) => "other",
        }
    }
}

impl fmt::Display for ProbeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Timeout => f.write_str("timeout"),
            Self::ConnectionRefused => f.write_str("connection refused"),
            Self::Http(status) => write!(f, "HTTP {status}"),
            Self::BadBody(reason) => write!(f, "bad response body: {reason}"),
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

/// The parts of `/health` the monitor uses.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct HealthBody {
    pub status: String,
    pub model: String,
    #[serde(default)]
    pub uptime_s: f64,
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
        self.result.as_ref().is_ok_and(|body| body.status == "healthy")
    }
}

/// A successful caption.
#[derive(Debug, Clone, PartialEq)]
pub struct CaptionResult {
    pub caption: String,
    /// Encoder + decoder time as the server reported it.
    pub model_time: Duration,
    /// The server's own total (queue + decode + preprocess + model).
    pub server_total: Duration,
    pub quality: KeywordMatch,
}

/// One inference test.
#[derive(Debug, Clone, PartialEq)]
pub struct InferenceProbe {
    pub at: Instant,
    pub image: String,
    pub latency: Duration,
    pub result: Result<CaptionResult, ProbeError>,
}

#[derive(Deserialize)]
struct CaptionBody {
    caption: String,
    timings_ms: TimingsBody,
}

#[derive(Deserialize)]
struct TimingsBody {
    encoder: f64,
    decoder: f64,
    total: f64,
}

fn ms(value: f64) -> Duration {
    Duration::from_secs_f64(value.max(0.0) / 1000.0)
}

/// Sends probes to one service.
#[derive(Debug, Clone)]
pub struct Prober {
    client: reqwest::Client,
    timeout: Duration,
}

impl Prober {
    /// `timeout` bounds each probe, connection included.
    pub fn new(timeout: Duration) -> Self {
        Self { client: reqwest::Client::new(), timeout }
    }

    pub async fn health(&self, base_url: &str) -> HealthCheck {
        let at = Instant::now();
        let result = async {
            let response =
                self.client.get(format!("{base_url}/health")).timeout(self.timeout).send().await.map_err(classify)?;
            let status = response.status();
            let text = response.text().await.map_err(classify)?;
            // /health answers JSON on 503 too; an unhealthy body is a result, not an error.
            match serde_json::from_str::<HealthBody>(&text) {
                Ok(body) => Ok(body),
                Err(_) if !status.is_success() => Err(ProbeError::Http(status.as_u16())),
                Err(e) => Err(ProbeError::BadBody(e.to_string())),
            }
        }
        .await;
        HealthCheck { at, latency: at.elapsed(), result }
    }

    pub async fn caption(&self, base_url: &str, image: &ProbeImage) -> InferenceProbe {
        let at = Instant::now();
        let result = async {
            let response = self
                .client
                .post(format!("{base_url}/caption"))
                .header(reqwest::header::CONTENT_TYPE, image.content_type)
                .body(image.bytes.clone())
                .timeout(self.timeout)
                .send()
                .await
                .map_err(classify)?;
            let status = response.status();
            if !status.is_success() {
                return Err(ProbeError::Http(status.as_u16()));
            }
            let text = response.text().await.map_err(classify)?;
            let body: CaptionBody = serde_json::from_str(&text).map_err(|e| ProbeError::BadBody(e.to_string()))?;
            let quality = match_keywords(&body.caption, &image.keywords);
            Ok(CaptionResult {
                model_time: ms(body.timings_ms.encoder + body.timings_ms.decoder),
                server_total: ms(body.timings_ms.total),
                caption: body.caption,
                quality,
            })
        }
        .await;
        InferenceProbe { at, image: image.name.clone(), latency: at.elapsed(), result }
    }
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
