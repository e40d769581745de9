//! [`Engine`]: the OCI logic, written once, that turns any [`Backend`] into a
//! [`StorageDriver`].
//!
//! What lives here and nowhere else: repository visibility of blobs (links), digest
//! verification while streaming, resumable upload sessions (offset + hash checkpoint +
//! backend state, all persisted in the backend so any process can continue them), manifest
//! validation and storage, tags and their pagination, and the referrers index.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{SystemTime, UNIX_EPOCH};

use bytes::{BufMut, Bytes, BytesMut};
use futures::{Stream, StreamExt};
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::oci::manifest::{self, DEFAULT_MANIFEST_LIMIT};
use crate::oci::{
    Descriptor, Digest, DigestAlgorithm, RangeRequest, Reference, RepositoryName, Tag,
};
use crate::storage::backend::Backend;
use crate::storage::hashing::{HashCheckpoint, Hasher};
use crate::storage::layout::{self, Key};
use crate::storage::{
    BlobRead, FileInfo, Manifest, ManifestInfo, PutManifestOutcome, StorageDriver, TagList,
    UploadHandle, UploadId, UploadProgress,
};

/// How many referrer entries `referrers` reads at once.
const REFERRER_READS_IN_FLIGHT: usize = 16;
/// How many tags `delete_manifest` reads at once.
const TAG_READS_IN_FLIGHT: usize = 16;

/// Tunables of the engine.
#[derive(Debug, Clone)]
pub struct EngineOptions {
    /// Largest manifest accepted, in bytes.
    pub max_manifest_size: usize,
}

impl Default for EngineOptions {
    fn default() -> Self {
        Self {
            max_manifest_size: DEFAULT_MANIFEST_LIMIT,
        }
    }
}

/// A [`StorageDriver`] built from a [`Backend`].
///
/// `FilesystemDriver`, `InMemoryDriver` and `S3Driver` are `Engine`s over their backends.
#[derive(Debug)]
pub struct Engine<B> {
    backend: B,
    options: EngineOptions,
    upload_locks: UploadLocks,
}

impl<B: Backend> Engine<B> {
    /// Wraps a backend.
    pub fn new(backend: B, options: EngineOptions) -> Self {
        Self {
            backend,
            options,
            upload_locks: UploadLocks::default(),
        }
    }

    /// The backend.
    pub fn backend(&self) -> &B {
        &self.backend
    }

    /// The options.
    pub fn options(&self) -> &EngineOptions {
        &self.options
    }
}

/// Serialises the operations that change one upload session (chunk, finish, abort) within
/// this process.
///
/// A session is a read-modify-write of its persisted record around an append to the backend.
/// Two chunks for the same offset running at once would both pass the offset check, the
/// backend would keep the bytes of one while the record kept the offset and hash state of the
/// other, and `finish_upload` would then commit bytes under a digest they do not have. With
/// the lock, the second chunk sees the first one's offset and is refused (`RangeInvalid`).
///
/// Sessions shared by several processes are not serialised by this lock; clients send a
/// session's chunks one at a time (spec "Pushing a blob in chunks"), so this only guards
/// against misbehaving clients hitting the same instance.
#[derive(Debug, Default)]
struct UploadLocks(Mutex<HashMap<UploadId, Arc<tokio::sync::Mutex<()>>>>);

/// Holds one session's lock; the map entry goes when nobody holds or awaits it any more.
struct UploadGuard<'a> {
    locks: &'a UploadLocks,
    guard: Option<tokio::sync::OwnedMutexGuard<()>>,
}

impl UploadLocks {
    async fn lock(&self, id: &UploadId) -> UploadGuard<'_> {
        let mutex = {
            let mut map = self.0.lock().unwrap_or_else(PoisonError::into_inner);
            Arc::clone(map.entry(id.clone()).or_default())
        };
        UploadGuard {
            locks: self,
            guard: Some(mutex.lock_owned().await),
        }
    }
}

impl Drop for UploadGuard<'_> {
    fn drop(&mut self) {
        let mut map = self.locks.0.lock().unwrap_or_else(PoisonError::into_inner);
        drop(self.guard.take());
        // Drop every entry nobody holds or awaits any more: this one, and any left by a
        // waiter that was cancelled after its holder had gone (it held the last clone). The
        // map only holds sessions with an operation in flight, so this stays short.
        map.retain(|_, m| Arc::strong_count(m) > 1);
    }
}

/// The upload handle of an [`Engine`]: progress plus the backend's state of the session
/// (for S3, the multipart upload id and parts), exposed for debugging.
#[derive(Debug, Clone)]
pub struct EngineUpload<S> {
    progress: UploadProgress,
    backend_state: S,
}

impl<S> EngineUpload<S> {
    /// The backend's state of the session.
    pub fn backend_state(&self) -> &S {
        &self.backend_state
    }
}

impl<S: std::fmt::Debug + Send + Sync + 'static> UploadHandle for EngineUpload<S> {
    fn progress(&self) -> UploadProgress {
        self.progress.clone()
    }
}

/// What is persisted for an upload session at `layout::upload_state`.
#[derive(Serialize, Deserialize)]
struct UploadRecord<S> {
    /// Bytes received and stored.
    offset: u64,
    /// Hash state over those bytes.
    hash: HashCheckpoint,
    /// Seconds since the epoch when the session started.
    started: u64,
    /// The backend's state.
    backend: S,
}

fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// Bodies are hashed in batches of this many bytes on Tokio's blocking pool, while the
/// chunks flow on to the backend: receiving, storing and hashing overlap (on a 2-core machine
/// hashing on the task that also receives the body capped a monolithic push at ~35% of one
/// core's SHA-256 rate). A body shorter than this is hashed inline, with no thread hop.
const HASH_BATCH: usize = 512 * 1024;

/// Wraps a body so every chunk is hashed and counted as it passes, and the stream fails with
/// `SIZE_INVALID` as soon as it exceeds `limit`.
///
/// `hasher` holds the hash of everything the stream yielded once it has yielded `None`
/// (the end of the body); until then the hashing may still be running on the blocking pool.
/// Callers use `hasher` only after consuming the stream to its end. At most about two
/// batches wait for hashing (the stream stops pulling the body until a batch is hashed).
fn metered<'a, S>(
    body: S,
    hasher: &'a mut Hasher,
    count: &'a mut u64,
    limit: Option<u64>,
) -> impl Stream<Item = Result<Bytes>> + Send + 'a
where
    S: Stream<Item = Result<Bytes>> + Send + 'a,
{
    let idle = std::mem::replace(hasher, Hasher::new(hasher.algorithm()));
    Metered {
        body,
        hasher,
        idle: Some(idle),
        running: None,
        pending: Vec::new(),
        pending_len: 0,
        count,
        limit,
        body_done: false,
        ended: false,
    }
}

/// The stream of [`metered`].
#[pin_project::pin_project]
struct Metered<'a, S> {
    #[pin]
    body: S,
    /// The caller's hasher: receives the final state at the end of the body.
    hasher: &'a mut Hasher,
    /// The hasher, when no batch is being hashed.
    idle: Option<Hasher>,
    /// The batch being hashed on the blocking pool; yields the hasher back.
    running: Option<tokio::task::JoinHandle<Hasher>>,
    /// Chunks yielded but not hashed yet.
    pending: Vec<Bytes>,
    pending_len: usize,
    count: &'a mut u64,
    limit: Option<u64>,
    /// The body yielded `None` (never polled again); the last hash may still be running.
    body_done: bool,
    ended: bool,
}

/// Waits for the batch being hashed, if any, and puts the hasher back in `idle`.
fn poll_hash_idle(
    running: &mut Option<tokio::task::JoinHandle<Hasher>>,
    idle: &mut Option<Hasher>,
    cx: &mut std::task::Context<'_>,
) -> std::task::Poll<Result<()>> {
    use std::future::Future;
    use std::task::Poll;
    if let Some(handle) = running.as_mut() {
        let joined = match std::pin::Pin::new(handle).poll(cx) {
            Poll::Pending => return Poll::Pending,
            Poll::Ready(joined) => joined,
        };
        *running = None;
        match joined {
            Ok(hasher) => *idle = Some(hasher),
            Err(e) => {
                return Poll::Ready(Err(Error::backend(
                    "engine",
                    format!("hashing task failed: {e}"),
                )));
            }
        }
    }
    Poll::Ready(Ok(()))
}

impl<S> Stream for Metered<'_, S>
where
    S: Stream<Item = Result<Bytes>>,
{
    type Item = Result<Bytes>;

    fn poll_next(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<Bytes>>> {
        use std::task::Poll;
        let mut this = self.project();
        if *this.ended {
            return Poll::Ready(None);
        }
        if *this.pending_len >= HASH_BATCH {
            // Hand the batch to the blocking pool once the previous one is hashed (this is
            // the back-pressure: the body is not pulled further meanwhile).
            match poll_hash_idle(this.running, this.idle, cx) {
                Poll::Pending => return Poll::Pending,
                Poll::Ready(Err(e)) => {
                    *this.ended = true;
                    return Poll::Ready(Some(Err(e)));
                }
                Poll::Ready(Ok(())) => {}
            }
            let batch = std::mem::take(this.pending);
            *this.pending_len = 0;
            let Some(mut hasher) = this.idle.take() else {
                *this.ended = true;
                return Poll::Ready(Some(Err(Error::backend("engine", "hasher lost"))));
            };
            *this.running = Some(tokio::task::spawn_blocking(move || {
                for chunk in &batch {
                    hasher.update(chunk);
                }
                hasher
            }));
        }
        let next = if *this.body_done {
            Poll::Ready(None)
        } else {
            this.body.as_mut().poll_next(cx)
        };
        match next {
            Poll::Pending => Poll::Pending,
            Poll::Ready(Some(Err(e))) => Poll::Ready(Some(Err(e))),
            Poll::Ready(Some(Ok(chunk))) => {
                **this.count += chunk.len() as u64;
                if let Some(limit) = *this.limit
                    && **this.count > limit
                {
                    return Poll::Ready(Some(Err(Error::SizeInvalid(format!(
                        "body is longer than the declared {limit} bytes"
                    )))));
                }
                if !chunk.is_empty() {
                    *this.pending_len += chunk.len();
                    this.pending.push(chunk.clone());
                }
                Poll::Ready(Some(Ok(chunk)))
            }
            Poll::Ready(None) => {
                *this.body_done = true;
                match poll_hash_idle(this.running, this.idle, cx) {
                    Poll::Pending => return Poll::Pending,
                    Poll::Ready(Err(e)) => {
                        *this.ended = true;
                        return Poll::Ready(Some(Err(e)));
                    }
                    Poll::Ready(Ok(())) => {}
                }
                *this.ended = true;
                let Some(mut hasher) = this.idle.take() else {
                    return Poll::Ready(Some(Err(Error::backend("engine", "hasher lost"))));
                };
                // The last partial batch (under HASH_BATCH): inline.
                for chunk in this.pending.drain(..) {
                    hasher.update(&chunk);
                }
                **this.hasher = hasher;
                Poll::Ready(None)
            }
        }
    }
}

/// Hashes and counts a whole body without storing it; `SIZE_INVALID` if its length differs
/// from `expected`.
async fn hash_only<S>(body: S, hasher: &mut Hasher, expected: Option<u64>) -> Result<u64>
where
    S: Stream<Item = Result<Bytes>> + Send,
{
    let mut count = 0u64;
    {
        let mut body = std::pin::pin!(metered(body, hasher, &mut count, expected));
        while let Some(chunk) = body.next().await {
            chunk?;
        }
    }
    check_len(expected, count)?;
    Ok(count)
}

fn check_len(expected: Option<u64>, got: u64) -> Result<()> {
    match expected {
        Some(e) if e != got => Err(Error::SizeInvalid(format!(
            "declared {e} bytes, received {got}"
        ))),
        _ => Ok(()),
    }
}

/// Encodes a stored manifest: `<media type>\n<exact bytes>`.
fn encode_manifest(media_type: &str, bytes: &[u8]) -> Bytes {
    let mut out = BytesMut::with_capacity(media_type.len() + 1 + bytes.len());
    out.put_slice(media_type.as_bytes());
    out.put_u8(b'\n');
    out.put_slice(bytes);
    out.freeze()
}

fn decode_manifest(driver: &'static str, digest: &Digest, stored: Bytes) -> Result<Manifest> {
    let nl = stored
        .iter()
        .position(|&b| b == b'\n')
        .ok_or_else(|| Error::backend(driver, format!("corrupt manifest record {digest}")))?;
    let media_type = std::str::from_utf8(&stored[..nl])
        .map_err(|_| Error::backend(driver, format!("corrupt manifest record {digest}")))?
        .to_owned();
    let bytes = stored.slice(nl + 1..);
    Ok(Manifest {
        info: ManifestInfo {
            digest: digest.clone(),
            size: bytes.len() as u64,
            media_type,
        },
        bytes,
    })
}

impl<B: Backend> Engine<B> {
    fn corrupt(&self, what: impl std::fmt::Display) -> Error {
        Error::backend(B::NAME, format!("corrupt record: {what}"))
    }

    /// Size recorded in the repository's link, or `None` if the blob is not visible there.
    async fn linked_size(&self, repo: &RepositoryName, digest: &Digest) -> Result<Option<u64>> {
        let key = layout::layer_link(repo, digest);
        match self.backend.read(&key).await? {
            None => Ok(None),
            Some(v) => match std::str::from_utf8(&v)
                .ok()
                .and_then(|s| s.trim().parse().ok())
            {
                Some(size) => Ok(Some(size)),
                // A link's content may be lost by a crash (`Backend::write_link`): its
                // existence is what was made durable, after the blob's bytes. The blob's own
                // size is then authoritative.
                None => match self.backend.blob_size(digest).await? {
                    Some(size) => Ok(Some(size)),
                    None => Err(self.corrupt(&key)),
                },
            },
        }
    }

    async fn link(&self, repo: &RepositoryName, digest: &Digest, size: u64) -> Result<FileInfo> {
        self.backend
            .write_link(
                &layout::layer_link(repo, digest),
                Bytes::from(size.to_string()),
            )
            .await?;
        Ok(self.file_info(digest, size))
    }

    fn file_info(&self, digest: &Digest, size: u64) -> FileInfo {
        FileInfo {
            path: self.backend.locate(&layout::blob_data(digest)),
            size,
            digest: digest.clone(),
        }
    }

    async fn load_upload(
        &self,
        repo: &RepositoryName,
        id: &UploadId,
    ) -> Result<(Key, UploadRecord<B::UploadState>)> {
        let key = layout::upload_state(repo, id);
        let raw = self
            .backend
            .read(&key)
            .await?
            .ok_or_else(|| Error::BlobUploadUnknown(id.to_string()))?;
        // Session records may be written without being made durable
        // (`Backend::write_upload_state`): a record a crash left unreadable, or one whose
        // bytes may not have survived, names no resumable session. Spec "Pushing a blob in
        // chunks": the client starts over after a 404 BLOB_UPLOAD_UNKNOWN.
        let record: UploadRecord<B::UploadState> = match serde_json::from_slice(&raw) {
            Ok(record) => record,
            Err(_) => {
                tracing::warn!(driver = B::NAME, key = %key.as_str(),
                    "unreadable upload session record: reported as unknown");
                return Err(Error::BlobUploadUnknown(id.to_string()));
            }
        };
        if !self.backend.upload_state_current(&record.backend) {
            return Err(Error::BlobUploadUnknown(id.to_string()));
        }
        Ok((key, record))
    }

    async fn save_upload(&self, key: &Key, record: &UploadRecord<B::UploadState>) -> Result<()> {
        let json = serde_json::to_vec(record)
            .map_err(|e| Error::backend(B::NAME, format!("encoding upload state: {e}")))?;
        self.backend
            .write_upload_state(key, Bytes::from(json))
            .await
    }

    fn handle(
        id: &UploadId,
        record: &UploadRecord<B::UploadState>,
    ) -> EngineUpload<B::UploadState> {
        EngineUpload {
            progress: UploadProgress {
                id: id.clone(),
                offset: record.offset,
                algorithm: record.hash.algorithm,
            },
            backend_state: record.backend.clone(),
        }
    }

    /// Resolves a reference to a manifest digest.
    async fn resolve(&self, repo: &RepositoryName, reference: &Reference) -> Result<Digest> {
        match reference {
            Reference::Digest(d) => Ok(d.clone()),
            Reference::Tag(t) => self.resolve_tag(repo, t).await,
        }
    }

    async fn read_manifest(&self, repo: &RepositoryName, digest: &Digest) -> Result<Manifest> {
        let stored = self
            .backend
            .read(&layout::manifest(repo, digest))
            .await?
            .ok_or_else(|| Error::ManifestUnknown(digest.to_string()))?;
        decode_manifest(B::NAME, digest, stored)
    }

    async fn repository_exists(&self, repo: &RepositoryName) -> Result<bool> {
        Ok(self.backend.any_under(&layout::tags_dir(repo)).await?
            || self.backend.any_under(&layout::manifests_dir(repo)).await?
            || self.backend.any_under(&layout::layers_dir(repo)).await?)
    }

    /// Checks that everything a manifest references (except its subject and
    /// non-distributable layers) is present in the repository.
    async fn check_references(
        &self,
        repo: &RepositoryName,
        summary: &manifest::ManifestSummary,
    ) -> Result<()> {
        for blob in summary.required_blobs() {
            if self.linked_size(repo, &blob.digest).await?.is_none() {
                return Err(Error::ManifestBlobUnknown(blob.digest.clone()));
            }
        }
        for child in summary.required_manifests() {
            let key = layout::manifest(repo, &child.digest);
            if self.backend.read(&key).await?.is_none() {
                return Err(Error::ManifestBlobUnknown(child.digest.clone()));
            }
        }
        Ok(())
    }

    /// Commits verified upload bytes as blob `digest`. A commit that reports an error after
    /// the blob was stored (a lost response, a failed cleanup) or while another push stored
    /// the same blob is a success: the blob the caller verified is there.
    async fn commit(
        &self,
        id: &UploadId,
        state: B::UploadState,
        size: u64,
        digest: &Digest,
    ) -> Result<()> {
        match self.backend.commit_upload(id, state, size, digest).await {
            Ok(()) => Ok(()),
            Err(e) => match self.backend.blob_size(digest).await {
                Ok(Some(stored)) if stored == size => {
                    tracing::warn!(driver = B::NAME, %digest, error = %e,
                        "commit reported an error but the blob is stored; continuing");
                    Ok(())
                }
                _ => Err(e),
            },
        }
    }

    /// Appends `body` to a loaded upload record, hashing as it streams. On success the
    /// record's offset, hash and backend state are updated (not yet persisted).
    async fn append<S>(
        &self,
        id: &UploadId,
        record: &mut UploadRecord<B::UploadState>,
        hasher: &mut Hasher,
        expected_len: Option<u64>,
        body: S,
    ) -> Result<u64>
    where
        S: Stream<Item = Result<Bytes>> + Send,
    {
        let mut count = 0u64;
        let mut state = record.backend.clone();
        let appended = self
            .backend
            .append_upload(
                id,
                &mut state,
                record.offset,
                metered(body, hasher, &mut count, expected_len),
            )
            .await?;
        if appended != count {
            return Err(Error::backend(
                B::NAME,
                format!("backend stored {appended} of {count} bytes"),
            ));
        }
        check_len(expected_len, count)?;
        record.offset += count;
        record.hash = hasher.checkpoint();
        record.backend = state;
        Ok(count)
    }
}

impl<B: Backend> Engine<B> {
    /// Finishes a session that was hashed with another algorithm than `digest`'s: a client
    /// that opened it without `digest-algorithm` and closes it with a sha512 digest (the OCI
    /// conformance suite does). The bytes are committed under the session's own digest (never
    /// linked, so never visible), read back once to hash them with `digest`'s algorithm and
    /// stored under `digest` by [`put_content`](StorageDriver::put_content), which verifies
    /// them. Costs one extra read and write of the blob, and the storage of the interim copy
    /// until garbage collection, in this case only.
    #[allow(clippy::too_many_arguments)]
    async fn finish_rehashing<S>(
        &self,
        repo: &RepositoryName,
        id: &UploadId,
        key: &Key,
        mut record: UploadRecord<B::UploadState>,
        mut hasher: Hasher,
        digest: &Digest,
        expected_len: Option<u64>,
        body: S,
    ) -> Result<FileInfo>
    where
        S: Stream<Item = Result<Bytes>> + Send,
    {
        self.append(id, &mut record, &mut hasher, expected_len, body)
            .await?;
        let interim = hasher.digest();
        let size = record.offset;
        let existed = self.backend.blob_size(&interim).await?.is_some();
        if existed {
            let _ = self.backend.abort_upload(id, record.backend).await;
        } else {
            self.commit(id, record.backend, size, &interim).await?;
        }
        self.backend.remove_upload_state(key).await?;
        let bytes = self.backend.read_blob(&interim, None).await?;
        // The interim blob stays stored, linked nowhere (like the bytes of a deleted blob),
        // for a garbage collector to reclaim. Deleting it here would be unsafe: blob bytes are
        // shared by content, and between the commit above and a deletion another push of the
        // same bytes may have found it stored and linked it (`put_content`'s dedupe path), so
        // its repository would then link missing bytes. (`Backend::remove` is also only meant
        // for metadata objects: the in-memory backend, for one, keeps blobs elsewhere.)
        self.put_content(repo, digest, Some(size), bytes).await
    }
}

impl<B: Backend> StorageDriver for Engine<B> {
    type BlobStream = B::Reader;
    type Upload = EngineUpload<B::UploadState>;

    fn driver_name(&self) -> &'static str {
        B::NAME
    }

    fn chunk_min_length(&self) -> Option<u64> {
        self.backend.chunk_min_length()
    }

    async fn stat(&self, repo: &RepositoryName, digest: &Digest) -> Result<FileInfo> {
        let size = self
            .linked_size(repo, digest)
            .await?
            .ok_or_else(|| Error::BlobUnknown(digest.clone()))?;
        Ok(self.file_info(digest, size))
    }

    async fn get_content(
        &self,
        repo: &RepositoryName,
        digest: &Digest,
        range: Option<RangeRequest>,
    ) -> Result<BlobRead<B::Reader>> {
        let info = self.stat(repo, digest).await?;
        let range = range.map(|r| r.resolve(info.size)).transpose()?;
        let stream = self.backend.read_blob(digest, range).await?;
        Ok(BlobRead {
            info,
            range,
            stream,
        })
    }

    async fn put_content<S>(
        &self,
        repo: &RepositoryName,
        digest: &Digest,
        expected_size: Option<u64>,
        body: S,
    ) -> Result<FileInfo>
    where
        S: Stream<Item = Result<Bytes>> + Send,
    {
        let mut hasher = Hasher::new(digest.algorithm());
        let mut count = 0u64;
        if self.backend.blob_size(digest).await?.is_some() {
            // Already stored (deduplicated): verify the body without storing it again.
            {
                let mut body =
                    std::pin::pin!(metered(body, &mut hasher, &mut count, expected_size));
                while let Some(chunk) = body.next().await {
                    chunk?;
                }
            }
            check_len(expected_size, count)?;
            if hasher.digest() != *digest {
                return Err(Error::DigestInvalid(format!(
                    "content does not match {digest}"
                )));
            }
            return self.link(repo, digest, count).await;
        }
        let id = UploadId::generate();
        let mut state = self.backend.create_upload(&id, Some(digest)).await?;
        let appended = self
            .backend
            .append_upload(
                &id,
                &mut state,
                0,
                metered(body, &mut hasher, &mut count, expected_size),
            )
            .await;
        let verdict = appended.and_then(|n| {
            if n != count {
                return Err(Error::backend(
                    B::NAME,
                    format!("backend stored {n} of {count} bytes"),
                ));
            }
            check_len(expected_size, count)?;
            if hasher.digest() != *digest {
                return Err(Error::DigestInvalid(format!(
                    "content does not match {digest}"
                )));
            }
            Ok(())
        });
        if let Err(e) = verdict {
            // Best effort: the failure the caller must see is `e`.
            let _ = self.backend.abort_upload(&id, state).await;
            return Err(e);
        }
        if let Err(e) = self.commit(&id, state.clone(), count, digest).await {
            // Nobody else knows this upload id: free its storage (best effort).
            let _ = self.backend.abort_upload(&id, state).await;
            return Err(e);
        }
        self.link(repo, digest, count).await
    }

    async fn delete(&self, repo: &RepositoryName, digest: &Digest) -> Result<()> {
        if self.linked_size(repo, digest).await?.is_none() {
            return Err(Error::BlobUnknown(digest.clone()));
        }
        self.backend.remove(&layout::layer_link(repo, digest)).await
    }

    async fn mount_blob(
        &self,
        from: &RepositoryName,
        to: &RepositoryName,
        digest: &Digest,
    ) -> Result<FileInfo> {
        let size = self
            .linked_size(from, digest)
            .await?
            .ok_or_else(|| Error::BlobUnknown(digest.clone()))?;
        if self.backend.blob_size(digest).await?.is_none() {
            return Err(Error::BlobUnknown(digest.clone()));
        }
        self.link(to, digest, size).await
    }

    async fn start_upload(
        &self,
        repo: &RepositoryName,
        algorithm: DigestAlgorithm,
    ) -> Result<Self::Upload> {
        let id = UploadId::generate();
        let backend = self.backend.create_upload(&id, None).await?;
        let record = UploadRecord {
            offset: 0,
            hash: Hasher::new(algorithm).checkpoint(),
            started: now_secs(),
            backend,
        };
        self.save_upload(&layout::upload_state(repo, &id), &record)
            .await?;
        Ok(Self::handle(&id, &record))
    }

    async fn put_upload_chunk<S>(
        &self,
        repo: &RepositoryName,
        id: &UploadId,
        offset: Option<u64>,
        expected_len: Option<u64>,
        body: S,
    ) -> Result<Self::Upload>
    where
        S: Stream<Item = Result<Bytes>> + Send,
    {
        let _lock = self.upload_locks.lock(id).await;
        let (key, mut record) = self.load_upload(repo, id).await?;
        if let Some(offset) = offset
            && offset != record.offset
        {
            // Spec "Pushing a blob in chunks": out-of-order chunks are 416; the session is
            // untouched and stays usable.
            return Err(Error::RangeInvalid {
                size: record.offset,
                reason: format!("chunk starts at {offset}, expected {}", record.offset),
            });
        }
        let mut hasher = Hasher::restore(&record.hash)?;
        self.append(id, &mut record, &mut hasher, expected_len, body)
            .await?;
        self.save_upload(&key, &record).await?;
        Ok(Self::handle(id, &record))
    }

    async fn get_upload_progress(
        &self,
        repo: &RepositoryName,
        id: &UploadId,
    ) -> Result<Self::Upload> {
        let (_, record) = self.load_upload(repo, id).await?;
        Ok(Self::handle(id, &record))
    }

    async fn abort_upload(&self, repo: &RepositoryName, id: &UploadId) -> Result<()> {
        let _lock = self.upload_locks.lock(id).await;
        let (key, record) = self.load_upload(repo, id).await?;
        self.backend.abort_upload(id, record.backend).await?;
        self.backend.remove_upload_state(&key).await
    }

    async fn finish_upload<S>(
        &self,
        repo: &RepositoryName,
        id: &UploadId,
        digest: &Digest,
        expected_len: Option<u64>,
        body: S,
    ) -> Result<FileInfo>
    where
        S: Stream<Item = Result<Bytes>> + Send,
    {
        let _lock = self.upload_locks.lock(id).await;
        let (key, mut record) = self.load_upload(repo, id).await?;
        let mut hasher = if record.offset == 0 {
            // Nothing hashed yet: hash with the algorithm of the digest given now.
            Hasher::new(digest.algorithm())
        } else {
            Hasher::restore(&record.hash)?
        };
        if hasher.algorithm() != digest.algorithm() {
            return self
                .finish_rehashing(repo, id, &key, record, hasher, digest, expected_len, body)
                .await;
        }
        // When the blob is already stored (pushed before, possibly by an earlier attempt to
        // finish this very session whose commit went through but whose link or cleanup
        // failed), the final body only needs hashing: the session's bytes are not needed, and
        // a retried finish must not depend on upload bytes a commit may have consumed.
        let already_stored = self.backend.blob_size(digest).await?.is_some();
        if already_stored {
            let count = hash_only(body, &mut hasher, expected_len).await?;
            record.offset += count;
        } else {
            self.append(id, &mut record, &mut hasher, expected_len, body)
                .await?;
        }
        let computed = hasher.digest();
        if computed != *digest {
            // Spec: DIGEST_INVALID, and nothing becomes visible. The session is spent.
            let _ = self.backend.abort_upload(id, record.backend).await;
            let _ = self.backend.remove_upload_state(&key).await;
            return Err(Error::DigestInvalid(format!(
                "content is {computed}, not {digest}"
            )));
        }
        let size = record.offset;
        if already_stored {
            // Best effort: the bytes are redundant (or already consumed by a commit).
            let _ = self.backend.abort_upload(id, record.backend).await;
        } else {
            self.commit(id, record.backend, size, digest).await?;
        }
        let info = self.link(repo, digest, size).await?;
        self.backend.remove_upload_state(&key).await?;
        Ok(info)
    }

    async fn get_manifest(&self, repo: &RepositoryName, reference: &Reference) -> Result<Manifest> {
        let digest = self.resolve(repo, reference).await?;
        self.read_manifest(repo, &digest).await
    }

    async fn stat_manifest(
        &self,
        repo: &RepositoryName,
        reference: &Reference,
    ) -> Result<ManifestInfo> {
        Ok(self.get_manifest(repo, reference).await?.info)
    }

    async fn put_manifest(
        &self,
        repo: &RepositoryName,
        reference: &Reference,
        content_type: Option<&str>,
        bytes: Bytes,
    ) -> Result<PutManifestOutcome> {
        if bytes.len() > self.options.max_manifest_size {
            return Err(Error::SizeInvalid(format!(
                "manifest of {} bytes exceeds the limit of {} bytes",
                bytes.len(),
                self.options.max_manifest_size
            )));
        }
        let summary = manifest::inspect(&bytes, content_type)?;
        let digest = match reference {
            Reference::Digest(d) => {
                let computed = Digest::compute(d.algorithm(), &bytes);
                if computed != *d {
                    return Err(Error::DigestInvalid(format!(
                        "manifest is {computed}, not {d}"
                    )));
                }
                computed
            }
            Reference::Tag(_) => Digest::compute(DigestAlgorithm::Sha256, &bytes),
        };
        self.check_references(repo, &summary).await?;
        let size = bytes.len() as u64;
        let subject = summary.subject.as_ref().map(|s| s.digest.clone());
        let record = encode_manifest(&summary.media_type, &bytes);
        if let (Reference::Tag(tag), None) = (reference, &subject) {
            // The common push: the manifest, then its tag (never durable before the manifest).
            self.backend
                .write_ordered(
                    &layout::manifest(repo, &digest),
                    record,
                    &layout::tag(repo, tag),
                    Bytes::from(digest.as_str().to_owned()),
                )
                .await?;
            return Ok(PutManifestOutcome { digest, subject });
        }
        self.backend
            .write(&layout::manifest(repo, &digest), record)
            .await?;
        if let Some(subject) = &subject {
            let entry = Descriptor {
                media_type: summary.media_type.clone(),
                digest: digest.clone(),
                size,
                artifact_type: summary.artifact_type.clone(),
                annotations: summary.annotations.clone(),
                urls: None,
            };
            let json = serde_json::to_vec(&entry)
                .map_err(|e| Error::backend(B::NAME, format!("encoding referrer: {e}")))?;
            self.backend
                .write(&layout::referrer(repo, subject, &digest), Bytes::from(json))
                .await?;
        }
        if let Reference::Tag(tag) = reference {
            self.backend
                .write(
                    &layout::tag(repo, tag),
                    Bytes::from(digest.as_str().to_owned()),
                )
                .await?;
        }
        Ok(PutManifestOutcome { digest, subject })
    }

    async fn delete_manifest(&self, repo: &RepositoryName, digest: &Digest) -> Result<()> {
        let manifest = self.read_manifest(repo, digest).await?;
        // Tags first: a tag must never point at a deleted manifest.
        // There is no reverse index, so every tag is read; the reads (and removals) run a
        // few at a time since on object stores each is a round trip.
        let tags_dir = layout::tags_dir(repo);
        let names = self.backend.list(&tags_dir, None, None).await?;
        let untag = futures::stream::iter(names)
            .filter_map(|name| async move { Tag::parse(&name).ok() })
            .map(|tag| async move {
                let key = layout::tag(repo, &tag);
                match self.backend.read(&key).await? {
                    // Compared as resolve_tag reads it (trimmed).
                    Some(target)
                        if std::str::from_utf8(&target).map(str::trim) == Ok(digest.as_str()) =>
                    {
                        self.backend.remove(&key).await
                    }
                    _ => Ok(()),
                }
            })
            .buffer_unordered(TAG_READS_IN_FLIGHT);
        let mut untag = std::pin::pin!(untag);
        while let Some(done) = untag.next().await {
            done?;
        }
        if let Ok(summary) = manifest::inspect(&manifest.bytes, Some(&manifest.info.media_type))
            && let Some(subject) = summary.subject
        {
            self.backend
                .remove(&layout::referrer(repo, &subject.digest, digest))
                .await?;
        }
        self.backend.remove(&layout::manifest(repo, digest)).await
    }

    async fn resolve_tag(&self, repo: &RepositoryName, tag: &Tag) -> Result<Digest> {
        let key = layout::tag(repo, tag);
        let raw = self
            .backend
            .read(&key)
            .await?
            .ok_or_else(|| Error::ManifestUnknown(format!("tag {tag}")))?;
        std::str::from_utf8(&raw)
            .ok()
            .and_then(|s| Digest::parse(s.trim()).ok())
            .ok_or_else(|| self.corrupt(&key))
    }

    async fn get_tags(
        &self,
        repo: &RepositoryName,
        n: Option<usize>,
        last: Option<&str>,
    ) -> Result<TagList> {
        if n == Some(0) {
            // Spec "Listing Tags": n=0 gives an empty list (the repository must still exist).
            if !self.repository_exists(repo).await? {
                return Err(Error::NameUnknown(repo.to_string()));
            }
            return Ok(TagList::default());
        }
        let mut tags = self
            .backend
            .list(
                &layout::tags_dir(repo),
                last,
                n.map(|n| n.saturating_add(1)),
            )
            .await?;
        if tags.is_empty() && !self.repository_exists(repo).await? {
            return Err(Error::NameUnknown(repo.to_string()));
        }
        let has_more = n.is_some_and(|n| tags.len() > n);
        if let Some(n) = n {
            tags.truncate(n);
        }
        Ok(TagList { tags, has_more })
    }

    async fn tag_manifest(&self, repo: &RepositoryName, tag: &Tag, digest: &Digest) -> Result<()> {
        if self
            .backend
            .read(&layout::manifest(repo, digest))
            .await?
            .is_none()
        {
            return Err(Error::ManifestUnknown(digest.to_string()));
        }
        self.backend
            .write(
                &layout::tag(repo, tag),
                Bytes::from(digest.as_str().to_owned()),
            )
            .await
    }

    async fn untag_manifest(&self, repo: &RepositoryName, tag: &Tag) -> Result<()> {
        let key = layout::tag(repo, tag);
        if self.backend.read(&key).await?.is_none() {
            return Err(Error::ManifestUnknown(format!("tag {tag}")));
        }
        self.backend.remove(&key).await
    }

    async fn referrers(
        &self,
        repo: &RepositoryName,
        subject: &Digest,
        artifact_type: Option<&str>,
    ) -> Result<Vec<Descriptor>> {
        let dir = layout::referrers_dir(repo, subject);
        let names = self.backend.list(&dir, None, None).await?;
        // One small read per referrer: issue them concurrently (on object stores each is a
        // round trip), keeping the listing's order.
        let reads = futures::stream::iter(names)
            .filter_map(|name| async move {
                let (alg, hex) = name.split_once('-')?;
                Digest::parse(&format!("{alg}:{hex}")).ok()
            })
            .map(|referrer| async move {
                let key = layout::referrer(repo, subject, &referrer);
                let raw = self.backend.read(&key).await?;
                Ok::<_, Error>((key, raw))
            })
            .buffered(REFERRER_READS_IN_FLIGHT);
        let mut reads = std::pin::pin!(reads);
        let mut out = Vec::new();
        while let Some(read) = reads.next().await {
            let (key, raw) = read?;
            let Some(raw) = raw else {
                continue; // deleted meanwhile
            };
            let descriptor: Descriptor =
                serde_json::from_slice(&raw).map_err(|_| self.corrupt(&key))?;
            if artifact_type.is_none_or(|t| descriptor.artifact_type.as_deref() == Some(t)) {
                out.push(descriptor);
            }
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicBool, Ordering};

    use futures::stream;

    use super::*;
    use crate::oci::ByteRange;
    use crate::storage::inmemory::{InMemoryBackend, InMemoryReader};

    /// The in-memory backend with injectable failures.
    #[derive(Debug, Default)]
    struct Faulty {
        inner: InMemoryBackend,
        /// `commit_upload` stores the blob, then reports an error (a lost response).
        commit_then_fail: AtomicBool,
        /// The next write of a repository link fails.
        fail_link_write: AtomicBool,
    }

    fn injected() -> Error {
        Error::backend("faulty", "injected failure")
    }

    impl Backend for Faulty {
        const NAME: &'static str = "faulty";
        type Reader = InMemoryReader;
        type UploadState = ();

        fn locate(&self, key: &Key) -> String {
            self.inner.locate(key)
        }
        async fn read(&self, key: &Key) -> Result<Option<Bytes>> {
            self.inner.read(key).await
        }
        async fn write(&self, key: &Key, value: Bytes) -> Result<()> {
            if key.as_str().contains("/_layers/")
                && self.fail_link_write.swap(false, Ordering::SeqCst)
            {
                return Err(injected());
            }
            self.inner.write(key, value).await
        }
        async fn remove(&self, key: &Key) -> Result<()> {
            self.inner.remove(key).await
        }
        async fn list(
            &self,
            dir: &Key,
            start_after: Option<&str>,
            limit: Option<usize>,
        ) -> Result<Vec<String>> {
            self.inner.list(dir, start_after, limit).await
        }
        async fn any_under(&self, dir: &Key) -> Result<bool> {
            self.inner.any_under(dir).await
        }
        async fn blob_size(&self, digest: &Digest) -> Result<Option<u64>> {
            self.inner.blob_size(digest).await
        }
        async fn read_blob(
            &self,
            digest: &Digest,
            range: Option<ByteRange>,
        ) -> Result<InMemoryReader> {
            self.inner.read_blob(digest, range).await
        }
        async fn create_upload(&self, id: &UploadId, target: Option<&Digest>) -> Result<()> {
            self.inner.create_upload(id, target).await
        }
        async fn append_upload<S>(
            &self,
            id: &UploadId,
            state: &mut (),
            offset: u64,
            body: S,
        ) -> Result<u64>
        where
            S: Stream<Item = Result<Bytes>> + Send,
        {
            self.inner.append_upload(id, state, offset, body).await
        }
        async fn commit_upload(
            &self,
            id: &UploadId,
            state: (),
            size: u64,
            digest: &Digest,
        ) -> Result<()> {
            self.inner.commit_upload(id, state, size, digest).await?;
            if self.commit_then_fail.swap(false, Ordering::SeqCst) {
                return Err(injected());
            }
            Ok(())
        }
        async fn abort_upload(&self, id: &UploadId, state: ()) -> Result<()> {
            self.inner.abort_upload(id, state).await
        }
    }

    fn engine() -> Engine<Faulty> {
        Engine::new(Faulty::default(), EngineOptions::default())
    }

    fn body(data: &'static [u8]) -> impl Stream<Item = Result<Bytes>> + Send {
        stream::iter([Ok(Bytes::from_static(data))])
    }

    async fn content(e: &Engine<Faulty>, repo: &RepositoryName, digest: &Digest) -> Vec<u8> {
        let read = e.get_content(repo, digest, None).await.unwrap();
        let chunks: Vec<Result<Bytes>> = read.stream.collect().await;
        chunks
            .into_iter()
            .flat_map(|c| c.unwrap().to_vec())
            .collect()
    }

    const DATA: &[u8] = b"hello, resilient world";

    fn lock_entries(locks: &UploadLocks) -> usize {
        locks.0.lock().unwrap().len()
    }

    /// The lock map only holds sessions with an operation in flight, including after a
    /// waiter is cancelled once its holder is gone.
    #[tokio::test]
    async fn upload_locks_are_released() {
        let locks = UploadLocks::default();
        let (a, b) = (UploadId::generate(), UploadId::generate());
        let held = locks.lock(&a).await;
        let other = locks.lock(&b).await;
        assert_eq!(lock_entries(&locks), 2);
        drop(other);
        assert_eq!(lock_entries(&locks), 1);
        // A waiter, cancelled after the holder released the lock.
        let mut waiter = Box::pin(locks.lock(&a));
        assert!(futures::poll!(waiter.as_mut()).is_pending());
        drop(held);
        drop(waiter);
        // Cleaned up by the next release of any session.
        drop(locks.lock(&b).await);
        assert_eq!(lock_entries(&locks), 0);
        // A waiter cancelled while the holder still holds.
        let held = locks.lock(&a).await;
        let mut waiter = Box::pin(locks.lock(&a));
        assert!(futures::poll!(waiter.as_mut()).is_pending());
        drop(waiter);
        drop(held);
        assert_eq!(lock_entries(&locks), 0);
    }

    /// Bodies longer than a hash batch are hashed on the blocking pool in order: the digest
    /// of a multi-batch body in uneven chunks is right, a wrong one is refused, and a chunked
    /// upload's checkpoint covers exactly its bytes.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn long_bodies_hash_in_order() {
        let e = engine();
        let repo = RepositoryName::parse("a/b").unwrap();
        let data: Vec<u8> = (0..3 * HASH_BATCH + 12345)
            .map(|i| (i * 31 % 251) as u8)
            .collect();
        let data = Bytes::from(data);
        let digest = Digest::compute(DigestAlgorithm::Sha256, &data);
        let chunks = |d: Bytes| {
            let mut out = Vec::new();
            let mut at = 0;
            let mut step = 1;
            while at < d.len() {
                let end = (at + step).min(d.len());
                out.push(Ok(d.slice(at..end)));
                at = end;
                step = step * 3 % 200_003 + 7;
            }
            stream::iter(out)
        };
        let info = e
            .put_content(
                &repo,
                &digest,
                Some(data.len() as u64),
                chunks(data.clone()),
            )
            .await
            .unwrap();
        assert_eq!(info.size, data.len() as u64);
        assert_eq!(content(&e, &repo, &digest).await, data.to_vec());
        let mut other = data.to_vec();
        other[2 * HASH_BATCH + 1] ^= 1;
        let other_digest = Digest::compute(DigestAlgorithm::Sha256, &other);
        assert!(matches!(
            e.put_content(&repo, &other_digest, None, chunks(data.clone()))
                .await,
            Err(Error::DigestInvalid(_))
        ));
        // Chunked: two long chunks, then finish.
        let id = e
            .start_upload(&repo, DigestAlgorithm::Sha256)
            .await
            .unwrap()
            .id();
        let cut = HASH_BATCH * 2 - 3;
        e.put_upload_chunk(&repo, &id, Some(0), None, chunks(data.slice(..cut)))
            .await
            .unwrap();
        let info = e
            .finish_upload(&repo, &id, &digest, None, chunks(data.slice(cut..)))
            .await
            .unwrap();
        assert_eq!(info.size, data.len() as u64);
    }

    /// A commit whose response is lost (blob stored, error reported) finishes the upload.
    #[tokio::test]
    async fn finish_succeeds_when_commit_errs_after_storing() {
        let e = engine();
        let repo = RepositoryName::parse("a/b").unwrap();
        let digest = Digest::compute(DigestAlgorithm::Sha256, DATA);
        let id = e
            .start_upload(&repo, DigestAlgorithm::Sha256)
            .await
            .unwrap()
            .id();
        e.put_upload_chunk(&repo, &id, Some(0), None, body(&DATA[..5]))
            .await
            .unwrap();
        e.backend().commit_then_fail.store(true, Ordering::SeqCst);
        let info = e
            .finish_upload(&repo, &id, &digest, None, body(&DATA[5..]))
            .await
            .unwrap();
        assert_eq!(info.size, DATA.len() as u64);
        assert_eq!(content(&e, &repo, &digest).await, DATA);
        assert!(matches!(
            e.get_upload_progress(&repo, &id).await,
            Err(Error::BlobUploadUnknown(_))
        ));
    }

    /// Same for a monolithic put.
    #[tokio::test]
    async fn put_content_succeeds_when_commit_errs_after_storing() {
        let e = engine();
        let repo = RepositoryName::parse("a/b").unwrap();
        let digest = Digest::compute(DigestAlgorithm::Sha256, DATA);
        e.backend().commit_then_fail.store(true, Ordering::SeqCst);
        e.put_content(&repo, &digest, None, body(DATA))
            .await
            .unwrap();
        assert_eq!(content(&e, &repo, &digest).await, DATA);
    }

    /// A finish that committed the blob but failed to link it can be retried: the retry must
    /// not need the upload bytes the commit consumed.
    #[tokio::test]
    async fn finish_retry_after_link_failure() {
        let e = engine();
        let repo = RepositoryName::parse("a/b").unwrap();
        let digest = Digest::compute(DigestAlgorithm::Sha256, DATA);
        let id = e
            .start_upload(&repo, DigestAlgorithm::Sha256)
            .await
            .unwrap()
            .id();
        e.put_upload_chunk(&repo, &id, Some(0), None, body(&DATA[..7]))
            .await
            .unwrap();
        e.backend().fail_link_write.store(true, Ordering::SeqCst);
        assert!(
            e.finish_upload(&repo, &id, &digest, None, body(&DATA[7..]))
                .await
                .is_err()
        );
        assert!(matches!(
            e.stat(&repo, &digest).await,
            Err(Error::BlobUnknown(_))
        ));
        let info = e
            .finish_upload(&repo, &id, &digest, None, body(&DATA[7..]))
            .await
            .unwrap();
        assert_eq!(info.size, DATA.len() as u64);
        assert_eq!(content(&e, &repo, &digest).await, DATA);
        // A retry with other bytes is still verified.
        let id = e
            .start_upload(&repo, DigestAlgorithm::Sha256)
            .await
            .unwrap()
            .id();
        assert!(matches!(
            e.finish_upload(&repo, &id, &digest, None, body(b"not the data"))
                .await,
            Err(Error::DigestInvalid(_))
        ));
    }
}
