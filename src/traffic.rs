//! The drift traffic generator (`capwatch drift traffic`): sends a bounded number of scenes
//! ([`crate::drift::scenes`]) to a capwatch server on this machine, a few at a time, and every
//! `check_every` requests reads `GET /drift` to see when the live window drifts; and freezes
//! a server's drift reference (`capwatch demo`). Loopback only: it refuses any host that is
//! not this machine. Knows nothing about terminals.

use std::net::IpAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::drift::scenes::{Shift, encoded};
use crate::protocol::drift::{DriftStatus, ReferenceInfo};

/// Most requests one run may send.
pub const MAX_REQUESTS: usize = 100_000;
/// Most requests in flight at once.
pub const MAX_CONCURRENCY: usize = 64;
const REQUEST_TIMEOUT: Duration = Duration::from_secs(60);

/// What to send.
#[derive(Debug, Clone)]
pub struct TrafficPlan {
    /// The server's base URL (loopback).
    pub url: String,
    pub shift: Shift,
    pub requests: usize,
    pub concurrency: usize,
    /// Scenes are a function of (seed, request index): the same plan sends the same pictures.
    pub seed: u64,
    /// Read `GET /drift` after every this many requests (and at the end); None: never.
    pub check_every: Option<usize>,
    /// CA certificates (PEM) to trust for an `https://` server with a private CA.
    pub ca_file: Option<std::path::PathBuf>,
}

/// One reading of `GET /drift` during the run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Check {
    /// Requests answered before it.
    pub after: usize,
    /// None when the server has no verdict yet: no reference, or too few live requests.
    pub detected: Option<bool>,
    /// Names of the features that drifted.
    pub drifted: Vec<String>,
    pub features: usize,
}

/// `    120 sent: DRIFT (5 of 14 features: brightness, …)`: the line for one check.
impl std::fmt::Display for Check {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.detected {
            None => write!(f, "{:>7} sent: no verdict yet (no reference, or too few requests to judge)", self.after),
            Some(detected) => write!(
                f,
                "{:>7} sent: {} ({} of {} features{}{})",
                self.after,
                if detected { "DRIFT" } else { "no drift" },
                self.drifted.len(),
                self.features,
                if self.drifted.is_empty() { "" } else { ": " },
                self.drifted.join(", ")
            ),
        }
    }
}

/// What the run did.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TrafficOutcome {
    pub shift: Shift,
    pub sent: usize,
    pub answered: usize,
    pub failed: usize,
    pub checks: Vec<Check>,
    /// Requests sent when a check first found drift.
    pub first_detected_after: Option<usize>,
}

/// The closing line: what was sent and answered, and when drift was first detected.
impl std::fmt::Display for TrafficOutcome {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} {} scenes sent: {} answered, {} failed; ",
            self.sent,
            self.shift.name(),
            self.answered,
            self.failed
        )?;
        match self.first_detected_after {
            None => f.write_str("no check found drift"),
            Some(after) => write!(f, "drift first detected after {after} requests"),
        }
    }
}

/// Why the traffic could not be sent.
#[derive(Debug, thiserror::Error)]
pub enum TrafficError {
    #[error("`{0}` is not a URL: {1}")]
    BadUrl(String, String),
    #[error("the traffic generator only sends to this machine; `{0}` is not a loopback address")]
    NotLoopback(String),
    #[error("--requests must be 1..={MAX_REQUESTS}, not {0}")]
    TooMany(usize),
    #[error("--concurrency must be 1..={MAX_CONCURRENCY}, not {0}")]
    Concurrency(usize),
    #[error("cannot draw a scene: {0}")]
    Image(#[from] image::ImageError),
    #[error("{0}")]
    Client(String),
    #[error("cannot read {url}/drift: {reason}")]
    Drift { url: String, reason: String },
    #[error("cannot freeze the drift reference of {url}: {reason}")]
    Baseline { url: String, reason: String },
}

impl TrafficError {
    /// Whether the plan itself was wrong (bad usage) rather than the run.
    pub fn is_usage(&self) -> bool {
        matches!(
            self,
            Self::BadUrl(..) | Self::NotLoopback(_) | Self::TooMany(_) | Self::Concurrency(_) | Self::Client(_)
        )
    }
}

/// The URL without a trailing slash, if its host is this machine.
pub fn loopback_base(url: &str) -> Result<String, TrafficError> {
    let parsed = reqwest::Url::parse(url).map_err(|e| TrafficError::BadUrl(url.to_owned(), e.to_string()))?;
    let host = parsed.host_str().unwrap_or_default();
    let loopback = match host.trim_start_matches('[').trim_end_matches(']').parse::<IpAddr>() {
        Ok(ip) => ip.is_loopback(),
        Err(_) => host.eq_ignore_ascii_case("localhost"),
    };
    if !loopback || !matches!(parsed.scheme(), "http" | "https") {
        return Err(TrafficError::NotLoopback(url.to_owned()));
    }
    Ok(url.trim_end_matches('/').to_owned())
}

fn check_plan(plan: &TrafficPlan) -> Result<String, TrafficError> {
    if !(1..=MAX_REQUESTS).contains(&plan.requests) {
        return Err(TrafficError::TooMany(plan.requests));
    }
    if !(1..=MAX_CONCURRENCY).contains(&plan.concurrency) {
        return Err(TrafficError::Concurrency(plan.concurrency));
    }
    loopback_base(&plan.url)
}

/// Sends `plan`, calling `on_check` with each reading of `GET /drift` as it comes.
pub async fn send(plan: &TrafficPlan, mut on_check: impl FnMut(&Check)) -> Result<TrafficOutcome, TrafficError> {
    let base = check_plan(plan)?;
    let client = crate::http_client::for_capwatch(plan.ca_file.as_deref())
        .map_err(TrafficError::Client)?
        .timeout(REQUEST_TIMEOUT)
        .build()
        .map_err(|e| TrafficError::BadUrl(base.clone(), e.to_string()))?;
    let mut outcome = TrafficOutcome {
        shift: plan.shift,
        sent: 0,
        answered: 0,
        failed: 0,
        checks: Vec::new(),
        first_detected_after: None,
    };
    let chunk = plan.check_every.unwrap_or(plan.requests).max(1);
    while outcome.sent < plan.requests {
        let end = (outcome.sent + chunk).min(plan.requests);
        let (answered, failed) = send_range(&client, &base, plan, outcome.sent as u64..end as u64).await?;
        outcome.sent = end;
        outcome.answered += answered;
        outcome.failed += failed;
        if plan.check_every.is_some() {
            let check = read_drift(&client, &base, outcome.sent).await?;
            if check.detected == Some(true) && outcome.first_detected_after.is_none() {
                outcome.first_detected_after = Some(check.after);
            }
            on_check(&check);
            outcome.checks.push(check);
        }
    }
    Ok(outcome)
}

/// Sends requests `range` with `plan.concurrency` in flight: (answered 200, failed).
async fn send_range(
    client: &reqwest::Client,
    base: &str,
    plan: &TrafficPlan,
    range: std::ops::Range<u64>,
) -> Result<(usize, usize), TrafficError> {
    let next = Arc::new(AtomicU64::new(range.start));
    let mut senders = tokio::task::JoinSet::new();
    for _ in 0..plan.concurrency {
        let (client, url, next, shift, seed, end) =
            (client.clone(), format!("{base}/caption"), Arc::clone(&next), plan.shift, plan.seed, range.end);
        senders.spawn(async move {
            let (mut answered, mut failed) = (0usize, 0usize);
            loop {
                let index = next.fetch_add(1, Ordering::Relaxed);
                if index >= end {
                    return Ok::<_, TrafficError>((answered, failed));
                }
                let (bytes, content_type) = encoded(seed, index, shift)?;
                let response = client.post(&url).header("content-type", content_type).body(bytes).send().await;
                match response {
                    Ok(response) if response.status().is_success() => answered += 1,
                    Ok(response) => {
                        tracing::warn!(status = %response.status(), "caption request failed");
                        failed += 1;
                    }
                    Err(err) => {
                        tracing::warn!(error = %err, "caption request failed");
                        failed += 1;
                    }
                }
            }
        });
    }
    let (mut answered, mut failed) = (0, 0);
    while let Some(joined) = senders.join_next().await {
        let (a, f) = joined.map_err(|e| TrafficError::Drift { url: base.to_owned(), reason: e.to_string() })??;
        answered += a;
        failed += f;
    }
    Ok((answered, failed))
}

async fn read_drift(client: &reqwest::Client, base: &str, after: usize) -> Result<Check, TrafficError> {
    let fail = |reason: String| TrafficError::Drift { url: base.to_owned(), reason };
    let response = client.get(format!("{base}/drift")).send().await.map_err(|e| fail(e.to_string()))?;
    if !response.status().is_success() {
        return Err(fail(format!("answered {}", response.status())));
    }
    let status: DriftStatus = response.json().await.map_err(|e| fail(e.to_string()))?;
    Ok(match status.report.filter(|_| status.reference.is_some()) {
        None => Check { after, detected: None, drifted: Vec::new(), features: 0 },
        Some(report) => Check {
            after,
            detected: Some(report.detected),
            drifted: report.features.iter().filter(|f| f.drifted).map(|f| f.feature.clone()).collect(),
            features: report.features.len(),
        },
    })
}

/// `POST /drift/baseline` to a server on this machine: its live window becomes the reference.
pub async fn freeze_reference(url: &str, ca_file: Option<&std::path::Path>) -> Result<ReferenceInfo, TrafficError> {
    let base = loopback_base(url)?;
    let client = crate::http_client::for_capwatch(ca_file)
        .map_err(TrafficError::Client)?
        .timeout(REQUEST_TIMEOUT)
        .build()
        .map_err(|e| TrafficError::Client(e.to_string()))?;
    let fail = |reason: String| TrafficError::Baseline { url: base.clone(), reason };
    let response = client.post(format!("{base}/drift/baseline")).send().await.map_err(|e| fail(e.to_string()))?;
    let status = response.status();
    let body = response.text().await.map_err(|e| fail(e.to_string()))?;
    if !status.is_success() {
        let why = serde_json::from_str::<serde_json::Value>(&body)
            .ok()
            .and_then(|v| v["error"].as_str().map(str::to_owned))
            .unwrap_or(body);
        return Err(fail(format!("answered {status}: {why}")));
    }
    serde_json::from_str(&body).map_err(|e| fail(format!("answered something unreadable: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_loopback_hosts_are_accepted() {
        for url in ["http://127.0.0.1:8000", "http://localhost:1/", "http://[::1]:8000", "http://127.3.4.5"] {
            assert!(loopback_base(url).is_ok(), "{url}");
        }
        assert_eq!(loopback_base("http://127.0.0.1:8000/").ok().as_deref(), Some("http://127.0.0.1:8000"));
        for url in ["http://10.0.0.1:8000", "http://example.com", "ftp://127.0.0.1", "http://localhost.example.com"] {
            assert!(matches!(loopback_base(url), Err(TrafficError::NotLoopback(_))), "{url}");
        }
        assert!(matches!(loopback_base("not a url"), Err(TrafficError::BadUrl(..))));
    }

    #[test]
    fn the_plan_is_bounded() {
        let plan = |requests, concurrency| TrafficPlan {
            url: "http://127.0.0.1:1".to_owned(),
            shift: Shift::Stable,
            requests,
            concurrency,
            seed: 1,
            check_every: None,
            ca_file: None,
        };
        assert!(check_plan(&plan(10, 2)).is_ok());
        assert!(matches!(check_plan(&plan(0, 2)), Err(TrafficError::TooMany(0))));
        assert!(matches!(check_plan(&plan(MAX_REQUESTS + 1, 2)), Err(TrafficError::TooMany(_))));
        assert!(matches!(check_plan(&plan(10, 0)), Err(TrafficError::Concurrency(0))));
    }
}
