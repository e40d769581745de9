//! Two `PATCH`es of one upload session at the same offset from two engines (two processes:
//! the upload lock of one does not see the other), the first still receiving its body when
//! the second is persisted; and a finish (`PUT`) racing a `PATCH` the same way. Shared by
//! the S3 and GCS tests of conditional session writes.
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
    let id = start_session(first, repo).await;
    let (started_tx, started_rx) = oneshot::channel();
    let (go_tx, go_rx) = oneshot::channel::<()>();
    // Holds its body open until the second PATCH is persisted.
    let (first_result, second_result) = tokio::join!(
        first.put_upload_chunk(repo, &id, Some(0), None, held_body(a, started_tx, go_rx)),
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

/// A new (sha256) upload session in `repo` through `d`.
async fn start_session<D: StorageDriver>(d: &D, repo: &RepositoryName) -> UploadId {
    d.start_upload(repo, DigestAlgorithm::Sha256)
        .await
        .expect("upload started")
        .progress()
        .id
}

/// Yields `bytes` (saying so on `started`), then holds the body open until `go`.
fn held_body(
    bytes: Bytes,
    started: oneshot::Sender<()>,
    go: oneshot::Receiver<()>,
) -> impl futures::Stream<Item = Result<Bytes>> + Send {
    stream::once(async move {
        let _ = started.send(());
        Ok(bytes)
    })
    .chain(stream::once(async move {
        let _ = go.await;
        Ok(Bytes::new())
    }))
}

/// The bytes of blob `digest` in `repo`.
async fn blob_bytes<D: StorageDriver>(d: &D, repo: &RepositoryName, digest: &Digest) -> Vec<u8> {
    let read = d.get_content(repo, digest, None).await.expect("read");
    let chunks: Vec<_> = read.stream.collect().await;
    chunks
        .into_iter()
        .flat_map(|c| c.expect("chunk").to_vec())
        .collect()
}

/// A session holding `a`, finished through `first` with a final body `last` (held open)
/// while `second` appends `b`: with conditional session writes the finish, which would
/// commit `a` and `last` and drop the session that `second`'s client was told took `b`, is
/// refused with the session's offset, and the session, finished, holds `a` and `b`.
pub async fn assert_finish_racing_an_append_refused<D: StorageDriver>(
    first: &D,
    second: &D,
    repo: &RepositoryName,
    a: Bytes,
    b: Bytes,
    last: Bytes,
) {
    let id = start_session(first, repo).await;
    first
        .put_upload_chunk(repo, &id, Some(0), None, stream::iter([Ok(a.clone())]))
        .await
        .expect("first chunk");
    let with_last = Digest::compute(DigestAlgorithm::Sha256, &[&a[..], &last[..]].concat());
    let (started_tx, started_rx) = oneshot::channel();
    let (go_tx, go_rx) = oneshot::channel::<()>();
    let (finish, append) = tokio::join!(
        first.finish_upload(
            repo,
            &id,
            &with_last,
            None,
            held_body(last, started_tx, go_rx)
        ),
        async {
            started_rx.await.expect("the finish started");
            let result = second
                .put_upload_chunk(
                    repo,
                    &id,
                    Some(a.len() as u64),
                    None,
                    stream::iter([Ok(b.clone())]),
                )
                .await;
            go_tx.send(()).expect("the finish waiting");
            result
        }
    );
    let total = (a.len() + b.len()) as u64;
    assert_eq!(append.expect("the append").progress().offset, total);
    match finish {
        Err(Error::RangeInvalid { size, .. }) => assert_eq!(size, total),
        other => panic!("the finish was not refused: {other:?}"),
    }
    assert!(
        first.stat(repo, &with_last).await.is_err(),
        "a blob without the acknowledged chunk was stored"
    );
    let whole = [&a[..], &b[..]].concat();
    assert_finishes_as(second, repo, &id, &whole, "every acknowledged chunk").await;
}

/// Finishes session `id` through `d` without a final chunk as the blob of `expected` (what
/// the session should hold: `what`), and checks the stored bytes.
async fn assert_finishes_as<D: StorageDriver>(
    d: &D,
    repo: &RepositoryName,
    id: &UploadId,
    expected: &[u8],
    what: &str,
) {
    let digest = Digest::compute(DigestAlgorithm::Sha256, expected);
    d.finish_upload(
        repo,
        id,
        &digest,
        None,
        stream::iter(Vec::<Result<Bytes>>::new()),
    )
    .await
    .unwrap_or_else(|e| panic!("the session does not hold {what}: {e:?}"));
    assert!(
        blob_bytes(d, repo, &digest).await == expected,
        "the blob is not {what}"
    );
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
    assert_finishes_as(first, repo, &id, &b, "the second PATCH's bytes").await;
}

/// Finishes and cancels one session at once, `rounds` times, through two engines (the
/// cancel through `second`, started 0 to 19 ms after the finish, to sweep the moments the
/// finish takes the session and commits it), each round with bytes of its own (`bytes` and
/// the round's number): whatever each is answered, a session that is still known afterwards
/// must still hold its bytes, i.e. finish as the blob of them. (Before a cancel took the
/// session with a closing mark, one that had loaded the record before a finish took it
/// released the bytes under that finish, whose failed commit then put the session back:
/// alive, its bytes gone, every later finish refused.)
pub async fn assert_cancel_racing_a_finish_never_revives<D: StorageDriver>(
    first: &D,
    second: &D,
    repo: &RepositoryName,
    bytes: &[u8],
    rounds: u64,
) {
    for round in 0..rounds {
        let bytes = Bytes::from([bytes, &round.to_be_bytes()].concat());
        let digest = Digest::compute(DigestAlgorithm::Sha256, &bytes);
        let id = start_session(first, repo).await;
        first
            .put_upload_chunk(repo, &id, Some(0), None, stream::iter([Ok(bytes.clone())]))
            .await
            .expect("chunk");
        let (finish, cancel) = tokio::join!(
            first.finish_upload(repo, &id, &digest, None, stream::iter([])),
            async {
                tokio::time::sleep(std::time::Duration::from_millis(round % 20)).await;
                second.abort_upload(repo, &id).await
            }
        );
        match &cancel {
            Ok(()) | Err(Error::BlobUploadUnknown(_)) => {}
            other => panic!("round {round}: the cancel failed: {other:?}"),
        }
        if finish.is_ok() {
            assert!(
                blob_bytes(first, repo, &digest).await == bytes,
                "round {round}: the finished blob is not the session's bytes"
            );
        } else if second.get_upload_progress(repo, &id).await.is_ok() {
            let what = format!("its bytes, being known after round {round} ({finish:?})");
            assert_finishes_as(second, repo, &id, &bytes, &what).await;
        }
    }
}
