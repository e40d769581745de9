//! Manifest cases: byte-exact storage with media type, validation, references, deletion.

use bytes::Bytes;
use serde_json::json;

use crate::error::Error;
use crate::oci::manifest::media_types;
use crate::oci::{Digest, Reference};
use crate::storage::StorageDriver;

use super::{
    CONFIG_TYPE, DriverFactory, LAYER_TYPE, Setup, assert_err, descriptor, image_manifest, ok,
    push_blob, push_image, repo, sha256, sha512, tag, tag_ref,
};

fn dref(d: &Digest) -> Reference {
    Reference::Digest(d.clone())
}

/// A manifest pushed by tag is served byte for byte with its media type, by tag and by
/// digest; `stat_manifest` and `resolve_tag` agree.
pub async fn manifest_put_get<F: DriverFactory>(f: &F) {
    let s = Setup::new(f).await;
    let d = &*s.d;
    let r = repo("suite/m");
    let (desc, bytes) = push_image(d, &r, &tag_ref("latest"), 1).await;
    assert_eq!(desc.digest, sha256(&bytes));
    for reference in [tag_ref("latest"), dref(&desc.digest)] {
        let m = ok!(d.get_manifest(&r, &reference).await);
        assert_eq!(m.bytes, bytes, "bytes by {reference}");
        assert_eq!(m.info.digest, desc.digest);
        assert_eq!(m.info.size, bytes.len() as u64);
        assert_eq!(m.info.media_type, media_types::OCI_MANIFEST);
        let info = ok!(d.stat_manifest(&r, &reference).await);
        assert_eq!(info, m.info, "stat_manifest by {reference}");
    }
    assert_eq!(ok!(d.resolve_tag(&r, &tag("latest")).await), desc.digest);
    // Pushing the same bytes again (by digest, then another tag) is idempotent.
    let again = ok!(d
        .put_manifest(
            &r,
            &dref(&desc.digest),
            Some(media_types::OCI_MANIFEST),
            bytes.clone()
        )
        .await);
    assert_eq!(again.digest, desc.digest);
    assert_eq!(again.subject, None);
    ok!(d
        .put_manifest(&r, &tag_ref("other"), None, bytes.clone())
        .await);
    assert_eq!(ok!(d.resolve_tag(&r, &tag("other")).await), desc.digest);
    assert_eq!(
        ok!(d.get_manifest(&r, &tag_ref("other")).await).bytes,
        bytes
    );
}

/// A manifest pushed by digest is stored without creating a tag; the repository exists.
pub async fn manifest_put_by_digest<F: DriverFactory>(f: &F) {
    let s = Setup::new(f).await;
    let d = &*s.d;
    let r = repo("suite/m");
    let config = push_blob(d, &r, b"{}", CONFIG_TYPE).await;
    let bytes = image_manifest(&config, &[], None, None, None);
    let digest = sha256(&bytes);
    let out = ok!(d
        .put_manifest(&r, &dref(&digest), None, bytes.clone())
        .await);
    assert_eq!(out.digest, digest);
    assert_eq!(ok!(d.get_manifest(&r, &dref(&digest)).await).bytes, bytes);
    let tags = ok!(d.get_tags(&r, None, None).await);
    assert!(tags.tags.is_empty(), "no tag expected, got {:?}", tags.tags);
    assert!(!tags.has_more);
}

/// Media types are stored as pushed: Docker schema 2, OCI index, an artifact manifest, and a
/// manifest without `mediaType` in its body (taken from the Content-Type). The Content-Type
/// parameters are not part of the stored type.
pub async fn manifest_media_types<F: DriverFactory>(f: &F) {
    let s = Setup::new(f).await;
    let d = &*s.d;
    let r = repo("suite/m");
    let config = push_blob(
        d,
        &r,
        b"{\"docker\":1}",
        "application/vnd.docker.container.image.v1+json",
    )
    .await;
    let layer = push_blob(
        d,
        &r,
        b"layer",
        "application/vnd.docker.image.rootfs.diff.tar.gzip",
    )
    .await;
    let docker = Bytes::from(
        serde_json::to_vec(&json!({
            "schemaVersion": 2,
            "mediaType": media_types::DOCKER_MANIFEST,
            "config": config,
            "layers": [layer],
        }))
        .expect("json"),
    );
    ok!(d
        .put_manifest(
            &r,
            &tag_ref("docker"),
            Some(media_types::DOCKER_MANIFEST),
            docker.clone()
        )
        .await);
    let m = ok!(d.get_manifest(&r, &tag_ref("docker")).await);
    assert_eq!(m.info.media_type, media_types::DOCKER_MANIFEST);
    assert_eq!(m.bytes, docker);

    // No mediaType in the body: the Content-Type decides, without its parameters.
    let bare = Bytes::from(format!(
        "{{\"schemaVersion\":2,\"config\":{},\"layers\":[]}}",
        serde_json::to_string(&config).expect("json")
    ));
    ok!(d
        .put_manifest(
            &r,
            &tag_ref("bare"),
            Some("application/vnd.oci.image.manifest.v1+json; charset=utf-8"),
            bare.clone()
        )
        .await);
    let m = ok!(d.get_manifest(&r, &tag_ref("bare")).await);
    assert_eq!(m.info.media_type, media_types::OCI_MANIFEST);
    assert_eq!(m.bytes, bare);

    let index = Bytes::from(
        serde_json::to_vec_pretty(&json!({
            "schemaVersion": 2,
            "mediaType": media_types::OCI_INDEX,
            "manifests": [descriptor(media_types::DOCKER_MANIFEST, sha256(&docker), docker.len())],
            "annotations": {"org.example": "é ☃"},
        }))
        .expect("json"),
    );
    ok!(d
        .put_manifest(
            &r,
            &tag_ref("index"),
            Some(media_types::OCI_INDEX),
            index.clone()
        )
        .await);
    let m = ok!(d.get_manifest(&r, &tag_ref("index")).await);
    assert_eq!(m.info.media_type, media_types::OCI_INDEX);
    assert_eq!(m.bytes, index);
    let info = ok!(d.stat_manifest(&r, &dref(&sha256(&index))).await);
    assert_eq!(info.media_type, media_types::OCI_INDEX);
}

/// A manifest pushed by a sha512 digest is stored and served under that digest.
pub async fn manifest_sha512<F: DriverFactory>(f: &F) {
    let s = Setup::new(f).await;
    let d = &*s.d;
    let r = repo("suite/m");
    let config = push_blob(d, &r, b"{\"a\":512}", CONFIG_TYPE).await;
    let bytes = image_manifest(&config, &[], None, None, None);
    let digest = sha512(&bytes);
    let out = ok!(d
        .put_manifest(&r, &dref(&digest), None, bytes.clone())
        .await);
    assert_eq!(out.digest, digest);
    let m = ok!(d.get_manifest(&r, &dref(&digest)).await);
    assert_eq!(m.bytes, bytes);
    assert_eq!(m.info.digest, digest);
    ok!(d.tag_manifest(&r, &tag("t512"), &digest).await);
    assert_eq!(ok!(d.resolve_tag(&r, &tag("t512")).await), digest);
    assert_eq!(ok!(d.get_manifest(&r, &tag_ref("t512")).await).bytes, bytes);
    assert_err!(
        d.get_manifest(&r, &dref(&sha256(&bytes))).await,
        Error::ManifestUnknown(_)
    );
    // A referrer of the sha512 manifest, itself pushed by a sha512 digest.
    let subject = descriptor(media_types::OCI_MANIFEST, digest.clone(), bytes.len());
    let sig = image_manifest(
        &config,
        &[],
        Some(&subject),
        Some("application/x-sig"),
        None,
    );
    let sig_digest = sha512(&sig);
    let out = ok!(d.put_manifest(&r, &dref(&sig_digest), None, sig).await);
    assert_eq!(out.subject.as_ref(), Some(&digest));
    let referrers = ok!(d.referrers(&r, &digest, None).await);
    assert_eq!(referrers.len(), 1);
    assert_eq!(referrers[0].digest, sig_digest);
    ok!(d.delete_manifest(&r, &sig_digest).await);
    assert!(ok!(d.referrers(&r, &digest, None).await).is_empty());

    ok!(d.delete_manifest(&r, &digest).await);
    assert_err!(
        d.get_manifest(&r, &dref(&digest)).await,
        Error::ManifestUnknown(_)
    );
    assert_err!(
        d.resolve_tag(&r, &tag("t512")).await,
        Error::ManifestUnknown(_)
    );
}

/// A manifest pushed by a digest it does not have is `DIGEST_INVALID` and nothing is stored.
pub async fn manifest_digest_mismatch<F: DriverFactory>(f: &F) {
    let s = Setup::new(f).await;
    let d = &*s.d;
    let r = repo("suite/m");
    let config = push_blob(d, &r, b"{}", CONFIG_TYPE).await;
    let bytes = image_manifest(&config, &[], None, None, None);
    for claimed in [sha256(b"other"), sha512(b"other")] {
        assert_err!(
            d.put_manifest(&r, &dref(&claimed), None, bytes.clone())
                .await,
            Error::DigestInvalid(_)
        );
        assert_err!(
            d.get_manifest(&r, &dref(&claimed)).await,
            Error::ManifestUnknown(_)
        );
    }
    assert_err!(
        d.get_manifest(&r, &dref(&sha256(&bytes))).await,
        Error::ManifestUnknown(_)
    );
}

/// Malformed manifests are `MANIFEST_INVALID` and nothing is stored (nor tagged).
pub async fn manifest_invalid<F: DriverFactory>(f: &F) {
    let s = Setup::new(f).await;
    let d = &*s.d;
    let r = repo("suite/m");
    let config = push_blob(d, &r, b"{}", CONFIG_TYPE).await;
    let good = image_manifest(&config, &[], None, None, None);
    let cases: Vec<(Bytes, Option<&str>)> = vec![
        (Bytes::from_static(b"not json"), None),
        (Bytes::from_static(b"{}"), None),
        (Bytes::from_static(b"[]"), None),
        (Bytes::from_static(br#"{"schemaVersion":1}"#), None),
        // Content-Type contradicting the body's mediaType.
        (good.clone(), Some(media_types::OCI_INDEX)),
        // Image manifest without layers.
        (
            Bytes::from(format!(
                r#"{{"schemaVersion":2,"mediaType":"{}","config":{}}}"#,
                media_types::OCI_MANIFEST,
                serde_json::to_string(&config).expect("json")
            )),
            None,
        ),
        // A descriptor with a malformed digest.
        (
            Bytes::from(
                String::from_utf8(good.to_vec())
                    .expect("utf8")
                    .replace(config.digest.as_str(), "sha256:1234"),
            ),
            None,
        ),
    ];
    for (bytes, ct) in cases {
        assert_err!(
            d.put_manifest(&r, &tag_ref("bad"), ct, bytes.clone()).await,
            Error::ManifestInvalid(_)
        );
    }
    assert_err!(
        d.resolve_tag(&r, &tag("bad")).await,
        Error::ManifestUnknown(_)
    );
}

/// Manifests above the size limit are `SIZE_INVALID`; one exactly at the limit is accepted.
pub async fn manifest_oversized<F: DriverFactory>(f: &F) {
    let s = Setup::new(f).await;
    let d = &*s.d;
    let r = repo("suite/m");
    let limit = f.max_manifest_size();
    let config = push_blob(d, &r, b"{}", CONFIG_TYPE).await;
    let build = |pad: usize| {
        image_manifest(
            &config,
            &[],
            None,
            None,
            Some(json!({ "pad": "x".repeat(pad) })),
        )
    };
    let overhead = build(0).len();
    assert!(overhead < limit, "limit {limit} too small for the suite");
    let at_limit = build(limit - overhead);
    assert_eq!(at_limit.len(), limit);
    let over = build(limit - overhead + 1);
    assert_err!(
        d.put_manifest(&r, &tag_ref("big"), None, over.clone())
            .await,
        Error::SizeInvalid(_)
    );
    assert_err!(
        d.resolve_tag(&r, &tag("big")).await,
        Error::ManifestUnknown(_)
    );
    ok!(d
        .put_manifest(&r, &tag_ref("big"), None, at_limit.clone())
        .await);
    assert_eq!(
        ok!(d.get_manifest(&r, &tag_ref("big")).await).bytes,
        at_limit
    );
}

/// A manifest referencing a config or layer that is not in the repository (absent, or only
/// in another repository) is `MANIFEST_BLOB_UNKNOWN` and nothing is stored.
pub async fn manifest_missing_blob<F: DriverFactory>(f: &F) {
    let s = Setup::new(f).await;
    let d = &*s.d;
    let (r, other) = (repo("suite/m"), repo("suite/other"));
    let config = push_blob(d, &r, b"{}", CONFIG_TYPE).await;
    let layer = push_blob(d, &r, b"layer", LAYER_TYPE).await;
    let elsewhere = push_blob(d, &other, b"elsewhere", LAYER_TYPE).await;
    let absent = descriptor(LAYER_TYPE, sha256(b"absent"), 6);
    let absent_config = descriptor(CONFIG_TYPE, sha256(b"{\"absent\":1}"), 12);
    let cases = [
        image_manifest(
            &absent_config,
            std::slice::from_ref(&layer),
            None,
            None,
            None,
        ),
        image_manifest(&config, &[layer.clone(), absent], None, None, None),
        image_manifest(&config, std::slice::from_ref(&elsewhere), None, None, None),
    ];
    for bytes in cases {
        assert_err!(
            d.put_manifest(&r, &tag_ref("t"), None, bytes.clone()).await,
            Error::ManifestBlobUnknown(_)
        );
        assert_err!(
            d.get_manifest(&r, &dref(&sha256(&bytes))).await,
            Error::ManifestUnknown(_)
        );
    }
    assert_err!(
        d.resolve_tag(&r, &tag("t")).await,
        Error::ManifestUnknown(_)
    );
    // Once mounted, the manifest referencing `elsewhere` is accepted.
    ok!(d.mount_blob(&other, &r, &elsewhere.digest).await);
    let bytes = image_manifest(&config, &[elsewhere], None, None, None);
    ok!(d.put_manifest(&r, &tag_ref("t"), None, bytes).await);
}

/// A manifest whose `subject` is not in the repository is accepted (spec "Pushing Manifests
/// with Subject") and reports the subject.
pub async fn manifest_subject_absent_accepted<F: DriverFactory>(f: &F) {
    let s = Setup::new(f).await;
    let d = &*s.d;
    let r = repo("suite/m");
    let config = push_blob(d, &r, b"{}", CONFIG_TYPE).await;
    let subject = descriptor(media_types::OCI_MANIFEST, sha256(b"no such manifest"), 16);
    let bytes = image_manifest(
        &config,
        &[],
        Some(&subject),
        Some("application/x-sig"),
        None,
    );
    let out = ok!(d
        .put_manifest(&r, &tag_ref("sig"), None, bytes.clone())
        .await);
    assert_eq!(out.subject, Some(subject.digest.clone()));
    assert_eq!(ok!(d.get_manifest(&r, &tag_ref("sig")).await).bytes, bytes);
}

/// Non-distributable layers need not be in the repository (image spec "Non-distributable
/// layers"); distributable ones still must.
pub async fn manifest_non_distributable_absent_accepted<F: DriverFactory>(f: &F) {
    let s = Setup::new(f).await;
    let d = &*s.d;
    let r = repo("suite/m");
    let config = push_blob(d, &r, b"{}", CONFIG_TYPE).await;
    let layer = push_blob(d, &r, b"layer", LAYER_TYPE).await;
    let mut foreign = descriptor(
        "application/vnd.oci.image.layer.nondistributable.v1.tar+gzip",
        sha256(b"foreign"),
        7,
    );
    foreign.urls = Some(vec!["https://example.com/layer".to_owned()]);
    let docker_foreign = descriptor(media_types::DOCKER_FOREIGN_LAYER, sha256(b"foreign2"), 8);
    let bytes = image_manifest(
        &config,
        &[layer.clone(), foreign.clone(), docker_foreign],
        None,
        None,
        None,
    );
    ok!(d
        .put_manifest(&r, &tag_ref("nd"), None, bytes.clone())
        .await);
    assert_eq!(ok!(d.get_manifest(&r, &tag_ref("nd")).await).bytes, bytes);
    let missing = descriptor(LAYER_TYPE, sha256(b"foreign3"), 8);
    assert_err!(
        d.put_manifest(
            &r,
            &tag_ref("nd2"),
            None,
            image_manifest(&config, &[foreign, missing], None, None, None)
        )
        .await,
        Error::ManifestBlobUnknown(_)
    );
}

/// An index referencing a manifest not in the repository is `MANIFEST_BLOB_UNKNOWN`; with
/// its children present it is accepted.
pub async fn manifest_index_references<F: DriverFactory>(f: &F) {
    let s = Setup::new(f).await;
    let d = &*s.d;
    let (r, other) = (repo("suite/m"), repo("suite/other"));
    let (child, _) = push_image(d, &r, &tag_ref("child"), 2).await;
    let (foreign, _) = push_image(d, &other, &tag_ref("child"), 3).await;
    let index = |children: &[&crate::oci::Descriptor]| {
        Bytes::from(
            serde_json::to_vec(&json!({
                "schemaVersion": 2,
                "mediaType": media_types::OCI_INDEX,
                "manifests": children,
            }))
            .expect("json"),
        )
    };
    let missing = descriptor(media_types::OCI_MANIFEST, sha256(b"missing"), 7);
    for bad in [index(&[&child, &missing]), index(&[&foreign])] {
        assert_err!(
            d.put_manifest(&r, &tag_ref("idx"), None, bad.clone()).await,
            Error::ManifestBlobUnknown(_)
        );
    }
    assert_err!(
        d.resolve_tag(&r, &tag("idx")).await,
        Error::ManifestUnknown(_)
    );
    let good = index(&[&child]);
    ok!(d
        .put_manifest(&r, &tag_ref("idx"), None, good.clone())
        .await);
    let m = ok!(d.get_manifest(&r, &tag_ref("idx")).await);
    assert_eq!(m.bytes, good);
    assert_eq!(m.info.media_type, media_types::OCI_INDEX);
    // An empty index is fine.
    ok!(d
        .put_manifest(&r, &tag_ref("empty"), None, index(&[]))
        .await);
}

/// Unknown manifests are `MANIFEST_UNKNOWN` by tag and by digest, for get, stat and delete.
pub async fn manifest_unknown<F: DriverFactory>(f: &F) {
    let s = Setup::new(f).await;
    let d = &*s.d;
    let r = repo("suite/m");
    let digest = sha256(b"nothing");
    for reference in [tag_ref("nope"), dref(&digest), dref(&sha512(b"nothing"))] {
        assert_err!(
            d.get_manifest(&r, &reference).await,
            Error::ManifestUnknown(_)
        );
        assert_err!(
            d.stat_manifest(&r, &reference).await,
            Error::ManifestUnknown(_)
        );
    }
    assert_err!(
        d.delete_manifest(&r, &digest).await,
        Error::ManifestUnknown(_)
    );
    assert_err!(
        d.resolve_tag(&r, &tag("nope")).await,
        Error::ManifestUnknown(_)
    );
    // A blob is not a manifest.
    let blob = push_blob(d, &r, b"{}", CONFIG_TYPE).await;
    assert_err!(
        d.get_manifest(&r, &dref(&blob.digest)).await,
        Error::ManifestUnknown(_)
    );
}

/// Manifests and tags of `a` are unknown in `b`.
pub async fn manifest_cross_repository<F: DriverFactory>(f: &F) {
    let s = Setup::new(f).await;
    let d = &*s.d;
    let (a, b) = (repo("suite/a"), repo("suite/b"));
    let (desc, _) = push_image(d, &a, &tag_ref("v1"), 4).await;
    assert_err!(
        d.get_manifest(&b, &tag_ref("v1")).await,
        Error::ManifestUnknown(_)
    );
    assert_err!(
        d.get_manifest(&b, &dref(&desc.digest)).await,
        Error::ManifestUnknown(_)
    );
    assert_err!(
        d.delete_manifest(&b, &desc.digest).await,
        Error::ManifestUnknown(_)
    );
    assert_err!(
        d.tag_manifest(&b, &tag("v1"), &desc.digest).await,
        Error::ManifestUnknown(_)
    );
    assert_err!(d.get_tags(&b, None, None).await, Error::NameUnknown(_));
    assert!(ok!(d.get_manifest(&a, &tag_ref("v1")).await).info.digest == desc.digest);
}

/// Deleting a manifest removes it, every tag pointing to it (others stay) and its referrer
/// entry; its blobs stay.
pub async fn manifest_delete<F: DriverFactory>(f: &F) {
    let s = Setup::new(f).await;
    let d = &*s.d;
    let r = repo("suite/m");
    let (subject, _) = push_image(d, &r, &tag_ref("base"), 5).await;
    let (m1, _) = push_image(d, &r, &tag_ref("t1"), 6).await;
    ok!(d.tag_manifest(&r, &tag("t1b"), &m1.digest).await);
    ok!(d.tag_manifest(&r, &tag("t1c"), &m1.digest).await);
    // A referrer of `subject` that is also tagged.
    let config = push_blob(d, &r, b"{\"sig\":1}", CONFIG_TYPE).await;
    let sig = image_manifest(
        &config,
        &[],
        Some(&subject),
        Some("application/x-sig"),
        None,
    );
    let sig_digest = ok!(d.put_manifest(&r, &tag_ref("sig"), None, sig).await).digest;
    assert_eq!(ok!(d.referrers(&r, &subject.digest, None).await).len(), 1);

    ok!(d.delete_manifest(&r, &m1.digest).await);
    assert_err!(
        d.get_manifest(&r, &dref(&m1.digest)).await,
        Error::ManifestUnknown(_)
    );
    for t in ["t1", "t1b", "t1c"] {
        assert_err!(d.resolve_tag(&r, &tag(t)).await, Error::ManifestUnknown(_));
        assert_err!(
            d.get_manifest(&r, &tag_ref(t)).await,
            Error::ManifestUnknown(_)
        );
    }
    let tags = ok!(d.get_tags(&r, None, None).await).tags;
    assert_eq!(tags, ["base", "sig"]);
    assert_err!(
        d.delete_manifest(&r, &m1.digest).await,
        Error::ManifestUnknown(_)
    );

    ok!(d.delete_manifest(&r, &sig_digest).await);
    assert!(
        ok!(d.referrers(&r, &subject.digest, None).await).is_empty(),
        "referrer entry must go with its manifest"
    );
    assert_eq!(ok!(d.get_tags(&r, None, None).await).tags, ["base"]);
    // The subject and its blobs are untouched; the config blob of the deleted referrer too.
    assert_eq!(ok!(d.resolve_tag(&r, &tag("base")).await), subject.digest);
    ok!(d.stat(&r, &config.digest).await);
    // The deleted manifest can be pushed again.
    let (again, _) = push_image(d, &r, &tag_ref("t1"), 6).await;
    assert_eq!(again.digest, m1.digest);
}
