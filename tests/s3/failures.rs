//! Failures and what they leave behind: aborts, digest and size mismatches, a missing
//! bucket, failed appends and a session record lagging its parts; nothing becomes visible,
//! nothing stays in the bucket, and the session resumes where it should.

use bytes::Bytes;
use futures::{Stream, StreamExt, stream};
use marina_distribution::Error;
use marina_distribution::storage::s3::S3Driver;
use marina_distribution::storage::{EngineOptions, StorageConfig, StorageDriver, UploadHandle};

use crate::env::{MIB, PART, rand_u64, s3_or_skip};
use crate::helpers::{
    assert_no_upload_leftovers, body, cut, data, empty, multipart_uploads, objects, read_all, repo,
    sha256, start_upload,
};

#[tokio::test]
async fn abort_leaves_no_multipart_upload_nor_staged_object() {
    let env = s3_or_skip!("abort_leaves_no_multipart_upload_nor_staged_object");
    let d = env.driver("abort").await;
    let r = repo("s3/abort");
    let blob = data(7 * MIB, 7);
    let id = start_upload(&d, &r).await;
    let p = d
        .put_upload_chunk(&r, &id, Some(0), None, body(cut(&blob, &[MIB])))
        .await
        .unwrap();
    assert!(p.backend_state().multipart.is_some());
    assert_eq!(p.backend_state().staged.len(), 1);
    assert_eq!(multipart_uploads(&d).await.len(), 1);
    assert_eq!(objects(&d, "uploads/").await.len(), 1);
    d.abort_upload(&r, &id).await.expect("abort");
    assert_no_upload_leftovers(&d).await;
    let err = d.get_upload_progress(&r, &id).await.expect_err("aborted");
    assert!(matches!(err, Error::BlobUploadUnknown(_)), "{err:?}");
    assert_eq!(objects(&d, "blobs/").await, Vec::<String>::new());
}

#[tokio::test]
async fn digest_mismatch_leaves_nothing_visible() {
    let env = s3_or_skip!("digest_mismatch_leaves_nothing_visible");
    let d = env.driver("mismatch").await;
    let r = repo("s3/mismatch");
    let blob = data(6 * MIB + 1, 8);
    let wrong = sha256(b"something else");
    // Chunked.
    let id = start_upload(&d, &r).await;
    d.put_upload_chunk(&r, &id, Some(0), None, body(cut(&blob, &[MIB])))
        .await
        .unwrap();
    let err = d
        .finish_upload(&r, &id, &wrong, None, empty())
        .await
        .expect_err("mismatch");
    assert!(matches!(err, Error::DigestInvalid(_)), "{err:?}");
    // Monolithic: the multipart upload was opened on the blob key itself.
    let err = d
        .put_content(&r, &wrong, None, body(cut(&blob, &[MIB])))
        .await
        .expect_err("mismatch");
    assert!(matches!(err, Error::DigestInvalid(_)), "{err:?}");
    // Monolithic with the length declared: one streamed PutObject on the blob key, whose
    // last chunk is never sent when the digest or the length does not match.
    let len = blob.len() as u64;
    let err = d
        .put_content(&r, &wrong, Some(len), body(cut(&blob, &[MIB])))
        .await
        .expect_err("mismatch");
    assert!(matches!(err, Error::DigestInvalid(_)), "{err:?}");
    let short = blob.slice(..blob.len() - 1);
    let err = d
        .put_content(&r, &sha256(&blob), Some(len), body(cut(&short, &[MIB])))
        .await
        .expect_err("short");
    assert!(matches!(err, Error::SizeInvalid(_)), "{err:?}");
    assert_no_upload_leftovers(&d).await;
    assert_eq!(objects(&d, "blobs/").await, Vec::<String>::new());
    for digest in [&wrong, &sha256(&blob)] {
        let err = d.stat(&r, digest).await.expect_err("not visible");
        assert!(matches!(err, Error::BlobUnknown(_)), "{err:?}");
    }
}

/// A bucket that does not exist is a configuration error when the driver is built (inside it
/// a `HeadObject` would be a bare 404, the answer for a missing blob).
#[tokio::test]
async fn a_missing_bucket_is_a_configuration_error() {
    let env = s3_or_skip!("a_missing_bucket_is_a_configuration_error");
    let mut config = env.config("nobucket");
    config.bucket = format!("marina-missing-{:08x}", rand_u64() as u32);
    for err in [
        S3Driver::connect(&config, EngineOptions::default())
            .await
            .expect_err("no such bucket"),
        marina_distribution::AnyDriver::from_config(&StorageConfig::s3(config.clone()))
            .await
            .expect_err("no such bucket"),
    ] {
        assert!(
            matches!(err, Error::Config { field: "s3.bucket", ref message } if message.contains("does not exist")),
            "{err:?}"
        );
    }
}

/// A body that yields `good` and then fails, as a client disconnecting mid-PATCH does.
fn failing_body(good: Bytes) -> impl Stream<Item = marina_distribution::Result<Bytes>> + Send {
    stream::iter(cut(&good, &[MIB]).into_iter().map(Ok)).chain(stream::iter([Err(
        Error::BlobUploadInvalid("client went away".into()),
    )]))
}

#[tokio::test]
async fn failed_append_leaves_the_upload_resumable() {
    let env = s3_or_skip!("failed_append_leaves_the_upload_resumable");
    let d = env.driver("resume").await;
    let r = repo("s3/resume");
    let blob = data(14 * MIB + 77, 10);
    let digest = sha256(&blob);
    let id = start_upload(&d, &r).await;
    d.put_upload_chunk(&r, &id, Some(0), None, body(vec![blob.slice(..3 * MIB)]))
        .await
        .unwrap();
    // Fails before a part is complete, then after opening the multipart upload and
    // uploading a part: neither changes the session.
    for failing in [2 * MIB, 9 * MIB] {
        let err = d
            .put_upload_chunk(
                &r,
                &id,
                Some(3 * MIB as u64),
                None,
                failing_body(blob.slice(3 * MIB..3 * MIB + failing)),
            )
            .await
            .expect_err("body error");
        assert!(matches!(err, Error::BlobUploadInvalid(_)), "{err:?}");
        let p = d.get_upload_progress(&r, &id).await.unwrap();
        assert_eq!(p.progress().offset, 3 * MIB as u64);
        assert!(p.backend_state().multipart.is_none());
        assert_eq!(
            multipart_uploads(&d).await,
            Vec::<String>::new(),
            "after a {failing}-byte failure"
        );
    }
    // Resume from the persisted offset with the rest, in two requests.
    d.put_upload_chunk(
        &r,
        &id,
        Some(3 * MIB as u64),
        None,
        body(cut(&blob.slice(3 * MIB..8 * MIB), &[MIB])),
    )
    .await
    .unwrap();
    // A failure after the multipart upload exists keeps its parts and staged object intact.
    let err = d
        .put_upload_chunk(
            &r,
            &id,
            Some(8 * MIB as u64),
            None,
            failing_body(blob.slice(8 * MIB..13 * MIB)),
        )
        .await
        .expect_err("body error");
    assert!(matches!(err, Error::BlobUploadInvalid(_)), "{err:?}");
    let info = d
        .finish_upload(
            &r,
            &id,
            &digest,
            None,
            body(cut(&blob.slice(8 * MIB..), &[MIB])),
        )
        .await
        .expect("finish after failures");
    assert_eq!(info.size, blob.len() as u64);
    assert_eq!(read_all(&d, &r, &digest, None).await, blob);
    assert_no_upload_leftovers(&d).await;
}

/// A session whose record lags its parts: an append uploaded parts (and opened nothing new)
/// but its record was never persisted (the process died, or the record's write failed).
/// The record's offset and hash checkpoint stay authoritative: the client resumes from the
/// record's offset, the resumed append replaces the stale parts it reaches by number, and
/// the commit names exactly the record's parts, so stale parts beyond them never reach the
/// blob.
#[tokio::test]
async fn a_session_whose_record_lags_its_parts_resumes_from_the_record() {
    use marina_distribution::storage::backend::Backend;
    let env = s3_or_skip!("a_session_whose_record_lags_its_parts_resumes_from_the_record");
    let d = env.driver("lag").await;
    let r = repo("s3/lag");
    let blob = data(2 * PART, 61);
    let digest = sha256(&blob);
    let id = start_upload(&d, &r).await;
    d.put_upload_chunk(&r, &id, Some(0), None, body(vec![blob.slice(..PART)]))
        .await
        .unwrap();
    // An append of other bytes through the backend alone: parts 2 and 3, record untouched.
    let mut lost = d
        .get_upload_progress(&r, &id)
        .await
        .unwrap()
        .backend_state()
        .clone();
    let multipart = lost.multipart.clone().expect("multipart upload open");
    d.backend()
        .append_upload(&id, &mut lost, PART as u64, body(vec![data(2 * PART, 62)]))
        .await
        .unwrap();
    // (moto 5.2's ListParts answers a `ListPartsResponse` root the SDK refuses, so the
    // lost append's own state is what shows the parts the store now holds.)
    assert_eq!(
        lost.parts.len(),
        3,
        "the store holds parts the record does not name"
    );
    assert_eq!(lost.multipart.as_deref(), Some(multipart.as_str()));
    let p = d.get_upload_progress(&r, &id).await.unwrap();
    assert_eq!(p.progress().offset, PART as u64);
    assert_eq!(p.backend_state().parts.len(), 1);
    // The client resumes from the record's offset; the blob ends at a part boundary, so the
    // stale part 3 is never replaced and must be left out by the commit.
    d.finish_upload(&r, &id, &digest, None, body(vec![blob.slice(PART..)]))
        .await
        .expect("finish from the record");
    assert_eq!(read_all(&d, &r, &digest, None).await, blob);
    assert_no_upload_leftovers(&d).await;
}
