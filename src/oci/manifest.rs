//! Manifest inspection: just enough of the OCI image spec (image manifest, image index,
//! artifacts via `artifactType`) and of Docker's v2 schema 2 to validate a pushed manifest,
//! find the blobs and manifests it references, and index it under its `subject`.
//!
//! The bytes themselves are never re-serialised: registries must store and serve manifests
//! byte for byte, so inspection is read-only and tolerant of fields it does not know.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::error::Error;
use crate::oci::Digest;

/// Media types the registry treats specially.
pub mod media_types {
    /// OCI image manifest.
    pub const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
    /// OCI image index; also the type of a referrers response.
    pub const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
    /// Docker image manifest, schema 2.
    pub const DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";
    /// Docker manifest list.
    pub const DOCKER_MANIFEST_LIST: &str =
        "application/vnd.docker.distribution.manifest.list.v2+json";
    /// The OCI empty descriptor's media type.
    pub const OCI_EMPTY: &str = "application/vnd.oci.empty.v1+json";
    /// Docker's foreign (non-distributable) layer.
    pub const DOCKER_FOREIGN_LAYER: &str =
        "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip";
}

/// Default limit on the size of a manifest: 4 MiB, as the spec recommends registries accept
/// at least ("Pushing Manifests").
pub const DEFAULT_MANIFEST_LIMIT: usize = 4 * 1024 * 1024;

/// An OCI content descriptor (image spec, "Descriptors").
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Descriptor {
    /// Media type of the referenced content.
    pub media_type: String,
    /// Digest of the referenced content.
    pub digest: Digest,
    /// Size of the referenced content in bytes.
    pub size: u64,
    /// Artifact type of the referenced manifest, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub artifact_type: Option<String>,
    /// Annotations.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub annotations: Option<BTreeMap<String, String>>,
    /// Alternate download locations (non-distributable content).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub urls: Option<Vec<String>>,
}

impl Descriptor {
    /// Whether the descriptor names non-distributable content, which a registry must accept
    /// in a manifest without having it (OCI image spec, "Non-distributable layers").
    pub fn is_non_distributable(&self) -> bool {
        self.media_type.contains(".nondistributable.")
            || self.media_type == media_types::DOCKER_FOREIGN_LAYER
    }
}

/// The parts of a manifest or index the registry needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ManifestSummary {
    /// The media type to store and serve: the pushed `Content-Type` when given, else the
    /// manifest's own `mediaType`, else the OCI image manifest type.
    pub media_type: String,
    /// `artifactType` of the manifest, or for an image manifest without one, the config's
    /// media type (distribution spec "Listing Referrers").
    pub artifact_type: Option<String>,
    /// The config descriptor (image manifests).
    pub config: Option<Descriptor>,
    /// Layer descriptors (image manifests).
    pub layers: Vec<Descriptor>,
    /// Child manifest descriptors (indexes).
    pub manifests: Vec<Descriptor>,
    /// The manifest this one refers to.
    pub subject: Option<Descriptor>,
    /// The manifest's annotations.
    pub annotations: Option<BTreeMap<String, String>>,
}

impl ManifestSummary {
    /// Blobs that must exist in the repository before the manifest is accepted: config and
    /// layers, minus non-distributable layers.
    pub fn required_blobs(&self) -> impl Iterator<Item = &Descriptor> {
        self.config
            .iter()
            .chain(self.layers.iter().filter(|l| !l.is_non_distributable()))
    }

    /// Manifests that must exist before an index is accepted.
    pub fn required_manifests(&self) -> impl Iterator<Item = &Descriptor> {
        self.manifests.iter()
    }
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct RawManifest {
    schema_version: Option<i64>,
    media_type: Option<String>,
    artifact_type: Option<String>,
    config: Option<Descriptor>,
    layers: Option<Vec<Descriptor>>,
    manifests: Option<Vec<Descriptor>>,
    subject: Option<Descriptor>,
    annotations: Option<BTreeMap<String, String>>,
}

/// Strips parameters (`; charset=...`) and surrounding white space from a media type.
pub fn essence(media_type: &str) -> &str {
    media_type.split(';').next().unwrap_or("").trim()
}

fn valid_media_type(mt: &str) -> bool {
    // RFC 6838 type "/" subtype, restricted-name characters; no control characters.
    let Some((t, s)) = mt.split_once('/') else {
        return false;
    };
    let name_ok = |x: &str| {
        !x.is_empty()
            && x.len() <= 127
            && x.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"!#$&-^_.+".contains(&b))
    };
    name_ok(t) && name_ok(s)
}

/// Inspects manifest `bytes` pushed with `content_type` (the request's `Content-Type`).
///
/// Fails with `MANIFEST_INVALID` when the body is not a JSON object with `schemaVersion` 2,
/// when a descriptor is malformed, when the body's `mediaType` contradicts `content_type`,
/// or when the media type cannot be determined as a valid `type/subtype`.
pub fn inspect(bytes: &[u8], content_type: Option<&str>) -> Result<ManifestSummary, Error> {
    let raw: RawManifest = serde_json::from_slice(bytes)
        .map_err(|e| Error::ManifestInvalid(format!("not a valid manifest: {e}")))?;
    if raw.schema_version != Some(2) {
        return Err(Error::ManifestInvalid("schemaVersion must be 2".to_owned()));
    }
    let content_type = content_type.map(essence).filter(|c| !c.is_empty());
    if let (Some(ct), Some(body)) = (content_type, raw.media_type.as_deref())
        && ct != body
    {
        return Err(Error::ManifestInvalid(format!(
            "Content-Type {ct:?} does not match the manifest's mediaType {body:?}"
        )));
    }
    let media_type = content_type
        .or(raw.media_type.as_deref())
        .unwrap_or(if raw.manifests.is_some() {
            media_types::OCI_INDEX
        } else {
            media_types::OCI_MANIFEST
        })
        .to_owned();
    if !valid_media_type(&media_type) {
        return Err(Error::ManifestInvalid(format!(
            "invalid media type {media_type:?}"
        )));
    }
    let is_index = matches!(
        media_type.as_str(),
        media_types::OCI_INDEX | media_types::DOCKER_MANIFEST_LIST
    );
    let is_image = matches!(
        media_type.as_str(),
        media_types::OCI_MANIFEST | media_types::DOCKER_MANIFEST
    );
    // A manifest is one of the manifest types; anything else (an artifact says what it is
    // in `artifactType`, not in `mediaType`) would be served with a type no client can
    // verify.
    if !is_index && !is_image {
        return Err(Error::ManifestInvalid(format!(
            "{media_type:?} is not a manifest media type (OCI image manifest or index, \
             Docker manifest or manifest list)"
        )));
    }
    for d in raw
        .config
        .iter()
        .chain(raw.layers.iter().flatten())
        .chain(raw.manifests.iter().flatten())
        .chain(raw.subject.iter())
    {
        if !valid_media_type(&d.media_type) {
            return Err(Error::ManifestInvalid(format!(
                "descriptor {} has an invalid mediaType {:?}",
                d.digest, d.media_type
            )));
        }
    }
    if is_index && raw.manifests.is_none() {
        return Err(Error::ManifestInvalid(
            "an index must have a manifests array".to_owned(),
        ));
    }
    if is_image && (raw.config.is_none() || raw.layers.is_none()) {
        return Err(Error::ManifestInvalid(
            "an image manifest must have config and layers".to_owned(),
        ));
    }
    // Referrers listing (spec, "Listing Referrers"): an `artifactType` that is empty or
    // missing is, for an image manifest, the config's media type, and for an index omitted.
    let artifact_type = raw.artifact_type.filter(|t| !t.is_empty()).or_else(|| {
        raw.config
            .as_ref()
            .filter(|_| is_image)
            .map(|c| c.media_type.clone())
    });
    Ok(ManifestSummary {
        media_type,
        artifact_type,
        config: raw.config,
        layers: raw.layers.unwrap_or_default(),
        manifests: raw.manifests.unwrap_or_default(),
        subject: raw.subject,
        annotations: raw.annotations,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const D: &str = "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";

    fn image(extra: &str) -> String {
        format!(
            r#"{{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json",
            "config":{{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"{D}","size":0}},
            "layers":[{{"mediaType":"application/vnd.oci.image.layer.v1.tar","digest":"{D}","size":0}},
                      {{"mediaType":"application/vnd.oci.image.layer.nondistributable.v1.tar","digest":"{D}","size":0}}]{extra}}}"#
        )
    }

    #[test]
    fn image_manifest() {
        let m = inspect(image("").as_bytes(), Some(media_types::OCI_MANIFEST)).unwrap();
        assert_eq!(m.media_type, media_types::OCI_MANIFEST);
        assert_eq!(m.required_blobs().count(), 2);
        assert_eq!(
            m.artifact_type.as_deref(),
            Some("application/vnd.oci.image.config.v1+json")
        );
        assert!(m.subject.is_none());
    }

    #[test]
    fn subject_and_artifact_type() {
        let extra = format!(
            r#","artifactType":"application/x-sig","subject":{{"mediaType":"{}","digest":"{D}","size":1}}"#,
            media_types::OCI_MANIFEST
        );
        let m = inspect(image(&extra).as_bytes(), None).unwrap();
        assert_eq!(m.artifact_type.as_deref(), Some("application/x-sig"));
        assert_eq!(m.subject.unwrap().digest.as_str(), D);
    }

    #[test]
    fn rejects_invalid() {
        assert!(inspect(b"not json", None).is_err());
        assert!(inspect(b"{}", None).is_err());
        assert!(inspect(br#"{"schemaVersion":1}"#, None).is_err());
        // Content-Type contradicting the body.
        assert!(inspect(image("").as_bytes(), Some(media_types::OCI_INDEX)).is_err());
        // Bad digest in a descriptor.
        let bad = image("").replace(D, "sha256:1234");
        assert!(inspect(bad.as_bytes(), None).is_err());
        // Image manifest without layers.
        let no_layers = format!(
            r#"{{"schemaVersion":2,"mediaType":"{}","config":{{"mediaType":"a/b","digest":"{D}","size":0}}}}"#,
            media_types::OCI_MANIFEST
        );
        assert!(inspect(no_layers.as_bytes(), None).is_err());
        // Not a manifest media type, in the body or in Content-Type.
        let bogus = image("").replace(media_types::OCI_MANIFEST, "application/x-bogus");
        assert!(inspect(bogus.as_bytes(), None).is_err());
        assert!(
            inspect(
                br#"{"schemaVersion":2,"layers":[],"config":null}"#,
                Some("text/plain")
            )
            .is_err()
        );
        // A descriptor with a media type that is no media type.
        let bad_layer =
            image("").replace("application/vnd.oci.image.layer.v1.tar\"", "not a type\"");
        assert!(inspect(bad_layer.as_bytes(), None).is_err());
    }

    #[test]
    fn index() {
        let idx = format!(
            r#"{{"schemaVersion":2,"mediaType":"{}","manifests":[{{"mediaType":"{}","digest":"{D}","size":7}}]}}"#,
            media_types::OCI_INDEX,
            media_types::OCI_MANIFEST
        );
        let m = inspect(
            idx.as_bytes(),
            Some("application/vnd.oci.image.index.v1+json; charset=utf-8"),
        )
        .unwrap();
        assert_eq!(m.media_type, media_types::OCI_INDEX);
        assert_eq!(m.required_manifests().count(), 1);
        assert_eq!(m.required_blobs().count(), 0);
        assert_eq!(m.artifact_type, None);
    }

    #[test]
    fn an_empty_artifact_type_is_a_missing_one() {
        let m = inspect(image(r#","artifactType":"""#).as_bytes(), None).unwrap();
        assert_eq!(
            m.artifact_type.as_deref(),
            Some("application/vnd.oci.image.config.v1+json")
        );
        let idx = format!(
            r#"{{"schemaVersion":2,"mediaType":"{}","artifactType":"","manifests":[]}}"#,
            media_types::OCI_INDEX
        );
        let m = inspect(idx.as_bytes(), None).unwrap();
        assert_eq!(m.artifact_type, None);
    }
}
