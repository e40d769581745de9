//! The GCS test server, from the variables the registry itself reads (`GCS_ENDPOINT`,
//! `GCS_BUCKET`, `GCS_ANONYMOUS`; `scripts/with-gcs.sh` starts fake-gcs-server and sets them),
//! shared by the behaviour suite, the HTTP tests and the GCS tests.
#![allow(dead_code)]

use std::io::Write as _;
use std::sync::Once;
use std::sync::atomic::{AtomicU64, Ordering};

use gcloud_storage::client::{Client, ClientConfig};
use gcloud_storage::http::objects::delete::DeleteObjectRequest;
use gcloud_storage::http::objects::list::ListObjectsRequest;
use gcloud_storage::http::objects::upload::{Media, UploadObjectRequest, UploadType};
use marina_distribution::oci::{Digest, RepositoryName};
use marina_distribution::storage::gcs::{GcsBackend, GcsDriver};
use marina_distribution::storage::{EngineOptions, GcsConfig, StorageConfig};

/// Part size of the drivers under test: the smallest a resumable session takes.
pub const PART: u64 = 256 * 1024;

/// The server's base configuration, or `None` (after saying so once, on the real stderr)
/// when `GCS_ENDPOINT` is not set.
pub fn base_config() -> Option<GcsConfig> {
    if std::env::var("GCS_ENDPOINT").map_or(true, |v| v.is_empty()) {
        static SAID: Once = Once::new();
        SAID.call_once(|| {
            let _ = writeln!(
                std::io::stderr(),
                "GCS tests skipped: set GCS_ENDPOINT (scripts/test.sh starts a local fake-gcs-server)"
            );
        });
        return None;
    }
    let config = StorageConfig::default()
        .apply_env()
        .expect("GCS_* environment variables")
        .gcs
        .expect("GCS_ENDPOINT is set");
    Some(config)
}

/// The base configuration under a fresh prefix `<area>/<test>-<pid>-<time>-<n>`.
pub fn config(area: &str, test: &str) -> Option<GcsConfig> {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let mut config = base_config()?;
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    config.prefix = Some(format!(
        "{area}/{test}-{}-{nanos}-{}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    ));
    Some(config)
}

/// A backend on `config` with [`PART`]-byte parts.
pub async fn backend(config: &GcsConfig) -> GcsBackend {
    GcsBackend::connect(config)
        .await
        .expect("backend")
        .with_part_size(PART)
}

/// A driver (the engine with its default options) over [`backend`].
pub async fn driver(config: &GcsConfig) -> GcsDriver {
    GcsDriver::from_backend(backend(config).await, EngineOptions::default())
}

/// A driver-independent client on the same server (anonymous: the emulator checks nothing).
pub fn client(config: &GcsConfig) -> Client {
    Client::new(
        ClientConfig {
            storage_endpoint: config.endpoint().to_owned(),
            ..ClientConfig::default()
        }
        .anonymous(),
    )
}

/// Every object name below `prefix`, with a driver-independent client.
pub async fn objects_below(config: &GcsConfig, prefix: &str) -> Vec<String> {
    let client = client(config);
    let mut names = Vec::new();
    let mut page_token = None;
    loop {
        let page = client
            .list_objects(&ListObjectsRequest {
                bucket: config.bucket.clone(),
                prefix: Some(prefix.to_owned()),
                page_token: page_token.take(),
                ..ListObjectsRequest::default()
            })
            .await
            .expect("listing objects");
        names.extend(page.items.unwrap_or_default().into_iter().map(|o| o.name));
        match page.next_page_token {
            Some(token) => page_token = Some(token),
            None => return names,
        }
    }
}

/// A throwaway RSA key (PEM, PKCS #8) made by `openssl` for this test run only: the emulator
/// does not verify signatures, so any key shows the URL is built and signed.
pub fn throwaway_signing_key() -> String {
    let output = std::process::Command::new("openssl")
        .args([
            "genpkey",
            "-algorithm",
            "RSA",
            "-pkeyopt",
            "rsa_keygen_bits:2048",
        ])
        .output()
        .expect("openssl (installed by .ci/run) generates a test key");
    assert!(output.status.success(), "openssl genpkey failed");
    String::from_utf8(output.stdout).expect("PEM")
}

/// Object names below the test's prefix, relative to it.
pub async fn objects(config: &GcsConfig, under: &str) -> Vec<String> {
    let prefix = config.normalized_prefix();
    objects_below(config, &format!("{prefix}{under}"))
        .await
        .into_iter()
        .map(|name| name[prefix.len()..].to_owned())
        .collect()
}

/// `data` as a request body of `piece`-byte chunks.
pub fn chunked(
    data: &bytes::Bytes,
    piece: usize,
) -> impl futures::Stream<Item = marina_distribution::Result<bytes::Bytes>> + Send + use<> {
    let chunks: Vec<_> = (0..data.len())
        .step_by(piece)
        .map(|at| Ok(data.slice(at..(at + piece).min(data.len()))))
        .collect();
    futures::stream::iter(chunks)
}

/// Writes object `name` (relative to the test's prefix) behind the driver's back.
pub async fn put_object(config: &GcsConfig, name: &str, bytes: &'static [u8]) {
    let full = format!("{}{name}", config.normalized_prefix());
    client(config)
        .upload_object(
            &UploadObjectRequest {
                bucket: config.bucket.clone(),
                ..UploadObjectRequest::default()
            },
            bytes,
            &UploadType::Simple(Media::new(full)),
        )
        .await
        .expect("writing an object");
}

/// Deletes object `name` (relative to the test's prefix) behind the driver's back.
pub async fn delete_object(config: &GcsConfig, name: &str) {
    client(config)
        .delete_object(&DeleteObjectRequest {
            bucket: config.bucket.clone(),
            object: format!("{}{name}", config.normalized_prefix()),
            ..DeleteObjectRequest::default()
        })
        .await
        .expect("deleting an object");
}

/// Asserts that the test's prefix holds exactly blob `digest` and its link in `repo`: nothing
/// staged, no other object.
pub async fn assert_only_blob_and_link(config: &GcsConfig, repo: &RepositoryName, digest: &Digest) {
    let mut stored = objects(config, "").await;
    stored.sort();
    assert_eq!(
        stored,
        [
            format!("blobs/sha256/{}", digest.hex()),
            format!("repositories/{repo}/_layers/sha256/{}", digest.hex()),
        ]
    );
}
