//! The registry binary on an S3 store reached over HTTPS, as every production store is: a
//! TLS proxy (the [fault proxy](common::fault_proxy) with no faults) with a certificate from
//! a CA made in the test stands in front of the S3 test server, and the registry trusts that
//! CA through `SSL_CERT_FILE`, as an operator's private CA is trusted.
//!
//! What the proxy sees of each request also shows how bodies are signed
//! (`storage::s3::client::signs_payloads`): over HTTPS, parts and large bodies go
//! `UNSIGNED-PAYLOAD` (TLS protects them, the registry verifies every blob's digest itself);
//! over plain HTTP their SHA-256 is in the signature.
#![cfg(all(feature = "s3", feature = "server"))]

mod common;

use common::auth::{Pki, pki};
use common::binary::{BIN, spawn};
use common::fault_proxy::{FaultProxy, SeenRequest};
use common::fault_workload::{Blob, MIB, assert_pulls_exactly, push_and_acknowledge};
use common::*;
use tokio::process::{Child, Command};

/// The S3 test server's endpoint and a fresh prefix for `test` (the bucket created); `None`
/// without one.
async fn store(test: &str) -> Option<(String, String)> {
    let config = s3_storage(&format!("s3-tls/{test}"))?;
    ensure_bucket(&config).await;
    let s3 = config.s3.expect("s3");
    Some((s3.endpoint.expect("endpoint"), s3.prefix.expect("prefix")))
}

/// The binary on S3 at `endpoint`, trusting `pki`'s CA only, with 5 MiB parts and no single
/// streamed `PutObject` (so a monolithic push is sent in parts too).
async fn registry(endpoint: &str, prefix: &str, pki: &Pki) -> (Child, Registry) {
    let (child, addr, mut logs) = spawn(
        Command::new(BIN)
            .args(["--listen", "127.0.0.1:0", "--storage", "s3"])
            .env("S3_ENDPOINT", endpoint)
            .env("S3_PREFIX", prefix)
            .env("S3_PART_SIZE", (5 * MIB).to_string())
            .env("S3_SINGLE_PUT_LIMIT", "0")
            .env("SSL_CERT_FILE", &pki.ca)
            .env_remove("SSL_CERT_DIR"),
    )
    .await;
    // Keep reading the log so the server never blocks on a full pipe.
    tokio::spawn(async move { while let Ok(Some(_)) = logs.next_line().await {} });
    (child, Registry::new(format!("http://{addr}")))
}

/// Pushes a blob monolithically (two parts), one in chunks of a part or more, and one in
/// chunks below a part (staged as whole objects), and pulls each back.
async fn push_and_pull(reg: &Registry) {
    for (i, (len, chunks)) in [(6 * MIB, 0), (11 * MIB, 2), (MIB, 3)]
        .into_iter()
        .enumerate()
    {
        let blob = Blob {
            data: payload(len + i, 90 + i as u8),
            chunks,
        };
        let what = format!("{len} bytes in {chunks} chunks");
        let path = push_and_acknowledge(reg, "tls/app", &blob, &what).await;
        assert_pulls_exactly(reg, &path, &blob, &what).await;
    }
}

/// The requests that carried a body above 64 KiB, among them `UploadPart`s and `PutObject`s
/// (the staged chunks).
fn large_bodies(seen: &[SeenRequest]) -> Vec<&SeenRequest> {
    let large: Vec<_> = seen.iter().filter(|r| r.body_len > 64 * 1024).collect();
    let parts = large.iter().filter(|r| r.target.contains("partNumber="));
    assert!(parts.count() > 0, "no large UploadPart: {seen:?}");
    let objects = large
        .iter()
        .filter(|r| r.method == "PUT" && !r.target.contains("partNumber="));
    assert!(objects.count() > 0, "no large PutObject: {seen:?}");
    large
}

#[tokio::test]
async fn pushes_and_pulls_over_https_with_a_private_ca_and_unsigned_parts() {
    let Some((endpoint, prefix)) = store("https").await else {
        eprintln!("NOTE: S3_ENDPOINT is not set: s3_tls was SKIPPED");
        return;
    };
    let pki = pki();
    let proxy = FaultProxy::start_tls(&endpoint, 0.0, 1, &pki.cert, &pki.key).await;
    assert!(proxy.url.starts_with("https://127.0.0.1:"), "{}", proxy.url);
    let (_child, reg) = registry(&proxy.url, &prefix, &pki).await;
    push_and_pull(&reg).await;
    for request in large_bodies(&proxy.seen()) {
        assert_eq!(
            request.payload_hash.as_deref(),
            Some("UNSIGNED-PAYLOAD"),
            "a body sent over HTTPS was hashed into its signature: {} {}",
            request.method,
            request.target
        );
    }
}

#[tokio::test]
async fn parts_are_signed_over_plain_http() {
    let Some((endpoint, prefix)) = store("http").await else {
        eprintln!("NOTE: S3_ENDPOINT is not set: s3_tls was SKIPPED");
        return;
    };
    let pki = pki();
    let proxy = FaultProxy::start(&endpoint, 0.0, 1).await;
    let (_child, reg) = registry(&proxy.url, &prefix, &pki).await;
    push_and_pull(&reg).await;
    for request in large_bodies(&proxy.seen()) {
        let hash = request.payload_hash.as_deref().unwrap_or_default();
        assert!(
            hash.len() == 64 && hash.bytes().all(|b| b.is_ascii_hexdigit()),
            "a body sent over plain HTTP was not hashed into its signature ({hash:?}): {} {}",
            request.method,
            request.target
        );
    }
}
