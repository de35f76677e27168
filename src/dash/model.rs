//! The dashboard's state and its pure `update(event) -> effects` (The Elm Architecture).
//!
//! Every probe result, health check and server event goes through [`DashModel::update`],
//! which updates statistics and alert states and returns [`Effect`]s (metrics records, log
//! lines, alerts, a restart request) for the event loop to carry out. No I/O happens here,
//! so headless mode and the terminal UI share it, and tests drive it directly.

use std::collections::VecDeque;

use serde_json::{Value, json};
use tokio::time::Instant;

use super::alerts::{AlertEngine, AlertEvent, AlertTransition, Direction, Rule, RuleKind, Severity};
use super::prober::{HealthCheck, InferenceProbe};
use super::stats::{ProbeSample, RollingWindow, SessionStats, StatsSnapshot};
use super::supervisor::ServerEvent;
use crate::config::Config;
use crate::notify::{AlertState, DeliveryReport, Outcome};

/// Probe latencies kept for the sparkline.
const RECENT_PROBES: usize = 120;
/// Alert lines kept for the alert log.
const ALERT_LOG: usize = 500;

/// Everything the event loop feeds the model.
#[derive(Debug, Clone, PartialEq)]
pub enum Event {
    Server(ServerEvent),
    Health(HealthCheck),
    Probe(InferenceProbe),
    /// All probes of a test cycle were delivered.
    CycleDone,
    /// What became of an alert notification at one sink.
    Notification(DeliveryReport),
}

/// Severity of a log line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogLevel {
    Info,
    Warn,
    Error,
}

/// What the event loop must do after an update.
#[derive(Debug, Clone, PartialEq)]
pub enum Effect {
    /// One whole line for the JSON Lines metrics file.
    Record(Value),
    /// A human line for the log (and the headless console).
    Log { level: LogLevel, message: String },
    /// An alert transition (already recorded and logged by the effects above it).
    Alert(AlertEvent),
    /// Ask the supervisor to restart the server.
    RestartServer { reason: String },
}

/// The service as the header shows it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ServiceStatus {
    Starting,
    Healthy,
    Degraded,
    Down,
    Restarting,
}

impl ServiceStatus {
    pub fn label(self) -> &'static str {
        match self {
            Self::Starting => "starting",
            Self::Healthy => "healthy",
            Self::Degraded => "degraded",
            Self::Down => "down",
            Self::Restarting => "restarting",
        }
    }
}

/// The whole dashboard state.
pub struct DashModel {
    pub started: Instant,
    pub window: RollingWindow,
    pub session: SessionStats,
    pub alerts: AlertEngine,
    restart_after_health_failures: usize,
    automatic_restart: bool,
    pub pid: Option<u32>,
    pub url: Option<String>,
    pub server_up: bool,
    pub restarts: u32,
    spawns: u32,
    pub crash_loop: bool,
    pub last_health: Option<HealthCheck>,
    pub consecutive_health_failures: usize,
    pub consecutive_failures: u64,
    pub latest: Option<InferenceProbe>,
    pub cycles: u64,
    pub tests: u64,
    tests_per_cycle: usize,
    test_in_cycle: usize,
    /// Latency and model time (ms) of recent probes, oldest first; failures have no model time.
    pub recent: VecDeque<(f64, Option<f64>)>,
    pub alert_log: VecDeque<AlertEvent>,
    pub warnings_fired: u64,
    pub criticals_fired: u64,
    /// P95 of the window at the end of each cycle, for the summary's mean.
    pub cycle_p95_ms: Vec<f64>,
    /// Notification sinks, in config order, with how their deliveries went.
    pub sinks: Vec<SinkStatus>,
}

/// How a notification sink has been doing.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct SinkStatus {
    pub name: String,
    pub delivered: u64,
    pub failed: u64,
    pub dropped: u64,
    /// Whether the latest notification got through (None before the first).
    pub last_ok: Option<bool>,
    /// Why the latest failed notification failed.
    pub last_error: Option<String>,
}

impl DashModel {
    pub fn new(config: &Config, now: Instant) -> Self {
        let t = &config.thresholds;
        let rule = |kind, direction, levels: crate::config::Levels, min_samples| Rule {
            kind,
            direction,
            warning: levels.warning,
            critical: levels.critical,
            min_samples,
        };
        let health_levels =
            crate::config::Levels { warning: 1.0, critical: config.restart.health_failures.get() as f64 };
        let rules = vec![
            rule(RuleKind::P95Latency, Direction::Above, t.p95_latency_ms, t.min_samples),
            rule(
                RuleKind::ErrorRate,
                Direction::Above,
                crate::config::Levels {
                    warning: t.error_rate_percent.warning / 100.0,
                    critical: t.error_rate_percent.critical / 100.0,
                },
                t.min_samples,
            ),
            rule(RuleKind::ConsecutiveFailures, Direction::Above, t.consecutive_failures, 0),
            rule(RuleKind::QualityScore, Direction::Below, t.quality_score, t.min_samples),
            rule(RuleKind::HealthDown, Direction::Above, health_levels, 0),
        ];
        Self {
            started: now,
            window: RollingWindow::new(config.monitoring.window_s.0),
            session: SessionStats::new(now),
            alerts: AlertEngine::new(rules, config.alerts.cooldown_s.0),
            restart_after_health_failures: config.restart.health_failures.get(),
            automatic_restart: config.restart.automatic,
            pid: None,
            url: None,
            server_up: false,
            restarts: 0,
            spawns: 0,
            crash_loop: false,
            last_health: None,
            consecutive_health_failures: 0,
            consecutive_failures: 0,
            latest: None,
            cycles: 0,
            tests: 0,
            tests_per_cycle: config.monitoring.tests_per_cycle.get(),
            test_in_cycle: 0,
            recent: VecDeque::with_capacity(RECENT_PROBES),
            alert_log: VecDeque::new(),
            warnings_fired: 0,
            criticals_fired: 0,
            cycle_p95_ms: Vec::new(),
            sinks: config
                .alerts
                .sinks
                .0
                .iter()
                .map(|sink| SinkStatus { name: sink.name.clone(), ..SinkStatus::default() })
                .collect(),
        }
    }

    /// Watches a server that someone else runs: it is up from the start, at `url`.
    pub fn watch_external(&mut self, url: String) {
        self.url = Some(url);
        self.server_up = true;
    }

    /// The header's status badge.
    pub fn status(&self) -> ServiceStatus {
        if !self.server_up {
            return if self.spawns == 0 { ServiceStatus::Starting } else { ServiceStatus::Restarting };
        }
        let health_ok = self.last_health.as_ref().is_none_or(HealthCheck::is_healthy);
        if !health_ok || self.consecutive_failures >= 3 {
            ServiceStatus::Down
        } else if !self.alerts.active().is_empty() {
            ServiceStatus::Degraded
        } else {
            ServiceStatus::Healthy
        }
    }

    /// Window statistics now.
    pub fn window_snapshot(&mut self, now: Instant) -> StatsSnapshot {
        self.window.snapshot(now)
    }

    pub fn update(&mut self, event: Event, now: Instant) -> Vec<Effect> {
        match event {
            Event::Probe(probe) => self.on_probe(probe, now),
            Event::CycleDone => self.on_cycle_done(now),
            Event::Health(check) => self.on_health(check, now),
            Event::Server(event) => self.on_server(event, now),
            Event::Notification(report) => self.on_notification(report, now),
        }
    }

    fn on_notification(&mut self, report: DeliveryReport, now: Instant) -> Vec<Effect> {
        let what = match report.state {
            AlertState::Resolved => format!("{} resolved", report.rule),
            _ => format!("{} {}", report.rule, report.severity),
        };
        let status = match self.sinks.iter_mut().find(|sink| sink.name == report.sink) {
            Some(status) => status,
            None => {
                self.sinks.push(SinkStatus { name: report.sink.clone(), ..SinkStatus::default() });
                let last = self.sinks.len() - 1;
                &mut self.sinks[last]
            }
        };
        let log = match &report.outcome {
            Outcome::Delivered { attempts, elapsed, .. } => {
                status.delivered += 1;
                status.last_ok = Some(true);
                Effect::Log {
                    level: LogLevel::Info,
                    message: format!(
                        "📨 Notified {} ({what}) in {:.0} ms, attempt {attempts}",
                        report.sink,
                        elapsed.as_secs_f64() * 1000.0
                    ),
                }
            }
            Outcome::Failed { attempts, error } => {
                status.failed += 1;
                status.last_ok = Some(false);
                status.last_error = Some(error.clone());
                Effect::Log {
                    level: LogLevel::Error,
                    message: format!(
                        "📭 Notification failed: {} ({what}) after {attempts} attempt(s): {error}",
                        report.sink
                    ),
                }
            }
            Outcome::Dropped { queued } => {
                status.dropped += 1;
                status.last_ok = Some(false);
                status.last_error = Some(format!("queue full ({queued} waiting)"));
                Effect::Log {
                    level: LogLevel::Error,
                    message: format!(
                        "📭 Notification dropped: {} ({what}): {queued} notifications already waiting",
                        report.sink
                    ),
                }
            }
        };
        let mut record = serde_json::to_value(&report).unwrap_or_default();
        if let Some(fields) = record.as_object_mut() {
            fields.insert("type".to_owned(), json!("notification"));
            fields.insert("ts".to_owned(), json!(timestamp()));
            fields.insert("uptime_s".to_owned(), json!(now.saturating_duration_since(self.started).as_secs_f64()));
        }
        vec![log, Effect::Record(record)]
    }

    fn on_probe(&mut self, probe: InferenceProbe, now: Instant) -> Vec<Effect> {
        let latency_ms = probe.latency.as_secs_f64() * 1000.0;
        let (success, model_time, quality) = match &probe.result {
            Ok(result) => (true, Some(result.model_time), Some(result.quality.score())),
            Err(_) => (false, None, None),
        };
        let sample = ProbeSample { at: probe.at, latency: probe.latency, model_time, success, quality };
        self.window.record(sample);
        self.session.record(&sample);
        self.tests += 1;
        self.test_in_cycle += 1;
        self.consecutive_failures = if success { 0 } else { self.consecutive_failures + 1 };
        if self.recent.len() == RECENT_PROBES {
            self.recent.pop_front();
        }
        self.recent.push_back((latency_ms, model_time.map(|d| d.as_secs_f64() * 1000.0)));
        let position = format!("Test {}/{}", self.test_in_cycle, self.tests_per_cycle);
        let mut effects = vec![match &probe.result {
            Ok(result) => Effect::Log {
                level: LogLevel::Info,
                message: format!(
                    "✅ {position}: {latency_ms:.1}ms ({}) \"{}\" quality {:.2}",
                    probe.image,
                    result.caption,
                    result.quality.score()
                ),
            },
            Err(error) => Effect::Log {
                level: LogLevel::Warn,
                message: format!("❌ {position}: {error} after {latency_ms:.1}ms ({})", probe.image),
            },
        }];
        self.latest = Some(probe);
        let failures = self.consecutive_failures as f64;
        effects.extend(self.judge(RuleKind::ConsecutiveFailures, failures, u64::MAX, now));
        effects
    }

    fn on_cycle_done(&mut self, now: Instant) -> Vec<Effect> {
        self.cycles += 1;
        self.test_in_cycle = 0;
        let window = self.window.snapshot(now);
        self.cycle_p95_ms.push(window.latency.p95_ms);
        let mut effects = Vec::new();
        effects.extend(self.judge(RuleKind::P95Latency, window.latency.p95_ms, window.successes, now));
        effects.extend(self.judge(RuleKind::ErrorRate, window.error_rate, window.probes, now));
        if let Some(quality) = window.quality_mean {
            effects.extend(self.judge(RuleKind::QualityScore, quality, window.successes, now));
        }
        let label = |kind| self.alerts.severity(kind).to_string();
        let mut lines = vec![
            format!("📊 Cycle {} summary (last {} s window)", self.cycles, self.window.window().as_secs()),
            format!("📈 P95 response time: {:.2} ms [{}]", window.latency.p95_ms, label(RuleKind::P95Latency)),
            format!(
                "   P50 {:.2} ms · P99 {:.2} ms · max {:.2} ms · model P95 {:.2} ms",
                window.latency.p50_ms, window.latency.p99_ms, window.latency.max_ms, window.model_time.p95_ms
            ),
            format!("❗ Error rate: {:.1}% [{}]", window.error_rate * 100.0, label(RuleKind::ErrorRate)),
        ];
        if let Some(quality) = window.quality_mean {
            lines.push(format!("🎯 Quality score: {quality:.2} [{}]", label(RuleKind::QualityScore)));
        }
        effects.extend(lines.into_iter().map(|message| Effect::Log { level: LogLevel::Info, message }));
        effects.push(Effect::Record(self.cycle_record(&window, now)));
        effects
    }

    fn on_health(&mut self, check: HealthCheck, now: Instant) -> Vec<Effect> {
        let healthy = check.is_healthy();
        self.consecutive_health_failures = if healthy { 0 } else { self.consecutive_health_failures + 1 };
        let mut effects = Vec::new();
        if !healthy {
            let why = match &check.result {
                Ok(body) => format!("status {}", body.status),
                Err(error) => error.to_string(),
            };
            effects.push(Effect::Log {
                level: LogLevel::Warn,
                message: format!("🩺 Health check failed ({why}), {} in a row", self.consecutive_health_failures),
            });
        }
        self.last_health = Some(check);
        effects.extend(self.judge(RuleKind::HealthDown, self.consecutive_health_failures as f64, u64::MAX, now));
        if self.automatic_restart
            && self.server_up
            && !self.crash_loop
            && self.consecutive_health_failures >= self.restart_after_health_failures
        {
            let reason = format!("{} consecutive failed health checks", self.consecutive_health_failures);
            self.consecutive_health_failures = 0;
            effects.push(Effect::RestartServer { reason });
        }
        effects
    }

    fn on_server(&mut self, event: ServerEvent, now: Instant) -> Vec<Effect> {
        let mut effects = Vec::new();
        let mut log = |level, message: String| effects.push(Effect::Log { level, message });
        match &event {
            ServerEvent::Spawned { pid } => {
                self.spawns += 1;
                if self.spawns > 1 {
                    self.restarts += 1;
                }
                self.pid = Some(*pid);
                log(LogLevel::Info, format!("🚀 Server started, PID {pid}"));
            }
            ServerEvent::Listening { url, .. } => self.url = Some(url.clone()),
            ServerEvent::Ready { pid, startup } => {
                self.server_up = true;
                self.consecutive_health_failures = 0;
                log(LogLevel::Info, format!("🟢 Server ready (PID {pid}) in {:.2} s", startup.as_secs_f64()));
            }
            ServerEvent::StartFailed { reason, .. } => {
                self.server_up = false;
                log(LogLevel::Error, format!("💥 Server failed to start: {reason}"));
            }
            ServerEvent::Exited { pid, code, signal, expected } => {
                self.server_up = false;
                let how = match (code, signal) {
                    (Some(code), _) => format!("exit code {code}"),
                    (None, Some(signal)) => format!("signal {signal}"),
                    _ => "unknown status".to_owned(),
                };
                let level = if *expected { LogLevel::Info } else { LogLevel::Error };
                log(
                    level,
                    format!("🛑 Server PID {pid} exited ({how}){}", if *expected { "" } else { " unexpectedly" }),
                );
            }
            ServerEvent::RestartScheduled { delay, reason } => {
                log(LogLevel::Warn, format!("🔁 Restarting in {:.1} s: {reason}", delay.as_secs_f64()));
            }
            ServerEvent::CrashLoop { restarts, window } => {
                self.crash_loop = true;
                log(
                    LogLevel::Error,
                    format!("🧯 {restarts} restarts within {} s: automatic restarts stopped", window.as_secs()),
                );
            }
            ServerEvent::Log { .. } | ServerEvent::Stopped => return effects,
        }
        if let ServerEvent::CrashLoop { restarts, .. } = &event {
            let alert = AlertEvent {
                rule: RuleKind::CrashLoop,
                severity: Severity::Critical,
                transition: AlertTransition::Fired,
                value: *restarts as f64,
                threshold: *restarts as f64,
            };
            effects.extend(self.alert_effects(alert, now));
        }
        if matches!(
            event,
            ServerEvent::Spawned { .. }
                | ServerEvent::Exited { .. }
                | ServerEvent::StartFailed { .. }
                | ServerEvent::CrashLoop { .. }
        ) {
            effects.push(Effect::Record(json!({
                "type": "server",
                "ts": timestamp(),
                "uptime_s": now.saturating_duration_since(self.started).as_secs_f64(),
                "event": server_event_json(&event),
                "restarts": self.restarts,
            })));
        }
        effects
    }

    /// Feeds one observation to the alert engine and turns a transition into effects.
    fn judge(&mut self, kind: RuleKind, value: f64, samples: u64, now: Instant) -> Vec<Effect> {
        match self.alerts.observe(kind, value, samples, now) {
            Some(alert) => self.alert_effects(alert, now),
            None => Vec::new(),
        }
    }

    fn alert_effects(&mut self, alert: AlertEvent, now: Instant) -> Vec<Effect> {
        if alert.transition != AlertTransition::Resolved {
            match alert.severity {
                Severity::Critical => self.criticals_fired += 1,
                Severity::Warning => self.warnings_fired += 1,
                Severity::Ok => {}
            }
        }
        if self.alert_log.len() == ALERT_LOG {
            self.alert_log.pop_front();
        }
        self.alert_log.push_back(alert.clone());
        let level = match alert.severity {
            Severity::Critical => LogLevel::Error,
            Severity::Warning => LogLevel::Warn,
            Severity::Ok => LogLevel::Info,
        };
        vec![
            Effect::Log { level, message: alert.to_string() },
            Effect::Record(json!({
                "type": "alert",
                "ts": timestamp(),
                "uptime_s": now.saturating_duration_since(self.started).as_secs_f64(),
                "rule": alert.rule.name(),
                "severity": alert.severity,
                "transition": alert.transition,
                "value": alert.value,
                "threshold": alert.threshold,
                "message": alert.to_string(),
            })),
            Effect::Alert(alert),
        ]
    }

    fn cycle_record(&self, window: &StatsSnapshot, now: Instant) -> Value {
        let latest = self.latest.as_ref().map(|probe| match &probe.result {
            Ok(result) => json!({
                "image": probe.image,
                "caption": result.caption,
                "quality": result.quality.score(),
                "keywords_found": result.quality.found,
                "keywords_missing": result.quality.missing,
            }),
            Err(error) => json!({ "image": probe.image, "error": error.to_string(), "error_kind": error.kind() }),
        });
        json!({
            "type": "cycle",
            "ts": timestamp(),
            "uptime_s": now.saturating_duration_since(self.started).as_secs_f64(),
            "cycle": self.cycles,
            "tests": self.tests,
            "window_s": self.window.window().as_secs_f64(),
            "window": snapshot_json(window),
            "session": snapshot_json(&self.session.snapshot(now)),
            "consecutive_failures": self.consecutive_failures,
            "health": self.last_health.as_ref().map(|h| json!({
                "healthy": h.is_healthy(),
                "latency_ms": h.latency.as_secs_f64() * 1000.0,
                "age_s": now.saturating_duration_since(h.at).as_secs_f64(),
            })),
            "latest": latest,
            "status": self.status().label(),
            "pid": self.pid,
            "restarts": self.restarts,
            "active_alerts": self.alerts.active().iter().map(|(kind, severity)| json!({"rule": kind.name(), "severity": severity})).collect::<Vec<_>>(),
        })
    }
}

/// Window or session statistics as JSON (milliseconds, rates 0..1).
pub fn snapshot_json(s: &StatsSnapshot) -> Value {
    json!({
        "probes": s.probes,
        "successes": s.successes,
        "failures": s.failures,
        "error_rate": s.error_rate,
        "latency_ms": {"p50": s.latency.p50_ms, "p95": s.latency.p95_ms, "p99": s.latency.p99_ms, "max": s.latency.max_ms, "mean": s.latency.mean_ms},
        "model_time_ms": {"p50": s.model_time.p50_ms, "p95": s.model_time.p95_ms},
        "quality_mean": s.quality_mean,
        "throughput_per_s": s.throughput_per_s,
    })
}

fn server_event_json(event: &ServerEvent) -> Value {
    match event {
        ServerEvent::Spawned { pid } => json!({"kind": "spawned", "pid": pid}),
        ServerEvent::Exited { pid, code, signal, expected } => {
            json!({"kind": "exited", "pid": pid, "code": code, "signal": signal, "expected": expected})
        }
        ServerEvent::StartFailed { pid, reason } => json!({"kind": "start_failed", "pid": pid, "reason": reason}),
        ServerEvent::CrashLoop { restarts, window } => {
            json!({"kind": "crash_loop", "restarts": restarts, "window_s": window.as_secs()})
        }
        other => json!({"kind": format!("{other:?}")}),
    }
}

/// Wall-clock time for records, RFC 3339 with milliseconds.
pub fn timestamp() -> String {
    humantime::format_rfc3339_millis(std::time::SystemTime::now()).to_string()
}
