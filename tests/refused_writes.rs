//! Serving modes that refuse writes. A read-only registry (`--read-only`,
//! `RegistryOptions::read_only`): pulls are served; every push, upload and delete is refused
//! with `405 UNSUPPORTED` and an `Allow` of what the path still answers, and changes
//! nothing; the binary serves a filesystem root it cannot write and is ready, sends S3
//! nothing but reads; settings that would delete are refused, and `gc` ignores the mode.
//! Deletes disabled (`--disable-deletes`): the same refusal of deletes only.

mod common;

use std::sync::Arc;

use common::binary::{BIN, gc, spawn, wait_for_metrics_address};
use common::unwritable::Unwritable;
use common::{Image, OCI_MANIFEST, Registry, assert_error, body, header, image_manifest};
use marina_distribution::registry::{RegistryOptions, router};
use marina_distribution::{AnyDriver, StorageConfig};
use reqwest::{Method, StatusCode};
use tokio::process::Command;

/// `(method, path)` is refused as a write of a read-only registry, with `allow`.
async fn assert_refused(reader: &Registry, method: Method, path: &str, allow: &str) {
    let resp = reader
        .request(method.clone(), path)
        .header("content-type", OCI_MANIFEST)
        .body(b"{}".to_vec())
        .send()
        .await
        .unwrap();
    assert_eq!(header(&resp, "allow"), allow, "{method} {path}");
    let text = format!("{method} {path}");
    assert_eq!(resp.status(), StatusCode::METHOD_NOT_ALLOWED, "{text}");
    assert_error(resp, 405, "UNSUPPORTED").await;
}

#[tokio::test]
async fn writes_are_refused_and_change_nothing() {
    // One driver behind two routers: the writable one pushes, the read-only one is tested.
    let driver = Arc::new(
        AnyDriver::from_config(&StorageConfig::inmemory())
            .await
            .unwrap(),
    );
    let writable = router(Arc::clone(&driver), RegistryOptions::default());
    let writer = common::serve("inmemory".into(), writable, None, None).await;
    let read_only = RegistryOptions {
        read_only: true,
        ..RegistryOptions::default()
    };
    let reader = common::serve("inmemory".into(), router(driver, read_only), None, None).await;
    let image = writer.push_image("ro/app", "v1", 1).await;
    let session = writer.start_upload("ro/app").await;

    // Everything a pull needs is served.
    assert_pulls(&reader, &image).await;

    // Every write, refused before anything is read or written. An upload path answers
    // nothing at all now: its `Allow` is empty (RFC 9110 §10.2.1).
    let other = image_manifest(&image.config_digest, image.config_size, &[], None);
    let mount = format!(
        "/v2/ro/copy/blobs/uploads/?mount={}&from=ro/app",
        image.layer_digest
    );
    let manifest_by_digest = format!("/v2/ro/app/manifests/{}", image.digest);
    let blob = format!("/v2/ro/app/blobs/{}", image.layer_digest);
    let finish = format!("{session}?digest={}", image.layer_digest);
    let cases = [
        (Method::POST, "/v2/ro/app/blobs/uploads/", ""),
        (Method::POST, mount.as_str(), ""),
        (Method::GET, session.as_str(), ""),
        (Method::PATCH, session.as_str(), ""),
        (Method::PUT, finish.as_str(), ""),
        (Method::DELETE, session.as_str(), ""),
        (Method::PUT, "/v2/ro/app/manifests/v1", "GET, HEAD"),
        (Method::PUT, "/v2/ro/app/manifests/v2", "GET, HEAD"),
        (Method::DELETE, "/v2/ro/app/manifests/v1", "GET, HEAD"),
        (Method::DELETE, manifest_by_digest.as_str(), "GET, HEAD"),
        (Method::DELETE, blob.as_str(), "GET, HEAD"),
        // No endpoint at all for this method: the same `Allow`, without the writes.
        (Method::POST, "/v2/ro/app/manifests/v1", "GET, HEAD"),
    ];
    for (method, path, allow) in cases {
        assert_refused(&reader, method, path, allow).await;
    }
    // A manifest whose push would move `v1`, sent as a client would: refused.
    let resp = reader
        .put_manifest("ro/app", "v1", OCI_MANIFEST, other.as_bytes())
        .await;
    assert_error(resp, 405, "UNSUPPORTED").await;

    // Nothing changed: the tag, the blobs, the session, no new repository.
    let resp = writer.get_manifest("ro/app", "v1").await;
    assert_eq!(header(&resp, "docker-content-digest"), image.digest);
    assert_eq!(
        writer
            .head_blob("ro/app", &image.layer_digest)
            .await
            .status(),
        StatusCode::OK
    );
    assert_eq!(
        writer.upload_status(&session).await.status(),
        StatusCode::NO_CONTENT
    );
    assert_eq!(writer.tag_page("ro/app", None, None).await.tags, ["v1"]);
    assert_eq!(
        writer.catalog_page(None, None).await.repositories,
        ["ro/app"]
    );
}

#[tokio::test]
async fn the_binary_serves_pulls_from_a_root_it_cannot_write() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("data");
    let writer = common::start("filesystem".into(), StorageConfig::filesystem(&root), None).await;
    let image = writer.push_image("ro/app", "v1", 2).await;
    drop(writer);
    let _unwritable = Unwritable::new(&root);
    let (_child, addr, mut log) = spawn(
        Command::new(BIN)
            .env("MARINA_READ_ONLY", "true")
            .env_remove("MARINA_GC_INTERVAL")
            .env_remove("MARINA_UPLOAD_EXPIRY_INTERVAL")
            .arg("--root-directory")
            .arg(&root)
            .args(["--listen", "127.0.0.1:0", "--metrics-listen", "127.0.0.1:0"]),
    )
    .await;
    let metrics = wait_for_metrics_address(&mut log).await;
    // Ready: the probe only reads (a writing probe would fail on this root).
    assert_ready_and_pulled(&metrics, &addr, &image).await;
}

/// The read-only binary listening at `addr` (health checks at `metrics`) is ready, serves
/// every read of `image` (pushed as `ro/app:v1`), and refuses an upload.
async fn assert_ready_and_pulled(metrics: &str, addr: &str, image: &Image) {
    let resp = reqwest::get(format!("http://{metrics}/readyz"))
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    let reader = Registry::new(format!("http://{addr}"));
    assert_pulls(&reader, image).await;
    let resp = reader.post_upload("ro/app").await;
    assert_error(resp, 405, "UNSUPPORTED").await;
}

/// `reader` serves every read of `image`, pushed as `ro/app:v1` (the only repository).
async fn assert_pulls(reader: &Registry, image: &Image) {
    assert_eq!(reader.get("/v2/").await.status(), StatusCode::OK);
    let resp = reader.get_manifest("ro/app", "v1").await;
    assert_eq!(resp.status(), StatusCode::OK);
    assert_eq!(body(resp).await, image.manifest);
    assert_eq!(
        reader.head_manifest("ro/app", &image.digest).await.status(),
        StatusCode::OK
    );
    let resp = reader.get_blob("ro/app", &image.layer_digest).await;
    assert_eq!(body(resp).await, image.layer);
    assert_eq!(
        reader
            .head_blob("ro/app", &image.config_digest)
            .await
            .status(),
        StatusCode::OK
    );
    assert_eq!(reader.tag_page("ro/app", None, None).await.tags, ["v1"]);
    assert_eq!(
        reader.catalog_page(None, None).await.repositories,
        ["ro/app"]
    );
    let referrers = format!("/v2/ro/app/referrers/{}", image.digest);
    assert_eq!(reader.get(&referrers).await.status(), StatusCode::OK);
}

/// Runs the binary with `args` and `MARINA_READ_ONLY=true`, expecting it to stop with a
/// configuration error naming `field`.
async fn assert_refused_setting(args: &[&str], field: &str) {
    let out = Command::new(BIN)
        .env("MARINA_READ_ONLY", "true")
        .env("STORAGE_TYPE", "inmemory")
        .env_remove("MARINA_LISTEN")
        .env_remove("MARINA_GC_INTERVAL")
        .env_remove("MARINA_UPLOAD_EXPIRY_INTERVAL")
        .args(["--listen", "127.0.0.1:0"])
        .args(args)
        .output()
        .await
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{args:?}: {err}");
    assert!(
        err.contains(field) && err.contains("read-only"),
        "{args:?}: {err}"
    );
}

#[tokio::test]
async fn settings_that_delete_are_refused_and_gc_ignores_the_mode() {
    assert_refused_setting(&["--gc-interval", "1h"], "gc_interval").await;
    assert_refused_setting(
        &["--upload-expiry-interval", "1h"],
        "upload_expiry_interval",
    )
    .await;
    // A root that does not exist: it would be made, and served empty.
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("mistyped");
    let storage = ["--storage", "filesystem", "--root-directory"];
    let args = [&storage[..], &[missing.to_str().unwrap()]].concat();
    assert_refused_setting(&args, "root_directory").await;
    assert!(!missing.exists());
    // `off` says the same as the mode: accepted.
    // (`spawn` clears STORAGE_TYPE: the flag says it.)
    let (_child, addr, _log) = spawn(
        Command::new(BIN)
            .env_remove("MARINA_GC_INTERVAL")
            .env_remove("MARINA_UPLOAD_EXPIRY_INTERVAL")
            .args(["--storage", "inmemory"])
            .args(["--read-only", "--upload-expiry-interval", "off"])
            .args(["--listen", "127.0.0.1:0"]),
    )
    .await;
    let resp = Registry::new(format!("http://{addr}"))
        .post_upload("ro/app")
        .await;
    assert_error(resp, 405, "UNSUPPORTED").await;
    // The operator's own collection runs whatever the serving mode.
    let dir = tempfile::tempdir().unwrap();
    gc(dir.path(), &[], &[("MARINA_READ_ONLY", "true")]).await;
}

/// On S3 (behind a proxy that records every request), the read-only binary starts, is
/// ready and serves a pull without sending the store a single request that writes: no
/// conditional-write detection, no probe object, nothing but `GET` and `HEAD`.
#[tokio::test]
async fn on_s3_nothing_but_reads_reach_the_store() {
    let Some(config) = common::s3_storage("read-only") else {
        eprintln!("NOTE: S3_ENDPOINT is not set: read-only on S3 was SKIPPED");
        return;
    };
    let s3 = config.s3.clone().expect("s3");
    let writer = common::start("s3".into(), config, None).await;
    let image = writer.push_image("ro/app", "v1", 3).await;
    drop(writer);
    let proxy =
        common::fault_proxy::FaultProxy::start(&s3.endpoint.expect("endpoint"), 0.0, 1).await;
    let (_child, addr, mut log) = spawn(
        Command::new(BIN)
            .env("S3_ENDPOINT", &proxy.url)
            .env("S3_PREFIX", s3.prefix.as_deref().expect("prefix"))
            .env_remove("S3_CONDITIONAL_WRITES")
            .env_remove("MARINA_GC_INTERVAL")
            .env_remove("MARINA_UPLOAD_EXPIRY_INTERVAL")
            .args(["--storage", "s3", "--read-only"])
            .args(["--listen", "127.0.0.1:0", "--metrics-listen", "127.0.0.1:0"]),
    )
    .await;
    let metrics = wait_for_metrics_address(&mut log).await;
    tokio::spawn(async move { while let Ok(Some(_)) = log.next_line().await {} });
    assert_ready_and_pulled(&metrics, &addr, &image).await;
    let seen = proxy.seen();
    assert!(seen.iter().any(|r| r.method == "HEAD"), "{seen:?}");
    let writes: Vec<_> = seen
        .iter()
        .filter(|r| r.method != "GET" && r.method != "HEAD")
        .collect();
    assert!(writes.is_empty(), "requests that write: {writes:?}");
}

#[tokio::test]
async fn disabled_deletes_are_refused_and_pushes_still_served() {
    let dir = tempfile::tempdir().unwrap();
    let (_child, addr, _log) = spawn(
        Command::new(BIN)
            .env("MARINA_DISABLE_DELETES", "true")
            .arg("--root-directory")
            .arg(dir.path())
            .args(["--listen", "127.0.0.1:0"]),
    )
    .await;
    let s = Registry::new(format!("http://{addr}"));
    let image = s.push_image("no-delete/app", "v1", 4).await;
    let session = s.start_upload("no-delete/app").await;
    let by_digest = format!("/v2/no-delete/app/manifests/{}", image.digest);
    let blob = format!("/v2/no-delete/app/blobs/{}", image.layer_digest);
    let cases = [
        ("/v2/no-delete/app/manifests/v1", "GET, HEAD, PUT"),
        (by_digest.as_str(), "GET, HEAD, PUT"),
        (blob.as_str(), "GET, HEAD"),
    ];
    for (path, allow) in cases {
        assert_refused(&s, Method::DELETE, path, allow).await;
    }
    // Cancelling one's own upload is no delete of stored content: allowed.
    assert_eq!(
        s.cancel_upload(&session).await.status(),
        StatusCode::NO_CONTENT
    );
    let resp = s.get_manifest("no-delete/app", "v1").await;
    assert_eq!(header(&resp, "docker-content-digest"), image.digest);
    assert_eq!(
        s.head_blob("no-delete/app", &image.layer_digest)
            .await
            .status(),
        StatusCode::OK
    );
}
