//! The filesystem driver (`type = "filesystem"`): the [`layout`]
//! tree as files below [`FilesystemConfig::root_directory`].
//!
//! ```text
//! <root>/
//!     blobs/<alg>/<hex>          blob bytes (renamed into place whole, after a sync)
//!     uploads/<id>               bytes of an upload in progress (one file per upload)
//!     repositories/<name>/...    links, manifests, tags, referrers, upload states
//!     **/.tmp-<name>-<random>    temporary files of writes in progress (never listed)
//! ```
//!
//! Guarantees (issue "core library", point 5):
//! - **No reader sees a partial object.** Small objects are written to a unique temporary
//!   file in the target's directory, synced, renamed over the target and the directory is
//!   synced (`atomic`); a blob appears by renaming its complete, synced upload file.
//! - **Concurrent writers are safe:** every writer has its own temporary file and `rename` is
//!   atomic, so the last rename wins whole; a blob committed twice is the same bytes.
//! - **Durable when acknowledged:** data before names, names before returning, and newly
//!   created directories are synced into their parents.
//! - **Nothing escapes the root:** keys are re-checked (`paths`), directories on a write
//!   path are walked with `lstat` so planted symbolic links are refused, and new files are
//!   created with `O_EXCL`, which never follows a link.
//! - **Streaming:** blob reads and upload writes move 1 MiB at a time on Tokio's blocking
//!   pool, overlapping disk I/O with the network and hashing; no blob is held in memory.

mod atomic;
mod listing;
mod paths;
mod reader;
mod upload;

use std::fmt;
use std::fs::{self, File};
use std::io::{Seek, SeekFrom};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use bytes::Bytes;
use futures::Stream;

use crate::error::{Error, Result};
use crate::oci::{ByteRange, Digest};
use crate::storage::backend::Backend;
use crate::storage::layout::{self, Key};
use crate::storage::{Engine, EngineOptions, FilesystemConfig, UploadId};

pub use reader::{FilesystemReader, READ_CHUNK};
pub use upload::{FilesystemUploadState, WRITE_BATCH};

/// Driver name used in errors.
const DRIVER: &str = "filesystem";

/// The filesystem storage driver.
pub type FilesystemDriver = Engine<FilesystemBackend>;

impl FilesystemDriver {
    /// Opens (creating if needed) the storage root.
    pub async fn open(config: &FilesystemConfig, options: EngineOptions) -> Result<Self> {
        let backend = FilesystemBackend::open(&config.root_directory).await?;
        Ok(Engine::new(backend, options))
    }
}

/// The filesystem [`Backend`]: every key is a file below the root directory.
#[derive(Clone)]
pub struct FilesystemBackend {
    /// Canonical absolute root.
    root: Arc<PathBuf>,
    /// Serialises appends to one upload within this process.
    locks: Arc<upload::UploadLocks>,
}

impl fmt::Debug for FilesystemBackend {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FilesystemBackend")
            .field("root", &self.root)
            .finish()
    }
}

impl FilesystemBackend {
    /// Opens the root directory, creating it (and the top-level `blobs` and `uploads`
    /// directories) if needed. The root is canonicalised once, so it may itself be reached
    /// through a symbolic link; links *below* it are not followed for writes.
    pub async fn open(root: &Path) -> Result<Self> {
        let root = root.to_path_buf();
        let root = blocking(move || {
            fs::create_dir_all(&root).map_err(|e| io_err("creating root directory", &root, e))?;
            let root = fs::canonicalize(&root)
                .map_err(|e| io_err("resolving root directory", &root, e))?;
            paths::ensure_dir(&root, Some("blobs"))?;
            paths::ensure_dir(&root, Some("uploads"))?;
            Ok(root)
        })
        .await?;
        Ok(Self {
            root: Arc::new(root),
            locks: Arc::default(),
        })
    }

    /// The canonical root directory.
    pub fn root(&self) -> &Path {
        &self.root
    }

    fn path(&self, key: &Key) -> Result<PathBuf> {
        paths::key_path(&self.root, key)
    }
}

/// Wraps an I/O error with the operation and path.
fn io_err(what: &str, path: &Path, err: std::io::Error) -> Error {
    Error::io(DRIVER, format_args!("{what} {}", path.display()), err)
}

fn join_failed(err: tokio::task::JoinError) -> Error {
    Error::backend(DRIVER, format!("blocking filesystem task failed: {err}"))
}

/// Runs blocking filesystem work on Tokio's blocking pool.
async fn blocking<T, F>(f: F) -> Result<T>
where
    F: FnOnce() -> Result<T> + Send + 'static,
    T: Send + 'static,
{
    tokio::task::spawn_blocking(f).await.map_err(join_failed)?
}

impl Backend for FilesystemBackend {
    const NAME: &'static str = DRIVER;
    type Reader = FilesystemReader;
    type UploadState = FilesystemUploadState;

    fn locate(&self, key: &Key) -> String {
        paths::join(&self.root, key.as_str()).display().to_string()
    }

    async fn read(&self, key: &Key) -> Result<Option<Bytes>> {
        let path = self.path(key)?;
        blocking(move || match fs::read(&path) {
            Ok(bytes) => Ok(Some(Bytes::from(bytes))),
            Err(e) if atomic::missing(&e) => Ok(None),
            Err(e) => Err(io_err("reading", &path, e)),
        })
        .await
    }

    async fn write(&self, key: &Key, value: Bytes) -> Result<()> {
        let rel = paths::check_key(key)?.to_owned();
        let root = Arc::clone(&self.root);
        blocking(move || atomic::write_atomic(&root, &rel, &value)).await
    }

    async fn remove(&self, key: &Key) -> Result<()> {
        let path = self.path(key)?;
        blocking(move || atomic::remove_durable(&path)).await
    }

    async fn list(
        &self,
        dir: &Key,
        start_after: Option<&str>,
        limit: Option<usize>,
    ) -> Result<Vec<String>> {
        if limit == Some(0) {
            return Ok(Vec::new());
        }
        let path = self.path(dir)?;
        let start_after = start_after.map(str::to_owned);
        blocking(move || listing::list(&path, start_after.as_deref(), limit)).await
    }

    async fn any_under(&self, dir: &Key) -> Result<bool> {
        let path = self.path(dir)?;
        blocking(move || listing::any_under(&path)).await
    }

    async fn blob_size(&self, digest: &Digest) -> Result<Option<u64>> {
        let path = self.path(&layout::blob_data(digest))?;
        blocking(move || match fs::symlink_metadata(&path) {
            Ok(meta) if meta.is_file() => Ok(Some(meta.len())),
            Ok(_) => Err(Error::backend(
                DRIVER,
                format!("{} is not a regular file", path.display()),
            )),
            Err(e) if atomic::missing(&e) => Ok(None),
            Err(e) => Err(io_err("inspecting", &path, e)),
        })
        .await
    }

    async fn read_blob(
        &self,
        digest: &Digest,
        range: Option<ByteRange>,
    ) -> Result<FilesystemReader> {
        let path = self.path(&layout::blob_data(digest))?;
        let digest = digest.clone();
        let (file, len, first, path) = blocking(move || {
            let file = match File::open(&path) {
                Ok(file) => file,
                Err(e) if atomic::missing(&e) => return Err(Error::BlobUnknown(digest)),
                Err(e) => return Err(io_err("opening", &path, e)),
            };
            let size = file
                .metadata()
                .map_err(|e| io_err("inspecting", &path, e))?
                .len();
            let mut file = file;
            let len = match range {
                None => size,
                Some(range) => {
                    if range.end >= size {
                        return Err(Error::RangeInvalid {
                            size,
                            reason: format!(
                                "range {}-{} is beyond the blob",
                                range.start, range.end
                            ),
                        });
                    }
                    file.seek(SeekFrom::Start(range.start))
                        .map_err(|e| io_err("seeking", &path, e))?;
                    range.len()
                }
            };
            let first = FilesystemReader::read_first(&mut file, len)
                .map_err(|e| io_err("reading", &path, e))?;
            Ok((file, len, first, path))
        })
        .await?;
        Ok(FilesystemReader::new(file, len, first, path))
    }

    async fn create_upload(
        &self,
        _id: &UploadId,
        target: Option<&Digest>,
    ) -> Result<FilesystemUploadState> {
        // The data file is created by the first append.
        Ok(FilesystemUploadState {
            one_shot: target.is_some(),
        })
    }

    async fn append_upload<S>(
        &self,
        id: &UploadId,
        state: &mut FilesystemUploadState,
        offset: u64,
        body: S,
    ) -> Result<u64>
    where
        S: Stream<Item = Result<Bytes>> + Send,
    {
        upload::append(&self.root, &self.locks, id, state, offset, body).await
    }

    async fn commit_upload(
        &self,
        id: &UploadId,
        state: FilesystemUploadState,
        size: u64,
        digest: &Digest,
    ) -> Result<()> {
        let root = Arc::clone(&self.root);
        let id = id.clone();
        let digest = digest.clone();
        blocking(move || upload::commit(&root, &id, &state, size, &digest)).await
    }

    async fn abort_upload(&self, id: &UploadId, _state: FilesystemUploadState) -> Result<()> {
        let root = Arc::clone(&self.root);
        let id = id.clone();
        blocking(move || upload::abort(&root, &id)).await
    }
}
