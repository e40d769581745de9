//! Lifecycle work inside a long-running process (the registry server): a periodic garbage
//! collection (off by default) and a periodic upload expiry (on by default).
//!
//! Both are ordinary runs of [`Lifecycle`], safe beside pushes in this and other processes,
//! and beside runs of other processes (several servers on one bucket may all run them).

use std::sync::Arc;
use std::time::Duration;

use super::{DEFAULT_UPLOAD_TTL, GcOptions, GcReport, Lifecycle};
use crate::error::{Error, ErrorChain, Result};

/// Default of [`Schedule::upload_expiry_interval`].
pub const DEFAULT_UPLOAD_EXPIRY_INTERVAL: Duration = Duration::from_secs(3600);

/// When a process runs lifecycle work, and with which options.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Schedule {
    /// Run a garbage collection this often (`None`: never, the default). Each run also
    /// expires uploads when [`GcOptions::upload_ttl`] is set.
    pub gc_interval: Option<Duration>,
    /// The options of those runs (`dry_run` is ignored), and the TTL of the upload expiry.
    pub gc: GcOptions,
    /// Expire uploads idle longer than [`GcOptions::upload_ttl`] this often (`None`: never).
    /// Default: every hour.
    pub upload_expiry_interval: Option<Duration>,
}

impl Default for Schedule {
    fn default() -> Self {
        Self {
            gc_interval: None,
            gc: GcOptions {
                upload_ttl: Some(DEFAULT_UPLOAD_TTL),
                ..GcOptions::default()
            },
            upload_expiry_interval: Some(DEFAULT_UPLOAD_EXPIRY_INTERVAL),
        }
    }
}

/// Which scheduled work a run was.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RunKind {
    /// A garbage collection (which also expires uploads when a TTL is set).
    Collection,
    /// An upload expiry alone.
    UploadExpiry,
}

/// How a scheduled run ended, as the observer given to [`spawn`] sees it.
#[derive(Debug, Clone, Copy)]
pub enum RunEnd<'a> {
    /// The run completed, reclaiming what the report says.
    Done(&'a GcReport),
    /// The run stopped on an error (logged) after `elapsed`.
    Failed {
        /// How long the run went on before it stopped.
        elapsed: Duration,
    },
}

/// Parses a duration setting: `24h`, `90m`, `1h 30m`, `0s` (humantime's syntax), or `off`
/// (`None`), naming `field` in the error.
pub fn parse_duration(field: &'static str, text: &str) -> Result<Option<Duration>> {
    let text = text.trim();
    if matches!(text, "off" | "never" | "none" | "disabled") {
        return Ok(None);
    }
    humantime::parse_duration(text)
        .map(Some)
        .map_err(|e| Error::Config {
            field,
            message: format!("{text:?} is not a duration such as 30s, 15m, 24h or off: {e}"),
        })
}

/// Lifecycle work [`spawn`]ed on a driver, running until it is [`stop`](Self::stop)ped (or
/// the runtime ends).
#[derive(Debug)]
pub struct Scheduled<D> {
    driver: Arc<D>,
    stop: tokio::sync::watch::Sender<bool>,
    task: tokio::task::JoinHandle<()>,
}

impl<D: Lifecycle> Scheduled<D> {
    /// Stops the work for a process that is shutting down: no run starts any more, and a
    /// run in progress stops before its next deletion and removes its condemned set
    /// ([`Lifecycle::stop_collections`], which stops every collection on the driver).
    /// Waits for that at most `within`; `false` if the run had not ended by then (the task
    /// is then aborted, and a condemned set it held is left: see "Crashes and stale sets"
    /// in the [`lifecycle`](super) docs).
    pub async fn stop(mut self, within: Duration) -> bool {
        self.driver.stop_collections();
        let _ = self.stop.send(true);
        if tokio::time::timeout(within, &mut self.task).await.is_ok() {
            return true;
        }
        self.task.abort();
        false
    }
}

/// Runs `schedule` until [`Scheduled::stop`], calling `observe` after every run, successful
/// or not (metrics: `Metrics::record_lifecycle`). Every run is also logged; after one that
/// fails, the next is tried at its time. Returns `None` when nothing is scheduled.
pub fn spawn<D, F>(driver: Arc<D>, schedule: Schedule, observe: F) -> Option<Scheduled<D>>
where
    D: Lifecycle,
    F: Fn(RunKind, RunEnd<'_>) + Send + Sync + 'static,
{
    let expiry = schedule.upload_expiry_interval.zip(schedule.gc.upload_ttl);
    if schedule.gc_interval.is_none() && expiry.is_none() {
        return None;
    }
    let ticker = |period: Option<Duration>| {
        period.map(|p| {
            let mut t = tokio::time::interval_at(tokio::time::Instant::now() + p, p);
            t.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            t
        })
    };
    let mut gc_timer = ticker(schedule.gc_interval);
    let mut expiry_timer = ticker(expiry.map(|(period, _)| period));
    let options = GcOptions {
        dry_run: false,
        ..schedule.gc
    };
    let (stop, mut stopped) = tokio::sync::watch::channel(false);
    let runs = Arc::clone(&driver);
    let task = tokio::spawn(async move {
        let driver = runs;
        loop {
            let gc_due = async {
                match &mut gc_timer {
                    Some(t) => t.tick().await,
                    None => std::future::pending().await,
                }
            };
            let expiry_due = async {
                match &mut expiry_timer {
                    Some(t) => t.tick().await,
                    None => std::future::pending().await,
                }
            };
            let kind = tokio::select! {
                _ = gc_due => RunKind::Collection,
                _ = expiry_due => RunKind::UploadExpiry,
                _ = stopped.changed() => return,
            };
            let started = std::time::Instant::now();
            let run = match kind {
                RunKind::Collection => driver.collect_garbage(&options).await,
                RunKind::UploadExpiry => {
                    let ttl = expiry.map_or(DEFAULT_UPLOAD_TTL, |(_, ttl)| ttl);
                    driver.expire_uploads(ttl, false).await
                }
            };
            match run {
                Ok(report) => {
                    match kind {
                        RunKind::Collection => {
                            tracing::info!(target: "marina::lifecycle", "{report}")
                        }
                        RunKind::UploadExpiry => tracing::info!(
                            target: "marina::lifecycle",
                            "upload expiry: uploads={} in {:.2}s",
                            report.uploads,
                            report.duration.as_secs_f64()
                        ),
                    }
                    observe(kind, RunEnd::Done(&report));
                }
                Err(_) if *stopped.borrow() => {
                    tracing::info!(target: "marina::lifecycle", "lifecycle run stopped: the process is shutting down");
                    return;
                }
                Err(e) => {
                    tracing::error!(target: "marina::lifecycle", error = %ErrorChain(&e), "lifecycle run failed");
                    let elapsed = started.elapsed();
                    observe(kind, RunEnd::Failed { elapsed });
                }
            }
            if *stopped.borrow() {
                return;
            }
        }
    });
    Some(Scheduled { driver, stop, task })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_parse_and_off_disables() {
        assert_eq!(
            parse_duration("x", "24h").unwrap(),
            Some(Duration::from_secs(86_400))
        );
        assert_eq!(
            parse_duration("x", " 1h 30m ").unwrap(),
            Some(Duration::from_secs(5_400))
        );
        assert_eq!(parse_duration("x", "0s").unwrap(), Some(Duration::ZERO));
        assert_eq!(parse_duration("x", "off").unwrap(), None);
        assert!(matches!(
            parse_duration("gc_interval", "soon"),
            Err(Error::Config {
                field: "gc_interval",
                ..
            })
        ));
    }
}
