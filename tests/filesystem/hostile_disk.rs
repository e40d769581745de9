//! A disk that was tampered with or fails: symbolic links planted below the root never
//! redirect a write outside it, and a failing disk's answer never names the root.

use std::path::PathBuf;

use bytes::Bytes;
use marina_distribution::oci::{DigestAlgorithm, Reference, Tag};
use marina_distribution::{Error, StorageDriver};

use crate::helpers::{body, files_under, open, push_empty_config, repo, sha256, tag_file};

#[cfg(unix)]
#[tokio::test]
async fn planted_symlinks_do_not_redirect_writes_outside_the_root() {
    use std::os::unix::fs::symlink;

    let dir = tempfile::tempdir().unwrap();
    let outside = tempfile::tempdir().unwrap();
    let root = dir.path().join("data");
    let driver = open(&root).await;

    // A repository directory that is a link to somewhere else.
    std::fs::create_dir_all(root.join("repositories")).unwrap();
    symlink(outside.path(), root.join("repositories/evil")).unwrap();
    let data = b"payload".to_vec();
    let digest = sha256(&data);
    let err = driver
        .put_content(&repo("evil"), &digest, None, body(&data, 3))
        .await
        .unwrap_err();
    assert!(matches!(err, Error::Backend { .. }), "{err:?}");
    let err = driver
        .start_upload(&repo("evil/inner"), DigestAlgorithm::Sha256)
        .await
        .unwrap_err();
    assert!(matches!(err, Error::Backend { .. }), "{err:?}");
    assert_eq!(files_under(outside.path()), Vec::<PathBuf>::new());

    // The blob store's algorithm directory replaced by a link.
    let root2 = dir.path().join("data2");
    let driver2 = open(&root2).await;
    std::fs::remove_dir_all(root2.join("blobs")).unwrap();
    std::fs::create_dir(root2.join("blobs")).unwrap();
    symlink(outside.path(), root2.join("blobs/sha256")).unwrap();
    let err = driver2
        .put_content(&repo("fine"), &digest, None, body(&data, 3))
        .await
        .unwrap_err();
    assert!(matches!(err, Error::Backend { .. }), "{err:?}");
    assert_eq!(files_under(outside.path()), Vec::<PathBuf>::new());

    // A tag file that is a link to a file outside: writing the tag replaces the link, the
    // outside file is untouched.
    let r = repo("tagged");
    let manifest = push_empty_config(&driver, &r).await;
    let victim = outside.path().join("victim");
    std::fs::write(&victim, b"precious").unwrap();
    let tag_file = tag_file(&root, "tagged", "latest");
    std::fs::create_dir_all(tag_file.parent().unwrap()).unwrap();
    symlink(&victim, &tag_file).unwrap();
    let tag = Tag::parse("latest").unwrap();
    let out = driver
        .put_manifest(
            &r,
            &Reference::Tag(tag.clone()),
            None,
            Bytes::from(manifest),
        )
        .await
        .unwrap();
    assert_eq!(std::fs::read(&victim).unwrap(), b"precious");
    assert!(std::fs::symlink_metadata(&tag_file).unwrap().is_file());
    assert_eq!(driver.resolve_tag(&r, &tag).await.unwrap(), out.digest);
}

/// The JSON error body and status the registry answers `err` with.
#[cfg(feature = "server")]
async fn answer(err: Error) -> (u16, serde_json::Value) {
    let resp = axum::response::IntoResponse::into_response(
        marina_distribution::registry::ApiError::from(err),
    );
    let status = resp.status().as_u16();
    let body = axum::body::to_bytes(resp.into_body(), usize::MAX).await;
    (status, serde_json::from_slice(&body.unwrap()).unwrap())
}

/// A disk that fails (here: files and directories where the other kind should be, which
/// fails the same system calls a full or broken disk does) answers `500 UNKNOWN` naming the
/// storage operation, never the storage root: not in the answer, not in the error's text.
#[cfg(feature = "server")]
#[tokio::test]
async fn a_failing_disk_answers_without_the_root_path() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("secret-root");
    let driver = open(&root).await;
    let root_text = std::fs::canonicalize(&root).unwrap().display().to_string();
    // A write: the repository's directory is a file.
    std::fs::create_dir_all(root.join("repositories")).unwrap();
    std::fs::write(root.join("repositories/full"), b"").unwrap();
    let write = driver
        .start_upload(&repo("full"), DigestAlgorithm::Sha256)
        .await
        .unwrap_err();
    // A read: a directory where a tag's file should be.
    let tag = tag_file(&root, "broken", "v1");
    std::fs::create_dir_all(&tag).unwrap();
    let reference = Reference::Tag(Tag::parse("v1").unwrap());
    let read = driver
        .get_manifest(&repo("broken"), &reference)
        .await
        .unwrap_err();
    for (err, operation) in [(write, "write"), (read, "read")] {
        let text = err.to_string();
        assert!(!text.contains(&root_text), "the root leaks into {text}");
        let (status, body) = answer(err).await;
        assert_eq!(status, 500, "{body}");
        let error = &body["errors"][0];
        assert_eq!(error["code"], "UNKNOWN", "{body}");
        assert_eq!(
            error["detail"],
            format!("storage backend failed during {operation}"),
            "{body}"
        );
        assert!(!body.to_string().contains("secret-root"), "{body}");
    }
}
