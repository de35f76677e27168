//! The typed records of `logs/service_metrics.jsonl`: what `update` decides to write, what
//! the file holds (`schemas/service_metrics.schema.json`), and what `capwatch report` reads
//! back. One type per record kind, Serialize + Deserialize, so writer and reader cannot drift.
//! Pure data: building a record never reads a clock or the file system.

use serde::{Deserialize, Serialize};

use super::alerts::{AlertEvent, AlertTransition, RuleKind, Severity};
use super::state::DashState;
use super::stats::StatsSnapshot;
use crate::notify::DeliveryReport;
use crate::server::chaos::FaultSpec;
use crate::server::shadow::ShadowReport;
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
        }
    }
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
    pub status: String,
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
        let latest = state.latest.as_ref().map(|probe| match &probe.result {
            Ok(result) => LatestProbe::Caption {
                image: probe.image.clone(),
                caption: result.caption.clone(),
                quality: result.quality.score(),
                keywords_found: result.quality.found.clone(),
                keywords_missing: result.quality.missing.clone(),
            },
            Err(error) => LatestProbe::Failed {
                image: probe.image.clone(),
                error: error.to_string(),
                error_kind: error.kind().to_owned(),
            },
        });
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
            latest,
            status: state.status().label().to_owned(),
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
    pub latency_ms: LatencyRecord,
    pub model_time_ms: ModelTimeRecord,
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
            latency_ms: LatencyRecord {
                p50: s.latency.p50_ms,
                p95: s.latency.p95_ms,
                p99: s.latency.p99_ms,
                max: s.latency.max_ms,
                mean: s.latency.mean_ms,
            },
            model_time_ms: ModelTimeRecord { p50: s.model_time.p50_ms, p95: s.model_time.p95_ms },
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
    pub value: f64,
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
            value: alert.value,
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
pub(crate) mod tests {
    use super::*;
    use crate::config::SinkKind;
    use crate::notify::{AlertState, DeliveryOutcome, FailureKind};
    use crate::server::chaos::FaultKind;
    use crate::stats::comparison::{Answer, Comparison};
    use std::time::Duration;

    fn stamp() -> Stamp {
        Stamp { ts: "2026-11-26T14:00:00.000Z".to_owned(), uptime_s: 12.5, instance: None }
    }

    /// One record of every kind and shape, as the dashboard writes them.
    pub(crate) fn every_kind() -> Vec<Record> {
        let stats = StatsRecord::from(&StatsSnapshot::default());
        let report = |outcome| DeliveryReport {
            sink: "pager".to_owned(),
            kind: SinkKind::Webhook,
            rule: "p95_latency".to_owned(),
            instance: None,
            severity: Severity::Critical,
            state: AlertState::Firing,
            outcome,
        };
        let alert = AlertEvent {
            rule: RuleKind::P95Latency,
            severity: Severity::Warning,
            transition: AlertTransition::Fired,
            value: 4200.5,
            threshold: 4000.0,
            instance: None,
        };
        let cycle = |latest| CycleRecord {
            stamp: stamp(),
            cycle: 3,
            tests: 15,
            window_s: 300.0,
            window: stats,
            session: stats,
            consecutive_failures: 0,
            health: Some(HealthRecord { healthy: true, latency_ms: 1.5, age_s: 2.0 }),
            latest,
            status: "healthy".to_owned(),
            pid: Some(42),
            restarts: 1,
            active_alerts: vec![ActiveAlert { rule: RuleKind::ErrorRate, severity: Severity::Critical }],
            service_ms: vec![12.5, 14.0],
            workers: Some(2),
        };
        let server = |event| Record::Server(ServerRecord { stamp: stamp(), event, restarts: 2 });
        let notification =
            |outcome| Record::Notification(NotificationRecord { stamp: stamp(), report: report(outcome) });
        vec![
            Record::Cycle(Box::new(cycle(Some(LatestProbe::Caption {
                image: "a.png".to_owned(),
                caption: "a red circle".to_owned(),
                quality: 0.5,
                keywords_found: vec!["red".to_owned()],
                keywords_missing: vec!["blue".to_owned()],
            })))),
            Record::Cycle(Box::new(cycle(Some(LatestProbe::Failed {
                image: "a.png".to_owned(),
                error: "timeout".to_owned(),
                error_kind: "timeout".to_owned(),
            })))),
            Record::Cycle(Box::new(CycleRecord { health: None, pid: None, ..cycle(None) })),
            Record::Alert(AlertRecord::new(stamp(), &alert)),
            server(ServerChange::Spawned { pid: 42 }),
            server(ServerChange::Exited { pid: 42, code: Some(1), signal: None, expected: false }),
            server(ServerChange::StartFailed { pid: 42, reason: "exit code 1: bad model".to_owned() }),
            server(ServerChange::CrashLoop { restarts: 5, window_s: 600 }),
            server(ServerChange::PermanentFailure {
                code: 3,
                reason: "cannot load model from /m: no such directory".to_owned(),
            }),
            notification(DeliveryOutcome::Delivered { attempts: 1, status: 200, elapsed: Duration::from_millis(12) }),
            notification(DeliveryOutcome::Failed {
                attempts: 4,
                error: "HTTP 500 Internal Server Error".to_owned(),
                failure: FailureKind::Http(500),
            }),
            notification(DeliveryOutcome::Failed {
                attempts: 1,
                error: "no answer within 5.0 s".to_owned(),
                failure: FailureKind::Timeout,
            }),
            notification(DeliveryOutcome::Dropped { queued: 32 }),
            Record::Fault(FaultRecord {
                stamp: stamp(),
                event: FaultPhase::Started,
                fault_id: 1,
                fault: FaultSpec::new(FaultKind::Latency),
                hits: None,
                active_s: None,
                ended_by: None,
            }),
            Record::Fault(FaultRecord {
                stamp: stamp(),
                event: FaultPhase::Ended,
                fault_id: 1,
                fault: FaultSpec { share: 0.5, ..FaultSpec::new(FaultKind::Errors) },
                hits: Some(12),
                active_s: Some(30.5),
                ended_by: Some(FaultEnd::Expired),
            }),
            Record::Fault(FaultRecord {
                stamp: stamp(),
                event: FaultPhase::Started,
                fault_id: 2,
                fault: FaultSpec { model: Some("b".to_owned()), ..FaultSpec::new(FaultKind::Latency) },
                hits: None,
                active_s: None,
                ended_by: None,
            }),
            ab_record(&Comparison::new("a", "b"), None),
            Record::Drift(Box::new(DriftRecord {
                stamp: stamp(),
                live_size: 500,
                reference_size: 400,
                drifted_share: 3.0 / 13.0,
                detected: true,
                features: vec![
                    crate::drift::report::FeatureScore {
                        feature: "brightness_mean".to_owned(),
                        test: crate::drift::choose::TestKind::Ks,
                        score: 1e-30,
                        drifted: true,
                        psi: None,
                    },
                    crate::drift::report::FeatureScore {
                        feature: "hue".to_owned(),
                        test: crate::drift::choose::TestKind::JensenShannon,
                        score: 0.04,
                        drifted: false,
                        psi: Some(0.01),
                    },
                ],
            })),
            ab_record(&decided(), Some(shadow_report())),
        ]
    }

    fn decided() -> Comparison {
        let mut comparison = Comparison::new("a", "b");
        for i in 0..80 {
            let answer = |latency_ms: f64, ok: bool, quality: f64| Answer {
                latency_ms,
                caption: ok.then(|| if i % 3 == 0 { "a red circle" } else { "a circle" }.to_owned()),
                quality: ok.then_some(quality),
            };
            comparison
                .push(answer(100.0 + f64::from(i % 7), true, 1.0), answer(60.0 + f64::from(i % 5), i % 9 != 0, 0.5));
        }
        comparison
    }

    fn shadow_report() -> ShadowReport {
        ShadowReport {
            model: "b".to_owned(),
            share: 0.25,
            agreed: 30,
            differed: 2,
            failed: 0,
            dropped: 1,
            agreement: Some(30.0 / 32.0),
        }
    }

    fn ab_record(comparison: &Comparison, shadow: Option<ShadowReport>) -> Record {
        let figures = comparison.figures();
        let verdict_text = figures.verdict.to_string();
        Record::Ab(Box::new(AbRecord { stamp: stamp(), cycle: 4, figures, verdict_text, shadow }))
    }

    #[test]
    fn every_record_kind_matches_the_published_schema() {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/schemas/service_metrics.schema.json");
        let schema: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
        let validator = jsonschema::validator_for(&schema).unwrap();
        for record in every_kind() {
            let value = serde_json::to_value(&record).unwrap();
            let errors: Vec<String> = validator.iter_errors(&value).map(|e| e.to_string()).collect();
            assert!(errors.is_empty(), "{value}\n{errors:#?}");
        }
    }

    #[test]
    fn records_read_back_as_written() {
        for record in every_kind() {
            let line = serde_json::to_string(&record).unwrap();
            let back: Record = serde_json::from_str(&line).unwrap();
            assert_eq!(back, record, "{line}");
        }
    }
}
