//! Manifests: validation, reference checks, storage (verified on read), deletion.

use bytes::Bytes;
use futures::StreamExt;

use crate::error::{Error, Result};
use crate::oci::manifest;
use crate::oci::{Descriptor, Digest, DigestAlgorithm, Reference, RepositoryName, Tag};
use crate::storage::backend::{Backend, TagTarget};
use crate::storage::layout;
use crate::storage::{Manifest, ManifestInfo, PutManifestOutcome, StorageDriver};

use super::Engine;
use super::manifest_record::{decode_manifest, encode_manifest, target_digest};

/// How many tags `delete_manifest` reads at once.
const TAG_READS_IN_FLIGHT: usize = 16;

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

    /// Whether the manifest is stored (and intact) in the repository, read from the store
    /// (writes check this).
    pub(super) async fn manifest_exists(
        &self,
        repo: &RepositoryName,
        digest: &Digest,
    ) -> Result<bool> {
        Ok(self.stored_manifest(repo, digest).await?.is_some())
    }

    /// Checks that everything a manifest references (except its subject and
    /// non-distributable layers) is present in the repository, with the size its descriptor
    /// states (a client pulling the manifest verifies each size: a wrong one would make the
    /// image unpullable).
    async fn check_references(
        &self,
        repo: &RepositoryName,
        summary: &manifest::ManifestSummary,
    ) -> Result<()> {
        let wrong_size = |d: &Descriptor, stored: u64| {
            Error::ManifestInvalid(format!(
                "descriptor of {} says {} bytes, the stored content has {stored}",
                d.digest, d.size
            ))
        };
        for blob in summary.required_blobs() {
            match self.linked_size(repo, &blob.digest).await? {
                None => return Err(Error::ManifestBlobUnknown(blob.digest.clone())),
                Some(size) if size != blob.size => return Err(wrong_size(blob, size)),
                Some(_) => {}
            }
        }
        for child in summary.required_manifests() {
            // From the store, not the cache: a write checks what is stored now.
            match self.stored_manifest(repo, &child.digest).await? {
                Some(m) if m.info.size != child.size => {
                    return Err(wrong_size(child, m.info.size));
                }
                Some(_) => {}
                None => return Err(Error::ManifestBlobUnknown(child.digest.clone())),
            }
        }
        Ok(())
    }

    /// Implements [`StorageDriver::get_manifest`](crate::storage::StorageDriver::get_manifest).
    pub(super) async fn manifest_get(
        &self,
        repo: &RepositoryName,
        reference: &Reference,
    ) -> Result<Manifest> {
        let digest = self.resolve(repo, reference).await?;
        self.read_manifest_cached(repo, &digest).await
    }

    /// Implements [`StorageDriver::stat_manifest`](crate::storage::StorageDriver::stat_manifest).
    pub(super) async fn manifest_info(
        &self,
        repo: &RepositoryName,
        reference: &Reference,
    ) -> Result<ManifestInfo> {
        Ok(self.get_manifest(repo, reference).await?.info)
    }

    /// Implements [`StorageDriver::put_manifest`](crate::storage::StorageDriver::put_manifest).
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
        self.check_references(repo, &summary).await?;
        let size = bytes.len() as u64;
        let subject = summary.subject.as_ref().map(|s| s.digest.clone());
        let record = encode_manifest(&digest, &summary.media_type, &bytes);
        let record_key = layout::manifest(repo, &digest);
        let tag = match reference {
            Reference::Tag(tag) => Some(layout::tag(repo, tag)),
            Reference::Digest(_) => None,
        };
        // The tag only once the record is durable, so a tag never points at a missing
        // manifest; with a subject, after the referrer entry too.
        let target = |new_record| TagTarget {
            digest: &digest,
            record: &record_key,
            new_record,
        };
        match &tag {
            // Record and tag in one step, which a backend may make cheaper than two.
            Some(tag) if subject.is_none() => {
                let written = self.backend.write_tag(tag, target(Some(record))).await;
                self.forget(tag);
                written?;
            }
            _ => self.backend.write(&record_key, record).await?,
        }
        if let Some(subject) = &subject {
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
                .write(&layout::referrer(repo, subject, &digest), Bytes::from(json))
                .await?;
            if let Some(tag) = &tag {
                let written = self.backend.write_tag(tag, target(None)).await;
                self.forget(tag);
                written?;
            }
        }
        Ok(PutManifestOutcome { digest, subject })
    }

    /// Implements [`StorageDriver::delete_manifest`](crate::storage::StorageDriver::delete_manifest).
    pub(super) async fn manifest_delete(
        &self,
        repo: &RepositoryName,
        digest: &Digest,
    ) -> Result<()> {
        let manifest = self
            .stored_manifest(repo, digest)
            .await?
            .ok_or_else(|| Error::ManifestUnknown(digest.to_string()))?;
        // Tags first: a tag must never point at a deleted manifest.
        // There is no reverse index, so every tag is read; the reads (and removals) run a
        // few at a time since on object stores each is a round trip.
        let tags_dir = layout::tags_dir(repo);
        let names = self.backend.list(&tags_dir, None, None).await?;
        let untag = futures::stream::iter(names)
            .filter_map(|name| async move { Tag::parse(&name).ok() })
            .map(|tag| async move {
                let key = layout::tag(repo, &tag);
                match self.backend.read(&key).await? {
                    // Read as resolve_tag reads it.
                    Some(target) if target_digest(&target).as_ref() == Some(digest) => {
                        self.remove_key(&key).await
                    }
                    _ => Ok(()),
                }
            })
            .buffer_unordered(TAG_READS_IN_FLIGHT);
        let mut untag = std::pin::pin!(untag);
        while let Some(done) = untag.next().await {
            done?;
        }
        if let Ok(summary) = manifest::inspect(&manifest.bytes, Some(&manifest.info.media_type))
            && let Some(subject) = summary.subject
        {
            self.remove_key(&layout::referrer(repo, &subject.digest, digest))
                .await?;
        }
        self.remove_key(&layout::manifest(repo, digest)).await
    }
}
