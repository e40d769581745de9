//! TLS itself: HTTP/2 chosen by ALPN next to HTTP/1.1, client certificates (mTLS), the
//! certificate replaced without a restart (file change), connection limits, and the
//! binary's refusal to take passwords over clear text off loopback.

mod common;

use std::time::Duration;

use common::auth::{self, Setup};
use marina_distribution::registry::auth::config::AuthConfig;
use marina_distribution::server::{ServeOptions, reload};
use reqwest::{StatusCode, Version};

async fn open_server(setup: Setup) -> auth::AuthServer {
    auth::start(setup, |_, _| AuthConfig::default()).await
}

/// A server (over TLS or not) with connection limits `serve`.
async fn limited_server(tls: bool, serve: ServeOptions) -> auth::AuthServer {
    open_server(Setup {
        tls,
        serve,
        ..Setup::default()
    })
    .await
}

/// Limits under which a request's header must arrive within 300 ms, and an idle connection
/// lasts 30 s.
fn quick_header_timeout() -> ServeOptions {
    ServeOptions {
        header_read_timeout: Duration::from_millis(300),
        idle_timeout: Duration::from_secs(30),
        ..ServeOptions::default()
    }
}

/// A bare TCP connection to the server.
async fn tcp_to(s: &auth::AuthServer) -> tokio::net::TcpStream {
    tokio::net::TcpStream::connect(("127.0.0.1", s.port))
        .await
        .unwrap()
}

#[tokio::test]
async fn http2_and_http1_by_alpn() {
    let s = open_server(Setup::default()).await;
    let resp = s.get("/v2/").await;
    assert_eq!(resp.status(), StatusCode::OK);
    assert_eq!(resp.version(), Version::HTTP_2);
    let h1 = reqwest::Client::builder()
        .use_rustls_tls()
        .tls_built_in_root_certs(false)
        .add_root_certificate(reqwest::Certificate::from_pem(s.pki.ca_pem.as_bytes()).unwrap())
        .http1_only()
        .build()
        .unwrap();
    let resp = h1.get(s.url("/v2/")).send().await.unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    assert_eq!(resp.version(), Version::HTTP_11);
}

#[tokio::test]
async fn client_certificates_when_mtls_is_on() {
    let s = open_server(Setup {
        mtls: true,
        ..Setup::default()
    })
    .await;
    // Without a client certificate the handshake fails.
    assert!(s.client.get(s.url("/v2/")).send().await.is_err());
    // With one from the CA, the request goes through.
    let mut identity = std::fs::read(&s.pki.client_cert).unwrap();
    identity.extend(std::fs::read(&s.pki.client_key).unwrap());
    let client = auth::client(&s.pki, Some(&identity));
    let resp = client.get(s.url("/v2/")).send().await.unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    // A certificate from another CA is refused.
    let stranger = auth::pki();
    let mut identity = std::fs::read(&stranger.client_cert).unwrap();
    identity.extend(std::fs::read(&stranger.client_key).unwrap());
    let client = auth::client(&s.pki, Some(&identity));
    assert!(client.get(s.url("/v2/")).send().await.is_err());
}

#[tokio::test]
async fn certificate_reloaded_when_its_files_change() {
    let s = open_server(Setup::default()).await;
    let tls = s.tls.clone().unwrap();
    let watcher = reload::spawn(tls.watched_files(), Duration::from_millis(50), {
        let tls = tls.clone();
        move || tls.reload().unwrap()
    });
    assert_eq!(s.get("/v2/").await.status(), StatusCode::OK);
    // A certificate from a new CA is moved into place.
    let next = auth::pki();
    let staged_cert = s.pki.dir.path().join("next.pem");
    let staged_key = s.pki.dir.path().join("next.key");
    std::fs::copy(&next.cert, &staged_cert).unwrap();
    std::fs::copy(&next.key, &staged_key).unwrap();
    std::fs::rename(&staged_key, &s.pki.key).unwrap();
    std::fs::rename(&staged_cert, &s.pki.cert).unwrap();
    let new_ca_client = auth::client(&next, None);
    let mut served = false;
    for _ in 0..100 {
        tokio::time::sleep(Duration::from_millis(50)).await;
        if new_ca_client.get(s.url("/v2/")).send().await.is_ok() {
            served = true;
            break;
        }
    }
    watcher.abort();
    assert!(served, "the new certificate was not picked up");
    // New connections no longer chain to the old CA.
    let old_ca_client = auth::client(&s.pki, None);
    assert!(old_ca_client.get(s.url("/v2/")).send().await.is_err());
}

#[tokio::test]
async fn connections_beyond_the_limit_wait() {
    let options = ServeOptions {
        max_connections: 1,
        idle_timeout: Duration::from_millis(500),
        ..ServeOptions::default()
    };
    let s = limited_server(false, options).await;
    // One idle connection holds the only slot...
    let held = tcp_to(&s).await;
    tokio::time::sleep(Duration::from_millis(100)).await;
    let started = std::time::Instant::now();
    let client = reqwest::Client::new();
    // ...until the idle timeout closes it; then the next client is served.
    let resp = client.get(s.url("/v2/")).send().await.unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    assert!(
        started.elapsed() >= Duration::from_millis(300),
        "served after {:?}, while the only slot was taken",
        started.elapsed()
    );
    drop(held);
}

/// Runs the binary on in-memory storage, listening on `listen`, with the `htpasswd` file.
fn run_binary(listen: &str, htpasswd: &std::path::Path) -> std::process::Output {
    std::process::Command::new(env!("CARGO_BIN_EXE_marina-registry"))
        .args(["--storage", "inmemory", "--listen", listen, "--htpasswd"])
        .arg(htpasswd)
        .output()
        .unwrap()
}

#[test]
fn binary_refuses_basic_over_clear_text_off_loopback() {
    let dir = tempfile::tempdir().unwrap();
    let htpasswd = auth::htpasswd(dir.path(), &[("alice", "pw")]);
    let out = run_binary("0.0.0.0:0", &htpasswd);
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("needs TLS"), "{stderr}");
    // Other hash schemes are a clear startup error naming the line.
    std::fs::write(&htpasswd, "alice:$apr1$salt$hash\n").unwrap();
    let out = run_binary("127.0.0.1:0", &htpasswd);
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("line 1") && stderr.contains("MD5"),
        "{stderr}"
    );
}

/// A connection that never sends a byte (in clear text, or after its TLS handshake) holds
/// its slot for `header_read_timeout`, not `idle_timeout`: silent sockets cannot fill
/// `max_connections` for long.
#[tokio::test]
async fn silent_connections_are_cut_off_at_the_header_timeout() {
    use tokio::io::AsyncReadExt;
    for tls in [false, true] {
        let s = limited_server(tls, quick_header_timeout()).await;
        let tcp = tcp_to(&s).await;
        let started = std::time::Instant::now();
        let mut buf = Vec::new();
        let read = if tls {
            let mut stream = tls_handshake(&s, tcp).await;
            tokio::time::timeout(Duration::from_secs(5), stream.read_to_end(&mut buf)).await
        } else {
            let mut tcp = tcp;
            tokio::time::timeout(Duration::from_secs(5), tcp.read_to_end(&mut buf)).await
        };
        assert!(read.is_ok(), "tls {tls}: connection still open after 5 s");
        assert!(started.elapsed() < Duration::from_secs(3), "tls {tls}");
        assert!(buf.is_empty(), "tls {tls}: {buf:?}");
    }
}

/// A completed TLS handshake with the test server, as a client trusting its CA.
async fn tls_handshake(
    s: &auth::AuthServer,
    tcp: tokio::net::TcpStream,
) -> tokio_rustls::client::TlsStream<tokio::net::TcpStream> {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, ServerName};
    let mut roots = rustls::RootCertStore::empty();
    roots
        .add(CertificateDer::from_pem_slice(s.pki.ca_pem.as_bytes()).unwrap())
        .unwrap();
    let config = rustls::ClientConfig::builder_with_provider(std::sync::Arc::new(
        rustls::crypto::aws_lc_rs::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_root_certificates(roots)
    .with_no_client_auth();
    let connector = tokio_rustls::TlsConnector::from(std::sync::Arc::new(config));
    let name = ServerName::try_from("127.0.0.1").unwrap();
    connector.connect(name, tcp).await.expect("TLS handshake")
}

/// A client speaking plain HTTP to the TLS port is told so in a 400 it can read (with the
/// error envelope), not with a TLS alert.
#[tokio::test]
async fn plain_http_on_the_tls_port_is_told_to_use_https() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let s = open_server(Setup::default()).await;
    let mut tcp = tcp_to(&s).await;
    tcp.write_all(b"GET /v2/ HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    let mut answer = String::new();
    tokio::time::timeout(Duration::from_secs(5), tcp.read_to_string(&mut answer))
        .await
        .expect("answered and closed")
        .unwrap();
    assert!(answer.starts_with("HTTP/1.1 400 "), "{answer}");
    let body = answer.split("\r\n\r\n").nth(1).unwrap();
    let v: serde_json::Value = serde_json::from_str(body).unwrap();
    assert_eq!(v["errors"][0]["code"], "UNSUPPORTED");
    assert!(body.contains("HTTPS"), "{body}");
    // TLS clients are served as before.
    assert_eq!(s.get("/v2/").await.status(), StatusCode::OK);
}

#[tokio::test]
async fn slow_headers_are_cut_off() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let s = limited_server(false, quick_header_timeout()).await;
    let mut tcp = tcp_to(&s).await;
    tcp.write_all(b"GET /v2/ HTTP/1.1\r\nHost: x\r\n")
        .await
        .unwrap();
    let started = std::time::Instant::now();
    let mut buf = Vec::new();
    // The header never ends: the server closes the connection after the timeout.
    let read = tokio::time::timeout(Duration::from_secs(5), tcp.read_to_end(&mut buf)).await;
    assert!(read.is_ok(), "connection still open after 5 s");
    assert!(started.elapsed() < Duration::from_secs(3));
    assert!(!String::from_utf8_lossy(&buf).contains("200 OK"));
}
