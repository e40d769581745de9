//! The storage layer: the [`StorageDriver`] trait with the OCI operations, the shared engine
//! that implements it once for every backend, and the drivers.
//!
//! ```text
//!   StorageDriver (OCI operations, associated types, no dyn)
//!        ▲
//!        │ implemented once by
//!   Engine<B: Backend> ── layout (keys), hashing (resumable), manifest checks,
//!        │                 referrers, tags, upload state
//!        │ uses the small primitive trait
//!   Backend: filesystem | inmemory | s3 | gcs
//! ```
//!
//! [`AnyDriver`] is the enum the factory returns; it dispatches statically to the drivers
//! compiled in.

mod any;
pub mod backend;
pub mod cache;
pub mod config;
pub mod deadline;
mod engine;
pub mod filesystem;
pub mod gcs;
pub mod hashing;
pub mod immutable;
pub mod inmemory;
pub(crate) mod key_locks;
pub mod layers;
pub mod layout;
pub mod lifecycle;
pub mod presign;
pub mod probe;
#[cfg(any(feature = "s3", feature = "gcs"))]
mod retry;
pub mod s3;
pub mod session_lock;
#[cfg(any(feature = "s3", feature = "gcs"))]
mod streamed_put;
#[cfg(any(test, feature = "testsuite"))]
pub mod testsuite;
#[cfg(any(feature = "s3", feature = "gcs"))]
mod trusted_cas;
mod types;

use std::future::Future;

use bytes::Bytes;
use futures::Stream;

pub use any::{AnyBlobStream, AnyDriver, AnyUpload};
pub use cache::{CacheConfig, CacheStats, MetadataCache};
pub use config::{
    FilesystemConfig, GcsConfig, S3ChecksumPolicy, S3Config, StorageConfig, StorageType,
};
pub use engine::{Engine, EngineOptions, EngineUpload, Observed};
pub use lifecycle::{GcOptions, GcReport, Lifecycle, RepositoryList};
pub use types::{
    BlobRead, BlobRedirect, FileInfo, Manifest, ManifestInfo, PutManifestOutcome, TagList,
    UploadHandle, UploadId, UploadProgress,
};

use crate::error::Result;
use crate::oci::{
    Descriptor, Digest, DigestAlgorithm, RangeRequest, Reference, RepositoryName, Tag,
};

/// A storage driver: every operation of the OCI distribution spec v1.1 that touches storage,
/// and nothing else (no catalog, no garbage collection, no listing of manifests: those are
/// [`Lifecycle`]'s).
///
/// Methods return `impl Future + Send`, request bodies are generic streams of [`Bytes`], and
/// the blob stream and upload handle are associated types, so that a registry generic over
/// `D: StorageDriver` (or using [`AnyDriver`]) never boxes on a hot path.
///
/// Arguments are validated types ([`RepositoryName`], [`Digest`], [`Tag`]): invalid input is
/// rejected while parsing, before any I/O.
pub trait StorageDriver: Send + Sync + 'static {
    /// The stream of bytes of a blob read.
    type BlobStream: Stream<Item = Result<Bytes>> + Send + 'static;
    /// The state of an upload session as returned to the caller.
    type Upload: UploadHandle;

    /// Short name of the driver (`"filesystem"`, `"inmemory"`, `"s3"`).
    fn driver_name(&self) -> &'static str;

    /// The smallest chunk the driver accepts without extra cost, advertised to clients as
    /// `OCI-Chunk-Min-Length`; `None` when any size is as good as any other.
    fn chunk_min_length(&self) -> Option<u64> {
        None
    }

    // ----- blobs -----

    /// Size and location of a blob visible in `repo`. `BLOB_UNKNOWN` if absent.
    fn stat(
        &self,
        repo: &RepositoryName,
        digest: &Digest,
    ) -> impl Future<Output = Result<FileInfo>> + Send;

    /// Reads a blob visible in `repo`, whole or a byte range of it.
    ///
    /// An unsatisfiable range is `RangeInvalid` carrying the blob's size.
    fn get_content(
        &self,
        repo: &RepositoryName,
        digest: &Digest,
        range: Option<RangeRequest>,
    ) -> impl Future<Output = Result<BlobRead<Self::BlobStream>>> + Send;

    /// Where the client may fetch the bytes of a blob visible in `repo` itself, instead of
    /// through [`get_content`](Self::get_content): `Some` only when the driver is configured
    /// to redirect blob reads (S3 with `redirect`), `None` (the default) otherwise.
    /// `BLOB_UNKNOWN` if the blob is absent.
    fn blob_redirect(
        &self,
        repo: &RepositoryName,
        digest: &Digest,
    ) -> impl Future<Output = Result<Option<BlobRedirect>>> + Send {
        let _ = (repo, digest);
        async { Ok(None) }
    }

    /// Stores a whole blob in one call (monolithic push), verifying `digest` while streaming.
    ///
    /// On a digest mismatch nothing becomes visible and `DIGEST_INVALID` is returned. If
    /// `expected_size` is given and the body's length differs, `SIZE_INVALID`.
    fn put_content<S>(
        &self,
        repo: &RepositoryName,
        digest: &Digest,
        expected_size: Option<u64>,
        body: S,
    ) -> impl Future<Output = Result<FileInfo>> + Send
    where
        S: Stream<Item = Result<Bytes>> + Send;

    /// Removes the blob from `repo` (other repositories linking it keep it).
    fn delete(
        &self,
        repo: &RepositoryName,
        digest: &Digest,
    ) -> impl Future<Output = Result<()>> + Send;

    /// Makes a blob of repository `from` visible in `to` without copying it
    /// (spec "Mounting a blob from another repository"). `BLOB_UNKNOWN` if `from` lacks it.
    fn mount_blob(
        &self,
        from: &RepositoryName,
        to: &RepositoryName,
        digest: &Digest,
    ) -> impl Future<Output = Result<FileInfo>> + Send;

    // ----- uploads -----

    /// Opens an upload session in `repo` whose digest will use `algorithm`.
    fn start_upload(
        &self,
        repo: &RepositoryName,
        algorithm: DigestAlgorithm,
    ) -> impl Future<Output = Result<Self::Upload>> + Send;

    /// Appends a chunk. With `offset` given, it must equal the bytes received so far, or the
    /// call fails with `RangeInvalid` and the session is left as it was. If `expected_len` is
    /// given and the body's length differs, `SIZE_INVALID` and the session is left as it was.
    fn put_upload_chunk<S>(
        &self,
        repo: &RepositoryName,
        id: &UploadId,
        offset: Option<u64>,
        expected_len: Option<u64>,
        body: S,
    ) -> impl Future<Output = Result<Self::Upload>> + Send
    where
        S: Stream<Item = Result<Bytes>> + Send;

    /// The state of an upload session. `BLOB_UPLOAD_UNKNOWN` if none.
    fn get_upload_progress(
        &self,
        repo: &RepositoryName,
        id: &UploadId,
    ) -> impl Future<Output = Result<Self::Upload>> + Send;

    /// Cancels a session and frees everything it holds.
    fn abort_upload(
        &self,
        repo: &RepositoryName,
        id: &UploadId,
    ) -> impl Future<Output = Result<()>> + Send;

    /// Completes a session: appends `body` (the final chunk of a `PUT`, possibly empty),
    /// verifies `digest` against all bytes received (without re-reading them), makes the blob
    /// visible in `repo` and ends the session.
    ///
    /// On a digest mismatch: `DIGEST_INVALID`, nothing becomes visible and the session is
    /// removed. A session is hashed with the algorithm given to [`start_upload`]; a `digest`
    /// of another algorithm is honoured too (before any byte is received by hashing with it
    /// from the start, afterwards by re-hashing the stored bytes once).
    ///
    /// [`start_upload`]: Self::start_upload
    fn finish_upload<S>(
        &self,
        repo: &RepositoryName,
        id: &UploadId,
        digest: &Digest,
        expected_len: Option<u64>,
        body: S,
    ) -> impl Future<Output = Result<FileInfo>> + Send
    where
        S: Stream<Item = Result<Bytes>> + Send;

    // ----- manifests -----

    /// Reads a manifest by tag or digest, exactly as pushed.
    fn get_manifest(
        &self,
        repo: &RepositoryName,
        reference: &Reference,
    ) -> impl Future<Output = Result<Manifest>> + Send;

    /// Digest, size and media type of a manifest, without its bytes.
    fn stat_manifest(
        &self,
        repo: &RepositoryName,
        reference: &Reference,
    ) -> impl Future<Output = Result<ManifestInfo>> + Send;

    /// Stores a manifest byte for byte, and tags it when `reference` is a tag.
    ///
    /// Checks: size limit (`SIZE_INVALID`), well-formedness (`MANIFEST_INVALID`), digest when
    /// `reference` is one (`DIGEST_INVALID`), referenced blobs and manifests present in `repo`
    /// except the subject and non-distributable layers (`MANIFEST_BLOB_UNKNOWN`). A manifest
    /// with a `subject` is indexed as a referrer of it.
    fn put_manifest(
        &self,
        repo: &RepositoryName,
        reference: &Reference,
        content_type: Option<&str>,
        bytes: Bytes,
    ) -> impl Future<Output = Result<PutManifestOutcome>> + Send;

    /// Deletes a manifest by digest, the tags pointing to it and its referrer entry.
    fn delete_manifest(
        &self,
        repo: &RepositoryName,
        digest: &Digest,
    ) -> impl Future<Output = Result<()>> + Send;

    // ----- tags -----

    /// The digest a tag points to. `MANIFEST_UNKNOWN` if the tag does not exist.
    fn resolve_tag(
        &self,
        repo: &RepositoryName,
        tag: &Tag,
    ) -> impl Future<Output = Result<Digest>> + Send;

    /// Tags of `repo` in lexical order, after `last` (exclusive), at most `n`.
    /// `NAME_UNKNOWN` if the repository does not exist.
    fn get_tags(
        &self,
        repo: &RepositoryName,
        n: Option<usize>,
        last: Option<&str>,
    ) -> impl Future<Output = Result<TagList>> + Send;

    /// Points `tag` at an existing manifest, atomically replacing any previous target.
    fn tag_manifest(
        &self,
        repo: &RepositoryName,
        tag: &Tag,
        digest: &Digest,
    ) -> impl Future<Output = Result<()>> + Send;

    /// Removes a tag (the manifest stays). `MANIFEST_UNKNOWN` if the tag does not exist.
    fn untag_manifest(
        &self,
        repo: &RepositoryName,
        tag: &Tag,
    ) -> impl Future<Output = Result<()>> + Send;

    // ----- referrers -----

    /// Descriptors of the manifests whose `subject` is `subject`, optionally only those of
    /// `artifact_type`. Never fails for an unknown subject: the list is empty.
    fn referrers(
        &self,
        repo: &RepositoryName,
        subject: &Digest,
        artifact_type: Option<&str>,
    ) -> impl Future<Output = Result<Vec<Descriptor>>> + Send;
}
