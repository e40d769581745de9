//! Blobs: repository links, streaming commits with digest verification, reads, mounts.

use bytes::Bytes;
use futures::{Stream, StreamExt};

use crate::error::{Error, ErrorChain, Result};
use crate::oci::{Digest, RangeRequest, RepositoryName};
use crate::storage::backend::Backend;
use crate::storage::hashing::Hasher;
use crate::storage::layout;
use crate::storage::presign::PresignBlobReads;
use crate::storage::{BlobRead, BlobRedirect, FileInfo, StorageDriver, UploadId};

use super::Engine;
use super::hashed_body::{check_content, hashed_body, verified_body};

impl<B: Backend> Engine<B> {
    /// Size recorded in the repository's link, or `None` if the blob is not visible there,
    /// read from the store (writes check this; reads use `linked_size_cached`).
    pub(super) async fn linked_size(
        &self,
        repo: &RepositoryName,
        digest: &Digest,
    ) -> Result<Option<u64>> {
        let key = layout::layer_link(repo, digest);
        if self.backend.capabilities().link_while_finishing {
            // The link may have been made durable before its blob (`finish_and_link`): it
            // counts only if the blob is there, whose size is authoritative anyway, so the
            // link's content is not needed.
            return if self.backend.exists(&key).await? {
                self.backend.blob_size(digest).await
            } else {
                Ok(None)
            };
        }
        let link = self.backend.read(&key).await?;
        match link {
            None => Ok(None),
            Some(v) => match std::str::from_utf8(&v)
                .ok()
                .and_then(|s| s.trim().parse().ok())
            {
                Some(size) => Ok(Some(size)),
                // A link's content may be lost by a crash (`Backend` contract, clause 3): its
                // existence is what was made durable, after the blob's bytes. The blob's own
                // size is then authoritative.
                None => match self.backend.blob_size(digest).await? {
                    Some(size) => Ok(Some(size)),
                    None => Err(self.corrupt(&key)),
                },
            },
        }
    }

    /// Commits verified upload bytes as blob `digest` and links it into `repo`: one after the
    /// other, or both at once where the backend allows it
    /// ([`Capabilities::link_while_finishing`]), saving a round of name syncs per push.
    ///
    /// [`Capabilities::link_while_finishing`]: crate::storage::backend::Capabilities::link_while_finishing
    pub(super) async fn finish_and_link(
        &self,
        repo: &RepositoryName,
        id: &UploadId,
        state: B::UploadState,
        size: u64,
        digest: &Digest,
    ) -> Result<FileInfo> {
        if !self.backend.capabilities().link_while_finishing {
            self.finish_blob(id, state, size, digest).await?;
            return self.link(repo, digest, size).await;
        }
        let (committed, linked) = futures::join!(
            self.finish_blob(id, state, size, digest),
            self.link(repo, digest, size)
        );
        if let Err(e) = committed {
            // The blob is not stored (`commit` succeeds whenever it is, whoever stored it),
            // so no push can have made this link valid: remove it (best effort; a leftover
            // link to a missing blob counts as absent).
            if linked.is_ok() {
                let _ = self.backend.remove(&layout::layer_link(repo, digest)).await;
            }
            return Err(e);
        }
        linked
    }

    pub(super) async fn link(
        &self,
        repo: &RepositoryName,
        digest: &Digest,
        size: u64,
    ) -> Result<FileInfo> {
        self.backend
            .write(
                &layout::layer_link(repo, digest),
                Bytes::from(size.to_string()),
            )
            .await?;
        Ok(self.file_info(digest, size))
    }

    fn file_info(&self, digest: &Digest, size: u64) -> FileInfo {
        FileInfo {
            path: self.backend.locate(&layout::blob_data(digest)),
            size,
            digest: digest.clone(),
        }
    }

    /// Commits verified upload bytes as blob `digest`. A commit that reports an error after
    /// the blob was stored (a lost response, a failed cleanup) or while another push stored
    /// the same blob is a success: the blob the caller verified is there.
    pub(super) async fn finish_blob(
        &self,
        id: &UploadId,
        state: B::UploadState,
        size: u64,
        digest: &Digest,
    ) -> Result<()> {
        match self.backend.finish_upload(id, state, size, digest).await {
            Ok(()) => Ok(()),
            Err(e) => match self.backend.blob_size(digest).await {
                Ok(Some(stored)) if stored == size => {
                    tracing::warn!(driver = B::NAME, %digest, error = %ErrorChain(&e),
                        "commit reported an error but the blob is stored; continuing");
                    Ok(())
                }
                _ => Err(e),
            },
        }
    }

    /// Implements [`StorageDriver::stat`].
    pub(super) async fn blob_info(
        &self,
        repo: &RepositoryName,
        digest: &Digest,
    ) -> Result<FileInfo> {
        let size = self
            .linked_size_cached(repo, digest)
            .await?
            .ok_or_else(|| Error::BlobUnknown(digest.clone()))?;
        Ok(self.file_info(digest, size))
    }

    /// Implements [`StorageDriver::get_content`].
    pub(super) async fn blob_read(
        &self,
        repo: &RepositoryName,
        digest: &Digest,
        range: Option<RangeRequest>,
    ) -> Result<BlobRead<B::Reader>> {
        let info = self.stat(repo, digest).await?;
        let range = range.map(|r| r.resolve(info.size)).transpose()?;
        let stream = self.backend.read_blob(digest, range).await?;
        Ok(BlobRead {
            info,
            range,
            stream,
        })
    }

    /// Implements [`StorageDriver::put_content`].
    pub(super) async fn blob_put<S>(
        &self,
        repo: &RepositoryName,
        digest: &Digest,
        expected_size: Option<u64>,
        body: S,
    ) -> Result<FileInfo>
    where
        S: Stream<Item = Result<Bytes>> + Send,
    {
        let mut hasher = Hasher::new(digest.algorithm());
        let mut count = 0u64;
        if self.backend.blob_size(digest).await?.is_some() {
            // Already stored (deduplicated): verify the body without storing it again.
            {
                let mut body =
                    std::pin::pin!(hashed_body(body, &mut hasher, &mut count, expected_size));
                while let Some(chunk) = body.next().await {
                    chunk?;
                }
            }
            check_content(expected_size, count, &hasher, digest)?;
            let info = self.link(repo, digest, count).await?;
            if !self.link_still_backed(repo, digest).await? {
                // A collection deleted the bytes since they were found stored; they were not
                // kept from the body, so the client sends them again.
                return Err(Self::blob_collected(digest));
            }
            return Ok(info);
        }
        if let Some(size) = expected_size
            && self
                .backend
                .capabilities()
                .put_blob_sizes
                .is_some_and(|sizes| sizes.contains(size))
        {
            return self.blob_put_whole(repo, digest, size, body).await;
        }
        let id = UploadId::generate();
        let mut state = self.backend.start_upload(&id, Some(digest)).await?;
        let appended = self
            .backend
            .append_upload(
                &id,
                &mut state,
                0,
                hashed_body(body, &mut hasher, &mut count, expected_size),
            )
            .await;
        let verdict = appended.and_then(|n| {
            if n != count {
                return Err(Error::backend(
                    B::NAME,
                    format!("backend stored {n} of {count} bytes"),
                ));
            }
            check_content(expected_size, count, &hasher, digest)
        });
        if let Err(e) = verdict {
            // Best effort: the failure the caller must see is `e`.
            let _ = self.backend.abort_upload(&id, state).await;
            return Err(e);
        }
        match self
            .finish_and_link(repo, &id, state.clone(), count, digest)
            .await
        {
            Ok(info) => Ok(info),
            Err(e) => {
                // Nobody else knows this upload id: free its storage (best effort).
                let _ = self.backend.abort_upload(&id, state).await;
                Err(e)
            }
        }
    }

    /// A monolithic push the backend stores in one write ([`Backend::put_blob`]): the body
    /// verifies itself on the way ([`verified_body`]), so the backend never stores bytes
    /// other than the digest's; then the link, as after an upload's commit.
    async fn blob_put_whole<S>(
        &self,
        repo: &RepositoryName,
        digest: &Digest,
        size: u64,
        body: S,
    ) -> Result<FileInfo>
    where
        S: Stream<Item = Result<Bytes>> + Send,
    {
        let mut hasher = Hasher::new(digest.algorithm());
        let mut count = 0u64;
        let body = verified_body(body, &mut hasher, &mut count, digest, size);
        if let Err(e) = self.backend.put_blob(digest, size, body).await {
            // Only a body that was received whole and verified may count as stored by an
            // earlier attempt whose answer was lost (as `finish_blob` does for uploads).
            let verified = check_content(Some(size), count, &hasher, digest).is_ok();
            match self.backend.blob_size(digest).await {
                Ok(Some(stored)) if verified && stored == size => {
                    tracing::warn!(driver = B::NAME, %digest, error = %ErrorChain(&e),
                        "storing the blob reported an error but it is stored; continuing");
                }
                _ => return Err(e),
            }
        }
        self.link(repo, digest, size).await
    }

    /// Implements [`StorageDriver::delete`].
    pub(super) async fn blob_unlink(&self, repo: &RepositoryName, digest: &Digest) -> Result<()> {
        if self.linked_size(repo, digest).await?.is_none() {
            return Err(Error::BlobUnknown(digest.clone()));
        }
        self.remove_key(&layout::layer_link(repo, digest)).await
    }

    /// Implements [`StorageDriver::mount_blob`].
    pub(super) async fn blob_mount(
        &self,
        from: &RepositoryName,
        to: &RepositoryName,
        digest: &Digest,
    ) -> Result<FileInfo> {
        let size = self
            .linked_size(from, digest)
            .await?
            .ok_or_else(|| Error::BlobUnknown(digest.clone()))?;
        // (`linked_size` has already checked the blob where links may precede blobs.)
        if !self.backend.capabilities().link_while_finishing
            && self.backend.blob_size(digest).await?.is_none()
        {
            return Err(Error::BlobUnknown(digest.clone()));
        }
        let info = self.link(to, digest, size).await?;
        if !self.link_still_backed(to, digest).await? {
            // Collected meanwhile: not mountable (the client uploads it instead).
            return Err(Error::BlobUnknown(digest.clone()));
        }
        Ok(info)
    }
}

impl<B: PresignBlobReads> Engine<B> {
    /// Where the client may fetch a blob visible in `repo` itself, when
    /// [`EngineOptions::redirect_blob_reads`](super::EngineOptions::redirect_blob_reads) is
    /// set: a presigned URL of the blob (signing only, no I/O) with the blob's info from the
    /// repository's link (the metadata cache answers it, like a `HEAD`); `BLOB_UNKNOWN` if
    /// the blob is not visible there. What [`AnyDriver`](crate::storage::AnyDriver) answers
    /// [`StorageDriver::blob_redirect`] with for
    /// a driver whose backend presigns.
    pub async fn presigned_blob_redirect(
        &self,
        repo: &RepositoryName,
        digest: &Digest,
    ) -> Result<Option<BlobRedirect>> {
        let Some(expires_in) = self.options.redirect_blob_reads else {
            return Ok(None);
        };
        let info = self.blob_info(repo, digest).await?;
        let signed = self.backend.presign_read_blob(digest, expires_in).await?;
        Ok(Some(BlobRedirect {
            url: signed.url,
            info,
        }))
    }
}
