//! Client setup: an aws-sdk-s3 [`Client`] from an [`S3Config`].
//!
//! - Credentials: the AWS SDK default chain only (`AWS_ACCESS_KEY_ID`/`AWS_SECRET_ACCESS_KEY`,
//!   shared config and credentials files, SSO, web identity, ECS/EC2 instance roles).
//! - Region: `S3Config::region`, else the SDK's region chain (`AWS_REGION`, profile, and on
//!   AWS the EC2 instance's), else `us-east-1` (S3-compatible stores mostly ignore it, but
//!   SigV4 needs one). With a custom endpoint the instance metadata service is not asked:
//!   the store's region is never the instance's, and the question cost a second or more at
//!   every start, with warnings, wherever there is no such service.
//! - Endpoint and path-style addressing for S3-compatible stores.
//! - Checksums: with [`S3ChecksumPolicy::WhenRequired`] (the default for custom endpoints)
//!   the SDK neither adds request checksums (and their streaming trailers) nor validates
//!   response checksums unless an operation requires it; aws-sdk-s3 ≥ 1.69 otherwise adds
//!   CRC32 everywhere, which Garage and other stores reject.
//! - Retries: the SDK's standard retry policy (3 attempts, exponential backoff with jitter,
//!   throttling and transient errors retried).
//! - Timeouts: each attempt must be answered within [`S3Config::request_timeout`] (the SDK's
//!   attempt timeout, a transient error it retries); requests with a body get a second per
//!   MiB more, and the streamed first attempt of a monolithic push none (`attempt_limit`;
//!   see [`deadline`](crate::storage::deadline)).
//! - Payload signing: parts and bodies above 64 KiB are hashed into the signature only over
//!   plain HTTP (`signs_payloads`); a blob's bytes stored whole are signed with their sha256
//!   digest instead, hashed by nobody but the store (`KnownPayloadHash`).
//! - TLS: the SDK's rustls client trusts the system's roots; a store whose certificate comes
//!   from a private CA is trusted through `SSL_CERT_FILE` or `SSL_CERT_DIR` (read by
//!   `rustls-native-certs` when the first client is built).
//! - Metrics: every attempt after a request's first is counted (`CountRetries`).

use aws_config::environment::EnvironmentVariableRegionProvider;
use aws_config::meta::region::RegionProviderChain;
use aws_config::profile::ProfileFileRegionProvider;
use aws_config::{BehaviorVersion, SdkConfig};
use aws_sdk_s3::Client;
use aws_sdk_s3::config::retry::RetryConfig;
use aws_sdk_s3::config::timeout::TimeoutConfig;
use aws_sdk_s3::config::{Region, RequestChecksumCalculation, ResponseChecksumValidation};

use aws_runtime::auth::PayloadSigningOverride;
use aws_smithy_runtime_api::box_error::BoxError;
use aws_smithy_runtime_api::client::interceptors::Intercept;
use aws_smithy_runtime_api::client::interceptors::context::{
    BeforeTransmitInterceptorContextMut, BeforeTransmitInterceptorContextRef,
};
use aws_smithy_runtime_api::client::retries::RequestAttempts;
use aws_smithy_runtime_api::client::runtime_components::RuntimeComponents;
use aws_smithy_types::config_bag::ConfigBag;

use crate::observe::metrics::RetryCounter;
use crate::oci::{Digest, DigestAlgorithm};
use crate::storage::{S3ChecksumPolicy, S3Config};

/// Region used when neither the configuration nor the environment names one.
pub(crate) const DEFAULT_REGION: &str = "us-east-1";

/// Builds the client from the SDK's default configuration chain. Does not contact the store.
pub(crate) async fn build(config: &S3Config) -> Client {
    let mut loader = aws_config::defaults(BehaviorVersion::latest());
    if let Some(region) = &config.region {
        loader = loader.region(Region::new(region.clone()));
    } else if config.endpoint.is_some() {
        loader = loader.region(
            RegionProviderChain::first_try(EnvironmentVariableRegionProvider::new())
                .or_else(ProfileFileRegionProvider::new())
                .or_else(DEFAULT_REGION),
        );
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
        .retry_config(RetryConfig::standard())
        .timeout_config(
            TimeoutConfig::builder()
                .operation_attempt_timeout(config.request_timeout().answer())
                .build(),
        );
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

/// Whether `UploadPart` bodies and `PutObject` bodies above 64 KiB are hashed into
/// their SigV4 signature (`x-amz-content-sha256`): only when the store is reached over plain
/// HTTP, where nothing else protects them in transit. Over HTTPS (AWS, or a custom endpoint
/// with `https://`), TLS protects them, the engine hashes every blob byte anyway to verify its
/// digest, and a signed payload would hash each byte a second time before the request can
/// start (the SDK signs in-memory bodies by default); they are sent `UNSIGNED-PAYLOAD`. (A
/// blob stored whole is signed with its digest either way: [`KnownPayloadHash`].)
pub(super) fn signs_payloads(config: &S3Config) -> bool {
    config
        .endpoint
        .as_deref()
        .is_some_and(|endpoint| endpoint.starts_with("http://"))
}

/// The configuration override that gives each attempt of one request `limit` instead of the
/// client's attempt timeout (`None`: no limit, for a body whose pace is a client's), keeping
/// the client's other timeouts. For `customize().config_override(…)`.
pub(super) fn attempt_limit(
    client: &Client,
    limit: Option<std::time::Duration>,
) -> aws_sdk_s3::config::Builder {
    let timeouts = client
        .config()
        .timeout_config()
        .cloned()
        .unwrap_or_else(TimeoutConfig::disabled)
        .to_builder();
    let timeouts = match limit {
        Some(limit) => timeouts.operation_attempt_timeout(limit),
        None => timeouts.disable_operation_attempt_timeout(),
    };
    aws_sdk_s3::config::Builder::default().timeout_config(timeouts.build())
}

/// The SDK interceptor that counts the attempts it makes after a request's first (its own
/// retries: throttling, 5xx, broken or unanswered connections).
#[derive(Debug)]
pub(super) struct CountRetries(RetryCounter);

impl Intercept for CountRetries {
    fn name(&self) -> &'static str {
        "marina::CountRetries"
    }

    fn read_before_attempt(
        &self,
        _context: &BeforeTransmitInterceptorContextRef<'_>,
        _runtime_components: &RuntimeComponents,
        cfg: &mut ConfigBag,
    ) -> Result<(), BoxError> {
        if cfg
            .load::<RequestAttempts>()
            .is_some_and(|attempts| attempts.attempts() > 1)
        {
            self.0.count();
        }
        Ok(())
    }
}

/// `client` with [`CountRetries`] into `retries` (the same connections and settings).
pub(super) fn counting_retries(client: &Client, retries: RetryCounter) -> Client {
    Client::from_conf(
        client
            .config()
            .to_builder()
            .interceptor(CountRetries(retries))
            .build(),
    )
}

/// Signs a request with a body whose SHA-256 is known ahead (lowercase hex) as the
/// payload's hash, though the body is streamed; the store verifies it. Replaces the
/// client's `UNSIGNED-PAYLOAD`, and leaves the signing of a body the SDK sends with a
/// checksum trailer (`aws-chunked`) as the SDK set it.
#[derive(Debug)]
pub(super) struct KnownPayloadHash(String);

impl KnownPayloadHash {
    /// The hash of the bytes of blob `digest`, for a sha256 digest.
    pub(super) fn of(digest: &Digest) -> Option<Self> {
        (digest.algorithm() == DigestAlgorithm::Sha256).then(|| Self(digest.hex().to_owned()))
    }
}

impl Intercept for KnownPayloadHash {
    fn name(&self) -> &'static str {
        "marina::KnownPayloadHash"
    }

    fn modify_before_signing(
        &self,
        _context: &mut BeforeTransmitInterceptorContextMut<'_>,
        _runtime_components: &RuntimeComponents,
        cfg: &mut ConfigBag,
    ) -> Result<(), BoxError> {
        let trailer = matches!(
            cfg.load::<PayloadSigningOverride>(),
            Some(
                PayloadSigningOverride::StreamingUnsignedPayloadTrailer
                    | PayloadSigningOverride::StreamingSignedPayloadTrailer
            )
        );
        if !trailer {
            cfg.interceptor_state()
                .store_put(PayloadSigningOverride::Precomputed(self.0.clone()));
        }
        Ok(())
    }
}
