//! The dashboard's whole state (The Elm Architecture's model): statistics, alert states,
//! what is known of the server, the latest probes, the alert and log panes, and what the
//! operator toggled. Changed only by `update`; read by the view, the summary and the tests.
//! No I/O and no clock reads here: every time comes in as an argument.

use std::collections::VecDeque;
use std::time::SystemTime;

use tokio::time::Instant;

use super::prober::{HealthCheck, InferenceProbe};
use super::stats::{RollingWindow, SessionStats, StatsSnapshot};
use crate::alerts::{AlertEngine, AlertEvent, AlertTransition, RuleKind, rules, stability};
use crate::config::Config;
use crate::notify::FailureKind;
use crate::protocol::faults::{ActiveFault, FaultSpec};

/// Severity of a log line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogLevel {
    Info,
    Warn,
    Error,
}

/// One injected fault, start to end.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct FaultSummary {
    pub kind: String,
    /// The fault in a few words (`latency +10000 ms`).
    pub fault: String,
    /// Seconds into the session when it started.
    pub started_s: f64,
    pub active_s: f64,
    pub hits: u64,
    /// `expired`, `cleared`, `server exited` (`still active` when the session ended first).
    pub ended_by: String,
}

/// Probe latencies kept for the sparkline (wider than any terminal).
pub const RECENT_PROBES: usize = 1000;
/// Alert lines kept for the alert log.
pub const ALERT_LOG: usize = 500;
/// Lines kept for the log pane.
pub const LOG_LINES: usize = 500;

/// The service as the header shows it; records and summaries carry it by its label.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ServiceStatus {
    Starting,
    Healthy,
    Degraded,
    Down,
    Restarting,
    /// It cannot start; a restart would not help.
    Failed,
    /// It kept dying; automatic restarts stopped.
    CrashLoop,
    /// Stopped on purpose (the session is ending).
    Stopped,
}

impl ServiceStatus {
    pub fn label(self) -> &'static str {
        match self {
            Self::Starting => "starting",
            Self::Healthy => "healthy",
            Self::Degraded => "degraded",
            Self::Down => "down",
            Self::Restarting => "restarting",
            Self::Failed => "failed",
            Self::CrashLoop => "crash_loop",
            Self::Stopped => "stopped",
        }
    }

    /// How bad it is, for "the worst of several" (a fleet's order, a summary's last status):
    /// down, failed or in a crash loop, then degraded, then on its way (starting, restarting),
    /// then healthy or stopped.
    pub fn rank(self) -> u8 {
        match self {
            Self::Down | Self::Failed | Self::CrashLoop => 3,
            Self::Degraded => 2,
            Self::Starting | Self::Restarting => 1,
            Self::Healthy | Self::Stopped => 0,
        }
    }
}

impl std::fmt::Display for ServiceStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.label())
    }
}

/// Where the session is: running, or draining after someone (or a limit) decided to quit,
/// when only what the server and the notification sinks still report counts, or over.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    Running,
    /// Quitting: the server is being stopped and notifications drain. `status_at_quit` is the
    /// status when the decision was made, before the server was stopped (the summary's).
    Draining {
        status_at_quit: ServiceStatus,
    },
    /// The end record is written; nothing counts any more.
    Ended,
}

/// Where the server's process is in its life, as the supervisor (or, monitoring a running
/// server, the attach) reported it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Lifecycle {
    /// No process has been ready yet: the first start is under way.
    Starting,
    /// Ready (or attached to): probing runs.
    Ready,
    /// The process exited or failed to start; the supervisor decides what comes next.
    Exited,
    /// Started again after an exit, not ready yet.
    Restarting,
    /// It cannot start and a restart would not help: the supervisor gave up.
    Failed { reason: String },
    /// It kept dying: automatic restarts stopped.
    CrashLoop { reason: String },
    /// Stopped on purpose, as the session ends.
    Stopped,
}

impl Lifecycle {
    pub fn is_ready(&self) -> bool {
        matches!(self, Self::Ready)
    }

    /// Why the supervisor stopped trying, once it has.
    pub fn gave_up(&self) -> Option<&str> {
        match self {
            Self::Failed { reason } | Self::CrashLoop { reason } => Some(reason),
            _ => None,
        }
    }
}

/// Alert events of a session, by transition.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct TransitionCounts {
    pub fired: u64,
    pub escalated: u64,
    pub deescalated: u64,
    pub repeated: u64,
    pub resolved: u64,
    /// Resolved because the instance left the fleet.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub left: u64,
}

fn is_zero(count: &u64) -> bool {
    *count == 0
}

impl TransitionCounts {
    pub fn count(&mut self, transition: AlertTransition) {
        let counter = match transition {
            AlertTransition::Fired => &mut self.fired,
            AlertTransition::Escalated => &mut self.escalated,
            AlertTransition::Deescalated => &mut self.deescalated,
            AlertTransition::Repeated => &mut self.repeated,
            AlertTransition::Resolved => &mut self.resolved,
            AlertTransition::Left => &mut self.left,
        };
        *counter += 1;
    }
}

impl std::fmt::Display for TransitionCounts {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} fired, {} escalated, {} de-escalated, {} repeated, {} resolved",
            self.fired, self.escalated, self.deescalated, self.repeated, self.resolved
        )?;
        if self.left > 0 {
            write!(f, ", {} resolved as their instance left", self.left)?;
        }
        Ok(())
    }
}

/// How a notification sink has been doing.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct SinkStatus {
    pub name: String,
    pub delivered: u64,
    pub failed: u64,
    pub dropped: u64,
    /// Why the latest notification did not get through; None when it did (or before any).
    pub last_failure: Option<SinkFailure>,
    /// Whether any notification has been reported yet.
    pub reported: bool,
}

/// Why a sink's latest notification did not get through.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SinkFailure {
    Failed(FailureKind),
    /// Its queue was full.
    Dropped,
}

impl SinkFailure {
    /// A few characters for the alert panel's edge.
    pub fn short(self) -> String {
        match self {
            Self::Failed(kind) => kind.short(),
            Self::Dropped => "queue full".to_owned(),
        }
    }
}

/// A line of the log pane.
#[derive(Debug, Clone, PartialEq)]
pub struct LogLine {
    pub wall: SystemTime,
    pub level: LogLevel,
    pub message: String,
}

/// One recent inference test, for the sparkline.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RecentProbe {
    pub latency_ms: f64,
    /// The server's model time; failures have none.
    pub model_ms: Option<f64>,
}

/// An injected fault in force, as last seen on the server.
#[derive(Debug, Clone, PartialEq)]
pub struct TrackedFault {
    pub fault: ActiveFault,
    /// When the dashboard first saw it.
    pub started: Instant,
    /// When `fault.remaining_s` was read.
    pub seen: Instant,
}

impl TrackedFault {
    /// Time left at `now`.
    pub fn remaining(&self, now: Instant) -> std::time::Duration {
        let left = std::time::Duration::from_secs_f64(self.fault.remaining_s.max(0.0));
        left.saturating_sub(now.saturating_duration_since(self.seen))
    }
}

/// Injected faults (`capwatch --chaos`): in force now, and ended ones for the summary.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Faults {
    pub active: Vec<TrackedFault>,
    pub ended: Vec<FaultSummary>,
    /// A `DELETE /chaos` was sent: faults that vanish now were cleared, not expired.
    pub clearing: bool,
    /// When the latest inject or clear was answered: a listing requested before then may
    /// predate it (it would end a fault just injected, or bring back one just cleared).
    pub changed_at: Option<tokio::time::Instant>,
}

/// What the operator toggled on the screen.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ViewState {
    pub paused: bool,
    pub show_help: bool,
    /// The fault menu (`f`) is open.
    pub fault_menu: bool,
    /// The drift pane (`d`) is open.
    pub drift_pane: bool,
    /// Alert log lines scrolled up from the newest.
    pub alert_scroll: usize,
    /// Shown in the footer until the instant passes (e.g. why `r` does nothing).
    pub notice: Option<(String, Instant)>,
}

/// Settings `update` follows, from the config and the command line.
#[derive(Debug, Clone, PartialEq)]
pub struct Settings {
    pub model_name: String,
    /// This instance's name when the dashboard watches several; None for one.
    pub instance: Option<String>,
    pub tests_per_cycle: usize,
    pub automatic_restart: bool,
    /// Consecutive failed health checks that trigger a restart.
    pub restart_after_health_failures: usize,
    /// When the session ends by itself.
    pub stop: Stop,
    /// The shape of the service's answers (`capwatch`, `fastapi`, … or with overrides).
    pub service_shape: String,
    /// The server takes faults (`capwatch --chaos`): the fault menu works.
    pub chaos: bool,
    /// The fault menu's entries, sized for the thresholds.
    pub fault_menu: Vec<FaultSpec>,
}

/// When the session ends by itself.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Stop {
    /// After this many test cycles (`--cycles`).
    pub cycles: Option<u64>,
    /// Someone can press keys (the TUI): when the supervisor gives up, wait for `r` or `q`.
    /// False (headless): stop then too, since nobody can press `r`.
    pub interactive: bool,
}

/// The whole dashboard state.
pub struct DashState {
    pub settings: Settings,
    pub started: Instant,
    pub window: RollingWindow,
    pub session: SessionStats,
    pub alerts: AlertEngine,
    /// Whether capwatch launched the server (and can restart it).
    pub supervised: bool,
    pub pid: Option<u32>,
    pub url: Option<String>,
    pub lifecycle: Lifecycle,
    pub restarts: u32,
    pub last_health: Option<HealthCheck>,
    pub consecutive_health_failures: usize,
    pub consecutive_failures: u64,
    pub latest: Option<InferenceProbe>,
    pub cycles: u64,
    pub tests: u64,
    pub test_in_cycle: usize,
    /// Recent inference tests, oldest first.
    pub recent: VecDeque<RecentProbe>,
    /// The server's time on each caption of the cycle under way, queue excluded (ms), when
    /// it reports one: written in the cycle record for `capwatch plan --session`.
    pub cycle_service_ms: Vec<f64>,
    pub alert_log: VecDeque<AlertEvent>,
    /// Notification sinks, in config order, with how their deliveries went.
    pub sinks: Vec<SinkStatus>,
    /// The log pane, oldest first.
    pub log: VecDeque<LogLine>,
    pub view: ViewState,
    /// Why the session stopped at its first caption: the answer was not in the expected shape.
    pub wrong_shape: Option<String>,
    /// Running, or on its way out.
    pub phase: Phase,
    pub faults: Faults,
    /// The A/B comparison, once the server lists two or more model variants.
    pub ab: Option<super::ab::AbState>,
    /// The server's latest drift status (`GET /drift`), once it answered one.
    pub drift: Option<crate::protocol::drift::DriftStatus>,
    /// Set for an instance that discovery found (None for a static one).
    pub listing: Option<Listing>,
    /// When the current run of failed health checks or inference tests began (None while
    /// the last of each succeeded).
    pub failing_since: Option<Instant>,
}

/// What discovery said of one instance: when it last listed it, and the alerts held until
/// a lookup that began after the trouble began lists it still (an instance removed on
/// purpose fails before discovery stops listing it; that is no incident).
#[derive(Debug, Clone, Default)]
pub struct Listing {
    pub listed_at: Option<Instant>,
    pub held: Vec<AlertEvent>,
    /// Discovery stopped listing it: retired.
    pub left: bool,
}

impl Listing {
    /// A listing by a lookup that began at `at`.
    pub fn at(at: Instant) -> Self {
        Self { listed_at: Some(at), held: Vec::new(), left: false }
    }

    /// Whether `state` is an instance that left the fleet.
    pub fn has_left(state: &DashState) -> bool {
        state.listing.as_ref().is_some_and(|listing| listing.left)
    }

    /// Whether discovery listed the instance after `since`.
    pub fn confirms(&self, since: Option<Instant>) -> bool {
        match since {
            None => true,
            Some(since) => self.listed_at.is_some_and(|listed_at| listed_at >= since),
        }
    }
}

impl DashState {
    /// A fresh state at `now`; `supervised` when capwatch launches the server itself.
    pub fn new(config: &Config, supervised: bool, stop: Stop, now: Instant) -> Self {
        Self {
            settings: Settings {
                model_name: config.service.model_name(),
                instance: None,
                tests_per_cycle: config.monitoring.tests_per_cycle.get(),
                automatic_restart: config.restart.automatic,
                restart_after_health_failures: config.restart.health_failures.get(),
                stop,
                service_shape: config.monitoring.service.preset.name().to_owned(),
                chaos: config.service.chaos,
                fault_menu: super::rehearsal::menu(config),
            },
            started: now,
            window: RollingWindow::new(config.monitoring.window_s.0),
            session: SessionStats::new(now),
            alerts: AlertEngine::new(rules(config), config.alerts.cooldown_s.0, stability(config)),
            supervised,
            pid: None,
            url: None,
            lifecycle: Lifecycle::Starting,
            restarts: 0,
            last_health: None,
            consecutive_health_failures: 0,
            consecutive_failures: 0,
            latest: None,
            cycles: 0,
            tests: 0,
            test_in_cycle: 0,
            recent: VecDeque::with_capacity(RECENT_PROBES),
            cycle_service_ms: Vec::new(),
            alert_log: VecDeque::new(),
            sinks: config
                .alerts
                .sinks
                .0
                .iter()
                .map(|sink| SinkStatus { name: sink.name.clone(), ..SinkStatus::default() })
                .collect(),
            log: VecDeque::with_capacity(LOG_LINES),
            view: ViewState::default(),
            phase: Phase::Running,
            wrong_shape: None,
            faults: Faults::default(),
            ab: None,
            drift: None,
            listing: None,
            failing_since: None,
        }
    }

    /// The header's status badge. DOWN once the health check fails, or once inference
    /// tests fail in a row as often as the `consecutive_failures` warning level says.
    pub fn status(&self) -> ServiceStatus {
        match self.lifecycle {
            Lifecycle::Ready => {}
            Lifecycle::Starting => return ServiceStatus::Starting,
            Lifecycle::Exited | Lifecycle::Restarting => return ServiceStatus::Restarting,
            Lifecycle::Failed { .. } => return ServiceStatus::Failed,
            Lifecycle::CrashLoop { .. } => return ServiceStatus::CrashLoop,
            Lifecycle::Stopped => return ServiceStatus::Stopped,
        }
        let health_ok = self.last_health.as_ref().is_none_or(HealthCheck::is_healthy);
        let down_after = self.alerts.rule(RuleKind::ConsecutiveFailures).map_or(f64::INFINITY, |rule| rule.warning);
        if !health_ok || self.consecutive_failures as f64 >= down_after {
            ServiceStatus::Down
        } else if !self.alerts.active().is_empty() {
            ServiceStatus::Degraded
        } else {
            ServiceStatus::Healthy
        }
    }

    /// Window statistics at `now`.
    pub fn window_snapshot(&self, now: Instant) -> StatsSnapshot {
        self.window.snapshot(now)
    }

    /// The notice to show at `now`, if it has not expired.
    pub fn notice(&self, now: Instant) -> Option<&str> {
        self.view.notice.as_ref().filter(|(_, until)| now < *until).map(|(text, _)| text.as_str())
    }
}
