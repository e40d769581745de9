//! The JSON of an envelope, written with `serde_json` straight into the sender's buffer.
//!
//! The shapes below borrow everything from the [`Event`]: serialising one allocates nothing
//! but the growth of the output buffer. Field names and the fields left out follow
//! Distribution's envelope (`distribution/distribution` `docs/content/about/notifications.md`).

use std::borrow::Borrow;
use std::fmt;
use std::net::SocketAddr;
use std::time::{SystemTime, UNIX_EPOCH};

use bytes::{BufMut, BytesMut};
use serde::{Serialize, Serializer};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use super::event::{Event, SourceRecord, TargetKind};

/// Writes envelopes for one endpoint's sender.
#[derive(Debug)]
pub(super) struct EnvelopeWriter {
    /// `http` or `https`, for the targets' URLs.
    scheme: Box<str>,
    /// This registry node, the same in every event.
    source: SourceRecord,
    /// Events in the envelope being written.
    events: usize,
}

impl EnvelopeWriter {
    pub(super) fn new(scheme: &str, source: &SourceRecord) -> Self {
        Self {
            scheme: scheme.into(),
            source: source.clone(),
            events: 0,
        }
    }

    /// The envelope of `events` (one or more), in their order.
    pub(super) fn envelope<E: Borrow<Event>>(&mut self, events: &[E]) -> BytesMut {
        let mut out = BytesMut::new();
        self.begin(&mut out, events.len());
        for event in events {
            self.event(&mut out, event.borrow());
        }
        self.end(&mut out);
        out
    }

    /// Starts an envelope of about `events` events in `out`, which should be empty (the
    /// sender reuses one buffer); [`Self::event`] adds each, [`Self::end`] closes it.
    pub(super) fn begin(&mut self, out: &mut BytesMut, events: usize) {
        // About 600 bytes per event (the typical pull of a blob).
        out.reserve(16 + events * 640);
        out.extend_from_slice(br#"{"events":["#);
        self.events = 0;
    }

    /// Closes the envelope `out` holds.
    pub(super) fn end(&mut self, out: &mut BytesMut) {
        out.extend_from_slice(b"]}");
    }

    /// Adds `event` to the envelope `out` holds; `false` when it could not be written and was
    /// left out.
    pub(super) fn event(&mut self, out: &mut BytesMut, event: &Event) -> bool {
        let start = out.len();
        if self.events > 0 {
            out.put_u8(b',');
        }
        let json = EventJson::new(event, &self.scheme, &self.source);
        // Writing into memory fails only on a field that cannot be written (a timestamp
        // beyond what RFC 3339 holds): the event is left out, the envelope stays whole.
        match serde_json::to_writer(out.writer(), &json) {
            Ok(()) => {
                self.events += 1;
                true
            }
            Err(e) => {
                out.truncate(start);
                tracing::warn!(error = %e, "an event could not be written; left out");
                false
            }
        }
    }
}

/// One event as Distribution writes it.
#[derive(Serialize)]
struct EventJson<'a> {
    #[serde(serialize_with = "uuid")]
    id: u128,
    #[serde(serialize_with = "rfc3339")]
    timestamp: SystemTime,
    action: &'static str,
    target: TargetJson<'a>,
    request: RequestJson<'a>,
    actor: ActorJson<'a>,
    source: SourceJson<'a>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct TargetJson<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    media_type: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    digest: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    size: Option<u64>,
    /// Distribution writes the size twice (`length` is the older name).
    #[serde(skip_serializing_if = "Option::is_none")]
    length: Option<u64>,
    repository: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    from_repository: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none", serialize_with = "display")]
    url: Option<ContentUrl<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    tag: Option<&'a str>,
}

#[derive(Serialize)]
struct RequestJson<'a> {
    id: &'a str,
    #[serde(skip_serializing_if = "Option::is_none", serialize_with = "display")]
    addr: Option<SocketAddr>,
    #[serde(skip_serializing_if = "Option::is_none")]
    host: Option<&'a str>,
    method: &'a str,
    useragent: &'a str,
}

#[derive(Serialize)]
struct ActorJson<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    name: Option<&'a str>,
}

#[derive(Serialize)]
struct SourceJson<'a> {
    addr: &'a str,
    #[serde(rename = "instanceID")]
    instance_id: &'a str,
}

/// `scheme://host/v2/<repository>/(manifests|blobs)/<digest>`: where the content is.
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
        let Self {
            scheme,
            host,
            repository,
            digest,
            ..
        } = self;
        write!(f, "{scheme}://{host}/v2/{repository}/{kind}/{digest}")
    }
}

impl<'a> EventJson<'a> {
    fn new(e: &'a Event, scheme: &'a str, source: &'a SourceRecord) -> Self {
        let t = &e.target;
        let digest = t.digest.as_ref().map(|d| d.as_str());
        let host = e.request.host.as_deref();
        // A link to the content, for pushes, pulls and mounts (deletes have no size).
        let url = match (digest, host, t.size) {
            (Some(digest), Some(host), Some(_)) => Some(ContentUrl {
                scheme,
                host,
                repository: t.repository.as_str(),
                kind: t.kind,
                digest,
            }),
            _ => None,
        };
        Self {
            id: e.id,
            timestamp: e.timestamp,
            action: e.action.as_str(),
            target: TargetJson {
                media_type: t.media_type.as_ref().map(|m| m.as_str()),
                digest,
                size: t.size,
                length: t.size,
                repository: t.repository.as_str(),
                from_repository: t.from_repository.as_ref().map(|r| r.as_str()),
                url,
                tag: t.tag.as_ref().map(|tag| tag.as_str()),
            },
            request: RequestJson {
                id: e.request.id.as_str(),
                addr: e.request.addr,
                host,
                method: e.request.method.as_str(),
                useragent: e.request.user_agent.as_deref().unwrap_or(""),
            },
            actor: ActorJson {
                name: e.actor.as_deref(),
            },
            source: SourceJson {
                addr: &source.addr,
                instance_id: &source.instance_id,
            },
        }
    }
}

/// A 128-bit id as a version 4 UUID (`xxxxxxxx-xxxx-4xxx-yxxx-xxxxxxxxxxxx`).
fn uuid<S: Serializer>(id: &u128, s: S) -> Result<S::Ok, S::Error> {
    let uuid = uuid::Builder::from_random_bytes(id.to_be_bytes()).into_uuid();
    s.collect_str(&uuid.hyphenated())
}

/// RFC 3339 in UTC with as many fractional digits as needed (none when zero), as Go's
/// `time.RFC3339Nano` writes Distribution's timestamps.
fn rfc3339<S: Serializer>(at: &SystemTime, s: S) -> Result<S::Ok, S::Error> {
    // "2026-12-05T19:02:11.040912003Z": 30 bytes; years past 9999 do not occur.
    let mut text = [0u8; 40];
    let mut rest = &mut text[..];
    // Checked, unlike `From<SystemTime>`, which panics on a time `OffsetDateTime` cannot hold.
    let nanos = match at.duration_since(UNIX_EPOCH) {
        Ok(after) => i128::try_from(after.as_nanos()).unwrap_or(i128::MAX),
        Err(before) => i128::try_from(before.duration().as_nanos()).map_or(i128::MIN, |n| -n),
    };
    OffsetDateTime::from_unix_timestamp_nanos(nanos)
        .map_err(serde::ser::Error::custom)?
        .format_into(&mut rest, &Rfc3339)
        .map_err(serde::ser::Error::custom)?;
    let written = 40 - rest.len();
    s.serialize_str(std::str::from_utf8(&text[..written]).map_err(serde::ser::Error::custom)?)
}

/// A present optional field (the absent ones are skipped) through its `Display`.
fn display<T: fmt::Display, S: Serializer>(value: &Option<T>, s: S) -> Result<S::Ok, S::Error> {
    match value {
        Some(value) => s.collect_str(value),
        None => s.serialize_none(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn written<T: Serialize>(value: &T) -> String {
        serde_json::to_string(value).unwrap()
    }

    #[derive(Serialize)]
    struct At(#[serde(serialize_with = "rfc3339")] SystemTime);

    #[derive(Serialize)]
    struct Id(#[serde(serialize_with = "uuid")] u128);

    #[test]
    fn timestamps_are_rfc3339_with_trimmed_fractions() {
        let at = |secs, nanos| At(UNIX_EPOCH + Duration::new(secs, nanos));
        assert_eq!(written(&at(0, 0)), r#""1970-01-01T00:00:00Z""#);
        assert_eq!(written(&at(1, 500_000_000)), r#""1970-01-01T00:00:01.5Z""#);
        assert_eq!(
            written(&at(1_796_497_331, 40_912_003)),
            r#""2026-12-05T19:02:11.040912003Z""#
        );
        assert_eq!(
            written(&at(1_796_497_331, 1_000)),
            r#""2026-12-05T19:02:11.000001Z""#
        );
        // A time past year 9999 is an error, not a panic.
        let far = At(UNIX_EPOCH + Duration::from_secs(400_000_000_000));
        assert!(serde_json::to_string(&far).is_err());
    }

    #[test]
    fn ids_are_version_4_uuids() {
        assert_eq!(
            written(&Id(0x0123_4567_89ab_cdef_0123_4567_89ab_cdef)),
            r#""01234567-89ab-4def-8123-456789abcdef""#
        );
        assert_eq!(
            written(&Id(u128::MAX)),
            r#""ffffffff-ffff-4fff-bfff-ffffffffffff""#
        );
    }
}
