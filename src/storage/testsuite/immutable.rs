//! Immutable tag cases, on drivers opened with [`DriverFactory::open_configured`] (tags `v*`
//! below `suite/immutable/` immutable): never moved, never deleted, created once however
//! many pushes race for them, in one instance or in two on the same storage.

use std::sync::Arc;

use bytes::Bytes;

use crate::error::Error;
use crate::oci::{Digest, Reference};
use crate::storage::StorageDriver;

use super::{
    CONFIG_TYPE, DriverFactory, Setup, assert_err, image_manifest, ok, push_blob, push_image, repo,
    sha256, tag, tag_ref,
};

/// How many tags the racing cases create.
const ROUNDS: u32 = 6;

/// A push of another manifest under an immutable tag, tagging another manifest with it,
/// untagging it and deleting the manifest it names are all `DENIED` and change nothing;
/// pushing or tagging the same manifest again is accepted; other tags and other
/// repositories' tags stay mutable.
pub async fn immutable_tags_never_move<F: DriverFactory>(f: &F) {
    let s = Setup::new(f).await;
    let d = &ok!(f.open_configured(&s.storage).await);
    let r = repo("suite/immutable/app");
    let (m1, b1) = push_image(d, &r, &tag_ref("v1"), 41).await;
    ok!(d.put_manifest(&r, &tag_ref("v1"), None, b1.clone()).await);
    ok!(d.tag_manifest(&r, &tag("v1"), &m1.digest).await);

    let config = push_blob(d, &r, b"{\"immutable\":1}", CONFIG_TYPE).await;
    let other = image_manifest(&config, &[], None, None, None);
    assert_err!(
        d.put_manifest(&r, &tag_ref("v1"), None, other.clone())
            .await,
        Error::Denied(_)
    );
    assert_err!(
        d.get_manifest(&r, &Reference::Digest(sha256(&other))).await,
        Error::ManifestUnknown(_)
    );
    let (m2, _) = push_image(d, &r, &tag_ref("latest"), 42).await;
    assert_err!(
        d.tag_manifest(&r, &tag("v1"), &m2.digest).await,
        Error::Denied(_)
    );
    assert_err!(d.untag_manifest(&r, &tag("v1")).await, Error::Denied(_));
    assert_err!(
        d.untag_manifest(&r, &tag("v9")).await,
        Error::ManifestUnknown(_)
    );
    // A delete of the manifest is refused before it removes anything, mutable tags included.
    ok!(d.tag_manifest(&r, &tag("stable"), &m1.digest).await);
    assert_err!(d.delete_manifest(&r, &m1.digest).await, Error::Denied(_));
    assert_eq!(ok!(d.resolve_tag(&r, &tag("stable")).await), m1.digest);
    assert_eq!(ok!(d.get_manifest(&r, &tag_ref("v1")).await).bytes, b1);

    // Mutable tags move and go with their manifest.
    ok!(d.tag_manifest(&r, &tag("stable"), &m2.digest).await);
    ok!(d.delete_manifest(&r, &m2.digest).await);
    for gone in ["stable", "latest"] {
        assert_err!(
            d.resolve_tag(&r, &tag(gone)).await,
            Error::ManifestUnknown(_)
        );
    }
    // The rules name repositories: the same tag elsewhere moves.
    let elsewhere = repo("suite/mutable/app");
    push_image(d, &elsewhere, &tag_ref("v1"), 43).await;
    let (moved, _) = push_image(d, &elsewhere, &tag_ref("v1"), 44).await;
    assert_eq!(
        ok!(d.resolve_tag(&elsewhere, &tag("v1")).await),
        moved.digest
    );
    ok!(d.untag_manifest(&elsewhere, &tag("v1")).await);
    assert_eq!(ok!(d.get_tags(&r, None, None).await).tags, ["v1"]);
}

/// Pushes of different manifests under one new immutable tag, at once in one instance: one
/// is acknowledged, the others are `DENIED`, and the tag names the one acknowledged.
pub async fn immutable_tag_pushes_racing_in_one_instance<F: DriverFactory>(f: &F) {
    let s = Setup::new(f).await;
    let d = Arc::new(ok!(f.open_configured(&s.storage).await));
    race_pushes(&d, &d, "one").await;
}

/// As [`immutable_tag_pushes_racing_in_one_instance`], each push in another instance on the
/// same storage (another process): one creates the tag, the other is refused.
pub async fn immutable_tag_pushes_racing_in_two_instances<F: DriverFactory>(f: &F) {
    let s = Setup::new(f).await;
    let a = Arc::new(ok!(f.open_configured(&s.storage).await));
    let b = Arc::new(ok!(f.open_configured(&s.storage).await));
    race_pushes(&a, &b, "two").await;
    // A third instance, with nothing cached, agrees.
    let c = ok!(f.open_configured(&s.storage).await);
    let r = repo("suite/immutable/race-two");
    let tags = ok!(c.get_tags(&r, None, None).await).tags;
    assert_eq!(tags.len(), ROUNDS as usize, "{tags:?}");
    for name in tags {
        ok!(c.get_manifest(&r, &tag_ref(&name)).await);
    }
}

/// Each round, instance `a` deletes a manifest while instance `b` pushes it under a new
/// immutable tag. Whichever comes first, the push is acknowledged and its tag then names a
/// manifest that is stored (a delete that came first is undone for it; one that came after
/// is `DENIED`): never a tag naming a deleted manifest, never a tag removed.
pub async fn manifest_deletes_racing_immutable_tag_pushes<F: DriverFactory>(f: &F) {
    let s = Setup::new(f).await;
    let a = Arc::new(ok!(f.open_configured(&s.storage).await));
    let b = Arc::new(ok!(f.open_configured(&s.storage).await));
    let r = repo("suite/immutable/deletes");
    let config = push_blob(&*a, &r, b"{\"deletes\":1}", CONFIG_TYPE).await;
    for round in 0..ROUNDS {
        let bytes = image_manifest(&config, &[], None, None, Some(annotation(round)));
        let digest = sha256(&bytes);
        ok!(a
            .put_manifest(&r, &Reference::Digest(digest.clone()), None, bytes.clone())
            .await);
        let name = format!("v{round}");
        let delete = tokio::spawn({
            let (a, r, digest) = (Arc::clone(&a), r.clone(), digest.clone());
            async move { a.delete_manifest(&r, &digest).await }
        });
        let push = tokio::spawn({
            let (b, r, name) = (Arc::clone(&b), r.clone(), name.clone());
            async move { b.put_manifest(&r, &tag_ref(&name), None, bytes).await }
        });
        let pushed = push.await.expect("push task");
        assert_eq!(ok!(pushed).digest, digest, "round {round}");
        match delete.await.expect("delete task") {
            Ok(()) | Err(Error::Denied(_)) => {}
            Err(other) => panic!("round {round}: the delete failed: {other}"),
        }
        let c = ok!(f.open_configured(&s.storage).await);
        assert_eq!(ok!(c.resolve_tag(&r, &tag(&name)).await), digest);
        let served = ok!(c.get_manifest(&r, &tag_ref(&name)).await);
        assert_eq!(served.info.digest, digest, "round {round}");
        ok!(c.get_manifest(&r, &Reference::Digest(digest)).await);
    }
}

/// `ROUNDS` times, `a` and `b` push two different manifests under one new immutable tag at
/// once (in `suite/immutable/race-<label>`): exactly one is acknowledged, the other is
/// `DENIED`, and both instances resolve the tag to the one acknowledged.
async fn race_pushes<D: StorageDriver + 'static>(a: &Arc<D>, b: &Arc<D>, label: &str) {
    let r = repo(&format!("suite/immutable/race-{label}"));
    let config = push_blob(&**a, &r, b"{\"race\":1}", CONFIG_TYPE).await;
    for round in 0..ROUNDS {
        let name = format!("v{round}");
        let candidates: Vec<Bytes> = (0..2)
            .map(|i| image_manifest(&config, &[], None, None, Some(annotation(round * 2 + i))))
            .collect();
        let tasks: Vec<_> = [a, b]
            .into_iter()
            .zip(candidates.clone())
            .map(|(d, bytes)| {
                let (d, r, name) = (Arc::clone(d), r.clone(), name.clone());
                tokio::spawn(async move { d.put_manifest(&r, &tag_ref(&name), None, bytes).await })
            })
            .collect();
        let mut acknowledged: Vec<Digest> = Vec::new();
        for task in tasks {
            match task.await.expect("push task") {
                Ok(outcome) => acknowledged.push(outcome.digest),
                Err(Error::Denied(_)) => {}
                Err(other) => panic!("round {round}: a push failed: {other}"),
            }
        }
        assert_eq!(acknowledged.len(), 1, "round {round}: {acknowledged:?}");
        let winner = &acknowledged[0];
        assert!(candidates.iter().any(|c| sha256(c) == *winner));
        for d in [a, b] {
            assert_eq!(ok!(d.resolve_tag(&r, &tag(&name)).await), *winner);
        }
    }
}

fn annotation(n: u32) -> serde_json::Value {
    serde_json::json!({ "n": n.to_string() })
}
