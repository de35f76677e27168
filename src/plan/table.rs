//! What `capwatch plan` prints: the measured service times, then replicas × workers for the
//! rate and 10×, 100×, 1000× it, as a Markdown table. Formatting only.

use std::fmt::Write as _;

use super::scrape::Measured;
use super::{PlanError, SIMULATED_REQUESTS, plan};

/// What to plan for.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Goal {
    /// Requests per second (the table adds 10×, 100× and 1000×).
    pub rate_per_s: f64,
    pub p95_ms: f64,
    /// Workers per replica.
    pub workers: usize,
    /// Most waiting requests a worker takes as one batch.
    pub max_batch: usize,
    pub max_replicas: usize,
}

/// The text, and what could not be planned.
#[derive(Debug, Clone, PartialEq)]
pub struct PlanTable {
    pub text: String,
    /// Some level of traffic could not be planned (its row says why).
    pub unplannable: bool,
    /// No number of replicas meets the target (the measured P95 is above it): the text stops
    /// after what was measured.
    pub impossible: Option<PlanError>,
}

/// What was measured at `source`, and the plan for each multiple of the rate.
pub fn render(source: &str, measured: &Measured, goal: &Goal) -> PlanTable {
    let service = &measured.service;
    let p95_s = goal.p95_ms / 1e3;
    let mut text = String::new();
    let classes: Vec<String> = measured.per_class.iter().map(|(label, n)| format!("{label}: {n}")).collect();
    // Writing to a String cannot fail.
    let _ = write!(
        text,
        "Measured at {source}: model {}, {} workers, {} captions; service time mean {:.1} ms, P50 {:.1} ms, \
         P95 {:.1} ms, P99 {:.1} ms\nCaptions by batch size: {}\n\
         Plan for P95 ≤ {} ms, {} workers per replica batching up to {}, each replica its own queue (simulated, {} \
         requests each):\n\n",
        measured.model,
        measured.workers,
        measured.count,
        service.mean() * 1e3,
        service.quantile(0.5) * 1e3,
        service.quantile(0.95) * 1e3,
        service.quantile(0.99) * 1e3,
        classes.join(", "),
        goal.p95_ms,
        goal.workers,
        goal.max_batch,
        SIMULATED_REQUESTS
    );
    if let Err(err @ PlanError::TargetBelowServiceTime { .. }) =
        plan(&measured.batched, goal.workers, goal.rate_per_s, p95_s, goal.max_replicas)
    {
        return PlanTable { text, unplannable: false, impossible: Some(err) };
    }
    text.push_str(
        "| rate (req/s) | replicas × workers | P50 | P95 | P99 | utilisation | batch | M/M/c P95 |\n\
         |---|---|---|---|---|---|---|---|\n",
    );
    let mut unplannable = false;
    for multiple in [1.0, 10.0, 100.0, 1000.0] {
        let rate = goal.rate_per_s * multiple;
        let _ = match plan(&measured.batched, goal.workers, rate, p95_s, goal.max_replicas) {
            Ok(p) => writeln!(
                text,
                "| {rate} | {} × {} | {:.1} ms | {:.1} ms | {:.1} ms | {:.0} % | {:.1} | {} |",
                p.replicas,
                p.workers_per_replica,
                p.p50_s * 1e3,
                p.p95_s * 1e3,
                p.p99_s * 1e3,
                p.utilisation * 100.0,
                p.mean_batch,
                p.mmc_p95_s.map_or_else(|| "-".to_owned(), |s| format!("{:.1} ms", s * 1e3))
            ),
            Err(err) => {
                unplannable = true;
                writeln!(text, "| {rate} | {err} | | | | | | |")
            }
        };
    }
    PlanTable { text, unplannable, impossible: None }
}
