//! The `marina-registry` binary: configuration sources, the printed URL, one log line per
//! request, and graceful shutdown on SIGTERM letting an in-flight request finish.

mod common;

use common::binary::{BIN, gc, send_signal, spawn, wait_for_log, wait_for_metrics_address};
use common::*;
use reqwest::StatusCode;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::process::Command;

#[tokio::test]
async fn config_file_and_logs() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("registry.toml");
    std::fs::write(
        &cfg,
        format!(
            "listen = \"127.0.0.1:0\"\n[storage]\ntype = \"filesystem\"\n[storage.filesystem]\nroot_directory = \"{}\"\n",
            dir.path().join("store").display()
        ),
    )
    .unwrap();
    let (mut child, addr, mut logs) = spawn(Command::new(BIN).arg("--config").arg(&cfg)).await;
    let resp = Registry::new(format!("http://{addr}")).get("/v2/").await;
    assert_eq!(resp.status(), StatusCode::OK);
    assert_eq!(
        header(&resp, "docker-distribution-api-version"),
        "registry/2.0"
    );
    // One log line for the request, with method, path and status.
    let line = wait_for_log(&mut logs, "GET /v2/").await;
    assert!(line.contains(" 200 "), "{line}");
    // The filesystem root of the config file is used.
    assert!(dir.path().join("store").is_dir());
    send_signal(&child, "INT").await;
    let status = child.wait().await.unwrap();
    assert!(status.success(), "{status:?}");
}

#[tokio::test]
async fn bad_configuration_is_reported() {
    let out = Command::new(BIN)
        .env("STORAGE_TYPE", "nope")
        .env_remove("MARINA_LISTEN")
        .arg("--listen")
        .arg("127.0.0.1:0")
        .output()
        .await
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("STORAGE_TYPE"), "{err}");
    // Given as a flag, named as the flag.
    let out = Command::new(BIN)
        .env_remove("STORAGE_TYPE")
        .env_remove("MARINA_LISTEN")
        .args(["--storage", "nope", "--listen", "127.0.0.1:0"])
        .output()
        .await
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("--storage: unknown storage type"), "{err}");
    assert!(!err.contains("STORAGE_TYPE"), "{err}");

    // A flag that would be ignored: --root-directory with another storage type.
    let out = Command::new(BIN)
        .env("STORAGE_TYPE", "inmemory")
        .env_remove("MARINA_LISTEN")
        .args([
            "--root-directory",
            "/tmp/never-used",
            "--listen",
            "127.0.0.1:0",
        ])
        .output()
        .await
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("--root-directory applies to filesystem storage only"),
        "{err}"
    );

    // A GCS credentials file that cannot be used is named as the culprit (not reported as
    // credentials missing).
    #[cfg(feature = "gcs")]
    {
        let dir = tempfile::tempdir().unwrap();
        let key = dir.path().join("key.json");
        std::fs::write(&key, "{\"type\": \"service_account\"").unwrap();
        let out = Command::new(BIN)
            .env("STORAGE_TYPE", "gcs")
            .env("GCS_BUCKET", "marina-test")
            .env_remove("GCS_ANONYMOUS")
            .env("GOOGLE_APPLICATION_CREDENTIALS", &key)
            .env_remove("MARINA_LISTEN")
            .args(["--listen", "127.0.0.1:0"])
            .output()
            .await
            .unwrap();
        assert_eq!(out.status.code(), Some(2));
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains("GOOGLE_APPLICATION_CREDENTIALS"), "{err}");
        assert!(!err.contains("no Application Default Credentials"), "{err}");
    }

    // A configuration file that does not parse is reported by place, without its text: the
    // line may hold a secret.
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("registry.toml");
    std::fs::write(
        &cfg,
        "[notifications]\n[[notifications.endpoints]]\nname = \"hook\"\n\
         url = \"http://hook:PASSWORD@127.0.0.1:1/\"\n\
         headers = { Authorization = \"Bearer SECRET\", X-B = 5 }\n",
    )
    .unwrap();
    for format in ["text", "json"] {
        let out = Command::new(BIN)
            .args(["--config", cfg.to_str().unwrap(), "--log-format", format])
            .args(["--listen", "127.0.0.1:0"])
            .env_remove("MARINA_LISTEN")
            .output()
            .await
            .unwrap();
        assert_eq!(out.status.code(), Some(2), "{format}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains("line 5, column "), "{format}: {err}");
        assert!(!err.contains("SECRET"), "{format}: {err}");
        assert!(!err.contains("PASSWORD"), "{format}: {err}");
    }
}

/// `SSL_CERT_FILE` naming no usable CA (a missing file, a file without a certificate) stops
/// the start of an S3 or GCS registry with a configuration error naming the variable, before
/// any request to the store, whatever the store's scheme: both clients load the CAs when
/// they are built (the S3 SDK panicked on it before this check).
#[cfg(all(feature = "s3", feature = "gcs"))]
#[tokio::test]
async fn a_trust_store_without_a_ca_stops_an_object_store_registry() {
    let pki = common::auth::pki();
    let missing = pki.dir.path().join("missing.pem");
    for driver in ["s3", "gcs"] {
        for scheme in ["https", "http"] {
            for ca in [&missing, &pki.key] {
                // The store is never contacted: port 9 (discard) on loopback.
                let start = Command::new(BIN)
                    .args(["--listen", "127.0.0.1:0", "--storage", driver])
                    .env("S3_ENDPOINT", format!("{scheme}://127.0.0.1:9"))
                    .env("S3_BUCKET", "bucket")
                    .env("GCS_ENDPOINT", format!("{scheme}://127.0.0.1:9"))
                    .env("GCS_BUCKET", "bucket")
                    .env("GCS_ANONYMOUS", "true")
                    .env("SSL_CERT_FILE", ca)
                    .env_remove("SSL_CERT_DIR")
                    .env_remove("MARINA_LISTEN")
                    .env_remove("STORAGE_TYPE")
                    .output();
                let out = tokio::time::timeout(std::time::Duration::from_secs(30), start)
                    .await
                    .expect("the start stopped")
                    .unwrap();
                let err = String::from_utf8_lossy(&out.stderr);
                let case = format!("{driver} over {scheme}, {ca:?}: {err}");
                assert_eq!(out.status.code(), Some(2), "{case}");
                assert!(
                    err.contains("invalid storage configuration: SSL_CERT_FILE: no CA certificate"),
                    "{case}"
                );
            }
        }
    }
}

#[tokio::test]
async fn sigterm_lets_in_flight_requests_finish() {
    let (mut child, addr, mut logs) = spawn(
        Command::new(BIN)
            .arg("--listen")
            .arg("127.0.0.1:0")
            .arg("--storage")
            .arg("inmemory"),
    )
    .await;
    // Open an upload session.
    let location = Registry::new(format!("http://{addr}"))
        .start_upload("shut/down")
        .await;
    wait_for_log(&mut logs, "POST /v2/shut/down/blobs/uploads/").await;

    // A PATCH in flight when the registry is asked to stop. `Expect: 100-continue` makes the
    // server say when the handler starts reading the body, so the request is known to be in
    // progress (not merely queued) before the signal is sent.
    let body = vec![7u8; 2000];
    let mut tcp = tokio::net::TcpStream::connect(&addr).await.unwrap();
    let head = format!(
        "PATCH {location} HTTP/1.1\r\nHost: x\r\nContent-Type: application/octet-stream\r\nContent-Length: {}\r\nExpect: 100-continue\r\nConnection: close\r\n\r\n",
        body.len()
    );
    tcp.write_all(head.as_bytes()).await.unwrap();
    let mut interim = Vec::new();
    while !interim.ends_with(b"\r\n\r\n") {
        let mut b = [0u8; 1];
        assert_eq!(
            tcp.read(&mut b).await.unwrap(),
            1,
            "connection closed early"
        );
        interim.push(b[0]);
    }
    assert!(
        interim.starts_with(b"HTTP/1.1 100"),
        "{}",
        String::from_utf8_lossy(&interim)
    );
    tcp.write_all(&body[..1000]).await.unwrap();
    tcp.flush().await.unwrap();
    send_signal(&child, "TERM").await;
    wait_for_log(&mut logs, "shutdown requested").await;
    // The request in flight still completes.
    tcp.write_all(&body[1000..]).await.unwrap();
    let mut resp = String::new();
    tcp.read_to_string(&mut resp).await.unwrap();
    assert!(resp.starts_with("HTTP/1.1 202"), "{resp}");
    assert!(resp.contains("range: 0-1999"), "{resp}");
    let status = child.wait().await.unwrap();
    assert!(status.success(), "{status:?}");
}

/// The counts of a `gc: manifests=… blobs=… bytes=… uploads=… in …s` line.
fn gc_counts(line: &str) -> [u64; 4] {
    let rest = line
        .strip_prefix("gc: ")
        .unwrap_or_else(|| panic!("not a gc line: {line}"));
    let fields: Vec<&str> = rest.split(' ').collect();
    assert_eq!(fields.len(), 6, "{line}");
    assert_eq!(fields[4], "in", "{line}");
    assert!(fields[5].ends_with('s'), "{line}");
    let value = |i: usize, name: &str| -> u64 {
        fields[i]
            .strip_prefix(&format!("{name}="))
            .unwrap_or_else(|| panic!("no {name} in {line}"))
            .parse()
            .unwrap()
    };
    [
        value(0, "manifests"),
        value(1, "blobs"),
        value(2, "bytes"),
        value(3, "uploads"),
    ]
}

/// The lines of `log` saying a dry run would delete `what` (`digest`).
fn would_delete<'a>(log: &'a str, what: &str, digest: &str) -> Vec<&'a str> {
    log.lines()
        .filter(|l| l.contains("would delete") && l.contains(what) && l.contains(digest))
        .collect()
}

/// `marina-registry gc` on the storage a server left: the dry run reports what the run then
/// reclaims, and a second run finds nothing; `--delete-untagged` adds the untagged manifest.
#[tokio::test]
async fn gc_subcommand_reports_and_reclaims() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("store");
    let (mut child, addr, _logs) = spawn(
        Command::new(BIN)
            .arg("--listen")
            .arg("127.0.0.1:0")
            .arg("--root-directory")
            .arg(&root),
    )
    .await;
    let registry = Registry::new(format!("http://{addr}"));
    let deleted = registry.push_image("gc/deleted", "v1", 1).await;
    let resp = registry
        .delete_manifest("gc/deleted", &deleted.digest)
        .await;
    assert_eq!(resp.status(), StatusCode::ACCEPTED);
    registry.push_image("gc/kept", "v1", 2).await;
    let untagged = registry.push_image("gc/kept", "old", 3).await;
    registry.push_image("gc/kept", "old", 4).await; // the first "old" is now untagged
    registry.start_upload("gc/kept").await; // abandoned
    send_signal(&child, "TERM").await;
    child.wait().await.unwrap();

    let no_grace = ["--grace", "0s", "--upload-ttl", "0s"];
    let (line, log) = gc(&root, &[&no_grace[..], &["--dry-run"]].concat(), &[]).await;
    let dry = gc_counts(&line);
    assert_eq!((dry[0], dry[1], dry[3]), (0, 2, 1), "{dry:?}");
    assert!(dry[2] > 3000, "{dry:?}");
    // The dry run names each blob and link it would delete, and nothing else.
    for digest in [&deleted.layer_digest, &deleted.config_digest] {
        let blob = would_delete(&log, "what=\"blob\"", digest);
        assert_eq!(blob.len(), 1, "{log}");
        assert!(blob[0].contains("bytes="), "{}", blob[0]);
        let link = would_delete(&log, "what=\"blob link\"", digest);
        assert_eq!(link.len(), 1, "{log}");
        assert!(link[0].contains("repository=\"gc/deleted\""), "{}", link[0]);
    }
    assert_eq!(log.matches("would delete").count(), 4, "{log}");
    let (line, log) = gc(&root, &no_grace, &[]).await;
    assert_eq!(gc_counts(&line), dry);
    assert!(!log.contains("would delete"), "{log}");
    assert_eq!(gc_counts(&gc(&root, &no_grace, &[]).await.0), [0, 0, 0, 0]);
    let untagged_args = [&no_grace[..], &["--delete-untagged"]].concat();
    let (_, log) = gc(&root, &[&untagged_args[..], &["--dry-run"]].concat(), &[]).await;
    let manifest = would_delete(&log, "what=\"untagged manifest\"", &untagged.digest);
    assert_eq!(manifest.len(), 1, "{log}");
    assert!(
        manifest[0].contains("repository=\"gc/kept\""),
        "{}",
        manifest[0]
    );
    let reclaimed = gc_counts(&gc(&root, &untagged_args, &[]).await.0);
    assert_eq!((reclaimed[0], reclaimed[1]), (1, 2), "{reclaimed:?}");
}

/// Runs `marina-registry gc` on an S3 store at port 9 of loopback (nothing listens there)
/// with `credentials` (none: no provider of the SDK's chain has any); it must fail with status
/// 1 and no summary. Returns its line saying why.
#[cfg(feature = "s3")]
async fn failed_gc_on_s3(credentials: Option<(&str, &str)>) -> String {
    let mut cmd = Command::new(BIN);
    cmd.args(["gc", "--storage", "s3"])
        .env("S3_ENDPOINT", "http://127.0.0.1:9")
        .env("S3_BUCKET", "bucket")
        .env("AWS_EC2_METADATA_DISABLED", "true")
        .env_remove("STORAGE_TYPE");
    match credentials {
        Some((key, secret)) => cmd
            .env("AWS_ACCESS_KEY_ID", key)
            .env("AWS_SECRET_ACCESS_KEY", secret),
        None => cmd
            .env_remove("AWS_ACCESS_KEY_ID")
            .env_remove("AWS_SECRET_ACCESS_KEY")
            .env_remove("AWS_SESSION_TOKEN")
            .env_remove("AWS_PROFILE")
            .env_remove("AWS_WEB_IDENTITY_TOKEN_FILE")
            .env_remove("AWS_CONTAINER_CREDENTIALS_RELATIVE_URI")
            .env_remove("AWS_CONTAINER_CREDENTIALS_FULL_URI")
            .env("AWS_CONFIG_FILE", "/dev/null")
            .env("AWS_SHARED_CREDENTIALS_FILE", "/dev/null"),
    };
    let out = tokio::time::timeout(std::time::Duration::from_secs(60), cmd.output())
        .await
        .expect("gc stopped")
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(out.stdout.is_empty(), "no summary line");
    let err = String::from_utf8_lossy(&out.stderr);
    err.lines()
        .find(|l| l.starts_with("marina-registry: garbage collection failed: "))
        .unwrap_or_else(|| panic!("no failure line: {err}"))
        .to_owned()
}

/// `marina-registry gc` on a store it cannot reach says why on stderr, down to the cause
/// (here the refused connection), each part once; without credentials it says that instead.
#[cfg(feature = "s3")]
#[tokio::test]
async fn gc_subcommand_says_why_it_failed() {
    let line = failed_gc_on_s3(Some(("key", "secret"))).await;
    assert!(
        line.contains("request not sent (connection failed)"),
        "{line}"
    );
    assert_eq!(line.matches("Connection refused").count(), 1, "{line}");
    let line = failed_gc_on_s3(None).await;
    assert!(line.contains("request not sent (no credentials)"), "{line}");
    assert!(line.contains("no credentials found in chain"), "{line}");
}

/// An S3-compatible store (a custom endpoint) without a configured region: the region comes
/// from the environment or the profile, else `us-east-1`, and the EC2 instance metadata
/// service is never asked (that cost a second or more at every start where there is none,
/// with warnings). A listener standing in for the service must see no connection.
#[cfg(feature = "s3")]
#[tokio::test]
async fn a_custom_endpoint_s_region_is_not_asked_of_the_instance_metadata_service() {
    let metadata_service = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    metadata_service.set_nonblocking(true).unwrap();
    let metadata_url = format!("http://{}", metadata_service.local_addr().unwrap());
    let run = Command::new(BIN)
        .args(["gc", "--storage", "s3"])
        .env("S3_ENDPOINT", "http://127.0.0.1:9")
        .env("S3_BUCKET", "bucket")
        .env("AWS_ACCESS_KEY_ID", "key")
        .env("AWS_SECRET_ACCESS_KEY", "secret")
        .env("AWS_EC2_METADATA_SERVICE_ENDPOINT", &metadata_url)
        .env("AWS_CONFIG_FILE", "/nonexistent")
        .env_remove("AWS_EC2_METADATA_DISABLED")
        .env_remove("S3_REGION")
        .env_remove("AWS_REGION")
        .env_remove("AWS_DEFAULT_REGION")
        .env_remove("AWS_PROFILE")
        .env_remove("STORAGE_TYPE")
        .output();
    let out = tokio::time::timeout(std::time::Duration::from_secs(60), run)
        .await
        .expect("gc stopped")
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(!err.contains("IMDS"), "{err}");
    match metadata_service.accept() {
        Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
        other => panic!("the metadata service was asked: {other:?}\n{err}"),
    }
}

/// The server collects every `gc_interval` and expires uploads every
/// `upload_expiry_interval`, each run logged as a summary line and recorded in the `gc_*`
/// and `upload_sessions_*` series.
#[tokio::test]
async fn the_server_collects_and_expires_periodically() {
    let dir = tempfile::tempdir().unwrap();
    let (mut child, addr, mut logs) = spawn(
        Command::new(BIN)
            .arg("--listen")
            .arg("127.0.0.1:0")
            .arg("--metrics-listen")
            .arg("127.0.0.1:0")
            .arg("--root-directory")
            .arg(dir.path().join("store"))
            .env("MARINA_GC_INTERVAL", "1s")
            .env("MARINA_GC_GRACE", "1s") // spares the pushes below while they run
            .env("MARINA_UPLOAD_TTL", "1s")
            .env("MARINA_UPLOAD_EXPIRY_INTERVAL", "1s"),
    )
    .await;
    let metrics_url = format!(
        "http://{}/metrics",
        wait_for_metrics_address(&mut logs).await
    );
    let registry = Registry::new(format!("http://{addr}"));
    let image = registry.push_image("periodic/gc", "v1", 5).await;
    let location = registry.start_upload("periodic/gc").await;
    let resp = registry.delete_manifest("periodic/gc", &image.digest).await;
    assert_eq!(resp.status(), StatusCode::ACCEPTED);
    let deadline = tokio::time::Duration::from_secs(30);
    tokio::time::timeout(deadline, wait_for_log(&mut logs, "blobs=2"))
        .await
        .expect("a collection reclaimed the deleted image");
    // An expiry run is logged as one, not as a collection.
    let line = tokio::time::timeout(deadline, wait_for_log(&mut logs, "upload expiry: "))
        .await
        .expect("an upload expiry ran");
    assert!(line.contains("uploads=") && !line.contains("gc:"), "{line}");
    let resp = registry
        .get(&format!("/v2/periodic/gc/blobs/{}", image.layer_digest))
        .await;
    assert_eq!(resp.status(), StatusCode::NOT_FOUND);
    // The session expired (by a collection or by the expiry, whichever ran first).
    tokio::time::timeout(deadline, async {
        loop {
            if registry.upload_status(&location).await.status() == StatusCode::NOT_FOUND {
                break;
            }
            tokio::time::sleep(tokio::time::Duration::from_millis(200)).await;
        }
    })
    .await
    .expect("the idle session expired");
    let m = reqwest::get(&metrics_url)
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let series = |name: &str| common::observe::value(&m, name);
    assert!(
        series(r#"marina_gc_runs_total{outcome="success"}"#) >= 1.0,
        "{m}"
    );
    assert_eq!(series(r#"marina_gc_runs_total{outcome="failure"}"#), 0.0);
    assert_eq!(
        series(r#"marina_gc_reclaimed_total{kind="blobs"}"#),
        2.0,
        "{m}"
    );
    assert!(series("marina_gc_reclaimed_bytes_total") > 0.0, "{m}");
    assert!(
        series("marina_gc_last_run_timestamp_seconds") > 1.7e9,
        "{m}"
    );
    let expired = r#"marina_upload_sessions_closed_total{outcome="expired"}"#;
    assert_eq!(series(expired), 1.0, "{m}");
    assert_eq!(series("marina_upload_sessions_open"), 0.0, "{m}");
    send_signal(&child, "TERM").await;
    assert!(child.wait().await.unwrap().success());
}
