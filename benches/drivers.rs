//! Criterion benchmarks of the storage drivers.
//!
//! ```text
//! cargo bench --bench drivers                    # everything
//! cargo bench --bench drivers -- 'blob_put/'     # one group
//! S3_ENDPOINT=... cargo bench --bench drivers    # adds the S3 driver (moto: scripts/start-moto.sh)
//! ```
//!
//! Groups: `blob_put`, `blob_get`, `blob_get_range`, `upload_chunked` (64 KiB / 1 MiB /
//! 8 MiB chunks), `manifest`, `tags`, `hashing` (resumable hasher vs plain sha2) and
//! `dispatch` (AnyDriver vs the concrete driver vs a `Box<dyn>` adapter written only here).

use std::future::Future;
use std::hint::black_box;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};

use bytes::Bytes;
use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use futures::{Stream, StreamExt, stream};
use marina_distribution::oci::{
    Digest, DigestAlgorithm, RangeRequest, Reference, RepositoryName, Tag,
};
use marina_distribution::storage::filesystem::FilesystemDriver;
use marina_distribution::storage::hashing::Hasher;
use marina_distribution::storage::inmemory::InMemoryDriver;
use marina_distribution::storage::{
    EngineOptions, FileInfo, FilesystemConfig, StorageConfig, UploadHandle,
};
use marina_distribution::{AnyDriver, Result, StorageDriver};
use sha2::Digest as _;
use tokio::runtime::Runtime;

const KIB: usize = 1024;
const MIB: usize = 1024 * 1024;

fn runtime() -> Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("tokio runtime")
}

fn data(len: usize, seed: u64) -> Bytes {
    // Cheap deterministic pseudo-random bytes (xorshift), different per seed.
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    let mut v = Vec::with_capacity(len + 8);
    while v.len() < len {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        v.extend_from_slice(&x.to_le_bytes());
    }
    v.truncate(len);
    Bytes::from(v)
}

/// Splits a blob into the chunks a network body would deliver (256 KiB frames).
fn body(bytes: &Bytes, frame: usize) -> impl Stream<Item = Result<Bytes>> + Send + 'static {
    let frames: Vec<Result<Bytes>> = (0..bytes.len().div_ceil(frame.max(1)))
        .map(|i| Ok(bytes.slice(i * frame..((i + 1) * frame).min(bytes.len()))))
        .collect();
    stream::iter(frames)
}

fn repo() -> RepositoryName {
    RepositoryName::parse("bench/repo").unwrap()
}

/// The drivers under test, each with a name for the benchmark id.
struct Drivers {
    list: Vec<(&'static str, AnyDriver)>,
    _dirs: Vec<tempfile::TempDir>,
}

fn drivers(rt: &Runtime) -> Drivers {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut list = vec![
        (
            "inmemory",
            rt.block_on(AnyDriver::from_config(&StorageConfig::inmemory()))
                .unwrap(),
        ),
        (
            "filesystem",
            rt.block_on(AnyDriver::from_config(&StorageConfig::filesystem(
                dir.path(),
            )))
            .unwrap(),
        ),
    ];
    if std::env::var("S3_ENDPOINT").is_ok() {
        let mut cfg = StorageConfig::default().apply_env().unwrap();
        cfg.storage_type = marina_distribution::storage::StorageType::S3;
        if let Some(s3) = cfg.s3.as_mut() {
            s3.prefix = Some(format!("bench-{}", std::process::id()));
        }
        match rt.block_on(AnyDriver::from_config(&cfg)) {
            Ok(d) => list.push(("s3", d)),
            Err(e) => eprintln!("S3 driver skipped: {e}"),
        }
    } else {
        eprintln!("S3 driver skipped: S3_ENDPOINT not set");
    }
    Drivers {
        list,
        _dirs: vec![dir],
    }
}

static SEED: AtomicU64 = AtomicU64::new(1);

fn fresh(len: usize) -> (Bytes, Digest) {
    let b = data(len, SEED.fetch_add(1, Ordering::Relaxed));
    let d = Digest::compute(DigestAlgorithm::Sha256, &b);
    (b, d)
}

async fn drain<S: Stream<Item = Result<Bytes>>>(s: S) -> usize {
    let mut s = std::pin::pin!(s);
    let mut n = 0;
    while let Some(c) = s.next().await {
        n += c.unwrap().len();
    }
    n
}

fn sizes() -> [(&'static str, usize); 3] {
    [("4KiB", 4 * KIB), ("1MiB", MIB), ("64MiB", 64 * MIB)]
}

fn blob_put(c: &mut Criterion) {
    let rt = runtime();
    let ds = drivers(&rt);
    let mut g = c.benchmark_group("blob_put");
    for (label, size) in sizes() {
        g.throughput(Throughput::Bytes(size as u64));
        if size >= MIB {
            g.sample_size(10);
        }
        for (name, d) in &ds.list {
            g.bench_function(BenchmarkId::new(*name, label), |b| {
                b.iter_batched(
                    || fresh(size),
                    |(bytes, digest)| {
                        rt.block_on(d.put_content(
                            &repo(),
                            &digest,
                            Some(bytes.len() as u64),
                            body(&bytes, 256 * KIB),
                        ))
                        .unwrap()
                    },
                    criterion::BatchSize::PerIteration,
                )
            });
        }
    }
    g.finish();
}

fn blob_get(c: &mut Criterion) {
    let rt = runtime();
    let ds = drivers(&rt);
    let mut g = c.benchmark_group("blob_get");
    for (label, size) in sizes() {
        g.throughput(Throughput::Bytes(size as u64));
        if size >= MIB {
            g.sample_size(10);
        }
        for (name, d) in &ds.list {
            let (bytes, digest) = fresh(size);
            rt.block_on(d.put_content(&repo(), &digest, None, body(&bytes, 256 * KIB)))
                .unwrap();
            g.bench_function(BenchmarkId::new(*name, label), |b| {
                b.iter(|| {
                    rt.block_on(async {
                        let r = d.get_content(&repo(), &digest, None).await.unwrap();
                        assert_eq!(drain(r.stream).await, size);
                    })
                })
            });
        }
    }
    g.finish();
}

fn blob_get_range(c: &mut Criterion) {
    let rt = runtime();
    let ds = drivers(&rt);
    let mut g = c.benchmark_group("blob_get_range");
    let (bytes, digest) = fresh(8 * MIB);
    g.throughput(Throughput::Bytes(MIB as u64));
    for (name, d) in &ds.list {
        rt.block_on(d.put_content(&repo(), &digest, None, body(&bytes, 256 * KIB)))
            .unwrap();
        let range = RangeRequest::parse_header("bytes=3000000-4048575");
        g.bench_function(BenchmarkId::new(*name, "1MiB_of_8MiB"), |b| {
            b.iter(|| {
                rt.block_on(async {
                    let r = d.get_content(&repo(), &digest, range).await.unwrap();
                    assert_eq!(drain(r.stream).await, MIB);
                })
            })
        });
    }
    g.finish();
}

fn upload_chunked(c: &mut Criterion) {
    let rt = runtime();
    let ds = drivers(&rt);
    let mut g = c.benchmark_group("upload_chunked");
    g.sample_size(10);
    let total = 32 * MIB;
    g.throughput(Throughput::Bytes(total as u64));
    for (label, chunk) in [("64KiB", 64 * KIB), ("1MiB", MIB), ("8MiB", 8 * MIB)] {
        for (name, d) in &ds.list {
            g.bench_function(BenchmarkId::new(*name, format!("32MiB_in_{label}")), |b| {
                b.iter_batched(
                    || fresh(total),
                    |(bytes, digest)| {
                        rt.block_on(async {
                            let up = d
                                .start_upload(&repo(), DigestAlgorithm::Sha256)
                                .await
                                .unwrap();
                            let id = up.id();
                            let mut off = 0;
                            while off < total {
                                let end = (off + chunk).min(total);
                                let part = bytes.slice(off..end);
                                d.put_upload_chunk(
                                    &repo(),
                                    &id,
                                    Some(off as u64),
                                    Some(part.len() as u64),
                                    body(&part, 256 * KIB),
                                )
                                .await
                                .unwrap();
                                off = end;
                            }
                            d.finish_upload(&repo(), &id, &digest, Some(0), stream::empty())
                                .await
                                .unwrap()
                        })
                    },
                    criterion::BatchSize::PerIteration,
                )
            });
        }
    }
    g.finish();
}

fn manifest_json(config: &Digest, layer: &Digest, n: usize) -> Bytes {
    Bytes::from(format!(
        r#"{{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"{config}","size":4096}},"layers":[{{"mediaType":"application/vnd.oci.image.layer.v1.tar","digest":"{layer}","size":4096}}],"annotations":{{"n":"{n}"}}}}"#
    ))
}

fn manifests_and_tags(c: &mut Criterion) {
    let rt = runtime();
    let ds = drivers(&rt);
    let mut g = c.benchmark_group("manifest");
    for (name, d) in &ds.list {
        let (cfg, cfg_d) = fresh(4096);
        let (layer, layer_d) = fresh(4096);
        rt.block_on(async {
            d.put_content(&repo(), &cfg_d, None, body(&cfg, 4096))
                .await
                .unwrap();
            d.put_content(&repo(), &layer_d, None, body(&layer, 4096))
                .await
                .unwrap();
            for i in 0..200 {
                let tag = Tag::parse(&format!("t{i:04}")).unwrap();
                d.put_manifest(
                    &repo(),
                    &Reference::Tag(tag),
                    None,
                    manifest_json(&cfg_d, &layer_d, i),
                )
                .await
                .unwrap();
            }
        });
        let counter = AtomicU64::new(10_000);
        g.bench_function(BenchmarkId::new("put", name), |b| {
            b.iter(|| {
                let i = counter.fetch_add(1, Ordering::Relaxed) as usize;
                let m = manifest_json(&cfg_d, &layer_d, i);
                let tag = Tag::parse(&format!("p{i}")).unwrap();
                rt.block_on(d.put_manifest(&repo(), &Reference::Tag(tag), None, m))
                    .unwrap()
            })
        });
        let latest = Reference::Tag(Tag::parse("t0100").unwrap());
        g.bench_function(BenchmarkId::new("get_by_tag", name), |b| {
            b.iter(|| rt.block_on(d.get_manifest(&repo(), &latest)).unwrap())
        });
        let tag = Tag::parse("t0100").unwrap();
        g.bench_function(BenchmarkId::new("resolve_tag", name), |b| {
            b.iter(|| rt.block_on(d.resolve_tag(&repo(), &tag)).unwrap())
        });
        g.bench_function(BenchmarkId::new("list_tags_n100", name), |b| {
            b.iter(|| {
                rt.block_on(d.get_tags(&repo(), Some(100), Some("t0050")))
                    .unwrap()
            })
        });
    }
    g.finish();
}

fn hashing(c: &mut Criterion) {
    let mut g = c.benchmark_group("hashing");
    let bytes = data(64 * MIB, 7);
    g.throughput(Throughput::Bytes(bytes.len() as u64));
    g.sample_size(10);
    g.bench_function("plain_sha2_sha256", |b| {
        b.iter(|| black_box(sha2::Sha256::digest(&bytes)))
    });
    g.bench_function("resumable_sha256_1MiB_updates_with_checkpoints", |b| {
        b.iter(|| {
            let mut h = Hasher::new(DigestAlgorithm::Sha256);
            for chunk in bytes.chunks(MIB) {
                h.update(chunk);
                black_box(h.checkpoint());
            }
            h.digest()
        })
    });
    g.bench_function("plain_sha2_sha512", |b| {
        b.iter(|| black_box(sha2::Sha512::digest(&bytes)))
    });
    g.finish();
}

/// An object-safe mirror of two driver operations, the way a `dyn`-based library would
/// expose them: boxed futures and boxed streams.
trait DynDriver: Send + Sync {
    fn stat<'a>(
        &'a self,
        repo: &'a RepositoryName,
        digest: &'a Digest,
    ) -> Pin<Box<dyn Future<Output = Result<FileInfo>> + Send + 'a>>;
    #[allow(clippy::type_complexity)]
    fn get<'a>(
        &'a self,
        repo: &'a RepositoryName,
        digest: &'a Digest,
    ) -> Pin<
        Box<
            dyn Future<Output = Result<Pin<Box<dyn Stream<Item = Result<Bytes>> + Send>>>>
                + Send
                + 'a,
        >,
    >;
}

impl<D: StorageDriver> DynDriver for D {
    fn stat<'a>(
        &'a self,
        repo: &'a RepositoryName,
        digest: &'a Digest,
    ) -> Pin<Box<dyn Future<Output = Result<FileInfo>> + Send + 'a>> {
        Box::pin(StorageDriver::stat(self, repo, digest))
    }
    fn get<'a>(
        &'a self,
        repo: &'a RepositoryName,
        digest: &'a Digest,
    ) -> Pin<
        Box<
            dyn Future<Output = Result<Pin<Box<dyn Stream<Item = Result<Bytes>> + Send>>>>
                + Send
                + 'a,
        >,
    > {
        Box::pin(async move {
            let r = self.get_content(repo, digest, None).await?;
            Ok(Box::pin(r.stream) as Pin<Box<dyn Stream<Item = Result<Bytes>> + Send>>)
        })
    }
}

fn dispatch(c: &mut Criterion) {
    let rt = runtime();
    let dir = tempfile::tempdir().unwrap();
    let mut g = c.benchmark_group("dispatch");
    let (bytes, digest) = fresh(4 * KIB);
    let r = repo();

    let concrete_mem = InMemoryDriver::new_in_memory();
    let any_mem = rt
        .block_on(AnyDriver::from_config(&StorageConfig::inmemory()))
        .unwrap();
    let concrete_fs = rt
        .block_on(FilesystemDriver::open(
            &FilesystemConfig {
                root_directory: dir.path().join("concrete"),
            },
            EngineOptions::default(),
        ))
        .unwrap();
    let any_fs = rt
        .block_on(AnyDriver::from_config(&StorageConfig::filesystem(
            dir.path().join("any"),
        )))
        .unwrap();
    rt.block_on(async {
        concrete_mem
            .put_content(&r, &digest, None, body(&bytes, 4096))
            .await
            .unwrap();
        any_mem
            .put_content(&r, &digest, None, body(&bytes, 4096))
            .await
            .unwrap();
        concrete_fs
            .put_content(&r, &digest, None, body(&bytes, 4096))
            .await
            .unwrap();
        any_fs
            .put_content(&r, &digest, None, body(&bytes, 4096))
            .await
            .unwrap();
    });
    // The boxed adapter wraps its own in-memory driver, filled through the concrete API.
    let boxed_inner = InMemoryDriver::new_in_memory();
    rt.block_on(boxed_inner.put_content(&r, &digest, None, body(&bytes, 4096)))
        .unwrap();
    let boxed_mem: Box<dyn DynDriver> = Box::new(boxed_inner);

    g.bench_function("stat/inmemory/concrete", |b| {
        b.iter(|| {
            rt.block_on(StorageDriver::stat(&concrete_mem, &r, &digest))
                .unwrap()
        })
    });
    g.bench_function("stat/inmemory/any", |b| {
        b.iter(|| {
            rt.block_on(StorageDriver::stat(&any_mem, &r, &digest))
                .unwrap()
        })
    });
    g.bench_function("stat/inmemory/boxed_dyn", |b| {
        b.iter(|| rt.block_on(boxed_mem.stat(&r, &digest)).unwrap())
    });
    g.throughput(Throughput::Bytes(bytes.len() as u64));
    g.bench_function("get_4KiB/inmemory/concrete", |b| {
        b.iter(|| {
            rt.block_on(async {
                drain(
                    concrete_mem
                        .get_content(&r, &digest, None)
                        .await
                        .unwrap()
                        .stream,
                )
                .await
            })
        })
    });
    g.bench_function("get_4KiB/inmemory/any", |b| {
        b.iter(|| {
            rt.block_on(async {
                drain(any_mem.get_content(&r, &digest, None).await.unwrap().stream).await
            })
        })
    });
    g.bench_function("get_4KiB/inmemory/boxed_dyn", |b| {
        b.iter(|| rt.block_on(async { drain(boxed_mem.get(&r, &digest).await.unwrap()).await }))
    });
    g.bench_function("get_4KiB/filesystem/concrete", |b| {
        b.iter(|| {
            rt.block_on(async {
                drain(
                    concrete_fs
                        .get_content(&r, &digest, None)
                        .await
                        .unwrap()
                        .stream,
                )
                .await
            })
        })
    });
    g.bench_function("get_4KiB/filesystem/any", |b| {
        b.iter(|| {
            rt.block_on(async {
                drain(any_fs.get_content(&r, &digest, None).await.unwrap().stream).await
            })
        })
    });
    g.finish();
}

criterion_group!(
    benches,
    blob_put,
    blob_get,
    blob_get_range,
    upload_chunked,
    manifests_and_tags,
    hashing,
    dispatch
);
criterion_main!(benches);
