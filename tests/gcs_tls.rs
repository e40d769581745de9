//! The registry binary on a GCS store reached over HTTPS with a private CA: a TLS proxy (the
//! [fault proxy](common::fault_proxy) with no faults, see [`common::store_tls`]) in front of
//! the GCS emulator, its certificate from a CA made in the test, which the registry trusts
//! through `SSL_CERT_FILE` (read by the HTTP client's certificate verifier).
#![cfg(all(feature = "gcs", feature = "server"))]

mod common;

use common::auth::pki;
use common::fault_workload::MIB;
use common::store_tls::{
    TlsStore, assert_an_untrusted_store_is_refused, push_and_pull, registry_command, serving,
};
use tokio::process::Command;

/// The GCS driver's part size (its default).
const PART: usize = 8 * MIB;

/// The binary on GCS at `endpoint` under `prefix`, trusting only the CA in `ca`, with no
/// single streamed upload (so a monolithic push goes through a resumable session too).
fn registry(endpoint: &str, prefix: &str, ca: &std::path::Path) -> Command {
    let mut cmd = registry_command(&["--storage", "gcs"], ca);
    cmd.env("GCS_ENDPOINT", endpoint)
        .env("GCS_PREFIX", prefix)
        .env("GCS_SINGLE_PUT_LIMIT", "0");
    cmd
}

/// The emulator behind a TLS proxy, and a fresh prefix; `None` without a GCS emulator.
async fn gcs_store(test: &str) -> Option<(TlsStore, String)> {
    let config = common::gcs::config("gcs-tls", test)?;
    let prefix = config.prefix.clone().expect("prefix");
    Some((TlsStore::start(config.endpoint()).await, prefix))
}

#[tokio::test]
async fn pushes_and_pulls_over_https_with_a_private_ca() {
    let Some((store, prefix)) = gcs_store("trusted").await else {
        return;
    };
    let (_child, reg) = serving(&mut registry(&store.proxy.url, &prefix, &store.pki.ca)).await;
    push_and_pull(&reg, PART).await;
    // Every request went through the TLS proxy, resumable sessions included (their
    // `Location` must not lead the driver around it).
    let seen = store.proxy.seen();
    assert!(
        seen.iter()
            .any(|r| r.target.contains("uploadType=resumable")),
        "no resumable session through the proxy: {seen:?}"
    );
    assert!(
        seen.iter().any(|r| r.method == "PUT" && r.body_len >= PART),
        "no session chunk through the proxy: {seen:?}"
    );
}

#[tokio::test]
async fn a_store_whose_certificate_is_not_trusted_is_refused_and_named_in_the_log() {
    let Some((store, prefix)) = gcs_store("untrusted").await else {
        return;
    };
    let other_ca = pki();
    let mut cmd = registry(&store.proxy.url, &prefix, &other_ca.ca);
    assert_an_untrusted_store_is_refused(&mut cmd, &store).await;
}
