//! Requests on S3 multipart uploads: create one, upload a part, complete it (or find that an
//! earlier attempt did), abort it, and tell a failed request from an upload that is gone.

use aws_sdk_s3::error::ProvideErrorMetadata;
use aws_sdk_s3::primitives::ByteStream;
use aws_sdk_s3::types::{ChecksumAlgorithm, CompletedMultipartUpload, CompletedPart};
use bytes::Bytes;

use super::error::{self, corrupt_at, translate};
use super::objects::CONTENT_TYPE;
use super::upload_state::UploadedPart;
use super::{S3Backend, client};
use crate::error::{Error, Result};

/// S3's limit on the number of parts of a multipart upload.
pub const MAX_PARTS: u32 = 10_000;

impl S3Backend {
    pub(super) async fn create_multipart(&self, key: &str) -> Result<String> {
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

    pub(super) async fn upload_part(
        &self,
        key: String,
        upload_id: String,
        number: u32,
        bytes: Bytes,
    ) -> Result<UploadedPart> {
        let size = bytes.len() as u64;
        let request = self
            .client
            .upload_part()
            .bucket(&self.bucket)
            .key(&key)
            .upload_id(&upload_id)
            .part_number(number as i32)
            .content_length(size as i64)
            .body(ByteStream::from(bytes))
            .customize()
            .config_override(client::attempt_limit(
                &self.client,
                Some(self.request_timeout.with_body(size)),
            ));
        let out = if self.sign_payloads {
            request.send().await
        } else {
            request.disable_payload_signing().send().await
        };
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

    pub(super) async fn complete_multipart(
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
            // The store assembles the parts before it answers in full: a second per MiB.
            .customize()
            .config_override(client::attempt_limit(
                &self.client,
                Some(
                    self.request_timeout
                        .with_body(parts.iter().map(|p| p.size).sum()),
                ),
            ))
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
}
