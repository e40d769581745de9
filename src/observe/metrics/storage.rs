//! Storage operation metrics, recorded by the storage layer's
//! [`Instrumented`](crate::storage::layers::Instrumented) backend through a
//! [`StorageObserver`].
//!
//! The observer is installed where each driver is assembled (from its
//! [`EngineOptions`](crate::storage::EngineOptions)), never inside a backend; it holds the
//! series of its driver already resolved, one per [`Operation`] (indexed like
//! [`Operation::ALL`]) and [`Outcome`], so a call records with an atomic add and a histogram
//! observation, without looking a label set up.

use std::sync::Arc;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::{Registry, Unit};

use super::LATENCY_BUCKETS;
use crate::storage::backend::Operation;
use crate::storage::layers::{Observation, Observer, Outcome};

/// Every [`Outcome`], in the order of their discriminants (the index of their counter).
const OUTCOMES: [Outcome; 4] = [
    Outcome::Ok,
    Outcome::Rejected,
    Outcome::Unavailable,
    Outcome::Failed,
];

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct OperationLabels {
    driver: &'static str,
    operation: &'static str,
    outcome: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct DriverLabels {
    driver: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct LatencyLabels {
    driver: &'static str,
    operation: &'static str,
}

type HistogramFamily = Family<LatencyLabels, Histogram, fn() -> Histogram>;

fn latency_histogram() -> Histogram {
    Histogram::new(LATENCY_BUCKETS)
}

/// Storage backend operations by driver, operation and [`Outcome`], with a latency
/// histogram per driver and operation.
///
/// [`StorageMetrics::observer`] resolves a driver's series once; the storage layer records
/// into them ([`AnyDriver::from_config_with_metrics`](crate::AnyDriver::from_config_with_metrics)
/// installs it).
#[derive(Debug)]
pub struct StorageMetrics {
    operations: Family<OperationLabels, Counter>,
    durations: HistogramFamily,
    retries: Family<DriverLabels, Counter>,
}

impl StorageMetrics {
    pub(super) fn register(registry: &mut Registry) -> Self {
        let operations = Family::default();
        registry.register(
            "storage_operations",
            "Storage backend operations, by driver, operation and outcome",
            operations.clone(),
        );
        let durations: HistogramFamily = Family::new_with_constructor(latency_histogram);
        registry.register_with_unit(
            "storage_operation_duration",
            "Time a storage backend operation took",
            Unit::Seconds,
            durations.clone(),
        );
        let retries = Family::default();
        registry.register(
            "storage_retries",
            "Store requests sent again after a transient failure (throttling, 5xx, a broken \
             or unanswered connection), by driver",
            retries.clone(),
        );
        Self {
            operations,
            durations,
            retries,
        }
    }

    /// The counter of the store requests `driver` (a [`Backend::NAME`]) sends again,
    /// created at zero.
    ///
    /// [`Backend::NAME`]: crate::storage::backend::Backend::NAME
    pub fn retry_counter(&self, driver: &'static str) -> RetryCounter {
        RetryCounter(Some(
            self.retries.get_or_create(&DriverLabels { driver }).clone(),
        ))
    }

    /// The observer recording the operations of `driver` (a [`Backend::NAME`]): every
    /// series of that driver is created here, at zero.
    ///
    /// [`Backend::NAME`]: crate::storage::backend::Backend::NAME
    pub fn observer(&self, driver: &'static str) -> StorageObserver {
        let series = Operation::ALL.map(|operation| {
            let operation = operation.as_str();
            OperationSeries {
                outcomes: OUTCOMES.map(|outcome| {
                    self.operations
                        .get_or_create(&OperationLabels {
                            driver,
                            operation,
                            outcome: outcome.as_str(),
                        })
                        .clone()
                }),
                latency: self
                    .durations
                    .get_or_create(&LatencyLabels { driver, operation })
                    .clone(),
            }
        });
        StorageObserver(Some(Arc::new(series)))
    }
}

/// The series of one (driver, operation): a counter per [`Outcome`] and the latency
/// histogram.
#[derive(Debug)]
struct OperationSeries {
    outcomes: [Counter; OUTCOMES.len()],
    latency: Histogram,
}

/// The [`Observer`] of the storage layer: a driver's pre-resolved series, or nothing
/// (the default, when metrics are off: it records nothing and reads no clock).
#[derive(Debug, Clone, Default)]
pub struct StorageObserver(Option<Arc<[OperationSeries; Operation::ALL.len()]>>);

impl StorageObserver {
    /// Whether it records anything.
    pub fn is_recording(&self) -> bool {
        self.0.is_some()
    }
}

impl Observer for StorageObserver {
    const TIMED: bool = true;

    #[inline]
    fn timed(&self) -> bool {
        self.0.is_some()
    }

    #[inline]
    fn observe(&self, o: &Observation) {
        let Some(series) = &self.0 else { return };
        let series = &series[o.operation as usize];
        series.outcomes[o.outcome as usize].inc();
        if let Some(elapsed) = o.elapsed {
            series.latency.observe(elapsed.as_secs_f64());
        }
    }
}

/// Where an object-store driver counts the requests it sends again
/// ([`StorageMetrics::retry_counter`]); the default counts nothing (metrics off).
#[derive(Debug, Clone, Default)]
pub struct RetryCounter(Option<Counter>);

impl RetryCounter {
    /// Whether it counts anything.
    pub fn is_counting(&self) -> bool {
        self.0.is_some()
    }

    /// One request sent again.
    #[inline]
    pub fn count(&self) {
        if let Some(counter) = &self.0 {
            counter.inc();
        }
    }
}
