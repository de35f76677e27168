//! `capwatch demo`: the dashboard on the bundled model, driven through what capwatch does in
//! two or three minutes — a latency spike, failing requests, a crash, a bad canary, a shifted
//! stream of images — under a banner that says what is happening and where to look. The
//! [`plan`] derives the session's config from the operator's (fast probes, a short window,
//! thresholds the faults are sized against, two variants of the model, a small drift window, no
//! notifications); the [`script`] lists the scenes; the [`director`] plays them beside
//! `update`, like a drill's conductor.

pub mod director;
pub mod script;

use std::num::NonZeroUsize;
use std::path::PathBuf;
use std::time::Duration;

use crate::config::{AbWorseLevel, Config, Levels, ModelVariantConfig, Seconds, VariantName};
pub use director::Director;
pub use script::{Scene, scenes};

/// Probes twice a second: health checks and test cycles alike.
const INTERVAL: Duration = Duration::from_millis(500);
/// The rolling window: short, so alerts resolve within seconds of their fault's end.
const WINDOW: Duration = Duration::from_secs(8);
/// The P95 thresholds the latency faults are sized against.
pub const P95_WARNING_MS: f64 = 200.0;
pub const P95_CRITICAL_MS: f64 = 500.0;
/// Requests in the server's drift window (the reference is as many).
pub const DRIFT_WINDOW: usize = 100;
/// The two variants: the same model, so that only a fault can tell them apart.
pub const BASELINE: &str = "base";
pub const CANARY: &str = "canary";
/// The pause for reading before a scene's first beat and after its last; half of it between
/// beats (none with `--quick`).
const PAUSE: Duration = Duration::from_secs(6);

/// What the demo runs: the monitor's config and the scenes.
#[derive(Debug, Clone)]
pub struct DemoPlan {
    pub config: Config,
    pub scenes: Vec<Scene>,
    /// The pause for reading around each scene (zero with `--quick`).
    pub pause: Duration,
    /// The drift reference the demo freezes (removed before it starts: each demo freezes its own).
    pub drift_reference: PathBuf,
}

/// The demo's plan on `base` (the operator's config: model, test images, logs, restart policy).
pub fn plan(base: &Config, quick: bool) -> DemoPlan {
    let mut config = base.clone();
    let logs = base.logs.dir.join("demo");
    let drift_reference = logs.join("drift_reference.json");
    // Both names are valid variant names (the test below says so).
    let variants = [BASELINE, CANARY]
        .into_iter()
        .filter_map(|name| VariantName::try_from(name.to_owned()).ok())
        .map(|name| ModelVariantConfig { name, dir: base.service.model_dir.clone(), weight: Some(1) })
        .collect();
    let service = &mut config.service;
    service.port = 0;
    service.chaos = true;
    service.models = variants;
    service.shadow = None;
    // Loopback, a free port, and the demo's own scenes carry no API key.
    service.auth = None;
    service.drift.window_requests = NonZeroUsize::new(DRIFT_WINDOW).unwrap_or(NonZeroUsize::MIN);
    service.drift.window_minutes = None;
    service.drift.reference = Some(drift_reference.clone());

    let monitoring = &mut config.monitoring;
    monitoring.health_interval_s = Seconds(INTERVAL);
    monitoring.inference_interval_s = Seconds(INTERVAL);
    monitoring.tests_per_cycle = NonZeroUsize::MIN;
    monitoring.window_s = Seconds(WINDOW);
    monitoring.probe_timeout_s = Seconds(Duration::from_secs(5));
    monitoring.targets = Vec::new();
    monitoring.discovery.source = None;

    let thresholds = &mut config.thresholds;
    thresholds.p95_latency_ms = Levels { warning: P95_WARNING_MS, critical: P95_CRITICAL_MS };
    thresholds.error_rate_percent = Levels { warning: 10.0, critical: 25.0 };
    thresholds.min_samples = 5;
    thresholds.for_evaluations = std::num::NonZeroU32::new(2).unwrap_or(std::num::NonZeroU32::MIN);
    thresholds.for_s = None;
    thresholds.hysteresis_percent = 10.0;
    thresholds.ab_worse = AbWorseLevel::Warning;
    thresholds.drift_share = Levels { warning: 0.25, critical: 0.5 };

    // A demo pages nobody; its alerts repeat at most once a minute.
    config.alerts.sinks.0.clear();
    config.alerts.cooldown_s = Seconds(Duration::from_secs(60));
    config.restart.automatic = true;
    config.restart.initial_backoff_s = Seconds(Duration::from_secs(1));
    config.prometheus.listen = None;
    config.logs.dir = logs;
    DemoPlan { config, scenes: scenes(), pause: if quick { Duration::ZERO } else { PAUSE }, drift_reference }
}

fn beats_count(scenes: &[Scene]) -> u32 {
    scenes.iter().map(|scene| scene.beats.len() as u32).sum()
}

impl DemoPlan {
    /// Past this the demo stops wherever it is: the server's start, every beat's bound, every
    /// pause, and a minute to spare.
    pub fn time_limit(&self) -> Duration {
        let beats: Duration = self.scenes.iter().flat_map(|scene| &scene.beats).map(|beat| beat.within).sum();
        self.config.monitoring.startup_timeout_s.0
            + beats
            + self.pause * 2 * self.scenes.len() as u32
            + self.pause / 2 * beats_count(&self.scenes)
            + Duration::from_secs(60)
    }

    /// The line that opens the demo: what it shows, how long it may take, where its files go.
    pub fn describe(&self) -> String {
        let titles: Vec<&str> = self.scenes.iter().map(|scene| scene.title).collect();
        format!(
            "🎬 capwatch demo: {} (at most {:.0} s; q quits). The bundled model as two variants ({BASELINE}, {CANARY}), \
             probes every {:.1} s, an {:.0} s window, P95 thresholds {P95_WARNING_MS:.0}/{P95_CRITICAL_MS:.0} ms, \
             no notifications. Logs in {}",
            titles.join(" · "),
            self.time_limit().as_secs_f64(),
            INTERVAL.as_secs_f64(),
            WINDOW.as_secs_f64(),
            self.config.logs.dir.display()
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_demo_config_serves_two_variants_with_chaos_and_pages_nobody() {
        let mut base = Config::default();
        base.alerts.cooldown_s = Seconds(Duration::from_secs(900));
        let plan = plan(&base, false);
        let config = &plan.config;
        assert!(config.service.chaos && config.service.port == 0);
        let names: Vec<&str> = config.service.models.iter().map(|m| m.name.as_str()).collect();
        assert_eq!(names, [BASELINE, CANARY]);
        assert!(config.service.models.iter().all(|m| m.dir == base.service.model_dir));
        assert!(config.alerts.sinks.0.is_empty() && config.service.auth.is_none());
        assert_eq!(config.logs.dir, base.logs.dir.join("demo"));
        assert_eq!(config.service.drift.reference.as_deref(), Some(plan.drift_reference.as_path()));
        assert!(config.service.variants().is_ok(), "the two variants make a valid config");
        assert_eq!(plan.pause, PAUSE);
        assert_eq!(super::plan(&base, true).pause, Duration::ZERO);
        assert!(plan.time_limit() > Duration::from_secs(120) && plan.time_limit() < Duration::from_secs(1200));
        assert!(plan.describe().contains("A latency spike"), "{}", plan.describe());
    }
}
