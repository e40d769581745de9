//! Storage-level checks the generic suite cannot make: failed, aborted and finished uploads
//! (and failed monolithic pushes) leave no upload data or session state behind.

use bytes::Bytes;
use futures::stream;
use marina_distribution::error::Result;
use marina_distribution::oci::{Digest, DigestAlgorithm, RepositoryName};
use marina_distribution::storage::testsuite::Factory;
use marina_distribution::storage::{StorageDriver, UploadHandle};

#[cfg(feature = "gcs")]
use crate::common::gcs as gcs_env;
use crate::common::storage_io::files_under;
#[cfg(feature = "gcs")]
use crate::gcs_factory;
use crate::local_factories::FilesystemFactory;
#[cfg(feature = "s3")]
use crate::s3_factory;

fn body(data: &[u8]) -> impl futures::Stream<Item = Result<Bytes>> + Send + use<> {
    stream::iter(vec![Ok(Bytes::copy_from_slice(data))])
}

/// Runs uploads that fail, abort, finish and deduplicate; returns the one blob's digest.
pub(crate) async fn upload_scenario<D: StorageDriver>(d: &D) -> Digest {
    let r = RepositoryName::parse("suite/leftovers").unwrap();
    // Over two 5 MiB parts, so object stores open multipart uploads.
    let content = b"some bytes to upload".repeat(550_000);
    let digest = Digest::compute(DigestAlgorithm::Sha256, &content);
    let wrong = Digest::compute(DigestAlgorithm::Sha256, b"wrong");
    let mib = 1024 * 1024;

    // Finished with the wrong digest.
    let id = d
        .start_upload(&r, DigestAlgorithm::Sha256)
        .await
        .unwrap()
        .id();
    d.put_upload_chunk(&r, &id, None, None, body(&content[..6 * mib]))
        .await
        .unwrap();
    assert!(
        d.finish_upload(&r, &id, &wrong, None, body(&content[6 * mib..]))
            .await
            .is_err()
    );
    // Aborted.
    let id = d
        .start_upload(&r, DigestAlgorithm::Sha256)
        .await
        .unwrap()
        .id();
    d.put_upload_chunk(&r, &id, None, None, body(&content))
        .await
        .unwrap();
    d.abort_upload(&r, &id).await.unwrap();
    // Failed monolithic pushes (digest, then size).
    assert!(
        d.put_content(&r, &wrong, None, body(&content))
            .await
            .is_err()
    );
    assert!(
        d.put_content(&r, &digest, Some(1), body(&content))
            .await
            .is_err()
    );
    // Finished, twice (the second one deduplicated), and pushed again.
    for _ in 0..2 {
        let id = d
            .start_upload(&r, DigestAlgorithm::Sha256)
            .await
            .unwrap()
            .id();
        d.put_upload_chunk(&r, &id, None, None, body(&content[..7 * mib]))
            .await
            .unwrap();
        d.finish_upload(&r, &id, &digest, None, body(&content[7 * mib..]))
            .await
            .unwrap();
    }
    d.put_content(&r, &digest, None, body(&content))
        .await
        .unwrap();
    digest
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_upload_data_left_behind() {
    let dir = FilesystemFactory.create_storage().await.unwrap();
    let d = FilesystemFactory.open(&dir).await.unwrap();
    let digest = upload_scenario(&d).await;

    let root = dir.path().join("root");
    let leftovers: Vec<_> = files_under(&root.join("uploads"))
        .into_iter()
        .chain(files_under(
            &root.join("repositories/suite/leftovers/_uploads"),
        ))
        .collect();
    assert!(
        leftovers.is_empty(),
        "upload data left behind: {leftovers:?}"
    );
    // Exactly one blob stored: the right one.
    let blobs = files_under(&root.join("blobs"));
    assert_eq!(blobs.len(), 1, "blobs stored: {blobs:?}");
    assert!(blobs[0].ends_with(digest.hex()));
}

/// Same on S3: no object under `uploads/` or `_uploads/`, no multipart upload left open,
/// exactly one blob object.
#[cfg(feature = "s3")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s3_no_upload_data_left_behind() {
    let Some(factory) = s3_factory::S3Factory::from_env() else {
        return;
    };
    let config = factory.create_storage().await.unwrap();
    let d = factory.open(&config).await.unwrap();
    let digest = upload_scenario(&d).await;

    let client = factory.client().await;
    let prefix = config.normalized_prefix();
    let keys = |sub: &str| {
        let (client, bucket, p) = (
            client.clone(),
            config.bucket.clone(),
            format!("{prefix}{sub}"),
        );
        async move {
            let out = client
                .list_objects_v2()
                .bucket(bucket)
                .prefix(p)
                .send()
                .await
                .expect("list objects");
            out.contents()
                .iter()
                .filter_map(|o| o.key().map(str::to_owned))
                .collect::<Vec<_>>()
        }
    };
    let leftovers: Vec<String> = [
        keys("uploads/").await,
        keys("repositories/suite/leftovers/_uploads/").await,
    ]
    .concat();
    assert!(
        leftovers.is_empty(),
        "upload objects left behind: {leftovers:?}"
    );
    let blobs = keys("blobs/").await;
    assert_eq!(blobs, [format!("{prefix}blobs/sha256/{}", digest.hex())]);
    let open = client
        .list_multipart_uploads()
        .bucket(&config.bucket)
        .prefix(&prefix)
        .send()
        .await
        .expect("list multipart uploads");
    let open: Vec<_> = open
        .uploads()
        .iter()
        .map(|u| u.key().unwrap_or_default().to_owned())
        .collect();
    assert!(open.is_empty(), "multipart uploads left open: {open:?}");
}

/// Same on GCS: no object under `uploads/` or `_uploads/`, exactly one blob object.
#[cfg(feature = "gcs")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gcs_no_upload_data_left_behind() {
    let Some(factory) = gcs_factory::GcsFactory::from_env() else {
        return;
    };
    let config = factory.create_storage().await.unwrap();
    let d = factory.open(&config).await.unwrap();
    let digest = upload_scenario(&d).await;

    let prefix = config.normalized_prefix();
    let mut leftovers = gcs_env::objects_below(&config, &format!("{prefix}uploads/")).await;
    leftovers.extend(
        gcs_env::objects_below(
            &config,
            &format!("{prefix}repositories/suite/leftovers/_uploads/"),
        )
        .await,
    );
    assert!(
        leftovers.is_empty(),
        "upload objects left behind: {leftovers:?}"
    );
    let blobs = gcs_env::objects_below(&config, &format!("{prefix}blobs/")).await;
    assert_eq!(blobs, [format!("{prefix}blobs/sha256/{}", digest.hex())]);
}
