//! What the two suites' test files share: `tests/behaviour.rs` runs the behaviour suite
//! (`storage::testsuite`) on every driver, `tests/backend_contract.rs` the `Backend` contract
//! suite (`storage::testsuite::backend`) on every backend and layer. Both generate one test
//! per (factory, case) with [`per_case_tests!`], open their factories' storage with the
//! helpers here, and check that their suite catches [`DescendingListing`].

use std::sync::atomic::{AtomicU64, Ordering};

use marina_distribution::error::{Error, Result};
use marina_distribution::storage::backend::Backend;
use marina_distribution::storage::inmemory::InMemoryBackend;
use marina_distribution::storage::layout::Dir;

/// Generates `mod $module` with one `#[tokio::test]` per case of a suite, for the factory
/// `$factory` (an expression of type `Option<impl Factory>`; `None` skips the tests), the
/// `reopen` cases only if `$reopen` is `yes`. `$suite` names the module holding the cases
/// (`testsuite`, `backend`); the case lists come from the suite's `for_each_…_case!`:
///
/// ```text
/// for_each_behaviour_case!(per_case_tests!(testsuite, inmemory, Some(InMemoryFactory), no));
/// ```
macro_rules! per_case_tests {
    ($suite:ident, $module:ident, $factory:expr, $reopen:ident;
     $($case:ident),* ; reopen: $($rcase:ident),*) => {
        mod $module {
            #[allow(unused_imports)]
            use super::*;
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $case() {
                    let Some(factory) = $factory else { return };
                    $suite::$case(&factory).await;
                }
            )*
            $crate::common::suite::per_case_tests!(@reopen $reopen, $suite, $factory; $($rcase),*);
        }
    };
    (@reopen yes, $suite:ident, $factory:expr; $($rcase:ident),*) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $rcase() {
                let Some(factory) = $factory else { return };
                $suite::$rcase(&factory).await;
            }
        )*
    };
    (@reopen no, $suite:ident, $factory:expr; $($rcase:ident),*) => {};
}
#[allow(unused_imports)]
pub(crate) use per_case_tests;

/// A fresh temporary directory: a filesystem factory's storage for one case.
pub fn temporary_directory() -> Result<tempfile::TempDir> {
    tempfile::tempdir().map_err(|e| Error::io("filesystem", "creating a temporary directory", e))
}

/// A key prefix no other case uses, `<area>/<pid>-<time>-<n>`: an object store factory's
/// storage for one case.
pub fn unique_prefix(area: &str) -> String {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    format!(
        "{area}/{}-{nanos}-{}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    )
}

/// The S3 configuration from the variables the registry itself reads
/// (`StorageConfig::apply_env`), or `None` (after saying so once, on the real stderr) when
/// `S3_ENDPOINT` is not set.
#[cfg(feature = "s3")]
pub fn s3_config() -> Option<marina_distribution::storage::S3Config> {
    if std::env::var("S3_ENDPOINT").is_err() {
        static SAID: std::sync::Once = std::sync::Once::new();
        SAID.call_once(|| {
            use std::io::Write as _;
            // Written to the real stderr, not the test harness's captured output.
            let _ = writeln!(
                std::io::stderr(),
                "S3 suite cases skipped: set S3_ENDPOINT (scripts/test.sh starts a local server)"
            );
        });
        return None;
    }
    let config = marina_distribution::StorageConfig::default()
        .apply_env()
        .expect("S3_* environment variables")
        .s3
        .expect("S3_ENDPOINT is set");
    Some(config)
}

/// The GCS backend on `config`, with parts of 256 KiB (the smallest a resumable session
/// takes) so that the suites' blobs span several parts.
#[cfg(feature = "gcs")]
pub async fn gcs_backend(
    config: &marina_distribution::storage::GcsConfig,
) -> Result<marina_distribution::storage::gcs::GcsBackend> {
    Ok(
        marina_distribution::storage::gcs::GcsBackend::connect(config)
            .await?
            .with_part_size(256 * 1024),
    )
}

/// A broken backend: the in-memory one with its listings in descending order (a contract
/// violation), which each suite must catch and name the cases it fails.
#[derive(Debug, Default)]
pub struct DescendingListing(pub InMemoryBackend);

#[deny(clippy::missing_trait_methods)]
impl Backend for DescendingListing {
    const NAME: &'static str = "descending";
    marina_distribution::forward_backend!(0: InMemoryBackend;
        Reader, UploadState, capabilities, locate, read, exists, write, stage_record, remove,
        read_versioned, write_if_version, remove_if_version,
        any_under, write_tag, create_tag, blob_size, read_blob, put_blob, start_upload, append_upload,
        finish_upload, abort_upload, lock_upload, lock_tag);

    async fn list(
        &self,
        dir: &Dir,
        start_after: Option<&str>,
        limit: Option<usize>,
    ) -> Result<Vec<String>> {
        let mut names = self.0.list(dir, start_after, limit).await?;
        names.reverse();
        Ok(names)
    }
}

/// The message of the panic a suite's `run_all`, spawned as a task, must end with (and the
/// test fails if it did not panic).
pub async fn panic_message(run_all: tokio::task::JoinHandle<()>) -> String {
    let panic = run_all
        .await
        .expect_err("run_all must fail on a broken backend")
        .into_panic();
    panic.downcast_ref::<String>().cloned().unwrap_or_default()
}
