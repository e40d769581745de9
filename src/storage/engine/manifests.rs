//! Manifests: validation, reference checks, storage (verified on read), deletion.

use std::time::Instant;

use bytes::Bytes;
use futures::StreamExt;

use crate::error::{Error, Result};
use crate::oci::manifest;
use crate::oci::{Descriptor, Digest, DigestAlgorithm, Reference, RepositoryName, Tag};
use crate::storage::backend::{Backend, TagTarget};
use crate::storage::key_locks::KeyGuard;
use crate::storage::layout::{self, Key};
use crate::storage::session_lock::TagLease;
use crate::storage::{Manifest, ManifestInfo, PutManifestOutcome, StorageDriver};

use super::Engine;
use super::manifest_record::{decode_manifest, encode_manifest, names_manifest};

/// How many tags `delete_manifest` reads at once.
const TAG_READS_IN_FLIGHT: usize = 16;
/// How many references `put_manifest` checks at once (each is a round trip on object stores).
const CHECKS_IN_FLIGHT: usize = 16;

impl<B: Backend> Engine<B> {
    /// Resolves a reference to a manifest digest.
    async fn resolve(&self, repo: &RepositoryName, reference: &Reference) -> Result<Digest> {
        match reference {
            Reference::Digest(d) => Ok(d.clone()),
            Reference::Tag(t) => self.tag_target_cached(repo, t).await,
        }
    }

    /// The manifest stored in the repository, read from the store; `None` if absent (or torn).
    pub(super) async fn stored_manifest(
        &self,
        repo: &RepositoryName,
        digest: &Digest,
    ) -> Result<Option<Manifest>> {
        let key = layout::manifest(repo, digest);
        let stored = self.backend.read(&key).await?;
        // A record may be seen torn (`Backend` contract, clause 2): one that a crash left torn
        // (or that rotted on disk) fails its digest and is a manifest that is not stored.
        Ok(stored.and_then(|stored| {
            let manifest = decode_manifest(digest, stored);
            if manifest.is_none() {
                tracing::warn!(driver = B::NAME, key = %key.as_str(),
                    "manifest record does not match its digest: treated as absent");
            }
            manifest
        }))
    }

    /// Checks that everything a manifest references (except its subject and
    /// non-distributable layers, and the child manifests of an index when indexes may be
    /// sparse) is present in the repository, with the size its descriptor states (a client
    /// pulling the manifest verifies each size: a wrong one would make the image unpullable):
    /// step P1 of the collection protocol, before anything is written.
    async fn check_references(
        &self,
        repo: &RepositoryName,
        summary: &manifest::ManifestSummary,
    ) -> Result<()> {
        let wrong_size = |digest: &Digest, stated: u64, stored: u64| {
            Error::ManifestInvalid(format!(
                "descriptor of {digest} says {stated} bytes, the stored content has {stored}"
            ))
        };
        // Owned (digest, size) pairs: the checks run a few at a time.
        let stated = |d: &Descriptor| (d.digest.clone(), d.size);
        let blobs: Vec<(Digest, u64)> = summary.required_blobs().map(stated).collect();
        let blobs = blobs.into_iter().map(|(digest, size)| async move {
            Ok::<_, Error>((self.linked_size(repo, &digest).await?, digest, size))
        });
        let mut blobs =
            std::pin::pin!(futures::stream::iter(blobs).buffer_unordered(CHECKS_IN_FLIGHT));
        while let Some(checked) = blobs.next().await {
            match checked? {
                (None, digest, _) => return Err(Error::ManifestBlobUnknown(digest)),
                (Some(stored), digest, size) if stored != size => {
                    return Err(wrong_size(&digest, size, stored));
                }
                (Some(_), _, _) => {}
            }
        }
        let children: Vec<(Digest, u64)> = summary.required_manifests().map(stated).collect();
        let children = children.into_iter().map(|(digest, size)| async move {
            // From the store, not the cache: a write checks what is stored now.
            let stored = self.stored_manifest(repo, &digest).await?;
            Ok::<_, Error>((stored.map(|m| m.info.size), digest, size))
        });
        let mut children =
            std::pin::pin!(futures::stream::iter(children).buffer_unordered(CHECKS_IN_FLIGHT));
        while let Some(checked) = children.next().await {
            match checked? {
                // "A registry MAY reject a manifest uploaded with an index that references
                // manifests which do not exist": with sparse indexes this one accepts it.
                (None, _, _) if self.options.sparse_indexes => {}
                (None, digest, _) => return Err(Error::ManifestBlobUnknown(digest)),
                (Some(stored), digest, size) if stored != size => {
                    return Err(wrong_size(&digest, size, stored));
                }
                (Some(_), _, _) => {}
            }
        }
        Ok(())
    }

    /// Implements [`StorageDriver::get_manifest`].
    pub(super) async fn manifest_get(
        &self,
        repo: &RepositoryName,
        reference: &Reference,
    ) -> Result<Manifest> {
        let digest = self.resolve(repo, reference).await?;
        self.read_manifest_cached(repo, &digest).await
    }

    /// Implements [`StorageDriver::stat_manifest`].
    pub(super) async fn manifest_info(
        &self,
        repo: &RepositoryName,
        reference: &Reference,
    ) -> Result<ManifestInfo> {
        Ok(self.get_manifest(repo, reference).await?.info)
    }

    /// Implements [`StorageDriver::put_manifest`].
    pub(super) async fn manifest_put(
        &self,
        repo: &RepositoryName,
        reference: &Reference,
        content_type: Option<&str>,
        bytes: Bytes,
    ) -> Result<PutManifestOutcome> {
        if bytes.len() > self.options.max_manifest_size {
            return Err(Error::SizeInvalid(format!(
                "manifest of {} bytes exceeds the limit of {} bytes",
                bytes.len(),
                self.options.max_manifest_size
            )));
        }
        let summary = manifest::inspect(&bytes, content_type)?;
        let digest = match reference {
            Reference::Digest(d) => {
                let computed = Digest::compute(d.algorithm(), &bytes);
                if computed != *d {
                    return Err(Error::DigestInvalid(format!(
                        "manifest is {computed}, not {d}"
                    )));
                }
                computed
            }
            Reference::Tag(_) => Digest::compute(DigestAlgorithm::Sha256, &bytes),
        };
        if let Reference::Tag(tag) = reference {
            self.refuse_moving(repo, tag, &digest).await?;
        }
        self.check_references(repo, &summary).await?;
        let record = encode_manifest(&digest, &summary.media_type, &bytes);
        let record_key = layout::manifest(repo, &digest);
        // P2. A push by digest is acknowledged with its record, which must then be durable;
        // a push by tag only with its tag, whose write makes the record's name durable too.
        // Its deadline counts from before the write (the record's time is not earlier).
        let written = Instant::now();
        let tag = match reference {
            Reference::Tag(tag) => {
                self.backend
                    .stage_record(&record_key, record.clone())
                    .await?;
                Some(tag)
            }
            Reference::Digest(_) => {
                self.backend.write(&record_key, record.clone()).await?;
                None
            }
        };
        self.publish_manifest(
            repo,
            &digest,
            &summary,
            (&record_key, &record, written),
            tag,
            bytes.len() as u64,
        )
        .await
    }

    /// Steps P3 to P6 of the collection protocol for a manifest whose record is stored
    /// (possibly staged: the tag's write makes its name durable), last written at the
    /// instant given with it: the intent (with a tag or a subject), the checks against
    /// collections, then the referrer entry and the tag, which a failed check never leaves
    /// behind.
    async fn publish_manifest(
        &self,
        repo: &RepositoryName,
        digest: &Digest,
        summary: &manifest::ManifestSummary,
        (record_key, record, mut record_written): (&Key, &Bytes, Instant),
        tag: Option<&Tag>,
        size: u64,
    ) -> Result<PutManifestOutcome> {
        let subject = summary.subject.as_ref().map(|s| s.digest.clone());
        let intent = if tag.is_some() || subject.is_some() {
            Some(self.write_intent(repo, digest, record_key).await?)
        } else {
            None
        };
        let published = async {
            self.guard_manifest(
                repo,
                digest,
                summary,
                (record_key, record),
                &mut record_written,
            )
            .await?;
            if let Some(subject) = &subject {
                self.write_referrer(repo, subject, digest, summary, size)
                    .await?;
            }
            if let (Some(tag), Some(intent)) = (tag, &intent) {
                Self::check_intent(intent)?;
                let target = TagTarget {
                    digest,
                    record: record_key,
                };
                let key = layout::tag(repo, tag);
                let held = self.lock_tag(&key).await?;
                let written = if self.is_immutable(repo, tag.as_str()) {
                    self.create_immutable_tag(&key, tag, target).await
                } else {
                    self.backend.write_tag(&key, target).await
                };
                self.forget(&key);
                drop(held);
                written?;
                // A delete of this manifest (here or in another process) that removed the
                // record after the checks above found no tag of it yet: store the record
                // (and its referrer entry) again, so the tag never names a deleted manifest;
                // the push is then ordered after the delete. A delete that removes the
                // record after this look finds the tag in its second pass
                // (`manifest_delete`). Read from the store, not a cache.
                if !self.backend.exists(record_key).await? {
                    self.store_again_for_tag(
                        repo,
                        digest,
                        summary,
                        (record_key, record, &mut record_written),
                        size,
                        &key,
                    )
                    .await?;
                }
            }
            Ok(())
        }
        .await;
        if let Some(intent) = intent {
            self.release_intent(intent).await;
        }
        published?;
        Ok(PutManifestOutcome {
            digest: digest.clone(),
            subject,
        })
    }

    /// Stores the record of manifest `digest`, which the tag at `tag_key` names, again after
    /// a delete removed it: as by a push that just stored it, checked against collections
    /// again (one may have marked while the record was gone), then its referrer entry; when
    /// the check refuses it (what it references is condemned or gone), the tag is taken
    /// back and the check's error returned.
    pub(super) async fn store_again_for_tag(
        &self,
        repo: &RepositoryName,
        digest: &Digest,
        summary: &manifest::ManifestSummary,
        (record_key, record, record_written): (&Key, &Bytes, &mut Instant),
        size: u64,
        tag_key: &Key,
    ) -> Result<()> {
        let guarded = self
            .guard_manifest(repo, digest, summary, (record_key, record), record_written)
            .await;
        if let Err(e) = guarded {
            self.untag_one(tag_key, digest).await?;
            return Err(e);
        }
        if let Some(subject) = &summary.subject {
            self.write_referrer(repo, &subject.digest, digest, summary, size)
                .await?;
        }
        Ok(())
    }

    /// Writes the referrers entry of manifest `digest` (of `size` bytes) under its `subject`.
    async fn write_referrer(
        &self,
        repo: &RepositoryName,
        subject: &Digest,
        digest: &Digest,
        summary: &manifest::ManifestSummary,
        size: u64,
    ) -> Result<()> {
        let entry = Descriptor {
            media_type: summary.media_type.clone(),
            digest: digest.clone(),
            size,
            artifact_type: summary.artifact_type.clone(),
            annotations: summary.annotations.clone(),
            urls: None,
        };
        let json = serde_json::to_vec(&entry)
            .map_err(|e| Error::backend(B::NAME, format!("encoding referrer: {e}")))?;
        self.backend
            .write(&layout::referrer(repo, subject, digest), Bytes::from(json))
            .await
    }

    /// Points `tag` at the stored manifest `digest` (the collection protocol's steps P3 to
    /// P6, as for a push by tag).
    pub(super) async fn manifest_tag(
        &self,
        repo: &RepositoryName,
        tag: &Tag,
        digest: &Digest,
    ) -> Result<()> {
        // From the store, not the cache: tagging checks what is stored now.
        let manifest = self
            .stored_manifest(repo, digest)
            .await?
            .ok_or_else(|| Error::ManifestUnknown(digest.to_string()))?;
        let record_key = layout::manifest(repo, digest);
        let summary = manifest::inspect(&manifest.bytes, Some(&manifest.info.media_type))
            .map_err(|_| self.corrupt(&record_key))?;
        let record = encode_manifest(digest, &manifest.info.media_type, &manifest.bytes);
        // Not written again: a tag makes it reachable, which a collection's re-mark sees
        // (through the intent), whatever the record's age.
        self.publish_manifest(
            repo,
            digest,
            &summary,
            (&record_key, &record, Instant::now()),
            Some(tag),
            manifest.info.size,
        )
        .await
        .map(|_| ())
    }

    /// Implements [`StorageDriver::delete_manifest`].
    pub(super) async fn manifest_delete(
        &self,
        repo: &RepositoryName,
        digest: &Digest,
    ) -> Result<()> {
        let manifest = self
            .stored_manifest(repo, digest)
            .await?
            .ok_or_else(|| Error::ManifestUnknown(digest.to_string()))?;
        self.refuse_deleting(repo, digest).await?;
        // Tags first: a tag must never point at a deleted manifest.
        self.untag(repo, digest).await?;
        if let Ok(summary) = manifest::inspect(&manifest.bytes, Some(&manifest.info.media_type))
            && let Some(subject) = summary.subject
        {
            self.remove_key(&layout::referrer(repo, &subject.digest, digest))
                .await?;
        }
        self.remove_key(&layout::manifest(repo, digest)).await?;
        // Then once more: a push that tagged the manifest meanwhile, having found its record
        // stored before it was removed, is ordered before this delete, and its tag goes too.
        // (One that looks after the removal stores the record again: `publish_manifest`.)
        self.untag(repo, digest).await?;
        // Immutable tags are never removed here: one created meanwhile keeps its manifest.
        self.keep_immutably_tagged(repo, digest, &manifest).await
    }

    /// Removes the tag at `key` if it names the manifest `digest` (read as `resolve_tag`
    /// reads it), and only then: a push that moves the tag to another manifest between the
    /// read and the removal keeps its tag. The tag's locks order the two, in this process
    /// and, on the filesystem, across processes ([`lock_tag`](Self::lock_tag)); on object
    /// stores the removal is conditional on the version read instead (S3 with conditional
    /// writes, GCS). CNCF Distribution untags without either guard.
    pub(super) async fn untag_one(&self, key: &Key, digest: &Digest) -> Result<()> {
        // A first look without the locks: most tags a delete reads name other manifests.
        let names_it = |target: &[u8]| names_manifest(target, digest);
        if !self.backend.read(key).await?.is_some_and(|t| names_it(&t)) {
            return Ok(());
        }
        let _held = self.lock_tag(key).await?;
        let Some((target, version)) = self.backend.read_versioned(key).await? else {
            return Ok(());
        };
        if !names_it(&target) {
            return Ok(());
        }
        match version {
            Some(version) => {
                let removed = self.backend.remove_if_version(key, &version).await;
                self.forget(key);
                removed.map(|_| ())
            }
            None => self.remove_key(key).await,
        }
    }

    /// Locks the tag at `key` against this process's other tasks and, where the backend
    /// locks ([`Backend::lock_tag`]), other processes: for its write, or a delete's read and
    /// removal of it.
    async fn lock_tag(&self, key: &Key) -> Result<(KeyGuard<Key>, TagLease)> {
        let held = self.tag_locks.lock(key).await;
        let lease = self.backend.lock_tag(key).await?;
        Ok((held, lease))
    }

    /// Removes every mutable tag of `repo` that names the manifest `digest`
    /// ([`untag_one`](Self::untag_one)). There is no reverse index, so every tag is read; the
    /// reads (and removals) run a few at a time since on object stores each is a round trip.
    async fn untag(&self, repo: &RepositoryName, digest: &Digest) -> Result<()> {
        let tags_dir = layout::tags_dir(repo);
        let names = self.backend.list(&tags_dir, None, None).await?;
        let untag = futures::stream::iter(names)
            .filter_map(|name| async move { Tag::parse(&name).ok() })
            .filter(|tag| std::future::ready(!self.is_immutable(repo, tag.as_str())))
            .map(|tag| async move { self.untag_one(&layout::tag(repo, &tag), digest).await })
            .buffer_unordered(TAG_READS_IN_FLIGHT);
        let mut untag = std::pin::pin!(untag);
        while let Some(done) = untag.next().await {
            done?;
        }
        Ok(())
    }
}
