//! [`S3Reader`]: a blob read streamed straight from the `GetObject` response body.

use std::pin::Pin;
use std::task::{Context, Poll};

use aws_smithy_types::byte_stream::ByteStream;
use bytes::Bytes;
use futures::Stream;
use pin_project::pin_project;

use super::error;
use crate::error::Result;

/// The body of a `GetObject` response as a stream of [`Bytes`]: no buffering, no boxing.
#[pin_project]
#[derive(Debug)]
pub struct S3Reader {
    #[pin]
    body: ByteStream,
    key: String,
}

impl S3Reader {
    pub(crate) fn new(body: ByteStream, key: String) -> Self {
        Self { body, key }
    }
}

impl Stream for S3Reader {
    type Item = Result<Bytes>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = self.project();
        let key = this.key;
        this.body
            .poll_next(cx)
            .map(|item| item.map(|r| r.map_err(|e| error::body(key, e))))
    }
}
