//! GCS driver parameters: TOML `[storage.gcs]` and the `GCS_*` environment variables.
//!
//! Compiled with or without the `gcs` feature, so a configuration naming the driver parses
//! (and the factory then says that the driver is not compiled in). Credentials never live
//! here: the driver uses Application Default Credentials, or none with `anonymous`.

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::storage::config::{parse_bool, parse_u64};
use crate::storage::deadline::{self, RequestTimeout};
use crate::storage::presign;

/// The environment variables [`GcsConfig::apply_vars`] reads.
pub const ENV_VARS: [&str; 8] = [
    "GCS_BUCKET",
    "GCS_PREFIX",
    "GCS_ENDPOINT",
    "GCS_ANONYMOUS",
    "GCS_REDIRECT",
    "GCS_REDIRECT_EXPIRY_SECS",
    "GCS_SINGLE_PUT_LIMIT",
    "GCS_REQUEST_TIMEOUT_SECS",
];

/// GCS driver parameters.
///
/// ```toml
/// [storage.gcs]
/// bucket = "registry"                  # required
/// prefix = "marina"                    # optional key prefix
/// endpoint = "http://127.0.0.1:4443"   # emulators and private endpoints
/// anonymous = true                     # no credentials (emulators)
/// redirect = true                      # blob GETs: 307 to V4 signed URLs
/// redirect_expiry_secs = 1200          # how long such a URL is valid
/// single_put_limit = 268435456         # monolithic pushes up to this size: one request
/// request_timeout_secs = 30            # how long one store request may go unanswered
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GcsConfig {
    /// Bucket name (required).
    pub bucket: String,
    /// Key prefix under which everything is stored.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prefix: Option<String>,
    /// Endpoint URL (scheme, host and port) of an emulator or a private endpoint; default
    /// `https://storage.googleapis.com`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub endpoint: Option<String>,
    /// Send no credentials (emulators). Otherwise Application Default Credentials are used:
    /// `GOOGLE_APPLICATION_CREDENTIALS`, the gcloud user credentials file, workload identity
    /// or the metadata server.
    #[serde(default)]
    pub anonymous: bool,
    /// Answer blob `GET`s with `307 Temporary Redirect` to a V4 signed URL of the blob's
    /// object, so pulled bytes never pass through the registry (off by default: see
    /// `docs/drivers.md` for what it costs in spec conformance). Signing needs a
    /// service-account key (the credentials file's).
    #[serde(default)]
    pub redirect: bool,
    /// How long a redirect's signed URL is valid, in seconds (default 1200, at most 7 days).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub redirect_expiry_secs: Option<u64>,
    /// Monolithic pushes whose length is declared, from one part up to this many bytes, are
    /// stored with one streamed media upload instead of a resumable session of one request
    /// per part; their bytes are copied to a temporary file (`TMPDIR`) as they pass so that
    /// a failed upload is sent again without the client (default 256 MiB; `0` turns it off).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub single_put_limit: Option<u64>,
    /// How long the store may take to answer one request, in seconds (default 30, at most
    /// 3600), plus a second per MiB of request body; a streamed read fails over when the
    /// store sends nothing for this long. An attempt that runs out is sent again like a
    /// failed one (see `docs/drivers.md`, "Store request timeouts").
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request_timeout_secs: Option<u64>,
}

/// The endpoint of Google Cloud Storage itself.
pub const DEFAULT_ENDPOINT: &str = "https://storage.googleapis.com";

/// Default of [`GcsConfig::single_put_limit`].
pub const DEFAULT_SINGLE_PUT_LIMIT: u64 = 256 * 1024 * 1024;
/// GCS's limit on the size of one object, and so of one media upload.
pub const MAX_SINGLE_PUT: u64 = 5 * 1024 * 1024 * 1024 * 1024;

impl GcsConfig {
    /// A configuration for `bucket` with every other setting at its default.
    pub fn new(bucket: impl Into<String>) -> Self {
        Self {
            bucket: bucket.into(),
            prefix: None,
            endpoint: None,
            anonymous: false,
            redirect: false,
            redirect_expiry_secs: None,
            single_put_limit: None,
            request_timeout_secs: None,
        }
    }

    /// Checks required fields and their shapes; the error names the field.
    pub fn validate(&self) -> Result<()> {
        let bad = |field, message: String| Err(Error::Config { field, message });
        let bucket = self.bucket.as_str();
        if bucket.trim().is_empty() {
            return bad("gcs.bucket", "a bucket is required".into());
        }
        // GCS bucket names: 3 to 222 characters of lowercase letters, digits, `-`, `_` and
        // `.`, starting and ending with a letter or digit.
        let valid_chars = bucket
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"-_.".contains(&b));
        let alnum_ends = [bucket.as_bytes()[0], bucket.as_bytes()[bucket.len() - 1]]
            .iter()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit());
        if !(3..=222).contains(&bucket.len()) || !valid_chars || !alnum_ends {
            return bad(
                "gcs.bucket",
                format!("{bucket:?} is not a valid bucket name"),
            );
        }
        if let Some(e) = &self.endpoint {
            crate::storage::config::check_endpoint("gcs.endpoint", e)?;
        }
        if let Some(prefix) = &self.prefix
            && prefix.split('/').any(|c| c == ".." || c == ".")
        {
            return bad(
                "gcs.prefix",
                format!("{prefix:?} must be a relative key prefix"),
            );
        }
        if let Some(limit) = self.single_put_limit
            && limit > MAX_SINGLE_PUT
        {
            return bad(
                "gcs.single_put_limit",
                format!("{limit} is above GCS's {MAX_SINGLE_PUT} bytes for one object (0: off)"),
            );
        }
        deadline::validate("gcs.request_timeout_secs", self.request_timeout_secs)?;
        presign::check_redirect_expiry("gcs.redirect_expiry_secs", self.redirect_expiry_secs)
    }

    /// The effective [`single_put_limit`](Self::single_put_limit): `0` when off.
    pub fn single_put_limit(&self) -> u64 {
        self.single_put_limit.unwrap_or(DEFAULT_SINGLE_PUT_LIMIT)
    }

    /// How long a redirect's signed URL is valid.
    pub fn redirect_expiry(&self) -> std::time::Duration {
        presign::redirect_expiry(self.redirect_expiry_secs)
    }

    /// The effective [`request_timeout_secs`](Self::request_timeout_secs).
    pub fn request_timeout(&self) -> RequestTimeout {
        RequestTimeout::from_secs(self.request_timeout_secs)
    }

    /// The endpoint without a trailing `/`.
    pub fn endpoint(&self) -> &str {
        self.endpoint
            .as_deref()
            .unwrap_or(DEFAULT_ENDPOINT)
            .trim_end_matches('/')
    }

    /// The prefix normalised to `""` or `"some/prefix/"`.
    pub fn normalized_prefix(&self) -> String {
        match self.prefix.as_deref().map(|p| p.trim_matches('/')) {
            None | Some("") => String::new(),
            Some(p) => format!("{p}/"),
        }
    }

    /// Applies the [`ENV_VARS`] from `var` over `self`; unset variables leave the current
    /// values.
    pub fn apply_vars(mut self, var: impl Fn(&str) -> Option<String>) -> Result<Self> {
        if let Some(v) = var("GCS_BUCKET") {
            self.bucket = v;
        }
        if let Some(v) = var("GCS_PREFIX") {
            self.prefix = Some(v);
        }
        if let Some(v) = var("GCS_ENDPOINT") {
            self.endpoint = Some(v);
        }
        if let Some(v) = var("GCS_ANONYMOUS") {
            self.anonymous = parse_bool("GCS_ANONYMOUS", &v)?;
        }
        if let Some(v) = var("GCS_REDIRECT") {
            self.redirect = parse_bool("GCS_REDIRECT", &v)?;
        }
        if let Some(v) = var("GCS_REDIRECT_EXPIRY_SECS") {
            self.redirect_expiry_secs = Some(parse_u64("GCS_REDIRECT_EXPIRY_SECS", &v)?);
        }
        if let Some(v) = var("GCS_SINGLE_PUT_LIMIT") {
            self.single_put_limit = Some(parse_u64("GCS_SINGLE_PUT_LIMIT", &v)?);
        }
        if let Some(v) = var("GCS_REQUEST_TIMEOUT_SECS") {
            self.request_timeout_secs = Some(parse_u64("GCS_REQUEST_TIMEOUT_SECS", &v)?);
        }
        Ok(self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::storage::StorageConfig;

    #[test]
    fn validation_names_the_field() {
        let field = |c: &GcsConfig| match c.validate() {
            Err(Error::Config { field, .. }) => Some(field),
            _ => None,
        };
        assert_eq!(field(&GcsConfig::new("marina-test")), None);
        assert_eq!(field(&GcsConfig::new("")), Some("gcs.bucket"));
        assert_eq!(field(&GcsConfig::new("Upper")), Some("gcs.bucket"));
        assert_eq!(field(&GcsConfig::new("ab")), Some("gcs.bucket"));
        assert_eq!(field(&GcsConfig::new("-ab")), Some("gcs.bucket"));
        let mut c = GcsConfig::new("bucket");
        c.endpoint = Some("127.0.0.1:4443".into());
        assert_eq!(field(&c), Some("gcs.endpoint"));
        c.endpoint = Some("http://127.0.0.1:4443/".into());
        assert_eq!(c.endpoint(), "http://127.0.0.1:4443");
        c.prefix = Some("a/../b".into());
        assert_eq!(field(&c), Some("gcs.prefix"));
        c.prefix = Some("/reg/".into());
        assert_eq!(c.normalized_prefix(), "reg/");
        assert_eq!(GcsConfig::new("b").endpoint(), DEFAULT_ENDPOINT);
        let mut huge = GcsConfig::new("bucket");
        huge.single_put_limit = Some(MAX_SINGLE_PUT + 1);
        assert_eq!(field(&huge), Some("gcs.single_put_limit"));
        huge.single_put_limit = Some(MAX_SINGLE_PUT);
        assert_eq!(field(&huge), None);
        let mut hasty = GcsConfig::new("bucket");
        hasty.request_timeout_secs = Some(0);
        assert_eq!(field(&hasty), Some("gcs.request_timeout_secs"));
    }

    #[test]
    fn environment() {
        let vars = |pairs: &'static [(&'static str, &'static str)]| {
            move |k: &str| {
                pairs
                    .iter()
                    .find(|(name, _)| *name == k)
                    .map(|(_, v)| v.to_string())
            }
        };
        let none = StorageConfig::default()
            .apply_vars(vars(&[("S3_BUCKET", "x")]))
            .unwrap();
        assert_eq!(none.gcs, None);
        let config = StorageConfig::default()
            .apply_vars(vars(&[
                ("STORAGE_TYPE", "gcs"),
                ("GCS_BUCKET", "reg"),
                ("GCS_PREFIX", "p"),
                ("GCS_ENDPOINT", "http://127.0.0.1:1"),
                ("GCS_ANONYMOUS", "true"),
                ("GCS_REDIRECT", "true"),
                ("GCS_REDIRECT_EXPIRY_SECS", "60"),
                ("GCS_SINGLE_PUT_LIMIT", "0"),
                ("GCS_REQUEST_TIMEOUT_SECS", "5"),
            ]))
            .unwrap();
        config.validate().unwrap();
        let config = config.gcs.unwrap();
        assert_eq!(
            config.request_timeout().answer(),
            std::time::Duration::from_secs(5)
        );
        assert_eq!(config.bucket, "reg");
        assert_eq!(config.prefix.as_deref(), Some("p"));
        assert!(config.anonymous);
        assert!(config.redirect);
        assert_eq!(config.redirect_expiry(), std::time::Duration::from_secs(60));
        assert_eq!(config.single_put_limit(), 0);
        assert_eq!(
            GcsConfig::new("reg").single_put_limit(),
            DEFAULT_SINGLE_PUT_LIMIT
        );
        assert_eq!(
            GcsConfig::new("reg").redirect_expiry(),
            std::time::Duration::from_secs(1200)
        );
        let mut late = config.clone();
        late.redirect_expiry_secs = Some(8 * 24 * 3600);
        assert!(matches!(
            late.validate(),
            Err(Error::Config {
                field: "gcs.redirect_expiry_secs",
                ..
            })
        ));
        let err = GcsConfig::new("reg")
            .apply_vars(vars(&[("GCS_ANONYMOUS", "maybe")]))
            .unwrap_err();
        assert!(matches!(
            err,
            Error::Config {
                field: "GCS_ANONYMOUS",
                ..
            }
        ));
    }
}
