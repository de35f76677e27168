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

fn discovering_fleet() -> (Fleet, Clock) {
    let clock = Clock::at(Instant::now(), 1_795_701_600);
    let config = Config::default();
    let new_instance: NewInstance =
        Box::new(move |_: &str| DashState::new(&config, false, Stop { cycles: None, interactive: false }, clock.now));
    (Fleet::of(Vec::new(), Vec::new()).discover("file:sd.json".to_owned(), new_instance, clock.now), clock)
}

fn listed(urls: &[&str], looked_at: Instant) -> Event {
    let targets =
        urls.iter().map(|url| Discovered { name: crate::discovery::address_of(url), url: (*url).to_owned() }).collect();
    Event::Discovery(DiscoveryEvent::Listed { targets, looked_at })
}

fn refused(clock: Clock) -> Event {
    Event::Health(crate::dash::prober::HealthCheck {
        at: clock.now,
        latency: Duration::from_millis(1),
        result: Err(crate::dash::prober::ProbeError::ConnectionRefused),
    })
}

fn fleet_records(effects: &[Tagged]) -> Vec<(FleetChange, usize)> {
    effects
        .iter()
        .filter_map(|(_, effect)| match effect {
            Effect::Write(Record::Fleet(record)) => Some((record.change, record.instances)),
            _ => None,
        })
        .collect()
}

fn alerts(effects: &[Tagged]) -> Vec<(crate::alerts::RuleKind, crate::alerts::AlertTransition)> {
    effects
        .iter()
        .filter_map(|(_, effect)| match effect {
            Effect::Notify(alert) => Some((alert.rule, alert.transition)),
            _ => None,
        })
        .collect()
}

#[test]
fn discovery_adds_and_retires_instances_with_their_probes_and_records() {
    let (mut fleet, clock) = discovering_fleet();
    assert!(fleet.focused().is_none() && fleet.is_several());
    // Nobody listed yet: notes still reach the log and `q` still quits.
    assert_eq!(fleet.update(Event::Note { message: "hi".to_owned() }, clock).len(), 1);
    let joined = fleet.update(listed(&["http://127.0.0.2:8000", "http://127.0.0.3:8000"], clock.now), clock);
    assert_eq!(fleet_records(&joined), [(FleetChange::Joined, 1), (FleetChange::Joined, 2)]);
    assert!(joined.contains(&(Some(0), Effect::StartProbes { name: "127.0.0.2:8000".to_owned() })));
    assert!(joined.contains(&(Some(1), Effect::SetProbeTarget(Some("http://127.0.0.3:8000".to_owned())))));
    assert!(joined.contains(&(None, Effect::Metric(MetricUpdate::Instances(2)))));
    assert_eq!(fleet.focused().and_then(|s| s.settings.instance.as_deref()), Some("127.0.0.2:8000"));
    // The same list again changes nothing; a shorter one retires the missing instance.
    assert!(
        fleet_records(&fleet.update(listed(&["http://127.0.0.2:8000", "http://127.0.0.3:8000"], clock.now), clock))
            .is_empty()
    );
    let left = fleet.update(listed(&["http://127.0.0.3:8000"], clock.now), clock);
    assert_eq!(fleet_records(&left), [(FleetChange::Left, 1)]);
    assert!(left.contains(&(Some(0), Effect::StopProbes)));
    assert!(left.contains(&(Some(0), Effect::Metric(MetricUpdate::TargetLeft))));
    assert_eq!(fleet.live().collect::<Vec<_>>(), [1]);
    assert_eq!(fleet.focus(), 1, "the focus moves off an instance that left");
    // Events still in flight for the retired instance count for nothing.
    assert!(alerts(&fleet.update(of(0, refused(clock)), clock)).is_empty());
    // A failing source keeps the last list and says so once.
    let failed = || Event::Discovery(DiscoveryEvent::Failed { error: "gone".to_owned() });
    let first = fleet.update(failed(), clock);
    assert!(first.iter().any(|(_, e)| matches!(e, Effect::Log { level: LogLevel::Warn, message } if message.contains("still watching the 1 instance"))));
    assert!(!fleet.update(failed(), clock).iter().any(|(_, e)| matches!(e, Effect::Log { .. })));
    assert_eq!(fleet.live().count(), 1);
}

#[test]
fn a_listed_instance_that_fails_alerts_once_discovery_still_lists_it_and_a_removed_one_never_does() {
    let (mut fleet, clock) = discovering_fleet();
    let urls = ["http://127.0.0.2:8000", "http://127.0.0.3:8000"];
    fleet.update(listed(&urls, clock.now), clock);
    // Both fail: health_down would fire at once, but waits for discovery, which is asked.
    let later = Clock { now: clock.now + Duration::from_secs(5), ..clock };
    for instance in 0..2 {
        let effects = fleet.update(of(instance, refused(later)), later);
        assert!(alerts(&effects).is_empty(), "{effects:?}");
        assert!(effects.contains(&(Some(instance), Effect::Rediscover)));
    }
    // Discovery, asked after the failures began, lists only the second: the first left
    // without a page, the second is failing while listed and alerts now.
    let after = Clock { now: later.now + Duration::from_secs(1), ..later };
    let effects = fleet.update(listed(&urls[1..], after.now), after);
    assert_eq!(alerts(&effects), [(crate::alerts::RuleKind::HealthDown, crate::alerts::AlertTransition::Fired)]);
    assert!(effects.iter().all(|(instance, effect)| !matches!(effect, Effect::Notify(_)) || *instance == Some(1)));
    // The second leaves later: its alert resolves as `left`.
    let effects = fleet.update(listed(&[], after.now), after);
    assert_eq!(alerts(&effects), [(crate::alerts::RuleKind::HealthDown, crate::alerts::AlertTransition::Left)]);
    assert_eq!(fleet_records(&effects), [(FleetChange::Left, 0)]);
}

#[test]
fn a_held_alert_that_recovers_before_confirmation_is_never_raised() {
    let (mut fleet, clock) = discovering_fleet();
    fleet.update(listed(&["http://127.0.0.2:8000"], clock.now), clock);
    let later = Clock { now: clock.now + Duration::from_secs(5), ..clock };
    fleet.update(of(0, refused(later)), later);
    let healthy = Event::Health(crate::dash::prober::HealthCheck {
        at: later.now,
        latency: Duration::from_millis(1),
        result: Ok(crate::dash::prober::HealthBody::read(true, r#"{"status": "healthy"}"#)),
    });
    let mut effects = Vec::new();
    for _ in 0..3 {
        effects.extend(fleet.update(of(0, healthy.clone()), later));
    }
    effects.extend(fleet.update(listed(&["http://127.0.0.2:8000"], later.now), later));
    assert!(alerts(&effects).is_empty(), "{effects:?}");
}
