//! Sessions whose every request succeeds: whole bodies, one-byte and large chunks, final
//! chunks, the empty blob, sha512 and the finishing digest's algorithm, content already
//! stored.

use crate::error::Error;
use crate::oci::DigestAlgorithm;
use crate::storage::testsuite::{
    DriverFactory, Setup, assert_blob, assert_err, body, chunked, data, no_body, ok, repo, sha256,
    sha512,
};
use crate::storage::{StorageDriver, UploadHandle, UploadId};

use super::{MIB, assert_offset};

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
