//! Reading what is left of a request body before an answer is sent.
//!
//! A handler (or the access check) may answer before reading the body: an upload chunk at
//! the wrong offset, a refused push. HTTP/1.1 servers then close the connection, and a client
//! still writing its body sees a broken pipe instead of the error. The dispatcher hands
//! handlers a [`SharedBody`] and, once the answer is ready, reads and drops what the handler
//! left, up to [`RegistryOptions::drain_limit`](super::RegistryOptions::drain_limit) bytes and
//! [`DRAIN_TIME_LIMIT`]; past that the connection is closed as before.

use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use axum::body::{Body, HttpBody};
use axum::http::{HeaderMap, header};
use bytes::Bytes;
use http_body::{Frame, SizeHint};

/// How long the dispatcher waits for a rejected body at most.
pub const DRAIN_TIME_LIMIT: Duration = Duration::from_secs(10);

/// Whether a request announces a body (`Content-Length` > 0 or `Transfer-Encoding`).
pub fn has_body(headers: &HeaderMap) -> bool {
    headers.contains_key(header::TRANSFER_ENCODING)
        || headers
            .get(header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.trim() != "0")
}

/// A request body whose unread rest stays reachable through its [`Leftover`].
pub struct SharedBody {
    inner: Arc<Mutex<Option<Body>>>,
}

/// The part of a [`SharedBody`] its reader did not consume.
pub struct Leftover {
    inner: Arc<Mutex<Option<Body>>>,
}

/// Splits `body` into the body handed to a handler and the handle that drains the rest.
pub fn share(body: Body) -> (Body, Leftover) {
    let inner = Arc::new(Mutex::new(Some(body)));
    (
        Body::new(SharedBody {
            inner: Arc::clone(&inner),
        }),
        Leftover { inner },
    )
}

impl HttpBody for SharedBody {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, axum::Error>>> {
        let mut guard = self.inner.lock().expect("body lock");
        let Some(body) = guard.as_mut() else {
            return Poll::Ready(None);
        };
        let polled = Pin::new(body).poll_frame(cx);
        if matches!(polled, Poll::Ready(None) | Poll::Ready(Some(Err(_)))) {
            *guard = None;
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner
            .lock()
            .expect("body lock")
            .as_ref()
            .is_none_or(HttpBody::is_end_stream)
    }

    fn size_hint(&self) -> SizeHint {
        self.inner
            .lock()
            .expect("body lock")
            .as_ref()
            .map_or_else(|| SizeHint::with_exact(0), HttpBody::size_hint)
    }
}

impl Leftover {
    /// Reads and drops the rest of the body, up to `limit` bytes and [`DRAIN_TIME_LIMIT`].
    pub async fn drain(self, limit: u64) {
        let body = self.inner.lock().expect("body lock").take();
        if let Some(body) = body {
            drain(body, limit).await;
        }
    }
}

/// Reads and drops `body`, up to `limit` bytes and [`DRAIN_TIME_LIMIT`].
pub async fn drain(body: Body, limit: u64) {
    if body.is_end_stream() || body.size_hint().lower() > limit {
        return;
    }
    let read = async {
        let mut body = body;
        let mut seen = 0u64;
        while let Some(Ok(frame)) =
            std::future::poll_fn(|cx| Pin::new(&mut body).poll_frame(cx)).await
        {
            if let Some(data) = frame.data_ref() {
                seen += data.len() as u64;
                if seen > limit {
                    return;
                }
            }
        }
    };
    let _ = tokio::time::timeout(DRAIN_TIME_LIMIT, read).await;
}
