//! The in-memory driver (`type = "inmemory"`): everything in process memory, for tests and
//! embedders. Blobs are kept as ropes of the `Bytes` chunks they arrived in, so neither
//! uploads nor reads copy blob bytes.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::{Mutex, RwLock};
use std::time::SystemTime;

use bytes::Bytes;
use futures::{Stream, StreamExt, stream};

use crate::error::Result;
use crate::oci::{ByteRange, Digest, DigestAlgorithm};
use crate::storage::any::ConfiguredDriver;
use crate::storage::backend::{Backend, Capabilities};
use crate::storage::layout::{Dir, Key};
use crate::storage::lifecycle::{ExpiredStorage, LifecycleBackend, ObjectInfo};
use crate::storage::{Engine, EngineOptions, Observed, StorageConfig, StorageType, UploadId};

/// The in-memory storage driver: the engine over the instrumented in-memory backend.
pub type InMemoryDriver = Engine<Observed<InMemoryBackend>>;

impl InMemoryDriver {
    /// An empty in-memory driver with default options.
    pub fn new_in_memory() -> Self {
        Engine::new(Observed::default(), EngineOptions::default())
    }
}

impl ConfiguredDriver for InMemoryDriver {
    const STORAGE_TYPE: StorageType = StorageType::Inmemory;

    async fn open(_: &StorageConfig, options: EngineOptions) -> Result<Self> {
        Ok(Engine::new(
            options.instrument(InMemoryBackend::default()),
            options,
        ))
    }
}

/// A blob as the chunks it was received in.
type Rope = Vec<Bytes>;

/// Backend keeping everything in maps guarded by locks held only for map operations. Each
/// entry carries the time it was last written, for the lifecycle operations.
#[derive(Debug, Default)]
pub struct InMemoryBackend {
    objects: RwLock<BTreeMap<String, (Bytes, SystemTime)>>,
    blobs: RwLock<HashMap<Digest, (u64, Rope, SystemTime)>>,
    uploads: Mutex<HashMap<UploadId, (Rope, SystemTime)>>,
}

#[cfg(test)]
impl InMemoryBackend {
    /// Sets when the object `key` was last written, as if it had been written then (tests
    /// of what depends on ages).
    pub(crate) fn set_modified(&self, key: &Key, modified: SystemTime) {
        let mut objects = self.objects.write().expect("not poisoned");
        if let Some((_, time)) = objects.get_mut(key.as_str()) {
            *time = modified;
        }
    }
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
        Ok(objects.get(key.as_str()).map(|(bytes, _)| bytes.clone()))
    }

    async fn write(&self, key: &Key, value: Bytes) -> Result<()> {
        let mut objects = self.objects.write().map_err(|_| lock_poisoned())?;
        objects.insert(key.as_str().to_owned(), (value, SystemTime::now()));
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
        Ok(blobs.get(digest).map(|(size, _, _)| *size))
    }

    async fn read_blob(&self, digest: &Digest, range: Option<ByteRange>) -> Result<InMemoryReader> {
        let blobs = self.blobs.read().map_err(|_| lock_poisoned())?;
        let (_, rope, _) = blobs
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
        uploads.insert(id.clone(), (Vec::new(), SystemTime::now()));
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
        let (rope, modified) = uploads
            .get_mut(id)
            .ok_or_else(|| crate::error::Error::BlobUploadUnknown(id.to_string()))?;
        *modified = SystemTime::now();
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
            uploads.remove(id)
        };
        let Some(rope) = rope
            .map(|(rope, _)| rope)
            .or_else(|| (size == 0).then(Vec::new))
        else {
            // Expired or aborted meanwhile: nothing to commit.
            return Err(crate::error::Error::BlobUploadUnknown(id.to_string()));
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
        blobs
            .entry(digest.clone())
            .or_insert((size, rope, SystemTime::now()));
        Ok(())
    }

    async fn abort_upload(&self, id: &UploadId, _state: ()) -> Result<()> {
        let mut uploads = self.uploads.lock().map_err(|_| lock_poisoned())?;
        uploads.remove(id);
        Ok(())
    }
}

/// The names directly below `dir` among `keys` (ascending): the objects, and the directories
/// (the first component of deeper keys).
fn children<'k>(
    keys: impl Iterator<Item = &'k String>,
    dir: &str,
) -> (Vec<&'k str>, std::collections::BTreeSet<&'k str>) {
    let mut objects = Vec::new();
    let mut dirs = std::collections::BTreeSet::new();
    for key in keys {
        let Some(rest) = key.strip_prefix(dir) else {
            continue;
        };
        match rest.split_once('/') {
            Some((name, _)) => {
                dirs.insert(name);
            }
            None if !rest.is_empty() => objects.push(rest),
            None => {}
        }
    }
    (objects, dirs)
}

/// Keeps the objects after `start_after`, at most `limit`.
fn page<T>(items: impl Iterator<Item = T>, limit: usize) -> Vec<T> {
    items.take(limit).collect()
}

impl LifecycleBackend for InMemoryBackend {
    async fn list_dirs(
        &self,
        dir: &Dir,
        start_after: Option<&str>,
        limit: usize,
    ) -> Result<Vec<String>> {
        let prefix = format!("{}/", dir.as_str());
        let objects = self.objects.read().map_err(|_| lock_poisoned())?;
        let in_dir = objects
            .range::<str, _>((
                std::ops::Bound::Included(prefix.as_str()),
                std::ops::Bound::Unbounded,
            ))
            .map(|(k, _)| k)
            .take_while(|k| k.starts_with(&prefix));
        let (_, dirs) = children(in_dir, &prefix);
        // The order of the trait: by the name followed by `/`.
        let mut dirs: Vec<String> = dirs.into_iter().map(|d| format!("{d}/")).collect();
        dirs.sort_unstable();
        let after = start_after.map(|a| format!("{a}/"));
        Ok(page(
            dirs.into_iter()
                .filter(|d| after.as_ref().is_none_or(|a| d > a))
                .map(|mut d| {
                    d.pop();
                    d
                }),
            limit,
        ))
    }

    async fn scan(
        &self,
        dir: &Dir,
        start_after: Option<&str>,
        limit: usize,
    ) -> Result<Vec<ObjectInfo>> {
        let prefix = format!("{}/{}", dir.as_str(), dir.name_prefix());
        let from = format!("{prefix}{}", start_after.unwrap_or(""));
        let objects = self.objects.read().map_err(|_| lock_poisoned())?;
        Ok(page(
            objects
                .range::<str, _>((
                    std::ops::Bound::Included(from.as_str()),
                    std::ops::Bound::Unbounded,
                ))
                .take_while(|(k, _)| k.starts_with(&prefix))
                .filter_map(|(k, (bytes, modified))| {
                    let name = &k[prefix.len()..];
                    (!name.is_empty()
                        && !name.contains('/')
                        && start_after.is_none_or(|a| name > a))
                    .then(|| ObjectInfo {
                        name: name.to_owned(),
                        size: bytes.len() as u64,
                        modified: *modified,
                    })
                }),
            limit,
        ))
    }

    async fn scan_blobs(
        &self,
        algorithm: DigestAlgorithm,
        start_after: Option<&str>,
        limit: usize,
    ) -> Result<Vec<ObjectInfo>> {
        let blobs = self.blobs.read().map_err(|_| lock_poisoned())?;
        let mut found: Vec<ObjectInfo> = blobs
            .iter()
            .filter(|(d, _)| d.algorithm() == algorithm)
            .filter(|(d, _)| start_after.is_none_or(|a| d.hex() > a))
            .map(|(d, (size, _, modified))| ObjectInfo {
                name: d.hex().to_owned(),
                size: *size,
                modified: *modified,
            })
            .collect();
        found.sort_unstable_by(|a, b| a.name.cmp(&b.name));
        found.truncate(limit);
        Ok(found)
    }

    async fn remove_objects(&self, keys: &[Key]) -> Result<()> {
        let mut objects = self.objects.write().map_err(|_| lock_poisoned())?;
        for key in keys {
            objects.remove(key.as_str());
        }
        Ok(())
    }

    async fn remove_blobs(&self, digests: &[Digest]) -> Result<()> {
        let mut blobs = self.blobs.write().map_err(|_| lock_poisoned())?;
        for digest in digests {
            blobs.remove(digest);
        }
        Ok(())
    }

    async fn expire_upload_storage(
        &self,
        before: SystemTime,
        live: &HashSet<UploadId>,
        dry_run: bool,
    ) -> Result<ExpiredStorage> {
        let mut uploads = self.uploads.lock().map_err(|_| lock_poisoned())?;
        let mut expired = ExpiredStorage::default();
        uploads.retain(|id, (rope, modified)| {
            let expire = !live.contains(id) && *modified < before;
            if expire {
                expired.uploads.push(id.clone());
                expired.bytes += rope.iter().map(|c| c.len() as u64).sum::<u64>();
            }
            !expire || dry_run
        });
        Ok(expired)
    }

    async fn tidy(&self, _before: SystemTime, _dry_run: bool) -> Result<u64> {
        // Nothing but objects is stored: nothing to tidy.
        Ok(0)
    }
}
