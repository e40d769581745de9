//! The `Backend` contract suite (`marina_distribution::storage::testsuite::backend`) on every
//! backend — in memory, filesystem, S3 when `S3_ENDPOINT` is set and GCS when `GCS_ENDPOINT`
//! is set (`scripts/test.sh` starts local servers) — on every layer (instrumented, fault injection with nothing
//! planned, resumable reads), and on the stacks the drivers are assembled from. One
//! `#[tokio::test]` per (backend, case), so a failure names both; and a check that the suite
//! catches a broken backend.

mod common;

use common::suite::{per_case_tests, temporary_directory};
use marina_distribution::error::Result;
use marina_distribution::storage::backend::Backend;
use marina_distribution::storage::filesystem::FilesystemBackend;
use marina_distribution::storage::inmemory::InMemoryBackend;
use marina_distribution::storage::layers::{FaultInjection, Instrumented, Resumable};
use marina_distribution::storage::testsuite::Factory;
use marina_distribution::storage::testsuite::backend::{self, BackendFactory};

/// A fresh in-memory backend per case (not persistent).
struct InMemory;

impl Factory for InMemory {
    type Instance = InMemoryBackend;
    type Storage = ();

    async fn create_storage(&self) -> Result<()> {
        Ok(())
    }

    async fn open(&self, _: &()) -> Result<InMemoryBackend> {
        Ok(InMemoryBackend::default())
    }

    fn persistent(&self) -> bool {
        false
    }
}

/// The filesystem backend on a fresh temporary directory per case.
struct Filesystem;

impl Factory for Filesystem {
    type Instance = FilesystemBackend;
    type Storage = tempfile::TempDir;

    async fn create_storage(&self) -> Result<tempfile::TempDir> {
        temporary_directory()
    }

    async fn open(&self, dir: &tempfile::TempDir) -> Result<FilesystemBackend> {
        FilesystemBackend::open(&dir.path().join("root")).await
    }

    fn persistent(&self) -> bool {
        true
    }
}

/// The backends of factory `F`, each wrapped by `wrap` (a layer, or a stack of them).
struct Wrapped<F, W>(F, W);

impl<F, W, L> Factory for Wrapped<F, W>
where
    F: BackendFactory,
    W: Fn(F::Instance) -> L + Send + Sync,
    L: Backend,
{
    type Instance = L;
    type Storage = F::Storage;

    async fn create_storage(&self) -> Result<F::Storage> {
        self.0.create_storage().await
    }

    async fn open(&self, storage: &F::Storage) -> Result<L> {
        Ok((self.1)(self.0.open(storage).await?))
    }

    fn persistent(&self) -> bool {
        self.0.persistent()
    }
}

#[cfg(feature = "s3")]
mod s3_factory {
    use marina_distribution::storage::S3Config;
    use marina_distribution::storage::s3::S3Backend;

    use super::*;

    /// The S3 backend under a unique key prefix per case, in the bucket of `S3_BUCKET`.
    pub struct S3(S3Config);

    impl S3 {
        /// `None` when `S3_ENDPOINT` is not set.
        pub fn from_env() -> Option<Self> {
            common::suite::s3_config().map(Self)
        }
    }

    impl Factory for S3 {
        type Instance = S3Backend;
        type Storage = S3Config;

        async fn create_storage(&self) -> Result<S3Config> {
            let mut config = self.0.clone();
            config.prefix = Some(common::suite::unique_prefix("contract"));
            // Before connecting, which refuses a missing bucket; an existing one is fine.
            common::server::ensure_bucket(&marina_distribution::StorageConfig::s3(config.clone()))
                .await;
            Ok(config)
        }

        async fn open(&self, config: &S3Config) -> Result<S3Backend> {
            S3Backend::connect(config).await
        }

        fn persistent(&self) -> bool {
            true
        }
    }
}

#[cfg(feature = "gcs")]
use common::gcs as gcs_env;

#[cfg(feature = "gcs")]
mod gcs_factory {
    use marina_distribution::storage::GcsConfig;
    use marina_distribution::storage::gcs::GcsBackend;

    use super::*;

    /// The GCS backend under a unique key prefix per case, with parts of 256 KiB (the
    /// smallest a resumable session takes) so the suite's uploads span several parts.
    pub struct Gcs;

    impl Gcs {
        /// `None` when `GCS_ENDPOINT` is not set.
        pub fn from_env() -> Option<Self> {
            gcs_env::base_config().map(|_| Self)
        }
    }

    impl Factory for Gcs {
        type Instance = GcsBackend;
        type Storage = GcsConfig;

        async fn create_storage(&self) -> Result<GcsConfig> {
            Ok(gcs_env::config("contract", "case").expect("GCS_ENDPOINT is set"))
        }

        async fn open(&self, config: &GcsConfig) -> Result<GcsBackend> {
            common::suite::gcs_backend(config).await
        }

        fn persistent(&self) -> bool {
            true
        }
    }
}

// Backends.
marina_distribution::for_each_backend_contract_case!(per_case_tests!(
    backend,
    inmemory,
    Some(InMemory),
    no
));
marina_distribution::for_each_backend_contract_case!(per_case_tests!(
    backend,
    filesystem,
    Some(Filesystem),
    yes
));
#[cfg(feature = "s3")]
marina_distribution::for_each_backend_contract_case!(per_case_tests!(
    backend,
    s3,
    s3_factory::S3::from_env(),
    yes
));
#[cfg(feature = "gcs")]
marina_distribution::for_each_backend_contract_case!(per_case_tests!(
    backend,
    gcs,
    gcs_factory::Gcs::from_env(),
    yes
));

// Layers, each over the in-memory backend.
marina_distribution::for_each_backend_contract_case!(per_case_tests!(
    backend,
    instrumented,
    Some(Wrapped(InMemory, Instrumented::new)),
    no
));
marina_distribution::for_each_backend_contract_case!(per_case_tests!(
    backend,
    fault_injection_passes_through,
    Some(Wrapped(InMemory, FaultInjection::new)),
    no
));
marina_distribution::for_each_backend_contract_case!(per_case_tests!(
    backend,
    resumable,
    Some(Wrapped(InMemory, Resumable::new)),
    no
));

// The stacks the drivers are assembled from (`FilesystemDriver`, `S3Driver`, `GcsDriver`).
marina_distribution::for_each_backend_contract_case!(per_case_tests!(
    backend,
    filesystem_driver_stack,
    Some(Wrapped(Filesystem, Instrumented::new)),
    yes
));
#[cfg(feature = "s3")]
marina_distribution::for_each_backend_contract_case!(per_case_tests!(
    backend,
    s3_driver_stack,
    s3_factory::S3::from_env().map(|s3| Wrapped(s3, |b| Instrumented::new(Resumable::new(b)))),
    yes
));
#[cfg(feature = "gcs")]
marina_distribution::for_each_backend_contract_case!(per_case_tests!(
    backend,
    gcs_driver_stack,
    gcs_factory::Gcs::from_env().map(|gcs| Wrapped(gcs, |b| Instrumented::new(Resumable::new(b)))),
    yes
));

/// The suite catches a broken backend and names the clause: listings in descending order
/// fail the listing cases, and only those.
mod suite_catches_broken_backends {
    use common::suite::{DescendingListing, panic_message};

    use super::*;

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn run_all_names_the_broken_clause() {
        let broken = Wrapped(InMemory, DescendingListing);
        let message =
            panic_message(tokio::spawn(async move { backend::run_all(&broken).await })).await;
        assert!(
            message.contains("contract case `contract_listing` failed"),
            "message does not name the case: {message}"
        );
        assert!(
            message.contains("contract case `contract_listing_pages` failed"),
            "{message}"
        );
        assert!(
            message.starts_with("2 contract case(s) failed"),
            "cases the defect does not touch were reported: {message}"
        );
    }

    /// And `run_all` passes on a sound backend (what a third-party backend calls).
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn run_all_passes_on_a_sound_backend() {
        backend::run_all(&InMemory).await;
    }
}
