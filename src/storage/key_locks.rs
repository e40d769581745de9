//! [`KeyLocks`]: per-process locks by name, held only while an operation is in flight:
//! [`UploadLocks`] on upload sessions, by id, and the engine's locks on tags.
//!
//! Upload sessions need them in two places:
//!
//! - the [`Engine`](super::Engine) serialises the operations that change one session (chunk,
//!   finish, abort), each a read-modify-write of the session's record around an append: two
//!   chunks for the same offset running at once would both pass the offset check, the backend
//!   would keep the bytes of one while the record kept the hash state of the other, and
//!   `finish_upload` would then commit bytes under a digest they do not have. With the lock,
//!   the second chunk sees the first one's offset and is refused (`RangeInvalid`);
//! - the filesystem backend keeps an upload locked until the last blocking write of an
//!   append has ended, even when the append's future was dropped (client gone) while a batch
//!   write was still running on the blocking pool: the guard is shared (`Arc<UploadGuard>`)
//!   by every blocking step, so a retry in this process truncating the file waits for it.
//!
//! Sessions shared by several processes are not serialised by these locks; clients send a
//! session's chunks one at a time (spec "Pushing a blob in chunks"), so they only guard
//! against misbehaving clients hitting the same instance, and against this process's own
//! abandoned writes.
//!
//! A tag's lock makes a delete that removes the tag only if it still names the deleted
//! manifest (a read, then a removal) one step against a push writing the tag in this
//! process: otherwise a push moving the tag in between would be lost (see
//! `Engine::untag_one`).
//!
//! The map only holds names with an operation in flight: a guard's drop removes every
//! entry that nobody holds or awaits any more.

use std::collections::HashMap;
use std::hash::Hash;
use std::sync::{Arc, Mutex, PoisonError};

use tokio::sync::{Mutex as AsyncMutex, OwnedMutexGuard};

use crate::storage::UploadId;

type LockMap<K> = Mutex<HashMap<K, Arc<AsyncMutex<()>>>>;

/// Locks by name (see the module documentation). Clones share the map.
#[derive(Debug)]
pub(crate) struct KeyLocks<K>(Arc<LockMap<K>>);

/// Locks on upload sessions, by id.
pub(crate) type UploadLocks = KeyLocks<UploadId>;
/// Holds an upload session's lock.
pub(crate) type UploadGuard = KeyGuard<UploadId>;

impl<K> Default for KeyLocks<K> {
    fn default() -> Self {
        Self(Arc::default())
    }
}

impl<K> Clone for KeyLocks<K> {
    fn clone(&self) -> Self {
        Self(Arc::clone(&self.0))
    }
}

/// Holds one name's lock until dropped. Owns what it needs (`'static`), so it can be moved
/// into (or shared by) tasks on the blocking pool.
#[derive(Debug)]
pub(crate) struct KeyGuard<K: Hash + Eq> {
    locks: Arc<LockMap<K>>,
    guard: Option<OwnedMutexGuard<()>>,
}

impl<K: Hash + Eq + Clone> KeyLocks<K> {
    /// Waits for the lock of `key`. Cancel-safe: a waiter dropped before it got the lock
    /// leaves no entry behind once the holder is gone.
    pub(crate) async fn lock(&self, key: &K) -> KeyGuard<K> {
        let mutex = {
            let mut map = self.0.lock().unwrap_or_else(PoisonError::into_inner);
            Arc::clone(map.entry(key.clone()).or_default())
        };
        KeyGuard {
            locks: Arc::clone(&self.0),
            guard: Some(mutex.lock_owned().await),
        }
    }

    /// Whether `key`'s lock is held (or awaited) now.
    pub(crate) fn is_held(&self, key: &K) -> bool {
        self.0
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .contains_key(key)
    }

    /// Names in the map (held or awaited), for tests.
    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.0.lock().unwrap_or_else(PoisonError::into_inner).len()
    }
}

impl<K: Hash + Eq> Drop for KeyGuard<K> {
    fn drop(&mut self) {
        let mut map = self.locks.lock().unwrap_or_else(PoisonError::into_inner);
        drop(self.guard.take());
        // Drop every entry nobody holds or awaits any more: this one, and any left by a
        // waiter that was cancelled after its holder had gone (it held the last clone). The
        // map only holds names with an operation in flight, so this stays short.
        map.retain(|_, m| Arc::strong_count(m) > 1);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lock_entries(locks: &UploadLocks) -> usize {
        locks.len()
    }

    /// The lock map only holds sessions with an operation in flight, including after a
    /// waiter is cancelled once its holder is gone.
    #[tokio::test]
    async fn upload_locks_are_released() {
        let locks = UploadLocks::default();
        let (a, b) = (UploadId::generate(), UploadId::generate());
        let held = locks.lock(&a).await;
        let other = locks.lock(&b).await;
        assert_eq!(lock_entries(&locks), 2);
        drop(other);
        assert_eq!(lock_entries(&locks), 1);
        // A waiter, cancelled after the holder released the lock.
        let mut waiter = Box::pin(locks.lock(&a));
        assert!(futures::poll!(waiter.as_mut()).is_pending());
        drop(held);
        drop(waiter);
        // Cleaned up by the next release of any session.
        drop(locks.lock(&b).await);
        assert_eq!(lock_entries(&locks), 0);
        // A waiter cancelled while the holder still holds.
        let held = locks.lock(&a).await;
        let mut waiter = Box::pin(locks.lock(&a));
        assert!(futures::poll!(waiter.as_mut()).is_pending());
        drop(waiter);
        drop(held);
        assert_eq!(lock_entries(&locks), 0);
    }
}
