//! The settings: the configuration file's format, and how built-in defaults, the file,
//! environment variables and flags combine (in that order of priority) into [`Settings`].

use std::net::SocketAddr;
use std::time::Duration;

use marina_distribution::StorageConfig;
use marina_distribution::observe::logging::LogFormat;
use marina_distribution::observe::notify::NotificationsConfig;
use marina_distribution::proxy::ProxyConfig;
use marina_distribution::registry::auth::config::AuthConfig;
use marina_distribution::server::config::{LimitsConfig, TlsConfig};
use marina_distribution::storage::StorageType;
use marina_distribution::storage::lifecycle::{self, GcOptions, Schedule};
use serde::Deserialize;

use crate::cli::Cli;

const DEFAULT_LISTEN: &str = "127.0.0.1:5000";

/// The registry configuration file.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileConfig {
    /// Listen address.
    listen: Option<SocketAddr>,
    /// Periodic garbage collection in the server.
    gc_interval: Option<String>,
    /// Grace period of garbage collections.
    gc_grace: Option<String>,
    /// Whether garbage collections delete untagged manifests.
    delete_untagged: Option<bool>,
    /// Idle time after which upload sessions expire.
    upload_ttl: Option<String>,
    /// Period of the server's upload expiry.
    upload_expiry_interval: Option<String>,
    /// Storage settings.
    #[serde(default)]
    storage: Option<StorageConfig>,
    /// TLS.
    #[serde(default)]
    tls: TlsConfig,
    /// Access control.
    #[serde(default)]
    auth: AuthConfig,
    /// Limits against abusive clients.
    #[serde(default)]
    limits: LimitsConfig,
    /// Metrics and health listen address.
    metrics_listen: Option<SocketAddr>,
    /// Log format.
    log_format: Option<LogFormat>,
    /// Serve pulls only.
    read_only: Option<bool>,
    /// Refuse deletes.
    disable_deletes: Option<bool>,
    /// Notification endpoints.
    #[serde(default)]
    notifications: NotificationsConfig,
    /// Pull-through cache.
    #[serde(default)]
    proxy: ProxyConfig,
}

/// Everything the configuration sources decide.
pub(crate) struct Settings {
    pub(crate) listen: SocketAddr,
    pub(crate) storage: StorageConfig,
    pub(crate) schedule: Schedule,
    pub(crate) tls: TlsConfig,
    pub(crate) auth: AuthConfig,
    pub(crate) limits: LimitsConfig,
    pub(crate) metrics_listen: Option<SocketAddr>,
    pub(crate) log_format: LogFormat,
    pub(crate) notifications: NotificationsConfig,
    /// Serve pulls only (`--read-only`).
    pub(crate) read_only: bool,
    /// Refuse deletes (`--disable-deletes`).
    pub(crate) disable_deletes: bool,
    /// The upstream of a pull-through cache (`[proxy]`, `--proxy-remote-url`), if any.
    pub(crate) proxy: Option<ProxyConfig>,
}

/// A duration from the flag or environment (`cli`), else the file, else `default`.
fn duration(
    field: &'static str,
    cli: Option<&str>,
    file: Option<&str>,
    default: Option<Duration>,
) -> Result<Option<Duration>, String> {
    match cli.or(file) {
        Some(text) => lifecycle::parse_duration(field, text).map_err(|e| e.to_string()),
        None => Ok(default),
    }
}

/// How often a pull-through cache collects when no `gc_interval` is set (what it stored
/// expires by collections).
const CACHE_GC_INTERVAL: Duration = Duration::from_secs(3600);

/// The settings `cli` (flags and environment variables) and its configuration file decide.
pub(crate) fn load(cli: &Cli) -> Result<Settings, String> {
    let shared = &cli.shared;
    let file = match &shared.config {
        Some(path) => {
            let text = std::fs::read_to_string(path)
                .map_err(|e| format!("reading {}: {e}", path.display()))?;
            toml::from_str::<FileConfig>(&text).map_err(|e| {
                let told = marina_distribution::error::toml_error_without_values(&text, &e);
                format!("{}: {told}", path.display())
            })?
        }
        None => FileConfig::default(),
    };
    let mut storage = file
        .storage
        .clone()
        .unwrap_or_default()
        .apply_env()
        .map_err(|e| e.to_string())?;
    if let Some(t) = &shared.storage {
        // Read as the variable would be, reported under the flag's name.
        storage = storage
            .apply_vars(|k| (k == "STORAGE_TYPE").then(|| t.clone()))
            .map_err(|e| match e {
                marina_distribution::Error::Config { message, .. } => {
                    format!("--storage: {message}")
                }
                other => other.to_string(),
            })?;
    }
    if let Some(root) = &shared.root_directory {
        // A flag that would be ignored is a mistake to report, not to run with.
        if storage.storage_type != StorageType::Filesystem {
            return Err(format!(
                "--root-directory applies to filesystem storage only, and the storage type \
                 is {} (from --storage, STORAGE_TYPE or the file's [storage] type)",
                storage.storage_type.as_str()
            ));
        }
        storage.filesystem.root_directory = root.clone();
    }
    let mut proxy = file.proxy.clone().apply_vars(|k| std::env::var(k).ok());
    if let Some(url) = &cli.proxy_remote_url {
        proxy.remote_url = Some(url.clone());
    }
    if let Some(text) = &shared.proxy_ttl {
        if !proxy.is_enabled() {
            return Err(
                "--proxy-ttl (MARINA_PROXY_TTL) applies to a pull-through cache \
                        (proxy.remote_url) only"
                    .into(),
            );
        }
        let ttl = lifecycle::parse_duration("proxy.ttl", text).map_err(|e| e.to_string())?;
        proxy.ttl = Some(ttl.unwrap_or(Duration::ZERO));
    }
    proxy.validate()?;
    // Also for `marina-registry gc` over a cache's store (its configuration names the
    // upstream): what a cache stored expires.
    let manifest_ttl = proxy.is_enabled().then(|| proxy.manifest_ttl()).flatten();
    let proxy = (cli.command.is_none() && proxy.is_enabled()).then_some(proxy);
    // A cache stores the index a client pulls without the platforms it does not pull.
    if shared.sparse_indexes || proxy.is_some() {
        storage.sparse_indexes = true;
    }
    storage.validate().map_err(|e| e.to_string())?;
    let listen = match (cli.listen, file.listen) {
        (Some(a), _) | (None, Some(a)) => a,
        (None, None) => DEFAULT_LISTEN.parse().expect("default address"),
    };
    let defaults = Schedule::default();
    let gc = GcOptions {
        dry_run: false,
        delete_untagged: shared
            .delete_untagged
            .or(file.delete_untagged)
            .unwrap_or(defaults.gc.delete_untagged),
        grace: duration(
            "gc_grace",
            shared.grace.as_deref(),
            file.gc_grace.as_deref(),
            Some(defaults.gc.grace),
        )?
        .ok_or("gc_grace: give a duration (0s for none), not off")?,
        upload_ttl: duration(
            "upload_ttl",
            shared.upload_ttl.as_deref(),
            file.upload_ttl.as_deref(),
            defaults.gc.upload_ttl,
        )?,
        manifest_ttl,
    };
    let serving = cli.command.is_none();
    // `marina-registry gc` is the operator's explicit deletion: it ignores `read_only` (as
    // Distribution's `garbage-collect` is meant to run while the registry is read-only).
    let read_only = serving && cli.read_only.or(file.read_only).unwrap_or(false);
    let mut schedule = Schedule {
        gc_interval: duration(
            "gc_interval",
            cli.gc_interval.as_deref(),
            file.gc_interval.as_deref(),
            defaults.gc_interval,
        )?,
        upload_expiry_interval: duration(
            "upload_expiry_interval",
            cli.upload_expiry_interval.as_deref(),
            file.upload_expiry_interval.as_deref(),
            defaults.upload_expiry_interval,
        )?,
        gc,
    };
    if proxy.is_some()
        && let Some(ttl) = manifest_ttl
        && cli.gc_interval.is_none()
        && file.gc_interval.is_none()
    {
        // A cache expires what it stored by collecting: every hour (as often as its TTL
        // when that is shorter) unless told otherwise.
        schedule.gc_interval = Some(ttl.clamp(Duration::from_secs(1), CACHE_GC_INTERVAL));
    }
    // A shorter period would run one collection or expiry after another, without rest.
    let too_often = |period: Option<std::time::Duration>| {
        period.is_some_and(|d| d < std::time::Duration::from_secs(1))
    };
    if too_often(schedule.gc_interval) || too_often(schedule.upload_expiry_interval) {
        return Err("gc_interval and upload_expiry_interval must be at least 1s (or off)".into());
    }
    if read_only && proxy.is_some() {
        return Err(
            "read_only: a pull-through cache (proxy.remote_url) stores what it serves; \
             it refuses pushes and deletes by itself"
                .into(),
        );
    }
    if read_only {
        // A read-only registry deletes nothing: a period asked for is a contradiction to
        // report; the default upload expiry simply does not run.
        if schedule.gc_interval.is_some() {
            return Err(
                "gc_interval: a read-only registry (read_only) deletes nothing: \
                        collect from a writable one, or with `marina-registry gc`"
                    .into(),
            );
        }
        let expiry_asked =
            cli.upload_expiry_interval.is_some() || file.upload_expiry_interval.is_some();
        if expiry_asked && schedule.upload_expiry_interval.is_some() {
            return Err(
                "upload_expiry_interval: a read-only registry (read_only) deletes \
                        nothing: expire uploads from a writable one (or set it to off)"
                    .into(),
            );
        }
        schedule.upload_expiry_interval = None;
        // Nothing writes a session record, and detecting conditional writes would write.
        if let Some(s3) = storage.s3.as_mut() {
            s3.conditional_writes.get_or_insert(false);
        }
        // The filesystem driver makes a missing root: a read-only registry would then serve
        // an empty one, ready, from a mistyped path.
        let root = &storage.filesystem.root_directory;
        if storage.storage_type == StorageType::Filesystem && !root.is_dir() {
            return Err(format!(
                "filesystem.root_directory: {} is not a directory, and a read-only registry \
                 (read_only) serves an existing root, never a new empty one",
                root.display()
            ));
        }
    }
    // Expiry in the server runs beside pushes: a TTL of zero (often meant as "no limit")
    // would abort every session in flight at each run. A `gc` run by hand may ask for it.
    if serving
        && schedule.upload_expiry_interval.is_some()
        && schedule.gc.upload_ttl == Some(Duration::ZERO)
    {
        return Err(
            "upload_ttl must be more than 0s in the server: it would abort every upload \
                    in flight (to keep sessions forever, set upload_expiry_interval to off)"
                .into(),
        );
    }
    let mut tls = file.tls;
    tls.cert = cli.tls_cert.clone().or(tls.cert);
    tls.key = cli.tls_key.clone().or(tls.key);
    tls.client_ca = cli.tls_client_ca.clone().or(tls.client_ca);
    let mut auth = file.auth;
    auth.htpasswd = cli.htpasswd.clone().or(auth.htpasswd);
    auth.check_transport(listen, tls.files()?.is_some())?;
    file.notifications.validate().map_err(|e| e.to_string())?;
    Ok(Settings {
        listen,
        storage,
        schedule,
        tls,
        auth,
        limits: file.limits,
        metrics_listen: cli.metrics_listen.or(file.metrics_listen),
        log_format: cli.log_format.or(file.log_format).unwrap_or_default(),
        notifications: file.notifications,
        read_only,
        disable_deletes: cli
            .disable_deletes
            .or(file.disable_deletes)
            .unwrap_or(false),
        proxy,
    })
}
