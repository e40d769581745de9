//! The binary as a pull-through cache under test: started on a store, with its log and
//! metrics at hand.

use std::path::Path;
use std::time::Duration;

use crate::common::binary::{BIN, spawn, wait_for_log, wait_for_metrics_address};
use crate::common::{Image, Registry, body, header};
use crate::upstreams::Upstream;
use reqwest::StatusCode;
use tokio::process::Command;

/// The binary as a pull-through cache: a client of it, its log and its process.
pub(crate) struct Cache {
    registry: Registry,
    /// `host:port` of its metrics listener.
    metrics: String,
    /// Its log, until [`discard_logs`](Cache::discard_logs).
    logs: Option<tokio::io::Lines<tokio::io::BufReader<tokio::process::ChildStderr>>>,
    /// The manifests it logged as stored so far.
    stored: std::collections::HashSet<String>,
    _process: tokio::process::Child,
}

impl std::ops::Deref for Cache {
    type Target = Registry;

    fn deref(&self) -> &Registry {
        &self.registry
    }
}

impl Cache {
    /// The value of `series` on the cache's `/metrics`.
    pub(crate) async fn series(&self, series: &str) -> f64 {
        let text = reqwest::get(format!("http://{}/metrics", self.metrics))
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        crate::common::observe::value(&text, series)
    }

    /// Reads the cache's log in the background from now on (a busy cache would otherwise
    /// block on a full pipe), passing on only its warnings, errors and lifecycle lines to
    /// the test's output; [`stored`](Self::stored) no longer works.
    pub(crate) fn discard_logs(&mut self) {
        let mut logs = self.logs.take().expect("the log is read already");
        tokio::spawn(async move {
            while let Ok(Some(line)) = logs.next_line().await {
                if ["WARN", "ERROR", "lifecycle"]
                    .iter()
                    .any(|w| line.contains(w))
                {
                    eprintln!("cache: {line}");
                }
            }
        });
    }

    /// Waits until the cache logs that it stored the manifest `digest` (in the background,
    /// after serving it), in whatever order it stores manifests.
    pub(crate) async fn stored(&mut self, digest: &str) {
        let logs = self.logs.as_mut().expect("the log is discarded");
        let wait = async {
            while !self.stored.contains(digest) {
                let line = wait_for_log(logs, "manifest stored").await;
                let logged = line.split("digest=").nth(1).unwrap_or_default();
                let logged = logged.split_whitespace().next().unwrap_or_default();
                self.stored.insert(logged.trim_matches('"').to_owned());
            }
        };
        tokio::time::timeout(Duration::from_secs(60), wait)
            .await
            .unwrap_or_else(|_| panic!("{digest} was not stored"));
    }
}

/// Where a cache stores what it fetched.
#[derive(Clone, Copy)]
pub(crate) enum Store<'a> {
    /// A filesystem root.
    Root(&'a Path),
    /// The test S3 server's bucket (`scripts/with-s3.sh`), under this prefix.
    Bucket(&'a str),
}

/// The binary as a cache of `remote` storing into `store`, trusting the test CA `ca`, with
/// `credentials`.
pub(crate) async fn cache(
    remote: &str,
    ca: &Path,
    store: Store<'_>,
    credentials: Option<(&str, &str)>,
) -> Cache {
    cache_with(remote, ca, store, credentials, &[]).await
}

/// [`cache`] with more command-line arguments.
pub(crate) async fn cache_with(
    remote: &str,
    ca: &Path,
    store: Store<'_>,
    credentials: Option<(&str, &str)>,
    args: &[&str],
) -> Cache {
    let mut cmd = Command::new(BIN);
    cmd.args(args);
    match store {
        Store::Root(root) => cmd.arg("--root-directory").arg(root),
        Store::Bucket(prefix) => cmd.arg("--storage").arg("s3").env("S3_PREFIX", prefix),
    };
    cmd.arg("--listen")
        .arg("127.0.0.1:0")
        .arg("--proxy-remote-url")
        .arg(remote)
        .arg("--metrics-listen")
        .arg("127.0.0.1:0")
        .env("SSL_CERT_FILE", ca)
        .env_remove("MARINA_PROXY_USERNAME")
        .env_remove("MARINA_PROXY_PASSWORD");
    if let Some((user, password)) = credentials {
        cmd.env("MARINA_PROXY_USERNAME", user)
            .env("MARINA_PROXY_PASSWORD", password);
    }
    let (child, addr, mut logs) = spawn(&mut cmd).await;
    Cache {
        registry: Registry::new(format!("http://{addr}")),
        metrics: wait_for_metrics_address(&mut logs).await,
        logs: Some(logs),
        stored: Default::default(),
        _process: child,
    }
}

/// Asserts that `c` serves `image` of `repo` (by `tag` and by digest) byte for byte.
pub(crate) async fn assert_serves(c: &Registry, repo: &str, tag: &str, image: &Image) {
    for reference in [tag, image.digest.as_str()] {
        let resp = c.get_manifest(repo, reference).await;
        assert_eq!(resp.status(), StatusCode::OK, "manifest {reference}");
        assert_eq!(header(&resp, "docker-content-digest"), image.digest);
        assert_eq!(body(resp).await, image.manifest);
    }
    let layer = c.get_blob(repo, &image.layer_digest).await;
    assert_eq!(layer.status(), StatusCode::OK);
    assert_eq!(body(layer).await, image.layer);
    let config = c.get_blob(repo, &image.config_digest).await;
    assert_eq!(config.status(), StatusCode::OK);
    assert_eq!(body(config).await.len(), image.config_size);
}

/// A cache of `up` on a fresh filesystem root (kept while the second value lives), as the
/// upstream user `mirror`.
pub(crate) async fn mirror_of(up: &Upstream) -> (Cache, tempfile::TempDir) {
    let root = tempfile::tempdir().unwrap();
    let cache = cache(
        &up.remote(),
        &up.pki.ca,
        Store::Root(root.path()),
        Some(("mirror", "mirror-pw")),
    )
    .await;
    (cache, root)
}

/// An anonymous cache on a fresh filesystem root (kept while the second value lives) of a
/// test server upstream reached over plain HTTP through `gate`.
pub(crate) async fn cache_of_test_server(
    gate: &crate::common::outage_proxy::OutageProxy,
) -> (Cache, tempfile::TempDir) {
    let root = tempfile::tempdir().unwrap();
    let remote = format!("http://127.0.0.1:{}", gate.port);
    let cache = cache(
        &remote,
        Path::new("/dev/null"),
        Store::Root(root.path()),
        None,
    )
    .await;
    (cache, root)
}
