//! The middleware around the registry's router: request ids, access lines, HTTP metrics and
//! notification events.
//!
//! ```no_run
//! # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! use std::sync::Arc;
//! use marina_distribution::observe::http::ObserveLayer;
//! use marina_distribution::observe::metrics::Metrics;
//! use marina_distribution::registry::{RegistryOptions, router};
//! use marina_distribution::{AnyDriver, StorageConfig};
//!
//! let driver = AnyDriver::from_config(&StorageConfig::inmemory()).await?;
//! let metrics = Metrics::new();
//! let app = router(Arc::new(driver), RegistryOptions::default())
//!     .layer(ObserveLayer::new(Some(metrics.clone()), None));
//! # Ok(()) }
//! ```
//!
//! Per request it:
//!
//! - takes the id from `X-Request-Id` when the client sent a sane one (1 to 128 characters
//!   among letters, digits and `-_.:`), else makes one (32 random hex digits); puts it in the
//!   request's extensions ([`RequestId`]), in a `request` tracing span around the handler,
//!   and in the response's `X-Request-Id`;
//! - when the response body has been sent (or abandoned), writes the access line (target
//!   `marina_registry::access`, level `info`) with the method, path, status, repository,
//!   reference, resolved digest, bytes received and sent and the duration, and records the
//!   HTTP metrics;
//! - when the response head is ready, derives the notification event it reports, if any.
//!
//! What it costs depends on what is on: without metrics, notifications and access lines
//! (`RUST_LOG=warn`), it only sets the request id; request and response bodies are wrapped
//! (to count bytes) only when metrics or access lines need the counts and there is a body
//! (a request or response without one is accounted for when its response head is ready).

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll};
use std::time::Instant;

use axum::body::Body;
use axum::extract::{ConnectInfo, Request};
use axum::http::{HeaderValue, Method, StatusCode, Uri};
use axum::response::Response;
use bytes::Bytes;
use http_body::{Frame, SizeHint};
use pin_project::pinned_drop;
use tower_layer::Layer;
use tower_service::Service;
use tracing::Instrument;

use crate::observe::metrics::{InFlight, Metrics};
use crate::observe::notify::{self, Notifier, RequestFacts};
use crate::registry::auth::Identity;
use crate::registry::{BlobCommitted, CONTENT_DIGEST_HEADER, Endpoint, RouteInfo};

/// The tracing target of access lines.
pub const ACCESS_TARGET: &str = "marina_registry::access";
/// `X-Request-Id`.
pub const REQUEST_ID_HEADER: &str = "x-request-id";

/// A request's id, in the request's extensions.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestId(pub HeaderValue);

impl RequestId {
    /// The id as text.
    pub fn as_str(&self) -> &str {
        self.0.to_str().unwrap_or("")
    }
}

/// Whether a client's `X-Request-Id` is used as it is: 1 to 128 characters among ASCII
/// letters, digits and `-_.:` (no spaces or quotes that could garble a log line).
fn sane_request_id(v: &HeaderValue) -> bool {
    let b = v.as_bytes();
    !b.is_empty()
        && b.len() <= 128
        && b.iter()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'-' | b'_' | b'.' | b':'))
}

fn new_request_id() -> HeaderValue {
    let id = format!("{:032x}", rand::random::<u128>());
    HeaderValue::from_maybe_shared(Bytes::from(id)).expect("hex digits are a valid header value")
}

/// What the middleware does: shared by every request.
#[derive(Debug)]
struct Shared {
    metrics: Option<Arc<Metrics>>,
    notifier: Option<Arc<Notifier>>,
}

/// The observability middleware (a [`tower_layer::Layer`]); see the module documentation.
#[derive(Debug, Clone)]
pub struct ObserveLayer {
    shared: Arc<Shared>,
}

impl ObserveLayer {
    /// Records into `metrics` and sends events through `notifier`, when given.
    pub fn new(metrics: Option<Arc<Metrics>>, notifier: Option<Arc<Notifier>>) -> Self {
        Self {
            shared: Arc::new(Shared { metrics, notifier }),
        }
    }
}

impl<S> Layer<S> for ObserveLayer {
    type Service = Observe<S>;

    fn layer(&self, inner: S) -> Observe<S> {
        Observe {
            inner,
            shared: Arc::clone(&self.shared),
        }
    }
}

/// The service [`ObserveLayer`] wraps around the router.
#[derive(Debug, Clone)]
pub struct Observe<S> {
    inner: S,
    shared: Arc<Shared>,
}

/// What is known of a request before its response, kept for the response.
struct Pending {
    start: Instant,
    id: HeaderValue,
    method: Method,
    uri: Option<Uri>,
    received: Option<Arc<AtomicU64>>,
    _in_flight: Option<InFlight>,
    facts: Option<RequestFacts>,
    shared: Arc<Shared>,
    log: bool,
}

impl<S> Service<Request> for Observe<S>
where
    S: Service<Request, Response = Response, Error = Infallible>,
{
    type Response = Response;
    type Error = Infallible;
    type Future = ObserveFuture<tracing::instrument::Instrumented<S::Future>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut req: Request) -> Self::Future {
        let start = Instant::now();
        let id = match req.headers().get(REQUEST_ID_HEADER) {
            Some(v) if sane_request_id(v) => v.clone(),
            _ => new_request_id(),
        };
        req.extensions_mut().insert(RequestId(id.clone()));
        let log = tracing::enabled!(target: ACCESS_TARGET, tracing::Level::INFO);
        let shared = &self.shared;
        // A request without a body (a GET, a HEAD) has nothing to count.
        let has_body = !http_body::Body::is_end_stream(req.body());
        let received = ((log || shared.metrics.is_some()) && has_body).then(|| {
            let counter = Arc::new(AtomicU64::new(0));
            let body = std::mem::take(req.body_mut());
            *req.body_mut() = Body::new(Counted {
                inner: body,
                count: Arc::clone(&counter),
            });
            counter
        });
        let notifier = shared.notifier.as_ref();
        let facts = notifier.filter(|n| n.may_report(req.method())).map(|_| {
            let addr = req
                .extensions()
                .get::<ConnectInfo<SocketAddr>>()
                .map(|c| c.0);
            let id = id.to_str().unwrap_or("");
            RequestFacts::of(req.method(), req.uri(), req.headers(), id, addr)
        });
        let span = tracing::info_span!("request", id = %id.to_str().unwrap_or(""));
        let pending = Pending {
            start,
            method: req.method().clone(),
            uri: log.then(|| req.uri().clone()),
            id,
            received,
            _in_flight: shared.metrics.as_ref().map(|m| m.http().start()),
            facts,
            shared: Arc::clone(shared),
            log,
        };
        ObserveFuture {
            inner: self.inner.call(req).instrument(span),
            pending: Some(pending),
        }
    }
}

/// The future of an observed request.
#[pin_project::pin_project]
pub struct ObserveFuture<F> {
    #[pin]
    inner: F,
    pending: Option<Pending>,
}

impl<F> Future for ObserveFuture<F>
where
    F: Future<Output = Result<Response, Infallible>>,
{
    type Output = Result<Response, Infallible>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let Ok(resp) = std::task::ready!(this.inner.poll(cx));
        let pending = this.pending.take().expect("polled after completion");
        Poll::Ready(Ok(pending.respond(resp)))
    }
}

impl Pending {
    /// The response head is ready: set the id, queue the event, and wrap the body so that
    /// the request is accounted for once it has been sent.
    fn respond(mut self, mut resp: Response) -> Response {
        resp.headers_mut()
            .insert(REQUEST_ID_HEADER, self.id.clone());
        let info = resp.extensions().get::<RouteInfo>();
        let endpoint = info.and_then(|i| i.endpoint);
        let log = self.log.then(|| AccessFacts {
            repository: info
                .and_then(|i| i.repository.as_ref())
                .map(|r| r.to_string()),
            reference: info.and_then(|i| i.reference.clone()),
            digest: resp.headers().get(CONTENT_DIGEST_HEADER).cloned(),
        });
        if let (Some(notifier), Some(facts)) = (&self.shared.notifier, self.facts.take()) {
            notify_of(notifier, facts, &resp);
        }
        if !self.log && self.shared.metrics.is_none() {
            return resp;
        }
        let done = Done {
            endpoint,
            status: resp.status(),
            log,
            pending: self,
        };
        if http_body::Body::is_end_stream(resp.body()) {
            // Nothing to wait for (a HEAD, a 201 or 202): accounted for now.
            done.finish(0);
            return resp;
        }
        resp.map(|body| {
            Body::new(Accounted {
                inner: body,
                sent: 0,
                done: Some(done),
            })
        })
    }
}

/// Offers the event `resp` reports, if any, to `notifier`.
fn notify_of(notifier: &Notifier, facts: RequestFacts, resp: &Response) {
    let extensions = resp.extensions();
    let Some(info) = extensions.get::<RouteInfo>() else {
        return;
    };
    // The authenticated caller, which the access control puts into the response's
    // extensions (an `Arc<str>`: no copy of the name).
    let actor = extensions
        .get::<Identity>()
        .and_then(|identity| match identity {
            Identity::User(name) => Some(Arc::clone(name)),
            Identity::Anonymous => None,
        });
    let committed = extensions.get::<BlobCommitted>().map(|b| b.size);
    if let Some(event) =
        notify::event_of(facts, info, resp.status(), resp.headers(), committed, actor)
    {
        notifier.notify(event);
    }
}

/// What the access line adds to the metrics' view of a request.
struct AccessFacts {
    repository: Option<String>,
    reference: Option<String>,
    digest: Option<HeaderValue>,
}

/// A request whose response head was sent, waiting for its body to be.
struct Done {
    pending: Pending,
    endpoint: Option<Endpoint>,
    status: StatusCode,
    log: Option<AccessFacts>,
}

impl Done {
    fn finish(self, sent: u64) {
        let p = &self.pending;
        let elapsed = p.start.elapsed();
        let received = p.received.as_ref().map_or(0, |c| c.load(Ordering::Relaxed));
        let status = self.status.as_u16();
        if let Some(metrics) = &p.shared.metrics {
            metrics
                .http()
                .record(self.endpoint, &p.method, status, elapsed, received, sent);
            match (self.endpoint, status) {
                (Some(Endpoint::UploadStart), 202) => metrics.uploads().started(),
                (Some(Endpoint::UploadFinish), 201) => metrics.uploads().committed(),
                (Some(Endpoint::UploadCancel), 204) => metrics.uploads().cancelled(),
                _ => {}
            }
        }
        if let Some(facts) = &self.log {
            let path = p.uri.as_ref().map(|u| u.to_string()).unwrap_or_default();
            tracing::info!(
                target: ACCESS_TARGET,
                request_id = p.id.to_str().unwrap_or(""),
                method = p.method.as_str(),
                path = path.as_str(),
                status,
                repository = facts.repository.as_deref(),
                reference = facts.reference.as_deref(),
                digest = facts.digest.as_ref().and_then(|d| d.to_str().ok()),
                bytes_in = received,
                bytes_out = sent,
                // Milliseconds to the microsecond (an f64 product prints 17 digits).
                duration_ms = (elapsed.as_secs_f64() * 1e6).round() / 1e3,
                "{} {} {} {:.1}ms",
                p.method,
                path,
                status,
                elapsed.as_secs_f64() * 1000.0
            );
        }
    }
}

/// A request body that counts its bytes.
#[pin_project::pin_project]
struct Counted {
    #[pin]
    inner: Body,
    count: Arc<AtomicU64>,
}

impl http_body::Body for Counted {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, axum::Error>>> {
        let this = self.project();
        let frame = std::task::ready!(this.inner.poll_frame(cx));
        if let Some(Ok(f)) = &frame
            && let Some(data) = f.data_ref()
        {
            this.count.fetch_add(data.len() as u64, Ordering::Relaxed);
        }
        Poll::Ready(frame)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// A response body that counts its bytes and accounts for the request when it is dropped
/// (sent completely, or abandoned by a client that went away).
#[pin_project::pin_project(PinnedDrop)]
struct Accounted {
    #[pin]
    inner: Body,
    sent: u64,
    done: Option<Done>,
}

#[pinned_drop]
impl PinnedDrop for Accounted {
    fn drop(self: Pin<&mut Self>) {
        let this = self.project();
        if let Some(done) = this.done.take() {
            done.finish(*this.sent);
        }
    }
}

impl http_body::Body for Accounted {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, axum::Error>>> {
        let this = self.project();
        let frame = std::task::ready!(this.inner.poll_frame(cx));
        if let Some(Ok(f)) = &frame
            && let Some(data) = f.data_ref()
        {
            *this.sent += data.len() as u64;
        }
        Poll::Ready(frame)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_ids_from_clients_are_used_only_when_sane() {
        assert!(sane_request_id(&HeaderValue::from_static("abc-123_x.y:z")));
        assert!(!sane_request_id(&HeaderValue::from_static("")));
        assert!(!sane_request_id(&HeaderValue::from_static("has space")));
        assert!(!sane_request_id(&HeaderValue::from_static("quote\"d")));
        let long = "a".repeat(129);
        assert!(!sane_request_id(&HeaderValue::from_str(&long).unwrap()));
        assert_eq!(new_request_id().len(), 32);
        assert_ne!(new_request_id(), new_request_id());
    }
}
