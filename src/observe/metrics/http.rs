//! HTTP request metrics, recorded by the observability middleware.

use std::sync::OnceLock;
use std::time::Duration;

use axum::http::Method;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::{Registry, Unit};

use super::LATENCY_BUCKETS;
use crate::registry::Endpoint;

/// Every endpoint label, in slot order; the last slot (`none`) counts requests that named no
/// endpoint (unknown paths, methods a route does not have).
const ENDPOINTS: [Option<Endpoint>; 15] = [
    Some(Endpoint::ApiVersion),
    Some(Endpoint::BlobGet),
    Some(Endpoint::BlobDelete),
    Some(Endpoint::UploadStart),
    Some(Endpoint::UploadStatus),
    Some(Endpoint::UploadChunk),
    Some(Endpoint::UploadFinish),
    Some(Endpoint::UploadCancel),
    Some(Endpoint::ManifestGet),
    Some(Endpoint::ManifestPut),
    Some(Endpoint::ManifestDelete),
    Some(Endpoint::TagList),
    Some(Endpoint::Referrers),
    Some(Endpoint::Catalog),
    None,
];
const METHODS: [&str; 7] = ["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "other"];
/// The statuses the registry answers, each with a pre-resolved counter slot; others are
/// counted through the family (a hash lookup, on rare paths only).
const STATUSES: [u16; 16] = [
    200, 201, 202, 204, 206, 307, 400, 401, 403, 404, 405, 413, 416, 429, 500, 503,
];

fn endpoint_slot(endpoint: Option<Endpoint>) -> usize {
    match endpoint {
        Some(Endpoint::ApiVersion) => 0,
        Some(Endpoint::BlobGet) => 1,
        Some(Endpoint::BlobDelete) => 2,
        Some(Endpoint::UploadStart) => 3,
        Some(Endpoint::UploadStatus) => 4,
        Some(Endpoint::UploadChunk) => 5,
        Some(Endpoint::UploadFinish) => 6,
        Some(Endpoint::UploadCancel) => 7,
        Some(Endpoint::ManifestGet) => 8,
        Some(Endpoint::ManifestPut) => 9,
        Some(Endpoint::ManifestDelete) => 10,
        Some(Endpoint::TagList) => 11,
        Some(Endpoint::Referrers) => 12,
        Some(Endpoint::Catalog) => 13,
        None => 14,
    }
}

fn endpoint_label(slot: usize) -> &'static str {
    ENDPOINTS[slot].map_or("none", Endpoint::as_str)
}

fn method_slot(method: &Method) -> usize {
    match *method {
        Method::GET => 0,
        Method::HEAD => 1,
        Method::POST => 2,
        Method::PUT => 3,
        Method::PATCH => 4,
        Method::DELETE => 5,
        _ => 6,
    }
}

fn status_slot(status: u16) -> Option<usize> {
    STATUSES.iter().position(|&s| s == status)
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RequestLabels {
    endpoint: &'static str,
    method: &'static str,
    status: u16,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RouteLabels {
    endpoint: &'static str,
    method: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct EndpointLabels {
    endpoint: &'static str,
}

type HistogramFamily = Family<RouteLabels, Histogram, fn() -> Histogram>;

fn latency_histogram() -> Histogram {
    Histogram::new(LATENCY_BUCKETS)
}

/// Requests by endpoint, method and status; latency by endpoint and method; bytes by
/// endpoint; requests in flight.
///
/// A series appears on its first request. Handles are resolved once per (endpoint,
/// method[, status]) slot and kept, so recording is a few atomic adds and one histogram
/// observation.
#[derive(Debug)]
pub struct HttpMetrics {
    requests: Family<RequestLabels, Counter>,
    durations: HistogramFamily,
    received: Family<EndpointLabels, Counter>,
    sent: Family<EndpointLabels, Counter>,
    in_flight: Gauge,
    request_slots: Box<[OnceLock<Counter>]>,
    duration_slots: Box<[OnceLock<Histogram>]>,
    byte_slots: Box<[OnceLock<(Counter, Counter)>]>,
}

/// Decrements the in-flight gauge when dropped (the response was sent, or abandoned).
#[derive(Debug)]
#[must_use = "the request is counted in flight until this is dropped"]
pub struct InFlight(Gauge);

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.dec();
    }
}

impl HttpMetrics {
    pub(super) fn register(registry: &mut Registry) -> Self {
        let requests = Family::default();
        registry.register(
            "http_requests",
            "HTTP requests answered, by spec endpoint, method and status",
            requests.clone(),
        );
        let durations: HistogramFamily = Family::new_with_constructor(latency_histogram);
        registry.register_with_unit(
            "http_request_duration",
            "Time from a request's arrival to the end of its response body",
            Unit::Seconds,
            durations.clone(),
        );
        let received = Family::default();
        registry.register_with_unit(
            "http_received",
            "Request body bytes received",
            Unit::Bytes,
            received.clone(),
        );
        let sent = Family::default();
        registry.register_with_unit(
            "http_sent",
            "Response body bytes sent",
            Unit::Bytes,
            sent.clone(),
        );
        let in_flight = Gauge::default();
        registry.register(
            "http_requests_in_flight",
            "Requests being served (response not yet completely sent)",
            in_flight.clone(),
        );
        let routes = ENDPOINTS.len() * METHODS.len();
        Self {
            requests,
            durations,
            received,
            sent,
            in_flight,
            request_slots: (0..routes * STATUSES.len())
                .map(|_| OnceLock::new())
                .collect(),
            duration_slots: (0..routes).map(|_| OnceLock::new()).collect(),
            byte_slots: (0..ENDPOINTS.len()).map(|_| OnceLock::new()).collect(),
        }
    }

    /// Counts a request in flight until the returned guard is dropped.
    pub fn start(&self) -> InFlight {
        self.in_flight.inc();
        InFlight(self.in_flight.clone())
    }

    /// Records a finished request: its endpoint (`None`: it named none), method, status,
    /// duration and body sizes.
    pub fn record(
        &self,
        endpoint: Option<Endpoint>,
        method: &Method,
        status: u16,
        elapsed: Duration,
        received: u64,
        sent: u64,
    ) {
        let e = endpoint_slot(endpoint);
        let m = method_slot(method);
        let route = e * METHODS.len() + m;
        let resolve = || RequestLabels {
            endpoint: endpoint_label(e),
            method: METHODS[m],
            status,
        };
        match status_slot(status) {
            Some(s) => {
                self.request_slots[route * STATUSES.len() + s]
                    .get_or_init(|| self.requests.get_or_create(&resolve()).clone())
                    .inc();
            }
            None => {
                self.requests.get_or_create(&resolve()).inc();
            }
        }
        self.duration_slots[route]
            .get_or_init(|| {
                let labels = RouteLabels {
                    endpoint: endpoint_label(e),
                    method: METHODS[m],
                };
                self.durations.get_or_create(&labels).clone()
            })
            .observe(elapsed.as_secs_f64());
        if received > 0 || sent > 0 {
            let (r, s) = self.byte_slots[e].get_or_init(|| {
                let labels = EndpointLabels {
                    endpoint: endpoint_label(e),
                };
                (
                    self.received.get_or_create(&labels).clone(),
                    self.sent.get_or_create(&labels).clone(),
                )
            });
            r.inc_by(received);
            s.inc_by(sent);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_endpoint_has_its_own_slot() {
        for (slot, endpoint) in ENDPOINTS.iter().enumerate() {
            assert_eq!(endpoint_slot(*endpoint), slot);
        }
        assert_eq!(endpoint_label(14), "none");
        assert_eq!(endpoint_label(1), "blob_get");
    }
}
