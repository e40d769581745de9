//! Referrers cases (spec "Listing Referrers").

use std::collections::BTreeMap;

use serde_json::json;

use crate::oci::manifest::media_types;
use crate::storage::StorageDriver;

use super::{
    DriverFactory, Setup, image_manifest, ok, push_blob, push_image, repo, sha256, tag_ref,
};

/// Referrers of a subject, with and without `artifact_type` filter: descriptors carry media
/// type, digest, size, artifact type (falling back to the config's media type) and
/// annotations; an unknown subject gives an empty list; other repositories' referrers and
/// other subjects' referrers are not listed; deleted referrers disappear.
pub async fn referrers_listing<F: DriverFactory>(f: &F) {
    let s = Setup::new(f).await;
    let d = &*s.d;
    let (r, other) = (repo("suite/ref"), repo("suite/other"));
    let (subject, _) = push_image(d, &r, &tag_ref("base"), 1).await;
    let (subject2, _) = push_image(d, &r, &tag_ref("base2"), 2).await;
    let empty = push_blob(d, &r, b"{}", media_types::OCI_EMPTY).await;
    let sbom_config = push_blob(
        d,
        &r,
        b"{\"sbom\":true}",
        "application/vnd.example.sbom.config",
    )
    .await;

    // 1. An artifact with artifactType and annotations.
    let sig = image_manifest(
        &empty,
        &[],
        Some(&subject),
        Some("application/vnd.example.sig"),
        Some(json!({"org.opencontainers.image.created": "2026-11-28T00:00:00Z"})),
    );
    let sig_digest = ok!(d
        .put_manifest(&r, &sha256_ref(&sig), None, sig.clone())
        .await)
    .digest;
    // 2. An image manifest without artifactType: the config's media type stands in.
    let sbom = image_manifest(&sbom_config, &[], Some(&subject), None, None);
    let out = ok!(d
        .put_manifest(&r, &tag_ref("sbom"), None, sbom.clone())
        .await);
    assert_eq!(
        out.subject.as_ref(),
        Some(&subject.digest),
        "reported subject"
    );
    let sbom_digest = out.digest;
    // 3. An index with a subject and artifactType.
    let index = bytes::Bytes::from(
        serde_json::to_vec(&json!({
            "schemaVersion": 2,
            "mediaType": media_types::OCI_INDEX,
            "artifactType": "application/vnd.example.bundle",
            "manifests": [],
            "subject": subject,
        }))
        .expect("json"),
    );
    let index_digest = ok!(d
        .put_manifest(&r, &sha256_ref(&index), None, index.clone())
        .await)
    .digest;
    // Noise: a referrer of another subject, and one in another repository.
    let noise = image_manifest(
        &empty,
        &[],
        Some(&subject2),
        Some("application/vnd.example.sig"),
        None,
    );
    ok!(d.put_manifest(&r, &sha256_ref(&noise), None, noise).await);
    let empty_other = push_blob(d, &other, b"{}", media_types::OCI_EMPTY).await;
    let foreign = image_manifest(
        &empty_other,
        &[],
        Some(&subject),
        Some("application/vnd.example.sig"),
        Some(json!({"x": "y"})),
    );
    ok!(d
        .put_manifest(&other, &sha256_ref(&foreign), None, foreign)
        .await);

    let mut all = ok!(d.referrers(&r, &subject.digest, None).await);
    all.sort_by(|a, b| a.digest.cmp(&b.digest));
    let mut expected = vec![
        (
            sig_digest.clone(),
            media_types::OCI_MANIFEST,
            sig.len(),
            "application/vnd.example.sig",
        ),
        (
            sbom_digest.clone(),
            media_types::OCI_MANIFEST,
            sbom.len(),
            "application/vnd.example.sbom.config",
        ),
        (
            index_digest.clone(),
            media_types::OCI_INDEX,
            index.len(),
            "application/vnd.example.bundle",
        ),
    ];
    expected.sort_by(|a, b| a.0.cmp(&b.0));
    assert_eq!(all.len(), 3, "referrers: {all:?}");
    for (desc, (digest, mt, size, at)) in all.iter().zip(&expected) {
        assert_eq!(&desc.digest, digest);
        assert_eq!(desc.media_type, *mt, "media type of {digest}");
        assert_eq!(desc.size, *size as u64, "size of {digest}");
        assert_eq!(
            desc.artifact_type.as_deref(),
            Some(*at),
            "artifactType of {digest}"
        );
    }
    let sig_desc = all
        .iter()
        .find(|x| x.digest == sig_digest)
        .expect("sig listed");
    let mut ann = BTreeMap::new();
    ann.insert(
        "org.opencontainers.image.created".to_owned(),
        "2026-11-28T00:00:00Z".to_owned(),
    );
    assert_eq!(
        sig_desc.annotations.as_ref(),
        Some(&ann),
        "annotations carried over"
    );

    // Filtered.
    let sigs = ok!(d
        .referrers(&r, &subject.digest, Some("application/vnd.example.sig"))
        .await);
    assert_eq!(sigs.len(), 1, "{sigs:?}");
    assert_eq!(sigs[0].digest, sig_digest);
    let sboms = ok!(d
        .referrers(
            &r,
            &subject.digest,
            Some("application/vnd.example.sbom.config")
        )
        .await);
    assert_eq!(sboms.len(), 1);
    assert_eq!(sboms[0].digest, sbom_digest);
    assert!(
        ok!(d
            .referrers(&r, &subject.digest, Some("application/none"))
            .await)
        .is_empty()
    );

    // Unknown subjects, unknown repositories: empty, never an error.
    assert!(ok!(d.referrers(&r, &sha256(b"unknown"), None).await).is_empty());
    assert!(
        ok!(d
            .referrers(&repo("suite/none"), &subject.digest, None)
            .await)
        .is_empty()
    );
    // Another repository lists only its own.
    let theirs = ok!(d.referrers(&other, &subject.digest, None).await);
    assert_eq!(theirs.len(), 1);

    // Deleting a referrer removes it from the list.
    ok!(d.delete_manifest(&r, &sbom_digest).await);
    let left = ok!(d.referrers(&r, &subject.digest, None).await);
    assert_eq!(left.len(), 2);
    assert!(left.iter().all(|x| x.digest != sbom_digest));
    // Deleting the subject leaves the referrers listed (they are not garbage collected).
    ok!(d.delete_manifest(&r, &subject.digest).await);
    assert_eq!(ok!(d.referrers(&r, &subject.digest, None).await).len(), 2);
}

fn sha256_ref(bytes: &[u8]) -> crate::oci::Reference {
    crate::oci::Reference::Digest(sha256(bytes))
}
