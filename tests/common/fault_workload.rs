//! A workload of pushes and pulls through a registry whose store sits behind the
//! [fault proxy](super::fault_proxy), and what must hold after it: shared by the S3 and GCS
//! fault tests (`tests/s3_faults.rs`, `tests/gcs_faults.rs`).
//!
//! What must hold: nothing acknowledged is lost, nothing served differs from what was
//! pushed (a pull that completes is byte-exact), and every request the registry could not
//! serve is a `503` with `Retry-After` whose detail names no object key.

use futures::StreamExt;
use reqwest::StatusCode;

use super::fault_proxy::FaultProxy;
use super::*;

/// One mebibyte.
pub const MIB: usize = 1024 * 1024;

/// How the client operations ended.
#[derive(Debug, Default)]
pub struct Tally {
    /// Operations that succeeded.
    pub ok: u64,
    /// Operations refused with a clean `503` and `Retry-After`.
    pub refused: u64,
    /// Pulls whose body broke off after a `200` (the client sees a short read).
    pub cut: u64,
    /// Anything else: another status, a `503` without `Retry-After`, a detail naming a key.
    pub unclean: Vec<String>,
    /// Pulls that completed with bytes other than those pushed.
    pub corrupt: u64,
}

impl Tally {
    pub fn failed(&self) -> u64 {
        self.refused + self.cut + self.unclean.len() as u64
    }
}

/// Pushes one blob that must be acknowledged (panics with the answer otherwise); returns
/// the blob's path, `/v2/<repo>/blobs/<digest>`.
pub async fn push_and_acknowledge(reg: &Registry, repo: &str, blob: &Blob, what: &str) -> String {
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
pub async fn assert_pulls_exactly(reg: &Registry, path: &str, blob: &Blob, what: &str) {
    let resp = reg.get(path).await;
    assert_eq!(resp.status(), StatusCode::OK, "{what}");
    assert_eq!(resp.bytes().await.unwrap(), blob.data, "{what}");
}

/// Checks a failed answer: a `503` with `Retry-After` whose body names no key under `prefix`.
async fn judge_failure(resp: reqwest::Response, prefix: &str, what: &str, tally: &mut Tally) {
    let status = resp.status();
    let retry_after = optional_header(&resp, "retry-after");
    let text = resp.text().await.unwrap_or_default();
    let leaks = text.contains(prefix)
        || text.contains("blobs/sha256")
        || text.contains("s3://")
        || text.contains("gs://");
    if status == StatusCode::SERVICE_UNAVAILABLE && retry_after.is_some() && !leaks {
        tally.refused += 1;
    } else {
        tally.unclean.push(format!(
            "{what}: {status} retry-after={retry_after:?} {text}"
        ));
    }
}

/// One blob to push: its bytes and how (`0`: monolithic `POST`, `n`: `n` chunks).
pub struct Blob {
    pub data: Vec<u8>,
    pub chunks: usize,
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
pub async fn push(reg: &Registry, repo: &str, blob: &Blob) -> Result<String, reqwest::Response> {
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

/// A `<STORE>_FAULT_RATE` or `<STORE>_FAULT_BLOBS` setting, or `default`.
fn setting<T: std::str::FromStr>(name: &str, default: T) -> T {
    std::env::var(name).ok().map_or(default, |v| {
        v.parse().ok().unwrap_or_else(|| panic!("{name}: {v:?}"))
    })
}

/// Runs the [`workload`] through `server`, whose `store` (`"S3"`, `"GCS"`) sits behind
/// `proxy`, with faults at `<STORE>_FAULT_RATE` (default 0.05) over `<STORE>_FAULT_BLOBS`
/// blobs (default 40); then, with the faults off, reads everything acknowledged back.
/// Asserts that nothing was lost or corrupt and that every failure was clean (a `503` with
/// `Retry-After` naming no key under `prefix`), prints the counts, and returns the tally.
pub async fn faults_lose_and_corrupt_nothing(
    store: &str,
    proxy: &FaultProxy,
    server: &Registry,
    prefix: &str,
) -> Tally {
    let rate: f64 = setting(&format!("{store}_FAULT_RATE"), 0.05);
    let count: usize = setting(&format!("{store}_FAULT_BLOBS"), 40);
    if std::env::var_os("RUST_LOG").is_some() {
        let _ = tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
            .with_writer(std::io::stderr)
            .try_init();
    }
    proxy.set_rate(rate);
    let repo = "faults/app";
    let started = std::time::Instant::now();
    let (tally, acked) = workload(server, repo, count, prefix).await;
    let faulted = proxy.counts();
    proxy.set_rate(0.0);
    let (lost, corrupt_after) = lost_or_corrupt(server, repo, &acked).await;
    eprintln!(
        "fault rate {rate}: {} {store} requests, {} faulted {:?} (503, 500, reset before, reset \
         midway, stalls); client operations: {} ok, {} failed ({} refused 503, {} cut, {} unclean), \
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
    tally
}
