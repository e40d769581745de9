//! Broken records (after phase 2, in every collection): manifest records no tag reaches whose
//! content is unusable — a blob they require is not stored, a child manifest they require is
//! not stored, or the record itself is torn — and that were last written longer than
//! [`BROKEN_RECORD_AGE`] ago. Pushes that were refused or failed leave them. The protocol and
//! why it never takes an acknowledged manifest are in "Broken records" in the
//! [`lifecycle`](crate::storage::lifecycle) docs.

use std::collections::{HashMap, HashSet};

use super::audit::Reclaimed;
use super::run::{RecordRefs, Run};
use super::sweep::BrokenHints;
use super::untagged::{Reach, Repository};
use crate::error::Result;
use crate::oci::{Digest, RepositoryName};
use crate::storage::layout::{self, Key};
use crate::storage::lifecycle::{BROKEN_RECORD_AGE, LifecycleBackend};

impl<B: LifecycleBackend> Run<'_, B> {
    /// Reclaims the broken records of the repositories `hints` points at. `gone` holds the
    /// records phase 1 deleted (or would delete, in a dry run); the ones deleted here are
    /// added.
    pub(super) async fn delete_broken(
        &self,
        hints: &BrokenHints,
        gone: &mut HashSet<Key>,
    ) -> Result<()> {
        if hints.suspects.is_empty() {
            return Ok(()); // what nearly every collection sees
        }
        let mut suspects: Vec<&RepositoryName> = hints.suspects.iter().collect();
        suspects.sort_unstable_by(|a, b| a.as_str().cmp(b.as_str()));
        for repo in suspects {
            self.check_deadline().await?;
            self.broken_in(repo.clone(), &hints.missing, gone).await?;
        }
        Ok(())
    }

    async fn broken_in(
        &self,
        name: RepositoryName,
        missing: &HashSet<Digest>,
        gone: &mut HashSet<Key>,
    ) -> Result<()> {
        let found: Vec<_> = self
            .records(&name)
            .await?
            .into_iter()
            .filter(|r| !gone.contains(&layout::manifest(&name, &r.digest)))
            .collect();
        if !found
            .iter()
            .any(|r| self.older_than(r.modified, self.broken_age()))
        {
            return Ok(());
        }
        let listed: HashSet<Digest> = found.iter().map(|r| r.digest.clone()).collect();
        let records = self
            .read_records(&name, listed.iter().cloned().collect())
            .await?;
        let mut repo = Repository { name, records };
        let sparse = self.engine.options.sparse_indexes;
        let mut candidates: Vec<Digest> = found
            .iter()
            .filter(|r| self.older_than(r.modified, self.broken_age()))
            .filter(|r| looks_broken(repo.records.get(&r.digest), missing, &listed, sparse))
            .map(|r| r.digest.clone())
            .collect();
        keep_children(&repo, &mut candidates);
        if candidates.is_empty() {
            return Ok(());
        }
        match self.reachable(&mut repo, &HashSet::new()).await? {
            Reach::Known(reachable) => candidates.retain(|d| !reachable.contains(d)),
            Reach::Unknown => return Ok(()),
        }
        if candidates.is_empty() {
            return Ok(());
        }
        if self.options.dry_run {
            for digest in &candidates {
                self.audit(Reclaimed::BrokenRecord, Some(&repo.name), digest, None);
            }
            self.count(|r| {
                r.manifests += candidates.len() as u64;
                r.broken += candidates.len() as u64;
            });
            gone.extend(candidates.iter().map(|d| layout::manifest(&repo.name, d)));
            return Ok(());
        }
        let mut set = self.new_set();
        for digest in &candidates {
            set.add_manifest(repo.name.as_str(), digest);
        }
        self.condemn(&set).await?;
        let outcome = async {
            // B4, in this order: what a push made reachable meanwhile (intents, then tags);
            // the records' times (written again since the mark: a push is in flight);
            // what a record written meanwhile requires as a child; then whether each
            // candidate is still broken (a blob stored again: a push may need it).
            match self.reachable(&mut repo, &HashSet::new()).await? {
                Reach::Known(reachable) => candidates.retain(|d| !reachable.contains(d)),
                Reach::Unknown => candidates.clear(),
            }
            let written: HashMap<Digest, std::time::SystemTime> = self
                .records(&repo.name)
                .await?
                .into_iter()
                .map(|r| (r.digest, r.modified))
                .collect();
            candidates.retain(|d| {
                written
                    .get(d)
                    .is_some_and(|m| self.older_than(*m, self.broken_age()))
            });
            let unread: Vec<Digest> = written
                .keys()
                .filter(|d| !repo.records.contains_key(*d))
                .cloned()
                .collect();
            repo.records
                .extend(self.read_records(&repo.name, unread).await?);
            keep_children(&repo, &mut candidates);
            let mut broken = Vec::new();
            for digest in candidates.drain(..) {
                self.check_deadline().await?; // a few lookups each: the lease may fall due
                if self.still_broken(&repo.name, &digest, missing).await? {
                    broken.push(digest);
                }
            }
            if broken.is_empty() {
                return Ok(());
            }
            tracing::info!(
                repository = %repo.name,
                records = broken.len(),
                "removing manifest records no tag reaches whose content is gone (left by refused or failed pushes)"
            );
            self.remove_records(&repo, &broken, Reclaimed::BrokenRecord, gone)
                .await?;
            self.count(|r| r.broken += broken.len() as u64);
            Ok(())
        }
        .await;
        let released = self.release().await;
        outcome.and(released)
    }

    /// How old a broken record must be to be reclaimed: [`BROKEN_RECORD_AGE`], or the grace
    /// period when that is longer (it spares what was written recently).
    fn broken_age(&self) -> std::time::Duration {
        BROKEN_RECORD_AGE.max(self.options.grace)
    }

    /// Whether the record `digest` of `repo`, read again from the store, is unreadable, or
    /// lacks now a blob it requires (of those the blob listing missed) or a child manifest.
    async fn still_broken(
        &self,
        repo: &RepositoryName,
        digest: &Digest,
        missing: &HashSet<Digest>,
    ) -> Result<bool> {
        let Some(refs) = self.engine.record_refs(repo, digest).await? else {
            return Ok(true);
        };
        for blob in refs.required.iter().filter(|b| missing.contains(*b)) {
            if self.engine.backend.blob_size(blob).await?.is_none() {
                return Ok(true);
            }
        }
        if !self.engine.options.sparse_indexes {
            for child in &refs.children {
                if !self
                    .engine
                    .backend
                    .exists(&layout::manifest(repo, child))
                    .await?
                {
                    return Ok(true);
                }
            }
        }
        Ok(false)
    }
}

/// Whether a record, as read (`Some(None)`: unreadable), looks broken: unreadable, requiring
/// a blob the listing missed, or (unless indexes may be sparse) a child that is not `listed`.
fn looks_broken(
    read: Option<&Option<RecordRefs>>,
    missing: &HashSet<Digest>,
    listed: &HashSet<Digest>,
    sparse: bool,
) -> bool {
    match read {
        None => false,
        Some(None) => true,
        Some(Some(refs)) => {
            refs.required.iter().any(|b| missing.contains(b))
                || (!sparse && refs.children.iter().any(|c| !listed.contains(c)))
        }
    }
}

/// Drops from `candidates` every manifest a record of `repo` names as a child: an index
/// acknowledged with it keeps it (a collection never deletes a child of a stored index).
fn keep_children(repo: &Repository, candidates: &mut Vec<Digest>) {
    let children: HashSet<&Digest> = repo
        .records
        .values()
        .flatten()
        .flat_map(|refs| &refs.children)
        .collect();
    candidates.retain(|d| !children.contains(d));
}
