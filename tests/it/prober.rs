//! The prober against a real server (captions, health, HTTP errors, a stopped server) and
//! against a local stand-in that answers garbage or nothing at all.

use crate::common;

use std::time::Duration;

use bytes::Bytes;
use capwatch::config::{Config, ServicePreset};
use capwatch::dash::contract::ProbeContract;
use capwatch::dash::prober::{ProbeError, ProbeImage, Prober};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use common::{TestServer, repo_path};

fn images() -> Vec<ProbeImage> {
    let config = Config::load(&repo_path("config/monitoring_config.yaml")).unwrap();
    ProbeImage::load_all(&config.quality.test_images, &repo_path("")).unwrap()
}

#[tokio::test]
async fn captions_health_and_failures_against_the_real_server() {
    let server = TestServer::start(repo_path("models/default"), |_| {}).await;
    let prober = Prober::new(Duration::from_secs(10), ProbeContract::preset(ServicePreset::Capwatch), None).unwrap();
    let images = images();
    let scene = images.iter().find(|i| i.name == "a_small_red_triangle.jpg").unwrap();
    let probe = prober.caption(&server.url, scene, None).await;
    let result = probe.result.unwrap();
    assert_eq!(result.caption, "a small red triangle");
    assert_eq!(result.quality.score(), 1.0);
    let (model_time, server_total) = (result.model_time.unwrap(), result.server_total.unwrap());
    assert!(model_time > Duration::ZERO && server_total >= model_time);
    assert!(probe.latency >= server_total);

    let noise = images.iter().find(|i| i.name == "noise.png").unwrap();
    assert!(prober.caption(&server.url, noise, None).await.result.unwrap().quality.score() < 1.0);

    let health = prober.health(&server.url).await;
    assert!(health.is_healthy(), "{health:?}");
    let body = health.result.unwrap();
    assert_eq!(body.model.as_deref(), Some("default"));
    assert!(body.workers_alive.is_some_and(|n| n >= 1), "capwatch's own fields are read: {body:?}");

    let garbage = ProbeImage {
        name: "x".into(),
        bytes: Bytes::from_static(b"not an image"),
        content_type: "image/png",
        keywords: vec![],
    };
    assert_eq!(prober.caption(&server.url, &garbage, None).await.result.unwrap_err(), ProbeError::Http(415));

    let url = server.url.clone();
    server.stop().await.unwrap();
    assert_eq!(prober.caption(&url, scene, None).await.result.unwrap_err(), ProbeError::ConnectionRefused);
    assert_eq!(prober.health(&url).await.result.unwrap_err(), ProbeError::ConnectionRefused);
}

/// A local TCP stand-in: answers every connection with `reply` (or holds it open if None).
async fn stand_in(reply: Option<&'static str>) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move {
        loop {
            let (mut socket, _) = listener.accept().await.unwrap();
            tokio::spawn(async move {
                let mut buffer = vec![0u8; 65536];
                let _ = socket.read(&mut buffer).await;
                match reply {
                    Some(reply) => {
                        let _ = socket.write_all(reply.as_bytes()).await;
                    }
                    None => tokio::time::sleep(Duration::from_secs(30)).await,
                }
            });
        }
    });
    url
}

#[tokio::test]
async fn bad_bodies_and_timeouts_are_classified() {
    let images = images();
    let prober = Prober::new(Duration::from_millis(300), ProbeContract::preset(ServicePreset::Capwatch), None).unwrap();
    let not_json = stand_in(Some("HTTP/1.1 200 OK\r\ncontent-length: 8\r\nconnection: close\r\n\r\nnot json")).await;
    let probe = prober.caption(&not_json, &images[0], None).await;
    assert!(
        matches!(&probe.result, Err(ProbeError::Shape(what)) if what.starts_with("the answer is not JSON")),
        "{probe:?}"
    );
    let error =
        stand_in(Some("HTTP/1.1 500 Internal Server Error\r\ncontent-length: 0\r\nconnection: close\r\n\r\n")).await;
    assert_eq!(prober.health(&error).await.result.unwrap_err(), ProbeError::Http(500));
    assert_eq!(ProbeError::Http(500).kind(), "http_5xx");
    let silent = stand_in(None).await;
    let probe = prober.caption(&silent, &images[0], None).await;
    assert_eq!(probe.result.unwrap_err(), ProbeError::Timeout);
    assert!(probe.latency >= Duration::from_millis(300));
}
