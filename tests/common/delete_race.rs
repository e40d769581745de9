//! A manifest deleted by digest through one engine while another pushes it by tag (two
//! processes, or one), round after round: whatever order they end up in, a tag that is
//! listed afterwards resolves to the manifest. And a manifest deleted while another push
//! moves its tag to a new manifest: the move is kept. Shared by the filesystem, S3 and GCS
//! tests.
#![allow(dead_code)]

use bytes::Bytes;
use marina_distribution::StorageDriver;
use marina_distribution::oci::{Digest, DigestAlgorithm, Reference, RepositoryName, Tag};

const INDEX: &str = "application/vnd.oci.image.index.v1+json";

/// An image index referencing nothing, of its own by `round`.
fn index(round: u64) -> Bytes {
    Bytes::from(format!(
        r#"{{"schemaVersion":2,"mediaType":"{INDEX}","manifests":[],"annotations":{{"round":"{round}"}}}}"#
    ))
}

fn tag(name: String) -> Reference {
    Reference::Tag(Tag::parse(&name).expect("tag"))
}

/// Lets other tasks run `times` times.
async fn pause(times: u64) {
    for _ in 0..times {
        tokio::task::yield_now().await;
    }
}

/// Runs a delete and a push at once, one side started a little later: the push on even
/// rounds, the delete on odd ones, after 0 to 7 yields to the other (a round trip on the
/// object stores, a trip to the blocking pool on the filesystem), to sweep the moments of
/// the other. The delete must succeed; returns the push's outcome.
async fn raced<P>(
    round: u64,
    delete: impl std::future::Future<Output = marina_distribution::Result<()>>,
    push: impl std::future::Future<Output = marina_distribution::Result<P>>,
) -> marina_distribution::Result<P> {
    let (push_pause, delete_pause) = match round % 2 {
        0 => ((round / 2) % 8, 0),
        _ => (0, (round / 2) % 8),
    };
    let (deleted, pushed) = tokio::join!(
        async {
            pause(delete_pause).await;
            delete.await
        },
        async {
            pause(push_pause).await;
            push.await
        }
    );
    deleted.unwrap_or_else(|e| panic!("round {round}: the delete failed: {e:?}"));
    pushed
}

/// Pushes a manifest by tag `a<round>` through `first`, then deletes it by digest through
/// `first` while `second` pushes it again by tag `b<round>` (one of them started a little
/// later, to sweep the moments of the other), `rounds` times. Both must succeed, and every tag of
/// the round still listed must resolve to the manifest through both engines. (Before the
/// delete looked for tags again after removing the record, and a tagged push for its
/// record after writing the tag, a push tagging in between left a tag that was listed but
/// named a deleted manifest: 404 on every pull, for good.)
pub async fn assert_no_tag_outlives_its_manifest<D: StorageDriver>(
    first: &D,
    second: &D,
    repo: &RepositoryName,
    rounds: u64,
) {
    let mut raced_pushes_kept = 0;
    for round in 0..rounds {
        let bytes = index(round);
        let digest = Digest::compute(DigestAlgorithm::Sha256, &bytes);
        first
            .put_manifest(repo, &tag(format!("a{round}")), Some(INDEX), bytes.clone())
            .await
            .expect("first push");
        let pushed = raced(
            round,
            first.delete_manifest(repo, &digest),
            second.put_manifest(repo, &tag(format!("b{round}")), Some(INDEX), bytes.clone()),
        )
        .await;
        pushed.unwrap_or_else(|e| panic!("round {round}: the push failed: {e:?}"));
        // A repository the delete left empty (every round's delete ordered last) is unknown.
        let listed = match first.get_tags(repo, None, None).await {
            Ok(list) => list.tags,
            Err(marina_distribution::Error::NameUnknown(_)) => Vec::new(),
            Err(e) => panic!("round {round}: listing the tags: {e:?}"),
        };
        for name in [format!("a{round}"), format!("b{round}")] {
            if !listed.contains(&name) {
                continue;
            }
            raced_pushes_kept += usize::from(name.starts_with('b'));
            for (which, d) in [("first", first), ("second", second)] {
                let got = d.get_manifest(repo, &tag(name.clone())).await;
                match got {
                    Ok(m) => assert_eq!(m.bytes, bytes, "round {round}: tag {name}"),
                    Err(e) => panic!(
                        "round {round}: tag {name} is listed but does not resolve through \
                         the {which} engine: {e:?}"
                    ),
                }
            }
        }
    }
    eprintln!("delete race: {rounds} rounds, {raced_pushes_kept} raced pushes kept their tag");
}

/// Pushes manifest `old` by tag `t<round>` through `first`, then deletes `old` by digest
/// through `first` while `second` moves the tag to manifest `new` (one of them started a
/// little later, as above), `rounds` times. Both must succeed, and the tag must name `new`
/// through both engines afterwards: the move was acknowledged, and whichever order the two
/// took, the delete of `old` has no business with a tag naming `new`. (Before the delete
/// removed a tag only if it still named the deleted manifest, a move landing between its
/// read of the tag and its removal was lost.)
pub async fn assert_no_tag_move_is_lost<D: StorageDriver>(
    first: &D,
    second: &D,
    repo: &RepositoryName,
    rounds: u64,
) {
    for round in 0..rounds {
        let (old, new) = (index(2 * round), index(2 * round + 1));
        let old_digest = Digest::compute(DigestAlgorithm::Sha256, &old);
        let name = format!("t{round}");
        first
            .put_manifest(repo, &tag(name.clone()), Some(INDEX), old)
            .await
            .expect("first push");
        let moved = raced(
            round,
            first.delete_manifest(repo, &old_digest),
            second.put_manifest(repo, &tag(name.clone()), Some(INDEX), new.clone()),
        )
        .await;
        moved.unwrap_or_else(|e| panic!("round {round}: the move failed: {e:?}"));
        for (which, d) in [("first", first), ("second", second)] {
            match d.get_manifest(repo, &tag(name.clone())).await {
                Ok(m) => assert_eq!(m.bytes, new, "round {round}: tag {name} via {which}"),
                Err(e) => panic!(
                    "round {round}: the move of tag {name} was lost (via the {which} engine): \
                     {e:?}"
                ),
            }
        }
    }
}
