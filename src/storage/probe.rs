//! A cheap check that the storage answers and accepts writes (or, for a read-only registry,
//! answers reads), for readiness probes.
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

/// How long an object-store driver waits at start for the store to answer its check of the
/// bucket. A store that accepts connections and never answers would otherwise hold the
/// start for the client's attempts and their timeouts (90 s on S3), with no listener and no
/// `/healthz` meanwhile; past this the driver starts not ready, as for a store that cannot
/// be reached, and serves once the store answers.
pub const START_CHECK_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(5);

/// Runs a driver's check of its store at start for at most [`START_CHECK_TIMEOUT`]: one
/// that did not finish by then is a transient error of `driver` (the store is unreachable).
pub async fn at_start<T>(
    driver: &'static str,
    check: impl Future<Output = Result<T>>,
) -> Result<T> {
    tokio::time::timeout(START_CHECK_TIMEOUT, check)
        .await
        .unwrap_or_else(|_| {
            Err(Error::backend_transient(
                driver,
                format!(
                    "the store did not answer within {}s",
                    START_CHECK_TIMEOUT.as_secs()
                ),
            ))
        })
}

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

    /// Looks up a scratch object under `_probe/` that does not exist, writing nothing: the
    /// check of a read-only registry, whose storage may well refuse writes (a read-only
    /// mount, credentials that may only read).
    ///
    /// `Ok` means the backend answered the lookup: the filesystem root can be searched, the
    /// bucket is reachable with the configured credentials. An `Err` is as for
    /// [`probe`](Self::probe).
    fn probe_reads(&self) -> impl Future<Output = Result<()>> + Send;
}

impl<B: Backend> StorageProbe for Engine<B> {
    async fn probe(&self) -> Result<()> {
        let key = layout::probe(&format!("{:032x}", rand::random::<u128>()));
        let backend = self.backend();
        let failed =
            |what: &str, cause: Option<Error>| probe_failure(self.driver_name(), what, cause);
        backend
            .write(&key, Bytes::from_static(PROBE_CONTENT))
            .await
            .map_err(|e| failed("cannot write", Some(e)))?;
        let read = backend.read(&key).await;
        let removed = backend.remove(&key).await;
        match read {
            Ok(Some(bytes)) if bytes == PROBE_CONTENT => {}
            Ok(_) => return Err(failed("what was written does not read back", None)),
            Err(e) => return Err(failed("cannot read", Some(e))),
        }
        removed.map_err(|e| failed("cannot remove", Some(e)))
    }

    async fn probe_reads(&self) -> Result<()> {
        let key = layout::probe(&format!("{:032x}", rand::random::<u128>()));
        self.backend()
            .exists(&key)
            .await
            .map(drop)
            .map_err(|e| probe_failure(self.driver_name(), "cannot read", Some(e)))
    }
}

/// A failed probe: `what` failed, because of `cause`, whose own words (which name no path
/// or object key) are added to the message and which is kept as the source, with its
/// details, for logs. Retryable: the probe is asked again.
fn probe_failure(driver: &'static str, what: &str, cause: Option<Error>) -> Error {
    let message = match &cause {
        Some(Error::Backend { message, .. }) => format!("readiness probe: {what}: {message}"),
        Some(other) => format!("readiness probe: {what}: {other}"),
        None => format!("readiness probe: {what}"),
    };
    Error::Backend {
        driver,
        operation: None,
        key: None,
        message,
        retryable: true,
        source: cause.map(|e| Box::new(e) as Box<dyn std::error::Error + Send + Sync>),
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

    #[test]
    fn a_failure_says_why_and_keeps_the_details_for_logs() {
        let cause =
            Error::backend_detail("s3", "PutObject: HTTP 403", "s3://bucket/prefix/_probe/x");
        let err = probe_failure("s3", "cannot write", Some(cause));
        assert!(err.is_retryable());
        let said = err.to_string();
        assert!(
            said.ends_with("readiness probe: cannot write: PutObject: HTTP 403"),
            "{said}"
        );
        assert!(!said.contains("bucket"), "a detail leaked: {said}");
        let logged = crate::error::ErrorChain(&err).to_string();
        assert!(logged.contains("s3://bucket/prefix/_probe/x"), "{logged}");
    }
}
