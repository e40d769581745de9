//! Unit tests of the filesystem backend's own storage: links, tags, records, sessions.

use futures::stream;

use super::*;
use crate::oci::{DigestAlgorithm, RepositoryName};
use crate::storage::{StorageDriver, UploadHandle};

/// Pushes the config blob `{}` to `repo`; returns its digest.
async fn push_config(d: &FilesystemDriver, repo: &RepositoryName) -> Digest {
    let config = b"{}";
    let digest = Digest::compute(DigestAlgorithm::Sha256, config);
    let body = stream::iter([Ok(Bytes::from_static(config))]);
    d.put_content(repo, &digest, None, body).await.unwrap();
    digest
}

/// An image manifest with the config `config` and no layers, told apart by `n`.
fn image_manifest(config: &Digest, n: u32) -> Bytes {
    Bytes::from(format!(
        r#"{{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"{config}","size":2}},"layers":[],"annotations":{{"n":"{n}"}}}}"#
    ))
}

/// A driver on a fresh directory with the config blob `{}` pushed to repository `a/b`.
async fn with_config() -> (tempfile::TempDir, FilesystemDriver, RepositoryName, Digest) {
    let dir = tempfile::tempdir().unwrap();
    let d = driver(dir.path()).await;
    let repo = RepositoryName::parse("a/b").unwrap();
    let config_digest = push_config(&d, &repo).await;
    (dir, d, repo, config_digest)
}

async fn driver(root: &Path) -> FilesystemDriver {
    let config = FilesystemConfig {
        root_directory: root.to_path_buf(),
    };
    FilesystemDriver::open(&config, EngineOptions::default())
        .await
        .unwrap()
}

/// A link whose content a crash lost (its name was synced, its bytes were not) still
/// makes the blob visible, with the blob's own size.
#[tokio::test]
async fn a_link_emptied_by_a_crash_takes_the_blob_size() {
    let dir = tempfile::tempdir().unwrap();
    let d = driver(dir.path()).await;
    let repo = RepositoryName::parse("a/b").unwrap();
    let data = b"linked bytes";
    let digest = Digest::compute(DigestAlgorithm::Sha256, data);
    let body = stream::iter([Ok(Bytes::from_static(data))]);
    d.put_content(&repo, &digest, None, body).await.unwrap();
    let link = dir.path().join(layout::layer_link(&repo, &digest).as_str());
    for torn in [&b""[..], &b"\0\0\0"[..]] {
        fs::write(&link, torn).unwrap();
        assert_eq!(
            d.stat(&repo, &digest).await.unwrap().size,
            data.len() as u64
        );
    }
    // A link to a blob that is not stored (what a crash during `commit_and_link` can
    // leave, since both names are synced in one round) counts as absent, whatever its
    // content; pushing the blob again makes it visible.
    fs::remove_file(dir.path().join(layout::blob_data(&digest).as_str())).unwrap();
    for content in [&b""[..], &b"12"[..]] {
        fs::write(&link, content).unwrap();
        assert!(matches!(
            d.stat(&repo, &digest).await,
            Err(Error::BlobUnknown(_))
        ));
        assert!(matches!(
            d.get_content(&repo, &digest, None).await,
            Err(Error::BlobUnknown(_))
        ));
    }
    let body = stream::iter([Ok(Bytes::from_static(data))]);
    d.put_content(&repo, &digest, None, body).await.unwrap();
    assert_eq!(
        d.stat(&repo, &digest).await.unwrap().size,
        data.len() as u64
    );
}

/// A tag is a hard link to its manifest record (no file created, no data synced); it
/// resolves like a tag holding the digest, moves atomically, and goes with the manifest.
#[tokio::test]
async fn a_tag_is_another_name_of_its_manifest_record() {
    use std::os::unix::fs::MetadataExt;

    use crate::oci::{Reference, Tag};
    let (dir, d, repo, config_digest) = with_config().await;
    let manifest = |n: u32| image_manifest(&config_digest, n);
    let media_type = Some("application/vnd.oci.image.manifest.v1+json");
    let tag = Tag::parse("latest").unwrap();
    let tag_path = paths::key_path(dir.path(), &layout::tag(&repo, &tag)).unwrap();
    let record_path = |digest: &Digest| dir.path().join(layout::manifest(&repo, digest).as_str());

    let first = d
        .put_manifest(&repo, &Reference::Tag(tag.clone()), media_type, manifest(1))
        .await
        .unwrap()
        .digest;
    let inode = |p: &Path| fs::metadata(p).unwrap().ino();
    assert_eq!(inode(&tag_path), inode(&record_path(&first)));
    assert_eq!(d.resolve_tag(&repo, &tag).await.unwrap(), first);

    // Moving the tag (by pushing another manifest, then by tagging the first again).
    let second = d
        .put_manifest(&repo, &Reference::Tag(tag.clone()), media_type, manifest(2))
        .await
        .unwrap()
        .digest;
    assert_eq!(inode(&tag_path), inode(&record_path(&second)));
    assert_eq!(d.resolve_tag(&repo, &tag).await.unwrap(), second);
    d.tag_manifest(&repo, &tag, &first).await.unwrap();
    assert_eq!(d.resolve_tag(&repo, &tag).await.unwrap(), first);
    let got = d
        .get_manifest(&repo, &Reference::Tag(tag.clone()))
        .await
        .unwrap();
    assert_eq!(got.bytes, manifest(1));

    // A tag holding only the digest (other backends, older trees) resolves the same.
    fs::remove_file(&tag_path).unwrap();
    fs::write(&tag_path, format!("{second}\n")).unwrap();
    assert_eq!(d.resolve_tag(&repo, &tag).await.unwrap(), second);

    // Deleting a manifest removes the tags that name it, linked or not.
    d.tag_manifest(&repo, &Tag::parse("other").unwrap(), &second)
        .await
        .unwrap();
    d.delete_manifest(&repo, &second).await.unwrap();
    assert!(d.resolve_tag(&repo, &tag).await.is_err());
    assert!(
        d.resolve_tag(&repo, &Tag::parse("other").unwrap())
            .await
            .is_err()
    );
    assert!(!record_path(&second).exists());
}

/// Tags live beside the sha256 manifest records (one directory to sync per tagged push)
/// and list apart from them: a record is never a tag, a tag named like a record's hex
/// digest is its own file, and tags of sha512 manifests (another directory) work too.
#[tokio::test]
async fn tags_live_beside_the_sha256_records_and_list_apart_from_them() {
    use std::os::unix::fs::MetadataExt;

    use crate::oci::{Reference, Tag};
    let (dir, d, repo, config_digest) = with_config().await;
    let media_type = Some("application/vnd.oci.image.manifest.v1+json");
    let tag_path = |tag: &Tag| paths::key_path(dir.path(), &layout::tag(&repo, tag)).unwrap();
    let record_path = |digest: &Digest| dir.path().join(layout::manifest(&repo, digest).as_str());
    let push = |reference: Reference, n: u32| {
        let d = &d;
        let repo = &repo;
        let bytes = image_manifest(&config_digest, n);
        async move {
            d.put_manifest(repo, &reference, media_type, bytes)
                .await
                .unwrap()
                .digest
        }
    };

    let latest = Tag::parse("latest").unwrap();
    let first = push(Reference::Tag(latest.clone()), 1).await;
    assert_eq!(tag_path(&latest).parent(), record_path(&first).parent());
    assert_eq!(
        tag_path(&latest).file_name().unwrap(),
        "tag-latest",
        "{}",
        tag_path(&latest).display()
    );
    let inode = |p: &Path| fs::metadata(p).unwrap().ino();
    assert_eq!(inode(&tag_path(&latest)), inode(&record_path(&first)));

    // A tag spelled like the hex of the first manifest's digest: its own file.
    let hex_tag = Tag::parse(first.hex()).unwrap();
    let second = push(Reference::Tag(hex_tag.clone()), 2).await;
    assert_eq!(d.resolve_tag(&repo, &hex_tag).await.unwrap(), second);
    assert_eq!(d.resolve_tag(&repo, &latest).await.unwrap(), first);
    let by_first = Reference::Digest(first.clone());
    assert_eq!(
        d.get_manifest(&repo, &by_first).await.unwrap().bytes,
        image_manifest(&config_digest, 1)
    );

    // A sha512 manifest, tagged after the push and by a push: its record is elsewhere.
    let bytes = image_manifest(&config_digest, 3);
    let sha512 = Digest::compute(DigestAlgorithm::Sha512, &bytes);
    d.put_manifest(&repo, &Reference::Digest(sha512.clone()), media_type, bytes)
        .await
        .unwrap();
    let v512 = Tag::parse("v512").unwrap();
    d.tag_manifest(&repo, &v512, &sha512).await.unwrap();
    assert_ne!(tag_path(&v512).parent(), record_path(&sha512).parent());
    assert_eq!(d.resolve_tag(&repo, &v512).await.unwrap(), sha512);

    // Records (hex names) never list as tags; the tags list in byte order, paginated.
    let all = d.get_tags(&repo, None, None).await.unwrap().tags;
    assert_eq!(all, [first.hex(), "latest", "v512"]);
    let page = d.get_tags(&repo, Some(1), Some(first.hex())).await.unwrap();
    assert_eq!(
        (page.tags, page.has_more),
        (vec!["latest".to_owned()], true)
    );

    // Untagging removes the tag's file only; the manifest stays.
    d.untag_manifest(&repo, &latest).await.unwrap();
    assert!(!tag_path(&latest).exists() && record_path(&first).exists());
    d.untag_manifest(&repo, &hex_tag).await.unwrap();
    d.untag_manifest(&repo, &v512).await.unwrap();
    assert!(d.get_tags(&repo, None, None).await.unwrap().tags.is_empty());
    assert!(d.get_manifest(&repo, &by_first).await.is_ok());
}

/// A manifest record a crash left torn (renamed into place before it was synced) or
/// that no longer matches its digest is a manifest that is not stored: it is neither
/// served nor taggable, and pushing the manifest again repairs it.
#[tokio::test]
async fn a_torn_manifest_record_counts_as_absent() {
    use crate::oci::{Reference, Tag};
    let (dir, d, repo, config_digest) = with_config().await;
    let manifest = image_manifest(&config_digest, 0);
    let tag = Tag::parse("v1").unwrap();
    let pushed = d
        .put_manifest(
            &repo,
            &Reference::Tag(tag.clone()),
            Some("application/vnd.oci.image.manifest.v1+json"),
            manifest.clone(),
        )
        .await
        .unwrap();
    let by_digest = Reference::Digest(pushed.digest.clone());
    let record = dir
        .path()
        .join(layout::manifest(&repo, &pushed.digest).as_str());
    let intact = fs::read(&record).unwrap();
    let mut flipped = intact.clone();
    *flipped.last_mut().unwrap() ^= 0x20;
    for torn in [&b""[..], &intact[..intact.len() / 2], &flipped[..]] {
        // A crash (or a failed write) tears the record, which is created in place; the
        // tag's hard link keeps the previous file.
        fs::remove_file(&record).unwrap();
        fs::write(&record, torn).unwrap();
        assert!(matches!(
            d.get_manifest(&repo, &by_digest).await,
            Err(Error::ManifestUnknown(_))
        ));
        assert!(matches!(
            d.get_manifest(&repo, &Reference::Tag(tag.clone())).await,
            Err(Error::ManifestUnknown(_))
        ));
        assert!(matches!(
            d.tag_manifest(&repo, &Tag::parse("v2").unwrap(), &pushed.digest)
                .await,
            Err(Error::ManifestUnknown(_))
        ));
    }
    d.put_manifest(
        &repo,
        &by_digest,
        Some("application/vnd.oci.image.manifest.v1+json"),
        manifest.clone(),
    )
    .await
    .unwrap();
    let served = d.get_manifest(&repo, &Reference::Tag(tag)).await.unwrap();
    assert_eq!(served.bytes, manifest);
}

/// Volatile session records: a record from another boot, or one a crash left torn, is an
/// unknown session; a record of this boot resumes.
#[tokio::test]
async fn stale_or_torn_session_records_are_unknown() {
    if upload::boot_id().is_none() {
        // No boot id: sessions are durable, nothing volatile to check.
        eprintln!("no boot id on this system: durable mode, check not applicable");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let d = driver(dir.path()).await;
    let repo = RepositoryName::parse("a/b").unwrap();
    let up = d
        .start_upload(&repo, DigestAlgorithm::Sha256)
        .await
        .unwrap();
    let id = up.id();
    let chunk = stream::iter([Ok(Bytes::from_static(b"hello"))]);
    d.put_upload_chunk(&repo, &id, Some(0), None, chunk)
        .await
        .unwrap();
    assert_eq!(d.get_upload_progress(&repo, &id).await.unwrap().offset(), 5);
    let record = dir.path().join(layout::upload_state(&repo, &id).as_str());
    let text = fs::read_to_string(&record).unwrap();
    let boot = upload::boot_id().unwrap();
    assert!(text.contains(boot), "record carries the boot id: {text}");

    // Written before a reboot: unknown.
    fs::write(
        &record,
        text.replace(boot, "00000000-0000-0000-0000-000000000000"),
    )
    .unwrap();
    assert!(matches!(
        d.get_upload_progress(&repo, &id).await,
        Err(Error::BlobUploadUnknown(_))
    ));
    let chunk = stream::iter([Ok(Bytes::from_static(b"more"))]);
    assert!(matches!(
        d.put_upload_chunk(&repo, &id, Some(5), None, chunk).await,
        Err(Error::BlobUploadUnknown(_))
    ));
    // Torn by a crash (empty or cut short): unknown.
    for torn in [&b""[..], &text.as_bytes()[..text.len() / 2]] {
        fs::write(&record, torn).unwrap();
        assert!(matches!(
            d.get_upload_progress(&repo, &id).await,
            Err(Error::BlobUploadUnknown(_))
        ));
    }
    // Intact and of this boot: resumes where it was.
    fs::write(&record, &text).unwrap();
    assert_eq!(d.get_upload_progress(&repo, &id).await.unwrap().offset(), 5);
}
