//! A monolithic push written in place: its parts go to a resumable upload session on the
//! blob's own object, and the last one, held back, finalizes the session at commit (its
//! final chunk must name the total size). See the [module docs of the driver](super).

use std::pin::pin;
use std::sync::atomic::{AtomicBool, Ordering};

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

/// Where a chunk stands after an answer of its session.
enum Expected {
    /// The session holds every byte of the chunk (the final chunk: the object is made).
    Done,
    /// The session holds the bytes before this offset, within the chunk.
    From(u64),
}

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
        self.send_resuming(digest, &session, start, bytes, None)
            .await?;
        Ok(len)
    }

    /// Sends `bytes`, the session's bytes from `start`, as one chunk, the final one when
    /// `total` is given, until the session holds them (or, for the final chunk, made the
    /// object). A failed attempt is sent again the way GCS's resume protocol prescribes
    /// ("resuming an interrupted upload"): the next attempt first asks the session how much
    /// it holds (a `PUT` with `Content-Range: bytes */*`, answered `308` with a `Range`, or
    /// with the object once it is finalized) and sends only the rest, so bytes that reached
    /// the store before the answer was lost are never sent twice, and a final chunk that
    /// made the object is not sent again. Only this call writes to the session (a
    /// monolithic push's session lives inside one request), so nothing else moves it
    /// between the question and the resend.
    async fn send_resuming(
        &self,
        digest: &Digest,
        session: &str,
        start: u64,
        bytes: Bytes,
        total: Option<u64>,
    ) -> Result<()> {
        let resuming = AtomicBool::new(false);
        let limit = self.request_timeout.with_body(bytes.len() as u64);
        self.retried("resumable upload", limit, || {
            let resume = resuming.swap(true, Ordering::Relaxed);
            self.send_rest(digest, session, start, &bytes, total, resume)
        })
        .await
    }

    /// One attempt of [`send_resuming`](Self::send_resuming): the bytes the session does not
    /// hold yet (all of them unless `resume`).
    async fn send_rest(
        &self,
        digest: &Digest,
        session: &str,
        start: u64,
        bytes: &Bytes,
        total: Option<u64>,
        resume: bool,
    ) -> Result<()> {
        let end = start + bytes.len() as u64;
        let uploads = self.conn.client.get_resumable_upload(session.to_owned());
        let from = if resume {
            let holds = uploads
                .status(None)
                .await
                .map_err(|e| self.session_error(digest, e))?;
            match self.expect(digest, start, end, total, holds)? {
                Expected::Done => return Ok(()),
                Expected::From(from) => from,
            }
        } else {
            start
        };
        let range = match total {
            // The final chunk without bytes: `bytes */<total>`.
            Some(total) if from == total => ChunkSize::new(total, total, Some(total)),
            Some(total) => ChunkSize::new(from, total - 1, Some(total)),
            None => ChunkSize::new(from, end - 1, None),
        };
        let rest = bytes.slice((from - start) as usize..);
        match uploads.upload_multiple_chunk(rest, &range).await {
            Ok(answer) => match self.expect(digest, start, end, total, answer)? {
                Expected::Done => Ok(()),
                Expected::From(held) => Err(error::incomplete(format!(
                    "upload session of {digest}: holds bytes up to {held} after bytes \
                     {from}..{end} were sent"
                ))),
            },
            // The blob was stored meanwhile (`ifGenerationMatch=0`): the same bytes.
            Err(e) if total.is_some() && error::is_precondition_failed(&e) => Ok(()),
            Err(e) => Err(self.session_error(digest, e)),
        }
    }

    /// What the session's answer (`status`) means for a chunk of bytes `start..end`: done
    /// (it holds them all, or, for the final chunk of `total` bytes, made the object), or
    /// the offset from which to send the rest. An answer outside the chunk is an error.
    fn expect(
        &self,
        digest: &Digest,
        start: u64,
        end: u64,
        total: Option<u64>,
        status: UploadStatus,
    ) -> Result<Expected> {
        let holds = match &status {
            UploadStatus::Ok(_) if total.is_some() => return Ok(Expected::Done),
            UploadStatus::Ok(_) => None,
            UploadStatus::NotStarted => Some(0),
            UploadStatus::ResumeIncomplete(range) => Some(range.last_byte + 1),
        };
        match holds {
            Some(held) if held == end && total.is_none() => Ok(Expected::Done),
            Some(held) if (start..=end).contains(&held) => Ok(Expected::From(held)),
            _ => Err(corrupt(format!(
                "upload session of {digest}: expected to hold bytes {start}..{end}, it {}",
                describe(&status)
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
        self.send_resuming(digest, &session, state.sent, state.held, Some(total))
            .await
    }
}
