//! Client setup: an aws-sdk-s3 [`Client`] from an [`S3Config`].
//!
//! - Credentials: the AWS SDK default chain only (`AWS_ACCESS_KEY_ID`/`AWS_SECRET_ACCESS_KEY`,
//!   shared config and credentials files, SSO, web identity, ECS/EC2 instance roles).
//! - Region: `S3Config::region`, else the SDK's region chain (`AWS_REGION`, profile), else
//!   `us-east-1` (S3-compatible stores mostly ignore it, but SigV4 needs one).
//! - Endpoint and path-style addressing for S3-compatible stores.
//! - Checksums: with [`S3ChecksumPolicy::WhenRequired`] (the default for custom endpoints)
//!   the SDK neither adds request checksums (and their streaming trailers) nor validates
//!   response checksums unless an operation requires it; aws-sdk-s3 ≥ 1.69 otherwise adds
//!   CRC32 everywhere, which Garage and other stores reject.
//! - Retries: the SDK's standard retry policy (3 attempts, exponential backoff with jitter,
//!   throttling and transient errors retried).

use aws_config::{BehaviorVersion, SdkConfig};
use aws_sdk_s3::Client;
use aws_sdk_s3::config::retry::RetryConfig;
use aws_sdk_s3::config::{Region, RequestChecksumCalculation, ResponseChecksumValidation};

use crate::storage::{S3ChecksumPolicy, S3Config};

/// Region used when neither the configuration nor the environment names one.
pub(crate) const DEFAULT_REGION: &str = "us-east-1";

/// Builds the client from the SDK's default configuration chain. Does not contact the store.
pub(crate) async fn build(config: &S3Config) -> Client {
    let mut loader = aws_config::defaults(BehaviorVersion::latest());
    if let Some(region) = &config.region {
        loader = loader.region(Region::new(region.clone()));
    }
    build_with(config, &loader.load().await)
}

/// Builds the client from an SDK configuration loaded by the caller (credentials, HTTP
/// client, ...), with the settings of `config` applied over it.
pub(crate) fn build_with(config: &S3Config, shared: &SdkConfig) -> Client {
    let region = config
        .region
        .clone()
        .map(Region::new)
        .or_else(|| shared.region().cloned())
        .unwrap_or_else(|| Region::new(DEFAULT_REGION));
    let mut builder = aws_sdk_s3::config::Builder::from(shared)
        .region(region)
        .force_path_style(config.force_path_style)
        .retry_config(RetryConfig::standard());
    if let Some(endpoint) = &config.endpoint {
        builder = builder.endpoint_url(endpoint);
    }
    if config.checksum_policy() == S3ChecksumPolicy::WhenRequired {
        builder = builder
            .request_checksum_calculation(RequestChecksumCalculation::WhenRequired)
            .response_checksum_validation(ResponseChecksumValidation::WhenRequired);
    }
    Client::from_conf(builder.build())
}
