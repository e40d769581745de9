//! Upload session cases: chunks, offsets, failures that leave the session usable, digest
//! verification, abort, resume from another driver instance.

use crate::error::Error;
use crate::oci::DigestAlgorithm;
use crate::storage::{StorageDriver, UploadHandle, UploadId};

use super::{
    DriverFactory, Setup, assert_blob, assert_err, body, chunked, data, failing_body, no_body, ok,
    repo, sha256, sha512, yielding_body,
};

/// Asserts the session's offset through `get_upload_progress`.
async fn assert_offset<D: StorageDriver>(
    d: &D,
    r: &crate::oci::RepositoryName,
    id: &UploadId,
    offset: u64,
) {
    let p = ok!(d.get_upload_progress(r, id).await).progress();
    assert_eq!(&p.id, id, "progress id");
    assert_eq!(p.offset, offset, "upload offset");
}

/// A session finished with the whole blob as the final body (POST then PUT).
pub async fn upload_monolithic_finish<F: DriverFactory>(f: &F) {
    let s = Setup::new(f).await;
    let d = &*s.d;
    let r = repo("suite/up");
    let content = data(10_000, 20);
    let digest = sha256(&content);
    let up = ok!(d.start_upload(&r, DigestAlgorithm::Sha256).await);
    let p = up.progress();
    assert_eq!(p.offset, 0);
    assert_eq!(p.algorithm, DigestAlgorithm::Sha256);
    assert!(UploadId::parse(p.id.as_str()).is_ok(), "id must parse back");
    assert_err!(d.stat(&r, &digest).await, Error::BlobUnknown(_));
    let info = ok!(d
        .finish_upload(&r, &p.id, &digest, Some(10_000), chunked(&content, 4096))
        .await);
    assert_eq!(info.size, 10_000);
    assert_eq!(info.digest, digest);
    assert_blob(d, &r, &digest, &content).await;
    // The session is gone.
    assert_err!(
        d.get_upload_progress(&r, &p.id).await,
        Error::BlobUploadUnknown(_)
    );
}

/// Every byte as its own chunk, with offsets, checking progress after each; then finish with
/// no final body.
pub async fn upload_one_byte_chunks<F: DriverFactory>(f: &F) {
    let s = Setup::new(f).await;
    let d = &*s.d;
    let r = repo("suite/up");
    // 131 bytes: crosses sha256's and sha512's block sizes at odd positions.
    let content = data(131, 21);
    let digest = sha256(&content);
    let id = ok!(d.start_upload(&r, DigestAlgorithm::Sha256).await).id();
    for (i, byte) in content.iter().enumerate() {
        let offset = i as u64;
        let up = ok!(d
            .put_upload_chunk(&r, &id, Some(offset), Some(1), body(&[*byte]))
            .await);
        assert_eq!(up.offset(), offset + 1, "offset after chunk {i}");
    }
    assert_offset(d, &r, &id, 131).await;
    assert_err!(d.stat(&r, &digest).await, Error::BlobUnknown(_));
    ok!(d.finish_upload(&r, &id, &digest, None, no_body()).await);
    assert_blob(d, &r, &digest, &content).await;
}

/// Chunks without offsets (streamed PATCH), then the final chunk in the finishing call.
pub async fn upload_finish_with_final_chunk<F: DriverFactory>(f: &F) {
    let s = Setup::new(f).await;
    let d = &*s.d;
    let r = repo("suite/up");
    let content = data(5000, 22);
    let digest = sha256(&content);
    let id = ok!(d.start_upload(&r, DigestAlgorithm::Sha256).await).id();
    ok!(d
        .put_upload_chunk(&r, &id, None, None, chunked(&content[..1000], 333))
        .await);
    ok!(d
        .put_upload_chunk(&r, &id, Some(1000), Some(2000), body(&content[1000..3000]))
        .await);
    assert_offset(d, &r, &id, 3000).await;
    let info = ok!(d
        .finish_upload(&r, &id, &digest, Some(2000), chunked(&content[3000..], 999))
        .await);
    assert_eq!(info.size, 5000);
    assert_blob(d, &r, &digest, &content).await;
}

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

/// The empty blob through an upload session: finished with no body, with an empty body, and
/// with an empty chunk first.
pub async fn upload_empty_blob<F: DriverFactory>(f: &F) {
    let s = Setup::new(f).await;
    let d = &*s.d;
    let r = repo("suite/up");
    let digest = sha256(b"");
    let id = ok!(d.start_upload(&r, DigestAlgorithm::Sha256).await).id();
    let info = ok!(d.finish_upload(&r, &id, &digest, Some(0), no_body()).await);
    assert_eq!(info.size, 0);
    assert_blob(d, &r, &digest, b"").await;

    let r2 = repo("suite/up2");
    let id = ok!(d.start_upload(&r2, DigestAlgorithm::Sha256).await).id();
    let up = ok!(d
        .put_upload_chunk(&r2, &id, Some(0), Some(0), body(b""))
        .await);
    assert_eq!(up.offset(), 0);
    ok!(d.finish_upload(&r2, &id, &digest, None, body(b"")).await);
    assert_blob(d, &r2, &digest, b"").await;

    // An empty upload finished with the digest of something else.
    let id = ok!(d.start_upload(&r2, DigestAlgorithm::Sha256).await).id();
    let wrong = sha256(b"x");
    assert_err!(
        d.finish_upload(&r2, &id, &wrong, None, no_body()).await,
        Error::DigestInvalid(_)
    );
    assert_err!(d.stat(&r2, &wrong).await, Error::BlobUnknown(_));
}

/// A session started with sha512 hashes with sha512 across chunks and finishes with a sha512
/// digest.
pub async fn upload_sha512<F: DriverFactory>(f: &F) {
    let s = Setup::new(f).await;
    let d = &*s.d;
    let r = repo("suite/up");
    let content = data(1500, 29);
    let digest = sha512(&content);
    let up = ok!(d.start_upload(&r, DigestAlgorithm::Sha512).await);
    assert_eq!(up.progress().algorithm, DigestAlgorithm::Sha512);
    let id = up.id();
    let mut offset = 0;
    for size in [1, 127, 128, 129, 500, 615] {
        ok!(d
            .put_upload_chunk(
                &r,
                &id,
                Some(offset as u64),
                None,
                body(&content[offset..offset + size])
            )
            .await);
        offset += size;
    }
    assert_eq!(offset, 1500);
    let p = ok!(d.get_upload_progress(&r, &id).await).progress();
    assert_eq!(p.algorithm, DigestAlgorithm::Sha512);
    // A sha512 digest of other bytes is rejected, and the session is gone.
    let id2 = ok!(d.start_upload(&r, DigestAlgorithm::Sha512).await).id();
    ok!(d
        .put_upload_chunk(&r, &id2, None, None, body(&content))
        .await);
    assert_err!(
        d.finish_upload(&r, &id2, &sha512(b"other"), None, no_body())
            .await,
        Error::DigestInvalid(_)
    );
    ok!(d.finish_upload(&r, &id, &digest, None, no_body()).await);
    assert_blob(d, &r, &digest, &content).await;
    assert_err!(d.stat(&r, &sha256(&content)).await, Error::BlobUnknown(_));
}

/// The finishing digest's algorithm is honoured whatever the session was started with:
/// before any byte is received by hashing with it from the start, afterwards by re-hashing
/// the stored bytes once (the OCI conformance suite closes sessions opened without
/// `digest-algorithm` with sha512 digests). A wrong digest of another algorithm is
/// `DIGEST_INVALID` and nothing becomes visible.
pub async fn upload_algorithm_of_finish_digest<F: DriverFactory>(f: &F) {
    let s = Setup::new(f).await;
    let d = &*s.d;
    let r = repo("suite/up");
    let content = data(300, 30);
    let id = ok!(d.start_upload(&r, DigestAlgorithm::Sha256).await).id();
    let d512 = sha512(&content);
    ok!(d.finish_upload(&r, &id, &d512, None, body(&content)).await);
    assert_blob(d, &r, &d512, &content).await;

    let id = ok!(d.start_upload(&r, DigestAlgorithm::Sha512).await).id();
    let d256 = sha256(&content);
    ok!(d
        .finish_upload(&r, &id, &d256, None, chunked(&content, 7))
        .await);
    assert_blob(d, &r, &d256, &content).await;

    let r2 = repo("suite/up2");
    let id = ok!(d.start_upload(&r2, DigestAlgorithm::Sha256).await).id();
    ok!(d
        .put_upload_chunk(&r2, &id, None, None, body(&content))
        .await);
    let wrong = sha512(b"not the content");
    assert_err!(
        d.finish_upload(&r2, &id, &wrong, None, no_body()).await,
        Error::DigestInvalid(_)
    );
    assert_err!(d.stat(&r2, &wrong).await, Error::BlobUnknown(_));
    assert_err!(d.stat(&r2, &d512).await, Error::BlobUnknown(_));
    assert_err!(d.stat(&r2, &d256).await, Error::BlobUnknown(_));

    let r3 = repo("suite/up3");
    let id = ok!(d.start_upload(&r3, DigestAlgorithm::Sha256).await).id();
    ok!(d
        .put_upload_chunk(&r3, &id, None, None, body(&content[..100]))
        .await);
    ok!(d
        .finish_upload(&r3, &id, &d512, None, body(&content[100..]))
        .await);
    assert_blob(d, &r3, &d512, &content).await;
    assert_err!(d.stat(&r3, &d256).await, Error::BlobUnknown(_));
}

/// Uploading content already stored (in another repository) finishes normally and makes it
/// visible here; the stored copy is intact.
pub async fn upload_finish_existing_blob<F: DriverFactory>(f: &F) {
    let s = Setup::new(f).await;
    let d = &*s.d;
    let (a, b) = (repo("suite/a"), repo("suite/b"));
    let content = data(2048, 31);
    let digest = sha256(&content);
    ok!(d.put_content(&a, &digest, None, body(&content)).await);
    let id = ok!(d.start_upload(&b, DigestAlgorithm::Sha256).await).id();
    ok!(d
        .put_upload_chunk(&b, &id, Some(0), None, body(&content[..1000]))
        .await);
    ok!(d
        .finish_upload(&b, &id, &digest, None, body(&content[1000..]))
        .await);
    assert_blob(d, &a, &digest, &content).await;
    assert_blob(d, &b, &digest, &content).await;
    // And in the same repository again.
    let id = ok!(d.start_upload(&b, DigestAlgorithm::Sha256).await).id();
    ok!(d
        .finish_upload(&b, &id, &digest, None, body(&content))
        .await);
    assert_blob(d, &b, &digest, &content).await;
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

/// Two sessions in the same repository, interleaved, stay independent.
pub async fn upload_parallel_sessions<F: DriverFactory>(f: &F) {
    let s = Setup::new(f).await;
    let d = &*s.d;
    let r = repo("suite/up");
    let (c1, c2) = (data(600, 34), data(600, 35));
    let id1 = ok!(d.start_upload(&r, DigestAlgorithm::Sha256).await).id();
    let id2 = ok!(d.start_upload(&r, DigestAlgorithm::Sha256).await).id();
    assert_ne!(id1, id2, "upload ids must be unique");
    for i in 0..6 {
        let range = i * 100..(i + 1) * 100;
        ok!(d
            .put_upload_chunk(
                &r,
                &id1,
                Some(range.start as u64),
                None,
                body(&c1[range.clone()])
            )
            .await);
        ok!(d
            .put_upload_chunk(&r, &id2, Some(range.start as u64), None, body(&c2[range]))
            .await);
    }
    ok!(d
        .finish_upload(&r, &id2, &sha256(&c2), None, no_body())
        .await);
    assert_offset(d, &r, &id1, 600).await;
    ok!(d
        .finish_upload(&r, &id1, &sha256(&c1), None, no_body())
        .await);
    assert_blob(d, &r, &sha256(&c1), &c1).await;
    assert_blob(d, &r, &sha256(&c2), &c2).await;
}

/// Two chunks sent at once for the same offset of one session: at most one is accepted
/// (the other is `RangeInvalid`), and the finished blob holds exactly the accepted bytes,
/// verified against the accepted bytes' digest. A store that let both through could commit
/// one chunk's bytes under the other's digest.
pub async fn upload_concurrent_chunks_same_offset<F: DriverFactory>(f: &F) {
    let s = Setup::new(f).await;
    let r = repo("suite/up");
    let id = ok!(s.d.start_upload(&r, DigestAlgorithm::Sha256).await).id();
    let (c1, c2) = (data(64 * 1024, 36), data(48 * 1024, 37));
    let t1 = {
        let (d, r, id, c) = (s.d.clone(), r.clone(), id.clone(), c1.clone());
        tokio::spawn(async move {
            d.put_upload_chunk(&r, &id, Some(0), None, yielding_body(c, 4096))
                .await
                .map(|u| u.offset())
        })
    };
    let t2 = {
        let (d, r, id, c) = (s.d.clone(), r.clone(), id.clone(), c2.clone());
        tokio::spawn(async move {
            d.put_upload_chunk(&r, &id, Some(0), None, yielding_body(c, 4096))
                .await
                .map(|u| u.offset())
        })
    };
    let (r1, r2) = (t1.await.expect("task"), t2.await.expect("task"));
    let winner = match (&r1, &r2) {
        (Ok(_), Err(Error::RangeInvalid { .. })) => &c1,
        (Err(Error::RangeInvalid { .. }), Ok(_)) => &c2,
        other => panic!("expected exactly one chunk accepted and one RangeInvalid, got {other:?}"),
    };
    let d = &*s.d;
    assert_offset(d, &r, &id, winner.len() as u64).await;
    let digest = sha256(winner);
    ok!(d.finish_upload(&r, &id, &digest, None, no_body()).await);
    assert_blob(d, &r, &digest, winner).await;
}

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

const MIB: usize = 1024 * 1024;

/// Chunks of very different sizes (below and above the 5 MiB part size of object stores,
/// crossing part boundaries at odd offsets, an empty chunk in the middle) add up to the right
/// blob.
pub async fn upload_large_chunks<F: DriverFactory>(f: &F) {
    let s = Setup::new(f).await;
    let d = &*s.d;
    let r = repo("suite/large");
    let sizes = [MIB, 3 * MIB + 1, 7, 0, 2 * MIB, 5 * MIB + 3, 1];
    let total: usize = sizes.iter().sum::<usize>() + MIB;
    let content = data(total, 40);
    let digest = sha256(&content);
    let id = ok!(d.start_upload(&r, DigestAlgorithm::Sha256).await).id();
    let mut offset = 0;
    for size in sizes {
        let up = ok!(d
            .put_upload_chunk(
                &r,
                &id,
                Some(offset as u64),
                Some(size as u64),
                chunked(&content[offset..offset + size], 64 * 1024 + 1),
            )
            .await);
        offset += size;
        assert_eq!(up.offset(), offset as u64);
    }
    let info = ok!(d
        .finish_upload(
            &r,
            &id,
            &digest,
            Some(MIB as u64),
            chunked(&content[offset..], 100_000)
        )
        .await);
    assert_eq!(info.size, total as u64);
    assert_blob(d, &r, &digest, &content).await;
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
    let failing =
        futures::StreamExt::chain(chunked(&garbage, MIB), super::failing_body(b"last words"));
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

/// Two sessions uploading the same content finish at the same time: both succeed.
pub async fn upload_concurrent_finish_same_blob<F: DriverFactory>(f: &F) {
    let s = Setup::new(f).await;
    let content = data(300_000, 42);
    let digest = sha256(&content);
    let mut tasks = Vec::new();
    for (i, name) in ["suite/x", "suite/y", "suite/x"].into_iter().enumerate() {
        let r = repo(name);
        let id = ok!(s.d.start_upload(&r, DigestAlgorithm::Sha256).await).id();
        ok!(s
            .d
            .put_upload_chunk(&r, &id, None, None, body(&content[..100_000 + i]))
            .await);
        let (d, digest, rest) = (s.d.clone(), digest.clone(), content[100_000 + i..].to_vec());
        tasks.push(tokio::spawn(async move {
            d.finish_upload(&r, &id, &digest, None, yielding_body(rest, 10_000))
                .await
                .map(|i| i.size)
        }));
    }
    for t in tasks {
        assert_eq!(ok!(t.await.expect("task panicked")), 300_000);
    }
    assert_blob(&*s.d, &repo("suite/x"), &digest, &content).await;
    assert_blob(&*s.d, &repo("suite/y"), &digest, &content).await;
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
