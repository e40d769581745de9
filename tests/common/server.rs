//! Starting the registry on a loopback port over each driver (in-memory, filesystem in a
//! temporary directory, S3 when `S3_ENDPOINT` is set and GCS when `GCS_ENDPOINT` is set).

use std::future::Future;
use std::ops::Deref;
use std::sync::Arc;

use marina_distribution::registry::{RegistryOptions, router};
use marina_distribution::{AnyDriver, StorageConfig, StorageDriver};

use super::client::Registry;

/// A running registry; it dereferences to a [`Registry`] client of it.
pub struct Server {
    /// The client.
    pub registry: Registry,
    /// `127.0.0.1:PORT`
    pub addr: String,
    /// Which driver serves it.
    pub driver: String,
    /// The driver's minimum chunk size (`OCI-Chunk-Min-Length`), if any.
    pub chunk_min: Option<u64>,
    _dir: Option<tempfile::TempDir>,
    task: tokio::task::JoinHandle<()>,
}

impl Deref for Server {
    type Target = Registry;

    fn deref(&self) -> &Registry {
        &self.registry
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// The storage configurations every HTTP test runs against.
pub fn configs(test: &str) -> Vec<(String, StorageConfig, Option<tempfile::TempDir>)> {
    let mut out = vec![("inmemory".to_owned(), StorageConfig::inmemory(), None)];
    let dir = tempfile::tempdir().expect("tempdir");
    out.push((
        "filesystem".to_owned(),
        StorageConfig::filesystem(dir.path().join("data")),
        Some(dir),
    ));
    // Said on the real stderr, not the test harness's captured output: a skip is seen.
    let skipped = |what: &str| {
        use std::io::Write as _;
        let _ = writeln!(
            std::io::stderr(),
            "NOTE: {what}_ENDPOINT is not set: {what} cases of {test} were SKIPPED"
        );
    };
    match s3_storage(&format!("http-tests/{test}")) {
        Some(config) => out.push(("s3".to_owned(), config, None)),
        None => skipped("S3"),
    }
    #[cfg(feature = "gcs")]
    match super::gcs::config("http-tests", test) {
        Some(config) => out.push(("gcs".to_owned(), StorageConfig::gcs(config), None)),
        None => skipped("GCS"),
    }
    out
}

/// An S3 configuration from the variables the registry itself reads, below a fresh prefix
/// starting with `prefix`; `None` when `S3_ENDPOINT` is not set.
pub fn s3_storage(prefix: &str) -> Option<StorageConfig> {
    match std::env::var("S3_ENDPOINT") {
        Ok(endpoint_set) if !endpoint_set.is_empty() => {
            let mut s3 = StorageConfig::default()
                .apply_env()
                .expect("S3_* environment variables")
                .s3
                .expect("S3_ENDPOINT is set");
            let unique: u64 = rand_u64();
            s3.prefix = Some(format!("{prefix}-{unique:016x}"));
            Some(StorageConfig::s3(s3))
        }
        _ => None,
    }
}

/// A registry on S3 whose blob `GET`s are redirected to presigned URLs (`redirect = true`),
/// with `public_endpoint` if given; `None` (after saying so) without an S3 server.
pub async fn s3_redirect_server(test: &str, public_endpoint: Option<String>) -> Option<Server> {
    let (name, mut config, dir) = configs(test)
        .into_iter()
        .find(|(name, _, _)| name == "s3")?;
    let s3 = config.s3.as_mut().expect("s3");
    s3.redirect = true;
    s3.public_endpoint = public_endpoint;
    Some(start(name, config, dir).await)
}

fn rand_u64() -> u64 {
    use std::time::{SystemTime, UNIX_EPOCH};
    let t = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64);
    t ^ (std::process::id() as u64).rotate_left(32) ^ (&t as *const u64 as u64)
}

/// Creates the bucket of an S3 configuration if it does not exist (nothing for others).
#[cfg(feature = "s3")]
pub async fn ensure_bucket(cfg: &StorageConfig) {
    let Some(s3) = &cfg.s3 else { return };
    let mut loader = aws_config::defaults(aws_config::BehaviorVersion::latest()).region(
        aws_config::Region::new(s3.region.clone().unwrap_or("us-east-1".into())),
    );
    if let Some(e) = &s3.endpoint {
        loader = loader.endpoint_url(e);
    }
    let conf = loader.load().await;
    let client = aws_sdk_s3::Client::from_conf(
        aws_sdk_s3::config::Builder::from(&conf)
            .force_path_style(s3.force_path_style)
            .build(),
    );
    // "Already owned by you" and similar answers are fine: the bucket exists.
    let _ = client.create_bucket().bucket(&s3.bucket).send().await;
}

/// Nothing to create without the S3 driver.
#[cfg(not(feature = "s3"))]
pub async fn ensure_bucket(_: &StorageConfig) {}

/// Starts a registry over `config` on 127.0.0.1 with an ephemeral port.
pub async fn start(
    driver: String,
    config: StorageConfig,
    dir: Option<tempfile::TempDir>,
) -> Server {
    start_with(driver, config, dir, RegistryOptions::default()).await
}

/// [`start`] with explicit HTTP options.
pub async fn start_with(
    driver: String,
    config: StorageConfig,
    dir: Option<tempfile::TempDir>,
    mut options: RegistryOptions,
) -> Server {
    ensure_bucket(&config).await;
    options.max_manifest_size = options.max_manifest_size.min(config.max_manifest_size);
    let d = AnyDriver::from_config(&config)
        .await
        .unwrap_or_else(|e| panic!("building the {driver} driver: {e}"));
    serve_driver(driver, d, dir, options).await
}

/// Starts a registry over a driver built by the caller on 127.0.0.1 with an ephemeral port.
pub async fn serve_driver(
    driver: String,
    d: AnyDriver,
    dir: Option<tempfile::TempDir>,
    options: RegistryOptions,
) -> Server {
    let chunk_min = d.chunk_min_length();
    serve(driver, router(Arc::new(d), options), dir, chunk_min).await
}

/// Serves `app` (a registry router, possibly with layers) on 127.0.0.1 with an ephemeral
/// port, recording each connection's peer address (`ConnectInfo`).
pub async fn serve(
    driver: String,
    app: axum::Router,
    dir: Option<tempfile::TempDir>,
    chunk_min: Option<u64>,
) -> Server {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr").to_string();
    let app = app.into_make_service_with_connect_info::<std::net::SocketAddr>();
    let task = tokio::spawn(async move {
        axum::serve(listener, app).await.expect("serve");
    });
    Server {
        registry: Registry::new(format!("http://{addr}")),
        addr,
        driver,
        chunk_min,
        _dir: dir,
        task,
    }
}

/// Runs `case` against a fresh server on every driver, naming the driver on failure.
pub async fn each_driver<F, Fut>(test: &str, case: F)
where
    F: Fn(Server) -> Fut,
    Fut: Future<Output = ()>,
{
    for (name, cfg, dir) in configs(test) {
        eprintln!("--- {test} on {name}");
        let server = start(name, cfg, dir).await;
        case(server).await;
    }
}
