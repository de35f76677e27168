//! `make bench-drift-calibration`: how often the drift verdict fires on a stable stream, and how
//! many shifted requests it takes to fire, measured through a real server on loopback.
//!
//! 1. A server for the bundled model (window `--window` requests) gets `--windows` stable
//!    windows of scenes (`capwatch drift traffic`'s generator, a new seed each); each window is
//!    frozen with `POST /drift/baseline` and read back from the reference file: real profiles,
//!    real captions, real embeddings.
//! 2. Every pair of windows (the earlier as reference) is compared as the server would: the
//!    share of pairs that drift is the false-alarm rate per window; the distribution of drifted
//!    features says which count threshold keeps it under 1 in 100.
//! 3. Against a fresh stable window as reference, the live window is refilled with stable scenes and
//!    then sent each shift (and more stable scenes), reading `GET /drift` every `--check-every`
//!    requests: the requests until drift is first detected.
//!
//! Results: `.tmp/drift-calibration/results.md` and `.json`.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

#[path = "support/mod.rs"]
mod support;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Instant;

use capwatch::config::ServiceConfig;
use capwatch::drift::profile::RequestProfile;
use capwatch::drift::report::{DRIFT_SHARE, compare};
use capwatch::drift::scenes::Shift;
use capwatch::server::drift::Reference;
use capwatch::traffic::{TrafficPlan, send};
use support::LocalServer;

struct Args {
    windows: usize,
    window: usize,
    check_every: usize,
    out: PathBuf,
    /// Read the stable windows from `windows.json` of an earlier run instead of collecting them.
    reuse: bool,
    /// The false-alarm budget: at most one per this many stable windows.
    false_alarm_windows: usize,
}

fn args() -> Args {
    let mut args = Args {
        windows: 40,
        window: 500,
        check_every: 10,
        out: PathBuf::from(".tmp/drift-calibration"),
        reuse: false,
        false_alarm_windows: 100,
    };
    let mut given = std::env::args().skip(1);
    while let Some(flag) = given.next() {
        if flag == "--reuse" {
            args.reuse = true;
            continue;
        }
        let value = given.next().unwrap_or_else(|| panic!("{flag} needs a value"));
        match flag.as_str() {
            "--windows" => args.windows = value.parse().unwrap(),
            "--window" => args.window = value.parse().unwrap(),
            "--check-every" => args.check_every = value.parse().unwrap(),
            "--out" => args.out = PathBuf::from(value),
            "--false-alarm-windows" => args.false_alarm_windows = value.parse().unwrap(),
            other => panic!(
                "unknown flag {other} (--windows N --window N --check-every N --out DIR --reuse --false-alarm-windows N)"
            ),
        }
    }
    args
}

fn plan(url: &str, shift: Shift, requests: usize, seed: u64, check_every: Option<usize>) -> TrafficPlan {
    TrafficPlan { url: url.to_owned(), shift, requests, concurrency: 2, seed, check_every, ca_file: None }
}

#[tokio::main]
async fn main() {
    let args = args();
    std::fs::create_dir_all(&args.out).unwrap();
    let reference_path = args.out.join("reference.json");
    let mut config = ServiceConfig { model_dir: PathBuf::from("models/default"), port: 0, ..ServiceConfig::default() };
    config.drift.window_requests = std::num::NonZeroUsize::new(args.window).unwrap();
    config.drift.reference = Some(reference_path.clone());
    let _ = std::fs::remove_file(&reference_path);
    let server = LocalServer::start(config).await;
    let url = server.url.clone();
    let client = reqwest::Client::new();

    // 1. Stable windows through the server.
    let started = Instant::now();
    let saved = args.out.join("windows.json");
    let mut windows: Vec<Vec<RequestProfile>> =
        if args.reuse { serde_json::from_str(&std::fs::read_to_string(&saved).unwrap()).unwrap() } else { Vec::new() };
    for w in windows.len()..args.windows {
        let outcome = send(&plan(&url, Shift::Stable, args.window, 1000 + w as u64, None), |_| {}).await.unwrap();
        assert_eq!(outcome.failed, 0, "every request answered");
        let frozen = client.post(format!("{url}/drift/baseline")).send().await.unwrap();
        assert!(frozen.status().is_success(), "{}", frozen.text().await.unwrap());
        let reference: Reference = serde_json::from_str(&std::fs::read_to_string(&reference_path).unwrap()).unwrap();
        windows.push(reference.profiles);
        eprintln!("window {}/{} collected ({:.0} s)", w + 1, args.windows, started.elapsed().as_secs_f64());
    }

    std::fs::write(&saved, serde_json::to_string(&windows).unwrap()).unwrap();
    let windows = &windows[..args.windows];

    // 2. Every pair of stable windows.
    let mut pairs = 0usize;
    let mut alarms = 0usize;
    let mut drifted_counts: BTreeMap<usize, usize> = BTreeMap::new();
    let mut per_feature: BTreeMap<String, usize> = BTreeMap::new();
    let mut features = 0usize;
    let compared = Instant::now();
    for (i, reference) in windows.iter().enumerate() {
        for live in &windows[i + 1..] {
            let report = compare(reference, live, DRIFT_SHARE);
            pairs += 1;
            alarms += usize::from(report.detected);
            features = report.features.len();
            let drifted: Vec<&str> = report.features.iter().filter(|f| f.drifted).map(|f| f.feature.as_str()).collect();
            *drifted_counts.entry(drifted.len()).or_default() += 1;
            for name in drifted {
                *per_feature.entry(name.to_owned()).or_default() += 1;
            }
        }
    }
    let compare_ms = compared.elapsed().as_secs_f64() * 1000.0 / pairs.max(1) as f64;
    eprintln!("{pairs} pairs compared ({compare_ms:.0} ms each)");

    // 3. Shifts against a fresh stable reference, and a stable control.
    let reference = send(&plan(&url, Shift::Stable, args.window, 4000, None), |_| {}).await.unwrap();
    assert_eq!(reference.failed, 0);
    assert!(client.post(format!("{url}/drift/baseline")).send().await.unwrap().status().is_success());
    let mut shifts = Vec::new();
    for (s, shift) in
        [Shift::Stable, Shift::Dark, Shift::OneColour, Shift::Noise, Shift::Texture].into_iter().enumerate()
    {
        let refill = send(&plan(&url, Shift::Stable, args.window, 5000 + s as u64, None), |_| {}).await.unwrap();
        assert_eq!(refill.failed, 0);
        let outcome =
            send(&plan(&url, shift, args.window, 9000 + s as u64, Some(args.check_every)), |_| {}).await.unwrap();
        let alarms = outcome.checks.iter().filter(|c| c.detected == Some(true)).count();
        let first = outcome.checks.iter().find(|c| c.detected == Some(true));
        eprintln!("{}: first detected after {:?}", shift.name(), outcome.first_detected_after);
        shifts.push(serde_json::json!({
            "shift": shift.name(),
            "requests": outcome.sent,
            "checks": outcome.checks.len(),
            "checks_detected": alarms,
            "first_detected_after": outcome.first_detected_after,
            "drifted_then": first.map(|c| c.drifted.clone()),
            "drifted_at_end": outcome.checks.last().map(|c| c.drifted.clone()),
        }));
    }
    server.stop().await;

    let rate = alarms as f64 / pairs.max(1) as f64;
    // The fewest drifted features whose measured rate is within the budget.
    let at_least = |k: usize| drifted_counts.range(k..).map(|(_, n)| n).sum::<usize>();
    let calibrated = (1..=features)
        .find(|&k| (at_least(k) as f64) < pairs as f64 / args.false_alarm_windows as f64)
        .unwrap_or(features);
    let mut md = format!(
        "# Drift calibration ({} stable windows of {} requests, bundled model, this machine)\n\n\
         Verdict: drift when at least {:.0} % of the {features} features drift.\n\n\
         False alarms: {alarms} of {pairs} pairs of stable windows ({:.2} %; one per {} windows).\n\n\
         For fewer than one per {} windows the verdict needs at least {calibrated} drifted features \
         (measured: {} pairs; `service.drift.drift_share` above {:.3}, at most {:.3}).\n\n\
         | features drifted | pairs |\n|---|---|\n",
        args.windows,
        args.window,
        DRIFT_SHARE * 100.0,
        rate * 100.0,
        if alarms == 0 { format!("more than {pairs}") } else { format!("{:.0}", 1.0 / rate) },
        args.false_alarm_windows,
        at_least(calibrated),
        (calibrated - 1) as f64 / features as f64,
        calibrated as f64 / features as f64,
    );
    for (count, n) in &drifted_counts {
        md.push_str(&format!("| {count} | {n} |\n"));
    }
    md.push_str("\n| feature | drifted in stable pairs |\n|---|---|\n");
    for (name, n) in &per_feature {
        md.push_str(&format!("| {name} | {n} ({:.1} %) |\n", *n as f64 * 100.0 / pairs as f64));
    }
    md.push_str(&format!(
        "\nComparing one pair: {compare_ms:.0} ms.\n\n| stream (after {} stable) | first detected after | checks that said drift |\n|---|---|---|\n",
        args.window
    ));
    for shift in &shifts {
        md.push_str(&format!(
            "| {} | {} | {} of {} |\n",
            shift["shift"].as_str().unwrap(),
            shift["first_detected_after"].as_u64().map_or_else(|| "never".to_owned(), |n| format!("{n} requests")),
            shift["checks_detected"],
            shift["checks"],
        ));
    }
    print!("{md}");
    std::fs::write(args.out.join("results.md"), &md).unwrap();
    let json = serde_json::json!({
        "windows": args.windows, "window": args.window, "pairs": pairs, "false_alarms": alarms,
        "drift_share": DRIFT_SHARE, "false_alarm_windows": args.false_alarm_windows, "calibrated_features": calibrated,
        "drifted_counts": drifted_counts, "per_feature": per_feature, "compare_ms": compare_ms, "shifts": shifts,
    });
    std::fs::write(args.out.join("results.json"), serde_json::to_string_pretty(&json).unwrap()).unwrap();
}
