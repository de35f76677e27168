//! The accept loop: each connection served by hyper (HTTP/1.1 and HTTP/2), over TLS when
//! `service.tls` is set, within `service.limits` — at most `max_connections` at once, request
//! headers within `header_timeout_s`, an idle keep-alive connection closed after
//! `idle_timeout_s` — and a graceful stop that lets requests in flight finish. It knows
//! nothing of the routes: it serves the router it is given.

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::path::Path;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use axum::Router;
use axum::extract::ConnectInfo;
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Semaphore, watch};
use tokio_rustls::TlsAcceptor;
use tokio_rustls::rustls;
use tokio_rustls::rustls::pki_types::pem::PemObject;
use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tower::ServiceExt;

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;

use super::metrics::CloseLabels;
use crate::config::{ConnectionLimits, TlsConfig};

/// The TLS acceptor for `tls`: its certificate chain and key, HTTP/2 and HTTP/1.1 offered by
/// ALPN, rustls' safe defaults (TLS 1.2 and 1.3) on the `ring` provider. The error says which
/// file and why.
pub fn tls_acceptor(tls: &TlsConfig) -> Result<TlsAcceptor, String> {
    let unreadable = |what: &str, path: &Path, err: &dyn std::fmt::Display| {
        format!("cannot read the {what} {}: {err}", path.display())
    };
    let chain = CertificateDer::pem_file_iter(&tls.cert)
        .map_err(|err| unreadable("certificate", &tls.cert, &err))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|err| unreadable("certificate", &tls.cert, &err))?;
    if chain.is_empty() {
        return Err(format!("{} holds no PEM certificate", tls.cert.display()));
    }
    let key = PrivateKeyDer::from_pem_file(&tls.key).map_err(|err| unreadable("private key", &tls.key, &err))?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|err| format!("TLS setup failed: {err}"))?
        .with_no_client_auth()
        .with_single_cert(chain, key)
        .map_err(|err| {
            format!("{} and {} do not make a certificate and its key: {err}", tls.cert.display(), tls.key.display())
        })?;
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(TlsAcceptor::from(Arc::new(config)))
}

/// The series the accept loop keeps: connections open, and those it closed by reason.
#[derive(Debug, Clone)]
pub struct ConnectionCounters {
    pub open: Gauge,
    pub closed: Family<CloseLabels, Counter>,
}

/// Serves `app` on `listener` until `stop` resolves, then stops accepting, closes idle
/// connections, and returns once every request in flight has been answered.
pub async fn serve(
    listener: TcpListener,
    app: Router,
    tls: Option<TlsAcceptor>,
    limits: ConnectionLimits,
    counters: ConnectionCounters,
    stop: impl Future<Output = ()>,
) -> io::Result<()> {
    let max_connections = limits.max_connections.get().min(Semaphore::MAX_PERMITS);
    let slots = Arc::new(Semaphore::new(max_connections));
    let (stopping_tx, stopping_rx) = watch::channel(false);
    let mut http = auto::Builder::new(TokioExecutor::new());
    // Header and idle timeouts are the watchdog's (below), so that waiting between requests and
    // waiting for a request's head are told apart.
    http.http1().header_read_timeout(None).keep_alive(true);
    let limits = Arc::new(limits);
    tokio::pin!(stop);
    loop {
        let (stream, peer) = tokio::select! {
            () = &mut stop => break,
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(err) => {
                    // Out of file descriptors, mostly: wait a moment instead of spinning.
                    tracing::warn!(error = %err, "cannot accept a connection");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
        };
        let Ok(slot) = Arc::clone(&slots).try_acquire_owned() else {
            counters.closed.get_or_create(&CloseLabels { reason: "too_many" }).inc();
            drop(stream);
            continue;
        };
        if let Err(err) = stream.set_nodelay(true) {
            tracing::debug!(error = %err, "cannot set TCP_NODELAY");
        }
        let connection = Connection {
            app: app.clone(),
            http: http.clone(),
            tls: tls.clone(),
            limits: Arc::clone(&limits),
            counters: counters.clone(),
            stopping_rx: stopping_rx.clone(),
        };
        tokio::spawn(async move {
            let open = connection.counters.open.clone();
            open.inc();
            connection.run(stream, peer).await;
            open.dec();
            drop(slot);
        });
    }
    // Nobody may be listening any more (every connection closed): that is fine.
    let _ = stopping_tx.send(true);
    drop(listener);
    // Every connection holds a slot until it is done: all slots back means all are done.
    let all = u32::try_from(max_connections).unwrap_or(u32::MAX);
    let _every_slot = slots.acquire_many(all).await.map_err(io::Error::other)?;
    Ok(())
}

/// What one connection's task needs.
struct Connection {
    app: Router,
    http: auto::Builder<TokioExecutor>,
    tls: Option<TlsAcceptor>,
    limits: Arc<ConnectionLimits>,
    counters: ConnectionCounters,
    stopping_rx: watch::Receiver<bool>,
}

impl Connection {
    async fn run(self, stream: TcpStream, peer: SocketAddr) {
        let activity = Arc::new(Activity::new());
        let stream = Watched { inner: stream, activity: Arc::clone(&activity) };
        match self.tls.clone() {
            None => self.serve(stream, peer, activity).await,
            Some(acceptor) => {
                let handshake = tokio::time::timeout(self.limits.header_timeout_s.0, acceptor.accept(stream)).await;
                match handshake {
                    Ok(Ok(stream)) => self.serve(stream, peer, activity).await,
                    Ok(Err(err)) => {
                        tracing::debug!(%peer, error = %err, "TLS handshake failed");
                        self.closed("tls_handshake");
                    }
                    Err(_elapsed) => self.closed("tls_handshake"),
                }
            }
        }
    }

    fn closed(&self, reason: &'static str) {
        self.counters.closed.get_or_create(&CloseLabels { reason }).inc();
    }

    /// Serves requests on `io` until the client or the watchdog closes it.
    async fn serve<I>(&self, io: I, peer: SocketAddr, activity: Arc<Activity>)
    where
        I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    {
        let app = self.app.clone();
        let tracked = Arc::clone(&activity);
        let service = hyper::service::service_fn(move |mut request: hyper::Request<Incoming>| {
            request.extensions_mut().insert(ConnectInfo(peer));
            let busy = Busy::start(Arc::clone(&tracked));
            let answer = app.clone().oneshot(request.map(axum::body::Body::new));
            async move {
                let response = answer.await;
                drop(busy);
                response
            }
        });
        let connection = self.http.serve_connection(TokioIo::new(io), service);
        tokio::pin!(connection);
        let mut stopping_rx = self.stopping_rx.clone();
        let (header_timeout, idle_timeout) = (self.limits.header_timeout_s.0, self.limits.idle_timeout_s.0);
        let mut watchdog = tokio::time::interval(check_period(header_timeout, idle_timeout));
        watchdog.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut closing = false;
        loop {
            tokio::select! {
                served = connection.as_mut() => {
                    if let Err(err) = served {
                        tracing::debug!(%peer, error = %err, "connection ended with an error");
                    }
                    return;
                }
                changed = stopping_rx.changed(), if !closing => {
                    // A closed channel means the server is gone: stop too.
                    let _ = changed;
                    connection.as_mut().graceful_shutdown();
                    closing = true;
                }
                _ = watchdog.tick(), if !closing => match activity.overdue(header_timeout, idle_timeout) {
                    Some(Overdue::Head) => {
                        self.closed("header_timeout");
                        return;
                    }
                    Some(Overdue::Idle) => {
                        self.closed("idle_timeout");
                        connection.as_mut().graceful_shutdown();
                        closing = true;
                    }
                    None => {}
                },
            }
        }
    }
}

/// How often a connection's watchdog looks: a fifth of the shorter timeout, within 50 ms–1 s.
fn check_period(header_timeout: Duration, idle_timeout: Duration) -> Duration {
    (header_timeout.min(idle_timeout) / 5).clamp(Duration::from_millis(50), Duration::from_secs(1))
}

/// What a connection has been doing, as the watchdog needs it.
#[derive(Debug)]
struct Activity {
    started: Instant,
    /// Requests being answered now.
    in_flight: AtomicUsize,
    /// When the last answer finished (or the connection opened), ms after `started`.
    quiet_since_ms: AtomicU64,
    /// When a byte first arrived since then (a request's head on its way), ms after `started`;
    /// [`NOTHING`] while none has.
    head_since_ms: AtomicU64,
}

const NOTHING: u64 = u64::MAX;

/// Which timeout a connection has run past.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Overdue {
    /// A request's head began but did not finish within the header timeout.
    Head,
    /// No request began within the idle timeout.
    Idle,
}

impl Activity {
    fn new() -> Self {
        Self {
            started: Instant::now(),
            in_flight: AtomicUsize::new(0),
            quiet_since_ms: AtomicU64::new(0),
            head_since_ms: AtomicU64::new(NOTHING),
        }
    }

    fn now_ms(&self) -> u64 {
        u64::try_from(self.started.elapsed().as_millis()).unwrap_or(NOTHING - 1)
    }

    /// Bytes arrived: while no request is being answered, a head is on its way.
    fn read_bytes(&self) {
        if self.in_flight.load(Ordering::Acquire) == 0 && self.head_since_ms.load(Ordering::Acquire) == NOTHING {
            self.head_since_ms.store(self.now_ms(), Ordering::Release);
        }
    }

    /// Which timeout has passed, if one has; none while a request is being answered (its body
    /// has its own deadline, and the answer the request timeout).
    fn overdue(&self, header_timeout: Duration, idle_timeout: Duration) -> Option<Overdue> {
        if self.in_flight.load(Ordering::Acquire) > 0 {
            return None;
        }
        let now = self.now_ms();
        let past = |since: u64, timeout: Duration| now.saturating_sub(since) >= duration_ms(timeout);
        match self.head_since_ms.load(Ordering::Acquire) {
            NOTHING => past(self.quiet_since_ms.load(Ordering::Acquire), idle_timeout).then_some(Overdue::Idle),
            since => past(since, header_timeout).then_some(Overdue::Head),
        }
    }
}

fn duration_ms(duration: Duration) -> u64 {
    u64::try_from(duration.as_millis()).unwrap_or(u64::MAX)
}

/// A request being answered; dropped when its answer is ready (or it was cancelled).
struct Busy(Arc<Activity>);

impl Busy {
    fn start(activity: Arc<Activity>) -> Self {
        activity.in_flight.fetch_add(1, Ordering::AcqRel);
        Self(activity)
    }
}

impl Drop for Busy {
    fn drop(&mut self) {
        let activity = &self.0;
        activity.quiet_since_ms.store(activity.now_ms(), Ordering::Release);
        activity.head_since_ms.store(NOTHING, Ordering::Release);
        activity.in_flight.fetch_sub(1, Ordering::AcqRel);
    }
}

/// A stream that tells its [`Activity`] when bytes arrive.
struct Watched<S> {
    inner: S,
    activity: Arc<Activity>,
}

impl<S: AsyncRead + Unpin> AsyncRead for Watched<S> {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let polled = Pin::new(&mut self.inner).poll_read(cx, buf);
        if buf.filled().len() > before {
            self.activity.read_bytes();
        }
        polled
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Watched<S> {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_connection_is_idle_until_bytes_come_and_busy_while_answering() {
        let activity = Arc::new(Activity::new());
        let (head, idle) = (Duration::ZERO, Duration::ZERO);
        assert_eq!(activity.overdue(head, idle), Some(Overdue::Idle));
        activity.read_bytes();
        assert_eq!(activity.overdue(head, idle), Some(Overdue::Head));
        let busy = Busy::start(Arc::clone(&activity));
        activity.read_bytes();
        assert_eq!(activity.overdue(head, idle), None, "a request being answered is never overdue");
        drop(busy);
        assert_eq!(activity.overdue(head, idle), Some(Overdue::Idle), "after the answer it waits for the next head");
        let long = Duration::from_secs(3600);
        assert_eq!(activity.overdue(long, long), None);
    }

    #[test]
    fn the_watchdog_looks_often_enough_and_not_too_often() {
        assert_eq!(check_period(Duration::from_secs(10), Duration::from_secs(60)), Duration::from_secs(1));
        assert_eq!(check_period(Duration::from_secs(1), Duration::from_secs(60)), Duration::from_millis(200));
        assert_eq!(check_period(Duration::from_millis(10), Duration::from_secs(60)), Duration::from_millis(50));
    }
}
