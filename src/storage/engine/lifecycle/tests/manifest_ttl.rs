//! Expiry by age ([`GcOptions::manifest_ttl`]): what it removes, what it spares, and a
//! cache following a tag while the collection that expires its manifest runs.

use std::sync::Arc;

use super::*;

/// Collection options with manifests expiring `ttl` after they were stored.
fn expiring(ttl: Duration) -> GcOptions {
    GcOptions {
        manifest_ttl: Some(ttl),
        ..options(false)
    }
}

/// An image (config and layer blobs, its manifest) tagged `v1`: its manifest's digest.
async fn tagged_image(e: &Gc, n: u32) -> Digest {
    let (config, layer) = reclaimable(e).await;
    put(e, Reference::Tag(tag("v1")), manifest(&config, &layer, n))
        .await
        .unwrap()
}

async fn stored(e: &Gc, digest: &Digest) -> bool {
    let by_digest = Reference::Digest(digest.clone());
    match e.get_manifest(&repo(), &by_digest).await {
        Ok(_) => true,
        Err(Error::ManifestUnknown(_)) => false,
        Err(other) => panic!("{other}"),
    }
}

#[tokio::test]
async fn a_manifest_past_its_ttl_goes_with_its_tags_and_its_blobs() {
    let e = engine();
    let digest = tagged_image(&e, 1).await;
    let report = e.collect_garbage(&expiring(Duration::ZERO)).await.unwrap();
    assert_eq!(
        (report.tags, report.manifests, report.blobs),
        (1, 1, 2),
        "{report:?}"
    );
    assert!(e.resolve_tag(&repo(), &tag("v1")).await.is_err());
    assert!(!stored(&e, &digest).await);
}

/// Within the TTL nothing goes, tagged or not: without `delete_untagged`, a manifest pulled
/// by digest only lives as long as a tagged one.
#[tokio::test]
async fn within_its_ttl_a_manifest_stays_tagged_or_not() {
    let e = engine();
    let tagged = tagged_image(&e, 2).await;
    let (config, layer) = reclaimable(&e).await;
    let bytes = manifest(&config, &layer, 3);
    let untagged = Digest::compute(DigestAlgorithm::Sha256, &bytes);
    put(&e, Reference::Digest(untagged.clone()), bytes)
        .await
        .unwrap();
    let report = e
        .collect_garbage(&expiring(Duration::from_secs(3600)))
        .await
        .unwrap();
    assert_eq!(
        (report.tags, report.manifests, report.blobs),
        (0, 0, 0),
        "{report:?}"
    );
    assert_eq!(e.resolve_tag(&repo(), &tag("v1")).await.unwrap(), tagged);
    assert!(stored(&e, &untagged).await);
}

#[tokio::test]
async fn a_dry_run_counts_what_expiry_would_remove_and_removes_nothing() {
    let e = engine();
    let digest = tagged_image(&e, 4).await;
    let dry = GcOptions {
        dry_run: true,
        ..expiring(Duration::ZERO)
    };
    let report = e.collect_garbage(&dry).await.unwrap();
    assert_eq!(
        (report.tags, report.manifests, report.blobs),
        (1, 1, 2),
        "{report:?}"
    );
    assert_eq!(e.resolve_tag(&repo(), &tag("v1")).await.unwrap(), digest);
    assert!(stored(&e, &digest).await);
}

/// A tag moved to a manifest stored after the run began (another cache process followed the
/// upstream) is not expired, nor is its new manifest; the old one goes.
#[tokio::test]
async fn a_tag_moved_during_the_run_stays_with_its_new_manifest() {
    let e = engine();
    let old = tagged_image(&e, 5).await;
    // Held once it has listed the records (what may expire), before it reads the tags
    // (stored beside the records).
    let mut listed = e.backend().gate(Op::List, When::After, "/_manifests/");
    let gc = tokio::spawn({
        let e = e.clone();
        async move { e.collect_garbage(&expiring(Duration::ZERO)).await }
    });
    listed.reached().await;
    let new = tagged_image(&e, 6).await;
    listed.resume();
    let report = gc.await.unwrap().unwrap();
    assert_eq!((report.tags, report.manifests), (0, 1), "{report:?}");
    assert_eq!(e.resolve_tag(&repo(), &tag("v1")).await.unwrap(), new);
    assert!(stored(&e, &new).await);
    assert!(!stored(&e, &old).await);
}

/// A cache that tags an expired manifest again (its upstream still names it) while the
/// collection expiring it holds its condemned set keeps it, with its blobs: the tag's push
/// intent makes it reachable at the collection's second look (the ordinary phase 1
/// argument), and the push waits for the set to go.
#[tokio::test]
async fn a_tag_pushed_while_expiry_condemns_its_manifest_keeps_it() {
    let e: Arc<Gc> = engine();
    let digest = tagged_image(&e, 7).await;
    let mut condemned = e.backend().gate(Op::Write, When::After, "gc/");
    let gc = tokio::spawn({
        let e = e.clone();
        async move { e.collect_garbage(&expiring(Duration::ZERO)).await }
    });
    condemned.reached().await;
    assert!(
        e.resolve_tag(&repo(), &tag("v1")).await.is_err(),
        "not expired"
    );
    let mut intent = e.backend().gate(Op::Write, When::After, "_intents/");
    let push = tokio::spawn({
        let (e, digest) = (e.clone(), digest.clone());
        async move { e.tag_manifest(&repo(), &tag("v1"), &digest).await }
    });
    intent.reached().await;
    intent.resume();
    condemned.resume();
    let report = gc.await.unwrap().unwrap();
    push.await.unwrap().unwrap();
    assert_eq!((report.manifests, report.blobs), (0, 0), "{report:?}");
    assert_eq!(e.resolve_tag(&repo(), &tag("v1")).await.unwrap(), digest);
    assert!(stored(&e, &digest).await);
    let again = e.collect_garbage(&options(false)).await.unwrap();
    assert_eq!(again.blobs, 0, "{again:?}");
}
