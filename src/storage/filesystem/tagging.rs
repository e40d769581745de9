//! Tags and push intents as hard links to their manifest records ([`Backend::write_tag`]),
//! with one directory sync for a tag and a staged record's name, none for an intent.
//!
//! The tag becomes another name of the manifest record, which starts with the digest: no
//! file to create (on ext4 without a journal, allocating inodes was most of a manifest push's
//! CPU, and a file created and removed per push, as an intent is, makes every later
//! allocation skip the recently freed inodes) and no data to sync, only the tag's directory.
//! A hard link keeps the record's bytes even if the record's own name is later replaced or
//! removed.
//!
//! [`Backend::write_tag`]: crate::storage::backend::Backend::write_tag

use std::path::PathBuf;
use std::sync::Arc;

use bytes::Bytes;

use crate::error::{Error, Result};
use crate::storage::backend::TagTarget;
use crate::storage::layout::{Key, KeyClass};

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
    /// What the tag holds if it cannot be a hard link: the digest.
    digest: Bytes,
    /// Whether the name must be durable: `false` for a push intent.
    durable: bool,
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
            digest: Bytes::from(target.digest.as_str().to_owned()),
            durable: tag.class() != KeyClass::Intent,
        })
    }

    /// Whether the work is cheap enough for the calling task, like a small read: a name
    /// that is not synced, in a directory that exists.
    pub(super) fn is_inline(&self) -> bool {
        !self.durable && paths::parent_exists(&self.root, &self.rel)
    }

    /// Points the tag at the record, making the record (content and name) and the tag
    /// durable.
    ///
    /// The record's file is synced first: a
    /// [staged](crate::storage::backend::Backend::stage_record) record's is not yet. For a
    /// written one nothing is left to write, though ext4 may still flush the disk's cache, a
    /// cost only the tagging of a stored manifest (`tag_manifest`) pays. A tag of a sha256
    /// manifest lives in the record's own directory (see [`layout`](crate::storage::layout)):
    /// a new tag is linked in place and the directory synced once for both names, one
    /// directory sync fewer than making the record's name durable first. So a push by tag
    /// costs two syncs in one trip to the blocking pool, and a record that another process
    /// staged and has not tagged yet is made durable too. A crash before the sync may leave
    /// either name alone: the record alone is an untagged manifest; the
    /// tag alone (only on a filesystem that does not make a new file's name durable with the
    /// file, as Linux's ext4, XFS and btrfs do) is a new tag naming a manifest that reads as
    /// unknown, as if the push had not happened. An *existing* tag is replaced only once the
    /// record's name is durable, so a crash never takes a tag's old manifest away.
    ///
    /// A record in another directory (sha512) has its directory synced first, then the tag
    /// is linked and its own directory synced. A push intent is linked and nothing synced.
    pub(super) fn run(self) -> Result<()> {
        if !self.durable {
            return atomic::link_volatile(&self.root, &self.rel, &self.record)
                .or_else(|e| self.store_digest(e));
        }
        // A staged record's content is not synced yet (see `stage_record`).
        atomic::fsync_file(&self.record)?;
        let (tag_dir, tag_name) = paths::split_parent(&self.rel);
        let (record_dir, _) = paths::split_parent(&self.record_rel);
        let dir = paths::join(&self.root, record_dir.unwrap_or(""));
        if tag_dir != record_dir {
            atomic::fsync_existing_dir(&dir)?;
            return atomic::link_atomic(&self.root, &self.rel, &self.record)
                .or_else(|e| self.store_digest(e));
        }
        atomic::link_in(&dir, tag_name, &self.record, || atomic::fsync_dir(&dir)).or_else(|e| {
            atomic::fsync_existing_dir(&dir)?;
            self.store_digest(e)
        })
    }

    /// The tag as a file holding the digest, which reads the same as the record, for when
    /// it cannot be a hard link (`e`): the record is gone (a concurrent deletion; the tag
    /// then resolves to "manifest unknown" like a tag of a deleted manifest) or the file
    /// system has no hard links.
    fn store_digest(&self, e: Error) -> Result<()> {
        tracing::debug!(error = %e, "tag as hard link failed; storing the digest");
        atomic::replace(&self.root, &self.rel, &self.digest, self.durable)
    }
}
