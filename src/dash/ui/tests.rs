//! View tests: states built by the real `update`, rendered into a `TestBackend`; snapshots
//! at 80×24 and 120×36, and colours asserted on the cells where they carry meaning.

use std::time::Duration;

use ratatui::Terminal;
use ratatui::backend::TestBackend;
use ratatui::buffer::Buffer;
use ratatui::style::Color;
use tokio::time::Instant;

use super::{draw, draw_instance};
use crate::alerts::Severity;
use crate::clock::Clock;
use crate::config::{Config, Levels, MinSeverity, SinkConfig, SinkKind, SinkTarget, Sinks};
use crate::dash::event::{Event, Input};
use crate::dash::prober::{CaptionResult, HealthBody, HealthCheck, InferenceProbe};
use crate::dash::state::{DashState, Stop};
use crate::dash::supervisor::ServerEvent;
use crate::dash::update::update;
use crate::notify::{AlertState, DeliveryOutcome, DeliveryReport, FailureKind};
use crate::quality::match_keywords;

/// 2026-11-26 14:00:00 UTC.
const WALL_START: u64 = 1_795_701_600;

/// A state and the clock that drives it, one second per event.
struct Scene {
    state: DashState,
    clock: Clock,
}

impl Scene {
    fn new(config: &Config, supervised: bool) -> Self {
        let clock = Clock::at(Instant::now(), WALL_START);
        Self { state: DashState::new(config, supervised, Stop { cycles: None, interactive: true }, clock.now), clock }
    }

    fn feed(&mut self, event: Event) {
        self.clock = self.clock.later(Duration::from_secs(1));
        update(&mut self.state, event, self.clock);
    }

    fn server_ready(&mut self) {
        self.feed(Event::Server(ServerEvent::Spawned { pid: 4242 }));
        self.feed(Event::Server(ServerEvent::Listening { pid: 4242, url: "http://127.0.0.1:8000".to_owned() }));
        self.feed(Event::Server(ServerEvent::Ready { pid: 4242, startup: Duration::from_millis(300) }));
        let check = HealthCheck {
            at: self.clock.now,
            latency: Duration::from_micros(1500),
            result: Ok(HealthBody::read(true, r#"{"status": "healthy", "model": "default"}"#)),
        };
        self.feed(Event::Health(check));
    }

    fn probe(&mut self, latency_ms: u64, caption: &str) {
        let keywords = vec!["red".to_owned(), "circle".to_owned(), "blue".to_owned()];
        let probe = InferenceProbe {
            variant: None,
            at: self.clock.now,
            image: "a.png".to_owned(),
            latency: Duration::from_millis(latency_ms),
            result: Ok(CaptionResult {
                caption: caption.to_owned(),
                model_time: Some(Duration::from_millis(latency_ms / 2)),
                server_total: Some(Duration::from_millis(latency_ms.saturating_sub(1))),
                server_queue: None,
                quality: match_keywords(caption, &keywords),
            }),
        };
        self.feed(Event::Probe(probe));
    }

    fn render(&self, width: u16, height: u16) -> Terminal<TestBackend> {
        let mut terminal = Terminal::new(TestBackend::new(width, height)).unwrap();
        terminal.draw(|frame| draw_instance(frame, frame.area(), &self.state, self.clock)).unwrap();
        terminal
    }
}

/// Two of three keywords (0.67) is acceptable here, so a fast service shows healthy.
fn lenient_config() -> Config {
    let mut config = Config::default();
    config.thresholds.quality_score = Levels { warning: 0.5, critical: 0.2 };
    config
}

fn healthy_scene() -> Scene {
    let mut scene = Scene::new(&lenient_config(), true);
    scene.server_ready();
    for _ in 0..5 {
        scene.probe(20, "a red circle");
    }
    scene.feed(Event::CycleDone);
    scene
}

fn text(buffer: &Buffer) -> String {
    let area = buffer.area;
    (0..area.height)
        .map(|y| (0..area.width).map(|x| buffer[(x, y)].symbol()).collect::<String>())
        .collect::<Vec<_>>()
        .join("\n")
}

/// The colour of the first cell of `needle` on screen.
fn colour_of(buffer: &Buffer, needle: &str) -> Color {
    let area = buffer.area;
    for y in 0..area.height {
        let line: String = (0..area.width).map(|x| buffer[(x, y)].symbol()).collect();
        if let Some(index) = line.find(needle) {
            let x = line[..index].chars().count() as u16;
            return buffer[(x, y)].fg;
        }
    }
    panic!("`{needle}` not on screen:\n{}", text(buffer));
}

#[tokio::test(start_paused = true)]
async fn healthy_service_at_both_sizes() {
    let scene = healthy_scene();
    insta::assert_snapshot!("healthy_80x24", scene.render(80, 24).backend());
    insta::assert_snapshot!("healthy_120x36", scene.render(120, 36).backend());
    let terminal = scene.render(100, 30);
    let buffer = terminal.backend().buffer();
    assert_eq!(colour_of(buffer, "HEALTHY"), Color::Black);
    assert_eq!(buffer[(1, 1)].bg, Color::Green, "status badge background");
    assert_eq!(colour_of(buffer, "✓red"), Color::Green);
    assert_eq!(colour_of(buffer, "✗blue"), Color::Red);
}

#[tokio::test(start_paused = true)]
async fn a_critical_alert_turns_the_gauge_and_the_alert_line_red() {
    let mut scene = healthy_scene();
    for _ in 0..20 {
        scene.probe(9000, "a red circle");
    }
    scene.feed(Event::CycleDone);
    let terminal = scene.render(80, 24);
    insta::assert_snapshot!("critical_alert_80x24", terminal.backend());
    let buffer = terminal.backend().buffer();
    assert_eq!(colour_of(buffer, "CRITICAL ALERT: p95_latency"), Color::Red);
    assert_eq!(buffer[(1, 1)].bg, Color::Yellow, "degraded badge");
    // The P95 gauge (row 5, right half) is filled in red.
    let gauge_cells: Vec<_> = (45..79).map(|x| buffer[(x, 5)].clone()).collect();
    assert!(gauge_cells.iter().any(|c| c.fg == Color::Red), "P95 gauge not red");
}

#[tokio::test(start_paused = true)]
async fn gauges_stay_green_until_the_rule_has_its_minimum_samples() {
    let mut scene = Scene::new(&lenient_config(), true);
    scene.server_ready();
    // Four slow tests: above the critical P95, but under min_samples (5).
    for _ in 0..4 {
        scene.probe(9000, "a red circle");
    }
    let terminal = scene.render(100, 30);
    let buffer = terminal.backend().buffer();
    let gauge_cells: Vec<_> = (56..99).map(|x| buffer[(x, 5)].clone()).collect();
    assert!(gauge_cells.iter().all(|c| c.fg != Color::Red && c.fg != Color::Yellow), "judged before min_samples");
}

#[tokio::test(start_paused = true)]
async fn a_dead_sink_shows_red_with_its_reason_and_a_working_one_green() {
    let mut config = lenient_config();
    let sink = |name: &str| SinkConfig {
        name: name.to_owned(),
        min_severity: MinSeverity::Warning,
        target: SinkTarget::Webhook { url_env: "X".to_owned(), bearer_token_env: None },
    };
    config.alerts.sinks = Sinks(vec![sink("slack"), sink("pager"), sink("chat")]);
    let mut scene = Scene::new(&config, true);
    scene.server_ready();
    let report = |sink: &str, outcome| {
        Event::Notification(DeliveryReport {
            id: "0193a1b2-0000-7000-8000-000000000001".to_owned(),
            resent: false,
            sink: sink.to_owned(),
            kind: SinkKind::Webhook,
            rule: "p95_latency".to_owned(),
            instance: None,
            severity: Severity::Warning,
            state: AlertState::Firing,
            outcome,
        })
    };
    let delivered = DeliveryOutcome::Delivered { attempts: 1, status: 200, elapsed: Duration::from_millis(5) };
    scene.feed(report("slack", delivered));
    let error = "HTTP 500 Internal Server Error: upstream exploded".to_owned();
    scene.feed(report("pager", DeliveryOutcome::Failed { attempts: 4, error, failure: FailureKind::Http(500) }));
    scene.feed(report("chat", DeliveryOutcome::Dropped { queued: 32 }));
    insta::assert_snapshot!("failed_sink_80x24", scene.render(80, 24).backend());
    let terminal = scene.render(120, 36);
    let buffer = terminal.backend().buffer();
    assert_eq!(colour_of(buffer, "slack ✓"), Color::Green);
    assert_eq!(colour_of(buffer, "pager ✗ HTTP 500 "), Color::Red);
    assert_eq!(colour_of(buffer, "chat ✗ queue full"), Color::Red);
}

#[tokio::test(start_paused = true)]
async fn paused_with_help_and_restart_disabled() {
    let mut scene = Scene::new(&Config::default(), false);
    scene.feed(Event::Attach { url: "http://127.0.0.1:9000".to_owned() });
    scene.feed(Event::Input(Input::TogglePause));
    scene.feed(Event::Input(Input::ToggleHelp));
    insta::assert_snapshot!("paused_help_80x24", scene.render(80, 24).backend());
    insta::assert_snapshot!("paused_help_120x36", scene.render(120, 36).backend());
    let terminal = scene.render(80, 24);
    let buffer = terminal.backend().buffer();
    let screen = text(buffer);
    assert!(screen.contains("PAUSED"), "{screen}");
    assert_eq!(buffer[(1, 1)].bg, Color::Blue);
    assert!(screen.contains("disabled: monitoring a server capwatch did not"), "{screen}");
}

#[tokio::test(start_paused = true)]
async fn the_log_pane_wraps_at_word_boundaries_at_80_columns() {
    let mut scene = healthy_scene();
    let caption = "a remarkably long caption about a small yellow square beside an enormous red circle";
    scene.probe(20, caption);
    let terminal = scene.render(80, 24);
    let screen = text(terminal.backend().buffer());
    // The log pane is the right half of rows 15..23: every word of the caption is whole there.
    let pane: Vec<String> =
        screen.lines().skip(15).take(8).map(|row| row.chars().skip(40).collect::<String>()).collect();
    let words: Vec<&str> = pane.iter().flat_map(|row| row.split(|c: char| !c.is_alphanumeric())).collect();
    for word in caption.split(' ') {
        assert!(words.contains(&word), "`{word}` cut in the log pane:\n{}", pane.join("\n"));
    }
}

#[tokio::test(start_paused = true)]
async fn the_sparkline_fills_the_pane_with_history() {
    let mut scene = healthy_scene();
    for index in 0..300 {
        scene.probe(10 + index % 7, "a red circle");
    }
    for (width, pane) in [(80u16, 44u16), (120, 66)] {
        let screen = text(scene.render(width, 36).backend().buffer());
        let shown = pane - 2;
        assert!(screen.contains(&format!("Latency ms (last {shown})")), "{screen}");
    }
}

#[tokio::test(start_paused = true)]
async fn a_server_that_cannot_start_says_why_and_what_to_do() {
    let mut scene = Scene::new(&lenient_config(), true);
    scene.feed(Event::Server(ServerEvent::StartFailed {
        pid: 0,
        reason: "cannot listen on 127.0.0.1:8000: Address in use".to_owned(),
    }));
    scene.feed(Event::Server(ServerEvent::PermanentFailure {
        code: 5,
        reason: "cannot listen on 127.0.0.1:8000: Address in use".to_owned(),
    }));
    let terminal = scene.render(80, 24);
    insta::assert_snapshot!("cannot_start_80x24", terminal.backend());
    let buffer = terminal.backend().buffer();
    assert_eq!(buffer[(1, 1)].bg, Color::Red, "FAILED badge");
    assert_eq!(colour_of(buffer, "server stopped: cannot listen on 127.0.0.1:8000"), Color::Red);
    assert!(text(buffer).contains("server stopped — r to try again · q to quit"), "{}", text(buffer));
}

#[tokio::test(start_paused = true)]
async fn the_fault_menu_and_the_fault_banner() {
    use crate::dash::event::FaultsEvent;
    use crate::protocol::faults::{ActiveFault, FaultKind, FaultSpec};
    let mut config = lenient_config();
    config.service.chaos = true;
    let mut scene = Scene::new(&config, true);
    scene.server_ready();
    scene.feed(Event::Input(Input::FaultMenu));
    let terminal = scene.render(120, 36);
    insta::assert_snapshot!("fault_menu_120x36", terminal.backend());
    let screen = text(terminal.backend().buffer());
    for entry in
        ["1 latency +10000 ms", "→ p95_latency CRITICAL", "5 garbage captions", "→ health_down CRITICAL, restart"]
    {
        assert!(screen.contains(entry), "{entry}\n{screen}");
    }
    scene.feed(Event::Input(Input::Choose(1)));
    let spec = FaultSpec { latency_ms: 10_000, ..FaultSpec::new(FaultKind::Latency) };
    let fault = ActiveFault { id: 1, spec, remaining_s: 60.0, hits: 0 };
    scene.feed(Event::Faults(FaultsEvent::Injected { kind: FaultKind::Latency, result: Ok(fault) }));
    scene.clock = scene.clock.later(Duration::from_secs(17));
    let terminal = scene.render(80, 24);
    insta::assert_snapshot!("fault_banner_80x24", terminal.backend());
    let buffer = terminal.backend().buffer();
    assert!(text(buffer).contains("FAULT latency +10000 ms · 43 s left"), "{}", text(buffer));
    assert_eq!(buffer[(2, 2)].bg, Color::Magenta, "the banner stands out");
}

#[tokio::test(start_paused = true)]
async fn the_ab_pane_shows_both_variants_and_a_red_verdict_for_a_worse_one() {
    use crate::dash::prober::VariantTag;
    let mut scene = Scene::new(&lenient_config(), true);
    scene.server_ready();
    let body = r#"{"status": "healthy", "model": "a, b", "models": [{"name": "a"}, {"name": "b"}],
        "shadow": {"model": "b", "share": 0.25, "agreed": 40, "differed": 10, "failed": 0, "dropped": 3, "agreement": 0.8}}"#;
    let check = HealthCheck {
        at: scene.clock.now,
        latency: Duration::from_millis(2),
        result: Ok(HealthBody::read(true, body)),
    };
    scene.feed(Event::Health(check));
    let keywords = vec!["red".to_owned(), "circle".to_owned()];
    for round in 1..=60u64 {
        for (name, latency_ms, caption) in
            [("a", 20 + round % 4, "a red circle"), ("b", 31 + round % 3, "a blue circle")]
        {
            let probe = InferenceProbe {
                at: scene.clock.now,
                image: "a.png".to_owned(),
                latency: Duration::from_millis(latency_ms),
                result: Ok(CaptionResult {
                    caption: caption.to_owned(),
                    model_time: None,
                    server_total: None,
                    server_queue: None,
                    quality: match_keywords(caption, &keywords),
                }),
                variant: Some(VariantTag { name: name.to_owned(), round }),
            };
            scene.feed(Event::Probe(probe));
        }
        if round % 5 == 0 {
            scene.feed(Event::CycleDone);
        }
    }
    let small = scene.render(80, 24);
    insta::assert_snapshot!("ab_pane_80x24", small.backend());
    let large = scene.render(120, 36);
    insta::assert_snapshot!("ab_pane_120x36", large.backend());
    let buffer = large.backend().buffer();
    let screen = text(buffer);
    for expected in
        ["A/B · 60 rounds", "b vs a:", "quality -0.50", "same caption 0%", "shadow agrees 80%", "Latest caption"]
    {
        assert!(screen.contains(expected), "{expected}\n{screen}");
    }
    assert!(!text(small.backend().buffer()).contains("Latest caption"), "the A/B pane takes its place on 24 rows");
    assert_eq!(colour_of(buffer, "⚖ b writes poorer captions"), Color::Red, "{screen}");
}

#[tokio::test(start_paused = true)]
async fn the_drift_pane_shows_red_bars_for_drifted_features() {
    use crate::drift::choose::TestKind;
    use crate::drift::report::{DriftReport, FeatureScore};
    use crate::protocol::drift::{DriftStatus, ReferenceInfo};
    let mut scene = healthy_scene();
    let feature = |name: &str, test: TestKind, score: f64, drifted: bool| FeatureScore {
        feature: name.to_owned(),
        test,
        score,
        drifted,
        psi: None,
    };
    let status = DriftStatus {
        live_size: 480,
        window_requests: 500,
        window_minutes: None,
        reference: Some(ReferenceInfo {
            size: 500,
            created_at: "2026-11-26T12:00:00.000Z".to_owned(),
            path: Some("logs/drift_reference.json".to_owned()),
        }),
        report: Some(DriftReport {
            reference_size: 500,
            live_size: 480,
            features: vec![
                feature("brightness_mean", TestKind::Ks, 1e-40, true),
                feature("saturation_mean", TestKind::Ks, 0.12, false),
                feature("width", TestKind::Z, 1.0, false),
                feature("hue", TestKind::JensenShannon, 0.06, false),
                feature("words", TestKind::JensenShannon, 0.31, true),
                feature("new_words", TestKind::NewWords, 0.2, true),
            ],
            drifted_share: 0.5,
            detected: true,
        }),
    };
    scene.feed(Event::Drift(Box::new(status)));
    scene.feed(Event::Input(Input::DriftPane));
    let terminal = scene.render(80, 24);
    insta::assert_snapshot!("drift_pane_80x24", terminal.backend());
    let buffer = terminal.backend().buffer();
    let screen = text(buffer);
    assert!(screen.contains("reference 500 requests, 2 h old"), "{screen}");
    assert!(screen.contains("DRIFT: 3 of 6 features past their threshold"), "{screen}");
    let bar_colour = |name: &str| {
        let area = buffer.area;
        (0..area.height)
            .find_map(|y| {
                let line: String = (0..area.width).map(|x| buffer[(x, y)].symbol()).collect();
                // The first bar cell right of the name (the sparkline behind the pane has some too).
                line.find(&format!(" {name} ")).and_then(|index| {
                    let from = line[..index].chars().count() as u16;
                    (from..area.width).find(|&x| buffer[(x, y)].symbol() == "█").map(|x| buffer[(x, y)].fg)
                })
            })
            .unwrap()
    };
    assert_eq!(bar_colour("brightness_mean"), Color::Red);
    assert_eq!(bar_colour("hue"), Color::Yellow, "0.06 is past half of 0.1");
    assert_eq!(bar_colour("width"), Color::Green);
    scene.feed(Event::Input(Input::CloseHelp));
    assert!(!text(scene.render(80, 24).backend().buffer()).contains(" Drift "));
}

/// Three instances: one healthy, one slow (P95 warning), one down. The instances pane lists
/// the down one first, marks the focused one, colours the P95 by its rule, and Tab moves the
/// focus (the header then names the instance the panes show).
#[test]
fn instances_pane_lists_the_worst_first_and_follows_the_focus() {
    use crate::dash::fleet::Fleet;
    let config = lenient_config();
    let clock = Clock::at(Instant::now(), WALL_START);
    let named = |name: &str| {
        let mut state = DashState::new(&config, false, Stop { cycles: None, interactive: true }, clock.now);
        state.settings.instance = Some(name.to_owned());
        state
    };
    let mut fleet = Fleet::new(named("fast:8000"), vec![named("slow:8000"), named("gone:8000")]);
    let mut clock = clock;
    let mut feed = |fleet: &mut Fleet, instance: usize, event: Event| {
        clock = clock.later(Duration::from_secs(1));
        fleet.update(Event::Of { instance, event: Box::new(event) }, clock);
        clock
    };
    for (instance, name) in ["fast", "slow", "gone"].iter().enumerate() {
        feed(&mut fleet, instance, Event::Attach { url: format!("http://{name}:8000") });
    }
    let healthy = |at| HealthCheck {
        at,
        latency: Duration::from_millis(2),
        result: Ok(HealthBody::read(true, r#"{"status": "healthy", "model": "default", "in_flight": 3}"#)),
    };
    for instance in 0..2 {
        let at = feed(&mut fleet, instance, Event::Tick).now;
        feed(&mut fleet, instance, Event::Health(healthy(at)));
    }
    for (instance, latency_ms) in [(0, 20), (1, 5000)] {
        for _ in 0..5 {
            let at = feed(&mut fleet, instance, Event::Tick).now;
            let keywords = vec!["red".to_owned(), "circle".to_owned()];
            let probe = InferenceProbe {
                variant: None,
                at,
                image: "a.png".to_owned(),
                latency: Duration::from_millis(latency_ms),
                result: Ok(CaptionResult {
                    caption: "a red circle".to_owned(),
                    model_time: None,
                    server_total: None,
                    server_queue: None,
                    quality: match_keywords("a red circle", &keywords),
                }),
            };
            feed(&mut fleet, instance, Event::Probe(probe));
        }
        feed(&mut fleet, instance, Event::CycleDone);
    }
    let at = feed(&mut fleet, 2, Event::Tick).now;
    let refused = HealthCheck {
        at,
        latency: Duration::from_millis(1),
        result: Err(crate::dash::prober::ProbeError::ConnectionRefused),
    };
    feed(&mut fleet, 2, Event::Health(refused));
    let render = |fleet: &Fleet| {
        let mut terminal = Terminal::new(TestBackend::new(120, 40)).unwrap();
        terminal.draw(|frame| draw(frame, fleet, None, clock)).unwrap();
        terminal
    };
    let terminal = render(&fleet);
    let screen = text(terminal.backend().buffer());
    let row = |name: &str| screen.lines().position(|line| line.contains(name)).unwrap();
    assert!(row("gone:8000") < row("slow:8000") && row("slow:8000") < row("fast:8000"), "{screen}");
    assert!(screen.lines().any(|line| line.contains("▶") && line.contains("fast:8000")), "{screen}");
    assert!(screen.contains("capwatch · fast:8000"), "{screen}");
    assert_eq!(colour_of(terminal.backend().buffer(), "5001.2 ms"), Color::Yellow, "{screen}");
    assert_eq!(colour_of(terminal.backend().buffer(), "20.0 ms"), Color::Green, "{screen}");
    insta::assert_snapshot!("instances_120x40", screen);

    fleet.update(Event::Input(Input::FocusNext), clock);
    let screen = text(render(&fleet).backend().buffer());
    assert!(screen.lines().any(|line| line.contains("▶") && line.contains("slow:8000")), "{screen}");
    assert!(screen.contains("capwatch · slow:8000"), "{screen}");
    fleet.update(Event::Input(Input::FocusPrevious), clock);
    fleet.update(Event::Input(Input::FocusPrevious), clock);
    assert_eq!(fleet.focused().unwrap().settings.instance.as_deref(), Some("gone:8000"));
}

/// A fleet discovery fills: before any lookup answers the dashboard says it is asking; once
/// instances joined the pane names the source; one that left leaves the rows and is counted
/// in the title; a failing source turns the title yellow and says the last list is kept.
#[test]
fn a_discovering_fleet_waits_then_lists_who_is_watched_and_counts_who_left() {
    use crate::dash::event::DiscoveryEvent;
    use crate::dash::fleet::Fleet;
    use crate::discovery::Discovered;
    let config = lenient_config();
    let clock = Clock::at(Instant::now(), WALL_START);
    let new_instance: crate::dash::fleet::NewInstance =
        Box::new(move |_: &str| DashState::new(&config, false, Stop { cycles: None, interactive: true }, clock.now));
    let mut fleet = Fleet::of(Vec::new(), Vec::new()).discover("dns:replicas:8000".to_owned(), new_instance, clock.now);
    let render = |fleet: &Fleet| {
        let mut terminal = Terminal::new(TestBackend::new(100, 30)).unwrap();
        terminal.draw(|frame| draw(frame, fleet, None, clock)).unwrap();
        terminal
    };
    let screen = text(render(&fleet).backend().buffer());
    assert!(screen.contains("Asking discovery (dns:replicas:8000) for the instances to watch"), "{screen}");
    assert!(screen.contains("Instances (0)"), "{screen}");
    let listed = |addresses: &[&str]| {
        let targets = addresses
            .iter()
            .map(|address| Discovered { name: (*address).to_owned(), url: format!("http://{address}") })
            .collect();
        Event::Discovery(DiscoveryEvent::Listed { targets, looked_at: clock.now })
    };
    fleet.update(listed(&[]), clock);
    let screen = text(render(&fleet).backend().buffer());
    assert!(screen.contains("lists no instance yet"), "{screen}");
    fleet.update(listed(&["10.0.0.5:8000", "10.0.0.6:8000", "10.0.0.7:8000"]), clock);
    fleet.update(listed(&["10.0.0.5:8000", "10.0.0.7:8000"]), clock);
    let terminal = render(&fleet);
    let screen = text(terminal.backend().buffer());
    assert!(screen.contains("Instances (2) · 1 left"), "{screen}");
    assert!(screen.contains("discovery: dns:replicas:8000"), "{screen}");
    let pane: String = screen.lines().take_while(|line| !line.starts_with('└')).collect::<Vec<_>>().join("\n");
    assert!(!pane.contains("10.0.0.6:8000"), "a retired instance has no row:\n{screen}");
    assert!(screen.contains("10.0.0.6:8000 left"), "the log pane says who left:\n{screen}");
    insta::assert_snapshot!("discovering_100x30", screen);
    fleet.update(Event::Discovery(DiscoveryEvent::Failed { error: "no such name (NXDOMAIN)".to_owned() }), clock);
    let terminal = render(&fleet);
    let screen = text(terminal.backend().buffer());
    assert!(screen.contains("dns:replicas:8000 failing: last list kept"), "{screen}");
    assert_eq!(colour_of(terminal.backend().buffer(), "failing: last list kept"), Color::Yellow);
}

/// The demo's banner sits above the panes: its heading in cyan, what is happening wrapped to
/// the width, and where to look kept whole over two rows when it needs them.
#[tokio::test(start_paused = true)]
async fn the_demo_banner_sits_above_the_panes_and_wraps_where_to_look() {
    let scene = healthy_scene();
    let clock = scene.clock;
    let fleet = crate::dash::fleet::Fleet::new(scene.state, Vec::new());
    let banner = super::Banner {
        heading: "Scene 2/7 · A latency spike".to_owned(),
        happening: "700 ms now: P95 passes the 500 ms critical threshold and the alert escalates.".to_owned(),
        look_at: "the P95 gauge and the latency chart; the alerts pane: fired, escalated, de-escalated, resolved"
            .to_owned(),
    };
    let mut terminal = Terminal::new(TestBackend::new(80, 24)).unwrap();
    terminal.draw(|frame| draw(frame, &fleet, Some(&banner), clock)).unwrap();
    let buffer = terminal.backend().buffer();
    let screen = text(buffer);
    let rows: Vec<&str> = screen.lines().collect();
    assert!(rows[0].contains("capwatch demo · Scene 2/7 · A latency spike"), "{screen}");
    assert!(rows[1].contains("700 ms now") && rows[2].starts_with("│Look at: the P95 gauge"), "{screen}");
    assert!(rows[3].contains("de-escalated, resolved"), "where to look is not cut: {screen}");
    assert!(rows[5].contains("capwatch") && rows[6].contains("HEALTHY"), "the panes follow: {screen}");
    assert_eq!(colour_of(buffer, "Look at:"), Color::Cyan);
    insta::assert_snapshot!("demo_banner_80x24", screen);
}
