//! One upload session changed through two driver instances on one root (two processes: the
//! engine's lock of one does not see the other): the filesystem's session lease serialises
//! them, so no chunk lands in a blob another instance has just committed.

use std::time::Duration;

use bytes::Bytes;
use futures::{StreamExt, stream};
use marina_distribution::oci::DigestAlgorithm;
use marina_distribution::storage::UploadHandle;
use marina_distribution::{Error, StorageDriver};
use tokio::sync::oneshot;

use crate::helpers::{body, open, repo, sha256};

/// A chunk's body that yields `first` (and says so on `receiving`), then `second` once `go`
/// is sent: a client still sending while something else happens.
fn held_body(
    first: Vec<u8>,
    second: Vec<u8>,
) -> (
    impl futures::Stream<Item = marina_distribution::Result<Bytes>> + Send,
    oneshot::Receiver<()>,
    oneshot::Sender<()>,
) {
    let (started, receiving) = oneshot::channel::<()>();
    let (go, resume) = oneshot::channel::<()>();
    let body = stream::once(async move {
        let _ = started.send(());
        Ok(Bytes::from(first))
    })
    .chain(stream::once(async move {
        let _ = resume.await;
        Ok(Bytes::from(second))
    }));
    (body, receiving, go)
}
use crate::storage_io::{files_under, read_all};

/// A chunk still being received by one instance while another finishes the session: the
/// finish waits for the chunk, then finds the session grown and refuses the digest
/// (`DIGEST_INVALID`, which ends the session); no blob is stored. (Without the lease, the finish renamed the
/// session's file into the blob while the chunk was still writing into it: a blob under a
/// digest it did not have.)
#[tokio::test]
async fn a_finish_waits_for_a_chunk_another_instance_is_receiving() {
    let dir = tempfile::tempdir().unwrap();
    let (a, b) = (open(dir.path()).await, open(dir.path()).await);
    let r = repo("library/race");
    let id = a
        .start_upload(&r, DigestAlgorithm::Sha256)
        .await
        .unwrap()
        .id();
    a.put_upload_chunk(&r, &id, Some(0), None, body(b"0123456789", 4))
        .await
        .unwrap();

    let (held, receiving, go) = held_body(vec![b'x'; 100_000], vec![b'y'; 100_000]);
    let legit: &[u8] = b"0123456789legit";
    let digest = sha256(legit);
    let (chunk, finish) = tokio::join!(b.put_upload_chunk(&r, &id, Some(10), None, held), async {
        receiving.await.unwrap();
        let finishing = a.finish_upload(&r, &id, &digest, None, body(b"legit", 5));
        tokio::pin!(finishing);
        // The finish must wait while the chunk is received.
        let early = tokio::time::timeout(Duration::from_millis(300), &mut finishing).await;
        go.send(()).unwrap();
        match early {
            Ok(done) => done,
            Err(_) => finishing.await,
        }
    });
    assert_eq!(chunk.unwrap().offset(), 200_010);
    match finish {
        Err(Error::DigestInvalid { .. }) => {}
        other => panic!("the finish did not refuse the grown session: {other:?}"),
    }
    assert!(matches!(
        a.stat(&r, &digest).await,
        Err(Error::BlobUnknown(_))
    ));
    // A refused digest ends the session, with its bytes.
    assert!(matches!(
        b.get_upload_progress(&r, &id).await,
        Err(Error::BlobUploadUnknown(_))
    ));
    assert!(files_under(&dir.path().join("uploads")).is_empty());
}

/// Two chunks for one offset through two instances: the second waits for the first, then
/// finds the session moved on and is refused with its range (`416`, spec "Pushing a blob in
/// chunks"), as within one process; the session holds the first chunk's bytes, whole.
#[tokio::test]
async fn a_second_chunk_for_the_same_offset_waits_then_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let (a, b) = (open(dir.path()).await, open(dir.path()).await);
    let r = repo("library/same-offset");
    let id = a
        .start_upload(&r, DigestAlgorithm::Sha256)
        .await
        .unwrap()
        .id();
    let (held, receiving, go) = held_body(vec![b'a'; 70_000], vec![b'a'; 30_000]);
    let (first, second) = tokio::join!(a.put_upload_chunk(&r, &id, Some(0), None, held), async {
        receiving.await.unwrap();
        let second = b.put_upload_chunk(&r, &id, Some(0), None, body(&[b'b'; 50_000], 7_000));
        tokio::pin!(second);
        let early = tokio::time::timeout(Duration::from_millis(300), &mut second).await;
        assert!(early.is_err(), "the second chunk did not wait: {early:?}");
        go.send(()).unwrap();
        second.await
    });
    assert_eq!(first.unwrap().offset(), 100_000);
    match second {
        Err(Error::RangeInvalid { size, .. }) => assert_eq!(size, 100_000),
        other => panic!("the second chunk was not refused: {other:?}"),
    }
    let content = vec![b'a'; 100_000];
    b.finish_upload(&r, &id, &sha256(&content), None, body(b"", 1))
        .await
        .unwrap();
    assert_eq!(read_all(&a, &r, &sha256(&content)).await, content);
}

/// A manifest deleted through one instance while another pushes it by tag, and both in one
/// instance: no tag is left naming the deleted manifest.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_delete_racing_a_tag_push_leaves_no_tag_without_its_manifest() {
    let dir = tempfile::tempdir().unwrap();
    let (a, b) = (open(dir.path()).await, open(dir.path()).await);
    crate::delete_race::assert_no_tag_outlives_its_manifest(&a, &b, &repo("race/two"), 60).await;
    crate::delete_race::assert_no_tag_outlives_its_manifest(&a, &a, &repo("race/one"), 60).await;
}

/// A manifest deleted while a push moves its tag to another manifest, through another
/// instance and through the same one: the move is kept (the tag's locks, `tag-locks` at the
/// root across instances, order the delete's read and removal of the tag against the
/// push's write).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_delete_racing_a_tag_move_keeps_the_move() {
    let dir = tempfile::tempdir().unwrap();
    let (a, b) = (open(dir.path()).await, open(dir.path()).await);
    crate::delete_race::assert_no_tag_move_is_lost(&a, &b, &repo("race/move-two"), 60).await;
    crate::delete_race::assert_no_tag_move_is_lost(&a, &a, &repo("race/move-one"), 60).await;
}
