//! Immutable tags ([`immutable`](crate::storage::immutable)): created, never moved, never
//! removed by a delete.
//!
//! Why this holds across processes:
//! - **Creating.** Every write of a covered tag is a [`Backend::create_tag`] under the tag's
//!   locks: two pushes of different manifests to one new tag, in any processes, cannot both
//!   create it (the filesystem orders them with its cross-process tag lock, S3 and GCS with
//!   a conditional create); the second finds the first's tag and is refused unless it names
//!   the same manifest.
//! - **Deleting a manifest** first looks for covered tags naming it (`DENIED` if one does,
//!   nothing changed), then removes the mutable tags and the record as usual, never a covered
//!   tag. A push that created a covered tag in between and found the record still stored
//!   (`publish_manifest` looks after writing the tag) is ordered after the delete: the
//!   delete's last look finds its tag and stores the record again, as the push would had it
//!   looked a moment later. A collection that condemned what the manifest references in
//!   that moment refuses the record, and the tag is taken back: the push is then ordered
//!   before the delete (the one case where a delete removes a covered tag).

use futures::StreamExt;

use crate::error::{Error, Result};
use crate::oci::{Digest, RepositoryName, Tag, manifest};
use crate::storage::Manifest;
use crate::storage::backend::{Backend, TagTarget};
use crate::storage::layout::{self, Key};

use super::Engine;
use super::manifest_record::{encode_manifest, names_manifest};

/// How many times a tag found removed right after a refused create is created again.
const CREATE_ATTEMPTS: usize = 3;
/// How many covered tags a delete reads at once.
const READS_IN_FLIGHT: usize = 16;

impl<B: Backend> Engine<B> {
    /// Whether the tag `tag` of `repo` is immutable.
    pub(super) fn is_immutable(&self, repo: &RepositoryName, tag: &str) -> bool {
        self.options.immutable_tags.covers(repo, tag)
    }

    /// Refuses early (`DENIED`, before a push stores anything) to point the immutable tag
    /// `tag` at `digest` when it names another manifest. The write itself checks again
    /// ([`create_immutable_tag`](Self::create_immutable_tag)): this look only spares a
    /// refused push its record.
    pub(super) async fn refuse_moving(
        &self,
        repo: &RepositoryName,
        tag: &Tag,
        digest: &Digest,
    ) -> Result<()> {
        if !self.is_immutable(repo, tag.as_str()) {
            return Ok(());
        }
        match self.backend.read(&layout::tag(repo, tag)).await? {
            Some(target) if !names_manifest(&target, digest) => Err(moved(tag)),
            _ => Ok(()),
        }
    }

    /// Points the immutable tag at `key` at `target`, holding the tag's locks: created if
    /// absent, written again if it names `target` already (which also makes a staged
    /// record's name durable), `DENIED` if it names another manifest.
    pub(super) async fn create_immutable_tag(
        &self,
        key: &Key,
        tag: &Tag,
        target: TagTarget<'_>,
    ) -> Result<()> {
        for _ in 0..CREATE_ATTEMPTS {
            if self.backend.create_tag(key, target).await? {
                return Ok(());
            }
            match self.backend.read(key).await? {
                Some(stored) if names_manifest(&stored, target.digest) => {
                    return self.backend.write_tag(key, target).await;
                }
                Some(_) => return Err(moved(tag)),
                // Taken back in between by a push that was refused: create it again.
                None => continue,
            }
        }
        Err(Error::backend_transient(
            B::NAME,
            "an immutable tag kept being created and taken back",
        ))
    }

    /// Refuses (`DENIED`) to remove the immutable tag `tag`.
    pub(super) fn refuse_untagging(&self, repo: &RepositoryName, tag: &Tag) -> Result<()> {
        if self.is_immutable(repo, tag.as_str()) {
            return Err(Error::Denied(format!(
                "tag {tag} is immutable: it cannot be deleted"
            )));
        }
        Ok(())
    }

    /// Refuses (`DENIED`) to delete the manifest `digest` while an immutable tag names it.
    pub(super) async fn refuse_deleting(
        &self,
        repo: &RepositoryName,
        digest: &Digest,
    ) -> Result<()> {
        match self.immutable_tags_naming(repo, digest).await?.first() {
            Some(tag) => Err(Error::Denied(format!(
                "the immutable tag {tag} names manifest {digest}: it cannot be deleted"
            ))),
            None => Ok(()),
        }
    }

    /// The end of a manifest's delete: a push that created an immutable tag of it after
    /// [`refuse_deleting`](Self::refuse_deleting) looked, and found the record still
    /// stored, is ordered after the delete, so the record is stored again (see the module
    /// docs).
    pub(super) async fn keep_immutably_tagged(
        &self,
        repo: &RepositoryName,
        digest: &Digest,
        manifest: &Manifest,
    ) -> Result<()> {
        let tags = self.immutable_tags_naming(repo, digest).await?;
        if tags.is_empty() {
            return Ok(());
        }
        let Ok(summary) = manifest::inspect(&manifest.bytes, Some(&manifest.info.media_type))
        else {
            return Ok(()); // a torn record is not stored again
        };
        let record_key = layout::manifest(repo, digest);
        let record = encode_manifest(digest, &manifest.info.media_type, &manifest.bytes);
        let mut written = std::time::Instant::now();
        for tag in tags {
            let stored = self
                .store_again_for_tag(
                    repo,
                    digest,
                    &summary,
                    (&record_key, &record, &mut written),
                    manifest.info.size,
                    &layout::tag(repo, &tag),
                )
                .await;
            if let Err(e) = stored {
                tracing::info!(
                    %repo, %tag, %digest, error = %crate::error::ErrorChain(&e),
                    "an immutable tag created during the delete of its manifest was taken back"
                );
            }
        }
        Ok(())
    }

    /// The immutable tags of `repo` that name the manifest `digest` (none, without a read,
    /// when no tag is immutable).
    async fn immutable_tags_naming(
        &self,
        repo: &RepositoryName,
        digest: &Digest,
    ) -> Result<Vec<Tag>> {
        if self.options.immutable_tags.is_empty() {
            return Ok(Vec::new());
        }
        let names = self
            .backend
            .list(&layout::tags_dir(repo), None, None)
            .await?;
        let reads = futures::stream::iter(names)
            .filter_map(|name| async move { Tag::parse(&name).ok() })
            .filter(|tag| std::future::ready(self.is_immutable(repo, tag.as_str())))
            .map(|tag| async move {
                let target = self.backend.read(&layout::tag(repo, &tag)).await?;
                let names_it = target.is_some_and(|t| names_manifest(&t, digest));
                Ok::<_, Error>(names_it.then_some(tag))
            })
            .buffer_unordered(READS_IN_FLIGHT);
        let mut reads = std::pin::pin!(reads);
        let mut naming = Vec::new();
        while let Some(read) = reads.next().await {
            naming.extend(read?);
        }
        naming.sort();
        Ok(naming)
    }
}

fn moved(tag: &Tag) -> Error {
    Error::Denied(format!("tag {tag} is immutable: it names another manifest"))
}
