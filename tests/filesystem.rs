//! Filesystem-specific tests of the filesystem driver: what the generic behaviour suite
//! cannot see because it only uses the trait — files on disk, temporary files, a second
//! driver instance on the same root, failed appends, symbolic links planted below the root.
//!
//! The tests are grouped by topic in `tests/filesystem/`: [`resume`] (uploads continued after
//! a restart, a failed or abandoned append, a crash), [`on_disk`] (what pushes leave on
//! disk, and when), [`reads`], [`layout`] (the root and nested repositories),
//! [`two_processes`] (one session changed through two instances), [`hostile_disk`]
//! (planted symbolic links, a failing disk) and [`full_disk`] (a collection on a full
//! filesystem); [`helpers`] holds what the
//! groups share, some of it from `tests/common/` ([`storage_io`]).

// The modules live in `tests/filesystem/` (a crate root's `mod x;` would look for `tests/x.rs`).
#[path = "common/delete_race.rs"]
mod delete_race;
#[path = "filesystem/helpers.rs"]
mod helpers;
#[path = "common/storage_io.rs"]
mod storage_io;

#[path = "filesystem/full_disk.rs"]
mod full_disk;
#[path = "filesystem/hostile_disk.rs"]
mod hostile_disk;
#[path = "filesystem/layout.rs"]
mod layout;
#[path = "filesystem/on_disk.rs"]
mod on_disk;
#[path = "filesystem/reads.rs"]
mod reads;
#[path = "filesystem/resume.rs"]
mod resume;
#[path = "filesystem/two_processes.rs"]
mod two_processes;
