//! # marina-distribution
//!
//! Store and serve OCI images and artifacts exactly as the [OCI distribution specification
//! v1.1] defines them, on the local filesystem, in memory, or on S3-compatible object
//! storage, through one statically dispatched trait.
//!
//! - [`StorageDriver`] holds the OCI operations only (blobs, uploads, manifests, tags,
//!   referrers, mount, ranged reads). Its blob stream and upload handle are associated types
//!   and its methods return `impl Future + Send`: no `dyn`, no boxing on hot paths.
//! - [`storage::Engine`] implements the OCI logic once (links, digest verification while
//!   streaming, resumable hashing, manifest checks, tags, referrers) over a small
//!   [`storage::backend::Backend`] trait; the filesystem, in-memory and S3 drivers only add
//!   what is specific to their backend.
//! - [`AnyDriver`] is the enum the factory builds from a [`StorageConfig`]; its associated
//!   types are enums too, so choosing the driver at run time costs a `match`, not a box.
//! - With the `server` feature, [`registry`] serves the HTTP API over any driver, and the
//!   `marina-registry` binary is a complete registry.
//!
//! ## Embedding
//!
//! ```
//! use bytes::Bytes;
//! use futures::{StreamExt, stream};
//! use marina_distribution::oci::{Digest, DigestAlgorithm, Reference, RepositoryName, Tag};
//! use marina_distribution::storage::UploadHandle;
//! use marina_distribution::{AnyDriver, StorageConfig, StorageDriver};
//!
//! # tokio::runtime::Runtime::new().unwrap().block_on(async {
//! // `StorageConfig::filesystem("./data")` or an S3 configuration work the same way.
//! let driver = AnyDriver::from_config(&StorageConfig::inmemory()).await?;
//! let repo = RepositoryName::parse("library/hello")?;
//!
//! // A chunked upload: the digest is computed while the bytes stream in.
//! let layer = Bytes::from_static(b"hello, registry");
//! let digest = Digest::compute(DigestAlgorithm::Sha256, &layer);
//! let upload = driver.start_upload(&repo, DigestAlgorithm::Sha256).await?;
//! let upload = driver
//!     .put_upload_chunk(&repo, &upload.id(), Some(0), None, stream::iter([Ok(layer.slice(..5))]))
//!     .await?;
//! driver
//!     .finish_upload(&repo, &upload.id(), &digest, None, stream::iter([Ok(layer.slice(5..))]))
//!     .await?;
//!
//! // Read it back as a stream of `Bytes`.
//! let read = driver.get_content(&repo, &digest, None).await?;
//! let chunks: Vec<_> = read.stream.collect().await;
//! assert_eq!(chunks.concat_bytes(), layer);
//!
//! // A manifest referencing it (an empty config blob first), tagged `latest`.
//! let config = Bytes::from_static(b"{}");
//! let config_digest = Digest::compute(DigestAlgorithm::Sha256, &config);
//! driver.put_content(&repo, &config_digest, None, stream::iter([Ok(config)])).await?;
//! let manifest = format!(
//!     r#"{{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json",
//!         "config":{{"mediaType":"application/vnd.oci.empty.v1+json","digest":"{config_digest}","size":2}},
//!         "layers":[{{"mediaType":"application/vnd.oci.image.layer.v1.tar","digest":"{digest}","size":15}}]}}"#
//! );
//! let latest = Reference::Tag(Tag::parse("latest")?);
//! driver.put_manifest(&repo, &latest, None, Bytes::from(manifest.clone())).await?;
//! assert_eq!(driver.get_manifest(&repo, &latest).await?.bytes, manifest.as_bytes());
//! # Ok::<(), marina_distribution::Error>(())
//! # }).unwrap();
//! # trait ConcatBytes { fn concat_bytes(self) -> Bytes; }
//! # impl ConcatBytes for Vec<marina_distribution::Result<Bytes>> {
//! #     fn concat_bytes(self) -> Bytes {
//! #         self.into_iter().flat_map(|c| c.unwrap().to_vec()).collect::<Vec<u8>>().into()
//! #     }
//! # }
//! ```
//!
//! [OCI distribution specification v1.1]: https://github.com/opencontainers/distribution-spec/blob/v1.1.0/spec.md
#![warn(missing_docs)]
#![warn(unreachable_pub)]

#[cfg(feature = "server")]
mod config_duration;
pub mod error;
pub mod observe;
pub mod oci;
#[cfg(feature = "server")]
pub mod proxy;
#[cfg(feature = "server")]
pub mod registry;
#[cfg(feature = "server")]
pub mod server;
pub mod storage;

pub use error::{Error, ErrorCode, Result};

/// The README's embedding example, compiled and run as a doctest.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
pub struct ReadmeExamples;

/// The embedding guide's examples (`docs/embedding.md`), compiled and run as doctests.
#[cfg(doctest)]
#[doc = include_str!("../docs/embedding.md")]
pub struct EmbeddingGuideExamples;
pub use storage::{AnyDriver, StorageConfig, StorageDriver};
