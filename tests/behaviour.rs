//! The behaviour suite (`marina_distribution::storage::testsuite`) against every driver: the
//! in-memory and filesystem drivers, directly and through `AnyDriver`, the S3 driver when
//! `S3_ENDPOINT` is set and the GCS driver when `GCS_ENDPOINT` is set (`scripts/test.sh`
//! starts local servers and sets them).
//!
//! One `#[tokio::test]` per (driver, case), so a failure names both.
//!
//! The factories live in `tests/behaviour/`: [`local_factories`] (memory and the filesystem,
//! and the sparse-index options all factories use), [`s3_factory`] and [`gcs_factory`]; so
//! do the checks beyond the generated cases: [`suite_catches_broken_drivers`] and
//! [`leftovers`] (no upload data left behind).

mod common;

// The modules live in `tests/behaviour/` (a crate root's `mod x;` would look for
// `tests/x.rs`).
#[cfg(feature = "gcs")]
#[path = "behaviour/gcs_factory.rs"]
mod gcs_factory;
#[path = "behaviour/local_factories.rs"]
mod local_factories;
#[cfg(feature = "s3")]
#[path = "behaviour/s3_factory.rs"]
mod s3_factory;

#[path = "behaviour/leftovers.rs"]
mod leftovers;
#[path = "behaviour/suite_catches_broken_drivers.rs"]
mod suite_catches_broken_drivers;

use common::suite::per_case_tests;
use local_factories::{
    AnyFilesystemFactory, AnyInMemoryFactory, CachedFilesystemFactory, FilesystemFactory,
};
use marina_distribution::storage::testsuite::{self, InMemoryFactory};

marina_distribution::for_each_behaviour_case!(per_case_tests!(
    testsuite,
    inmemory,
    Some(InMemoryFactory),
    no
));
marina_distribution::for_each_behaviour_case!(per_case_tests!(
    testsuite,
    filesystem,
    Some(FilesystemFactory),
    yes
));
marina_distribution::for_each_behaviour_case!(per_case_tests!(
    testsuite,
    filesystem_cached,
    Some(CachedFilesystemFactory),
    yes
));
marina_distribution::for_each_behaviour_case!(per_case_tests!(
    testsuite,
    any_inmemory,
    Some(AnyInMemoryFactory),
    no
));
marina_distribution::for_each_behaviour_case!(per_case_tests!(
    testsuite,
    any_filesystem,
    Some(AnyFilesystemFactory),
    yes
));
#[cfg(feature = "s3")]
marina_distribution::for_each_behaviour_case!(per_case_tests!(
    testsuite,
    s3,
    s3_factory::S3Factory::from_env(),
    yes
));
#[cfg(feature = "s3")]
marina_distribution::for_each_behaviour_case!(per_case_tests!(
    testsuite,
    any_s3,
    s3_factory::S3Factory::from_env().map(s3_factory::AnyS3Factory),
    yes
));

#[cfg(feature = "gcs")]
marina_distribution::for_each_behaviour_case!(per_case_tests!(
    testsuite,
    gcs,
    gcs_factory::GcsFactory::from_env(),
    yes
));
#[cfg(feature = "gcs")]
marina_distribution::for_each_behaviour_case!(per_case_tests!(
    testsuite,
    any_gcs,
    gcs_factory::GcsFactory::from_env().map(|_| gcs_factory::AnyGcsFactory),
    yes
));

// The lifecycle cases (garbage collection, upload expiry, the catalog, sparse indexes), on
// the same drivers.
marina_distribution::for_each_lifecycle_case!(per_case_tests!(
    testsuite,
    lifecycle_inmemory,
    Some(InMemoryFactory),
    no
));
marina_distribution::for_each_lifecycle_case!(per_case_tests!(
    testsuite,
    lifecycle_filesystem,
    Some(FilesystemFactory),
    yes
));
marina_distribution::for_each_lifecycle_case!(per_case_tests!(
    testsuite,
    lifecycle_cached_filesystem,
    Some(CachedFilesystemFactory),
    yes
));
marina_distribution::for_each_lifecycle_case!(per_case_tests!(
    testsuite,
    lifecycle_any_inmemory,
    Some(AnyInMemoryFactory),
    no
));
marina_distribution::for_each_lifecycle_case!(per_case_tests!(
    testsuite,
    lifecycle_any_filesystem,
    Some(AnyFilesystemFactory),
    yes
));
#[cfg(feature = "s3")]
marina_distribution::for_each_lifecycle_case!(per_case_tests!(
    testsuite,
    lifecycle_s3,
    s3_factory::S3Factory::from_env(),
    yes
));
#[cfg(feature = "s3")]
marina_distribution::for_each_lifecycle_case!(per_case_tests!(
    testsuite,
    lifecycle_any_s3,
    s3_factory::S3Factory::from_env().map(s3_factory::AnyS3Factory),
    yes
));
#[cfg(feature = "gcs")]
marina_distribution::for_each_lifecycle_case!(per_case_tests!(
    testsuite,
    lifecycle_gcs,
    gcs_factory::GcsFactory::from_env(),
    yes
));
#[cfg(feature = "gcs")]
marina_distribution::for_each_lifecycle_case!(per_case_tests!(
    testsuite,
    lifecycle_any_gcs,
    gcs_factory::GcsFactory::from_env().map(|_| gcs_factory::AnyGcsFactory),
    yes
));

/// `run_all` itself: every case in one go against the in-memory driver (what a third-party
/// driver would call), and it reports the failing case by name.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn run_all_inmemory() {
    testsuite::run_all(&InMemoryFactory).await;
}
