//! [`GcsReader`]: a blob read streamed straight from the response body of a JSON API media
//! download (`GET …/o/<object>?alt=media`, with `Range` for ranged reads).
//!
//! The client crate's own streamed download returns an unnameable `impl Stream`, which a
//! [`Backend::Reader`](crate::storage::backend::Backend::Reader) cannot be without boxing; the
//! driver therefore sends that one request itself, on the crate's HTTP client and
//! credentials, and streams the body as a named type. A body from which GCS stops sending
//! fails (retryably) after the request timeout (`StallWatch`).

use std::pin::Pin;
use std::task::{Context, Poll, ready};

use bytes::Bytes;
use futures::Stream;
use http_body::Body as _;
use pin_project::pin_project;

use super::error;
use crate::error::Result;
use crate::storage::deadline::StallWatch;

/// The body of a media download as a stream of [`Bytes`]: no buffering, no boxing.
#[pin_project]
#[derive(Debug)]
pub struct GcsReader {
    #[pin]
    body: reqwest_gcs::Body,
    /// The object's name, for the details of errors (logs only).
    object: String,
    watch: StallWatch,
}

impl GcsReader {
    pub(crate) fn new(response: reqwest_gcs::Response, object: String, watch: StallWatch) -> Self {
        Self {
            body: reqwest_gcs::Body::from(response),
            object,
            watch,
        }
    }
}

impl Stream for GcsReader {
    type Item = Result<Bytes>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let mut this = self.project();
        loop {
            let polled = this.body.as_mut().poll_frame(cx);
            let watched = this
                .watch
                .watch(cx, polled, error::DRIVER, "media download body");
            return match ready!(watched) {
                Err(stalled) => Poll::Ready(Some(Err(stalled))),
                Ok(None) => Poll::Ready(None),
                Ok(Some(Err(e))) => {
                    Poll::Ready(Some(Err(error::http("media download", this.object, e))))
                }
                Ok(Some(Ok(frame))) => match frame.into_data() {
                    Ok(data) if data.is_empty() => continue,
                    Ok(data) => Poll::Ready(Some(Ok(data))),
                    // Trailers carry no blob bytes.
                    Err(_) => continue,
                },
            };
        }
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        let hint = self.body.size_hint();
        (
            usize::try_from(hint.lower()).unwrap_or(usize::MAX),
            hint.upper().and_then(|u| usize::try_from(u).ok()),
        )
    }
}
