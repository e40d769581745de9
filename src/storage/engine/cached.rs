//! The read paths' use of the [metadata cache](crate::storage::cache), and removals that keep
//! it right. Writes never read through here (see the cache's module documentation).

use std::future::Future;

use crate::error::{Error, Result};
use crate::oci::{Digest, RepositoryName, Tag};
use crate::storage::Manifest;
use crate::storage::backend::Backend;
use crate::storage::cache::{MetadataCache, Ticket};
use crate::storage::layout::{self, Key};

use super::Engine;
use super::manifest_record::target_digest;

impl<B: Backend> Engine<B> {
    /// Answers from the cache, or reads the store (`read`) and keeps a positive answer.
    async fn through_cache<T: Clone>(
        &self,
        key: &Key,
        lookup: impl FnOnce(&MetadataCache, &Key) -> Option<T>,
        read: impl Future<Output = Result<Option<T>>>,
        fill: impl FnOnce(&MetadataCache, Ticket, &Key, T),
    ) -> Result<Option<T>> {
        let Some(cache) = self.cache.as_ref().filter(|c| c.caches(key.class())) else {
            return read.await;
        };
        if let Some(hit) = lookup(cache, key) {
            return Ok(Some(hit));
        }
        // Before the read starts (`read` is lazy): see `MetadataCache::fill_size`.
        let ticket = cache.ticket();
        let value = read.await?;
        if let Some(value) = &value {
            fill(cache, ticket, key, value.clone());
        }
        Ok(value)
    }

    /// [`linked_size`](Self::linked_size) for read paths: `HEAD` and `GET` of a blob.
    pub(super) async fn linked_size_cached(
        &self,
        repo: &RepositoryName,
        digest: &Digest,
    ) -> Result<Option<u64>> {
        self.through_cache(
            &layout::layer_link(repo, digest),
            MetadataCache::size,
            self.linked_size(repo, digest),
            MetadataCache::fill_size,
        )
        .await
    }

    /// A stored manifest for read paths; `MANIFEST_UNKNOWN` if absent.
    pub(super) async fn read_manifest_cached(
        &self,
        repo: &RepositoryName,
        digest: &Digest,
    ) -> Result<Manifest> {
        self.through_cache(
            &layout::manifest(repo, digest),
            MetadataCache::manifest,
            self.stored_manifest(repo, digest),
            MetadataCache::fill_manifest,
        )
        .await?
        .ok_or_else(|| Error::ManifestUnknown(digest.to_string()))
    }

    /// The digest a tag points to, for read paths; `MANIFEST_UNKNOWN` if the tag is absent.
    pub(super) async fn tag_target_cached(
        &self,
        repo: &RepositoryName,
        tag: &Tag,
    ) -> Result<Digest> {
        let key = layout::tag(repo, tag);
        self.through_cache(
            &key,
            MetadataCache::tag,
            self.tag_target(&key),
            MetadataCache::fill_tag,
        )
        .await?
        .ok_or_else(|| Error::ManifestUnknown(format!("tag {tag}")))
    }

    /// The digest a tag's stored content names, read from the store; `None` if absent.
    pub(super) async fn tag_target(&self, key: &Key) -> Result<Option<Digest>> {
        match self.backend.read(key).await? {
            None => Ok(None),
            Some(raw) => target_digest(&raw)
                .map(Some)
                .ok_or_else(|| self.corrupt(key)),
        }
    }

    /// Removes `key` from the backend and drops what the cache holds about it: every removal
    /// of a link, manifest record or tag goes through here.
    pub(crate) async fn remove_key(&self, key: &Key) -> Result<()> {
        let removed = self.backend.remove(key).await;
        // Also after a failed removal, which may have happened anyway.
        self.forget(key);
        removed
    }

    /// Drops what the cache holds about `key`, which was just rewritten (a tag moved).
    pub(crate) fn forget(&self, key: &Key) {
        if let Some(cache) = &self.cache {
            cache.invalidate(key);
        }
    }
}
