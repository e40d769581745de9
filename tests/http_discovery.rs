//! Spec workflow "Content discovery" (distribution-spec v1.1, "Listing Tags", "Listing
//! Referrers"), and the repository listing `GET /v2/_catalog`, over loopback HTTP, every
//! driver.

mod common;

use common::*;
use reqwest::{Method, StatusCode};

each_driver_test!(tag_listing_and_pagination, |s| async move {
    let repo = "disc/tags";
    let img = s.push_image(repo, "v2", 1).await;
    for t in ["latest", "A", "a", "v10", "v1", "_x", "1.0"] {
        let resp = s.put_manifest(repo, t, OCI_MANIFEST, &img.manifest).await;
        assert_eq!(resp.status(), StatusCode::CREATED);
    }
    // "the tags MUST be in lexical ... or ASCIIbetical order".
    let mut all = vec!["latest", "A", "a", "v10", "v1", "_x", "1.0", "v2"];
    all.sort();
    let page = s.tag_page(repo, None, None).await;
    assert_eq!(page.tags, all);
    assert_eq!(page.next, None);
    // name is echoed.
    assert_eq!(page.name, repo);

    // n=3 pages, following the Link header until it disappears.
    let mut page = s.tag_page(repo, Some(3), None).await;
    let mut seen = Vec::new();
    loop {
        assert!(page.tags.len() <= 3);
        seen.extend(page.tags.clone());
        let Some(next) = page.next else { break };
        assert_eq!(page.tags.len(), 3, "a page with a Link is full");
        assert_eq!(
            next,
            format!("/v2/{repo}/tags/list?last={}&n=3", page.tags[2])
        );
        page = TagPage::read(s.get(&next).await).await;
    }
    assert_eq!(seen, all);

    // last without n: everything after `last`.
    let page = s.tag_page(repo, None, Some("latest")).await;
    assert_eq!(page.next, None);
    let after: Vec<&str> = all.iter().copied().filter(|t| *t > "latest").collect();
    assert_eq!(page.tags, after);
    // n and last.
    let page = s.tag_page(repo, Some(2), Some("a")).await;
    let after: Vec<&str> = all.iter().copied().filter(|t| *t > "a").take(2).collect();
    assert_eq!(page.tags, after);
    // n=0: empty list, no Link.
    let page = s.tag_page(repo, Some(0), None).await;
    assert!(page.tags.is_empty());
    assert_eq!(page.next, None);
    // n larger than the count: everything, no Link.
    let page = s.tag_page(repo, Some(100), None).await;
    assert_eq!(page.tags, all);
    assert_eq!(page.next, None);
    // Unknown repository: 404 NAME_UNKNOWN.
    let resp = s.list_tags("no/such/repo", None, None).await;
    assert_error(resp, 404, "NAME_UNKNOWN").await;
    // A malformed n: 400 in the error envelope.
    let resp = s.get(&format!("/v2/{repo}/tags/list?n=many")).await;
    assert_error(resp, 400, "UNSUPPORTED").await;
});

each_driver_test!(repository_without_tags_lists_empty, |s| async move {
    // A repository that exists (it has a blob) but no tag: 200 with an empty list.
    s.push_blob("disc/untagged", b"x").await;
    let page = s.tag_page("disc/untagged", None, None).await;
    assert!(page.tags.is_empty());
    assert_eq!(page.next, None);
});

fn artifact(config_digest: &str, artifact_type: &str, subject: &str, note: &str) -> String {
    format!(
        "{{\"schemaVersion\":2,\"mediaType\":\"{OCI_MANIFEST}\",\"artifactType\":\"{artifact_type}\",\"config\":{{\"mediaType\":\"application/vnd.oci.empty.v1+json\",\"digest\":\"{config_digest}\",\"size\":2}},\"layers\":[],\"subject\":{{\"mediaType\":\"{OCI_MANIFEST}\",\"digest\":\"{subject}\",\"size\":100}},\"annotations\":{{\"note\":\"{note}\"}}}}"
    )
}

/// A referrer as listed: (digest, artifactType, annotation `note`, size).
type Listed = (String, String, String, u64);

/// Pushes `manifest` by its digest, asserting 201 and `OCI-Subject: subject`; returns how it
/// will be listed among the referrers of `subject`.
async fn push_referrer(
    s: &Server,
    manifest: &str,
    subject: &str,
    kind: &str,
    note: &str,
) -> Listed {
    let digest = sha256(manifest.as_bytes());
    let resp = s
        .put_manifest("disc/refs", &digest, OCI_MANIFEST, manifest.as_bytes())
        .await;
    assert_eq!(resp.status(), StatusCode::CREATED);
    assert_eq!(header(&resp, "oci-subject"), subject);
    let size = manifest.len() as u64;
    (digest, kind.to_owned(), note.to_owned(), size)
}

each_driver_test!(referrers_with_and_without_filter, |s| async move {
    const SBOM: &str = "application/vnd.example.sbom.v1";
    const SIG: &str = "application/vnd.example.sig.v1";
    let empty = s.push_blob("disc/refs", b"{}").await;
    // A referrer pushed before its subject exists is accepted (spec "Push").
    let subject = sha256(b"subject not pushed yet");
    let sbom = artifact(&empty, SBOM, &subject, "one");
    let sbom = push_referrer(&s, &sbom, &subject, SBOM, "one").await;
    let sig = artifact(&empty, SIG, &subject, "two");
    let sig = push_referrer(&s, &sig, &subject, SIG, "two").await;

    let refs = s.referrers("disc/refs", &subject, None).await;
    assert!(refs.filters_applied.is_none());
    let mut got: Vec<Listed> = refs
        .manifests
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
    let mut want = vec![sbom.clone(), sig.clone()];
    want.sort();
    assert_eq!(got, want);
    for d in &refs.manifests {
        assert_eq!(d["mediaType"], OCI_MANIFEST);
    }

    // Filtered: only the SBOM, and OCI-Filters-Applied: artifactType.
    let refs = s.referrers("disc/refs", &subject, Some(SBOM)).await;
    assert_eq!(refs.filters_applied.as_deref(), Some("artifactType"));
    assert_eq!(refs.digests(), [sbom.0.as_str()]);

    // A filter matching nothing, and a subject without referrers: empty index, not 404.
    let refs = s
        .referrers("disc/refs", &subject, Some("application/x-none"))
        .await;
    assert!(refs.manifests.is_empty());
    let unreferenced = sha256(b"nothing refers");
    for repo in ["disc/refs", "never/pushed"] {
        let refs = s.referrers(repo, &unreferenced, None).await;
        assert!(refs.manifests.is_empty(), "{repo}");
    }

    // An invalid digest: 400.
    let resp = s.get_referrers("disc/refs", "sha256:nothex", None).await;
    assert_error(resp, 400, "DIGEST_INVALID").await;

    // Deleting a referrer removes it from the list.
    let resp = s.delete_manifest("disc/refs", &sig.0).await;
    assert_eq!(resp.status(), StatusCode::ACCEPTED);
    let refs = s.referrers("disc/refs", &subject, None).await;
    assert_eq!(refs.digests(), [sbom.0.as_str()]);
});

each_driver_test!(
    image_manifest_referrer_uses_config_media_type,
    |s| async move {
        // Spec: "If the artifactType is empty or missing in the image manifest, the value of
        // artifactType MUST be set to the config descriptor mediaType value."
        let img = s.push_image("disc/cfg", "base", 3).await;
        let about_img = subject(&img.digest, img.manifest.len());
        let m = image_manifest(&img.config_digest, img.config_size, &[], Some(&about_img));
        let resp = s
            .put_manifest("disc/cfg", "ref", OCI_MANIFEST, m.as_bytes())
            .await;
        assert_eq!(resp.status(), StatusCode::CREATED);
        assert_eq!(header(&resp, "oci-subject"), img.digest);
        let refs = s.referrers("disc/cfg", &img.digest, None).await;
        assert_eq!(refs.manifests.len(), 1);
        assert_eq!(refs.manifests[0]["artifactType"], OCI_CONFIG);
    }
);

each_driver_test!(catalog_listing_and_pagination, |s| async move {
    for repo in ["cat/b", "cat/a", "cat-x", "cat/a/nested"] {
        s.push_blob(repo, repo.as_bytes()).await;
    }
    let all = ["cat-x", "cat/a", "cat/a/nested", "cat/b"];
    let page = s.catalog_page(None, None).await;
    assert_eq!(page.repositories, all);
    assert_eq!(page.next, None);
    // HEAD answers like GET, without the body (RFC 9110 §9.3.2).
    let head = s.send(Method::HEAD, "/v2/_catalog?n=1").await;
    assert_eq!(head.status(), StatusCode::OK);
    assert_eq!(
        header(&head, "link"),
        "</v2/_catalog?last=cat-x&n=1>; rel=\"next\""
    );
    assert!(head.bytes().await.unwrap().is_empty());
    // n=1 pages, following the Link header until it disappears.
    let mut page = s.catalog_page(Some(1), None).await;
    let mut seen = Vec::new();
    loop {
        seen.extend(page.repositories.clone());
        let Some(next) = page.next else { break };
        assert_eq!(
            next,
            format!("/v2/_catalog?last={}&n=1", page.repositories[0])
        );
        page = CatalogPage::read(s.get(&next).await).await;
    }
    assert_eq!(seen, all);
    let page = s.catalog_page(Some(2), Some("cat/a")).await;
    assert_eq!(page.repositories, ["cat/a/nested", "cat/b"]);
    assert!(s.catalog_page(Some(0), None).await.repositories.is_empty());
    // A malformed `n` or `last`.
    assert_error(
        s.list_catalog(None, Some("NOT/valid")).await,
        400,
        "NAME_INVALID",
    )
    .await;
    assert_error(s.get("/v2/_catalog?n=many").await, 400, "UNSUPPORTED").await;
});
