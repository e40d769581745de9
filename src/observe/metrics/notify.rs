//! Notification metrics, recorded by the notification dispatcher.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct EndpointOutcome {
    endpoint: String,
    outcome: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct EndpointLabel {
    endpoint: String,
}

/// Notification events and deliveries by configured endpoint (names come from the
/// configuration, so the label's values are a closed set).
#[derive(Debug)]
pub struct NotificationMetrics {
    events: Family<EndpointOutcome, Counter>,
    deliveries: Family<EndpointOutcome, Counter>,
    queue: Family<EndpointLabel, Gauge>,
}

/// The pre-resolved series of one notification endpoint.
#[derive(Debug, Clone)]
pub struct NotificationEndpointMetrics {
    /// Events put in the endpoint's queue.
    pub queued: Counter,
    /// Events the endpoint accepted (a 2xx or 3xx answer).
    pub delivered: Counter,
    /// Events dropped because the queue was full.
    pub dropped: Counter,
    /// Events given up on once queued: left out of their envelope because they could not be
    /// written, or not delivered yet when the registry stopped.
    pub failed: Counter,
    /// POSTs the endpoint accepted.
    pub successes: Counter,
    /// POSTs that failed (connection error, timeout, or a 4xx/5xx answer).
    pub failures: Counter,
    /// Events waiting in the queue.
    pub queue_length: Gauge,
}

impl NotificationEndpointMetrics {
    /// Series registered nowhere: the notifier counts into them when metrics are off.
    pub fn detached() -> Self {
        Self {
            queued: Counter::default(),
            delivered: Counter::default(),
            dropped: Counter::default(),
            failed: Counter::default(),
            successes: Counter::default(),
            failures: Counter::default(),
            queue_length: Gauge::default(),
        }
    }
}

impl NotificationMetrics {
    pub(super) fn register(registry: &mut Registry) -> Self {
        let events = Family::default();
        registry.register(
            "notification_events",
            "Notification events, by endpoint and outcome (queued, delivered, dropped, failed)",
            events.clone(),
        );
        let deliveries = Family::default();
        registry.register(
            "notification_deliveries",
            "Notification POSTs, by endpoint and outcome (success, failure)",
            deliveries.clone(),
        );
        let queue = Family::default();
        registry.register(
            "notification_queue_length",
            "Notification events waiting to be delivered (queued, or in an envelope being sent or retried), by endpoint",
            queue.clone(),
        );
        Self {
            events,
            deliveries,
            queue,
        }
    }

    /// The series of the endpoint named `endpoint`, resolved once.
    pub fn endpoint(&self, endpoint: &str) -> NotificationEndpointMetrics {
        let event = |outcome| {
            self.events
                .get_or_create(&EndpointOutcome {
                    endpoint: endpoint.to_owned(),
                    outcome,
                })
                .clone()
        };
        let delivery = |outcome| {
            self.deliveries
                .get_or_create(&EndpointOutcome {
                    endpoint: endpoint.to_owned(),
                    outcome,
                })
                .clone()
        };
        NotificationEndpointMetrics {
            queued: event("queued"),
            delivered: event("delivered"),
            dropped: event("dropped"),
            failed: event("failed"),
            successes: delivery("success"),
            failures: delivery("failure"),
            queue_length: self
                .queue
                .get_or_create(&EndpointLabel {
                    endpoint: endpoint.to_owned(),
                })
                .clone(),
        }
    }
}
