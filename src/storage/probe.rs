//! A cheap check that the storage answers and accepts writes, for readiness probes.
//!
//! Kept apart from [`StorageDriver`], which holds the OCI
//! operations only: this is an operational question about the backend, implemented once for
//! every [`Engine`] on top of the [`Backend`] primitives, and for
//! [`AnyDriver`](crate::storage::AnyDriver) by dispatch (beside its driver list, so that a new
//! driver needs nothing here).

use std::future::Future;

use bytes::Bytes;

use crate::error::{Error, Result};
use crate::storage::backend::Backend;
use crate::storage::{Engine, StorageDriver, layout};

/// What a probe writes and expects to read back.
const PROBE_CONTENT: &[u8] = b"marina readiness probe\n";

/// Checks that a storage is usable right now.
pub trait StorageProbe: Send + Sync {
    /// Writes a small scratch object under `_probe/`, reads it back and removes it.
    ///
    /// `Ok` means the backend answered and accepted a write: the filesystem root is
    /// writable, the bucket is reachable with the configured credentials. An `Err` names
    /// the driver and what failed, without paths or object keys.
    fn probe(&self) -> impl Future<Output = Result<()>> + Send;
}

impl<B: Backend> StorageProbe for Engine<B> {
    async fn probe(&self) -> Result<()> {
        let key = layout::probe(&format!("{:032x}", rand::random::<u128>()));
        let backend = self.backend();
        let failed = |what: &str| {
            Error::backend_transient(self.driver_name(), format!("readiness probe: {what}"))
        };
        backend
            .write(&key, Bytes::from_static(PROBE_CONTENT))
            .await
            .map_err(|_| failed("cannot write"))?;
        let read = backend.read(&key).await;
        let removed = backend.remove(&key).await;
        match read {
            Ok(Some(bytes)) if bytes == PROBE_CONTENT => {}
            Ok(_) => return Err(failed("what was written does not read back")),
            Err(_) => return Err(failed("cannot read")),
        }
        removed.map_err(|_| failed("cannot remove"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::StorageConfig;
    use crate::storage::AnyDriver;

    #[tokio::test]
    async fn probe_writes_reads_and_removes_its_object() {
        let dir = tempfile::tempdir().unwrap();
        let driver = AnyDriver::from_config(&StorageConfig::filesystem(dir.path()))
            .await
            .unwrap();
        driver.probe().await.unwrap();
        let probe_dir = dir.path().join("_probe");
        let left: Vec<_> = std::fs::read_dir(&probe_dir)
            .map(|entries| entries.collect())
            .unwrap_or_default();
        assert!(left.is_empty(), "probe objects left behind: {left:?}");
        let memory = AnyDriver::from_config(&StorageConfig::inmemory())
            .await
            .unwrap();
        memory.probe().await.unwrap();
    }
}
