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
mod facts;
mod text;
mod wire;

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use tokio::task::JoinHandle;

pub use config::{ConfigError, EndpointConfig, NotificationsConfig};
pub use event::{Action, Event, EventText, RequestRecord, SourceRecord, Target, TargetKind};
pub use facts::RequestFacts;

use crate::observe::metrics::{Metrics, NotificationEndpointMetrics};
use crate::registry::{CONTENT_DIGEST_HEADER, Endpoint, RouteInfo};

/// Sends events to the configured endpoints. Shared by the middleware (`Arc<Notifier>`).
#[derive(Debug)]
pub struct Notifier {
    queues: Vec<dispatch::EndpointQueue>,
    /// Whether any endpoint wants `pull` events (GET and HEAD cause no others).
    pulls_wanted: bool,
}

/// The sender tasks of a [`Notifier`], to let them finish when the server stops.
#[derive(Debug)]
pub struct NotifierTasks {
    tasks: Vec<JoinHandle<()>>,
    /// Each endpoint's series, in the order of `tasks`.
    metrics: Vec<NotificationEndpointMetrics>,
}

impl NotifierTasks {
    /// Waits until every queued event was sent, for at most `timeout`; returns how many were
    /// not (0: all were). Call it after the server stopped (once no request can queue
    /// events), and after dropping every handle of the [`Notifier`]. When time runs out the
    /// senders are stopped and the events they had not delivered are counted as failed.
    pub async fn finish(mut self, timeout: Duration) -> u64 {
        let all = futures::future::join_all(self.tasks.iter_mut());
        if tokio::time::timeout(timeout, all).await.is_ok() {
            return 0;
        }
        for task in &self.tasks {
            task.abort();
        }
        // Once stopped (at their next `await`), nothing they count changes any more. A task
        // the first wait saw finish must not be polled again (its handle is spent).
        for task in self.tasks {
            if !task.is_finished() {
                let _ = task.await;
            }
        }
        let mut undelivered = 0;
        for series in &self.metrics {
            // Every queued event was delivered or failed, or is still undelivered.
            let settled = series.delivered.get() + series.failed.get();
            let left = series.queued.get().saturating_sub(settled);
            series.failed.inc_by(left);
            undelivered += left;
        }
        undelivered
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
        let scheme = options.scheme;
        let source = SourceRecord {
            addr: options.source_addr,
            instance_id: uuid::Builder::from_random_bytes(rand::random())
                .into_uuid()
                .to_string(),
        };
        let mut queues = Vec::new();
        let mut tasks = Vec::new();
        let mut endpoint_metrics = Vec::new();
        for endpoint in &config.endpoints {
            let series = match metrics {
                Some(m) => m.notifications().endpoint(&endpoint.name),
                None => NotificationEndpointMetrics::detached(),
            };
            endpoint_metrics.push(series.clone());
            let (queue, task) = dispatch::start(endpoint, &scheme, &source, series)?;
            tracing::info!(
                endpoint = %endpoint.name,
                url = %endpoint.logged_url(),
                "sending notifications"
            );
            queues.push(queue);
            tasks.push(task);
        }
        let pulls_wanted = queues.iter().any(|q| q.wants_action(Action::Pull));
        let notifier = Self {
            queues,
            pulls_wanted,
        };
        let tasks = NotifierTasks {
            tasks,
            metrics: endpoint_metrics,
        };
        Ok((Arc::new(notifier), tasks))
    }

    /// Whether a request with `method` may cause an event some endpoint wants: `false` for a
    /// `GET` or `HEAD` (which can only cause pulls) when every endpoint ignores pulls, so
    /// that the request's facts need not be gathered.
    pub fn may_report(&self, method: &Method) -> bool {
        self.pulls_wanted || !(method == Method::GET || method == Method::HEAD)
    }

    /// Offers `event` to the queue of every endpoint that wants it; never waits. With one
    /// endpoint (the usual case) the event moves into its queue; each further endpoint gets
    /// a copy.
    pub fn notify(&self, event: Event) {
        let mut wanted = self.queues.iter().filter(|q| q.wants(&event));
        let Some(mut queue) = wanted.next() else {
            return;
        };
        for next in wanted {
            queue.offer(event.clone());
            queue = next;
        }
        queue.offer(event);
    }
}

/// The event a response reports, if any (see the module's table).
///
/// `committed_size`: the size of the blob the request committed
/// ([`BlobCommitted`](crate::registry::BlobCommitted)), if it did; `actor`: the authenticated
/// identity of the request, when there is one.
pub fn event_of(
    facts: RequestFacts,
    info: &RouteInfo,
    status: StatusCode,
    response: &HeaderMap,
    committed_size: Option<u64>,
    actor: Option<Arc<str>>,
) -> Option<Event> {
    let endpoint = info.endpoint?;
    let action = match (endpoint, status.as_u16()) {
        (Endpoint::ManifestGet, 200) | (Endpoint::BlobGet, 200 | 206) => Action::Pull,
        (Endpoint::ManifestPut, 201) | (Endpoint::UploadFinish, 201) => Action::Push,
        (Endpoint::UploadStart, 201) if facts.mount_from.is_some() => Action::Mount,
        (Endpoint::UploadStart, 201) => Action::Push,
        (Endpoint::ManifestDelete | Endpoint::BlobDelete, 202) => Action::Delete,
        _ => return None,
    };
    let repository = EventText::new(info.repository.as_ref()?.as_str());
    // A tag never holds a ':' (the spec's tag grammar), a digest always does; the handler
    // accepted the reference, or the answer would not be a success.
    let (by_digest, by_tag) = match info.reference.as_deref() {
        Some(r) if r.contains(':') => (Some(EventText::new(r)), None),
        Some(r) => (None, Some(EventText::new(r))),
        None => (None, None),
    };
    let text = |v: &HeaderValue| EventText::new(v.to_str().unwrap_or(""));
    let answered_digest = || response.get(CONTENT_DIGEST_HEADER).map(text);
    let response_size = || {
        response
            .get(header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<u64>().ok())
    };
    let blob = || Some(EventText::new(event::BLOB_MEDIA_TYPE));
    let target = match endpoint {
        Endpoint::ManifestGet => Target {
            kind: TargetKind::Manifest,
            media_type: response.get(header::CONTENT_TYPE).map(text),
            digest: by_digest.or_else(answered_digest),
            size: response_size(),
            repository,
            from_repository: None,
            tag: by_tag,
        },
        Endpoint::ManifestPut => Target {
            kind: TargetKind::Manifest,
            media_type: facts.content_type,
            digest: answered_digest(),
            size: facts.content_length,
            repository,
            from_repository: None,
            tag: by_tag,
        },
        Endpoint::ManifestDelete => Target {
            kind: TargetKind::Manifest,
            media_type: None,
            digest: by_digest,
            size: None,
            repository,
            from_repository: None,
            tag: by_tag,
        },
        Endpoint::BlobGet => Target {
            kind: TargetKind::Blob,
            media_type: blob(),
            digest: by_digest.or_else(answered_digest),
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
        Endpoint::BlobDelete => Target {
            kind: TargetKind::Blob,
            media_type: None,
            digest: by_digest,
            size: None,
            repository,
            from_repository: None,
            tag: None,
        },
        // A committed upload, a monolithic push (`POST ?digest=`) or a mount.
        _ => Target {
            kind: TargetKind::Blob,
            media_type: blob(),
            digest: answered_digest(),
            size: committed_size,
            repository,
            from_repository: match action {
                Action::Mount => facts.mount_from,
                _ => None,
            },
            tag: None,
        },
    };
    Some(Event {
        id: event::next_event_id(),
        timestamp: SystemTime::now(),
        action,
        target,
        request: facts.record,
        actor,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn notifier(endpoints: &str) -> Arc<Notifier> {
        let config: NotificationsConfig = toml::from_str(endpoints).unwrap();
        let options = NotifierOptions {
            scheme: "http".into(),
            source_addr: "127.0.0.1:5000".into(),
        };
        Notifier::start(&config, options, None).unwrap().0
    }

    #[tokio::test]
    async fn reads_are_looked_at_only_when_an_endpoint_wants_pulls() {
        let changes = r#"
            [[endpoints]]
            name = "changes"
            url = "http://127.0.0.1:9/"
            ignore = { actions = ["pull"] }
        "#;
        let all = r#"
            [[endpoints]]
            name = "all"
            url = "http://127.0.0.1:9/"
        "#;
        let only_changes = notifier(changes);
        for method in [Method::GET, Method::HEAD] {
            assert!(!only_changes.may_report(&method));
        }
        for method in [Method::PUT, Method::POST, Method::PATCH, Method::DELETE] {
            assert!(only_changes.may_report(&method));
        }
        let both = notifier(&format!("{changes}\n{all}"));
        assert!(both.may_report(&Method::GET) && both.may_report(&Method::HEAD));
    }

    /// A manifest deletion in `demo/app`, numbered `n`.
    fn delete_of(n: u128) -> Event {
        Event {
            id: n,
            timestamp: SystemTime::UNIX_EPOCH,
            action: Action::Delete,
            target: Target {
                kind: TargetKind::Manifest,
                media_type: None,
                digest: Some(format!("sha256:{n:064x}").as_str().into()),
                size: None,
                repository: "demo/app".into(),
                from_repository: None,
                tag: None,
            },
            request: RequestRecord {
                id: format!("req-{n}").as_str().into(),
                addr: None,
                host: None,
                method: Method::DELETE,
                user_agent: None,
            },
            actor: None,
        }
    }

    /// An endpoint that answers every POST with 200.
    async fn answering_endpoint() -> std::net::SocketAddr {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let app = axum::Router::new().route("/", axum::routing::post(|| async { "" }));
        tokio::spawn(async move { axum::serve(listener, app).await });
        addr
    }

    /// Two endpoints, one answering and one that accepts connections and never answers:
    /// the registry stops with the events the second had queued undelivered, counts them as
    /// failed, and stops cleanly although the first sender had finished.
    #[tokio::test]
    async fn events_undelivered_when_the_registry_stops_are_counted_as_failed() {
        let hung = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let config: NotificationsConfig = toml::from_str(&format!(
            "[[endpoints]]\nname = \"hung\"\nurl = \"http://{}/\"\ntimeout = \"1m\"\nflush_interval = \"0s\"\n\
             [[endpoints]]\nname = \"up\"\nurl = \"http://{}/\"\nflush_interval = \"0s\"",
            hung.local_addr().unwrap(),
            answering_endpoint().await
        ))
        .unwrap();
        let options = NotifierOptions {
            scheme: "http".into(),
            source_addr: "127.0.0.1:5000".into(),
        };
        let metrics = Metrics::new();
        let (notifier, tasks) = Notifier::start(&config, options, Some(&metrics)).unwrap();
        for n in 0..3 {
            notifier.notify(delete_of(n));
        }
        drop(notifier);
        assert_eq!(tasks.finish(Duration::from_millis(300)).await, 3);
        let text = metrics.encode();
        let count = |endpoint: &str, outcome: &str| {
            let series = format!(
                r#"marina_notification_events_total{{endpoint="{endpoint}",outcome="{outcome}"}} "#
            );
            text.lines()
                .find_map(|l| l.strip_prefix(series.as_str()))
                .map(|v| v.trim().parse::<f64>().unwrap())
                .unwrap_or_else(|| panic!("no {outcome} series in {text}"))
        };
        assert_eq!(count("hung", "queued"), 3.0);
        assert_eq!(count("hung", "delivered"), 0.0);
        assert_eq!(count("hung", "failed"), 3.0);
        assert_eq!(count("up", "delivered"), 3.0);
        assert_eq!(count("up", "failed"), 0.0);
        drop(hung);
    }
}
