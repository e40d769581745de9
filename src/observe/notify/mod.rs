//! Push, pull and delete notifications in CNCF Distribution's event format.
//!
//! The observability middleware derives events from what every `/v2/` response already
//! carries — the [`RouteInfo`] the dispatcher attached, the method, the status and the
//! headers (`Docker-Content-Digest`, `Content-Type`, `Content-Length`) — so no handler knows
//! about notifications. Like Distribution, it reports:
//!
//! | request | answer | action, target |
//! |---|---|---|
//! | `GET`/`HEAD` manifest | 200 | `pull`, the manifest (with `tag` when pulled by tag) |
//! | `PUT` manifest | 201 | `push`, the manifest (with `tag` when pushed by tag) |
//! | `DELETE` manifest by digest / by tag | 202 | `delete`, `digest` / `tag` and `repository` |
//! | `GET`/`HEAD` blob | 200, 206 | `pull`, the blob |
//! | `PUT` closing an upload, `POST ?digest=` | 201 | `push`, the blob |
//! | `POST ?mount=&from=` | 201 | `mount`, the blob, with `fromRepository` |
//! | `DELETE` blob | 202 | `delete`, `digest` and `repository` |
//!
//! Each configured endpoint has its own bounded queue and sender task
//! (the private `dispatch` module); a request only ever offers an event to the queues, which
//! never waits.
//!
//! [`RouteInfo`]: crate::registry::RouteInfo

pub mod config;
mod dispatch;
pub mod event;

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use tokio::task::JoinHandle;

pub use config::{ConfigError, EndpointConfig, NotificationsConfig};
pub use event::{Action, Event, RequestRecord, SourceRecord, Target, TargetKind};

use crate::observe::metrics::{Metrics, NotificationEndpointMetrics};
use crate::oci::Digest;
use crate::registry::{BlobCommitted, CONTENT_DIGEST_HEADER, Endpoint, RouteInfo};

/// Sends events to the configured endpoints. Shared by the middleware (`Arc<Notifier>`).
#[derive(Debug)]
pub struct Notifier {
    queues: Vec<dispatch::EndpointQueue>,
}

/// The sender tasks of a [`Notifier`], to let them finish when the server stops.
#[derive(Debug)]
pub struct NotifierTasks {
    tasks: Vec<JoinHandle<()>>,
}

impl NotifierTasks {
    /// Waits until every queued event was sent, for at most `timeout`; returns whether they
    /// all were. Call it after the server stopped (once no request can queue events), and
    /// after dropping every handle of the [`Notifier`].
    pub async fn finish(self, timeout: Duration) -> bool {
        let all = futures::future::join_all(self.tasks);
        tokio::time::timeout(timeout, all).await.is_ok()
    }
}

/// Settings of a [`Notifier`] besides its endpoints.
#[derive(Debug, Clone)]
pub struct NotifierOptions {
    /// `http` or `https`: the scheme of the targets' `url`s.
    pub scheme: String,
    /// The `source.addr` of events: the registry's `host:port`.
    pub source_addr: String,
}

impl Notifier {
    /// Starts one sender task per endpoint of `config` (which should have been validated).
    /// `metrics`: where to count events and deliveries; with `None` they are counted in
    /// series nobody exports.
    ///
    /// Must be called within a Tokio runtime.
    pub fn start(
        config: &NotificationsConfig,
        options: NotifierOptions,
        metrics: Option<&Metrics>,
    ) -> Result<(Arc<Self>, NotifierTasks), ConfigError> {
        config.validate()?;
        let scheme: Arc<str> = options.scheme.into();
        let source = Arc::new(SourceRecord {
            addr: options.source_addr,
            instance_id: uuid_like(rand::random()),
        });
        let mut queues = Vec::new();
        let mut tasks = Vec::new();
        for endpoint in &config.endpoints {
            let series = match metrics {
                Some(m) => m.notifications().endpoint(&endpoint.name),
                None => NotificationEndpointMetrics::detached(),
            };
            let (queue, task) =
                dispatch::start(endpoint, Arc::clone(&scheme), Arc::clone(&source), series)?;
            tracing::info!(
                endpoint = %endpoint.name,
                url = %endpoint.url,
                "sending notifications"
            );
            queues.push(queue);
            tasks.push(task);
        }
        Ok((Arc::new(Self { queues }), NotifierTasks { tasks }))
    }

    /// Offers `event` to every endpoint's queue; never waits.
    pub fn notify(&self, event: Event) {
        let event = Arc::new(event);
        for queue in &self.queues {
            queue.offer(&event);
        }
    }
}

fn uuid_like(id: u128) -> String {
    let hex = format!("{id:032x}");
    format!(
        "{}-{}-{}-{}-{}",
        &hex[..8],
        &hex[8..12],
        &hex[12..16],
        &hex[16..20],
        &hex[20..]
    )
}

/// What the middleware keeps of a request for the event its response may cause.
#[derive(Debug)]
pub struct RequestFacts {
    /// The request record of the event.
    pub record: RequestRecord,
    /// The request's `Content-Type` (a pushed manifest's media type).
    pub content_type: Option<HeaderValue>,
    /// The request's `Content-Length`.
    pub content_length: Option<u64>,
    /// For a mount (`POST ?mount=&from=`): the source repository.
    pub mount_from: Option<String>,
}

impl RequestFacts {
    /// Reads the facts of a request; `addr` is the client's address if known.
    pub fn of(
        method: &Method,
        uri: &axum::http::Uri,
        headers: &HeaderMap,
        id: HeaderValue,
        addr: Option<std::net::SocketAddr>,
    ) -> Self {
        let mount_from = (*method == Method::POST)
            .then(|| uri.query())
            .flatten()
            .filter(|q| q.contains("mount="))
            .and_then(|q| {
                let pairs = crate::registry::query_pairs(Some(q));
                crate::registry::query_param(&pairs, "from").map(str::to_owned)
            });
        Self {
            record: RequestRecord {
                id,
                addr,
                host: headers.get(header::HOST).cloned().or_else(|| {
                    uri.authority()
                        .and_then(|a| HeaderValue::from_str(a.as_str()).ok())
                }),
                method: method.clone(),
                user_agent: headers.get(header::USER_AGENT).cloned(),
            },
            content_type: headers.get(header::CONTENT_TYPE).cloned(),
            content_length: headers
                .get(header::CONTENT_LENGTH)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.parse().ok()),
            mount_from,
        }
    }
}

/// The event a response reports, if any (see the module's table).
///
/// `actor`: the authenticated identity of the request, when there is one.
pub fn event_of(
    facts: RequestFacts,
    info: &RouteInfo,
    status: StatusCode,
    response: &HeaderMap,
    extensions: &axum::http::Extensions,
    actor: Option<Arc<str>>,
) -> Option<Event> {
    let endpoint = info.endpoint?;
    let repository = info.repository.clone()?;
    let reference = info.reference.as_deref();
    let is_digest = |r: &str| Digest::parse(r).is_ok();
    let tag_of = || reference.filter(|r| !is_digest(r)).map(str::to_owned);
    let digest = || response.get(CONTENT_DIGEST_HEADER).cloned();
    let response_size = || {
        response
            .get(header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<u64>().ok())
    };
    let blob = || Some(HeaderValue::from_static(event::BLOB_MEDIA_TYPE));
    let (action, target) = match (endpoint, status.as_u16()) {
        (Endpoint::ManifestGet, 200) => (
            Action::Pull,
            Target {
                kind: TargetKind::Manifest,
                media_type: response.get(header::CONTENT_TYPE).cloned(),
                digest: digest(),
                size: response_size(),
                repository,
                from_repository: None,
                tag: tag_of(),
            },
        ),
        (Endpoint::ManifestPut, 201) => (
            Action::Push,
            Target {
                kind: TargetKind::Manifest,
                media_type: facts.content_type.clone(),
                digest: digest(),
                size: facts.content_length,
                repository,
                from_repository: None,
                tag: tag_of(),
            },
        ),
        (Endpoint::ManifestDelete, 202) => (
            Action::Delete,
            Target {
                kind: TargetKind::Manifest,
                media_type: None,
                digest: reference
                    .filter(|r| is_digest(r))
                    .and_then(|r| HeaderValue::from_str(r).ok()),
                size: None,
                repository,
                from_repository: None,
                tag: tag_of(),
            },
        ),
        (Endpoint::BlobGet, 200 | 206) => (
            Action::Pull,
            Target {
                kind: TargetKind::Blob,
                media_type: blob(),
                digest: digest(),
                // A ranged read's Content-Range carries the whole blob's size.
                size: response
                    .get(header::CONTENT_RANGE)
                    .and_then(|v| v.to_str().ok())
                    .and_then(|v| v.rsplit('/').next())
                    .and_then(|v| v.parse().ok())
                    .or_else(response_size),
                repository,
                from_repository: None,
                tag: None,
            },
        ),
        (Endpoint::UploadFinish | Endpoint::UploadStart, 201) => {
            let mounted = endpoint == Endpoint::UploadStart && facts.mount_from.is_some();
            (
                if mounted { Action::Mount } else { Action::Push },
                Target {
                    kind: TargetKind::Blob,
                    media_type: blob(),
                    digest: digest(),
                    size: extensions.get::<BlobCommitted>().map(|b| b.size),
                    repository,
                    from_repository: if mounted {
                        facts.mount_from.clone()
                    } else {
                        None
                    },
                    tag: None,
                },
            )
        }
        (Endpoint::BlobDelete, 202) => (
            Action::Delete,
            Target {
                kind: TargetKind::Blob,
                media_type: None,
                digest: reference.and_then(|r| HeaderValue::from_str(r).ok()),
                size: None,
                repository,
                from_repository: None,
                tag: None,
            },
        ),
        _ => return None,
    };
    Some(Event {
        id: rand::random(),
        timestamp: SystemTime::now(),
        action,
        target,
        request: facts.record,
        actor,
    })
}
