//! Blob cases: monolithic put, reads and ranges, visibility per repository, mount, delete.

use std::sync::Arc;

use crate::error::Error;
use crate::oci::RangeRequest;
use crate::storage::StorageDriver;

use super::{
    DriverFactory, Setup, assert_blob, assert_err, body, chunked, data, failing_body, no_body, ok,
    read, repo, sha256, sha512, yielding_body,
};

/// Put, stat, get and delete a blob; after delete it is `BLOB_UNKNOWN` everywhere.
pub async fn blob_put_get_stat_delete<F: DriverFactory>(f: &F) {
    let s = Setup::new(f).await;
    let d = &*s.d;
    let r = repo("suite/blobs");
    let content = data(1000, 1);
    let digest = sha256(&content);
    let info = ok!(d
        .put_content(&r, &digest, Some(1000), chunked(&content, 333))
        .await);
    assert_eq!(info.size, 1000);
    assert_eq!(info.digest, digest);
    assert!(!info.path.is_empty(), "FileInfo::path is empty");
    assert_blob(d, &r, &digest, &content).await;
    let read = ok!(d.get_content(&r, &digest, None).await);
    assert_eq!(read.info.size, 1000);
    assert_eq!(read.range, None, "whole read reports no range");
    ok!(d.delete(&r, &digest).await);
    assert_err!(d.stat(&r, &digest).await, Error::BlobUnknown(_));
    assert_err!(
        d.get_content(&r, &digest, None).await,
        Error::BlobUnknown(_)
    );
    assert_err!(d.delete(&r, &digest).await, Error::BlobUnknown(_));
}

/// Unknown blobs are `BLOB_UNKNOWN` for stat, get and delete, also in an unknown repository.
pub async fn blob_unknown<F: DriverFactory>(f: &F) {
    let s = Setup::new(f).await;
    let d = &*s.d;
    let r = repo("suite/unknown");
    let digest = sha256(b"never pushed");
    assert_err!(d.stat(&r, &digest).await, Error::BlobUnknown(x) if x == digest);
    assert_err!(
        d.get_content(&r, &digest, None).await,
        Error::BlobUnknown(_)
    );
    assert_err!(
        d.get_content(&r, &digest, Some(RangeRequest::Suffix(1)))
            .await,
        Error::BlobUnknown(_)
    );
    assert_err!(d.delete(&r, &digest).await, Error::BlobUnknown(_));
    // Known in another repository only: still unknown here.
    let other = repo("suite/other");
    ok!(d
        .put_content(&other, &digest, None, body(b"never pushed"))
        .await);
    assert_err!(d.stat(&r, &digest).await, Error::BlobUnknown(_));
}

/// A monolithic put whose content does not match the digest is `DIGEST_INVALID` and leaves
/// nothing visible, neither under the claimed digest nor under the real one.
pub async fn blob_put_digest_mismatch<F: DriverFactory>(f: &F) {
    let s = Setup::new(f).await;
    let d = &*s.d;
    let r = repo("suite/mismatch");
    let content = data(300, 2);
    let claimed = sha256(b"something else");
    assert_err!(
        d.put_content(&r, &claimed, None, chunked(&content, 7))
            .await,
        Error::DigestInvalid(_)
    );
    assert_err!(d.stat(&r, &claimed).await, Error::BlobUnknown(_));
    assert_err!(d.stat(&r, &sha256(&content)).await, Error::BlobUnknown(_));
    // The same digest can then be pushed correctly.
    ok!(d
        .put_content(&r, &claimed, None, body(b"something else"))
        .await);
    assert_blob(d, &r, &claimed, b"something else").await;
}

/// A monolithic put whose length differs from the declared one is `SIZE_INVALID`, whether
/// shorter or longer, and nothing becomes visible.
pub async fn blob_put_size_mismatch<F: DriverFactory>(f: &F) {
    let s = Setup::new(f).await;
    let d = &*s.d;
    let r = repo("suite/size");
    let content = data(64, 3);
    let digest = sha256(&content);
    for declared in [63, 65, 0] {
        assert_err!(
            d.put_content(&r, &digest, Some(declared), chunked(&content, 10))
                .await,
            Error::SizeInvalid(_)
        );
        assert_err!(d.stat(&r, &digest).await, Error::BlobUnknown(_));
    }
    ok!(d.put_content(&r, &digest, Some(64), body(&content)).await);
    assert_blob(d, &r, &digest, &content).await;
}

/// A body that fails midway fails the put and leaves nothing visible.
pub async fn blob_put_body_error<F: DriverFactory>(f: &F) {
    let s = Setup::new(f).await;
    let d = &*s.d;
    let r = repo("suite/bodyerror");
    let content = data(100, 4);
    let digest = sha256(&content);
    assert!(
        d.put_content(&r, &digest, None, failing_body(&content))
            .await
            .is_err(),
        "a failing body must fail the put"
    );
    assert_err!(d.stat(&r, &digest).await, Error::BlobUnknown(_));
    ok!(d.put_content(&r, &digest, None, body(&content)).await);
    assert_blob(d, &r, &digest, &content).await;
}

/// Pushing a blob that is already stored (same or other repository) works, is verified
/// (a wrong body is still `DIGEST_INVALID`) and does not disturb the stored copy.
pub async fn blob_put_existing<F: DriverFactory>(f: &F) {
    let s = Setup::new(f).await;
    let d = &*s.d;
    let (a, b) = (repo("suite/a"), repo("suite/b"));
    let content = data(500, 5);
    let digest = sha256(&content);
    ok!(d.put_content(&a, &digest, None, body(&content)).await);
    ok!(d
        .put_content(&a, &digest, Some(500), chunked(&content, 99))
        .await);
    assert_err!(
        d.put_content(&b, &digest, None, body(&data(500, 6))).await,
        Error::DigestInvalid(_)
    );
    assert_err!(d.stat(&b, &digest).await, Error::BlobUnknown(_));
    assert_err!(
        d.put_content(&b, &digest, Some(501), body(&content)).await,
        Error::SizeInvalid(_)
    );
    assert_err!(d.stat(&b, &digest).await, Error::BlobUnknown(_));
    ok!(d.put_content(&b, &digest, None, body(&content)).await);
    assert_blob(d, &a, &digest, &content).await;
    assert_blob(d, &b, &digest, &content).await;
}

/// Ranged reads (RFC 9110): open-ended, bounded, suffix, clamped to the end, single byte;
/// unsatisfiable ranges are `RangeInvalid` carrying the blob's size.
pub async fn blob_ranged_reads<F: DriverFactory>(f: &F) {
    let s = Setup::new(f).await;
    let d = &*s.d;
    let r = repo("suite/ranges");
    let content = data(1000, 7);
    let digest = sha256(&content);
    // Stored in small chunks so ranges cross chunk boundaries in rope-like backends.
    ok!(d.put_content(&r, &digest, None, chunked(&content, 7)).await);
    let from_to = |first, last| RangeRequest::FromTo { first, last };
    let cases: [(RangeRequest, std::ops::RangeInclusive<usize>); 9] = [
        (from_to(0, None), 0..=999),
        (from_to(10, None), 10..=999),
        (from_to(999, None), 999..=999),
        (from_to(0, Some(0)), 0..=0),
        (from_to(5, Some(6)), 5..=6),
        (from_to(100, Some(5000)), 100..=999),
        (RangeRequest::Suffix(1), 999..=999),
        (RangeRequest::Suffix(300), 700..=999),
        (RangeRequest::Suffix(5000), 0..=999),
    ];
    for (range, expected) in cases {
        let blob = ok!(d.get_content(&r, &digest, Some(range)).await);
        assert_eq!(
            blob.info.size, 1000,
            "{range:?}: info.size is the whole size"
        );
        let served = blob.range.expect("a ranged read reports its range");
        assert_eq!(
            (served.start, served.end),
            (*expected.start() as u64, *expected.end() as u64),
            "{range:?}: resolved range"
        );
        let got = ok!(read(d, &r, &digest, Some(range)).await);
        assert!(
            got == content[expected.clone()],
            "{range:?}: got {} bytes, expected bytes {expected:?}",
            got.len()
        );
    }
    for range in [
        from_to(1000, None),
        from_to(5000, Some(6000)),
        RangeRequest::Suffix(0),
    ] {
        assert_err!(
            d.get_content(&r, &digest, Some(range)).await,
            Error::RangeInvalid { size: 1000, .. }
        );
    }
}

/// The empty blob: monolithic put, stat, whole read; any range of it is unsatisfiable.
pub async fn blob_empty<F: DriverFactory>(f: &F) {
    let s = Setup::new(f).await;
    let d = &*s.d;
    let r = repo("suite/empty");
    let digest = sha256(b"");
    let info = ok!(d.put_content(&r, &digest, Some(0), no_body()).await);
    assert_eq!(info.size, 0);
    assert_blob(d, &r, &digest, b"").await;
    // Again, with one empty chunk.
    ok!(d.put_content(&r, &digest, None, body(b"")).await);
    assert_blob(d, &r, &digest, b"").await;
    for range in [
        RangeRequest::FromTo {
            first: 0,
            last: None,
        },
        RangeRequest::Suffix(1),
    ] {
        assert_err!(
            d.get_content(&r, &digest, Some(range)).await,
            Error::RangeInvalid { size: 0, .. }
        );
    }
    // sha512 empty blob too.
    let d512 = sha512(b"");
    ok!(d.put_content(&r, &d512, Some(0), no_body()).await);
    assert_blob(d, &r, &d512, b"").await;
}

/// sha512 blobs: verified with sha512, stored and served under their sha512 digest, distinct
/// from the sha256 digest of the same bytes.
pub async fn blob_sha512<F: DriverFactory>(f: &F) {
    let s = Setup::new(f).await;
    let d = &*s.d;
    let r = repo("suite/sha512");
    let content = data(777, 8);
    let digest = sha512(&content);
    let info = ok!(d
        .put_content(&r, &digest, Some(777), chunked(&content, 100))
        .await);
    assert_eq!(info.digest, digest);
    assert_blob(d, &r, &digest, &content).await;
    assert_err!(d.stat(&r, &sha256(&content)).await, Error::BlobUnknown(_));
    // A sha512 digest of other content is rejected.
    let wrong = sha512(b"other");
    assert_err!(
        d.put_content(&r, &wrong, None, body(&content)).await,
        Error::DigestInvalid(_)
    );
    assert_err!(d.stat(&r, &wrong).await, Error::BlobUnknown(_));
    let tail = ok!(read(d, &r, &digest, Some(RangeRequest::Suffix(77))).await);
    assert!(tail == content[700..], "sha512 ranged read");
}

/// A blob of several MiB streamed in odd-sized chunks (large enough for multipart uploads on
/// object stores, 5 MiB parts), read back whole and by ranges across 1 MiB boundaries.
pub async fn blob_large_streamed<F: DriverFactory>(f: &F) {
    let s = Setup::new(f).await;
    let d = &*s.d;
    let r = repo("suite/large");
    let len = 6 * 1024 * 1024 + 12_345;
    let content = data(len, 9);
    let digest = sha256(&content);
    ok!(d
        .put_content(&r, &digest, Some(len as u64), chunked(&content, 65_537))
        .await);
    assert_blob(d, &r, &digest, &content).await;
    let mib = 1024 * 1024;
    for (first, last) in [(mib - 10, mib + 10), (5 * mib - 1, 5 * mib), (0, len - 1)] {
        let got = ok!(read(
            d,
            &r,
            &digest,
            Some(RangeRequest::FromTo {
                first: first as u64,
                last: Some(last as u64)
            })
        )
        .await);
        assert!(got == content[first..=last], "range {first}-{last}");
    }
}

/// Several tasks pushing the same blob at once all succeed and the blob is intact.
pub async fn blob_concurrent_put<F: DriverFactory>(f: &F) {
    let s = Setup::new(f).await;
    let content = Arc::new(data(256 * 1024 + 3, 10));
    let digest = sha256(&content);
    let mut tasks = Vec::new();
    for i in 0..6 {
        let d = Arc::clone(&s.d);
        let content = Arc::clone(&content);
        let digest = digest.clone();
        // Half the tasks push to one repository, half to another.
        let r = repo(if i % 2 == 0 { "suite/c1" } else { "suite/c2" });
        tasks.push(tokio::spawn(async move {
            d.put_content(
                &r,
                &digest,
                None,
                yielding_body(content.to_vec(), 8 * 1024 + i),
            )
            .await
            .map(|info| info.size)
        }));
    }
    for t in tasks {
        let size = ok!(t.await.expect("task panicked"));
        assert_eq!(size, content.len() as u64);
    }
    for r in ["suite/c1", "suite/c2"] {
        assert_blob(&*s.d, &repo(r), &digest, &content).await;
    }
}

/// A blob pushed to `a` is `BLOB_UNKNOWN` in `b` (and in `a/sub`, and in a repository whose
/// name is a prefix) until pushed or mounted there.
pub async fn blob_cross_repository_visibility<F: DriverFactory>(f: &F) {
    let s = Setup::new(f).await;
    let d = &*s.d;
    let (a, b) = (repo("suite/a"), repo("suite/b"));
    let content = data(50, 11);
    let digest = sha256(&content);
    ok!(d.put_content(&a, &digest, None, body(&content)).await);
    for other in [&b, &repo("suite/a/sub"), &repo("suite"), &repo("suite/ab")] {
        assert_err!(d.stat(other, &digest).await, Error::BlobUnknown(_));
        assert_err!(
            d.get_content(other, &digest, None).await,
            Error::BlobUnknown(_)
        );
        assert_err!(d.delete(other, &digest).await, Error::BlobUnknown(_));
    }
    assert_blob(d, &a, &digest, &content).await;
}

/// `mount_blob` makes a blob of `from` visible in `to`; from a repository lacking it, it is
/// `BLOB_UNKNOWN` and nothing changes.
pub async fn blob_mount<F: DriverFactory>(f: &F) {
    let s = Setup::new(f).await;
    let d = &*s.d;
    let (a, b, c) = (repo("suite/a"), repo("suite/b"), repo("suite/c"));
    let content = data(4096, 12);
    let digest = sha256(&content);
    ok!(d.put_content(&a, &digest, None, body(&content)).await);
    let info = ok!(d.mount_blob(&a, &b, &digest).await);
    assert_eq!(info.size, 4096);
    assert_eq!(info.digest, digest);
    assert_blob(d, &b, &digest, &content).await;
    // Mount from a repository that does not have it (c never had it).
    assert_err!(d.mount_blob(&c, &b, &digest).await, Error::BlobUnknown(_));
    let missing = sha256(b"missing");
    assert_err!(d.mount_blob(&a, &c, &missing).await, Error::BlobUnknown(_));
    assert_err!(d.stat(&c, &missing).await, Error::BlobUnknown(_));
    // Mounting again is harmless; mounting into the source too.
    ok!(d.mount_blob(&a, &b, &digest).await);
    ok!(d.mount_blob(&a, &a, &digest).await);
    assert_blob(d, &a, &digest, &content).await;
    // After a delete in `a`, `a` can no longer be a mount source, but `b` can.
    ok!(d.delete(&a, &digest).await);
    assert_err!(d.mount_blob(&a, &c, &digest).await, Error::BlobUnknown(_));
    ok!(d.mount_blob(&b, &c, &digest).await);
    assert_blob(d, &c, &digest, &content).await;
}

/// Deleting a blob from one repository leaves it intact in the others.
pub async fn blob_delete_keeps_other_repositories<F: DriverFactory>(f: &F) {
    let s = Setup::new(f).await;
    let d = &*s.d;
    let (a, b) = (repo("suite/a"), repo("suite/b"));
    let content = data(2000, 13);
    let digest = sha256(&content);
    ok!(d.put_content(&a, &digest, None, body(&content)).await);
    ok!(d.put_content(&b, &digest, None, body(&content)).await);
    ok!(d.delete(&a, &digest).await);
    assert_err!(d.stat(&a, &digest).await, Error::BlobUnknown(_));
    assert_blob(d, &b, &digest, &content).await;
    // And it can be pushed to `a` again.
    ok!(d.put_content(&a, &digest, None, body(&content)).await);
    assert_blob(d, &a, &digest, &content).await;
}

/// Readers running while a blob is being pushed, and while a tag is being overwritten, see
/// either nothing (`BLOB_UNKNOWN`) or the complete blob, and either the old or the new
/// manifest: never partial content (issue 2, point 5).
pub async fn concurrent_readers_never_see_partial_content<F: DriverFactory>(f: &F) {
    use crate::oci::Reference;
    use crate::oci::manifest::media_types;

    use super::{CONFIG_TYPE, image_manifest, push_blob, tag_ref};

    let s = Setup::new(f).await;
    let r = repo("suite/partial");
    let content = data(4 * 1024 * 1024 + 1, 14);
    let digest = sha256(&content);
    let writer = {
        let (d, r, digest, content) = (s.d.clone(), r.clone(), digest.clone(), content.clone());
        tokio::spawn(async move {
            d.put_content(&r, &digest, None, yielding_body(content, 64 * 1024))
                .await
                .map(|_| ())
        })
    };
    let d = &*s.d;
    let mut complete_reads = 0;
    loop {
        let done = writer.is_finished();
        match read(d, &r, &digest, None).await {
            Ok(got) => {
                assert!(
                    got == content,
                    "a reader saw {} bytes of a {}-byte blob being pushed",
                    got.len(),
                    content.len()
                );
                complete_reads += 1;
            }
            Err(Error::BlobUnknown(_)) => {}
            Err(e) => panic!("read during push: {e}"),
        }
        if done {
            break;
        }
        tokio::task::yield_now().await;
    }
    ok!(writer.await.expect("writer panicked"));
    assert!(complete_reads >= 1, "the blob is readable once pushed");

    // Tag overwritten back and forth while readers resolve it.
    let config = push_blob(d, &r, b"{}", CONFIG_TYPE).await;
    let versions: Vec<_> = (0..2)
        .map(|i| {
            image_manifest(
                &config,
                &[],
                None,
                None,
                Some(serde_json::json!({ "v": "x".repeat(20_000 * (i + 1)) })),
            )
        })
        .collect();
    ok!(d
        .put_manifest(&r, &tag_ref("moving"), None, versions[0].clone())
        .await);
    let writer = {
        let (d, r, versions) = (s.d.clone(), r.clone(), versions.clone());
        tokio::spawn(async move {
            for i in 0..20 {
                d.put_manifest(
                    &r,
                    &tag_ref("moving"),
                    Some(media_types::OCI_MANIFEST),
                    versions[i % 2].clone(),
                )
                .await?;
            }
            Ok::<_, Error>(())
        })
    };
    loop {
        let done = writer.is_finished();
        let m = ok!(d.get_manifest(&r, &tag_ref("moving")).await);
        assert!(
            versions.contains(&m.bytes),
            "a reader saw a manifest of {} bytes that was never pushed",
            m.bytes.len()
        );
        assert_eq!(m.info.digest, sha256(&m.bytes), "digest and bytes disagree");
        let by_digest = ok!(d
            .get_manifest(&r, &Reference::Digest(m.info.digest.clone()))
            .await);
        assert_eq!(by_digest.bytes, m.bytes);
        if done {
            break;
        }
        tokio::task::yield_now().await;
    }
    ok!(writer.await.expect("writer panicked"));
}
