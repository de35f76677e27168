//! Prometheus metrics of the captioning server (`GET /metrics`).
//!
//! Names follow Prometheus conventions: `capwatch_` prefix, base units (seconds),
//! `_total` counters, low-cardinality labels (route templates, never raw paths).
//! This module only records and encodes; handlers decide what to record.

use std::sync::atomic::AtomicU64;
use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::{Registry, Unit};

use crate::engine::StageTimings;

pub const HTTP_REQUESTS: &str = "capwatch_http_requests";
pub const HTTP_REQUEST_DURATION: &str = "capwatch_http_request_duration";
pub const INFERENCE_STAGE_DURATION: &str = "capwatch_inference_stage_duration";
pub const CAPTION_SERVICE: &str = "capwatch_caption_service";
pub const GENERATED_TOKENS: &str = "capwatch_generated_tokens";
pub const BATCH_SIZE: &str = "capwatch_batch_size";
pub const QUEUE_DEPTH: &str = "capwatch_queue_depth";
pub const REQUESTS_IN_FLIGHT: &str = "capwatch_requests_in_flight";
pub const WORKERS_ALIVE: &str = "capwatch_workers_alive";
pub const READY: &str = "capwatch_ready";
pub const MODEL_INFO: &str = "capwatch_model_info";
pub const START_TIME: &str = "capwatch_start_time";
pub const CHAOS_ACTIVE: &str = "capwatch_chaos_active";
pub const CHAOS_HITS: &str = "capwatch_chaos_hits";
pub const AUTH_REJECTED: &str = "capwatch_auth_rejected";
pub const CONNECTIONS_OPEN: &str = "capwatch_connections_open";
pub const CONNECTIONS_CLOSED: &str = "capwatch_connections_closed";
pub const CAPTION_REQUESTS: &str = "capwatch_caption_requests";
pub const SHADOW_REQUESTS: &str = "capwatch_shadow_requests";
pub const DRIFT_SCORE: &str = "capwatch_drift_score";
pub const DRIFT_FEATURE_DRIFTED: &str = "capwatch_drift_feature_drifted";
pub const DRIFT_DETECTED: &str = "capwatch_drift_detected";
pub const DRIFT_LIVE_REQUESTS: &str = "capwatch_drift_live_requests";

/// Content type of the exposition (OpenMetrics text, which Prometheus scrapes natively).
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RouteStatusLabels {
    pub route: String,
    pub status: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RouteLabels {
    pub route: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct StageLabels {
    pub model: String,
    pub stage: &'static str,
}

/// Why a request's API key was refused: `missing` or `invalid`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct AuthLabels {
    pub reason: &'static str,
}

/// Why the server closed a connection on a client (`service.limits`): `header_timeout`,
/// `body_timeout`, `idle_timeout`, `too_many` or `tls_handshake`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct CloseLabels {
    pub reason: &'static str,
}

/// The model variant a series is about.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct VariantLabels {
    pub model: String,
}

/// A model variant and the size class of the batch a caption was made in.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct BatchLabels {
    pub model: String,
    /// `1`, `2`, `3-4`, `5-8` or `9+` images captioned together.
    pub batch: &'static str,
}

/// The batch-size classes of `capwatch_caption_service_seconds`: (label, smallest, largest).
pub const BATCH_CLASSES: [(&str, usize, usize); 5] =
    [("1", 1, 1), ("2", 2, 2), ("3-4", 3, 4), ("5-8", 5, 8), ("9+", 9, usize::MAX)];

fn batch_class(batch_size: usize) -> &'static str {
    BATCH_CLASSES.iter().find(|(_, low, high)| (*low..=*high).contains(&batch_size)).map_or("1", |(label, ..)| label)
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct VariantStatusLabels {
    pub model: String,
    pub status: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct FeatureLabels {
    pub feature: String,
    /// How it is judged: `ks`, `z`, `chi_square`, `wasserstein`, `jensen_shannon`, `new_words`, `mmd`.
    pub method: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ShadowLabels {
    pub model: String,
    /// `agreed`, `differed`, `failed` or `dropped`.
    pub outcome: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ModelLabels {
    pub model: String,
    pub layout: String,
    pub precision: String,
    pub version: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct FaultLabels {
    pub kind: &'static str,
}

fn request_histogram() -> Histogram {
    // 0.5 ms … ~65 s
    Histogram::new(exponential_buckets(0.0005, 2.0, 18))
}

fn batch_histogram() -> Histogram {
    Histogram::new([1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0])
}

fn stage_histogram() -> Histogram {
    // 50 µs … ~26 s
    Histogram::new(exponential_buckets(0.00005, 2.0, 20))
}

/// Fine buckets (20 % apart, 0.5 ms … ~28 s) for the service time `capwatch plan` models.
fn service_histogram() -> Histogram {
    Histogram::new(exponential_buckets(0.0005, 1.2, 61))
}

/// All server metrics and their registry.
pub struct Metrics {
    registry: Registry,
    pub http_requests: Family<RouteStatusLabels, Counter>,
    pub http_request_duration: Family<RouteLabels, Histogram, fn() -> Histogram>,
    pub inference_stage_duration: Family<StageLabels, Histogram, fn() -> Histogram>,
    /// A worker's time on one caption (decode to last token, the queue left out), by model and
    /// the size class of the batch it was made in.
    pub caption_service: Family<BatchLabels, Histogram, fn() -> Histogram>,
    pub generated_tokens: Family<VariantLabels, Counter>,
    pub batch_size: Family<VariantLabels, Histogram, fn() -> Histogram>,
    pub queue_depth: Family<VariantLabels, Gauge>,
    pub requests_in_flight: Gauge,
    pub workers_alive: Family<VariantLabels, Gauge>,
    /// Caption requests by the variant that answered and the status.
    pub caption_requests: Family<VariantStatusLabels, Counter>,
    /// Mirrored requests by shadow variant and outcome.
    pub shadow_requests: Family<ShadowLabels, Counter>,
    /// Per drift feature: its score (a p-value or a distance, as `method` says) and 0/1 drifted.
    pub drift_score: Family<FeatureLabels, Gauge<f64, AtomicU64>>,
    pub drift_feature_drifted: Family<FeatureLabels, Gauge>,
    /// 1 while the live window drifts from the reference.
    pub drift_detected: Gauge,
    pub drift_live_requests: Gauge,
    pub ready: Gauge,
    pub model_info: Family<ModelLabels, Gauge>,
    pub start_time: Gauge<f64, AtomicU64>,
    /// Injected faults in force, by kind (only with `--chaos`).
    pub chaos_active: Family<FaultLabels, Gauge>,
    /// Requests an injected fault hit, by kind.
    pub chaos_hits: Family<FaultLabels, Counter>,
    /// Requests refused for a missing or wrong API key (`service.auth`).
    pub auth_rejected: Family<AuthLabels, Counter>,
    /// Client connections open now.
    pub connections_open: Gauge,
    /// Connections the server closed on a slow, idle or surplus client, by reason.
    pub connections_closed: Family<CloseLabels, Counter>,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    pub fn new() -> Self {
        let mut registry = Registry::default();
        let http_requests = Family::<RouteStatusLabels, Counter>::default();
        registry.register(HTTP_REQUESTS, "HTTP requests by route template and status code", http_requests.clone());
        let http_request_duration =
            Family::<RouteLabels, Histogram, fn() -> Histogram>::new_with_constructor(request_histogram);
        registry.register_with_unit(
            HTTP_REQUEST_DURATION,
            "HTTP request duration, from first byte to response",
            Unit::Seconds,
            http_request_duration.clone(),
        );
        let inference_stage_duration =
            Family::<StageLabels, Histogram, fn() -> Histogram>::new_with_constructor(stage_histogram);
        registry.register_with_unit(
            INFERENCE_STAGE_DURATION,
            "Time per captioning stage (queue, decode, preprocess, encoder, decoder, total)",
            Unit::Seconds,
            inference_stage_duration.clone(),
        );
        let caption_service =
            Family::<BatchLabels, Histogram, fn() -> Histogram>::new_with_constructor(service_histogram);
        registry.register_with_unit(
            CAPTION_SERVICE,
            "A worker's time on one caption: decode, preprocess, encoder, decoder (the queue left out), by model and batch size class (1, 2, 3-4, 5-8, 9+); what `capwatch plan` models",
            Unit::Seconds,
            caption_service.clone(),
        );
        let generated_tokens = Family::<VariantLabels, Counter>::default();
        registry.register(GENERATED_TOKENS, "Tokens generated by the decoder, by model", generated_tokens.clone());
        let batch_size = Family::<VariantLabels, Histogram, fn() -> Histogram>::new_with_constructor(batch_histogram);
        registry.register(BATCH_SIZE, "Images per batch, observed once per caption, by model", batch_size.clone());
        let queue_depth = Family::<VariantLabels, Gauge>::default();
        registry.register(QUEUE_DEPTH, "Caption requests waiting for a worker, by model", queue_depth.clone());
        let requests_in_flight = Gauge::default();
        registry.register(REQUESTS_IN_FLIGHT, "HTTP requests being served", requests_in_flight.clone());
        let workers_alive = Family::<VariantLabels, Gauge>::default();
        registry.register(WORKERS_ALIVE, "Inference worker threads running, by model", workers_alive.clone());
        let caption_requests = Family::<VariantStatusLabels, Counter>::default();
        registry.register(
            CAPTION_REQUESTS,
            "Caption requests by the model variant that took them and the status answered",
            caption_requests.clone(),
        );
        let shadow_requests = Family::<ShadowLabels, Counter>::default();
        registry.register(
            SHADOW_REQUESTS,
            "Requests mirrored to the shadow model, by outcome: agreed / differed (its caption against the answer's), failed, dropped (queue full)",
            shadow_requests.clone(),
        );
        let ready = Gauge::default();
        registry.register(READY, "1 once the model is loaded and warmed up", ready.clone());
        let model_info = Family::<ModelLabels, Gauge>::default();
        registry.register(MODEL_INFO, "The served model (always 1)", model_info.clone());
        let start_time = Gauge::<f64, AtomicU64>::default();
        registry.register_with_unit(START_TIME, "Unix time the server started", Unit::Seconds, start_time.clone());
        if let Ok(since_epoch) = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH) {
            start_time.set(since_epoch.as_secs_f64());
        }
        let chaos_active = Family::<FaultLabels, Gauge>::default();
        registry.register(
            CHAOS_ACTIVE,
            "Injected faults in force (capwatch serve --chaos), by kind",
            chaos_active.clone(),
        );
        let chaos_hits = Family::<FaultLabels, Counter>::default();
        registry.register(CHAOS_HITS, "Requests an injected fault hit, by kind", chaos_hits.clone());
        let auth_rejected = Family::<AuthLabels, Counter>::default();
        registry.register(
            AUTH_REJECTED,
            "Requests refused with 401 for a missing or invalid API key (service.auth), by reason",
            auth_rejected.clone(),
        );
        let connections_open = Gauge::default();
        registry.register(CONNECTIONS_OPEN, "Client connections open now", connections_open.clone());
        let connections_closed = Family::<CloseLabels, Counter>::default();
        registry.register(
            CONNECTIONS_CLOSED,
            "Connections the server closed on a client that broke service.limits, by reason (header_timeout, body_timeout, idle_timeout, too_many, tls_handshake)",
            connections_closed.clone(),
        );
        let drift_score = Family::<FeatureLabels, Gauge<f64, AtomicU64>>::default();
        registry.register(
            DRIFT_SCORE,
            "Drift of the live window from the reference, per feature: a p-value (ks, z, chi_square, mmd: drift when small) or a distance or share (wasserstein, jensen_shannon, new_words: drift when large)",
            drift_score.clone(),
        );
        let drift_feature_drifted = Family::<FeatureLabels, Gauge>::default();
        registry.register(
            DRIFT_FEATURE_DRIFTED,
            "1 when the feature drifted by its test",
            drift_feature_drifted.clone(),
        );
        let drift_detected = Gauge::default();
        registry.register(
            DRIFT_DETECTED,
            "1 while enough features drift for the whole window to",
            drift_detected.clone(),
        );
        let drift_live_requests = Gauge::default();
        registry.register(DRIFT_LIVE_REQUESTS, "Requests in the live drift window", drift_live_requests.clone());
        Self {
            registry,
            http_requests,
            http_request_duration,
            inference_stage_duration,
            caption_service,
            generated_tokens,
            batch_size,
            queue_depth,
            requests_in_flight,
            workers_alive,
            caption_requests,
            shadow_requests,
            drift_score,
            drift_feature_drifted,
            drift_detected,
            drift_live_requests,
            ready,
            model_info,
            start_time,
            chaos_active,
            chaos_hits,
            auth_rejected,
            connections_open,
            connections_closed,
        }
    }

    /// Records one finished HTTP request.
    pub fn observe_request(&self, route: &str, status: u16, elapsed: Duration) {
        self.http_requests
            .get_or_create(&RouteStatusLabels { route: route.to_owned(), status: status.to_string() })
            .inc();
        self.http_request_duration
            .get_or_create(&RouteLabels { route: route.to_owned() })
            .observe(elapsed.as_secs_f64());
    }

    /// Records the stages of one caption by `model`.
    pub fn observe_caption(&self, model: &str, timings: &StageTimings, tokens: usize, batch_size: usize) {
        let stages = [
            ("queue", timings.queue),
            ("decode", timings.decode),
            ("preprocess", timings.preprocess),
            ("encoder", timings.encoder),
            ("decoder", timings.decoder),
            ("total", timings.total()),
        ];
        for (stage, duration) in stages {
            self.inference_stage_duration
                .get_or_create(&StageLabels { model: model.to_owned(), stage })
                .observe(duration.as_secs_f64());
        }
        let labels = VariantLabels { model: model.to_owned() };
        let service = timings.total().saturating_sub(timings.queue);
        let batch = BatchLabels { model: model.to_owned(), batch: batch_class(batch_size) };
        self.caption_service.get_or_create(&batch).observe(service.as_secs_f64());
        self.generated_tokens.get_or_create(&labels).inc_by(tokens as u64);
        self.batch_size.get_or_create(&labels).observe(batch_size as f64);
    }

    /// The exposition text.
    pub fn encode(&self) -> Result<String, std::fmt::Error> {
        let mut text = String::new();
        encode(&mut text, &self.registry)?;
        Ok(text)
    }
}
