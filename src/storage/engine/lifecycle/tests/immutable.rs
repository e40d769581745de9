//! Immutable tags against a manifest's delete, each interleaving forced (see the argument
//! in `engine::immutable_tags`): a push that creates an immutable tag while the manifest's
//! delete runs keeps a manifest that is stored, unless a collection condemned what it
//! references in between, and then its tag goes with it.

use std::sync::Arc;

use super::*;
use crate::storage::immutable::{ImmutableTagRule, ImmutableTags};

/// An engine whose tags `v*` are immutable.
fn immutable_engine() -> Arc<Gc> {
    let rules = [ImmutableTagRule {
        repositories: vec!["**".to_owned()],
        tags: vec!["v*".to_owned()],
    }];
    let options = EngineOptions {
        immutable_tags: ImmutableTags::new(&rules).unwrap(),
        ..EngineOptions::default()
    };
    Arc::new(Engine::new(Gated::default(), options))
}

/// A manifest stored by digest (untagged), and its bytes.
async fn stored_manifest(e: &Gc) -> (Digest, Bytes) {
    let (config, layer) = reclaimable(e).await;
    let bytes = manifest(&config, &layer, 21);
    let digest = Digest::compute(DigestAlgorithm::Sha256, &bytes);
    put(e, Reference::Digest(digest.clone()), bytes.clone())
        .await
        .unwrap();
    (digest, bytes)
}

/// Where a gate stops the delete: at the removal of the manifest's record.
fn record_of(digest: &Digest) -> &'static str {
    Box::leak(digest.hex().to_owned().into_boxed_str())
}

fn delete_in_background(e: &Arc<Gc>, digest: &Digest) -> tokio::task::JoinHandle<Result<()>> {
    let (e, digest) = (Arc::clone(e), digest.clone());
    tokio::spawn(async move { e.delete_manifest(&repo(), &digest).await })
}

async fn assert_served_by_tag(e: &Gc, digest: &Digest) {
    let served = e.get_manifest(&repo(), &Reference::Tag(tag("v1"))).await;
    assert_eq!(served.unwrap().info.digest, *digest);
    let by_digest = e
        .get_manifest(&repo(), &Reference::Digest(digest.clone()))
        .await;
    by_digest.unwrap();
}

/// Pushes the manifest under `v1` while its delete is stopped `when` the record is removed,
/// and checks that the manifest is served by the tag afterwards.
async fn push_during_delete(when: When) {
    let e = immutable_engine();
    let (digest, bytes) = stored_manifest(&e).await;
    let mut stopped = e.backend().gate(Op::Remove, when, record_of(&digest));
    let delete = delete_in_background(&e, &digest);
    stopped.reached().await;
    put(&e, Reference::Tag(tag("v1")), bytes).await.unwrap();
    stopped.resume();
    delete.await.unwrap().unwrap();
    assert_served_by_tag(&e, &digest).await;
}

/// The push tags after the delete's first look and checks the record before the delete
/// removes it (so it is acknowledged at once): the delete's last look finds the tag and
/// stores the record again.
#[tokio::test]
async fn a_push_checked_before_the_record_is_removed_keeps_its_manifest() {
    push_during_delete(When::Before).await;
}

/// The push tags and looks after the delete removed the record: it stores the record again
/// itself, and the delete's last look leaves the tag.
#[tokio::test]
async fn a_push_checked_after_the_record_is_removed_stores_it_again() {
    push_during_delete(When::After).await;
}

/// A delete that starts after the tag exists is refused before it changes anything.
#[tokio::test]
async fn a_delete_after_the_tag_is_refused() {
    let e = immutable_engine();
    let (digest, bytes) = stored_manifest(&e).await;
    put(&e, Reference::Tag(tag("v1")), bytes).await.unwrap();
    e.tag_manifest(&repo(), &tag("latest"), &digest)
        .await
        .unwrap();
    let refused = e.delete_manifest(&repo(), &digest).await;
    assert!(matches!(refused, Err(Error::Denied(_))), "{refused:?}");
    assert_eq!(
        e.resolve_tag(&repo(), &tag("latest")).await.unwrap(),
        digest
    );
    assert_served_by_tag(&e, &digest).await;
}

/// A collection marks while the record is gone and condemns the manifest's blobs: the
/// record cannot be stored again, so the delete takes the tag back, the push ordered
/// before it. Nothing is left naming content that is gone.
#[tokio::test]
async fn a_collection_condemning_the_blobs_meanwhile_takes_the_tag_back() {
    let e = immutable_engine();
    let (digest, bytes) = stored_manifest(&e).await;
    let mut removing = e
        .backend()
        .gate(Op::Remove, When::Before, record_of(&digest));
    let mut removed = e
        .backend()
        .gate(Op::Remove, When::After, record_of(&digest));
    let delete = delete_in_background(&e, &digest);
    removing.reached().await;
    put(&e, Reference::Tag(tag("v1")), bytes).await.unwrap();
    removing.resume();
    removed.reached().await;
    let (condemned, gc) = held_after_condemning(&e, false).await;
    removed.resume();
    delete.await.unwrap().unwrap();
    condemned.resume();
    let report = gc.await.unwrap().unwrap();
    assert_eq!(report.blobs, 2, "{report:?}");
    let tagged = e.resolve_tag(&repo(), &tag("v1")).await;
    assert!(
        matches!(tagged, Err(Error::ManifestUnknown(_))),
        "{tagged:?}"
    );
    let by_digest = e.get_manifest(&repo(), &Reference::Digest(digest)).await;
    assert!(
        matches!(by_digest, Err(Error::ManifestUnknown(_))),
        "{by_digest:?}"
    );
}
