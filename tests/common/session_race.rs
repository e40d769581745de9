//! Two `PATCH`es of one upload session at the same offset from two engines (two processes:
//! the upload lock of one does not see the other), the first still receiving its body when
//! the second is persisted; shared by the S3 and GCS tests of conditional session writes.
#![allow(dead_code)]

use bytes::Bytes;
use futures::{StreamExt, stream};
use marina_distribution::oci::{Digest, DigestAlgorithm, RepositoryName};
use marina_distribution::storage::{StorageDriver, UploadHandle, UploadId};
use marina_distribution::{Error, Result};
use tokio::sync::oneshot;

/// Starts a session on `first`, then sends `a` through `first` (holding its body open) and
/// `b` through `second` at offset 0; returns the session and each `PATCH`'s resulting offset.
pub async fn race_patches<D: StorageDriver>(
    first: &D,
    second: &D,
    repo: &RepositoryName,
    a: Bytes,
    b: Bytes,
) -> (UploadId, Result<u64>, Result<u64>) {
    let id = first
        .start_upload(repo, DigestAlgorithm::Sha256)
        .await
        .expect("upload started")
        .progress()
        .id;
    let (started_tx, started_rx) = oneshot::channel();
    let (go_tx, go_rx) = oneshot::channel::<()>();
    // Yields its bytes, then holds the body open until the second PATCH is persisted.
    let held_body = stream::once(async move {
        let _ = started_tx.send(());
        Ok(a)
    })
    .chain(stream::once(async move {
        let _ = go_rx.await;
        Ok(Bytes::new())
    }));
    let (first_result, second_result) = tokio::join!(
        first.put_upload_chunk(repo, &id, Some(0), None, held_body),
        async {
            started_rx.await.expect("first PATCH started");
            let result = second
                .put_upload_chunk(repo, &id, Some(0), None, stream::iter([Ok(b)]))
                .await;
            go_tx.send(()).expect("first PATCH waiting");
            result
        }
    );
    let offset = |r: Result<D::Upload>| r.map(|u| u.progress().offset);
    (id, offset(first_result), offset(second_result))
}

/// With conditional session writes: the first (later persisted) `PATCH` is refused with the
/// session's offset, and the session, finished, holds the second's bytes.
pub async fn assert_later_patch_refused<D: StorageDriver>(
    first: &D,
    second: &D,
    repo: &RepositoryName,
    a: Bytes,
    b: Bytes,
) {
    let (id, first_result, second_result) = race_patches(first, second, repo, a, b.clone()).await;
    assert_eq!(second_result.expect("second PATCH"), b.len() as u64);
    match first_result {
        Err(Error::RangeInvalid { size, .. }) => assert_eq!(size, b.len() as u64),
        other => panic!("the first PATCH was not refused: {other:?}"),
    }
    let digest = Digest::compute(DigestAlgorithm::Sha256, &b);
    first
        .finish_upload(
            repo,
            &id,
            &digest,
            None,
            stream::iter(Vec::<Result<Bytes>>::new()),
        )
        .await
        .expect("the session holds the second PATCH's bytes");
    let read = first.get_content(repo, &digest, None).await.expect("read");
    let chunks: Vec<_> = read.stream.collect().await;
    let bytes: Vec<u8> = chunks
        .into_iter()
        .flat_map(|c| c.expect("chunk").to_vec())
        .collect();
    assert!(bytes == b, "the blob is not the second PATCH's bytes");
}
