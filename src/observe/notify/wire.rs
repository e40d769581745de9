//! The JSON of an envelope, written straight into a byte buffer.
//!
//! The sender serialises tens of thousands of events a second under load (every pull is one),
//! so this writer does the least it can per event: the `source` object, the same in every
//! event, is written once when the sender starts; the date and time of day are formatted
//! once a second; ids, addresses and numbers are written digit by digit; strings that need
//! no escaping (all of them in practice: header values are visible ASCII, names and digests
//! follow the spec's grammars) are copied as they are, after one check over their bytes,
//! eight at a time.
//! The output is the same JSON `serde_json` would write for Distribution's envelope
//! (`distribution/distribution` `docs/content/about/notifications.md`); the tests parse it
//! back with `serde_json`.

use std::borrow::Borrow;
use std::fmt::Write as _;
use std::net::SocketAddr;
use std::time::{SystemTime, UNIX_EPOCH};

use bytes::{BufMut, BytesMut};
use time::OffsetDateTime;

use super::event::{Event, SourceRecord, TargetKind};

/// Writes envelopes for one endpoint's sender; keeps what is the same from one to the next.
#[derive(Debug)]
pub(super) struct EnvelopeWriter {
    /// `http` or `https`, for the targets' URLs.
    scheme: Box<str>,
    /// `,"source":{...}}`: the end of every event.
    source_and_end: Box<[u8]>,
    /// The second `date_time` was formatted for.
    second: u64,
    /// `YYYY-MM-DDTHH:MM:SS` of `second`.
    date_time: [u8; 19],
    /// Bytes per event in the last envelope, to size the next one's buffer.
    bytes_per_event: usize,
    /// Events in the envelope being written.
    events: usize,
}

impl EnvelopeWriter {
    pub(super) fn new(scheme: &str, source: &SourceRecord) -> Self {
        let mut end = BytesMut::with_capacity(128);
        end.extend_from_slice(br#","source":{"addr":"#);
        string(&mut end, source.addr.as_bytes());
        end.extend_from_slice(br#","instanceID":"#);
        string(&mut end, source.instance_id.as_bytes());
        end.extend_from_slice(b"}}");
        let mut writer = Self {
            scheme: scheme.into(),
            source_and_end: end.to_vec().into_boxed_slice(),
            second: 0,
            date_time: [0; 19],
            bytes_per_event: 768,
            events: 0,
        };
        writer.format_second(0);
        writer
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
        out.reserve(16 + events * self.bytes_per_event);
        out.extend_from_slice(br#"{"events":["#);
        self.events = 0;
    }

    /// Closes the envelope `out` holds.
    pub(super) fn end(&mut self, out: &mut BytesMut) {
        out.extend_from_slice(b"]}");
        // A little more than the last average, so that the next buffer rarely grows.
        if let Some(average) = out.len().checked_div(self.events) {
            self.bytes_per_event = average + 32;
        }
    }

    /// Adds `e` to the envelope `out` holds.
    pub(super) fn event(&mut self, out: &mut BytesMut, e: &Event) {
        if self.events > 0 {
            out.put_u8(b',');
        }
        self.events += 1;
        out.extend_from_slice(br#"{"id":""#);
        uuid(out, e.id);
        out.extend_from_slice(br#"","timestamp":""#);
        self.timestamp(out, e.timestamp);
        out.extend_from_slice(br#"","action":""#);
        out.extend_from_slice(e.action.as_str().as_bytes());
        out.extend_from_slice(br#"","target":{"#);
        let t = &e.target;
        // Fields are separated by a comma; `repository` always comes, so every optional field
        // before it ends with one, every one after it starts with one.
        if let Some(media_type) = &t.media_type {
            out.extend_from_slice(br#""mediaType":"#);
            string(out, media_type.as_bytes());
            out.put_u8(b',');
        }
        let digest = t.digest.as_ref().map(|d| d.as_bytes());
        if let Some(digest) = digest {
            out.extend_from_slice(br#""digest":"#);
            string(out, digest);
            out.put_u8(b',');
        }
        if let Some(size) = t.size {
            out.extend_from_slice(br#""size":"#);
            decimal(out, size);
            out.extend_from_slice(br#","length":"#);
            decimal(out, size);
            out.put_u8(b',');
        }
        let repository = t.repository.as_bytes();
        out.extend_from_slice(br#""repository":"#);
        string(out, repository);
        if let Some(from) = &t.from_repository {
            out.extend_from_slice(br#","fromRepository":"#);
            string(out, from.as_bytes());
        }
        let host = e.request.host.as_deref().map(str::as_bytes);
        // A link to the content, for pushes, pulls and mounts (deletes have no size).
        if let (Some(digest), Some(host), Some(_)) = (digest, host, t.size) {
            let kind: &[u8] = match t.kind {
                TargetKind::Manifest => b"/manifests/",
                TargetKind::Blob => b"/blobs/",
            };
            out.extend_from_slice(br#","url":""#);
            escaped(out, self.scheme.as_bytes());
            out.extend_from_slice(b"://");
            escaped(out, host);
            out.extend_from_slice(b"/v2/");
            escaped(out, repository);
            out.extend_from_slice(kind);
            escaped(out, digest);
            out.put_u8(b'"');
        }
        if let Some(tag) = &t.tag {
            out.extend_from_slice(br#","tag":"#);
            string(out, tag.as_bytes());
        }
        let r = &e.request;
        out.extend_from_slice(br#"},"request":{"id":"#);
        string(out, r.id.as_bytes());
        if let Some(addr) = r.addr {
            out.extend_from_slice(br#","addr":""#);
            socket_addr(out, addr);
            out.put_u8(b'"');
        }
        if let Some(host) = host {
            out.extend_from_slice(br#","host":"#);
            string(out, host);
        }
        out.extend_from_slice(br#","method":"#);
        string(out, r.method.as_str().as_bytes());
        out.extend_from_slice(br#","useragent":"#);
        string(out, r.user_agent.as_deref().unwrap_or("").as_bytes());
        out.extend_from_slice(br#"},"actor":{"#);
        if let Some(name) = &e.actor {
            out.extend_from_slice(br#""name":"#);
            string(out, name.as_bytes());
        }
        out.put_u8(b'}');
        out.extend_from_slice(&self.source_and_end);
    }

    /// RFC 3339 in UTC with as many fractional digits as needed (none when zero), as Go's
    /// `time.RFC3339Nano` writes it (Distribution's timestamps).
    fn timestamp(&mut self, out: &mut BytesMut, at: SystemTime) {
        let since = at.duration_since(UNIX_EPOCH).unwrap_or_default();
        if since.as_secs() != self.second {
            self.format_second(since.as_secs());
        }
        out.extend_from_slice(&self.date_time);
        let mut nanos = since.subsec_nanos();
        if nanos > 0 {
            let mut digits = 9;
            while nanos.is_multiple_of(10) {
                nanos /= 10;
                digits -= 1;
            }
            out.put_u8(b'.');
            let mut buf = [b'0'; 9];
            for slot in buf[..digits].iter_mut().rev() {
                *slot = b'0' + (nanos % 10) as u8;
                nanos /= 10;
            }
            out.extend_from_slice(&buf[..digits]);
        }
        out.put_u8(b'Z');
    }

    fn format_second(&mut self, second: u64) {
        let t = i64::try_from(second)
            .ok()
            .and_then(|s| OffsetDateTime::from_unix_timestamp(s).ok())
            .unwrap_or(OffsetDateTime::UNIX_EPOCH);
        let mut text = [0u8; 19];
        // 19 bytes for years 0 to 9999, which is all `OffsetDateTime` holds by default.
        let formatted = format!(
            "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}",
            t.year(),
            u8::from(t.month()),
            t.day(),
            t.hour(),
            t.minute(),
            t.second()
        );
        text.copy_from_slice(&formatted.as_bytes()[..19]);
        self.second = second;
        self.date_time = text;
    }
}

/// A 128-bit id written as a UUID (version 4 layout), 36 characters.
fn uuid(out: &mut BytesMut, id: u128) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    /// Where each byte's two digits go, around the dashes.
    const AT: [usize; 16] = [0, 2, 4, 6, 9, 11, 14, 16, 19, 21, 24, 26, 28, 30, 32, 34];
    let v4 = (id & !(0xf << 76) & !(0x3 << 62)) | (0x4 << 76) | (0x2 << 62);
    let mut text = [b'-'; 36];
    for (byte, at) in v4.to_be_bytes().into_iter().zip(AT) {
        text[at] = HEX[usize::from(byte >> 4)];
        text[at + 1] = HEX[usize::from(byte & 0xf)];
    }
    out.extend_from_slice(&text);
}

fn decimal(out: &mut BytesMut, mut n: u64) {
    let mut buf = [0u8; 20];
    let mut start = buf.len();
    loop {
        start -= 1;
        buf[start] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    // Byte by byte: a few digits, cheaper than a call to copy them.
    for &digit in &buf[start..] {
        out.put_u8(digit);
    }
}

/// `a.b.c.d:port`, or `[v6]:port` (as `Display` writes them).
fn socket_addr(out: &mut BytesMut, addr: SocketAddr) {
    match addr {
        SocketAddr::V4(v4) => {
            for (n, octet) in v4.ip().octets().into_iter().enumerate() {
                if n > 0 {
                    out.put_u8(b'.');
                }
                decimal(out, octet.into());
            }
            out.put_u8(b':');
            decimal(out, v4.port().into());
        }
        SocketAddr::V6(v6) => {
            let _ = write!(out, "{v6}");
        }
    }
}

/// `text` as a JSON string.
fn string(out: &mut BytesMut, text: &[u8]) {
    out.put_u8(b'"');
    escaped(out, text);
    out.put_u8(b'"');
}

/// Whether `bytes` hold a `"`, a `\` or a control character, looked for eight bytes at a
/// time (the usual answer is "no"): a byte below `n` (`n` at most 128) is one whose
/// subtraction of `n` borrows into its top bit while that bit was clear.
fn needs_escape(bytes: &[u8]) -> bool {
    const ONES: u64 = u64::from_ne_bytes([0x01; 8]);
    const TOPS: u64 = u64::from_ne_bytes([0x80; 8]);
    let below = |x: u64, n: u8| x.wrapping_sub(ONES * u64::from(n)) & !x & TOPS != 0;
    let quote = ONES * u64::from(b'"');
    let backslash = ONES * u64::from(b'\\');
    let mut words = bytes.chunks_exact(8);
    for word in &mut words {
        let x = u64::from_ne_bytes(word.try_into().expect("8 bytes"));
        if below(x, 0x20) || below(x ^ quote, 1) || below(x ^ backslash, 1) {
            return true;
        }
    }
    words
        .remainder()
        .iter()
        .any(|&b| b < 0x20 || b == b'"' || b == b'\\')
}

/// `bytes` (UTF-8) as the inside of a JSON string: `"`, `\` and control characters escaped.
fn escaped(out: &mut BytesMut, bytes: &[u8]) {
    if !needs_escape(bytes) {
        out.extend_from_slice(bytes);
        return;
    }
    let mut plain = 0;
    for (i, &b) in bytes.iter().enumerate() {
        let short: &[u8] = match b {
            b'"' => br#"\""#,
            b'\\' => br"\\",
            b'\n' => br"\n",
            b'\r' => br"\r",
            b'\t' => br"\t",
            0x08 => br"\b",
            0x0c => br"\f",
            0x00..=0x1f => &[],
            _ => continue,
        };
        out.extend_from_slice(&bytes[plain..i]);
        plain = i + 1;
        if short.is_empty() {
            let _ = write!(out, "\\u{b:04x}");
        } else {
            out.extend_from_slice(short);
        }
    }
    out.extend_from_slice(&bytes[plain..]);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strings_are_escaped_as_json_requires() {
        for s in [
            "plain",
            "",
            "quote\" and back\\slash",
            "tab\tnewline\ncr\rbell\u{7}nul\u{0}",
            "ünïcödé ✓",
            "\u{1f}\u{8}\u{c}",
        ] {
            let mut out = BytesMut::new();
            string(&mut out, s.as_bytes());
            let back: String = serde_json::from_slice(&out).unwrap();
            assert_eq!(back, s);
            assert_eq!(&out[..], serde_json::to_vec(s).unwrap(), "{s:?}");
        }
    }

    #[test]
    fn every_byte_that_needs_escaping_is_found_wherever_it_is() {
        let plain = |b: u8| b >= 0x20 && b != b'"' && b != b'\\';
        for len in [1, 7, 8, 9, 16, 23] {
            for at in 0..len {
                for b in 0..=u8::MAX {
                    let mut bytes = vec![b'a'; len];
                    bytes[at] = b;
                    assert_eq!(needs_escape(&bytes), !plain(b), "{b:#x} at {at} of {len}");
                }
            }
        }
        // Bytes above 0x7f (UTF-8 sequences) need none.
        assert!(!needs_escape("ünïcödé ✓ and more".as_bytes()));
    }

    #[test]
    fn numbers_addresses_and_ids_are_written_as_display_writes_them() {
        for n in [0, 7, 10, 708, u64::MAX] {
            let mut out = BytesMut::new();
            decimal(&mut out, n);
            assert_eq!(&out[..], n.to_string().as_bytes());
        }
        for addr in [
            "127.0.0.1:4242",
            "10.200.3.45:65535",
            "[::1]:80",
            "[fe80::1]:5000",
        ] {
            let addr: SocketAddr = addr.parse().unwrap();
            let mut out = BytesMut::new();
            socket_addr(&mut out, addr);
            assert_eq!(&out[..], addr.to_string().as_bytes());
        }
        let mut out = BytesMut::new();
        uuid(&mut out, 0x0123_4567_89ab_cdef_0123_4567_89ab_cdef);
        assert_eq!(&out[..], b"01234567-89ab-4def-8123-456789abcdef");
    }

    #[test]
    fn timestamps_are_rfc3339_with_trimmed_fractions() {
        let source = SourceRecord {
            addr: "n:1".into(),
            instance_id: "i".into(),
        };
        let mut writer = EnvelopeWriter::new("http", &source);
        let text = |writer: &mut EnvelopeWriter, at: SystemTime| {
            let mut out = BytesMut::new();
            writer.timestamp(&mut out, at);
            String::from_utf8(out.to_vec()).unwrap()
        };
        let at = |secs, nanos| UNIX_EPOCH + std::time::Duration::new(secs, nanos);
        assert_eq!(text(&mut writer, at(0, 0)), "1970-01-01T00:00:00Z");
        assert_eq!(
            text(&mut writer, at(1, 500_000_000)),
            "1970-01-01T00:00:01.5Z"
        );
        assert_eq!(
            text(&mut writer, at(1_796_497_331, 40_912_003)),
            "2026-12-05T19:02:11.040912003Z"
        );
        // The same second again (formatted once), then the next one.
        assert_eq!(
            text(&mut writer, at(1_796_497_331, 1_000)),
            "2026-12-05T19:02:11.000001Z"
        );
        assert_eq!(
            text(&mut writer, at(1_796_497_332, 0)),
            "2026-12-05T19:02:12Z"
        );
    }
}
