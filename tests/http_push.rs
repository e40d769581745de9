//! Spec workflow "Push" (distribution-spec v1.1, "Pushing blobs", "Pushing a blob in
//! chunks", "Mounting a blob", "Pushing Manifests") over loopback HTTP, every driver.

mod common;

use common::*;
use reqwest::StatusCode;

async fn get_blob(s: &Server, repo: &str, digest: &str) -> Option<Vec<u8>> {
    let resp = s
        .client
        .get(s.url(&format!("/v2/{repo}/blobs/{digest}")))
        .send()
        .await
        .unwrap();
    match resp.status() {
        StatusCode::OK => Some(resp.bytes().await.unwrap().to_vec()),
        StatusCode::NOT_FOUND => None,
        other => panic!("GET blob: {other}"),
    }
}

async fn patch(s: &Server, loc: &str, data: &[u8], range: Option<(u64, u64)>) -> reqwest::Response {
    let mut req = s
        .client
        .patch(s.url(loc))
        .header("content-type", "application/octet-stream")
        .body(data.to_vec());
    if let Some((a, b)) = range {
        req = req.header("content-range", format!("{a}-{b}"));
    }
    req.send().await.unwrap()
}

#[tokio::test]
async fn monolithic_post_then_put() {
    each_driver("monolithic_post_then_put", |s| async move {
        let data = payload(5000, 1);
        let digest = sha256(&data);
        let resp = s
            .client
            .post(s.url("/v2/push/mono/blobs/uploads/"))
            .send()
            .await
            .unwrap();
        // "POST ... MUST return 202 Accepted with a Location header".
        assert_eq!(resp.status(), StatusCode::ACCEPTED);
        let loc = header(&resp, "location");
        assert!(loc.starts_with("/v2/push/mono/blobs/uploads/"), "{loc}");
        assert!(!header(&resp, "docker-upload-uuid").is_empty());
        // "If the registry has a minimum chunk size, the POST response SHOULD include
        // OCI-Chunk-Min-Length".
        assert_eq!(
            resp.headers().get("oci-chunk-min-length").map(|v| v
                .to_str()
                .unwrap()
                .parse::<u64>()
                .unwrap()),
            s.chunk_min,
            "driver {}",
            s.driver
        );
        let resp = s
            .client
            .put(s.with_query(&loc, &format!("digest={digest}")))
            .header("content-type", "application/octet-stream")
            .body(data.clone())
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), StatusCode::CREATED);
        let blob_loc = header(&resp, "location");
        assert_eq!(blob_loc, format!("/v2/push/mono/blobs/{digest}"));
        assert_eq!(header(&resp, "docker-content-digest"), digest);
        // The Location is a pullable blob URL.
        let resp = s.client.get(s.url(&blob_loc)).send().await.unwrap();
        assert_eq!(resp.bytes().await.unwrap().as_ref(), data.as_slice());
        // The session is over.
        let resp = s.client.get(s.url(&loc)).send().await.unwrap();
        assert_error(resp, 404, "BLOB_UPLOAD_UNKNOWN").await;
    })
    .await;
}

#[tokio::test]
async fn single_post_monolithic() {
    each_driver("single_post_monolithic", |s| async move {
        let data = payload(10_000, 2);
        let digest = sha256(&data);
        let resp = s
            .client
            .post(s.url(&format!("/v2/push/single/blobs/uploads/?digest={digest}")))
            .header("content-type", "application/octet-stream")
            .body(data.clone())
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), StatusCode::CREATED);
        assert_eq!(header(&resp, "docker-content-digest"), digest);
        let loc = header(&resp, "location");
        let resp = s.client.get(s.url(&loc)).send().await.unwrap();
        assert_eq!(resp.bytes().await.unwrap().as_ref(), data.as_slice());

        // Wrong digest: 400 DIGEST_INVALID and nothing becomes visible.
        let other = sha256(b"something else");
        let resp = s
            .client
            .post(s.url(&format!("/v2/push/single/blobs/uploads/?digest={other}")))
            .body(payload(100, 9))
            .send()
            .await
            .unwrap();
        assert_error(resp, 400, "DIGEST_INVALID").await;
        assert_eq!(get_blob(&s, "push/single", &other).await, None);
    })
    .await;
}

#[tokio::test]
async fn chunked_with_416_recovery() {
    each_driver("chunked_with_416_recovery", |s| async move {
        let data = payload(3000, 3);
        let digest = sha256(&data);
        let mut loc = s.start_upload("push/chunked").await;
        // GET on a fresh session: 204 with Location and Range.
        let resp = s.client.get(s.url(&loc)).send().await.unwrap();
        assert_eq!(resp.status(), StatusCode::NO_CONTENT);
        assert_eq!(header(&resp, "range"), "0-0");
        assert!(!header(&resp, "location").is_empty());

        let resp = patch(&s, &loc, &data[..1000], Some((0, 999))).await;
        // "202 Accepted ... Location: <location>, Range: 0-<end-of-range>".
        assert_eq!(resp.status(), StatusCode::ACCEPTED);
        assert_eq!(header(&resp, "range"), "0-999");
        loc = header(&resp, "location");

        // A chunk out of order (not starting at 1000): 416, session untouched.
        let resp = patch(&s, &loc, &data[500..1500], Some((500, 1499))).await;
        assert_eq!(header(&resp, "range"), "0-999");
        assert!(!header(&resp, "location").is_empty());
        assert_error(resp, 416, "BLOB_UPLOAD_INVALID").await;
        // A Content-Length contradicting the Content-Range: 416 too.
        let resp = s
            .client
            .patch(s.url(&loc))
            .header("content-range", "1000-1999")
            .body(data[1000..1500].to_vec())
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), StatusCode::RANGE_NOT_SATISFIABLE);

        // Recover: GET gives the offset to resume from.
        let resp = s.client.get(s.url(&loc)).send().await.unwrap();
        assert_eq!(resp.status(), StatusCode::NO_CONTENT);
        assert_eq!(header(&resp, "range"), "0-999");
        loc = header(&resp, "location");

        let resp = patch(&s, &loc, &data[1000..2000], Some((1000, 1999))).await;
        assert_eq!(resp.status(), StatusCode::ACCEPTED);
        assert_eq!(header(&resp, "range"), "0-1999");
        loc = header(&resp, "location");
        let resp = patch(&s, &loc, &data[2000..], Some((2000, 2999))).await;
        assert_eq!(resp.status(), StatusCode::ACCEPTED);
        assert_eq!(header(&resp, "range"), "0-2999");
        loc = header(&resp, "location");

        // Close with a PUT without body.
        let resp = s
            .client
            .put(s.with_query(&loc, &format!("digest={digest}")))
            .header("content-length", "0")
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), StatusCode::CREATED);
        assert_eq!(
            header(&resp, "location"),
            format!("/v2/push/chunked/blobs/{digest}")
        );
        assert_eq!(get_blob(&s, "push/chunked", &digest).await, Some(data));
    })
    .await;
}

#[tokio::test]
async fn early_errors_reach_a_client_still_sending() {
    each_driver(
        "early_errors_reach_a_client_still_sending",
        |s| async move {
            // The registry can tell a chunk is out of order (or the session unknown) before
            // reading it; a client still sending a large body must get the 416/404 answer, not a
            // reset connection.
            let big = payload(16 * 1024 * 1024, 16);
            let loc = s.start_upload("push/early").await;
            for _ in 0..3 {
                let resp = s
                    .client
                    .patch(s.url(&loc))
                    .header("content-range", format!("100-{}", 100 + big.len() - 1))
                    .body(big.clone())
                    .send()
                    .await
                    .expect("answer to an out-of-order chunk");
                assert_eq!(header(&resp, "range"), "0-0");
                assert_error(resp, 416, "BLOB_UPLOAD_INVALID").await;
            }
            let unknown = "/v2/push/early/blobs/uploads/0123456789abcdef0123456789abcdef";
            let resp = s
                .client
                .patch(s.url(unknown))
                .body(big.clone())
                .send()
                .await
                .expect("answer to a chunk for an unknown session");
            assert_error(resp, 404, "BLOB_UPLOAD_UNKNOWN").await;
            // The session is still usable.
            let resp = patch(&s, &loc, b"ok", Some((0, 1))).await;
            assert_eq!(resp.status(), StatusCode::ACCEPTED);
        },
    )
    .await;
}

#[tokio::test]
async fn one_byte_chunks_and_final_chunk_in_put() {
    each_driver("one_byte_chunks_and_final_chunk_in_put", |s| async move {
        let data = payload(33, 4);
        let digest = sha256(&data);
        let mut loc = s.start_upload("push/bytes").await;
        for i in 0..30u64 {
            let resp = patch(&s, &loc, &data[i as usize..=i as usize], Some((i, i))).await;
            assert_eq!(resp.status(), StatusCode::ACCEPTED, "byte {i}");
            assert_eq!(header(&resp, "range"), format!("0-{i}"));
            loc = header(&resp, "location");
        }
        // The final chunk rides on the closing PUT, with its Content-Range.
        let resp = s
            .client
            .put(s.with_query(&loc, &format!("digest={digest}")))
            .header("content-range", "30-32")
            .body(data[30..].to_vec())
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), StatusCode::CREATED);
        assert_eq!(get_blob(&s, "push/bytes", &digest).await, Some(data));
    })
    .await;
}

#[tokio::test]
async fn streamed_patch_without_length() {
    each_driver("streamed_patch_without_length", |s| async move {
        let data = payload(200_000, 5);
        let digest = sha256(&data);
        let loc = s.start_upload("push/stream").await;
        // No Content-Length, no Content-Range: chunked transfer encoding.
        let pieces: Vec<Result<Vec<u8>, std::io::Error>> =
            data.chunks(7_777).map(|c| Ok(c.to_vec())).collect();
        let resp = s
            .client
            .patch(s.url(&loc))
            .body(reqwest::Body::wrap_stream(futures::stream::iter(pieces)))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), StatusCode::ACCEPTED);
        assert!(resp.headers().get("content-length").is_some());
        assert_eq!(header(&resp, "range"), format!("0-{}", data.len() - 1));
        let loc = header(&resp, "location");
        // A streamed PUT closes it.
        let resp = s
            .client
            .put(s.with_query(&loc, &format!("digest={digest}")))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), StatusCode::CREATED);
        assert_eq!(get_blob(&s, "push/stream", &digest).await, Some(data));
    })
    .await;
}

#[tokio::test]
async fn cancel_upload() {
    each_driver("cancel_upload", |s| async move {
        let loc = s.start_upload("push/cancel").await;
        let resp = patch(&s, &loc, b"abc", Some((0, 2))).await;
        assert_eq!(resp.status(), StatusCode::ACCEPTED);
        let resp = s.client.delete(s.url(&loc)).send().await.unwrap();
        assert_eq!(resp.status(), StatusCode::NO_CONTENT);
        let resp = s.client.get(s.url(&loc)).send().await.unwrap();
        assert_error(resp, 404, "BLOB_UPLOAD_UNKNOWN").await;
        let resp = patch(&s, &loc, b"d", Some((3, 3))).await;
        assert_error(resp, 404, "BLOB_UPLOAD_UNKNOWN").await;
        let resp = s
            .client
            .put(s.with_query(&loc, &format!("digest={}", sha256(b"abc"))))
            .send()
            .await
            .unwrap();
        assert_error(resp, 404, "BLOB_UPLOAD_UNKNOWN").await;
    })
    .await;
}

#[tokio::test]
async fn digest_mismatch_on_close() {
    each_driver("digest_mismatch_on_close", |s| async move {
        let loc = s.start_upload("push/mismatch").await;
        let wrong = sha256(b"not the content");
        let resp = s
            .client
            .put(s.with_query(&loc, &format!("digest={wrong}")))
            .body(b"the content".to_vec())
            .send()
            .await
            .unwrap();
        assert_error(resp, 400, "DIGEST_INVALID").await;
        assert_eq!(get_blob(&s, "push/mismatch", &wrong).await, None);
        assert_eq!(
            get_blob(&s, "push/mismatch", &sha256(b"the content")).await,
            None
        );
    })
    .await;
}

#[tokio::test]
async fn mount_from_other_repository() {
    each_driver("mount_from_other_repository", |s| async move {
        let data = payload(4096, 6);
        let digest = s.push_blob("mount/src", &data).await;
        // With `from` holding the blob: 201 and the blob is pullable from the target.
        let resp = s
            .client
            .post(s.url(&format!(
                "/v2/mount/dst/blobs/uploads/?mount={digest}&from=mount/src"
            )))
            .header("content-length", "0")
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), StatusCode::CREATED);
        assert_eq!(
            header(&resp, "location"),
            format!("/v2/mount/dst/blobs/{digest}")
        );
        assert_eq!(header(&resp, "docker-content-digest"), digest);
        assert_eq!(get_blob(&s, "mount/dst", &digest).await, Some(data.clone()));

        // `from` lacks the blob: 202 with a usable session.
        let absent = payload(99, 8);
        let absent_digest = sha256(&absent);
        let resp = s
            .client
            .post(s.url(&format!(
                "/v2/mount/dst2/blobs/uploads/?mount={absent_digest}&from=mount/src"
            )))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), StatusCode::ACCEPTED);
        let loc = header(&resp, "location");
        let resp = s
            .client
            .put(s.with_query(&loc, &format!("digest={absent_digest}")))
            .body(absent.clone())
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), StatusCode::CREATED);
        assert_eq!(
            get_blob(&s, "mount/dst2", &absent_digest).await,
            Some(absent)
        );

        // Without `from`: a new session (the blob is not in the target yet).
        let resp = s
            .client
            .post(s.url(&format!("/v2/mount/dst3/blobs/uploads/?mount={digest}")))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), StatusCode::ACCEPTED);
        assert!(header(&resp, "location").starts_with("/v2/mount/dst3/blobs/uploads/"));
        // ... even when the target already has it: no automatic content discovery (the
        // conformance suite's "automatic content discovery disabled should return a 202").
        let resp = s
            .client
            .post(s.url(&format!("/v2/mount/dst/blobs/uploads/?mount={digest}")))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), StatusCode::ACCEPTED);
    })
    .await;
}

#[tokio::test]
async fn sha512_blobs_and_manifests() {
    each_driver("sha512_blobs_and_manifests", |s| async move {
        // POST ?digest-algorithm=sha512, chunked, closed with a sha512 digest.
        let data = payload(2500, 10);
        let digest = sha512(&data);
        let resp = s
            .client
            .post(s.url("/v2/sha/five/blobs/uploads/?digest-algorithm=sha512"))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), StatusCode::ACCEPTED);
        let loc = header(&resp, "location");
        let resp = patch(&s, &loc, &data[..1000], Some((0, 999))).await;
        assert_eq!(resp.status(), StatusCode::ACCEPTED);
        let loc = header(&resp, "location");
        let resp = s
            .client
            .put(s.with_query(&loc, &format!("digest={digest}")))
            .body(data[1000..].to_vec())
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), StatusCode::CREATED);
        assert_eq!(header(&resp, "docker-content-digest"), digest);
        let resp = s
            .client
            .head(s.url(&format!("/v2/sha/five/blobs/{digest}")))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), StatusCode::OK);
        assert_eq!(header(&resp, "docker-content-digest"), digest);
        assert_eq!(get_blob(&s, "sha/five", &digest).await, Some(data.clone()));

        // A session opened without digest-algorithm, fed by PATCH and closed with a sha512
        // digest (what the OCI conformance suite does for its sha512 blobs): accepted too.
        let other = payload(3000, 14);
        let other_digest = sha512(&other);
        let loc = s.start_upload("sha/five").await;
        let resp = patch(&s, &loc, &other[..2000], None).await;
        assert_eq!(resp.status(), StatusCode::ACCEPTED);
        let loc = header(&resp, "location");
        let resp = s
            .client
            .put(s.with_query(&loc, &format!("digest={other_digest}")))
            .body(other[2000..].to_vec())
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), StatusCode::CREATED);
        assert_eq!(header(&resp, "docker-content-digest"), other_digest);
        assert_eq!(
            get_blob(&s, "sha/five", &other_digest).await,
            Some(other.clone())
        );
        // ... and a wrong sha512 digest for such a session is still DIGEST_INVALID.
        let loc = s.start_upload("sha/five").await;
        let resp = patch(&s, &loc, &other[..10], None).await;
        let loc = header(&resp, "location");
        let wrong = sha512(b"wrong");
        let resp = s
            .client
            .put(s.with_query(&loc, &format!("digest={wrong}")))
            .send()
            .await
            .unwrap();
        assert_error(resp, 400, "DIGEST_INVALID").await;
        assert_eq!(get_blob(&s, "sha/five", &wrong).await, None);
        assert_eq!(get_blob(&s, "sha/five", &sha256(&other[..10])).await, None);

        // Single POST with a sha512 digest.
        let config = br#"{"os":"linux"}"#.to_vec();
        let config_digest = sha512(&config);
        let resp = s
            .client
            .post(s.url(&format!(
                "/v2/sha/five/blobs/uploads/?digest={config_digest}"
            )))
            .body(config.clone())
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), StatusCode::CREATED);

        // A manifest referencing sha512 blobs, pushed by its sha512 digest.
        let manifest = image_manifest(&config_digest, config.len(), &[(&digest, data.len())], None);
        let mdigest = sha512(manifest.as_bytes());
        // Tags of a sha512 manifest come with the push by digest (`?tag=`): a push by tag
        // alone would be digested with sha256.
        let resp = s
            .client
            .put(s.url(&format!("/v2/sha/five/manifests/{mdigest}?tag=s512")))
            .header("content-type", OCI_MANIFEST)
            .body(manifest.clone().into_bytes())
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), StatusCode::CREATED);
        assert_eq!(header(&resp, "docker-content-digest"), mdigest);
        assert_eq!(header(&resp, "oci-tag"), "s512");
        let resp = s
            .client
            .head(s.url("/v2/sha/five/manifests/s512"))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), StatusCode::OK);
        assert_eq!(header(&resp, "docker-content-digest"), mdigest);
        let resp = s
            .client
            .get(s.url(&format!("/v2/sha/five/manifests/{mdigest}")))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), StatusCode::OK);
        assert_eq!(header(&resp, "docker-content-digest"), mdigest);
        assert_eq!(resp.bytes().await.unwrap().as_ref(), manifest.as_bytes());
    })
    .await;
}

#[tokio::test]
async fn manifest_push_rules() {
    each_driver("manifest_push_rules", |s| async move {
        let img = s.push_image("push/man", "v1", 11).await;

        // Referenced blob missing: 400 MANIFEST_BLOB_UNKNOWN.
        let missing = sha256(b"missing layer");
        let m = image_manifest(&img.config_digest, 10, &[(&missing, 13)], None);
        let resp = s.put_manifest("push/man", "broken", OCI_MANIFEST, m.as_bytes()).await;
        assert_error(resp, 400, "MANIFEST_BLOB_UNKNOWN").await;

        // Pushed by a digest that is not its digest: 400 DIGEST_INVALID.
        let m = image_manifest(&img.config_digest, 10, &[], None);
        let resp = s
            .put_manifest("push/man", &sha256(b"other"), OCI_MANIFEST, m.as_bytes())
            .await;
        assert_error(resp, 400, "DIGEST_INVALID").await;

        // Not a manifest: 400 MANIFEST_INVALID.
        let resp = s.put_manifest("push/man", "bad", OCI_MANIFEST, b"{not json").await;
        assert_error(resp, 400, "MANIFEST_INVALID").await;

        // A subject that does not exist (yet) is accepted; OCI-Subject is returned.
        let subject = sha256(b"future subject");
        let m = image_manifest(
            &img.config_digest,
            10,
            &[],
            Some(&format!(
                "\"subject\": {{\"mediaType\":\"{OCI_MANIFEST}\",\"digest\":\"{subject}\",\"size\":10}}"
            )),
        );
        let resp = s
            .put_manifest("push/man", &sha256(m.as_bytes()), OCI_MANIFEST, m.as_bytes())
            .await;
        assert_eq!(resp.status(), StatusCode::CREATED);
        assert_eq!(header(&resp, "oci-subject"), subject);

        // Non-distributable layers need not be present.
        let nd = format!(
            "{{\"schemaVersion\":2,\"mediaType\":\"{OCI_MANIFEST}\",\"config\":{{\"mediaType\":\"application/vnd.oci.image.config.v1+json\",\"digest\":\"{}\",\"size\":10}},\"layers\":[{{\"mediaType\":\"application/vnd.oci.image.layer.nondistributable.v1.tar+gzip\",\"digest\":\"{missing}\",\"size\":13,\"urls\":[\"https://example.com/l\"]}}]}}",
            img.config_digest
        );
        let resp = s.put_manifest("push/man", "nd", OCI_MANIFEST, nd.as_bytes()).await;
        assert_eq!(resp.status(), StatusCode::CREATED);

        // Push by digest with ?tag= parameters: OCI-Tag echoes the tags applied.
        let m = image_manifest(&img.config_digest, 10, &[(&img.layer_digest, img.layer.len())], Some("\"annotations\": {\"x\":\"y\"}"));
        let d = sha256(m.as_bytes());
        let resp = s
            .client
            .put(s.url(&format!("/v2/push/man/manifests/{d}?tag=t1&tag=t2")))
            .header("content-type", OCI_MANIFEST)
            .body(m.clone().into_bytes())
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), StatusCode::CREATED);
        assert_eq!(header(&resp, "location"), format!("/v2/push/man/manifests/{d}"));
        assert_eq!(header(&resp, "docker-content-digest"), d);
        let tags: Vec<_> = resp
            .headers()
            .get_all("oci-tag")
            .iter()
            .map(|v| v.to_str().unwrap().to_owned())
            .collect();
        assert_eq!(tags, ["t1", "t2"]);
        for t in ["t1", "t2"] {
            let resp = s
                .client
                .head(s.url(&format!("/v2/push/man/manifests/{t}")))
                .send()
                .await
                .unwrap();
            assert_eq!(header(&resp, "docker-content-digest"), d);
        }
        // An invalid ?tag= rejects the push before anything is stored.
        let resp = s
            .client
            .put(s.url(&format!("/v2/push/man/manifests/{}?tag=-bad", img.digest)))
            .header("content-type", OCI_MANIFEST)
            .body(img.manifest.clone())
            .send()
            .await
            .unwrap();
        assert_error(resp, 400, "MANIFEST_INVALID").await;
    })
    .await;
}

#[tokio::test]
async fn oversized_manifest_is_413() {
    each_driver("oversized_manifest_is_413", |s| async move {
        // The default limit is 4 MiB (spec: "at least 4 megabytes").
        let img = s.push_image("push/big", "v1", 12).await;
        let pad = "a".repeat(4 * 1024 * 1024);
        let m = image_manifest(
            &img.config_digest,
            10,
            &[],
            Some(&format!("\"annotations\": {{\"pad\":\"{pad}\"}}")),
        );
        assert!(m.len() > 4 * 1024 * 1024);
        let resp = s
            .put_manifest("push/big", "big", OCI_MANIFEST, m.as_bytes())
            .await;
        assert_error(resp, 413, "SIZE_INVALID").await;
        // Streamed without Content-Length: still 413.
        let pieces: Vec<Result<Vec<u8>, std::io::Error>> =
            m.as_bytes().chunks(65536).map(|c| Ok(c.to_vec())).collect();
        let resp = s
            .client
            .put(s.url("/v2/push/big/manifests/big"))
            .header("content-type", OCI_MANIFEST)
            .body(reqwest::Body::wrap_stream(futures::stream::iter(pieces)))
            .send()
            .await;
        // The server may close the connection after answering without reading everything.
        if let Ok(resp) = resp {
            assert_error(resp, 413, "SIZE_INVALID").await;
        }
        let resp = s
            .client
            .get(s.url("/v2/push/big/manifests/big"))
            .send()
            .await
            .unwrap();
        assert_error(resp, 404, "MANIFEST_UNKNOWN").await;
        // Just under the limit is accepted.
        let pad = "a".repeat(4 * 1024 * 1024 - 1000);
        let m = image_manifest(
            &img.config_digest,
            10,
            &[],
            Some(&format!("\"annotations\": {{\"pad\":\"{pad}\"}}")),
        );
        assert!(m.len() <= 4 * 1024 * 1024);
        let resp = s
            .put_manifest("push/big", "fits", OCI_MANIFEST, m.as_bytes())
            .await;
        assert_eq!(resp.status(), StatusCode::CREATED);
    })
    .await;
}

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

#[tokio::test]
async fn disconnect_mid_upload_leaves_nothing_visible() {
    each_driver("disconnect_mid_upload", |s| async move {
        let data = payload(100_000, 13);
        let digest = sha256(&data);
        // A single-POST upload whose client goes away after half the body.
        let head = format!(
            "POST /v2/push/cut/blobs/uploads/?digest={digest} HTTP/1.1\r\nHost: x\r\nContent-Type: application/octet-stream\r\nContent-Length: {}\r\n\r\n",
            data.len()
        );
        let answer = cut_request(&s, &head, &data[..50_000]).await;
        assert!(!answer.starts_with("HTTP/1.1 201"), "{answer}");
        assert_eq!(get_blob(&s, "push/cut", &digest).await, None);
        // The registry is fine and the same blob can be pushed in full afterwards.
        let again = s.push_blob("push/cut", &data).await;
        assert_eq!(again, digest);
        assert_eq!(get_blob(&s, "push/cut", &digest).await, Some(data.clone()));

        // A chunk cut short: the session keeps only what was acknowledged and resumes.
        let other = payload(60_000, 15);
        let other_digest = sha256(&other);
        let loc = s.start_upload("push/cut").await;
        let resp = patch(&s, &loc, &other[..10_000], Some((0, 9_999))).await;
        assert_eq!(resp.status(), StatusCode::ACCEPTED);
        let loc = header(&resp, "location");
        let head = format!(
            "PATCH {loc} HTTP/1.1\r\nHost: x\r\nContent-Type: application/octet-stream\r\nContent-Range: 10000-59999\r\nContent-Length: 50000\r\n\r\n"
        );
        let answer = cut_request(&s, &head, &other[10_000..30_000]).await;
        assert!(!answer.starts_with("HTTP/1.1 202"), "{answer}");
        let resp = s.client.get(s.url(&loc)).send().await.unwrap();
        assert_eq!(resp.status(), StatusCode::NO_CONTENT);
        assert_eq!(header(&resp, "range"), "0-9999");
        let resp = patch(&s, &loc, &other[10_000..], Some((10_000, 59_999))).await;
        assert_eq!(resp.status(), StatusCode::ACCEPTED);
        let resp = s
            .client
            .put(s.with_query(&loc, &format!("digest={other_digest}")))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), StatusCode::CREATED);
        assert_eq!(get_blob(&s, "push/cut", &other_digest).await, Some(other));
    })
    .await;
}
