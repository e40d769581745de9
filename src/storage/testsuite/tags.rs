//! Tag cases: overwrite, untag, lexical order and pagination, concurrency.

use std::sync::Arc;

use crate::error::Error;
use crate::oci::Reference;
use crate::storage::StorageDriver;

use super::{
    CONFIG_TYPE, DriverFactory, Setup, assert_err, image_manifest, ok, push_blob, push_image, repo,
    sha256, tag, tag_ref,
};

/// Pushing another manifest under an existing tag moves the tag; the old manifest stays
/// reachable by digest.
pub async fn tag_overwrite<F: DriverFactory>(f: &F) {
    let s = Setup::new(f).await;
    let d = &*s.d;
    let r = repo("suite/t");
    let (m1, b1) = push_image(d, &r, &tag_ref("latest"), 1).await;
    let (m2, b2) = push_image(d, &r, &tag_ref("latest"), 2).await;
    assert_ne!(m1.digest, m2.digest);
    assert_eq!(ok!(d.resolve_tag(&r, &tag("latest")).await), m2.digest);
    assert_eq!(ok!(d.get_manifest(&r, &tag_ref("latest")).await).bytes, b2);
    assert_eq!(
        ok!(d
            .get_manifest(&r, &Reference::Digest(m1.digest.clone()))
            .await)
        .bytes,
        b1
    );
    // tag_manifest moves it back.
    ok!(d.tag_manifest(&r, &tag("latest"), &m1.digest).await);
    assert_eq!(ok!(d.get_manifest(&r, &tag_ref("latest")).await).bytes, b1);
    assert_eq!(ok!(d.get_tags(&r, None, None).await).tags, ["latest"]);
}

/// `tag_manifest` needs an existing manifest; `untag_manifest` removes only the tag; both
/// `resolve_tag` and `untag_manifest` of an absent tag are `MANIFEST_UNKNOWN`.
pub async fn tag_and_untag<F: DriverFactory>(f: &F) {
    let s = Setup::new(f).await;
    let d = &*s.d;
    let r = repo("suite/t");
    let config = push_blob(d, &r, b"{}", CONFIG_TYPE).await;
    let bytes = image_manifest(&config, &[], None, None, None);
    let digest = sha256(&bytes);
    ok!(d
        .put_manifest(&r, &Reference::Digest(digest.clone()), None, bytes.clone())
        .await);
    assert_err!(
        d.resolve_tag(&r, &tag("v1")).await,
        Error::ManifestUnknown(_)
    );
    ok!(d.tag_manifest(&r, &tag("v1"), &digest).await);
    ok!(d.tag_manifest(&r, &tag("v1"), &digest).await);
    ok!(d.tag_manifest(&r, &tag("V1_Upper-case.x"), &digest).await);
    assert_eq!(ok!(d.resolve_tag(&r, &tag("v1")).await), digest);
    assert_eq!(ok!(d.get_manifest(&r, &tag_ref("v1")).await).bytes, bytes);
    assert_err!(
        d.tag_manifest(&r, &tag("v2"), &sha256(b"no manifest"))
            .await,
        Error::ManifestUnknown(_)
    );
    assert_err!(
        d.resolve_tag(&r, &tag("v2")).await,
        Error::ManifestUnknown(_)
    );
    // A blob digest is not a manifest.
    assert_err!(
        d.tag_manifest(&r, &tag("v2"), &config.digest).await,
        Error::ManifestUnknown(_)
    );
    ok!(d.untag_manifest(&r, &tag("v1")).await);
    assert_err!(
        d.resolve_tag(&r, &tag("v1")).await,
        Error::ManifestUnknown(_)
    );
    assert_err!(
        d.get_manifest(&r, &tag_ref("v1")).await,
        Error::ManifestUnknown(_)
    );
    assert_err!(
        d.untag_manifest(&r, &tag("v1")).await,
        Error::ManifestUnknown(_)
    );
    assert_err!(
        d.untag_manifest(&r, &tag("never")).await,
        Error::ManifestUnknown(_)
    );
    assert_eq!(
        ok!(d.get_manifest(&r, &Reference::Digest(digest.clone())).await).bytes,
        bytes
    );
    assert_eq!(
        ok!(d.get_tags(&r, None, None).await).tags,
        ["V1_Upper-case.x"]
    );
}

/// Tags are listed in lexical (byte) order with `n`/`last` pagination (spec "Listing Tags").
pub async fn tags_sorted_and_paginated<F: DriverFactory>(f: &F) {
    let s = Setup::new(f).await;
    let d = &*s.d;
    let r = repo("suite/t");
    let (m, _) = push_image(d, &r, &tag_ref("v1"), 1).await;
    // Pushed in a scrambled order.
    for t in [
        "v10", "latest", "v1.0", "_u", "V2", "a-b", "v2", "a", "v1.0.1", "v1-rc", "9",
    ] {
        ok!(d.tag_manifest(&r, &tag(t), &m.digest).await);
    }
    let all = [
        "9", "V2", "_u", "a", "a-b", "latest", "v1", "v1-rc", "v1.0", "v1.0.1", "v10", "v2",
    ];
    let list = ok!(d.get_tags(&r, None, None).await);
    assert_eq!(list.tags, all, "full list in lexical order");
    assert!(!list.has_more, "no n: nothing more");

    // n = 0: empty.
    let list = ok!(d.get_tags(&r, Some(0), None).await);
    assert!(
        list.tags.is_empty(),
        "n=0 must give no tag, got {:?}",
        list.tags
    );
    // Pages of every size, walked with `last`.
    for n in 1..=all.len() + 1 {
        let mut got = Vec::new();
        let mut last: Option<String> = None;
        let mut pages = 0;
        loop {
            let page = ok!(d.get_tags(&r, Some(n), last.as_deref()).await);
            pages += 1;
            assert!(page.tags.len() <= n, "page longer than n={n}");
            got.extend(page.tags.iter().cloned());
            if !page.has_more {
                break;
            }
            assert_eq!(
                page.tags.len(),
                n,
                "a page with has_more must be full (n={n})"
            );
            last = page.tags.last().cloned();
            assert!(pages <= all.len(), "pagination does not end (n={n})");
        }
        assert_eq!(got, all, "walking pages of n={n}");
        assert_eq!(pages, all.len().div_ceil(n).max(1), "page count for n={n}");
    }
    // Exact last page: has_more is false.
    let page = ok!(d.get_tags(&r, Some(3), Some("v1.0")).await);
    assert_eq!(page.tags, ["v1.0.1", "v10", "v2"]);
    assert!(!page.has_more, "exact last page must not announce more");
    let page = ok!(d.get_tags(&r, Some(2), Some("v1.0")).await);
    assert_eq!(page.tags, ["v1.0.1", "v10"]);
    assert!(page.has_more);
    // `last` without `n`: everything after it.
    let page = ok!(d.get_tags(&r, None, Some("v1")).await);
    assert_eq!(page.tags, ["v1-rc", "v1.0", "v1.0.1", "v10", "v2"]);
    assert!(!page.has_more);
    // `last` that is not a tag: lexical position still applies.
    let page = ok!(d.get_tags(&r, None, Some("b")).await);
    assert_eq!(
        page.tags,
        ["latest", "v1", "v1-rc", "v1.0", "v1.0.1", "v10", "v2"]
    );
    let page = ok!(d.get_tags(&r, Some(2), Some("")).await);
    assert_eq!(page.tags, ["9", "V2"]);
    // `last` is only ever compared, never used as a path.
    let page = ok!(d.get_tags(&r, None, Some("../../../etc")).await);
    assert_eq!(page.tags, all);
    let page = ok!(d.get_tags(&r, None, Some("a/b")).await);
    assert_eq!(
        page.tags,
        ["latest", "v1", "v1-rc", "v1.0", "v1.0.1", "v10", "v2"]
    );
    let page = ok!(d.get_tags(&r, None, Some("/")).await);
    assert_eq!(page.tags, all);
    // `last` past the end: empty.
    for last in ["v2", "v3", "zzz", "~"] {
        let page = ok!(d.get_tags(&r, None, Some(last)).await);
        assert!(page.tags.is_empty(), "after {last:?}: {:?}", page.tags);
        assert!(!page.has_more);
        let page = ok!(d.get_tags(&r, Some(5), Some(last)).await);
        assert!(
            page.tags.is_empty(),
            "after {last:?} with n: {:?}",
            page.tags
        );
    }
    // Huge n.
    let page = ok!(d.get_tags(&r, Some(usize::MAX), None).await);
    assert_eq!(page.tags, all);
    assert!(!page.has_more);
}

/// `get_tags` of a repository that does not exist is `NAME_UNKNOWN`, with or without `n` and
/// `last`; a repository holding only blobs exists and has no tags.
pub async fn tags_unknown_repository<F: DriverFactory>(f: &F) {
    let s = Setup::new(f).await;
    let d = &*s.d;
    let r = repo("suite/none");
    assert_err!(d.get_tags(&r, None, None).await, Error::NameUnknown(_));
    assert_err!(d.get_tags(&r, Some(0), None).await, Error::NameUnknown(_));
    assert_err!(
        d.get_tags(&r, Some(10), Some("a")).await,
        Error::NameUnknown(_)
    );
    // A repository whose name extends an existing one is still unknown.
    let (parent, child) = (repo("suite/p"), repo("suite/p/child"));
    push_image(d, &parent, &tag_ref("v1"), 1).await;
    assert_err!(d.get_tags(&child, None, None).await, Error::NameUnknown(_));
    assert_err!(
        d.get_tags(&repo("suite/p2"), None, None).await,
        Error::NameUnknown(_)
    );
    assert_eq!(ok!(d.get_tags(&parent, None, None).await).tags, ["v1"]);
    // Only a blob: known, empty.
    let blobs = repo("suite/blobsonly");
    push_blob(d, &blobs, b"x", CONFIG_TYPE).await;
    let list = ok!(d.get_tags(&blobs, None, None).await);
    assert!(list.tags.is_empty());
    assert!(!list.has_more);
}

/// Concurrent `put_manifest` and `tag_manifest` of the same tag: all succeed and the tag ends
/// on one of the manifests, served consistently by tag.
pub async fn tags_concurrent_same_tag<F: DriverFactory>(f: &F) {
    let s = Setup::new(f).await;
    let r = repo("suite/t");
    let config = push_blob(&*s.d, &r, b"{}", CONFIG_TYPE).await;
    let mut candidates = Vec::new();
    let mut tasks = Vec::new();
    for i in 0..8u32 {
        let bytes = image_manifest(
            &config,
            &[],
            None,
            None,
            Some(serde_json::json!({ "i": i.to_string() })),
        );
        let digest = sha256(&bytes);
        candidates.push((digest.clone(), bytes.clone()));
        let (d, r) = (Arc::clone(&s.d), r.clone());
        tasks.push(tokio::spawn(async move {
            if i % 2 == 0 {
                d.put_manifest(&r, &tag_ref("race"), None, bytes)
                    .await
                    .map(|_| ())
            } else {
                // Stored by digest first, then tagged.
                d.put_manifest(&r, &Reference::Digest(digest.clone()), None, bytes)
                    .await?;
                d.tag_manifest(&r, &tag("race"), &digest).await
            }
        }));
    }
    for t in tasks {
        ok!(t.await.expect("task panicked"));
    }
    let d = &*s.d;
    let winner = ok!(d.resolve_tag(&r, &tag("race")).await);
    let (_, bytes) = candidates
        .iter()
        .find(|(digest, _)| *digest == winner)
        .unwrap_or_else(|| panic!("tag points to {winner}, which no task pushed"));
    let m = ok!(d.get_manifest(&r, &tag_ref("race")).await);
    assert_eq!(&m.bytes, bytes);
    assert_eq!(m.info.digest, winner);
    assert_eq!(ok!(d.get_tags(&r, None, None).await).tags, ["race"]);
    for (digest, bytes) in &candidates {
        let m = ok!(d.get_manifest(&r, &Reference::Digest(digest.clone())).await);
        assert_eq!(&m.bytes, bytes);
    }
}

/// More tags than an object store returns in one listing page (1000): listing, pagination
/// and `has_more` stay exact across the store's page boundaries.
pub async fn tags_many<F: DriverFactory>(f: &F) {
    use futures::StreamExt as _;
    let s = Setup::new(f).await;
    let d = &*s.d;
    let r = repo("suite/many");
    let (m, _) = push_image(d, &r, &tag_ref("base"), 1).await;
    let count = 1105;
    let mut names: Vec<String> = (0..count).map(|i| format!("t-{i}")).collect();
    futures::stream::iter(names.clone())
        .map(|name| {
            let (r, digest) = (&r, &m.digest);
            async move { d.tag_manifest(r, &tag(&name), digest).await }
        })
        .buffer_unordered(16)
        .for_each(|res| async move { ok!(res) })
        .await;
    names.push("base".to_owned());
    names.sort();
    let total = names.len();

    let list = ok!(d.get_tags(&r, None, None).await);
    assert_eq!(list.tags.len(), total, "all tags listed");
    assert!(list.tags == names, "tags in lexical order");
    assert!(!list.has_more);
    let page = ok!(d.get_tags(&r, Some(1000), None).await);
    assert!(page.tags == names[..1000]);
    assert!(page.has_more);
    let page = ok!(d.get_tags(&r, Some(1000), Some(&names[999])).await);
    assert!(page.tags == names[1000..]);
    assert!(!page.has_more);
    let page = ok!(d.get_tags(&r, Some(total), None).await);
    assert_eq!(page.tags.len(), total);
    assert!(!page.has_more, "n = number of tags: nothing more");
    let page = ok!(d.get_tags(&r, Some(total - 1), None).await);
    assert_eq!(page.tags.len(), total - 1);
    assert!(page.has_more);
    let page = ok!(d.get_tags(&r, None, Some(&names[1049])).await);
    assert!(page.tags == names[1050..]);
    let page = ok!(d.get_tags(&r, Some(3), Some(&names[998])).await);
    assert!(page.tags == names[999..1002]);
    assert!(page.has_more);

    // Deleting the manifest removes every one of its tags, and only those.
    let (other, _) = push_image(d, &r, &tag_ref("keep"), 2).await;
    ok!(d.tag_manifest(&r, &tag("t-7"), &other.digest).await);
    ok!(d.delete_manifest(&r, &m.digest).await);
    assert_eq!(ok!(d.get_tags(&r, None, None).await).tags, ["keep", "t-7"]);
}
