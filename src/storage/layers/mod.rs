//! Layers over a [`Backend`](super::backend::Backend): wrappers that add one cross-cutting
//! concern to every backend, written once, instead of inside each backend.
//!
//! A layer implements `Backend` for `Layer<B: Backend>`, changes what its concern needs and
//! forwards the rest with [`forward_backend!`](crate::forward_backend) (see `forward` for why
//! a layer cannot silently drop a method). A layer that runs every call through one method of
//! its own (`Instrumented`, `FaultInjection`) has those calls written by one macro (`wrap`).
//!
//! - [`Instrumented`]: tracing spans, observers (metrics) and the context of errors, around
//!   every backend, applied where each driver type is assembled;
//! - [`Resumable`]: blob reads that reopen where a dropped connection cut them, for object
//!   stores;
//! - `FaultInjection` (feature `testsuite`): planned failures, for tests.

#[cfg(any(test, feature = "testsuite"))]
mod faults;
mod forward;
mod instrumented;
mod resumable;
mod wrap;

#[cfg(any(test, feature = "testsuite"))]
pub use faults::{Fault, FaultInjection, Faults, FaultyReader};

pub use instrumented::{
    Instrumented, InstrumentedReader, Observation, Observer, OperationCounts, Outcome, Unobserved,
};
pub use resumable::{DEFAULT_BUDGET, DEFAULT_FIRST_PAUSE, Resumable, ResumableReader};

// Paths the `forward_backend!` macro names from other crates.
#[doc(hidden)]
pub use bytes::Bytes;
#[doc(hidden)]
pub use futures::Stream;
