//! Alert notifications to where operators already look: Slack incoming webhooks, the
//! Telegram Bot API and a generic JSON webhook.
//!
//! The [`Notifier`] follows the alert state machine through each sink's [`policy`]: a sink
//! hears a rule at or above its minimum severity, at most once per cooldown, and hears it
//! resolved only if it was told it fired. Delivery never blocks monitoring: each sink has a bounded queue and its
//! own task (timeouts, retries with backoff); a full queue drops the notification, and
//! every outcome comes back as a [`DeliveryReport`] for the log, the metrics file and the UI.
//!
//! Layout: [`message`] (payloads), [`policy`] (who hears what), [`sink`] (secrets, one HTTP
//! attempt), [`delivery`] (retries, reports).

pub mod delivery;
pub mod message;
pub mod policy;
pub mod sink;

use std::time::Duration;

use tokio::sync::mpsc;
use tokio::task::JoinSet;

pub use delivery::{DeliveryOutcome, DeliveryReport, RetryPolicy, deliver};
pub use message::{AlertState, Notification};
pub use sink::{FailureKind, NotifyError, Sink};

use crate::alerts::AlertEvent;
use crate::clock::Clock;
use crate::config::{AlertsConfig, DeliveryConfig};
use policy::{SinkPolicy, Tell};

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
}

impl<R: From<DeliveryReport> + Send + 'static> Notifier<R> {
    /// Starts one delivery task per sink. Reports go to `reports_tx`.
    pub fn start(
        sinks: Vec<Sink>,
        config: &AlertsConfig,
        model: &str,
        reports_tx: mpsc::Sender<R>,
    ) -> Result<Self, NotifyError> {
        let client = http_client(&config.delivery)?;
        let policy = RetryPolicy::from(&config.delivery);
        let capacity = config.delivery.queue_capacity.get();
        let mut tasks = JoinSet::new();
        let sinks = sinks
            .into_iter()
            .map(|sink| {
                let (queue_tx, queue_rx) = mpsc::channel(capacity);
                tasks.spawn(deliver_queue(sink.clone(), client.clone(), policy, queue_rx, reports_tx.clone()));
                let policy = SinkPolicy::new(sink.min_severity, config.cooldown_s.0);
                SinkQueue { sink, queue_tx, capacity, policy }
            })
            .collect();
        Ok(Self {
            sinks,
            service: config.service_name.clone(),
            model: model.to_owned(),
            drill: config.drill,
            reports_tx,
            tasks,
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
            if let Err(mpsc::error::TrySendError::Full(notification)) = queue.queue_tx.try_send(notification) {
                let report = DeliveryReport::new(
                    &queue.sink,
                    &notification,
                    DeliveryOutcome::Dropped { queued: queue.capacity },
                );
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

async fn deliver_queue<R: From<DeliveryReport>>(
    sink: Sink,
    client: reqwest::Client,
    policy: RetryPolicy,
    mut queue_rx: mpsc::Receiver<Notification>,
    reports_tx: mpsc::Sender<R>,
) {
    while let Some(notification) = queue_rx.recv().await {
        let outcome = deliver(&sink, &client, &policy, &notification).await;
        if let DeliveryOutcome::Failed { error, attempts, .. } = &outcome {
            tracing::warn!(sink = %sink.name, rule = %notification.rule, attempts, error, "notification failed");
        }
        // After the monitor's loop has ended nobody reads reports; the outcome is logged above.
        let _ = reports_tx.send(DeliveryReport::new(&sink, &notification, outcome).into()).await;
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
