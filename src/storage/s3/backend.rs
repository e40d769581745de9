//! [`S3Backend`] and the [`S3Driver`] assembled over it.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use aws_sdk_s3::presigning::PresigningConfig;
use bytes::Bytes;
use futures::Stream;
use tokio::sync::OnceCell;

use crate::error::{Error, ErrorChain, Result};
use crate::oci::{ByteRange, Digest};
use crate::storage::any::ConfiguredDriver;
use crate::storage::backend::{Backend, Capabilities, ObjectVersion, SizeRange, TagTarget};
use crate::storage::layers::Resumable;
use crate::storage::layout::{self, Dir, Key, KeyClass};
use crate::storage::presign::{PresignBlobReads, PresignedRead};
use crate::storage::{
    Engine, EngineOptions, Observed, S3ChecksumPolicy, S3Config, StorageConfig, StorageType,
    UploadId,
};

use super::reader::S3Reader;
use super::upload::S3UploadState;
use super::{client, error, keys, upload};
use crate::observe::metrics::RetryCounter;
use crate::storage::deadline::RequestTimeout;

/// The S3 storage driver: the engine over the instrumented S3 backend, whose blob reads
/// resume where a dropped connection cut them ([`Resumable`]).
pub type S3Driver = Engine<Observed<Resumable<S3Backend>>>;

impl S3Driver {
    /// Validates the configuration, builds the client (credentials from the AWS SDK default
    /// chain) and checks the bucket ([`S3Backend::check_bucket`]): a missing bucket is a
    /// configuration error here, not "blob unknown" on the first request. With `redirect`,
    /// blob reads are redirected to presigned URLs valid `redirect_expiry_secs`
    /// ([`EngineOptions::redirect_blob_reads`]).
    pub async fn connect(config: &S3Config, mut options: EngineOptions) -> Result<Self> {
        if config.redirect {
            options.redirect_blob_reads = Some(config.redirect_expiry());
        }
        let backend = S3Backend::connect(config).await?;
        if !options.immutable_tags.is_empty() && backend.conditional_writes.get() == Some(&false) {
            tracing::warn!(
                bucket = %backend.bucket,
                "immutable tags without conditional writes: two processes creating the same \
                 tag at the same moment may both succeed, the later write winning"
            );
        }
        Ok(Self::from_backend(backend, options))
    }

    /// The driver over a backend built by the caller ([`S3Backend::connect_with`]).
    pub fn from_backend(backend: S3Backend, options: EngineOptions) -> Self {
        let backend = backend.counting_retries(options.retry_counter(S3Backend::NAME));
        Engine::new(options.instrument(Resumable::new(backend)), options)
    }
}

impl ConfiguredDriver for S3Driver {
    const STORAGE_TYPE: StorageType = StorageType::S3;

    async fn open(config: &StorageConfig, options: EngineOptions) -> Result<Self> {
        let s3 = config.s3.as_ref().ok_or(Error::Config {
            field: "s3.bucket",
            message: "missing".into(),
        })?;
        S3Driver::connect(s3, options).await
    }
}

/// The S3 backend: object operations on one bucket under one prefix.
#[derive(Debug, Clone)]
pub struct S3Backend {
    pub(super) client: aws_sdk_s3::Client,
    pub(super) bucket: String,
    pub(super) keys: keys::KeyMap,
    pub(super) part_size: u64,
    pub(super) equal_parts: bool,
    pub(super) part_checksums: bool,
    /// Whether large request bodies are hashed into their SigV4 signature; see
    /// [`client::signs_payloads`].
    pub(super) sign_payloads: bool,
    pub(super) copy_object_limit: u64,
    pub(super) copy_part_size: u64,
    /// Whether upload session records are written with `If-Match` (see
    /// [`conditional`](super::conditional)): configured, detected at start, or, when the
    /// store could not be reached then, detected when a session record is first read.
    pub(super) conditional_writes: Arc<OnceCell<bool>>,
    /// A client on `public_endpoint` (the store as clients reach it), to presign for.
    pub(super) presign_client: Option<aws_sdk_s3::Client>,
    /// Blob sizes stored with one streamed `PutObject` ([`put_blob`](super::put_blob)).
    pub(super) single_put_sizes: Option<SizeRange>,
    /// How long the store may take to answer (see [`super::client`]).
    pub(super) request_timeout: RequestTimeout,
    /// Counts the requests sent again, by the SDK or by the driver
    /// (`marina_storage_retries_total`).
    pub(super) retries: RetryCounter,
}

impl S3Backend {
    /// Validates the configuration (also that the CAs `SSL_CERT_FILE` or `SSL_CERT_DIR` name
    /// load), builds the client, checks the bucket
    /// ([`check_bucket`](Self::check_bucket)) and, unless `conditional_writes` is set,
    /// detects whether the store honours conditional writes
    /// ([`detect_conditional_writes`](Self::detect_conditional_writes)).
    pub async fn connect(config: &S3Config) -> Result<Self> {
        config.validate()?;
        crate::storage::trusted_cas::check()?;
        let presign = match &config.public_endpoint {
            Some(public) => Some(client::build(&on_endpoint(config, public)).await),
            None => None,
        };
        let mut backend = Self::with_client(config, client::build(config).await, presign);
        match crate::storage::probe::at_start(Self::NAME, backend.check_bucket()).await {
            Ok(()) => {}
            // A store that cannot be reached now (a transient failure, or no answer in time,
            // not an answer about the bucket) does not stop the process: the registry starts
            // not ready (`/readyz`), answers 503 meanwhile, and serves once the store is back.
            Err(e) if e.is_retryable() => {
                tracing::warn!(
                    error = %ErrorChain(&e),
                    "S3 store unreachable at start: the bucket is not checked"
                );
                // Conditional writes, unless configured, are detected once the store answers
                // (`conditional_writes_now`).
                return Ok(backend);
            }
            Err(e) => return Err(e),
        }
        if config.conditional_writes.is_none() {
            let detected = backend.detect_conditional_writes().await?;
            backend = backend.with_conditional_writes(detected);
        }
        Ok(backend)
    }

    /// Like [`connect`](Self::connect), on an SDK configuration loaded by the caller (custom
    /// credential providers, HTTP clients, ...); the settings of `config` (region, endpoint,
    /// path style, checksums, standard retries) are applied over it. Does not contact the
    /// store: call [`check_bucket`](Self::check_bucket) to, and
    /// [`detect_conditional_writes`](Self::detect_conditional_writes) with
    /// [`with_conditional_writes`](Self::with_conditional_writes) when
    /// `conditional_writes` is unset (here: off).
    pub fn connect_with(config: &S3Config, sdk: &aws_config::SdkConfig) -> Result<Self> {
        config.validate()?;
        let presign = config
            .public_endpoint
            .as_ref()
            .map(|public| client::build_with(&on_endpoint(config, public), sdk));
        Ok(Self::with_client(
            config,
            client::build_with(config, sdk),
            presign,
        ))
    }

    /// `presign_client`: a client on the public endpoint, if one is set.
    fn with_client(
        config: &S3Config,
        client: aws_sdk_s3::Client,
        presign_client: Option<aws_sdk_s3::Client>,
    ) -> Self {
        Self {
            client,
            presign_client,
            conditional_writes: Arc::new(OnceCell::new_with(config.conditional_writes)),
            bucket: config.bucket.clone(),
            keys: keys::KeyMap::new(config.normalized_prefix()),
            part_size: config.part_size(),
            equal_parts: config.equal_parts,
            part_checksums: config.checksum_policy() == S3ChecksumPolicy::WhenSupported,
            sign_payloads: client::signs_payloads(config),
            copy_object_limit: upload::COPY_OBJECT_LIMIT,
            copy_part_size: upload::COPY_PART_SIZE,
            single_put_sizes: config.single_put_sizes(),
            request_timeout: config.request_timeout(),
            retries: RetryCounter::default(),
        }
    }

    /// Counts the requests sent again into `retries`: the SDK's own retries (through
    /// `client::CountRetries`) and the driver's.
    pub(super) fn counting_retries(mut self, retries: RetryCounter) -> Self {
        if retries.is_counting() {
            self.client = client::counting_retries(&self.client, retries.clone());
        }
        self.retries = retries;
        self
    }

    /// Writes upload session records conditionally (`If-Match`) or not; see
    /// [`conditional`](super::conditional).
    pub fn with_conditional_writes(mut self, yes: bool) -> Self {
        self.conditional_writes = Arc::new(OnceCell::new_with(Some(yes)));
        self
    }

    /// Whether upload session records are written conditionally (`false` while that is not
    /// known yet: the store was unreachable at start and no session record was read since).
    pub fn conditional_writes(&self) -> bool {
        self.conditional_writes.get().copied().unwrap_or(false)
    }

    /// Whether upload session records are written conditionally, detecting it first when
    /// the store could not be reached at start (once per backend and its clones).
    pub(super) async fn conditional_writes_now(&self) -> Result<bool> {
        self.conditional_writes
            .get_or_try_init(|| self.detect_conditional_writes())
            .await
            .copied()
    }

    /// Uses parallel `UploadPartCopy` requests of `part_size` bytes instead of one
    /// `CopyObject` for objects above `limit` bytes (default 5 GiB, S3's `CopyObject` limit,
    /// and 512 MiB parts). Lower it to exercise the multipart copy with small blobs in tests.
    pub fn with_multipart_copy(mut self, limit: u64, part_size: u64) -> Self {
        self.copy_object_limit = limit.min(upload::COPY_OBJECT_LIMIT);
        self.copy_part_size = part_size.clamp(
            crate::storage::config::MIN_PART_SIZE,
            crate::storage::config::MAX_PART_SIZE,
        );
        self
    }

    /// The SDK client (for tests and tools that inspect the bucket).
    pub fn client(&self) -> &aws_sdk_s3::Client {
        &self.client
    }

    /// The bucket.
    pub fn bucket(&self) -> &str {
        &self.bucket
    }

    /// The normalised key prefix (`""` or ending in `/`) everything is stored under.
    pub fn object_key_prefix(&self) -> String {
        self.keys.prefix().to_owned()
    }

    /// The object key of a layout key (prefix included).
    pub fn object_key(&self, key: &Key) -> String {
        self.keys.object(key)
    }
}

/// `config` with `endpoint` as its endpoint (the public one, for presigning).
fn on_endpoint(config: &S3Config, endpoint: &str) -> S3Config {
    S3Config {
        endpoint: Some(endpoint.to_owned()),
        ..config.clone()
    }
}

/// An S3 operation's future, moved to the heap before it is awaited.
///
/// aws-sdk-s3's request futures are several kilobytes each (its orchestrator, interceptors
/// and retry state live inline), and an [`Engine`] future embeds the
/// backend future it awaits. Inline, they made every [`AnyDriver`](crate::storage::AnyDriver)
/// future ~7 KB, since an enum's futures must hold their largest variant's, and that cost
/// the *other* drivers a copy of 7 KB on every move (+80% on an in-memory `stat`). One
/// allocation per S3 operation, next to the SDK's own dozens per request and a network round
/// trip, keeps the S3 driver's futures, and so `AnyDriver`'s, the size of the filesystem
/// driver's. The filesystem and in-memory drivers never box.
///
/// Not an `async fn`: its future would hold `operation` inline until first polled.
pub(super) fn on_heap<F: std::future::Future>(operation: F) -> std::pin::Pin<Box<F>> {
    Box::pin(operation)
}

impl Backend for S3Backend {
    const NAME: &'static str = error::DRIVER;
    type Reader = S3Reader;
    type UploadState = S3UploadState;

    /// The chunk minimum is the part size: chunks of that size are uploaded as parts
    /// without staging anything. Smaller chunks work too (they are staged in the bucket).
    /// Links are written after the blob: checking a blob's existence is a round trip, which
    /// is also why the engine caches metadata by default.
    fn capabilities(&self) -> Capabilities {
        Capabilities::NONE
            .with_chunk_min_length(Some(self.part_size))
            .with_remote_metadata(true)
            .with_put_blob_sizes(self.single_put_sizes)
    }

    fn locate(&self, key: &Key) -> String {
        format!("s3://{}/{}", self.bucket, self.keys.object(key))
    }

    async fn read(&self, key: &Key) -> Result<Option<Bytes>> {
        on_heap(self.get_bytes(&self.keys.object(key))).await
    }

    async fn write(&self, key: &Key, value: Bytes) -> Result<()> {
        on_heap(self.put_bytes(&self.keys.object(key), value)).await
    }

    async fn remove(&self, key: &Key) -> Result<()> {
        on_heap(self.delete(&self.keys.object(key))).await
    }

    /// With conditional writes, an upload session record and a tag come with their ETag.
    async fn read_versioned(&self, key: &Key) -> Result<Option<(Bytes, Option<ObjectVersion>)>> {
        let versioned = matches!(key.class(), KeyClass::UploadState | KeyClass::Tag)
            && on_heap(self.conditional_writes_now()).await?;
        let read = on_heap(self.get_bytes_tagged(&self.keys.object(key))).await?;
        Ok(read.map(|(bytes, etag)| (bytes, etag.filter(|_| versioned).map(ObjectVersion))))
    }

    async fn write_if_version(
        &self,
        key: &Key,
        value: Bytes,
        version: &ObjectVersion,
    ) -> Result<bool> {
        on_heap(self.put_bytes_if_match(&self.keys.object(key), value, &version.0)).await
    }

    async fn remove_if_version(&self, key: &Key, version: &ObjectVersion) -> Result<bool> {
        on_heap(self.delete_if_match(&self.keys.object(key), &version.0)).await
    }

    /// With conditional writes, one `PutObject` with `If-None-Match: *`. Without, the
    /// default look-then-write, which two processes creating the tag at once may both pass
    /// (the store cannot tell them apart; see the operations guide on immutable tags).
    async fn create_tag(&self, tag: &Key, target: TagTarget<'_>) -> Result<bool> {
        if on_heap(self.conditional_writes_now()).await? {
            let digest = Bytes::from(target.digest.as_str().to_owned());
            return on_heap(self.put_bytes_if_absent(&self.keys.object(tag), digest)).await;
        }
        crate::storage::backend::create_tag_by_looking(self, tag, target).await
    }

    async fn list(
        &self,
        dir: &Dir,
        start_after: Option<&str>,
        limit: Option<usize>,
    ) -> Result<Vec<String>> {
        on_heap(self.list_names(&self.keys.dir(dir), start_after, limit)).await
    }

    async fn any_under(&self, dir: &Dir) -> Result<bool> {
        on_heap(self.any_below(&self.keys.dir(dir))).await
    }

    async fn blob_size(&self, digest: &Digest) -> Result<Option<u64>> {
        on_heap(self.head_size(&self.keys.object(&layout::blob_data(digest)))).await
    }

    async fn read_blob(&self, digest: &Digest, range: Option<ByteRange>) -> Result<S3Reader> {
        on_heap(self.get_stream(&self.keys.object(&layout::blob_data(digest)), range))
            .await?
            .ok_or_else(|| Error::BlobUnknown(digest.clone()))
    }

    async fn start_upload(&self, _id: &UploadId, target: Option<&Digest>) -> Result<S3UploadState> {
        Ok(self.create(target))
    }

    async fn put_blob<S>(&self, digest: &Digest, size: u64, body: S) -> Result<()>
    where
        S: Stream<Item = Result<Bytes>> + Send,
    {
        on_heap(self.put_whole_blob(digest, size, body)).await
    }

    async fn append_upload<S>(
        &self,
        id: &UploadId,
        state: &mut S3UploadState,
        offset: u64,
        body: S,
    ) -> Result<u64>
    where
        S: Stream<Item = Result<Bytes>> + Send,
    {
        on_heap(self.append(id, state, offset, body)).await
    }

    async fn finish_upload(
        &self,
        id: &UploadId,
        state: S3UploadState,
        size: u64,
        digest: &Digest,
    ) -> Result<()> {
        on_heap(self.commit(id, state, size, digest)).await
    }

    async fn abort_upload(&self, id: &UploadId, state: S3UploadState) -> Result<()> {
        on_heap(self.release(id, &state)).await
    }
}

impl PresignBlobReads for S3Backend {
    /// A presigned `GetObject` of the blob's key (SigV4 query parameters), for
    /// `public_endpoint` when one is set.
    async fn presign_read_blob(
        &self,
        digest: &Digest,
        expires_in: Duration,
    ) -> Result<PresignedRead> {
        let key = self.keys.object(&layout::blob_data(digest));
        let config = PresigningConfig::expires_in(expires_in)
            .map_err(|e| Error::backend_source(error::DRIVER, "presigning: invalid expiry", e))?;
        let signed_at = SystemTime::now();
        let request = on_heap(
            self.presign_client
                .as_ref()
                .unwrap_or(&self.client)
                .get_object()
                .bucket(&self.bucket)
                .key(&key)
                .presigned(config),
        )
        .await
        .map_err(|e| error::translate("GetObject (presigned)", &key, e))?;
        Ok(PresignedRead {
            url: request.uri().to_owned(),
            headers: request
                .headers()
                .map(|(name, value)| (name.to_owned(), value.to_owned()))
                .collect(),
            expires_at: signed_at + expires_in,
        })
    }
}
