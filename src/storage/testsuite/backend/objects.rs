//! Clauses 1-3: objects, atomic writes, durable writes.

use crate::storage::UploadId;
use crate::storage::backend::Backend;
use crate::storage::layout::{self, Key};
use crate::storage::testsuite::{ok, sha256, tag};

use super::{BackendFactory, Setup, bytes, repo};

/// One key of every class the engine writes as a small object, in `repo`.
fn keys_of_every_class(repo_name: &str) -> Vec<Key> {
    let r = repo(repo_name);
    let digest = sha256(repo_name.as_bytes());
    vec![
        layout::layer_link(&r, &digest),
        layout::manifest(&r, &digest),
        layout::tag(&r, &tag("v1")),
        layout::referrer(&r, &digest, &sha256(b"referrer")),
        layout::upload_state(&r, &UploadId::generate()),
    ]
}

/// Clause 1: `read` returns what the last `write` stored, `None` for a key never written or
/// removed; `exists` agrees; removing an absent key succeeds.
pub async fn contract_objects<F: BackendFactory>(factory: &F) {
    let s = Setup::new(factory).await;
    let b = &*s.d;
    for key in keys_of_every_class("contract/objects") {
        let what = format!("{key:?}");
        assert_eq!(ok!(b.read(&key).await), None, "{what} before any write");
        assert!(!ok!(b.exists(&key).await), "{what} exists before any write");
        ok!(b.remove(&key).await);
        ok!(b.write(&key, bytes(b"first")).await);
        assert_eq!(
            ok!(b.read(&key).await).as_deref(),
            Some(&b"first"[..]),
            "{what}"
        );
        assert!(ok!(b.exists(&key).await), "{what} after a write");
        ok!(b.write(&key, bytes(b"second, longer")).await);
        assert_eq!(
            ok!(b.read(&key).await).as_deref(),
            Some(&b"second, longer"[..]),
            "{what} replaced"
        );
        ok!(b.write(&key, bytes(b"")).await);
        assert_eq!(
            ok!(b.read(&key).await).as_deref(),
            Some(&b""[..]),
            "{what} emptied"
        );
        ok!(b.remove(&key).await);
        assert_eq!(ok!(b.read(&key).await), None, "{what} after removal");
        assert!(!ok!(b.exists(&key).await), "{what} exists after removal");
        ok!(b.remove(&key).await);
    }
}

/// Clause 2: a write replaces an object whole; readers running alongside see the old or the
/// new value, never a mix (manifest records excepted: the engine verifies those).
pub async fn contract_atomic_writes<F: BackendFactory>(factory: &F) {
    const LEN: usize = 64 * 1024;
    const WRITES: usize = 6;
    let s = Setup::new(factory).await;
    for key in keys_of_every_class("contract/atomic") {
        if key.class() == layout::KeyClass::ManifestRecord {
            continue;
        }
        let values = [vec![b'a'; LEN], vec![b'b'; LEN]];
        ok!(s.d.write(&key, bytes(&values[0])).await);
        let writer = {
            let (b, key, values) = (s.d.clone(), key.clone(), values.clone());
            tokio::spawn(async move {
                for i in 1..=WRITES {
                    ok!(b.write(&key, bytes(&values[i % 2])).await);
                }
            })
        };
        while !writer.is_finished() {
            let seen = ok!(s.d.read(&key).await).expect("an object once written stays");
            assert!(
                values.iter().any(|v| seen == v[..]),
                "{key:?}: a read saw a mix of two writes ({} bytes)",
                seen.len()
            );
            tokio::task::yield_now().await;
        }
        writer.await.expect("writer task");
        let last = ok!(s.d.read(&key).await).expect("written");
        assert_eq!(last, values[WRITES % 2], "{key:?}: the last write wins");
    }
}

/// Clause 3, as far as a test can see it: once `write` or `remove` returned, another
/// instance on the same storage (a restarted process) sees it, for every class.
pub async fn contract_durable_writes<F: BackendFactory>(factory: &F) {
    let s = Setup::new(factory).await;
    let kept = keys_of_every_class("contract/durable/kept");
    let removed = keys_of_every_class("contract/durable/removed");
    for key in kept.iter().chain(&removed) {
        ok!(s.d.write(key, bytes(key.as_str().as_bytes())).await);
    }
    for key in &removed {
        ok!(s.d.remove(key).await);
    }
    let other = s.second_instance().await;
    for key in &kept {
        assert_eq!(
            ok!(other.read(key).await).as_deref(),
            Some(key.as_str().as_bytes()),
            "{key:?} seen by another instance"
        );
    }
    for key in &removed {
        assert_eq!(ok!(other.read(key).await), None, "{key:?} removed");
    }
}
