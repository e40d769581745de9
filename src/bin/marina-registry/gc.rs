//! The `gc` subcommand: one garbage collection over the configured storage.

use marina_distribution::AnyDriver;
use marina_distribution::error::ErrorChain;
use marina_distribution::storage::lifecycle::{GcOptions, Lifecycle};

use crate::settings::Settings;

/// `marina-registry gc`: one collection; the summary line is the last thing on stdout.
pub(crate) async fn collect_garbage(
    driver: &AnyDriver,
    settings: Settings,
    dry_run: bool,
) -> std::process::ExitCode {
    let log_format = settings.log_format;
    let options = GcOptions {
        dry_run,
        ..settings.schedule.gc
    };
    if dry_run {
        tracing::info!("dry run: nothing will be deleted");
    }
    match driver.collect_garbage(&options).await {
        Ok(report) => {
            println!("{report}");
            std::process::ExitCode::SUCCESS
        }
        Err(e) => crate::stop(log_format, "garbage collection failed", ErrorChain(&e), 1),
    }
}
