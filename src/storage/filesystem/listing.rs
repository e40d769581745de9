//! Directory listings: `list` (one level, sorted, paginated), `any_named` (one level) and
//! `any_under` (recursive).
//!
//! Only regular files are objects: directories, symbolic links and hidden entries (this
//! driver's temporary files start with `.`) are skipped.

use std::collections::BinaryHeap;
use std::fs;
use std::path::Path;

use crate::error::Result;

use super::atomic::missing;
use super::io_err;
use super::paths::is_hidden;

/// Names of the objects directly in `dir` whose file names start with `prefix`, with the
/// prefix removed, in ascending byte order, strictly after `start_after`, at most `limit`.
/// A missing directory lists as empty.
///
/// With a `limit` (a page of tags), only the `limit` smallest names are kept while the
/// directory is read (a bounded max-heap): a page costs one pass over the directory and
/// `O(entries · log limit)` comparisons, not a sort of every entry.
pub(super) fn list(
    dir: &Path,
    prefix: &str,
    start_after: Option<&str>,
    limit: Option<usize>,
) -> Result<Vec<String>> {
    let mut page = Page::new(limit);
    for_each_object(dir, prefix, |name| {
        if start_after.is_none_or(|after| name.as_str() > after) {
            page.offer(name);
        }
        true
    })?;
    Ok(page.into_sorted())
}

/// The smallest names offered, up to an optional number of them.
enum Page {
    All(Vec<String>),
    /// Max-heap of the `limit` smallest names so far: its top is the one to drop next.
    Smallest(BinaryHeap<String>, usize),
}

impl Page {
    fn new(limit: Option<usize>) -> Self {
        match limit {
            None => Self::All(Vec::new()),
            Some(limit) => Self::Smallest(BinaryHeap::with_capacity(limit.min(1024)), limit),
        }
    }

    fn offer(&mut self, name: String) {
        match self {
            Self::All(names) => names.push(name),
            Self::Smallest(heap, limit) => {
                if heap.len() < *limit {
                    heap.push(name);
                } else if let Some(mut largest) = heap.peek_mut()
                    && name < *largest
                {
                    *largest = name;
                }
            }
        }
    }

    /// The names kept, in ascending byte order (`String`'s order, as the contract and tag
    /// pagination require).
    fn into_sorted(self) -> Vec<String> {
        match self {
            Self::All(mut names) => {
                names.sort_unstable();
                names
            }
            Self::Smallest(heap, _) => heap.into_sorted_vec(),
        }
    }
}

/// Whether `dir` directly holds an object whose file name starts with `prefix`.
pub(super) fn any_named(dir: &Path, prefix: &str) -> Result<bool> {
    let mut found = false;
    for_each_object(dir, prefix, |_| {
        found = true;
        false
    })?;
    Ok(found)
}

/// Calls `visit` with the name (prefix removed) of each object directly in `dir` whose file
/// name starts with `prefix`, in directory order, until it returns `false`. A missing
/// directory has no objects.
fn for_each_object(dir: &Path, prefix: &str, mut visit: impl FnMut(String) -> bool) -> Result<()> {
    let entries = match fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) if missing(&e) => return Ok(()),
        Err(e) => return Err(io_err("listing", dir, e)),
    };
    for entry in entries {
        let entry = entry.map_err(|e| io_err("listing", dir, e))?;
        // `DirEntry::file_type` does not follow symbolic links.
        let kind = entry.file_type().map_err(|e| io_err("listing", dir, e))?;
        if !kind.is_file() {
            continue;
        }
        // Keys are ASCII: a name that is not UTF-8 was not written by this driver.
        let Ok(mut name) = entry.file_name().into_string() else {
            continue;
        };
        if is_hidden(&name) || !name.starts_with(prefix) {
            continue;
        }
        name.drain(..prefix.len());
        if !visit(name) {
            break;
        }
    }
    Ok(())
}

/// Whether any object (regular, non-hidden file) exists anywhere below `dir`.
pub(super) fn any_under(dir: &Path) -> Result<bool> {
    let entries = match fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) if missing(&e) => return Ok(false),
        Err(e) => return Err(io_err("listing", dir, e)),
    };
    let mut subdirs = Vec::new();
    for entry in entries {
        let entry = match entry {
            Ok(entry) => entry,
            Err(e) if missing(&e) => continue,
            Err(e) => return Err(io_err("listing", dir, e)),
        };
        let kind = entry.file_type().map_err(|e| io_err("listing", dir, e))?;
        let name = entry.file_name();
        if name.as_encoded_bytes().first() == Some(&b'.') {
            continue;
        }
        if kind.is_file() {
            return Ok(true);
        }
        if kind.is_dir() {
            subdirs.push(entry.path());
        }
    }
    for sub in subdirs {
        if any_under(&sub)? {
            return Ok(true);
        }
    }
    Ok(false)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lists_files_only_sorted_and_paginated() {
        let root = tempfile::tempdir().unwrap();
        let d = root.path();
        for name in ["b", "a", "v1.0", "v1", "B", ".tmp-v1-0123"] {
            fs::write(d.join(name), b"x").unwrap();
        }
        fs::create_dir(d.join("sub")).unwrap();
        assert_eq!(
            list(d, "", None, None).unwrap(),
            ["B", "a", "b", "v1", "v1.0"]
        );
        assert_eq!(list(d, "", Some("a"), Some(2)).unwrap(), ["b", "v1"]);
        assert_eq!(list(d, "", Some("v1"), None).unwrap(), ["v1.0"]);
        assert!(list(&d.join("missing"), "", None, None).unwrap().is_empty());
    }

    #[test]
    fn a_limited_page_holds_the_smallest_names_after_the_start() {
        let root = tempfile::tempdir().unwrap();
        let d = root.path();
        // Created in an order unlike byte order; the directory yields them in hash order.
        let mut names: Vec<String> = (0..300).map(|i| format!("v{}", (i * 7919) % 300)).collect();
        for name in &names {
            fs::write(d.join(name), b"x").unwrap();
        }
        names.sort();
        for (after, limit) in [
            (None, 1),
            (None, 10),
            (Some("v150"), 7),
            (Some("v99"), 1000),
        ] {
            let expected: Vec<&String> = names
                .iter()
                .filter(|n| after.is_none_or(|a| n.as_str() > a))
                .take(limit)
                .collect();
            assert_eq!(
                list(d, "", after, Some(limit))
                    .unwrap()
                    .iter()
                    .collect::<Vec<_>>(),
                expected,
                "after {after:?}, limit {limit}"
            );
        }
        assert_eq!(list(d, "", None, None).unwrap(), names);
        assert!(list(d, "", Some("v99"), Some(5)).unwrap().is_empty());
    }

    #[test]
    fn lists_and_finds_only_names_with_the_prefix_which_it_removes() {
        let root = tempfile::tempdir().unwrap();
        let d = root.path();
        for name in [
            "tag-v2",
            "0a1b",
            "tag-v1",
            "tag-",
            "tags-x",
            ".tmp-tag-v3-01",
        ] {
            fs::write(d.join(name), b"x").unwrap();
        }
        fs::create_dir(d.join("tag-dir")).unwrap();
        assert_eq!(list(d, "tag-", None, None).unwrap(), ["", "v1", "v2"]);
        assert_eq!(list(d, "tag-", Some("v1"), None).unwrap(), ["v2"]);
        assert_eq!(list(d, "tag-", Some(""), Some(1)).unwrap(), ["v1"]);
        assert!(any_named(d, "tag-").unwrap());
        assert!(!any_named(d, "nothing-").unwrap());
        assert!(!any_named(&d.join("missing"), "tag-").unwrap());
        let only_hidden_and_dirs = tempfile::tempdir().unwrap();
        fs::write(only_hidden_and_dirs.path().join(".tmp-tag-a-1"), b"x").unwrap();
        fs::create_dir(only_hidden_and_dirs.path().join("tag-b")).unwrap();
        assert!(!any_named(only_hidden_and_dirs.path(), "tag-").unwrap());
    }

    #[test]
    fn any_under_is_recursive_and_ignores_temp_files() {
        let root = tempfile::tempdir().unwrap();
        let d = root.path();
        assert!(!any_under(&d.join("missing")).unwrap());
        fs::create_dir_all(d.join("x/y/z")).unwrap();
        assert!(!any_under(&d.join("x")).unwrap());
        fs::write(d.join("x/y/z/.tmp-a-1"), b"x").unwrap();
        assert!(!any_under(&d.join("x")).unwrap());
        fs::write(d.join("x/y/z/a"), b"x").unwrap();
        assert!(any_under(&d.join("x")).unwrap());
    }
}
