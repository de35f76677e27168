//! Injected faults as `/chaos` speaks them: what a fault does ([`FaultKind`]), how it is
//! asked for ([`FaultSpec`], with its checks) and how one in force is listed ([`ActiveFault`]).
//! The server injects them; the dashboard, the drill and the records name them. Data only.

use std::time::Duration;

use serde::{Deserialize, Serialize};

/// How long a fault lasts when the request does not say.
const DEFAULT_DURATION_S: f64 = 60.0;
/// The longest fault accepted (a day).
const MAX_DURATION_S: f64 = 86_400.0;
/// How long a crash waits after answering `POST /chaos`, so the answer gets out.
pub const CRASH_DELAY: Duration = Duration::from_millis(200);

/// What a fault does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FaultKind {
    /// `/caption` answers `latency_ms` (± `jitter_ms`) later.
    Latency,
    /// `/caption` answers `status` (a 5xx) instead of the caption.
    Errors,
    /// `/caption`, `/health` and `/ready` do not answer until the fault ends.
    Hang,
    /// The process exits with `exit_code` (non-zero) right after accepting the fault.
    Crash,
    /// Captions are replaced by wrong words, so their quality drops.
    Garbage,
    /// Every decoding step of the model takes `step_delay_ms` longer.
    SlowDecoder,
    /// `/ready` answers 503 and `/health` says unhealthy.
    Unready,
}

impl FaultKind {
    pub const ALL: [Self; 7] =
        [Self::Latency, Self::Errors, Self::Hang, Self::Crash, Self::Garbage, Self::SlowDecoder, Self::Unready];

    /// The name in JSON, logs and metric labels.
    pub fn name(self) -> &'static str {
        match self {
            Self::Latency => "latency",
            Self::Errors => "errors",
            Self::Hang => "hang",
            Self::Crash => "crash",
            Self::Garbage => "garbage",
            Self::SlowDecoder => "slow_decoder",
            Self::Unready => "unready",
        }
    }
}

/// A fault as `POST /chaos` takes it; parameters that do not apply to its kind are ignored.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FaultSpec {
    pub kind: FaultKind,
    /// Seconds until the fault ends by itself (default 60; `crash` ignores it).
    #[serde(default = "default_duration_s")]
    pub duration_s: f64,
    /// Share of requests hit, in (0, 1] (default 1: all); `latency`, `errors`, `garbage`.
    #[serde(default = "default_share")]
    pub share: f64,
    /// `latency`: added milliseconds (default 1000).
    #[serde(default = "default_latency_ms")]
    pub latency_ms: u64,
    /// `latency`: up to this many milliseconds more or less (default 0).
    #[serde(default)]
    pub jitter_ms: u64,
    /// `errors`: the status answered (default 500; 500–599).
    #[serde(default = "default_status")]
    pub status: u16,
    /// `slow_decoder`: added milliseconds per decoding step (default 100).
    #[serde(default = "default_step_delay_ms")]
    pub step_delay_ms: u64,
    /// `crash`: the exit status (default 70; non-zero).
    #[serde(default = "default_exit_code")]
    pub exit_code: i32,
    /// `latency`, `errors`, `garbage`: only requests answered by this model variant (default:
    /// every request), e.g. to make a canary slower than its baseline.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model: Option<String>,
}

fn default_duration_s() -> f64 {
    DEFAULT_DURATION_S
}
fn default_share() -> f64 {
    1.0
}
fn default_latency_ms() -> u64 {
    1000
}
fn default_status() -> u16 {
    500
}
fn default_step_delay_ms() -> u64 {
    100
}
fn default_exit_code() -> i32 {
    70
}

impl FaultSpec {
    /// A fault of `kind` with every parameter at its default.
    pub fn new(kind: FaultKind) -> Self {
        Self {
            kind,
            duration_s: default_duration_s(),
            share: default_share(),
            latency_ms: default_latency_ms(),
            jitter_ms: 0,
            status: default_status(),
            step_delay_ms: default_step_delay_ms(),
            exit_code: default_exit_code(),
            model: None,
        }
    }

    /// The first parameter out of range, named.
    pub fn validate(&self) -> Result<(), String> {
        if !(self.duration_s > 0.0 && self.duration_s <= MAX_DURATION_S) {
            return Err(format!("duration_s must be in (0, {MAX_DURATION_S}], got {}", self.duration_s));
        }
        if !(self.share > 0.0 && self.share <= 1.0) {
            return Err(format!("share must be in (0, 1], got {}", self.share));
        }
        if !(500..=599).contains(&self.status) {
            return Err(format!("status must be a 5xx code, got {}", self.status));
        }
        if self.exit_code == 0 {
            return Err("exit_code must not be 0 (a crash exits with an error)".to_owned());
        }
        if self.model.is_some() && !matches!(self.kind, FaultKind::Latency | FaultKind::Errors | FaultKind::Garbage) {
            return Err(format!("model applies to latency, errors and garbage, not to {}", self.kind.name()));
        }
        if self.kind == FaultKind::Latency && self.jitter_ms > self.latency_ms {
            return Err(format!("jitter_ms ({}) must not exceed latency_ms ({})", self.jitter_ms, self.latency_ms));
        }
        Ok(())
    }
}

/// A fault in force, as `GET /chaos` lists it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ActiveFault {
    pub id: u64,
    #[serde(flatten)]
    pub spec: FaultSpec,
    /// Seconds until it ends.
    pub remaining_s: f64,
    /// Requests it has hit so far.
    pub hits: u64,
}
