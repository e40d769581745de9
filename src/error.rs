//! The crate's one error type.
//!
//! Every variant maps onto exactly one error code of the OCI distribution specification v1.1
//! ("Error Codes" table) or onto one of the two extra conditions a storage library needs: an
//! unsatisfiable byte range (HTTP 416) and a failure of the storage backend itself.

use crate::oci::Digest;

/// Convenience alias used throughout the crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// The error codes of the OCI distribution specification v1.1 (section "Error Codes").
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ErrorCode {
    /// `BLOB_UNKNOWN` (code-1): blob unknown to registry.
    BlobUnknown,
    /// `BLOB_UPLOAD_INVALID` (code-2): blob upload invalid.
    BlobUploadInvalid,
    /// `BLOB_UPLOAD_UNKNOWN` (code-3): blob upload unknown to registry.
    BlobUploadUnknown,
    /// `DIGEST_INVALID` (code-4): provided digest did not match uploaded content.
    DigestInvalid,
    /// `MANIFEST_BLOB_UNKNOWN` (code-5): manifest references a manifest or blob unknown to registry.
    ManifestBlobUnknown,
    /// `MANIFEST_INVALID` (code-6): manifest invalid.
    ManifestInvalid,
    /// `MANIFEST_UNKNOWN` (code-7): manifest unknown to registry.
    ManifestUnknown,
    /// `NAME_INVALID` (code-8): invalid repository name.
    NameInvalid,
    /// `NAME_UNKNOWN` (code-9): repository name not known to registry.
    NameUnknown,
    /// `SIZE_INVALID` (code-10): provided length did not match content length.
    SizeInvalid,
    /// `UNAUTHORIZED` (code-11): authentication required.
    Unauthorized,
    /// `DENIED` (code-12): requested access to the resource is denied.
    Denied,
    /// `UNSUPPORTED` (code-13): the operation is unsupported.
    Unsupported,
    /// `TOOMANYREQUESTS` (code-14): too many requests.
    TooManyRequests,
}

impl ErrorCode {
    /// The identifier used in the JSON error envelope, e.g. `"BLOB_UNKNOWN"`.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::BlobUnknown => "BLOB_UNKNOWN",
            Self::BlobUploadInvalid => "BLOB_UPLOAD_INVALID",
            Self::BlobUploadUnknown => "BLOB_UPLOAD_UNKNOWN",
            Self::DigestInvalid => "DIGEST_INVALID",
            Self::ManifestBlobUnknown => "MANIFEST_BLOB_UNKNOWN",
            Self::ManifestInvalid => "MANIFEST_INVALID",
            Self::ManifestUnknown => "MANIFEST_UNKNOWN",
            Self::NameInvalid => "NAME_INVALID",
            Self::NameUnknown => "NAME_UNKNOWN",
            Self::SizeInvalid => "SIZE_INVALID",
            Self::Unauthorized => "UNAUTHORIZED",
            Self::Denied => "DENIED",
            Self::Unsupported => "UNSUPPORTED",
            Self::TooManyRequests => "TOOMANYREQUESTS",
        }
    }

    /// The human readable message the specification gives for the code.
    pub const fn spec_message(self) -> &'static str {
        match self {
            Self::BlobUnknown => "blob unknown to registry",
            Self::BlobUploadInvalid => "blob upload invalid",
            Self::BlobUploadUnknown => "blob upload unknown to registry",
            Self::DigestInvalid => "provided digest did not match uploaded content",
            Self::ManifestBlobUnknown => {
                "manifest references a manifest or blob unknown to registry"
            }
            Self::ManifestInvalid => "manifest invalid",
            Self::ManifestUnknown => "manifest unknown to registry",
            Self::NameInvalid => "invalid repository name",
            Self::NameUnknown => "repository name not known to registry",
            Self::SizeInvalid => "provided length did not match content length",
            Self::Unauthorized => "authentication required",
            Self::Denied => "requested access to the resource is denied",
            Self::Unsupported => "the operation is unsupported",
            Self::TooManyRequests => "too many requests",
        }
    }
}

impl std::fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Everything that can go wrong in this crate.
///
/// Variants carry enough context for a useful message; [`Error::code`] gives the spec's error
/// code and [`Error::http_status`] the status a registry answers with.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The blob is not known in this repository.
    #[error("blob unknown to registry: {0}")]
    BlobUnknown(Digest),
    /// The upload request is malformed or its body could not be read.
    #[error("blob upload invalid: {0}")]
    BlobUploadInvalid(String),
    /// No upload session with this id exists in this repository.
    #[error("blob upload unknown to registry: {0}")]
    BlobUploadUnknown(String),
    /// A digest is malformed, uses an unsupported algorithm, or does not match the content.
    #[error("digest invalid: {0}")]
    DigestInvalid(String),
    /// A manifest references a blob or manifest that is not in the repository.
    #[error("manifest references unknown blob or manifest: {0}")]
    ManifestBlobUnknown(Digest),
    /// The manifest is malformed, or a tag used to push it is malformed.
    #[error("manifest invalid: {0}")]
    ManifestInvalid(String),
    /// The manifest (by tag or digest) is not known in this repository.
    #[error("manifest unknown to registry: {0}")]
    ManifestUnknown(String),
    /// The repository name does not match the spec's grammar.
    #[error("invalid repository name: {0}")]
    NameInvalid(String),
    /// The repository does not exist.
    #[error("repository name not known to registry: {0}")]
    NameUnknown(String),
    /// A declared length does not match the content, or content exceeds a size limit.
    #[error("size invalid: {0}")]
    SizeInvalid(String),
    /// The request is not supported by this registry or driver.
    #[error("unsupported: {0}")]
    Unsupported(String),
    /// The backend asks the caller to slow down.
    #[error("too many requests: {0}")]
    TooManyRequests(String),
    /// A byte range (blob read or upload chunk) cannot be satisfied.
    ///
    /// `size` is the current size of the blob or upload, so callers can report it
    /// (`Content-Range: bytes */size` for reads, `Range: 0-(size-1)` for uploads).
    #[error("range not satisfiable (current size {size}): {reason}")]
    RangeInvalid {
        /// Current size of the blob or the upload.
        size: u64,
        /// What was wrong with the range.
        reason: String,
    },
    /// The storage backend failed.
    #[error("{driver} storage backend error: {message}")]
    Backend {
        /// Name of the driver that failed (`"filesystem"`, `"s3"`, ...).
        driver: &'static str,
        /// What failed.
        message: String,
        /// Whether retrying the same request may succeed (throttling, timeouts).
        retryable: bool,
        /// The underlying error, if any.
        #[source]
        source: Option<Box<dyn std::error::Error + Send + Sync + 'static>>,
    },
    /// The storage configuration is invalid; `field` names the offending setting.
    #[error("invalid storage configuration: {field}: {message}")]
    Config {
        /// The configuration field (or environment variable) at fault.
        field: &'static str,
        /// What is wrong with it.
        message: String,
    },
}

impl Error {
    /// The spec error code this error is reported as.
    ///
    /// Range errors report `BLOB_UPLOAD_INVALID` (uploads) — the HTTP layer answers 416 for
    /// them; backend and configuration errors have no spec code and report `UNKNOWN`-like
    /// server failures, for which `None` is returned.
    pub fn code(&self) -> Option<ErrorCode> {
        Some(match self {
            Self::BlobUnknown(_) => ErrorCode::BlobUnknown,
            Self::BlobUploadInvalid(_) => ErrorCode::BlobUploadInvalid,
            Self::BlobUploadUnknown(_) => ErrorCode::BlobUploadUnknown,
            Self::DigestInvalid(_) => ErrorCode::DigestInvalid,
            Self::ManifestBlobUnknown(_) => ErrorCode::ManifestBlobUnknown,
            Self::ManifestInvalid(_) => ErrorCode::ManifestInvalid,
            Self::ManifestUnknown(_) => ErrorCode::ManifestUnknown,
            Self::NameInvalid(_) => ErrorCode::NameInvalid,
            Self::NameUnknown(_) => ErrorCode::NameUnknown,
            Self::SizeInvalid(_) => ErrorCode::SizeInvalid,
            Self::Unsupported(_) => ErrorCode::Unsupported,
            Self::TooManyRequests(_) => ErrorCode::TooManyRequests,
            Self::RangeInvalid { .. } => ErrorCode::BlobUploadInvalid,
            Self::Backend { .. } | Self::Config { .. } => return None,
        })
    }

    /// The HTTP status a registry answers with for this error.
    pub fn http_status(&self) -> u16 {
        match self {
            Self::BlobUnknown(_)
            | Self::BlobUploadUnknown(_)
            | Self::ManifestUnknown(_)
            | Self::NameUnknown(_) => 404,
            Self::BlobUploadInvalid(_)
            | Self::DigestInvalid(_)
            | Self::ManifestBlobUnknown(_)
            | Self::ManifestInvalid(_)
            | Self::NameInvalid(_)
            | Self::SizeInvalid(_) => 400,
            Self::Unsupported(_) => 405,
            Self::TooManyRequests(_) => 429,
            Self::RangeInvalid { .. } => 416,
            Self::Backend {
                retryable: true, ..
            } => 503,
            Self::Backend { .. } | Self::Config { .. } => 500,
        }
    }

    /// Whether repeating the operation may succeed.
    pub fn is_retryable(&self) -> bool {
        matches!(
            self,
            Self::TooManyRequests(_)
                | Self::Backend {
                    retryable: true,
                    ..
                }
        )
    }

    /// A backend error without an underlying source.
    pub fn backend(driver: &'static str, message: impl Into<String>) -> Self {
        Self::Backend {
            driver,
            message: message.into(),
            retryable: false,
            source: None,
        }
    }

    /// A backend error wrapping its cause.
    pub fn backend_source(
        driver: &'static str,
        message: impl Into<String>,
        source: impl std::error::Error + Send + Sync + 'static,
    ) -> Self {
        Self::Backend {
            driver,
            message: message.into(),
            retryable: false,
            source: Some(Box::new(source)),
        }
    }

    /// Wraps an I/O error from `driver`, naming the operation that failed.
    pub fn io(driver: &'static str, context: impl std::fmt::Display, err: std::io::Error) -> Self {
        let retryable = matches!(
            err.kind(),
            std::io::ErrorKind::TimedOut | std::io::ErrorKind::Interrupted
        );
        Self::Backend {
            driver,
            message: format!("{context}: {err}"),
            retryable,
            source: Some(Box::new(err)),
        }
    }
}
