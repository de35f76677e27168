//! The dashboard's side of `capwatch serve --chaos`: starts, lists and clears faults over
//! HTTP (`POST`/`GET`/`DELETE /chaos`) and polls the faults in force, reporting each answer
//! as an [`Event::Faults`]. It only talks and reports; what a fault means for the session is
//! decided in `update`.

use std::time::Duration;

use tokio::sync::{mpsc, watch};
use tokio::time::MissedTickBehavior;

use super::event::{Event, FaultsEvent};
use crate::protocol::faults::{ActiveFault, FaultSpec};

/// How often the faults in force are polled.
pub const POLL_INTERVAL: Duration = Duration::from_secs(1);
/// Per request (the `/chaos` routes answer at once, even while a `hang` fault is in force).
const TIMEOUT: Duration = Duration::from_secs(3);

/// HTTP calls to a chaos-enabled server.
#[derive(Clone)]
pub struct ChaosClient {
    http: reqwest::Client,
}

impl ChaosClient {
    /// A client that sends `headers` (the probe contract's: an API key) with every request and
    /// trusts `ca_file` (checked by the caller) for an `https://` server.
    pub fn new(headers: &[(String, String)], ca_file: Option<&std::path::Path>) -> Self {
        let mut default_headers = reqwest::header::HeaderMap::new();
        for (name, value) in headers {
            let name = reqwest::header::HeaderName::from_bytes(name.as_bytes());
            let value = reqwest::header::HeaderValue::from_str(value);
            if let (Ok(name), Ok(mut value)) = (name, value) {
                value.set_sensitive(true);
                default_headers.insert(name, value);
            }
        }
        // The CA file was checked before; building fails only if the TLS backend cannot start,
        // and the default client then reports the same error on each request.
        let http = crate::http_client::builder(ca_file)
            .unwrap_or_default()
            .timeout(TIMEOUT)
            .no_proxy()
            .default_headers(default_headers)
            .build()
            .unwrap_or_default();
        Self { http }
    }

    /// `POST /chaos`: starts `spec` on the server at `url`.
    pub async fn inject(&self, url: &str, spec: &FaultSpec) -> Result<ActiveFault, String> {
        let answer = self.http.post(format!("{url}/chaos")).json(spec).send().await;
        read(answer).await
    }

    /// `GET /chaos`: the faults in force.
    pub async fn list(&self, url: &str) -> Result<Vec<ActiveFault>, String> {
        let answer = self.http.get(format!("{url}/chaos")).send().await;
        #[derive(serde::Deserialize)]
        struct Listing {
            faults: Vec<ActiveFault>,
        }
        read::<Listing>(answer).await.map(|listing| listing.faults)
    }

    /// `DELETE /chaos`: ends every fault; returns them as they were when cleared.
    pub async fn clear(&self, url: &str) -> Result<Vec<ActiveFault>, String> {
        let answer = self.http.delete(format!("{url}/chaos")).send().await;
        #[derive(serde::Deserialize)]
        struct Cleared {
            faults: Vec<ActiveFault>,
        }
        read::<Cleared>(answer).await.map(|cleared| cleared.faults)
    }

    /// Starts `spec` and reports the answer as an event.
    pub async fn inject_and_report(self, url: String, spec: FaultSpec, events_tx: mpsc::Sender<Event>) {
        let result = self.inject(&url, &spec).await;
        // A closed channel means the session is over; nobody needs the answer.
        let _ = events_tx.send(Event::Faults(FaultsEvent::Injected { kind: spec.kind, result })).await;
    }

    /// Clears every fault and reports the answer as an event.
    pub async fn clear_and_report(self, url: String, events_tx: mpsc::Sender<Event>) {
        let result = self.clear(&url).await;
        // As above.
        let _ = events_tx.send(Event::Faults(FaultsEvent::Cleared(result))).await;
    }
}

/// The answer's JSON, or why there is none (a 404 says the server was not started with `--chaos`).
async fn read<T: serde::de::DeserializeOwned>(answer: reqwest::Result<reqwest::Response>) -> Result<T, String> {
    let response = answer.map_err(|err| format!("cannot reach /chaos: {err}"))?;
    let status = response.status();
    if status == reqwest::StatusCode::NOT_FOUND {
        return Err("the server does not accept faults (start it with --chaos; /chaos answers loopback only)".into());
    }
    if !status.is_success() {
        let body = response.text().await.unwrap_or_default();
        let why = serde_json::from_str::<serde_json::Value>(&body)
            .ok()
            .and_then(|v| v["error"].as_str().map(str::to_owned))
            .unwrap_or(body);
        return Err(format!("/chaos answered {}: {why}", status.as_u16()));
    }
    response.json::<T>().await.map_err(|err| format!("/chaos answered something unreadable: {err}"))
}

/// Polls `GET /chaos` every [`POLL_INTERVAL`] while a server URL is known.
pub async fn poll_loop(
    client: ChaosClient,
    mut url_rx: watch::Receiver<Option<String>>,
    events_tx: mpsc::Sender<Event>,
) {
    let mut ticker = tokio::time::interval(POLL_INTERVAL);
    ticker.set_missed_tick_behavior(MissedTickBehavior::Delay);
    loop {
        ticker.tick().await;
        let Ok(url) = url_rx.wait_for(Option::is_some).await.map(|url| url.clone()) else { return };
        let Some(url) = url else { continue };
        let requested_at = tokio::time::Instant::now();
        let result = client.list(&url).await;
        if events_tx.send(Event::Faults(FaultsEvent::Listed { requested_at, result })).await.is_err() {
            return;
        }
    }
}
