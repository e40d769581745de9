//! The factories of the drivers that need no server: the filesystem driver (with and without
//! its metadata cache) and `AnyDriver` over memory and the filesystem, each on fresh storage
//! per case.

use marina_distribution::error::Result;
use marina_distribution::storage::filesystem::FilesystemDriver;
use marina_distribution::storage::testsuite::{
    DriverFactory, Factory, configured_config, configured_options,
};
use marina_distribution::storage::{
    AnyDriver, CacheConfig, EngineOptions, FilesystemConfig, StorageConfig,
};

use crate::common::suite::temporary_directory;

/// The filesystem driver on a fresh temporary directory per case.
pub(crate) struct FilesystemFactory;

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
    async fn open_configured(&self, dir: &tempfile::TempDir) -> Result<FilesystemDriver> {
        Self::open_with(dir, configured_options()).await
    }
}

/// The filesystem driver with the metadata cache on (it is off there by default): every case,
/// reopening ones included, holds with reads answered from the cache.
pub(crate) struct CachedFilesystemFactory;

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
    async fn open_configured(&self, dir: &tempfile::TempDir) -> Result<FilesystemDriver> {
        let options = EngineOptions {
            cache: CacheConfig::on(),
            ..configured_options()
        };
        FilesystemFactory::open_with(dir, options).await
    }
}

/// `AnyDriver` built by the factory from `StorageConfig::inmemory()`.
pub(crate) struct AnyInMemoryFactory;

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
    async fn open_configured(&self, _: &()) -> Result<AnyDriver> {
        AnyDriver::from_config(&configured_config(StorageConfig::inmemory())).await
    }
}

/// `AnyDriver` built by the factory from `StorageConfig::filesystem(dir)`.
pub(crate) struct AnyFilesystemFactory;

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
    async fn open_configured(&self, dir: &tempfile::TempDir) -> Result<AnyDriver> {
        let config = StorageConfig::filesystem(dir.path().join("root"));
        AnyDriver::from_config(&configured_config(config)).await
    }
}
