//! Storage operation metrics, recorded by the storage instrumentation layer.

use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::{Registry, Unit};

use super::LATENCY_BUCKETS;
use crate::error::Error;

/// How a storage operation ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Outcome {
    /// It succeeded.
    Ok,
    /// It answered that the object does not exist (a normal answer: `HEAD` of a blob not
    /// pushed yet).
    NotFound,
    /// It refused the input as the spec says (a digest mismatch, a range at the wrong
    /// offset, an invalid manifest, ...).
    Rejected,
    /// It failed: the backend was unreachable, refused, or broke.
    Error,
}

impl Outcome {
    const ALL: [Outcome; 4] = [
        Outcome::Ok,
        Outcome::NotFound,
        Outcome::Rejected,
        Outcome::Error,
    ];

    /// The label value: `ok`, `not_found`, `rejected`, `error`.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Ok => "ok",
            Self::NotFound => "not_found",
            Self::Rejected => "rejected",
            Self::Error => "error",
        }
    }

    /// The outcome of an operation's result.
    pub fn of<T>(result: &crate::Result<T>) -> Self {
        match result {
            Ok(_) => Self::Ok,
            Err(
                Error::BlobUnknown(_)
                | Error::BlobUploadUnknown(_)
                | Error::ManifestUnknown(_)
                | Error::NameUnknown(_),
            ) => Self::NotFound,
            Err(Error::Backend { .. } | Error::Config { .. }) => Self::Error,
            Err(_) => Self::Rejected,
        }
    }

    const fn slot(self) -> usize {
        match self {
            Self::Ok => 0,
            Self::NotFound => 1,
            Self::Rejected => 2,
            Self::Error => 3,
        }
    }
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct OperationLabels {
    driver: &'static str,
    operation: &'static str,
    outcome: &'static str,
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

/// Storage operations by driver, operation and outcome, with a latency histogram per driver
/// and operation.
///
/// An instrumentation layer resolves one [`StorageOperationMetrics`] per operation when it
/// is built ([`StorageMetrics::operation`] or [`StorageMetrics::table`]) and records into
/// it on every call, without a label lookup.
#[derive(Debug)]
pub struct StorageMetrics {
    operations: Family<OperationLabels, Counter>,
    durations: HistogramFamily,
}

/// The pre-resolved series of one (driver, operation): a counter per [`Outcome`] and the
/// latency histogram. Cheap to clone (shared atomics).
#[derive(Debug, Clone)]
pub struct StorageOperationMetrics {
    outcomes: [Counter; 4],
    latency: Histogram,
}

impl StorageOperationMetrics {
    /// Records one operation.
    pub fn record(&self, outcome: Outcome, elapsed: Duration) {
        self.outcomes[outcome.slot()].inc();
        self.latency.observe(elapsed.as_secs_f64());
    }

    /// Records one operation from its result.
    pub fn record_result<T>(&self, result: &crate::Result<T>, elapsed: Duration) {
        self.record(Outcome::of(result), elapsed);
    }
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
        Self {
            operations,
            durations,
        }
    }

    /// The series of `operation` on `driver` (e.g. `("s3", "get_content")`); every outcome's
    /// counter is created, at zero.
    pub fn operation(
        &self,
        driver: &'static str,
        operation: &'static str,
    ) -> StorageOperationMetrics {
        let outcomes = Outcome::ALL.map(|outcome| {
            self.operations
                .get_or_create(&OperationLabels {
                    driver,
                    operation,
                    outcome: outcome.as_str(),
                })
                .clone()
        });
        let latency = self
            .durations
            .get_or_create(&LatencyLabels { driver, operation })
            .clone();
        StorageOperationMetrics { outcomes, latency }
    }

    /// The series of several operations of one driver, in the order given: index the result
    /// with your own operation enum.
    pub fn table<const N: usize>(
        &self,
        driver: &'static str,
        operations: [&'static str; N],
    ) -> [StorageOperationMetrics; N] {
        operations.map(|operation| self.operation(driver, operation))
    }
}
