//! What the benchmark examples share: a capwatch server in this process on 127.0.0.1:0.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use capwatch::config::ServiceConfig;

/// A server started with `config`, ready, and a way to stop it.
pub struct LocalServer {
    pub url: String,
    stop_tx: tokio::sync::oneshot::Sender<()>,
    handle: tokio::task::JoinHandle<Result<(), capwatch::server::ServerError>>,
}

impl LocalServer {
    /// Binds a free loopback port, starts the server and waits for `/ready`.
    pub async fn start(config: ServiceConfig) -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
        let handle = tokio::spawn(capwatch::server::run(config, listener, async move {
            let _ = stop_rx.await;
        }));
        let client = reqwest::Client::new();
        while !client.get(format!("{url}/ready")).send().await.is_ok_and(|r| r.status().is_success()) {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        Self { url, stop_tx, handle }
    }

    /// Graceful stop; panics if the server failed.
    pub async fn stop(self) {
        let _ = self.stop_tx.send(());
        self.handle.await.unwrap().unwrap();
    }
}
