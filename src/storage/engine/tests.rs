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
