//! What the layers that run every call of their inner backend through one method of theirs
//! share ([`Instrumented`](super::Instrumented), `FaultInjection`): the [`Subject`] of a call
//! and [`wrap_calls!`], which writes each such method once for all of them.
//!
//! A wrapping layer is a struct with the inner backend in a field `inner` and a method
//!
//! ```text
//! async fn run<T>(
//!     &self,
//!     op: Operation,
//!     subject: Subject<'_>,
//!     call: impl Future<Output = Result<T>>,
//! ) -> Result<T>
//! ```
//!
//! that awaits `call` (the inner backend's operation `op`, about `subject`) with what the
//! layer adds around it. `wrap_calls!(read, exists, ...)` inside its `impl Backend` (or
//! `LifecycleBackend`, `PresignBlobReads`) block writes each listed method as that `run`
//! around the inner backend's same method, with the operation and subject every layer gives
//! it; what a layer does differently (its blob stream, say) it writes itself. Like
//! [`forward_backend!`](crate::forward_backend), the list is checked by the compiler (a
//! required method neither listed nor written) and by `#[deny(clippy::missing_trait_methods)]`
//! on the impl (a provided one).

use crate::oci::Digest;
use crate::storage::UploadId;
use crate::storage::layout::{self, Dir, Key, KeyClass};

/// What a call is about: the key an error names, and the class of keys a call touches.
#[derive(Clone, Copy)]
pub(super) enum Subject<'a> {
    Key(&'a Key),
    Dir(&'a Dir),
    Blob(&'a Digest),
    Upload(&'a UploadId),
    /// Many keys, or none, of one class (or of several: `None`).
    Class(Option<KeyClass>),
}

impl Subject<'_> {
    /// The key an error of the call names, if the call is about one.
    pub(super) fn key(self) -> Option<Key> {
        Some(match self {
            Self::Key(key) => key.clone(),
            Self::Dir(dir) => dir.key().clone(),
            Self::Blob(digest) => layout::blob_data(digest),
            Self::Upload(id) => layout::upload_data(id),
            Self::Class(_) => return None,
        })
    }

    /// The class of the keys the call touches, if one.
    pub(super) fn class(self) -> Option<KeyClass> {
        Some(match self {
            Self::Key(key) => key.class(),
            Self::Dir(dir) => dir.key().class(),
            Self::Blob(_) => KeyClass::Blob,
            Self::Upload(_) => KeyClass::UploadData,
            Self::Class(class) => return class,
        })
    }

    /// Records the subject as the `key` field of `span`.
    pub(super) fn record(self, span: &tracing::Span) {
        match self {
            Self::Key(key) => span.record("key", key.as_str()),
            Self::Dir(dir) => span.record("key", dir.as_str()),
            Self::Blob(digest) => span.record("key", digest.as_str()),
            Self::Upload(id) => span.record("key", id.as_str()),
            Self::Class(_) => return,
        };
    }
}

/// Writes the listed methods of a wrapping layer (see the module documentation) as its `run`
/// around the same method of `self.inner`. `Operation` and [`Subject`] must be in scope.
macro_rules! wrap_calls {
    ($($method:ident),+ $(,)?) => {
        $( $crate::storage::layers::wrap::wrap_calls!(@method $method); )+
    };
    // Backend.
    (@method read) => {
        async fn read(
            &self,
            key: &$crate::storage::layout::Key,
        ) -> $crate::Result<::std::option::Option<::bytes::Bytes>> {
            let call = self.inner.read(key);
            self.run(Operation::Read, Subject::Key(key), call).await
        }
    };
    (@method exists) => {
        async fn exists(&self, key: &$crate::storage::layout::Key) -> $crate::Result<bool> {
            let call = self.inner.exists(key);
            self.run(Operation::Exists, Subject::Key(key), call).await
        }
    };
    (@method write) => {
        async fn write(
            &self,
            key: &$crate::storage::layout::Key,
            value: ::bytes::Bytes,
        ) -> $crate::Result<()> {
            let call = self.inner.write(key, value);
            self.run(Operation::Write, Subject::Key(key), call).await
        }
    };
    (@method stage_record) => {
        async fn stage_record(
            &self,
            key: &$crate::storage::layout::Key,
            value: ::bytes::Bytes,
        ) -> $crate::Result<()> {
            let call = self.inner.stage_record(key, value);
            self.run(Operation::Write, Subject::Key(key), call).await
        }
    };
    (@method remove) => {
        async fn remove(&self, key: &$crate::storage::layout::Key) -> $crate::Result<()> {
            let call = self.inner.remove(key);
            self.run(Operation::Remove, Subject::Key(key), call).await
        }
    };
    (@method read_versioned) => {
        async fn read_versioned(
            &self,
            key: &$crate::storage::layout::Key,
        ) -> $crate::Result<
            ::std::option::Option<(
                ::bytes::Bytes,
                ::std::option::Option<$crate::storage::backend::ObjectVersion>,
            )>,
        > {
            let call = self.inner.read_versioned(key);
            self.run(Operation::Read, Subject::Key(key), call).await
        }
    };
    (@method write_if_version) => {
        async fn write_if_version(
            &self,
            key: &$crate::storage::layout::Key,
            value: ::bytes::Bytes,
            version: &$crate::storage::backend::ObjectVersion,
        ) -> $crate::Result<bool> {
            let call = self.inner.write_if_version(key, value, version);
            self.run(Operation::Write, Subject::Key(key), call).await
        }
    };
    (@method remove_if_version) => {
        async fn remove_if_version(
            &self,
            key: &$crate::storage::layout::Key,
            version: &$crate::storage::backend::ObjectVersion,
        ) -> $crate::Result<bool> {
            let call = self.inner.remove_if_version(key, version);
            self.run(Operation::Remove, Subject::Key(key), call).await
        }
    };
    (@method list) => {
        async fn list(
            &self,
            dir: &$crate::storage::layout::Dir,
            start_after: ::std::option::Option<&str>,
            limit: ::std::option::Option<usize>,
        ) -> $crate::Result<::std::vec::Vec<::std::string::String>> {
            let call = self.inner.list(dir, start_after, limit);
            self.run(Operation::List, Subject::Dir(dir), call).await
        }
    };
    (@method any_under) => {
        async fn any_under(&self, dir: &$crate::storage::layout::Dir) -> $crate::Result<bool> {
            let call = self.inner.any_under(dir);
            self.run(Operation::AnyUnder, Subject::Dir(dir), call).await
        }
    };
    (@method write_tag) => {
        async fn write_tag(
            &self,
            tag: &$crate::storage::layout::Key,
            target: $crate::storage::backend::TagTarget<'_>,
        ) -> $crate::Result<()> {
            let call = self.inner.write_tag(tag, target);
            self.run(Operation::WriteTag, Subject::Key(tag), call).await
        }
    };
    (@method create_tag) => {
        async fn create_tag(
            &self,
            tag: &$crate::storage::layout::Key,
            target: $crate::storage::backend::TagTarget<'_>,
        ) -> $crate::Result<bool> {
            let call = self.inner.create_tag(tag, target);
            self.run(Operation::WriteTag, Subject::Key(tag), call).await
        }
    };
    (@method blob_size) => {
        async fn blob_size(
            &self,
            digest: &$crate::oci::Digest,
        ) -> $crate::Result<::std::option::Option<u64>> {
            let call = self.inner.blob_size(digest);
            self.run(Operation::BlobSize, Subject::Blob(digest), call).await
        }
    };
    (@method put_blob) => {
        async fn put_blob<S>(
            &self,
            digest: &$crate::oci::Digest,
            size: u64,
            body: S,
        ) -> $crate::Result<()>
        where
            S: ::futures::Stream<Item = $crate::Result<::bytes::Bytes>> + Send,
        {
            let call = self.inner.put_blob(digest, size, body);
            self.run(Operation::PutBlob, Subject::Blob(digest), call).await
        }
    };
    (@method start_upload) => {
        async fn start_upload(
            &self,
            id: &$crate::storage::UploadId,
            target: ::std::option::Option<&$crate::oci::Digest>,
        ) -> $crate::Result<Self::UploadState> {
            let call = self.inner.start_upload(id, target);
            self.run(Operation::StartUpload, Subject::Upload(id), call).await
        }
    };
    (@method append_upload) => {
        async fn append_upload<S>(
            &self,
            id: &$crate::storage::UploadId,
            state: &mut Self::UploadState,
            offset: u64,
            body: S,
        ) -> $crate::Result<u64>
        where
            S: ::futures::Stream<Item = $crate::Result<::bytes::Bytes>> + Send,
        {
            let call = self.inner.append_upload(id, state, offset, body);
            self.run(Operation::AppendUpload, Subject::Upload(id), call).await
        }
    };
    (@method finish_upload) => {
        async fn finish_upload(
            &self,
            id: &$crate::storage::UploadId,
            state: Self::UploadState,
            size: u64,
            digest: &$crate::oci::Digest,
        ) -> $crate::Result<()> {
            let call = self.inner.finish_upload(id, state, size, digest);
            self.run(Operation::FinishUpload, Subject::Blob(digest), call).await
        }
    };
    (@method abort_upload) => {
        async fn abort_upload(
            &self,
            id: &$crate::storage::UploadId,
            state: Self::UploadState,
        ) -> $crate::Result<()> {
            let call = self.inner.abort_upload(id, state);
            self.run(Operation::AbortUpload, Subject::Upload(id), call).await
        }
    };
    // PresignBlobReads.
    (@method presign_read_blob) => {
        async fn presign_read_blob(
            &self,
            digest: &$crate::oci::Digest,
            expires_in: ::std::time::Duration,
        ) -> $crate::Result<$crate::storage::presign::PresignedRead> {
            let call = self.inner.presign_read_blob(digest, expires_in);
            self.run(Operation::PresignReadBlob, Subject::Blob(digest), call).await
        }
    };
    // LifecycleBackend.
    (@method list_dirs) => {
        async fn list_dirs(
            &self,
            dir: &$crate::storage::layout::Dir,
            start_after: ::std::option::Option<&str>,
            limit: usize,
        ) -> $crate::Result<::std::vec::Vec<::std::string::String>> {
            let call = self.inner.list_dirs(dir, start_after, limit);
            self.run(Operation::ListDirs, Subject::Dir(dir), call).await
        }
    };
    (@method scan) => {
        async fn scan(
            &self,
            dir: &$crate::storage::layout::Dir,
            start_after: ::std::option::Option<&str>,
            limit: usize,
        ) -> $crate::Result<::std::vec::Vec<$crate::storage::lifecycle::ObjectInfo>> {
            let call = self.inner.scan(dir, start_after, limit);
            self.run(Operation::Scan, Subject::Dir(dir), call).await
        }
    };
    (@method scan_blobs) => {
        async fn scan_blobs(
            &self,
            algorithm: $crate::oci::DigestAlgorithm,
            start_after: ::std::option::Option<&str>,
            limit: usize,
        ) -> $crate::Result<::std::vec::Vec<$crate::storage::lifecycle::ObjectInfo>> {
            let call = self.inner.scan_blobs(algorithm, start_after, limit);
            let subject = Subject::Class(Some($crate::storage::layout::KeyClass::Blob));
            self.run(Operation::ScanBlobs, subject, call).await
        }
    };
    (@method remove_blobs) => {
        async fn remove_blobs(&self, digests: &[$crate::oci::Digest]) -> $crate::Result<()> {
            let call = self.inner.remove_blobs(digests);
            let subject = match digests {
                [digest] => Subject::Blob(digest),
                _ => Subject::Class(Some($crate::storage::layout::KeyClass::Blob)),
            };
            self.run(Operation::RemoveBlobs, subject, call).await
        }
    };
    (@method expire_upload_storage) => {
        async fn expire_upload_storage(
            &self,
            before: ::std::time::SystemTime,
            live: &::std::collections::HashSet<$crate::storage::UploadId>,
            dry_run: bool,
        ) -> $crate::Result<$crate::storage::lifecycle::ExpiredStorage> {
            let call = self.inner.expire_upload_storage(before, live, dry_run);
            let subject = Subject::Class(Some($crate::storage::layout::KeyClass::UploadData));
            self.run(Operation::ExpireUploadStorage, subject, call).await
        }
    };
    (@method tidy) => {
        async fn tidy(
            &self,
            before: ::std::time::SystemTime,
            dry_run: bool,
        ) -> $crate::Result<u64> {
            let call = self.inner.tidy(before, dry_run);
            self.run(Operation::Tidy, Subject::Class(None), call).await
        }
    };
}
pub(super) use wrap_calls;
