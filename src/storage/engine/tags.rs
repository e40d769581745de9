//! Tags: resolution, pagination, tagging and untagging.

use crate::error::{Error, Result};
use crate::oci::{Digest, RepositoryName, Tag};
use crate::storage::TagList;
use crate::storage::backend::Backend;
use crate::storage::layout;

use super::Engine;

impl<B: Backend> Engine<B> {
    /// Implements [`StorageDriver::resolve_tag`](crate::storage::StorageDriver::resolve_tag).
    pub(super) async fn tag_resolve(&self, repo: &RepositoryName, tag: &Tag) -> Result<Digest> {
        self.tag_target_cached(repo, tag).await
    }

    /// Implements [`StorageDriver::get_tags`](crate::storage::StorageDriver::get_tags).
    pub(super) async fn tag_list(
        &self,
        repo: &RepositoryName,
        n: Option<usize>,
        last: Option<&str>,
    ) -> Result<TagList> {
        if n == Some(0) {
            // Spec "Listing Tags": n=0 gives an empty list (the repository must still exist).
            if !self.repository_exists(repo).await? {
                return Err(Error::NameUnknown(repo.to_string()));
            }
            return Ok(TagList::default());
        }
        let mut tags = self
            .backend
            .list(
                &layout::tags_dir(repo),
                last,
                n.map(|n| n.saturating_add(1)),
            )
            .await?;
        if tags.is_empty() && !self.repository_exists(repo).await? {
            return Err(Error::NameUnknown(repo.to_string()));
        }
        let has_more = n.is_some_and(|n| tags.len() > n);
        if let Some(n) = n {
            tags.truncate(n);
        }
        Ok(TagList { tags, has_more })
    }

    /// Implements [`StorageDriver::tag_manifest`](crate::storage::StorageDriver::tag_manifest).
    pub(super) async fn tag_set(
        &self,
        repo: &RepositoryName,
        tag: &Tag,
        digest: &Digest,
    ) -> Result<()> {
        self.manifest_tag(repo, tag, digest).await
    }

    /// Implements [`StorageDriver::untag_manifest`](crate::storage::StorageDriver::untag_manifest).
    pub(super) async fn tag_remove(&self, repo: &RepositoryName, tag: &Tag) -> Result<()> {
        let key = layout::tag(repo, tag);
        if !self.backend.exists(&key).await? {
            return Err(Error::ManifestUnknown(format!("tag {tag}")));
        }
        self.refuse_untagging(repo, tag)?;
        self.remove_key(&key).await
    }

    /// Whether the repository holds any tag, manifest or blob link (tags live in the
    /// manifests directory).
    async fn repository_exists(&self, repo: &RepositoryName) -> Result<bool> {
        Ok(self.backend.any_under(&layout::manifests_dir(repo)).await?
            || self.backend.any_under(&layout::layers_dir(repo)).await?)
    }
}
