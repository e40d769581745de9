//! Reloading files without a restart: on SIGHUP, or when a watched file's modification time,
//! size or inode changes (checked every few seconds, which also catches the symlink swaps of
//! Kubernetes secrets and `mv`-into-place updates).

use std::path::PathBuf;
use std::time::{Duration, SystemTime};

/// How often watched files are checked by default.
pub const DEFAULT_POLL_INTERVAL: Duration = Duration::from_secs(2);

#[derive(Debug, Clone, PartialEq, Eq)]
struct Stamp {
    modified: Option<SystemTime>,
    len: u64,
    inode: u64,
}

fn stamp(path: &PathBuf) -> Option<Stamp> {
    let meta = std::fs::metadata(path).ok()?;
    #[cfg(unix)]
    let inode = std::os::unix::fs::MetadataExt::ino(&meta);
    #[cfg(not(unix))]
    let inode = 0;
    Some(Stamp {
        modified: meta.modified().ok(),
        len: meta.len(),
        inode,
    })
}

/// Spawns a task that calls `reload` on SIGHUP and whenever one of `files` changes; it runs
/// until the runtime stops.
pub fn spawn(
    files: Vec<PathBuf>,
    interval: Duration,
    reload: impl Fn() + Send + Sync + 'static,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        #[cfg(unix)]
        let mut hangup =
            tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()).ok();
        let mut stamps: Vec<Option<Stamp>> = files.iter().map(stamp).collect();
        loop {
            #[cfg(unix)]
            let signalled = async {
                match hangup.as_mut() {
                    Some(h) => {
                        h.recv().await;
                    }
                    None => std::future::pending::<()>().await,
                }
            };
            #[cfg(not(unix))]
            let signalled = std::future::pending::<()>();
            let changed = tokio::select! {
                () = signalled => true,
                () = tokio::time::sleep(interval) => {
                    let now: Vec<Option<Stamp>> = files.iter().map(stamp).collect();
                    let changed = now != stamps;
                    stamps = now;
                    changed
                }
            };
            if changed {
                stamps = files.iter().map(stamp).collect();
                reload();
            }
        }
    })
}
