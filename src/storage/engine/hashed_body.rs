//! Hashing (and counting) request bodies while they stream to the backend: [`hashed_body`].

use bytes::Bytes;
use futures::{Stream, StreamExt};

use crate::error::{Error, Result};
use crate::oci::Digest;
use crate::storage::hashing::Hasher;

/// Bodies are hashed in batches of this many bytes on Tokio's blocking pool, while the
/// chunks flow on to the backend: receiving, storing and hashing overlap (on a 2-core machine
/// hashing on the task that also receives the body capped a monolithic push at ~35% of one
/// core's SHA-256 rate). A body shorter than this is hashed inline, with no thread hop.
pub(super) const HASH_BATCH: usize = 512 * 1024;

/// Wraps a body so every chunk is hashed and counted as it passes, and the stream fails with
/// `SIZE_INVALID` as soon as it exceeds `limit`.
///
/// `hasher` holds the hash of everything the stream yielded once it has yielded `None`
/// (the end of the body); until then the hashing may still be running on the blocking pool.
/// Callers use `hasher` only after consuming the stream to its end. At most about two
/// batches wait for hashing (the stream stops pulling the body until a batch is hashed).
pub(super) fn hashed_body<'a, S>(
    body: S,
    hasher: &'a mut Hasher,
    count: &'a mut u64,
    limit: Option<u64>,
) -> impl Stream<Item = Result<Bytes>> + Send + 'a
where
    S: Stream<Item = Result<Bytes>> + Send + 'a,
{
    new_hashed_body(body, hasher, count, limit)
}

fn new_hashed_body<'a, S>(
    body: S,
    hasher: &'a mut Hasher,
    count: &'a mut u64,
    limit: Option<u64>,
) -> HashedBody<'a, S> {
    let idle = std::mem::replace(hasher, Hasher::new(hasher.algorithm()));
    HashedBody {
        body,
        hasher,
        idle: Some(idle),
        running: None,
        pending: Vec::new(),
        pending_len: 0,
        count,
        limit,
        body_done: false,
        ended: false,
        verify: None,
        held: None,
    }
}

/// [`hashed_body`] for a body that must be exactly `size` bytes hashing to `digest` (a
/// monolithic push), verifying itself: it holds its last chunk back until the whole body was
/// hashed, then yields it if the bytes match, or `DIGEST_INVALID` / `SIZE_INVALID` in its
/// place. Whoever stores what it yields and commits only once all `size` bytes arrived (an
/// S3 `PutObject` with its `Content-Length`) never commits bytes other than the digest's
/// ([`Backend::put_blob`](crate::storage::backend::Backend::put_blob)).
pub(super) fn verified_body<'a, S>(
    body: S,
    hasher: &'a mut Hasher,
    count: &'a mut u64,
    digest: &'a Digest,
    size: u64,
) -> impl Stream<Item = Result<Bytes>> + Send + 'a
where
    S: Stream<Item = Result<Bytes>> + Send + 'a,
{
    let mut stream = new_hashed_body(body, hasher, count, Some(size));
    stream.verify = Some((digest, size));
    stream
}

/// The stream of [`hashed_body`].
#[pin_project::pin_project]
pub(super) struct HashedBody<'a, S> {
    #[pin]
    body: S,
    /// The caller's hasher: receives the final state at the end of the body.
    hasher: &'a mut Hasher,
    /// The hasher, when no batch is being hashed.
    idle: Option<Hasher>,
    /// The batch being hashed on the blocking pool; yields the hasher back.
    running: Option<tokio::task::JoinHandle<Hasher>>,
    /// Chunks yielded but not hashed yet.
    pending: Vec<Bytes>,
    pending_len: usize,
    count: &'a mut u64,
    limit: Option<u64>,
    /// The body yielded `None` (never polled again); the last hash may still be running.
    body_done: bool,
    ended: bool,
    /// What the whole body must be ([`verified_body`]); then the last chunk is held back.
    verify: Option<(&'a Digest, u64)>,
    /// The latest chunk, not yielded yet (only with `verify`).
    held: Option<Bytes>,
}

/// Waits for the batch being hashed, if any, and puts the hasher back in `idle`.
pub(super) fn poll_hash_idle(
    running: &mut Option<tokio::task::JoinHandle<Hasher>>,
    idle: &mut Option<Hasher>,
    cx: &mut std::task::Context<'_>,
) -> std::task::Poll<Result<()>> {
    use std::future::Future;
    use std::task::Poll;
    if let Some(handle) = running.as_mut() {
        let joined = match std::pin::Pin::new(handle).poll(cx) {
            Poll::Pending => return Poll::Pending,
            Poll::Ready(joined) => joined,
        };
        *running = None;
        match joined {
            Ok(hasher) => *idle = Some(hasher),
            Err(e) => {
                return Poll::Ready(Err(Error::backend(
                    "engine",
                    format!("hashing task failed: {e}"),
                )));
            }
        }
    }
    Poll::Ready(Ok(()))
}

impl<S> Stream for HashedBody<'_, S>
where
    S: Stream<Item = Result<Bytes>>,
{
    type Item = Result<Bytes>;

    fn poll_next(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<Bytes>>> {
        use std::task::Poll;
        let mut this = self.project();
        if *this.ended {
            return Poll::Ready(None);
        }
        if *this.pending_len >= HASH_BATCH {
            // Hand the batch to the blocking pool once the previous one is hashed (this is
            // the back-pressure: the body is not pulled further meanwhile).
            match poll_hash_idle(this.running, this.idle, cx) {
                Poll::Pending => return Poll::Pending,
                Poll::Ready(Err(e)) => {
                    *this.ended = true;
                    return Poll::Ready(Some(Err(e)));
                }
                Poll::Ready(Ok(())) => {}
            }
            let batch = std::mem::take(this.pending);
            *this.pending_len = 0;
            let Some(mut hasher) = this.idle.take() else {
                *this.ended = true;
                return Poll::Ready(Some(Err(Error::backend("engine", "hasher lost"))));
            };
            *this.running = Some(tokio::task::spawn_blocking(move || {
                for chunk in &batch {
                    hasher.update(chunk);
                }
                hasher
            }));
        }
        let next = if *this.body_done {
            Poll::Ready(None)
        } else {
            this.body.as_mut().poll_next(cx)
        };
        match next {
            Poll::Pending => Poll::Pending,
            Poll::Ready(Some(Err(e))) => Poll::Ready(Some(Err(e))),
            Poll::Ready(Some(Ok(chunk))) => {
                **this.count += chunk.len() as u64;
                if let Some(limit) = *this.limit
                    && **this.count > limit
                {
                    return Poll::Ready(Some(Err(Error::SizeInvalid(format!(
                        "body is longer than the declared {limit} bytes"
                    )))));
                }
                if chunk.is_empty() {
                    if this.verify.is_none() {
                        return Poll::Ready(Some(Ok(chunk)));
                    }
                    // Nothing to hash or hold back: ask for the next chunk.
                    cx.waker().wake_by_ref();
                    return Poll::Pending;
                }
                *this.pending_len += chunk.len();
                this.pending.push(chunk.clone());
                if this.verify.is_some() {
                    // Yield the chunk before, hold this one.
                    match this.held.replace(chunk) {
                        Some(previous) => Poll::Ready(Some(Ok(previous))),
                        None => {
                            cx.waker().wake_by_ref();
                            Poll::Pending
                        }
                    }
                } else {
                    Poll::Ready(Some(Ok(chunk)))
                }
            }
            Poll::Ready(None) => {
                *this.body_done = true;
                match poll_hash_idle(this.running, this.idle, cx) {
                    Poll::Pending => return Poll::Pending,
                    Poll::Ready(Err(e)) => {
                        *this.ended = true;
                        return Poll::Ready(Some(Err(e)));
                    }
                    Poll::Ready(Ok(())) => {}
                }
                *this.ended = true;
                let Some(mut hasher) = this.idle.take() else {
                    return Poll::Ready(Some(Err(Error::backend("engine", "hasher lost"))));
                };
                // The last partial batch (under HASH_BATCH): inline.
                for chunk in this.pending.drain(..) {
                    hasher.update(&chunk);
                }
                **this.hasher = hasher;
                let Some((digest, size)) = *this.verify else {
                    return Poll::Ready(None);
                };
                let verdict = check_content(Some(size), **this.count, this.hasher, digest);
                match (verdict, this.held.take()) {
                    (Err(e), _) => Poll::Ready(Some(Err(e))),
                    (Ok(()), Some(last)) => Poll::Ready(Some(Ok(last))),
                    (Ok(()), None) => Poll::Ready(None),
                }
            }
        }
    }
}

/// Hashes and counts a whole body without storing it; `SIZE_INVALID` if its length differs
/// from `expected`.
pub(super) async fn hash_only<S>(body: S, hasher: &mut Hasher, expected: Option<u64>) -> Result<u64>
where
    S: Stream<Item = Result<Bytes>> + Send,
{
    let mut count = 0u64;
    {
        let mut body = std::pin::pin!(hashed_body(body, hasher, &mut count, expected));
        while let Some(chunk) = body.next().await {
            chunk?;
        }
    }
    check_len(expected, count)?;
    Ok(count)
}

pub(super) fn check_len(expected: Option<u64>, got: u64) -> Result<()> {
    match expected {
        Some(e) if e != got => Err(Error::SizeInvalid(format!(
            "declared {e} bytes, received {got}"
        ))),
        _ => Ok(()),
    }
}

/// Checks a whole body: `count` bytes against the declared length ([`check_len`]), then what
/// `hasher` hashed against `digest` (`DIGEST_INVALID`).
pub(super) fn check_content(
    expected: Option<u64>,
    count: u64,
    hasher: &Hasher,
    digest: &Digest,
) -> Result<()> {
    check_len(expected, count)?;
    if hasher.digest() != *digest {
        return Err(Error::DigestInvalid(format!(
            "content does not match {digest}"
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use futures::{StreamExt, stream};

    use super::*;
    use crate::oci::DigestAlgorithm;

    fn sha256(bytes: &[u8]) -> Digest {
        let mut hasher = Hasher::new(DigestAlgorithm::Sha256);
        hasher.update(bytes);
        hasher.digest()
    }

    /// What a verified body yields, as chunks and a final error.
    async fn drain(
        chunks: &[&'static [u8]],
        digest: &Digest,
        size: u64,
    ) -> (Vec<u8>, Option<Error>) {
        let body = stream::iter(chunks.iter().map(|c| Ok(Bytes::from_static(c))));
        let mut hasher = Hasher::new(DigestAlgorithm::Sha256);
        let mut count = 0;
        let mut stream = std::pin::pin!(verified_body(body, &mut hasher, &mut count, digest, size));
        let mut yielded = Vec::new();
        while let Some(item) = stream.next().await {
            match item {
                Ok(chunk) => yielded.extend_from_slice(&chunk),
                Err(e) => return (yielded, Some(e)),
            }
        }
        (yielded, None)
    }

    #[tokio::test]
    async fn a_verified_body_yields_its_last_chunk_only_when_it_matches() {
        let chunks: [&'static [u8]; 4] = [b"abc", b"", b"defg", b"hij"];
        let whole = b"abcdefghij";
        let (yielded, error) = drain(&chunks, &sha256(whole), 10).await;
        assert_eq!((yielded.as_slice(), error.is_none()), (&whole[..], true));

        // Wrong digest: everything but the last chunk, then DIGEST_INVALID in its place.
        let (yielded, error) = drain(&chunks, &sha256(b"other"), 10).await;
        assert_eq!(yielded, b"abcdefg");
        assert!(matches!(error, Some(Error::DigestInvalid(_))), "{error:?}");

        // Shorter than declared (even with the right digest): SIZE_INVALID in its place.
        let (yielded, error) = drain(&chunks, &sha256(whole), 11).await;
        assert_eq!(yielded, b"abcdefg");
        assert!(matches!(error, Some(Error::SizeInvalid(_))), "{error:?}");

        // Longer than declared: SIZE_INVALID as soon as the limit is passed.
        let (yielded, error) = drain(&chunks, &sha256(whole), 5).await;
        assert_eq!(yielded, b"");
        assert!(matches!(error, Some(Error::SizeInvalid(_))), "{error:?}");
    }
}
