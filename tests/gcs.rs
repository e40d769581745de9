//! GCS driver specifics against a GCS emulator (fake-gcs-server in CI; `scripts/with-gcs.sh`
//! starts one and sets `GCS_ENDPOINT`, `GCS_BUCKET` and `GCS_ANONYMOUS`). Every test works
//! below its own random prefix. The behaviour suite (tests/behaviour.rs) and the HTTP tests
//! run on GCS too; these are the checks they cannot make: two processes sharing one upload,
//! what lands in the bucket, compose levels, write-once records, error messages.
//!
//! ```sh
//! bash scripts/with-gcs.sh cargo test --all-features --test gcs
//! ```
#![cfg(feature = "gcs")]

#[path = "common/content.rs"]
#[allow(dead_code)]
mod content;
#[path = "common/delete_race.rs"]
mod delete_race;
#[path = "common/gcs.rs"]
mod gcs_env;
#[path = "common/session_race.rs"]
mod session_race;
#[path = "common/storage_io.rs"]
#[allow(dead_code)]
mod storage_io;

use bytes::Bytes;
use content::payload;
use futures::{Stream, StreamExt, stream};
use gcloud_storage::http::objects::get::GetObjectRequest;
use gcs_env::{PART, assert_only_blob_and_link, backend, driver, objects};
use marina_distribution::Error;
use marina_distribution::oci::{Digest, DigestAlgorithm, RepositoryName, Tag};
use marina_distribution::storage::backend::Backend;
use marina_distribution::storage::gcs::GcsDriver;
use marina_distribution::storage::layers::{Instrumented, Resumable};
use marina_distribution::storage::layout;
use marina_distribution::storage::{
    AnyDriver, EngineOptions, GcsConfig, StorageConfig, StorageDriver, UploadHandle, UploadId,
};
use storage_io::read_all;

const KIB: usize = 1024;
macro_rules! gcs_or_skip {
    ($test:expr) => {
        match gcs_env::config("gcs-tests", $test) {
            Some(config) => config,
            None => return,
        }
    };
}

fn body(data: &[u8]) -> impl Stream<Item = marina_distribution::Result<Bytes>> + Send + use<> {
    stream::iter(vec![Ok(Bytes::copy_from_slice(data))])
}

/// One upload, its chunks (of many sizes: 1 byte, unaligned, several parts) sent
/// alternately through two engine instances on one bucket and prefix (two registry
/// processes behind a load balancer), finished on the second: the blob is exact and nothing
/// of the upload stays in the bucket.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_instances_alternate_chunks_of_one_upload() {
    let config = gcs_or_skip!("two_instances");
    let (a, b) = (driver(&config).await, driver(&config).await);
    let repo = RepositoryName::parse("two/instances").unwrap();
    let sizes = [1, 7, 300 * KIB, 1, 600 * KIB, 256 * KIB, 3]
        .into_iter()
        .cycle()
        .take(75)
        .collect::<Vec<_>>();
    let content = payload(sizes.iter().sum::<usize>() + 5, 1);
    let digest = Digest::compute(DigestAlgorithm::Sha256, &content);
    let id = a
        .start_upload(&repo, DigestAlgorithm::Sha256)
        .await
        .unwrap()
        .id();
    let mut offset = 0;
    for (i, size) in sizes.iter().enumerate() {
        let instance: &GcsDriver = if i % 2 == 0 { &a } else { &b };
        let chunk = &content[offset..offset + size];
        let progress = instance
            .put_upload_chunk(&repo, &id, Some(offset as u64), None, body(chunk))
            .await
            .unwrap_or_else(|e| panic!("chunk {i} on instance {}: {e}", i % 2));
        offset += size;
        assert_eq!(progress.offset(), offset as u64);
        // The other instance sees the session where this one left it.
        let other: &GcsDriver = if i % 2 == 0 { &b } else { &a };
        assert_eq!(
            other
                .get_upload_progress(&repo, &id)
                .await
                .unwrap()
                .offset(),
            offset as u64
        );
    }
    b.finish_upload(&repo, &id, &digest, None, body(&content[offset..]))
        .await
        .unwrap();
    assert_eq!(read_all(&a, &repo, &digest).await, content);
    assert_eq!(read_all(&b, &repo, &digest).await, content);
    assert_eq!(objects(&config, "uploads/").await, Vec::<String>::new());
    assert_eq!(
        objects(&config, "blobs/").await,
        [format!("blobs/sha256/{}", digest.hex())]
    );
}

/// A monolithic push of several parts goes to the blob's own object through a resumable
/// session: nothing is visible (or staged under `uploads/`) before the digest is verified,
/// and a wrong digest leaves no object behind.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn monolithic_push_is_written_in_place() {
    let config = gcs_or_skip!("monolithic");
    let d = driver(&config).await;
    let repo = RepositoryName::parse("mono/push").unwrap();
    let content = Bytes::from(payload(4 * PART as usize + 5, 2));
    let digest = Digest::compute(DigestAlgorithm::Sha256, &content);

    let (tx, rx) = tokio::sync::mpsc::channel::<marina_distribution::Result<Bytes>>(1);
    let streamed = tokio_stream_from(rx);
    let push = {
        let (d, repo, digest) = (driver(&config).await, repo.clone(), digest.clone());
        tokio::spawn(async move { d.put_content(&repo, &digest, None, streamed).await })
    };
    // Three parts in: two went to the session, one is held back.
    tx.send(Ok(content.slice(..3 * PART as usize)))
        .await
        .unwrap();
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    assert_eq!(objects(&config, "").await, Vec::<String>::new());
    tx.send(Ok(content.slice(3 * PART as usize..)))
        .await
        .unwrap();
    drop(tx);
    push.await.unwrap().unwrap();
    assert_eq!(read_all(&d, &repo, &digest).await, content);
    assert_only_blob_and_link(&config, &repo, &digest).await;

    // Wrong digest: nothing of it stays.
    let other = payload(3 * PART as usize, 3);
    let wrong = Digest::compute(DigestAlgorithm::Sha256, b"wrong");
    let err = d
        .put_content(&repo, &wrong, None, body(&other))
        .await
        .unwrap_err();
    assert!(matches!(err, Error::DigestInvalid(_)), "{err}");
    assert_eq!(objects(&config, "").await.len(), 2);
}

fn tokio_stream_from<T: Send + 'static>(
    mut rx: tokio::sync::mpsc::Receiver<T>,
) -> impl Stream<Item = T> + Send {
    stream::poll_fn(move |cx| rx.poll_recv(cx))
}

/// 32 × 32 + 33 one-byte appends: pieces are composed level by level (32 of level 0 into
/// one of level 1, 32 of level 1 into one of level 2), superseded pieces are deleted by the
/// next append, and commit joins what remains into the blob.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tiny_chunks_compose_level_by_level() {
    let config = gcs_or_skip!("compose_levels");
    let backend = backend(&config).await;
    let id = UploadId::generate();
    let content = payload(32 * 32 + 33, 4);
    let mut state = backend.start_upload(&id, None).await.unwrap();
    for (offset, byte) in content.iter().enumerate() {
        let n = backend
            .append_upload(&id, &mut state, offset as u64, body(&[*byte]))
            .await
            .unwrap();
        assert_eq!(n, 1);
    }
    let levels: Vec<u8> = state.pieces.iter().map(|p| p.level).collect();
    assert_eq!(levels[0], 2, "{levels:?}");
    assert_eq!(levels.len(), 1 + 1 + 1, "{levels:?}");
    let live = objects(&config, "uploads/").await.len();
    // The pieces plus the 32 the last compose superseded (deleted by the next append).
    assert!(live <= state.pieces.len() + 32, "{live} objects");
    let digest = Digest::compute(DigestAlgorithm::Sha256, &content);
    backend
        .finish_upload(&id, state, content.len() as u64, &digest)
        .await
        .unwrap();
    let mut read = backend.read_blob(&digest, None).await.unwrap();
    let mut got = Vec::new();
    while let Some(chunk) = read.next().await {
        got.extend_from_slice(&chunk.unwrap());
    }
    assert_eq!(got, content);
    assert_eq!(objects(&config, "uploads/").await, Vec::<String>::new());
}

async fn generation(config: &GcsConfig, object: &str) -> i64 {
    gcs_env::client(config)
        .get_object(&GetObjectRequest {
            bucket: config.bucket.clone(),
            object: object.to_owned(),
            ..GetObjectRequest::default()
        })
        .await
        .expect("object metadata")
        .generation
}

/// Manifest records are created once: storing the same record again leaves the object
/// (its generation) as it is; a record whose bytes changed (another media type) replaces it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn manifest_records_are_written_once() {
    let config = gcs_or_skip!("write_once");
    let backend = backend(&config).await;
    let repo = RepositoryName::parse("once/records").unwrap();
    let digest = Digest::compute(DigestAlgorithm::Sha256, b"{}");
    let key = layout::manifest(&repo, &digest);
    let object = backend.object_name(&key);
    let record = Bytes::from_static(b"sha256:x a/b\n{}");
    backend.write(&key, record.clone()).await.unwrap();
    let first = generation(&config, &object).await;
    backend.write(&key, record.clone()).await.unwrap();
    assert_eq!(generation(&config, &object).await, first);
    let changed = Bytes::from_static(b"sha256:x c/d\n{}");
    backend.write(&key, changed.clone()).await.unwrap();
    assert_ne!(generation(&config, &object).await, first);
    assert_eq!(backend.read(&key).await.unwrap(), Some(changed));
}

/// Listings cross GCS's pages (1,000 names): every name once, in order, `start_after` and
/// `limit` honoured across the page boundary, deeper names left out.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn listings_follow_page_tokens() {
    let config = gcs_or_skip!("listing");
    let backend = backend(&config).await;
    let repo = RepositoryName::parse("many/tags").unwrap();
    let dir = layout::tags_dir(&repo);
    let names: Vec<String> = (0..1010).map(|i| format!("t{i:05}")).collect();
    let writes = stream::iter(names.clone())
        .map(|name| {
            let key = layout::tag(&repo, &Tag::parse(&name).unwrap());
            let backend = &backend;
            async move { backend.write(&key, Bytes::from_static(b"x")).await }
        })
        .buffer_unordered(32)
        .collect::<Vec<_>>()
        .await;
    assert!(writes.iter().all(Result::is_ok));
    // A deeper object must not show up as a name.
    let deeper = [
        &backend.object_name(dir.key()),
        "/",
        dir.name_prefix(),
        "t00001/deeper",
    ]
    .concat();
    gcs_env::client(&config)
        .upload_object(
            &gcloud_storage::http::objects::upload::UploadObjectRequest {
                bucket: config.bucket.clone(),
                ..Default::default()
            },
            Bytes::from_static(b"x"),
            &gcloud_storage::http::objects::upload::UploadType::Simple(
                gcloud_storage::http::objects::upload::Media::new(deeper),
            ),
        )
        .await
        .unwrap();
    assert_eq!(backend.list(&dir, None, None).await.unwrap(), names);
    assert_eq!(
        backend.list(&dir, Some("t00995"), Some(10)).await.unwrap(),
        names[996..1006]
    );
    assert_eq!(
        backend
            .list(&dir, Some("t00002"), Some(1001))
            .await
            .unwrap(),
        names[3..1004]
    );
    assert!(backend.any_under(&dir).await.unwrap());
    assert!(
        !backend
            .list(&dir, Some("t01009"), None)
            .await
            .unwrap()
            .iter()
            .any(|_| true)
    );
}

/// Errors say the JSON API request, GCS's answer, the backend operation and the layout key
/// (added by the instrumentation layer the driver is assembled with), never the bucket, the
/// prefix or the client's error dump; those stay in the error's source, for logs.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn errors_name_no_object_key() {
    let mut config = gcs_or_skip!("errors");
    config.bucket = "no-such-bucket-for-marina".into();
    config.prefix = Some("secret-prefix".into());
    let backend = Instrumented::new(Resumable::new(backend(&config).await));
    let repo = RepositoryName::parse("a/b").unwrap();
    let dir = layout::tags_dir(&repo);
    let err = backend.list(&dir, None, None).await.unwrap_err();
    let message = err.to_string();
    assert!(message.contains("during list of"), "{message}");
    assert!(message.contains(dir.as_str()), "{message}");
    assert!(message.contains("list: HTTP 404"), "{message}");
    for secret in [
        "secret-prefix",
        "no-such-bucket",
        "ErrorResponse",
        "reqwest",
    ] {
        assert!(!message.contains(secret), "{secret:?} in {message}");
    }
    let detail = std::error::Error::source(&err).expect("detail").to_string();
    assert!(detail.contains("secret-prefix/"), "{detail}");
}

/// A bucket that does not exist is a configuration error at startup, not an empty store.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn missing_bucket_is_a_configuration_error() {
    let mut config = gcs_or_skip!("missing_bucket");
    config.bucket = "no-such-bucket-for-marina".into();
    let err = GcsDriver::connect(&config, EngineOptions::default())
        .await
        .unwrap_err();
    assert!(
        matches!(
            err,
            Error::Config {
                field: "gcs.bucket",
                ..
            }
        ),
        "{err}"
    );
}

/// `type = "gcs"` from TOML builds the GCS variant of `AnyDriver`, which serves blobs.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn factory_from_toml() {
    let config = gcs_or_skip!("factory");
    let toml = format!(
        "type = \"gcs\"\n[gcs]\nbucket = \"{}\"\nprefix = \"{}\"\nendpoint = \"{}\"\nanonymous = true\n",
        config.bucket,
        config.prefix.as_deref().unwrap(),
        config.endpoint()
    );
    let storage = StorageConfig::from_toml(&toml).unwrap();
    assert_eq!(storage.gcs.as_ref(), Some(&config_with_anonymous(&config)));
    let d = AnyDriver::from_config(&storage).await.unwrap();
    assert_eq!(d.driver_name(), "gcs");
    let repo = RepositoryName::parse("from/toml").unwrap();
    let content = payload(10 * KIB, 5);
    let digest = Digest::compute(DigestAlgorithm::Sha256, &content);
    d.put_content(&repo, &digest, None, body(&content))
        .await
        .unwrap();
    let info = d.stat(&repo, &digest).await.unwrap();
    assert_eq!(info.size, content.len() as u64);
    assert!(info.path.starts_with("gs://"), "{}", info.path);
}

fn config_with_anonymous(config: &GcsConfig) -> GcsConfig {
    GcsConfig {
        endpoint: Some(config.endpoint().to_owned()),
        anonymous: true,
        ..config.clone()
    }
}

/// The direct-client baseline of `benches/gcs-e2e.sh`: the same bytes as a regbench scenario,
/// sent straight to the emulator with the client crate the driver uses, so the script can
/// print the registry's throughput as a ratio of it. `GCS_BENCH` names the scenario
/// (`push-mono`: one streamed media upload per blob; `push-chunked`: a resumable session fed
/// `GCS_BENCH_CHUNK` bytes per request; `pull`: streamed downloads; `push-small`: media
/// uploads, `GCS_BENCH_CONC` at a time), `GCS_BENCH_SIZE` the blob size in bytes and
/// `GCS_BENCH_N` the number of blobs. Prints one regbench-like line.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "a benchmark baseline, not a check: timings on shared CI machines assert nothing, so CI does not run it; benches/gcs-e2e.sh runs it with --ignored beside the registry on fake-gcs-server"]
async fn direct_client_baseline() {
    use gcloud_storage::http::objects::download::Range;
    use gcloud_storage::http::objects::upload::{Media, UploadObjectRequest, UploadType};
    use gcloud_storage::http::resumable_upload_client::ChunkSize;

    let config = gcs_or_skip!("baseline");
    let var = |name: &str, default: usize| {
        std::env::var(name)
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(default)
    };
    let scenario = std::env::var("GCS_BENCH").unwrap_or_else(|_| "push-mono".into());
    let size = var("GCS_BENCH_SIZE", 64 << 20);
    let n = var("GCS_BENCH_N", 1);
    let conc = var("GCS_BENCH_CONC", 1);
    let chunk = var("GCS_BENCH_CHUNK", 8 << 20);
    let client = gcs_env::client(&config);
    let prefix = config.normalized_prefix();
    let blobs: Vec<Bytes> = (0..n)
        .map(|i| Bytes::from(payload(size, i as u8)))
        .collect();
    let request = UploadObjectRequest {
        bucket: config.bucket.clone(),
        ..UploadObjectRequest::default()
    };
    let media = |name: String, len: usize| {
        let mut media = Media::new(name);
        media.content_length = Some(len as u64);
        UploadType::Simple(media)
    };
    // A body streamed in 256 KiB slices of the generated bytes, as regbench sends it.
    let streamed = |blob: &Bytes| {
        let slices: Vec<std::io::Result<Bytes>> = (0..blob.len())
            .step_by(256 * KIB)
            .map(|at| Ok(blob.slice(at..(at + 256 * KIB).min(blob.len()))))
            .collect();
        stream::iter(slices)
    };
    if scenario == "pull" {
        for (i, blob) in blobs.iter().enumerate() {
            client
                .upload_object(
                    &request,
                    blob.clone(),
                    &media(format!("{prefix}b{i}"), size),
                )
                .await
                .unwrap();
        }
    }
    let started = std::time::Instant::now();
    let one = |i: usize| {
        let (client, request, blob, prefix, scenario) = (
            client.clone(),
            request.clone(),
            blobs[i % blobs.len()].clone(),
            prefix.clone(),
            scenario.clone(),
        );
        async move {
            let name = format!("{prefix}b{i}");
            match scenario.as_str() {
                "push-session" => {
                    let session = client
                        .prepare_resumable_upload(&request, &UploadType::Simple(Media::new(name)))
                        .await
                        .unwrap();
                    for at in (0..blob.len()).step_by(chunk) {
                        let end = (at + chunk).min(blob.len());
                        let total = (end == blob.len()).then_some(blob.len() as u64);
                        let range = ChunkSize::new(at as u64, end as u64 - 1, total);
                        session
                            .upload_multiple_chunk(blob.slice(at..end), &range)
                            .await
                            .unwrap();
                    }
                }
                "pull" => {
                    let request = GetObjectRequest {
                        bucket: request.bucket.clone(),
                        object: name,
                        ..GetObjectRequest::default()
                    };
                    let mut body = client
                        .download_streamed_object(&request, &Range::default())
                        .await
                        .unwrap();
                    let mut got = 0;
                    while let Some(chunk) = body.next().await {
                        got += chunk.unwrap().len();
                    }
                    assert_eq!(got, blob.len());
                }
                _ => {
                    client
                        .upload_streamed_object(&request, streamed(&blob), &media(name, blob.len()))
                        .await
                        .unwrap();
                }
            }
        }
    };
    let ops = if scenario == "push-small" {
        n
    } else {
        blobs.len()
    };
    stream::iter(0..ops)
        .map(one)
        .buffer_unordered(conc)
        .collect::<Vec<()>>()
        .await;
    let secs = started.elapsed().as_secs_f64();
    let bytes = (ops * size) as f64;
    println!(
        "scenario=direct-{scenario} size={size} n={ops} conc={conc} bytes={bytes} secs={secs:.3} MBps={:.1} ops_per_s={:.1}",
        bytes / secs / 1e6,
        ops as f64 / secs
    );
}

/// A V4 signed URL of a stored blob serves its bytes to a plain HTTP client, straight from
/// the store (the capability a registry redirects blob pulls with), through the layers the
/// driver is assembled from. The emulator serves path-style object URLs and ignores the
/// signature, so this checks the URL and what it serves, not that GCS would accept it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn presigned_blob_reads_serve_the_blob() {
    use marina_distribution::storage::presign::PresignBlobReads;
    let config = gcs_or_skip!("presign");
    let backend = backend(&config).await.with_signing_key(
        "marina-test@example.iam.gserviceaccount.com",
        gcs_env::throwaway_signing_key(),
    );
    let d = GcsDriver::from_backend(backend, EngineOptions::default());
    let repo = RepositoryName::parse("signed/urls").unwrap();
    let content = payload(3 * PART as usize + 17, 9);
    let digest = Digest::compute(DigestAlgorithm::Sha256, &content);
    d.put_content(&repo, &digest, None, body(&content))
        .await
        .unwrap();
    let expires_in = std::time::Duration::from_secs(300);
    let signed = d
        .backend()
        .presign_read_blob(&digest, expires_in)
        .await
        .unwrap();
    for part in [
        "X-Goog-Algorithm=GOOG4-RSA-SHA256",
        "X-Goog-Signature=",
        "X-Goog-Expires=300",
        "marina-test%40example.iam.gserviceaccount.com",
    ] {
        assert!(signed.url.contains(part), "{part} not in {}", signed.url);
    }
    assert!(
        signed
            .url
            .starts_with(&format!("{}/{}/", config.endpoint(), config.bucket)),
        "{}",
        signed.url
    );
    assert!(signed.headers.is_empty());
    assert!(signed.expires_at > std::time::SystemTime::now());
    let response = reqwest::get(&signed.url).await.unwrap();
    assert_eq!(response.status(), 200);
    assert!(response.bytes().await.unwrap() == content);
}

/// Without a service-account key (anonymous, or credentials that hold none) presigning fails
/// with a backend error that names neither the bucket nor the object.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn presigning_without_a_key_fails_cleanly() {
    use marina_distribution::storage::presign::PresignBlobReads;
    let config = gcs_or_skip!("presign_no_key");
    let d = driver(&config).await;
    let digest = Digest::compute(DigestAlgorithm::Sha256, b"x");
    let err = d
        .backend()
        .presign_read_blob(&digest, std::time::Duration::from_secs(60))
        .await
        .unwrap_err();
    let message = err.to_string();
    assert!(message.contains("no service-account key"), "{message}");
    assert!(message.contains("presign_read_blob"), "{message}");
    assert!(!message.contains(&config.bucket), "{message}");
}

/// Two PATCHes of one session at the same offset in two processes (two engines), the first
/// still receiving its body when the second is persisted: the session record is written
/// with `ifGenerationMatch` on the generation it was read at, so the first is refused with
/// the session's offset and the session keeps the second's bytes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_patches_of_one_session_in_two_processes() {
    let config = gcs_or_skip!("cas");
    let (first, second) = (driver(&config).await, driver(&config).await);
    let r = RepositoryName::parse("gcs/cas").unwrap();
    let (a, b) = (payload(64 * KIB, 51), payload(64 * KIB, 52));
    session_race::assert_later_patch_refused(&first, &second, &r, a.into(), b.into()).await;
    assert_eq!(objects(&config, "uploads/").await, Vec::<String>::new());
}

/// A manifest deleted through one process while another pushes it by tag: no tag is left
/// naming the deleted manifest.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_delete_racing_a_tag_push_leaves_no_tag_without_its_manifest() {
    let config = gcs_or_skip!("delete-race");
    let (first, second) = (driver(&config).await, driver(&config).await);
    let r = RepositoryName::parse("gcs/delete-race").unwrap();
    delete_race::assert_no_tag_outlives_its_manifest(&first, &second, &r, 40).await;
}

/// A cancel (`DELETE` of the session) in one process racing a finish in another never
/// leaves a session that is known but whose bytes are gone.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cancel_racing_a_finish_in_another_process_never_revives_the_session() {
    let config = gcs_or_skip!("cas-cancel");
    let (first, second) = (driver(&config).await, driver(&config).await);
    let r = RepositoryName::parse("gcs/cas-cancel").unwrap();
    let bytes = payload(3000, 71);
    session_race::assert_cancel_racing_a_finish_never_revives(&first, &second, &r, &bytes, 40)
        .await;
}

/// A finish (`PUT` with a final chunk) in one process racing a `PATCH` in another: the
/// finish claims the session at the generation it read, so it is refused when the `PATCH`
/// was persisted first, and the session keeps every acknowledged chunk.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_finish_racing_an_append_in_another_process_is_refused() {
    let config = gcs_or_skip!("cas-finish");
    let (first, second) = (driver(&config).await, driver(&config).await);
    let r = RepositoryName::parse("gcs/cas-finish").unwrap();
    let (a, b, last) = (payload(20_000, 61), payload(20_000, 62), payload(100, 63));
    session_race::assert_finish_racing_an_append_refused(
        &first,
        &second,
        &r,
        a.into(),
        b.into(),
        last.into(),
    )
    .await;
}
