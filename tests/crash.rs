//! `kill -9` during concurrent chunked pushes on the filesystem, restart, clients resume:
//! every upload session answers as the spec says, never with a server error. A session is
//! either unknown (404 `BLOB_UPLOAD_UNKNOWN`: the client starts over) or continues from the
//! offset it reports, and finishing it stores exactly its bytes.
//!
//! The case the issue found: a session whose record survived the kill after its finish had
//! moved its bytes into `blobs/` claimed an offset whose bytes were gone, and its next chunk
//! was answered `500`.

mod common;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::binary::{BIN, send_signal, spawn};
use common::*;
use reqwest::StatusCode;
use tokio::process::Command;

const ROUNDS: usize = 6;
const CLIENTS: usize = 8;
const CHUNK: usize = 48 * 1024;
const CHUNKS: usize = 3;
const REPO: &str = "crash/test";

/// A session a client opened: its location and the blob it is pushing.
#[derive(Clone)]
struct Session {
    location: String,
    data: Vec<u8>,
}

async fn start(root: &std::path::Path) -> (tokio::process::Child, Registry) {
    let (child, addr, mut logs) = spawn(
        Command::new(BIN)
            .arg("--listen")
            .arg("127.0.0.1:0")
            .arg("--root-directory")
            .arg(root),
    )
    .await;
    // Keep reading the logs so the server never blocks on a full pipe.
    tokio::spawn(async move { while let Ok(Some(_)) = logs.next_line().await {} });
    (child, Registry::new(format!("http://{addr}")))
}

/// Pushes blobs in chunks, one session after another, recording each session it opens.
async fn client(registry: Registry, id: usize, sessions: Arc<Mutex<Vec<Session>>>) {
    for n in 0.. {
        let data = payload(CHUNK * CHUNKS, (id * 31 + n) as u8);
        let resp = registry.post_upload(REPO).await;
        if resp.status() != StatusCode::ACCEPTED {
            return;
        }
        let location = header(&resp, "location");
        sessions.lock().unwrap().push(Session {
            location: location.clone(),
            data: data.clone(),
        });
        for c in 0..CHUNKS - 1 {
            let chunk = &data[c * CHUNK..(c + 1) * CHUNK];
            let resp = registry
                .patch_chunk(&location, (c * CHUNK) as u64, chunk)
                .await;
            if resp.status() != StatusCode::ACCEPTED {
                return;
            }
        }
        // The last chunk comes with the request that closes the session.
        let last = &data[(CHUNKS - 1) * CHUNK..];
        let resp = registry.close_upload(&location, &sha256(&data), last).await;
        if resp.status() != StatusCode::CREATED {
            return;
        }
    }
}

/// After the restart: resumes `session` as a client would, returning the statuses seen.
async fn resume(registry: &Registry, session: &Session) -> Vec<StatusCode> {
    let mut seen = Vec::new();
    let status = registry.upload_status(&session.location).await;
    seen.push(status.status());
    if status.status() != StatusCode::NO_CONTENT {
        return seen;
    }
    let range = header(&status, "range");
    let end: usize = range.split('-').nth(1).unwrap().parse().unwrap();
    let offset = if end == 0 { 0 } else { end + 1 };
    let digest = sha256(&session.data);
    let rest = &session.data[offset.min(session.data.len())..];
    let resp = if rest.is_empty() {
        registry.close_upload(&session.location, &digest, b"").await
    } else {
        let patched = registry
            .patch_chunk(&session.location, offset as u64, rest)
            .await;
        seen.push(patched.status());
        if patched.status() != StatusCode::ACCEPTED {
            return seen;
        }
        registry.close_upload(&session.location, &digest, b"").await
    };
    seen.push(resp.status());
    if resp.status() == StatusCode::CREATED {
        let blob = registry.get(&format!("/v2/{REPO}/blobs/{digest}")).await;
        assert_eq!(blob.status(), StatusCode::OK);
        assert_eq!(
            body(blob).await,
            session.data,
            "a resumed blob holds other bytes"
        );
    }
    seen
}

/// The clients' requests in flight when the server is killed fail in transport: the typed
/// client panics for those, in the clients' tasks; keep that out of the output.
fn quiet_transport_panics() {
    let default = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        let message = info
            .payload()
            .downcast_ref::<String>()
            .map(String::as_str)
            .unwrap_or_default();
        if !message.starts_with("the registry answers") {
            default(info);
        }
    }));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sessions_that_outlive_a_kill_answer_as_the_spec_says() {
    quiet_transport_panics();
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("root");
    let mut answers: HashMap<u16, usize> = HashMap::new();
    for round in 0..ROUNDS {
        let (mut child, registry) = start(&root).await;
        let sessions = Arc::new(Mutex::new(Vec::new()));
        let clients: Vec<_> = (0..CLIENTS)
            .map(|id| tokio::spawn(client(registry.clone(), id, Arc::clone(&sessions))))
            .collect();
        // Let the pushes run a while (more each round), then kill -9.
        tokio::time::sleep(Duration::from_millis(150 + 120 * round as u64)).await;
        child.start_kill().unwrap();
        child.wait().await.unwrap();
        for c in clients {
            c.abort();
        }
        let (mut child, registry) = start(&root).await;
        let opened = sessions.lock().unwrap().clone();
        for session in &opened {
            for status in resume(&registry, session).await {
                assert!(
                    !status.is_server_error(),
                    "round {round}: session {} answered {status}",
                    session.location
                );
                *answers.entry(status.as_u16()).or_default() += 1;
            }
        }
        send_signal(&child, "TERM").await;
        child.wait().await.unwrap();
    }
    eprintln!("answers after {ROUNDS} kills: {answers:?}");
    assert!(
        answers.contains_key(&201),
        "no session could be resumed: {answers:?}"
    );
}
