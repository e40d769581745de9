//! Phase 2: blobs and repository links no manifest references (steps G1 to G7 of the
//! [`lifecycle`](crate::storage::lifecycle) docs).
//!
//! Memory is proportional to the number of blobs and links (digests in sets), never to their
//! bytes; repositories and directories are read page by page.

use std::collections::{HashMap, HashSet};

use futures::TryStreamExt;

use super::audit::Reclaimed;
use super::run::{REMOVE_BATCH, Run, digest_named};
use super::walk::visit_repositories;
use crate::error::Result;
use crate::oci::{Digest, DigestAlgorithm, RepositoryName};
use crate::storage::layout::{self, Key};
use crate::storage::lifecycle::LifecycleBackend;

/// What the mark (G1, G2) found.
#[derive(Default)]
struct Marked {
    /// Blobs some record references.
    referenced: HashSet<Digest>,
    /// The records read (their keys): the re-mark reads only the others.
    read: HashSet<Key>,
    /// Blobs with a link written within the grace period (a push in progress).
    fresh: HashSet<Digest>,
    /// Candidate links: per repository, blobs no record of it references.
    links: HashMap<RepositoryName, HashSet<Digest>>,
    /// Candidate blobs and their sizes.
    blobs: HashMap<Digest, u64>,
    /// Blobs some record requires, not (yet) found stored (after the blob listing: those
    /// that were missing from it), with the repositories requiring them.
    required: HashMap<Digest, Requirers>,
    /// The repositories marked, by the index [`Requirers`] holds.
    repositories: Vec<RepositoryName>,
    /// Repositories with a record that is unreadable or lacks a child manifest.
    suspects: HashSet<RepositoryName>,
}

/// The repositories (indexes into [`Marked::repositories`]) whose records require a blob;
/// nearly always one, which takes no allocation.
#[derive(Debug)]
enum Requirers {
    One(u32),
    Several(Vec<u32>),
}

impl Requirers {
    fn add(&mut self, repository: u32) {
        match self {
            Self::One(first) if *first != repository => {
                *self = Self::Several(vec![*first, repository]);
            }
            Self::Several(all) if !all.contains(&repository) => all.push(repository),
            _ => {}
        }
    }

    fn indexes(&self) -> &[u32] {
        match self {
            Self::One(one) => std::slice::from_ref(one),
            Self::Several(all) => all,
        }
    }
}

/// Where phase 2 saw records that may be broken (see "Broken records" in the
/// [`lifecycle`](crate::storage::lifecycle) docs): hints for the next phase, which checks
/// everything again itself.
#[derive(Debug, Default)]
pub(super) struct BrokenHints {
    /// Blobs records require that the blob listing did not find.
    pub(super) missing: HashSet<Digest>,
    /// Repositories with a record that is unreadable, lacks a child manifest or requires a
    /// blob of `missing`.
    pub(super) suspects: HashSet<RepositoryName>,
}

/// What G1 and G2 found in one repository.
struct RepositoryMark {
    repo: RepositoryName,
    /// Blobs its records reference.
    referenced: HashSet<Digest>,
    /// Blobs its records require to be stored.
    required: Vec<Digest>,
    /// The records read.
    read: Vec<Key>,
    /// Its links written within the grace period.
    fresh: Vec<Digest>,
    /// Its links to blobs none of its records references.
    candidate_links: HashSet<Digest>,
    /// Whether a record is unreadable or lacks a child manifest.
    suspect: bool,
}

impl Marked {
    /// Adds what was found in one repository.
    fn add(&mut self, mark: RepositoryMark) {
        let index = u32::try_from(self.repositories.len()).expect("fewer than 2^32");
        for digest in mark.required {
            self.required
                .entry(digest)
                .and_modify(|r| r.add(index))
                .or_insert(Requirers::One(index));
        }
        self.referenced.extend(mark.referenced);
        self.read.extend(mark.read);
        self.fresh.extend(mark.fresh);
        if mark.suspect {
            self.suspects.insert(mark.repo.clone());
        }
        if !mark.candidate_links.is_empty() {
            self.links.insert(mark.repo.clone(), mark.candidate_links);
        }
        self.repositories.push(mark.repo);
    }

    fn is_empty(&self) -> bool {
        self.blobs.is_empty() && self.links.values().all(HashSet::is_empty)
    }

    /// Drops from the candidates what a record of `repo` references.
    fn keep(&mut self, repo: &RepositoryName, blobs: &[Digest]) {
        let links = self.links.get_mut(repo);
        for digest in blobs {
            self.blobs.remove(digest);
        }
        if let Some(links) = links {
            for digest in blobs {
                links.remove(digest);
            }
        }
    }
}

impl<B: LifecycleBackend> Run<'_, B> {
    /// Runs phase 2. `gone` holds the records phase 1 deleted (or, in a dry run, would
    /// delete): they count as absent. Returns what it saw of broken records.
    pub(super) async fn sweep_blobs(&self, gone: &HashSet<Key>) -> Result<BrokenHints> {
        let mut marked = Marked::default();
        {
            let marks = visit_repositories(self.engine, |repo| self.mark_repository(repo, gone));
            let mut marks = std::pin::pin!(marks);
            while let Some(mark) = marks.try_next().await? {
                self.check_deadline().await?;
                marked.add(mark);
            }
        }
        for algorithm in DigestAlgorithm::ALL {
            self.find_blob_candidates(algorithm, &mut marked).await?;
        }
        let mut suspects = std::mem::take(&mut marked.suspects);
        let mut missing = HashSet::new();
        for (digest, requirers) in std::mem::take(&mut marked.required) {
            for &i in requirers.indexes() {
                suspects.insert(marked.repositories[i as usize].clone());
            }
            missing.insert(digest);
        }
        marked.repositories = Vec::new();
        let hints = BrokenHints { missing, suspects };
        if self.options.dry_run {
            for (repo, digests) in &marked.links {
                for digest in digests {
                    self.audit(Reclaimed::Link, Some(repo), digest, None);
                }
            }
            for (digest, size) in &marked.blobs {
                self.audit(Reclaimed::Blob, None, digest, Some(*size));
            }
            self.count(|r| {
                r.blobs += marked.blobs.len() as u64;
                r.bytes += marked.blobs.values().sum::<u64>();
                r.links += marked.links.values().map(|l| l.len() as u64).sum::<u64>();
            });
            return Ok(hints);
        }
        if marked.is_empty() {
            return Ok(hints);
        }
        // G3: condemn.
        let mut set = self.new_set();
        for digest in marked.blobs.keys() {
            set.add_blob(digest.clone());
        }
        for (repo, digests) in &marked.links {
            for digest in digests {
                set.add_link(repo.as_str(), digest);
            }
        }
        self.condemn(&set).await?;
        drop(set);
        let outcome = self.remark_and_delete(&mut marked).await;
        // G7, also after a failure: whatever the run deleted, it deleted under the set.
        let released = self.release().await;
        outcome.and(released).map(|()| hints)
    }

    /// G1 and G2 for one repository: what its records reference, and its candidate links.
    async fn mark_repository(
        &self,
        repo: RepositoryName,
        gone: &HashSet<Key>,
    ) -> Result<RepositoryMark> {
        let digests = self.record_digests_except(&repo, gone).await?;
        let listed: HashSet<Digest> = digests.iter().cloned().collect();
        let refs = self.read_records(&repo, digests).await?;
        let mut mark = RepositoryMark {
            referenced: HashSet::new(),
            required: Vec::new(),
            read: Vec::with_capacity(refs.len()),
            fresh: Vec::new(),
            candidate_links: HashSet::new(),
            suspect: false,
            repo,
        };
        for (digest, refs) in refs {
            let Some(refs) = refs else {
                mark.suspect = true;
                continue;
            };
            mark.suspect |= !self.engine.options.sparse_indexes
                && refs.children.iter().any(|c| !listed.contains(c));
            mark.required.extend(refs.required);
            mark.referenced.extend(refs.blobs);
            mark.read.push(layout::manifest(&mark.repo, &digest));
        }
        for algorithm in DigestAlgorithm::ALL {
            let dir = layout::layers_algorithm_dir(&mark.repo, algorithm);
            self.scan_all(&dir, |link| {
                let Some(digest) = digest_named(algorithm, &link.name) else {
                    return;
                };
                if !self.past_grace(link.modified) {
                    mark.fresh.push(digest);
                } else if !mark.referenced.contains(&digest) {
                    mark.candidate_links.insert(digest);
                }
            })
            .await?;
        }
        Ok(mark)
    }

    /// G2 for blobs: stored, referenced by no record, not written (nor linked anywhere)
    /// within the grace period.
    async fn find_blob_candidates(
        &self,
        algorithm: DigestAlgorithm,
        marked: &mut Marked,
    ) -> Result<()> {
        let mut after: Option<String> = None;
        loop {
            let page = self
                .engine
                .backend
                .scan_blobs(algorithm, after.as_deref(), super::run::SCAN_PAGE)
                .await?;
            let full = page.len() == super::run::SCAN_PAGE;
            after = page.last().map(|b| b.name.clone());
            for blob in page {
                let Some(digest) = digest_named(algorithm, &blob.name) else {
                    continue;
                };
                marked.required.remove(&digest);
                if marked.referenced.contains(&digest)
                    || marked.fresh.contains(&digest)
                    || !self.past_grace(blob.modified)
                {
                    continue;
                }
                marked.blobs.insert(digest, blob.size);
            }
            if !full {
                return Ok(());
            }
        }
    }

    /// G4 to G6, under the condemned set.
    async fn remark_and_delete(&self, marked: &mut Marked) -> Result<()> {
        // G4: records written since G1 keep what they reference.
        let read = std::mem::take(&mut marked.read);
        {
            let remarks =
                visit_repositories(self.engine, |repo| self.remark_repository(repo, &read));
            let mut remarks = std::pin::pin!(remarks);
            while let Some((repo, referenced)) = remarks.try_next().await? {
                self.check_deadline().await?;
                for blobs in referenced {
                    marked.keep(&repo, &blobs);
                }
                if marked.is_empty() {
                    break;
                }
            }
        }
        drop(read);
        // G5: links, then blobs.
        let links: Vec<(&RepositoryName, &Digest)> = marked
            .links
            .iter()
            .flat_map(|(repo, digests)| digests.iter().map(move |d| (repo, d)))
            .collect();
        for batch in links.chunks(REMOVE_BATCH) {
            self.check_deadline().await?;
            let keys: Vec<Key> = batch
                .iter()
                .map(|(repo, digest)| layout::layer_link(repo, digest))
                .collect();
            self.engine.remove_objects(&keys).await?;
            self.count(|r| r.links += batch.len() as u64);
            for (repo, digest) in batch {
                self.audit(Reclaimed::Link, Some(repo), digest, None);
            }
        }
        let blobs: Vec<(Digest, u64)> = marked.blobs.drain().collect();
        for batch in blobs.chunks(REMOVE_BATCH) {
            self.check_deadline().await?;
            let digests: Vec<Digest> = batch.iter().map(|(d, _)| d.clone()).collect();
            self.engine.backend.remove_blobs(&digests).await?;
            self.count(|r| {
                r.blobs += batch.len() as u64;
                r.bytes += batch.iter().map(|(_, size)| size).sum::<u64>();
            });
            for (digest, size) in batch {
                self.audit(Reclaimed::Blob, None, digest, Some(*size));
            }
        }
        // G6: links written meanwhile to a blob G5 deleted.
        if !blobs.is_empty() {
            let deleted: HashSet<Digest> = blobs.into_iter().map(|(d, _)| d).collect();
            self.sweep_dangling_links(&deleted).await?;
        }
        Ok(())
    }

    /// G4 for one repository: what the records of `repo` not `read` at G1 reference (one
    /// list of blobs per record).
    async fn remark_repository(
        &self,
        repo: RepositoryName,
        read: &HashSet<Key>,
    ) -> Result<(RepositoryName, Vec<Vec<Digest>>)> {
        let new = self.record_digests_except(&repo, read).await?;
        if new.is_empty() {
            return Ok((repo, Vec::new()));
        }
        let records = self.read_records(&repo, new).await?;
        let referenced = records.into_values().flatten().map(|r| r.blobs).collect();
        Ok((repo, referenced))
    }

    /// G6: removes the links to `deleted` blobs that are still absent.
    async fn sweep_dangling_links(&self, deleted: &HashSet<Digest>) -> Result<()> {
        let found = visit_repositories(self.engine, |repo| self.dangling_links_in(repo, deleted));
        let mut found = std::pin::pin!(found);
        while let Some(dangling) = found.try_next().await? {
            for batch in dangling.chunks(REMOVE_BATCH) {
                self.check_deadline().await?;
                self.engine.remove_objects(batch).await?;
                self.count(|r| r.links += batch.len() as u64);
            }
        }
        Ok(())
    }

    /// G6 for one repository: its links to `deleted` blobs that are still absent.
    async fn dangling_links_in(
        &self,
        repo: RepositoryName,
        deleted: &HashSet<Digest>,
    ) -> Result<Vec<Key>> {
        let mut dangling = Vec::new();
        for algorithm in DigestAlgorithm::ALL {
            let dir = layout::layers_algorithm_dir(&repo, algorithm);
            let mut linked = Vec::new();
            self.scan_all(&dir, |link| {
                if let Some(digest) = digest_named(algorithm, &link.name)
                    && deleted.contains(&digest)
                {
                    linked.push(digest);
                }
            })
            .await?;
            for digest in linked {
                if self.engine.backend.blob_size(&digest).await?.is_none() {
                    dangling.push(layout::layer_link(&repo, &digest));
                }
            }
        }
        Ok(dangling)
    }
}
