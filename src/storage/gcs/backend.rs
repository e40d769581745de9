//! [`GcsBackend`] and the [`GcsDriver`] assembled over it.

use crate::observe::metrics::RetryCounter;
use crate::storage::deadline::RequestTimeout;
use bytes::Bytes;
use futures::Stream;

use super::client::{self, Connection};
use super::config::GcsConfig;
use super::error;
use super::keys::Names;
use super::presign::Signer;
use super::reader::GcsReader;
use super::upload::{DEFAULT_PART_SIZE, GcsUploadState, SESSION_UNIT};
use crate::error::{Error, ErrorChain, Result};
use crate::oci::{ByteRange, Digest};
use crate::storage::any::ConfiguredDriver;
use crate::storage::backend::{Backend, Capabilities, ObjectVersion, SizeRange, TagTarget};
use crate::storage::layers::Resumable;
use crate::storage::layout::{self, Dir, Key, KeyClass};
use crate::storage::{Engine, EngineOptions, Observed, StorageConfig, StorageType, UploadId};

/// The GCS storage driver: the engine over the instrumented GCS backend, whose blob reads
/// resume where a dropped connection cut them ([`Resumable`]).
pub type GcsDriver = Engine<Observed<Resumable<GcsBackend>>>;

impl GcsDriver {
    /// Validates the configuration, builds the client (looking up Application Default
    /// Credentials unless `anonymous`) and checks that the bucket exists (one list
    /// request): a missing bucket is a configuration error naming `gcs.bucket`; a store that
    /// does not answer (a retryable failure) is logged and the driver opens all the same,
    /// not ready until it answers ([`StorageProbe`](crate::storage::probe::StorageProbe)). With
    /// `redirect`, blob reads are redirected to signed URLs valid `redirect_expiry_secs`
    /// ([`EngineOptions::redirect_blob_reads`]); credentials without a service-account key
    /// to sign them with are then a configuration error naming `gcs.redirect`.
    pub async fn connect(config: &GcsConfig, mut options: EngineOptions) -> Result<Self> {
        let backend = GcsBackend::connect(config).await?;
        if config.redirect {
            if backend.conn.signer.is_none() {
                return Err(Error::Config {
                    field: "gcs.redirect",
                    message: "signed URLs need a service-account key file \
                              (GOOGLE_APPLICATION_CREDENTIALS); these credentials hold none"
                        .into(),
                });
            }
            options.redirect_blob_reads = Some(config.redirect_expiry());
        }
        match crate::storage::probe::at_start(GcsBackend::NAME, backend.check_bucket()).await {
            Ok(()) => {}
            // As on S3: a store that cannot be reached now, or does not answer in time (not
            // an answer about the bucket)
            // does not stop the process; it starts not ready (`/readyz`) and serves once the
            // store answers.
            Err(e) if e.is_retryable() => tracing::warn!(
                error = %ErrorChain(&e),
                "GCS store unreachable at start: the bucket is not checked"
            ),
            Err(e) => return Err(e),
        }
        Ok(Self::from_backend(backend, options))
    }

    /// The driver over a backend built by the caller (e.g. with a smaller part size).
    pub fn from_backend(mut backend: GcsBackend, options: EngineOptions) -> Self {
        backend.retries = options.retry_counter(GcsBackend::NAME);
        Engine::new(options.instrument(Resumable::new(backend)), options)
    }
}

impl ConfiguredDriver for GcsDriver {
    const STORAGE_TYPE: StorageType = StorageType::Gcs;

    async fn open(config: &StorageConfig, options: EngineOptions) -> Result<Self> {
        let gcs = config.gcs.as_ref().ok_or(Error::Config {
            field: "gcs.bucket",
            message: "missing".into(),
        })?;
        GcsDriver::connect(gcs, options).await
    }
}

/// The GCS backend: object operations on one bucket under one prefix.
#[derive(Debug, Clone)]
pub struct GcsBackend {
    pub(super) conn: Connection,
    pub(super) bucket: String,
    pub(super) names: Names,
    pub(super) part_size: u64,
    /// The largest blob stored with one streamed media upload ([`Backend::put_blob`]);
    /// `0`: none.
    pub(super) single_put_limit: u64,
    /// How long GCS may take to answer (see [`deadline`](crate::storage::deadline)).
    pub(super) request_timeout: RequestTimeout,
    /// Counts the requests sent again (`marina_storage_retries_total`).
    pub(super) retries: RetryCounter,
}

impl GcsBackend {
    /// Validates the configuration (also that the CAs `SSL_CERT_FILE` or `SSL_CERT_DIR`
    /// name load) and builds the client; does not contact the bucket (see
    /// [`GcsDriver::connect`]).
    pub async fn connect(config: &GcsConfig) -> Result<Self> {
        config.validate()?;
        crate::storage::trusted_cas::check()?;
        Ok(Self {
            conn: client::connect(config).await?,
            bucket: config.bucket.clone(),
            names: Names::new(config.normalized_prefix()),
            part_size: DEFAULT_PART_SIZE,
            single_put_limit: config.single_put_limit(),
            request_timeout: config.request_timeout(),
            retries: RetryCounter::default(),
        })
    }

    /// Uses parts of `bytes` (rounded up to a multiple of 256 KiB, the unit of resumable
    /// sessions) instead of 8 MiB: smaller parts exercise multi-part uploads with small
    /// blobs in tests, and bound memory per upload to about two parts.
    pub fn with_part_size(mut self, bytes: u64) -> Self {
        self.part_size = bytes.max(1).div_ceil(SESSION_UNIT) * SESSION_UNIT;
        self
    }

    /// Signs blob URLs ([`PresignBlobReads`](crate::storage::presign::PresignBlobReads)) as
    /// the service account `access_id` with its private key (PEM, PKCS #8, as in a key
    /// file), instead of the key of the credentials file, if any.
    pub fn with_signing_key(
        mut self,
        access_id: impl Into<String>,
        private_key_pem: impl Into<String>,
    ) -> Self {
        self.conn.signer = Some(Signer::new(access_id.into(), private_key_pem.into()));
        self
    }

    /// Stores monolithic pushes from one part up to `bytes` with one streamed media upload
    /// instead of the configured [`GcsConfig::single_put_limit`]; `0` turns that off.
    pub fn with_single_put_limit(mut self, bytes: u64) -> Self {
        self.single_put_limit = bytes;
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

    /// Writes a manifest record once: created with `ifGenerationMatch=0`; when one exists
    /// already it is replaced if its bytes differ (the same manifest pushed with another
    /// media type), or, to refresh its time, if it was last written longer than
    /// [`RECORD_REFRESH`](crate::storage::lifecycle::RECORD_REFRESH) ago (GCS allows about
    /// one write per second to an object: a manifest pushed again and again is not written
    /// each time).
    async fn write_record(&self, object: &str, value: Bytes) -> Result<()> {
        if self.create_once(object, value.clone()).await? {
            return Ok(());
        }
        let same = matches!(self.get_bytes(object).await?, Some(existing) if existing == value);
        if same {
            let refresh = match self.updated(object).await? {
                Some(updated) => crate::storage::lifecycle::record_needs_refresh(
                    updated,
                    std::time::SystemTime::now(),
                ),
                None => true, // deleted since: stored again
            };
            if !refresh {
                return Ok(());
            }
        }
        self.put_bytes(object, value).await
    }
}

impl Backend for GcsBackend {
    const NAME: &'static str = error::DRIVER;
    type Reader = GcsReader;
    type UploadState = GcsUploadState;

    /// No chunk minimum (chunks of any size become pieces); links are written after the
    /// blob (checking a blob's existence is a round trip); monolithic pushes from one part to
    /// the single-put limit in one media upload (below one part they are one request
    /// already).
    fn capabilities(&self) -> Capabilities {
        let (min, max) = (self.part_size, self.single_put_limit);
        Capabilities::NONE
            .with_put_blob_sizes((max >= min).then_some(SizeRange { min, max }))
            .with_remote_metadata(true)
    }

    fn locate(&self, key: &Key) -> String {
        format!("gs://{}/{}", self.bucket, self.names.object(key))
    }

    async fn read(&self, key: &Key) -> Result<Option<Bytes>> {
        self.get_bytes(&self.names.object(key)).await
    }

    /// One metadata request, no body.
    async fn exists(&self, key: &Key) -> Result<bool> {
        Ok(self.size(&self.names.object(key)).await?.is_some())
    }

    /// Manifest records are content-addressed, so written once (see `write_record`);
    /// everything else is one media upload, atomic.
    async fn write(&self, key: &Key, value: Bytes) -> Result<()> {
        let object = self.names.object(key);
        match key.class() {
            KeyClass::ManifestRecord => self.write_record(&object, value).await,
            _ => self.put_bytes(&object, value).await,
        }
    }

    async fn remove(&self, key: &Key) -> Result<()> {
        self.delete(&self.names.object(key)).await
    }

    /// An upload session record comes with its generation, so that an append persisted by
    /// another process in between is detected (`ifGenerationMatch`, which GCS always
    /// honours); so does a tag, so that a manifest's delete removes it only if no push moved
    /// it meanwhile.
    async fn read_versioned(&self, key: &Key) -> Result<Option<(Bytes, Option<ObjectVersion>)>> {
        let versioned = matches!(key.class(), KeyClass::UploadState | KeyClass::Tag);
        let read = self
            .get_bytes_with_generation(&self.names.object(key))
            .await?;
        Ok(read.map(|(bytes, generation)| {
            let version = generation
                .filter(|_| versioned)
                .map(|g| ObjectVersion(g.to_string()));
            (bytes, version)
        }))
    }

    async fn write_if_version(
        &self,
        key: &Key,
        value: Bytes,
        version: &ObjectVersion,
    ) -> Result<bool> {
        let object = self.names.object(key);
        self.put_bytes_if_generation(&object, value, generation_of(version)?)
            .await
    }

    async fn remove_if_version(&self, key: &Key, version: &ObjectVersion) -> Result<bool> {
        self.delete_if_generation(&self.names.object(key), generation_of(version)?)
            .await
    }

    /// One multipart upload with `ifGenerationMatch=0`.
    async fn create_tag(&self, tag: &Key, target: TagTarget<'_>) -> Result<bool> {
        let digest = Bytes::from(target.digest.as_str().to_owned());
        self.create_once(&self.names.object(tag), digest).await
    }

    async fn list(
        &self,
        dir: &Dir,
        start_after: Option<&str>,
        limit: Option<usize>,
    ) -> Result<Vec<String>> {
        self.list_names(&self.names.dir(dir), start_after, limit)
            .await
    }

    async fn any_under(&self, dir: &Dir) -> Result<bool> {
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

    async fn put_blob<S>(&self, digest: &Digest, size: u64, body: S) -> Result<()>
    where
        S: Stream<Item = Result<Bytes>> + Send,
    {
        self.put_whole_blob(digest, size, body).await
    }

    async fn start_upload(
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

    async fn finish_upload(
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

/// The GCS generation a version this backend handed out names.
fn generation_of(version: &ObjectVersion) -> Result<i64> {
    version
        .0
        .parse()
        .map_err(|_| error::corrupt(format!("not a generation: {:?}", version.0)))
}
