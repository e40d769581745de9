//! Events and their JSON form: CNCF Distribution's envelope
//! (`application/vnd.docker.distribution.events.v1+json`).
//!
//! An [`Event`] is built on the request's path from what the response already holds (cheap
//! clones, no formatting); it becomes JSON only in the endpoint's dispatcher task.

use std::net::SocketAddr;
use std::time::SystemTime;

use axum::http::{HeaderValue, Method};
use serde::Serialize;
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

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
    /// Who: the authenticated identity, when there is one.
    pub actor: Option<String>,
}

fn text(v: &HeaderValue) -> &str {
    v.to_str().unwrap_or("")
}

#[derive(Serialize)]
struct WireEnvelope<'a> {
    events: Vec<WireEvent<'a>>,
}

#[derive(Serialize)]
struct WireEvent<'a> {
    id: String,
    timestamp: String,
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
    url: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    tag: Option<&'a str>,
}

#[derive(Serialize)]
struct WireRequest<'a> {
    id: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    addr: Option<String>,
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
fn uuid_text(id: u128) -> String {
    let v4 = (id & !(0xf << 76) & !(0x3 << 62)) | (0x4 << 76) | (0x2 << 62);
    let hex = format!("{v4:032x}");
    format!(
        "{}-{}-{}-{}-{}",
        &hex[..8],
        &hex[8..12],
        &hex[12..16],
        &hex[16..20],
        &hex[20..]
    )
}

fn rfc3339(t: SystemTime) -> String {
    OffsetDateTime::from(t)
        .format(&Rfc3339)
        .unwrap_or_else(|_| "1970-01-01T00:00:00Z".into())
}

impl Event {
    fn wire<'a>(&'a self, scheme: &str, source: &'a SourceRecord) -> WireEvent<'a> {
        let t = &self.target;
        let digest = t.digest.as_ref().map(text);
        let host = self.request.host.as_ref().map(text);
        // A link to the content, for pushes, pulls and mounts (deletes have none).
        let url = match (digest, host, t.size) {
            (Some(d), Some(h), Some(_)) => Some(format!(
                "{scheme}://{h}/v2/{}/{}/{d}",
                t.repository,
                match t.kind {
                    TargetKind::Manifest => "manifests",
                    TargetKind::Blob => "blobs",
                }
            )),
            _ => None,
        };
        WireEvent {
            id: uuid_text(self.id),
            timestamp: rfc3339(self.timestamp),
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
                addr: self.request.addr.map(|a| a.to_string()),
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

/// The JSON envelope of `events`.
pub fn envelope<'a>(
    events: impl IntoIterator<Item = &'a Event>,
    scheme: &str,
    source: &SourceRecord,
) -> Vec<u8> {
    let envelope = WireEnvelope {
        events: events.into_iter().map(|e| e.wire(scheme, source)).collect(),
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
            serde_json::from_slice(&envelope([&event], "https", &source)).unwrap();
        let e = &json["events"][0];
        assert_eq!(e["id"], "01234567-89ab-4def-8123-456789abcdef");
        assert_eq!(e["timestamp"], "1970-01-01T00:00:01.5Z");
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
