//! The demo's director: plays the scenes beside `update`. For each beat it says what happens
//! (a log line and the banner), does it (effects for the executor: a fault, scenes, the drift
//! reference) and waits until its cue shows in the monitor's own events, records and state —
//! or, past the beat's bound, notes the miss and goes on. It pauses for reading before each
//! scene, briefly between beats and after each scene; after the last it quits. Pure, like a
//! drill's conductor.

use std::time::Duration;

use tokio::time::Instant;

use super::script::{Action, Beat, Cue, Scene};
use crate::alerts::RuleKind;
use crate::clock::Clock;
use crate::dash::effect::Effect;
use crate::dash::event::{Event, FaultsEvent, TrafficEvent};
use crate::dash::fleet::{Companion, Fleet, Tagged};
use crate::dash::record::Record;
use crate::dash::state::{DashState, LogLevel, ServiceStatus};
use crate::dash::supervisor::ServerEvent;
use crate::dash::ui::Banner;
use crate::stats::comparison::Verdict;

/// Where the director is.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Stage {
    /// The beat's action waits for a server to take it (it is restarting).
    Starting,
    /// The action is done; waiting for the cue.
    Waiting,
    /// A pause for reading; then the current beat starts, or (after a scene) the next scene.
    Pausing {
        until: Instant,
        then: AfterPause,
    },
    Finished,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum AfterPause {
    Act,
    NextScene,
}

/// Plays the scenes.
pub struct Director {
    scenes: Vec<Scene>,
    /// The pause before a scene's first beat and after its last (half of it between beats);
    /// zero also makes the beats that only pass time pass none.
    pause: Duration,
    scene: usize,
    beat: usize,
    stage: Stage,
    /// When the current beat must have shown its cue.
    deadline: Instant,
    /// Each cue that did not show within its bound, in words.
    misses: Vec<String>,
    /// The beat of the current scene the banner tells of: the last one acted (the first while
    /// the scene's opening pause lasts).
    told: usize,
    /// Whether the first scene was announced.
    begun: bool,
}

/// Whether the director takes another step on the same event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Flow {
    Again,
    Wait,
}

impl Director {
    /// A director for `scenes`, starting at `now`, pausing `pause` for reading around each scene.
    pub fn new(scenes: Vec<Scene>, pause: Duration, now: Instant) -> Self {
        let deadline = scenes.first().and_then(|scene| scene.beats.first()).map_or(now, |beat| now + beat.within);
        Self {
            scenes,
            pause,
            scene: 0,
            beat: 0,
            stage: Stage::Starting,
            deadline,
            misses: Vec::new(),
            told: 0,
            begun: false,
        }
    }

    /// The cues that did not show, in words (empty: every scene showed what it set out to).
    pub fn misses(&self) -> &[String] {
        &self.misses
    }

    /// Whether every scene was played.
    pub fn finished(&self) -> bool {
        self.stage == Stage::Finished
    }

    /// Looks at one event and what `update` made of it; returns the demo's own effects.
    pub fn observe(&mut self, event: &Event, effects: &[Effect], state: &DashState, clock: Clock) -> Vec<Effect> {
        let now = clock.now;
        let mut out = Vec::new();
        if !self.begun {
            self.begun = true;
            self.announce_scene(&mut out);
        }
        // Several steps may follow one event (a beat that needs no wait, the next scene); an
        // action's cue is looked for from the next event on.
        while self.step(event, effects, state, now, &mut out) == Flow::Again {}
        out
    }

    fn step(
        &mut self,
        event: &Event,
        effects: &[Effect],
        state: &DashState,
        now: Instant,
        out: &mut Vec<Effect>,
    ) -> Flow {
        let beat = match (self.stage, self.scenes.get(self.scene).and_then(|scene| scene.beats.get(self.beat))) {
            (Stage::Finished, _) => return Flow::Wait,
            (Stage::Pausing { until, .. }, _) if now < until => return Flow::Wait,
            (Stage::Pausing { then: AfterPause::NextScene, .. }, _) => return self.next_scene(now, out),
            (Stage::Pausing { then: AfterPause::Act, .. }, Some(beat)) => {
                self.deadline = now + beat.within;
                self.stage = Stage::Starting;
                return Flow::Again;
            }
            (_, Some(beat)) => beat.clone(),
            (_, None) => {
                self.stage = Stage::Finished;
                out.push(Effect::Quit);
                return Flow::Wait;
            }
        };
        match self.stage {
            Stage::Starting => {
                if beat.until == Cue::TimeUp && self.pause.is_zero() {
                    self.deadline = now;
                }
                match self.act(&beat.action, state) {
                    Some(action) => {
                        self.told = self.beat;
                        out.push(log(LogLevel::Info, format!("🎬 {}", beat.say)));
                        let acted = !action.is_empty();
                        out.extend(action);
                        self.stage = Stage::Waiting;
                        if acted { Flow::Wait } else { Flow::Again }
                    }
                    None if now >= self.deadline => self.miss(&beat, "no server was up to take the action", now, out),
                    None => Flow::Wait,
                }
            }
            Stage::Waiting => match cue_seen(&beat.until, event, effects, state) {
                Some(Ok(())) => self.next_beat(now),
                Some(Err(why)) => self.miss(&beat, &why, now, out),
                None if now >= self.deadline && beat.until == Cue::TimeUp => self.next_beat(now),
                None if now >= self.deadline => {
                    let within = beat.within.as_secs_f64();
                    self.miss(&beat, &format!("not seen within {within:.0} s"), now, out)
                }
                None => Flow::Wait,
            },
            Stage::Pausing { .. } | Stage::Finished => Flow::Wait,
        }
    }

    /// The action's effects, or None while no server is up to take one.
    fn act(&self, action: &Action, state: &DashState) -> Option<Vec<Effect>> {
        if *action == Action::Nothing {
            return Some(Vec::new());
        }
        let url = state.url.clone().filter(|_| state.lifecycle.is_ready())?;
        Some(vec![match action {
            Action::Nothing => return Some(Vec::new()),
            Action::Inject(spec) => Effect::InjectFault { url, spec: spec.clone() },
            Action::ClearFaults => Effect::ClearFaults { url },
            Action::SendScenes { shift, requests, seed } => {
                Effect::SendTraffic { url, shift: *shift, requests: *requests, seed: *seed }
            }
            Action::FreezeReference => Effect::FreezeDriftReference { url },
        }])
    }

    fn miss(&mut self, beat: &Beat, why: &str, now: Instant, out: &mut Vec<Effect>) -> Flow {
        let missed = format!("{}: {} ({why})", self.scenes[self.scene].title, beat.until);
        out.push(log(LogLevel::Warn, format!("🎬 Going on without {missed}")));
        self.misses.push(missed);
        self.next_beat(now)
    }

    fn next_beat(&mut self, now: Instant) -> Flow {
        self.beat += 1;
        let more = self.scenes.get(self.scene).is_some_and(|scene| self.beat < scene.beats.len());
        let (pause, then) = if more { (self.pause / 2, AfterPause::Act) } else { (self.pause, AfterPause::NextScene) };
        self.stage = Stage::Pausing { until: now + pause, then };
        Flow::Again
    }

    fn next_scene(&mut self, now: Instant, out: &mut Vec<Effect>) -> Flow {
        self.scene += 1;
        self.beat = 0;
        self.told = 0;
        if self.scene >= self.scenes.len() {
            self.stage = Stage::Finished;
            out.push(Effect::Quit);
            return Flow::Wait;
        }
        self.announce_scene(out);
        self.stage = Stage::Pausing { until: now + self.pause, then: AfterPause::Act };
        Flow::Again
    }

    fn announce_scene(&self, out: &mut Vec<Effect>) {
        if let Some(scene) = self.scenes.get(self.scene) {
            let heading = format!("Scene {}/{} · {}", self.scene + 1, self.scenes.len(), scene.title);
            out.push(log(LogLevel::Info, format!("🎬 {heading} — look at {}", scene.look_at)));
        }
    }
}

impl Companion for Director {
    fn observe(&mut self, event: &Event, effects: &[Tagged], fleet: &Fleet, clock: Clock) -> Vec<Tagged> {
        // The demo watches the one server it launched.
        let Some(server) = fleet.first() else { return Vec::new() };
        let plain: Vec<Effect> = effects.iter().map(|(_, effect)| effect.clone()).collect();
        Director::observe(self, event, &plain, server, clock).into_iter().map(|effect| (Some(0), effect)).collect()
    }

    fn banner(&self) -> Option<Banner> {
        let index = self.scene.min(self.scenes.len().checked_sub(1)?);
        let scene = self.scenes.get(index)?;
        let beat = scene.beats.get(self.told.min(scene.beats.len().checked_sub(1)?))?;
        Some(Banner {
            heading: format!("Scene {}/{} · {}", index + 1, self.scenes.len(), scene.title),
            happening: beat.say.clone(),
            look_at: scene.look_at.to_owned(),
        })
    }
}

/// Whether `cue` shows in this event, its effects or the state: Some(Ok) it did, Some(Err)
/// it never will (the action failed), None not yet.
fn cue_seen(cue: &Cue, event: &Event, effects: &[Effect], state: &DashState) -> Option<Result<(), String>> {
    let seen = |yes: bool| yes.then_some(Ok(()));
    match cue {
        Cue::Settled => seen(settled(state)),
        Cue::Calm => seen(calm(state)),
        Cue::Active { rule } => seen(state.alerts.active().iter().any(|(active, _)| active == rule)),
        Cue::Alert { rule, transition, severity } => seen(effects.iter().any(|effect| {
            matches!(effect, Effect::Write(Record::Alert(record))
                if record.rule == *rule
                    && record.transition == *transition
                    && severity.is_none_or(|severity| record.severity == severity))
        })),
        Cue::Restarted => seen(matches!(event, Event::Server(ServerEvent::Ready { .. }))),
        Cue::PoorerCaptions { variant } => seen(state.ab.as_ref().is_some_and(|ab| {
            ab.figures
                .iter()
                .any(|figures| matches!(&figures.verdict, Verdict::LowerQuality { worse, .. } if worse == variant))
        })),
        Cue::ScenesSent => match event {
            Event::Traffic(TrafficEvent::Sent(Ok(_))) => Some(Ok(())),
            Event::Traffic(TrafficEvent::Sent(Err(why))) => Some(Err(why.clone())),
            _ => None,
        },
        Cue::ReferenceFrozen => match event {
            Event::Traffic(TrafficEvent::ReferenceFrozen(Ok(_))) => Some(Ok(())),
            Event::Traffic(TrafficEvent::ReferenceFrozen(Err(why))) => Some(Err(why.clone())),
            _ => None,
        },
        Cue::FaultsCleared => match event {
            Event::Faults(FaultsEvent::Cleared(Ok(_))) => Some(Ok(())),
            Event::Faults(FaultsEvent::Cleared(Err(why))) => Some(Err(why.clone())),
            _ => None,
        },
        Cue::TimeUp => None,
    }
}

/// Ready and healthy with no alert active.
fn calm(state: &DashState) -> bool {
    state.lifecycle.is_ready() && state.status() == ServiceStatus::Healthy && state.alerts.active().is_empty()
}

/// Calm, both variants compared, and enough probes in the window for the rules to judge.
fn settled(state: &DashState) -> bool {
    let min_samples = state.alerts.rule(RuleKind::P95Latency).map_or(0, |rule| rule.min_samples);
    calm(state) && state.ab.is_some() && state.window.samples().count() as u64 >= min_samples
}

fn log(level: LogLevel, message: String) -> Effect {
    Effect::Log { level, message }
}

#[cfg(test)]
mod tests;
