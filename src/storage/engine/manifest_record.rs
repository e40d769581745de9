//! The stored form of a manifest: `<digest> <media type>\n<exact bytes>`.
//!
//! The record starts with the manifest's digest, like a tag's content: a backend may store a
//! tag as the manifest record itself (the filesystem: a hard link to it), and the tag still
//! resolves by its first word ([`target_digest`]). Records written before the digest led them
//! (`<media type>\n<bytes>`) are still read.

use bytes::{BufMut, Bytes, BytesMut};

use crate::oci::Digest;
use crate::storage::{Manifest, ManifestInfo};

/// Encodes a stored manifest: `<digest> <media type>\n<exact bytes>`.
pub(super) fn encode_manifest(digest: &Digest, media_type: &str, bytes: &[u8]) -> Bytes {
    let digest = digest.as_str();
    let mut out = BytesMut::with_capacity(digest.len() + 1 + media_type.len() + 1 + bytes.len());
    out.put_slice(digest.as_bytes());
    out.put_u8(b' ');
    out.put_slice(media_type.as_bytes());
    out.put_u8(b'\n');
    out.put_slice(bytes);
    out.freeze()
}

/// Decodes a stored manifest record, or `None` if it is torn or corrupt: no media type
/// line, or bytes that do not hash to `digest` (a record may be seen torn, which the
/// [`Backend`](crate::storage::backend::Backend) contract leaves to the reader to detect).
pub(super) fn decode_manifest(digest: &Digest, stored: Bytes) -> Option<Manifest> {
    let nl = stored.iter().position(|&b| b == b'\n')?;
    let head = std::str::from_utf8(&stored[..nl]).ok()?;
    // Media types have no spaces; a leading digest is checked by hashing the bytes below.
    let media_type = head
        .split_once(' ')
        .map_or(head, |(_, media_type)| media_type);
    let media_type = media_type.to_owned();
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

/// The digest a tag's stored content names: its first word, whether the content is the bare
/// digest or a manifest record (see the module documentation).
pub(super) fn target_digest(content: &[u8]) -> Option<Digest> {
    let end = content
        .iter()
        .position(|&b| b == b' ' || b == b'\n')
        .unwrap_or(content.len());
    let word = std::str::from_utf8(&content[..end]).ok()?;
    Digest::parse(word.trim()).ok()
}

/// Whether a tag's stored content names the manifest `digest` ([`target_digest`]).
pub(super) fn names_manifest(content: &[u8], digest: &Digest) -> bool {
    target_digest(content).as_ref() == Some(digest)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::oci::DigestAlgorithm;

    #[test]
    fn a_record_round_trips_and_a_torn_one_is_absent() {
        let bytes = br#"{"schemaVersion":2}"#;
        let digest = Digest::compute(DigestAlgorithm::Sha256, bytes);
        let media_type = "application/vnd.oci.image.manifest.v1+json";
        let record = encode_manifest(&digest, media_type, bytes);
        assert_eq!(target_digest(&record), Some(digest.clone()));
        assert_eq!(
            target_digest(format!("{digest}\n").as_bytes()),
            Some(digest.clone())
        );
        // A record from before the digest led it.
        let legacy = Bytes::from([media_type.as_bytes(), b"\n", &bytes[..]].concat());
        assert_eq!(
            decode_manifest(&digest, legacy).unwrap().info.media_type,
            media_type
        );
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
