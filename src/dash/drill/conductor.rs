//! The drill's conductor: watches the real monitor's events and effects and steps through the
//! plan — wait until the service is healthy with no alert, inject the fault, check that the
//! expected rule reaches its severity, repeats after the cooldown and resolves once the fault
//! is gone (or, for `hang`, `unready` and `crash`, that the service is restarted and healthy),
//! and that every sink got the fired and resolved notifications. Pure: it returns effects
//! (inject, clear, log, quit) for the executor, like `update`.

use std::time::Duration;

use tokio::time::Instant;

use super::plan::{Step, Timings};
use crate::alerts::{AlertTransition, RuleKind, Severity};
use crate::clock::Clock;
use crate::dash::effect::Effect;
use crate::dash::event::{Event, FaultsEvent};
use crate::dash::fleet::{Companion, Fleet, Tagged};
use crate::dash::rehearsal::describe;
use crate::dash::state::LogLevel;
use crate::dash::state::{DashState, ServiceStatus};
use crate::dash::supervisor::ServerEvent;
use crate::notify::{AlertState, DeliveryOutcome};

/// How long `POST /chaos` and `DELETE /chaos` may take to answer.
const ANSWER_WITHIN: Duration = Duration::from_secs(5);

/// Where the conductor is in the current step.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Phase {
    Settling,
    Injecting,
    Firing,
    Repeating,
    Clearing,
    Restarting,
    Resolving,
    Notifying,
    Finished,
}

/// What one sink received during a step.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct SinkResult {
    pub sink: String,
    pub fired: bool,
    pub resolved: bool,
    /// A notification failed or was dropped (no point waiting for the rest).
    pub failed: bool,
}

/// What happened in one step.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct StepResult {
    pub fault: String,
    pub kind: String,
    pub expected_alert: String,
    pub fired_after_s: Option<f64>,
    pub fire_within_s: f64,
    pub repeated_after_s: Option<f64>,
    /// None: no repeat is expected (the fault ends in a restart).
    pub repeat_within_s: Option<f64>,
    pub resolved_after_s: Option<f64>,
    pub resolve_within_s: f64,
    /// Seconds from firing (crash: from the fault) until the restarted server was ready.
    pub restart_after_s: Option<f64>,
    pub restart_expected: bool,
    pub notifications: Vec<SinkResult>,
    /// Other rules that fired during the step.
    pub also_fired: Vec<String>,
    /// Every expectation that did not hold, in words; empty when the step passed.
    pub problems: Vec<String>,
}

impl StepResult {
    pub fn passed(&self) -> bool {
        self.problems.is_empty()
    }
}

/// One step's observations so far.
#[derive(Debug, Clone)]
struct Observed {
    phase_deadline: Instant,
    injected_at: Option<Instant>,
    fired_at: Option<Instant>,
    repeated_at: Option<Instant>,
    /// When the fault ended: cleared, or the restarted server ready.
    ended_at: Option<Instant>,
    restart_ready_at: Option<Instant>,
    resolved_at: Option<Instant>,
    notifications: Vec<SinkResult>,
    also_fired: Vec<String>,
    problems: Vec<String>,
}

/// Steps through the drill's plan.
pub struct Conductor {
    steps: Vec<Step>,
    timings: Timings,
    sinks: Vec<String>,
    index: usize,
    phase: Phase,
    observed: Observed,
    results: Vec<StepResult>,
}

impl Conductor {
    /// A conductor for `steps`, starting at `now`; `sinks` are the configured sink names.
    pub fn new(steps: Vec<Step>, timings: Timings, sinks: Vec<String>, now: Instant) -> Self {
        let observed = Observed::new(&sinks, now + timings.settle_within);
        Self { steps, timings, sinks, index: 0, phase: Phase::Settling, observed, results: Vec::new() }
    }

    /// Every step's result, finished or not (an unfinished step says where it stopped).
    pub fn results(&self) -> Vec<StepResult> {
        let mut results = self.results.clone();
        if self.phase != Phase::Finished
            && let Some(step) = self.steps.get(self.index)
        {
            let mut unfinished = self.result_of(step);
            unfinished.problems.push(format!("the drill stopped while {}", self.waiting_for()));
            results.push(unfinished);
        }
        results
    }

    /// Looks at one event and what `update` made of it; returns the drill's own effects.
    /// (A drill rehearses capwatch's own child: one instance.)
    pub fn observe(&mut self, event: &Event, effects: &[Effect], state: &DashState, clock: Clock) -> Vec<Effect> {
        let now = clock.now;
        let mut out = Vec::new();
        let Some(step) = self.steps.get(self.index).cloned() else {
            if self.phase != Phase::Finished {
                self.phase = Phase::Finished;
                out.push(Effect::Quit);
            }
            return out;
        };
        self.note_alerts(&step, effects, now);
        self.note_event(&step, event, now);
        let expected_rule = step.expect.rule;
        let observed = &mut self.observed;
        let late = now >= observed.phase_deadline;
        match self.phase {
            Phase::Settling => {
                if settled(state) {
                    let Some(url) = state.url.clone() else { return out };
                    out.push(log(
                        LogLevel::Warn,
                        format!(
                            "🧯 Drill {}/{}: injecting {} (expecting {})",
                            self.index + 1,
                            self.steps.len(),
                            describe(&step.spec),
                            step.expected_alert()
                        ),
                    ));
                    out.push(Effect::InjectFault { url, spec: step.spec.clone() });
                    self.enter(Phase::Injecting, now + ANSWER_WITHIN);
                } else if late {
                    let within = self.timings.settle_within.as_secs_f64();
                    self.observed.problems.push(format!(
                        "the service was not healthy with no alert active within {within:.0} s, so the fault was not injected"
                    ));
                    self.finish_step(&step, now, &mut out);
                }
            }
            Phase::Injecting => {
                if observed.injected_at.is_some() {
                    if step.spec.kind == crate::protocol::faults::FaultKind::Crash {
                        let within = step.restart_within.unwrap_or_default();
                        self.enter(Phase::Restarting, now + within);
                    } else {
                        self.enter(Phase::Firing, now + step.fire_within);
                    }
                } else if late || !observed.problems.is_empty() {
                    if observed.problems.is_empty() {
                        observed.problems.push("POST /chaos did not answer in time".to_owned());
                    }
                    self.finish_step(&step, now, &mut out);
                }
            }
            Phase::Firing => {
                if let Some(fired) = observed.fired_at {
                    if let Some(within) = step.repeat_within {
                        self.enter(Phase::Repeating, fired + within);
                    } else {
                        let within = step.restart_within.unwrap_or_default();
                        self.enter(Phase::Restarting, fired + within);
                    }
                } else if observed.restart_ready_at.is_some() {
                    observed.problems.push(format!(
                        "{} never reached {} before the server was restarted",
                        rule_name(expected_rule),
                        step.expect.severity
                    ));
                    self.enter(Phase::Resolving, now + step.resolve_within);
                } else if late {
                    observed.problems.push(format!(
                        "{} did not reach {} within {:.1} s",
                        rule_name(expected_rule),
                        step.expect.severity,
                        step.fire_within.as_secs_f64()
                    ));
                    if step.expect.restart {
                        let within = step.restart_within.unwrap_or_default();
                        self.enter(Phase::Restarting, now + within);
                    } else {
                        self.clear(state, &mut out, now);
                    }
                }
            }
            Phase::Repeating => {
                if observed.repeated_at.is_some() {
                    self.clear(state, &mut out, now);
                } else if late {
                    let within = step.repeat_within.unwrap_or_default().as_secs_f64();
                    observed.problems.push(format!("the alert did not repeat within {within:.1} s of firing"));
                    self.clear(state, &mut out, now);
                }
            }
            Phase::Clearing => {
                if observed.ended_at.is_some() {
                    self.enter(Phase::Resolving, now + step.resolve_within);
                } else if late {
                    observed.problems.push("DELETE /chaos did not answer in time".to_owned());
                    observed.ended_at = Some(now);
                    self.enter(Phase::Resolving, now + step.resolve_within);
                }
            }
            Phase::Restarting => {
                if let Some(ready) = observed.restart_ready_at {
                    observed.ended_at = Some(ready);
                    self.enter(Phase::Resolving, ready + step.resolve_within);
                } else if late {
                    observed.problems.push("the server was not restarted in time".to_owned());
                    self.finish_step(&step, now, &mut out);
                }
            }
            Phase::Resolving => {
                // A crash has no rule of its own: it is over once the restarted server answers
                // a health check (the alerts it set off resolve before the next step starts).
                let healthy_again = state.lifecycle.is_ready()
                    && state.last_health.as_ref().is_some_and(|check| {
                        check.is_healthy() && observed.ended_at.is_some_and(|ended| check.at > ended)
                    });
                if expected_rule.is_none() && healthy_again {
                    observed.resolved_at = Some(now);
                }
                if observed.resolved_at.is_some() {
                    let notify_within = self.timings.notify_within;
                    self.enter(Phase::Notifying, now + notify_within);
                } else if late {
                    let what = if expected_rule.is_some() { "the alert" } else { "the service" };
                    let healthy = if expected_rule.is_some() { "resolve" } else { "become healthy" };
                    observed.problems.push(format!(
                        "{what} did not {healthy} within {:.1} s of the fault's end",
                        step.resolve_within.as_secs_f64()
                    ));
                    self.finish_step(&step, now, &mut out);
                }
            }
            Phase::Notifying => {
                let done = expected_rule.is_none()
                    || observed.notifications.iter().all(|sink| (sink.fired && sink.resolved) || sink.failed);
                if done {
                    self.finish_step(&step, now, &mut out);
                } else if late {
                    for sink in observed.notifications.iter().filter(|sink| !sink.failed) {
                        let missing: Vec<&str> = [("fired", sink.fired), ("resolved", sink.resolved)]
                            .iter()
                            .filter(|(_, got)| !got)
                            .map(|(what, _)| *what)
                            .collect();
                        if !missing.is_empty() {
                            observed.problems.push(format!("{} did not receive {}", sink.sink, missing.join(" and ")));
                        }
                    }
                    self.finish_step(&step, now, &mut out);
                }
            }
            Phase::Finished => {}
        }
        out
    }

    /// What the conductor is waiting for, in words.
    fn waiting_for(&self) -> &'static str {
        match self.phase {
            Phase::Settling => "waiting for a healthy service",
            Phase::Injecting => "injecting the fault",
            Phase::Firing => "waiting for the alert",
            Phase::Repeating => "waiting for the alert to repeat",
            Phase::Clearing => "clearing the fault",
            Phase::Restarting => "waiting for the restart",
            Phase::Resolving => "waiting for the alert to resolve",
            Phase::Notifying => "waiting for notifications",
            Phase::Finished => "done",
        }
    }

    fn enter(&mut self, phase: Phase, deadline: Instant) {
        self.phase = phase;
        self.observed.phase_deadline = deadline;
    }

    fn clear(&mut self, state: &DashState, out: &mut Vec<Effect>, now: Instant) {
        match state.url.clone() {
            Some(url) => out.push(Effect::ClearFaults { url }),
            None => self.observed.ended_at = Some(now),
        }
        self.enter(Phase::Clearing, now + ANSWER_WITHIN);
    }

    /// Alert transitions `update` raised.
    fn note_alerts(&mut self, step: &Step, effects: &[Effect], now: Instant) {
        let injected = self.observed.injected_at.is_some();
        for effect in effects {
            let Effect::Notify(alert) = effect else { continue };
            if !injected {
                continue;
            }
            let expected = step.expect.rule == Some(alert.rule);
            let raised = matches!(alert.transition, AlertTransition::Fired | AlertTransition::Escalated);
            if expected && raised && alert.severity >= step.expect.severity && self.observed.fired_at.is_none() {
                self.observed.fired_at = Some(now);
            } else if expected
                && alert.transition == AlertTransition::Repeated
                && self.observed.fired_at.is_some()
                && self.observed.repeated_at.is_none()
            {
                self.observed.repeated_at = Some(now);
            } else if expected && alert.transition == AlertTransition::Resolved && self.observed.fired_at.is_some() {
                self.observed.resolved_at.get_or_insert(now);
            } else if !expected && raised && alert.severity > Severity::Ok {
                let line = format!("{} {}", alert.rule.name(), alert.severity);
                if !self.observed.also_fired.contains(&line) {
                    self.observed.also_fired.push(line);
                }
            }
        }
    }

    fn note_event(&mut self, step: &Step, event: &Event, now: Instant) {
        let observed = &mut self.observed;
        match event {
            Event::Faults(FaultsEvent::Injected { result, .. }) if self.phase == Phase::Injecting => match result {
                Ok(_) => observed.injected_at = Some(now),
                Err(why) => observed.problems.push(format!("the fault was not injected: {why}")),
            },
            Event::Faults(FaultsEvent::Cleared(result)) if self.phase == Phase::Clearing => {
                if let Err(why) = result {
                    observed.problems.push(format!("the fault was not cleared: {why}"));
                }
                observed.ended_at = Some(now);
            }
            Event::Server(ServerEvent::Ready { .. }) if observed.injected_at.is_some() => {
                observed.restart_ready_at.get_or_insert(now);
            }
            Event::Notification(report) if observed.injected_at.is_some() => {
                if step.expect.rule.map(RuleKind::name) != Some(report.rule.as_str()) {
                    return;
                }
                let Some(sink) = observed.notifications.iter_mut().find(|sink| sink.sink == report.sink) else {
                    return;
                };
                match (&report.outcome, report.state) {
                    (DeliveryOutcome::Delivered { .. }, AlertState::Resolved) => sink.resolved = true,
                    (DeliveryOutcome::Delivered { .. }, _) => sink.fired = true,
                    (DeliveryOutcome::Failed { error, .. }, _) => {
                        sink.failed = true;
                        observed.problems.push(format!("{} failed a notification: {error}", report.sink));
                    }
                    (DeliveryOutcome::Dropped { .. }, _) => {
                        sink.failed = true;
                        observed.problems.push(format!("{} dropped a notification (queue full)", report.sink));
                    }
                }
            }
            _ => {}
        }
    }

    fn result_of(&self, step: &Step) -> StepResult {
        let observed = &self.observed;
        let since = |from: Option<Instant>, to: Option<Instant>| match (from, to) {
            (Some(from), Some(to)) => Some(to.saturating_duration_since(from).as_secs_f64()),
            _ => None,
        };
        let restart_from = if step.expect.rule.is_some() { observed.fired_at } else { observed.injected_at };
        StepResult {
            fault: describe(&step.spec),
            kind: step.spec.kind.name().to_owned(),
            expected_alert: step.expected_alert(),
            fired_after_s: since(observed.injected_at, observed.fired_at),
            fire_within_s: step.fire_within.as_secs_f64(),
            repeated_after_s: since(observed.fired_at, observed.repeated_at),
            repeat_within_s: step.repeat_within.map(|d| d.as_secs_f64()),
            resolved_after_s: since(observed.ended_at, observed.resolved_at),
            resolve_within_s: step.resolve_within.as_secs_f64(),
            restart_after_s: since(restart_from.or(observed.injected_at), observed.restart_ready_at),
            restart_expected: step.expect.restart,
            notifications: if step.expect.rule.is_some() { observed.notifications.clone() } else { Vec::new() },
            also_fired: observed.also_fired.clone(),
            problems: observed.problems.clone(),
        }
    }

    fn finish_step(&mut self, step: &Step, now: Instant, out: &mut Vec<Effect>) {
        let mut result = self.result_of(step);
        if !step.expect.restart && self.observed.restart_ready_at.is_some() {
            result.problems.push("the server was restarted, which this fault should not cause".to_owned());
        }
        let verdict = if result.passed() { "held" } else { "FAILED" };
        let (level, detail) = if result.passed() {
            (LogLevel::Info, String::new())
        } else {
            (LogLevel::Error, format!(": {}", result.problems.join("; ")))
        };
        out.push(log(
            level,
            format!("🧯 Drill {}/{} ({}) {verdict}{detail}", self.index + 1, self.steps.len(), result.kind),
        ));
        self.results.push(result);
        self.index += 1;
        if self.index >= self.steps.len() {
            self.phase = Phase::Finished;
            out.push(Effect::Quit);
        } else {
            self.observed = Observed::new(&self.sinks, now + self.timings.settle_within);
            self.phase = Phase::Settling;
        }
    }
}

impl Companion for Conductor {
    fn observe(&mut self, event: &Event, effects: &[Tagged], fleet: &Fleet, clock: Clock) -> Vec<Tagged> {
        // A drill watches the one server it launched.
        let Some(server) = fleet.first() else { return Vec::new() };
        let plain: Vec<Effect> = effects.iter().map(|(_, effect)| effect.clone()).collect();
        let own = Conductor::observe(self, event, &plain, server, clock);
        own.into_iter().map(|effect| (Some(0), effect)).collect()
    }
}

impl Observed {
    fn new(sinks: &[String], deadline: Instant) -> Self {
        Self {
            phase_deadline: deadline,
            injected_at: None,
            fired_at: None,
            repeated_at: None,
            ended_at: None,
            restart_ready_at: None,
            resolved_at: None,
            notifications: sinks
                .iter()
                .map(|sink| SinkResult { sink: sink.clone(), fired: false, resolved: false, failed: false })
                .collect(),
            also_fired: Vec::new(),
            problems: Vec::new(),
        }
    }
}

/// Healthy, no alert active, no fault in force, and enough samples in the window for the
/// rules to judge.
fn settled(state: &DashState) -> bool {
    let min_samples = state.alerts.rule(RuleKind::P95Latency).map_or(0, |rule| rule.min_samples);
    state.lifecycle.is_ready()
        && state.status() == ServiceStatus::Healthy
        && state.alerts.active().is_empty()
        && state.faults.active.is_empty()
        && state.window.samples().count() as u64 >= min_samples
}

fn rule_name(rule: Option<RuleKind>) -> &'static str {
    rule.map_or("the service", RuleKind::name)
}

fn log(level: LogLevel, message: String) -> Effect {
    Effect::Log { level, message }
}

#[cfg(test)]
mod tests;
