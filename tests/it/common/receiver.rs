//! A local HTTP receiver on 127.0.0.1:0 standing in for Slack, Telegram and webhooks: it
//! records every request (method, path, query, headers, JSON body) and answers by path:
//! `/fail…` 500, `/slow…` after 2 s, `/reject…` 404, `/bot<token>/sendMessage` like the
//! Bot API, anything else 200 `ok`. It runs on its own thread, so sync and async tests
//! can both use it. [`Receiver::start_tls`] serves HTTPS with a certificate from a CA made
//! for the test.

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
        Self::serve("127.0.0.1:0", None)
    }

    /// A receiver at a given address: one that comes up where a sink was refused before.
    pub fn start_at(address: &str) -> Self {
        Self::serve(address, None)
    }

    /// An HTTPS receiver, and the PEM of the CA that signed its certificate (for 127.0.0.1).
    pub fn start_tls() -> (Self, String) {
        let pki = super::pki::ca_signed_localhost();
        let provider = Arc::new(tokio_rustls::rustls::crypto::ring::default_provider());
        let config = tokio_rustls::rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_no_client_auth()
            .with_single_cert(
                vec![pki.cert.der().clone()],
                tokio_rustls::rustls::pki_types::PrivateKeyDer::try_from(pki.key.serialize_der()).unwrap(),
            )
            .unwrap();
        (Self::serve("127.0.0.1:0", Some(tokio_rustls::TlsAcceptor::from(Arc::new(config)))), pki.ca.pem())
    }

    fn serve(address: &str, tls: Option<tokio_rustls::TlsAcceptor>) -> Self {
        let address = address.to_owned();
        let requests = Arc::new(Mutex::new(Vec::new()));
        let (url_tx, url_rx) = std::sync::mpsc::channel();
        let recorded = Arc::clone(&requests);
        std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
            runtime.block_on(async move {
                let listener = tokio::net::TcpListener::bind(&address).await.unwrap();
                let scheme = if tls.is_some() { "https" } else { "http" };
                url_tx.send(format!("{scheme}://{}", listener.local_addr().unwrap())).unwrap();
                let app =
                    axum::Router::new().fallback(move |method: Method, uri: Uri, headers: HeaderMap, body: Bytes| {
                        let recorded = Arc::clone(&recorded);
                        async move { answer(&recorded, method, uri, headers, body).await }
                    });
                let Some(acceptor) = tls else {
                    axum::serve(listener, app).await.unwrap();
                    return;
                };
                loop {
                    let (stream, _) = listener.accept().await.unwrap();
                    let (acceptor, app) = (acceptor.clone(), app.clone());
                    tokio::spawn(async move {
                        // A client that rejects the certificate ends the handshake: nothing to serve.
                        let Ok(stream) = acceptor.accept(stream).await else { return };
                        let service = hyper_util::service::TowerToHyperService::new(app);
                        let builder =
                            hyper_util::server::conn::auto::Builder::new(hyper_util::rt::TokioExecutor::new());
                        let _ = builder.serve_connection(hyper_util::rt::TokioIo::new(stream), service).await;
                    });
                }
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
