//! The OCI specifications' vocabulary, without I/O: digests, repository names, tags,
//! references, byte-range grammars, manifest inspection and the globs that match names.

mod digest;
pub mod glob;
pub mod manifest;
mod name;
pub mod range;

pub use digest::{Digest, DigestAlgorithm};
pub use manifest::{Descriptor, ManifestSummary, media_types};
pub use name::{Reference, RepositoryName, Tag};
pub use range::{ByteRange, RangeRequest};
