//! Lifecycle cases ([`Lifecycle`]): garbage collection, upload expiry, the repository
//! listing, sparse indexes. They need a driver implementing [`Lifecycle`] too (listed by
//! [`for_each_lifecycle_case!`](crate::for_each_lifecycle_case)).

use std::time::Duration;

use bytes::Bytes;
use futures::StreamExt;
use serde_json::json;

use crate::error::Error;
use crate::oci::manifest::media_types;
use crate::oci::{Descriptor, DigestAlgorithm, Reference, RepositoryName};
use crate::storage::lifecycle::{GcOptions, GcReport, Lifecycle};
use crate::storage::{StorageDriver, UploadHandle};

use super::{
    CONFIG_TYPE, DriverFactory, LAYER_TYPE, Setup, assert_blob, assert_err, body, data,
    image_manifest, ok, push_blob, push_image, repo, sha256, sha512, tag, tag_ref,
};

/// Collection options of the cases: nothing spared, uploads left alone.
fn now_options() -> GcOptions {
    GcOptions {
        dry_run: false,
        delete_untagged: false,
        grace: Duration::ZERO,
        upload_ttl: None,
        manifest_ttl: None,
    }
}

async fn gc<D: Lifecycle>(d: &D, options: GcOptions) -> GcReport {
    ok!(d.collect_garbage(&options).await)
}

fn by_digest(bytes: &Bytes) -> Reference {
    Reference::Digest(sha256(bytes))
}

/// Pushes an image manifest of `config` and `layers` under `reference`.
async fn push_manifest<D: StorageDriver>(
    d: &D,
    r: &RepositoryName,
    reference: &Reference,
    config: &Descriptor,
    layers: &[Descriptor],
) -> Descriptor {
    let bytes = image_manifest(config, layers, None, None, None);
    let out = ok!(d
        .put_manifest(r, reference, Some(media_types::OCI_MANIFEST), bytes.clone())
        .await);
    super::descriptor(media_types::OCI_MANIFEST, out.digest, bytes.len())
}

/// A store with a shared layer, an image whose manifest is deleted, and a blob pushed but
/// never referenced: a collection reclaims exactly the bytes no manifest references (the
/// deleted image's own config and layer, the lone blob), keeps everything the remaining
/// image references, and a second collection finds nothing more.
pub async fn gc_reclaims_exactly_the_unreferenced_bytes<F: DriverFactory>(f: &F)
where
    F::Instance: Lifecycle,
{
    let s = Setup::new(f).await;
    let d = &*s.d;
    let (a, b) = (repo("suite/gc/a"), repo("suite/gc/b"));
    let shared = push_blob(d, &a, &data(3000, 1), LAYER_TYPE).await;
    ok!(d.mount_blob(&a, &b, &shared.digest).await);
    let config_a = push_blob(d, &a, b"{\"image\":\"a\"}", CONFIG_TYPE).await;
    let own_a = push_blob(d, &a, &data(500, 2), LAYER_TYPE).await;
    let config_b = push_blob(d, &b, b"{\"image\":\"b\"}", CONFIG_TYPE).await;
    let kept = push_manifest(
        d,
        &b,
        &tag_ref("v1"),
        &config_b,
        std::slice::from_ref(&shared),
    )
    .await;
    let doomed = push_manifest(
        d,
        &a,
        &tag_ref("v1"),
        &config_a,
        &[shared.clone(), own_a.clone()],
    )
    .await;
    let lone = push_blob(d, &b, &data(77, 3), LAYER_TYPE).await;
    ok!(d.delete_manifest(&a, &doomed.digest).await);

    let report = gc(d, now_options()).await;
    let expected_bytes = config_a.size + own_a.size + lone.size;
    assert_eq!(
        (report.manifests, report.blobs, report.bytes),
        (0, 3, expected_bytes),
        "{report:?}"
    );
    // Links: a's config, own layer and shared layer (no manifest of `a` is left), b's lone.
    assert_eq!(report.links, 4, "{report:?}");
    assert!(!report.dry_run);
    for (r, gone) in [(&a, &config_a), (&a, &own_a), (&a, &shared), (&b, &lone)] {
        assert_err!(d.stat(r, &gone.digest).await, Error::BlobUnknown(_));
    }
    assert_blob(d, &b, &shared.digest, &data(3000, 1)).await;
    assert_blob(d, &b, &config_b.digest, b"{\"image\":\"b\"}").await;
    assert_eq!(ok!(d.resolve_tag(&b, &tag("v1")).await), kept.digest);
    let again = gc(d, now_options()).await;
    assert_eq!(
        (again.blobs, again.bytes, again.links),
        (0, 0, 0),
        "{again:?}"
    );
    // What was reclaimed can be pushed again.
    let repushed = push_blob(d, &a, &data(500, 2), LAYER_TYPE).await;
    assert_blob(d, &a, &repushed.digest, &data(500, 2)).await;
}

/// A dry run changes nothing and reports the same counts as the run that follows it.
pub async fn gc_dry_run_reports_what_a_run_reclaims<F: DriverFactory>(f: &F)
where
    F::Instance: Lifecycle,
{
    let s = Setup::new(f).await;
    let d = &*s.d;
    let r = repo("suite/gc/dry");
    let (old, _) = push_image(d, &r, &tag_ref("v1"), 4).await;
    push_image(d, &r, &tag_ref("v1"), 5).await; // v1 moves: `old` is untagged
    push_blob(d, &r, &data(64, 6), LAYER_TYPE).await;
    let session = ok!(d.start_upload(&r, DigestAlgorithm::Sha256).await).id();
    ok!(d
        .put_upload_chunk(&r, &session, Some(0), None, body(b"partial"))
        .await);
    let options = GcOptions {
        delete_untagged: true,
        upload_ttl: Some(Duration::ZERO),
        ..now_options()
    };
    let dry = gc(
        d,
        GcOptions {
            dry_run: true,
            ..options.clone()
        },
    )
    .await;
    assert!(dry.dry_run);
    assert!(
        dry.manifests == 1 && dry.blobs == 3 && dry.uploads == 1,
        "{dry:?}"
    );
    // Nothing changed.
    ok!(d
        .get_manifest(&r, &Reference::Digest(old.digest.clone()))
        .await);
    assert_eq!(ok!(d.get_upload_progress(&r, &session).await).offset(), 7);
    let real = gc(d, options).await;
    assert_eq!(
        (
            real.manifests,
            real.blobs,
            real.bytes,
            real.links,
            real.uploads
        ),
        (dry.manifests, dry.blobs, dry.bytes, dry.links, dry.uploads),
        "dry {dry:?} / real {real:?}"
    );
    assert_err!(
        d.get_manifest(&r, &Reference::Digest(old.digest.clone()))
            .await,
        Error::ManifestUnknown(_)
    );
    assert_err!(
        d.get_upload_progress(&r, &session).await,
        Error::BlobUploadUnknown(_)
    );
}

/// The grace period spares blobs and links written within it; without one they go.
pub async fn gc_grace_spares_recent_writes<F: DriverFactory>(f: &F)
where
    F::Instance: Lifecycle,
{
    let s = Setup::new(f).await;
    let d = &*s.d;
    let r = repo("suite/gc/grace");
    let fresh = push_blob(d, &r, &data(256, 7), LAYER_TYPE).await;
    let spared = gc(
        d,
        GcOptions {
            grace: Duration::from_secs(3600),
            ..now_options()
        },
    )
    .await;
    assert_eq!((spared.blobs, spared.links), (0, 0), "{spared:?}");
    assert_blob(d, &r, &fresh.digest, &data(256, 7)).await;
    let reclaimed = gc(d, now_options()).await;
    assert_eq!(
        (reclaimed.blobs, reclaimed.bytes),
        (1, 256),
        "{reclaimed:?}"
    );
}

/// A link goes when no manifest of its repository references the blob, even while
/// another repository's manifest keeps the bytes.
pub async fn gc_sweeps_links_no_manifest_of_their_repository_references<F: DriverFactory>(f: &F)
where
    F::Instance: Lifecycle,
{
    let s = Setup::new(f).await;
    let d = &*s.d;
    let (a, b) = (repo("suite/gc/links-a"), repo("suite/gc/links-b"));
    let (image, _) = push_image(d, &a, &tag_ref("v1"), 8).await;
    let manifest = ok!(d
        .get_manifest(&a, &Reference::Digest(image.digest.clone()))
        .await);
    let layer = crate::oci::manifest::inspect(&manifest.bytes, None)
        .unwrap()
        .layers[0]
        .clone();
    ok!(d.mount_blob(&a, &b, &layer.digest).await);
    let report = gc(d, now_options()).await;
    assert_eq!((report.blobs, report.links), (0, 1), "{report:?}");
    assert_err!(d.stat(&b, &layer.digest).await, Error::BlobUnknown(_));
    ok!(d.stat(&a, &layer.digest).await);
}

/// Without `delete_untagged`, manifests stay whether tagged or not, and so do their blobs.
pub async fn gc_keeps_untagged_manifests_by_default<F: DriverFactory>(f: &F)
where
    F::Instance: Lifecycle,
{
    let s = Setup::new(f).await;
    let d = &*s.d;
    let r = repo("suite/gc/untagged");
    let (first, _) = push_image(d, &r, &tag_ref("v1"), 9).await;
    push_image(d, &r, &tag_ref("v1"), 10).await;
    let (third, _) = push_image(d, &r, &tag_ref("tmp"), 12).await;
    ok!(d.untag_manifest(&r, &tag("tmp")).await);
    let report = gc(d, now_options()).await;
    assert_eq!((report.manifests, report.blobs), (0, 0), "{report:?}");
    for kept in [&first, &third] {
        ok!(d
            .get_manifest(&r, &Reference::Digest(kept.digest.clone()))
            .await);
    }
}

/// With `manifest_ttl` (a pull-through cache's store): within the TTL manifests stay,
/// tagged or not; past it they go, tags and blobs with them, and what is left is a clean
/// store that takes the same image again.
pub async fn gc_expires_manifests_past_their_ttl<F: DriverFactory>(f: &F)
where
    F::Instance: Lifecycle,
{
    let s = Setup::new(f).await;
    let d = &*s.d;
    let r = repo("suite/gc/ttl");
    let (tagged, _) = push_image(d, &r, &tag_ref("v1"), 14).await;
    let (untagged, _) = push_image(d, &r, &tag_ref("tmp"), 15).await;
    ok!(d.untag_manifest(&r, &tag("tmp")).await);
    let expiring = |ttl| GcOptions {
        manifest_ttl: Some(ttl),
        ..now_options()
    };
    let within = gc(d, expiring(Duration::from_secs(3600))).await;
    assert_eq!(
        (within.tags, within.manifests, within.blobs),
        (0, 0, 0),
        "{within:?}"
    );
    assert_eq!(ok!(d.resolve_tag(&r, &tag("v1")).await), tagged.digest);
    let past = gc(d, expiring(Duration::ZERO)).await;
    assert_eq!(
        (past.tags, past.manifests, past.blobs),
        (1, 2, 4),
        "{past:?}"
    );
    assert_err!(
        d.resolve_tag(&r, &tag("v1")).await,
        Error::ManifestUnknown(_)
    );
    for gone in [&tagged, &untagged] {
        assert_err!(
            d.get_manifest(&r, &Reference::Digest(gone.digest.clone()))
                .await,
            Error::ManifestUnknown(_)
        );
    }
    let (again, _) = push_image(d, &r, &tag_ref("v1"), 14).await;
    assert_eq!(again.digest, tagged.digest);
    assert_eq!(ok!(d.resolve_tag(&r, &tag("v1")).await), tagged.digest);
}

/// With `delete_untagged`: what no tag reaches goes (with its blobs and referrer entry);
/// what a tag reaches stays, through an index's children and a subject's referrers.
pub async fn gc_delete_untagged_keeps_what_tags_reach<F: DriverFactory>(f: &F)
where
    F::Instance: Lifecycle,
{
    let s = Setup::new(f).await;
    let d = &*s.d;
    let r = repo("suite/gc/reach");
    let (child, _) = push_image(d, &r, &tag_ref("child"), 13).await;
    let (subject, _) = push_image(d, &r, &tag_ref("subject"), 14).await;
    let (orphan, _) = push_image(d, &r, &tag_ref("orphan"), 15).await;
    let index = Bytes::from(
        serde_json::to_vec(&json!({
            "schemaVersion": 2,
            "mediaType": media_types::OCI_INDEX,
            "manifests": [child],
        }))
        .expect("json"),
    );
    ok!(d
        .put_manifest(&r, &tag_ref("multi"), Some(media_types::OCI_INDEX), index)
        .await);
    let empty = push_blob(d, &r, b"{}", media_types::OCI_EMPTY).await;
    let signature = |of: &Descriptor| {
        image_manifest(
            &empty,
            &[],
            Some(of),
            Some("application/vnd.example.sig"),
            None,
        )
    };
    let kept_sig = signature(&subject);
    let kept_sig = ok!(d
        .put_manifest(&r, &by_digest(&kept_sig), None, kept_sig)
        .await)
    .digest;
    let lost_sig = signature(&orphan);
    let lost_sig = ok!(d
        .put_manifest(&r, &by_digest(&lost_sig), None, lost_sig)
        .await)
    .digest;
    // Untag the child (the index still reaches it) and the orphan (nothing does).
    ok!(d.untag_manifest(&r, &tag("child")).await);
    ok!(d.untag_manifest(&r, &tag("orphan")).await);

    let report = gc(
        d,
        GcOptions {
            delete_untagged: true,
            ..now_options()
        },
    )
    .await;
    // The orphan and its signature; the orphan's config and layer (the empty config stays:
    // the kept signature references it).
    assert_eq!((report.manifests, report.blobs), (2, 2), "{report:?}");
    for gone in [&orphan.digest, &lost_sig] {
        assert_err!(
            d.get_manifest(&r, &Reference::Digest(gone.clone())).await,
            Error::ManifestUnknown(_)
        );
    }
    for kept in [&child.digest, &subject.digest, &kept_sig] {
        ok!(d.get_manifest(&r, &Reference::Digest(kept.clone())).await);
    }
    let referrers = ok!(d.referrers(&r, &orphan.digest, None).await);
    assert!(referrers.is_empty(), "{referrers:?}");
    let referrers = ok!(d.referrers(&r, &subject.digest, None).await);
    assert_eq!(referrers.len(), 1);
}

/// The interim blob of a session hashed with sha256 and finished with a sha512 digest is
/// reclaimed; the sha512 blob a manifest references stays.
pub async fn gc_reclaims_interim_sha512_blobs<F: DriverFactory>(f: &F)
where
    F::Instance: Lifecycle,
{
    let s = Setup::new(f).await;
    let d = &*s.d;
    let r = repo("suite/gc/interim");
    let content = data(2048, 16);
    let id = ok!(d.start_upload(&r, DigestAlgorithm::Sha256).await).id();
    ok!(d
        .put_upload_chunk(&r, &id, Some(0), None, body(&content[..1000]))
        .await);
    let digest = sha512(&content);
    ok!(d
        .finish_upload(&r, &id, &digest, None, body(&content[1000..]))
        .await);
    let layer = super::descriptor(LAYER_TYPE, digest.clone(), content.len());
    let config = push_blob(d, &r, b"{\"sha\":512}", CONFIG_TYPE).await;
    push_manifest(d, &r, &tag_ref("v1"), &config, &[layer]).await;
    let report = gc(d, now_options()).await;
    assert_eq!(
        (report.blobs, report.bytes),
        (1, content.len() as u64),
        "{report:?}"
    );
    assert_blob(d, &r, &digest, &content).await;
}

/// Sessions idle longer than the TTL are aborted (`BLOB_UPLOAD_UNKNOWN` afterwards, also
/// for a chunk or a finish); younger ones continue.
pub async fn uploads_expire_after_their_ttl<F: DriverFactory>(f: &F)
where
    F::Instance: Lifecycle,
{
    let s = Setup::new(f).await;
    let d = &*s.d;
    let r = repo("suite/expiry");
    let idle = ok!(d.start_upload(&r, DigestAlgorithm::Sha256).await).id();
    ok!(d
        .put_upload_chunk(&r, &idle, Some(0), None, body(b"0123456789"))
        .await);
    let young = ok!(d.expire_uploads(Duration::from_secs(3600), false).await);
    assert_eq!(young.uploads, 0, "{young:?}");
    assert_eq!(ok!(d.get_upload_progress(&r, &idle).await).offset(), 10);
    let dry = ok!(d.expire_uploads(Duration::ZERO, true).await);
    assert_eq!(dry.uploads, 1, "{dry:?}");
    let expired = ok!(d.expire_uploads(Duration::ZERO, false).await);
    assert_eq!(expired.uploads, 1, "{expired:?}");
    assert_eq!(expired.sessions, 1, "{expired:?}");
    assert_err!(
        d.get_upload_progress(&r, &idle).await,
        Error::BlobUploadUnknown(_)
    );
    assert_err!(
        d.put_upload_chunk(&r, &idle, Some(10), None, body(b"more"))
            .await,
        Error::BlobUploadUnknown(_)
    );
    assert_err!(
        d.finish_upload(&r, &idle, &sha256(b"0123456789"), None, body(b""))
            .await,
        Error::BlobUploadUnknown(_)
    );
    assert_err!(
        d.stat(&r, &sha256(b"0123456789")).await,
        Error::BlobUnknown(_)
    );
    let again = ok!(d.expire_uploads(Duration::ZERO, false).await);
    assert_eq!(again.uploads, 0, "{again:?}");
}

/// A session that expires while one of its chunks is being received (by this process's
/// expiry or another's) refuses that chunk with `BLOB_UPLOAD_UNKNOWN`, rather than
/// acknowledging bytes it no longer holds, and stays unknown: the client starts over.
pub async fn uploads_expiring_under_a_chunk_refuse_it<F: DriverFactory>(f: &F)
where
    F::Instance: Lifecycle,
{
    let s = Setup::new(f).await;
    let d = &*s.d;
    let r = repo("suite/expiry-mid-chunk");
    let id = ok!(d.start_upload(&r, DigestAlgorithm::Sha256).await).id();
    ok!(d
        .put_upload_chunk(&r, &id, Some(0), None, body(b"0123456789"))
        .await);
    // The chunk's body: its first half once the driver reads it, its second half once the
    // session has expired.
    let (started, receiving) = tokio::sync::oneshot::channel::<()>();
    let (expired, resume) = tokio::sync::oneshot::channel::<()>();
    let halves = futures::stream::once(async move {
        let _ = started.send(());
        Ok(Bytes::from_static(b"first half, "))
    })
    .chain(futures::stream::once(async move {
        let _ = resume.await;
        Ok(Bytes::from_static(b"second half"))
    }));
    let chunk = d.put_upload_chunk(&r, &id, Some(10), None, halves);
    let expiry = async {
        let _ = receiving.await;
        let report = ok!(d.expire_uploads(Duration::ZERO, false).await);
        let _ = expired.send(());
        report
    };
    let (chunk, report) = tokio::join!(chunk, expiry);
    assert_eq!(report.uploads, 1, "{report:?}");
    assert_err!(chunk, Error::BlobUploadUnknown(_));
    assert_err!(
        d.get_upload_progress(&r, &id).await,
        Error::BlobUploadUnknown(_)
    );
}

/// Repositories (with a tag, a manifest or a blob link) are listed in the order of their
/// names followed by `/`, paginated with `n` and `last`; a repository holding only an
/// upload session is not one.
pub async fn catalog_lists_repositories_in_order_and_pages<F: DriverFactory>(f: &F)
where
    F::Instance: Lifecycle,
{
    let s = Setup::new(f).await;
    let d = &*s.d;
    for name in ["c/d/e", "a/b", "b", "a", "a-b"] {
        push_blob(d, &repo(name), name.as_bytes(), LAYER_TYPE).await;
    }
    ok!(d
        .start_upload(&repo("a/only-upload"), DigestAlgorithm::Sha256)
        .await);
    let all = ok!(d.repositories(None, None).await);
    let expected = ["a-b", "a", "a/b", "b", "c/d/e"];
    assert_eq!(all.repositories, expected);
    assert!(!all.has_more);
    let mut paged = Vec::new();
    let mut last: Option<String> = None;
    loop {
        let page = ok!(d.repositories(Some(2), last.as_deref()).await);
        assert!(page.repositories.len() <= 2);
        paged.extend(page.repositories.iter().cloned());
        last = page.repositories.last().cloned();
        if !page.has_more {
            break;
        }
    }
    assert_eq!(paged, expected);
    for (after, rest) in [
        ("a", &expected[2..]),
        ("a/b", &expected[3..]),
        ("a/a", &expected[2..]),
    ] {
        let page = ok!(d.repositories(None, Some(after)).await);
        assert_eq!(page.repositories, rest, "after {after}");
    }
    assert!(
        ok!(d.repositories(Some(0), None).await)
            .repositories
            .is_empty()
    );
    assert!(
        ok!(d.repositories(None, Some("c/d/e")).await)
            .repositories
            .is_empty()
    );
    assert_err!(
        d.repositories(None, Some("Not A Name")).await,
        Error::NameInvalid(_)
    );
}

/// A repository whose content is all deleted (and collected) leaves the listing.
pub async fn catalog_forgets_emptied_repositories<F: DriverFactory>(f: &F)
where
    F::Instance: Lifecycle,
{
    let s = Setup::new(f).await;
    let d = &*s.d;
    let (keep, gone) = (repo("suite/catalog/keep"), repo("suite/catalog/gone"));
    push_image(d, &keep, &tag_ref("v1"), 17).await;
    let (image, _) = push_image(d, &gone, &tag_ref("v1"), 18).await;
    ok!(d.delete_manifest(&gone, &image.digest).await);
    gc(d, now_options()).await;
    let listed = ok!(d.repositories(None, None).await);
    assert_eq!(listed.repositories, ["suite/catalog/keep"]);
}

/// With sparse indexes, an index whose children are absent is accepted (and a collection
/// treats the absent children as absent); without, it is `MANIFEST_BLOB_UNKNOWN`.
pub async fn sparse_indexes_accept_absent_children<F: DriverFactory>(f: &F)
where
    F::Instance: Lifecycle,
{
    let s = Setup::new(f).await;
    let sparse = ok!(f.open_configured(&s.storage).await);
    let r = repo("suite/sparse");
    let (present, _) = push_image(&sparse, &r, &tag_ref("amd64"), 19).await;
    let absent = super::descriptor(media_types::OCI_MANIFEST, sha256(b"arm64"), 512);
    let index = Bytes::from(
        serde_json::to_vec(&json!({
            "schemaVersion": 2,
            "mediaType": media_types::OCI_INDEX,
            "manifests": [present, absent],
        }))
        .expect("json"),
    );
    assert_err!(
        s.d.put_manifest(
            &r,
            &tag_ref("multi"),
            Some(media_types::OCI_INDEX),
            index.clone()
        )
        .await,
        Error::ManifestBlobUnknown(_)
    );
    let out = ok!(sparse
        .put_manifest(
            &r,
            &tag_ref("multi"),
            Some(media_types::OCI_INDEX),
            index.clone()
        )
        .await);
    ok!(sparse.untag_manifest(&r, &tag("amd64")).await);
    let report = gc(
        &sparse,
        GcOptions {
            delete_untagged: true,
            ..now_options()
        },
    )
    .await;
    assert_eq!((report.manifests, report.blobs), (0, 0), "{report:?}");
    let served = ok!(sparse
        .get_manifest(&r, &Reference::Digest(out.digest))
        .await);
    assert_eq!(served.bytes, index);
    ok!(sparse
        .get_manifest(&r, &Reference::Digest(present.digest))
        .await);
}

/// A collection by a second instance (another process) deletes what the first instance's
/// client believed present: the first instance's next manifest push referencing it is
/// refused (`MANIFEST_BLOB_UNKNOWN`, nothing tagged), and succeeds once the blob is pushed
/// again.
pub async fn gc_in_another_instance_refuses_stale_pushes<F: DriverFactory>(f: &F)
where
    F::Instance: Lifecycle,
{
    let s = Setup::new(f).await;
    let d = &*s.d;
    let other = s.second_instance().await;
    let r = repo("suite/gc/instances");
    let config = push_blob(d, &r, b"{\"instances\":2}", CONFIG_TYPE).await;
    let layer = push_blob(d, &r, &data(900, 20), LAYER_TYPE).await;
    ok!(d.stat(&r, &layer.digest).await); // the client's HEAD: present
    let report = gc(&other, now_options()).await;
    assert_eq!(report.blobs, 2, "{report:?}");
    let bytes = image_manifest(&config, std::slice::from_ref(&layer), None, None, None);
    assert_err!(
        d.put_manifest(
            &r,
            &tag_ref("v1"),
            Some(media_types::OCI_MANIFEST),
            bytes.clone()
        )
        .await,
        Error::ManifestBlobUnknown(_)
    );
    assert_err!(
        d.resolve_tag(&r, &tag("v1")).await,
        Error::ManifestUnknown(_)
    );
    push_blob(d, &r, b"{\"instances\":2}", CONFIG_TYPE).await;
    push_blob(d, &r, &data(900, 20), LAYER_TYPE).await;
    ok!(d
        .put_manifest(&r, &tag_ref("v1"), Some(media_types::OCI_MANIFEST), bytes)
        .await);
    assert_blob(&other, &r, &layer.digest, &data(900, 20)).await;
}
