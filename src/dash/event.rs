//! Everything the dashboard's event loop feeds `update`: probe results, server events,
//! notification reports, key presses (mapped to [`Input`]s by the pure [`key_to_input`]),
//! ticks and shutdown requests. Producers only send; nothing here does I/O.

use super::prober::{HealthCheck, InferenceProbe};
use super::supervisor::ServerEvent;
use crate::notify::DeliveryReport;
use crate::protocol::faults::{ActiveFault, FaultKind};

/// One thing that happened.
#[derive(Debug, Clone, PartialEq)]
pub enum Event {
    /// Time passed: the screen redraws, old samples leave the window, notices expire.
    Tick,
    /// The operator pressed a key that means something.
    Input(Input),
    /// A line from the wiring for the log (where `/metrics` is served, where alerts go).
    Note {
        message: String,
    },
    /// Watch a server that someone else runs, at this URL (`capwatch monitor --url`).
    Attach {
        url: String,
    },
    Server(ServerEvent),
    Health(HealthCheck),
    Probe(InferenceProbe),
    /// All probes of a test cycle were delivered.
    CycleDone,
    /// What became of an alert notification at one sink.
    Notification(DeliveryReport),
    /// An answer of the server's `/chaos` routes (`capwatch --chaos`).
    Faults(FaultsEvent),
    /// What came of requests the session sent the server on its own behalf (the demo's
    /// scenes, its drift reference).
    Traffic(TrafficEvent),
    /// The server's drift window against its reference (`GET /drift`).
    Drift(Box<crate::protocol::drift::DriftStatus>),
    /// Stop monitoring.
    Shutdown(ShutdownReason),
    /// The session is over (the server stopped, notifications drained): each instance
    /// writes its end record.
    Ended,
    /// What discovery found, or why it could not look (the fleet decides joins and leaves).
    Discovery(DiscoveryEvent),
    /// Discovery listed this instance in a lookup that began at `at`.
    Listed {
        at: tokio::time::Instant,
    },
    /// Discovery no longer lists this instance: it left the fleet.
    Left,
    /// An event about one of several watched instances (by position in the fleet); events
    /// not wrapped are about the first (the only one, unless several are watched).
    Of {
        instance: usize,
        event: Box<Event>,
    },
}

impl From<ServerEvent> for Event {
    fn from(event: ServerEvent) -> Self {
        Self::Server(event)
    }
}

impl From<DeliveryReport> for Event {
    fn from(report: DeliveryReport) -> Self {
        Self::Notification(report)
    }
}

/// What the server's `/chaos` routes answered.
/// One discovery lookup.
#[derive(Debug, Clone, PartialEq)]
pub enum DiscoveryEvent {
    /// The instances listed by a lookup that began at `looked_at`.
    Listed { targets: Vec<crate::discovery::Discovered>, looked_at: tokio::time::Instant },
    /// The source could not be read; the last list stands.
    Failed { error: String },
}

/// The answer to an `Effect::SendTraffic` or `Effect::FreezeDriftReference`.
#[derive(Debug, Clone, PartialEq)]
pub enum TrafficEvent {
    /// The scenes went out: what was answered, or why they could not be sent.
    Sent(Result<crate::traffic::TrafficOutcome, String>),
    /// `POST /drift/baseline` answered: the reference, or why there is none.
    ReferenceFrozen(Result<crate::protocol::drift::ReferenceInfo, String>),
}

#[derive(Debug, Clone, PartialEq)]
pub enum FaultsEvent {
    /// `POST /chaos` for a fault of `kind`.
    Injected { kind: FaultKind, result: Result<ActiveFault, String> },
    /// `GET /chaos`: the faults in force, as the server saw them at some point after
    /// `requested_at` (when the request was sent).
    Listed { requested_at: tokio::time::Instant, result: Result<Vec<ActiveFault>, String> },
    /// `DELETE /chaos`: the faults it ended, as they were then.
    Cleared(Result<Vec<ActiveFault>, String>),
}

/// Why the monitor stops without a key press.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ShutdownReason {
    /// SIGINT or SIGTERM (named).
    Signal(&'static str),
    /// `--duration` has passed.
    Deadline,
    /// The terminal went away; there is nothing left to show.
    TerminalClosed,
}

/// What a key asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Input {
    Quit,
    TogglePause,
    Restart,
    TestNow,
    ToggleHelp,
    CloseHelp,
    /// Scroll the alert log by this many lines (positive: towards older alerts).
    ScrollAlerts(isize),
    /// Open or close the fault menu.
    FaultMenu,
    /// Open or close the drift pane.
    DriftPane,
    /// A numbered entry of the open menu (1-based).
    Choose(usize),
    /// End every injected fault (in the fault menu).
    ClearFaults,
    /// Show the next (or previous) watched instance in the panes, when several are watched.
    FocusNext,
    FocusPrevious,
}

/// Lines one PgUp / PgDn moves the alert log.
const ALERT_PAGE: isize = 10;

/// The meaning of a key press, if it has one.
pub fn key_to_input(key: crossterm::event::KeyEvent) -> Option<Input> {
    use crossterm::event::{KeyCode, KeyEventKind, KeyModifiers};
    if key.kind == KeyEventKind::Release {
        return None;
    }
    Some(match key.code {
        KeyCode::Char('q') => Input::Quit,
        KeyCode::Char('c') if key.modifiers.contains(KeyModifiers::CONTROL) => Input::Quit,
        KeyCode::Char('p') => Input::TogglePause,
        KeyCode::Char('r') => Input::Restart,
        KeyCode::Char('t') => Input::TestNow,
        KeyCode::Char('?') => Input::ToggleHelp,
        KeyCode::Char('f') => Input::FaultMenu,
        KeyCode::Char('d') => Input::DriftPane,
        KeyCode::Char('x') => Input::ClearFaults,
        KeyCode::Char(digit @ '1'..='9') => Input::Choose(usize::from(digit as u8 - b'0')),
        KeyCode::Esc => Input::CloseHelp,
        KeyCode::Tab => Input::FocusNext,
        KeyCode::BackTab => Input::FocusPrevious,
        KeyCode::Up => Input::ScrollAlerts(1),
        KeyCode::Down => Input::ScrollAlerts(-1),
        KeyCode::PageUp => Input::ScrollAlerts(ALERT_PAGE),
        KeyCode::PageDown => Input::ScrollAlerts(-ALERT_PAGE),
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crossterm::event::{KeyCode, KeyEvent, KeyEventKind, KeyModifiers};

    fn key(code: KeyCode) -> KeyEvent {
        KeyEvent::new(code, KeyModifiers::NONE)
    }

    #[test]
    fn keys_map_to_inputs() {
        assert_eq!(key_to_input(key(KeyCode::Char('q'))), Some(Input::Quit));
        assert_eq!(key_to_input(KeyEvent::new(KeyCode::Char('c'), KeyModifiers::CONTROL)), Some(Input::Quit));
        assert_eq!(key_to_input(key(KeyCode::Char('c'))), None);
        assert_eq!(key_to_input(key(KeyCode::Char('p'))), Some(Input::TogglePause));
        assert_eq!(key_to_input(key(KeyCode::Char('r'))), Some(Input::Restart));
        assert_eq!(key_to_input(key(KeyCode::Char('t'))), Some(Input::TestNow));
        assert_eq!(key_to_input(key(KeyCode::Char('?'))), Some(Input::ToggleHelp));
        assert_eq!(key_to_input(key(KeyCode::Esc)), Some(Input::CloseHelp));
        assert_eq!(key_to_input(key(KeyCode::Char('f'))), Some(Input::FaultMenu));
        assert_eq!(key_to_input(key(KeyCode::Char('d'))), Some(Input::DriftPane));
        assert_eq!(key_to_input(key(KeyCode::Char('3'))), Some(Input::Choose(3)));
        assert_eq!(key_to_input(key(KeyCode::Char('0'))), None);
        assert_eq!(key_to_input(key(KeyCode::Char('x'))), Some(Input::ClearFaults));
        assert_eq!(key_to_input(key(KeyCode::Tab)), Some(Input::FocusNext));
        assert_eq!(key_to_input(key(KeyCode::BackTab)), Some(Input::FocusPrevious));
        assert_eq!(key_to_input(key(KeyCode::PageUp)), Some(Input::ScrollAlerts(10)));
        assert_eq!(key_to_input(key(KeyCode::Down)), Some(Input::ScrollAlerts(-1)));
        let release = KeyEvent::new_with_kind(KeyCode::Char('q'), KeyModifiers::NONE, KeyEventKind::Release);
        assert_eq!(key_to_input(release), None);
    }
}
