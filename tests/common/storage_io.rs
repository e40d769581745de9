//! What the storage-level tests share beyond one driver: a blob read whole through a
//! driver, and the files below a directory.

use std::path::{Path, PathBuf};

use futures::StreamExt;
use marina_distribution::oci::{Digest, RepositoryName};
use marina_distribution::storage::StorageDriver;

/// The bytes of blob `digest` read through `d`.
pub async fn read_all<D: StorageDriver>(d: &D, repo: &RepositoryName, digest: &Digest) -> Vec<u8> {
    let read = d.get_content(repo, digest, None).await.expect("read");
    let mut out = Vec::new();
    let mut stream = std::pin::pin!(read.stream);
    while let Some(chunk) = stream.next().await {
        out.extend_from_slice(&chunk.expect("chunk"));
    }
    out
}

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
