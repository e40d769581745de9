//! [`Resumable`]: blob reads that survive a dropped connection, written once over any
//! backend's ranged [`read_blob`](Backend::read_blob), for object stores (S3 today; a GCS
//! backend gets it the same way, by being assembled as `Resumable<GcsBackend>`).
//!
//! When a blob stream fails midway with a *retryable* error (the connection dropped, the
//! store timed out), [`ResumableReader`] opens the blob again at the first byte it has not
//! delivered yet, with a ranged read, and carries on: the caller sees one uninterrupted
//! stream. It does so at most `budget` times per read (default [`DEFAULT_BUDGET`]), after a
//! short growing pause each time; then, or on an error that is not retryable, the stream
//! ends with an error, retryable when the interruptions were (a clean 503 for a client that
//! had not received the headers yet; otherwise a truncated response, as any proxy gives).
//!
//! # Why this is correct
//!
//! Blobs are content-addressed and immutable: the object at `blobs/<alg>/<hex>` only ever
//! holds the bytes whose digest is `<alg>:<hex>` (it is written whole, once, after the digest
//! was verified; a second push of the same blob writes the same bytes). So the bytes from
//! offset `n` of a reopened read are exactly the bytes from `n` the first read would have
//! given: no `If-Match` on an ETag, no check of the size is needed to stitch the two reads
//! together. The one thing that can change is existence: a blob deleted (garbage-collected)
//! between the two reads makes the reopen fail with `BLOB_UNKNOWN`, which ends the stream.
//!
//! # Cost
//!
//! On the hot path (no interruption) the reader is the inner stream plus a little state: the
//! blob's identity is kept as its raw hash bytes (no allocation), the backend as an `Arc`
//! (one reference count per read), and a `match` per chunk. Only an interruption allocates:
//! the reopen future of the inner backend cannot be named (it is the backend's
//! `impl Future`), so it is boxed, on that rare path alone.

use std::fmt;
use std::future::Future;
use std::ops::Deref;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use futures::Stream;

use crate::error::{Error, ErrorChain, Result};
use crate::oci::{ByteRange, Digest, DigestAlgorithm};
use crate::storage::backend::{Backend, Operation};
use crate::storage::layout;
use crate::storage::presign::{PresignBlobReads, PresignedRead};

/// Interruptions a blob read survives by default.
pub const DEFAULT_BUDGET: u32 = 5;
/// The pause before the first reopen; each further one doubles it.
pub const DEFAULT_FIRST_PAUSE: Duration = Duration::from_millis(100);

/// A backend whose blob reads resume after a retryable failure (see the module
/// documentation). Dereferences to the backend it wraps.
#[derive(Debug)]
pub struct Resumable<B> {
    inner: Arc<B>,
    budget: u32,
    first_pause: Duration,
}

impl<B: Backend> Resumable<B> {
    /// Wraps `inner` with the default budget and pauses.
    pub fn new(inner: B) -> Self {
        Self {
            inner: Arc::new(inner),
            budget: DEFAULT_BUDGET,
            first_pause: DEFAULT_FIRST_PAUSE,
        }
    }

    /// Survive at most `budget` interruptions per read, pausing `first_pause` before the
    /// first reopen and twice as long before each further one.
    pub fn with_budget(mut self, budget: u32, first_pause: Duration) -> Self {
        self.budget = budget;
        self.first_pause = first_pause;
        self
    }
}

impl<B: Default + Backend> Default for Resumable<B> {
    fn default() -> Self {
        Self::new(B::default())
    }
}

impl<B> Deref for Resumable<B> {
    type Target = B;

    fn deref(&self) -> &B {
        &self.inner
    }
}

/// A blob's digest kept as raw bytes: copied into a reader without allocating.
#[derive(Clone, Copy)]
struct BlobId {
    algorithm: DigestAlgorithm,
    hash: [u8; 64],
}

impl BlobId {
    fn new(digest: &Digest) -> Self {
        let mut hash = [0; 64];
        let len = digest.algorithm().hex_len() / 2;
        // A valid digest's hex always decodes; a failure would only leave zeros.
        let _ = hex::decode_to_slice(digest.hex(), &mut hash[..len]);
        Self {
            algorithm: digest.algorithm(),
            hash,
        }
    }

    fn digest(&self) -> Result<Digest> {
        let len = self.algorithm.hex_len() / 2;
        let text = [
            self.algorithm.as_str(),
            ":",
            &hex::encode(&self.hash[..len]),
        ]
        .concat();
        Digest::parse(&text)
    }
}

impl fmt::Debug for BlobId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let len = self.algorithm.hex_len() / 2;
        write!(f, "{}:{}", self.algorithm, hex::encode(&self.hash[..len]))
    }
}

/// A reopen in flight: the backend's (unnameable) future, boxed on this rare path. Yields
/// `None` when nothing was left to read.
type Reopen<R> = Pin<Box<dyn Future<Output = Result<Option<R>>> + Send>>;

/// The blob stream of a [`Resumable`] backend (see the module documentation).
#[pin_project::pin_project]
pub struct ResumableReader<B: Backend> {
    #[pin]
    stream: B::Reader,
    reopening: Option<Reopen<B::Reader>>,
    backend: Arc<B>,
    blob: BlobId,
    /// The offset of the next byte to deliver.
    next: u64,
    /// The last byte to deliver, when the read is ranged.
    last: Option<u64>,
    /// Reopens made so far, and allowed.
    reopens: u32,
    budget: u32,
    first_pause: Duration,
    ended: bool,
}

impl<B: Backend> fmt::Debug for ResumableReader<B> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ResumableReader")
            .field("blob", &self.blob)
            .field("next", &self.next)
            .field("last", &self.last)
            .field("reopens", &self.reopens)
            .finish_non_exhaustive()
    }
}

/// Opens `blob` again from byte `next` (to `last`, or to its end), after `pause`.
async fn reopen<B: Backend>(
    backend: Arc<B>,
    blob: BlobId,
    next: u64,
    last: Option<u64>,
    pause: Duration,
) -> Result<Option<B::Reader>> {
    tokio::time::sleep(pause).await;
    let digest = blob.digest()?;
    let last = match last {
        Some(last) => last,
        None => match backend.blob_size(&digest).await? {
            Some(size) => size.saturating_sub(1),
            None => return Err(Error::BlobUnknown(digest)),
        },
    };
    if next > last {
        return Ok(None);
    }
    let range = ByteRange {
        start: next,
        end: last,
    };
    backend.read_blob(&digest, Some(range)).await.map(Some)
}

impl<B: Backend> ResumableReader<B> {
    /// The error ending a read that ran out of budget: retryable, naming what was delivered;
    /// the last interruption as its source.
    fn exhausted(&self, last: Error) -> Error {
        let key = BlobId::digest(&self.blob)
            .ok()
            .map(|d| layout::blob_data(&d));
        Error::Backend {
            driver: B::NAME,
            operation: Some(Operation::ReadBlob),
            key,
            message: format!(
                "blob read cut {} time(s); gave up at byte {}",
                self.reopens + 1,
                self.next
            ),
            retryable: true,
            source: Some(Box::new(last)),
        }
    }
}

impl<B: Backend> Stream for ResumableReader<B> {
    type Item = Result<Bytes>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        loop {
            let mut this = self.as_mut().project();
            if *this.ended {
                return Poll::Ready(None);
            }
            if let Some(reopening) = this.reopening.as_mut() {
                let reopened = match reopening.as_mut().poll(cx) {
                    Poll::Pending => return Poll::Pending,
                    Poll::Ready(reopened) => reopened,
                };
                *this.reopening = None;
                match reopened {
                    Ok(Some(stream)) => this.stream.set(stream),
                    Ok(None) => {
                        *this.ended = true;
                        return Poll::Ready(None);
                    }
                    Err(e) => {
                        if let Some(item) = self.as_mut().interrupted(e) {
                            return Poll::Ready(Some(item));
                        }
                    }
                }
                continue;
            }
            match this.stream.poll_next(cx) {
                Poll::Ready(Some(Ok(chunk))) => {
                    *this.next += chunk.len() as u64;
                    return Poll::Ready(Some(Ok(chunk)));
                }
                Poll::Ready(Some(Err(e))) => {
                    if let Some(item) = self.as_mut().interrupted(e) {
                        return Poll::Ready(Some(item));
                    }
                }
                other => return other,
            }
        }
    }
}

impl<B: Backend> ResumableReader<B> {
    /// After the stream (or a reopen) failed with `e`: starts a reopen and returns `None`,
    /// or ends the stream with the error to yield.
    fn interrupted(self: Pin<&mut Self>, e: Error) -> Option<Result<Bytes>> {
        if !e.is_retryable() {
            *self.project().ended = true;
            return Some(Err(e));
        }
        if self.reopens >= self.budget {
            let error = self.exhausted(e);
            *self.project().ended = true;
            return Some(Err(error));
        }
        let this = self.project();
        let pause = this
            .first_pause
            .saturating_mul(1 << (*this.reopens).min(16));
        *this.reopens += 1;
        tracing::warn!(blob = ?this.blob, at = *this.next, attempt = *this.reopens, error = %ErrorChain(&e),
            "blob read interrupted; reopening where it stopped");
        *this.reopening = Some(Box::pin(reopen(
            Arc::clone(this.backend),
            *this.blob,
            *this.next,
            *this.last,
            pause,
        )));
        None
    }
}

#[deny(clippy::missing_trait_methods)]
impl<B: Backend> Backend for Resumable<B> {
    type Reader = ResumableReader<B>;
    crate::forward_backend!(inner: B;
        NAME, UploadState, capabilities, locate, read, exists, write, stage_record, remove,
        read_versioned, write_if_version, remove_if_version, list, any_under, write_tag, create_tag, blob_size,
        put_blob, start_upload, append_upload, finish_upload, abort_upload, lock_upload, lock_tag);

    async fn read_blob(&self, digest: &Digest, range: Option<ByteRange>) -> Result<Self::Reader> {
        let stream = self.inner.read_blob(digest, range).await?;
        Ok(ResumableReader {
            stream,
            reopening: None,
            backend: Arc::clone(&self.inner),
            blob: BlobId::new(digest),
            next: range.map_or(0, |r| r.start),
            last: range.map(|r| r.end),
            reopens: 0,
            budget: self.budget,
            first_pause: self.first_pause,
            ended: false,
        })
    }
}

impl<B: PresignBlobReads> PresignBlobReads for Resumable<B> {
    fn presign_read_blob(
        &self,
        digest: &Digest,
        expires_in: Duration,
    ) -> impl Future<Output = Result<PresignedRead>> + Send {
        self.inner.presign_read_blob(digest, expires_in)
    }
}

/// Only blob reads resume: the lifecycle primitives are the inner backend's.
#[deny(clippy::missing_trait_methods)]
impl<B: crate::storage::lifecycle::LifecycleBackend> crate::storage::lifecycle::LifecycleBackend
    for Resumable<B>
{
    crate::forward_lifecycle_backend!(inner: B;
        list_dirs, scan, scan_blobs, remove_objects, remove_blobs, expire_upload_storage, tidy);
}

#[cfg(test)]
mod tests;
