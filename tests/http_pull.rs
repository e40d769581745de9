//! Spec workflow "Pull" (distribution-spec v1.1, "Pulling manifests", "Pulling blobs",
//! "Checking if content exists", RFC 9110 range requests) over loopback HTTP, every driver.

mod common;

use common::*;
use reqwest::StatusCode;

#[tokio::test]
async fn api_version_check() {
    each_driver("api_version_check", |s| async move {
        // "API Version Check": GET /v2/ answers 200 and sets Docker-Distribution-API-Version.
        let resp = s.client.get(s.url("/v2/")).send().await.unwrap();
        assert_eq!(resp.status(), StatusCode::OK);
        assert_eq!(
            header(&resp, "docker-distribution-api-version"),
            "registry/2.0"
        );
        assert_eq!(resp.text().await.unwrap(), "{}");
    })
    .await;
}

#[tokio::test]
async fn pull_manifest_by_tag_and_digest() {
    each_driver("pull_manifest_by_tag_and_digest", |s| async move {
        let img = s.push_image("library/pull", "v1", 1).await;
        for reference in ["v1", img.digest.as_str()] {
            let resp = s
                .client
                .get(s.url(&format!("/v2/library/pull/manifests/{reference}")))
                .header("accept", OCI_MANIFEST)
                .send()
                .await
                .unwrap();
            assert_eq!(resp.status(), StatusCode::OK);
            // "Content-Type ... should match the Content-Type used when the manifest was
            // pushed", "Docker-Content-Digest: <digest>", body byte for byte.
            assert_eq!(header(&resp, "content-type"), OCI_MANIFEST);
            assert_eq!(header(&resp, "docker-content-digest"), img.digest);
            assert_eq!(
                header(&resp, "content-length"),
                img.manifest.len().to_string()
            );
            assert_eq!(
                resp.bytes().await.unwrap().as_ref(),
                img.manifest.as_slice()
            );

            // HEAD: 200 with Docker-Content-Digest and the exact Content-Length, no body.
            let resp = s
                .client
                .head(s.url(&format!("/v2/library/pull/manifests/{reference}")))
                .send()
                .await
                .unwrap();
            assert_eq!(resp.status(), StatusCode::OK);
            assert_eq!(header(&resp, "docker-content-digest"), img.digest);
            assert_eq!(
                header(&resp, "content-length"),
                img.manifest.len().to_string()
            );
            assert_eq!(header(&resp, "content-type"), OCI_MANIFEST);
            assert!(resp.bytes().await.unwrap().is_empty());
        }
        // Unknown tag / digest: 404 MANIFEST_UNKNOWN.
        let resp = s
            .client
            .get(s.url("/v2/library/pull/manifests/nope"))
            .send()
            .await
            .unwrap();
        assert_error(resp, 404, "MANIFEST_UNKNOWN").await;
        let resp = s
            .client
            .head(s.url(&format!("/v2/library/pull/manifests/{}", sha256(b"x"))))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), StatusCode::NOT_FOUND);
    })
    .await;
}

#[tokio::test]
async fn pull_blob_and_head() {
    each_driver("pull_blob_and_head", |s| async move {
        let img = s.push_image("pull/blob", "latest", 2).await;
        let resp = s
            .client
            .get(s.url(&format!("/v2/pull/blob/blobs/{}", img.layer_digest)))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), StatusCode::OK);
        assert_eq!(header(&resp, "docker-content-digest"), img.layer_digest);
        assert_eq!(header(&resp, "content-length"), img.layer.len().to_string());
        assert_eq!(resp.bytes().await.unwrap().as_ref(), img.layer.as_slice());

        let resp = s
            .client
            .head(s.url(&format!("/v2/pull/blob/blobs/{}", img.layer_digest)))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), StatusCode::OK);
        assert_eq!(header(&resp, "docker-content-digest"), img.layer_digest);
        assert_eq!(header(&resp, "content-length"), img.layer.len().to_string());
        assert!(resp.bytes().await.unwrap().is_empty());

        // Blobs are visible per repository: the same digest in another repository is 404.
        let resp = s
            .client
            .get(s.url(&format!("/v2/other/repo/blobs/{}", img.layer_digest)))
            .send()
            .await
            .unwrap();
        assert_error(resp, 404, "BLOB_UNKNOWN").await;
        let resp = s
            .client
            .head(s.url(&format!("/v2/pull/blob/blobs/{}", sha256(b"absent"))))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), StatusCode::NOT_FOUND);
    })
    .await;
}

#[tokio::test]
async fn range_requests() {
    each_driver("range_requests", |s| async move {
        let data = payload(100, 7);
        let digest = s.push_blob("ranges", &data).await;
        let url = s.url(&format!("/v2/ranges/blobs/{digest}"));
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
            let resp = s
                .client
                .get(&url)
                .header("range", range)
                .send()
                .await
                .unwrap();
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
            assert_eq!(
                resp.bytes().await.unwrap().as_ref(),
                &data[first..=last],
                "{range}"
            );
        }
        // Unsatisfiable: 416 with Content-Range: bytes */<size> (RFC 9110 §15.5.17).
        // A last byte before the first is 416 too, as Go's http.ServeContent and the OCI
        // conformance suite ("range 500-0") have it.
        for range in ["bytes=100-", "bytes=500-600", "bytes=-0", "bytes=50-10"] {
            let resp = s
                .client
                .get(&url)
                .header("range", range)
                .send()
                .await
                .unwrap();
            assert_eq!(header(&resp, "content-range"), "bytes */100", "{range}");
            assert_error(resp, 416, "BLOB_UPLOAD_INVALID").await;
        }
        // Ranges the server does not support are ignored (RFC 9110 §14.2): whole blob.
        for range in ["bytes=0-1,5-6", "items=0-1"] {
            let resp = s
                .client
                .get(&url)
                .header("range", range)
                .send()
                .await
                .unwrap();
            assert_eq!(resp.status(), StatusCode::OK, "{range}");
            assert_eq!(resp.bytes().await.unwrap().as_ref(), data.as_slice());
        }
    })
    .await;
}

#[tokio::test]
async fn empty_blob() {
    each_driver("empty_blob", |s| async move {
        let digest = s.push_blob("empty", b"").await;
        assert_eq!(digest, sha256(b""));
        let resp = s
            .client
            .get(s.url(&format!("/v2/empty/blobs/{digest}")))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), StatusCode::OK);
        assert_eq!(header(&resp, "content-length"), "0");
        assert!(resp.bytes().await.unwrap().is_empty());
        let resp = s
            .client
            .head(s.url(&format!("/v2/empty/blobs/{digest}")))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), StatusCode::OK);
        assert_eq!(header(&resp, "content-length"), "0");
        // Any range of an empty blob is unsatisfiable.
        let resp = s
            .client
            .get(s.url(&format!("/v2/empty/blobs/{digest}")))
            .header("range", "bytes=0-")
            .send()
            .await
            .unwrap();
        assert_eq!(header(&resp, "content-range"), "bytes */0");
        assert_error(resp, 416, "BLOB_UPLOAD_INVALID").await;
        // The empty blob as a single-POST upload as well.
        let resp = s
            .client
            .post(s.url(&format!("/v2/empty2/blobs/uploads/?digest={digest}")))
            .header("content-length", "0")
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), StatusCode::CREATED);
    })
    .await;
}

#[tokio::test]
async fn docker_manifest_type_preserved() {
    each_driver("docker_manifest_type_preserved", |s| async move {
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
        let resp = s.put_manifest("dock", "t", DOCKER, manifest.as_bytes()).await;
        assert_eq!(resp.status(), StatusCode::CREATED);
        let resp = s
            .client
            .get(s.url("/v2/dock/manifests/t"))
            .send()
            .await
            .unwrap();
        assert_eq!(header(&resp, "content-type"), DOCKER);
        assert_eq!(resp.bytes().await.unwrap().as_ref(), manifest.as_bytes());
    })
    .await;
}
