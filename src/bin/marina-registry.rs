//! `marina-registry`: an OCI distribution-spec v1.1 registry over the filesystem, memory,
//! S3-compatible storage or Google Cloud Storage.
//!
//! `cargo run --release` serves on `127.0.0.1:5000` with filesystem storage under `./data`.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};
use marina_distribution::observe::http::ObserveLayer;
use marina_distribution::observe::logging::{self, LogFormat};
use marina_distribution::observe::metrics::Metrics;
use marina_distribution::observe::notify::{NotificationsConfig, Notifier, NotifierOptions};
use marina_distribution::registry::RegistryOptions;
use marina_distribution::registry::auth::config::AuthConfig;
use marina_distribution::server::config::{LimitsConfig, TlsConfig};
use marina_distribution::server::{self, TlsReloader};
use marina_distribution::storage::lifecycle::{self, GcOptions, Lifecycle, Schedule};
use marina_distribution::{AnyDriver, StorageConfig, StorageDriver};
use serde::Deserialize;

const DEFAULT_LISTEN: &str = "127.0.0.1:5000";

/// An OCI distribution-spec v1.1 container registry.
///
/// Push and pull images and artifacts with any OCI client (docker, podman, skopeo, oras,
/// crane). With no option it serves http://127.0.0.1:5000 and keeps everything under
/// ./data (created if missing).
///
/// Settings are taken, from lowest to highest priority, from: built-in defaults, the
/// --config file, environment variables, command-line flags.
#[derive(Parser, Debug)]
#[command(
    name = "marina-registry",
    version,
    after_help = "\
ENVIRONMENT (storage):
  STORAGE_TYPE            filesystem (default) | inmemory | s3 | gcs
  STORAGE_ROOT_DIRECTORY  filesystem root (default ./data)
  MARINA_SPARSE_INDEXES   true: accept image indexes whose child manifests are absent
  S3_BUCKET, S3_REGION, S3_ENDPOINT, S3_PREFIX, S3_FORCE_PATH_STYLE,
  S3_CHECKSUM (when_supported|when_required), S3_PART_SIZE, S3_EQUAL_PARTS,
  S3_REDIRECT (blob GETs answered with 307 to presigned URLs), S3_PUBLIC_ENDPOINT,
  S3_REDIRECT_EXPIRY_SECS (default 1200), S3_CONDITIONAL_WRITES (auto|true|false: If-Match on
  upload session records, auto = detected at start), S3_SINGLE_PUT_LIMIT (bytes, default
  268435456: monolithic pushes up to this size in one streamed PutObject; 0 = off)
  STORAGE_CACHE (auto|true|false: metadata cache, auto = on for S3), STORAGE_CACHE_TTL_MS
  (default 5000: how late another instance's delete may be seen), STORAGE_CACHE_MAX_ENTRIES,
  STORAGE_CACHE_MAX_BYTES, STORAGE_CACHE_TAGS
  AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, ... (standard AWS credential chain)
  GCS_BUCKET, GCS_PREFIX, GCS_ENDPOINT, GCS_ANONYMOUS (true: no credentials, emulators),
  GCS_REDIRECT (blob GETs answered with 307 to signed URLs), GCS_REDIRECT_EXPIRY_SECS,
  GCS_SINGLE_PUT_LIMIT (bytes, default 268435456: monolithic pushes up to this size in one
  streamed media upload; 0 = off)
  GOOGLE_APPLICATION_CREDENTIALS, ... (Application Default Credentials)
  RUST_LOG                log filter, e.g. info (default), debug, marina_distribution=trace
  MARINA_TLS_CERT, MARINA_TLS_KEY, MARINA_TLS_CLIENT_CA, MARINA_HTPASSWD (see flags)

CONFIG FILE (TOML, all keys optional; docs/configuration.md lists them all):
  listen = \"127.0.0.1:5000\"
  metrics_listen = \"127.0.0.1:5001\"   # /metrics, /healthz, /readyz
  log_format = \"json\"
  [[notifications.endpoints]]
  name = \"ci\"
  url = \"http://127.0.0.1:8080/events\"
ENVIRONMENT (lifecycle; durations like 30s, 15m, 24h, or off):
  MARINA_GC_INTERVAL      periodic garbage collection in the server (default off)
  MARINA_GC_GRACE         spare what was written more recently (default 1h)
  MARINA_DELETE_UNTAGGED  true: collections also delete untagged manifests (default false)
  MARINA_UPLOAD_TTL       upload sessions idle longer than this expire (default 24h)
  MARINA_UPLOAD_EXPIRY_INTERVAL  how often the server expires uploads (default 1h)

CONFIG FILE (TOML, all keys optional):
  listen = \"127.0.0.1:5000\"
  gc_interval = \"off\"             # or e.g. \"24h\"
  gc_grace = \"1h\"
  delete_untagged = false
  upload_ttl = \"24h\"
  upload_expiry_interval = \"1h\"
  [storage]
  type = \"filesystem\"              # or \"inmemory\", \"s3\", \"gcs\"
  max_manifest_size = 4194304
  sparse_indexes = false
  [storage.filesystem]
  root_directory = \"./data\"
  [storage.s3]
  bucket = \"registry\"
  endpoint = \"http://127.0.0.1:9000\"
  force_path_style = true
  redirect = false
  [storage.gcs]
  bucket = \"registry\"
  prefix = \"marina\"
  [storage.cache]
  ttl_ms = 5000
  [tls]                             # HTTPS (HTTP/2 by ALPN); reloaded on SIGHUP or change
  cert = \"cert.pem\"
  key = \"key.pem\"
  [auth]                            # see docs/security.md
  htpasswd = \"htpasswd\"           # bcrypt (htpasswd -B)
  [[auth.access]]
  repositories = \"team/**\"
  users = [\"alice\"]
  actions = [\"pull\", \"push\"]
  [limits]
  max_connections = 1024

EXAMPLES:
  marina-registry
  marina-registry --listen 0.0.0.0:5000 --root-directory /var/lib/registry
  STORAGE_TYPE=s3 S3_BUCKET=reg S3_ENDPOINT=http://127.0.0.1:9000 marina-registry
  STORAGE_TYPE=gcs GCS_BUCKET=reg marina-registry
  marina-registry gc --dry-run --delete-untagged
  skopeo copy --dest-tls-verify=false oci:./layout:latest docker://127.0.0.1:5000/demo:latest"
)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,

    /// Address to listen on (HOST:PORT).
    #[arg(long, env = "MARINA_LISTEN", value_name = "HOST:PORT")]
    listen: Option<SocketAddr>,

    /// Run a garbage collection this often inside the server (e.g. 24h; default off).
    #[arg(long, env = "MARINA_GC_INTERVAL", value_name = "DURATION")]
    gc_interval: Option<String>,

    /// Expire idle upload sessions this often inside the server (default 1h; off disables).
    #[arg(long, env = "MARINA_UPLOAD_EXPIRY_INTERVAL", value_name = "DURATION")]
    upload_expiry_interval: Option<String>,

    #[command(flatten)]
    shared: Shared,

    /// Serve Prometheus metrics (/metrics) and health checks (/healthz, /readyz) on this
    /// separate address (HOST:PORT). Off by default.
    #[arg(long, env = "MARINA_METRICS_LISTEN", value_name = "HOST:PORT")]
    metrics_listen: Option<SocketAddr>,

    /// Log format: text (default) or json (one object per line).
    #[arg(long, env = "MARINA_LOG_FORMAT", value_name = "FORMAT")]
    log_format: Option<LogFormat>,

    /// TLS certificate chain (PEM); with --tls-key, serve HTTPS.
    #[arg(long, env = "MARINA_TLS_CERT", value_name = "FILE")]
    tls_cert: Option<PathBuf>,

    /// TLS private key (PEM).
    #[arg(long, env = "MARINA_TLS_KEY", value_name = "FILE")]
    tls_key: Option<PathBuf>,

    /// CA bundle (PEM) client certificates must chain to (mutual TLS).
    #[arg(long, env = "MARINA_TLS_CLIENT_CA", value_name = "FILE")]
    tls_client_ca: Option<PathBuf>,

    /// htpasswd file (bcrypt): require HTTP Basic authentication.
    #[arg(long, env = "MARINA_HTPASSWD", value_name = "FILE")]
    htpasswd: Option<PathBuf>,
}

/// Settings of both the server and `gc`.
#[derive(Args, Debug)]
struct Shared {
    /// TOML configuration file (see below).
    #[arg(long, short = 'c', value_name = "FILE", global = true)]
    config: Option<PathBuf>,

    /// Storage driver: filesystem, inmemory, s3 or gcs (overrides STORAGE_TYPE).
    #[arg(long, value_name = "TYPE", global = true)]
    storage: Option<String>,

    /// Filesystem storage root (overrides STORAGE_ROOT_DIRECTORY).
    #[arg(long, value_name = "DIR", global = true)]
    root_directory: Option<PathBuf>,

    /// Accept image indexes whose child manifests are absent (MARINA_SPARSE_INDEXES).
    #[arg(long, global = true)]
    sparse_indexes: bool,

    /// Garbage collections also delete manifests no tag reaches, with their referrers.
    #[arg(
        long,
        env = "MARINA_DELETE_UNTAGGED",
        global = true,
        num_args = 0..=1,
        default_missing_value = "true",
        value_parser = clap::builder::BoolishValueParser::new()
    )]
    delete_untagged: Option<bool>,

    /// Garbage collections spare what was written less than this long ago (default 1h;
    /// 0s is safe too).
    #[arg(long, env = "MARINA_GC_GRACE", value_name = "DURATION", global = true)]
    grace: Option<String>,

    /// Upload sessions idle for longer than this expire (default 24h).
    #[arg(
        long,
        env = "MARINA_UPLOAD_TTL",
        value_name = "DURATION",
        global = true
    )]
    upload_ttl: Option<String>,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Collect garbage once, online (safe while registries push and pull), and print
    /// `gc: manifests=… blobs=… bytes=… uploads=… in …s`.
    Gc {
        /// Change nothing; report what would be reclaimed.
        #[arg(long)]
        dry_run: bool,
    },
}

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
    /// Notification endpoints.
    #[serde(default)]
    notifications: NotificationsConfig,
}

/// Everything the configuration sources decide.
struct Settings {
    listen: SocketAddr,
    storage: StorageConfig,
    schedule: Schedule,
    tls: TlsConfig,
    auth: AuthConfig,
    limits: LimitsConfig,
    metrics_listen: Option<SocketAddr>,
    log_format: LogFormat,
    notifications: NotificationsConfig,
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

fn load(cli: &Cli) -> Result<Settings, String> {
    let shared = &cli.shared;
    let file = match &shared.config {
        Some(path) => {
            let text = std::fs::read_to_string(path)
                .map_err(|e| format!("reading {}: {e}", path.display()))?;
            toml::from_str::<FileConfig>(&text).map_err(|e| format!("{}: {e}", path.display()))?
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
        storage = storage
            .apply_vars(|k| (k == "STORAGE_TYPE").then(|| t.clone()))
            .map_err(|e| e.to_string())?;
    }
    if let Some(root) = &shared.root_directory {
        storage.filesystem.root_directory = root.clone();
    }
    if shared.sparse_indexes {
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
    };
    let schedule = Schedule {
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
    if schedule.gc_interval.is_some_and(|d| d.is_zero())
        || schedule.upload_expiry_interval.is_some_and(|d| d.is_zero())
    {
        return Err("gc_interval and upload_expiry_interval must be positive (or off)".into());
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
    })
}

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {},
        () = terminate => {},
    }
    tracing::info!("shutdown requested: finishing in-flight requests");
}

/// Keeps glibc's allocator from handing request-body memory back to the kernel after every
/// request, unless the operator set `glibc.malloc` tunables of their own.
///
/// Bodies arrive in buffers of up to a few hundred KiB that hyper allocates as it reads and
/// that are freed once written and hashed. By default glibc returns such memory as soon as
/// 128 KiB lie free at the top of a heap (`madvise(MADV_DONTNEED)`), so the next buffer
/// faults in and zeroes fresh pages: 7% of all CPU time during a monolithic push. Without
/// that, the server used 15% less CPU per push and push-mono ran −1 to +30% faster side by
/// side (README, "Performance"). Peak RSS under 16 concurrent pushes rose by about 10 MiB
/// (40-48 MiB); after a burst up to 64 MiB per heap may stay mapped for reuse.
fn tune_allocator() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        let tuned_by_operator = std::env::var("GLIBC_TUNABLES")
            .is_ok_and(|tunables| tunables.contains("glibc.malloc."));
        if !tuned_by_operator {
            // SAFETY: `mallopt` only sets allocator parameters; it is called before any
            // other thread exists.
            unsafe {
                // Explicit values also fix the mmap threshold, which glibc otherwise adapts:
                // body buffers stay below it, so they come from (and return to) the heap.
                libc::mallopt(libc::M_MMAP_THRESHOLD, 4 << 20);
                libc::mallopt(libc::M_TRIM_THRESHOLD, 64 << 20);
            }
        }
    }
}

fn main() -> std::process::ExitCode {
    tune_allocator();
    match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime.block_on(run()),
        Err(e) => {
            eprintln!("marina-registry: cannot start the async runtime: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}

async fn run() -> std::process::ExitCode {
    let cli = Cli::parse();
    let settings = match load(&cli) {
        Ok(v) => v,
        Err(e) => {
            eprintln!("marina-registry: configuration error: {e}");
            return std::process::ExitCode::from(2);
        }
    };
    // Logs go to stderr; stdout carries only the "listening on" line.
    logging::init(settings.log_format);
    let metrics = settings.metrics_listen.map(|_| Metrics::new());
    let opened = match &metrics {
        Some(metrics) => {
            AnyDriver::from_config_with_metrics(&settings.storage, Arc::clone(metrics)).await
        }
        None => AnyDriver::from_config(&settings.storage).await,
    };
    let driver = match opened {
        Ok(d) => d,
        Err(e) => {
            eprintln!("marina-registry: cannot open storage: {e}");
            return std::process::ExitCode::from(1);
        }
    };
    match cli.command {
        Some(Command::Gc { dry_run }) => collect_garbage(&driver, settings, dry_run).await,
        None => serve(driver, settings, metrics).await,
    }
}

/// `marina-registry gc`: one collection; the summary line is the last thing on stdout.
async fn collect_garbage(
    driver: &AnyDriver,
    settings: Settings,
    dry_run: bool,
) -> std::process::ExitCode {
    let options = GcOptions {
        dry_run,
        ..settings.schedule.gc
    };
    if dry_run {
        tracing::info!("dry run: nothing will be deleted");
    }
    match driver.collect_garbage(&options).await {
        Ok(report) => {
            println!("{report}");
            std::process::ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("marina-registry: garbage collection failed: {e}");
            std::process::ExitCode::from(1)
        }
    }
}

async fn serve(
    driver: AnyDriver,
    settings: Settings,
    metrics: Option<Arc<Metrics>>,
) -> std::process::ExitCode {
    let Settings {
        listen,
        storage,
        schedule,
        tls,
        auth,
        limits,
        metrics_listen,
        notifications,
        ..
    } = settings;
    let tls = match tls
        .files()
        .and_then(|f| f.map(TlsReloader::load).transpose())
    {
        Ok(t) => t.map(Arc::new),
        Err(e) => {
            eprintln!("marina-registry: TLS configuration error: {e}");
            return std::process::ExitCode::from(2);
        }
    };
    let driver_name = driver.driver_name();
    let mut options = RegistryOptions {
        max_manifest_size: storage.max_manifest_size,
        ..RegistryOptions::default()
    };
    limits.apply(&mut options);
    let notifier = match notifications.endpoints.is_empty() {
        true => None,
        false => {
            let options = NotifierOptions {
                scheme: if tls.is_some() { "https" } else { "http" }.into(),
                source_addr: listen.to_string(),
            };
            match Notifier::start(&notifications, options, metrics.as_deref()) {
                Ok(started) => Some(started),
                Err(e) => {
                    eprintln!("marina-registry: configuration error: {e}");
                    return std::process::ExitCode::from(2);
                }
            }
        }
    };
    let (notifier, notifier_tasks) = notifier.unzip();
    let driver = Arc::new(driver);
    let lifecycle_metrics = metrics.clone();
    let _lifecycle = lifecycle::schedule::spawn(Arc::clone(&driver), schedule, move |kind, end| {
        if let Some(metrics) = &lifecycle_metrics {
            metrics.record_lifecycle(kind, &end);
        }
    });
    let (app, authorizer) = match server::registry_app(Arc::clone(&driver), options, &auth) {
        Ok(v) => v,
        Err(e) => {
            eprintln!("marina-registry: access control configuration error: {e}");
            return std::process::ExitCode::from(2);
        }
    };
    let app = app.layer(ObserveLayer::new(metrics.clone(), notifier));
    server::spawn_reloads(tls.clone(), authorizer);
    let listener = match tokio::net::TcpListener::bind(listen).await {
        Ok(l) => l,
        Err(e) => {
            eprintln!("marina-registry: cannot listen on {listen}: {e}");
            return std::process::ExitCode::from(1);
        }
    };
    if let (Some(addr), Some(metrics)) = (metrics_listen, metrics) {
        let health = marina_distribution::observe::health::router(metrics, Arc::clone(&driver));
        match tokio::net::TcpListener::bind(addr).await {
            Ok(l) => {
                let addr = l.local_addr().unwrap_or(addr);
                tracing::info!(
                    "metrics and health checks on http://{addr}/metrics, /healthz, /readyz"
                );
                tokio::spawn(async move { axum::serve(l, health).await });
            }
            Err(e) => {
                eprintln!("marina-registry: cannot listen on {addr} (metrics): {e}");
                return std::process::ExitCode::from(1);
            }
        }
    }
    let addr = listener.local_addr().unwrap_or(listen);
    let where_ = match storage.storage_type {
        marina_distribution::storage::StorageType::Filesystem => {
            format!(" in {}", storage.filesystem.root_directory.display())
        }
        _ => String::new(),
    };
    let scheme = if tls.is_some() { "https" } else { "http" };
    println!("marina-registry listening on {scheme}://{addr}/v2/ ({driver_name} storage{where_})");
    if let Err(e) = server::serve(
        listener,
        app,
        limits.serve_options(),
        tls,
        shutdown_signal(),
    )
    .await
    {
        eprintln!("marina-registry: server error: {e}");
        return std::process::ExitCode::from(1);
    }
    // The router (and with it the notifier's queues) is gone: let queued events go out.
    if let Some(tasks) = notifier_tasks
        && !tasks.finish(Duration::from_secs(5)).await
    {
        tracing::warn!("stopped with notifications still queued");
    }
    tracing::info!("stopped");
    std::process::ExitCode::SUCCESS
}
