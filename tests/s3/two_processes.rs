//! Two processes on one bucket and prefix (two drivers, or two backends): one upload shared
//! between them, the metadata cache's view of the other's deletes, and appends or PATCHes of
//! one session racing at one offset.

use bytes::Bytes;
use marina_distribution::Error;
use marina_distribution::oci::{RangeRequest, Reference, Tag};
use marina_distribution::storage::s3::{S3Backend, S3Driver};
use marina_distribution::storage::{EngineOptions, StorageDriver, UploadHandle, UploadId};

use crate::env::{MIB, PART, s3_or_skip};
use crate::helpers::{
    assert_no_upload_leftovers, body, cut, data, empty, push_manifest, read_all, repo, sha256,
    start_upload,
};
use crate::outage_proxy::{OutageProxy, host_port};
use crate::session_race;

/// Issue 4 point 5: two driver instances (as two registry processes would be) on one bucket
/// and prefix share one chunked upload, alternating requests, then manifest and tag
/// operations, each read back through the other instance.
#[tokio::test]
async fn two_drivers_on_one_bucket_alternate_requests() {
    let env = s3_or_skip!("two_drivers_on_one_bucket_alternate_requests");
    let config = env.config("two");
    // Another process's delete is seen within the cache's time to live (see below).
    let ttl = std::time::Duration::from_millis(300);
    let a = env.driver_with_ttl(&config, 300).await;
    let b = env.driver_with_ttl(&config, 300).await;
    let drivers = [&a, &b];
    let r = repo("s3/shared");
    let blob = data(13 * MIB + 5, 9);
    let digest = sha256(&blob);
    let id = start_upload(&a, &r).await;
    let mut offset = 0u64;
    for (i, chunk) in cut(&blob, &[3 * MIB, 1, 4 * MIB + 9, 700_000])
        .into_iter()
        .enumerate()
    {
        let d = drivers[i % 2];
        let other = drivers[(i + 1) % 2];
        assert_eq!(
            other
                .get_upload_progress(&r, &id)
                .await
                .unwrap()
                .progress()
                .offset,
            offset
        );
        let len = chunk.len() as u64;
        d.put_upload_chunk(
            &r,
            &id,
            Some(offset),
            Some(len),
            body(cut(&chunk, &[100_000])),
        )
        .await
        .unwrap_or_else(|e| panic!("chunk {i} on driver {}: {e}", i % 2));
        offset += len;
        // An out-of-order chunk on the other instance is refused and changes nothing.
        let err = other
            .put_upload_chunk(&r, &id, Some(0), None, body(vec![Bytes::from_static(b"x")]))
            .await
            .expect_err("out of order");
        assert!(
            matches!(err, Error::RangeInvalid { size, .. } if size == offset),
            "{err:?}"
        );
    }
    b.finish_upload(&r, &id, &digest, None, empty())
        .await
        .expect("finish on b");
    assert_no_upload_leftovers(&a).await;
    let manifest = push_manifest(&a, &r, Some((&digest, blob.len() as u64)), "v1").await;
    let v1 = Reference::Tag(Tag::parse("v1").unwrap());
    assert_eq!(b.get_manifest(&r, &v1).await.unwrap().info.digest, manifest);
    b.tag_manifest(&r, &Tag::parse("v1.0").unwrap(), &manifest)
        .await
        .unwrap();
    assert_eq!(
        a.get_tags(&r, None, None).await.unwrap().tags,
        vec!["v1", "v1.0"]
    );
    assert_eq!(read_all(&a, &r, &digest, None).await, blob);
    let tail = RangeRequest::Suffix(10);
    assert_eq!(
        read_all(&b, &r, &digest, Some(tail)).await,
        blob.slice(blob.len() - 10..)
    );
    a.untag_manifest(&r, &Tag::parse("v1").unwrap())
        .await
        .unwrap();
    // `b` may have the tag cached: gone for it once the entry expired.
    tokio::time::sleep(ttl).await;
    let err = b
        .resolve_tag(&r, &Tag::parse("v1").unwrap())
        .await
        .expect_err("untagged");
    assert!(matches!(err, Error::ManifestUnknown(_)), "{err:?}");
    b.delete_manifest(&r, &manifest).await.unwrap();
    assert!(a.get_tags(&r, None, None).await.unwrap().tags.is_empty());
}

/// The metadata cache across processes (two drivers on one prefix): reads are answered from
/// memory once cached; the process that deletes sees its delete at once, the other one within
/// the cache's time to live.
#[tokio::test]
async fn another_process_sees_deletes_within_the_cache_ttl() {
    let env = s3_or_skip!("another_process_sees_deletes_within_the_cache_ttl");
    let config = env.config("cachettl");
    let a = env.driver_with_ttl(&config, 400).await;
    let b = env.driver_with_ttl(&config, 400).await;
    let r = repo("s3/cache");
    let blob = data(1000, 3);
    let digest = sha256(&blob);
    a.put_content(&r, &digest, None, body(vec![blob]))
        .await
        .unwrap();
    let manifest = push_manifest(&a, &r, Some((&digest, 1000)), "v1").await;
    let v1 = Reference::Tag(Tag::parse("v1").unwrap());
    let by_digest = Reference::Digest(manifest.clone());
    for _ in 0..2 {
        assert_eq!(b.stat(&r, &digest).await.unwrap().size, 1000);
        assert_eq!(b.get_manifest(&r, &v1).await.unwrap().info.digest, manifest);
    }
    let stats = b.cache().expect("on by default for S3").stats();
    assert_eq!((stats.links.hits, stats.links.misses), (1, 1));
    assert_eq!((stats.tags.hits, stats.tags.misses), (1, 1));
    assert_eq!((stats.manifests.hits, stats.manifests.misses), (1, 1));
    a.delete(&r, &digest).await.unwrap();
    a.delete_manifest(&r, &manifest).await.unwrap();
    // The deleting process: at once, though `a` had cached nothing of it (writes read the
    // store) and whatever reads it made are dropped with the delete.
    assert!(matches!(
        a.stat(&r, &digest).await,
        Err(Error::BlobUnknown(_))
    ));
    for reference in [&v1, &by_digest] {
        let err = a.get_manifest(&r, reference).await.expect_err("deleted");
        assert!(matches!(err, Error::ManifestUnknown(_)), "{err:?}");
    }
    // The other process: once its entries expired.
    tokio::time::sleep(std::time::Duration::from_millis(400)).await;
    assert!(matches!(
        b.stat(&r, &digest).await,
        Err(Error::BlobUnknown(_))
    ));
    for reference in [&v1, &by_digest] {
        let err = b.get_manifest(&r, reference).await.expect_err("deleted");
        assert!(matches!(err, Error::ManifestUnknown(_)), "{err:?}");
    }
}

/// Two appends at one offset of one session, from the same loaded state, of equal length and
/// different bytes: what a client sending one chunk twice at once through two processes
/// causes (within one process the engine serialises them). Whichever state is persisted,
/// it names only bytes its own append wrote, so committing it stores exactly those bytes or
/// fails; it never stores one chunk's bytes under the other's digest.
#[tokio::test]
async fn same_offset_appends_from_one_state_keep_their_own_bytes() {
    use marina_distribution::storage::backend::Backend;
    use marina_distribution::storage::layout;
    let env = s3_or_skip!("same_offset_appends_from_one_state_keep_their_own_bytes");
    let backend = env.backend(&env.config("race")).await;
    // Below one part (staged segments), then filling a part (a multipart part each).
    for len in [64 * 1024, PART + 3] {
        let id = UploadId::generate();
        let base = backend.start_upload(&id, None).await.unwrap();
        let (a, b) = (data(len, 41), data(len, 42));
        let mut state_a = base.clone();
        backend
            .append_upload(&id, &mut state_a, 0, body(vec![a.clone()]))
            .await
            .unwrap();
        let mut state_b = base.clone();
        backend
            .append_upload(&id, &mut state_b, 0, body(vec![b.clone()]))
            .await
            .unwrap();
        // The first append's state is the one persisted last.
        let digest = sha256(&a);
        match backend
            .finish_upload(&id, state_a, len as u64, &digest)
            .await
        {
            Ok(()) => {
                let stored = backend.read(&layout::blob_data(&digest)).await.unwrap();
                let stored = stored.expect("committed blob");
                assert!(
                    stored == a,
                    "{len} bytes: the blob {digest} holds bytes with digest {}",
                    sha256(&stored)
                );
            }
            // A part the other append replaced no longer matches: refused, nothing stored.
            Err(_) => {
                assert!(len >= PART, "{len} bytes: only a replaced part may fail");
                assert!(
                    backend
                        .read(&layout::blob_data(&digest))
                        .await
                        .unwrap()
                        .is_none()
                );
            }
        }
    }
}

/// Two PATCHes of one session at the same offset, in two processes (two engines: the upload
/// lock of one does not see the other), the first still receiving its body when the second
/// is persisted. With conditional writes (detected on moto) the first is refused with the
/// session's current offset and the session keeps the second's bytes; without them both are
/// acknowledged and the second's bytes are silently dropped from the session.
#[tokio::test]
async fn concurrent_patches_of_one_session_in_two_processes() {
    let env = s3_or_skip!("concurrent_patches_of_one_session_in_two_processes");
    for conditional in [None, Some(false)] {
        let mut config = env.config("cas");
        config.conditional_writes = conditional;
        let backend = env.backend(&config).await;
        assert_eq!(backend.conditional_writes(), conditional.is_none());
        let first = S3Driver::from_backend(backend, EngineOptions::default());
        let second = env.driver_for(&config).await;
        let r = repo("s3/cas");
        let (a, b) = (data(64 * 1024, 51), data(64 * 1024, 52));
        if conditional.is_none() {
            session_race::assert_later_patch_refused(&first, &second, &r, a, b).await;
            assert_no_upload_leftovers(&first).await;
            continue;
        }
        // The hazard the conditional write removes: both acknowledged, one lost.
        let (id, first_result, second_result) =
            session_race::race_patches(&first, &second, &r, a, b.clone()).await;
        assert_eq!(second_result.expect("second PATCH"), b.len() as u64);
        assert!(first_result.is_ok(), "{first_result:?}");
        first.abort_upload(&r, &id).await.unwrap();
    }
}

/// A process started while the store cannot be reached does not know yet whether it honours
/// `If-Match`: it finds out when it first reads a session record, so two processes started
/// during an outage still refuse the later of two concurrent `PATCH`es once the store is
/// back (before, the first kept unconditional writes for its whole life).
#[tokio::test]
async fn conditional_writes_are_detected_once_a_store_down_at_start_answers() {
    let env = s3_or_skip!("conditional_writes_are_detected_once_a_store_down_at_start_answers");
    let config = env.config("cas-late");
    let endpoint = config.endpoint.clone().expect("S3_ENDPOINT");
    env.backend(&config).await; // the bucket exists
    let mut proxy = OutageProxy::closed(&host_port(&endpoint)).await;
    let mut down = config.clone();
    down.endpoint = Some(format!("http://127.0.0.1:{}", proxy.port));
    let backend = S3Backend::connect(&down)
        .await
        .expect("a store down at start does not stop the driver");
    assert!(!backend.conditional_writes());
    proxy.up().await;
    let first = S3Driver::from_backend(backend, EngineOptions::default());
    let second = env.driver_for(&down).await;
    let r = repo("s3/cas-late");
    let (a, b) = (data(64 * 1024, 53), data(64 * 1024, 54));
    session_race::assert_later_patch_refused(&first, &second, &r, a, b).await;
    assert!(first.backend().conditional_writes());
}

/// A finish (`PUT` with a final chunk) in one process racing a `PATCH` in another: with
/// conditional writes the finish claims the session at the version it read, so it is refused
/// when the `PATCH` was persisted first, and the session keeps every acknowledged chunk
/// (before, the finish committed without the chunk and dropped the session).
#[tokio::test]
async fn a_finish_racing_an_append_in_another_process_is_refused() {
    let env = s3_or_skip!("a_finish_racing_an_append_in_another_process_is_refused");
    let config = env.config("cas-finish");
    let (first, second) = (env.driver_for(&config).await, env.driver_for(&config).await);
    let r = repo("s3/cas-finish");
    let (a, b, last) = (data(20_000, 61), data(20_000, 62), data(100, 63));
    session_race::assert_finish_racing_an_append_refused(&first, &second, &r, a, b, last).await;
}

/// A cancel (`DELETE` of the session) in one process racing a finish in another never
/// leaves a session that is known but whose bytes are gone.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cancel_racing_a_finish_in_another_process_never_revives_the_session() {
    let env = s3_or_skip!("a_cancel_racing_a_finish_in_another_process_never_revives_the_session");
    let config = env.config("cas-cancel");
    let (first, second) = (env.driver_for(&config).await, env.driver_for(&config).await);
    let r = repo("s3/cas-cancel");
    session_race::assert_cancel_racing_a_finish_never_revives(
        &first,
        &second,
        &r,
        &data(3000, 71),
        40,
    )
    .await;
}

/// A manifest deleted through one process while another pushes it by tag: no tag is left
/// naming the deleted manifest.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_delete_racing_a_tag_push_leaves_no_tag_without_its_manifest() {
    let env = s3_or_skip!("a_delete_racing_a_tag_push_leaves_no_tag_without_its_manifest");
    let config = env.config("delete-race");
    let (first, second) = (env.driver_for(&config).await, env.driver_for(&config).await);
    crate::delete_race::assert_no_tag_outlives_its_manifest(
        &first,
        &second,
        &repo("s3/delete-race"),
        40,
    )
    .await;
}

/// A manifest deleted through one process while another moves its tag to a new manifest:
/// the move is kept (the delete removes the tag only at the version it read: `If-Match`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_delete_racing_a_tag_move_in_another_process_keeps_the_move() {
    let env = s3_or_skip!("a_delete_racing_a_tag_move_in_another_process_keeps_the_move");
    let config = env.config("tag-move-race");
    let (first, second) = (env.driver_for(&config).await, env.driver_for(&config).await);
    crate::delete_race::assert_no_tag_move_is_lost(&first, &second, &repo("s3/tag-move"), 40).await;
}
