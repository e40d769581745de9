//! Uploads: monolithic pushes written in place through a resumable session
//! (`session.rs`), chunked uploads as pieces joined with compose, and the
//! state that lets any process continue an upload.
//!
//! See the [module docs of the driver](super) for the design and its costs.

use std::pin::pin;

use bytes::Bytes;
use futures::future::{Fuse, FusedFuture, FutureExt};
use futures::{Stream, StreamExt, TryStreamExt};
use serde::{Deserialize, Serialize};

use super::GcsBackend;
use super::error::corrupt;
use super::objects::MAX_COMPOSE;
use super::parts::Parts;
use crate::error::{Error, Result};
use crate::oci::Digest;
use crate::storage::UploadId;
use crate::storage::backend::PersistedUploadState;
use crate::storage::layout;

/// Granularity of a resumable session's non-final chunks (GCS rejects any other size).
pub const SESSION_UNIT: u64 = 256 * 1024;

/// Default size of a part: a piece of a chunked upload, or a chunk sent to a session.
pub const DEFAULT_PART_SIZE: u64 = 8 * 1024 * 1024;

/// Objects deleted at the same time.
const DELETE_CONCURRENCY: usize = 16;

/// The GCS part of an upload session's persisted state (stored as JSON by the engine at
/// `repositories/<name>/_uploads/<id>`, so the next chunk may arrive at another process).
///
/// Invariant: the upload holds `sent + held.len()` bytes (a monolithic push) or the sum of
/// its pieces' sizes (a chunked upload), in order.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct GcsUploadState {
    /// Monolithic pushes (digest known up front): the digest whose blob object a resumable
    /// session writes in place.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub direct: Option<String>,
    /// The resumable session's URI, opened once a first part is followed by more bytes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub session: Option<String>,
    /// Bytes sent to the session (whole parts, multiples of 256 KiB).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub sent: u64,
    /// The monolithic push's last part (or all of it, below one part), held back for the
    /// session's final chunk, which must name the total size, or for one conditional
    /// create. In memory only: a monolithic push's state goes from its one append to its
    /// commit inside one call and is never persisted; a persisted one reads back without
    /// these bytes and `held_len` tells (its commit then fails instead of losing them).
    #[serde(skip)]
    pub held: Bytes,
    /// Length of `held`.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub held_len: u64,
    /// Chunked uploads: the pieces holding the bytes, in order.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub pieces: Vec<Piece>,
    /// Pieces superseded (composed into a larger one) by this state, deleted by the next
    /// append (only once this state is persisted may they go) or at commit or abort.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub garbage: Vec<PieceName>,
}

impl PersistedUploadState for GcsUploadState {
    /// Every write of a GCS upload is durable once acknowledged: always current.
    fn is_current(&self) -> bool {
        true
    }
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}

/// One piece of a chunked upload: object `uploads/<id>/part-<end>-<nonce>`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Piece {
    /// Upload offset just after the piece's bytes.
    pub end: u64,
    /// Bytes in the piece.
    pub size: u64,
    /// Random part of the name, new for every object written.
    pub nonce: u64,
    /// 0 for a piece written from the body; `n + 1` for one composed of 32 pieces of level
    /// `n`.
    #[serde(default)]
    pub level: u8,
}

impl Piece {
    /// The name of the piece's object.
    pub fn name(&self) -> PieceName {
        PieceName(self.end, self.nonce)
    }
}

/// The name of a piece's object: its end offset and random part.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct PieceName(pub u64, pub u64);

impl GcsUploadState {
    /// Bytes the state accounts for.
    pub fn stored(&self) -> u64 {
        if self.direct.is_some() {
            self.sent + self.held_len
        } else {
            self.pieces.iter().map(|p| p.size).sum()
        }
    }
}

fn nonce() -> u64 {
    rand::random::<u64>() | 1
}

impl GcsBackend {
    fn piece_object(&self, id: &UploadId, name: PieceName) -> String {
        self.names.piece(id, name.0, name.1)
    }

    pub(super) fn blob_object(&self, digest: &Digest) -> String {
        self.names.object(&layout::blob_data(digest))
    }

    fn direct_target(&self, id: &UploadId, state: &GcsUploadState) -> Result<Option<Digest>> {
        state
            .direct
            .as_deref()
            .map(|d| {
                Digest::parse(d)
                    .map_err(|_| corrupt(format!("upload {id}: bad target digest {d:?}")))
            })
            .transpose()
    }

    // ----- the Backend operations -----

    pub(crate) fn create(&self, target: Option<&Digest>) -> GcsUploadState {
        GcsUploadState {
            direct: target.map(|d| d.as_str().to_owned()),
            ..GcsUploadState::default()
        }
    }

    pub(crate) async fn append<S>(
        &self,
        id: &UploadId,
        state: &mut GcsUploadState,
        offset: u64,
        body: S,
    ) -> Result<u64>
    where
        S: Stream<Item = Result<Bytes>> + Send,
    {
        let stored = state.stored();
        if stored != offset {
            return Err(corrupt(format!(
                "upload {id}: state holds {stored} bytes but the session is at {offset}"
            )));
        }
        match self.direct_target(id, state)? {
            Some(digest) => self.append_direct(id, &digest, state, body).await,
            None => self.append_pieces(id, state, offset, body).await,
        }
    }

    /// A chunked upload: the body becomes pieces of at most one part each, one written while
    /// the next is received; 32 pieces of one level are composed into one of the next.
    async fn append_pieces<S>(
        &self,
        id: &UploadId,
        state: &mut GcsUploadState,
        offset: u64,
        body: S,
    ) -> Result<u64>
    where
        S: Stream<Item = Result<Bytes>> + Send,
    {
        // The state we were given is persisted, so the pieces it superseded can go.
        let garbage: Vec<String> = std::mem::take(&mut state.garbage)
            .into_iter()
            .map(|name| self.piece_object(id, name))
            .collect();
        self.delete_all(garbage).await?;
        let mut parts = pin!(Parts::new(body, self.part_size as usize, Bytes::new()));
        let mut inflight = pin!(Fuse::terminated());
        let mut end = offset;
        loop {
            tokio::select! {
                biased;
                written = inflight.as_mut(), if !inflight.is_terminated() => {
                    self.add_piece(id, state, written?).await?;
                }
                part = parts.next() => match part {
                    None => break,
                    Some(part) => {
                        let bytes = part?.bytes;
                        if !inflight.is_terminated() {
                            let written = inflight.as_mut().await?;
                            self.add_piece(id, state, written).await?;
                        }
                        end += bytes.len() as u64;
                        inflight.set(self.write_piece(id, end, bytes).fuse());
                    }
                },
            }
        }
        if !inflight.is_terminated() {
            let written = inflight.as_mut().await?;
            self.add_piece(id, state, written).await?;
        }
        Ok(parts.received())
    }

    /// Writes one piece (a new object under a new name: nothing an earlier state refers to
    /// is ever overwritten).
    async fn write_piece(&self, id: &UploadId, end: u64, bytes: Bytes) -> Result<Piece> {
        let piece = Piece {
            end,
            size: bytes.len() as u64,
            nonce: nonce(),
            level: 0,
        };
        self.put_bytes(&self.piece_object(id, piece.name()), bytes)
            .await?;
        Ok(piece)
    }

    /// Adds a written piece to the state; while the last 32 pieces share a level, composes
    /// them into one piece of the next level (so an upload of any number of chunks keeps
    /// about `31 × log32(pieces)` of them, and each byte is composed `log32` times).
    async fn add_piece(
        &self,
        id: &UploadId,
        state: &mut GcsUploadState,
        piece: Piece,
    ) -> Result<()> {
        state.pieces.push(piece);
        loop {
            let level = state.pieces.last().map_or(0, |p| p.level);
            let run = state
                .pieces
                .iter()
                .rev()
                .take_while(|p| p.level == level)
                .count();
            if run < MAX_COMPOSE {
                return Ok(());
            }
            let group: Vec<Piece> = state
                .pieces
                .drain(state.pieces.len() - MAX_COMPOSE..)
                .collect();
            let merged = self.compose_pieces(id, &group, level + 1).await?;
            state.garbage.extend(group.iter().map(Piece::name));
            state.pieces.push(merged);
        }
    }

    /// Composes `group` (at most 32 pieces) into a new piece of `level`.
    async fn compose_pieces(&self, id: &UploadId, group: &[Piece], level: u8) -> Result<Piece> {
        let merged = Piece {
            end: group.last().map_or(0, |p| p.end),
            size: group.iter().map(|p| p.size).sum(),
            nonce: nonce(),
            level,
        };
        let sources: Vec<String> = group
            .iter()
            .map(|p| self.piece_object(id, p.name()))
            .collect();
        self.compose_upload(id, &sources, &self.piece_object(id, merged.name()), false)
            .await?;
        Ok(merged)
    }

    /// [`compose`](Self::compose)s pieces of upload `id`. When that fails because a piece
    /// is gone (the upload expired meanwhile, or another request's finish consumed it; GCS
    /// answers 404, its emulator 500), the session is over: `BLOB_UPLOAD_UNKNOWN`, and the
    /// client starts the upload again.
    async fn compose_upload(
        &self,
        id: &UploadId,
        sources: &[String],
        destination: &str,
        once: bool,
    ) -> Result<bool> {
        let failed = match self.compose(sources, destination, once).await {
            Ok(done) => return Ok(done),
            Err(e) => e,
        };
        let stored = self.list_below(&self.names.upload_dir(id)).await?;
        if sources.iter().all(|piece| stored.contains(piece)) {
            return Err(failed);
        }
        Err(Error::BlobUploadUnknown(format!(
            "{id}: a piece of the upload is gone"
        )))
    }

    pub(crate) async fn commit(
        &self,
        id: &UploadId,
        state: GcsUploadState,
        size: u64,
        digest: &Digest,
    ) -> Result<()> {
        let stored = state.stored();
        if stored != size {
            return Err(corrupt(format!(
                "upload {id}: state holds {stored} bytes, commit asks for {size}"
            )));
        }
        match self.direct_target(id, &state)? {
            Some(target) if target != *digest => Err(corrupt(format!(
                "upload {id} writes to {target} but is committed as {digest}"
            ))),
            Some(_) => self.commit_direct(id, state, digest).await,
            None => {
                let result = self.commit_pieces(id, &state, digest).await;
                // On success and on failure: nothing of the upload may stay behind.
                let released = self.release(id, &state).await;
                result.and(released)
            }
        }
    }

    /// Composes the pieces into the blob's object (write-once), after reducing them to at
    /// most 32.
    async fn commit_pieces(
        &self,
        id: &UploadId,
        state: &GcsUploadState,
        digest: &Digest,
    ) -> Result<()> {
        let blob = self.blob_object(digest);
        if state.pieces.is_empty() {
            self.create_once(&blob, Bytes::new()).await?;
            return Ok(());
        }
        let mut pieces = state.pieces.clone();
        while pieces.len() > MAX_COMPOSE {
            let mut reduced = Vec::with_capacity(pieces.len().div_ceil(MAX_COMPOSE));
            for group in pieces.chunks(MAX_COMPOSE) {
                let level = group.iter().map(|p| p.level).max().unwrap_or(0) + 1;
                reduced.push(self.compose_pieces(id, group, level).await?);
            }
            pieces = reduced;
        }
        let sources: Vec<String> = pieces
            .iter()
            .map(|p| self.piece_object(id, p.name()))
            .collect();
        // `false`: the blob was stored meanwhile, the same bytes.
        self.compose_upload(id, &sources, &blob, true).await?;
        Ok(())
    }

    /// Deletes objects, several at a time; all are tried, the first failure is returned.
    async fn delete_all(&self, objects: Vec<String>) -> Result<()> {
        let results: Vec<Result<()>> = futures::stream::iter(objects)
            .map(|object| async move { self.delete(&object).await })
            .buffer_unordered(DELETE_CONCURRENCY)
            .collect()
            .await;
        results.into_iter().collect()
    }

    /// Releases everything an upload holds: a monolithic push's session (cancelled), and
    /// every object below `uploads/<id>/` (pieces, including ones written by appends whose
    /// state was never persisted).
    pub(crate) async fn release(&self, id: &UploadId, state: &GcsUploadState) -> Result<()> {
        if let Some(session) = &state.session {
            // Best effort: an unfinished session expires by itself after a week.
            if let Err(e) = self
                .conn
                .client
                .get_resumable_upload(session.clone())
                .cancel()
                .await
            {
                tracing::debug!(error = %e, "cancelling an upload session");
            }
            return Ok(());
        }
        if state.direct.is_some() {
            return Ok(());
        }
        let objects = self.list_below(&self.names.upload_dir(id)).await?;
        let _: Vec<()> = futures::stream::iter(objects)
            .map(|object| async move { self.delete(&object).await })
            .buffer_unordered(DELETE_CONCURRENCY)
            .try_collect()
            .await?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn state_accounts_for_its_bytes_and_round_trips() {
        let chunked = GcsUploadState {
            pieces: vec![
                Piece {
                    end: 5,
                    size: 5,
                    nonce: 3,
                    level: 1,
                },
                Piece {
                    end: 7,
                    size: 2,
                    nonce: 9,
                    level: 0,
                },
            ],
            garbage: vec![PieceName(1, 2)],
            ..GcsUploadState::default()
        };
        assert_eq!(chunked.stored(), 7);
        let json = serde_json::to_string(&chunked).unwrap();
        assert_eq!(
            serde_json::from_str::<GcsUploadState>(&json).unwrap(),
            chunked
        );

        let direct = GcsUploadState {
            direct: Some("sha256:00".into()),
            sent: SESSION_UNIT,
            held: Bytes::from_static(b"abc"),
            held_len: 3,
            ..GcsUploadState::default()
        };
        assert_eq!(direct.stored(), SESSION_UNIT + 3);
        // Held bytes never reach a persisted record; the length tells they are missing.
        let json = serde_json::to_string(&direct).unwrap();
        assert!(!json.contains("abc"), "{json}");
        let back: GcsUploadState = serde_json::from_str(&json).unwrap();
        assert_eq!((back.held_len, back.held.len()), (3, 0));
        assert_eq!(
            serde_json::from_str::<GcsUploadState>("{}").unwrap(),
            GcsUploadState::default()
        );
    }
}
