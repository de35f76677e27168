#![allow(clippy::unwrap_used)]
use super::*;
use crate::config::Config;
use crate::dash::drill::plan;
use crate::dash::prober::{CaptionResult, HealthBody, HealthCheck, InferenceProbe};
use crate::dash::state::Stop;
use crate::dash::update::update;
use crate::protocol::faults::{ActiveFault, FaultKind};

/// The real `update` and the conductor, one event at a time, on paused time.
struct Drill {
    state: DashState,
    conductor: Conductor,
    clock: Clock,
}

impl Drill {
    fn new(faults: &[FaultKind]) -> Self {
        let mut config = Config::default();
        config.thresholds.min_samples = 1;
        let plan = plan::plan(&config, faults);
        let clock = Clock::at(Instant::now(), 1_795_701_600);
        let state = DashState::new(&plan.config, true, Stop::default(), clock.now);
        let conductor = Conductor::new(plan.steps, plan.timings, vec!["hook".to_owned()], clock.now);
        Self { state, conductor, clock }
    }

    fn feed(&mut self, event: Event, after: Duration) -> Vec<Effect> {
        self.clock = self.clock.later(after);
        let effects = update(&mut self.state, event.clone(), self.clock);
        self.conductor.observe(&event, &effects, &self.state, self.clock)
    }

    fn healthy_service(&mut self) {
        self.feed(Event::Server(ServerEvent::Spawned { pid: 7 }), Duration::ZERO);
        self.feed(
            Event::Server(ServerEvent::Listening { pid: 7, url: "http://127.0.0.1:7".to_owned() }),
            Duration::ZERO,
        );
        self.feed(Event::Server(ServerEvent::Ready { pid: 7, startup: Duration::from_millis(100) }), Duration::ZERO);
        let check = HealthCheck {
            at: self.clock.now,
            latency: Duration::from_millis(1),
            result: Ok(HealthBody::read(true, "{}")),
        };
        self.feed(Event::Health(check), Duration::ZERO);
    }

    fn good_probe(&mut self) -> Vec<Effect> {
        let result = Ok(CaptionResult {
            caption: "a red circle".to_owned(),
            model_time: None,
            server_total: None,
            server_queue: None,
            quality: crate::quality::match_keywords("a red circle", &["red".to_owned()]),
        });
        let probe = InferenceProbe {
            variant: None,
            at: self.clock.now,
            image: "a.png".to_owned(),
            latency: Duration::from_millis(10),
            result,
        };
        let mut effects = self.feed(Event::Probe(probe), Duration::from_millis(500));
        effects.extend(self.feed(Event::CycleDone, Duration::ZERO));
        effects
    }
}

#[tokio::test(start_paused = true)]
async fn an_alert_that_never_fires_fails_its_step_with_the_bound() {
    let mut drill = Drill::new(&[FaultKind::Errors]);
    drill.healthy_service();
    let effects = drill.good_probe();
    let Some(Effect::InjectFault { spec, .. }) = effects.iter().find(|e| matches!(e, Effect::InjectFault { .. }))
    else {
        panic!("no fault injected once healthy: {effects:?}");
    };
    let fault = ActiveFault { id: 1, spec: spec.clone(), remaining_s: spec.duration_s, hits: 0 };
    drill.feed(Event::Faults(FaultsEvent::Injected { kind: FaultKind::Errors, result: Ok(fault) }), Duration::ZERO);
    // The "fault" changes nothing: every probe still succeeds, so error_rate never fires.
    let mut cleared = false;
    for _ in 0..200 {
        cleared |= drill.good_probe().iter().any(|e| matches!(e, Effect::ClearFaults { .. }));
        if cleared {
            break;
        }
    }
    assert!(cleared, "the conductor gave up waiting and cleared the fault");
    let results = drill.conductor.results();
    assert!(!results[0].passed());
    assert!(
        results[0].problems[0].starts_with("error_rate did not reach CRITICAL within "),
        "{:?}",
        results[0].problems
    );
    assert_eq!(results[0].fired_after_s, None);
}
