//! Fills a store for `benches/gc-scale.sh`: images whose layers are shared across
//! repositories, then half of them deleted, and prints what a collection must reclaim.
//!
//! Storage from the registry's own environment (`STORAGE_TYPE`, `STORAGE_ROOT_DIRECTORY`,
//! `S3_*`). `GC_FILL_BLOBS` (default 10000) blobs in all: one config per image, three layers
//! of its own and one of 50 base layers shared by images of every repository (a few of the
//! layers are 1 MiB, the rest 1 to 4 KiB), spread over `GC_FILL_REPOSITORIES` repositories
//! (default 20). Prints one line:
//!
//! `filled: images=… blobs=… bytes=… deleted_images=… reclaimable_blobs=… reclaimable_bytes=…`
//!
//! With `GC_FILL_MEASURE=1` it fills nothing and prints what is stored instead:
//! `stored: blobs=… bytes=…`.
//!
//! Run through `cargo bench --bench gc_fill` (release profile); the `--bench` argument cargo
//! passes is ignored.

use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;
use futures::StreamExt;
use marina_distribution::oci::{Digest, DigestAlgorithm, Reference, RepositoryName, Tag};
use marina_distribution::{AnyDriver, StorageConfig, StorageDriver};

const BASES: usize = 50;
/// Repositories the images are spread over, unless `GC_FILL_REPOSITORIES` says otherwise.
const REPOSITORIES: usize = 20;
const IN_FLIGHT: usize = 16;
const MANIFEST_TYPE: &str = "application/vnd.oci.image.manifest.v1+json";

fn content(kind: u8, i: usize) -> Bytes {
    // Every 400th unique layer is 1 MiB: bytes must not drive a collection's memory.
    let len = if kind == 1 && i.is_multiple_of(400) {
        1 << 20
    } else {
        1024 + (i * 37) % 3072
    };
    let mut x = 0x9e37_79b9u32 ^ (i as u32).wrapping_mul(31) ^ u32::from(kind) << 24;
    Bytes::from(
        (0..len)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 17;
                x ^= x << 5;
                x as u8
            })
            .collect::<Vec<u8>>(),
    )
}

fn repositories() -> usize {
    static COUNT: std::sync::OnceLock<usize> = std::sync::OnceLock::new();
    *COUNT.get_or_init(|| {
        std::env::var("GC_FILL_REPOSITORIES")
            .ok()
            .and_then(|v| v.parse().ok())
            .filter(|&n| n > 0)
            .unwrap_or(REPOSITORIES)
    })
}

fn sha256(data: &[u8]) -> Digest {
    Digest::compute(DigestAlgorithm::Sha256, data)
}

struct Image {
    repo: RepositoryName,
    config: (Digest, Bytes),
    layers: Vec<(Digest, Bytes)>,
}

impl Image {
    fn new(k: usize) -> Self {
        let config = Bytes::from(format!("{{\"image\":{k}}}"));
        let mut layers: Vec<(Digest, Bytes)> = (0..3)
            .map(|j| {
                let layer = content(1, 3 * k + j);
                (sha256(&layer), layer)
            })
            .collect();
        let base = content(2, (k / 2) % BASES);
        layers.push((sha256(&base), base));
        Self {
            repo: RepositoryName::parse(&format!("fill/repo-{:02}", k % repositories())).unwrap(),
            config: (sha256(&config), config),
            layers,
        }
    }

    fn manifest(&self) -> Bytes {
        let layers: Vec<String> = self
            .layers
            .iter()
            .map(|(d, c)| {
                format!(
                    r#"{{"mediaType":"application/vnd.oci.image.layer.v1.tar","digest":"{d}","size":{}}}"#,
                    c.len()
                )
            })
            .collect();
        Bytes::from(format!(
            r#"{{"schemaVersion":2,"mediaType":"{MANIFEST_TYPE}","config":{{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"{}","size":{}}},"layers":[{}]}}"#,
            self.config.0,
            self.config.1.len(),
            layers.join(",")
        ))
    }
}

async fn push(d: &AnyDriver, k: usize) -> Digest {
    let image = Image::new(k);
    for (digest, bytes) in std::iter::once(&image.config).chain(&image.layers) {
        retrying("blob push", || {
            let body = futures::stream::iter([Ok(bytes.clone())]);
            d.put_content(&image.repo, digest, Some(bytes.len() as u64), body)
        })
        .await;
    }
    let tag = Tag::parse(&format!("v{k}")).unwrap();
    let reference = Reference::Tag(tag);
    retrying("manifest push", || {
        d.put_manifest(
            &image.repo,
            &reference,
            Some(MANIFEST_TYPE),
            image.manifest(),
        )
    })
    .await
    .digest
}

/// Runs `attempt` until it succeeds, again after a pause when it fails with a retryable error
/// (as a client does after a `503`): moto answers `500` now and then to listings that run
/// while other requests write.
async fn retrying<T, F>(what: &str, mut attempt: impl FnMut() -> F) -> T
where
    F: std::future::Future<Output = marina_distribution::Result<T>>,
{
    let mut pause = std::time::Duration::from_millis(50);
    for _ in 0..8 {
        match attempt().await {
            Ok(value) => return value,
            Err(e) if e.is_retryable() => {
                tokio::time::sleep(pause).await;
                pause *= 2;
            }
            Err(e) => panic!("{what}: {e:?}"),
        }
    }
    panic!("{what}: still failing after 8 attempts")
}

/// The blobs stored, counted through the backend's own listing.
async fn measure(d: &AnyDriver) -> (u64, u64) {
    use marina_distribution::storage::lifecycle::LifecycleBackend;
    async fn sum<B: LifecycleBackend>(b: &B) -> (u64, u64) {
        let (mut count, mut bytes) = (0, 0);
        for algorithm in DigestAlgorithm::ALL {
            let mut after: Option<String> = None;
            loop {
                let page = b
                    .scan_blobs(algorithm, after.as_deref(), 1000)
                    .await
                    .expect("listing blobs");
                count += page.len() as u64;
                bytes += page.iter().map(|o| o.size).sum::<u64>();
                let Some(last) = page.last() else { break };
                after = Some(last.name.clone());
            }
        }
        (count, bytes)
    }
    match d {
        AnyDriver::Filesystem(d) => sum(d.backend()).await,
        #[cfg(feature = "s3")]
        AnyDriver::S3(d) => sum(d.backend()).await,
        _ => panic!("measure the filesystem or S3"),
    }
}

#[tokio::main]
async fn main() {
    if std::env::var("GC_FILL_MEASURE").is_ok() {
        let config = StorageConfig::default().apply_env().expect("configuration");
        let d = AnyDriver::from_config(&config).await.expect("storage");
        let (blobs, bytes) = measure(&d).await;
        println!("stored: blobs={blobs} bytes={bytes}");
        return;
    }
    let blobs: usize = std::env::var("GC_FILL_BLOBS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(10_000);
    let images = (blobs - BASES) / 4;
    let config = StorageConfig::default().apply_env().expect("configuration");
    let d = Arc::new(AnyDriver::from_config(&config).await.expect("storage"));
    let started = Instant::now();
    let digests: Vec<Digest> = futures::stream::iter(0..images)
        .map(|k| {
            let d = Arc::clone(&d);
            async move { push(&d, k).await }
        })
        .buffered(IN_FLIGHT)
        .collect()
        .await;
    // Delete every other image: its config and its own layers become unreferenced; the base
    // layers stay referenced by the images kept.
    let mut reclaimable_blobs = 0u64;
    let mut reclaimable_bytes = 0u64;
    let mut total_bytes = 0u64;
    let mut bases = std::collections::HashSet::new();
    for (k, digest) in digests.iter().enumerate() {
        let image = Image::new(k);
        total_bytes += image.config.1.len() as u64;
        total_bytes += image.layers[..3]
            .iter()
            .map(|(_, c)| c.len() as u64)
            .sum::<u64>();
        if bases.insert(image.layers[3].0.clone()) {
            total_bytes += image.layers[3].1.len() as u64;
        }
        if k % 2 == 1 {
            retrying("delete", || d.delete_manifest(&image.repo, digest)).await;
            reclaimable_blobs += 4;
            reclaimable_bytes += image.config.1.len() as u64
                + image.layers[..3]
                    .iter()
                    .map(|(_, c)| c.len() as u64)
                    .sum::<u64>();
        }
    }
    println!(
        "filled: images={images} blobs={} bytes={total_bytes} deleted_images={} reclaimable_blobs={reclaimable_blobs} reclaimable_bytes={reclaimable_bytes} in {:.1}s",
        images * 4 + bases.len(),
        images / 2,
        started.elapsed().as_secs_f64()
    );
}
