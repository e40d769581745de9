//! The `marina-registry` binary: configuration sources, the printed URL, one log line per
//! request, and graceful shutdown on SIGTERM letting an in-flight request finish.

mod common;

use common::binary::{BIN, send_signal, spawn, wait_for_log};
use common::*;
use reqwest::StatusCode;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::process::Command;

#[tokio::test]
async fn config_file_and_logs() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("registry.toml");
    std::fs::write(
        &cfg,
        format!(
            "listen = \"127.0.0.1:0\"\n[storage]\ntype = \"filesystem\"\n[storage.filesystem]\nroot_directory = \"{}\"\n",
            dir.path().join("store").display()
        ),
    )
    .unwrap();
    let (mut child, addr, mut logs) = spawn(Command::new(BIN).arg("--config").arg(&cfg)).await;
    let resp = Registry::new(format!("http://{addr}")).get("/v2/").await;
    assert_eq!(resp.status(), StatusCode::OK);
    assert_eq!(
        header(&resp, "docker-distribution-api-version"),
        "registry/2.0"
    );
    // One log line for the request, with method, path and status.
    let line = wait_for_log(&mut logs, "GET /v2/").await;
    assert!(line.contains(" 200 "), "{line}");
    // The filesystem root of the config file is used.
    assert!(dir.path().join("store").is_dir());
    send_signal(&child, "INT").await;
    let status = child.wait().await.unwrap();
    assert!(status.success(), "{status:?}");
}

#[tokio::test]
async fn bad_configuration_is_reported() {
    let out = Command::new(BIN)
        .env("STORAGE_TYPE", "nope")
        .env_remove("MARINA_LISTEN")
        .arg("--listen")
        .arg("127.0.0.1:0")
        .output()
        .await
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("STORAGE_TYPE"), "{err}");
}

#[tokio::test]
async fn sigterm_lets_in_flight_requests_finish() {
    let (mut child, addr, mut logs) = spawn(
        Command::new(BIN)
            .arg("--listen")
            .arg("127.0.0.1:0")
            .arg("--storage")
            .arg("inmemory"),
    )
    .await;
    // Open an upload session.
    let location = Registry::new(format!("http://{addr}"))
        .start_upload("shut/down")
        .await;
    wait_for_log(&mut logs, "POST /v2/shut/down/blobs/uploads/").await;

    // A PATCH in flight when the registry is asked to stop. `Expect: 100-continue` makes the
    // server say when the handler starts reading the body, so the request is known to be in
    // progress (not merely queued) before the signal is sent.
    let body = vec![7u8; 2000];
    let mut tcp = tokio::net::TcpStream::connect(&addr).await.unwrap();
    let head = format!(
        "PATCH {location} HTTP/1.1\r\nHost: x\r\nContent-Type: application/octet-stream\r\nContent-Length: {}\r\nExpect: 100-continue\r\nConnection: close\r\n\r\n",
        body.len()
    );
    tcp.write_all(head.as_bytes()).await.unwrap();
    let mut interim = Vec::new();
    while !interim.ends_with(b"\r\n\r\n") {
        let mut b = [0u8; 1];
        assert_eq!(
            tcp.read(&mut b).await.unwrap(),
            1,
            "connection closed early"
        );
        interim.push(b[0]);
    }
    assert!(
        interim.starts_with(b"HTTP/1.1 100"),
        "{}",
        String::from_utf8_lossy(&interim)
    );
    tcp.write_all(&body[..1000]).await.unwrap();
    tcp.flush().await.unwrap();
    send_signal(&child, "TERM").await;
    wait_for_log(&mut logs, "shutdown requested").await;
    // The request in flight still completes.
    tcp.write_all(&body[1000..]).await.unwrap();
    let mut resp = String::new();
    tcp.read_to_string(&mut resp).await.unwrap();
    assert!(resp.starts_with("HTTP/1.1 202"), "{resp}");
    assert!(resp.contains("range: 0-1999"), "{resp}");
    let status = child.wait().await.unwrap();
    assert!(status.success(), "{status:?}");
}
