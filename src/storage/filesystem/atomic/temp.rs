//! Where a write lands: the target's directory, created as needed and again if tidying
//! removed it meanwhile, and a new, unique temporary name in it.

use std::fs::{File, OpenOptions};
use std::io;
use std::path::{Path, PathBuf};

use super::sync::missing;
use crate::error::Result;
use crate::storage::filesystem::io_err;
use crate::storage::filesystem::paths::{self, TEMP_PREFIX};

/// How many times a write retries when the directory it ensured was removed under it.
const VANISHED_DIR_RETRIES: usize = 3;

/// Runs `op` in the directory `parent` (below `root`), created as needed: if `op` fails and
/// the directory is gone (tidying removes empty directories, possibly between ensuring one and
/// creating a file in it), the directory is created again and `op` retried. Gone means no
/// longer there, or `op` failed on a missing file or directory: another writer may have
/// created the directory again before the look.
pub(super) fn in_dir<T>(
    root: &Path,
    parent: Option<&str>,
    mut op: impl FnMut(&Path) -> Result<T>,
) -> Result<T> {
    let mut attempt = 0;
    loop {
        let dir = paths::ensure_dir(root, parent)?;
        match op(&dir) {
            Err(e)
                if attempt < VANISHED_DIR_RETRIES
                    && (!dir.is_dir() || crate::storage::filesystem::caused_by(&e, missing)) =>
            {
                tracing::debug!(error = %e, "directory removed during a write; retrying");
                attempt += 1;
            }
            done => return done,
        }
    }
}

/// Creates a new, uniquely named temporary file in `dir` for the object `name`.
///
/// `create_new` (`O_EXCL`) never follows a symbolic link and never reuses an existing file,
/// so concurrent writers of the same key each get their own file.
pub(super) fn create_temp(dir: &Path, name: &str) -> Result<(PathBuf, File)> {
    with_temp_name(dir, name, |path| {
        OpenOptions::new().write(true).create_new(true).open(path)
    })
}

/// Runs `create` (which must fail with `AlreadyExists` rather than replace anything) on a
/// new unique temporary name in `dir` for the object `name`, retrying on collisions.
pub(super) fn with_temp_name<T>(
    dir: &Path,
    name: &str,
    create: impl Fn(&Path) -> io::Result<T>,
) -> Result<(PathBuf, T)> {
    let mut attempts = 0;
    loop {
        let suffix: u64 = rand::random();
        // Keep the name short enough for any filesystem (object names are at most 128
        // bytes; 255 is the usual limit).
        let short: String = name.chars().take(64).collect();
        let path = dir.join(format!("{TEMP_PREFIX}{short}-{suffix:016x}"));
        match create(&path) {
            Ok(made) => return Ok((path, made)),
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists && attempts < 8 => attempts += 1,
            Err(e) => return Err(io_err("creating temporary file", &path, e)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Tidying removed the directory after it was ensured, and another writer made it again
    /// before the failed write looked: the write is still tried again.
    #[test]
    fn a_write_whose_directory_vanished_and_came_back_is_retried() {
        let root = tempfile::tempdir().unwrap();
        let mut attempts = 0;
        let written = in_dir(root.path(), Some("repositories/r/_manifests"), |dir| {
            attempts += 1;
            if attempts == 1 {
                std::fs::remove_dir(dir).unwrap();
                let failed = File::create_new(dir.join("x")).unwrap_err();
                std::fs::create_dir(dir).unwrap();
                return Err(io_err("creating", &dir.join("x"), failed));
            }
            Ok(attempts)
        });
        assert_eq!(written.unwrap(), 2);
    }
}
