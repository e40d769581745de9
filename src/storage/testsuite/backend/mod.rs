//! The contract suite of [`Backend`] itself: one case per clause of the contract documented
//! on the trait, run against a backend (or a stack of layers over one) directly, below the
//! engine. The behaviour suite (the parent module) checks backends only through the OCI
//! operations of the [`Engine`](crate::storage::Engine), which hides a broken clause the
//! engine happens not to rely on today; this one names the clause that broke.
//!
//! Like the behaviour suite: a [`BackendFactory`] (a [`Factory`] of backends) opens backends
//! on fresh storage (and a second instance on the same storage, for persistent ones);
//! [`run_all`] runs every case and panics naming the failures;
//! [`for_each_backend_contract_case!`] hands the case names to a macro of the caller's to
//! generate one test per case (see `tests/backend_contract.rs`, which runs it on every
//! backend and every layer).
//!
//! [`for_each_backend_contract_case!`]: crate::for_each_backend_contract_case

mod blobs;
mod listing;
mod objects;
mod tags;
mod uploads;

use bytes::Bytes;
use futures::StreamExt;

use crate::error::Result;
use crate::oci::{ByteRange, Digest};
use crate::storage::UploadId;
use crate::storage::backend::Backend;

pub use blobs::*;
pub use listing::*;
pub use objects::*;
pub use tags::*;
pub use uploads::*;

use super::{Body, Factory, body, ok, run_cases};
pub(crate) use super::{Setup, repo};

/// A [`Factory`] of backends (or stacks of layers over one): what the contract suite runs
/// against. Implemented for every such factory; implement [`Factory`].
pub trait BackendFactory: Factory<Instance: Backend> {}

impl<F: Factory<Instance: Backend>> BackendFactory for F {}

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
            contract_create_tag,
            // clause 6
            contract_blobs,
            contract_put_blob,
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
            // clause 5
            contract_create_tag_once_across_instances,
            // clause 7
            contract_upload_state_continues_elsewhere
        }
    };
}

/// Runs every case against the backends of `factory` (the cases needing a second instance
/// only if it is persistent), and panics naming every case that failed.
pub async fn run_all<F: BackendFactory>(factory: &F) {
    for_each_backend_contract_case!(run_cases!("contract", factory));
}

// ---------------------------------------------------------------------------------------------
// Helpers shared by the cases.
// ---------------------------------------------------------------------------------------------

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
