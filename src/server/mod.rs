//! Serving a router (feature `server`): plain TCP or TLS ([`tls`]), with the limits an
//! exposed registry needs against abusive clients ([`ServeOptions`]):
//!
//! - at most [`max_connections`](ServeOptions::max_connections) connections at once; more
//!   wait in the listen backlog until one closes;
//! - the TLS handshake, the first byte of a new connection's first request, and every
//!   request's header must arrive within
//!   [`header_read_timeout`](ServeOptions::header_read_timeout) (slowloris; a connection
//!   that sends nothing holds a slot only that long);
//! - a connection on which no byte moved either way for
//!   [`idle_timeout`](ServeOptions::idle_timeout) is closed (stalled bodies, idle keep-alive).
//!
//! HTTP/1.1 and HTTP/2 are both served (over TLS, chosen by ALPN; in clear text, HTTP/2
//! with prior knowledge).

pub mod config;
pub mod reload;
pub mod tls;

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use axum::Router;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::service::TowerToHyperService;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;

pub use tls::{TlsFiles, TlsReloader};

/// Connection limits.
#[derive(Debug, Clone)]
pub struct ServeOptions {
    /// Most connections served at once (0 is taken as 1).
    pub max_connections: usize,
    /// Time allowed for the TLS handshake, for a new connection's first byte and for each
    /// request's header.
    pub header_read_timeout: Duration,
    /// A connection without any byte read or written for this long is closed.
    pub idle_timeout: Duration,
    /// How long in-flight requests may run after shutdown was requested.
    pub shutdown_grace: Duration,
}

/// Default [`ServeOptions::max_connections`].
pub const DEFAULT_MAX_CONNECTIONS: usize = 1024;
/// Default [`ServeOptions::header_read_timeout`].
pub const DEFAULT_HEADER_READ_TIMEOUT: Duration = Duration::from_secs(30);
/// Default [`ServeOptions::idle_timeout`].
pub const DEFAULT_IDLE_TIMEOUT: Duration = Duration::from_secs(120);

impl Default for ServeOptions {
    fn default() -> Self {
        Self {
            max_connections: DEFAULT_MAX_CONNECTIONS,
            header_read_timeout: DEFAULT_HEADER_READ_TIMEOUT,
            idle_timeout: DEFAULT_IDLE_TIMEOUT,
            shutdown_grace: Duration::from_secs(30),
        }
    }
}

/// Serves `app` on `listener` until `shutdown` completes, then lets in-flight requests
/// finish (up to [`ServeOptions::shutdown_grace`]). With `tls`, every connection is
/// accepted with the reloader's current configuration.
pub async fn serve(
    listener: TcpListener,
    app: Router,
    options: ServeOptions,
    tls: Option<Arc<TlsReloader>>,
    shutdown: impl Future<Output = ()> + Send,
) -> io::Result<()> {
    let slots = Arc::new(Semaphore::new(options.max_connections.max(1)));
    let graceful = hyper_util::server::graceful::GracefulShutdown::new();
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(options.header_read_timeout);
    builder.http2().timer(TokioTimer::new());
    let builder = Arc::new(builder);
    let mut shutdown = std::pin::pin!(shutdown);
    loop {
        let permit = tokio::select! {
            p = Arc::clone(&slots).acquire_owned() => p.expect("semaphore never closed"),
            () = &mut shutdown => break,
        };
        let (tcp, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(e) => {
                    // Out of file descriptors and the like: wait a little, keep serving.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        // Responses are written whole; Nagle's algorithm would only delay the last segment.
        let _ = tcp.set_nodelay(true);
        // The client's address, for handlers and middleware (`ConnectInfo`, as `axum::serve`
        // would give it): notification events report it.
        let app = tower_layer::Layer::layer(
            &axum::Extension(axum::extract::ConnectInfo(peer)),
            app.clone(),
        );
        let service = TowerToHyperService::new(app);
        let builder = Arc::clone(&builder);
        let tls = tls.as_ref().map(|t| t.acceptor());
        let options = options.clone();
        let watcher = graceful.watcher();
        tokio::spawn(async move {
            let _permit = permit;
            let io = match tls {
                None => Either::Plain(tcp),
                Some(acceptor) => {
                    let handshake = async {
                        if !speaks_tls(&tcp).await {
                            refuse_plain_http(tcp).await;
                            return Err(io::Error::other("plain HTTP on the TLS port"));
                        }
                        acceptor.accept(tcp).await
                    };
                    match tokio::time::timeout(options.header_read_timeout, handshake).await {
                        Ok(Ok(stream)) => Either::Tls(Box::new(stream)),
                        Ok(Err(e)) => {
                            tracing::debug!(error = %e, "TLS handshake failed");
                            return;
                        }
                        Err(_) => {
                            tracing::debug!("TLS handshake timed out");
                            return;
                        }
                    }
                }
            };
            // From here (after a TLS handshake), the client's first byte is awaited.
            let activity = Arc::new(Activity::new());
            let io = TokioIo::new(Tracked {
                inner: io,
                activity: Arc::clone(&activity),
            });
            let conn = builder.serve_connection_with_upgrades(io, service);
            let conn = watcher.watch(conn.into_owned());
            tokio::select! {
                result = conn => {
                    if let Err(e) = result {
                        tracing::debug!(error = %e, "connection ended with an error");
                    }
                }
                () = activity.idle(options.header_read_timeout, options.idle_timeout) => {
                    tracing::debug!("idle connection closed");
                }
            }
        });
    }
    drop(listener);
    if tokio::time::timeout(options.shutdown_grace, graceful.shutdown())
        .await
        .is_err()
    {
        tracing::warn!("shutdown grace period over: closing the remaining connections");
    }
    Ok(())
}

/// Whether the client's first byte opens a TLS handshake (a record of type 22). A failed
/// peek counts as TLS: the handshake then fails as it would have.
async fn speaks_tls(tcp: &TcpStream) -> bool {
    let mut first = [0u8; 1];
    match tcp.peek(&mut first).await {
        Ok(1) => first[0] == 0x16,
        _ => true,
    }
}

/// What a client speaking plain HTTP to the TLS port gets instead of a TLS alert it cannot
/// read: a 400 with the spec's error envelope saying to use HTTPS.
async fn refuse_plain_http(mut tcp: TcpStream) {
    use tokio::io::AsyncWriteExt;
    const BODY: &str = r#"{"errors":[{"code":"UNSUPPORTED","message":"the operation is unsupported","detail":"this port speaks HTTPS"}]}"#;
    let answer = format!(
        "HTTP/1.1 400 Bad Request\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{BODY}",
        BODY.len()
    );
    let _ = tcp.write_all(answer.as_bytes()).await;
    let _ = tcp.shutdown().await;
}

/// When a connection last moved a byte, and whether the client ever sent one.
struct Activity {
    start: Instant,
    last_ms: AtomicU64,
    heard: AtomicBool,
}

impl Activity {
    fn new() -> Self {
        Self {
            start: Instant::now(),
            last_ms: AtomicU64::new(0),
            heard: AtomicBool::new(false),
        }
    }

    fn touch(&self) {
        let ms = self.start.elapsed().as_millis() as u64;
        self.last_ms.store(ms, Ordering::Relaxed);
    }

    fn heard(&self) {
        self.heard.store(true, Ordering::Relaxed);
        self.touch();
    }

    /// Completes once the client sent nothing for `first_byte` since the connection was
    /// served, or later once no byte moved either way for `limit`.
    async fn idle(&self, first_byte: Duration, limit: Duration) {
        loop {
            let deadline = if self.heard.load(Ordering::Relaxed) {
                let last = Duration::from_millis(self.last_ms.load(Ordering::Relaxed));
                self.start + last + limit
            } else {
                self.start + first_byte.min(limit)
            };
            if Instant::now() >= deadline {
                return;
            }
            tokio::time::sleep_until(deadline.into()).await;
        }
    }
}

/// A plain or TLS stream.
enum Either {
    Plain(TcpStream),
    Tls(Box<tokio_rustls::server::TlsStream<TcpStream>>),
}

/// A stream that records its activity.
struct Tracked {
    inner: Either,
    activity: Arc<Activity>,
}

impl AsyncRead for Tracked {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let this = &mut *self;
        let polled = match &mut this.inner {
            Either::Plain(s) => Pin::new(s).poll_read(cx, buf),
            Either::Tls(s) => Pin::new(s.as_mut()).poll_read(cx, buf),
        };
        if matches!(polled, Poll::Ready(Ok(()))) && buf.filled().len() > before {
            this.activity.heard();
        }
        polled
    }
}

impl AsyncWrite for Tracked {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = &mut *self;
        let polled = match &mut this.inner {
            Either::Plain(s) => Pin::new(s).poll_write(cx, data),
            Either::Tls(s) => Pin::new(s.as_mut()).poll_write(cx, data),
        };
        if matches!(polled, Poll::Ready(Ok(n)) if n > 0) {
            this.activity.touch();
        }
        polled
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = &mut *self;
        let polled = match &mut this.inner {
            Either::Plain(s) => Pin::new(s).poll_write_vectored(cx, bufs),
            Either::Tls(s) => Pin::new(s.as_mut()).poll_write_vectored(cx, bufs),
        };
        if matches!(polled, Poll::Ready(Ok(n)) if n > 0) {
            this.activity.touch();
        }
        polled
    }

    fn is_write_vectored(&self) -> bool {
        match &self.inner {
            Either::Plain(s) => s.is_write_vectored(),
            Either::Tls(s) => s.is_write_vectored(),
        }
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match &mut self.inner {
            Either::Plain(s) => Pin::new(s).poll_flush(cx),
            Either::Tls(s) => Pin::new(s.as_mut()).poll_flush(cx),
        }
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match &mut self.inner {
            Either::Plain(s) => Pin::new(s).poll_shutdown(cx),
            Either::Tls(s) => Pin::new(s.as_mut()).poll_shutdown(cx),
        }
    }
}

/// The registry's router over `driver` with the access control `auth` configures (merged
/// with the built-in token endpoint when it has one), and the authorizer to reload.
pub fn registry_app<D: crate::StorageDriver + crate::storage::Lifecycle>(
    driver: Arc<D>,
    options: crate::registry::RegistryOptions,
    auth: &crate::registry::auth::config::AuthConfig,
) -> Result<(Router, Option<Arc<crate::registry::auth::builtin::Builtin>>), String> {
    use crate::registry::{auth::issuer, router, router_with_auth};
    Ok(match auth.build()? {
        None => (router(driver, options), None),
        Some(builtin) => {
            let builtin = Arc::new(builtin);
            let mut app = router_with_auth(driver, options, Arc::clone(&builtin));
            if let Some(tokens) = issuer::router(Arc::clone(&builtin)) {
                app = app.merge(tokens);
            }
            (app, Some(builtin))
        }
    })
}

/// Reloads the TLS files and the access-control files on SIGHUP or when one of them changes
/// (every [`reload::DEFAULT_POLL_INTERVAL`]); each set is watched on its own, so a change of
/// one reloads (and logs) that one only. A failed reload keeps the previous state and is
/// logged. Does nothing when there is nothing to reload.
pub fn spawn_reloads(
    tls: Option<Arc<TlsReloader>>,
    authorizer: Option<Arc<crate::registry::auth::builtin::Builtin>>,
) {
    fn logged(what: &str, result: Result<(), String>) {
        match result {
            Ok(()) => tracing::info!("{what} files reloaded"),
            Err(e) => tracing::error!("{what} reload failed, keeping the previous: {e}"),
        }
    }
    if let Some(tls) = tls {
        reload::spawn(
            tls.watched_files(),
            reload::DEFAULT_POLL_INTERVAL,
            move || {
                logged("TLS", tls.reload());
            },
        );
    }
    if let Some(authorizer) = authorizer {
        let files = authorizer.watched_files();
        if !files.is_empty() {
            reload::spawn(files, reload::DEFAULT_POLL_INTERVAL, move || {
                logged("access control", authorizer.reload());
            });
        }
    }
}
