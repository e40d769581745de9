//! Broken records under load: the scenario of `gc_stress` for the reclaim of records left by
//! refused pushes (see "Broken records" in the `lifecycle` docs).

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, SystemTime};

use marina_distribution::error::Error;
use marina_distribution::oci::{Digest, Reference, RepositoryName};
use marina_distribution::storage::layout;
use marina_distribution::storage::lifecycle::{BROKEN_RECORD_AGE, GcOptions, Lifecycle};
use marina_distribution::{AnyDriver, StorageConfig, StorageDriver};
use rand::Rng;

use crate::common::sha256_digest;
use crate::{
    Acked, Counters, MANIFEST_TYPE, TAGS_PER_WRITER, WRITERS_PER_INSTANCE, check_by_digest,
    ensure_all, image, pick, stress_secs, under_load,
};

/// Makes the record of `digest` in `repo` look written long ago (older than a collection's
/// threshold for broken records), as a refused push's record becomes in time. Only done
/// by the one writer that pushes this manifest, once its push has returned.
fn age_record(root: &Path, repo: &RepositoryName, digest: &Digest) -> bool {
    let path = root.join(layout::manifest(repo, digest).as_str());
    let long_ago = SystemTime::now() - BROKEN_RECORD_AGE - Duration::from_secs(600);
    match std::fs::File::options().write(true).open(&path) {
        Ok(file) => {
            file.set_modified(long_ago).expect("set the record's time");
            true
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => false,
        Err(e) => panic!("opening {}: {e}", path.display()),
    }
}

fn remove_file(root: &Path, key: &layout::Key) {
    match std::fs::remove_file(root.join(key.as_str())) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => panic!("removing {}: {e}", key.as_str()),
    }
}

/// A writer of the broken-records scenario: pushes by digest only (no tag, no intent: what
/// the records' times protect), and when a push is refused, ages the record it left and,
/// half of the time, pushes the same manifest again at once (blobs first; up to three
/// pushes), while collections reclaim broken records. Holds a few manifests, deleting one
/// (checked whole first) now and then, so that blobs become reclaimable. Returns the
/// manifests acknowledged and not deleted.
async fn digest_writer(
    d: Arc<AnyDriver>,
    id: usize,
    stop: Arc<AtomicBool>,
    counters: Arc<Counters>,
    root: PathBuf,
) -> Vec<Acked> {
    let mut acked: Vec<Acked> = Vec::new();
    let mut n = 0u64;
    while !stop.load(Ordering::Relaxed) {
        n += 1;
        let (repo, picks, pause, from, action) = pick();
        if (action < 3 && !acked.is_empty()) || acked.len() > TAGS_PER_WRITER {
            let i = n as usize % acked.len();
            let damage = check_by_digest(&d, &acked[i]).await;
            counters.checked.fetch_add(1, Ordering::Relaxed);
            counters.damaged.lock().unwrap().extend(damage);
            let gone = acked.swap_remove(i);
            d.delete_manifest(&gone.repo, &gone.digest)
                .await
                .unwrap_or_else(|e| panic!("writer {id}: deleting {}: {e}", gone.digest));
            continue;
        }
        let (blobs, manifest) = image(id, n, picks);
        let digest = sha256_digest(&manifest);
        for _ in 0..3 {
            if !ensure_all(&d, &repo, &blobs, from, &counters).await {
                break;
            }
            tokio::time::sleep(Duration::from_millis(pause)).await;
            let reference = Reference::Digest(digest.clone());
            match d
                .put_manifest(&repo, &reference, Some(MANIFEST_TYPE), manifest.clone())
                .await
            {
                Ok(_) => {
                    counters.acknowledged.fetch_add(1, Ordering::Relaxed);
                    acked.push(Acked {
                        repo,
                        digest,
                        manifest,
                        blobs,
                    });
                    break;
                }
                Err(Error::ManifestBlobUnknown(_)) => {
                    counters.refused.fetch_add(1, Ordering::Relaxed);
                    if age_record(&root, &repo, &digest) {
                        counters.aged.fetch_add(1, Ordering::Relaxed);
                        // Most refusals leave a record whose blobs a collection then keeps
                        // (it references them); the config, this record's alone, goes as
                        // it would had the collection overtaken the push.
                        let config = &blobs[0].0;
                        remove_file(&root, &layout::layer_link(&repo, config));
                        remove_file(&root, &layout::blob_data(config));
                    }
                    if rand::rng().random_bool(0.5) {
                        break; // left behind, broken: for the collections
                    }
                }
                Err(e) if e.is_retryable() => {
                    counters.retried.fetch_add(1, Ordering::Relaxed);
                    break;
                }
                Err(e) => panic!("writer {id}: manifest push: {e}"),
            }
        }
    }
    acked
}

/// Broken records under load (see "Broken records" in the `lifecycle` docs), on one
/// filesystem root shared by two driver instances: writers push by digest; a refused push's
/// record is aged (its time set far back: the only way to reach the collections' age
/// threshold in seconds) and, half of the time, the same manifest pushed again at once
/// (blobs first), else left behind; collections (no
/// untagged deletion, no grace) run back to back on both instances, reclaiming broken
/// records and the blobs they leave. Every acknowledged manifest not deleted by its writer
/// must stay whole. Object stores cannot set an object's time, so this runs on the
/// filesystem only; the engine's code is the same for every driver.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn broken_records_are_reclaimed_under_load_and_nothing_acknowledged_is_lost() {
    let secs = stress_secs(8);
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("root");
    let config = StorageConfig::filesystem(root.clone());
    let (instances, counters, acked) = under_load(&config, secs, false, |d, id, stop, c| {
        digest_writer(d, id, stop, c, root.clone())
    })
    .await;
    let acked: Vec<Acked> = acked.into_iter().flatten().collect();
    let last = GcOptions {
        dry_run: false,
        delete_untagged: false,
        grace: Duration::ZERO,
        upload_ttl: None,
        manifest_ttl: None,
    };
    let report = instances[1]
        .collect_garbage(&last)
        .await
        .expect("last collection");
    counters
        .reclaimed_broken
        .fetch_add(report.broken, Ordering::Relaxed);
    let mut damaged = std::mem::take(&mut *counters.damaged.lock().unwrap());
    for a in &acked {
        damaged.extend(check_by_digest(&instances[0], a).await);
        counters.checked.fetch_add(1, Ordering::Relaxed);
    }
    let c = &counters;
    println!(
        "broken records stress (filesystem, 2 instances, {secs} s): writers={} gc_runs={} acknowledged={} checked={} refused={} aged={} retried={} reclaimed_blobs={} reclaimed_broken={} damaged={}",
        2 * WRITERS_PER_INSTANCE,
        c.gc_runs.load(Ordering::Relaxed),
        c.acknowledged.load(Ordering::Relaxed),
        c.checked.load(Ordering::Relaxed),
        c.refused.load(Ordering::Relaxed),
        c.aged.load(Ordering::Relaxed),
        c.retried.load(Ordering::Relaxed),
        c.reclaimed_blobs.load(Ordering::Relaxed),
        c.reclaimed_broken.load(Ordering::Relaxed),
        damaged.len()
    );
    damaged.truncate(20);
    assert!(
        damaged.is_empty(),
        "damaged (first 20):\n{}",
        damaged.join("\n")
    );
    assert!(
        c.acknowledged.load(Ordering::Relaxed) >= 20,
        "too few pushes"
    );
    // The run did what it is for: pushes were refused, and collections reclaimed what
    // they left.
    assert!(c.aged.load(Ordering::Relaxed) > 0, "no push was refused");
    assert!(
        c.reclaimed_broken.load(Ordering::Relaxed) > 0,
        "no broken record reclaimed"
    );
}
