//! The lease on a condemned set: short, renewed while the run works, and a run whose lease
//! ran out (or whose renewal came too late) deletes nothing more and removes its set.

use std::sync::Arc;

use super::*;
use crate::storage::engine::lifecycle::condemned::Condemned;
use crate::storage::engine::lifecycle::lease::LeaseTerms;
use crate::storage::lifecycle::{CLOCK_MARGIN, SET_LEASE};

fn engine_with_lease(length: Duration, renew_after: Duration) -> Arc<Gc> {
    Arc::new(
        Engine::new(Gated::default(), EngineOptions::default()).with_gc_lease(LeaseTerms {
            length,
            renew_after,
            clock_margin: CLOCK_MARGIN,
        }),
    )
}

/// The condemned sets stored, decoded.
async fn stored_sets(e: &Gc) -> Vec<Condemned> {
    let mut sets = Vec::new();
    for name in e
        .backend()
        .list(&layout::gc_dir(), None, None)
        .await
        .unwrap()
    {
        let bytes = e.backend().read(&layout::gc_marker(&name)).await.unwrap();
        sets.push(Condemned::decode(&bytes.expect("listed")).expect("a set"));
    }
    sets
}

fn secs_now() -> u64 {
    super::super::condemned::secs(SystemTime::now())
}

/// What a collection that dies leaves blocks pushes for one lease (plus the clock margin),
/// not for the whole run.
#[tokio::test]
async fn a_set_is_stored_with_a_deadline_one_lease_ahead() {
    let e = engine();
    let (config, layer) = reclaimable(&e).await;
    let before = secs_now();
    let (condemned, gc) = held_after_condemning(&e, false).await;
    let sets = stored_sets(&e).await;
    assert_eq!(sets.len(), 1);
    let deadline = sets[0].deadline;
    assert!(
        (before + SET_LEASE.as_secs() - 1..=secs_now() + SET_LEASE.as_secs()).contains(&deadline),
        "{deadline} for a lease of {SET_LEASE:?} from {before}"
    );
    condemned.resume();
    assert_eq!(gc.await.unwrap().unwrap().blobs, 2);
    for blob in [&config, &layer] {
        assert!(e.stat(&repo(), blob).await.is_err(), "deleted");
    }
}

#[tokio::test]
async fn a_run_held_past_its_renewal_stores_its_set_again_and_finishes() {
    let e = engine_with_lease(Duration::from_secs(4), Duration::from_secs(1));
    reclaimable(&e).await;
    let (condemned, gc) = held_after_condemning(&e, false).await;
    let first = stored_sets(&e).await[0].deadline;
    tokio::time::sleep(Duration::from_millis(1_500)).await;
    let mut renewed = e.backend().gate(Op::Write, When::After, "gc/");
    condemned.resume();
    tokio::time::timeout(Duration::from_secs(10), renewed.reached())
        .await
        .expect("the set is stored again");
    let sets = stored_sets(&e).await;
    assert_eq!(sets.len(), 1, "the same set, stored again");
    assert!(
        sets[0].deadline > first,
        "{} after {first}",
        sets[0].deadline
    );
    renewed.resume();
    let report = gc.await.unwrap().unwrap();
    assert_eq!(report.blobs, 2, "{report:?}");
    assert!(stored_sets(&e).await.is_empty());
}

/// Asserts that the collection failed, deleted nothing and removed its set.
async fn stopped_without_deleting(
    e: &Gc,
    gc: tokio::task::JoinHandle<Result<GcReport>>,
    blobs: [&Digest; 2],
) {
    let outcome = gc.await.unwrap();
    assert!(
        matches!(&outcome, Err(err) if err.to_string().contains("lease")),
        "{outcome:?}"
    );
    for blob in blobs {
        e.stat(&repo(), blob).await.expect("not deleted");
    }
    assert!(stored_sets(e).await.is_empty(), "the set is removed");
}

#[tokio::test]
async fn a_run_whose_lease_ran_out_deletes_nothing_more() {
    let e = engine_with_lease(Duration::from_secs(1), Duration::from_secs(3600));
    let (config, layer) = reclaimable(&e).await;
    let (condemned, gc) = held_after_condemning(&e, false).await;
    tokio::time::sleep(Duration::from_millis(1_100)).await;
    condemned.resume();
    stopped_without_deleting(&e, gc, [&config, &layer]).await;
}

/// A renewal whose write completes after the deadline it replaces does not count: another
/// collection may have read that deadline meanwhile and removed the set.
#[tokio::test]
async fn a_renewal_completing_after_the_deadline_stops_the_run() {
    let e = engine_with_lease(Duration::from_secs(4), Duration::from_secs(1));
    let (config, layer) = reclaimable(&e).await;
    let (condemned, gc) = held_after_condemning(&e, false).await;
    // The first deadline is at most 4 s after the first write began, so before `stored + 4 s`.
    let stored = std::time::Instant::now();
    tokio::time::sleep(Duration::from_millis(1_500)).await;
    let mut renewing = e.backend().gate(Op::Write, When::Before, "gc/");
    condemned.resume();
    renewing.reached().await;
    // Past the first deadline, before the renewal's (at least 4.5 s after `stored`).
    tokio::time::sleep_until((stored + Duration::from_millis(4_100)).into()).await;
    renewing.resume();
    stopped_without_deleting(&e, gc, [&config, &layer]).await;
}

/// A condemned set whose write was answered with an error may be stored all the same (the
/// answer lost): the failed collection removes it, so pushes are not held up by it for a
/// lease and the clock margin.
#[tokio::test]
async fn a_set_whose_write_failed_is_removed() {
    use crate::storage::backend::Operation;
    use crate::storage::layers::{Fault, FaultInjection};
    use crate::storage::layout::KeyClass;

    let e = Engine::new(
        FaultInjection::new(InMemoryBackend::default()),
        EngineOptions::default(),
    );
    let repo = repo();
    let layer = Digest::compute(DigestAlgorithm::Sha256, b"layer");
    e.put_content(
        &repo,
        &layer,
        None,
        stream::iter([Ok(Bytes::from_static(b"layer"))]),
    )
    .await
    .unwrap();
    e.backend()
        .faults()
        .plan(Fault::after(Operation::Write).class(KeyClass::CondemnedSet));
    let failed = e.collect_garbage(&options(false)).await;
    assert!(failed.is_err(), "{failed:?}");
    let sets = e
        .backend()
        .list(&layout::gc_dir(), None, None)
        .await
        .unwrap();
    assert!(sets.is_empty(), "left behind: {sets:?}");
    e.stat(&repo, &layer).await.expect("not deleted");
}
