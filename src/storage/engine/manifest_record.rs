//! The stored form of a manifest: `<media type>\n<exact bytes>`.

use bytes::{BufMut, Bytes, BytesMut};

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

/// Decodes a stored manifest record, or `None` if it is torn or corrupt: no media type
/// line, or bytes that do not hash to `digest` (records are written with
/// [`Backend::write_verified`](crate::storage::backend::Backend::write_verified), which
/// leaves verification to the reader).
pub(super) fn decode_manifest(digest: &Digest, stored: Bytes) -> Option<Manifest> {
    let nl = stored.iter().position(|&b| b == b'\n')?;
    let media_type = std::str::from_utf8(&stored[..nl]).ok()?.to_owned();
    let bytes = stored.slice(nl + 1..);
    if Digest::compute(digest.algorithm(), &bytes) != *digest {
        return None;
    }
    Some(Manifest {
        info: ManifestInfo {
            digest: digest.clone(),
            size: bytes.len() as u64,
            media_type,
        },
        bytes,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::oci::DigestAlgorithm;

    #[test]
    fn a_record_round_trips_and_a_torn_one_is_absent() {
        let bytes = br#"{"schemaVersion":2}"#;
        let digest = Digest::compute(DigestAlgorithm::Sha256, bytes);
        let record = encode_manifest("application/vnd.oci.image.manifest.v1+json", bytes);
        let manifest = decode_manifest(&digest, record.clone()).unwrap();
        assert_eq!(&manifest.bytes[..], bytes);
        assert_eq!(manifest.info.size, bytes.len() as u64);
        assert_eq!(
            manifest.info.media_type,
            "application/vnd.oci.image.manifest.v1+json"
        );
        for torn in [0, 5, record.len() - 1] {
            assert!(decode_manifest(&digest, record.slice(..torn)).is_none());
        }
        let mut flipped = record.to_vec();
        *flipped.last_mut().unwrap() ^= 1;
        assert!(decode_manifest(&digest, Bytes::from(flipped)).is_none());
    }
}
