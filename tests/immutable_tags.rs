//! Immutable tags (`[[storage.immutable_tags]]` in the configuration file) through the
//! binary: moving one, deleting one and deleting the manifest one names answer `403 DENIED`
//! (distribution-spec "Error Codes": the registry refuses the request) in the spec's error
//! envelope and change nothing; the same manifest pushed again is accepted; skopeo, a real
//! client, is refused the same way. The rules hold across processes: the storage cases of
//! the behaviour suite race pushes and deletes in two instances on every driver.

mod common;

use common::binary::{BIN, spawn, wait_for_log};
use common::*;
use reqwest::StatusCode;
use tokio::process::Command;

/// A configuration file in `dir` that makes tags `v*` of the repositories below `release/`
/// immutable, with `storage` as its other `[storage]` keys.
fn immutable_config(dir: &tempfile::TempDir, storage: &str) -> std::path::PathBuf {
    let config = dir.path().join("config.toml");
    std::fs::write(
        &config,
        format!(
            "listen = \"127.0.0.1:0\"\n\
             [storage]\n\
             {storage}\n\
             [[storage.immutable_tags]]\n\
             repositories = [\"release/**\"]\n\
             tags = [\"v*\"]\n"
        ),
    )
    .unwrap();
    config
}

/// The binary on a fresh filesystem root with [`immutable_config`]: its address, and what
/// must live as long as it (the process, its log, whose end must stay open, and the
/// temporary directory).
async fn registry_with_immutable_tags() -> (String, impl Sized) {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("root");
    let storage = format!("type = \"filesystem\"\nfilesystem.root_directory = {root:?}");
    let config = immutable_config(&dir, &storage);
    let (child, addr, logs) = spawn(Command::new(BIN).arg("--config").arg(&config)).await;
    (addr, (child, logs, dir))
}

#[tokio::test]
async fn moving_or_deleting_an_immutable_tag_is_denied() {
    let (addr, _running) = registry_with_immutable_tags().await;
    let s = Registry::new(format!("http://{addr}"));
    let image = s.push_image("release/app", "v1", 1).await;
    // Pushed again, the same manifest: accepted.
    let again = s
        .put_manifest("release/app", "v1", OCI_MANIFEST, &image.manifest)
        .await;
    assert_eq!(again.status(), StatusCode::CREATED);
    let other = s.push_image("release/app", "latest", 2).await;
    let moved = s
        .put_manifest("release/app", "v1", OCI_MANIFEST, &other.manifest)
        .await;
    assert_error(moved, 403, "DENIED").await;
    assert_error(s.delete_manifest("release/app", "v1").await, 403, "DENIED").await;
    let by_digest = s.delete_manifest("release/app", &image.digest).await;
    assert_error(by_digest, 403, "DENIED").await;
    let served = s.get_manifest("release/app", "v1").await;
    assert_eq!(header(&served, "docker-content-digest"), image.digest);

    // Other tags and other repositories are mutable.
    let deleted = s.delete_manifest("release/app", &other.digest).await;
    assert_eq!(deleted.status(), StatusCode::ACCEPTED);
    s.push_image("dev/app", "v1", 3).await;
    let moved = s.push_image("dev/app", "v1", 4).await;
    let served = s.get_manifest("dev/app", "v1").await;
    assert_eq!(header(&served, "docker-content-digest"), moved.digest);
    let deleted = s.delete_manifest("dev/app", "v1").await;
    assert_eq!(deleted.status(), StatusCode::ACCEPTED);
}

#[tokio::test]
async fn skopeo_is_refused_moving_an_immutable_tag() {
    if !skopeo::available() {
        return;
    }
    let (addr, _running) = registry_with_immutable_tags().await;
    let s = Registry::new(format!("http://{addr}"));
    let pinned = s.push_image("release/tool", "v2", 5).await;
    let newer = s.push_image("dev/tool", "candidate", 6).await;
    let copy = |from: &str, to: &str| {
        vec![
            "copy".to_owned(),
            "--src-tls-verify=false".to_owned(),
            "--dest-tls-verify=false".to_owned(),
            format!("docker://{addr}/{from}"),
            format!("docker://{addr}/{to}"),
        ]
    };
    // A new immutable tag, and the same image under it again: both accepted.
    skopeo::run_ok(&copy("release/tool:v2", "release/tool:v3")).await;
    skopeo::run_ok(&copy("release/tool:v2", "release/tool:v3")).await;
    let out = skopeo::run(&copy("dev/tool:candidate", "release/tool:v2")).await;
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "skopeo moved the tag: {stderr}");
    assert!(stderr.contains("denied"), "{stderr}");
    for tag in ["v2", "v3"] {
        let served = s.get_manifest("release/tool", tag).await;
        assert_eq!(header(&served, "docker-content-digest"), pinned.digest);
    }
    assert_ne!(newer.digest, pinned.digest);
}

/// On an S3 store without conditional writes, which cannot create a tag only where none
/// is, the binary says at start that two processes may both create one immutable tag.
#[tokio::test]
async fn on_s3_without_conditional_writes_the_binary_warns() {
    let Some(storage) = common::s3_storage("immutable-warning") else {
        eprintln!("NOTE: S3_ENDPOINT is not set: the S3 warning case was SKIPPED");
        return;
    };
    ensure_bucket(&storage).await;
    let dir = tempfile::tempdir().unwrap();
    let config = immutable_config(&dir, "type = \"s3\"");
    let prefix = storage.s3.and_then(|s3| s3.prefix).expect("prefix");
    let (_child, _addr, mut log) = spawn(
        Command::new(BIN)
            .arg("--config")
            .arg(&config)
            .env("S3_PREFIX", prefix)
            .env("S3_CONDITIONAL_WRITES", "false"),
    )
    .await;
    let warning = wait_for_log(&mut log, "immutable tags without conditional writes");
    let line = tokio::time::timeout(std::time::Duration::from_secs(30), warning)
        .await
        .expect("no warning in the first 30 s of the log");
    assert!(line.contains("WARN"), "{line}");
}
