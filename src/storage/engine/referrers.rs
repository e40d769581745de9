//! The referrers index: entries stored per subject when a manifest with a `subject` is
//! pushed.

use futures::StreamExt;

use crate::error::{Error, Result};
use crate::oci::{Descriptor, Digest, RepositoryName};
use crate::storage::backend::Backend;
use crate::storage::layout;

use super::Engine;

/// How many referrer entries `referrers` reads at once.
const REFERRER_READS_IN_FLIGHT: usize = 16;

impl<B: Backend> Engine<B> {
    /// Implements [`StorageDriver::referrers`](crate::storage::StorageDriver::referrers).
    pub(super) async fn referrer_list(
        &self,
        repo: &RepositoryName,
        subject: &Digest,
        artifact_type: Option<&str>,
    ) -> Result<Vec<Descriptor>> {
        let dir = layout::referrers_dir(repo, subject);
        let names = self.backend.list(&dir, None, None).await?;
        // One small read per referrer: issue them concurrently (on object stores each is a
        // round trip), keeping the listing's order.
        let reads = futures::stream::iter(names)
            .filter_map(|name| async move {
                let (alg, hex) = name.split_once('-')?;
                Digest::parse(&format!("{alg}:{hex}")).ok()
            })
            .map(|referrer| async move {
                let key = layout::referrer(repo, subject, &referrer);
                let raw = self.backend.read(&key).await?;
                Ok::<_, Error>((key, raw))
            })
            .buffered(REFERRER_READS_IN_FLIGHT);
        let mut reads = std::pin::pin!(reads);
        let mut out = Vec::new();
        while let Some(read) = reads.next().await {
            let (key, raw) = read?;
            let Some(raw) = raw else {
                continue; // deleted meanwhile
            };
            let descriptor: Descriptor =
                serde_json::from_slice(&raw).map_err(|_| self.corrupt(&key))?;
            if artifact_type.is_none_or(|t| descriptor.artifact_type.as_deref() == Some(t)) {
                out.push(descriptor);
            }
        }
        Ok(out)
    }
}
