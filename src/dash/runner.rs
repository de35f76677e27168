//! The monitoring event loop: wires the supervisor (or an external URL), the probe loops,
//! the pure model, the sinks (metrics file, alert notifications, the monitor's `/metrics`)
//! and the display together. Headless mode prints the model's log lines; the terminal UI
//! renders the same model instead.
//!
//! One bounded channel carries every [`Event`]; probe loops and the supervisor only send.
//! On the way out probing stops, the child gets SIGTERM (then SIGKILL after the grace
//! period), the terminal is restored, queued notifications get their delivery timeout, the
//! metrics file is synced and the session summary is written.

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use tokio::sync::{Notify, mpsc, watch};
use tokio::task::JoinSet;
use tokio::time::{Instant, MissedTickBehavior};

use super::alerts::Severity;
use super::metrics::DashMetrics;
use super::model::{DashModel, Effect, Event, LogLevel};
use super::prober::{ProbeImage, Prober};
use super::sinks::JsonLinesSink;
use super::summary::SessionSummary;
use super::supervisor::{self, RestartPolicy, ServeCommand, ServerEvent, SupervisorCommand};
use super::tui::TerminalGuard;
use super::ui::{self, UiState};
use crate::config::Config;
use crate::notify::{DeliveryReport, Notifier, NotifyError, Sink};

/// Errors that stop the monitor before it runs.
#[derive(Debug, thiserror::Error)]
pub enum MonitorError {
    #[error("{0}")]
    TestImages(String),
    #[error("cannot open {path}: {source}")]
    Sink {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("the config's quality section lists no test images")]
    NoTestImages,
    #[error(transparent)]
    Notify(#[from] NotifyError),
    #[error("cannot serve the dashboard's /metrics on {address} (prometheus.listen): {source}")]
    MetricsListen {
        address: String,
        #[source]
        source: std::io::Error,
    },
}

impl MonitorError {
    /// 2 for what the config or environment got wrong, 1 otherwise.
    pub fn exit_code(&self) -> u8 {
        match self {
            Self::Notify(err) => err.exit_code(),
            _ => 1,
        }
    }
}

/// What to watch.
#[derive(Debug, Clone)]
pub enum Target {
    /// Launch and supervise this server command.
    Child(ServeCommand),
    /// Watch a server that is already running.
    Url(String),
}

/// When to stop on its own.
#[derive(Debug, Clone, Copy, Default)]
pub struct StopAfter {
    pub cycles: Option<u64>,
    pub duration: Option<Duration>,
}

/// How the session ended.
#[derive(Debug)]
pub struct MonitorOutcome {
    pub summary: SessionSummary,
    pub summary_paths: Option<(PathBuf, PathBuf)>,
    /// The worst alert severity fired during the session.
    pub worst: Severity,
}

impl MonitorOutcome {
    /// Exit code for CI and cron: 0 no alert, 1 only warnings, 2 a critical one.
    pub fn exit_code(&self) -> u8 {
        match self.worst {
            Severity::Ok => 0,
            Severity::Warning => 1,
            Severity::Critical => 2,
        }
    }
}

fn restart_policy(config: &Config) -> RestartPolicy {
    let r = &config.restart;
    RestartPolicy {
        automatic: r.automatic,
        initial_backoff: r.initial_backoff_s.0,
        max_backoff: r.max_backoff_s.0,
        max_restarts: r.max_restarts,
        window: r.window_s.0,
        grace: r.grace_s.0,
        startup_timeout: config.monitoring.startup_timeout_s.0,
    }
}

/// How the monitor shows itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Display {
    /// Coloured lines on stdout.
    Headless,
    /// The full-screen dashboard.
    Tui,
}

/// Runs the monitor headless until `stop_after` or `shutdown` resolves; prints log lines.
pub async fn run_headless(
    config: Config,
    target: Target,
    stop_after: StopAfter,
    shutdown: impl std::future::Future<Output = ()>,
) -> Result<MonitorOutcome, MonitorError> {
    run(config, target, stop_after, shutdown, Display::Headless).await
}

/// Runs the monitor until `stop_after`, `shutdown`, or (TUI) the `q` key.
pub async fn run(
    config: Config,
    target: Target,
    stop_after: StopAfter,
    shutdown: impl std::future::Future<Output = ()>,
    display: Display,
) -> Result<MonitorOutcome, MonitorError> {
    let images = ProbeImage::load_all(&config.quality.test_images, std::path::Path::new("."))
        .map_err(MonitorError::TestImages)?;
    if images.is_empty() {
        return Err(MonitorError::NoTestImages);
    }
    // Secrets and the metrics address are checked before anything starts.
    let sinks = Sink::resolve_all(&config.alerts.sinks.0, &|var| std::env::var(var).ok())?;
    let metrics_listener = match &config.prometheus.listen {
        Some(address) => Some(
            tokio::net::TcpListener::bind(address)
                .await
                .map_err(|source| MonitorError::MetricsListen { address: address.clone(), source })?,
        ),
        None => None,
    };
    let (reports_tx, mut reports_rx) = mpsc::channel::<DeliveryReport>(256);
    let mut notifier = Notifier::start(sinks, &config.alerts, &config.service.model_name(), reports_tx)?;
    let metrics = Arc::new(DashMetrics::new(&config, &notifier.sink_names()));
    let metrics_path = config.logs.dir.join(&config.logs.metrics_file);
    let mut sink = JsonLinesSink::open(&metrics_path)
        .map_err(|source| MonitorError::Sink { path: metrics_path.clone(), source })?;
    let started_at = super::model::timestamp();
    let now = Instant::now();
    let mut model = DashModel::new(&config, now);

    let (events_tx, mut events_rx) = mpsc::channel::<Event>(256);
    let (url_tx, url_rx) = watch::channel::<Option<String>>(None);
    let (paused_tx, paused_rx) = watch::channel(false);
    let test_now = Arc::new(Notify::new());
    let mut tasks = JoinSet::new();
    if let Some(listener) = metrics_listener {
        let address = listener.local_addr().map_or_else(|_| "?".to_owned(), |a| a.to_string());
        log_line(display, LogLevel::Info, &format!("📈 Dashboard metrics at http://{address}/metrics"));
        let metrics = Arc::clone(&metrics);
        tasks.spawn(async move {
            if let Err(err) = super::metrics::serve(metrics, listener).await {
                tracing::error!(error = %err, "the dashboard's /metrics endpoint stopped");
            }
        });
    }
    for status in &model.sinks {
        log_line(display, LogLevel::Info, &format!("📣 Alert notifications go to {}", status.name));
    }

    // The server: supervised child, or a fixed URL.
    let (commands_tx, commands_rx) = mpsc::channel::<SupervisorCommand>(8);
    let supervisor_task = match &target {
        Target::Child(command) => {
            let (server_tx, mut server_rx) = mpsc::channel::<ServerEvent>(256);
            let events_tx = events_tx.clone();
            let supervisor = supervisor::run(command.clone(), restart_policy(&config), server_tx, commands_rx);
            let forward = async move {
                while let Some(event) = server_rx.recv().await {
                    if events_tx.send(Event::Server(event)).await.is_err() {
                        break;
                    }
                }
            };
            Some(tokio::spawn(async move {
                tokio::join!(supervisor, forward);
            }))
        }
        Target::Url(url) => {
            let url = url.trim_end_matches('/').to_owned();
            model.watch_external(url.clone());
            // A receiver exists (url_rx), so this cannot fail.
            let _ = url_tx.send(Some(url));
            drop(commands_rx);
            None
        }
    };
    let supervised = supervisor_task.is_some();

    // Probe loops: they wait for a URL, then probe on their intervals.
    let prober = Prober::new(config.monitoring.probe_timeout_s.0);
    let controls = ProbeControls { url_rx, paused_rx, test_now: Arc::clone(&test_now) };
    tasks.spawn(health_loop(
        prober.clone(),
        config.monitoring.health_interval_s.0,
        controls.clone(),
        events_tx.clone(),
    ));
    tasks.spawn(inference_loop(
        prober,
        config.monitoring.inference_interval_s.0,
        config.monitoring.tests_per_cycle.get(),
        Arc::new(images),
        controls,
        events_tx.clone(),
    ));
    drop(events_tx);

    let mut screen = match display {
        Display::Tui => Some(Screen::new(&config, supervised)),
        Display::Headless => None,
    };
    let deadline = stop_after.duration.map(|d| Instant::now() + d);
    tokio::pin!(shutdown);
    loop {
        let event = tokio::select! {
            event = events_rx.recv() => event,
            Some(report) = reports_rx.recv() => Some(Event::Notification(report)),
            () = &mut shutdown => break,
            () = sleep_until_opt(deadline) => break,
            action = next_screen_action(screen.as_mut(), &mut model) => match action {
                ScreenAction::Quit => break,
                ScreenAction::Restart => {
                    log_line(display, LogLevel::Warn, "🔁 Restart requested from the keyboard");
                    // A full or closed channel means a restart or stop is already under way.
                    let _ = commands_tx.try_send(SupervisorCommand::Restart { reason: "requested from the keyboard".to_owned() });
                    continue;
                }
                ScreenAction::Pause(paused) => {
                    // The probe loops hold the receiver for as long as they run.
                    let _ = paused_tx.send(paused);
                    log_line(display, LogLevel::Info, if paused { "⏸ Probing paused" } else { "▶ Probing resumed" });
                    continue;
                }
                ScreenAction::TestNow => {
                    test_now.notify_one();
                    continue;
                }
                ScreenAction::None => continue,
            },
        };
        let Some(event) = event else { break };
        let ready = matches!(event, Event::Server(ServerEvent::Ready { .. }));
        let context = ApplyContext { notifier: Some(&mut notifier), metrics: &metrics, display };
        apply(&mut model, event, &mut sink, supervised.then_some(&commands_tx), context);
        if ready && model.url.is_some() {
            // Probing starts once the (re)started server is ready; the probe loops hold the
            // receiver for as long as they run.
            let _ = url_tx.send(model.url.clone());
        }
        if stop_after.cycles.is_some_and(|n| model.cycles >= n) {
            break;
        }
    }

    // Quit: stop probing, then stop the child gracefully and record how it ended.
    let last_status = model.status();
    tasks.abort_all();
    while tasks.join_next().await.is_some() {}
    if let Some(supervisor_task) = supervisor_task {
        // A closed channel means the supervisor already ended.
        let _ = commands_tx.send(SupervisorCommand::Stop).await;
        let limit = config.restart.grace_s.0 + Duration::from_secs(5);
        let drain = async {
            while let Some(event) = events_rx.recv().await {
                let stopped = matches!(event, Event::Server(ServerEvent::Stopped));
                if matches!(event, Event::Server(_)) {
                    let context = ApplyContext { notifier: Some(&mut notifier), metrics: &metrics, display };
                    apply(&mut model, event, &mut sink, None, context);
                }
                if stopped {
                    break;
                }
            }
        };
        if tokio::time::timeout(limit, drain).await.is_err() {
            tracing::warn!("the supervisor did not report a stop in time; the child is killed on drop");
        }
        supervisor_task.abort();
        // Aborted or finished: either way it is over.
        let _ = supervisor_task.await;
    }
    // The terminal is restored before anything is printed or waited for.
    drop(screen);
    // Notifications still queued (say, the critical alert that made someone quit) get the
    // delivery timeout to go out; their reports still reach the metrics file.
    let grace = config.alerts.delivery.timeout_s.0;
    let sent = notifier.shutdown(grace);
    tokio::pin!(sent);
    loop {
        tokio::select! {
            () = &mut sent => break,
            Some(report) = reports_rx.recv() => {
                let context = ApplyContext { notifier: None, metrics: &metrics, display };
                apply(&mut model, Event::Notification(report), &mut sink, None, context);
            }
        }
    }
    while let Ok(report) = reports_rx.try_recv() {
        let context = ApplyContext { notifier: None, metrics: &metrics, display };
        apply(&mut model, Event::Notification(report), &mut sink, None, context);
    }

    if let Err(err) = sink.sync() {
        tracing::error!(error = %err, "cannot sync the metrics file");
    }
    let now = Instant::now();
    let mut summary = SessionSummary::from_model(&mut model, &started_at, now);
    summary.last_status = last_status.label().to_owned();
    let summary_paths = match summary.write(&config.logs.dir) {
        Ok(paths) => Some(paths),
        Err(err) => {
            tracing::error!(error = %err, "cannot write the session summary");
            None
        }
    };
    let worst = if model.criticals_fired > 0 {
        Severity::Critical
    } else if model.warnings_fired > 0 {
        Severity::Warning
    } else {
        Severity::Ok
    };
    Ok(MonitorOutcome { summary, summary_paths, worst })
}

/// Where effects beyond the metrics file and the supervisor go.
struct ApplyContext<'a> {
    /// None once the notifier is shutting down (only delivery reports arrive then).
    notifier: Option<&'a mut Notifier>,
    metrics: &'a DashMetrics,
    display: Display,
}

/// Feeds one event to the model and carries out its effects.
fn apply(
    model: &mut DashModel,
    event: Event,
    sink: &mut JsonLinesSink,
    commands_tx: Option<&mpsc::Sender<SupervisorCommand>>,
    context: ApplyContext<'_>,
) {
    let ApplyContext { mut notifier, metrics, display } = context;
    if let Event::Server(ServerEvent::Log { line }) = &event {
        // The child's own (JSON) log lines, kept in the monitor's log file.
        tracing::info!(target: "capwatch::child", child = %line, "server log");
    }
    metrics.observe_event(&event);
    if let Event::Notification(report) = &event {
        metrics.observe_delivery(report);
    }
    for effect in model.update(event, Instant::now()) {
        match effect {
            Effect::Record(record) => {
                if let Err(err) = sink.write(&record) {
                    tracing::error!(error = %err, path = %sink.path().display(), "cannot write metrics");
                }
            }
            Effect::Log { level, message } => log_line(display, level, &message),
            Effect::Alert(alert) => {
                metrics.observe_alert(&alert);
                if let Some(notifier) = notifier.as_deref_mut() {
                    notifier.notify(&alert);
                }
            }
            Effect::RestartServer { reason } => {
                if let Some(commands_tx) = commands_tx {
                    log_line(display, LogLevel::Warn, &format!("🔁 Restarting the server: {reason}"));
                    // A full or closed command channel means a restart or stop is already under way.
                    let _ = commands_tx.try_send(SupervisorCommand::Restart { reason });
                }
            }
        }
    }
    metrics.sync(model);
}

async fn sleep_until_opt(deadline: Option<Instant>) {
    match deadline {
        Some(deadline) => tokio::time::sleep_until(deadline).await,
        None => std::future::pending().await,
    }
}

/// A monitor line: on stdout when headless (never while the TUI is up), always in the log.
fn log_line(display: Display, level: LogLevel, message: &str) {
    if display == Display::Headless {
        print_line(level, message);
    }
    match level {
        LogLevel::Info => tracing::info!(target: "capwatch::monitor", "{message}"),
        LogLevel::Warn => tracing::warn!(target: "capwatch::monitor", "{message}"),
        LogLevel::Error => tracing::error!(target: "capwatch::monitor", "{message}"),
    }
}

fn print_line(level: LogLevel, message: &str) {
    const RESET: &str = "\x1b[0m";
    let colour = match level {
        LogLevel::Info => "",
        LogLevel::Warn => "\x1b[33m",
        LogLevel::Error => "\x1b[31m",
    };
    let time = humantime::format_rfc3339_seconds(std::time::SystemTime::now());
    if colour.is_empty() {
        println!("{time} {message}");
    } else {
        println!("{time} {colour}{message}{RESET}");
    }
}

/// What the probe loops listen to: where the server is, whether probing is paused, and
/// "run a cycle now".
#[derive(Clone)]
struct ProbeControls {
    url_rx: watch::Receiver<Option<String>>,
    paused_rx: watch::Receiver<bool>,
    test_now: Arc<Notify>,
}

impl ProbeControls {
    /// The URL to probe once the server is known and probing is not paused.
    async fn target(&mut self) -> Option<String> {
        self.paused_rx.wait_for(|paused| !paused).await.ok()?;
        self.url_rx.wait_for(Option::is_some).await.ok().and_then(|url| url.clone())
    }
}

async fn health_loop(prober: Prober, interval: Duration, mut controls: ProbeControls, events_tx: mpsc::Sender<Event>) {
    let mut ticker = tokio::time::interval(interval);
    ticker.set_missed_tick_behavior(MissedTickBehavior::Delay);
    loop {
        ticker.tick().await;
        let Some(url) = controls.target().await else { return };
        let check = prober.health(&url).await;
        if events_tx.send(Event::Health(check)).await.is_err() {
            return;
        }
    }
}

async fn inference_loop(
    prober: Prober,
    interval: Duration,
    tests_per_cycle: usize,
    images: Arc<Vec<ProbeImage>>,
    mut controls: ProbeControls,
    events_tx: mpsc::Sender<Event>,
) {
    let next_image = AtomicUsize::new(0);
    let mut ticker = tokio::time::interval(interval);
    ticker.set_missed_tick_behavior(MissedTickBehavior::Delay);
    let test_now = Arc::clone(&controls.test_now);
    loop {
        tokio::select! {
            _ = ticker.tick() => {}
            () = test_now.notified() => ticker.reset(),
        }
        for _ in 0..tests_per_cycle {
            let Some(url) = controls.target().await else { return };
            let image = &images[next_image.fetch_add(1, Ordering::Relaxed) % images.len()];
            let probe = prober.caption(&url, image).await;
            if events_tx.send(Event::Probe(probe)).await.is_err() {
                return;
            }
        }
        if events_tx.send(Event::CycleDone).await.is_err() {
            return;
        }
    }
}

/// What a key press asks of the event loop.
enum ScreenAction {
    None,
    Quit,
    Restart,
    Pause(bool),
    TestNow,
}

/// The full-screen display: terminal, UI state, key handling and redraw pacing.
struct Screen {
    guard: TerminalGuard,
    ui: UiState,
    keys: crossterm::event::EventStream,
    redraw: tokio::time::Interval,
    notice_until: Option<Instant>,
}

impl Screen {
    fn new(config: &Config, can_restart: bool) -> Self {
        let model_name = config.service.model_name();
        let mut redraw = tokio::time::interval(Duration::from_millis(100));
        redraw.set_missed_tick_behavior(MissedTickBehavior::Skip);
        Self {
            guard: TerminalGuard::enter(),
            ui: UiState {
                paused: false,
                show_help: false,
                alert_scroll: 0,
                notice: None,
                model_name,
                thresholds: config.thresholds.clone(),
                can_restart,
            },
            keys: crossterm::event::EventStream::new(),
            redraw,
            notice_until: None,
        }
    }

    fn draw(&mut self, model: &mut DashModel) {
        let now = Instant::now();
        if self.notice_until.is_some_and(|until| now >= until) {
            self.ui.notice = None;
            self.notice_until = None;
        }
        let window = model.window_snapshot(now);
        let ui = &self.ui;
        if let Err(err) = self.guard.terminal.draw(|frame| ui::draw(frame, model, &window, ui, now)) {
            tracing::error!(error = %err, "cannot draw the dashboard");
        }
    }

    fn notice(&mut self, text: &str) {
        self.ui.notice = Some(format!(" {text}"));
        self.notice_until = Some(Instant::now() + Duration::from_secs(4));
    }

    fn on_key(&mut self, key: crossterm::event::KeyEvent) -> ScreenAction {
        use crossterm::event::{KeyCode, KeyEventKind, KeyModifiers};
        if key.kind == KeyEventKind::Release {
            return ScreenAction::None;
        }
        match key.code {
            KeyCode::Char('q') => ScreenAction::Quit,
            KeyCode::Char('c') if key.modifiers.contains(KeyModifiers::CONTROL) => ScreenAction::Quit,
            KeyCode::Char('p') => {
                self.ui.paused = !self.ui.paused;
                ScreenAction::Pause(self.ui.paused)
            }
            KeyCode::Char('r') if self.ui.can_restart => {
                self.notice("restarting the service…");
                ScreenAction::Restart
            }
            KeyCode::Char('r') => {
                self.notice("restart is disabled: capwatch did not start this server (monitor --url)");
                ScreenAction::None
            }
            KeyCode::Char('t') => {
                self.notice("running a test cycle now…");
                ScreenAction::TestNow
            }
            KeyCode::Char('?') => {
                self.ui.show_help = !self.ui.show_help;
                ScreenAction::None
            }
            KeyCode::Esc => {
                self.ui.show_help = false;
                ScreenAction::None
            }
            KeyCode::Up => {
                self.ui.alert_scroll += 1;
                ScreenAction::None
            }
            KeyCode::Down => {
                self.ui.alert_scroll = self.ui.alert_scroll.saturating_sub(1);
                ScreenAction::None
            }
            KeyCode::PageUp => {
                self.ui.alert_scroll += 10;
                ScreenAction::None
            }
            KeyCode::PageDown => {
                self.ui.alert_scroll = self.ui.alert_scroll.saturating_sub(10);
                ScreenAction::None
            }
            _ => ScreenAction::None,
        }
    }
}

/// Waits for the next key press or redraw tick (forever when headless).
async fn next_screen_action(screen: Option<&mut Screen>, model: &mut DashModel) -> ScreenAction {
    use futures::StreamExt;
    let Some(screen) = screen else { return std::future::pending().await };
    tokio::select! {
        _ = screen.redraw.tick() => {
            screen.draw(model);
            ScreenAction::None
        }
        input = screen.keys.next() => match input {
            Some(Ok(crossterm::event::Event::Key(key))) => {
                let action = screen.on_key(key);
                screen.draw(model);
                action
            }
            Some(Ok(_)) => ScreenAction::None,
            // The terminal went away: nothing left to show, so stop.
            Some(Err(_)) | None => ScreenAction::Quit,
        },
    }
}
