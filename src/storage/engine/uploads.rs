//! Upload sessions: records persisted in the backend (offset, hash checkpoint, backend
//! state) so any process can continue them, chunk appends, and closing a session.

use std::time::{SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use futures::Stream;
use serde::{Deserialize, Serialize};

use crate::error::{Error, ErrorChain, Result};
use crate::oci::{Digest, DigestAlgorithm, RepositoryName};
use crate::storage::backend::{Backend, ObjectVersion, PersistedUploadState};
use crate::storage::hashing::{HashCheckpoint, Hasher};
use crate::storage::layout::{self, Key};
use crate::storage::{FileInfo, StorageDriver, UploadId, UploadProgress};

use super::hashed_body::{check_len, hash_only, hashed_body};
use super::{Engine, EngineUpload};

/// What is persisted for an upload session at `layout::upload_state`.
#[derive(Clone, Serialize, Deserialize)]
struct UploadRecord<S> {
    /// Bytes received and stored.
    offset: u64,
    /// Hash state over those bytes.
    hash: HashCheckpoint,
    /// Seconds since the epoch when the session started.
    started: u64,
    /// The backend's state.
    backend: S,
}

fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// The first bytes of a session record replaced by a finish in progress
/// ([`claim_for_finish`](Engine::claim_for_finish)): not JSON, so never a record.
const CLOSING_MARK: &[u8] = b"closing ";

impl<B: Backend> Engine<B> {
    async fn load_upload(
        &self,
        repo: &RepositoryName,
        id: &UploadId,
    ) -> Result<(Key, UploadRecord<B::UploadState>)> {
        let (key, record, _) = self.load_upload_versioned(repo, id).await?;
        Ok((key, record))
    }

    /// [`load_upload`](Self::load_upload) with the record's version, where the backend writes
    /// conditionally (see [`save_appended`](Self::save_appended)).
    async fn load_upload_versioned(
        &self,
        repo: &RepositoryName,
        id: &UploadId,
    ) -> Result<(Key, UploadRecord<B::UploadState>, Option<ObjectVersion>)> {
        let key = layout::upload_state(repo, id);
        let (raw, version) = self
            .backend
            .read_versioned(&key)
            .await?
            .ok_or_else(|| Error::BlobUploadUnknown(id.to_string()))?;
        if raw.starts_with(CLOSING_MARK) {
            // Another request is finishing the session (see `claim_for_finish`).
            return Err(Error::BlobUploadUnknown(id.to_string()));
        }
        // Session records may be written without being made durable (`Backend` contract,
        // clause 3): a record a crash left unreadable, or one whose
        // bytes may not have survived, names no resumable session. Spec "Pushing a blob in
        // chunks": the client starts over after a 404 BLOB_UPLOAD_UNKNOWN.
        let record: UploadRecord<B::UploadState> = match serde_json::from_slice(&raw) {
            Ok(record) => record,
            Err(_) => {
                tracing::warn!(driver = B::NAME, key = %key.as_str(),
                    "unreadable upload session record: reported as unknown");
                return Err(Error::BlobUploadUnknown(id.to_string()));
            }
        };
        if !record.backend.is_current() {
            return Err(Error::BlobUploadUnknown(id.to_string()));
        }
        Ok((key, record, version))
    }

    fn encode_upload(record: &UploadRecord<B::UploadState>) -> Result<Bytes> {
        serde_json::to_vec(record)
            .map(Bytes::from)
            .map_err(|e| Error::backend(B::NAME, format!("encoding upload state: {e}")))
    }

    async fn save_upload(&self, key: &Key, record: &UploadRecord<B::UploadState>) -> Result<()> {
        self.backend.write(key, Self::encode_upload(record)?).await
    }

    /// Persists the record of an append made from the record loaded at `version`. Where the
    /// backend writes conditionally, the write is refused if the record changed since it was
    /// loaded: another process appended to the same session at the same time (the engine's
    /// upload lock serialises appends within one process only). The later of the two is
    /// then answered like an out-of-order chunk (spec "Pushing a blob in chunks": 416 with
    /// the session's current `Range`); the session keeps the first one's bytes and stays
    /// usable. What the refused append stored (a staged segment under a name of its own)
    /// is deleted with the session's other objects when it is finished or aborted.
    async fn save_appended(
        &self,
        repo: &RepositoryName,
        id: &UploadId,
        key: &Key,
        record: &UploadRecord<B::UploadState>,
        version: Option<&ObjectVersion>,
    ) -> Result<()> {
        let Some(version) = version else {
            return self.save_upload(key, record).await;
        };
        // The record's bytes name a staged segment or part ETags no other append produces.
        let encoded = Self::encode_upload(record)?;
        if self.replace_if_version(key, encoded, version).await? {
            return Ok(());
        }
        Err(self.refused_by_an_append(repo, id, "chunk").await)
    }

    /// Replaces the session record at `key` with `bytes` (unique to this request) if it is
    /// still at `version`; whether it was replaced. A refusal may answer a retry of this very
    /// write whose first attempt was stored but whose answer was lost: the record then holds
    /// exactly `bytes`, and the write stands.
    async fn replace_if_version(
        &self,
        key: &Key,
        bytes: Bytes,
        version: &ObjectVersion,
    ) -> Result<bool> {
        Ok(self
            .backend
            .write_if_version(key, bytes.clone(), version)
            .await?
            || self.backend.read(key).await?.as_ref() == Some(&bytes))
    }

    /// The answer to a request (`what`: a chunk, a finish) whose conditional write of the
    /// session record another process's append beat: 416 with the session's current offset.
    async fn refused_by_an_append(
        &self,
        repo: &RepositoryName,
        id: &UploadId,
        what: &str,
    ) -> Error {
        let current = match self.load_upload(repo, id).await {
            Ok((_, current)) => current,
            Err(e) => return e,
        };
        tracing::info!(driver = B::NAME, upload = %id,
            "a concurrent append changed the upload session first: {what} refused");
        Error::RangeInvalid {
            size: current.offset,
            reason: format!(
                "another request appended to the session meanwhile; it is at {}",
                current.offset
            ),
        }
    }

    /// Takes a session for the finish that loaded its record at `version`, where the
    /// backend writes conditionally: the record is replaced by a closing mark of this
    /// request's own, unless it changed since it was loaded. An append persisted meanwhile by
    /// another process (the engine's upload lock serialises requests within one process
    /// only) then refuses this finish, which would commit the bytes without it and drop the
    /// session its client was told took them; it is answered like a refused append (416 with
    /// the session's current `Range`), and the session keeps every acknowledged chunk. An
    /// append persisted after the mark fails its own conditional write; one loading the
    /// mark, and another finish, find the session unknown. Costs one conditional write per
    /// finish of a session; nothing where the backend has no versions.
    async fn claim_for_finish(
        &self,
        repo: &RepositoryName,
        id: &UploadId,
        key: &Key,
        version: Option<&ObjectVersion>,
    ) -> Result<()> {
        if self.mark_closing(key, version).await? {
            return Ok(());
        }
        Err(self.refused_by_an_append(repo, id, "finish").await)
    }

    /// Replaces the session record at `key`, loaded at `version`, by a closing mark of this
    /// request's own, unless it changed since: whether this request now holds the session.
    /// Always true where the backend has no versions (the session locks serialise instead).
    async fn mark_closing(&self, key: &Key, version: Option<&ObjectVersion>) -> Result<bool> {
        let Some(version) = version else {
            return Ok(true);
        };
        let mut mark = CLOSING_MARK.to_vec();
        mark.extend_from_slice(UploadId::generate().as_str().as_bytes());
        self.replace_if_version(key, Bytes::from(mark), version)
            .await
    }

    fn handle(
        id: &UploadId,
        record: &UploadRecord<B::UploadState>,
    ) -> EngineUpload<B::UploadState> {
        EngineUpload {
            progress: UploadProgress {
                id: id.clone(),
                offset: record.offset,
                algorithm: record.hash.algorithm,
            },
            backend_state: record.backend.clone(),
        }
    }

    /// Appends `body` to a loaded upload record, hashing as it streams. On success the
    /// record's offset, hash and backend state are updated (not yet persisted).
    async fn append<S>(
        &self,
        id: &UploadId,
        record: &mut UploadRecord<B::UploadState>,
        hasher: &mut Hasher,
        expected_len: Option<u64>,
        body: S,
    ) -> Result<u64>
    where
        S: Stream<Item = Result<Bytes>> + Send,
    {
        let mut count = 0u64;
        let mut state = record.backend.clone();
        let appended = self
            .backend
            .append_upload(
                id,
                &mut state,
                record.offset,
                hashed_body(body, hasher, &mut count, expected_len),
            )
            .await?;
        if appended != count {
            return Err(Error::backend(
                B::NAME,
                format!("backend stored {appended} of {count} bytes"),
            ));
        }
        check_len(expected_len, count)?;
        record.offset += count;
        record.hash = hasher.checkpoint();
        record.backend = state;
        Ok(count)
    }

    /// Finishes a session that was hashed with another algorithm than `digest`'s: a client
    /// that opened it without `digest-algorithm` and closes it with a sha512 digest (the OCI
    /// conformance suite does). The bytes are committed under the session's own digest (never
    /// linked, so never visible), read back once to hash them with `digest`'s algorithm and
    /// stored under `digest` by [`put_content`](StorageDriver::put_content), which verifies
    /// them. Costs one extra read and write of the blob, and the storage of the interim copy
    /// until garbage collection, in this case only.
    #[allow(clippy::too_many_arguments)]
    async fn finish_rehashing<S>(
        &self,
        repo: &RepositoryName,
        id: &UploadId,
        key: &Key,
        (mut record, version): (UploadRecord<B::UploadState>, Option<ObjectVersion>),
        mut hasher: Hasher,
        digest: &Digest,
        expected_len: Option<u64>,
        body: S,
    ) -> Result<FileInfo>
    where
        S: Stream<Item = Result<Bytes>> + Send,
    {
        self.append(id, &mut record, &mut hasher, expected_len, body)
            .await?;
        let interim = hasher.digest();
        let size = record.offset;
        self.claim_for_finish(repo, id, key, version.as_ref())
            .await?;
        // The session's record goes before its bytes (see `close_session`).
        self.backend.remove(key).await?;
        let existed = self.backend.blob_size(&interim).await?.is_some();
        if existed {
            let _ = self.backend.abort_upload(id, record.backend).await;
        } else {
            self.finish_blob(id, record.backend, size, &interim).await?;
        }
        let bytes = self.backend.read_blob(&interim, None).await?;
        // The interim blob stays stored, linked nowhere (like the bytes of a deleted blob),
        // for a garbage collector to reclaim. Deleting it here would be unsafe: blob bytes are
        // shared by content, and between the commit above and a deletion another push of the
        // same bytes may have found it stored and linked it (`put_content`'s dedupe path), so
        // its repository would then link missing bytes. (`Backend::remove` is also only meant
        // for metadata objects: the in-memory backend, for one, keeps blobs elsewhere.)
        self.put_content(repo, digest, Some(size), bytes).await
    }

    /// Implements [`StorageDriver::start_upload`].
    pub(super) async fn upload_start(
        &self,
        repo: &RepositoryName,
        algorithm: DigestAlgorithm,
    ) -> Result<EngineUpload<B::UploadState>> {
        let id = UploadId::generate();
        let backend = self.backend.start_upload(&id, None).await?;
        let record = UploadRecord {
            offset: 0,
            hash: Hasher::new(algorithm).checkpoint(),
            started: now_secs(),
            backend,
        };
        self.save_upload(&layout::upload_state(repo, &id), &record)
            .await?;
        Ok(Self::handle(&id, &record))
    }

    /// Implements [`StorageDriver::put_upload_chunk`].
    pub(super) async fn upload_append<S>(
        &self,
        repo: &RepositoryName,
        id: &UploadId,
        offset: Option<u64>,
        expected_len: Option<u64>,
        body: S,
    ) -> Result<EngineUpload<B::UploadState>>
    where
        S: Stream<Item = Result<Bytes>> + Send,
    {
        let _lock = self.upload_locks.lock(id).await;
        let _lease = self.backend.lock_upload(id).await?;
        let (key, mut record, version) = self.load_upload_versioned(repo, id).await?;
        if let Some(offset) = offset
            && offset != record.offset
        {
            // Spec "Pushing a blob in chunks": out-of-order chunks are 416; the session is
            // untouched and stays usable.
            return Err(Error::RangeInvalid {
                size: record.offset,
                reason: format!("chunk starts at {offset}, expected {}", record.offset),
            });
        }
        let mut hasher = Hasher::restore(&record.hash)?;
        self.append(id, &mut record, &mut hasher, expected_len, body)
            .await?;
        self.save_appended(repo, id, &key, &record, version.as_ref())
            .await?;
        Ok(Self::handle(id, &record))
    }

    /// Implements [`StorageDriver::get_upload_progress`].
    pub(super) async fn upload_progress(
        &self,
        repo: &RepositoryName,
        id: &UploadId,
    ) -> Result<EngineUpload<B::UploadState>> {
        let (_, record) = self.load_upload(repo, id).await?;
        Ok(Self::handle(id, &record))
    }

    /// Ends a session whose bytes are not needed any more: its record first, then (best
    /// effort) its storage.
    ///
    /// In this order a crash (or a failure) in between leaves upload storage that no session
    /// names, which upload expiry releases, and never a session whose bytes are gone: such a
    /// session would claim an offset it cannot continue from (the record of a session whose
    /// bytes a commit had consumed used to survive a crash right after the commit, and its
    /// next chunk failed with a server error). Every way a session ends goes through here, or
    /// removes the record before committing its bytes.
    async fn close_session(
        &self,
        key: &Key,
        id: &UploadId,
        state: Option<B::UploadState>,
    ) -> Result<()> {
        self.backend.remove(key).await?;
        if let Some(state) = state
            && let Err(e) = self.backend.abort_upload(id, state).await
        {
            tracing::warn!(driver = B::NAME, upload = %id, error = %ErrorChain(&e),
                "releasing an upload's storage failed; upload expiry will release it");
        }
        Ok(())
    }

    /// Puts back the record of a session whose finish failed after the record was removed,
    /// as it was before that request: a retry of the request then finds the session (the
    /// bytes the failed request appended beyond the record's offset are discarded by the next
    /// append; a blob the failed request did store is found stored). Returns `failure`.
    ///
    /// If the storage is gone too (S3 releases an upload whose commit failed), the retry is
    /// answered `BLOB_UPLOAD_UNKNOWN` and the client starts over; a crash before the record
    /// is back leaves storage without a record, which upload expiry releases.
    async fn reopen_session(
        &self,
        key: &Key,
        before: &UploadRecord<B::UploadState>,
        failure: Error,
    ) -> Error {
        if let Err(e) = self.save_upload(key, before).await {
            tracing::warn!(driver = B::NAME, error = %ErrorChain(&e),
                "could not restore an upload session after a failed finish");
        }
        failure
    }

    /// Implements [`StorageDriver::abort_upload`].
    ///
    /// Where the backend writes conditionally, the session is first taken with a closing
    /// mark, as a finish takes it ([`claim_for_finish`](Self::claim_for_finish)): a finish
    /// in another process that took it first makes the session unknown here (404), and one
    /// coming later finds it unknown. Without the mark, a cancel could release the bytes of
    /// a session a finish in another process had taken, and that finish, failing for want
    /// of them, put the session back: alive, its bytes gone. An append persisted in between
    /// is no reason to keep the session: the cancel loads it again and tries once more.
    pub(super) async fn upload_abort(&self, repo: &RepositoryName, id: &UploadId) -> Result<()> {
        const ATTEMPTS: usize = 3;
        let _lock = self.upload_locks.lock(id).await;
        let _lease = self.backend.lock_upload(id).await?;
        for _ in 0..ATTEMPTS {
            let (key, record, version) = self.load_upload_versioned(repo, id).await?;
            if self.mark_closing(&key, version.as_ref()).await? {
                return self.close_session(&key, id, Some(record.backend)).await;
            }
        }
        // Appends keep winning: the session is busy; the client may try again (a `DELETE`
        // of a session answers 204 or 404 in the spec, so not the 416 of a refused chunk).
        Err(Error::backend_transient(
            B::NAME,
            "other requests kept appending to the upload session; cancel it again",
        ))
    }

    /// Implements [`StorageDriver::finish_upload`].
    pub(super) async fn upload_finish<S>(
        &self,
        repo: &RepositoryName,
        id: &UploadId,
        digest: &Digest,
        expected_len: Option<u64>,
        body: S,
    ) -> Result<FileInfo>
    where
        S: Stream<Item = Result<Bytes>> + Send,
    {
        let _lock = self.upload_locks.lock(id).await;
        let _lease = self.backend.lock_upload(id).await?;
        let (key, mut record, version) = self.load_upload_versioned(repo, id).await?;
        // The session as it was before this request, put back if finishing it fails (below).
        let before = record.clone();
        let mut hasher = if record.offset == 0 {
            // Nothing hashed yet: hash with the algorithm of the digest given now.
            Hasher::new(digest.algorithm())
        } else {
            Hasher::restore(&record.hash)?
        };
        if hasher.algorithm() != digest.algorithm() {
            return self
                .finish_rehashing(
                    repo,
                    id,
                    &key,
                    (record, version),
                    hasher,
                    digest,
                    expected_len,
                    body,
                )
                .await;
        }
        // When the blob is already stored (pushed before, possibly by an earlier attempt to
        // finish this very session whose commit went through but whose link or cleanup
        // failed), the final body only needs hashing: the session's bytes are not needed, and
        // a retried finish must not depend on upload bytes a commit may have consumed.
        let already_stored = self.backend.blob_size(digest).await?.is_some();
        if already_stored {
            let count = hash_only(body, &mut hasher, expected_len).await?;
            record.offset += count;
        } else {
            self.append(id, &mut record, &mut hasher, expected_len, body)
                .await?;
        }
        let computed = hasher.digest();
        if computed != *digest {
            // Spec: DIGEST_INVALID, and nothing becomes visible. The session is spent.
            let _ = self.close_session(&key, id, Some(record.backend)).await;
            return Err(Error::DigestInvalid(format!(
                "content is {computed}, not {digest}"
            )));
        }
        let size = record.offset;
        self.claim_for_finish(repo, id, &key, version.as_ref())
            .await?;
        if already_stored {
            // The bytes are redundant (or already consumed by a commit).
            self.close_session(&key, id, Some(record.backend)).await?;
            let info = match self.link(repo, digest, size).await {
                Ok(info) => info,
                Err(e) => return Err(self.reopen_session(&key, &before, e).await),
            };
            if !self.link_still_backed(repo, digest).await? {
                // A collection deleted the blob since it was found stored, and this
                // session's bytes are gone: the client starts over.
                return Err(Error::BlobUploadUnknown(id.to_string()));
            }
            return Ok(info);
        }
        // The record goes before the commit consumes the bytes (see `close_session`), and
        // comes back if the commit or the link fails, so the client can retry the request.
        self.close_session(&key, id, None).await?;
        let info = match self
            .finish_and_link(repo, id, record.backend, size, digest)
            .await
        {
            Ok(info) => info,
            Err(e) => return Err(self.reopen_session(&key, &before, e).await),
        };
        Ok(info)
    }
}
