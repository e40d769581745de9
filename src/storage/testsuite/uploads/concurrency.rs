//! Sessions used at once: interleaved sessions, two chunks for one offset, and sessions of
//! one blob finishing together.

use crate::error::Error;
use crate::oci::DigestAlgorithm;
use crate::storage::testsuite::{
    DriverFactory, Setup, assert_blob, body, data, no_body, ok, repo, sha256, yielding_body,
};
use crate::storage::{StorageDriver, UploadHandle};

use super::assert_offset;

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
