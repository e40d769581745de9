//! Resumable blob reads on S3, for real: a TCP proxy between the S3 driver and the S3 test
//! server (moto, `scripts/test.sh`) drops the connection in the middle of a blob's
//! `GetObject` body, as a flaky network does, and the read carries on from where it stopped
//! (`storage::layers::Resumable`). Skipped without `S3_ENDPOINT`.
#![cfg(feature = "s3")]

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use bytes::Bytes;
use futures::{StreamExt, stream};
use marina_distribution::oci::{Digest, DigestAlgorithm, RangeRequest, RepositoryName};
use marina_distribution::storage::s3::S3Driver;
use marina_distribution::storage::{EngineOptions, StorageConfig};
use marina_distribution::{Result, StorageDriver};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// A response of the server is cut once this many bytes of it went through.
const CUT_AFTER: usize = 1024 * 1024;

/// Starts a proxy to `upstream` (`host:port`) on 127.0.0.1 that closes a connection whose
/// answer grows past [`CUT_AFTER`] bytes (only a blob's body does) while the returned count
/// of cuts to make is above zero, counting it down; returns its URL and that count.
async fn cutting_proxy(upstream: String) -> (String, Arc<AtomicUsize>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let to_cut = Arc::new(AtomicUsize::new(0));
    let counter = Arc::clone(&to_cut);
    tokio::spawn(async move {
        while let Ok((client, _)) = listener.accept().await {
            let Ok(server) = TcpStream::connect(&upstream).await else {
                continue;
            };
            let counter = Arc::clone(&counter);
            tokio::spawn(async move {
                let (mut client_read, mut client_write) = client.into_split();
                let (mut server_read, mut server_write) = server.into_split();
                let requests = tokio::spawn(async move {
                    let _ = tokio::io::copy(&mut client_read, &mut server_write).await;
                });
                let mut buf = vec![0; 64 * 1024];
                let mut passed = 0;
                while let Ok(n) = server_read.read(&mut buf).await {
                    if n == 0 {
                        break;
                    }
                    if passed + n > CUT_AFTER
                        && counter
                            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |c| c.checked_sub(1))
                            .is_ok()
                    {
                        let _ = client_write.write_all(&buf[..CUT_AFTER - passed]).await;
                        break; // dropping both halves closes the connection
                    }
                    passed += n;
                    if client_write.write_all(&buf[..n]).await.is_err() {
                        break;
                    }
                }
                requests.abort();
            });
        }
    });
    (url, to_cut)
}

/// The S3 driver, on a fresh prefix, talking to the server through the proxy.
async fn driver_through_proxy() -> Option<(S3Driver, Arc<AtomicUsize>)> {
    let Ok(endpoint) = std::env::var("S3_ENDPOINT") else {
        eprintln!("S3_ENDPOINT not set: the S3 resumable-read test was SKIPPED");
        return None;
    };
    let upstream = endpoint
        .trim_start_matches("http://")
        .trim_end_matches('/')
        .to_owned();
    let (url, to_cut) = cutting_proxy(upstream).await;
    let mut config = StorageConfig::default().apply_env().unwrap().s3.unwrap();
    config.endpoint = Some(url);
    config.force_path_style = true;
    config.prefix = Some(format!("resumable-{}", rand::random::<u64>()));
    let driver = S3Driver::connect(&config, EngineOptions::default())
        .await
        .unwrap();
    let backend = driver.backend();
    // An existing bucket is fine.
    let _ = backend
        .client()
        .create_bucket()
        .bucket(backend.bucket())
        .send()
        .await;
    Some((driver, to_cut))
}

async fn read_all(stream: impl futures::Stream<Item = Result<Bytes>>) -> Result<Vec<u8>> {
    let mut stream = std::pin::pin!(stream);
    let mut out = Vec::new();
    while let Some(chunk) = stream.next().await {
        out.extend_from_slice(&chunk?);
    }
    Ok(out)
}

/// A blob read whose connection drops midway (twice for a whole read, once for a ranged
/// one) arrives whole and right, through the registry's own driver stack.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_blob_read_cut_by_the_network_resumes() {
    let Some((driver, to_cut)) = driver_through_proxy().await else {
        return;
    };
    let repo = RepositoryName::parse("resumable/blob").unwrap();
    let blob: Vec<u8> = (0..3 * CUT_AFTER as u32).map(|i| (i % 251) as u8).collect();
    let digest = Digest::compute(DigestAlgorithm::Sha256, &blob);
    let body = stream::iter([Ok(Bytes::from(blob.clone()))]);
    driver
        .put_content(&repo, &digest, None, body)
        .await
        .unwrap();

    // Cut at 1 MiB, then the reopened read (2 MiB left) at 1 MiB again.
    to_cut.store(2, Ordering::SeqCst);
    let read = driver.get_content(&repo, &digest, None).await.unwrap();
    assert!(read_all(read.stream).await.unwrap() == blob, "whole read");
    assert_eq!(to_cut.load(Ordering::SeqCst), 0, "the read was cut twice");

    to_cut.store(1, Ordering::SeqCst);
    let range = RangeRequest::FromTo {
        first: 100,
        last: Some(2_500_000),
    };
    let read = driver
        .get_content(&repo, &digest, Some(range))
        .await
        .unwrap();
    assert!(
        read_all(read.stream).await.unwrap() == blob[100..=2_500_000],
        "ranged read"
    );
    assert_eq!(to_cut.load(Ordering::SeqCst), 0, "the ranged read was cut");
}
