//! Blob reads redirected to the store (S3 `redirect = true`): a blob `GET`, whole or ranged,
//! is answered with `307 Temporary Redirect` to a presigned `GetObject` URL carrying
//! `Docker-Content-Digest` and `Blob-Size`; `HEAD` stays local; what the client fetches there
//! is the blob, or its range. Real clients (oci-client, skopeo, oras) follow the redirects in
//! `tests/clients.rs`.
#![cfg(feature = "s3")]

mod common;

use common::*;
use reqwest::StatusCode;

/// Follows a `307` with a client of its own (the store's URL, not the registry's).
async fn follow(location: &str, range: Option<&str>) -> reqwest::Response {
    let mut request = reqwest::Client::new().get(location);
    if let Some(range) = range {
        request = request.header("range", range);
    }
    request.send().await.expect("the store answers")
}

#[tokio::test]
async fn blob_gets_redirect_to_presigned_urls_and_heads_stay_local() {
    let Some(s) = s3_redirect_server("redirects", None).await else {
        return;
    };
    let repo = "redirect/app";
    let data = payload(100_000, 5);
    let digest = s.push_blob(repo, &data).await;
    let endpoint = std::env::var("S3_ENDPOINT").expect("set with an S3 server");

    let resp = s.get_blob(repo, &digest).await;
    assert_eq!(resp.status(), StatusCode::TEMPORARY_REDIRECT);
    assert_eq!(header(&resp, "docker-content-digest"), digest);
    assert_eq!(header(&resp, "blob-size"), data.len().to_string());
    assert_eq!(header(&resp, "content-length"), "0");
    let location = header(&resp, "location");
    assert!(location.starts_with(&endpoint), "{location}");
    assert!(location.contains("X-Amz-Signature="), "{location}");
    assert!(location.contains("X-Amz-Expires=1200"), "{location}");
    let fetched = follow(&location, None).await;
    assert_eq!(fetched.status(), StatusCode::OK);
    assert_eq!(body(fetched).await, data);

    // A range: redirected too, and the store answers it.
    let resp = s.get_blob_range(repo, &digest, "bytes=10-19").await;
    assert_eq!(resp.status(), StatusCode::TEMPORARY_REDIRECT);
    let fetched = follow(&header(&resp, "location"), Some("bytes=10-19")).await;
    assert_eq!(fetched.status(), StatusCode::PARTIAL_CONTENT);
    assert_eq!(body(fetched).await, data[10..20]);
    // An unsatisfiable one is refused here, as without redirects.
    let resp = s.get_blob_range(repo, &digest, "bytes=200000-").await;
    assert_eq!(resp.status(), StatusCode::RANGE_NOT_SATISFIABLE);
    assert_eq!(header(&resp, "content-range"), "bytes */100000");

    // HEAD is answered by the registry.
    let resp = s.head_blob(repo, &digest).await;
    assert_eq!(resp.status(), StatusCode::OK);
    assert_eq!(header(&resp, "content-length"), data.len().to_string());
    assert_eq!(header(&resp, "docker-content-digest"), digest);

    // Blobs not visible in the repository are not redirected.
    let resp = s.get_blob("redirect/other", &digest).await;
    assert_error(resp, 404, "BLOB_UNKNOWN").await;
    let resp = s.get_blob(repo, &sha256(b"never pushed")).await;
    assert_error(resp, 404, "BLOB_UNKNOWN").await;
}

/// With `public_endpoint`, URLs are presigned for the host clients use (here the same server
/// reached as `localhost`).
#[tokio::test]
async fn redirects_use_the_public_endpoint() {
    let Ok(endpoint) = std::env::var("S3_ENDPOINT") else {
        return;
    };
    let public = endpoint.replace("127.0.0.1", "localhost");
    let Some(s) = s3_redirect_server("redirects-public", Some(public.clone())).await else {
        return;
    };
    let repo = "redirect/public";
    let data = payload(5000, 6);
    let digest = s.push_blob(repo, &data).await;
    let resp = s.get_blob(repo, &digest).await;
    assert_eq!(resp.status(), StatusCode::TEMPORARY_REDIRECT);
    let location = header(&resp, "location");
    assert!(location.starts_with(&public), "{location}");
    assert_eq!(body(follow(&location, None).await).await, data);
}
