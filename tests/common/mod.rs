//! Shared harness of the HTTP tests: a registry started on a loopback port over each driver
//! ([`server`]), a typed client written from the spec's request shapes ([`client`] and the
//! endpoint modules [`blobs`], [`uploads`], [`manifests`], [`discovery`]), readers and checks
//! of the answers ([`answers`]) and what the tests push ([`content`]); what the storage
//! suites' test files share ([`suite`]), and what storage-level tests share ([`storage_io`]).
// Each test binary uses a part of the harness.
#![allow(dead_code, unused_macros)]

pub mod answers;
pub mod auth;
pub mod binary;
pub mod blobs;
pub mod client;
pub mod content;
pub mod discovery;
pub mod fault_proxy;
pub mod fault_workload;
#[cfg(feature = "gcs")]
pub mod gcs;
pub mod manifests;
pub mod observe;
pub mod outage_proxy;
pub mod server;
pub mod skopeo;
pub mod storage_io;
#[cfg(feature = "server")]
pub mod store_tls;
pub mod suite;
pub mod unwritable;
pub mod uploads;

// Every test file starts with `use common::*`.
#[allow(unused_imports)]
pub use self::{
    answers::*,
    client::{Fetch, Registry},
    content::*,
    discovery::{CatalogPage, Referrers, TagPage},
    manifests::Image,
    server::*,
};

/// A test run on a fresh registry over every driver: `each_driver_test!(name, |s| async move
/// { ... })` is `#[tokio::test] async fn name()` running the case through [`each_driver`],
/// which names the test (and its S3 prefix) after the function.
macro_rules! each_driver_test {
    ($name:ident, $case:expr) => {
        #[tokio::test]
        async fn $name() {
            $crate::common::each_driver(stringify!($name), $case).await;
        }
    };
}
#[allow(unused_imports)]
pub(crate) use each_driver_test;
