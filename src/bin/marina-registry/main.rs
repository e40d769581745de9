//! `marina-registry`: an OCI distribution-spec v1.1 registry over the filesystem, memory,
//! S3-compatible storage or Google Cloud Storage.
//!
//! `cargo run --release` serves on `127.0.0.1:5000` with filesystem storage under `./data`.
//!
//! In pieces: the command line ([`cli`]), the settings it and the configuration file decide
//! ([`settings`]), the server ([`serve`]), the `gc` subcommand ([`gc`]) and the allocator's
//! settings ([`allocator`]); this file starts the runtime, opens the storage and runs the
//! command.

mod allocator;
mod cli;
mod gc;
mod serve;
mod settings;

use std::fmt;
use std::process::ExitCode;
use std::sync::Arc;

use clap::Parser;
use marina_distribution::AnyDriver;
use marina_distribution::error::{Error, ErrorChain};
use marina_distribution::observe::logging::{self, LogFormat};
use marina_distribution::observe::metrics::Metrics;

use crate::cli::{Cli, Command};

fn main() -> ExitCode {
    allocator::tune_allocator();
    match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime.block_on(run()),
        Err(e) => {
            eprintln!("marina-registry: cannot start the async runtime: {e}");
            ExitCode::FAILURE
        }
    }
}

async fn run() -> ExitCode {
    let cli = Cli::parse();
    let settings = match settings::load(&cli) {
        Ok(v) => v,
        Err(e) => {
            // The format the flag or the environment asked for: the configuration file, which
            // may name another, did not load.
            let format = cli.log_format.unwrap_or_default();
            if format == LogFormat::Json {
                logging::init(format);
            }
            return stop(format, "configuration error", e, 2);
        }
    };
    // Logs go to stderr; stdout carries only the "listening on" line.
    logging::init(settings.log_format);
    let metrics = settings.metrics_listen.map(|_| Metrics::new());
    let opened = match &metrics {
        Some(metrics) => {
            AnyDriver::from_config_with_metrics(&settings.storage, Arc::clone(metrics)).await
        }
        None => AnyDriver::from_config(&settings.storage).await,
    };
    let driver = match opened {
        Ok(d) => d,
        Err(e) => {
            // A setting the store refuses (a bucket that does not exist, a CA file without
            // a certificate) is a configuration error like any other.
            let status = if matches!(e, Error::Config { .. }) {
                2
            } else {
                1
            };
            return stop(
                settings.log_format,
                "cannot open storage",
                ErrorChain(&e),
                status,
            );
        }
    };
    match cli.command {
        Some(Command::Gc { dry_run }) => gc::collect_garbage(&driver, settings, dry_run).await,
        None => serve::serve(driver, settings, metrics).await,
    }
}

/// Says why the process stops, on stderr, and gives its exit status: `marina-registry: WHAT:
/// ERROR` for people, or, with `--log-format json`, one JSON log line like every other (level
/// `ERROR`, the cause in `error`), so that a log shipper can read the line that matters most.
pub(crate) fn stop(
    format: LogFormat,
    what: &str,
    error: impl fmt::Display,
    status: u8,
) -> ExitCode {
    match format {
        LogFormat::Text => eprintln!("marina-registry: {what}: {error}"),
        LogFormat::Json => tracing::error!(error = %error, "{what}"),
    }
    ExitCode::from(status)
}
