//! The session summary written on quit: `session_summary_<timestamp>.json` and `.md` under
//! the logs directory, and printed after the terminal is restored. Made by one fold over the
//! session's records ([`fold`]), live and for `capwatch report` alike; [`markdown`] writes it
//! for people.

use std::path::{Path, PathBuf};

use serde::Serialize;

use super::record::{AbVerdict, Record, StatsRecord};
use super::state::{FaultSummary, ServiceStatus, TransitionCounts};
use crate::protocol::shadow::ShadowReport;
use crate::stats::comparison::{Estimate, VariantFigures};

mod fold;
mod markdown;

pub use fold::SummaryFold;

/// What a session amounted to.
#[derive(Debug, Clone, Serialize)]
pub struct SessionSummary {
    pub started_at: String,
    pub ended_at: String,
    pub duration_s: f64,
    pub cycles: u64,
    pub tests: u64,
    pub successes: u64,
    pub success_rate: f64,
    pub error_rate: f64,
    /// Mean of the window P95 at the end of each cycle that had one; null when no cycle's
    /// window held a successful test.
    pub mean_p95_ms: Option<f64>,
    /// Window P95 at the end; null when the last window held no successful test.
    pub final_p95_ms: Option<f64>,
    pub session: StatsRecord,
    pub last_status: ServiceStatus,
    pub last_caption: Option<String>,
    pub alerts_warning: u64,
    pub alerts_critical: u64,
    /// Every alert event, by transition.
    pub alert_events: TransitionCounts,
    pub restarts: u32,
    /// How each alert sink fared (empty when none is configured).
    pub notifications: Vec<SinkTally>,
    /// Faults injected during the session (`capwatch --chaos`, `capwatch drill`), in order.
    pub faults: Vec<FaultSummary>,
    /// Each model variant against the baseline, when the server had several (A/B).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub ab: Vec<AbSummary>,
    /// The server's shadow copies and their agreement at the end, when it had a shadow.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub shadow: Option<ShadowReport>,
    /// Each watched instance, when the dashboard watched several (then the counts above are
    /// summed over them and the latency figures are the worst instance's).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub instances: Vec<InstanceSummary>,
    /// How the watched fleet changed, when discovery added or retired instances.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fleet: Option<FleetSummary>,
}

/// The fleet's size over the session: every join and leave, in order.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct FleetSummary {
    pub joined: u64,
    pub left: u64,
    pub min_instances: usize,
    pub max_instances: usize,
    pub final_instances: usize,
    pub changes: Vec<FleetChangeSummary>,
}

/// One join or leave: when (seconds into the session), who, and the fleet's size after it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct FleetChangeSummary {
    pub uptime_s: f64,
    pub change: super::record::FleetChange,
    pub instance: String,
    pub instances: usize,
}

/// One watched instance's part of a session that watched several.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct InstanceSummary {
    pub instance: String,
    pub last_status: ServiceStatus,
    pub tests: u64,
    pub successes: u64,
    pub error_rate: f64,
    pub mean_p95_ms: Option<f64>,
    pub final_p95_ms: Option<f64>,
    pub quality_mean: Option<f64>,
    pub alerts_warning: u64,
    pub alerts_critical: u64,
    pub restarts: u32,
    /// Discovery stopped listing it before the session ended.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub left: bool,
}

/// One variant against the baseline at the end of the session, with its verdict as a sentence.
pub type AbSummary = AbVerdict;

/// The highest of one figure over the parts.
fn worst_of(parts: &[(String, SessionSummary)], figure: impl Fn(&SessionSummary) -> f64) -> f64 {
    parts.iter().map(|(_, s)| figure(s)).fold(0.0, f64::max)
}

/// The worst of the instances that measured the figure; None when none did.
fn worst_measured(parts: &[(String, SessionSummary)], figure: impl Fn(&SessionSummary) -> Option<f64>) -> Option<f64> {
    parts.iter().filter_map(|(_, s)| figure(s)).reduce(f64::max)
}

/// Notification outcomes at one sink over the session.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct SinkTally {
    pub sink: String,
    pub delivered: u64,
    pub failed: u64,
    pub dropped: u64,
}

impl std::fmt::Display for SinkTally {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {} delivered", self.sink, self.delivered)?;
        if self.failed > 0 {
            write!(f, ", {} failed", self.failed)?;
        }
        if self.dropped > 0 {
            write!(f, ", {} dropped", self.dropped)?;
        }
        Ok(())
    }
}

impl SessionSummary {
    /// Rebuilds the summary of a session from its metrics records (`capwatch report`, and the
    /// dashboard on quit from the records it wrote), broken down by instance when the session
    /// watched several. Returns `None` when there is no test cycle or end record to summarise.
    pub fn from_records<'a>(records: impl IntoIterator<Item = &'a Record>) -> Option<Self> {
        let mut fold = SummaryFold::default();
        for record in records {
            fold.add(record);
        }
        fold.summary()
    }

    /// The session over several instances from each one's summary: counts summed, latency
    /// figures the worst instance's, the worst status, and a row per instance.
    pub(super) fn combine(parts: Vec<(String, Self)>) -> Self {
        let sum = |f: fn(&Self) -> u64| parts.iter().map(|(_, s)| f(s)).sum::<u64>();
        let tests = sum(|s| s.tests);
        let successes = sum(|s| s.successes);
        let rate = |part: u64| if tests == 0 { 0.0 } else { part as f64 / tests as f64 };
        let quality_weight: u64 =
            parts.iter().filter(|(_, s)| s.session.quality_mean.is_some()).map(|(_, s)| s.successes).sum();
        let quality_mean = (quality_weight > 0).then(|| {
            parts.iter().filter_map(|(_, s)| s.session.quality_mean.map(|q| q * s.successes as f64)).sum::<f64>()
                / quality_weight as f64
        });
        let latency = |f: fn(&super::record::LatencyRecord) -> f64| {
            worst_measured(&parts, |s| s.session.latency_ms.as_ref().map(f))
        };
        let session = StatsRecord {
            probes: tests,
            successes,
            failures: tests - successes.min(tests),
            error_rate: rate(tests - successes.min(tests)),
            // Each figure is the worst of the instances that measured one.
            latency_ms: latency(|l| l.p95).map(|p95| super::record::LatencyRecord {
                p50: latency(|l| l.p50).unwrap_or(p95),
                p95,
                p99: latency(|l| l.p99).unwrap_or(p95),
                max: latency(|l| l.max).unwrap_or(p95),
                mean: latency(|l| l.mean).unwrap_or(p95),
            }),
            model_time_ms: worst_measured(&parts, |s| s.session.model_time_ms.map(|m| m.p95)).map(|p95| {
                super::record::ModelTimeRecord {
                    p50: worst_measured(&parts, |s| s.session.model_time_ms.map(|m| m.p50)).unwrap_or(p95),
                    p95,
                }
            }),
            quality_mean,
            throughput_per_s: parts.iter().map(|(_, s)| s.session.throughput_per_s).sum(),
        };
        let mut notifications: Vec<SinkTally> = Vec::new();
        for tally in parts.iter().flat_map(|(_, s)| &s.notifications) {
            match notifications.iter_mut().find(|t| t.sink == tally.sink) {
                Some(total) => {
                    total.delivered += tally.delivered;
                    total.failed += tally.failed;
                    total.dropped += tally.dropped;
                }
                None => notifications.push(tally.clone()),
            }
        }
        let mut alert_events = TransitionCounts::default();
        for (_, s) in &parts {
            let e = s.alert_events;
            alert_events.fired += e.fired;
            alert_events.escalated += e.escalated;
            alert_events.deescalated += e.deescalated;
            alert_events.repeated += e.repeated;
            alert_events.resolved += e.resolved;
        }
        Self {
            started_at: parts.iter().map(|(_, s)| s.started_at.clone()).min().unwrap_or_default(),
            ended_at: parts.iter().map(|(_, s)| s.ended_at.clone()).max().unwrap_or_default(),
            duration_s: worst_of(&parts, |s| s.duration_s),
            cycles: sum(|s| s.cycles),
            tests,
            successes,
            success_rate: rate(successes),
            error_rate: session.error_rate,
            mean_p95_ms: worst_measured(&parts, |s| s.mean_p95_ms),
            final_p95_ms: worst_measured(&parts, |s| s.final_p95_ms),
            session,
            last_status: parts
                .iter()
                .map(|(_, s)| s.last_status)
                .max_by_key(|status| status.rank())
                .unwrap_or(ServiceStatus::Stopped),
            last_caption: parts.iter().find_map(|(_, s)| s.last_caption.clone()),
            alerts_warning: sum(|s| s.alerts_warning),
            alerts_critical: sum(|s| s.alerts_critical),
            alert_events,
            restarts: parts.iter().map(|(_, s)| s.restarts).sum(),
            notifications,
            faults: parts.iter().flat_map(|(_, s)| s.faults.clone()).collect(),
            ab: parts.iter().flat_map(|(_, s)| s.ab.clone()).collect(),
            shadow: parts.iter().find_map(|(_, s)| s.shadow.clone()),
            fleet: None,
            instances: parts
                .iter()
                .map(|(name, s)| InstanceSummary {
                    instance: name.clone(),
                    last_status: s.last_status,
                    tests: s.tests,
                    successes: s.successes,
                    error_rate: s.error_rate,
                    mean_p95_ms: s.mean_p95_ms,
                    final_p95_ms: s.final_p95_ms,
                    quality_mean: s.session.quality_mean,
                    alerts_warning: s.alerts_warning,
                    alerts_critical: s.alerts_critical,
                    restarts: s.restarts,
                    left: false,
                })
                .collect(),
        }
    }

    /// Writes `session_summary_<timestamp>.json` and `.md` into `dir`; returns both paths.
    pub fn write(&self, dir: &Path) -> std::io::Result<(PathBuf, PathBuf)> {
        std::fs::create_dir_all(dir)?;
        let stamp: String = self.ended_at.chars().map(|c| if c == ':' { '-' } else { c }).collect();
        let json_path = dir.join(format!("session_summary_{stamp}.json"));
        let md_path = dir.join(format!("session_summary_{stamp}.md"));
        let json = serde_json::to_string_pretty(self).map_err(std::io::Error::other)?;
        std::fs::write(&json_path, json + "\n")?;
        std::fs::write(&md_path, self.markdown())?;
        Ok((json_path, md_path))
    }
}
