//! Filling the local store from the upstream: a manifest stored in the background once
//! every blob it requires is (blobs are fetched by [`blobs`](super::blobs)).
//!
//! Everything goes through the local driver's ordinary push operations (`put_content`
//! verifies the digest while the bytes stream in, `put_manifest` checks what the manifest
//! references), so a filled store is exactly what pushes of the same content would have
//! made, and the guarantees of the store (durability, garbage collection safe across
//! processes) hold unchanged.

use std::collections::HashSet;
use std::sync::{Arc, Mutex, PoisonError};

use futures::{StreamExt, TryStreamExt};

use super::upstream::Upstream;
use crate::error::{Error, Result};
use crate::oci::{Digest, Reference, RepositoryName, Tag};
use crate::storage::key_locks::KeyLocks;
use crate::storage::{Manifest, StorageDriver};

/// Most manifests being filled in the background at once in this process; past it, a
/// manifest is served without being stored (the next pull stores it).
const MAX_PENDING_FILLS: usize = 256;

/// Blobs of one manifest fetched at once when storing it.
const FILL_CONCURRENCY: usize = 4;

/// What fills share: the local store, the upstream and the in-flight work.
pub(crate) struct Filler<D> {
    pub(crate) local: Arc<D>,
    pub(crate) upstream: Upstream,
    /// Fetches of blobs in flight, by repository and digest.
    pub(super) blob_fetches: KeyLocks<(RepositoryName, Digest)>,
    /// Manifests being filled in the background, by repository and digest.
    pending: Mutex<HashSet<(RepositoryName, Digest)>>,
    /// Largest manifest read from the upstream.
    pub(crate) max_manifest_size: usize,
}

impl<D: StorageDriver> Filler<D> {
    pub(crate) fn new(local: Arc<D>, upstream: Upstream, max_manifest_size: usize) -> Self {
        Self {
            local,
            upstream,
            blob_fetches: KeyLocks::default(),
            pending: Mutex::default(),
            max_manifest_size,
        }
    }

    /// Points the local `tag` at `digest` unless it already does. A failure only costs a
    /// later lookup, so it is logged and not reported.
    pub(crate) async fn follow_tag(&self, repo: &RepositoryName, tag: &Tag, digest: &Digest) {
        match self.local.resolve_tag(repo, tag).await {
            Ok(current) if &current == digest => return,
            Ok(_) | Err(Error::ManifestUnknown(_)) => {}
            Err(e) => {
                tracing::warn!(%repo, %tag, error = %e, "pull-through: reading a cached tag failed");
                return;
            }
        }
        if let Err(e) = self.local.tag_manifest(repo, tag, digest).await {
            tracing::warn!(%repo, %tag, error = %e, "pull-through: moving a cached tag failed");
        }
    }
}

impl<D: StorageDriver> Filler<D> {
    /// Stores `manifest` (fetched for `tag`, if by tag) in the background: every blob it
    /// requires first, then the manifest, then the tag if the upstream still names it.
    /// Does nothing if the same manifest is being filled already.
    pub(crate) fn fill_later(
        self: &Arc<Self>,
        repo: &RepositoryName,
        tag: Option<Tag>,
        manifest: Manifest,
    ) {
        let key = (repo.clone(), manifest.info.digest.clone());
        {
            let mut pending = self.pending.lock().unwrap_or_else(PoisonError::into_inner);
            if pending.len() >= MAX_PENDING_FILLS || !pending.insert(key.clone()) {
                return;
            }
        }
        let this = Arc::clone(self);
        tokio::spawn(async move {
            let (repo, digest) = &key;
            if let Err(e) = this.fill(repo, tag.as_ref(), manifest).await {
                tracing::info!(%repo, %digest, error = %e, "pull-through: a manifest was served but not stored");
            }
            this.pending
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .remove(&key);
        });
    }

    async fn fill(
        self: &Arc<Self>,
        repo: &RepositoryName,
        tag: Option<&Tag>,
        manifest: Manifest,
    ) -> Result<()> {
        let summary =
            crate::oci::manifest::inspect(&manifest.bytes, Some(&manifest.info.media_type))?;
        // A few at a time, as clients pull layers.
        let blobs: Vec<Digest> = summary.required_blobs().map(|b| b.digest.clone()).collect();
        futures::stream::iter(blobs)
            .map(|digest| {
                let (this, repo) = (Arc::clone(self), repo.clone());
                async move { this.ensure_blob(&repo, &digest).await }
            })
            .buffer_unordered(FILL_CONCURRENCY)
            .try_collect::<()>()
            .await?;
        let digest = manifest.info.digest.clone();
        self.local
            .put_manifest(
                repo,
                &Reference::Digest(digest.clone()),
                Some(&manifest.info.media_type),
                manifest.bytes,
            )
            .await?;
        if let Some(tag) = tag {
            // The tag may have moved upstream while the blobs came: follow it only if it
            // still names this manifest (a later pull follows it where it went).
            let now = self
                .upstream
                .manifest_info(repo, &Reference::Tag(tag.clone()))
                .await?;
            if now.is_some_and(|info| info.digest == digest) {
                self.follow_tag(repo, tag, &digest).await;
            }
        }
        tracing::info!(%repo, %digest, "pull-through: manifest stored");
        Ok(())
    }
}
