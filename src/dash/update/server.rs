//! `update` for what the supervisor reports: spawns, readiness, exits, restarts scheduled,
//! crash loops and permanent failures, and the child's own log lines. Pure, like `update`.

use super::{Effects, push_bounded, quit, raise};
use crate::alerts::{AlertEvent, AlertTransition, RuleKind, Severity};
use crate::dash::child_output::parse_log_line;
use crate::dash::effect::{Effect, MetricUpdate};
use crate::dash::record::{Record, ServerChange, ServerRecord};
use crate::dash::state::LogLevel;
use crate::dash::state::{DashState, LOG_LINES, Lifecycle, LogLine, Phase};
use crate::dash::supervisor::ServerEvent;

pub(super) fn on_server(state: &mut DashState, event: ServerEvent, out: &mut Effects) {
    let change = match event {
        ServerEvent::Spawned { pid } => {
            // Any start after the first is a restart (after `r` when it had given up, too:
            // the verdict is open again).
            if state.lifecycle != Lifecycle::Starting {
                state.restarts += 1;
                out.metric(MetricUpdate::ServerRestart);
                state.lifecycle = Lifecycle::Restarting;
            }
            state.pid = Some(pid);
            out.log(state, LogLevel::Info, format!("🚀 Server started, PID {pid}"));
            ServerChange::Spawned { pid }
        }
        ServerEvent::Listening { url, .. } => {
            state.url = Some(url);
            return;
        }
        ServerEvent::Ready { pid, startup } => {
            state.lifecycle = Lifecycle::Ready;
            state.consecutive_health_failures = 0;
            out.log(state, LogLevel::Info, format!("🟢 Server ready (PID {pid}) in {:.2} s", startup.as_secs_f64()));
            // Probing starts (again) once the server is ready.
            if let Some(url) = &state.url {
                out.effects.push(Effect::SetProbeTarget(Some(url.clone())));
            }
            return;
        }
        ServerEvent::StartFailed { pid, reason } => {
            exited(state);
            out.log(state, LogLevel::Error, format!("💥 Server failed to start: {reason}"));
            ServerChange::StartFailed { pid, reason }
        }
        ServerEvent::Exited { pid, code, signal, expected } => {
            exited(state);
            let how = match (code, signal) {
                (Some(code), _) => format!("exit code {code}"),
                (None, Some(signal)) => format!("signal {signal}"),
                _ => "unknown status".to_owned(),
            };
            let (level, unexpectedly) =
                if expected { (LogLevel::Info, "") } else { (LogLevel::Error, " unexpectedly") };
            out.log(state, level, format!("🛑 Server PID {pid} exited ({how}){unexpectedly}"));
            ServerChange::Exited { pid, code, signal, expected }
        }
        ServerEvent::RestartScheduled { delay, reason } => {
            out.log(state, LogLevel::Warn, format!("🔁 Restarting in {:.1} s: {reason}", delay.as_secs_f64()));
            return;
        }
        ServerEvent::CrashLoop { restarts, window } => {
            let reason = format!("crash loop ({restarts} restarts within {} s)", window.as_secs());
            state.lifecycle = Lifecycle::CrashLoop { reason };
            let message = format!("🧯 {restarts} restarts within {} s: automatic restarts stopped", window.as_secs());
            out.log(state, LogLevel::Error, message);
            let value = restarts as f64;
            let alert = AlertEvent {
                rule: RuleKind::CrashLoop,
                severity: Severity::Critical,
                transition: AlertTransition::Fired,
                value,
                threshold: value,
                instance: None,
            };
            raise(state, alert, out);
            give_up(state, out);
            ServerChange::CrashLoop { restarts, window_s: window.as_secs() }
        }
        ServerEvent::PermanentFailure { code, reason } => {
            let meaning = crate::exit_code::meaning(code);
            let message = format!("⛔ Not restarting: {meaning} (exit code {code}); a restart cannot fix it");
            out.log(state, LogLevel::Error, message);
            let value = f64::from(code);
            let alert = AlertEvent {
                rule: RuleKind::StartFailed,
                severity: Severity::Critical,
                transition: AlertTransition::Fired,
                value,
                threshold: value,
                instance: None,
            };
            raise(state, alert, out);
            state.lifecycle = Lifecycle::Failed { reason: reason.clone() };
            give_up(state, out);
            ServerChange::PermanentFailure { code, reason }
        }
        ServerEvent::Log { line } => {
            on_child_line(state, &line, out);
            out.effects.push(Effect::ChildLog { line });
            return;
        }
        ServerEvent::Stopped => return,
    };
    let record = ServerRecord { stamp: out.stamp(state), event: change, restarts: state.restarts };
    out.write(Record::Server(record));
}

/// The process is gone: stopped on purpose as the session ends, or else waiting for what the
/// supervisor decides (a verdict it already gave stands).
fn exited(state: &mut DashState) {
    if matches!(state.phase, Phase::Draining { .. }) {
        state.lifecycle = Lifecycle::Stopped;
    } else if state.lifecycle.gave_up().is_none() {
        state.lifecycle = Lifecycle::Exited;
    }
}

/// The supervisor stopped trying: headless runs end (nobody can press `r`); the TUI waits.
fn give_up(state: &mut DashState, out: &mut Effects) {
    if !state.settings.stop.interactive {
        let message = "⏹ Stopping: the server is not running and will not be restarted".to_owned();
        out.log(state, LogLevel::Error, message);
        quit(state, out);
    }
}

/// The child's warnings and errors go to the log pane too (its info lines only to the file).
fn on_child_line(state: &mut DashState, line: &str, out: &mut Effects) {
    let Some((level, message)) = parse_log_line(line) else { return };
    let level = match level.as_str() {
        "WARN" => LogLevel::Warn,
        "ERROR" => LogLevel::Error,
        _ => return,
    };
    let message = format!("server: {message}");
    push_bounded(&mut state.log, LOG_LINES, LogLine { wall: out.clock.wall, level, message });
}
