//! Blobs the cache does not hold: fetched once per repository and digest in this process
//! (a fetch in flight holds a lock that others wait on, then find the blob stored), in a
//! task of its own (a client that goes away does not cut a fetch that others, and the next
//! pull, wait for), into the local store with its ordinary `put_content` (the digest
//! verified while the bytes stream in).
//!
//! The client whose pull started a fetch gets the bytes as they are stored, not after:
//! a large layer from a slow upstream starts flowing at once, as from the upstream itself,
//! instead of after a wait that a client may take for a hung server. Its stream ends
//! cleanly only once the store has verified and kept the blob; bytes that turn out not to
//! be what their digest says end it with an error (the connection is cut, the client's
//! own digest check fails too), and nothing is stored.

use std::pin::Pin;
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll};

use bytes::Bytes;
use futures::{Stream, StreamExt, TryStreamExt};
use tokio::sync::{mpsc, oneshot};

use super::fill::Filler;
use super::upstream::{UPSTREAM, bad_answer};
use crate::error::{Error, Result};
use crate::oci::{Digest, RepositoryName};
use crate::storage::StorageDriver;

/// Chunks in flight between a fetch and its client: a client that reads slowly slows the
/// fetch (and its storing) down rather than growing a buffer.
const CLIENT_CHUNKS: usize = 16;

/// How the fetch a client asked for began.
pub(crate) enum Fetch {
    /// The blob is stored (by this fetch, or another one meanwhile): read it from the store.
    Stored,
    /// The blob's `size` bytes come on `body` as they are stored.
    Streaming {
        /// The size the upstream announced (verified as the bytes are stored).
        size: u64,
        /// The bytes, then an error if they could not be stored.
        body: mpsc::Receiver<Result<Bytes>>,
    },
}

/// Who waits for a fetch.
enum Waiter {
    /// Nobody but the caller of [`Filler::ensure_blob`], through the task's result.
    Caller,
    /// A client, told how the fetch began.
    Client(oneshot::Sender<Result<Fetch>>),
    /// A client receiving the bytes.
    Streaming(mpsc::Sender<Result<Bytes>>),
}

impl Waiter {
    /// Reports how the fetch ended: to the caller as its result, to a client that has not
    /// started reading as the start of its answer, to a streaming one as the end of its
    /// stream.
    async fn finish(self, result: Result<()>) -> Result<()> {
        match self {
            Waiter::Caller => result,
            Waiter::Client(client) => {
                let _ = client.send(result.map(|()| Fetch::Stored));
                Ok(())
            }
            Waiter::Streaming(body) => {
                if let Err(e) = result {
                    let _ = body.send(Err(e)).await;
                }
                Ok(())
            }
        }
    }
}

/// A blob read through the cache: from the local store, or as it is being fetched.
#[pin_project::pin_project(project = ProxyBlobStreamProj)]
#[derive(Debug)]
pub enum ProxyBlobStream<S> {
    /// From the local store.
    Stored(#[pin] S),
    /// From the upstream, as it is stored.
    Fetched(mpsc::Receiver<Result<Bytes>>),
}

impl<S: Stream<Item = Result<Bytes>>> Stream for ProxyBlobStream<S> {
    type Item = Result<Bytes>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        match self.project() {
            ProxyBlobStreamProj::Stored(s) => s.poll_next(cx),
            ProxyBlobStreamProj::Fetched(rx) => rx.poll_recv(cx),
        }
    }
}

impl<D: StorageDriver> Filler<D> {
    /// Makes sure the blob is stored in `repo`: fetched from the upstream unless it is
    /// already there, or becomes so while this waits for a fetch in flight.
    pub(crate) async fn ensure_blob(
        self: &Arc<Self>,
        repo: &RepositoryName,
        digest: &Digest,
    ) -> Result<()> {
        if self.stored(repo, digest).await? {
            return Ok(());
        }
        let this = Arc::clone(self);
        let (repo, digest) = (repo.clone(), digest.clone());
        tokio::spawn(async move { this.fetch_blob(&repo, &digest, Waiter::Caller).await })
            .await
            .unwrap_or_else(|_| Err(bad_answer("fetching a blob from the upstream failed")))
    }

    /// Fetches the blob for a client that wants its bytes: [`Fetch::Streaming`] when they
    /// come as they are stored, [`Fetch::Stored`] when the store has them (another fetch
    /// stored them meanwhile, or the upstream did not announce the size: then after they
    /// are stored).
    pub(crate) async fn fetch_for_client(
        self: &Arc<Self>,
        repo: &RepositoryName,
        digest: &Digest,
    ) -> Result<Fetch> {
        let (client, started) = oneshot::channel();
        let this = Arc::clone(self);
        let (repo, digest) = (repo.clone(), digest.clone());
        tokio::spawn(async move {
            let _ = this
                .fetch_blob(&repo, &digest, Waiter::Client(client))
                .await;
        });
        started
            .await
            .unwrap_or_else(|_| Err(bad_answer("fetching a blob from the upstream failed")))
    }

    pub(crate) async fn stored(&self, repo: &RepositoryName, digest: &Digest) -> Result<bool> {
        match self.local.stat(repo, digest).await {
            Ok(_) => Ok(true),
            Err(Error::BlobUnknown(_)) => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// Fetches the blob into `repo` unless a fetch in flight stored it meanwhile, and tells
    /// `waiter` how that went.
    async fn fetch_blob(
        &self,
        repo: &RepositoryName,
        digest: &Digest,
        waiter: Waiter,
    ) -> Result<()> {
        let _fetch = self
            .blob_fetches
            .lock(&(repo.clone(), digest.clone()))
            .await;
        let response = match self.stored(repo, digest).await {
            Ok(true) => return waiter.finish(Ok(())).await,
            Ok(false) => self.upstream.blob(repo, digest).await,
            Err(e) => Err(e),
        };
        let response = match response {
            Ok(r) => r,
            Err(e) => return waiter.finish(Err(e)).await,
        };
        let size = response.content_length();
        let waiter = match (waiter, size) {
            (Waiter::Client(client), Some(size)) => {
                let (tx, body) = mpsc::channel(CLIENT_CHUNKS);
                match client.send(Ok(Fetch::Streaming { size, body })) {
                    Ok(()) => Waiter::Streaming(tx),
                    // The client went away: store the blob for the next one.
                    Err(_) => Waiter::Caller,
                }
            }
            (waiter, _) => waiter,
        };
        let client = match &waiter {
            Waiter::Streaming(tx) => Some(tx.clone()),
            _ => None,
        };
        // The chunk that completes the blob (and any after it, empty or too many) is held
        // back until the store has verified the whole: a body that ends means bytes that
        // are what their digest says.
        let held: Arc<Mutex<Vec<Bytes>>> = Arc::default();
        let mut forwarded = 0u64;
        let announced = size.unwrap_or(u64::MAX);
        let hold = Arc::clone(&held);
        let body = response
            .bytes_stream()
            .map_err(|e| Error::Backend {
                driver: UPSTREAM,
                operation: None,
                key: None,
                message: "reading a blob from the upstream registry failed".into(),
                retryable: true,
                source: Some(Box::new(e)),
            })
            .then(move |chunk| {
                let mut forward = None;
                if let (Some(client), Ok(bytes)) = (&client, &chunk) {
                    forwarded = forwarded.saturating_add(bytes.len() as u64);
                    if forwarded < announced {
                        forward = Some((client.clone(), bytes.clone()));
                    } else {
                        let mut held = hold.lock().unwrap_or_else(PoisonError::into_inner);
                        held.push(bytes.clone());
                    }
                }
                async move {
                    if let Some((client, bytes)) = forward {
                        // A client gone is no reason to stop storing.
                        let _ = client.send(Ok(bytes)).await;
                    }
                    chunk
                }
            });
        let stored = match self.local.put_content(repo, digest, size, body).await {
            Ok(_) => Ok(()),
            // The client sent nothing: bytes that are not what they claim are the
            // upstream's fault, and nothing was stored.
            Err(Error::DigestInvalid(_)) => Err(bad_answer(
                "the upstream registry sent a blob that does not match its digest",
            )),
            Err(Error::SizeInvalid(_)) => Err(bad_answer(
                "the upstream registry sent a blob of another size than it announced",
            )),
            Err(e) => Err(e),
        };
        let last = std::mem::take(&mut *held.lock().unwrap_or_else(PoisonError::into_inner));
        if let (Ok(()), Waiter::Streaming(client)) = (&stored, &waiter) {
            for chunk in last {
                let _ = client.send(Ok(chunk)).await;
            }
        }
        waiter.finish(stored).await
    }
}
