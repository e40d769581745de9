//! The registry on S3 under store faults: a [fault-injecting proxy](common::fault_proxy) in
//! front of the S3 test server answers a share of the registry's S3 requests with `503
//! SlowDown`, `500 InternalError`, or a connection closed before or in the middle of the
//! response. Clients push blobs (monolithic, chunked, multipart) and manifests, and pull
//! them back while the faults go on; then, with the faults off, everything acknowledged is
//! read back.
//!
//! What must hold is written in [`common::fault_workload`], shared with the GCS fault tests.
//!
//! `S3_FAULT_RATE` (default 0.05) and `S3_FAULT_BLOBS` (default 40) set the run of
//! `faults_lose_and_corrupt_nothing`; the report line gives the counts, e.g. for the figures
//! of `docs/performance.md`:
//!
//! ```sh
//! S3_FAULT_RATE=0.02 S3_FAULT_BLOBS=400 bash scripts/with-s3.sh \
//!   cargo test --release --all-features --test s3_faults -- --nocapture
//! ```
//!
//! With `RUST_LOG` set (e.g. `RUST_LOG=marina_distribution=error`) the registry's log goes to
//! stderr: it names the S3 request behind each refusal.
#![cfg(feature = "s3")]

mod common;

use common::fault_proxy::{Fault, FaultProxy, STALL_ENDED_BY_TIMEOUT};
use common::fault_workload::{self, Blob, MIB, assert_pulls_exactly, push_and_acknowledge};
use common::*;
use marina_distribution::StorageConfig;
use marina_distribution::storage::S3Config;

/// A registry on S3 through a fault proxy, under its own prefix; `None` without S3.
async fn faulted_registry(test: &str, seed: u64) -> Option<(FaultProxy, Server, String)> {
    faulted_registry_with(test, seed, |_| {}).await
}

/// [`faulted_registry`] with its S3 settings changed by `configure` (after the fault
/// proxy's endpoint and 5 MiB parts are set).
async fn faulted_registry_with(
    test: &str,
    seed: u64,
    configure: impl FnOnce(&mut S3Config),
) -> Option<(FaultProxy, Server, String)> {
    let (_, config, _) = configs(test)
        .into_iter()
        .find(|(name, _, _)| name == "s3")?;
    let mut s3 = config.s3.clone().expect("s3");
    let prefix = s3.prefix.clone().expect("prefix");
    let proxy = FaultProxy::start(s3.endpoint.as_deref().expect("endpoint"), 0.0, seed).await;
    s3.endpoint = Some(proxy.url.clone());
    s3.part_size = Some(5 * MIB as u64);
    configure(&mut s3);
    let server = start("s3".into(), StorageConfig::s3(s3), None).await;
    Some((proxy, server, prefix))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn faults_lose_and_corrupt_nothing() {
    let Some((proxy, server, prefix)) = faulted_registry("faults", 7).await else {
        return;
    };
    fault_workload::faults_lose_and_corrupt_nothing("S3", &proxy, &server, &prefix).await;
}

/// A `CompleteMultipartUpload` the store carried out but whose answer was cut: the SDK's
/// retry finds no upload (`NoSuchUpload`, as Garage answers; the proxy answers so on moto),
/// and the registry must see that the object is complete instead of refusing the push
/// (`BLOB_UPLOAD_UNKNOWN`): one push in a thousand at 10% faults on Garage.
#[tokio::test]
async fn a_completion_whose_answer_was_cut_still_finishes_the_push() {
    // Monolithic pushes complete multipart uploads only without the streamed PutObject.
    let no_single_put = |s3: &mut S3Config| s3.single_put_limit = Some(0);
    let Some((proxy, server, _)) = faulted_registry_with("complete-cut", 11, no_single_put).await
    else {
        return;
    };
    // Monolithic (completed on the blob's key) and chunked (on the session's own key).
    for (i, chunks) in [(0, 0), (1, 3)] {
        let blob = Blob {
            data: payload(6 * MIB + i, 40 + i as u8),
            chunks,
        };
        proxy.cut_next_completion();
        let what = format!("a push with {chunks} chunks");
        let pushed = push_and_acknowledge(&server, "cut/app", &blob, &what).await;
        assert!(proxy.targeted_fault_injected(), "no completion was cut");
        assert_pulls_exactly(&server, &pushed, &blob, &what).await;
    }
}

/// A monolithic push stored with one streamed `PutObject` (`single_put_limit`) whose
/// request meets each kind of store fault is sent again from its spill file: the client sees
/// a normal `201`, and the blob holds exactly its bytes.
#[tokio::test]
async fn a_faulted_streamed_put_is_sent_again_from_its_spill_file() {
    let Some((proxy, server, _)) = faulted_registry("put-spill", 13).await else {
        return;
    };
    for (i, fault) in Fault::ALL.into_iter().enumerate() {
        let blob = Blob {
            data: payload(7 * MIB + i, 60 + i as u8),
            chunks: 0,
        };
        let hex = common::sha256(&blob.data)
            .split_once(':')
            .map(|(_, hex)| hex.to_owned())
            .expect("a digest");
        // The blob's key ends with its hex digest (`.../blobs/sha256/<ab>/<hex>/data`).
        proxy.fault_next("PUT", Box::leak(hex.into_boxed_str()), fault);
        let what = format!("a push under {fault:?}");
        let pushed = push_and_acknowledge(&server, "spill/app", &blob, &what).await;
        assert!(
            proxy.targeted_fault_injected(),
            "{fault:?} was not injected"
        );
        assert_pulls_exactly(&server, &pushed, &blob, &what).await;
    }
}

/// The hex digest of `data`, which the S3 keys of its blob hold.
fn hex_of(data: &[u8]) -> &'static str {
    let digest = common::sha256(data);
    Box::leak(digest.split_once(':').expect("a digest").1.into())
}

/// An S3 store that stops answering, before a response or in the middle of its body, and
/// keeps the connection open: each kind of request aimed at is failed after the request
/// timeout (1 s here) and sent again, the streamed `PutObject` of a monolithic push from its
/// spill file, a streamed read resumed where it stopped. Clients see normal answers, long
/// before the proxy lets go of the connection (a minute).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_the_store_leaves_unanswered_are_sent_again() {
    let short = |s3: &mut S3Config| s3.request_timeout_secs = Some(1);
    let Some((proxy, server, _)) = faulted_registry_with("stalls", 19, short).await else {
        return;
    };
    let mut seed = 80;
    for fault in Fault::STALLS {
        // (what, method, which request: a part of its target, or the blob's hex digest,
        // chunks of the push)
        let cases: [(&str, &str, Option<&'static str>, usize); 4] = [
            ("a streamed PutObject", "PUT", None, 0),
            ("an UploadPart", "PUT", Some("partNumber="), 3),
            ("a CompleteMultipartUpload", "POST", Some("uploadId="), 3),
            ("a GetObject of the pulled blob", "GET", None, 0),
        ];
        for (what, method, target, chunks) in cases {
            seed += 1;
            let blob = Blob {
                data: payload(6 * MIB + seed, seed as u8),
                chunks,
            };
            let what = format!("{what} under {fault:?}");
            let marker = target.unwrap_or_else(|| hex_of(&blob.data));
            let started = std::time::Instant::now();
            if method == "GET" {
                let pushed = push_and_acknowledge(&server, "stalls/app", &blob, &what).await;
                proxy.fault_next(method, marker, fault);
                assert_pulls_exactly(&server, &pushed, &blob, &what).await;
            } else {
                proxy.fault_next(method, marker, fault);
                let pushed = push_and_acknowledge(&server, "stalls/app", &blob, &what).await;
                assert_pulls_exactly(&server, &pushed, &blob, &what).await;
            }
            assert!(proxy.targeted_fault_injected(), "{what}: not injected");
            let took = started.elapsed();
            eprintln!("{what}: {took:.1?}");
            assert!(took < STALL_ENDED_BY_TIMEOUT, "{what}: took {took:?}");
        }
    }
}
