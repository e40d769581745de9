//! Object names: the configured prefix (normalised to `""` or `"a/b/"`) followed by the
//! [`layout`] key. Besides the layout's keys the driver names the pieces of a chunked upload
//! in progress, all below `uploads/<id>/`: `part-<end offset>-<random>`, each holding the
//! upload's bytes up to `end` since the previous piece (see [`super::upload`]).

use crate::storage::UploadId;
use crate::storage::layout::{self, Dir, Key};

/// Turns layout keys into object names under a prefix, and back.
#[derive(Debug, Clone)]
pub(crate) struct Names {
    prefix: String,
}

impl Names {
    /// Names under a normalised prefix (`""` or ending in `/`).
    pub(crate) fn new(prefix: String) -> Self {
        Self { prefix }
    }

    /// The prefix.
    pub(crate) fn prefix(&self) -> &str {
        &self.prefix
    }

    /// The object name of a layout key.
    pub(crate) fn object(&self, key: &Key) -> String {
        format!("{}{}", self.prefix, key.as_str())
    }

    /// The listing prefix of a layout directory: its object name followed by `/` (so that
    /// listing `…/a/v1` never matches `…/a/v1.0/x`) and the directory's name prefix (`tag-`
    /// for tags).
    pub(crate) fn dir(&self, dir: &Dir) -> String {
        [&self.prefix, dir.as_str(), "/", dir.name_prefix()].concat()
    }

    /// The listing prefix of everything an upload owns: `uploads/<id>/`.
    pub(crate) fn upload_dir(&self, id: &UploadId) -> String {
        self.dir(&layout::upload_data_dir(id))
    }

    /// The object of one piece of a chunked upload (its bytes end at `end` of the upload;
    /// `nonce` is new for every piece written, so no two writes ever share a name).
    pub(crate) fn piece(&self, id: &UploadId, end: u64, nonce: u64) -> String {
        format!("{}part-{end:020}-{nonce:016x}", self.upload_dir(id))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        let id = UploadId::parse("0123456789abcdef0123456789abcdef").unwrap();
        let names = Names::new("reg/".into());
        assert_eq!(
            names.piece(&id, 42, 0xab),
            "reg/uploads/0123456789abcdef0123456789abcdef/part-00000000000000000042-00000000000000ab"
        );
        assert_eq!(
            names.upload_dir(&id),
            "reg/uploads/0123456789abcdef0123456789abcdef/"
        );
    }
}
