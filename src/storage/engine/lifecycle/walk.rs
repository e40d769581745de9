//! Walking the repository tree: the catalog's listing and every collection phase's loop over
//! repositories.
//!
//! Repository names are paths: `library/ubuntu` is the directory
//! `repositories/library/ubuntu/`, a repository if it holds `_layers`, `_manifests` or
//! `_tags` (with an object in it), and possibly the parent of nested repositories. The walk
//! is depth first, each directory's children in the backend's order (the bytes of the name
//! followed by `/`, see [`LifecycleBackend::list_dirs`]), so the repositories come out in
//! the order of their names followed by `/`, and a walk can resume after any name by
//! descending along it. It costs one directory listing per directory visited, plus one for a
//! directory with more children than a page; it lists up to [`LISTINGS_AHEAD`] sibling
//! directories at once.
//!
//! A collection's phases visit the repositories the walk yields a few at a time
//! ([`visit_repositories`]): each visit is a handful of requests in a row on an object store
//! (listings, then the records they name), so visiting one repository after another would
//! make a store with thousands of repositories cost thousands of round trips in a row.

use std::collections::VecDeque;
use std::future::Future;

use futures::{Stream, TryStreamExt};

use crate::error::{Error, Result};
use crate::oci::RepositoryName;
use crate::storage::engine::Engine;
use crate::storage::layout;
use crate::storage::lifecycle::{LifecycleBackend, RepositoryList};

/// Children listed per directory request.
const PAGE: usize = 1000;
/// Repositories a collection's phase visits at once.
pub(super) const REPOSITORIES_IN_FLIGHT: usize = 8;
/// Directories a walk lists at once (the next children of the directory it is in): on an
/// object store the walk would otherwise cost a round trip in a row per directory.
const LISTINGS_AHEAD: usize = 8;
/// A position just before every reserved (`_`) name in the listing order (`^` < `_`).
const BEFORE_RESERVED: &str = "^";
/// More than the reserved names a repository directory holds.
const RESERVED_NAMES: usize = 16;

/// One directory being walked.
struct Frame {
    /// The directory's path below `repositories/` (`""` for the root).
    path: String,
    /// Where the next page of its children starts.
    cursor: Option<String>,
    /// Children listed and not yet visited (reserved names removed).
    children: VecDeque<String>,
    /// The listings of the first of `children`, made ahead a few at a time.
    listings: VecDeque<(Vec<String>, bool)>,
    /// Whether every child has been listed.
    listed: bool,
}

impl Frame {
    fn resume(path: String, after: Option<String>) -> Self {
        Self {
            path,
            cursor: after,
            children: VecDeque::new(),
            listings: VecDeque::new(),
            listed: false,
        }
    }

    fn child(&self, name: &str) -> String {
        if self.path.is_empty() {
            name.to_owned()
        } else {
            [self.path.as_str(), "/", name].concat()
        }
    }
}

fn reserved(name: &str) -> bool {
    name.starts_with('_')
}

/// Which directories a walk yields.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Yield {
    /// Repositories: a blob link, a manifest or a tag (the catalog's definition).
    Repositories,
    /// Every directory holding anything of a repository's, upload sessions and push intents
    /// included (what the collection visits).
    Everything,
}

impl Yield {
    fn marks(self, name: &str) -> bool {
        match self {
            Self::Repositories => layout::REPOSITORY_MARKS.contains(&name),
            Self::Everything => reserved(name),
        }
    }
}

/// A depth-first walk yielding repositories in listing order.
pub(super) struct RepositoryWalk<'e, B> {
    engine: &'e Engine<B>,
    stack: Vec<Frame>,
    yields: Yield,
}

impl<'e, B: LifecycleBackend> RepositoryWalk<'e, B> {
    /// A walk over every directory holding anything of a repository's (the collection's).
    pub(super) fn everything(engine: &'e Engine<B>) -> Self {
        Self::new(engine, None, Yield::Everything)
    }

    /// A walk over the repositories `yields` names, or those after `last` in listing order.
    pub(super) fn new(engine: &'e Engine<B>, last: Option<&RepositoryName>, yields: Yield) -> Self {
        let mut stack = vec![];
        match last {
            None => stack.push(Frame::resume(String::new(), None)),
            Some(last) => {
                // Descend along `last`: each ancestor resumes after the component on the way
                // down, `last` itself lists all its children (they follow it) but is not
                // yielded again.
                let components: Vec<&str> = last.as_str().split('/').collect();
                let mut path = String::new();
                for component in &components {
                    stack.push(Frame::resume(path.clone(), Some((*component).to_owned())));
                    if !path.is_empty() {
                        path.push('/');
                    }
                    path.push_str(component);
                }
                stack.push(Frame::resume(path, None));
            }
        }
        Self {
            engine,
            stack,
            yields,
        }
    }

    /// The next repository, or `None` at the end.
    pub(super) async fn next(&mut self) -> Result<Option<RepositoryName>> {
        loop {
            let Some(top) = self.stack.last_mut() else {
                return Ok(None);
            };
            if top.children.is_empty() && !top.listed {
                let (path, cursor) = (top.path.clone(), top.cursor.clone());
                let (names, listed) = self.list(&path, cursor.as_deref()).await?;
                let top = self.stack.last_mut().expect("still there");
                top.listed = listed;
                top.cursor = names.last().cloned();
                top.children = names.into_iter().filter(|n| !reserved(n)).collect();
                continue;
            }
            if top.children.is_empty() {
                self.stack.pop();
                continue;
            }
            if top.listings.is_empty() {
                let ahead: Vec<String> = top
                    .children
                    .iter()
                    .take(LISTINGS_AHEAD)
                    .map(|child| top.child(child))
                    .collect();
                let listings =
                    futures::future::try_join_all(ahead.iter().map(|path| self.list(path, None)))
                        .await?;
                let top = self.stack.last_mut().expect("still there");
                top.listings.extend(listings);
                continue;
            }
            let (Some(child), Some((names, listed))) =
                (top.children.pop_front(), top.listings.pop_front())
            else {
                unreachable!("a listing per child listed ahead");
            };
            let path = top.child(&child);
            let is_repository = if listed {
                names.iter().any(|n| self.yields.marks(n))
            } else {
                // Too many children for one page to show the reserved ones.
                let dir = layout::repository_path_dir(&path);
                let marks = self
                    .engine
                    .backend
                    .list_dirs(&dir, Some(BEFORE_RESERVED), RESERVED_NAMES)
                    .await?;
                marks.iter().any(|n| self.yields.marks(n))
            };
            let cursor = names.last().cloned();
            self.stack.push(Frame {
                path: path.clone(),
                cursor,
                children: names.into_iter().filter(|n| !reserved(n)).collect(),
                listings: VecDeque::new(),
                listed,
            });
            if is_repository {
                match RepositoryName::parse(&path) {
                    Ok(name) => return Ok(Some(name)),
                    Err(_) => {
                        tracing::warn!(path, "skipping a directory that is not a repository name");
                    }
                }
            }
        }
    }

    /// The walk as a stream of repositories.
    fn into_stream(self) -> impl Stream<Item = Result<RepositoryName>> + 'e {
        futures::stream::try_unfold(self, |mut walk| async move {
            Ok(walk.next().await?.map(|repo| (repo, walk)))
        })
    }

    /// One page of the subdirectories of `path` after `cursor`, and whether it is the last.
    async fn list(&self, path: &str, cursor: Option<&str>) -> Result<(Vec<String>, bool)> {
        let dir = layout::repository_path_dir(path);
        let names = self.engine.backend.list_dirs(&dir, cursor, PAGE).await?;
        let listed = names.len() < PAGE;
        Ok((names, listed))
    }
}

/// What `visit` makes of every repository [`RepositoryWalk::everything`] yields, in the
/// walk's order, with up to [`REPOSITORIES_IN_FLIGHT`] visits (and the walk's next listings)
/// under way at once.
///
/// A visit only reads; what it finds to delete, the caller deletes as each result comes,
/// after checking its lease. The first error ends the stream, and dropping the stream
/// abandons the visits under way: a request abandoned may still be carried out by the store
/// later, which for a delete could be after the run released the condemned set that allowed
/// it. The one exception, expiry's removal of a tag in phase 1's survey, only widens what
/// expiry already gives up (a tag moved by another process while its removal is under way:
/// see "Expiry" in the [`lifecycle`](crate::storage::lifecycle) docs).
pub(super) fn visit_repositories<'a, B, T, Fut>(
    engine: &'a Engine<B>,
    visit: impl FnMut(RepositoryName) -> Fut + 'a,
) -> impl Stream<Item = Result<T>> + 'a
where
    B: LifecycleBackend,
    Fut: Future<Output = Result<T>> + 'a,
{
    RepositoryWalk::everything(engine)
        .into_stream()
        .map_ok(visit)
        .try_buffered(REPOSITORIES_IN_FLIGHT)
}

impl<B: LifecycleBackend> Engine<B> {
    /// Implements [`Lifecycle::repositories`](crate::storage::lifecycle::Lifecycle::repositories).
    pub(super) async fn repository_list(
        &self,
        n: Option<usize>,
        last: Option<&str>,
    ) -> Result<RepositoryList> {
        if n == Some(0) {
            return Ok(RepositoryList::default());
        }
        let last = last
            .map(|l| RepositoryName::parse(l).map_err(|_| Error::NameInvalid(l.to_owned())))
            .transpose()?;
        let mut walk = RepositoryWalk::new(self, last.as_ref(), Yield::Repositories);
        let mut repositories = Vec::new();
        let mut has_more = false;
        while let Some(name) = walk.next().await? {
            if n.is_some_and(|n| repositories.len() == n) {
                has_more = true;
                break;
            }
            repositories.push(name.as_str().to_owned());
        }
        Ok(RepositoryList {
            repositories,
            has_more,
        })
    }
}
