//! Collections over more repositories than a phase visits at once: every repository's
//! garbage goes and everything else stays, whatever order the visits end in; the visits do
//! overlap; the catalog's walk, which lists directories ahead, keeps its order and paging.

use super::*;
use crate::storage::engine::lifecycle::walk::REPOSITORIES_IN_FLIGHT;

/// More repositories than are visited at once, some nested in others.
fn repositories() -> Vec<RepositoryName> {
    let mut names = Vec::new();
    for i in 0..2 * REPOSITORIES_IN_FLIGHT + 3 {
        names.push(format!("many/r{i:02}"));
        if i % 4 == 0 {
            names.push(format!("many/r{i:02}/sub"));
        }
    }
    names
        .iter()
        .map(|n| RepositoryName::parse(n).unwrap())
        .collect()
}

async fn put_in(e: &Gc, repo: &RepositoryName, reference: Reference, bytes: Bytes) -> Digest {
    e.put_manifest(repo, &reference, Some(media_types::OCI_MANIFEST), bytes)
        .await
        .unwrap()
        .digest
}

/// What one repository holds: a tagged image, an untagged one with a layer of its own, and
/// a blob nothing references.
struct Contents {
    config: Digest,
    layer: Digest,
    untagged: Digest,
    untagged_layer: Digest,
    stray: Digest,
}

/// Fills the `i`th repository (`manifest` describes a 2-byte config and a 5-byte layer).
async fn fill(e: &Gc, repo: &RepositoryName, i: usize) -> Contents {
    let config = push_blob_to(e, repo, Bytes::from_static(b"{}")).await;
    let layer = push_blob_to(e, repo, Bytes::from(format!("l{i:04}"))).await;
    let untagged_layer = push_blob_to(e, repo, Bytes::from(format!("u{i:04}"))).await;
    let stray = push_blob_to(e, repo, Bytes::from(format!("stray blob of {repo}"))).await;
    put_in(
        e,
        repo,
        Reference::Tag(tag("v1")),
        manifest(&config, &layer, 1),
    )
    .await;
    let untagged = put_in(
        e,
        repo,
        Reference::Digest(Digest::compute(
            DigestAlgorithm::Sha256,
            &manifest(&config, &untagged_layer, 2),
        )),
        manifest(&config, &untagged_layer, 2),
    )
    .await;
    Contents {
        config,
        layer,
        untagged,
        untagged_layer,
        stray,
    }
}

#[tokio::test]
async fn a_collection_reclaims_the_garbage_of_every_repository_and_nothing_else() {
    let e = engine();
    let names = repositories();
    let mut contents = Vec::new();
    for (i, repo) in names.iter().enumerate() {
        contents.push(fill(&e, repo, i).await);
    }
    let report = e.collect_garbage(&options(true)).await.unwrap();
    let n = names.len() as u64;
    assert_eq!(
        (report.manifests, report.blobs),
        (n, 2 * n),
        "an untagged manifest, its own layer and a stray blob in each: {report:?}"
    );
    for (repo, c) in names.iter().zip(&contents) {
        let tagged = e.resolve_tag(repo, &tag("v1")).await;
        assert!(tagged.is_ok(), "{repo}: {tagged:?}");
        for kept in [&c.config, &c.layer] {
            e.stat(repo, kept)
                .await
                .expect("a blob of the tagged image");
        }
        for gone in [&c.untagged_layer, &c.stray] {
            let stat = e.stat(repo, gone).await;
            assert!(
                matches!(stat, Err(Error::BlobUnknown(_))),
                "{repo}: {stat:?}"
            );
        }
        let untagged = e
            .get_manifest(repo, &Reference::Digest(c.untagged.clone()))
            .await;
        assert!(
            untagged.is_err(),
            "{repo}: the untagged manifest is deleted"
        );
    }
    let again = e.collect_garbage(&options(true)).await.unwrap();
    assert_eq!((again.manifests, again.blobs, again.links), (0, 0, 0));
}

#[tokio::test]
async fn the_repositories_of_a_phase_are_visited_at_once() {
    let e = engine();
    let names = repositories();
    for (i, repo) in names[..3].iter().enumerate() {
        fill(&e, repo, i).await;
    }
    // The first repository's visit in phase 2 stops at its links; the second one's reaches
    // its links meanwhile.
    let mut first = e
        .backend()
        .gate(Op::List, When::Before, "many/r00/_layers/");
    let mut second = e
        .backend()
        .gate(Op::List, When::Before, "many/r01/_layers/");
    let gc = tokio::spawn({
        let e = e.clone();
        async move { e.collect_garbage(&options(false)).await }
    });
    first.reached().await;
    let overlapped = tokio::time::timeout(Duration::from_secs(10), second.reached()).await;
    first.resume();
    second.resume();
    assert!(
        overlapped.is_ok(),
        "the second repository waited for the first one's visit"
    );
    let report = gc.await.unwrap().unwrap();
    assert_eq!(report.blobs, 3, "the stray blobs: {report:?}");
}

#[tokio::test]
async fn the_catalog_lists_every_repository_in_order_a_page_at_a_time() {
    let e = engine();
    let names = repositories();
    for repo in &names {
        push_blob_to(&e, repo, Bytes::from(format!("a blob of {repo}"))).await;
    }
    let expected: Vec<String> = names.iter().map(|n| n.as_str().to_owned()).collect();
    let all = e.repositories(None, None).await.unwrap();
    assert_eq!(all.repositories, expected);
    assert!(!all.has_more);
    let mut paged = Vec::new();
    let mut last: Option<String> = None;
    loop {
        let page = e.repositories(Some(3), last.as_deref()).await.unwrap();
        paged.extend(page.repositories.iter().cloned());
        last = page.repositories.last().cloned();
        if !page.has_more {
            break;
        }
    }
    assert_eq!(paged, expected);
}
