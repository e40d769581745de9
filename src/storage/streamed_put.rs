//! One streamed write of a whole blob to an object store, sent again from a spill file when
//! the store fails it: what the S3 and GCS drivers' [`Backend::put_blob`] share.
//!
//! The driver sends one request (S3 `PutObject`, GCS media upload) whose body is a channel
//! ([`ChannelBody`]) fed from the client's body, which verifies itself (the engine holds its
//! last chunk back until the digest matched, and ends it with an error otherwise). The request
//! declares the blob's length, so a body that ends short or with an error never makes a
//! complete request: the connection is dropped and the store keeps nothing.
//!
//! A streamed body cannot be sent twice, so the bytes are also written to a temporary file
//! (`TMPDIR`, unlinked from the start: a killed process leaves nothing behind) as they pass.
//! When the streamed request fails, the driver's request is sent again from that file while
//! the store's errors are transient, as [`retry::retried`] does (up to
//! [`retry::ATTEMPTS`] times after the streamed one). A spill file that cannot
//! be created or written (a full disk) only takes that retry away.
//!
//! **The spill files never fill `TMPDIR`.** Before a push spills, it reserves its size
//! against the free space of `TMPDIR`'s file system, less the other spill files in flight in
//! this process: a push is spilled only when, with all of them written out, the file system
//! keeps a tenth of its size and at least 256 MiB free ([`Reservation`]). A push that finds
//! no room goes on unspilled, without the resend, and says so in the log.
//!
//! [`Backend::put_blob`]: crate::storage::backend::Backend::put_blob

use std::future::Future;
use std::pin::{Pin, pin};
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll};

use bytes::Bytes;
use futures::{Stream, StreamExt};
use http_body::{Frame, SizeHint};
use tokio::io::{AsyncSeekExt, AsyncWriteExt};
use tokio::sync::{mpsc, oneshot};

use crate::error::{Error, Result};
use crate::observe::metrics::RetryCounter;
use crate::oci::Digest;
use crate::storage::deadline::RequestTimeout;
use crate::storage::retry;

/// Chunks buffered between the client's body and the request.
const CHANNEL_CHUNKS: usize = 16;

/// Write buffer of the spill file.
const SPILL_BUFFER: usize = 1024 * 1024;

/// The body of one attempt: the streamed first one, or a resend from the spill file.
pub(crate) enum PutBody {
    /// The client's bytes as they arrive: exactly the blob's size, or an error.
    Streamed(ChannelBody),
    /// The spill file, opened at its start; the blob is its first `size` bytes.
    Spilled(tokio::fs::File),
}

/// Stores blob `digest` (`size` bytes, from `body`, which verifies itself) with `send`, one
/// request per call: first with the streamed body, then, while it fails transiently, with
/// the spill file. `driver` names the driver in errors.
///
/// The streamed request takes as long as the client takes to send its body; once the last
/// byte is handed to it, the store must answer within `timeout`'s answer time, or the
/// request fails (retryably) and is sent again from the spill file. The `send` of a spill
/// file bounds its own request ([`RequestTimeout::with_body`]).
pub(crate) async fn put_streamed<S, F, Fut>(
    driver: &'static str,
    digest: &Digest,
    size: u64,
    body: S,
    timeout: RequestTimeout,
    retries: &RetryCounter,
    send: F,
) -> Result<()>
where
    S: Stream<Item = Result<Bytes>> + Send,
    F: Fn(PutBody) -> Fut,
    Fut: Future<Output = Result<()>>,
{
    // Held until the push is over: the spill file lives as long.
    let reservation = Reservation::take(size, temp_dir_space());
    let mut spill = match &reservation {
        Some(_) => Spill::create(driver).await,
        None => {
            tracing::warn!(driver, %digest, size,
                "too little free space in TMPDIR for a spill file; a failed blob write will not be sent again");
            None
        }
    };
    let (tx, rx) = mpsc::channel(CHANNEL_CHUNKS);
    let (handed_over, all_handed_over) = oneshot::channel();
    let mut streamed = pin!(send(PutBody::Streamed(ChannelBody::new(
        rx,
        size,
        handed_over
    ))));
    let streamed =
        answered_after_body(streamed.as_mut(), all_handed_over, timeout.answer(), driver);
    let (pumped, put) = tokio::join!(pump(driver, body, tx, &mut spill), streamed);
    // The client's body failed (mismatch, cut): the request could not complete.
    pumped?;
    let Err(first) = put else {
        return Ok(());
    };
    let Some(spill) = spill else {
        return Err(first);
    };
    tracing::debug!(driver, %digest, error = %first, "streamed write failed; sending it again from the spill file");
    // A file body is not one the stores' clients retry by themselves.
    let spill = &spill;
    retries.count();
    retry::retried(
        driver,
        "blob write from the spill file",
        retries,
        || async { send(PutBody::Spilled(spill.reopen(driver).await?)).await },
    )
    .await
}

/// Awaits the streamed `request`, bounded by `limit` from the moment its body handed over
/// its last byte (`all_handed_over`). A body dropped before that (the request failed, or
/// the client's body did) leaves the request to end by itself, which it does: its body
/// is gone.
async fn answered_after_body<F: Future<Output = Result<()>>>(
    mut request: Pin<&mut F>,
    all_handed_over: oneshot::Receiver<()>,
    limit: std::time::Duration,
    driver: &'static str,
) -> Result<()> {
    tokio::select! {
        biased;
        out = &mut request => return out,
        handed_over = all_handed_over => if handed_over.is_err() {
            return request.await;
        },
    }
    RequestTimeout::bound(limit, driver, "blob write", request).await
}

/// Bytes of the spill files in flight in this process.
static SPILLING: AtomicU64 = AtomicU64::new(0);

/// What the spill files leave free of a file system of `total` bytes at least.
fn kept_free(total: u64) -> u64 {
    (total / 10).max(256 * 1024 * 1024)
}

/// `(available, total)` bytes of the file system of `TMPDIR`, or `None` when it cannot be
/// told.
#[allow(clippy::useless_conversion)] // The fields' types differ between targets.
fn temp_dir_space() -> Option<(u64, u64)> {
    use std::os::unix::ffi::OsStrExt;
    let dir = std::ffi::CString::new(std::env::temp_dir().as_os_str().as_bytes()).ok()?;
    let mut stats = std::mem::MaybeUninit::<libc::statvfs>::uninit();
    // SAFETY: `dir` is a NUL-terminated path and `stats` is writable memory of the struct's
    // size; the struct is read only when the call succeeded and so filled it.
    let stats = unsafe {
        if libc::statvfs(dir.as_ptr(), stats.as_mut_ptr()) != 0 {
            return None;
        }
        stats.assume_init()
    };
    let unit = u64::from(stats.f_frsize);
    Some((
        u64::from(stats.f_bavail).saturating_mul(unit),
        u64::from(stats.f_blocks).saturating_mul(unit),
    ))
}

/// A spill file's size, counted among the spill files in flight ([`SPILLING`]) until dropped.
#[derive(Debug)]
struct Reservation {
    size: u64,
}

impl Reservation {
    /// Reserves `size` bytes when the file system (`space`: available and total bytes) keeps
    /// [`kept_free`] with every spill file in flight written out, this one included; `None`
    /// when it would not. Space that cannot be told does not stop a spill (a failed write
    /// only drops it).
    fn take(size: u64, space: Option<(u64, u64)>) -> Option<Self> {
        let Some((available, total)) = space else {
            SPILLING.fetch_add(size, Ordering::Relaxed);
            return Some(Self { size });
        };
        let room = available.saturating_sub(kept_free(total));
        SPILLING
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |spilling| {
                let after = spilling.checked_add(size)?;
                (after <= room).then_some(after)
            })
            .ok()
            .map(|_| Self { size })
    }
}

impl Drop for Reservation {
    fn drop(&mut self) {
        SPILLING.fetch_sub(self.size, Ordering::Relaxed);
    }
}

/// Moves the client's body into the channel the request reads, and into the spill file.
/// Returns the body's error; a failed spill file is dropped (only the retry is lost), and a
/// closed channel (the request failed) only stops the sending.
async fn pump<S>(
    driver: &'static str,
    body: S,
    tx: mpsc::Sender<std::result::Result<Bytes, BodyCut>>,
    spill: &mut Option<Spill>,
) -> Result<()>
where
    S: Stream<Item = Result<Bytes>> + Send,
{
    let mut body = pin!(body);
    let mut tx = Some(tx);
    while let Some(chunk) = body.next().await {
        let chunk = match chunk {
            Ok(chunk) => chunk,
            Err(e) => {
                if let Some(tx) = tx.take() {
                    let _ = tx.send(Err(BodyCut)).await;
                }
                return Err(e);
            }
        };
        if let Some(file) = spill.as_mut()
            && let Err(e) = file.write(&chunk).await
        {
            Spill::lost(driver, &e);
            *spill = None;
        }
        if let Some(sender) = &tx
            && sender.send(Ok(chunk)).await.is_err()
        {
            tx = None;
        }
    }
    if let Some(file) = spill.as_mut()
        && let Err(e) = file.flush().await
    {
        Spill::lost(driver, &e);
        *spill = None;
    }
    Ok(())
}

/// The error a [`ChannelBody`] ends with when the client's body failed: the request is
/// abandoned short of its declared length.
#[derive(Debug)]
pub(crate) struct BodyCut;

impl std::fmt::Display for BodyCut {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("the blob's body ended before all of it was verified")
    }
}

impl std::error::Error for BodyCut {}

/// A request body of the chunks [`pump`] sends: exactly `size` bytes, or an error.
pub(crate) struct ChannelBody {
    rx: mpsc::Receiver<std::result::Result<Bytes, BodyCut>>,
    size: u64,
    sent: u64,
    /// Told when the last byte was handed over (dropped unused if it never is).
    handed_over: Option<oneshot::Sender<()>>,
}

impl ChannelBody {
    fn new(
        rx: mpsc::Receiver<std::result::Result<Bytes, BodyCut>>,
        size: u64,
        handed_over: oneshot::Sender<()>,
    ) -> Self {
        let mut body = Self {
            rx,
            size,
            sent: 0,
            handed_over: Some(handed_over),
        };
        body.tell_if_all_handed_over();
        body
    }

    fn tell_if_all_handed_over(&mut self) {
        if self.sent == self.size
            && let Some(tell) = self.handed_over.take()
        {
            let _ = tell.send(());
        }
    }
}

impl http_body::Body for ChannelBody {
    type Data = Bytes;
    type Error = BodyCut;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<std::result::Result<Frame<Bytes>, BodyCut>>> {
        match self.rx.poll_recv(cx) {
            Poll::Pending => Poll::Pending,
            Poll::Ready(Some(Ok(chunk))) => {
                self.sent += chunk.len() as u64;
                self.tell_if_all_handed_over();
                Poll::Ready(Some(Ok(Frame::data(chunk))))
            }
            Poll::Ready(Some(Err(cut))) => Poll::Ready(Some(Err(cut))),
            // Ended short (the sender is gone without a word): never a complete request.
            Poll::Ready(None) if self.sent != self.size => Poll::Ready(Some(Err(BodyCut))),
            Poll::Ready(None) => Poll::Ready(None),
        }
    }

    fn is_end_stream(&self) -> bool {
        self.size == 0
    }

    fn size_hint(&self) -> SizeHint {
        SizeHint::with_exact(self.size)
    }
}

/// The temporary file a streamed body is copied to: created unlinked (`O_TMPFILE` where the
/// file system has it), so that nothing is left in `TMPDIR` when the process dies, however it
/// dies.
struct Spill {
    file: tokio::io::BufWriter<tokio::fs::File>,
}

impl Spill {
    /// A new spill file in `TMPDIR`, or `None` (logged) when none can be created.
    async fn create(driver: &'static str) -> Option<Self> {
        match tokio::task::spawn_blocking(tempfile::tempfile).await {
            Ok(Ok(file)) => Some(Self {
                file: tokio::io::BufWriter::with_capacity(
                    SPILL_BUFFER,
                    tokio::fs::File::from_std(file),
                ),
            }),
            Ok(Err(e)) => {
                Self::lost(driver, &e);
                None
            }
            Err(_) => None,
        }
    }

    /// Logs that the spill file is unusable, so a failed write will not be sent again.
    fn lost(driver: &'static str, error: &std::io::Error) {
        tracing::warn!(driver, %error, "no spill file; a failed blob write will not be sent again");
    }

    async fn write(&mut self, chunk: &[u8]) -> std::io::Result<()> {
        self.file.write_all(chunk).await
    }

    async fn flush(&mut self) -> std::io::Result<()> {
        self.file.flush().await
    }

    /// The file (written and flushed by [`pump`]) on a handle of its own, at its start.
    async fn reopen(&self, driver: &'static str) -> Result<tokio::fs::File> {
        let unreadable =
            |e: std::io::Error| Error::backend(driver, format!("reading the spill file back: {e}"));
        let mut file = self.file.get_ref().try_clone().await.map_err(unreadable)?;
        file.seek(std::io::SeekFrom::Start(0))
            .await
            .map_err(unreadable)?;
        Ok(file)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const GIB: u64 = 1024 * 1024 * 1024;
    const MIB: u64 = 1024 * 1024;

    /// One test touches the process-wide count, so that no other changes it meanwhile.
    #[test]
    fn spill_files_in_flight_keep_a_tenth_of_the_file_system_free() {
        // 100 GiB, 40 GiB available: 30 GiB may be spilled (10 GiB stay free).
        let disk = Some((40 * GIB, 100 * GIB));
        let first = Reservation::take(20 * GIB, disk).expect("room for 20 GiB");
        let second = Reservation::take(10 * GIB, disk).expect("room for 10 more");
        assert!(Reservation::take(1, disk).is_none(), "30 GiB are in flight");
        drop(first);
        let third = Reservation::take(20 * GIB, disk).expect("room again once one ended");
        assert_eq!(SPILLING.load(Ordering::Relaxed), 30 * GIB);
        drop((second, third));
        assert_eq!(SPILLING.load(Ordering::Relaxed), 0);
        // A small file system keeps 256 MiB free, a tenth of it being less.
        let small = Some((300 * MIB, GIB));
        assert!(Reservation::take(45 * MIB, small).is_none());
        assert!(Reservation::take(44 * MIB, small).is_some());
        // Nothing fits on a file system that is already past the mark.
        assert!(Reservation::take(1, Some((5 * GIB, 100 * GIB))).is_none());
        // Space that cannot be told stops nothing.
        assert!(Reservation::take(GIB, None).is_some());
        assert_eq!(SPILLING.load(Ordering::Relaxed), 0);
        // The temporary directory of this machine can be told.
        let (available, total) = temp_dir_space().expect("statvfs of TMPDIR");
        assert!(0 < available && available <= total);
    }
}
