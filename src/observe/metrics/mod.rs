//! Prometheus metrics: one [`Metrics`] value holds every series the registry exports, and
//! hands out pre-resolved handles to the parts that record them.
//!
//! Built on [`prometheus_client`], the Prometheus project's own Rust client: a [`Registry`]
//! is a plain value (no process-global recorder, so an embedder may run several registries
//! or register its own series beside ours), counters and gauges are single atomics, and it
//! encodes the Prometheus text format (0.0.4) that every scraper reads.
//!
//! # Cost
//!
//! When metrics are off there is no [`Metrics`] value at all: the parts that record take an
//! `Option` and skip the work, and the storage instrumentation layer is simply not
//! installed. When they are on, nothing on a request's path hashes a label set: each part
//! resolves its handles once (a `Family` lookup), keeps them in small arrays indexed by
//! enums (endpoint, method, status class, outcome), and records with an atomic add or, for
//! histograms, one short uncontended lock.
//!
//! # Cardinality
//!
//! Labels take values from closed sets only: spec endpoints ([`Endpoint::as_str`]),
//! methods, status codes, driver and operation names, cache and endpoint names from the
//! configuration. Never a repository name, a tag or a digest.
//!
//! # Series
//!
//! | name | type | labels |
//! |---|---|---|
//! | `marina_http_requests_total` | counter | `endpoint`, `method`, `status` |
//! | `marina_http_request_duration_seconds` | histogram | `endpoint`, `method` |
//! | `marina_http_received_bytes_total`, `marina_http_sent_bytes_total` | counter | `endpoint` |
//! | `marina_http_requests_in_flight` | gauge | |
//! | `marina_storage_operations_total` | counter | `driver`, `operation`, `outcome` (`ok`, `rejected`, `unavailable`, `failed`) |
//! | `marina_storage_operation_duration_seconds` | histogram | `driver`, `operation` |
//! | `marina_storage_retries_total` | counter | `driver` (store requests sent again after a transient failure) |
//! | `marina_upload_sessions_started_total` | counter | |
//! | `marina_upload_sessions_closed_total` | counter | `outcome` (`committed`, `cancelled`, `expired`) |
//! | `marina_upload_sessions_open` | gauge | |
//! | `marina_cache_requests_total` | counter | `cache`, `result` (`hit`, `miss`) |
//! | `marina_gc_runs_total` | counter | `outcome` (`success`, `failure`) |
//! | `marina_gc_duration_seconds` | histogram | |
//! | `marina_gc_reclaimed_total` | counter | `kind` (`blobs`, `manifests`, `uploads`, `links`) |
//! | `marina_gc_reclaimed_bytes_total` | counter | |
//! | `marina_gc_last_run_timestamp_seconds` | gauge | |
//! | `marina_notification_events_total` | counter | `endpoint`, `outcome` (`queued`, `delivered`, `dropped`, `failed`) |
//! | `marina_notification_deliveries_total` | counter | `endpoint`, `outcome` (`success`, `failure`) |
//! | `marina_notification_queue_length` | gauge | `endpoint` |
//! | `marina_proxy_upstream_requests_total` | counter | `request`, `outcome` (`ok`, `not_found`, `denied`, `throttled`, `failed`) |
//! | `marina_proxy_stale_answers_total` | counter | |
//!
//! [`Endpoint::as_str`]: crate::registry::Endpoint::as_str

#[cfg(feature = "server")]
mod http;
mod lifecycle;
mod notify;
mod proxy;
mod storage;

use std::sync::Arc;

use prometheus_client::registry::Registry;

pub use crate::storage::layers::Outcome;
#[cfg(feature = "server")]
pub use http::{HttpMetrics, InFlight};
pub use lifecycle::{CacheCounters, CacheMetrics, GcMetrics, UploadMetrics};
pub use notify::{NotificationEndpointMetrics, NotificationMetrics};
pub use proxy::{ProxyMetrics, UpstreamOutcome, UpstreamRequest};
pub use storage::{RetryCounter, StorageMetrics, StorageObserver};

/// The `Content-Type` of [`Metrics::encode`]'s output: the Prometheus text format 0.0.4.
pub const CONTENT_TYPE: &str = prometheus_client::encoding::prometheus_text::CONTENT_TYPE;

/// Latency buckets, in seconds, shared by the request and storage histograms: from 100 µs
/// (a metadata read from the page cache) to a minute (a large blob over a slow link).
pub(crate) const LATENCY_BUCKETS: [f64; 16] = [
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 5.0,
    15.0, 60.0,
];

/// Every metric of the registry, registered in one Prometheus [`Registry`].
///
/// Create one with [`Metrics::new`], share it as `Arc<Metrics>`, hand its parts to what
/// records them ([`Metrics::http`], [`Metrics::storage`], ...), and serve
/// [`Metrics::encode`] to the scraper (`observe::health::router` does).
#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    #[cfg(feature = "server")]
    http: HttpMetrics,
    storage: StorageMetrics,
    uploads: UploadMetrics,
    cache: CacheMetrics,
    gc: GcMetrics,
    notifications: NotificationMetrics,
    proxy: ProxyMetrics,
}

impl Metrics {
    /// Every series registered, none recorded yet.
    pub fn new() -> Arc<Self> {
        Self::with_registry(Registry::with_prefix("marina"))
    }

    /// Registers the series into `registry` (which may hold an embedder's own series).
    pub fn with_registry(mut registry: Registry) -> Arc<Self> {
        #[cfg(feature = "server")]
        let http = HttpMetrics::register(&mut registry);
        let storage = StorageMetrics::register(&mut registry);
        let uploads = UploadMetrics::register(&mut registry);
        let cache = CacheMetrics::register(&mut registry);
        let gc = GcMetrics::register(&mut registry);
        let notifications = NotificationMetrics::register(&mut registry);
        let proxy = ProxyMetrics::register(&mut registry);
        Arc::new(Self {
            registry,
            #[cfg(feature = "server")]
            http,
            storage,
            uploads,
            cache,
            gc,
            notifications,
            proxy,
        })
    }

    /// HTTP requests: the observability middleware records them.
    #[cfg(feature = "server")]
    pub fn http(&self) -> &HttpMetrics {
        &self.http
    }

    /// Storage operations: the storage layer records them through
    /// [`StorageMetrics::observer`], installed by
    /// [`AnyDriver::from_config_with_metrics`](crate::AnyDriver::from_config_with_metrics).
    pub fn storage(&self) -> &StorageMetrics {
        &self.storage
    }

    /// Upload sessions opened and closed.
    pub fn uploads(&self) -> &UploadMetrics {
        &self.uploads
    }

    /// Records how a scheduled lifecycle run ended (the observer of
    /// [`schedule::spawn`](crate::storage::lifecycle::schedule::spawn)): a collection into the
    /// `gc_*` series, the upload sessions any run expired into the `upload_sessions_*` series.
    pub fn record_lifecycle(
        &self,
        kind: crate::storage::lifecycle::schedule::RunKind,
        end: &crate::storage::lifecycle::schedule::RunEnd<'_>,
    ) {
        lifecycle::record_lifecycle(&self.gc, &self.uploads, kind, end);
    }

    /// Cache hits and misses, per named cache.
    pub fn cache(&self) -> &CacheMetrics {
        &self.cache
    }

    /// Garbage-collection runs and what they reclaimed.
    pub fn gc(&self) -> &GcMetrics {
        &self.gc
    }

    /// Notification events and deliveries, per configured endpoint.
    pub fn notifications(&self) -> &NotificationMetrics {
        &self.notifications
    }

    /// The pull-through cache's requests to its upstream.
    pub fn proxy(&self) -> &ProxyMetrics {
        &self.proxy
    }

    /// Every series in the Prometheus text format ([`CONTENT_TYPE`]).
    pub fn encode(&self) -> String {
        let mut out = String::with_capacity(16 * 1024);
        // Writing into a `String` cannot fail.
        let _ = prometheus_client::encoding::prometheus_text::encode(&mut out, &self.registry);
        out
    }
}
