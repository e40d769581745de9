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

use std::sync::Arc;

use clap::Parser;
use marina_distribution::AnyDriver;
use marina_distribution::error::ErrorChain;
use marina_distribution::observe::logging;
use marina_distribution::observe::metrics::Metrics;

use crate::cli::{Cli, Command};

fn main() -> std::process::ExitCode {
    allocator::tune_allocator();
    match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime.block_on(run()),
        Err(e) => {
            eprintln!("marina-registry: cannot start the async runtime: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}

async fn run() -> std::process::ExitCode {
    let cli = Cli::parse();
    let settings = match settings::load(&cli) {
        Ok(v) => v,
        Err(e) => {
            eprintln!("marina-registry: configuration error: {e}");
            return std::process::ExitCode::from(2);
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
            eprintln!("marina-registry: cannot open storage: {}", ErrorChain(&e));
            return std::process::ExitCode::from(1);
        }
    };
    match cli.command {
        Some(Command::Gc { dry_run }) => gc::collect_garbage(&driver, settings, dry_run).await,
        None => serve::serve(driver, settings, metrics).await,
    }
}
