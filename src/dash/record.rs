//! The typed records of `logs/service_metrics.jsonl`: what `update` decides to write, what
//! the file holds (`schemas/service_metrics.schema.json`), and what `capwatch report` reads
//! back. One type per record kind, Serialize + Deserialize, so writer and reader cannot drift.
//! Pure data: building a record never reads a clock or the file system.

use serde::{Deserialize, Serialize};

use super::state::{DashState, ServiceStatus};
use super::stats::StatsSnapshot;
use crate::alerts::{AlertEvent, AlertTransition, RuleKind, Severity};
use crate::notify::DeliveryReport;
use crate::protocol::faults::FaultSpec;
use crate::protocol::shadow::ShadowReport;
use crate::stats::comparison::Figures;
use tokio::time::Instant;

/// One line of the metrics file.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Record {
    Cycle(Box<CycleRecord>),
    Alert(AlertRecord),
    Server(ServerRecord),
    Notification(NotificationRecord),
    Fault(FaultRecord),
    Ab(Box<AbRecord>),
    Drift(Box<DriftRecord>),
    End(Box<EndRecord>),
    Fleet(FleetRecord),
}

impl Record {
    /// When the record was made.
    pub fn stamp(&self) -> &Stamp {
        match self {
            Self::Cycle(r) => &r.stamp,
            Self::Alert(r) => &r.stamp,
            Self::Server(r) => &r.stamp,
            Self::Notification(r) => &r.stamp,
            Self::Fault(r) => &r.stamp,
            Self::Ab(r) => &r.stamp,
            Self::Drift(r) => &r.stamp,
            Self::End(r) => &r.stamp,
            Self::Fleet(r) => &r.stamp,
        }
    }
}

/// An instance joined or left the watched fleet (discovery listed it, or stopped listing
/// it); `instances` is the fleet's size after the change.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FleetRecord {
    #[serde(flatten)]
    pub stamp: Stamp,
    pub change: FleetChange,
    pub url: String,
    pub instances: usize,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum FleetChange {
    Joined,
    Left,
}

/// Wall-clock time (RFC 3339, milliseconds) and seconds since the monitor started.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Stamp {
    pub ts: String,
    pub uptime_s: f64,
    /// The watched instance, when the dashboard watches several (`monitor --url A --url B`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub instance: Option<String>,
}

/// The end of a test cycle: window and session statistics, health, the latest caption.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CycleRecord {
    #[serde(flatten)]
    pub stamp: Stamp,
    pub cycle: u64,
    pub tests: u64,
    pub window_s: f64,
    pub window: StatsRecord,
    /// Totals since the monitor started.
    pub session: StatsRecord,
    pub consecutive_failures: u64,
    pub health: Option<HealthRecord>,
    pub latest: Option<LatestProbe>,
    pub status: ServiceStatus,
    pub pid: Option<u32>,
    pub restarts: u32,
    pub active_alerts: Vec<ActiveAlert>,
    /// The server's own time on each caption of this cycle, queue excluded (ms), when it
    /// reports its timings (capwatch does): `capwatch plan --session` reads these.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub service_ms: Vec<f64>,
    /// Workers the server reported at its last health check, when it says.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub workers: Option<u64>,
}

impl CycleRecord {
    /// The record of the cycle that just ended in `state`, with `window`'s statistics.
    pub fn of(state: &DashState, window: &StatsSnapshot, stamp: Stamp, now: Instant) -> Self {
        Self {
            stamp,
            cycle: state.cycles,
            tests: state.tests,
            window_s: state.window.window().as_secs_f64(),
            window: StatsRecord::from(window),
            session: StatsRecord::from(&state.session.snapshot(now)),
            consecutive_failures: state.consecutive_failures,
            health: state.last_health.as_ref().map(|h| HealthRecord {
                healthy: h.is_healthy(),
                latency_ms: h.latency.as_secs_f64() * 1000.0,
                age_s: now.saturating_duration_since(h.at).as_secs_f64(),
            }),
            latest: LatestProbe::of(state),
            status: state.status(),
            pid: state.pid,
            restarts: state.restarts,
            service_ms: state.cycle_service_ms.clone(),
            workers: state.last_health.as_ref().and_then(|h| h.result.as_ref().ok()?.workers_alive),
            active_alerts: state
                .alerts
                .active()
                .into_iter()
                .map(|(rule, severity)| ActiveAlert { rule, severity })
                .collect(),
        }
    }
}

/// Window or session statistics (milliseconds, rates 0..1).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct StatsRecord {
    pub probes: u64,
    pub successes: u64,
    pub failures: u64,
    pub error_rate: f64,
    /// null when no test succeeded (nothing was measured).
    pub latency_ms: Option<LatencyRecord>,
    /// null when no answer reported a model time.
    pub model_time_ms: Option<ModelTimeRecord>,
    pub quality_mean: Option<f64>,
    pub throughput_per_s: f64,
}

#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct LatencyRecord {
    pub p50: f64,
    pub p95: f64,
    pub p99: f64,
    pub max: f64,
    pub mean: f64,
}

#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct ModelTimeRecord {
    pub p50: f64,
    pub p95: f64,
}

impl From<&StatsSnapshot> for StatsRecord {
    fn from(s: &StatsSnapshot) -> Self {
        Self {
            probes: s.probes,
            successes: s.successes,
            failures: s.failures,
            error_rate: s.error_rate,
            latency_ms: s.latency.map(|l| LatencyRecord {
                p50: l.p50_ms,
                p95: l.p95_ms,
                p99: l.p99_ms,
                max: l.max_ms,
                mean: l.mean_ms,
            }),
            model_time_ms: s.model_time.map(|m| ModelTimeRecord { p50: m.p50_ms, p95: m.p95_ms }),
            quality_mean: s.quality_mean,
            throughput_per_s: s.throughput_per_s,
        }
    }
}

/// The last health check as of the cycle's end.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct HealthRecord {
    pub healthy: bool,
    pub latency_ms: f64,
    pub age_s: f64,
}

/// The latest inference test: a caption, or why it failed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum LatestProbe {
    Caption { image: String, caption: String, quality: f64, keywords_found: Vec<String>, keywords_missing: Vec<String> },
    Failed { image: String, error: String, error_kind: String },
}

impl LatestProbe {
    /// `state`'s latest inference test, if there was one.
    pub fn of(state: &DashState) -> Option<Self> {
        let probe = state.latest.as_ref()?;
        Some(match &probe.result {
            Ok(result) => Self::Caption {
                image: probe.image.clone(),
                caption: result.caption.clone(),
                quality: result.quality.score(),
                keywords_found: result.quality.found.clone(),
                keywords_missing: result.quality.missing.clone(),
            },
            Err(error) => Self::Failed {
                image: probe.image.clone(),
                error: error.to_string(),
                error_kind: error.kind().to_owned(),
            },
        })
    }

    /// The caption, when the test got one.
    pub fn caption(&self) -> Option<&str> {
        match self {
            Self::Caption { caption, .. } => Some(caption),
            Self::Failed { .. } => None,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct ActiveAlert {
    pub rule: RuleKind,
    pub severity: Severity,
}

/// An alert transition.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AlertRecord {
    #[serde(flatten)]
    pub stamp: Stamp,
    pub rule: RuleKind,
    pub severity: Severity,
    pub transition: AlertTransition,
    /// Null when nothing was measured (resolved because the instance left the fleet).
    pub value: Option<f64>,
    pub threshold: f64,
    /// The line the log and the alert pane show.
    pub message: String,
}

impl AlertRecord {
    pub fn new(stamp: Stamp, alert: &AlertEvent) -> Self {
        Self {
            stamp,
            rule: alert.rule,
            severity: alert.severity,
            transition: alert.transition,
            value: alert.value.is_finite().then_some(alert.value),
            threshold: alert.threshold,
            message: alert.to_string(),
        }
    }
}

/// A child-process event, with the restarts so far.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ServerRecord {
    #[serde(flatten)]
    pub stamp: Stamp,
    pub event: ServerChange,
    pub restarts: u32,
}

/// The child-process events worth a record.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum ServerChange {
    Spawned { pid: u32 },
    Exited { pid: u32, code: Option<i32>, signal: Option<i32>, expected: bool },
    StartFailed { pid: u32, reason: String },
    CrashLoop { restarts: usize, window_s: u64 },
    PermanentFailure { code: i32, reason: String },
}

/// What became of one notification at one sink.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NotificationRecord {
    #[serde(flatten)]
    pub stamp: Stamp,
    #[serde(flatten)]
    pub report: DeliveryReport,
}

/// An injected fault (`capwatch --chaos`) started or ended.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FaultRecord {
    #[serde(flatten)]
    pub stamp: Stamp,
    pub event: FaultPhase,
    /// The server's id for the fault (ids start again at 1 in each server process).
    pub fault_id: u64,
    /// The fault as it was asked for.
    pub fault: FaultSpec,
    /// Ended: requests it hit (as last polled), seconds it was in force, and why it ended.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hits: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub active_s: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ended_by: Option<FaultEnd>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FaultPhase {
    Started,
    Ended,
}

/// Why a fault ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FaultEnd {
    /// Its duration ran out.
    Expired,
    /// `DELETE /chaos` (the menu's `x`, or the drill).
    Cleared,
    /// The server process ended (a crash fault, a restart).
    ServerExited,
}

impl FaultEnd {
    pub fn label(self) -> &'static str {
        match self {
            Self::Expired => "expired",
            Self::Cleared => "cleared",
            Self::ServerExited => "server exited",
        }
    }
}

/// The end of a test cycle on a server with several model variants: one variant against the
/// baseline (the first), as the A/B pane shows it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AbRecord {
    #[serde(flatten)]
    pub stamp: Stamp,
    pub cycle: u64,
    /// `a` is the baseline, `b` the variant compared with it.
    #[serde(flatten)]
    pub figures: Figures,
    /// The verdict as a sentence ("b is 31 % faster (24–38 %), decided after 140 probes").
    pub verdict_text: String,
    /// The server's shadow copies and their agreement, when it has a shadow.
    pub shadow: Option<ShadowReport>,
}

/// One variant against the baseline, with the verdict as a sentence.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AbVerdict {
    pub verdict_text: String,
    #[serde(flatten)]
    pub figures: Figures,
}

/// The end of the session for one instance, written once, after the server was stopped and
/// the notifications drained: the figures the session summary ends on that no earlier
/// record holds (the window and totals at the end, the status when the session was asked
/// to end, faults still in force, the A/B pane as it last stood).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EndRecord {
    #[serde(flatten)]
    pub stamp: Stamp,
    /// When the session started (RFC 3339, milliseconds).
    pub started_at: String,
    pub cycles: u64,
    pub window: StatsRecord,
    /// Totals since the monitor started.
    pub session: StatsRecord,
    /// The status when the session was asked to end (before the server was stopped).
    pub status: ServiceStatus,
    pub restarts: u32,
    pub latest: Option<LatestProbe>,
    /// Faults still in force, with the requests they hit so far.
    pub active_faults: Vec<FaultHits>,
    /// Each variant against the baseline, when the server had several.
    pub ab: Vec<AbVerdict>,
    /// The server's shadow copies and their agreement, when it had a shadow.
    pub shadow: Option<ShadowReport>,
    /// The notification sinks, in config order (those that never sent anything too).
    pub sinks: Vec<String>,
}

/// A fault in force and the requests it hit.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct FaultHits {
    pub fault_id: u64,
    pub hits: u64,
}

/// A capwatch server's drift window against its reference, as the dashboard last read it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DriftRecord {
    #[serde(flatten)]
    pub stamp: Stamp,
    pub live_size: usize,
    pub reference_size: usize,
    pub drifted_share: f64,
    pub detected: bool,
    pub features: Vec<crate::drift::report::FeatureScore>,
}

#[cfg(test)]
pub(crate) mod tests;
