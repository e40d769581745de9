//! Requests refused or failing midway: wrong offsets, lengths and digests, bodies that fail,
//! unknown, aborted and foreign sessions. Each leaves the session as it was (or gone, where
//! the spec says so) and nothing but accepted bytes becomes visible.

use crate::error::Error;
use crate::oci::DigestAlgorithm;
use crate::storage::testsuite::{
    DriverFactory, Setup, assert_blob, assert_err, body, chunked, data, failing_body, no_body, ok,
    repo, sha256,
};
use crate::storage::{StorageDriver, UploadHandle, UploadId};

use super::{MIB, assert_offset};

/// A chunk whose offset is not the current size is `RangeInvalid` (carrying the current
/// size) and the session stays usable (spec "Pushing a blob in chunks": 416).
pub async fn upload_out_of_order_chunk<F: DriverFactory>(f: &F) {
    let s = Setup::new(f).await;
    let d = &*s.d;
    let r = repo("suite/up");
    let content = data(300, 23);
    let digest = sha256(&content);
    let id = ok!(d.start_upload(&r, DigestAlgorithm::Sha256).await).id();
    // Before any byte: offset 5 is wrong.
    assert_err!(
        d.put_upload_chunk(&r, &id, Some(5), None, body(&content[5..10]))
            .await,
        Error::RangeInvalid { size: 0, .. }
    );
    ok!(d
        .put_upload_chunk(&r, &id, Some(0), None, body(&content[..100]))
        .await);
    // A gap and an overlap.
    for wrong in [200, 101, 99, 1] {
        assert_err!(
            d.put_upload_chunk(&r, &id, Some(wrong), None, body(&content[100..200]))
                .await,
            Error::RangeInvalid { size: 100, .. }
        );
        assert_offset(d, &r, &id, 100).await;
    }
    ok!(d
        .put_upload_chunk(&r, &id, Some(100), None, body(&content[100..]))
        .await);
    ok!(d.finish_upload(&r, &id, &digest, None, no_body()).await);
    assert_blob(d, &r, &digest, &content).await;
}

/// Resending a chunk already received (a client retry) is `RangeInvalid`; the bytes are not
/// appended twice.
pub async fn upload_repeated_chunk<F: DriverFactory>(f: &F) {
    let s = Setup::new(f).await;
    let d = &*s.d;
    let r = repo("suite/up");
    let content = data(200, 24);
    let digest = sha256(&content);
    let id = ok!(d.start_upload(&r, DigestAlgorithm::Sha256).await).id();
    ok!(d
        .put_upload_chunk(&r, &id, Some(0), Some(100), body(&content[..100]))
        .await);
    assert_err!(
        d.put_upload_chunk(&r, &id, Some(0), Some(100), body(&content[..100]))
            .await,
        Error::RangeInvalid { size: 100, .. }
    );
    assert_offset(d, &r, &id, 100).await;
    ok!(d
        .put_upload_chunk(&r, &id, Some(100), Some(100), body(&content[100..]))
        .await);
    assert_err!(
        d.put_upload_chunk(&r, &id, Some(100), Some(100), body(&content[100..]))
            .await,
        Error::RangeInvalid { size: 200, .. }
    );
    ok!(d.finish_upload(&r, &id, &digest, Some(0), no_body()).await);
    assert_blob(d, &r, &digest, &content).await;
}

/// A chunk whose length differs from `expected_len` (shorter or longer) is `SIZE_INVALID` and
/// leaves the session as it was: finishing afterwards gives exactly the accepted bytes.
pub async fn upload_chunk_size_mismatch<F: DriverFactory>(f: &F) {
    let s = Setup::new(f).await;
    let d = &*s.d;
    let r = repo("suite/up");
    let content = data(400, 25);
    let digest = sha256(&content);
    let id = ok!(d.start_upload(&r, DigestAlgorithm::Sha256).await).id();
    ok!(d
        .put_upload_chunk(&r, &id, Some(0), None, body(&content[..100]))
        .await);
    // Declared longer than sent, then shorter than sent (body of garbage each time).
    let garbage = data(150, 99);
    for declared in [151, 149] {
        assert_err!(
            d.put_upload_chunk(&r, &id, Some(100), Some(declared), chunked(&garbage, 50))
                .await,
            Error::SizeInvalid(_)
        );
        assert_offset(d, &r, &id, 100).await;
    }
    ok!(d
        .put_upload_chunk(&r, &id, Some(100), Some(300), body(&content[100..]))
        .await);
    ok!(d.finish_upload(&r, &id, &digest, None, no_body()).await);
    assert_blob(d, &r, &digest, &content).await;

    // Same, but the failed chunk is the last thing before finishing with no body: the bytes
    // of the failed chunk must not end up in the blob.
    let id = ok!(d.start_upload(&r, DigestAlgorithm::Sha256).await).id();
    ok!(d
        .put_upload_chunk(&r, &id, None, None, body(&content[..100]))
        .await);
    assert_err!(
        d.put_upload_chunk(&r, &id, Some(100), Some(10), body(&garbage))
            .await,
        Error::SizeInvalid(_)
    );
    let head = sha256(&content[..100]);
    ok!(d.finish_upload(&r, &id, &head, None, no_body()).await);
    assert_blob(d, &r, &head, &content[..100]).await;
}

/// A chunk whose body fails midway fails, leaves the session at its previous offset, and the
/// session resumes from there with the correct digest at the end.
pub async fn upload_body_error_midway<F: DriverFactory>(f: &F) {
    let s = Setup::new(f).await;
    let d = &*s.d;
    let r = repo("suite/up");
    let content = data(1000, 26);
    let digest = sha256(&content);
    let id = ok!(d.start_upload(&r, DigestAlgorithm::Sha256).await).id();
    ok!(d
        .put_upload_chunk(&r, &id, Some(0), None, body(&content[..333]))
        .await);
    assert!(
        d.put_upload_chunk(&r, &id, Some(333), None, failing_body(&content[333..700]))
            .await
            .is_err(),
        "a failing body must fail the chunk"
    );
    assert_offset(d, &r, &id, 333).await;
    // Fails again, with different (garbage) bytes before the failure.
    assert!(
        d.put_upload_chunk(&r, &id, None, None, failing_body(&data(500, 98)))
            .await
            .is_err()
    );
    assert_offset(d, &r, &id, 333).await;
    ok!(d
        .put_upload_chunk(&r, &id, Some(333), None, chunked(&content[333..900], 100))
        .await);
    // A failing final body in finish: nothing visible, the session still usable.
    assert!(
        d.finish_upload(&r, &id, &digest, None, failing_body(&content[900..]))
            .await
            .is_err()
    );
    assert_err!(d.stat(&r, &digest).await, Error::BlobUnknown(_));
    assert_offset(d, &r, &id, 900).await;
    ok!(d
        .finish_upload(&r, &id, &digest, None, body(&content[900..]))
        .await);
    assert_blob(d, &r, &digest, &content).await;
}

/// A final body whose length differs from `expected_len` is `SIZE_INVALID`; nothing is visible
/// and the session can still be finished.
pub async fn upload_finish_size_mismatch<F: DriverFactory>(f: &F) {
    let s = Setup::new(f).await;
    let d = &*s.d;
    let r = repo("suite/up");
    let content = data(100, 27);
    let digest = sha256(&content);
    let id = ok!(d.start_upload(&r, DigestAlgorithm::Sha256).await).id();
    ok!(d
        .put_upload_chunk(&r, &id, Some(0), None, body(&content[..50]))
        .await);
    for declared in [49, 51] {
        assert_err!(
            d.finish_upload(&r, &id, &digest, Some(declared), body(&content[50..]))
                .await,
            Error::SizeInvalid(_)
        );
        assert_err!(d.stat(&r, &digest).await, Error::BlobUnknown(_));
        assert_offset(d, &r, &id, 50).await;
    }
    ok!(d
        .finish_upload(&r, &id, &digest, Some(50), body(&content[50..]))
        .await);
    assert_blob(d, &r, &digest, &content).await;
}

/// Finishing with a digest that does not match: `DIGEST_INVALID`, nothing visible (neither the
/// claimed nor the real digest), and the session is gone.
pub async fn upload_finish_wrong_digest<F: DriverFactory>(f: &F) {
    let s = Setup::new(f).await;
    let d = &*s.d;
    let r = repo("suite/up");
    let content = data(3000, 28);
    let real = sha256(&content);
    let claimed = sha256(b"not this");
    let id = ok!(d.start_upload(&r, DigestAlgorithm::Sha256).await).id();
    ok!(d
        .put_upload_chunk(&r, &id, Some(0), None, body(&content[..1000]))
        .await);
    assert_err!(
        d.finish_upload(&r, &id, &claimed, None, body(&content[1000..]))
            .await,
        Error::DigestInvalid(_)
    );
    assert_err!(d.stat(&r, &claimed).await, Error::BlobUnknown(_));
    assert_err!(d.stat(&r, &real).await, Error::BlobUnknown(_));
    assert_err!(
        d.get_upload_progress(&r, &id).await,
        Error::BlobUploadUnknown(_)
    );
    assert_err!(
        d.put_upload_chunk(&r, &id, None, None, body(b"x")).await,
        Error::BlobUploadUnknown(_)
    );
    assert_err!(
        d.finish_upload(&r, &id, &real, None, no_body()).await,
        Error::BlobUploadUnknown(_)
    );
    // Nothing left behind that would make the real blob appear by a later upload of other
    // bytes: pushing the claimed digest's real content works.
    ok!(d.put_content(&r, &claimed, None, body(b"not this")).await);
    assert_blob(d, &r, &claimed, b"not this").await;
}

/// Every upload operation on an id that was never issued is `BLOB_UPLOAD_UNKNOWN`.
pub async fn upload_unknown_id<F: DriverFactory>(f: &F) {
    let s = Setup::new(f).await;
    let d = &*s.d;
    let r = repo("suite/up");
    for id in [
        UploadId::generate(),
        ok!(UploadId::parse("00000000000000000000000000000000")),
    ] {
        assert_err!(
            d.get_upload_progress(&r, &id).await,
            Error::BlobUploadUnknown(_)
        );
        assert_err!(
            d.put_upload_chunk(&r, &id, Some(0), None, body(b"abc"))
                .await,
            Error::BlobUploadUnknown(_)
        );
        assert_err!(
            d.finish_upload(&r, &id, &sha256(b"abc"), None, body(b"abc"))
                .await,
            Error::BlobUploadUnknown(_)
        );
        assert_err!(d.abort_upload(&r, &id).await, Error::BlobUploadUnknown(_));
        assert_err!(d.stat(&r, &sha256(b"abc")).await, Error::BlobUnknown(_));
    }
}

/// After `abort_upload`, every operation on the session is `BLOB_UPLOAD_UNKNOWN` and nothing
/// it received becomes visible.
pub async fn upload_abort<F: DriverFactory>(f: &F) {
    let s = Setup::new(f).await;
    let d = &*s.d;
    let r = repo("suite/up");
    let content = data(100, 32);
    let digest = sha256(&content);
    let id = ok!(d.start_upload(&r, DigestAlgorithm::Sha256).await).id();
    ok!(d
        .put_upload_chunk(&r, &id, None, None, body(&content))
        .await);
    ok!(d.abort_upload(&r, &id).await);
    assert_err!(
        d.get_upload_progress(&r, &id).await,
        Error::BlobUploadUnknown(_)
    );
    assert_err!(
        d.put_upload_chunk(&r, &id, Some(100), None, body(b"x"))
            .await,
        Error::BlobUploadUnknown(_)
    );
    assert_err!(
        d.finish_upload(&r, &id, &digest, None, no_body()).await,
        Error::BlobUploadUnknown(_)
    );
    assert_err!(d.abort_upload(&r, &id).await, Error::BlobUploadUnknown(_));
    assert_err!(d.stat(&r, &digest).await, Error::BlobUnknown(_));
    // An aborted session without any byte.
    let id = ok!(d.start_upload(&r, DigestAlgorithm::Sha256).await).id();
    ok!(d.abort_upload(&r, &id).await);
    assert_err!(
        d.get_upload_progress(&r, &id).await,
        Error::BlobUploadUnknown(_)
    );
}

/// A session belongs to its repository: its id is `BLOB_UPLOAD_UNKNOWN` in another one, and
/// using it there does not disturb it.
pub async fn upload_other_repository<F: DriverFactory>(f: &F) {
    let s = Setup::new(f).await;
    let d = &*s.d;
    let (a, b) = (repo("suite/a"), repo("suite/b"));
    let content = data(64, 33);
    let digest = sha256(&content);
    let id = ok!(d.start_upload(&a, DigestAlgorithm::Sha256).await).id();
    ok!(d
        .put_upload_chunk(&a, &id, None, None, body(&content[..32]))
        .await);
    assert_err!(
        d.get_upload_progress(&b, &id).await,
        Error::BlobUploadUnknown(_)
    );
    assert_err!(
        d.put_upload_chunk(&b, &id, Some(32), None, body(&content[32..]))
            .await,
        Error::BlobUploadUnknown(_)
    );
    assert_err!(
        d.finish_upload(&b, &id, &digest, None, body(&content[32..]))
            .await,
        Error::BlobUploadUnknown(_)
    );
    assert_err!(d.abort_upload(&b, &id).await, Error::BlobUploadUnknown(_));
    assert_offset(d, &a, &id, 32).await;
    ok!(d
        .finish_upload(&a, &id, &digest, None, body(&content[32..]))
        .await);
    assert_blob(d, &a, &digest, &content).await;
    assert_err!(d.stat(&b, &digest).await, Error::BlobUnknown(_));
}

/// A large chunk whose body fails after several MiB (after an object store may have flushed
/// a part) leaves the session at its previous offset; different bytes then continue it and
/// the blob holds exactly the accepted bytes.
pub async fn upload_large_failed_chunk<F: DriverFactory>(f: &F) {
    let s = Setup::new(f).await;
    let d = &*s.d;
    let r = repo("suite/large");
    let content = data(9 * MIB + 5, 41);
    let digest = sha256(&content);
    let id = ok!(d.start_upload(&r, DigestAlgorithm::Sha256).await).id();
    ok!(d
        .put_upload_chunk(&r, &id, Some(0), None, chunked(&content[..3 * MIB], MIB))
        .await);
    // 7 MiB of garbage, then the body fails.
    let garbage = data(7 * MIB, 95);
    let failing = futures::StreamExt::chain(chunked(&garbage, MIB), failing_body(b"last words"));
    assert!(
        d.put_upload_chunk(&r, &id, Some(3 * MIB as u64), None, failing)
            .await
            .is_err()
    );
    assert_offset(d, &r, &id, 3 * MIB as u64).await;
    // A declared length that does not match, after streaming 6 MiB of garbage.
    assert_err!(
        d.put_upload_chunk(
            &r,
            &id,
            Some(3 * MIB as u64),
            Some(6 * MIB as u64 + 1),
            chunked(&garbage[..6 * MIB], MIB)
        )
        .await,
        Error::SizeInvalid(_)
    );
    assert_offset(d, &r, &id, 3 * MIB as u64).await;
    ok!(d
        .put_upload_chunk(
            &r,
            &id,
            Some(3 * MIB as u64),
            None,
            chunked(&content[3 * MIB..8 * MIB], MIB)
        )
        .await);
    ok!(d
        .finish_upload(&r, &id, &digest, None, body(&content[8 * MIB..]))
        .await);
    assert_blob(d, &r, &digest, &content).await;
}
