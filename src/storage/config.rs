//! Storage configuration (seed §2 and §5.1): the driver type plus per-driver parameters,
//! loadable from TOML (serde) or from environment variables. Credentials never live here:
//! the S3 driver uses the standard AWS SDK credential chain.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::oci::manifest::DEFAULT_MANIFEST_LIMIT;
use crate::storage::cache::CacheConfig;

/// Which driver to build.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum StorageType {
    /// Local filesystem under [`FilesystemConfig::root_directory`] (the default).
    #[default]
    Filesystem,
    /// Process memory; for tests and embedders.
    Inmemory,
    /// S3-compatible object storage (feature `s3`).
    S3,
    /// Reserved for a future Google Cloud Storage driver.
    Gcs,
}

impl StorageType {
    /// The name used in configuration files and `STORAGE_TYPE`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Filesystem => "filesystem",
            Self::Inmemory => "inmemory",
            Self::S3 => "s3",
            Self::Gcs => "gcs",
        }
    }

    fn parse(s: &str) -> Result<Self> {
        match s.trim().to_ascii_lowercase().as_str() {
            "filesystem" | "fs" => Ok(Self::Filesystem),
            "inmemory" | "memory" => Ok(Self::Inmemory),
            "s3" => Ok(Self::S3),
            "gcs" => Ok(Self::Gcs),
            other => Err(Error::Config {
                field: "type",
                message: format!(
                    "unknown storage type {other:?} (expected filesystem, inmemory, s3 or gcs)"
                ),
            }),
        }
    }
}

/// Complete storage configuration.
///
/// ```toml
/// type = "s3"            # filesystem | inmemory | s3
/// [filesystem]
/// root_directory = "./data"
/// [s3]
/// bucket = "registry"
/// endpoint = "http://127.0.0.1:9000"
/// force_path_style = true
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StorageConfig {
    /// The driver.
    #[serde(rename = "type", default)]
    pub storage_type: StorageType,
    /// Filesystem driver parameters.
    #[serde(default)]
    pub filesystem: FilesystemConfig,
    /// S3 driver parameters (required when `type = "s3"`).
    #[serde(default)]
    pub s3: Option<S3Config>,
    /// Largest manifest accepted, in bytes (default 4 MiB).
    #[serde(default = "default_manifest_limit")]
    pub max_manifest_size: usize,
    /// The metadata cache (`[storage.cache]`); on by default for object stores.
    #[serde(default)]
    pub cache: CacheConfig,
}

impl Default for StorageConfig {
    fn default() -> Self {
        Self {
            storage_type: StorageType::default(),
            filesystem: FilesystemConfig::default(),
            s3: None,
            max_manifest_size: DEFAULT_MANIFEST_LIMIT,
            cache: CacheConfig::default(),
        }
    }
}

fn default_manifest_limit() -> usize {
    DEFAULT_MANIFEST_LIMIT
}

/// Filesystem driver parameters.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FilesystemConfig {
    /// Directory holding all data (created if missing). Default `./data`.
    pub root_directory: PathBuf,
}

impl Default for FilesystemConfig {
    fn default() -> Self {
        Self {
            root_directory: PathBuf::from("./data"),
        }
    }
}

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
    /// driver is built (two requests on a scratch object).
    #[serde(default)]
    pub conditional_writes: Option<bool>,
}

/// Default validity of a redirect's presigned URL: 20 minutes.
pub const DEFAULT_REDIRECT_EXPIRY_SECS: u64 = 20 * 60;
/// Longest validity of a presigned URL (SigV4: 7 days).
pub const MAX_REDIRECT_EXPIRY_SECS: u64 = 7 * 24 * 3600;
/// Default multipart part size.
pub const DEFAULT_PART_SIZE: u64 = 8 * 1024 * 1024;
/// S3's minimum size of a non-final part.
pub const MIN_PART_SIZE: u64 = 5 * 1024 * 1024;
/// S3's maximum size of a part.
pub const MAX_PART_SIZE: u64 = 5 * 1024 * 1024 * 1024;

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
        }
    }

    /// Checks required fields and ranges; the error names the field.
    pub fn validate(&self) -> Result<()> {
        let bad = |field, message: String| Err(Error::Config { field, message });
        if self.bucket.trim().is_empty() {
            return bad("s3.bucket", "a bucket is required".into());
        }
        if let Some(e) = &self.endpoint
            && !(e.starts_with("http://") || e.starts_with("https://"))
        {
            return bad(
                "s3.endpoint",
                format!("{e:?} must start with http:// or https://"),
            );
        }
        if let Some(e) = &self.public_endpoint
            && !(e.starts_with("http://") || e.starts_with("https://"))
        {
            return bad(
                "s3.public_endpoint",
                format!("{e:?} must start with http:// or https://"),
            );
        }
        // SigV4 presigned URLs live at most 7 days.
        if let Some(secs) = self.redirect_expiry_secs
            && !(1..=MAX_REDIRECT_EXPIRY_SECS).contains(&secs)
        {
            return bad(
                "s3.redirect_expiry_secs",
                format!("{secs} is outside 1..={MAX_REDIRECT_EXPIRY_SECS}"),
            );
        }
        if let Some(p) = self.part_size
            && !(MIN_PART_SIZE..=MAX_PART_SIZE).contains(&p)
        {
            return bad(
                "s3.part_size",
                format!("{p} is outside {MIN_PART_SIZE}..={MAX_PART_SIZE}"),
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
        Ok(())
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
        std::time::Duration::from_secs(
            self.redirect_expiry_secs
                .unwrap_or(DEFAULT_REDIRECT_EXPIRY_SECS),
        )
    }

    /// The effective part size.
    pub fn part_size(&self) -> u64 {
        self.part_size.unwrap_or(DEFAULT_PART_SIZE)
    }

    /// The prefix normalised to `""` or `"some/prefix/"`.
    pub fn normalized_prefix(&self) -> String {
        match self.prefix.as_deref().map(|p| p.trim_matches('/')) {
            None | Some("") => String::new(),
            Some(p) => format!("{p}/"),
        }
    }
}

impl StorageConfig {
    /// A filesystem configuration rooted at `root`.
    pub fn filesystem(root: impl Into<PathBuf>) -> Self {
        Self {
            storage_type: StorageType::Filesystem,
            filesystem: FilesystemConfig {
                root_directory: root.into(),
            },
            ..Self::default()
        }
    }

    /// An in-memory configuration.
    pub fn inmemory() -> Self {
        Self {
            storage_type: StorageType::Inmemory,
            ..Self::default()
        }
    }

    /// An S3 configuration.
    pub fn s3(s3: S3Config) -> Self {
        Self {
            storage_type: StorageType::S3,
            s3: Some(s3),
            ..Self::default()
        }
    }

    /// Parses a TOML document (see the type's example) and validates it.
    pub fn from_toml(text: &str) -> Result<Self> {
        let cfg: Self = toml::from_str(text).map_err(|e| Error::Config {
            field: "toml",
            message: e.to_string(),
        })?;
        cfg.validate()?;
        Ok(cfg)
    }

    /// Reads `STORAGE_TYPE`, `STORAGE_ROOT_DIRECTORY`, `STORAGE_CACHE`,
    /// `STORAGE_CACHE_TTL_MS`, `STORAGE_CACHE_MAX_ENTRIES`, `STORAGE_CACHE_MAX_BYTES`,
    /// `STORAGE_CACHE_TAGS`, `S3_BUCKET`, `S3_REGION`, `S3_ENDPOINT`, `S3_PREFIX`,
    /// `S3_FORCE_PATH_STYLE`, `S3_CHECKSUM`, `S3_PART_SIZE`, `S3_EQUAL_PARTS`, `S3_REDIRECT`,
    /// `S3_PUBLIC_ENDPOINT`, `S3_REDIRECT_EXPIRY_SECS` and `S3_CONDITIONAL_WRITES` (`true`,
    /// `false` or `auto`) over `self`; unset variables leave
    /// the current values.
    pub fn apply_env(self) -> Result<Self> {
        self.apply_vars(|k| std::env::var(k).ok().filter(|v| !v.is_empty()))
    }

    /// [`apply_env`](Self::apply_env) with an explicit variable source (for tests).
    pub fn apply_vars(mut self, var: impl Fn(&str) -> Option<String>) -> Result<Self> {
        if let Some(t) = var("STORAGE_TYPE") {
            self.storage_type = StorageType::parse(&t).map_err(|e| match e {
                Error::Config { message, .. } => Error::Config {
                    field: "STORAGE_TYPE",
                    message,
                },
                e => e,
            })?;
        }
        if let Some(root) = var("STORAGE_ROOT_DIRECTORY") {
            self.filesystem.root_directory = root.into();
        }
        self.cache = apply_cache_vars(self.cache, &var)?;
        let s3_vars = [
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
        ];
        if s3_vars.iter().any(|k| var(k).is_some()) {
            let mut s3 = self.s3.take().unwrap_or_else(|| S3Config::new(""));
            if let Some(v) = var("S3_BUCKET") {
                s3.bucket = v;
            }
            if let Some(v) = var("S3_REGION") {
                s3.region = Some(v);
            }
            if let Some(v) = var("S3_ENDPOINT") {
                s3.endpoint = Some(v);
            }
            if let Some(v) = var("S3_PREFIX") {
                s3.prefix = Some(v);
            }
            if let Some(v) = var("S3_FORCE_PATH_STYLE") {
                s3.force_path_style = parse_bool("S3_FORCE_PATH_STYLE", &v)?;
            }
            if let Some(v) = var("S3_EQUAL_PARTS") {
                s3.equal_parts = parse_bool("S3_EQUAL_PARTS", &v)?;
            }
            if let Some(v) = var("S3_REDIRECT") {
                s3.redirect = parse_bool("S3_REDIRECT", &v)?;
            }
            if let Some(v) = var("S3_PUBLIC_ENDPOINT") {
                s3.public_endpoint = Some(v);
            }
            if let Some(v) = var("S3_REDIRECT_EXPIRY_SECS") {
                s3.redirect_expiry_secs = Some(parse_u64("S3_REDIRECT_EXPIRY_SECS", &v)?);
            }
            if let Some(v) = var("S3_CONDITIONAL_WRITES") {
                s3.conditional_writes = match v.as_str() {
                    "auto" => None,
                    _ => Some(parse_bool("S3_CONDITIONAL_WRITES", &v)?),
                };
            }
            if let Some(v) = var("S3_CHECKSUM") {
                s3.checksum = Some(match v.as_str() {
                    "when_supported" => S3ChecksumPolicy::WhenSupported,
                    "when_required" => S3ChecksumPolicy::WhenRequired,
                    other => {
                        return Err(Error::Config {
                            field: "S3_CHECKSUM",
                            message: format!(
                                "{other:?} (expected when_supported or when_required)"
                            ),
                        });
                    }
                });
            }
            if let Some(v) = var("S3_PART_SIZE") {
                s3.part_size = Some(v.parse().map_err(|_| Error::Config {
                    field: "S3_PART_SIZE",
                    message: format!("{v:?} is not a number of bytes"),
                })?);
            }
            self.s3 = Some(s3);
        }
        Ok(self)
    }

    /// Checks the configuration for the selected driver; the error names the field.
    pub fn validate(&self) -> Result<()> {
        if self.max_manifest_size == 0 {
            return Err(Error::Config {
                field: "max_manifest_size",
                message: "must be positive".into(),
            });
        }
        match self.storage_type {
            StorageType::Filesystem => {
                if self.filesystem.root_directory.as_os_str().is_empty() {
                    return Err(Error::Config {
                        field: "filesystem.root_directory",
                        message: "must not be empty".into(),
                    });
                }
                Ok(())
            }
            StorageType::Inmemory => Ok(()),
            StorageType::S3 => match &self.s3 {
                Some(s3) => s3.validate(),
                None => Err(Error::Config {
                    field: "s3.bucket",
                    message: "type is s3 but no [s3] section or S3_BUCKET is given".into(),
                }),
            },
            StorageType::Gcs => Err(Error::Config {
                field: "type",
                message: "the gcs driver is reserved but not implemented yet".into(),
            }),
        }
    }
}

/// The `STORAGE_CACHE*` variables over `cache`.
fn apply_cache_vars(
    mut cache: CacheConfig,
    var: &impl Fn(&str) -> Option<String>,
) -> Result<CacheConfig> {
    if let Some(v) = var("STORAGE_CACHE") {
        cache.enabled = match v.trim().to_ascii_lowercase().as_str() {
            "auto" => None,
            _ => Some(parse_bool("STORAGE_CACHE", &v)?),
        };
    }
    if let Some(v) = var("STORAGE_CACHE_TTL_MS") {
        cache.ttl_ms = parse_u64("STORAGE_CACHE_TTL_MS", &v)?;
    }
    if let Some(v) = var("STORAGE_CACHE_MAX_ENTRIES") {
        cache.max_entries = parse_u64("STORAGE_CACHE_MAX_ENTRIES", &v)?;
    }
    if let Some(v) = var("STORAGE_CACHE_MAX_BYTES") {
        cache.max_bytes = parse_u64("STORAGE_CACHE_MAX_BYTES", &v)?;
    }
    if let Some(v) = var("STORAGE_CACHE_TAGS") {
        cache.tags = parse_bool("STORAGE_CACHE_TAGS", &v)?;
    }
    Ok(cache)
}

fn parse_u64(field: &'static str, v: &str) -> Result<u64> {
    v.trim().parse().map_err(|_| Error::Config {
        field,
        message: format!("{v:?} is not a whole number"),
    })
}

fn parse_bool(field: &'static str, v: &str) -> Result<bool> {
    match v.trim().to_ascii_lowercase().as_str() {
        "1" | "true" | "yes" | "on" => Ok(true),
        "0" | "false" | "no" | "off" => Ok(false),
        _ => Err(Error::Config {
            field,
            message: format!("{v:?} is not a boolean"),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn vars(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let map: HashMap<String, String> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        move |k| map.get(k).cloned()
    }

    #[test]
    fn toml_round_trip() {
        let cfg = StorageConfig::from_toml(
            r#"
            type = "s3"
            [s3]
            bucket = "reg"
            endpoint = "http://127.0.0.1:9000"
            force_path_style = true
            "#,
        )
        .unwrap();
        assert_eq!(cfg.storage_type, StorageType::S3);
        let s3 = cfg.s3.as_ref().unwrap();
        assert_eq!(s3.checksum_policy(), S3ChecksumPolicy::WhenRequired);
        assert_eq!(s3.part_size(), DEFAULT_PART_SIZE);
        let again = StorageConfig::from_toml(&toml::to_string(&cfg).unwrap()).unwrap();
        assert_eq!(again, cfg);
    }

    #[test]
    fn errors_name_the_field() {
        let err = StorageConfig::from_toml("type = \"s3\"").unwrap_err();
        assert!(
            matches!(
                err,
                Error::Config {
                    field: "s3.bucket",
                    ..
                }
            ),
            "{err}"
        );
        let err = StorageConfig::from_toml("type = \"nope\"").unwrap_err();
        assert!(matches!(err, Error::Config { field: "toml", .. }));
        let err = StorageConfig::default()
            .apply_vars(vars(&[("S3_FORCE_PATH_STYLE", "maybe")]))
            .unwrap_err();
        assert!(matches!(
            err,
            Error::Config {
                field: "S3_FORCE_PATH_STYLE",
                ..
            }
        ));
        let mut s3 = S3Config::new("b");
        s3.part_size = Some(1024);
        assert!(matches!(
            s3.validate(),
            Err(Error::Config {
                field: "s3.part_size",
                ..
            })
        ));
        assert!(StorageConfig::from_toml("type = \"gcs\"").is_err());
    }

    #[test]
    fn environment() {
        let cfg = StorageConfig::default()
            .apply_vars(vars(&[
                ("STORAGE_TYPE", "s3"),
                ("S3_BUCKET", "b"),
                ("S3_ENDPOINT", "http://127.0.0.1:5050"),
                ("S3_FORCE_PATH_STYLE", "true"),
                ("S3_PREFIX", "/reg/"),
                ("S3_REDIRECT", "true"),
                ("S3_PUBLIC_ENDPOINT", "https://s3.example.test"),
            ]))
            .unwrap();
        cfg.validate().unwrap();
        let s3 = cfg.s3.unwrap();
        assert!(s3.redirect);
        assert_eq!(
            s3.public_endpoint.as_deref(),
            Some("https://s3.example.test")
        );
        assert_eq!(s3.redirect_expiry(), std::time::Duration::from_secs(1200));
        let mut late = S3Config::new("b");
        late.redirect_expiry_secs = Some(8 * 24 * 3600);
        assert!(matches!(
            late.validate(),
            Err(Error::Config {
                field: "s3.redirect_expiry_secs",
                ..
            })
        ));
        assert!(s3.force_path_style);
        assert_eq!(s3.normalized_prefix(), "reg/");
        let fs = StorageConfig::default()
            .apply_vars(vars(&[("STORAGE_ROOT_DIRECTORY", "/tmp/x")]))
            .unwrap();
        assert_eq!(fs.filesystem.root_directory, PathBuf::from("/tmp/x"));
        let cached = StorageConfig::default()
            .apply_vars(vars(&[
                ("STORAGE_CACHE", "on"),
                ("STORAGE_CACHE_TTL_MS", "250"),
                ("STORAGE_CACHE_MAX_ENTRIES", "10"),
                ("STORAGE_CACHE_MAX_BYTES", "4096"),
                ("STORAGE_CACHE_TAGS", "false"),
            ]))
            .unwrap()
            .cache;
        assert_eq!(
            cached,
            CacheConfig {
                enabled: Some(true),
                ttl_ms: 250,
                max_entries: 10,
                max_bytes: 4096,
                tags: false
            }
        );
        let err = StorageConfig::default()
            .apply_vars(vars(&[("STORAGE_CACHE_TTL_MS", "soon")]))
            .unwrap_err();
        assert!(matches!(
            err,
            Error::Config {
                field: "STORAGE_CACHE_TTL_MS",
                ..
            }
        ));
        let toml = StorageConfig::from_toml("[cache]\nenabled = false\nttl_ms = 100").unwrap();
        assert_eq!(toml.cache.enabled, Some(false));
        assert_eq!(
            toml.cache.max_entries,
            crate::storage::cache::DEFAULT_MAX_ENTRIES
        );
    }
}
