//! One collection run: its identity, clock, the condemned set it holds and report, and what
//! every phase reads (repositories' records, links, tags and intents).

use std::collections::{HashMap, HashSet};
use std::time::{Duration, Instant, SystemTime};

use futures::StreamExt;

use super::condemned::{Condemned, secs};
use super::guard::intent_written;
use super::lease::{HeldSet, LeaseState, LeaseTerms};
use crate::error::{Error, Result};
use crate::oci::manifest;
use crate::oci::{Digest, DigestAlgorithm, RepositoryName};
use crate::storage::engine::Engine;
use crate::storage::engine::manifest_record::{decode_manifest, target_digest};
use crate::storage::layout::{self, Dir, Key};
use crate::storage::lifecycle::{GcOptions, GcReport, LifecycleBackend, ObjectInfo};

/// Objects listed per request while scanning.
pub(super) const SCAN_PAGE: usize = 1000;
/// Records read at once while marking (each is a round trip on object stores).
const READS_IN_FLIGHT: usize = 16;
/// Objects removed per batch (S3's `DeleteObjects` takes up to 1000 keys).
pub(super) const REMOVE_BATCH: usize = 1000;

/// What a manifest record references, as the collection needs it.
#[derive(Debug, Clone, Default)]
pub(super) struct RecordRefs {
    /// Config and layers (non-distributable ones too, when stored: they are kept).
    pub(super) blobs: Vec<Digest>,
    /// Of `blobs`, those a push requires to be stored (all but non-distributable layers).
    pub(super) required: Vec<Digest>,
    /// Child manifests of an index.
    pub(super) children: Vec<Digest>,
    /// The manifest's subject.
    pub(super) subject: Option<Digest>,
}

/// A record found by a scan.
#[derive(Debug, Clone)]
pub(super) struct RecordInfo {
    pub(super) digest: Digest,
    pub(super) modified: SystemTime,
}

/// One collection run (or upload expiry on its own).
pub(super) struct Run<'e, B> {
    pub(super) engine: &'e Engine<B>,
    pub(super) options: GcOptions,
    /// Unique name of the run: its condemned sets are `gc/<id>-<n>`.
    id: String,
    sets_written: std::sync::atomic::AtomicU32,
    /// When the run started (the reference of every age).
    pub(super) now: SystemTime,
    started: Instant,
    /// The lease terms of the engine (the standard ones but in tests).
    lease: LeaseTerms,
    /// The condemned set stored and not yet removed (a run holds one at a time). Behind a
    /// lock because the repositories a phase visits at once (see
    /// [`visit_repositories`](super::walk::visit_repositories)) each check the lease
    /// before deleting; the lock makes one of them renew it while the others wait.
    held: tokio::sync::Mutex<Option<HeldSet>>,
    /// What the run reclaimed so far (see [`count`](Self::count)).
    report: std::sync::Mutex<GcReport>,
}

impl<'e, B: LifecycleBackend> Run<'e, B> {
    pub(super) fn new(engine: &'e Engine<B>, options: GcOptions) -> Self {
        let now = SystemTime::now();
        let random: u64 = rand::random();
        Self {
            engine,
            id: format!("{:012}-{random:016x}", secs(now)),
            sets_written: std::sync::atomic::AtomicU32::new(0),
            now,
            started: Instant::now(),
            lease: engine.gc_lease,
            held: tokio::sync::Mutex::new(None),
            report: std::sync::Mutex::new(GcReport {
                dry_run: options.dry_run,
                ..GcReport::default()
            }),
            options,
        }
    }

    /// The report, with the run's duration.
    pub(super) fn finish(self) -> GcReport {
        let mut report = self.report.into_inner().unwrap_or_else(|e| e.into_inner());
        report.duration = self.started.elapsed();
        report
    }

    /// Adds to the report what `add` adds.
    pub(super) fn count(&self, add: impl FnOnce(&mut GcReport)) {
        add(&mut self.report.lock().unwrap_or_else(|e| e.into_inner()));
    }

    /// Whether something last written at `modified` is older than the grace period.
    pub(super) fn past_grace(&self, modified: SystemTime) -> bool {
        self.older_than(modified, self.options.grace)
    }

    /// Whether `modified` lies more than `age` before the run's start.
    pub(super) fn older_than(&self, modified: SystemTime, age: Duration) -> bool {
        modified
            .checked_add(age)
            .is_some_and(|limit| limit <= self.now)
    }

    /// Called before each deletion (and each repository): fails once collections were asked
    /// to stop (the process is shutting down; the run then removes its condemned set and
    /// ends), or once the lease on the condemned set the run holds ran out: from then on it
    /// must not delete anything (another collection may remove the set). Renews the lease
    /// when it is due.
    pub(super) async fn check_deadline(&self) -> Result<()> {
        if self
            .engine
            .collections_stopped
            .load(std::sync::atomic::Ordering::Relaxed)
        {
            return Err(Error::backend_transient(
                B::NAME,
                "garbage collection stopped: the process is shutting down",
            ));
        }
        let mut held = self.held.lock().await;
        let Some(held) = held.as_mut() else {
            return Ok(());
        };
        match held.state(SystemTime::now()) {
            LeaseState::Held => Ok(()),
            LeaseState::Due => {
                let (renewal, stored) = held.renewal(&self.lease, SystemTime::now());
                self.engine.backend.write(&held.key, stored).await?;
                if held.confirm(renewal, SystemTime::now()) {
                    Ok(())
                } else {
                    Err(lease_lost(&self.lease))
                }
            }
            LeaseState::Lost => Err(lease_lost(&self.lease)),
        }
    }

    /// An empty condemned set.
    pub(super) fn new_set(&self) -> Condemned {
        Condemned::default()
    }

    /// Stores a condemned set (step G3), before anything it lists is deleted, and holds it
    /// (see [`check_deadline`](Self::check_deadline)) until [`release`](Self::release).
    pub(super) async fn condemn(&self, set: &Condemned) -> Result<()> {
        let mut held = self.held.lock().await;
        debug_assert!(held.is_none(), "a run holds one condemned set at a time");
        let n = 1 + self
            .sets_written
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let key = layout::gc_marker(&format!("{}-{n}", self.id));
        let (set, stored) = HeldSet::new(key, set, &self.lease, SystemTime::now());
        if let Err(e) = self.engine.backend.write(&set.key, stored).await {
            // It may be stored all the same (an answer lost): nothing was deleted under it,
            // so removing it is safe, and spares pushes its lease and the clock margin.
            let _ = self.engine.backend.remove(&set.key).await;
            return Err(e);
        }
        *held = Some(set);
        Ok(())
    }

    /// Removes the condemned set the run holds once everything it allowed is done (step G7).
    pub(super) async fn release(&self) -> Result<()> {
        let held = self.held.lock().await.take();
        match held {
            Some(held) => self.engine.backend.remove(&held.key).await,
            None => Ok(()),
        }
    }

    /// Removes the condemned sets of runs that died (see "Crashes and stale sets").
    pub(super) async fn remove_stale_sets(&self) -> Result<()> {
        let engine = self.engine;
        for name in engine.backend.list(&layout::gc_dir(), None, None).await? {
            let key = layout::gc_marker(&name);
            let Some(bytes) = engine.backend.read(&key).await? else {
                continue;
            };
            let stale = Condemned::decode(&bytes)
                .is_none_or(|set| set.expired(SystemTime::now(), self.lease.clock_margin));
            if stale {
                tracing::warn!(
                    driver = B::NAME,
                    name,
                    "removing the condemned set of a collection that did not finish"
                );
                if !self.options.dry_run {
                    engine.backend.remove(&key).await?;
                }
            }
        }
        Ok(())
    }

    /// Every object of `dir`, page by page, handed to `visit`.
    pub(super) async fn scan_all(
        &self,
        dir: &Dir,
        mut visit: impl FnMut(ObjectInfo),
    ) -> Result<()> {
        let mut after: Option<String> = None;
        loop {
            let page = self
                .engine
                .backend
                .scan(dir, after.as_deref(), SCAN_PAGE)
                .await?;
            let full = page.len() == SCAN_PAGE;
            after = page.last().map(|o| o.name.clone());
            page.into_iter().for_each(&mut visit);
            if !full {
                return Ok(());
            }
        }
    }

    /// The manifest records of `repo` (names that are digests of their directory's
    /// algorithm; a backend may keep other objects beside them).
    pub(super) async fn records(&self, repo: &RepositoryName) -> Result<Vec<RecordInfo>> {
        let mut records = Vec::new();
        for algorithm in DigestAlgorithm::ALL {
            let dir = layout::manifests_algorithm_dir(repo, algorithm);
            self.scan_all(&dir, |object| {
                if let Some(digest) = digest_named(algorithm, &object.name) {
                    records.push(RecordInfo {
                        digest,
                        modified: object.modified,
                    });
                }
            })
            .await?;
        }
        Ok(records)
    }

    /// The digests of the manifest records of `repo`, without their ages (a plain listing:
    /// no `stat` per record on the filesystem).
    pub(super) async fn record_digests(&self, repo: &RepositoryName) -> Result<Vec<Digest>> {
        let mut digests = Vec::new();
        for algorithm in DigestAlgorithm::ALL {
            let dir = layout::manifests_algorithm_dir(repo, algorithm);
            let names = self.engine.backend.list(&dir, None, None).await?;
            digests.extend(names.iter().filter_map(|n| digest_named(algorithm, n)));
        }
        Ok(digests)
    }

    /// The digests of the manifest records of `repo` whose keys are not in `except`.
    pub(super) async fn record_digests_except(
        &self,
        repo: &RepositoryName,
        except: &HashSet<Key>,
    ) -> Result<Vec<Digest>> {
        let mut digests = self.record_digests(repo).await?;
        digests.retain(|d| !except.contains(&layout::manifest(repo, d)));
        Ok(digests)
    }

    /// Reads and inspects the records `digests` of `repo`, a few at a time: what each
    /// references, or `None` for one that is absent, torn or unreadable.
    pub(super) async fn read_records(
        &self,
        repo: &RepositoryName,
        digests: Vec<Digest>,
    ) -> Result<HashMap<Digest, Option<RecordRefs>>> {
        let reads = futures::stream::iter(digests)
            .map(|digest| async move {
                let refs = self.engine.record_refs(repo, &digest).await?;
                Ok::<_, Error>((digest, refs))
            })
            .buffer_unordered(READS_IN_FLIGHT);
        let mut reads = std::pin::pin!(reads);
        let mut out = HashMap::new();
        while let Some(read) = reads.next().await {
            let (digest, refs) = read?;
            out.insert(digest, refs);
        }
        Ok(out)
    }

    /// The manifests the tags of `repo` point to.
    pub(super) async fn tagged(&self, repo: &RepositoryName) -> Result<Vec<Digest>> {
        let targets = self.tag_targets(repo).await?;
        Ok(targets.into_iter().map(|(_, digest)| digest).collect())
    }

    /// Every tag of `repo` with the manifest it names (tags that cannot be read are left
    /// out).
    pub(super) async fn tag_targets(
        &self,
        repo: &RepositoryName,
    ) -> Result<Vec<(crate::oci::Tag, Digest)>> {
        let backend = &self.engine.backend;
        let names = backend.list(&layout::tags_dir(repo), None, None).await?;
        let tags: Vec<crate::oci::Tag> = names
            .iter()
            .filter_map(|name| crate::oci::Tag::parse(name).ok())
            .collect();
        let reads = futures::stream::iter(tags)
            .map(|tag| async move {
                let read = backend.read(&layout::tag(repo, &tag)).await;
                (tag, read)
            })
            .buffer_unordered(READS_IN_FLIGHT);
        let mut reads = std::pin::pin!(reads);
        let mut out = Vec::new();
        while let Some((tag, read)) = reads.next().await {
            if let Some(digest) = read?.as_deref().and_then(target_digest) {
                out.push((tag, digest));
            }
        }
        Ok(out)
    }

    /// The manifests named by the push intents of `repo`; intents older than
    /// [`INTENT_MAX_AGE`](crate::storage::lifecycle::INTENT_MAX_AGE) are leftovers of pushes
    /// that died, removed (outside dry runs) and not counted.
    ///
    /// An intent's age counts from the later of the time its name carries and the object's
    /// own time: on the filesystem the object is another name of the manifest's record,
    /// whose time may be far older than the intent, and a name from a host whose clock runs
    /// behind must not make an intent look older than it is either.
    pub(super) async fn intended(&self, repo: &RepositoryName) -> Result<Vec<Digest>> {
        let mut live = Vec::new();
        let mut stale = Vec::new();
        self.scan_all(&layout::intents_dir(repo), |object| {
            let key = layout::intent(repo, &object.name);
            let written = intent_written(&object.name)
                .map_or(object.modified, |named| named.max(object.modified));
            if self.older_than(written, crate::storage::lifecycle::INTENT_MAX_AGE) {
                stale.push(key);
            } else {
                live.push(key);
            }
        })
        .await?;
        if !stale.is_empty() && !self.options.dry_run {
            self.engine.remove_objects(&stale).await?;
        }
        let mut out = Vec::new();
        for key in live {
            if let Some(bytes) = self.engine.backend.read(&key).await?
                && let Some(digest) = target_digest(&bytes)
            {
                out.push(digest);
            }
        }
        Ok(out)
    }

    /// The referrers stored for `subject` in `repo`.
    pub(super) async fn referrers_of(
        &self,
        repo: &RepositoryName,
        subject: &Digest,
    ) -> Result<Vec<Digest>> {
        let names = self
            .engine
            .backend
            .list(&layout::referrers_dir(repo, subject), None, None)
            .await?;
        Ok(names
            .iter()
            .filter_map(|name| {
                let (algorithm, hex) = name.split_once('-')?;
                Digest::parse(&format!("{algorithm}:{hex}")).ok()
            })
            .collect())
    }
}

/// The error of a run whose lease on its condemned set ran out.
fn lease_lost(terms: &LeaseTerms) -> Error {
    Error::backend(
        "engine",
        format!(
            "garbage collection stopped before deleting more: a step took longer than its \
             condemned set's lease ({} s) allowed",
            terms.length.as_secs()
        ),
    )
}

/// The digest of `algorithm` named `hex`, if it is one.
pub(super) fn digest_named(algorithm: DigestAlgorithm, hex: &str) -> Option<Digest> {
    if hex.len() != algorithm.hex_len() {
        return None;
    }
    Digest::parse(&format!("{algorithm}:{hex}")).ok()
}

impl<B: LifecycleBackend> Engine<B> {
    /// What the record `digest` of `repo` references; `None` if it is absent, torn (a write
    /// in progress on the filesystem) or not a manifest.
    pub(super) async fn record_refs(
        &self,
        repo: &RepositoryName,
        digest: &Digest,
    ) -> Result<Option<RecordRefs>> {
        let Some(stored) = self.backend.read(&layout::manifest(repo, digest)).await? else {
            return Ok(None);
        };
        let Some(manifest) = decode_manifest(digest, stored) else {
            return Ok(None);
        };
        let Ok(summary) = manifest::inspect(&manifest.bytes, Some(&manifest.info.media_type))
        else {
            return Ok(None);
        };
        Ok(Some(RecordRefs {
            blobs: summary
                .config
                .iter()
                .chain(&summary.layers)
                .map(|d| d.digest.clone())
                .collect(),
            required: summary.required_blobs().map(|d| d.digest.clone()).collect(),
            children: summary.manifests.iter().map(|d| d.digest.clone()).collect(),
            subject: summary.subject.map(|s| s.digest),
        }))
    }
}
