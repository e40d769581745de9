//! Clause 5: tags.

use bytes::Bytes;

use crate::oci::Digest;
use crate::storage::backend::{Backend, TagTarget};
use crate::storage::layout::{self, Key};
use crate::storage::testsuite::{ok, sha256, tag};

use super::{BackendFactory, Setup, repo};

/// A manifest record as the engine stores it: `<digest> <media type>\n<bytes>`.
fn record(content: &[u8]) -> (Digest, Bytes) {
    let digest = sha256(content);
    let mut record = format!("{digest} application/vnd.oci.image.manifest.v1+json\n").into_bytes();
    record.extend_from_slice(content);
    (digest, Bytes::from(record))
}

/// The digest a tag's content starts with (its first word).
fn first_word(content: &[u8]) -> Option<Digest> {
    let end = content
        .iter()
        .position(|&c| c == b' ' || c == b'\n')
        .unwrap_or(content.len());
    Digest::parse(std::str::from_utf8(&content[..end]).ok()?.trim()).ok()
}

/// Clause 5: after `write_tag`, the tag reads as content starting with the target's digest;
/// a staged record reads at once and stays; a tag moves when written again.
pub async fn contract_tags<F: BackendFactory>(factory: &F) {
    let s = Setup::new(factory).await;
    let b = &*s.d;
    let r = repo("contract/tags");
    let latest = layout::tag(&r, &tag("latest"));

    // To a written record.
    let (first, first_record) = record(br#"{"n":1}"#);
    let first_key = layout::manifest(&r, &first);
    ok!(b.write(&first_key, first_record.clone()).await);
    let to_first = TagTarget {
        digest: &first,
        record: &first_key,
    };
    ok!(b.write_tag(&latest, to_first).await);
    let content = ok!(b.read(&latest).await).expect("the tag is stored");
    assert_eq!(
        first_word(&content),
        Some(first.clone()),
        "the tag names its manifest"
    );

    // To a staged record (a push by tag): readable before the tag, the tag moved after.
    let (second, second_record) = record(br#"{"n":2}"#);
    let second_key = layout::manifest(&r, &second);
    ok!(b.stage_record(&second_key, second_record.clone()).await);
    assert_eq!(
        ok!(b.read(&second_key).await),
        Some(second_record.clone()),
        "a staged record reads at once"
    );
    assert!(ok!(b.exists(&second_key).await));
    let to_second = TagTarget {
        digest: &second,
        record: &second_key,
    };
    ok!(b.write_tag(&latest, to_second).await);
    assert_eq!(ok!(b.read(&second_key).await), Some(second_record));
    let content = ok!(b.read(&latest).await).expect("the tag is stored");
    assert_eq!(first_word(&content), Some(second.clone()), "the tag moved");

    // A new tag of a staged record.
    let (third, third_record) = record(br#"{"n":3}"#);
    let third_key = layout::manifest(&r, &third);
    ok!(b.stage_record(&third_key, third_record.clone()).await);
    let fresh = layout::tag(&r, &tag("fresh"));
    let to_third = TagTarget {
        digest: &third,
        record: &third_key,
    };
    ok!(b.write_tag(&fresh, to_third).await);
    let content = ok!(b.read(&fresh).await).expect("the new tag is stored");
    assert_eq!(first_word(&content), Some(third), "the new tag names it");
    assert_eq!(ok!(b.read(&third_key).await), Some(third_record));

    // Back to the first; a second tag of the same manifest; the records are untouched.
    ok!(b.write_tag(&latest, to_first).await);
    let stable = layout::tag(&r, &tag("stable"));
    ok!(b.write_tag(&stable, to_first).await);
    for key in [&latest, &stable] {
        let content = ok!(b.read(key).await).expect("stored");
        assert_eq!(first_word(&content), Some(first.clone()), "{key:?}");
    }
    assert_eq!(ok!(b.read(&first_key).await), Some(first_record));
    // Removing a tag leaves its record.
    ok!(b.remove(&latest).await);
    assert_eq!(ok!(b.read(&latest).await), None);
    assert!(ok!(b.exists(&first_key).await));
}

/// Clause 5: `create_tag` stores a tag only where none is: `true` and the tag names its
/// target, then `false` and the tag unchanged, however it is asked again; after the tag's
/// removal it creates it again.
pub async fn contract_create_tag<F: BackendFactory>(factory: &F) {
    let s = Setup::new(factory).await;
    let b = &*s.d;
    let r = repo("contract/create-tag");
    let v1 = layout::tag(&r, &tag("v1"));
    let (first, first_record) = record(br#"{"create":1}"#);
    let (second, second_record) = record(br#"{"create":2}"#);
    let (first_key, second_key) = (layout::manifest(&r, &first), layout::manifest(&r, &second));
    ok!(b.write(&first_key, first_record).await);
    ok!(b.stage_record(&second_key, second_record).await);
    let to_first = TagTarget {
        digest: &first,
        record: &first_key,
    };
    let to_second = TagTarget {
        digest: &second,
        record: &second_key,
    };
    assert!(
        create_locked(b, &v1, to_first).await,
        "an absent tag is created"
    );
    for (target, what) in [(to_second, "another manifest"), (to_first, "the same")] {
        assert!(
            !create_locked(b, &v1, target).await,
            "a stored tag is not created again ({what})"
        );
        let content = ok!(b.read(&v1).await).expect("the tag is stored");
        assert_eq!(
            first_word(&content),
            Some(first.clone()),
            "unchanged ({what})"
        );
    }
    ok!(b.remove(&v1).await);
    assert!(
        create_locked(b, &v1, to_second).await,
        "a removed tag is created again"
    );
    let content = ok!(b.read(&v1).await).expect("the tag is stored");
    assert_eq!(
        first_word(&content),
        Some(second),
        "the new tag names its manifest"
    );
}

/// Clause 5 across processes: two instances on the same storage create the same new tag at
/// once, each with its own target, holding their tag locks as the engine does: one gets
/// `true` and the tag names its target.
pub async fn contract_create_tag_once_across_instances<F: BackendFactory>(factory: &F) {
    let s = Setup::new(factory).await;
    let (a, b) = (&*s.d, &s.second_instance().await);
    let r = repo("contract/create-tag-race");
    let (first, first_record) = record(br#"{"race":1}"#);
    let (second, second_record) = record(br#"{"race":2}"#);
    let (first_key, second_key) = (layout::manifest(&r, &first), layout::manifest(&r, &second));
    ok!(a.write(&first_key, first_record).await);
    ok!(a.write(&second_key, second_record).await);
    for round in 0..8 {
        let key = layout::tag(&r, &tag(&format!("v{round}")));
        let to = |digest, record| TagTarget { digest, record };
        let (by_a, by_b) = futures::join!(
            create_locked(a, &key, to(&first, &first_key)),
            create_locked(b, &key, to(&second, &second_key))
        );
        assert!(
            by_a != by_b,
            "round {round}: created by a {by_a}, by b {by_b}"
        );
        let content = ok!(a.read(&key).await).expect("the tag is stored");
        let winner = if by_a { &first } else { &second };
        assert_eq!(first_word(&content).as_ref(), Some(winner), "round {round}");
    }
}

/// `create_tag` as the engine calls it: holding the tag's lease.
async fn create_locked<B: Backend>(b: &B, key: &Key, target: TagTarget<'_>) -> bool {
    let _lease = ok!(b.lock_tag(key).await);
    ok!(b.create_tag(key, target).await)
}
