//! One state machine per rule. Every change of state is an event:
//!
//! ```text
//!            value reaches a level (at once)
//!   OK ──────────────────────────────▶ WARNING ◀──── de-escalated ────┐
//!    ▲ ▲                                  │  ▲                        │
//!    │ └──── resolved ────────────────────┘  └──── escalated ────▶ CRITICAL
//!    └────────────────── resolved ────────────────────────────────────┘
//!   (OK → CRITICAL directly is "fired" too; a rule still bad after the cooldown "repeats")
//! ```
//!
//! Firing is immediate. Escalating, de-escalating and resolving wait until the new state has
//! held for [`Stability::for_evaluations`] evaluations and [`Stability::for_duration`] (as
//! Prometheus's `for:`), and a value only leaves a level once it is clear of that level's
//! threshold by the hysteresis band, so a value hovering at a threshold does not flap.
//! Rules that count failures in a row escalate at once: the count is its own hold.

use std::time::Duration;

use tokio::time::Instant;

use super::{AlertEvent, AlertTransition, Rule, RuleKind, Severity};

/// How steady a change must be before it counts (firing excepted).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Stability {
    /// Consecutive evaluations that must agree on the new state.
    pub for_evaluations: u32,
    /// Time the new state must have held.
    pub for_duration: Duration,
    /// Fraction of a threshold a value must clear it by to leave its level (0.1 = 10 %).
    pub hysteresis: f64,
}

impl Stability {
    /// No holding and no band: every change counts at once.
    pub const IMMEDIATE: Self = Self { for_evaluations: 1, for_duration: Duration::ZERO, hysteresis: 0.0 };
}

/// A change seen but not yet held long enough.
#[derive(Debug, Clone, Copy)]
struct Pending {
    severity: Severity,
    since: Instant,
    evaluations: u32,
}

#[derive(Debug, Clone, Copy)]
struct RuleState {
    severity: Severity,
    /// When the rule last raised an event while bad (for the repeat after the cooldown).
    last_event: Option<Instant>,
    pending: Option<Pending>,
}

/// All rules and their states.
#[derive(Debug, Clone)]
pub struct AlertEngine {
    rules: Vec<(Rule, RuleState)>,
    cooldown: Duration,
    stability: Stability,
}

impl AlertEngine {
    pub fn new(rules: Vec<Rule>, cooldown: Duration, stability: Stability) -> Self {
        let initial = RuleState { severity: Severity::Ok, last_event: None, pending: None };
        Self { rules: rules.into_iter().map(|rule| (rule, initial)).collect(), cooldown, stability }
    }

    /// The rule of `kind`, if it has thresholds.
    pub fn rule(&self, kind: RuleKind) -> Option<&Rule> {
        self.rules.iter().map(|(rule, _)| rule).find(|rule| rule.kind == kind)
    }

    /// Current severity of a rule (OK for unknown rules).
    pub fn severity(&self, kind: RuleKind) -> Severity {
        self.rules.iter().find(|(rule, _)| rule.kind == kind).map_or(Severity::Ok, |(_, state)| state.severity)
    }

    /// Rules not OK, worst first.
    pub fn active(&self) -> Vec<(RuleKind, Severity)> {
        let mut active: Vec<_> = self
            .rules
            .iter()
            .filter(|(_, state)| state.severity != Severity::Ok)
            .map(|(rule, state)| (rule.kind, state.severity))
            .collect();
        active.sort_by_key(|(_, severity)| std::cmp::Reverse(*severity));
        active
    }

    /// Every rule back to OK because the instance left the fleet: one `Left` event per rule
    /// that was not OK, with its last level and threshold.
    pub fn retire(&mut self) -> Vec<AlertEvent> {
        let mut events = Vec::new();
        for (rule, state) in &mut self.rules {
            if state.severity != Severity::Ok {
                events.push(AlertEvent {
                    rule: rule.kind,
                    severity: Severity::Ok,
                    transition: AlertTransition::Left,
                    value: f64::NAN,
                    threshold: rule.threshold(state.severity),
                    instance: None,
                });
            }
            *state = RuleState { severity: Severity::Ok, last_event: None, pending: None };
        }
        events
    }

    /// Judges one observation of `kind`; `samples` is how many observations back it.
    pub fn observe(&mut self, kind: RuleKind, value: f64, samples: u64, now: Instant) -> Option<AlertEvent> {
        let (cooldown, stability) = (self.cooldown, self.stability);
        let (rule, state) = self.rules.iter_mut().find(|(rule, _)| rule.kind == kind)?;
        if samples < rule.min_samples {
            return None;
        }
        let current = state.severity;
        let target = rule.target(current, value, stability.hysteresis);
        if target == current {
            state.pending = None;
            let due = state.last_event.is_none_or(|at| now.saturating_duration_since(at) >= cooldown);
            if current == Severity::Ok || !due {
                return None;
            }
            state.last_event = Some(now);
            return Some(AlertEvent {
                rule: kind,
                severity: current,
                transition: AlertTransition::Repeated,
                value,
                threshold: rule.threshold(current),
                instance: None,
            });
        }
        // A count of failures in a row has held for that many evaluations already: it
        // escalates at once (else `health_down` could never reach CRITICAL, since the restart
        // it calls for resets the count).
        let escalating_count = kind.counts_in_a_row() && target > current;
        if current != Severity::Ok && !escalating_count {
            let pending = match state.pending {
                Some(pending) if pending.severity == target => {
                    Pending { evaluations: pending.evaluations + 1, ..pending }
                }
                _ => Pending { severity: target, since: now, evaluations: 1 },
            };
            let held = pending.evaluations >= stability.for_evaluations
                && now.saturating_duration_since(pending.since) >= stability.for_duration;
            if !held {
                state.pending = Some(pending);
                return None;
            }
        }
        state.pending = None;
        state.severity = target;
        let transition = match (current, target) {
            (Severity::Ok, _) => AlertTransition::Fired,
            (_, Severity::Ok) => AlertTransition::Resolved,
            _ if target > current => AlertTransition::Escalated,
            _ => AlertTransition::Deescalated,
        };
        state.last_event = (target != Severity::Ok).then_some(now);
        // A resolve or de-escalation names the threshold it went back under.
        let threshold = rule.threshold(if target > current { target } else { current });
        Some(AlertEvent { rule: kind, severity: target, transition, value, threshold, instance: None })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::alerts::Direction;

    fn latency_rule() -> Rule {
        Rule {
            kind: RuleKind::P95Latency,
            direction: Direction::Above,
            warning: 4000.0,
            critical: 8000.0,
            min_samples: 5,
        }
    }

    fn engine(stability: Stability) -> AlertEngine {
        let quality = Rule {
            kind: RuleKind::QualityScore,
            direction: Direction::Below,
            warning: 0.75,
            critical: 0.5,
            min_samples: 1,
        };
        AlertEngine::new(vec![latency_rule(), quality], Duration::from_secs(300), stability)
    }

    fn step(alerts: &mut AlertEngine, value: f64) -> Option<(Severity, AlertTransition)> {
        alerts.observe(RuleKind::P95Latency, value, 10, Instant::now()).map(|e| (e.severity, e.transition))
    }

    #[tokio::test(start_paused = true)]
    async fn waits_for_minimum_samples() {
        let mut alerts = engine(Stability::IMMEDIATE);
        assert_eq!(alerts.observe(RuleKind::P95Latency, 9000.0, 4, Instant::now()), None);
        assert_eq!(alerts.severity(RuleKind::P95Latency), Severity::Ok);
        let event = alerts.observe(RuleKind::P95Latency, 9000.0, 5, Instant::now()).unwrap();
        assert_eq!((event.severity, event.transition), (Severity::Critical, AlertTransition::Fired));
    }

    #[tokio::test(start_paused = true)]
    async fn every_change_is_an_event_and_a_steady_state_repeats_after_the_cooldown() {
        let mut alerts = engine(Stability::IMMEDIATE);
        assert_eq!(step(&mut alerts, 3000.0), None);
        let event = alerts.observe(RuleKind::P95Latency, 4200.5, 10, Instant::now()).unwrap();
        assert_eq!(
            (event.severity, event.transition, event.threshold),
            (Severity::Warning, AlertTransition::Fired, 4000.0)
        );
        assert_eq!(event.to_string(), "🚨 ALERT: p95_latency = 4200.5ms (Warning threshold exceeded)");
        tokio::time::advance(Duration::from_secs(299)).await;
        assert_eq!(step(&mut alerts, 4500.0), None, "still warning inside the cooldown");
        let event = alerts.observe(RuleKind::P95Latency, 8100.0, 10, Instant::now()).unwrap();
        assert_eq!((event.severity, event.transition), (Severity::Critical, AlertTransition::Escalated));
        assert_eq!(
            event.to_string(),
            "🚨🚨 CRITICAL ALERT: p95_latency = 8100.0ms (Critical threshold exceeded, was WARNING)"
        );
        let event = alerts.observe(RuleKind::P95Latency, 5000.0, 10, Instant::now()).unwrap();
        assert_eq!(
            (event.severity, event.transition, event.threshold),
            (Severity::Warning, AlertTransition::Deescalated, 8000.0)
        );
        tokio::time::advance(Duration::from_secs(300)).await;
        assert_eq!(step(&mut alerts, 5000.0), Some((Severity::Warning, AlertTransition::Repeated)));
        let event = alerts.observe(RuleKind::P95Latency, 1000.0, 10, Instant::now()).unwrap();
        assert_eq!(
            (event.severity, event.transition, event.threshold),
            (Severity::Ok, AlertTransition::Resolved, 4000.0)
        );
        assert!(event.to_string().starts_with("✅ RESOLVED: p95_latency"));
        assert_eq!(step(&mut alerts, 1000.0), None);
        assert!(alerts.active().is_empty());
        assert_eq!(step(&mut alerts, 4100.0), Some((Severity::Warning, AlertTransition::Fired)), "a new episode");
    }

    #[tokio::test(start_paused = true)]
    async fn leaving_a_level_needs_the_hysteresis_band_and_the_hold() {
        let stability = Stability { for_evaluations: 2, for_duration: Duration::ZERO, hysteresis: 0.1 };
        let mut alerts = engine(stability);
        assert_eq!(step(&mut alerts, 8000.0), Some((Severity::Critical, AlertTransition::Fired)), "firing is at once");
        // 7300 is under the critical threshold but inside its 10 % band (7200): still critical.
        assert_eq!(step(&mut alerts, 7300.0), None);
        assert_eq!(step(&mut alerts, 7300.0), None);
        assert_eq!(alerts.severity(RuleKind::P95Latency), Severity::Critical);
        // Clear of the band once: pending; twice: de-escalated.
        assert_eq!(step(&mut alerts, 7000.0), None);
        assert_eq!(step(&mut alerts, 7000.0), Some((Severity::Warning, AlertTransition::Deescalated)));
        // Back up: escalating waits for the hold too.
        assert_eq!(step(&mut alerts, 8100.0), None);
        assert_eq!(step(&mut alerts, 3700.0), None, "the spike did not hold; 3700 is inside the warning band");
        assert_eq!(step(&mut alerts, 3500.0), None);
        assert_eq!(step(&mut alerts, 3500.0), Some((Severity::Ok, AlertTransition::Resolved)));
    }

    #[tokio::test(start_paused = true)]
    async fn counts_in_a_row_escalate_at_once_and_leave_with_the_hold() {
        let stability = Stability { for_evaluations: 2, for_duration: Duration::ZERO, hysteresis: 0.1 };
        let health = Rule {
            kind: RuleKind::HealthDown,
            direction: Direction::Above,
            warning: 1.0,
            critical: 3.0,
            min_samples: 0,
        };
        let mut alerts = AlertEngine::new(vec![health], Duration::from_secs(300), stability);
        let mut count = |value: f64| {
            alerts.observe(RuleKind::HealthDown, value, u64::MAX, Instant::now()).map(|e| (e.severity, e.transition))
        };
        assert_eq!(count(1.0), Some((Severity::Warning, AlertTransition::Fired)));
        assert_eq!(count(2.0), None);
        // The third failure in a row is the restart's: CRITICAL now, or never (the restart resets the count).
        assert_eq!(count(3.0), Some((Severity::Critical, AlertTransition::Escalated)));
        assert_eq!(count(0.0), None, "resolving still waits for the hold");
        assert_eq!(count(0.0), Some((Severity::Ok, AlertTransition::Resolved)));
    }

    #[tokio::test(start_paused = true)]
    async fn the_hold_can_be_a_duration() {
        let stability = Stability { for_evaluations: 1, for_duration: Duration::from_secs(30), hysteresis: 0.0 };
        let mut alerts = engine(stability);
        assert_eq!(step(&mut alerts, 5000.0), Some((Severity::Warning, AlertTransition::Fired)));
        assert_eq!(step(&mut alerts, 1000.0), None);
        tokio::time::advance(Duration::from_secs(29)).await;
        assert_eq!(step(&mut alerts, 1000.0), None);
        tokio::time::advance(Duration::from_secs(1)).await;
        assert_eq!(step(&mut alerts, 1000.0), Some((Severity::Ok, AlertTransition::Resolved)));
    }

    #[tokio::test(start_paused = true)]
    async fn below_rules_fire_on_low_values_and_active_lists_worst_first() {
        let mut alerts = engine(Stability::IMMEDIATE);
        let event = alerts.observe(RuleKind::QualityScore, 0.5, 1, Instant::now()).unwrap();
        assert_eq!(event.severity, Severity::Critical);
        assert_eq!(event.to_string(), "🚨🚨 CRITICAL ALERT: quality_score = 0.50 (Critical threshold exceeded)");
        alerts.observe(RuleKind::P95Latency, 4100.0, 10, Instant::now());
        assert_eq!(
            alerts.active(),
            vec![(RuleKind::QualityScore, Severity::Critical), (RuleKind::P95Latency, Severity::Warning)]
        );
        assert_eq!(
            alerts.observe(RuleKind::QualityScore, 0.9, 1, Instant::now()).unwrap().transition,
            AlertTransition::Resolved
        );
    }

    #[test]
    fn values_read_like_the_original() {
        assert_eq!(RuleKind::ErrorRate.format_value(0.3), "30.0%");
        assert_eq!(RuleKind::ConsecutiveFailures.format_value(5.0), "5");
    }
}
