//! Upload sessions and tags locked against other processes sharing a filesystem root: what
//! [`Backend::lock_upload`](super::backend::Backend::lock_upload) and
//! [`Backend::lock_tag`](super::backend::Backend::lock_tag) hand out on the filesystem.
//!
//! The engine serialises the changes of one session (chunk, finish, abort) within one
//! process (`UploadLocks`). Processes sharing a root must be
//! serialised too, or a chunk received by one while another finishes the session writes
//! into the file the finish has just renamed into the blob: bytes under a digest they do
//! not have. (The object-store drivers need no lock: they write every chunk under a name of
//! its own and update the session record conditionally.)
//!
//! The lock is an open-file-description lock (`F_OFD_SETLK`, Linux ≥ 3.15) on one byte of
//! one file at the root, `upload-locks`, chosen by the session's id: held by one lease,
//! whatever the process or the task, and released when the lease's descriptor closes, also
//! when a process dies. Waiting polls (every 1 to 50 ms) rather than blocking a thread, so a
//! waiter whose client went away stops waiting. A write the filesystem backend still runs on
//! the blocking pool for a session keeps its lease's descriptor open,
//! so the session stays locked until that write ends, even when the request that took the
//! lease is gone.
//!
//! Tags are locked the same way, on the file `tag-locks`: a manifest's delete removes a tag
//! only if it still names that manifest, a read and then a removal, which a push moving the
//! tag in another process must not fall between (`Engine::untag_one`).

use std::collections::HashMap;
use std::fs::{File, OpenOptions};
use std::io;
use std::os::fd::AsRawFd;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError, Weak};
use std::time::Duration;

use sha2::{Digest as _, Sha256};

use crate::error::{Error, Result};
use crate::storage::UploadId;

/// The lock file, directly below the root. Its name starts with no `.`, so tidying never
/// takes it for a temporary file; nothing else in the tree lists the root's files.
pub(crate) const LOCK_FILE: &str = "upload-locks";
/// The tags' lock file, beside it.
pub(crate) const TAG_LOCK_FILE: &str = "tag-locks";

/// The first and the longest pause between two attempts to take a busy lock.
const FIRST_PAUSE: Duration = Duration::from_millis(1);
const LONGEST_PAUSE: Duration = Duration::from_millis(50);

/// The leases this process holds, by session: their descriptors, for the writes that must
/// keep them open.
type Held = Arc<Mutex<HashMap<UploadId, Weak<File>>>>;

/// Where the sessions of one root are locked.
#[derive(Debug, Clone)]
pub(crate) struct SessionLocks {
    path: PathBuf,
    held: Held,
}

/// One session locked until dropped (see the [module](self) docs); a lease of a backend
/// without cross-process sessions holds nothing.
#[derive(Debug, Default)]
pub struct UploadLease {
    _lock: Option<LeaseLock>,
}

/// The descriptor holding a lease's lock, and where this process finds it.
#[derive(Debug)]
struct LeaseLock {
    file: Arc<File>,
    id: UploadId,
    held: Held,
}

impl Drop for LeaseLock {
    fn drop(&mut self) {
        let mut held = self.held.lock().unwrap_or_else(PoisonError::into_inner);
        let ours = Arc::downgrade(&self.file);
        if held.get(&self.id).is_some_and(|file| file.ptr_eq(&ours)) {
            held.remove(&self.id);
        }
    }
}

impl UploadLease {
    /// A lease that holds nothing: what backends whose sessions need no lock hand out.
    pub fn none() -> Self {
        Self::default()
    }
}

impl SessionLocks {
    /// The locks of the sessions below `root`. The lock file is created by the first lease,
    /// so that a root nobody uploads to may be read-only.
    pub(crate) fn new(root: &Path) -> Self {
        Self {
            path: root.join(LOCK_FILE),
            held: Held::default(),
        }
    }

    /// The descriptor of the lease this process holds on `id`, if any: whoever keeps it
    /// keeps the session locked, also after the lease is dropped.
    pub(crate) fn held(&self, id: &UploadId) -> Option<Arc<File>> {
        let held = self.held.lock().unwrap_or_else(PoisonError::into_inner);
        held.get(id).and_then(Weak::upgrade)
    }

    /// Waits for the session `id`'s lock.
    pub(crate) async fn lock(&self, id: &UploadId) -> Result<UploadLease> {
        let Some(file) = lock_byte(&self.path, byte_of(id.as_str())).await? else {
            return Ok(UploadLease::none());
        };
        let file = Arc::new(file);
        let mut held = self.held.lock().unwrap_or_else(PoisonError::into_inner);
        held.insert(id.clone(), Arc::downgrade(&file));
        let lock = LeaseLock {
            file,
            id: id.clone(),
            held: Arc::clone(&self.held),
        };
        Ok(UploadLease { _lock: Some(lock) })
    }
}

/// Where the tags of one root are locked (see the [module](self) docs).
#[derive(Debug, Clone)]
pub(crate) struct TagLocks {
    path: PathBuf,
}

/// One tag locked until dropped; a lease of a backend that needs no lock holds nothing.
#[derive(Debug, Default)]
pub struct TagLease {
    _file: Option<File>,
}

impl TagLease {
    /// A lease that holds nothing.
    pub fn none() -> Self {
        Self::default()
    }
}

impl TagLocks {
    /// The locks of the tags below `root` (the lock file is created by the first lease).
    pub(crate) fn new(root: &Path) -> Self {
        Self {
            path: root.join(TAG_LOCK_FILE),
        }
    }

    /// Waits for the lock of the tag stored at `key` (a storage key).
    pub(crate) async fn lock(&self, key: &str) -> Result<TagLease> {
        Ok(TagLease {
            _file: lock_byte(&self.path, byte_of(key)).await?,
        })
    }
}

/// Opens the lock file at `path` (created if need be) for a new open file description.
fn open_file(path: &Path) -> Result<File> {
    OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        // Never through a symbolic link planted in its place.
        .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
        .mode(0o600)
        .open(path)
        .map_err(|e| lock_failed(path, e))
}

/// Waits for the lock of `byte` of the file at `path`, on a description of its own: the
/// returned descriptor holds it until closed. `None` on a filesystem without locks (warned
/// about once).
async fn lock_byte(path: &Path, byte: i64) -> Result<Option<File>> {
    let file = open_file(path)?;
    let mut pause = FIRST_PAUSE;
    loop {
        match try_lock(&file, byte) {
            Ok(true) => return Ok(Some(file)),
            Ok(false) => {
                tokio::time::sleep(pause).await;
                pause = (pause * 2).min(LONGEST_PAUSE);
            }
            Err(e) if unsupported(&e) => {
                // A filesystem without locks (some network and FUSE filesystems): one
                // process per root is then safe, several are not.
                static WARNED: std::sync::Once = std::sync::Once::new();
                WARNED.call_once(|| {
                    tracing::warn!(path = %path.display(), error = %e,
                        "this filesystem does not lock: upload sessions and tags are not \
                         protected against changes by other processes sharing the root");
                });
                return Ok(None);
            }
            Err(e) => return Err(lock_failed(path, e)),
        }
    }
}

/// The byte locked for `name`: a stable hash of it (the same in every process and build),
/// below 2^62 so that it is a valid file offset.
fn byte_of(name: &str) -> i64 {
    let hash = Sha256::digest(name.as_bytes());
    let mut first = [0u8; 8];
    first.copy_from_slice(&hash[..8]);
    (u64::from_be_bytes(first) >> 2) as i64
}

/// Takes the write lock on `byte` of `file` for its open file description, if free.
fn try_lock(file: &File, byte: i64) -> io::Result<bool> {
    // SAFETY: `flock` is plain data; all-zero is a valid value, whose fields are set below.
    let mut range: libc::flock = unsafe { std::mem::zeroed() };
    range.l_type = libc::F_WRLCK as libc::c_short;
    range.l_whence = libc::SEEK_SET as libc::c_short;
    range.l_start = byte;
    range.l_len = 1;
    loop {
        // SAFETY: a valid descriptor, and a pointer to a `flock` that outlives the call.
        let done = unsafe { libc::fcntl(file.as_raw_fd(), libc::F_OFD_SETLK, &range) };
        if done == 0 {
            return Ok(true);
        }
        let err = io::Error::last_os_error();
        match err.raw_os_error() {
            Some(libc::EINTR) => continue,
            Some(libc::EAGAIN | libc::EACCES) => return Ok(false),
            _ => return Err(err),
        }
    }
}

/// Whether a lock failed because the filesystem does not support them, rather than for a
/// reason worth an error.
fn unsupported(err: &io::Error) -> bool {
    matches!(
        err.raw_os_error(),
        Some(libc::ENOLCK | libc::EOPNOTSUPP | libc::ENOSYS | libc::EINVAL)
    )
}

fn lock_failed(path: &Path, err: io::Error) -> Error {
    Error::backend_detail(
        "filesystem",
        "locking against other processes failed",
        format!("{}: {err}", path.display()),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Runs `lock` while `hold` is kept: it must still wait after 200 ms, and be granted
    /// once `hold` is dropped.
    async fn waits_for<T, L>(hold: T, lock: impl Future<Output = Result<L>>) {
        tokio::pin!(lock);
        let early = tokio::time::timeout(Duration::from_millis(200), &mut lock).await;
        assert!(
            early.is_err(),
            "the lease was granted while the session was held"
        );
        drop(hold);
        tokio::time::timeout(Duration::from_secs(5), lock)
            .await
            .expect("the lease still waits after the session was freed")
            .unwrap();
    }

    /// Two leases of one session exclude each other, also from one process (each lease is
    /// its own open file description); other sessions are not held up; a dropped lease
    /// frees the session.
    #[tokio::test]
    async fn a_session_is_held_by_one_lease_at_a_time() {
        let dir = tempfile::tempdir().unwrap();
        let one = SessionLocks::new(dir.path());
        let other = SessionLocks::new(dir.path());
        let id = UploadId::generate();
        let held = one.lock(&id).await.unwrap();
        let _elsewhere = other.lock(&UploadId::generate()).await.unwrap();
        waits_for(held, other.lock(&id)).await;
    }

    /// Two leases of one tag exclude each other, also from one process; other tags and
    /// upload sessions are not held up.
    #[tokio::test]
    async fn a_tag_is_held_by_one_lease_at_a_time() {
        let dir = tempfile::tempdir().unwrap();
        let (one, other) = (TagLocks::new(dir.path()), TagLocks::new(dir.path()));
        let key = "repositories/a/_manifests/tags/v1";
        let held = one.lock(key).await.unwrap();
        let _elsewhere = other
            .lock("repositories/a/_manifests/tags/v2")
            .await
            .unwrap();
        let _session = SessionLocks::new(dir.path())
            .lock(&UploadId::generate())
            .await
            .unwrap();
        waits_for(held, other.lock(key)).await;
    }

    /// A descriptor taken from a lease keeps the session locked after the lease is dropped,
    /// until it is dropped too.
    #[tokio::test]
    async fn a_held_descriptor_outlives_its_lease() {
        let dir = tempfile::tempdir().unwrap();
        let (one, other) = (SessionLocks::new(dir.path()), SessionLocks::new(dir.path()));
        let id = UploadId::generate();
        let lease = one.lock(&id).await.unwrap();
        let writing = one.held(&id).expect("the lease's descriptor");
        drop(lease);
        assert!(
            one.held(&id).is_none(),
            "a dropped lease is not found any more"
        );
        waits_for(writing, other.lock(&id)).await;
    }

    /// A filesystem without locks is served without them (one process per root is safe);
    /// other failures are errors.
    #[test]
    fn filesystems_without_locks_are_told_from_failures() {
        for errno in [libc::ENOLCK, libc::EOPNOTSUPP, libc::ENOSYS, libc::EINVAL] {
            assert!(unsupported(&io::Error::from_raw_os_error(errno)), "{errno}");
        }
        for errno in [libc::EBADF, libc::EIO, libc::EDEADLK] {
            assert!(
                !unsupported(&io::Error::from_raw_os_error(errno)),
                "{errno}"
            );
        }
    }

    /// The byte is the same for an id in every process and build: the first 62 bits of
    /// the id's SHA-256 (`python3 -c "import hashlib; print(int.from_bytes(hashlib.sha256(
    /// b'0123456789abcdef0123456789abcdef').digest()[:8], 'big') >> 2)"`).
    #[test]
    fn the_byte_of_an_id_is_stable() {
        let id = UploadId::parse("0123456789abcdef0123456789abcdef").unwrap();
        assert_eq!(byte_of(id.as_str()), 1_129_399_999_815_351_005);
    }
}
