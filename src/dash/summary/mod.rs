//! The session summary written on quit: `session_summary_<timestamp>.json` and `.md` under
//! the logs directory, and printed after the terminal is restored. Made from the live states
//! or, for `capwatch report`, from the records; [`markdown`] writes it for people.

use std::path::{Path, PathBuf};

use serde::Serialize;

use super::prober::InferenceProbe;
use super::record::{Record, StatsRecord};
use super::rehearsal::describe;
use super::state::{DashState, FaultSummary, TransitionCounts};
use crate::alerts::AlertTransition;
use crate::clock::Clock;
use crate::protocol::shadow::ShadowReport;
use crate::stats::comparison::{Estimate, Figures, VariantFigures};

mod markdown;

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
    /// Mean of the window P95 at the end of each cycle.
    pub mean_p95_ms: f64,
    /// Window P95 at the end.
    pub final_p95_ms: f64,
    pub session: StatsRecord,
    pub last_status: String,
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
}

/// One watched instance's part of a session that watched several.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct InstanceSummary {
    pub instance: String,
    pub last_status: String,
    pub tests: u64,
    pub successes: u64,
    pub error_rate: f64,
    pub mean_p95_ms: f64,
    pub final_p95_ms: f64,
    pub quality_mean: Option<f64>,
    pub alerts_warning: u64,
    pub alerts_critical: u64,
    pub restarts: u32,
}

/// One variant against the baseline at the end of the session.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct AbSummary {
    /// The verdict as a sentence.
    pub verdict_text: String,
    #[serde(flatten)]
    pub figures: Figures,
}

/// How bad a status label is (the worst one is a fleet's last status).
fn status_rank(label: &str) -> u8 {
    match label {
        "down" | "failed" | "crash_loop" => 3,
        "degraded" => 2,
        "starting" | "restarting" => 1,
        _ => 0,
    }
}

/// The highest of one figure over the parts.
fn worst_of(parts: &[(String, SessionSummary)], figure: impl Fn(&SessionSummary) -> f64) -> f64 {
    parts.iter().map(|(_, s)| figure(s)).fold(0.0, f64::max)
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
    /// The summary of a session that watched `states` (one per instance), started at
    /// `started`, ending at `now`.
    pub fn from_states(states: &[DashState], started: &Clock, now: &Clock) -> Self {
        match states {
            [one] => Self::from_state(one, started, now),
            several => Self::combine(
                several
                    .iter()
                    .map(|state| {
                        let name = state.settings.instance.clone().unwrap_or_default();
                        (name, Self::from_state(state, started, now))
                    })
                    .collect(),
            ),
        }
    }

    /// The summary of the session `state` describes, started at `started`, ending at `now`.
    pub fn from_state(state: &DashState, started: &Clock, now: &Clock) -> Self {
        let session = state.session.snapshot(now.now);
        let window = state.window_snapshot(now.now);
        let mean_p95_ms =
            if state.cycle_p95_count == 0 { 0.0 } else { state.cycle_p95_sum_ms / state.cycle_p95_count as f64 };
        Self {
            started_at: started.timestamp(),
            ended_at: now.timestamp(),
            duration_s: now.now.saturating_duration_since(state.started).as_secs_f64(),
            cycles: state.cycles,
            tests: session.probes,
            successes: session.successes,
            success_rate: if session.probes == 0 { 0.0 } else { session.successes as f64 / session.probes as f64 },
            error_rate: session.error_rate,
            mean_p95_ms,
            final_p95_ms: window.latency.p95_ms,
            session: StatsRecord::from(&session),
            last_status: state.status_at_quit.unwrap_or_else(|| state.status()).label().to_owned(),
            last_caption: state.latest.as_ref().and_then(last_caption),
            alerts_warning: state.warnings_fired,
            alerts_critical: state.criticals_fired,
            alert_events: state.alert_events,
            restarts: state.restarts,
            notifications: state
                .sinks
                .iter()
                .map(|sink| SinkTally {
                    sink: sink.name.clone(),
                    delivered: sink.delivered,
                    failed: sink.failed,
                    dropped: sink.dropped,
                })
                .collect(),
            faults: state
                .faults
                .ended
                .iter()
                .cloned()
                .chain(state.faults.active.iter().map(|tracked| FaultSummary {
                    kind: tracked.fault.spec.kind.name().to_owned(),
                    fault: describe(&tracked.fault.spec),
                    started_s: tracked.started.saturating_duration_since(state.started).as_secs_f64(),
                    active_s: now.now.saturating_duration_since(tracked.started).as_secs_f64(),
                    hits: tracked.fault.hits,
                    ended_by: "still active".to_owned(),
                }))
                .collect(),
            ab: state.ab.as_ref().map_or_else(Vec::new, |ab| {
                ab.current_figures()
                    .into_iter()
                    .map(|figures| AbSummary { verdict_text: figures.verdict.to_string(), figures })
                    .collect()
            }),
            shadow: state.ab.as_ref().and_then(|ab| ab.shadow.clone()),
            instances: Vec::new(),
        }
    }

    /// Rebuilds the summary of a past session from its metrics records (`capwatch report`),
    /// broken down by instance when the session watched several. Returns `None` when there
    /// is no cycle record to summarise.
    pub fn from_records(records: &[Record]) -> Option<Self> {
        let mut names: Vec<&str> = Vec::new();
        for name in records.iter().filter_map(|record| record.stamp().instance.as_deref()) {
            if !names.contains(&name) {
                names.push(name);
            }
        }
        if names.len() < 2 {
            return Self::from_records_of_one(records);
        }
        let parts: Vec<(String, Self)> = names
            .iter()
            .filter_map(|name| {
                let own: Vec<Record> =
                    records.iter().filter(|r| r.stamp().instance.as_deref() == Some(name)).cloned().collect();
                Self::from_records_of_one(&own).map(|summary| ((*name).to_owned(), summary))
            })
            .collect();
        (!parts.is_empty()).then(|| Self::combine(parts))
    }

    /// One instance's records (or a session that watched one).
    fn from_records_of_one(records: &[Record]) -> Option<Self> {
        let cycles: Vec<_> = records
            .iter()
            .filter_map(|record| match record {
                Record::Cycle(cycle) => Some(cycle),
                _ => None,
            })
            .collect();
        let last = cycles.last()?;
        let session = last.session;
        let p95s: Vec<f64> = cycles.iter().map(|c| c.window.latency_ms.p95).collect();
        let fired = |severity| {
            records
                .iter()
                .filter(|r| {
                    matches!(r, Record::Alert(alert)
                        if alert.severity == severity
                            && !matches!(alert.transition, AlertTransition::Resolved | AlertTransition::Deescalated))
                })
                .count() as u64
        };
        let restarts = records.iter().filter_map(|record| match record {
            Record::Cycle(cycle) => Some(cycle.restarts),
            Record::Server(server) => Some(server.restarts),
            _ => None,
        });
        Some(Self {
            started_at: records.first().map(|r| r.stamp().ts.clone()).unwrap_or_default(),
            ended_at: records.last().map(|r| r.stamp().ts.clone()).unwrap_or_default(),
            duration_s: records.last().map_or(0.0, |r| r.stamp().uptime_s),
            cycles: cycles.len() as u64,
            tests: session.probes,
            successes: session.successes,
            success_rate: if session.probes == 0 { 0.0 } else { session.successes as f64 / session.probes as f64 },
            error_rate: session.error_rate,
            mean_p95_ms: p95s.iter().sum::<f64>() / p95s.len() as f64,
            final_p95_ms: last.window.latency_ms.p95,
            session,
            last_status: last.status.clone(),
            last_caption: cycles.iter().rev().find_map(|c| match &c.latest {
                Some(super::record::LatestProbe::Caption { caption, .. }) => Some(caption.clone()),
                _ => None,
            }),
            alerts_warning: fired(crate::alerts::Severity::Warning),
            alerts_critical: fired(crate::alerts::Severity::Critical),
            alert_events: records.iter().fold(TransitionCounts::default(), |mut counts, record| {
                if let Record::Alert(alert) = record {
                    counts.count(alert.transition);
                }
                counts
            }),
            restarts: restarts.max().unwrap_or(0),
            notifications: tally_notifications(records),
            faults: faults_of(records),
            ab: ab_of(records),
            shadow: records.iter().rev().find_map(|record| match record {
                Record::Ab(ab) => ab.shadow.clone(),
                _ => None,
            }),
            instances: Vec::new(),
        })
    }

    /// The session over several instances from each one's summary: counts summed, latency
    /// figures the worst instance's, the worst status, and a row per instance.
    fn combine(parts: Vec<(String, Self)>) -> Self {
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
        let latency = |f: fn(&super::record::LatencyRecord) -> f64| worst_of(&parts, |s| f(&s.session.latency_ms));
        let session = StatsRecord {
            probes: tests,
            successes,
            failures: tests - successes.min(tests),
            error_rate: rate(tests - successes.min(tests)),
            latency_ms: super::record::LatencyRecord {
                p50: latency(|l| l.p50),
                p95: latency(|l| l.p95),
                p99: latency(|l| l.p99),
                max: latency(|l| l.max),
                mean: latency(|l| l.mean),
            },
            model_time_ms: super::record::ModelTimeRecord {
                p50: worst_of(&parts, |s| s.session.model_time_ms.p50),
                p95: worst_of(&parts, |s| s.session.model_time_ms.p95),
            },
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
            mean_p95_ms: worst_of(&parts, |s| s.mean_p95_ms),
            final_p95_ms: worst_of(&parts, |s| s.final_p95_ms),
            session,
            last_status: parts
                .iter()
                .map(|(_, s)| s.last_status.clone())
                .max_by_key(|status| status_rank(status))
                .unwrap_or_default(),
            last_caption: parts.iter().find_map(|(_, s)| s.last_caption.clone()),
            alerts_warning: sum(|s| s.alerts_warning),
            alerts_critical: sum(|s| s.alerts_critical),
            alert_events,
            restarts: parts.iter().map(|(_, s)| s.restarts).sum(),
            notifications,
            faults: parts.iter().flat_map(|(_, s)| s.faults.clone()).collect(),
            ab: parts.iter().flat_map(|(_, s)| s.ab.clone()).collect(),
            shadow: parts.iter().find_map(|(_, s)| s.shadow.clone()),
            instances: parts
                .iter()
                .map(|(name, s)| InstanceSummary {
                    instance: name.clone(),
                    last_status: s.last_status.clone(),
                    tests: s.tests,
                    successes: s.successes,
                    error_rate: s.error_rate,
                    mean_p95_ms: s.mean_p95_ms,
                    final_p95_ms: s.final_p95_ms,
                    quality_mean: s.session.quality_mean,
                    alerts_warning: s.alerts_warning,
                    alerts_critical: s.alerts_critical,
                    restarts: s.restarts,
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

/// Per-sink outcomes from `notification` records, in order of first appearance.
fn tally_notifications(records: &[Record]) -> Vec<SinkTally> {
    use crate::notify::DeliveryOutcome;
    let mut tallies: Vec<SinkTally> = Vec::new();
    for record in records {
        let Record::Notification(notification) = record else { continue };
        let report = &notification.report;
        let index = match tallies.iter().position(|t| t.sink == report.sink) {
            Some(index) => index,
            None => {
                tallies.push(SinkTally { sink: report.sink.clone(), ..SinkTally::default() });
                tallies.len() - 1
            }
        };
        let tally = &mut tallies[index];
        match report.outcome {
            DeliveryOutcome::Delivered { .. } => tally.delivered += 1,
            DeliveryOutcome::Failed { .. } => tally.failed += 1,
            DeliveryOutcome::Dropped { .. } => tally.dropped += 1,
        }
    }
    tallies
}

/// Faults from `fault` records: each start paired with the next end of the same id.
/// The last A/B record of each compared variant, in the order they first appeared.
fn ab_of(records: &[Record]) -> Vec<AbSummary> {
    let mut latest: Vec<AbSummary> = Vec::new();
    for record in records {
        if let Record::Ab(ab) = record {
            let summary = AbSummary { verdict_text: ab.verdict_text.clone(), figures: ab.figures.clone() };
            match latest.iter_mut().find(|s| s.figures.b.name == ab.figures.b.name) {
                Some(slot) => *slot = summary,
                None => latest.push(summary),
            }
        }
    }
    latest
}

fn faults_of(records: &[Record]) -> Vec<FaultSummary> {
    use super::record::FaultPhase;
    let mut faults: Vec<FaultSummary> = Vec::new();
    let mut open: Vec<(u64, usize)> = Vec::new();
    for record in records {
        let Record::Fault(fault) = record else { continue };
        match fault.event {
            FaultPhase::Started => {
                open.retain(|(id, _)| *id != fault.fault_id);
                open.push((fault.fault_id, faults.len()));
                faults.push(FaultSummary {
                    kind: fault.fault.kind.name().to_owned(),
                    fault: describe(&fault.fault),
                    started_s: fault.stamp.uptime_s,
                    active_s: 0.0,
                    hits: 0,
                    ended_by: "still active".to_owned(),
                });
            }
            FaultPhase::Ended => {
                let Some(at) = open.iter().position(|(id, _)| *id == fault.fault_id) else { continue };
                let (_, index) = open.remove(at);
                let summary = &mut faults[index];
                summary.active_s = fault.active_s.unwrap_or(fault.stamp.uptime_s - summary.started_s);
                summary.hits = fault.hits.unwrap_or(0);
                summary.ended_by = fault.ended_by.map_or("?", super::record::FaultEnd::label).to_owned();
            }
        }
    }
    faults
}

fn last_caption(probe: &InferenceProbe) -> Option<String> {
    probe.result.as_ref().ok().map(|r| r.caption.clone())
}
