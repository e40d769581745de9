//! Sessions continued by another driver instance on the same storage (a restarted process):
//! after chunks, after failed chunks, in the middle of an object store's part.

use crate::error::Error;
use crate::oci::DigestAlgorithm;
use crate::storage::testsuite::{
    DriverFactory, Setup, assert_blob, assert_err, body, chunked, data, failing_body, ok, repo,
    sha256, sha512,
};
use crate::storage::{StorageDriver, UploadHandle};

use super::{MIB, assert_offset};

/// An upload started on one driver instance continues on a second instance opened on the same
/// storage (a restarted process) at the right offset and hashing state, is finished there
/// with the right digest, and the blob is visible to both instances.
pub async fn upload_resume_new_instance<F: DriverFactory>(f: &F) {
    let s = Setup::new(f).await;
    let r = repo("suite/resume");
    let content = data(10_007, 38);
    let digest = sha256(&content);
    let id = ok!(s.d.start_upload(&r, DigestAlgorithm::Sha256).await).id();
    // 1000 and 3333: neither a multiple of the 64-byte hash block.
    ok!(s
        .d
        .put_upload_chunk(&r, &id, Some(0), None, body(&content[..1000]))
        .await);
    let second = s.second_instance().await;
    assert_offset(&second, &r, &id, 1000).await;
    ok!(second
        .put_upload_chunk(
            &r,
            &id,
            Some(1000),
            None,
            chunked(&content[1000..3333], 500)
        )
        .await);
    // Back on the first instance, then a third one finishes.
    assert_offset(&*s.d, &r, &id, 3333).await;
    ok!(s
        .d
        .put_upload_chunk(&r, &id, Some(3333), None, body(&content[3333..9000]))
        .await);
    drop(second);
    let third = s.second_instance().await;
    assert_offset(&third, &r, &id, 9000).await;
    ok!(third
        .finish_upload(&r, &id, &digest, None, body(&content[9000..]))
        .await);
    assert_blob(&third, &r, &digest, &content).await;
    assert_blob(&*s.d, &r, &digest, &content).await;
    // A sha512 session resumes too.
    let d512 = sha512(&content);
    let id = ok!(s.d.start_upload(&r, DigestAlgorithm::Sha512).await).id();
    ok!(s
        .d
        .put_upload_chunk(&r, &id, None, None, body(&content[..129]))
        .await);
    let fourth = s.second_instance().await;
    ok!(fourth
        .finish_upload(&r, &id, &d512, None, body(&content[129..]))
        .await);
    assert_blob(&*s.d, &r, &d512, &content).await;
}

/// A chunk that failed on one instance (failing body, wrong length) leaves the session
/// resumable from the previous offset on another instance; a session aborted by another
/// instance is gone for this one too.
pub async fn upload_resume_after_failed_chunk_new_instance<F: DriverFactory>(f: &F) {
    let s = Setup::new(f).await;
    let r = repo("suite/resume");
    let content = data(4000, 39);
    let digest = sha256(&content);
    let id = ok!(s.d.start_upload(&r, DigestAlgorithm::Sha256).await).id();
    ok!(s
        .d
        .put_upload_chunk(&r, &id, None, None, body(&content[..1500]))
        .await);
    assert!(
        s.d.put_upload_chunk(&r, &id, Some(1500), None, failing_body(&data(700, 97)))
            .await
            .is_err()
    );
    assert_err!(
        s.d.put_upload_chunk(&r, &id, Some(1500), Some(5), body(&data(9, 96)))
            .await,
        Error::SizeInvalid(_)
    );
    let second = s.second_instance().await;
    assert_offset(&second, &r, &id, 1500).await;
    assert_err!(
        second
            .put_upload_chunk(&r, &id, Some(1400), None, body(&content[1400..]))
            .await,
        Error::RangeInvalid { size: 1500, .. }
    );
    ok!(second
        .finish_upload(&r, &id, &digest, Some(2500), body(&content[1500..]))
        .await);
    assert_blob(&*s.d, &r, &digest, &content).await;

    // A session aborted by another instance is gone for this one too.
    let id = ok!(s.d.start_upload(&r, DigestAlgorithm::Sha256).await).id();
    ok!(s
        .d
        .put_upload_chunk(&r, &id, None, None, body(&content[..10]))
        .await);
    ok!(second.abort_upload(&r, &id).await);
    assert_err!(
        s.d.get_upload_progress(&r, &id).await,
        Error::BlobUploadUnknown(_)
    );
    assert_err!(
        s.d.put_upload_chunk(&r, &id, Some(10), None, body(&content[10..20]))
            .await,
        Error::BlobUploadUnknown(_)
    );
}

/// A multi-MiB upload resumed on other driver instances in the middle of an object store's
/// part (staged bytes must be persisted, not held in memory).
pub async fn upload_resume_large_new_instance<F: DriverFactory>(f: &F) {
    let s = Setup::new(f).await;
    let r = repo("suite/resume");
    let content = data(12 * MIB + 77, 43);
    let digest = sha256(&content);
    let id = ok!(s.d.start_upload(&r, DigestAlgorithm::Sha256).await).id();
    ok!(s
        .d
        .put_upload_chunk(
            &r,
            &id,
            Some(0),
            None,
            chunked(&content[..3 * MIB + 1], MIB)
        )
        .await);
    let second = s.second_instance().await;
    ok!(second
        .put_upload_chunk(
            &r,
            &id,
            Some(3 * MIB as u64 + 1),
            None,
            chunked(&content[3 * MIB + 1..7 * MIB], MIB)
        )
        .await);
    drop(second);
    let third = s.second_instance().await;
    assert_offset(&third, &r, &id, 7 * MIB as u64).await;
    ok!(third
        .put_upload_chunk(&r, &id, None, None, body(&content[7 * MIB..11 * MIB + 3]))
        .await);
    let fourth = s.second_instance().await;
    ok!(fourth
        .finish_upload(
            &r,
            &id,
            &digest,
            None,
            chunked(&content[11 * MIB + 3..], 4096)
        )
        .await);
    assert_blob(&*s.d, &r, &digest, &content).await;
}
