//! Translation of `gcloud-storage` errors into the crate's [`Error`] kinds, in one place.
//!
//! | GCS answer                                        | crate error                        |
//! |---------------------------------------------------|------------------------------------|
//! | 404 on an object                                  | `None` (or the caller's "unknown") |
//! | 412 on a conditional create                       | handled by the caller (it exists)  |
//! | 408, 429, 5xx, timeouts, connection failures, cut bodies | [`Error::Backend`], retryable (HTTP 503) |
//! | anything else (401, 403, a missing bucket, ...)   | [`Error::Backend`], not retryable  |
//!
//! Messages name the operation, the key relative to the configured prefix and the HTTP
//! status, never the bucket's object key or the client's error dump (that stays the error's
//! `source`, for logs).

use gcloud_storage::http::Error as GcsError;

use crate::error::Error;

/// Driver name used in errors.
pub(crate) const DRIVER: &str = "gcs";

/// HTTP status of the answer, if there was one.
pub(crate) fn status(err: &GcsError) -> Option<u16> {
    match err {
        GcsError::Response(r) => Some(r.code),
        GcsError::HttpClient(e) | GcsError::RawResponse(e, _) => e.status().map(|s| s.as_u16()),
        _ => None,
    }
}

/// Whether the error says the object does not exist.
pub(crate) fn is_not_found(err: &GcsError) -> bool {
    status(err) == Some(404)
}

/// Whether a precondition (`ifGenerationMatch`) failed.
pub(crate) fn is_precondition_failed(err: &GcsError) -> bool {
    status(err) == Some(412)
}

/// Whether repeating the request later may succeed.
pub(crate) fn is_retryable(err: &GcsError) -> bool {
    match status(err) {
        Some(code) => matches!(code, 408 | 429 | 500..=599),
        None => match err {
            GcsError::HttpClient(e) | GcsError::RawResponse(e, _) => {
                e.is_timeout() || e.is_connect() || e.is_request() || e.is_body()
            }
            _ => false,
        },
    }
}

/// Translates an error of operation `op` on the object named `key` (relative to the prefix).
pub(crate) fn translate(op: &'static str, key: &str, err: GcsError) -> Error {
    let what = match status(&err) {
        Some(code) => format!("HTTP {code}"),
        None => match &err {
            GcsError::TokenSource(_) => "no access token".to_owned(),
            _ => "no answer".to_owned(),
        },
    };
    Error::Backend {
        driver: DRIVER,
        message: format!("{op} {key}: {what}"),
        retryable: is_retryable(&err),
        source: Some(Box::new(err)),
    }
}

/// Translates an error of the HTTP client itself (a streamed read).
pub(crate) fn http(op: &'static str, key: &str, err: reqwest_gcs::Error) -> Error {
    translate(op, key, GcsError::HttpClient(err))
}

/// A backend error about the driver's own records (an upload state that does not add up).
pub(crate) fn corrupt(message: impl Into<String>) -> Error {
    Error::backend(DRIVER, message)
}

#[cfg(test)]
mod tests {
    use super::*;
    use gcloud_storage::http::error::ErrorResponse;

    fn answer(code: u16) -> GcsError {
        GcsError::Response(ErrorResponse {
            code,
            errors: vec![],
            message: "internal detail".into(),
        })
    }

    #[test]
    fn classification_and_message() {
        assert!(is_not_found(&answer(404)));
        assert!(is_precondition_failed(&answer(412)));
        assert!(is_retryable(&answer(503)) && is_retryable(&answer(429)));
        assert!(!is_retryable(&answer(403)));
        match translate("read", "repositories/a/_tags/v1", answer(503)) {
            Error::Backend {
                driver,
                message,
                retryable,
                ..
            } => {
                assert_eq!(driver, "gcs");
                assert!(retryable);
                assert_eq!(message, "read repositories/a/_tags/v1: HTTP 503");
            }
            other => panic!("{other:?}"),
        }
    }
}
