//! Spec workflow "Pull" (distribution-spec v1.1, "Pulling manifests", "Pulling blobs",
//! "Checking if content exists", RFC 9110 range requests) over loopback HTTP, every driver.

mod common;

use common::*;
use reqwest::{Method, StatusCode};

each_driver_test!(api_version_check, |s| async move {
    // "API Version Check": GET /v2/ answers 200 and sets Docker-Distribution-API-Version.
    let resp = s.get("/v2/").await;
    assert_eq!(resp.status(), StatusCode::OK);
    assert_eq!(
        header(&resp, "docker-distribution-api-version"),
        "registry/2.0"
    );
    assert_nosniff(resp.headers());
    assert_eq!(resp.text().await.unwrap(), "{}");
});

/// Asserts a successful manifest or blob answer: 200, `Docker-Content-Digest` and the exact
/// `Content-Length`; returns the body (empty for `HEAD`).
async fn assert_content(resp: reqwest::Response, digest: &str, len: usize) -> Vec<u8> {
    assert_eq!(resp.status(), StatusCode::OK);
    assert_eq!(header(&resp, "docker-content-digest"), digest);
    assert_eq!(header(&resp, "content-length"), len.to_string());
    assert_nosniff(resp.headers());
    body(resp).await
}

each_driver_test!(pull_manifest_by_tag_and_digest, |s| async move {
    let img = s.push_image("library/pull", "v1", 1).await;
    let len = img.manifest.len();
    for reference in ["v1", img.digest.as_str()] {
        // "Content-Type ... should match the Content-Type used when the manifest was
        // pushed", "Docker-Content-Digest: <digest>", body byte for byte.
        let resp = s
            .get_manifest_accepting("library/pull", reference, OCI_MANIFEST)
            .await;
        assert_eq!(header(&resp, "content-type"), OCI_MANIFEST);
        assert_eq!(assert_content(resp, &img.digest, len).await, img.manifest);

        // HEAD: 200 with Docker-Content-Digest and the exact Content-Length, no body.
        let resp = s.head_manifest("library/pull", reference).await;
        assert_eq!(header(&resp, "content-type"), OCI_MANIFEST);
        assert!(assert_content(resp, &img.digest, len).await.is_empty());
    }
    // Unknown tag / digest: 404 MANIFEST_UNKNOWN.
    let resp = s.get_manifest("library/pull", "nope").await;
    assert_error(resp, 404, "MANIFEST_UNKNOWN").await;
    let resp = s.head_manifest("library/pull", &sha256(b"x")).await;
    assert_eq!(resp.status(), StatusCode::NOT_FOUND);
});

each_driver_test!(pull_blob_and_head, |s| async move {
    let img = s.push_image("pull/blob", "latest", 2).await;
    let (digest, len) = (&img.layer_digest, img.layer.len());
    let resp = s.get_blob("pull/blob", digest).await;
    assert_eq!(assert_content(resp, digest, len).await, img.layer);
    let resp = s.head_blob("pull/blob", digest).await;
    assert!(assert_content(resp, digest, len).await.is_empty());

    // Blobs are visible per repository: the same digest in another repository is 404.
    let resp = s.get_blob("other/repo", digest).await;
    assert_error(resp, 404, "BLOB_UNKNOWN").await;
    let resp = s.head_blob("pull/blob", &sha256(b"absent")).await;
    assert_eq!(resp.status(), StatusCode::NOT_FOUND);
});

each_driver_test!(range_requests, |s| async move {
    let data = payload(100, 7);
    let digest = s.push_blob("ranges", &data).await;
    // (Range header, expected first byte, expected last byte)
    let cases = [
        ("bytes=10-19", 10usize, 19usize),
        ("bytes=90-", 90, 99),    // open range
        ("bytes=-5", 95, 99),     // suffix
        ("bytes=-500", 0, 99),    // suffix longer than the blob
        ("bytes=95-200", 95, 99), // last byte clamped to the end
        ("bytes=0-0", 0, 0),
    ];
    for (range, first, last) in cases {
        let resp = s.get_blob_range("ranges", &digest, range).await;
        assert_eq!(resp.status(), StatusCode::PARTIAL_CONTENT, "{range}");
        assert_eq!(
            header(&resp, "content-range"),
            format!("bytes {first}-{last}/100"),
            "{range}"
        );
        assert_eq!(
            header(&resp, "content-length"),
            (last - first + 1).to_string(),
            "{range}"
        );
        assert_eq!(header(&resp, "docker-content-digest"), digest);
        assert_eq!(body(resp).await, &data[first..=last], "{range}");
    }
    // Unsatisfiable: 416 with Content-Range: bytes */<size> (RFC 9110 §15.5.17).
    // A last byte before the first is 416 too, as Go's http.ServeContent and the OCI
    // conformance suite ("range 500-0") have it.
    for range in ["bytes=100-", "bytes=500-600", "bytes=-0", "bytes=50-10"] {
        let resp = s.get_blob_range("ranges", &digest, range).await;
        assert_eq!(header(&resp, "content-range"), "bytes */100", "{range}");
        assert_error(resp, 416, "BLOB_UPLOAD_INVALID").await;
    }
    // Ranges the server does not support are ignored (RFC 9110 §14.2): whole blob.
    for range in ["bytes=0-1,5-6", "items=0-1"] {
        let resp = s.get_blob_range("ranges", &digest, range).await;
        assert_eq!(resp.status(), StatusCode::OK, "{range}");
        assert_eq!(body(resp).await, data);
    }
    // The digest is the blob's entity tag; `If-Range` (RFC 9110 §13.1.5) naming it keeps the
    // range, any other validator (another tag, a weak one, a date) gets the whole blob.
    let etag = format!("\"{digest}\"");
    assert_eq!(header(&s.head_blob("ranges", &digest).await, "etag"), etag);
    let other = format!("\"{}\"", sha256(b"other"));
    let weak = format!("W/{etag}");
    for (if_range, status, len) in [
        (etag.as_str(), StatusCode::PARTIAL_CONTENT, 10),
        (other.as_str(), StatusCode::OK, 100),
        (weak.as_str(), StatusCode::OK, 100),
        ("Sat, 05 Dec 2026 00:00:00 GMT", StatusCode::OK, 100),
    ] {
        let resp = s
            .request(Method::GET, &format!("/v2/ranges/blobs/{digest}"))
            .header("range", "bytes=10-19")
            .header("if-range", if_range)
            .fetch()
            .await;
        assert_eq!(resp.status(), status, "{if_range}");
        assert_eq!(header(&resp, "etag"), etag);
        assert_eq!(body(resp).await.len(), len, "{if_range}");
    }
});

each_driver_test!(empty_blob, |s| async move {
    let digest = s.push_blob("empty", b"").await;
    assert_eq!(digest, sha256(b""));
    let resp = s.get_blob("empty", &digest).await;
    assert!(assert_content(resp, &digest, 0).await.is_empty());
    let resp = s.head_blob("empty", &digest).await;
    assert_eq!(resp.status(), StatusCode::OK);
    assert_eq!(header(&resp, "content-length"), "0");
    // Any range of an empty blob is unsatisfiable.
    let resp = s.get_blob_range("empty", &digest, "bytes=0-").await;
    assert_eq!(header(&resp, "content-range"), "bytes */0");
    assert_error(resp, 416, "BLOB_UPLOAD_INVALID").await;
    // The empty blob as a single-POST upload as well.
    let resp = s.post_blob("empty2", &digest, b"").await;
    assert_eq!(resp.status(), StatusCode::CREATED);
});

each_driver_test!(docker_manifest_type_preserved, |s| async move {
    const DOCKER: &str = "application/vnd.docker.distribution.manifest.v2+json";
    let config = br#"{"architecture":"arm64","os":"linux"}"#;
    let layer = payload(64, 3);
    let cd = s.push_blob("dock", config).await;
    let ld = s.push_blob("dock", &layer).await;
    let manifest = format!(
        "{{\"schemaVersion\":2,\"mediaType\":\"{DOCKER}\",\"config\":{{\"mediaType\":\"application/vnd.docker.container.image.v1+json\",\"size\":{},\"digest\":\"{cd}\"}},\"layers\":[{{\"mediaType\":\"application/vnd.docker.image.rootfs.diff.tar.gzip\",\"size\":{},\"digest\":\"{ld}\"}}]}}",
        config.len(),
        layer.len()
    );
    s.assert_manifest_round_trip("dock", "t", DOCKER, manifest.as_bytes())
        .await;
});
