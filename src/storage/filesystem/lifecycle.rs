//! The filesystem's lifecycle primitives ([`LifecycleBackend`]): directory walks, objects
//! with their `mtime`, batched removals (one directory sync per directory), upload data files
//! no session owns, and tidying (empty directories and stale temporary files, and the
//! collection's [reserve](super::reserve)).
//!
//! Directories are removed only when empty (`rmdir` refuses otherwise) and only below
//! `repositories/` and `gc/`; a writer that finds the directory it just ensured removed under
//! it creates it again (`atomic`).

use std::collections::{BTreeSet, HashSet};
use std::fs;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::SystemTime;

use super::atomic::{fsync_existing_dir, missing};
use super::paths::{self, is_hidden};
use super::{FilesystemBackend, blocking, io_err, listing, lstat};
use crate::error::Result;
use crate::oci::{Digest, DigestAlgorithm};
use crate::storage::UploadId;
use crate::storage::layout::{self, Dir, Key};
use crate::storage::lifecycle::{ExpiredStorage, LifecycleBackend, ObjectInfo};

impl FilesystemBackend {
    fn dir_path(&self, dir: &Dir) -> Result<PathBuf> {
        Ok(paths::join(&self.root, paths::rel_path(dir.key())?))
    }
}

/// The subdirectories of `dir` holding an object, in the order of [`LifecycleBackend`].
fn list_dirs(dir: &Path, start_after: Option<&str>, limit: usize) -> Result<Vec<String>> {
    let entries = match fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) if missing(&e) => return Ok(Vec::new()),
        Err(e) => return Err(io_err("listing", dir, e)),
    };
    let after = start_after.map(|a| format!("{a}/"));
    let mut names = BTreeSet::new();
    for entry in entries {
        let entry = entry.map_err(|e| io_err("listing", dir, e))?;
        // `DirEntry::file_type` does not follow symbolic links: a planted link is skipped.
        if !entry.file_type().is_ok_and(|t| t.is_dir()) {
            continue;
        }
        let Ok(name) = entry.file_name().into_string() else {
            continue;
        };
        if is_hidden(&name) {
            continue;
        }
        // Ordered by the name followed by `/`.
        let ordered = name + "/";
        if after.as_ref().is_none_or(|a| &ordered > a) {
            names.insert(ordered);
        }
    }
    let mut out = Vec::new();
    for mut name in names {
        if out.len() == limit {
            break;
        }
        name.pop();
        // Empty directories (left by deletions until tidied) are not listed.
        if listing::any_under(&dir.join(&name))? {
            out.push(name);
        }
    }
    Ok(out)
}

/// The objects of `dir` whose names start with `prefix` (cut off), with their size and
/// `mtime`.
fn scan(
    dir: &Path,
    prefix: &str,
    start_after: Option<&str>,
    limit: usize,
) -> Result<Vec<ObjectInfo>> {
    let names = listing::list(dir, prefix, start_after, Some(limit))?;
    let mut out = Vec::with_capacity(names.len());
    for name in names {
        let path = dir.join([prefix, &name].concat());
        // Removed since it was listed: not there any more.
        let Some(meta) = lstat(&path)? else { continue };
        out.push(ObjectInfo {
            name,
            size: meta.len(),
            modified: meta
                .modified()
                .map_err(|e| io_err("inspecting", &path, e))?,
        });
    }
    Ok(out)
}

/// Removes files (absent ones are fine), then syncs each directory once.
fn remove_files(paths: Vec<PathBuf>) -> Result<()> {
    let mut dirs = BTreeSet::new();
    for path in paths {
        match fs::remove_file(&path) {
            Ok(()) => {
                if let Some(dir) = path.parent() {
                    dirs.insert(dir.to_path_buf());
                }
            }
            Err(e) if missing(&e) => {}
            Err(e) => return Err(io_err("removing", &path, e)),
        }
    }
    for dir in dirs {
        fsync_existing_dir(&dir)?;
    }
    Ok(())
}

/// Upload data files (`uploads/<id>`) of no live session, last written before `before`.
fn expire_uploads(
    root: &Path,
    before: SystemTime,
    live: &HashSet<UploadId>,
    dry_run: bool,
) -> Result<ExpiredStorage> {
    let dir = paths::join(root, paths::rel_path(layout::uploads_dir().key())?);
    let mut expired = ExpiredStorage::default();
    for object in scan(&dir, "", None, usize::MAX)? {
        let Ok(id) = UploadId::parse(&object.name) else {
            continue;
        };
        if live.contains(&id) || object.modified >= before {
            continue;
        }
        if !dry_run {
            // Not synced: a data file a crash brings back is garbage for the next run.
            match fs::remove_file(dir.join(&object.name)) {
                Ok(()) => {}
                Err(e) if missing(&e) => continue,
                Err(e) => return Err(io_err("removing", &dir.join(&object.name), e)),
            }
        }
        expired.bytes += object.size;
        expired.uploads.push(id);
    }
    Ok(expired)
}

/// Removes, below `dir`, temporary files last written before `before` and then the
/// directories left empty (`dir` itself too unless `keep`). Returns how many entries it
/// removed (in a dry run: would remove) and whether `dir` is (would be) gone.
fn tidy_dir(dir: &Path, before: SystemTime, dry_run: bool, keep: bool) -> Result<(u64, bool)> {
    let entries = match fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) if missing(&e) => return Ok((0, true)),
        Err(e) => return Err(io_err("listing", dir, e)),
    };
    let mut removed = 0;
    let mut kept = false;
    for entry in entries {
        let entry = match entry {
            Ok(entry) => entry,
            Err(e) if missing(&e) => continue,
            Err(e) => return Err(io_err("listing", dir, e)),
        };
        let path = entry.path();
        let Ok(kind) = entry.file_type() else {
            kept = true;
            continue;
        };
        if kind.is_dir() {
            let (n, gone) = tidy_dir(&path, before, dry_run, false)?;
            removed += n;
            kept |= !gone;
            continue;
        }
        let stale_temp = kind.is_file()
            && is_hidden(&entry.file_name().to_string_lossy())
            && entry
                .metadata()
                .and_then(|m| m.modified())
                .is_ok_and(|m| m < before);
        if !stale_temp {
            kept = true;
            continue;
        }
        if !dry_run {
            match fs::remove_file(&path) {
                Ok(()) => {}
                Err(e) if missing(&e) => continue,
                Err(e) => return Err(io_err("removing", &path, e)),
            }
        }
        removed += 1;
    }
    if keep || kept {
        return Ok((removed, false));
    }
    if dry_run {
        return Ok((removed + 1, true));
    }
    // `rmdir` fails on a directory a writer just put something in: it then stays.
    match fs::remove_dir(dir) {
        Ok(()) => {
            if let Some(parent) = dir.parent() {
                fsync_existing_dir(parent)?;
            }
            Ok((removed + 1, true))
        }
        Err(_) => Ok((removed, false)),
    }
}

impl LifecycleBackend for FilesystemBackend {
    async fn list_dirs(
        &self,
        dir: &Dir,
        start_after: Option<&str>,
        limit: usize,
    ) -> Result<Vec<String>> {
        let path = self.dir_path(dir)?;
        let start_after = start_after.map(str::to_owned);
        blocking(move || list_dirs(&path, start_after.as_deref(), limit)).await
    }

    async fn scan(
        &self,
        dir: &Dir,
        start_after: Option<&str>,
        limit: usize,
    ) -> Result<Vec<ObjectInfo>> {
        let path = self.dir_path(dir)?;
        let prefix = dir.name_prefix();
        let start_after = start_after.map(str::to_owned);
        blocking(move || scan(&path, prefix, start_after.as_deref(), limit)).await
    }

    async fn scan_blobs(
        &self,
        algorithm: DigestAlgorithm,
        start_after: Option<&str>,
        limit: usize,
    ) -> Result<Vec<ObjectInfo>> {
        self.scan(&layout::blobs_dir(algorithm), start_after, limit)
            .await
    }

    async fn remove_objects(&self, keys: &[Key]) -> Result<()> {
        let paths = keys
            .iter()
            .map(|key| self.path(key))
            .collect::<Result<Vec<_>>>()?;
        blocking(move || remove_files(paths)).await
    }

    async fn remove_blobs(&self, digests: &[Digest]) -> Result<()> {
        let paths = digests
            .iter()
            .map(|digest| self.path(&layout::blob_data(digest)))
            .collect::<Result<Vec<_>>>()?;
        blocking(move || remove_files(paths)).await
    }

    async fn expire_upload_storage(
        &self,
        before: SystemTime,
        live: &HashSet<UploadId>,
        dry_run: bool,
    ) -> Result<ExpiredStorage> {
        let root = Arc::clone(&self.root);
        let live = live.clone();
        blocking(move || expire_uploads(&root, before, &live, dry_run)).await
    }

    async fn tidy(&self, before: SystemTime, dry_run: bool) -> Result<u64> {
        let dirs = [layout::repositories_dir(), layout::gc_dir()]
            .map(|key| paths::join(&self.root, key.as_str()));
        let root = Arc::clone(&self.root);
        blocking(move || {
            let mut removed = 0;
            for dir in dirs {
                removed += tidy_dir(&dir, before, dry_run, true)?.0;
            }
            if !dry_run {
                // Made again after a collection that needed it freed space.
                super::reserve::ensure(&root);
            }
            Ok(removed)
        })
        .await
    }
}
