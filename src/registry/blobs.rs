//! Blobs: end-2 (`GET`/`HEAD /v2/<name>/blobs/<digest>`, with RFC 9110 `Range`) and end-10
//! (`DELETE`).

use axum::body::Body;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::Response;

use super::{ApiError, BLOB_SIZE_HEADER, CONTENT_DIGEST_HEADER, Registry, empty, put_header};
use crate::error::Error;
use crate::oci::{RangeRequest, RepositoryName};
use crate::storage::{BlobRedirect, StorageDriver};

/// `GET` (or `HEAD` when `head`) of a blob.
///
/// Spec "Pulling blobs": 200 with `Docker-Content-Digest`; 404 `BLOB_UNKNOWN`. HEAD answers
/// with the exact `Content-Length` and no body. A `Range: bytes=...` header (RFC 9110 §14)
/// gets 206 with `Content-Range: bytes <first>-<last>/<size>` and the exact range length,
/// or 416 with `Content-Range: bytes */<size>` when unsatisfiable; ranges the server does
/// not understand (other units, several ranges) are ignored and the whole blob is served.
/// The blob's `ETag` is its quoted digest; a `Range` with an `If-Range` naming anything else
/// gets the whole blob.
pub async fn get<D: StorageDriver, A>(
    reg: &Registry<D, A>,
    name: &RepositoryName,
    digest: &str,
    req_headers: &HeaderMap,
    head: bool,
) -> Result<Response, ApiError> {
    let digest = super::parse_digest(digest)?;
    let mut headers = HeaderMap::new();
    put_header(&mut headers, CONTENT_DIGEST_HEADER, digest.as_str());
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/octet-stream"),
    );
    headers.insert(header::ACCEPT_RANGES, HeaderValue::from_static("bytes"));
    // A blob's bytes never change under its digest: the digest is a strong validator.
    let etag = format!("\"{}\"", digest.as_str());
    if head {
        let info = reg.driver.stat(name, &digest).await?;
        put_header(&mut headers, "etag", &etag);
        let mut resp = empty(StatusCode::OK, headers);
        resp.headers_mut()
            .insert(header::CONTENT_LENGTH, HeaderValue::from(info.size));
        return Ok(resp);
    }
    let range = req_headers
        .get(header::RANGE)
        .and_then(|v| v.to_str().ok())
        .and_then(RangeRequest::parse_header)
        .filter(|_| if_range_holds(req_headers, &etag));
    if let Some(redirect) = reg.driver.blob_redirect(name, &digest).await? {
        return redirected(headers, redirect, range);
    }
    put_header(&mut headers, "etag", &etag);
    let read = match reg.driver.get_content(name, &digest, range).await {
        Ok(read) => read,
        Err(Error::RangeInvalid { size, reason }) => {
            // RFC 9110 §15.5.17: 416 with the current length.
            return Err(ApiError::from(Error::RangeInvalid { size, reason })
                .with_header(header::CONTENT_RANGE, &format!("bytes */{size}")));
        }
        Err(e) => return Err(e.into()),
    };
    let (status, len) = match read.range {
        Some(r) => {
            put_header(
                &mut headers,
                "content-range",
                &format!("bytes {}-{}/{}", r.start, r.end, read.info.size),
            );
            (StatusCode::PARTIAL_CONTENT, r.len())
        }
        None => (StatusCode::OK, read.info.size),
    };
    headers.insert(header::CONTENT_LENGTH, HeaderValue::from(len));
    let mut resp = Response::new(Body::from_stream(read.stream));
    *resp.status_mut() = status;
    *resp.headers_mut() = headers;
    Ok(resp)
}

/// Whether the `Range` may be served (RFC 9110 §13.1.5): without `If-Range`, or with one
/// naming the blob's entity tag. Any other validator "does not match" and the whole blob is
/// served; that includes a date, as blobs are served without `Last-Modified`.
fn if_range_holds(req_headers: &HeaderMap, etag: &str) -> bool {
    req_headers
        .get(header::IF_RANGE)
        .is_none_or(|v| v.as_bytes() == etag.as_bytes())
}

/// A blob `GET` answered with `307 Temporary Redirect` to the store (S3 `redirect`): the
/// client fetches the bytes there, sending its `Range` again. The 307 itself carries
/// `Docker-Content-Digest` and the blob's size in [`BLOB_SIZE_HEADER`] (its `Content-Length`
/// is its own empty body's): the store's response cannot carry the digest, which the spec
/// (main) asks of the response "after redirects are followed" (see `docs/drivers.md`). An
/// unsatisfiable range is refused here with 416, as without redirects.
fn redirected(
    mut headers: HeaderMap,
    redirect: BlobRedirect,
    range: Option<RangeRequest>,
) -> Result<Response, ApiError> {
    let size = redirect.info.size;
    if let Some(range) = range
        && let Err(Error::RangeInvalid { size, reason }) = range.resolve(size)
    {
        return Err(ApiError::from(Error::RangeInvalid { size, reason })
            .with_header(header::CONTENT_RANGE, &format!("bytes */{size}")));
    }
    headers.remove(header::CONTENT_TYPE);
    put_header(&mut headers, BLOB_SIZE_HEADER, &size.to_string());
    put_header(&mut headers, "location", &redirect.url);
    Ok(empty(StatusCode::TEMPORARY_REDIRECT, headers))
}

/// end-10: `DELETE /v2/<name>/blobs/<digest>` answers 202 (404 `BLOB_UNKNOWN` if absent).
pub async fn delete<D: StorageDriver, A>(
    reg: &Registry<D, A>,
    name: &RepositoryName,
    digest: &str,
) -> Result<Response, ApiError> {
    let digest = super::parse_digest(digest)?;
    reg.driver.delete(name, &digest).await?;
    let mut headers = HeaderMap::new();
    put_header(&mut headers, CONTENT_DIGEST_HEADER, digest.as_str());
    Ok(empty(StatusCode::ACCEPTED, headers))
}
