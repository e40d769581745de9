//! `GET /v2/_catalog`: the repositories, paginated with `n` and `last` and a `Link` header.
//!
//! Not part of the OCI distribution spec (its "Listing Tags" defines the same pagination for
//! tags); this is the Docker Registry HTTP API V2 "Listing Repositories" endpoint that podman
//! search, crane catalog and regctl use: `{"repositories": [...]}`, at most `n` names
//! (default [`DEFAULT_PAGE`], at most [`MAX_PAGE`]) after `last`, and when more follow a
//! `Link: </v2/_catalog?last=<name>&n=<n>>; rel="next"` header (RFC 8288).
//!
//! The order is the storage's (the names followed by `/`: see
//! [`lifecycle`](crate::storage::lifecycle)), stable across pages.
//!
//! **Access control**: the request needs the catalog scope (`registry:catalog:*`), and [`list`]
//! shows only the repositories the caller may pull ([`Caller::may_list`], the authorizer's
//! own decision), paging on in the storage until it has `n` of them.

use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;

use super::auth::{Authorizer, Caller};
use super::{ApiError, Registry, put_header, query_pairs, query_param};
use crate::oci::RepositoryName;
use crate::storage::Lifecycle;

/// Names per page when the client gives no `n` (as Distribution).
pub const DEFAULT_PAGE: usize = 100;
/// Most names per page; a larger `n` is lowered to it (the `Link` header leads on).
pub const MAX_PAGE: usize = 1000;

#[derive(Serialize)]
struct CatalogBody<'a> {
    repositories: &'a [String],
}

/// `GET /v2/_catalog[?n=<int>][&last=<name>]`, listing only the repositories `caller` may
/// pull.
pub async fn list<D: Lifecycle, A: Authorizer>(
    reg: &Registry<D, A>,
    query: Option<&str>,
    caller: &Caller<'_, A>,
) -> Result<Response, ApiError> {
    let pairs = query_pairs(query);
    let n = match query_param(&pairs, "n") {
        None | Some("") => DEFAULT_PAGE,
        Some(v) => v
            .parse::<usize>()
            .map_err(|_| {
                ApiError::new(
                    StatusCode::BAD_REQUEST,
                    "UNSUPPORTED",
                    "the operation is unsupported",
                )
                .with_detail(format!("n={v:?} is not a non-negative integer"))
            })?
            .min(MAX_PAGE),
    };
    let mut cursor = query_param(&pairs, "last")
        .filter(|l| !l.is_empty())
        .map(str::to_owned);
    let mut repositories = Vec::new();
    let mut has_more = false;
    while n > repositories.len() {
        let page = reg
            .driver
            .repositories(Some(n - repositories.len()), cursor.as_deref())
            .await?;
        let mut names = page.repositories.into_iter();
        for name in names.by_ref() {
            cursor = Some(name.clone());
            let allowed = match RepositoryName::parse(&name) {
                Ok(repo) => caller.may_list(&repo).await,
                Err(_) => false,
            };
            if allowed {
                repositories.push(name);
                if repositories.len() == n {
                    break;
                }
            }
        }
        if repositories.len() == n {
            has_more = names.next().is_some() || page.has_more;
            break;
        }
        if !page.has_more {
            break;
        }
    }
    let mut headers = HeaderMap::new();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    if has_more && let Some(last) = repositories.last() {
        put_header(
            &mut headers,
            "link",
            &format!("</v2/_catalog?last={last}&n={n}>; rel=\"next\""),
        );
    }
    let body = serde_json::to_vec(&CatalogBody {
        repositories: &repositories,
    })
    .map_err(|e| ApiError::from(crate::Error::backend("registry", e.to_string())))?;
    Ok((StatusCode::OK, headers, body).into_response())
}
