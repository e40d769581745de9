//! What pushes leave on disk: nothing after a failed or aborted push, blob bytes under
//! `blobs/` only once committed, one whole copy after concurrent pushes, and temporary files
//! a crash left behind that no listing shows.

use std::path::PathBuf;

use bytes::Bytes;
use futures::stream;
use marina_distribution::oci::{DigestAlgorithm, Reference, Tag};
use marina_distribution::storage::UploadHandle;
use marina_distribution::storage::filesystem::WRITE_BATCH;
use marina_distribution::{Error, StorageDriver};

use crate::helpers::{
    body, failing_body, files_under, open, pattern, push_empty_config, read_all, repo, sha256,
    tag_file, temp_files,
};

#[tokio::test]
async fn nothing_is_left_behind_after_mismatch_or_abort() {
    let dir = tempfile::tempdir().unwrap();
    let driver = open(dir.path()).await;
    let r = repo("clean");
    let data = pattern(2 * WRITE_BATCH + 3, 9);
    let wrong = sha256(b"something else");

    // Monolithic push with a wrong digest.
    let err = driver
        .put_content(&r, &wrong, None, body(&data, 300_000))
        .await
        .unwrap_err();
    assert!(matches!(err, Error::DigestInvalid(_)), "{err:?}");

    // Monolithic push whose body fails midway.
    let err = driver
        .put_content(&r, &sha256(&data), None, failing_body(&data, 300_000))
        .await
        .unwrap_err();
    assert!(matches!(err, Error::BlobUploadInvalid(_)), "{err:?}");

    // Chunked upload finished with a wrong digest.
    let up = driver
        .start_upload(&r, DigestAlgorithm::Sha256)
        .await
        .unwrap();
    driver
        .put_upload_chunk(&r, &up.id(), Some(0), None, body(&data, 100_000))
        .await
        .unwrap();
    let err = driver
        .finish_upload(&r, &up.id(), &wrong, None, stream::empty())
        .await
        .unwrap_err();
    assert!(matches!(err, Error::DigestInvalid(_)), "{err:?}");

    // Chunked upload aborted.
    let up = driver
        .start_upload(&r, DigestAlgorithm::Sha256)
        .await
        .unwrap();
    driver
        .put_upload_chunk(&r, &up.id(), Some(0), None, body(&data, 100_000))
        .await
        .unwrap();
    driver.abort_upload(&r, &up.id()).await.unwrap();

    assert_eq!(
        files_under(&dir.path().join("blobs")),
        Vec::<PathBuf>::new()
    );
    assert_eq!(
        files_under(&dir.path().join("uploads")),
        Vec::<PathBuf>::new()
    );
    assert_eq!(temp_files(dir.path()), Vec::<PathBuf>::new());
    // No upload state, link or anything else either: only the file whose bytes lock
    // sessions across processes, which stays.
    assert_eq!(files_under(dir.path()), [dir.path().join("upload-locks")]);
}

#[tokio::test]
async fn blob_bytes_appear_under_blobs_only_at_commit() {
    let dir = tempfile::tempdir().unwrap();
    let driver = open(dir.path()).await;
    let r = repo("staged");
    let data = pattern(WRITE_BATCH + 4321, 4);
    let digest = sha256(&data);
    let blob = dir.path().join("blobs/sha256").join(digest.hex());

    let up = driver
        .start_upload(&r, DigestAlgorithm::Sha256)
        .await
        .unwrap();
    let (a, b) = data.split_at(1000);
    driver
        .put_upload_chunk(&r, &up.id(), Some(0), None, body(a, 1000))
        .await
        .unwrap();
    driver
        .put_upload_chunk(&r, &up.id(), Some(1000), None, body(b, 70_000))
        .await
        .unwrap();
    // All bytes are durable in the upload's data file, none under blobs/.
    assert_eq!(
        files_under(&dir.path().join("blobs")),
        Vec::<PathBuf>::new()
    );
    assert_eq!(
        std::fs::read(dir.path().join("uploads").join(up.id().as_str())).unwrap(),
        data
    );
    assert!(driver.stat(&r, &digest).await.is_err());

    driver
        .finish_upload(&r, &up.id(), &digest, None, stream::empty())
        .await
        .unwrap();
    assert_eq!(std::fs::read(&blob).unwrap(), data);
    assert_eq!(files_under(&dir.path().join("blobs")), vec![blob.clone()]);

    // Pushing the same blob again (another repository) keeps the one copy and drops the
    // second upload's bytes.
    let other = repo("staged-again");
    driver
        .put_content(
            &other,
            &digest,
            Some(data.len() as u64),
            body(&data, 512 * 1024),
        )
        .await
        .unwrap();
    assert_eq!(files_under(&dir.path().join("blobs")), vec![blob]);
    assert_eq!(
        files_under(&dir.path().join("uploads")),
        Vec::<PathBuf>::new()
    );
    assert_eq!(read_all(&driver, &other, &digest).await, data);
}

#[tokio::test]
async fn concurrent_pushes_of_one_blob_and_tag_leave_one_whole_copy() {
    let dir = tempfile::tempdir().unwrap();
    let driver = std::sync::Arc::new(open(dir.path()).await);
    let r = repo("race");
    let data = pattern(WRITE_BATCH / 2 + 17, 6);
    let digest = sha256(&data);
    let mut tasks = Vec::new();
    for i in 0..8 {
        let (driver, r, data, digest) = (driver.clone(), r.clone(), data.clone(), digest.clone());
        tasks.push(tokio::spawn(async move {
            if i % 2 == 0 {
                driver
                    .put_content(&r, &digest, None, body(&data, 10_000 + i))
                    .await
                    .map(|_| ())
            } else {
                let up = driver.start_upload(&r, DigestAlgorithm::Sha256).await?;
                driver
                    .finish_upload(&r, &up.id(), &digest, None, body(&data, 7_000 + i))
                    .await
                    .map(|_| ())
            }
        }));
    }
    for t in tasks {
        t.await.unwrap().unwrap();
    }
    let blob = dir.path().join("blobs/sha256").join(digest.hex());
    assert_eq!(std::fs::read(&blob).unwrap(), data);
    assert_eq!(temp_files(dir.path()), Vec::<PathBuf>::new());
    assert_eq!(
        files_under(&dir.path().join("uploads")),
        Vec::<PathBuf>::new()
    );
}

#[tokio::test]
async fn leftover_temporary_files_are_invisible() {
    // A crash in the middle of a write leaves a temporary file beside the target.
    let dir = tempfile::tempdir().unwrap();
    let driver = open(dir.path()).await;
    let r = repo("leftovers");
    let manifest = push_empty_config(&driver, &r).await;
    driver
        .put_manifest(
            &r,
            &Reference::Tag(Tag::parse("b").unwrap()),
            None,
            Bytes::from(manifest),
        )
        .await
        .unwrap();
    let tags = tag_file(dir.path(), "leftovers", "b");
    let tags = tags.parent().unwrap();
    std::fs::write(tags.join(".tmp-tag-a-0123456789abcdef"), b"half a dig").unwrap();
    std::fs::write(tags.join(".tmp-tag-c-0123456789abcdef"), b"").unwrap();
    assert_eq!(driver.get_tags(&r, None, None).await.unwrap().tags, ["b"]);

    // A repository holding nothing but a temporary file does not exist.
    let ghost = tag_file(dir.path(), "ghost", "v1");
    let ghost = ghost.parent().unwrap();
    std::fs::create_dir_all(ghost).unwrap();
    std::fs::write(ghost.join(".tmp-v1-0123456789abcdef"), b"x").unwrap();
    assert!(matches!(
        driver.get_tags(&repo("ghost"), None, None).await,
        Err(Error::NameUnknown(_))
    ));
}
