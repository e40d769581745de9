//! The filesystem driver (`type = "filesystem"`): the [`layout`]
//! tree as files below [`FilesystemConfig::root_directory`].
//!
//! ```text
//! <root>/
//!     blobs/<alg>/<hex>          blob bytes (renamed into place whole, after a sync)
//!     uploads/<id>               bytes of an upload in progress (one file per upload)
//!     repositories/<name>/...    links, manifests, referrers, upload states
//!     repositories/<name>/_manifests/sha256/tag-<tag>
//!                                tags, beside the manifest records (see `paths`)
//!     **/.tmp-<name>-<random>    temporary files of writes in progress (never listed)
//! ```
//!
//! Guarantees (issue "core library", point 5):
//! - **No reader sees a partial object** (a manifest record being written is read as
//!   absent, see below). Small objects are written to a unique temporary
//!   file in the target's directory, synced, renamed over the target and the directory is
//!   synced (`atomic`); a blob appears by renaming its complete, synced upload file.
//! - **Concurrent writers are safe:** every writer has its own temporary file and `rename` is
//!   atomic, so the last rename wins whole; a blob committed twice is the same bytes.
//! - **Durable when acknowledged:** data before names, names before returning, and newly
//!   created directories are synced into their parents, for blobs, tags and deletions.
//!   Three exceptions save sync rounds where a crash *before* the acknowledgement is
//!   detected on read instead:
//!   - manifest records are created under their final name (no temporary file, no
//!     rename), then synced (`atomic::write_verified`); a torn or partly written record
//!     fails its digest and counts as absent; a new tag pushed with a sha256 manifest is
//!     linked in the record's directory before that directory's one sync
//!     (`Tagging::store_with_record`);
//!   - a blob's link is written and its name synced while the blob is committed
//!     (`LINK_WHILE_COMMITTING`), and counts only while the blob exists; its content (the
//!     size) is never synced, the blob's own size is authoritative;
//!   - upload sessions in progress are not synced until they are closed; a machine crash
//!     is detected by the boot id the session record carries, and such a session is
//!     `BLOB_UPLOAD_UNKNOWN` (see `upload.rs` and the README's durability contract).
//! - **Small reads inline:** metadata reads and blob `stat` run on the calling task (page
//!   cache hits in practice), not on the blocking pool.
//! - **Nothing escapes the root:** keys are re-checked (`paths`), directories on a write
//!   path are walked with `lstat` so planted symbolic links are refused, and new files are
//!   created with `O_EXCL`, which never follows a link.
//! - **Streaming:** blob reads and upload writes move 1 MiB at a time on Tokio's blocking
//!   pool, overlapping disk I/O with the network and hashing; no blob is held in memory.

mod atomic;
mod lifecycle;
mod listing;
mod paths;
mod reader;
mod upload;

use std::fmt;
use std::fs;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use bytes::Bytes;
use futures::Stream;

use crate::error::{Error, Result};
use crate::oci::{ByteRange, Digest};
use crate::storage::backend::Backend;
use crate::storage::layout::{self, Key};
use crate::storage::{Engine, EngineOptions, FilesystemConfig, UploadId};

pub use reader::{FilesystemReader, MAP_MIN, READ_CHUNK};
pub use upload::{FilesystemUploadState, WRITE_BATCH};

/// Driver name used in errors.
const DRIVER: &str = "filesystem";

/// The filesystem storage driver.
pub type FilesystemDriver = Engine<FilesystemBackend>;

impl FilesystemDriver {
    /// Opens (creating if needed) the storage root.
    pub async fn open(config: &FilesystemConfig, options: EngineOptions) -> Result<Self> {
        let backend = FilesystemBackend::open(&config.root_directory).await?;
        Ok(Engine::new(backend, options))
    }
}

/// The filesystem [`Backend`]: every key is a file below the root directory.
#[derive(Clone)]
pub struct FilesystemBackend {
    /// Canonical absolute root.
    root: Arc<PathBuf>,
    /// The root as displayed, with a trailing separator: [`Backend::locate`] appends a key.
    root_prefix: Arc<str>,
    /// Serialises appends to one upload within this process.
    locks: Arc<upload::UploadLocks>,
}

impl fmt::Debug for FilesystemBackend {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FilesystemBackend")
            .field("root", &self.root)
            .finish()
    }
}

impl FilesystemBackend {
    /// Opens the root directory, creating it (and the top-level `blobs` and `uploads`
    /// directories) if needed. The root is canonicalised once, so it may itself be reached
    /// through a symbolic link; links *below* it are not followed for writes.
    pub async fn open(root: &Path) -> Result<Self> {
        let root = root.to_path_buf();
        let root = blocking(move || {
            fs::create_dir_all(&root).map_err(|e| io_err("creating root directory", &root, e))?;
            let root = fs::canonicalize(&root)
                .map_err(|e| io_err("resolving root directory", &root, e))?;
            paths::ensure_dir(&root, Some("blobs"))?;
            paths::ensure_dir(&root, Some("uploads"))?;
            Ok(root)
        })
        .await?;
        let mut root_prefix = root.display().to_string();
        if !root_prefix.ends_with('/') {
            root_prefix.push('/');
        }
        Ok(Self {
            root: Arc::new(root),
            root_prefix: root_prefix.into(),
            locks: Arc::default(),
        })
    }

    /// The canonical root directory.
    pub fn root(&self) -> &Path {
        &self.root
    }

    fn tagging(&self, tag: &Key, digest: &Digest, record: &Key) -> Result<Tagging> {
        Ok(Tagging {
            root: Arc::clone(&self.root),
            rel: paths::rel_path(tag)?.into_owned(),
            record: self.path(record)?,
            digest: Bytes::from(digest.as_str().to_owned()),
        })
    }

    fn path(&self, key: &Key) -> Result<PathBuf> {
        paths::key_path(&self.root, key)
    }
}

/// Pointing a tag at a stored manifest record, prepared on the async side and run on the
/// blocking pool ([`Backend::write_tag`]).
struct Tagging {
    root: Arc<PathBuf>,
    /// The tag's checked relative path.
    rel: String,
    /// The manifest record's path.
    record: PathBuf,
    /// What the tag holds if it cannot be a hard link: the digest.
    digest: Bytes,
}

impl Tagging {
    /// Stores the manifest record `record` at `record_rel` (as [`atomic::write_verified`])
    /// and then points the tag at it.
    ///
    /// A new tag of a sha256 manifest lives in the record's own directory (see [`paths`]):
    /// the record is created and synced, the tag linked in place, and the directory synced
    /// once for both names, one directory sync fewer than storing the record and tagging it
    /// one after the other. Both names are durable when this returns. A crash before that
    /// may leave either one alone: the record alone is an untagged manifest; the tag alone
    /// (only on a filesystem that does not make a new file's name durable with the file,
    /// as Linux's ext4, XFS and btrfs do) is a new tag naming a manifest that reads as
    /// unknown, as if the push had not happened. An *existing* tag is replaced only once the
    /// record's name is durable, so a crash never takes a tag's old manifest away.
    fn store_with_record(self, root: &Path, record_rel: &str, record: &[u8]) -> Result<()> {
        let dir = atomic::create_verified(root, record_rel, record)?;
        let (tag_dir, tag_name) = paths::split_parent(&self.rel);
        if tag_dir != paths::split_parent(record_rel).0 {
            // Another directory: the record's name first, then the tag as `write_tag` would.
            atomic::fsync_dir(&dir)?;
            return self.run();
        }
        atomic::link_in(&dir, tag_name, &self.record, || atomic::fsync_dir(&dir)).or_else(|e| {
            atomic::fsync_dir(&dir)?;
            self.store_digest(e)
        })
    }

    fn run(self) -> Result<()> {
        // The tag becomes another name of the manifest record, which starts with the digest:
        // no file to create (on ext4 without a journal, allocating inodes was most of a
        // manifest push's CPU) and no data to sync, only the tag's directory. The record is
        // durable (the engine tags only stored manifests); a hard link keeps its bytes even
        // if the record's own name is later replaced or removed.
        atomic::link_atomic(&self.root, &self.rel, &self.record).or_else(|e| self.store_digest(e))
    }

    /// The tag as a file holding the digest, which reads the same as the record, for when
    /// it cannot be a hard link (`e`): the record is gone (a concurrent deletion; the tag
    /// then resolves to "manifest unknown" like a tag of a deleted manifest) or the file
    /// system has no hard links.
    fn store_digest(&self, e: Error) -> Result<()> {
        tracing::debug!(error = %e, "tag as hard link failed; storing the digest");
        atomic::write_atomic(&self.root, &self.rel, &self.digest)
    }
}

/// Wraps an I/O error with the operation and path.
fn io_err(what: &str, path: &Path, err: std::io::Error) -> Error {
    Error::io(DRIVER, format_args!("{what} {}", path.display()), err)
}

fn join_failed(err: tokio::task::JoinError) -> Error {
    Error::backend(DRIVER, format!("blocking filesystem task failed: {err}"))
}

/// The metadata of `path` itself (a symbolic link is not followed), or `None` if it does not
/// exist.
fn lstat(path: &Path) -> Result<Option<fs::Metadata>> {
    match fs::symlink_metadata(path) {
        Ok(meta) => Ok(Some(meta)),
        Err(e) if atomic::missing(&e) => Ok(None),
        Err(e) => Err(io_err("inspecting", path, e)),
    }
}

/// Runs blocking filesystem work on Tokio's blocking pool.
async fn blocking<T, F>(f: F) -> Result<T>
where
    F: FnOnce() -> Result<T> + Send + 'static,
    T: Send + 'static,
{
    tokio::task::spawn_blocking(f).await.map_err(join_failed)?
}

impl Backend for FilesystemBackend {
    const NAME: &'static str = DRIVER;
    /// A blob's link and its name are synced in one round; checking a link costs one `lstat`.
    const LINK_WHILE_COMMITTING: bool = true;
    type Reader = FilesystemReader;
    type UploadState = FilesystemUploadState;

    fn locate(&self, key: &Key) -> String {
        // Called for every blob `stat`: one allocation of the exact size.
        [&*self.root_prefix, key.as_str()].concat()
    }

    async fn read(&self, key: &Key) -> Result<Option<Bytes>> {
        // Metadata objects are small (links, tags, records; manifests up to a few MiB) and
        // nearly always in the page cache: read inline on the calling task rather than paying
        // a trip through the blocking pool (two thread hand-offs, more than the read itself).
        // Like nginx without `aio threads`: a stalled disk stalls this worker thread.
        let path = self.path(key)?;
        match fs::read(&path) {
            Ok(bytes) => Ok(Some(Bytes::from(bytes))),
            Err(e) if atomic::missing(&e) => Ok(None),
            Err(e) => Err(io_err("reading", &path, e)),
        }
    }

    async fn exists(&self, key: &Key) -> Result<bool> {
        // One `lstat`, inline like `read`.
        Ok(lstat(&self.path(key)?)?.is_some())
    }

    async fn write(&self, key: &Key, value: Bytes) -> Result<()> {
        let rel = paths::rel_path(key)?.into_owned();
        let root = Arc::clone(&self.root);
        blocking(move || atomic::write_atomic(&root, &rel, &value)).await
    }

    async fn write_verified(&self, key: &Key, value: Bytes) -> Result<()> {
        let rel = paths::rel_path(key)?.into_owned();
        let root = Arc::clone(&self.root);
        blocking(move || atomic::write_verified(&root, &rel, &value)).await
    }

    async fn remove(&self, key: &Key) -> Result<()> {
        let path = self.path(key)?;
        blocking(move || atomic::remove_durable(&path)).await
    }

    async fn list(
        &self,
        dir: &Key,
        start_after: Option<&str>,
        limit: Option<usize>,
    ) -> Result<Vec<String>> {
        if limit == Some(0) {
            return Ok(Vec::new());
        }
        let (rel, prefix) = paths::listing_location(dir)?;
        let path = paths::join(&self.root, &rel);
        let start_after = start_after.map(str::to_owned);
        blocking(move || listing::list(&path, prefix, start_after.as_deref(), limit)).await
    }

    async fn any_under(&self, dir: &Key) -> Result<bool> {
        let (rel, prefix) = paths::listing_location(dir)?;
        let path = paths::join(&self.root, &rel);
        if prefix.is_empty() {
            blocking(move || listing::any_under(&path)).await
        } else {
            // Tags, which have no subdirectories: the entries of one directory.
            blocking(move || listing::any_named(&path, prefix)).await
        }
    }

    async fn blob_size(&self, digest: &Digest) -> Result<Option<u64>> {
        // One `lstat`, inline like `read`.
        let path = self.path(&layout::blob_data(digest))?;
        match lstat(&path)? {
            Some(meta) if meta.is_file() => Ok(Some(meta.len())),
            Some(_) => Err(Error::backend(
                DRIVER,
                format!("{} is not a regular file", path.display()),
            )),
            None => Ok(None),
        }
    }

    async fn write_tag(&self, tag: &Key, digest: &Digest, manifest: &Key) -> Result<()> {
        let tagging = self.tagging(tag, digest, manifest)?;
        blocking(move || tagging.run()).await
    }

    async fn write_manifest(
        &self,
        record_key: &Key,
        record: Bytes,
        tag: Option<(&Key, &Digest)>,
    ) -> Result<()> {
        // Record and tag in one blocking task, one after the other: a thread hand-off fewer
        // per tagged push.
        let rel = paths::rel_path(record_key)?.into_owned();
        let tagging = tag
            .map(|(tag, digest)| self.tagging(tag, digest, record_key))
            .transpose()?;
        let root = Arc::clone(&self.root);
        blocking(move || match tagging {
            None => atomic::write_verified(&root, &rel, &record),
            Some(tagging) => tagging.store_with_record(&root, &rel, &record),
        })
        .await
    }

    async fn write_link(&self, key: &Key, value: Bytes) -> Result<()> {
        // The link's name is made durable (directory synced), its few bytes of content are
        // not: after a crash the file may be empty (ext4 `data=ordered`, XFS), and the engine
        // then takes the size from the blob, which was synced before. One fsync instead of two
        // per link. (`data=writeback` mounts, which may expose stale blocks, are unsupported.)
        let rel = paths::rel_path(key)?.into_owned();
        let root = Arc::clone(&self.root);
        blocking(move || atomic::replace_with(&root, &rel, &value, false, true)).await
    }

    async fn write_upload_state(&self, key: &Key, value: Bytes) -> Result<()> {
        // Atomic (temporary file + rename) but not synced: a record is trusted only while
        // the boot id it carries is current, and one a crash left torn is unreadable, which
        // the engine reports as an unknown session. Records of non-volatile sessions (no boot
        // id on this system) are written durably.
        let rel = paths::rel_path(key)?.into_owned();
        let durable = upload::boot_id().is_none();
        if !durable && paths::parent_exists(&self.root, &rel) {
            // Nothing synced and no directory to create: a small write and a rename in the
            // page cache, done inline (like `read`) rather than through the blocking pool,
            // once per PATCH.
            return atomic::replace(&self.root, &rel, &value, false);
        }
        let root = Arc::clone(&self.root);
        blocking(move || atomic::replace(&root, &rel, &value, durable)).await
    }

    async fn remove_upload_state(&self, key: &Key) -> Result<()> {
        // Not synced: a record a crash brings back names data that commit consumed or abort
        // removed; it is rejected on load (earlier boot id) or, for a durable-mode session,
        // fails its first append.
        let path = self.path(key)?;
        if upload::boot_id().is_none() {
            return blocking(move || atomic::remove_durable(&path)).await;
        }
        atomic::remove_volatile(&path)
    }

    fn upload_state_current(&self, state: &FilesystemUploadState) -> bool {
        state.current()
    }

    async fn read_blob(
        &self,
        digest: &Digest,
        range: Option<ByteRange>,
    ) -> Result<FilesystemReader> {
        let path = self.path(&layout::blob_data(digest))?;
        let digest = digest.clone();
        blocking(move || FilesystemReader::open(&path, &digest, range)).await
    }

    async fn create_upload(
        &self,
        _id: &UploadId,
        target: Option<&Digest>,
    ) -> Result<FilesystemUploadState> {
        // The data file is created by the first append. Sessions (no target) are volatile
        // where the kernel has a boot id: see `upload` and the README's durability contract.
        let one_shot = target.is_some();
        Ok(FilesystemUploadState {
            one_shot,
            boot: if one_shot {
                None
            } else {
                upload::boot_id().map(str::to_owned)
            },
        })
    }

    async fn append_upload<S>(
        &self,
        id: &UploadId,
        state: &mut FilesystemUploadState,
        offset: u64,
        body: S,
    ) -> Result<u64>
    where
        S: Stream<Item = Result<Bytes>> + Send,
    {
        upload::append(&self.root, &self.locks, id, state, offset, body).await
    }

    async fn commit_upload(
        &self,
        id: &UploadId,
        state: FilesystemUploadState,
        size: u64,
        digest: &Digest,
    ) -> Result<()> {
        let root = Arc::clone(&self.root);
        let id = id.clone();
        let digest = digest.clone();
        blocking(move || upload::commit(&root, &id, &state, size, &digest)).await
    }

    async fn abort_upload(&self, id: &UploadId, _state: FilesystemUploadState) -> Result<()> {
        let root = Arc::clone(&self.root);
        let id = id.clone();
        blocking(move || upload::abort(&root, &id)).await
    }
}

#[cfg(test)]
mod tests {
    use futures::stream;

    use super::*;
    use crate::oci::{DigestAlgorithm, RepositoryName};
    use crate::storage::{StorageDriver, UploadHandle};

    /// Pushes the config blob `{}` to `repo`; returns its digest.
    async fn push_config(d: &FilesystemDriver, repo: &RepositoryName) -> Digest {
        let config = b"{}";
        let digest = Digest::compute(DigestAlgorithm::Sha256, config);
        let body = stream::iter([Ok(Bytes::from_static(config))]);
        d.put_content(repo, &digest, None, body).await.unwrap();
        digest
    }

    /// An image manifest with the config `config` and no layers, told apart by `n`.
    fn image_manifest(config: &Digest, n: u32) -> Bytes {
        Bytes::from(format!(
            r#"{{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"{config}","size":2}},"layers":[],"annotations":{{"n":"{n}"}}}}"#
        ))
    }

    /// A driver on a fresh directory with the config blob `{}` pushed to repository `a/b`.
    async fn with_config() -> (tempfile::TempDir, FilesystemDriver, RepositoryName, Digest) {
        let dir = tempfile::tempdir().unwrap();
        let d = driver(dir.path()).await;
        let repo = RepositoryName::parse("a/b").unwrap();
        let config_digest = push_config(&d, &repo).await;
        (dir, d, repo, config_digest)
    }

    async fn driver(root: &Path) -> FilesystemDriver {
        let config = FilesystemConfig {
            root_directory: root.to_path_buf(),
        };
        FilesystemDriver::open(&config, EngineOptions::default())
            .await
            .unwrap()
    }

    /// A link whose content a crash lost (its name was synced, its bytes were not) still
    /// makes the blob visible, with the blob's own size.
    #[tokio::test]
    async fn a_link_emptied_by_a_crash_takes_the_blob_size() {
        let dir = tempfile::tempdir().unwrap();
        let d = driver(dir.path()).await;
        let repo = RepositoryName::parse("a/b").unwrap();
        let data = b"linked bytes";
        let digest = Digest::compute(DigestAlgorithm::Sha256, data);
        let body = stream::iter([Ok(Bytes::from_static(data))]);
        d.put_content(&repo, &digest, None, body).await.unwrap();
        let link = dir.path().join(layout::layer_link(&repo, &digest).as_str());
        for torn in [&b""[..], &b"\0\0\0"[..]] {
            fs::write(&link, torn).unwrap();
            assert_eq!(
                d.stat(&repo, &digest).await.unwrap().size,
                data.len() as u64
            );
        }
        // A link to a blob that is not stored (what a crash during `commit_and_link` can
        // leave, since both names are synced in one round) counts as absent, whatever its
        // content; pushing the blob again makes it visible.
        fs::remove_file(dir.path().join(layout::blob_data(&digest).as_str())).unwrap();
        for content in [&b""[..], &b"12"[..]] {
            fs::write(&link, content).unwrap();
            assert!(matches!(
                d.stat(&repo, &digest).await,
                Err(Error::BlobUnknown(_))
            ));
            assert!(matches!(
                d.get_content(&repo, &digest, None).await,
                Err(Error::BlobUnknown(_))
            ));
        }
        let body = stream::iter([Ok(Bytes::from_static(data))]);
        d.put_content(&repo, &digest, None, body).await.unwrap();
        assert_eq!(
            d.stat(&repo, &digest).await.unwrap().size,
            data.len() as u64
        );
    }

    /// A tag is a hard link to its manifest record (no file created, no data synced); it
    /// resolves like a tag holding the digest, moves atomically, and goes with the manifest.
    #[tokio::test]
    async fn a_tag_is_another_name_of_its_manifest_record() {
        use std::os::unix::fs::MetadataExt;

        use crate::oci::{Reference, Tag};
        let (dir, d, repo, config_digest) = with_config().await;
        let manifest = |n: u32| image_manifest(&config_digest, n);
        let media_type = Some("application/vnd.oci.image.manifest.v1+json");
        let tag = Tag::parse("latest").unwrap();
        let tag_path = paths::key_path(dir.path(), &layout::tag(&repo, &tag)).unwrap();
        let record_path =
            |digest: &Digest| dir.path().join(layout::manifest(&repo, digest).as_str());

        let first = d
            .put_manifest(&repo, &Reference::Tag(tag.clone()), media_type, manifest(1))
            .await
            .unwrap()
            .digest;
        let inode = |p: &Path| fs::metadata(p).unwrap().ino();
        assert_eq!(inode(&tag_path), inode(&record_path(&first)));
        assert_eq!(d.resolve_tag(&repo, &tag).await.unwrap(), first);

        // Moving the tag (by pushing another manifest, then by tagging the first again).
        let second = d
            .put_manifest(&repo, &Reference::Tag(tag.clone()), media_type, manifest(2))
            .await
            .unwrap()
            .digest;
        assert_eq!(inode(&tag_path), inode(&record_path(&second)));
        assert_eq!(d.resolve_tag(&repo, &tag).await.unwrap(), second);
        d.tag_manifest(&repo, &tag, &first).await.unwrap();
        assert_eq!(d.resolve_tag(&repo, &tag).await.unwrap(), first);
        let got = d
            .get_manifest(&repo, &Reference::Tag(tag.clone()))
            .await
            .unwrap();
        assert_eq!(got.bytes, manifest(1));

        // A tag holding only the digest (other backends, older trees) resolves the same.
        fs::remove_file(&tag_path).unwrap();
        fs::write(&tag_path, format!("{second}\n")).unwrap();
        assert_eq!(d.resolve_tag(&repo, &tag).await.unwrap(), second);

        // Deleting a manifest removes the tags that name it, linked or not.
        d.tag_manifest(&repo, &Tag::parse("other").unwrap(), &second)
            .await
            .unwrap();
        d.delete_manifest(&repo, &second).await.unwrap();
        assert!(d.resolve_tag(&repo, &tag).await.is_err());
        assert!(
            d.resolve_tag(&repo, &Tag::parse("other").unwrap())
                .await
                .is_err()
        );
        assert!(!record_path(&second).exists());
    }

    /// Tags live beside the sha256 manifest records (one directory to sync per tagged push)
    /// and list apart from them: a record is never a tag, a tag named like a record's hex
    /// digest is its own file, and tags of sha512 manifests (another directory) work too.
    #[tokio::test]
    async fn tags_live_beside_the_sha256_records_and_list_apart_from_them() {
        use std::os::unix::fs::MetadataExt;

        use crate::oci::{Reference, Tag};
        let (dir, d, repo, config_digest) = with_config().await;
        let media_type = Some("application/vnd.oci.image.manifest.v1+json");
        let tag_path = |tag: &Tag| paths::key_path(dir.path(), &layout::tag(&repo, tag)).unwrap();
        let record_path =
            |digest: &Digest| dir.path().join(layout::manifest(&repo, digest).as_str());
        let push = |reference: Reference, n: u32| {
            let d = &d;
            let repo = &repo;
            let bytes = image_manifest(&config_digest, n);
            async move {
                d.put_manifest(repo, &reference, media_type, bytes)
                    .await
                    .unwrap()
                    .digest
            }
        };

        let latest = Tag::parse("latest").unwrap();
        let first = push(Reference::Tag(latest.clone()), 1).await;
        assert_eq!(tag_path(&latest).parent(), record_path(&first).parent());
        assert_eq!(
            tag_path(&latest).file_name().unwrap(),
            "tag-latest",
            "{}",
            tag_path(&latest).display()
        );
        let inode = |p: &Path| fs::metadata(p).unwrap().ino();
        assert_eq!(inode(&tag_path(&latest)), inode(&record_path(&first)));

        // A tag spelled like the hex of the first manifest's digest: its own file.
        let hex_tag = Tag::parse(first.hex()).unwrap();
        let second = push(Reference::Tag(hex_tag.clone()), 2).await;
        assert_eq!(d.resolve_tag(&repo, &hex_tag).await.unwrap(), second);
        assert_eq!(d.resolve_tag(&repo, &latest).await.unwrap(), first);
        let by_first = Reference::Digest(first.clone());
        assert_eq!(
            d.get_manifest(&repo, &by_first).await.unwrap().bytes,
            image_manifest(&config_digest, 1)
        );

        // A sha512 manifest, tagged after the push and by a push: its record is elsewhere.
        let bytes = image_manifest(&config_digest, 3);
        let sha512 = Digest::compute(DigestAlgorithm::Sha512, &bytes);
        d.put_manifest(&repo, &Reference::Digest(sha512.clone()), media_type, bytes)
            .await
            .unwrap();
        let v512 = Tag::parse("v512").unwrap();
        d.tag_manifest(&repo, &v512, &sha512).await.unwrap();
        assert_ne!(tag_path(&v512).parent(), record_path(&sha512).parent());
        assert_eq!(d.resolve_tag(&repo, &v512).await.unwrap(), sha512);

        // Records (hex names) never list as tags; the tags list in byte order, paginated.
        let all = d.get_tags(&repo, None, None).await.unwrap().tags;
        assert_eq!(all, [first.hex(), "latest", "v512"]);
        let page = d.get_tags(&repo, Some(1), Some(first.hex())).await.unwrap();
        assert_eq!(
            (page.tags, page.has_more),
            (vec!["latest".to_owned()], true)
        );

        // Untagging removes the tag's file only; the manifest stays.
        d.untag_manifest(&repo, &latest).await.unwrap();
        assert!(!tag_path(&latest).exists() && record_path(&first).exists());
        d.untag_manifest(&repo, &hex_tag).await.unwrap();
        d.untag_manifest(&repo, &v512).await.unwrap();
        assert!(d.get_tags(&repo, None, None).await.unwrap().tags.is_empty());
        assert!(d.get_manifest(&repo, &by_first).await.is_ok());
    }

    /// A manifest record a crash left torn (renamed into place before it was synced) or
    /// that no longer matches its digest is a manifest that is not stored: it is neither
    /// served nor taggable, and pushing the manifest again repairs it.
    #[tokio::test]
    async fn a_torn_manifest_record_counts_as_absent() {
        use crate::oci::{Reference, Tag};
        let (dir, d, repo, config_digest) = with_config().await;
        let manifest = image_manifest(&config_digest, 0);
        let tag = Tag::parse("v1").unwrap();
        let pushed = d
            .put_manifest(
                &repo,
                &Reference::Tag(tag.clone()),
                Some("application/vnd.oci.image.manifest.v1+json"),
                manifest.clone(),
            )
            .await
            .unwrap();
        let by_digest = Reference::Digest(pushed.digest.clone());
        let record = dir
            .path()
            .join(layout::manifest(&repo, &pushed.digest).as_str());
        let intact = fs::read(&record).unwrap();
        let mut flipped = intact.clone();
        *flipped.last_mut().unwrap() ^= 0x20;
        for torn in [&b""[..], &intact[..intact.len() / 2], &flipped[..]] {
            // A crash (or a failed write) tears the record, which is created in place; the
            // tag's hard link keeps the previous file.
            fs::remove_file(&record).unwrap();
            fs::write(&record, torn).unwrap();
            assert!(matches!(
                d.get_manifest(&repo, &by_digest).await,
                Err(Error::ManifestUnknown(_))
            ));
            assert!(matches!(
                d.get_manifest(&repo, &Reference::Tag(tag.clone())).await,
                Err(Error::ManifestUnknown(_))
            ));
            assert!(matches!(
                d.tag_manifest(&repo, &Tag::parse("v2").unwrap(), &pushed.digest)
                    .await,
                Err(Error::ManifestUnknown(_))
            ));
        }
        d.put_manifest(
            &repo,
            &by_digest,
            Some("application/vnd.oci.image.manifest.v1+json"),
            manifest.clone(),
        )
        .await
        .unwrap();
        let served = d.get_manifest(&repo, &Reference::Tag(tag)).await.unwrap();
        assert_eq!(served.bytes, manifest);
    }

    /// Volatile session records: a record from another boot, or one a crash left torn, is an
    /// unknown session; a record of this boot resumes.
    #[tokio::test]
    async fn stale_or_torn_session_records_are_unknown() {
        if upload::boot_id().is_none() {
            // No boot id: sessions are durable, nothing volatile to check.
            eprintln!("no boot id on this system: durable mode, check not applicable");
            return;
        }
        let dir = tempfile::tempdir().unwrap();
        let d = driver(dir.path()).await;
        let repo = RepositoryName::parse("a/b").unwrap();
        let up = d
            .start_upload(&repo, DigestAlgorithm::Sha256)
            .await
            .unwrap();
        let id = up.id();
        let chunk = stream::iter([Ok(Bytes::from_static(b"hello"))]);
        d.put_upload_chunk(&repo, &id, Some(0), None, chunk)
            .await
            .unwrap();
        assert_eq!(d.get_upload_progress(&repo, &id).await.unwrap().offset(), 5);
        let record = dir.path().join(layout::upload_state(&repo, &id).as_str());
        let text = fs::read_to_string(&record).unwrap();
        let boot = upload::boot_id().unwrap();
        assert!(text.contains(boot), "record carries the boot id: {text}");

        // Written before a reboot: unknown.
        fs::write(
            &record,
            text.replace(boot, "00000000-0000-0000-0000-000000000000"),
        )
        .unwrap();
        assert!(matches!(
            d.get_upload_progress(&repo, &id).await,
            Err(Error::BlobUploadUnknown(_))
        ));
        let chunk = stream::iter([Ok(Bytes::from_static(b"more"))]);
        assert!(matches!(
            d.put_upload_chunk(&repo, &id, Some(5), None, chunk).await,
            Err(Error::BlobUploadUnknown(_))
        ));
        // Torn by a crash (empty or cut short): unknown.
        for torn in [&b""[..], &text.as_bytes()[..text.len() / 2]] {
            fs::write(&record, torn).unwrap();
            assert!(matches!(
                d.get_upload_progress(&repo, &id).await,
                Err(Error::BlobUploadUnknown(_))
            ));
        }
        // Intact and of this boot: resumes where it was.
        fs::write(&record, &text).unwrap();
        assert_eq!(d.get_upload_progress(&repo, &id).await.unwrap().offset(), 5);
    }
}
