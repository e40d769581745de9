//! Atomic, durable replacement of small files, and directory syncing.
//!
//! A write goes to a fresh temporary file in the target's own directory (so the rename
//! never crosses a filesystem), is synced, renamed over the target (atomic: a reader opens
//! either the old or the new file, never a partial one), and the directory is synced so the
//! new entry survives a crash. Two shortcuts skip the temporary name where nothing can be
//! seen half-made: a new hard link is created in place ([`link_atomic`]), and an object
//! whose reader verifies it is created in place ([`write_verified`]). A write that is not
//! made durable at all (an upload session record) swaps its file with the existing one
//! instead of renaming over it ([`Prepared::publish`]), which spares ext4's forced
//! writeback on rename-over.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use crate::error::Result;

use super::io_err;
use super::paths::{self, TEMP_PREFIX};

/// Syncs a directory, making the entries created, renamed or removed in it durable.
pub(super) fn fsync_dir(dir: &Path) -> Result<()> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| io_err("syncing directory", dir, e))
}

/// Syncs `dir`, or if it is gone (tidying removed it once empty) the nearest ancestor that
/// exists, which then holds the removal: what was made or unmade in `dir` is durable either
/// way.
pub(super) fn fsync_existing_dir(dir: &Path) -> Result<()> {
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

/// How many times a write retries when the directory it ensured was removed under it.
const VANISHED_DIR_RETRIES: usize = 3;

/// Runs `op` in the directory `parent` (below `root`), created as needed: if `op` fails and
/// the directory is gone (tidying removes empty directories, possibly between ensuring one and
/// creating a file in it), the directory is created again and `op` retried.
fn in_dir<T>(
    root: &Path,
    parent: Option<&str>,
    mut op: impl FnMut(&Path) -> Result<T>,
) -> Result<T> {
    let mut attempt = 0;
    loop {
        let dir = paths::ensure_dir(root, parent)?;
        match op(&dir) {
            Err(e) if attempt < VANISHED_DIR_RETRIES && !dir.is_dir() => {
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
fn with_temp_name<T>(
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

/// Atomically and durably makes `rel` below `root` another name of the existing file
/// `existing` (a hard link, then the directory synced): [`link_in`] in `rel`'s directory,
/// created as needed.
pub(super) fn link_atomic(root: &Path, rel: &str, existing: &Path) -> Result<()> {
    let (parent, name) = paths::split_parent(rel);
    in_dir(root, parent, |dir| link_in(dir, name, existing, || Ok(())))
}

/// Atomically makes `rel` below `root` another name of the existing file `existing`,
/// without syncing anything (for a name a crash may lose): [`link_in`] without its sync, in
/// `rel`'s directory, created as needed.
pub(super) fn link_volatile(root: &Path, rel: &str, existing: &Path) -> Result<()> {
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
pub(super) fn link_in(
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

/// Atomically and durably replaces the file at `rel` (a checked relative path) below `root`
/// with `value`, creating parent directories as needed.
pub(super) fn write_atomic(root: &Path, rel: &str, value: &[u8]) -> Result<()> {
    replace(root, rel, value, true)
}

/// Durably stores `value` at `rel` below `root` for a reader that verifies it
/// (a content-addressed manifest record, key class `ManifestRecord`): [`create_verified`],
/// then the directory synced.
pub(super) fn write_verified(root: &Path, rel: &str, value: &[u8]) -> Result<()> {
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
pub(super) fn create_verified(root: &Path, rel: &str, value: &[u8]) -> Result<PathBuf> {
    let (parent, name) = paths::split_parent(rel);
    in_dir(root, parent, |dir| {
        create_verified_in(root, rel, dir, name, value, true)
    })
}

/// [`create_verified`] without syncing a new or identical file: neither its content nor its
/// name is durable until [`fsync_file`] and a sync of its directory (a staged manifest
/// record, made durable when it is tagged). A file with other content is still replaced
/// durably, so that another writer's file, which may be acknowledged, is only ever replaced
/// by synced bytes.
pub(super) fn create_verified_unsynced(root: &Path, rel: &str, value: &[u8]) -> Result<()> {
    let (parent, name) = paths::split_parent(rel);
    in_dir(root, parent, |dir| {
        create_verified_in(root, rel, dir, name, value, false)
    })
    .map(drop)
}

/// Syncs the file at `path` (content and metadata); succeeds if there is none (the caller's
/// next step then finds it missing).
pub(super) fn fsync_file(path: &Path) -> Result<()> {
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

/// Atomically replaces the file at `rel` below `root` with `value`; durably (file synced
/// before the rename, directory synced after it) only when `durable`. Without it a reader
/// still sees the old or the new content, never a mix, but a machine crash may lose the
/// write or leave the name pointing at an empty or partial file: only for records that are
/// checked on load (upload session records, see [`super::upload`]).
pub(super) fn replace(root: &Path, rel: &str, value: &[u8], durable: bool) -> Result<()> {
    replace_with(root, rel, value, durable, durable)
}

/// Like [`replace`], syncing the file's content before the rename only when `sync_data`
/// and the directory after it only when `sync_name`. `sync_name` without `sync_data` makes
/// the name durable but not necessarily the content: a crash may leave the name pointing at
/// an empty file (used for links, whose content the engine can do without).
pub(super) fn replace_with(
    root: &Path,
    rel: &str,
    value: &[u8],
    sync_data: bool,
    sync_name: bool,
) -> Result<()> {
    prepare(root, rel, value, sync_data)?.publish(sync_name)
}

/// A complete temporary file, not yet visible under its target name.
pub(super) struct Prepared {
    file: File,
    dir: PathBuf,
    temp: PathBuf,
    target: PathBuf,
}

/// Writes `value` to a new temporary file next to `rel`'s target (synced when `sync_data`),
/// without making it visible: [`Prepared::publish`] renames it into place.
pub(super) fn prepare(root: &Path, rel: &str, value: &[u8], sync_data: bool) -> Result<Prepared> {
    let (parent, name) = paths::split_parent(rel);
    // Once the temporary file exists the directory is not empty, so it stays.
    let (dir, (temp, mut file)) = in_dir(root, parent, |dir| {
        Ok((dir.to_path_buf(), create_temp(dir, name)?))
    })?;
    let target = dir.join(name);
    let written = file
        .write_all(value)
        .map_err(|e| io_err("writing", &temp, e))
        .and_then(|()| {
            if sync_data {
                file.sync_data().map_err(|e| io_err("syncing", &temp, e))
            } else {
                Ok(())
            }
        });
    let prepared = Prepared {
        file,
        dir,
        temp,
        target,
    };
    match written {
        Ok(()) => Ok(prepared),
        Err(e) => {
            prepared.discard();
            Err(e)
        }
    }
}

impl Prepared {
    /// Renames the file into place (atomic), then syncs the directory when `sync_name`.
    ///
    /// Without `sync_name` (nothing about the write is durable) an existing target is
    /// *exchanged* with the file and then removed, rather than renamed over: on ext4, a
    /// `rename` that replaces a file makes the kernel allocate and start writing the new
    /// file's data first (`auto_da_alloc`, the default), an I/O round on every upload
    /// session update; an exchange does not.
    pub(super) fn publish(self, sync_name: bool) -> Result<()> {
        if !sync_name {
            match self.exchange() {
                Ok(true) => return Ok(()),
                Ok(false) => {}
                Err(e) => {
                    self.discard();
                    return Err(e);
                }
            }
        }
        let (_, dir, _) = self.rename()?;
        if sync_name { fsync_dir(&dir) } else { Ok(()) }
    }

    /// Atomically swaps the file with an existing regular file at the target and removes
    /// the replaced one (now under the temporary name); `false` if there is nothing to
    /// exchange with or the system cannot (the caller renames instead). On an error the
    /// temporary file holds the new bytes again, for the caller to discard.
    fn exchange(&self) -> Result<bool> {
        #[cfg(target_os = "linux")]
        {
            use std::ffi::CString;
            use std::os::unix::ffi::OsStrExt;
            let (Ok(temp), Ok(target)) = (
                CString::new(self.temp.as_os_str().as_bytes()),
                CString::new(self.target.as_os_str().as_bytes()),
            ) else {
                return Ok(false);
            };
            let exchange = || {
                // SAFETY: both paths are NUL-terminated strings that outlive the call.
                let done = unsafe {
                    libc::renameat2(
                        libc::AT_FDCWD,
                        temp.as_ptr(),
                        libc::AT_FDCWD,
                        target.as_ptr(),
                        libc::RENAME_EXCHANGE,
                    )
                };
                if done == 0 {
                    Ok(())
                } else {
                    Err(io::Error::last_os_error())
                }
            };
            match exchange() {
                Ok(()) => {}
                // No target yet (or no `renameat2`, or a file system without exchange).
                Err(e)
                    if missing(&e)
                        || matches!(
                            e.raw_os_error(),
                            Some(libc::EINVAL | libc::ENOSYS | libc::EOPNOTSUPP)
                        ) =>
                {
                    return Ok(false);
                }
                Err(e) => return Err(io_err("exchanging into", &self.target, e)),
            }
            match fs::remove_file(&self.temp) {
                Ok(()) => Ok(true),
                Err(e) => {
                    // What was swapped out is not a file (a directory): put it back, so
                    // the failure leaves everything as it was.
                    let _ = exchange();
                    Err(io_err("replacing", &self.target, e))
                }
            }
        }
        #[cfg(not(target_os = "linux"))]
        Ok(false)
    }

    /// Renames the file into place (atomic); returns it still open, its directory and its
    /// path.
    fn rename(self) -> Result<(File, PathBuf, PathBuf)> {
        // rename(2) replaces a symbolic link at `target` itself; it never follows it.
        if let Err(e) = fs::rename(&self.temp, &self.target) {
            let target = self.target.clone();
            self.discard();
            return Err(io_err("renaming into", &target, e));
        }
        Ok((self.file, self.dir, self.target))
    }

    /// Removes the temporary file (best effort).
    pub(super) fn discard(self) {
        let _ = fs::remove_file(&self.temp);
    }
}

/// Removes a file and syncs its directory; succeeds if it does not exist.
pub(super) fn remove_durable(path: &Path) -> Result<()> {
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
pub(super) fn remove_volatile(path: &Path) -> Result<()> {
    match fs::remove_file(path) {
        Ok(()) => Ok(()),
        Err(e) if missing(&e) => Ok(()),
        Err(e) => Err(io_err("removing", path, e)),
    }
}

/// Whether an error means "no such file" (including a missing or non-directory parent).
pub(super) fn missing(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::NotFound | io::ErrorKind::NotADirectory
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn write_replace_and_no_temp_left() {
        let root = tempfile::tempdir().unwrap();
        write_atomic(root.path(), "a/b/c", b"one").unwrap();
        write_atomic(root.path(), "a/b/c", b"two").unwrap();
        assert_eq!(fs::read(root.path().join("a/b/c")).unwrap(), b"two");
        assert_only_entry(&root.path().join("a/b"), "c");
        remove_durable(&root.path().join("a/b/c")).unwrap();
        remove_durable(&root.path().join("a/b/c")).unwrap();
        remove_durable(&root.path().join("nope/x")).unwrap();
        assert!(!root.path().join("a/b/c").exists());
    }

    /// Asserts that `dir` holds exactly one entry, `name` (no temporary file left).
    fn assert_only_entry(dir: &Path, name: &str) {
        let names: Vec<_> = fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, vec![std::ffi::OsString::from(name)]);
    }

    /// Replaces the file at `at` with a symbolic link to a new file `victim` (content
    /// `keep`) in `outside`; returns the victim's path.
    fn plant_symlink(outside: &Path, at: &Path) -> PathBuf {
        let victim = outside.join("victim");
        fs::write(&victim, b"keep").unwrap();
        fs::remove_file(at).unwrap();
        std::os::unix::fs::symlink(&victim, at).unwrap();
        victim
    }

    /// A volatile replace (an upload session record) exchanges the new file with an
    /// existing one and removes the old: the name holds the new bytes, no temporary file is
    /// left, a planted symbolic link is replaced rather than followed, and a directory in
    /// the way fails the write and stays as it was.
    #[test]
    fn volatile_replace_exchanges_and_leaves_nothing_behind() {
        let root = tempfile::tempdir().unwrap();
        let outside = tempfile::tempdir().unwrap();
        let target = root.path().join("d/state");
        replace(root.path(), "d/state", b"first", false).unwrap();
        for value in [&b"second, longer"[..], b"3"] {
            replace(root.path(), "d/state", value, false).unwrap();
            assert_eq!(fs::read(&target).unwrap(), value);
            assert_only_entry(&root.path().join("d"), "state");
        }
        let victim = plant_symlink(outside.path(), &target);
        replace(root.path(), "d/state", b"after link", false).unwrap();
        assert_eq!(fs::read(&victim).unwrap(), b"keep");
        assert!(fs::symlink_metadata(&target).unwrap().is_file());
        assert_eq!(fs::read(&target).unwrap(), b"after link");
        assert_only_entry(&root.path().join("d"), "state");

        fs::remove_file(&target).unwrap();
        fs::create_dir(&target).unwrap();
        fs::write(target.join("inside"), b"x").unwrap();
        assert!(replace(root.path(), "d/state", b"over a directory", false).is_err());
        assert_eq!(fs::read(target.join("inside")).unwrap(), b"x");
        assert_only_entry(&root.path().join("d"), "state");
    }

    #[test]
    fn verified_write_creates_in_place_and_replaces_whatever_else_is_there() {
        let root = tempfile::tempdir().unwrap();
        let outside = tempfile::tempdir().unwrap();
        let path = root.path().join("m/r");
        write_verified(root.path(), "m/r", b"record").unwrap();
        assert_eq!(fs::read(&path).unwrap(), b"record");
        let inode = |p: &Path| std::os::unix::fs::MetadataExt::ino(&fs::metadata(p).unwrap());
        let first = inode(&path);
        // A re-push of the same record keeps the file.
        write_verified(root.path(), "m/r", b"record").unwrap();
        assert_eq!(inode(&path), first);
        // A torn leftover (a crash, or a failed write) is replaced.
        fs::write(&path, b"rec").unwrap();
        write_verified(root.path(), "m/r", b"record").unwrap();
        assert_eq!(fs::read(&path).unwrap(), b"record");
        // Other content (same digest, other media type) is replaced too.
        write_verified(root.path(), "m/r", b"record2").unwrap();
        assert_eq!(fs::read(&path).unwrap(), b"record2");
        // A symbolic link at the name is replaced, never followed.
        let victim = plant_symlink(outside.path(), &path);
        write_verified(root.path(), "m/r", b"record").unwrap();
        assert!(fs::symlink_metadata(&path).unwrap().is_file());
        assert_eq!(fs::read(&path).unwrap(), b"record");
        assert_eq!(fs::read(&victim).unwrap(), b"keep");
        assert_only_entry(&root.path().join("m"), "r");
    }

    /// Concurrent writers of one record (a manifest pushed by several clients or processes
    /// at once; here also with two contents, as with two media types for one digest) all
    /// succeed and leave one of the records whole, and no temporary file; a reader meanwhile
    /// sees nothing, a prefix (a write in progress, which fails verification) or a whole
    /// record.
    #[test]
    fn concurrent_verified_writes_of_one_record_leave_it_whole() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        let one: Vec<u8> = (0..64 * 1024).map(|i| (i % 251) as u8).collect();
        let two: Vec<u8> = one.iter().map(|b| b ^ 0xff).collect();
        let path = root.join("m/r");
        let is_one_or_prefix = |seen: &[u8]| one.starts_with(seen) || two.starts_with(seen);
        std::thread::scope(|scope| {
            for writer in 0..4 {
                let value = if writer % 2 == 0 { &one } else { &two };
                scope.spawn(move || {
                    for _ in 0..25 {
                        write_verified(root, "m/r", value).unwrap();
                    }
                });
            }
            scope.spawn(|| {
                for _ in 0..500 {
                    if let Ok(seen) = fs::read(&path) {
                        assert!(is_one_or_prefix(&seen), "not a prefix of either record");
                    }
                }
            });
        });
        let last = fs::read(&path).unwrap();
        assert!(last == one || last == two, "the record is not whole");
        assert_only_entry(&root.join("m"), "r");
    }

    #[test]
    fn links_a_new_name_in_place_and_replaces_an_existing_one() {
        let root = tempfile::tempdir().unwrap();
        let outside = tempfile::tempdir().unwrap();
        write_verified(root.path(), "m/one", b"first").unwrap();
        write_verified(root.path(), "m/two", b"second").unwrap();
        let tag = root.path().join("t/latest");
        link_atomic(root.path(), "t/latest", &root.path().join("m/one")).unwrap();
        assert_eq!(fs::read(&tag).unwrap(), b"first");
        link_atomic(root.path(), "t/latest", &root.path().join("m/two")).unwrap();
        assert_eq!(fs::read(&tag).unwrap(), b"second");
        let victim = plant_symlink(outside.path(), &tag);
        link_atomic(root.path(), "t/latest", &root.path().join("m/one")).unwrap();
        assert!(fs::symlink_metadata(&tag).unwrap().is_file());
        assert_eq!(fs::read(&tag).unwrap(), b"first");
        assert_eq!(fs::read(&victim).unwrap(), b"keep");
        assert_only_entry(&root.path().join("t"), "latest");
        assert!(link_atomic(root.path(), "t/gone", &root.path().join("m/none")).is_err());
        assert_only_entry(&root.path().join("t"), "latest");
    }
}
