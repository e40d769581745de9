//! Referrers: end-12a (`GET /v2/<name>/referrers/<digest>`) and end-12b
//! (`?artifactType=<type>`).

use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;

use super::{
    ApiError, FILTERS_APPLIED_HEADER, Registry, parse_digest, put_header, query_pairs, query_param,
};
use crate::oci::{Descriptor, RepositoryName, media_types};
use crate::storage::StorageDriver;

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Index<'a> {
    schema_version: u32,
    media_type: &'static str,
    manifests: &'a [Descriptor],
}

/// end-12a/12b: always 200 with an image index (spec "Listing Referrers": "MUST NOT return
/// a 404"; no referrer gives an empty `manifests` array), `Content-Type:
/// application/vnd.oci.image.index.v1+json`, and `OCI-Filters-Applied: artifactType` when
/// the `artifactType` filter was applied. An invalid digest is 400 `DIGEST_INVALID`.
pub async fn list<D: StorageDriver, A>(
    reg: &Registry<D, A>,
    name: &RepositoryName,
    digest: &str,
    query: Option<&str>,
) -> Result<Response, ApiError> {
    let subject = parse_digest(digest)?;
    let pairs = query_pairs(query);
    let artifact_type = query_param(&pairs, "artifactType").filter(|t| !t.is_empty());
    let manifests = reg.driver.referrers(name, &subject, artifact_type).await?;
    let mut headers = HeaderMap::new();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static(media_types::OCI_INDEX),
    );
    if artifact_type.is_some() {
        put_header(&mut headers, FILTERS_APPLIED_HEADER, "artifactType");
    }
    let body = serde_json::to_vec(&Index {
        schema_version: 2,
        media_type: media_types::OCI_INDEX,
        manifests: &manifests,
    })
    .map_err(|e| ApiError::from(crate::Error::backend("registry", e.to_string())))?;
    Ok((StatusCode::OK, headers, body).into_response())
}
