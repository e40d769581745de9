//! Spec workflow "Content management" (distribution-spec v1.1, "Deleting tags", "Deleting
//! Manifests", "Deleting Blobs") over loopback HTTP, every driver.

mod common;

use common::*;
use reqwest::StatusCode;

async fn status(s: &Server, method: reqwest::Method, path: &str) -> StatusCode {
    s.client
        .request(method, s.url(path))
        .send()
        .await
        .unwrap()
        .status()
}

#[tokio::test]
async fn delete_tag_keeps_manifest() {
    each_driver("delete_tag_keeps_manifest", |s| async move {
        let img = s.push_image("mgmt/tag", "v1", 1).await;
        let resp = s
            .put_manifest("mgmt/tag", "v2", OCI_MANIFEST, &img.manifest)
            .await;
        assert_eq!(resp.status(), StatusCode::CREATED);
        // "Upon success, the registry MUST respond with a 202 Accepted code."
        assert_eq!(
            status(&s, reqwest::Method::DELETE, "/v2/mgmt/tag/manifests/v1").await,
            StatusCode::ACCEPTED
        );
        // "Once deleted, a GET to /v2/<name>/manifests/<tag> will return a 404."
        let resp = s
            .client
            .get(s.url("/v2/mgmt/tag/manifests/v1"))
            .send()
            .await
            .unwrap();
        assert_error(resp, 404, "MANIFEST_UNKNOWN").await;
        // The manifest and the other tag stay.
        let by_digest = format!("/v2/mgmt/tag/manifests/{}", img.digest);
        assert_eq!(
            status(&s, reqwest::Method::GET, &by_digest).await,
            StatusCode::OK
        );
        assert_eq!(
            status(&s, reqwest::Method::GET, "/v2/mgmt/tag/manifests/v2").await,
            StatusCode::OK
        );
        // Deleting it again: 404.
        let resp = s
            .client
            .delete(s.url("/v2/mgmt/tag/manifests/v1"))
            .send()
            .await
            .unwrap();
        assert_error(resp, 404, "MANIFEST_UNKNOWN").await;
    })
    .await;
}

#[tokio::test]
async fn delete_manifest_by_digest() {
    each_driver("delete_manifest_by_digest", |s| async move {
        let img = s.push_image("mgmt/man", "v1", 2).await;
        let by_digest = format!("/v2/mgmt/man/manifests/{}", img.digest);
        assert_eq!(
            status(&s, reqwest::Method::DELETE, &by_digest).await,
            StatusCode::ACCEPTED
        );
        // "a GET to /v2/<name>/manifests/<digest> and any tag pointing to that digest will
        // return a 404".
        let resp = s.client.get(s.url(&by_digest)).send().await.unwrap();
        assert_error(resp, 404, "MANIFEST_UNKNOWN").await;
        let resp = s
            .client
            .get(s.url("/v2/mgmt/man/manifests/v1"))
            .send()
            .await
            .unwrap();
        assert_error(resp, 404, "MANIFEST_UNKNOWN").await;
        let resp = s.client.delete(s.url(&by_digest)).send().await.unwrap();
        assert_error(resp, 404, "MANIFEST_UNKNOWN").await;
        // Blobs stay until deleted.
        assert_eq!(
            status(
                &s,
                reqwest::Method::HEAD,
                &format!("/v2/mgmt/man/blobs/{}", img.layer_digest)
            )
            .await,
            StatusCode::OK
        );
    })
    .await;
}

#[tokio::test]
async fn delete_blob() {
    each_driver("delete_blob", |s| async move {
        let data = payload(1234, 3);
        let digest = s.push_blob("mgmt/blob", &data).await;
        s.push_blob("mgmt/other", &data).await;
        let path = format!("/v2/mgmt/blob/blobs/{digest}");
        assert_eq!(
            status(&s, reqwest::Method::DELETE, &path).await,
            StatusCode::ACCEPTED
        );
        let resp = s.client.get(s.url(&path)).send().await.unwrap();
        assert_error(resp, 404, "BLOB_UNKNOWN").await;
        // "If the blob is not found, a 404 Not Found code MUST be returned."
        let resp = s.client.delete(s.url(&path)).send().await.unwrap();
        assert_error(resp, 404, "BLOB_UNKNOWN").await;
        // Another repository linking the same content keeps it.
        let resp = s
            .client
            .get(s.url(&format!("/v2/mgmt/other/blobs/{digest}")))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), StatusCode::OK);
        assert_eq!(resp.bytes().await.unwrap().as_ref(), data.as_slice());
    })
    .await;
}
