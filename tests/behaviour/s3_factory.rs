//! The S3 driver's factories: the driver itself, with the smallest parts, and `AnyDriver`
//! built from the same configuration, each under a unique key prefix per case (when
//! `S3_ENDPOINT` is set).

use marina_distribution::error::Result;
use marina_distribution::storage::config::MIN_PART_SIZE;
use marina_distribution::storage::s3::S3Driver;
use marina_distribution::storage::testsuite::{
    DriverFactory, Factory, configured_config, configured_options,
};
use marina_distribution::storage::{AnyDriver, EngineOptions, S3Config, StorageConfig};

use crate::common;

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
    async fn open_configured(&self, config: &S3Config) -> Result<S3Driver> {
        S3Driver::connect(config, configured_options()).await
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
    async fn open_configured(&self, config: &S3Config) -> Result<AnyDriver> {
        AnyDriver::from_config(&configured_config(StorageConfig::s3(config.clone()))).await
    }
}
