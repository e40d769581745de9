//! The GCS driver's factories: the driver itself, with small parts, and `AnyDriver` built
//! from the same configuration, each under a unique key prefix per case (when
//! `GCS_ENDPOINT` is set).

use marina_distribution::error::Result;
use marina_distribution::storage::gcs::GcsDriver;
use marina_distribution::storage::testsuite::{
    DriverFactory, Factory, configured_config, configured_options,
};
use marina_distribution::storage::{AnyDriver, EngineOptions, GcsConfig, StorageConfig};

use crate::common;
use crate::common::gcs as gcs_env;

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
    async fn open_configured(&self, config: &GcsConfig) -> Result<GcsDriver> {
        let backend = common::suite::gcs_backend(config).await?;
        Ok(GcsDriver::from_backend(backend, configured_options()))
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
    async fn open_configured(&self, config: &GcsConfig) -> Result<AnyDriver> {
        AnyDriver::from_config(&configured_config(StorageConfig::gcs(config.clone()))).await
    }
}
