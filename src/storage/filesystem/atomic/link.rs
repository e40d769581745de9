//! New names for existing files: a hard link made in place when the name is new, or linked
//! under a temporary name and renamed over an existing one, with or without syncing the
//! directory.

use std::fs;
use std::io;
use std::path::Path;

use super::sync::fsync_dir;
use super::temp::{in_dir, with_temp_name};
use crate::error::Result;
use crate::storage::filesystem::{io_err, paths};

/// Atomically and durably makes `rel` below `root` another name of the existing file
/// `existing` (a hard link, then the directory synced): [`link_in`] in `rel`'s directory,
/// created as needed.
pub(crate) fn link_atomic(root: &Path, rel: &str, existing: &Path) -> Result<()> {
    let (parent, name) = paths::split_parent(rel);
    in_dir(root, parent, |dir| link_in(dir, name, existing, || Ok(())))
}

/// Atomically makes `rel` below `root` another name of the existing file `existing`,
/// without syncing anything (for a name a crash may lose): [`link_in`] without its sync, in
/// `rel`'s directory, created as needed.
pub(crate) fn link_volatile(root: &Path, rel: &str, existing: &Path) -> Result<()> {
    let (parent, name) = paths::split_parent(rel);
    in_dir(root, parent, |dir| {
        link_unsynced(dir, name, existing, || Ok(()))
    })
}

/// Atomically and durably makes `name` in the directory `dir` another name of the existing
/// file `existing`, then syncs `dir`. No file is created and no data written: the file must
/// already be durable. A new name is linked in place (`link(2)` is atomic, never follows a
/// symbolic link at its target and fails if the name exists); an existing one is replaced
/// by linking a temporary name and renaming it over (the rename replaces a symbolic link
/// rather than following it), after `before_replacing` ran.
pub(crate) fn link_in(
    dir: &Path,
    name: &str,
    existing: &Path,
    before_replacing: impl FnOnce() -> Result<()>,
) -> Result<()> {
    link_unsynced(dir, name, existing, before_replacing)?;
    fsync_dir(dir)
}

/// [`link_in`] without the directory sync.
fn link_unsynced(
    dir: &Path,
    name: &str,
    existing: &Path,
    before_replacing: impl FnOnce() -> Result<()>,
) -> Result<()> {
    let target = dir.join(name);
    match fs::hard_link(existing, &target) {
        Ok(()) => return Ok(()),
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
        Err(e) => return Err(io_err("linking", &target, e)),
    }
    before_replacing()?;
    let (temp, ()) = with_temp_name(dir, name, |path| fs::hard_link(existing, path))?;
    if let Err(e) = fs::rename(&temp, &target) {
        let _ = fs::remove_file(&temp);
        return Err(io_err("renaming into", &target, e));
    }
    Ok(())
}
