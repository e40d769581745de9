//! Instruction counts of `AnyDriver` against the concrete driver, for `valgrind --tool=callgrind`:
//! a measurement of dispatch overhead that does not depend on the machine's noise (criterion's
//! `dispatch` group measures time, which varies by a few percent from run to run here).
//!
//! ```text
//! bash benches/dispatch-instructions.sh        # builds, runs under callgrind, prints ratios
//! dispatch_instructions <inmemory|filesystem> <stat|get_4KiB> <concrete|any> <iterations>
//! ```
//!
//! The operation runs `iterations` times on a single-threaded runtime over the chosen driver
//! (the filesystem one in a fresh temporary directory). The script runs two iteration counts
//! and divides the difference of the instruction totals by the difference of the counts,
//! which cancels the setup. Callgrind counts user-space instructions only: for the
//! filesystem driver the kernel's share of each operation (its system calls) is left out,
//! so the overhead it reports there is an upper bound.

use std::hint::black_box;

use bytes::Bytes;
use futures::{Stream, StreamExt, stream};
use marina_distribution::oci::{Digest, DigestAlgorithm, RepositoryName};
use marina_distribution::storage::StorageConfig;
use marina_distribution::{AnyDriver, Result, StorageDriver};

/// Runs `operation` on `driver` `iterations` times.
async fn run<D: StorageDriver>(driver: &D, operation: &str, iterations: u64) {
    let repo = RepositoryName::parse("bench/dispatch").expect("valid name");
    let bytes = Bytes::from(vec![7u8; 4096]);
    let digest = Digest::compute(DigestAlgorithm::Sha256, &bytes);
    driver
        .put_content(&repo, &digest, None, stream::iter([Ok(bytes)]))
        .await
        .expect("put");
    for _ in 0..iterations {
        match operation {
            "stat" => {
                black_box(driver.stat(&repo, &digest).await.expect("stat"));
            }
            "get_4KiB" => {
                let read = driver.get_content(&repo, &digest, None).await.expect("get");
                drain(read.stream).await;
            }
            other => panic!("unknown operation {other}: stat or get_4KiB"),
        }
    }
}

async fn drain<S: Stream<Item = Result<Bytes>>>(stream: S) {
    let mut stream = std::pin::pin!(stream);
    while let Some(item) = stream.next().await {
        black_box(item.expect("item"));
    }
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    // `cargo bench` runs every bench target with `--bench`: nothing to do then.
    let [driver, operation, variant, iterations] = args.as_slice() else {
        eprintln!(
            "usage: dispatch_instructions <inmemory|filesystem> <stat|get_4KiB> <concrete|any> \
             <iterations>"
        );
        return;
    };
    let iterations: u64 = iterations.parse().expect("iterations: a number");
    let runtime = tokio::runtime::Builder::new_current_thread()
        .build()
        .expect("runtime");
    let dir = tempfile::tempdir().expect("temporary directory");
    let config = match driver.as_str() {
        "inmemory" => StorageConfig::inmemory(),
        "filesystem" => StorageConfig::filesystem(dir.path()),
        other => panic!("unknown driver {other}: inmemory or filesystem"),
    };
    runtime.block_on(async {
        let any = AnyDriver::from_config(&config).await.expect("driver");
        match (variant.as_str(), any) {
            ("any", any) => run(&any, operation, iterations).await,
            ("concrete", AnyDriver::InMemory(d)) => run(&d, operation, iterations).await,
            ("concrete", AnyDriver::Filesystem(d)) => run(&d, operation, iterations).await,
            (other, _) => panic!("unknown variant {other}: concrete or any"),
        }
    });
}
