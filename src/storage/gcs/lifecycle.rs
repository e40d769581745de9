//! The GCS backend's lifecycle primitives ([`LifecycleBackend`]): delimited listings for
//! directory walks (their `prefixes`) and for objects with their size and `updated` time
//! (free in the listing), deletions a few at a time (the JSON API has no batch delete), and
//! the pieces of chunked uploads below `uploads/` that no session owns.
//!
//! A monolithic push writes through a resumable session on the blob's object; a session never
//! finished creates no object, and GCS discards it after a week on its own, so there is no
//! counterpart here to S3's listing of abandoned multipart uploads.

use std::collections::HashSet;
use std::time::SystemTime;

use futures::{StreamExt, TryStreamExt};
use gcloud_storage::http::objects::Object;

use super::GcsBackend;
use crate::error::Result;
use crate::oci::{Digest, DigestAlgorithm};
use crate::storage::UploadId;
use crate::storage::layout::{self, Dir, Key};
use crate::storage::lifecycle::upload_objects::UploadObjects;
use crate::storage::lifecycle::{ExpiredStorage, LifecycleBackend, ObjectInfo};

/// Most entries one listing request returns.
const MAX_PAGE: usize = 1000;
/// Deletions in flight at once.
const DELETE_CONCURRENCY: usize = 16;

fn object_info(name: &str, object: &Object) -> ObjectInfo {
    ObjectInfo {
        name: name.to_owned(),
        size: u64::try_from(object.size).unwrap_or(0),
        modified: super::objects::last_written(object),
    }
}

impl GcsBackend {
    /// Names of the "directories" directly below `prefix` (the listing's `prefixes`), in the
    /// order of the trait, strictly after `start_after`, at most `limit`.
    async fn list_prefixes(
        &self,
        prefix: &str,
        start_after: Option<&str>,
        limit: usize,
    ) -> Result<Vec<String>> {
        // Every object below `<prefix><name>/` sorts before `<prefix><name>0` ('0' follows
        // '/'), so starting there skips `name`'s whole subtree.
        let start = start_after.map(|a| format!("{prefix}{a}0"));
        let mut names = Vec::new();
        let mut token = None;
        while names.len() < limit {
            let page = self
                .list_page(prefix, true, start.clone(), token.take(), MAX_PAGE)
                .await?;
            for common in page.prefixes.unwrap_or_default() {
                let Some(name) = common
                    .strip_prefix(prefix)
                    .and_then(|p| p.strip_suffix('/'))
                else {
                    continue;
                };
                if !name.is_empty() && names.len() < limit {
                    names.push(name.to_owned());
                }
            }
            match page.next_page_token {
                Some(next) => token = Some(next),
                None => break,
            }
        }
        Ok(names)
    }

    /// The objects directly below `prefix` with size and age, ascending, strictly after
    /// `start_after`, at most `limit`.
    async fn scan_prefix(
        &self,
        prefix: &str,
        start_after: Option<&str>,
        limit: usize,
    ) -> Result<Vec<ObjectInfo>> {
        let start = start_after.map(|a| format!("{prefix}{a}"));
        let mut found = Vec::new();
        let mut token = None;
        while found.len() < limit {
            // One more than needed: `startOffset` is inclusive.
            let want = (limit - found.len()).saturating_add(1).min(MAX_PAGE);
            let page = self
                .list_page(prefix, true, start.clone(), token.take(), want)
                .await?;
            for object in page.items.unwrap_or_default() {
                let Some(name) = object.name.strip_prefix(prefix) else {
                    continue;
                };
                if name.is_empty()
                    || name.contains('/')
                    || start_after.is_some_and(|a| name <= a)
                    || found.len() >= limit
                {
                    continue;
                }
                found.push(object_info(name, &object));
            }
            match page.next_page_token {
                Some(next) => token = Some(next),
                None => break,
            }
        }
        Ok(found)
    }

    /// Deletes objects, a few at a time; absent ones are fine.
    async fn delete_objects(&self, objects: Vec<String>) -> Result<()> {
        futures::stream::iter(objects)
            .map(|object| async move { self.delete(&object).await })
            .buffer_unordered(DELETE_CONCURRENCY)
            .try_collect::<()>()
            .await
    }

    async fn expire_pieces(
        &self,
        before: SystemTime,
        live: &HashSet<UploadId>,
        dry_run: bool,
    ) -> Result<ExpiredStorage> {
        let uploads = self.names.dir(&layout::uploads_dir());
        let mut found = UploadObjects::new(&uploads);
        let mut token = None;
        loop {
            let page = self
                .list_page(&uploads, false, None, token.take(), MAX_PAGE)
                .await?;
            for object in page.items.unwrap_or_default() {
                let info = object_info(&object.name, &object);
                found.add(&object.name, info.size, info.modified);
            }
            match page.next_page_token {
                Some(next) => token = Some(next),
                None => break,
            }
        }
        let (expired, doomed) = found.expired(before, live);
        if !dry_run {
            self.delete_objects(doomed).await?;
        }
        Ok(expired)
    }
}

impl LifecycleBackend for GcsBackend {
    async fn list_dirs(
        &self,
        dir: &Dir,
        start_after: Option<&str>,
        limit: usize,
    ) -> Result<Vec<String>> {
        self.list_prefixes(&self.names.dir(dir), start_after, limit)
            .await
    }

    async fn scan(
        &self,
        dir: &Dir,
        start_after: Option<&str>,
        limit: usize,
    ) -> Result<Vec<ObjectInfo>> {
        self.scan_prefix(&self.names.dir(dir), start_after, limit)
            .await
    }

    async fn scan_blobs(
        &self,
        algorithm: DigestAlgorithm,
        start_after: Option<&str>,
        limit: usize,
    ) -> Result<Vec<ObjectInfo>> {
        let prefix = self.names.dir(&layout::blobs_dir(algorithm));
        self.scan_prefix(&prefix, start_after, limit).await
    }

    async fn remove_objects(&self, keys: &[Key]) -> Result<()> {
        let objects = keys.iter().map(|k| self.names.object(k)).collect();
        self.delete_objects(objects).await
    }

    async fn remove_blobs(&self, digests: &[Digest]) -> Result<()> {
        let objects = digests
            .iter()
            .map(|d| self.names.object(&layout::blob_data(d)))
            .collect();
        self.delete_objects(objects).await
    }

    async fn expire_upload_storage(
        &self,
        before: SystemTime,
        live: &HashSet<UploadId>,
        dry_run: bool,
    ) -> Result<ExpiredStorage> {
        self.expire_pieces(before, live, dry_run).await
    }

    async fn tidy(&self, _before: SystemTime, _dry_run: bool) -> Result<u64> {
        // Object stores have no directories, and every object is written whole.
        Ok(0)
    }
}
