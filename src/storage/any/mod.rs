//! [`AnyDriver`]: the enum the factory returns. It implements [`StorageDriver`] by static
//! dispatch (a `match`, no `dyn`), and its associated types are enums too, pin-projected,
//! so a blob read through `AnyDriver` streams without boxing.
//!
//! Everything that differs per driver is generated (`dispatch`) from the one list below:
//! **adding a driver is one line there**, plus its [`ConfiguredDriver`] implementation in
//! its own module. (Before the list, a driver touched eight places here.)
//!
//! Each operation returns the chosen driver's own future inside a small enum, not an `async`
//! wrapper around it: a wrapper holds the call's arguments a second time, and every move of
//! the future (into a task, into `block_on`) copies it. The filesystem and in-memory futures
//! are held inline, so `AnyDriver`'s futures are the size of the largest of those plus a tag,
//! and those drivers never box. The S3 variant's futures and streams are larger and are put
//! on the heap (`boxed` in the list), once per operation (next to a network round trip), so
//! that they do not make every other variant's larger.

#[macro_use]
mod dispatch;

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::Bytes;
use futures::Stream;

use crate::error::Result;
use crate::observe::metrics::Metrics;
use crate::oci::{
    Descriptor, Digest, DigestAlgorithm, RangeRequest, Reference, RepositoryName, Tag,
};
use crate::storage::immutable::ImmutableTags;
use crate::storage::lifecycle::{GcOptions, GcReport, Lifecycle, RepositoryList};
use crate::storage::{
    BlobRead, BlobRedirect, EngineOptions, FileInfo, Manifest, ManifestInfo, PutManifestOutcome,
    StorageConfig, StorageDriver, StorageType, TagList, UploadHandle, UploadId, UploadProgress,
};
use dispatch::{Absent, IntoAny, Slot};

/// A driver the factory can build: the [`StorageType`] that selects it and how to open it
/// from a [`StorageConfig`]. Implemented by each driver in its own module.
pub(crate) trait ConfiguredDriver: StorageDriver + Sized {
    /// The `type` of the configuration that selects this driver.
    const STORAGE_TYPE: StorageType;

    /// Opens the driver with the configuration's parameters for it.
    fn open(
        config: &StorageConfig,
        options: EngineOptions,
    ) -> impl Future<Output = Result<Self>> + Send;
}

// The drivers compiled into this build: one line each.
drivers! { $
    /// Local filesystem.
    Filesystem(crate::storage::filesystem::FilesystemDriver), inline;
    /// Process memory.
    InMemory(crate::storage::inmemory::InMemoryDriver), inline;
    /// S3-compatible object storage.
    #[cfg(feature = "s3")]
    S3(crate::storage::s3::S3Driver), boxed;
    /// Google Cloud Storage.
    #[cfg(feature = "gcs")]
    Gcs(crate::storage::gcs::GcsDriver), boxed;
}

impl AnyDriver {
    /// The factory (seed §3): builds the driver `config` selects.
    ///
    /// Fails with a configuration error naming the field when the configuration is invalid,
    /// the driver is unknown, or its cargo feature is not compiled in.
    pub async fn from_config(config: &StorageConfig) -> Result<Self> {
        Self::open_with(config, None).await
    }

    /// [`AnyDriver::from_config`], recording every storage operation (by driver, operation
    /// and outcome, with latencies) into `metrics`.
    pub async fn from_config_with_metrics(
        config: &StorageConfig,
        metrics: Arc<Metrics>,
    ) -> Result<Self> {
        Self::open_with(config, Some(metrics)).await
    }

    async fn open_with(config: &StorageConfig, metrics: Option<Arc<Metrics>>) -> Result<Self> {
        config.validate()?;
        let options = EngineOptions {
            max_manifest_size: config.max_manifest_size,
            metrics,
            sparse_indexes: config.sparse_indexes,
            cache: config.cache.clone(),
            redirect_blob_reads: None,
            immutable_tags: ImmutableTags::new(&config.immutable_tags)?,
        };
        Self::open_selected(config, options).await
    }
}

impl crate::storage::probe::StorageProbe for AnyDriver {
    async fn probe(&self) -> Result<()> {
        dispatch!(self, d => d.probe().await)
    }

    async fn probe_reads(&self) -> Result<()> {
        dispatch!(self, d => d.probe_reads().await)
    }
}

impl StorageDriver for AnyDriver {
    type BlobStream = AnyBlobStream;
    type Upload = AnyUpload;

    fn driver_name(&self) -> &'static str {
        dispatch!(self, d => d.driver_name())
    }

    fn chunk_min_length(&self) -> Option<u64> {
        dispatch!(self, d => d.chunk_min_length())
    }

    fn stat(
        &self,
        repo: &RepositoryName,
        digest: &Digest,
    ) -> impl Future<Output = Result<FileInfo>> + Send {
        dispatch_future!(self, d => d.stat(repo, digest))
    }

    fn get_content(
        &self,
        repo: &RepositoryName,
        digest: &Digest,
        range: Option<RangeRequest>,
    ) -> impl Future<Output = Result<BlobRead<AnyBlobStream>>> + Send {
        dispatch_future!(self, d => d.get_content(repo, digest, range))
    }

    fn put_content<S>(
        &self,
        repo: &RepositoryName,
        digest: &Digest,
        expected_size: Option<u64>,
        body: S,
    ) -> impl Future<Output = Result<FileInfo>> + Send
    where
        S: Stream<Item = Result<Bytes>> + Send,
    {
        dispatch_future!(self, d => d.put_content(repo, digest, expected_size, body))
    }

    fn delete(
        &self,
        repo: &RepositoryName,
        digest: &Digest,
    ) -> impl Future<Output = Result<()>> + Send {
        dispatch_future!(self, d => d.delete(repo, digest))
    }

    /// Only a driver whose backend presigns (S3, GCS) redirects, when configured to
    /// (`redirect`): [`Engine::presigned_blob_redirect`](crate::storage::Engine::presigned_blob_redirect).
    /// Its future is put on the heap (as every S3 and GCS operation's is here).
    fn blob_redirect(
        &self,
        repo: &RepositoryName,
        digest: &Digest,
    ) -> impl Future<Output = Result<Option<BlobRedirect>>> + Send {
        let _ = (repo, digest);
        async move {
            match self {
                #[cfg(feature = "s3")]
                Self::S3(d) => Box::pin(d.presigned_blob_redirect(repo, digest)).await,
                #[cfg(feature = "gcs")]
                Self::Gcs(d) => Box::pin(d.presigned_blob_redirect(repo, digest)).await,
                _ => Ok(None),
            }
        }
    }

    fn mount_blob(
        &self,
        from: &RepositoryName,
        to: &RepositoryName,
        digest: &Digest,
    ) -> impl Future<Output = Result<FileInfo>> + Send {
        dispatch_future!(self, d => d.mount_blob(from, to, digest))
    }

    fn start_upload(
        &self,
        repo: &RepositoryName,
        algorithm: DigestAlgorithm,
    ) -> impl Future<Output = Result<AnyUpload>> + Send {
        dispatch_future!(self, d => d.start_upload(repo, algorithm))
    }

    fn put_upload_chunk<S>(
        &self,
        repo: &RepositoryName,
        id: &UploadId,
        offset: Option<u64>,
        expected_len: Option<u64>,
        body: S,
    ) -> impl Future<Output = Result<AnyUpload>> + Send
    where
        S: Stream<Item = Result<Bytes>> + Send,
    {
        dispatch_future!(self, d => d.put_upload_chunk(repo, id, offset, expected_len, body))
    }

    fn get_upload_progress(
        &self,
        repo: &RepositoryName,
        id: &UploadId,
    ) -> impl Future<Output = Result<AnyUpload>> + Send {
        dispatch_future!(self, d => d.get_upload_progress(repo, id))
    }

    fn abort_upload(
        &self,
        repo: &RepositoryName,
        id: &UploadId,
    ) -> impl Future<Output = Result<()>> + Send {
        dispatch_future!(self, d => d.abort_upload(repo, id))
    }

    fn finish_upload<S>(
        &self,
        repo: &RepositoryName,
        id: &UploadId,
        digest: &Digest,
        expected_len: Option<u64>,
        body: S,
    ) -> impl Future<Output = Result<FileInfo>> + Send
    where
        S: Stream<Item = Result<Bytes>> + Send,
    {
        dispatch_future!(self, d => d.finish_upload(repo, id, digest, expected_len, body))
    }

    fn get_manifest(
        &self,
        repo: &RepositoryName,
        reference: &Reference,
    ) -> impl Future<Output = Result<Manifest>> + Send {
        dispatch_future!(self, d => d.get_manifest(repo, reference))
    }

    fn stat_manifest(
        &self,
        repo: &RepositoryName,
        reference: &Reference,
    ) -> impl Future<Output = Result<ManifestInfo>> + Send {
        dispatch_future!(self, d => d.stat_manifest(repo, reference))
    }

    fn put_manifest(
        &self,
        repo: &RepositoryName,
        reference: &Reference,
        content_type: Option<&str>,
        bytes: Bytes,
    ) -> impl Future<Output = Result<PutManifestOutcome>> + Send {
        dispatch_future!(self, d => d.put_manifest(repo, reference, content_type, bytes))
    }

    fn delete_manifest(
        &self,
        repo: &RepositoryName,
        digest: &Digest,
    ) -> impl Future<Output = Result<()>> + Send {
        dispatch_future!(self, d => d.delete_manifest(repo, digest))
    }

    fn resolve_tag(
        &self,
        repo: &RepositoryName,
        tag: &Tag,
    ) -> impl Future<Output = Result<Digest>> + Send {
        dispatch_future!(self, d => d.resolve_tag(repo, tag))
    }

    fn get_tags(
        &self,
        repo: &RepositoryName,
        n: Option<usize>,
        last: Option<&str>,
    ) -> impl Future<Output = Result<TagList>> + Send {
        dispatch_future!(self, d => d.get_tags(repo, n, last))
    }

    fn tag_manifest(
        &self,
        repo: &RepositoryName,
        tag: &Tag,
        digest: &Digest,
    ) -> impl Future<Output = Result<()>> + Send {
        dispatch_future!(self, d => d.tag_manifest(repo, tag, digest))
    }

    fn untag_manifest(
        &self,
        repo: &RepositoryName,
        tag: &Tag,
    ) -> impl Future<Output = Result<()>> + Send {
        dispatch_future!(self, d => d.untag_manifest(repo, tag))
    }

    fn referrers(
        &self,
        repo: &RepositoryName,
        subject: &Digest,
        artifact_type: Option<&str>,
    ) -> impl Future<Output = Result<Vec<Descriptor>>> + Send {
        dispatch_future!(self, d => d.referrers(repo, subject, artifact_type))
    }
}

/// The lifecycle operations, dispatched like the OCI ones.
impl Lifecycle for AnyDriver {
    fn collect_garbage(
        &self,
        options: &GcOptions,
    ) -> impl Future<Output = Result<GcReport>> + Send {
        dispatch_future!(self, d => d.collect_garbage(options))
    }

    fn expire_uploads(
        &self,
        ttl: std::time::Duration,
        dry_run: bool,
    ) -> impl Future<Output = Result<GcReport>> + Send {
        dispatch_future!(self, d => d.expire_uploads(ttl, dry_run))
    }

    fn repositories(
        &self,
        n: Option<usize>,
        last: Option<&str>,
    ) -> impl Future<Output = Result<RepositoryList>> + Send {
        dispatch_future!(self, d => d.repositories(n, last))
    }

    fn stop_collections(&self) {
        dispatch!(self, d => d.stop_collections())
    }
}

#[cfg(test)]
mod tests {
    use std::mem::size_of_val;

    use futures::stream;

    use super::*;
    use crate::storage::filesystem::FilesystemDriver;
    use crate::storage::inmemory::InMemoryDriver;

    /// `AnyDriver`'s futures hold the largest inline variant's future, and every move copies
    /// them. A variant with huge futures (aws-sdk's request futures inline made them ~7 KB)
    /// would make every driver pay for it: they must stay the size of the largest of the
    /// filesystem and in-memory drivers' futures plus the enum's tag (at most 16 B, with
    /// alignment), not of an `async` wrapper.
    #[tokio::test]
    async fn dispatched_futures_stay_the_size_of_concrete_ones() {
        let repo = RepositoryName::parse("a/b").unwrap();
        let digest = Digest::compute(DigestAlgorithm::Sha256, b"x");
        let dir = tempfile::tempdir().unwrap();
        let fs = FilesystemDriver::open(
            &crate::storage::FilesystemConfig {
                root_directory: dir.path().to_path_buf(),
            },
            EngineOptions::default(),
        )
        .await
        .unwrap();
        let mem = InMemoryDriver::new_in_memory();
        let any = AnyDriver::InMemory(InMemoryDriver::new_in_memory());
        let body = || stream::iter([Ok(Bytes::from_static(b"x"))]);
        let reference = Reference::Digest(digest.clone());
        let sizes = [
            (
                "stat",
                size_of_val(&fs.stat(&repo, &digest)).max(size_of_val(&mem.stat(&repo, &digest))),
                size_of_val(&any.stat(&repo, &digest)),
            ),
            (
                "get_content",
                size_of_val(&fs.get_content(&repo, &digest, None))
                    .max(size_of_val(&mem.get_content(&repo, &digest, None))),
                size_of_val(&any.get_content(&repo, &digest, None)),
            ),
            (
                "get_manifest",
                size_of_val(&fs.get_manifest(&repo, &reference))
                    .max(size_of_val(&mem.get_manifest(&repo, &reference))),
                size_of_val(&any.get_manifest(&repo, &reference)),
            ),
            (
                "put_content",
                size_of_val(&fs.put_content(&repo, &digest, None, body()))
                    .max(size_of_val(&mem.put_content(&repo, &digest, None, body()))),
                size_of_val(&any.put_content(&repo, &digest, None, body())),
            ),
            (
                "blob stream",
                size_of::<<FilesystemDriver as StorageDriver>::BlobStream>()
                    .max(size_of::<<InMemoryDriver as StorageDriver>::BlobStream>()),
                size_of::<AnyBlobStream>(),
            ),
        ];
        for (operation, largest_concrete, dispatched) in sizes {
            eprintln!(
                "{operation}: largest concrete {largest_concrete} B, AnyDriver {dispatched} B"
            );
            assert!(
                dispatched <= largest_concrete + 16,
                "AnyDriver::{operation} future is {dispatched} B, the largest concrete driver's \
                 {largest_concrete} B"
            );
        }
    }
}
