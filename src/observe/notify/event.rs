//! Events and their JSON form: CNCF Distribution's envelope
//! (`application/vnd.docker.distribution.events.v1+json`).
//!
//! An [`Event`] is built on the request's path from what the response already holds (cheap
//! clones, no formatting); it becomes JSON only in the endpoint's dispatcher task.

use std::borrow::Borrow;
use std::fmt;
use std::net::SocketAddr;
use std::time::SystemTime;

use axum::http::{HeaderValue, Method};
use serde::{Serialize, Serializer};
use time::OffsetDateTime;

use crate::oci::RepositoryName;

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
    pub media_type: Option<HeaderValue>,
    /// The digest; absent on a tag delete.
    pub digest: Option<HeaderValue>,
    /// The size in bytes; absent on deletes.
    pub size: Option<u64>,
    /// The repository.
    pub repository: RepositoryName,
    /// The repository a mounted blob came from.
    pub from_repository: Option<String>,
    /// The tag a manifest was pushed, pulled or deleted by.
    pub tag: Option<String>,
}

/// The request that caused an event.
#[derive(Debug, Clone)]
pub struct RequestRecord {
    /// The request id (`X-Request-Id`).
    pub id: HeaderValue,
    /// The client's address, when the server records it.
    pub addr: Option<SocketAddr>,
    /// The `Host` the client addressed.
    pub host: Option<HeaderValue>,
    /// The method.
    pub method: Method,
    /// The `User-Agent`.
    pub user_agent: Option<HeaderValue>,
}

/// The registry node that generated events.
#[derive(Debug, Clone, Serialize)]
pub struct SourceRecord {
    /// `host:port` of the registry's listener.
    pub addr: String,
    /// Random, new on every start.
    #[serde(rename = "instanceID")]
    pub instance_id: String,
}

/// One event.
#[derive(Debug, Clone)]
pub struct Event {
    /// Unique id (random 128 bits, written as a UUID).
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
    pub actor: Option<std::sync::Arc<str>>,
}

fn text(v: &HeaderValue) -> &str {
    v.to_str().unwrap_or("")
}

/// Written with `Display`, straight into the JSON text (no `String` per field).
struct Text<T>(T);

impl<T: fmt::Display> Serialize for Text<T> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(&self.0)
    }
}

/// The events of one envelope, serialised one by one as the JSON is written.
struct WireEvents<'a, E> {
    events: &'a [E],
    scheme: &'a str,
    source: &'a SourceRecord,
}

impl<E: Borrow<Event>> Serialize for WireEvents<'_, E> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_seq(
            self.events
                .iter()
                .map(|e| e.borrow().wire(self.scheme, self.source)),
        )
    }
}

#[derive(Serialize)]
#[serde(bound = "E: Borrow<Event>")]
struct WireEnvelope<'a, E> {
    events: WireEvents<'a, E>,
}

#[derive(Serialize)]
struct WireEvent<'a> {
    id: Text<Uuid>,
    timestamp: Text<Rfc3339Time>,
    action: &'static str,
    target: WireTarget<'a>,
    request: WireRequest<'a>,
    actor: WireActor<'a>,
    source: &'a SourceRecord,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct WireTarget<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    media_type: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    digest: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    size: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    length: Option<u64>,
    repository: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    from_repository: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    url: Option<Text<ContentUrl<'a>>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    tag: Option<&'a str>,
}

#[derive(Serialize)]
struct WireRequest<'a> {
    id: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    addr: Option<SocketAddr>,
    #[serde(skip_serializing_if = "Option::is_none")]
    host: Option<&'a str>,
    method: &'a str,
    useragent: &'a str,
}

#[derive(Serialize)]
struct WireActor<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    name: Option<&'a str>,
}

/// A 128-bit id written as a UUID (version 4 layout).
struct Uuid(u128);

impl fmt::Display for Uuid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let v4 = (self.0 & !(0xf << 76) & !(0x3 << 62)) | (0x4 << 76) | (0x2 << 62);
        write!(
            f,
            "{:08x}-{:04x}-{:04x}-{:04x}-{:012x}",
            v4 >> 96,
            (v4 >> 80) & 0xffff,
            (v4 >> 64) & 0xffff,
            (v4 >> 48) & 0xffff,
            v4 & 0xffff_ffff_ffff
        )
    }
}

/// A time in RFC 3339, UTC.
struct Rfc3339Time(SystemTime);

impl fmt::Display for Rfc3339Time {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let t = OffsetDateTime::from(self.0);
        write!(
            f,
            "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}",
            t.year(),
            u8::from(t.month()),
            t.day(),
            t.hour(),
            t.minute(),
            t.second()
        )?;
        // Fractional seconds as RFC 3339 allows: as many digits as needed, none when zero.
        let mut nanos = t.nanosecond();
        if nanos > 0 {
            let mut digits = 9;
            while nanos % 10 == 0 {
                nanos /= 10;
                digits -= 1;
            }
            write!(f, ".{nanos:0digits$}")?;
        }
        f.write_str("Z")
    }
}

/// A direct link to an event's content: `{scheme}://{host}/v2/{name}/{manifests|blobs}/{digest}`.
struct ContentUrl<'a> {
    scheme: &'a str,
    host: &'a str,
    repository: &'a str,
    kind: TargetKind,
    digest: &'a str,
}

impl fmt::Display for ContentUrl<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let kind = match self.kind {
            TargetKind::Manifest => "manifests",
            TargetKind::Blob => "blobs",
        };
        write!(
            f,
            "{}://{}/v2/{}/{kind}/{}",
            self.scheme, self.host, self.repository, self.digest
        )
    }
}

impl Event {
    fn wire<'a>(&'a self, scheme: &'a str, source: &'a SourceRecord) -> WireEvent<'a> {
        let t = &self.target;
        let digest = t.digest.as_ref().map(text);
        let host = self.request.host.as_ref().map(text);
        // A link to the content, for pushes, pulls and mounts (deletes have none).
        let url = match (digest, host, t.size) {
            (Some(digest), Some(host), Some(_)) => Some(Text(ContentUrl {
                scheme,
                host,
                repository: t.repository.as_str(),
                kind: t.kind,
                digest,
            })),
            _ => None,
        };
        WireEvent {
            id: Text(Uuid(self.id)),
            timestamp: Text(Rfc3339Time(self.timestamp)),
            action: self.action.as_str(),
            target: WireTarget {
                media_type: t.media_type.as_ref().map(text),
                digest,
                size: t.size,
                length: t.size,
                repository: t.repository.as_str(),
                from_repository: t.from_repository.as_deref(),
                url,
                tag: t.tag.as_deref(),
            },
            request: WireRequest {
                id: text(&self.request.id),
                addr: self.request.addr,
                host,
                method: self.request.method.as_str(),
                useragent: self.request.user_agent.as_ref().map_or("", text),
            },
            actor: WireActor {
                name: self.actor.as_deref(),
            },
            source,
        }
    }
}

/// The JSON envelope of `events` (one or more), in their order.
pub fn envelope<E: Borrow<Event>>(events: &[E], scheme: &str, source: &SourceRecord) -> Vec<u8> {
    let envelope = WireEnvelope {
        events: WireEvents {
            events,
            scheme,
            source,
        },
    };
    serde_json::to_vec(&envelope).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn envelope_has_distributions_fields() {
        let event = Event {
            id: 0x0123_4567_89ab_cdef_0123_4567_89ab_cdef,
            timestamp: SystemTime::UNIX_EPOCH + std::time::Duration::from_millis(1500),
            action: Action::Push,
            target: Target {
                kind: TargetKind::Manifest,
                media_type: Some(HeaderValue::from_static(
                    "application/vnd.oci.image.manifest.v1+json",
                )),
                digest: Some(HeaderValue::from_static("sha256:abcd")),
                size: Some(708),
                repository: RepositoryName::parse("demo/app").unwrap(),
                from_repository: None,
                tag: Some("latest".into()),
            },
            request: RequestRecord {
                id: HeaderValue::from_static("req-1"),
                addr: Some("127.0.0.1:4242".parse().unwrap()),
                host: Some(HeaderValue::from_static("registry.local:5000")),
                method: Method::PUT,
                user_agent: Some(HeaderValue::from_static("skopeo/1.0")),
            },
            actor: None,
        };
        let source = SourceRecord {
            addr: "node:5000".into(),
            instance_id: "i-1".into(),
        };
        let json: serde_json::Value =
            serde_json::from_slice(&envelope(&[&event], "https", &source)).unwrap();
        let e = &json["events"][0];
        assert_eq!(e["id"], "01234567-89ab-4def-8123-456789abcdef");
        assert_eq!(e["timestamp"], "1970-01-01T00:00:01.5Z");
        let later = SystemTime::UNIX_EPOCH + std::time::Duration::new(1_796_497_331, 40_912_003);
        assert_eq!(
            Rfc3339Time(later).to_string(),
            "2026-12-05T19:02:11.040912003Z"
        );
        assert_eq!(
            Rfc3339Time(SystemTime::UNIX_EPOCH).to_string(),
            "1970-01-01T00:00:00Z"
        );
        assert_eq!(e["action"], "push");
        assert_eq!(
            e["target"]["mediaType"],
            "application/vnd.oci.image.manifest.v1+json"
        );
        assert_eq!(e["target"]["size"], 708);
        assert_eq!(e["target"]["length"], 708);
        assert_eq!(
            e["target"]["url"],
            "https://registry.local:5000/v2/demo/app/manifests/sha256:abcd"
        );
        assert_eq!(e["target"]["tag"], "latest");
        assert_eq!(e["request"]["addr"], "127.0.0.1:4242");
        assert_eq!(e["request"]["useragent"], "skopeo/1.0");
        assert_eq!(e["actor"], serde_json::json!({}));
        assert_eq!(e["source"]["instanceID"], "i-1");
    }
}
