//! Alert notifications to where operators already look: Slack incoming webhooks, the
//! Telegram Bot API and a generic JSON webhook.
//!
//! The [`Notifier`] follows the alert state machine through each sink's [`policy`]: a sink
//! hears a rule at or above its minimum severity, at most once per cooldown, and hears it
//! resolved only if it was told it fired. Delivery never blocks monitoring: each sink has a bounded queue and its
//! own task (timeouts, retries with backoff); a full queue drops the notification, and
//! every outcome comes back as a [`DeliveryReport`] for the log, the metrics file and the UI.
//! With a [`spool`], every notification is on disk before its first attempt and what was
//! not delivered is sent again when the next notifier starts.
//!
//! Layout: [`message`] (payloads), [`policy`] (who hears what), [`sink`] (secrets, one HTTP
//! attempt), [`delivery`] (retries, reports), [`spool`] (the file that outlives the process).

pub mod delivery;
pub mod message;
pub mod policy;
pub mod sink;
pub mod spool;

use std::path::Path;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, SystemTime};

use tokio::sync::mpsc;
use tokio::task::JoinSet;

pub use delivery::{DeliveryOutcome, DeliveryReport, RetryPolicy, deliver};
pub use message::{AlertState, Notification};
pub use sink::{FailureKind, NotifyError, Sink};

use crate::alerts::AlertEvent;
use crate::clock::Clock;
use crate::config::{AlertsConfig, DeliveryConfig};
use policy::{SinkPolicy, Tell};
use spool::{Discard, Spool, SpoolLimits};

/// The spool, shared by the notifier (which queues) and the sink tasks (which record outcomes).
type SharedSpool = Arc<Mutex<Spool>>;

/// The HTTP client every sink shares: rustls trusting the system store, the webpki roots
/// and `delivery.ca_file`; honours `HTTPS_PROXY`/`NO_PROXY`.
pub fn http_client(delivery: &DeliveryConfig) -> Result<reqwest::Client, NotifyError> {
    let builder = crate::http_client::builder(delivery.ca_file.as_deref())
        .map_err(|reason| NotifyError::CaFile { path: delivery.ca_file.clone().unwrap_or_default(), reason })?;
    builder.build().map_err(|err| NotifyError::Client(err.to_string()))
}

/// One sink's queue and what it has been told.
struct SinkQueue {
    sink: Sink,
    queue_tx: mpsc::Sender<Notification>,
    capacity: usize,
    /// What it was told, and so what it hears next.
    policy: SinkPolicy,
}

/// Fans alerts out to the configured sinks; reports go out as `R` (a [`DeliveryReport`], or
/// the dashboard's event type, so reports join its one event channel).
pub struct Notifier<R = DeliveryReport> {
    sinks: Vec<SinkQueue>,
    service: String,
    model: String,
    /// Notifications are marked as a drill.
    drill: bool,
    reports_tx: mpsc::Sender<R>,
    tasks: JoinSet<()>,
    spool: Option<SharedSpool>,
}

impl<R: From<DeliveryReport> + Send + 'static> Notifier<R> {
    /// Starts one delivery task per sink. Reports go to `reports_tx`. With `spool_path`, the
    /// notifications left undelivered there go out first, marked as resent.
    pub fn start(
        sinks: Vec<Sink>,
        config: &AlertsConfig,
        model: &str,
        spool_path: Option<&Path>,
        reports_tx: mpsc::Sender<R>,
    ) -> Result<Self, NotifyError> {
        let client = http_client(&config.delivery)?;
        let policy = RetryPolicy::from(&config.delivery);
        let capacity = config.delivery.queue_capacity.get();
        let (spool, mut backlog) = match spool_path {
            Some(path) => {
                let (spool, backlog) = open_spool(path, config)?;
                (Some(spool), backlog)
            }
            None => (None, Vec::new()),
        };
        let mut tasks = JoinSet::new();
        let sinks: Vec<SinkQueue> = sinks
            .into_iter()
            .map(|sink| {
                let (queue_tx, queue_rx) = mpsc::channel(capacity);
                let (mine, others): (Vec<_>, Vec<_>) = backlog.drain(..).partition(|entry| entry.sink == sink.name);
                backlog = others;
                let resend = mine.into_iter().map(|entry| entry.notification.as_resent()).collect();
                let task = SinkTask {
                    sink: sink.clone(),
                    client: client.clone(),
                    policy,
                    spool: spool.clone(),
                    reports_tx: reports_tx.clone(),
                };
                tasks.spawn(task.run(resend, queue_rx));
                let policy = SinkPolicy::new(sink.min_severity, config.cooldown_s.0);
                SinkQueue { sink, queue_tx, capacity, policy }
            })
            .collect();
        if let Some(spool) = &spool {
            let mut spool = spool.lock().unwrap_or_else(PoisonError::into_inner);
            for entry in backlog {
                tracing::warn!(sink = %entry.sink, id = %entry.notification.id, rule = %entry.notification.rule, "undelivered notification not sent again: {}", Discard::SinkRemoved.describe());
                if let Err(err) = spool.discard(&entry, Discard::SinkRemoved) {
                    tracing::warn!(path = %spool.path().display(), "cannot write to the notification spool: {err}");
                }
            }
        }
        Ok(Self {
            sinks,
            service: config.service_name.clone(),
            model: model.to_owned(),
            drill: config.drill,
            reports_tx,
            tasks,
            spool,
        })
    }

    /// Names of the sinks, in config order.
    pub fn sink_names(&self) -> Vec<String> {
        self.sinks.iter().map(|queue| queue.sink.name.clone()).collect()
    }

    /// Queues `alert` for every sink that should hear it (see [`policy`]), stamped with
    /// `clock`. Never waits.
    pub fn notify(&mut self, alert: &AlertEvent, clock: &Clock) {
        let notification = Notification::from_alert(alert, &self.service, &self.model, clock.timestamp());
        let notification = if self.drill { notification.as_drill() } else { notification };
        for queue in &mut self.sinks {
            let notification = match queue.policy.decide(alert, clock.now) {
                None => continue,
                Some(Tell::Firing) => notification.clone(),
                Some(Tell::Resolved) => notification.clone().as_resolved(),
            };
            if let Some(spool) = &self.spool {
                write_ahead(spool, &queue.sink.name, &notification, clock.wall);
            }
            if let Err(mpsc::error::TrySendError::Full(notification)) = queue.queue_tx.try_send(notification) {
                let outcome = DeliveryOutcome::Dropped { queued: queue.capacity };
                if let Some(spool) = &self.spool {
                    record_outcome(spool, &queue.sink.name, &notification, &outcome);
                }
                let report = DeliveryReport::new(&queue.sink, &notification, outcome);
                if self.reports_tx.try_send(report.into()).is_err() {
                    tracing::warn!(sink = %queue.sink.name, rule = %notification.rule, "notification dropped: the sink's queue is full");
                }
            }
        }
    }

    /// Lets queued notifications go out for up to `grace`, then abandons the rest.
    pub async fn shutdown(self, grace: Duration) {
        let Self { sinks, mut tasks, .. } = self;
        // Closing the queues ends each task once it has sent what is queued.
        drop(sinks);
        let drained = tokio::time::timeout(grace, async { while tasks.join_next().await.is_some() {} }).await;
        if drained.is_err() {
            tracing::warn!("notifications still queued at exit were abandoned after {grace:?}");
            tasks.abort_all();
        }
    }
}

/// Opens the spool at `path` and returns what is to be sent again; logs what will not be.
fn open_spool(path: &Path, config: &AlertsConfig) -> Result<(SharedSpool, Vec<spool::Pending>), NotifyError> {
    let limits = SpoolLimits {
        max_pending: config.delivery.spool_max_pending.get(),
        max_age: config.delivery.spool_max_age_s.0,
    };
    let (spool, recovered) = Spool::open(path, limits, unix_ms(SystemTime::now()))
        .map_err(|source| NotifyError::Spool { path: path.to_owned(), source })?;
    if recovered.unreadable_lines > 0 {
        tracing::warn!(path = %path.display(), lines = recovered.unreadable_lines, "unreadable lines in the notification spool were skipped");
    }
    for (entry, reason) in &recovered.discarded {
        tracing::warn!(sink = %entry.sink, id = %entry.notification.id, rule = %entry.notification.rule, "undelivered notification not sent again: {}", reason.describe());
    }
    if !recovered.pending.is_empty() {
        tracing::info!(path = %path.display(), count = recovered.pending.len(), "sending undelivered notifications again");
    }
    Ok((Arc::new(Mutex::new(spool)), recovered.pending))
}

fn unix_ms(wall: SystemTime) -> u64 {
    wall.duration_since(SystemTime::UNIX_EPOCH).map_or(0, |since| u64::try_from(since.as_millis()).unwrap_or(u64::MAX))
}

/// Puts `notification` on disk for `sink` before it is queued. A spool that cannot be
/// written costs durability, not the notification: it is still sent.
fn write_ahead(spool: &SharedSpool, sink: &str, notification: &Notification, wall: SystemTime) {
    let mut spool = spool.lock().unwrap_or_else(PoisonError::into_inner);
    match spool.queue(sink, notification, unix_ms(wall)) {
        Ok(None) => {}
        Ok(Some(evicted)) => {
            tracing::warn!(sink = %evicted.sink, id = %evicted.notification.id, rule = %evicted.notification.rule, "undelivered notification dropped from the spool: {}", Discard::Evicted.describe());
        }
        Err(err) => tracing::warn!(path = %spool.path().display(), "cannot write to the notification spool: {err}"),
    }
}

fn record_outcome(spool: &SharedSpool, sink: &str, notification: &Notification, outcome: &DeliveryOutcome) {
    let mut spool = spool.lock().unwrap_or_else(PoisonError::into_inner);
    if let Err(err) = spool.record(&notification.id, sink, outcome) {
        tracing::warn!(path = %spool.path().display(), "cannot write to the notification spool: {err}");
    }
}

/// One sink's delivery task: what the spool left undelivered first, then its queue.
struct SinkTask<R> {
    sink: Sink,
    client: reqwest::Client,
    policy: RetryPolicy,
    spool: Option<SharedSpool>,
    reports_tx: mpsc::Sender<R>,
}

impl<R: From<DeliveryReport>> SinkTask<R> {
    async fn run(self, resend: Vec<Notification>, mut queue_rx: mpsc::Receiver<Notification>) {
        for notification in resend {
            self.send(notification).await;
        }
        while let Some(notification) = queue_rx.recv().await {
            self.send(notification).await;
        }
    }

    async fn send(&self, notification: Notification) {
        let outcome = deliver(&self.sink, &self.client, &self.policy, &notification).await;
        if let DeliveryOutcome::Failed { error, attempts, .. } = &outcome {
            tracing::warn!(sink = %self.sink.name, rule = %notification.rule, attempts, error, "notification failed");
        }
        if let Some(spool) = &self.spool {
            record_outcome(spool, &self.sink.name, &notification, &outcome);
        }
        // After the monitor's loop has ended nobody reads reports; the outcome is logged above.
        let _ = self.reports_tx.send(DeliveryReport::new(&self.sink, &notification, outcome).into()).await;
    }
}

/// Sends the test notification to every sink at once and returns each outcome, in order.
/// `alert-test`'s line for one sink and what it answered, e.g.
/// `  ✅ team (slack): delivered, HTTP 200 in 41 ms (1 attempt(s))`.
pub fn test_outcome_line(sink: &Sink, outcome: &DeliveryOutcome) -> String {
    let kind = sink.kind.name();
    match outcome {
        DeliveryOutcome::Delivered { attempts, status, elapsed } => format!(
            "  ✅ {} ({kind}): delivered, HTTP {status} in {:.0} ms ({attempts} attempt(s))",
            sink.name,
            elapsed.as_secs_f64() * 1000.0
        ),
        DeliveryOutcome::Failed { attempts, error, .. } => {
            format!("  ❌ {} ({kind}): failed after {attempts} attempt(s): {error}", sink.name)
        }
        DeliveryOutcome::Dropped { .. } => format!("  ❌ {} ({kind}): dropped", sink.name),
    }
}

pub async fn send_test(
    sinks: &[Sink],
    config: &AlertsConfig,
    model: &str,
) -> Result<Vec<DeliveryOutcome>, NotifyError> {
    let client = http_client(&config.delivery)?;
    let policy = RetryPolicy::from(&config.delivery);
    let notification = Notification::test(&config.service_name, model, crate::clock::Clock::read().timestamp());
    let sends = sinks.iter().map(|sink| deliver(sink, &client, &policy, &notification));
    Ok(futures::future::join_all(sends).await)
}
