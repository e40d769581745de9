//! Storage configuration (seed §2 and §5.1): the driver type plus per-driver parameters,
//! loadable from TOML (serde) or from environment variables. Credentials never live here:
//! the S3 driver uses the standard AWS SDK credential chain.
//!
//! Each driver's own parameters live in its folder ([`FilesystemConfig`] in
//! `storage/filesystem/config.rs`, [`S3Config`] in `storage/s3/config.rs`); this module holds
//! what selects and gathers them.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::oci::manifest::DEFAULT_MANIFEST_LIMIT;
use crate::storage::cache::CacheConfig;
use crate::storage::gcs::config as gcs;
use crate::storage::immutable::{ImmutableTagRule, ImmutableTags};
use crate::storage::s3::config as s3;

pub use crate::storage::filesystem::FilesystemConfig;
pub use gcs::GcsConfig;
pub use s3::{DEFAULT_PART_SIZE, MAX_PART_SIZE, MIN_PART_SIZE, S3ChecksumPolicy, S3Config};

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
    /// Google Cloud Storage (feature `gcs`).
    Gcs,
}

impl StorageType {
    /// The error for a configuration selecting a driver this build does not have.
    pub(crate) fn unavailable(self) -> Error {
        Error::Config {
            field: "type",
            message: format!(
                "the {0} driver is not compiled in (enable the `{0}` cargo feature)",
                self.as_str()
            ),
        }
    }

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
/// type = "s3"            # filesystem | inmemory | s3 | gcs
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
    /// GCS driver parameters (required when `type = "gcs"`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gcs: Option<GcsConfig>,
    /// Largest manifest accepted, in bytes (default 4 MiB).
    #[serde(default = "default_manifest_limit")]
    pub max_manifest_size: usize,
    /// Accept image indexes whose child manifests are not stored (default `false`: such an
    /// index is `MANIFEST_BLOB_UNKNOWN`); environment `MARINA_SPARSE_INDEXES`.
    #[serde(default)]
    pub sparse_indexes: bool,
    /// The metadata cache (`[storage.cache]`); on by default for object stores.
    #[serde(default)]
    pub cache: CacheConfig,
    /// Which tags never move once they exist (`[[storage.immutable_tags]]`; none by
    /// default): see [`immutable`](crate::storage::immutable).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub immutable_tags: Vec<ImmutableTagRule>,
}

impl Default for StorageConfig {
    fn default() -> Self {
        Self {
            storage_type: StorageType::default(),
            filesystem: FilesystemConfig::default(),
            s3: None,
            gcs: None,
            max_manifest_size: DEFAULT_MANIFEST_LIMIT,
            sparse_indexes: false,
            cache: CacheConfig::default(),
            immutable_tags: Vec::new(),
        }
    }
}

fn default_manifest_limit() -> usize {
    DEFAULT_MANIFEST_LIMIT
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

    /// A GCS configuration.
    pub fn gcs(gcs: GcsConfig) -> Self {
        Self {
            storage_type: StorageType::Gcs,
            gcs: Some(gcs),
            ..Self::default()
        }
    }

    /// Parses a TOML document (see the type's example) and validates it.
    pub fn from_toml(text: &str) -> Result<Self> {
        let cfg: Self = toml::from_str(text).map_err(|e| Error::Config {
            field: "toml",
            message: crate::error::toml_error_without_values(text, &e),
        })?;
        cfg.validate()?;
        Ok(cfg)
    }

    /// Reads `STORAGE_TYPE`, `STORAGE_ROOT_DIRECTORY`, `MARINA_SPARSE_INDEXES`,
    /// `STORAGE_CACHE`, `STORAGE_CACHE_TTL_MS`, `STORAGE_CACHE_MAX_ENTRIES`,
    /// `STORAGE_CACHE_MAX_BYTES`, `STORAGE_CACHE_TAGS`, `S3_BUCKET`, `S3_REGION`, `S3_ENDPOINT`,
    /// `S3_PREFIX`, `S3_FORCE_PATH_STYLE`, `S3_CHECKSUM`, `S3_PART_SIZE`, `S3_EQUAL_PARTS`,
    /// `S3_REDIRECT`, `S3_PUBLIC_ENDPOINT`, `S3_REDIRECT_EXPIRY_SECS` and
    /// `S3_CONDITIONAL_WRITES` (`true`, `false` or `auto`), and `GCS_BUCKET`, `GCS_PREFIX`,
    /// `GCS_ENDPOINT`, `GCS_ANONYMOUS`, `GCS_REDIRECT` and `GCS_REDIRECT_EXPIRY_SECS` over
    /// `self`; unset variables leave the current values.
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
        self.filesystem = self.filesystem.apply_vars(&var);
        if let Some(v) = var("MARINA_SPARSE_INDEXES") {
            self.sparse_indexes = parse_bool("MARINA_SPARSE_INDEXES", &v)?;
        }
        self.cache = apply_cache_vars(self.cache, &var)?;
        if s3::ENV_VARS.iter().any(|k| var(k).is_some()) {
            let s3 = self.s3.take().unwrap_or_else(|| S3Config::new(""));
            self.s3 = Some(s3.apply_vars(&var)?);
        }
        if gcs::ENV_VARS.iter().any(|k| var(k).is_some()) {
            let gcs = self.gcs.take().unwrap_or_else(|| GcsConfig::new(""));
            self.gcs = Some(gcs.apply_vars(&var)?);
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
        ImmutableTags::new(&self.immutable_tags)?;
        match self.storage_type {
            StorageType::Filesystem => self.filesystem.validate(),
            StorageType::Inmemory => Ok(()),
            StorageType::S3 => match &self.s3 {
                Some(s3) => s3.validate(),
                None => Err(Error::Config {
                    field: "s3.bucket",
                    message: "type is s3 but no [s3] section or S3_BUCKET is given".into(),
                }),
            },
            StorageType::Gcs => match &self.gcs {
                Some(gcs) => gcs.validate(),
                None => Err(Error::Config {
                    field: "gcs.bucket",
                    message: "type is gcs but no [gcs] section or GCS_BUCKET is given".into(),
                }),
            },
        }
    }
}

/// The `STORAGE_CACHE*` variables over `cache`.
fn apply_cache_vars(
    mut cache: CacheConfig,
    var: &impl Fn(&str) -> Option<String>,
) -> Result<CacheConfig> {
    if let Some(v) = var("STORAGE_CACHE") {
        cache.enabled = parse_bool_or_auto("STORAGE_CACHE", &v)?;
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

/// Parses a whole number setting.
pub(crate) fn parse_u64(field: &'static str, v: &str) -> Result<u64> {
    v.trim().parse().map_err(|_| Error::Config {
        field,
        message: format!("{v:?} is not a whole number"),
    })
}

/// Parses a boolean setting (`1`/`0`, `true`/`false`, `yes`/`no`, `on`/`off`).
pub(crate) fn parse_bool(field: &'static str, v: &str) -> Result<bool> {
    match v.trim().to_ascii_lowercase().as_str() {
        "1" | "true" | "yes" | "on" => Ok(true),
        "0" | "false" | "no" | "off" => Ok(false),
        _ => Err(Error::Config {
            field,
            message: format!("{v:?} is not a boolean"),
        }),
    }
}

/// Parses a boolean setting that may also be `auto` (`None`: the driver decides).
pub(crate) fn parse_bool_or_auto(field: &'static str, v: &str) -> Result<Option<bool>> {
    if v.trim().eq_ignore_ascii_case("auto") {
        return Ok(None);
    }
    parse_bool(field, v).map(Some).map_err(|_| Error::Config {
        field,
        message: format!("{v:?} is not true, false or auto"),
    })
}

/// Checks a store endpoint: `http://` or `https://`, a host (a name, an IPv4 address or a
/// bracketed IPv6 one) with an optional port, an optional path, and nothing else: no
/// credentials (they come from the driver's credential chain, and a URL is logged), no
/// query or fragment.
pub(crate) fn check_endpoint(field: &'static str, endpoint: &str) -> Result<()> {
    let bad = |why: &str| {
        Err(Error::Config {
            field,
            message: format!("{endpoint:?} {why}"),
        })
    };
    let Some(rest) = endpoint
        .strip_prefix("http://")
        .or_else(|| endpoint.strip_prefix("https://"))
    else {
        return bad("must start with http:// or https://");
    };
    let (authority, path) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
    if authority.contains('@') {
        // Said without the value, which holds a secret.
        return Err(Error::Config {
            field,
            message: "must not hold credentials (`user:password@`): they come from the \
                      driver's credential chain"
                .into(),
        });
    }
    if path.contains(['?', '#']) {
        return bad("must not have a query or a fragment");
    }
    let (host, port) = match authority.strip_prefix('[') {
        Some(bracketed) => match bracketed.split_once(']') {
            Some((ip, port)) if ip.parse::<std::net::Ipv6Addr>().is_ok() => (ip, port),
            _ => return bad("has an invalid IPv6 address"),
        },
        None => match authority.split_once(':') {
            Some((host, port)) => (host, port),
            None => (authority, ""),
        },
    };
    let port = port.strip_prefix(':').unwrap_or(port);
    let named = |h: &str| {
        !h.is_empty()
            && h.split('.').all(|label| {
                !label.is_empty()
                    && label
                        .bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
            })
    };
    if !authority.starts_with('[') && !named(host) {
        return bad("has no valid host");
    }
    if !port.is_empty() && port.parse::<u16>().is_err() {
        return bad("has an invalid port");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    #[test]
    fn store_endpoints_are_checked() {
        for ok in [
            "http://127.0.0.1:9000",
            "https://s3.eu-west-1.amazonaws.com",
            "https://storage.googleapis.com/",
            "http://minio:9000/",
            "http://[::1]:4443",
            "https://gateway.example.com/s3",
            "http://my_host.internal",
        ] {
            check_endpoint("s3.endpoint", ok).unwrap_or_else(|e| panic!("{ok}: {e}"));
        }
        for bad in [
            "notaurl",
            "ftp://x",
            "http://",
            "https:///path",
            "http://[::1",
            "http://[nope]:1",
            "http://host:port",
            "http://host:99999",
            "http://user:secret@host",
            "http://host/?x=1",
            "http://host/#f",
            "http://a..b",
            "http://host name",
        ] {
            let err = check_endpoint("s3.endpoint", bad).unwrap_err().to_string();
            assert!(err.contains("s3.endpoint"), "{bad}: {err}");
            assert!(!err.contains("secret"), "the password was repeated: {err}");
        }
    }

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
        // Settings that also take `auto` say so when refused.
        for var in ["S3_CONDITIONAL_WRITES", "STORAGE_CACHE"] {
            let err = StorageConfig::default()
                .apply_vars(vars(&[("S3_BUCKET", "b"), (var, "maybe")]))
                .unwrap_err();
            let told = err.to_string();
            assert!(
                told.contains(var) && told.contains("true, false or auto"),
                "{told}"
            );
            let config = StorageConfig::default()
                .apply_vars(vars(&[("S3_BUCKET", "b"), (var, "Auto")]))
                .unwrap();
            assert!(config.s3.is_some());
        }
        let mut s3 = S3Config::new("b");
        s3.part_size = Some(1024);
        assert!(matches!(
            s3.validate(),
            Err(Error::Config {
                field: "s3.part_size",
                ..
            })
        ));
        let err = StorageConfig::from_toml("type = \"gcs\"").unwrap_err();
        assert!(matches!(
            err,
            Error::Config {
                field: "gcs.bucket",
                ..
            }
        ));
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
                ("S3_REQUEST_TIMEOUT_SECS", "7"),
            ]))
            .unwrap();
        cfg.validate().unwrap();
        let s3 = cfg.s3.unwrap();
        assert_eq!(
            s3.request_timeout().answer(),
            std::time::Duration::from_secs(7)
        );
        assert_eq!(
            S3Config::new("b").request_timeout().answer(),
            std::time::Duration::from_secs(30)
        );
        let mut hasty = S3Config::new("b");
        hasty.request_timeout_secs = Some(3601);
        assert!(matches!(
            hasty.validate(),
            Err(Error::Config {
                field: "s3.request_timeout_secs",
                ..
            })
        ));
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
        assert!(!fs.sparse_indexes);
        let sparse = StorageConfig::default()
            .apply_vars(vars(&[("MARINA_SPARSE_INDEXES", "true")]))
            .unwrap();
        assert!(sparse.sparse_indexes);
        assert!(
            StorageConfig::from_toml("sparse_indexes = true")
                .unwrap()
                .sparse_indexes
        );
        assert!(matches!(
            StorageConfig::default().apply_vars(vars(&[("MARINA_SPARSE_INDEXES", "often")])),
            Err(Error::Config {
                field: "MARINA_SPARSE_INDEXES",
                ..
            })
        ));
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
