//! Shared helpers for integration tests: fixture paths, an in-process server on
//! 127.0.0.1:0 with a real model, and test images drawn in memory.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::io::Cursor;
use std::path::PathBuf;
use std::time::Duration;

use capwatch::config::ServiceConfig;
use capwatch::server::{self, ServerError};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

pub fn repo_path(relative: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(relative)
}

pub fn fixture(relative: &str) -> PathBuf {
    repo_path("tests/fixtures").join(relative)
}

/// A real server in this process, on a free loopback port.
pub struct TestServer {
    pub url: String,
    stop_tx: Option<oneshot::Sender<()>>,
    handle: Option<JoinHandle<Result<(), ServerError>>>,
}

impl TestServer {
    /// Starts a server for `model_dir`, applies `tweak` to the config, waits for `/ready`.
    pub async fn start(model_dir: PathBuf, tweak: impl FnOnce(&mut ServiceConfig)) -> Self {
        let mut config = ServiceConfig { model_dir, port: 0, ..ServiceConfig::default() };
        config.workers = std::num::NonZeroUsize::new(1).unwrap();
        tweak(&mut config);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let (stop_tx, stop_rx) = oneshot::channel::<()>();
        let handle = tokio::spawn(server::run(config, listener, async move {
            let _ = stop_rx.await;
        }));
        let server = Self { url, stop_tx: Some(stop_tx), handle: Some(handle) };
        server.wait_ready().await;
        server
    }

    async fn wait_ready(&self) {
        let client = reqwest::Client::new();
        for _ in 0..600 {
            if let Ok(response) = client.get(format!("{}/ready", self.url)).send().await
                && response.status() == 200
            {
                return;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("server at {} never became ready", self.url);
    }

    pub fn endpoint(&self, path: &str) -> String {
        format!("{}{path}", self.url)
    }

    /// Graceful stop; returns what `server::run` returned.
    pub async fn stop(mut self) -> Result<(), ServerError> {
        if let Some(tx) = self.stop_tx.take() {
            let _ = tx.send(());
        }
        self.handle.take().unwrap().await.unwrap()
    }
}

pub fn encode(image: &image::DynamicImage, format: image::ImageFormat) -> Vec<u8> {
    let mut bytes = Vec::new();
    image.write_to(&mut Cursor::new(&mut bytes), format).unwrap();
    bytes
}

/// A colourful RGB test picture of the given size, as PNG bytes.
pub fn png(width: u32, height: u32) -> Vec<u8> {
    let image = image::RgbImage::from_fn(width, height, |x, y| {
        image::Rgb([(x * 7 % 256) as u8, (y * 5 % 256) as u8, ((x + y) % 256) as u8])
    });
    encode(&image::DynamicImage::ImageRgb8(image), image::ImageFormat::Png)
}

/// A large but well-compressible PNG (a smooth gradient): slow to decode, small to send.
pub fn smooth_png(width: u32, height: u32) -> Vec<u8> {
    let image =
        image::RgbImage::from_fn(width, height, |x, y| image::Rgb([(x / 32 % 256) as u8, (y / 32 % 256) as u8, 128]));
    encode(&image::DynamicImage::ImageRgb8(image), image::ImageFormat::Png)
}

/// Whether a process is running (a zombie does not count).
pub fn alive(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|stat| !stat.contains(") Z "))
}

/// A fresh scratch directory holding a copy of the shipped config for a monitor test: port
/// 0, logs inside the directory, then each `(from, to)` replacement applied in order.
pub fn monitor_config(name: &str, replacements: &[(&str, &str)]) -> (PathBuf, PathBuf) {
    let dir = std::env::temp_dir().join(format!("capwatch-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let logs = format!("  dir: {}", dir.join("logs").display());
    let mut text = std::fs::read_to_string(repo_path("config/monitoring_config.yaml"))
        .unwrap()
        .replace("port: 8000", "port: 0")
        .replace("  dir: logs", &logs);
    for (from, to) in replacements {
        assert!(text.contains(from), "the shipped config has no `{from}`");
        text = text.replace(from, to);
    }
    let path = dir.join("config.yaml");
    std::fs::write(&path, text).unwrap();
    (dir, path)
}
