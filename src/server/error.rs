//! API errors and the one place where HTTP status codes are chosen.
//!
//! Every error body is JSON: `{"error": "<human message>", "error_type": "<stable code>"}`.

use axum::Json;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;

use crate::engine::EngineError;

/// Seconds a client is asked to wait after a 503 for overload or start-up.
pub const RETRY_AFTER_S: u32 = 1;

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error(transparent)]
    Engine(#[from] EngineError),
    #[error("the model is still loading")]
    NotReady,
    #[error("request body is larger than the limit of {limit} bytes")]
    PayloadTooLarge { limit: usize },
    #[error(
        "unsupported content type `{0}`: send the image as multipart/form-data field `file`, or as the raw body with an image/* content type"
    )]
    UnsupportedMediaType(String),
    #[error("multipart request has no `file` field")]
    MissingFile,
    #[error("invalid multipart body: {0}")]
    InvalidMultipart(String),
    #[error("invalid parameter: {0}")]
    InvalidParameter(String),
    #[error("no model is named `{name}` (models: {known})")]
    UnknownModel { name: String, known: String },
    /// `POST /drift/baseline` with too few requests in the live window.
    #[error("{0}")]
    NotEnoughRequests(String),
    #[error("the request could not be read: {0}")]
    BodyRead(String),
    /// The body did not arrive whole within `service.limits.body_timeout_s`.
    #[error("the request body did not arrive within {timeout_s} s")]
    BodyTimeout { timeout_s: f64 },
    #[error("captioning took longer than {timeout_s} s")]
    Timeout { timeout_s: usize },
    #[error("internal error: {0}")]
    Internal(String),
    /// A protected route asked without one of the API keys (`service.auth`).
    #[error("{0}")]
    Unauthorized(KeyProblem),
    /// An `errors` fault of `serve --chaos` answered instead of the model.
    #[error("error {status} injected by capwatch chaos (an `errors` fault is in force)")]
    Injected { status: u16 },
}

/// Why a request's API key was refused (the message never repeats what was sent).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyProblem {
    Missing,
    Invalid,
}

impl KeyProblem {
    /// The `reason` label of `capwatch_auth_rejected_total`.
    pub fn label(self) -> &'static str {
        match self {
            Self::Missing => "missing",
            Self::Invalid => "invalid",
        }
    }
}

impl std::fmt::Display for KeyProblem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Missing => f.write_str("this route needs an API key: send `Authorization: Bearer <key>`"),
            Self::Invalid => f.write_str("the API key is not one of the server's keys"),
        }
    }
}

/// The JSON error body.
#[derive(Debug, Serialize)]
pub struct ErrorBody {
    pub error: String,
    pub error_type: &'static str,
}

impl ApiError {
    pub fn status(&self) -> StatusCode {
        match self {
            Self::Engine(err) => match err {
                EngineError::EmptyImage
                | EngineError::InvalidMaxNewTokens { .. }
                | EngineError::InvalidNumBeams { .. } => StatusCode::BAD_REQUEST,
                EngineError::UnsupportedImageFormat => StatusCode::UNSUPPORTED_MEDIA_TYPE,
                EngineError::InvalidImage(_) | EngineError::ImageTooLarge { .. } => StatusCode::UNPROCESSABLE_ENTITY,
                EngineError::Overloaded { .. } | EngineError::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
                EngineError::Runtime(_) | EngineError::ModelLoad { .. } | EngineError::Inference(_) => {
                    StatusCode::INTERNAL_SERVER_ERROR
                }
            },
            Self::NotReady => StatusCode::SERVICE_UNAVAILABLE,
            Self::PayloadTooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            Self::UnsupportedMediaType(_) => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            Self::MissingFile
            | Self::InvalidMultipart(_)
            | Self::InvalidParameter(_)
            | Self::UnknownModel { .. }
            | Self::BodyRead(_) => StatusCode::BAD_REQUEST,
            Self::Timeout { .. } => StatusCode::GATEWAY_TIMEOUT,
            Self::BodyTimeout { .. } => StatusCode::REQUEST_TIMEOUT,
            Self::Unauthorized(_) => StatusCode::UNAUTHORIZED,
            Self::NotEnoughRequests(_) => StatusCode::CONFLICT,
            Self::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
            Self::Injected { status } => StatusCode::from_u16(*status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR),
        }
    }

    pub fn error_type(&self) -> &'static str {
        match self {
            Self::Engine(err) => match err {
                EngineError::EmptyImage => "empty_image",
                EngineError::UnsupportedImageFormat => "unsupported_image_format",
                EngineError::InvalidImage(_) => "invalid_image",
                EngineError::ImageTooLarge { .. } => "image_too_large",
                EngineError::InvalidMaxNewTokens { .. } | EngineError::InvalidNumBeams { .. } => "invalid_parameter",
                EngineError::Overloaded { .. } => "overloaded",
                EngineError::Unavailable => "unavailable",
                EngineError::Runtime(_) | EngineError::ModelLoad { .. } => "model_error",
                EngineError::Inference(_) => "inference_error",
            },
            Self::NotReady => "not_ready",
            Self::PayloadTooLarge { .. } => "payload_too_large",
            Self::UnsupportedMediaType(_) => "unsupported_media_type",
            Self::MissingFile => "missing_file",
            Self::InvalidMultipart(_) => "invalid_multipart",
            Self::InvalidParameter(_) => "invalid_parameter",
            Self::UnknownModel { .. } => "unknown_model",
            Self::NotEnoughRequests(_) => "not_enough_requests",
            Self::BodyRead(_) => "body_read_error",
            Self::Timeout { .. } => "timeout",
            Self::BodyTimeout { .. } => "body_timeout",
            Self::Internal(_) => "internal_error",
            Self::Injected { .. } => "chaos_injected",
            Self::Unauthorized(_) => "unauthorized",
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = self.status();
        if status.is_server_error() {
            tracing::warn!(error = %self, error_type = self.error_type(), "request failed");
        }
        let body = ErrorBody { error: self.to_string(), error_type: self.error_type() };
        let mut response = (status, Json(body)).into_response();
        if status == StatusCode::SERVICE_UNAVAILABLE {
            response.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from(RETRY_AFTER_S));
        }
        // A client too slow to send its body, or sending one too large, gets no second request
        // on this connection.
        if matches!(status, StatusCode::REQUEST_TIMEOUT | StatusCode::PAYLOAD_TOO_LARGE) {
            response.headers_mut().insert(header::CONNECTION, HeaderValue::from_static("close"));
        }
        if status == StatusCode::UNAUTHORIZED {
            let challenge = HeaderValue::from_static(r#"Bearer realm="capwatch""#);
            response.headers_mut().insert(header::WWW_AUTHENTICATE, challenge);
        }
        response
    }
}

/// The 404 of a path that does not exist (and of a loopback-only route asked from elsewhere).
pub fn not_found_response() -> Response {
    (
        StatusCode::NOT_FOUND,
        Json(ErrorBody { error: "no such endpoint; see /docs".to_owned(), error_type: "not_found" }),
    )
        .into_response()
}
