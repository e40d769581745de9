//! Mapping of [`layout`] keys to S3 object keys: the configured
//! prefix (normalised to `""` or `"a/b/"`) followed by the layout key.
//!
//! Besides the layout's keys the driver names the objects of an upload in progress itself,
//! all below `uploads/<id>/` (see the module docs of [`super`]):
//! `uploads/<id>/data` (the multipart upload of a chunked push) and
//! `uploads/<id>/staged-<end offset>-<random>` (a staged segment of the remainder below one
//! part).

use crate::storage::UploadId;
use crate::storage::layout::{self, Dir, Key};
use crate::storage::s3::upload::SegmentName;

/// Turns layout keys into object keys under a prefix.
#[derive(Debug, Clone)]
pub(crate) struct KeyMap {
    prefix: String,
}

impl KeyMap {
    /// A map for a normalised prefix (`""` or ending in `/`).
    pub(crate) fn new(prefix: String) -> Self {
        Self { prefix }
    }

    /// The prefix.
    pub(crate) fn prefix(&self) -> &str {
        &self.prefix
    }

    /// The object key of a layout key.
    pub(crate) fn object(&self, key: &Key) -> String {
        format!("{}{}", self.prefix, key.as_str())
    }

    /// The listing prefix of a layout directory: its object key followed by `/` (so that
    /// listing `…/a/v1` never matches `…/a/v1.0/x`) and the directory's name prefix (`tag-`
    /// for tags).
    pub(crate) fn dir(&self, dir: &Dir) -> String {
        [&self.prefix, dir.as_str(), "/", dir.name_prefix()].concat()
    }

    /// The listing prefix of everything an upload owns: `uploads/<id>/`.
    pub(crate) fn upload_dir(&self, id: &UploadId) -> String {
        self.dir(&layout::upload_data_dir(id))
    }

    /// The object a chunked upload's multipart upload completes into.
    pub(crate) fn upload_data(&self, id: &UploadId) -> String {
        self.object(&layout::upload_part(id, "data"))
    }

    /// The object of the staged segment `name` (its last byte at `end - 1` of the upload).
    /// Every segment gets a new name (its end offset and a random part), so a failed append
    /// never touches an object the previous upload state refers to, and two appends at the
    /// same offset never write the same object.
    pub(crate) fn staged(&self, id: &UploadId, name: SegmentName) -> String {
        let SegmentName { end, nonce } = name;
        if nonce == 0 {
            // Named by a state written before segment names had a random part.
            format!("{}staged-{end:020}", self.upload_dir(id))
        } else {
            format!("{}staged-{end:020}-{nonce:016x}", self.upload_dir(id))
        }
    }
}

/// Percent-encodes an object key for `x-amz-copy-source` (`/` stays as is).
pub(crate) fn encode_copy_source(bucket: &str, key: &str) -> String {
    let mut out = String::with_capacity(bucket.len() + key.len() + 8);
    out.push_str(bucket);
    out.push('/');
    for b in key.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~' | b'/') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefix_and_upload_keys() {
        let id = UploadId::parse("0123456789abcdef0123456789abcdef").unwrap();
        let keys = KeyMap::new("reg/".into());
        assert_eq!(
            keys.upload_data(&id),
            "reg/uploads/0123456789abcdef0123456789abcdef/data"
        );
        assert_eq!(
            keys.staged(&id, SegmentName { end: 42, nonce: 0 }),
            "reg/uploads/0123456789abcdef0123456789abcdef/staged-00000000000000000042"
        );
        assert_eq!(
            keys.staged(
                &id,
                SegmentName {
                    end: 42,
                    nonce: 0xab
                }
            ),
            "reg/uploads/0123456789abcdef0123456789abcdef/staged-00000000000000000042-00000000000000ab"
        );
        assert_eq!(
            keys.upload_dir(&id),
            "reg/uploads/0123456789abcdef0123456789abcdef/"
        );
        let bare = KeyMap::new(String::new());
        assert_eq!(
            bare.upload_data(&id),
            "uploads/0123456789abcdef0123456789abcdef/data"
        );
    }

    #[test]
    fn copy_source_is_encoded() {
        assert_eq!(encode_copy_source("b", "a b/c+d"), "b/a%20b/c%2Bd");
        assert_eq!(
            encode_copy_source("b", "blobs/sha256/ab"),
            "b/blobs/sha256/ab"
        );
    }
}
