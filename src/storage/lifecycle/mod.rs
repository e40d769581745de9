//! Storage lifecycle: online garbage collection, expiry of abandoned uploads, and the
//! repository listing behind `GET /v2/_catalog`.
//!
//! These are administrative operations, so they live in a trait of their own,
//! [`Lifecycle`], beside the OCI-only [`StorageDriver`](super::StorageDriver). Like it, it
//! uses `impl Future` methods and static dispatch; the [`Engine`](super::Engine) implements
//! it once for every backend (over the few primitives of [`LifecycleBackend`]), and
//! [`AnyDriver`](super::AnyDriver) by dispatching to it.
//!
//! # Garbage collection
//!
//! A run ([`Lifecycle::collect_garbage`]) has up to four phases, each safe while clients push
//! and pull, in this process and in any other sharing the root directory or the bucket:
//!
//! 1. **untagged manifests** (only with [`GcOptions::delete_untagged`]): per repository, the
//!    manifests no tag reaches (directly, as a child of a reachable index, or as a referrer
//!    of a reachable subject) are deleted with their referrer entries;
//! 2. **blobs**: every blob that no manifest of any repository references (config, layers) is
//!    deleted, and every repository link to a blob that no manifest *of that repository*
//!    references;
//!    then **broken records**: records no tag reaches whose blobs or children are gone (or
//!    that are torn), left by refused or failed pushes, once older than
//!    [`BROKEN_RECORD_AGE`] (see "Broken records" below);
//! 3. **uploads**: sessions idle longer than [`GcOptions::upload_ttl`] are aborted with
//!    everything they hold, and upload storage no session owns is released (see
//!    [`Lifecycle::expire_uploads`]);
//! 4. **tidying**: empty directories and stale temporary files on the filesystem.
//!
//! [`GcOptions::grace`] spares what was written recently (a blob pushed a minute ago whose
//! manifest is yet to come); safety never depends on it: `grace = 0` is safe, it only makes
//! more pushes in flight fail cleanly and be retried.
//!
//! ## Safety: the protocol
//!
//! **What must never happen**: a manifest push (`PUT` by tag or digest, or tagging an
//! existing manifest) is acknowledged, and afterwards a blob the manifest references, its
//! repository link, or a child manifest of an index is gone because a collection deleted it;
//! or a tag a push acknowledged names a manifest a collection deleted. (Clients may of
//! course delete things themselves.) The race to defeat: a client checks that a blob exists
//! (`HEAD`, 200), a collection decides that the blob is garbage, the client pushes a manifest
//! referencing it.
//!
//! Two kinds of objects carry the protocol, both small:
//! - a **condemned set** `gc/<run>`, written by a collection *before* it deletes anything and
//!   removed after its last deletion: the blobs, links and manifests it may delete;
//! - a **push intent** `repositories/<name>/_intents/t<ms>-<random>`, written by a push that
//!   makes a manifest reachable (by a tag, or as a referrer) before it checks anything, and
//!   removed when the push is done. It reads like a tag (it is written as one, so on the
//!   filesystem it is another name of the manifest's record), and its name carries the time
//!   it was written (milliseconds since the Unix epoch, in hexadecimal).
//!
//! A collection **G** deletes blobs and links (phase 2) like this:
//!
//! - G1 *mark*: list every manifest record of every repository, read each, and collect the
//!   blobs each references;
//! - G2 *candidates*: the blobs no record references (not written within the grace period,
//!   and with no repository link written within it) and the links no record of their
//!   repository references;
//! - G3 *condemn*: write the candidates as one new condemned set (a new object per run, so two
//!   collections never overwrite each other's), and wait until it is stored;
//! - G4 *re-mark*: list every record again, read the ones G1 did not read, and drop from the
//!   candidates everything they reference;
//! - G5 *delete*: the remaining candidate links, then the blobs;
//! - G6 *sweep*: list the links again and remove those naming a blob G5 deleted (see
//!   "Dangling links" below);
//! - G7: remove the condemned set.
//!
//! A manifest push **P** in repository `R`:
//!
//! - P1 *pre-check*: every blob the manifest references is linked in `R`, every child
//!   manifest of an index is stored in `R`; otherwise `MANIFEST_BLOB_UNKNOWN` and nothing is
//!   written (bad input changes nothing);
//! - P2 *record*: store the manifest record, durably when pushed by digest; a push by tag
//!   [stages](crate::storage::backend::Backend::stage_record) it, and the tag's write at P6
//!   makes it durable (durability is not part of the argument below: nothing is
//!   acknowledged before P6, and visibility is what G1 and G4 rely on);
//! - P3 *intent*: with a tag or a subject, write a push intent naming the manifest;
//! - P4 *condemned check*: list `gc/`, read the sets not read before (a set never changes, so
//!   a process keeps the ones it read); if one condemns a referenced blob, its link in `R` or
//!   a child manifest: `MANIFEST_BLOB_UNKNOWN`; if one condemns the manifest itself (phase 1
//!   is deleting it): wait until that set is removed and start P4 again;
//! - P5 *post-check*: the record is still stored (else, if what it references below is
//!   there, store it again and go back to P4; if not, fail without storing it),
//!   every referenced blob's link in `R` *and* its bytes exist, every child manifest is
//!   stored; otherwise `MANIFEST_BLOB_UNKNOWN`;
//! - P6: write the referrer entry, then the tag; acknowledge; remove the intent.
//!
//! The record is not removed when P fails at P4 or P5: another push of the same
//! content-addressed record may have been acknowledged meanwhile. What it leaves is a
//! *broken record*, which collections reclaim once it is old (below); until then it is
//! served by digest, with the blobs a collection deleted missing.
//!
//! ### What the argument relies on
//!
//! Of the storage, for every object and every listing, across processes:
//! - **(W) read-after-write**: a read or `HEAD` that starts after a write (or a deletion)
//!   completed returns it (or something later);
//! - **(L) listings see what stays**: a listing, all its pages together, returns every object
//!   that exists from before the listing starts until after it ends.
//!
//! No conditional write, no lock, no lease and no clock is relied on. On the **filesystem**
//! (one host; every process of a registry shares the page cache) (W) and (L) hold: `rename`,
//! `link` and `unlink` are atomic, and POSIX `readdir` returns every entry that is neither
//! added nor removed while the directory is read. Durability is not part of the argument (a
//! crash of the host stops every process, collections included). On **S3**, AWS has been
//! strongly consistent since December 2020 for `GET`, `HEAD` and `LIST` after `PUT` and
//! `DELETE` of the same keys ("read-after-write", and "list-after-write", which also covers
//! deletions): that is (W) and (L), and the driver uses nothing else (`ListObjectsV2`,
//! `GetObject`, `HeadObject`, `PutObject`, `DeleteObject(s)`). An S3-compatible store must
//! offer the same; MinIO and Ceph RGW document strong consistency, and the tests run on moto,
//! a single process. A store that is only eventually consistent for listings (older
//! S3-compatible stores, some gateways) is not safe for online collection.
//!
//! ### Why no acknowledged manifest loses a blob
//!
//! Take a push P referencing blob `d` in `R`, acknowledged, and a collection G that deletes
//! `d`'s bytes or its link in `R` (each G only deletes what its condemned set lists, and
//! only after G4). Write `t(X)` for the instant step X completes. G1 to G4 run in this
//! order, as do P2 to P6; G4's listing runs from `s4` to `e4`, P4's from `s_P4` to `e_P4`.
//!
//! - If `t(P2) < s4`: the record exists from before G4's listing until after it (no
//!   collection deletes it while P is in flight: see phase 1 below; a client that deletes it
//!   makes it no longer an acknowledged manifest), so by (L) G4 lists it, and reads it unless
//!   G1 did already; either way `d` is not a candidate: G deletes neither its bytes nor its
//!   link in `R`. Contradiction.
//! - If `t(P2) ≥ s4`: then `s_P4 > t(P2) ≥ s4 > t(G3)`: the condemned set exists when P4
//!   starts listing. If it still exists when P4's listing ends, by (L) P4 sees it and fails
//!   (it lists `d`): P is not acknowledged. Otherwise G7 completed before `e_P4`, so G5's
//!   deletion of `d` completed before P5 started, and by (W) P5 finds the link or the bytes
//!   missing and fails, unless something stored them again in between, which is then a
//!   correct state (not a deleted blob). Contradiction.
//!
//! The argument holds for every pair (P, G) on its own, so for any number of pushes and
//! collections in any number of processes. Child manifests of an index are covered the same
//! way by phase 1's argument (a child is only deleted if condemned).
//!
//! ### Untagged manifests (phase 1)
//!
//! Per repository: *mark* the manifests reachable from the roots (every tag's manifest and
//! every intent's), closed over the children of indexes and the referrers of reachable
//! subjects; the *candidates* are the other records (not written within the grace period);
//! *condemn* them in a new condemned set; *re-mark* (list intents first, then tags, then
//! recompute the closure); *delete* the remaining candidates (referrer entry first, then the
//! record); remove the set. Take a push P that makes manifest `M` reachable in `R` (tags it,
//! or indexes it as a referrer of a reachable subject, or is an index naming it as a child),
//! acknowledged, and a collection G that deletes `M`'s record:
//!
//! - If P's intent was written before G's re-mark started listing intents, it is listed there
//!   (then `M` is a root), unless P removed it before that listing ended; then P's tag (or
//!   referrer entry) was written before that, so before the listing of tags (or referrer
//!   entries), which follows and sees it. Either way `M`, and its closure, stay.
//! - Otherwise P4 started after G's set was stored. If P4 sees it condemning `M` or a child,
//!   P waits or fails before writing any tag. If it does not see it, G finished deleting
//!   before P5, which finds `M` missing (and stores it again: P has its bytes) or a child
//!   missing (and fails, before any tag is written).
//!
//! The tag is written only after P4 and P5 passed, so a push that fails leaves no tag on a
//! manifest being deleted. A record P stores again at P5 goes back through P4 and P5, so the
//! blob argument applies to it.
//!
//! ### Expiry
//!
//! A store whose content another registry provides again (a
//! [pull-through cache](crate::proxy)'s) may expire what it stored:
//! [`GcOptions::manifest_ttl`]. Phase 1 then runs in every repository (also without
//! `delete_untagged`), with one step first:
//!
//! - E1: list the repository's records with their times; the *expired* manifests are those
//!   written more than the TTL before the run began;
//! - E2: for each tag naming an expired manifest, read the tag again and remove it if it
//!   still names that manifest (an immutable tag is kept).
//!
//! Phase 1 proper follows, in which a record no tag or intent reaches is a candidate once
//! older than the TTL (with `delete_untagged`: than the shorter of the TTL and the grace
//! period): the expired manifests whose tags E2 removed, and those never tagged. Phase 2
//! then takes the blobs only they referenced, once past the grace period as always.
//!
//! What this changes in the argument: nothing for manifests and blobs. E2 only removes tags,
//! and everything else is deleted under the protocol above, so a push that tags an expired
//! manifest again (a cache following its upstream) after E2 makes it reachable at the
//! re-mark through its intent or its tag, as a push tagging an untagged manifest does, and
//! no acknowledged push loses its manifest, a blob or a child. What it gives up is tags: a
//! tag that another process moves between E2's read and its removal is removed although it
//! was just written. That is the one acknowledged write a collection may undo, and only with
//! `manifest_ttl`, which suits a cache and no other store: a cache's tags record what the
//! upstream named last, every pull by tag asks the upstream again and tags anew, and a tag
//! lost this way only means that while the upstream cannot be reached, that tag is not
//! served from the store. The records' times come from the store's clock; a skew between it
//! and the collecting host's only moves expiry by as much.
//!
//! ### Broken records
//!
//! Every collection (with or without `delete_untagged`) also reclaims **broken records**:
//! manifest records no tag reaches (as in phase 1: from tags and intents, through index
//! children and referrers), that no record of their repository names as a child, and whose
//! content is unusable: a blob the manifest requires is not stored, a child manifest it
//! requires is not stored (unless indexes may be sparse), or the record is torn. Refused
//! pushes (P4, P5) and failed writes leave them. Only records last written more than
//! [`BROKEN_RECORD_AGE`] ago are taken. A collection **B**, after phase 2:
//!
//! - B1 *mark*: lists each repository's records with their times, reads them, and picks
//!   the old, broken, unreachable ones nothing names as a child;
//! - B3 *condemn*: writes them (as manifests) in a new condemned set;
//! - B4 *re-check*, in this order: reachability again (intents, then tags); the records'
//!   times, listed again (one written since B1 is no longer old); the children named by
//!   records written since B1; then each candidate, read again, is still broken (a required
//!   blob or child looked up in the store, not found);
//! - B5 *delete* what is left (referrer entry first); B7 remove the set.
//!
//! Two rules on the push side make this safe. (R1) Every push by content writes its record
//! at P2 even when it is stored already, so the record's time is at most [`RECORD_REFRESH`]
//! older than the push's write (the filesystem and GCS skip rewriting a record written less
//! than that long ago; S3 always writes it). (R2) A push whose final P5 check passes more
//! than [`PUSH_DEADLINE`] after its last write of the record gives up (retryable) instead
//! of acknowledging. Clocks: the store's clock (which stamps the records' times) and the
//! collecting host's differ by less than [`CLOCK_MARGIN`], and `BROKEN_RECORD_AGE` is the
//! sum of the three.
//!
//! Take a push P of manifest `M` in `R`, acknowledged, and a collection B that deletes `M`'s
//! record at `t(B5)`. If `t(B5)` precedes P's last look at the record (at P4/P5), P stores it
//! again (it has its bytes, and the blobs are there: it passed P5), so take `t(B5)` after it.
//!
//! - *P writes `M` with an intent* (a tag or a subject), or tags it without writing it:
//!   as in phase 1, either the intent or the tag is seen by B4's re-mark (then `M` is
//!   reachable and kept), or P4 started after B's set was stored: P waits for it to be
//!   removed and finds the record missing (then stores it again), or the set was removed
//!   before P4's listing ended, so `t(B5)` precedes P5.
//! - *P writes `M` by digest* (no intent), last at `W`. If `W` comes after B4 listed the
//!   times, P4 starts after B's set was stored: it sees the set (and waits, then finds the
//!   record missing) or B deleted before P5; either way `t(B5)` precedes P's look at the
//!   record. Otherwise B4 listed `M`'s time after `W`, and by (R1) and the clock margin
//!   found it old only if B4 ran more than `PUSH_DEADLINE` after `W`, so after P's P5 by (R2).
//!   P5 saw every required blob stored, and no collection deletes a blob of an acknowledged
//!   manifest (the argument above): B4's check of the blobs, later still, finds them all, and
//!   every child (phase 1's argument, and B never takes a record another names as a child:
//!   an index pushed after B1 is read by B4, and its push sees the set condemning its child
//!   at P4 or finds it missing at P5). So B keeps `M`.
//!
//! A torn record is not a manifest anyone can have had acknowledged in that state (a push
//! writes its whole record before P4; the torn leftover of a failed write is written again
//! whole, and new, by the next push of the same bytes), so the same times decide.
//!
//! ### Dangling links
//!
//! A link written *without* the bytes being uploaded (a mount, or a push of a blob that is
//! already stored) checks after writing it that the bytes still exist, and removes the link
//! if they do not (a mount then answers 202 with a session, a push asks the client to retry).
//! G6 removes the links that such a writer wrote after G2 and whose check ran before G5: so
//! no link outlives its blob, and a client's `HEAD` never keeps answering 200 for a blob whose
//! bytes are gone (which would make its retries skip the upload). These are liveness
//! measures: safety rests on P5 alone.
//!
//! ### Repositories visited at once
//!
//! Each phase visits several repositories at once (eight; the walk also lists a directory's
//! next subdirectories ahead), because on an object store a repository's visit is a few
//! round trips in a row and a store may hold thousands of repositories. Nothing above orders
//! one repository's steps against another's: the argument orders the steps of one run (G1's
//! reads all complete before G3's write, which completes before G4's first listing, and so
//! on) and, in phase 1, the steps within one repository (mark, condemn, re-mark, delete,
//! release). Both orders are kept: a step's visits start only once the step before it has
//! completed, in every repository; phase 1 surveys repositories at once (its mark, and
//! expiry's E1 and E2) but condemns, re-marks and deletes one repository after another, as a
//! run holds one condemned set at a time. The visits only read; every deletion is made after
//! them, by the run itself (under a condemned set: after checking its lease, below), so a
//! visit abandoned when the run fails or stops leaves no deletion in flight behind the
//! run's back. The one exception
//! is E2's removal of a tag, which only widens the window expiry already gives up (a tag
//! moved by another process while its removal is under way).
//!
//! ### Crashes and stale sets
//!
//! A collection asked to stop ([`Lifecycle::stop_collections`]: a process shutting down)
//! stops before its next deletion or repository and removes its condemned set. A
//! collection that dies leaves its condemned set: pushes referencing what it lists keep
//! failing, never damaging anything, until a later collection removes it.
//!
//! Every set carries a deadline, [`SET_LEASE`] after the write that stored it began (in
//! whole seconds, rounded down): a lease. While it holds the set, the run stores it again
//! with a new deadline every [`SET_RENEWAL`] (at its next deletion or repository; the
//! entries are unchanged, so what a push reads of it stays true); a renewal counts only if
//! its write completed before the deadline it replaces (by the run's clock). The run deletes
//! nothing once the deadline it holds passed: it fails, and removes its set. Any collection
//! removes a set when the deadline it has just read from the store passed more than
//! [`CLOCK_MARGIN`] ago (by its own clock). So a dead collection's set blocks pushes for at
//! most `SET_LEASE + CLOCK_MARGIN` (1 h 15 min) before the next collection removes it.
//!
//! This never removes the set of a run that may still delete. Say collection C reads
//! deadline `D` of run R's set at `y`, its clock then past `D + CLOCK_MARGIN`, and removes
//! the set. With the clocks of the two hosts differing by less than the margin, R's clock was
//! past `D` at `y`. A renewal of R that counts completed before R's clock reached `D`, so
//! before `y`, and by (W) C would have read its later deadline: so no renewal after `D`
//! counts, and R deletes nothing after its clock reached `D`. What remains is a deletion R
//! started just before `D`: it must complete within the margin. The cleanup therefore
//! assumes that the clocks of the hosts running collections differ, and that a deletion
//! request takes, less than [`CLOCK_MARGIN`] (minus the clock difference). A renewal written
//! after C removed the set stores it again: R then fails and removes it, or, dead, leaves it
//! to the cleanup.
//!
//! Likewise a push that dies leaves its intent, which keeps a manifest
//! alive: collections remove intents older than [`INTENT_MAX_AGE`] (counted from the later of
//! the time its name carries and the object's own time, so neither an old record the
//! intent is linked to nor a pusher's clock running behind makes a live intent look
//! stale; the pusher's clock running ahead only keeps a leftover longer), and a push gives up
//! (503, retryable) rather than write its tag after holding its intent for
//! [`INTENT_DEADLINE`].
//!
//! ### Caches
//!
//! The reads of P4 and P5 (the condemned sets, the record, links, blob sizes and child
//! records) must come from the storage itself, never from a cache that may answer "present"
//! for something deleted since (an in-process metadata cache must be bypassed or invalidated
//! by deletions it cannot see, i.e. those of other processes). Condemned sets are immutable
//! once written, so caching their *content* by name is safe; their *listing* is not cached.
//!
//! ## Upload expiry
//!
//! [`Lifecycle::expire_uploads`] aborts every session whose record was last written more than
//! the TTL ago: its record first, then its storage (chunks, S3 staged segments and multipart
//! upload), so a crash in between leaves storage without a record, never a record without
//! storage. Then it releases upload storage no live session owns and older than the TTL
//! ([`LifecycleBackend::expire_upload_storage`]). A request racing an expiry on the same
//! session gets `BLOB_UPLOAD_UNKNOWN` (the client starts over), never a partial blob. The
//! interim blobs of the sha512 path are blobs no link or manifest names: phase 2 reclaims
//! them.
//!
//! ## Repository listing
//!
//! [`Lifecycle::repositories`] walks the repository tree depth first, one directory listing
//! per repository (S3: `ListObjectsV2` with a delimiter; up to eight sibling directories
//! listed at once), in the order of the names followed by `/`, and resumes after `last`
//! without reading what precedes it.

mod backend;
pub mod schedule;
#[cfg(any(feature = "s3", feature = "gcs"))]
pub(crate) mod upload_objects;

pub use backend::{ExpiredStorage, LifecycleBackend, ObjectInfo};
pub use schedule::{RunEnd, RunKind, Schedule, parse_duration};

use std::fmt;
use std::future::Future;
use std::time::{Duration, SystemTime};

use crate::error::Result;

/// A condemned set's deadline lies this long after the write that stored it began; its
/// collection stores it again before then (see "Crashes and stale sets").
pub const SET_LEASE: Duration = Duration::from_secs(15 * 60);
/// A collection stores its condemned set again (with a new deadline) this long after it
/// last began storing it, at its next deletion or repository.
pub const SET_RENEWAL: Duration = Duration::from_secs(5 * 60);
/// The largest clock difference between hosts running collections (and the longest a
/// deletion may take) the cleanup of a dead collection's condemned set tolerates.
pub const CLOCK_MARGIN: Duration = Duration::from_secs(3600);
/// Intents older than this are leftovers of pushes that died; collections remove them.
pub const INTENT_MAX_AGE: Duration = Duration::from_secs(3600);
/// A push holding its intent longer than this gives up before writing its tag.
pub const INTENT_DEADLINE: Duration = Duration::from_secs(600);
/// A manifest push gives up (retryable) when its last check passes more than this after it
/// stored its record (see "Broken records" in the module docs).
pub const PUSH_DEADLINE: Duration = Duration::from_secs(600);
/// A push finding its record stored already (the same manifest pushed again) refreshes the
/// record's time when it is older than this (an object store limits how often one object
/// may be rewritten; see "Broken records").
pub const RECORD_REFRESH: Duration = Duration::from_secs(60);
/// Broken records younger than this are never reclaimed: more than a push may take between
/// storing its record and its last check ([`PUSH_DEADLINE`]), plus how stale a refreshed
/// record's time may be ([`RECORD_REFRESH`]), plus the clock margin ([`CLOCK_MARGIN`]).
pub const BROKEN_RECORD_AGE: Duration = Duration::from_secs(
    PUSH_DEADLINE.as_secs() + RECORD_REFRESH.as_secs() + CLOCK_MARGIN.as_secs(),
);

/// Whether a push storing a record that is stored already, last written at `modified`,
/// must write it again to refresh its time ([`RECORD_REFRESH`]).
pub fn record_needs_refresh(modified: SystemTime, now: SystemTime) -> bool {
    modified
        .checked_add(RECORD_REFRESH)
        .is_none_or(|fresh_until| fresh_until <= now)
}

/// Default of [`GcOptions::grace`].
pub const DEFAULT_GRACE: Duration = Duration::from_secs(3600);
/// Default idle time after which an upload session expires.
pub const DEFAULT_UPLOAD_TTL: Duration = Duration::from_secs(24 * 3600);

/// What a garbage collection run does.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GcOptions {
    /// Change nothing; report what a run would reclaim (the same counts, on a store nobody
    /// writes to meanwhile).
    pub dry_run: bool,
    /// Also delete manifests no tag reaches (phase 1), like Distribution's
    /// `--delete-untagged`. Off by default.
    pub delete_untagged: bool,
    /// Spare what was written less than this long ago. Safety does not depend on it.
    pub grace: Duration,
    /// Expire upload sessions idle for longer than this (phase 3); `None` skips the phase.
    pub upload_ttl: Option<Duration>,
    /// Expire manifests stored longer ago than this, tagged or not (phase 1, see "Expiry"
    /// in the module docs): for a store whose content another registry provides again, a
    /// [pull-through cache](crate::proxy)'s. `None` (the default) keeps them.
    pub manifest_ttl: Option<Duration>,
}

impl Default for GcOptions {
    fn default() -> Self {
        Self {
            dry_run: false,
            delete_untagged: false,
            grace: DEFAULT_GRACE,
            upload_ttl: Some(DEFAULT_UPLOAD_TTL),
            manifest_ttl: None,
        }
    }
}

/// What a garbage collection or an upload expiry reclaimed (or, in a dry run, would reclaim).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct GcReport {
    /// Whether this was a dry run.
    pub dry_run: bool,
    /// Manifests deleted (phase 1, and broken records).
    pub manifests: u64,
    /// Of [`manifests`](Self::manifests), the broken records: left by pushes that were
    /// refused or failed, no tag reaching them (see the module docs).
    pub broken: u64,
    /// Blobs deleted (phase 2).
    pub blobs: u64,
    /// Bytes of the blobs deleted.
    pub bytes: u64,
    /// Repository links deleted (phase 2).
    pub links: u64,
    /// Tags removed because the manifest they named expired
    /// ([`GcOptions::manifest_ttl`]).
    pub tags: u64,
    /// Upload sessions expired and orphaned upload storage released (phase 3).
    pub uploads: u64,
    /// Of [`uploads`](Self::uploads), the sessions expired (their records removed); the
    /// rest was storage no session owned.
    pub sessions: u64,
    /// How long the run took.
    pub duration: Duration,
}

/// The summary line of a run: `gc: manifests=… blobs=… bytes=… uploads=… in …s`.
impl fmt::Display for GcReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "gc: manifests={} blobs={} bytes={} uploads={} in {:.2}s",
            self.manifests,
            self.blobs,
            self.bytes,
            self.uploads,
            self.duration.as_secs_f64()
        )
    }
}

/// One page of the repository listing.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RepositoryList {
    /// Repository names, in the listing's order (see the module docs).
    pub repositories: Vec<String>,
    /// Whether repositories follow the last one returned.
    pub has_more: bool,
}

/// The lifecycle operations of a storage driver (see the [module docs](self)).
pub trait Lifecycle: Send + Sync + 'static {
    /// Runs a garbage collection (see the module docs), safe while clients push and pull in
    /// this and other processes.
    fn collect_garbage(&self, options: &GcOptions)
    -> impl Future<Output = Result<GcReport>> + Send;

    /// Expires upload sessions idle for longer than `ttl` and releases orphaned upload
    /// storage (phase 3 of a collection, on its own). Only [`GcReport::uploads`] (and the
    /// duration) are set.
    fn expire_uploads(
        &self,
        ttl: Duration,
        dry_run: bool,
    ) -> impl Future<Output = Result<GcReport>> + Send;

    /// Repositories holding a tag, a manifest or a blob link, in the order of the module
    /// docs, strictly after `last`, at most `n` (all with `None`).
    fn repositories(
        &self,
        n: Option<usize>,
        last: Option<&str>,
    ) -> impl Future<Output = Result<RepositoryList>> + Send;

    /// Asks the collections running on this driver, and those started later, to stop: each
    /// stops before its next deletion (or its next repository), removes the condemned set it
    /// holds and fails with a retryable error. For a process that is shutting down: a
    /// collection killed while it holds a condemned set leaves it, and pushes referencing
    /// what it lists are refused until a later collection removes it, up to
    /// [`SET_LEASE`] + [`CLOCK_MARGIN`] later (see "Crashes and stale sets"). Pushes and
    /// pulls are not affected.
    fn stop_collections(&self);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_record_is_rewritten_to_refresh_its_time_only_once_that_is_old() {
        let now = SystemTime::now();
        assert!(!record_needs_refresh(now, now));
        assert!(!record_needs_refresh(now - Duration::from_secs(59), now));
        assert!(record_needs_refresh(now - RECORD_REFRESH, now));
        assert!(record_needs_refresh(SystemTime::UNIX_EPOCH, now));
        // A time ahead of this host's clock (another host's) is fresh.
        assert!(!record_needs_refresh(now + Duration::from_secs(30), now));
        assert_eq!(BROKEN_RECORD_AGE, Duration::from_secs(71 * 60));
    }
}
