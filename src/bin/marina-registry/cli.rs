//! The command line: every flag, the environment variable each one also reads, the `gc`
//! subcommand, and the help text (with the environment variables and configuration file
//! keys that have no flag).

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};
use marina_distribution::observe::logging::LogFormat;

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
  268435456: monolithic pushes up to this size in one streamed PutObject; 0 = off),
  S3_REQUEST_TIMEOUT_SECS (default 30: how long one S3 request may go unanswered)
  STORAGE_CACHE (auto|true|false: metadata cache, auto = on for S3 and GCS), STORAGE_CACHE_TTL_MS
  (default 5000: how late another instance's delete may be seen), STORAGE_CACHE_MAX_ENTRIES,
  STORAGE_CACHE_MAX_BYTES, STORAGE_CACHE_TAGS
  AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, ... (standard AWS credential chain)
  SSL_CERT_FILE, SSL_CERT_DIR  CAs trusted for an https:// S3_ENDPOINT or GCS_ENDPOINT
  (default: the system's)
  GCS_BUCKET, GCS_PREFIX, GCS_ENDPOINT, GCS_ANONYMOUS (true: no credentials, emulators),
  GCS_REDIRECT (blob GETs answered with 307 to signed URLs), GCS_REDIRECT_EXPIRY_SECS,
  GCS_SINGLE_PUT_LIMIT (bytes, default 268435456: monolithic pushes up to this size in one
  streamed media upload; 0 = off), GCS_REQUEST_TIMEOUT_SECS (default 30: how long one GCS
  request may go unanswered)
  GOOGLE_APPLICATION_CREDENTIALS, ... (Application Default Credentials)
  RUST_LOG                log filter, e.g. info (default), debug, marina_distribution=trace
  MARINA_TLS_CERT, MARINA_TLS_KEY, MARINA_TLS_CLIENT_CA, MARINA_HTPASSWD (see flags)
  MARINA_READ_ONLY        true: serve pulls only (see --read-only)
  MARINA_DISABLE_DELETES  true: refuse deletes (see --disable-deletes)
  MARINA_PROXY_REMOTE_URL, MARINA_PROXY_USERNAME, MARINA_PROXY_PASSWORD  pull-through cache
  (see --proxy-remote-url); MARINA_PROXY_TTL (see --proxy-ttl)

ENVIRONMENT (lifecycle; durations like 30s, 15m, 24h, or off):
  MARINA_GC_INTERVAL      periodic garbage collection in the server (default off)
  MARINA_GC_GRACE         spare what was written more recently (default 1h)
  MARINA_DELETE_UNTAGGED  true: collections also delete untagged manifests (default false)
  MARINA_UPLOAD_TTL       upload sessions idle longer than this expire (default 24h)
  MARINA_UPLOAD_EXPIRY_INTERVAL  how often the server expires uploads (default 1h)

CONFIG FILE (TOML, all keys optional; docs/configuration.md lists them all):
  listen = \"127.0.0.1:5000\"
  metrics_listen = \"127.0.0.1:5001\"   # /metrics, /healthz, /readyz
  log_format = \"json\"
  read_only = false                 # true: pulls only (pushes and deletes answer 405)
  disable_deletes = false           # true: deletes answer 405
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
  [[storage.immutable_tags]]        # tags that never move once pushed
  repositories = [\"releases/**\"]
  tags = [\"v*\"]
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
  [proxy]                           # a pull-through cache (docs/operations.md)
  remote_url = \"https://registry-1.docker.io\"
  ttl = \"168h\"                    # what it stored is kept this long (\"0s\": kept)
  [[notifications.endpoints]]       # see docs/operations.md
  name = \"ci\"
  url = \"http://127.0.0.1:8080/events\"

EXAMPLES:
  marina-registry
  marina-registry --listen 0.0.0.0:5000 --root-directory /var/lib/registry
  STORAGE_TYPE=s3 S3_BUCKET=reg S3_ENDPOINT=http://127.0.0.1:9000 marina-registry
  STORAGE_TYPE=gcs GCS_BUCKET=reg marina-registry
  marina-registry gc --dry-run --delete-untagged
  skopeo copy --dest-tls-verify=false oci:./layout:latest docker://127.0.0.1:5000/demo:latest"
)]
pub(crate) struct Cli {
    #[command(subcommand)]
    pub(crate) command: Option<Command>,

    /// Address to listen on (HOST:PORT).
    #[arg(long, env = "MARINA_LISTEN", value_name = "HOST:PORT")]
    pub(crate) listen: Option<SocketAddr>,

    /// Run a garbage collection this often inside the server (e.g. 24h; default off).
    #[arg(long, env = "MARINA_GC_INTERVAL", value_name = "DURATION")]
    pub(crate) gc_interval: Option<String>,

    /// Expire idle upload sessions this often inside the server (default 1h; off disables).
    #[arg(long, env = "MARINA_UPLOAD_EXPIRY_INTERVAL", value_name = "DURATION")]
    pub(crate) upload_expiry_interval: Option<String>,

    /// Serve pulls only: pushes, uploads and deletes are answered 405 UNSUPPORTED, nothing
    /// is written or deleted (no periodic collection or upload expiry), and /readyz only
    /// reads, so the storage may be read-only too (MARINA_READ_ONLY).
    #[arg(
        long,
        env = "MARINA_READ_ONLY",
        num_args = 0..=1,
        default_missing_value = "true",
        value_parser = clap::builder::BoolishValueParser::new()
    )]
    pub(crate) read_only: Option<bool>,

    /// Refuse deletes of manifests, tags and blobs with 405 UNSUPPORTED, as CNCF
    /// Distribution does by default; collections still reclaim (MARINA_DISABLE_DELETES).
    #[arg(
        long,
        env = "MARINA_DISABLE_DELETES",
        num_args = 0..=1,
        default_missing_value = "true",
        value_parser = clap::builder::BoolishValueParser::new()
    )]
    pub(crate) disable_deletes: Option<bool>,

    #[command(flatten)]
    pub(crate) shared: Shared,

    /// Serve Prometheus metrics (/metrics) and health checks (/healthz, /readyz) on this
    /// separate address (HOST:PORT). Off by default.
    #[arg(long, env = "MARINA_METRICS_LISTEN", value_name = "HOST:PORT")]
    pub(crate) metrics_listen: Option<SocketAddr>,

    /// Log format: text (default) or json (one object per line).
    #[arg(long, env = "MARINA_LOG_FORMAT", value_name = "FORMAT", global = true)]
    pub(crate) log_format: Option<LogFormat>,

    /// TLS certificate chain (PEM); with --tls-key, serve HTTPS.
    #[arg(long, env = "MARINA_TLS_CERT", value_name = "FILE")]
    pub(crate) tls_cert: Option<PathBuf>,

    /// TLS private key (PEM).
    #[arg(long, env = "MARINA_TLS_KEY", value_name = "FILE")]
    pub(crate) tls_key: Option<PathBuf>,

    /// CA bundle (PEM) client certificates must chain to (mutual TLS).
    #[arg(long, env = "MARINA_TLS_CLIENT_CA", value_name = "FILE")]
    pub(crate) tls_client_ca: Option<PathBuf>,

    /// htpasswd file (bcrypt): require HTTP Basic authentication.
    #[arg(long, env = "MARINA_HTPASSWD", value_name = "FILE")]
    pub(crate) htpasswd: Option<PathBuf>,

    /// Serve as a pull-through cache of the registry at this URL (http or https, a host and
    /// an optional port; Docker Hub's is registry-1.docker.io): pulls are fetched from it and
    /// stored, pushes and deletes answer 405. Credentials: MARINA_PROXY_USERNAME,
    /// MARINA_PROXY_PASSWORD.
    #[arg(long, env = "MARINA_PROXY_REMOTE_URL", value_name = "URL")]
    pub(crate) proxy_remote_url: Option<String>,
}

/// Settings of both the server and `gc`.
#[derive(Args, Debug)]
pub(crate) struct Shared {
    /// TOML configuration file (its keys: `marina-registry --help`, docs/configuration.md).
    #[arg(long, short = 'c', value_name = "FILE", global = true)]
    pub(crate) config: Option<PathBuf>,

    /// Storage driver: filesystem, inmemory, s3 or gcs (overrides STORAGE_TYPE).
    #[arg(long, value_name = "TYPE", global = true)]
    pub(crate) storage: Option<String>,

    /// Filesystem storage root (overrides STORAGE_ROOT_DIRECTORY).
    #[arg(long, value_name = "DIR", global = true)]
    pub(crate) root_directory: Option<PathBuf>,

    /// Accept image indexes whose child manifests are absent (MARINA_SPARSE_INDEXES).
    #[arg(long, global = true)]
    pub(crate) sparse_indexes: bool,

    /// Garbage collections also delete manifests no tag reaches, with their referrers.
    #[arg(
        long,
        env = "MARINA_DELETE_UNTAGGED",
        global = true,
        num_args = 0..=1,
        default_missing_value = "true",
        value_parser = clap::builder::BoolishValueParser::new()
    )]
    pub(crate) delete_untagged: Option<bool>,

    /// A pull-through cache keeps what it stored this long: collections remove older
    /// manifests, tags included, and the next pull fetches them again (default 168h; 0s or
    /// off: kept). A cache that sets no --gc-interval collects every hour.
    #[arg(long, env = "MARINA_PROXY_TTL", value_name = "DURATION", global = true)]
    pub(crate) proxy_ttl: Option<String>,

    /// Garbage collections spare what was written less than this long ago (default 1h;
    /// 0s is safe too).
    #[arg(long, env = "MARINA_GC_GRACE", value_name = "DURATION", global = true)]
    pub(crate) grace: Option<String>,

    /// Upload sessions idle for longer than this expire (default 24h).
    #[arg(
        long,
        env = "MARINA_UPLOAD_TTL",
        value_name = "DURATION",
        global = true
    )]
    pub(crate) upload_ttl: Option<String>,
}

#[derive(Subcommand, Debug)]
pub(crate) enum Command {
    /// Collect garbage once, online (safe while registries push and pull), and print
    /// `gc: manifests=… blobs=… bytes=… uploads=… in …s`.
    Gc {
        /// Change nothing; report what would be reclaimed.
        #[arg(long)]
        dry_run: bool,
    },
}
