//! Condemned sets (`gc/<run>`): what a collection may delete, written before it deletes
//! anything and removed after (see [`lifecycle`](crate::storage::lifecycle)).
//!
//! The format is text, one entry per line after a header:
//!
//! ```text
//! marina-gc 1 deadline=<unix seconds>
//! b <digest>                 the bytes of a blob
//! l <repository> <digest>    a repository's link to a blob
//! m <repository> <digest>    a repository's manifest record
//! ```
//!
//! A set's entries never change once written (its run stores it again only with a later
//! deadline, see `lease`), so a process keeps the sets it read, by name, for as long as they
//! are listed ([`CondemnedCache`]). The header's form is fixed: a process of an earlier
//! version that could not parse a set would ignore it, and acknowledge pushes it condemns.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;

use crate::oci::{Digest, RepositoryName};

const HEADER: &str = "marina-gc 1";

/// One collection run's condemned set.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub(crate) struct Condemned {
    /// After this instant (seconds since the epoch) the run deletes nothing more, unless
    /// it stored the set again with a later one (see `lease`).
    pub(crate) deadline: u64,
    blobs: HashSet<Digest>,
    /// `<repository> <digest>`
    links: HashSet<String>,
    /// `<repository> <digest>`
    manifests: HashSet<String>,
}

fn entry(repo: &str, digest: &Digest) -> String {
    [repo, " ", digest.as_str()].concat()
}

impl Condemned {
    /// An empty set whose run stops deleting at `deadline` (the deadline of a set a run
    /// stores is its lease's: see `lease`).
    #[cfg(test)]
    pub(crate) fn new(deadline: SystemTime) -> Self {
        Self {
            deadline: secs(deadline),
            ..Self::default()
        }
    }

    pub(crate) fn add_blob(&mut self, digest: Digest) {
        self.blobs.insert(digest);
    }

    pub(crate) fn add_link(&mut self, repo: &str, digest: &Digest) {
        self.links.insert(entry(repo, digest));
    }

    pub(crate) fn add_manifest(&mut self, repo: &str, digest: &Digest) {
        self.manifests.insert(entry(repo, digest));
    }

    /// Whether nothing is condemned.
    #[cfg(test)]
    pub(crate) fn is_empty(&self) -> bool {
        self.blobs.is_empty() && self.links.is_empty() && self.manifests.is_empty()
    }

    /// Whether the set condemns the bytes of `digest` or its link in `repo`: a manifest of
    /// `repo` referencing it must not be acknowledged.
    pub(crate) fn condemns_blob(&self, repo: &RepositoryName, digest: &Digest) -> bool {
        self.blobs.contains(digest) || self.links.contains(&entry(repo.as_str(), digest))
    }

    /// Whether the set condemns the manifest record `digest` of `repo`.
    pub(crate) fn condemns_manifest(&self, repo: &RepositoryName, digest: &Digest) -> bool {
        self.manifests.contains(&entry(repo.as_str(), digest))
    }

    /// Whether the run that wrote the set is past its deadline by more than `margin` at
    /// `now`: it deletes nothing any more (see the module docs of `lifecycle`).
    pub(crate) fn expired(&self, now: SystemTime, margin: Duration) -> bool {
        self.deadline.saturating_add(margin.as_secs()) < secs(now)
    }

    /// The set as stored, with its own deadline.
    #[cfg(test)]
    pub(crate) fn encode(&self) -> Bytes {
        Self::stored(self.deadline, &self.encode_entries())
    }

    /// The entries, one per line, without the header.
    pub(crate) fn encode_entries(&self) -> Bytes {
        let mut out = String::new();
        for digest in &self.blobs {
            out.push_str("b ");
            out.push_str(digest.as_str());
            out.push('\n');
        }
        for (kind, entries) in [("l ", &self.links), ("m ", &self.manifests)] {
            for e in entries {
                out.push_str(kind);
                out.push_str(e);
                out.push('\n');
            }
        }
        Bytes::from(out)
    }

    /// What is stored for a set of `entries` ([`encode_entries`](Self::encode_entries)) with
    /// `deadline` (seconds since the epoch).
    pub(crate) fn stored(deadline: u64, entries: &[u8]) -> Bytes {
        let header = format!("{HEADER} deadline={deadline}\n");
        let mut out = Vec::with_capacity(header.len() + entries.len());
        out.extend_from_slice(header.as_bytes());
        out.extend_from_slice(entries);
        Bytes::from(out)
    }

    /// Parses a set; `None` for anything that is not one.
    pub(crate) fn decode(bytes: &[u8]) -> Option<Self> {
        let text = std::str::from_utf8(bytes).ok()?;
        let mut lines = text.lines();
        let deadline = lines
            .next()?
            .strip_prefix(HEADER)?
            .trim()
            .strip_prefix("deadline=")?
            .parse()
            .ok()?;
        let mut set = Self {
            deadline,
            ..Self::default()
        };
        for line in lines {
            let (kind, rest) = line.split_once(' ')?;
            match kind {
                "b" => {
                    set.blobs.insert(Digest::parse(rest).ok()?);
                }
                "l" | "m" => {
                    let (repo, digest) = rest.rsplit_once(' ')?;
                    let repo = RepositoryName::parse(repo).ok()?;
                    let digest = Digest::parse(digest).ok()?;
                    let entries = if kind == "l" {
                        &mut set.links
                    } else {
                        &mut set.manifests
                    };
                    entries.insert(entry(repo.as_str(), &digest));
                }
                _ => return None,
            }
        }
        Some(set)
    }
}

/// Seconds since the epoch.
pub(crate) fn secs(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

/// The condemned sets a process has read, by object name.
#[derive(Debug, Default)]
pub(crate) struct CondemnedCache(Mutex<HashMap<String, Arc<Condemned>>>);

impl CondemnedCache {
    /// Keeps only the sets named in `listed`; returns the cached ones among them and the
    /// names still to read.
    pub(crate) fn retain_listed(&self, listed: &[String]) -> (Vec<Arc<Condemned>>, Vec<String>) {
        let mut map = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        let names: HashSet<&str> = listed.iter().map(String::as_str).collect();
        map.retain(|name, _| names.contains(name.as_str()));
        let mut cached = Vec::new();
        let mut missing = Vec::new();
        for name in listed {
            match map.get(name) {
                Some(set) => cached.push(Arc::clone(set)),
                None => missing.push(name.clone()),
            }
        }
        (cached, missing)
    }

    /// Remembers a set read under `name`.
    pub(crate) fn insert(&self, name: String, set: Arc<Condemned>) {
        self.0
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(name, set);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::oci::DigestAlgorithm;

    #[test]
    fn a_set_round_trips_and_answers_for_its_entries() {
        let repo = RepositoryName::parse("a/b").unwrap();
        let other = RepositoryName::parse("a/c").unwrap();
        let d = |s: &[u8]| Digest::compute(DigestAlgorithm::Sha256, s);
        let deadline = UNIX_EPOCH + Duration::from_secs(1_000);
        let mut set = Condemned::new(deadline);
        assert!(set.is_empty());
        set.add_blob(d(b"blob"));
        set.add_link("a/b", &d(b"link"));
        set.add_manifest("a/b", &d(b"manifest"));
        let decoded = Condemned::decode(&set.encode()).unwrap();
        assert_eq!(decoded, set);
        assert!(set.condemns_blob(&other, &d(b"blob")));
        assert!(set.condemns_blob(&repo, &d(b"link")));
        assert!(!set.condemns_blob(&other, &d(b"link")));
        assert!(set.condemns_manifest(&repo, &d(b"manifest")));
        assert!(!set.condemns_manifest(&other, &d(b"manifest")));
        assert!(!set.condemns_blob(&repo, &d(b"manifest")));
        assert!(!set.expired(deadline, Duration::from_secs(10)));
        assert!(set.expired(deadline + Duration::from_secs(11), Duration::from_secs(10)));
        for junk in [
            &b""[..],
            b"hello",
            b"marina-gc 1 deadline=5\nx y\n",
            b"\xff",
        ] {
            assert!(Condemned::decode(junk).is_none());
        }
    }

    #[test]
    fn the_cache_keeps_only_listed_sets() {
        let cache = CondemnedCache::default();
        cache.insert("one".into(), Arc::new(Condemned::default()));
        cache.insert("two".into(), Arc::new(Condemned::default()));
        let (cached, missing) = cache.retain_listed(&["two".into(), "three".into()]);
        assert_eq!((cached.len(), missing), (1, vec!["three".to_owned()]));
        let (cached, missing) = cache.retain_listed(&[]);
        assert!(cached.is_empty() && missing.is_empty());
        assert!(cache.0.lock().unwrap().is_empty());
    }
}
