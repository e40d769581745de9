//! The OCI distribution-spec v1.1 HTTP API (feature `server`), generic over any
//! [`StorageDriver`].
//!
//! ```no_run
//! # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! use std::sync::Arc;
//! use marina_distribution::registry::{RegistryOptions, router};
//! use marina_distribution::{AnyDriver, StorageConfig};
//!
//! let driver = AnyDriver::from_config(&StorageConfig::inmemory()).await?;
//! let app = router(Arc::new(driver), RegistryOptions::default());
//! let listener = tokio::net::TcpListener::bind("127.0.0.1:5000").await?;
//! axum::serve(listener, app).await?;
//! # Ok(()) }
//! ```
//!
//! Repository names contain slashes, so every `/v2/...` request goes through one catch-all
//! route; [`route`] splits the path, validates the name before anything else happens, and
//! names the endpoint ([`RouteInfo`], the one place cross-cutting concerns attach).
//!
//! One module per spec area: [`blobs`] (end-2, end-10), [`uploads`] (end-4a/4b, end-5,
//! end-6, end-11, end-13, end-14), [`manifests`] (end-3, end-7, end-9), [`tags`] (end-8a/8b),
//! [`referrers`] (end-12a/12b) and [`errors`] (the JSON error envelope).

pub mod blobs;
pub mod errors;
pub mod manifests;
pub mod referrers;
pub mod route;
pub mod tags;
pub mod uploads;

use std::sync::Arc;

use axum::Router;
use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{any, get};
use bytes::Bytes;
use futures::{Stream, StreamExt};

use crate::error::Error;
use crate::oci::RepositoryName;
use crate::oci::manifest::DEFAULT_MANIFEST_LIMIT;
use crate::storage::StorageDriver;
pub use errors::ApiError;
pub use route::{Action, Endpoint, Route, RouteInfo, parse_route};

/// `Docker-Distribution-API-Version`, set on every response (spec "API Version Check").
pub const API_VERSION_HEADER: &str = "docker-distribution-api-version";
/// `Docker-Content-Digest`.
pub const CONTENT_DIGEST_HEADER: &str = "docker-content-digest";
/// `Blob-Size`: a blob's size on a `307` redirecting its `GET` (whose `Content-Length` is
/// its own empty body's).
pub const BLOB_SIZE_HEADER: &str = "blob-size";
/// `Docker-Upload-UUID`.
pub const UPLOAD_UUID_HEADER: &str = "docker-upload-uuid";
/// `OCI-Chunk-Min-Length`.
pub const CHUNK_MIN_LENGTH_HEADER: &str = "oci-chunk-min-length";
/// `OCI-Subject`.
pub const SUBJECT_HEADER: &str = "oci-subject";
/// `OCI-Tag`.
pub const TAG_HEADER: &str = "oci-tag";
/// `OCI-Filters-Applied`.
pub const FILTERS_APPLIED_HEADER: &str = "oci-filters-applied";

/// Settings of the HTTP layer.
#[derive(Debug, Clone)]
pub struct RegistryOptions {
    /// Largest manifest body accepted, in bytes; bigger pushes get `413 Payload Too Large`
    /// (spec "Pushing Manifests"). Use the storage configuration's `max_manifest_size`.
    pub max_manifest_size: usize,
}

impl Default for RegistryOptions {
    fn default() -> Self {
        Self {
            max_manifest_size: DEFAULT_MANIFEST_LIMIT,
        }
    }
}

/// Shared state of the handlers.
#[derive(Debug)]
pub struct Registry<D> {
    /// The storage driver.
    pub driver: Arc<D>,
    /// HTTP settings.
    pub options: RegistryOptions,
}

/// Builds the router serving the whole API over `driver`.
///
/// Every response carries `Docker-Distribution-API-Version: registry/2.0`; every error
/// carries the JSON envelope.
pub fn router<D: StorageDriver>(driver: Arc<D>, options: RegistryOptions) -> Router {
    let state = Arc::new(Registry { driver, options });
    Router::new()
        .route("/v2/", get(api_version))
        .route("/v2", get(api_version))
        .route("/v2/{*path}", any(dispatch::<D>))
        .fallback(|| async { ApiError::not_found() })
        .with_state(state)
        .layer(axum::middleware::map_response(add_version_header))
}

async fn add_version_header(mut resp: Response) -> Response {
    resp.headers_mut()
        .insert(API_VERSION_HEADER, HeaderValue::from_static("registry/2.0"));
    resp
}

/// end-1: `GET /v2/` answers 200 with an empty JSON object.
async fn api_version() -> Response {
    let mut resp = (
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        )],
        "{}",
    )
        .into_response();
    resp.extensions_mut().insert(RouteInfo {
        endpoint: Some(Endpoint::ApiVersion),
        repository: None,
        reference: None,
    });
    resp
}

async fn dispatch<D: StorageDriver>(State(reg): State<Arc<Registry<D>>>, req: Request) -> Response {
    let info = match route_info(req.uri().path(), req.method()) {
        Ok(info) => info,
        Err(err) => return err.into_response(),
    };
    // Cross-cutting concerns that need to know what the request addresses (access control)
    // attach here, after the route is parsed and the name validated, before any handler.
    let mut resp = match handle(&reg, &info, req).await {
        Ok(resp) => resp,
        Err(err) => err.into_response(),
    };
    resp.extensions_mut().insert(info);
    resp
}

/// Parses a `/v2/<name>/...` path: the repository name is validated before anything else
/// (`NAME_INVALID`, 400); a path that names no endpoint is `404`.
fn route_info(path: &str, method: &Method) -> Result<RouteInfo, ApiError> {
    let rest = path.strip_prefix("/v2/").unwrap_or("");
    let Some((name, route)) = parse_route(rest) else {
        return Err(ApiError::not_found());
    };
    let repository = RepositoryName::parse(name)?;
    let reference = match route {
        Route::Blob(arg) | Route::Manifest(arg) | Route::Referrers(arg) => {
            Some(percent_decode(arg))
        }
        Route::Upload("") | Route::Tags => None,
        Route::Upload(id) => Some(id.trim_end_matches('/').to_owned()),
    };
    Ok(RouteInfo {
        endpoint: Endpoint::of(&route, method),
        repository: Some(repository),
        reference,
    })
}

/// Hands the request to the handler of its endpoint.
async fn handle<D: StorageDriver>(
    reg: &Registry<D>,
    info: &RouteInfo,
    req: Request,
) -> Result<Response, ApiError> {
    let (Some(endpoint), Some(name)) = (info.endpoint, info.repository.as_ref()) else {
        return Err(ApiError::method_not_allowed());
    };
    let reference = info.reference.as_deref().unwrap_or("");
    let head = req.method() == Method::HEAD;
    match endpoint {
        Endpoint::BlobGet => blobs::get(reg, name, reference, req.headers(), head).await,
        Endpoint::BlobDelete => blobs::delete(reg, name, reference).await,
        Endpoint::UploadStart => uploads::post(reg, name, req).await,
        Endpoint::UploadStatus => uploads::status(reg, name, reference).await,
        Endpoint::UploadChunk => uploads::patch(reg, name, reference, req).await,
        Endpoint::UploadFinish => uploads::put(reg, name, reference, req).await,
        Endpoint::UploadCancel => uploads::cancel(reg, name, reference).await,
        Endpoint::ManifestGet => manifests::get(reg, name, reference, head).await,
        Endpoint::ManifestPut => manifests::put(reg, name, reference, req).await,
        Endpoint::ManifestDelete => manifests::delete(reg, name, reference).await,
        Endpoint::TagList => tags::list(reg, name, req.uri().query()).await,
        Endpoint::Referrers => referrers::list(reg, name, reference, req.uri().query()).await,
        Endpoint::ApiVersion | Endpoint::Catalog => Err(ApiError::not_found()),
    }
}

/// Parses a digest from a URL or query; an unregistered algorithm is reported as
/// `DIGEST_INVALID` (400) like any other unusable digest.
pub fn parse_digest(s: &str) -> Result<crate::oci::Digest, ApiError> {
    crate::oci::Digest::parse(s).map_err(|e| match e {
        Error::Unsupported(m) => Error::DigestInvalid(m).into(),
        e => e.into(),
    })
}

/// Decodes `%XX` escapes (a `+` stays a `+`: media types such as `...v1+json` are sent
/// unescaped by most clients). Invalid escapes are kept as they are.
pub fn percent_decode(s: &str) -> String {
    if !s.contains('%') {
        return s.to_owned();
    }
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%'
            && i + 2 < b.len()
            && let (Some(h), Some(l)) = (hex_val(b[i + 1]), hex_val(b[i + 2]))
        {
            out.push(h * 16 + l);
            i += 3;
            continue;
        }
        out.push(b[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn hex_val(c: u8) -> Option<u8> {
    match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        b'A'..=b'F' => Some(c - b'A' + 10),
        _ => None,
    }
}

/// The decoded `key=value` pairs of a query string, in order, repeated keys kept.
pub fn query_pairs(query: Option<&str>) -> Vec<(String, String)> {
    query
        .unwrap_or("")
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|p| match p.split_once('=') {
            Some((k, v)) => (percent_decode(k), percent_decode(v)),
            None => (percent_decode(p), String::new()),
        })
        .collect()
}

/// The first value of `key` in a query.
pub fn query_param<'a>(pairs: &'a [(String, String)], key: &str) -> Option<&'a str> {
    pairs
        .iter()
        .find(|(k, _)| k == key)
        .map(|(_, v)| v.as_str())
}

/// A header's value as a string, if present and visible ASCII.
pub fn header_str(headers: &HeaderMap, name: impl header::AsHeaderName) -> Option<&str> {
    headers.get(name).and_then(|v| v.to_str().ok())
}

/// The request's `Content-Length`, if present. A malformed value is `BLOB_UPLOAD_INVALID`.
pub fn content_length(headers: &HeaderMap) -> Result<Option<u64>, ApiError> {
    match headers.get(header::CONTENT_LENGTH) {
        None => Ok(None),
        Some(v) => v
            .to_str()
            .ok()
            .and_then(|s| s.trim().parse().ok())
            .map(Some)
            .ok_or_else(|| Error::BlobUploadInvalid("malformed Content-Length".into()).into()),
    }
}

/// The request body as the stream of `Bytes` drivers take; transport errors (a client that
/// disconnects mid-body) become `BLOB_UPLOAD_INVALID`, so the driver discards the partial
/// data.
pub fn body_stream(body: Body) -> impl Stream<Item = crate::Result<Bytes>> + Send + 'static {
    body.into_data_stream()
        .map(|r| r.map_err(|e| Error::BlobUploadInvalid(format!("reading request body: {e}"))))
}

/// An empty response with a status and headers.
pub(crate) fn empty(status: StatusCode, headers: HeaderMap) -> Response {
    let mut resp = (status, headers).into_response();
    resp.headers_mut()
        .insert(header::CONTENT_LENGTH, HeaderValue::from_static("0"));
    resp
}

/// Appends a header whose value was built from validated parts.
pub(crate) fn put_header(headers: &mut HeaderMap, name: &'static str, value: &str) {
    if let Ok(v) = HeaderValue::from_str(value) {
        headers.append(name, v);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn queries() {
        let q = query_pairs(Some("tag=a&tag=b&artifactType=application%2Fx+json&n"));
        assert_eq!(q[0], ("tag".into(), "a".into()));
        assert_eq!(q[1], ("tag".into(), "b".into()));
        assert_eq!(query_param(&q, "artifactType"), Some("application/x+json"));
        assert_eq!(query_param(&q, "n"), Some(""));
        assert_eq!(percent_decode("sha256%3Aab%zz%4"), "sha256:ab%zz%4");
    }
}
