//! The S3 driver (`type = "s3"`). SKELETON: being implemented.

use bytes::Bytes;
use futures::Stream;

use crate::error::Result;
use crate::oci::{ByteRange, Digest};
use crate::storage::backend::Backend;
use crate::storage::layout::Key;
use crate::storage::{Engine, EngineOptions, S3Config, UploadId};

/// The filesystem storage driver.
pub type S3Driver = Engine<S3Backend>;

impl S3Driver {
    /// Opens (creating if needed) the storage root.
    pub async fn connect(config: &S3Config, options: EngineOptions) -> Result<Self> {
        let _ = config;
        Ok(Engine::new(S3Backend {}, options))
    }
}

/// Filesystem backend.
#[derive(Debug)]
pub struct S3Backend {}

/// Reader.
pub type S3Reader = futures::stream::Empty<Result<Bytes>>;

impl Backend for S3Backend {
    const NAME: &'static str = "s3";
    type Reader = S3Reader;
    type UploadState = ();
    fn locate(&self, key: &Key) -> String { key.to_string() }
    async fn read(&self, _key: &Key) -> Result<Option<Bytes>> { todo!() }
    async fn write(&self, _key: &Key, _value: Bytes) -> Result<()> { todo!() }
    async fn remove(&self, _key: &Key) -> Result<()> { todo!() }
    async fn list(&self, _dir: &Key, _start_after: Option<&str>, _limit: Option<usize>) -> Result<Vec<String>> { todo!() }
    async fn any_under(&self, _dir: &Key) -> Result<bool> { todo!() }
    async fn blob_size(&self, _digest: &Digest) -> Result<Option<u64>> { todo!() }
    async fn read_blob(&self, _digest: &Digest, _range: Option<ByteRange>) -> Result<Self::Reader> { todo!() }
    async fn create_upload(&self, _id: &UploadId, _target: Option<&Digest>) -> Result<()> { todo!() }
    async fn append_upload<S>(&self, _id: &UploadId, _state: &mut (), _offset: u64, _body: S) -> Result<u64>
    where S: Stream<Item = Result<Bytes>> + Send { todo!() }
    async fn commit_upload(&self, _id: &UploadId, _state: (), _size: u64, _digest: &Digest) -> Result<()> { todo!() }
    async fn abort_upload(&self, _id: &UploadId, _state: ()) -> Result<()> { todo!() }
}
