//! Phase 3: upload sessions idle for longer than the TTL, and upload storage no session owns
//! (see "Upload expiry" in the [`lifecycle`](crate::storage::lifecycle) docs).
//!
//! An expired session loses its record only; its storage is then released with every other
//! upload's storage that no live session owns and that is older than the TTL, so both take
//! one path, and a crash between the two steps leaves storage without a record (released by
//! the next run), never a record without storage.

use std::collections::HashSet;
use std::time::Duration;

use super::run::{REMOVE_BATCH, Run};
use super::walk::RepositoryWalk;
use crate::error::Result;
use crate::storage::UploadId;
use crate::storage::layout;
use crate::storage::lifecycle::LifecycleBackend;

impl<B: LifecycleBackend> Run<'_, B> {
    /// Runs phase 3 with `ttl`.
    pub(super) async fn expire_uploads(&mut self, ttl: Duration) -> Result<()> {
        let mut live = HashSet::new();
        let mut expired = HashSet::new();
        let mut walk = RepositoryWalk::everything(self.engine);
        while let Some(repo) = walk.next().await? {
            let mut records = Vec::new();
            self.scan_all(&layout::upload_states_dir(&repo), |session| {
                let Ok(id) = UploadId::parse(&session.name) else {
                    return;
                };
                if self.older_than(session.modified, ttl) {
                    records.push(layout::upload_state(&repo, &id));
                    expired.insert(id);
                } else {
                    live.insert(id);
                }
            })
            .await?;
            if !self.options.dry_run {
                for batch in records.chunks(REMOVE_BATCH) {
                    self.engine.remove_objects(batch).await?;
                }
            }
        }
        let before = self.now.checked_sub(ttl).unwrap_or(std::time::UNIX_EPOCH);
        let released = self
            .engine
            .backend
            .expire_upload_storage(before, &live, self.options.dry_run)
            .await?;
        let orphans = released
            .uploads
            .iter()
            .filter(|id| !expired.contains(*id))
            .count() as u64;
        self.report.uploads += expired.len() as u64 + orphans + released.anonymous;
        self.report.sessions += expired.len() as u64;
        Ok(())
    }
}
