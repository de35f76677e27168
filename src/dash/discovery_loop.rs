//! The discovery producer: looks the source up at once, then every `refresh`, sooner when
//! a file source changes (checked each second) or when the executor asks (a listed instance
//! started failing), and sends each answer as an [`Event::Discovery`]. It decides nothing.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{Notify, mpsc};
use tokio::time::Instant;

use super::event::{DiscoveryEvent, Event};
use crate::discovery::Discoverer;

/// How often a file source is checked for a change.
const FILE_CHECK: Duration = Duration::from_secs(1);
/// How long an early lookup waits after it was asked for, so that a removal that is under
/// way (a pod being deleted) has reached the source.
const SETTLE: Duration = Duration::from_secs(2);

/// Runs until the event channel closes.
pub async fn discovery_loop(
    mut discoverer: Discoverer,
    refresh: Duration,
    rediscover: Arc<Notify>,
    events_tx: mpsc::Sender<Event>,
) {
    loop {
        let looked_at = Instant::now();
        let event = match discoverer.discover().await {
            Ok(targets) => DiscoveryEvent::Listed { targets, looked_at },
            Err(err) => DiscoveryEvent::Failed { error: err.to_string() },
        };
        if events_tx.send(Event::Discovery(event)).await.is_err() {
            return;
        }
        let next = tokio::time::sleep(refresh);
        tokio::pin!(next);
        loop {
            tokio::select! {
                () = &mut next => break,
                () = rediscover.notified() => {
                    let soon = Instant::now() + SETTLE;
                    if soon < next.deadline() {
                        next.as_mut().reset(soon);
                    }
                }
                () = tokio::time::sleep(FILE_CHECK) => {
                    if discoverer.file_changed() {
                        break;
                    }
                }
            }
        }
    }
}
