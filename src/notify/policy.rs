//! Which alert events one sink hears: no page twice for the same incident.
//!
//! A sink hears a rule's events at or above its minimum severity, at most once per cooldown
//! per rule (and per instance, when several are watched); a resolve always goes out to a sink that was told the rule fired, and it opens
//! the way for the next incident at once. What the cooldown holds back is not lost: it is
//! in the log and the metrics file, and the rule's repeat after the cooldown carries its
//! state by then. For a sink that only hears CRITICAL, a de-escalation to WARNING is a
//! resolve. Pure logic on tokio's clock, so the property tests run on paused time.

use std::collections::HashMap;
use std::time::Duration;

use tokio::time::Instant;

use crate::alerts::{AlertEvent, RuleKind, Severity};
use crate::config::MinSeverity;

/// What a sink is sent for one event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Tell {
    /// The rule is firing at the event's severity (`reason` says how it got there).
    Firing,
    /// The rule is over as far as this sink is concerned.
    Resolved,
}

/// One sink's memory of what it was told.
#[derive(Debug, Clone)]
pub struct SinkPolicy {
    min_severity: MinSeverity,
    cooldown: Duration,
    /// Rules (per watched instance) this sink was told are firing, and when it was last sent
    /// anything about them.
    told: HashMap<(Option<String>, RuleKind), Instant>,
}

impl SinkPolicy {
    pub fn new(min_severity: MinSeverity, cooldown: Duration) -> Self {
        Self { min_severity, cooldown, told: HashMap::new() }
    }

    /// Whether (and how) this sink hears `alert`, raised at `now`.
    pub fn decide(&mut self, alert: &AlertEvent, now: Instant) -> Option<Tell> {
        let loud_enough = match self.min_severity {
            MinSeverity::Warning => alert.severity >= Severity::Warning,
            MinSeverity::Critical => alert.severity >= Severity::Critical,
        };
        // Each instance's incidents are its own: one instance's page never holds back another's.
        let key = (alert.instance.clone(), alert.rule);
        if alert.transition.is_resolve() || !loud_enough {
            // Back to OK, or (critical-only sink) down to WARNING: over for this sink.
            return self.told.remove(&key).map(|_| Tell::Resolved);
        }
        match self.told.get(&key) {
            Some(&last) if now.saturating_duration_since(last) < self.cooldown => None,
            _ => {
                self.told.insert(key, now);
                Some(Tell::Firing)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::alerts::AlertTransition;

    fn event(severity: Severity, transition: AlertTransition) -> AlertEvent {
        AlertEvent { rule: RuleKind::P95Latency, severity, transition, value: 1.0, threshold: 1.0, instance: None }
    }

    #[tokio::test(start_paused = true)]
    async fn the_issues_example_pages_once() {
        // warning fired, critical 3 s later, back to warning, critical again 9 s after the first.
        let mut slack = SinkPolicy::new(MinSeverity::Warning, Duration::from_secs(300));
        let mut pager = SinkPolicy::new(MinSeverity::Critical, Duration::from_secs(300));
        let script = [
            (0, Severity::Warning, AlertTransition::Fired),
            (3, Severity::Critical, AlertTransition::Escalated),
            (6, Severity::Warning, AlertTransition::Deescalated),
            (9, Severity::Critical, AlertTransition::Escalated),
        ];
        let start = Instant::now();
        let mut heard = (Vec::new(), Vec::new());
        for (at, severity, transition) in script {
            let now = start + Duration::from_secs(at);
            heard.0.push(slack.decide(&event(severity, transition), now));
            heard.1.push(pager.decide(&event(severity, transition), now));
        }
        assert_eq!(heard.0, vec![Some(Tell::Firing), None, None, None], "warning sink: one notification");
        // The pager hears the escalation, the de-escalation as a resolve, and the second
        // escalation as a new incident: resolved in between, so it is news again.
        assert_eq!(heard.1, vec![None, Some(Tell::Firing), Some(Tell::Resolved), Some(Tell::Firing)]);
    }

    #[tokio::test(start_paused = true)]
    async fn repeats_after_the_cooldown_and_resolves_only_what_it_told() {
        let mut sink = SinkPolicy::new(MinSeverity::Warning, Duration::from_secs(300));
        let now = Instant::now();
        assert_eq!(sink.decide(&event(Severity::Ok, AlertTransition::Resolved), now), None);
        assert_eq!(sink.decide(&event(Severity::Warning, AlertTransition::Fired), now), Some(Tell::Firing));
        let later = now + Duration::from_secs(300);
        assert_eq!(sink.decide(&event(Severity::Critical, AlertTransition::Repeated), later), Some(Tell::Firing));
        assert_eq!(sink.decide(&event(Severity::Ok, AlertTransition::Resolved), later), Some(Tell::Resolved));
        assert_eq!(sink.decide(&event(Severity::Warning, AlertTransition::Fired), later), Some(Tell::Firing));
    }
}
