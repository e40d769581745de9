//! [`AnyDriver`]: the enum the factory returns. It implements [`StorageDriver`] by static
//! dispatch (a `match`, no `dyn`), and its associated types are enums too, pin-projected,
//! so a blob read through `AnyDriver` streams without boxing.
//!
//! Each operation returns the chosen driver's own future inside a small enum
//! ([`Dispatched`]), not an `async` wrapper around it: a wrapper holds the call's arguments
//! a second time, and every move of the future (into a task, into `block_on`) copies it.
//! The filesystem and in-memory futures are held inline, so `AnyDriver`'s futures are the
//! size of the largest of those plus a tag, and those drivers never box. The S3 variant's
//! futures and streams are larger and are put on the heap, once per operation (next to a
//! network round trip), so that they do not make every other variant's larger.

use std::future::Future;
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
    BlobRead, BlobRedirect, EngineOptions, FileInfo, Manifest, ManifestInfo, PutManifestOutcome,
    StorageConfig, StorageDriver, StorageType, TagList, UploadHandle, UploadId, UploadProgress,
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
    /// From the S3 driver. On the heap (one allocation per read, next to a network round
    /// trip) so that its larger state does not grow every variant's.
    #[cfg(feature = "s3")]
    S3(#[pin] Pin<Box<<S3Driver as StorageDriver>::BlobStream>>),
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

/// Implements [`VariantStream`] and [`VariantUpload`] for a driver's associated types;
/// `$place` puts its stream in the enum (`Box::pin` for a variant whose stream is much
/// larger than the others').
macro_rules! variant {
    ($driver:ty, $name:ident) => {
        variant!($driver, $name, std::convert::identity);
    };
    ($driver:ty, $name:ident, $place:expr) => {
        impl VariantStream for <$driver as StorageDriver>::BlobStream {
            #[inline]
            fn into_any_stream(self) -> AnyBlobStream {
                AnyBlobStream::$name($place(self))
            }
        }
        impl VariantUpload for <$driver as StorageDriver>::Upload {
            #[inline]
            fn into_any_upload(self) -> AnyUpload {
                AnyUpload::$name(self)
            }
        }
    };
}
variant!(FilesystemDriver, Filesystem);
variant!(InMemoryDriver, InMemory);
#[cfg(feature = "s3")]
variant!(S3Driver, S3, Box::pin);

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

/// The future of an operation dispatched to one variant: the concrete driver's future itself
/// (the S3 driver's boxed) plus a tag; its output becomes `T` with [`IntoAny`] when ready.
#[pin_project::pin_project(project = DispatchedProj)]
enum Dispatched<T, F, M, S> {
    Filesystem(#[pin] F),
    InMemory(#[pin] M),
    #[cfg_attr(not(feature = "s3"), allow(dead_code))]
    S3(#[pin] S),
    /// Never built: only names `T`.
    #[allow(dead_code)]
    Output(
        std::convert::Infallible,
        std::marker::PhantomData<fn() -> T>,
    ),
}

/// What the S3 slot of [`Dispatched`] holds: the S3 driver's (boxed) future, or, in a build
/// without it, `Infallible`.
trait S3Slot<T> {
    fn poll_slot(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<T>;
}

#[cfg(feature = "s3")]
impl<T, S: Future<Output: IntoAny<T>>> S3Slot<T> for S {
    #[inline]
    fn poll_slot(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<T> {
        self.poll(cx).map(IntoAny::into_any)
    }
}

#[cfg(not(feature = "s3"))]
impl<T> S3Slot<T> for std::convert::Infallible {
    fn poll_slot(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<T> {
        match *self.get_mut() {}
    }
}

/// A variant's result turned into `AnyDriver`'s: the identity, or wrapping a variant's
/// associated type (its blob stream, its upload) in the enum.
trait IntoAny<T> {
    fn into_any(self) -> T;
}

impl<T> IntoAny<T> for T {
    #[inline]
    fn into_any(self) -> T {
        self
    }
}

/// A variant's blob stream (implemented by `variant!`).
trait VariantStream {
    fn into_any_stream(self) -> AnyBlobStream;
}

/// A variant's upload handle (implemented by `variant!`).
trait VariantUpload {
    fn into_any_upload(self) -> AnyUpload;
}

impl<U: VariantUpload> IntoAny<Result<AnyUpload>> for Result<U> {
    #[inline]
    fn into_any(self) -> Result<AnyUpload> {
        self.map(U::into_any_upload)
    }
}

impl<S: VariantStream> IntoAny<Result<BlobRead<AnyBlobStream>>> for Result<BlobRead<S>> {
    #[inline]
    fn into_any(self) -> Result<BlobRead<AnyBlobStream>> {
        self.map(|b| BlobRead {
            info: b.info,
            range: b.range,
            stream: b.stream.into_any_stream(),
        })
    }
}

impl<T, F, M, S> Future for Dispatched<T, F, M, S>
where
    F: Future<Output: IntoAny<T>>,
    M: Future<Output: IntoAny<T>>,
    S: S3Slot<T>,
{
    type Output = T;

    #[inline]
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<T> {
        match self.project() {
            DispatchedProj::Filesystem(f) => f.poll(cx).map(IntoAny::into_any),
            DispatchedProj::InMemory(f) => f.poll(cx).map(IntoAny::into_any),
            DispatchedProj::S3(f) => f.poll_slot(cx),
            DispatchedProj::Output(never, _) => match *never {},
        }
    }
}

/// The fourth type of [`Dispatched`]: see [`S3Slot`].
#[cfg(feature = "s3")]
macro_rules! s3_future {
    () => { Pin<Box<_>> };
}
#[cfg(not(feature = "s3"))]
macro_rules! s3_future {
    () => {
        std::convert::Infallible
    };
}

/// Like [`dispatch!`], for a future: `$body` is the concrete driver's future, returned
/// without an `async` wrapper.
macro_rules! dispatch_future {
    ($self:expr, $d:ident => $body:expr) => {{
        let future: Dispatched<_, _, _, s3_future!()> = match $self {
            AnyDriver::Filesystem($d) => Dispatched::Filesystem($body),
            AnyDriver::InMemory($d) => Dispatched::InMemory($body),
            #[cfg(feature = "s3")]
            AnyDriver::S3($d) => Dispatched::S3(Box::pin($body)),
        };
        future
    }};
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
            cache: config.cache.clone(),
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

    fn blob_redirect(
        &self,
        repo: &RepositoryName,
        digest: &Digest,
    ) -> impl Future<Output = Result<Option<BlobRedirect>>> + Send {
        dispatch_future!(self, d => d.blob_redirect(repo, digest))
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

#[cfg(test)]
mod tests {
    use std::mem::size_of_val;

    use futures::stream;

    use super::*;

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
