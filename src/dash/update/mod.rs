//! `update(state, event, clock) -> effects`: every decision of the dashboard, pure.
//!
//! Each event changes the [`DashState`] and returns the [`Effect`]s the event loop carries
//! out: records, log lines, notifications, metric updates, restarts, probe orders, quit.
//! No I/O and no clock reads: the time comes in as a [`Clock`], so headless mode, the
//! terminal UI and the tests drive the same function.

use super::ab::AbState;
use super::effect::{Effect, Gauges, MetricUpdate, ProbeKind};
use super::event::{Event, Input, ShutdownReason};
use super::prober::{HealthCheck, InferenceProbe};
use super::record::{
    AbRecord, AbVerdict, AlertRecord, CycleRecord, DriftRecord, EndRecord, FaultHits, LatestProbe, NotificationRecord,
    Record, Stamp, StatsRecord,
};
use super::state::LogLevel;
use super::state::{
    ALERT_LOG, DashState, LOG_LINES, Lifecycle, LogLine, Phase, RECENT_PROBES, RecentProbe, SinkFailure, SinkStatus,
};
use super::stats::ProbeSample;
use crate::alerts::{AlertEvent, AlertTransition, RuleKind, Severity};
use crate::clock::Clock;
use crate::notify::{AlertState, DeliveryOutcome, DeliveryReport};
use crate::protocol::shadow::ShadowReport;
use crate::stats::comparison::{Figures, Verdict};

/// How long a footer notice stays.
const NOTICE: std::time::Duration = std::time::Duration::from_secs(4);

mod faults;
mod listing;
mod server;

use faults::{on_fault_input, on_faults, on_traffic, server_exited};
use listing::{on_left, on_listed, track_failing};
use server::on_server;

/// Applies one event to the state and returns what the event loop must do.
pub fn update(state: &mut DashState, event: Event, clock: Clock) -> Vec<Effect> {
    if let Event::Of { event, .. } = event {
        // One state is one instance: the fleet routed the event here already.
        return update(state, *event, clock);
    }
    if !counts_in(state.phase, &event) {
        return Vec::new();
    }
    let mut out = Effects { effects: Vec::new(), clock, instance: state.settings.instance.clone() };
    let counts_for_gauges = !matches!(
        event,
        Event::Tick
            | Event::Input(_)
            | Event::Note { .. }
            | Event::Shutdown(_)
            | Event::Faults(_)
            | Event::Traffic(_)
            | Event::Ended
            | Event::Left
            | Event::Discovery(_)
    );
    match event {
        Event::Tick => state.window.prune(clock.now),
        Event::Input(input) => on_input(state, input, &mut out),
        Event::Note { message } => out.log(state, LogLevel::Info, message),
        Event::Attach { url } => {
            state.url = Some(url.clone());
            state.lifecycle = Lifecycle::Ready;
            out.effects.push(Effect::SetProbeTarget(Some(url)));
        }
        Event::Server(event) => {
            if matches!(event, super::supervisor::ServerEvent::Exited { .. }) {
                server_exited(state, &mut out);
            }
            on_server(state, event, &mut out);
        }
        Event::Faults(event) => on_faults(state, event, &mut out),
        Event::Traffic(event) => on_traffic(state, event, &mut out),
        Event::Drift(status) => on_drift(state, *status, &mut out),
        Event::Health(check) => on_health(state, check, &mut out),
        Event::Probe(probe) => on_probe(state, probe, &mut out),
        Event::CycleDone => on_cycle_done(state, &mut out),
        Event::Notification(report) => on_notification(state, report, &mut out),
        Event::Ended => on_ended(state, &mut out),
        Event::Listed { at } => on_listed(state, at, &mut out),
        Event::Left => on_left(state, &mut out),
        // The fleet decides joins and leaves.
        Event::Of { .. } | Event::Discovery(_) => {}
        Event::Shutdown(reason) => {
            let why = match reason {
                ShutdownReason::Signal(signal) => format!("{signal} received"),
                ShutdownReason::Deadline => "the --duration limit was reached".to_owned(),
                ShutdownReason::TerminalClosed => "the terminal went away".to_owned(),
            };
            out.log(state, LogLevel::Info, format!("⏹ Stopping: {why}"));
            quit(state, &mut out);
        }
    }
    // A retired instance's gauges are gone from `/metrics` and stay gone.
    if counts_for_gauges && !super::state::Listing::has_left(state) {
        out.effects.push(Effect::Metric(MetricUpdate::Gauges(gauges(state))));
    }
    out.effects
}

/// The effects of one update, with the reading of the clock they happen at.
struct Effects {
    effects: Vec<Effect>,
    clock: Clock,
    /// The watched instance, named in every record when several are watched.
    instance: Option<String>,
}

impl Effects {
    fn stamp(&self, state: &DashState) -> Stamp {
        self.stamp_at(state.started)
    }

    /// The stamp for a session that started at `started`.
    fn stamp_at(&self, started: tokio::time::Instant) -> Stamp {
        Stamp {
            ts: self.clock.timestamp(),
            uptime_s: self.clock.now.saturating_duration_since(started).as_secs_f64(),
            instance: self.instance.clone(),
        }
    }

    /// A line for the log pane, the log file and the headless console.
    fn log(&mut self, state: &mut DashState, level: LogLevel, message: String) {
        push_bounded(&mut state.log, LOG_LINES, LogLine { wall: self.clock.wall, level, message: message.clone() });
        self.effects.push(Effect::Log { level, message });
    }

    fn write(&mut self, record: Record) {
        self.effects.push(Effect::Write(record));
    }

    fn metric(&mut self, update: MetricUpdate) {
        self.effects.push(Effect::Metric(update));
    }

    fn notice(&mut self, state: &mut DashState, text: &str) {
        state.view.notice = Some((format!(" {text}"), self.clock.now + NOTICE));
    }
}

fn push_bounded<T>(queue: &mut std::collections::VecDeque<T>, capacity: usize, item: T) {
    if queue.len() == capacity {
        queue.pop_front();
    }
    queue.push_back(item);
}

/// The session ends: from now on only the server's stop and the notifications count.
fn quit(state: &mut DashState, out: &mut Effects) {
    if state.phase == Phase::Running {
        state.phase = Phase::Draining { status_at_quit: state.status() };
    }
    out.effects.push(Effect::Quit);
}

/// Whether `event` still counts in `phase`: everything while running; while draining, what
/// the stopping server and the notification sinks report (and the wiring's notes, and the
/// end); nothing once ended.
fn counts_in(phase: Phase, event: &Event) -> bool {
    match phase {
        Phase::Running => true,
        Phase::Draining { .. } => {
            matches!(event, Event::Server(_) | Event::Notification(_) | Event::Note { .. } | Event::Ended)
        }
        Phase::Ended => false,
    }
}

/// The session is over: the end record holds the figures the summary ends on.
fn on_ended(state: &mut DashState, out: &mut Effects) {
    let now = out.clock.now;
    let status = match state.phase {
        Phase::Draining { status_at_quit } => status_at_quit,
        Phase::Running | Phase::Ended => state.status(),
    };
    let elapsed = now.saturating_duration_since(state.started);
    let started = Clock { now: state.started, wall: out.clock.wall.checked_sub(elapsed).unwrap_or(out.clock.wall) };
    let ab = state.ab.as_ref();
    let record = EndRecord {
        stamp: out.stamp(state),
        started_at: started.timestamp(),
        cycles: state.cycles,
        window: StatsRecord::from(&state.window.snapshot(now)),
        session: StatsRecord::from(&state.session.snapshot(now)),
        status,
        restarts: state.restarts,
        latest: LatestProbe::of(state),
        active_faults: state
            .faults
            .active
            .iter()
            .map(|tracked| FaultHits { fault_id: tracked.fault.id, hits: tracked.fault.hits })
            .collect(),
        ab: ab.map_or_else(Vec::new, |ab| {
            let verdict = |figures: Figures| AbVerdict { verdict_text: figures.verdict.to_string(), figures };
            ab.current_figures().into_iter().map(verdict).collect()
        }),
        shadow: ab.and_then(|ab| ab.shadow.clone()),
        sinks: state.sinks.iter().map(|sink| sink.name.clone()).collect(),
    };
    state.phase = Phase::Ended;
    out.write(Record::End(Box::new(record)));
}

fn on_input(state: &mut DashState, input: Input, out: &mut Effects) {
    match input {
        Input::Quit => quit(state, out),
        Input::TogglePause => {
            state.view.paused = !state.view.paused;
            let paused = state.view.paused;
            out.effects.push(Effect::SetPaused(paused));
            out.log(state, LogLevel::Info, if paused { "⏸ Probing paused" } else { "▶ Probing resumed" }.to_owned());
        }
        Input::Restart if state.supervised => {
            out.notice(state, "restarting the service…");
            out.log(state, LogLevel::Warn, "🔁 Restart requested from the keyboard".to_owned());
            out.effects.push(Effect::RestartServer { reason: "requested from the keyboard".to_owned() });
        }
        Input::Restart => {
            out.notice(state, "restart is disabled: capwatch did not start this server (monitor --url)");
        }
        Input::TestNow => {
            out.notice(state, "running a test cycle now…");
            out.effects.push(Effect::TestNow);
        }
        Input::ToggleHelp => state.view.show_help = !state.view.show_help,
        Input::CloseHelp => {
            state.view.show_help = false;
            state.view.fault_menu = false;
            state.view.drift_pane = false;
        }
        Input::DriftPane => state.view.drift_pane = !state.view.drift_pane,
        Input::FaultMenu | Input::Choose(_) | Input::ClearFaults => on_fault_input(state, input, out),
        // The fleet moves the focus; one instance has nothing to move.
        Input::FocusNext | Input::FocusPrevious => {}
        Input::ScrollAlerts(lines) => {
            let newest_first = state.alert_log.len().saturating_sub(1);
            state.view.alert_scroll = state.view.alert_scroll.saturating_add_signed(lines).min(newest_first);
        }
    }
}

fn on_health(state: &mut DashState, check: HealthCheck, out: &mut Effects) {
    let healthy = check.is_healthy();
    let outcome = match &check.result {
        Ok(_) if healthy => "success",
        Ok(_) => "unhealthy",
        Err(error) => error.kind(),
    };
    out.metric(MetricUpdate::Probe { probe: ProbeKind::Health, outcome, latency: check.latency });
    state.consecutive_health_failures = if healthy { 0 } else { state.consecutive_health_failures + 1 };
    if !healthy {
        let why = match &check.result {
            Ok(body) => format!("status {}", body.status.as_deref().unwrap_or("unhealthy")),
            Err(error) => error.to_string(),
        };
        let message = format!("🩺 Health check failed ({why}), {} in a row", state.consecutive_health_failures);
        out.log(state, LogLevel::Warn, message);
    }
    if let Ok(body) = &check.result {
        follow_variants(state, &body.models, body.shadow.clone(), out);
        noticed_restart(state, body.uptime_s, out);
    }
    state.last_health = Some(check);
    track_failing(state, out);
    judge(state, RuleKind::HealthDown, state.consecutive_health_failures as f64, u64::MAX, out);
    if state.settings.automatic_restart
        && state.supervised
        && state.lifecycle.is_ready()
        && state.consecutive_health_failures >= state.settings.restart_after_health_failures
    {
        let reason = format!("{} consecutive failed health checks", state.consecutive_health_failures);
        state.consecutive_health_failures = 0;
        out.log(state, LogLevel::Warn, format!("🔁 Restarting the server: {reason}"));
        out.effects.push(Effect::RestartServer { reason });
    }
}

/// A server someone else runs restarted when its reported uptime went back: counted, so the
/// instances pane and the summary show it (capwatch counts its own child's restarts itself).
fn noticed_restart(state: &mut DashState, uptime_s: Option<f64>, out: &mut Effects) {
    if state.supervised {
        return;
    }
    let before = state.last_health.as_ref().and_then(|h| h.result.as_ref().ok()).and_then(|b| b.uptime_s);
    if let (Some(before), Some(now)) = (before, uptime_s)
        && now < before
    {
        state.restarts += 1;
        let message = format!("🔁 The server restarted (its uptime went from {before:.0} s to {now:.0} s)");
        out.log(state, LogLevel::Warn, message);
    }
}

/// The server's drift status: recorded, told when the verdict changes, judged by the `drift` rule.
fn on_drift(state: &mut DashState, status: crate::protocol::drift::DriftStatus, out: &mut Effects) {
    let was_detected = state.drift.as_ref().and_then(|d| d.report.as_ref()).is_some_and(|r| r.detected);
    if let Some(report) = &status.report {
        let drifted: Vec<&str> = report.features.iter().filter(|f| f.drifted).map(|f| f.feature.as_str()).collect();
        if report.detected != was_detected {
            let message = if report.detected {
                format!(
                    "🌊 Drift: {} of {} features differ from the reference ({})",
                    drifted.len(),
                    report.features.len(),
                    drifted.join(", ")
                )
            } else {
                "🌊 Drift over: the recent requests look like the reference again".to_owned()
            };
            out.log(state, if report.detected { LogLevel::Warn } else { LogLevel::Info }, message);
        }
        out.write(Record::Drift(Box::new(DriftRecord {
            stamp: out.stamp(state),
            live_size: report.live_size,
            reference_size: report.reference_size,
            drifted_share: report.drifted_share,
            detected: report.detected,
            features: report.features.clone(),
        })));
        let share = report.drifted_share;
        state.drift = Some(status);
        judge(state, RuleKind::Drift, share, u64::MAX, out);
    } else {
        state.drift = Some(status);
    }
}

/// A server that lists two or more variants gets them compared: the prober tests each by
/// name from now on. A new list starts a new comparison.
fn follow_variants(state: &mut DashState, models: &[String], shadow: Option<ShadowReport>, out: &mut Effects) {
    if models.len() >= 2 && state.ab.as_ref().is_none_or(|ab| ab.variants != models) {
        let baseline = &models[0];
        let others = models[1..].join(", ");
        let message = format!(
            "⚖ A/B: the server has {} model variants; each test image now goes to every one (baseline {baseline}, compared: {others})",
            models.len()
        );
        out.log(state, LogLevel::Info, message);
        state.ab = Some(AbState::new(models.to_vec()));
        out.effects.push(Effect::SetVariants(models.to_vec()));
    }
    if let Some(ab) = &mut state.ab {
        ab.shadow = shadow;
    }
}

fn on_notification(state: &mut DashState, report: DeliveryReport, out: &mut Effects) {
    out.metric(MetricUpdate::Notification { sink: report.sink.clone(), outcome: report.outcome.label() });
    let what = match report.state {
        AlertState::Resolved => format!("{} resolved", report.rule),
        _ => format!("{} {}", report.rule, report.severity),
    };
    let what = if report.resent { format!("{what}, resent from the spool") } else { what };
    let index = match state.sinks.iter().position(|sink| sink.name == report.sink) {
        Some(index) => index,
        None => {
            state.sinks.push(SinkStatus { name: report.sink.clone(), ..SinkStatus::default() });
            state.sinks.len() - 1
        }
    };
    let status = &mut state.sinks[index];
    status.reported = true;
    let (level, message) = match &report.outcome {
        DeliveryOutcome::Delivered { attempts, elapsed, .. } => {
            status.delivered += 1;
            status.last_failure = None;
            let ms = elapsed.as_secs_f64() * 1000.0;
            (LogLevel::Info, format!("📨 Notified {} ({what}) in {ms:.0} ms, attempt {attempts}", report.sink))
        }
        DeliveryOutcome::Failed { attempts, error, failure } => {
            status.failed += 1;
            status.last_failure = Some(SinkFailure::Failed(*failure));
            let message =
                format!("📭 Notification failed: {} ({what}) after {attempts} attempt(s): {error}", report.sink);
            (LogLevel::Error, message)
        }
        DeliveryOutcome::Dropped { queued } => {
            status.dropped += 1;
            status.last_failure = Some(SinkFailure::Dropped);
            let message =
                format!("📭 Notification dropped: {} ({what}): {queued} notifications already waiting", report.sink);
            (LogLevel::Error, message)
        }
    };
    out.log(state, level, message);
    let record = NotificationRecord { stamp: out.stamp(state), report };
    out.write(Record::Notification(record));
}

/// Feeds one observation to the alert engine and raises a transition, if there is one.
fn judge(state: &mut DashState, kind: RuleKind, value: f64, samples: u64, out: &mut Effects) {
    if let Some(alert) = state.alerts.observe(kind, value, samples, out.clock.now) {
        raise(state, alert, out);
    }
}

/// An alert transition, unless it is about a discovered instance that started failing and
/// that discovery has not listed since: then it waits (see [`on_listed`]), and so does
/// every later transition of its rule.
fn raise(state: &mut DashState, alert: AlertEvent, out: &mut Effects) {
    let failing_since = state.failing_since;
    if let Some(listing) = &mut state.listing {
        let rule_held = listing.held.iter().any(|held| held.rule == alert.rule);
        let news = matches!(alert.transition, AlertTransition::Fired | AlertTransition::Escalated);
        if rule_held || (news && !listing.confirms(failing_since)) {
            let first = listing.held.is_empty();
            listing.held.push(alert.clone());
            if first {
                let message =
                    format!("⏳ {} held until discovery says whether this instance is still listed", alert.rule.name());
                out.log(state, LogLevel::Info, message);
            }
            return;
        }
    }
    raise_now(state, alert, out);
}

/// An alert transition: counted, logged, shown, recorded, measured and sent.
fn raise_now(state: &mut DashState, mut alert: AlertEvent, out: &mut Effects) {
    alert.instance.clone_from(&state.settings.instance);
    push_bounded(&mut state.alert_log, ALERT_LOG, alert.clone());
    let level = match alert.severity {
        Severity::Critical => LogLevel::Error,
        Severity::Warning => LogLevel::Warn,
        Severity::Ok => LogLevel::Info,
    };
    out.log(state, level, alert.to_string());
    let record = AlertRecord::new(out.stamp(state), &alert);
    out.write(Record::Alert(record));
    out.metric(MetricUpdate::Alert(alert.clone()));
    out.effects.push(Effect::Notify(alert));
}

fn gauges(state: &DashState) -> Gauges {
    Gauges {
        consecutive_failures: state.consecutive_failures,
        consecutive_health_failures: state.consecutive_health_failures as u64,
        service_healthy: state.last_health.as_ref().is_some_and(HealthCheck::is_healthy),
        server_up: state.lifecycle.is_ready(),
        crash_loop: matches!(state.lifecycle, Lifecycle::CrashLoop { .. }),
        alert_severity: RuleKind::ALL
            .iter()
            .map(|&rule| {
                let raised = match rule {
                    RuleKind::CrashLoop => matches!(state.lifecycle, Lifecycle::CrashLoop { .. }),
                    RuleKind::StartFailed => matches!(state.lifecycle, Lifecycle::Failed { .. }),
                    _ => false,
                };
                (rule, if raised { Severity::Critical } else { state.alerts.severity(rule) })
            })
            .collect(),
    }
}

#[cfg(test)]
mod tests;

mod cycles;
use cycles::{on_cycle_done, on_probe};
