//! Phase 3: upload sessions idle for longer than the TTL, and upload storage no session owns
//! (see "Upload expiry" in the [`lifecycle`](crate::storage::lifecycle) docs).
//!
//! An expired session loses its record only; its storage is then released with every other
//! upload's storage that no live session owns and that is older than the TTL, so both take
//! one path, and a crash between the two steps leaves storage without a record (released by
//! the next run), never a record without storage.

use std::collections::HashSet;
use std::time::Duration;

use futures::TryStreamExt;

use super::run::{REMOVE_BATCH, Run};
use super::walk::visit_repositories;
use crate::error::Result;
use crate::oci::RepositoryName;
use crate::storage::UploadId;
use crate::storage::layout::{self, Key};
use crate::storage::lifecycle::LifecycleBackend;

impl<B: LifecycleBackend> Run<'_, B> {
    /// Runs phase 3 with `ttl`.
    pub(super) async fn expire_uploads(&self, ttl: Duration) -> Result<()> {
        let mut live = HashSet::new();
        let mut expired = HashSet::new();
        {
            let found = visit_repositories(self.engine, |repo| self.sessions_in(repo, ttl));
            let mut found = std::pin::pin!(found);
            while let Some(sessions) = found.try_next().await? {
                if !self.options.dry_run {
                    for batch in sessions.expired_records.chunks(REMOVE_BATCH) {
                        self.engine.remove_objects(batch).await?;
                    }
                }
                live.extend(sessions.live);
                expired.extend(sessions.expired);
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
        self.count(|r| {
            r.uploads += expired.len() as u64 + orphans + released.anonymous;
            r.sessions += expired.len() as u64;
        });
        Ok(())
    }

    /// The upload sessions of `repo`, and which are idle longer than `ttl`.
    async fn sessions_in(&self, repo: RepositoryName, ttl: Duration) -> Result<Sessions> {
        let mut sessions = Sessions::default();
        self.scan_all(&layout::upload_states_dir(&repo), |session| {
            let Ok(id) = UploadId::parse(&session.name) else {
                return;
            };
            if self.older_than(session.modified, ttl) {
                sessions
                    .expired_records
                    .push(layout::upload_state(&repo, &id));
                sessions.expired.push(id);
            } else {
                sessions.live.push(id);
            }
        })
        .await?;
        Ok(sessions)
    }
}

/// The upload sessions of one repository.
#[derive(Default)]
struct Sessions {
    /// Idle longer than the TTL.
    expired: Vec<UploadId>,
    /// Their records.
    expired_records: Vec<Key>,
    /// Used within the TTL.
    live: Vec<UploadId>,
}
