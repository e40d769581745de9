//! Content discovery (distribution-spec v1.1, "Listing Tags", "Listing Referrers"):
//! `GET /v2/<name>/tags/list` and `GET /v2/<name>/referrers/<digest>`, and the repository
//! listing `GET /v2/_catalog` (outside the spec), and readers of their answers.

use reqwest::{Response, StatusCode};
use serde_json::Value;

use super::answers::{header, json, optional_header};
use super::client::Registry;
use super::content::OCI_INDEX;

/// One page of a tag listing.
pub struct TagPage {
    /// The `name` member.
    pub name: String,
    /// The `tags` member.
    pub tags: Vec<String>,
    /// The URL of the next page, from `Link: <url>; rel="next"`.
    pub next: Option<String>,
}

impl TagPage {
    /// Reads a tag listing answer, asserting 200 and `Content-Type: application/json`.
    pub async fn read(resp: Response) -> Self {
        assert_eq!(resp.status(), StatusCode::OK, "{resp:?}");
        assert_eq!(header(&resp, "content-type"), "application/json");
        let next = next_link(&resp);
        let v = json(resp).await;
        let tags = v["tags"]
            .as_array()
            .unwrap_or_else(|| panic!("no tags array: {v}"))
            .iter()
            .map(|t| t.as_str().expect("a tag is a string").to_owned())
            .collect();
        let name = v["name"].as_str().expect("name").to_owned();
        Self { name, tags, next }
    }
}

/// A referrers answer.
pub struct Referrers {
    /// The `OCI-Filters-Applied` header.
    pub filters_applied: Option<String>,
    /// The index's `manifests` member.
    pub manifests: Vec<Value>,
}

impl Referrers {
    /// Reads a referrers answer, asserting 200 and an image index.
    pub async fn read(resp: Response) -> Self {
        assert_eq!(resp.status(), StatusCode::OK, "{resp:?}");
        assert_eq!(header(&resp, "content-type"), OCI_INDEX);
        let filters_applied = optional_header(&resp, "oci-filters-applied");
        let v = json(resp).await;
        assert_eq!(v["schemaVersion"], 2);
        assert_eq!(v["mediaType"], OCI_INDEX);
        let manifests = v["manifests"].as_array().expect("manifests").clone();
        Self {
            filters_applied,
            manifests,
        }
    }

    /// The digests of the referrers listed.
    pub fn digests(&self) -> Vec<&str> {
        self.manifests
            .iter()
            .map(|d| d["digest"].as_str().expect("digest"))
            .collect()
    }
}

/// One page of the repository listing.
pub struct CatalogPage {
    /// The `repositories` member.
    pub repositories: Vec<String>,
    /// The URL of the next page, from `Link: <url>; rel="next"`.
    pub next: Option<String>,
}

impl CatalogPage {
    /// Reads a catalog answer, asserting 200 and `Content-Type: application/json`.
    pub async fn read(resp: Response) -> Self {
        assert_eq!(resp.status(), StatusCode::OK, "{resp:?}");
        assert_eq!(header(&resp, "content-type"), "application/json");
        let next = next_link(&resp);
        let v = json(resp).await;
        let repositories = v["repositories"]
            .as_array()
            .unwrap_or_else(|| panic!("no repositories array: {v}"))
            .iter()
            .map(|r| r.as_str().expect("a repository is a string").to_owned())
            .collect();
        Self { repositories, next }
    }
}

/// The target of a `Link: <url>; rel="next"` header, if any.
fn next_link(resp: &Response) -> Option<String> {
    optional_header(resp, "link").map(|link| {
        assert!(link.ends_with("rel=\"next\""), "{link}");
        link[link.find('<').unwrap() + 1..link.find('>').unwrap()].to_owned()
    })
}

/// `?n=<n>&last=<last>` with the parameters given.
fn page_query(n: Option<usize>, last: Option<&str>) -> String {
    let mut query = Vec::new();
    if let Some(n) = n {
        query.push(format!("n={n}"));
    }
    if let Some(last) = last {
        query.push(format!("last={last}"));
    }
    if query.is_empty() {
        String::new()
    } else {
        format!("?{}", query.join("&"))
    }
}

impl Registry {
    /// `GET /v2/_catalog[?n=<n>][&last=<last>]`.
    pub async fn list_catalog(&self, n: Option<usize>, last: Option<&str>) -> Response {
        self.get(&format!("/v2/_catalog{}", page_query(n, last)))
            .await
    }

    /// A page of the repository listing (asserting a successful answer).
    pub async fn catalog_page(&self, n: Option<usize>, last: Option<&str>) -> CatalogPage {
        CatalogPage::read(self.list_catalog(n, last).await).await
    }

    /// end-8a/8b: `GET /v2/<name>/tags/list[?n=<n>][&last=<last>]`.
    pub async fn list_tags(&self, repo: &str, n: Option<usize>, last: Option<&str>) -> Response {
        self.get(&format!("/v2/{repo}/tags/list{}", page_query(n, last)))
            .await
    }

    /// A page of tags (asserting a successful listing).
    pub async fn tag_page(&self, repo: &str, n: Option<usize>, last: Option<&str>) -> TagPage {
        TagPage::read(self.list_tags(repo, n, last).await).await
    }

    /// end-12a/12b: `GET /v2/<name>/referrers/<digest>[?artifactType=<type>]`.
    pub async fn get_referrers(
        &self,
        repo: &str,
        digest: &str,
        artifact_type: Option<&str>,
    ) -> Response {
        let filter = artifact_type
            .map(|t| format!("?artifactType={t}"))
            .unwrap_or_default();
        self.get(&format!("/v2/{repo}/referrers/{digest}{filter}"))
            .await
    }

    /// The referrers of `digest` (asserting a successful answer).
    pub async fn referrers(
        &self,
        repo: &str,
        digest: &str,
        artifact_type: Option<&str>,
    ) -> Referrers {
        Referrers::read(self.get_referrers(repo, digest, artifact_type).await).await
    }
}
