//! Unit tests of `update`: every restart, crash-loop, status, alert, input and record path,
//! on paused time, with no process, socket or terminal.

use std::time::Duration;

use tokio::time::Instant;

use super::update;
use crate::alerts::{AlertTransition, RuleKind, Severity};
use crate::clock::Clock;
use crate::config::{Config, Levels};
use crate::dash::effect::{Effect, MetricUpdate};
use crate::dash::event::{Event, FaultsEvent, Input, ShutdownReason};
use crate::dash::prober::{CaptionResult, HealthBody, HealthCheck, InferenceProbe, ProbeError};
use crate::dash::record::{Record, ServerChange};
use crate::dash::state::LogLevel;
use crate::dash::state::{DashState, Lifecycle, Phase, ServiceStatus, Stop};
use crate::dash::summary::SessionSummary;
use crate::dash::supervisor::ServerEvent;
use crate::quality::match_keywords;

const WALL_START: u64 = 1_795_701_600;

struct Scene {
    state: DashState,
    clock: Clock,
    /// Every record written so far.
    written: Vec<Record>,
}

impl Scene {
    fn new(config: &Config, supervised: bool) -> Self {
        Self::with_stop(config, supervised, None, true)
    }

    fn with_stop(config: &Config, supervised: bool, cycles: Option<u64>, interactive: bool) -> Self {
        let clock = Clock::at(Instant::now(), WALL_START);
        Self {
            state: DashState::new(config, supervised, Stop { cycles, interactive }, clock.now),
            clock,
            written: Vec::new(),
        }
    }

    /// One event, one second after the previous one.
    fn feed(&mut self, event: Event) -> Vec<Effect> {
        self.clock = self.clock.later(Duration::from_secs(1));
        let effects = update(&mut self.state, event, self.clock);
        self.written.extend(records(&effects).into_iter().cloned());
        effects
    }

    /// Ends the session and folds what it wrote into its summary, as the dashboard does.
    fn summary(&mut self) -> SessionSummary {
        self.feed(Event::Ended);
        SessionSummary::from_records(&self.written).expect("an end record")
    }

    fn server(&mut self, event: ServerEvent) -> Vec<Effect> {
        self.feed(Event::Server(event))
    }

    fn ready(&mut self, pid: u32) -> Vec<Effect> {
        self.server(ServerEvent::Spawned { pid });
        self.server(ServerEvent::Listening { pid, url: format!("http://127.0.0.1:{pid}") });
        self.server(ServerEvent::Ready { pid, startup: Duration::from_millis(200) })
    }

    fn health(&mut self, healthy: bool) -> Vec<Effect> {
        let result = if healthy {
            Ok(HealthBody::read(true, r#"{"status": "healthy", "model": "m"}"#))
        } else {
            Err(ProbeError::ConnectionRefused)
        };
        let check = HealthCheck { at: self.clock.now, latency: Duration::from_millis(1), result };
        self.feed(Event::Health(check))
    }

    fn probe(&mut self, ok: bool, latency_ms: u64) -> Vec<Effect> {
        let result = if ok {
            Ok(CaptionResult {
                caption: "a red circle".to_owned(),
                model_time: Some(Duration::from_millis(latency_ms / 2)),
                server_total: Some(Duration::from_millis(latency_ms)),
                server_queue: None,
                quality: match_keywords("a red circle", &["red".to_owned(), "circle".to_owned()]),
            })
        } else {
            Err(ProbeError::Http(500))
        };
        let probe = InferenceProbe {
            variant: None,
            at: self.clock.now,
            image: "a.png".to_owned(),
            latency: Duration::from_millis(latency_ms),
            result,
        };
        self.feed(Event::Probe(probe))
    }
}

fn restarts(effects: &[Effect]) -> Vec<&str> {
    effects
        .iter()
        .filter_map(|e| match e {
            Effect::RestartServer { reason } => Some(reason.as_str()),
            _ => None,
        })
        .collect()
}

fn notified(effects: &[Effect]) -> Vec<(RuleKind, Severity, AlertTransition)> {
    effects
        .iter()
        .filter_map(|e| match e {
            Effect::Notify(alert) => Some((alert.rule, alert.severity, alert.transition)),
            _ => None,
        })
        .collect()
}

fn records(effects: &[Effect]) -> Vec<&Record> {
    effects
        .iter()
        .filter_map(|e| match e {
            Effect::Write(record) => Some(record),
            _ => None,
        })
        .collect()
}

#[tokio::test(start_paused = true)]
async fn status_follows_the_server_the_health_check_and_the_alerts() {
    let mut scene = Scene::new(&Config::default(), true);
    assert_eq!(scene.state.status(), ServiceStatus::Starting);
    let effects = scene.ready(7);
    assert!(effects.contains(&Effect::SetProbeTarget(Some("http://127.0.0.1:7".to_owned()))), "{effects:?}");
    assert_eq!(scene.state.status(), ServiceStatus::Healthy);
    scene.health(false);
    assert_eq!(scene.state.status(), ServiceStatus::Down);
    scene.health(true);
    assert_eq!(scene.state.status(), ServiceStatus::Degraded, "health_down resolves once it held (2 checks)");
    scene.health(true);
    assert_eq!(scene.state.status(), ServiceStatus::Healthy, "health_down resolved");
    for _ in 0..3 {
        scene.probe(false, 10);
    }
    assert_eq!(scene.state.status(), ServiceStatus::Down, "three failed tests in a row (the warning level)");
    scene.probe(true, 10);
    scene.clock = scene.clock.later(Duration::from_secs(1));
    scene.state.alerts.observe(RuleKind::P95Latency, 5000.0, 100, scene.clock.now);
    assert_eq!(scene.state.status(), ServiceStatus::Degraded, "an active alert");
    scene.server(ServerEvent::Exited { pid: 7, code: Some(1), signal: None, expected: false });
    assert_eq!(scene.state.status(), ServiceStatus::Restarting);
}

#[tokio::test(start_paused = true)]
async fn down_follows_the_configured_consecutive_failures_level() {
    let mut config = Config::default();
    config.thresholds.consecutive_failures = Levels { warning: 4.0, critical: 6.0 };
    let mut scene = Scene::new(&config, true);
    scene.ready(7);
    for _ in 0..3 {
        scene.probe(false, 10);
    }
    // Three failures: not yet the configured level of four (the old code said DOWN at 3).
    assert_eq!(scene.state.status(), ServiceStatus::Healthy);
    scene.probe(false, 10);
    assert_eq!(scene.state.status(), ServiceStatus::Down);
    scene.probe(true, 10);
    assert_eq!(scene.state.status(), ServiceStatus::Degraded, "up again, the warning not resolved yet");
    scene.probe(true, 10);
    assert_eq!(scene.state.status(), ServiceStatus::Healthy, "two successes resolve the streak");
}

#[tokio::test(start_paused = true)]
async fn failed_health_checks_restart_a_supervised_server_once_per_streak() {
    let mut scene = Scene::new(&Config::default(), true);
    scene.ready(7);
    assert!(restarts(&scene.health(false)).is_empty());
    assert!(restarts(&scene.health(false)).is_empty());
    let effects = scene.health(false);
    assert_eq!(restarts(&effects), vec!["3 consecutive failed health checks"]);
    assert!(effects.iter().any(|e| matches!(e, Effect::Log { level: LogLevel::Warn, message } if message.starts_with("🔁 Restarting the server"))));
    // The streak starts again after a restart was asked for.
    assert!(restarts(&scene.health(false)).is_empty());
    assert_eq!(scene.state.consecutive_health_failures, 1);
}

#[tokio::test(start_paused = true)]
async fn no_automatic_restart_when_disabled_unsupervised_down_or_crash_looping() {
    let mut manual = Config::default();
    manual.restart.automatic = false;
    let mut scene = Scene::new(&manual, true);
    scene.ready(7);
    assert!((0..5).all(|_| restarts(&scene.health(false)).is_empty()));

    let mut scene = Scene::new(&Config::default(), false);
    scene.feed(Event::Attach { url: "http://127.0.0.1:9".to_owned() });
    assert!((0..5).all(|_| restarts(&scene.health(false)).is_empty()), "monitor --url cannot restart");

    let mut scene = Scene::new(&Config::default(), true);
    scene.server(ServerEvent::Spawned { pid: 7 });
    assert!((0..5).all(|_| restarts(&scene.health(false)).is_empty()), "not up yet");

    let mut scene = Scene::new(&Config::default(), true);
    scene.ready(7);
    let effects = scene.server(ServerEvent::CrashLoop { restarts: 5, window: Duration::from_secs(600) });
    assert_eq!(
        scene.state.lifecycle,
        Lifecycle::CrashLoop { reason: "crash loop (5 restarts within 600 s)".to_owned() }
    );
    assert_eq!(notified(&effects), vec![(RuleKind::CrashLoop, Severity::Critical, AlertTransition::Fired)]);
    assert!(
        records(&effects).iter().any(
            |r| matches!(r, Record::Server(s) if s.event == ServerChange::CrashLoop { restarts: 5, window_s: 600 })
        )
    );
    assert!(records(&effects).iter().any(|r| matches!(r, Record::Alert(a) if a.rule == RuleKind::CrashLoop)));
    assert!((0..5).all(|_| restarts(&scene.health(false)).is_empty()), "crash loop: restarts stopped");
    assert!(scene.state.alert_log.iter().any(|alert| alert.rule == RuleKind::CrashLoop));
}

#[tokio::test(start_paused = true)]
async fn respawns_count_as_restarts_and_are_recorded() {
    let mut scene = Scene::new(&Config::default(), true);
    let effects = scene.ready(7);
    assert_eq!(scene.state.restarts, 0);
    assert!(!effects.contains(&Effect::Metric(MetricUpdate::ServerRestart)));
    scene.server(ServerEvent::Exited { pid: 7, code: None, signal: Some(9), expected: false });
    let effects = scene.server(ServerEvent::Spawned { pid: 8 });
    assert_eq!(scene.state.restarts, 1);
    assert!(effects.contains(&Effect::Metric(MetricUpdate::ServerRestart)));
    assert!(
        records(&effects)
            .iter()
            .any(|r| matches!(r, Record::Server(s) if s.restarts == 1 && s.event == ServerChange::Spawned { pid: 8 }))
    );
    let effects = scene.server(ServerEvent::StartFailed { pid: 8, reason: "exit code 1: bad model".to_owned() });
    assert!(effects.iter().any(|e| matches!(e, Effect::Log { level: LogLevel::Error, message } if message == "💥 Server failed to start: exit code 1: bad model")));
}

#[tokio::test(start_paused = true)]
async fn consecutive_failures_fire_escalate_and_resolve() {
    let mut scene = Scene::new(&Config::default(), true);
    scene.ready(7);
    let mut transitions = Vec::new();
    // Fires at the 3rd failure; escalating needs two evaluations at critical (5th and 6th),
    // resolving two at OK (the shipped for_evaluations: 2).
    for _ in 0..6 {
        transitions.extend(notified(&scene.probe(false, 10)));
    }
    for _ in 0..2 {
        transitions.extend(notified(&scene.probe(true, 10)));
    }
    let failures = RuleKind::ConsecutiveFailures;
    assert_eq!(
        transitions,
        vec![
            (failures, Severity::Warning, AlertTransition::Fired),
            (failures, Severity::Critical, AlertTransition::Escalated),
            (failures, Severity::Ok, AlertTransition::Resolved),
        ]
    );
    let summary = scene.summary();
    assert_eq!((summary.alerts_warning, summary.alerts_critical), (1, 1));
    assert_eq!((summary.alert_events.fired, summary.alert_events.escalated, summary.alert_events.resolved), (1, 1, 1));
    assert_eq!(scene.state.alert_log.len(), 3);
}

#[tokio::test(start_paused = true)]
async fn a_still_firing_rule_repeats_after_the_cooldown_only() {
    let mut config = Config::default();
    config.thresholds.p95_latency_ms = Levels { warning: 100.0, critical: 1_000_000.0 };
    let mut scene = Scene::new(&config, true);
    scene.ready(7);
    let cycle = |scene: &mut Scene| {
        for _ in 0..5 {
            scene.probe(true, 200);
        }
        notified(&scene.feed(Event::CycleDone))
    };
    let p95 = RuleKind::P95Latency;
    assert_eq!(cycle(&mut scene), vec![(p95, Severity::Warning, AlertTransition::Fired)]);
    assert!(cycle(&mut scene).is_empty(), "inside the 300 s cooldown");
    scene.clock = scene.clock.later(Duration::from_secs(300));
    assert_eq!(cycle(&mut scene), vec![(p95, Severity::Warning, AlertTransition::Repeated)]);
}

#[tokio::test(start_paused = true)]
async fn cycle_records_carry_the_update_clock_and_the_window() {
    let mut scene = Scene::new(&Config::default(), true);
    scene.ready(7);
    for _ in 0..3 {
        scene.probe(true, 40);
    }
    let effects = scene.feed(Event::CycleDone);
    let Some(Record::Cycle(cycle)) = records(&effects).into_iter().next() else {
        panic!("no cycle record: {effects:?}")
    };
    assert_eq!(cycle.stamp.ts, scene.clock.timestamp());
    assert_eq!(cycle.stamp.uptime_s, (scene.clock.now - scene.state.started).as_secs_f64());
    assert_eq!((cycle.cycle, cycle.tests, cycle.window.probes), (1, 3, 3));
    assert_eq!(cycle.status, ServiceStatus::Healthy);
    assert_eq!(cycle.pid, Some(7));
    assert!(effects.contains(&Effect::Metric(MetricUpdate::TestCycle)));
}

#[tokio::test(start_paused = true)]
async fn keys_pause_test_restart_scroll_and_quit() {
    let mut scene = Scene::new(&Config::default(), true);
    scene.ready(7);
    let effects = scene.feed(Event::Input(Input::TogglePause));
    assert!(effects.contains(&Effect::SetPaused(true)) && scene.state.view.paused);
    let effects = scene.feed(Event::Input(Input::TogglePause));
    assert!(effects.contains(&Effect::SetPaused(false)) && !scene.state.view.paused);
    assert!(scene.feed(Event::Input(Input::TestNow)).contains(&Effect::TestNow));
    assert_eq!(restarts(&scene.feed(Event::Input(Input::Restart))), vec!["requested from the keyboard"]);
    assert_eq!(scene.state.notice(scene.clock.now), Some(" restarting the service…"));
    assert_eq!(scene.state.notice(scene.clock.now + Duration::from_secs(4)), None, "notices expire");
    // Scrolling stays within the alert log.
    scene.feed(Event::Input(Input::ScrollAlerts(10)));
    assert_eq!(scene.state.view.alert_scroll, 0);
    for _ in 0..6 {
        scene.probe(false, 10);
    }
    scene.feed(Event::Input(Input::ScrollAlerts(10)));
    assert_eq!(scene.state.view.alert_scroll, 1);
    scene.feed(Event::Input(Input::ScrollAlerts(-10)));
    assert_eq!(scene.state.view.alert_scroll, 0);
    scene.feed(Event::Input(Input::ToggleHelp));
    assert!(scene.state.view.show_help);
    scene.feed(Event::Input(Input::CloseHelp));
    assert!(!scene.state.view.show_help);
    assert!(scene.feed(Event::Input(Input::Quit)).contains(&Effect::Quit));
}

#[tokio::test(start_paused = true)]
async fn restart_key_does_nothing_but_explain_for_an_external_server() {
    let mut scene = Scene::new(&Config::default(), false);
    let effects = scene.feed(Event::Attach { url: "http://127.0.0.1:9".to_owned() });
    assert_eq!(effects.first(), Some(&Effect::SetProbeTarget(Some("http://127.0.0.1:9".to_owned()))));
    assert!(restarts(&scene.feed(Event::Input(Input::Restart))).is_empty());
    assert!(scene.state.notice(scene.clock.now).is_some_and(|n| n.contains("restart is disabled")));
}

#[tokio::test(start_paused = true)]
async fn stops_after_the_requested_cycles_and_on_shutdown() {
    let mut scene = Scene::with_stop(&Config::default(), true, Some(2), false);
    scene.ready(7);
    scene.probe(true, 10);
    assert!(!scene.feed(Event::CycleDone).contains(&Effect::Quit));
    scene.probe(true, 10);
    assert!(scene.feed(Event::CycleDone).contains(&Effect::Quit));

    let mut scene = Scene::new(&Config::default(), true);
    let effects = scene.feed(Event::Shutdown(ShutdownReason::Signal("SIGTERM")));
    assert!(effects.contains(&Effect::Quit));
    assert!(
        effects.iter().any(|e| matches!(e, Effect::Log { message, .. } if message == "⏹ Stopping: SIGTERM received"))
    );
}

#[tokio::test(start_paused = true)]
async fn the_summary_reports_the_status_at_quit_not_after_the_server_was_stopped() {
    let mut scene = Scene::new(&Config::default(), true);
    scene.ready(7);
    scene.probe(true, 10);
    scene.feed(Event::Input(Input::Quit));
    // Stopping the server afterwards makes it "stopped" on screen…
    scene.server(ServerEvent::Exited { pid: 7, code: Some(0), signal: None, expected: true });
    assert_eq!(scene.state.status(), ServiceStatus::Stopped);
    // …and probes still under way no longer count…
    assert!(scene.probe(true, 10).is_empty());
    // …but the session ended healthy.
    let summary = scene.summary();
    assert_eq!(summary.last_status, ServiceStatus::Healthy);
}

#[tokio::test(start_paused = true)]
async fn probes_and_health_checks_become_metric_updates() {
    let mut scene = Scene::new(&Config::default(), true);
    scene.ready(7);
    let effects = scene.probe(true, 30);
    assert!(effects.iter().any(|e| matches!(e, Effect::Metric(MetricUpdate::Probe { outcome: "success", .. }))));
    assert!(effects.iter().any(|e| matches!(e, Effect::Metric(MetricUpdate::CaptionQuality(q)) if *q == 1.0)));
    let effects = scene.probe(false, 30);
    assert!(effects.iter().any(|e| matches!(e, Effect::Metric(MetricUpdate::Probe { outcome: "http_5xx", .. }))));
    let effects = scene.health(false);
    let gauges = effects.iter().find_map(|e| match e {
        Effect::Metric(MetricUpdate::Gauges(g)) => Some(g),
        _ => None,
    });
    let gauges = gauges.unwrap();
    assert_eq!((gauges.consecutive_health_failures, gauges.service_healthy, gauges.server_up), (1, false, true));
    assert_eq!(gauges.alert_severity.len(), RuleKind::ALL.len());
}

#[tokio::test(start_paused = true)]
async fn the_childs_warnings_reach_the_log_pane_and_every_line_the_log_file() {
    let mut scene = Scene::new(&Config::default(), true);
    let warn = r#"{"level":"WARN","message":"queue full","error":"64 waiting"}"#.to_owned();
    let effects = scene.server(ServerEvent::Log { line: warn.clone() });
    assert_eq!(effects.first(), Some(&Effect::ChildLog { line: warn }));
    assert_eq!(scene.state.log.back().map(|l| l.message.as_str()), Some("server: queue full: 64 waiting"));
    let info = r#"{"level":"INFO","message":"request"}"#.to_owned();
    scene.server(ServerEvent::Log { line: info });
    assert_eq!(scene.state.log.len(), 1, "info lines stay in the file");
}

#[tokio::test(start_paused = true)]
async fn a_permanent_start_failure_ends_a_headless_run_at_once() {
    let mut scene = Scene::with_stop(&Config::default(), true, None, false);
    scene.server(ServerEvent::Spawned { pid: 7 });
    let reason = "exit code 3: cannot load model from /nonexistent: no such directory".to_owned();
    scene.server(ServerEvent::StartFailed { pid: 7, reason: reason.clone() });
    let effects = scene.server(ServerEvent::PermanentFailure { code: 3, reason: reason.clone() });
    assert!(effects.contains(&Effect::Quit), "{effects:?}");
    assert!(restarts(&effects).is_empty());
    assert_eq!(notified(&effects), vec![(RuleKind::StartFailed, Severity::Critical, AlertTransition::Fired)]);
    assert!(records(&effects).iter().any(|r| matches!(r, Record::Server(s) if s.event == ServerChange::PermanentFailure { code: 3, reason: reason.clone() })));
    assert_eq!(scene.state.status(), ServiceStatus::Failed);
    let summary = scene.summary();
    assert_eq!((summary.last_status, summary.alerts_critical), (ServiceStatus::Failed, 1));
}

#[tokio::test(start_paused = true)]
async fn a_crash_loop_ends_a_headless_run_and_waits_for_r_in_the_tui() {
    let crash_loop = ServerEvent::CrashLoop { restarts: 5, window: Duration::from_secs(600) };
    let mut headless = Scene::with_stop(&Config::default(), true, None, false);
    headless.ready(7);
    headless.server(ServerEvent::Exited { pid: 7, code: None, signal: Some(9), expected: false });
    assert!(headless.server(crash_loop.clone()).contains(&Effect::Quit));
    assert_eq!(headless.state.status(), ServiceStatus::CrashLoop);
    assert_eq!(headless.state.phase, Phase::Draining { status_at_quit: ServiceStatus::CrashLoop });

    let mut tui = Scene::new(&Config::default(), true);
    tui.ready(7);
    tui.server(ServerEvent::Exited { pid: 7, code: None, signal: Some(9), expected: false });
    assert!(!tui.server(crash_loop).contains(&Effect::Quit));
    assert_eq!(tui.state.lifecycle.gave_up(), Some("crash loop (5 restarts within 600 s)"));
    // `r` starts it again: the verdict is open until the new child says otherwise.
    assert_eq!(restarts(&tui.feed(Event::Input(Input::Restart))), vec!["requested from the keyboard"]);
    tui.server(ServerEvent::Spawned { pid: 8 });
    assert_eq!(tui.state.lifecycle, Lifecycle::Restarting);
    assert_eq!(tui.state.status(), ServiceStatus::Restarting);
}

/// The issue's session: P95 hovering around the critical threshold (warning 5 ms, critical
/// 8 ms, a cycle every 3 s, cooldown 300 s) paged again 9 s after the first critical, and
/// the dip back to warning was recorded nowhere.
#[tokio::test(start_paused = true)]
async fn a_p95_hovering_at_the_critical_threshold_is_recorded_once_and_pages_once() {
    use crate::config::{MinSeverity, Seconds};
    use crate::notify::policy::SinkPolicy;
    let mut config = Config::default();
    config.thresholds.p95_latency_ms = Levels { warning: 5.0, critical: 8.0 };
    config.thresholds.min_samples = 3;
    config.monitoring.window_s = Seconds(Duration::from_secs(3));
    let mut scene = Scene::new(&config, true);
    scene.ready(7);
    let mut pager = SinkPolicy::new(MinSeverity::Critical, config.alerts.cooldown_s.0);
    let mut slack = SinkPolicy::new(MinSeverity::Warning, config.alerts.cooldown_s.0);
    let (mut transitions, mut pages, mut messages) = (Vec::new(), 0, 0);
    for p95_ms in [6.0, 8.2, 8.3, 7.2, 8.4, 7.6, 8.1, 7.3, 8.5, 7.9, 8.2, 7.4] {
        scene.clock = scene.clock.later(Duration::from_secs(3));
        for _ in 0..3 {
            let probe = InferenceProbe {
                variant: None,
                at: scene.clock.now,
                image: "a.png".to_owned(),
                latency: Duration::from_secs_f64(p95_ms / 1000.0),
                result: Ok(CaptionResult {
                    caption: "a red circle".to_owned(),
                    model_time: Some(Duration::from_millis(1)),
                    server_total: Some(Duration::from_millis(1)),
                    server_queue: None,
                    quality: match_keywords("a red circle", &["red".to_owned()]),
                }),
            };
            update(&mut scene.state, Event::Probe(probe), scene.clock);
        }
        let effects = update(&mut scene.state, Event::CycleDone, scene.clock);
        for effect in &effects {
            if let Effect::Notify(alert) = effect {
                transitions.push((alert.severity, alert.transition));
                pages += usize::from(pager.decide(alert, scene.clock.now).is_some());
                messages += usize::from(slack.decide(alert, scene.clock.now).is_some());
            }
        }
        let recorded = records(&effects).iter().filter(|r| matches!(r, Record::Alert(_))).count();
        assert_eq!(recorded, effects.iter().filter(|e| matches!(e, Effect::Notify(_))).count());
    }
    assert_eq!(
        transitions,
        vec![(Severity::Warning, AlertTransition::Fired), (Severity::Critical, AlertTransition::Escalated)]
    );
    assert_eq!((pages, messages), (1, 1));
}

fn active_fault(
    id: u64,
    kind: crate::protocol::faults::FaultKind,
    remaining_s: f64,
    hits: u64,
) -> crate::protocol::faults::ActiveFault {
    crate::protocol::faults::ActiveFault { id, spec: crate::protocol::faults::FaultSpec::new(kind), remaining_s, hits }
}

/// `GET /chaos` answered `faults` for a request sent at the scene's current time.
fn listing(scene: &Scene, faults: Vec<crate::protocol::faults::ActiveFault>) -> FaultsEvent {
    FaultsEvent::Listed { requested_at: scene.clock.now, result: Ok(faults) }
}

#[test]
fn a_listing_sent_before_an_inject_or_clear_was_answered_changes_nothing() {
    use crate::protocol::faults::FaultKind;
    let mut config = Config::default();
    config.service.chaos = true;
    let mut scene = Scene::new(&config, true);
    scene.ready(42);
    let before_inject = scene.clock.now;
    let fault = active_fault(1, FaultKind::Errors, 60.0, 0);
    scene.feed(Event::Faults(FaultsEvent::Injected { kind: FaultKind::Errors, result: Ok(fault.clone()) }));
    // Requested before the fault existed: its absence is not an expiry.
    let stale = FaultsEvent::Listed { requested_at: before_inject, result: Ok(vec![]) };
    assert!(fault_records(&scene.feed(Event::Faults(stale))).is_empty());
    assert_eq!(scene.state.faults.active.len(), 1);

    let before_clear = scene.clock.now;
    scene.feed(Event::Faults(FaultsEvent::Cleared(Ok(vec![fault.clone()]))));
    assert!(scene.state.faults.active.is_empty());
    // Requested before the clear: the fault it still lists does not start again.
    let stale = FaultsEvent::Listed { requested_at: before_clear, result: Ok(vec![fault]) };
    assert!(fault_records(&scene.feed(Event::Faults(stale))).is_empty());
    assert!(scene.state.faults.active.is_empty());
    // A fresh listing counts again.
    let fresh = listing(&scene, vec![active_fault(2, FaultKind::Latency, 60.0, 0)]);
    assert_eq!(fault_records(&scene.feed(Event::Faults(fresh))).len(), 1);
}

fn fault_records(effects: &[Effect]) -> Vec<crate::dash::record::FaultRecord> {
    effects
        .iter()
        .filter_map(|effect| match effect {
            Effect::Write(Record::Fault(record)) => Some(record.clone()),
            _ => None,
        })
        .collect()
}

#[tokio::test(start_paused = true)]
async fn the_fault_menu_injects_only_with_chaos() {
    use crate::protocol::faults::FaultKind;
    let mut scene = Scene::new(&Config::default(), true);
    scene.ready(42);
    assert!(scene.feed(Event::Input(Input::FaultMenu)).iter().all(|e| !matches!(e, Effect::InjectFault { .. })));
    assert!(!scene.state.view.fault_menu);
    assert!(scene.state.notice(scene.clock.now).unwrap().contains("--chaos"));

    let mut config = Config::default();
    config.service.chaos = true;
    let mut scene = Scene::new(&config, true);
    scene.ready(42);
    scene.feed(Event::Input(Input::FaultMenu));
    assert!(scene.state.view.fault_menu);
    // Entry 2 is `errors`, sized for the config.
    let effects = scene.feed(Event::Input(Input::Choose(2)));
    let injected: Vec<_> = effects
        .iter()
        .filter_map(|effect| match effect {
            Effect::InjectFault { url, spec } => Some((url.clone(), spec.kind)),
            _ => None,
        })
        .collect();
    assert_eq!(injected, [("http://127.0.0.1:42".to_owned(), FaultKind::Errors)]);
    assert!(!scene.state.view.fault_menu);
    // A number without the menu open does nothing.
    assert!(scene.feed(Event::Input(Input::Choose(1))).iter().all(|e| !matches!(e, Effect::InjectFault { .. })));

    // The answer starts it (once, though the next poll lists it too), the poll follows it,
    // and its absence from a later poll ends it as expired.
    let fault = active_fault(1, FaultKind::Errors, 60.0, 0);
    let started = fault_records(
        &scene.feed(Event::Faults(FaultsEvent::Injected { kind: FaultKind::Errors, result: Ok(fault.clone()) })),
    );
    assert_eq!(started.len(), 1);
    assert_eq!(started[0].event, crate::dash::record::FaultPhase::Started);
    let listed = active_fault(1, FaultKind::Errors, 50.0, 7);
    assert!(fault_records(&scene.feed(Event::Faults(listing(&scene, vec![listed])))).is_empty());
    assert_eq!(scene.state.faults.active[0].remaining(scene.clock.now), Duration::from_secs(50));
    assert_eq!(
        scene.state.faults.active[0].remaining(scene.clock.now + Duration::from_secs(20)),
        Duration::from_secs(30)
    );
    let ended = fault_records(&scene.feed(Event::Faults(listing(&scene, vec![]))));
    assert_eq!(ended.len(), 1);
    assert_eq!((ended[0].hits, ended[0].ended_by), (Some(7), Some(crate::dash::record::FaultEnd::Expired)));
    assert_eq!(ended[0].active_s, Some(2.0));

    // `x` in the menu clears; a crash's fault ends with its process.
    scene.feed(Event::Faults(listing(&scene, vec![active_fault(2, FaultKind::Latency, 60.0, 1)])));
    scene.feed(Event::Input(Input::FaultMenu));
    assert!(scene.feed(Event::Input(Input::ClearFaults)).iter().any(|e| matches!(e, Effect::ClearFaults { .. })));
    let ended = fault_records(&scene.feed(Event::Faults(listing(&scene, vec![]))));
    assert_eq!(ended[0].ended_by, Some(crate::dash::record::FaultEnd::Cleared));
    scene.feed(Event::Faults(FaultsEvent::Injected {
        kind: FaultKind::Crash,
        result: Ok(active_fault(3, FaultKind::Crash, 60.0, 0)),
    }));
    let ended =
        fault_records(&scene.server(ServerEvent::Exited { pid: 42, code: Some(70), signal: None, expected: false }));
    assert_eq!(ended[0].ended_by, Some(crate::dash::record::FaultEnd::ServerExited));

    // The summary lists all three, and `report` rebuilds the same list from the records.
    let summary = scene.summary();
    let kinds: Vec<_> = summary.faults.iter().map(|f| (f.kind.as_str(), f.ended_by.as_str())).collect();
    assert_eq!(kinds, [("errors", "expired"), ("latency", "cleared"), ("crash", "server exited")]);
    assert!(summary.markdown().contains("## Injected faults"));
}

/// A health check of a server with variants `models` (and a shadow on the last one).
fn variants_health(scene: &mut Scene, models: &[&str]) -> Vec<Effect> {
    let list: Vec<String> =
        models.iter().map(|m| format!(r#"{{"name": "{m}", "weight": 1, "ready": true}}"#)).collect();
    let shadow =
        r#"{"model": "b", "share": 1.0, "agreed": 9, "differed": 1, "failed": 0, "dropped": 2, "agreement": 0.9}"#;
    let body =
        format!(r#"{{"status": "healthy", "model": "a, b", "models": [{}], "shadow": {shadow}}}"#, list.join(","));
    let check = HealthCheck {
        at: scene.clock.now,
        latency: Duration::from_millis(1),
        result: Ok(HealthBody::read(true, &body)),
    };
    scene.feed(Event::Health(check))
}

fn variant_probe(scene: &mut Scene, name: &str, round: u64, latency_ms: u64, ok: bool) -> Vec<Effect> {
    let result = if ok {
        Ok(CaptionResult {
            caption: "a red circle".to_owned(),
            model_time: None,
            server_total: None,
            server_queue: None,
            quality: match_keywords("a red circle", &["red".to_owned()]),
        })
    } else {
        Err(ProbeError::Http(500))
    };
    let probe = InferenceProbe {
        at: scene.clock.now,
        image: "a.png".to_owned(),
        latency: Duration::from_millis(latency_ms),
        result,
        variant: Some(crate::dash::prober::VariantTag { name: name.to_owned(), round }),
    };
    scene.feed(Event::Probe(probe))
}

#[tokio::test(start_paused = true)]
async fn variants_are_compared_on_the_same_images_and_a_worse_one_alerts() {
    let config = Config::default();
    let mut scene = Scene::new(&config, true);
    scene.ready(10);
    // One model: no comparison.
    scene.health(true);
    assert!(scene.state.ab.is_none());
    let effects = variants_health(&mut scene, &["a", "b"]);
    assert!(effects.iter().any(|e| matches!(e, Effect::SetVariants(v) if v == &["a", "b"])), "{effects:?}");
    assert!(variants_health(&mut scene, &["a", "b"]).iter().all(|e| !matches!(e, Effect::SetVariants(_))), "once");
    assert_eq!(scene.state.ab.as_ref().unwrap().shadow.as_ref().unwrap().dropped, 2);

    // b fails one image in three; a never does. Each round: a and b, order alternating.
    let mut alerts = Vec::new();
    let mut ab_records = 0;
    for round in 1..=90u64 {
        let order = if round % 2 == 0 { ["b", "a"] } else { ["a", "b"] };
        for name in order {
            let ok = name == "a" || round % 3 != 0;
            variant_probe(&mut scene, name, round, 40 + round % 5, ok);
        }
        assert_eq!(scene.state.test_in_cycle, 1, "a round is one test, whichever variant answers first");
        let effects = scene.feed(Event::CycleDone);
        ab_records += records(&effects).iter().filter(|r| matches!(r, Record::Ab(_))).count();
        alerts.extend(notified(&effects));
    }
    assert_eq!(ab_records, 90, "one ab record per cycle per compared variant");
    let ab = scene.state.ab.as_ref().unwrap();
    assert_eq!(ab.rounds, 90);
    assert!((ab.figures[0].b.error_rate - 1.0 / 3.0).abs() < 1e-9);
    assert_eq!(ab.worse_variants(), ["b"]);
    let ab_alerts: Vec<_> = alerts.iter().filter(|(rule, ..)| *rule == RuleKind::AbWorse).collect();
    assert_eq!(ab_alerts, [&(RuleKind::AbWorse, Severity::Warning, AlertTransition::Fired)], "{alerts:?}");
    assert!(
        scene.state.log.iter().any(|l| l.message.starts_with("⚖ A/B verdict: b fails more often")),
        "the verdict is logged once"
    );

    let summary = scene.summary();
    assert_eq!(summary.ab.len(), 1);
    assert!(summary.ab[0].verdict_text.starts_with("b fails more often"), "{}", summary.ab[0].verdict_text);
    let markdown = summary.markdown();
    assert!(markdown.contains("## A/B comparison") && markdown.contains("| b | 90 |"), "{markdown}");
    assert!(markdown.contains("shadow b"), "{markdown}");
}

#[tokio::test(start_paused = true)]
async fn a_drifting_server_is_recorded_told_once_and_alerts() {
    use crate::drift::choose::TestKind;
    use crate::drift::report::{DriftReport, FeatureScore};
    use crate::protocol::drift::DriftStatus;
    let config = Config::default();
    let mut scene = Scene::new(&config, false);
    scene.feed(Event::Attach { url: "http://127.0.0.1:9".to_owned() });
    let feature = |name: &str, drifted: bool| FeatureScore {
        feature: name.to_owned(),
        test: TestKind::Ks,
        score: if drifted { 1e-9 } else { 0.4 },
        drifted,
        psi: None,
    };
    let status = |drifted: usize| DriftStatus {
        live_size: 300,
        window_requests: 500,
        window_minutes: None,
        reference: None,
        report: Some(DriftReport {
            reference_size: 500,
            live_size: 300,
            features: (0..10).map(|i| feature(&format!("f{i}"), i < drifted)).collect(),
            drifted_share: drifted as f64 / 10.0,
            detected: drifted >= 2,
        }),
    };
    let quiet = scene.feed(Event::Drift(Box::new(status(1))));
    assert!(notified(&quiet).is_empty());
    assert!(matches!(records(&quiet)[..], [Record::Drift(_)]), "a drift record per status");
    let effects = scene.feed(Event::Drift(Box::new(status(3))));
    assert_eq!(notified(&effects), [(RuleKind::Drift, Severity::Warning, AlertTransition::Fired)]);
    let told = |scene: &Scene| scene.state.log.iter().filter(|l| l.message.starts_with("🌊 Drift:")).count();
    assert_eq!(told(&scene), 1);
    scene.feed(Event::Drift(Box::new(status(3))));
    assert_eq!(told(&scene), 1, "told once while it lasts");
    // Escalating waits for `for_evaluations` (2) readings in a row.
    assert!(notified(&scene.feed(Event::Drift(Box::new(status(6))))).is_empty());
    let critical = scene.feed(Event::Drift(Box::new(status(6))));
    assert_eq!(notified(&critical), [(RuleKind::Drift, Severity::Critical, AlertTransition::Escalated)]);
    scene.feed(Event::Drift(Box::new(status(0))));
    assert!(scene.state.log.iter().any(|l| l.message.starts_with("🌊 Drift over")));
}

/// A server someone else runs restarted when its uptime went back: counted and logged once;
/// capwatch's own child counts its restarts from the supervisor instead.
#[tokio::test(start_paused = true)]
async fn a_watched_server_whose_uptime_went_back_restarted() {
    let mut scene = Scene::new(&Config::default(), false);
    scene.feed(Event::Attach { url: "http://127.0.0.1:9".to_owned() });
    let uptime = |scene: &mut Scene, seconds: f64| {
        let body = format!(r#"{{"status": "healthy", "model": "m", "uptime_s": {seconds}}}"#);
        let check = HealthCheck {
            at: scene.clock.now,
            latency: Duration::from_millis(1),
            result: Ok(HealthBody::read(true, &body)),
        };
        scene.feed(Event::Health(check))
    };
    uptime(&mut scene, 100.0);
    uptime(&mut scene, 130.0);
    assert_eq!(scene.state.restarts, 0);
    let effects = uptime(&mut scene, 2.0);
    assert_eq!(scene.state.restarts, 1);
    assert!(
        effects
            .iter()
            .any(|e| matches!(e, Effect::Log { message, .. } if message.contains("uptime went from 130 s to 2 s")))
    );
    uptime(&mut scene, 5.0);
    assert_eq!(scene.state.restarts, 1);

    let mut own = Scene::new(&Config::default(), true);
    own.ready(7);
    uptime(&mut own, 100.0);
    uptime(&mut own, 1.0);
    assert_eq!(own.state.restarts, 0, "the supervisor counts its own child's restarts");
}

#[tokio::test(start_paused = true)]
async fn the_live_summary_equals_the_summary_of_the_records_read_back() {
    let mut config = Config::default();
    config.monitoring.tests_per_cycle = std::num::NonZeroUsize::new(2).unwrap();
    let mut scene = Scene::new(&config, true);
    scene.ready(7);
    for i in 0..9_u64 {
        scene.probe(i % 4 != 3, 10 + i * 7);
        if i % 2 == 1 {
            scene.feed(Event::CycleDone);
        }
    }
    scene.server(ServerEvent::Exited { pid: 7, code: None, signal: Some(9), expected: false });
    scene.server(ServerEvent::Spawned { pid: 8 });
    scene.probe(true, 12);
    scene.feed(Event::Input(Input::Quit));
    let live = scene.summary();
    // What `capwatch report` does: each record a JSON line, read back, folded.
    let lines: Vec<String> = scene.written.iter().map(|record| serde_json::to_string(record).unwrap()).collect();
    let read_back: Vec<Record> = lines.iter().map(|line| serde_json::from_str(line).unwrap()).collect();
    let report = SessionSummary::from_records(&read_back).unwrap();
    assert_eq!(serde_json::to_value(&live).unwrap(), serde_json::to_value(&report).unwrap());
    assert_eq!(live.markdown(), report.markdown());
    assert_eq!((live.cycles, live.tests, live.restarts), (4, 10, 1), "the probe after the last cycle counts");
    assert_eq!(live.last_caption.as_deref(), Some("a red circle"));
}
