//! The engine's metadata cache: facts about stored objects that cannot change while the
//! objects exist, kept in memory so that `HEAD` of a blob and `GET` of a manifest cost no
//! round trip to an object store.
//!
//! # What is cached
//!
//! Entries are keyed by the storage [`Key`] the fact was read from, so whoever removes a key
//! knows which entry to drop ([`MetadataCache::invalidate`]):
//!
//! | key class | value | why it cannot change while the key exists |
//! |---|---|---|
//! | [`Link`](KeyClass::Link) | the blob's size | a link names one content-addressed blob |
//! | [`ManifestRecord`](KeyClass::ManifestRecord) | the manifest (bytes, media type) | content-addressed, verified on read |
//! | [`Tag`](KeyClass::Tag) | the digest it points to | it *can* change: see below |
//!
//! A link entry is the blob's size by digest as the read paths need it: a `HEAD` or `GET` of a
//! blob asks whether the blob is visible in the repository *and* its size, which the link
//! answers in one read on an object store. (A blob's size apart from a repository is only
//! asked by writes, which do not use the cache; see below.) Removing a blob's bytes drops
//! every repository's link entry for it.
//!
//! **Only positive answers are cached.** A miss ("no such link", "no such manifest") is
//! read from the store every time: a blob or manifest pushed a moment later through another
//! process is visible at once. (Clients ask for what is absent mostly right before pushing
//! it, so a negative entry would mostly delay their own push's visibility.)
//!
//! **Only read paths use the cache** (`HEAD`/`GET` of blobs and manifests, tag resolution).
//! Every check a write makes, and that a concurrent delete or garbage collection could
//! falsify, reads the store: a push's "is this blob already stored?", the references a
//! manifest `PUT` checks, the source of a mount, the manifest a tag is pointed at, what a
//! delete finds. A positive entry therefore never lets a write acknowledge something that
//! depends on data another process deleted.
//!
//! # Deletes
//!
//! *In this process* every delete drops its entries before it returns (the engine removes
//! keys through `Engine::remove_key`; the garbage collector
//! calls [`invalidate`](MetadataCache::invalidate) for each key it removes). A read that was
//! in flight while the delete ran cannot put its stale answer back afterwards: every
//! invalidation bumps a generation counter, and a fill made under an older generation is
//! undone (see [`MetadataCache::fill_size`]).
//!
//! *In another process* sharing the store, an entry lives at most
//! [`ttl_ms`](CacheConfig::ttl_ms) (default 5 s) after it was read. For that long after a
//! delete elsewhere, this process may still:
//!
//! - answer `HEAD` of a blob whose link was deleted with 200 and its size, and serve a `GET`
//!   of it (the bytes, which only garbage collection removes, are exactly what the digest
//!   names; once they are gone the `GET` is 404 `BLOB_UNKNOWN`, read from the store);
//! - serve a deleted manifest by digest (its exact bytes, verified against the digest);
//! - resolve a tag to the manifest it named before it was deleted or moved (see below).
//!
//! It never serves bytes other than those a digest names, never reports a push as done
//! that is not stored (writes do not use the cache), and listings (tags, referrers,
//! catalog) are always read from the store. This is acceptable for the same reason CNCF
//! Distribution's in-memory descriptor cache is (which keeps its entries, with no bound,
//! across deletes made by other instances): a reader a few seconds late is
//! indistinguishable from one that started its pull a few seconds earlier, and deletion in
//! the OCI distribution spec is housekeeping, not a revocation of read access (access
//! control decides who may read, before the cache is consulted). Operators who need deletes
//! visible everywhere at once set `ttl_ms` lower, or turn the cache off.
//!
//! # Tags
//!
//! A tag is the one mutable fact. It is cached with the same bound as everything else
//! (`ttl_ms`) and dropped in this process whenever this process writes or removes it: a
//! client that pushes a tag and pulls it through the same instance always sees its push; a
//! pull through another instance sees it within `ttl_ms`, and until then gets the
//! manifest the tag named before (complete and still stored, since records are removed only
//! by a delete, whose visibility has the same bound). Without it every `GET` of a manifest
//! by tag costs a round trip to the store, which is what makes `get-manifest` on S3 slow.
//! [`tags`](CacheConfig::tags)` = false` caches no tag.
//!
//! # Bounds
//!
//! Small facts (sizes, tag targets) are bounded by count ([`max_entries`](CacheConfig::max_entries)),
//! manifests by their bytes ([`max_bytes`](CacheConfig::max_bytes)); both are
//! [`moka`] caches (TinyLFU admission, LRU eviction, time to live). The hit and miss counts
//! per kind are read with [`MetadataCache::stats`].

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use moka::sync::Cache;
use serde::{Deserialize, Serialize};

use crate::observe::metrics::{CacheCounters, Metrics};
use crate::oci::Digest;
use crate::storage::Manifest;
use crate::storage::layout::{Key, KeyClass};

/// Default bound on how long an entry lives: how late a delete made by another process may
/// become visible here.
pub const DEFAULT_TTL_MS: u64 = 5_000;
/// Default bound on the number of small facts (sizes, tag targets).
pub const DEFAULT_MAX_ENTRIES: u64 = 100_000;
/// Default bound on the bytes of the cached manifests.
pub const DEFAULT_MAX_BYTES: u64 = 64 * 1024 * 1024;

/// Bytes a manifest entry is weighed at beyond its manifest bytes and key (the entry, its
/// media type and the cache's own bookkeeping, roughly).
const MANIFEST_ENTRY_OVERHEAD: usize = 256;

/// Settings of the metadata cache (TOML `[storage.cache]`, environment `STORAGE_CACHE*`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct CacheConfig {
    /// `true` or `false`; unset: on for object stores (S3, GCS), where every metadata read
    /// is a round trip, off for the filesystem and memory, where it is not worth its memory
    /// (see `docs/performance.md`).
    pub enabled: Option<bool>,
    /// How long an entry lives, in milliseconds: the bound on how late a delete made by
    /// another process is seen here (default 5000). `0` turns the cache off.
    pub ttl_ms: u64,
    /// Most sizes and tag targets kept (default 100 000).
    pub max_entries: u64,
    /// Most bytes of manifests kept (default 64 MiB).
    pub max_bytes: u64,
    /// Whether tags are cached too (default `true`); see the module documentation.
    pub tags: bool,
}

impl Default for CacheConfig {
    fn default() -> Self {
        Self {
            enabled: None,
            ttl_ms: DEFAULT_TTL_MS,
            max_entries: DEFAULT_MAX_ENTRIES,
            max_bytes: DEFAULT_MAX_BYTES,
            tags: true,
        }
    }
}

impl CacheConfig {
    /// A cache that is on whatever the driver, with the other settings at their defaults.
    pub fn on() -> Self {
        Self {
            enabled: Some(true),
            ..Self::default()
        }
    }

    /// No cache.
    pub fn off() -> Self {
        Self {
            enabled: Some(false),
            ..Self::default()
        }
    }

    /// Whether a cache is built for a backend whose metadata reads are round trips
    /// (`remote`).
    pub fn is_enabled_for(&self, remote: bool) -> bool {
        self.enabled.unwrap_or(remote) && self.ttl_ms > 0
    }

    /// Builds the cache if it is enabled for such a backend, counting into `metrics` when
    /// given (see [`MetadataCache::new`]).
    pub fn build(&self, remote: bool, metrics: Option<&Metrics>) -> Option<MetadataCache> {
        self.is_enabled_for(remote)
            .then(|| MetadataCache::new(self, metrics))
    }
}

/// A cached small fact.
#[derive(Debug, Clone)]
enum Fact {
    Size(u64),
    Target(Digest),
}

/// The kinds of cached facts, for the hit and miss counts.
#[derive(Debug, Clone, Copy)]
enum Kind {
    Link = 0,
    Manifest = 1,
    Tag = 2,
}

impl Kind {
    const ALL: [Self; 3] = [Self::Link, Self::Manifest, Self::Tag];

    /// The `cache` label of its metrics, as [`CacheStats::by_name`] names it.
    fn name(self) -> &'static str {
        match self {
            Self::Link => "links",
            Self::Manifest => "manifests",
            Self::Tag => "tags",
        }
    }

    fn of(class: KeyClass) -> Option<Self> {
        match class {
            KeyClass::Link => Some(Self::Link),
            KeyClass::ManifestRecord => Some(Self::Manifest),
            KeyClass::Tag => Some(Self::Tag),
            _ => None,
        }
    }
}

/// Hits and misses of one kind of fact.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct HitMiss {
    /// Lookups answered from memory.
    pub hits: u64,
    /// Lookups that went to the store.
    pub misses: u64,
}

/// A snapshot of the cache's counters, per kind of fact (for metrics).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CacheStats {
    /// A repository's links to blobs.
    pub links: HitMiss,
    /// Manifest records.
    pub manifests: HitMiss,
    /// Tag targets.
    pub tags: HitMiss,
    /// Small facts held now (approximate: expired entries are dropped lazily).
    pub entries: u64,
    /// Manifests held now.
    pub manifest_entries: u64,
    /// Weight of the manifests held now, in bytes.
    pub manifest_bytes: u64,
}

impl CacheStats {
    /// The named counters, `("links" | "manifests" | "tags", counts)`, for an exporter that
    /// labels them by name.
    pub fn by_name(&self) -> [(&'static str, HitMiss); 3] {
        [
            (Kind::Link.name(), self.links),
            (Kind::Manifest.name(), self.manifests),
            (Kind::Tag.name(), self.tags),
        ]
    }
}

/// What a fill must present: the generation read *before* the store was read. A fill under
/// an older generation than the current one raced an invalidation and is undone.
#[derive(Debug, Clone, Copy)]
pub struct Ticket(u64);

/// The metadata cache (see the module documentation). Cheap to share: lookups take no lock.
pub struct MetadataCache {
    facts: Cache<Key, Fact>,
    manifests: Cache<Key, Manifest>,
    generation: AtomicU64,
    cache_tags: bool,
    /// Hits and misses per [`Kind`]: the registry's Prometheus counters when metrics are on.
    counts: [CacheCounters; 3],
}

impl std::fmt::Debug for MetadataCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MetadataCache")
            .field("stats", &self.stats())
            .finish_non_exhaustive()
    }
}

impl MetadataCache {
    /// A cache with the given bounds (whether it is enabled is the caller's business),
    /// counting its hits and misses into `metrics` (`marina_cache_requests_total`, with
    /// `cache` = `links`, `manifests`, `tags`) when given.
    pub fn new(config: &CacheConfig, metrics: Option<&Metrics>) -> Self {
        let ttl = Duration::from_millis(config.ttl_ms.max(1));
        let facts = Cache::builder()
            .max_capacity(config.max_entries)
            .time_to_live(ttl)
            .support_invalidation_closures()
            .build();
        let manifests = Cache::builder()
            .max_capacity(config.max_bytes)
            .weigher(|key: &Key, manifest: &Manifest| {
                let weight = manifest.bytes.len()
                    + manifest.info.media_type.len()
                    + key.as_str().len()
                    + MANIFEST_ENTRY_OVERHEAD;
                u32::try_from(weight).unwrap_or(u32::MAX)
            })
            .time_to_live(ttl)
            .build();
        Self {
            facts,
            manifests,
            generation: AtomicU64::new(0),
            cache_tags: config.tags,
            counts: Kind::ALL.map(|kind| {
                metrics.map_or_else(CacheCounters::default, |m| m.cache().cache(kind.name()))
            }),
        }
    }

    fn count(&self, key: &Key, hit: bool) {
        if let Some(kind) = Kind::of(key.class()) {
            let counters = &self.counts[kind as usize];
            if hit {
                counters.hit();
            } else {
                counters.miss();
            }
        }
    }

    /// Whether facts of `key`'s class are cached at all.
    pub fn caches(&self, class: KeyClass) -> bool {
        match class {
            KeyClass::Tag => self.cache_tags,
            KeyClass::Link | KeyClass::ManifestRecord => true,
            _ => false,
        }
    }

    /// Taken before reading the store for a fill.
    pub fn ticket(&self) -> Ticket {
        Ticket(self.generation.load(Ordering::SeqCst))
    }

    /// The cached size of a link.
    pub fn size(&self, key: &Key) -> Option<u64> {
        let size = match self.facts.get(key) {
            Some(Fact::Size(size)) => Some(size),
            _ => None,
        };
        self.count(key, size.is_some());
        size
    }

    /// The cached target of a tag (`None` also when tags are not cached).
    pub fn tag(&self, key: &Key) -> Option<Digest> {
        if !self.cache_tags {
            return None;
        }
        let target = match self.facts.get(key) {
            Some(Fact::Target(digest)) => Some(digest),
            _ => None,
        };
        self.count(key, target.is_some());
        target
    }

    /// The cached manifest of a record key.
    pub fn manifest(&self, key: &Key) -> Option<Manifest> {
        let manifest = self.manifests.get(key);
        self.count(key, manifest.is_some());
        manifest
    }

    /// Keeps the size of a link read from the store under `ticket`.
    ///
    /// The entry is inserted first and the generation checked after: if an invalidation ran
    /// since the ticket was taken (its delete may have come after this fill's read), the
    /// entry is removed again. Either the invalidation's removal comes after the insert, or
    /// its generation bump comes before the check: a stale entry never survives.
    pub fn fill_size(&self, ticket: Ticket, key: &Key, size: u64) {
        self.facts.insert(key.clone(), Fact::Size(size));
        self.settle(ticket, key);
    }

    /// Keeps the target of a tag read from the store under `ticket` (see [`fill_size`](Self::fill_size)).
    pub fn fill_tag(&self, ticket: Ticket, key: &Key, target: Digest) {
        if self.cache_tags {
            self.facts.insert(key.clone(), Fact::Target(target));
            self.settle(ticket, key);
        }
    }

    /// Keeps a manifest read from the store under `ticket` (see [`fill_size`](Self::fill_size)).
    pub fn fill_manifest(&self, ticket: Ticket, key: &Key, manifest: Manifest) {
        self.manifests.insert(key.clone(), manifest);
        self.settle(ticket, key);
    }

    fn settle(&self, ticket: Ticket, key: &Key) {
        if self.generation.load(Ordering::SeqCst) != ticket.0 {
            self.facts.invalidate(key);
            self.manifests.invalidate(key);
        }
    }

    /// Drops what is cached about `key`, which was just removed or rewritten in the store.
    /// Call it for every key removed (the garbage collector does, for links, records, tags
    /// and blobs). Removing a blob's bytes also drops every repository's cached link to it.
    pub fn invalidate(&self, key: &Key) {
        self.generation.fetch_add(1, Ordering::SeqCst);
        match key.class() {
            KeyClass::ManifestRecord => self.manifests.invalidate(key),
            KeyClass::Blob => {
                // `blobs/<alg>/<hex>` and `…/_layers/<alg>/<hex>` end alike.
                let tail = key
                    .as_str()
                    .strip_prefix("blobs")
                    .unwrap_or(key.as_str())
                    .to_owned();
                // Only fails if closures are not supported, which `new` enables.
                let _ = self.facts.invalidate_entries_if(move |k, _| {
                    k.class() == KeyClass::Link && k.as_str().ends_with(&tail)
                });
            }
            _ => self.facts.invalidate(key),
        }
    }

    /// Drops every entry (after an operation that removed too much to name, e.g. a bulk
    /// repair).
    pub fn invalidate_all(&self) {
        self.generation.fetch_add(1, Ordering::SeqCst);
        self.facts.invalidate_all();
        self.manifests.invalidate_all();
    }

    /// The counters and sizes now.
    pub fn stats(&self) -> CacheStats {
        let read = |kind: Kind| {
            let counters = &self.counts[kind as usize];
            HitMiss {
                hits: counters.hits(),
                misses: counters.misses(),
            }
        };
        CacheStats {
            links: read(Kind::Link),
            manifests: read(Kind::Manifest),
            tags: read(Kind::Tag),
            entries: self.facts.entry_count(),
            manifest_entries: self.manifests.entry_count(),
            manifest_bytes: self.manifests.weighted_size(),
        }
    }

    /// Applies the cache's pending bookkeeping (entry counts, evictions) now; for tests and
    /// measurements, which otherwise see counts that lag by a few operations.
    pub fn run_pending_tasks(&self) {
        self.facts.run_pending_tasks();
        self.manifests.run_pending_tasks();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::oci::{DigestAlgorithm, RepositoryName, Tag};
    use crate::storage::ManifestInfo;
    use crate::storage::layout;

    fn digest(s: &str) -> Digest {
        Digest::compute(DigestAlgorithm::Sha256, s.as_bytes())
    }

    #[test]
    fn a_fill_that_raced_an_invalidation_is_undone() {
        let cache = MetadataCache::new(&CacheConfig::on(), None);
        let repo = RepositoryName::parse("a/b").unwrap();
        let link = layout::layer_link(&repo, &digest("x"));
        let ticket = cache.ticket();
        cache.invalidate(&link); // a delete ran while the store was read
        cache.fill_size(ticket, &link, 3);
        assert_eq!(cache.size(&link), None);
        let ticket = cache.ticket();
        cache.fill_size(ticket, &link, 3);
        assert_eq!(cache.size(&link), Some(3));
        assert_eq!(cache.stats().links, HitMiss { hits: 1, misses: 1 });
    }

    #[test]
    fn removing_a_blob_drops_every_link_to_it() {
        let cache = MetadataCache::new(&CacheConfig::on(), None);
        let (x, y) = (digest("x"), digest("y"));
        let links: Vec<Key> = ["a", "b/c"]
            .iter()
            .map(|r| layout::layer_link(&RepositoryName::parse(r).unwrap(), &x))
            .collect();
        let other = layout::layer_link(&RepositoryName::parse("a").unwrap(), &y);
        for key in links.iter().chain([&other]) {
            cache.fill_size(cache.ticket(), key, 1);
        }
        cache.invalidate(&layout::blob_data(&x));
        cache.run_pending_tasks();
        assert!(links.iter().all(|k| cache.size(k).is_none()));
        assert_eq!(cache.size(&other), Some(1));
    }

    #[test]
    fn tags_and_manifests_and_their_switches() {
        let repo = RepositoryName::parse("a").unwrap();
        let tag = layout::tag(&repo, &Tag::parse("v1").unwrap());
        let d = digest("m");
        let record = layout::manifest(&repo, &d);
        let manifest = Manifest {
            info: ManifestInfo {
                digest: d.clone(),
                size: 1,
                media_type: "m".into(),
            },
            bytes: bytes::Bytes::from_static(b"m"),
        };
        let cache = MetadataCache::new(&CacheConfig::on(), None);
        cache.fill_tag(cache.ticket(), &tag, d.clone());
        cache.fill_manifest(cache.ticket(), &record, manifest.clone());
        assert_eq!(cache.tag(&tag), Some(d.clone()));
        assert_eq!(cache.manifest(&record), Some(manifest.clone()));
        cache.invalidate(&tag);
        cache.invalidate(&record);
        assert_eq!(cache.tag(&tag), None);
        assert_eq!(cache.manifest(&record), None);
        let untagged = MetadataCache::new(
            &CacheConfig {
                tags: false,
                ..CacheConfig::on()
            },
            None,
        );
        untagged.fill_tag(untagged.ticket(), &tag, d);
        assert_eq!(untagged.tag(&tag), None);
        assert!(!CacheConfig::default().is_enabled_for(false));
        assert!(CacheConfig::default().is_enabled_for(true));
        assert!(
            !CacheConfig {
                ttl_ms: 0,
                ..CacheConfig::on()
            }
            .is_enabled_for(true)
        );
    }

    #[test]
    fn entries_expire_after_the_ttl() {
        let cache = MetadataCache::new(
            &CacheConfig {
                ttl_ms: 50,
                ..CacheConfig::on()
            },
            None,
        );
        let key = layout::layer_link(&RepositoryName::parse("a").unwrap(), &digest("x"));
        cache.fill_size(cache.ticket(), &key, 1);
        assert_eq!(cache.size(&key), Some(1));
        std::thread::sleep(Duration::from_millis(80));
        assert_eq!(cache.size(&key), None);
    }
}
