//! Operability: Prometheus metrics, health checks, request ids and access logs, and
//! push/pull/delete notifications in CNCF Distribution's event format.
//!
//! - [`metrics`]: every series, behind one [`metrics::Metrics`] value the other parts record
//!   into (the HTTP middleware, the storage instrumentation layer, the cache, the garbage
//!   collector, the notifier).
//! - [`http`] (feature `server`): the middleware around the registry's router that gives
//!   every request an id, writes the access line, records the HTTP metrics and derives the
//!   notification events, all from the [`RouteInfo`](crate::registry::RouteInfo) the
//!   dispatcher attaches to each response.
//! - [`health`] (feature `server`): the metrics listener's routes, `/metrics`, `/healthz`
//!   and `/readyz`.
//!
//! Everything here is optional at run time: without a metrics listener there is no
//! [`metrics::Metrics`] and nothing is recorded.

#[cfg(feature = "server")]
pub mod health;
#[cfg(feature = "server")]
pub mod http;
#[cfg(feature = "server")]
pub mod logging;
pub mod metrics;
#[cfg(feature = "server")]
pub mod notify;
