//! The persisted state of an upload, [`S3UploadState`]: its multipart upload, the parts
//! uploaded so far and the staged segments after them (stored as JSON by the engine, so any
//! process can continue the upload).

use bytes::Bytes;
use serde::{Deserialize, Serialize};

use crate::storage::backend::PersistedUploadState;

/// The S3 part of an upload session's persisted state (stored as JSON by the engine at
/// `repositories/<name>/_uploads/<id>`, so the next chunk may arrive at another process).
///
/// Invariant: the upload holds `sum(parts.size) + sum(staged.size)` bytes, in that order,
/// and the staged segments hold less than one part.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct S3UploadState {
    /// The digest whose blob key the multipart upload writes to directly (monolithic pushes,
    /// where the digest is known up front); `None` for chunked uploads, which write to
    /// `uploads/<id>/data`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub direct: Option<String>,
    /// The S3 multipart upload id, once the first full part was available.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub multipart: Option<String>,
    /// Parts uploaded so far, in order.
    #[serde(default)]
    pub parts: Vec<UploadedPart>,
    /// The bytes after the last part (fewer than one part), staged as objects: one segment
    /// per append, written once and read back once when a part is assembled.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub staged: Vec<StagedSegment>,
    /// Names of staged objects superseded by this state, deleted by the next append (only
    /// once this state is persisted may they go) or at commit/abort.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub garbage: Vec<SegmentName>,
    /// The bytes after the last part of a monolithic push ([`direct`](Self::direct)), held
    /// in memory instead of staged: such a state lives in one request and is never
    /// persisted, so the bytes reach the store once, as the blob's last part or (below one
    /// part) as the blob itself, with one `PutObject`. Never serialised.
    #[serde(skip)]
    pub held: Option<Bytes>,
}

/// One uploaded part.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UploadedPart {
    /// Part number (1-based).
    pub number: u32,
    /// ETag S3 returned for it.
    pub etag: String,
    /// Bytes in the part.
    pub size: u64,
    /// CRC32 checksum S3 returned, when request checksums are on.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub crc32: Option<String>,
}

/// A staged segment: object `uploads/<id>/staged-<end>-<nonce>` holding the upload's bytes
/// `end - size .. end`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct StagedSegment {
    /// Upload offset just after the staged bytes.
    pub end: u64,
    /// Number of staged bytes.
    pub size: u64,
    /// Random part of the object's name, new for every segment written: two appends at the
    /// same offset (a client sending one chunk twice at once, through two processes) never
    /// write the same object, so a state only ever names bytes its own append wrote. `0` in
    /// states written before names had it (the object is then `staged-<end>`).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub nonce: u64,
}

impl StagedSegment {
    /// The name of the segment's object.
    pub fn name(&self) -> SegmentName {
        SegmentName {
            end: self.end,
            nonce: self.nonce,
        }
    }
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}

/// The name of a staged segment's object: its end offset and the random part of the name
/// (see [`StagedSegment::nonce`]). Stored as `[end, nonce]`; a bare number (an end offset,
/// as states written before names had a random part stored it) reads as nonce `0`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(from = "SegmentNameRepr", into = "SegmentNameRepr")]
pub struct SegmentName {
    /// Upload offset just after the segment's bytes.
    pub end: u64,
    /// Random part of the name; `0` for none.
    pub nonce: u64,
}

#[derive(Serialize, Deserialize)]
#[serde(untagged)]
enum SegmentNameRepr {
    End(u64),
    Named(u64, u64),
}

impl From<SegmentNameRepr> for SegmentName {
    fn from(repr: SegmentNameRepr) -> Self {
        match repr {
            SegmentNameRepr::End(end) => Self { end, nonce: 0 },
            SegmentNameRepr::Named(end, nonce) => Self { end, nonce },
        }
    }
}

impl From<SegmentName> for SegmentNameRepr {
    fn from(name: SegmentName) -> Self {
        Self::Named(name.end, name.nonce)
    }
}

impl PersistedUploadState for S3UploadState {
    /// Every write of an S3 upload is durable once acknowledged: always current.
    fn is_current(&self) -> bool {
        true
    }
}

impl S3UploadState {
    /// Bytes the state accounts for.
    pub fn stored(&self) -> u64 {
        self.parts.iter().map(|p| p.size).sum::<u64>()
            + self.staged_len()
            + self.held.as_ref().map_or(0, |h| h.len() as u64)
    }

    /// Bytes in the staged segments.
    pub fn staged_len(&self) -> u64 {
        self.staged.iter().map(|s| s.size).sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn state_accounts_for_parts_and_staged_bytes() {
        let state = S3UploadState {
            parts: vec![UploadedPart {
                number: 1,
                etag: "\"e\"".into(),
                size: 5,
                crc32: None,
            }],
            staged: vec![
                StagedSegment {
                    end: 6,
                    size: 1,
                    nonce: 0,
                },
                StagedSegment {
                    end: 8,
                    size: 2,
                    nonce: 77,
                },
            ],
            garbage: vec![SegmentName { end: 5, nonce: 9 }],
            ..S3UploadState::default()
        };
        assert_eq!(state.stored(), 8);
        let json = serde_json::to_string(&state).unwrap();
        assert_eq!(serde_json::from_str::<S3UploadState>(&json).unwrap(), state);
        // Segment names of states written before they had a random part still load.
        let old: S3UploadState =
            serde_json::from_str(r#"{"staged":[{"end":3,"size":3}],"garbage":[1,2]}"#).unwrap();
        assert_eq!(
            old.staged,
            [StagedSegment {
                end: 3,
                size: 3,
                nonce: 0
            }]
        );
        assert_eq!(
            old.garbage,
            [
                SegmentName { end: 1, nonce: 0 },
                SegmentName { end: 2, nonce: 0 }
            ]
        );
        // Older or foreign records without the optional fields still load.
        let bare: S3UploadState = serde_json::from_str("{}").unwrap();
        assert_eq!(bare, S3UploadState::default());
    }
}
