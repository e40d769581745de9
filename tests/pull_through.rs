//! The binary as a pull-through cache (`--proxy-remote-url`, `MARINA_PROXY_USERNAME`,
//! `MARINA_PROXY_PASSWORD`) of an upstream registry served over TLS with access control:
//! bearer tokens from its token endpoint (the Docker token specification's flow) or HTTP
//! Basic. What is pulled through the cache is the upstream's, byte for byte; once stored it
//! is served when the upstream is gone; tags follow the upstream; writes are refused; an
//! upstream that cannot be reached, refuses the cache's credentials or sends bytes that are
//! not what they claim is a clean spec error that stores nothing. skopeo pulls through it,
//! and two cache processes over one root fill it at once.

// Each of the two test binaries uses a part of the pull-through helpers.
#[allow(dead_code)]
#[path = "pull_through/caches.rs"]
mod caches;
mod common;
#[allow(dead_code)]
#[path = "pull_through/upstreams.rs"]
mod upstreams;

use std::path::Path;
use std::time::Duration;

use caches::{Store, assert_serves, cache, cache_of_test_server, mirror_of};
use common::{assert_error, body, ensure_bucket, header, sha256, skopeo};
use reqwest::StatusCode;
use upstreams::{
    Tokens, lying_upstream, pusher, stalling_upstream, token_upstream, upstream,
    upstream_with_image,
};

#[tokio::test]
async fn pulls_come_through_and_stay_when_the_upstream_is_gone() {
    for tokens in [true, false] {
        let (mut up, image) = upstream_with_image(tokens, "team/app", "v1", 1).await;
        let (mut c, _root) = mirror_of(&up).await;
        assert_serves(&c, "team/app", "v1", &image).await;
        let head = c.head_blob("team/app", &image.layer_digest).await;
        assert_eq!(head.status(), StatusCode::OK);
        assert_eq!(
            header(&head, "content-length"),
            image.layer.len().to_string()
        );
        let ranged = c
            .get_blob_range("team/app", &image.layer_digest, "bytes=10-19")
            .await;
        assert_eq!(ranged.status(), StatusCode::PARTIAL_CONTENT);
        assert_eq!(body(ranged).await, image.layer[10..20]);
        let tags = c.list_tags("team/app", None, None).await;
        assert_eq!(tags.status(), StatusCode::OK);
        assert_eq!(common::json(tags).await["tags"][0], "v1");
        c.stored(&image.digest).await;
        // Each blob was fetched once into the store (a pull while it was being stored got it
        // from the upstream too); pulled again, it comes from the store.
        let blobs = r#"marina_proxy_upstream_requests_total{request="blob",outcome="ok"}"#;
        let fetched = c.series(blobs).await;
        assert!((2.0..=4.0).contains(&fetched), "{fetched} blob requests");
        assert_serves(&c, "team/app", "v1", &image).await;
        assert_eq!(
            c.series(blobs).await,
            fetched,
            "a stored blob was fetched again"
        );

        up.go_away().await;
        // The tag as last seen, the manifest and its blobs: all from the local store.
        assert_serves(&c, "team/app", "v1", &image).await;
        let tags = c.list_tags("team/app", None, None).await;
        assert_eq!(
            common::json(tags).await["tags"][0],
            "v1",
            "tokens: {tokens}"
        );
        let catalog = common::json(c.get("/v2/_catalog").await).await;
        assert_eq!(catalog["repositories"][0], "team/app");
        // What was never pulled is the upstream's error: it cannot be reached.
        let other = c.get_manifest("team/app", "v2").await;
        assert_eq!(other.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(header(&other, "retry-after"), "1");
        assert_error(other, 503, "UNKNOWN").await;
        // The answers the store gave in the upstream's place are counted.
        let lookups =
            r#"marina_proxy_upstream_requests_total{request="manifest_info",outcome="failed"}"#;
        assert!(c.series(lookups).await >= 2.0);
        assert!(c.series("marina_proxy_stale_answers_total").await >= 2.0);
    }
}

/// A cache without credentials (a mirror of Docker Hub's public images) pulls what the
/// upstream serves anonymously, with an anonymous token or with no challenge at all, and is
/// denied the rest with the upstream's refusal.
#[tokio::test]
async fn a_cache_without_credentials_pulls_what_anyone_may() {
    for tokens in [true, false] {
        let (mut up, image) = upstream_with_image(tokens, "public/app", "v1", 15).await;
        pusher(&up, tokens, "team/app")
            .await
            .push_image("team/app", "v1", 16)
            .await;
        let root = tempfile::tempdir().unwrap();
        let mut c = cache(&up.remote(), &up.pki.ca, Store::Root(root.path()), None).await;
        assert_serves(&c, "public/app", "v1", &image).await;
        assert_error(c.get_manifest("team/app", "v1").await, 403, "DENIED").await;
        c.stored(&image.digest).await;
        up.go_away().await;
        assert_serves(&c, "public/app", "v1", &image).await;
    }
}

/// The cache keeps an upstream token while it lives and no longer: one token serves
/// requests until it expires (Docker Hub's live five minutes), a token about to expire is
/// not used again, and a token the upstream refuses before its time is replaced at once;
/// clients see none of it.
#[tokio::test]
async fn upstream_tokens_are_kept_while_they_live_and_replaced_when_refused() {
    use std::sync::atomic::Ordering;
    let digest = sha256(b"token test");
    let tokens = std::sync::Arc::new(Tokens::default());
    let (gate, _task) = token_upstream(10, tokens.clone()).await;
    let (c, _root) = cache_of_test_server(&gate).await;
    let head = || async {
        let resp = c.head_blob("tok/app", &digest).await;
        assert_eq!(resp.status(), StatusCode::OK);
        assert_eq!(header(&resp, "content-length"), "10");
    };
    tokens.lifetime.store(3600, Ordering::SeqCst);
    head().await;
    head().await;
    head().await;
    assert_eq!(
        tokens.issued.load(Ordering::SeqCst),
        1,
        "a live token was not kept"
    );
    tokens.revoke();
    head().await;
    assert_eq!(
        tokens.issued.load(Ordering::SeqCst),
        2,
        "a refused token was not replaced"
    );
    head().await;
    assert_eq!(tokens.issued.load(Ordering::SeqCst), 2);
    // A token too close to its end (a few seconds) is used for the request it was fetched
    // for, never again.
    tokens.lifetime.store(5, Ordering::SeqCst);
    tokens.revoke();
    head().await;
    head().await;
    assert_eq!(
        tokens.issued.load(Ordering::SeqCst),
        4,
        "an expiring token was used again"
    );
}

/// A manifest pulled by digest only, without its blobs, is stored with the blobs the cache
/// fetched itself: served afterwards without the upstream.
#[tokio::test]
async fn a_manifest_is_stored_with_the_blobs_the_client_did_not_pull() {
    let (mut up, image) = upstream_with_image(true, "team/lazy", "v1", 2).await;
    let (mut c, _root) = mirror_of(&up).await;
    let resp = c.get_manifest("team/lazy", "v1").await;
    assert_eq!(body(resp).await, image.manifest);
    c.stored(&image.digest).await;
    up.go_away().await;
    assert_serves(&c, "team/lazy", "v1", &image).await;
}

/// A client that asks where a tag points (`HEAD`) and then pulls by digest, as containerd
/// does: the tag is kept with the manifest, and served once the upstream is gone.
#[tokio::test]
async fn a_tag_looked_up_before_a_pull_by_digest_is_kept() {
    let (mut up, image) = upstream_with_image(true, "team/ctr", "v1", 13).await;
    let (mut c, _root) = mirror_of(&up).await;
    let head = c.head_manifest("team/ctr", "v1").await;
    assert_eq!(head.status(), StatusCode::OK);
    assert_eq!(header(&head, "docker-content-digest"), image.digest);
    let manifest = c.get_manifest("team/ctr", &image.digest).await;
    assert_eq!(body(manifest).await, image.manifest);
    c.stored(&image.digest).await;
    up.go_away().await;
    assert_serves(&c, "team/ctr", "v1", &image).await;
}

/// A client that stops reading a blob being fetched does not hold the fetch back: another
/// client's pull of the same blob completes meanwhile (the stalled one is dropped once it
/// is far enough behind).
#[tokio::test]
async fn a_stalled_client_does_not_hold_a_fetch_back() {
    let up = upstream(true).await;
    let blob = common::payload(48 << 20, 14);
    let digest = pusher(&up, true, "team/big")
        .await
        .push_blob("team/big", &blob)
        .await;
    let (c, _root) = mirror_of(&up).await;
    let stalled = c.get_blob("team/big", &digest).await;
    assert_eq!(stalled.status(), StatusCode::OK);
    let other = tokio::time::timeout(Duration::from_secs(60), async {
        body(c.get_blob("team/big", &digest).await).await
    })
    .await
    .expect("a stalled client held the fetch back");
    assert_eq!(other.len(), blob.len());
    assert!(other == blob, "the other client got other bytes");
    drop(stalled);
}

/// An image index is stored without the platforms nobody pulled (a cache runs with sparse
/// indexes): once the upstream is gone, the index and the platform pulled are served, the
/// other platform is the upstream's error.
#[tokio::test]
async fn an_index_is_stored_with_the_platforms_pulled() {
    let mut up = upstream(true).await;
    let alice = pusher(&up, true, "team/multi").await;
    let amd = alice.push_image("team/multi", "amd64", 10).await;
    let arm = alice.push_image("team/multi", "arm64", 11).await;
    let index = common::image_index(&[
        (&amd.digest, amd.manifest.len()),
        (&arm.digest, arm.manifest.len()),
    ]);
    let pushed = alice
        .put_manifest("team/multi", "v1", common::OCI_INDEX, index.as_bytes())
        .await;
    assert_eq!(pushed.status(), StatusCode::CREATED);
    let (mut c, _root) = mirror_of(&up).await;
    // A client pulling one platform: the index by tag, the manifest by digest, its blobs.
    assert_eq!(
        body(c.get_manifest("team/multi", "v1").await).await,
        index.as_bytes()
    );
    let amd_manifest = c.get_manifest("team/multi", &amd.digest).await;
    assert_eq!(body(amd_manifest).await, amd.manifest);
    for blob in [&amd.layer_digest, &amd.config_digest] {
        assert_eq!(
            c.get_blob("team/multi", blob).await.status(),
            StatusCode::OK
        );
    }
    c.stored(&sha256(index.as_bytes())).await;
    c.stored(&amd.digest).await;
    up.go_away().await;
    assert_eq!(
        body(c.get_manifest("team/multi", "v1").await).await,
        index.as_bytes()
    );
    assert_eq!(
        body(c.get_manifest("team/multi", &amd.digest).await).await,
        amd.manifest
    );
    let layer = c.get_blob("team/multi", &amd.layer_digest).await;
    assert_eq!(body(layer).await, amd.layer);
    let other = c.get_manifest("team/multi", &arm.digest).await;
    assert_eq!(other.status(), StatusCode::SERVICE_UNAVAILABLE);
}

#[tokio::test]
async fn tags_follow_the_upstream_and_unknowns_stay_unknown() {
    let up = upstream(true).await;
    let alice = pusher(&up, true, "team/moving").await;
    let first = alice.push_image("team/moving", "latest", 3).await;
    let (mut c, _root) = mirror_of(&up).await;
    assert_serves(&c, "team/moving", "latest", &first).await;
    c.stored(&first.digest).await;
    let second = alice.push_image("team/moving", "latest", 4).await;
    assert_serves(&c, "team/moving", "latest", &second).await;
    // The first is still served by digest.
    let old = c.get_manifest("team/moving", &first.digest).await;
    assert_eq!(body(old).await, first.manifest);

    // Tag lists are the upstream's, page by page.
    alice.push_image("team/moving", "a-first", 5).await;
    let page = c.list_tags("team/moving", Some(1), None).await;
    assert!(!header(&page, "link").is_empty(), "a next page is linked");
    assert_eq!(
        common::json(page).await["tags"],
        serde_json::json!(["a-first"])
    );
    let next = c.list_tags("team/moving", Some(1), Some("a-first")).await;
    assert_eq!(
        common::json(next).await["tags"],
        serde_json::json!(["latest"])
    );

    assert_error(
        c.get_manifest("team/moving", "nope").await,
        404,
        "MANIFEST_UNKNOWN",
    )
    .await;
    let head = c.head_manifest("team/moving", "nope").await;
    assert_eq!(head.status(), StatusCode::NOT_FOUND);
    let missing = sha256(b"never pushed");
    assert_error(
        c.get_blob("team/moving", &missing).await,
        404,
        "BLOB_UNKNOWN",
    )
    .await;
    assert_error(
        c.list_tags("team/absent", None, None).await,
        404,
        "NAME_UNKNOWN",
    )
    .await;
    // Outside what the cache's user may pull upstream: the upstream refuses, the client is
    // told so.
    assert_error(c.get_manifest("other/app", "v1").await, 403, "DENIED").await;
}

#[tokio::test]
async fn writes_are_refused_and_wrong_credentials_denied() {
    let (up, image) = upstream_with_image(true, "team/ro", "v1", 5).await;
    let root = tempfile::tempdir().unwrap();
    let c = cache(
        &up.remote(),
        &up.pki.ca,
        Store::Root(root.path()),
        Some(("mirror", "wrong")),
    )
    .await;
    let upload = c
        .request(reqwest::Method::POST, "/v2/team/ro/blobs/uploads/")
        .send()
        .await
        .unwrap();
    let detail = upload.headers().get("allow").cloned();
    assert_eq!(detail.as_ref().map(|v| v.to_str().unwrap()), Some(""));
    assert_error(upload, 405, "UNSUPPORTED").await;
    let put = c
        .put_manifest("team/ro", "v2", common::OCI_MANIFEST, &image.manifest)
        .await;
    assert_error(put, 405, "UNSUPPORTED").await;
    assert_error(
        c.delete_manifest("team/ro", &image.digest).await,
        405,
        "UNSUPPORTED",
    )
    .await;
    // The token realm refuses the cache's password: DENIED, and nothing is stored.
    assert_error(c.get_manifest("team/ro", "v1").await, 403, "DENIED").await;
    assert_error(
        c.get_blob("team/ro", &image.layer_digest).await,
        403,
        "DENIED",
    )
    .await;
    let stored = walk_files(root.path());
    assert!(
        stored.iter().all(|f| !f.starts_with("blobs")),
        "the cache stored something: {stored:?}"
    );
}

/// Every file below `dir`, as paths relative to it.
fn walk_files(dir: &Path) -> Vec<String> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d).into_iter().flatten().flatten() {
            let path = entry.path();
            if path.is_dir() {
                stack.push(path);
            } else {
                out.push(path.strip_prefix(dir).unwrap().display().to_string());
            }
        }
    }
    out
}

#[tokio::test]
async fn an_unreachable_upstream_is_a_503_that_names_no_address() {
    let closed = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = closed.local_addr().unwrap().port();
    drop(closed);
    let root = tempfile::tempdir().unwrap();
    let c = cache(
        &format!("http://127.0.0.1:{port}"),
        Path::new("/dev/null"),
        Store::Root(root.path()),
        None,
    )
    .await;
    for resp in [
        c.get_manifest("team/app", "v1").await,
        c.get_blob("team/app", &sha256(b"x")).await,
        c.list_tags("team/app", None, None).await,
    ] {
        assert_eq!(resp.status(), StatusCode::SERVICE_UNAVAILABLE);
        let text = resp.text().await.unwrap();
        assert!(!text.contains(&port.to_string()), "{text}");
        assert!(text.contains("upstream registry"), "{text}");
    }
}

#[tokio::test]
async fn bytes_that_are_not_what_they_claim_are_refused_and_not_stored() {
    let (mut gate, _task) = lying_upstream().await;
    let (c, _root) = cache_of_test_server(&gate).await;
    let digest = sha256(b"the real bytes");
    for _ in 0..2 {
        assert_error(c.get_manifest("lies/app", &digest).await, 500, "UNKNOWN").await;
        assert_error(c.get_manifest("lies/app", "v1").await, 500, "UNKNOWN").await;
        // The blob's bytes flow as they are fetched, the last held back until verified: the
        // answer may have begun when the digest turns out wrong; it is cut, never ended.
        let blob = c
            .request(
                reqwest::Method::GET,
                &format!("/v2/lies/app/blobs/{digest}"),
            )
            .send()
            .await;
        match blob {
            Ok(resp) if resp.status() == StatusCode::OK => {
                assert!(
                    resp.bytes().await.is_err(),
                    "a wrong blob's body ended cleanly"
                )
            }
            Ok(resp) => panic!("{resp:?}"),
            Err(cut) => assert!(!cut.is_status(), "{cut}"),
        }
    }
    gate.take_down().await;
    let blob = c.get_blob("lies/app", &digest).await;
    assert_eq!(
        blob.status(),
        StatusCode::SERVICE_UNAVAILABLE,
        "nothing was stored"
    );
}

/// The first `n` bytes (at least) of `stream`'s body, each chunk awaited for at most 20 s
/// (the upstream holds the rest back meanwhile).
async fn leading(
    stream: &mut (impl futures::Stream<Item = reqwest::Result<bytes::Bytes>> + Unpin),
    n: usize,
) -> Vec<u8> {
    use futures::StreamExt;
    let mut got = Vec::new();
    while got.len() < n {
        let chunk = tokio::time::timeout(Duration::from_secs(20), stream.next())
            .await
            .expect("the first bytes did not come while the upstream held the rest")
            .expect("the body ended early")
            .expect("the body failed");
        got.extend_from_slice(&chunk);
    }
    got
}

/// Reads the rest of `stream`'s body into `got` (kept if this is cut short); the body must
/// end cleanly.
async fn read_into(
    stream: &mut (impl futures::Stream<Item = reqwest::Result<bytes::Bytes>> + Unpin),
    got: &mut Vec<u8>,
) {
    use futures::StreamExt;
    while let Some(chunk) = stream.next().await {
        got.extend_from_slice(&chunk.expect("the body failed"));
    }
}

/// A blob the cache does not hold reaches the client as it is fetched, not once it is
/// stored: the first half arrives while the upstream holds the rest back; so does it for a
/// second client pulling it meanwhile (straight from the upstream). Once complete it is
/// stored, and served without the upstream.
#[tokio::test]
async fn a_blob_flows_to_its_clients_while_it_is_fetched() {
    let blob = common::payload(1 << 20, 9);
    let digest = sha256(&blob);
    let release = std::sync::Arc::new(tokio::sync::Semaphore::new(0));
    let (mut gate, _task) = stalling_upstream(blob.clone(), release.clone()).await;
    let (c, _root) = cache_of_test_server(&gate).await;
    let mut streams = Vec::new();
    let mut got = Vec::new();
    for _ in 0..2 {
        let resp = c.get_blob("slow/app", &digest).await;
        assert_eq!(resp.status(), StatusCode::OK);
        assert_eq!(header(&resp, "content-length"), blob.len().to_string());
        let mut stream = resp.bytes_stream();
        got.push(leading(&mut stream, blob.len() / 2).await);
        streams.push(stream);
    }
    release.add_permits(2);
    for (stream, got) in streams.iter_mut().zip(&mut got) {
        read_into(stream, got).await;
        assert!(*got == blob, "a client got other bytes");
    }
    gate.take_down().await;
    let again = c.get_blob("slow/app", &digest).await;
    assert_eq!(again.status(), StatusCode::OK);
    assert_eq!(body(again).await, blob);
}

/// A range of a blob the cache does not hold flows as the blob is fetched too: a range to
/// the end (a resumed download) starts while the upstream holds the rest back; a range
/// within the first half, all of it arrived, still ends only once the whole blob is
/// verified; an unsatisfiable one is a `416`. Once stored, ranges come from the store.
#[tokio::test]
async fn a_range_flows_as_the_blob_is_fetched_and_ends_once_it_is_verified() {
    let blob = common::payload(1 << 20, 17);
    let len = blob.len();
    let digest = sha256(&blob);
    let release = std::sync::Arc::new(tokio::sync::Semaphore::new(0));
    let (mut gate, _task) = stalling_upstream(blob.clone(), release.clone()).await;
    let (c, _root) = cache_of_test_server(&gate).await;
    let resumed = c.get_blob_range("slow/app", &digest, "bytes=1000-");
    let resumed = tokio::time::timeout(Duration::from_secs(20), resumed)
        .await
        .expect("a range waited for the whole blob");
    assert_eq!(resumed.status(), StatusCode::PARTIAL_CONTENT);
    let whole_range = format!("bytes 1000-{}/{len}", len - 1);
    assert_eq!(header(&resumed, "content-range"), whole_range);
    let mut resumed = resumed.bytes_stream();
    let mut got = leading(&mut resumed, len / 2 - 1000).await;

    let early = c.get_blob_range("slow/app", &digest, "bytes=10-19").await;
    assert_eq!(early.status(), StatusCode::PARTIAL_CONTENT);
    assert_eq!(
        header(&early, "content-range"),
        format!("bytes 10-19/{len}")
    );
    let mut early = early.bytes_stream();
    let mut early_got = Vec::new();
    let before_verified = tokio::time::timeout(
        Duration::from_millis(500),
        read_into(&mut early, &mut early_got),
    )
    .await;
    assert!(
        before_verified.is_err(),
        "a range ended before the blob was verified"
    );
    let past_the_end = format!("bytes={len}-");
    let unsatisfiable = c.get_blob_range("slow/app", &digest, &past_the_end).await;
    assert_eq!(unsatisfiable.status(), StatusCode::RANGE_NOT_SATISFIABLE);

    release.add_permits(3);
    read_into(&mut resumed, &mut got).await;
    assert!(got == blob[1000..], "a resumed download got other bytes");
    read_into(&mut early, &mut early_got).await;
    assert_eq!(early_got, blob[10..20]);
    gate.take_down().await;
    let stored = c.get_blob_range("slow/app", &digest, "bytes=10-19").await;
    assert_eq!(stored.status(), StatusCode::PARTIAL_CONTENT);
    assert_eq!(body(stored).await, blob[10..20]);
}

/// Two cache processes over one `store` (as stateless processes of one cache are) pull the
/// same image at once from the upstream, both serve it whole, and it is there for either
/// once the upstream is gone. With `with_skopeo`, skopeo (a real client) copies it out of
/// one of them too.
async fn two_caches_over_one_store(store: Store<'_>, with_skopeo: bool) {
    let (mut up, image) = upstream_with_image(true, "team/shared", "v1", 6).await;
    let remote = up.remote();
    let creds = Some(("mirror", "mirror-pw"));
    let mut a = cache(&remote, &up.pki.ca, store, creds).await;
    let mut b = cache(&remote, &up.pki.ca, store, creds).await;
    let pulls = (0..8).map(|i| {
        let c = if i % 2 == 0 { &a } else { &b };
        let image = &image;
        async move { assert_serves(c, "team/shared", "v1", image).await }
    });
    futures::future::join_all(pulls).await;
    if with_skopeo {
        let out = tempfile::tempdir().unwrap();
        let host = a.url("");
        let host = host.trim_start_matches("http://").trim_end_matches('/');
        skopeo::run_ok(&[
            "copy".into(),
            "--src-tls-verify=false".into(),
            format!("docker://{host}/team/shared:v1"),
            format!("dir:{}", out.path().display()),
        ])
        .await;
        let layer = out
            .path()
            .join(image.layer_digest.trim_start_matches("sha256:"));
        assert_eq!(std::fs::read(layer).unwrap(), image.layer);
    }
    // Either process may be the one that stored it.
    tokio::select! {
        () = a.stored(&image.digest) => {}
        () = b.stored(&image.digest) => {}
    }
    up.go_away().await;
    assert_serves(&a, "team/shared", "v1", &image).await;
    assert_serves(&b, "team/shared", "v1", &image).await;
}

#[tokio::test]
async fn skopeo_pulls_through_two_caches_over_one_root() {
    if !skopeo::available() {
        return;
    }
    let root = tempfile::tempdir().unwrap();
    two_caches_over_one_store(Store::Root(root.path()), true).await;
}

#[tokio::test]
async fn two_caches_over_one_bucket() {
    let Some(storage) = common::s3_storage("pull-through") else {
        eprintln!("NOTE: S3_ENDPOINT is not set: the S3 pull-through case was SKIPPED");
        return;
    };
    ensure_bucket(&storage).await;
    let prefix = storage.s3.and_then(|s3| s3.prefix).expect("prefix");
    two_caches_over_one_store(Store::Bucket(&prefix), false).await;
}
