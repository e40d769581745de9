//! The small primitive trait a storage backend implements.
//!
//! All OCI logic (validation, links, tags, referrers, manifests, upload sessions, hashing and
//! digest verification) lives in [`Engine`](super::Engine), written once. A backend only
//! knows how to keep three kinds of things:
//!
//! 1. **small metadata objects** (links, tags, manifests, referrer entries, upload states):
//!    read, atomic write, remove, list;
//! 2. **blob bytes**, content-addressed by digest: size and (ranged) streaming reads;
//! 3. **upload bytes** in progress: start, append at an offset, finish as a blob, abort.
//!
//! Keys come from [`layout`](super::layout) and are always safe relative paths.
//!
//! Uploads use one vocabulary at every level: a session is *started*, chunks are *appended*
//! (`put_upload_chunk` in [`StorageDriver`](super::StorageDriver), the spec's name), its
//! progress read, and it is *finished* (its bytes become a blob) or *aborted*:
//! [`StorageDriver::start_upload`](super::StorageDriver::start_upload) is
//! `Engine::upload_start` over [`Backend::start_upload`], and so on.

use std::fmt;
use std::future::Future;

use bytes::Bytes;
use futures::Stream;
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::error::Result;
use crate::oci::{ByteRange, Digest};
use crate::storage::UploadId;
use crate::storage::layout::Key;

/// Storage primitives the [`Engine`](super::Engine) builds every OCI operation from.
///
/// Contract, checked by the behaviour suite through the engine:
/// - `write` replaces an object atomically and durably: a concurrent or later `read` sees the
///   old or the new value, never a mix, and a crash after `write` returned loses nothing.
/// - `list` returns the names of the objects directly inside `dir` (not of deeper ones), in
///   ascending byte order, strictly after `start_after`, at most `limit` of them.
/// - Upload bytes are never visible as a blob before `finish_upload`. `append_upload` must
///   leave everything the *previous* `UploadState` refers to intact until the engine persists
///   the new state, so a failed append can be retried from the old offset (the engine only
///   stores the new state once the append succeeded).
pub trait Backend: Send + Sync + 'static {
    /// Driver name used in errors (`"filesystem"`, `"inmemory"`, `"s3"`).
    const NAME: &'static str;

    /// Stream of a blob's bytes.
    type Reader: Stream<Item = Result<Bytes>> + Send + 'static;

    /// The backend's part of an upload's persisted state (for S3: multipart upload id, parts,
    /// staged remainder). Stored as JSON with the engine's part of the state.
    type UploadState: Serialize + DeserializeOwned + Clone + fmt::Debug + Send + Sync + 'static;

    /// Minimum efficient chunk size, if the backend has one (`OCI-Chunk-Min-Length`).
    fn chunk_min_length(&self) -> Option<u64> {
        None
    }

    /// Human-readable location of a key (a path, an `s3://` URL), for [`FileInfo::path`].
    ///
    /// [`FileInfo::path`]: super::FileInfo::path
    fn locate(&self, key: &Key) -> String;

    // ----- small metadata objects -----

    /// Reads a whole object; `None` if it does not exist.
    fn read(&self, key: &Key) -> impl Future<Output = Result<Option<Bytes>>> + Send;

    /// Whether an object exists, for callers that do not need its content. The default
    /// reads it; a backend may answer from metadata alone (the filesystem: one `lstat`).
    fn exists(&self, key: &Key) -> impl Future<Output = Result<bool>> + Send {
        async move { Ok(self.read(key).await?.is_some()) }
    }

    /// Atomically and durably creates or replaces an object.
    fn write(&self, key: &Key, value: Bytes) -> impl Future<Output = Result<()>> + Send;

    /// Removes an object; succeeds if it does not exist.
    fn remove(&self, key: &Key) -> impl Future<Output = Result<()>> + Send;

    /// Names of the objects directly inside `dir`, ascending, after `start_after`, at most
    /// `limit`.
    fn list(
        &self,
        dir: &Key,
        start_after: Option<&str>,
        limit: Option<usize>,
    ) -> impl Future<Output = Result<Vec<String>>> + Send;

    /// Whether any object exists anywhere below `dir`.
    fn any_under(&self, dir: &Key) -> impl Future<Output = Result<bool>> + Send;

    /// Writes an object that the engine verifies whenever it reads it (a manifest record,
    /// checked against its digest). Atomic and durable when it returns, like
    /// [`write`](Self::write), but a crash *before* it returns may leave the object torn
    /// (empty or partial), which readers then treat as absent: so a backend may make the
    /// bytes and the name durable in one round instead of two. The default is `write`.
    fn write_verified(&self, key: &Key, value: Bytes) -> impl Future<Output = Result<()>> + Send {
        self.write(key, value)
    }

    /// Points the tag `tag` at the manifest `digest`, whose record is stored (durably) at
    /// `manifest`: atomic and durable like [`write`](Self::write); a read of `tag` then yields
    /// content whose first word is the digest. The default writes the digest. A backend may
    /// instead make the tag the manifest record itself, which starts with its digest (the
    /// filesystem: a hard link, so tagging creates no file and syncs no data).
    fn write_tag(
        &self,
        tag: &Key,
        digest: &Digest,
        manifest: &Key,
    ) -> impl Future<Output = Result<()>> + Send {
        let _ = manifest;
        self.write(tag, Bytes::from(digest.as_str().to_owned()))
    }

    /// Stores a manifest record with [`write_verified`](Self::write_verified) and then, when
    /// `tag` is given, points that tag at it with [`write_tag`](Self::write_tag): in that
    /// order, the tag only once the record is durable. The default makes the two calls; a
    /// backend may do both in one step (the filesystem: one task on the blocking pool instead
    /// of two).
    fn write_manifest(
        &self,
        record_key: &Key,
        record: Bytes,
        tag: Option<(&Key, &Digest)>,
    ) -> impl Future<Output = Result<()>> + Send {
        async move {
            self.write_verified(record_key, record).await?;
            match tag {
                Some((tag, digest)) => self.write_tag(tag, digest, record_key).await,
                None => Ok(()),
            }
        }
    }

    /// Whether the engine writes a blob's repository link *while* the upload is committed
    /// as that blob, rather than after the commit returned, so that both names become
    /// durable in one round (the filesystem: one round of directory syncs instead of two).
    /// A crash can then leave a durable link to a blob that was never stored; the engine
    /// therefore counts a link only when the blob it names exists, which costs a
    /// [`blob_size`](Self::blob_size) per link read: worth it only where that is cheap
    /// (a local `lstat`, not an object-store round trip). Default `false`.
    const LINK_WHILE_COMMITTING: bool = false;

    /// Writes a repository's link to a blob (its content is the blob's size). The default is
    /// [`write`](Self::write). A backend may make only the link's *existence* durable: the
    /// engine tolerates a link whose content a crash lost (empty or unparsable) by taking the
    /// size from [`blob_size`](Self::blob_size); the blob is durable before a link to it is
    /// written, except as [`LINK_WHILE_COMMITTING`](Self::LINK_WHILE_COMMITTING) allows.
    fn write_link(&self, key: &Key, value: Bytes) -> impl Future<Output = Result<()>> + Send {
        self.write(key, value)
    }

    // ----- upload session records -----

    /// Writes an upload session's record. The default is [`write`](Self::write) (atomic and
    /// durable). A backend may make it atomic but *not* durable, provided that after a crash
    /// [`upload_state_current`](Self::upload_state_current) rejects every record whose bytes
    /// may not have survived (the engine then answers `BLOB_UPLOAD_UNKNOWN`, and the client
    /// restarts the upload). Committed blobs, links, manifests and tags never take this path.
    fn write_upload_state(
        &self,
        key: &Key,
        value: Bytes,
    ) -> impl Future<Output = Result<()>> + Send {
        self.write(key, value)
    }

    /// Removes an upload session's record. The default is [`remove`](Self::remove); a backend
    /// whose [`write_upload_state`](Self::write_upload_state) is not durable may skip making
    /// the removal durable too (a record resurrected by a crash is rejected on load).
    fn remove_upload_state(&self, key: &Key) -> impl Future<Output = Result<()>> + Send {
        self.remove(key)
    }

    /// Whether a loaded upload state can still be trusted: `false` when the upload's record
    /// or bytes were written without being made durable and a crash may have lost them since
    /// (the filesystem backend: the machine rebooted). The default trusts every state.
    fn upload_state_current(&self, state: &Self::UploadState) -> bool {
        let _ = state;
        true
    }

    // ----- blob bytes -----

    /// Size of the blob's bytes; `None` if the blob is not stored.
    fn blob_size(&self, digest: &Digest) -> impl Future<Output = Result<Option<u64>>> + Send;

    /// Streams a stored blob, or a satisfiable range of it (already resolved by the engine).
    fn read_blob(
        &self,
        digest: &Digest,
        range: Option<ByteRange>,
    ) -> impl Future<Output = Result<Self::Reader>> + Send;

    // ----- upload bytes -----

    /// Starts an upload: prepares its storage. `target` is the digest the bytes will be stored
    /// as when the caller already knows it (monolithic pushes); backends may use it to write
    /// in place (S3: multipart upload straight to the blob's key) since finishing only happens
    /// after the digest was verified.
    fn start_upload(
        &self,
        id: &UploadId,
        target: Option<&Digest>,
    ) -> impl Future<Output = Result<Self::UploadState>> + Send;

    /// Appends `body` to the upload, whose persisted size is `offset`, and returns the number
    /// of bytes appended. Bytes beyond `offset` left by an earlier failed append are
    /// discarded. `state` may be updated; the engine persists it only if this succeeds.
    fn append_upload<S>(
        &self,
        id: &UploadId,
        state: &mut Self::UploadState,
        offset: u64,
        body: S,
    ) -> impl Future<Output = Result<u64>> + Send
    where
        S: Stream<Item = Result<Bytes>> + Send;

    /// Finishes an upload: turns its `size` bytes into the blob `digest` (verified by the
    /// engine) and releases the upload's storage. If the blob is already stored, the upload
    /// bytes are simply discarded.
    fn finish_upload(
        &self,
        id: &UploadId,
        state: Self::UploadState,
        size: u64,
        digest: &Digest,
    ) -> impl Future<Output = Result<()>> + Send;

    /// Releases everything the upload holds. Succeeds if it holds nothing.
    fn abort_upload(
        &self,
        id: &UploadId,
        state: Self::UploadState,
    ) -> impl Future<Output = Result<()>> + Send;
}
