//! Translation of aws-sdk-s3 errors into the crate's [`Error`] kinds, in one place.
//!
//! | S3 answer                                               | crate error                        |
//! |---------------------------------------------------------|------------------------------------|
//! | `NoSuchKey` / 404 on an object                          | `None` (or the caller's "unknown") |
//! | `NoSuchUpload` (multipart upload gone)                   | [`Error::BlobUploadUnknown`]       |
//! | `SlowDown`, throttling codes, 429, 500, 502, 503, 504   | [`Error::Backend`], retryable      |
//! | timeouts, connection failures, truncated responses      | [`Error::Backend`], retryable      |
//! | no credentials from the SDK's chain (request not sent)  | [`Error::Backend`], retryable      |
//! | anything else (403, `NoSuchBucket`, 412, ...)           | [`Error::Backend`], not retryable  |
//!
//! The SDK's standard retry policy has already retried throttling and transient failures
//! (with backoff) by the time an error reaches this module, so a retryable error here means
//! "still failing after the SDK's retries": the registry answers 503 and the client may try
//! again later.

use aws_sdk_s3::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_s3::operation::{RequestId, RequestIdExt};
use aws_smithy_runtime_api::client::orchestrator::HttpResponse;

use crate::error::{BackendDetail, Error};

/// Driver name used in errors.
pub(crate) const DRIVER: &str = "s3";

/// Error codes S3 and compatible stores use to ask for slowing down or report transient
/// server trouble.
const TRANSIENT_CODES: &[&str] = &[
    "SlowDown",
    "Throttling",
    "ThrottlingException",
    "ThrottledException",
    "RequestThrottled",
    "RequestLimitExceeded",
    "TooManyRequests",
    "RequestTimeout",
    "RequestTimeoutException",
    "InternalError",
    "ServiceUnavailable",
];

/// HTTP status of the response, if there was one.
pub(crate) fn status<E>(err: &SdkError<E, HttpResponse>) -> Option<u16> {
    err.raw_response().map(|r| r.status().as_u16())
}

/// Whether the error says the object (or, for `HeadObject`, whose 404 has no body) does not
/// exist. A missing *bucket* is not "not found": it is a configuration error.
pub(crate) fn is_not_found<E: ProvideErrorMetadata>(err: &SdkError<E, HttpResponse>) -> bool {
    match err.code() {
        Some("NoSuchKey" | "NotFound") => true,
        Some("NoSuchBucket" | "NoSuchUpload") => false,
        _ => status(err) == Some(404),
    }
}

/// Whether the error says the multipart upload does not exist (any more).
pub(crate) fn is_no_such_upload<E: ProvideErrorMetadata>(err: &SdkError<E, HttpResponse>) -> bool {
    err.code() == Some("NoSuchUpload")
}

/// Whether a conditional request was refused: `412 Precondition Failed`, or `409
/// ConditionalRequestConflict` (another conditional write of the object is in flight).
pub(crate) fn is_precondition_failed<E: ProvideErrorMetadata>(
    err: &SdkError<E, HttpResponse>,
) -> bool {
    matches!(
        err.code(),
        Some("PreconditionFailed" | "ConditionalRequestConflict")
    ) || status(err) == Some(412)
}

/// Whether repeating the request later may succeed.
pub(crate) fn is_retryable<E: ProvideErrorMetadata>(err: &SdkError<E, HttpResponse>) -> bool {
    match err {
        SdkError::TimeoutError(_) | SdkError::DispatchFailure(_) | SdkError::ResponseError(_) => {
            true
        }
        SdkError::ServiceError(_) => {
            err.code().is_some_and(|c| TRANSIENT_CODES.contains(&c))
                || matches!(status(err), Some(429 | 500 | 502 | 503 | 504))
        }
        _ => false,
    }
}

/// Translates an SDK error of the S3 request `op` (`"GetObject"`) on the object `key`.
///
/// The error's message names the request and what S3 answered (its error code and HTTP
/// status, or the kind of transport failure). The object key (with the bucket's prefix) and
/// S3's request ids (what AWS support asks for) go to the [`BackendDetail`] in its source,
/// and the SDK's error below that: a log prints the chain ([`crate::error::ErrorChain`]),
/// each part once.
pub(crate) fn translate<E>(op: &'static str, key: &str, err: SdkError<E, HttpResponse>) -> Error
where
    E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
{
    if is_no_such_upload(&err) {
        return Error::BlobUploadUnknown(
            "the multipart upload no longer exists in the bucket".into(),
        );
    }
    let answer = match (err.code(), status(&err)) {
        (Some(code), Some(status)) => format!("{code} (HTTP {status})"),
        (Some(code), None) => code.to_owned(),
        (None, Some(status)) => format!("HTTP {status}"),
        (None, None) => match &err {
            SdkError::TimeoutError(_) => "timed out".to_owned(),
            SdkError::DispatchFailure(_) if lacks_credentials(&err) => {
                "request not sent (no credentials)".to_owned()
            }
            SdkError::DispatchFailure(_) => "request not sent (connection failed)".to_owned(),
            SdkError::ResponseError(_) => "response unreadable".to_owned(),
            _ => "request failed".to_owned(),
        },
    };
    let detail = request_detail(op, key, &err);
    Error::Backend {
        driver: DRIVER,
        operation: None,
        key: None,
        message: format!("{op}: {answer}"),
        retryable: is_retryable(&err),
        source: Some(Box::new(BackendDetail::new(detail, Some(Box::new(err))))),
    }
}

/// Whether the request was not sent because no credentials could be had (the SDK reports
/// that as a dispatch failure, like a refused connection).
fn lacks_credentials<E>(err: &SdkError<E, HttpResponse>) -> bool
where
    E: std::error::Error + 'static,
{
    let mut cause = std::error::Error::source(err);
    while let Some(c) = cause {
        if c.is::<aws_credential_types::provider::error::CredentialsError>() {
            return true;
        }
        cause = c.source();
    }
    false
}

/// `GetObject blobs/…` with S3's request id and extended request id when it answered.
fn request_detail<E>(op: &str, key: &str, err: &SdkError<E, HttpResponse>) -> String {
    match (err.request_id(), err.extended_request_id()) {
        (Some(id), Some(extended)) => {
            format!("{op} {key} (request id {id}, extended request id {extended})")
        }
        (Some(id), None) => format!("{op} {key} (request id {id})"),
        (None, _) => format!("{op} {key}"),
    }
}

/// Translates a failure while streaming a response body (connection dropped mid-body).
pub(crate) fn body(key: &str, err: aws_smithy_types::byte_stream::error::Error) -> Error {
    Error::Backend {
        driver: DRIVER,
        operation: None,
        key: None,
        message: "response body interrupted".into(),
        retryable: true,
        source: Some(Box::new(BackendDetail::new(
            format!("reading {key}"),
            Some(Box::new(err)),
        ))),
    }
}

/// A backend error about the driver's own records (e.g. an upload state that does not add
/// up). `message` holds no object key.
pub(crate) fn corrupt(message: impl Into<String>) -> Error {
    Error::backend(DRIVER, message)
}

/// Like [`corrupt`], about the object `key` (kept in the detail, for logs).
pub(crate) fn corrupt_at(message: impl Into<String>, key: &str) -> Error {
    Error::backend_detail(DRIVER, message, key)
}

#[cfg(test)]
mod tests {
    use aws_sdk_s3::operation::get_object::GetObjectError;
    use aws_smithy_runtime_api::client::result::ConnectorError;
    use aws_smithy_runtime_api::http::StatusCode;
    use aws_smithy_types::body::SdkBody;
    use aws_smithy_types::error::ErrorMetadata;

    use super::*;
    use crate::error::ErrorChain;

    fn logged(err: &Error) -> String {
        ErrorChain(err).to_string()
    }

    /// A service error's log line names the request, the key, S3's request ids and S3's own
    /// words, each once; the client's message names only the request and the answer.
    #[test]
    fn a_service_error_is_logged_once_with_its_request_ids() {
        let mut raw = HttpResponse::new(StatusCode::try_from(404).unwrap(), SdkBody::from(""));
        raw.headers_mut().insert("x-amz-request-id", "REQ123");
        raw.headers_mut().insert("x-amz-id-2", "EXT456");
        let modeled = GetObjectError::generic(
            ErrorMetadata::builder()
                .code("NoSuchBucket")
                .message("The specified bucket does not exist")
                .build(),
        );
        let err = translate(
            "GetObject",
            "prefix/a/b",
            SdkError::service_error(modeled, raw),
        );
        assert_eq!(
            err.to_string(),
            "s3 storage backend error: GetObject: NoSuchBucket (HTTP 404)"
        );
        let line = logged(&err);
        assert!(
            line.contains("GetObject prefix/a/b (request id REQ123, extended request id EXT456): "),
            "{line}"
        );
        for once in [
            "prefix/a/b",
            "The specified bucket does not exist",
            "EXT456",
        ] {
            assert_eq!(line.matches(once).count(), 1, "{once:?} in {line}");
        }
    }

    /// A request that never reached the store: the cause (here the refused connection) is
    /// in the log once, and the SDK's `Debug` text is not.
    #[test]
    fn a_transport_failure_is_logged_once() {
        let refused = std::io::Error::new(std::io::ErrorKind::ConnectionRefused, "refused here");
        let failure = SdkError::<GetObjectError, HttpResponse>::dispatch_failure(
            ConnectorError::io(Box::new(refused)),
        );
        let err = translate("HeadBucket", "bucket", failure);
        assert_eq!(
            err.to_string(),
            "s3 storage backend error: HeadBucket: request not sent (connection failed)"
        );
        assert!(err.is_retryable());
        let line = logged(&err);
        assert!(
            line.contains("HeadBucket bucket: dispatch failure"),
            "{line}"
        );
        assert_eq!(line.matches("refused here").count(), 1, "{line}");
        assert!(!line.contains("DispatchFailure"), "Debug text in {line}");
    }

    /// A request not sent for want of credentials says so, not "connection failed"; it stays
    /// retryable (an instance role's credentials may come back).
    #[test]
    fn a_request_without_credentials_says_so() {
        let missing = aws_credential_types::provider::error::CredentialsError::not_loaded(
            "no provider had any",
        );
        let failure = SdkError::<GetObjectError, HttpResponse>::dispatch_failure(
            ConnectorError::other(Box::new(missing), None),
        );
        let err = translate("HeadBucket", "bucket", failure);
        assert_eq!(
            err.to_string(),
            "s3 storage backend error: HeadBucket: request not sent (no credentials)"
        );
        assert!(err.is_retryable());
        assert!(ErrorChain(&err).to_string().contains("no provider had any"));
    }
}
