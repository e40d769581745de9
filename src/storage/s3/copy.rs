//! Server-side copies: `CopyObject` up to 5 GiB, a multipart copy in parallel
//! `UploadPartCopy` requests above (a chunked upload's bytes reach the blob's key this way).

use aws_sdk_s3::types::ChecksumAlgorithm;
use futures::{StreamExt, TryStreamExt};

use super::error::{corrupt_at, translate};
use super::keys::encode_copy_source;
use super::multipart::MAX_PARTS;
use super::upload_state::UploadedPart;
use super::{S3Backend, client};
use crate::error::Result;
use crate::storage::config::MAX_PART_SIZE;

/// Objects up to this size are copied with one `CopyObject` (S3's limit for it).
pub const COPY_OBJECT_LIMIT: u64 = 5 * 1024 * 1024 * 1024;

/// Part size of a multipart copy (`UploadPartCopy`) of larger objects.
pub const COPY_PART_SIZE: u64 = 512 * 1024 * 1024;

/// Parallel `UploadPartCopy` requests of one multipart copy.
const COPY_CONCURRENCY: usize = 8;

impl S3Backend {
    /// Server-side copy of `src` (of `size` bytes) to `dst`: `CopyObject` up to 5 GiB,
    /// parallel `UploadPartCopy` above.
    pub(super) async fn copy(&self, src: &str, dst: &str, size: u64) -> Result<()> {
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
                // The store copies before it answers in full: a second per MiB.
                .customize()
                .config_override(client::attempt_limit(
                    &self.client,
                    Some(self.request_timeout.with_body(size)),
                ))
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
            .customize()
            .config_override(client::attempt_limit(
                &self.client,
                Some(self.request_timeout.with_body(last - first + 1)),
            ))
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
}
