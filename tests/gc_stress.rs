//! Online garbage collection under load, across processes: two driver instances on one
//! filesystem root (and, with `S3_ENDPOINT` or `GCS_ENDPOINT`, on one bucket prefix) stand
//! for two registry processes. Writers on both re-push images whose layers come from a small pool, so they
//! keep reusing blobs that deleted images left reclaimable (`HEAD`, then a mount from another
//! repository or an upload when the blob is missing, then the manifest `PUT`), and delete or
//! untag their own images now and then; meanwhile collections with no grace period run back
//! to back on both instances, half of them deleting untagged manifests. Every acknowledged
//! image is checked later, when its writer is about to move or delete its tag (and the ones
//! still tagged at the end, after one more collection): its tag must name it and it must be
//! whole, every blob pullable byte for byte.
//!
//! Prints `writers=… gc_runs=… acknowledged=… refused=… reclaimed_blobs=… damaged=…`.
//! `GC_STRESS_SECS` changes the duration (default 8 s on the filesystem, 20 s on S3 and GCS).
//! The scenario of broken records (pushes by digest refused, their records reclaimed) is in
//! `gc_stress/broken_records.rs`.

#[path = "gc_stress/broken_records.rs"]
mod broken_records;
mod common;

use common::sha256_digest;

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use bytes::Bytes;
use futures::{StreamExt, stream};
use marina_distribution::error::Error;
use marina_distribution::oci::{Digest, Reference, RepositoryName, Tag};
use marina_distribution::storage::lifecycle::{GcOptions, Lifecycle};
use marina_distribution::{AnyDriver, StorageConfig, StorageDriver};
use rand::Rng;

const REPOSITORIES: [&str; 3] = ["stress/a", "stress/b", "stress/c"];
const LAYERS: usize = 12;
const WRITERS_PER_INSTANCE: usize = 2;
const TAGS_PER_WRITER: usize = 3;
const MANIFEST_TYPE: &str = "application/vnd.oci.image.manifest.v1+json";

fn layer(i: usize) -> Bytes {
    let mut x = 0x9e37_79b9u32 ^ i as u32;
    Bytes::from(
        (0..1000 + 97 * i)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 17;
                x ^= x << 5;
                x as u8
            })
            .collect::<Vec<u8>>(),
    )
}

/// What a writer's acknowledged push put under one of its tags.
#[derive(Clone)]
struct Acked {
    repo: RepositoryName,
    digest: Digest,
    manifest: Bytes,
    blobs: Vec<(Digest, Bytes)>,
}

#[derive(Default)]
struct Counters {
    checked: AtomicU64,
    damaged: std::sync::Mutex<Vec<String>>,
    acknowledged: AtomicU64,
    refused: AtomicU64,
    retried: AtomicU64,
    gc_runs: AtomicU64,
    reclaimed_blobs: AtomicU64,
    reclaimed_manifests: AtomicU64,
    reclaimed_broken: AtomicU64,
    aged: AtomicU64,
}

/// Makes `content` present in `repo` the way a client does: `HEAD`, then a mount from
/// another repository, else an upload.
async fn ensure_blob(
    d: &AnyDriver,
    repo: &RepositoryName,
    digest: &Digest,
    content: &Bytes,
    rng_from: usize,
) -> Result<(), Error> {
    match d.stat(repo, digest).await {
        Ok(_) => return Ok(()),
        Err(Error::BlobUnknown(_)) => {}
        Err(e) => return Err(e),
    }
    let from = RepositoryName::parse(REPOSITORIES[rng_from % REPOSITORIES.len()]).unwrap();
    if from != *repo {
        match d.mount_blob(&from, repo, digest).await {
            Ok(_) => return Ok(()),
            Err(Error::BlobUnknown(_)) => {}
            Err(e) => return Err(e),
        }
    }
    let body = stream::iter([Ok(content.clone())]);
    d.put_content(repo, digest, Some(content.len() as u64), body)
        .await
        .map(|_| ())
}

/// The image a writer pushes as its `n`th: a config of its own and the pool's layers
/// `picks`; its blobs (config first) and its manifest.
fn image(id: usize, n: u64, picks: [usize; 2]) -> (Vec<(Digest, Bytes)>, Bytes) {
    let config = Bytes::from(format!("{{\"writer\":{id},\"push\":{n}}}"));
    let mut blobs = vec![(sha256_digest(&config), config)];
    blobs.extend(picks.iter().map(|&i| {
        let content = layer(i);
        (sha256_digest(&content), content)
    }));
    let layers: Vec<String> = blobs[1..]
        .iter()
        .map(|(digest, content)| {
            format!(
                r#"{{"mediaType":"application/vnd.oci.image.layer.v1.tar","digest":"{digest}","size":{}}}"#,
                content.len()
            )
        })
        .collect();
    let manifest = Bytes::from(format!(
        r#"{{"schemaVersion":2,"mediaType":"{MANIFEST_TYPE}","config":{{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"{}","size":{}}},"layers":[{}]}}"#,
        blobs[0].0,
        blobs[0].1.len(),
        layers.join(",")
    ));
    (blobs, manifest)
}

/// Makes every blob of an image present in `repo` ([`ensure_blob`]); `false` (counted as a
/// retry) when the registry asks to retry.
async fn ensure_all(
    d: &AnyDriver,
    repo: &RepositoryName,
    blobs: &[(Digest, Bytes)],
    from: usize,
    counters: &Counters,
) -> bool {
    for (digest, content) in blobs {
        match ensure_blob(d, repo, digest, content, from).await {
            Ok(()) => {}
            Err(e) if e.is_retryable() => {
                counters.retried.fetch_add(1, Ordering::Relaxed);
                return false;
            }
            Err(e) => panic!("pushing blob {digest}: {e}"),
        }
    }
    true
}

/// What a writer picks for its next push: repository, pool layers, pause before the
/// manifest (ms), repository to mount from, and an action (0–9).
fn pick() -> (RepositoryName, [usize; 2], u64, usize, u32) {
    let mut rng = rand::rng();
    let repo =
        RepositoryName::parse(REPOSITORIES[rng.random_range(0..REPOSITORIES.len())]).unwrap();
    let a = rng.random_range(0..LAYERS);
    let b = (a + rng.random_range(1..LAYERS)) % LAYERS;
    (
        repo,
        [a, b],
        rng.random_range(0..4u64),
        rng.random_range(0..REPOSITORIES.len()),
        rng.random_range(0..10u32),
    )
}

async fn writer(
    d: Arc<AnyDriver>,
    id: usize,
    stop: Arc<AtomicBool>,
    counters: Arc<Counters>,
) -> HashMap<String, Acked> {
    let mut held: HashMap<String, Acked> = HashMap::new();
    let mut n = 0u64;
    while !stop.load(Ordering::Relaxed) {
        n += 1;
        let (repo, picks, pause, from, action) = pick();
        let tag_name = format!("w{id}-t{}", rand::rng().random_range(0..TAGS_PER_WRITER));
        if let Some(acked) = held.get(&tag_name) {
            // The image this writer is about to replace or delete: still whole?
            let damage = check_one(&d, &tag_name, acked).await;
            counters.checked.fetch_add(1, Ordering::Relaxed);
            if !damage.is_empty() {
                counters.damaged.lock().unwrap().extend(damage);
                held.remove(&tag_name);
            }
        }
        if action == 0 || action == 1 {
            // Delete (or untag) one of this writer's images: its blobs become reclaimable.
            if let Some(acked) = held.remove(&tag_name) {
                let tag = Tag::parse(&tag_name).unwrap();
                let done = if action == 0 {
                    d.delete_manifest(&acked.repo, &acked.digest).await
                } else {
                    d.untag_manifest(&acked.repo, &tag).await
                };
                done.unwrap_or_else(|e| panic!("writer {id}: removing {tag_name}: {e}"));
                continue;
            }
        }
        let (blobs, manifest) = image(id, n, picks);
        if !ensure_all(&d, &repo, &blobs, from, &counters).await {
            continue;
        }
        // The window between the client's checks and its manifest.
        tokio::time::sleep(Duration::from_millis(pause)).await;
        let tag = Tag::parse(&tag_name).unwrap();
        match d
            .put_manifest(
                &repo,
                &Reference::Tag(tag),
                Some(MANIFEST_TYPE),
                manifest.clone(),
            )
            .await
        {
            Ok(out) => {
                counters.acknowledged.fetch_add(1, Ordering::Relaxed);
                held.insert(
                    tag_name,
                    Acked {
                        repo,
                        digest: out.digest,
                        manifest,
                        blobs,
                    },
                );
            }
            Err(Error::ManifestBlobUnknown(_)) => {
                // A collection took a blob the checks above saw: the client starts over.
                counters.refused.fetch_add(1, Ordering::Relaxed);
                // The tag keeps its previous (acknowledged) manifest, if any.
            }
            Err(e) if e.is_retryable() => {
                counters.retried.fetch_add(1, Ordering::Relaxed);
            }
            Err(e) => panic!("writer {id}: manifest push: {e}"),
        }
    }
    held
}

async fn collector(
    instances: [Arc<AnyDriver>; 2],
    stop: Arc<AtomicBool>,
    counters: Arc<Counters>,
    untagged_too: bool,
) {
    let mut run = 0u64;
    while !stop.load(Ordering::Relaxed) {
        let d = &instances[(run % 2) as usize];
        let options = GcOptions {
            dry_run: false,
            delete_untagged: untagged_too && run % 4 >= 2,
            grace: Duration::ZERO,
            upload_ttl: None,
            manifest_ttl: None,
        };
        let report = d
            .collect_garbage(&options)
            .await
            .unwrap_or_else(|e| panic!("collection {run}: {e}"));
        counters.gc_runs.fetch_add(1, Ordering::Relaxed);
        counters
            .reclaimed_blobs
            .fetch_add(report.blobs, Ordering::Relaxed);
        counters
            .reclaimed_manifests
            .fetch_add(report.manifests, Ordering::Relaxed);
        counters
            .reclaimed_broken
            .fetch_add(report.broken, Ordering::Relaxed);
        run += 1;
    }
}

/// The image `acked` a writer holds under `tag_name` must be whole; returns what is not.
async fn check_one(d: &AnyDriver, tag_name: &str, acked: &Acked) -> Vec<String> {
    let tag = Tag::parse(tag_name).unwrap();
    let what = format!("{}:{tag_name}", acked.repo);
    match d.resolve_tag(&acked.repo, &tag).await {
        Ok(digest) if digest == acked.digest => {}
        other => return vec![format!("{what}: tag resolves to {other:?}")],
    }
    check_content(d, &what, Reference::Tag(tag), acked).await
}

/// The image `acked` a writer pushed by digest must be whole; returns what is not.
async fn check_by_digest(d: &AnyDriver, acked: &Acked) -> Vec<String> {
    let what = format!("{}@{}", acked.repo, acked.digest);
    check_content(d, &what, Reference::Digest(acked.digest.clone()), acked).await
}

/// The manifest `reference` names must be `acked`'s, and every blob of it pullable byte for
/// byte; returns what is not, each described after `what`.
async fn check_content(
    d: &AnyDriver,
    what: &str,
    reference: Reference,
    acked: &Acked,
) -> Vec<String> {
    let mut damaged = Vec::new();
    match d.get_manifest(&acked.repo, &reference).await {
        Ok(m) if m.bytes == acked.manifest => {}
        other => return vec![format!("{what}: manifest {:?}", other.map(|m| m.info))],
    }
    for (digest, content) in &acked.blobs {
        let read = async {
            let read = d.get_content(&acked.repo, digest, None).await?;
            let chunks: Vec<_> = read.stream.collect().await;
            let mut bytes = Vec::new();
            for chunk in chunks {
                bytes.extend_from_slice(&chunk?);
            }
            Ok::<_, Error>(bytes)
        };
        match read.await {
            Ok(bytes) if bytes == content[..] => {}
            Ok(_) => damaged.push(format!("{what}: blob {digest} has other bytes")),
            Err(e) => damaged.push(format!("{what}: blob {digest}: {e}")),
        }
    }
    damaged
}

/// Everything the writers hold must be whole; returns the damaged tags, described.
async fn check(d: &AnyDriver, held: &HashMap<String, Acked>, counters: &Counters) -> Vec<String> {
    let mut damaged = Vec::new();
    for (tag_name, acked) in held {
        damaged.extend(check_one(d, tag_name, acked).await);
        counters.checked.fetch_add(1, Ordering::Relaxed);
    }
    damaged
}

/// The duration of a stress run: `GC_STRESS_SECS`, else `default`.
fn stress_secs(default: u64) -> u64 {
    std::env::var("GC_STRESS_SECS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(default)
}

/// Two driver instances on `config`, each with [`WRITERS_PER_INSTANCE`] writers made by
/// `writer(driver, id, stop, counters)`, and collections back to back ([`collector`]) for
/// `secs`; returns the instances, the counters and what the writers returned.
async fn under_load<T, Fut>(
    config: &StorageConfig,
    secs: u64,
    untagged_too: bool,
    writer: impl Fn(Arc<AnyDriver>, usize, Arc<AtomicBool>, Arc<Counters>) -> Fut,
) -> ([Arc<AnyDriver>; 2], Arc<Counters>, Vec<T>)
where
    T: Send + 'static,
    Fut: std::future::Future<Output = T> + Send + 'static,
{
    let open = || async { Arc::new(AnyDriver::from_config(config).await.expect("driver")) };
    let instances = [open().await, open().await];
    let stop = Arc::new(AtomicBool::new(false));
    let counters = Arc::new(Counters::default());
    let mut writers = Vec::new();
    for (i, d) in instances.iter().enumerate() {
        for w in 0..WRITERS_PER_INSTANCE {
            writers.push(tokio::spawn(writer(
                Arc::clone(d),
                i * WRITERS_PER_INSTANCE + w,
                Arc::clone(&stop),
                Arc::clone(&counters),
            )));
        }
    }
    let gc = tokio::spawn(collector(
        instances.clone(),
        Arc::clone(&stop),
        Arc::clone(&counters),
        untagged_too,
    ));
    tokio::time::sleep(Duration::from_secs(secs)).await;
    stop.store(true, Ordering::Relaxed);
    let mut results = Vec::new();
    for w in writers {
        results.push(w.await.expect("writer"));
    }
    gc.await.expect("collector");
    (instances, counters, results)
}

async fn stress(config: StorageConfig, backend: &str, default_secs: u64) {
    let secs = stress_secs(default_secs);
    let (instances, counters, held) = under_load(&config, secs, true, writer).await;
    let held: HashMap<String, Acked> = held.into_iter().flatten().collect();
    let mut damaged = std::mem::take(&mut *counters.damaged.lock().unwrap());
    damaged.extend(check(&instances[0], &held, &counters).await);
    // A collection after the fact, deleting untagged manifests too, keeps all of it whole.
    let last = GcOptions {
        dry_run: false,
        delete_untagged: true,
        grace: Duration::ZERO,
        upload_ttl: None,
        manifest_ttl: None,
    };
    instances[1]
        .collect_garbage(&last)
        .await
        .expect("last collection");
    damaged.extend(check(&instances[1], &held, &counters).await);
    let c = &counters;
    println!(
        "gc stress ({backend}, 2 instances, {secs} s): writers={} gc_runs={} acknowledged={} checked={} refused={} retried={} reclaimed_blobs={} reclaimed_manifests={} held_tags={} damaged={}",
        2 * WRITERS_PER_INSTANCE,
        c.gc_runs.load(Ordering::Relaxed),
        c.acknowledged.load(Ordering::Relaxed),
        c.checked.load(Ordering::Relaxed),
        c.refused.load(Ordering::Relaxed),
        c.retried.load(Ordering::Relaxed),
        c.reclaimed_blobs.load(Ordering::Relaxed),
        c.reclaimed_manifests.load(Ordering::Relaxed),
        held.len(),
        damaged.len()
    );
    damaged.truncate(20);
    assert!(
        damaged.is_empty(),
        "damaged (first 20):\n{}",
        damaged.join("\n")
    );
    // The run did what it is for: pushes went through while collections reclaimed the
    // blobs and manifests the writers left behind.
    assert!(
        c.acknowledged.load(Ordering::Relaxed) >= 20,
        "too few pushes"
    );
    assert!(
        c.gc_runs.load(Ordering::Relaxed) >= 4,
        "too few collections"
    );
    assert!(
        c.reclaimed_blobs.load(Ordering::Relaxed) > 0,
        "nothing reclaimed"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn gc_under_load_on_one_filesystem_root() {
    let dir = tempfile::tempdir().unwrap();
    stress(
        StorageConfig::filesystem(dir.path().join("root")),
        "filesystem",
        8,
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn gc_under_load_on_one_bucket() {
    let Some(config) = common::s3_storage("gc-stress") else {
        eprintln!("NOTE: S3_ENDPOINT is not set: the S3 stress test was SKIPPED");
        return;
    };
    common::ensure_bucket(&config).await;
    stress(config, "s3", 20).await;
}

#[cfg(feature = "gcs")]
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn gc_under_load_on_one_gcs_bucket() {
    let Some(config) = common::gcs::config("gc-stress", "load") else {
        eprintln!("NOTE: GCS_ENDPOINT is not set: the GCS stress test was SKIPPED");
        return;
    };
    stress(StorageConfig::gcs(config), "gcs", 20).await;
}
