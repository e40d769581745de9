//! # marina-distribution
//!
//! Store and serve OCI images and artifacts exactly as the OCI distribution specification
//! v1.1 defines them, on the local filesystem, in memory, or on S3-compatible object storage.
#![warn(missing_docs)]

pub mod error;
pub mod oci;
pub mod storage;

pub use error::{Error, ErrorCode, Result};
pub use storage::{AnyDriver, StorageConfig, StorageDriver};
