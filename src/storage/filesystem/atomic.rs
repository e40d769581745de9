//! Atomic, durable replacement of small files, and directory syncing.
//!
//! A write goes to a fresh temporary file in the target's own directory (so the rename
//! never crosses a filesystem), is synced, renamed over the target (atomic: a reader opens
//! either the old or the new file, never a partial one), and the directory is synced so the
//! new entry survives a crash. Two shortcuts skip the temporary name where nothing can be
//! seen half-made: a new hard link is created in place ([`link_atomic`]), and an object
//! whose reader verifies it is created in place ([`write_verified`]). A write that is not
//! made durable at all (an upload session record) swaps its file with the existing one
//! instead of renaming over it ([`Prepared::publish`](replace::Prepared::publish)), which
//! spares ext4's forced writeback on rename-over.
//!
//! In pieces: where a write lands ([`temp`]), replacing a file ([`replace`](mod@replace)),
//! new names for existing files ([`link`]), verified objects ([`verified`]), and syncs and
//! removals ([`sync`]).

mod link;
mod replace;
mod sync;
mod temp;
#[cfg(test)]
mod tests;
mod verified;

pub(super) use link::{link_atomic, link_in, link_volatile};
pub(super) use replace::{replace, replace_with, write_atomic};
pub(super) use sync::{
    fsync_dir, fsync_existing_dir, fsync_file, missing, remove_durable, remove_volatile,
};
pub(super) use verified::{create_verified_unsynced, write_verified};
