//! The registry binary on an S3 store reached over HTTPS, as every production store is: a
//! TLS proxy (the [fault proxy](common::fault_proxy) with no faults) with a certificate from
//! a CA made in the test stands in front of the S3 test server, and the registry trusts that
//! CA through `SSL_CERT_FILE`, as an operator's private CA is trusted.
//!
//! What the proxy sees of each request also shows how bodies are signed
//! (`storage::s3::client::signs_payloads`): over HTTPS, parts and large bodies go
//! `UNSIGNED-PAYLOAD` (TLS protects them, the registry verifies every blob's digest itself);
//! over plain HTTP their SHA-256 is in the signature; a monolithic push's single streamed
//! `PutObject` is signed with the blob's digest as its SHA-256 either way.
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
    let mut cmd = registry_with_single_puts(endpoint, prefix, ca);
    cmd.env("S3_SINGLE_PUT_LIMIT", "0");
    cmd
}

/// [`registry`] with the default single streamed `PutObject` for a monolithic push (and
/// the default checksums of a custom endpoint: none, so no streaming checksum trailer).
fn registry_with_single_puts(endpoint: &str, prefix: &str, ca: &std::path::Path) -> Command {
    let mut cmd = registry_command(&["--storage", "s3"], ca);
    cmd.env("S3_ENDPOINT", endpoint)
        .env("S3_PREFIX", prefix)
        .env("S3_PART_SIZE", (5 * MIB).to_string())
        .env_remove("S3_CHECKSUM");
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

/// Starts the S3 test server's proxy (over TLS or not) and the binary `registry` builds
/// behind it, pushes and pulls ([`push_and_pull`]), and returns what the proxy saw; `None`
/// without an S3 server.
async fn pushed_through_proxy(
    tls: bool,
    test: &str,
    registry: fn(&str, &str, &std::path::Path) -> Command,
) -> Option<Vec<SeenRequest>> {
    let (endpoint, prefix) = s3_store(&format!("{test}/{tls}")).await?;
    let (proxy, ca) = if tls {
        let store = TlsStore::start(&endpoint).await;
        (store.proxy, store.pki)
    } else {
        (FaultProxy::start(&endpoint, 0.0, 1).await, pki())
    };
    let (_child, reg) = serving(&mut registry(&proxy.url, &prefix, &ca.ca)).await;
    push_and_pull(&reg, 5 * MIB).await;
    Some(proxy.seen())
}

/// What the proxy saw of the requests that carried a body above 64 KiB, among them
/// `UploadPart`s and `PutObject`s (the staged chunks), with parts for every push.
async fn large_bodies_pushed(tls: bool) -> Option<Vec<SeenRequest>> {
    let seen = pushed_through_proxy(tls, "s3-tls", registry).await?;
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

/// The `PutObject`s of blobs (`…/blobs/sha256/<hex>`; not parts, not copies) the proxy
/// saw: the request and the digest's hex.
fn blob_puts(seen: &[SeenRequest]) -> Vec<(&SeenRequest, &str)> {
    seen.iter()
        .filter(|r| r.method == "PUT" && r.target.ends_with("?x-id=PutObject"))
        .filter_map(|r| {
            let path = r.target.split('?').next()?;
            let hex = path.split_once("/blobs/sha256/")?.1;
            (hex.len() == 64).then_some((r, hex))
        })
        .collect()
}

/// A blob stored whole with one `PutObject` (a monolithic push, streamed, which cannot be
/// hashed ahead; the end of a small chunked push, from memory) is signed with its sha256
/// digest as the payload's hash: the store checks every byte it received (over plain HTTP
/// nothing else would), and the registry hashes nothing again.
#[tokio::test]
async fn blobs_stored_whole_are_signed_with_their_digest_as_the_payload_hash() {
    for tls in [false, true] {
        let Some(seen) =
            pushed_through_proxy(tls, "s3-tls-single", registry_with_single_puts).await
        else {
            return;
        };
        let puts = blob_puts(&seen);
        assert!(
            puts.iter().any(|(r, _)| r.body_len > 5 * MIB),
            "no streamed blob PutObject (tls: {tls}): {seen:?}"
        );
        assert!(
            puts.iter()
                .any(|(r, _)| r.body_len > 64 * 1024 && r.body_len < 5 * MIB),
            "no blob PutObject from memory (tls: {tls}): {seen:?}"
        );
        for (request, hex) in puts {
            assert_eq!(
                request.payload_hash.as_deref(),
                Some(hex),
                "tls: {tls}: {} {}",
                request.method,
                request.target
            );
        }
    }
}

#[tokio::test]
async fn pushes_and_pulls_over_https_with_a_private_ca_and_unsigned_parts() {
    let Some(large) = large_bodies_pushed(true).await else {
        return;
    };
    let blobs = blob_puts(&large);
    for request in &large {
        // A blob stored whole carries its digest, which the registry does not compute again.
        let digest = blobs
            .iter()
            .find(|(put, _)| put == &request)
            .map(|(_, hex)| *hex);
        let hash = request.payload_hash.as_deref();
        assert!(
            hash == Some("UNSIGNED-PAYLOAD") || (digest.is_some() && hash == digest),
            "a body sent over HTTPS was hashed into its signature ({hash:?}): {} {}",
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
