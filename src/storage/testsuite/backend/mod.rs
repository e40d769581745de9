//! The contract suite of [`Backend`] itself: one case per clause of the contract documented
//! on the trait, run against a backend (or a stack of layers over one) directly, below the
//! engine. The behaviour suite (the parent module) checks backends only through the OCI
//! operations of the [`Engine`](crate::storage::Engine), which hides a broken clause the
//! engine happens not to rely on today; this one names the clause that broke.
//!
//! Like the behaviour suite: a [`BackendFactory`] opens backends on fresh storage (and a
//! second instance on the same storage, for persistent ones); [`run_all`] runs every case
//! and panics naming the failures; [`for_each_backend_contract_case!`] hands the case names
//! to a macro of the caller's to generate one test per case (see
//! `tests/backend_contract.rs`, which runs it on every backend and every layer).
//!
//! [`for_each_backend_contract_case!`]: crate::for_each_backend_contract_case

mod blobs;
mod listing;
mod objects;
mod tags;
mod uploads;

use std::future::Future;
use std::sync::Arc;

use bytes::Bytes;
use futures::StreamExt;

use crate::error::Result;
use crate::oci::{ByteRange, Digest, RepositoryName};
use crate::storage::UploadId;
use crate::storage::backend::Backend;

pub use blobs::*;
pub use listing::*;
pub use objects::*;
pub use tags::*;
pub use uploads::*;

use super::{Body, body, ok};

/// Opens backends for the contract suite; see [`DriverFactory`](super::DriverFactory), its
/// counterpart for drivers.
pub trait BackendFactory: Send + Sync {
    /// The backend (or stack of layers) under test.
    type Backend: Backend;
    /// A handle on one isolated storage area, kept alive for the whole case.
    type Storage: Send + Sync;

    /// Creates a fresh, empty storage area.
    fn create_storage(&self) -> impl Future<Output = Result<Self::Storage>> + Send;

    /// Opens a backend on `storage`; a second call for the same storage returns a new
    /// instance sharing nothing in memory with the first (a restarted process).
    fn open(&self, storage: &Self::Storage) -> impl Future<Output = Result<Self::Backend>> + Send;

    /// Whether a second [`open`](Self::open) on the same storage sees the first's data.
    fn persistent(&self) -> bool;
}

/// Lists every case of the contract suite, like
/// [`for_each_behaviour_case!`](crate::for_each_behaviour_case): expands to
/// `my_macro!(args...; case, ...; reopen: case, ...)`, the second list needing a persistent
/// [`BackendFactory`]. Each name is a function of
/// [`storage::testsuite::backend`](crate::storage::testsuite::backend).
#[macro_export]
macro_rules! for_each_backend_contract_case {
    ($callback:ident ! ( $($args:tt)* )) => {
        $callback! {
            $($args)*;
            // clause 1
            contract_objects,
            // clause 2
            contract_atomic_writes,
            // clause 4
            contract_listing,
            contract_listing_pages,
            // clause 5
            contract_tags,
            // clause 6
            contract_blobs,
            // clause 7
            contract_upload_invisible_until_finished,
            contract_append_discards_beyond_offset,
            contract_failed_append_keeps_previous_state,
            contract_finish_keeps_a_stored_blob,
            contract_abort_releases,
            contract_upload_to_a_known_digest;
            reopen:
            // clause 3
            contract_durable_writes,
            // clause 7
            contract_upload_state_continues_elsewhere
        }
    };
}

/// Runs every case against the backends of `factory` (the cases needing a second instance
/// only if it is persistent), and panics naming every case that failed.
pub async fn run_all<F: BackendFactory>(factory: &F) {
    macro_rules! run {
        (; $($case:ident),* ; reopen: $($reopen:ident),*) => {{
            let mut failed = Vec::new();
            $( super::run_one("contract", stringify!($case), &mut failed, $case(factory)).await; )*
            if factory.persistent() {
                $(
                    super::run_one("contract", stringify!($reopen), &mut failed, $reopen(factory))
                        .await;
                )*
            }
            failed
        }};
    }
    let failed: Vec<String> = for_each_backend_contract_case!(run!());
    if !failed.is_empty() {
        panic!(
            "{} contract case(s) failed:\n{}",
            failed.len(),
            failed.join("\n")
        );
    }
}

// ---------------------------------------------------------------------------------------------
// Helpers shared by the cases.
// ---------------------------------------------------------------------------------------------

/// One case's storage and backend.
pub(crate) struct Setup<'f, F: BackendFactory> {
    factory: &'f F,
    storage: F::Storage,
    /// The backend (shared with spawned tasks in concurrency cases).
    pub(crate) b: Arc<F::Backend>,
}

impl<'f, F: BackendFactory> Setup<'f, F> {
    pub(crate) async fn new(factory: &'f F) -> Self {
        let storage = factory
            .create_storage()
            .await
            .unwrap_or_else(|e| panic!("factory could not create storage: {e}"));
        let b = factory
            .open(&storage)
            .await
            .unwrap_or_else(|e| panic!("factory could not open a backend: {e}"));
        Self {
            factory,
            storage,
            b: Arc::new(b),
        }
    }

    /// A second, independent backend instance on the same storage.
    pub(crate) async fn second_instance(&self) -> F::Backend {
        assert!(
            self.factory.persistent(),
            "this case needs a persistent factory"
        );
        self.factory
            .open(&self.storage)
            .await
            .unwrap_or_else(|e| panic!("factory could not open a second backend: {e}"))
    }
}

pub(crate) fn repo(name: &str) -> RepositoryName {
    RepositoryName::parse(name).expect("valid test repository name")
}

/// Stores `content` as a blob through an upload (start, one append, finish); returns its
/// digest.
pub(crate) async fn store_blob<B: Backend>(b: &B, content: &[u8]) -> Digest {
    let digest = super::sha256(content);
    let id = UploadId::generate();
    let mut state = ok!(b.start_upload(&id, None).await);
    let appended = ok!(b.append_upload(&id, &mut state, 0, body(content)).await);
    assert_eq!(appended, content.len() as u64, "append_upload's count");
    ok!(b.finish_upload(&id, state, appended, &digest).await);
    digest
}

/// Reads a blob (or a range of it) to the end.
pub(crate) async fn read_blob<B: Backend>(
    b: &B,
    digest: &Digest,
    range: Option<ByteRange>,
) -> Result<Vec<u8>> {
    let stream = b.read_blob(digest, range).await?;
    let mut stream = std::pin::pin!(stream);
    let mut out = Vec::new();
    while let Some(chunk) = stream.next().await {
        out.extend_from_slice(&chunk?);
    }
    Ok(out)
}

/// Bytes in one chunk.
pub(crate) fn bytes(data: &[u8]) -> Bytes {
    Bytes::copy_from_slice(data)
}

/// A body of `data` in chunks of `size` bytes.
pub(crate) fn chunks(data: &[u8], size: usize) -> Body {
    super::chunked(data, size)
}
