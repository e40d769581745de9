//! The protocol's interleavings, forced: a backend that pauses at a chosen operation lets a
//! push run between two steps of a collection (or the other way round), for each case of
//! the argument in the `lifecycle` docs.

use std::sync::Mutex;
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use futures::stream;
use tokio::sync::oneshot;

use crate::error::{Error, Result};
use crate::oci::manifest::media_types;
use crate::oci::{Digest, DigestAlgorithm, Reference, RepositoryName, Tag};
use crate::storage::backend::{Backend, TagTarget};
use crate::storage::inmemory::InMemoryBackend;
use crate::storage::layout::{self, Dir, Key};
use crate::storage::lifecycle::{GcOptions, GcReport, Lifecycle, LifecycleBackend, ObjectInfo};
use crate::storage::{Engine, EngineOptions, StorageDriver};

mod broken;
mod immutable;
mod lease;
mod manifest_ttl;
mod repositories;
mod stop;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Op {
    Write,
    Remove,
    List,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum When {
    Before,
    After,
}

/// A point where one operation stops until the test lets it go on.
struct Gate {
    op: Op,
    when: When,
    key_contains: &'static str,
    reached: oneshot::Sender<()>,
    resume: oneshot::Receiver<()>,
}

/// The in-memory backend with gates.
#[derive(Default)]
struct Gated {
    inner: InMemoryBackend,
    gates: Mutex<Vec<Gate>>,
}

/// The test's side of a gate.
struct Handle {
    reached: oneshot::Receiver<()>,
    resume: oneshot::Sender<()>,
}

impl Handle {
    async fn reached(&mut self) {
        (&mut self.reached).await.expect("the gated operation ran");
    }
    fn resume(self) {
        let _ = self.resume.send(());
    }
}

impl Gated {
    fn gate(&self, op: Op, when: When, key_contains: &'static str) -> Handle {
        let (reached_tx, reached_rx) = oneshot::channel();
        let (resume_tx, resume_rx) = oneshot::channel();
        self.gates.lock().unwrap().push(Gate {
            op,
            when,
            key_contains,
            reached: reached_tx,
            resume: resume_rx,
        });
        Handle {
            reached: reached_rx,
            resume: resume_tx,
        }
    }

    async fn pass(&self, op: Op, when: When, keys: &[&str]) {
        let gate = {
            let mut gates = self.gates.lock().unwrap();
            let found = gates.iter().position(|g| {
                g.op == op && g.when == when && keys.iter().any(|k| k.contains(g.key_contains))
            });
            found.map(|i| gates.remove(i))
        };
        if let Some(gate) = gate {
            let _ = gate.reached.send(());
            let _ = gate.resume.await;
        }
    }
}

#[deny(clippy::missing_trait_methods)]
impl Backend for Gated {
    crate::forward_backend!(inner: InMemoryBackend;
        NAME, Reader, UploadState, capabilities, locate, read, read_versioned, write_if_version,
        remove_if_version, exists, any_under, blob_size, read_blob, put_blob, start_upload,
        append_upload, finish_upload, abort_upload, lock_upload, lock_tag);

    async fn write(&self, key: &Key, value: Bytes) -> Result<()> {
        self.pass(Op::Write, When::Before, &[key.as_str()]).await;
        self.inner.write(key, value).await?;
        self.pass(Op::Write, When::After, &[key.as_str()]).await;
        Ok(())
    }
    async fn stage_record(&self, key: &Key, value: Bytes) -> Result<()> {
        self.pass(Op::Write, When::Before, &[key.as_str()]).await;
        self.inner.stage_record(key, value).await?;
        self.pass(Op::Write, When::After, &[key.as_str()]).await;
        Ok(())
    }
    /// Tags and intents, gated as writes.
    async fn write_tag(&self, tag: &Key, target: TagTarget<'_>) -> Result<()> {
        self.pass(Op::Write, When::Before, &[tag.as_str()]).await;
        self.inner.write_tag(tag, target).await?;
        self.pass(Op::Write, When::After, &[tag.as_str()]).await;
        Ok(())
    }
    /// Gated as writes, like `write_tag`.
    async fn create_tag(&self, tag: &Key, target: TagTarget<'_>) -> Result<bool> {
        self.pass(Op::Write, When::Before, &[tag.as_str()]).await;
        let created = self.inner.create_tag(tag, target).await?;
        self.pass(Op::Write, When::After, &[tag.as_str()]).await;
        Ok(created)
    }
    async fn remove(&self, key: &Key) -> Result<()> {
        self.pass(Op::Remove, When::Before, &[key.as_str()]).await;
        self.inner.remove(key).await?;
        self.pass(Op::Remove, When::After, &[key.as_str()]).await;
        Ok(())
    }
    async fn list(
        &self,
        dir: &Dir,
        start_after: Option<&str>,
        limit: Option<usize>,
    ) -> Result<Vec<String>> {
        self.pass(Op::List, When::Before, &[dir.as_str()]).await;
        let names = self.inner.list(dir, start_after, limit).await?;
        self.pass(Op::List, When::After, &[dir.as_str()]).await;
        Ok(names)
    }
}

#[deny(clippy::missing_trait_methods)]
impl LifecycleBackend for Gated {
    crate::forward_lifecycle_backend!(inner: InMemoryBackend;
        list_dirs, scan_blobs, expire_upload_storage, tidy);

    async fn scan(
        &self,
        dir: &Dir,
        start_after: Option<&str>,
        limit: usize,
    ) -> Result<Vec<ObjectInfo>> {
        self.pass(Op::List, When::Before, &[dir.as_str()]).await;
        let found = self.inner.scan(dir, start_after, limit).await?;
        self.pass(Op::List, When::After, &[dir.as_str()]).await;
        Ok(found)
    }
    async fn remove_objects(&self, keys: &[Key]) -> Result<()> {
        let names: Vec<&str> = keys.iter().map(Key::as_str).collect();
        self.pass(Op::Remove, When::Before, &names).await;
        self.inner.remove_objects(keys).await?;
        self.pass(Op::Remove, When::After, &names).await;
        Ok(())
    }
    async fn remove_blobs(&self, digests: &[Digest]) -> Result<()> {
        self.pass(Op::Remove, When::Before, &["blobs/"]).await;
        self.inner.remove_blobs(digests).await?;
        self.pass(Op::Remove, When::After, &["blobs/"]).await;
        Ok(())
    }
}

type Gc = Engine<Gated>;

fn engine() -> std::sync::Arc<Gc> {
    std::sync::Arc::new(Engine::new(Gated::default(), EngineOptions::default()))
}

fn repo() -> RepositoryName {
    RepositoryName::parse("race/repo").unwrap()
}

fn options(delete_untagged: bool) -> GcOptions {
    GcOptions {
        dry_run: false,
        delete_untagged,
        grace: Duration::ZERO,
        upload_ttl: None,
        manifest_ttl: None,
    }
}

async fn push_blob(e: &Gc, content: &'static [u8]) -> Digest {
    push_blob_to(e, &repo(), Bytes::from_static(content)).await
}

/// Pushes `content` as a blob of `repo`.
async fn push_blob_to(e: &Gc, repo: &RepositoryName, content: Bytes) -> Digest {
    let digest = Digest::compute(DigestAlgorithm::Sha256, &content);
    e.put_content(repo, &digest, None, stream::iter([Ok(content)]))
        .await
        .unwrap();
    digest
}

fn manifest(config: &Digest, layer: &Digest, n: u32) -> Bytes {
    Bytes::from(format!(
        r#"{{"schemaVersion":2,"mediaType":"{}","config":{{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"{config}","size":2}},"layers":[{{"mediaType":"application/vnd.oci.image.layer.v1.tar","digest":"{layer}","size":5}}],"annotations":{{"n":"{n}"}}}}"#,
        media_types::OCI_MANIFEST
    ))
}

fn tag(name: &str) -> Tag {
    Tag::parse(name).unwrap()
}

async fn put(e: &Gc, reference: Reference, bytes: Bytes) -> Result<Digest> {
    e.put_manifest(&repo(), &reference, Some(media_types::OCI_MANIFEST), bytes)
        .await
        .map(|out| out.digest)
}

/// A collection started in the background and held once its condemned set is stored: the
/// gate's handle (to resume it) and the collection's task.
async fn held_after_condemning(
    e: &std::sync::Arc<Gc>,
    delete_untagged: bool,
) -> (Handle, tokio::task::JoinHandle<Result<GcReport>>) {
    let mut condemned = e.backend().gate(Op::Write, When::After, "gc/");
    let gc = tokio::spawn({
        let e = e.clone();
        async move { e.collect_garbage(&options(delete_untagged)).await }
    });
    condemned.reached().await;
    (condemned, gc)
}

/// An image's blobs, pushed but not referenced yet: what a collection condemns.
async fn reclaimable(e: &Gc) -> (Digest, Digest) {
    (push_blob(e, b"{}").await, push_blob(e, b"layer").await)
}

/// A push whose record is written after the collection condemned its blobs, before the
/// re-mark: the re-mark sees the record and keeps the blobs, and the push itself, which sees
/// the condemned set, is refused. Pushed again afterwards, it is accepted.
#[tokio::test]
async fn a_push_between_condemning_and_re_marking_keeps_its_blobs_and_is_refused() {
    let e = engine();
    let (config, layer) = reclaimable(&e).await;
    let (condemned, gc) = held_after_condemning(&e, false).await;
    e.stat(&repo(), &layer).await.unwrap(); // the client's HEAD
    let pushed = put(&e, Reference::Tag(tag("v1")), manifest(&config, &layer, 1)).await;
    assert!(
        matches!(pushed, Err(Error::ManifestBlobUnknown(_))),
        "{pushed:?}"
    );
    condemned.resume();
    let report = gc.await.unwrap().unwrap();
    assert_eq!((report.blobs, report.links), (0, 0), "{report:?}");
    assert!(e.resolve_tag(&repo(), &tag("v1")).await.is_err());
    put(&e, Reference::Tag(tag("v1")), manifest(&config, &layer, 1))
        .await
        .unwrap();
}

/// A push that passed its first check before a whole collection ran, and stores its record
/// only after the collection deleted its blobs, is refused by its check after the record
/// (the bytes and links are gone), and tags nothing.
#[tokio::test]
async fn a_push_overtaken_by_a_whole_collection_is_refused_by_its_post_check() {
    let e = engine();
    let (config, layer) = reclaimable(&e).await;
    let mut record = e.backend().gate(Op::Write, When::Before, "/_manifests/");
    let push = tokio::spawn({
        let e = e.clone();
        async move { put(&e, Reference::Tag(tag("v1")), manifest(&config, &layer, 2)).await }
    });
    record.reached().await;
    let report = e.collect_garbage(&options(false)).await.unwrap();
    assert_eq!(report.blobs, 2, "{report:?}");
    record.resume();
    let pushed = push.await.unwrap();
    assert!(
        matches!(pushed, Err(Error::ManifestBlobUnknown(_))),
        "{pushed:?}"
    );
    assert!(e.resolve_tag(&repo(), &tag("v1")).await.is_err());
}

/// Tagging an untagged manifest while a collection deleting untagged manifests condemned it:
/// the push's intent, written before the collection's re-mark, keeps the manifest.
#[tokio::test]
async fn an_intent_written_before_the_re_mark_keeps_the_manifest() {
    let e = engine();
    let (config, layer) = reclaimable(&e).await;
    let m = put(&e, Reference::Tag(tag("tmp")), manifest(&config, &layer, 3))
        .await
        .unwrap();
    e.untag_manifest(&repo(), &tag("tmp")).await.unwrap();
    let (condemned, gc) = held_after_condemning(&e, true).await;
    let mut intent = e.backend().gate(Op::Write, When::After, "/_intents/");
    let tagging = tokio::spawn({
        let (e, m) = (e.clone(), m.clone());
        async move { e.tag_manifest(&repo(), &tag("v1"), &m).await }
    });
    intent.reached().await;
    condemned.resume();
    let report = gc.await.unwrap().unwrap();
    intent.resume();
    tagging.await.unwrap().unwrap();
    assert_eq!((report.manifests, report.blobs), (0, 0), "{report:?}");
    let served = e
        .get_manifest(&repo(), &Reference::Tag(tag("v1")))
        .await
        .unwrap();
    assert_eq!(served.info.digest, m);
}

/// Tags the untagged manifest `m` as `v1` while a collection deleting untagged manifests
/// is about to remove its record (the push sees it condemned first); returns the
/// collection's report and the tagging's outcome.
async fn tag_while_collected(e: &std::sync::Arc<Gc>, m: &Digest) -> (GcReport, Result<()>) {
    let mut deleting = e.backend().gate(Op::Remove, When::Before, "/_manifests/");
    let gc = tokio::spawn({
        let e = e.clone();
        async move { e.collect_garbage(&options(true)).await }
    });
    deleting.reached().await;
    let mut checked = e.backend().gate(Op::List, When::After, "gc");
    // (`gc` names only the condemned sets' directory here: the repository is `race/repo`.)
    let tagging = tokio::spawn({
        let (e, m) = (e.clone(), m.clone());
        async move { e.tag_manifest(&repo(), &tag("v1"), &m).await }
    });
    checked.reached().await; // the push has seen the condemned set
    checked.resume();
    deleting.resume();
    let report = gc.await.unwrap().unwrap();
    (report, tagging.await.unwrap())
}

/// Tagging an untagged manifest a collection has decided to delete: the push sees it
/// condemned, waits until the collection is done, stores the record again and tags it.
#[tokio::test]
async fn a_push_meeting_its_condemned_manifest_waits_and_restores_it() {
    let e = engine();
    let (config, layer) = reclaimable(&e).await;
    let m = put(&e, Reference::Tag(tag("tmp")), manifest(&config, &layer, 4))
        .await
        .unwrap();
    e.untag_manifest(&repo(), &tag("tmp")).await.unwrap();
    // Another image keeps the blobs, so only the manifest is at stake.
    put(
        &e,
        Reference::Tag(tag("keep")),
        manifest(&config, &layer, 40),
    )
    .await
    .unwrap();
    let (report, tagged) = tag_while_collected(&e, &m).await;
    assert_eq!(report.manifests, 1, "{report:?}");
    tagged.unwrap();
    let served = e
        .get_manifest(&repo(), &Reference::Tag(tag("v1")))
        .await
        .unwrap();
    assert_eq!(served.info.digest, m);
    e.stat(&repo(), &layer).await.unwrap();
    e.stat(&repo(), &config).await.unwrap();
}

/// Tagging an untagged manifest a collection deletes with its blobs (nothing else keeps
/// them): the push waits, finds the record and the blobs gone, and is refused without
/// storing the record again (it would be served by digest, its blobs missing).
#[tokio::test]
async fn a_push_meeting_its_condemned_manifest_without_its_blobs_restores_nothing() {
    let e = engine();
    let (config, layer) = reclaimable(&e).await;
    let m = put(&e, Reference::Tag(tag("tmp")), manifest(&config, &layer, 5))
        .await
        .unwrap();
    e.untag_manifest(&repo(), &tag("tmp")).await.unwrap();
    let (report, tagged) = tag_while_collected(&e, &m).await;
    assert_eq!((report.manifests, report.blobs), (1, 2), "{report:?}");
    assert!(
        matches!(tagged, Err(Error::ManifestBlobUnknown(_))),
        "{tagged:?}"
    );
    assert!(e.resolve_tag(&repo(), &tag("v1")).await.is_err());
    let served = e.get_manifest(&repo(), &Reference::Digest(m)).await;
    assert!(
        served.is_err(),
        "a refused push left its record: {served:?}"
    );
}

/// A push by tag whose manifest a client deletes, and a collection then reclaims, between
/// the push's checks and its tag: the push finds its record gone after writing the tag and
/// stores it again only through the checks of a push that just stored it. Either it is
/// acknowledged with everything it references present, or it is refused and takes its tag
/// back: never a tag naming a manifest whose blobs are gone.
#[tokio::test]
async fn a_tagged_push_overtaken_by_a_delete_and_a_collection_leaves_nothing_broken() {
    let e = engine();
    let (config, layer) = reclaimable(&e).await;
    let bytes = manifest(&config, &layer, 6);
    let m = put(&e, Reference::Tag(tag("a")), bytes.clone())
        .await
        .unwrap();
    let mut tagging = e.backend().gate(Op::Write, When::Before, "v1");
    let push = tokio::spawn({
        let e = e.clone();
        async move { put(&e, Reference::Tag(tag("v1")), bytes).await }
    });
    tagging.reached().await; // checked, about to write its tag
    e.delete_manifest(&repo(), &m).await.unwrap();
    let report = e.collect_garbage(&options(false)).await.unwrap();
    tagging.resume();
    match push.await.unwrap() {
        Ok(_) => {
            let served = e.get_manifest(&repo(), &Reference::Tag(tag("v1"))).await;
            assert_eq!(served.unwrap().info.digest, m);
            e.stat(&repo(), &config).await.unwrap();
            e.stat(&repo(), &layer).await.unwrap();
        }
        Err(Error::ManifestBlobUnknown(_)) => {
            assert!(e.resolve_tag(&repo(), &tag("v1")).await.is_err());
            let listed = e.get_tags(&repo(), None, None).await.map(|t| t.tags);
            assert!(
                !matches!(&listed, Ok(t) if t.contains(&"v1".to_owned())),
                "{listed:?}"
            );
            let served = e.get_manifest(&repo(), &Reference::Digest(m)).await;
            assert!(served.is_err(), "{served:?}");
        }
        Err(other) => panic!("{other:?} ({report:?})"),
    }
}

/// An index pushed by tag while its untagged child is condemned is refused before any tag
/// is written; the collection then deletes the child.
#[tokio::test]
async fn an_index_of_a_condemned_child_is_refused_without_a_tag() {
    let e = engine();
    let (config, layer) = reclaimable(&e).await;
    let child_bytes = manifest(&config, &layer, 5);
    let child = put(
        &e,
        Reference::Digest(Digest::compute(DigestAlgorithm::Sha256, &child_bytes)),
        child_bytes.clone(),
    )
    .await
    .unwrap();
    let (condemned, gc) = held_after_condemning(&e, true).await;
    let index = Bytes::from(format!(
        r#"{{"schemaVersion":2,"mediaType":"{}","manifests":[{{"mediaType":"{}","digest":"{child}","size":{}}}]}}"#,
        media_types::OCI_INDEX,
        media_types::OCI_MANIFEST,
        child_bytes.len()
    ));
    let pushed = e
        .put_manifest(
            &repo(),
            &Reference::Tag(tag("multi")),
            Some(media_types::OCI_INDEX),
            index,
        )
        .await;
    assert!(matches!(pushed, Err(Error::ManifestBlobUnknown(d)) if d == child));
    assert!(e.resolve_tag(&repo(), &tag("multi")).await.is_err());
    condemned.resume();
    let report = gc.await.unwrap().unwrap();
    assert!(report.manifests >= 1, "{report:?}");
    assert!(matches!(
        e.get_manifest(&repo(), &Reference::Digest(child)).await,
        Err(Error::ManifestUnknown(_))
    ));
}

/// The condemned set of a collection that died blocks pushes of what it lists (never
/// damaging anything) until a collection finds it past its deadline and removes it.
#[tokio::test]
async fn a_dead_collections_set_blocks_until_a_later_one_removes_it() {
    let e = engine();
    let (config, layer) = reclaimable(&e).await;
    let mut set = super::condemned::Condemned::new(SystemTime::now());
    set.add_blob(layer.clone());
    let key = layout::gc_marker("0-dead");
    e.backend().write(&key, set.encode()).await.unwrap();
    let refused = put(&e, Reference::Tag(tag("v1")), manifest(&config, &layer, 6)).await;
    assert!(
        matches!(refused, Err(Error::ManifestBlobUnknown(_))),
        "{refused:?}"
    );
    // Not yet past the deadline plus the margin: it stays.
    e.collect_garbage(&GcOptions {
        grace: Duration::from_secs(3600),
        ..options(false)
    })
    .await
    .unwrap();
    assert!(e.backend().read(&key).await.unwrap().is_some());
    let mut old = super::condemned::Condemned::new(
        SystemTime::now() - crate::storage::lifecycle::CLOCK_MARGIN - Duration::from_secs(60),
    );
    old.add_blob(layer.clone());
    e.backend().write(&key, old.encode()).await.unwrap();
    e.collect_garbage(&GcOptions {
        grace: Duration::from_secs(3600),
        ..options(false)
    })
    .await
    .unwrap();
    assert!(e.backend().read(&key).await.unwrap().is_none());
    put(&e, Reference::Tag(tag("v1")), manifest(&config, &layer, 6))
        .await
        .unwrap();
}

/// A mount whose source's bytes a collection deletes between the mount's check and its link
/// leaves no link behind (the client is asked to upload instead).
#[tokio::test]
async fn a_mount_racing_a_collection_leaves_no_dangling_link() {
    let e = engine();
    let (_, layer) = reclaimable(&e).await;
    let to = RepositoryName::parse("race/mounted").unwrap();
    let mut linking = e
        .backend()
        .gate(Op::Write, When::Before, "race/mounted/_layers/");
    let mount = tokio::spawn({
        let (e, to, layer) = (e.clone(), to.clone(), layer.clone());
        async move { e.mount_blob(&repo(), &to, &layer).await }
    });
    linking.reached().await;
    let report = e.collect_garbage(&options(false)).await.unwrap();
    assert_eq!(report.blobs, 2, "{report:?}");
    linking.resume();
    assert!(matches!(mount.await.unwrap(), Err(Error::BlobUnknown(_))));
    assert!(matches!(
        e.stat(&to, &layer).await,
        Err(Error::BlobUnknown(_))
    ));
    assert!(
        e.backend()
            .read(&layout::layer_link(&to, &layer))
            .await
            .unwrap()
            .is_none()
    );
}
