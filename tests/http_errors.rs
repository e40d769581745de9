//! Error answers (distribution-spec v1.1, "Error Codes"): every failure carries the JSON
//! envelope `{"errors":[{"code","message","detail"}]}` with a spec code, over every driver.

mod common;

use common::*;
use reqwest::{Method, StatusCode};

each_driver_test!(invalid_names_are_name_invalid, |s| async move {
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
        assert_error(s.send(method, &path).await, 400, "NAME_INVALID").await;
    }
});

each_driver_test!(bad_digests_and_references, |s| async move {
    for d in [
        "sha256:abc",
        "sha256:ZZ",
        "md5:d41d8cd98f00b204e9800998ecf8427e",
        "sha256:E3B0C44298FC1C149AFBF4C8996FB92427AE41E4649B934CA495991B7852B855",
    ] {
        assert_error(s.get_blob("err", d).await, 400, "DIGEST_INVALID").await;
        let resp = s.post_blob("err", d, b"x").await;
        assert_error(resp, 400, "DIGEST_INVALID").await;
        assert_error(s.get_manifest("err", d).await, 400, "DIGEST_INVALID").await;
    }
    // A tag outside [a-zA-Z0-9_][a-zA-Z0-9._-]{0,127} names no manifest: GET, HEAD and
    // DELETE are 404 (the conformance suite pulls `.INVALID_MANIFEST_NAME` expecting 404);
    // pushing to it is 400 MANIFEST_INVALID.
    let long = "t".repeat(129);
    let empty_config = sha256(b"");
    let valid = image_manifest(&empty_config, 0, &[], None);
    for t in ["-x", ".INVALID_MANIFEST_NAME", long.as_str()] {
        let resp = s.get_manifest("err", t).await;
        let text = resp.text().await.unwrap();
        assert!(text.contains("is not a valid tag"), "{text}");
        let resp = s.get_manifest("err", t).await;
        assert_error(resp, 404, "MANIFEST_UNKNOWN").await;
        let resp = s.head_manifest("err", t).await;
        assert_eq!(resp.status(), StatusCode::NOT_FOUND);
        let resp = s.delete_manifest("err", t).await;
        assert_error(resp, 404, "MANIFEST_UNKNOWN").await;
        let resp = s
            .put_manifest("err", t, OCI_MANIFEST, valid.as_bytes())
            .await;
        assert_error(resp, 400, "MANIFEST_INVALID").await;
    }
    // An unsupported digest-algorithm for an upload.
    let resp = s.post_upload_with_algorithm("err", "md5").await;
    assert_error(resp, 400, "DIGEST_INVALID").await;
});

each_driver_test!(upload_errors, |s| async move {
    // Unknown and malformed session ids: 404 BLOB_UPLOAD_UNKNOWN.
    for id in [
        "0123456789abcdef0123456789abcdef",
        "not-an-id",
        "..%2F..%2Fetc",
    ] {
        let path = format!("/v2/err/blobs/uploads/{id}");
        for m in [Method::GET, Method::PATCH, Method::DELETE] {
            assert_error(s.send(m, &path).await, 404, "BLOB_UPLOAD_UNKNOWN").await;
        }
    }
    let loc = s.start_upload("err").await;
    // Closing without ?digest=: 400 DIGEST_INVALID.
    let resp = s.send(Method::PUT, &loc).await;
    assert_error(resp, 400, "DIGEST_INVALID").await;
    // A malformed Content-Range: 400 BLOB_UPLOAD_INVALID.
    let resp = s.patch_with_range(&loc, "abc", b"x").await;
    assert_error(resp, 400, "BLOB_UPLOAD_INVALID").await;
    // A first chunk not starting at 0: 416 with the session's Range and Location.
    let resp = s.patch_chunk(&loc, 5, b"x").await;
    assert_eq!(header(&resp, "range"), "0-0");
    assert!(header(&resp, "location").contains("/blobs/uploads/"));
    assert_error(resp, 416, "BLOB_UPLOAD_INVALID").await;
    // After the 400 and the 416 the session is still usable.
    let resp = s.close_upload(&loc, &sha256(b"hello"), b"hello").await;
    assert_eq!(resp.status(), StatusCode::CREATED);
});

each_driver_test!(wrong_methods_and_paths, |s| async move {
    // A 405 says which methods the path has (RFC 9110 §15.5.6: "MUST generate an Allow
    // header field in a 405 response").
    let blob = format!("/v2/err/blobs/{}", sha256(b""));
    for (method, path, allow) in [
        (
            Method::POST,
            "/v2/err/manifests/latest",
            "GET, HEAD, PUT, DELETE",
        ),
        (Method::PUT, blob.as_str(), "GET, HEAD, DELETE"),
        (Method::GET, "/v2/err/blobs/uploads/", "POST"),
        (Method::POST, "/v2/err/tags/list", "GET, HEAD"),
        (Method::DELETE, "/v2/_catalog", "GET, HEAD"),
        (Method::POST, "/v2/", "GET, HEAD"),
    ] {
        let resp = s.send(method.clone(), path).await;
        assert_eq!(header(&resp, "allow"), allow, "{method} {path}");
        assert_error(resp, 405, "UNSUPPORTED").await;
    }
    assert_error(s.get("/v2/err/unknown").await, 404, "UNSUPPORTED").await;
    let resp = s.get("/nope").await;
    assert_eq!(header(&resp, "content-type"), "application/json");
    assert_error(resp, 404, "UNSUPPORTED").await;
});

each_driver_test!(manifest_errors, |s| async move {
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
    let index = image_index(&[(&sha256(b"child"), 5)]);
    let resp = s
        .put_manifest("err/man", "idx", OCI_INDEX, index.as_bytes())
        .await;
    assert_error(resp, 400, "MANIFEST_BLOB_UNKNOWN").await;
    // Once the child exists, the index is accepted.
    let img = s.push_image("err/man", "child", 1).await;
    let index = image_index(&[(&img.digest, img.manifest.len())]);
    s.assert_manifest_round_trip("err/man", "idx", OCI_INDEX, index.as_bytes())
        .await;
});
