//! Uploads that go on after an interruption: a second driver instance continuing an
//! upload, a failed or abandoned append retried at the old offset, and bytes a crash left
//! beyond the recorded offset.

use bytes::Bytes;
use futures::{StreamExt, stream};
use marina_distribution::oci::DigestAlgorithm;
use marina_distribution::storage::UploadHandle;
use marina_distribution::storage::filesystem::WRITE_BATCH;
use marina_distribution::{Error, StorageDriver};

use crate::helpers::{body, failing_body, files_under, open, pattern, read_all, repo, sha256};

#[tokio::test]
async fn second_instance_continues_an_upload() {
    let dir = tempfile::tempdir().unwrap();
    let r = repo("library/resume");
    let data = pattern(3 * WRITE_BATCH + 12_345, 7);
    let (first, second) = data.split_at(WRITE_BATCH + 999);

    let id = {
        let a = open(dir.path()).await;
        let up = a.start_upload(&r, DigestAlgorithm::Sha256).await.unwrap();
        let up = a
            .put_upload_chunk(
                &r,
                &up.id(),
                Some(0),
                Some(first.len() as u64),
                body(first, 65_536),
            )
            .await
            .unwrap();
        assert_eq!(up.offset(), first.len() as u64);
        up.id()
    }; // first instance dropped: nothing of the upload lives in its memory

    let b = open(dir.path()).await;
    let progress = b.get_upload_progress(&r, &id).await.unwrap();
    assert_eq!(progress.offset(), first.len() as u64);
    // The hash state continues: the final digest covers bytes received by both instances.
    let info = b
        .finish_upload(&r, &id, &sha256(&data), None, body(second, 100_000))
        .await
        .unwrap();
    assert_eq!(info.size, data.len() as u64);
    assert_eq!(read_all(&b, &r, &sha256(&data)).await, data);
    // And a third instance sees the blob.
    let c = open(dir.path()).await;
    assert_eq!(
        c.stat(&r, &sha256(&data)).await.unwrap().size,
        data.len() as u64
    );
    assert!(files_under(&dir.path().join("uploads")).is_empty());
}

#[tokio::test]
async fn failed_append_leaves_the_upload_resumable_at_the_old_offset() {
    let dir = tempfile::tempdir().unwrap();
    let driver = open(dir.path()).await;
    let r = repo("flaky");
    let head = pattern(5000, 1);
    let tail = pattern(2 * WRITE_BATCH + 77, 2);
    let junk = pattern(3 * WRITE_BATCH + 5, 3);

    let up = driver
        .start_upload(&r, DigestAlgorithm::Sha256)
        .await
        .unwrap();
    let id = up.id();
    driver
        .put_upload_chunk(&r, &id, Some(0), None, body(&head, 1000))
        .await
        .unwrap();

    // Several batches reach the disk before the body fails.
    let err = driver
        .put_upload_chunk(
            &r,
            &id,
            Some(head.len() as u64),
            None,
            failing_body(&junk, 256 * 1024),
        )
        .await
        .unwrap_err();
    assert!(matches!(err, Error::BlobUploadInvalid(_)), "{err:?}");
    let data_file = dir.path().join("uploads").join(id.as_str());
    assert!(
        std::fs::metadata(&data_file).unwrap().len() > head.len() as u64,
        "the failed append should have written some bytes (otherwise this test tests nothing)"
    );

    // A fresh instance (as after a restart) still sees the old offset...
    let other = open(dir.path()).await;
    assert_eq!(
        other.get_upload_progress(&r, &id).await.unwrap().offset(),
        head.len() as u64
    );
    // ...and continuing there discards the junk, for the bytes and for the hash.
    let up = other
        .put_upload_chunk(&r, &id, Some(head.len() as u64), None, body(&tail, 4096))
        .await
        .unwrap();
    assert_eq!(up.offset(), (head.len() + tail.len()) as u64);
    let whole = [head.as_slice(), tail.as_slice()].concat();
    // The data file holds exactly the acknowledged bytes: the junk tail was cut off.
    assert_eq!(std::fs::read(&data_file).unwrap(), whole);
    driver
        .finish_upload(&r, &id, &sha256(&whole), None, stream::empty())
        .await
        .unwrap();
    assert_eq!(read_all(&driver, &r, &sha256(&whole)).await, whole);
    let blob = dir.path().join("blobs/sha256").join(sha256(&whole).hex());
    assert_eq!(std::fs::read(blob).unwrap(), whole);
}

#[tokio::test]
async fn a_crash_leftover_beyond_the_offset_is_discarded() {
    // As if the process died after writing a chunk but before recording the new offset.
    let dir = tempfile::tempdir().unwrap();
    let driver = open(dir.path()).await;
    let r = repo("crashy");
    let up = driver
        .start_upload(&r, DigestAlgorithm::Sha256)
        .await
        .unwrap();
    driver
        .put_upload_chunk(&r, &up.id(), Some(0), None, body(b"hello ", 2))
        .await
        .unwrap();
    let data_file = dir.path().join("uploads").join(up.id().as_str());
    let mut on_disk = std::fs::read(&data_file).unwrap();
    assert_eq!(on_disk, b"hello ");
    on_disk.extend_from_slice(b"GARBAGE THAT WAS NEVER ACKNOWLEDGED");
    std::fs::write(&data_file, &on_disk).unwrap();

    let fresh = open(dir.path()).await;
    fresh
        .put_upload_chunk(&r, &up.id(), Some(6), None, body(b"wor", 5))
        .await
        .unwrap();
    assert_eq!(std::fs::read(&data_file).unwrap(), b"hello wor");
    fresh
        .finish_upload(&r, &up.id(), &sha256(b"hello world"), None, body(b"ld", 5))
        .await
        .unwrap();
    assert_eq!(
        read_all(&fresh, &r, &sha256(b"hello world")).await,
        b"hello world"
    );
}

#[tokio::test]
async fn an_abandoned_append_does_not_corrupt_the_retry() {
    // A client disconnects mid-chunk: the registry drops the request's future while batch
    // writes may still be running, and the client retries at the old offset right away.
    let dir = tempfile::tempdir().unwrap();
    let driver = open(dir.path()).await;
    let r = repo("abandoned");
    let head = pattern(1000, 11);
    let junk = pattern(3 * WRITE_BATCH + 5, 12);
    let retry = pattern(4 * WRITE_BATCH + 9, 13);
    let up = driver
        .start_upload(&r, DigestAlgorithm::Sha256)
        .await
        .unwrap();
    let id = up.id();
    driver
        .put_upload_chunk(&r, &id, Some(0), None, body(&head, 1000))
        .await
        .unwrap();

    let (stalled_tx, stalled_rx) = tokio::sync::oneshot::channel::<()>();
    let stalling = body(&junk, 256 * 1024).chain(stream::once(async move {
        let _ = stalled_tx.send(());
        futures::future::pending::<marina_distribution::Result<Bytes>>().await
    }));
    {
        let append = driver.put_upload_chunk(&r, &id, Some(head.len() as u64), None, stalling);
        tokio::select! {
            result = append => panic!("a body that never ends cannot complete: {result:?}"),
            _ = stalled_rx => {} // the body is stuck: drop the request
        }
    }
    assert_eq!(
        driver.get_upload_progress(&r, &id).await.unwrap().offset(),
        head.len() as u64
    );
    driver
        .put_upload_chunk(
            &r,
            &id,
            Some(head.len() as u64),
            None,
            body(&retry, 128 * 1024),
        )
        .await
        .unwrap();
    let whole = [head.as_slice(), retry.as_slice()].concat();
    let data_file = dir.path().join("uploads").join(id.as_str());
    assert_eq!(std::fs::read(&data_file).unwrap(), whole);
    driver
        .finish_upload(&r, &id, &sha256(&whole), None, stream::empty())
        .await
        .unwrap();
    assert_eq!(read_all(&driver, &r, &sha256(&whole)).await, whole);
}
