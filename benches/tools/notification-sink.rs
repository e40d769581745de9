//! A notification endpoint for benchmarks: it answers `200` to every POST, reads and discards
//! the body, and counts the requests, the body bytes and the events (one `"instanceID":` per
//! event, which a JSON string cannot hold unescaped). It costs as little CPU as it can, so
//! that `benches/observe-cost.sh`, which runs it on the registry's cores, measures the
//! registry's cost of notifications rather than the endpoint's.
//!
//! ```sh
//! cargo run --release --example notification-sink -- 127.0.0.1:5199
//! curl -s http://127.0.0.1:5199/   # requests=N bytes=N events=N
//! ```
//!
//! A `GET` answers with the counts so far; `SIGTERM` or `SIGINT` prints them and stops it.
//! HTTP/1.1 with `Content-Length` bodies and keep-alive only: what the registry's notifier
//! sends.

use std::sync::atomic::{AtomicU64, Ordering};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::signal::unix::{SignalKind, signal};

static REQUESTS: AtomicU64 = AtomicU64::new(0);
static BYTES: AtomicU64 = AtomicU64::new(0);
static EVENTS: AtomicU64 = AtomicU64::new(0);

const EVENT_MARK: &[u8] = b"\"instanceID\":";

fn counts() -> String {
    format!(
        "requests={} bytes={} events={}\n",
        REQUESTS.load(Ordering::Relaxed),
        BYTES.load(Ordering::Relaxed),
        EVENTS.load(Ordering::Relaxed)
    )
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> std::io::Result<()> {
    let addr = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "127.0.0.1:5199".into());
    let listener = TcpListener::bind(&addr).await?;
    let mut term = signal(SignalKind::terminate())?;
    let mut int = signal(SignalKind::interrupt())?;
    loop {
        tokio::select! {
            accepted = listener.accept() => {
                if let Ok((stream, _)) = accepted {
                    tokio::spawn(serve(stream));
                }
            }
            _ = term.recv() => break,
            _ = int.recv() => break,
        }
    }
    print!("sink: {}", counts());
    Ok(())
}

/// Serves one connection until the client closes it or sends something this sink does not
/// understand.
async fn serve(mut stream: TcpStream) {
    let _ = stream.set_nodelay(true);
    let mut buf: Vec<u8> = Vec::with_capacity(256 * 1024);
    let finder = memchr::memmem::Finder::new(EVENT_MARK);
    loop {
        // The head.
        let head_end = loop {
            if let Some(at) = memchr::memmem::find(&buf, b"\r\n\r\n") {
                break at + 4;
            }
            if buf.len() > 64 * 1024 || !read_more(&mut stream, &mut buf).await {
                return;
            }
        };
        let head = &buf[..head_end];
        let is_get = head.starts_with(b"GET ");
        let Some(length) = content_length(head) else {
            return;
        };
        // The body, counted and discarded.
        while buf.len() < head_end + length {
            if !read_more(&mut stream, &mut buf).await {
                return;
            }
        }
        let reply = if is_get {
            let body = counts();
            format!(
                "HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\ncontent-length: {}\r\n\r\n{body}",
                body.len()
            )
        } else {
            let body = &buf[head_end..head_end + length];
            REQUESTS.fetch_add(1, Ordering::Relaxed);
            BYTES.fetch_add(length as u64, Ordering::Relaxed);
            EVENTS.fetch_add(finder.find_iter(body).count() as u64, Ordering::Relaxed);
            "HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n".to_owned()
        };
        buf.drain(..head_end + length);
        if stream.write_all(reply.as_bytes()).await.is_err() {
            return;
        }
    }
}

/// Reads what the socket has into `buf`; `false` at the end of the stream or on an error.
async fn read_more(stream: &mut TcpStream, buf: &mut Vec<u8>) -> bool {
    if buf.capacity() - buf.len() < 64 * 1024 {
        buf.reserve(256 * 1024);
    }
    matches!(stream.read_buf(buf).await, Ok(n) if n > 0)
}

/// The `Content-Length` of a request head (0 when absent); `None` for a chunked body.
fn content_length(head: &[u8]) -> Option<usize> {
    let mut length = 0;
    for line in head.split(|&b| b == b'\n') {
        let Some(colon) = line.iter().position(|&b| b == b':') else {
            continue;
        };
        let (name, value) = (&line[..colon], &line[colon + 1..]);
        if name.eq_ignore_ascii_case(b"transfer-encoding") {
            return None;
        }
        if name.eq_ignore_ascii_case(b"content-length") {
            length = std::str::from_utf8(value).ok()?.trim().parse().ok()?;
        }
    }
    Some(length)
}
