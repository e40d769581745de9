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
//! route; [`parse_route`] splits the path on the *last* spec marker (`/blobs/uploads/`,
//! `/blobs/`, `/manifests/`, `/tags/list`, `/referrers/`) and the name is validated before
//! anything else happens.
//!
//! One module per spec area: [`blobs`] (end-2, end-10), [`uploads`] (end-4a/4b, end-5,
//! end-6, end-11, end-13, end-14), [`manifests`] (end-3, end-7, end-9), [`tags`] (end-8a/8b),
//! [`referrers`] (end-12a/12b) and [`errors`] (the JSON error envelope).

pub mod blobs;
pub mod errors;
pub mod manifests;
pub mod referrers;
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

/// `Docker-Distribution-API-Version`, set on every response (spec "API Version Check").
pub const API_VERSION_HEADER: &str = "docker-distribution-api-version";
/// `Docker-Content-Digest`.
pub const CONTENT_DIGEST_HEADER: &str = "docker-content-digest";
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
    (
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        )],
        "{}",
    )
        .into_response()
}

/// The spec area and arguments a `/v2/<name>/...` path addresses.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Route<'a> {
    /// `/v2/<name>/blobs/<digest>`
    Blob(&'a str),
    /// `/v2/<name>/blobs/uploads/` (empty id) or `/v2/<name>/blobs/uploads/<id>`
    Upload(&'a str),
    /// `/v2/<name>/manifests/<reference>`
    Manifest(&'a str),
    /// `/v2/<name>/tags/list`
    Tags,
    /// `/v2/<name>/referrers/<digest>`
    Referrers(&'a str),
}

/// Splits the part of a path after `/v2/` into the repository name and the route, on the
/// last occurrence of a spec marker (names may contain `blobs`, `manifests`, ...
/// components). Returns `None` when no marker matches.
pub fn parse_route(rest: &str) -> Option<(&str, Route<'_>)> {
    // Markers start with a slash, so a path without a name before them (`/v2/blobs/...`)
    // matches none and is no endpoint.
    type Make = fn(&str) -> Option<Route<'_>>;
    let markers: [(&str, Make); 5] = [
        ("/blobs/uploads/", |a| Some(Route::Upload(a))),
        ("/blobs/", |a| Some(Route::Blob(a))),
        ("/manifests/", |a| Some(Route::Manifest(a))),
        ("/tags/list", |a| a.is_empty().then_some(Route::Tags)),
        ("/referrers/", |a| Some(Route::Referrers(a))),
    ];
    let mut best: Option<(usize, usize, usize)> = None; // (position, marker len, index)
    for (i, (marker, _)) in markers.iter().enumerate() {
        if let Some(pos) = rest.rfind(marker) {
            let better = match best {
                None => true,
                // Later wins; at the same position the longer marker (`/blobs/uploads/`
                // over `/blobs/`) wins.
                Some((p, l, _)) => pos > p || (pos == p && marker.len() > l),
            };
            if better {
                best = Some((pos, marker.len(), i));
            }
        }
    }
    let (pos, len, i) = best?;
    let name = &rest[..pos];
    let arg = &rest[pos + len..];
    // `/tags/list` takes nothing after it; the other markers take the rest of the path.
    (markers[i].1)(arg).map(|r| (name, r))
}

async fn dispatch<D: StorageDriver>(State(reg): State<Arc<Registry<D>>>, req: Request) -> Response {
    match route_request(&reg, req).await {
        Ok(resp) => resp,
        Err(err) => err.into_response(),
    }
}

async fn route_request<D: StorageDriver>(
    reg: &Registry<D>,
    req: Request,
) -> Result<Response, ApiError> {
    let path = req.uri().path().to_owned();
    let rest = path.strip_prefix("/v2/").unwrap_or("");
    let Some((name, route)) = parse_route(rest) else {
        // Paths under /v2/ that are no endpoint: if the name part is invalid, say so.
        return Err(ApiError::not_found());
    };
    // The name is validated before anything else (NAME_INVALID, 400).
    let name = RepositoryName::parse(name)?;
    let method = req.method().clone();
    match route {
        Route::Blob(digest) => {
            let digest = percent_decode(digest);
            match method {
                Method::GET => blobs::get(reg, &name, &digest, req.headers(), false).await,
                Method::HEAD => blobs::get(reg, &name, &digest, req.headers(), true).await,
                Method::DELETE => blobs::delete(reg, &name, &digest).await,
                _ => Err(ApiError::method_not_allowed()),
            }
        }
        Route::Upload("") => match method {
            Method::POST => uploads::post(reg, &name, req).await,
            _ => Err(ApiError::method_not_allowed()),
        },
        Route::Upload(id) => {
            let id = id.trim_end_matches('/').to_owned();
            match method {
                Method::GET | Method::HEAD => uploads::status(reg, &name, &id).await,
                Method::PATCH => uploads::patch(reg, &name, &id, req).await,
                Method::PUT => uploads::put(reg, &name, &id, req).await,
                Method::DELETE => uploads::cancel(reg, &name, &id).await,
                _ => Err(ApiError::method_not_allowed()),
            }
        }
        Route::Manifest(reference) => {
            let reference = percent_decode(reference);
            match method {
                Method::GET => manifests::get(reg, &name, &reference, false).await,
                Method::HEAD => manifests::get(reg, &name, &reference, true).await,
                Method::PUT => manifests::put(reg, &name, &reference, req).await,
                Method::DELETE => manifests::delete(reg, &name, &reference).await,
                _ => Err(ApiError::method_not_allowed()),
            }
        }
        Route::Tags => match method {
            Method::GET | Method::HEAD => tags::list(reg, &name, req.uri().query()).await,
            _ => Err(ApiError::method_not_allowed()),
        },
        Route::Referrers(digest) => {
            let digest = percent_decode(digest);
            match method {
                Method::GET | Method::HEAD => {
                    referrers::list(reg, &name, &digest, req.uri().query()).await
                }
                _ => Err(ApiError::method_not_allowed()),
            }
        }
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
    fn routes_split_on_last_marker() {
        assert_eq!(
            parse_route("a/b/blobs/sha256:x"),
            Some(("a/b", Route::Blob("sha256:x")))
        );
        assert_eq!(
            parse_route("a/blobs/uploads/"),
            Some(("a", Route::Upload("")))
        );
        assert_eq!(
            parse_route("a/blobs/uploads/123"),
            Some(("a", Route::Upload("123")))
        );
        assert_eq!(
            parse_route("blobs/uploads/blobs/d"),
            Some(("blobs/uploads", Route::Blob("d")))
        );
        assert_eq!(
            parse_route("manifests/manifests/latest"),
            Some(("manifests", Route::Manifest("latest")))
        );
        assert_eq!(parse_route("a/tags/list"), Some(("a", Route::Tags)));
        assert_eq!(parse_route("a/tags/list/x"), None);
        assert_eq!(
            parse_route("x/tags/list/referrers/d"),
            Some(("x/tags/list", Route::Referrers("d")))
        );
        assert_eq!(parse_route("a/b"), None);
    }

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
