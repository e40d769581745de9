//! Clause 4: listing.

use crate::storage::backend::Backend;
use crate::storage::layout::{self, Dir};
use crate::storage::testsuite::{ok, sha256, tag};

use super::{BackendFactory, Setup, bytes, repo};

/// Tag names whose byte order differs from a case-insensitive or "natural" order.
const NAMES: [&str; 10] = ["a.b", "B", "a", "_x", "a-b", "0", "a_b", "a10", "a9", "Z"];

/// `NAMES` in ascending byte order.
fn sorted() -> Vec<String> {
    let mut names: Vec<String> = NAMES.iter().map(|n| (*n).to_owned()).collect();
    names.sort();
    names
}

/// Writes the tags `NAMES` of `repo_name`, and beside them (same directory, no `tag-`
/// prefix) a manifest record, which a listing of tags must not name.
async fn tags_and_a_record<B: Backend>(b: &B, repo_name: &str) -> Dir {
    let r = repo(repo_name);
    for name in NAMES {
        ok!(b
            .write(&layout::tag(&r, &tag(name)), bytes(name.as_bytes()))
            .await);
    }
    ok!(b
        .write(&layout::manifest(&r, &sha256(b"record")), bytes(b"x"))
        .await);
    layout::tags_dir(&r)
}

/// Clause 4: the names directly inside a directory with its name prefix, cut off, in
/// ascending byte order; objects deeper down or without the prefix are not listed, but
/// `any_under` sees them at any depth.
pub async fn contract_listing<F: BackendFactory>(factory: &F) {
    let s = Setup::new(factory).await;
    let b = &*s.d;
    let r = repo("contract/listing");
    let empty = repo("contract/listing/empty");
    assert!(ok!(b.list(&layout::tags_dir(&empty), None, None).await).is_empty());
    assert!(!ok!(b.any_under(&layout::manifests_dir(&empty)).await));

    // Only a record: no tag to list or find, though the directory holds an object.
    ok!(b
        .write(&layout::manifest(&r, &sha256(b"record")), bytes(b"x"))
        .await);
    assert!(ok!(b.list(&layout::tags_dir(&r), None, None).await).is_empty());
    assert!(!ok!(b.any_under(&layout::tags_dir(&r)).await));
    assert!(
        ok!(b.any_under(&layout::manifests_dir(&r)).await),
        "a record deeper down"
    );

    let tags = tags_and_a_record(b, "contract/listing").await;
    assert_eq!(
        ok!(b.list(&tags, None, None).await),
        sorted(),
        "tags in byte order"
    );
    assert!(ok!(b.any_under(&tags).await));
    // `_manifests` holds directories only: nothing directly inside it.
    let manifests = layout::manifests_dir(&r);
    assert!(
        ok!(b.list(&manifests, None, None).await).is_empty(),
        "deeper objects"
    );
    // Links are two levels below `_layers`.
    let layers = layout::layers_dir(&r);
    assert!(!ok!(b.any_under(&layers).await));
    ok!(b
        .write(&layout::layer_link(&r, &sha256(b"blob")), bytes(b"1"))
        .await);
    assert!(ok!(b.any_under(&layers).await), "a link two levels down");
    assert!(ok!(b.list(&layers, None, None).await).is_empty());
    // Entries `<alg>-<hex>` directly inside a referrers directory.
    let subject = sha256(b"subject");
    let referrers: Vec<_> = (0..3u8).map(|i| sha256(&[i])).collect();
    for referrer in &referrers {
        ok!(b
            .write(&layout::referrer(&r, &subject, referrer), bytes(b"{}"))
            .await);
    }
    let mut expected: Vec<String> = referrers.iter().map(layout::referrer_entry_name).collect();
    expected.sort();
    let dir = layout::referrers_dir(&r, &subject);
    assert_eq!(ok!(b.list(&dir, None, None).await), expected);
    // A removed object is not listed any more.
    ok!(b.remove(&layout::tag(&r, &tag("a"))).await);
    let mut left = sorted();
    left.retain(|n| n != "a");
    assert_eq!(ok!(b.list(&tags, None, None).await), left);
}

/// Clause 4: strictly after `start_after` (listed or not), at most `limit`; pages put
/// together give the whole listing.
pub async fn contract_listing_pages<F: BackendFactory>(factory: &F) {
    let s = Setup::new(factory).await;
    let b = &*s.d;
    let tags = tags_and_a_record(b, "contract/pages").await;
    let all = sorted();
    assert!(
        ok!(b.list(&tags, None, Some(0)).await).is_empty(),
        "limit 0"
    );
    assert_eq!(ok!(b.list(&tags, None, Some(3)).await), all[..3]);
    for (i, after) in all.iter().enumerate() {
        assert_eq!(
            ok!(b.list(&tags, Some(after), None).await),
            all[i + 1..],
            "after {after}"
        );
        let page = ok!(b.list(&tags, Some(after), Some(2)).await);
        assert_eq!(page, all[i + 1..(i + 3).min(all.len())], "2 after {after}");
    }
    // Names not listed: between two names, before all, after all.
    assert_eq!(
        ok!(b.list(&tags, Some("a0"), None).await),
        ["a10", "a9", "a_b"]
    );
    assert_eq!(ok!(b.list(&tags, Some(""), None).await), all);
    assert!(ok!(b.list(&tags, Some("~"), None).await).is_empty());
    let mut paged = Vec::new();
    let mut after: Option<String> = None;
    loop {
        let page = ok!(b.list(&tags, after.as_deref(), Some(3)).await);
        let Some(last) = page.last().cloned() else {
            break;
        };
        paged.extend(page);
        after = Some(last);
    }
    assert_eq!(paged, all, "pages of 3");
}
