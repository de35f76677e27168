//! The demo's scenes: for each, a title, where to look, and its beats — what the demo does
//! (inject a fault, send scenes, freeze the drift reference), what it then waits to see (an
//! alert record, a restart, an A/B verdict) and for how long at most. Plain data, sized
//! against the demo's thresholds ([`super::P95_WARNING_MS`], [`super::P95_CRITICAL_MS`]).

use std::time::Duration;

use super::{BASELINE, CANARY, DRIFT_WINDOW, P95_CRITICAL_MS, P95_WARNING_MS};
use crate::alerts::{AlertTransition, RuleKind, Severity};
use crate::drift::scenes::Shift;
use crate::protocol::faults::{FaultKind, FaultSpec};

/// Latency added for the warning level and for the critical one (between the thresholds, and
/// well past the critical one, whatever the model's own time on a busy machine).
const SLOW_MS: u64 = 300;
const SLOWER_MS: u64 = 700;
/// How long an injected fault lasts at most if nobody clears it (the demo clears each).
const FAULT_S: f64 = 120.0;

/// One part of the story.
#[derive(Debug, Clone, PartialEq)]
pub struct Scene {
    pub title: &'static str,
    /// Where on the screen to look.
    pub look_at: &'static str,
    pub beats: Vec<Beat>,
}

/// One step of a scene: say what happens, do it, wait until it shows.
#[derive(Debug, Clone, PartialEq)]
pub struct Beat {
    /// What the banner says while the beat plays.
    pub say: String,
    pub action: Action,
    pub until: Cue,
    /// How long to wait for the cue before going on without it (a `TimeUp` beat lasts this long).
    pub within: Duration,
}

/// What a beat does to the server.
#[derive(Debug, Clone, PartialEq)]
pub enum Action {
    Nothing,
    Inject(FaultSpec),
    ClearFaults,
    /// Real caption requests, `requests` scenes of `shift` (`seed`: which ones).
    SendScenes {
        shift: Shift,
        requests: usize,
        seed: u64,
    },
    /// `POST /drift/baseline`: the live window becomes the reference.
    FreezeReference,
}

/// What a beat waits to see.
#[derive(Debug, Clone, PartialEq)]
pub enum Cue {
    /// The server is ready and healthy, both variants are being compared, no alert is active
    /// and the window holds enough probes for the rules to judge.
    Settled,
    /// An alert record of `rule` with this transition (and severity, when one is named).
    Alert {
        rule: RuleKind,
        transition: AlertTransition,
        severity: Option<Severity>,
    },
    /// Ready and healthy again, with no alert active.
    Calm,
    /// An alert of `rule` is active (warning or critical).
    Active {
        rule: RuleKind,
    },
    /// The crashed server was started again and is ready.
    Restarted,
    /// The A/B verdict: `variant` writes poorer captions than the baseline.
    PoorerCaptions {
        variant: &'static str,
    },
    ScenesSent,
    ReferenceFrozen,
    FaultsCleared,
    /// Nothing: the beat lasts its `within`.
    TimeUp,
}

impl std::fmt::Display for Cue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Settled => f.write_str("a healthy, settled service"),
            Self::Alert { rule, transition, severity: Some(severity) } => {
                write!(f, "{} {} {severity}", rule.name(), transition_name(*transition))
            }
            Self::Alert { rule, transition, severity: None } => {
                write!(f, "{} {}", rule.name(), transition_name(*transition))
            }
            Self::Calm => f.write_str("a healthy service with no alert active"),
            Self::Active { rule } => write!(f, "{} active", rule.name()),
            Self::Restarted => f.write_str("the restarted server ready"),
            Self::PoorerCaptions { variant } => write!(f, "the A/B verdict that {variant} writes poorer captions"),
            Self::ScenesSent => f.write_str("the scenes answered"),
            Self::ReferenceFrozen => f.write_str("the drift reference frozen"),
            Self::FaultsCleared => f.write_str("the faults cleared"),
            Self::TimeUp => f.write_str("the time up"),
        }
    }
}

fn transition_name(transition: AlertTransition) -> &'static str {
    match transition {
        AlertTransition::Fired => "fired",
        AlertTransition::Escalated => "escalated",
        AlertTransition::Deescalated => "de-escalated",
        AlertTransition::Repeated => "repeated",
        AlertTransition::Resolved => "resolved",
        AlertTransition::Left => "left",
    }
}

fn beat(say: impl Into<String>, action: Action, until: Cue, within_s: u64) -> Beat {
    Beat { say: say.into(), action, until, within: Duration::from_secs(within_s) }
}

fn alert(rule: RuleKind, transition: AlertTransition, severity: Option<Severity>) -> Cue {
    Cue::Alert { rule, transition, severity }
}

fn fault(kind: FaultKind) -> FaultSpec {
    FaultSpec { duration_s: FAULT_S, ..FaultSpec::new(kind) }
}

fn latency(ms: u64) -> Action {
    Action::Inject(FaultSpec { latency_ms: ms, ..fault(FaultKind::Latency) })
}

/// The story, in order.
pub fn scenes() -> Vec<Scene> {
    use AlertTransition::{Deescalated, Escalated, Fired, Resolved};
    use RuleKind::{Drift, ErrorRate, P95Latency};
    let (warning, critical) = (P95_WARNING_MS, P95_CRITICAL_MS);
    vec![
        Scene {
            title: "Watching the bundled model",
            look_at: "the status badge and the gauges (green), the latest caption and its keywords, the A/B pane",
            beats: vec![
                beat(
                    format!(
                        "capwatch started `capwatch serve` as a child process, the bundled model loaded twice as two \
                         variants ({BASELINE} and {CANARY}), and probes it twice a second: a health check, and a \
                         caption of a real test image by each variant."
                    ),
                    Action::Nothing,
                    Cue::Settled,
                    90,
                ),
                beat(
                    format!(
                        "{DRIFT_WINDOW} ordinary scenes (light backgrounds; circles, squares, triangles) go to the server \
                         as caption requests and fill its drift window."
                    ),
                    Action::SendScenes { shift: Shift::Stable, requests: DRIFT_WINDOW, seed: 1 },
                    Cue::ScenesSent,
                    60,
                ),
                beat(
                    "The server freezes those requests as its drift reference (POST /drift/baseline): later requests \
                     are compared with them.",
                    Action::FreezeReference,
                    Cue::ReferenceFrozen,
                    15,
                ),
            ],
        },
        Scene {
            title: "A latency spike",
            look_at: "the P95 gauge and the latency chart; the alerts pane: fired, escalated, de-escalated, resolved",
            beats: vec![
                beat(
                    format!(
                        "Every caption now waits {SLOW_MS} ms longer (an injected fault): P95 passes the {warning:.0} ms warning threshold."
                    ),
                    latency(SLOW_MS),
                    alert(P95Latency, Fired, Some(Severity::Warning)),
                    40,
                ),
                beat(
                    format!(
                        "{SLOWER_MS} ms now: P95 passes the {critical:.0} ms critical threshold and the alert escalates."
                    ),
                    latency(SLOWER_MS),
                    alert(P95Latency, Escalated, Some(Severity::Critical)),
                    40,
                ),
                beat(
                    format!(
                        "Back to {SLOW_MS} ms: once the slowest probes leave the window, the alert de-escalates to a warning."
                    ),
                    latency(SLOW_MS),
                    alert(P95Latency, Deescalated, Some(Severity::Warning)),
                    40,
                ),
                beat(
                    "The fault ends: P95 falls back under the threshold (less the 10 % hysteresis) and the alert resolves.",
                    Action::ClearFaults,
                    alert(P95Latency, Resolved, None),
                    40,
                ),
            ],
        },
        Scene {
            title: "Failing requests",
            look_at: "the error-rate gauge and the failure count, the latest caption, the alerts pane",
            beats: vec![
                beat(
                    "Half the caption requests now fail with HTTP 500: the error rate passes its thresholds (10 %, 25 %).",
                    Action::Inject(FaultSpec { share: 0.5, status: 500, ..fault(FaultKind::Errors) }),
                    alert(ErrorRate, Fired, None),
                    40,
                ),
                beat(
                    "The fault ends: the failures leave the window and the alert resolves.",
                    Action::ClearFaults,
                    alert(ErrorRate, Resolved, None),
                    40,
                ),
            ],
        },
        Scene {
            title: "A crash",
            look_at: "the status badge, restarts in the header, the log",
            beats: vec![
                beat(
                    "The server process crashes (exit status 70). capwatch sees it exit, waits out the backoff and \
                     starts it again.",
                    Action::Inject(fault(FaultKind::Crash)),
                    Cue::Restarted,
                    60,
                ),
                beat(
                    "The new server answers. The alerts the crash set off (health checks, failures in a row, the error \
                     rate) resolve as the window moves past it.",
                    Action::Nothing,
                    Cue::Calm,
                    45,
                ),
            ],
        },
        Scene {
            title: "A bad canary",
            look_at: "the A/B pane (quality per variant, the verdict); the quality gauge dips too; alerts: ab_worse",
            beats: vec![
                beat(
                    format!(
                        "The {CANARY} variant now writes wrong captions. Every test image goes to both variants, and the \
                         A/B pane compares them pair by pair until its verdict is sure."
                    ),
                    Action::Inject(FaultSpec { model: Some(CANARY.to_owned()), ..fault(FaultKind::Garbage) }),
                    Cue::PoorerCaptions { variant: CANARY },
                    90,
                ),
                beat(
                    format!(
                        "The verdict is in: {CANARY} writes poorer captions than {BASELINE} (the ab_worse alert). The fault ends."
                    ),
                    Action::ClearFaults,
                    Cue::FaultsCleared,
                    15,
                ),
            ],
        },
        Scene {
            title: "Drift",
            look_at: "the drift pane (press d): each feature against the reference; the alerts pane: drift",
            beats: vec![
                beat(
                    format!(
                        "{DRIFT_WINDOW} dark scenes (near-black backgrounds) go to the server: its live window no \
                         longer looks like the reference."
                    ),
                    Action::SendScenes { shift: Shift::Dark, requests: DRIFT_WINDOW, seed: 2 },
                    Cue::ScenesSent,
                    60,
                ),
                beat(
                    "The live window has drifted: brightness, colour, caption words and the image embeddings differ \
                     from the reference, and the drift alert fires.",
                    Action::Nothing,
                    Cue::Active { rule: Drift },
                    30,
                ),
            ],
        },
        Scene {
            title: "The end",
            look_at: "the alerts pane: every transition of the session",
            beats: vec![beat(
                "That was capwatch. It quits now: the session summary follows, with its files (Markdown, JSON and an \
                 HTML report with charts).",
                Action::Nothing,
                Cue::TimeUp,
                8,
            )],
        },
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_fault_is_valid_and_the_latency_steps_straddle_the_thresholds() {
        let scenes = scenes();
        for beat in scenes.iter().flat_map(|scene| &scene.beats) {
            if let Action::Inject(spec) = &beat.action {
                assert!(spec.validate().is_ok(), "{spec:?}");
            }
        }
        assert!((SLOW_MS as f64) > P95_WARNING_MS && (SLOW_MS as f64) < P95_CRITICAL_MS * 0.9);
        assert!(SLOWER_MS as f64 > P95_CRITICAL_MS);
        assert_eq!(
            alert(RuleKind::P95Latency, AlertTransition::Deescalated, Some(Severity::Warning)).to_string(),
            "p95_latency de-escalated WARNING"
        );
    }
}
