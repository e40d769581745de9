//! The GCS driver (`type = "gcs"`, feature `gcs`): the shared
//! [`Engine`](crate::storage::Engine) over [`GcsBackend`], on Google Cloud Storage through its
//! JSON API (client crate `gcloud-storage`; why that one: `docs/gcs.md`).
//!
//! Modules: [`config`] (settings, compiled without the feature too), `backend` (the
//! [`Backend`](crate::storage::backend::Backend) and the driver assembled over it), `client`
//! (client and credentials), `keys` (layout key → object name), `objects` (plain object operations),
//! [`reader`] (streamed blob reads), `parts` (a body cut into parts), `put_blob` (a
//! monolithic push in one streamed media upload), `presign` (V4 signed
//! URLs for blob reads: [`PresignBlobReads`](crate::storage::presign::PresignBlobReads)), [`upload`] (uploads and
//! their persisted state), `error` (GCS errors → crate errors).
//!
//! # Objects
//!
//! Everything lives below the configured prefix, in the tree of
//! [`layout`](crate::storage::layout). Metadata objects (links, tags, referrer entries, upload
//! states) are whole objects written with one media upload (atomic); manifest records are
//! write-once: created with `ifGenerationMatch=0`, and replaced only when a push changes
//! them (the same bytes with another media type). Listings use the delimiter `/`,
//! `startOffset` for the first name after `last`, and page tokens. Blob reads are one media
//! download (with `Range` for ranged reads) whose body is streamed straight to the caller.
//! A read that a retryable failure cuts midway is reopened from the first byte not
//! delivered by the shared [`Resumable`](crate::storage::layers::Resumable) layer: the driver
//! is assembled as `Engine<Instrumented<Resumable<GcsBackend>>>`, like S3's.
//!
//! # Uploads
//!
//! The state of an upload is [`GcsUploadState`], persisted by the engine in the bucket, so
//! any process sharing the bucket and prefix can continue it.
//!
//! - **Monolithic pushes** (`put_content`, digest known up front) are written in place. With
//!   the length declared, from one part up to `single_put_limit` (default 256 MiB), as one
//!   streamed media upload (`ifGenerationMatch=0`) whose last chunk is sent only once the
//!   engine verified the digest, spilled to a temporary file for a retry (`put_blob`).
//!   Otherwise the body is cut into parts (8 MiB); every part but the last goes, as it arrives, to a
//!   resumable upload session on the blob's own object, opened (`ifGenerationMatch=0`) only
//!   when a second part follows the first; the last part is held in memory until the engine
//!   has verified the digest, and is the session's final chunk. The blob becomes visible only
//!   then. A blob below one part is one conditional create at commit. No copy, no staging.
//! - **Chunked uploads** do not know the digest until the end. Each append cuts its body into
//!   pieces of at most one part and writes each as a new object
//!   `uploads/<id>/part-<end offset>-<random>` (one written while the next is received), so
//!   chunks of any size (1 byte, or a body of unknown length) and any number of them work,
//!   and a failed append never touches an object the persisted state refers to. When 32
//!   pieces of one level accumulate, they are composed into one piece of the next level, so
//!   an upload keeps at most about `31 × log32(n)` pieces. Commit composes the pieces (at
//!   most 32, after a final reduction) straight into the blob's object with
//!   `ifGenerationMatch=0`: no byte passes through the registry again and no copy is made.
//!   Superseded pieces are deleted by the next append (once the state that supersedes them
//!   is persisted), the rest at commit or abort, with every object below `uploads/<id>/`.
//! - Memory per upload: one part being received plus one being written (16 MiB).
//!
//! # Errors
//!
//! See `error`: missing objects become `None`/"unknown" errors, 408, 429, 5xx and
//! connection failures become retryable backend errors (HTTP 503), everything else a backend
//! error whose message names the JSON API request and GCS's answer; the operation and the
//! layout key are added by the instrumentation layer, the object name stays in the error's
//! source, for logs.

pub mod config;

#[cfg(feature = "gcs")]
mod backend;
#[cfg(feature = "gcs")]
mod client;
#[cfg(feature = "gcs")]
mod error;
#[cfg(feature = "gcs")]
mod keys;
#[cfg(feature = "gcs")]
mod lifecycle;
#[cfg(feature = "gcs")]
mod objects;
#[cfg(feature = "gcs")]
mod parts;
#[cfg(feature = "gcs")]
mod presign;
#[cfg(feature = "gcs")]
mod put_blob;
#[cfg(feature = "gcs")]
pub mod reader;
#[cfg(feature = "gcs")]
mod session;
#[cfg(feature = "gcs")]
pub mod upload;

#[cfg(feature = "gcs")]
pub use backend::{GcsBackend, GcsDriver};
pub use config::GcsConfig;
#[cfg(feature = "gcs")]
pub use reader::GcsReader;
#[cfg(feature = "gcs")]
pub use upload::{GcsUploadState, Piece, PieceName};
