//! HTTP handlers and the router: `/caption`, `/health`, `/ready`, `/metrics`, `/drift`,
//! `/openapi.json`, `/docs`, and (in [`super::control`]) the routes that change the server
//! from this machine. Handlers translate HTTP to engine calls and back; status codes come
//! from [`ApiError`], metric names from [`super::metrics`].

use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::body::{Body, Bytes};
use axum::extract::{DefaultBodyLimit, FromRequest, MatchedPath, Multipart, Query, Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::{Deserialize, Serialize};

use super::AppState;
use super::control::{chaos_clear, chaos_inject, chaos_list, drift_baseline};
use super::error::{ApiError, not_found_response};
use super::metrics::FeatureLabels;
use super::metrics::{CONTENT_TYPE as METRICS_CONTENT_TYPE, ModelLabels, VariantLabels, VariantStatusLabels};
use super::shadow::{Copy, Shadow};
use super::variants::{KEY_HEADER, MODEL_HEADER, Routed, Variant};
use crate::drift::embedding::project;
use crate::drift::profile::{CaptionProfile, RequestProfile};
use crate::engine::{Caption, Engine, StageTimings};
use crate::protocol::drift::{DriftStatus, PROBE_HEADER};
use crate::protocol::faults::FaultKind;
use crate::protocol::shadow::ShadowReport;

/// The OpenAPI document, written by hand and checked against the live API by tests.
const OPENAPI_JSON: &str = include_str!("../../assets/openapi.json");
/// The offline API page (no CDN): renders `/openapi.json` and can send a test image.
const DOCS_HTML: &str = include_str!("../../assets/docs.html");
pub const VERSION: &str = env!("CARGO_PKG_VERSION");

/// Builds the router over shared state (`/chaos` only when fault injection is enabled).
pub fn router(state: Arc<AppState>) -> Router {
    let body_limit = state.config.max_body_bytes.get();
    // Routes that caption or change the server need a key when `service.auth` is set; the
    // others too when `auth.protect_all` says so.
    let mut protected = Router::new()
        .route("/caption", post(caption))
        .route("/drift", get(drift_status))
        .route("/drift/baseline", post(drift_baseline));
    if state.chaos.is_some() {
        protected = protected.route("/chaos", post(chaos_inject).get(chaos_list).delete(chaos_clear));
    }
    let open = Router::new()
        .route("/health", get(health))
        .route("/ready", get(ready))
        .route("/metrics", get(metrics))
        .route("/openapi.json", get(openapi))
        .route("/docs", get(docs));
    // Bodies are read within the limits only once the key is checked (the later layer runs first).
    let read_body = || middleware::from_fn_with_state(Arc::clone(&state), super::limits::read_body_in_time);
    let require_key = || middleware::from_fn_with_state(Arc::clone(&state), super::auth::require_key);
    let protect_all = state.config.auth.as_ref().is_some_and(|auth| auth.protect_all);
    let open = open.route_layer(read_body());
    let open = if protect_all { open.route_layer(require_key()) } else { open };
    protected
        .route_layer(read_body())
        .route_layer(require_key())
        .merge(open)
        .fallback(not_found)
        // Multipart bodies are limited by axum; raw bodies are limited in `read_raw_body`.
        .layer(DefaultBodyLimit::max(body_limit))
        .layer(middleware::from_fn_with_state(Arc::clone(&state), track_requests))
        .with_state(state)
}

/// Records every request in the HTTP metrics, by route template.
async fn track_requests(State(state): State<Arc<AppState>>, request: Request, next: Next) -> Response {
    let route =
        request.extensions().get::<MatchedPath>().map_or_else(|| "unmatched".to_owned(), |p| p.as_str().to_owned());
    let started = Instant::now();
    state.metrics.requests_in_flight.inc();
    let response = next.run(request).await;
    state.metrics.requests_in_flight.dec();
    state.metrics.observe_request(&route, response.status().as_u16(), started.elapsed());
    response
}

async fn not_found() -> Response {
    not_found_response()
}

/// Records the variant `name` in `capwatch_model_info` once it is loaded.
pub fn publish_model_info(state: &AppState, name: &str, engine: &Engine) {
    let spec = engine.spec();
    state
        .metrics
        .model_info
        .get_or_create(&ModelLabels {
            model: name.to_owned(),
            layout: spec.layout_name(),
            precision: spec.precision.clone(),
            version: VERSION.to_owned(),
        })
        .set(1);
}

#[derive(Debug, Deserialize)]
pub struct CaptionParams {
    pub max_new_tokens: Option<usize>,
    pub num_beams: Option<usize>,
    /// The variant to answer (also `X-Capwatch-Model`).
    pub model: Option<String>,
}

/// Server-side stage timings in milliseconds.
#[derive(Debug, Serialize, Deserialize, PartialEq)]
pub struct TimingsMs {
    pub queue: f64,
    pub decode: f64,
    pub preprocess: f64,
    pub encoder: f64,
    pub decoder: f64,
    pub total: f64,
}

impl From<&StageTimings> for TimingsMs {
    fn from(t: &StageTimings) -> Self {
        let ms = |d: Duration| (d.as_secs_f64() * 1e6).round() / 1e3;
        Self {
            queue: ms(t.queue),
            decode: ms(t.decode),
            preprocess: ms(t.preprocess),
            encoder: ms(t.encoder),
            decoder: ms(t.decoder),
            total: ms(t.total()),
        }
    }
}

#[derive(Debug, Serialize, Deserialize)]
pub struct CaptionResponse {
    pub caption: String,
    pub model: String,
    /// Tokens generated, the stop token included.
    pub tokens: usize,
    /// Images captioned together with this one as one batch (itself included).
    pub batch_size: usize,
    /// Beams searched (1: greedy decoding).
    pub num_beams: usize,
    pub timings_ms: TimingsMs,
}

/// What a caption request carried.
#[derive(Default)]
struct CaptionInput {
    image: Bytes,
    max_new_tokens: Option<usize>,
    num_beams: Option<usize>,
}

async fn caption(
    State(state): State<Arc<AppState>>,
    params: Result<Query<CaptionParams>, axum::extract::rejection::QueryRejection>,
    request: Request,
) -> Response {
    let params = match params {
        Ok(Query(params)) => params,
        Err(rejection) => return ApiError::InvalidParameter(rejection.body_text()).into_response(),
    };
    // In a block: `Request` is not `Sync`, so a borrow of it must not live across an await.
    let (named, key, probe) = {
        let header = |name: &str| request.headers().get(name).and_then(|v| v.to_str().ok()).map(str::to_owned);
        (params.model.clone().or_else(|| header(MODEL_HEADER)), header(KEY_HEADER), header(PROBE_HEADER).is_some())
    };
    let Some((variant, routed)) = state.variants.choose(named.as_deref(), key.as_deref()) else {
        let name = named.unwrap_or_default();
        return ApiError::UnknownModel { name, known: state.variants.names().join(", ") }.into_response();
    };
    let response =
        caption_on(&state, variant, routed, probe, &params, request).await.unwrap_or_else(IntoResponse::into_response);
    let labels = VariantStatusLabels { model: variant.name.clone(), status: response.status().as_u16().to_string() };
    state.metrics.caption_requests.get_or_create(&labels).inc();
    response
}

/// Serves a caption request on `variant` (chaos first, then the engine), and hands a copy to
/// the shadow when it wants one.
async fn caption_on(
    state: &Arc<AppState>,
    variant: &Variant,
    routed: Routed,
    probe: bool,
    params: &CaptionParams,
    request: Request,
) -> Result<Response, ApiError> {
    if let Some(chaos) = &state.chaos {
        chaos.hold_while_hung(&state.metrics).await;
        if let Some(delay) = chaos.added_latency(&variant.name, &state.metrics) {
            tokio::time::sleep(delay).await;
        }
        if let Some(status) = chaos.injected_error(&variant.name, &state.metrics) {
            return Err(ApiError::Injected { status });
        }
    }
    let engine = variant.engine.get().ok_or(ApiError::NotReady)?;
    let input = read_caption_input(state, request).await?;
    let max_new_tokens = input.max_new_tokens.or(params.max_new_tokens);
    let num_beams = input.num_beams.or(params.num_beams);
    let timeout_s = state.config.request_timeout_s.get();
    let caption = tokio::time::timeout(
        Duration::from_secs(timeout_s as u64),
        engine.caption(input.image.clone(), max_new_tokens, num_beams),
    )
    .await
    .map_err(|_| ApiError::Timeout { timeout_s })??;
    state.metrics.observe_caption(&variant.name, &caption.timings, caption.token_ids.len(), caption.batch_size);
    let garbage = state.chaos.as_ref().and_then(|chaos| chaos.garbage(&variant.name, &caption.text, &state.metrics));
    let mut caption = Caption { text: garbage.unwrap_or(caption.text), ..caption };
    // Real traffic only: the dashboard's probes send the same few images over and over.
    if let Some(image) = caption.image_profile.take().filter(|_| !probe) {
        let caption_profile = CaptionProfile::of(&caption.text, caption.token_ids.len());
        let embedding = caption.pooled_embedding.take().map(|pooled| project(&pooled));
        state.drift.record(RequestProfile { image: *image, caption: caption_profile, embedding });
    }
    if let Some(shadow) = &state.shadow
        && routed != Routed::Explicit
        && shadow.model != variant.name
        && shadow.wants_copy()
    {
        let copy = Copy { image: input.image, max_new_tokens, num_beams, answered: caption.text.clone() };
        Shadow::mirror(state, copy);
    }
    Ok(caption_response(&variant.name, &caption))
}

fn caption_response(model: &str, caption: &Caption) -> Response {
    let timings = TimingsMs::from(&caption.timings);
    let server_timing = format!(
        "queue;dur={}, decode;dur={}, preprocess;dur={}, encoder;dur={}, decoder;dur={}, total;dur={}",
        timings.queue, timings.decode, timings.preprocess, timings.encoder, timings.decoder, timings.total
    );
    let body = CaptionResponse {
        caption: caption.text.clone(),
        model: model.to_owned(),
        tokens: caption.token_ids.len(),
        batch_size: caption.batch_size,
        num_beams: caption.num_beams,
        timings_ms: timings,
    };
    let mut response = Json(body).into_response();
    if let Ok(value) = HeaderValue::from_str(&server_timing) {
        response.headers_mut().insert("server-timing", value);
    }
    response
}

/// Accepts multipart (`file`, optional `max_new_tokens` and `num_beams`) or a raw `image/*` body.
async fn read_caption_input(state: &Arc<AppState>, request: Request) -> Result<CaptionInput, ApiError> {
    let content_type = content_type(request.headers());
    let limit = state.config.max_body_bytes.get();
    if content_type.starts_with("multipart/form-data") {
        let mut multipart =
            Multipart::from_request(request, state).await.map_err(|e| ApiError::InvalidMultipart(e.body_text()))?;
        let mut input = CaptionInput::default();
        let mut found_file = false;
        while let Some(field) = multipart.next_field().await.map_err(|e| multipart_error(&e, limit))? {
            match field.name() {
                Some("file") => {
                    input.image = field.bytes().await.map_err(|e| multipart_error(&e, limit))?;
                    found_file = true;
                }
                Some(name @ ("max_new_tokens" | "num_beams")) => {
                    let name = name.to_owned();
                    let text = field.text().await.map_err(|e| multipart_error(&e, limit))?;
                    let value = text.trim().parse::<usize>().map_err(|_| {
                        ApiError::InvalidParameter(format!("{name} must be a positive integer, got `{text}`"))
                    })?;
                    if name == "num_beams" {
                        input.num_beams = Some(value);
                    } else {
                        input.max_new_tokens = Some(value);
                    }
                }
                // Unknown fields are read and ignored, as browsers add their own.
                _ => {}
            }
        }
        if !found_file {
            return Err(ApiError::MissingFile);
        }
        Ok(input)
    } else if content_type.starts_with("image/") || content_type.starts_with("application/octet-stream") {
        Ok(CaptionInput { image: read_raw_body(request.into_body(), limit).await?, ..CaptionInput::default() })
    } else if content_type.is_empty() {
        Err(ApiError::UnsupportedMediaType("(none)".to_owned()))
    } else {
        Err(ApiError::UnsupportedMediaType(content_type))
    }
}

/// Reads a raw body, refusing it as soon as it passes `limit` bytes.
async fn read_raw_body(body: Body, limit: usize) -> Result<Bytes, ApiError> {
    axum::body::to_bytes(body, limit).await.map_err(|err| {
        let inner = err.into_inner();
        if inner.downcast_ref::<http_body_util::LengthLimitError>().is_some() {
            ApiError::PayloadTooLarge { limit }
        } else {
            ApiError::BodyRead(inner.to_string())
        }
    })
}

fn multipart_error(err: &axum::extract::multipart::MultipartError, limit: usize) -> ApiError {
    if err.status() == StatusCode::PAYLOAD_TOO_LARGE {
        ApiError::PayloadTooLarge { limit }
    } else {
        ApiError::InvalidMultipart(err.body_text())
    }
}

fn content_type(headers: &HeaderMap) -> String {
    headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .map(|v| v.trim().to_ascii_lowercase())
        .unwrap_or_default()
}

#[derive(Debug, Serialize, Deserialize)]
pub struct HealthResponse {
    pub status: String,
    pub model: String,
    pub layout: Option<String>,
    /// Weight precision (`fp32`, `int8`, `int4`), once loaded.
    pub precision: Option<String>,
    /// Beams a caption gets when the request does not say (1: greedy), once loaded.
    pub num_beams: Option<usize>,
    pub ready: bool,
    pub workers_alive: usize,
    pub queue_depth: usize,
    /// HTTP requests being answered now (this one excluded).
    #[serde(default)]
    pub in_flight: u64,
    pub uptime_s: f64,
    pub version: String,
    /// Every model variant served, in order (one unless the server runs several).
    #[serde(default)]
    pub models: Vec<ModelHealth>,
    /// The shadow variant's copies and how often they agreed, when there is one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub shadow: Option<ShadowReport>,
}

/// One variant in `/health`.
#[derive(Debug, Serialize, Deserialize)]
pub struct ModelHealth {
    pub name: String,
    /// Share of the routed requests relative to the others (0: only when named).
    pub weight: u32,
    pub ready: bool,
    pub layout: Option<String>,
    pub precision: Option<String>,
    pub num_beams: Option<usize>,
    pub workers_alive: usize,
    pub queue_depth: usize,
}

impl ModelHealth {
    fn of(variant: &Variant) -> Self {
        let engine = variant.engine.get();
        Self {
            name: variant.name.clone(),
            weight: variant.weight,
            ready: engine.is_some(),
            layout: engine.map(|e| e.spec().layout_name()),
            precision: engine.map(|e| e.spec().precision.clone()),
            num_beams: engine.map(|e| e.spec().generation.beam.num_beams),
            workers_alive: engine.map_or(0, Engine::workers_alive),
            queue_depth: engine.map_or(0, Engine::queue_depth),
        }
    }
}

/// `hang` holds the request; `unready` makes it fail.
async fn chaos_says_unready(state: &AppState) -> bool {
    let Some(chaos) = &state.chaos else { return false };
    chaos.hold_while_hung(&state.metrics).await;
    chaos.is_active(FaultKind::Unready, &state.metrics)
}

async fn health(State(state): State<Arc<AppState>>) -> Response {
    let unready = chaos_says_unready(&state).await;
    let models: Vec<ModelHealth> = state.variants.iter().map(ModelHealth::of).collect();
    let ready = models.iter().all(|m| m.ready);
    let healthy = ready && models.iter().all(|m| m.workers_alive > 0) && !unready;
    let first = models.first();
    let body = HealthResponse {
        status: if healthy { "healthy" } else { "unhealthy" }.to_owned(),
        model: state.variants.names().join(", "),
        layout: first.and_then(|m| m.layout.clone()),
        precision: first.and_then(|m| m.precision.clone()),
        num_beams: first.and_then(|m| m.num_beams),
        ready,
        workers_alive: models.iter().map(|m| m.workers_alive).sum(),
        queue_depth: models.iter().map(|m| m.queue_depth).sum(),
        in_flight: u64::try_from(state.metrics.requests_in_flight.get()).unwrap_or(0).saturating_sub(1),
        uptime_s: (state.started_at.elapsed().as_secs_f64() * 1000.0).round() / 1000.0,
        version: VERSION.to_owned(),
        shadow: state.shadow.as_ref().map(Shadow::report),
        models,
    };
    let status = if healthy { StatusCode::OK } else { StatusCode::SERVICE_UNAVAILABLE };
    (status, Json(body)).into_response()
}

#[derive(Debug, Serialize, Deserialize)]
pub struct ReadyResponse {
    pub ready: bool,
}

async fn ready(State(state): State<Arc<AppState>>) -> Response {
    let unready = chaos_says_unready(&state).await;
    let ready = state.variants.all_loaded() && !unready;
    let status = if ready { StatusCode::OK } else { StatusCode::SERVICE_UNAVAILABLE };
    (status, Json(ReadyResponse { ready })).into_response()
}

async fn metrics(State(state): State<Arc<AppState>>) -> Result<Response, ApiError> {
    let metrics = &state.metrics;
    for variant in state.variants.iter() {
        let labels = VariantLabels { model: variant.name.clone() };
        let engine = variant.engine.get();
        metrics.queue_depth.get_or_create(&labels).set(engine.map_or(0, Engine::queue_depth) as i64);
        metrics.workers_alive.get_or_create(&labels).set(engine.map_or(0, Engine::workers_alive) as i64);
    }
    metrics.ready.set(i64::from(state.variants.all_loaded()));
    // Comparing the drift windows takes a few milliseconds of CPU: off the async workers.
    let worker = Arc::clone(&state);
    if let Ok(status) = tokio::task::spawn_blocking(move || worker.drift.status()).await {
        publish_drift(&state, &status);
    }
    let text = metrics.encode().map_err(|e| ApiError::Internal(e.to_string()))?;
    Ok(([(header::CONTENT_TYPE, METRICS_CONTENT_TYPE)], text).into_response())
}

/// Sets the drift series from `status` (features not judged now keep their last values).
fn publish_drift(state: &AppState, status: &DriftStatus) {
    let metrics = &state.metrics;
    metrics.drift_live_requests.set(status.live_size as i64);
    let Some(report) = &status.report else { return };
    for feature in &report.features {
        let labels = FeatureLabels { feature: feature.feature.clone(), method: feature.test.name() };
        metrics.drift_score.get_or_create(&labels).set(feature.score);
        metrics.drift_feature_drifted.get_or_create(&labels).set(i64::from(feature.drifted));
    }
    metrics.drift_detected.set(i64::from(report.detected));
}

/// `GET /drift`: the live window against the reference, per feature.
async fn drift_status(State(state): State<Arc<AppState>>) -> Response {
    // Comparing windows takes a few milliseconds of CPU: off the async workers.
    let worker = Arc::clone(&state);
    match tokio::task::spawn_blocking(move || worker.drift.status()).await {
        Ok(status) => {
            publish_drift(&state, &status);
            Json(status).into_response()
        }
        Err(err) => ApiError::Internal(err.to_string()).into_response(),
    }
}

async fn openapi(State(state): State<Arc<AppState>>) -> Response {
    let document = OPENAPI_JSON.replace("{{VERSION}}", VERSION);
    let document = match serde_json::from_str::<serde_json::Value>(&document) {
        Ok(mut value) => {
            document_this_server(&mut value, &state);
            if let Some(auth) = &state.config.auth {
                super::auth::document_security(&mut value, auth.protect_all);
            }
            value.to_string()
        }
        // The bundled document is checked by the tests; served as it is if it ever did not parse.
        Err(_) => document,
    };
    ([(header::CONTENT_TYPE, "application/json")], document).into_response()
}

/// Writes what this server enforces into the `/caption` parameters: the names of its model
/// variants (anything else is a 400 `unknown_model`) and its limits on `max_new_tokens` and
/// `num_beams`, so that every request the document allows is one the server accepts.
fn document_this_server(document: &mut serde_json::Value, state: &AppState) {
    let names: Vec<&str> = state.variants.iter().map(|variant| variant.name.as_str()).collect();
    let Some(parameters) =
        document.pointer_mut("/paths/~1caption/post/parameters").and_then(serde_json::Value::as_array_mut)
    else {
        return;
    };
    for parameter in parameters {
        let name = parameter["name"].as_str().unwrap_or_default().to_owned();
        let schema = &mut parameter["schema"];
        match name.as_str() {
            "model" | "X-Capwatch-Model" => schema["enum"] = serde_json::json!(names),
            "max_new_tokens" => schema["maximum"] = state.config.max_new_tokens_limit.get().into(),
            "num_beams" => schema["maximum"] = state.config.max_num_beams.get().into(),
            "X-Capwatch-Key" => schema["minLength"] = 1.into(),
            _ => {}
        }
    }
    let multipart = "/paths/~1caption/post/requestBody/content/multipart~1form-data/schema/properties";
    if let Some(fields) = document.pointer_mut(multipart) {
        fields["max_new_tokens"]["maximum"] = state.config.max_new_tokens_limit.get().into();
        fields["num_beams"]["maximum"] = state.config.max_num_beams.get().into();
    }
}

async fn docs() -> Html<&'static str> {
    Html(DOCS_HTML)
}
