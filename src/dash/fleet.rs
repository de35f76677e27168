//! Several watched instances on one dashboard (`capwatch monitor --url A --url B`,
//! `monitoring.targets`): one [`DashState`] per instance, each changed by the same pure
//! [`update`], the focus the panes follow, and the instances pane's order (worst first).
//! It routes each event to the instance it is about and says which instance each effect
//! comes from. No I/O, no clock reads; one instance is a fleet of one.

use std::cmp::Ordering;

use tokio::time::Instant;

use super::effect::Effect;
use super::event::{Event, Input};
use super::state::DashState;
use super::update::update;
use crate::alerts::Severity;
use crate::clock::Clock;

/// An effect, and the instance it comes from (None: the whole session, e.g. a note or quit).
pub type Tagged = (Option<usize>, Effect);

/// Rides along the event loop beside the fleet: sees each event and what `update` made of
/// it, and may add effects of its own (a drill's conductor). `()` adds nothing.
pub trait Companion {
    fn observe(&mut self, event: &Event, effects: &[Tagged], fleet: &Fleet, clock: Clock) -> Vec<Tagged>;
}

impl Companion for () {
    fn observe(&mut self, _: &Event, _: &[Tagged], _: &Fleet, _: Clock) -> Vec<Tagged> {
        Vec::new()
    }
}

/// The watched instances and the one the panes show.
pub struct Fleet {
    instances: Vec<DashState>,
    focus: usize,
    /// Instances that reached their own end (`--cycles`, a service in the wrong shape): the
    /// session ends when every one has.
    done: Vec<bool>,
}

impl Fleet {
    /// A fleet of `first` and `others` (each with `settings.instance` set when there are several).
    pub fn new(first: DashState, others: Vec<DashState>) -> Self {
        let mut instances = vec![first];
        instances.extend(others);
        let done = vec![false; instances.len()];
        Self { instances, focus: 0, done }
    }

    pub fn instances(&self) -> &[DashState] {
        &self.instances
    }

    /// Whether the dashboard watches more than one instance.
    pub fn is_several(&self) -> bool {
        self.instances.len() > 1
    }

    /// The instance the panes show.
    pub fn focused(&self) -> &DashState {
        &self.instances[self.focus]
    }

    pub fn focus(&self) -> usize {
        self.focus
    }

    /// The first instance (the only one, unless several are watched).
    pub fn first(&self) -> &DashState {
        &self.instances[0]
    }

    /// Applies one event and returns what the event loop must do, each effect with its instance.
    pub fn update(&mut self, event: Event, clock: Clock) -> Vec<Tagged> {
        let count = self.instances.len();
        match event {
            Event::Of { instance, event } if instance < count => self.one(instance, *event, clock),
            Event::Of { .. } => Vec::new(),
            Event::Input(Input::FocusNext) => {
                self.focus = (self.focus + 1) % count;
                Vec::new()
            }
            Event::Input(Input::FocusPrevious) => {
                self.focus = (self.focus + count - 1) % count;
                Vec::new()
            }
            Event::Tick
            | Event::Note { .. }
            | Event::Shutdown(_)
            | Event::Ended
            | Event::Input(Input::Quit | Input::TogglePause | Input::TestNow) => self.everyone(&event, clock),
            Event::Input(_) => self.one(self.focus, event, clock),
            Event::Notification(report) => {
                let to = self.instances.iter().position(|state| state.settings.instance == report.instance);
                self.one(to.unwrap_or(0), Event::Notification(report), clock)
            }
            other => self.one(0, other, clock),
        }
    }

    /// An event about one instance. Its wish to stop ends the session only once every
    /// instance has had its end.
    fn one(&mut self, index: usize, event: Event, clock: Clock) -> Vec<Tagged> {
        let mut effects = update(&mut self.instances[index], event, clock);
        if effects.contains(&Effect::Quit) {
            self.done[index] = true;
            if !self.done.iter().all(|done| *done) {
                effects.retain(|effect| *effect != Effect::Quit);
            }
        }
        effects.into_iter().map(|effect| (Some(index), effect)).collect()
    }

    /// An event for every instance (time, keys that act on all, notes, shutdown): each
    /// state takes it, a log line is written once and quit is the session's.
    fn everyone(&mut self, event: &Event, clock: Clock) -> Vec<Tagged> {
        let mut out = Vec::new();
        let mut quit = false;
        for (index, state) in self.instances.iter_mut().enumerate() {
            for effect in update(state, event.clone(), clock) {
                match effect {
                    Effect::Quit => quit = true,
                    Effect::Log { .. } if index > 0 => {}
                    Effect::Log { .. } => out.push((None, effect)),
                    effect => out.push((Some(index), effect)),
                }
            }
        }
        if quit {
            out.push((None, Effect::Quit));
        }
        out
    }

    /// Instance positions, worst first: down before degraded before starting before healthy,
    /// then the louder alert, the higher error rate, the slower P95; ties in config order.
    pub fn worst_first(&self, now: Instant) -> Vec<usize> {
        let mut order: Vec<(usize, Badness)> =
            self.instances.iter().enumerate().map(|(index, state)| (index, Badness::of(state, now))).collect();
        order.sort_by(|(a_index, a), (b_index, b)| b.cmp(a).then(a_index.cmp(b_index)));
        order.into_iter().map(|(index, _)| index).collect()
    }

    /// Every instance's state, for the summary.
    pub fn into_instances(self) -> Vec<DashState> {
        self.instances
    }
}

/// How bad an instance looks, for the instances pane's order.
#[derive(Debug, Clone, Copy, PartialEq)]
struct Badness {
    status: u8,
    severity: Severity,
    error_rate: f64,
    p95_ms: f64,
}

impl Badness {
    fn of(state: &DashState, now: Instant) -> Self {
        let status = state.status().rank();
        let severity = state.alerts.active().iter().map(|(_, severity)| *severity).max().unwrap_or(Severity::Ok);
        let window = state.window_snapshot(now);
        // An instance with nothing measured sorts as the slowest (the key is never shown).
        let p95_ms = window.latency.map_or(f64::INFINITY, |latency| latency.p95_ms);
        Self { status, severity, error_rate: window.error_rate, p95_ms }
    }

    fn cmp(&self, other: &Self) -> Ordering {
        self.status
            .cmp(&other.status)
            .then(self.severity.cmp(&other.severity))
            .then(self.error_rate.total_cmp(&other.error_rate))
            .then(self.p95_ms.total_cmp(&other.p95_ms))
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::config::Config;
    use crate::dash::state::Stop;
    use crate::notify::{AlertState, DeliveryOutcome, DeliveryReport};

    fn fleet(names: &[&str], cycles: Option<u64>) -> (Fleet, Clock) {
        let clock = Clock::at(Instant::now(), 1_795_701_600);
        let config = Config::default();
        let state = |name: &str| {
            let mut state = DashState::new(&config, false, Stop { cycles, interactive: false }, clock.now);
            state.settings.instance = Some(name.to_owned());
            state
        };
        (Fleet::new(state(names[0]), names[1..].iter().map(|n| state(n)).collect()), clock)
    }

    fn of(instance: usize, event: Event) -> Event {
        Event::Of { instance, event: Box::new(event) }
    }

    #[test]
    fn the_session_ends_when_every_instance_had_its_cycles() {
        let (mut fleet, clock) = fleet(&["a", "b"], Some(1));
        let a = fleet.update(of(0, Event::CycleDone), clock);
        assert!(!a.iter().any(|(_, effect)| *effect == Effect::Quit), "one instance done is not the end");
        assert!(a.iter().all(|(instance, _)| *instance == Some(0)));
        let b = fleet.update(of(1, Event::CycleDone), clock);
        assert!(b.contains(&(Some(1), Effect::Quit)));
        // `q` ends it at once, once.
        let (mut fleet, clock) = fleet_of_two();
        let quit = fleet.update(Event::Input(Input::Quit), clock);
        assert_eq!(quit.iter().filter(|(_, effect)| *effect == Effect::Quit).count(), 1);
    }

    fn fleet_of_two() -> (Fleet, Clock) {
        fleet(&["a", "b"], None)
    }

    #[test]
    fn keys_for_all_reach_every_instance_and_notes_are_written_once() {
        let (mut fleet, clock) = fleet_of_two();
        let effects = fleet.update(Event::Input(Input::TogglePause), clock);
        assert!(effects.contains(&(Some(0), Effect::SetPaused(true))));
        assert!(effects.contains(&(Some(1), Effect::SetPaused(true))));
        assert_eq!(effects.iter().filter(|(_, e)| matches!(e, Effect::Log { .. })).count(), 1);
        assert!(fleet.instances().iter().all(|state| state.view.paused));
        let note = fleet.update(Event::Note { message: "hello".to_owned() }, clock);
        assert_eq!(
            note,
            vec![(None, Effect::Log { level: crate::dash::state::LogLevel::Info, message: "hello".to_owned() })]
        );
        // Every instance's log pane has it.
        assert!(fleet.instances().iter().all(|state| state.log.iter().any(|line| line.message == "hello")));
    }

    #[test]
    fn focus_moves_round_and_pane_keys_go_to_the_focused_instance() {
        let (mut fleet, clock) = fleet(&["a", "b", "c"], None);
        fleet.update(Event::Input(Input::FocusPrevious), clock);
        assert_eq!(fleet.focus(), 2);
        fleet.update(Event::Input(Input::FocusNext), clock);
        fleet.update(Event::Input(Input::FocusNext), clock);
        assert_eq!(fleet.focus(), 1);
        fleet.update(Event::Input(Input::DriftPane), clock);
        let open: Vec<bool> = fleet.instances().iter().map(|state| state.view.drift_pane).collect();
        assert_eq!(open, [false, true, false]);
        assert_eq!(fleet.instances()[1].settings.instance.as_deref(), Some("b"));
    }

    #[test]
    fn a_delivery_report_goes_back_to_the_instance_its_alert_was_about() {
        let (mut fleet, clock) = fleet_of_two();
        let report = DeliveryReport {
            id: "0193a1b2-0000-7000-8000-000000000001".to_owned(),
            resent: false,
            sink: "pager".to_owned(),
            kind: crate::config::SinkKind::Webhook,
            rule: "health_down".to_owned(),
            instance: Some("b".to_owned()),
            severity: Severity::Warning,
            state: AlertState::Firing,
            outcome: DeliveryOutcome::Delivered { attempts: 1, status: 200, elapsed: Duration::from_millis(3) },
        };
        let effects = fleet.update(Event::Notification(report), clock);
        assert!(!effects.is_empty() && effects.iter().all(|(instance, _)| *instance == Some(1)));
        // An event for an instance that does not exist is dropped, not sent elsewhere.
        assert!(fleet.update(of(7, Event::CycleDone), clock).is_empty());
    }

    #[test]
    fn the_worst_instance_comes_first() {
        let (mut fleet, clock) = fleet(&["fine", "dead"], None);
        for instance in 0..2 {
            fleet.update(of(instance, Event::Attach { url: format!("http://{instance}") }), clock);
        }
        let refused = crate::dash::prober::HealthCheck {
            at: clock.now,
            latency: Duration::from_millis(1),
            result: Err(crate::dash::prober::ProbeError::ConnectionRefused),
        };
        fleet.update(of(1, Event::Health(refused)), clock);
        assert_eq!(fleet.worst_first(clock.now), [1, 0]);
    }
}
