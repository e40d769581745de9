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

/// Starts the S3 test server's proxy (over TLS or not) and the binary behind it, pushes and
/// pulls ([`push_and_pull`]), and returns what the proxy saw of the requests that carried a
/// body above 64 KiB, among them `UploadPart`s and `PutObject`s (the staged chunks); `None`
/// without an S3 server.
async fn large_bodies_pushed(tls: bool) -> Option<Vec<SeenRequest>> {
    let Some(config) = s3_storage(&format!("s3-tls/{tls}")) else {
        eprintln!("NOTE: S3_ENDPOINT is not set: s3_tls was SKIPPED");
        return None;
    };
    ensure_bucket(&config).await;
    let s3 = config.s3.expect("s3");
    let (endpoint, prefix) = (s3.endpoint.expect("endpoint"), s3.prefix.expect("prefix"));
    let pki = pki();
    let proxy = if tls {
        FaultProxy::start_tls(&endpoint, 0.0, 1, &pki.cert, &pki.key).await
    } else {
        FaultProxy::start(&endpoint, 0.0, 1).await
    };
    let scheme = if tls { "https" } else { "http" };
    assert!(proxy.url.starts_with(&format!("{scheme}://127.0.0.1:")));
    let (_child, reg) = registry(&proxy.url, &prefix, &pki).await;
    push_and_pull(&reg).await;
    let seen = proxy.seen();
    let large: Vec<_> = seen
        .iter()
        .filter(|r| r.body_len > 64 * 1024)
        .cloned()
        .collect();
    let parts = large.iter().filter(|r| r.target.contains("partNumber="));
    assert!(parts.count() > 0, "no large UploadPart: {seen:?}");
    let objects = large
        .iter()
        .filter(|r| r.method == "PUT" && !r.target.contains("partNumber="));
    assert!(objects.count() > 0, "no large PutObject: {seen:?}");
    Some(large)
}

#[tokio::test]
async fn pushes_and_pulls_over_https_with_a_private_ca_and_unsigned_parts() {
    let Some(large) = large_bodies_pushed(true).await else {
        return;
    };
    for request in large {
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
    let Some(large) = large_bodies_pushed(false).await else {
        return;
    };
    for request in large {
        let hash = request.payload_hash.as_deref().unwrap_or_default();
        assert!(
            hash.len() == 64 && hash.bytes().all(|b| b.is_ascii_hexdigit()),
            "a body sent over plain HTTP was not hashed into its signature ({hash:?}): {} {}",
            request.method,
            request.target
        );
    }
}
