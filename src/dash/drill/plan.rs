//! The drill's plan, derived from the operator's config: short probe intervals, a window and a
//! cooldown just long enough for each fault to be judged, the faults sized to pass the
//! critical thresholds, and for each step the bounds its alert must meet. Pure arithmetic
//! on the config; the numbers and their reasons are printed with the report.

use std::time::Duration;

use crate::alerts::Severity;
use crate::config::{Config, Seconds};
use crate::dash::rehearsal::{self, Expectation};
use crate::protocol::faults::{CRASH_DELAY, FaultKind, FaultSpec};

/// The drill's probe interval (health checks and inference tests alike).
const INTERVAL: Duration = Duration::from_millis(500);
/// Slack on every bound: scheduling, a tick of the event loop, an HTTP round trip.
const SLACK: Duration = Duration::from_secs(2);
/// Added to a faulted probe's expected time for the unfaulted work around it.
const PROBE_MARGIN: Duration = Duration::from_secs(1);
/// The shortest window and cooldown the drill uses.
const MIN_WINDOW: Duration = Duration::from_secs(5);
const MIN_COOLDOWN: Duration = Duration::from_secs(3);

/// The faults `capwatch drill` rehearses when none are named, in order.
pub const ALL_FAULTS: [FaultKind; 7] = [
    FaultKind::Errors,
    FaultKind::Latency,
    FaultKind::Garbage,
    FaultKind::SlowDecoder,
    FaultKind::Unready,
    FaultKind::Hang,
    FaultKind::Crash,
];

/// Timings of the drill's monitor (all derived from the operator's config).
#[derive(Debug, Clone, PartialEq)]
pub struct Timings {
    pub interval: Duration,
    pub window: Duration,
    pub cooldown: Duration,
    pub probe_timeout: Duration,
    /// Waiting for the service to be healthy with no alert before a step.
    pub settle_within: Duration,
    /// Waiting for notifications to be delivered after a step.
    pub notify_within: Duration,
}

/// One fault and what must follow it, with the bounds.
#[derive(Debug, Clone, PartialEq)]
pub struct Step {
    pub spec: FaultSpec,
    pub expect: Expectation,
    /// From the fault's start until its rule reaches the expected severity.
    pub fire_within: Duration,
    /// From firing until the rule repeats (None: the fault ends in a restart first).
    pub repeat_within: Option<Duration>,
    /// From the fault's end (cleared, or the restart's readiness) until the rule resolves.
    pub resolve_within: Duration,
    /// From firing (crash: from the fault's start) until the restarted server is ready.
    pub restart_within: Option<Duration>,
}

/// What the drill runs: the monitor's config and the steps.
#[derive(Debug, Clone)]
pub struct DrillPlan {
    pub config: Config,
    pub timings: Timings,
    pub steps: Vec<Step>,
}

/// Decoding steps of the shortest and longest expected test captions (a word a token, and
/// the stop token); (4, 8) when the config names none.
fn caption_steps(config: &Config) -> (u64, u64) {
    let steps: Vec<u64> = config
        .quality
        .test_images
        .iter()
        .filter_map(|image| image.expected_caption.as_ref())
        .map(|caption| caption.split_whitespace().count() as u64 + 1)
        .collect();
    match (steps.iter().min(), steps.iter().max()) {
        (Some(&min), Some(&max)) => (min, max),
        _ => (4, 8),
    }
}

fn ms(value: u64) -> Duration {
    Duration::from_millis(value)
}

/// The plan for `faults` against the operator's `config`.
pub fn plan(base: &Config, faults: &[FaultKind]) -> DrillPlan {
    let mut config = base.clone();
    let thresholds = &base.thresholds;
    let for_evaluations = thresholds.for_evaluations.get();
    let for_s = thresholds.for_s.map_or(Duration::ZERO, |s| s.0);
    let min_samples = thresholds.min_samples.max(1);
    let health_failures = base.restart.health_failures.get() as u32;

    // Faults sized to pass the critical thresholds, and how long a probe then takes.
    let (min_steps, max_steps) = caption_steps(base);
    let latency = rehearsal::sized(FaultKind::Latency, base, Duration::ZERO);
    let critical_ms = thresholds.p95_latency_ms.critical;
    let step_delay_ms = (critical_ms * 1.25 / min_steps as f64).ceil() as u64;
    let latency_probe = ms(latency.latency_ms) + PROBE_MARGIN;
    let slow_probe = ms(step_delay_ms * max_steps) + PROBE_MARGIN;
    let slowest = latency_probe.max(slow_probe);

    // The window holds a couple more slowed probes than the rules need; the probe timeout
    // lets a slowed probe finish; the cooldown spans two slowed probes.
    let window = MIN_WINDOW.max(slowest * (min_samples as u32 + 2));
    let probe_timeout = Duration::from_secs(2).max(slowest.mul_f64(1.5));
    let cooldown = MIN_COOLDOWN.max(slowest * 2);
    let normal_cycle = INTERVAL + PROBE_MARGIN;
    let startup = base.monitoring.startup_timeout_s.0;
    // A drill restarts the server up to three times: the backoff doubles at most three times.
    let backoff = base.restart.max_backoff_s.0.min(base.restart.initial_backoff_s.0 * 8);
    let restart_within = base.restart.grace_s.0 + backoff + startup + SLACK;
    let delivery = &base.alerts.delivery;
    let notify_within = delivery.timeout_s.0 * delivery.max_attempts.get() as u32 + delivery.max_backoff_s.0 + SLACK;

    config.service.chaos = true;
    config.service.port = 0;
    config.monitoring.health_interval_s = Seconds(INTERVAL);
    config.monitoring.inference_interval_s = Seconds(INTERVAL);
    config.monitoring.tests_per_cycle = std::num::NonZeroUsize::MIN;
    config.monitoring.window_s = Seconds(window);
    config.monitoring.probe_timeout_s = Seconds(probe_timeout);
    config.alerts.cooldown_s = Seconds(cooldown);
    config.alerts.drill = true;
    config.prometheus.listen = None;
    config.logs.dir = base.logs.dir.join("drill");

    let health_check_fails_within = |check: Duration| (check + INTERVAL) * health_failures + SLACK;
    let steps = faults
        .iter()
        .map(|&kind| {
            let expect = rehearsal::expectation(kind);
            let threshold_step = |probe: Duration| {
                let cycle = INTERVAL.max(probe);
                let fire_within = window + cycle * (for_evaluations + 1) + for_s + SLACK;
                let repeat_within = cooldown + cycle * 2 + SLACK;
                let resolve_within = window + probe + normal_cycle * (for_evaluations + 1) + for_s + SLACK;
                (fire_within, Some(repeat_within), resolve_within, None)
            };
            let health_step = |check: Duration| {
                let resolve_within = INTERVAL * (for_evaluations + 1) + for_s + SLACK;
                (health_check_fails_within(check), None, resolve_within, Some(restart_within))
            };
            let (fire_within, repeat_within, resolve_within, restart) = match kind {
                FaultKind::Latency => threshold_step(latency_probe),
                FaultKind::SlowDecoder => threshold_step(slow_probe),
                FaultKind::Errors | FaultKind::Garbage => threshold_step(PROBE_MARGIN),
                FaultKind::Unready => health_step(PROBE_MARGIN),
                FaultKind::Hang => health_step(probe_timeout),
                FaultKind::Crash => (Duration::ZERO, None, INTERVAL * 2 + SLACK, Some(CRASH_DELAY + restart_within)),
            };
            let lasts = fire_within + repeat_within.unwrap_or(Duration::ZERO) + restart.unwrap_or(Duration::ZERO);
            let spec = FaultSpec {
                duration_s: (lasts + Duration::from_secs(30)).as_secs_f64().ceil(),
                step_delay_ms,
                ..rehearsal::sized(kind, base, Duration::ZERO)
            };
            Step { spec, expect, fire_within, repeat_within, resolve_within, restart_within: restart }
        })
        .collect();
    let settle_within = window + slowest + startup + SLACK;
    DrillPlan {
        config,
        timings: Timings { interval: INTERVAL, window, cooldown, probe_timeout, settle_within, notify_within },
        steps,
    }
}

impl DrillPlan {
    /// Every bound of every step, one after the other, and the server's start: past this the
    /// drill stops and reports where it was.
    pub fn time_limit(&self) -> Duration {
        let t = &self.timings;
        self.steps.iter().fold(self.config.monitoring.startup_timeout_s.0, |total, step| {
            total
                + t.settle_within
                + step.fire_within
                + step.repeat_within.unwrap_or_default()
                + step.restart_within.unwrap_or_default()
                + step.resolve_within
                + t.notify_within
                + Duration::from_secs(10)
        })
    }

    /// The line that opens a drill: the faults, the timings, the bound and where the logs go.
    pub fn describe(&self) -> String {
        let t = &self.timings;
        let faults: Vec<&str> = self.steps.iter().map(|step| step.spec.kind.name()).collect();
        format!(
            "🧯 capwatch drill: {} fault(s) ({}); probes every {:.1} s, window {:.0} s, cooldown {:.0} s; at most {:.0} s. \
             Logs in {}",
            self.steps.len(),
            faults.join(", "),
            t.interval.as_secs_f64(),
            t.window.as_secs_f64(),
            t.cooldown.as_secs_f64(),
            self.time_limit().as_secs_f64(),
            self.config.logs.dir.display()
        )
    }
}

impl Step {
    /// The alert as the table shows it: `p95_latency CRITICAL`, or `— (restart)`.
    pub fn expected_alert(&self) -> String {
        match self.expect.rule {
            Some(rule) if self.expect.severity != Severity::Ok => format!("{} {}", rule.name(), self.expect.severity),
            _ => "— (restart)".to_owned(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_plan_follows_the_thresholds() {
        let mut config = Config::default();
        config.thresholds.p95_latency_ms.critical = 400.0;
        config.thresholds.min_samples = 3;
        let plan = plan(&config, &ALL_FAULTS);
        // 400 ms × 1.25 = 500 ms per latency probe (+1 s margin); slow decoder 125 ms × 8 steps + 1 s.
        assert_eq!(plan.steps[1].spec.latency_ms, 500);
        assert_eq!(plan.steps[3].spec.step_delay_ms, 125);
        assert_eq!(plan.timings.window, Duration::from_secs(10));
        assert_eq!(plan.timings.cooldown, Duration::from_secs(4));
        assert_eq!(plan.config.monitoring.window_s.0, plan.timings.window);
        assert!(plan.config.service.chaos && plan.config.alerts.drill);
        assert_eq!(plan.config.logs.dir, config.logs.dir.join("drill"));
        // errors: window 10 s + 3 cycles of 1 s + 2 s slack.
        assert_eq!(plan.steps[0].fire_within, Duration::from_secs(15));
        assert!(plan.steps.iter().all(|step| step.spec.validate().is_ok()));
        assert_eq!(plan.steps[6].expected_alert(), "— (restart)");
        assert!(plan.steps[5].restart_within.is_some() && plan.steps[5].repeat_within.is_none());
        // Each threshold fault lasts past its fire and repeat bounds.
        for step in &plan.steps[..4] {
            let needed = step.fire_within + step.repeat_within.unwrap();
            assert!(step.spec.duration_s > needed.as_secs_f64(), "{step:?}");
        }
    }
}
