//! Upload bytes in progress: one data file per upload, `uploads/<id>` below the root.
//!
//! - `append` opens the data file, cuts it back to the persisted offset (bytes left by a
//!   failed append are discarded), and writes the body in large batches on the blocking
//!   pool while the next batch is being received (and hashed by the engine). Before it
//!   returns, the data is synced: the engine persists the new offset only afterwards, so the
//!   offset never runs ahead of durable bytes.
//!
//!   Except for **volatile** sessions (the default on Linux, [`FilesystemUploadState::boot`]):
//!   a chunk's bytes (and the engine's record of the session, through
//!   a write of its `UploadState` key) are written without `fsync`. A process crash loses
//!   nothing (the page cache keeps the writes); a machine crash may lose or tear them, but it
//!   also changes the kernel's boot id, which the record carries: on load a record from an
//!   earlier boot, or one a crash left unreadable, is `BLOB_UPLOAD_UNKNOWN` and the client
//!   restarts the upload. Only committed data must survive a crash, and `commit` syncs the
//!   bytes before the blob's name appears.
//! - `commit` renames the data file to `blobs/<alg>/<hex>` (atomic: the blob appears whole
//!   or not at all) and syncs the blob directory. If the blob is already stored the data is
//!   dropped instead: blobs are content-addressed, so both are the same bytes.
//! - Bytes under `uploads/` are never visible as a blob before commit.

use std::fs::{self, File, OpenOptions};
use std::io::{self, IoSlice, Seek, SeekFrom, Write};
use std::mem;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use bytes::Bytes;
use futures::{Stream, StreamExt};
use serde::{Deserialize, Serialize};
use tokio::task::JoinHandle;

use crate::error::{Error, Result};
use crate::oci::Digest;
use crate::storage::UploadId;
use crate::storage::backend::PersistedUploadState;
use crate::storage::key_locks::{UploadGuard, UploadLocks};
use crate::storage::layout;
use crate::storage::session_lock::SessionLocks;

use super::atomic::{fsync_dir, missing};
use super::{DRIVER, blocking, io_err, join_failed, paths};

/// Incoming chunks are gathered into batches of at least this many bytes before one
/// vectored write, so a body of small chunks does not cost one syscall per chunk.
pub const WRITE_BATCH: usize = 1024 * 1024;
/// At most this many chunks in one batch (one `writev` call takes at most 1024).
const MAX_BATCH_CHUNKS: usize = 512;

/// Batches up to this size (a small push, the tail of a body) are written on the calling
/// task instead of the blocking pool.
const INLINE_WRITE_MAX: usize = 64 * 1024;

/// Each time this many more bytes of an upload were written, writeback of its file is
/// started in the background ([`background_sync`]), within one request body and across the
/// chunks of a session alike, so the disk works while the rest arrives and the final sync
/// has little left to do.
const WRITEBACK_EVERY: u64 = 8 * 1024 * 1024;

/// The filesystem backend's part of an upload's persisted state.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct FilesystemUploadState {
    /// Set for a one-shot push whose digest is known up front ([`Backend::start_upload`]
    /// with a target): such an upload's state is never persisted by the engine, so appends
    /// need not be durable on their own; the data is synced once, at commit.
    ///
    /// [`Backend::start_upload`]: crate::storage::backend::Backend::start_upload
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub one_shot: bool,
    /// The kernel boot id (`/proc/sys/kernel/random/boot_id`) of the machine that wrote this
    /// session's bytes and record *without* syncing them (see the module documentation).
    /// The page cache survives a process crash but not a reboot, so the state is trusted
    /// only while the boot id is unchanged; after a reboot the session is reported as
    /// `BLOB_UPLOAD_UNKNOWN`. `None`: every append was synced (durable mode, used where no
    /// boot id is available), trusted always.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub boot: Option<String>,
}

/// This machine's boot id, read once; `None` where the kernel offers none (uploads are then
/// synced on every append, as in durable mode).
pub(super) fn boot_id() -> Option<&'static str> {
    static BOOT: std::sync::OnceLock<Option<String>> = std::sync::OnceLock::new();
    BOOT.get_or_init(|| {
        fs::read_to_string("/proc/sys/kernel/random/boot_id")
            .ok()
            .map(|s| s.trim().to_owned())
            .filter(|s| !s.is_empty())
    })
    .as_deref()
}

impl FilesystemUploadState {
    /// Whether this session's appends skip syncing (their bytes and record may be lost by a
    /// machine crash, which the boot id detects).
    pub(super) fn volatile(&self) -> bool {
        self.boot.is_some()
    }
}

impl PersistedUploadState for FilesystemUploadState {
    /// Whether the session's unsynced writes, if any, can still be trusted: written during
    /// this boot.
    fn is_current(&self) -> bool {
        self.boot.as_deref().is_none_or(|b| Some(b) == boot_id())
    }
}

/// At most this many background syncs run at once (process-wide).
const MAX_BACKGROUND_SYNCS: usize = 2;
static BACKGROUND_SYNCS: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);

/// Starts (without waiting) writeback of `file`'s dirty pages with a `sync_data` on a
/// duplicate descriptor, unless enough are running; returns whether it started one. Never
/// awaited: the sync before commit is what makes the data durable, this one only gets the
/// disk going early.
fn background_sync(file: &File) -> bool {
    use std::sync::atomic::Ordering;
    if BACKGROUND_SYNCS.fetch_add(1, Ordering::AcqRel) >= MAX_BACKGROUND_SYNCS {
        BACKGROUND_SYNCS.fetch_sub(1, Ordering::AcqRel);
        return false;
    }
    match file.try_clone() {
        Ok(dup) => {
            tokio::task::spawn_blocking(move || {
                let _ = dup.sync_data();
                BACKGROUND_SYNCS.fetch_sub(1, Ordering::AcqRel);
            });
            true
        }
        Err(_) => {
            BACKGROUND_SYNCS.fetch_sub(1, Ordering::AcqRel);
            false
        }
    }
}

/// Relative path of an upload's data file (the upload's data "directory" key is used as a
/// plain file: one entry per upload, no directory to create, sync and remove).
fn data_rel(id: &UploadId) -> Result<String> {
    let key = layout::upload_data(id);
    Ok(paths::rel_path(&key)?.to_owned())
}

/// Opens the data file for writing at `offset`, creating it for a fresh upload. Returns the
/// file and whether it was created (its directory entry then needs syncing).
fn open_at(root: &Path, rel: &str, offset: u64) -> Result<(File, bool)> {
    let (parent, _) = paths::split_parent(rel);
    let path = paths::join(root, rel);
    let (mut file, created) = match fs::symlink_metadata(&path) {
        Ok(meta) if meta.is_file() => {
            let file = OpenOptions::new()
                .write(true)
                .open(&path)
                .map_err(|e| io_err("opening", &path, e))?;
            (file, false)
        }
        Ok(_) => {
            return Err(Error::backend_detail(
                DRIVER,
                "upload data is not a regular file",
                path.display().to_string(),
            ));
        }
        Err(e) if missing(&e) && offset == 0 => {
            paths::ensure_dir(root, parent)?;
            // `create_new` never follows a symbolic link planted in the meantime.
            let file = OpenOptions::new()
                .write(true)
                .create_new(true)
                .open(&path)
                .map_err(|e| io_err("creating", &path, e))?;
            (file, true)
        }
        Err(e) if missing(&e) => {
            // The session's bytes are gone (expired, or committed by a finish whose record
            // removal a crash undid): the session cannot continue, the client starts over.
            return Err(gone(rel, offset));
        }
        Err(e) => return Err(io_err("inspecting", &path, e)),
    };
    let len = file
        .metadata()
        .map_err(|e| io_err("inspecting", &path, e))?
        .len();
    if len < offset {
        return Err(gone(rel, offset));
    }
    if len > offset {
        // Leftover of an append that failed after writing: the engine never recorded it.
        file.set_len(offset)
            .map_err(|e| io_err("truncating", &path, e))?;
    }
    file.seek(SeekFrom::Start(offset))
        .map_err(|e| io_err("seeking", &path, e))?;
    Ok((file, created))
}

/// The error of a session whose data file (`rel`) lacks bytes its record counts: the session
/// is unknown (spec: the client starts the upload over). Names only the upload id.
fn gone(rel: &str, recorded: u64) -> Error {
    let id = paths::split_parent(rel).1;
    Error::BlobUploadUnknown(format!(
        "{id}: the upload's bytes are gone ({recorded} were recorded)"
    ))
}

/// Writes all of `chunks` with as few `writev` calls as possible.
fn write_all_vectored(file: &mut File, chunks: &[Bytes]) -> io::Result<()> {
    let mut slices: Vec<IoSlice<'_>> = chunks.iter().map(|c| IoSlice::new(c)).collect();
    let mut slices = &mut slices[..];
    while !slices.is_empty() {
        match file.write_vectored(slices) {
            Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
            Ok(n) => IoSlice::advance_slices(&mut slices, n),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// The file being written, or the batch write currently running on the blocking pool.
enum Writer {
    Idle(File),
    Busy(JoinHandle<io::Result<File>>),
    Broken,
}

/// What keeps a session locked while this process writes to it, also in a write on the
/// blocking pool that outlives its request: the lock of this process and the descriptor of
/// the engine's cross-process lease ([`SessionLocks::held`]), when it holds one.
pub(super) struct SessionHold {
    _lock: UploadGuard,
    _lease: Option<Arc<File>>,
}

impl SessionHold {
    /// Waits for this process's lock on `id`, and keeps the engine's lease on it open.
    pub(super) async fn take(locks: &UploadLocks, sessions: &SessionLocks, id: &UploadId) -> Self {
        Self {
            _lock: locks.lock(id).await,
            _lease: sessions.held(id),
        }
    }
}

/// Double-buffered writer: one batch is written while the next is received.
struct BatchWriter {
    state: Writer,
    path: Arc<PathBuf>,
    /// Held by every blocking step, so the upload stays locked until the last one ends.
    guard: Arc<SessionHold>,
    /// Bytes submitted since writeback was last started.
    unsynced: u64,
}

impl BatchWriter {
    /// Waits for the write in flight and takes the file back.
    async fn file(&mut self) -> Result<File> {
        match mem::replace(&mut self.state, Writer::Broken) {
            Writer::Idle(file) => Ok(file),
            Writer::Busy(handle) => match handle.await {
                Ok(Ok(file)) => Ok(file),
                Ok(Err(e)) => Err(io_err("writing", &self.path, e)),
                Err(e) => Err(join_failed(e)),
            },
            Writer::Broken => Err(Error::backend(DRIVER, "upload writer already failed")),
        }
    }

    /// Starts writing `batch` once the previous batch is written.
    async fn submit(&mut self, batch: Vec<Bytes>, len: usize) -> Result<()> {
        let mut file = self.file().await?;
        // Everything submitted before is in the page cache now.
        if self.unsynced >= WRITEBACK_EVERY && background_sync(&file) {
            self.unsynced = 0;
        }
        self.unsynced += len as u64;
        if len <= INLINE_WRITE_MAX {
            // A copy into the page cache this small costs less than the hop.
            let written = write_all_vectored(&mut file, &batch);
            self.state = Writer::Idle(file);
            return written.map_err(|e| io_err("writing", &self.path, e));
        }
        let guard = Arc::clone(&self.guard);
        self.state = Writer::Busy(tokio::task::spawn_blocking(move || {
            let _guard = guard;
            write_all_vectored(&mut file, &batch)?;
            Ok(file)
        }));
        Ok(())
    }

    /// Waits for the write in flight, ignoring its outcome: used on failure so no write of
    /// this append can land after it returned (a retry truncates and rewrites the tail).
    async fn settle(&mut self) {
        if let Writer::Busy(handle) = mem::replace(&mut self.state, Writer::Broken) {
            let _ = handle.await;
        }
    }
}

/// Appends `body` at `offset` to the upload's data file; returns the bytes appended.
pub(super) async fn append<S>(
    root: &Arc<PathBuf>,
    locks: &UploadLocks,
    sessions: &SessionLocks,
    id: &UploadId,
    state: &FilesystemUploadState,
    offset: u64,
    body: S,
) -> Result<u64>
where
    S: Stream<Item = Result<Bytes>> + Send,
{
    let rel = data_rel(id)?;
    let path = Arc::new(paths::join(root, &rel));
    let guard = Arc::new(SessionHold::take(locks, sessions, id).await);
    let in_place = offset > 0 || paths::parent_exists(root, &rel);
    let (file, created) = if in_place {
        // Reopening the data file of a session under way, or creating one in the existing
        // uploads directory: an open, a stat and a seek on cached metadata, done inline like
        // `Backend::read` (a hop through the blocking pool costs more than they do, and every
        // PATCH and small push would pay it). Only creating the directory, whose parent is
        // then synced, goes to the blocking pool.
        open_at(root, &rel, offset)?
    } else {
        let root = Arc::clone(root);
        let guard = Arc::clone(&guard);
        blocking(move || {
            let _guard = guard;
            open_at(&root, &rel, offset)
        })
        .await?
    };
    let mut writer = BatchWriter {
        state: Writer::Idle(file),
        path: Arc::clone(&path),
        guard,
        unsynced: 0,
    };
    let mut total = 0u64;
    let streamed: Result<()> = async {
        let mut body = std::pin::pin!(body);
        let mut batch = Vec::new();
        let mut batch_len = 0usize;
        while let Some(chunk) = body.next().await {
            let chunk = chunk?;
            if chunk.is_empty() {
                continue;
            }
            total += chunk.len() as u64;
            batch_len += chunk.len();
            batch.push(chunk);
            if batch_len >= WRITE_BATCH || batch.len() >= MAX_BATCH_CHUNKS {
                writer.submit(mem::take(&mut batch), batch_len).await?;
                batch_len = 0;
            }
        }
        if !batch.is_empty() {
            writer.submit(batch, batch_len).await?;
        }
        Ok(())
    }
    .await;
    if let Err(e) = streamed {
        writer.settle().await;
        return Err(e);
    }
    let file = writer.file().await?;
    // The data file removed while this append wrote to it (the session expired, or another
    // process finished or aborted it): the bytes went nowhere, and the session cannot count
    // them. One `fstat`.
    let links = file
        .metadata()
        .map_err(|e| io_err("inspecting", &path, e))?
        .nlink();
    if links == 0 {
        return Err(Error::BlobUploadUnknown(format!(
            "{id}: the session ended while this chunk was written"
        )));
    }
    if state.volatile() {
        // Not synced: the engine records the new offset with a volatile write too, and a
        // machine crash since is detected by the boot id (the session is then unknown).
        // Commit syncs the data before the blob's name appears.
        // Chunks smaller than `WRITEBACK_EVERY` never start writeback within `submit`.
        let end = offset + total;
        if end / WRITEBACK_EVERY > offset / WRITEBACK_EVERY {
            background_sync(&file);
        }
    } else if !state.one_shot {
        // Durable before the engine records the new offset.
        let root = Arc::clone(root);
        let guard = Arc::clone(&writer.guard);
        blocking(move || {
            let _guard = guard;
            file.sync_data().map_err(|e| io_err("syncing", &path, e))?;
            if created {
                fsync_dir(path.parent().unwrap_or(&root))?;
            }
            Ok(())
        })
        .await?;
    }
    Ok(total)
}

/// Turns the upload's first `size` bytes into the blob `digest`.
pub(super) fn commit(
    root: &Path,
    id: &UploadId,
    state: &FilesystemUploadState,
    size: u64,
    digest: &Digest,
) -> Result<()> {
    let rel = data_rel(id)?;
    let source = paths::join(root, &rel);
    let blob_key = layout::blob_data(digest);
    let blob_rel = paths::rel_path(&blob_key)?;
    let (blob_dir, blob_name) = paths::split_parent(blob_rel);
    let target = paths::join(root, blob_rel);

    if fs::symlink_metadata(&target).is_ok() {
        // Already stored (content-addressed: same bytes); just drop the upload.
        return remove_data(&source);
    }
    let file = match fs::symlink_metadata(&source) {
        Ok(meta) if meta.is_file() => OpenOptions::new()
            .write(true)
            .open(&source)
            .map_err(|e| io_err("opening", &source, e))?,
        Ok(_) => {
            return Err(Error::backend_detail(
                DRIVER,
                "upload data is not a regular file",
                source.display().to_string(),
            ));
        }
        Err(e) if missing(&e) && size == 0 => {
            let (parent, _) = paths::split_parent(&rel);
            paths::ensure_dir(root, parent)?;
            OpenOptions::new()
                .write(true)
                .create_new(true)
                .open(&source)
                .map_err(|e| io_err("creating", &source, e))?
        }
        Err(e) if missing(&e) => return Err(gone(&rel, size)),
        Err(e) => return Err(io_err("opening upload data", &source, e)),
    };
    let len = file
        .metadata()
        .map_err(|e| io_err("inspecting", &source, e))?
        .len();
    if len < size {
        return Err(gone(&rel, size));
    }
    // One-shot and volatile uploads were never synced.
    let mut dirty = state.one_shot || state.volatile();
    if len > size {
        file.set_len(size)
            .map_err(|e| io_err("truncating", &source, e))?;
        dirty = true;
    }
    if dirty {
        // The blob's bytes must be on disk before its name is.
        file.sync_data()
            .map_err(|e| io_err("syncing", &source, e))?;
    }
    drop(file);
    let dir = paths::ensure_dir(root, blob_dir)?;
    debug_assert_eq!(dir.join(blob_name), target);
    // Atomic: readers see no blob or the whole blob. A concurrent commit of the same digest
    // replaces it with identical bytes, which is harmless.
    rename_into(&source, &target, &rel, size)?;
    fsync_dir(&dir)
}

/// Renames the upload's data file (`source`, at `rel` under the root) to the blob's name.
/// The data file vanishing under the commit (upload expiry released it after the session's
/// record expired) leaves the session unknown, as if the finish had come a moment later.
fn rename_into(source: &Path, target: &Path, rel: &str, size: u64) -> Result<()> {
    match fs::rename(source, target) {
        Ok(()) => Ok(()),
        Err(e) if missing(&e) && fs::symlink_metadata(source).is_err_and(|e| missing(&e)) => {
            Err(gone(rel, size))
        }
        Err(e) => Err(io_err("renaming into", target, e)),
    }
}

/// Releases the upload's data.
pub(super) fn abort(root: &Path, id: &UploadId) -> Result<()> {
    let rel = data_rel(id)?;
    remove_data(&paths::join(root, &rel))
}

/// Removes upload data; nothing to sync (a resurrected data file after a crash is garbage
/// no session refers to).
fn remove_data(path: &Path) -> Result<()> {
    match fs::remove_file(path) {
        Ok(()) => Ok(()),
        Err(e) if missing(&e) => Ok(()),
        Err(e) => Err(io_err("removing", path, e)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_data_file_released_under_the_commit_leaves_the_session_unknown() {
        let dir = tempfile::tempdir().unwrap();
        let source = dir.path().join("data");
        let target = dir.path().join("blob");
        let err = rename_into(&source, &target, "_uploads/0123", 7).unwrap_err();
        assert!(matches!(err, Error::BlobUploadUnknown(_)), "{err:?}");
        assert!(!format!("{err}").contains(&*dir.path().to_string_lossy()));

        // A missing target directory is the server's failure, not the client's.
        fs::write(&source, b"bytes").unwrap();
        let nowhere = dir.path().join("absent").join("blob");
        let err = rename_into(&source, &nowhere, "_uploads/0123", 5).unwrap_err();
        assert!(!matches!(err, Error::BlobUploadUnknown(_)), "{err:?}");
        assert!(source.exists());
    }
}
