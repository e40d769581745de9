//! Error answers (distribution-spec v1.1, "Error Codes"): every failure carries the JSON
//! envelope `{"errors":[{"code","message","detail"}]}` with a spec code, over every driver.

mod common;

use common::*;
use reqwest::{Method, StatusCode};

#[tokio::test]
async fn invalid_names_are_name_invalid() {
    each_driver("invalid_names_are_name_invalid", |s| async move {
        let long = "a".repeat(256);
        for path in [
            "/v2/Upper/manifests/latest".to_owned(),
            "/v2/a..b/tags/list".to_owned(),
            "/v2/a__-b/blobs/uploads/".to_owned(),
            "/v2/-a/referrers/".to_owned() + &sha256(b""),
            format!("/v2/{long}/manifests/latest"),
            format!("/v2/a%2Fb/blobs/{}", sha256(b"")),
        ] {
            let method = if path.ends_with("/uploads/") {
                Method::POST
            } else {
                Method::GET
            };
            let resp = s.client.request(method, s.url(&path)).send().await.unwrap();
            assert_error(resp, 400, "NAME_INVALID").await;
        }
    })
    .await;
}

#[tokio::test]
async fn bad_digests_and_references() {
    each_driver("bad_digests_and_references", |s| async move {
        for d in [
            "sha256:abc",
            "sha256:ZZ",
            "md5:d41d8cd98f00b204e9800998ecf8427e",
            "sha256:E3B0C44298FC1C149AFBF4C8996FB92427AE41E4649B934CA495991B7852B855",
        ] {
            let resp = s
                .client
                .get(s.url(&format!("/v2/err/blobs/{d}")))
                .send()
                .await
                .unwrap();
            assert_error(resp, 400, "DIGEST_INVALID").await;
            let resp = s
                .client
                .post(s.url(&format!("/v2/err/blobs/uploads/?digest={d}")))
                .body("x")
                .send()
                .await
                .unwrap();
            assert_error(resp, 400, "DIGEST_INVALID").await;
            let resp = s
                .client
                .get(s.url(&format!("/v2/err/manifests/{d}")))
                .send()
                .await
                .unwrap();
            assert_error(resp, 400, "DIGEST_INVALID").await;
        }
        // A tag outside [a-zA-Z0-9_][a-zA-Z0-9._-]{0,127} names no manifest: GET, HEAD and
        // DELETE are 404 (the conformance suite pulls `.INVALID_MANIFEST_NAME` expecting 404);
        // pushing to it is 400 MANIFEST_INVALID.
        let long = "t".repeat(129);
        for t in ["-x", ".INVALID_MANIFEST_NAME", long.as_str()] {
            let url = s.url(&format!("/v2/err/manifests/{t}"));
            let resp = s.client.get(&url).send().await.unwrap();
            assert_error(resp, 404, "MANIFEST_UNKNOWN").await;
            let resp = s.client.head(&url).send().await.unwrap();
            assert_eq!(resp.status(), StatusCode::NOT_FOUND);
            let resp = s.client.delete(&url).send().await.unwrap();
            assert_error(resp, 404, "MANIFEST_UNKNOWN").await;
            let resp = s
                .client
                .put(&url)
                .header("content-type", OCI_MANIFEST)
                .body(r#"{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{"mediaType":"a/b","digest":"sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855","size":0},"layers":[]}"#)
                .send()
                .await
                .unwrap();
            assert_error(resp, 400, "MANIFEST_INVALID").await;
        }
        // An unsupported digest-algorithm for an upload.
        let resp = s
            .client
            .post(s.url("/v2/err/blobs/uploads/?digest-algorithm=md5"))
            .send()
            .await
            .unwrap();
        assert_error(resp, 400, "DIGEST_INVALID").await;
    })
    .await;
}

#[tokio::test]
async fn upload_errors() {
    each_driver("upload_errors", |s| async move {
        // Unknown and malformed session ids: 404 BLOB_UPLOAD_UNKNOWN.
        for id in [
            "0123456789abcdef0123456789abcdef",
            "not-an-id",
            "..%2F..%2Fetc",
        ] {
            let path = format!("/v2/err/blobs/uploads/{id}");
            for m in [Method::GET, Method::PATCH, Method::DELETE] {
                let resp = s.client.request(m, s.url(&path)).send().await.unwrap();
                assert_error(resp, 404, "BLOB_UPLOAD_UNKNOWN").await;
            }
        }
        let loc = s.start_upload("err").await;
        // Closing without ?digest=: 400 DIGEST_INVALID.
        let resp = s.client.put(s.url(&loc)).send().await.unwrap();
        assert_error(resp, 400, "DIGEST_INVALID").await;
        // A malformed Content-Range: 400 BLOB_UPLOAD_INVALID.
        let resp = s
            .client
            .patch(s.url(&loc))
            .header("content-range", "abc")
            .body("x")
            .send()
            .await
            .unwrap();
        assert_error(resp, 400, "BLOB_UPLOAD_INVALID").await;
        // A first chunk not starting at 0: 416 with the session's Range and Location.
        let resp = s
            .client
            .patch(s.url(&loc))
            .header("content-range", "5-5")
            .body("x")
            .send()
            .await
            .unwrap();
        assert_eq!(header(&resp, "range"), "0-0");
        assert!(header(&resp, "location").contains("/blobs/uploads/"));
        assert_error(resp, 416, "BLOB_UPLOAD_INVALID").await;
        // After the 400 and the 416 the session is still usable.
        let digest = sha256(b"hello");
        let resp = s
            .client
            .put(s.with_query(&loc, &format!("digest={digest}")))
            .body("hello")
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), StatusCode::CREATED);
    })
    .await;
}

#[tokio::test]
async fn wrong_methods_and_paths() {
    each_driver("wrong_methods_and_paths", |s| async move {
        let resp = s
            .client
            .post(s.url("/v2/err/manifests/latest"))
            .send()
            .await
            .unwrap();
        assert_error(resp, 405, "UNSUPPORTED").await;
        let resp = s
            .client
            .put(s.url(&format!("/v2/err/blobs/{}", sha256(b""))))
            .send()
            .await
            .unwrap();
        assert_error(resp, 405, "UNSUPPORTED").await;
        let resp = s.client.get(s.url("/v2/err/unknown")).send().await.unwrap();
        assert_error(resp, 404, "UNSUPPORTED").await;
        let resp = s.client.get(s.url("/nope")).send().await.unwrap();
        assert_eq!(header(&resp, "content-type"), "application/json");
        assert_error(resp, 404, "UNSUPPORTED").await;
    })
    .await;
}

#[tokio::test]
async fn manifest_errors() {
    each_driver("manifest_errors", |s| async move {
        for (body, ct) in [
            (&b"not json"[..], OCI_MANIFEST),
            (br#"{"schemaVersion":1}"#, OCI_MANIFEST),
            (br#"{"schemaVersion":2,"mediaType":"application/vnd.oci.image.index.v1+json","manifests":[]}"#, OCI_MANIFEST),
            (br#"{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json"}"#, OCI_MANIFEST),
        ] {
            let resp = s.put_manifest("err/man", "t", ct, body).await;
            assert_error(resp, 400, "MANIFEST_INVALID").await;
        }
        // An index whose child manifest is absent: MANIFEST_BLOB_UNKNOWN.
        let child = sha256(b"child");
        let index = format!(
            "{{\"schemaVersion\":2,\"mediaType\":\"{OCI_INDEX}\",\"manifests\":[{{\"mediaType\":\"{OCI_MANIFEST}\",\"digest\":\"{child}\",\"size\":5}}]}}"
        );
        let resp = s.put_manifest("err/man", "idx", OCI_INDEX, index.as_bytes()).await;
        assert_error(resp, 400, "MANIFEST_BLOB_UNKNOWN").await;
        // Once the child exists, the index is accepted.
        let img = s.push_image("err/man", "child", 1).await;
        let index = format!(
            "{{\"schemaVersion\":2,\"mediaType\":\"{OCI_INDEX}\",\"manifests\":[{{\"mediaType\":\"{OCI_MANIFEST}\",\"digest\":\"{}\",\"size\":{}}}]}}",
            img.digest,
            img.manifest.len()
        );
        let resp = s.put_manifest("err/man", "idx", OCI_INDEX, index.as_bytes()).await;
        assert_eq!(resp.status(), StatusCode::CREATED);
        let resp = s.client.get(s.url("/v2/err/man/manifests/idx")).send().await.unwrap();
        assert_eq!(header(&resp, "content-type"), OCI_INDEX);
        assert_eq!(resp.bytes().await.unwrap().as_ref(), index.as_bytes());
    })
    .await;
}
