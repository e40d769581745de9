//! Uploads: appends cut the body into the parts of a multipart upload opened lazily and stage
//! the remainder below one part in the bucket; commit assembles the blob at its key; release
//! leaves nothing of the upload behind.
//!
//! The state that lets any process continue an upload ([`S3UploadState`]) is re-exported
//! here, as are the limits of the multipart requests and server-side copies it uses. See the
//! [module docs of the driver](super) for the design and its costs.

use std::pin::{Pin, pin};

use bytes::{Bytes, BytesMut};
use futures::future::{Fuse, FusedFuture, FutureExt};
use futures::{Stream, StreamExt, TryStreamExt};

use super::S3Backend;
use super::error::{corrupt, corrupt_at};
use crate::error::{Error, ErrorChain, Result};
use crate::oci::Digest;
use crate::storage::UploadId;
use crate::storage::config::MAX_PART_SIZE;
use crate::storage::layout;

pub use super::copy::{COPY_OBJECT_LIMIT, COPY_PART_SIZE};
pub use super::multipart::MAX_PARTS;
pub use super::upload_state::{S3UploadState, SegmentName, StagedSegment, UploadedPart};

/// Without `equal_parts`, the part size grows by one `part_size` every this many parts, so
/// 10,000 parts of a default 8 MiB part size hold 430 GiB instead of 78 GiB.
const PARTS_PER_STEP: u32 = 1_000;

/// Staged segments read or deleted at the same time.
const SEGMENT_CONCURRENCY: usize = 4;

/// Staged segments an upload may accumulate before an append merges them into one (bounds
/// the `GetObject`s needed to assemble a part when chunks are tiny).
pub const MAX_SEGMENTS: usize = 16;

impl S3Backend {
    /// Size of part `number` (1-based).
    pub(crate) fn part_len(&self, number: u32) -> u64 {
        if self.equal_parts {
            self.part_size
        } else {
            let step = u64::from(number.saturating_sub(1) / PARTS_PER_STEP) + 1;
            (self.part_size * step).min(MAX_PART_SIZE)
        }
    }

    /// The key the upload's multipart upload writes to.
    fn multipart_key(&self, id: &UploadId, state: &S3UploadState) -> Result<String> {
        match &state.direct {
            Some(digest) => {
                let digest = Digest::parse(digest)
                    .map_err(|_| corrupt(format!("upload {id}: bad target digest {digest:?}")))?;
                Ok(self.keys.object(&layout::blob_data(&digest)))
            }
            None => Ok(self.keys.upload_data(id)),
        }
    }

    /// Opens the multipart upload if it is not open yet; returns its id.
    async fn ensure_multipart(&self, id: &UploadId, state: &mut S3UploadState) -> Result<String> {
        if let Some(upload_id) = &state.multipart {
            return Ok(upload_id.clone());
        }
        let key = self.multipart_key(id, state)?;
        let upload_id = self.create_multipart(&key).await?;
        state.multipart = Some(upload_id.clone());
        Ok(upload_id)
    }

    /// Reads staged segments back, in order, into one buffer with room for `capacity`.
    async fn read_segments(
        &self,
        id: &UploadId,
        segments: &[StagedSegment],
        capacity: usize,
    ) -> Result<BytesMut> {
        let mut out = BytesMut::with_capacity(capacity);
        let keyed: Vec<(String, StagedSegment)> = segments
            .iter()
            .map(|s| (self.keys.staged(id, s.name()), *s))
            .collect();
        let mut reads = std::pin::pin!(
            futures::stream::iter(keyed)
                .map(|(key, segment)| async move {
                    let bytes = self.get_bytes(&key).await;
                    (key, segment, bytes)
                })
                .buffered(SEGMENT_CONCURRENCY)
        );
        while let Some((key, segment, bytes)) = reads.next().await {
            // A segment that is gone (the upload expired, or a finish whose record removal a
            // crash undid consumed it) ends the session: the client starts over.
            let bytes = bytes?.ok_or_else(|| {
                Error::BlobUploadUnknown(format!("{id}: a staged segment of the upload is gone"))
            })?;
            if bytes.len() as u64 != segment.size {
                let message = format!(
                    "a staged segment holds {} bytes, expected {}",
                    bytes.len(),
                    segment.size
                );
                return Err(corrupt_at(message, &key));
            }
            out.extend_from_slice(&bytes);
        }
        Ok(out)
    }

    // ----- the Backend operations -----

    pub(crate) fn create(&self, target: Option<&Digest>) -> S3UploadState {
        S3UploadState {
            direct: target.map(|d| d.as_str().to_owned()),
            ..S3UploadState::default()
        }
    }

    pub(crate) async fn append<S>(
        &self,
        id: &UploadId,
        state: &mut S3UploadState,
        offset: u64,
        body: S,
    ) -> Result<u64>
    where
        S: Stream<Item = Result<Bytes>> + Send,
    {
        let stored = state.stored();
        if stored != offset {
            return Err(corrupt(format!(
                "upload {id}: state holds {stored} bytes but the session is at {offset}"
            )));
        }
        // The state we were given is persisted, so the staged objects it superseded can go.
        let garbage: Vec<String> = std::mem::take(&mut state.garbage)
            .into_iter()
            .map(|name| self.keys.staged(id, name))
            .collect();
        futures::stream::iter(garbage)
            .map(|key| async move { self.delete(&key).await })
            .buffer_unordered(SEGMENT_CONCURRENCY)
            .try_collect::<()>()
            .await?;
        let mut body = pin!(body);
        // An empty body changes nothing: do not touch the staged remainder for it.
        let first = loop {
            match body.next().await {
                None => return Ok(0),
                Some(chunk) => {
                    let chunk = chunk?;
                    if !chunk.is_empty() {
                        break chunk;
                    }
                }
            }
        };
        let mut received = first.len() as u64;
        let mut buf = BytesMut::new();
        let mut superseded = Vec::new();
        let opened_here = state.multipart.is_none();
        let mut outcome = self
            .fill_parts(
                id,
                state,
                &mut buf,
                first,
                body.as_mut(),
                &mut received,
                &mut superseded,
            )
            .await;
        if outcome.is_ok()
            && !buf.is_empty()
            && state.direct.is_some()
            && state.staged.is_empty()
            && state.held.is_none()
        {
            // A monolithic push: keep what is left in memory until the commit (see `held`).
            state.held = Some(buf.split().freeze());
        }
        if outcome.is_ok() && !buf.is_empty() {
            // Stage what is left (less than one part) as a new segment under a new name: the
            // objects of the previous state stay intact until the engine has persisted this one.
            let end = offset + received;
            let bytes = if state.staged.len() < MAX_SEGMENTS {
                Ok(buf.freeze())
            } else {
                // Too many small segments: merge them with the new bytes into one.
                let merged = self
                    .read_segments(id, &state.staged, (state.staged_len() as usize) + buf.len())
                    .await;
                merged.map(|mut merged| {
                    merged.extend_from_slice(&buf);
                    superseded.extend(state.staged.drain(..).map(|s| s.name()));
                    merged.freeze()
                })
            };
            outcome = match bytes {
                Ok(bytes) => {
                    let segment = StagedSegment {
                        end,
                        size: bytes.len() as u64,
                        nonce: rand::random::<u64>() | 1,
                    };
                    let key = self.keys.staged(id, segment.name());
                    let put = self.put_bytes(&key, bytes).await;
                    if put.is_err() {
                        // It may have been stored anyway; it must not outlive the failure.
                        let _ = self.delete(&key).await;
                    }
                    state.staged.push(segment);
                    put
                }
                Err(e) => Err(e),
            };
        }
        if let Err(e) = outcome {
            if opened_here && let Some(upload_id) = state.multipart.take() {
                let key = self.multipart_key(id, state)?;
                let _ = self.abort_multipart(&key, &upload_id).await;
            }
            return Err(e);
        }
        state.garbage.extend(superseded);
        Ok(received)
    }

    /// Moves bytes from `pending` and `body` into `buf` and uploads every full part (the
    /// first one prefixed with the staged segments, read back then and listed in
    /// `superseded`), keeping one part upload in flight while the next part is received.
    #[allow(clippy::too_many_arguments)]
    async fn fill_parts<S>(
        &self,
        id: &UploadId,
        state: &mut S3UploadState,
        buf: &mut BytesMut,
        mut pending: Bytes,
        mut body: Pin<&mut S>,
        received: &mut u64,
        superseded: &mut Vec<SegmentName>,
    ) -> Result<()>
    where
        S: Stream<Item = Result<Bytes>> + Send,
    {
        let key = self.multipart_key(id, state)?;
        let mut inflight = pin!(Fuse::terminated());
        let mut number = state.parts.len() as u32 + 1;
        // Staged bytes that precede `buf` in the next part.
        let mut carry = state.staged_len() as usize;
        let mut body_done = false;
        loop {
            let want = self.part_len(number) as usize;
            let need = want.saturating_sub(carry);
            if buf.len() >= need {
                if number > MAX_PARTS {
                    return Err(Error::SizeInvalid(format!(
                        "the blob exceeds S3's {MAX_PARTS} parts of {} bytes",
                        self.part_size
                    )));
                }
                if !inflight.is_terminated() {
                    state.parts.push(inflight.as_mut().await?);
                }
                let upload_id = self.ensure_multipart(id, state).await?;
                let next = BytesMut::with_capacity(self.part_len(number + 1) as usize);
                let tail = std::mem::replace(buf, next);
                let part = if carry > 0 {
                    let mut part = self.read_segments(id, &state.staged, want).await?;
                    part.extend_from_slice(&tail);
                    superseded.extend(state.staged.drain(..).map(|s| s.name()));
                    carry = 0;
                    part.freeze()
                } else {
                    tail.freeze()
                };
                inflight.set(
                    self.upload_part(key.clone(), upload_id, number, part)
                        .fuse(),
                );
                number += 1;
            } else if !pending.is_empty() {
                let take = (need - buf.len()).min(pending.len());
                buf.extend_from_slice(&pending.split_to(take));
            } else if body_done {
                break;
            } else {
                tokio::select! {
                    biased;
                    part = inflight.as_mut(), if !inflight.is_terminated() => {
                        state.parts.push(part?);
                    }
                    chunk = body.next() => match chunk {
                        None => body_done = true,
                        Some(chunk) => {
                            pending = chunk?;
                            *received += pending.len() as u64;
                        }
                    },
                }
            }
        }
        if !inflight.is_terminated() {
            state.parts.push(inflight.as_mut().await?);
        }
        Ok(())
    }

    pub(crate) async fn commit(
        &self,
        id: &UploadId,
        mut state: S3UploadState,
        size: u64,
        digest: &Digest,
    ) -> Result<()> {
        let result = self.commit_bytes(id, &mut state, size, digest).await;
        // On success and on failure: nothing of the upload may stay behind.
        let released = self.release(id, &state).await;
        result.and(released)
    }

    async fn commit_bytes(
        &self,
        id: &UploadId,
        state: &mut S3UploadState,
        size: u64,
        digest: &Digest,
    ) -> Result<()> {
        let stored = state.stored();
        if stored != size {
            return Err(corrupt(format!(
                "upload {id}: state holds {stored} bytes, commit asks for {size}"
            )));
        }
        if let Some(direct) = &state.direct
            && direct != digest.as_str()
        {
            return Err(corrupt(format!(
                "upload {id} writes to {direct} but is committed as {digest}"
            )));
        }
        let blob_key = self.keys.object(&layout::blob_data(digest));
        let direct = state.direct.is_some();
        if !direct && self.head_size(&blob_key).await?.is_some() {
            // Already stored: `release` discards the upload's bytes.
            return Ok(());
        }
        let Some(upload_id) = state.multipart.clone() else {
            if let Some(held) = state.held.take() {
                // A monolithic push below one part: one `PutObject` of the verified bytes.
                return self.put_blob_bytes(&blob_key, held, digest).await;
            }
            // Less than one part in all: the bytes are the staged segments, or nothing.
            return match state.staged.as_slice() {
                [] => self.put_blob_bytes(&blob_key, Bytes::new(), digest).await,
                [only] => {
                    let staged = self.keys.staged(id, only.name());
                    match self.copy(&staged, &blob_key, size).await {
                        Err(e) if self.head_size(&staged).await?.is_none() => {
                            tracing::debug!(error = %e, "the staged segment to commit is gone");
                            Err(Error::BlobUploadUnknown(format!(
                                "{id}: the upload's bytes are gone"
                            )))
                        }
                        copied => copied,
                    }
                }
                segments => {
                    let bytes = self.read_segments(id, segments, size as usize).await?;
                    self.put_blob_bytes(&blob_key, bytes.freeze(), digest).await
                }
            };
        };
        let multipart_key = self.multipart_key(id, state)?;
        if let Some(held) = state.held.take() {
            let number = state.parts.len() as u32 + 1;
            let part = self
                .upload_part(multipart_key.clone(), upload_id.clone(), number, held)
                .await?;
            state.parts.push(part);
        }
        if !state.staged.is_empty() {
            let number = state.parts.len() as u32 + 1;
            if number > MAX_PARTS {
                return Err(Error::SizeInvalid(format!(
                    "the blob exceeds S3's {MAX_PARTS} parts"
                )));
            }
            let len = state.staged_len() as usize;
            let bytes = self.read_segments(id, &state.staged, len).await?;
            let part = self
                .upload_part(
                    multipart_key.clone(),
                    upload_id.clone(),
                    number,
                    bytes.freeze(),
                )
                .await?;
            state.parts.push(part);
        }
        self.complete_multipart(&multipart_key, &upload_id, &state.parts)
            .await?;
        state.multipart = None;
        if !direct {
            self.copy(&multipart_key, &blob_key, size).await?;
        }
        Ok(())
    }

    /// Releases everything an upload holds: its multipart upload, every object below
    /// `uploads/<id>/` (staged remainders, including ones left by failed appends, and a
    /// completed `data` object), and multipart uploads below `uploads/<id>/` that no
    /// persisted state refers to (opened by an append whose new state was never persisted).
    ///
    /// A monolithic push ([`S3UploadState::direct`]) stores nothing below `uploads/<id>/` (its
    /// remainder is held in memory, its multipart upload is on the blob's key): only its
    /// multipart upload is released, without listing.
    pub(crate) async fn release(&self, id: &UploadId, state: &S3UploadState) -> Result<()> {
        let mut result = Ok(());
        if let Some(upload_id) = &state.multipart {
            let key = self.multipart_key(id, state)?;
            result = result.and(self.abort_multipart(&key, upload_id).await);
        }
        if state.direct.is_some() && state.staged.is_empty() && state.garbage.is_empty() {
            return result;
        }
        let dir = self.keys.upload_dir(id);
        match self.list_keys(&dir).await {
            Ok(keys) => {
                for key in keys {
                    result = result.and(self.delete(&key).await);
                }
            }
            Err(e) => result = result.and(Err(e)),
        }
        self.abort_stray_multiparts(&dir).await;
        result
    }

    /// Best effort: not every S3-compatible store implements `ListMultipartUploads`.
    async fn abort_stray_multiparts(&self, dir: &str) {
        let listed = self
            .client
            .list_multipart_uploads()
            .bucket(&self.bucket)
            .prefix(dir)
            .send()
            .await;
        match listed {
            Ok(out) => {
                for upload in out.uploads() {
                    if let (Some(key), Some(upload_id)) = (upload.key(), upload.upload_id())
                        && let Err(e) = self.abort_multipart(key, upload_id).await
                    {
                        tracing::warn!(key, error = %ErrorChain(&e), "aborting a stray multipart upload");
                    }
                }
            }
            Err(e) => {
                tracing::debug!(dir, error = %ErrorChain(&e),
                    "ListMultipartUploads failed; stray multipart uploads are left to the \
                     bucket's lifecycle rules");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::storage::S3Config;

    fn backend(equal_parts: bool) -> S3Backend {
        let mut config = S3Config::new("b");
        config.part_size = Some(8 * 1024 * 1024);
        config.equal_parts = equal_parts;
        let sdk = aws_config::SdkConfig::builder()
            .behavior_version(aws_config::BehaviorVersion::latest())
            .build();
        S3Backend::connect_with(&config, &sdk).unwrap()
    }

    #[test]
    fn part_sizes() {
        const MIB: u64 = 1024 * 1024;
        let equal = backend(true);
        assert!((1..=MAX_PARTS).all(|n| equal.part_len(n) == 8 * MIB));
        let growing = backend(false);
        assert_eq!(growing.part_len(1), 8 * MIB);
        assert_eq!(growing.part_len(1000), 8 * MIB);
        assert_eq!(growing.part_len(1001), 16 * MIB);
        assert_eq!(growing.part_len(MAX_PARTS), 80 * MIB);
        let capacity: u64 = (1..=MAX_PARTS).map(|n| growing.part_len(n)).sum();
        assert_eq!(
            capacity,
            8 * MIB * 1000 * 55,
            "about 430 GiB in 10,000 parts"
        );
    }
}
