//! Objects whose reader verifies them (manifest records): created in place under their
//! final name, with no temporary name and no rename, a re-push of the same bytes kept and
//! anything else at the name replaced atomically.

use std::fs::{File, OpenOptions};
use std::io::{self, Read, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use super::replace::write_atomic;
use super::sync::fsync_dir;
use super::temp::in_dir;
use crate::error::Result;
use crate::storage::filesystem::{io_err, paths};

/// Durably stores `value` at `rel` below `root` for a reader that verifies it
/// (a content-addressed manifest record, key class `ManifestRecord`): [`create_verified`],
/// then the directory synced.
pub(crate) fn write_verified(root: &Path, rel: &str, value: &[u8]) -> Result<()> {
    fsync_dir(&create_verified(root, rel, value)?)
}

/// Stores `value` at `rel` below `root` for a reader that verifies it, with its content
/// durable; its name becomes durable once the returned directory (the object's) is synced.
///
/// A new object is created under its final name (`O_EXCL`, which never follows a symbolic
/// link), written and synced: no temporary name and no rename. Until the write completes a
/// reader may open a partial file; it fails verification and counts as absent, like the
/// torn file a crash (or a failed write) leaves behind.
///
/// If the name exists and already holds exactly `value` (a re-push), the file is synced,
/// since its creator may not have finished syncing. Otherwise (a torn leftover, a write in
/// progress, other content) it is replaced the classic way ([`write_atomic`]: temporary file
/// synced *before* the rename), so the name never points at unsynced bytes of another writer
/// that already returned.
fn create_verified(root: &Path, rel: &str, value: &[u8]) -> Result<PathBuf> {
    let (parent, name) = paths::split_parent(rel);
    in_dir(root, parent, |dir| {
        create_verified_in(root, rel, dir, name, value, true)
    })
}

/// [`create_verified`] without syncing a new or identical file: neither its content nor its
/// name is durable until [`fsync_file`](super::fsync_file) and a sync of its directory (a
/// staged manifest record, made durable when it is tagged). A file with other content is
/// still replaced durably, so that another writer's file, which may be acknowledged, is only
/// ever replaced by synced bytes.
pub(crate) fn create_verified_unsynced(root: &Path, rel: &str, value: &[u8]) -> Result<()> {
    let (parent, name) = paths::split_parent(rel);
    in_dir(root, parent, |dir| {
        create_verified_in(root, rel, dir, name, value, false)
    })
    .map(drop)
}

fn create_verified_in(
    root: &Path,
    rel: &str,
    dir: &Path,
    name: &str,
    value: &[u8],
    sync: bool,
) -> Result<PathBuf> {
    let dir = dir.to_path_buf();
    let target = dir.join(name);
    match OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(&target)
    {
        Ok(mut file) => {
            file.write_all(value)
                .and_then(|()| if sync { file.sync_all() } else { Ok(()) })
                .map_err(|e| io_err("writing", &target, e))?;
        }
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
            if let Some(file) = open_if_holds(&target, value) {
                refresh_time(&file, &target)?;
                if sync {
                    file.sync_all().map_err(|e| io_err("syncing", &target, e))?;
                }
            } else {
                write_atomic(root, rel, value)?;
            }
        }
        Err(e) => return Err(io_err("creating", &target, e)),
    }
    Ok(dir)
}

/// Gives a record pushed again its time back when it is older than
/// [`RECORD_REFRESH`](crate::storage::lifecycle::RECORD_REFRESH): a collection reclaims
/// broken records by their age, which must not count from an earlier push of the same
/// bytes (see "Broken records" in the `lifecycle` docs).
fn refresh_time(file: &File, path: &Path) -> Result<()> {
    let now = SystemTime::now();
    let modified = file
        .metadata()
        .and_then(|m| m.modified())
        .map_err(|e| io_err("inspecting", path, e))?;
    if crate::storage::lifecycle::record_needs_refresh(modified, now) {
        file.set_modified(now)
            .map_err(|e| io_err("refreshing the time of", path, e))?;
    }
    Ok(())
}

/// The regular file at `path`, opened, if its content is exactly `value`.
fn open_if_holds(path: &Path, value: &[u8]) -> Option<File> {
    let mut file = OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW)
        .open(path)
        .ok()?;
    let meta = file.metadata().ok()?;
    if !meta.is_file() || meta.len() != value.len() as u64 {
        return None;
    }
    let mut content = Vec::with_capacity(value.len());
    file.read_to_end(&mut content).ok()?;
    (content == value).then_some(file)
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn modified(path: &Path) -> SystemTime {
        std::fs::metadata(path).unwrap().modified().unwrap()
    }

    fn set_modified(path: &Path, time: SystemTime) {
        File::options()
            .write(true)
            .open(path)
            .unwrap()
            .set_modified(time)
            .unwrap();
    }

    #[test]
    fn a_record_pushed_again_gets_its_time_back_once_it_is_old() {
        let root = tempfile::tempdir().unwrap();
        let rel = "repositories/r/_manifests/sha256/abc";
        let path = root.path().join(rel);
        write_verified(root.path(), rel, b"record").unwrap();
        let an_hour_ago = SystemTime::now() - Duration::from_secs(3600);
        set_modified(&path, an_hour_ago);
        create_verified_unsynced(root.path(), rel, b"record").unwrap();
        let refreshed = modified(&path);
        assert!(
            refreshed > SystemTime::now() - Duration::from_secs(10),
            "{refreshed:?}"
        );
        // Written again within the refresh interval: left as it is (one syscall less).
        let recently = SystemTime::now() - Duration::from_secs(5);
        set_modified(&path, recently);
        write_verified(root.path(), rel, b"record").unwrap();
        assert_eq!(modified(&path), recently);
        set_modified(&path, an_hour_ago);
        write_verified(root.path(), rel, b"record").unwrap();
        assert!(modified(&path) > an_hour_ago + Duration::from_secs(3000));
    }
}
