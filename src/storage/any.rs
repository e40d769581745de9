//! [`AnyDriver`]: the enum the factory returns. It implements [`StorageDriver`] by static
//! dispatch (a `match`, no `dyn`), and its associated types are enums too, pin-projected,
//! so a blob read through `AnyDriver` streams without boxing.

use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use futures::Stream;

use crate::error::{Error, Result};
use crate::oci::{
    Descriptor, Digest, DigestAlgorithm, RangeRequest, Reference, RepositoryName, Tag,
};
use crate::storage::filesystem::FilesystemDriver;
use crate::storage::inmemory::InMemoryDriver;
#[cfg(feature = "s3")]
use crate::storage::s3::S3Driver;
use crate::storage::{
    BlobRead, EngineOptions, FileInfo, Manifest, ManifestInfo, PutManifestOutcome, StorageConfig,
    StorageDriver, StorageType, TagList, UploadHandle, UploadId, UploadProgress,
};

/// One of the drivers compiled into this build, chosen at run time from a [`StorageConfig`].
#[derive(Debug)]
#[non_exhaustive]
pub enum AnyDriver {
    /// Local filesystem.
    Filesystem(FilesystemDriver),
    /// Process memory.
    InMemory(InMemoryDriver),
    /// S3-compatible object storage.
    #[cfg(feature = "s3")]
    S3(S3Driver),
}

/// The blob stream of an [`AnyDriver`].
#[pin_project::pin_project(project = AnyBlobStreamProj)]
#[derive(Debug)]
pub enum AnyBlobStream {
    /// From the filesystem driver.
    Filesystem(#[pin] <FilesystemDriver as StorageDriver>::BlobStream),
    /// From the in-memory driver.
    InMemory(#[pin] <InMemoryDriver as StorageDriver>::BlobStream),
    /// From the S3 driver.
    #[cfg(feature = "s3")]
    S3(#[pin] <S3Driver as StorageDriver>::BlobStream),
}

impl Stream for AnyBlobStream {
    type Item = Result<Bytes>;

    #[inline]
    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        match self.project() {
            AnyBlobStreamProj::Filesystem(s) => s.poll_next(cx),
            AnyBlobStreamProj::InMemory(s) => s.poll_next(cx),
            #[cfg(feature = "s3")]
            AnyBlobStreamProj::S3(s) => s.poll_next(cx),
        }
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        match self {
            Self::Filesystem(s) => s.size_hint(),
            Self::InMemory(s) => s.size_hint(),
            #[cfg(feature = "s3")]
            Self::S3(s) => s.size_hint(),
        }
    }
}

/// The upload handle of an [`AnyDriver`].
#[derive(Debug)]
pub enum AnyUpload {
    /// From the filesystem driver.
    Filesystem(<FilesystemDriver as StorageDriver>::Upload),
    /// From the in-memory driver.
    InMemory(<InMemoryDriver as StorageDriver>::Upload),
    /// From the S3 driver.
    #[cfg(feature = "s3")]
    S3(<S3Driver as StorageDriver>::Upload),
}

impl UploadHandle for AnyUpload {
    fn progress(&self) -> UploadProgress {
        match self {
            Self::Filesystem(u) => u.progress(),
            Self::InMemory(u) => u.progress(),
            #[cfg(feature = "s3")]
            Self::S3(u) => u.progress(),
        }
    }
}

/// How a concrete driver's associated types become the enums'.
trait Variant: StorageDriver {
    fn any_stream(s: Self::BlobStream) -> AnyBlobStream;
    fn any_upload(u: Self::Upload) -> AnyUpload;
}

macro_rules! variant {
    ($driver:ty, $name:ident) => {
        impl Variant for $driver {
            #[inline]
            fn any_stream(s: Self::BlobStream) -> AnyBlobStream {
                AnyBlobStream::$name(s)
            }
            #[inline]
            fn any_upload(u: Self::Upload) -> AnyUpload {
                AnyUpload::$name(u)
            }
        }
    };
}
variant!(FilesystemDriver, Filesystem);
variant!(InMemoryDriver, InMemory);
#[cfg(feature = "s3")]
variant!(S3Driver, S3);

#[inline]
fn wrap_upload<D: Variant>(_: &D, r: Result<D::Upload>) -> Result<AnyUpload> {
    r.map(D::any_upload)
}

#[inline]
fn wrap_read<D: Variant>(
    _: &D,
    r: Result<BlobRead<D::BlobStream>>,
) -> Result<BlobRead<AnyBlobStream>> {
    r.map(|b| BlobRead {
        info: b.info,
        range: b.range,
        stream: D::any_stream(b.stream),
    })
}

/// Runs `$body` with `$d` bound to the concrete driver of whichever variant `$self` is.
macro_rules! dispatch {
    ($self:expr, $d:ident => $body:expr) => {
        match $self {
            AnyDriver::Filesystem($d) => $body,
            AnyDriver::InMemory($d) => $body,
            #[cfg(feature = "s3")]
            AnyDriver::S3($d) => $body,
        }
    };
}

impl AnyDriver {
    /// The factory (seed §3): builds the driver `config` selects.
    ///
    /// Fails with a configuration error naming the field when the configuration is invalid,
    /// the driver is unknown, or its cargo feature is not compiled in.
    pub async fn from_config(config: &StorageConfig) -> Result<Self> {
        config.validate()?;
        let options = EngineOptions {
            max_manifest_size: config.max_manifest_size,
        };
        match config.storage_type {
            StorageType::Filesystem => Ok(Self::Filesystem(
                FilesystemDriver::open(&config.filesystem, options).await?,
            )),
            StorageType::Inmemory => Ok(Self::InMemory(crate::storage::Engine::new(
                Default::default(),
                options,
            ))),
            #[cfg(feature = "s3")]
            StorageType::S3 => {
                let s3 = config.s3.as_ref().ok_or(Error::Config {
                    field: "s3.bucket",
                    message: "missing".into(),
                })?;
                Ok(Self::S3(S3Driver::connect(s3, options).await?))
            }
            #[cfg(not(feature = "s3"))]
            StorageType::S3 => Err(Error::Config {
                field: "type",
                message: "the s3 driver is not compiled in (enable the `s3` cargo feature)".into(),
            }),
            StorageType::Gcs => Err(Error::Config {
                field: "type",
                message: "the gcs driver is reserved but not implemented yet".into(),
            }),
        }
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

    async fn stat(&self, repo: &RepositoryName, digest: &Digest) -> Result<FileInfo> {
        dispatch!(self, d => d.stat(repo, digest).await)
    }

    async fn get_content(
        &self,
        repo: &RepositoryName,
        digest: &Digest,
        range: Option<RangeRequest>,
    ) -> Result<BlobRead<AnyBlobStream>> {
        dispatch!(self, d => wrap_read(d, d.get_content(repo, digest, range).await))
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
        dispatch!(self, d => d.put_content(repo, digest, expected_size, body).await)
    }

    async fn delete(&self, repo: &RepositoryName, digest: &Digest) -> Result<()> {
        dispatch!(self, d => d.delete(repo, digest).await)
    }

    async fn mount_blob(
        &self,
        from: &RepositoryName,
        to: &RepositoryName,
        digest: &Digest,
    ) -> Result<FileInfo> {
        dispatch!(self, d => d.mount_blob(from, to, digest).await)
    }

    async fn start_upload(
        &self,
        repo: &RepositoryName,
        algorithm: DigestAlgorithm,
    ) -> Result<AnyUpload> {
        dispatch!(self, d => wrap_upload(d, d.start_upload(repo, algorithm).await))
    }

    async fn put_upload_chunk<S>(
        &self,
        repo: &RepositoryName,
        id: &UploadId,
        offset: Option<u64>,
        expected_len: Option<u64>,
        body: S,
    ) -> Result<AnyUpload>
    where
        S: Stream<Item = Result<Bytes>> + Send,
    {
        dispatch!(self, d => wrap_upload(d, d.put_upload_chunk(repo, id, offset, expected_len, body).await))
    }

    async fn get_upload_progress(&self, repo: &RepositoryName, id: &UploadId) -> Result<AnyUpload> {
        dispatch!(self, d => wrap_upload(d, d.get_upload_progress(repo, id).await))
    }

    async fn abort_upload(&self, repo: &RepositoryName, id: &UploadId) -> Result<()> {
        dispatch!(self, d => d.abort_upload(repo, id).await)
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
        dispatch!(self, d => d.finish_upload(repo, id, digest, expected_len, body).await)
    }

    async fn get_manifest(&self, repo: &RepositoryName, reference: &Reference) -> Result<Manifest> {
        dispatch!(self, d => d.get_manifest(repo, reference).await)
    }

    async fn stat_manifest(
        &self,
        repo: &RepositoryName,
        reference: &Reference,
    ) -> Result<ManifestInfo> {
        dispatch!(self, d => d.stat_manifest(repo, reference).await)
    }

    async fn put_manifest(
        &self,
        repo: &RepositoryName,
        reference: &Reference,
        content_type: Option<&str>,
        bytes: Bytes,
    ) -> Result<PutManifestOutcome> {
        dispatch!(self, d => d.put_manifest(repo, reference, content_type, bytes).await)
    }

    async fn delete_manifest(&self, repo: &RepositoryName, digest: &Digest) -> Result<()> {
        dispatch!(self, d => d.delete_manifest(repo, digest).await)
    }

    async fn resolve_tag(&self, repo: &RepositoryName, tag: &Tag) -> Result<Digest> {
        dispatch!(self, d => d.resolve_tag(repo, tag).await)
    }

    async fn get_tags(
        &self,
        repo: &RepositoryName,
        n: Option<usize>,
        last: Option<&str>,
    ) -> Result<TagList> {
        dispatch!(self, d => d.get_tags(repo, n, last).await)
    }

    async fn tag_manifest(&self, repo: &RepositoryName, tag: &Tag, digest: &Digest) -> Result<()> {
        dispatch!(self, d => d.tag_manifest(repo, tag, digest).await)
    }

    async fn untag_manifest(&self, repo: &RepositoryName, tag: &Tag) -> Result<()> {
        dispatch!(self, d => d.untag_manifest(repo, tag).await)
    }

    async fn referrers(
        &self,
        repo: &RepositoryName,
        subject: &Digest,
        artifact_type: Option<&str>,
    ) -> Result<Vec<Descriptor>> {
        dispatch!(self, d => d.referrers(repo, subject, artifact_type).await)
    }
}

#[cfg(test)]
mod tests {
    use std::mem::size_of_val;

    use futures::stream;

    use super::*;

    /// `AnyDriver`'s futures hold the largest variant's future, and every move copies them.
    /// A variant with huge futures (aws-sdk's request futures inline made them ~7 KB) would
    /// make every driver pay for it: they must stay the size of the largest concrete driver's
    /// plus the enum's own small overhead.
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
        ];
        for (operation, largest_concrete, dispatched) in sizes {
            eprintln!(
                "{operation}: largest concrete {largest_concrete} B, AnyDriver {dispatched} B"
            );
            assert!(
                dispatched <= largest_concrete + 256,
                "AnyDriver::{operation} future is {dispatched} B, the largest concrete driver's \
                 {largest_concrete} B"
            );
        }
    }
}
