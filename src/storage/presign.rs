//! Presigned blob reads: a capability of some backends (S3; GCS has signed URLs), kept out
//! of [`Backend`] so that a backend without it implements nothing and a layer forwards it
//! only where its inner backend has it (`impl<B: PresignBlobReads> PresignBlobReads for
//! Layer<B>`), instead of a defaulted method every backend and layer would carry.
//!
//! A registry answering a blob `GET` with a redirect to such a URL serves the bytes straight
//! from the store (spec "Pulling blobs": a `307`/`302` to the blob's location is allowed);
//! the engine must have checked that the blob is visible in the repository first, since the
//! URL names the blob only.

use std::future::Future;
use std::time::{Duration, SystemTime};

use crate::error::Result;
use crate::oci::Digest;
use crate::storage::backend::Backend;

/// Default validity of a redirect's presigned URL: 20 minutes.
pub const DEFAULT_REDIRECT_EXPIRY_SECS: u64 = 20 * 60;
/// Longest validity of a presigned URL (S3 SigV4 and GCS V4 signatures: 7 days).
pub const MAX_REDIRECT_EXPIRY_SECS: u64 = 7 * 24 * 3600;

/// How long a redirect's presigned URL is valid: `secs`, or
/// [`DEFAULT_REDIRECT_EXPIRY_SECS`].
pub fn redirect_expiry(secs: Option<u64>) -> Duration {
    Duration::from_secs(secs.unwrap_or(DEFAULT_REDIRECT_EXPIRY_SECS))
}

/// Checks a configured redirect validity (`field` names it in the error): 1 second to
/// [`MAX_REDIRECT_EXPIRY_SECS`].
pub fn check_redirect_expiry(field: &'static str, secs: Option<u64>) -> Result<()> {
    match secs {
        Some(secs) if !(1..=MAX_REDIRECT_EXPIRY_SECS).contains(&secs) => {
            Err(crate::error::Error::Config {
                field,
                message: format!("{secs} is outside 1..={MAX_REDIRECT_EXPIRY_SECS}"),
            })
        }
        _ => Ok(()),
    }
}

/// A `GET` request anyone holding it may send to read a blob's bytes directly from the
/// store, until it expires.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PresignedRead {
    /// The URL, signature included.
    pub url: String,
    /// Headers the request must carry as signed (often none).
    pub headers: Vec<(String, String)>,
    /// When the signature stops being accepted.
    pub expires_at: SystemTime,
}

/// A backend that can presign blob reads.
pub trait PresignBlobReads: Backend {
    /// A presigned `GET` of the blob `digest` (which the caller knows to be stored), valid
    /// for `expires_in`. Signing is local: no request to the store.
    fn presign_read_blob(
        &self,
        digest: &Digest,
        expires_in: Duration,
    ) -> impl Future<Output = Result<PresignedRead>> + Send;
}
