//! The GCS driver (`type = "gcs"`, feature `gcs`): the shared
//! [`Engine`](crate::storage::Engine) over [`GcsBackend`], on Google Cloud Storage through its
//! JSON API (client crate `gcloud-storage`; why that one: `docs/gcs.md`).
//!
//! Modules: [`config`] (settings, compiled without the feature too), `client` (client and
//! credentials), `keys` (layout key → object name), `objects` (plain object operations),
//! [`reader`] (streamed blob reads), `parts` (a body cut into parts), [`upload`] (uploads and
//! their persisted state), `error` (GCS errors → crate errors).
//!
//! # Objects
//!
//! Everything lives below the configured prefix, in the tree of
//! [`layout`](crate::storage::layout). Metadata objects (links, tags, referrer entries, upload
//! states) are whole objects written with one media upload (atomic); manifest records are
//! write-once: created with `ifGenerationMatch=0`, and replaced only when a push changes
//! them (the same bytes with another media type). Listings use the delimiter `/`,
//! `startOffset` for the first name after `last`, and page tokens. Blob reads are one media
//! download (with `Range` for ranged reads) whose body is streamed straight to the caller.
//!
//! # Uploads
//!
//! The state of an upload is [`GcsUploadState`], persisted by the engine in the bucket, so
//! any process sharing the bucket and prefix can continue it.
//!
//! - **Monolithic pushes** (`put_content`, digest known up front) are written in place: the
//!   body is cut into parts (8 MiB); every part but the last goes, as it arrives, to a
//!   resumable upload session on the blob's own object, opened (`ifGenerationMatch=0`) only
//!   when a second part follows the first; the last part is held in memory until the engine
//!   has verified the digest, and is the session's final chunk. The blob becomes visible only
//!   then. A blob below one part is one conditional create at commit. No copy, no staging.
//! - **Chunked uploads** do not know the digest until the end. Each append cuts its body into
//!   pieces of at most one part and writes each as a new object
//!   `uploads/<id>/part-<end offset>-<random>` (one written while the next is received), so
//!   chunks of any size (1 byte, or a body of unknown length) and any number of them work,
//!   and a failed append never touches an object the persisted state refers to. When 32
//!   pieces of one level accumulate, they are composed into one piece of the next level, so
//!   an upload keeps at most about `31 × log32(n)` pieces. Commit composes the pieces (at
//!   most 32, after a final reduction) straight into the blob's object with
//!   `ifGenerationMatch=0`: no byte passes through the registry again and no copy is made.
//!   Superseded pieces are deleted by the next append (once the state that supersedes them
//!   is persisted), the rest at commit or abort, with every object below `uploads/<id>/`.
//! - Memory per upload: one part being received plus one being written (16 MiB).
//!
//! # Errors
//!
//! See `error`: missing objects become `None`/"unknown" errors, 408, 429, 5xx and
//! connection failures become retryable backend errors (HTTP 503), everything else a backend
//! error whose message names the operation and the key relative to the prefix.

pub mod config;

#[cfg(feature = "gcs")]
mod client;
#[cfg(feature = "gcs")]
mod error;
#[cfg(feature = "gcs")]
mod keys;
#[cfg(feature = "gcs")]
mod objects;
#[cfg(feature = "gcs")]
mod parts;
#[cfg(feature = "gcs")]
pub mod reader;
#[cfg(feature = "gcs")]
pub mod upload;

#[cfg(feature = "gcs")]
pub use backend::{GcsBackend, GcsDriver};
pub use config::GcsConfig;
#[cfg(feature = "gcs")]
pub use reader::GcsReader;
#[cfg(feature = "gcs")]
pub use upload::{GcsUploadState, Piece, PieceName};

#[cfg(feature = "gcs")]
mod backend {
    use bytes::Bytes;
    use futures::Stream;

    use super::client::{self, Connection};
    use super::config::GcsConfig;
    use super::error;
    use super::keys::Names;
    use super::reader::GcsReader;
    use super::upload::{DEFAULT_PART_SIZE, GcsUploadState, SESSION_UNIT};
    use crate::error::{Error, Result};
    use crate::oci::{ByteRange, Digest};
    use crate::storage::backend::Backend;
    use crate::storage::layout::{self, Key};
    use crate::storage::{Engine, EngineOptions, UploadId};

    /// The GCS storage driver.
    pub type GcsDriver = Engine<GcsBackend>;

    impl GcsDriver {
        /// Validates the configuration, builds the client (looking up Application Default
        /// Credentials unless `anonymous`) and checks that the bucket exists (one list
        /// request): a missing bucket is a configuration error naming `gcs.bucket`.
        pub async fn connect(config: &GcsConfig, options: EngineOptions) -> Result<Self> {
            let backend = GcsBackend::connect(config).await?;
            backend.check_bucket().await?;
            Ok(Engine::new(backend, options))
        }
    }

    /// The GCS backend: object operations on one bucket under one prefix.
    #[derive(Debug, Clone)]
    pub struct GcsBackend {
        pub(super) conn: Connection,
        pub(super) bucket: String,
        pub(super) names: Names,
        pub(super) part_size: u64,
    }

    impl GcsBackend {
        /// Validates the configuration and builds the client; does not contact the bucket
        /// (see [`GcsDriver::connect`]).
        pub async fn connect(config: &GcsConfig) -> Result<Self> {
            config.validate()?;
            Ok(Self {
                conn: client::connect(config).await?,
                bucket: config.bucket.clone(),
                names: Names::new(config.normalized_prefix()),
                part_size: DEFAULT_PART_SIZE,
            })
        }

        /// Uses parts of `bytes` (rounded up to a multiple of 256 KiB, the unit of resumable
        /// sessions) instead of 8 MiB: smaller parts exercise multi-part uploads with small
        /// blobs in tests, and bound memory per upload to about two parts.
        pub fn with_part_size(mut self, bytes: u64) -> Self {
            self.part_size = bytes.max(1).div_ceil(SESSION_UNIT) * SESSION_UNIT;
            self
        }

        /// The part size.
        pub fn part_size(&self) -> u64 {
            self.part_size
        }

        /// The bucket.
        pub fn bucket(&self) -> &str {
            &self.bucket
        }

        /// The normalised key prefix (`""` or ending in `/`) everything is stored under.
        pub fn object_prefix(&self) -> &str {
            self.names.prefix()
        }

        /// The object name of a layout key (prefix included).
        pub fn object_name(&self, key: &Key) -> String {
            self.names.object(key)
        }
    }

    impl Backend for GcsBackend {
        const NAME: &'static str = error::DRIVER;
        type Reader = GcsReader;
        type UploadState = GcsUploadState;

        fn locate(&self, key: &Key) -> String {
            format!("gs://{}/{}", self.bucket, self.names.object(key))
        }

        async fn read(&self, key: &Key) -> Result<Option<Bytes>> {
            self.get_bytes(&self.names.object(key)).await
        }

        async fn exists(&self, key: &Key) -> Result<bool> {
            Ok(self.size(&self.names.object(key)).await?.is_some())
        }

        async fn write(&self, key: &Key, value: Bytes) -> Result<()> {
            self.put_bytes(&self.names.object(key), value).await
        }

        /// Manifest records are content-addressed: created once (`ifGenerationMatch=0`);
        /// when one exists already it is replaced only if its bytes differ (a push of the
        /// same manifest with another media type).
        async fn write_verified(&self, key: &Key, value: Bytes) -> Result<()> {
            let object = self.names.object(key);
            if self.create_once(&object, value.clone()).await? {
                return Ok(());
            }
            match self.get_bytes(&object).await? {
                Some(existing) if existing == value => Ok(()),
                _ => self.put_bytes(&object, value).await,
            }
        }

        async fn remove(&self, key: &Key) -> Result<()> {
            self.delete(&self.names.object(key)).await
        }

        async fn list(
            &self,
            dir: &Key,
            start_after: Option<&str>,
            limit: Option<usize>,
        ) -> Result<Vec<String>> {
            self.list_names(&self.names.dir(dir), start_after, limit)
                .await
        }

        async fn any_under(&self, dir: &Key) -> Result<bool> {
            self.any_below(&self.names.dir(dir)).await
        }

        async fn blob_size(&self, digest: &Digest) -> Result<Option<u64>> {
            self.size(&self.names.object(&layout::blob_data(digest)))
                .await
        }

        async fn read_blob(&self, digest: &Digest, range: Option<ByteRange>) -> Result<GcsReader> {
            self.get_stream(&self.names.object(&layout::blob_data(digest)), range)
                .await?
                .ok_or_else(|| Error::BlobUnknown(digest.clone()))
        }

        async fn create_upload(
            &self,
            _id: &UploadId,
            target: Option<&Digest>,
        ) -> Result<GcsUploadState> {
            Ok(self.create(target))
        }

        async fn append_upload<S>(
            &self,
            id: &UploadId,
            state: &mut GcsUploadState,
            offset: u64,
            body: S,
        ) -> Result<u64>
        where
            S: Stream<Item = Result<Bytes>> + Send,
        {
            self.append(id, state, offset, body).await
        }

        async fn commit_upload(
            &self,
            id: &UploadId,
            state: GcsUploadState,
            size: u64,
            digest: &Digest,
        ) -> Result<()> {
            self.commit(id, state, size, digest).await
        }

        async fn abort_upload(&self, id: &UploadId, state: GcsUploadState) -> Result<()> {
            self.release(id, &state).await
        }
    }
}
