//! Plain data types exchanged through [`StorageDriver`](super::StorageDriver).

use std::fmt;

use bytes::Bytes;

use crate::error::Error;
use crate::oci::{ByteRange, Digest, DigestAlgorithm};

/// What a driver knows about a stored blob.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileInfo {
    /// Where the bytes live in the backend (a path or object key), for debugging only.
    pub path: String,
    /// Size in bytes.
    pub size: u64,
    /// The blob's digest.
    pub digest: Digest,
}

/// A blob being read: its info, the range served (if any) and the byte stream.
#[derive(Debug)]
pub struct BlobRead<S> {
    /// The whole blob's info (its `size` is the full size, not the range's).
    pub info: FileInfo,
    /// The range served; `None` when the whole blob is streamed.
    pub range: Option<ByteRange>,
    /// The bytes.
    pub stream: S,
}

/// Where a client may fetch a blob's bytes itself
/// ([`blob_redirect`](super::StorageDriver::blob_redirect)): a URL valid for a while (an object
/// store's presigned `GET`), and what the registry knows of the blob.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BlobRedirect {
    /// The URL, absolute.
    pub url: String,
    /// The blob's info (its size is the whole blob's).
    pub info: FileInfo,
}

/// Digest, size and media type of a stored manifest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ManifestInfo {
    /// Digest of the manifest bytes (sha256 unless pushed by a sha512 digest).
    pub digest: Digest,
    /// Size in bytes.
    pub size: u64,
    /// Media type as pushed.
    pub media_type: String,
}

/// A stored manifest with its exact bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Manifest {
    /// Digest, size and media type.
    pub info: ManifestInfo,
    /// The bytes exactly as pushed.
    pub bytes: Bytes,
}

/// Result of [`put_manifest`](super::StorageDriver::put_manifest).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PutManifestOutcome {
    /// Digest of the stored manifest.
    pub digest: Digest,
    /// The `subject` the manifest refers to, reported to clients as `OCI-Subject`.
    pub subject: Option<Digest>,
}

/// One page of a repository's tags.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct TagList {
    /// Tags in lexical order.
    pub tags: Vec<String>,
    /// Whether tags follow the last one returned (a `Link` header is due).
    pub has_more: bool,
}

/// An upload session id: 32 lowercase hex characters (128 random bits).
///
/// The id is opaque to clients and safe as a path component: parsing rejects anything else.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct UploadId(String);

impl UploadId {
    /// A fresh random id.
    pub fn generate() -> Self {
        let bits: u128 = rand::random();
        Self(format!("{bits:032x}"))
    }

    /// Validates an id received from a client: unknown shapes are `BLOB_UPLOAD_UNKNOWN`.
    pub fn parse(s: &str) -> Result<Self, Error> {
        if s.len() == 32
            && s.bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
        {
            Ok(Self(s.to_owned()))
        } else {
            Err(Error::BlobUploadUnknown(format!(
                "malformed upload id {s:?}"
            )))
        }
    }

    /// The id as a string.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for UploadId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for UploadId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "UploadId({})", self.0)
    }
}

/// Progress of an upload session.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UploadProgress {
    /// The session id.
    pub id: UploadId,
    /// Bytes received so far; the next chunk starts here.
    pub offset: u64,
    /// Digest algorithm the session hashes with.
    pub algorithm: DigestAlgorithm,
}

/// What every driver's upload handle exposes.
pub trait UploadHandle: Send + Sync + fmt::Debug + 'static {
    /// Id, offset and algorithm of the session.
    fn progress(&self) -> UploadProgress;

    /// The session id.
    fn id(&self) -> UploadId {
        self.progress().id
    }

    /// Bytes received so far.
    fn offset(&self) -> u64 {
        self.progress().offset
    }
}

impl UploadHandle for UploadProgress {
    fn progress(&self) -> UploadProgress {
        self.clone()
    }
}
