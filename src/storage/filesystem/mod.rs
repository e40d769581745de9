//! The filesystem driver (`type = "filesystem"`). SKELETON: being implemented.

use bytes::Bytes;
use futures::Stream;

use crate::error::Result;
use crate::oci::{ByteRange, Digest};
use crate::storage::backend::Backend;
use crate::storage::layout::Key;
use crate::storage::{Engine, EngineOptions, FilesystemConfig, UploadId};

/// The filesystem storage driver.
pub type FilesystemDriver = Engine<FilesystemBackend>;

impl FilesystemDriver {
    /// Opens (creating if needed) the storage root.
    pub async fn open(config: &FilesystemConfig, options: EngineOptions) -> Result<Self> {
        let _ = config;
        Ok(Engine::new(FilesystemBackend {}, options))
    }
}

/// Filesystem backend.
#[derive(Debug)]
pub struct FilesystemBackend {}

/// Reader.
pub type FilesystemReader = futures::stream::Empty<Result<Bytes>>;

impl Backend for FilesystemBackend {
    const NAME: &'static str = "filesystem";
    type Reader = FilesystemReader;
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
