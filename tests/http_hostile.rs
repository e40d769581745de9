//! Hostile and malformed requests that must get a clear spec error and change nothing:
//! a request without `Host`, `Content-Range` in RFC 9110 form, manifests that contradict the
//! stored blobs or carry a bogus media type, repeated or empty `n=`, too many upload
//! sessions, and bodies the registry refuses without reading (drained, so the client reads
//! the error instead of a broken pipe).

mod common;

use std::io::{Read, Write};

use common::auth::{self, Setup};
use common::{OCI_MANIFEST, assert_error, image_manifest, payload, sha256};
use marina_distribution::registry::RegistryOptions;
use marina_distribution::registry::auth::config::AuthConfig;
use reqwest::StatusCode;

async fn plain(options: RegistryOptions) -> auth::AuthServer {
    auth::start(
        Setup {
            tls: false,
            options,
            ..Setup::default()
        },
        |_, _| AuthConfig::default(),
    )
    .await
}

/// Sends raw bytes to the server and returns what it answers (until it closes or 2 s pass).
fn raw_exchange(port: u16, head: &[u8], body: &[u8]) -> std::io::Result<String> {
    let mut tcp = std::net::TcpStream::connect(("127.0.0.1", port))?;
    tcp.set_read_timeout(Some(std::time::Duration::from_secs(5)))?;
    tcp.write_all(head)?;
    // Like Go's client: the whole body first, the answer after.
    tcp.write_all(body)?;
    let mut out = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        match tcp.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => {
                out.extend_from_slice(&buf[..n]);
                if out.windows(4).any(|w| w == b"\r\n\r\n") && out.ends_with(b"}") {
                    break;
                }
            }
            Err(e) => return Err(e),
        }
    }
    Ok(String::from_utf8_lossy(&out).into_owned())
}

#[tokio::test]
async fn request_without_host_is_400() {
    let s = plain(RegistryOptions::default()).await;
    let port = s.port;
    let answer = tokio::task::spawn_blocking(move || {
        raw_exchange(port, b"GET /v2/ HTTP/1.1\r\nConnection: close\r\n\r\n", b"")
    })
    .await
    .unwrap()
    .unwrap();
    assert!(answer.starts_with("HTTP/1.1 400"), "{answer}");
    assert!(answer.contains("\"code\":\"UNSUPPORTED\""), "{answer}");
    // HTTP/1.0 has no Host requirement.
    let answer =
        tokio::task::spawn_blocking(move || raw_exchange(port, b"GET /v2/ HTTP/1.0\r\n\r\n", b""))
            .await
            .unwrap()
            .unwrap();
    assert!(answer.starts_with("HTTP/1.0 200"), "{answer}");
}

#[tokio::test]
async fn out_of_order_chunk_body_is_drained_before_the_416() {
    let s = plain(RegistryOptions::default()).await;
    let resp = s
        .client
        .post(s.url("/v2/hostile/drain/blobs/uploads/"))
        .send()
        .await
        .unwrap();
    let loc = common::header(&resp, "location");
    let body = payload(8 << 20, 1);
    let head = format!(
        "PATCH {loc} HTTP/1.1\r\nHost: {}\r\nContent-Type: application/octet-stream\r\n\
         Content-Range: 100-{}\r\nContent-Length: {}\r\n\r\n",
        s.host,
        100 + body.len() - 1,
        body.len()
    );
    let port = s.port;
    let answer = tokio::task::spawn_blocking(move || raw_exchange(port, head.as_bytes(), &body))
        .await
        .unwrap()
        .expect("the whole body is accepted and the answer read (no broken pipe)");
    assert!(answer.starts_with("HTTP/1.1 416"), "{answer}");
    assert!(answer.contains("BLOB_UPLOAD_INVALID"), "{answer}");
    // The session is still usable.
    let resp = s.client.get(s.url(&loc)).send().await.unwrap();
    assert_eq!(resp.status(), StatusCode::NO_CONTENT);
}

#[tokio::test]
async fn refused_body_is_drained_before_the_401() {
    let s = auth::start(
        Setup {
            tls: false,
            ..Setup::default()
        },
        |_, dir| AuthConfig {
            htpasswd: Some(auth::htpasswd(dir, &[("alice", "pw")])),
            ..AuthConfig::default()
        },
    )
    .await;
    let body = payload(8 << 20, 2);
    let head = format!(
        "POST /v2/hostile/refused/blobs/uploads/?digest={} HTTP/1.1\r\nHost: {}\r\n\
         Content-Length: {}\r\n\r\n",
        sha256(&body),
        s.host,
        body.len()
    );
    let port = s.port;
    let answer = tokio::task::spawn_blocking(move || raw_exchange(port, head.as_bytes(), &body))
        .await
        .unwrap()
        .expect("the whole body is accepted and the answer read (no broken pipe)");
    assert!(answer.starts_with("HTTP/1.1 401"), "{answer}");
    assert!(answer.contains("\"code\":\"UNAUTHORIZED\""), "{answer}");
    assert!(
        answer
            .to_ascii_lowercase()
            .contains("www-authenticate: basic realm=\"marina-registry\""),
        "{answer}"
    );
}

#[tokio::test]
async fn content_range_in_rfc_9110_form_is_rejected() {
    let s = plain(RegistryOptions::default()).await;
    for value in ["bytes 0-9", "bytes=0-9", "0-9/10", "bytes 0-9/*"] {
        let resp = s
            .client
            .post(s.url("/v2/hostile/range/blobs/uploads/"))
            .send()
            .await
            .unwrap();
        let loc = common::header(&resp, "location");
        let resp = s
            .client
            .patch(s.url(&loc))
            .header("content-range", value)
            .body(payload(10, 1))
            .send()
            .await
            .unwrap();
        assert_error(resp, 400, "BLOB_UPLOAD_INVALID").await;
        // Nothing was appended.
        let resp = s.client.get(s.url(&loc)).send().await.unwrap();
        assert_eq!(common::header(&resp, "range"), "0-0", "{value}");
    }
}

#[tokio::test]
async fn manifests_contradicting_stored_blobs_or_with_bogus_media_types() {
    let s = plain(RegistryOptions::default()).await;
    let repo = "hostile/manifests";
    let config = br#"{"architecture":"amd64","os":"linux"}"#;
    let layer = payload(2000, 5);
    for data in [&config[..], &layer] {
        let resp = s
            .client
            .post(s.url(&format!(
                "/v2/{repo}/blobs/uploads/?digest={}",
                sha256(data)
            )))
            .body(data.to_vec())
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), StatusCode::CREATED);
    }
    let put = |body: String, ct: &'static str| {
        s.client
            .put(s.url(&format!("/v2/{repo}/manifests/t")))
            .header("content-type", ct)
            .body(body)
            .send()
    };
    let (cd, ld) = (sha256(config), sha256(&layer));
    // The layer's size is off by one.
    let wrong_size = image_manifest(&cd, config.len(), &[(ld.as_str(), layer.len() + 1)], None);
    assert_error(
        put(wrong_size, OCI_MANIFEST).await.unwrap(),
        400,
        "MANIFEST_INVALID",
    )
    .await;
    // The config's size is off.
    let wrong_config = image_manifest(&cd, 1, &[(ld.as_str(), layer.len())], None);
    assert_error(
        put(wrong_config, OCI_MANIFEST).await.unwrap(),
        400,
        "MANIFEST_INVALID",
    )
    .await;
    // A bogus manifest media type, in the body and in Content-Type.
    let good = image_manifest(&cd, config.len(), &[(ld.as_str(), layer.len())], None);
    let bogus = good.replace(OCI_MANIFEST, "application/x-not-a-manifest");
    assert_error(
        put(bogus, "application/x-not-a-manifest").await.unwrap(),
        400,
        "MANIFEST_INVALID",
    )
    .await;
    // A descriptor whose media type is not one.
    let bad_layer = good.replace("application/vnd.oci.image.layer.v1.tar", "not a media type");
    assert_error(
        put(bad_layer, OCI_MANIFEST).await.unwrap(),
        400,
        "MANIFEST_INVALID",
    )
    .await;
    // An index whose child's size is wrong.
    let resp = put(good.clone(), OCI_MANIFEST).await.unwrap();
    assert_eq!(resp.status(), StatusCode::CREATED);
    let index = format!(
        r#"{{"schemaVersion":2,"mediaType":"{}","manifests":[{{"mediaType":"{OCI_MANIFEST}","digest":"{}","size":{}}}]}}"#,
        common::OCI_INDEX,
        sha256(good.as_bytes()),
        good.len() + 7
    );
    assert_error(
        put(index, common::OCI_INDEX).await.unwrap(),
        400,
        "MANIFEST_INVALID",
    )
    .await;
    // Nothing of that was stored: the tag still names the good manifest.
    let resp = s
        .client
        .get(s.url(&format!("/v2/{repo}/manifests/t")))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.bytes().await.unwrap(), good.as_bytes());
}

#[tokio::test]
async fn tag_list_n_empty_or_repeated_is_400() {
    let s = plain(RegistryOptions::default()).await;
    for query in ["n=", "n=1&n=2", "last=a&last=b", "n=+1", "n=-1"] {
        let resp = s
            .client
            .get(s.url(&format!("/v2/hostile/tags/tags/list?{query}")))
            .send()
            .await
            .unwrap();
        assert_error(resp, 400, "UNSUPPORTED").await;
    }
}

#[tokio::test]
async fn upload_sessions_are_bounded_per_repository() {
    let s = plain(RegistryOptions {
        max_upload_sessions: 2,
        ..RegistryOptions::default()
    })
    .await;
    let start = |repo: &'static str| {
        s.client
            .post(s.url(&format!("/v2/{repo}/blobs/uploads/")))
            .send()
    };
    let first = start("hostile/a").await.unwrap();
    assert_eq!(first.status(), StatusCode::ACCEPTED);
    assert_eq!(
        start("hostile/a").await.unwrap().status(),
        StatusCode::ACCEPTED
    );
    let resp = start("hostile/a").await.unwrap();
    assert_eq!(common::header(&resp, "retry-after"), "1");
    assert_error(resp, 429, "TOOMANYREQUESTS").await;
    // Another repository is not affected; cancelling one makes room again.
    assert_eq!(
        start("hostile/b").await.unwrap().status(),
        StatusCode::ACCEPTED
    );
    let loc = common::header(&first, "location");
    let resp = s.client.delete(s.url(&loc)).send().await.unwrap();
    assert_eq!(resp.status(), StatusCode::NO_CONTENT);
    assert_eq!(
        start("hostile/a").await.unwrap().status(),
        StatusCode::ACCEPTED
    );
}
