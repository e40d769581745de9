//! The GCS driver under store faults: the [fault-injecting proxy](common::fault_proxy) in
//! front of the GCS emulator (`scripts/with-gcs.sh` starts fake-gcs-server) answers requests
//! with `503`, `500`, or a connection closed before or in the middle of the response.
//!
//! - Each kind of JSON API request the driver sends again (`storage::retry`) meets each kind
//!   of fault once, and the driver operation behind it still succeeds with the right result.
//! - The registry's fault workload (shared with the S3 fault tests) runs with random faults:
//!   nothing acknowledged is lost or corrupt, every refusal is clean, and refusals are rare
//!   (every request is retried, so a refusal takes the same request failing four times).
//!
//! `GCS_FAULT_RATE` (default 0.05) and `GCS_FAULT_BLOBS` (default 40) set the workload:
//!
//! ```sh
//! GCS_FAULT_RATE=0.1 GCS_FAULT_BLOBS=200 bash scripts/with-gcs.sh \
//!   cargo test --release --all-features --test gcs_faults -- --nocapture
//! ```
#![cfg(feature = "gcs")]

mod common;

use bytes::Bytes;
use futures::stream;
use marina_distribution::oci::{Digest, DigestAlgorithm, Reference, RepositoryName, Tag};
use marina_distribution::storage::gcs::GcsDriver;
use marina_distribution::storage::{StorageConfig, StorageDriver, UploadHandle};

use common::fault_proxy::{Fault, FaultProxy, STALL_ENDED_BY_TIMEOUT, gcs_driver_behind_proxy};
use common::fault_workload;
use common::gcs::{PART, chunked};
use common::storage_io::read_all;
use common::{OCI_MANIFEST, image_manifest, payload, sha256_digest, start};

/// One chunk as a request body.
fn body(data: &[u8]) -> impl futures::Stream<Item = marina_distribution::Result<Bytes>> + use<> {
    stream::iter([Ok(Bytes::copy_from_slice(data))])
}

/// A fault aimed at one kind of request at a time, and what met it.
struct Aim<'a> {
    proxy: &'a FaultProxy,
    fault: Fault,
    /// Operations that failed, took [`STALL_ENDED_BY_TIMEOUT`] or longer, or whose request
    /// the fault did not meet.
    failures: Vec<String>,
}

impl Aim<'_> {
    /// Aims the fault at the next request with `method` whose URL contains `marker`, awaits
    /// the driver operation `op`, and records whether the fault met it and the operation
    /// succeeded all the same.
    async fn at<T>(
        &mut self,
        (method, marker): (&'static str, &str),
        what: &str,
        op: impl Future<Output = marina_distribution::Result<T>>,
    ) -> Option<T> {
        let fault = self.fault;
        self.proxy
            .fault_next(method, Box::leak(marker.into()), fault);
        let started = std::time::Instant::now();
        let out = op.await;
        if !self.proxy.targeted_fault_injected() {
            self.failures
                .push(format!("{what}: {fault:?} met no {method} with {marker:?}"));
        }
        let took = started.elapsed();
        if took >= STALL_ENDED_BY_TIMEOUT {
            self.failures
                .push(format!("{what} under {fault:?} took {took:?}"));
        }
        out.map_err(|e| self.failures.push(format!("{what} under {fault:?}: {e}")))
            .ok()
    }
}

/// JSON API requests, by the method and a part of their URL that only they hold
/// (object names in URLs have their `/` encoded).
const DOWNLOAD: (&str, &str) = ("GET", "alt=media");
const LIST: (&str, &str) = ("GET", "prefix=");
const MEDIA_UPLOAD: (&str, &str) = ("POST", "uploadType=media");
const MULTIPART_UPLOAD: (&str, &str) = ("POST", "uploadType=multipart");
const COMPOSE: (&str, &str) = ("POST", "/compose");
const DELETE: (&str, &str) = ("DELETE", "/o/");

/// The metadata request of blob `digest`'s object.
fn blob_metadata(digest: &Digest) -> (&'static str, String) {
    ("GET", format!("blobs%2Fsha256%2F{}", digest.hex()))
}

/// The media download of blob `digest`'s object.
fn blob_download(digest: &Digest) -> (&'static str, String) {
    (
        "GET",
        format!("blobs%2Fsha256%2F{}?alt=media", digest.hex()),
    )
}

/// Pushes, reads, tags, lists and deletes, each with `fault` aimed at the request kind it
/// sends first; returns what failed.
async fn every_request_kind_under(
    d: &GcsDriver,
    proxy: &FaultProxy,
    fault: Fault,
    seed: u8,
) -> Vec<String> {
    let mut aim = Aim {
        proxy,
        fault,
        failures: Vec::new(),
    };
    let repo = RepositoryName::parse(&format!("faults/kind-{seed}")).unwrap();
    let config = payload(1000 + usize::from(seed), seed);
    let config_digest = sha256_digest(&config);
    let len = Some(config.len() as u64);

    // A blob below one part: one conditional (multipart) upload of the blob.
    let push = d.put_content(&repo, &config_digest, len, body(&config));
    aim.at(MULTIPART_UPLOAD, "blob push", push).await;
    // The same blob pushed to a second repository: the store has it (one metadata request),
    // only the link is written.
    let (method, marker) = blob_metadata(&config_digest);
    let mirror = RepositoryName::parse(&format!("faults/mirror-{seed}")).unwrap();
    let push = d.put_content(&mirror, &config_digest, len, body(&config));
    aim.at((method, &marker), "deduplicated blob push", push)
        .await;
    let (method, marker) = blob_download(&config_digest);
    let opened = d.get_content(&mirror, &config_digest, None);
    drop(aim.at((method, &marker), "blob read", opened).await);
    if aim.failures.is_empty() {
        assert_eq!(read_all(d, &mirror, &config_digest).await, config);
    }

    // A chunked upload of two pieces, composed into the blob.
    let layer = payload(3 * 1024, seed.wrapping_add(100));
    let layer_digest = sha256_digest(&layer);
    let id = d
        .start_upload(&repo, DigestAlgorithm::Sha256)
        .await
        .unwrap()
        .id();
    let (first, rest) = layer.split_at(1024);
    d.put_upload_chunk(&repo, &id, Some(0), None, body(first))
        .await
        .unwrap();
    let finish = d.finish_upload(&repo, &id, &layer_digest, None, body(rest));
    aim.at(COMPOSE, "upload finish", finish).await;

    // A manifest, tagged: its record, links and the tag are media uploads.
    let manifest = image_manifest(
        &config_digest.to_string(),
        config.len(),
        &[(&layer_digest.to_string(), layer.len())],
        None,
    );
    let tag = Tag::parse("v1").unwrap();
    let reference = Reference::Tag(tag.clone());
    let put = d.put_manifest(
        &repo,
        &reference,
        Some(OCI_MANIFEST),
        Bytes::from(manifest.clone()),
    );
    aim.at(MEDIA_UPLOAD, "manifest push", put).await;
    let got = d.get_manifest(&repo, &reference);
    if let Some(got) = aim.at(DOWNLOAD, "manifest read", got).await {
        assert_eq!(got.bytes, manifest.as_bytes());
    }
    let tags = d.get_tags(&repo, None, None);
    if let Some(tags) = aim.at(LIST, "tag list", tags).await {
        assert_eq!(tags.tags, ["v1"]);
    }
    if Fault::STALLS.contains(&fault) {
        // Deletes are never abandoned for taking long (`storage::deadline`): a stalled one
        // waits for the proxy to let go.
        d.untag_manifest(&repo, &tag).await.unwrap();
    } else {
        aim.at(DELETE, "untag", d.untag_manifest(&repo, &tag)).await;
    }
    aim.failures
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_request_kind_is_sent_again_after_each_fault() {
    let Some(config) = common::gcs::config("gcs-faults", "kinds") else {
        return;
    };
    let (proxy, d) = gcs_driver_behind_proxy(&config, 23).await;
    let mut failures = Vec::new();
    for (i, fault) in Fault::ALL.into_iter().enumerate() {
        failures.extend(every_request_kind_under(&d, &proxy, fault, i as u8).await);
    }
    assert!(failures.is_empty(), "{failures:#?}");
}

/// A GCS that stops answering, before a response or in the middle of its body, keeping the
/// connection open: each kind of request but deletes (never abandoned) is failed after the
/// request timeout (1 s here) and sent again, and the operation behind it succeeds, long
/// before the proxy lets go (a minute).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_request_kind_is_sent_again_when_unanswered() {
    let Some(mut config) = common::gcs::config("gcs-faults", "stalls") else {
        return;
    };
    config.request_timeout_secs = Some(1);
    let (proxy, d) = gcs_driver_behind_proxy(&config, 37).await;
    let mut failures = Vec::new();
    for (i, fault) in Fault::STALLS.into_iter().enumerate() {
        failures.extend(every_request_kind_under(&d, &proxy, fault, 10 + i as u8).await);
    }
    assert!(failures.is_empty(), "{failures:#?}");
}

/// A streamed blob read whose body stops midway, the connection left open: the read fails
/// after the request timeout and is resumed where it stopped (the `Resumable` layer), so
/// the reader gets exactly the blob.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_read_the_store_stops_sending_is_resumed_where_it_stopped() {
    let Some(mut config) = common::gcs::config("gcs-faults", "stalled-read") else {
        return;
    };
    config.request_timeout_secs = Some(1);
    let (proxy, d) = gcs_driver_behind_proxy(&config, 41).await;
    let repo = RepositoryName::parse("faults/stalled-read").unwrap();
    let content = Bytes::from(payload(3 * PART as usize + 500, 71));
    let digest = sha256_digest(&content);
    d.put_content(&repo, &digest, Some(content.len() as u64), body(&content))
        .await
        .unwrap();
    let (method, marker) = blob_download(&digest);
    proxy.fault_next(method, Box::leak(marker.into()), Fault::StallMidResponse);
    let started = std::time::Instant::now();
    assert_eq!(read_all(&d, &repo, &digest).await, content);
    assert!(proxy.targeted_fault_injected(), "the read met no stall");
    let took = started.elapsed();
    assert!(
        (std::time::Duration::from_secs(1)..STALL_ENDED_BY_TIMEOUT).contains(&took),
        "the stalled read took {took:?}"
    );
}

/// A monolithic push of no declared length goes through a resumable session, part by part
/// (two parts and the final chunk here). Opening the session is sent again after a fault,
/// and so is every chunk, the way GCS's resume protocol prescribes: the driver asks the
/// session how much it holds and sends only the rest. (The proxy answers that query, which
/// the emulator would answer by finalizing a truncated object: see
/// `common::fault_proxy::sessions`; the chunks themselves are stored by the emulator.) Each
/// fault and each stall on the first, second and final chunk: the push succeeds well before
/// a stall ends by itself, the blob holds exactly its bytes, and a chunk the store took in
/// before its answer was lost is not sent again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_faulted_session_chunk_is_resumed_where_the_session_stands() {
    let Some(mut config) = common::gcs::config("gcs-faults", "session") else {
        return;
    };
    config.request_timeout_secs = Some(1);
    let (proxy, d) = gcs_driver_behind_proxy(&config, 31).await;
    let repo = RepositoryName::parse("faults/session").unwrap();
    let mut seed = 40;
    // Opening the session is sent again: the push succeeds.
    for fault in Fault::ALL {
        seed += 1;
        let content = Bytes::from(payload(2 * PART as usize + 1000 + seed, seed as u8));
        let digest = sha256_digest(&content);
        proxy.fault_next("POST", "uploadType=resumable", fault);
        d.put_content(&repo, &digest, None, chunked(&content, 64 * 1024))
            .await
            .unwrap_or_else(|e| panic!("session start under {fault:?}: {e}"));
        assert!(
            proxy.targeted_fault_injected(),
            "{fault:?} was not injected"
        );
        assert_eq!(read_all(&d, &repo, &digest).await, content, "{fault:?}");
    }
    let mut failures = Vec::new();
    for (n, chunk) in [(1, "first chunk"), (2, "second chunk"), (3, "final chunk")] {
        for fault in Fault::ALL.into_iter().chain(Fault::STALLS) {
            seed += 1;
            let content = Bytes::from(payload(2 * PART as usize + 1000 + seed, seed as u8));
            let digest = sha256_digest(&content);
            // Every request to the session's URI is a `PUT` naming the session; status
            // queries are answered by the proxy before any fault is drawn.
            proxy.fault_nth("PUT", "upload_id=", n, fault);
            let (seen_before, started) = (proxy.seen().len(), std::time::Instant::now());
            let pushed = d
                .put_content(&repo, &digest, None, chunked(&content, 64 * 1024))
                .await;
            let took = started.elapsed();
            assert!(
                proxy.targeted_fault_injected(),
                "{chunk}: {fault:?} was not injected"
            );
            if let Err(e) = pushed {
                failures.push(format!("{chunk} under {fault:?}: {e}"));
                continue;
            }
            if took >= STALL_ENDED_BY_TIMEOUT {
                failures.push(format!("{chunk} under {fault:?} took {took:?}"));
            }
            if read_all(&d, &repo, &digest).await != content {
                failures.push(format!("{chunk} under {fault:?}: other bytes stored"));
            }
            // Chunks with bytes sent: 3, plus the resend of one the store never took in.
            let chunks_sent = proxy.seen()[seen_before..]
                .iter()
                .filter(|r| r.method == "PUT" && r.target.contains("upload_id=") && r.body_len > 0)
                .count();
            let expected = match fault {
                Fault::ResetMidResponse | Fault::StallMidResponse => Some(3),
                Fault::SlowDown | Fault::Internal => Some(4),
                // Half the time the store took the chunk in before the connection went.
                Fault::ResetBeforeResponse | Fault::StallBeforeResponse => None,
            };
            if expected.is_some_and(|expected| expected != chunks_sent) {
                failures.push(format!(
                    "{chunk} under {fault:?}: {chunks_sent} chunks sent, expected {expected:?}"
                ));
            }
        }
    }
    assert!(failures.is_empty(), "{failures:#?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn faults_lose_and_corrupt_nothing() {
    let Some(mut gcs) = common::gcs::config("gcs-faults", "workload") else {
        return;
    };
    let prefix = gcs.normalized_prefix();
    let proxy = FaultProxy::start(gcs.endpoint(), 0.0, 29).await;
    gcs.endpoint = Some(proxy.url.clone());
    let server = start("gcs".into(), StorageConfig::gcs(gcs), None).await;
    let tally =
        fault_workload::faults_lose_and_corrupt_nothing("GCS", &proxy, &server, &prefix).await;
    // A refusal takes one request failing four times in a row.
    let operations = tally.ok + tally.failed();
    assert!(
        tally.refused * 50 <= operations,
        "{} of {operations} operations refused",
        tally.refused
    );
}

/// A manifest's delete removes a tag naming it only at the generation it read
/// (`ifGenerationMatch`), so that a push moving the tag meanwhile keeps its move. GCS
/// honours the precondition; the emulator ignores it on deletes (it deletes whatever the
/// generation), so the race itself cannot be shown here as it is on S3
/// (`tests/s3/two_processes.rs`): this checks what the driver sends.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_delete_removes_a_tag_only_at_the_generation_it_read() {
    let Some(config) = common::gcs::config("gcs-faults", "untag") else {
        return;
    };
    let (proxy, d) = gcs_driver_behind_proxy(&config, 43).await;
    let repo = RepositoryName::parse("faults/untag").unwrap();
    let config_blob = Bytes::from_static(b"{}");
    let config_digest = sha256_digest(&config_blob);
    d.put_content(&repo, &config_digest, None, body(&config_blob))
        .await
        .unwrap();
    let manifest = Bytes::from(image_manifest(&config_digest.to_string(), 2, &[], None));
    let tag = Reference::Tag(Tag::parse("doomed-tag").unwrap());
    let digest = d
        .put_manifest(&repo, &tag, Some(OCI_MANIFEST), manifest)
        .await
        .unwrap()
        .digest;
    d.delete_manifest(&repo, &digest).await.unwrap();
    assert!(
        d.get_manifest(&repo, &tag).await.is_err(),
        "the tag is gone"
    );
    let seen = proxy.seen();
    let tag_deletes: Vec<_> = seen
        .iter()
        .filter(|r| r.method == "DELETE" && r.target.contains("doomed-tag"))
        .collect();
    assert!(!tag_deletes.is_empty(), "no DELETE of the tag: {seen:#?}");
    for request in tag_deletes {
        assert!(
            request.target.contains("ifGenerationMatch="),
            "the tag was deleted whatever its generation: {}",
            request.target
        );
    }
}
