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

use common::auth::pki;
use common::fault_proxy::{FaultProxy, SeenRequest};
use common::fault_workload::MIB;
use common::store_tls::{
    TlsStore, assert_an_untrusted_store_is_refused, push_and_pull, registry_command, serving,
};
use common::*;
use tokio::process::Command;

/// The binary on S3 at `endpoint` under `prefix`, trusting only the CA in `ca`, with 5 MiB
/// parts and no single streamed `PutObject` (so a monolithic push is sent in parts too).
fn registry(endpoint: &str, prefix: &str, ca: &std::path::Path) -> Command {
    let mut cmd = registry_command(&["--storage", "s3"], ca);
    cmd.env("S3_ENDPOINT", endpoint)
        .env("S3_PREFIX", prefix)
        .env("S3_PART_SIZE", (5 * MIB).to_string())
        .env("S3_SINGLE_PUT_LIMIT", "0");
    cmd
}

/// The S3 test server's endpoint and a fresh prefix, with the bucket created; `None`
/// without an S3 server.
async fn s3_store(test: &str) -> Option<(String, String)> {
    let Some(config) = s3_storage(test) else {
        eprintln!("NOTE: S3_ENDPOINT is not set: s3_tls was SKIPPED");
        return None;
    };
    ensure_bucket(&config).await;
    let s3 = config.s3.expect("s3");
    Some((s3.endpoint.expect("endpoint"), s3.prefix.expect("prefix")))
}

/// Starts the S3 test server's proxy (over TLS or not) and the binary behind it, pushes and
/// pulls ([`push_and_pull`]), and returns what the proxy saw of the requests that carried a
/// body above 64 KiB, among them `UploadPart`s and `PutObject`s (the staged chunks); `None`
/// without an S3 server.
async fn large_bodies_pushed(tls: bool) -> Option<Vec<SeenRequest>> {
    let (endpoint, prefix) = s3_store(&format!("s3-tls/{tls}")).await?;
    let (proxy, ca) = if tls {
        let store = TlsStore::start(&endpoint).await;
        (store.proxy, store.pki)
    } else {
        (FaultProxy::start(&endpoint, 0.0, 1).await, pki())
    };
    let (_child, reg) = serving(&mut registry(&proxy.url, &prefix, &ca.ca)).await;
    push_and_pull(&reg, 5 * MIB).await;
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

#[tokio::test]
async fn a_store_whose_certificate_is_not_trusted_is_refused_and_named_in_the_log() {
    let Some((endpoint, prefix)) = s3_store("s3-tls/untrusted").await else {
        return;
    };
    let store = TlsStore::start(&endpoint).await;
    let other_ca = pki();
    let mut cmd = registry(&store.proxy.url, &prefix, &other_ca.ca);
    assert_an_untrusted_store_is_refused(&mut cmd, &store).await;
}
