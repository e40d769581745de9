//! Per-process serialisation of the operations on one upload session.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};

use crate::storage::UploadId;

/// Serialises the operations that change one upload session (chunk, finish, abort) within
/// this process.
///
/// A session is a read-modify-write of its persisted record around an append to the backend.
/// Two chunks for the same offset running at once would both pass the offset check, the
/// backend would keep the bytes of one while the record kept the offset and hash state of the
/// other, and `finish_upload` would then commit bytes under a digest they do not have. With
/// the lock, the second chunk sees the first one's offset and is refused (`RangeInvalid`).
///
/// Sessions shared by several processes are not serialised by this lock; clients send a
/// session's chunks one at a time (spec "Pushing a blob in chunks"), so this only guards
/// against misbehaving clients hitting the same instance.
#[derive(Debug, Default)]
pub(super) struct UploadLocks(pub(super) Mutex<HashMap<UploadId, Arc<tokio::sync::Mutex<()>>>>);

/// Holds one session's lock; the map entry goes when nobody holds or awaits it any more.
pub(super) struct UploadGuard<'a> {
    locks: &'a UploadLocks,
    guard: Option<tokio::sync::OwnedMutexGuard<()>>,
}

impl UploadLocks {
    pub(super) async fn lock(&self, id: &UploadId) -> UploadGuard<'_> {
        let mutex = {
            let mut map = self.0.lock().unwrap_or_else(PoisonError::into_inner);
            Arc::clone(map.entry(id.clone()).or_default())
        };
        UploadGuard {
            locks: self,
            guard: Some(mutex.lock_owned().await),
        }
    }
}

impl Drop for UploadGuard<'_> {
    fn drop(&mut self) {
        let mut map = self.locks.0.lock().unwrap_or_else(PoisonError::into_inner);
        drop(self.guard.take());
        // Drop every entry nobody holds or awaits any more: this one, and any left by a
        // waiter that was cancelled after its holder had gone (it held the last clone). The
        // map only holds sessions with an operation in flight, so this stays short.
        map.retain(|_, m| Arc::strong_count(m) > 1);
    }
}
