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
//! Keys come from [`layout`](super::layout) and are always safe relative paths. Each carries
//! a [`KeyClass`](super::layout::KeyClass): where a backend stores a class differently (the
//! filesystem creates manifest records in place and skips syncing upload records), it decides
//! on the class inside [`write`](Backend::write) and [`remove`](Backend::remove) rather than
//! through a method of its own, so the trait does not grow a defaulted hook per optimisation
//! (a wrapper that forgot one silently lost it). What the engine must *know* about a backend
//! is one value, its [`Capabilities`]; what it must check on an upload state travels with
//! the state's type ([`PersistedUploadState`]), so a layer that reuses its inner backend's
//! state type cannot drop it. Wrappers forward what they do not change with
//! [`forward_backend!`](crate::forward_backend).
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
use crate::storage::layout::{Dir, Key};
use crate::storage::session_lock::{TagLease, UploadLease};

/// A [`Backend`] operation, as errors ([`Error::Backend`](crate::error::Error::Backend)),
/// logs and instrumentation name it: one per method, plus `Open` for setting a backend up.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[non_exhaustive]
pub enum Operation {
    /// Setting the backend up (opening the root directory, building a client).
    Open,
    /// [`Backend::read`].
    Read,
    /// [`Backend::exists`].
    Exists,
    /// [`Backend::write`], and its variants [`Backend::write_if_version`] and
    /// [`Backend::stage_record`].
    Write,
    /// [`Backend::remove`].
    Remove,
    /// [`Backend::list`].
    List,
    /// [`Backend::any_under`].
    AnyUnder,
    /// [`Backend::write_tag`], and its variant [`Backend::create_tag`].
    WriteTag,
    /// [`Backend::blob_size`].
    BlobSize,
    /// [`Backend::read_blob`], and reading its stream.
    ReadBlob,
    /// [`Backend::put_blob`].
    PutBlob,
    /// [`Backend::start_upload`].
    StartUpload,
    /// [`Backend::append_upload`].
    AppendUpload,
    /// [`Backend::finish_upload`].
    FinishUpload,
    /// [`Backend::abort_upload`].
    AbortUpload,
    /// [`PresignBlobReads::presign_read_blob`](crate::storage::presign::PresignBlobReads::presign_read_blob).
    PresignReadBlob,
    /// [`LifecycleBackend::list_dirs`](crate::storage::lifecycle::LifecycleBackend::list_dirs).
    ListDirs,
    /// [`LifecycleBackend::scan`](crate::storage::lifecycle::LifecycleBackend::scan).
    Scan,
    /// [`LifecycleBackend::scan_blobs`](crate::storage::lifecycle::LifecycleBackend::scan_blobs).
    ScanBlobs,
    /// [`LifecycleBackend::remove_objects`](crate::storage::lifecycle::LifecycleBackend::remove_objects).
    RemoveObjects,
    /// [`LifecycleBackend::remove_blobs`](crate::storage::lifecycle::LifecycleBackend::remove_blobs).
    RemoveBlobs,
    /// [`LifecycleBackend::expire_upload_storage`](crate::storage::lifecycle::LifecycleBackend::expire_upload_storage).
    ExpireUploadStorage,
    /// [`LifecycleBackend::tidy`](crate::storage::lifecycle::LifecycleBackend::tidy).
    Tidy,
}

impl Operation {
    /// Every operation, in declaration order (for metrics that pre-register their labels).
    pub const ALL: [Self; 23] = [
        Self::Open,
        Self::Read,
        Self::Exists,
        Self::Write,
        Self::Remove,
        Self::List,
        Self::AnyUnder,
        Self::WriteTag,
        Self::BlobSize,
        Self::ReadBlob,
        Self::PutBlob,
        Self::StartUpload,
        Self::AppendUpload,
        Self::FinishUpload,
        Self::AbortUpload,
        Self::PresignReadBlob,
        Self::ListDirs,
        Self::Scan,
        Self::ScanBlobs,
        Self::RemoveObjects,
        Self::RemoveBlobs,
        Self::ExpireUploadStorage,
        Self::Tidy,
    ];

    /// The method's name (`"read_blob"`), for messages, logs and metrics labels.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Open => "open",
            Self::Read => "read",
            Self::Exists => "exists",
            Self::Write => "write",
            Self::Remove => "remove",
            Self::List => "list",
            Self::AnyUnder => "any_under",
            Self::WriteTag => "write_tag",
            Self::BlobSize => "blob_size",
            Self::ReadBlob => "read_blob",
            Self::PutBlob => "put_blob",
            Self::StartUpload => "start_upload",
            Self::AppendUpload => "append_upload",
            Self::FinishUpload => "finish_upload",
            Self::AbortUpload => "abort_upload",
            Self::PresignReadBlob => "presign_read_blob",
            Self::ListDirs => "list_dirs",
            Self::Scan => "scan",
            Self::ScanBlobs => "scan_blobs",
            Self::RemoveObjects => "remove_objects",
            Self::RemoveBlobs => "remove_blobs",
            Self::ExpireUploadStorage => "expire_upload_storage",
            Self::Tidy => "tidy",
        }
    }
}

impl fmt::Display for Operation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What the engine may rely on, or should use, about a backend: one value instead of a
/// defaulted constant or method per property.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub struct Capabilities {
    /// Whether the engine writes a blob's repository link *while* the upload is finished as
    /// that blob, rather than after, so that both names become durable in one round (the
    /// filesystem: one round of directory syncs instead of two). A crash can then leave a
    /// durable link to a blob that was never stored; the engine therefore counts a link only
    /// when the blob it names exists, which costs a [`blob_size`](Backend::blob_size) per
    /// link read: worth it only where that is cheap (a local `lstat`, not an object-store
    /// round trip).
    pub link_while_finishing: bool,
    /// The smallest chunk the backend takes without extra cost, advertised to clients as
    /// `OCI-Chunk-Min-Length` (S3: the part size); `None` when any size is as good.
    pub chunk_min_length: Option<u64>,
    /// Whether every metadata read is a round trip to a remote store (S3, GCS): the engine
    /// then keeps a [metadata cache](super::cache) unless configured otherwise.
    pub remote_metadata: bool,
    /// The blob sizes the backend stores in one streamed write, [`Backend::put_blob`], when a
    /// push declares the blob's digest and length up front (a monolithic push); `None` when
    /// it has no such write (every push then goes through an upload).
    pub put_blob_sizes: Option<SizeRange>,
}

/// A range of sizes in bytes, both ends included.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SizeRange {
    /// The smallest size in the range.
    pub min: u64,
    /// The largest size in the range.
    pub max: u64,
}

impl SizeRange {
    /// Whether `size` is in the range.
    pub const fn contains(&self, size: u64) -> bool {
        self.min <= size && size <= self.max
    }
}

impl Capabilities {
    /// No special capability: links written after the blob, no chunk minimum.
    pub const NONE: Self = Self {
        link_while_finishing: false,
        chunk_min_length: None,
        remote_metadata: false,
        put_blob_sizes: None,
    };

    /// With [`link_while_finishing`](Self::link_while_finishing) set to `yes`.
    pub const fn with_link_while_finishing(mut self, yes: bool) -> Self {
        self.link_while_finishing = yes;
        self
    }

    /// With [`chunk_min_length`](Self::chunk_min_length) set.
    pub const fn with_chunk_min_length(mut self, min: Option<u64>) -> Self {
        self.chunk_min_length = min;
        self
    }

    /// With [`remote_metadata`](Self::remote_metadata) set to `yes`.
    pub const fn with_remote_metadata(mut self, yes: bool) -> Self {
        self.remote_metadata = yes;
        self
    }

    /// With [`put_blob_sizes`](Self::put_blob_sizes) set.
    pub const fn with_put_blob_sizes(mut self, sizes: Option<SizeRange>) -> Self {
        self.put_blob_sizes = sizes;
        self
    }
}

/// The version of a stored object as its backend names it (an S3 ETag), for
/// [`Backend::write_if_version`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ObjectVersion(pub String);

/// A backend's part of an upload's persisted state (for S3: multipart upload id, parts,
/// staged remainder), stored as JSON with the engine's part of the state.
pub trait PersistedUploadState:
    Serialize + DeserializeOwned + Clone + fmt::Debug + Send + Sync + 'static
{
    /// Whether a loaded state can still be trusted: `false` when the upload's record or bytes
    /// were written without being made durable and a crash may have lost them since (the
    /// filesystem: the machine rebooted). The engine then answers `BLOB_UPLOAD_UNKNOWN` and
    /// the client restarts the upload. A state whose writes are all durable is always current.
    fn is_current(&self) -> bool;
}

/// The state of a backend that keeps nothing per upload beyond what it finds by id.
impl PersistedUploadState for () {
    fn is_current(&self) -> bool {
        true
    }
}

/// The manifest a tag is pointed at by [`Backend::write_tag`].
#[derive(Debug, Clone, Copy)]
pub struct TagTarget<'a> {
    /// The manifest's digest: what a read of the tag must start with.
    pub digest: &'a Digest,
    /// The key of the manifest's record, which is stored: written, or
    /// [staged](Backend::stage_record) by this process or another, so that its name may not
    /// be durable yet.
    pub record: &'a Key,
}

/// Storage primitives the [`Engine`](super::Engine) builds every OCI operation from.
///
/// # Contract
///
/// Each clause is checked for every backend and every layer by the contract suite
/// (`storage::testsuite::backend`, feature `testsuite`), and through the engine by the
/// behaviour suite.
///
/// 1. **Objects.** `read` returns what the last `write` of a key stored, `None` for a key
///    never written or removed; `exists` agrees with `read`. `remove` of an absent key
///    succeeds.
/// 2. **Atomic writes.** A `write` replaces an object whole: a concurrent or later `read` sees
///    the old or the new value, never a mix. Exception: a
///    [`ManifestRecord`](super::layout::KeyClass::ManifestRecord), which the engine verifies
///    against its digest on every read, may be seen torn (empty or partial) while it is
///    written; the reader treats it as absent.
/// 3. **Durable writes.** Once `write` or `remove` returned, a crash loses nothing, except
///    where the class allows (what the engine tolerates on read):
///    a [`Link`](super::layout::KeyClass::Link) must keep its *existence* but may lose its
///    content (the engine then takes the blob's size); a
///    [`ManifestRecord`](super::layout::KeyClass::ManifestRecord) a crash interrupted
///    *before* `write` returned may be left torn; an
///    [`UploadState`](super::layout::KeyClass::UploadState) record and its removal need not
///    be durable if the backend's [`PersistedUploadState::is_current`] rejects every state a
///    crash may have lost.
/// 4. **Listing.** `list` returns the names of the objects directly inside `dir` (not of
///    deeper ones) that start with the `dir`'s name prefix, with the prefix cut off, in
///    ascending byte order, strictly after `start_after`, at most `limit` of them.
///    `any_under` says whether any object's key starts with the directory and prefix, at any
///    depth.
/// 5. **Tags.** After `write_tag` (or a `create_tag` that returned `true`), a read of the
///    tag yields content whose first word is the target's digest, and the tag and the record are durable, including a record stored
///    by `stage_record` (a crash before may leave the record alone, never the tag alone
///    naming a record that is not stored, except a new tag on a filesystem that does not
///    make a new file's name durable with it: see the filesystem driver). A staged record
///    reads like a written one at once. A tag of class
///    [`Intent`](super::layout::KeyClass::Intent) need not be durable. `create_tag` leaves
///    a stored tag as it is (`false`); of several instances on the same storage creating one
///    tag at once, each holding its [`lock_tag`](Backend::lock_tag) lease, one gets `true`.
/// 6. **Blobs.** `blob_size` is `None` until an upload is finished as the blob, then its size;
///    `read_blob` streams its bytes, or exactly the bytes of a range (already resolved
///    against the size by the engine), and fails with `BLOB_UNKNOWN` for a blob not stored.
/// 7. **Uploads.** Upload bytes are never visible as a blob before `finish_upload`.
///    `append_upload` at `offset` keeps the upload's first `offset` bytes and discards any
///    beyond (left by an earlier failed append); it must leave everything the *previous*
///    upload state refers to intact until the engine persists the new state, so a failed
///    append (a failing body) can be retried from the old offset. `finish_upload` of a blob
///    already stored discards the upload's bytes and keeps the stored blob; `abort_upload`
///    releases everything and succeeds for an upload holding nothing. A state round-trips
///    through JSON, and any process may continue an upload from it.
pub trait Backend: Send + Sync + 'static {
    /// Driver name used in errors (`"filesystem"`, `"inmemory"`, `"s3"`).
    const NAME: &'static str;

    /// Stream of a blob's bytes.
    type Reader: Stream<Item = Result<Bytes>> + Send + 'static;

    /// The backend's part of an upload's persisted state.
    type UploadState: PersistedUploadState;

    /// What the engine may rely on about this backend.
    fn capabilities(&self) -> Capabilities;

    /// Human-readable location of a key (a path, an `s3://` URL), for [`FileInfo::path`].
    /// For debugging only: never put it in an error.
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

    /// Creates or replaces an object, atomically and durably as its class requires (see the
    /// contract, clauses 2 and 3).
    fn write(&self, key: &Key, value: Bytes) -> impl Future<Output = Result<()>> + Send;

    /// Stores a [`ManifestRecord`](super::layout::KeyClass::ManifestRecord) that a
    /// [`write_tag`](Self::write_tag) will name: like [`write`](Self::write) (visible at
    /// once), except that the record, content and name, need only be durable once that
    /// `write_tag` returned; until then a crash may lose it or leave it torn (which its
    /// reader treats as absent).
    ///
    /// For a push by tag, which must make its record visible before checking it against
    /// collections (the protocol's step P2) but acknowledges nothing before the tag is
    /// written. A crash in between may lose the record, as if the push had not happened; if
    /// the push fails instead, the record stays as an untagged manifest that a crash may
    /// lose. On the filesystem the record is then written in the page cache on the calling
    /// task, and the tag's write syncs it and, with one directory sync, both names: one
    /// trip to the blocking pool and two syncs per push by tag instead of two and three.
    /// The default writes durably.
    fn stage_record(&self, key: &Key, value: Bytes) -> impl Future<Output = Result<()>> + Send {
        self.write(key, value)
    }

    /// Removes an object; succeeds if it does not exist.
    fn remove(&self, key: &Key) -> impl Future<Output = Result<()>> + Send;

    /// Like [`read`](Self::read), with the version of what was read when the backend can
    /// write conditionally (S3 with conditional writes: the ETag); `None` as version, the
    /// default, when it cannot. The engine reads upload session records this way, so that a
    /// PATCH in another process that changed the record in between is detected at
    /// [`write_if_version`](Self::write_if_version).
    fn read_versioned(
        &self,
        key: &Key,
    ) -> impl Future<Output = Result<Option<(Bytes, Option<ObjectVersion>)>>> + Send {
        async move { Ok(self.read(key).await?.map(|value| (value, None))) }
    }

    /// Locks the upload session `id` against changes by other processes until the lease is
    /// dropped. The engine holds it around every change of a session (a chunk, the finish,
    /// an abort), beside its own lock for this process. The default holds nothing: right
    /// for backends whose sessions other processes cannot change under them (the object
    /// stores write each chunk under a name of its own and update the session record
    /// conditionally; memory is not shared). The filesystem locks
    /// ([`session_lock`](super::session_lock)).
    fn lock_upload(&self, id: &UploadId) -> impl Future<Output = Result<UploadLease>> + Send {
        let _ = id;
        std::future::ready(Ok(UploadLease::none()))
    }

    /// Locks the tag stored at `key` against writes and removals by other processes until
    /// the lease is dropped. The engine holds it (beside its own lock for this process)
    /// around a tag's write and around a delete's read and removal of a tag, which removes
    /// the tag only if it still names the deleted manifest. The default holds nothing:
    /// right for backends that remove conditionally instead
    /// ([`remove_if_version`](Self::remove_if_version)) and for memory, which is not shared.
    /// The filesystem locks (`session_lock`).
    fn lock_tag(&self, key: &Key) -> impl Future<Output = Result<TagLease>> + Send {
        let _ = key;
        std::future::ready(Ok(TagLease::none()))
    }

    /// Replaces an object only if it is still at `version` (as returned by
    /// [`read_versioned`](Self::read_versioned)): `Ok(true)` when written, `Ok(false)` and
    /// nothing written when another write came in between or the object was removed. Only called with a version the
    /// backend handed out; the default (for backends that hand out none) writes.
    fn write_if_version(
        &self,
        key: &Key,
        value: Bytes,
        version: &ObjectVersion,
    ) -> impl Future<Output = Result<bool>> + Send {
        let _ = version;
        async move { self.write(key, value).await.map(|()| true) }
    }

    /// Removes an object only if it is still at `version` (as returned by
    /// [`read_versioned`](Self::read_versioned)): `Ok(true)` when removed, `Ok(false)` and
    /// nothing removed when another write came in between or the object is gone. Only
    /// called with a version the backend handed out; the default (for backends that hand out
    /// none) removes.
    fn remove_if_version(
        &self,
        key: &Key,
        version: &ObjectVersion,
    ) -> impl Future<Output = Result<bool>> + Send {
        let _ = version;
        async move { self.remove(key).await.map(|()| true) }
    }

    /// Names of the objects directly inside `dir` with its name prefix (cut off), ascending,
    /// after `start_after`, at most `limit`.
    fn list(
        &self,
        dir: &Dir,
        start_after: Option<&str>,
        limit: Option<usize>,
    ) -> impl Future<Output = Result<Vec<String>>> + Send;

    /// Whether any object exists anywhere below `dir` (with its name prefix).
    fn any_under(&self, dir: &Dir) -> impl Future<Output = Result<bool>> + Send;

    /// Points the tag `tag` at a stored manifest (see [`TagTarget`]): a read of `tag` then
    /// yields content whose first word is the digest, and the tag and the record's name are
    /// durable, even where another process [staged](Self::stage_record) the record and has
    /// not tagged it yet.
    ///
    /// The one write with more than a key and a value, because a backend may store a tag as
    /// its manifest record itself (which starts with its digest): the filesystem makes the
    /// tag a hard link to the record, created beside it, and syncs the directory once for
    /// the tag and a [staged](Self::stage_record) record. The default writes the digest as
    /// the tag (the default `stage_record` left nothing to make durable).
    fn write_tag(
        &self,
        tag: &Key,
        target: TagTarget<'_>,
    ) -> impl Future<Output = Result<()>> + Send {
        self.write(tag, Bytes::from(target.digest.as_str().to_owned()))
    }

    /// Points the tag `tag` at a stored manifest like [`write_tag`](Self::write_tag), only if
    /// no tag is stored there: `Ok(false)`, nothing written, when one is. The engine creates
    /// immutable tags this way, holding the tag's locks ([`lock_tag`](Self::lock_tag)).
    ///
    /// The default looks, then writes: right where those locks order every writer of the
    /// tag (the filesystem, across processes; memory, which is not shared). Object stores
    /// create conditionally instead (S3 `If-None-Match: *`, GCS `ifGenerationMatch=0`), and
    /// a `false` there may follow a first attempt that stored the tag (a request sent again):
    /// the engine reads the tag to tell.
    fn create_tag(
        &self,
        tag: &Key,
        target: TagTarget<'_>,
    ) -> impl Future<Output = Result<bool>> + Send {
        create_tag_by_looking(self, tag, target)
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

    /// Stores blob `digest`, `size` bytes long, from `body` in one write straight at its
    /// final name. The engine calls it only for sizes in [`Capabilities::put_blob_sizes`],
    /// when the blob is not stored yet.
    ///
    /// The engine's `body` verifies itself: it yields exactly `size` bytes hashing to
    /// `digest` and holds its last chunk back until all of them were verified; when they do
    /// not match (or the client goes away), it ends with an error *in place of* that chunk.
    /// A backend that makes the object visible only once it has received all `size` bytes (an
    /// S3 `PutObject` sent with its `Content-Length`) therefore never stores other bytes under
    /// the digest's name, and stores nothing when the body fails. The body cannot be read
    /// twice: a backend that retries keeps its own copy. An error of the body is returned as
    /// it is (it is the client's: `DIGEST_INVALID`, `SIZE_INVALID`, a broken connection).
    ///
    /// The default refuses: a backend that does not advertise the capability is never asked.
    fn put_blob<S>(
        &self,
        digest: &Digest,
        size: u64,
        body: S,
    ) -> impl Future<Output = Result<()>> + Send
    where
        S: Stream<Item = Result<Bytes>> + Send,
    {
        let _ = (digest, size, body);
        std::future::ready(Err(crate::error::Error::backend(
            Self::NAME,
            "this backend has no single-write blob path (put_blob)",
        )))
    }

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

/// [`Backend::create_tag`] by looking, then writing with [`Backend::write_tag`]: the default,
/// and what a backend that can create conditionally only sometimes falls back on. Right only
/// where the tag's locks order every writer of the tag.
pub async fn create_tag_by_looking<B: Backend + ?Sized>(
    backend: &B,
    tag: &Key,
    target: TagTarget<'_>,
) -> Result<bool> {
    if backend.exists(tag).await? {
        return Ok(false);
    }
    backend.write_tag(tag, target).await.map(|()| true)
}
