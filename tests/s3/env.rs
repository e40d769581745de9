//! The S3 server under test: its configuration from the environment, drivers and backends
//! on a fresh prefix of it, and skipping a test when no server is configured.

use marina_distribution::storage::s3::{S3Backend, S3Driver};
use marina_distribution::storage::{CacheConfig, EngineOptions, S3Config, StorageConfig};

pub(crate) const MIB: usize = 1024 * 1024;
/// Part size used by the tests: S3's minimum, so multi-part cases stay small.
pub(crate) const PART: usize = 5 * MIB;

/// The server under test, or a return from the test after saying it was skipped.
macro_rules! s3_or_skip {
    ($name:expr) => {
        match $crate::env::S3Env::from_env() {
            Some(env) => env,
            None => {
                $crate::env::skipped($name);
                return;
            }
        }
    };
}
pub(crate) use s3_or_skip;

/// Says that a test did not run. Written to the process's stderr directly (not through
/// `eprintln!`, which the test harness captures) so a plain `cargo test` shows it.
pub(crate) fn skipped(test: &str) {
    use std::io::Write;
    let _ = writeln!(
        std::io::stderr(),
        "S3 tests skipped: S3_ENDPOINT not set; run scripts/test.sh to start a local S3 server \
         ({test} not run)"
    );
}

/// The S3 server under test, from the variables the registry itself reads
/// (`StorageConfig::apply_env`: `S3_ENDPOINT`, `S3_BUCKET`, `S3_REGION`, ...).
pub(crate) struct S3Env {
    base: S3Config,
    region: String,
}

impl S3Env {
    pub(crate) fn from_env() -> Option<Self> {
        std::env::var("S3_ENDPOINT")
            .ok()
            .filter(|v| !v.is_empty())?;
        let base = StorageConfig::default()
            .apply_env()
            .expect("S3_* environment variables")
            .s3
            .expect("S3_ENDPOINT is set");
        let region = base.region.clone().unwrap_or_else(|| "us-east-1".into());
        Some(Self { base, region })
    }

    /// A configuration under a fresh prefix.
    pub(crate) fn config(&self, test: &str) -> S3Config {
        let mut c = self.base.clone();
        c.region = Some(self.region.clone());
        c.prefix = Some(format!("test-{test}-{:016x}/", rand_u64()));
        c.part_size = Some(PART as u64);
        c
    }

    /// A driver on a fresh prefix (bucket created if missing).
    pub(crate) async fn driver(&self, test: &str) -> S3Driver {
        let config = self.config(test);
        self.driver_for(&config).await
    }

    pub(crate) async fn driver_for(&self, config: &S3Config) -> S3Driver {
        S3Driver::from_backend(self.backend(config).await, EngineOptions::default())
    }

    /// A driver on `config` whose metadata cache keeps entries `ttl_ms`.
    pub(crate) async fn driver_with_ttl(&self, config: &S3Config, ttl_ms: u64) -> S3Driver {
        let options = EngineOptions {
            cache: CacheConfig {
                ttl_ms,
                ..CacheConfig::default()
            },
            ..EngineOptions::default()
        };
        S3Driver::from_backend(self.backend(config).await, options)
    }

    /// A backend on `config`, its bucket created first (connecting checks it).
    pub(crate) async fn backend(&self, config: &S3Config) -> S3Backend {
        let sdk = aws_config::load_defaults(aws_config::BehaviorVersion::latest()).await;
        ensure_bucket(
            &S3Backend::connect_with(config, &sdk).expect("config"),
            &self.region,
        )
        .await;
        S3Backend::connect(config).await.expect("connect")
    }
}

pub(crate) fn rand_u64() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos(),
    );
    h.finish()
}

async fn ensure_bucket(backend: &S3Backend, region: &str) {
    let client = backend.client();
    if client
        .head_bucket()
        .bucket(backend.bucket())
        .send()
        .await
        .is_ok()
    {
        return;
    }
    let mut req = client.create_bucket().bucket(backend.bucket());
    if region != "us-east-1" {
        req = req.create_bucket_configuration(
            aws_sdk_s3::types::CreateBucketConfiguration::builder()
                .location_constraint(aws_sdk_s3::types::BucketLocationConstraint::from(region))
                .build(),
        );
    }
    if let Err(e) = req.send().await {
        let code = aws_sdk_s3::error::ProvideErrorMetadata::code(&e).unwrap_or_default();
        assert!(
            code == "BucketAlreadyOwnedByYou" || code == "BucketAlreadyExists",
            "creating bucket: {}",
            aws_sdk_s3::error::DisplayErrorContext(&e)
        );
    }
}
