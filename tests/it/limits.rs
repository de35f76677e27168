//! Slow and idle clients (`service.limits`) against the real `capwatch serve`: a thousand
//! connections that send their headers and three bytes of a 100,000-byte body are answered
//! `408` and closed after the body timeout while a normal caption keeps being answered; a
//! request head that never ends, and a connection that never asks, are closed; a body over
//! `max_body_bytes` is refused with `413` before it is sent; connections past the cap are
//! closed at once. Every closing is counted in `/metrics`.

use crate::common;

use std::time::{Duration, Instant};

use common::repo_path;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const SLOW_CLIENTS: usize = 1000;

/// The server's `capwatch_connections_closed_total{reason}` and `capwatch_connections_open`.
async fn connection_series(url: &str) -> (f64, f64, f64, f64) {
    let text = reqwest::get(format!("{url}/metrics")).await.unwrap().text().await.unwrap();
    let series = common::parse_openmetrics(&text);
    let closed = |reason: &str| {
        series
            .iter()
            .find(|(name, labels, _)| name == "capwatch_connections_closed_total" && labels["reason"] == reason)
            .map_or(0.0, |(_, _, value)| *value)
    };
    let open = series.iter().find(|(name, _, _)| name == "capwatch_connections_open").map_or(f64::NAN, |s| s.2);
    (closed("body_timeout"), closed("header_timeout"), closed("idle_timeout"), open)
}

/// Everything the server sends on `stream` until it closes it (or 60 s pass).
async fn read_to_close(mut stream: TcpStream) -> String {
    let mut answer = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(60), stream.read_to_end(&mut answer)).await;
    assert!(
        read.is_ok(),
        "the server kept the connection open for 60 s; it sent: {}",
        String::from_utf8_lossy(&answer)
    );
    String::from_utf8_lossy(&answer).into_owned()
}

fn raise_open_files_limit() {
    use nix::sys::resource::{Resource, getrlimit, setrlimit};
    let (soft, hard) = getrlimit(Resource::RLIMIT_NOFILE).unwrap();
    let wanted = (4 * SLOW_CLIENTS as u64).min(hard);
    if soft < wanted {
        setrlimit(Resource::RLIMIT_NOFILE, wanted, hard).unwrap();
    }
    assert!(wanted > SLOW_CLIENTS as u64 + 100, "the open-files hard limit ({hard}) is too low for this test");
}

#[tokio::test]
async fn slow_and_idle_clients_are_dropped_while_captions_keep_being_answered() {
    raise_open_files_limit();
    let (dir, config) = common::monitor_config(
        "limits",
        &[
            ("header_timeout_s: 10 ", "header_timeout_s: 2 "),
            ("body_timeout_s: 30 ", "body_timeout_s: 2 "),
            ("idle_timeout_s: 60 ", "idle_timeout_s: 3 "),
            ("max_connections: 2048 ", "max_connections: 1500 "),
        ],
    );
    let (_server, url, _lines) =
        common::spawn_server(&repo_path("models/default"), &["--config", config.to_str().unwrap()]);
    let ready_url = url.clone();
    tokio::task::spawn_blocking(move || common::wait_ready(&ready_url)).await.unwrap();
    let address = url.trim_start_matches("http://").to_owned();

    // A thousand clients send their headers and three bytes of the body, then nothing.
    let head = "POST /caption HTTP/1.1\r\nHost: x\r\nContent-Type: image/png\r\nContent-Length: 100000\r\n\r\nabc";
    let mut slow = Vec::with_capacity(SLOW_CLIENTS);
    for _ in 0..SLOW_CLIENTS {
        let mut stream = TcpStream::connect(&address).await.unwrap();
        stream.write_all(head.as_bytes()).await.unwrap();
        slow.push(stream);
    }
    let sent_at = Instant::now();

    // While they hold their connections, a normal caption is answered.
    let image = std::fs::read(repo_path("test_images/a_small_yellow_square.png")).unwrap();
    let answer = reqwest::Client::new()
        .post(format!("{url}/caption"))
        .header("content-type", "image/png")
        .body(image)
        .send()
        .await
        .unwrap();
    assert_eq!(answer.status(), 200, "{}", answer.text().await.unwrap());
    // Each slow client gets a 408 with the JSON error shape, and the connection is closed.
    let readers: Vec<_> = slow.into_iter().map(|stream| tokio::spawn(read_to_close(stream))).collect();
    for reader in readers {
        let answer = reader.await.unwrap();
        assert!(answer.starts_with("HTTP/1.1 408"), "a slow client got: {answer}");
        assert!(answer.contains(r#""error_type":"body_timeout""#), "{answer}");
    }
    assert!(sent_at.elapsed() >= Duration::from_secs(2), "the body timeout is 2 s");

    // A request head that never ends is closed after the header timeout, without an answer.
    let mut unfinished = TcpStream::connect(&address).await.unwrap();
    unfinished.write_all(b"GET /health HTTP/1.1\r\nHost: x\r\nX-Slow: ").await.unwrap();
    let started = Instant::now();
    assert_eq!(read_to_close(unfinished).await, "");
    assert!(started.elapsed() >= Duration::from_millis(1500), "closed after {:?}", started.elapsed());

    // A connection that asks nothing, and a keep-alive one after its answer, are closed when idle.
    let silent = TcpStream::connect(&address).await.unwrap();
    let mut kept = TcpStream::connect(&address).await.unwrap();
    kept.write_all(b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n").await.unwrap();
    let started = Instant::now();
    assert_eq!(read_to_close(silent).await, "");
    assert!(read_to_close(kept).await.starts_with("HTTP/1.1 200"));
    assert!(started.elapsed() >= Duration::from_millis(2500), "closed after {:?}", started.elapsed());

    // A body over the limit is refused from its Content-Length, before any of it is sent.
    let mut large = TcpStream::connect(&address).await.unwrap();
    let too_large = 20 * 1024 * 1024;
    let head =
        format!("POST /caption HTTP/1.1\r\nHost: x\r\nContent-Type: image/png\r\nContent-Length: {too_large}\r\n\r\n");
    large.write_all(head.as_bytes()).await.unwrap();
    let answer = read_to_close(large).await;
    assert!(answer.starts_with("HTTP/1.1 413"), "{answer}");
    assert!(answer.contains(r#""error_type":"payload_too_large""#), "{answer}");

    // Every drop is counted.
    let (body, header, idle, open) = connection_series(&url).await;
    assert!(body >= SLOW_CLIENTS as f64, "body_timeout closings: {body}");
    assert!(header >= 1.0 && idle >= 2.0, "header_timeout {header}, idle_timeout {idle}");
    assert!(open < 10.0, "capwatch_connections_open = {open} after the clients left");
    std::fs::remove_dir_all(dir).unwrap();
}

#[tokio::test]
async fn connections_past_the_cap_are_closed_at_once_and_counted() {
    let server = common::TestServer::start(repo_path("models/default"), |config| {
        config.limits.max_connections = std::num::NonZeroUsize::new(2).unwrap();
    })
    .await;
    let address = server.url.trim_start_matches("http://").to_owned();
    // The readiness check's connection may still be open: wait until the only one open is the
    // one asking.
    let mut alone = false;
    for _ in 0..100 {
        let text = reqwest::get(server.endpoint("/metrics")).await.unwrap().text().await.unwrap();
        if text.lines().any(|line| line == "capwatch_connections_open 1") {
            alone = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(alone, "the server never got down to one open connection");
    tokio::time::sleep(Duration::from_millis(100)).await;
    let held = [TcpStream::connect(&address).await.unwrap(), TcpStream::connect(&address).await.unwrap()];
    let mut refused = 0;
    for _ in 0..3 {
        let mut extra = TcpStream::connect(&address).await.unwrap();
        // Closed at once: the read ends (EOF or reset) without waiting for any timeout.
        let mut buffer = [0u8; 64];
        let read = tokio::time::timeout(Duration::from_secs(5), extra.read(&mut buffer)).await;
        if matches!(read, Ok(Ok(0) | Err(_))) {
            refused += 1;
        }
    }
    assert_eq!(refused, 3, "each connection past the cap of 2 is closed at once");
    drop(held);
    // Once they are gone, the server answers again; the refusals are in /metrics.
    let mut metrics = None;
    for _ in 0..100 {
        if let Ok(answer) = reqwest::get(server.endpoint("/metrics")).await {
            metrics = Some(answer.text().await.unwrap());
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let metrics = metrics.expect("the server answers once the held connections are closed");
    assert!(
        metrics
            .lines()
            .any(|line| line.starts_with(r#"capwatch_connections_closed_total{reason="too_many"}"#)
                && !line.ends_with(" 0")),
        "{metrics}"
    );
    server.stop().await.unwrap();
}
