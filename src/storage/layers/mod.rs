//! Layers over a [`Backend`](super::backend::Backend): wrappers that add one cross-cutting
//! concern to every backend, written once, instead of inside each backend.
//!
//! A layer implements `Backend` for `Layer<B: Backend>`, changes what its concern needs and
//! forwards the rest with [`forward_backend!`](crate::forward_backend) (see `forward` for why
//! a layer cannot silently drop a method).

mod forward;

// Paths the `forward_backend!` macro names from other crates.
#[doc(hidden)]
pub use bytes::Bytes;
#[doc(hidden)]
pub use futures::Stream;
