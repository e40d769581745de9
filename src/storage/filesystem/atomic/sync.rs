//! Making what was done to names durable: syncing a file or a directory (or, if tidying
//! removed it, its nearest existing ancestor), removing a file durably or not, and telling a
//! missing file from other I/O errors.

use std::fs::{self, File, OpenOptions};
use std::io;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

use crate::error::Result;
use crate::storage::filesystem::io_err;

/// Syncs a directory, making the entries created, renamed or removed in it durable.
pub(crate) fn fsync_dir(dir: &Path) -> Result<()> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| io_err("syncing directory", dir, e))
}

/// Syncs `dir`, or if it is gone (tidying removed it once empty) the nearest ancestor that
/// exists, which then holds the removal: what was made or unmade in `dir` is durable either
/// way.
pub(crate) fn fsync_existing_dir(dir: &Path) -> Result<()> {
    let mut dir = dir;
    loop {
        match File::open(dir) {
            Ok(d) => {
                return d
                    .sync_all()
                    .map_err(|e| io_err("syncing directory", dir, e));
            }
            Err(e) if missing(&e) => match dir.parent() {
                Some(parent) => dir = parent,
                None => return Ok(()),
            },
            Err(e) => return Err(io_err("syncing directory", dir, e)),
        }
    }
}

/// Syncs the file at `path` (content and metadata); succeeds if there is none (the caller's
/// next step then finds it missing).
pub(crate) fn fsync_file(path: &Path) -> Result<()> {
    match OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW)
        .open(path)
    {
        Ok(file) => file.sync_all().map_err(|e| io_err("syncing", path, e)),
        Err(e) if missing(&e) => Ok(()),
        Err(e) => Err(io_err("opening", path, e)),
    }
}

/// Removes a file and syncs its directory; succeeds if it does not exist.
pub(crate) fn remove_durable(path: &Path) -> Result<()> {
    match fs::remove_file(path) {
        Ok(()) => {
            if let Some(dir) = path.parent() {
                fsync_existing_dir(dir)?;
            }
            Ok(())
        }
        Err(e) if missing(&e) => Ok(()),
        Err(e) => Err(io_err("removing", path, e)),
    }
}

/// Removes a file without syncing its directory; succeeds if it does not exist.
pub(crate) fn remove_volatile(path: &Path) -> Result<()> {
    match fs::remove_file(path) {
        Ok(()) => Ok(()),
        Err(e) if missing(&e) => Ok(()),
        Err(e) => Err(io_err("removing", path, e)),
    }
}

/// Whether an error means "no such file" (including a missing or non-directory parent).
pub(crate) fn missing(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::NotFound | io::ErrorKind::NotADirectory
    )
}
