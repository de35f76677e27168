//! The routes that change the server, answered only from this machine: `/chaos` (fault
//! injection, with `--chaos`) and `POST /drift/baseline`. To anyone else they do not exist
//! (404, as an unknown path). [`FromThisMachine`] is the one loopback guard.

use std::net::SocketAddr;
use std::sync::Arc;

use axum::Json;
use axum::extract::{ConnectInfo, FromRequestParts, State};
use axum::http::StatusCode;
use axum::http::request::Parts;
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};

use super::AppState;
use super::chaos;
use super::drift::ReferenceError;
use super::error::{ApiError, not_found_response};
use crate::protocol::faults::{ActiveFault, CRASH_DELAY, FaultKind, FaultSpec};

/// A request from this machine (a loopback peer). A handler that takes it answers anyone
/// else 404, before reading anything else of the request.
pub struct FromThisMachine;

impl<S: Send + Sync> FromRequestParts<S> for FromThisMachine {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        let peer = ConnectInfo::<SocketAddr>::from_request_parts(parts, state).await.map(|ConnectInfo(peer)| peer);
        match peer {
            Ok(peer) if peer.ip().is_loopback() => Ok(Self),
            _ => Err(not_found_response()),
        }
    }
}

/// `POST /chaos`: starts a fault (JSON [`FaultSpec`]); `crash` exits right after answering.
/// Like the other `/chaos` routes it answers only this machine; to anyone else it does not exist.
pub(super) async fn chaos_inject(
    _: FromThisMachine,
    State(state): State<Arc<AppState>>,
    spec: Result<Json<FaultSpec>, axum::extract::rejection::JsonRejection>,
) -> Response {
    let Some(chaos) = state.chaos.as_ref() else {
        return not_found_response();
    };
    let spec = match spec {
        Ok(Json(spec)) => spec,
        Err(rejection) => return ApiError::InvalidParameter(rejection.body_text()).into_response(),
    };
    if let Some(name) = &spec.model
        && state.variants.get(name).is_none()
    {
        return ApiError::UnknownModel { name: name.clone(), known: state.variants.names().join(", ") }.into_response();
    }
    let fault = match chaos.inject(spec, &state.metrics) {
        Ok(fault) => fault,
        Err(message) => return ApiError::InvalidParameter(message).into_response(),
    };
    if fault.spec.kind == FaultKind::Crash {
        let exit_code = fault.spec.exit_code;
        tokio::spawn(async move {
            tokio::time::sleep(CRASH_DELAY).await;
            tracing::error!(exit_code, "chaos: crashing on purpose");
            std::process::exit(exit_code);
        });
    }
    (StatusCode::CREATED, Json(fault)).into_response()
}

#[derive(Debug, Serialize, Deserialize)]
pub struct ChaosList {
    pub faults: Vec<ActiveFault>,
}

/// `GET /chaos`: the faults in force.
pub(super) async fn chaos_list(_: FromThisMachine, State(state): State<Arc<AppState>>) -> Response {
    let faults = state.chaos.as_ref().map(chaos::Chaos::active).unwrap_or_default();
    Json(ChaosList { faults }).into_response()
}

#[derive(Debug, Serialize, Deserialize)]
pub struct ChaosCleared {
    pub cleared: usize,
    /// The faults ended, as they were (requests hit included).
    pub faults: Vec<ActiveFault>,
}

/// `DELETE /chaos`: ends every fault now.
pub(super) async fn chaos_clear(_: FromThisMachine, State(state): State<Arc<AppState>>) -> Response {
    let faults = state.chaos.as_ref().map(|chaos| chaos.clear(&state.metrics)).unwrap_or_default();
    Json(ChaosCleared { cleared: faults.len(), faults }).into_response()
}

/// `POST /drift/baseline`: freezes the live window as the reference (loopback only).
pub(super) async fn drift_baseline(_: FromThisMachine, State(state): State<Arc<AppState>>) -> Response {
    let now = humantime::format_rfc3339_millis(std::time::SystemTime::now()).to_string();
    match state.drift.freeze(now) {
        Ok(info) => {
            tracing::info!(size = info.size, path = info.path.as_deref().unwrap_or("-"), "drift reference frozen");
            (StatusCode::CREATED, Json(info)).into_response()
        }
        Err(err @ ReferenceError::TooFew { .. }) => ApiError::NotEnoughRequests(err.to_string()).into_response(),
        Err(err) => ApiError::Internal(err.to_string()).into_response(),
    }
}
