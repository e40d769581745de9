//! The routes of the metrics listener: `/metrics`, `/healthz` and `/readyz`.
//!
//! The listener is separate from the registry's (`--metrics-listen`), so that scrapes and
//! probes never compete with, or are exposed like, the registry's clients.
//!
//! - `GET /metrics`: every series in the Prometheus text format;
//! - `GET /healthz`: `200 ok` while the process serves HTTP (liveness);
//! - `GET /readyz`: `200 ready` when the storage answered a probe
//!   ([`StorageProbe`]: write, read back and remove a small object; on a read-only registry,
//!   look one up: [`Readiness`]) within
//!   [`READINESS_TIMEOUT`], `503` with a one-line reason otherwise (readiness). Each request
//!   probes anew, so it turns back to 200 as soon as the storage recovers.

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;

use crate::error::ErrorChain;
use crate::observe::metrics::{self, Metrics};
use crate::storage::probe::StorageProbe;

/// How long `/readyz` waits for the storage.
pub const READINESS_TIMEOUT: Duration = Duration::from_secs(3);

/// What `/readyz` asks of the storage.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Readiness {
    /// That it accepts a write ([`StorageProbe::probe`]): a registry that takes pushes.
    Writes,
    /// That it answers a read ([`StorageProbe::probe_reads`]): a read-only registry, whose
    /// storage may refuse writes.
    Reads,
}

struct Health<P> {
    metrics: Arc<Metrics>,
    probe: Arc<P>,
    readiness: Readiness,
}

/// The metrics listener's router; `/readyz` checks what `readiness` says.
pub fn router<P: StorageProbe + 'static>(
    metrics: Arc<Metrics>,
    probe: Arc<P>,
    readiness: Readiness,
) -> Router {
    Router::new()
        .route("/metrics", get(serve_metrics::<P>))
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(ready::<P>))
        .with_state(Arc::new(Health {
            metrics,
            probe,
            readiness,
        }))
}

async fn serve_metrics<P>(State(h): State<Arc<Health<P>>>) -> Response {
    (
        [(header::CONTENT_TYPE, metrics::CONTENT_TYPE)],
        h.metrics.encode(),
    )
        .into_response()
}

async fn ready<P: StorageProbe>(State(h): State<Arc<Health<P>>>) -> Response {
    let probe = async {
        match h.readiness {
            Readiness::Writes => h.probe.probe().await,
            Readiness::Reads => h.probe.probe_reads().await,
        }
    };
    match tokio::time::timeout(READINESS_TIMEOUT, probe).await {
        Ok(Ok(())) => "ready\n".into_response(),
        Ok(Err(e)) => {
            tracing::warn!(error = %ErrorChain(&e), "readiness probe failed");
            (StatusCode::SERVICE_UNAVAILABLE, format!("not ready: {e}\n")).into_response()
        }
        Err(_) => {
            tracing::warn!("readiness probe timed out");
            (
                StatusCode::SERVICE_UNAVAILABLE,
                format!("not ready: the storage did not answer within {READINESS_TIMEOUT:?}\n"),
            )
                .into_response()
        }
    }
}
