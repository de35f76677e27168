//! Fault injection (`capwatch serve --chaos`) against a real server and the real model:
//! each fault kind does what it says, hits its share of requests, shows in `/metrics`, ends
//! by itself or when cleared; without `--chaos` the routes do not exist; `crash` ends the
//! process with its exit status.

use crate::common;

use std::time::{Duration, Instant};

use serde_json::{Value, json};

use common::{TestServer, fixture, spawn_server};

const MODEL: &str = "vit_gpt2_merged";

async fn chaos_server() -> TestServer {
    TestServer::start(fixture(MODEL), |c| c.chaos = true).await
}

fn image() -> Vec<u8> {
    std::fs::read(fixture("images/shapes_64x48.png")).unwrap()
}

async fn caption(server: &TestServer) -> reqwest::Response {
    reqwest::Client::new()
        .post(server.endpoint("/caption"))
        .header("content-type", "image/png")
        .body(image())
        .send()
        .await
        .unwrap()
}

async fn inject(server: &TestServer, fault: Value) -> reqwest::Response {
    reqwest::Client::new().post(server.endpoint("/chaos")).json(&fault).send().await.unwrap()
}

async fn clear(server: &TestServer) -> usize {
    let response = reqwest::Client::new().delete(server.endpoint("/chaos")).send().await.unwrap();
    assert_eq!(response.status(), 200);
    response.json::<Value>().await.unwrap()["cleared"].as_u64().unwrap() as usize
}

async fn status_of(server: &TestServer, path: &str) -> u16 {
    reqwest::get(server.endpoint(path)).await.unwrap().status().as_u16()
}

#[tokio::test]
async fn without_chaos_the_routes_do_not_exist() {
    let server = TestServer::start(fixture(MODEL), |_| {}).await;
    let response = inject(&server, json!({"kind": "crash"})).await;
    assert_eq!(response.status(), 404);
    assert_eq!(response.json::<Value>().await.unwrap()["error_type"], "not_found");
    assert_eq!(status_of(&server, "/chaos").await, 404);
    assert_eq!(caption(&server).await.status(), 200, "still serving");
    server.stop().await.unwrap();
}

#[tokio::test]
async fn errors_latency_and_garbage_hit_their_share_and_clear() {
    let server = chaos_server().await;
    let normal: Value = caption(&server).await.json().await.unwrap();
    let listed: Value = reqwest::get(server.endpoint("/chaos")).await.unwrap().json().await.unwrap();
    assert_eq!(listed, json!({"faults": []}));

    // A bad fault names its key; nothing is injected.
    let response = inject(&server, json!({"kind": "errors", "share": 2})).await;
    assert_eq!(response.status(), 400);
    let body: Value = response.json().await.unwrap();
    assert!(body["error"].as_str().unwrap().contains("share"), "{body}");
    assert_eq!(inject(&server, json!({"kind": "meteor"})).await.status(), 400);

    // errors: exactly half of the caption requests fail with the chosen 5xx.
    let created = inject(&server, json!({"kind": "errors", "share": 0.5, "status": 503, "duration_s": 60})).await;
    assert_eq!(created.status(), 201);
    let fault: Value = created.json().await.unwrap();
    assert_eq!((fault["kind"].as_str(), fault["status"].as_u64()), (Some("errors"), Some(503)));
    let mut failed = 0;
    for _ in 0..4 {
        let response = caption(&server).await;
        if response.status() == 503 {
            assert_eq!(response.json::<Value>().await.unwrap()["error_type"], "chaos_injected");
            failed += 1;
        } else {
            assert_eq!(response.status(), 200);
        }
    }
    assert_eq!(failed, 2);
    assert_eq!(status_of(&server, "/health").await, 200, "errors hit /caption only");
    let metrics = reqwest::get(server.endpoint("/metrics")).await.unwrap().text().await.unwrap();
    assert!(metrics.contains(r#"capwatch_chaos_active{kind="errors"} 1"#), "{metrics}");
    assert!(metrics.contains(r#"capwatch_chaos_hits_total{kind="errors"} 2"#), "{metrics}");
    assert_eq!(clear(&server).await, 1);
    assert_eq!(caption(&server).await.status(), 200);

    // latency: every request is held at least that long.
    inject(&server, json!({"kind": "latency", "latency_ms": 300})).await;
    let started = Instant::now();
    assert_eq!(caption(&server).await.status(), 200);
    assert!(started.elapsed() >= Duration::from_millis(300), "{:?}", started.elapsed());
    clear(&server).await;

    // garbage: a 200 with other words; the model's caption again once cleared.
    inject(&server, json!({"kind": "garbage"})).await;
    let garbage: Value = caption(&server).await.json().await.unwrap();
    assert_ne!(garbage["caption"], normal["caption"]);
    clear(&server).await;
    let again: Value = caption(&server).await.json().await.unwrap();
    assert_eq!(again["caption"], normal["caption"]);
    server.stop().await.unwrap();
}

#[tokio::test]
async fn unready_hang_and_slow_decoder_end_by_themselves() {
    let server = chaos_server().await;
    let normal: Value = caption(&server).await.json().await.unwrap();

    // unready: /ready 503 and /health unhealthy until the fault ends (after 1 s).
    inject(&server, json!({"kind": "unready", "duration_s": 1})).await;
    assert_eq!(status_of(&server, "/ready").await, 503);
    let health = reqwest::get(server.endpoint("/health")).await.unwrap();
    assert_eq!(health.status(), 503);
    assert_eq!(health.json::<Value>().await.unwrap()["status"], "unhealthy");
    let deadline = Instant::now() + Duration::from_secs(10);
    while status_of(&server, "/ready").await != 200 {
        assert!(Instant::now() < deadline, "unready never ended");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let listed: Value = reqwest::get(server.endpoint("/chaos")).await.unwrap().json().await.unwrap();
    assert_eq!(listed["faults"], json!([]), "the ended fault is gone");

    // hang: /health does not answer while it lasts, then answers.
    inject(&server, json!({"kind": "hang", "duration_s": 1})).await;
    let started = Instant::now();
    let held = reqwest::Client::new().get(server.endpoint("/health")).timeout(Duration::from_millis(400)).send().await;
    assert!(held.is_err(), "a hung /health answered: {held:?}");
    assert_eq!(status_of(&server, "/health").await, 200, "answers once the hang is over");
    assert!(started.elapsed() >= Duration::from_millis(900));

    // slow_decoder: each decoding step takes the added time; captions stay right.
    inject(&server, json!({"kind": "slow_decoder", "step_delay_ms": 40, "duration_s": 30})).await;
    let slow: Value = caption(&server).await.json().await.unwrap();
    let steps = slow["tokens"].as_f64().unwrap();
    assert!(slow["timings_ms"]["decoder"].as_f64().unwrap() >= 40.0 * steps, "{slow}");
    assert_eq!(slow["caption"], normal["caption"]);
    let metrics = reqwest::get(server.endpoint("/metrics")).await.unwrap().text().await.unwrap();
    assert!(metrics.contains(r#"capwatch_chaos_active{kind="slow_decoder"} 1"#), "{metrics}");
    assert_eq!(clear(&server).await, 1);
    server.stop().await.unwrap();
}

#[test]
fn crash_exits_with_its_status() {
    let (mut child, url, _lines) = spawn_server(&fixture(MODEL), &["--chaos"]);
    common::wait_ready(&url);
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let response = runtime
        .block_on(
            reqwest::Client::new().post(format!("{url}/chaos")).json(&json!({"kind": "crash", "exit_code": 71})).send(),
        )
        .unwrap();
    assert_eq!(response.status(), 201);
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        if let Some(status) = child.0.try_wait().unwrap() {
            assert_eq!(status.code(), Some(71));
            break;
        }
        assert!(Instant::now() < deadline, "the server did not crash");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// This machine's address on its network (not loopback): the local end of a UDP socket
/// "connected" to a documentation address (no packet is sent).
fn network_address() -> std::net::IpAddr {
    let socket = std::net::UdpSocket::bind("0.0.0.0:0").unwrap();
    socket.connect("192.0.2.1:9").expect("this test needs a network interface besides loopback");
    let address = socket.local_addr().unwrap().ip();
    assert!(!address.is_loopback() && !address.is_unspecified(), "no network address: {address}");
    address
}

#[tokio::test]
async fn chaos_answers_only_loopback_even_when_the_server_listens_everywhere() {
    let config = capwatch::config::ServiceConfig {
        model_dir: fixture(MODEL),
        chaos: true,
        workers: std::num::NonZeroUsize::new(1),
        ..Default::default()
    };
    let listener = tokio::net::TcpListener::bind("0.0.0.0:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let handle = tokio::spawn(capwatch::server::run(config, listener, async move {
        let _ = stop_rx.await;
    }));
    let local = format!("http://127.0.0.1:{port}");
    let remote = format!("http://{}:{port}", network_address());
    let client = reqwest::Client::builder().no_proxy().build().unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    while client.get(format!("{local}/ready")).send().await.map_or(true, |r| r.status() != 200) {
        assert!(Instant::now() < deadline, "never ready");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // From the network address: the server answers, but /chaos does not exist.
    assert_eq!(client.get(format!("{remote}/health")).send().await.unwrap().status(), 200);
    for request in [
        client.post(format!("{remote}/chaos")).json(&json!({"kind": "crash"})),
        client.get(format!("{remote}/chaos")),
        client.delete(format!("{remote}/chaos")),
    ] {
        let response = request.send().await.unwrap();
        assert_eq!(response.status(), 404);
        assert_eq!(response.json::<Value>().await.unwrap()["error_type"], "not_found");
    }
    // From loopback it works; the crash above never happened.
    let listed = client.get(format!("{local}/chaos")).send().await.unwrap();
    assert_eq!(listed.status(), 200);
    assert_eq!(listed.json::<Value>().await.unwrap()["faults"], json!([]));
    let _ = stop_tx.send(());
    handle.await.unwrap().unwrap();
}

#[test]
fn monitor_with_chaos_follows_faults_started_elsewhere() {
    let _machine = common::whole_machine();
    let (_server, url, _lines) = spawn_server(&fixture(MODEL), &["--chaos"]);
    common::wait_ready(&url);
    let (dir, config) = common::monitor_config(
        "monitor-chaos",
        &[
            ("health_interval_s: 30", "health_interval_s: 0.5"),
            ("inference_interval_s: 10", "inference_interval_s: 0.5"),
        ],
    );
    // A fault from someone else (curl, a script) before and while the monitor watches.
    let fault = json!({"kind": "garbage", "duration_s": 2.5});
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let status = runtime.block_on(async {
        reqwest::Client::new().post(format!("{url}/chaos")).json(&fault).send().await.unwrap().status()
    });
    assert_eq!(status, 201);
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_capwatch"))
        .args(["monitor", "--url", &url, "--chaos", "--headless", "--duration", "6s", "--config"])
        .arg(&config)
        .current_dir(common::repo_path(""))
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(stdout.contains("⚡ Fault 1 started: garbage captions"), "{stdout}");
    assert!(stdout.contains("⚡ Fault 1 ended (expired)"), "{stdout}");
    let records = common::read_records(&dir.join("logs"));
    let faults: Vec<_> = records.iter().filter(|r| r["type"] == "fault").collect();
    assert_eq!(faults.len(), 2, "{faults:#?}");
    assert_eq!(faults[1]["ended_by"], "expired");
    assert!(faults[1]["hits"].as_u64().unwrap() > 0, "the monitor's own probes were hit");
    assert!(stdout.contains("## Injected faults"), "the summary lists it:\n{stdout}");
    let _ = std::fs::remove_dir_all(&dir);
}
