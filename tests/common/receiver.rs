//! A local HTTP receiver on 127.0.0.1:0 standing in for Slack, Telegram and webhooks: it
//! records every request (method, path, query, headers, JSON body) and answers by path:
//! `/fail…` 500, `/slow…` after 2 s, `/reject…` 404, `/bot<token>/sendMessage` like the
//! Bot API, anything else 200 `ok`. It runs on its own thread, so sync and async tests
//! can both use it.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Bytes;
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::IntoResponse;
use serde_json::Value;

/// One request as the receiver saw it.
#[derive(Debug, Clone)]
pub struct Received {
    pub method: String,
    pub path: String,
    pub query: Option<String>,
    pub authorization: Option<String>,
    pub content_type: Option<String>,
    pub body: Value,
}

pub struct Receiver {
    pub url: String,
    requests: Arc<Mutex<Vec<Received>>>,
}

impl Receiver {
    pub fn start() -> Self {
        let requests = Arc::new(Mutex::new(Vec::new()));
        let (url_tx, url_rx) = std::sync::mpsc::channel();
        let recorded = Arc::clone(&requests);
        std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
            runtime.block_on(async move {
                let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
                url_tx.send(format!("http://{}", listener.local_addr().unwrap())).unwrap();
                let app =
                    axum::Router::new().fallback(move |method: Method, uri: Uri, headers: HeaderMap, body: Bytes| {
                        let recorded = Arc::clone(&recorded);
                        async move { answer(&recorded, method, uri, headers, body).await }
                    });
                axum::serve(listener, app).await.unwrap();
            });
        });
        let url = url_rx.recv_timeout(Duration::from_secs(10)).unwrap();
        Self { url, requests }
    }

    /// Requests whose path starts with `prefix`, in arrival order.
    pub fn requests(&self, prefix: &str) -> Vec<Received> {
        self.requests.lock().unwrap().iter().filter(|r| r.path.starts_with(prefix)).cloned().collect()
    }
}

async fn answer(
    recorded: &Mutex<Vec<Received>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> axum::response::Response {
    let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok()).map(str::to_owned);
    let path = uri.path().to_owned();
    recorded.lock().unwrap().push(Received {
        method: method.to_string(),
        path: path.clone(),
        query: uri.query().map(str::to_owned),
        authorization: header("authorization"),
        content_type: header("content-type"),
        body: serde_json::from_slice(&body).unwrap_or(Value::Null),
    });
    if path.starts_with("/fail") {
        (StatusCode::INTERNAL_SERVER_ERROR, "upstream exploded").into_response()
    } else if path.starts_with("/reject") {
        (StatusCode::NOT_FOUND, "no_service").into_response()
    } else if path.starts_with("/slow") {
        tokio::time::sleep(Duration::from_secs(2)).await;
        (StatusCode::OK, "ok").into_response()
    } else if path.starts_with("/bot") && path.ends_with("/sendMessage") {
        let body = serde_json::json!({"ok": true, "result": {"message_id": 1}});
        (StatusCode::OK, axum::Json(body)).into_response()
    } else {
        (StatusCode::OK, "ok").into_response()
    }
}

/// A URL on which nothing listens: connections are refused.
pub fn refused_url() -> String {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let address = listener.local_addr().unwrap();
    drop(listener);
    format!("http://{address}/hook")
}
