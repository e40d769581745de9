//! Unit tests of the atomic writes: the new bytes under the name and no temporary file left,
//! planted symbolic links replaced rather than followed, a directory in the way left as it
//! was, and one whole record after concurrent writers.

use std::fs;
use std::path::{Path, PathBuf};

use super::*;

#[test]
fn write_replace_and_no_temp_left() {
    let root = tempfile::tempdir().unwrap();
    write_atomic(root.path(), "a/b/c", b"one").unwrap();
    write_atomic(root.path(), "a/b/c", b"two").unwrap();
    assert_eq!(fs::read(root.path().join("a/b/c")).unwrap(), b"two");
    assert_only_entry(&root.path().join("a/b"), "c");
    remove_durable(&root.path().join("a/b/c")).unwrap();
    remove_durable(&root.path().join("a/b/c")).unwrap();
    remove_durable(&root.path().join("nope/x")).unwrap();
    assert!(!root.path().join("a/b/c").exists());
}

/// Asserts that `dir` holds exactly one entry, `name` (no temporary file left).
fn assert_only_entry(dir: &Path, name: &str) {
    let names: Vec<_> = fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(names, vec![std::ffi::OsString::from(name)]);
}

/// Replaces the file at `at` with a symbolic link to a new file `victim` (content
/// `keep`) in `outside`; returns the victim's path.
fn plant_symlink(outside: &Path, at: &Path) -> PathBuf {
    let victim = outside.join("victim");
    fs::write(&victim, b"keep").unwrap();
    fs::remove_file(at).unwrap();
    std::os::unix::fs::symlink(&victim, at).unwrap();
    victim
}

/// A volatile replace (an upload session record) exchanges the new file with an
/// existing one and removes the old: the name holds the new bytes, no temporary file is
/// left, a planted symbolic link is replaced rather than followed, and a directory in
/// the way fails the write and stays as it was.
#[test]
fn volatile_replace_exchanges_and_leaves_nothing_behind() {
    let root = tempfile::tempdir().unwrap();
    let outside = tempfile::tempdir().unwrap();
    let target = root.path().join("d/state");
    replace(root.path(), "d/state", b"first", false).unwrap();
    for value in [&b"second, longer"[..], b"3"] {
        replace(root.path(), "d/state", value, false).unwrap();
        assert_eq!(fs::read(&target).unwrap(), value);
        assert_only_entry(&root.path().join("d"), "state");
    }
    let victim = plant_symlink(outside.path(), &target);
    replace(root.path(), "d/state", b"after link", false).unwrap();
    assert_eq!(fs::read(&victim).unwrap(), b"keep");
    assert!(fs::symlink_metadata(&target).unwrap().is_file());
    assert_eq!(fs::read(&target).unwrap(), b"after link");
    assert_only_entry(&root.path().join("d"), "state");

    fs::remove_file(&target).unwrap();
    fs::create_dir(&target).unwrap();
    fs::write(target.join("inside"), b"x").unwrap();
    assert!(replace(root.path(), "d/state", b"over a directory", false).is_err());
    assert_eq!(fs::read(target.join("inside")).unwrap(), b"x");
    assert_only_entry(&root.path().join("d"), "state");
}

#[test]
fn verified_write_creates_in_place_and_replaces_whatever_else_is_there() {
    let root = tempfile::tempdir().unwrap();
    let outside = tempfile::tempdir().unwrap();
    let path = root.path().join("m/r");
    write_verified(root.path(), "m/r", b"record").unwrap();
    assert_eq!(fs::read(&path).unwrap(), b"record");
    let inode = |p: &Path| std::os::unix::fs::MetadataExt::ino(&fs::metadata(p).unwrap());
    let first = inode(&path);
    // A re-push of the same record keeps the file.
    write_verified(root.path(), "m/r", b"record").unwrap();
    assert_eq!(inode(&path), first);
    // A torn leftover (a crash, or a failed write) is replaced.
    fs::write(&path, b"rec").unwrap();
    write_verified(root.path(), "m/r", b"record").unwrap();
    assert_eq!(fs::read(&path).unwrap(), b"record");
    // Other content (same digest, other media type) is replaced too.
    write_verified(root.path(), "m/r", b"record2").unwrap();
    assert_eq!(fs::read(&path).unwrap(), b"record2");
    // A symbolic link at the name is replaced, never followed.
    let victim = plant_symlink(outside.path(), &path);
    write_verified(root.path(), "m/r", b"record").unwrap();
    assert!(fs::symlink_metadata(&path).unwrap().is_file());
    assert_eq!(fs::read(&path).unwrap(), b"record");
    assert_eq!(fs::read(&victim).unwrap(), b"keep");
    assert_only_entry(&root.path().join("m"), "r");
}

/// Concurrent writers of one record (a manifest pushed by several clients or processes
/// at once; here also with two contents, as with two media types for one digest) all
/// succeed and leave one of the records whole, and no temporary file; a reader meanwhile
/// sees nothing, a prefix (a write in progress, which fails verification) or a whole
/// record.
#[test]
fn concurrent_verified_writes_of_one_record_leave_it_whole() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    let one: Vec<u8> = (0..64 * 1024).map(|i| (i % 251) as u8).collect();
    let two: Vec<u8> = one.iter().map(|b| b ^ 0xff).collect();
    let path = root.join("m/r");
    let is_one_or_prefix = |seen: &[u8]| one.starts_with(seen) || two.starts_with(seen);
    std::thread::scope(|scope| {
        for writer in 0..4 {
            let value = if writer % 2 == 0 { &one } else { &two };
            scope.spawn(move || {
                for _ in 0..25 {
                    write_verified(root, "m/r", value).unwrap();
                }
            });
        }
        scope.spawn(|| {
            for _ in 0..500 {
                if let Ok(seen) = fs::read(&path) {
                    assert!(is_one_or_prefix(&seen), "not a prefix of either record");
                }
            }
        });
    });
    let last = fs::read(&path).unwrap();
    assert!(last == one || last == two, "the record is not whole");
    assert_only_entry(&root.join("m"), "r");
}

#[test]
fn links_a_new_name_in_place_and_replaces_an_existing_one() {
    let root = tempfile::tempdir().unwrap();
    let outside = tempfile::tempdir().unwrap();
    write_verified(root.path(), "m/one", b"first").unwrap();
    write_verified(root.path(), "m/two", b"second").unwrap();
    let tag = root.path().join("t/latest");
    link_atomic(root.path(), "t/latest", &root.path().join("m/one")).unwrap();
    assert_eq!(fs::read(&tag).unwrap(), b"first");
    link_atomic(root.path(), "t/latest", &root.path().join("m/two")).unwrap();
    assert_eq!(fs::read(&tag).unwrap(), b"second");
    let victim = plant_symlink(outside.path(), &tag);
    link_atomic(root.path(), "t/latest", &root.path().join("m/one")).unwrap();
    assert!(fs::symlink_metadata(&tag).unwrap().is_file());
    assert_eq!(fs::read(&tag).unwrap(), b"first");
    assert_eq!(fs::read(&victim).unwrap(), b"keep");
    assert_only_entry(&root.path().join("t"), "latest");
    assert!(link_atomic(root.path(), "t/gone", &root.path().join("m/none")).is_err());
    assert_only_entry(&root.path().join("t"), "latest");
}
