//! A monolithic push written in place: its parts go to a resumable upload session on the
//! blob's own object, and the last one, held back, finalizes the session at commit (its
//! final chunk must name the total size). See the [module docs of the driver](super).

use std::pin::pin;

use bytes::Bytes;
use futures::future::{Fuse, FusedFuture, FutureExt};
use futures::{Stream, StreamExt};
use gcloud_storage::http::objects::upload::{Media, UploadObjectRequest, UploadType};
use gcloud_storage::http::resumable_upload_client::{ChunkSize, UploadStatus};

use super::GcsBackend;
use super::error::{self, corrupt, translate};
use super::objects::CONTENT_TYPE;
use super::parts::{Part, Parts};
use super::upload::{GcsUploadState, SESSION_UNIT};
use crate::error::Result;
use crate::oci::Digest;
use crate::storage::UploadId;
use crate::storage::deadline::RequestTimeout;

/// What a session's answer says, for messages (never the object's metadata, which names the
/// bucket and the full object name).
fn describe(status: &UploadStatus) -> String {
    match status {
        UploadStatus::Ok(_) => "was already finalized".to_owned(),
        UploadStatus::NotStarted => "holds no bytes".to_owned(),
        UploadStatus::ResumeIncomplete(range) => {
            format!("holds bytes up to {}", range.last_byte + 1)
        }
    }
}

impl GcsBackend {
    /// A monolithic push: every part but the last goes to a resumable session on the blob's
    /// object (opened with the second part), the last is held back for the commit.
    pub(super) async fn append_direct<S>(
        &self,
        id: &UploadId,
        digest: &Digest,
        state: &mut GcsUploadState,
        body: S,
    ) -> Result<u64>
    where
        S: Stream<Item = Result<Bytes>> + Send,
    {
        if state.held.len() as u64 != state.held_len {
            return Err(corrupt(format!(
                "upload {id}: the bytes held for the final chunk were lost"
            )));
        }
        let initial = std::mem::take(&mut state.held);
        state.held_len = 0;
        let mut parts = pin!(Parts::new(body, self.part_size as usize, initial));
        let mut inflight = pin!(Fuse::terminated());
        loop {
            tokio::select! {
                biased;
                sent = inflight.as_mut(), if !inflight.is_terminated() => state.sent += sent?,
                part = parts.next() => match part {
                    None => break,
                    Some(part) => {
                        let Part { bytes, last } = part?;
                        if last {
                            state.held_len = bytes.len() as u64;
                            state.held = bytes;
                        } else {
                            if !inflight.is_terminated() {
                                state.sent += inflight.as_mut().await?;
                            }
                            let session = self.ensure_session(digest, state).await?;
                            inflight.set(self.send_chunk(digest, session, state.sent, bytes).fuse());
                        }
                    }
                },
            }
        }
        if !inflight.is_terminated() {
            state.sent += inflight.as_mut().await?;
        }
        Ok(parts.received())
    }

    /// Opens the resumable session on the blob's object if it is not open yet; its URI.
    async fn ensure_session(&self, digest: &Digest, state: &mut GcsUploadState) -> Result<String> {
        if let Some(session) = &state.session {
            return Ok(session.clone());
        }
        let object = self.blob_object(digest);
        let mut media = Media::new(object.clone());
        media.content_type = CONTENT_TYPE.into();
        // Write-once: if the blob exists when the session is finalized, GCS answers 412.
        let request = UploadObjectRequest {
            bucket: self.bucket.clone(),
            if_generation_match: Some(0),
            ..UploadObjectRequest::default()
        };
        let upload = UploadType::Simple(media);
        // Sent again when it fails transiently: a session whose answer was lost is never
        // used, and GCS discards it after a week.
        let limit = self.request_timeout.answer();
        let session = self
            .retried("resumable session start", limit, || async {
                self.conn
                    .client
                    .prepare_resumable_upload(&request, &upload)
                    .await
                    .map_err(|e| translate("resumable session start", &object, e))
            })
            .await?;
        state.session = Some(session.url().to_owned());
        Ok(session.url().to_owned())
    }

    /// Sends a non-final chunk (a whole number of 256 KiB units) at `start`; its length.
    async fn send_chunk(
        &self,
        digest: &Digest,
        session: String,
        start: u64,
        bytes: Bytes,
    ) -> Result<u64> {
        let len = bytes.len() as u64;
        debug_assert!(len.is_multiple_of(SESSION_UNIT));
        let chunk = async {
            self.conn
                .client
                .get_resumable_upload(session)
                .upload_multiple_chunk(bytes, &ChunkSize::new(start, start + len - 1, None))
                .await
                .map_err(|e| self.session_error(digest, e))
        };
        let limit = self.request_timeout.with_body(len);
        let status = RequestTimeout::bound(limit, error::DRIVER, "resumable upload", chunk).await?;
        match status {
            UploadStatus::ResumeIncomplete(range) if range.last_byte + 1 == start + len => Ok(len),
            other => Err(corrupt(format!(
                "upload session of {digest}: after bytes {start}..{} it {}",
                start + len,
                describe(&other)
            ))),
        }
    }

    fn session_error(
        &self,
        digest: &Digest,
        e: gcloud_storage::http::Error,
    ) -> crate::error::Error {
        translate("resumable upload", &self.blob_object(digest), e)
    }

    /// Finalizes the monolithic push's session with the held-back last part, or, below one
    /// part, creates the blob with one conditional write.
    pub(super) async fn commit_direct(
        &self,
        id: &UploadId,
        state: GcsUploadState,
        digest: &Digest,
    ) -> Result<()> {
        if state.held.len() as u64 != state.held_len {
            return Err(corrupt(format!(
                "upload {id}: the bytes held for the final chunk were lost"
            )));
        }
        let Some(session) = state.session else {
            // Below one part: no session was opened. A blob that exists already is the same
            // bytes (content-addressed): `false` is fine.
            self.create_once(&self.blob_object(digest), state.held)
                .await?;
            return Ok(());
        };
        let total = state.sent + state.held_len;
        let range = if state.held_len == 0 {
            ChunkSize::new(total, total, Some(total))
        } else {
            ChunkSize::new(state.sent, total - 1, Some(total))
        };
        let limit = self.request_timeout.with_body(state.held_len);
        let last_chunk = async {
            Ok(self
                .conn
                .client
                .get_resumable_upload(session)
                .upload_multiple_chunk(state.held, &range)
                .await)
        };
        match RequestTimeout::bound(limit, error::DRIVER, "resumable upload", last_chunk).await? {
            Ok(UploadStatus::Ok(_)) => Ok(()),
            // The blob was stored meanwhile (`ifGenerationMatch=0`): the same bytes.
            Err(e) if error::is_precondition_failed(&e) => Ok(()),
            Err(e) => Err(self.session_error(digest, e)),
            Ok(other) => Err(corrupt(format!(
                "upload session of {digest}: after the final chunk it {}",
                describe(&other)
            ))),
        }
    }
}
