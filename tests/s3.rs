//! S3 driver tests against a real S3 server (moto in CI, any S3-compatible store works).
//!
//! Configuration (all from the environment):
//! `S3_ENDPOINT` (required, e.g. `http://127.0.0.1:5050`), `S3_BUCKET` (default
//! `marina-test`, created if missing), `S3_REGION` (default `us-east-1`),
//! `S3_FORCE_PATH_STYLE` (default `true`), `AWS_ACCESS_KEY_ID` and `AWS_SECRET_ACCESS_KEY`.
//! Every test works below its own random prefix.
//!
//! ```sh
//! eval "$(scripts/start-moto.sh)"
//! cargo test --all-features --test s3
//! kill "$MOTO_PID"
//! ```
//!
//! Without `S3_ENDPOINT` every test prints that it was skipped and how to run it.
//!
//! The tests are grouped by topic in `tests/s3/`: [`uploads`] (chunked and monolithic
//! pushes), [`reads`], [`tags`], [`two_processes`] (two drivers on one bucket and prefix),
//! [`failures`] (and what they leave behind), [`faults`] (a fake endpoint injecting errors)
//! and [`throughput`]; [`env`] connects to the server under test and [`helpers`] holds what
//! the groups share.
#![cfg(feature = "s3")]

#[path = "common/delete_race.rs"]
mod delete_race;
#[path = "common/outage_proxy.rs"]
#[allow(dead_code)] // `take_down`: not used here
mod outage_proxy;
#[path = "common/session_race.rs"]
mod session_race;

// The modules live in `tests/s3/` (a crate root's `mod x;` would look for `tests/x.rs`).
#[path = "s3/env.rs"]
mod env;
#[path = "s3/helpers.rs"]
mod helpers;

#[path = "s3/failures.rs"]
mod failures;
#[path = "s3/faults.rs"]
mod faults;
#[path = "s3/reads.rs"]
mod reads;
#[path = "s3/tags.rs"]
mod tags;
#[path = "s3/throughput.rs"]
mod throughput;
#[path = "s3/two_processes.rs"]
mod two_processes;
#[path = "s3/uploads.rs"]
mod uploads;
