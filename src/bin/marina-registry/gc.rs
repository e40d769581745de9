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
    let run = driver.collect_garbage(&options);
    let mut run = std::pin::pin!(run);
    let outcome = tokio::select! {
        outcome = &mut run => outcome,
        () = crate::serve::shutdown_signal() => {
            // Killed while it holds a condemned set, the collection would leave it, refusing
            // pushes of what it lists for hours: it removes it first.
            tracing::warn!("interrupted: stopping the collection");
            driver.stop_collections();
            run.await
        }
    };
    match outcome {
        Ok(report) => {
            println!("{report}");
            std::process::ExitCode::SUCCESS
        }
        Err(e) => crate::stop(log_format, "garbage collection failed", ErrorChain(&e), 1),
    }
}
