//! Property tests of the alert state machine and the sinks' notification policy: thousands
//! of seeded random value series (drifts, spikes and values hovering at a threshold), on
//! paused time.

use std::time::Duration;

use tokio::time::Instant;

use super::{AlertEngine, AlertEvent, AlertTransition, Direction, Rule, RuleKind, Severity, Stability};
use crate::config::MinSeverity;
use crate::notify::policy::{SinkPolicy, Tell};

const RUNS: u64 = 3000;
const STEPS: usize = 200;
const COOLDOWN: Duration = Duration::from_secs(300);

/// xorshift64*: small, seeded, reproducible.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    /// Uniform in [0, 1).
    fn unit(&mut self) -> f64 {
        (self.next() >> 11) as f64 / (1u64 << 53) as f64
    }
}

/// A random walk around the thresholds 5 / 8 (sometimes jumping), with a random time step.
fn series(rng: &mut Rng) -> Vec<(Duration, f64)> {
    let mut value = rng.unit() * 12.0;
    (0..STEPS)
        .map(|_| {
            value = match rng.next() % 10 {
                0 => rng.unit() * 12.0,
                1..=3 => 8.0 + (rng.unit() - 0.5) * 1.6,
                _ => (value + (rng.unit() - 0.5) * 2.0).clamp(0.0, 12.0),
            };
            (Duration::from_secs(1 + rng.next() % 20), value)
        })
        .collect()
}

fn engine(stability: Stability) -> AlertEngine {
    let rule =
        Rule { kind: RuleKind::P95Latency, direction: Direction::Above, warning: 5.0, critical: 8.0, min_samples: 0 };
    AlertEngine::new(vec![rule], COOLDOWN, stability)
}

fn stabilities(rng: &mut Rng) -> Stability {
    Stability {
        for_evaluations: 1 + (rng.next() % 3) as u32,
        for_duration: Duration::from_secs(rng.next() % 30),
        hysteresis: [0.0, 0.05, 0.1, 0.2][(rng.next() % 4) as usize],
    }
}

#[tokio::test(start_paused = true)]
async fn every_change_of_state_is_exactly_one_well_formed_event() {
    let mut rng = Rng(0x5EED_CAFE);
    for run in 0..RUNS {
        let stability = stabilities(&mut rng);
        let mut alerts = engine(stability);
        let mut now = Instant::now();
        for (step, (elapsed, value)) in series(&mut rng).into_iter().enumerate() {
            now += elapsed;
            let before = alerts.severity(RuleKind::P95Latency);
            let event = alerts.observe(RuleKind::P95Latency, value, 1, now);
            let after = alerts.severity(RuleKind::P95Latency);
            let context =
                format!("run {run} step {step}: {before:?} -> {after:?} on {value} ({stability:?}): {event:?}");
            match &event {
                None => assert_eq!(before, after, "a change without an event: {context}"),
                Some(event) => {
                    assert_eq!(event.severity, after, "{context}");
                    let expected = match (before, after) {
                        (b, a) if b == a => AlertTransition::Repeated,
                        (Severity::Ok, _) => AlertTransition::Fired,
                        (_, Severity::Ok) => AlertTransition::Resolved,
                        (b, a) if a > b => AlertTransition::Escalated,
                        _ => AlertTransition::Deescalated,
                    };
                    assert_eq!(event.transition, expected, "{context}");
                    assert!(before != Severity::Ok || event.transition == AlertTransition::Fired, "{context}");
                }
            }
        }
    }
}

#[tokio::test(start_paused = true)]
async fn no_sink_hears_a_rule_twice_within_the_cooldown_unless_it_resolved() {
    let mut rng = Rng(0xA1E7_5EED);
    for run in 0..RUNS {
        let stability = stabilities(&mut rng);
        let mut alerts = engine(stability);
        let mut sinks =
            [SinkPolicy::new(MinSeverity::Warning, COOLDOWN), SinkPolicy::new(MinSeverity::Critical, COOLDOWN)];
        // Per sink: when it was last told "firing", and whether a resolve came since.
        let mut last_firing: [Option<Instant>; 2] = [None, None];
        let mut told = [false, false];
        let mut now = Instant::now();
        for (elapsed, value) in series(&mut rng) {
            now += elapsed;
            let Some(event) = alerts.observe(RuleKind::P95Latency, value, 1, now) else { continue };
            for (index, sink) in sinks.iter_mut().enumerate() {
                match sink.decide(&event, now) {
                    Some(Tell::Firing) => {
                        if let Some(last) = last_firing[index] {
                            assert!(
                                now.saturating_duration_since(last) >= COOLDOWN,
                                "run {run}: sink {index} told twice in {:?} without a resolve ({event:?})",
                                now.saturating_duration_since(last)
                            );
                        }
                        last_firing[index] = Some(now);
                        told[index] = true;
                    }
                    Some(Tell::Resolved) => {
                        assert!(told[index], "run {run}: sink {index} told of a resolve it never heard fire");
                        last_firing[index] = None;
                        told[index] = false;
                    }
                    None => {}
                }
            }
        }
    }
}

/// The series: P95 hovering at the critical threshold (8 ms), evaluated every 3 s,
/// with the shipped stability settings.
#[tokio::test(start_paused = true)]
async fn a_value_hovering_at_the_critical_threshold_pages_once() {
    let shipped = Stability { for_evaluations: 2, for_duration: Duration::ZERO, hysteresis: 0.1 };
    let mut alerts = engine(shipped);
    let mut slack = SinkPolicy::new(MinSeverity::Warning, COOLDOWN);
    let mut pager = SinkPolicy::new(MinSeverity::Critical, COOLDOWN);
    let values = [6.0, 8.1, 8.3, 7.2, 8.4, 7.9, 7.3, 8.2, 7.4, 8.0, 7.6, 8.5];
    let mut now = Instant::now();
    let mut events: Vec<AlertEvent> = Vec::new();
    let (mut slack_heard, mut pager_heard) = (0, 0);
    for value in values.iter().cycle().take(60) {
        now += Duration::from_secs(3);
        if let Some(event) = alerts.observe(RuleKind::P95Latency, *value, 10, now) {
            slack_heard += usize::from(slack.decide(&event, now).is_some());
            pager_heard += usize::from(pager.decide(&event, now).is_some());
            events.push(event);
        }
    }
    let transitions: Vec<_> = events.iter().map(|e| (e.severity, e.transition)).collect();
    assert_eq!(
        transitions,
        vec![(Severity::Warning, AlertTransition::Fired), (Severity::Critical, AlertTransition::Escalated)],
        "no flapping between critical and warning"
    );
    assert_eq!((slack_heard, pager_heard), (1, 1), "one notification per sink");
}
