//! Byte-range grammars: the RFC 9110 `Range` request header for blob reads (spec "Pulling
//! blobs", end-2 with `Range`), and the `Content-Range: <start>-<end>` header of chunk uploads
//! (spec "Pushing a blob in chunks": `^[0-9]+-[0-9]+$`, inclusive on both ends, no unit).

use crate::error::Error;

/// A satisfiable, resolved byte range of a blob: `start..=end`, never empty.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ByteRange {
    /// First byte offset.
    pub start: u64,
    /// Last byte offset, inclusive.
    pub end: u64,
}

impl ByteRange {
    /// Number of bytes in the range.
    pub fn len(&self) -> u64 {
        self.end - self.start + 1
    }

    /// Always false: a `ByteRange` covers at least one byte.
    pub fn is_empty(&self) -> bool {
        false
    }
}

/// One range of an RFC 9110 `Range: bytes=...` header, before it is resolved against a size.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RangeRequest {
    /// `bytes=first-` or `bytes=first-last`.
    FromTo {
        /// First byte.
        first: u64,
        /// Last byte, inclusive, if given.
        last: Option<u64>,
    },
    /// `bytes=-n`: the final `n` bytes.
    Suffix(u64),
}

impl RangeRequest {
    /// Parses a `Range` header value.
    ///
    /// Returns `Ok(None)` when the header should be ignored (RFC 9110 §14.2: a recipient
    /// SHOULD ignore a Range it does not understand, e.g. another unit or several ranges, and
    /// answer 200 with the whole representation). Syntactically broken byte ranges are also
    /// ignored, as the RFC permits. A range whose last byte precedes its first (`bytes=500-0`)
    /// is kept, and [`resolve`](Self::resolve) reports it unsatisfiable: Go's
    /// `http.ServeContent` (the reference registry) and the OCI conformance suite answer 416.
    pub fn parse_header(value: &str) -> Option<Self> {
        let spec = value.trim();
        let (unit, set) = spec.split_once('=')?;
        if !unit.trim().eq_ignore_ascii_case("bytes") {
            return None;
        }
        let set = set.trim();
        if set.contains(',') {
            // Multiple ranges (multipart/byteranges) are not supported: serve the whole blob.
            return None;
        }
        let (first, last) = set.split_once('-')?;
        let (first, last) = (first.trim(), last.trim());
        let num = |s: &str| -> Option<u64> {
            if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
                None
            } else {
                s.parse().ok()
            }
        };
        if first.is_empty() {
            return num(last).map(Self::Suffix);
        }
        let first = num(first)?;
        let last = if last.is_empty() {
            None
        } else {
            Some(num(last)?)
        };
        Some(Self::FromTo { first, last })
    }

    /// Resolves the request against a representation of `size` bytes (RFC 9110 §14.1.2):
    /// clamps `last` to the end, and fails with `RangeInvalid` when unsatisfiable (first byte
    /// past the end, last byte before the first, a zero-length suffix, or an empty
    /// representation).
    pub fn resolve(self, size: u64) -> Result<ByteRange, Error> {
        let unsatisfiable = |reason: &str| Error::RangeInvalid {
            size,
            reason: reason.to_owned(),
        };
        match self {
            Self::FromTo { first, last } => {
                if last.is_some_and(|l| l < first) {
                    return Err(unsatisfiable("last byte is before the first"));
                }
                if first >= size {
                    return Err(unsatisfiable("first byte is past the end"));
                }
                let end = last.map_or(size - 1, |l| l.min(size - 1));
                Ok(ByteRange { start: first, end })
            }
            Self::Suffix(n) => {
                if n == 0 || size == 0 {
                    return Err(unsatisfiable("empty suffix range"));
                }
                Ok(ByteRange {
                    start: size.saturating_sub(n),
                    end: size - 1,
                })
            }
        }
    }
}

/// Parses the `Content-Range` header of a chunk upload: `<start>-<end>`, inclusive.
///
/// Returns `(start, end)`. Exactly the spec's form, `^[0-9]+-[0-9]+$` ("Pushing a blob in
/// chunks"): the RFC 9110 forms (`bytes 10-19/20`, `bytes=10-19`) describe a response's
/// range, not an upload chunk, and are rejected (`BLOB_UPLOAD_INVALID`) rather than guessed.
pub fn parse_content_range(value: &str) -> Result<(u64, u64), Error> {
    let invalid = || {
        Error::BlobUploadInvalid(format!(
            "invalid Content-Range {value:?}: expected <start>-<end>"
        ))
    };
    let (s, e) = value.split_once('-').ok_or_else(invalid)?;
    let digits = |x: &str| !x.is_empty() && x.bytes().all(|b| b.is_ascii_digit());
    if !digits(s) || !digits(e) {
        return Err(invalid());
    }
    let start: u64 = s.parse().map_err(|_| invalid())?;
    let end: u64 = e.parse().map_err(|_| invalid())?;
    if end < start {
        return Err(invalid());
    }
    Ok((start, end))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn range_header() {
        use RangeRequest::*;
        assert_eq!(
            RangeRequest::parse_header("bytes=0-9"),
            Some(FromTo {
                first: 0,
                last: Some(9)
            })
        );
        assert_eq!(
            RangeRequest::parse_header("bytes=5-"),
            Some(FromTo {
                first: 5,
                last: None
            })
        );
        assert_eq!(RangeRequest::parse_header("bytes=-3"), Some(Suffix(3)));
        assert_eq!(RangeRequest::parse_header("items=0-1"), None);
        assert_eq!(RangeRequest::parse_header("bytes=0-1,3-4"), None);
        assert_eq!(
            RangeRequest::parse_header("bytes=5-1"),
            Some(FromTo {
                first: 5,
                last: Some(1)
            })
        );
        assert_eq!(RangeRequest::parse_header("bytes=a-1"), None);
    }

    #[test]
    fn resolve() {
        let r = |s: &str| RangeRequest::parse_header(s).unwrap();
        assert_eq!(
            r("bytes=0-9").resolve(5).unwrap(),
            ByteRange { start: 0, end: 4 }
        );
        assert_eq!(
            r("bytes=-3").resolve(10).unwrap(),
            ByteRange { start: 7, end: 9 }
        );
        assert_eq!(
            r("bytes=-30").resolve(10).unwrap(),
            ByteRange { start: 0, end: 9 }
        );
        assert!(r("bytes=10-").resolve(10).is_err());
        assert!(r("bytes=500-0").resolve(1000).is_err());
        assert!(r("bytes=-0").resolve(10).is_err());
        assert!(r("bytes=0-").resolve(0).is_err());
    }

    #[test]
    fn content_range() {
        assert_eq!(parse_content_range("0-0").unwrap(), (0, 0));
        assert_eq!(parse_content_range("10-19").unwrap(), (10, 19));
        assert!(parse_content_range("bytes 10-19/*").is_err());
        assert!(parse_content_range("bytes 10-20").is_err());
        assert!(parse_content_range("bytes=10-19").is_err());
        assert!(parse_content_range("10-19/20").is_err());
        assert!(parse_content_range(" 10-19").is_err());
        assert!(parse_content_range("19-10").is_err());
        assert!(parse_content_range("-1").is_err());
        assert!(parse_content_range("a-b").is_err());
    }
}
