//! [`FaultInjection`]: a layer that makes chosen backend operations fail, for tests (feature
//! `testsuite`). Faults a real store cannot produce on demand — a response lost after the
//! operation went through, a link write that fails once, a blob stream cut midway — are
//! planned on a shared [`Faults`] handle, matched by operation (and key class), and consumed
//! as they fire; with no fault planned the layer passes everything through unchanged (the
//! contract suite checks that it does).
//!
//! ```
//! use marina_distribution::storage::backend::Operation;
//! use marina_distribution::storage::inmemory::InMemoryBackend;
//! use marina_distribution::storage::layers::{Fault, FaultInjection};
//! use marina_distribution::storage::layout::KeyClass;
//!
//! let layer = FaultInjection::new(InMemoryBackend::default());
//! // The next write of a repository link fails (before anything is written).
//! layer.faults().plan(Fault::before(Operation::Write).class(KeyClass::Link));
//! // The next finished upload is stored, then reported as failed (a lost response).
//! layer.faults().plan(Fault::after(Operation::FinishUpload));
//! // The next two blob streams fail, retryably, after 1000 bytes.
//! layer.faults().plan(Fault::cut_stream(1000).times(2));
//! ```

use std::pin::Pin;
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll};

use bytes::Bytes;
use futures::Stream;

use super::wrap::{Subject, wrap_calls};
use crate::error::{Error, Result};
use crate::oci::{ByteRange, Digest};
use crate::storage::backend::{Backend, Operation};
use crate::storage::layout::{Key, KeyClass};
use crate::storage::lifecycle::LifecycleBackend;
use crate::storage::presign::PresignBlobReads;

/// When a planned fault fires.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum When {
    /// Instead of the operation.
    Before,
    /// After the operation succeeded: its effect stays, its answer is an error.
    After,
    /// `read_blob` succeeds, and its stream fails after this many bytes.
    CutStream(u64),
}

/// One planned fault (see [`Faults::plan`]).
#[derive(Debug, Clone)]
pub struct Fault {
    operation: Operation,
    class: Option<KeyClass>,
    when: When,
    times: usize,
    retryable: bool,
}

impl Fault {
    /// `operation` fails instead of running, once.
    pub fn before(operation: Operation) -> Self {
        Self::new(operation, When::Before)
    }

    /// `operation` runs, then reports a failure (a response lost on the way back), once.
    pub fn after(operation: Operation) -> Self {
        Self::new(operation, When::After)
    }

    /// A blob stream opened by `read_blob` fails, retryably, once it has yielded `bytes`
    /// bytes (a connection dropped midway), once.
    pub fn cut_stream(bytes: u64) -> Self {
        Self::new(Operation::ReadBlob, When::CutStream(bytes)).retryable()
    }

    fn new(operation: Operation, when: When) -> Self {
        Self {
            operation,
            class: None,
            when,
            times: 1,
            retryable: false,
        }
    }

    /// Only for keys of `class`.
    pub fn class(mut self, class: KeyClass) -> Self {
        self.class = Some(class);
        self
    }

    /// Fires `times` times instead of once.
    pub fn times(mut self, times: usize) -> Self {
        self.times = times;
        self
    }

    /// The error says retrying may help (throttling, a dropped connection).
    pub fn retryable(mut self) -> Self {
        self.retryable = true;
        self
    }

    /// The error says retrying will not help (the default, except for stream cuts).
    pub fn permanent(mut self) -> Self {
        self.retryable = false;
        self
    }
}

/// The faults planned for a [`FaultInjection`] layer; clones share them.
#[derive(Debug, Clone, Default)]
pub struct Faults(Arc<Mutex<Vec<Fault>>>);

impl Faults {
    /// Plans `fault`. Faults fire in the order they were planned.
    pub fn plan(&self, fault: Fault) {
        self.lock().push(fault);
    }

    /// How many planned faults have not fired (all their times) yet.
    pub fn pending(&self) -> usize {
        self.lock().len()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<Fault>> {
        self.0.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Consumes one firing of the first fault planned for `operation` on `class` at `when`
    /// (for a stream cut, at any length), if any.
    fn fire(&self, operation: Operation, class: Option<KeyClass>, when: When) -> Option<Fault> {
        let mut faults = self.lock();
        let at = faults.iter().position(|f| {
            f.operation == operation
                && f.class.is_none_or(|c| Some(c) == class)
                && match (f.when, when) {
                    (When::CutStream(_), When::CutStream(_)) => true,
                    (planned, asked) => planned == asked,
                }
        })?;
        let fault = faults[at].clone();
        faults[at].times -= 1;
        if faults[at].times == 0 {
            faults.remove(at);
        }
        Some(fault)
    }
}

/// The error a fault answers with.
fn injected(driver: &'static str, fault: &Fault) -> Error {
    Error::Backend {
        driver,
        operation: None,
        key: None,
        message: "injected fault".into(),
        retryable: fault.retryable,
        source: None,
    }
}

/// A backend whose operations fail as planned on its [`Faults`] (see the module
/// documentation). Dereferences to the backend it wraps.
#[derive(Debug, Default)]
pub struct FaultInjection<B> {
    inner: B,
    faults: Faults,
}

impl<B: Backend> FaultInjection<B> {
    /// Wraps `inner`, with no fault planned.
    pub fn new(inner: B) -> Self {
        Self {
            inner,
            faults: Faults::default(),
        }
    }

    /// The planned faults (a handle shared with the layer).
    pub fn faults(&self) -> &Faults {
        &self.faults
    }

    /// Runs `call`, the inner backend's `op` about `subject` (on keys of its class), with the
    /// faults planned.
    async fn run<T>(
        &self,
        op: Operation,
        subject: Subject<'_>,
        call: impl Future<Output = Result<T>>,
    ) -> Result<T> {
        let class = subject.class();
        if let Some(fault) = self.faults.fire(op, class, When::Before) {
            return Err(injected(B::NAME, &fault));
        }
        let out = call.await?;
        match self.faults.fire(op, class, When::After) {
            Some(fault) => Err(injected(B::NAME, &fault)),
            None => Ok(out),
        }
    }
}

impl<B> std::ops::Deref for FaultInjection<B> {
    type Target = B;

    fn deref(&self) -> &B {
        &self.inner
    }
}

/// The blob stream of a [`FaultInjection`] backend: the inner stream, cut where planned.
#[pin_project::pin_project]
#[derive(Debug)]
pub struct FaultyReader<R> {
    #[pin]
    inner: R,
    /// Bytes left before the cut, and its error; `None`: no cut planned (or it happened).
    cut: Option<(u64, Error)>,
    ended: bool,
}

impl<R: Stream<Item = Result<Bytes>>> Stream for FaultyReader<R> {
    type Item = Result<Bytes>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = self.project();
        if *this.ended {
            return Poll::Ready(None);
        }
        if let Some((0, _)) = this.cut {
            *this.ended = true;
            return Poll::Ready(this.cut.take().map(|(_, e)| Err(e)));
        }
        match this.inner.poll_next(cx) {
            Poll::Ready(Some(Ok(mut chunk))) => {
                if let Some((left, _)) = this.cut {
                    if chunk.len() as u64 > *left {
                        chunk.truncate(*left as usize);
                    }
                    *left -= chunk.len() as u64;
                }
                Poll::Ready(Some(Ok(chunk)))
            }
            other => other,
        }
    }
}

#[deny(clippy::missing_trait_methods)]
impl<B: Backend> Backend for FaultInjection<B> {
    type Reader = FaultyReader<B::Reader>;
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
        let cut = self
            .faults
            .fire(
                Operation::ReadBlob,
                Some(KeyClass::Blob),
                When::CutStream(0),
            )
            .map(|fault| match fault.when {
                When::CutStream(after) => (after, injected(B::NAME, &fault)),
                _ => unreachable!("only stream cuts match a stream cut"),
            });
        Ok(FaultyReader {
            inner,
            cut,
            ended: false,
        })
    }
}

impl<B: PresignBlobReads> PresignBlobReads for FaultInjection<B> {
    wrap_calls!(presign_read_blob);
}

/// The lifecycle primitives, failing as planned like the [`Backend`] operations.
#[deny(clippy::missing_trait_methods)]
impl<B: LifecycleBackend> LifecycleBackend for FaultInjection<B> {
    wrap_calls! {
        list_dirs, scan, scan_blobs, remove_blobs, expire_upload_storage, tidy
    }

    async fn remove_objects(&self, keys: &[Key]) -> Result<()> {
        let call = self.inner.remove_objects(keys);
        // Faults planned for a class fire on the class of the batch's first key.
        let subject = Subject::Class(keys.first().map(Key::class));
        self.run(Operation::RemoveObjects, subject, call).await
    }
}
