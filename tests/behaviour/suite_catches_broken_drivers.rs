//! The suite catches a broken driver and names the failing case: the in-memory backend with
//! its listings in descending order (a contract violation) must fail the tag cases, by name.

use marina_distribution::error::Result;
use marina_distribution::storage::testsuite::{self, DriverFactory, Factory};
use marina_distribution::storage::{Engine, EngineOptions};

use crate::common::suite::{DescendingListing, panic_message};

struct BrokenFactory;

impl Factory for BrokenFactory {
    type Instance = Engine<DescendingListing>;
    type Storage = ();

    async fn create_storage(&self) -> Result<()> {
        Ok(())
    }
    async fn open(&self, _: &()) -> Result<Engine<DescendingListing>> {
        Ok(Engine::new(
            DescendingListing::default(),
            EngineOptions::default(),
        ))
    }
    fn persistent(&self) -> bool {
        false
    }
}

impl DriverFactory for BrokenFactory {
    async fn open_configured(&self, _: &()) -> Result<Engine<DescendingListing>> {
        Ok(Engine::new(
            DescendingListing::default(),
            testsuite::configured_options(),
        ))
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn run_all_names_the_failing_cases() {
    let message = panic_message(tokio::spawn(async {
        testsuite::run_all(&BrokenFactory).await
    }))
    .await;
    assert!(
        message.contains("behaviour case `tags_sorted_and_paginated` failed"),
        "message does not name the case: {message}"
    );
    assert!(
        !message.contains("`blob_put_get_stat_delete`"),
        "a case the defect does not touch was reported: {message}"
    );
}
