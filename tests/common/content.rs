//! What the HTTP tests push: digests, deterministic payloads, media types and manifests
//! serialised by hand.

use marina_distribution::oci::{Digest, DigestAlgorithm};

/// OCI image manifest media type.
pub const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
/// OCI image index media type.
pub const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
/// OCI image config media type.
pub const OCI_CONFIG: &str = "application/vnd.oci.image.config.v1+json";

/// sha256 digest of `data`.
pub fn sha256(data: &[u8]) -> String {
    Digest::compute(DigestAlgorithm::Sha256, data).to_string()
}

/// sha256 digest of `data`, as the library's type.
pub fn sha256_digest(data: &[u8]) -> Digest {
    Digest::compute(DigestAlgorithm::Sha256, data)
}

/// sha512 digest of `data`.
pub fn sha512(data: &[u8]) -> String {
    Digest::compute(DigestAlgorithm::Sha512, data).to_string()
}

/// A deterministic pseudo-random payload.
pub fn payload(len: usize, seed: u8) -> Vec<u8> {
    let mut x: u32 = 0x9e37_79b9 ^ u32::from(seed);
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            x as u8
        })
        .collect()
}

/// A request body of `data` sent in pieces of `piece` bytes with chunked transfer encoding,
/// so without `Content-Length`.
pub fn streamed(data: &[u8], piece: usize) -> reqwest::Body {
    let pieces: Vec<Result<Vec<u8>, std::io::Error>> =
        data.chunks(piece).map(|c| Ok(c.to_vec())).collect();
    reqwest::Body::wrap_stream(futures::stream::iter(pieces))
}

/// An OCI image manifest (serialised by hand, with an odd spacing, so byte-exact storage is
/// observable); `extra` is one more top-level member (`"subject": {...}`, ...).
pub fn image_manifest(
    config_digest: &str,
    config_size: usize,
    layers: &[(&str, usize)],
    extra: Option<&str>,
) -> String {
    let layers: Vec<String> = layers
        .iter()
        .map(|(d, s)| {
            format!(
                "{{\"mediaType\":\"application/vnd.oci.image.layer.v1.tar\",\"digest\":\"{d}\",\"size\":{s}}}"
            )
        })
        .collect();
    format!(
        "{{\n  \"schemaVersion\": 2,\n  \"mediaType\": \"{OCI_MANIFEST}\",\n  \"config\": {{\"mediaType\":\"{OCI_CONFIG}\",\"digest\":\"{config_digest}\",\"size\":{config_size}}},\n  \"layers\": [{}]{}\n}}\n",
        layers.join(","),
        extra.map(|e| format!(",\n  {e}")).unwrap_or_default()
    )
}

/// The `"subject": {...}` member naming the image manifest `digest` of `size` bytes.
pub fn subject(digest: &str, size: usize) -> String {
    format!(
        "\"subject\": {{\"mediaType\":\"{OCI_MANIFEST}\",\"digest\":\"{digest}\",\"size\":{size}}}"
    )
}

/// An OCI image index listing the image manifests `(digest, size)`.
pub fn image_index(manifests: &[(&str, usize)]) -> String {
    let manifests: Vec<String> = manifests
        .iter()
        .map(|(d, s)| {
            format!("{{\"mediaType\":\"{OCI_MANIFEST}\",\"digest\":\"{d}\",\"size\":{s}}}")
        })
        .collect();
    format!(
        "{{\"schemaVersion\":2,\"mediaType\":\"{OCI_INDEX}\",\"manifests\":[{}]}}",
        manifests.join(",")
    )
}
