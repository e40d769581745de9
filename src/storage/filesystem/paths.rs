//! Mapping of layout keys onto paths below the root, and the defences that keep every path
//! there. A key is stored at the path it names: the tree is drawn once, in
//! [`layout`](crate::storage::layout) (tags included, beside the sha256 manifest records).
//!
//! Keys come from [`layout`](crate::storage::layout) and are safe by construction; they are
//! checked again here anyway (defence in depth): every `/`-separated component must be
//! non-empty, must not start with `.` (which excludes `.`, `..` and this driver's own
//! temporary files), and no key may contain `\` or NUL or start with `/`.
//!
//! Directories on the way to a written file are walked component by component with
//! `lstat`, so a symbolic link planted below the root is refused instead of followed.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use crate::error::{Error, Result};
use crate::storage::layout::Key;

use super::atomic::fsync_dir;
use super::{DRIVER, io_err};

/// Prefix of every temporary file this driver creates. No key component can start with `.`,
/// so temporary files never collide with objects and listings skip them.
pub(super) const TEMP_PREFIX: &str = ".tmp-";

/// Whether a directory entry is one of this driver's temporary files (or anything else
/// that is not an object: no object name starts with `.`).
pub(super) fn is_hidden(name: &str) -> bool {
    name.starts_with('.')
}

/// Validates a key and returns the checked path, relative to the root, where it is stored.
pub(super) fn rel_path(key: &Key) -> Result<&str> {
    check_relative(key.as_str())
}

/// Validates a relative `/`-separated path (see the module documentation).
pub(super) fn check_relative(rel: &str) -> Result<&str> {
    let bad = |why: &str| {
        Err(Error::backend(
            DRIVER,
            format!("refusing key {rel:?}: {why}"),
        ))
    };
    if rel.is_empty() {
        return bad("empty");
    }
    if rel.starts_with('/') {
        return bad("absolute");
    }
    if rel.contains('\\') || rel.contains('\0') {
        return bad("contains a backslash or NUL");
    }
    for component in rel.split('/') {
        if component.is_empty() {
            return bad("empty path component");
        }
        if component.starts_with('.') {
            // Covers `.`, `..` and temporary-file names.
            return bad("path component starting with '.'");
        }
    }
    Ok(rel)
}

/// The absolute path below `root` where `key` is stored (see [`rel_path`]).
pub(super) fn key_path(root: &Path, key: &Key) -> Result<PathBuf> {
    Ok(join(root, rel_path(key)?))
}

/// `root` joined with a checked relative path.
pub(super) fn join(root: &Path, rel: &str) -> PathBuf {
    let mut path = root.to_path_buf();
    for component in rel.split('/') {
        path.push(component);
    }
    path
}

/// Splits a checked relative path into its parent directory (`None` at the root) and name.
pub(super) fn split_parent(rel: &str) -> (Option<&str>, &str) {
    match rel.rsplit_once('/') {
        Some((dir, name)) => (Some(dir), name),
        None => (None, rel),
    }
}

/// Whether the directory that will hold `rel` already exists, so that writing `rel` creates
/// no directory (and syncs none): the condition for doing it on the calling task.
pub(super) fn parent_exists(root: &Path, rel: &str) -> bool {
    match split_parent(rel).0 {
        Some(dir) => join(root, dir).is_dir(),
        None => true,
    }
}

/// Makes sure the directory `rel` (relative to `root`, already checked) exists, creating
/// missing components, and returns its absolute path.
///
/// Every existing component must be a real directory: a symbolic link (or a file) is refused,
/// so a link planted under the root cannot redirect a write outside it. Each directory
/// created is made durable by syncing its parent.
pub(super) fn ensure_dir(root: &Path, rel: Option<&str>) -> Result<PathBuf> {
    let Some(rel) = rel else {
        return Ok(root.to_path_buf());
    };
    // Tidying (garbage collection) removes empty directories: one may vanish between being
    // found and getting a child. The walk then starts again.
    let mut attempts = 0;
    loop {
        let mut dir = root.to_path_buf();
        match ensure_components(root, &mut dir, rel) {
            Err(e) if vanished(&e) && attempts < 5 => attempts += 1,
            done => return done.map(|()| dir),
        }
    }
}

/// Whether `e` is a directory creation that failed because its parent is gone.
fn vanished(e: &Error) -> bool {
    let Error::Backend {
        source: Some(source),
        message,
        ..
    } = e
    else {
        return false;
    };
    if !message.starts_with("creating directory") {
        return false;
    }
    // The I/O error sits below the error's detail (the path, kept for logs).
    let mut cause: Option<&(dyn std::error::Error + 'static)> = Some(source.as_ref());
    while let Some(c) = cause {
        if let Some(io) = c.downcast_ref::<io::Error>() {
            return io.kind() == io::ErrorKind::NotFound;
        }
        cause = c.source();
    }
    false
}

fn ensure_components(root: &Path, dir: &mut PathBuf, rel: &str) -> Result<()> {
    for component in rel.split('/') {
        dir.push(component);
        match fs::symlink_metadata(&*dir) {
            Ok(meta) if meta.is_dir() => continue,
            Ok(_) => return Err(not_a_dir(dir)),
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(io_err("inspecting", dir, e)),
        }
        match fs::create_dir(&*dir) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
                // Created concurrently by another writer; it may not have synced the parent
                // yet, so sync it here too before relying on the entry.
                let meta = fs::symlink_metadata(&*dir).map_err(|e| io_err("inspecting", dir, e))?;
                if !meta.is_dir() {
                    return Err(not_a_dir(dir));
                }
            }
            Err(e) => return Err(io_err("creating directory", dir, e)),
        }
        // The new entry is durable only once its parent directory is synced.
        let parent = dir.parent().unwrap_or(root);
        fsync_dir(parent)?;
    }
    Ok(())
}

fn not_a_dir(path: &Path) -> Error {
    Error::backend_detail(
        DRIVER,
        "refusing to write through something that is not a directory (symbolic links below \
         the root are not followed)",
        path.display().to_string(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn relative_paths_are_checked() {
        for ok in [
            "a",
            "blobs/sha256/ab",
            "repositories/a/b/_tags/v1..2",
            "x/y-z_w",
        ] {
            assert_eq!(check_relative(ok).unwrap(), ok);
        }
        for bad in [
            "",
            "/etc/passwd",
            "a/../b",
            "..",
            "a/./b",
            "a//b",
            "a/",
            "a\\b",
            "a\0b",
            "a/.tmp-x",
            ".hidden",
        ] {
            assert!(check_relative(bad).is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn a_directory_creation_whose_parent_vanished_is_recognised() {
        let gone = io_err(
            "creating directory",
            Path::new("/r/a/b"),
            io::Error::from(io::ErrorKind::NotFound),
        );
        assert!(vanished(&gone));
        let denied = io_err(
            "creating directory",
            Path::new("/r/a/b"),
            io::Error::from(io::ErrorKind::PermissionDenied),
        );
        assert!(!vanished(&denied));
        let other = io_err(
            "inspecting",
            Path::new("/r/a/b"),
            io::Error::from(io::ErrorKind::NotFound),
        );
        assert!(!vanished(&other));
    }

    #[test]
    fn split() {
        assert_eq!(split_parent("a/b/c"), (Some("a/b"), "c"));
        assert_eq!(split_parent("c"), (None, "c"));
        assert!(is_hidden(".tmp-1") && !is_hidden("v1"));
    }

    #[test]
    fn parent_exists_only_for_an_existing_directory() {
        let root = tempfile::tempdir().unwrap();
        assert!(parent_exists(root.path(), "top-level"));
        assert!(!parent_exists(root.path(), "a/b"));
        fs::create_dir(root.path().join("a")).unwrap();
        assert!(parent_exists(root.path(), "a/b"));
        fs::write(root.path().join("f"), b"x").unwrap();
        assert!(!parent_exists(root.path(), "f/x"));
    }

    #[cfg(unix)]
    #[test]
    fn ensure_dir_refuses_symlinks() {
        let root = tempfile::tempdir().unwrap();
        let outside = tempfile::tempdir().unwrap();
        std::os::unix::fs::symlink(outside.path(), root.path().join("evil")).unwrap();
        assert!(ensure_dir(root.path(), Some("evil/sub")).is_err());
        assert!(!outside.path().join("sub").exists());
        let made = ensure_dir(root.path(), Some("good/sub")).unwrap();
        assert!(made.is_dir());
        assert_eq!(made, root.path().join("good").join("sub"));
    }
}
