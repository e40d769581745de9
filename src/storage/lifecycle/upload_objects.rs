//! The objects an object store (S3, GCS) holds below `uploads/`, grouped by the upload they
//! belong to, to pick the uploads whose storage has expired
//! ([`LifecycleBackend::expire_upload_storage`](super::LifecycleBackend::expire_upload_storage)):
//! each backend lists the objects its own way and hands them over one by one.

use std::collections::{HashMap, HashSet};
use std::time::SystemTime;

use super::ExpiredStorage;
use crate::storage::UploadId;

/// The upload an object below the uploads area belongs to: the first segment of its name
/// after `uploads` (the area's full prefix, `…/uploads/`), if that is an upload id.
pub(crate) fn upload_of(uploads: &str, object: &str) -> Option<UploadId> {
    let rest = object.strip_prefix(uploads)?;
    UploadId::parse(rest.split('/').next()?).ok()
}

/// One upload's objects.
#[derive(Debug)]
struct Pieces {
    /// When the newest of them was written.
    newest: SystemTime,
    /// Their bytes.
    bytes: u64,
    /// Their names.
    objects: Vec<String>,
}

/// The objects found below the uploads area (prefix `uploads`), by upload.
#[derive(Debug)]
pub(crate) struct UploadObjects<'a> {
    uploads: &'a str,
    by_upload: HashMap<UploadId, Pieces>,
}

impl<'a> UploadObjects<'a> {
    /// None found yet below `uploads`, the area's full prefix (`…/uploads/`).
    pub(crate) fn new(uploads: &'a str) -> Self {
        Self {
            uploads,
            by_upload: HashMap::new(),
        }
    }

    /// Counts `object` (its full name), of `size` bytes last written at `modified`, with
    /// the upload it belongs to; an object of no upload is passed over.
    pub(crate) fn add(&mut self, object: &str, size: u64, modified: SystemTime) {
        let Some(id) = upload_of(self.uploads, object) else {
            return;
        };
        let pieces = self.by_upload.entry(id).or_insert(Pieces {
            newest: SystemTime::UNIX_EPOCH,
            bytes: 0,
            objects: Vec::new(),
        });
        pieces.newest = pieces.newest.max(modified);
        pieces.bytes += size;
        pieces.objects.push(object.to_owned());
    }

    /// The uploads no `live` session owns and nobody wrote to since `before`: what releasing
    /// them frees, and their objects (to delete).
    pub(crate) fn expired(
        self,
        before: SystemTime,
        live: &HashSet<UploadId>,
    ) -> (ExpiredStorage, Vec<String>) {
        let mut expired = ExpiredStorage::default();
        let mut doomed = Vec::new();
        for (id, pieces) in self.by_upload {
            if live.contains(&id) || pieces.newest >= before {
                continue;
            }
            expired.bytes += pieces.bytes;
            expired.uploads.push(id);
            doomed.extend(pieces.objects);
        }
        (expired, doomed)
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn expired_are_the_uploads_neither_live_nor_written_since() {
        let at = |secs| SystemTime::UNIX_EPOCH + Duration::from_secs(secs);
        let (old, recent, live) = (
            UploadId::generate(),
            UploadId::generate(),
            UploadId::generate(),
        );
        let uploads = "p/uploads/";
        let mut found = UploadObjects::new(uploads);
        found.add(&format!("{uploads}{old}/data"), 10, at(100));
        found.add(&format!("{uploads}{old}/segments/1"), 5, at(150));
        // One recent piece keeps the whole upload.
        found.add(&format!("{uploads}{recent}/data"), 7, at(100));
        found.add(&format!("{uploads}{recent}/segments/1"), 1, at(300));
        found.add(&format!("{uploads}{live}/data"), 3, at(100));
        // Not an upload's.
        found.add(&format!("{uploads}not-an-id/data"), 99, at(0));
        found.add("p/blobs/sha256/aa", 99, at(0));

        let (expired, mut doomed) = found.expired(at(200), &HashSet::from([live]));
        doomed.sort();
        assert_eq!(expired.uploads, std::slice::from_ref(&old));
        assert_eq!((expired.bytes, expired.anonymous), (15, 0));
        assert_eq!(
            doomed,
            [
                format!("{uploads}{old}/data"),
                format!("{uploads}{old}/segments/1")
            ]
        );
    }
}
