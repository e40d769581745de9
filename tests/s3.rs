//! S3 driver tests against a real S3 server (moto in CI, any S3-compatible store works).
//!
//! Configuration (all from the environment):
//! `S3_ENDPOINT` (required, e.g. `http://127.0.0.1:5050`), `S3_BUCKET` (default
//! `marina-test`, created if missing), `S3_REGION` (default `us-east-1`),
//! `S3_FORCE_PATH_STYLE` (default `true`), `AWS_ACCESS_KEY_ID` and `AWS_SECRET_ACCESS_KEY`.
//! Every test works below its own random prefix.
//!
//! ```sh
//! eval "$(scripts/start-moto.sh)"
//! cargo test --all-features --test s3
//! kill "$MOTO_PID"
//! ```
//!
//! Without `S3_ENDPOINT` every test prints that it was skipped and how to run it.
#![cfg(feature = "s3")]

#[path = "common/session_race.rs"]
mod session_race;

use bytes::Bytes;
use futures::{Stream, StreamExt, stream};
use marina_distribution::Error;
use marina_distribution::oci::{
    Digest, DigestAlgorithm, RangeRequest, Reference, RepositoryName, Tag,
};
use marina_distribution::storage::s3::{S3Backend, S3Driver};
use marina_distribution::storage::{
    CacheConfig, EngineOptions, S3ChecksumPolicy, S3Config, StorageConfig, StorageDriver,
    UploadHandle, UploadId,
};

const MIB: usize = 1024 * 1024;
/// Part size used by the tests: S3's minimum, so multi-part cases stay small.
const PART: usize = 5 * MIB;

macro_rules! s3_or_skip {
    ($name:expr) => {
        match S3Env::from_env() {
            Some(env) => env,
            None => {
                skipped($name);
                return;
            }
        }
    };
}

/// Says that a test did not run. Written to the process's stderr directly (not through
/// `eprintln!`, which the test harness captures) so a plain `cargo test` shows it.
fn skipped(test: &str) {
    use std::io::Write;
    let _ = writeln!(
        std::io::stderr(),
        "S3 tests skipped: S3_ENDPOINT not set; run scripts/test.sh to start a local S3 server \
         ({test} not run)"
    );
}

/// The S3 server under test, from the variables the registry itself reads
/// (`StorageConfig::apply_env`: `S3_ENDPOINT`, `S3_BUCKET`, `S3_REGION`, ...).
struct S3Env {
    base: S3Config,
    region: String,
}

impl S3Env {
    fn from_env() -> Option<Self> {
        std::env::var("S3_ENDPOINT")
            .ok()
            .filter(|v| !v.is_empty())?;
        let base = StorageConfig::default()
            .apply_env()
            .expect("S3_* environment variables")
            .s3
            .expect("S3_ENDPOINT is set");
        let region = base.region.clone().unwrap_or_else(|| "us-east-1".into());
        Some(Self { base, region })
    }

    /// A configuration under a fresh prefix.
    fn config(&self, test: &str) -> S3Config {
        let mut c = self.base.clone();
        c.region = Some(self.region.clone());
        c.prefix = Some(format!("test-{test}-{:016x}/", rand_u64()));
        c.part_size = Some(PART as u64);
        c
    }

    /// A driver on a fresh prefix (bucket created if missing).
    async fn driver(&self, test: &str) -> S3Driver {
        let config = self.config(test);
        self.driver_for(&config).await
    }

    async fn driver_for(&self, config: &S3Config) -> S3Driver {
        S3Driver::from_backend(self.backend(config).await, EngineOptions::default())
    }

    /// A driver on `config` whose metadata cache keeps entries `ttl_ms`.
    async fn driver_with_ttl(&self, config: &S3Config, ttl_ms: u64) -> S3Driver {
        let options = EngineOptions {
            cache: CacheConfig {
                ttl_ms,
                ..CacheConfig::default()
            },
            ..EngineOptions::default()
        };
        S3Driver::from_backend(self.backend(config).await, options)
    }

    /// A backend on `config`, its bucket created first (connecting checks it).
    async fn backend(&self, config: &S3Config) -> S3Backend {
        let sdk = aws_config::load_defaults(aws_config::BehaviorVersion::latest()).await;
        ensure_bucket(
            &S3Backend::connect_with(config, &sdk).expect("config"),
            &self.region,
        )
        .await;
        S3Backend::connect(config).await.expect("connect")
    }
}

fn rand_u64() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos(),
    );
    h.finish()
}

async fn ensure_bucket(backend: &S3Backend, region: &str) {
    let client = backend.client();
    if client
        .head_bucket()
        .bucket(backend.bucket())
        .send()
        .await
        .is_ok()
    {
        return;
    }
    let mut req = client.create_bucket().bucket(backend.bucket());
    if region != "us-east-1" {
        req = req.create_bucket_configuration(
            aws_sdk_s3::types::CreateBucketConfiguration::builder()
                .location_constraint(aws_sdk_s3::types::BucketLocationConstraint::from(region))
                .build(),
        );
    }
    if let Err(e) = req.send().await {
        let code = aws_sdk_s3::error::ProvideErrorMetadata::code(&e).unwrap_or_default();
        assert!(
            code == "BucketAlreadyOwnedByYou" || code == "BucketAlreadyExists",
            "creating bucket: {}",
            aws_sdk_s3::error::DisplayErrorContext(&e)
        );
    }
}

/// Deterministic pseudo-random bytes.
fn data(len: usize, seed: u64) -> Bytes {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    let mut out = Vec::with_capacity(len + 8);
    while out.len() < len {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        out.extend_from_slice(&x.to_le_bytes());
    }
    out.truncate(len);
    out.into()
}

fn sha256(b: &[u8]) -> Digest {
    Digest::compute(DigestAlgorithm::Sha256, b)
}

fn repo(name: &str) -> RepositoryName {
    RepositoryName::parse(name).unwrap()
}

/// Cuts `data` into consecutive pieces whose sizes cycle through `sizes`.
fn cut(data: &Bytes, sizes: &[usize]) -> Vec<Bytes> {
    let mut out = Vec::new();
    let mut pos = 0;
    let mut i = 0;
    while pos < data.len() {
        let n = sizes[i % sizes.len()].min(data.len() - pos);
        out.push(data.slice(pos..pos + n));
        pos += n;
        i += 1;
    }
    out
}

fn body(chunks: Vec<Bytes>) -> impl Stream<Item = marina_distribution::Result<Bytes>> + Send {
    stream::iter(chunks.into_iter().map(Ok))
}

fn empty() -> impl Stream<Item = marina_distribution::Result<Bytes>> + Send {
    stream::iter(Vec::<marina_distribution::Result<Bytes>>::new())
}

async fn read_all<D: StorageDriver>(
    d: &D,
    r: &RepositoryName,
    digest: &Digest,
    range: Option<RangeRequest>,
) -> Bytes {
    let read = d.get_content(r, digest, range).await.expect("get_content");
    let mut out = Vec::new();
    let mut s = std::pin::pin!(read.stream);
    while let Some(chunk) = s.next().await {
        out.extend_from_slice(&chunk.expect("blob chunk"));
    }
    out.into()
}

/// Opens a sha256 upload session in `r`; returns its id.
async fn start_upload<D: StorageDriver>(d: &D, r: &RepositoryName) -> UploadId {
    d.start_upload(r, DigestAlgorithm::Sha256)
        .await
        .unwrap()
        .progress()
        .id
}

/// Multipart uploads in progress below the driver's prefix.
async fn multipart_uploads(d: &S3Driver) -> Vec<String> {
    let b = d.backend();
    let prefix = b.object_key_prefix();
    let out = b
        .client()
        .list_multipart_uploads()
        .bucket(b.bucket())
        .prefix(&prefix)
        .send()
        .await
        .expect("ListMultipartUploads");
    out.uploads()
        .iter()
        .map(|u| u.key().unwrap_or_default().to_owned())
        .collect()
}

/// Object keys below `<prefix><sub>`.
async fn objects(d: &S3Driver, sub: &str) -> Vec<String> {
    let b = d.backend();
    let prefix = format!("{}{sub}", b.object_key_prefix());
    let out = b
        .client()
        .list_objects_v2()
        .bucket(b.bucket())
        .prefix(&prefix)
        .send()
        .await
        .expect("ListObjectsV2");
    out.contents()
        .iter()
        .map(|o| o.key().unwrap_or_default().to_owned())
        .collect()
}

/// Asserts the upload machinery left nothing behind below the prefix.
async fn assert_no_upload_leftovers(d: &S3Driver) {
    assert_eq!(
        multipart_uploads(d).await,
        Vec::<String>::new(),
        "multipart uploads left"
    );
    assert_eq!(
        objects(d, "uploads/").await,
        Vec::<String>::new(),
        "upload objects left"
    );
}

/// Pushes `data` as a chunked upload, one `put_upload_chunk` per element of `chunks`, each
/// chunk's body split into frames of `frame` bytes; finishes with an empty body.
async fn push_chunked(
    d: &S3Driver,
    r: &RepositoryName,
    data: &Bytes,
    chunks: &[usize],
    frame: usize,
) {
    let digest = sha256(data);
    let upload = d.start_upload(r, DigestAlgorithm::Sha256).await.unwrap();
    let id = upload.progress().id;
    let mut offset = 0u64;
    for chunk in cut(data, chunks) {
        let len = chunk.len() as u64;
        let p = d
            .put_upload_chunk(r, &id, Some(offset), Some(len), body(cut(&chunk, &[frame])))
            .await
            .expect("chunk");
        offset += len;
        assert_eq!(p.progress().offset, offset);
        // The bounded-memory invariant: every part but the staged tail is one part size
        // (all equal, so R2's rule holds too), and the tail is below one part.
        let state = p.backend_state();
        assert!(
            state.parts.iter().all(|part| part.size == PART as u64),
            "{state:?}"
        );
        assert!(state.staged_len() < PART as u64, "{state:?}");
        assert_eq!(
            state.multipart.is_some(),
            !state.parts.is_empty(),
            "{state:?}"
        );
    }
    let info = d
        .finish_upload(r, &id, &digest, None, empty())
        .await
        .expect("finish");
    assert_eq!(info.size, data.len() as u64);
    assert_eq!(info.digest, digest);
}

/// A presigned read of a stored blob serves its bytes to a plain HTTP client, straight from
/// the store (the capability a registry redirects blob pulls with), through the layers the
/// driver is assembled from.
#[tokio::test]
async fn presigned_blob_reads_serve_the_blob() {
    use marina_distribution::storage::presign::PresignBlobReads;
    let env = s3_or_skip!("presigned_blob_reads_serve_the_blob");
    let d = env.driver("presign").await;
    let r = repo("s3/presign");
    let blob = data(100_000, 3);
    let digest = sha256(&blob);
    let body = stream::iter([Ok(blob.clone())]);
    d.put_content(&r, &digest, None, body).await.unwrap();
    let expires_in = std::time::Duration::from_secs(300);
    let signed = d
        .backend()
        .presign_read_blob(&digest, expires_in)
        .await
        .unwrap();
    assert!(signed.url.contains("X-Amz-Signature="), "{}", signed.url);
    assert!(signed.expires_at > std::time::SystemTime::now());
    let mut request = reqwest::Client::new().get(&signed.url);
    for (name, value) in &signed.headers {
        request = request.header(name, value);
    }
    let response = request.send().await.unwrap();
    assert_eq!(response.status(), 200);
    assert!(response.bytes().await.unwrap() == blob);
}

#[tokio::test]
async fn chunked_upload_of_mixed_chunk_sizes() {
    let env = s3_or_skip!("chunked_upload_of_mixed_chunk_sizes");
    let d = env.driver("mixed").await;
    let r = repo("s3/mixed");
    let blob = data(12 * MIB + 12_345, 1);
    push_chunked(
        &d,
        &r,
        &blob,
        &[1, MIB, 7 * MIB, 3, 100 * 1024, 2 * MIB + 7],
        64 * 1024,
    )
    .await;
    let digest = sha256(&blob);
    assert_eq!(read_all(&d, &r, &digest, None).await, blob);
    assert_eq!(d.stat(&r, &digest).await.unwrap().size, blob.len() as u64);
    // The blob lives at its content address below the prefix.
    let key = format!(
        "{}blobs/sha256/{}",
        d.backend().object_key_prefix(),
        digest.hex()
    );
    assert_eq!(objects(&d, "blobs/").await, vec![key]);
    assert_no_upload_leftovers(&d).await;
}

#[tokio::test]
async fn chunks_whose_sum_is_exactly_parts() {
    let env = s3_or_skip!("chunks_whose_sum_is_exactly_parts");
    let d = env.driver("exact").await;
    let r = repo("s3/exact");
    // Chunks of exactly one part: no staging at all, and a final part of full size.
    let blob = data(2 * PART, 2);
    push_chunked(&d, &r, &blob, &[PART], MIB).await;
    assert_eq!(read_all(&d, &r, &sha256(&blob), None).await, blob);
    assert_no_upload_leftovers(&d).await;
}

#[tokio::test]
async fn one_byte_chunks_and_frames() {
    let env = s3_or_skip!("one_byte_chunks_and_frames");
    let d = env.driver("onebyte").await;
    let r = repo("s3/onebyte");
    // 40 PATCH requests of one byte each, then one whose body crosses a part boundary in
    // one-byte frames, then more one-byte requests.
    let blob = data(40 + PART + 100 + 20, 3);
    let digest = sha256(&blob);
    let id = start_upload(&d, &r).await;
    let mut offset = 0usize;
    for i in 0..40 {
        d.put_upload_chunk(
            &r,
            &id,
            Some(offset as u64),
            Some(1),
            body(vec![blob.slice(i..i + 1)]),
        )
        .await
        .expect("one-byte chunk");
        offset += 1;
    }
    let big = blob.slice(offset..offset + PART + 100);
    let p = d
        .put_upload_chunk(&r, &id, Some(offset as u64), None, body(cut(&big, &[1])))
        .await
        .expect("chunk of one-byte frames");
    offset += PART + 100;
    assert_eq!(p.progress().offset, offset as u64);
    assert_eq!(p.backend_state().parts.len(), 1);
    assert_eq!(p.backend_state().staged_len(), 140);
    while offset < blob.len() {
        d.put_upload_chunk(
            &r,
            &id,
            Some(offset as u64),
            None,
            body(vec![blob.slice(offset..offset + 1)]),
        )
        .await
        .expect("one-byte chunk");
        offset += 1;
    }
    d.finish_upload(&r, &id, &digest, None, empty())
        .await
        .expect("finish");
    assert_eq!(read_all(&d, &r, &digest, None).await, blob);
    assert_no_upload_leftovers(&d).await;
}

#[tokio::test]
async fn monolithic_puts_small_and_multipart() {
    let env = s3_or_skip!("monolithic_puts_small_and_multipart");
    let d = env.driver("mono").await;
    let r = repo("s3/mono");
    // Below a part: one PutObject from memory. Above, with the length declared: one
    // streamed PutObject (`single_put_limit`); without: a multipart upload on the blob's key.
    for (len, seed, declared) in [
        (100usize, 4u64, true),
        (11 * MIB + 3, 5, true),
        (11 * MIB + 5, 6, false),
    ] {
        let blob = data(len, seed);
        let digest = sha256(&blob);
        let info = d
            .put_content(
                &r,
                &digest,
                declared.then_some(len as u64),
                body(cut(&blob, &[64 * 1024])),
            )
            .await
            .expect("put_content");
        assert_eq!(info.size, len as u64);
        assert!(info.path.starts_with("s3://"), "{}", info.path);
        assert_eq!(read_all(&d, &r, &digest, None).await, blob);
        assert_no_upload_leftovers(&d).await;
        // Pushing it again (deduplicated) works and changes nothing.
        d.put_content(&r, &digest, None, body(vec![blob.clone()]))
            .await
            .expect("put_content again");
        assert_eq!(read_all(&d, &r, &digest, None).await, blob);
    }
}

#[tokio::test]
async fn ranged_reads() {
    let env = s3_or_skip!("ranged_reads");
    let d = env.driver("ranges").await;
    let r = repo("s3/ranges");
    let blob = data(6 * MIB + 10, 6);
    let digest = sha256(&blob);
    d.put_content(&r, &digest, None, body(vec![blob.clone()]))
        .await
        .unwrap();
    let len = blob.len() as u64;
    let cases = [
        (
            RangeRequest::FromTo {
                first: 0,
                last: Some(0),
            },
            blob.slice(0..1),
        ),
        (
            RangeRequest::FromTo {
                first: 10,
                last: Some(5 * MIB as u64 + 9),
            },
            blob.slice(10..5 * MIB + 10),
        ),
        (
            RangeRequest::FromTo {
                first: len - 3,
                last: None,
            },
            blob.slice(blob.len() - 3..),
        ),
        (
            RangeRequest::FromTo {
                first: 7,
                last: Some(len + 100),
            },
            blob.slice(7..),
        ),
        (RangeRequest::Suffix(1000), blob.slice(blob.len() - 1000..)),
    ];
    for (range, want) in cases {
        let read = d.get_content(&r, &digest, Some(range)).await.unwrap();
        assert_eq!(
            read.range.map(|r| r.len()),
            Some(want.len() as u64),
            "{range:?}"
        );
        assert_eq!(
            read_all(&d, &r, &digest, Some(range)).await,
            want,
            "{range:?}"
        );
    }
    let err = d
        .get_content(
            &r,
            &digest,
            Some(RangeRequest::FromTo {
                first: len,
                last: None,
            }),
        )
        .await
        .expect_err("unsatisfiable range");
    assert!(matches!(err, Error::RangeInvalid { .. }), "{err:?}");
    // An unknown blob is BLOB_UNKNOWN.
    let missing = sha256(b"missing");
    let err = d
        .get_content(&r, &missing, None)
        .await
        .expect_err("unknown blob");
    assert!(matches!(err, Error::BlobUnknown(_)), "{err:?}");
}

/// Pushes a config blob and a manifest; returns the manifest digest.
async fn push_manifest(
    d: &S3Driver,
    r: &RepositoryName,
    layer: Option<(&Digest, u64)>,
    tag: &str,
) -> Digest {
    let config = Bytes::from_static(b"{}");
    let config_digest = sha256(&config);
    d.put_content(r, &config_digest, None, body(vec![config]))
        .await
        .unwrap();
    let layers = match layer {
        Some((digest, size)) => format!(
            r#"[{{"mediaType":"application/vnd.oci.image.layer.v1.tar","digest":"{digest}","size":{size}}}]"#
        ),
        None => "[]".to_owned(),
    };
    let manifest = format!(
        r#"{{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{{"mediaType":"application/vnd.oci.empty.v1+json","digest":"{config_digest}","size":2}},"layers":{layers}}}"#
    );
    d.put_manifest(
        r,
        &Reference::Tag(Tag::parse(tag).unwrap()),
        None,
        Bytes::from(manifest),
    )
    .await
    .expect("put_manifest")
    .digest
}

#[tokio::test]
async fn tags_listing_prefix_boundaries_and_pagination() {
    let env = s3_or_skip!("tags_listing_prefix_boundaries_and_pagination");
    let d = env.driver("tags").await;
    let r = repo("s3/tags");
    let nested = repo("s3/tags/v1");
    let manifest = push_manifest(&d, &r, None, "v1").await;
    push_manifest(&d, &nested, None, "inner").await;
    let mut want: Vec<String> = [
        "v1", "v1.0", "v1.0.1", "v10", "v1-rc", "v1_x", "V1", "a", "z",
    ]
    .into_iter()
    .map(str::to_owned)
    .collect();
    // Enough tags to need several ListObjectsV2 pages (1,000 keys each).
    want.extend((0..1050).map(|i| format!("t{i:04}")));
    futures::stream::iter(want.clone())
        .for_each_concurrent(16, |t| {
            let (d, r, manifest) = (&d, &r, &manifest);
            async move {
                d.tag_manifest(r, &Tag::parse(&t).unwrap(), manifest)
                    .await
                    .unwrap();
            }
        })
        .await;
    want.sort();
    let all = d.get_tags(&r, None, None).await.unwrap();
    assert_eq!(
        all.tags, want,
        "tags of the nested repository must not leak in"
    );
    assert!(!all.has_more);
    // `last` is exclusive and `v1` is not a prefix match for `v1.0`.
    let page = d.get_tags(&r, Some(2), Some("v1")).await.unwrap();
    assert_eq!(page.tags, vec!["v1-rc", "v1.0"]);
    assert!(page.has_more);
    let page = d.get_tags(&r, Some(3), Some("v1.0")).await.unwrap();
    assert_eq!(page.tags, vec!["v1.0.1", "v10", "v1_x"]);
    // Page through everything with n=7.
    let mut seen = Vec::new();
    let mut last: Option<String> = None;
    loop {
        let page = d.get_tags(&r, Some(7), last.as_deref()).await.unwrap();
        seen.extend(page.tags.iter().cloned());
        last = page.tags.last().cloned();
        if !page.has_more {
            break;
        }
    }
    assert_eq!(seen, want);
    // A page crossing a ListObjectsV2 page boundary.
    let page = d.get_tags(&r, Some(1005), Some("a")).await.unwrap();
    assert_eq!(want[1], "a");
    assert_eq!(page.tags, want[2..1007].to_vec());
    assert!(page.has_more);
    assert_eq!(
        d.get_tags(&nested, None, None).await.unwrap().tags,
        vec!["inner"]
    );
}

#[tokio::test]
async fn abort_leaves_no_multipart_upload_nor_staged_object() {
    let env = s3_or_skip!("abort_leaves_no_multipart_upload_nor_staged_object");
    let d = env.driver("abort").await;
    let r = repo("s3/abort");
    let blob = data(7 * MIB, 7);
    let id = start_upload(&d, &r).await;
    let p = d
        .put_upload_chunk(&r, &id, Some(0), None, body(cut(&blob, &[MIB])))
        .await
        .unwrap();
    assert!(p.backend_state().multipart.is_some());
    assert_eq!(p.backend_state().staged.len(), 1);
    assert_eq!(multipart_uploads(&d).await.len(), 1);
    assert_eq!(objects(&d, "uploads/").await.len(), 1);
    d.abort_upload(&r, &id).await.expect("abort");
    assert_no_upload_leftovers(&d).await;
    let err = d.get_upload_progress(&r, &id).await.expect_err("aborted");
    assert!(matches!(err, Error::BlobUploadUnknown(_)), "{err:?}");
    assert_eq!(objects(&d, "blobs/").await, Vec::<String>::new());
}

#[tokio::test]
async fn digest_mismatch_leaves_nothing_visible() {
    let env = s3_or_skip!("digest_mismatch_leaves_nothing_visible");
    let d = env.driver("mismatch").await;
    let r = repo("s3/mismatch");
    let blob = data(6 * MIB + 1, 8);
    let wrong = sha256(b"something else");
    // Chunked.
    let id = start_upload(&d, &r).await;
    d.put_upload_chunk(&r, &id, Some(0), None, body(cut(&blob, &[MIB])))
        .await
        .unwrap();
    let err = d
        .finish_upload(&r, &id, &wrong, None, empty())
        .await
        .expect_err("mismatch");
    assert!(matches!(err, Error::DigestInvalid(_)), "{err:?}");
    // Monolithic: the multipart upload was opened on the blob key itself.
    let err = d
        .put_content(&r, &wrong, None, body(cut(&blob, &[MIB])))
        .await
        .expect_err("mismatch");
    assert!(matches!(err, Error::DigestInvalid(_)), "{err:?}");
    // Monolithic with the length declared: one streamed PutObject on the blob key, whose
    // last chunk is never sent when the digest or the length does not match.
    let len = blob.len() as u64;
    let err = d
        .put_content(&r, &wrong, Some(len), body(cut(&blob, &[MIB])))
        .await
        .expect_err("mismatch");
    assert!(matches!(err, Error::DigestInvalid(_)), "{err:?}");
    let short = blob.slice(..blob.len() - 1);
    let err = d
        .put_content(&r, &sha256(&blob), Some(len), body(cut(&short, &[MIB])))
        .await
        .expect_err("short");
    assert!(matches!(err, Error::SizeInvalid(_)), "{err:?}");
    assert_no_upload_leftovers(&d).await;
    assert_eq!(objects(&d, "blobs/").await, Vec::<String>::new());
    for digest in [&wrong, &sha256(&blob)] {
        let err = d.stat(&r, digest).await.expect_err("not visible");
        assert!(matches!(err, Error::BlobUnknown(_)), "{err:?}");
    }
}

#[tokio::test]
async fn zero_byte_blob() {
    let env = s3_or_skip!("zero_byte_blob");
    let d = env.driver("empty").await;
    let r = repo("s3/empty");
    let digest = sha256(b"");
    let id = start_upload(&d, &r).await;
    d.put_upload_chunk(&r, &id, Some(0), Some(0), empty())
        .await
        .unwrap();
    let info = d
        .finish_upload(&r, &id, &digest, Some(0), empty())
        .await
        .unwrap();
    assert_eq!(info.size, 0);
    assert_eq!(read_all(&d, &r, &digest, None).await, Bytes::new());
    assert_no_upload_leftovers(&d).await;
    let r2 = repo("s3/empty2");
    d.put_content(&r2, &digest, Some(0), empty()).await.unwrap();
    assert_eq!(d.stat(&r2, &digest).await.unwrap().size, 0);
    assert_eq!(read_all(&d, &r2, &digest, None).await, Bytes::new());
}

/// Issue 4 point 5: two driver instances (as two registry processes would be) on one bucket
/// and prefix share one chunked upload, alternating requests, then manifest and tag
/// operations, each read back through the other instance.
#[tokio::test]
async fn two_drivers_on_one_bucket_alternate_requests() {
    let env = s3_or_skip!("two_drivers_on_one_bucket_alternate_requests");
    let config = env.config("two");
    // Another process's delete is seen within the cache's time to live (see below).
    let ttl = std::time::Duration::from_millis(300);
    let a = env.driver_with_ttl(&config, 300).await;
    let b = env.driver_with_ttl(&config, 300).await;
    let drivers = [&a, &b];
    let r = repo("s3/shared");
    let blob = data(13 * MIB + 5, 9);
    let digest = sha256(&blob);
    let id = start_upload(&a, &r).await;
    let mut offset = 0u64;
    for (i, chunk) in cut(&blob, &[3 * MIB, 1, 4 * MIB + 9, 700_000])
        .into_iter()
        .enumerate()
    {
        let d = drivers[i % 2];
        let other = drivers[(i + 1) % 2];
        assert_eq!(
            other
                .get_upload_progress(&r, &id)
                .await
                .unwrap()
                .progress()
                .offset,
            offset
        );
        let len = chunk.len() as u64;
        d.put_upload_chunk(
            &r,
            &id,
            Some(offset),
            Some(len),
            body(cut(&chunk, &[100_000])),
        )
        .await
        .unwrap_or_else(|e| panic!("chunk {i} on driver {}: {e}", i % 2));
        offset += len;
        // An out-of-order chunk on the other instance is refused and changes nothing.
        let err = other
            .put_upload_chunk(&r, &id, Some(0), None, body(vec![Bytes::from_static(b"x")]))
            .await
            .expect_err("out of order");
        assert!(
            matches!(err, Error::RangeInvalid { size, .. } if size == offset),
            "{err:?}"
        );
    }
    b.finish_upload(&r, &id, &digest, None, empty())
        .await
        .expect("finish on b");
    assert_no_upload_leftovers(&a).await;
    let manifest = push_manifest(&a, &r, Some((&digest, blob.len() as u64)), "v1").await;
    let v1 = Reference::Tag(Tag::parse("v1").unwrap());
    assert_eq!(b.get_manifest(&r, &v1).await.unwrap().info.digest, manifest);
    b.tag_manifest(&r, &Tag::parse("v1.0").unwrap(), &manifest)
        .await
        .unwrap();
    assert_eq!(
        a.get_tags(&r, None, None).await.unwrap().tags,
        vec!["v1", "v1.0"]
    );
    assert_eq!(read_all(&a, &r, &digest, None).await, blob);
    let tail = RangeRequest::Suffix(10);
    assert_eq!(
        read_all(&b, &r, &digest, Some(tail)).await,
        blob.slice(blob.len() - 10..)
    );
    a.untag_manifest(&r, &Tag::parse("v1").unwrap())
        .await
        .unwrap();
    // `b` may have the tag cached: gone for it once the entry expired.
    tokio::time::sleep(ttl).await;
    let err = b
        .resolve_tag(&r, &Tag::parse("v1").unwrap())
        .await
        .expect_err("untagged");
    assert!(matches!(err, Error::ManifestUnknown(_)), "{err:?}");
    b.delete_manifest(&r, &manifest).await.unwrap();
    assert!(a.get_tags(&r, None, None).await.unwrap().tags.is_empty());
}

/// The metadata cache across processes (two drivers on one prefix): reads are answered from
/// memory once cached; the process that deletes sees its delete at once, the other one within
/// the cache's time to live.
#[tokio::test]
async fn another_process_sees_deletes_within_the_cache_ttl() {
    let env = s3_or_skip!("another_process_sees_deletes_within_the_cache_ttl");
    let config = env.config("cachettl");
    let a = env.driver_with_ttl(&config, 400).await;
    let b = env.driver_with_ttl(&config, 400).await;
    let r = repo("s3/cache");
    let blob = data(1000, 3);
    let digest = sha256(&blob);
    a.put_content(&r, &digest, None, body(vec![blob]))
        .await
        .unwrap();
    let manifest = push_manifest(&a, &r, Some((&digest, 1000)), "v1").await;
    let v1 = Reference::Tag(Tag::parse("v1").unwrap());
    let by_digest = Reference::Digest(manifest.clone());
    for _ in 0..2 {
        assert_eq!(b.stat(&r, &digest).await.unwrap().size, 1000);
        assert_eq!(b.get_manifest(&r, &v1).await.unwrap().info.digest, manifest);
    }
    let stats = b.cache().expect("on by default for S3").stats();
    assert_eq!((stats.links.hits, stats.links.misses), (1, 1));
    assert_eq!((stats.tags.hits, stats.tags.misses), (1, 1));
    assert_eq!((stats.manifests.hits, stats.manifests.misses), (1, 1));
    a.delete(&r, &digest).await.unwrap();
    a.delete_manifest(&r, &manifest).await.unwrap();
    // The deleting process: at once, though `a` had cached nothing of it (writes read the
    // store) and whatever reads it made are dropped with the delete.
    assert!(matches!(
        a.stat(&r, &digest).await,
        Err(Error::BlobUnknown(_))
    ));
    for reference in [&v1, &by_digest] {
        let err = a.get_manifest(&r, reference).await.expect_err("deleted");
        assert!(matches!(err, Error::ManifestUnknown(_)), "{err:?}");
    }
    // The other process: once its entries expired.
    tokio::time::sleep(std::time::Duration::from_millis(400)).await;
    assert!(matches!(
        b.stat(&r, &digest).await,
        Err(Error::BlobUnknown(_))
    ));
    for reference in [&v1, &by_digest] {
        let err = b.get_manifest(&r, reference).await.expect_err("deleted");
        assert!(matches!(err, Error::ManifestUnknown(_)), "{err:?}");
    }
}

/// A bucket that does not exist is a configuration error when the driver is built (inside it
/// a `HeadObject` would be a bare 404, the answer for a missing blob).
#[tokio::test]
async fn a_missing_bucket_is_a_configuration_error() {
    let env = s3_or_skip!("a_missing_bucket_is_a_configuration_error");
    let mut config = env.config("nobucket");
    config.bucket = format!("marina-missing-{:08x}", rand_u64() as u32);
    for err in [
        S3Driver::connect(&config, EngineOptions::default())
            .await
            .expect_err("no such bucket"),
        marina_distribution::AnyDriver::from_config(&StorageConfig::s3(config.clone()))
            .await
            .expect_err("no such bucket"),
    ] {
        assert!(
            matches!(err, Error::Config { field: "s3.bucket", ref message } if message.contains("does not exist")),
            "{err:?}"
        );
    }
}

/// A body that yields `good` and then fails, as a client disconnecting mid-PATCH does.
fn failing_body(good: Bytes) -> impl Stream<Item = marina_distribution::Result<Bytes>> + Send {
    stream::iter(cut(&good, &[MIB]).into_iter().map(Ok)).chain(stream::iter([Err(
        Error::BlobUploadInvalid("client went away".into()),
    )]))
}

#[tokio::test]
async fn failed_append_leaves_the_upload_resumable() {
    let env = s3_or_skip!("failed_append_leaves_the_upload_resumable");
    let d = env.driver("resume").await;
    let r = repo("s3/resume");
    let blob = data(14 * MIB + 77, 10);
    let digest = sha256(&blob);
    let id = start_upload(&d, &r).await;
    d.put_upload_chunk(&r, &id, Some(0), None, body(vec![blob.slice(..3 * MIB)]))
        .await
        .unwrap();
    // Fails before a part is complete, then after opening the multipart upload and
    // uploading a part: neither changes the session.
    for failing in [2 * MIB, 9 * MIB] {
        let err = d
            .put_upload_chunk(
                &r,
                &id,
                Some(3 * MIB as u64),
                None,
                failing_body(blob.slice(3 * MIB..3 * MIB + failing)),
            )
            .await
            .expect_err("body error");
        assert!(matches!(err, Error::BlobUploadInvalid(_)), "{err:?}");
        let p = d.get_upload_progress(&r, &id).await.unwrap();
        assert_eq!(p.progress().offset, 3 * MIB as u64);
        assert!(p.backend_state().multipart.is_none());
        assert_eq!(
            multipart_uploads(&d).await,
            Vec::<String>::new(),
            "after a {failing}-byte failure"
        );
    }
    // Resume from the persisted offset with the rest, in two requests.
    d.put_upload_chunk(
        &r,
        &id,
        Some(3 * MIB as u64),
        None,
        body(cut(&blob.slice(3 * MIB..8 * MIB), &[MIB])),
    )
    .await
    .unwrap();
    // A failure after the multipart upload exists keeps its parts and staged object intact.
    let err = d
        .put_upload_chunk(
            &r,
            &id,
            Some(8 * MIB as u64),
            None,
            failing_body(blob.slice(8 * MIB..13 * MIB)),
        )
        .await
        .expect_err("body error");
    assert!(matches!(err, Error::BlobUploadInvalid(_)), "{err:?}");
    let info = d
        .finish_upload(
            &r,
            &id,
            &digest,
            None,
            body(cut(&blob.slice(8 * MIB..), &[MIB])),
        )
        .await
        .expect("finish after failures");
    assert_eq!(info.size, blob.len() as u64);
    assert_eq!(read_all(&d, &r, &digest, None).await, blob);
    assert_no_upload_leftovers(&d).await;
}

/// Two appends at one offset of one session, from the same loaded state, of equal length and
/// different bytes: what a client sending one chunk twice at once through two processes
/// causes (within one process the engine serialises them). Whichever state is persisted,
/// it names only bytes its own append wrote, so committing it stores exactly those bytes or
/// fails; it never stores one chunk's bytes under the other's digest.
#[tokio::test]
async fn same_offset_appends_from_one_state_keep_their_own_bytes() {
    use marina_distribution::storage::backend::Backend;
    use marina_distribution::storage::layout;
    let env = s3_or_skip!("same_offset_appends_from_one_state_keep_their_own_bytes");
    let backend = env.backend(&env.config("race")).await;
    // Below one part (staged segments), then filling a part (a multipart part each).
    for len in [64 * 1024, PART + 3] {
        let id = UploadId::generate();
        let base = backend.start_upload(&id, None).await.unwrap();
        let (a, b) = (data(len, 41), data(len, 42));
        let mut state_a = base.clone();
        backend
            .append_upload(&id, &mut state_a, 0, body(vec![a.clone()]))
            .await
            .unwrap();
        let mut state_b = base.clone();
        backend
            .append_upload(&id, &mut state_b, 0, body(vec![b.clone()]))
            .await
            .unwrap();
        // The first append's state is the one persisted last.
        let digest = sha256(&a);
        match backend
            .finish_upload(&id, state_a, len as u64, &digest)
            .await
        {
            Ok(()) => {
                let stored = backend.read(&layout::blob_data(&digest)).await.unwrap();
                let stored = stored.expect("committed blob");
                assert!(
                    stored == a,
                    "{len} bytes: the blob {digest} holds bytes with digest {}",
                    sha256(&stored)
                );
            }
            // A part the other append replaced no longer matches: refused, nothing stored.
            Err(_) => {
                assert!(len >= PART, "{len} bytes: only a replaced part may fail");
                assert!(
                    backend
                        .read(&layout::blob_data(&digest))
                        .await
                        .unwrap()
                        .is_none()
                );
            }
        }
    }
}

/// Two PATCHes of one session at the same offset, in two processes (two engines: the upload
/// lock of one does not see the other), the first still receiving its body when the second
/// is persisted. With conditional writes (detected on moto) the first is refused with the
/// session's current offset and the session keeps the second's bytes; without them both are
/// acknowledged and the second's bytes are silently dropped from the session.
#[tokio::test]
async fn concurrent_patches_of_one_session_in_two_processes() {
    let env = s3_or_skip!("concurrent_patches_of_one_session_in_two_processes");
    for conditional in [None, Some(false)] {
        let mut config = env.config("cas");
        config.conditional_writes = conditional;
        let backend = env.backend(&config).await;
        assert_eq!(backend.conditional_writes(), conditional.is_none());
        let first = S3Driver::from_backend(backend, EngineOptions::default());
        let second = env.driver_for(&config).await;
        let r = repo("s3/cas");
        let (a, b) = (data(64 * 1024, 51), data(64 * 1024, 52));
        if conditional.is_none() {
            session_race::assert_later_patch_refused(&first, &second, &r, a, b).await;
            assert_no_upload_leftovers(&first).await;
            continue;
        }
        // The hazard the conditional write removes: both acknowledged, one lost.
        let (id, first_result, second_result) =
            session_race::race_patches(&first, &second, &r, a, b.clone()).await;
        assert_eq!(second_result.expect("second PATCH"), b.len() as u64);
        assert!(first_result.is_ok(), "{first_result:?}");
        first.abort_upload(&r, &id).await.unwrap();
    }
}

/// A session whose record lags its parts: an append uploaded parts (and opened nothing new)
/// but its record was never persisted (the process died, or the record's write failed).
/// The record's offset and hash checkpoint stay authoritative: the client resumes from the
/// record's offset, the resumed append replaces the stale parts it reaches by number, and
/// the commit names exactly the record's parts, so stale parts beyond them never reach the
/// blob.
#[tokio::test]
async fn a_session_whose_record_lags_its_parts_resumes_from_the_record() {
    use marina_distribution::storage::backend::Backend;
    let env = s3_or_skip!("a_session_whose_record_lags_its_parts_resumes_from_the_record");
    let d = env.driver("lag").await;
    let r = repo("s3/lag");
    let blob = data(2 * PART, 61);
    let digest = sha256(&blob);
    let id = start_upload(&d, &r).await;
    d.put_upload_chunk(&r, &id, Some(0), None, body(vec![blob.slice(..PART)]))
        .await
        .unwrap();
    // An append of other bytes through the backend alone: parts 2 and 3, record untouched.
    let mut lost = d
        .get_upload_progress(&r, &id)
        .await
        .unwrap()
        .backend_state()
        .clone();
    let multipart = lost.multipart.clone().expect("multipart upload open");
    d.backend()
        .append_upload(&id, &mut lost, PART as u64, body(vec![data(2 * PART, 62)]))
        .await
        .unwrap();
    // (moto 5.2's ListParts answers a `ListPartsResponse` root the SDK refuses, so the
    // lost append's own state is what shows the parts the store now holds.)
    assert_eq!(
        lost.parts.len(),
        3,
        "the store holds parts the record does not name"
    );
    assert_eq!(lost.multipart.as_deref(), Some(multipart.as_str()));
    let p = d.get_upload_progress(&r, &id).await.unwrap();
    assert_eq!(p.progress().offset, PART as u64);
    assert_eq!(p.backend_state().parts.len(), 1);
    // The client resumes from the record's offset; the blob ends at a part boundary, so the
    // stale part 3 is never replaced and must be left out by the commit.
    d.finish_upload(&r, &id, &digest, None, body(vec![blob.slice(PART..)]))
        .await
        .expect("finish from the record");
    assert_eq!(read_all(&d, &r, &digest, None).await, blob);
    assert_no_upload_leftovers(&d).await;
}

#[tokio::test]
async fn multipart_copy_for_large_chunked_uploads() {
    let env = s3_or_skip!("multipart_copy_for_large_chunked_uploads");
    let config = env.config("copy");
    // Copy with UploadPartCopy above 6 MiB, in 5 MiB parts (normally above 5 GiB).
    let backend = env
        .backend(&config)
        .await
        .with_multipart_copy(6 * MIB as u64, PART as u64);
    let d = S3Driver::from_backend(backend, EngineOptions::default());
    let r = repo("s3/copy");
    for (len, seed) in [(12 * MIB + 1, 11u64), (3 * MIB, 12)] {
        let blob = data(len, seed);
        push_chunked(&d, &r, &blob, &[2 * MIB + 1], MIB).await;
        assert_eq!(read_all(&d, &r, &sha256(&blob), None).await, blob);
    }
    assert_no_upload_leftovers(&d).await;
}

#[tokio::test]
async fn request_checksums_when_supported() {
    let env = s3_or_skip!("request_checksums_when_supported");
    let mut config = env.config("crc");
    config.checksum = Some(S3ChecksumPolicy::WhenSupported);
    let d = env.driver_for(&config).await;
    let r = repo("s3/crc");
    let blob = data(11 * MIB, 13);
    push_chunked(&d, &r, &blob, &[4 * MIB], MIB).await;
    assert!(multipart_uploads(&d).await.is_empty());
    let mono = data(6 * MIB, 14);
    d.put_content(&r, &sha256(&mono), None, body(vec![mono.clone()]))
        .await
        .unwrap();
    assert_eq!(read_all(&d, &r, &sha256(&mono), None).await, mono);
    // With the length declared: one streamed PutObject, its checksum sent as a trailer.
    let streamed = data(7 * MIB, 15);
    let len = Some(streamed.len() as u64);
    d.put_content(&r, &sha256(&streamed), len, body(cut(&streamed, &[MIB])))
        .await
        .unwrap();
    assert_eq!(read_all(&d, &r, &sha256(&streamed), None).await, streamed);
    assert_eq!(read_all(&d, &r, &sha256(&blob), None).await, blob);
}

#[tokio::test]
async fn upload_state_is_needed_and_checked() {
    let env = s3_or_skip!("upload_state_is_needed_and_checked");
    let d = env.driver("state").await;
    let r = repo("s3/state");
    let id = UploadId::generate();
    let err = d
        .put_upload_chunk(&r, &id, None, None, body(vec![Bytes::from_static(b"x")]))
        .await
        .expect_err("unknown upload");
    assert!(matches!(err, Error::BlobUploadUnknown(_)), "{err:?}");
    assert!(d.chunk_min_length() == Some(PART as u64));
}

/// Fault injection the real server cannot do: a fake S3 endpoint on 127.0.0.1 answering every
/// request with a fixed error (or dropping the connection), to check the translation of S3
/// errors and that the SDK's standard retry policy is in force. These run without a server.
mod faults {
    use std::error::Error as _;
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};

    use marina_distribution::Error;
    use marina_distribution::oci::{Digest, DigestAlgorithm, Tag};
    use marina_distribution::storage::s3::{S3Backend, S3Driver};
    use marina_distribution::storage::{EngineOptions, S3Config, StorageDriver};
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpListener;

    use super::repo;

    #[derive(Clone, Copy)]
    enum Answer {
        /// An S3 error document with this status and code.
        Error(u16, &'static str),
        /// Close the connection without answering.
        Drop,
    }

    /// Starts the fake endpoint; returns its URL and the number of requests it received.
    async fn fake_s3(answer: Answer) -> (String, Arc<AtomicUsize>) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let hits = Arc::new(AtomicUsize::new(0));
        let counter = hits.clone();
        tokio::spawn(async move {
            while let Ok((mut socket, _)) = listener.accept().await {
                let counter = counter.clone();
                tokio::spawn(async move {
                    let mut head = Vec::new();
                    let mut buf = [0u8; 4096];
                    while !head.windows(4).any(|w| w == b"\r\n\r\n") {
                        match socket.read(&mut buf).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => head.extend_from_slice(&buf[..n]),
                        }
                    }
                    counter.fetch_add(1, Ordering::SeqCst);
                    if let Answer::Error(status, code) = answer {
                        let body = format!(
                            "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<Error><Code>{code}</Code>\
                             <Message>injected fault</Message><RequestId>r1</RequestId></Error>"
                        );
                        let response = format!(
                            "HTTP/1.1 {status} Injected\r\nContent-Type: application/xml\r\n\
                             Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
                            body.len()
                        );
                        let _ = socket.write_all(response.as_bytes()).await;
                        let _ = socket.shutdown().await;
                    }
                });
            }
        });
        (url, hits)
    }

    fn driver(endpoint: &str) -> S3Driver {
        let mut config = S3Config::new("faulty");
        config.endpoint = Some(endpoint.to_owned());
        config.region = Some("us-east-1".into());
        config.force_path_style = true;
        let sdk = aws_config::SdkConfig::builder()
            .behavior_version(aws_config::BehaviorVersion::latest())
            .credentials_provider(aws_sdk_s3::config::SharedCredentialsProvider::new(
                aws_sdk_s3::config::Credentials::new("test", "test", None, None, "tests"),
            ))
            .build();
        S3Driver::from_backend(
            S3Backend::connect_with(&config, &sdk).expect("backend"),
            EngineOptions::default(),
        )
    }

    /// Reads a tag (a `GetObject`) through a driver on a fake endpoint answering `answer`.
    async fn read_tag(answer: Answer) -> (Error, usize) {
        let (url, hits) = fake_s3(answer).await;
        let d = driver(&url);
        let err = d
            .resolve_tag(&repo("faults/r"), &Tag::parse("v1").unwrap())
            .await
            .expect_err("the fake endpoint only fails");
        (err, hits.load(Ordering::SeqCst))
    }

    #[tokio::test]
    async fn throttling_is_retried_then_reported_retryable() {
        let (err, hits) = read_tag(Answer::Error(503, "SlowDown")).await;
        assert!(
            matches!(
                err,
                Error::Backend {
                    driver: "s3",
                    retryable: true,
                    ..
                }
            ),
            "{err:?}"
        );
        assert_eq!(err.http_status(), 503);
        assert!(err.is_retryable());
        assert!(err.to_string().contains("SlowDown"), "{err}");
        assert_eq!(hits, 3, "the SDK's standard retry policy makes 3 attempts");
    }

    #[tokio::test]
    async fn internal_errors_are_retried_then_reported_retryable() {
        let (err, hits) = read_tag(Answer::Error(500, "InternalError")).await;
        assert!(
            matches!(
                err,
                Error::Backend {
                    retryable: true,
                    ..
                }
            ),
            "{err:?}"
        );
        assert_eq!(hits, 3);
    }

    #[tokio::test]
    async fn dropped_connections_are_retried_then_reported_retryable() {
        let (err, hits) = read_tag(Answer::Drop).await;
        assert!(
            matches!(
                err,
                Error::Backend {
                    retryable: true,
                    ..
                }
            ),
            "{err:?}"
        );
        assert_eq!(hits, 3);
    }

    #[tokio::test]
    async fn access_denied_is_a_permanent_backend_error_with_its_source() {
        let (err, hits) = read_tag(Answer::Error(403, "AccessDenied")).await;
        assert!(
            matches!(
                err,
                Error::Backend {
                    retryable: false,
                    ..
                }
            ),
            "{err:?}"
        );
        assert_eq!(err.http_status(), 500);
        assert!(err.to_string().contains("AccessDenied"), "{err}");
        assert!(
            err.source().is_some(),
            "the SDK error is kept as the source"
        );
        assert_eq!(hits, 1, "permanent errors are not retried");
    }

    /// An S3 failure answers `UNKNOWN` naming the storage operation and nothing else: no
    /// object key or bucket, no S3 request id or message, no SDK output. The error's own
    /// text says what S3 answered (code and status) about the relative key; the rest is in
    /// its sources, for logs.
    #[cfg(feature = "server")]
    #[tokio::test]
    async fn failures_answer_without_key_request_id_or_sdk_output() {
        let (err, _) = read_tag(Answer::Error(403, "AccessDenied")).await;
        let text = err.to_string();
        assert!(
            text.contains("GetObject: AccessDenied (HTTP 403)"),
            "{text}"
        );
        assert!(
            text.contains("during read of repositories/faults/r/_manifests/sha256/tag-v1"),
            "{text}"
        );
        for leak in [
            "r1",
            "injected fault",
            "faulty",
            "ServiceError",
            "ErrorMetadata",
        ] {
            assert!(!text.contains(leak), "{leak:?} in {text}");
        }
        let logged = marina_distribution::error::ErrorChain(&err).to_string();
        assert!(
            logged.contains("injected fault"),
            "the log lacks S3's message: {logged}"
        );
        let resp = axum::response::IntoResponse::into_response(
            marina_distribution::registry::ApiError::from(err),
        );
        assert_eq!(resp.status().as_u16(), 500);
        let body = axum::body::to_bytes(resp.into_body(), usize::MAX)
            .await
            .unwrap();
        let body: serde_json::Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(body["errors"][0]["code"], "UNKNOWN", "{body}");
        assert_eq!(
            body["errors"][0]["detail"], "storage backend failed during read",
            "{body}"
        );
        for leak in [
            "r1",
            "injected",
            "faulty",
            "faults/r",
            "AccessDenied",
            "GetObject",
        ] {
            assert!(!body.to_string().contains(leak), "{leak:?} in {body}");
        }
    }

    #[tokio::test]
    async fn missing_objects_are_unknown_but_a_missing_bucket_is_an_error() {
        let (err, hits) = read_tag(Answer::Error(404, "NoSuchKey")).await;
        assert!(matches!(err, Error::ManifestUnknown(_)), "{err:?}");
        assert_eq!(hits, 1);
        let (url, _) = fake_s3(Answer::Error(404, "NoSuchKey")).await;
        let digest = Digest::compute(DigestAlgorithm::Sha256, b"x");
        let err = driver(&url)
            .stat(&repo("faults/r"), &digest)
            .await
            .expect_err("unknown");
        assert!(matches!(err, Error::BlobUnknown(_)), "{err:?}");
        let (err, _) = read_tag(Answer::Error(404, "NoSuchBucket")).await;
        assert!(
            matches!(
                err,
                Error::Backend {
                    retryable: false,
                    ..
                }
            ),
            "{err:?}"
        );
        assert!(err.to_string().contains("NoSuchBucket"), "{err}");
    }
}

/// Push throughput and peak memory, and a check that large pushes of every kind complete:
/// streams `S3_BENCH_MIB` MiB (default 16, i.e. two 8 MiB parts, so CI runs it quickly
/// through `scripts/test.sh`) of generated bytes, never holding the blob in memory, and pushes
/// them with `mono` (`put_content`), `chunked` (1 MiB `put_upload_chunk` requests +
/// `finish_upload`) and `sdk` (a direct multipart upload with the SDK, 8 MiB parts), or only
/// the mode named by `S3_BENCH_MODE`. Each push is checked (size via `stat`/`HeadObject`) and
/// its MiB/s printed, with the process's peak RSS (`VmHWM`, meaningful with one mode per
/// process). The figures of the README come from:
///
/// ```sh
/// for m in sdk mono chunked; do S3_BENCH_MIB=1024 S3_BENCH_MODE=$m bash scripts/with-s3.sh \
///   cargo test --release --all-features --test s3 push_throughput -- --nocapture; done
/// ```
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn push_throughput() {
    let env = s3_or_skip!("push_throughput");
    let mib: usize = std::env::var("S3_BENCH_MIB")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(16);
    let modes: Vec<String> = match std::env::var("S3_BENCH_MODE") {
        Ok(m) => vec![m],
        Err(_) => ["mono", "chunked", "sdk"].map(String::from).to_vec(),
    };
    let mut config = env.config("bench");
    config.part_size = None; // the default, 8 MiB
    let d = env.driver_for(&config).await;
    let r = repo("s3/bench");
    let len = mib * MIB;
    const FRAME: usize = 64 * 1024;
    // Deterministic frames: the same seed gives the same blob, so the digest can be computed
    // in a first pass without keeping the bytes.
    let frames = move || (0..len / FRAME).map(|i| Ok(data(FRAME, i as u64 + 1)));
    let mut hasher = marina_distribution::storage::hashing::Hasher::new(DigestAlgorithm::Sha256);
    for frame in frames() {
        let frame: marina_distribution::Result<Bytes> = frame;
        hasher.update(&frame.unwrap());
    }
    let digest = hasher.digest();
    for mode in modes {
        let start = std::time::Instant::now();
        match mode.as_str() {
            "mono" => {
                d.put_content(&r, &digest, Some(len as u64), stream::iter(frames()))
                    .await
                    .expect("put_content");
                assert_eq!(d.stat(&r, &digest).await.unwrap().size, len as u64);
                d.delete(&r, &digest).await.unwrap();
            }
            "chunked" => {
                let id = start_upload(&d, &r).await;
                let per_chunk = MIB / FRAME;
                let mut all = frames();
                for i in 0..len / MIB {
                    let chunk: Vec<_> = all.by_ref().take(per_chunk).collect();
                    d.put_upload_chunk(
                        &r,
                        &id,
                        Some((i * MIB) as u64),
                        Some(MIB as u64),
                        stream::iter(chunk),
                    )
                    .await
                    .expect("chunk");
                }
                let info = d
                    .finish_upload(&r, &id, &digest, None, empty())
                    .await
                    .expect("finish");
                assert_eq!(info.size, len as u64);
            }
            "sdk" => {
                let b = d.backend();
                let client = b.client();
                let key = format!("{}sdk-baseline", b.object_key_prefix());
                let mpu = client
                    .create_multipart_upload()
                    .bucket(b.bucket())
                    .key(&key)
                    .content_type("application/octet-stream")
                    .send()
                    .await
                    .unwrap();
                let upload_id = mpu.upload_id().unwrap();
                let mut parts = Vec::new();
                let mut buf = Vec::with_capacity(8 * MIB);
                let mut all = frames().peekable();
                let mut number = 1;
                while all.peek().is_some() {
                    buf.clear();
                    for frame in all.by_ref().take(8 * MIB / FRAME) {
                        buf.extend_from_slice(&frame.unwrap());
                    }
                    let out = client
                        .upload_part()
                        .bucket(b.bucket())
                        .key(&key)
                        .upload_id(upload_id)
                        .part_number(number)
                        .body(aws_sdk_s3::primitives::ByteStream::from(buf.clone()))
                        .send()
                        .await
                        .unwrap();
                    parts.push(
                        aws_sdk_s3::types::CompletedPart::builder()
                            .part_number(number)
                            .e_tag(out.e_tag().unwrap())
                            .build(),
                    );
                    number += 1;
                }
                client
                    .complete_multipart_upload()
                    .bucket(b.bucket())
                    .key(&key)
                    .upload_id(upload_id)
                    .multipart_upload(
                        aws_sdk_s3::types::CompletedMultipartUpload::builder()
                            .set_parts(Some(parts))
                            .build(),
                    )
                    .send()
                    .await
                    .unwrap();
                let head = client
                    .head_object()
                    .bucket(b.bucket())
                    .key(&key)
                    .send()
                    .await
                    .unwrap();
                assert_eq!(head.content_length(), Some(len as i64));
            }
            other => panic!("unknown S3_BENCH_MODE {other:?}"),
        }
        let secs = start.elapsed().as_secs_f64();
        let hwm = std::fs::read_to_string("/proc/self/status")
            .ok()
            .and_then(|s| {
                s.lines()
                    .find(|l| l.starts_with("VmHWM"))
                    .map(|l| l.split_whitespace().nth(1).unwrap_or("?").to_owned())
            })
            .unwrap_or_else(|| "?".into());
        println!(
            "push_throughput mode={mode} size={mib} MiB time={secs:.2} s throughput={:.1} MiB/s \
         peak_rss={hwm} kB",
            mib as f64 / secs
        );
    }
}
