//! Upload requests (distribution-spec v1.1, "Pushing blobs", "Pushing a blob in chunks",
//! "Mounting a blob"): `POST /v2/<name>/blobs/uploads/`, then `PATCH`, `PUT`, `GET` and
//! `DELETE` on the session's `Location`.

use reqwest::{Method, RequestBuilder, Response, StatusCode};

use super::answers::header;
use super::client::{Fetch, Registry};
use super::content::sha256;

const OCTET_STREAM: &str = "application/octet-stream";

impl Registry {
    fn uploads(&self, repo: &str, query: &str) -> RequestBuilder {
        self.request(Method::POST, &format!("/v2/{repo}/blobs/uploads/{query}"))
    }

    /// end-4a: `POST /v2/<name>/blobs/uploads/` without a body: opens a session.
    pub async fn post_upload(&self, repo: &str) -> Response {
        self.uploads(repo, "")
            .header("content-length", "0")
            .fetch()
            .await
    }

    /// end-4a with `?digest-algorithm=<algorithm>`.
    pub async fn post_upload_with_algorithm(&self, repo: &str, algorithm: &str) -> Response {
        self.uploads(repo, &format!("?digest-algorithm={algorithm}"))
            .header("content-length", "0")
            .fetch()
            .await
    }

    /// Opens a session (asserting the 202); returns its `Location`.
    pub async fn start_upload(&self, repo: &str) -> String {
        let resp = self.post_upload(repo).await;
        assert_eq!(resp.status(), StatusCode::ACCEPTED, "{resp:?}");
        header(&resp, "location")
    }

    /// end-4b: the whole blob in one `POST /v2/<name>/blobs/uploads/?digest=<digest>`.
    pub async fn post_blob(&self, repo: &str, digest: &str, data: &[u8]) -> Response {
        self.uploads(repo, &format!("?digest={digest}"))
            .header("content-type", OCTET_STREAM)
            .body(data.to_vec())
            .fetch()
            .await
    }

    /// end-11: `POST /v2/<name>/blobs/uploads/?mount=<digest>[&from=<other name>]`.
    pub async fn mount_blob(&self, repo: &str, digest: &str, from: Option<&str>) -> Response {
        let from = from.map(|f| format!("&from={f}")).unwrap_or_default();
        self.uploads(repo, &format!("?mount={digest}{from}"))
            .header("content-length", "0")
            .fetch()
            .await
    }

    /// end-5: `PATCH <location>` with the chunk `data` starting at byte `start` of the blob
    /// (`Content-Range: <start>-<end>`, `Content-Length`).
    pub async fn patch_chunk(&self, location: &str, start: u64, data: &[u8]) -> Response {
        assert!(!data.is_empty(), "a chunk holds at least one byte");
        let end = start + data.len() as u64 - 1;
        self.patch_with_range(location, &format!("{start}-{end}"), data)
            .await
    }

    /// end-5 with a `Content-Range` given as is (malformed or contradicting the body).
    pub async fn patch_with_range(&self, location: &str, range: &str, data: &[u8]) -> Response {
        self.request(Method::PATCH, location)
            .header("content-type", OCTET_STREAM)
            .header("content-range", range)
            .body(data.to_vec())
            .fetch()
            .await
    }

    /// `PATCH <location>` without `Content-Range` (appends `data` at the session's offset).
    pub async fn patch_unranged(&self, location: &str, data: &[u8]) -> Response {
        self.request(Method::PATCH, location)
            .header("content-type", OCTET_STREAM)
            .body(data.to_vec())
            .fetch()
            .await
    }

    /// end-13: `GET <location>`: the session's progress.
    pub async fn upload_status(&self, location: &str) -> Response {
        self.get(location).await
    }

    /// `DELETE <location>`: cancels the session.
    pub async fn cancel_upload(&self, location: &str) -> Response {
        self.send(Method::DELETE, location).await
    }

    /// `PUT <location>?digest=<digest>`, the request that closes a session.
    pub fn closing(&self, location: &str, digest: &str) -> RequestBuilder {
        self.request(
            Method::PUT,
            &self.with_query(location, &format!("digest={digest}")),
        )
    }

    /// end-6: closes the session with `digest`, sending `last_chunk` (possibly empty) as the
    /// body without `Content-Range`.
    pub async fn close_upload(&self, location: &str, digest: &str, last_chunk: &[u8]) -> Response {
        let req = self.closing(location, digest);
        let req = if last_chunk.is_empty() {
            req.header("content-length", "0")
        } else {
            req.header("content-type", OCTET_STREAM)
                .body(last_chunk.to_vec())
        };
        req.fetch().await
    }

    /// end-6 with the last chunk and its `Content-Range` (it starts at byte `start`).
    pub async fn close_upload_at(
        &self,
        location: &str,
        digest: &str,
        start: u64,
        last_chunk: &[u8],
    ) -> Response {
        let end = start + last_chunk.len() as u64 - 1;
        self.closing(location, digest)
            .header("content-type", OCTET_STREAM)
            .header("content-range", format!("{start}-{end}"))
            .body(last_chunk.to_vec())
            .fetch()
            .await
    }

    /// POST then PUT (monolithic), asserting the 202 and the 201; returns the digest.
    pub async fn push_blob(&self, repo: &str, data: &[u8]) -> String {
        let digest = sha256(data);
        let location = self.start_upload(repo).await;
        let resp = self.close_upload(&location, &digest, data).await;
        assert_eq!(resp.status(), StatusCode::CREATED, "{resp:?}");
        digest
    }
}
