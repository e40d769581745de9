//! Fault injection the real server cannot do: a fake S3 endpoint on 127.0.0.1 answering every
//! request with a fixed error (or dropping the connection), to check the translation of S3
//! errors and that the SDK's standard retry policy is in force. These run without a server.

use std::error::Error as _;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use marina_distribution::Error;
use marina_distribution::oci::{Digest, DigestAlgorithm, Tag};
use marina_distribution::storage::s3::{S3Backend, S3Driver};
use marina_distribution::storage::{EngineOptions, S3Config, StorageDriver};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

use crate::helpers::repo;

#[derive(Clone, Copy)]
enum Answer {
    /// An S3 error document with this status and code.
    Error(u16, &'static str),
    /// Close the connection without answering.
    Drop,
}

/// Starts the fake endpoint; returns its URL and the number of requests it received.
async fn fake_s3(answer: Answer) -> (String, Arc<AtomicUsize>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let hits = Arc::new(AtomicUsize::new(0));
    let counter = hits.clone();
    tokio::spawn(async move {
        while let Ok((mut socket, _)) = listener.accept().await {
            let counter = counter.clone();
            tokio::spawn(async move {
                let mut head = Vec::new();
                let mut buf = [0u8; 4096];
                while !head.windows(4).any(|w| w == b"\r\n\r\n") {
                    match socket.read(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => head.extend_from_slice(&buf[..n]),
                    }
                }
                counter.fetch_add(1, Ordering::SeqCst);
                if let Answer::Error(status, code) = answer {
                    let body = format!(
                        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<Error><Code>{code}</Code>\
                         <Message>injected fault</Message><RequestId>r1</RequestId></Error>"
                    );
                    let response = format!(
                        "HTTP/1.1 {status} Injected\r\nContent-Type: application/xml\r\n\
                         Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
                        body.len()
                    );
                    let _ = socket.write_all(response.as_bytes()).await;
                    let _ = socket.shutdown().await;
                }
            });
        }
    });
    (url, hits)
}

fn driver(endpoint: &str) -> S3Driver {
    let mut config = S3Config::new("faulty");
    config.endpoint = Some(endpoint.to_owned());
    config.region = Some("us-east-1".into());
    config.force_path_style = true;
    let sdk = aws_config::SdkConfig::builder()
        .behavior_version(aws_config::BehaviorVersion::latest())
        .credentials_provider(aws_sdk_s3::config::SharedCredentialsProvider::new(
            aws_sdk_s3::config::Credentials::new("test", "test", None, None, "tests"),
        ))
        .build();
    S3Driver::from_backend(
        S3Backend::connect_with(&config, &sdk).expect("backend"),
        EngineOptions::default(),
    )
}

/// Reads a tag (a `GetObject`) through a driver on a fake endpoint answering `answer`.
async fn read_tag(answer: Answer) -> (Error, usize) {
    let (url, hits) = fake_s3(answer).await;
    let d = driver(&url);
    let err = d
        .resolve_tag(&repo("faults/r"), &Tag::parse("v1").unwrap())
        .await
        .expect_err("the fake endpoint only fails");
    (err, hits.load(Ordering::SeqCst))
}

#[tokio::test]
async fn throttling_is_retried_then_reported_retryable() {
    let (err, hits) = read_tag(Answer::Error(503, "SlowDown")).await;
    assert!(
        matches!(
            err,
            Error::Backend {
                driver: "s3",
                retryable: true,
                ..
            }
        ),
        "{err:?}"
    );
    assert_eq!(err.http_status(), 503);
    assert!(err.is_retryable());
    assert!(err.to_string().contains("SlowDown"), "{err}");
    assert_eq!(hits, 3, "the SDK's standard retry policy makes 3 attempts");
}

#[tokio::test]
async fn internal_errors_are_retried_then_reported_retryable() {
    let (err, hits) = read_tag(Answer::Error(500, "InternalError")).await;
    assert!(
        matches!(
            err,
            Error::Backend {
                retryable: true,
                ..
            }
        ),
        "{err:?}"
    );
    assert_eq!(hits, 3);
}

#[tokio::test]
async fn dropped_connections_are_retried_then_reported_retryable() {
    let (err, hits) = read_tag(Answer::Drop).await;
    assert!(
        matches!(
            err,
            Error::Backend {
                retryable: true,
                ..
            }
        ),
        "{err:?}"
    );
    assert_eq!(hits, 3);
}

#[tokio::test]
async fn access_denied_is_a_permanent_backend_error_with_its_source() {
    let (err, hits) = read_tag(Answer::Error(403, "AccessDenied")).await;
    assert!(
        matches!(
            err,
            Error::Backend {
                retryable: false,
                ..
            }
        ),
        "{err:?}"
    );
    assert_eq!(err.http_status(), 500);
    assert!(err.to_string().contains("AccessDenied"), "{err}");
    assert!(
        err.source().is_some(),
        "the SDK error is kept as the source"
    );
    assert_eq!(hits, 1, "permanent errors are not retried");
}

/// An S3 failure answers `UNKNOWN` naming the storage operation and nothing else: no
/// object key or bucket, no S3 request id or message, no SDK output. The error's own
/// text says what S3 answered (code and status) about the relative key; the rest is in
/// its sources, for logs.
#[cfg(feature = "server")]
#[tokio::test]
async fn failures_answer_without_key_request_id_or_sdk_output() {
    let (err, _) = read_tag(Answer::Error(403, "AccessDenied")).await;
    let text = err.to_string();
    assert!(
        text.contains("GetObject: AccessDenied (HTTP 403)"),
        "{text}"
    );
    assert!(
        text.contains("during read of repositories/faults/r/_manifests/sha256/tag-v1"),
        "{text}"
    );
    for leak in [
        "r1",
        "injected fault",
        "faulty",
        "ServiceError",
        "ErrorMetadata",
    ] {
        assert!(!text.contains(leak), "{leak:?} in {text}");
    }
    let logged = marina_distribution::error::ErrorChain(&err).to_string();
    assert!(
        logged.contains("injected fault"),
        "the log lacks S3's message: {logged}"
    );
    let resp = axum::response::IntoResponse::into_response(
        marina_distribution::registry::ApiError::from(err),
    );
    assert_eq!(resp.status().as_u16(), 500);
    let body = axum::body::to_bytes(resp.into_body(), usize::MAX)
        .await
        .unwrap();
    let body: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(body["errors"][0]["code"], "UNKNOWN", "{body}");
    assert_eq!(
        body["errors"][0]["detail"], "storage backend failed during read",
        "{body}"
    );
    for leak in [
        "r1",
        "injected",
        "faulty",
        "faults/r",
        "AccessDenied",
        "GetObject",
    ] {
        assert!(!body.to_string().contains(leak), "{leak:?} in {body}");
    }
}

#[tokio::test]
async fn missing_objects_are_unknown_but_a_missing_bucket_is_an_error() {
    let (err, hits) = read_tag(Answer::Error(404, "NoSuchKey")).await;
    assert!(matches!(err, Error::ManifestUnknown(_)), "{err:?}");
    assert_eq!(hits, 1);
    let (url, _) = fake_s3(Answer::Error(404, "NoSuchKey")).await;
    let digest = Digest::compute(DigestAlgorithm::Sha256, b"x");
    let err = driver(&url)
        .stat(&repo("faults/r"), &digest)
        .await
        .expect_err("unknown");
    assert!(matches!(err, Error::BlobUnknown(_)), "{err:?}");
    let (err, _) = read_tag(Answer::Error(404, "NoSuchBucket")).await;
    assert!(
        matches!(
            err,
            Error::Backend {
                retryable: false,
                ..
            }
        ),
        "{err:?}"
    );
    assert!(err.to_string().contains("NoSuchBucket"), "{err}");
}
