//! Monolithic pushes of a declared length on GCS: one streamed media upload straight at the
//! blob's object (`Backend::put_blob`), against the GCS emulator (`scripts/with-gcs.sh`
//! starts fake-gcs-server and sets `GCS_ENDPOINT`, `GCS_BUCKET` and `GCS_ANONYMOUS`), and
//! through the fault-injecting proxy in front of it for the resend from the spill file.
//!
//! ```sh
//! bash scripts/with-gcs.sh cargo test --all-features --test gcs_put_blob
//! ```
#![cfg(feature = "gcs")]

mod common;

use bytes::Bytes;
use marina_distribution::Error;
use marina_distribution::oci::RepositoryName;
use marina_distribution::storage::StorageDriver;
use marina_distribution::storage::backend::Backend;

use common::content::{payload, sha256_digest};
use common::fault_proxy::{Fault, STALL_ENDED_BY_TIMEOUT, gcs_driver_behind_proxy};
use common::gcs::{PART, assert_only_blob_and_link, chunked, driver, objects};
use common::storage_io::read_all;

macro_rules! gcs_or_skip {
    ($test:expr) => {
        match common::gcs::config("gcs-put-blob", $test) {
            Some(config) => config,
            None => return,
        }
    };
}

/// The blob is stored as exactly the blob's object and its link: no resumable session,
/// nothing staged under `uploads/`. A wrong digest or a short body with the length declared
/// leaves nothing at all: the last chunk is never sent, so the upload never completes.
///
/// What is stored while the upload is in flight cannot be looked at on fake-gcs-server: it
/// answers no other request until the upload's body has arrived (see `docs/gcs.md`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_declared_length_is_one_streamed_upload_and_nothing_else() {
    let config = gcs_or_skip!("streamed");
    let d = driver(&config).await;
    let sizes = d.backend().capabilities().put_blob_sizes.expect("put_blob");
    let repo = RepositoryName::parse("mono/streamed").unwrap();
    let content = Bytes::from(payload(4 * PART as usize + 5, 2));
    assert!(sizes.contains(content.len() as u64), "{sizes:?}");
    let digest = sha256_digest(&content);
    d.put_content(
        &repo,
        &digest,
        Some(content.len() as u64),
        chunked(&content, 100_000),
    )
    .await
    .unwrap();
    assert_eq!(read_all(&d, &repo, &digest).await, content);
    assert_only_blob_and_link(&config, &repo, &digest).await;

    let other = Bytes::from(payload(3 * PART as usize, 3));
    let len = Some(other.len() as u64);
    let wrong = sha256_digest(b"wrong");
    let err = d
        .put_content(&repo, &wrong, len, chunked(&other, 100_000))
        .await
        .unwrap_err();
    assert!(matches!(err, Error::DigestInvalid(_)), "{err}");
    let short = other.slice(..other.len() - 1);
    let err = d
        .put_content(&repo, &sha256_digest(&other), len, chunked(&short, 100_000))
        .await
        .unwrap_err();
    assert!(matches!(err, Error::SizeInvalid(_)), "{err}");
    assert_eq!(objects(&config, "").await.len(), 2);
}

/// Each kind of store fault aimed at the streamed media upload, a store that stops answering
/// once it has the body included: the upload is sent again from the spill file (after the
/// request timeout, 1 s here, for the stalls) and the push succeeds with exactly its bytes
/// stored.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_faulted_streamed_upload_is_sent_again_from_its_spill_file() {
    let mut config = gcs_or_skip!("spill");
    config.request_timeout_secs = Some(1);
    let (proxy, d) = gcs_driver_behind_proxy(&config, 17).await;
    let repo = RepositoryName::parse("spill/app").unwrap();
    for (i, fault) in Fault::ALL.into_iter().chain(Fault::STALLS).enumerate() {
        let started = std::time::Instant::now();
        let content = Bytes::from(payload(2 * PART as usize + i, 60 + i as u8));
        let digest = sha256_digest(&content);
        // The media upload names the object in its query: `...&name=<prefix>%2Fblobs...<hex>`.
        proxy.fault_next("POST", Box::leak(digest.hex().into()), fault);
        d.put_content(
            &repo,
            &digest,
            Some(content.len() as u64),
            chunked(&content, 64 * 1024),
        )
        .await
        .unwrap_or_else(|e| panic!("a push under {fault:?}: {e}"));
        assert!(
            proxy.targeted_fault_injected(),
            "{fault:?} was not injected"
        );
        assert_eq!(read_all(&d, &repo, &digest).await, content, "{fault:?}");
        // Not the proxy giving up on a stall (after a minute): the timeout ended it.
        let took = started.elapsed();
        assert!(took < STALL_ENDED_BY_TIMEOUT, "{fault:?}: {took:?}");
    }
}
