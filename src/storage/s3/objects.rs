//! Plain object operations (`GetObject`, `PutObject`, `DeleteObject`, `HeadObject`,
//! `ListObjectsV2`) on object keys, used for metadata objects, blob reads and staged
//! remainders.

use aws_sdk_s3::error::SdkError;
use aws_sdk_s3::operation::delete_object::{DeleteObjectError, DeleteObjectOutput};
use aws_sdk_s3::primitives::ByteStream;
use aws_smithy_runtime_api::client::orchestrator::HttpResponse;
use backon::BackoffBuilder as _;
use bytes::Bytes;

use super::error::{self, translate};
use super::reader::S3Reader;
use super::{S3Backend, client};
use crate::error::Result;
use crate::oci::{ByteRange, Digest};
use crate::storage::deadline::RequestTimeout;
use crate::storage::retry;

/// Content type of every object the driver writes. Some stores (moto) store a body sent as
/// `application/x-www-form-urlencoded` as empty.
pub(crate) const CONTENT_TYPE: &str = "application/octet-stream";

/// Most keys one `ListObjectsV2` page returns.
const MAX_PAGE: usize = 1000;

/// Request bodies up to this size (manifests, links, records) are sent under the client's
/// attempt timeout, without a per-request override.
const SMALL_BODY: u64 = 64 * 1024;

impl S3Backend {
    /// Reads a whole (small) object; `None` if it does not exist. A body that breaks off is
    /// read again from the start (these objects are small: links, tags, manifest records,
    /// referrer entries, session states, staged segments) after the pauses of
    /// [`retry::backoff`]: the SDK's retry loop ends once a response's headers arrived, so a
    /// body cut midway (a connection reset, a proxy timing out) would otherwise fail the read
    /// at once.
    pub(crate) async fn get_bytes(&self, key: &str) -> Result<Option<Bytes>> {
        Ok(self.get_bytes_tagged(key).await?.map(|(bytes, _)| bytes))
    }

    /// [`get_bytes`](Self::get_bytes) with the object's ETag (if the store sent one).
    pub(crate) async fn get_bytes_tagged(
        &self,
        key: &str,
    ) -> Result<Option<(Bytes, Option<String>)>> {
        let mut pauses = retry::backoff().build();
        loop {
            let out = match self
                .client
                .get_object()
                .bucket(&self.bucket)
                .key(key)
                .send()
                .await
            {
                Ok(out) => out,
                Err(e) if error::is_not_found(&e) => return Ok(None),
                Err(e) => return Err(translate("GetObject", key, e)),
            };
            let etag = out.e_tag;
            // The attempt timeout ended with the headers; the body gets its own.
            let limit = self
                .request_timeout
                .with_body(out.content_length.map_or(0, |n| n.max(0) as u64));
            let body = RequestTimeout::bound(limit, error::DRIVER, "GetObject body", async {
                out.body.collect().await.map_err(|e| error::body(key, e))
            });
            match body.await {
                Ok(body) => return Ok(Some((body.into_bytes(), etag))),
                Err(e) => match pauses.next() {
                    Some(pause) => {
                        self.retries.count();
                        tracing::debug!(key, error = %e, ?pause, "GetObject body broke off; reading again");
                        tokio::time::sleep(pause).await;
                    }
                    None => return Err(e),
                },
            }
        }
    }

    /// Checks that the bucket exists and the credentials may use it (`HeadBucket`). Inside a
    /// missing bucket every `HeadObject` is a bare 404, indistinguishable from a missing
    /// object, so a wrong bucket name would look like an empty registry: it is a
    /// configuration error naming `s3.bucket` instead, reported when the driver is built. So
    /// is a refusal (403) or a redirect to another region (301). Other failures (the store
    /// unreachable) are backend errors.
    pub async fn check_bucket(&self) -> Result<()> {
        let Err(e) = self.client.head_bucket().bucket(&self.bucket).send().await else {
            return Ok(());
        };
        let problem = match error::status(&e) {
            Some(404) => "does not exist",
            Some(403) => "is not accessible with these credentials",
            Some(301) => "is in another region (set s3.region)",
            _ => return Err(translate("HeadBucket", &self.bucket, e)),
        };
        Err(crate::error::Error::Config {
            field: "s3.bucket",
            message: format!("bucket {:?} {problem}", self.bucket),
        })
    }

    /// Streams an object or a range of it; `None` if it does not exist.
    pub(crate) async fn get_stream(
        &self,
        key: &str,
        range: Option<ByteRange>,
    ) -> Result<Option<S3Reader>> {
        let out = match self
            .client
            .get_object()
            .bucket(&self.bucket)
            .key(key)
            .set_range(range.map(|r| format!("bytes={}-{}", r.start, r.end)))
            .send()
            .await
        {
            Ok(out) => out,
            Err(e) if error::is_not_found(&e) => return Ok(None),
            Err(e) => return Err(translate("GetObject", key, e)),
        };
        Ok(Some(S3Reader::new(
            out.body,
            key.to_owned(),
            self.request_timeout.stall_watch(),
        )))
    }

    /// Creates or replaces an object (S3 `PutObject` is atomic: readers see the old or the
    /// new object, never a mix).
    pub(crate) async fn put_bytes(&self, key: &str, body: Bytes) -> Result<()> {
        self.put_object_bytes(key, body, None).await
    }

    /// Stores the verified bytes of blob `digest` at `key`, signed with the digest as the
    /// payload's hash when it is a sha256 one (see [`client::KnownPayloadHash`]): the store
    /// checks what it received, and the registry hashes nothing again, over plain HTTP either.
    pub(crate) async fn put_blob_bytes(
        &self,
        key: &str,
        body: Bytes,
        digest: &Digest,
    ) -> Result<()> {
        self.put_object_bytes(key, body, Some(digest)).await
    }

    async fn put_object_bytes(
        &self,
        key: &str,
        body: Bytes,
        digest: Option<&Digest>,
    ) -> Result<()> {
        let len = body.len() as u64;
        let mut request = self
            .client
            .put_object()
            .bucket(&self.bucket)
            .key(key)
            .content_type(CONTENT_TYPE)
            .content_length(len as i64)
            .body(ByteStream::from(body))
            .customize();
        let limit = self.body_limit(len);
        let large = limit.is_some();
        if let Some(limit) = limit {
            request = request.config_override(limit);
        }
        let sent = match digest.and_then(client::KnownPayloadHash::of) {
            Some(known) => request.interceptor(known).send().await,
            None if large && !self.sign_payloads => request.disable_payload_signing().send().await,
            None => request.send().await,
        };
        sent.map_err(|e| translate("PutObject", key, e))?;
        Ok(())
    }

    /// For a request sending `len` body bytes, the override of the client's attempt timeout
    /// that gives the body its time ([`RequestTimeout::with_body`]); `None` for small bodies,
    /// which the client's timeout covers.
    pub(super) fn body_limit(&self, len: u64) -> Option<aws_sdk_s3::config::Builder> {
        (len > SMALL_BODY)
            .then(|| client::attempt_limit(&self.client, Some(self.request_timeout.with_body(len))))
    }

    /// Deletes an object; succeeds if it does not exist.
    pub(crate) async fn delete(&self, key: &str) -> Result<()> {
        match self.send_delete(key, None).await {
            Ok(_) => Ok(()),
            Err(e) if error::is_not_found(&e) => Ok(()),
            Err(e) => Err(translate("DeleteObject", key, e)),
        }
    }

    /// One `DeleteObject`, with `If-Match: etag` when given. Never abandoned for taking long
    /// (see [`deadline`](crate::storage::deadline): an abandoned delete could still be
    /// carried out after the operation returned).
    pub(super) async fn send_delete(
        &self,
        key: &str,
        etag: Option<&str>,
    ) -> std::result::Result<DeleteObjectOutput, SdkError<DeleteObjectError, HttpResponse>> {
        self.client
            .delete_object()
            .bucket(&self.bucket)
            .key(key)
            .set_if_match(etag.map(str::to_owned))
            .customize()
            .config_override(client::attempt_limit(&self.client, None))
            .send()
            .await
    }

    /// Size of an object; `None` if it does not exist.
    pub(crate) async fn head_size(&self, key: &str) -> Result<Option<u64>> {
        match self
            .client
            .head_object()
            .bucket(&self.bucket)
            .key(key)
            .send()
            .await
        {
            Ok(out) => Ok(Some(
                out.content_length
                    .and_then(|l| u64::try_from(l).ok())
                    .unwrap_or(0),
            )),
            Err(e) if error::is_not_found(&e) => Ok(None),
            Err(e) => Err(translate("HeadObject", key, e)),
        }
    }

    /// Names (after `prefix`, which ends in `/`) of the objects directly below `prefix`,
    /// ascending, strictly after `start_after`, at most `limit`. Uses the delimiter `/` so
    /// deeper objects come back as common prefixes and are skipped, and `StartAfter` so
    /// pagination costs no scan of earlier names.
    pub(crate) async fn list_names(
        &self,
        prefix: &str,
        start_after: Option<&str>,
        limit: Option<usize>,
    ) -> Result<Vec<String>> {
        let limit = limit.unwrap_or(usize::MAX);
        let mut names = Vec::new();
        let mut token: Option<String> = None;
        while names.len() < limit {
            let want = (limit - names.len()).min(MAX_PAGE);
            let out = self
                .client
                .list_objects_v2()
                .bucket(&self.bucket)
                .prefix(prefix)
                .delimiter("/")
                .max_keys(want as i32)
                .set_start_after(start_after.map(|a| format!("{prefix}{a}")))
                .set_continuation_token(token.take())
                .send()
                .await
                .map_err(|e| translate("ListObjectsV2", prefix, e))?;
            for object in out.contents() {
                let Some(name) = object.key().and_then(|k| k.strip_prefix(prefix)) else {
                    continue;
                };
                if name.is_empty() || name.contains('/') {
                    continue;
                }
                if start_after.is_some_and(|a| name <= a) {
                    continue;
                }
                if names.len() < limit {
                    names.push(name.to_owned());
                }
            }
            match out.next_continuation_token() {
                Some(next) if out.is_truncated() == Some(true) => token = Some(next.to_owned()),
                _ => break,
            }
        }
        Ok(names)
    }

    /// Every object key below `prefix` (any depth).
    pub(crate) async fn list_keys(&self, prefix: &str) -> Result<Vec<String>> {
        let mut keys = Vec::new();
        let mut token: Option<String> = None;
        loop {
            let out = self
                .client
                .list_objects_v2()
                .bucket(&self.bucket)
                .prefix(prefix)
                .set_continuation_token(token.take())
                .send()
                .await
                .map_err(|e| translate("ListObjectsV2", prefix, e))?;
            keys.extend(
                out.contents()
                    .iter()
                    .filter_map(|o| o.key().map(str::to_owned)),
            );
            match out.next_continuation_token() {
                Some(next) if out.is_truncated() == Some(true) => token = Some(next.to_owned()),
                _ => break,
            }
        }
        Ok(keys)
    }

    /// Whether any object exists below `prefix`.
    pub(crate) async fn any_below(&self, prefix: &str) -> Result<bool> {
        let out = self
            .client
            .list_objects_v2()
            .bucket(&self.bucket)
            .prefix(prefix)
            .max_keys(1)
            .send()
            .await
            .map_err(|e| translate("ListObjectsV2", prefix, e))?;
        Ok(!out.contents().is_empty())
    }
}
