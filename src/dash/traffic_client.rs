//! The session's own requests to the server it watches, for `capwatch demo`: scenes sent as
//! real caption requests (the drift traffic of [`crate::traffic`]) and freezing the server's
//! drift reference. Each answer comes back as an [`Event::Traffic`]; what it means is decided in
//! `update` and by the demo's director.

use std::path::PathBuf;

use tokio::sync::mpsc;

use super::event::{Event, TrafficEvent};
use crate::drift::scenes::Shift;
use crate::traffic::{self, TrafficPlan};

/// Scenes in flight at once: enough to fill a window quickly, few enough that the probes
/// beside them stay quick on two cores.
const CONCURRENCY: usize = 2;

/// Sends the session's own requests.
#[derive(Clone)]
pub struct TrafficClient {
    /// CA certificates to trust for an `https://` server with a private CA.
    ca_file: Option<PathBuf>,
}

impl TrafficClient {
    pub fn new(ca_file: Option<PathBuf>) -> Self {
        Self { ca_file }
    }

    /// Sends `requests` scenes of `shift` to `url` and reports what came of them.
    pub async fn send_and_report(
        self,
        url: String,
        shift: Shift,
        requests: usize,
        seed: u64,
        events_tx: mpsc::Sender<Event>,
    ) {
        let plan = TrafficPlan {
            url,
            shift,
            requests,
            concurrency: CONCURRENCY,
            seed,
            check_every: None,
            ca_file: self.ca_file,
        };
        let result = traffic::send(&plan, |_| {}).await.map_err(|err| err.to_string());
        // A closed channel means the session is over; nobody needs the answer.
        let _ = events_tx.send(Event::Traffic(TrafficEvent::Sent(result))).await;
    }

    /// Freezes the drift reference of the server at `url` and reports it.
    pub async fn freeze_and_report(self, url: String, events_tx: mpsc::Sender<Event>) {
        let result = traffic::freeze_reference(&url, self.ca_file.as_deref()).await.map_err(|err| err.to_string());
        // As above.
        let _ = events_tx.send(Event::Traffic(TrafficEvent::ReferenceFrozen(result))).await;
    }
}
