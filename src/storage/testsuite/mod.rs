//! The behaviour suite every driver must pass (issue 2, point 9).
//!
//! A set of generic `async` cases over any [`StorageDriver`], public behind the `testsuite`
//! feature so that drivers living outside this crate can run it too. A driver is handed to the
//! suite through a [`DriverFactory`] (a [`Factory`] of drivers), which opens a driver on
//! fresh, isolated storage and, for persistent backends, a *second* driver instance on the
//! same storage (a restarted process), used to check that upload sessions resume across
//! processes.
//!
//! Two ways to run it:
//!
//! - [`run_all`] runs every case in turn and panics at the end naming every case that failed;
//! - [`for_each_behaviour_case!`](crate::for_each_behaviour_case) hands the list of case names
//!   to a macro of yours, to generate one `#[tokio::test]` per case (see `tests/behaviour.rs`),
//!   so that a failure names the exact driver and case.
//!
//! The suite assumes nothing about a driver beyond the [`StorageDriver`] contract, except that
//! the factory's drivers enforce [`DriverFactory::max_manifest_size`].
//!
//! A third-party driver enables the `testsuite` feature in its dev-dependencies and writes a
//! factory (its [`Factory`] half is what the contract suite of
//! [`Backend`](crate::storage::backend::Backend) takes too, for a factory of backends):
//!
//! ```no_run
//! use marina_distribution::storage::Engine;
//! use marina_distribution::storage::inmemory::InMemoryDriver;
//! use marina_distribution::storage::testsuite::{self, DriverFactory, Factory};
//!
//! struct MyFactory;
//!
//! impl Factory for MyFactory {
//!     type Instance = InMemoryDriver; // your driver
//!     type Storage = (); // e.g. a temporary directory or a bucket prefix
//!
//!     async fn create_storage(&self) -> marina_distribution::Result<()> {
//!         Ok(())
//!     }
//!     async fn open(&self, _: &()) -> marina_distribution::Result<InMemoryDriver> {
//!         Ok(InMemoryDriver::new_in_memory())
//!     }
//!     fn persistent(&self) -> bool {
//!         false // true if a second `open` on the same storage sees the first one's data
//!     }
//! }
//!
//! impl DriverFactory for MyFactory {
//!     async fn open_configured(&self, _: &()) -> marina_distribution::Result<InMemoryDriver> {
//!         // Your driver with the suite's options (sparse indexes, immutable tags).
//!         Ok(Engine::new(Default::default(), testsuite::configured_options()))
//!     }
//! }
//!
//! // One test running everything...
//! #[tokio::test]
//! async fn behaviour() {
//!     testsuite::run_all(&MyFactory).await;
//! }
//!
//! // ...or one test per case.
//! macro_rules! per_case {
//!     (; $($case:ident),* ; reopen: $($reopen:ident),*) => {
//!         $( #[tokio::test] async fn $case() { testsuite::$case(&MyFactory).await } )*
//!     };
//! }
//! marina_distribution::for_each_behaviour_case!(per_case!());
//! # fn main() {}
//! ```

pub mod backend;
mod blobs;
mod immutable;
mod lifecycle;
mod manifests;
mod names;
mod referrers;
mod tags;
mod uploads;

use std::future::Future;
use std::sync::Arc;

use bytes::Bytes;
use futures::{Stream, StreamExt, stream};
use serde_json::json;

use crate::error::{Error, Result};
use crate::oci::manifest::{DEFAULT_MANIFEST_LIMIT, media_types};
use crate::oci::{
    Descriptor, Digest, DigestAlgorithm, RangeRequest, Reference, RepositoryName, Tag,
};
use crate::storage::immutable::{ImmutableTagRule, ImmutableTags};
use crate::storage::inmemory::InMemoryDriver;
use crate::storage::{EngineOptions, StorageConfig, StorageDriver};

pub use blobs::*;
pub use immutable::*;
pub use lifecycle::*;
pub use manifests::*;
pub use names::*;
pub use referrers::*;
pub use tags::*;
pub use uploads::*;

/// Opens what a suite's cases run against on fresh, isolated storage: drivers for the
/// behaviour suite ([`DriverFactory`]), backends for the contract suite
/// ([`BackendFactory`](backend::BackendFactory)).
///
/// Every case calls [`create_storage`](Self::create_storage) once, so cases never see each
/// other's data, then [`open`](Self::open) once, or twice for the cases that need a second
/// instance on the same storage (only when [`persistent`](Self::persistent) is true).
pub trait Factory: Send + Sync {
    /// The driver (or backend) under test.
    type Instance;
    /// A handle on one isolated storage area (a temporary directory, a bucket prefix). It is
    /// kept alive for the whole case and dropped at its end.
    type Storage: Send + Sync;

    /// Creates a fresh, empty storage area.
    fn create_storage(&self) -> impl Future<Output = Result<Self::Storage>> + Send;

    /// Opens an instance on `storage`. Called a second time for the same storage, it must
    /// return a new instance sharing nothing in memory with the first (a restarted process).
    fn open(&self, storage: &Self::Storage) -> impl Future<Output = Result<Self::Instance>> + Send;

    /// Whether a second [`open`](Self::open) on the same storage sees the first's data.
    fn persistent(&self) -> bool;
}

/// Opens drivers for the behaviour suite: a [`Factory`] of [`StorageDriver`]s.
pub trait DriverFactory: Factory<Instance: StorageDriver> {
    /// Opens a driver on `storage` like [`open`](Factory::open), with the policies some
    /// cases check ([`configured_options`]): image indexes whose child manifests are absent
    /// accepted (`EngineOptions::sparse_indexes`), and the immutable tags of
    /// [`immutable_tag_rules`].
    fn open_configured(
        &self,
        storage: &Self::Storage,
    ) -> impl Future<Output = Result<Self::Instance>> + Send;

    /// The manifest size limit the drivers are configured with.
    fn max_manifest_size(&self) -> usize {
        DEFAULT_MANIFEST_LIMIT
    }
}

/// The in-memory driver's factory (not persistent: every `open` is a new, empty store).
#[derive(Debug, Default, Clone, Copy)]
pub struct InMemoryFactory;

impl Factory for InMemoryFactory {
    type Instance = InMemoryDriver;
    type Storage = ();

    async fn create_storage(&self) -> Result<()> {
        Ok(())
    }

    async fn open(&self, _: &()) -> Result<InMemoryDriver> {
        Ok(InMemoryDriver::new_in_memory())
    }

    fn persistent(&self) -> bool {
        false
    }
}

impl DriverFactory for InMemoryFactory {
    async fn open_configured(&self, _: &()) -> Result<InMemoryDriver> {
        Ok(crate::storage::Engine::new(
            Default::default(),
            configured_options(),
        ))
    }
}

/// The immutable tags of [`DriverFactory::open_configured`]: tags `v*` in the repositories
/// below `suite/immutable/`.
pub fn immutable_tag_rules() -> Vec<ImmutableTagRule> {
    vec![ImmutableTagRule {
        repositories: vec!["suite/immutable/**".to_owned()],
        tags: vec!["v*".to_owned()],
    }]
}

/// The engine options of [`DriverFactory::open_configured`]: sparse indexes accepted and the
/// tags of [`immutable_tag_rules`] immutable.
pub fn configured_options() -> EngineOptions {
    EngineOptions {
        sparse_indexes: true,
        immutable_tags: ImmutableTags::new(&immutable_tag_rules()).expect("valid rules"),
        ..EngineOptions::default()
    }
}

/// `config` with the policies of [`configured_options`], for factories of drivers built
/// from a [`StorageConfig`] (`AnyDriver`).
pub fn configured_config(mut config: StorageConfig) -> StorageConfig {
    config.sparse_indexes = true;
    config.immutable_tags = immutable_tag_rules();
    config
}

/// Lists every case of the suite, for a macro of the caller's to generate tests from.
///
/// `for_each_behaviour_case!(my_macro!(args...))` expands to
/// `my_macro!(args...; case, case, ...; reopen: case, ...)`: the first list holds the cases
/// every driver runs, the second those that need a persistent [`DriverFactory`] (a second
/// driver instance on the same storage). Each name is a function of
/// [`storage::testsuite`](crate::storage::testsuite) taking `&impl DriverFactory`.
#[macro_export]
macro_rules! for_each_behaviour_case {
    ($callback:ident ! ( $($args:tt)* )) => {
        $callback! {
            $($args)*;
            // names
            names_invalid_rejected,
            // blobs
            blob_put_get_stat_delete,
            blob_unknown,
            blob_put_digest_mismatch,
            blob_put_size_mismatch,
            blob_put_body_error,
            blob_put_existing,
            blob_ranged_reads,
            blob_empty,
            blob_sha512,
            blob_large_streamed,
            blob_concurrent_put,
            blob_cross_repository_visibility,
            blob_mount,
            blob_delete_keeps_other_repositories,
            concurrent_readers_never_see_partial_content,
            // uploads
            upload_monolithic_finish,
            upload_one_byte_chunks,
            upload_finish_with_final_chunk,
            upload_out_of_order_chunk,
            upload_repeated_chunk,
            upload_chunk_size_mismatch,
            upload_body_error_midway,
            upload_finish_size_mismatch,
            upload_finish_wrong_digest,
            upload_empty_blob,
            upload_sha512,
            upload_algorithm_of_finish_digest,
            upload_finish_existing_blob,
            upload_unknown_id,
            upload_abort,
            upload_other_repository,
            upload_parallel_sessions,
            upload_concurrent_chunks_same_offset,
            upload_large_chunks,
            upload_large_failed_chunk,
            upload_concurrent_finish_same_blob,
            // manifests
            manifest_put_get,
            manifest_put_by_digest,
            manifest_media_types,
            manifest_sha512,
            manifest_digest_mismatch,
            manifest_invalid,
            manifest_oversized,
            manifest_missing_blob,
            manifest_subject_absent_accepted,
            manifest_non_distributable_absent_accepted,
            manifest_index_references,
            manifest_unknown,
            manifest_cross_repository,
            manifest_delete,
            // tags
            tag_overwrite,
            tag_and_untag,
            tags_sorted_and_paginated,
            tags_unknown_repository,
            tags_concurrent_same_tag,
            tags_many,
            // referrers
            referrers_listing,
            // immutable tags
            immutable_tags_never_move,
            immutable_tag_pushes_racing_in_one_instance;
            reopen:
            immutable_tag_pushes_racing_in_two_instances,
            manifest_deletes_racing_immutable_tag_pushes,
            upload_resume_new_instance,
            upload_resume_after_failed_chunk_new_instance,
            upload_resume_large_new_instance
        }
    };
}

/// Lists every lifecycle case of the suite (drivers implementing
/// [`Lifecycle`](crate::storage::lifecycle::Lifecycle)), like
/// [`for_each_behaviour_case!`](crate::for_each_behaviour_case): `my_macro!(args...; case,
/// ...; reopen: case, ...)`.
#[macro_export]
macro_rules! for_each_lifecycle_case {
    ($callback:ident ! ( $($args:tt)* )) => {
        $callback! {
            $($args)*;
            gc_reclaims_exactly_the_unreferenced_bytes,
            gc_dry_run_reports_what_a_run_reclaims,
            gc_grace_spares_recent_writes,
            gc_sweeps_links_no_manifest_of_their_repository_references,
            gc_keeps_untagged_manifests_by_default,
            gc_expires_manifests_past_their_ttl,
            gc_delete_untagged_keeps_what_tags_reach,
            gc_reclaims_interim_sha512_blobs,
            uploads_expire_after_their_ttl,
            uploads_expiring_under_a_chunk_refuse_it,
            catalog_lists_repositories_in_order_and_pages,
            catalog_forgets_emptied_repositories,
            sparse_indexes_accept_absent_children;
            reopen:
            gc_in_another_instance_refuses_stale_pushes
        }
    };
}

/// Runs every case against the drivers of `factory` (the cases needing a second instance
/// only if it is persistent), and panics naming every case that failed.
pub async fn run_all<F: DriverFactory>(factory: &F) {
    for_each_behaviour_case!(run_cases!("behaviour", factory));
}

/// Runs the cases listed by a `for_each_…_case!` macro (`for_each_x_case!(run_cases!(kind,
/// factory))`) against `factory`, those of the `reopen` list only if it is persistent, and
/// panics naming every case that failed.
macro_rules! run_cases {
    ($kind:literal, $factory:ident; $($case:ident),* ; reopen: $($reopen:ident),*) => {{
        use $crate::storage::testsuite::{report, run_one};
        let mut failed = Vec::new();
        $( run_one($kind, stringify!($case), &mut failed, $case($factory)).await; )*
        if $factory.persistent() {
            $( run_one($kind, stringify!($reopen), &mut failed, $reopen($factory)).await; )*
        }
        report($kind, &failed);
    }};
}
use run_cases;

/// Runs one case of a suite (`kind`), recording its panic as a failure named after it.
async fn run_one(kind: &str, name: &str, failed: &mut Vec<String>, case: impl Future<Output = ()>) {
    use futures::FutureExt;
    match std::panic::AssertUnwindSafe(case).catch_unwind().await {
        Ok(()) => {}
        Err(panic) => {
            let msg = panic
                .downcast_ref::<String>()
                .map(String::as_str)
                .or_else(|| panic.downcast_ref::<&str>().copied())
                .unwrap_or("(non-string panic)");
            failed.push(format!("{kind} case `{name}` failed: {msg}"));
        }
    }
}

/// Panics naming the `failed` cases of a suite (`kind`), if any.
fn report(kind: &str, failed: &[String]) {
    if !failed.is_empty() {
        panic!(
            "{} {kind} case(s) failed:\n{}",
            failed.len(),
            failed.join("\n")
        );
    }
}

// ---------------------------------------------------------------------------------------------
// Helpers shared by the cases.
// ---------------------------------------------------------------------------------------------

/// One case's storage and the instance (driver or backend) opened on it.
pub(crate) struct Setup<'f, F: Factory> {
    factory: &'f F,
    storage: F::Storage,
    /// The driver or backend under test (shared with spawned tasks in concurrency cases).
    pub(crate) d: Arc<F::Instance>,
}

impl<'f, F: Factory> Setup<'f, F> {
    pub(crate) async fn new(factory: &'f F) -> Self {
        let storage = factory
            .create_storage()
            .await
            .unwrap_or_else(|e| panic!("factory could not create storage: {e}"));
        let d = factory
            .open(&storage)
            .await
            .unwrap_or_else(|e| panic!("factory could not open an instance: {e}"));
        Self {
            factory,
            storage,
            d: Arc::new(d),
        }
    }

    /// A second, independent instance on the same storage.
    pub(crate) async fn second_instance(&self) -> F::Instance {
        assert!(
            self.factory.persistent(),
            "this case needs a persistent factory"
        );
        self.factory
            .open(&self.storage)
            .await
            .unwrap_or_else(|e| panic!("factory could not open a second instance: {e}"))
    }
}

/// Asserts that `$e` (a `Result`) is an error matching `$p` (optionally with a guard).
macro_rules! assert_err {
    ($e:expr, $p:pat $(if $g:expr)?) => {
        match ($e).map(|_| ()) {
            Err($p) $(if $g)? => {}
            other => panic!(
                "`{}`: expected Err({}), got {:?}",
                stringify!($e),
                stringify!($p $(if $g)?),
                other
            ),
        }
    };
}
pub(crate) use assert_err;

/// Unwraps a result, panicking with the expression and the error.
macro_rules! ok {
    ($e:expr) => {
        match $e {
            Ok(v) => v,
            Err(err) => panic!("`{}` failed: {err}", stringify!($e)),
        }
    };
}
pub(crate) use ok;

pub(crate) fn repo(name: &str) -> RepositoryName {
    RepositoryName::parse(name).expect("valid test repository name")
}

pub(crate) fn tag(name: &str) -> Tag {
    Tag::parse(name).expect("valid test tag")
}

pub(crate) fn tag_ref(name: &str) -> Reference {
    Reference::Tag(tag(name))
}

pub(crate) fn sha256(data: &[u8]) -> Digest {
    Digest::compute(DigestAlgorithm::Sha256, data)
}

pub(crate) fn sha512(data: &[u8]) -> Digest {
    Digest::compute(DigestAlgorithm::Sha512, data)
}

/// Deterministic pseudo-random test data (not all-zero, no period aligned to a hash block).
pub(crate) fn data(len: usize, seed: u8) -> Vec<u8> {
    let mut x = u32::from(seed)
        .wrapping_mul(2_654_435_761)
        .wrapping_add(12_345);
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            (x >> 7) as u8
        })
        .collect()
}

/// A body stream type used by the helpers.
pub(crate) type Body = stream::Iter<std::vec::IntoIter<Result<Bytes>>>;

/// A body of one chunk.
pub(crate) fn body(data: &[u8]) -> Body {
    stream::iter(vec![Ok(Bytes::copy_from_slice(data))])
}

/// A body of no chunk at all.
pub(crate) fn no_body() -> Body {
    stream::iter(Vec::new())
}

/// A body split into chunks of `size` bytes.
pub(crate) fn chunked(data: &[u8], size: usize) -> Body {
    let chunks: Vec<Result<Bytes>> = data
        .chunks(size.max(1))
        .map(|c| Ok(Bytes::copy_from_slice(c)))
        .collect();
    stream::iter(chunks)
}

/// A body that delivers `data` and then fails, like a client that went away.
pub(crate) fn failing_body(data: &[u8]) -> Body {
    stream::iter(vec![
        Ok(Bytes::copy_from_slice(data)),
        Err(Error::BlobUploadInvalid(
            "behaviour suite: client went away".to_owned(),
        )),
    ])
}

/// A body that yields to the scheduler before each chunk, so concurrent operations interleave.
pub(crate) fn yielding_body(
    data: Vec<u8>,
    size: usize,
) -> impl Stream<Item = Result<Bytes>> + Send {
    let chunks: Vec<Bytes> = data
        .chunks(size.max(1))
        .map(Bytes::copy_from_slice)
        .collect();
    stream::unfold(chunks.into_iter(), |mut it| async move {
        tokio::task::yield_now().await;
        let next = it.next()?;
        Some((Ok(next), it))
    })
}

/// Reads a blob (or a range of it) to the end.
pub(crate) async fn read<D: StorageDriver>(
    d: &D,
    repo: &RepositoryName,
    digest: &Digest,
    range: Option<RangeRequest>,
) -> Result<Vec<u8>> {
    let read = d.get_content(repo, digest, range).await?;
    let mut stream = std::pin::pin!(read.stream);
    let mut out = Vec::new();
    while let Some(chunk) = stream.next().await {
        out.extend_from_slice(&chunk?);
    }
    Ok(out)
}

/// Asserts that `repo` serves exactly `expected` as `digest`, and that stat agrees.
pub(crate) async fn assert_blob<D: StorageDriver>(
    d: &D,
    repo: &RepositoryName,
    digest: &Digest,
    expected: &[u8],
) {
    let info = ok!(d.stat(repo, digest).await);
    assert_eq!(info.size, expected.len() as u64, "stat size of {digest}");
    assert_eq!(&info.digest, digest, "stat digest");
    let got = ok!(read(d, repo, digest, None).await);
    assert!(
        got == expected,
        "content of {digest} in {repo}: got {} bytes, expected {} bytes (or different bytes)",
        got.len(),
        expected.len()
    );
}

/// Pushes a blob monolithically and returns its sha256 descriptor with `media_type`.
pub(crate) async fn push_blob<D: StorageDriver>(
    d: &D,
    repo: &RepositoryName,
    content: &[u8],
    media_type: &str,
) -> Descriptor {
    let digest = sha256(content);
    ok!(d
        .put_content(repo, &digest, Some(content.len() as u64), body(content))
        .await);
    descriptor(media_type, digest, content.len())
}

pub(crate) fn descriptor(media_type: &str, digest: Digest, size: usize) -> Descriptor {
    Descriptor {
        media_type: media_type.to_owned(),
        digest,
        size: size as u64,
        artifact_type: None,
        annotations: None,
        urls: None,
    }
}

pub(crate) const CONFIG_TYPE: &str = "application/vnd.oci.image.config.v1+json";
pub(crate) const LAYER_TYPE: &str = "application/vnd.oci.image.layer.v1.tar+gzip";

/// Serialises an image manifest (with deliberately unusual but valid formatting, to check
/// that manifests are stored byte for byte).
pub(crate) fn image_manifest(
    config: &Descriptor,
    layers: &[Descriptor],
    subject: Option<&Descriptor>,
    artifact_type: Option<&str>,
    annotations: Option<serde_json::Value>,
) -> Bytes {
    let mut m = json!({
        "schemaVersion": 2,
        "mediaType": media_types::OCI_MANIFEST,
        "config": config,
        "layers": layers,
    });
    if let Some(s) = subject {
        m["subject"] = json!(s);
    }
    if let Some(t) = artifact_type {
        m["artifactType"] = json!(t);
    }
    if let Some(a) = annotations {
        m["annotations"] = a;
    }
    let mut text = serde_json::to_string_pretty(&m).expect("serialisable");
    text.push_str("\n\n");
    Bytes::from(text)
}

/// Pushes a config and one layer blob, then an image manifest referencing them, under
/// `reference`. Returns the manifest's descriptor and bytes.
pub(crate) async fn push_image<D: StorageDriver>(
    d: &D,
    repo: &RepositoryName,
    reference: &Reference,
    seed: u8,
) -> (Descriptor, Bytes) {
    let config = push_blob(
        d,
        repo,
        format!("{{\"seed\":{seed}}}").as_bytes(),
        CONFIG_TYPE,
    )
    .await;
    let layer = push_blob(d, repo, &data(100 + usize::from(seed), seed), LAYER_TYPE).await;
    let bytes = image_manifest(&config, &[layer], None, None, None);
    let digest = match reference {
        Reference::Digest(d) => d.clone(),
        Reference::Tag(_) => sha256(&bytes),
    };
    let out = ok!(d
        .put_manifest(
            repo,
            reference,
            Some(media_types::OCI_MANIFEST),
            bytes.clone()
        )
        .await);
    assert_eq!(out.digest, digest, "put_manifest's digest");
    (
        descriptor(media_types::OCI_MANIFEST, digest, bytes.len()),
        bytes,
    )
}
