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
//! Access control attaches at that seam: the router is generic over an [`auth::Authorizer`]
//! ([`router_with_auth`]; [`router`] uses [`auth::NoAuth`]), checked once per request before
//! any handler runs.
//!
//! One module per spec area: [`blobs`] (end-2, end-10), [`uploads`] (end-4a/4b, end-5,
//! end-6, end-11, end-13, end-14), [`manifests`] (end-3, end-7, end-9), [`tags`] (end-8a/8b),
//! [`referrers`] (end-12a/12b), [`catalog`] (`GET /v2/_catalog`, outside the spec) and
//! [`errors`] (the JSON error envelope).

pub mod auth;
pub mod blobs;
pub mod catalog;
pub mod drain;
pub mod errors;
pub mod manifests;
pub mod referrers;
pub mod route;
pub mod sessions;
pub mod tags;
pub mod uploads;

use std::sync::Arc;

use axum::Router;
use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::any;
use bytes::Bytes;
use futures::{Stream, StreamExt};

use crate::error::Error;
use crate::oci::RepositoryName;
use crate::oci::manifest::DEFAULT_MANIFEST_LIMIT;
use crate::storage::{Lifecycle, StorageDriver};
use auth::{Authorizer, Caller, Decision, NoAuth, Scope, refusal, refusal_detail, refusal_with};
pub use errors::ApiError;
pub use route::{Action, Endpoint, Route, RouteInfo, parse_route};
pub use uploads::BlobCommitted;

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
    /// How many bytes of a request body the registry reads and drops when it answers
    /// without having read the body (an error, a refused request), so that the client reads
    /// the answer instead of a broken pipe. Larger bodies are cut off.
    pub drain_limit: u64,
    /// Most upload sessions this process keeps open per repository (0: no bound); past it,
    /// starting one answers 429 `TOOMANYREQUESTS`. See [`sessions`].
    pub max_upload_sessions: usize,
    /// Serve reads only: every push, upload and delete is answered `405` `UNSUPPORTED`
    /// with `Allow` naming what the path still answers (`GET, HEAD`, or nothing for an
    /// upload), before authentication and before its body is read; nothing is written.
    pub read_only: bool,
    /// Refuse deletes (of manifests, tags and blobs) the same way, as CNCF Distribution
    /// does unless `storage.delete.enabled` (distribution-spec, "Content Management": a
    /// registry that does not support deletion answers `405`). Collections still delete.
    pub disable_deletes: bool,
    /// The registry is a pull-through cache ([`PullThrough`](crate::proxy::PullThrough)):
    /// writes are refused as with `read_only`, saying why.
    pub pull_through: bool,
}

/// Default [`RegistryOptions::max_upload_sessions`].
pub const DEFAULT_MAX_UPLOAD_SESSIONS: usize = 256;

/// Default [`RegistryOptions::drain_limit`]: 32 MiB.
pub const DEFAULT_DRAIN_LIMIT: u64 = 32 * 1024 * 1024;

impl Default for RegistryOptions {
    fn default() -> Self {
        Self {
            max_manifest_size: DEFAULT_MANIFEST_LIMIT,
            drain_limit: DEFAULT_DRAIN_LIMIT,
            max_upload_sessions: DEFAULT_MAX_UPLOAD_SESSIONS,
            read_only: false,
            disable_deletes: false,
            pull_through: false,
        }
    }
}

/// Shared state of the handlers.
#[derive(Debug)]
pub struct Registry<D, A = NoAuth> {
    /// The storage driver.
    pub driver: Arc<D>,
    /// HTTP settings.
    pub options: RegistryOptions,
    /// Access control.
    pub auth: A,
    /// Upload sessions open per repository.
    pub sessions: sessions::SessionCounter,
}

/// Builds the router serving the whole API over `driver`, without access control (the
/// spec's endpoints through its [`StorageDriver`] side, `/v2/_catalog` through its
/// [`Lifecycle`] side).
///
/// Every response carries `Docker-Distribution-API-Version: registry/2.0`; every error
/// carries the JSON envelope.
pub fn router<D: StorageDriver + Lifecycle>(driver: Arc<D>, options: RegistryOptions) -> Router {
    router_with_auth(driver, options, NoAuth)
}

/// [`router`] with access control: `auth` authenticates and authorizes every `/v2/`
/// request before its handler runs (see [`auth`]); the catalog lists only the repositories
/// the caller may pull.
pub fn router_with_auth<D: StorageDriver + Lifecycle, A: Authorizer>(
    driver: Arc<D>,
    options: RegistryOptions,
    auth: A,
) -> Router {
    let state = Arc::new(Registry {
        driver,
        options,
        auth,
        sessions: sessions::SessionCounter::default(),
    });
    Router::new()
        .route("/v2/", any(dispatch::<D, A>))
        .route("/v2", any(dispatch::<D, A>))
        .route("/v2/{*path}", any(dispatch::<D, A>))
        .fallback(|| async { ApiError::not_found() })
        .with_state(state)
        .layer(axum::middleware::map_response(add_common_headers))
}

/// The headers of every answer: `Docker-Distribution-API-Version` (spec "API Version
/// Check"), and `X-Content-Type-Options: nosniff`, as CNCF Distribution sends: blobs hold
/// whatever a pusher chose, which a browser must never take for a page or a script of this
/// origin (it would otherwise sniff an `application/octet-stream` body that looks like HTML).
async fn add_common_headers(mut resp: Response) -> Response {
    let headers = resp.headers_mut();
    headers.insert(API_VERSION_HEADER, HeaderValue::from_static("registry/2.0"));
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    resp
}

/// end-1: `GET /v2/` answers 200 with an empty JSON object.
fn api_version() -> Response {
    (
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        )],
        "{}",
    )
        .into_response()
}

/// An HTTP/1.1 request must carry `Host` (RFC 9112 §3.2: "A server MUST respond with a 400
/// (Bad Request) status code to any HTTP/1.1 request message that lacks a Host header").
fn missing_host(req: &Request) -> bool {
    req.version() == axum::http::Version::HTTP_11 && !req.headers().contains_key(header::HOST)
}

async fn dispatch<D: StorageDriver + Lifecycle, A: Authorizer>(
    State(reg): State<Arc<Registry<D, A>>>,
    req: Request,
) -> Response {
    if missing_host(&req) {
        return ApiError::new(
            StatusCode::BAD_REQUEST,
            "UNSUPPORTED",
            "the operation is unsupported",
        )
        .with_detail("HTTP/1.1 request without Host")
        .into_response();
    }
    let info = match route_info(req.uri().path(), req.method()) {
        Ok(info) => info,
        Err(err) => return err.into_response(),
    };
    let (parts, body) = req.into_parts();
    let limit = reg.options.drain_limit;
    // Access control: after the route is parsed and the name validated, before any handler
    // and before the body is read.
    let (mut resp, leftover) = match check_access(&reg, &info, &parts).await {
        Err(refused) => {
            drain::drain(body, limit).await;
            (refused, None)
        }
        Ok(access) => {
            let (body, leftover) = if drain::has_body(&parts.headers) {
                let (body, leftover) = drain::share(body);
                (body, Some(leftover))
            } else {
                (body, None)
            };
            let caller = Caller {
                authorizer: &reg.auth,
                principal: &access.principal,
            };
            let req = Request::from_parts(parts, body);
            let mut resp = match handle(&reg, &info, req, &caller, access.mount_allowed).await {
                Ok(resp) => resp,
                Err(err) => err.into_response(),
            };
            if let Some(identity) = reg.auth.identity(&access.principal) {
                resp.extensions_mut().insert(identity);
            }
            (resp, leftover)
        }
    };
    if let Some(leftover) = leftover {
        leftover.drain(limit).await;
    }
    resp.extensions_mut().insert(info);
    resp
}

/// What the access check let through.
struct Access<P> {
    principal: P,
    /// A cross-repository mount may read its source (`?mount=&from=`).
    mount_allowed: bool,
}

/// Authenticates the caller and authorizes the scope the endpoint needs (for a mount, also
/// pull on the source: refused, the mount falls back to a plain upload session). A refusal
/// is the finished 401/403 response, or the 405 of an endpoint the options do not permit
/// (a write on a read-only registry, a delete with deletes disabled).
async fn check_access<D, A: Authorizer>(
    reg: &Registry<D, A>,
    info: &RouteInfo,
    parts: &axum::http::request::Parts,
) -> Result<Access<A::Principal>, Response> {
    if let Some(Err(why)) = info.endpoint.map(|e| reg.options.permits(e)) {
        let allow = allowed_methods(parts.uri.path(), &reg.options);
        return Err(ApiError::new(
            StatusCode::METHOD_NOT_ALLOWED,
            "UNSUPPORTED",
            "the operation is unsupported",
        )
        .with_detail(why)
        .with_header(header::ALLOW, &allow)
        .into_response());
    }
    let Some(endpoint) = info.endpoint else {
        // 405: no handler runs, nothing to protect.
        return Ok(Access {
            principal: reg
                .auth
                .authenticate(parts)
                .await
                .map_err(|f| refused_auth(reg, &[], &f))?,
            mount_allowed: false,
        });
    };
    let scope = match (endpoint, &info.repository, endpoint.action()) {
        (Endpoint::Catalog, _, _) => Scope::Catalog,
        (_, Some(name), Some(action)) => Scope::Repository(name, action),
        _ => Scope::ApiVersion,
    };
    let mount_source = (endpoint == Endpoint::UploadStart)
        .then(|| mount_source(parts.uri.query()))
        .flatten();
    let mut scopes = vec![scope];
    if let Some(source) = &mount_source {
        scopes.push(Scope::Repository(source, route::Action::Pull));
    }
    let principal = match reg.auth.authenticate(parts).await {
        Ok(p) => p,
        Err(failure) => return Err(refused_auth(reg, &scopes, &failure)),
    };
    let decision = reg.auth.authorize(&principal, scope).await;
    if decision != Decision::Allow {
        let mut resp = refusal(&reg.auth, decision, &scopes, &refusal_detail(&scopes[..1]));
        if let Some(identity) = reg.auth.identity(&principal) {
            resp.extensions_mut().insert(identity);
        }
        return Err(resp);
    }
    let mount_allowed = match &mount_source {
        Some(source) => {
            reg.auth
                .authorize(&principal, Scope::Repository(source, route::Action::Pull))
                .await
                == Decision::Allow
        }
        None => false,
    };
    Ok(Access {
        principal,
        mount_allowed,
    })
}

fn refused_auth<D, A: Authorizer>(
    reg: &Registry<D, A>,
    scopes: &[Scope<'_>],
    failure: &auth::AuthFailure,
) -> Response {
    let error = if failure.invalid_token {
        auth::ChallengeError::InvalidToken
    } else {
        auth::ChallengeError::None
    };
    refusal_with(
        &reg.auth,
        Decision::Challenge,
        scopes,
        error,
        &failure.reason,
    )
}

/// The valid `from` repository of a mount request (`?mount=<digest>&from=<name>`).
fn mount_source(query: Option<&str>) -> Option<RepositoryName> {
    let pairs = query_pairs(query);
    query_param(&pairs, "mount")?;
    RepositoryName::parse(query_param(&pairs, "from")?).ok()
}

/// Parses a `/v2/<name>/...` path: the repository name is validated before anything else
/// (`NAME_INVALID`, 400); a path that names no endpoint is `404`. `/v2/` itself is the API
/// version check (GET and HEAD only).
fn route_info(path: &str, method: &Method) -> Result<RouteInfo, ApiError> {
    let rest = path.strip_prefix("/v2/").unwrap_or("");
    if rest.is_empty() {
        let read = *method == Method::GET || *method == Method::HEAD;
        return Ok(RouteInfo {
            endpoint: read.then_some(Endpoint::ApiVersion),
            repository: None,
            reference: None,
        });
    }
    if rest == "_catalog" {
        let read = *method == Method::GET || *method == Method::HEAD;
        return Ok(RouteInfo {
            endpoint: read.then_some(Endpoint::Catalog),
            repository: None,
            reference: None,
        });
    }
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

impl RegistryOptions {
    /// Whether these options let `endpoint` be served: `Err` says why not (a read-only
    /// registry and a write, or deletes disabled and a delete).
    fn permits(&self, endpoint: Endpoint) -> Result<(), &'static str> {
        match endpoint.action() {
            Some(route::Action::Push | route::Action::Delete) if self.pull_through => {
                Err(crate::proxy::REFUSED)
            }
            Some(route::Action::Push | route::Action::Delete) if self.read_only => {
                Err("this registry is read-only")
            }
            Some(route::Action::Delete) if self.disable_deletes => {
                Err("deletes are disabled on this registry")
            }
            _ => Ok(()),
        }
    }
}

/// The methods `path` answers, for the `Allow` header a `405` must carry (RFC 9110 §15.5.6):
/// those [`route_info`] gives an endpoint for that `options` permit (possibly none, on a
/// read-only registry's upload path: "an empty Allow field value indicates that the
/// resource allows no methods, which might occur in a 405 response if the resource has been
/// temporarily disabled by configuration").
fn allowed_methods(path: &str, options: &RegistryOptions) -> String {
    const METHODS: [Method; 6] = [
        Method::GET,
        Method::HEAD,
        Method::POST,
        Method::PUT,
        Method::PATCH,
        Method::DELETE,
    ];
    let allowed: Vec<&str> = METHODS
        .iter()
        .filter(|m| {
            route_info(path, m).is_ok_and(|info| {
                info.endpoint
                    .is_some_and(|endpoint| options.permits(endpoint).is_ok())
            })
        })
        .map(Method::as_str)
        .collect();
    allowed.join(", ")
}

/// Hands the request to the handler of its endpoint. `caller` is who passed the access
/// check (handlers that filter by permission, like the catalog, use
/// [`Caller::may_list`]); `mount_allowed` says whether a mount may read its source.
async fn handle<D: StorageDriver + Lifecycle, A: Authorizer>(
    reg: &Registry<D, A>,
    info: &RouteInfo,
    req: Request,
    caller: &Caller<'_, A>,
    mount_allowed: bool,
) -> Result<Response, ApiError> {
    match info.endpoint {
        Some(Endpoint::ApiVersion) => return Ok(api_version()),
        Some(Endpoint::Catalog) => return catalog::list(reg, req.uri().query(), caller).await,
        _ => {}
    }
    let (Some(endpoint), Some(name)) = (info.endpoint, info.repository.as_ref()) else {
        let allow = allowed_methods(req.uri().path(), &reg.options);
        return Err(ApiError::method_not_allowed().with_header(header::ALLOW, &allow));
    };
    let reference = info.reference.as_deref().unwrap_or("");
    let head = req.method() == Method::HEAD;
    match endpoint {
        Endpoint::BlobGet => blobs::get(reg, name, reference, req.headers(), head).await,
        Endpoint::BlobDelete => blobs::delete(reg, name, reference).await,
        Endpoint::UploadStart => uploads::post(reg, name, req, mount_allowed).await,
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
