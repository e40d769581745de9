//! The primitives a [`Backend`] adds so that the engine can run the lifecycle operations
//! (garbage collection, upload expiry, repository listing) on it: walking directories,
//! objects with their age, removing in batches, and whatever of an upload's storage the
//! engine cannot name (a crash may leave bytes no session record refers to).
//!
//! Everything here is administrative: none of it is on a client request's path except
//! [`list_dirs`](LifecycleBackend::list_dirs), for `GET /v2/_catalog`.

use std::collections::HashSet;
use std::future::Future;
use std::time::SystemTime;

use crate::error::Result;
use crate::oci::{Digest, DigestAlgorithm};
use crate::storage::UploadId;
use crate::storage::backend::Backend;
use crate::storage::layout::{Dir, Key};

/// An object found by [`LifecycleBackend::scan`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ObjectInfo {
    /// The object's name in its directory.
    pub name: String,
    /// Its size in bytes.
    pub size: u64,
    /// When it was last written (the filesystem's `mtime`, S3's `LastModified`).
    pub modified: SystemTime,
}

/// What [`LifecycleBackend::expire_upload_storage`] released (or, in a dry run, would).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ExpiredStorage {
    /// The uploads whose storage was released (each once).
    pub uploads: Vec<UploadId>,
    /// Storage released that belonged to no upload id (S3: a multipart upload a monolithic
    /// push opened on a blob's key and never completed).
    pub anonymous: u64,
    /// Bytes released, where the backend can tell.
    pub bytes: u64,
}

/// Lifecycle primitives of a backend: walking directories, objects with their age, removing
/// in batches, and the upload storage the engine cannot name (a crash may leave bytes no
/// session record refers to). Administrative only, except [`list_dirs`](Self::list_dirs) for
/// `GET /v2/_catalog`; see [`lifecycle`](crate::storage::lifecycle).
///
/// Contract, checked by the lifecycle cases of the behaviour suite through the engine:
/// - Listings follow the same consistency as [`Backend::list`]: an object (or a directory
///   holding one) that exists from before a listing starts until it ends is returned.
/// - `list_dirs` orders names by the bytes of the name followed by `/` (so `a-b` comes
///   before `a`, whose subtree `a/...` then follows it directly: the order of a depth-first
///   walk), and `start_after` is a position in that order.
pub trait LifecycleBackend: Backend {
    /// Names of the directories directly inside `dir` that hold at least one object (at any
    /// depth), in the order of the trait docs, strictly after `start_after`, at most `limit`.
    fn list_dirs(
        &self,
        dir: &Dir,
        start_after: Option<&str>,
        limit: usize,
    ) -> impl Future<Output = Result<Vec<String>>> + Send;

    /// The objects directly inside `dir` with their size and age, in ascending byte order of
    /// their names, strictly after `start_after`, at most `limit`.
    fn scan(
        &self,
        dir: &Dir,
        start_after: Option<&str>,
        limit: usize,
    ) -> impl Future<Output = Result<Vec<ObjectInfo>>> + Send;

    /// The stored blobs of `algorithm` (named by their hexadecimal digest), as [`scan`](Self::scan).
    fn scan_blobs(
        &self,
        algorithm: DigestAlgorithm,
        start_after: Option<&str>,
        limit: usize,
    ) -> impl Future<Output = Result<Vec<ObjectInfo>>> + Send;

    /// Removes metadata objects (links, manifest records, referrer entries, intents); absent
    /// ones are fine. Durable when it returns; a backend may batch (S3: `DeleteObjects`, the
    /// filesystem: one directory sync per directory).
    fn remove_objects(&self, keys: &[Key]) -> impl Future<Output = Result<()>> + Send;

    /// Removes the bytes of blobs; absent ones are fine. Durable when it returns.
    fn remove_blobs(&self, digests: &[Digest]) -> impl Future<Output = Result<()>> + Send;

    /// Releases the storage of uploads that no live session owns (its id is not in `live`)
    /// and that was last written before `before`: what a crash left between creating an
    /// upload's storage and recording its session (the filesystem's data files, S3's staged
    /// segments and multipart uploads, including those a monolithic push opened on a blob's
    /// key). With `dry_run`, only counts.
    fn expire_upload_storage(
        &self,
        before: SystemTime,
        live: &HashSet<UploadId>,
        dry_run: bool,
    ) -> impl Future<Output = Result<ExpiredStorage>> + Send;

    /// Removes what the backend itself leaves behind and no object names: empty directories
    /// and temporary files older than `before` (the filesystem). Returns how many entries it
    /// removed. A backend without such leftovers does nothing.
    fn tidy(&self, before: SystemTime, dry_run: bool) -> impl Future<Output = Result<u64>> + Send;
}

/// Forwards the listed methods of [`LifecycleBackend`] to a field of the implementing type,
/// inside its `impl LifecycleBackend for …` block, like
/// [`forward_backend!`](crate::forward_backend) does for [`Backend`] (a layer over a
/// backend forwards both): `forward_lifecycle_backend!(inner: B; list_dirs, scan, ...)`.
#[macro_export]
macro_rules! forward_lifecycle_backend {
    ($field:tt : $inner:ty; $($item:ident),+ $(,)?) => {
        $( $crate::forward_lifecycle_backend!(@item $field, $inner, $item); )+
    };
    (@item $f:tt, $inner:ty, list_dirs) => {
        fn list_dirs(
            &self,
            dir: &$crate::storage::layout::Dir,
            start_after: ::std::option::Option<&str>,
            limit: usize,
        ) -> impl ::std::future::Future<
            Output = $crate::Result<::std::vec::Vec<::std::string::String>>,
        > + Send {
            <$inner as $crate::storage::lifecycle::LifecycleBackend>::list_dirs(
                &self.$f, dir, start_after, limit,
            )
        }
    };
    (@item $f:tt, $inner:ty, scan) => {
        fn scan(
            &self,
            dir: &$crate::storage::layout::Dir,
            start_after: ::std::option::Option<&str>,
            limit: usize,
        ) -> impl ::std::future::Future<
            Output = $crate::Result<::std::vec::Vec<$crate::storage::lifecycle::ObjectInfo>>,
        > + Send {
            <$inner as $crate::storage::lifecycle::LifecycleBackend>::scan(
                &self.$f, dir, start_after, limit,
            )
        }
    };
    (@item $f:tt, $inner:ty, scan_blobs) => {
        fn scan_blobs(
            &self,
            algorithm: $crate::oci::DigestAlgorithm,
            start_after: ::std::option::Option<&str>,
            limit: usize,
        ) -> impl ::std::future::Future<
            Output = $crate::Result<::std::vec::Vec<$crate::storage::lifecycle::ObjectInfo>>,
        > + Send {
            <$inner as $crate::storage::lifecycle::LifecycleBackend>::scan_blobs(
                &self.$f, algorithm, start_after, limit,
            )
        }
    };
    (@item $f:tt, $inner:ty, remove_objects) => {
        fn remove_objects(
            &self,
            keys: &[$crate::storage::layout::Key],
        ) -> impl ::std::future::Future<Output = $crate::Result<()>> + Send {
            <$inner as $crate::storage::lifecycle::LifecycleBackend>::remove_objects(&self.$f, keys)
        }
    };
    (@item $f:tt, $inner:ty, remove_blobs) => {
        fn remove_blobs(
            &self,
            digests: &[$crate::oci::Digest],
        ) -> impl ::std::future::Future<Output = $crate::Result<()>> + Send {
            <$inner as $crate::storage::lifecycle::LifecycleBackend>::remove_blobs(
                &self.$f, digests,
            )
        }
    };
    (@item $f:tt, $inner:ty, expire_upload_storage) => {
        fn expire_upload_storage(
            &self,
            before: ::std::time::SystemTime,
            live: &::std::collections::HashSet<$crate::storage::UploadId>,
            dry_run: bool,
        ) -> impl ::std::future::Future<
            Output = $crate::Result<$crate::storage::lifecycle::ExpiredStorage>,
        > + Send {
            <$inner as $crate::storage::lifecycle::LifecycleBackend>::expire_upload_storage(
                &self.$f, before, live, dry_run,
            )
        }
    };
    (@item $f:tt, $inner:ty, tidy) => {
        fn tidy(
            &self,
            before: ::std::time::SystemTime,
            dry_run: bool,
        ) -> impl ::std::future::Future<Output = $crate::Result<u64>> + Send {
            <$inner as $crate::storage::lifecycle::LifecycleBackend>::tidy(
                &self.$f, before, dry_run,
            )
        }
    };
}
