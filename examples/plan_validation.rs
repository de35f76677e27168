//! `make bench-plan`: does `capwatch plan`'s queueing model predict the P95 a real server
//! shows? One local server (bundled model, `--workers`), loopback only:
//!
//! 1. 400 requests one at a time: the service times the server measures alone.
//! 2. At three arrival rates (shares of the capacity workers / mean service time), open-loop
//!    Poisson arrivals (each request sent at its scheduled time, whatever came back): the P95
//!    the client sees, and the P95 the model predicts for that rate — from the service times
//!    measured alone (what a planner has beforehand) and from those the server measured during
//!    that run (the model itself, given the load's real service times).
//!
//! The images are the drift traffic generator's scenes. Results: `.tmp/plan-validation/results.md`.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

#[path = "support/mod.rs"]
mod support;

use std::path::PathBuf;
use std::time::{Duration, Instant};

use capwatch::config::ServiceConfig;
use capwatch::drift::scenes::{Shift, encoded};
use std::collections::BTreeMap;
use support::LocalServer;

use capwatch::plan::predict;
use capwatch::plan::queueing::BatchedService;
use capwatch::plan::scrape::{model_measured, service_buckets};
use capwatch::stats::bootstrap::SplitMix64;

type Buckets = BTreeMap<(String, String), Vec<(f64, f64)>>;

async fn buckets(client: &reqwest::Client, url: &str) -> Buckets {
    let text = client.get(format!("{url}/metrics")).send().await.unwrap().text().await.unwrap();
    service_buckets(&text)
}

/// The histograms of what was observed between two readings.
fn between(before: &Buckets, after: &Buckets) -> Buckets {
    after
        .iter()
        .map(|(key, points)| {
            let earlier = before.get(key);
            let points = points
                .iter()
                .map(|&(bound, count)| {
                    let was = earlier.and_then(|e| e.iter().find(|(b, _)| *b == bound)).map_or(0.0, |(_, c)| *c);
                    (bound, count - was)
                })
                .collect();
            (key.clone(), points)
        })
        .collect()
}

/// The service the model gets: by batch size (max 8, the server's default), and how it reads.
fn service(buckets: &Buckets, workers: usize) -> (BatchedService, String) {
    let measured = model_measured(buckets, "default", workers, 8).unwrap();
    let classes: Vec<String> =
        measured.per_class.iter().filter(|(_, n)| *n > 0.0).map(|(label, n)| format!("{label}: {n:.0}")).collect();
    (measured.batched, format!("mean {:.2} ms ({})", measured.service.mean() * 1e3, classes.join(", ")))
}

fn percentile(sorted: &[f64], q: f64) -> f64 {
    sorted[((q * sorted.len() as f64).ceil() as usize).saturating_sub(1).min(sorted.len() - 1)]
}

#[tokio::main]
async fn main() {
    let mut workers = 2usize;
    let mut requests = 800usize;
    let mut loads = vec![0.3, 0.6, 0.85];
    let mut given = std::env::args().skip(1);
    while let Some(flag) = given.next() {
        let value = given.next().unwrap_or_else(|| panic!("{flag} needs a value"));
        match flag.as_str() {
            "--workers" => workers = value.parse().unwrap(),
            "--requests" => requests = value.parse().unwrap(),
            "--loads" => loads = value.split(',').map(|v| v.parse().unwrap()).collect(),
            other => panic!("unknown flag {other} (--workers N --requests N --loads 0.3,0.6,0.85)"),
        }
    }
    let out = PathBuf::from(".tmp/plan-validation");
    std::fs::create_dir_all(&out).unwrap();
    let mut config = ServiceConfig { model_dir: PathBuf::from("models/default"), port: 0, ..ServiceConfig::default() };
    config.workers = std::num::NonZeroUsize::new(workers);
    let server = LocalServer::start(config).await;
    let url = server.url.clone();
    let client = reqwest::Client::new();
    let images: Vec<(Vec<u8>, &str)> = (0..200).map(|i| encoded(77, i, Shift::Stable).unwrap()).collect();
    let send = |index: usize| {
        let (client, url) = (client.clone(), format!("{url}/caption"));
        let (bytes, content_type) = images[index % images.len()].clone();
        async move {
            let started = Instant::now();
            let response = client.post(url).header("content-type", content_type).body(bytes).send().await.unwrap();
            assert!(response.status().is_success());
            response.bytes().await.unwrap();
            started.elapsed().as_secs_f64()
        }
    };

    // 1. Alone.
    for index in 0..50 {
        send(index).await;
    }
    let before = buckets(&client, &url).await;
    for index in 0..400 {
        send(index).await;
    }
    let (alone, alone_text) = service(&between(&before, &buckets(&client, &url).await), workers);
    let alone_mean = alone.mean_alone();
    let capacity = workers as f64 / alone_mean;
    let mut md = format!(
        "# capwatch plan against a real server ({workers} workers, bundled model, this machine)\n\n\
         Service time alone (400 requests one at a time): {alone_text}, P95 {:.2} ms; capacity one at a time {capacity:.0} req/s.\n\
         Open-loop Poisson arrivals, {requests} requests per rate; client-side P95 (HTTP included). The model: \
         each worker takes every waiting request (up to 8) as one batch; times by batch size as measured.\n\n\
         | load | rate (req/s) | measured P95 | predicted (service alone) | error | predicted (service during run) | error | M/M/c | service during run (captions by batch size) |\n\
         |---|---|---|---|---|---|---|---|---|\n",
        alone.draw(1, 0.95) * 1e3,
    );

    // 2. Three rates.
    let mut rng = SplitMix64::new(2026);
    for load in loads {
        let rate = load * capacity;
        let before = buckets(&client, &url).await;
        let started = tokio::time::Instant::now();
        let mut at_s = 0.0;
        let mut tasks = Vec::with_capacity(requests);
        for index in 0..requests {
            at_s += -(1.0 - rng.next_f64()).ln() / rate;
            let request = send(index);
            let due = started + Duration::from_secs_f64(at_s);
            tasks.push(tokio::spawn(async move {
                tokio::time::sleep_until(due).await;
                request.await
            }));
        }
        let mut latencies = Vec::with_capacity(requests);
        for task in tasks {
            latencies.push(task.await.unwrap());
        }
        latencies.sort_by(f64::total_cmp);
        let measured = percentile(&latencies, 0.95);
        let (during, during_text) = service(&between(&before, &buckets(&client, &url).await), workers);
        let from_alone = predict(&alone, workers, rate);
        let from_during = predict(&during, workers, rate);
        let cell = |p: Option<f64>| {
            p.map_or_else(
                || ("cannot keep up".to_owned(), "-".to_owned()),
                |p| (format!("{:.2} ms", p * 1e3), format!("{:+.0} %", (p - measured) / measured * 100.0)),
            )
        };
        let (alone_p95, alone_error) = cell(from_alone.map(|p| p.p95_s));
        let (during_p95, during_error) = cell(from_during.map(|p| p.p95_s));
        let mmc =
            from_during.and_then(|p| p.mmc_p95_s).map_or_else(|| "-".to_owned(), |s| format!("{:.2} ms", s * 1e3));
        let row = format!(
            "| {:.0} % | {rate:.1} | {:.2} ms | {alone_p95} | {alone_error} | {during_p95} | {during_error} | {mmc} | {during_text} |\n",
            load * 100.0,
            measured * 1e3,
        );
        eprint!("{row}");
        md.push_str(&row);
    }
    server.stop().await;
    print!("{md}");
    std::fs::write(out.join("results.md"), &md).unwrap();
}
