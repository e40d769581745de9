//! One log line per object a collection deletes or, in a dry run, would delete, naming it
//! (what, repository, digest, bytes), so that an operator can see what a run is about to
//! reclaim before letting it, as CNCF Distribution's `garbage-collect --dry-run` lists what
//! it would. At `info` in a dry run, which is run for that list; at `debug` otherwise (a
//! collection may delete millions of objects: `RUST_LOG=marina_distribution=debug` shows
//! them).

use super::run::Run;
use crate::oci::{Digest, RepositoryName, Tag};
use crate::storage::lifecycle::LifecycleBackend;

/// What a collection reclaims.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Reclaimed {
    /// An untagged manifest (`delete_untagged`), with its referrer entry.
    Manifest,
    /// A broken record: a manifest no tag reaches whose content is gone.
    BrokenRecord,
    /// A blob's bytes.
    Blob,
    /// A repository's link to a blob it no longer references.
    Link,
    /// A tag naming a manifest past its TTL (`manifest_ttl`).
    ExpiredTag,
}

impl Reclaimed {
    fn as_str(self) -> &'static str {
        match self {
            Self::Manifest => "untagged manifest",
            Self::BrokenRecord => "broken manifest record",
            Self::Blob => "blob",
            Self::Link => "blob link",
            Self::ExpiredTag => "expired tag",
        }
    }
}

impl<B: LifecycleBackend> Run<'_, B> {
    /// Logs `digest` (of `repository`, for what belongs to one; `bytes` long, for a blob)
    /// as reclaimed, or as what would be in a dry run.
    pub(super) fn audit(
        &self,
        what: Reclaimed,
        repository: Option<&RepositoryName>,
        digest: &Digest,
        bytes: Option<u64>,
    ) {
        self.log_reclaimed(what, repository, None, digest, bytes);
    }

    /// Logs the tag `tag` of `repository`, naming `digest`, as removed by expiry (see
    /// `manifest_ttl`), or as what would be in a dry run.
    pub(super) fn audit_expired_tag(
        &self,
        repository: &RepositoryName,
        tag: &Tag,
        digest: &Digest,
    ) {
        self.log_reclaimed(
            Reclaimed::ExpiredTag,
            Some(repository),
            Some(tag),
            digest,
            None,
        );
    }

    fn log_reclaimed(
        &self,
        what: Reclaimed,
        repository: Option<&RepositoryName>,
        tag: Option<&Tag>,
        digest: &Digest,
        bytes: Option<u64>,
    ) {
        let what = what.as_str();
        let repository = repository.map(RepositoryName::as_str);
        let tag = tag.map(Tag::as_str);
        if self.options.dry_run {
            tracing::info!(what, repository, tag, %digest, bytes, "gc dry run: would delete");
        } else {
            tracing::debug!(what, repository, tag, %digest, bytes, "gc: deleted");
        }
    }
}
