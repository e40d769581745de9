//! Upload session cases: chunks, offsets, failures that leave the session usable, digest
//! verification, abort, resume from another driver instance.
//!
//! By theme: `chunks` (sessions whose every request succeeds), `failures` (requests refused
//! or failing midway), `concurrency` (sessions used at once) and `resume` (sessions continued
//! by another driver instance).

mod chunks;
mod concurrency;
mod failures;
mod resume;

use crate::storage::{StorageDriver, UploadHandle, UploadId};

use super::ok;

pub use chunks::*;
pub use concurrency::*;
pub use failures::*;
pub use resume::*;

/// Asserts the session's offset through `get_upload_progress`.
async fn assert_offset<D: StorageDriver>(
    d: &D,
    r: &crate::oci::RepositoryName,
    id: &UploadId,
    offset: u64,
) {
    let p = ok!(d.get_upload_progress(r, id).await).progress();
    assert_eq!(&p.id, id, "progress id");
    assert_eq!(p.offset, offset, "upload offset");
}

const MIB: usize = 1024 * 1024;
