//! The error envelope of the distribution spec ("Error Codes"):
//!
//! ```json
//! {"errors":[{"code":"BLOB_UNKNOWN","message":"blob unknown to registry","detail":"..."}]}
//! ```
//!
//! Every error response of the registry, whatever its status, carries this body with a spec
//! code; failures of the storage backend (which have no spec code) are reported as `UNKNOWN`
//! with status 500, or 503 when retrying may help. Their detail says only which storage
//! operation failed (`"storage backend failed during write"`): the driver's message, the
//! key, and the error's sources (paths, object keys, SDK output) go to the log.

use axum::http::{HeaderName, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;

use crate::error::{Error, ErrorChain};

/// An error answer: status, spec code, message, detail, and extra headers (for example
/// `Location` and `Range` on a 416 to an upload chunk).
#[derive(Debug)]
pub struct ApiError {
    /// HTTP status.
    pub status: StatusCode,
    /// Spec error code (`BLOB_UNKNOWN`, ...), or `UNKNOWN` for server failures.
    pub code: &'static str,
    /// Human readable message.
    pub message: String,
    /// Unstructured detail (here: the full error text).
    pub detail: Option<String>,
    /// Headers added to the response.
    pub headers: Vec<(HeaderName, HeaderValue)>,
}

#[derive(Serialize)]
struct Envelope<'a> {
    errors: [Item<'a>; 1],
}

#[derive(Serialize)]
struct Item<'a> {
    code: &'a str,
    message: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    detail: Option<&'a str>,
}

impl ApiError {
    /// An error with an explicit status and code.
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        Self {
            status,
            code,
            message: message.into(),
            detail: None,
            headers: Vec::new(),
        }
    }

    /// Replaces the status (e.g. 413 for an oversized manifest reported as `SIZE_INVALID`).
    pub fn with_status(mut self, status: StatusCode) -> Self {
        self.status = status;
        self
    }

    /// Adds a response header.
    pub fn with_header(mut self, name: HeaderName, value: &str) -> Self {
        if let Ok(v) = HeaderValue::from_str(value) {
            self.headers.push((name, v));
        }
        self
    }

    /// `405 UNSUPPORTED` for a method the endpoint does not have.
    pub fn method_not_allowed() -> Self {
        Self::new(
            StatusCode::METHOD_NOT_ALLOWED,
            "UNSUPPORTED",
            "the operation is unsupported",
        )
        .with_detail("method not allowed on this endpoint")
    }

    /// `404 UNSUPPORTED` for a path that is no endpoint of the spec.
    pub fn not_found() -> Self {
        Self::new(
            StatusCode::NOT_FOUND,
            "UNSUPPORTED",
            "the operation is unsupported",
        )
        .with_detail("no such endpoint")
    }

    /// Sets the detail.
    pub fn with_detail(mut self, detail: impl Into<String>) -> Self {
        self.detail = Some(detail.into());
        self
    }
}

impl From<Error> for ApiError {
    fn from(err: Error) -> Self {
        let status =
            StatusCode::from_u16(err.http_status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        let (code, message, detail) = match err.code() {
            Some(code) => (code.as_str(), code.spec_message(), err.to_string()),
            None => {
                tracing::error!(error = %ErrorChain(&err), "storage failure");
                ("UNKNOWN", "unknown error", server_failure_detail(&err))
            }
        };
        let mut api = Self::new(status, code, message).with_detail(detail);
        if matches!(err, Error::TooManyRequests(_)) || status == StatusCode::SERVICE_UNAVAILABLE {
            api = api.with_header(header::RETRY_AFTER, "1");
        }
        api
    }
}

/// What an answer says of an error without a spec code: the storage operation that failed,
/// nothing the error carries besides (a path, a key, an SDK's output).
fn server_failure_detail(err: &Error) -> String {
    match err {
        Error::Backend {
            driver: crate::proxy::UPSTREAM_DRIVER,
            ..
        } => "the upstream registry failed".to_owned(),
        Error::Backend {
            operation: Some(op),
            ..
        } => format!("storage backend failed during {op}"),
        Error::Backend { .. } => "storage backend failed".to_owned(),
        Error::Config { .. } => "storage misconfigured".to_owned(),
        _ => "internal error".to_owned(),
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = serde_json::to_vec(&Envelope {
            errors: [Item {
                code: self.code,
                message: &self.message,
                detail: self.detail.as_deref(),
            }],
        })
        .unwrap_or_else(|_| b"{\"errors\":[]}".to_vec());
        let mut resp = (self.status, body).into_response();
        let headers = resp.headers_mut();
        headers.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
        for (name, value) in self.headers {
            headers.append(name, value);
        }
        resp
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::oci::{Digest, DigestAlgorithm};

    #[test]
    fn maps_codes_and_statuses() {
        let d = Digest::compute(DigestAlgorithm::Sha256, b"");
        let e = ApiError::from(Error::BlobUnknown(d));
        assert_eq!((e.status.as_u16(), e.code), (404, "BLOB_UNKNOWN"));
        let e = ApiError::from(Error::RangeInvalid {
            size: 3,
            reason: "x".into(),
        });
        assert_eq!(e.status.as_u16(), 416);
        let e = ApiError::from(Error::backend(
            "filesystem",
            "writing /srv/registry/x: ENOSPC",
        ));
        assert_eq!((e.status.as_u16(), e.code), (500, "UNKNOWN"));
        assert_eq!(e.detail.as_deref(), Some("storage backend failed"));
        let e = ApiError::from(Error::Backend {
            driver: "s3",
            operation: None,
            key: None,
            message: "slow down".into(),
            retryable: true,
            source: None,
        });
        assert_eq!((e.status.as_u16(), e.code), (503, "UNKNOWN"));
    }
}
