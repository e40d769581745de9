//! The push side of the collection protocol: steps P3 to P5 of the
//! [`lifecycle`](crate::storage::lifecycle) docs, on every backend (they only need
//! [`Backend`]'s reads, writes and listings).
//!
//! Every read here comes from the storage itself: a metadata cache must not answer them (see
//! "Caches" in the `lifecycle` docs).

use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use bytes::Bytes;
use futures::StreamExt;

use super::condemned::Condemned;
use crate::error::{Error, ErrorChain, Result};
use crate::oci::manifest::ManifestSummary;
use crate::oci::{Digest, RepositoryName};
use crate::storage::backend::{Backend, TagTarget};
use crate::storage::engine::Engine;
use crate::storage::layout::{self, Key};
use crate::storage::lifecycle::{INTENT_DEADLINE, PUSH_DEADLINE};

/// How long a push waits for a collection to finish deleting the manifest it pushes (then it
/// stores it again), before it asks the client to retry.
const CONDEMNED_WAIT: Duration = Duration::from_secs(30);
/// Pause between two looks at the condemned sets while waiting.
const CONDEMNED_POLL: Duration = Duration::from_millis(100);
/// Times a push stores its own record again after a collection deleted it, before it asks
/// the client to retry.
const RESTORES: usize = 3;
/// Existence checks of the post-check in flight at once.
const CHECKS_IN_FLIGHT: usize = 16;

/// A push intent (step P3): removed by [`Engine::release_intent`] once the push is done.
#[derive(Debug)]
pub(in crate::storage::engine) struct Intent {
    key: Key,
    written: Instant,
}

/// The name of an intent written at `now`: `t`, the milliseconds since the Unix epoch in
/// hexadecimal, `-` and 64 random bits in hexadecimal.
fn intent_name(now: SystemTime) -> String {
    let millis = now
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis());
    let random: u64 = rand::random();
    format!("t{millis:x}-{random:016x}")
}

/// When the intent named `name` was written, as its name says; `None` for a name of another
/// shape.
pub(in crate::storage::engine) fn intent_written(name: &str) -> Option<SystemTime> {
    let (millis, random) = name.strip_prefix('t')?.split_once('-')?;
    if random.len() != 16 || !random.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    let millis = u64::from_str_radix(millis, 16).ok()?;
    SystemTime::UNIX_EPOCH.checked_add(Duration::from_millis(millis))
}

fn retry_later(what: &str) -> Error {
    Error::backend_transient("engine", format!("{what}; retry"))
}

impl<B: Backend> Engine<B> {
    /// The condemned sets stored now (step P4): listed every time, read once per process.
    pub(in crate::storage::engine) async fn condemned_sets(&self) -> Result<Vec<Arc<Condemned>>> {
        let names = self.backend.list(&layout::gc_dir(), None, None).await?;
        if names.is_empty() {
            // What nearly every push sees: no collection is deleting anything.
            self.condemned.retain_listed(&names);
            return Ok(Vec::new());
        }
        let (mut sets, missing) = self.condemned.retain_listed(&names);
        for name in missing {
            let Some(bytes) = self.backend.read(&layout::gc_marker(&name)).await? else {
                continue; // removed since it was listed: its run is over
            };
            match Condemned::decode(&bytes) {
                Some(set) => {
                    let set = Arc::new(set);
                    self.condemned.insert(name, Arc::clone(&set));
                    sets.push(set);
                }
                None => {
                    tracing::warn!(
                        driver = B::NAME,
                        name,
                        "ignoring an unreadable object in gc/"
                    );
                }
            }
        }
        Ok(sets)
    }

    /// Writes a push intent naming the manifest `digest` of `repo`, whose record is stored
    /// at `record` (step P3).
    ///
    /// Written like a tag, with [`Backend::write_tag`]: where a tag is another name of the
    /// manifest's record (the filesystem), so is the intent, which then costs no file of its
    /// own (a file created and removed per push made inode allocation on ext4 without a
    /// journal the largest cost of a push). Intents need not survive a crash of the host
    /// (collections on it stop too): a backend may write them without making them durable
    /// ([`KeyClass::Intent`](crate::storage::layout::KeyClass::Intent)). The intent's name
    /// carries the time it was written ([`intent_name`]), since the object's own time may be
    /// the record's.
    pub(in crate::storage::engine) async fn write_intent(
        &self,
        repo: &RepositoryName,
        digest: &Digest,
        record: &Key,
    ) -> Result<Intent> {
        let key = layout::intent(repo, &intent_name(SystemTime::now()));
        self.backend
            .write_tag(&key, TagTarget { digest, record })
            .await?;
        Ok(Intent {
            key,
            written: Instant::now(),
        })
    }

    /// Fails (retryable) when the push held its intent too long to write a tag safely: a
    /// collection may have removed the intent as a leftover.
    pub(in crate::storage::engine) fn check_intent(intent: &Intent) -> Result<()> {
        if intent.written.elapsed() > INTENT_DEADLINE {
            return Err(retry_later("the push took too long to be tagged safely"));
        }
        Ok(())
    }

    /// Removes a push intent (best effort: a leftover only keeps a manifest alive until
    /// collections remove it).
    pub(in crate::storage::engine) async fn release_intent(&self, intent: Intent) {
        if let Err(e) = self.backend.remove(&intent.key).await {
            tracing::warn!(driver = B::NAME, error = %ErrorChain(&e), "could not remove a push intent");
        }
    }

    /// Steps P4 and P5 for the manifest `digest` of `repo`, stored at `record_key` as
    /// `record` (last written at `record_written`), referencing what `summary` lists: fails
    /// with `MANIFEST_BLOB_UNKNOWN` when a collection condemned or deleted something it
    /// references, waits while a collection deletes the manifest itself, and stores the
    /// record again if one deleted it. Fails (retryable) when the checks pass more than
    /// [`PUSH_DEADLINE`] after the record was written: a collection may take a record that
    /// old for one a refused push left (see "Broken records" in the `lifecycle` docs).
    pub(in crate::storage::engine) async fn guard_manifest(
        &self,
        repo: &RepositoryName,
        digest: &Digest,
        summary: &ManifestSummary,
        (record_key, record): (&Key, &Bytes),
        record_written: &mut Instant,
    ) -> Result<()> {
        let started = Instant::now();
        let mut restores = 0;
        loop {
            let sets = self.condemned_sets().await?;
            if sets.iter().any(|s| s.condemns_manifest(repo, digest)) {
                // A collection is deleting this very manifest (phase 1): once it is done,
                // the record is stored again below.
                if started.elapsed() > CONDEMNED_WAIT {
                    return Err(retry_later(
                        "a garbage collection is deleting this manifest",
                    ));
                }
                tokio::time::sleep(CONDEMNED_POLL).await;
                continue;
            }
            for blob in summary.required_blobs() {
                if sets.iter().any(|s| s.condemns_blob(repo, &blob.digest)) {
                    return Err(Error::ManifestBlobUnknown(blob.digest.clone()));
                }
            }
            if !self.options.sparse_indexes {
                for child in summary.required_manifests() {
                    if sets
                        .iter()
                        .any(|s| s.condemns_manifest(repo, &child.digest))
                    {
                        return Err(Error::ManifestBlobUnknown(child.digest.clone()));
                    }
                }
            }
            if !self.backend.exists(record_key).await? {
                // A collection deleted it (it was untagged and unreachable a moment ago):
                // store it again, and check again as a push that just stored it. Unless
                // what it references went with it: the push is refused then, and leaves no
                // record naming content that is gone (a record put back and then refused
                // would be served by digest, its blobs missing).
                self.post_check(repo, summary).await?;
                restores += 1;
                if restores > RESTORES {
                    return Err(retry_later(
                        "garbage collections keep deleting this manifest",
                    ));
                }
                *record_written = Instant::now();
                self.backend.write(record_key, record.clone()).await?;
                continue;
            }
            self.post_check(repo, summary).await?;
            if record_written.elapsed() > PUSH_DEADLINE {
                return Err(retry_later("the push took too long to be checked safely"));
            }
            return Ok(());
        }
    }

    /// Step P5 for what a manifest references: each blob's link in `repo` and its bytes, each
    /// child manifest's record (unless indexes may be sparse).
    async fn post_check(&self, repo: &RepositoryName, summary: &ManifestSummary) -> Result<()> {
        let blobs: Vec<Digest> = summary.required_blobs().map(|b| b.digest.clone()).collect();
        let blobs = blobs.into_iter().map(|digest| async move {
            let present = if self.backend.capabilities().link_while_finishing {
                // A link counts only with its blob there (`linked_size`).
                self.linked_size(repo, &digest).await?.is_some()
            } else {
                let (linked, stored) = futures::join!(
                    self.linked_size(repo, &digest),
                    self.backend.blob_size(&digest)
                );
                linked?.is_some() && stored?.is_some()
            };
            Ok::<_, Error>((present, digest))
        });
        let mut blobs =
            std::pin::pin!(futures::stream::iter(blobs).buffer_unordered(CHECKS_IN_FLIGHT));
        while let Some(checked) = blobs.next().await {
            let (present, digest) = checked?;
            if !present {
                return Err(Error::ManifestBlobUnknown(digest));
            }
        }
        if self.options.sparse_indexes {
            return Ok(());
        }
        let children: Vec<Digest> = summary
            .required_manifests()
            .map(|c| c.digest.clone())
            .collect();
        let children = children.into_iter().map(|digest| async move {
            let key = layout::manifest(repo, &digest);
            Ok::<_, Error>((self.backend.exists(&key).await?, digest))
        });
        let mut children =
            std::pin::pin!(futures::stream::iter(children).buffer_unordered(CHECKS_IN_FLIGHT));
        while let Some(checked) = children.next().await {
            let (present, digest) = checked?;
            if !present {
                return Err(Error::ManifestBlobUnknown(digest));
            }
        }
        Ok(())
    }

    /// After writing a link to a blob that was already stored (a mount, or a push of bytes
    /// the registry has), checks that the bytes are still there; if a collection deleted
    /// them meanwhile, removes the link again and returns `false` (see "Dangling links" in
    /// the `lifecycle` docs).
    pub(in crate::storage::engine) async fn link_still_backed(
        &self,
        repo: &RepositoryName,
        digest: &Digest,
    ) -> Result<bool> {
        if self.backend.blob_size(digest).await?.is_some() {
            return Ok(true);
        }
        self.backend
            .remove(&layout::layer_link(repo, digest))
            .await?;
        Ok(false)
    }

    /// The error of a push whose blob a collection deleted while it was linked.
    pub(in crate::storage::engine) fn blob_collected(digest: &Digest) -> Error {
        retry_later(&format!(
            "blob {digest} was garbage-collected while it was pushed"
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_intent_name_carries_the_time_it_was_written() {
        let now = SystemTime::now();
        let written = intent_written(&intent_name(now)).expect("a name this version writes");
        let off = now.duration_since(written).expect("not later than written");
        assert!(off < Duration::from_millis(1), "{off:?}");
        // Names of another shape (before intents carried their time, or not an intent).
        for name in [
            "0123456789abcdef0123456789abcdef",
            "t18c-0123",
            "t18c-0123456789abcdeg",
            "tzz-0123456789abcdef",
            "18c-0123456789abcdef",
        ] {
            assert_eq!(intent_written(name), None, "{name}");
        }
    }
}
