//! Filesystem-specific tests of the filesystem driver: what the generic behaviour suite
//! cannot see because it only uses the trait — files on disk, temporary files, a second
//! driver instance on the same root, failed appends, symbolic links planted below the root.

use std::path::{Path, PathBuf};

use bytes::Bytes;
use futures::{Stream, StreamExt, stream};
use marina_distribution::oci::{Digest, DigestAlgorithm, Reference, RepositoryName, Tag};
use marina_distribution::storage::filesystem::{FilesystemDriver, READ_CHUNK, WRITE_BATCH};
use marina_distribution::storage::{EngineOptions, FilesystemConfig, UploadHandle};
use marina_distribution::{Error, StorageDriver};

async fn open(root: &Path) -> FilesystemDriver {
    FilesystemDriver::open(
        &FilesystemConfig {
            root_directory: root.to_path_buf(),
        },
        EngineOptions::default(),
    )
    .await
    .expect("open filesystem driver")
}

fn repo(name: &str) -> RepositoryName {
    RepositoryName::parse(name).unwrap()
}

/// Where the driver keeps tag `tag` of repository `name`: beside the repository's sha256
/// manifest records, so that a tagged push syncs one directory (see the README).
fn tag_file(root: &Path, name: &str, tag: &str) -> PathBuf {
    root.join("repositories")
        .join(name.replace('/', std::path::MAIN_SEPARATOR_STR))
        .join("_manifests")
        .join("sha256")
        .join(format!("tag-{tag}"))
}

fn sha256(data: &[u8]) -> Digest {
    Digest::compute(DigestAlgorithm::Sha256, data)
}

/// Deterministic, non-repeating-looking test bytes.
fn pattern(len: usize, seed: u8) -> Vec<u8> {
    (0..len)
        .map(|i| ((i as u32).wrapping_mul(2_654_435_761) >> 13) as u8 ^ seed)
        .collect()
}

/// A body of `data` cut into chunks of `chunk` bytes.
fn body(
    data: &[u8],
    chunk: usize,
) -> impl Stream<Item = marina_distribution::Result<Bytes>> + Send + use<> {
    let chunks: Vec<_> = data
        .chunks(chunk.max(1))
        .map(|c| Ok(Bytes::copy_from_slice(c)))
        .collect();
    stream::iter(chunks)
}

/// A body that yields `data` and then fails, like a client disconnecting mid-request.
fn failing_body(
    data: &[u8],
    chunk: usize,
) -> impl Stream<Item = marina_distribution::Result<Bytes>> + Send + use<> {
    body(data, chunk).chain(stream::iter([Err(Error::BlobUploadInvalid(
        "client went away".into(),
    ))]))
}

async fn read_all(driver: &FilesystemDriver, repo: &RepositoryName, digest: &Digest) -> Vec<u8> {
    let read = driver.get_content(repo, digest, None).await.unwrap();
    let mut stream = read.stream;
    let mut out = Vec::new();
    while let Some(chunk) = stream.next().await {
        out.extend_from_slice(&chunk.unwrap());
    }
    out
}

/// Every regular file (and symbolic link) below `dir`, recursively.
fn files_under(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let Ok(entries) = std::fs::read_dir(dir) else {
        return out;
    };
    for entry in entries {
        let entry = entry.unwrap();
        let kind = entry.file_type().unwrap();
        if kind.is_dir() {
            out.extend(files_under(&entry.path()));
        } else {
            out.push(entry.path());
        }
    }
    out
}

fn temp_files(root: &Path) -> Vec<PathBuf> {
    files_under(root)
        .into_iter()
        .filter(|p| p.file_name().unwrap().to_string_lossy().starts_with('.'))
        .collect()
}

#[tokio::test]
async fn second_instance_continues_an_upload() {
    let dir = tempfile::tempdir().unwrap();
    let r = repo("library/resume");
    let data = pattern(3 * WRITE_BATCH + 12_345, 7);
    let (first, second) = data.split_at(WRITE_BATCH + 999);

    let id = {
        let a = open(dir.path()).await;
        let up = a.start_upload(&r, DigestAlgorithm::Sha256).await.unwrap();
        let up = a
            .put_upload_chunk(
                &r,
                &up.id(),
                Some(0),
                Some(first.len() as u64),
                body(first, 65_536),
            )
            .await
            .unwrap();
        assert_eq!(up.offset(), first.len() as u64);
        up.id()
    }; // first instance dropped: nothing of the upload lives in its memory

    let b = open(dir.path()).await;
    let progress = b.get_upload_progress(&r, &id).await.unwrap();
    assert_eq!(progress.offset(), first.len() as u64);
    // The hash state continues: the final digest covers bytes received by both instances.
    let info = b
        .finish_upload(&r, &id, &sha256(&data), None, body(second, 100_000))
        .await
        .unwrap();
    assert_eq!(info.size, data.len() as u64);
    assert_eq!(read_all(&b, &r, &sha256(&data)).await, data);
    // And a third instance sees the blob.
    let c = open(dir.path()).await;
    assert_eq!(
        c.stat(&r, &sha256(&data)).await.unwrap().size,
        data.len() as u64
    );
    assert!(files_under(&dir.path().join("uploads")).is_empty());
}

#[tokio::test]
async fn failed_append_leaves_the_upload_resumable_at_the_old_offset() {
    let dir = tempfile::tempdir().unwrap();
    let driver = open(dir.path()).await;
    let r = repo("flaky");
    let head = pattern(5000, 1);
    let tail = pattern(2 * WRITE_BATCH + 77, 2);
    let junk = pattern(3 * WRITE_BATCH + 5, 3);

    let up = driver
        .start_upload(&r, DigestAlgorithm::Sha256)
        .await
        .unwrap();
    let id = up.id();
    driver
        .put_upload_chunk(&r, &id, Some(0), None, body(&head, 1000))
        .await
        .unwrap();

    // Several batches reach the disk before the body fails.
    let err = driver
        .put_upload_chunk(
            &r,
            &id,
            Some(head.len() as u64),
            None,
            failing_body(&junk, 256 * 1024),
        )
        .await
        .unwrap_err();
    assert!(matches!(err, Error::BlobUploadInvalid(_)), "{err:?}");
    let data_file = dir.path().join("uploads").join(id.as_str());
    assert!(
        std::fs::metadata(&data_file).unwrap().len() > head.len() as u64,
        "the failed append should have written some bytes (otherwise this test tests nothing)"
    );

    // A fresh instance (as after a restart) still sees the old offset...
    let other = open(dir.path()).await;
    assert_eq!(
        other.get_upload_progress(&r, &id).await.unwrap().offset(),
        head.len() as u64
    );
    // ...and continuing there discards the junk, for the bytes and for the hash.
    let up = other
        .put_upload_chunk(&r, &id, Some(head.len() as u64), None, body(&tail, 4096))
        .await
        .unwrap();
    assert_eq!(up.offset(), (head.len() + tail.len()) as u64);
    let whole = [head.as_slice(), tail.as_slice()].concat();
    // The data file holds exactly the acknowledged bytes: the junk tail was cut off.
    assert_eq!(std::fs::read(&data_file).unwrap(), whole);
    driver
        .finish_upload(&r, &id, &sha256(&whole), None, stream::empty())
        .await
        .unwrap();
    assert_eq!(read_all(&driver, &r, &sha256(&whole)).await, whole);
    let blob = dir.path().join("blobs/sha256").join(sha256(&whole).hex());
    assert_eq!(std::fs::read(blob).unwrap(), whole);
}

#[tokio::test]
async fn a_crash_leftover_beyond_the_offset_is_discarded() {
    // As if the process died after writing a chunk but before recording the new offset.
    let dir = tempfile::tempdir().unwrap();
    let driver = open(dir.path()).await;
    let r = repo("crashy");
    let up = driver
        .start_upload(&r, DigestAlgorithm::Sha256)
        .await
        .unwrap();
    driver
        .put_upload_chunk(&r, &up.id(), Some(0), None, body(b"hello ", 2))
        .await
        .unwrap();
    let data_file = dir.path().join("uploads").join(up.id().as_str());
    let mut on_disk = std::fs::read(&data_file).unwrap();
    assert_eq!(on_disk, b"hello ");
    on_disk.extend_from_slice(b"GARBAGE THAT WAS NEVER ACKNOWLEDGED");
    std::fs::write(&data_file, &on_disk).unwrap();

    let fresh = open(dir.path()).await;
    fresh
        .put_upload_chunk(&r, &up.id(), Some(6), None, body(b"wor", 5))
        .await
        .unwrap();
    assert_eq!(std::fs::read(&data_file).unwrap(), b"hello wor");
    fresh
        .finish_upload(&r, &up.id(), &sha256(b"hello world"), None, body(b"ld", 5))
        .await
        .unwrap();
    assert_eq!(
        read_all(&fresh, &r, &sha256(b"hello world")).await,
        b"hello world"
    );
}

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
    // No upload state, link or anything else either.
    assert_eq!(files_under(dir.path()), Vec::<PathBuf>::new());
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
async fn reads_stream_in_bounded_chunks_and_honour_ranges() {
    let dir = tempfile::tempdir().unwrap();
    let driver = open(dir.path()).await;
    let r = repo("ranges");
    let data = pattern(3 * READ_CHUNK + 1234, 5);
    let digest = sha256(&data);
    driver
        .put_content(&r, &digest, Some(data.len() as u64), body(&data, 1 << 20))
        .await
        .unwrap();

    let read = driver.get_content(&r, &digest, None).await.unwrap();
    let chunks: Vec<Bytes> = read.stream.map(Result::unwrap).collect().await;
    assert!(
        chunks.len() >= 4,
        "a {} byte blob came in {} chunks",
        data.len(),
        chunks.len()
    );
    assert!(chunks.iter().all(|c| c.len() <= READ_CHUNK));
    assert_eq!(chunks.concat(), data);

    // A range across chunk boundaries, an open range and a suffix range.
    for (header, expected) in [
        (
            format!("bytes={}-{}", READ_CHUNK - 5, 2 * READ_CHUNK + 7),
            &data[READ_CHUNK - 5..=2 * READ_CHUNK + 7],
        ),
        (
            format!("bytes={}-", data.len() - 10),
            &data[data.len() - 10..],
        ),
        ("bytes=-3".to_owned(), &data[data.len() - 3..]),
        ("bytes=0-0".to_owned(), &data[..1]),
    ] {
        let range = marina_distribution::oci::RangeRequest::parse_header(&header).unwrap();
        let read = driver.get_content(&r, &digest, Some(range)).await.unwrap();
        let got: Vec<Bytes> = read.stream.map(Result::unwrap).collect().await;
        assert_eq!(got.concat(), expected, "{header}");
    }
}

#[tokio::test]
async fn deeply_nested_repository_names_work() {
    let dir = tempfile::tempdir().unwrap();
    let driver = open(dir.path()).await;
    let name: String = (0..40)
        .map(|i| format!("n{i}"))
        .collect::<Vec<_>>()
        .join("/");
    let r = repo(&name);
    let config = Bytes::from_static(b"{}");
    let config_digest = sha256(&config);
    driver
        .put_content(&r, &config_digest, None, stream::iter([Ok(config)]))
        .await
        .unwrap();
    let manifest = format!(
        r#"{{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{{"mediaType":"application/vnd.oci.empty.v1+json","digest":"{config_digest}","size":2}},"layers":[]}}"#
    );
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
    let config = Bytes::from_static(b"{}");
    let config_digest = sha256(&config);
    driver
        .put_content(&r, &config_digest, None, stream::iter([Ok(config)]))
        .await
        .unwrap();
    let victim = outside.path().join("victim");
    std::fs::write(&victim, b"precious").unwrap();
    let tag_file = tag_file(&root, "tagged", "latest");
    std::fs::create_dir_all(tag_file.parent().unwrap()).unwrap();
    symlink(&victim, &tag_file).unwrap();
    let manifest = format!(
        r#"{{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{{"mediaType":"application/vnd.oci.empty.v1+json","digest":"{config_digest}","size":2}},"layers":[]}}"#
    );
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

#[tokio::test]
async fn leftover_temporary_files_are_invisible() {
    // A crash in the middle of a write leaves a temporary file beside the target.
    let dir = tempfile::tempdir().unwrap();
    let driver = open(dir.path()).await;
    let r = repo("leftovers");
    let config = Bytes::from_static(b"{}");
    let config_digest = sha256(&config);
    driver
        .put_content(&r, &config_digest, None, stream::iter([Ok(config)]))
        .await
        .unwrap();
    let manifest = format!(
        r#"{{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{{"mediaType":"application/vnd.oci.empty.v1+json","digest":"{config_digest}","size":2}},"layers":[]}}"#
    );
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
    // A file where the root should be is a clear error, not a panic.
    let file = dir.path().join("file");
    std::fs::write(&file, b"x").unwrap();
    let err = FilesystemDriver::open(
        &FilesystemConfig {
            root_directory: file,
        },
        EngineOptions::default(),
    )
    .await
    .unwrap_err();
    assert!(matches!(err, Error::Backend { .. }), "{err:?}");
}

#[tokio::test]
async fn an_abandoned_append_does_not_corrupt_the_retry() {
    // A client disconnects mid-chunk: the registry drops the request's future while batch
    // writes may still be running, and the client retries at the old offset right away.
    let dir = tempfile::tempdir().unwrap();
    let driver = open(dir.path()).await;
    let r = repo("abandoned");
    let head = pattern(1000, 11);
    let junk = pattern(3 * WRITE_BATCH + 5, 12);
    let retry = pattern(4 * WRITE_BATCH + 9, 13);
    let up = driver
        .start_upload(&r, DigestAlgorithm::Sha256)
        .await
        .unwrap();
    let id = up.id();
    driver
        .put_upload_chunk(&r, &id, Some(0), None, body(&head, 1000))
        .await
        .unwrap();

    let (stalled_tx, stalled_rx) = tokio::sync::oneshot::channel::<()>();
    let stalling = body(&junk, 256 * 1024).chain(stream::once(async move {
        let _ = stalled_tx.send(());
        futures::future::pending::<marina_distribution::Result<Bytes>>().await
    }));
    {
        let append = driver.put_upload_chunk(&r, &id, Some(head.len() as u64), None, stalling);
        tokio::select! {
            result = append => panic!("a body that never ends cannot complete: {result:?}"),
            _ = stalled_rx => {} // the body is stuck: drop the request
        }
    }
    assert_eq!(
        driver.get_upload_progress(&r, &id).await.unwrap().offset(),
        head.len() as u64
    );
    driver
        .put_upload_chunk(
            &r,
            &id,
            Some(head.len() as u64),
            None,
            body(&retry, 128 * 1024),
        )
        .await
        .unwrap();
    let whole = [head.as_slice(), retry.as_slice()].concat();
    let data_file = dir.path().join("uploads").join(id.as_str());
    assert_eq!(std::fs::read(&data_file).unwrap(), whole);
    driver
        .finish_upload(&r, &id, &sha256(&whole), None, stream::empty())
        .await
        .unwrap();
    assert_eq!(read_all(&driver, &r, &sha256(&whole)).await, whole);
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
