//! Tags as hard links to their manifest records ([`Backend::write_tag`]), and a push by tag
//! that stores the record and the tag with one directory sync for both.
//!
//! The tag becomes another name of the manifest record, which starts with the digest: no
//! file to create (on ext4 without a journal, allocating inodes was most of a manifest push's
//! CPU) and no data to sync, only the tag's directory. A hard link keeps the record's bytes
//! even if the record's own name is later replaced or removed.
//!
//! [`Backend::write_tag`]: crate::storage::backend::Backend::write_tag

use std::path::PathBuf;
use std::sync::Arc;

use bytes::Bytes;

use crate::error::{Error, Result};
use crate::storage::backend::TagTarget;
use crate::storage::layout::Key;

use super::{atomic, paths};

/// Pointing a tag at a manifest record, prepared on the async side and run on the blocking
/// pool.
pub(super) struct Tagging {
    root: Arc<PathBuf>,
    /// The tag's checked relative path.
    rel: String,
    /// The manifest record's checked relative path.
    record_rel: String,
    /// The manifest record's path.
    record: PathBuf,
    /// The record's bytes, when it is stored with the tag.
    new_record: Option<Bytes>,
    /// What the tag holds if it cannot be a hard link: the digest.
    digest: Bytes,
}

impl Tagging {
    /// Checks the keys and prepares the work.
    pub(super) fn new(root: &Arc<PathBuf>, tag: &Key, target: TagTarget<'_>) -> Result<Self> {
        let record_rel = paths::rel_path(target.record)?.to_owned();
        Ok(Self {
            root: Arc::clone(root),
            rel: paths::rel_path(tag)?.to_owned(),
            record: paths::join(root, &record_rel),
            record_rel,
            new_record: target.new_record,
            digest: Bytes::from(target.digest.as_str().to_owned()),
        })
    }

    /// Stores the record if it is new, then points the tag at it.
    pub(super) fn run(self) -> Result<()> {
        match self.new_record.clone() {
            Some(record) => self.store_with_record(&record),
            None => self.link(),
        }
    }

    /// Stores the manifest record (as [`atomic::write_verified`]) and then points the tag at
    /// it.
    ///
    /// A new tag of a sha256 manifest lives in the record's own directory (see
    /// [`layout`](crate::storage::layout)): the record is created and synced, the tag linked
    /// in place, and the directory synced once for both names, one directory sync fewer than
    /// storing the record and tagging it one after the other. Both names are durable when
    /// this returns. A crash before that may leave either one alone: the record alone is an
    /// untagged manifest; the tag alone (only on a filesystem that does not make a new file's
    /// name durable with the file, as Linux's ext4, XFS and btrfs do) is a new tag naming a
    /// manifest that reads as unknown, as if the push had not happened. An *existing* tag is
    /// replaced only once the record's name is durable, so a crash never takes a tag's old
    /// manifest away.
    fn store_with_record(self, record: &[u8]) -> Result<()> {
        let dir = atomic::create_verified(&self.root, &self.record_rel, record)?;
        let (tag_dir, tag_name) = paths::split_parent(&self.rel);
        if tag_dir != paths::split_parent(&self.record_rel).0 {
            // Another directory (a sha512 record): the record's name first, then the tag.
            atomic::fsync_dir(&dir)?;
            return self.link();
        }
        atomic::link_in(&dir, tag_name, &self.record, || atomic::fsync_dir(&dir)).or_else(|e| {
            atomic::fsync_dir(&dir)?;
            self.store_digest(e)
        })
    }

    /// Makes the tag another name of the record, which is durable (the engine tags only
    /// stored manifests).
    fn link(self) -> Result<()> {
        atomic::link_atomic(&self.root, &self.rel, &self.record).or_else(|e| self.store_digest(e))
    }

    /// The tag as a file holding the digest, which reads the same as the record, for when
    /// it cannot be a hard link (`e`): the record is gone (a concurrent deletion; the tag
    /// then resolves to "manifest unknown" like a tag of a deleted manifest) or the file
    /// system has no hard links.
    fn store_digest(&self, e: Error) -> Result<()> {
        tracing::debug!(error = %e, "tag as hard link failed; storing the digest");
        atomic::write_atomic(&self.root, &self.rel, &self.digest)
    }
}
