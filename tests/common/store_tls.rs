//! The registry binary on a store reached over HTTPS, as production stores are: the
//! [fault proxy](super::fault_proxy) serves TLS (with no faults) in front of the store's test
//! server, with a certificate from a CA made per test, and the registry trusts a CA only
//! through `SSL_CERT_FILE`, as an operator's private CA is trusted. Shared by
//! `tests/s3_tls.rs` and `tests/gcs_tls.rs`.

use std::path::Path;

use reqwest::StatusCode;
use tokio::io::BufReader;
use tokio::process::{Child, ChildStderr, Command};

use super::Registry;
use super::auth::{Pki, pki};
use super::binary::{BIN, spawn, wait_for_log, wait_for_metrics_address};
use super::content::payload;
use super::fault_proxy::FaultProxy;
use super::fault_workload::{Blob, MIB, assert_pulls_exactly, push_and_acknowledge};

/// The binary's log lines.
pub type Logs = tokio::io::Lines<BufReader<ChildStderr>>;

/// A store's test server behind a TLS proxy whose certificate `pki`'s CA issued.
pub struct TlsStore {
    /// The proxy: `proxy.url` is the `https://127.0.0.1:PORT` endpoint to configure.
    pub proxy: FaultProxy,
    /// The CA, the proxy's certificate and its key.
    pub pki: Pki,
}

impl TlsStore {
    /// Starts a TLS proxy to `upstream` (`http://host:port`) with a certificate from a new CA.
    pub async fn start(upstream: &str) -> Self {
        let pki = pki();
        let proxy = FaultProxy::start_tls(upstream, 0.0, 1, &pki.cert, &pki.key).await;
        assert!(proxy.url.starts_with("https://127.0.0.1:"), "{}", proxy.url);
        Self { proxy, pki }
    }

    /// The proxy's `127.0.0.1:PORT`, which no answer or detail may name.
    pub fn host_port(&self) -> &str {
        self.proxy.url.trim_start_matches("https://")
    }
}

/// The binary with `storage_args` (`--storage <driver>`) and a metrics listener, trusting
/// only the CA in `ca` (a PEM file): `SSL_CERT_FILE`, with `SSL_CERT_DIR` unset. The caller
/// adds the driver's settings.
pub fn registry_command(storage_args: &[&str], ca: &Path) -> Command {
    let mut cmd = Command::new(BIN);
    cmd.args(["--listen", "127.0.0.1:0", "--metrics-listen", "127.0.0.1:0"])
        .args(storage_args)
        .env("SSL_CERT_FILE", ca)
        .env_remove("SSL_CERT_DIR");
    cmd
}

/// Spawns `cmd` and keeps reading its log, into the test's output (shown when it fails),
/// so that it never blocks on a full pipe.
pub async fn serving(cmd: &mut Command) -> (Child, Registry) {
    let (child, addr, mut logs) = spawn(cmd).await;
    tokio::spawn(async move {
        while let Ok(Some(line)) = logs.next_line().await {
            eprintln!("marina-registry: {line}");
        }
    });
    (child, Registry::new(format!("http://{addr}")))
}

/// Pushes a blob monolithically (more than one part), one in chunks of a part or more, and
/// one in chunks below a part, and pulls each back: every way a blob reaches the store.
pub async fn push_and_pull(reg: &Registry, part: usize) {
    for (i, (len, chunks)) in [(part + MIB, 0), (2 * part + MIB, 2), (MIB, 3)]
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

/// A registry that does not trust the store's certificate (`cmd` trusts another CA) starts
/// all the same and says why it cannot reach the store: its log names the certificate,
/// `/readyz` answers 503, and a push gets a `503` with `Retry-After` in the spec's error
/// envelope; no answer names the store's address.
pub async fn assert_an_untrusted_store_is_refused(cmd: &mut Command, store: &TlsStore) {
    let (_child, addr, mut logs) = spawn(cmd).await;
    let line = wait_for_log(&mut logs, "store unreachable at start").await;
    assert!(
        line.contains("certificate"),
        "the log does not say what failed: {line}"
    );
    let metrics = wait_for_metrics_address(&mut logs).await;
    tokio::spawn(async move { while let Ok(Some(_)) = logs.next_line().await {} });
    let ready = reqwest::get(format!("http://{metrics}/readyz"))
        .await
        .unwrap();
    assert_eq!(ready.status(), StatusCode::SERVICE_UNAVAILABLE);
    let body = ready.text().await.unwrap();
    assert!(body.starts_with("not ready: "), "{body}");
    assert!(
        !body.contains(store.host_port()),
        "the store leaked: {body}"
    );

    let reg = Registry::new(format!("http://{addr}"));
    let data = payload(4096, 7);
    let digest = super::sha256_digest(&data);
    let resp = reg
        .request(
            reqwest::Method::POST,
            &format!("/v2/tls/app/blobs/uploads/?digest={digest}"),
        )
        .header("content-type", "application/octet-stream")
        .body(data)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::SERVICE_UNAVAILABLE, "{resp:?}");
    assert!(
        resp.headers().contains_key("retry-after"),
        "no Retry-After: {resp:?}"
    );
    let text = resp.text().await.unwrap();
    assert!(
        !text.contains(store.host_port()),
        "the store leaked: {text}"
    );
    let envelope: serde_json::Value = serde_json::from_str(&text).unwrap();
    assert!(envelope["errors"][0]["code"].is_string(), "{text}");
    assert!(
        store.proxy.seen().is_empty(),
        "a request passed a refused handshake"
    );
}
