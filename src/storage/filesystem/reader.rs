//! [`FilesystemReader`]: the blob byte stream.
//!
//! - **Small blobs and ranges** (under [`MAP_MIN`]) are read whole by the blocking call that
//!   opens the file, and yielded as one item.
//! - **Larger ones are served from a read-only memory map** of the requested range, yielded in
//!   items of at most [`READ_CHUNK`] that borrow the mapping ([`Bytes::from_owner`]): the
//!   bytes go from the page cache to the socket with one copy (the socket write's), instead
//!   of two with `read(2)` into a buffer, and no buffer is allocated or zeroed. Each item's
//!   pages are populated (`MADV_POPULATE_READ`) on Tokio's blocking pool before it is
//!   yielded, the next item's while the current one is sent, so a blob that is not in the
//!   page cache is read from disk there, never by a page fault on an async worker.
//!
//! Memory maps are safe here because blob files are immutable: a blob appears by renaming a
//! complete file into place and is never written, truncated or replaced in place again (a
//! rename or unlink leaves a mapping of the old file intact). A file truncated behind the
//! registry's back would make reading its mapping fault (`SIGBUS`); the storage root belongs
//! to the registry (README, "Drivers").

use std::fs::File;
use std::future::Future;
use std::io::{self, Read, Seek, SeekFrom};
use std::path::Path;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::Bytes;
use futures::Stream;
use memmap2::{Advice, Mmap, MmapOptions};
use tokio::runtime::Handle;
use tokio::task::JoinHandle;

use crate::error::{Error, Result};
use crate::oci::{ByteRange, Digest};

use super::{DRIVER, atomic, io_err};

/// Largest item of the stream.
pub const READ_CHUNK: usize = 4 * 1024 * 1024;

/// Blobs (or ranges) at least this long are served from a memory map; shorter ones are read
/// whole, which costs less than setting up and tearing down a mapping.
pub const MAP_MIN: u64 = 256 * 1024;

/// Stream of the bytes of a stored blob (or of a range of it).
///
/// A named, unboxed type: the engine's `BlobStream` for the filesystem driver.
#[derive(Debug)]
pub struct FilesystemReader {
    /// The bytes still to yield: a buffer read up front, or a window on the mapping.
    rest: Bytes,
    /// The mapping `rest` borrows, if any (to populate the next item's pages).
    mapping: Option<Arc<Mapping>>,
    /// Population of the next item's pages, in flight.
    populating: Option<JoinHandle<()>>,
}

/// A read-only mapping, shared by the reader and the items borrowing it, with what
/// populating its pages needs. (Kept behind one pointer: the reader is small, which keeps
/// `AnyDriver`'s stream enum small.)
#[derive(Debug)]
struct Mapping {
    map: Mmap,
    /// Offset in `map` of the first byte the reader yields.
    start: usize,
    /// Blocking pool to populate on (captured so polling works from any executor).
    runtime: Handle,
}

/// Owner handed to [`Bytes::from_owner`]: keeps the mapping alive while any item borrows it.
struct MappedBytes(Arc<Mapping>);

impl AsRef<[u8]> for MappedBytes {
    fn as_ref(&self) -> &[u8] {
        &self.0.map
    }
}

impl FilesystemReader {
    /// Opens the blob at `path` and prepares to stream `range` of it (already resolved by the
    /// engine, checked here against the file's size). Blocking: call on the blocking pool.
    pub(super) fn open(path: &Path, digest: &Digest, range: Option<ByteRange>) -> Result<Self> {
        let file = match File::open(path) {
            Ok(file) => file,
            Err(e) if atomic::missing(&e) => return Err(Error::BlobUnknown(digest.clone())),
            Err(e) => return Err(io_err("opening", path, e)),
        };
        let size = file
            .metadata()
            .map_err(|e| io_err("inspecting", path, e))?
            .len();
        let (start, len) = match range {
            None => (0, size),
            Some(range) if range.end < size => (range.start, range.len()),
            Some(range) => {
                return Err(Error::RangeInvalid {
                    size,
                    reason: format!("range {}-{} is beyond the blob", range.start, range.end),
                });
            }
        };
        if len < MAP_MIN {
            let rest = read_whole(file, start, len).map_err(|e| io_err("reading", path, e))?;
            return Ok(Self {
                rest,
                mapping: None,
                populating: None,
            });
        }
        let mapping = map_range(&file, start, len).map_err(|e| io_err("mapping", path, e))?;
        let mapping = Arc::new(mapping);
        let rest = Bytes::from_owner(MappedBytes(Arc::clone(&mapping))).slice(mapping.start..);
        // The first item's pages now (this is the blocking pool); the next ones ahead.
        populate(&mapping, 0, rest.len().min(READ_CHUNK));
        Ok(Self {
            rest,
            mapping: Some(mapping),
            populating: None,
        })
    }

    /// Starts populating the pages of the item after the one about to be yielded.
    fn populate_next(&mut self) {
        let Some(shared) = &self.mapping else {
            return;
        };
        let len = self.rest.len().min(READ_CHUNK);
        if len == 0 {
            return;
        }
        let mapping = Arc::clone(shared);
        let from = mapping.map.len() - mapping.start - self.rest.len();
        self.populating = Some(
            shared
                .runtime
                .spawn_blocking(move || populate(&mapping, from, len)),
        );
    }
}

/// Reads `len` bytes at `start` into one buffer (no zeroing: `read_to_end` fills spare
/// capacity, and `take` stops at exactly `len`, so it never reallocates).
fn read_whole(mut file: File, start: u64, len: u64) -> io::Result<Bytes> {
    file.seek(SeekFrom::Start(start))?;
    let mut buf = Vec::with_capacity(len as usize);
    file.take(len).read_to_end(&mut buf)?;
    if (buf.len() as u64) < len {
        return Err(io::Error::new(
            io::ErrorKind::UnexpectedEof,
            format!("blob ended {} bytes early", len - buf.len() as u64),
        ));
    }
    Ok(Bytes::from(buf))
}

/// Maps `len` bytes of `file` at `start` read-only (the mapping starts at the page boundary
/// below `start`), advising sequential access.
fn map_range(file: &File, start: u64, len: u64) -> io::Result<Mapping> {
    let page = page_size();
    let aligned = start - start % page;
    let head = (start - aligned) as usize;
    let map_len = usize::try_from(len)
        .ok()
        .and_then(|len| len.checked_add(head))
        .ok_or_else(|| io::Error::other("range too large to map"))?;
    // SAFETY: the file is a committed blob, immutable for as long as the registry owns the
    // storage root (see the module documentation); the mapping is only ever read.
    let map = unsafe { MmapOptions::new().offset(aligned).len(map_len).map(file)? };
    // A hint; failure only costs read-ahead.
    let _ = map.advise(Advice::Sequential);
    Ok(Mapping {
        map,
        start: head,
        runtime: Handle::current(),
    })
}

/// Faults in the pages of `len` bytes at `from` (relative to the reader's first byte),
/// reading them from disk if needed. Where `MADV_POPULATE_READ` is unavailable (Linux before
/// 5.14, other systems) read-ahead is requested instead, and a page still missing when the
/// item is sent is faulted in by the socket write.
fn populate(mapping: &Mapping, from: usize, len: usize) {
    let offset = mapping.start + from;
    #[cfg(target_os = "linux")]
    if mapping
        .map
        .advise_range(Advice::PopulateRead, offset, len)
        .is_ok()
    {
        return;
    }
    let _ = mapping.map.advise_range(Advice::WillNeed, offset, len);
}

fn page_size() -> u64 {
    static PAGE: std::sync::OnceLock<u64> = std::sync::OnceLock::new();
    // SAFETY: sysconf has no preconditions.
    *PAGE.get_or_init(|| match unsafe { libc::sysconf(libc::_SC_PAGESIZE) } {
        n if n > 0 => n as u64,
        _ => 4096,
    })
}

impl Stream for FilesystemReader {
    type Item = Result<Bytes>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = self.get_mut();
        if let Some(populating) = this.populating.as_mut() {
            let outcome = match Pin::new(populating).poll(cx) {
                Poll::Pending => return Poll::Pending,
                Poll::Ready(outcome) => outcome,
            };
            this.populating = None;
            if let Err(e) = outcome {
                this.rest = Bytes::new();
                return Poll::Ready(Some(Err(Error::backend(
                    DRIVER,
                    format!("blob read task failed: {e}"),
                ))));
            }
        }
        if this.rest.is_empty() {
            return Poll::Ready(None);
        }
        let item = this.rest.split_to(this.rest.len().min(READ_CHUNK));
        this.populate_next();
        Poll::Ready(Some(Ok(item)))
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        let items = self.rest.len().div_ceil(READ_CHUNK);
        (items, Some(items))
    }
}

#[cfg(test)]
mod tests {
    use std::io::Write;

    use futures::StreamExt;

    use super::*;
    use crate::oci::DigestAlgorithm;

    fn blob(len: usize) -> (tempfile::NamedTempFile, Vec<u8>) {
        let data: Vec<u8> = (0..len).map(|i| (i * 31 % 251) as u8).collect();
        let mut file = tempfile::NamedTempFile::new().unwrap();
        file.write_all(&data).unwrap();
        (file, data)
    }

    async fn read(path: &Path, range: Option<ByteRange>) -> Result<Vec<Bytes>> {
        let path = path.to_owned();
        let digest = Digest::compute(DigestAlgorithm::Sha256, b"");
        let reader =
            tokio::task::spawn_blocking(move || FilesystemReader::open(&path, &digest, range))
                .await
                .unwrap()?;
        let items: Vec<Result<Bytes>> = reader.collect().await;
        items.into_iter().collect()
    }

    /// Mapped and buffered reads, at page-unaligned offsets, across item boundaries.
    #[tokio::test]
    async fn mapped_and_buffered_reads_yield_exactly_the_range() {
        let (file, data) = blob(2 * READ_CHUNK + 4099);
        let whole = read(file.path(), None).await.unwrap();
        assert_eq!(whole.len(), 3);
        assert!(whole.iter().all(|item| item.len() <= READ_CHUNK));
        assert_eq!(whole.concat(), data);
        let page = page_size() as usize;
        for (start, end) in [
            (0, 0),
            (1, MAP_MIN as usize),
            (page - 1, page + 1),
            (page + 7, page + 7 + MAP_MIN as usize),
            (READ_CHUNK - 3, 2 * READ_CHUNK + 5),
            (data.len() - 1, data.len() - 1),
        ] {
            let range = ByteRange {
                start: start as u64,
                end: end as u64,
            };
            let got = read(file.path(), Some(range)).await.unwrap().concat();
            assert_eq!(got, &data[start..=end], "{start}-{end}");
        }
        let beyond = ByteRange {
            start: 0,
            end: data.len() as u64,
        };
        assert!(matches!(
            read(file.path(), Some(beyond)).await,
            Err(Error::RangeInvalid { .. })
        ));
    }

    /// An item keeps its bytes after the reader, the file and its name are gone.
    #[tokio::test]
    async fn items_outlive_the_reader_and_the_file() {
        let (file, data) = blob(READ_CHUNK + 1);
        let items = read(file.path(), None).await.unwrap();
        drop(file);
        assert_eq!(items.concat(), data);
    }
}
