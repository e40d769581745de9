//! Upload sessions, caches and garbage collection: the metrics the HTTP layer, the metadata
//! cache and the garbage collector record.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::{Registry, Unit};

use crate::storage::GcReport;
use crate::storage::lifecycle::schedule::{RunEnd, RunKind};

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct OutcomeLabels {
    outcome: &'static str,
}

/// Upload sessions opened and closed by this process.
///
/// Sessions live in the storage and may be continued or closed by another process, so the
/// `open` gauge is this process's view: sessions it opened minus sessions it closed. Summed
/// over every instance of a deployment it is the number of open sessions, as long as the
/// sessions that expire are reported ([`UploadMetrics::expired`]) by whatever removes them.
#[derive(Debug)]
pub struct UploadMetrics {
    started: Counter,
    committed: Counter,
    cancelled: Counter,
    expired: Counter,
    open: Gauge,
}

impl UploadMetrics {
    pub(super) fn register(registry: &mut Registry) -> Self {
        let started = Counter::default();
        registry.register(
            "upload_sessions_started",
            "Upload sessions opened (POST answered 202)",
            started.clone(),
        );
        let closed = Family::<OutcomeLabels, Counter>::default();
        registry.register(
            "upload_sessions_closed",
            "Upload sessions closed: committed (PUT 201), cancelled (DELETE 204) or expired",
            closed.clone(),
        );
        let open = Gauge::default();
        registry.register(
            "upload_sessions_open",
            "Upload sessions opened and not yet closed, as seen by this process",
            open.clone(),
        );
        let outcome = |outcome| closed.get_or_create(&OutcomeLabels { outcome }).clone();
        Self {
            started,
            committed: outcome("committed"),
            cancelled: outcome("cancelled"),
            expired: outcome("expired"),
            open,
        }
    }

    /// A session was opened.
    pub fn started(&self) {
        self.started.inc();
        self.open.inc();
    }

    /// A session was closed by committing its blob.
    pub fn committed(&self) {
        self.committed.inc();
        self.open.dec();
    }

    /// A session was cancelled by its client.
    pub fn cancelled(&self) {
        self.cancelled.inc();
        self.open.dec();
    }

    /// `count` abandoned sessions were removed (upload expiry, garbage collection; storage
    /// no session owned is not counted here).
    pub fn expired(&self, count: u64) {
        self.expired.inc_by(count);
        self.open.dec_by(i64::try_from(count).unwrap_or(i64::MAX));
    }
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct CacheLabels {
    cache: &'static str,
    result: &'static str,
}

/// Cache lookups by cache name and result.
#[derive(Debug)]
pub struct CacheMetrics {
    requests: Family<CacheLabels, Counter>,
}

/// The pre-resolved hit and miss counters of one cache.
///
/// The [`Default`] value belongs to no registry: a cache counts into it when metrics are off,
/// so that it keeps one set of counters either way (one atomic add per lookup).
#[derive(Debug, Clone, Default)]
pub struct CacheCounters {
    hits: Counter,
    misses: Counter,
}

impl CacheCounters {
    /// A lookup found its entry.
    pub fn hit(&self) {
        self.hits.inc();
    }

    /// A lookup missed (the value was read from the storage).
    pub fn miss(&self) {
        self.misses.inc();
    }

    /// Lookups that found their entry so far.
    pub fn hits(&self) -> u64 {
        self.hits.get()
    }

    /// Lookups that missed so far.
    pub fn misses(&self) -> u64 {
        self.misses.get()
    }
}

impl CacheMetrics {
    pub(super) fn register(registry: &mut Registry) -> Self {
        let requests = Family::default();
        registry.register(
            "cache_requests",
            "Cache lookups, by cache and result (hit, miss)",
            requests.clone(),
        );
        Self { requests }
    }

    /// The counters of the cache named `cache` (e.g. `"manifests"`), resolved once.
    pub fn cache(&self, cache: &'static str) -> CacheCounters {
        let counter = |result| {
            self.requests
                .get_or_create(&CacheLabels { cache, result })
                .clone()
        };
        CacheCounters {
            hits: counter("hit"),
            misses: counter("miss"),
        }
    }
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct KindLabels {
    kind: &'static str,
}

/// Records how a scheduled lifecycle run ended: a collection into the garbage-collection
/// series, and the sessions any run expired into the upload series. Give it to
/// [`schedule::spawn`](crate::storage::lifecycle::schedule::spawn) as its observer.
pub(super) fn record_lifecycle(
    gc: &GcMetrics,
    uploads: &UploadMetrics,
    kind: RunKind,
    end: &RunEnd<'_>,
) {
    match (kind, end) {
        (_, RunEnd::Done(report)) if report.dry_run => {}
        (RunKind::Collection, RunEnd::Done(report)) => {
            gc.record_success(report);
            uploads.expired(report.sessions);
        }
        (RunKind::Collection, RunEnd::Failed { elapsed }) => gc.record_failure(*elapsed),
        (RunKind::UploadExpiry, RunEnd::Done(report)) => uploads.expired(report.sessions),
        (RunKind::UploadExpiry, RunEnd::Failed { .. }) => {}
    }
}

/// Garbage-collection runs, their duration and what they reclaimed.
#[derive(Debug)]
pub struct GcMetrics {
    success: Counter,
    failure: Counter,
    duration: Histogram,
    blobs: Counter,
    manifests: Counter,
    uploads: Counter,
    links: Counter,
    tags: Counter,
    bytes: Counter,
    last_run: Gauge,
}

impl GcMetrics {
    pub(super) fn register(registry: &mut Registry) -> Self {
        let runs = Family::<OutcomeLabels, Counter>::default();
        registry.register(
            "gc_runs",
            "Garbage-collection runs, by outcome (success, failure)",
            runs.clone(),
        );
        // 1 s to about 9 hours.
        let duration = Histogram::new(exponential_buckets(1.0, 2.0, 16));
        registry.register_with_unit(
            "gc_duration",
            "Time a garbage-collection run took",
            Unit::Seconds,
            duration.clone(),
        );
        let reclaimed = Family::<KindLabels, Counter>::default();
        registry.register(
            "gc_reclaimed",
            "Objects garbage collection removed, by kind (blobs, manifests, uploads, links, \
             tags: those a pull-through cache's TTL expired)",
            reclaimed.clone(),
        );
        let bytes = Counter::default();
        registry.register_with_unit(
            "gc_reclaimed",
            "Bytes of the blobs garbage collection removed",
            Unit::Bytes,
            bytes.clone(),
        );
        let last_run = Gauge::default();
        registry.register(
            "gc_last_run_timestamp_seconds",
            "When the last garbage-collection run ended (Unix time)",
            last_run.clone(),
        );
        let kind = |kind| reclaimed.get_or_create(&KindLabels { kind }).clone();
        let outcome = |outcome| runs.get_or_create(&OutcomeLabels { outcome }).clone();
        Self {
            success: outcome("success"),
            failure: outcome("failure"),
            duration,
            blobs: kind("blobs"),
            manifests: kind("manifests"),
            uploads: kind("uploads"),
            links: kind("links"),
            tags: kind("tags"),
            bytes,
            last_run,
        }
    }

    /// Records a run that completed, with what it reclaimed (a dry run reclaims nothing and
    /// is not recorded).
    pub fn record_success(&self, report: &GcReport) {
        if report.dry_run {
            return;
        }
        self.success.inc();
        self.blobs.inc_by(report.blobs);
        self.bytes.inc_by(report.bytes);
        self.manifests.inc_by(report.manifests);
        self.uploads.inc_by(report.uploads);
        self.links.inc_by(report.links);
        self.tags.inc_by(report.tags);
        self.finished(report.duration);
    }

    /// Records a run that stopped on an error after `elapsed`. (What it removed before the
    /// error is not reported by the collector, so it is not counted.)
    pub fn record_failure(&self, elapsed: Duration) {
        self.failure.inc();
        self.finished(elapsed);
    }

    fn finished(&self, elapsed: Duration) {
        self.duration.observe(elapsed.as_secs_f64());
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        self.last_run.set(i64::try_from(now).unwrap_or(i64::MAX));
    }
}
