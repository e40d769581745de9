//! The filesystem driver (`type = "filesystem"`): the [`layout`]
//! tree as files below [`FilesystemConfig::root_directory`].
//!
//! ```text
//! <root>/
//!     blobs/<alg>/<hex>          blob bytes (renamed into place whole, after a sync)
//!     uploads/<id>               bytes of an upload in progress (one file per upload)
//!     repositories/<name>/...    links, manifests, referrers, upload states
//!     repositories/<name>/_manifests/sha256/tag-<tag>
//!                                tags, beside the manifest records (see `layout`)
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
//!   - manifest records (the key class `ManifestRecord`) are created under their final name
//!     (no temporary file, no rename), then synced (`atomic::write_verified`); a torn or
//!     partly written record fails its digest and counts as absent; a new tag pushed with a
//!     sha256 manifest is linked in the record's directory before that directory's one sync
//!     (`tagging`);
//!   - a blob's link (class `Link`) is written and its name synced while the blob is
//!     finished (`Capabilities::link_while_finishing`), and counts only while the blob
//!     exists; its content (the size) is never synced, the blob's own size is
//!     authoritative;
//!   - upload sessions in progress (class `UploadState`, and their bytes) are not synced
//!     until they are closed; a machine crash is detected by the boot id the session record
//!     carries ([`FilesystemUploadState`]'s `is_current`), and such a session is
//!     `BLOB_UPLOAD_UNKNOWN` (see `upload.rs` and the README's durability contract).
//! - **Small reads inline:** metadata reads and blob `stat` run on the calling task (page
//!   cache hits in practice), not on the blocking pool.
//! - **Several processes on one root:** the changes of one upload session are serialised
//!   across processes by [`Backend::lock_upload`]'s leases
//!   ([`session_lock`](crate::storage::session_lock)), as the engine's own lock does within
//!   one process.
//! - **Nothing escapes the root:** keys are re-checked (`paths`), directories on a write
//!   path are walked with `lstat` so planted symbolic links are refused, and new files are
//!   created with `O_EXCL`, which never follows a link.
//! - **Streaming:** blob reads and upload writes move 1 MiB at a time on Tokio's blocking
//!   pool, overlapping disk I/O with the network and hashing; no blob is held in memory.

mod atomic;
mod config;
mod lifecycle;
mod listing;
mod paths;
mod reader;
mod reserve;
mod tagging;
mod upload;

use std::fmt;
use std::fs;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use bytes::Bytes;
use futures::Stream;

use crate::error::{Error, Result};
use crate::oci::{ByteRange, Digest};
use crate::storage::any::ConfiguredDriver;
use crate::storage::backend::{Backend, Capabilities, TagTarget};
use crate::storage::key_locks::UploadLocks;
use crate::storage::layout::{self, Dir, Key, KeyClass};
use crate::storage::session_lock::{SessionLocks, TagLease, TagLocks, UploadLease};
use crate::storage::{Engine, EngineOptions, Observed, StorageConfig, StorageType, UploadId};

use tagging::Tagging;

pub use config::FilesystemConfig;
pub use reader::{FilesystemReader, MAP_MIN, READ_CHUNK};
pub use upload::{FilesystemUploadState, WRITE_BATCH};

/// Driver name used in errors.
const DRIVER: &str = "filesystem";

/// The filesystem storage driver: the engine over the instrumented filesystem backend.
pub type FilesystemDriver = Engine<Observed<FilesystemBackend>>;

impl FilesystemDriver {
    /// Opens (creating if needed) the storage root.
    pub async fn open(config: &FilesystemConfig, options: EngineOptions) -> Result<Self> {
        let backend = FilesystemBackend::open(&config.root_directory).await?;
        Ok(Engine::new(options.instrument(backend), options))
    }
}

impl ConfiguredDriver for FilesystemDriver {
    const STORAGE_TYPE: StorageType = StorageType::Filesystem;

    async fn open(config: &StorageConfig, options: EngineOptions) -> Result<Self> {
        FilesystemDriver::open(&config.filesystem, options).await
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
    locks: UploadLocks,
    /// Serialises the changes of one upload session across processes sharing the root.
    sessions: SessionLocks,
    /// Serialises a tag's write against a delete's removal of it across those processes.
    tags: TagLocks,
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
        let (root, sessions) = blocking(move || {
            if fs::metadata(&root).is_ok_and(|meta| !meta.is_dir()) {
                return Err(Error::Config {
                    field: "filesystem.root_directory",
                    message: format!("{} is not a directory", root.display()),
                });
            }
            fs::create_dir_all(&root).map_err(|e| io_err("creating root directory", &root, e))?;
            let root = fs::canonicalize(&root)
                .map_err(|e| io_err("resolving root directory", &root, e))?;
            paths::ensure_dir(&root, Some("blobs"))?;
            paths::ensure_dir(&root, Some("uploads"))?;
            let sessions = SessionLocks::new(&root);
            Ok((root, sessions))
        })
        .await?;
        let mut root_prefix = root.display().to_string();
        if !root_prefix.ends_with('/') {
            root_prefix.push('/');
        }
        Ok(Self {
            root_prefix: root_prefix.into(),
            locks: UploadLocks::default(),
            tags: TagLocks::new(&root),
            root: Arc::new(root),
            sessions,
        })
    }

    /// The canonical root directory.
    pub fn root(&self) -> &Path {
        &self.root
    }

    fn path(&self, key: &Key) -> Result<PathBuf> {
        paths::key_path(&self.root, key)
    }
}

/// Wraps an I/O error: the step that failed in the message, the path only in the detail
/// for logs (an answer never shows the storage root).
fn io_err(what: &'static str, path: &Path, err: std::io::Error) -> Error {
    Error::io_at(DRIVER, what, path.display(), err)
}

/// Whether `error` was caused by an I/O error that `kind` accepts (the driver's errors keep
/// the `io::Error` among their sources).
fn caused_by(error: &Error, kind: impl Fn(&std::io::Error) -> bool) -> bool {
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(error);
    while let Some(e) = source {
        if e.downcast_ref::<std::io::Error>().is_some_and(&kind) {
            return true;
        }
        source = e.source();
    }
    false
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

/// The largest directory (`st_size`) listed on the calling task rather than on the blocking
/// pool: one block.
const SMALL_DIR_BYTES: u64 = 4096;

/// Runs blocking filesystem work on Tokio's blocking pool.
async fn blocking<T, F>(f: F) -> Result<T>
where
    F: FnOnce() -> Result<T> + Send + 'static,
    T: Send + 'static,
{
    tokio::task::spawn_blocking(f).await.map_err(join_failed)?
}

/// Writes an upload session's record: atomic (temporary file, then exchange) but not synced,
/// so a PATCH costs no disk round trip. A record is trusted only while the boot id it
/// carries is current, and one a crash left torn is unreadable, which the engine reports as
/// an unknown session (contract, clause 3). Records of non-volatile sessions (no boot id on
/// this system) are written durably.
async fn write_session_record(root: Arc<PathBuf>, rel: String, value: Bytes) -> Result<()> {
    write_maybe_durable(root, rel, value, upload::boot_id().is_none()).await
}

/// Replaces an object atomically, durably only when `durable`.
async fn write_maybe_durable(
    root: Arc<PathBuf>,
    rel: String,
    value: Bytes,
    durable: bool,
) -> Result<()> {
    if !durable && paths::parent_exists(&root, &rel) {
        // Nothing synced and no directory to create: a small write and a rename in the page
        // cache, done inline (like `read`) rather than through the blocking pool, once per
        // PATCH.
        return atomic::replace(&root, &rel, &value, false);
    }
    blocking(move || atomic::replace(&root, &rel, &value, durable)).await
}

impl Backend for FilesystemBackend {
    const NAME: &'static str = DRIVER;
    type Reader = FilesystemReader;
    type UploadState = FilesystemUploadState;

    fn capabilities(&self) -> Capabilities {
        // A blob's link and its name are synced in one round; checking a link costs one
        // `lstat`.
        Capabilities::NONE.with_link_while_finishing(true)
    }

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
        let rel = paths::rel_path(key)?.to_owned();
        let root = Arc::clone(&self.root);
        match key.class() {
            // Created in place and synced, with no temporary name: the engine verifies a
            // record on every read, so a torn one counts as absent (contract, clause 2).
            KeyClass::ManifestRecord => {
                blocking(move || atomic::write_verified(&root, &rel, &value)).await
            }
            // The link's name is made durable (directory synced), its few bytes of content
            // are not: after a crash the file may be empty (ext4 `data=ordered`, XFS), and the
            // engine then takes the size from the blob, which was synced before. One fsync
            // instead of two per link. (`data=writeback` mounts, which may expose stale
            // blocks, are unsupported.)
            KeyClass::Link => {
                blocking(move || atomic::replace_with(&root, &rel, &value, false, true)).await
            }
            KeyClass::UploadState => write_session_record(root, rel, value).await,
            // Only needed while the push that wrote it runs: a crash of the host stops the
            // collections it guards against too. Atomic, never synced.
            KeyClass::Intent => write_maybe_durable(root, rel, value, false).await,
            // What a collection writes before it deletes anything: on a full filesystem it
            // uses the collection's reserve.
            KeyClass::CondemnedSet => {
                blocking(move || {
                    reserve::write_with_reserve(&root, || atomic::write_atomic(&root, &rel, &value))
                })
                .await
            }
            _ => blocking(move || atomic::write_atomic(&root, &rel, &value)).await,
        }
    }

    async fn stage_record(&self, key: &Key, value: Bytes) -> Result<()> {
        if key.class() != KeyClass::ManifestRecord {
            return self.write(key, value).await;
        }
        // Created in place as `write` does, but nothing synced: the tag's `write_tag` syncs
        // the file and its directory, in one trip to the blocking pool (see `tagging`). A new
        // record in a directory that exists is a small write in the page cache, done inline;
        // an existing one may have to be replaced durably (torn), on the blocking pool.
        let rel = paths::rel_path(key)?.to_owned();
        if paths::parent_exists(&self.root, &rel) && lstat(&self.path(key)?)?.is_none() {
            return atomic::create_verified_unsynced(&self.root, &rel, &value);
        }
        let root = Arc::clone(&self.root);
        blocking(move || atomic::create_verified_unsynced(&root, &rel, &value)).await
    }

    async fn remove(&self, key: &Key) -> Result<()> {
        let path = self.path(key)?;
        if key.class() == KeyClass::Intent
            || (key.class() == KeyClass::UploadState && upload::boot_id().is_some())
        {
            // Not synced: a record a crash brings back names data that finishing consumed or
            // aborting removed; it is rejected on load (earlier boot id). Records of durable
            // sessions (no boot id on this system) are removed durably. An intent a crash
            // brings back only keeps a manifest alive until collections drop it as stale.
            return atomic::remove_volatile(&path);
        }
        blocking(move || atomic::remove_durable(&path)).await
    }

    async fn list(
        &self,
        dir: &Dir,
        start_after: Option<&str>,
        limit: Option<usize>,
    ) -> Result<Vec<String>> {
        if limit == Some(0) {
            return Ok(Vec::new());
        }
        let path = paths::join(&self.root, paths::rel_path(dir.key())?);
        let prefix = dir.name_prefix();
        match lstat(&path)? {
            None => return Ok(Vec::new()),
            // A directory of one block (on ext4 about a hundred names) is read inline, like
            // a small object, sparing a trip through the blocking pool: every tagged push
            // lists `gc/`, which is absent or nearly empty.
            Some(meta) if meta.is_dir() && meta.len() <= SMALL_DIR_BYTES => {
                return listing::list(&path, prefix, start_after, limit);
            }
            Some(_) => {}
        }
        let start_after = start_after.map(str::to_owned);
        blocking(move || listing::list(&path, prefix, start_after.as_deref(), limit)).await
    }

    async fn any_under(&self, dir: &Dir) -> Result<bool> {
        let path = paths::join(&self.root, paths::rel_path(dir.key())?);
        let prefix = dir.name_prefix();
        if prefix.is_empty() {
            blocking(move || listing::any_under(&path)).await
        } else {
            // Tags, whose names carry a prefix: the entries of one directory.
            blocking(move || listing::any_named(&path, prefix)).await
        }
    }

    async fn write_tag(&self, tag: &Key, target: TagTarget<'_>) -> Result<()> {
        // A hard link beside the record, one directory sync for the tag and the staged
        // record's name (see `tagging`); an intent is a link that is not synced.
        let tagging = Tagging::new(&self.root, tag, target)?;
        if tagging.is_inline() {
            return tagging.run();
        }
        blocking(move || tagging.run()).await
    }

    async fn blob_size(&self, digest: &Digest) -> Result<Option<u64>> {
        // One `lstat`, inline like `read`.
        let path = self.path(&layout::blob_data(digest))?;
        match lstat(&path)? {
            Some(meta) if meta.is_file() => Ok(Some(meta.len())),
            Some(_) => Err(Error::backend_detail(
                DRIVER,
                "a blob is not a regular file",
                path.display().to_string(),
            )),
            None => Ok(None),
        }
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

    async fn start_upload(
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
        upload::append(
            &self.root,
            &self.locks,
            &self.sessions,
            id,
            state,
            offset,
            body,
        )
        .await
    }

    async fn finish_upload(
        &self,
        id: &UploadId,
        state: FilesystemUploadState,
        size: u64,
        digest: &Digest,
    ) -> Result<()> {
        // Held until the rename is done, even if this request is gone by then: a chunk
        // written meanwhile would land in the blob.
        let hold = upload::SessionHold::take(&self.locks, &self.sessions, id).await;
        let root = Arc::clone(&self.root);
        let id = id.clone();
        let digest = digest.clone();
        blocking(move || {
            let _hold = hold;
            upload::commit(&root, &id, &state, size, &digest)
        })
        .await
    }

    async fn lock_upload(&self, id: &UploadId) -> Result<UploadLease> {
        self.sessions.lock(id).await
    }

    async fn lock_tag(&self, key: &Key) -> Result<TagLease> {
        self.tags.lock(key.as_str()).await
    }

    async fn abort_upload(&self, id: &UploadId, _state: FilesystemUploadState) -> Result<()> {
        let root = Arc::clone(&self.root);
        let id = id.clone();
        blocking(move || upload::abort(&root, &id)).await
    }
}

#[cfg(test)]
mod tests;
