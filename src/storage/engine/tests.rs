use futures::{StreamExt, stream};

use super::hashed_body::HASH_BATCH;
use super::*;
use crate::storage::backend::Operation;
use crate::storage::inmemory::InMemoryBackend;
use crate::storage::layers::{Fault, FaultInjection};
use crate::storage::layout::KeyClass;

/// The in-memory backend with injectable failures.
type Faulty = FaultInjection<InMemoryBackend>;

fn engine() -> Engine<Faulty> {
    Engine::new(Faulty::default(), EngineOptions::default())
}

fn body(data: &'static [u8]) -> impl Stream<Item = Result<Bytes>> + Send {
    stream::iter([Ok(Bytes::from_static(data))])
}

async fn content(e: &Engine<Faulty>, repo: &RepositoryName, digest: &Digest) -> Vec<u8> {
    let read = e.get_content(repo, digest, None).await.unwrap();
    let chunks: Vec<Result<Bytes>> = read.stream.collect().await;
    chunks
        .into_iter()
        .flat_map(|c| c.unwrap().to_vec())
        .collect()
}

const DATA: &[u8] = b"hello, resilient world";
/// Opens a sha256 upload session and appends `first` to it; returns its id.
async fn started<S>(e: &Engine<Faulty>, repo: &RepositoryName, first: S) -> UploadId
where
    S: Stream<Item = Result<Bytes>> + Send,
{
    let id = e
        .start_upload(repo, DigestAlgorithm::Sha256)
        .await
        .unwrap()
        .id();
    e.put_upload_chunk(repo, &id, Some(0), None, first)
        .await
        .unwrap();
    id
}

/// Bodies longer than a hash batch are hashed on the blocking pool in order: the digest
/// of a multi-batch body in uneven chunks is right, a wrong one is refused, and a chunked
/// upload's checkpoint covers exactly its bytes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn long_bodies_hash_in_order() {
    let e = engine();
    let repo = RepositoryName::parse("a/b").unwrap();
    let data: Vec<u8> = (0..3 * HASH_BATCH + 12345)
        .map(|i| (i * 31 % 251) as u8)
        .collect();
    let data = Bytes::from(data);
    let digest = Digest::compute(DigestAlgorithm::Sha256, &data);
    let chunks = |d: Bytes| {
        let mut out = Vec::new();
        let mut at = 0;
        let mut step = 1;
        while at < d.len() {
            let end = (at + step).min(d.len());
            out.push(Ok(d.slice(at..end)));
            at = end;
            step = step * 3 % 200_003 + 7;
        }
        stream::iter(out)
    };
    let info = e
        .put_content(
            &repo,
            &digest,
            Some(data.len() as u64),
            chunks(data.clone()),
        )
        .await
        .unwrap();
    assert_eq!(info.size, data.len() as u64);
    assert_eq!(content(&e, &repo, &digest).await, data.to_vec());
    let mut other = data.to_vec();
    other[2 * HASH_BATCH + 1] ^= 1;
    let other_digest = Digest::compute(DigestAlgorithm::Sha256, &other);
    assert!(matches!(
        e.put_content(&repo, &other_digest, None, chunks(data.clone()))
            .await,
        Err(Error::DigestInvalid(_))
    ));
    // Chunked: two long chunks, then finish.
    let cut = HASH_BATCH * 2 - 3;
    let id = started(&e, &repo, chunks(data.slice(..cut))).await;
    let info = e
        .finish_upload(&repo, &id, &digest, None, chunks(data.slice(cut..)))
        .await
        .unwrap();
    assert_eq!(info.size, data.len() as u64);
}

/// A commit whose response is lost (blob stored, error reported) finishes the upload.
#[tokio::test]
async fn finish_succeeds_when_commit_errs_after_storing() {
    let e = engine();
    let repo = RepositoryName::parse("a/b").unwrap();
    let digest = Digest::compute(DigestAlgorithm::Sha256, DATA);
    let id = started(&e, &repo, body(&DATA[..5])).await;
    // The blob is stored, then an error reported (a lost response).
    e.backend()
        .faults()
        .plan(Fault::after(Operation::FinishUpload));
    let info = e
        .finish_upload(&repo, &id, &digest, None, body(&DATA[5..]))
        .await
        .unwrap();
    assert_eq!(info.size, DATA.len() as u64);
    assert_eq!(content(&e, &repo, &digest).await, DATA);
    assert!(matches!(
        e.get_upload_progress(&repo, &id).await,
        Err(Error::BlobUploadUnknown(_))
    ));
}

/// Same for a monolithic put.
#[tokio::test]
async fn put_content_succeeds_when_commit_errs_after_storing() {
    let e = engine();
    let repo = RepositoryName::parse("a/b").unwrap();
    let digest = Digest::compute(DigestAlgorithm::Sha256, DATA);
    // The blob is stored, then an error reported (a lost response).
    e.backend()
        .faults()
        .plan(Fault::after(Operation::FinishUpload));
    e.put_content(&repo, &digest, None, body(DATA))
        .await
        .unwrap();
    assert_eq!(content(&e, &repo, &digest).await, DATA);
}

/// A finish that committed the blob but failed to link it can be retried: the retry must
/// not need the upload bytes the commit consumed.
#[tokio::test]
async fn finish_retry_after_link_failure() {
    let e = engine();
    let repo = RepositoryName::parse("a/b").unwrap();
    let digest = Digest::compute(DigestAlgorithm::Sha256, DATA);
    let id = started(&e, &repo, body(&DATA[..7])).await;
    // The next write of a repository link fails.
    e.backend()
        .faults()
        .plan(Fault::before(Operation::Write).class(KeyClass::Link));
    assert!(
        e.finish_upload(&repo, &id, &digest, None, body(&DATA[7..]))
            .await
            .is_err()
    );
    assert!(matches!(
        e.stat(&repo, &digest).await,
        Err(Error::BlobUnknown(_))
    ));
    let info = e
        .finish_upload(&repo, &id, &digest, None, body(&DATA[7..]))
        .await
        .unwrap();
    assert_eq!(info.size, DATA.len() as u64);
    assert_eq!(content(&e, &repo, &digest).await, DATA);
    // A retry with other bytes is still verified.
    let id = e
        .start_upload(&repo, DigestAlgorithm::Sha256)
        .await
        .unwrap()
        .id();
    assert!(matches!(
        e.finish_upload(&repo, &id, &digest, None, body(b"not the data"))
            .await,
        Err(Error::DigestInvalid(_))
    ));
}

/// The in-memory backend, logging which of `write` and `stage_record` stored each manifest
/// record and tag, in order.
#[derive(Debug, Default)]
struct RecordWrites {
    inner: InMemoryBackend,
    log: std::sync::Mutex<Vec<(&'static str, KeyClass)>>,
}

impl RecordWrites {
    fn note(&self, method: &'static str, key: &Key) {
        if matches!(key.class(), KeyClass::ManifestRecord | KeyClass::Tag) {
            self.log.lock().unwrap().push((method, key.class()));
        }
    }

    fn take(&self) -> Vec<(&'static str, KeyClass)> {
        std::mem::take(&mut *self.log.lock().unwrap())
    }
}

#[deny(clippy::missing_trait_methods)]
impl Backend for RecordWrites {
    crate::forward_backend!(inner: InMemoryBackend;
        NAME, Reader, UploadState, capabilities, locate, read, exists, remove, read_versioned,
        write_if_version, remove_if_version, list, any_under, blob_size, read_blob, put_blob,
        start_upload, append_upload, finish_upload, abort_upload, lock_upload, lock_tag);

    async fn write(&self, key: &Key, value: Bytes) -> Result<()> {
        self.note("write", key);
        self.inner.write(key, value).await
    }
    async fn stage_record(&self, key: &Key, value: Bytes) -> Result<()> {
        self.note("stage_record", key);
        self.inner.stage_record(key, value).await
    }
    async fn write_tag(
        &self,
        tag: &Key,
        target: crate::storage::backend::TagTarget<'_>,
    ) -> Result<()> {
        self.note("write_tag", tag);
        self.inner.write_tag(tag, target).await
    }
    async fn create_tag(
        &self,
        tag: &Key,
        target: crate::storage::backend::TagTarget<'_>,
    ) -> Result<bool> {
        self.note("create_tag", tag);
        self.inner.create_tag(tag, target).await
    }
}

/// A push by digest is acknowledged with its record, which is therefore written durably; a
/// push by tag stages its record (visible at once, its name made durable by the tag's write)
/// and writes the tag after it; tagging a stored manifest writes only the tag.
#[tokio::test]
async fn a_push_by_tag_stages_its_record_and_a_push_by_digest_writes_it() {
    let e = Engine::new(RecordWrites::default(), EngineOptions::default());
    let repo = RepositoryName::parse("a/b").unwrap();
    let config = Digest::compute(DigestAlgorithm::Sha256, b"{}");
    e.put_content(&repo, &config, None, body(b"{}"))
        .await
        .unwrap();
    let manifest = |n: u32| {
        Bytes::from(format!(
            r#"{{"schemaVersion":2,"mediaType":"{}","config":{{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"{config}","size":2}},"layers":[],"annotations":{{"n":"{n}"}}}}"#,
            crate::oci::media_types::OCI_MANIFEST
        ))
    };
    let put = |reference: Reference, bytes: Bytes| {
        let (e, repo) = (&e, &repo);
        async move {
            e.put_manifest(
                repo,
                &reference,
                Some(crate::oci::media_types::OCI_MANIFEST),
                bytes,
            )
            .await
            .unwrap()
            .digest
        }
    };
    let by_digest = manifest(1);
    let digest = Digest::compute(DigestAlgorithm::Sha256, &by_digest);
    put(Reference::Digest(digest.clone()), by_digest).await;
    assert_eq!(
        e.backend().take(),
        [("write", KeyClass::ManifestRecord)],
        "pushed by digest"
    );

    let latest = Tag::parse("latest").unwrap();
    let tagged = put(Reference::Tag(latest.clone()), manifest(2)).await;
    assert_eq!(
        e.backend().take(),
        [
            ("stage_record", KeyClass::ManifestRecord),
            ("write_tag", KeyClass::Tag)
        ],
        "pushed by tag"
    );
    let resolved = e.get_manifest(&repo, &Reference::Tag(latest.clone())).await;
    assert_eq!(resolved.unwrap().info.digest, tagged);

    e.tag_manifest(&repo, &latest, &digest).await.unwrap();
    assert_eq!(
        e.backend().take(),
        [("write_tag", KeyClass::Tag)],
        "a stored manifest tagged"
    );
    let resolved = e.get_manifest(&repo, &Reference::Tag(latest)).await;
    assert_eq!(resolved.unwrap().info.digest, digest);
}
