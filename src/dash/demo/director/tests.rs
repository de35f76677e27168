#![allow(clippy::unwrap_used)]
use super::*;
use crate::alerts::{AlertTransition, Severity};
use crate::config::Config;
use crate::dash::prober::{HealthBody, HealthCheck};
use crate::dash::state::Stop;
use crate::dash::update::update;
use crate::protocol::faults::{FaultKind, FaultSpec};

/// The real `update` and the director, one event at a time, on paused time.
struct Demo {
    state: DashState,
    director: Director,
    clock: Clock,
}

impl Demo {
    fn new(scenes: Vec<Scene>, linger: Duration) -> Self {
        let config = Config::default();
        let clock = Clock::at(Instant::now(), 1_795_701_600);
        let state = DashState::new(&config, true, Stop::default(), clock.now);
        Self { state, director: Director::new(scenes, linger, clock.now), clock }
    }

    fn feed(&mut self, event: Event, after: Duration) -> Vec<Effect> {
        self.clock = self.clock.later(after);
        let effects = update(&mut self.state, event.clone(), self.clock);
        self.director.observe(&event, &effects, &self.state, self.clock)
    }

    fn ready_server(&mut self) -> Vec<Effect> {
        let mut out = self.feed(Event::Server(ServerEvent::Spawned { pid: 7 }), Duration::ZERO);
        let url = "http://127.0.0.1:7".to_owned();
        out.extend(self.feed(Event::Server(ServerEvent::Listening { pid: 7, url }), Duration::ZERO));
        let ready = ServerEvent::Ready { pid: 7, startup: Duration::from_millis(100) };
        out.extend(self.feed(Event::Server(ready), Duration::ZERO));
        let check = HealthCheck {
            at: self.clock.now,
            latency: Duration::from_millis(1),
            result: Ok(HealthBody::read(true, "{}")),
        };
        out.extend(self.feed(Event::Health(check), Duration::ZERO));
        out
    }
}

fn scene(title: &'static str, beats: Vec<Beat>) -> Scene {
    Scene { title, look_at: "here", beats }
}

fn beat(action: Action, until: Cue, within_s: u64) -> Beat {
    Beat { say: format!("doing {action:?}"), action, until, within: Duration::from_secs(within_s) }
}

fn logs(effects: &[Effect]) -> Vec<String> {
    effects
        .iter()
        .filter_map(|effect| match effect {
            Effect::Log { message, .. } => Some(message.clone()),
            _ => None,
        })
        .collect()
}

#[tokio::test(start_paused = true)]
async fn a_beat_acts_once_a_server_is_up_and_the_demo_goes_on_at_its_cue() {
    let scenes = vec![
        scene("Clearing", vec![beat(Action::ClearFaults, Cue::FaultsCleared, 10)]),
        scene("The end", vec![beat(Action::Nothing, Cue::TimeUp, 8)]),
    ];
    let mut demo = Demo::new(scenes, Duration::ZERO);
    let first = demo.feed(Event::Tick, Duration::ZERO);
    assert_eq!(logs(&first), ["🎬 Scene 1/2 · Clearing — look at here"]);
    assert!(!first.iter().any(|e| matches!(e, Effect::ClearFaults { .. })), "no server to act on yet");
    let effects = demo.ready_server();
    let clears: Vec<_> = effects.iter().filter(|e| matches!(e, Effect::ClearFaults { .. })).collect();
    assert_eq!(clears, [&Effect::ClearFaults { url: "http://127.0.0.1:7".to_owned() }], "{effects:?}");
    assert_eq!(demo.director.banner().unwrap().heading, "Scene 1/2 · Clearing");
    assert!(demo.feed(Event::Tick, Duration::from_secs(1)).is_empty(), "waiting for the cue");
    // The cue: the next scene starts, and with nothing to linger its pause passes at once.
    let effects = demo.feed(Event::Faults(FaultsEvent::Cleared(Ok(Vec::new()))), Duration::from_secs(1));
    assert!(logs(&effects).iter().any(|line| line.starts_with("🎬 Scene 2/2 · The end")), "{effects:?}");
    assert_eq!(effects.last(), Some(&Effect::Quit));
    assert!(demo.director.finished() && demo.director.misses().is_empty());
    assert!(demo.feed(Event::Tick, Duration::from_secs(1)).is_empty(), "quit once");
}

#[tokio::test(start_paused = true)]
async fn a_cue_that_never_shows_is_a_miss_and_every_scene_has_its_pauses_for_reading() {
    let errors = FaultSpec { share: 0.5, ..FaultSpec::new(FaultKind::Errors) };
    let scenes = vec![
        scene(
            "Failing",
            vec![beat(
                Action::Inject(errors),
                Cue::Alert {
                    rule: crate::alerts::RuleKind::ErrorRate,
                    transition: AlertTransition::Fired,
                    severity: Some(Severity::Critical),
                },
                5,
            )],
        ),
        scene("Next", vec![beat(Action::Nothing, Cue::TimeUp, 3)]),
    ];
    let mut demo = Demo::new(scenes, Duration::from_secs(4));
    demo.feed(Event::Tick, Duration::ZERO);
    let effects = demo.ready_server();
    assert!(effects.iter().any(|e| matches!(e, Effect::InjectFault { .. })), "{effects:?}");
    assert!(logs(&demo.feed(Event::Tick, Duration::from_secs(4))).is_empty());
    let effects = demo.feed(Event::Tick, Duration::from_secs(2));
    assert_eq!(
        logs(&effects),
        ["🎬 Going on without Failing: error_rate fired CRITICAL (not seen within 5 s)"],
        "the miss is said"
    );
    assert_eq!(demo.director.misses().len(), 1);
    let effects = demo.feed(Event::Tick, Duration::from_secs(3));
    assert!(effects.is_empty(), "the scene's outcome stands for the pause: {effects:?}");
    let effects = demo.feed(Event::Tick, Duration::from_secs(1));
    assert_eq!(logs(&effects), ["🎬 Scene 2/2 · Next — look at here"]);
    // The opening pause, then the beat (a pause of its own time), then the closing pause.
    assert!(demo.feed(Event::Tick, Duration::from_secs(2)).is_empty());
    assert_eq!(logs(&demo.feed(Event::Tick, Duration::from_secs(2))), ["🎬 doing Nothing"]);
    assert!(demo.feed(Event::Tick, Duration::from_secs(2)).is_empty());
    assert!(!demo.feed(Event::Tick, Duration::from_secs(1)).contains(&Effect::Quit), "the beat's 3 s are up");
    assert!(!demo.feed(Event::Tick, Duration::from_secs(3)).contains(&Effect::Quit));
    assert!(demo.feed(Event::Tick, Duration::from_secs(1)).contains(&Effect::Quit));
    assert!(demo.director.finished());
}
