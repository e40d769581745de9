//! [`EventText`]: the short texts of an event, kept inside it.

use std::fmt;

/// A short text of an event (a repository name, a digest, a tag, a media type, a request
/// id): kept inside the event up to [`EventText::INLINE`] bytes, which they nearly always fit
/// (a `sha256` digest is 71), on the heap beyond.
///
/// Making an event thus allocates nothing. That matters because an event is made on a
/// request's thread and freed on the sender's: memory allocated on one thread and freed on
/// another takes both threads through the allocator's slow path, which slowed every
/// allocation of the request path measurably (see `docs/performance.md`).
#[derive(Clone, PartialEq, Eq)]
pub struct EventText(Repr);

#[derive(Clone, PartialEq, Eq)]
enum Repr {
    Inline {
        len: u8,
        bytes: [u8; EventText::INLINE],
    },
    Heap(Box<str>),
}

impl EventText {
    /// The longest text kept inline.
    pub const INLINE: usize = 78;

    /// A copy of `text`.
    pub fn new(text: &str) -> Self {
        match u8::try_from(text.len()) {
            Ok(len) if text.len() <= Self::INLINE => {
                let mut bytes = [0; Self::INLINE];
                bytes[..text.len()].copy_from_slice(text.as_bytes());
                Self(Repr::Inline { len, bytes })
            }
            _ => Self(Repr::Heap(text.into())),
        }
    }

    /// The text.
    pub fn as_str(&self) -> &str {
        // Inline bytes are a copy of a whole `str`: always valid UTF-8.
        std::str::from_utf8(self.as_bytes()).unwrap_or_default()
    }

    /// The text's bytes (UTF-8).
    pub fn as_bytes(&self) -> &[u8] {
        match &self.0 {
            Repr::Inline { len, bytes } => &bytes[..usize::from(*len)],
            Repr::Heap(text) => text.as_bytes(),
        }
    }
}

impl From<&str> for EventText {
    fn from(text: &str) -> Self {
        Self::new(text)
    }
}

impl fmt::Debug for EventText {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self.as_str(), f)
    }
}

impl fmt::Display for EventText {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn short_and_long_texts_read_back() {
        let digest = format!("sha256:{}", "a".repeat(64));
        let long = format!("sha512:{}", "b".repeat(128));
        for text in ["", "demo/app", "ünï", digest.as_str(), long.as_str()] {
            let t = EventText::new(text);
            assert_eq!(t.as_str(), text);
            assert_eq!(t.as_bytes(), text.as_bytes());
            assert_eq!(t, EventText::from(text));
        }
        assert!(matches!(EventText::new(&digest).0, Repr::Inline { .. }));
        assert!(matches!(EventText::new(&long).0, Repr::Heap(_)));
        assert_eq!(format!("{:?}", EventText::new("a\"b")), r#""a\"b""#);
    }
}
