//! Replacing a file's content atomically: the new bytes written to a temporary file beside
//! the target, then renamed over it (durably or not), or, when nothing is to be made
//! durable, exchanged with the existing file.

use std::fs::{self, File};
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use super::sync::{fsync_dir, missing};
use super::temp::{create_temp, in_dir};
use crate::error::Result;
use crate::storage::filesystem::{io_err, paths};

/// Atomically and durably replaces the file at `rel` (a checked relative path) below `root`
/// with `value`, creating parent directories as needed.
pub(crate) fn write_atomic(root: &Path, rel: &str, value: &[u8]) -> Result<()> {
    replace(root, rel, value, true)
}

/// Atomically replaces the file at `rel` below `root` with `value`; durably (file synced
/// before the rename, directory synced after it) only when `durable`. Without it a reader
/// still sees the old or the new content, never a mix, but a machine crash may lose the
/// write or leave the name pointing at an empty or partial file: only for records that are
/// checked on load (upload session records, see
/// [`upload`](crate::storage::filesystem::upload)).
pub(crate) fn replace(root: &Path, rel: &str, value: &[u8], durable: bool) -> Result<()> {
    replace_with(root, rel, value, durable, durable)
}

/// Like [`replace`], syncing the file's content before the rename only when `sync_data`
/// and the directory after it only when `sync_name`. `sync_name` without `sync_data` makes
/// the name durable but not necessarily the content: a crash may leave the name pointing at
/// an empty file (used for links, whose content the engine can do without).
pub(crate) fn replace_with(
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
