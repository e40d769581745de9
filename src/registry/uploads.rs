//! Blob uploads: end-4a/4b (`POST /v2/<name>/blobs/uploads/`, optionally `?digest=`,
//! `?digest-algorithm=`), end-11 (`?mount=<digest>&from=<repo>`), end-5 (`PATCH`), end-6
//! (`PUT ...?digest=`), end-13 (`GET` status) and end-14 (`DELETE` cancel).
//!
//! Sessions live in the storage driver, not in this process: the `Location` handed out is
//! just `/v2/<name>/blobs/uploads/<id>`, reusable verbatim by any instance.

use axum::extract::Request;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::Response;

use super::{
    ApiError, CHUNK_MIN_LENGTH_HEADER, CONTENT_DIGEST_HEADER, Registry, UPLOAD_UUID_HEADER,
    body_stream, content_length, empty, header_str, parse_digest, put_header, query_pairs,
    query_param,
};
use crate::error::Error;
use crate::oci::range::parse_content_range;
use crate::oci::{Digest, DigestAlgorithm, RepositoryName};
use crate::storage::{StorageDriver, UploadHandle, UploadId};

/// The relative URL of an upload session.
fn session_location(name: &RepositoryName, id: &UploadId) -> String {
    format!("/v2/{name}/blobs/uploads/{id}")
}

/// The `Range` value of a session holding `offset` bytes: `0-<offset-1>`.
///
/// Spec "Pushing a blob in chunks": `Range: 0-<end-of-range>`, where `<end-of-range>` is the
/// position of the last uploaded byte. With no byte uploaded yet there is no such position;
/// the spec leaves it open, and the reference implementation (distribution's
/// `blobupload.go`, `endRange` clamped at 0), go-containerregistry and the original spec text
/// (`bytes=0-0` on a fresh session) all send `0-0`, so we do too.
pub fn range_value(offset: u64) -> String {
    format!("0-{}", offset.saturating_sub(1))
}

/// Headers describing a session: `Location`, `Range`, `Docker-Upload-UUID`.
fn session_headers(name: &RepositoryName, id: &UploadId, offset: u64) -> HeaderMap {
    let mut h = HeaderMap::new();
    put_header(&mut h, "location", &session_location(name, id));
    put_header(&mut h, "range", &range_value(offset));
    put_header(&mut h, UPLOAD_UUID_HEADER, id.as_str());
    h
}

/// 201 for a blob that is now pullable: `Location: /v2/<name>/blobs/<digest>` and
/// `Docker-Content-Digest`.
fn blob_created(name: &RepositoryName, digest: &Digest) -> Response {
    let mut h = HeaderMap::new();
    put_header(&mut h, "location", &format!("/v2/{name}/blobs/{digest}"));
    put_header(&mut h, CONTENT_DIGEST_HEADER, digest.as_str());
    empty(StatusCode::CREATED, h)
}

/// The 416 of a chunk at the wrong offset: the session is untouched, and `Location` and
/// `Range` tell the client where to resume (spec: "A GET request may be used to retrieve the
/// current valid offset", we save it the round trip).
fn range_error(name: &RepositoryName, id: &UploadId, err: Error) -> ApiError {
    let size = match &err {
        Error::RangeInvalid { size, .. } => *size,
        _ => 0,
    };
    let mut api = ApiError::from(err).with_status(StatusCode::RANGE_NOT_SATISFIABLE);
    for (k, v) in session_headers(name, id, size).iter() {
        api.headers.push((k.clone(), v.clone()));
    }
    api
}

fn parse_algorithm(s: &str) -> Result<DigestAlgorithm, ApiError> {
    s.parse::<DigestAlgorithm>()
        .map_err(|e| Error::DigestInvalid(e.to_string()).into())
}

/// end-4a / end-4b / end-11: `POST /v2/<name>/blobs/uploads/`.
///
/// - `?mount=<digest>&from=<repo>`: 201 with the blob's `Location` when `from` has the blob,
///   otherwise (spec "Mounting a blob from another repository": "if a registry ... is unable
///   to mount the requested blob, it SHOULD return a 202") a new session. Without `from`: a
///   new session (no automatic content discovery). When the caller may not pull from `from`
///   (`mount_allowed` false), the mount is not tried: a session, as if the blob were absent,
///   so nothing about the source leaks.
/// - `?digest=<digest>` (single-POST monolithic upload): the body is the whole blob, 201.
/// - otherwise: 202 with a new session (`?digest-algorithm=sha512` picks the hash), and
///   `OCI-Chunk-Min-Length` when the driver has a minimum chunk size.
pub async fn post<D: StorageDriver, A>(
    reg: &Registry<D, A>,
    name: &RepositoryName,
    req: Request,
    mount_allowed: bool,
) -> Result<Response, ApiError> {
    let pairs = query_pairs(req.uri().query());
    let mut algorithm = match query_param(&pairs, "digest-algorithm") {
        Some(a) => parse_algorithm(a)?,
        None => DigestAlgorithm::Sha256,
    };
    if let Some(mount) = query_param(&pairs, "mount") {
        let digest = parse_digest(mount)?;
        match query_param(&pairs, "from").map(RepositoryName::parse) {
            Some(Ok(_)) if !mount_allowed => {}
            Some(Ok(from)) => match reg.driver.mount_blob(&from, name, &digest).await {
                Ok(info) => return Ok(blob_created(name, &info.digest)),
                Err(Error::BlobUnknown(_)) => {}
                Err(e) => return Err(e.into()),
            },
            // An invalid `from` cannot be mounted from: fall back to a session.
            Some(Err(_)) => {}
            // Without `from` the registry "MAY cross-mount the blob if it can be found"; this
            // one does not search (blobs are visible per repository, and finding a blob by
            // digest alone would expose other repositories' content), so it always opens a
            // session: the conformance suite's "automatic content discovery disabled" case.
            None => {}
        }
        // The client will upload the blob it wanted to mount: hash with its algorithm.
        if query_param(&pairs, "digest-algorithm").is_none() {
            algorithm = digest.algorithm();
        }
    } else if let Some(d) = query_param(&pairs, "digest") {
        let digest = parse_digest(d)?;
        let len = content_length(req.headers())?;
        let body = body_stream(req.into_body());
        let info = reg.driver.put_content(name, &digest, len, body).await?;
        return Ok(blob_created(name, &info.digest));
    }
    if !reg
        .sessions
        .has_room(name.as_str(), reg.options.max_upload_sessions)
    {
        return Err(Error::TooManyRequests(format!(
            "{} upload sessions are open in this repository; finish or cancel some",
            reg.options.max_upload_sessions
        ))
        .into());
    }
    let upload = reg.driver.start_upload(name, algorithm).await?;
    let p = upload.progress();
    reg.sessions.touch(name.as_str(), p.id.as_str());
    let mut h = session_headers(name, &p.id, p.offset);
    if let Some(min) = reg.driver.chunk_min_length() {
        put_header(&mut h, CHUNK_MIN_LENGTH_HEADER, &min.to_string());
    }
    Ok(empty(StatusCode::ACCEPTED, h))
}

/// end-13: `GET <location>` answers 204 with `Location` and `Range` (404
/// `BLOB_UPLOAD_UNKNOWN` for an unknown session).
pub async fn status<D: StorageDriver, A>(
    reg: &Registry<D, A>,
    name: &RepositoryName,
    id: &str,
) -> Result<Response, ApiError> {
    let id = UploadId::parse(id)?;
    let upload = reg.driver.get_upload_progress(name, &id).await?;
    Ok(empty(
        StatusCode::NO_CONTENT,
        session_headers(name, &id, upload.offset()),
    ))
}

/// Reads `Content-Range` (`<start>-<end>`, inclusive) and checks it against
/// `Content-Length`. Returns the expected start and length.
fn chunk_range(headers: &HeaderMap) -> Result<Option<(u64, u64)>, ApiError> {
    let Some(cr) = header_str(headers, header::CONTENT_RANGE) else {
        return Ok(None);
    };
    let (start, end) = parse_content_range(cr)?;
    Ok(Some((start, end - start + 1)))
}

/// end-5: `PATCH <location>` appends a chunk, with or without `Content-Range` and
/// `Content-Length` (a streamed body). 202 with `Location`, `Range: 0-<end>` and
/// `Docker-Upload-UUID`. A chunk that does not start at the current offset, or whose
/// `Content-Length` contradicts its `Content-Range`, is 416 and the session stays usable.
pub async fn patch<D: StorageDriver, A>(
    reg: &Registry<D, A>,
    name: &RepositoryName,
    id: &str,
    req: Request,
) -> Result<Response, ApiError> {
    let id = UploadId::parse(id)?;
    let cl = content_length(req.headers())?;
    let (offset, expected) = match chunk_range(req.headers())? {
        Some((start, len)) => {
            if cl.is_some_and(|cl| cl != len) {
                let size = reg.driver.get_upload_progress(name, &id).await?.offset();
                return Err(range_error(
                    name,
                    &id,
                    Error::RangeInvalid {
                        size,
                        reason: format!("Content-Length {cl:?} does not match Content-Range"),
                    },
                ));
            }
            (Some(start), Some(len))
        }
        None => (None, cl),
    };
    let body = body_stream(req.into_body());
    match reg
        .driver
        .put_upload_chunk(name, &id, offset, expected, body)
        .await
    {
        Ok(upload) => {
            reg.sessions.touch(name.as_str(), id.as_str());
            Ok(empty(
                StatusCode::ACCEPTED,
                session_headers(name, &id, upload.offset()),
            ))
        }
        Err(e @ Error::RangeInvalid { .. }) => Err(range_error(name, &id, e)),
        Err(e) => Err(e.into()),
    }
}

/// end-6: `PUT <location>?digest=<digest>` closes the session, with an optional final chunk
/// as body. 201 with the blob's `Location` and `Docker-Content-Digest`; a digest mismatch is
/// 400 `DIGEST_INVALID` and nothing becomes visible.
pub async fn put<D: StorageDriver, A>(
    reg: &Registry<D, A>,
    name: &RepositoryName,
    id: &str,
    req: Request,
) -> Result<Response, ApiError> {
    let id = UploadId::parse(id)?;
    let pairs = query_pairs(req.uri().query());
    let digest = query_param(&pairs, "digest").ok_or_else(|| {
        ApiError::from(Error::DigestInvalid(
            "closing an upload requires ?digest=<digest of the whole blob>".into(),
        ))
    })?;
    let digest = parse_digest(digest)?;
    let cl = content_length(req.headers())?;
    let expected = match chunk_range(req.headers())? {
        Some((start, len)) => {
            let size = reg.driver.get_upload_progress(name, &id).await?.offset();
            if start != size || cl.is_some_and(|cl| cl != len) {
                return Err(range_error(
                    name,
                    &id,
                    Error::RangeInvalid {
                        size,
                        reason: format!("final chunk starts at {start}, expected {size}"),
                    },
                ));
            }
            Some(len)
        }
        None => cl,
    };
    let body = body_stream(req.into_body());
    match reg
        .driver
        .finish_upload(name, &id, &digest, expected, body)
        .await
    {
        Ok(info) => {
            reg.sessions.close(name.as_str(), id.as_str());
            Ok(blob_created(name, &info.digest))
        }
        Err(e @ Error::RangeInvalid { .. }) => Err(range_error(name, &id, e)),
        Err(e) => Err(e.into()),
    }
}

/// end-14: `DELETE <location>` cancels the session: 204 (404 `BLOB_UPLOAD_UNKNOWN` if none).
pub async fn cancel<D: StorageDriver, A>(
    reg: &Registry<D, A>,
    name: &RepositoryName,
    id: &str,
) -> Result<Response, ApiError> {
    let id = UploadId::parse(id)?;
    reg.driver.abort_upload(name, &id).await?;
    reg.sessions.close(name.as_str(), id.as_str());
    Ok(empty(StatusCode::NO_CONTENT, HeaderMap::new()))
}

#[cfg(test)]
mod tests {
    #[test]
    fn range_values() {
        assert_eq!(super::range_value(0), "0-0");
        assert_eq!(super::range_value(1), "0-0");
        assert_eq!(super::range_value(10), "0-9");
    }
}
