//! The memory a full metadata cache holds: 100 000 link entries (the default `max_entries`)
//! with realistic keys, measured as the growth of the process's resident set. A
//! measurement, not a check of a bound: run it alone,
//!
//! ```sh
//! cargo test --release --all-features --test cache_memory -- --ignored --nocapture
//! ```

use marina_distribution::oci::{Digest, DigestAlgorithm, RepositoryName};
use marina_distribution::storage::layout;
use marina_distribution::storage::{CacheConfig, MetadataCache};

fn resident_kib() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").expect("/proc/self/status");
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmRSS")
}

#[test]
#[ignore = "a measurement, not a check: resident memory depends on the allocator and the machine, so CI does not run it; run alone: cargo test --all-features --test cache_memory -- --ignored --nocapture (docs/drivers.md records the figure)"]
fn memory_of_100_000_cached_links() {
    const ENTRIES: u64 = 100_000;
    let repos: Vec<RepositoryName> = (0..100)
        .map(|i| RepositoryName::parse(&format!("team-{i}/service-{i}")).unwrap())
        .collect();
    let keys: Vec<_> = (0..ENTRIES)
        .map(|i| {
            let digest = Digest::compute(DigestAlgorithm::Sha256, &i.to_le_bytes());
            layout::layer_link(&repos[(i % 100) as usize], &digest)
        })
        .collect();
    let key_bytes: usize = keys.iter().map(|k| k.as_str().len()).sum();
    let before = resident_kib();
    // Entries must outlive the fill (the default 5 s lifetime is shorter than a debug build's
    // fill of 100 000 entries).
    let cache = MetadataCache::new(
        &CacheConfig {
            ttl_ms: 3_600_000,
            ..CacheConfig::on()
        },
        None,
    );
    for (i, key) in keys.iter().enumerate() {
        cache.fill_size(cache.ticket(), key, i as u64);
    }
    cache.run_pending_tasks();
    let after = resident_kib();
    let stats = cache.stats();
    assert_eq!(
        stats.entries, ENTRIES,
        "every entry is kept (the default bound)"
    );
    let grown = (after - before) as f64 * 1024.0;
    eprintln!(
        "{} entries: resident set +{:.1} MiB ({:.0} bytes per entry, of which {} the key's \
         text; the keys were allocated before and are cloned into the cache)",
        stats.entries,
        grown / (1024.0 * 1024.0),
        grown / ENTRIES as f64,
        key_bytes / ENTRIES as usize
    );
    drop(keys);
}
