//! A monolithic push stored with one streamed `PutObject` straight at the blob's key
//! ([`Backend::put_blob`](crate::storage::backend::Backend::put_blob)), for blobs from one
//! part to [`S3Config::single_put_limit`](super::S3Config::single_put_limit).
//!
//! Against a multipart upload of the same bytes this is one request instead of one per part
//! plus two, and the store has no parts to assemble (moto copies every part into a new object
//! at `CompleteMultipartUpload`; AWS bills each request).
//!
//! **Nothing but the digest's bytes is ever stored.** The engine's body holds its last chunk
//! back until every byte was verified, and ends with an error in its place otherwise. The
//! request carries the declared `Content-Length`, so the store creates the object only once
//! all of it arrived: a body that fails leaves the request short, the connection is dropped,
//! and nothing is stored.
//!
//! **A store fault costs no push.** A streamed body cannot be sent twice, so the bytes are
//! also written to a temporary file (`TMPDIR`, unlinked from the start: a killed process
//! leaves nothing behind) as they pass; when the streamed `PutObject` fails, it is sent again
//! from that file, up to three times while the store's errors are transient. Local disk is the
//! price: up to the limit per push in flight, for the push's duration. A spill file that
//! cannot be written (a full disk) only takes the retry away.

use std::pin::{Pin, pin};
use std::task::{Context, Poll};

use aws_sdk_s3::primitives::{ByteStream, Length};
use bytes::Bytes;
use futures::{Stream, StreamExt};
use http_body::{Frame, SizeHint};
use tokio::io::{AsyncSeekExt, AsyncWriteExt};
use tokio::sync::mpsc;

use super::S3Backend;
use super::error::translate;
use super::objects::CONTENT_TYPE;
use crate::error::{Error, Result};
use crate::oci::Digest;
use crate::storage::layout;

/// Chunks buffered between the client's body and the `PutObject`.
const CHANNEL_CHUNKS: usize = 16;

/// Write buffer of the spill file.
const SPILL_BUFFER: usize = 1024 * 1024;

/// `PutObject`s sent from the spill file after the streamed one failed (a file body is not
/// one the SDK retries by itself), and the pause before the second one (then times four).
const RESEND_ATTEMPTS: u32 = 3;
const RESEND_BACKOFF: std::time::Duration = std::time::Duration::from_millis(100);

impl S3Backend {
    /// Stores blob `digest` (`size` bytes, `body` verifying itself) with one `PutObject`.
    pub(crate) async fn put_whole_blob<S>(&self, digest: &Digest, size: u64, body: S) -> Result<()>
    where
        S: Stream<Item = Result<Bytes>> + Send,
    {
        let key = self.keys.object(&layout::blob_data(digest));
        let mut spill = Spill::create().await;
        let (tx, rx) = mpsc::channel(CHANNEL_CHUNKS);
        let streamed = self.put_object(
            &key,
            size,
            ByteStream::from_body_1_x(ChannelBody::new(rx, size)),
        );
        let (pumped, put) = tokio::join!(pump(body, tx, &mut spill), streamed);
        // The client's body failed (mismatch, cut): the request could not complete.
        pumped?;
        let Err(first) = put else {
            return Ok(());
        };
        let Some(spill) = spill else {
            return Err(first);
        };
        tracing::debug!(%digest, error = %first, "streamed PutObject failed; sending it again from the spill file");
        let mut last = first;
        for attempt in 0..RESEND_ATTEMPTS {
            if attempt > 0 {
                tokio::time::sleep(RESEND_BACKOFF * 4u32.pow(attempt - 1)).await;
            }
            let body = spill.reader(size).await?;
            match self.put_object(&key, size, body).await {
                Ok(()) => return Ok(()),
                Err(e) if e.is_retryable() => last = e,
                Err(e) => return Err(e),
            }
        }
        Err(last)
    }

    async fn put_object(&self, key: &str, size: u64, body: ByteStream) -> Result<()> {
        self.client
            .put_object()
            .bucket(&self.bucket)
            .key(key)
            .content_type(CONTENT_TYPE)
            .content_length(size as i64)
            .body(body)
            .send()
            .await
            .map_err(|e| translate("PutObject", key, e))?;
        Ok(())
    }
}

/// Moves the client's body into the channel the `PutObject` reads, and into the spill file.
/// Returns the body's error; a failed spill file is dropped (only the retry is lost), and a
/// closed channel (the `PutObject` failed) only stops the sending.
async fn pump<S>(
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
            tracing::warn!(error = %e, "cannot write the spill file; a failed PutObject will not be retried");
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
        tracing::warn!(error = %e, "cannot write the spill file; a failed PutObject will not be retried");
        *spill = None;
    }
    Ok(())
}

/// The error a [`ChannelBody`] ends with when the client's body failed: the request is
/// abandoned short of its `Content-Length`.
#[derive(Debug)]
struct BodyCut;

impl std::fmt::Display for BodyCut {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("the blob's body ended before all of it was verified")
    }
}

impl std::error::Error for BodyCut {}

/// The `PutObject`'s body: the chunks [`pump`] sends, exactly `size` bytes or an error.
struct ChannelBody {
    rx: mpsc::Receiver<std::result::Result<Bytes, BodyCut>>,
    size: u64,
    sent: u64,
}

impl ChannelBody {
    fn new(rx: mpsc::Receiver<std::result::Result<Bytes, BodyCut>>, size: u64) -> Self {
        Self { rx, size, sent: 0 }
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
    async fn create() -> Option<Self> {
        match tokio::task::spawn_blocking(tempfile::tempfile).await {
            Ok(Ok(file)) => Some(Self {
                file: tokio::io::BufWriter::with_capacity(
                    SPILL_BUFFER,
                    tokio::fs::File::from_std(file),
                ),
            }),
            Ok(Err(e)) => {
                tracing::warn!(error = %e, "cannot create a spill file; a failed PutObject will not be retried");
                None
            }
            Err(_) => None,
        }
    }

    async fn write(&mut self, chunk: &[u8]) -> std::io::Result<()> {
        self.file.write_all(chunk).await
    }

    async fn flush(&mut self) -> std::io::Result<()> {
        self.file.flush().await
    }

    /// A body of the file's first `size` bytes (written and flushed by [`pump`]), read from
    /// the start on a handle of its own.
    async fn reader(&self, size: u64) -> Result<ByteStream> {
        let unreadable = |e: &dyn std::fmt::Display| {
            Error::backend(
                super::error::DRIVER,
                format!("reading the spill file back: {e}"),
            )
        };
        let mut file = self
            .file
            .get_ref()
            .try_clone()
            .await
            .map_err(|e| unreadable(&e))?;
        file.seek(std::io::SeekFrom::Start(0))
            .await
            .map_err(|e| unreadable(&e))?;
        ByteStream::read_from()
            .file(file)
            .length(Length::Exact(size))
            .build()
            .await
            .map_err(|e| unreadable(&e))
    }
}
