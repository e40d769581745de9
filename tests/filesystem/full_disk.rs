//! A full filesystem (a small tmpfs, mounted for the test: the tests run as root): a
//! collection still runs, on the reserve it keeps, and the reserve is made again once there
//! is room.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use marina_distribution::StorageDriver;
use marina_distribution::oci::Reference;
use marina_distribution::storage::lifecycle::{GcOptions, Lifecycle};

use crate::helpers::{open, push_empty_config, repo, sha256};

/// The reserve's name and size (`src/storage/filesystem/reserve.rs`).
const RESERVE: &str = "gc-reserve";
const RESERVE_BYTES: u64 = 16 << 20;

/// A tmpfs of `size` mounted on a temporary directory, unmounted when dropped.
struct Tmpfs {
    dir: tempfile::TempDir,
}

impl Tmpfs {
    fn mount(size: &str) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let status = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(dir.path())
            .status()
            .expect("running mount");
        assert!(
            status.success(),
            "mounting a tmpfs (the tests run as root): {status}"
        );
        Self { dir }
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(self.dir.path()).status();
    }
}

/// Writes a file (`filler`, replacing it if there is one) until the filesystem is full;
/// returns its path.
fn fill(dir: &Path) -> PathBuf {
    let path = dir.join("filler");
    let mut file = std::fs::File::create(&path).unwrap();
    let chunk = vec![7u8; 64 << 10];
    loop {
        match file.write_all(&chunk).and_then(|()| file.sync_all()) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::StorageFull => return path,
            Err(e) => panic!("filling: {e}"),
        }
    }
}

fn options() -> GcOptions {
    GcOptions {
        grace: Duration::ZERO,
        ..GcOptions::default()
    }
}

#[tokio::test]
async fn a_collection_runs_on_a_full_filesystem_on_its_reserve() {
    let fs = Tmpfs::mount("24m");
    let root = fs.path().join("root");
    let driver = open(&root).await;
    // A collection makes the reserve.
    driver.collect_garbage(&options()).await.unwrap();
    let reserve = root.join(RESERVE);
    assert_eq!(std::fs::metadata(&reserve).unwrap().len(), RESERVE_BYTES);
    // An image whose manifest is deleted: its config is garbage.
    let r = repo("full/disk");
    let manifest = push_empty_config(&driver, &r).await;
    let digest = sha256(manifest.as_bytes());
    driver
        .put_manifest(
            &r,
            &Reference::Digest(digest.clone()),
            Some("application/vnd.oci.image.manifest.v1+json"),
            manifest.into(),
        )
        .await
        .unwrap();
    driver.delete_manifest(&r, &digest).await.unwrap();
    let filler = fill(fs.path());
    // No block left for the condemned set: the reserve is released for it, and made again
    // at the end (its room is free again once the set is removed).
    let report = driver.collect_garbage(&options()).await.unwrap();
    assert_eq!(report.blobs, 1, "{report:?}");
    assert_eq!(std::fs::metadata(&reserve).unwrap().len(), RESERVE_BYTES);
    // Without room for it, a collection goes without; with room, the next one makes it.
    std::fs::remove_file(&reserve).unwrap();
    assert_eq!(fill(fs.path()), filler); // the reserve's room taken too
    driver.collect_garbage(&options()).await.unwrap();
    assert!(!reserve.exists());
    std::fs::remove_file(filler).unwrap();
    driver.collect_garbage(&options()).await.unwrap();
    assert_eq!(std::fs::metadata(&reserve).unwrap().len(), RESERVE_BYTES);
    // A dry run changes nothing, the reserve included.
    std::fs::remove_file(&reserve).unwrap();
    let dry = GcOptions {
        dry_run: true,
        ..options()
    };
    driver.collect_garbage(&dry).await.unwrap();
    assert!(!reserve.exists());
}
