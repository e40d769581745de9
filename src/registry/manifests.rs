//! Manifests: end-3 (`GET`/`HEAD /v2/<name>/manifests/<reference>`), end-7 (`PUT`, with
//! `?tag=` parameters when pushing by digest) and end-9 (`DELETE` by digest or tag).
//!
//! Manifests are the only bodies this registry buffers, bounded by
//! [`RegistryOptions::max_manifest_size`](super::RegistryOptions::max_manifest_size).

use axum::body::Body;
use axum::extract::Request;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::Response;
use bytes::{Bytes, BytesMut};
use futures::StreamExt;

use super::{
    ApiError, CONTENT_DIGEST_HEADER, Registry, SUBJECT_HEADER, TAG_HEADER, content_length, empty,
    header_str, put_header, query_pairs,
};
use crate::error::Error;
use crate::oci::{Reference, RepositoryName, Tag};
use crate::storage::StorageDriver;

/// Parses a `<reference>` naming an existing manifest (GET, HEAD, DELETE): a string that is
/// not a valid tag cannot name a manifest, so it is 404 `MANIFEST_UNKNOWN` (the conformance
/// suite's "GET nonexistent manifest should return 404" uses `.INVALID_MANIFEST_NAME`);
/// a malformed digest stays 400 `DIGEST_INVALID`.
fn parse_existing_reference(s: &str) -> Result<Reference, ApiError> {
    match parse_reference(s) {
        Err(_) if !s.contains(':') => Err(ApiError::from(Error::ManifestUnknown(format!(
            "{s:?} is not a valid tag, so no manifest has it"
        )))),
        r => r,
    }
}

/// Parses a `<reference>`; an unregistered digest algorithm is `DIGEST_INVALID` (400).
pub fn parse_reference(s: &str) -> Result<Reference, ApiError> {
    Reference::parse(s).map_err(|e| match e {
        Error::Unsupported(m) => Error::DigestInvalid(m).into(),
        e => e.into(),
    })
}

/// How many bytes past the limit are read and dropped before answering 413.
const DRAIN_AFTER_LIMIT: usize = 8 * 1024 * 1024;

fn too_large(limit: usize) -> ApiError {
    // Spec "Pushing Manifests": "SHOULD respond ... over this limit with a response code
    // 413 Payload Too Large".
    ApiError::from(Error::SizeInvalid(format!(
        "manifest exceeds the limit of {limit} bytes"
    )))
    .with_status(StatusCode::PAYLOAD_TOO_LARGE)
}

/// end-3: `GET` (or `HEAD`) of a manifest by tag or digest: 200 with the exact bytes, the
/// `Content-Type` it was pushed with, `Docker-Content-Digest` and `Content-Length`.
pub async fn get<D: StorageDriver, A>(
    reg: &Registry<D, A>,
    name: &RepositoryName,
    reference: &str,
    head: bool,
) -> Result<Response, ApiError> {
    let reference = parse_existing_reference(reference)?;
    let mut headers = HeaderMap::new();
    let (info, body) = if head {
        (reg.driver.stat_manifest(name, &reference).await?, None)
    } else {
        let m = reg.driver.get_manifest(name, &reference).await?;
        (m.info, Some(m.bytes))
    };
    put_header(&mut headers, CONTENT_DIGEST_HEADER, info.digest.as_str());
    if let Ok(ct) = HeaderValue::from_str(&info.media_type) {
        headers.insert(header::CONTENT_TYPE, ct);
    }
    headers.insert(header::CONTENT_LENGTH, HeaderValue::from(info.size));
    let mut resp = Response::new(body.map_or_else(Body::empty, Body::from));
    *resp.headers_mut() = headers;
    Ok(resp)
}

/// Reads a manifest body of at most `limit` bytes.
async fn read_bounded(body: Body, limit: usize) -> Result<Bytes, ApiError> {
    let mut stream = body.into_data_stream();
    let mut first: Option<Bytes> = None;
    let mut buf = BytesMut::new();
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.map_err(|e| {
            ApiError::from(Error::ManifestInvalid(format!("reading request body: {e}")))
        })?;
        let total = first.as_ref().map_or(0, Bytes::len) + buf.len() + chunk.len();
        if total > limit {
            // Read (and drop) a bounded amount more so that a client still sending gets the
            // 413 instead of a reset connection.
            let mut drained = total - limit;
            while drained < DRAIN_AFTER_LIMIT
                && let Some(Ok(chunk)) = stream.next().await
            {
                drained += chunk.len();
            }
            return Err(too_large(limit));
        }
        match first.take() {
            None if buf.is_empty() => first = Some(chunk),
            prev => {
                if let Some(prev) = prev {
                    buf.extend_from_slice(&prev);
                }
                buf.extend_from_slice(&chunk);
            }
        }
    }
    Ok(first.unwrap_or_else(|| buf.freeze()))
}

/// end-7: `PUT /v2/<name>/manifests/<reference>[?tag=<tag>...]`.
///
/// 201 with `Location` (by digest) and `Docker-Content-Digest`; `OCI-Subject` when the
/// manifest has a `subject` (spec "Pushing Manifests with Subject"); one `OCI-Tag` per tag
/// applied through `?tag=`. Over the size limit: 413. Missing referenced blobs: 400
/// `MANIFEST_BLOB_UNKNOWN`; a digest reference that does not match: 400 `DIGEST_INVALID`.
pub async fn put<D: StorageDriver, A>(
    reg: &Registry<D, A>,
    name: &RepositoryName,
    reference: &str,
    req: Request,
) -> Result<Response, ApiError> {
    let reference = parse_reference(reference)?;
    // Tags are validated before anything is stored.
    let tags = query_pairs(req.uri().query())
        .into_iter()
        .filter(|(k, _)| k == "tag")
        .map(|(_, v)| Tag::parse(&v))
        .collect::<Result<Vec<_>, _>>()?;
    let limit = reg.options.max_manifest_size;
    if content_length(req.headers())?.is_some_and(|cl| cl > (limit + DRAIN_AFTER_LIMIT) as u64) {
        return Err(too_large(limit));
    }
    let content_type = header_str(req.headers(), header::CONTENT_TYPE).map(str::to_owned);
    let bytes = read_bounded(req.into_body(), limit).await?;
    let outcome = match reg
        .driver
        .put_manifest(name, &reference, content_type.as_deref(), bytes)
        .await
    {
        Ok(o) => o,
        Err(Error::SizeInvalid(m)) => return Err(too_large(limit).with_detail(m)),
        Err(e) => return Err(e.into()),
    };
    let mut headers = HeaderMap::new();
    for tag in &tags {
        reg.driver.tag_manifest(name, tag, &outcome.digest).await?;
        put_header(&mut headers, TAG_HEADER, tag.as_str());
    }
    put_header(
        &mut headers,
        "location",
        &format!("/v2/{name}/manifests/{}", outcome.digest),
    );
    put_header(&mut headers, CONTENT_DIGEST_HEADER, outcome.digest.as_str());
    if let Some(subject) = &outcome.subject {
        put_header(&mut headers, SUBJECT_HEADER, subject.as_str());
    }
    Ok(empty(StatusCode::CREATED, headers))
}

/// end-9: `DELETE` by digest removes the manifest (and the tags pointing to it); by tag it
/// removes only the tag. Both answer 202.
pub async fn delete<D: StorageDriver, A>(
    reg: &Registry<D, A>,
    name: &RepositoryName,
    reference: &str,
) -> Result<Response, ApiError> {
    match parse_existing_reference(reference)? {
        Reference::Digest(d) => reg.driver.delete_manifest(name, &d).await?,
        Reference::Tag(t) => reg.driver.untag_manifest(name, &t).await?,
    }
    Ok(empty(StatusCode::ACCEPTED, HeaderMap::new()))
}
