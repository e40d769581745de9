//! A monolithic push stored with one streamed `PutObject` straight at the blob's key
//! ([`Backend::put_blob`](crate::storage::backend::Backend::put_blob)), for blobs from one
//! part to [`S3Config::single_put_limit`](super::S3Config::single_put_limit).
//!
//! Against a multipart upload of the same bytes this is one request instead of one per part
//! plus two, and the store has no parts to assemble (moto copies every part into a new object
//! at `CompleteMultipartUpload`; AWS bills each request).
//!
//! **Nothing but the digest's bytes is ever stored.** The engine's body holds its last chunk
//! back until every byte was verified, and ends with an error in its place otherwise. The
//! request carries the declared `Content-Length`, so the store creates the object only once
//! all of it arrived: a body that fails leaves the request short, the connection is dropped,
//! and nothing is stored.
//!
//! **The store checks the bytes it received.** A streamed body cannot be hashed ahead into
//! the request's signature, but a blob pushed by a sha256 digest has that hash already: the
//! request is signed with the digest as its payload's SHA-256 (`x-amz-content-sha256`,
//! [`KnownPayloadHash`](client::KnownPayloadHash)), and the store, which hashes what it
//! receives, refuses the request (`XAmzContentSHA256Mismatch`) when a byte changed on the
//! way (over plain HTTP nothing else would notice; over TLS it costs nothing either). A
//! sha512 blob goes `UNSIGNED-PAYLOAD`. With request checksums on
//! (`S3_CHECKSUM=when_supported`), the SDK's streaming checksum trailer covers it instead.
//!
//! **A store fault costs no push.** The bytes are spilled to a temporary file as they pass
//! and the `PutObject` is sent again from it when the streamed one fails
//! (`storage::streamed_put`, shared with the GCS driver).

use aws_sdk_s3::primitives::{ByteStream, Length};
use bytes::Bytes;
use futures::Stream;

use super::error::{DRIVER, translate};
use super::objects::CONTENT_TYPE;
use super::{S3Backend, client};
use crate::error::{Error, Result};
use crate::oci::Digest;
use crate::storage::layout;
use crate::storage::streamed_put::{PutBody, put_streamed};

impl S3Backend {
    /// Stores blob `digest` (`size` bytes, `body` verifying itself) with one `PutObject`.
    pub(crate) async fn put_whole_blob<S>(&self, digest: &Digest, size: u64, body: S) -> Result<()>
    where
        S: Stream<Item = Result<Bytes>> + Send,
    {
        let key = &self.keys.object(&layout::blob_data(digest));
        put_streamed(
            DRIVER,
            digest,
            size,
            body,
            self.request_timeout,
            &self.retries,
            move |body| async move {
                // The client's body goes at the client's pace; a resend at the store's.
                let (body, limit) = match body {
                    PutBody::Streamed(channel) => (ByteStream::from_body_1_x(channel), None),
                    PutBody::Spilled(file) => (
                        ByteStream::read_from()
                            .file(file)
                            .length(Length::Exact(size))
                            .build()
                            .await
                            .map_err(|e| {
                                Error::backend(DRIVER, format!("reading the spill file back: {e}"))
                            })?,
                        Some(self.request_timeout.with_body(size)),
                    ),
                };
                self.put_object(key, size, body, limit, digest).await
            },
        )
        .await
    }

    /// One `PutObject` of blob `digest` whose attempt may take `limit` (`None`: as long as
    /// it takes).
    async fn put_object(
        &self,
        key: &str,
        size: u64,
        body: ByteStream,
        limit: Option<std::time::Duration>,
        digest: &Digest,
    ) -> Result<()> {
        let request = self
            .client
            .put_object()
            .bucket(&self.bucket)
            .key(key)
            .content_type(CONTENT_TYPE)
            .content_length(size as i64)
            .body(body)
            .customize()
            .config_override(client::attempt_limit(&self.client, limit));
        let request = match client::KnownPayloadHash::of(digest) {
            Some(known) => request.interceptor(known),
            None => request,
        };
        request
            .send()
            .await
            .map_err(|e| translate("PutObject", key, e))?;
        Ok(())
    }
}
