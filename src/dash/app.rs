//! The monitoring session: checks what can fail before anything starts, starts the event
//! producers (supervisor or external URL, probe loops, ticks, keys, signals, deadline,
//! notification reports), then runs the one event loop — read the clock, `update`, carry
//! out the effects, redraw — until an effect says quit.
//!
//! Three steps: [`Session::start`] (checks, then producers), [`Session::run`] (the loop) and
//! [`Session::finish`]. Every producer sends on one bounded channel of [`Event`]s. On the
//! way out probing stops, the child gets SIGTERM (SIGKILL after the grace period), the
//! terminal is restored, queued notifications get their delivery timeout, each instance
//! writes its end record, the metrics file is synced and the session summary — the fold
//! of the records written — is written.

use std::future::Future;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::mpsc;
use tokio::task::{JoinHandle, JoinSet};

use super::chaos_client::{self, ChaosClient};
use super::console::{Console, Mode};
use super::contract::{ContractError, ProbeContract};
use super::discovery_loop::discovery_loop;
use super::event::{Event, ShutdownReason};
use super::executor::{Executor, Flow};
use super::fleet::{Companion, Fleet};
use super::metrics::DashMetrics;
use super::probe_loops::ProbeStarter;
use super::prober::{ProbeImage, Prober};
use super::records_file::RecordsFile;
use super::state::{DashState, Stop};
use super::summary::{SessionSummary, SummaryFold};
use super::supervisor::{self, RestartPolicy, ServerEvent, SupervisorCommand};
use super::target::{Target, Watched};
use super::traffic_client::TrafficClient;
use super::tui::{self, TerminalGuard};
use crate::clock::Clock;
use crate::config::{Config, ServicePreset};
use crate::discovery::Discoverer;
use crate::notify::{Notifier, NotifyError, Sink};

/// Events waiting for the loop before producers wait.
const EVENT_QUEUE: usize = 256;
/// How often the screen redraws (headless: how often old samples leave the window).
const TICK_TUI: Duration = Duration::from_millis(100);
const TICK_HEADLESS: Duration = Duration::from_secs(1);

/// Errors that stop the monitor before it runs.
#[derive(Debug, thiserror::Error)]
pub enum MonitorError {
    #[error("{0}")]
    TestImages(String),
    #[error("cannot open {path}: {source}")]
    MetricsFile {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("the config's quality section lists no test images")]
    NoTestImages,
    #[error("no server to watch")]
    NothingToWatch,
    #[error("monitoring.discovery: {0}")]
    Discovery(String),
    #[error("monitoring.ca_file: {0}")]
    CaFile(String),
    #[error(transparent)]
    Notify(#[from] NotifyError),
    #[error(transparent)]
    Contract(#[from] ContractError),
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
            Self::Contract(_) | Self::CaFile(_) | Self::Discovery(_) => crate::exit_code::CONFIG,
            _ => 1,
        }
    }
}

/// When to stop on its own.
#[derive(Debug, Clone, Copy, Default)]
pub struct StopAfter {
    pub cycles: Option<u64>,
    pub duration: Option<Duration>,
}

/// How the session ended.
#[derive(Debug)]
pub struct SessionEnd {
    /// `None` only when nothing was recorded at all.
    pub summary: Option<SessionSummary>,
    pub summary_paths: Option<(PathBuf, PathBuf)>,
    /// The session as an HTML page with charts, written beside the summary.
    pub report_path: Option<PathBuf>,
    /// The service did not answer in the expected shape (the session stopped at once).
    pub wrong_shape: Option<String>,
}

impl SessionEnd {
    /// Exit code for CI and cron: 0 no alert, 1 only warnings, 2 a critical one (or a
    /// service that does not answer in the expected shape).
    pub fn exit_code(&self) -> u8 {
        if self.wrong_shape.is_some() {
            return 2;
        }
        match &self.summary {
            Some(summary) if summary.alerts_critical > 0 => 2,
            Some(summary) if summary.alerts_warning > 0 => 1,
            _ => 0,
        }
    }
}

/// Runs the monitor until `stop_after`, `shutdown` (which resolves to the signal's name),
/// (TUI) the `q` key, or an effect of the `companion` (a drill's conductor, the demo's director;
/// `()` for none), which watches every event and may add effects and a banner of its own.
pub async fn run_with(
    config: Config,
    target: Target,
    stop_after: StopAfter,
    shutdown: impl Future<Output = &'static str> + Send + 'static,
    mode: Mode,
    companion: &mut dyn Companion,
) -> Result<SessionEnd, MonitorError> {
    let mut session = Session::start(config, target, stop_after, shutdown, mode).await?;
    session.run(companion).await;
    Ok(session.finish().await)
}

/// A session under way: the fleet's states, what carries out their effects, the one event
/// channel and everything that sends on it.
struct Session {
    config: Config,
    fleet: Fleet,
    executor: Executor,
    events_rx: mpsc::Receiver<Event>,
    /// The producers (probe loops, ticks, keys, signals, deadline, `/metrics`).
    tasks: JoinSet<()>,
    /// The supervisor and its command channel, when capwatch launched the server.
    supervisor: Option<(JoinHandle<()>, mpsc::Sender<SupervisorCommand>)>,
    screen: Option<TerminalGuard>,
    /// When the session started (RFC 3339): its records are those stamped since.
    started_ts: String,
}

impl Session {
    /// Checks everything that can be wrong in the config or environment, then starts the
    /// producers.
    async fn start(
        config: Config,
        target: Target,
        stop_after: StopAfter,
        shutdown: impl Future<Output = &'static str> + Send + 'static,
        mode: Mode,
    ) -> Result<Self, MonitorError> {
        let images = ProbeImage::load_all(&config.quality.test_images, std::path::Path::new("."))
            .map_err(MonitorError::TestImages)?;
        if images.is_empty() {
            return Err(MonitorError::NoTestImages);
        }
        let sinks = Sink::resolve_all(&config.alerts.sinks.0, &|var| std::env::var(var).ok())?;
        // capwatch's own child always speaks capwatch; another service, its configured contract.
        let contract = match &target {
            Target::Child(_) => {
                // With API keys, the server capwatch launched is probed with the first one.
                let key = config
                    .service
                    .auth
                    .as_ref()
                    .and_then(|auth| auth.read_keys(&|var| std::env::var(var).ok()).ok()?.into_iter().next());
                ProbeContract::preset(ServicePreset::Capwatch).with_api_key(key)
            }
            Target::Urls(watched) if watched.is_empty() && config.monitoring.discovery.source.is_none() => {
                return Err(MonitorError::NothingToWatch);
            }
            Target::Urls(_) => ProbeContract::resolve(&config.monitoring.service, &|var| std::env::var(var).ok())?,
        };
        // The dashboard trusts the certificate of the child it launched without a CA file.
        let ca_file = match (&target, &config.monitoring.ca_file, &config.service.tls) {
            (_, Some(ca_file), _) => Some(ca_file.clone()),
            (Target::Child(_), None, Some(tls)) => Some(tls.cert.clone()),
            _ => None,
        };
        // Checked here, so that a bad file stops the monitor before anything starts.
        let _checked = crate::http_client::builder(ca_file.as_deref()).map_err(MonitorError::CaFile)?;
        let metrics_listener = match &config.prometheus.listen {
            Some(address) => Some(
                tokio::net::TcpListener::bind(address)
                    .await
                    .map_err(|source| MonitorError::MetricsListen { address: address.clone(), source })?,
            ),
            None => None,
        };
        let metrics_path = config.logs.dir.join(&config.logs.metrics_file);
        let records = RecordsFile::open(&metrics_path)
            .map_err(|source| MonitorError::MetricsFile { path: metrics_path.clone(), source })?;
        let (events_tx, events_rx) = mpsc::channel::<Event>(EVENT_QUEUE);
        // No sinks, no spool: what an earlier config left undelivered waits for its sinks.
        let spool_path = config.logs.dir.join(&config.alerts.delivery.spool_file);
        let spool_path = (!sinks.is_empty()).then_some(spool_path.as_path());
        let notifier =
            Notifier::start(sinks, &config.alerts, &config.service.model_name(), spool_path, events_tx.clone())?;

        let started = Clock::read();
        let supervised = matches!(target, Target::Child(_));
        let stop = Stop { cycles: stop_after.cycles, interactive: mode == Mode::Tui };
        let watched = match &target {
            Target::Child(_) => vec![Watched { name: "local".to_owned(), url: String::new() }],
            Target::Urls(watched) => watched.clone(),
        };
        // Instances that come and go: only for servers capwatch did not start.
        let discoverer = match (&target, &config.monitoring.discovery.source) {
            (Target::Urls(_), Some(_)) => Some(
                Discoverer::new(&config.monitoring.discovery, ca_file.as_deref())
                    .map_err(|err| MonitorError::Discovery(err.to_string()))?,
            ),
            _ => None,
        };
        let several = watched.len() > 1 || discoverer.is_some();
        let new_state = {
            let config = config.clone();
            let shape = contract.shape.clone();
            // Faults go only to capwatch servers (another service has no /chaos to poll), and
            // only with one instance (the fault menu acts on the one server shown).
            let chaos = (supervised || contract.speaks_capwatch) && !several;
            move |name: &str| {
                let mut state = DashState::new(&config, supervised, stop, started.now);
                state.settings.service_shape.clone_from(&shape);
                state.settings.chaos &= chaos;
                state.settings.instance = several.then(|| name.to_owned());
                state
            }
        };
        let states = watched.iter().map(|w| new_state(&w.name)).collect();
        let mut fleet = Fleet::of(states, watched.iter().map(|w| w.url.clone()).collect());
        if let Some(discoverer) = &discoverer {
            fleet = fleet.discover(discoverer.source().to_string(), Box::new(new_state), started.now);
        }
        let names: Vec<String> = watched.iter().map(|w| w.name.clone()).collect();
        let metrics = Arc::new(DashMetrics::new(&config, &notifier.sink_names(), &names));
        let (supervisor_tx, supervisor_rx) = mpsc::channel::<SupervisorCommand>(8);
        let prober = Prober::new(config.monitoring.probe_timeout_s.0, contract.clone(), ca_file.as_deref())
            .map_err(MonitorError::CaFile)?;
        let starter = ProbeStarter {
            prober,
            health_interval: config.monitoring.health_interval_s.0,
            inference_interval: config.monitoring.inference_interval_s.0,
            tests_per_cycle: config.monitoring.tests_per_cycle.get(),
            images,
            drift: contract.speaks_capwatch,
            events_tx: events_tx.clone(),
            tagged: several,
        };
        let rediscover = discoverer.as_ref().map(|_| Arc::new(tokio::sync::Notify::new()));
        let executor = Executor {
            records,
            summary: SummaryFold::default(),
            metrics: Arc::clone(&metrics),
            console: Console { mode },
            probes: (0..watched.len()).map(|instance| Some(starter.start(instance))).collect(),
            starter,
            names,
            name_lines: several,
            rediscover: rediscover.clone(),
            notifier: Some(notifier),
            supervisor_tx: supervised.then(|| supervisor_tx.clone()),
            chaos: ChaosClient::new(&contract.headers, ca_file.as_deref()),
            traffic: TrafficClient::new(ca_file.clone()),
            events_tx: events_tx.clone(),
        };
        let mut session = Self {
            config,
            fleet,
            executor,
            events_rx,
            tasks: JoinSet::new(),
            supervisor: None,
            screen: None,
            started_ts: started.timestamp(),
        };

        // The producers.
        if let Some(listener) = metrics_listener {
            let address = listener.local_addr().map_or_else(|_| "?".to_owned(), |a| a.to_string());
            session.apply(Event::Note { message: format!("📈 Dashboard metrics at http://{address}/metrics") });
            session.tasks.spawn(async move {
                if let Err(err) = super::metrics::serve(metrics, listener).await {
                    tracing::error!(error = %err, "the dashboard's /metrics endpoint stopped");
                }
            });
        }
        for name in session.executor.notifier.as_ref().map(Notifier::sink_names).unwrap_or_default() {
            session.apply(Event::Note { message: format!("📣 Alert notifications go to {name}") });
        }
        if watched.len() > 1 {
            let list: Vec<String> = watched.iter().map(|w| format!("{} ({})", w.name, w.url)).collect();
            session.apply(Event::Note {
                message: format!("🛰 Watching {} instances: {}", watched.len(), list.join(", ")),
            });
        }
        if let (Some(discoverer), Some(rediscover)) = (discoverer, rediscover) {
            let refresh = session.config.monitoring.discovery.refresh_s.0;
            session.apply(Event::Note {
                message: format!(
                    "🛰 Discovering instances from {} (every {})",
                    discoverer.source(),
                    humantime::format_duration(refresh)
                ),
            });
            session.tasks.spawn(discovery_loop(discoverer, refresh, rediscover, events_tx.clone()));
        }
        match target {
            Target::Child(command) => {
                let policy = RestartPolicy::from_config(&session.config);
                let task = tokio::spawn(supervisor::run(command, policy, events_tx.clone(), supervisor_rx));
                session.supervisor = Some((task, supervisor_tx));
            }
            Target::Urls(_) => {
                drop(supervisor_rx);
                for (instance, w) in watched.iter().enumerate() {
                    session.apply(Event::Of { instance, event: Box::new(Event::Attach { url: w.url.clone() }) });
                }
            }
        }
        let tasks = &mut session.tasks;
        if session.fleet.first().is_some_and(|first| first.settings.chaos)
            && let Some(Some(first)) = session.executor.probes.first()
        {
            let target_rx = first.handles.watch_target();
            tasks.spawn(chaos_client::poll_loop(session.executor.chaos.clone(), target_rx, events_tx.clone()));
        }
        tasks.spawn(ticks(if mode == Mode::Tui { TICK_TUI } else { TICK_HEADLESS }, events_tx.clone()));
        let shutdown_tx = events_tx.clone();
        tasks.spawn(async move {
            let signal = shutdown.await;
            // A closed channel means the loop is over already.
            let _ = shutdown_tx.send(Event::Shutdown(ShutdownReason::Signal(signal))).await;
        });
        if let Some(duration) = stop_after.duration {
            let deadline_tx = events_tx.clone();
            tasks.spawn(async move {
                tokio::time::sleep(duration).await;
                // Same as above.
                let _ = deadline_tx.send(Event::Shutdown(ShutdownReason::Deadline)).await;
            });
        }
        if mode == Mode::Tui {
            tasks.spawn(tui::forward_input(events_tx.clone()));
            session.screen = Some(TerminalGuard::enter());
        }
        Ok(session)
    }

    /// Reads the clock, lets the fleet update, carries out its effects.
    fn apply(&mut self, event: Event) -> (Flow, Clock) {
        let clock = Clock::read();
        let effects = self.fleet.update(event, clock);
        (self.executor.execute(effects, &clock), clock)
    }

    /// The event loop: until an effect (the fleet's or the companion's) says quit.
    async fn run(&mut self, companion: &mut dyn Companion) {
        while let Some(event) = self.events_rx.recv().await {
            let redraw = matches!(event, Event::Tick | Event::Input(_));
            let clock = Clock::read();
            let mut effects = self.fleet.update(event.clone(), clock);
            let own = companion.observe(&event, &effects, &self.fleet, clock);
            effects.extend(own);
            let flow = self.executor.execute(effects, &clock);
            if redraw && let Some(screen) = &mut self.screen {
                screen.draw(&self.fleet, companion.banner().as_ref(), clock);
            }
            if flow == Flow::Quit {
                break;
            }
        }
    }

    /// Quit: stop probing, stop the child gracefully, restore the terminal, let queued
    /// notifications go out, then write the end records, sync the metrics file and write
    /// the summary. Every event that still arrives goes to `update`, which decides (the
    /// states are draining) what still counts.
    async fn finish(mut self) -> SessionEnd {
        // However the loop ended (a key, a limit, a companion), every instance is quitting now.
        self.apply(Event::Input(super::event::Input::Quit));
        self.tasks.abort_all();
        while self.tasks.join_next().await.is_some() {}
        // Dropping each instance's loops stops them.
        self.executor.probes.clear();
        self.executor.supervisor_tx = None;
        if let Some((task, supervisor_tx)) = self.supervisor.take() {
            // A closed channel means the supervisor already ended.
            let _ = supervisor_tx.send(SupervisorCommand::Stop).await;
            let limit = self.config.restart.grace_s.0 + Duration::from_secs(5);
            let drain = async {
                while let Some(event) = self.events_rx.recv().await {
                    let stopped = matches!(event, Event::Server(ServerEvent::Stopped));
                    self.apply(event);
                    if stopped {
                        break;
                    }
                }
            };
            if tokio::time::timeout(limit, drain).await.is_err() {
                tracing::warn!("the supervisor did not report a stop in time; the child is killed on drop");
            }
            task.abort();
            // Aborted or finished: either way it is over.
            let _ = task.await;
        }
        // The terminal is restored before anything is printed or waited for.
        drop(self.screen.take());
        // Notifications still queued (say, the critical alert that made someone quit) get the
        // delivery timeout to go out; their reports still reach the metrics file.
        if let Some(notifier) = self.executor.notifier.take() {
            let sent = notifier.shutdown(self.config.alerts.delivery.timeout_s.0);
            tokio::pin!(sent);
            loop {
                tokio::select! {
                    () = &mut sent => break,
                    Some(event) = self.events_rx.recv() => { self.apply(event); }
                }
            }
        }
        while let Ok(event) = self.events_rx.try_recv() {
            self.apply(event);
        }
        self.apply(Event::Ended);

        if let Err(err) = self.executor.records.sync() {
            tracing::error!(error = %err, "cannot sync the metrics file");
        }
        let wrong_shape = self.fleet.instances().iter().find_map(|state| state.wrong_shape.clone());
        let summary = self.executor.summary.summary();
        let summary_paths = summary.as_ref().and_then(|summary| match summary.write(&self.config.logs.dir) {
            Ok(paths) => Some(paths),
            Err(err) => {
                tracing::error!(error = %err, "cannot write the session summary");
                None
            }
        });
        let report_path = summary_paths.as_ref().and_then(|(json, _)| self.write_report(&json.with_extension("html")));
        SessionEnd { summary, summary_paths, report_path, wrong_shape }
    }
}

impl Session {
    /// Writes this session's records (those stamped since it started) as the HTML report at
    /// `path`; a failure costs the page, never the session (an error in the log).
    fn write_report(&self, path: &std::path::Path) -> Option<PathBuf> {
        let written = || -> Result<Option<()>, String> {
            let (records, _) = RecordsFile::read(self.executor.records.path()).map_err(|err| err.to_string())?;
            let ours: Vec<_> = records.into_iter().filter(|record| record.stamp().ts >= self.started_ts).collect();
            let thresholds = super::report_html::Thresholds::of(&self.config);
            let Some(page) = super::report_html::page(&ours, &thresholds).map_err(|err| err.to_string())? else {
                return Ok(None);
            };
            std::fs::write(path, page).map_err(|err| err.to_string())?;
            Ok(Some(()))
        };
        match written() {
            Ok(Some(())) => Some(path.to_owned()),
            Ok(None) => None,
            Err(err) => {
                tracing::error!(error = %err, path = %path.display(), "cannot write the HTML report");
                None
            }
        }
    }
}

/// A tick every `interval`; skipped while the loop is behind.
async fn ticks(interval: Duration, events_tx: mpsc::Sender<Event>) {
    let mut ticker = tokio::time::interval(interval);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    loop {
        ticker.tick().await;
        match events_tx.try_send(Event::Tick) {
            // A full queue: the loop is busy and the next tick will do.
            Ok(()) | Err(mpsc::error::TrySendError::Full(_)) => {}
            Err(mpsc::error::TrySendError::Closed(_)) => return,
        }
    }
}
