//! One request's body, within `service.max_body_bytes` and `service.limits.body_timeout_s`:
//! refused with `413` from its `Content-Length` before a byte of it is read, with `408` when it
//! has not arrived whole in time; the routes get it buffered. It must not look at what the
//! body holds.

use std::sync::Arc;

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::header;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use super::AppState;
use super::error::ApiError;
use super::metrics::CloseLabels;

/// Reads the body of `request` (after its key was checked) before the route sees it.
pub async fn read_body_in_time(State(state): State<Arc<AppState>>, request: Request, next: Next) -> Response {
    let limit = state.config.max_body_bytes.get();
    let declared = request
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.trim().parse::<u64>().ok());
    if declared.is_some_and(|length| length > limit as u64) {
        return ApiError::PayloadTooLarge { limit }.into_response();
    }
    let (parts, body) = request.into_parts();
    let timeout = state.config.limits.body_timeout_s.0;
    match tokio::time::timeout(timeout, axum::body::to_bytes(body, limit)).await {
        Err(_elapsed) => {
            state.metrics.connections_closed.get_or_create(&CloseLabels { reason: "body_timeout" }).inc();
            ApiError::BodyTimeout { timeout_s: timeout.as_secs_f64() }.into_response()
        }
        Ok(Err(err)) => {
            let inner = err.into_inner();
            if inner.downcast_ref::<http_body_util::LengthLimitError>().is_some() {
                ApiError::PayloadTooLarge { limit }.into_response()
            } else {
                ApiError::BodyRead(inner.to_string()).into_response()
            }
        }
        Ok(Ok(bytes)) => next.run(Request::from_parts(parts, Body::from(bytes))).await,
    }
}
