use futures::{StreamExt, stream};

use super::*;
use crate::oci::DigestAlgorithm;
use crate::storage::UploadId;
use crate::storage::inmemory::InMemoryBackend;
use crate::storage::layers::{Fault, FaultInjection};

type Flaky = Resumable<FaultInjection<InMemoryBackend>>;

/// A resumable in-memory backend with `blob` stored (in chunks of 4 bytes, so cuts fall
/// inside and between chunks), reopening after 1 ms.
async fn with_blob(blob: &[u8], budget: u32) -> (Flaky, Digest) {
    let backend = FaultInjection::new(InMemoryBackend::default());
    let digest = Digest::compute(DigestAlgorithm::Sha256, blob);
    let id = UploadId::generate();
    #[allow(clippy::let_unit_value)] // the in-memory backend's state is `()`
    let mut state = backend.start_upload(&id, None).await.unwrap();
    let chunks: Vec<Result<Bytes>> = blob
        .chunks(4)
        .map(|c| Ok(Bytes::copy_from_slice(c)))
        .collect();
    let len = backend
        .append_upload(&id, &mut state, 0, stream::iter(chunks))
        .await
        .unwrap();
    backend
        .finish_upload(&id, state, len, &digest)
        .await
        .unwrap();
    let layer = Resumable::new(backend).with_budget(budget, Duration::from_millis(1));
    (layer, digest)
}

/// Everything the stream yields: the bytes, and the error that ended it, if any.
async fn drain(
    reader: ResumableReader<FaultInjection<InMemoryBackend>>,
) -> (Vec<u8>, Option<Error>) {
    let mut reader = std::pin::pin!(reader);
    let mut bytes = Vec::new();
    while let Some(item) = reader.next().await {
        match item {
            Ok(chunk) => bytes.extend_from_slice(&chunk),
            Err(e) => {
                assert!(
                    reader.next().await.is_none(),
                    "the stream goes on after {e}"
                );
                return (bytes, Some(e));
            }
        }
    }
    (bytes, None)
}

const BLOB: &[u8] = b"0123456789abcdefghijklmnopqrstuvwxyz";

/// A stream cut midway (inside a chunk, at a chunk's end, after the last byte) is reopened
/// where it stopped: the caller gets every byte once, for whole and ranged reads.
#[tokio::test]
async fn a_cut_stream_resumes_where_it_stopped() {
    for cut in [1, 6, 8, 35, 36] {
        let (layer, digest) = with_blob(BLOB, 1).await;
        layer.faults().plan(Fault::cut_stream(cut));
        let (bytes, error) = drain(layer.read_blob(&digest, None).await.unwrap()).await;
        assert_eq!(
            (bytes.as_slice(), error.is_none()),
            (BLOB, true),
            "cut at {cut}"
        );
        assert_eq!(layer.faults().pending(), 0);

        let range = ByteRange { start: 3, end: 20 };
        layer.faults().plan(Fault::cut_stream(cut.min(10)));
        let (bytes, error) = drain(layer.read_blob(&digest, Some(range)).await.unwrap()).await;
        assert_eq!(&bytes, &BLOB[3..=20], "cut at {cut}: {error:?}");
        assert!(error.is_none());
    }
}

/// Interruptions beyond the budget end the read with a retryable error that names the
/// operation, the blob and how far it got; the bytes delivered are the blob's, in order.
#[tokio::test]
async fn interruptions_beyond_the_budget_end_the_read_retryably() {
    let (layer, digest) = with_blob(BLOB, 2).await;
    layer.faults().plan(Fault::cut_stream(5).times(10));
    let (bytes, error) = drain(layer.read_blob(&digest, None).await.unwrap()).await;
    let error = error.expect("the read must fail");
    assert_eq!(bytes, &BLOB[..15], "three reads of 5 bytes");
    assert!(error.is_retryable(), "{error}");
    assert_eq!(error.backend_operation(), Some(Operation::ReadBlob));
    let text = error.to_string();
    assert!(text.contains("cut 3 time(s); gave up at byte 15"), "{text}");
    assert!(text.contains(layout::blob_data(&digest).as_str()), "{text}");
}

/// A failure that retrying cannot help is not retried: a permanent error of the stream, or
/// of the reopen, ends the read with that error.
#[tokio::test]
async fn permanent_failures_are_not_retried() {
    let (layer, digest) = with_blob(BLOB, 5).await;
    layer.faults().plan(Fault::cut_stream(5).permanent());
    let (bytes, error) = drain(layer.read_blob(&digest, None).await.unwrap()).await;
    assert_eq!(bytes, &BLOB[..5]);
    assert!(!error.expect("fails").is_retryable());

    // Cut (retryably), then the reopen fails for good (the blob was deleted, say).
    layer.faults().plan(Fault::cut_stream(7));
    let reader = layer.read_blob(&digest, None).await.unwrap();
    layer.faults().plan(Fault::before(Operation::ReadBlob));
    let (bytes, error) = drain(reader).await;
    assert_eq!(bytes, &BLOB[..7]);
    let error = error.expect("fails");
    assert!(!error.is_retryable(), "{error}");
    assert_eq!(layer.faults().pending(), 0);
}

/// Nothing planned, nothing changed: reads pass through, and the reader keeps the digest
/// it reopens with exactly.
#[tokio::test]
async fn reads_pass_through_and_the_blob_id_round_trips() {
    let (layer, digest) = with_blob(BLOB, 0).await;
    let (bytes, error) = drain(layer.read_blob(&digest, None).await.unwrap()).await;
    assert_eq!((bytes.as_slice(), error.is_none()), (BLOB, true));
    for digest in [digest, Digest::compute(DigestAlgorithm::Sha512, BLOB)] {
        assert_eq!(BlobId::new(&digest).digest().unwrap(), digest);
    }
}
