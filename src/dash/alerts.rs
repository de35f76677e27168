//! Threshold alerts: one state machine per rule, OK → WARNING → CRITICAL.
//!
//! A rule fires when it enters a worse state, repeats while it stays bad no more often than
//! its cooldown, and sends `Resolved` when it returns to OK. Falling back from CRITICAL to
//! WARNING is not news on its own: the next repeat (after the cooldown) reports WARNING.
//! Percentile and rate rules wait for a minimum number of samples before judging.
//! Pure logic: the caller passes `now` (tokio's `Instant`, so tests run on paused time).

use std::fmt;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio::time::Instant;

/// How bad a rule's value is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    Ok,
    Warning,
    Critical,
}

impl fmt::Display for Severity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Ok => "OK",
            Self::Warning => "WARNING",
            Self::Critical => "CRITICAL",
        })
    }
}

/// Whether large values (latency) or small values (quality) are bad.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    Above,
    Below,
}

/// What a rule watches.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RuleKind {
    P95Latency,
    ErrorRate,
    ConsecutiveFailures,
    QualityScore,
    HealthDown,
    /// The supervisor gave up restarting (raised directly, not by thresholds).
    CrashLoop,
    /// The server cannot start and a restart would not help (raised directly).
    StartFailed,
}

impl RuleKind {
    /// Every rule, in the order the dashboard, `/metrics` and the exports list them.
    pub const ALL: [Self; 7] = [
        Self::P95Latency,
        Self::ErrorRate,
        Self::ConsecutiveFailures,
        Self::QualityScore,
        Self::HealthDown,
        Self::CrashLoop,
        Self::StartFailed,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Self::P95Latency => "p95_latency",
            Self::ErrorRate => "error_rate",
            Self::ConsecutiveFailures => "consecutive_failures",
            Self::QualityScore => "quality_score",
            Self::HealthDown => "health_down",
            Self::CrashLoop => "crash_loop",
            Self::StartFailed => "start_failed",
        }
    }

    /// The value as people read it: `4200.5ms`, `30.0%`, `3`, `0.50`.
    pub fn format_value(self, value: f64) -> String {
        match self {
            Self::P95Latency => format!("{value:.1}ms"),
            Self::ErrorRate => format!("{:.1}%", value * 100.0),
            Self::ConsecutiveFailures | Self::HealthDown | Self::CrashLoop | Self::StartFailed => format!("{value:.0}"),
            Self::QualityScore => format!("{value:.2}"),
        }
    }
}

/// One rule's thresholds.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Rule {
    pub kind: RuleKind,
    pub direction: Direction,
    pub warning: f64,
    pub critical: f64,
    /// Samples needed before the rule judges at all.
    pub min_samples: u64,
}

impl Rule {
    /// How bad `value` is, backed by `samples` observations: OK until the rule has its
    /// minimum number of samples.
    pub fn judge(&self, value: f64, samples: u64) -> Severity {
        if samples < self.min_samples { Severity::Ok } else { self.severity_of(value) }
    }

    fn severity_of(&self, value: f64) -> Severity {
        let worse = |threshold: f64| match self.direction {
            Direction::Above => value >= threshold,
            Direction::Below => value <= threshold,
        };
        if worse(self.critical) {
            Severity::Critical
        } else if worse(self.warning) {
            Severity::Warning
        } else {
            Severity::Ok
        }
    }

    fn threshold(&self, severity: Severity) -> f64 {
        if severity == Severity::Critical { self.critical } else { self.warning }
    }
}

/// The threshold rules of `config`, in [`RuleKind::ALL`] order: the one list the state
/// machine, the view, `/metrics` and the Prometheus export all read. Error rates are
/// fractions (0..1); `health_down` warns at the first failed check and is critical when the
/// supervisor would restart. `crash_loop` has no thresholds: the supervisor raises it.
pub fn rules(config: &crate::config::Config) -> Vec<Rule> {
    let t = &config.thresholds;
    let rule = |kind, direction, warning: f64, critical: f64, min_samples| Rule {
        kind,
        direction,
        warning,
        critical,
        min_samples,
    };
    vec![
        rule(
            RuleKind::P95Latency,
            Direction::Above,
            t.p95_latency_ms.warning,
            t.p95_latency_ms.critical,
            t.min_samples,
        ),
        rule(
            RuleKind::ErrorRate,
            Direction::Above,
            t.error_rate_percent.warning / 100.0,
            t.error_rate_percent.critical / 100.0,
            t.min_samples,
        ),
        rule(
            RuleKind::ConsecutiveFailures,
            Direction::Above,
            t.consecutive_failures.warning,
            t.consecutive_failures.critical,
            0,
        ),
        rule(
            RuleKind::QualityScore,
            Direction::Below,
            t.quality_score.warning,
            t.quality_score.critical,
            t.min_samples,
        ),
        rule(RuleKind::HealthDown, Direction::Above, 1.0, config.restart.health_failures.get() as f64, 0),
    ]
}

/// Why an alert event was raised.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AlertTransition {
    /// Entered a worse state.
    Fired,
    /// Still bad after the cooldown.
    Repeated,
    /// Back to OK.
    Resolved,
}

/// One alert notification.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AlertEvent {
    pub rule: RuleKind,
    pub severity: Severity,
    pub transition: AlertTransition,
    pub value: f64,
    pub threshold: f64,
}

impl fmt::Display for AlertEvent {
    /// The original design's alert lines:
    /// `🚨 ALERT: p95_latency = 4200.5ms (Warning threshold exceeded)`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let value = self.rule.format_value(self.value);
        let name = self.rule.name();
        match (self.transition, self.severity) {
            (AlertTransition::Resolved, _) => write!(f, "✅ RESOLVED: {name} = {value} (back to normal)"),
            (_, Severity::Critical) => write!(f, "🚨🚨 CRITICAL ALERT: {name} = {value} (Critical threshold exceeded)"),
            _ => write!(f, "🚨 ALERT: {name} = {value} (Warning threshold exceeded)"),
        }
    }
}

#[derive(Debug, Clone, Copy)]
struct RuleState {
    severity: Severity,
    last_notified: Option<Instant>,
}

/// All rules and their states.
#[derive(Debug, Clone)]
pub struct AlertEngine {
    rules: Vec<(Rule, RuleState)>,
    cooldown: Duration,
}

impl AlertEngine {
    pub fn new(rules: Vec<Rule>, cooldown: Duration) -> Self {
        let initial = RuleState { severity: Severity::Ok, last_notified: None };
        Self { rules: rules.into_iter().map(|rule| (rule, initial)).collect(), cooldown }
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

    /// Judges one observation of `kind`; `samples` is how many observations back it.
    pub fn observe(&mut self, kind: RuleKind, value: f64, samples: u64, now: Instant) -> Option<AlertEvent> {
        let cooldown = self.cooldown;
        let (rule, state) = self.rules.iter_mut().find(|(rule, _)| rule.kind == kind)?;
        if samples < rule.min_samples {
            return None;
        }
        let severity = rule.severity_of(value);
        let previous = state.severity;
        state.severity = severity;
        let transition = if severity == Severity::Ok {
            if previous == Severity::Ok {
                return None;
            }
            state.last_notified = None;
            AlertTransition::Resolved
        } else if severity > previous {
            state.last_notified = Some(now);
            AlertTransition::Fired
        } else if state.last_notified.is_none_or(|at| now.saturating_duration_since(at) >= cooldown) {
            state.last_notified = Some(now);
            AlertTransition::Repeated
        } else {
            return None;
        };
        let threshold = rule.threshold(if transition == AlertTransition::Resolved { previous } else { severity });
        Some(AlertEvent { rule: kind, severity, transition, value, threshold })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn latency_rule() -> Rule {
        Rule {
            kind: RuleKind::P95Latency,
            direction: Direction::Above,
            warning: 4000.0,
            critical: 8000.0,
            min_samples: 5,
        }
    }

    fn engine() -> AlertEngine {
        let quality = Rule {
            kind: RuleKind::QualityScore,
            direction: Direction::Below,
            warning: 0.75,
            critical: 0.5,
            min_samples: 1,
        };
        AlertEngine::new(vec![latency_rule(), quality], Duration::from_secs(300))
    }

    #[tokio::test(start_paused = true)]
    async fn waits_for_minimum_samples() {
        let mut alerts = engine();
        assert_eq!(alerts.observe(RuleKind::P95Latency, 9000.0, 4, Instant::now()), None);
        assert_eq!(alerts.severity(RuleKind::P95Latency), Severity::Ok);
        let event = alerts.observe(RuleKind::P95Latency, 9000.0, 5, Instant::now()).unwrap();
        assert_eq!((event.severity, event.transition), (Severity::Critical, AlertTransition::Fired));
    }

    #[tokio::test(start_paused = true)]
    async fn fires_escalates_repeats_after_cooldown_and_resolves() {
        let mut alerts = engine();
        let p95 = RuleKind::P95Latency;
        assert_eq!(alerts.observe(p95, 3000.0, 10, Instant::now()), None);

        let event = alerts.observe(p95, 4200.5, 10, Instant::now()).unwrap();
        assert_eq!(
            (event.severity, event.transition, event.threshold),
            (Severity::Warning, AlertTransition::Fired, 4000.0)
        );
        assert_eq!(event.to_string(), "🚨 ALERT: p95_latency = 4200.5ms (Warning threshold exceeded)");

        // Still warning inside the cooldown: silent.
        tokio::time::advance(Duration::from_secs(299)).await;
        assert_eq!(alerts.observe(p95, 4500.0, 10, Instant::now()), None);

        // Escalation is news at once, cooldown or not.
        tokio::time::advance(Duration::from_secs(1)).await;
        let event = alerts.observe(p95, 8100.0, 10, Instant::now()).unwrap();
        assert_eq!((event.severity, event.transition), (Severity::Critical, AlertTransition::Fired));
        assert_eq!(event.to_string(), "🚨🚨 CRITICAL ALERT: p95_latency = 8100.0ms (Critical threshold exceeded)");

        // Back to warning: not news; the repeat after the cooldown says WARNING.
        tokio::time::advance(Duration::from_secs(10)).await;
        assert_eq!(alerts.observe(p95, 5000.0, 10, Instant::now()), None);
        assert_eq!(alerts.severity(p95), Severity::Warning);
        tokio::time::advance(Duration::from_secs(290)).await;
        let event = alerts.observe(p95, 5000.0, 10, Instant::now()).unwrap();
        assert_eq!((event.severity, event.transition), (Severity::Warning, AlertTransition::Repeated));
        tokio::time::advance(Duration::from_secs(10)).await;
        assert_eq!(alerts.observe(p95, 5000.0, 10, Instant::now()), None);

        let event = alerts.observe(p95, 1000.0, 10, Instant::now()).unwrap();
        assert_eq!((event.severity, event.transition), (Severity::Ok, AlertTransition::Resolved));
        assert_eq!(event.threshold, 4000.0);
        assert!(event.to_string().starts_with("✅ RESOLVED: p95_latency"));
        assert_eq!(alerts.observe(p95, 1000.0, 10, Instant::now()), None);
        assert!(alerts.active().is_empty());

        // A new episode fires again immediately.
        let event = alerts.observe(p95, 4100.0, 10, Instant::now()).unwrap();
        assert_eq!(event.transition, AlertTransition::Fired);
    }

    #[tokio::test(start_paused = true)]
    async fn below_rules_fire_on_low_values_and_active_lists_worst_first() {
        let mut alerts = engine();
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
