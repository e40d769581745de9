//! Conditional writes of upload session records: `GetObject` hands out the record's ETag and
//! `PutObject` with `If-Match` replaces it only if it is still that version (AWS S3 since
//! 2024; MinIO; moto). Two processes that load one session record and append to it at the
//! same time then cannot both persist their append: the store answers the second `412
//! Precondition Failed` (or `409 ConditionalRequestConflict` while the first is in flight)
//! and the engine refuses that PATCH (see `Engine::save_appended`).
//!
//! And conditional removals of tags: `DeleteObject` with `If-Match` removes a tag only if
//! it is still what the engine read (AWS S3, Ceph, moto), so that a manifest's delete never
//! removes a tag a push moved meanwhile (see `Engine::untag_one`).
//!
//! And creations of immutable tags: `PutObject` with `If-None-Match: *` writes a tag only
//! if none is stored (AWS S3 since 2024, MinIO, moto), so that of two processes creating
//! the same tag at once one is told it exists (see `Engine::create_immutable_tag`).
//!
//! Stores that ignore `If-Match` would overwrite silently, so the driver uses it only where
//! configured (`conditional_writes = true`) or detected when it is built: a scratch object is
//! written, then written again with an `If-Match` naming a version it does not have; a store
//! that honours the header refuses the second write.

use aws_sdk_s3::primitives::ByteStream;
use bytes::Bytes;

use super::S3Backend;
use super::error::{self, translate};
use super::objects::CONTENT_TYPE;
use crate::error::Result;
use crate::storage::UploadId;
use crate::storage::layout;

/// What a conditional `PutObject` requires of the object it replaces.
#[derive(Clone, Copy)]
enum Condition<'a> {
    /// `If-Match`: the object is at this ETag.
    Match(&'a str),
    /// `If-None-Match: *`: there is no object.
    Absent,
}

/// An ETag no object has (quoted, as S3 writes them).
const FOREIGN_ETAG: &str = "\"00000000000000000000000000000000\"";

impl S3Backend {
    /// Replaces `key` with `body` if its ETag is still `etag`: `Ok(false)`, nothing written,
    /// when the object changed (412) or another conditional write of it is in flight (409).
    pub(crate) async fn put_bytes_if_match(
        &self,
        key: &str,
        body: Bytes,
        etag: &str,
    ) -> Result<bool> {
        self.put_conditionally(key, body, Condition::Match(etag))
            .await
    }

    /// Creates `key` with `body` only if no object is stored there (`If-None-Match: *`):
    /// `Ok(false)`, nothing written, when one is (412) or another conditional write of it is
    /// in flight (409).
    pub(crate) async fn put_bytes_if_absent(&self, key: &str, body: Bytes) -> Result<bool> {
        self.put_conditionally(key, body, Condition::Absent).await
    }

    async fn put_conditionally(
        &self,
        key: &str,
        body: Bytes,
        condition: Condition<'_>,
    ) -> Result<bool> {
        let len = body.len() as u64;
        let request = self
            .client
            .put_object()
            .bucket(&self.bucket)
            .key(key)
            .content_type(CONTENT_TYPE)
            .content_length(len as i64)
            .body(ByteStream::from(body));
        let request = match condition {
            Condition::Match(etag) => request.if_match(etag),
            Condition::Absent => request.if_none_match("*"),
        };
        let sent = match self.body_limit(len) {
            Some(limit) => request.customize().config_override(limit).send().await,
            None => request.send().await,
        };
        match sent {
            Ok(_) => Ok(true),
            Err(e) if error::is_precondition_failed(&e) => Ok(false),
            // `If-Match` on an object that is gone (a session another request finished or
            // aborted, or that expired, meanwhile): S3 answers `404 NoSuchKey`. Not at the
            // version either, and nothing written.
            Err(e) if error::is_not_found(&e) => Ok(false),
            Err(e) => Err(translate("PutObject", key, e)),
        }
    }

    /// Removes `key` if its ETag is still `etag`: `Ok(false)`, nothing removed, when the
    /// object changed (412), another request changed it while this one ran (409), or it is
    /// gone (404). A store that honours `If-Match` on `PutObject` (what was detected) but
    /// rejects it on `DeleteObject` gets a plain `DeleteObject`, as before conditional
    /// deletes existed; one that ignores it removes the object whatever its version.
    pub(crate) async fn delete_if_match(&self, key: &str, etag: &str) -> Result<bool> {
        match self.send_delete(key, Some(etag)).await {
            Ok(_) => Ok(true),
            Err(e) if error::is_precondition_failed(&e) || error::is_not_found(&e) => Ok(false),
            Err(e) if e.raw_response().map(|r| r.status().as_u16()) == Some(409) => Ok(false),
            Err(e) if error::is_retryable(&e) => Err(translate("DeleteObject", key, e)),
            Err(e) => {
                tracing::debug!(
                    error = %crate::error::ErrorChain(&translate("DeleteObject", key, e)),
                    "the store refused If-Match on DeleteObject; deleting without it"
                );
                self.delete(key).await.map(|()| true)
            }
        }
    }

    /// Whether the store honours `If-Match` on `PutObject`: three requests on a scratch
    /// object below a fresh upload's directory (`uploads/<random id>/`), deleted afterwards.
    pub async fn detect_conditional_writes(&self) -> Result<bool> {
        let key = self.keys.object(&layout::upload_part(
            &UploadId::generate(),
            "conditional-write-probe",
        ));
        self.put_bytes(&key, Bytes::from_static(b"probe")).await?;
        let honoured = self
            .put_bytes_if_match(&key, Bytes::from_static(b"overwritten"), FOREIGN_ETAG)
            .await;
        let deleted = self.delete(&key).await;
        // A store that rejects the header itself (400, 501) does not honour it either.
        let honoured = match honoured {
            Ok(written) => !written,
            Err(e) if e.is_retryable() => return Err(e),
            Err(_) => false,
        };
        deleted?;
        tracing::info!(
            bucket = %self.bucket,
            conditional_writes = honoured,
            "detected whether the store honours If-Match on PutObject"
        );
        Ok(honoured)
    }
}
