//! A pull-through cache: [`PullThrough`] serves the pull endpoints of another registry (the
//! *upstream*, e.g. Docker Hub or a company's central registry), storing what it serves in
//! a local driver so that later pulls are answered from it, and still answered when the
//! upstream is down or rate-limits.
//!
//! It is a [`StorageDriver`] over the local one, so the HTTP layer, access control,
//! metrics and notifications work on it unchanged. What it answers (CNCF Distribution's
//! proxy mode does the same, except where said):
//!
//! - **A manifest by tag** asks the upstream where the tag points (a `HEAD`, which Docker
//!   Hub does not count against its pull limits). If the local store has that manifest, it
//!   is served from there (and the local tag moved to it); otherwise it is fetched by
//!   digest, verified, served, and stored in the background. If the upstream cannot be
//!   reached, fails or asks to slow down (`429`), the local tag is served, as it was last
//!   seen; if there is none, the upstream's error. If the upstream says the tag does not
//!   exist (`404`), neither does it here (Distribution serves the stale local tag then).
//! - **A manifest by digest**, and **a blob**, are immutable: served locally when stored,
//!   else fetched. A blob is streamed into the local store (its digest verified on the way)
//!   and, at the same time, to the client whose pull started the fetch (see `blobs.rs`);
//!   other pulls meanwhile get it straight from the upstream (verified, not stored again).
//!   A range flows the same way, its last bytes held until the whole blob is verified (see
//!   `stream.rs`). A `HEAD` of a blob that is not stored asks the upstream and stores
//!   nothing.
//! - **Storing a manifest** (in the background, after it was served) first makes sure every
//!   blob it requires is stored, fetching those the client did not pull, then stores it with
//!   the local driver's ordinary `put_manifest`, then moves the tag if the upstream still
//!   names it. The local store thus only ever holds what a push could have made, and
//!   garbage collection, durability and concurrency across processes keep their
//!   guarantees (several caches over one bucket fetch the same content at worst twice:
//!   storing content-addressed bytes twice is harmless). Indexes are stored without their
//!   children (the cache needs `sparse_indexes`, which the server turns on): a client pulls
//!   one platform's image, and only that one is fetched.
//! - **Tag lists** and **referrers** are the upstream's (the local ones when it cannot be
//!   reached or has no referrers API); the catalog is the local store's.
//! - **Every write** (push, upload, tag, delete) is refused as unsupported: the cache only
//!   mirrors. Collections and upload expiry still run on the local store.
//! - **Expiry**: collections remove what the cache stored longer ago than its TTL
//!   ([`ProxyConfig::ttl`], as Distribution's `proxy.ttl`), tags included
//!   ([`GcOptions::manifest_ttl`]); the next pull fetches it again. A blob that expires
//!   between a pull's look and its read is served from the upstream.
//!
//! What the upstream sends is checked as a pushed manifest or blob would be: digests
//! verified, sizes limited to the local store's manifest limit, manifests parsed; an
//! answer that fails is an error to the client and stores nothing.

mod blobs;
mod challenge;
pub mod config;
mod fill;
mod stream;
mod upstream;

use std::sync::Arc;

use bytes::Bytes;
use futures::Stream;

use crate::error::{Error, Result};
use crate::observe::metrics::Metrics;
use crate::oci::{
    Descriptor, Digest, DigestAlgorithm, RangeRequest, Reference, RepositoryName, Tag,
};
use crate::storage::lifecycle::{GcOptions, GcReport, Lifecycle, RepositoryList};
use crate::storage::{
    BlobRead, BlobRedirect, FileInfo, Manifest, ManifestInfo, PutManifestOutcome, StorageDriver,
    TagList, UploadId,
};
use blobs::Fetch;
pub use config::ProxyConfig;
use fill::Filler;
pub use stream::{FetchedBytes, ProxyBlobStream};
use upstream::Upstream;

/// The driver name errors of the upstream carry ([`Error::Backend`]'s `driver`).
pub const UPSTREAM_DRIVER: &str = upstream::UPSTREAM;

/// Why a pull-through cache refuses writes.
pub(crate) const REFUSED: &str = "this registry is a pull-through cache: push to its upstream";

/// The answer to a write: unsupported, and why.
fn refused<T>() -> Result<T> {
    Err(Error::Unsupported(REFUSED.into()))
}

/// A pull-through cache of an upstream registry over the local driver `D` (see the
/// [module docs](self)).
pub struct PullThrough<D> {
    filler: Arc<Filler<D>>,
}

impl<D> std::fmt::Debug for PullThrough<D> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PullThrough")
            .field("upstream", &self.filler.upstream)
            .finish_non_exhaustive()
    }
}

/// Whether the upstream's failure lets a stale local copy be served instead.
fn upstream_unavailable(e: &Error) -> bool {
    matches!(e, Error::TooManyRequests(_)) || e.is_retryable()
}

impl<D: StorageDriver> PullThrough<D> {
    /// A cache of the upstream `config` names, storing into `local`, reading manifests of
    /// at most `max_manifest_size` bytes, counting into `metrics` (its
    /// [`proxy`](Metrics::proxy) series) if given. `Config` error when `config` is invalid
    /// or names no upstream.
    pub fn new(
        local: Arc<D>,
        config: &ProxyConfig,
        max_manifest_size: usize,
        metrics: Option<&Metrics>,
    ) -> Result<Self> {
        let invalid = |message: String| Error::Config {
            field: "proxy",
            message,
        };
        let base = config
            .validate()
            .map_err(invalid)?
            .ok_or_else(|| invalid("remote_url is not set".into()))?;
        if base.starts_with("http://") && config.credentials().is_some() {
            tracing::warn!(
                "proxy: the upstream is reached over plain http://: its credentials cross the \
                 network in clear"
            );
        }
        let upstream = Upstream::new(
            &base,
            config.credentials(),
            config
                .connect_timeout
                .unwrap_or(config::DEFAULT_CONNECT_TIMEOUT),
            config.read_timeout.unwrap_or(config::DEFAULT_READ_TIMEOUT),
            metrics.map(|m| m.proxy().clone()).unwrap_or_default(),
        )?;
        Ok(Self {
            filler: Arc::new(Filler::new(local, upstream, max_manifest_size)),
        })
    }

    /// The local driver.
    pub fn local(&self) -> &Arc<D> {
        &self.filler.local
    }

    fn local_driver(&self) -> &D {
        &self.filler.local
    }

    fn upstream(&self) -> &Upstream {
        &self.filler.upstream
    }

    /// A manifest by digest: the local one, else the upstream's (stored later).
    async fn manifest_by_digest(&self, repo: &RepositoryName, digest: &Digest) -> Result<Manifest> {
        let reference = Reference::Digest(digest.clone());
        match self.local_driver().get_manifest(repo, &reference).await {
            Err(Error::ManifestUnknown(_)) => {}
            found => return found,
        }
        let manifest = self
            .upstream()
            .manifest(repo, &reference, self.filler.max_manifest_size)
            .await?;
        self.filler.fill_later(repo, None, manifest.clone());
        Ok(manifest)
    }

    /// A manifest by tag, as the upstream names it now (see the module docs).
    async fn manifest_by_tag(&self, repo: &RepositoryName, tag: &Tag) -> Result<Manifest> {
        let reference = Reference::Tag(tag.clone());
        let named = match self.upstream().manifest_info(repo, &reference).await {
            Ok(named) => named,
            Err(e) if upstream_unavailable(&e) => return self.stale(repo, &reference, e).await,
            Err(e) => return Err(e),
        };
        if let Some(info) = &named {
            match self
                .local_driver()
                .get_manifest(repo, &Reference::Digest(info.digest.clone()))
                .await
            {
                Ok(m) => {
                    self.filler.follow_tag(repo, tag, &m.info.digest).await;
                    return Ok(m);
                }
                Err(Error::ManifestUnknown(_)) => {}
                Err(e) => return Err(e),
            }
        }
        let by = match named {
            Some(info) => Reference::Digest(info.digest),
            None => reference,
        };
        let manifest = match self
            .upstream()
            .manifest(repo, &by, self.filler.max_manifest_size)
            .await
        {
            Ok(m) => m,
            // Gone between the two requests: the tag as last seen, as if the first failed.
            Err(e) if upstream_unavailable(&e) => {
                return self.stale(repo, &Reference::Tag(tag.clone()), e).await;
            }
            Err(e) => return Err(e),
        };
        self.filler
            .fill_later(repo, Some(tag.clone()), manifest.clone());
        Ok(manifest)
    }

    /// What the store answered in place of the upstream, which failed with `e` (answered
    /// when the store has nothing either), counted as a stale answer.
    fn stale_or<T>(&self, stored: Result<T>, e: Error) -> Result<T> {
        tracing::debug!(error = %e, "pull-through: the upstream cannot answer, the store does");
        let answer = stored.map_err(|_| e);
        if answer.is_ok() {
            self.upstream().metrics.record_stale();
        }
        answer
    }

    /// The local manifest of `reference` when the upstream failed with `e` (which is
    /// answered when there is no local one).
    async fn stale(
        &self,
        repo: &RepositoryName,
        reference: &Reference,
        e: Error,
    ) -> Result<Manifest> {
        let stored = self.local_driver().get_manifest(repo, reference).await;
        self.stale_or(stored, e)
    }
}

impl<D: StorageDriver> StorageDriver for PullThrough<D> {
    type BlobStream = ProxyBlobStream<D::BlobStream>;
    type Upload = D::Upload;

    fn driver_name(&self) -> &'static str {
        self.local_driver().driver_name()
    }

    async fn stat(&self, repo: &RepositoryName, digest: &Digest) -> Result<FileInfo> {
        match self.local_driver().stat(repo, digest).await {
            Err(Error::BlobUnknown(_)) => {}
            found => return found,
        }
        let size = self.upstream().blob_size(repo, digest).await?;
        Ok(FileInfo {
            path: String::new(),
            size,
            digest: digest.clone(),
        })
    }

    async fn get_content(
        &self,
        repo: &RepositoryName,
        digest: &Digest,
        range: Option<RangeRequest>,
    ) -> Result<BlobRead<Self::BlobStream>> {
        let stored = |read: BlobRead<D::BlobStream>| BlobRead {
            info: read.info,
            range: read.range,
            stream: ProxyBlobStream::Stored(read.stream),
        };
        match self.local_driver().get_content(repo, digest, range).await {
            Err(Error::BlobUnknown(_)) => {}
            found => return found.map(stored),
        }
        // A range, as the whole blob, flows as the blob is fetched (its last bytes once the
        // whole blob is verified).
        let read = match self.filler.fetch_for_client(repo, digest).await? {
            Fetch::Stored => match self.local_driver().get_content(repo, digest, range).await {
                // Expired or collected between the fetch's look and this read (a store with
                // a TTL): straight from the upstream, as a pull of a blob being fetched.
                Err(Error::BlobUnknown(_)) => self.filler.pass_through(repo, digest).await?,
                found => return found.map(stored),
            },
            fetching => Some(fetching),
        };
        match read {
            Some(Fetch::Streaming { size, body }) => {
                let range = range.map(|r| r.resolve(size)).transpose()?;
                Ok(BlobRead {
                    info: FileInfo {
                        path: String::new(),
                        size,
                        digest: digest.clone(),
                    },
                    range,
                    stream: ProxyBlobStream::Fetched(FetchedBytes::new(body, size, range)),
                })
            }
            _ => Err(Error::BlobUnknown(digest.clone())),
        }
    }

    async fn blob_redirect(
        &self,
        repo: &RepositoryName,
        digest: &Digest,
    ) -> Result<Option<BlobRedirect>> {
        match self.local_driver().blob_redirect(repo, digest).await {
            Err(Error::BlobUnknown(_)) => {}
            found => return found,
        }
        self.filler.ensure_blob(repo, digest).await?;
        self.local_driver().blob_redirect(repo, digest).await
    }

    async fn put_content<S>(
        &self,
        _: &RepositoryName,
        _: &Digest,
        _: Option<u64>,
        _: S,
    ) -> Result<FileInfo>
    where
        S: Stream<Item = Result<Bytes>> + Send,
    {
        refused()
    }

    async fn delete(&self, _: &RepositoryName, _: &Digest) -> Result<()> {
        refused()
    }

    async fn mount_blob(
        &self,
        _: &RepositoryName,
        _: &RepositoryName,
        _: &Digest,
    ) -> Result<FileInfo> {
        refused()
    }

    async fn start_upload(&self, _: &RepositoryName, _: DigestAlgorithm) -> Result<Self::Upload> {
        refused()
    }

    async fn put_upload_chunk<S>(
        &self,
        _: &RepositoryName,
        _: &UploadId,
        _: Option<u64>,
        _: Option<u64>,
        _: S,
    ) -> Result<Self::Upload>
    where
        S: Stream<Item = Result<Bytes>> + Send,
    {
        refused()
    }

    async fn get_upload_progress(&self, _: &RepositoryName, _: &UploadId) -> Result<Self::Upload> {
        refused()
    }

    async fn abort_upload(&self, _: &RepositoryName, _: &UploadId) -> Result<()> {
        refused()
    }

    async fn finish_upload<S>(
        &self,
        _: &RepositoryName,
        _: &UploadId,
        _: &Digest,
        _: Option<u64>,
        _: S,
    ) -> Result<FileInfo>
    where
        S: Stream<Item = Result<Bytes>> + Send,
    {
        refused()
    }

    async fn get_manifest(&self, repo: &RepositoryName, reference: &Reference) -> Result<Manifest> {
        match reference {
            Reference::Digest(d) => self.manifest_by_digest(repo, d).await,
            Reference::Tag(t) => self.manifest_by_tag(repo, t).await,
        }
    }

    async fn stat_manifest(
        &self,
        repo: &RepositoryName,
        reference: &Reference,
    ) -> Result<ManifestInfo> {
        if let Reference::Digest(_) = reference {
            match self.local_driver().stat_manifest(repo, reference).await {
                Err(Error::ManifestUnknown(_)) => {}
                found => return found,
            }
        }
        let named = match self.upstream().manifest_info(repo, reference).await {
            Ok(named) => named,
            Err(e) if upstream_unavailable(&e) && reference.as_tag().is_some() => {
                let stored = self.local_driver().stat_manifest(repo, reference).await;
                return self.stale_or(stored, e);
            }
            Err(e) => return Err(e),
        };
        match (named, reference) {
            (Some(info), Reference::Tag(tag)) => {
                // Stored already: the local tag follows (as a GET would move it). Not yet:
                // the fill that stores it will (a client's GET by digest comes next).
                if self
                    .local_driver()
                    .stat_manifest(repo, &Reference::Digest(info.digest.clone()))
                    .await
                    .is_ok()
                {
                    self.filler.follow_tag(repo, tag, &info.digest).await;
                } else {
                    self.filler.want_tag(repo, tag, &info.digest);
                }
                Ok(info)
            }
            (Some(info), Reference::Digest(_)) => Ok(info),
            // The upstream's HEAD did not tell: its GET does.
            (None, _) => Ok(self.get_manifest(repo, reference).await?.info),
        }
    }

    async fn put_manifest(
        &self,
        _: &RepositoryName,
        _: &Reference,
        _: Option<&str>,
        _: Bytes,
    ) -> Result<PutManifestOutcome> {
        refused()
    }

    async fn delete_manifest(&self, _: &RepositoryName, _: &Digest) -> Result<()> {
        refused()
    }

    async fn resolve_tag(&self, repo: &RepositoryName, tag: &Tag) -> Result<Digest> {
        Ok(self
            .stat_manifest(repo, &Reference::Tag(tag.clone()))
            .await?
            .digest)
    }

    async fn get_tags(
        &self,
        repo: &RepositoryName,
        n: Option<usize>,
        last: Option<&str>,
    ) -> Result<TagList> {
        match self.upstream().tags(repo, n, last).await {
            Err(e) if upstream_unavailable(&e) => {
                let stored = self.local_driver().get_tags(repo, n, last).await;
                self.stale_or(stored, e)
            }
            answered => answered,
        }
    }

    async fn tag_manifest(&self, _: &RepositoryName, _: &Tag, _: &Digest) -> Result<()> {
        refused()
    }

    async fn untag_manifest(&self, _: &RepositoryName, _: &Tag) -> Result<()> {
        refused()
    }

    async fn referrers(
        &self,
        repo: &RepositoryName,
        subject: &Digest,
        artifact_type: Option<&str>,
    ) -> Result<Vec<Descriptor>> {
        match self
            .upstream()
            .referrers(repo, subject, artifact_type)
            .await
        {
            // The upstream may ignore the filter (spec: it then says so in
            // `OCI-Filters-Applied`, which is not relayed): apply it here.
            Ok(Some(mut list)) => {
                if let Some(t) = artifact_type {
                    list.retain(|d| d.artifact_type.as_deref() == Some(t));
                }
                Ok(list)
            }
            Ok(None) => {
                self.local_driver()
                    .referrers(repo, subject, artifact_type)
                    .await
            }
            Err(e) if upstream_unavailable(&e) => {
                let stored = self
                    .local_driver()
                    .referrers(repo, subject, artifact_type)
                    .await;
                self.stale_or(stored, e)
            }
            Err(e) => Err(e),
        }
    }
}

/// The lifecycle operations are the local store's.
impl<D: Lifecycle> Lifecycle for PullThrough<D> {
    fn collect_garbage(
        &self,
        options: &GcOptions,
    ) -> impl Future<Output = Result<GcReport>> + Send {
        self.filler.local.collect_garbage(options)
    }

    fn expire_uploads(
        &self,
        ttl: std::time::Duration,
        dry_run: bool,
    ) -> impl Future<Output = Result<GcReport>> + Send {
        self.filler.local.expire_uploads(ttl, dry_run)
    }

    fn repositories(
        &self,
        n: Option<usize>,
        last: Option<&str>,
    ) -> impl Future<Output = Result<RepositoryList>> + Send {
        self.filler.local.repositories(n, last)
    }

    fn stop_collections(&self) {
        self.filler.local.stop_collections()
    }
}
