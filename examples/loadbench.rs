//! `make bench`: HTTP load benchmark of `capwatch serve` (release build) on a real model.
//!
//! Starts the server as a child process on a free port, measures cold start to `/ready`,
//! then for each concurrency level sends a fixed number of `POST /caption` requests
//! (closed loop: each client sends its next request when the previous one answered),
//! cycling through the test images. Reports throughput, client latency P50/P95/P99, the
//! server's model time (encoder + decoder, from the response), the server's own overhead
//! (its reported total minus model time: queueing, image decoding, preprocessing), the
//! client-side overhead (client latency minus model time: the former plus HTTP and JSON),
//! failures, and the server's peak RSS. Usage: `cargo run --release --example loadbench -- [--model DIR] [--requests N]
//! [--concurrency 1,4,16] [--images DIR]`.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;

struct Options {
    model: PathBuf,
    images: PathBuf,
    requests: usize,
    concurrency: Vec<usize>,
    /// Server config file (default: the server's own default, config/monitoring_config.yaml).
    config: Option<PathBuf>,
}

fn parse_options() -> Options {
    let mut options = Options {
        model: PathBuf::from("models/default"),
        images: PathBuf::from("test_images"),
        requests: 400,
        concurrency: vec![1, 4, 16],
        config: None,
    };
    if !options.model.is_dir() {
        options.model = PathBuf::from("tests/fixtures/vit_gpt2_merged");
        options.images = PathBuf::from("tests/fixtures/images");
    }
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--model" => options.model = args.next().expect("--model DIR").into(),
            "--images" => options.images = args.next().expect("--images DIR").into(),
            "--config" => options.config = Some(args.next().expect("--config FILE").into()),
            "--requests" => options.requests = args.next().expect("--requests N").parse().expect("a number"),
            "--concurrency" => {
                options.concurrency = args
                    .next()
                    .expect("--concurrency 1,4,16")
                    .split(',')
                    .map(|c| c.parse().expect("numbers"))
                    .collect();
            }
            other => panic!("unknown argument {other}"),
        }
    }
    options
}

fn load_images(dir: &PathBuf) -> Vec<(String, Vec<u8>)> {
    let mut images: Vec<(String, Vec<u8>)> = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", dir.display()))
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| matches!(p.extension().and_then(|e| e.to_str()), Some("png" | "jpg" | "jpeg")))
        .map(|p| {
            let content_type = if p.extension().is_some_and(|e| e == "png") { "image/png" } else { "image/jpeg" };
            (content_type.to_owned(), std::fs::read(&p).unwrap())
        })
        .collect();
    images.sort_by_key(|(_, bytes)| bytes.len());
    assert!(!images.is_empty(), "no images in {}", dir.display());
    images
}

fn peak_rss_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status.lines().find(|l| l.starts_with("VmHWM:"))?.split_whitespace().nth(1)?.parse().ok()
}

struct LevelResult {
    concurrency: usize,
    requests: usize,
    failures: usize,
    elapsed: Duration,
    latency: Histogram<u64>,
    model: Histogram<u64>,
    server_overhead: Histogram<u64>,
    overhead: Histogram<u64>,
}

async fn run_level(url: &str, images: Arc<Vec<(String, Vec<u8>)>>, concurrency: usize, requests: usize) -> LevelResult {
    let client = reqwest::Client::builder().pool_max_idle_per_host(concurrency).build().unwrap();
    let next = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let started = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..concurrency {
        let (client, images, next, url) =
            (client.clone(), Arc::clone(&images), Arc::clone(&next), format!("{url}/caption"));
        tasks.push(tokio::spawn(async move {
            let mut samples = Vec::new();
            loop {
                let index = next.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                if index >= requests {
                    break;
                }
                let (content_type, bytes) = &images[index % images.len()];
                let sent = Instant::now();
                let response = client.post(&url).header("content-type", content_type).body(bytes.clone()).send().await;
                let outcome = match response {
                    Ok(r) if r.status() == 200 => {
                        let body: serde_json::Value = r.json().await.unwrap();
                        let latency = sent.elapsed();
                        let t = &body["timings_ms"];
                        let model_ms = t["encoder"].as_f64().unwrap() + t["decoder"].as_f64().unwrap();
                        Some((latency, model_ms, t["total"].as_f64().unwrap()))
                    }
                    _ => None,
                };
                samples.push(outcome);
            }
            samples
        }));
    }
    let mut result = LevelResult {
        concurrency,
        requests,
        failures: 0,
        elapsed: Duration::ZERO,
        latency: Histogram::new(3).unwrap(),
        model: Histogram::new(3).unwrap(),
        server_overhead: Histogram::new(3).unwrap(),
        overhead: Histogram::new(3).unwrap(),
    };
    for task in tasks {
        for sample in task.await.unwrap() {
            match sample {
                Some((latency, model_ms, server_total_ms)) => {
                    let latency_us = latency.as_micros() as u64;
                    let model_us = (model_ms * 1000.0) as u64;
                    let server_total_us = (server_total_ms * 1000.0) as u64;
                    result.server_overhead.record(server_total_us.saturating_sub(model_us).max(1)).unwrap();
                    result.latency.record(latency_us.max(1)).unwrap();
                    result.model.record(model_us.max(1)).unwrap();
                    result.overhead.record(latency_us.saturating_sub(model_us).max(1)).unwrap();
                }
                None => result.failures += 1,
            }
        }
    }
    result.elapsed = started.elapsed();
    result
}

fn ms(h: &Histogram<u64>, q: f64) -> f64 {
    h.value_at_quantile(q) as f64 / 1000.0
}

fn main() {
    let options = parse_options();
    let images = Arc::new(load_images(&options.images));
    let binary = std::env::current_exe().unwrap().parent().unwrap().parent().unwrap().join("capwatch");
    assert!(binary.is_file(), "build the server first: cargo build --release ({} missing)", binary.display());

    let cold_start = Instant::now();
    let mut command = Command::new(&binary);
    command.args(["serve", "--port", "0", "--model"]).arg(&options.model);
    if let Some(config) = &options.config {
        command.arg("--config").arg(config);
    }
    let mut child =
        command.env("RUST_LOG", "warn,capwatch=info").stdout(Stdio::null()).stderr(Stdio::piped()).spawn().unwrap();
    let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
    let url = loop {
        let line = lines.next().expect("server exited").unwrap();
        if let Some(start) = line.find("http://127.0.0.1:") {
            break line[start..].chars().take_while(|c| !c.is_whitespace() && *c != '"').collect::<String>();
        }
    };
    std::thread::spawn(move || for _ in lines.by_ref() {});
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    let client = reqwest::Client::new();
    runtime.block_on(async {
        loop {
            if let Ok(r) = client.get(format!("{url}/ready")).send().await
                && r.status() == 200
            {
                break;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    });
    let cold_start = cold_start.elapsed();

    // Warm-up, not measured.
    runtime.block_on(run_level(&url, Arc::clone(&images), 2, 50));
    let results: Vec<LevelResult> = options
        .concurrency
        .iter()
        .map(|&c| runtime.block_on(run_level(&url, Arc::clone(&images), c, options.requests)))
        .collect();
    let peak_rss = peak_rss_kib(child.id());
    let _ = Command::new("kill").args(["-TERM", &child.id().to_string()]).status();
    let _ = child.wait();

    println!(
        "model: {}   images: {} from {}   config: {}",
        options.model.display(),
        images.len(),
        options.images.display(),
        options.config.as_ref().map_or("default".to_owned(), |c| c.display().to_string())
    );
    println!("cold start to /ready: {:.0} ms", cold_start.as_secs_f64() * 1000.0);
    if let Some(kib) = peak_rss {
        println!("server peak RSS: {:.1} MiB", kib as f64 / 1024.0);
    }
    let header = "| concurrency | requests | failed | throughput (req/s) | latency P50 / P95 / P99 (ms) | model time P50 / P95 (ms) | server overhead P50 / P95 / P99 (ms) | client-side overhead P50 / P95 / P99 (ms) |";
    println!("{header}");
    println!("|---|---|---|---|---|---|---|---|");
    for r in &results {
        println!(
            "| {} | {} | {} | {:.1} | {:.2} / {:.2} / {:.2} | {:.2} / {:.2} | {:.3} / {:.3} / {:.3} | {:.3} / {:.3} / {:.3} |",
            r.concurrency,
            r.requests,
            r.failures,
            (r.requests - r.failures) as f64 / r.elapsed.as_secs_f64(),
            ms(&r.latency, 0.5),
            ms(&r.latency, 0.95),
            ms(&r.latency, 0.99),
            ms(&r.model, 0.5),
            ms(&r.model, 0.95),
            ms(&r.server_overhead, 0.5),
            ms(&r.server_overhead, 0.95),
            ms(&r.server_overhead, 0.99),
            ms(&r.overhead, 0.5),
            ms(&r.overhead, 0.95),
            ms(&r.overhead, 0.99),
        );
    }
}
