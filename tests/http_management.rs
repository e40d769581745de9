//! Spec workflow "Content management" (distribution-spec v1.1, "Deleting tags", "Deleting
//! Manifests", "Deleting Blobs") over loopback HTTP, every driver.

mod common;

use common::*;
use reqwest::StatusCode;

each_driver_test!(delete_tag_keeps_manifest, |s| async move {
    let img = s.push_image("mgmt/tag", "v1", 1).await;
    let resp = s
        .put_manifest("mgmt/tag", "v2", OCI_MANIFEST, &img.manifest)
        .await;
    assert_eq!(resp.status(), StatusCode::CREATED);
    // "Upon success, the registry MUST respond with a 202 Accepted code."
    let resp = s.delete_manifest("mgmt/tag", "v1").await;
    assert_eq!(resp.status(), StatusCode::ACCEPTED);
    // "Once deleted, a GET to /v2/<name>/manifests/<tag> will return a 404."
    let resp = s.get_manifest("mgmt/tag", "v1").await;
    assert_error(resp, 404, "MANIFEST_UNKNOWN").await;
    // The manifest and the other tag stay.
    for reference in [img.digest.as_str(), "v2"] {
        let resp = s.get_manifest("mgmt/tag", reference).await;
        assert_eq!(resp.status(), StatusCode::OK, "{reference}");
    }
    // Deleting it again: 404.
    let resp = s.delete_manifest("mgmt/tag", "v1").await;
    assert_error(resp, 404, "MANIFEST_UNKNOWN").await;
});

each_driver_test!(delete_manifest_by_digest, |s| async move {
    let img = s.push_image("mgmt/man", "v1", 2).await;
    let resp = s.delete_manifest("mgmt/man", &img.digest).await;
    assert_eq!(resp.status(), StatusCode::ACCEPTED);
    // "a GET to /v2/<name>/manifests/<digest> and any tag pointing to that digest will
    // return a 404".
    for reference in [img.digest.as_str(), "v1"] {
        let resp = s.get_manifest("mgmt/man", reference).await;
        assert_error(resp, 404, "MANIFEST_UNKNOWN").await;
    }
    let resp = s.delete_manifest("mgmt/man", &img.digest).await;
    assert_error(resp, 404, "MANIFEST_UNKNOWN").await;
    // Blobs stay until deleted.
    let resp = s.head_blob("mgmt/man", &img.layer_digest).await;
    assert_eq!(resp.status(), StatusCode::OK);
});

each_driver_test!(delete_blob, |s| async move {
    let data = payload(1234, 3);
    let digest = s.push_blob("mgmt/blob", &data).await;
    s.push_blob("mgmt/other", &data).await;
    let resp = s.delete_blob("mgmt/blob", &digest).await;
    assert_eq!(resp.status(), StatusCode::ACCEPTED);
    assert_error(s.get_blob("mgmt/blob", &digest).await, 404, "BLOB_UNKNOWN").await;
    // "If the blob is not found, a 404 Not Found code MUST be returned."
    assert_error(
        s.delete_blob("mgmt/blob", &digest).await,
        404,
        "BLOB_UNKNOWN",
    )
    .await;
    // Another repository linking the same content keeps it.
    assert_eq!(s.blob_content("mgmt/other", &digest).await, Some(data));
});
