//! Drift on a real server: every real request is profiled into the live
//! window (probes are not), a reference is frozen from it and saved, loaded again at start,
//! and `GET /drift` and `/metrics` say when the images turn dark.

use crate::common;

use std::path::PathBuf;

use capwatch::config::ServiceConfig;
use common::{TestServer, capwatch_cli, encode, repo_path};
use serde_json::Value;

/// A scene-like picture: a background and a coloured square somewhere on it.
fn scene(seed: u64, dark: bool) -> Vec<u8> {
    let colours = [[220, 40, 40], [40, 170, 60], [40, 70, 220], [230, 200, 30]];
    let colour = colours[(seed % 4) as usize];
    let background = if dark { [15, 15, 20] } else { [235, 235, 228] };
    let offset = (seed * 7 % 40) as u32;
    let image = image::RgbImage::from_fn(96, 96, |x, y| {
        let inside = (offset..offset + 40).contains(&x) && (offset..offset + 40).contains(&y);
        image::Rgb(if inside { colour } else { background })
    });
    encode(&image::DynamicImage::ImageRgb8(image), image::ImageFormat::Png)
}

async fn send(server: &TestServer, bytes: Vec<u8>, probe: bool) {
    let mut request =
        reqwest::Client::new().post(server.endpoint("/caption")).header("content-type", "image/png").body(bytes);
    if probe {
        request = request.header("x-capwatch-probe", "1");
    }
    assert_eq!(request.send().await.unwrap().status(), 200);
}

async fn drift(server: &TestServer) -> Value {
    reqwest::get(server.endpoint("/drift")).await.unwrap().json().await.unwrap()
}

async fn baseline(server: &TestServer) -> reqwest::Response {
    reqwest::Client::new().post(server.endpoint("/drift/baseline")).send().await.unwrap()
}

fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("capwatch-drift-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn drift_config(config: &mut ServiceConfig, reference: &std::path::Path) {
    config.drift.window_requests = std::num::NonZeroUsize::new(60).unwrap();
    config.drift.reference = Some(reference.to_owned());
}

#[tokio::test]
async fn a_reference_is_frozen_saved_and_dark_images_drift_from_it() {
    let dir = scratch("frozen");
    let reference = dir.join("reference.json");
    let server = TestServer::start(repo_path("models/default"), |c| drift_config(c, &reference)).await;

    let early = baseline(&server).await;
    assert_eq!(early.status(), 409);
    assert_eq!(early.json::<Value>().await.unwrap()["error_type"], "not_enough_requests");

    for seed in 0..40 {
        send(&server, scene(seed, false), false).await;
    }
    // Probes stay out of the window.
    send(&server, scene(99, true), true).await;
    let status = drift(&server).await;
    assert_eq!((status["live_size"].as_u64(), status["window_requests"].as_u64()), (Some(40), Some(60)));
    assert!(status["report"].is_null() && status["reference"].is_null(), "{status}");

    let frozen = baseline(&server).await;
    assert_eq!(frozen.status(), 201);
    assert_eq!(frozen.json::<Value>().await.unwrap()["size"], 40);
    assert!(reference.exists(), "saved to service.drift.reference");
    let same = drift(&server).await;
    assert_eq!(same["report"]["detected"], false, "{same}");

    for seed in 0..60 {
        send(&server, scene(seed, true), false).await;
    }
    let dark = drift(&server).await;
    let report = &dark["report"];
    assert_eq!(report["detected"], true, "{dark}");
    let feature =
        |name: &str| report["features"].as_array().unwrap().iter().find(|f| f["feature"] == name).unwrap().clone();
    assert_eq!(feature("brightness_mean")["drifted"], true, "{dark}");
    assert_eq!(feature("brightness_mean")["test"], "ks");
    assert_eq!(feature("width")["drifted"], false, "the size did not change: {dark}");

    // The answer matches the published schema.
    let mut document: Value = reqwest::get(server.endpoint("/openapi.json")).await.unwrap().json().await.unwrap();
    document["$ref"] = Value::String("#/components/schemas/DriftStatus".to_owned());
    let validator = jsonschema::validator_for(&document).unwrap();
    let errors: Vec<String> = validator.iter_errors(&dark).map(|e| e.to_string()).collect();
    assert!(errors.is_empty(), "{errors:?}");

    let metrics = reqwest::get(server.endpoint("/metrics")).await.unwrap().text().await.unwrap();
    for expected in [
        "capwatch_drift_detected 1",
        "capwatch_drift_live_requests 60",
        "capwatch_drift_score{feature=\"brightness_mean\",method=\"ks\"}",
        "capwatch_drift_feature_drifted{feature=\"brightness_mean\",method=\"ks\"} 1",
    ] {
        assert!(metrics.contains(expected), "missing `{expected}` in:\n{metrics}");
    }
    server.stop().await.unwrap();

    // The reference comes back with the next server.
    let again = TestServer::start(repo_path("models/default"), |c| drift_config(c, &reference)).await;
    let status = drift(&again).await;
    assert_eq!(status["reference"]["size"], 40, "{status}");
    again.stop().await.unwrap();
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test]
async fn an_unreadable_reference_stops_the_server_with_the_key() {
    let dir = scratch("bad");
    let reference = dir.join("reference.json");
    std::fs::write(&reference, "{not json").unwrap();
    let mut config = ServiceConfig { port: 0, model_dir: repo_path("models/default"), ..ServiceConfig::default() };
    drift_config(&mut config, &reference);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let error = capwatch::server::run(config, listener, std::future::pending()).await.unwrap_err().to_string();
    assert!(error.contains("service.drift.reference") && error.contains("cannot read the drift reference"), "{error}");
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_drift_command_freezes_and_reports() {
    let dir = scratch("cli");
    let reference = dir.join("reference.json");
    let server = TestServer::start(repo_path("models/default"), |c| drift_config(c, &reference)).await;
    let args = |what: &str| vec!["drift".to_owned(), what.to_owned(), "--url".to_owned(), server.url.clone()];

    let (code, stdout, _) = capwatch_cli(args("status")).await;
    assert_eq!(code, Some(2), "no reference yet: {stdout}");
    assert!(stdout.contains("reference: none yet"), "{stdout}");
    let (code, _, stderr) = capwatch_cli(args("baseline")).await;
    assert_eq!(code, Some(1));
    assert!(stderr.contains("409") && stderr.contains("needs at least 30"), "{stderr}");

    for seed in 0..35 {
        send(&server, scene(seed, false), false).await;
    }
    let (code, stdout, stderr) = capwatch_cli(args("baseline")).await;
    assert_eq!(code, Some(0), "{stderr}");
    assert!(stdout.starts_with("Froze a drift reference of 35 requests") && stdout.contains("saved to"), "{stdout}");
    for seed in 0..60 {
        send(&server, scene(seed, true), false).await;
    }
    let (code, stdout, _) = capwatch_cli(args("status")).await;
    assert_eq!(code, Some(1), "{stdout}");
    assert!(stdout.contains("DRIFT DETECTED") && stdout.contains("brightness_mean"), "{stdout}");

    // The dashboard reads it too: told, recorded, and the `drift` alert fires.
    let (monitor_dir, config) = common::monitor_config(
        "drift-monitor",
        &[
            ("health_interval_s: 30", "health_interval_s: 0.3"),
            ("inference_interval_s: 10", "inference_interval_s: 0.5"),
        ],
    );
    let monitor = vec![
        "monitor".to_owned(),
        "--url".to_owned(),
        server.url.clone(),
        "--headless".to_owned(),
        "--cycles".to_owned(),
        "2".to_owned(),
        "--config".to_owned(),
        config.display().to_string(),
    ];
    let (code, stdout, _) = capwatch_cli(monitor).await;
    assert!(stdout.contains("🌊 Drift:") && stdout.contains("ALERT: drift ="), "{stdout}");
    assert!(code == Some(1) || code == Some(2), "a drift alert fired: {code:?}\n{stdout}");
    let records = common::read_records(&monitor_dir.join("logs"));
    common::assert_schema(&records);
    assert!(records.iter().any(|r| r["type"] == "drift" && r["detected"] == true), "no drift record");
    server.stop().await.unwrap();
    let _ = std::fs::remove_dir_all(&dir);
}

/// Issue 14 part 5: the traffic generator's scene world stays quiet, and each shift of it is
/// detected within one window — through a real server, with the CLI for one of them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn generated_traffic_drifts_only_when_shifted() {
    let _machine = common::whole_machine();
    use capwatch::drift::scenes::Shift;
    use capwatch::traffic::{TrafficPlan, send as send_traffic};
    const WINDOW: usize = 100;
    let server = TestServer::start(repo_path("models/default"), |c| {
        c.workers = std::num::NonZeroUsize::new(2);
        c.drift.window_requests = std::num::NonZeroUsize::new(WINDOW).unwrap();
    })
    .await;
    let plan = |shift, requests, seed, check_every| TrafficPlan {
        url: server.url.clone(),
        shift,
        requests,
        concurrency: 2,
        seed,
        check_every,
        ca_file: None,
    };
    let run = |plan: TrafficPlan| async move { send_traffic(&plan, |_| {}).await.unwrap() };

    let first = run(plan(Shift::Stable, WINDOW, 1, Some(WINDOW))).await;
    assert_eq!((first.answered, first.failed), (WINDOW, 0));
    assert_eq!(first.checks[0].detected, None, "no reference yet");
    assert_eq!(baseline(&server).await.status(), 201);

    // Two more windows of the same world: no check says drift.
    let stable = run(plan(Shift::Stable, 2 * WINDOW, 2, Some(20))).await;
    assert_eq!(stable.checks.len(), 10);
    assert!(stable.checks.iter().all(|c| c.detected == Some(false)), "{:#?}", stable.checks);
    assert_eq!(stable.first_detected_after, None);

    for (seed, shift) in [(3, Shift::Dark), (5, Shift::OneColour), (7, Shift::Noise), (9, Shift::Texture)] {
        let shifted = run(plan(shift, WINDOW, seed, Some(10))).await;
        let first =
            shifted.first_detected_after.unwrap_or_else(|| panic!("{shift:?} never detected: {:#?}", shifted.checks));
        assert!(shifted.checks.last().unwrap().detected == Some(true), "{shift:?}: {:#?}", shifted.checks);
        println!("{}: first detected after {first} of {WINDOW}", shift.name());
        // A window of the world again: quiet again.
        let back = run(plan(Shift::Stable, WINDOW, seed + 1, Some(WINDOW))).await;
        assert_eq!(back.checks[0].detected, Some(false), "after {shift:?}: {:#?}", back.checks);
    }

    // The CLI: the same, with --expect; and it sends nowhere but loopback.
    let args = |url: &str, shift: &str, expect: &str| -> Vec<String> {
        [
            "drift",
            "traffic",
            "--url",
            url,
            "--shift",
            shift,
            "--requests",
            "100",
            "--check-every",
            "20",
            "--seed",
            "11",
            "--expect",
            expect,
        ]
        .map(str::to_owned)
        .to_vec()
    };
    let (code, stdout, stderr) = capwatch_cli(args(&server.url, "dark", "drift")).await;
    assert_eq!(code, Some(0), "{stdout}{stderr}");
    assert!(stdout.contains("100 dark scenes sent: 100 answered, 0 failed; drift first detected after"), "{stdout}");
    let (code, _, stderr) = capwatch_cli(args(&server.url, "dark", "none")).await;
    assert_eq!(code, Some(1), "the window drifted, so `--expect none` fails: {stderr}");
    let (code, _, stderr) = capwatch_cli(args("http://192.0.2.1:8000", "stable", "none")).await;
    assert_eq!(code, Some(2));
    assert!(stderr.contains("only sends to this machine"), "{stderr}");
    server.stop().await.unwrap();
}
