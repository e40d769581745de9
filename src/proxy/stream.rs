//! What a client of the cache reads: a blob from the local store, or the part of a blob it
//! asked for as the blob is fetched.
//!
//! A blob being fetched cannot be verified before its last byte; what makes a client's
//! answer trustworthy is that it ends cleanly only once the whole blob was (the fetch holds
//! the blob's last chunk back until then, see `blobs.rs`). A client that asked for a range
//! gets the same promise: the range's last bytes are held until the fetch ends cleanly, so
//! a range of bytes that turn out not to be what their digest says ends with an error too.

use std::pin::Pin;
use std::task::{Context, Poll, ready};

use bytes::{Buf, Bytes};
use futures::Stream;
use tokio::sync::mpsc;

use crate::error::Result;
use crate::oci::ByteRange;

/// A blob read through the cache: from the local store, or as it is being fetched.
#[pin_project::pin_project(project = ProxyBlobStreamProj)]
#[derive(Debug)]
pub enum ProxyBlobStream<S> {
    /// From the local store.
    Stored(#[pin] S),
    /// From the upstream, as it is fetched.
    Fetched(FetchedBytes),
}

impl<S: Stream<Item = Result<Bytes>>> Stream for ProxyBlobStream<S> {
    type Item = Result<Bytes>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        match self.project() {
            ProxyBlobStreamProj::Stored(s) => s.poll_next(cx),
            ProxyBlobStreamProj::Fetched(f) => Pin::new(f).poll_next(cx),
        }
    }
}

/// The bytes a client asked for (the whole blob, or a range of it) out of a blob arriving
/// whole on a channel as it is fetched: bytes before and after are dropped, and the last
/// bytes asked for are passed on only once the channel ends cleanly (the whole blob
/// verified).
#[derive(Debug)]
pub struct FetchedBytes {
    /// The whole blob, then its end (clean: verified) or an error.
    blob: mpsc::Receiver<Result<Bytes>>,
    /// Bytes still to drop before the first one asked for.
    skip: u64,
    /// Bytes asked for still to come.
    left: u64,
    /// The last bytes asked for, until the blob's end.
    held: Option<Bytes>,
}

impl FetchedBytes {
    /// `range` of a blob of `size` bytes arriving on `blob`, or all of it.
    pub(crate) fn new(
        blob: mpsc::Receiver<Result<Bytes>>,
        size: u64,
        range: Option<ByteRange>,
    ) -> Self {
        let (skip, left) = range.map_or((0, size), |r| (r.start, r.len()));
        Self {
            blob,
            skip,
            left,
            held: None,
        }
    }
}

impl Stream for FetchedBytes {
    type Item = Result<Bytes>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = self.get_mut();
        loop {
            let mut chunk = match ready!(this.blob.poll_recv(cx)) {
                // The blob is whole and verified: what was held back may go.
                None => return Poll::Ready(this.held.take().map(Ok)),
                Some(Err(e)) => {
                    this.held = None;
                    this.left = 0;
                    return Poll::Ready(Some(Err(e)));
                }
                Some(Ok(chunk)) => chunk,
            };
            let skipped = usize::try_from(this.skip).map_or(chunk.len(), |s| s.min(chunk.len()));
            chunk.advance(skipped);
            this.skip -= skipped as u64;
            if this.left == 0 || chunk.is_empty() {
                // Before the range, or past it: read on, to the blob's end.
                continue;
            }
            let taken = usize::try_from(this.left).map_or(chunk.len(), |l| l.min(chunk.len()));
            chunk.truncate(taken);
            this.left -= taken as u64;
            if this.left == 0 {
                this.held = Some(chunk);
                continue;
            }
            return Poll::Ready(Some(Ok(chunk)));
        }
    }
}

#[cfg(test)]
mod tests {
    use futures::StreamExt;

    use super::*;
    use crate::error::Error;

    /// What a client reads of a blob arriving as `chunks`, then ending as `end` says.
    async fn read(
        chunks: &[&'static [u8]],
        end: Option<Error>,
        range: Option<ByteRange>,
    ) -> Vec<Result<Bytes>> {
        let size = chunks.iter().map(|c| c.len() as u64).sum();
        let (tx, rx) = mpsc::channel(16);
        for c in chunks {
            tx.send(Ok(Bytes::from_static(c))).await.unwrap();
        }
        if let Some(e) = end {
            tx.send(Err(e)).await.unwrap();
        }
        drop(tx);
        FetchedBytes::new(rx, size, range).collect().await
    }

    fn bytes(read: &[Result<Bytes>]) -> Vec<u8> {
        read.iter()
            .flat_map(|c| c.as_ref().expect("a chunk").to_vec())
            .collect()
    }

    const BLOB: [&[u8]; 3] = [b"0123", b"4567", b"89"];

    #[tokio::test]
    async fn the_whole_blob_or_any_range_of_it() {
        assert_eq!(bytes(&read(&BLOB, None, None).await), b"0123456789");
        for (start, end, want) in [
            (0, 9, &b"0123456789"[..]),
            (2, 5, b"2345"),
            (4, 7, b"4567"),
            (3, 3, b"3"),
            (5, 9, b"56789"),
            (9, 9, b"9"),
        ] {
            let got = read(&BLOB, None, Some(ByteRange { start, end })).await;
            assert_eq!(bytes(&got), want, "bytes {start}-{end}");
        }
    }

    #[tokio::test]
    async fn a_failed_blob_ends_every_range_with_its_error() {
        for range in [None, Some(ByteRange { start: 1, end: 5 })] {
            let got = read(&BLOB, Some(Error::DigestInvalid("x".into())), range).await;
            let last = got.last().expect("an answer");
            assert!(last.is_err(), "{range:?} ended cleanly: {got:?}");
            // The range's last bytes were held back, never passed on.
            if range.is_some() {
                assert_eq!(got.len(), 2, "{got:?}");
                assert_eq!(got[0].as_ref().unwrap().as_ref(), b"123");
            }
        }
    }

    #[tokio::test]
    async fn the_last_bytes_wait_for_the_blobs_end() {
        let (tx, rx) = mpsc::channel(16);
        let mut read = FetchedBytes::new(rx, 10, Some(ByteRange { start: 0, end: 5 }));
        tx.send(Ok(Bytes::from_static(b"0123"))).await.unwrap();
        tx.send(Ok(Bytes::from_static(b"4567"))).await.unwrap();
        assert_eq!(read.next().await.unwrap().unwrap().as_ref(), b"0123");
        let early = futures::poll!(read.next());
        assert!(early.is_pending(), "the range's end came before the blob's");
        tx.send(Ok(Bytes::from_static(b"89"))).await.unwrap();
        drop(tx);
        assert_eq!(read.next().await.unwrap().unwrap().as_ref(), b"45");
        assert!(read.next().await.is_none());
    }
}
