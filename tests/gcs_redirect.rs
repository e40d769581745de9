//! Blob reads redirected to the store on GCS (`GCS_REDIRECT=true`, `[storage.gcs] redirect`):
//! the registry, over `AnyDriver`'s GCS variant, answers a blob `GET` with `307 Temporary
//! Redirect` to a V4 signed URL carrying `Docker-Content-Digest` and `Blob-Size`, and what a
//! client fetches there is the blob (or its range). Same engine path as S3's
//! (`tests/s3_redirect.rs`). fake-gcs-server serves signed URLs without checking signatures.
#![cfg(feature = "gcs")]

mod common;

use common::*;
use marina_distribution::registry::RegistryOptions;
use marina_distribution::storage::gcs::{GcsBackend, GcsDriver};
use marina_distribution::storage::{AnyDriver, EngineOptions, GcsConfig, StorageConfig};
use marina_distribution::{Error, StorageDriver};
use reqwest::StatusCode;

/// A registry on the GCS emulator whose driver redirects blob `GET`s for `expiry`, signing
/// with a throwaway key (the emulator's anonymous credentials hold none).
async fn redirect_server(config: &GcsConfig, expiry_secs: u64) -> Server {
    let mut config = config.clone();
    config.redirect = true;
    config.redirect_expiry_secs = Some(expiry_secs);
    let backend = GcsBackend::connect(&config)
        .await
        .expect("backend")
        .with_signing_key(
            "marina-test@example.iam.gserviceaccount.com",
            gcs::throwaway_signing_key(),
        );
    let options = EngineOptions {
        redirect_blob_reads: Some(config.redirect_expiry()),
        ..EngineOptions::default()
    };
    let driver = AnyDriver::Gcs(GcsDriver::from_backend(backend, options));
    serve_driver("gcs".into(), driver, None, RegistryOptions::default()).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn blob_gets_redirect_to_signed_urls() {
    let Some(config) = gcs::config("gcs-redirect", "redirects") else {
        return;
    };
    let s = redirect_server(&config, 600).await;
    let repo = "redirect/app";
    let data = payload(300_000, 7);
    let digest = s.push_blob(repo, &data).await;

    let resp = s.get_blob(repo, &digest).await;
    assert_eq!(resp.status(), StatusCode::TEMPORARY_REDIRECT);
    assert_eq!(header(&resp, "docker-content-digest"), digest);
    assert_eq!(header(&resp, "blob-size"), data.len().to_string());
    assert_eq!(header(&resp, "content-length"), "0");
    let location = header(&resp, "location");
    let base = format!("{}/{}/", config.endpoint(), config.bucket);
    assert!(location.starts_with(&base), "{location}");
    assert!(location.contains("X-Goog-Signature="), "{location}");
    assert!(location.contains("X-Goog-Expires=600"), "{location}");
    let fetched = reqwest::get(&location).await.expect("the store answers");
    assert_eq!(fetched.status(), StatusCode::OK);
    assert_eq!(body(fetched).await, data);

    // A range is redirected too, and the store answers it.
    let resp = s.get_blob_range(repo, &digest, "bytes=10-19").await;
    assert_eq!(resp.status(), StatusCode::TEMPORARY_REDIRECT);
    let fetched = reqwest::Client::new()
        .get(header(&resp, "location"))
        .header("range", "bytes=10-19")
        .send()
        .await
        .expect("the store answers");
    assert_eq!(fetched.status(), StatusCode::PARTIAL_CONTENT);
    assert_eq!(body(fetched).await, data[10..20]);

    // HEAD stays local; blobs not visible in the repository are not redirected.
    let resp = s.head_blob(repo, &digest).await;
    assert_eq!(resp.status(), StatusCode::OK);
    assert_eq!(header(&resp, "docker-content-digest"), digest);
    let resp = s.get_blob("redirect/other", &digest).await;
    assert_error(resp, 404, "BLOB_UNKNOWN").await;
}

/// `GCS_REDIRECT=true` reaches the driver through the factory; without a key to sign with
/// (anonymous credentials) the registry refuses to start, naming `gcs.redirect`, instead of
/// failing every blob `GET`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redirect_without_a_signing_key_is_a_configuration_error() {
    let Some(config) = gcs::config("gcs-redirect", "no-key") else {
        return;
    };
    let vars = |k: &str| (k == "GCS_REDIRECT").then(|| "true".to_owned());
    let storage = StorageConfig::gcs(config)
        .apply_vars(vars)
        .expect("GCS_REDIRECT");
    assert!(storage.gcs.as_ref().expect("gcs").redirect);
    match AnyDriver::from_config(&storage).await {
        Err(Error::Config { field, .. }) => assert_eq!(field, "gcs.redirect"),
        Err(other) => panic!("not a configuration error: {other}"),
        Ok(d) => panic!("started without a signing key: {}", d.driver_name()),
    }
}
