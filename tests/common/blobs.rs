//! Blob requests (distribution-spec v1.1, "Pulling blobs", "Checking if content exists",
//! "Deleting Blobs"): `GET`, `HEAD` and `DELETE /v2/<name>/blobs/<digest>`.

use reqwest::{Method, Response, StatusCode};

use super::client::Registry;

impl Registry {
    fn blob_path(repo: &str, digest: &str) -> String {
        format!("/v2/{repo}/blobs/{digest}")
    }

    /// end-2: `GET /v2/<name>/blobs/<digest>`.
    pub async fn get_blob(&self, repo: &str, digest: &str) -> Response {
        self.get(&Self::blob_path(repo, digest)).await
    }

    /// end-2 with a `Range` header (`bytes=10-19`, ...).
    pub async fn get_blob_range(&self, repo: &str, digest: &str, range: &str) -> Response {
        self.get_with(&Self::blob_path(repo, digest), "range", range)
            .await
    }

    /// end-2: `HEAD /v2/<name>/blobs/<digest>`.
    pub async fn head_blob(&self, repo: &str, digest: &str) -> Response {
        self.send(Method::HEAD, &Self::blob_path(repo, digest))
            .await
    }

    /// end-10: `DELETE /v2/<name>/blobs/<digest>`.
    pub async fn delete_blob(&self, repo: &str, digest: &str) -> Response {
        self.send(Method::DELETE, &Self::blob_path(repo, digest))
            .await
    }

    /// The blob's bytes, or `None` when the registry answers 404 (any other answer fails
    /// the test).
    pub async fn blob_content(&self, repo: &str, digest: &str) -> Option<Vec<u8>> {
        let resp = self.get_blob(repo, digest).await;
        match resp.status() {
            StatusCode::OK => Some(resp.bytes().await.expect("blob body").to_vec()),
            StatusCode::NOT_FOUND => None,
            other => panic!("GET blob {digest} in {repo}: {other}"),
        }
    }
}
