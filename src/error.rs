//! The crate's one error type.
//!
//! Every variant maps onto exactly one error code of the OCI distribution specification v1.1
//! ("Error Codes" table) or onto one of the two extra conditions a storage library needs: an
//! unsatisfiable byte range (HTTP 416) and a failure of the storage backend itself.

use std::fmt;

use crate::oci::Digest;
use crate::storage::backend::Operation;
use crate::storage::layout::Key;

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
    /// The registry's policy refuses the change whoever asks: moving or deleting an
    /// immutable tag, or deleting the manifest one names (`403 DENIED`, the spec's code for
    /// a request the registry refuses to carry out).
    #[error("denied: {0}")]
    Denied(String),
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
    ///
    /// Its `Display` names the driver, the operation, the relative layout key and what
    /// failed, never an absolute path, a bucket, a key prefix or an SDK dump: those go to
    /// `source` ([`BackendDetail`]), for logs. An HTTP answer says only the operation.
    #[error("{driver} storage backend error{}: {message}", backend_context(*.operation, .key.as_ref()))]
    Backend {
        /// Name of the driver that failed (`"filesystem"`, `"s3"`, ...).
        driver: &'static str,
        /// The backend operation that failed, filled in by the instrumentation layer
        /// ([`Instrumented`](crate::storage::layers::Instrumented)) when the backend did not.
        operation: Option<Operation>,
        /// The layout key (relative, as [`layout`](crate::storage::layout) draws it) the
        /// operation was about, filled in like `operation`.
        key: Option<Key>,
        /// What failed, in words that hold no path, object key or SDK output.
        message: String,
        /// Whether retrying the same request may succeed (throttling, timeouts).
        retryable: bool,
        /// The underlying error, if any, with the details for logs.
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
            Self::Denied(_) => ErrorCode::Denied,
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
            Self::Denied(_) => 403,
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

    /// A backend error without an underlying source. `message` says what failed; it must
    /// hold no path, object key or SDK output (see [`backend_detail`](Self::backend_detail)).
    pub fn backend(driver: &'static str, message: impl Into<String>) -> Self {
        Self::Backend {
            driver,
            operation: None,
            key: None,
            message: message.into(),
            retryable: false,
            source: None,
        }
    }

    /// [`backend`](Self::backend) for a transient failure: repeating the operation may
    /// succeed (HTTP 503 with `Retry-After` for a client). Same rule for `message`.
    pub fn backend_transient(driver: &'static str, message: impl Into<String>) -> Self {
        Self::Backend {
            driver,
            operation: None,
            key: None,
            message: message.into(),
            retryable: true,
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
            operation: None,
            key: None,
            message: message.into(),
            retryable: false,
            source: Some(Box::new(source)),
        }
    }

    /// A backend error whose details for logs (a path, an object key, an SDK's output) are
    /// kept apart from its message, in its source.
    pub fn backend_detail(
        driver: &'static str,
        message: impl Into<String>,
        detail: impl Into<String>,
    ) -> Self {
        Self::backend_source(driver, message, BackendDetail::new(detail, None))
    }

    /// Wraps an I/O error from `driver`; `what` names the step that failed ("syncing"),
    /// never a path (an `io::Error`'s own text holds none).
    pub fn io(driver: &'static str, what: &'static str, err: std::io::Error) -> Self {
        Self::io_error(driver, what, err, |err| Box::new(err))
    }

    /// Like [`io`](Self::io), with where it happened (a path) kept in the error's
    /// [`BackendDetail`] for logs, out of its message.
    pub fn io_at(
        driver: &'static str,
        what: &'static str,
        location: impl fmt::Display,
        err: std::io::Error,
    ) -> Self {
        Self::io_error(driver, what, err, |err| {
            let detail = format!("{what} {location}");
            Box::new(BackendDetail::new(detail, Some(Box::new(err))))
        })
    }

    fn io_error(
        driver: &'static str,
        what: &'static str,
        err: std::io::Error,
        source: impl FnOnce(std::io::Error) -> Box<dyn std::error::Error + Send + Sync + 'static>,
    ) -> Self {
        let retryable = matches!(
            err.kind(),
            std::io::ErrorKind::TimedOut | std::io::ErrorKind::Interrupted
        );
        Self::Backend {
            driver,
            operation: None,
            key: None,
            message: format!("{what}: {err}"),
            retryable,
            source: Some(source(err)),
        }
    }

    /// Fills in the operation and the key of a backend error that does not name them yet
    /// (`key` is only called then); any other error is returned as it is.
    #[inline]
    pub fn with_context(mut self, op: Operation, key: impl FnOnce() -> Option<Key>) -> Self {
        if let Self::Backend {
            operation,
            key: slot,
            ..
        } = &mut self
        {
            if operation.is_none() {
                *operation = Some(op);
            }
            if slot.is_none() {
                *slot = key();
            }
        }
        self
    }

    /// The backend operation a backend error happened in, if known.
    pub fn backend_operation(&self) -> Option<Operation> {
        match self {
            Self::Backend { operation, .. } => *operation,
            _ => None,
        }
    }
}

/// ` during <operation> of <key>`, or less, for [`Error::Backend`]'s `Display`.
fn backend_context(operation: Option<Operation>, key: Option<&Key>) -> String {
    match (operation, key) {
        (Some(op), Some(key)) => format!(" during {} of {key}", op.as_str()),
        (Some(op), None) => format!(" during {}", op.as_str()),
        (None, Some(key)) => format!(" on {key}"),
        (None, None) => String::new(),
    }
}

/// The details of a backend error meant for logs only: an absolute path, an object key with
/// its bucket and prefix, an SDK's full output. Kept as the [`Error::Backend`]'s `source`,
/// so a log that prints the chain of sources shows them, while the error's own `Display`
/// and every HTTP answer leave them out.
#[derive(Debug)]
pub struct BackendDetail {
    text: String,
    source: Option<Box<dyn std::error::Error + Send + Sync + 'static>>,
}

impl BackendDetail {
    /// A detail, with the error it describes.
    pub fn new(
        text: impl Into<String>,
        source: Option<Box<dyn std::error::Error + Send + Sync + 'static>>,
    ) -> Self {
        Self {
            text: text.into(),
            source,
        }
    }
}

impl fmt::Display for BackendDetail {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

impl std::error::Error for BackendDetail {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.source
            .as_deref()
            .map(|e| e as &(dyn std::error::Error + 'static))
    }
}

/// An error and every source below it, `: `-separated: what a log should print (see
/// [`BackendDetail`]).
#[derive(Debug, Clone, Copy)]
pub struct ErrorChain<'a>(pub &'a (dyn std::error::Error + 'static));

impl fmt::Display for ErrorChain<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)?;
        let mut source = self.0.source();
        while let Some(cause) = source {
            write!(f, ": {cause}")?;
            source = cause.source();
        }
        Ok(())
    }
}

/// A TOML parse error of a configuration file, told without the file's text: the line and
/// column, and the parser's message with every quoted string in it left out (`"…"`). The
/// parser's own rendering quotes the offending line, which may hold a secret (a header's
/// value, credentials in a URL) and would reach the logs.
pub fn toml_error_without_values(text: &str, error: &toml::de::Error) -> String {
    let mut message = String::with_capacity(error.message().len());
    let mut chars = error.message().trim_end().chars();
    while let Some(c) = chars.next() {
        message.push(c);
        if c == '"' {
            let mut escaped = false;
            for c in chars.by_ref() {
                match c {
                    '"' if !escaped => break,
                    '\\' => escaped = !escaped,
                    _ => escaped = false,
                }
            }
            message.push_str("…\"");
        }
    }
    match error.span() {
        Some(span) => {
            let before = &text[..span.start.min(text.len())];
            let line = before.matches('\n').count() + 1;
            let column = before.len() - before.rfind('\n').map_or(0, |i| i + 1) + 1;
            format!("line {line}, column {column}: {message}")
        }
        None => message,
    }
}

#[cfg(test)]
mod toml_error_tests {
    use super::toml_error_without_values;

    #[derive(Debug, serde::Deserialize)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct Endpoint {
        url: String,
        retries: Option<u32>,
    }

    fn describe(text: &str) -> String {
        let e = toml::from_str::<Endpoint>(text).unwrap_err();
        toml_error_without_values(text, &e)
    }

    #[test]
    fn values_stay_out_and_the_place_is_named() {
        let text = "url = \"http://u:SECRET@h/\"\nretries = \"SECRET \\\" more\"\n";
        let told = describe(text);
        assert!(!told.contains("SECRET"), "{told}");
        assert!(told.starts_with("line 2, column 11: "), "{told}");
        assert!(told.contains("\"…\""), "{told}");
        // Syntax errors and unknown keys keep what helps: where, and the key's name.
        let told = describe("url = \"x\"\nretires = 3\n");
        assert!(told.starts_with("line 2, column 1: "), "{told}");
        assert!(told.contains("`retires`"), "{told}");
        let told = describe("url = \"SECRET\nretries = 3\n");
        assert!(!told.contains("SECRET"), "{told}");
        assert!(told.starts_with("line 1, column "), "{told}");
    }
}
