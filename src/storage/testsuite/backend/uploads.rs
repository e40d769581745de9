//! Clause 7: uploads.

use crate::error::Error;
use crate::storage::UploadId;
use crate::storage::backend::{Backend, PersistedUploadState};
use crate::storage::testsuite::{assert_err, body, data, failing_body, ok, sha256};

use super::{BackendFactory, Setup, chunks, read_blob, store_blob};

/// Clause 7: an upload's bytes are no blob until it is finished.
pub async fn contract_upload_invisible_until_finished<F: BackendFactory>(factory: &F) {
    let s = Setup::new(factory).await;
    let b = &*s.d;
    let content = data(10_000, 7);
    let digest = sha256(&content);
    let id = UploadId::generate();
    let mut state = ok!(b.start_upload(&id, None).await);
    ok!(b
        .append_upload(&id, &mut state, 0, chunks(&content[..6000], 1000))
        .await);
    ok!(b
        .append_upload(&id, &mut state, 6000, body(&content[6000..]))
        .await);
    assert_eq!(ok!(b.blob_size(&digest).await), None, "before finishing");
    assert_err!(read_blob(b, &digest, None).await, Error::BlobUnknown(_));
    ok!(b
        .finish_upload(&id, state, content.len() as u64, &digest)
        .await);
    assert!(ok!(read_blob(b, &digest, None).await) == content);
}

/// Clause 7: an append at `offset`, with the state persisted for that offset, keeps the
/// upload's first `offset` bytes and discards what an append whose state was not persisted
/// (a failure after the bytes were written) left beyond them.
pub async fn contract_append_discards_beyond_offset<F: BackendFactory>(factory: &F) {
    let s = Setup::new(factory).await;
    let b = &*s.d;
    let id = UploadId::generate();
    let started = ok!(b.start_upload(&id, None).await);
    let mut lost = started.clone();
    ok!(b
        .append_upload(&id, &mut lost, 0, body(b"bytes nobody recorded"))
        .await);
    let mut state = started;
    ok!(b.append_upload(&id, &mut state, 0, body(b"01234")).await);
    let recorded = state.clone();
    let mut lost = recorded.clone();
    ok!(b
        .append_upload(&id, &mut lost, 5, body(b"56789, then more"))
        .await);
    let mut state = recorded;
    ok!(b.append_upload(&id, &mut state, 5, body(b"abc")).await);
    let digest = sha256(b"01234abc");
    ok!(b.finish_upload(&id, state, 8, &digest).await);
    assert_eq!(ok!(read_blob(b, &digest, None).await), b"01234abc");
}

/// Clause 7: an append whose body fails leaves the previous state usable: the append is
/// retried from the old offset.
pub async fn contract_failed_append_keeps_previous_state<F: BackendFactory>(factory: &F) {
    let s = Setup::new(factory).await;
    let b = &*s.d;
    let id = UploadId::generate();
    let mut state = ok!(b.start_upload(&id, None).await);
    ok!(b.append_upload(&id, &mut state, 0, body(b"hello")).await);
    let mut failed = state.clone();
    assert!(
        b.append_upload(&id, &mut failed, 5, failing_body(b" wor"))
            .await
            .is_err(),
        "a failing body fails the append"
    );
    ok!(b.append_upload(&id, &mut state, 5, body(b" world")).await);
    let digest = sha256(b"hello world");
    ok!(b.finish_upload(&id, state, 11, &digest).await);
    assert_eq!(ok!(read_blob(b, &digest, None).await), b"hello world");
}

/// Clause 7: finishing an upload as a blob already stored keeps the stored blob.
pub async fn contract_finish_keeps_a_stored_blob<F: BackendFactory>(factory: &F) {
    let s = Setup::new(factory).await;
    let b = &*s.d;
    let content = data(3000, 9);
    let digest = store_blob(b, &content).await;
    let id = UploadId::generate();
    let mut state = ok!(b.start_upload(&id, None).await);
    ok!(b.append_upload(&id, &mut state, 0, body(&content)).await);
    ok!(b
        .finish_upload(&id, state, content.len() as u64, &digest)
        .await);
    assert_eq!(ok!(b.blob_size(&digest).await), Some(content.len() as u64));
    assert!(ok!(read_blob(b, &digest, None).await) == content);
}

/// Clause 7: aborting releases the upload (its bytes never become a blob) and succeeds for
/// an upload that holds nothing, or that was aborted already.
pub async fn contract_abort_releases<F: BackendFactory>(factory: &F) {
    let s = Setup::new(factory).await;
    let b = &*s.d;
    let content = data(5000, 4);
    let id = UploadId::generate();
    let mut state = ok!(b.start_upload(&id, None).await);
    ok!(b.append_upload(&id, &mut state, 0, body(&content)).await);
    ok!(b.abort_upload(&id, state.clone()).await);
    ok!(b.abort_upload(&id, state).await);
    assert_eq!(ok!(b.blob_size(&sha256(&content)).await), None);
    let empty = UploadId::generate();
    let state = ok!(b.start_upload(&empty, None).await);
    ok!(b.abort_upload(&empty, state).await);
    // The id can be used again from scratch after an abort.
    let mut state = ok!(b.start_upload(&id, None).await);
    ok!(b.append_upload(&id, &mut state, 0, body(b"again")).await);
    ok!(b.finish_upload(&id, state, 5, &sha256(b"again")).await);
    assert_eq!(ok!(read_blob(b, &sha256(b"again"), None).await), b"again");
}

/// Clause 7: an upload started for a known digest (a monolithic push) is finished as that
/// blob; empty ones too.
pub async fn contract_upload_to_a_known_digest<F: BackendFactory>(factory: &F) {
    let s = Setup::new(factory).await;
    let b = &*s.d;
    for content in [data(6 * 1024 * 1024 + 3, 5), Vec::new()] {
        let digest = sha256(&content);
        let id = UploadId::generate();
        let mut state = ok!(b.start_upload(&id, Some(&digest)).await);
        let n = ok!(b
            .append_upload(&id, &mut state, 0, chunks(&content, 1 << 20))
            .await);
        assert_eq!(n, content.len() as u64);
        assert_eq!(
            ok!(b.blob_size(&digest).await),
            None,
            "not before finishing"
        );
        ok!(b.finish_upload(&id, state, n, &digest).await);
        assert!(ok!(read_blob(b, &digest, None).await) == content);
    }
}

/// Clause 7: a state round-trips through JSON, is current when fresh, and another instance
/// (process) continues the upload from it.
pub async fn contract_upload_state_continues_elsewhere<F: BackendFactory>(factory: &F) {
    let s = Setup::new(factory).await;
    let content = data(7 * 1024 * 1024 + 11, 6);
    let id = UploadId::generate();
    let mut state = ok!(s.d.start_upload(&id, None).await);
    assert!(state.is_current(), "a fresh state is current");
    let cut = 6 * 1024 * 1024;
    ok!(s
        .d
        .append_upload(&id, &mut state, 0, chunks(&content[..cut], 1 << 20))
        .await);
    let json = serde_json::to_vec(&state).expect("a state serialises");
    let other = s.second_instance().await;
    let mut state: <F::Instance as Backend>::UploadState =
        serde_json::from_slice(&json).expect("a state deserialises");
    assert!(state.is_current(), "a state of this boot is current");
    let n = cut as u64;
    ok!(other
        .append_upload(&id, &mut state, n, body(&content[cut..]))
        .await);
    let digest = sha256(&content);
    ok!(other
        .finish_upload(&id, state, content.len() as u64, &digest)
        .await);
    assert!(ok!(read_blob(&*s.d, &digest, None).await) == content);
}
