//! The session summary as one fold over the records a session wrote: the dashboard feeds it
//! each record as it writes it (the summary on quit), `capwatch report` each line it reads
//! back, so the two cannot disagree. A session that ended normally closes with one `end`
//! record per instance; a killed one ends on its last test cycle.

use super::{AbSummary, FleetChangeSummary, FleetSummary, SessionSummary, SinkTally};
use crate::alerts::{AlertTransition, Severity};
use crate::dash::record::{EndRecord, FaultEnd, FaultPhase, FleetChange, FleetRecord, Record, StatsRecord};
use crate::dash::rehearsal::describe;
use crate::dash::state::{FaultSummary, ServiceStatus, TransitionCounts};
use crate::notify::DeliveryOutcome;
use crate::protocol::shadow::ShadowReport;

/// Records folded so far, one part per watched instance.
#[derive(Debug, Default)]
pub struct SummaryFold {
    parts: Vec<Part>,
    /// Records seen, to order the parts by their end records.
    seen: usize,
    /// Joins and leaves, in order.
    fleet: Vec<FleetRecord>,
}

/// One instance's records so far.
#[derive(Debug, Default)]
struct Part {
    instance: Option<String>,
    first_ts: String,
    last_ts: String,
    last_uptime_s: f64,
    cycles: u64,
    cycle_p95_sum_ms: f64,
    /// Cycles whose window had a P95 (at least one success).
    measured_cycles: u64,
    /// The last cycle's totals, window and status.
    last_cycle: Option<(StatsRecord, StatsRecord, ServiceStatus)>,
    last_caption: Option<String>,
    alerts_warning: u64,
    alerts_critical: u64,
    alert_events: TransitionCounts,
    restarts: u32,
    notifications: Vec<SinkTally>,
    faults: Vec<FaultSummary>,
    /// Faults started and not ended yet: (id, index in `faults`).
    open_faults: Vec<(u64, usize)>,
    ab: Vec<AbSummary>,
    shadow: Option<ShadowReport>,
    end: Option<(usize, Box<EndRecord>)>,
}

impl SummaryFold {
    /// Takes one record into account.
    pub fn add(&mut self, record: &Record) {
        self.seen += 1;
        if let Record::Fleet(change) = record {
            self.fleet.push(change.clone());
            return;
        }
        let stamp = record.stamp();
        let part = match self.parts.iter().position(|part| part.instance == stamp.instance) {
            Some(index) => &mut self.parts[index],
            None => {
                let first_ts = stamp.ts.clone();
                self.parts.push(Part { instance: stamp.instance.clone(), first_ts, ..Part::default() });
                let last = self.parts.len() - 1;
                &mut self.parts[last]
            }
        };
        part.last_ts.clone_from(&stamp.ts);
        part.last_uptime_s = stamp.uptime_s;
        part.add(record, self.seen);
    }

    /// The summary of what was folded; `None` when no instance had a test cycle or an end.
    pub fn summary(&self) -> Option<SessionSummary> {
        let mut parts: Vec<(&Part, SessionSummary)> =
            self.parts.iter().filter_map(|part| Some((part, part.summary()?))).collect();
        // In the order the session listed its instances (the order of their end records).
        parts.sort_by_key(|(part, _)| part.end.as_ref().map_or(usize::MAX, |(seen, _)| *seen));
        let mut summary = if parts.len() < 2 && self.fleet.is_empty() {
            parts.pop().map(|(_, summary)| summary)?
        } else {
            let named = parts.into_iter().map(|(part, summary)| (part.instance.clone().unwrap_or_default(), summary));
            SessionSummary::combine(named.collect())
        };
        summary.fleet = self.fleet_summary();
        for instance in &mut summary.instances {
            let last =
                self.fleet.iter().rev().find(|change| change.stamp.instance.as_ref() == Some(&instance.instance));
            instance.left = last.is_some_and(|change| change.change == FleetChange::Left);
        }
        Some(summary)
    }

    /// Joins and leaves, when there were any.
    fn fleet_summary(&self) -> Option<FleetSummary> {
        let sizes = self.fleet.iter().map(|change| change.instances);
        let count = |kind: FleetChange| self.fleet.iter().filter(|change| change.change == kind).count() as u64;
        Some(FleetSummary {
            joined: count(FleetChange::Joined),
            left: count(FleetChange::Left),
            min_instances: sizes.clone().min()?,
            max_instances: sizes.max()?,
            final_instances: self.fleet.last()?.instances,
            changes: self
                .fleet
                .iter()
                .map(|change| FleetChangeSummary {
                    uptime_s: change.stamp.uptime_s,
                    change: change.change,
                    instance: change.stamp.instance.clone().unwrap_or_default(),
                    instances: change.instances,
                })
                .collect(),
        })
    }
}

impl Part {
    fn add(&mut self, record: &Record, seen: usize) {
        match record {
            Record::Cycle(cycle) => {
                self.cycles += 1;
                if let Some(latency) = &cycle.window.latency_ms {
                    self.cycle_p95_sum_ms += latency.p95;
                    self.measured_cycles += 1;
                }
                self.last_cycle = Some((cycle.session, cycle.window, cycle.status));
                if let Some(caption) = cycle.latest.as_ref().and_then(|latest| latest.caption()) {
                    self.last_caption = Some(caption.to_owned());
                }
                self.restarts = self.restarts.max(cycle.restarts);
            }
            Record::Alert(alert) => {
                self.alert_events.count(alert.transition);
                if !alert.transition.is_resolve() && alert.transition != AlertTransition::Deescalated {
                    match alert.severity {
                        Severity::Critical => self.alerts_critical += 1,
                        Severity::Warning => self.alerts_warning += 1,
                        Severity::Ok => {}
                    }
                }
            }
            Record::Server(server) => self.restarts = self.restarts.max(server.restarts),
            Record::Notification(notification) => {
                let report = &notification.report;
                let index = match self.notifications.iter().position(|t| t.sink == report.sink) {
                    Some(index) => index,
                    None => {
                        self.notifications.push(SinkTally { sink: report.sink.clone(), ..SinkTally::default() });
                        self.notifications.len() - 1
                    }
                };
                let tally = &mut self.notifications[index];
                match report.outcome {
                    DeliveryOutcome::Delivered { .. } => tally.delivered += 1,
                    DeliveryOutcome::Failed { .. } => tally.failed += 1,
                    DeliveryOutcome::Dropped { .. } => tally.dropped += 1,
                }
            }
            Record::Fault(fault) => match fault.event {
                FaultPhase::Started => {
                    self.open_faults.retain(|(id, _)| *id != fault.fault_id);
                    self.open_faults.push((fault.fault_id, self.faults.len()));
                    self.faults.push(FaultSummary {
                        kind: fault.fault.kind.name().to_owned(),
                        fault: describe(&fault.fault),
                        started_s: fault.stamp.uptime_s,
                        active_s: 0.0,
                        hits: 0,
                        ended_by: "still active".to_owned(),
                    });
                }
                FaultPhase::Ended => {
                    let Some(at) = self.open_faults.iter().position(|(id, _)| *id == fault.fault_id) else { return };
                    let (_, index) = self.open_faults.remove(at);
                    let summary = &mut self.faults[index];
                    summary.active_s = fault.active_s.unwrap_or(fault.stamp.uptime_s - summary.started_s);
                    summary.hits = fault.hits.unwrap_or(0);
                    summary.ended_by = fault.ended_by.map_or("?", FaultEnd::label).to_owned();
                }
            },
            Record::Ab(ab) => {
                let summary = AbSummary { verdict_text: ab.verdict_text.clone(), figures: ab.figures.clone() };
                match self.ab.iter_mut().find(|s| s.figures.b.name == ab.figures.b.name) {
                    Some(slot) => *slot = summary,
                    None => self.ab.push(summary),
                }
                if ab.shadow.is_some() {
                    self.shadow.clone_from(&ab.shadow);
                }
            }
            Record::Drift(_) | Record::Fleet(_) => {}
            Record::End(end) => {
                if let Some(caption) = end.latest.as_ref().and_then(|latest| latest.caption()) {
                    self.last_caption = Some(caption.to_owned());
                }
                self.restarts = self.restarts.max(end.restarts);
                for still in &end.active_faults {
                    let Some((_, index)) = self.open_faults.iter().find(|(id, _)| *id == still.fault_id) else {
                        continue;
                    };
                    let summary = &mut self.faults[*index];
                    summary.active_s = end.stamp.uptime_s - summary.started_s;
                    summary.hits = still.hits;
                }
                for verdict in &end.ab {
                    match self.ab.iter_mut().find(|s| s.figures.b.name == verdict.figures.b.name) {
                        Some(slot) => *slot = verdict.clone(),
                        None => self.ab.push(verdict.clone()),
                    }
                }
                if end.shadow.is_some() {
                    self.shadow.clone_from(&end.shadow);
                }
                // Every configured sink, in config order; any other that reported after them.
                let mut tallies: Vec<SinkTally> = end
                    .sinks
                    .iter()
                    .map(|name| {
                        let found = self.notifications.iter().find(|tally| tally.sink == *name);
                        found.cloned().unwrap_or_else(|| SinkTally { sink: name.clone(), ..SinkTally::default() })
                    })
                    .collect();
                tallies.extend(self.notifications.iter().filter(|tally| !end.sinks.contains(&tally.sink)).cloned());
                self.notifications = tallies;
                self.end = Some((seen, end.clone()));
            }
        }
    }

    /// This instance's summary; `None` before its first test cycle or end.
    fn summary(&self) -> Option<SessionSummary> {
        let (started_at, duration_s, session, window, status) = match (&self.end, &self.last_cycle) {
            (Some((_, end)), _) => (end.started_at.clone(), end.stamp.uptime_s, end.session, end.window, end.status),
            (None, Some((session, window, status))) => {
                (self.first_ts.clone(), self.last_uptime_s, *session, *window, *status)
            }
            (None, None) => return None,
        };
        let rate = |part: u64| if session.probes == 0 { 0.0 } else { part as f64 / session.probes as f64 };
        Some(SessionSummary {
            started_at,
            ended_at: self.end.as_ref().map_or_else(|| self.last_ts.clone(), |(_, end)| end.stamp.ts.clone()),
            duration_s,
            cycles: self.cycles,
            tests: session.probes,
            successes: session.successes,
            success_rate: rate(session.successes),
            error_rate: session.error_rate,
            mean_p95_ms: (self.measured_cycles > 0).then(|| self.cycle_p95_sum_ms / self.measured_cycles as f64),
            final_p95_ms: window.latency_ms.map(|latency| latency.p95),
            session,
            last_status: status,
            last_caption: self.last_caption.clone(),
            alerts_warning: self.alerts_warning,
            alerts_critical: self.alerts_critical,
            alert_events: self.alert_events,
            restarts: self.restarts,
            notifications: self.notifications.clone(),
            faults: self.faults.clone(),
            ab: self.ab.clone(),
            shadow: self.shadow.clone(),
            instances: Vec::new(),
            fleet: None,
        })
    }
}
