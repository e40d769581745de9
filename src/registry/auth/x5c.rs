//! Tokens that carry their signer's certificate chain (`x5c`, RFC 7515 §4.1.6) instead of
//! naming a key: the registry checks the chain against the trusted certificate bundle
//! (Distribution's `rootcertbundle`) and verifies the token with the leaf's key, as
//! Distribution does (`VerifySigningKey` in its token package).
//!
//! A chain is trusted when its leaf is itself one of the bundle's certificates (byte for
//! byte: the usual setup, a self-signed signing certificate in the bundle), or when it leads
//! from the leaf through the chain's other certificates to one of the bundle's certificates
//! as a trust anchor, each certificate within its validity period. Any extended key usage
//! is accepted (Go's `ExtKeyUsageAny`, which Distribution asks for): a token-signing
//! certificate has no standard purpose.

use base64::Engine as _;
use rustls::pki_types::{CertificateDer, TrustAnchor, UnixTime};
use webpki::{EndEntityCert, ExtendedKeyUsageValidator, KeyPurposeIdIter};

use super::keys::{VerifyingKey, verifying_key_from_spki};

/// How many certificates a token's chain may hold (a leaf, intermediates): more is abuse.
const MAX_CHAIN: usize = 8;

/// The certificates of the trusted bundle, for checking chains.
#[derive(Debug, Default)]
pub struct TrustedCertificates {
    certificates: Vec<CertificateDer<'static>>,
    anchors: Vec<TrustAnchor<'static>>,
}

impl TrustedCertificates {
    /// Trusts `certificate` (DER) as a signer and as an anchor of chains.
    pub fn add(&mut self, certificate: CertificateDer<'static>) -> Result<(), String> {
        let anchor = webpki::anchor_from_trusted_cert(&certificate)
            .map_err(|e| format!("parsing a certificate: {e}"))?
            .to_owned();
        self.anchors.push(anchor);
        self.certificates.push(certificate);
        Ok(())
    }

    /// The key of the leaf of `chain` (the header's `x5c`: base64 DER, leaf first) when the
    /// chain is trusted; the error is a short reason fit for a client.
    pub fn signing_key(&self, chain: &[String]) -> Result<VerifyingKey, String> {
        if chain.is_empty() || chain.len() > MAX_CHAIN {
            return Err(format!(
                "token certificate chain (x5c) must hold 1 to {MAX_CHAIN} certificates"
            ));
        }
        let chain: Vec<CertificateDer<'static>> = chain
            .iter()
            .map(|c| {
                base64::engine::general_purpose::STANDARD
                    .decode(c)
                    .map(CertificateDer::from)
            })
            .collect::<Result<_, _>>()
            .map_err(|_| "token certificate chain (x5c) is not base64".to_owned())?;
        let (leaf, intermediates) = chain.split_first().expect("checked non-empty");
        let parsed = EndEntityCert::try_from(leaf)
            .map_err(|_| "token certificate (x5c) does not parse".to_owned())?;
        if !self.certificates.contains(leaf) {
            parsed
                .verify_for_usage(
                    webpki::ALL_VERIFICATION_ALGS,
                    &self.anchors,
                    intermediates,
                    UnixTime::now(),
                    AnyPurpose,
                    None,
                    None,
                )
                .map_err(|e| {
                    // In the registry's words: webpki's own print its fields (times, names).
                    let why = match e {
                        webpki::Error::CertExpired { .. }
                        | webpki::Error::CertNotValidYet { .. } => {
                            "a certificate is outside its validity period"
                        }
                        webpki::Error::UnknownIssuer => "it leads to no trusted certificate",
                        _ => "it does not verify",
                    };
                    format!("token certificate chain (x5c) is not trusted: {why}")
                })?;
        }
        verifying_key_from_spki(parsed.subject_public_key_info().as_ref())
    }
}

/// Accepts any extended key usage (and none), refusing only a malformed extension.
struct AnyPurpose;

impl ExtendedKeyUsageValidator for AnyPurpose {
    fn validate(&self, purposes: KeyPurposeIdIter<'_, '_>) -> Result<(), webpki::Error> {
        for purpose in purposes {
            purpose?;
        }
        Ok(())
    }
}
