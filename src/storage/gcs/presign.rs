//! Signed URLs for blob reads ([`PresignBlobReads`]): V4 signatures (RSA-SHA256) made by
//! `gcloud-storage` with a service account's private key, locally, without a request.
//!
//! The key comes from the service-account key file Application Default Credentials found
//! (`GOOGLE_APPLICATION_CREDENTIALS`), or from [`GcsBackend::with_signing_key`]. Credentials
//! without a private key (workload identity, the metadata server, user credentials) sign
//! nothing: presigning then fails with a backend error saying so (signing through the IAM
//! `signBlob` API is not wired up).
//!
//! URLs are path-style on the configured endpoint: `https://storage.googleapis.com/<bucket>/
//! <object>` by default, `<scheme>://<host>/<bucket>/<object>` for a custom endpoint.

use std::fmt;
use std::time::{Duration, SystemTime};

use gcloud_storage::sign::{PathStyle, SignBy, SignedURLMethod, SignedURLOptions, URLStyle};

use super::backend::GcsBackend;
use super::config::{DEFAULT_ENDPOINT, GcsConfig};
use super::error;
use crate::error::{Error, Result};
use crate::oci::Digest;
use crate::storage::layout;
use crate::storage::presign::{PresignBlobReads, PresignedRead};

/// Who signs: a service account's e-mail and its private key (PEM, PKCS #8).
#[derive(Clone)]
pub(crate) struct Signer {
    access_id: String,
    key: SignBy,
}

impl Signer {
    /// A signer from a service account's e-mail and PEM private key.
    pub(crate) fn new(access_id: String, private_key_pem: String) -> Self {
        Self {
            access_id,
            key: SignBy::PrivateKey(private_key_pem.into_bytes()),
        }
    }
}

impl fmt::Debug for Signer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Never the key.
        f.debug_struct("Signer")
            .field("access_id", &self.access_id)
            .finish_non_exhaustive()
    }
}

/// Where signed URLs point: GCS itself, or the host of a custom endpoint.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum UrlBase {
    /// `https://storage.googleapis.com`.
    Gcs,
    /// A custom endpoint's host (and port), over `http` when `insecure`.
    Endpoint { host: String, insecure: bool },
}

impl UrlBase {
    pub(crate) fn of(config: &GcsConfig) -> Self {
        let endpoint = config.endpoint();
        if endpoint == DEFAULT_ENDPOINT {
            return Self::Gcs;
        }
        let (insecure, rest) = match endpoint.strip_prefix("http://") {
            Some(rest) => (true, rest),
            None => (false, endpoint.trim_start_matches("https://")),
        };
        Self::Endpoint {
            host: rest.split('/').next().unwrap_or(rest).to_owned(),
            insecure,
        }
    }
}

/// Path-style URLs on a custom endpoint's host.
struct EndpointStyle(String);

impl URLStyle for EndpointStyle {
    fn host(&self, _bucket: &str) -> String {
        self.0.clone()
    }

    fn path(&self, bucket: &str, object: &str) -> String {
        PathStyle {}.path(bucket, object)
    }
}

impl PresignBlobReads for GcsBackend {
    /// A V4 signed `GET` of the blob's object.
    async fn presign_read_blob(
        &self,
        digest: &Digest,
        expires_in: Duration,
    ) -> Result<PresignedRead> {
        let signer = self.conn.signer.as_ref().ok_or_else(|| {
            Error::backend(
                error::DRIVER,
                "presigning: the credentials hold no service-account key to sign with",
            )
        })?;
        let object = self.names.object(&layout::blob_data(digest));
        let signed_at = SystemTime::now();
        let mut options = SignedURLOptions {
            method: SignedURLMethod::GET,
            start_time: Some(signed_at),
            expires: expires_in,
            ..SignedURLOptions::default()
        };
        if let UrlBase::Endpoint { host, insecure } = &self.conn.url_base {
            options.style = Box::new(EndpointStyle(host.clone()));
            options.insecure = *insecure;
        }
        let url = self
            .conn
            .client
            .signed_url(
                &self.bucket,
                &object,
                Some(signer.access_id.clone()),
                Some(signer.key.clone()),
                options,
            )
            .await
            .map_err(|e| error::signing(&object, e))?;
        Ok(PresignedRead {
            url,
            headers: Vec::new(),
            expires_at: signed_at + expires_in,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn url_bases() {
        let mut config = GcsConfig::new("b");
        assert_eq!(UrlBase::of(&config), UrlBase::Gcs);
        config.endpoint = Some("http://127.0.0.1:4443/".into());
        assert_eq!(
            UrlBase::of(&config),
            UrlBase::Endpoint {
                host: "127.0.0.1:4443".into(),
                insecure: true
            }
        );
        config.endpoint = Some("https://storage.example.internal/base".into());
        assert_eq!(
            UrlBase::of(&config),
            UrlBase::Endpoint {
                host: "storage.example.internal".into(),
                insecure: false
            }
        );
        let signer = Signer::new("sa@example".into(), "-----BEGIN PRIVATE KEY-----".into());
        assert!(!format!("{signer:?}").contains("PRIVATE"));
    }
}
