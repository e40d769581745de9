//! The S3 backend's lifecycle primitives ([`LifecycleBackend`]): `ListObjectsV2` with a
//! delimiter for directory walks (its common prefixes) and for objects with their size and
//! `LastModified` (free in the listing), `DeleteObjects` in batches of up to 1000 keys, and
//! upload storage no session owns: objects below `uploads/` and multipart uploads anywhere
//! below the prefix (`ListMultipartUploads`), including those a monolithic push opened on a
//! blob's key.

use std::collections::HashSet;
use std::time::SystemTime;

use aws_sdk_s3::types::{Delete, ObjectIdentifier};

use super::S3Backend;
use super::backend::on_heap;
use super::error::{self, translate};
use crate::error::{Error, ErrorChain, Result};
use crate::oci::{Digest, DigestAlgorithm};
use crate::storage::UploadId;
use crate::storage::layout::{self, Dir, Key};
use crate::storage::lifecycle::upload_objects::{UploadObjects, upload_of};
use crate::storage::lifecycle::{ExpiredStorage, LifecycleBackend, ObjectInfo};

/// Most keys one `DeleteObjects` request takes.
const DELETE_BATCH: usize = 1000;
/// Most entries one listing request returns.
const MAX_PAGE: usize = 1000;

fn system_time(t: Option<&aws_smithy_types::DateTime>) -> SystemTime {
    t.and_then(|t| SystemTime::try_from(*t).ok())
        .unwrap_or(SystemTime::UNIX_EPOCH)
}

impl S3Backend {
    async fn list_common_prefixes(
        &self,
        prefix: &str,
        start_after: Option<&str>,
        limit: usize,
    ) -> Result<Vec<String>> {
        let mut names = Vec::new();
        let mut token: Option<String> = None;
        // Every key below `<prefix><name>/` sorts before `<prefix><name>0` ('0' follows '/'),
        // so starting after it skips `name`'s whole subtree: the order of the trait.
        let start = start_after.map(|a| format!("{prefix}{a}0"));
        while names.len() < limit {
            let out = self
                .client
                .list_objects_v2()
                .bucket(&self.bucket)
                .prefix(prefix)
                .delimiter("/")
                .max_keys((limit - names.len()).min(MAX_PAGE) as i32)
                .set_start_after(start.clone())
                .set_continuation_token(token.take())
                .send()
                .await
                .map_err(|e| translate("ListObjectsV2", prefix, e))?;
            for common in out.common_prefixes() {
                let Some(name) = common
                    .prefix()
                    .and_then(|p| p.strip_prefix(prefix))
                    .and_then(|p| p.strip_suffix('/'))
                else {
                    continue;
                };
                if !name.is_empty() && names.len() < limit {
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

    async fn scan_prefix(
        &self,
        prefix: &str,
        start_after: Option<&str>,
        limit: usize,
    ) -> Result<Vec<ObjectInfo>> {
        let mut found = Vec::new();
        let mut token: Option<String> = None;
        while found.len() < limit {
            let out = self
                .client
                .list_objects_v2()
                .bucket(&self.bucket)
                .prefix(prefix)
                .delimiter("/")
                .max_keys((limit - found.len()).min(MAX_PAGE) as i32)
                .set_start_after(start_after.map(|a| format!("{prefix}{a}")))
                .set_continuation_token(token.take())
                .send()
                .await
                .map_err(|e| translate("ListObjectsV2", prefix, e))?;
            for object in out.contents() {
                let Some(name) = object.key().and_then(|k| k.strip_prefix(prefix)) else {
                    continue;
                };
                if name.is_empty() || name.contains('/') || found.len() == limit {
                    continue;
                }
                found.push(ObjectInfo {
                    name: name.to_owned(),
                    size: object
                        .size()
                        .and_then(|s| u64::try_from(s).ok())
                        .unwrap_or(0),
                    modified: system_time(object.last_modified()),
                });
            }
            match out.next_continuation_token() {
                Some(next) if out.is_truncated() == Some(true) => token = Some(next.to_owned()),
                _ => break,
            }
        }
        Ok(found)
    }

    /// Deletes object keys in batches (`DeleteObjects`); absent keys are fine.
    pub(crate) async fn delete_keys(&self, keys: Vec<String>) -> Result<()> {
        for batch in keys.chunks(DELETE_BATCH) {
            let objects = batch
                .iter()
                .map(|k| ObjectIdentifier::builder().key(k).build())
                .collect::<Result<Vec<_>, _>>()
                .map_err(|e| Error::backend_source(error::DRIVER, "building a deletion", e))?;
            let delete = Delete::builder()
                .set_objects(Some(objects))
                .quiet(true)
                .build()
                .map_err(|e| Error::backend_source(error::DRIVER, "building a deletion", e))?;
            let out = self
                .client
                .delete_objects()
                .bucket(&self.bucket)
                .delete(delete)
                // Never abandoned for taking long: see `S3Backend::delete`.
                .customize()
                .config_override(super::client::attempt_limit(&self.client, None))
                .send()
                .await;
            match out {
                Ok(out) => {
                    if let Some(failed) =
                        out.errors().iter().find(|e| e.code() != Some("NoSuchKey"))
                    {
                        return Err(Error::backend(
                            error::DRIVER,
                            format!(
                                "DeleteObjects: {} {}",
                                failed.code().unwrap_or("error"),
                                failed.message().unwrap_or("")
                            ),
                        ));
                    }
                }
                // A store without `DeleteObjects`: one request per key.
                Err(e) if matches!(error::status(&e), Some(400 | 404 | 405 | 501)) => {
                    tracing::debug!(error = %ErrorChain(&e),
                        "DeleteObjects refused; deleting one object at a time");
                    for key in batch {
                        self.delete(key).await?;
                    }
                }
                Err(e) => return Err(translate("DeleteObjects", "(batch)", e)),
            }
        }
        Ok(())
    }

    async fn expire_uploads(
        &self,
        before: SystemTime,
        live: &HashSet<UploadId>,
        dry_run: bool,
    ) -> Result<ExpiredStorage> {
        // Objects below `uploads/` (staged segments, completed `data`), by upload.
        let uploads = self.keys.dir(&layout::uploads_dir());
        let mut found = UploadObjects::new(&uploads);
        let mut token: Option<String> = None;
        loop {
            let out = self
                .client
                .list_objects_v2()
                .bucket(&self.bucket)
                .prefix(&uploads)
                .set_continuation_token(token.take())
                .send()
                .await
                .map_err(|e| translate("ListObjectsV2", &uploads, e))?;
            for object in out.contents() {
                let Some(key) = object.key() else { continue };
                let size = object
                    .size()
                    .and_then(|s| u64::try_from(s).ok())
                    .unwrap_or(0);
                found.add(key, size, system_time(object.last_modified()));
            }
            match out.next_continuation_token() {
                Some(next) if out.is_truncated() == Some(true) => token = Some(next.to_owned()),
                _ => break,
            }
        }
        let (mut expired, doomed) = found.expired(before, live);
        if !dry_run {
            self.delete_keys(doomed).await?;
        }
        // Multipart uploads: of sessions (`uploads/<id>/data`) and of monolithic pushes (on
        // a blob's key), opened before `before` and owned by no live session.
        let mut counted: HashSet<UploadId> = expired.uploads.iter().cloned().collect();
        let mut markers: (Option<String>, Option<String>) = (None, None);
        loop {
            let listed = self
                .client
                .list_multipart_uploads()
                .bucket(&self.bucket)
                .prefix(self.keys.prefix())
                .set_key_marker(markers.0.take())
                .set_upload_id_marker(markers.1.take())
                .send()
                .await;
            let out = match listed {
                Ok(out) => out,
                Err(e) => {
                    tracing::warn!(error = %ErrorChain(&e),
                        "ListMultipartUploads failed: multipart uploads no session owns are \
                         left to the bucket's lifecycle rules");
                    break;
                }
            };
            for upload in out.uploads() {
                let (Some(key), Some(upload_id)) = (upload.key(), upload.upload_id()) else {
                    continue;
                };
                if system_time(upload.initiated()) >= before || !self.opened_here(key) {
                    continue;
                }
                let owner = upload_of(&uploads, key);
                if owner.as_ref().is_some_and(|id| live.contains(id)) {
                    continue;
                }
                if !dry_run {
                    self.abort_multipart(key, upload_id).await?;
                }
                match owner {
                    Some(id) => {
                        if counted.insert(id.clone()) {
                            expired.uploads.push(id);
                        }
                    }
                    None => expired.anonymous += 1,
                }
            }
            if out.is_truncated() != Some(true) {
                break;
            }
            markers = (
                out.next_key_marker().map(str::to_owned),
                out.next_upload_id_marker().map(str::to_owned),
            );
            if markers.0.is_none() {
                break;
            }
        }
        Ok(expired)
    }
}

impl S3Backend {
    /// Whether a multipart upload on `key` is one this layout opens: a session's
    /// `<prefix>uploads/<id>/data`, or a monolithic push's blob key
    /// `<prefix>blobs/<algorithm>/<hex>`. Anything else under the prefix belongs to another
    /// user of the bucket (a registry under a longer prefix, another application) and is
    /// never aborted.
    fn opened_here(&self, key: &str) -> bool {
        let uploads = self.keys.dir(&layout::uploads_dir());
        if let Some(id) = upload_of(&uploads, key) {
            return key == self.keys.upload_data(&id);
        }
        key.strip_prefix(self.keys.prefix())
            .and_then(|rel| rel.strip_prefix("blobs/"))
            .and_then(|blob| blob.split_once('/'))
            .and_then(|(algorithm, hex)| Digest::parse(&format!("{algorithm}:{hex}")).ok())
            .is_some_and(|digest| key == self.keys.object(&layout::blob_data(&digest)))
    }
}

impl LifecycleBackend for S3Backend {
    async fn list_dirs(
        &self,
        dir: &Dir,
        start_after: Option<&str>,
        limit: usize,
    ) -> Result<Vec<String>> {
        on_heap(self.list_common_prefixes(&self.keys.dir(dir), start_after, limit)).await
    }

    async fn scan(
        &self,
        dir: &Dir,
        start_after: Option<&str>,
        limit: usize,
    ) -> Result<Vec<ObjectInfo>> {
        on_heap(self.scan_prefix(&self.keys.dir(dir), start_after, limit)).await
    }

    async fn scan_blobs(
        &self,
        algorithm: DigestAlgorithm,
        start_after: Option<&str>,
        limit: usize,
    ) -> Result<Vec<ObjectInfo>> {
        let prefix = self.keys.dir(&layout::blobs_dir(algorithm));
        on_heap(self.scan_prefix(&prefix, start_after, limit)).await
    }

    async fn remove_objects(&self, keys: &[Key]) -> Result<()> {
        let keys = keys.iter().map(|k| self.keys.object(k)).collect();
        on_heap(self.delete_keys(keys)).await
    }

    async fn remove_blobs(&self, digests: &[Digest]) -> Result<()> {
        let keys = digests
            .iter()
            .map(|d| self.keys.object(&layout::blob_data(d)))
            .collect();
        on_heap(self.delete_keys(keys)).await
    }

    async fn expire_upload_storage(
        &self,
        before: SystemTime,
        live: &HashSet<UploadId>,
        dry_run: bool,
    ) -> Result<ExpiredStorage> {
        on_heap(self.expire_uploads(before, live, dry_run)).await
    }

    async fn tidy(&self, _before: SystemTime, _dry_run: bool) -> Result<u64> {
        // Object stores have no directories, and every object is written whole.
        Ok(0)
    }
}
