//! Uploads: multipart uploads opened lazily, remainders below one part staged in the bucket,
//! and the state that lets any process continue an upload.
//!
//! See the [module docs of the driver](super) for the design and its costs.

use std::pin::{Pin, pin};

use aws_sdk_s3::error::ProvideErrorMetadata;
use aws_sdk_s3::primitives::ByteStream;
use aws_sdk_s3::types::{ChecksumAlgorithm, CompletedMultipartUpload, CompletedPart};
use bytes::{Bytes, BytesMut};
use futures::future::{Fuse, FusedFuture, FutureExt};
use futures::{Stream, StreamExt, TryStreamExt};
use serde::{Deserialize, Serialize};

use super::S3Backend;
use super::error::{self, corrupt, corrupt_at, translate};
use super::keys::encode_copy_source;
use super::objects::CONTENT_TYPE;
use crate::error::{Error, Result};
use crate::oci::Digest;
use crate::storage::UploadId;
use crate::storage::backend::PersistedUploadState;
use crate::storage::config::MAX_PART_SIZE;
use crate::storage::layout;

/// S3's limit on the number of parts of a multipart upload.
pub const MAX_PARTS: u32 = 10_000;

/// Without `equal_parts`, the part size grows by one `part_size` every this many parts, so
/// 10,000 parts of a default 8 MiB part size hold 430 GiB instead of 78 GiB.
const PARTS_PER_STEP: u32 = 1_000;

/// Objects up to this size are copied with one `CopyObject` (S3's limit for it).
pub const COPY_OBJECT_LIMIT: u64 = 5 * 1024 * 1024 * 1024;

/// Part size of a multipart copy (`UploadPartCopy`) of larger objects.
pub const COPY_PART_SIZE: u64 = 512 * 1024 * 1024;

/// Parallel `UploadPartCopy` requests of one multipart copy.
const COPY_CONCURRENCY: usize = 8;

/// Staged segments read or deleted at the same time.
const SEGMENT_CONCURRENCY: usize = 4;

/// Staged segments an upload may accumulate before an append merges them into one (bounds
/// the `GetObject`s needed to assemble a part when chunks are tiny).
pub const MAX_SEGMENTS: usize = 16;

/// The S3 part of an upload session's persisted state (stored as JSON by the engine at
/// `repositories/<name>/_uploads/<id>`, so the next chunk may arrive at another process).
///
/// Invariant: the upload holds `sum(parts.size) + sum(staged.size)` bytes, in that order,
/// and the staged segments hold less than one part.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct S3UploadState {
    /// The digest whose blob key the multipart upload writes to directly (monolithic pushes,
    /// where the digest is known up front); `None` for chunked uploads, which write to
    /// `uploads/<id>/data`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub direct: Option<String>,
    /// The S3 multipart upload id, once the first full part was available.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub multipart: Option<String>,
    /// Parts uploaded so far, in order.
    #[serde(default)]
    pub parts: Vec<UploadedPart>,
    /// The bytes after the last part (fewer than one part), staged as objects: one segment
    /// per append, written once and read back once when a part is assembled.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub staged: Vec<StagedSegment>,
    /// Names of staged objects superseded by this state, deleted by the next append (only
    /// once this state is persisted may they go) or at commit/abort.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub garbage: Vec<SegmentName>,
    /// The bytes after the last part of a monolithic push ([`direct`](Self::direct)), held
    /// in memory instead of staged: such a state lives in one request and is never
    /// persisted, so the bytes reach the store once, as the blob's last part or (below one
    /// part) as the blob itself, with one `PutObject`. Never serialised.
    #[serde(skip)]
    pub held: Option<Bytes>,
}

/// One uploaded part.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UploadedPart {
    /// Part number (1-based).
    pub number: u32,
    /// ETag S3 returned for it.
    pub etag: String,
    /// Bytes in the part.
    pub size: u64,
    /// CRC32 checksum S3 returned, when request checksums are on.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub crc32: Option<String>,
}

/// A staged segment: object `uploads/<id>/staged-<end>-<nonce>` holding the upload's bytes
/// `end - size .. end`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct StagedSegment {
    /// Upload offset just after the staged bytes.
    pub end: u64,
    /// Number of staged bytes.
    pub size: u64,
    /// Random part of the object's name, new for every segment written: two appends at the
    /// same offset (a client sending one chunk twice at once, through two processes) never
    /// write the same object, so a state only ever names bytes its own append wrote. `0` in
    /// states written before names had it (the object is then `staged-<end>`).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub nonce: u64,
}

impl StagedSegment {
    /// The name of the segment's object.
    pub fn name(&self) -> SegmentName {
        SegmentName {
            end: self.end,
            nonce: self.nonce,
        }
    }
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}

/// The name of a staged segment's object: its end offset and the random part of the name
/// (see [`StagedSegment::nonce`]). Stored as `[end, nonce]`; a bare number (an end offset,
/// as states written before names had a random part stored it) reads as nonce `0`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(from = "SegmentNameRepr", into = "SegmentNameRepr")]
pub struct SegmentName {
    /// Upload offset just after the segment's bytes.
    pub end: u64,
    /// Random part of the name; `0` for none.
    pub nonce: u64,
}

#[derive(Serialize, Deserialize)]
#[serde(untagged)]
enum SegmentNameRepr {
    End(u64),
    Named(u64, u64),
}

impl From<SegmentNameRepr> for SegmentName {
    fn from(repr: SegmentNameRepr) -> Self {
        match repr {
            SegmentNameRepr::End(end) => Self { end, nonce: 0 },
            SegmentNameRepr::Named(end, nonce) => Self { end, nonce },
        }
    }
}

impl From<SegmentName> for SegmentNameRepr {
    fn from(name: SegmentName) -> Self {
        Self::Named(name.end, name.nonce)
    }
}

impl PersistedUploadState for S3UploadState {
    /// Every write of an S3 upload is durable once acknowledged: always current.
    fn is_current(&self) -> bool {
        true
    }
}

impl S3UploadState {
    /// Bytes the state accounts for.
    pub fn stored(&self) -> u64 {
        self.parts.iter().map(|p| p.size).sum::<u64>()
            + self.staged_len()
            + self.held.as_ref().map_or(0, |h| h.len() as u64)
    }

    /// Bytes in the staged segments.
    pub fn staged_len(&self) -> u64 {
        self.staged.iter().map(|s| s.size).sum()
    }
}

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

    async fn create_multipart(&self, key: &str) -> Result<String> {
        let out = self
            .client
            .create_multipart_upload()
            .bucket(&self.bucket)
            .key(key)
            .content_type(CONTENT_TYPE)
            .set_checksum_algorithm(self.part_checksums.then_some(ChecksumAlgorithm::Crc32))
            .send()
            .await
            .map_err(|e| translate("CreateMultipartUpload", key, e))?;
        out.upload_id()
            .map(str::to_owned)
            .ok_or_else(|| corrupt_at("CreateMultipartUpload answered without an upload id", key))
    }

    async fn upload_part(
        &self,
        key: String,
        upload_id: String,
        number: u32,
        bytes: Bytes,
    ) -> Result<UploadedPart> {
        let size = bytes.len() as u64;
        let out = self
            .client
            .upload_part()
            .bucket(&self.bucket)
            .key(&key)
            .upload_id(&upload_id)
            .part_number(number as i32)
            .content_length(size as i64)
            .body(ByteStream::from(bytes))
            .send()
            .await;
        let out = match out {
            Ok(out) => out,
            Err(e) => return Err(self.part_failure("UploadPart", &key, &upload_id, e).await),
        };
        let etag = out
            .e_tag()
            .ok_or_else(|| corrupt_at("UploadPart answered without an ETag", &key))?
            .to_owned();
        Ok(UploadedPart {
            number,
            etag,
            size,
            crc32: out.checksum_crc32().map(str::to_owned),
        })
    }

    async fn complete_multipart(
        &self,
        key: &str,
        upload_id: &str,
        parts: &[UploadedPart],
    ) -> Result<()> {
        let completed = parts
            .iter()
            .map(|p| {
                CompletedPart::builder()
                    .part_number(p.number as i32)
                    .e_tag(&p.etag)
                    .set_checksum_crc32(p.crc32.clone())
                    .build()
            })
            .collect();
        let out = self
            .client
            .complete_multipart_upload()
            .bucket(&self.bucket)
            .key(key)
            .upload_id(upload_id)
            .multipart_upload(
                CompletedMultipartUpload::builder()
                    .set_parts(Some(completed))
                    .build(),
            )
            .send()
            .await;
        match out {
            Ok(_) => Ok(()),
            Err(e) if e.code() == Some("InvalidPart") => {
                // A part the state names was replaced: a PATCH of this session in another
                // process uploaded the same part number (see `conditional`). The session
                // cannot be finished; the client starts over (spec: 404 on the PUT).
                tracing::warn!(key, "a part of the upload was replaced by another request");
                Err(Error::BlobUploadUnknown(
                    "a part of the upload was replaced by a concurrent request".into(),
                ))
            }
            Err(e) if error::is_no_such_upload(&e) => self.completed_before(key, parts).await,
            Err(e) => Err(self
                .part_failure("CompleteMultipartUpload", key, upload_id, e)
                .await),
        }
    }

    /// After `NoSuchUpload` from `CompleteMultipartUpload`: whether an earlier attempt of the
    /// same request completed the upload and only its answer was lost (the connection broke
    /// after the store had the request, and the SDK retried). `key` is the session's own
    /// object or the blob's, named by its digest, so an object there of the parts' total
    /// size is this upload's result; anything else means the upload is gone.
    async fn completed_before(&self, key: &str, parts: &[UploadedPart]) -> Result<()> {
        let expected: u64 = parts.iter().map(|p| p.size).sum();
        match self.head_size(key).await? {
            Some(size) if size == expected => {
                tracing::debug!(key, "multipart upload completed by an earlier attempt");
                Ok(())
            }
            _ => Err(Error::BlobUploadUnknown(
                "the multipart upload no longer exists in the bucket".into(),
            )),
        }
    }

    /// The error of a request on a multipart upload: `BLOB_UPLOAD_UNKNOWN` when the upload
    /// is gone (expired, aborted), which some stores report as a server error (moto answers
    /// 500 to `UploadPart` on an aborted upload): then `ListParts` tells.
    async fn part_failure<E>(
        &self,
        op: &'static str,
        key: &str,
        upload_id: &str,
        err: aws_sdk_s3::error::SdkError<
            E,
            aws_smithy_runtime_api::client::orchestrator::HttpResponse,
        >,
    ) -> Error
    where
        E: aws_sdk_s3::error::ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
    {
        if !error::is_no_such_upload(&err) {
            let probe = self
                .client
                .list_parts()
                .bucket(&self.bucket)
                .key(key)
                .upload_id(upload_id)
                .max_parts(1)
                .send()
                .await;
            if let Err(probe) = probe
                && error::is_no_such_upload(&probe)
            {
                return translate("ListParts", key, probe);
            }
        }
        translate(op, key, err)
    }

    /// Aborts a multipart upload; succeeds if it is already gone.
    pub(crate) async fn abort_multipart(&self, key: &str, upload_id: &str) -> Result<()> {
        match self
            .client
            .abort_multipart_upload()
            .bucket(&self.bucket)
            .key(key)
            .upload_id(upload_id)
            .send()
            .await
        {
            Ok(_) => Ok(()),
            Err(e) if error::is_no_such_upload(&e) || error::is_not_found(&e) => Ok(()),
            Err(e) => Err(translate("AbortMultipartUpload", key, e)),
        }
    }

    /// Server-side copy of `src` (of `size` bytes) to `dst`: `CopyObject` up to 5 GiB,
    /// parallel `UploadPartCopy` above.
    async fn copy(&self, src: &str, dst: &str, size: u64) -> Result<()> {
        let source = encode_copy_source(&self.bucket, src);
        if size <= self.copy_object_limit {
            self.client
                .copy_object()
                .bucket(&self.bucket)
                .key(dst)
                .copy_source(source)
                // A fresh full-object checksum: the source's composite one (of its parts)
                // does not describe the copy (moto even serves it as if it did).
                .set_checksum_algorithm(self.part_checksums.then_some(ChecksumAlgorithm::Crc32))
                .send()
                .await
                .map_err(|e| translate("CopyObject", dst, e))?;
            return Ok(());
        }
        let part = self
            .copy_part_size
            .max(size.div_ceil(u64::from(MAX_PARTS)))
            .min(MAX_PART_SIZE);
        let upload_id = self.create_multipart(dst).await?;
        let ranges = (0..size.div_ceil(part)).map(|i| {
            let start = i * part;
            (i as u32 + 1, start, (start + part).min(size) - 1)
        });
        let copied: Result<Vec<UploadedPart>> = futures::stream::iter(ranges)
            .map(|(number, first, last)| {
                self.upload_part_copy(dst, &upload_id, &source, number, first, last)
            })
            .buffer_unordered(COPY_CONCURRENCY)
            .try_collect()
            .await;
        let result = match copied {
            Ok(mut parts) => {
                parts.sort_by_key(|p| p.number);
                self.complete_multipart(dst, &upload_id, &parts).await
            }
            Err(e) => Err(e),
        };
        if result.is_err() {
            let _ = self.abort_multipart(dst, &upload_id).await;
        }
        result
    }

    async fn upload_part_copy(
        &self,
        dst: &str,
        upload_id: &str,
        source: &str,
        number: u32,
        first: u64,
        last: u64,
    ) -> Result<UploadedPart> {
        let out = self
            .client
            .upload_part_copy()
            .bucket(&self.bucket)
            .key(dst)
            .upload_id(upload_id)
            .part_number(number as i32)
            .copy_source(source)
            .copy_source_range(format!("bytes={first}-{last}"))
            .send()
            .await
            .map_err(|e| translate("UploadPartCopy", dst, e))?;
        let result = out.copy_part_result();
        let etag = result
            .and_then(|r| r.e_tag())
            .ok_or_else(|| corrupt_at("UploadPartCopy answered without an ETag", dst))?
            .to_owned();
        Ok(UploadedPart {
            number,
            etag,
            size: last - first + 1,
            crc32: result.and_then(|r| r.checksum_crc32()).map(str::to_owned),
        })
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
                return self.put_bytes(&blob_key, held).await;
            }
            // Less than one part in all: the bytes are the staged segments, or nothing.
            return match state.staged.as_slice() {
                [] => self.put_bytes(&blob_key, Bytes::new()).await,
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
                    self.put_bytes(&blob_key, bytes.freeze()).await
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
                        tracing::warn!(key, error = %e, "aborting a stray multipart upload");
                    }
                }
            }
            Err(e) => {
                tracing::debug!(dir, error = %aws_sdk_s3::error::DisplayErrorContext(&e),
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

    #[test]
    fn state_accounts_for_parts_and_staged_bytes() {
        let state = S3UploadState {
            parts: vec![UploadedPart {
                number: 1,
                etag: "\"e\"".into(),
                size: 5,
                crc32: None,
            }],
            staged: vec![
                StagedSegment {
                    end: 6,
                    size: 1,
                    nonce: 0,
                },
                StagedSegment {
                    end: 8,
                    size: 2,
                    nonce: 77,
                },
            ],
            garbage: vec![SegmentName { end: 5, nonce: 9 }],
            ..S3UploadState::default()
        };
        assert_eq!(state.stored(), 8);
        let json = serde_json::to_string(&state).unwrap();
        assert_eq!(serde_json::from_str::<S3UploadState>(&json).unwrap(), state);
        // Segment names of states written before they had a random part still load.
        let old: S3UploadState =
            serde_json::from_str(r#"{"staged":[{"end":3,"size":3}],"garbage":[1,2]}"#).unwrap();
        assert_eq!(
            old.staged,
            [StagedSegment {
                end: 3,
                size: 3,
                nonce: 0
            }]
        );
        assert_eq!(
            old.garbage,
            [
                SegmentName { end: 1, nonce: 0 },
                SegmentName { end: 2, nonce: 0 }
            ]
        );
        // Older or foreign records without the optional fields still load.
        let bare: S3UploadState = serde_json::from_str("{}").unwrap();
        assert_eq!(bare, S3UploadState::default());
    }
}
