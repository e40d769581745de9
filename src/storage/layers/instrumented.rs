//! [`Instrumented`]: the one place where every backend operation is observed. It wraps the
//! backend where each driver type is assembled (`FilesystemDriver` is
//! `Engine<Instrumented<FilesystemBackend>>`), never inside a backend, and for each call:
//!
//! - enters a `tracing` span `backend` (level `DEBUG`) with the driver, the operation and the
//!   key, so the logs of a request show what it asked of the storage;
//! - fills in the operation and the relative layout key of a backend error
//!   ([`Error::with_context`]), so every error names them without a backend having to, and
//!   none names more (no root directory, no bucket or prefix: keys are relative);
//! - reports the outcome (and the duration, when wanted) to an [`Observer`].
//!
//! # Cost
//!
//! The span's metadata is static (one callsite, the operation a `&'static str` value, no
//! allocation): with `DEBUG` off, as in production, creating it is a check of the
//! callsite's cached interest, and the key is only recorded on a span that is enabled. The default observer, [`Unobserved`],
//! does nothing and asks for no duration, so the clock is not read. The blob stream is
//! wrapped only to name the operation of an error it yields: a `match` per chunk. The
//! dispatch bench (`benches/dispatch-instructions.sh`) counts what is left.
//!
//! # Metrics
//!
//! An [`Observer`] receives one [`Observation`] per call (driver, operation, key class,
//! [`Outcome`], duration): a Prometheus observer holds its counters and histograms (atomics)
//! and is chosen where the driver types are assembled, as `Instrumented`'s second type
//! parameter. [`OperationCounts`] is a small one, counting calls per operation and outcome.

use std::fmt;
use std::future::Future;
use std::ops::Deref;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures::Stream;
use tracing::Instrument;

use super::wrap::{Subject, wrap_calls};
use crate::error::{Error, Result};
use crate::oci::{ByteRange, Digest};
use crate::storage::backend::{Backend, Operation};
use crate::storage::layout::KeyClass;
use crate::storage::presign::PresignBlobReads;

/// How a backend call ended, for metrics.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Outcome {
    /// It succeeded (a read of a missing object included).
    Ok,
    /// It failed with an error of the spec (a blob or upload not there, a request body that
    /// failed): the request's business, not the backend's health.
    Rejected,
    /// The backend failed, and retrying may help (throttling, timeouts).
    Unavailable,
    /// The backend failed.
    Failed,
}

impl Outcome {
    /// `"ok"`, `"rejected"`, `"unavailable"` or `"failed"`.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Ok => "ok",
            Self::Rejected => "rejected",
            Self::Unavailable => "unavailable",
            Self::Failed => "failed",
        }
    }

    fn of<T>(result: &Result<T>) -> Self {
        result.as_ref().map_or_else(Self::of_error, |_| Self::Ok)
    }

    fn of_error(error: &Error) -> Self {
        if error.code().is_some() {
            Self::Rejected
        } else if error.is_retryable() {
            Self::Unavailable
        } else {
            Self::Failed
        }
    }
}

/// One observed backend call.
#[derive(Debug, Clone, Copy)]
pub struct Observation {
    /// The driver's name ([`Backend::NAME`]).
    pub driver: &'static str,
    /// The operation.
    pub operation: Operation,
    /// The class of the key it was about, if it was about one.
    pub class: Option<KeyClass>,
    /// How it ended.
    pub outcome: Outcome,
    /// How long it took, when the observer asked for it ([`Observer::TIMED`]); for a
    /// `read_blob`, until the stream was opened.
    pub elapsed: Option<Duration>,
}

/// Receives an [`Observation`] per backend call of an [`Instrumented`] backend.
pub trait Observer: Clone + fmt::Debug + Send + Sync + 'static {
    /// Whether observations carry their duration (the clock is read twice per call).
    const TIMED: bool;

    /// Whether this observer wants durations now (an observer that may be switched off
    /// answers `false` then, and the clock is not read). [`Self::TIMED`] by default.
    #[inline]
    fn timed(&self) -> bool {
        Self::TIMED
    }

    /// Records one call. Called on the request's task: keep it short (atomics).
    fn observe(&self, observation: &Observation);
}

/// The observer that records nothing (and reads no clock).
#[derive(Debug, Clone, Copy, Default)]
pub struct Unobserved;

impl Observer for Unobserved {
    const TIMED: bool = false;

    #[inline]
    fn observe(&self, _: &Observation) {}
}

/// Calls per operation and outcome, in atomics; clones share the counts.
#[derive(Debug, Clone, Default)]
pub struct OperationCounts(std::sync::Arc<[[AtomicU64; 4]; Operation::ALL.len()]>);

impl OperationCounts {
    /// How many calls of `operation` ended with `outcome`.
    pub fn get(&self, operation: Operation, outcome: Outcome) -> u64 {
        self.0[operation as usize][outcome as usize].load(Ordering::Relaxed)
    }
}

impl Observer for OperationCounts {
    const TIMED: bool = false;

    fn observe(&self, o: &Observation) {
        self.0[o.operation as usize][o.outcome as usize].fetch_add(1, Ordering::Relaxed);
    }
}

/// A backend whose every operation is traced, observed and gives its errors their context
/// (see the module documentation). Dereferences to the backend it wraps.
#[derive(Debug, Clone, Default)]
pub struct Instrumented<B, O = Unobserved> {
    inner: B,
    observer: O,
}

impl<B: Backend> Instrumented<B> {
    /// Instruments `inner`, with no observer.
    pub fn new(inner: B) -> Self {
        Self {
            inner,
            observer: Unobserved,
        }
    }
}

impl<B: Backend, O: Observer> Instrumented<B, O> {
    /// Instruments `inner`, reporting to `observer`.
    pub fn with_observer(inner: B, observer: O) -> Self {
        Self { inner, observer }
    }

    /// The backend wrapped.
    pub fn inner(&self) -> &B {
        &self.inner
    }

    /// The observer.
    pub fn observer(&self) -> &O {
        &self.observer
    }

    /// Runs `call`, the inner backend's `op` about `subject`, in its span; observes it and
    /// gives an error its context.
    async fn run<T>(
        &self,
        op: Operation,
        subject: Subject<'_>,
        call: impl Future<Output = Result<T>>,
    ) -> Result<T> {
        let span = span(B::NAME, op);
        if !span.is_disabled() {
            subject.record(&span);
        }
        let start = self.observer.timed().then(Instant::now);
        let result = call.instrument(span).await;
        self.observer.observe(&Observation {
            driver: B::NAME,
            operation: op,
            class: subject.class(),
            outcome: Outcome::of(&result),
            elapsed: start.map(|start| start.elapsed()),
        });
        result.map_err(|e| e.with_context(op, || subject.key()))
    }
}

impl<B, O> Deref for Instrumented<B, O> {
    type Target = B;

    fn deref(&self) -> &B {
        &self.inner
    }
}

/// The `backend` span of `op`. Its metadata (name, level, field names) is static, the
/// operation a field value (`&'static str`): nothing is allocated, and a disabled span costs
/// a check of the callsite's cached interest.
#[inline]
fn span(driver: &'static str, op: Operation) -> tracing::Span {
    tracing::debug_span!(
        "backend",
        driver,
        operation = op.as_str(),
        key = tracing::field::Empty,
    )
}

/// The blob stream of an [`Instrumented`] backend: the inner stream, whose errors are given
/// the operation `read_blob` and reported to the observer.
#[pin_project::pin_project]
#[derive(Debug)]
pub struct InstrumentedReader<R, O> {
    #[pin]
    inner: R,
    driver: &'static str,
    observer: O,
}

impl<R, O> Stream for InstrumentedReader<R, O>
where
    R: Stream<Item = Result<Bytes>>,
    O: Observer,
{
    type Item = Result<Bytes>;

    #[inline]
    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = self.project();
        match this.inner.poll_next(cx) {
            Poll::Ready(Some(Err(e))) => {
                this.observer.observe(&Observation {
                    driver: this.driver,
                    operation: Operation::ReadBlob,
                    class: Some(KeyClass::Blob),
                    outcome: Outcome::of_error(&e),
                    elapsed: None,
                });
                Poll::Ready(Some(Err(e.with_context(Operation::ReadBlob, || None))))
            }
            other => other,
        }
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        self.inner.size_hint()
    }
}

#[deny(clippy::missing_trait_methods)]
impl<B: Backend, O: Observer> Backend for Instrumented<B, O> {
    type Reader = InstrumentedReader<B::Reader, O>;
    crate::forward_backend!(inner: B;
        NAME, UploadState, capabilities, locate, lock_upload, lock_tag);
    wrap_calls! {
        read, exists, write, stage_record, remove, read_versioned, write_if_version,
        remove_if_version, list, any_under, write_tag, create_tag, blob_size, put_blob, start_upload,
        append_upload, finish_upload, abort_upload
    }

    async fn read_blob(&self, digest: &Digest, range: Option<ByteRange>) -> Result<Self::Reader> {
        let call = self.inner.read_blob(digest, range);
        let inner = self
            .run(Operation::ReadBlob, Subject::Blob(digest), call)
            .await?;
        Ok(InstrumentedReader {
            inner,
            driver: B::NAME,
            observer: self.observer.clone(),
        })
    }
}

impl<B: PresignBlobReads, O: Observer> PresignBlobReads for Instrumented<B, O> {
    wrap_calls!(presign_read_blob);
}

/// Errors carry their context, observers see every call, a blob stream's errors name their
/// operation.
mod lifecycle;
#[cfg(test)]
mod tests;
