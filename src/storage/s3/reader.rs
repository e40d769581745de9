//! [`S3Reader`]: a blob read streamed straight from the `GetObject` response body, failed
//! (retryably) when the store stops sending (`StallWatch`).

use std::pin::Pin;
use std::task::{Context, Poll, ready};

use aws_smithy_types::byte_stream::ByteStream;
use bytes::Bytes;
use futures::Stream;
use pin_project::pin_project;

use super::error;
use crate::error::Result;
use crate::storage::deadline::StallWatch;

/// The body of a `GetObject` response as a stream of [`Bytes`]: no buffering, no boxing.
#[pin_project]
#[derive(Debug)]
pub struct S3Reader {
    #[pin]
    body: ByteStream,
    key: String,
    watch: StallWatch,
}

impl S3Reader {
    pub(crate) fn new(body: ByteStream, key: String, watch: StallWatch) -> Self {
        Self { body, key, watch }
    }
}

impl Stream for S3Reader {
    type Item = Result<Bytes>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = self.project();
        let polled = this.body.poll_next(cx);
        Poll::Ready(
            match ready!(
                this.watch
                    .watch(cx, polled, error::DRIVER, "GetObject body")
            ) {
                Ok(item) => item.map(|r| r.map_err(|e| error::body(this.key, e))),
                Err(stalled) => Some(Err(stalled)),
            },
        )
    }
}
