//! Expiry of manifests by age ([`GcOptions::manifest_ttl`](crate::storage::GcOptions)),
//! the first step of phase 1 in a repository: the tags naming a manifest stored longer ago
//! than the TTL are removed, which leaves it untagged, and phase 1 proper then deletes it
//! under the ordinary protocol (see "Expiry" in the [`lifecycle`](crate::storage::lifecycle)
//! docs).

use std::collections::HashSet;
use std::time::Duration;

use super::run::{RecordInfo, Run};
use crate::error::Result;
use crate::oci::{Digest, RepositoryName};
use crate::storage::engine::manifest_record::target_digest;
use crate::storage::layout;
use crate::storage::lifecycle::LifecycleBackend;

impl<B: LifecycleBackend> Run<'_, B> {
    /// Removes the tags of `repo` that name one of its manifests stored (`found`) more than
    /// `ttl` ago, each only if it still names that manifest when it is removed (a tag moved
    /// meanwhile stays; an immutable tag always does). Returns the expired manifests no
    /// immutable tag keeps, whose tags a dry run only reports.
    pub(super) async fn expire_tags(
        &self,
        repo: &RepositoryName,
        found: &[RecordInfo],
        ttl: Duration,
    ) -> Result<HashSet<Digest>> {
        let expired: HashSet<Digest> = found
            .iter()
            .filter(|r| self.older_than(r.modified, ttl))
            .map(|r| r.digest.clone())
            .collect();
        if expired.is_empty() {
            return Ok(expired);
        }
        let mut kept = HashSet::new();
        for (tag, digest) in self.tag_targets(repo).await? {
            if !expired.contains(&digest) {
                continue;
            }
            if self.engine.is_immutable(repo, tag.as_str()) {
                // An immutable tag is never removed, and keeps its manifest.
                kept.insert(digest);
                continue;
            }
            if !self.options.dry_run {
                self.check_deadline().await?;
                let key = layout::tag(repo, &tag);
                let now = self.engine.backend.read(&key).await?;
                if now.as_deref().and_then(target_digest).as_ref() != Some(&digest) {
                    continue;
                }
                self.engine.remove_key(&key).await?;
            }
            self.count(|r| r.tags += 1);
            self.audit_expired_tag(repo, &tag, &digest);
        }
        Ok(&expired - &kept)
    }

    /// Whether a record written at `modified` that no tag reaches may be deleted: past the
    /// grace period; when manifests expire, past their TTL instead (a cache keeps what was
    /// pulled by digest as long as the rest), or with `delete_untagged` past the shorter of
    /// the two. (Safety never depends on these ages: see the `lifecycle` docs.)
    pub(super) fn unreached_may_go(&self, modified: std::time::SystemTime) -> bool {
        let grace = self.options.grace;
        let age = match (self.options.manifest_ttl, self.options.delete_untagged) {
            (None, _) => grace,
            (Some(ttl), false) => ttl,
            (Some(ttl), true) => ttl.min(grace),
        };
        self.older_than(modified, age)
    }
}
