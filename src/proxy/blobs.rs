//! Blobs the cache does not hold: fetched into the local store once per repository and
//! digest in this process, in a task of its own (a client that goes away does not cut a
//! fetch that the next pull will find stored), with the store's ordinary `put_content` (the
//! digest verified while the bytes stream in). What else needs the blob meanwhile either
//! waits for that fetch (a manifest being stored), or, for a client pulling it, gets it
//! straight from the upstream, verified the same way and not stored again, rather than
//! wait for the whole fetch without a byte.
//!
//! The client whose pull started a fetch gets the bytes as they are stored, not after: a
//! large layer from a slow upstream starts flowing at once, as from the upstream itself,
//! instead of after a wait that a client may take for a hung server. Its stream ends
//! cleanly only once the store has verified and kept the blob (the chunk that completes it
//! is held back until then); bytes that turn out not to be what their digest says end it
//! with an error (the connection is cut, the client's own digest check fails too), and
//! nothing is stored.

use std::sync::{Arc, Mutex, PoisonError};

use bytes::Bytes;
use futures::{StreamExt, TryStreamExt};
use tokio::sync::{mpsc, oneshot};

use super::fill::Filler;
use super::upstream::{bad_answer, unreachable};
use crate::error::{Error, Result};
use crate::oci::{Digest, RepositoryName};
use crate::storage::StorageDriver;
use crate::storage::hashing::Hasher;

/// Chunks in flight between a fetch and its client (a few MiB): a client further behind is
/// dropped rather than slowing the fetch, and with it every other pull of the blob.
const CLIENT_CHUNKS: usize = 256;

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
    Streaming(ClientSlot),
}

impl Waiter {
    /// Reports how the fetch ended: to the caller as its result, to a client that has not
    /// started reading as the start of its answer, to a streaming one as the end of its
    /// stream (the `held` chunks once the blob is stored, an error otherwise).
    async fn finish(self, result: Result<()>, held: Vec<Bytes>) -> Result<()> {
        match self {
            Waiter::Caller => result,
            Waiter::Client(client) => {
                let _ = client.send(result.map(|()| Fetch::Stored));
                Ok(())
            }
            Waiter::Streaming(slot) => {
                let Some(client) = lock(&slot).take() else {
                    return Ok(());
                };
                match result {
                    Ok(()) => {
                        for chunk in held {
                            if client.send(Ok(chunk)).await.is_err() {
                                break;
                            }
                        }
                    }
                    // When the client is too far behind to take the error, dropping its
                    // end cuts its answer short all the same.
                    Err(e) => {
                        let _ = client.try_send(Err(e));
                    }
                }
                Ok(())
            }
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
        if self.blob_fetches.is_held(&(repo.clone(), digest.clone())) {
            // Another pull is fetching it: rather than wait for the whole fetch without a
            // byte, this one gets the upstream's bytes directly.
            if let Some(fetch) = self.pass_through(repo, digest).await? {
                return Ok(fetch);
            }
        }
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

    /// The blob straight from the upstream, not stored (the fetch in flight stores it),
    /// verified as it streams: its last chunk is held back until the digest matches, as for
    /// a fetch. `None` when the upstream does not announce the size (then the caller waits
    /// for the fetch in flight after all).
    pub(crate) async fn pass_through(
        &self,
        repo: &RepositoryName,
        digest: &Digest,
    ) -> Result<Option<Fetch>> {
        let permit = Arc::clone(&self.fetches).try_acquire_owned().map_err(|_| {
            Error::TooManyRequests("too many blobs are being fetched upstream".into())
        })?;
        let response = self.upstream.blob(repo, digest).await?;
        let Some(size) = response.content_length() else {
            return Ok(None);
        };
        let (client, body) = mpsc::channel(CLIENT_CHUNKS);
        let digest = digest.clone();
        tokio::spawn(async move {
            let _permit = permit;
            let mut hasher = Hasher::new(digest.algorithm());
            let mut bytes = response.bytes_stream();
            let (mut seen, mut held) = (0u64, Vec::new());
            while let Some(chunk) = bytes.next().await {
                let chunk = match chunk {
                    Ok(chunk) => chunk,
                    Err(e) => {
                        let read = "reading a blob from the upstream registry failed";
                        let _ = client.send(Err(unreachable(read, e))).await;
                        return;
                    }
                };
                hasher.update(&chunk);
                seen = seen.saturating_add(chunk.len() as u64);
                // This client alone waits on it: it may go at the client's pace.
                if seen < size {
                    if client.send(Ok(chunk)).await.is_err() {
                        return;
                    }
                } else {
                    held.push(chunk);
                }
            }
            if seen != size || hasher.digest() != digest {
                let wrong = "the upstream registry sent a blob that does not match its digest";
                let _ = client.send(Err(bad_answer(wrong))).await;
                return;
            }
            for chunk in held {
                if client.send(Ok(chunk)).await.is_err() {
                    return;
                }
            }
        });
        Ok(Some(Fetch::Streaming { size, body }))
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
        let fetch = self
            .blob_fetches
            .lock(&(repo.clone(), digest.clone()))
            .await;
        match self.stored(repo, digest).await {
            Ok(true) => return waiter.finish(Ok(()), Vec::new()).await,
            Ok(false) => {}
            Err(e) => return waiter.finish(Err(e), Vec::new()).await,
        }
        // Fetches running at once are bounded. A fill (storing a manifest's blobs) waits
        // for a permit; a client's pull past the bound is refused with `429` at once rather
        // than held without a byte.
        let permit = match &waiter {
            Waiter::Caller => Arc::clone(&self.fetches).acquire_owned().await.ok(),
            _ => Arc::clone(&self.fetches).try_acquire_owned().ok(),
        };
        let Some(permit) = permit else {
            let busy = Error::TooManyRequests("too many blobs are being fetched upstream".into());
            return waiter.finish(Err(busy), Vec::new()).await;
        };
        let response = match self.upstream.blob(repo, digest).await {
            Ok(r) => r,
            Err(e) => return waiter.finish(Err(e), Vec::new()).await,
        };
        let size = response.content_length();
        let waiter = match (waiter, size) {
            (Waiter::Client(client), Some(size)) => {
                let (tx, body) = mpsc::channel(CLIENT_CHUNKS);
                match client.send(Ok(Fetch::Streaming { size, body })) {
                    Ok(()) => Waiter::Streaming(Arc::new(Mutex::new(Some(tx)))),
                    // The client went away: store the blob for the next one.
                    Err(_) => Waiter::Caller,
                }
            }
            (waiter, _) => waiter,
        };
        let client = match &waiter {
            Waiter::Streaming(slot) => Some(Arc::clone(slot)),
            _ => None,
        };
        // The chunk that completes the blob (and any after it, empty or too many) is held
        // back until the store has verified the whole: a body that ends means bytes that
        // are what their digest says.
        let held: Arc<Mutex<Vec<Bytes>>> = Arc::default();
        let hold = Arc::clone(&held);
        let mut forwarded = 0u64;
        let announced = size.unwrap_or(u64::MAX);
        let body = response
            .bytes_stream()
            .map_err(|e| unreachable("reading a blob from the upstream registry failed", e))
            .inspect(move |chunk| {
                let (Some(client), Ok(bytes)) = (&client, chunk) else {
                    return;
                };
                forwarded = forwarded.saturating_add(bytes.len() as u64);
                if forwarded < announced {
                    forward(client, bytes.clone());
                } else {
                    lock(&hold).push(bytes.clone());
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
        // Stored (or not): other pulls may go on while the client gets the rest.
        drop((permit, fetch));
        let last = std::mem::take(&mut *lock(&held));
        waiter.finish(stored, last).await
    }
}

/// A client's end of a fetch: `None` once it was dropped.
type ClientSlot = Arc<Mutex<Option<mpsc::Sender<Result<Bytes>>>>>;

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Passes a chunk to the client without waiting: a client that cannot take it (gone, or
/// [`CLIENT_CHUNKS`] behind) is dropped, its answer cut short, and storing goes on at the
/// upstream's pace.
fn forward(client: &ClientSlot, bytes: Bytes) {
    let mut slot = lock(client);
    if let Some(tx) = slot.as_ref()
        && tx.try_send(Ok(bytes)).is_err()
    {
        *slot = None;
    }
}
