//! Manifest requests (distribution-spec v1.1, "Pulling manifests", "Pushing Manifests",
//! "Deleting Manifests"): `GET`, `HEAD`, `PUT` and `DELETE /v2/<name>/manifests/<reference>`.

use reqwest::{Method, Response, StatusCode};

use super::answers::{body, header};
use super::client::{Fetch, Registry};
use super::content::{OCI_MANIFEST, image_manifest, payload, sha256};

/// What [`Registry::push_image`] pushed.
pub struct Image {
    /// Manifest bytes.
    pub manifest: Vec<u8>,
    /// Manifest digest.
    pub digest: String,
    /// Layer bytes.
    pub layer: Vec<u8>,
    /// Layer digest.
    pub layer_digest: String,
    /// Config digest.
    pub config_digest: String,
    /// Config length in bytes (what a descriptor of it must state).
    pub config_size: usize,
}

impl Registry {
    fn manifest_path(repo: &str, reference: &str) -> String {
        format!("/v2/{repo}/manifests/{reference}")
    }

    /// end-3: `GET /v2/<name>/manifests/<reference>`.
    pub async fn get_manifest(&self, repo: &str, reference: &str) -> Response {
        self.get(&Self::manifest_path(repo, reference)).await
    }

    /// end-3 with an `Accept` header.
    pub async fn get_manifest_accepting(
        &self,
        repo: &str,
        reference: &str,
        accept: &str,
    ) -> Response {
        self.get_with(&Self::manifest_path(repo, reference), "accept", accept)
            .await
    }

    /// end-3: `HEAD /v2/<name>/manifests/<reference>`.
    pub async fn head_manifest(&self, repo: &str, reference: &str) -> Response {
        self.send(Method::HEAD, &Self::manifest_path(repo, reference))
            .await
    }

    /// end-9: `DELETE /v2/<name>/manifests/<reference>`.
    pub async fn delete_manifest(&self, repo: &str, reference: &str) -> Response {
        self.send(Method::DELETE, &Self::manifest_path(repo, reference))
            .await
    }

    /// end-7: `PUT /v2/<name>/manifests/<reference>` with `Content-Type: media_type`.
    pub async fn put_manifest(
        &self,
        repo: &str,
        reference: &str,
        media_type: &str,
        body: &[u8],
    ) -> Response {
        self.put_manifest_tagged(repo, reference, &[], media_type, body)
            .await
    }

    /// end-7 by digest with `?tag=` parameters (each tag is applied with the push).
    pub async fn put_manifest_tagged(
        &self,
        repo: &str,
        reference: &str,
        tags: &[&str],
        media_type: &str,
        body: &[u8],
    ) -> Response {
        let query: Vec<String> = tags.iter().map(|t| format!("tag={t}")).collect();
        let mut path = Self::manifest_path(repo, reference);
        if !query.is_empty() {
            path = format!("{path}?{}", query.join("&"));
        }
        self.request(Method::PUT, &path)
            .header("content-type", media_type)
            .body(body.to_vec())
            .fetch()
            .await
    }

    /// Pushes `manifest` under `tag` (asserting the 201) and pulls it back, asserting the
    /// registry serves it byte for byte with the `Content-Type` it was pushed with.
    pub async fn assert_manifest_round_trip(
        &self,
        repo: &str,
        tag: &str,
        media_type: &str,
        manifest: &[u8],
    ) {
        let resp = self.put_manifest(repo, tag, media_type, manifest).await;
        assert_eq!(resp.status(), StatusCode::CREATED, "{resp:?}");
        let resp = self.get_manifest(repo, tag).await;
        assert_eq!(header(&resp, "content-type"), media_type);
        assert_eq!(body(resp).await, manifest);
    }

    /// Pushes a small image (config + one layer) and its manifest under `tag`.
    pub async fn push_image(&self, repo: &str, tag: &str, seed: u8) -> Image {
        let config = format!("{{\"architecture\":\"amd64\",\"os\":\"linux\",\"seed\":{seed}}}");
        let layer = payload(3000 + usize::from(seed), seed);
        let config_digest = self.push_blob(repo, config.as_bytes()).await;
        let layer_digest = self.push_blob(repo, &layer).await;
        let manifest = image_manifest(
            &config_digest,
            config.len(),
            &[(layer_digest.as_str(), layer.len())],
            None,
        );
        let resp = self
            .put_manifest(repo, tag, OCI_MANIFEST, manifest.as_bytes())
            .await;
        assert_eq!(resp.status(), StatusCode::CREATED, "{resp:?}");
        Image {
            digest: sha256(manifest.as_bytes()),
            manifest: manifest.into_bytes(),
            layer,
            layer_digest,
            config_digest,
            config_size: config.len(),
        }
    }
}
