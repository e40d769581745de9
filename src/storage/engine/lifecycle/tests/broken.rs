//! Broken records: what a collection reclaims (records no tag reaches, old enough, whose
//! content is gone or torn) and what it keeps, including the interleavings of the argument
//! in "Broken records" of the `lifecycle` docs.

use super::*;
use crate::storage::lifecycle::BROKEN_RECORD_AGE;

/// Older than a collection's threshold for broken records.
fn long_ago() -> SystemTime {
    SystemTime::now() - BROKEN_RECORD_AGE - Duration::from_secs(60)
}

fn record_key(m: &Digest) -> Key {
    layout::manifest(&repo(), m)
}

async fn stored(e: &Gc, m: &Digest) -> bool {
    e.backend().read(&record_key(m)).await.unwrap().is_some()
}

fn age(e: &Gc, m: &Digest) {
    e.backend().inner.set_modified(&record_key(m), long_ago());
}

/// A push by digest refused because a whole collection ran between its first check and its
/// record: the record stays, its blobs gone. Returns it and what it references.
async fn refused_push(e: &std::sync::Arc<Gc>, n: u32) -> (Digest, Digest, Digest) {
    // Blobs of its own (of the sizes `manifest` states), which no other record keeps.
    let config = push_blob(
        e,
        Box::leak(format!("{n:02}").into_bytes().into_boxed_slice()),
    )
    .await;
    let layer = push_blob(
        e,
        Box::leak(format!("lay{n:02}").into_bytes().into_boxed_slice()),
    )
    .await;
    let bytes = manifest(&config, &layer, n);
    let m = Digest::compute(DigestAlgorithm::Sha256, &bytes);
    let mut record = e.backend().gate(Op::Write, When::Before, "/_manifests/");
    let push = tokio::spawn({
        let (e, m) = (e.clone(), m.clone());
        async move { put(&e, Reference::Digest(m), bytes).await }
    });
    record.reached().await;
    let report = e.collect_garbage(&options(false)).await.unwrap();
    assert_eq!(report.blobs, 2, "{report:?}");
    record.resume();
    let pushed = push.await.unwrap();
    assert!(
        matches!(pushed, Err(Error::ManifestBlobUnknown(_))),
        "{pushed:?}"
    );
    assert!(stored(e, &m).await, "the refused push's record");
    (m, config, layer)
}

#[tokio::test]
async fn a_refused_pushs_record_is_reclaimed_once_old() {
    let e = engine();
    let (m, _, _) = refused_push(&e, 1).await;
    // Young: a push may still be checking it.
    let report = e.collect_garbage(&options(false)).await.unwrap();
    assert_eq!((report.manifests, report.broken), (0, 0), "{report:?}");
    assert!(stored(&e, &m).await);
    age(&e, &m);
    let dry = e
        .collect_garbage(&GcOptions {
            dry_run: true,
            ..options(false)
        })
        .await
        .unwrap();
    assert_eq!((dry.manifests, dry.broken), (1, 1), "{dry:?}");
    assert!(stored(&e, &m).await, "a dry run deletes nothing");
    let report = e.collect_garbage(&options(false)).await.unwrap();
    assert_eq!((report.manifests, report.broken), (1, 1), "{report:?}");
    assert!(!stored(&e, &m).await);
    let served = e.get_manifest(&repo(), &Reference::Digest(m)).await;
    assert!(
        matches!(served, Err(Error::ManifestUnknown(_))),
        "{served:?}"
    );
    let names = e
        .backend()
        .list(&layout::gc_dir(), None, None)
        .await
        .unwrap();
    assert!(names.is_empty(), "condemned sets left: {names:?}");
}

/// The record is pushed again (written, so its time is new) after the collection condemned
/// it, by a push whose first check passes on a link whose blob is gone: the collection sees
/// the new time and keeps the record, though its blob is still missing.
#[tokio::test]
async fn a_broken_record_written_again_while_condemned_is_kept() {
    let e = engine();
    let (m, config, layer) = refused_push(&e, 2).await;
    age(&e, &m);
    // Links without their blobs (as a mount racing a collection may leave for a moment).
    for (digest, size) in [(&config, "2"), (&layer, "5")] {
        e.backend()
            .write(&layout::layer_link(&repo(), digest), Bytes::from(size))
            .await
            .unwrap();
    }
    let (condemned, gc) = held_after_condemning(&e, false).await;
    let mut waiting = e.backend().gate(Op::List, When::After, "gc");
    let push = tokio::spawn({
        let (e, m) = (e.clone(), m.clone());
        async move { put(&e, Reference::Digest(m), manifest(&config, &layer, 2)).await }
    });
    waiting.reached().await; // the record is written again, the set seen
    waiting.resume();
    condemned.resume();
    let report = gc.await.unwrap().unwrap();
    assert_eq!((report.manifests, report.broken), (0, 0), "{report:?}");
    assert!(stored(&e, &m).await);
    let pushed = push.await.unwrap();
    assert!(
        matches!(pushed, Err(Error::ManifestBlobUnknown(_))),
        "{pushed:?}"
    );
}

/// The blob comes back (pushed again) after the collection condemned the record: the
/// collection checks again and keeps it, and a push of the manifest then succeeds.
#[tokio::test]
async fn a_broken_record_whose_blobs_come_back_is_kept() {
    let e = engine();
    let (m, _, _) = refused_push(&e, 3).await;
    age(&e, &m);
    let (condemned, gc) = held_after_condemning(&e, false).await;
    let config = push_blob(&e, b"03").await;
    let layer = push_blob(&e, b"lay03").await;
    condemned.resume();
    let report = gc.await.unwrap().unwrap();
    assert_eq!((report.manifests, report.broken), (0, 0), "{report:?}");
    let pushed = put(
        &e,
        Reference::Digest(m.clone()),
        manifest(&config, &layer, 3),
    )
    .await;
    assert_eq!(pushed.unwrap(), m);
}

/// A broken record an index names as a child stays (a collection never deletes a child of a
/// stored index), and so does a broken record a tag reaches.
#[tokio::test]
async fn a_broken_record_named_by_an_index_or_a_tag_is_kept() {
    let e = engine();
    let (child, _, _) = refused_push(&e, 4).await;
    let index = Bytes::from(format!(
        r#"{{"schemaVersion":2,"mediaType":"{}","manifests":[{{"mediaType":"{}","digest":"{child}","size":{}}}]}}"#,
        media_types::OCI_INDEX,
        media_types::OCI_MANIFEST,
        e.get_manifest(&repo(), &Reference::Digest(child.clone()))
            .await
            .unwrap()
            .info
            .size
    ));
    let index_digest = e
        .put_manifest(
            &repo(),
            &Reference::Digest(Digest::compute(DigestAlgorithm::Sha256, &index)),
            Some(media_types::OCI_INDEX),
            index,
        )
        .await
        .unwrap()
        .digest;
    let (tagged, _, _) = refused_push(&e, 5).await;
    let intent = e
        .write_intent(&repo(), &tagged, &record_key(&tagged))
        .await
        .unwrap();
    e.backend()
        .write_tag(
            &layout::tag(&repo(), &tag("v1")),
            TagTarget {
                digest: &tagged,
                record: &record_key(&tagged),
            },
        )
        .await
        .unwrap();
    e.release_intent(intent).await;
    for m in [&child, &index_digest, &tagged] {
        age(&e, m);
    }
    let report = e.collect_garbage(&options(false)).await.unwrap();
    assert_eq!((report.manifests, report.broken), (0, 0), "{report:?}");
    for m in [&child, &index_digest, &tagged] {
        assert!(stored(&e, m).await, "{m}");
    }
}

/// A torn record (what a failed write may leave under the final name) is reclaimed once
/// old; a young one may be a write in progress and stays.
#[tokio::test]
async fn a_torn_record_is_reclaimed_once_old() {
    let e = engine();
    let torn = Digest::compute(DigestAlgorithm::Sha256, b"what it should have held");
    e.backend()
        .write(&record_key(&torn), Bytes::from_static(b"{\"schemaVer"))
        .await
        .unwrap();
    let report = e.collect_garbage(&options(false)).await.unwrap();
    assert_eq!(report.broken, 0, "{report:?}");
    assert!(stored(&e, &torn).await);
    age(&e, &torn);
    let report = e.collect_garbage(&options(false)).await.unwrap();
    assert_eq!((report.manifests, report.broken), (1, 1), "{report:?}");
    assert!(!stored(&e, &torn).await);
}
