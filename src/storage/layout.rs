//! The one place that turns repositories, digests, tags and upload ids into storage keys.
//!
//! Every backend stores this tree (the filesystem driver under its root directory, the S3
//! driver under its prefix, the in-memory driver in a map); the filesystem driver keeps tags
//! beside the sha256 manifest records instead (see [`TagKey`]):
//!
//! ```text
//! blobs/<alg>/<hex>                                   blob bytes, deduplicated globally
//! uploads/<id>/...                                    upload bytes in progress (backend-owned)
//! gc/<run>                                            a garbage collection's condemned set
//! repositories/<name>/
//!     _layers/<alg>/<hex>                             link: blob visible in <name>; holds its size
//!     _manifests/<alg>/<hex>                          manifest: "<digest> <media type>\n<bytes>"
//!     _tags/<tag>                                     tag: starts with the digest it points to
//!     _referrers/<alg>/<subject hex>/<alg>-<hex>      descriptor of a manifest whose subject it is
//!     _uploads/<id>                                   upload session state (JSON)
//!     _intents/<random>                               a push making a manifest reachable
//! ```
//!
//! `gc/` and `_intents/` belong to the garbage collection protocol (see
//! [`lifecycle`](super::lifecycle)).
//!
//! Keys are only ever built here from validated types ([`RepositoryName`], [`Digest`],
//! [`Tag`], [`UploadId`]), whose grammars exclude `..`, empty components, `\` and leading
//! `/`; a key therefore never escapes the storage root. Repository path components cannot
//! start with `_`, so `_layers` and friends never collide with a nested repository.

use std::fmt;

use crate::oci::{Digest, DigestAlgorithm, RepositoryName, Tag};
use crate::storage::UploadId;

/// A relative, `/`-separated storage key. Only this module creates keys.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Key(String);

impl Key {
    /// The key as a `/`-separated relative path.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The final component (file or object name).
    pub fn file_name(&self) -> &str {
        self.0.rsplit('/').next().unwrap_or(&self.0)
    }
}

impl fmt::Display for Key {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for Key {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Key({})", self.0)
    }
}

/// Joins components with `/` into a key, in one allocation of the exact size (keys are built
/// on every request; `format!` chains cost several reallocations each).
fn key(components: &[&str]) -> Key {
    let len = components.iter().map(|c| c.len() + 1).sum::<usize>();
    let mut key = String::with_capacity(len.saturating_sub(1));
    for component in components {
        if !key.is_empty() {
            key.push('/');
        }
        key.push_str(component);
    }
    Key(key)
}

const REPOSITORIES: &str = "repositories";
// A repository's reserved components (repository name components never start with `_`).
const LAYERS: &str = "_layers";
const MANIFESTS: &str = "_manifests";
const TAGS: &str = "_tags";
const UPLOADS: &str = "_uploads";
const INTENTS: &str = "_intents";
/// The components of a repository directory that make it a repository: it holds a blob
/// link, a manifest or a tag below one of them.
pub const REPOSITORY_MARKS: [&str; 3] = [LAYERS, MANIFESTS, TAGS];

/// The directory of every repository (the root of the repository name tree).
pub fn repositories_dir() -> Key {
    key(&[REPOSITORIES])
}

/// The directory of a repository: its name's components below [`repositories_dir`], holding
/// its reserved (`_`-prefixed) directories and the directories of nested repositories.
pub fn repository_dir(repo: &RepositoryName) -> Key {
    key(&[REPOSITORIES, repo.as_str()])
}

/// A directory below [`repositories_dir`] named by a repository path that may not be a
/// repository (a namespace such as `library` of `library/ubuntu`), for walking the tree.
/// `path` must be a `/`-joined sequence of components already listed from storage.
pub(crate) fn repository_path_dir(path: &str) -> Key {
    if path.is_empty() {
        repositories_dir()
    } else {
        key(&[REPOSITORIES, path])
    }
}

/// The directory holding the blobs of `algorithm`.
pub fn blobs_dir(algorithm: DigestAlgorithm) -> Key {
    key(&["blobs", algorithm.as_str()])
}

/// The directory where a backend keeps the bytes of uploads in progress.
pub fn uploads_dir() -> Key {
    key(&["uploads"])
}

/// The directory of the garbage collector's condemned sets.
pub fn gc_dir() -> Key {
    key(&["gc"])
}

/// A garbage collection run's condemned set.
pub fn gc_marker(name: &str) -> Key {
    key(&["gc", name])
}

/// Where the bytes of a blob live.
pub fn blob_data(digest: &Digest) -> Key {
    key(&["blobs", digest.algorithm().as_str(), digest.hex()])
}

/// Directory a backend may use for the bytes of an upload in progress.
pub fn upload_data_dir(id: &UploadId) -> Key {
    key(&["uploads", id.as_str()])
}

/// A named object inside an upload's data directory (e.g. `data`, `staged`).
pub fn upload_data(id: &UploadId, name: &'static str) -> Key {
    key(&["uploads", id.as_str(), name])
}

/// The link that makes a blob visible in a repository.
pub fn layer_link(repo: &RepositoryName, digest: &Digest) -> Key {
    key(&[
        REPOSITORIES,
        repo.as_str(),
        LAYERS,
        digest.algorithm().as_str(),
        digest.hex(),
    ])
}

/// Directory of a repository's blob links.
pub fn layers_dir(repo: &RepositoryName) -> Key {
    key(&[REPOSITORIES, repo.as_str(), LAYERS])
}

/// Directory of a repository's links to blobs of `algorithm`.
pub fn layers_algorithm_dir(repo: &RepositoryName, algorithm: DigestAlgorithm) -> Key {
    key(&[REPOSITORIES, repo.as_str(), LAYERS, algorithm.as_str()])
}

/// A manifest revision (media type and exact bytes).
pub fn manifest(repo: &RepositoryName, digest: &Digest) -> Key {
    key(&[
        REPOSITORIES,
        repo.as_str(),
        MANIFESTS,
        digest.algorithm().as_str(),
        digest.hex(),
    ])
}

/// Directory of a repository's manifests.
pub fn manifests_dir(repo: &RepositoryName) -> Key {
    key(&[REPOSITORIES, repo.as_str(), MANIFESTS])
}

/// Directory of a repository's manifest records of `algorithm` (a backend may keep other
/// objects there too, whose names are not hexadecimal digests: the filesystem's tags).
pub fn manifests_algorithm_dir(repo: &RepositoryName, algorithm: DigestAlgorithm) -> Key {
    key(&[REPOSITORIES, repo.as_str(), MANIFESTS, algorithm.as_str()])
}

/// A tag pointer.
pub fn tag(repo: &RepositoryName, tag: &Tag) -> Key {
    key(&[REPOSITORIES, repo.as_str(), TAGS, tag.as_str()])
}

/// Directory listing a repository's tags (one object per tag, named by the tag).
pub fn tags_dir(repo: &RepositoryName) -> Key {
    key(&[REPOSITORIES, repo.as_str(), TAGS])
}

/// A tag key ([`tag`]) or a repository's tag directory ([`tags_dir`]) taken apart, for a
/// backend that stores tags somewhere other than their key says (the filesystem driver
/// keeps them beside the manifest records, so that a tagged push syncs one directory).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TagKey<'a> {
    /// The repository's key prefix, `repositories/<name>`.
    pub repository: &'a str,
    /// The tag; `None` for the tag directory.
    pub tag: Option<&'a str>,
}

impl<'a> TagKey<'a> {
    /// `key` taken apart if it is a tag or a tag directory; `None` for every other key.
    pub fn parse(key: &'a Key) -> Option<Self> {
        let key = key.as_str();
        let name = key.strip_prefix(REPOSITORIES)?.strip_prefix('/')?;
        // A repository name's components never start with `_`: the first `/_` ends it.
        let name_len = name.find("/_")?;
        let repository = &key[..REPOSITORIES.len() + 1 + name_len];
        let rest = name[name_len + 1..].strip_prefix(TAGS)?;
        let tag = match rest {
            "" => None,
            rest => Some(rest.strip_prefix('/').filter(|t| !t.contains('/'))?),
        };
        Some(Self { repository, tag })
    }

    /// The key of the directory holding this repository's manifest records of `algorithm`
    /// (the parent of every [`manifest`] key with a digest of that algorithm).
    pub fn manifests_dir(&self, algorithm: DigestAlgorithm) -> Key {
        key(&[self.repository, MANIFESTS, algorithm.as_str()])
    }
}

/// The components of the directory of `subject`'s referrers.
fn referrers_components<'a>(repo: &'a RepositoryName, subject: &'a Digest) -> [&'a str; 5] {
    [
        REPOSITORIES,
        repo.as_str(),
        "_referrers",
        subject.algorithm().as_str(),
        subject.hex(),
    ]
}

/// Directory of the referrers of `subject` (one object per referrer).
pub fn referrers_dir(repo: &RepositoryName, subject: &Digest) -> Key {
    key(&referrers_components(repo, subject))
}

/// The referrer entry of manifest `referrer` under `subject`.
pub fn referrer(repo: &RepositoryName, subject: &Digest, referrer: &Digest) -> Key {
    let entry = referrer_entry_name(referrer);
    let [root, name, dir, algorithm, hex] = referrers_components(repo, subject);
    key(&[root, name, dir, algorithm, hex, &entry])
}

/// Object name of a referrer entry: `<alg>-<hex>`.
pub fn referrer_entry_name(referrer: &Digest) -> String {
    [referrer.algorithm().as_str(), referrer.hex()].join("-")
}

/// The state of an upload session.
pub fn upload_state(repo: &RepositoryName, id: &UploadId) -> Key {
    key(&[REPOSITORIES, repo.as_str(), UPLOADS, id.as_str()])
}

/// Directory of a repository's upload session states.
pub fn upload_states_dir(repo: &RepositoryName) -> Key {
    key(&[REPOSITORIES, repo.as_str(), UPLOADS])
}

/// Directory of a repository's push intents (see [`lifecycle`](super::lifecycle)).
pub fn intents_dir(repo: &RepositoryName) -> Key {
    key(&[REPOSITORIES, repo.as_str(), INTENTS])
}

/// A push intent: an object naming the manifest a push in progress makes reachable.
pub fn intent(repo: &RepositoryName, name: &str) -> Key {
    key(&[REPOSITORIES, repo.as_str(), INTENTS, name])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tree() {
        let repo = RepositoryName::parse("library/ubuntu").unwrap();
        let d = Digest::compute(crate::oci::DigestAlgorithm::Sha256, b"");
        let id = UploadId::parse("0123456789abcdef0123456789abcdef").unwrap();
        assert_eq!(blob_data(&d).as_str(), format!("blobs/sha256/{}", d.hex()));
        assert_eq!(
            layer_link(&repo, &d).as_str(),
            format!("repositories/library/ubuntu/_layers/sha256/{}", d.hex())
        );
        assert_eq!(
            tag(&repo, &Tag::parse("v1").unwrap()).as_str(),
            "repositories/library/ubuntu/_tags/v1"
        );
        assert_eq!(tag(&repo, &Tag::parse("v1").unwrap()).file_name(), "v1");
        assert_eq!(
            upload_state(&repo, &id).as_str(),
            "repositories/library/ubuntu/_uploads/0123456789abcdef0123456789abcdef"
        );
        assert_eq!(
            upload_data(&id, "data").as_str(),
            "uploads/0123456789abcdef0123456789abcdef/data"
        );
        assert_eq!(
            referrer(&repo, &d, &d).as_str(),
            format!(
                "repositories/library/ubuntu/_referrers/sha256/{0}/sha256-{0}",
                d.hex()
            )
        );
        assert_eq!(
            manifest(&repo, &d).as_str(),
            format!("repositories/library/ubuntu/_manifests/sha256/{}", d.hex())
        );
        assert_eq!(
            upload_data_dir(&id).as_str(),
            "uploads/0123456789abcdef0123456789abcdef"
        );
        for (dir, name) in [
            (layers_dir(&repo), "_layers"),
            (manifests_dir(&repo), "_manifests"),
            (tags_dir(&repo), "_tags"),
        ] {
            assert_eq!(dir.as_str(), format!("repositories/library/ubuntu/{name}"));
            // Built in one allocation of the exact size.
            assert_eq!(dir.0.capacity(), dir.0.len());
        }
        assert_eq!(key(&[]).as_str(), "");
    }

    #[test]
    fn tag_keys_are_taken_apart_and_nothing_else_is() {
        let repo = RepositoryName::parse("library/ubuntu").unwrap();
        let d = Digest::compute(crate::oci::DigestAlgorithm::Sha256, b"");
        let place = |tag: Option<&'static str>| TagKey {
            repository: "repositories/library/ubuntu",
            tag,
        };
        // `_tags` and a digest's hex are valid tags too.
        for name in ["v1", "_tags", "_manifests", d.hex()] {
            let tag = Tag::parse(name).unwrap();
            let key = super::tag(&repo, &tag);
            let parsed = TagKey::parse(&key).unwrap();
            assert_eq!(parsed.repository, place(None).repository);
            assert_eq!(parsed.tag, Some(name));
        }
        assert_eq!(TagKey::parse(&tags_dir(&repo)), Some(place(None)));
        assert_eq!(
            place(None).manifests_dir(DigestAlgorithm::Sha256),
            Key(manifest(&repo, &d)
                .as_str()
                .rsplit_once('/')
                .unwrap()
                .0
                .to_owned())
        );
        let id = UploadId::parse("0123456789abcdef0123456789abcdef").unwrap();
        for other in [
            manifest(&repo, &d),
            manifests_dir(&repo),
            layer_link(&repo, &d),
            layers_dir(&repo),
            referrer(&repo, &d, &d),
            referrers_dir(&repo, &d),
            upload_state(&repo, &id),
            blob_data(&d),
            upload_data(&id, "data"),
        ] {
            assert_eq!(TagKey::parse(&other), None, "{other}");
        }
    }
}
