//! [`FilesystemReader`]: the blob byte stream.
//!
//! Reads run on Tokio's blocking pool in large chunks ([`READ_CHUNK`]), straight into a
//! freshly allocated buffer that is handed out as [`Bytes`] without another copy. The next
//! chunk is read ahead while the consumer handles the current one, so disk and network
//! overlap. Memory is bounded by two chunks per reader; a blob is never loaded whole.

use std::fs::File;
use std::future::Future;
use std::io::{self, Read};
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::Bytes;
use futures::Stream;
use tokio::runtime::Handle;
use tokio::task::JoinHandle;

use crate::error::{Error, Result};

use super::{DRIVER, io_err};

/// Size of one read (and of one item of the stream, except the last).
pub const READ_CHUNK: usize = 1024 * 1024;

type ReadResult = io::Result<(File, Vec<u8>)>;

/// Stream of the bytes of a stored blob (or of a range of it).
///
/// A named, unboxed type: the engine's `BlobStream` for the filesystem driver.
#[derive(Debug)]
pub struct FilesystemReader {
    /// A chunk read before the stream was created (the first one), not yet yielded.
    ready: Option<Bytes>,
    /// The read in flight, if any bytes remain.
    pending: Option<JoinHandle<ReadResult>>,
    /// Bytes still to yield, including those of the read in flight.
    remaining: u64,
    /// Blocking pool to read on (captured so polling works from any executor).
    runtime: Handle,
    /// For error messages.
    path: Arc<PathBuf>,
}

impl FilesystemReader {
    /// A reader yielding exactly `len` bytes of `file`: first the `first` bytes already read
    /// (by the blocking call that opened the file, see [`read_first`](Self::read_first), so a
    /// small blob needs no second trip to the blocking pool), then the rest from the file's
    /// current position, read ahead at once.
    pub(super) fn new(file: File, len: u64, first: Vec<u8>, path: PathBuf) -> Self {
        let mut reader = Self {
            ready: None,
            pending: None,
            remaining: len - first.len() as u64,
            runtime: Handle::current(),
            path: Arc::new(path),
        };
        if !first.is_empty() {
            reader.ready = Some(Bytes::from(first));
        }
        reader.start(file);
        reader
    }

    /// Reads the first chunk of `len` bytes synchronously (call on the blocking pool).
    pub(super) fn read_first(file: &mut File, len: u64) -> io::Result<Vec<u8>> {
        let want = len.min(READ_CHUNK as u64);
        let mut buf = Vec::with_capacity(want as usize);
        file.take(want).read_to_end(&mut buf)?;
        if (buf.len() as u64) < want {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                format!("blob ended {} bytes early", want - buf.len() as u64),
            ));
        }
        Ok(buf)
    }

    /// Starts reading the next chunk, if any bytes remain.
    fn start(&mut self, file: File) {
        if self.remaining == 0 {
            return;
        }
        let want = self.remaining.min(READ_CHUNK as u64);
        self.pending = Some(self.runtime.spawn_blocking(move || {
            // `Vec::with_capacity` + `read_to_end` reads into uninitialised capacity (no
            // zeroing); `take` stops exactly at `want` bytes, so no reallocation happens.
            let mut buf = Vec::with_capacity(want as usize);
            let mut file = file;
            (&mut file).take(want).read_to_end(&mut buf)?;
            Ok((file, buf))
        }));
    }
}

impl Stream for FilesystemReader {
    type Item = Result<Bytes>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = self.get_mut();
        if let Some(chunk) = this.ready.take() {
            return Poll::Ready(Some(Ok(chunk)));
        }
        let Some(pending) = this.pending.as_mut() else {
            return Poll::Ready(None);
        };
        let outcome = match Pin::new(pending).poll(cx) {
            Poll::Pending => return Poll::Pending,
            Poll::Ready(outcome) => outcome,
        };
        this.pending = None;
        let (file, buf) = match outcome {
            Ok(Ok(read)) => read,
            Ok(Err(e)) => {
                this.remaining = 0;
                return Poll::Ready(Some(Err(io_err("reading", &this.path, e))));
            }
            Err(e) => {
                this.remaining = 0;
                return Poll::Ready(Some(Err(Error::backend(
                    DRIVER,
                    format!("blob read task failed: {e}"),
                ))));
            }
        };
        if buf.is_empty() {
            let missing = this.remaining;
            this.remaining = 0;
            return Poll::Ready(Some(Err(Error::backend(
                DRIVER,
                format!(
                    "blob {} ended {missing} bytes early (truncated on disk?)",
                    this.path.display()
                ),
            ))));
        }
        this.remaining -= buf.len() as u64;
        // Read ahead while the caller consumes this chunk.
        this.start(file);
        Poll::Ready(Some(Ok(Bytes::from(buf))))
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        let ready = usize::from(self.ready.is_some());
        if self.remaining == 0 {
            (ready, Some(ready))
        } else {
            let chunks = self.remaining.div_ceil(READ_CHUNK as u64);
            (ready + 1, usize::try_from(chunks).ok().map(|c| c + ready))
        }
    }
}
