//! The engine's side of the storage lifecycle ([`Lifecycle`]), written once for every
//! backend: the collection's phases (`untagged`, `sweep`, `broken`, `expiry`) run by `run`, the
//! repository walk (`walk`), the condemned sets (`condemned`) and the push side of the
//! protocol (`guard`). The protocol and its argument are in the
//! [`lifecycle`](crate::storage::lifecycle) docs.

mod audit;
mod broken;
pub(super) mod condemned;
mod expiry;
mod guard;
pub(crate) mod lease;
mod manifest_ttl;
mod run;
mod sweep;
mod untagged;
mod walk;

#[cfg(test)]
mod tests;

use std::collections::HashSet;
use std::time::{Duration, SystemTime};

use run::Run;

use crate::error::Result;
use crate::storage::engine::Engine;
use crate::storage::lifecycle::{GcOptions, GcReport, Lifecycle, LifecycleBackend, RepositoryList};

/// Temporary files younger than this may belong to a write in progress: tidying spares them.
const TIDY_MIN_AGE: Duration = Duration::from_secs(3600);

impl<B: LifecycleBackend> Lifecycle for Engine<B> {
    async fn collect_garbage(&self, options: &GcOptions) -> Result<GcReport> {
        let run = Run::new(self, options.clone());
        run.remove_stale_sets().await?;
        let mut gone = if options.delete_untagged || options.manifest_ttl.is_some() {
            run.delete_untagged().await?
        } else {
            HashSet::new()
        };
        let hints = run.sweep_blobs(&gone).await?;
        run.delete_broken(&hints, &mut gone).await?;
        if let Some(ttl) = options.upload_ttl {
            run.expire_uploads(ttl).await?;
        }
        let age = options.grace.max(TIDY_MIN_AGE);
        let before = run.now.checked_sub(age).unwrap_or(SystemTime::UNIX_EPOCH);
        let tidied = self.backend.tidy(before, options.dry_run).await?;
        if tidied > 0 {
            tracing::debug!(driver = B::NAME, entries = tidied, "tidied the storage");
        }
        let report = run.finish();
        tracing::debug!(driver = B::NAME, dry_run = report.dry_run, "{report}");
        Ok(report)
    }

    async fn expire_uploads(&self, ttl: Duration, dry_run: bool) -> Result<GcReport> {
        let options = GcOptions {
            dry_run,
            upload_ttl: Some(ttl),
            ..GcOptions::default()
        };
        let run = Run::new(self, options);
        run.expire_uploads(ttl).await?;
        Ok(run.finish())
    }

    async fn repositories(&self, n: Option<usize>, last: Option<&str>) -> Result<RepositoryList> {
        self.repository_list(n, last).await
    }

    fn stop_collections(&self) {
        self.collections_stopped
            .store(true, std::sync::atomic::Ordering::Relaxed);
    }
}

impl<B: LifecycleBackend> Engine<B> {
    /// Removes metadata objects in a batch and drops what this process's metadata cache
    /// holds about them (other processes see the removal within the cache's TTL).
    pub(super) async fn remove_objects(&self, keys: &[crate::storage::layout::Key]) -> Result<()> {
        let removed = self.backend.remove_objects(keys).await;
        // Also after a failed removal, part of which may have happened anyway.
        for key in keys {
            self.forget(key);
        }
        removed
    }
}
