//! What the storage-level tests share beyond one driver: the files below a directory.

use std::path::{Path, PathBuf};

/// Every regular file (and symbolic link) below `dir`, recursively; nothing when `dir` does
/// not exist. A link is listed, not followed.
pub fn files_under(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let Ok(entries) = std::fs::read_dir(dir) else {
        return out;
    };
    for entry in entries {
        let entry = entry.unwrap();
        let kind = entry.file_type().unwrap();
        if kind.is_dir() {
            out.extend(files_under(&entry.path()));
        } else {
            out.push(entry.path());
        }
    }
    out
}
