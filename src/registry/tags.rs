//! Tags: end-8a (`GET /v2/<name>/tags/list`) and end-8b (`?n=<int>&last=<tag>`).

use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;

use super::{ApiError, Registry, put_header, query_pairs, query_param};
use crate::oci::RepositoryName;
use crate::storage::StorageDriver;

#[derive(Serialize)]
struct TagsBody<'a> {
    name: &'a str,
    tags: &'a [String],
}

/// end-8a/8b: `{"name": <name>, "tags": [...]}` in lexical order.
///
/// Spec "Listing Tags": `n` limits the count (`n=0` is an empty list without `Link`),
/// `last` starts after the given tag (and may come without `n`). When more tags follow,
/// a `Link: </v2/<name>/tags/list?last=<tag>&n=<n>>; rel="next"` header (RFC 5988) is set.
/// An unknown repository is 404 `NAME_UNKNOWN`.
pub async fn list<D: StorageDriver, A>(
    reg: &Registry<D, A>,
    name: &RepositoryName,
    query: Option<&str>,
) -> Result<Response, ApiError> {
    let pairs = query_pairs(query);
    let bad = |detail: String| {
        ApiError::new(
            StatusCode::BAD_REQUEST,
            "UNSUPPORTED",
            "the operation is unsupported",
        )
        .with_detail(detail)
    };
    for key in ["n", "last"] {
        if pairs.iter().filter(|(k, _)| k == key).count() > 1 {
            return Err(bad(format!("{key} is given more than once")));
        }
    }
    let n = match query_param(&pairs, "n") {
        None => None,
        Some(v) => Some(
            v.parse::<usize>()
                .ok()
                .filter(|_| v.bytes().all(|b| b.is_ascii_digit()))
                .ok_or_else(|| bad(format!("n={v:?} is not a non-negative integer")))?,
        ),
    };
    let last = query_param(&pairs, "last").filter(|l| !l.is_empty());
    let list = reg.driver.get_tags(name, n, last).await?;
    let mut headers = HeaderMap::new();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    if list.has_more
        && let (Some(n), Some(last_tag)) = (n, list.tags.last())
        && n > 0
    {
        put_header(
            &mut headers,
            "link",
            &format!("</v2/{name}/tags/list?last={last_tag}&n={n}>; rel=\"next\""),
        );
    }
    let body = serde_json::to_vec(&TagsBody {
        name: name.as_str(),
        tags: &list.tags,
    })
    .map_err(|e| ApiError::from(crate::Error::backend("registry", e.to_string())))?;
    Ok((StatusCode::OK, headers, body).into_response())
}
