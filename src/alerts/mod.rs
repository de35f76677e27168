//! Threshold alerts: the rules ([`rules`], one list for everything that judges), what an
//! alert event says, and (in [`engine`]) one state machine per rule, OK → WARNING →
//! CRITICAL, in which every change of state is an event.
//! Pure logic: the caller passes `now` (tokio's `Instant`, so tests run on paused time).

mod engine;
#[cfg(test)]
mod properties;

pub use engine::{AlertEngine, Stability};

use std::fmt;

use serde::{Deserialize, Serialize};

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
    /// A model variant is significantly worse than the baseline on errors or quality (A/B).
    AbWorse,
    /// The server's recent requests drift from its reference (share of features drifted).
    Drift,
}

impl RuleKind {
    /// Every rule, in the order the dashboard, `/metrics` and the exports list them.
    pub const ALL: [Self; 9] = [
        Self::P95Latency,
        Self::ErrorRate,
        Self::ConsecutiveFailures,
        Self::QualityScore,
        Self::HealthDown,
        Self::CrashLoop,
        Self::StartFailed,
        Self::AbWorse,
        Self::Drift,
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
            Self::AbWorse => "ab_worse",
            Self::Drift => "drift",
        }
    }

    /// Whether the value counts failures in a row (so reaching a level already took that
    /// many evaluations).
    pub fn counts_in_a_row(self) -> bool {
        matches!(self, Self::ConsecutiveFailures | Self::HealthDown)
    }

    /// The value as people read it: `4200.5ms`, `30.0%`, `3`, `0.50`.
    pub fn format_value(self, value: f64) -> String {
        match self {
            Self::P95Latency => format!("{value:.1}ms"),
            Self::ErrorRate | Self::Drift => format!("{:.1}%", value * 100.0),
            Self::ConsecutiveFailures | Self::HealthDown | Self::CrashLoop | Self::StartFailed | Self::AbWorse => {
                format!("{value:.0}")
            }
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

    /// Like [`Self::severity_of`], with every threshold moved `hysteresis` (a fraction)
    /// towards OK: the level a value still holds on the way down.
    fn severity_held(&self, value: f64, hysteresis: f64) -> Severity {
        let relaxed = |threshold: f64| match self.direction {
            Direction::Above => threshold - threshold.abs() * hysteresis,
            Direction::Below => threshold + threshold.abs() * hysteresis,
        };
        Rule { warning: relaxed(self.warning), critical: relaxed(self.critical), ..*self }.severity_of(value)
    }

    /// Where a rule at `current` goes on `value`: up at once to the level the value
    /// reaches; down only as far as the value has cleared by the hysteresis band.
    pub fn target(&self, current: Severity, value: f64, hysteresis: f64) -> Severity {
        let reached = self.severity_of(value);
        if reached >= current { reached } else { current.min(self.severity_held(value, hysteresis)) }
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
    let mut rules = vec![
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
        rule(RuleKind::Drift, Direction::Above, t.drift_share.warning, t.drift_share.critical, 0),
    ];
    // `ab_worse` counts the variants found worse: one is enough, at the configured level.
    match t.ab_worse {
        crate::config::AbWorseLevel::Off => {}
        crate::config::AbWorseLevel::Warning => {
            rules.push(rule(RuleKind::AbWorse, Direction::Above, 1.0, f64::INFINITY, 0))
        }
        crate::config::AbWorseLevel::Critical => rules.push(rule(RuleKind::AbWorse, Direction::Above, 1.0, 1.0, 0)),
    }
    rules
}

/// How steady a change must be before a rule of `config` changes state.
pub fn stability(config: &crate::config::Config) -> Stability {
    let t = &config.thresholds;
    Stability {
        for_evaluations: t.for_evaluations.get(),
        for_duration: t.for_s.map_or(std::time::Duration::ZERO, |s| s.0),
        hysteresis: t.hysteresis_percent / 100.0,
    }
}

/// Why an alert event was raised: every change of a rule's state is one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AlertTransition {
    /// OK → WARNING or CRITICAL.
    Fired,
    /// WARNING → CRITICAL.
    Escalated,
    /// CRITICAL → WARNING.
    Deescalated,
    /// Still bad after the cooldown.
    Repeated,
    /// Back to OK.
    Resolved,
    /// Back to OK because the instance left the fleet (discovery no longer lists it): not
    /// measured, and not an incident.
    Left,
}

impl AlertTransition {
    /// Whether the alert is over (back to OK, measured or because its instance left).
    pub fn is_resolve(self) -> bool {
        matches!(self, Self::Resolved | Self::Left)
    }

    /// The label in `/metrics` (`reason`) and the records.
    pub fn name(self) -> &'static str {
        match self {
            Self::Fired => "fired",
            Self::Escalated => "escalated",
            Self::Deescalated => "deescalated",
            Self::Repeated => "repeated",
            Self::Resolved => "resolved",
            Self::Left => "left",
        }
    }
}

/// One alert notification.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AlertEvent {
    pub rule: RuleKind,
    pub severity: Severity,
    pub transition: AlertTransition,
    pub value: f64,
    pub threshold: f64,
    /// The watched instance it is about, when the dashboard watches several (`monitor --url A --url B`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub instance: Option<String>,
}

impl fmt::Display for AlertEvent {
    /// The original design's alert lines:
    /// `🚨 ALERT: p95_latency = 4200.5ms (Warning threshold exceeded)`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let value = self.rule.format_value(self.value);
        let name = self.rule.name();
        match (self.transition, self.severity) {
            (AlertTransition::Resolved, _) => write!(f, "✅ RESOLVED: {name} = {value} (back to normal)"),
            (AlertTransition::Left, _) => write!(f, "✅ RESOLVED: {name} (the instance left the fleet)"),
            (AlertTransition::Escalated, _) => {
                write!(f, "🚨🚨 CRITICAL ALERT: {name} = {value} (Critical threshold exceeded, was WARNING)")
            }
            (AlertTransition::Deescalated, _) => {
                write!(f, "🔽 DE-ESCALATED: {name} = {value} (back under the Critical threshold, still WARNING)")
            }
            (_, Severity::Critical) => write!(f, "🚨🚨 CRITICAL ALERT: {name} = {value} (Critical threshold exceeded)"),
            _ => write!(f, "🚨 ALERT: {name} = {value} (Warning threshold exceeded)"),
        }
    }
}
