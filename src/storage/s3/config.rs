//! The S3 driver's configuration (`[s3]` in the configuration file, `S3_*` variables),
//! compiled with or without the `s3` feature so that a configuration naming S3 is read and
//! checked either way (and refused with a clear message when the driver is not built in).

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::storage::backend::SizeRange;
use crate::storage::config::{parse_bool, parse_bool_or_auto, parse_u64};
use crate::storage::deadline::{self, RequestTimeout};
use crate::storage::presign;

/// Which request checksums aws-sdk-s3 computes.
///
/// Since aws-sdk-s3 1.69 the SDK adds CRC checksums (and streaming trailers) to every upload
/// by default; several S3-compatible stores reject them (Garage: "Invalid payload
/// signature"). `WhenRequired` sends checksums only where the S3 API demands them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum S3ChecksumPolicy {
    /// The SDK default: checksum every request that supports one (AWS S3).
    WhenSupported,
    /// Only where the API requires it (default for custom endpoints).
    WhenRequired,
}

/// S3 driver parameters (seed §5.1.1).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct S3Config {
    /// Bucket name (required).
    pub bucket: String,
    /// Region; default from the AWS environment, else `us-east-1`.
    #[serde(default)]
    pub region: Option<String>,
    /// Endpoint URL of an S3-compatible store (MinIO, Garage, R2, ...).
    #[serde(default)]
    pub endpoint: Option<String>,
    /// Key prefix under which everything is stored.
    #[serde(default)]
    pub prefix: Option<String>,
    /// Path-style addressing (`endpoint/bucket/key`), needed by most self-hosted stores.
    #[serde(default)]
    pub force_path_style: bool,
    /// Request checksum policy; default `when_required` with a custom endpoint, else
    /// `when_supported`.
    #[serde(default)]
    pub checksum: Option<S3ChecksumPolicy>,
    /// Size of multipart parts in bytes (5 MiB to 5 GiB; default 8 MiB).
    #[serde(default)]
    pub part_size: Option<u64>,
    /// Make every non-final part exactly `part_size` bytes (Cloudflare R2 requires it).
    #[serde(default)]
    pub equal_parts: bool,
    /// Answer blob `GET`s with `307 Temporary Redirect` to a presigned `GetObject` URL, so
    /// pulled bytes never pass through the registry (off by default: see
    /// `docs/drivers.md` for what it costs in spec conformance).
    #[serde(default)]
    pub redirect: bool,
    /// The store's endpoint as clients reach it, to presign redirects for when it differs
    /// from [`endpoint`](Self::endpoint) (the registry's way to the store).
    #[serde(default)]
    pub public_endpoint: Option<String>,
    /// How long a redirect's presigned URL is valid, in seconds (default 1200).
    #[serde(default)]
    pub redirect_expiry_secs: Option<u64>,
    /// Whether the store honours `If-Match` on `PutObject` (AWS S3 since 2024, MinIO, moto):
    /// upload session records are then written conditionally, refusing the second of two
    /// concurrent PATCHes of one session from different processes. Unset: detected when the
    /// driver is built (requests on a scratch object).
    #[serde(default)]
    pub conditional_writes: Option<bool>,
    /// Blobs pushed whole with their size declared (a monolithic push), from one part up to
    /// this many bytes, are stored with one streamed `PutObject` instead of a multipart
    /// upload (one request, nothing for the store to assemble), spilled to a temporary file
    /// (`TMPDIR`) as they pass so that a failed `PutObject` is retried without the client
    /// (default 256 MiB; `0` turns it off). Bounded by S3's 5 GiB for one `PutObject`.
    #[serde(default)]
    pub single_put_limit: Option<u64>,
    /// How long the store may take to answer one request, in seconds (default 30, at most
    /// 3600), plus a second per MiB of request body; a streamed read fails over when the
    /// store sends nothing for this long. An attempt that runs out is sent again like a
    /// failed one (see `docs/drivers.md`, "Store request timeouts").
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request_timeout_secs: Option<u64>,
}

pub use crate::storage::presign::{DEFAULT_REDIRECT_EXPIRY_SECS, MAX_REDIRECT_EXPIRY_SECS};

/// Default multipart part size.
pub const DEFAULT_PART_SIZE: u64 = 8 * 1024 * 1024;
/// S3's minimum size of a non-final part.
pub const MIN_PART_SIZE: u64 = 5 * 1024 * 1024;
/// S3's maximum size of a part.
pub const MAX_PART_SIZE: u64 = 5 * 1024 * 1024 * 1024;

/// Default of [`S3Config::single_put_limit`].
pub const DEFAULT_SINGLE_PUT_LIMIT: u64 = 256 * 1024 * 1024;
/// S3's limit on the size of one `PutObject`.
pub const MAX_SINGLE_PUT: u64 = 5 * 1024 * 1024 * 1024;

/// The environment variables [`S3Config::apply_vars`] reads.
pub const ENV_VARS: [&str; 14] = [
    "S3_BUCKET",
    "S3_REGION",
    "S3_ENDPOINT",
    "S3_PREFIX",
    "S3_FORCE_PATH_STYLE",
    "S3_CHECKSUM",
    "S3_PART_SIZE",
    "S3_EQUAL_PARTS",
    "S3_REDIRECT",
    "S3_PUBLIC_ENDPOINT",
    "S3_REDIRECT_EXPIRY_SECS",
    "S3_CONDITIONAL_WRITES",
    "S3_SINGLE_PUT_LIMIT",
    "S3_REQUEST_TIMEOUT_SECS",
];

impl S3Config {
    /// A configuration for `bucket` with every other setting at its default.
    pub fn new(bucket: impl Into<String>) -> Self {
        Self {
            bucket: bucket.into(),
            region: None,
            endpoint: None,
            prefix: None,
            force_path_style: false,
            checksum: None,
            part_size: None,
            equal_parts: false,
            redirect: false,
            public_endpoint: None,
            redirect_expiry_secs: None,
            conditional_writes: None,
            single_put_limit: None,
            request_timeout_secs: None,
        }
    }

    /// Checks required fields and ranges; the error names the field.
    pub fn validate(&self) -> Result<()> {
        let bad = |field, message: String| Err(Error::Config { field, message });
        if self.bucket.trim().is_empty() {
            return bad("s3.bucket", "a bucket is required".into());
        }
        if let Some(e) = &self.endpoint {
            crate::storage::config::check_endpoint("s3.endpoint", e)?;
        }
        if let Some(e) = &self.public_endpoint {
            crate::storage::config::check_endpoint("s3.public_endpoint", e)?;
        }
        presign::check_redirect_expiry("s3.redirect_expiry_secs", self.redirect_expiry_secs)?;
        if let Some(p) = self.part_size
            && !(MIN_PART_SIZE..=MAX_PART_SIZE).contains(&p)
        {
            return bad(
                "s3.part_size",
                format!("{p} is outside {MIN_PART_SIZE}..={MAX_PART_SIZE}"),
            );
        }
        if let Some(limit) = self.single_put_limit
            && limit > MAX_SINGLE_PUT
        {
            return bad(
                "s3.single_put_limit",
                format!("{limit} is above S3's {MAX_SINGLE_PUT} bytes for one PutObject (0: off)"),
            );
        }
        if let Some(prefix) = &self.prefix
            && prefix.split('/').any(|c| c == ".." || c == ".")
        {
            return bad(
                "s3.prefix",
                format!("{prefix:?} must be a relative key prefix"),
            );
        }
        deadline::validate("s3.request_timeout_secs", self.request_timeout_secs)
    }

    /// The effective checksum policy.
    pub fn checksum_policy(&self) -> S3ChecksumPolicy {
        self.checksum.unwrap_or(if self.endpoint.is_some() {
            S3ChecksumPolicy::WhenRequired
        } else {
            S3ChecksumPolicy::WhenSupported
        })
    }

    /// How long a redirect's presigned URL is valid.
    pub fn redirect_expiry(&self) -> std::time::Duration {
        presign::redirect_expiry(self.redirect_expiry_secs)
    }

    /// The effective [`request_timeout_secs`](Self::request_timeout_secs).
    pub fn request_timeout(&self) -> RequestTimeout {
        RequestTimeout::from_secs(self.request_timeout_secs)
    }

    /// The effective part size.
    pub fn part_size(&self) -> u64 {
        self.part_size.unwrap_or(DEFAULT_PART_SIZE)
    }

    /// The sizes of blob stored with one streamed `PutObject`: from one part to
    /// [`single_put_limit`](Self::single_put_limit); `None` when that is off or below a part.
    pub fn single_put_sizes(&self) -> Option<SizeRange> {
        let max = self.single_put_limit.unwrap_or(DEFAULT_SINGLE_PUT_LIMIT);
        let min = self.part_size();
        (max >= min).then_some(SizeRange { min, max })
    }

    /// The prefix normalised to `""` or `"some/prefix/"`.
    pub fn normalized_prefix(&self) -> String {
        match self.prefix.as_deref().map(|p| p.trim_matches('/')) {
            None | Some("") => String::new(),
            Some(p) => format!("{p}/"),
        }
    }

    /// Reads the [`ENV_VARS`] over `self`; unset variables leave the current values.
    pub fn apply_vars(mut self, var: impl Fn(&str) -> Option<String>) -> Result<Self> {
        if let Some(v) = var("S3_BUCKET") {
            self.bucket = v;
        }
        if let Some(v) = var("S3_REGION") {
            self.region = Some(v);
        }
        if let Some(v) = var("S3_ENDPOINT") {
            self.endpoint = Some(v);
        }
        if let Some(v) = var("S3_PREFIX") {
            self.prefix = Some(v);
        }
        if let Some(v) = var("S3_FORCE_PATH_STYLE") {
            self.force_path_style = parse_bool("S3_FORCE_PATH_STYLE", &v)?;
        }
        if let Some(v) = var("S3_EQUAL_PARTS") {
            self.equal_parts = parse_bool("S3_EQUAL_PARTS", &v)?;
        }
        if let Some(v) = var("S3_REDIRECT") {
            self.redirect = parse_bool("S3_REDIRECT", &v)?;
        }
        if let Some(v) = var("S3_PUBLIC_ENDPOINT") {
            self.public_endpoint = Some(v);
        }
        if let Some(v) = var("S3_REDIRECT_EXPIRY_SECS") {
            self.redirect_expiry_secs = Some(parse_u64("S3_REDIRECT_EXPIRY_SECS", &v)?);
        }
        if let Some(v) = var("S3_CONDITIONAL_WRITES") {
            self.conditional_writes = parse_bool_or_auto("S3_CONDITIONAL_WRITES", &v)?;
        }
        if let Some(v) = var("S3_CHECKSUM") {
            self.checksum = Some(match v.as_str() {
                "when_supported" => S3ChecksumPolicy::WhenSupported,
                "when_required" => S3ChecksumPolicy::WhenRequired,
                other => {
                    return Err(Error::Config {
                        field: "S3_CHECKSUM",
                        message: format!("{other:?} (expected when_supported or when_required)"),
                    });
                }
            });
        }
        if let Some(v) = var("S3_SINGLE_PUT_LIMIT") {
            self.single_put_limit = Some(parse_u64("S3_SINGLE_PUT_LIMIT", &v)?);
        }
        if let Some(v) = var("S3_REQUEST_TIMEOUT_SECS") {
            self.request_timeout_secs = Some(parse_u64("S3_REQUEST_TIMEOUT_SECS", &v)?);
        }
        if let Some(v) = var("S3_PART_SIZE") {
            self.part_size = Some(v.parse().map_err(|_| Error::Config {
                field: "S3_PART_SIZE",
                message: format!("{v:?} is not a number of bytes"),
            })?);
        }
        Ok(self)
    }
}
