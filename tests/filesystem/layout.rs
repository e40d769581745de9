//! Where things are: the root the driver creates and the blob files below it, and
//! repositories nested many levels deep, with their tags beside their manifests.

use std::path::PathBuf;

use bytes::Bytes;
use futures::stream;
use marina_distribution::oci::{Reference, Tag};
use marina_distribution::storage::filesystem::FilesystemDriver;
use marina_distribution::storage::{EngineOptions, FilesystemConfig};
use marina_distribution::{Error, StorageDriver};

use crate::helpers::{open, push_empty_config, read_all, repo, sha256, tag_file};

#[tokio::test]
async fn deeply_nested_repository_names_work() {
    let dir = tempfile::tempdir().unwrap();
    let driver = open(dir.path()).await;
    let name: String = (0..40)
        .map(|i| format!("n{i}"))
        .collect::<Vec<_>>()
        .join("/");
    let r = repo(&name);
    let manifest = push_empty_config(&driver, &r).await;
    let tag = Tag::parse("v1").unwrap();
    let out = driver
        .put_manifest(
            &r,
            &Reference::Tag(tag.clone()),
            None,
            Bytes::from(manifest.clone()),
        )
        .await
        .unwrap();
    assert_eq!(driver.resolve_tag(&r, &tag).await.unwrap(), out.digest);
    assert_eq!(
        driver
            .get_manifest(&r, &Reference::Digest(out.digest.clone()))
            .await
            .unwrap()
            .bytes,
        manifest.as_bytes()
    );
    assert_eq!(driver.get_tags(&r, None, None).await.unwrap().tags, ["v1"]);
    let on_disk = tag_file(dir.path(), &name, "v1");
    // The tag is the manifest record (a hard link to it), which starts with the digest.
    let tag_file = std::fs::read(on_disk).unwrap();
    assert!(tag_file.starts_with(format!("{} ", out.digest).as_bytes()));
    // A parent repository of the nested one is a repository of its own: not found.
    assert!(matches!(
        driver.get_tags(&repo("n0/n1"), None, None).await,
        Err(Error::NameUnknown(_))
    ));
}

#[tokio::test]
async fn open_creates_the_root_and_locates_files_below_it() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("a/b/c");
    let driver = open(&root).await;
    assert!(root.join("blobs").is_dir() && root.join("uploads").is_dir());
    let r = repo("where");
    let info = driver
        .put_content(&r, &sha256(b""), Some(0), stream::empty())
        .await
        .unwrap();
    assert_eq!(info.size, 0);
    let blob = std::fs::canonicalize(&root)
        .unwrap()
        .join("blobs/sha256")
        .join(sha256(b"").hex());
    assert_eq!(PathBuf::from(&info.path), blob);
    assert_eq!(std::fs::metadata(&blob).unwrap().len(), 0);
    assert!(read_all(&driver, &r, &sha256(b"")).await.is_empty());
    // A file where the root should be is a configuration error naming the setting, and
    // the file is left as it was.
    let file = dir.path().join("file");
    std::fs::write(&file, b"x").unwrap();
    let err = FilesystemDriver::open(
        &FilesystemConfig {
            root_directory: file.clone(),
        },
        EngineOptions::default(),
    )
    .await
    .unwrap_err();
    assert!(
        matches!(
            err,
            Error::Config {
                field: "filesystem.root_directory",
                ..
            }
        ),
        "{err:?}"
    );
    assert_eq!(std::fs::read(&file).unwrap(), b"x");
}
