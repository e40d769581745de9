//! The lifecycle primitives of an [`Instrumented`] backend: traced, observed and given
//! their errors' context like its [`Backend`] operations.

use std::collections::HashSet;
use std::time::SystemTime;

use super::{Instrumented, Observer, Subject};
use crate::error::Result;
use crate::oci::{Digest, DigestAlgorithm};
use crate::storage::UploadId;
use crate::storage::backend::Operation;
use crate::storage::layout::{Dir, Key, KeyClass};
use crate::storage::lifecycle::{ExpiredStorage, LifecycleBackend, ObjectInfo};

#[deny(clippy::missing_trait_methods)]
impl<B: LifecycleBackend, O: Observer> LifecycleBackend for Instrumented<B, O> {
    async fn list_dirs(
        &self,
        dir: &Dir,
        start_after: Option<&str>,
        limit: usize,
    ) -> Result<Vec<String>> {
        let call = self.inner.list_dirs(dir, start_after, limit);
        self.run(Operation::ListDirs, Subject::Dir(dir), call).await
    }

    async fn scan(
        &self,
        dir: &Dir,
        start_after: Option<&str>,
        limit: usize,
    ) -> Result<Vec<ObjectInfo>> {
        let call = self.inner.scan(dir, start_after, limit);
        self.run(Operation::Scan, Subject::Dir(dir), call).await
    }

    async fn scan_blobs(
        &self,
        algorithm: DigestAlgorithm,
        start_after: Option<&str>,
        limit: usize,
    ) -> Result<Vec<ObjectInfo>> {
        let call = self.inner.scan_blobs(algorithm, start_after, limit);
        let subject = Subject::Class(Some(KeyClass::Blob));
        self.run(Operation::ScanBlobs, subject, call).await
    }

    async fn remove_objects(&self, keys: &[Key]) -> Result<()> {
        let call = self.inner.remove_objects(keys);
        // The key of a failure is the one key when there is one, else the backend's to say.
        let subject = match keys {
            [key] => Subject::Key(key),
            _ => Subject::Class(None),
        };
        self.run(Operation::RemoveObjects, subject, call).await
    }

    async fn remove_blobs(&self, digests: &[Digest]) -> Result<()> {
        let call = self.inner.remove_blobs(digests);
        let subject = match digests {
            [digest] => Subject::Blob(digest),
            _ => Subject::Class(Some(KeyClass::Blob)),
        };
        self.run(Operation::RemoveBlobs, subject, call).await
    }

    async fn expire_upload_storage(
        &self,
        before: SystemTime,
        live: &HashSet<UploadId>,
        dry_run: bool,
    ) -> Result<ExpiredStorage> {
        let call = self.inner.expire_upload_storage(before, live, dry_run);
        let subject = Subject::Class(Some(KeyClass::UploadData));
        self.run(Operation::ExpireUploadStorage, subject, call)
            .await
    }

    async fn tidy(&self, before: SystemTime, dry_run: bool) -> Result<u64> {
        let call = self.inner.tidy(before, dry_run);
        self.run(Operation::Tidy, Subject::Class(None), call).await
    }
}
