//! The registry on S3 under store faults: a [fault-injecting proxy](common::fault_proxy) in
//! front of the S3 test server answers a share of the registry's S3 requests with `503
//! SlowDown`, `500 InternalError`, or a connection closed before or in the middle of the
//! response. Clients push blobs (monolithic, chunked, multipart) and manifests, and pull
//! them back while the faults go on; then, with the faults off, everything acknowledged is
//! read back.
//!
//! What must hold: nothing acknowledged is lost, nothing served differs from what was
//! pushed (a pull that completes is byte-exact), and every request the registry could not
//! serve is a `503` with `Retry-After` whose detail names no object key.
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

use futures::StreamExt;
use reqwest::StatusCode;

use common::fault_proxy::{Fault, FaultProxy};
use common::*;
use marina_distribution::StorageConfig;

const MIB: usize = 1024 * 1024;

/// How the client operations ended.
#[derive(Debug, Default)]
struct Tally {
    /// Operations that succeeded.
    ok: u64,
    /// Operations refused with a clean `503` and `Retry-After`.
    refused: u64,
    /// Pulls whose body broke off after a `200` (the client sees a short read).
    cut: u64,
    /// Anything else: another status, a `503` without `Retry-After`, a detail naming a key.
    unclean: Vec<String>,
    /// Pulls that completed with bytes other than those pushed.
    corrupt: u64,
}

impl Tally {
    fn failed(&self) -> u64 {
        self.refused + self.cut + self.unclean.len() as u64
    }
}

/// A registry on S3 through a fault proxy, under its own prefix; `None` without S3.
async fn faulted_registry(test: &str, seed: u64) -> Option<(FaultProxy, Server, String)> {
    faulted_registry_with(test, seed, None).await
}

/// [`faulted_registry`] with its `single_put_limit` (`Some(0)`: monolithic pushes go through
/// multipart uploads too).
async fn faulted_registry_with(
    test: &str,
    seed: u64,
    single_put_limit: Option<u64>,
) -> Option<(FaultProxy, Server, String)> {
    let (_, config, _) = configs(test)
        .into_iter()
        .find(|(name, _, _)| name == "s3")?;
    let mut s3 = config.s3.clone().expect("s3");
    let prefix = s3.prefix.clone().expect("prefix");
    let proxy = FaultProxy::start(s3.endpoint.as_deref().expect("endpoint"), 0.0, seed).await;
    s3.endpoint = Some(proxy.url.clone());
    s3.part_size = Some(5 * MIB as u64);
    s3.single_put_limit = single_put_limit;
    let server = start("s3".into(), StorageConfig::s3(s3), None).await;
    Some((proxy, server, prefix))
}

/// Pushes one blob that must be acknowledged (panics with the answer otherwise); returns
/// the blob's path, `/v2/<repo>/blobs/<digest>`.
async fn push_and_acknowledge(reg: &Registry, repo: &str, blob: &Blob, what: &str) -> String {
    match push(reg, repo, blob).await {
        Ok(digest) => format!("/v2/{repo}/blobs/{digest}"),
        Err(resp) => panic!(
            "{what}: {} {}",
            resp.status(),
            resp.text().await.unwrap_or_default()
        ),
    }
}

/// Pulls `path` and checks that it serves exactly the blob's bytes.
async fn assert_pulls_exactly(reg: &Registry, path: &str, blob: &Blob, what: &str) {
    let resp = reg.get(path).await;
    assert_eq!(resp.status(), StatusCode::OK, "{what}");
    assert_eq!(resp.bytes().await.unwrap(), blob.data, "{what}");
}

/// Checks a failed answer: a `503` with `Retry-After` whose body names no key under `prefix`.
async fn judge_failure(resp: reqwest::Response, prefix: &str, what: &str, tally: &mut Tally) {
    let status = resp.status();
    let retry_after = optional_header(&resp, "retry-after");
    let text = resp.text().await.unwrap_or_default();
    let leaks = text.contains(prefix) || text.contains("blobs/sha256") || text.contains("s3://");
    if status == StatusCode::SERVICE_UNAVAILABLE && retry_after.is_some() && !leaks {
        tally.refused += 1;
    } else {
        tally.unclean.push(format!(
            "{what}: {status} retry-after={retry_after:?} {text}"
        ));
    }
}

/// One blob to push: its bytes and how (`0`: monolithic `POST`, `n`: `n` chunks).
struct Blob {
    data: Vec<u8>,
    chunks: usize,
}

fn blobs(count: usize) -> Vec<Blob> {
    (0..count)
        .map(|i| {
            let seed = (i % 251) as u8;
            match i % 10 {
                // A multipart blob (two 5 MiB parts), monolithic or chunked.
                0 => Blob {
                    data: payload(6 * MIB + i, seed),
                    chunks: if i % 20 == 0 { 0 } else { 3 },
                },
                // Chunked below one part (staged segments).
                1..=3 => Blob {
                    data: payload(MIB + i * 7, seed),
                    chunks: 3,
                },
                _ => Blob {
                    data: payload(4096 + i * 131, seed),
                    chunks: 0,
                },
            }
        })
        .collect()
}

/// Pushes one blob; `Ok(digest)` when the registry acknowledged it.
async fn push(reg: &Registry, repo: &str, blob: &Blob) -> Result<String, reqwest::Response> {
    let digest = sha256(&blob.data);
    if blob.chunks == 0 {
        let resp = reg.post_blob(repo, &digest, &blob.data).await;
        return if resp.status() == StatusCode::CREATED {
            Ok(digest)
        } else {
            Err(resp)
        };
    }
    let resp = reg.post_upload(repo).await;
    if resp.status() != StatusCode::ACCEPTED {
        return Err(resp);
    }
    let mut location = header(&resp, "location");
    let piece = blob.data.len().div_ceil(blob.chunks);
    for (i, chunk) in blob.data.chunks(piece).enumerate() {
        let resp = reg.patch_chunk(&location, (i * piece) as u64, chunk).await;
        if resp.status() != StatusCode::ACCEPTED {
            return Err(resp);
        }
        location = header(&resp, "location");
    }
    let resp = reg.close_upload(&location, &digest, &[]).await;
    if resp.status() == StatusCode::CREATED {
        Ok(digest)
    } else {
        Err(resp)
    }
}

/// Pulls `path` and compares it with `expected`.
async fn pull(reg: &Registry, path: &str, expected: &[u8], prefix: &str, tally: &mut Tally) {
    let resp = reg.get(path).await;
    if resp.status() != StatusCode::OK {
        judge_failure(resp, prefix, path, tally).await;
        return;
    }
    match resp.bytes().await {
        Ok(bytes) if bytes[..] == *expected => tally.ok += 1,
        Ok(_) => tally.corrupt += 1,
        Err(_) => tally.cut += 1,
    }
}

/// What a run acknowledged: blobs `(digest, bytes)` and tagged manifests `(tag, bytes)`.
#[derive(Default)]
struct Acknowledged {
    blobs: Vec<(String, Vec<u8>)>,
    manifests: Vec<(String, Vec<u8>)>,
}

/// Pushes `count` blobs (8 at a time) and a manifest per four acknowledged blobs, then pulls
/// everything back, all while the proxy injects faults.
async fn workload(reg: &Registry, repo: &str, count: usize, prefix: &str) -> (Tally, Acknowledged) {
    let mut tally = Tally::default();
    let mut acked = Acknowledged::default();
    let blobs = blobs(count);
    let mut pushes = futures::stream::iter(blobs.iter())
        .map(|blob| async move { (blob, push(reg, repo, blob).await) })
        .buffer_unordered(8);
    while let Some((blob, pushed)) = pushes.next().await {
        match pushed {
            Ok(digest) => {
                tally.ok += 1;
                acked.blobs.push((digest, blob.data.clone()));
            }
            Err(resp) => judge_failure(resp, prefix, "push", &mut tally).await,
        }
    }
    for (i, group) in acked.blobs.clone().chunks(4).enumerate() {
        let [(config, config_bytes), layers @ ..] = group else {
            continue;
        };
        let layers: Vec<(&str, usize)> =
            layers.iter().map(|(d, b)| (d.as_str(), b.len())).collect();
        let manifest = image_manifest(config, config_bytes.len(), &layers, None);
        let tag = format!("t{i}");
        let resp = reg
            .put_manifest(repo, &tag, OCI_MANIFEST, manifest.as_bytes())
            .await;
        if resp.status() == StatusCode::CREATED {
            tally.ok += 1;
            acked.manifests.push((tag, manifest.into_bytes()));
        } else {
            judge_failure(resp, prefix, "manifest push", &mut tally).await;
        }
    }
    for (digest, data) in &acked.blobs {
        pull(
            reg,
            &format!("/v2/{repo}/blobs/{digest}"),
            data,
            prefix,
            &mut tally,
        )
        .await;
    }
    for (tag, manifest) in &acked.manifests {
        pull(
            reg,
            &format!("/v2/{repo}/manifests/{tag}"),
            manifest,
            prefix,
            &mut tally,
        )
        .await;
    }
    (tally, acked)
}

/// With the faults off, everything acknowledged must be there, exactly.
async fn lost_or_corrupt(reg: &Registry, repo: &str, acked: &Acknowledged) -> (u64, u64) {
    let (mut lost, mut corrupt) = (0, 0);
    let paths = acked
        .blobs
        .iter()
        .map(|(d, b)| (format!("/v2/{repo}/blobs/{d}"), b))
        .chain(
            acked
                .manifests
                .iter()
                .map(|(t, m)| (format!("/v2/{repo}/manifests/{t}"), m)),
        );
    for (path, expected) in paths {
        let resp = reg.get(&path).await;
        if resp.status() == StatusCode::NOT_FOUND {
            lost += 1;
            continue;
        }
        assert_eq!(resp.status(), StatusCode::OK, "{path} without faults");
        if resp.bytes().await.expect("a whole body without faults")[..] != expected[..] {
            corrupt += 1;
        }
    }
    (lost, corrupt)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn faults_lose_and_corrupt_nothing() {
    let rate: f64 = std::env::var("S3_FAULT_RATE")
        .ok()
        .map_or(0.05, |v| v.parse().expect("S3_FAULT_RATE"));
    let count: usize = std::env::var("S3_FAULT_BLOBS")
        .ok()
        .map_or(40, |v| v.parse().expect("S3_FAULT_BLOBS"));
    if std::env::var_os("RUST_LOG").is_some() {
        let _ = tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
            .with_writer(std::io::stderr)
            .try_init();
    }
    let Some((proxy, server, prefix)) = faulted_registry("faults", 7).await else {
        return;
    };
    proxy.set_rate(rate);
    let repo = "faults/app";
    let started = std::time::Instant::now();
    let (tally, acked) = workload(&server, repo, count, &prefix).await;
    let faulted = proxy.counts();
    proxy.set_rate(0.0);
    let (lost, corrupt_after) = lost_or_corrupt(&server, repo, &acked).await;
    eprintln!(
        "fault rate {rate}: {} S3 requests, {} faulted {:?} (SlowDown, 500, reset before, reset \
         midway); client operations: {} ok, {} failed ({} refused 503, {} cut, {} unclean), \
         {} corrupt pulls; after: {lost} lost, {corrupt_after} corrupt; {:.1} s",
        faulted.requests,
        faulted.faults(),
        faulted.injected,
        tally.ok,
        tally.failed(),
        tally.refused,
        tally.cut,
        tally.unclean.len(),
        tally.corrupt,
        started.elapsed().as_secs_f64()
    );
    assert!(faulted.faults() > 0 || rate == 0.0, "no fault was injected");
    assert_eq!(tally.corrupt, 0, "a completed pull served other bytes");
    assert_eq!(
        (lost, corrupt_after),
        (0, 0),
        "acknowledged writes lost or corrupt"
    );
    assert!(
        tally.unclean.is_empty(),
        "unclean failures: {:#?}",
        tally.unclean
    );
}

/// A `CompleteMultipartUpload` the store carried out but whose answer was cut: the SDK's
/// retry finds no upload (`NoSuchUpload`, as Garage answers; the proxy answers so on moto),
/// and the registry must see that the object is complete instead of refusing the push
/// (`BLOB_UPLOAD_UNKNOWN`): one push in a thousand at 10% faults on Garage.
#[tokio::test]
async fn a_completion_whose_answer_was_cut_still_finishes_the_push() {
    // Monolithic pushes complete multipart uploads only without the streamed PutObject.
    let Some((proxy, server, _)) = faulted_registry_with("complete-cut", 11, Some(0)).await else {
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
