//! Stopping collections (a process shutting down): a collection holding a condemned set
//! removes it and deletes nothing more, and scheduled work ends.

use std::sync::Arc;

use super::*;
use crate::storage::lifecycle::schedule::{self, Schedule};

/// Whether the store holds condemned sets.
async fn sets(e: &Gc) -> Vec<String> {
    e.backend()
        .list(&layout::gc_dir(), None, None)
        .await
        .unwrap()
}

#[tokio::test]
async fn a_collection_asked_to_stop_removes_its_set_and_deletes_nothing() {
    let e = engine();
    let (config, layer) = reclaimable(&e).await;
    let (condemned, gc) = held_after_condemning(&e, false).await;
    assert_eq!(sets(&e).await.len(), 1);
    e.stop_collections();
    condemned.resume();
    let stopped = gc.await.unwrap();
    assert!(
        matches!(&stopped, Err(err) if err.is_retryable()),
        "{stopped:?}"
    );
    assert!(sets(&e).await.is_empty(), "the set is removed");
    for blob in [&config, &layer] {
        e.stat(&repo(), blob).await.expect("not deleted");
    }
    // Pushes go on.
    put(&e, Reference::Tag(tag("v1")), manifest(&config, &layer, 1))
        .await
        .unwrap();
}

#[tokio::test]
async fn stopping_scheduled_work_ends_the_collection_in_progress_cleanly() {
    let e = engine();
    let (config, layer) = reclaimable(&e).await;
    let mut condemned = e.backend().gate(Op::Write, When::After, "gc/");
    let scheduled = schedule::spawn(
        Arc::clone(&e),
        Schedule {
            gc_interval: Some(Duration::from_millis(10)),
            gc: options(false),
            upload_expiry_interval: None,
        },
        |_, _| {},
    )
    .expect("scheduled");
    condemned.reached().await;
    let stop = tokio::spawn(scheduled.stop(Duration::from_secs(10)));
    tokio::time::sleep(Duration::from_millis(50)).await;
    condemned.resume();
    assert!(stop.await.unwrap(), "stopped within the time given");
    assert!(sets(&e).await.is_empty(), "the set is removed");
    for blob in [&config, &layer] {
        e.stat(&repo(), blob).await.expect("not deleted");
    }
}
