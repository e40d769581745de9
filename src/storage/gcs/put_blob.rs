//! A monolithic push stored with one streamed media upload straight at the blob's object
//! ([`Backend::put_blob`](crate::storage::backend::Backend::put_blob)), for blobs from one
//! part to [`GcsConfig::single_put_limit`](super::GcsConfig::single_put_limit).
//!
//! Against a resumable session of the same bytes this is one request instead of one per part
//! plus the session's start, and the store receives the bytes as one stream (GCS answers every
//! chunk of a session before the next may be sent; fake-gcs-server even rehashes the whole
//! object on each chunk).
//!
//! **Nothing but the digest's bytes is ever stored.** The engine's body holds its last chunk
//! back until every byte was verified, and ends with an error in its place otherwise. The
//! request declares `Content-Length`, so GCS creates the object only once all of it arrived:
//! a body that fails leaves the request short, the connection is dropped, and nothing is
//! stored. The upload is conditional (`ifGenerationMatch=0`): a blob stored meanwhile is the
//! same bytes and is kept as it is.
//!
//! **A store fault costs no push.** The bytes are spilled to a temporary file as they pass
//! and the upload is sent again from it when the streamed one fails (`storage::streamed_put`,
//! shared with the S3 driver): unlike the S3 SDK, `gcloud-storage` retries nothing itself.

use bytes::Bytes;
use futures::Stream;

use super::GcsBackend;
use super::error::DRIVER;
use crate::error::Result;
use crate::oci::Digest;
use crate::storage::deadline::RequestTimeout;
use crate::storage::layout;
use crate::storage::streamed_put::{PutBody, put_streamed};

impl GcsBackend {
    /// Stores blob `digest` (`size` bytes, `body` verifying itself) with one media upload.
    pub(crate) async fn put_whole_blob<S>(&self, digest: &Digest, size: u64, body: S) -> Result<()>
    where
        S: Stream<Item = Result<Bytes>> + Send,
    {
        let object = &self.names.object(&layout::blob_data(digest));
        put_streamed(
            DRIVER,
            digest,
            size,
            body,
            self.request_timeout,
            &self.retries,
            move |body| async move {
                // `false` (412): the blob exists already, content-addressed, so the same bytes.
                match body {
                    // The client's body goes at the client's pace: no deadline.
                    PutBody::Streamed(channel) => {
                        let body = reqwest_gcs::Body::wrap(channel);
                        self.upload_media(object, body, size, Some(0)).await
                    }
                    PutBody::Spilled(file) => {
                        let body = reqwest_gcs::Body::from(file);
                        let limit = self.request_timeout.with_body(size);
                        let upload = self.upload_media(object, body, size, Some(0));
                        RequestTimeout::bound(limit, DRIVER, "media upload", upload).await
                    }
                }
                .map(drop)
            },
        )
        .await
    }
}
