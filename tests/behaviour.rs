//! The behaviour suite (`marina_distribution::storage::testsuite`) against every driver: the
//! in-memory and filesystem drivers, directly and through `AnyDriver`, the S3 driver when
//! `S3_ENDPOINT` is set and the GCS driver when `GCS_ENDPOINT` is set (`scripts/test.sh`
//! starts local servers and sets them).
//!
//! One `#[tokio::test]` per (driver, case), so a failure names both.

mod common;

#[cfg(feature = "gcs")]
use common::gcs as gcs_env;
use common::suite::{per_case_tests, temporary_directory};
use marina_distribution::error::Result;
use marina_distribution::storage::filesystem::FilesystemDriver;
use marina_distribution::storage::testsuite::{self, DriverFactory, Factory, InMemoryFactory};
use marina_distribution::storage::{
    AnyDriver, CacheConfig, EngineOptions, FilesystemConfig, StorageConfig,
};

/// Engine options accepting sparse indexes.
fn sparse() -> EngineOptions {
    EngineOptions {
        sparse_indexes: true,
        ..EngineOptions::default()
    }
}

/// A storage configuration accepting sparse indexes.
fn sparse_config(mut config: StorageConfig) -> StorageConfig {
    config.sparse_indexes = true;
    config
}

/// The filesystem driver on a fresh temporary directory per case.
struct FilesystemFactory;

impl FilesystemFactory {
    /// The driver on `dir` with `options`.
    async fn open_with(
        dir: &tempfile::TempDir,
        options: EngineOptions,
    ) -> Result<FilesystemDriver> {
        let config = FilesystemConfig {
            root_directory: dir.path().join("root"),
        };
        FilesystemDriver::open(&config, options).await
    }
}

impl Factory for FilesystemFactory {
    type Instance = FilesystemDriver;
    type Storage = tempfile::TempDir;

    async fn create_storage(&self) -> Result<tempfile::TempDir> {
        temporary_directory()
    }

    async fn open(&self, dir: &tempfile::TempDir) -> Result<FilesystemDriver> {
        Self::open_with(dir, EngineOptions::default()).await
    }

    fn persistent(&self) -> bool {
        true
    }
}

impl DriverFactory for FilesystemFactory {
    async fn open_sparse(&self, dir: &tempfile::TempDir) -> Result<FilesystemDriver> {
        Self::open_with(dir, sparse()).await
    }
}

/// The filesystem driver with the metadata cache on (it is off there by default): every case,
/// reopening ones included, holds with reads answered from the cache.
struct CachedFilesystemFactory;

impl Factory for CachedFilesystemFactory {
    type Instance = FilesystemDriver;
    type Storage = tempfile::TempDir;

    async fn create_storage(&self) -> Result<tempfile::TempDir> {
        temporary_directory()
    }

    async fn open(&self, dir: &tempfile::TempDir) -> Result<FilesystemDriver> {
        let options = EngineOptions {
            cache: CacheConfig::on(),
            ..EngineOptions::default()
        };
        let driver = FilesystemFactory::open_with(dir, options).await?;
        assert!(driver.cache().is_some());
        Ok(driver)
    }

    fn persistent(&self) -> bool {
        true
    }
}

impl DriverFactory for CachedFilesystemFactory {
    async fn open_sparse(&self, dir: &tempfile::TempDir) -> Result<FilesystemDriver> {
        let options = EngineOptions {
            cache: CacheConfig::on(),
            ..sparse()
        };
        FilesystemFactory::open_with(dir, options).await
    }
}

/// `AnyDriver` built by the factory from `StorageConfig::inmemory()`.
struct AnyInMemoryFactory;

impl Factory for AnyInMemoryFactory {
    type Instance = AnyDriver;
    type Storage = ();

    async fn create_storage(&self) -> Result<()> {
        Ok(())
    }

    async fn open(&self, _: &()) -> Result<AnyDriver> {
        AnyDriver::from_config(&StorageConfig::inmemory()).await
    }

    fn persistent(&self) -> bool {
        false
    }
}

impl DriverFactory for AnyInMemoryFactory {
    async fn open_sparse(&self, _: &()) -> Result<AnyDriver> {
        AnyDriver::from_config(&sparse_config(StorageConfig::inmemory())).await
    }
}

/// `AnyDriver` built by the factory from `StorageConfig::filesystem(dir)`.
struct AnyFilesystemFactory;

impl Factory for AnyFilesystemFactory {
    type Instance = AnyDriver;
    type Storage = tempfile::TempDir;

    async fn create_storage(&self) -> Result<tempfile::TempDir> {
        temporary_directory()
    }

    async fn open(&self, dir: &tempfile::TempDir) -> Result<AnyDriver> {
        AnyDriver::from_config(&StorageConfig::filesystem(dir.path().join("root"))).await
    }

    fn persistent(&self) -> bool {
        true
    }
}

impl DriverFactory for AnyFilesystemFactory {
    async fn open_sparse(&self, dir: &tempfile::TempDir) -> Result<AnyDriver> {
        let config = StorageConfig::filesystem(dir.path().join("root"));
        AnyDriver::from_config(&sparse_config(config)).await
    }
}

#[cfg(feature = "s3")]
mod s3_factory {
    use super::*;
    use marina_distribution::storage::S3Config;
    use marina_distribution::storage::config::MIN_PART_SIZE;
    use marina_distribution::storage::s3::S3Driver;

    /// The S3 driver under a unique key prefix per case, in the bucket named by `S3_BUCKET`.
    pub struct S3Factory {
        config: S3Config,
    }

    impl S3Factory {
        /// `None` when `S3_ENDPOINT` is not set.
        pub fn from_env() -> Option<Self> {
            let mut config = common::suite::s3_config()?;
            // Smallest parts, so the suite's multi-MiB blobs span several parts.
            config.part_size = Some(MIN_PART_SIZE);
            Some(Self { config })
        }

        /// A driver-independent client on the same endpoint, region and credentials.
        pub async fn client(&self) -> aws_sdk_s3::Client {
            let mut loader = aws_config::defaults(aws_config::BehaviorVersion::latest()).region(
                aws_config::Region::new(self.config.region.clone().unwrap_or_default()),
            );
            if let Some(e) = &self.config.endpoint {
                loader = loader.endpoint_url(e);
            }
            let sdk = loader.load().await;
            aws_sdk_s3::Client::from_conf(
                aws_sdk_s3::config::Builder::from(&sdk)
                    .force_path_style(self.config.force_path_style)
                    .build(),
            )
        }
    }

    impl Factory for S3Factory {
        type Instance = S3Driver;
        type Storage = S3Config;

        async fn create_storage(&self) -> Result<S3Config> {
            let mut config = self.config.clone();
            config.prefix = Some(common::suite::unique_prefix("behaviour"));
            // Before connecting, which refuses a missing bucket; an existing one is fine.
            common::server::ensure_bucket(&StorageConfig::s3(config.clone())).await;
            Ok(config)
        }

        async fn open(&self, config: &S3Config) -> Result<S3Driver> {
            S3Driver::connect(config, EngineOptions::default()).await
        }

        fn persistent(&self) -> bool {
            true
        }
    }

    impl DriverFactory for S3Factory {
        async fn open_sparse(&self, config: &S3Config) -> Result<S3Driver> {
            S3Driver::connect(config, sparse()).await
        }
    }

    /// `AnyDriver` built by the factory from `StorageConfig::s3(..)`, same storage as above.
    pub struct AnyS3Factory(pub S3Factory);

    impl Factory for AnyS3Factory {
        type Instance = AnyDriver;
        type Storage = S3Config;

        async fn create_storage(&self) -> Result<S3Config> {
            self.0.create_storage().await
        }

        async fn open(&self, config: &S3Config) -> Result<AnyDriver> {
            AnyDriver::from_config(&StorageConfig::s3(config.clone())).await
        }

        fn persistent(&self) -> bool {
            true
        }
    }

    impl DriverFactory for AnyS3Factory {
        async fn open_sparse(&self, config: &S3Config) -> Result<AnyDriver> {
            AnyDriver::from_config(&sparse_config(StorageConfig::s3(config.clone()))).await
        }
    }
}

#[cfg(feature = "gcs")]
mod gcs_factory {
    use super::*;
    use marina_distribution::storage::GcsConfig;
    use marina_distribution::storage::gcs::GcsDriver;

    /// The GCS driver under a unique key prefix per case, with small parts
    /// ([`common::suite::gcs_backend`]).
    pub struct GcsFactory;

    impl GcsFactory {
        /// `None` when `GCS_ENDPOINT` is not set.
        pub fn from_env() -> Option<Self> {
            gcs_env::base_config().map(|_| Self)
        }
    }

    impl Factory for GcsFactory {
        type Instance = GcsDriver;
        type Storage = GcsConfig;

        async fn create_storage(&self) -> Result<GcsConfig> {
            Ok(gcs_env::config("behaviour", "case").expect("GCS_ENDPOINT is set"))
        }

        async fn open(&self, config: &GcsConfig) -> Result<GcsDriver> {
            let backend = common::suite::gcs_backend(config).await?;
            Ok(GcsDriver::from_backend(backend, EngineOptions::default()))
        }

        fn persistent(&self) -> bool {
            true
        }
    }

    impl DriverFactory for GcsFactory {
        async fn open_sparse(&self, config: &GcsConfig) -> Result<GcsDriver> {
            let backend = common::suite::gcs_backend(config).await?;
            Ok(GcsDriver::from_backend(backend, sparse()))
        }
    }

    /// `AnyDriver` built by the factory from `StorageConfig::gcs(..)` (default part size).
    pub struct AnyGcsFactory;

    impl Factory for AnyGcsFactory {
        type Instance = AnyDriver;
        type Storage = GcsConfig;

        async fn create_storage(&self) -> Result<GcsConfig> {
            GcsFactory.create_storage().await
        }

        async fn open(&self, config: &GcsConfig) -> Result<AnyDriver> {
            AnyDriver::from_config(&StorageConfig::gcs(config.clone())).await
        }

        fn persistent(&self) -> bool {
            true
        }
    }

    impl DriverFactory for AnyGcsFactory {
        async fn open_sparse(&self, config: &GcsConfig) -> Result<AnyDriver> {
            AnyDriver::from_config(&sparse_config(StorageConfig::gcs(config.clone()))).await
        }
    }
}

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

/// The suite catches a broken driver and names the failing case: the in-memory backend with
/// its listings in descending order (a contract violation) must fail the tag cases, by name.
mod suite_catches_broken_drivers {
    use common::suite::{DescendingListing, panic_message};
    use marina_distribution::storage::Engine;

    use super::*;

    struct BrokenFactory;

    impl Factory for BrokenFactory {
        type Instance = Engine<DescendingListing>;
        type Storage = ();

        async fn create_storage(&self) -> Result<()> {
            Ok(())
        }
        async fn open(&self, _: &()) -> Result<Engine<DescendingListing>> {
            Ok(Engine::new(
                DescendingListing::default(),
                EngineOptions::default(),
            ))
        }
        fn persistent(&self) -> bool {
            false
        }
    }

    impl DriverFactory for BrokenFactory {
        async fn open_sparse(&self, _: &()) -> Result<Engine<DescendingListing>> {
            Ok(Engine::new(DescendingListing::default(), sparse()))
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn run_all_names_the_failing_cases() {
        let message = panic_message(tokio::spawn(async {
            testsuite::run_all(&BrokenFactory).await
        }))
        .await;
        assert!(
            message.contains("behaviour case `tags_sorted_and_paginated` failed"),
            "message does not name the case: {message}"
        );
        assert!(
            !message.contains("`blob_put_get_stat_delete`"),
            "a case the defect does not touch was reported: {message}"
        );
    }
}

/// Storage-level checks the generic suite cannot make: failed, aborted and finished uploads
/// (and failed monolithic pushes) leave no upload data or session state behind.
mod leftovers {
    use bytes::Bytes;
    use futures::stream;
    use marina_distribution::oci::{Digest, DigestAlgorithm, RepositoryName};
    use marina_distribution::storage::{StorageDriver, UploadHandle};

    use super::*;

    fn files_under(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
        let mut out = Vec::new();
        let Ok(entries) = std::fs::read_dir(dir) else {
            return out;
        };
        for entry in entries.flatten() {
            let path = entry.path();
            if path.is_dir() {
                out.extend(files_under(&path));
            } else {
                out.push(path);
            }
        }
        out
    }

    fn body(data: &[u8]) -> impl futures::Stream<Item = Result<Bytes>> + Send + use<> {
        stream::iter(vec![Ok(Bytes::copy_from_slice(data))])
    }

    /// Runs uploads that fail, abort, finish and deduplicate; returns the one blob's digest.
    pub(crate) async fn upload_scenario<D: StorageDriver>(d: &D) -> Digest {
        let r = RepositoryName::parse("suite/leftovers").unwrap();
        // Over two 5 MiB parts, so object stores open multipart uploads.
        let content = b"some bytes to upload".repeat(550_000);
        let digest = Digest::compute(DigestAlgorithm::Sha256, &content);
        let wrong = Digest::compute(DigestAlgorithm::Sha256, b"wrong");
        let mib = 1024 * 1024;

        // Finished with the wrong digest.
        let id = d
            .start_upload(&r, DigestAlgorithm::Sha256)
            .await
            .unwrap()
            .id();
        d.put_upload_chunk(&r, &id, None, None, body(&content[..6 * mib]))
            .await
            .unwrap();
        assert!(
            d.finish_upload(&r, &id, &wrong, None, body(&content[6 * mib..]))
                .await
                .is_err()
        );
        // Aborted.
        let id = d
            .start_upload(&r, DigestAlgorithm::Sha256)
            .await
            .unwrap()
            .id();
        d.put_upload_chunk(&r, &id, None, None, body(&content))
            .await
            .unwrap();
        d.abort_upload(&r, &id).await.unwrap();
        // Failed monolithic pushes (digest, then size).
        assert!(
            d.put_content(&r, &wrong, None, body(&content))
                .await
                .is_err()
        );
        assert!(
            d.put_content(&r, &digest, Some(1), body(&content))
                .await
                .is_err()
        );
        // Finished, twice (the second one deduplicated), and pushed again.
        for _ in 0..2 {
            let id = d
                .start_upload(&r, DigestAlgorithm::Sha256)
                .await
                .unwrap()
                .id();
            d.put_upload_chunk(&r, &id, None, None, body(&content[..7 * mib]))
                .await
                .unwrap();
            d.finish_upload(&r, &id, &digest, None, body(&content[7 * mib..]))
                .await
                .unwrap();
        }
        d.put_content(&r, &digest, None, body(&content))
            .await
            .unwrap();
        digest
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn no_upload_data_left_behind() {
        let dir = FilesystemFactory.create_storage().await.unwrap();
        let d = FilesystemFactory.open(&dir).await.unwrap();
        let digest = upload_scenario(&d).await;

        let root = dir.path().join("root");
        let leftovers: Vec<_> = files_under(&root.join("uploads"))
            .into_iter()
            .chain(files_under(
                &root.join("repositories/suite/leftovers/_uploads"),
            ))
            .collect();
        assert!(
            leftovers.is_empty(),
            "upload data left behind: {leftovers:?}"
        );
        // Exactly one blob stored: the right one.
        let blobs = files_under(&root.join("blobs"));
        assert_eq!(blobs.len(), 1, "blobs stored: {blobs:?}");
        assert!(blobs[0].ends_with(digest.hex()));
    }

    /// Same on S3: no object under `uploads/` or `_uploads/`, no multipart upload left open,
    /// exactly one blob object.
    #[cfg(feature = "s3")]
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn s3_no_upload_data_left_behind() {
        let Some(factory) = s3_factory::S3Factory::from_env() else {
            return;
        };
        let config = factory.create_storage().await.unwrap();
        let d = factory.open(&config).await.unwrap();
        let digest = upload_scenario(&d).await;

        let client = factory.client().await;
        let prefix = config.normalized_prefix();
        let keys = |sub: &str| {
            let (client, bucket, p) = (
                client.clone(),
                config.bucket.clone(),
                format!("{prefix}{sub}"),
            );
            async move {
                let out = client
                    .list_objects_v2()
                    .bucket(bucket)
                    .prefix(p)
                    .send()
                    .await
                    .expect("list objects");
                out.contents()
                    .iter()
                    .filter_map(|o| o.key().map(str::to_owned))
                    .collect::<Vec<_>>()
            }
        };
        let leftovers: Vec<String> = [
            keys("uploads/").await,
            keys("repositories/suite/leftovers/_uploads/").await,
        ]
        .concat();
        assert!(
            leftovers.is_empty(),
            "upload objects left behind: {leftovers:?}"
        );
        let blobs = keys("blobs/").await;
        assert_eq!(blobs, [format!("{prefix}blobs/sha256/{}", digest.hex())]);
        let open = client
            .list_multipart_uploads()
            .bucket(&config.bucket)
            .prefix(&prefix)
            .send()
            .await
            .expect("list multipart uploads");
        let open: Vec<_> = open
            .uploads()
            .iter()
            .map(|u| u.key().unwrap_or_default().to_owned())
            .collect();
        assert!(open.is_empty(), "multipart uploads left open: {open:?}");
    }

    /// Same on GCS: no object under `uploads/` or `_uploads/`, exactly one blob object.
    #[cfg(feature = "gcs")]
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn gcs_no_upload_data_left_behind() {
        let Some(factory) = gcs_factory::GcsFactory::from_env() else {
            return;
        };
        let config = factory.create_storage().await.unwrap();
        let d = factory.open(&config).await.unwrap();
        let digest = upload_scenario(&d).await;

        let prefix = config.normalized_prefix();
        let mut leftovers = gcs_env::objects_below(&config, &format!("{prefix}uploads/")).await;
        leftovers.extend(
            gcs_env::objects_below(
                &config,
                &format!("{prefix}repositories/suite/leftovers/_uploads/"),
            )
            .await,
        );
        assert!(
            leftovers.is_empty(),
            "upload objects left behind: {leftovers:?}"
        );
        let blobs = gcs_env::objects_below(&config, &format!("{prefix}blobs/")).await;
        assert_eq!(blobs, [format!("{prefix}blobs/sha256/{}", digest.hex())]);
    }
}
