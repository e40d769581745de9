//! Tag listings: prefix boundaries and pagination across `ListObjectsV2` pages.

use futures::StreamExt;
use marina_distribution::oci::Tag;
use marina_distribution::storage::StorageDriver;

use crate::env::s3_or_skip;
use crate::helpers::{push_manifest, repo};

#[tokio::test]
async fn tags_listing_prefix_boundaries_and_pagination() {
    let env = s3_or_skip!("tags_listing_prefix_boundaries_and_pagination");
    let d = env.driver("tags").await;
    let r = repo("s3/tags");
    let nested = repo("s3/tags/v1");
    let manifest = push_manifest(&d, &r, None, "v1").await;
    push_manifest(&d, &nested, None, "inner").await;
    let mut want: Vec<String> = [
        "v1", "v1.0", "v1.0.1", "v10", "v1-rc", "v1_x", "V1", "a", "z",
    ]
    .into_iter()
    .map(str::to_owned)
    .collect();
    // Enough tags to need several ListObjectsV2 pages (1,000 keys each).
    want.extend((0..1050).map(|i| format!("t{i:04}")));
    futures::stream::iter(want.clone())
        .for_each_concurrent(16, |t| {
            let (d, r, manifest) = (&d, &r, &manifest);
            async move {
                d.tag_manifest(r, &Tag::parse(&t).unwrap(), manifest)
                    .await
                    .unwrap();
            }
        })
        .await;
    want.sort();
    let all = d.get_tags(&r, None, None).await.unwrap();
    assert_eq!(
        all.tags, want,
        "tags of the nested repository must not leak in"
    );
    assert!(!all.has_more);
    // `last` is exclusive and `v1` is not a prefix match for `v1.0`.
    let page = d.get_tags(&r, Some(2), Some("v1")).await.unwrap();
    assert_eq!(page.tags, vec!["v1-rc", "v1.0"]);
    assert!(page.has_more);
    let page = d.get_tags(&r, Some(3), Some("v1.0")).await.unwrap();
    assert_eq!(page.tags, vec!["v1.0.1", "v10", "v1_x"]);
    // Page through everything with n=7.
    let mut seen = Vec::new();
    let mut last: Option<String> = None;
    loop {
        let page = d.get_tags(&r, Some(7), last.as_deref()).await.unwrap();
        seen.extend(page.tags.iter().cloned());
        last = page.tags.last().cloned();
        if !page.has_more {
            break;
        }
    }
    assert_eq!(seen, want);
    // A page crossing a ListObjectsV2 page boundary.
    let page = d.get_tags(&r, Some(1005), Some("a")).await.unwrap();
    assert_eq!(want[1], "a");
    assert_eq!(page.tags, want[2..1007].to_vec());
    assert!(page.has_more);
    assert_eq!(
        d.get_tags(&nested, None, None).await.unwrap().tags,
        vec!["inner"]
    );
}
