//! What a request addresses: the repository, the spec endpoint and the action it needs.
//!
//! Every `/v2/...` request goes through one catch-all route; [`parse_route`] splits the path
//! on the *last* spec marker (`/blobs/uploads/`, `/blobs/`, `/manifests/`, `/tags/list`,
//! `/referrers/`), and [`Endpoint::of`] names the spec endpoint the method selects on it.
//!
//! This is the one place where cross-cutting HTTP concerns attach: the dispatcher builds a
//! [`RouteInfo`] right after the route is parsed and the name validated (access control
//! checks it there, before any handler runs) and puts it into the response's extensions, so
//! middleware around the router (metrics labels, access logs, notifications) reads what the
//! request was without parsing the path again.

use axum::http::Method;

use crate::oci::RepositoryName;

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

/// The endpoints of the distribution spec ("Endpoints" table, `end-N`), plus the catalog.
///
/// The names are stable, low-cardinality labels (metrics, logs): never a repository name or
/// a digest.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Endpoint {
    /// end-1 `GET /v2/`.
    ApiVersion,
    /// end-2 `GET`/`HEAD /v2/<name>/blobs/<digest>`.
    BlobGet,
    /// end-10 `DELETE /v2/<name>/blobs/<digest>`.
    BlobDelete,
    /// end-4a, end-4b, end-11 `POST /v2/<name>/blobs/uploads/` (session, monolithic push or
    /// mount).
    UploadStart,
    /// end-13 `GET /v2/<name>/blobs/uploads/<reference>`.
    UploadStatus,
    /// end-5 `PATCH /v2/<name>/blobs/uploads/<reference>`.
    UploadChunk,
    /// end-6 `PUT /v2/<name>/blobs/uploads/<reference>?digest=`.
    UploadFinish,
    /// `DELETE /v2/<name>/blobs/uploads/<reference>` (cancel an upload).
    UploadCancel,
    /// end-3 `GET`/`HEAD /v2/<name>/manifests/<reference>`.
    ManifestGet,
    /// end-7 `PUT /v2/<name>/manifests/<reference>`.
    ManifestPut,
    /// end-9 `DELETE /v2/<name>/manifests/<reference>`.
    ManifestDelete,
    /// end-8a, end-8b `GET /v2/<name>/tags/list`.
    TagList,
    /// end-12a, end-12b `GET /v2/<name>/referrers/<digest>`.
    Referrers,
    /// `GET /v2/_catalog` (listing repositories; not in the spec's table).
    Catalog,
}

/// What an endpoint does to a repository, in the vocabulary of the Docker registry token
/// specification's scopes (`repository:<name>:pull,push,delete`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Action {
    /// Read blobs, manifests, tags, referrers.
    Pull,
    /// Upload blobs, put manifests and tags.
    Push,
    /// Delete blobs and manifests.
    Delete,
}

impl Action {
    /// The scope action's name: `pull`, `push` or `delete`.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Pull => "pull",
            Self::Push => "push",
            Self::Delete => "delete",
        }
    }
}

impl Endpoint {
    /// The endpoint `method` selects on `route`; `None` when the route has no such method
    /// (answered `405 UNSUPPORTED`).
    pub fn of(route: &Route<'_>, method: &Method) -> Option<Self> {
        let read = *method == Method::GET || *method == Method::HEAD;
        Some(match route {
            Route::Blob(_) if read => Self::BlobGet,
            Route::Blob(_) if *method == Method::DELETE => Self::BlobDelete,
            Route::Upload("") if *method == Method::POST => Self::UploadStart,
            Route::Upload("") => return None,
            Route::Upload(_) if read => Self::UploadStatus,
            Route::Upload(_) if *method == Method::PATCH => Self::UploadChunk,
            Route::Upload(_) if *method == Method::PUT => Self::UploadFinish,
            Route::Upload(_) if *method == Method::DELETE => Self::UploadCancel,
            Route::Manifest(_) if read => Self::ManifestGet,
            Route::Manifest(_) if *method == Method::PUT => Self::ManifestPut,
            Route::Manifest(_) if *method == Method::DELETE => Self::ManifestDelete,
            Route::Tags if read => Self::TagList,
            Route::Referrers(_) if read => Self::Referrers,
            _ => return None,
        })
    }

    /// A stable label: `blob_get`, `manifest_put`, ...
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::ApiVersion => "api_version",
            Self::BlobGet => "blob_get",
            Self::BlobDelete => "blob_delete",
            Self::UploadStart => "upload_start",
            Self::UploadStatus => "upload_status",
            Self::UploadChunk => "upload_chunk",
            Self::UploadFinish => "upload_finish",
            Self::UploadCancel => "upload_cancel",
            Self::ManifestGet => "manifest_get",
            Self::ManifestPut => "manifest_put",
            Self::ManifestDelete => "manifest_delete",
            Self::TagList => "tag_list",
            Self::Referrers => "referrers",
            Self::Catalog => "catalog",
        }
    }

    /// The action the endpoint needs on its repository (`None`: none, e.g. `/v2/`).
    ///
    /// A mount (end-11) also needs `pull` on its source repository; the dispatcher adds that
    /// from the query.
    pub const fn action(self) -> Option<Action> {
        match self {
            Self::ApiVersion | Self::Catalog => None,
            Self::BlobGet | Self::ManifestGet | Self::TagList | Self::Referrers => {
                Some(Action::Pull)
            }
            Self::UploadStart
            | Self::UploadStatus
            | Self::UploadChunk
            | Self::UploadFinish
            | Self::UploadCancel
            | Self::ManifestPut => Some(Action::Push),
            Self::BlobDelete | Self::ManifestDelete => Some(Action::Delete),
        }
    }
}

/// What a request addressed, as the dispatcher understood it: set as a response extension
/// on every `/v2/` answer whose path named an endpoint (also on errors).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RouteInfo {
    /// The endpoint; `None` when the method is not allowed on the route.
    pub endpoint: Option<Endpoint>,
    /// The repository (validated).
    pub repository: Option<RepositoryName>,
    /// The path argument after the marker, percent-decoded: a digest, a tag or an upload id.
    pub reference: Option<String>,
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
    fn endpoints_and_actions() {
        let cases = [
            (Route::Blob("d"), Method::HEAD, Some(Endpoint::BlobGet)),
            (Route::Blob("d"), Method::DELETE, Some(Endpoint::BlobDelete)),
            (Route::Blob("d"), Method::PUT, None),
            (Route::Upload(""), Method::POST, Some(Endpoint::UploadStart)),
            (Route::Upload(""), Method::GET, None),
            (
                Route::Upload("u"),
                Method::GET,
                Some(Endpoint::UploadStatus),
            ),
            (
                Route::Upload("u"),
                Method::PATCH,
                Some(Endpoint::UploadChunk),
            ),
            (
                Route::Upload("u"),
                Method::PUT,
                Some(Endpoint::UploadFinish),
            ),
            (
                Route::Upload("u"),
                Method::DELETE,
                Some(Endpoint::UploadCancel),
            ),
            (Route::Upload("u"), Method::POST, None),
            (
                Route::Manifest("t"),
                Method::GET,
                Some(Endpoint::ManifestGet),
            ),
            (
                Route::Manifest("t"),
                Method::PUT,
                Some(Endpoint::ManifestPut),
            ),
            (
                Route::Manifest("t"),
                Method::DELETE,
                Some(Endpoint::ManifestDelete),
            ),
            (Route::Manifest("t"), Method::PATCH, None),
            (Route::Tags, Method::GET, Some(Endpoint::TagList)),
            (Route::Tags, Method::DELETE, None),
            (
                Route::Referrers("d"),
                Method::GET,
                Some(Endpoint::Referrers),
            ),
            (Route::Referrers("d"), Method::POST, None),
        ];
        for (route, method, expected) in cases {
            assert_eq!(
                Endpoint::of(&route, &method),
                expected,
                "{route:?} {method}"
            );
        }
        assert_eq!(Endpoint::ManifestGet.action(), Some(Action::Pull));
        assert_eq!(Endpoint::UploadChunk.action(), Some(Action::Push));
        assert_eq!(Endpoint::BlobDelete.action(), Some(Action::Delete));
        assert_eq!(Endpoint::ApiVersion.action(), None);
        assert_eq!(Endpoint::UploadFinish.as_str(), "upload_finish");
        assert_eq!(Action::Delete.as_str(), "delete");
    }
}
