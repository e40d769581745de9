//! The in-memory driver (`type = "inmemory"`): everything in process memory, for tests and
//! embedders. Blobs are kept as ropes of the `Bytes` chunks they arrived in, so neither
//! uploads nor reads copy blob bytes.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Mutex, RwLock};

use bytes::Bytes;
use futures::{Stream, StreamExt, stream};

use crate::error::Result;
use crate::oci::{ByteRange, Digest};
use crate::storage::any::ConfiguredDriver;
use crate::storage::backend::{Backend, Capabilities};
use crate::storage::layers::Instrumented;
use crate::storage::layout::{Dir, Key};
use crate::storage::{Engine, EngineOptions, StorageConfig, StorageType, UploadId};

/// The in-memory storage driver: the engine over the instrumented in-memory backend.
pub type InMemoryDriver = Engine<Instrumented<InMemoryBackend>>;

impl InMemoryDriver {
    /// An empty in-memory driver with default options.
    pub fn new_in_memory() -> Self {
        Engine::new(Instrumented::default(), EngineOptions::default())
    }
}

impl ConfiguredDriver for InMemoryDriver {
    const STORAGE_TYPE: StorageType = StorageType::Inmemory;

    async fn open(_: &StorageConfig, options: EngineOptions) -> Result<Self> {
        Ok(Engine::new(Instrumented::default(), options))
    }
}

/// A blob as the chunks it was received in.
type Rope = Vec<Bytes>;

/// Backend keeping everything in maps guarded by locks held only for map operations.
#[derive(Debug, Default)]
pub struct InMemoryBackend {
    objects: RwLock<BTreeMap<String, Bytes>>,
    blobs: RwLock<HashMap<Digest, (u64, Rope)>>,
    uploads: Mutex<HashMap<UploadId, Rope>>,
}

/// The stream of an in-memory blob read.
pub type InMemoryReader = stream::Iter<std::vec::IntoIter<Result<Bytes>>>;

fn lock_poisoned() -> crate::error::Error {
    crate::error::Error::backend("inmemory", "lock poisoned by a panic")
}

/// What the keys of the objects in `dir` (with its name prefix) start with.
fn listing_prefix(dir: &Dir) -> String {
    [dir.as_str(), "/", dir.name_prefix()].concat()
}

/// Keeps the bytes `start..=end` of a rope, slicing (not copying) the chunks.
fn slice_rope(rope: &Rope, range: ByteRange) -> Rope {
    let mut out = Vec::new();
    let mut pos = 0u64;
    for chunk in rope {
        let len = chunk.len() as u64;
        let (cs, ce) = (pos, pos + len); // chunk covers [cs, ce)
        pos = ce;
        if ce <= range.start || cs > range.end {
            continue;
        }
        let from = range.start.saturating_sub(cs) as usize;
        let to = ((range.end + 1).min(ce) - cs) as usize;
        out.push(chunk.slice(from..to));
    }
    out
}

impl Backend for InMemoryBackend {
    const NAME: &'static str = "inmemory";
    type Reader = InMemoryReader;
    type UploadState = ();

    fn capabilities(&self) -> Capabilities {
        Capabilities::NONE
    }

    fn locate(&self, key: &Key) -> String {
        ["memory:", key.as_str()].concat()
    }

    async fn read(&self, key: &Key) -> Result<Option<Bytes>> {
        let objects = self.objects.read().map_err(|_| lock_poisoned())?;
        Ok(objects.get(key.as_str()).cloned())
    }

    async fn write(&self, key: &Key, value: Bytes) -> Result<()> {
        let mut objects = self.objects.write().map_err(|_| lock_poisoned())?;
        objects.insert(key.as_str().to_owned(), value);
        Ok(())
    }

    async fn remove(&self, key: &Key) -> Result<()> {
        let mut objects = self.objects.write().map_err(|_| lock_poisoned())?;
        objects.remove(key.as_str());
        Ok(())
    }

    async fn list(
        &self,
        dir: &Dir,
        start_after: Option<&str>,
        limit: Option<usize>,
    ) -> Result<Vec<String>> {
        let prefix = listing_prefix(dir);
        let from = match start_after {
            Some(after) => format!("{prefix}{after}"),
            None => prefix.clone(),
        };
        let objects = self.objects.read().map_err(|_| lock_poisoned())?;
        let names = objects
            .range::<str, _>((
                std::ops::Bound::Included(from.as_str()),
                std::ops::Bound::Unbounded,
            ))
            .map(|(k, _)| k)
            .take_while(|k| k.starts_with(&prefix))
            .map(|k| &k[prefix.len()..])
            .filter(|name| !name.is_empty() && !name.contains('/'))
            .filter(|name| start_after.is_none_or(|after| *name > after))
            .take(limit.unwrap_or(usize::MAX))
            .map(str::to_owned)
            .collect();
        Ok(names)
    }

    async fn any_under(&self, dir: &Dir) -> Result<bool> {
        let prefix = listing_prefix(dir);
        let objects = self.objects.read().map_err(|_| lock_poisoned())?;
        Ok(objects
            .range::<str, _>((
                std::ops::Bound::Included(prefix.as_str()),
                std::ops::Bound::Unbounded,
            ))
            .next()
            .is_some_and(|(k, _)| k.starts_with(&prefix)))
    }

    async fn blob_size(&self, digest: &Digest) -> Result<Option<u64>> {
        let blobs = self.blobs.read().map_err(|_| lock_poisoned())?;
        Ok(blobs.get(digest).map(|(size, _)| *size))
    }

    async fn read_blob(&self, digest: &Digest, range: Option<ByteRange>) -> Result<InMemoryReader> {
        let blobs = self.blobs.read().map_err(|_| lock_poisoned())?;
        let (_, rope) = blobs
            .get(digest)
            .ok_or_else(|| crate::error::Error::BlobUnknown(digest.clone()))?;
        let chunks = match range {
            Some(range) => slice_rope(rope, range),
            None => rope.clone(),
        };
        Ok(stream::iter(chunks.into_iter().map(Ok).collect::<Vec<_>>()))
    }

    async fn start_upload(&self, id: &UploadId, _target: Option<&Digest>) -> Result<()> {
        let mut uploads = self.uploads.lock().map_err(|_| lock_poisoned())?;
        uploads.insert(id.clone(), Vec::new());
        Ok(())
    }

    async fn append_upload<S>(
        &self,
        id: &UploadId,
        _state: &mut (),
        offset: u64,
        body: S,
    ) -> Result<u64>
    where
        S: Stream<Item = Result<Bytes>> + Send,
    {
        // Collect first, so a failed body leaves the upload as it was.
        let mut body = std::pin::pin!(body);
        let mut received = Vec::new();
        let mut n = 0u64;
        while let Some(chunk) = body.next().await {
            let chunk = chunk?;
            n += chunk.len() as u64;
            if !chunk.is_empty() {
                received.push(chunk);
            }
        }
        let mut uploads = self.uploads.lock().map_err(|_| lock_poisoned())?;
        let rope = uploads
            .get_mut(id)
            .ok_or_else(|| crate::error::Error::BlobUploadUnknown(id.to_string()))?;
        let stored: u64 = rope.iter().map(|c| c.len() as u64).sum();
        if stored != offset {
            *rope = if offset == 0 {
                Vec::new()
            } else {
                slice_rope(
                    rope,
                    ByteRange {
                        start: 0,
                        end: offset - 1,
                    },
                )
            };
        }
        rope.extend(received);
        Ok(n)
    }

    async fn finish_upload(
        &self,
        id: &UploadId,
        _state: (),
        size: u64,
        digest: &Digest,
    ) -> Result<()> {
        let rope = {
            let mut uploads = self.uploads.lock().map_err(|_| lock_poisoned())?;
            uploads.remove(id).unwrap_or_default()
        };
        let rope = if size == 0 {
            Vec::new()
        } else {
            slice_rope(
                &rope,
                ByteRange {
                    start: 0,
                    end: size - 1,
                },
            )
        };
        let mut blobs = self.blobs.write().map_err(|_| lock_poisoned())?;
        blobs.entry(digest.clone()).or_insert((size, rope));
        Ok(())
    }

    async fn abort_upload(&self, id: &UploadId, _state: ()) -> Result<()> {
        let mut uploads = self.uploads.lock().map_err(|_| lock_poisoned())?;
        uploads.remove(id);
        Ok(())
    }
}
