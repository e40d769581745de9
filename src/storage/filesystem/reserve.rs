//! The collection's reserve: a file of [`RESERVE_BYTES`] at the root (`gc-reserve`), kept so
//! that a collection can still run on a full filesystem.
//!
//! A collection writes its condemned set before it deletes anything (the set is what pushes
//! in other processes check), so on a filesystem with no free block it could never start,
//! and deleting tags or manifests frees nothing by itself. When writing a condemned set fails
//! with `ENOSPC`, the reserve is deleted and the write tried once more; the collection then
//! frees what it reclaims. Every collection that completes (not a dry run) makes the reserve
//! again if it is missing, as space allows. Several processes may share it: whichever needs
//! it first releases it.

use std::fs::{self, File, OpenOptions};
use std::os::fd::AsRawFd;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use crate::error::{Error, Result};

/// The reserve's name at the root of the storage (outside the trees collections and
/// listings walk).
pub(super) const RESERVE_NAME: &str = "gc-reserve";
/// The reserve's size: room for a condemned set of about 200 000 entries.
pub(super) const RESERVE_BYTES: u64 = 16 << 20;

fn reserve_path(root: &Path) -> PathBuf {
    root.join(RESERVE_NAME)
}

/// Whether `error` (or an error it was caused by) is the filesystem being full.
pub(super) fn is_storage_full(error: &Error) -> bool {
    super::caused_by(error, |io| io.kind() == std::io::ErrorKind::StorageFull)
}

/// Deletes the reserve to make room; `true` if there was one.
pub(super) fn release(root: &Path) -> bool {
    match fs::remove_file(reserve_path(root)) {
        Ok(()) => {
            tracing::warn!(
                reserve_bytes = RESERVE_BYTES,
                "the filesystem is full: released the collection's reserve to write its condemned set"
            );
            true
        }
        Err(_) => false,
    }
}

/// Writes a condemned set with `write`; on a full filesystem, releases the reserve and
/// writes once more.
pub(super) fn write_with_reserve(root: &Path, write: impl Fn() -> Result<()>) -> Result<()> {
    match write() {
        Err(e) if is_storage_full(&e) && release(root) => write(),
        written => written,
    }
}

/// Makes the reserve, allocated, unless it is there already. Best effort: a filesystem
/// without room for it (or one that cannot allocate) goes without, and says so at `debug`.
pub(super) fn ensure(root: &Path) {
    if let Err(e) = allocate(&reserve_path(root)) {
        tracing::debug!(error = %e, "could not make the collection's reserve");
    }
}

fn allocate(path: &Path) -> std::io::Result<()> {
    let file = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(false)
        .custom_flags(libc::O_NOFOLLOW)
        .open(path)?;
    if file.metadata()?.len() >= RESERVE_BYTES {
        return Ok(());
    }
    let allocated = allocate_blocks(&file);
    if allocated.is_err() {
        drop(file);
        let _ = fs::remove_file(path);
    }
    allocated
}

/// Allocates the reserve's blocks (`posix_fallocate`: a file of that length without blocks
/// would free nothing), then syncs it.
fn allocate_blocks(file: &File) -> std::io::Result<()> {
    let len = libc::off_t::try_from(RESERVE_BYTES).expect("fits");
    // SAFETY: `file` is an open descriptor for the duration of the call.
    let status = unsafe { libc::posix_fallocate(file.as_raw_fd(), 0, len) };
    if status != 0 {
        return Err(std::io::Error::from_raw_os_error(status));
    }
    file.sync_all()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_reserve_is_allocated_once_and_released_on_a_full_filesystem() {
        let root = tempfile::tempdir().unwrap();
        ensure(root.path());
        let meta = fs::metadata(reserve_path(root.path())).unwrap();
        assert_eq!(meta.len(), RESERVE_BYTES);
        use std::os::unix::fs::MetadataExt;
        assert!(meta.blocks() * 512 >= RESERVE_BYTES, "blocks allocated");
        ensure(root.path()); // there already: kept
        let full = || {
            Err(Error::io_at(
                "filesystem",
                "writing",
                "gc/x",
                std::io::Error::from(std::io::ErrorKind::StorageFull),
            ))
        };
        let calls = std::cell::Cell::new(0);
        let written = write_with_reserve(root.path(), || {
            calls.set(calls.get() + 1);
            if calls.get() == 1 { full() } else { Ok(()) }
        });
        written.unwrap();
        assert_eq!(calls.get(), 2);
        assert!(!reserve_path(root.path()).exists());
        // Without a reserve, full is full.
        assert!(is_storage_full(
            &write_with_reserve(root.path(), full).unwrap_err()
        ));
    }
}
