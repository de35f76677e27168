//! Getting one notification through: attempts with a time limit each, retries with
//! doubling backoff (or the wait the sink asked for), and a report of how it went.
//! Uses tokio's clock, so the tests run on paused time.

use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio::time::Instant;

use super::message::{AlertState, Notification};
use super::sink::{AttemptError, FailureKind, Sink};
use crate::alerts::Severity;
use crate::config::{DeliveryConfig, SinkKind};

/// How hard to push one notification.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RetryPolicy {
    pub timeout: Duration,
    pub max_attempts: u32,
    pub initial_backoff: Duration,
    pub max_backoff: Duration,
}

impl From<&DeliveryConfig> for RetryPolicy {
    fn from(config: &DeliveryConfig) -> Self {
        Self {
            timeout: config.timeout_s.0,
            max_attempts: u32::try_from(config.max_attempts.get()).unwrap_or(u32::MAX),
            initial_backoff: config.initial_backoff_s.0,
            max_backoff: config.max_backoff_s.0,
        }
    }
}

/// What became of one notification at one sink.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "outcome", rename_all = "lowercase")]
pub enum DeliveryOutcome {
    Delivered {
        attempts: u32,
        status: u16,
        #[serde(rename = "elapsed_ms", serialize_with = "as_millis", deserialize_with = "from_millis")]
        elapsed: Duration,
    },
    /// Every attempt failed, or the sink rejected it outright.
    Failed { attempts: u32, error: String, failure: FailureKind },
    /// The sink's queue was full (it is down or slow and notifications piled up).
    Dropped { queued: usize },
}

fn as_millis<S: serde::Serializer>(elapsed: &Duration, serializer: S) -> Result<S::Ok, S::Error> {
    serializer.serialize_f64(elapsed.as_secs_f64() * 1000.0)
}

fn from_millis<'de, D: serde::Deserializer<'de>>(deserializer: D) -> Result<Duration, D::Error> {
    let millis = f64::deserialize(deserializer)?;
    Ok(Duration::from_secs_f64(millis.max(0.0) / 1000.0))
}

impl DeliveryOutcome {
    pub fn label(&self) -> &'static str {
        match self {
            Self::Delivered { .. } => "delivered",
            Self::Failed { .. } => "failed",
            Self::Dropped { .. } => "dropped",
        }
    }
}

/// One notification's fate at one sink, for the event loop (log, metrics file, UI).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DeliveryReport {
    /// The notification's id (the same in its payload and in the spool).
    pub id: String,
    /// Sent again from the spool after a restart.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub resent: bool,
    pub sink: String,
    pub kind: SinkKind,
    pub rule: String,
    /// The watched instance the alert was about, when several are watched (a record's stamp
    /// names it, so it is not written twice).
    #[serde(skip)]
    pub instance: Option<String>,
    pub severity: Severity,
    pub state: AlertState,
    #[serde(flatten)]
    pub outcome: DeliveryOutcome,
}

impl DeliveryReport {
    pub fn new(sink: &Sink, notification: &Notification, outcome: DeliveryOutcome) -> Self {
        Self {
            id: notification.id.clone(),
            resent: notification.resent,
            sink: sink.name.clone(),
            kind: sink.kind,
            rule: notification.rule.clone(),
            instance: notification.instance.clone(),
            severity: notification.severity,
            state: notification.state,
            outcome,
        }
    }
}

/// Tries to deliver `notification` to `sink` under `policy`.
pub async fn deliver(
    sink: &Sink,
    client: &reqwest::Client,
    policy: &RetryPolicy,
    notification: &Notification,
) -> DeliveryOutcome {
    let started = Instant::now();
    let mut backoff = policy.initial_backoff;
    let mut attempts = 0;
    loop {
        attempts += 1;
        let error = match sink.attempt(client, notification, policy.timeout).await {
            Ok(status) => return DeliveryOutcome::Delivered { attempts, status, elapsed: started.elapsed() },
            Err(error) => error,
        };
        let retry_after = match &error {
            AttemptError::Retryable { retry_after, .. } if attempts < policy.max_attempts => *retry_after,
            _ => {
                return DeliveryOutcome::Failed { attempts, error: error.message().to_owned(), failure: error.kind() };
            }
        };
        tracing::debug!(sink = %sink.name, attempts, error = error.message(), "notification attempt failed; retrying");
        let wait = retry_after.unwrap_or(backoff).min(policy.max_backoff);
        tokio::time::sleep(wait).await;
        backoff = (backoff * 2).min(policy.max_backoff);
    }
}
