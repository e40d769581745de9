//! Metrics and health checks on the metrics listener: HTTP series by endpoint, method and
//! status, bytes, upload sessions, the library API the storage layer, cache and garbage
//! collector record into, and `/readyz` following the storage down and back up.

mod common;

use common::fault_proxy::{Fault, FaultProxy};
use common::outage_proxy::{OutageProxy, host_port};
use std::time::Duration;

use common::observe::{self, value};
use common::unwritable::set_writable;
use marina_distribution::StorageConfig;
use marina_distribution::observe::metrics::Metrics;
use marina_distribution::storage::lifecycle::{GcReport, RunEnd, RunKind};

#[tokio::test]
async fn requests_are_counted_by_endpoint_method_and_status_without_names_or_digests() {
    let reg = observe::start(StorageConfig::inmemory(), None, None).await;
    let s = &reg.server;
    let image = s.push_image("demo/app", "v1", 1).await;
    let head = |path: String| {
        let s = &reg.server;
        async move { s.client.head(s.url(&path)).send().await.unwrap().status() }
    };
    assert_eq!(
        head(format!("/v2/demo/app/blobs/{}", image.layer_digest)).await,
        200
    );
    assert_eq!(
        head(format!("/v2/demo/app/blobs/{}", common::sha256(b"absent"))).await,
        404
    );
    let manifest = s
        .client
        .get(s.url("/v2/demo/app/manifests/v1"))
        .header("accept", common::OCI_MANIFEST)
        .send()
        .await
        .unwrap();
    assert_eq!(manifest.status(), 200);
    let cancelled = s.start_upload("demo/app").await;
    let resp = s.client.delete(s.url(&cancelled)).send().await.unwrap();
    assert_eq!(resp.status(), 204);
    let resp = s
        .client
        .patch(s.url("/v2/demo/app/tags/list"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 405);

    let m = reg.scrape().await;
    let requests = |endpoint: &str, method: &str, status: u16| {
        value(
            &m,
            &format!(
                r#"marina_http_requests_total{{endpoint="{endpoint}",method="{method}",status="{status}"}}"#
            ),
        )
    };
    assert_eq!(requests("upload_start", "POST", 202), 3.0, "{m}");
    assert_eq!(requests("upload_finish", "PUT", 201), 2.0);
    assert_eq!(requests("manifest_put", "PUT", 201), 1.0);
    assert_eq!(requests("blob_get", "HEAD", 200), 1.0);
    assert_eq!(requests("blob_get", "HEAD", 404), 1.0);
    assert_eq!(requests("manifest_get", "GET", 200), 1.0);
    assert_eq!(requests("upload_cancel", "DELETE", 204), 1.0);
    assert_eq!(requests("none", "PATCH", 405), 1.0);
    assert_eq!(
        value(
            &m,
            r#"marina_http_request_duration_seconds_count{endpoint="manifest_get",method="GET"}"#
        ),
        1.0
    );
    let config_len = image.manifest.len(); // sent by the manifest GET
    assert_eq!(
        value(
            &m,
            r#"marina_http_sent_bytes_total{endpoint="manifest_get"}"#
        ),
        config_len as f64
    );
    let blobs_received = value(
        &m,
        r#"marina_http_received_bytes_total{endpoint="upload_finish"}"#,
    );
    assert!(blobs_received >= image.layer.len() as f64, "{m}");
    assert_eq!(value(&m, "marina_http_requests_in_flight"), 0.0);
    assert_eq!(value(&m, "marina_upload_sessions_started_total"), 3.0);
    assert_eq!(
        value(
            &m,
            r#"marina_upload_sessions_closed_total{outcome="committed"}"#
        ),
        2.0
    );
    assert_eq!(
        value(
            &m,
            r#"marina_upload_sessions_closed_total{outcome="cancelled"}"#
        ),
        1.0
    );
    assert_eq!(value(&m, "marina_upload_sessions_open"), 0.0);
    // Bounded cardinality: no repository name, tag or digest in any label.
    for secret in ["demo", "sha256", "v1\""] {
        assert!(!m.contains(secret), "{secret} in the metrics:\n{m}");
    }
    assert_eq!(reg.probe("/healthz").await, (200, "ok\n".into()));
}

/// What the server's lifecycle schedule reports reaches the `gc_*` and `upload_sessions_*`
/// series: a collection's reclaimed objects, a failed collection, an upload expiry alone.
/// (`http_binary.rs` watches a real server's scheduled runs arrive there.)
#[test]
fn lifecycle_runs_are_recorded_into_the_gc_and_upload_series() {
    let metrics = Metrics::new();
    let collection = GcReport {
        blobs: 3,
        bytes: 4096,
        manifests: 1,
        links: 4,
        uploads: 2,
        sessions: 1, // and storage no session owned: not a session closed
        duration: Duration::from_secs(2),
        ..GcReport::default()
    };
    let expiry = GcReport {
        uploads: 1,
        sessions: 1,
        ..GcReport::default()
    };
    let dry = GcReport {
        dry_run: true,
        blobs: 100,
        ..GcReport::default()
    };
    for _ in 0..3 {
        metrics.uploads().started();
    }
    metrics.record_lifecycle(RunKind::Collection, &RunEnd::Done(&collection));
    metrics.record_lifecycle(RunKind::UploadExpiry, &RunEnd::Done(&expiry));
    metrics.record_lifecycle(RunKind::Collection, &RunEnd::Done(&dry));
    let elapsed = Duration::from_millis(10);
    metrics.record_lifecycle(RunKind::Collection, &RunEnd::Failed { elapsed });
    metrics.record_lifecycle(RunKind::UploadExpiry, &RunEnd::Failed { elapsed });

    let m = metrics.encode();
    let series = [
        (r#"marina_gc_runs_total{outcome="success"}"#, 1.0),
        (r#"marina_gc_runs_total{outcome="failure"}"#, 1.0),
        (r#"marina_gc_reclaimed_total{kind="blobs"}"#, 3.0),
        (r#"marina_gc_reclaimed_total{kind="manifests"}"#, 1.0),
        (r#"marina_gc_reclaimed_total{kind="links"}"#, 4.0),
        (r#"marina_gc_reclaimed_total{kind="uploads"}"#, 2.0),
        ("marina_gc_reclaimed_bytes_total", 4096.0),
        ("marina_gc_duration_seconds_count", 2.0),
        ("marina_gc_duration_seconds_sum", 2.01),
        (
            r#"marina_upload_sessions_closed_total{outcome="expired"}"#,
            2.0,
        ),
        ("marina_upload_sessions_open", 1.0),
    ];
    for (name, expected) in series {
        assert_eq!(value(&m, name), expected, "{name} in\n{m}");
    }
    assert!(value(&m, "marina_gc_last_run_timestamp_seconds") > 1.7e9);
}

/// The metadata cache counts its lookups into `marina_cache_requests_total` by kind of fact:
/// the first `HEAD` of a blob and `GET` of a manifest by tag miss, the next ones hit.
#[tokio::test]
async fn cache_lookups_are_counted_by_kind_and_result() {
    let mut config = StorageConfig::inmemory();
    config.cache.enabled = Some(true);
    let reg = observe::start(config, None, None).await;
    let s = &reg.server;
    let image = s.push_image("demo/app", "v1", 1).await;
    for _ in 0..3 {
        let resp = s.head_blob("demo/app", &image.layer_digest).await;
        assert_eq!(resp.status(), 200);
        let resp = s
            .get_manifest_accepting("demo/app", "v1", common::OCI_MANIFEST)
            .await;
        assert_eq!(resp.status(), 200);
    }
    let m = reg.scrape().await;
    let lookups = |cache: &str, result: &str| {
        value(
            &m,
            &format!(r#"marina_cache_requests_total{{cache="{cache}",result="{result}"}}"#),
        )
    };
    for cache in ["links", "manifests", "tags"] {
        assert_eq!(lookups(cache, "miss"), 1.0, "{cache} in\n{m}");
        assert_eq!(lookups(cache, "hit"), 2.0, "{cache} in\n{m}");
    }
}

/// Left to its default, the metadata cache is on where every metadata read is a round trip
/// (S3, GCS) and off for the local drivers: its series appear only there.
#[tokio::test]
async fn the_cache_is_on_by_default_for_the_object_stores_only() {
    for (name, config, dir) in common::server::configs("cache-default") {
        assert_eq!(config.cache.enabled, None, "{name}: left to its default");
        let reg = observe::start(config, dir, None).await;
        let image = reg.server.push_image("demo/app", "v1", 1).await;
        let resp = reg.server.head_blob("demo/app", &image.layer_digest).await;
        assert_eq!(resp.status(), 200);
        let m = reg.scrape().await;
        let cached = m.contains("marina_cache_requests_total{");
        assert_eq!(
            cached,
            matches!(name.as_str(), "s3" | "gcs"),
            "{name}:\n{m}"
        );
    }
}

/// The sum of every series of `name` whose labels contain all of `labels`.
fn sum(metrics: &str, name: &str, labels: &[&str]) -> f64 {
    metrics
        .lines()
        .filter_map(|line| line.strip_prefix(name)?.strip_prefix('{'))
        .filter(|rest| labels.iter().all(|l| rest.contains(l)))
        .filter_map(|rest| rest.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

#[tokio::test]
async fn storage_operations_are_recorded_by_driver_operation_and_outcome() {
    for (name, config, dir) in common::server::configs("storage-metrics") {
        eprintln!("--- storage metrics on {name}");
        let reg = observe::start(config, dir, None).await;
        let s = &reg.server;
        let image = s.push_image("demo/app", "v1", 1).await;
        let pulled = s.get_blob("demo/app", &image.layer_digest).await;
        assert_eq!(pulled.status(), 200);
        assert_eq!(common::body(pulled).await, image.layer);
        let m = reg.scrape().await;
        let driver = format!("driver=\"{name}\"");
        let ops = "marina_storage_operations_total";
        for operation in ["write", "read_blob"] {
            let op = format!("operation=\"{operation}\"");
            assert!(
                sum(&m, ops, &[&driver, &op, "outcome=\"ok\""]) >= 1.0,
                "{name}: no ok {operation} in\n{m}"
            );
            assert!(
                sum(
                    &m,
                    "marina_storage_operation_duration_seconds_count",
                    &[&driver, &op]
                ) >= 1.0,
                "{name}: no {operation} latency in\n{m}"
            );
        }
        assert_eq!(
            sum(&m, ops, &[&driver, "outcome=\"failed\""]),
            0.0,
            "{name}: {m}"
        );
        assert!(sum(&m, ops, &[&driver]) >= 4.0, "{name}: {m}");
    }
}

#[tokio::test]
async fn a_storage_failure_is_recorded_as_such() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("data");
    let reg = observe::start(StorageConfig::filesystem(&root), None, None).await;
    let s = &reg.server;
    s.push_image("demo/app", "v1", 1).await;
    set_writable(&root, false);
    let pushed = s
        .client
        .post(s.url(&format!(
            "/v2/demo/app/blobs/uploads/?digest={}",
            common::sha256(b"after")
        )))
        .body(&b"after"[..])
        .send()
        .await
        .unwrap()
        .status();
    set_writable(&root, true);
    assert!(pushed.is_server_error(), "{pushed}");
    let m = reg.scrape().await;
    let failures = ["outcome=\"failed\"", "outcome=\"unavailable\""].map(|o| {
        sum(
            &m,
            "marina_storage_operations_total",
            &["driver=\"filesystem\"", o],
        )
    });
    assert!(failures.iter().sum::<f64>() >= 1.0, "{m}");
    drop(reg);
    drop(dir);
}

#[tokio::test]
async fn readiness_follows_a_filesystem_root_made_read_only_and_writable_again() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("data");
    let reg = observe::start(StorageConfig::filesystem(&root), None, None).await;
    assert_eq!(reg.probe("/readyz").await, (200, "ready\n".into()));
    set_writable(&root, false);
    let (status, body) = reg.probe("/readyz").await;
    set_writable(&root, true);
    assert_eq!(status, 503, "{body}");
    assert!(body.starts_with("not ready: filesystem"), "{body}");
    assert!(
        !body.contains(root.to_str().unwrap()),
        "the path leaked: {body}"
    );
    assert_eq!(reg.probe("/healthz").await.0, 200);
    assert_eq!(reg.probe("/readyz").await, (200, "ready\n".into()));
    drop(reg);
    drop(dir);
}

/// Polls `/readyz` until it answers 200 (for at most 5 s).
async fn assert_ready_again(reg: &observe::Observed) {
    let mut last = (0, String::new());
    for _ in 0..50 {
        last = reg.probe("/readyz").await;
        if last.0 == 200 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(last, (200, "ready\n".into()));
}

/// A store endpoint seen through an [`OutageProxy`]: `/readyz` answers 503 (naming no endpoint)
/// while the store cannot be reached, from the start (the driver opens all the same) and
/// after it went away, and 200 as soon as it is back; `/healthz` answers 200 throughout.
async fn assert_readiness_follows(target: &str, on_proxy: impl FnOnce(String) -> StorageConfig) {
    let mut proxy = OutageProxy::closed(target).await;
    let reg = observe::start(
        on_proxy(format!("http://127.0.0.1:{}", proxy.port)),
        None,
        None,
    )
    .await;
    let assert_not_ready = |(status, body): (u16, String)| {
        assert_eq!(status, 503, "{body}");
        assert!(body.starts_with("not ready: "), "{body}");
        assert!(!body.contains(target), "the endpoint leaked: {body}");
    };
    let (status, body) = reg.probe("/readyz").await;
    // Nothing listens yet: the reason says the request was not sent.
    assert!(body.contains("connection failed"), "{body}");
    assert_not_ready((status, body));
    assert_eq!(reg.probe("/healthz").await.0, 200);
    proxy.up().await;
    assert_ready_again(&reg).await;
    proxy.take_down().await;
    assert_not_ready(reg.probe("/readyz").await);
    assert_eq!(reg.probe("/healthz").await.0, 200);
    proxy.up().await;
    assert_ready_again(&reg).await;
}

#[tokio::test]
async fn readiness_follows_an_s3_endpoint_going_down_and_coming_back() {
    let Ok(endpoint) = std::env::var("S3_ENDPOINT") else {
        eprintln!("NOTE: S3_ENDPOINT is not set: the S3 readiness case was SKIPPED");
        return;
    };
    let env = StorageConfig::default()
        .apply_env()
        .expect("S3_* variables");
    let real = StorageConfig::s3(env.s3.expect("S3_ENDPOINT is set"));
    common::ensure_bucket(&real).await;
    assert_readiness_follows(&host_port(&endpoint), |endpoint| {
        let mut config = real.clone();
        let s3 = config.s3.as_mut().expect("S3 settings");
        s3.endpoint = Some(endpoint);
        s3.prefix = Some(format!("readiness-{:x}", rand_suffix()));
        config
    })
    .await;
}

#[cfg(feature = "gcs")]
#[tokio::test]
async fn readiness_follows_a_gcs_endpoint_going_down_and_coming_back() {
    let Some(gcs) = common::gcs::config("readiness", "gcs") else {
        eprintln!("NOTE: GCS_ENDPOINT is not set: the GCS readiness case was SKIPPED");
        return;
    };
    assert_readiness_follows(&host_port(gcs.endpoint()), |endpoint| {
        let mut gcs = gcs.clone();
        gcs.endpoint = Some(endpoint);
        StorageConfig::gcs(gcs)
    })
    .await;
}

/// A store that accepts connections and never answers does not hold the start: the S3 and
/// GCS drivers open once their check of the bucket has waited its bound (5 s), not after
/// the clients' attempts and their timeouts (90 s on S3), and the registry starts not ready.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_store_that_never_answers_does_not_hold_the_start() {
    use marina_distribution::StorageDriver as _;
    let silent = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let endpoint = format!("http://{}", silent.local_addr().unwrap());
    let holder = tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((connection, _)) = silent.accept().await {
            held.push(connection);
        }
    });
    let mut configs = Vec::new();
    if std::env::var("S3_ENDPOINT").is_ok() {
        let env = StorageConfig::default()
            .apply_env()
            .expect("S3_* variables");
        let mut s3 = env.s3.expect("S3_ENDPOINT is set");
        s3.endpoint = Some(endpoint.clone());
        configs.push(StorageConfig::s3(s3));
    } else {
        eprintln!("NOTE: S3_ENDPOINT is not set: the S3 case was SKIPPED");
    }
    #[cfg(feature = "gcs")]
    match common::gcs::config("silent", "gcs") {
        Some(mut gcs) => {
            gcs.endpoint = Some(endpoint.clone());
            configs.push(StorageConfig::gcs(gcs));
        }
        None => eprintln!("NOTE: GCS_ENDPOINT is not set: the GCS case was SKIPPED"),
    }
    for config in configs {
        let started = std::time::Instant::now();
        let driver = marina_distribution::AnyDriver::from_config(&config)
            .await
            .expect("the driver opens, not ready");
        let took = started.elapsed();
        // The bound is 5 s; the rest is slack for a loaded machine.
        assert!(
            took < Duration::from_secs(20),
            "{}: {took:?}",
            driver.driver_name()
        );
    }
    holder.abort();
}

fn rand_suffix() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64)
}

/// Store requests sent again after a transient failure are counted by driver
/// (`marina_storage_retries_total`): one `503 SlowDown` aimed at one request of a push
/// through a fault proxy, on S3 (retried by the SDK) and on GCS (by the driver), is counted
/// once, and the push succeeds.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn store_retries_are_counted_by_driver() {
    // (driver, storage behind a fault proxy, the method of the store's writes)
    let mut stores: Vec<(&str, StorageConfig, FaultProxy, &'static str)> = Vec::new();
    if let Ok(endpoint) = std::env::var("S3_ENDPOINT") {
        let env = StorageConfig::default()
            .apply_env()
            .expect("S3_* variables");
        let mut s3 = env.s3.expect("S3_ENDPOINT is set");
        common::ensure_bucket(&StorageConfig::s3(s3.clone())).await;
        let proxy = FaultProxy::start(&endpoint, 0.0, 3).await;
        s3.endpoint = Some(proxy.url.clone());
        s3.prefix = Some(format!("retries-{:x}", rand_suffix()));
        stores.push(("s3", StorageConfig::s3(s3), proxy, "PUT"));
    } else {
        eprintln!("NOTE: S3_ENDPOINT is not set: the S3 case was SKIPPED");
    }
    #[cfg(feature = "gcs")]
    match common::gcs::config("metrics", "retries") {
        Some(mut gcs) => {
            let proxy = FaultProxy::start(gcs.endpoint(), 0.0, 5).await;
            gcs.endpoint = Some(proxy.url.clone());
            stores.push(("gcs", StorageConfig::gcs(gcs), proxy, "POST"));
        }
        None => eprintln!("NOTE: GCS_ENDPOINT is not set: the GCS case was SKIPPED"),
    }
    for (name, config, proxy, write) in stores {
        let reg = observe::start(config, None, None).await;
        let driver = format!("driver=\"{name}\"");
        let retries = |m: &str| sum(m, "marina_storage_retries_total", &[&driver]);
        assert_eq!(retries(&reg.scrape().await), 0.0, "{name}");
        proxy.fault_next(write, "", Fault::SlowDown);
        reg.server.push_image("demo/app", "v1", 1).await;
        assert!(
            proxy.targeted_fault_injected(),
            "{name}: no write was faulted"
        );
        let m = reg.scrape().await;
        assert_eq!(retries(&m), 1.0, "{name}: {m}");
    }
}
