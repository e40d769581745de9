//! Lifecycle checks the generic suite cannot make, on the storage itself: upload storage no
//! session owns (a crash between creating it and recording the session), sessions whose
//! bytes are gone, empty directories and stale temporary files on the filesystem, S3's
//! staged segments and multipart uploads, GCS's upload pieces.

mod common;

use common::sha256_digest;

use std::path::Path;
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use futures::stream;
use marina_distribution::oci::{DigestAlgorithm, Reference, RepositoryName};
use marina_distribution::storage::filesystem::FilesystemDriver;
use marina_distribution::storage::lifecycle::{GcOptions, Lifecycle};
use marina_distribution::storage::{EngineOptions, FilesystemConfig, UploadHandle, UploadId};
use marina_distribution::{Error, StorageDriver};

fn repo(name: &str) -> RepositoryName {
    RepositoryName::parse(name).unwrap()
}

fn body(
    data: &[u8],
) -> impl futures::Stream<Item = marina_distribution::Result<Bytes>> + Send + use<> {
    stream::iter([Ok(Bytes::copy_from_slice(data))])
}

/// A session in `r` holding the 4 bytes `live`: what expiry must keep.
async fn live_session<D: StorageDriver>(d: &D, r: &RepositoryName) -> UploadId {
    let live = d
        .start_upload(r, DigestAlgorithm::Sha256)
        .await
        .unwrap()
        .id();
    d.put_upload_chunk(r, &live, Some(0), None, body(b"live"))
        .await
        .unwrap();
    live
}

fn no_grace() -> GcOptions {
    GcOptions {
        dry_run: false,
        delete_untagged: false,
        grace: Duration::ZERO,
        upload_ttl: None,
        manifest_ttl: None,
    }
}

async fn fs_driver(root: &Path) -> FilesystemDriver {
    let config = FilesystemConfig {
        root_directory: root.to_path_buf(),
    };
    FilesystemDriver::open(&config, EngineOptions::default())
        .await
        .unwrap()
}

fn backdate(path: &Path, age: Duration) {
    let file = std::fs::File::options().write(true).open(path).unwrap();
    file.set_modified(SystemTime::now() - age).unwrap();
}

/// A session whose bytes are gone (what a crash used to leave when a finish had moved them
/// into `blobs/`, or an expiry racing a chunk): its next chunk is `BLOB_UPLOAD_UNKNOWN`, not a
/// server error; finishing it with the digest of a blob that is stored completes it.
#[tokio::test]
async fn fs_a_session_whose_bytes_are_gone_is_unknown_or_complete() {
    let dir = tempfile::tempdir().unwrap();
    let d = fs_driver(dir.path()).await;
    let r = repo("gone/bytes");
    for complete in [false, true] {
        let id = d
            .start_upload(&r, DigestAlgorithm::Sha256)
            .await
            .unwrap()
            .id();
        d.put_upload_chunk(&r, &id, Some(0), None, body(b"hello"))
            .await
            .unwrap();
        std::fs::remove_file(dir.path().join("uploads").join(id.as_str())).unwrap();
        let more = d
            .put_upload_chunk(&r, &id, Some(5), None, body(b" world"))
            .await;
        assert!(matches!(more, Err(Error::BlobUploadUnknown(_))), "{more:?}");
        if complete {
            // The blob the session was building is stored (its finish had committed it).
            d.put_content(
                &repo("gone/other"),
                &sha256_digest(b"hello"),
                None,
                body(b"hello"),
            )
            .await
            .unwrap();
            d.finish_upload(&r, &id, &sha256_digest(b"hello"), None, body(b""))
                .await
                .unwrap();
            d.stat(&r, &sha256_digest(b"hello")).await.unwrap();
        } else {
            let finished = d
                .finish_upload(
                    &r,
                    &id,
                    &sha256_digest(b"hello world"),
                    None,
                    body(b" world"),
                )
                .await;
            assert!(
                matches!(finished, Err(Error::BlobUploadUnknown(_))),
                "{finished:?}"
            );
        }
    }
}

/// Upload data files no session record names (a crash between writing a session's first
/// bytes and recording it) are released once older than the TTL; younger ones, and those of
/// live sessions, stay.
#[tokio::test]
async fn fs_orphaned_upload_data_expires_after_the_ttl() {
    let dir = tempfile::tempdir().unwrap();
    let d = fs_driver(dir.path()).await;
    let r = repo("orphans/fs");
    let live = live_session(&d, &r).await;
    let uploads = dir.path().join("uploads");
    let (old, young) = (UploadId::generate(), UploadId::generate());
    for id in [&old, &young] {
        std::fs::write(uploads.join(id.as_str()), b"orphaned bytes").unwrap();
    }
    backdate(&uploads.join(old.as_str()), Duration::from_secs(7200));
    backdate(&uploads.join(live.as_str()), Duration::from_secs(7200));
    let dry = d
        .expire_uploads(Duration::from_secs(3600), true)
        .await
        .unwrap();
    assert_eq!(dry.uploads, 1, "{dry:?}");
    assert!(uploads.join(old.as_str()).exists());
    let report = d
        .expire_uploads(Duration::from_secs(3600), false)
        .await
        .unwrap();
    assert_eq!(report.uploads, 1, "{report:?}");
    assert!(!uploads.join(old.as_str()).exists());
    assert!(uploads.join(young.as_str()).exists());
    // The live session's record is young: its (old) bytes stay and it continues.
    d.finish_upload(&r, &live, &sha256_digest(b"live!"), None, body(b"!"))
        .await
        .unwrap();
}

/// A collection removes the directories deletions left empty (the whole tree of a repository
/// that is gone) and temporary files a crash left, older than an hour; everything else stays.
#[tokio::test]
async fn fs_collections_remove_empty_directories_and_stale_temporary_files() {
    let dir = tempfile::tempdir().unwrap();
    let d = fs_driver(dir.path()).await;
    let (gone, kept) = (repo("tidy/gone/deep"), repo("tidy/kept"));
    let config = sha256_digest(b"{}");
    for r in [&gone, &kept] {
        d.put_content(r, &config, None, body(b"{}")).await.unwrap();
        let manifest = format!(
            r#"{{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"{config}","size":2}},"layers":[]}}"#
        );
        d.put_manifest(
            r,
            &Reference::Tag(marina_distribution::oci::Tag::parse("v1").unwrap()),
            Some("application/vnd.oci.image.manifest.v1+json"),
            Bytes::from(manifest),
        )
        .await
        .unwrap();
    }
    let gone_manifest = d
        .resolve_tag(&gone, &marina_distribution::oci::Tag::parse("v1").unwrap())
        .await
        .unwrap();
    d.delete_manifest(&gone, &gone_manifest).await.unwrap();
    let records = dir.path().join("repositories/tidy/kept/_manifests/sha256");
    let (stale, fresh) = (records.join(".tmp-x-1"), records.join(".tmp-x-2"));
    std::fs::write(&stale, b"torn").unwrap();
    std::fs::write(&fresh, b"in progress").unwrap();
    backdate(&stale, Duration::from_secs(7200));
    d.collect_garbage(&no_grace()).await.unwrap();
    assert!(!dir.path().join("repositories/tidy/gone").exists());
    assert!(!stale.exists());
    assert!(fresh.exists());
    assert!(records.is_dir());
    let listed = d.repositories(None, None).await.unwrap();
    assert_eq!(listed.repositories, ["tidy/kept"]);
    // The emptied repository can be pushed to again.
    d.put_content(&gone, &config, None, body(b"{}"))
        .await
        .unwrap();
}

/// On the filesystem a push intent is another name of its manifest's record (a hard link,
/// `_intents/t<milliseconds>-<random>`), so its file time is the record's: a collection
/// takes an intent's age from the time its name carries. An untagged manifest whose record
/// is two hours old but whose intent was just written is kept; once the intent's name is
/// two hours old too, the intent is a leftover, removed, and the manifest collected.
#[tokio::test]
async fn fs_an_intent_linked_to_an_old_record_is_as_young_as_its_name() {
    let dir = tempfile::tempdir().unwrap();
    let d = fs_driver(dir.path()).await;
    let r = repo("intents/linked");
    let config = sha256_digest(b"{}");
    d.put_content(&r, &config, None, body(b"{}")).await.unwrap();
    let manifest = format!(
        r#"{{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"{config}","size":2}},"layers":[]}}"#
    );
    let m = sha256_digest(manifest.as_bytes());
    d.put_manifest(
        &r,
        &Reference::Digest(m.clone()),
        Some("application/vnd.oci.image.manifest.v1+json"),
        Bytes::from(manifest),
    )
    .await
    .unwrap();
    let repo_dir = dir.path().join("repositories/intents/linked");
    let record = repo_dir.join("_manifests/sha256").join(m.hex());
    backdate(&record, Duration::from_secs(7200));
    let intents = repo_dir.join("_intents");
    std::fs::create_dir_all(&intents).unwrap();
    let named = |age: Duration| {
        let millis = (SystemTime::now() - age)
            .duration_since(SystemTime::UNIX_EPOCH)
            .unwrap()
            .as_millis();
        intents.join(format!("t{millis:x}-0123456789abcdef"))
    };
    let untagged = GcOptions {
        delete_untagged: true,
        ..no_grace()
    };

    let fresh = named(Duration::ZERO);
    std::fs::hard_link(&record, &fresh).unwrap();
    let report = d.collect_garbage(&untagged).await.unwrap();
    assert_eq!(report.manifests, 0, "{report:?}");
    assert!(fresh.exists(), "a live intent stays");
    d.get_manifest(&r, &Reference::Digest(m.clone()))
        .await
        .expect("the manifest a live intent names is kept");

    std::fs::remove_file(&fresh).unwrap();
    let leftover = named(Duration::from_secs(7200));
    std::fs::hard_link(&record, &leftover).unwrap();
    let report = d.collect_garbage(&untagged).await.unwrap();
    assert_eq!(report.manifests, 1, "{report:?}");
    assert!(!leftover.exists(), "a leftover intent is removed");
    assert!(matches!(
        d.get_manifest(&r, &Reference::Digest(m)).await,
        Err(Error::ManifestUnknown(_))
    ));
}

#[cfg(feature = "s3")]
mod s3 {
    use marina_distribution::storage::StorageConfig;
    use marina_distribution::storage::s3::S3Driver;

    use super::*;

    async fn driver(test: &str) -> Option<S3Driver> {
        let config: StorageConfig = common::s3_storage(&format!("lifecycle-storage/{test}"))?;
        common::ensure_bucket(&config).await;
        let mut s3 = config.s3.expect("an S3 configuration");
        // S3's smallest part: a 5 MiB chunk opens the multipart upload.
        s3.part_size = Some(5 * 1024 * 1024);
        Some(
            S3Driver::connect(&s3, EngineOptions::default())
                .await
                .unwrap(),
        )
    }

    async fn multipart_uploads(d: &S3Driver) -> Vec<String> {
        let b = d.backend();
        let out = b
            .client()
            .list_multipart_uploads()
            .bucket(b.bucket())
            .prefix(b.object_key_prefix())
            .send()
            .await
            .unwrap();
        out.uploads()
            .iter()
            .filter_map(|u| u.key().map(str::to_owned))
            .collect()
    }

    async fn objects_below(d: &S3Driver, sub: &str) -> Vec<String> {
        let b = d.backend();
        let out = b
            .client()
            .list_objects_v2()
            .bucket(b.bucket())
            .prefix(format!("{}{sub}", b.object_key_prefix()))
            .send()
            .await
            .unwrap();
        out.contents()
            .iter()
            .filter_map(|o| o.key().map(str::to_owned))
            .collect()
    }

    /// Storage no session owns: a multipart upload a monolithic push opened on a blob's key,
    /// one a chunked session opened on `uploads/<id>/data` before its record was written,
    /// and a staged segment without a session. Released once older than the TTL; a live
    /// session's are kept, and so are multipart uploads under the prefix that this layout
    /// never opens (another registry's, under a longer prefix on the same bucket).
    #[tokio::test]
    async fn s3_orphaned_multipart_uploads_and_staged_segments_expire() {
        let Some(d) = driver("orphans").await else {
            eprintln!("NOTE: S3_ENDPOINT is not set: skipped");
            return;
        };
        let b = d.backend();
        let prefix = b.object_key_prefix();
        let orphan = UploadId::generate();
        let keys = [
            format!(
                "{prefix}blobs/sha256/{}",
                sha256_digest(b"never finished").hex()
            ),
            format!("{prefix}uploads/{orphan}/data"),
        ];
        let foreign = [
            format!("{prefix}other/uploads/{orphan}/data"),
            format!("{prefix}other/blobs/sha256/{}", sha256_digest(b"x").hex()),
            format!("{prefix}uploads/{orphan}/not-data"),
        ];
        for key in keys.iter().chain(&foreign) {
            b.client()
                .create_multipart_upload()
                .bucket(b.bucket())
                .key(key)
                .send()
                .await
                .unwrap();
        }
        let staged = UploadId::generate();
        b.client()
            .put_object()
            .bucket(b.bucket())
            .key(format!(
                "{prefix}uploads/{staged}/staged-00000000000000000004-0000000000000001"
            ))
            .body(Bytes::from_static(b"left").into())
            .send()
            .await
            .unwrap();
        // Older than the TTL below, the live session younger (S3's times have a one-second
        // resolution, and the requests below take a while on a loaded machine).
        tokio::time::sleep(Duration::from_secs(5)).await;
        let r = repo("orphans/s3");
        let live = live_session(&d, &r).await;
        let ttl = Duration::from_secs(3);
        let dry = d.expire_uploads(ttl, true).await.unwrap();
        assert_eq!(dry.uploads, 3, "{dry:?}");
        assert_eq!(multipart_uploads(&d).await.len(), 5);
        let report = d.expire_uploads(ttl, false).await.unwrap();
        assert_eq!(report.uploads, 3, "{report:?}");
        assert_eq!(report.sessions, 0, "storage without a session: {report:?}");
        let mut left = multipart_uploads(&d).await;
        left.sort();
        let mut foreign = foreign.to_vec();
        foreign.sort();
        assert_eq!(left, foreign);
        let left = objects_below(&d, "uploads/").await;
        assert!(
            left.iter().all(|k| k.contains(live.as_str())),
            "left behind: {left:?}"
        );
        d.finish_upload(&r, &live, &sha256_digest(b"live!"), None, body(b"!"))
            .await
            .unwrap();
    }

    /// A session whose staged bytes or multipart upload are gone answers
    /// `BLOB_UPLOAD_UNKNOWN`, never a server error. (A chunk appended after lost staged
    /// bytes may still be accepted: appends do not read what is staged; the finish, which
    /// does, answers 404.)
    #[tokio::test]
    async fn s3_a_session_whose_bytes_are_gone_is_unknown() {
        let Some(d) = driver("gone").await else {
            eprintln!("NOTE: S3_ENDPOINT is not set: skipped");
            return;
        };
        let b = d.backend();
        let r = repo("gone/s3");
        for chunk_after in [false, true] {
            // Staged segments deleted.
            let id = d
                .start_upload(&r, DigestAlgorithm::Sha256)
                .await
                .unwrap()
                .id();
            d.put_upload_chunk(&r, &id, Some(0), None, body(b"staged"))
                .await
                .unwrap();
            for key in objects_below(&d, &format!("uploads/{id}/")).await {
                b.client()
                    .delete_object()
                    .bucket(b.bucket())
                    .key(key)
                    .send()
                    .await
                    .unwrap();
            }
            let mut content = b"staged".to_vec();
            if chunk_after {
                match d
                    .put_upload_chunk(&r, &id, Some(6), None, body(b" more"))
                    .await
                {
                    Ok(_) => content.extend_from_slice(b" more"),
                    Err(Error::BlobUploadUnknown(_)) => {}
                    Err(e) => panic!("a chunk after lost bytes: {e}"),
                }
            }
            let done = d
                .finish_upload(&r, &id, &sha256_digest(&content), None, body(b""))
                .await;
            assert!(matches!(done, Err(Error::BlobUploadUnknown(_))), "{done:?}");
        }
        // The multipart upload aborted.
        let part = vec![7u8; 5 * 1024 * 1024];
        let id = d
            .start_upload(&r, DigestAlgorithm::Sha256)
            .await
            .unwrap()
            .id();
        d.put_upload_chunk(&r, &id, Some(0), None, body(&part))
            .await
            .unwrap();
        let out = b
            .client()
            .list_multipart_uploads()
            .bucket(b.bucket())
            .prefix(format!("{}uploads/{id}/", b.object_key_prefix()))
            .send()
            .await
            .unwrap();
        for upload in out.uploads() {
            b.client()
                .abort_multipart_upload()
                .bucket(b.bucket())
                .key(upload.key().unwrap())
                .upload_id(upload.upload_id().unwrap())
                .send()
                .await
                .unwrap();
        }
        let more = d
            .put_upload_chunk(&r, &id, Some(part.len() as u64), None, body(&part))
            .await;
        assert!(matches!(more, Err(Error::BlobUploadUnknown(_))), "{more:?}");
    }
}

#[cfg(feature = "gcs")]
mod gcs {
    use marina_distribution::storage::GcsConfig;
    use marina_distribution::storage::gcs::GcsDriver;

    use super::*;
    use crate::common::gcs::{delete_object, driver, objects, put_object};

    async fn gcs_driver(test: &str) -> Option<(GcsDriver, GcsConfig)> {
        let config = common::gcs::config("lifecycle-storage", test)?;
        Some((driver(&config).await, config))
    }

    /// A piece no session owns (a crash between writing a chunk and recording the session)
    /// is released once older than the TTL; a live session's pieces are kept, and the
    /// session still finishes.
    #[tokio::test]
    async fn gcs_orphaned_pieces_expire() {
        let Some((d, config)) = gcs_driver("orphans").await else {
            eprintln!("NOTE: GCS_ENDPOINT is not set: skipped");
            return;
        };
        let orphan = UploadId::generate();
        let piece = format!("uploads/{orphan}/part-00000000000000000004-0000000000000001");
        put_object(&config, &piece, b"left").await;
        // Older than the TTL below, the live session younger (a loaded machine is slow).
        tokio::time::sleep(Duration::from_secs(5)).await;
        let r = repo("orphans/gcs");
        let live = live_session(&d, &r).await;
        let ttl = Duration::from_secs(3);
        let dry = d.expire_uploads(ttl, true).await.unwrap();
        assert_eq!(dry.uploads, 1, "{dry:?}");
        assert!(objects(&config, "uploads/").await.contains(&piece));
        let report = d.expire_uploads(ttl, false).await.unwrap();
        assert_eq!(report.uploads, 1, "{report:?}");
        let left = objects(&config, "uploads/").await;
        assert!(
            !left.is_empty() && left.iter().all(|k| k.contains(live.as_str())),
            "left behind: {left:?}"
        );
        d.finish_upload(&r, &live, &sha256_digest(b"live!"), None, body(b"!"))
            .await
            .unwrap();
        assert_eq!(objects(&config, "uploads/").await, Vec::<String>::new());
    }

    /// A session whose pieces are gone answers `BLOB_UPLOAD_UNKNOWN` when it is finished,
    /// never a server error, and stores nothing.
    #[tokio::test]
    async fn gcs_a_session_whose_pieces_are_gone_is_unknown() {
        let Some((d, config)) = gcs_driver("gone").await else {
            eprintln!("NOTE: GCS_ENDPOINT is not set: skipped");
            return;
        };
        let r = repo("gone/gcs");
        let id = d
            .start_upload(&r, DigestAlgorithm::Sha256)
            .await
            .unwrap()
            .id();
        for chunk in [&b"first"[..], b" second"] {
            let at = d.get_upload_progress(&r, &id).await.unwrap().offset();
            d.put_upload_chunk(&r, &id, Some(at), None, body(chunk))
                .await
                .unwrap();
        }
        let pieces = objects(&config, &format!("uploads/{id}/")).await;
        assert!(!pieces.is_empty());
        for piece in &pieces {
            delete_object(&config, piece).await;
        }
        let done = d
            .finish_upload(&r, &id, &sha256_digest(b"first second"), None, body(b""))
            .await;
        assert!(matches!(done, Err(Error::BlobUploadUnknown(_))), "{done:?}");
        assert!(objects(&config, "blobs/").await.is_empty());
    }
}
