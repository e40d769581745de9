//! Phase 1 (with `delete_untagged`): per repository, the manifests no tag reaches, with
//! their referrer entries (see "Untagged manifests" in the
//! [`lifecycle`](crate::storage::lifecycle) docs).
//!
//! A repository's phase holds what it read of that repository's records (what each
//! references), so memory is bounded by the largest repositories (the few surveyed at once),
//! not the store.

use std::collections::{HashMap, HashSet, VecDeque};

use futures::TryStreamExt;

use super::audit::Reclaimed;
use super::run::{RecordRefs, Run};
use super::walk::visit_repositories;
use crate::error::Result;
use crate::oci::{Digest, RepositoryName};
use crate::storage::layout::{self, Key};
use crate::storage::lifecycle::LifecycleBackend;

/// What a phase knows of one repository.
pub(super) struct Repository {
    pub(super) name: RepositoryName,
    /// Every record found, and what it references once read (`None`: unreadable).
    pub(super) records: HashMap<Digest, Option<RecordRefs>>,
}

/// What the survey of one repository found for phase 1 to delete.
struct Unreached {
    repo: Repository,
    /// Readable records no tag reached, old enough to go.
    candidates: Vec<Digest>,
    /// Manifests whose tags do not count (a dry run's expired tags).
    ignored: HashSet<Digest>,
}

/// Whether the closure could be computed: a reachable record that cannot be read (torn,
/// being written) hides what it references, so nothing is deleted in that repository.
pub(super) enum Reach {
    Known(HashSet<Digest>),
    Unknown,
}

impl<B: LifecycleBackend> Run<'_, B> {
    /// Runs phase 1 over every repository; returns the keys of the records deleted (in a dry
    /// run: that would be deleted), which phase 2 then counts as absent.
    ///
    /// The repositories are surveyed a few at a time (the mark, and the removal of expired
    /// tags); those with manifests to delete are then condemned and deleted one after the
    /// other, as the run holds one condemned set at a time.
    pub(super) async fn delete_untagged(&self) -> Result<HashSet<Key>> {
        let mut gone = HashSet::new();
        let surveys = visit_repositories(self.engine, |repo| self.survey_untagged(repo));
        let mut surveys = std::pin::pin!(surveys);
        while let Some(survey) = surveys.try_next().await? {
            self.check_deadline().await?;
            if let Some(survey) = survey {
                self.delete_unreached(survey, &mut gone).await?;
            }
        }
        Ok(gone)
    }

    /// The mark of phase 1 in `name` (after expiring its tags, when manifests expire): the
    /// manifests no tag reaches that may go, if there are any.
    async fn survey_untagged(&self, name: RepositoryName) -> Result<Option<Unreached>> {
        let found = self.records(&name).await?;
        if found.is_empty() {
            return Ok(None);
        }
        // A dry run removes no tag: the manifests it would have left untagged are counted
        // as if it had.
        let untagged_by_expiry = match self.options.manifest_ttl {
            Some(ttl) => self.expire_tags(&name, &found, ttl).await?,
            None => HashSet::new(),
        };
        let ignored = if self.options.dry_run {
            untagged_by_expiry
        } else {
            HashSet::new()
        };
        let mut repo = Repository {
            name,
            records: HashMap::new(),
        };
        let Reach::Known(reachable) = self.reachable(&mut repo, &ignored).await? else {
            tracing::info!(repository = %repo.name, "a reachable manifest is unreadable (being written?): no untagged manifest deleted there this run");
            return Ok(None);
        };
        let mut candidates: Vec<Digest> = found
            .iter()
            .filter(|r| !reachable.contains(&r.digest) && self.unreached_may_go(r.modified))
            .map(|r| r.digest.clone())
            .collect();
        // An unreadable record's subject is unknown: deleting it could leave its referrer
        // entry listing a missing manifest, so it stays (it may be a write in progress).
        let unread: Vec<Digest> = candidates
            .iter()
            .filter(|d| !repo.records.contains_key(*d))
            .cloned()
            .collect();
        repo.records
            .extend(self.read_records(&repo.name, unread).await?);
        candidates.retain(|d| matches!(repo.records.get(d), Some(Some(_))));
        Ok((!candidates.is_empty()).then_some(Unreached {
            repo,
            candidates,
            ignored,
        }))
    }

    /// Deletes what a survey found unreached, under a condemned set and after marking again
    /// (in a dry run: counts it).
    async fn delete_unreached(&self, survey: Unreached, gone: &mut HashSet<Key>) -> Result<()> {
        let Unreached {
            mut repo,
            mut candidates,
            ignored,
        } = survey;
        if self.options.dry_run {
            for digest in &candidates {
                self.audit(Reclaimed::Manifest, Some(&repo.name), digest, None);
            }
            self.count(|r| r.manifests += candidates.len() as u64);
            gone.extend(candidates.iter().map(|d| layout::manifest(&repo.name, d)));
            return Ok(());
        }
        let mut set = self.new_set();
        for digest in &candidates {
            set.add_manifest(repo.name.as_str(), digest);
        }
        self.condemn(&set).await?;
        let outcome = async {
            // Re-mark: what a push made reachable meanwhile stays.
            match self.reachable(&mut repo, &ignored).await? {
                Reach::Known(reachable) => candidates.retain(|d| !reachable.contains(d)),
                Reach::Unknown => candidates.clear(),
            }
            self.delete_records(&repo, &candidates, gone).await
        }
        .await;
        let released = self.release().await;
        outcome.and(released)
    }

    /// The manifests of `repo` reachable from its intents and tags (in that order: see the
    /// argument in the `lifecycle` docs), through index children and referrers; tags naming
    /// a manifest in `untagged` do not count (a dry run's expired tags, which it keeps).
    pub(super) async fn reachable(
        &self,
        repo: &mut Repository,
        untagged: &HashSet<Digest>,
    ) -> Result<Reach> {
        let mut queue: VecDeque<Digest> = self.intended(&repo.name).await?.into();
        let tagged = self.tagged(&repo.name).await?;
        queue.extend(tagged.into_iter().filter(|d| !untagged.contains(d)));
        // Records written since the last look (a push in progress) are read now.
        let present: HashSet<Digest> = self.record_digests(&repo.name).await?.into_iter().collect();
        let mut reachable = HashSet::new();
        while !queue.is_empty() {
            let batch: Vec<Digest> = queue
                .drain(..)
                .filter(|d| present.contains(d) && reachable.insert(d.clone()))
                .collect();
            let unread: Vec<Digest> = batch
                .iter()
                .filter(|d| !matches!(repo.records.get(*d), Some(Some(_))))
                .cloned()
                .collect();
            repo.records
                .extend(self.read_records(&repo.name, unread).await?);
            for digest in batch {
                let Some(Some(refs)) = repo.records.get(&digest) else {
                    return Ok(Reach::Unknown);
                };
                queue.extend(refs.children.iter().cloned());
                queue.extend(self.referrers_of(&repo.name, &digest).await?);
            }
        }
        Ok(Reach::Known(reachable))
    }

    /// Deletes the records `digests` of `repo`, each referrer entry first.
    async fn delete_records(
        &self,
        repo: &Repository,
        digests: &[Digest],
        gone: &mut HashSet<Key>,
    ) -> Result<()> {
        let readable: Vec<Digest> = digests
            .iter()
            .filter(|d| matches!(repo.records.get(*d), Some(Some(_))))
            .cloned()
            .collect(); // unreadable: kept (see `untagged_in`)
        self.remove_records(repo, &readable, Reclaimed::Manifest, gone)
            .await
    }

    /// Removes the records `digests` of `repo` (`what` they are, for the log), the referrer
    /// entry of each first (when it was read and has a subject), and counts them.
    pub(super) async fn remove_records(
        &self,
        repo: &Repository,
        digests: &[Digest],
        what: Reclaimed,
        gone: &mut HashSet<Key>,
    ) -> Result<()> {
        let mut entries = Vec::new();
        let mut records = Vec::new();
        for digest in digests {
            if let Some(Some(refs)) = repo.records.get(digest)
                && let Some(subject) = &refs.subject
            {
                entries.push(layout::referrer(&repo.name, subject, digest));
            }
            records.push(layout::manifest(&repo.name, digest));
        }
        self.check_deadline().await?;
        for batch in entries.chunks(super::run::REMOVE_BATCH) {
            self.engine.remove_objects(batch).await?;
        }
        for (keys, digests) in records
            .chunks(super::run::REMOVE_BATCH)
            .zip(digests.chunks(super::run::REMOVE_BATCH))
        {
            self.check_deadline().await?;
            self.engine.remove_objects(keys).await?;
            self.count(|r| r.manifests += keys.len() as u64);
            for digest in digests {
                self.audit(what, Some(&repo.name), digest, None);
            }
        }
        gone.extend(records);
        Ok(())
    }
}
