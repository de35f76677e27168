//! Faults sized to trip the configured alerts, and what each should set off: the presets of
//! the dashboard's fault menu (`f`) and the steps of `capwatch drill`. Pure: reads the config,
//! returns [`FaultSpec`]s and [`Expectation`]s.

use std::time::Duration;

use crate::alerts::{RuleKind, Severity};
use crate::config::Config;
use crate::protocol::faults::{FaultKind, FaultSpec};

/// How much past a critical latency threshold an injected delay goes.
const OVERSHOOT: f64 = 1.25;
/// Decoding steps a caption takes at least (the shortest test caption, "a small red
/// triangle", is four tokens and the stop token): a slowed step × this passes the threshold.
const MIN_STEPS: f64 = 4.0;
/// How long a fault from the menu lasts.
pub const MENU_DURATION: Duration = Duration::from_secs(60);

/// What a fault should set off.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Expectation {
    /// The rule that must fire (None: the fault is judged by the restart alone).
    pub rule: Option<RuleKind>,
    pub severity: Severity,
    /// The service ends in an automatic restart (the fault dies with the process).
    pub restart: bool,
}

/// The rule and severity each kind of fault must set off.
pub fn expectation(kind: FaultKind) -> Expectation {
    let (rule, restart) = match kind {
        FaultKind::Latency | FaultKind::SlowDecoder => (Some(RuleKind::P95Latency), false),
        FaultKind::Errors => (Some(RuleKind::ErrorRate), false),
        FaultKind::Garbage => (Some(RuleKind::QualityScore), false),
        FaultKind::Hang | FaultKind::Unready => (Some(RuleKind::HealthDown), true),
        FaultKind::Crash => (None, true),
    };
    Expectation { rule, severity: Severity::Critical, restart }
}

/// A fault of `kind` for `duration`, with parameters that pass the config's critical thresholds.
pub fn sized(kind: FaultKind, config: &Config, duration: Duration) -> FaultSpec {
    let critical_ms = config.thresholds.p95_latency_ms.critical;
    FaultSpec {
        duration_s: duration.as_secs_f64(),
        latency_ms: (critical_ms * OVERSHOOT).ceil() as u64,
        step_delay_ms: (critical_ms * OVERSHOOT / MIN_STEPS).ceil() as u64,
        status: 500,
        ..FaultSpec::new(kind)
    }
}

/// The fault menu: every kind, sized for the config, for [`MENU_DURATION`].
pub fn menu(config: &Config) -> Vec<FaultSpec> {
    FaultKind::ALL.iter().map(|&kind| sized(kind, config, MENU_DURATION)).collect()
}

/// A fault in a few words: `latency +10000 ms`, `errors 500 on 100 %`.
pub fn describe(spec: &FaultSpec) -> String {
    let share = if spec.share < 1.0 { format!(" on {:.0} %", spec.share * 100.0) } else { String::new() };
    match spec.kind {
        FaultKind::Latency if spec.jitter_ms > 0 => {
            format!("latency +{} ± {} ms{share}", spec.latency_ms, spec.jitter_ms)
        }
        FaultKind::Latency => format!("latency +{} ms{share}", spec.latency_ms),
        FaultKind::Errors => format!("errors: HTTP {}{share}", spec.status),
        FaultKind::Hang => "hang: /caption, /health and /ready stop answering".to_owned(),
        FaultKind::Crash => format!("crash: exit {}", spec.exit_code),
        FaultKind::Garbage => format!("garbage captions{share}"),
        FaultKind::SlowDecoder => format!("slow decoder +{} ms per step", spec.step_delay_ms),
        FaultKind::Unready => "unready: /ready 503, /health unhealthy".to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn faults_pass_the_critical_thresholds() {
        let config = Config::default();
        let critical = config.thresholds.p95_latency_ms.critical;
        let latency = sized(FaultKind::Latency, &config, MENU_DURATION);
        assert!(latency.latency_ms as f64 > critical);
        let slow = sized(FaultKind::SlowDecoder, &config, MENU_DURATION);
        assert!(slow.step_delay_ms as f64 * MIN_STEPS > critical);
        assert!(menu(&config).iter().all(|spec| spec.validate().is_ok()));
        assert_eq!(menu(&config).len(), FaultKind::ALL.len());
        assert_eq!(describe(&latency), format!("latency +{} ms", latency.latency_ms));
        assert_eq!(expectation(FaultKind::Hang).rule, Some(RuleKind::HealthDown));
        assert!(expectation(FaultKind::Crash).restart);
    }
}
