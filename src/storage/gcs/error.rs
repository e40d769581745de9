//! Translation of `gcloud-storage` errors into the crate's [`Error`] kinds, in one place.
//!
//! | GCS answer                                        | crate error                        |
//! |---------------------------------------------------|------------------------------------|
//! | 404 on an object                                  | `None` (or the caller's "unknown") |
//! | 412 on a conditional create                       | handled by the caller (it exists)  |
//! | 408, 429, 5xx, timeouts, connection failures, cut bodies | [`Error::Backend`], retryable (HTTP 503) |
//! | a body that is not the JSON expected             | [`Error::Backend`], not retryable  |
//! | anything else (401, 403, a missing bucket, ...)   | [`Error::Backend`], not retryable  |
//!
//! An error's message names the JSON API request (`"media upload"`) and what GCS answered
//! (its HTTP status, or the kind of transport failure); the backend operation and the layout
//! key are filled in by the [`Instrumented`](crate::storage::layers::Instrumented) layer. The
//! object name (with the bucket's prefix) and the client's full error go to the
//! [`BackendDetail`] in its source, for logs only.

use gcloud_storage::http::Error as GcsError;

use crate::error::{BackendDetail, Error};

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
                e.is_timeout() || e.is_connect() || e.is_request() || is_cut_body(e)
            }
            _ => false,
        },
    }
}

/// Whether a response's body broke off (a connection reset, a proxy timing out). `reqwest`
/// reports a body that breaks off while it is read whole (`bytes()`, `json()`) as a
/// *decode* error, like a body that is not JSON; only the latter has a JSON error as its
/// cause.
fn is_cut_body(err: &reqwest_gcs::Error) -> bool {
    err.is_body() || (err.is_decode() && !caused_by_json(err))
}

/// Whether a JSON parse error is among the causes of `err`.
fn caused_by_json(err: &reqwest_gcs::Error) -> bool {
    let mut cause = std::error::Error::source(err);
    while let Some(e) = cause {
        if e.is::<serde_json::Error>() {
            return true;
        }
        cause = e.source();
    }
    false
}

/// Translates an error of the JSON API request `request` (`"media download"`) on the object
/// `object` (its full name, kept for logs only).
pub(crate) fn translate(request: &'static str, object: &str, err: GcsError) -> Error {
    let answer = match status(&err) {
        Some(code) => format!("HTTP {code}"),
        None => match &err {
            GcsError::TokenSource(_) => "no access token".to_owned(),
            GcsError::HttpClient(e) | GcsError::RawResponse(e, _) if e.is_timeout() => {
                "timed out".to_owned()
            }
            GcsError::HttpClient(e) | GcsError::RawResponse(e, _) if is_cut_body(e) => {
                "response body interrupted".to_owned()
            }
            // Refused, unresolvable, or a TLS handshake that failed (an untrusted
            // certificate): nothing reached the store.
            GcsError::HttpClient(e) | GcsError::RawResponse(e, _) if e.is_connect() => {
                "request not sent (connection failed)".to_owned()
            }
            _ => "no answer".to_owned(),
        },
    };
    let retryable = is_retryable(&err);
    // The error itself is the detail's source: a log prints it after the detail, once.
    let detail = format!("{request} {object}");
    Error::Backend {
        driver: DRIVER,
        operation: None,
        key: None,
        message: format!("{request}: {answer}"),
        retryable,
        source: Some(Box::new(BackendDetail::new(detail, Some(Box::new(err))))),
    }
}

/// Translates an error of the HTTP client itself (a streamed read).
pub(crate) fn http(request: &'static str, object: &str, err: reqwest_gcs::Error) -> Error {
    translate(request, object, GcsError::HttpClient(err))
}

/// Translates a failure to sign a URL for the object `object` (kept for logs only).
pub(crate) fn signing(object: &str, err: gcloud_storage::sign::SignedURLError) -> Error {
    Error::backend_source(
        DRIVER,
        "presigning: the URL could not be signed",
        BackendDetail::new(format!("signing {object}"), Some(Box::new(err))),
    )
}

/// A transient backend error: a resumable session that holds fewer bytes than were sent to
/// it, whose rest is sent again. `message` holds no object name.
pub(crate) fn incomplete(message: impl Into<String>) -> Error {
    Error::backend_transient(DRIVER, message)
}

/// A backend error about the driver's own records (an upload state that does not add up).
/// `message` holds no object name.
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
        let err = translate("media download", "prefix/repositories/a/x", answer(503));
        let text = err.to_string();
        assert!(
            !text.contains("prefix/") && !text.contains("internal detail"),
            "{text}"
        );
        // The log line holds the object and the store's own words, each once.
        let logged = crate::error::ErrorChain(&err).to_string();
        for once in ["prefix/repositories/a/x", "internal detail"] {
            assert_eq!(logged.matches(once).count(), 1, "{once:?} in {logged}");
        }
        match err {
            Error::Backend {
                driver,
                message,
                retryable,
                source,
                ..
            } => {
                assert_eq!(driver, "gcs");
                assert!(retryable);
                assert_eq!(message, "media download: HTTP 503");
                let detail = source.unwrap().to_string();
                assert!(detail.contains("prefix/repositories/a/x"), "{detail}");
            }
            other => panic!("{other:?}"),
        }
    }
}
