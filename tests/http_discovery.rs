//! Spec workflow "Content discovery" (distribution-spec v1.1, "Listing Tags", "Listing
//! Referrers") over loopback HTTP, every driver.

mod common;

use common::*;
use reqwest::StatusCode;
use serde_json::Value;

async fn tags(s: &Server, path: &str) -> (Option<String>, Vec<String>) {
    let resp = s.client.get(s.url(path)).send().await.unwrap();
    assert_eq!(resp.status(), StatusCode::OK, "{path}");
    assert_eq!(header(&resp, "content-type"), "application/json");
    let link = resp
        .headers()
        .get("link")
        .map(|v| v.to_str().unwrap().to_owned());
    let v: Value = serde_json::from_slice(&resp.bytes().await.unwrap()).unwrap();
    let list = v["tags"]
        .as_array()
        .unwrap_or_else(|| panic!("no tags array: {v}"))
        .iter()
        .map(|t| t.as_str().unwrap().to_owned())
        .collect();
    (link, list)
}

/// The URL inside `<...>; rel="next"`.
fn next_url(link: &str) -> String {
    assert!(link.ends_with("rel=\"next\""), "{link}");
    link[link.find('<').unwrap() + 1..link.find('>').unwrap()].to_owned()
}

#[tokio::test]
async fn tag_listing_and_pagination() {
    each_driver("tag_listing_and_pagination", |s| async move {
        let img = s.push_image("disc/tags", "v2", 1).await;
        for t in ["latest", "A", "a", "v10", "v1", "_x", "1.0"] {
            let resp = s
                .put_manifest("disc/tags", t, OCI_MANIFEST, &img.manifest)
                .await;
            assert_eq!(resp.status(), StatusCode::CREATED);
        }
        // "the tags MUST be in lexical ... or ASCIIbetical order".
        let mut all = vec!["latest", "A", "a", "v10", "v1", "_x", "1.0", "v2"];
        all.sort();
        let (link, list) = tags(&s, "/v2/disc/tags/tags/list").await;
        assert_eq!(list, all);
        assert_eq!(link, None);
        // name is echoed.
        let v: Value = serde_json::from_slice(
            &s.client
                .get(s.url("/v2/disc/tags/tags/list"))
                .send()
                .await
                .unwrap()
                .bytes()
                .await
                .unwrap(),
        )
        .unwrap();
        assert_eq!(v["name"], "disc/tags");

        // n=3 pages, following the Link header until it disappears.
        let mut path = "/v2/disc/tags/tags/list?n=3".to_owned();
        let mut seen = Vec::new();
        loop {
            let (link, page) = tags(&s, &path).await;
            assert!(page.len() <= 3);
            seen.extend(page.clone());
            match link {
                Some(l) => {
                    assert_eq!(page.len(), 3, "a page with a Link is full");
                    path = next_url(&l);
                    assert_eq!(
                        path,
                        format!("/v2/disc/tags/tags/list?last={}&n=3", page[2])
                    );
                }
                None => break,
            }
        }
        assert_eq!(seen, all);

        // last without n: everything after `last`.
        let (link, list) = tags(&s, "/v2/disc/tags/tags/list?last=latest").await;
        assert_eq!(link, None);
        let after: Vec<&str> = all.iter().copied().filter(|t| *t > "latest").collect();
        assert_eq!(list, after);
        // n and last.
        let (_, list) = tags(&s, "/v2/disc/tags/tags/list?n=2&last=a").await;
        let after: Vec<&str> = all.iter().copied().filter(|t| *t > "a").take(2).collect();
        assert_eq!(list, after);
        // n=0: empty list, no Link.
        let (link, list) = tags(&s, "/v2/disc/tags/tags/list?n=0").await;
        assert!(list.is_empty());
        assert_eq!(link, None);
        // n larger than the count: everything, no Link.
        let (link, list) = tags(&s, "/v2/disc/tags/tags/list?n=100").await;
        assert_eq!(list, all);
        assert_eq!(link, None);
        // Unknown repository: 404 NAME_UNKNOWN.
        let resp = s
            .client
            .get(s.url("/v2/no/such/repo/tags/list"))
            .send()
            .await
            .unwrap();
        assert_error(resp, 404, "NAME_UNKNOWN").await;
        // A malformed n: 400 in the error envelope.
        let resp = s
            .client
            .get(s.url("/v2/disc/tags/tags/list?n=many"))
            .send()
            .await
            .unwrap();
        assert_error(resp, 400, "UNSUPPORTED").await;
    })
    .await;
}

#[tokio::test]
async fn repository_without_tags_lists_empty() {
    each_driver("repository_without_tags_lists_empty", |s| async move {
        // A repository that exists (it has a blob) but no tag: 200 with an empty list.
        s.push_blob("disc/untagged", b"x").await;
        let (link, list) = tags(&s, "/v2/disc/untagged/tags/list").await;
        assert!(list.is_empty());
        assert_eq!(link, None);
    })
    .await;
}

fn artifact(config_digest: &str, artifact_type: &str, subject: &str, note: &str) -> String {
    format!(
        "{{\"schemaVersion\":2,\"mediaType\":\"{OCI_MANIFEST}\",\"artifactType\":\"{artifact_type}\",\"config\":{{\"mediaType\":\"application/vnd.oci.empty.v1+json\",\"digest\":\"{config_digest}\",\"size\":2}},\"layers\":[],\"subject\":{{\"mediaType\":\"{OCI_MANIFEST}\",\"digest\":\"{subject}\",\"size\":100}},\"annotations\":{{\"note\":\"{note}\"}}}}"
    )
}

async fn referrers(s: &Server, path: &str) -> (reqwest::header::HeaderMap, Value) {
    let resp = s.client.get(s.url(path)).send().await.unwrap();
    assert_eq!(resp.status(), StatusCode::OK, "{path}");
    assert_eq!(header(&resp, "content-type"), OCI_INDEX);
    let h = resp.headers().clone();
    let v: Value = serde_json::from_slice(&resp.bytes().await.unwrap()).unwrap();
    assert_eq!(v["schemaVersion"], 2);
    assert_eq!(v["mediaType"], OCI_INDEX);
    (h, v)
}

#[tokio::test]
async fn referrers_with_and_without_filter() {
    each_driver("referrers_with_and_without_filter", |s| async move {
        let empty = s.push_blob("disc/refs", b"{}").await;
        // A referrer pushed before its subject exists is accepted (spec "Push").
        let subject = sha256(b"subject not pushed yet");
        let sbom = artifact(&empty, "application/vnd.example.sbom.v1", &subject, "one");
        let resp = s
            .put_manifest(
                "disc/refs",
                &sha256(sbom.as_bytes()),
                OCI_MANIFEST,
                sbom.as_bytes(),
            )
            .await;
        assert_eq!(resp.status(), StatusCode::CREATED);
        assert_eq!(header(&resp, "oci-subject"), subject);
        let sig = artifact(&empty, "application/vnd.example.sig.v1", &subject, "two");
        let resp = s
            .put_manifest(
                "disc/refs",
                &sha256(sig.as_bytes()),
                OCI_MANIFEST,
                sig.as_bytes(),
            )
            .await;
        assert_eq!(resp.status(), StatusCode::CREATED);

        let (h, v) = referrers(&s, &format!("/v2/disc/refs/referrers/{subject}")).await;
        assert!(h.get("oci-filters-applied").is_none());
        let mut got: Vec<(String, String, String, u64)> = v["manifests"]
            .as_array()
            .unwrap()
            .iter()
            .map(|d| {
                (
                    d["digest"].as_str().unwrap().to_owned(),
                    d["artifactType"].as_str().unwrap().to_owned(),
                    d["annotations"]["note"].as_str().unwrap().to_owned(),
                    d["size"].as_u64().unwrap(),
                )
            })
            .collect();
        got.sort();
        let mut want = vec![
            (
                sha256(sbom.as_bytes()),
                "application/vnd.example.sbom.v1".to_owned(),
                "one".to_owned(),
                sbom.len() as u64,
            ),
            (
                sha256(sig.as_bytes()),
                "application/vnd.example.sig.v1".to_owned(),
                "two".to_owned(),
                sig.len() as u64,
            ),
        ];
        want.sort();
        assert_eq!(got, want);
        for d in v["manifests"].as_array().unwrap() {
            assert_eq!(d["mediaType"], OCI_MANIFEST);
        }

        // Filtered: only the SBOM, and OCI-Filters-Applied: artifactType.
        let (h, v) = referrers(
            &s,
            &format!(
                "/v2/disc/refs/referrers/{subject}?artifactType=application/vnd.example.sbom.v1"
            ),
        )
        .await;
        assert_eq!(h.get("oci-filters-applied").unwrap(), "artifactType");
        let m = v["manifests"].as_array().unwrap();
        assert_eq!(m.len(), 1);
        assert_eq!(m[0]["digest"], sha256(sbom.as_bytes()));

        // A filter matching nothing, and a subject without referrers: empty index, not 404.
        let (_, v) = referrers(
            &s,
            &format!("/v2/disc/refs/referrers/{subject}?artifactType=application/x-none"),
        )
        .await;
        assert_eq!(v["manifests"].as_array().unwrap().len(), 0);
        let (_, v) = referrers(
            &s,
            &format!("/v2/disc/refs/referrers/{}", sha256(b"nothing refers")),
        )
        .await;
        assert_eq!(v["manifests"].as_array().unwrap().len(), 0);
        let (_, v) = referrers(
            &s,
            &format!("/v2/never/pushed/referrers/{}", sha256(b"nothing refers")),
        )
        .await;
        assert_eq!(v["manifests"].as_array().unwrap().len(), 0);

        // An invalid digest: 400.
        let resp = s
            .client
            .get(s.url("/v2/disc/refs/referrers/sha256:nothex"))
            .send()
            .await
            .unwrap();
        assert_error(resp, 400, "DIGEST_INVALID").await;

        // Deleting a referrer removes it from the list.
        let resp = s
            .client
            .delete(s.url(&format!(
                "/v2/disc/refs/manifests/{}",
                sha256(sig.as_bytes())
            )))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), StatusCode::ACCEPTED);
        let (_, v) = referrers(&s, &format!("/v2/disc/refs/referrers/{subject}")).await;
        let m = v["manifests"].as_array().unwrap();
        assert_eq!(m.len(), 1);
        assert_eq!(m[0]["digest"], sha256(sbom.as_bytes()));
    })
    .await;
}

#[tokio::test]
async fn image_manifest_referrer_uses_config_media_type() {
    each_driver("image_manifest_referrer_uses_config_type", |s| async move {
        // Spec: "If the artifactType is empty or missing in the image manifest, the value of
        // artifactType MUST be set to the config descriptor mediaType value."
        let img = s.push_image("disc/cfg", "base", 3).await;
        // The config descriptor's size must be the stored config's (push_image's, seed 3).
        let config_size = r#"{"architecture":"amd64","os":"linux","seed":3}"#.len();
        let m = image_manifest(
            &img.config_digest,
            config_size,
            &[],
            Some(&format!(
                "\"subject\": {{\"mediaType\":\"{OCI_MANIFEST}\",\"digest\":\"{}\",\"size\":{}}}",
                img.digest,
                img.manifest.len()
            )),
        );
        let resp = s
            .put_manifest("disc/cfg", "ref", OCI_MANIFEST, m.as_bytes())
            .await;
        assert_eq!(resp.status(), StatusCode::CREATED);
        assert_eq!(header(&resp, "oci-subject"), img.digest);
        let (_, v) = referrers(&s, &format!("/v2/disc/cfg/referrers/{}", img.digest)).await;
        let list = v["manifests"].as_array().unwrap();
        assert_eq!(list.len(), 1);
        assert_eq!(
            list[0]["artifactType"],
            "application/vnd.oci.image.config.v1+json"
        );
    })
    .await;
}
