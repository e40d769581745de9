//! [`forward_backend!`](crate::forward_backend): a wrapper of a [`Backend`] forwards what it
//! does not change to the backend it wraps, by name, with no `async` wrapper in between (the
//! inner backend's future is returned as is, so forwarding costs nothing).
//!
//! Why a macro listing the forwarded items, and not a trait with an `inner()` and default
//! methods that forward: defaults would have to be written once per method anyway, and a
//! wrapper relying on them could not tell a default that forwards from one that does
//! something else. Here every item of the trait is either written by the wrapper or named in
//! its `forward_backend!` list, and two checks keep it that way when the trait grows:
//!
//! - a required item (method, constant, type) the wrapper neither writes nor forwards fails
//!   to compile;
//! - a *provided* method (one with a default, like [`Backend::exists`]) it forgets would
//!   silently run the default instead of the inner backend's version (for the filesystem,
//!   an `lstat` replaced by a whole read), so every wrapper impl carries
//!   `#[deny(clippy::missing_trait_methods)]`, which CI's clippy (`-D warnings`) enforces.
//!
//! [`Backend`]: crate::storage::backend::Backend
//! [`Backend::exists`]: crate::storage::backend::Backend::exists

/// Forwards the listed items of [`Backend`](crate::storage::backend::Backend) to a field of
/// the implementing type, inside its `impl Backend for …` block.
///
/// ```
/// use marina_distribution::Result;
/// use marina_distribution::storage::backend::Backend;
/// use marina_distribution::storage::layout::Dir;
///
/// /// Lists every directory upside down.
/// struct Upside<B>(B);
///
/// #[deny(clippy::missing_trait_methods)]
/// impl<B: Backend> Backend for Upside<B> {
///     marina_distribution::forward_backend!(0: B;
///         NAME, Reader, UploadState, capabilities, locate, read, exists, write,
///         stage_record, remove, read_versioned, write_if_version, remove_if_version,
///         any_under, write_tag, create_tag, blob_size, read_blob, put_blob, start_upload, append_upload,
///         finish_upload, abort_upload, lock_upload, lock_tag);
///
///     async fn list(
///         &self,
///         dir: &Dir,
///         start_after: Option<&str>,
///         limit: Option<usize>,
///     ) -> Result<Vec<String>> {
///         let mut names = self.0.list(dir, start_after, limit).await?;
///         names.reverse();
///         Ok(names)
///     }
/// }
/// ```
///
/// The first argument names the field holding the inner backend (`inner`, or `0` in a tuple
/// struct) and its type; the list names the items forwarded: `NAME`, `Reader`,
/// `UploadState` and any method. Forwarding the upload methods or `read_blob` requires
/// forwarding `UploadState` or `Reader` too.
#[macro_export]
macro_rules! forward_backend {
    ($field:tt : $inner:ty; $($item:ident),+ $(,)?) => {
        $( $crate::forward_backend!(@item $field, $inner, $item); )+
    };
    (@item $f:tt, $inner:ty, NAME) => {
        const NAME: &'static str = <$inner as $crate::storage::backend::Backend>::NAME;
    };
    (@item $f:tt, $inner:ty, Reader) => {
        type Reader = <$inner as $crate::storage::backend::Backend>::Reader;
    };
    (@item $f:tt, $inner:ty, UploadState) => {
        type UploadState = <$inner as $crate::storage::backend::Backend>::UploadState;
    };
    (@item $f:tt, $inner:ty, capabilities) => {
        fn capabilities(&self) -> $crate::storage::backend::Capabilities {
            <$inner as $crate::storage::backend::Backend>::capabilities(&self.$f)
        }
    };
    (@item $f:tt, $inner:ty, locate) => {
        fn locate(&self, key: &$crate::storage::layout::Key) -> ::std::string::String {
            <$inner as $crate::storage::backend::Backend>::locate(&self.$f, key)
        }
    };
    (@item $f:tt, $inner:ty, read) => {
        fn read(
            &self,
            key: &$crate::storage::layout::Key,
        ) -> impl ::std::future::Future<
            Output = $crate::Result<::std::option::Option<$crate::storage::layers::Bytes>>,
        > + Send {
            <$inner as $crate::storage::backend::Backend>::read(&self.$f, key)
        }
    };
    (@item $f:tt, $inner:ty, exists) => {
        fn exists(
            &self,
            key: &$crate::storage::layout::Key,
        ) -> impl ::std::future::Future<Output = $crate::Result<bool>> + Send {
            <$inner as $crate::storage::backend::Backend>::exists(&self.$f, key)
        }
    };
    (@item $f:tt, $inner:ty, write) => {
        fn write(
            &self,
            key: &$crate::storage::layout::Key,
            value: $crate::storage::layers::Bytes,
        ) -> impl ::std::future::Future<Output = $crate::Result<()>> + Send {
            <$inner as $crate::storage::backend::Backend>::write(&self.$f, key, value)
        }
    };
    (@item $f:tt, $inner:ty, stage_record) => {
        fn stage_record(
            &self,
            key: &$crate::storage::layout::Key,
            value: $crate::storage::layers::Bytes,
        ) -> impl ::std::future::Future<Output = $crate::Result<()>> + Send {
            <$inner as $crate::storage::backend::Backend>::stage_record(&self.$f, key, value)
        }
    };
    (@item $f:tt, $inner:ty, remove) => {
        fn remove(
            &self,
            key: &$crate::storage::layout::Key,
        ) -> impl ::std::future::Future<Output = $crate::Result<()>> + Send {
            <$inner as $crate::storage::backend::Backend>::remove(&self.$f, key)
        }
    };
    (@item $f:tt, $inner:ty, read_versioned) => {
        fn read_versioned(
            &self,
            key: &$crate::storage::layout::Key,
        ) -> impl ::std::future::Future<
            Output = $crate::Result<
                ::std::option::Option<(
                    $crate::storage::layers::Bytes,
                    ::std::option::Option<$crate::storage::backend::ObjectVersion>,
                )>,
            >,
        > + Send {
            <$inner as $crate::storage::backend::Backend>::read_versioned(&self.$f, key)
        }
    };
    (@item $f:tt, $inner:ty, write_if_version) => {
        fn write_if_version(
            &self,
            key: &$crate::storage::layout::Key,
            value: $crate::storage::layers::Bytes,
            version: &$crate::storage::backend::ObjectVersion,
        ) -> impl ::std::future::Future<Output = $crate::Result<bool>> + Send {
            <$inner as $crate::storage::backend::Backend>::write_if_version(
                &self.$f, key, value, version,
            )
        }
    };
    (@item $f:tt, $inner:ty, remove_if_version) => {
        fn remove_if_version(
            &self,
            key: &$crate::storage::layout::Key,
            version: &$crate::storage::backend::ObjectVersion,
        ) -> impl ::std::future::Future<Output = $crate::Result<bool>> + Send {
            <$inner as $crate::storage::backend::Backend>::remove_if_version(&self.$f, key, version)
        }
    };
    (@item $f:tt, $inner:ty, list) => {
        fn list(
            &self,
            dir: &$crate::storage::layout::Dir,
            start_after: ::std::option::Option<&str>,
            limit: ::std::option::Option<usize>,
        ) -> impl ::std::future::Future<
            Output = $crate::Result<::std::vec::Vec<::std::string::String>>,
        > + Send {
            <$inner as $crate::storage::backend::Backend>::list(&self.$f, dir, start_after, limit)
        }
    };
    (@item $f:tt, $inner:ty, any_under) => {
        fn any_under(
            &self,
            dir: &$crate::storage::layout::Dir,
        ) -> impl ::std::future::Future<Output = $crate::Result<bool>> + Send {
            <$inner as $crate::storage::backend::Backend>::any_under(&self.$f, dir)
        }
    };
    (@item $f:tt, $inner:ty, write_tag) => {
        fn write_tag(
            &self,
            tag: &$crate::storage::layout::Key,
            target: $crate::storage::backend::TagTarget<'_>,
        ) -> impl ::std::future::Future<Output = $crate::Result<()>> + Send {
            <$inner as $crate::storage::backend::Backend>::write_tag(&self.$f, tag, target)
        }
    };
    (@item $f:tt, $inner:ty, create_tag) => {
        fn create_tag(
            &self,
            tag: &$crate::storage::layout::Key,
            target: $crate::storage::backend::TagTarget<'_>,
        ) -> impl ::std::future::Future<Output = $crate::Result<bool>> + Send {
            <$inner as $crate::storage::backend::Backend>::create_tag(&self.$f, tag, target)
        }
    };
    (@item $f:tt, $inner:ty, blob_size) => {
        fn blob_size(
            &self,
            digest: &$crate::oci::Digest,
        ) -> impl ::std::future::Future<Output = $crate::Result<::std::option::Option<u64>>>
        + Send {
            <$inner as $crate::storage::backend::Backend>::blob_size(&self.$f, digest)
        }
    };
    (@item $f:tt, $inner:ty, read_blob) => {
        fn read_blob(
            &self,
            digest: &$crate::oci::Digest,
            range: ::std::option::Option<$crate::oci::ByteRange>,
        ) -> impl ::std::future::Future<Output = $crate::Result<Self::Reader>> + Send {
            <$inner as $crate::storage::backend::Backend>::read_blob(&self.$f, digest, range)
        }
    };
    (@item $f:tt, $inner:ty, start_upload) => {
        fn start_upload(
            &self,
            id: &$crate::storage::UploadId,
            target: ::std::option::Option<&$crate::oci::Digest>,
        ) -> impl ::std::future::Future<Output = $crate::Result<Self::UploadState>> + Send {
            <$inner as $crate::storage::backend::Backend>::start_upload(&self.$f, id, target)
        }
    };
    (@item $f:tt, $inner:ty, put_blob) => {
        fn put_blob<S>(
            &self,
            digest: &$crate::oci::Digest,
            size: u64,
            body: S,
        ) -> impl ::std::future::Future<Output = $crate::Result<()>> + Send
        where
            S: ::futures::Stream<Item = $crate::Result<$crate::storage::layers::Bytes>> + Send,
        {
            <$inner as $crate::storage::backend::Backend>::put_blob(&self.$f, digest, size, body)
        }
    };
    (@item $f:tt, $inner:ty, append_upload) => {
        fn append_upload<S>(
            &self,
            id: &$crate::storage::UploadId,
            state: &mut Self::UploadState,
            offset: u64,
            body: S,
        ) -> impl ::std::future::Future<Output = $crate::Result<u64>> + Send
        where
            S: $crate::storage::layers::Stream<Item = $crate::Result<$crate::storage::layers::Bytes>>
                + Send,
        {
            <$inner as $crate::storage::backend::Backend>::append_upload(
                &self.$f, id, state, offset, body,
            )
        }
    };
    (@item $f:tt, $inner:ty, finish_upload) => {
        fn finish_upload(
            &self,
            id: &$crate::storage::UploadId,
            state: Self::UploadState,
            size: u64,
            digest: &$crate::oci::Digest,
        ) -> impl ::std::future::Future<Output = $crate::Result<()>> + Send {
            <$inner as $crate::storage::backend::Backend>::finish_upload(
                &self.$f, id, state, size, digest,
            )
        }
    };
    (@item $f:tt, $inner:ty, lock_upload) => {
        fn lock_upload(
            &self,
            id: &$crate::storage::UploadId,
        ) -> impl ::std::future::Future<
            Output = $crate::Result<$crate::storage::session_lock::UploadLease>,
        > + Send {
            <$inner as $crate::storage::backend::Backend>::lock_upload(&self.$f, id)
        }
    };
    (@item $f:tt, $inner:ty, lock_tag) => {
        fn lock_tag(
            &self,
            key: &$crate::storage::layout::Key,
        ) -> impl ::std::future::Future<
            Output = $crate::Result<$crate::storage::session_lock::TagLease>,
        > + Send {
            <$inner as $crate::storage::backend::Backend>::lock_tag(&self.$f, key)
        }
    };
    (@item $f:tt, $inner:ty, abort_upload) => {
        fn abort_upload(
            &self,
            id: &$crate::storage::UploadId,
            state: Self::UploadState,
        ) -> impl ::std::future::Future<Output = $crate::Result<()>> + Send {
            <$inner as $crate::storage::backend::Backend>::abort_upload(&self.$f, id, state)
        }
    };
}
