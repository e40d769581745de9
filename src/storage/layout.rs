//! The one place that turns repositories, digests, tags and upload ids into storage keys, and
//! the one drawing of the tree every backend stores (the filesystem driver under its root
//! directory, the S3 driver under its prefix, the in-memory driver in a map):
//!
//! ```text
//! blobs/<alg>/<hex>                                   blob bytes, deduplicated globally
//! uploads/<id>[/...]                                  upload bytes in progress (backend-owned)
//! gc/<run>                                            a garbage collection's condemned set
//! repositories/<name>/
//!     _layers/<alg>/<hex>                             link: blob visible in <name>; holds its size
//!     _manifests/<alg>/<hex>                          manifest: "<digest> <media type>\n<bytes>"
//!     _manifests/sha256/tag-<tag>                     tag: starts with the digest it points to
//!     _referrers/<alg>/<subject hex>/<alg>-<hex>      descriptor of a manifest whose subject it is
//!     _uploads/<id>                                   upload session state (JSON)
//! _probe/<random>                                     readiness probe, removed right away
//!     _intents/<random>                               a push making a manifest reachable
//! ```
//!
//! `gc/` and `_intents/` carry the garbage collection protocol (see
//! [`lifecycle`](super::lifecycle)).
//!
//! **Tags live beside the sha256 manifest records**, named `tag-<tag>` (record names are hex
//! digests, which never start with `tag-`). A tagged push then writes two names into one
//! directory, which the filesystem backend makes durable with one directory sync for both
//! (a third of a tagged push's syncs), and may store the tag as another name of the record
//! (a hard link). Listing a repository's tags lists that directory's `tag-` names: a
//! [`Dir`] carries a name prefix, which every backend applies (a prefix of a `ListObjectsV2`
//! on S3, a filter of a `readdir` on the filesystem).
//!
//! Every [`Key`] has a [`KeyClass`] saying what it names, so a backend that stores some
//! classes differently (the filesystem: manifest records created in place, links whose
//! content is not synced, upload records not synced at all) decides on the class, never by
//! taking the key's string apart.
//!
//! Keys are only ever built here from validated types ([`RepositoryName`], [`Digest`],
//! [`Tag`], [`UploadId`]), whose grammars exclude `..`, empty components, `\` and leading
//! `/`; a key therefore never escapes the storage root. Repository path components cannot
//! start with `_`, so `_layers` and friends never collide with a nested repository. A key is
//! relative: it never holds a backend's root directory, bucket or prefix, which is why errors
//! may carry it ([`Error::Backend`](crate::error::Error::Backend)).

use std::fmt;

use crate::oci::{Digest, DigestAlgorithm, RepositoryName, Tag};
use crate::storage::UploadId;

/// What a [`Key`] names. Backends may store each class differently (see
/// [`Backend`](super::backend::Backend) for what each class allows).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[non_exhaustive]
pub enum KeyClass {
    /// A blob's bytes (`blobs/<alg>/<hex>`).
    Blob,
    /// Bytes of an upload in progress (`uploads/<id>` and below), owned by the backend.
    UploadData,
    /// A repository's link to a blob (`_layers/`); holds the blob's size.
    Link,
    /// A manifest record (`_manifests/<alg>/<hex>`), verified against its digest on read.
    ManifestRecord,
    /// A tag (`_manifests/sha256/tag-<tag>`); its content starts with the digest it names.
    Tag,
    /// A referrer entry (`_referrers/`): the descriptor of a manifest with a subject.
    Referrer,
    /// An upload session's record (`_uploads/<id>`), checked when it is loaded.
    UploadState,
    /// A readiness probe's scratch object (`_probe/<random>`), removed right after it is
    /// written and read back; written like any durable object.
    Probe,
    /// A push intent (`_intents/<random>`): names the manifest a push in progress makes
    /// reachable; only needed while the push runs, so it need not survive a crash of the
    /// host (see [`lifecycle`](super::lifecycle)).
    Intent,
    /// A garbage collection's condemned set (`gc/<run>`), written before the collection
    /// deletes anything.
    CondemnedSet,
    /// A directory of the repository tree (`repositories/<path>`), listed for its
    /// subdirectories; it holds no object of its own.
    Repository,
}

impl KeyClass {
    /// A short lowercase name (`"manifest_record"`), for logs and metrics labels.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Blob => "blob",
            Self::UploadData => "upload_data",
            Self::Link => "link",
            Self::ManifestRecord => "manifest_record",
            Self::Tag => "tag",
            Self::Referrer => "referrer",
            Self::UploadState => "upload_state",
            Self::Probe => "probe",
            Self::Intent => "intent",
            Self::CondemnedSet => "condemned_set",
            Self::Repository => "repository",
        }
    }
}

/// A relative, `/`-separated storage key and its [`KeyClass`]. Only this module creates keys.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Key {
    path: String,
    class: KeyClass,
}

impl Key {
    /// The key as a `/`-separated relative path.
    pub fn as_str(&self) -> &str {
        &self.path
    }

    /// What the key names.
    pub fn class(&self) -> KeyClass {
        self.class
    }

    /// The final component (file or object name).
    pub fn file_name(&self) -> &str {
        self.path.rsplit('/').next().unwrap_or(&self.path)
    }

    /// The key of the directory holding this object (its path up to the last `/`).
    pub fn parent(&self) -> &str {
        self.path.rsplit_once('/').map_or("", |(dir, _)| dir)
    }
}

impl fmt::Display for Key {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.path)
    }
}

impl fmt::Debug for Key {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Key({}: {})", self.class.as_str(), self.path)
    }
}

/// A set of sibling objects to list: the objects directly inside a directory key whose names
/// start with a prefix (empty for most directories, `tag-` for tags), named without it.
/// `any_under` also looks deeper (see [`Backend::any_under`](super::backend::Backend::any_under)).
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct Dir {
    key: Key,
    name_prefix: &'static str,
}

impl Dir {
    /// The directory's key; its class is that of the objects listed.
    pub fn key(&self) -> &Key {
        &self.key
    }

    /// The directory as a `/`-separated relative path.
    pub fn as_str(&self) -> &str {
        self.key.as_str()
    }

    /// What the listed names start with in storage (cut off in the names listed).
    pub fn name_prefix(&self) -> &'static str {
        self.name_prefix
    }
}

impl fmt::Debug for Dir {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Dir({:?}, prefix {:?})", self.key, self.name_prefix)
    }
}

/// Joins components with `/` into a key, in one allocation of the exact size (keys are built
/// on every request; `format!` chains cost several reallocations each).
fn key(class: KeyClass, components: &[&str]) -> Key {
    let len = components.iter().map(|c| c.len() + 1).sum::<usize>();
    let mut path = String::with_capacity(len.saturating_sub(1));
    for component in components {
        if !path.is_empty() {
            path.push('/');
        }
        path.push_str(component);
    }
    Key { path, class }
}

fn dir(class: KeyClass, components: &[&str]) -> Dir {
    Dir {
        key: key(class, components),
        name_prefix: "",
    }
}

const REPOSITORIES: &str = "repositories";
const UPLOADS: &str = "uploads";
const PROBE: &str = "_probe";

/// A readiness probe's scratch object (`_probe/<name>`), written, read back and removed by
/// [`StorageProbe`](crate::storage::probe::StorageProbe). `name` must be a plain component
/// (the probe makes it from random hex digits).
pub fn probe(name: &str) -> Key {
    debug_assert!(!name.is_empty() && name.bytes().all(|b| b.is_ascii_alphanumeric()));
    key(KeyClass::Probe, &[PROBE, name])
}
// A repository's reserved components (repository name components never start with `_`).
const LAYERS: &str = "_layers";
const MANIFESTS: &str = "_manifests";
const REFERRERS: &str = "_referrers";
const SESSIONS: &str = "_uploads";
const INTENTS: &str = "_intents";
const GC: &str = "gc";
/// The components of a repository directory that make it a repository: it holds a blob
/// link, or a manifest or a tag, below one of them.
pub const REPOSITORY_MARKS: [&str; 2] = [LAYERS, MANIFESTS];

/// The algorithm whose manifest record directory holds a repository's tags.
const TAGS_BESIDE: DigestAlgorithm = DigestAlgorithm::Sha256;
/// What a tag's object name starts with (record names are hex digests).
const TAG_PREFIX: &str = "tag-";

/// The directory of every repository (the root of the repository name tree).
pub fn repositories_dir() -> Dir {
    dir(KeyClass::Repository, &[REPOSITORIES])
}

/// A directory of the repository tree named by a path of components listed from storage (a
/// repository, or a namespace such as `library` of `library/ubuntu`; `""` for the root), for
/// walking the tree.
pub fn repository_path_dir(path: &str) -> Dir {
    if path.is_empty() {
        repositories_dir()
    } else {
        dir(KeyClass::Repository, &[REPOSITORIES, path])
    }
}

/// The directory holding the blobs of `algorithm`.
pub fn blobs_dir(algorithm: DigestAlgorithm) -> Dir {
    dir(KeyClass::Blob, &["blobs", algorithm.as_str()])
}

/// The directory where backends keep the bytes of uploads in progress.
pub fn uploads_dir() -> Dir {
    dir(KeyClass::UploadData, &[UPLOADS])
}

/// The directory of the garbage collections' condemned sets.
pub fn gc_dir() -> Dir {
    dir(KeyClass::CondemnedSet, &[GC])
}

/// A garbage collection run's condemned set.
pub fn gc_marker(name: &str) -> Key {
    key(KeyClass::CondemnedSet, &[GC, name])
}

/// Where the bytes of a blob live.
pub fn blob_data(digest: &Digest) -> Key {
    key(
        KeyClass::Blob,
        &["blobs", digest.algorithm().as_str(), digest.hex()],
    )
}

/// Where a backend keeps the bytes of an upload in progress: an object of its own (the
/// filesystem: one file), or, as a directory ([`upload_data_dir`]), objects below it.
pub fn upload_data(id: &UploadId) -> Key {
    key(KeyClass::UploadData, &[UPLOADS, id.as_str()])
}

/// The directory of an upload's data objects, for a backend that keeps several
/// ([`upload_part`]; S3: staged segments).
pub fn upload_data_dir(id: &UploadId) -> Dir {
    dir(KeyClass::UploadData, &[UPLOADS, id.as_str()])
}

/// A named object inside an upload's data directory (e.g. `data`).
pub fn upload_part(id: &UploadId, name: &str) -> Key {
    key(KeyClass::UploadData, &[UPLOADS, id.as_str(), name])
}

/// The link that makes a blob visible in a repository.
pub fn layer_link(repo: &RepositoryName, digest: &Digest) -> Key {
    key(
        KeyClass::Link,
        &[
            REPOSITORIES,
            repo.as_str(),
            LAYERS,
            digest.algorithm().as_str(),
            digest.hex(),
        ],
    )
}

/// Directory of a repository's blob links.
pub fn layers_dir(repo: &RepositoryName) -> Dir {
    dir(KeyClass::Link, &[REPOSITORIES, repo.as_str(), LAYERS])
}

/// Directory of a repository's links to blobs of `algorithm`.
pub fn layers_algorithm_dir(repo: &RepositoryName, algorithm: DigestAlgorithm) -> Dir {
    dir(
        KeyClass::Link,
        &[REPOSITORIES, repo.as_str(), LAYERS, algorithm.as_str()],
    )
}

/// Directory of a repository's manifest records of `algorithm` (the sha256 one holds the
/// repository's tags too, whose names are not hexadecimal digests).
pub fn manifests_algorithm_dir(repo: &RepositoryName, algorithm: DigestAlgorithm) -> Dir {
    dir(
        KeyClass::ManifestRecord,
        &[REPOSITORIES, repo.as_str(), MANIFESTS, algorithm.as_str()],
    )
}

/// A manifest revision (media type and exact bytes).
pub fn manifest(repo: &RepositoryName, digest: &Digest) -> Key {
    key(
        KeyClass::ManifestRecord,
        &[
            REPOSITORIES,
            repo.as_str(),
            MANIFESTS,
            digest.algorithm().as_str(),
            digest.hex(),
        ],
    )
}

/// Directory of a repository's manifests (records, and the tags beside the sha256 ones).
pub fn manifests_dir(repo: &RepositoryName) -> Dir {
    dir(
        KeyClass::ManifestRecord,
        &[REPOSITORIES, repo.as_str(), MANIFESTS],
    )
}

/// A tag pointer, beside the sha256 manifest records.
pub fn tag(repo: &RepositoryName, tag: &Tag) -> Key {
    let name = [TAG_PREFIX, tag.as_str()].concat();
    key(
        KeyClass::Tag,
        &[
            REPOSITORIES,
            repo.as_str(),
            MANIFESTS,
            TAGS_BESIDE.as_str(),
            &name,
        ],
    )
}

/// A repository's tags (one object per tag, listed by the tag's name).
pub fn tags_dir(repo: &RepositoryName) -> Dir {
    Dir {
        key: key(
            KeyClass::Tag,
            &[REPOSITORIES, repo.as_str(), MANIFESTS, TAGS_BESIDE.as_str()],
        ),
        name_prefix: TAG_PREFIX,
    }
}

/// The components of the directory of `subject`'s referrers.
fn referrers_components<'a>(repo: &'a RepositoryName, subject: &'a Digest) -> [&'a str; 5] {
    [
        REPOSITORIES,
        repo.as_str(),
        REFERRERS,
        subject.algorithm().as_str(),
        subject.hex(),
    ]
}

/// Directory of the referrers of `subject` (one object per referrer).
pub fn referrers_dir(repo: &RepositoryName, subject: &Digest) -> Dir {
    dir(KeyClass::Referrer, &referrers_components(repo, subject))
}

/// The referrer entry of manifest `referrer` under `subject`.
pub fn referrer(repo: &RepositoryName, subject: &Digest, referrer: &Digest) -> Key {
    let entry = referrer_entry_name(referrer);
    let [root, name, dir, algorithm, hex] = referrers_components(repo, subject);
    key(
        KeyClass::Referrer,
        &[root, name, dir, algorithm, hex, &entry],
    )
}

/// Object name of a referrer entry: `<alg>-<hex>`.
pub fn referrer_entry_name(referrer: &Digest) -> String {
    [referrer.algorithm().as_str(), referrer.hex()].join("-")
}

/// The state of an upload session.
pub fn upload_state(repo: &RepositoryName, id: &UploadId) -> Key {
    key(
        KeyClass::UploadState,
        &[REPOSITORIES, repo.as_str(), SESSIONS, id.as_str()],
    )
}

/// Directory of a repository's upload session states.
pub fn upload_states_dir(repo: &RepositoryName) -> Dir {
    dir(
        KeyClass::UploadState,
        &[REPOSITORIES, repo.as_str(), SESSIONS],
    )
}

/// Directory of a repository's push intents (see [`lifecycle`](super::lifecycle)).
pub fn intents_dir(repo: &RepositoryName) -> Dir {
    dir(KeyClass::Intent, &[REPOSITORIES, repo.as_str(), INTENTS])
}

/// A push intent: an object naming the manifest a push in progress makes reachable.
pub fn intent(repo: &RepositoryName, name: &str) -> Key {
    key(
        KeyClass::Intent,
        &[REPOSITORIES, repo.as_str(), INTENTS, name],
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tree() {
        let repo = RepositoryName::parse("library/ubuntu").unwrap();
        let d = Digest::compute(crate::oci::DigestAlgorithm::Sha256, b"");
        let id = UploadId::parse("0123456789abcdef0123456789abcdef").unwrap();
        let v1 = Tag::parse("v1").unwrap();
        let cases = [
            (
                blob_data(&d),
                format!("blobs/sha256/{}", d.hex()),
                KeyClass::Blob,
            ),
            (
                layer_link(&repo, &d),
                format!("repositories/library/ubuntu/_layers/sha256/{}", d.hex()),
                KeyClass::Link,
            ),
            (
                tag(&repo, &v1),
                "repositories/library/ubuntu/_manifests/sha256/tag-v1".to_owned(),
                KeyClass::Tag,
            ),
            (
                upload_state(&repo, &id),
                "repositories/library/ubuntu/_uploads/0123456789abcdef0123456789abcdef".into(),
                KeyClass::UploadState,
            ),
            (
                upload_part(&id, "data"),
                "uploads/0123456789abcdef0123456789abcdef/data".into(),
                KeyClass::UploadData,
            ),
            (
                upload_data(&id),
                "uploads/0123456789abcdef0123456789abcdef".into(),
                KeyClass::UploadData,
            ),
            (
                referrer(&repo, &d, &d),
                format!(
                    "repositories/library/ubuntu/_referrers/sha256/{0}/sha256-{0}",
                    d.hex()
                ),
                KeyClass::Referrer,
            ),
            (
                manifest(&repo, &d),
                format!("repositories/library/ubuntu/_manifests/sha256/{}", d.hex()),
                KeyClass::ManifestRecord,
            ),
        ];
        for (key, path, class) in cases {
            assert_eq!((key.as_str(), key.class()), (path.as_str(), class));
            // Built in one allocation of the exact size.
            assert_eq!(key.path.capacity(), key.path.len());
        }
        assert_eq!(tag(&repo, &v1).file_name(), "tag-v1");
        // A tag's directory is its record's.
        assert_eq!(tag(&repo, &v1).parent(), manifest(&repo, &d).parent());
        assert_eq!(tags_dir(&repo).as_str(), tag(&repo, &v1).parent());
        assert_eq!(tags_dir(&repo).name_prefix(), "tag-");
        for (dir, name) in [
            (layers_dir(&repo), "_layers"),
            (manifests_dir(&repo), "_manifests"),
        ] {
            assert_eq!(dir.as_str(), format!("repositories/library/ubuntu/{name}"));
            assert_eq!(dir.name_prefix(), "");
        }
        assert_eq!(
            upload_data_dir(&id).as_str(),
            "uploads/0123456789abcdef0123456789abcdef"
        );
        assert_eq!(key(KeyClass::Blob, &[]).as_str(), "");
    }

    /// A tag is never a manifest record's name, whatever it is spelled like (`_tags`, a hex
    /// digest, `tag-x`): record names are hex digests, and tags carry the `tag-` prefix.
    #[test]
    fn tags_never_collide_with_records() {
        let repo = RepositoryName::parse("library/ubuntu").unwrap();
        let d = Digest::compute(DigestAlgorithm::Sha256, b"");
        let record = manifest(&repo, &d);
        for name in ["v1", "_tags", "tag-x", d.hex()] {
            let tag = tag(&repo, &Tag::parse(name).unwrap());
            assert_ne!(tag.as_str(), record.as_str());
            assert_eq!(tag.file_name(), format!("tag-{name}"));
        }
    }
}
