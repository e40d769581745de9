//! The stored form of a manifest: `<media type>\n<exact bytes>`.

use bytes::{BufMut, Bytes, BytesMut};

use crate::error::{Error, Result};
use crate::oci::Digest;
use crate::storage::{Manifest, ManifestInfo};

/// Encodes a stored manifest: `<media type>\n<exact bytes>`.
pub(super) fn encode_manifest(media_type: &str, bytes: &[u8]) -> Bytes {
    let mut out = BytesMut::with_capacity(media_type.len() + 1 + bytes.len());
    out.put_slice(media_type.as_bytes());
    out.put_u8(b'\n');
    out.put_slice(bytes);
    out.freeze()
}

pub(super) fn decode_manifest(
    driver: &'static str,
    digest: &Digest,
    stored: Bytes,
) -> Result<Manifest> {
    let nl = stored
        .iter()
        .position(|&b| b == b'\n')
        .ok_or_else(|| Error::backend(driver, format!("corrupt manifest record {digest}")))?;
    let media_type = std::str::from_utf8(&stored[..nl])
        .map_err(|_| Error::backend(driver, format!("corrupt manifest record {digest}")))?
        .to_owned();
    let bytes = stored.slice(nl + 1..);
    Ok(Manifest {
        info: ManifestInfo {
            digest: digest.clone(),
            size: bytes.len() as u64,
            media_type,
        },
        bytes,
    })
}
