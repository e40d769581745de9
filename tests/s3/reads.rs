//! Blob reads: presigned URLs and ranged `GetObject`s.

use futures::stream;
use marina_distribution::Error;
use marina_distribution::oci::RangeRequest;
use marina_distribution::storage::StorageDriver;

use crate::env::{MIB, s3_or_skip};
use crate::helpers::{body, data, read_all, repo, sha256};

/// A presigned read of a stored blob serves its bytes to a plain HTTP client, straight from
/// the store (the capability a registry redirects blob pulls with), through the layers the
/// driver is assembled from.
#[tokio::test]
async fn presigned_blob_reads_serve_the_blob() {
    use marina_distribution::storage::presign::PresignBlobReads;
    let env = s3_or_skip!("presigned_blob_reads_serve_the_blob");
    let d = env.driver("presign").await;
    let r = repo("s3/presign");
    let blob = data(100_000, 3);
    let digest = sha256(&blob);
    let body = stream::iter([Ok(blob.clone())]);
    d.put_content(&r, &digest, None, body).await.unwrap();
    let expires_in = std::time::Duration::from_secs(300);
    let signed = d
        .backend()
        .presign_read_blob(&digest, expires_in)
        .await
        .unwrap();
    assert!(signed.url.contains("X-Amz-Signature="), "{}", signed.url);
    assert!(signed.expires_at > std::time::SystemTime::now());
    let mut request = reqwest::Client::new().get(&signed.url);
    for (name, value) in &signed.headers {
        request = request.header(name, value);
    }
    let response = request.send().await.unwrap();
    assert_eq!(response.status(), 200);
    assert!(response.bytes().await.unwrap() == blob);
}

#[tokio::test]
async fn ranged_reads() {
    let env = s3_or_skip!("ranged_reads");
    let d = env.driver("ranges").await;
    let r = repo("s3/ranges");
    let blob = data(6 * MIB + 10, 6);
    let digest = sha256(&blob);
    d.put_content(&r, &digest, None, body(vec![blob.clone()]))
        .await
        .unwrap();
    let len = blob.len() as u64;
    let cases = [
        (
            RangeRequest::FromTo {
                first: 0,
                last: Some(0),
            },
            blob.slice(0..1),
        ),
        (
            RangeRequest::FromTo {
                first: 10,
                last: Some(5 * MIB as u64 + 9),
            },
            blob.slice(10..5 * MIB + 10),
        ),
        (
            RangeRequest::FromTo {
                first: len - 3,
                last: None,
            },
            blob.slice(blob.len() - 3..),
        ),
        (
            RangeRequest::FromTo {
                first: 7,
                last: Some(len + 100),
            },
            blob.slice(7..),
        ),
        (RangeRequest::Suffix(1000), blob.slice(blob.len() - 1000..)),
    ];
    for (range, want) in cases {
        let read = d.get_content(&r, &digest, Some(range)).await.unwrap();
        assert_eq!(
            read.range.map(|r| r.len()),
            Some(want.len() as u64),
            "{range:?}"
        );
        assert_eq!(
            read_all(&d, &r, &digest, Some(range)).await,
            want,
            "{range:?}"
        );
    }
    let err = d
        .get_content(
            &r,
            &digest,
            Some(RangeRequest::FromTo {
                first: len,
                last: None,
            }),
        )
        .await
        .expect_err("unsatisfiable range");
    assert!(matches!(err, Error::RangeInvalid { .. }), "{err:?}");
    // An unknown blob is BLOB_UNKNOWN.
    let missing = sha256(b"missing");
    let err = d
        .get_content(&r, &missing, None)
        .await
        .expect_err("unknown blob");
    assert!(matches!(err, Error::BlobUnknown(_)), "{err:?}");
}
