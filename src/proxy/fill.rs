//! Filling the local store from the upstream: a manifest stored in the background once
//! every blob it requires is (blobs are fetched by [`blobs`](super::blobs)).
//!
//! Everything goes through the local driver's ordinary push operations (`put_content`
//! verifies the digest while the bytes stream in, `put_manifest` checks what the manifest
//! references), so a filled store is exactly what pushes of the same content would have
//! made, and the guarantees of the store (durability, garbage collection safe across
//! processes) hold unchanged.

use std::collections::{HashMap, HashSet};
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

/// Most blobs fetched from the upstream at once in this process (a fetch runs on after the
/// client that started it went away, so clients must not be able to start any number).
const MAX_FETCHES: usize = 64;

/// Blobs of one manifest fetched at once when storing it.
const FILL_CONCURRENCY: usize = 4;

/// What fills share: the local store, the upstream and the in-flight work.
pub(crate) struct Filler<D> {
    pub(crate) local: Arc<D>,
    pub(crate) upstream: Upstream,
    /// Fetches of blobs in flight, by repository and digest.
    pub(super) blob_fetches: KeyLocks<(RepositoryName, Digest)>,
    /// Blob fetches from the upstream running at once (see `blobs.rs`).
    pub(super) fetches: Arc<tokio::sync::Semaphore>,
    /// Manifests being filled in the background, by repository and digest.
    pending: Mutex<HashSet<(RepositoryName, Digest)>>,
    /// Tags the upstream named for manifests not stored yet (a client's `HEAD` by tag
    /// before its `GET` by digest, as containerd pulls), followed once they are.
    wanted_tags: Mutex<HashMap<(RepositoryName, Digest), Tag>>,
    /// Largest manifest read from the upstream.
    pub(crate) max_manifest_size: usize,
}

impl<D: StorageDriver> Filler<D> {
    pub(crate) fn new(local: Arc<D>, upstream: Upstream, max_manifest_size: usize) -> Self {
        Self {
            local,
            upstream,
            blob_fetches: KeyLocks::default(),
            fetches: Arc::new(tokio::sync::Semaphore::new(MAX_FETCHES)),
            pending: Mutex::default(),
            wanted_tags: Mutex::default(),
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
        match self.local.tag_manifest(repo, tag, digest).await {
            Ok(()) => {}
            // The manifest (or a blob of it) expired since it was read: the next pull by tag
            // stores it again.
            Err(e @ (Error::ManifestUnknown(_) | Error::ManifestBlobUnknown(_))) => {
                tracing::debug!(%repo, %tag, error = %e, "pull-through: a cached tag was not moved");
            }
            Err(e) => {
                tracing::warn!(%repo, %tag, error = %e, "pull-through: moving a cached tag failed");
            }
        }
    }
}

impl<D: StorageDriver> Filler<D> {
    /// Remembers that the upstream named `digest` as `tag`, for the fill that stores it
    /// (the last tag named wins; the map is bounded, a forgotten tag is followed at the next
    /// pull by tag).
    pub(crate) fn want_tag(&self, repo: &RepositoryName, tag: &Tag, digest: &Digest) {
        let mut wanted = self
            .wanted_tags
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if wanted.len() >= MAX_PENDING_FILLS * 4 {
            wanted.clear();
        }
        wanted.insert((repo.clone(), digest.clone()), tag.clone());
    }

    /// Stores `manifest` (fetched for `tag`, if by tag) in the background: every blob it
    /// requires first, then the manifest, then the tag the upstream named for it, if it
    /// still does. Only one fill of a manifest runs at once (a tag given meanwhile is
    /// followed by it).
    pub(crate) fn fill_later(
        self: &Arc<Self>,
        repo: &RepositoryName,
        tag: Option<Tag>,
        manifest: Manifest,
    ) {
        let key = (repo.clone(), manifest.info.digest.clone());
        if let Some(tag) = &tag {
            // Followed by whichever fill of the manifest stores it.
            self.want_tag(repo, tag, &manifest.info.digest);
        }
        {
            let mut pending = self.pending.lock().unwrap_or_else(PoisonError::into_inner);
            if pending.len() >= MAX_PENDING_FILLS || !pending.insert(key.clone()) {
                return;
            }
        }
        let this = Arc::clone(self);
        tokio::spawn(async move {
            let (repo, digest) = &key;
            if let Err(e) = this.fill(repo, manifest).await {
                tracing::info!(%repo, %digest, error = %e, "pull-through: a manifest was served but not stored");
            }
            this.pending
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .remove(&key);
        });
    }

    async fn fill(self: &Arc<Self>, repo: &RepositoryName, manifest: Manifest) -> Result<()> {
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
        let tag = self
            .wanted_tags
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(&(repo.clone(), digest.clone()));
        if let Some(tag) = &tag {
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
