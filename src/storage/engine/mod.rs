//! [`Engine`]: the OCI logic, written once, that turns any [`Backend`] into a
//! [`StorageDriver`].
//!
//! What lives here and nowhere else: repository visibility of blobs (links), digest
//! verification while streaming, resumable upload sessions (offset + hash checkpoint +
//! backend state, all persisted in the backend so any process can continue them), manifest
//! validation and storage, tags and their pagination, and the referrers index.
//!
//! This file holds the types and the [`StorageDriver`] implementation, which hands each
//! operation to the module of its resource: `blobs`, `uploads`, `manifests`, `tags`,
//! `referrers`. Request bodies are hashed and counted while they stream by `hashed_body`,
//! uploads serialised per id by [`UploadLocks`], and manifests stored in the format of
//! `manifest_record`.

mod blobs;
mod cached;
mod hashed_body;
mod immutable_tags;
mod lifecycle;
mod manifest_record;
mod manifests;
mod referrers;
mod tags;
mod uploads;

use lifecycle::condemned::CondemnedCache;

use bytes::Bytes;
use futures::Stream;

use crate::error::{Error, Result};
use crate::observe::metrics::StorageObserver;
use crate::oci::manifest::DEFAULT_MANIFEST_LIMIT;
use crate::oci::{
    Descriptor, Digest, DigestAlgorithm, RangeRequest, Reference, RepositoryName, Tag,
};
use crate::storage::backend::{Backend, Operation};
use crate::storage::cache::{CacheConfig, MetadataCache};
use crate::storage::key_locks::{KeyLocks, UploadLocks};
use crate::storage::layers::Instrumented;
use crate::storage::layout::Key;
use crate::storage::{
    BlobRead, FileInfo, Manifest, ManifestInfo, PutManifestOutcome, StorageDriver, TagList,
    UploadHandle, UploadId, UploadProgress,
};

/// Tunables of the engine.
#[derive(Debug, Clone)]
pub struct EngineOptions {
    /// Largest manifest accepted, in bytes.
    pub max_manifest_size: usize,
    /// Where the backend's operations are recorded: [`EngineOptions::instrument`] installs
    /// their observer when a driver is assembled. `None`: nothing is recorded.
    pub metrics: Option<std::sync::Arc<crate::observe::metrics::Metrics>>,
    /// Accept an image index whose child manifests are not stored (the spec: "A registry
    /// MAY reject a manifest uploaded with an index that references manifests which do not
    /// exist"), as mirrors that copy a subset of platforms need. Off by default: an index is
    /// accepted only with all its children.
    pub sparse_indexes: bool,
    /// The metadata cache (by default on for backends whose metadata reads are round
    /// trips, see [`Capabilities::remote_metadata`](crate::storage::backend::Capabilities::remote_metadata)).
    pub cache: CacheConfig,
    /// Answer blob reads with a redirect to a presigned URL valid this long, where the
    /// backend presigns ([`PresignBlobReads`](crate::storage::presign::PresignBlobReads); see
    /// [`Engine::presigned_blob_redirect`]); `None` (the default): serve the bytes.
    pub redirect_blob_reads: Option<std::time::Duration>,
    /// The tags that never move once they exist (none by default): see
    /// [`immutable`](crate::storage::immutable).
    pub immutable_tags: crate::storage::immutable::ImmutableTags,
}

impl Default for EngineOptions {
    fn default() -> Self {
        Self {
            max_manifest_size: DEFAULT_MANIFEST_LIMIT,
            metrics: None,
            sparse_indexes: false,
            cache: CacheConfig::default(),
            redirect_blob_reads: None,
            immutable_tags: Default::default(),
        }
    }
}

/// A backend as every driver is assembled: [`Instrumented`], reporting to the storage
/// metrics of its [`EngineOptions`] (or to nothing).
pub type Observed<B> = Instrumented<B, StorageObserver>;

impl EngineOptions {
    /// Where a driver built with these options counts the store requests it sends again
    /// (nothing without metrics).
    pub fn retry_counter(&self, driver: &'static str) -> crate::observe::metrics::RetryCounter {
        self.metrics
            .as_ref()
            .map(|m| m.storage().retry_counter(driver))
            .unwrap_or_default()
    }

    /// `inner` instrumented, its operations recorded into [`EngineOptions::metrics`] under
    /// its driver's name: the one place where drivers get their metrics.
    pub fn instrument<B: Backend>(&self, inner: B) -> Observed<B> {
        let observer = self
            .metrics
            .as_ref()
            .map(|m| m.storage().observer(B::NAME))
            .unwrap_or_default();
        Instrumented::with_observer(inner, observer)
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
    /// Tags being written or removed by this process (see `Engine::untag_one`).
    tag_locks: KeyLocks<Key>,
    /// The collections' condemned sets this process has read (see `lifecycle`).
    condemned: CondemnedCache,
    cache: Option<MetadataCache>,
    /// Set by [`Lifecycle::stop_collections`](crate::storage::lifecycle::Lifecycle::stop_collections).
    collections_stopped: std::sync::atomic::AtomicBool,
    /// The lease terms of collections' condemned sets (shortened by tests).
    gc_lease: lifecycle::lease::LeaseTerms,
}

impl<B: Backend> Engine<B> {
    /// Wraps a backend.
    pub fn new(backend: B, options: EngineOptions) -> Self {
        let cache = options.cache.build(
            backend.capabilities().remote_metadata,
            options.metrics.as_deref(),
        );
        Self {
            backend,
            options,
            upload_locks: UploadLocks::default(),
            tag_locks: KeyLocks::default(),
            condemned: CondemnedCache::default(),
            cache,
            collections_stopped: std::sync::atomic::AtomicBool::new(false),
            gc_lease: lifecycle::lease::LeaseTerms::STANDARD,
        }
    }

    /// Sets the lease terms of collections' condemned sets (tests shorten them).
    #[cfg(test)]
    pub(crate) fn with_gc_lease(mut self, terms: lifecycle::lease::LeaseTerms) -> Self {
        self.gc_lease = terms;
        self
    }

    /// The metadata cache, when enabled: its [`stats`](MetadataCache::stats) for metrics,
    /// and [`invalidate`](MetadataCache::invalidate) for whoever removes keys from the
    /// backend without going through the engine.
    pub fn cache(&self) -> Option<&MetadataCache> {
        self.cache.as_ref()
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

impl<B: Backend> Engine<B> {
    /// The error for a record read at `key` that does not parse.
    fn corrupt(&self, key: &Key) -> Error {
        Error::backend(B::NAME, "corrupt record")
            .with_context(Operation::Read, || Some(key.clone()))
    }
}

/// The driver's operations, each implemented in the module of its resource (`blobs`,
/// `uploads`, `manifests`, `tags`, `referrers`).
impl<B: Backend> StorageDriver for Engine<B> {
    type BlobStream = B::Reader;
    type Upload = EngineUpload<B::UploadState>;

    fn driver_name(&self) -> &'static str {
        B::NAME
    }

    fn chunk_min_length(&self) -> Option<u64> {
        self.backend.capabilities().chunk_min_length
    }

    async fn stat(&self, repo: &RepositoryName, digest: &Digest) -> Result<FileInfo> {
        self.blob_info(repo, digest).await
    }

    async fn get_content(
        &self,
        repo: &RepositoryName,
        digest: &Digest,
        range: Option<RangeRequest>,
    ) -> Result<BlobRead<B::Reader>> {
        self.blob_read(repo, digest, range).await
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
        self.blob_put(repo, digest, expected_size, body).await
    }

    async fn delete(&self, repo: &RepositoryName, digest: &Digest) -> Result<()> {
        self.blob_unlink(repo, digest).await
    }

    async fn mount_blob(
        &self,
        from: &RepositoryName,
        to: &RepositoryName,
        digest: &Digest,
    ) -> Result<FileInfo> {
        self.blob_mount(from, to, digest).await
    }

    async fn start_upload(
        &self,
        repo: &RepositoryName,
        algorithm: DigestAlgorithm,
    ) -> Result<Self::Upload> {
        self.upload_start(repo, algorithm).await
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
        self.upload_append(repo, id, offset, expected_len, body)
            .await
    }

    async fn get_upload_progress(
        &self,
        repo: &RepositoryName,
        id: &UploadId,
    ) -> Result<Self::Upload> {
        self.upload_progress(repo, id).await
    }

    async fn abort_upload(&self, repo: &RepositoryName, id: &UploadId) -> Result<()> {
        self.upload_abort(repo, id).await
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
        self.upload_finish(repo, id, digest, expected_len, body)
            .await
    }

    async fn get_manifest(&self, repo: &RepositoryName, reference: &Reference) -> Result<Manifest> {
        self.manifest_get(repo, reference).await
    }

    async fn stat_manifest(
        &self,
        repo: &RepositoryName,
        reference: &Reference,
    ) -> Result<ManifestInfo> {
        self.manifest_info(repo, reference).await
    }

    async fn put_manifest(
        &self,
        repo: &RepositoryName,
        reference: &Reference,
        content_type: Option<&str>,
        bytes: Bytes,
    ) -> Result<PutManifestOutcome> {
        self.manifest_put(repo, reference, content_type, bytes)
            .await
    }

    async fn delete_manifest(&self, repo: &RepositoryName, digest: &Digest) -> Result<()> {
        self.manifest_delete(repo, digest).await
    }

    async fn resolve_tag(&self, repo: &RepositoryName, tag: &Tag) -> Result<Digest> {
        self.tag_resolve(repo, tag).await
    }

    async fn get_tags(
        &self,
        repo: &RepositoryName,
        n: Option<usize>,
        last: Option<&str>,
    ) -> Result<TagList> {
        self.tag_list(repo, n, last).await
    }

    async fn tag_manifest(&self, repo: &RepositoryName, tag: &Tag, digest: &Digest) -> Result<()> {
        self.tag_set(repo, tag, digest).await
    }

    async fn untag_manifest(&self, repo: &RepositoryName, tag: &Tag) -> Result<()> {
        self.tag_remove(repo, tag).await
    }

    async fn referrers(
        &self,
        repo: &RepositoryName,
        subject: &Digest,
        artifact_type: Option<&str>,
    ) -> Result<Vec<Descriptor>> {
        self.referrer_list(repo, subject, artifact_type).await
    }
}

#[cfg(test)]
mod tests;
