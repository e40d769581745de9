use futures::{StreamExt, stream};

use super::*;
use crate::error::ErrorChain;
use crate::oci::{DigestAlgorithm, RepositoryName, Tag};
use crate::storage::filesystem::FilesystemBackend;
use crate::storage::inmemory::InMemoryBackend;
use crate::storage::layout::{self, Key};

/// A filesystem backend whose tag `v1` of `a/b` cannot be read (a directory stands where
/// its file should be): a real failure of the storage, not a mock.
async fn unreadable_tag() -> (tempfile::TempDir, FilesystemBackend, Key) {
    let dir = tempfile::tempdir().unwrap();
    let backend = FilesystemBackend::open(dir.path()).await.unwrap();
    let repo = RepositoryName::parse("a/b").unwrap();
    let key = layout::tag(&repo, &Tag::parse("v1").unwrap());
    std::fs::create_dir_all(backend.root().join(key.as_str())).unwrap();
    (dir, backend, key)
}

/// The layer names the operation and the relative key of a failure; the root directory is
/// only in the error's sources, which a log prints.
#[tokio::test]
async fn errors_name_the_operation_and_the_relative_key_only() {
    let (_dir, backend, key) = unreadable_tag().await;
    let root = backend.root().display().to_string();
    let counts = OperationCounts::default();
    let layer = Instrumented::with_observer(backend, counts.clone());
    let err = layer.read(&key).await.unwrap_err();
    assert_eq!(err.backend_operation(), Some(Operation::Read));
    match &err {
        Error::Backend { key: Some(k), .. } => assert_eq!(k, &key),
        other => panic!("not a backend error with a key: {other:?}"),
    }
    let shown = err.to_string();
    assert!(shown.contains(key.as_str()), "{shown}");
    assert!(shown.contains("during read"), "{shown}");
    assert!(!shown.contains(&root), "the root leaks into {shown}");
    let logged = ErrorChain(&err).to_string();
    assert!(logged.contains(&root), "the log lacks the path: {logged}");
    assert_eq!(counts.get(Operation::Read, Outcome::Failed), 1);
    assert_eq!(counts.get(Operation::Read, Outcome::Ok), 0);
    // A read of a missing object succeeds; the count says so.
    let repo = RepositoryName::parse("a/b").unwrap();
    let missing = layout::tag(&repo, &Tag::parse("v2").unwrap());
    assert_eq!(layer.read(&missing).await.unwrap(), None);
    assert_eq!(counts.get(Operation::Read, Outcome::Ok), 1);
}

/// A context the backend set itself is kept.
#[test]
fn a_backend_s_own_context_is_kept() {
    let repo = RepositoryName::parse("a/b").unwrap();
    let own = layout::manifest(&repo, &Digest::compute(DigestAlgorithm::Sha256, b""));
    let err = Error::backend("x", "boom")
        .with_context(Operation::Write, || Some(own.clone()))
        .with_context(Operation::WriteTag, || panic!("not asked for a key it has"));
    assert_eq!(err.backend_operation(), Some(Operation::Write));
    assert!(err.to_string().contains(own.as_str()));
    // Errors of the spec carry no backend context.
    let unknown = Error::BlobUploadUnknown("x".into()).with_context(Operation::Read, || None);
    assert_eq!(unknown.backend_operation(), None);
}

/// The in-memory backend with a blob stream that fails after its first chunk.
#[derive(Debug, Default)]
struct BreaksMidStream(InMemoryBackend);

#[deny(clippy::missing_trait_methods)]
impl Backend for BreaksMidStream {
    crate::forward_backend!(0: InMemoryBackend;
        NAME, UploadState, capabilities, locate, read, exists, write, stage_record, remove,
        read_versioned, write_if_version, remove_if_version, list, any_under, write_tag, create_tag, blob_size,
        put_blob, start_upload, append_upload, finish_upload, abort_upload, lock_upload, lock_tag);
    type Reader = stream::Iter<std::vec::IntoIter<Result<Bytes>>>;

    async fn read_blob(&self, _: &Digest, _: Option<ByteRange>) -> Result<Self::Reader> {
        let broken = Error::Backend {
            driver: "inmemory",
            operation: None,
            key: None,
            message: "connection reset".into(),
            retryable: true,
            source: None,
        };
        Ok(stream::iter(vec![
            Ok(Bytes::from_static(b"x")),
            Err(broken),
        ]))
    }
}

/// An error of a blob stream is named `read_blob` and observed as such.
#[tokio::test]
async fn a_blob_stream_s_errors_name_their_operation() {
    let counts = OperationCounts::default();
    let layer = Instrumented::with_observer(BreaksMidStream::default(), counts.clone());
    let digest = Digest::compute(DigestAlgorithm::Sha256, b"x");
    let items: Vec<Result<Bytes>> = layer
        .read_blob(&digest, None)
        .await
        .unwrap()
        .collect()
        .await;
    let err = items[1].as_ref().unwrap_err();
    assert_eq!(err.backend_operation(), Some(Operation::ReadBlob));
    assert!(err.is_retryable());
    assert_eq!(counts.get(Operation::ReadBlob, Outcome::Ok), 1);
    assert_eq!(counts.get(Operation::ReadBlob, Outcome::Unavailable), 1);
}

/// With `DEBUG` enabled, every call is a `backend` span carrying the driver, the operation
/// and the key.
#[tokio::test]
async fn calls_are_spans() {
    use std::sync::{Arc, Mutex};

    use tracing::span::{Attributes, Id, Record};
    use tracing::{Event, Metadata, Subscriber};

    /// Collects the fields of `backend` spans.
    #[derive(Default)]
    struct Spans(Arc<Mutex<Vec<String>>>);
    struct Fields<'a>(&'a mut String);
    impl tracing::field::Visit for Fields<'_> {
        fn record_debug(&mut self, field: &tracing::field::Field, value: &dyn fmt::Debug) {
            self.0.push_str(&format!("{}={value:?} ", field.name()));
        }
        fn record_str(&mut self, field: &tracing::field::Field, value: &str) {
            self.0.push_str(&format!("{}={value} ", field.name()));
        }
    }
    impl Subscriber for Spans {
        fn enabled(&self, _: &Metadata<'_>) -> bool {
            true
        }
        fn new_span(&self, span: &Attributes<'_>) -> Id {
            let mut line = format!("{} ", span.metadata().name());
            span.record(&mut Fields(&mut line));
            let mut spans = self.0.lock().unwrap();
            spans.push(line);
            Id::from_u64(spans.len() as u64)
        }
        fn record(&self, id: &Id, values: &Record<'_>) {
            let mut spans = self.0.lock().unwrap();
            values.record(&mut Fields(&mut spans[id.into_u64() as usize - 1]));
        }
        fn record_follows_from(&self, _: &Id, _: &Id) {}
        fn event(&self, _: &Event<'_>) {}
        fn enter(&self, _: &Id) {}
        fn exit(&self, _: &Id) {}
    }

    let layer = Instrumented::new(InMemoryBackend::default());
    let repo = RepositoryName::parse("a/b").unwrap();
    let key = layout::tag(&repo, &Tag::parse("v1").unwrap());
    // The span's callsite caches, process-wide, whether any subscriber wants it. Register it
    // here, before this thread's subscriber exists, and have the interest computed again
    // once it does: otherwise another test's thread registering it at the same moment may
    // cache "nobody" (tracing-core computes it from the subscribers it knows of then).
    layer.read(&key).await.unwrap();
    let spans = Spans::default();
    let seen = Arc::clone(&spans.0);
    let _default = tracing::subscriber::set_default(spans);
    tracing::callsite::rebuild_interest_cache();
    layer.read(&key).await.unwrap();
    let seen = seen.lock().unwrap();
    assert_eq!(
        seen.as_slice(),
        [format!("backend driver=inmemory operation=read key={key} ")]
    );
}
