//! [`Engine`]: the OCI logic, written once, that turns any [`Backend`] into a
//! [`StorageDriver`].
//!
//! What lives here and nowhere else: repository visibility of blobs (links), digest
//! verification while streaming, resumable upload sessions (offset + hash checkpoint +
//! backend state, all persisted in the backend so any process can continue them), manifest
//! validation and storage, tags and their pagination, and the referrers index.

mod locks;
mod manifest_record;
mod metered;

use locks::UploadLocks;
use manifest_record::{decode_manifest, encode_manifest};
use metered::{check_len, hash_only, metered};

use std::time::{SystemTime, UNIX_EPOCH};

use bytes::Bytes;
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

impl<B: Backend> Engine<B> {
    fn corrupt(&self, what: impl std::fmt::Display) -> Error {
        Error::backend(B::NAME, format!("corrupt record: {what}"))
    }

    /// Size recorded in the repository's link, or `None` if the blob is not visible there.
    async fn linked_size(&self, repo: &RepositoryName, digest: &Digest) -> Result<Option<u64>> {
        let key = layout::layer_link(repo, digest);
        let link = self.backend.read(&key).await?;
        if B::LINK_WHILE_COMMITTING {
            // The link may have been made durable before its blob (`commit_and_link`): it
            // counts only if the blob is there, whose size is authoritative anyway.
            return match link {
                None => Ok(None),
                Some(_) => self.backend.blob_size(digest).await,
            };
        }
        match link {
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

    /// Commits verified upload bytes as blob `digest` and links it into `repo`: one after the
    /// other, or both at once where the backend allows it
    /// ([`Backend::LINK_WHILE_COMMITTING`]), saving a round of name syncs per push.
    async fn commit_and_link(
        &self,
        repo: &RepositoryName,
        id: &UploadId,
        state: B::UploadState,
        size: u64,
        digest: &Digest,
    ) -> Result<FileInfo> {
        if !B::LINK_WHILE_COMMITTING {
            self.commit(id, state, size, digest).await?;
            return self.link(repo, digest, size).await;
        }
        let (committed, linked) = futures::join!(
            self.commit(id, state, size, digest),
            self.link(repo, digest, size)
        );
        if let Err(e) = committed {
            // The blob is not stored (`commit` succeeds whenever it is, whoever stored it),
            // so no push can have made this link valid: remove it (best effort; a leftover
            // link to a missing blob counts as absent).
            if linked.is_ok() {
                let _ = self.backend.remove(&layout::layer_link(repo, digest)).await;
            }
            return Err(e);
        }
        linked
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
        let key = layout::manifest(repo, digest);
        let stored = self.backend.read(&key).await?;
        // Records are written with `Backend::write_verified`: one that a crash left torn (or
        // that rotted on disk) fails its digest and is a manifest that is not stored.
        stored
            .and_then(|stored| {
                let manifest = decode_manifest(digest, stored);
                if manifest.is_none() {
                    tracing::warn!(driver = B::NAME, key = %key.as_str(),
                        "manifest record does not match its digest: treated as absent");
                }
                manifest
            })
            .ok_or_else(|| Error::ManifestUnknown(digest.to_string()))
    }

    /// Whether the manifest is stored (and intact) in the repository.
    async fn manifest_exists(&self, repo: &RepositoryName, digest: &Digest) -> Result<bool> {
        match self.read_manifest(repo, digest).await {
            Ok(_) => Ok(true),
            Err(Error::ManifestUnknown(_)) => Ok(false),
            Err(e) => Err(e),
        }
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
            if !self.manifest_exists(repo, &child.digest).await? {
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
        match self
            .commit_and_link(repo, &id, state.clone(), count, digest)
            .await
        {
            Ok(info) => Ok(info),
            Err(e) => {
                // Nobody else knows this upload id: free its storage (best effort).
                let _ = self.backend.abort_upload(&id, state).await;
                Err(e)
            }
        }
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
        let info = if already_stored {
            // Best effort: the bytes are redundant (or already consumed by a commit).
            let _ = self.backend.abort_upload(id, record.backend).await;
            self.link(repo, digest, size).await?
        } else {
            self.commit_and_link(repo, id, record.backend, size, digest)
                .await?
        };
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
            .write_verified(&layout::manifest(repo, &digest), record)
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
        if !self.manifest_exists(repo, digest).await? {
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
mod tests;
