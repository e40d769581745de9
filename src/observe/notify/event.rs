//! Events and their JSON form: CNCF Distribution's envelope
//! (`application/vnd.docker.distribution.events.v1+json`).
//!
//! An [`Event`] is built on the request's path from what the request and its response
//! already hold, without allocating: its short texts are copied into it ([`EventText`]), the
//! `Host` and `User-Agent` shared, nothing is formatted. It becomes JSON only in the
//! endpoint's sender task (the private `wire` module).

use std::borrow::Borrow;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::SystemTime;

use axum::http::Method;

pub use super::text::EventText;
use super::wire::EnvelopeWriter;

/// The media type of an event envelope, set as the POST's `Content-Type`.
pub const EVENTS_MEDIA_TYPE: &str = "application/vnd.docker.distribution.events.v1+json";
/// The media type Distribution reports for blobs (the registry does not know a blob's own).
pub const BLOB_MEDIA_TYPE: &str = "application/octet-stream";

/// What happened to the target.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// A manifest or blob was read (`GET` or `HEAD`, as Distribution reports them).
    Pull,
    /// A manifest was put, or a blob committed.
    Push,
    /// A blob was mounted from another repository.
    Mount,
    /// A manifest, a tag or a blob link was deleted.
    Delete,
}

impl Action {
    /// `pull`, `push`, `mount` or `delete`.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Pull => "pull",
            Self::Push => "push",
            Self::Mount => "mount",
            Self::Delete => "delete",
        }
    }
}

/// Whether the target's URL names a manifest or a blob.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TargetKind {
    /// `/v2/<name>/manifests/<digest>`
    Manifest,
    /// `/v2/<name>/blobs/<digest>`
    Blob,
}

/// The object an event is about.
#[derive(Debug, Clone)]
pub struct Target {
    /// Manifest or blob.
    pub kind: TargetKind,
    /// The media type (a manifest's, or [`BLOB_MEDIA_TYPE`]); absent on deletes.
    pub media_type: Option<EventText>,
    /// The digest; absent on a tag delete.
    pub digest: Option<EventText>,
    /// The size in bytes; absent on deletes.
    pub size: Option<u64>,
    /// The repository.
    pub repository: EventText,
    /// The repository a mounted blob came from.
    pub from_repository: Option<EventText>,
    /// The tag a manifest was pushed, pulled or deleted by.
    pub tag: Option<EventText>,
}

/// The request that caused an event.
#[derive(Debug, Clone)]
pub struct RequestRecord {
    /// The request id (`X-Request-Id`).
    pub id: EventText,
    /// The client's address, when the server records it.
    pub addr: Option<SocketAddr>,
    /// The `Host` the client addressed.
    pub host: Option<Arc<str>>,
    /// The method.
    pub method: Method,
    /// The `User-Agent`.
    pub user_agent: Option<Arc<str>>,
}

/// The registry node that generated events.
#[derive(Debug, Clone)]
pub struct SourceRecord {
    /// `host:port` of the registry's listener.
    pub addr: String,
    /// Random, new on every start (`instanceID`).
    pub instance_id: String,
}

/// One event.
#[derive(Debug, Clone)]
pub struct Event {
    /// Unique id (128 bits, written as a UUID: see [`next_event_id`]); the same for every
    /// endpoint.
    pub id: u128,
    /// When it happened.
    pub timestamp: SystemTime,
    /// What happened.
    pub action: Action,
    /// To what.
    pub target: Target,
    /// By which request.
    pub request: RequestRecord,
    /// Who: the authenticated user, when there is one.
    pub actor: Option<Arc<str>>,
}

/// A new event id: 128 bits from the thread's random generator (seeded from the operating
/// system), written as a version 4 UUID, so ids are unique across threads, restarts and
/// registry processes as random UUIDs are.
pub fn next_event_id() -> u128 {
    rand::random()
}

/// The JSON envelope of `events` (one or more), in their order, as the sender writes it.
pub fn envelope<E: Borrow<Event>>(events: &[E], scheme: &str, source: &SourceRecord) -> Vec<u8> {
    EnvelopeWriter::new(scheme, source)
        .envelope(events)
        .to_vec()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn push_by_tag() -> Event {
        Event {
            id: 0x0123_4567_89ab_cdef_0123_4567_89ab_cdef,
            timestamp: SystemTime::UNIX_EPOCH + std::time::Duration::from_millis(1500),
            action: Action::Push,
            target: Target {
                kind: TargetKind::Manifest,
                media_type: Some("application/vnd.oci.image.manifest.v1+json".into()),
                digest: Some("sha256:abcd".into()),
                size: Some(708),
                repository: "demo/app".into(),
                from_repository: None,
                tag: Some("latest".into()),
            },
            request: RequestRecord {
                id: "req-1".into(),
                addr: Some("127.0.0.1:4242".parse().unwrap()),
                host: Some("registry.local:5000".into()),
                method: Method::PUT,
                user_agent: Some("skopeo/1.0".into()),
            },
            actor: None,
        }
    }

    fn source() -> SourceRecord {
        SourceRecord {
            addr: "node:5000".into(),
            instance_id: "i-1".into(),
        }
    }

    fn parsed(events: &[&Event]) -> serde_json::Value {
        serde_json::from_slice(&envelope(events, "https", &source())).unwrap()
    }

    #[test]
    fn an_event_is_small_enough_to_queue_thousands() {
        // `queue_size` (default 8192) events: about 5 MiB per endpoint at most.
        assert!(
            std::mem::size_of::<Event>() <= 672,
            "{}",
            std::mem::size_of::<Event>()
        );
    }

    #[test]
    fn event_ids_differ() {
        let ids: std::collections::BTreeSet<u128> = (0..1000).map(|_| next_event_id()).collect();
        assert_eq!(ids.len(), 1000);
    }

    #[test]
    fn envelope_has_distributions_fields() {
        let json = parsed(&[&push_by_tag()]);
        assert_eq!(
            json,
            json!({"events": [{
                "id": "01234567-89ab-4def-8123-456789abcdef",
                "timestamp": "1970-01-01T00:00:01.5Z",
                "action": "push",
                "target": {
                    "mediaType": "application/vnd.oci.image.manifest.v1+json",
                    "digest": "sha256:abcd",
                    "size": 708,
                    "length": 708,
                    "repository": "demo/app",
                    "url": "https://registry.local:5000/v2/demo/app/manifests/sha256:abcd",
                    "tag": "latest",
                },
                "request": {
                    "id": "req-1",
                    "addr": "127.0.0.1:4242",
                    "host": "registry.local:5000",
                    "method": "PUT",
                    "useragent": "skopeo/1.0",
                },
                "actor": {},
                "source": {"addr": "node:5000", "instanceID": "i-1"},
            }]})
        );
    }

    #[test]
    fn optional_fields_are_left_out_and_odd_text_is_escaped() {
        let mut mount = push_by_tag();
        mount.action = Action::Mount;
        mount.target.kind = TargetKind::Blob;
        mount.target.media_type = Some(BLOB_MEDIA_TYPE.into());
        mount.target.digest = Some("sha256:beef".into());
        mount.target.from_repository = Some("demo/base".into());
        mount.target.tag = None;
        mount.request.addr = Some("[::1]:5000".parse().unwrap());
        mount.request.user_agent = Some(r#"say "hi" \ bye"#.into());
        mount.actor = Some("alice".into());
        let mut delete = push_by_tag();
        delete.action = Action::Delete;
        delete.target.media_type = None;
        delete.target.digest = None;
        delete.target.size = None;
        delete.request.addr = None;
        delete.request.host = None;
        delete.request.user_agent = None;
        let json = parsed(&[&mount, &delete]);
        let events = json["events"].as_array().unwrap();
        assert_eq!(events.len(), 2);
        assert_eq!(
            events[0]["target"],
            json!({
                "mediaType": "application/octet-stream",
                "digest": "sha256:beef",
                "size": 708,
                "length": 708,
                "repository": "demo/app",
                "fromRepository": "demo/base",
                "url": "https://registry.local:5000/v2/demo/app/blobs/sha256:beef",
            })
        );
        assert_eq!(events[0]["action"], "mount");
        assert_eq!(events[0]["request"]["addr"], "[::1]:5000");
        assert_eq!(events[0]["request"]["useragent"], r#"say "hi" \ bye"#);
        assert_eq!(events[0]["actor"], json!({"name": "alice"}));
        assert_eq!(
            events[1]["target"],
            json!({"repository": "demo/app", "tag": "latest"})
        );
        assert_eq!(
            events[1]["request"],
            json!({"id": "req-1", "method": "PUT", "useragent": ""})
        );
    }
}
