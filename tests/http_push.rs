//! Spec workflow "Push" (distribution-spec v1.1, "Pushing blobs", "Pushing a blob in
//! chunks", "Mounting a blob", "Pushing Manifests") over loopback HTTP, every driver.

mod common;

use common::*;
use reqwest::{Method, StatusCode};

each_driver_test!(monolithic_post_then_put, |s| async move {
    let data = payload(5000, 1);
    let digest = sha256(&data);
    let resp = s.post_upload("push/mono").await;
    // "POST ... MUST return 202 Accepted with a Location header".
    assert_eq!(resp.status(), StatusCode::ACCEPTED);
    let loc = header(&resp, "location");
    assert!(loc.starts_with("/v2/push/mono/blobs/uploads/"), "{loc}");
    assert!(!header(&resp, "docker-upload-uuid").is_empty());
    // "If the registry has a minimum chunk size, the POST response SHOULD include
    // OCI-Chunk-Min-Length".
    assert_eq!(
        optional_header(&resp, "oci-chunk-min-length").map(|v| v.parse::<u64>().unwrap()),
        s.chunk_min,
        "driver {}",
        s.driver
    );
    let resp = s.close_upload(&loc, &digest, &data).await;
    assert_eq!(resp.status(), StatusCode::CREATED);
    let blob_loc = header(&resp, "location");
    assert_eq!(blob_loc, format!("/v2/push/mono/blobs/{digest}"));
    assert_eq!(header(&resp, "docker-content-digest"), digest);
    // The Location is a pullable blob URL.
    assert_eq!(body(s.get(&blob_loc).await).await, data);
    // The session is over.
    assert_error(s.upload_status(&loc).await, 404, "BLOB_UPLOAD_UNKNOWN").await;
});

each_driver_test!(single_post_monolithic, |s| async move {
    let data = payload(10_000, 2);
    let digest = sha256(&data);
    let resp = s.post_blob("push/single", &digest, &data).await;
    assert_eq!(resp.status(), StatusCode::CREATED);
    assert_eq!(header(&resp, "docker-content-digest"), digest);
    let loc = header(&resp, "location");
    assert_eq!(body(s.get(&loc).await).await, data);

    // Wrong digest: 400 DIGEST_INVALID and nothing becomes visible.
    let other = sha256(b"something else");
    let resp = s.post_blob("push/single", &other, &payload(100, 9)).await;
    assert_error(resp, 400, "DIGEST_INVALID").await;
    assert_eq!(s.blob_content("push/single", &other).await, None);
});

each_driver_test!(chunked_with_416_recovery, |s| async move {
    let data = payload(3000, 3);
    let digest = sha256(&data);
    let mut loc = s.start_upload("push/chunked").await;
    // GET on a fresh session: 204 with Location and Range.
    let resp = s.upload_status(&loc).await;
    assert_eq!(resp.status(), StatusCode::NO_CONTENT);
    assert_eq!(header(&resp, "range"), "0-0");
    assert!(!header(&resp, "location").is_empty());

    let resp = s.patch_chunk(&loc, 0, &data[..1000]).await;
    // "202 Accepted ... Location: <location>, Range: 0-<end-of-range>".
    assert_eq!(resp.status(), StatusCode::ACCEPTED);
    assert_eq!(header(&resp, "range"), "0-999");
    loc = header(&resp, "location");

    // A chunk out of order (not starting at 1000): 416, session untouched.
    let resp = s.patch_chunk(&loc, 500, &data[500..1500]).await;
    assert_eq!(header(&resp, "range"), "0-999");
    assert!(!header(&resp, "location").is_empty());
    assert_error(resp, 416, "BLOB_UPLOAD_INVALID").await;
    // A Content-Length contradicting the Content-Range: 416 too.
    let resp = s
        .patch_with_range(&loc, "1000-1999", &data[1000..1500])
        .await;
    assert_eq!(resp.status(), StatusCode::RANGE_NOT_SATISFIABLE);

    // Recover: GET gives the offset to resume from.
    let resp = s.upload_status(&loc).await;
    assert_eq!(resp.status(), StatusCode::NO_CONTENT);
    assert_eq!(header(&resp, "range"), "0-999");
    loc = header(&resp, "location");

    for (start, end) in [(1000, 2000), (2000, 3000)] {
        let resp = s.patch_chunk(&loc, start, &data[start as usize..end]).await;
        assert_eq!(resp.status(), StatusCode::ACCEPTED);
        assert_eq!(header(&resp, "range"), format!("0-{}", end - 1));
        loc = header(&resp, "location");
    }

    // Close with a PUT without body.
    let resp = s.close_upload(&loc, &digest, b"").await;
    assert_eq!(resp.status(), StatusCode::CREATED);
    assert_eq!(
        header(&resp, "location"),
        format!("/v2/push/chunked/blobs/{digest}")
    );
    assert_eq!(s.blob_content("push/chunked", &digest).await, Some(data));
});

each_driver_test!(early_errors_reach_a_client_still_sending, |s| async move {
    // The registry can tell a chunk is out of order (or the session unknown) before
    // reading it; a client still sending a large body must get the 416/404 answer, not a
    // reset connection.
    let big = payload(16 * 1024 * 1024, 16);
    let loc = s.start_upload("push/early").await;
    for _ in 0..3 {
        let resp = s.patch_chunk(&loc, 100, &big).await;
        assert_eq!(header(&resp, "range"), "0-0");
        assert_error(resp, 416, "BLOB_UPLOAD_INVALID").await;
    }
    let unknown = "/v2/push/early/blobs/uploads/0123456789abcdef0123456789abcdef";
    let resp = s.patch_unranged(unknown, &big).await;
    assert_error(resp, 404, "BLOB_UPLOAD_UNKNOWN").await;
    // The session is still usable.
    let resp = s.patch_chunk(&loc, 0, b"ok").await;
    assert_eq!(resp.status(), StatusCode::ACCEPTED);
});

each_driver_test!(one_byte_chunks_and_final_chunk_in_put, |s| async move {
    let data = payload(33, 4);
    let digest = sha256(&data);
    let mut loc = s.start_upload("push/bytes").await;
    for i in 0..30u64 {
        let resp = s.patch_chunk(&loc, i, &data[i as usize..=i as usize]).await;
        assert_eq!(resp.status(), StatusCode::ACCEPTED, "byte {i}");
        assert_eq!(header(&resp, "range"), format!("0-{i}"));
        loc = header(&resp, "location");
    }
    // The final chunk rides on the closing PUT, with its Content-Range.
    let resp = s.close_upload_at(&loc, &digest, 30, &data[30..]).await;
    assert_eq!(resp.status(), StatusCode::CREATED);
    assert_eq!(s.blob_content("push/bytes", &digest).await, Some(data));
});

each_driver_test!(streamed_patch_without_length, |s| async move {
    let data = payload(200_000, 5);
    let digest = sha256(&data);
    let loc = s.start_upload("push/stream").await;
    // No Content-Length, no Content-Range: chunked transfer encoding.
    let resp = s
        .request(Method::PATCH, &loc)
        .body(streamed(&data, 7_777))
        .fetch()
        .await;
    assert_eq!(resp.status(), StatusCode::ACCEPTED);
    assert!(resp.headers().get("content-length").is_some());
    assert_eq!(header(&resp, "range"), format!("0-{}", data.len() - 1));
    let loc = header(&resp, "location");
    // A PUT without a body closes it.
    let resp = s.closing(&loc, &digest).fetch().await;
    assert_eq!(resp.status(), StatusCode::CREATED);
    assert_eq!(s.blob_content("push/stream", &digest).await, Some(data));
});

each_driver_test!(cancel_upload, |s| async move {
    let loc = s.start_upload("push/cancel").await;
    let resp = s.patch_chunk(&loc, 0, b"abc").await;
    assert_eq!(resp.status(), StatusCode::ACCEPTED);
    let resp = s.cancel_upload(&loc).await;
    assert_eq!(resp.status(), StatusCode::NO_CONTENT);
    assert_error(s.upload_status(&loc).await, 404, "BLOB_UPLOAD_UNKNOWN").await;
    let resp = s.patch_chunk(&loc, 3, b"d").await;
    assert_error(resp, 404, "BLOB_UPLOAD_UNKNOWN").await;
    let resp = s.close_upload(&loc, &sha256(b"abc"), b"").await;
    assert_error(resp, 404, "BLOB_UPLOAD_UNKNOWN").await;
});

each_driver_test!(digest_mismatch_on_close, |s| async move {
    let loc = s.start_upload("push/mismatch").await;
    let wrong = sha256(b"not the content");
    let resp = s.close_upload(&loc, &wrong, b"the content").await;
    assert_error(resp, 400, "DIGEST_INVALID").await;
    assert_eq!(s.blob_content("push/mismatch", &wrong).await, None);
    let right = sha256(b"the content");
    assert_eq!(s.blob_content("push/mismatch", &right).await, None);
});

each_driver_test!(mount_from_other_repository, |s| async move {
    let data = payload(4096, 6);
    let digest = s.push_blob("mount/src", &data).await;
    // With `from` holding the blob: 201 and the blob is pullable from the target.
    let resp = s.mount_blob("mount/dst", &digest, Some("mount/src")).await;
    assert_eq!(resp.status(), StatusCode::CREATED);
    assert_eq!(
        header(&resp, "location"),
        format!("/v2/mount/dst/blobs/{digest}")
    );
    assert_eq!(header(&resp, "docker-content-digest"), digest);
    assert_eq!(s.blob_content("mount/dst", &digest).await, Some(data));

    // `from` lacks the blob: 202 with a usable session.
    let absent = payload(99, 8);
    let absent_digest = sha256(&absent);
    let resp = s
        .mount_blob("mount/dst2", &absent_digest, Some("mount/src"))
        .await;
    assert_eq!(resp.status(), StatusCode::ACCEPTED);
    let loc = header(&resp, "location");
    let resp = s.close_upload(&loc, &absent_digest, &absent).await;
    assert_eq!(resp.status(), StatusCode::CREATED);
    let mounted = s.blob_content("mount/dst2", &absent_digest).await;
    assert_eq!(mounted, Some(absent));

    // Without `from`: a new session (the blob is not in the target yet).
    let resp = s.mount_blob("mount/dst3", &digest, None).await;
    assert_eq!(resp.status(), StatusCode::ACCEPTED);
    assert!(header(&resp, "location").starts_with("/v2/mount/dst3/blobs/uploads/"));
    // ... even when the target already has it: no automatic content discovery (the
    // conformance suite's "automatic content discovery disabled should return a 202").
    let resp = s.mount_blob("mount/dst", &digest, None).await;
    assert_eq!(resp.status(), StatusCode::ACCEPTED);
});

/// Asserts the answer to a PATCH (202), closes the session at its `Location` with `rest` and
/// `digest`, and asserts the blob is created under `digest`.
async fn close_after(s: &Server, patched: reqwest::Response, digest: &str, rest: &[u8]) {
    assert_eq!(patched.status(), StatusCode::ACCEPTED);
    let loc = header(&patched, "location");
    let resp = s.close_upload(&loc, digest, rest).await;
    assert_eq!(resp.status(), StatusCode::CREATED);
    assert_eq!(header(&resp, "docker-content-digest"), digest);
}

each_driver_test!(sha512_blobs_and_manifests, |s| async move {
    // POST ?digest-algorithm=sha512, chunked, closed with a sha512 digest.
    let data = payload(2500, 10);
    let digest = sha512(&data);
    let resp = s.post_upload_with_algorithm("sha/five", "sha512").await;
    assert_eq!(resp.status(), StatusCode::ACCEPTED);
    let loc = header(&resp, "location");
    let patched = s.patch_chunk(&loc, 0, &data[..1000]).await;
    close_after(&s, patched, &digest, &data[1000..]).await;
    let resp = s.head_blob("sha/five", &digest).await;
    assert_eq!(resp.status(), StatusCode::OK);
    assert_eq!(header(&resp, "docker-content-digest"), digest);
    assert_eq!(
        s.blob_content("sha/five", &digest).await,
        Some(data.clone())
    );

    // A session opened without digest-algorithm, fed by PATCH and closed with a sha512
    // digest (what the OCI conformance suite does for its sha512 blobs): accepted too.
    let other = payload(3000, 14);
    let other_digest = sha512(&other);
    let loc = s.start_upload("sha/five").await;
    let patched = s.patch_unranged(&loc, &other[..2000]).await;
    close_after(&s, patched, &other_digest, &other[2000..]).await;
    let stored = s.blob_content("sha/five", &other_digest).await;
    assert_eq!(stored.as_deref(), Some(other.as_slice()));
    // ... and a wrong sha512 digest for such a session is still DIGEST_INVALID.
    let loc = s.start_upload("sha/five").await;
    let resp = s.patch_unranged(&loc, &other[..10]).await;
    let loc = header(&resp, "location");
    let wrong = sha512(b"wrong");
    let resp = s.close_upload(&loc, &wrong, b"").await;
    assert_error(resp, 400, "DIGEST_INVALID").await;
    assert_eq!(s.blob_content("sha/five", &wrong).await, None);
    let prefix = sha256(&other[..10]);
    assert_eq!(s.blob_content("sha/five", &prefix).await, None);

    // Single POST with a sha512 digest.
    let config = br#"{"os":"linux"}"#.to_vec();
    let config_digest = sha512(&config);
    let resp = s.post_blob("sha/five", &config_digest, &config).await;
    assert_eq!(resp.status(), StatusCode::CREATED);

    // A manifest referencing sha512 blobs, pushed by its sha512 digest.
    let manifest = image_manifest(&config_digest, config.len(), &[(&digest, data.len())], None);
    let mdigest = sha512(manifest.as_bytes());
    // Tags of a sha512 manifest come with the push by digest (`?tag=`): a push by tag
    // alone would be digested with sha256.
    let resp = s
        .put_manifest_tagged(
            "sha/five",
            &mdigest,
            &["s512"],
            OCI_MANIFEST,
            manifest.as_bytes(),
        )
        .await;
    assert_eq!(resp.status(), StatusCode::CREATED);
    assert_eq!(header(&resp, "docker-content-digest"), mdigest);
    assert_eq!(header(&resp, "oci-tag"), "s512");
    let resp = s.head_manifest("sha/five", "s512").await;
    assert_eq!(resp.status(), StatusCode::OK);
    assert_eq!(header(&resp, "docker-content-digest"), mdigest);
    let resp = s.get_manifest("sha/five", &mdigest).await;
    assert_eq!(resp.status(), StatusCode::OK);
    assert_eq!(header(&resp, "docker-content-digest"), mdigest);
    assert_eq!(body(resp).await, manifest.as_bytes());
});

each_driver_test!(manifest_push_rules, |s| async move {
    let img = s.push_image("push/man", "v1", 11).await;

    // Referenced blob missing: 400 MANIFEST_BLOB_UNKNOWN.
    let missing = sha256(b"missing layer");
    let m = image_manifest(&img.config_digest, img.config_size, &[(&missing, 13)], None);
    let resp = s
        .put_manifest("push/man", "broken", OCI_MANIFEST, m.as_bytes())
        .await;
    assert_error(resp, 400, "MANIFEST_BLOB_UNKNOWN").await;

    // Pushed by a digest that is not its digest: 400 DIGEST_INVALID.
    let m = image_manifest(&img.config_digest, img.config_size, &[], None);
    let resp = s
        .put_manifest("push/man", &sha256(b"other"), OCI_MANIFEST, m.as_bytes())
        .await;
    assert_error(resp, 400, "DIGEST_INVALID").await;

    // Not a manifest: 400 MANIFEST_INVALID.
    let resp = s
        .put_manifest("push/man", "bad", OCI_MANIFEST, b"{not json")
        .await;
    assert_error(resp, 400, "MANIFEST_INVALID").await;

    // A subject that does not exist (yet) is accepted; OCI-Subject is returned.
    let future_subject = sha256(b"future subject");
    let m = image_manifest(
        &img.config_digest,
        img.config_size,
        &[],
        Some(&subject(&future_subject, 10)),
    );
    let resp = s
        .put_manifest(
            "push/man",
            &sha256(m.as_bytes()),
            OCI_MANIFEST,
            m.as_bytes(),
        )
        .await;
    assert_eq!(resp.status(), StatusCode::CREATED);
    assert_eq!(header(&resp, "oci-subject"), future_subject);

    // Non-distributable layers need not be present.
    let nd = format!(
        "{{\"schemaVersion\":2,\"mediaType\":\"{OCI_MANIFEST}\",\"config\":{{\"mediaType\":\"{OCI_CONFIG}\",\"digest\":\"{}\",\"size\":{}}},\"layers\":[{{\"mediaType\":\"application/vnd.oci.image.layer.nondistributable.v1.tar+gzip\",\"digest\":\"{missing}\",\"size\":13,\"urls\":[\"https://example.com/l\"]}}]}}",
        img.config_digest, img.config_size
    );
    let resp = s
        .put_manifest("push/man", "nd", OCI_MANIFEST, nd.as_bytes())
        .await;
    assert_eq!(resp.status(), StatusCode::CREATED);

    // Push by digest with ?tag= parameters: OCI-Tag echoes the tags applied.
    let m = image_manifest(
        &img.config_digest,
        img.config_size,
        &[(&img.layer_digest, img.layer.len())],
        Some("\"annotations\": {\"x\":\"y\"}"),
    );
    let d = sha256(m.as_bytes());
    let resp = s
        .put_manifest_tagged("push/man", &d, &["t1", "t2"], OCI_MANIFEST, m.as_bytes())
        .await;
    assert_eq!(resp.status(), StatusCode::CREATED);
    assert_eq!(
        header(&resp, "location"),
        format!("/v2/push/man/manifests/{d}")
    );
    assert_eq!(header(&resp, "docker-content-digest"), d);
    assert_eq!(header_values(&resp, "oci-tag"), ["t1", "t2"]);
    for t in ["t1", "t2"] {
        let resp = s.head_manifest("push/man", t).await;
        assert_eq!(header(&resp, "docker-content-digest"), d);
    }
    // An invalid ?tag= rejects the push before anything is stored.
    let resp = s
        .put_manifest_tagged(
            "push/man",
            &img.digest,
            &["-bad"],
            OCI_MANIFEST,
            &img.manifest,
        )
        .await;
    assert_error(resp, 400, "MANIFEST_INVALID").await;
});

/// A manifest over `size` bytes long (padded with an annotation).
fn padded_manifest(img: &Image, size: usize) -> String {
    let pad = "a".repeat(size);
    image_manifest(
        &img.config_digest,
        img.config_size,
        &[],
        Some(&format!("\"annotations\": {{\"pad\":\"{pad}\"}}")),
    )
}

each_driver_test!(oversized_manifest_is_413, |s| async move {
    // The default limit is 4 MiB (spec: "at least 4 megabytes").
    let img = s.push_image("push/big", "v1", 12).await;
    let m = padded_manifest(&img, 4 * 1024 * 1024);
    assert!(m.len() > 4 * 1024 * 1024);
    let resp = s
        .put_manifest("push/big", "big", OCI_MANIFEST, m.as_bytes())
        .await;
    assert_error(resp, 413, "SIZE_INVALID").await;
    // Streamed without Content-Length: still 413.
    let resp = s
        .request(Method::PUT, "/v2/push/big/manifests/big")
        .header("content-type", OCI_MANIFEST)
        .body(streamed(m.as_bytes(), 65536))
        .send()
        .await;
    // The server may close the connection after answering without reading everything.
    if let Ok(resp) = resp {
        assert_error(resp, 413, "SIZE_INVALID").await;
    }
    let resp = s.get_manifest("push/big", "big").await;
    assert_error(resp, 404, "MANIFEST_UNKNOWN").await;
    // Just under the limit is accepted.
    let m = padded_manifest(&img, 4 * 1024 * 1024 - 1000);
    assert!(m.len() <= 4 * 1024 * 1024);
    let resp = s
        .put_manifest("push/big", "fits", OCI_MANIFEST, m.as_bytes())
        .await;
    assert_eq!(resp.status(), StatusCode::CREATED);
});

/// Sends `head` and only part of the body it announces (`body`), then closes the sending side
/// as a client that went away does; returns what the server answered before closing
/// (possibly nothing).
async fn cut_request(s: &Server, head: &str, body: &[u8]) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut tcp = tokio::net::TcpStream::connect(&s.addr).await.unwrap();
    tcp.write_all(head.as_bytes()).await.unwrap();
    tcp.write_all(body).await.unwrap();
    tcp.shutdown().await.unwrap();
    let mut answer = Vec::new();
    // The server sees the body end early; whatever it answers (or a reset) is read to the end,
    // so the request is over before the checks below.
    let _ = tcp.read_to_end(&mut answer).await;
    String::from_utf8_lossy(&answer).into_owned()
}

each_driver_test!(
    disconnect_mid_upload_leaves_nothing_visible,
    |s| async move {
        let data = payload(100_000, 13);
        let digest = sha256(&data);
        // A single-POST upload whose client goes away after half the body.
        let head = format!(
            "POST /v2/push/cut/blobs/uploads/?digest={digest} HTTP/1.1\r\nHost: x\r\nContent-Type: application/octet-stream\r\nContent-Length: {}\r\n\r\n",
            data.len()
        );
        let answer = cut_request(&s, &head, &data[..50_000]).await;
        assert!(!answer.starts_with("HTTP/1.1 201"), "{answer}");
        assert_eq!(s.blob_content("push/cut", &digest).await, None);
        // The registry is fine and the same blob can be pushed in full afterwards.
        let again = s.push_blob("push/cut", &data).await;
        assert_eq!(again, digest);
        assert_eq!(s.blob_content("push/cut", &digest).await, Some(data));

        // A chunk cut short: the session keeps only what was acknowledged and resumes.
        let other = payload(60_000, 15);
        let other_digest = sha256(&other);
        let loc = s.start_upload("push/cut").await;
        let resp = s.patch_chunk(&loc, 0, &other[..10_000]).await;
        assert_eq!(resp.status(), StatusCode::ACCEPTED);
        let loc = header(&resp, "location");
        let head = format!(
            "PATCH {loc} HTTP/1.1\r\nHost: x\r\nContent-Type: application/octet-stream\r\nContent-Range: 10000-59999\r\nContent-Length: 50000\r\n\r\n"
        );
        let answer = cut_request(&s, &head, &other[10_000..30_000]).await;
        assert!(!answer.starts_with("HTTP/1.1 202"), "{answer}");
        let resp = s.upload_status(&loc).await;
        assert_eq!(resp.status(), StatusCode::NO_CONTENT);
        assert_eq!(header(&resp, "range"), "0-9999");
        let resp = s.patch_chunk(&loc, 10_000, &other[10_000..]).await;
        assert_eq!(resp.status(), StatusCode::ACCEPTED);
        let resp = s.close_upload(&loc, &other_digest, b"").await;
        assert_eq!(resp.status(), StatusCode::CREATED);
        assert_eq!(s.blob_content("push/cut", &other_digest).await, Some(other));
    }
);
