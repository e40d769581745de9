//! The keys tokens are checked against: a JWKS file (RFC 7517) and a PEM certificate bundle
//! (Distribution's `rootcertbundle`), indexed by key id; and the built-in token endpoint's
//! signing key.
//!
//! Each key is bound to the algorithms of its type (EC P-256: ES256, P-384: ES384, RSA:
//! RS256/384/512 and PS256/384/512, Ed25519: EdDSA), or to its JWK's `alg` when given. A
//! token is checked only with the key its `kid` names and only with those algorithms, so
//! `alg: none`, HMAC with a public key as secret, or a key of another type never verify.
//! Symmetric (`oct`) keys are refused when loading.
//!
//! Key ids: a JWK's `kid`, or its RFC 7638 thumbprint when it has none; a certificate's key
//! gets the libtrust fingerprint Distribution-compatible issuers put in `kid` (SHA-256 of
//! the DER public key, first 240 bits, base32, in 12 groups of 4 joined by `:`).

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;

use aws_lc_rs::signature::{
    ECDSA_P256_SHA256_FIXED_SIGNING, ECDSA_P384_SHA384_FIXED_SIGNING, EcdsaKeyPair, Ed25519KeyPair,
    KeyPair, RsaKeyPair,
};
use base64::Engine as _;
use jsonwebtoken::jwk::{
    AlgorithmParameters, EllipticCurve, Jwk, JwkSet, PublicKeyUse, ThumbprintHash,
};
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use sha2::{Digest as _, Sha256};

use super::x5c::TrustedCertificates;

/// A public key tokens may be signed with.
pub struct VerifyingKey {
    /// The key id tokens name in their header.
    pub kid: String,
    /// The key.
    pub key: DecodingKey,
    /// The algorithms accepted with it.
    pub algorithms: Vec<Algorithm>,
}

impl std::fmt::Debug for VerifyingKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("VerifyingKey")
            .field("kid", &self.kid)
            .field("algorithms", &self.algorithms)
            .finish()
    }
}

const RSA_ALGS: [Algorithm; 6] = [
    Algorithm::RS256,
    Algorithm::RS384,
    Algorithm::RS512,
    Algorithm::PS256,
    Algorithm::PS384,
    Algorithm::PS512,
];

/// Trusted keys by id, and the certificates of the bundle for tokens that carry a chain.
#[derive(Debug, Default)]
pub struct KeySet {
    by_kid: HashMap<String, Arc<VerifyingKey>>,
    certificates: TrustedCertificates,
}

impl KeySet {
    /// The key named `kid`.
    pub fn get(&self, kid: &str) -> Option<&Arc<VerifyingKey>> {
        self.by_kid.get(kid)
    }

    /// The key of a token's certificate chain (`x5c`), when the bundle trusts the chain.
    pub fn key_of_chain(&self, chain: &[String]) -> Result<VerifyingKey, String> {
        self.certificates.signing_key(chain)
    }

    /// Number of keys.
    pub fn len(&self) -> usize {
        self.by_kid.len()
    }

    /// Whether no key is trusted.
    pub fn is_empty(&self) -> bool {
        self.by_kid.is_empty()
    }

    /// Adds a key (a later key with the same id replaces an earlier one).
    pub fn insert(&mut self, key: VerifyingKey) {
        self.by_kid.insert(key.kid.clone(), Arc::new(key));
    }

    /// Adds the signing keys of a JWKS document (`{"keys":[...]}`). Keys marked for
    /// encryption (`"use": "enc"`, RFC 7517 §4.2) are not for checking signatures and are
    /// left out; two keys under one `kid` are refused (which one a token names would be a
    /// guess).
    pub fn add_jwks(&mut self, json: &str) -> Result<(), String> {
        let set: JwkSet = serde_json::from_str(json).map_err(|e| format!("not a JWKS: {e}"))?;
        for jwk in &set.keys {
            if matches!(jwk.common.public_key_use, Some(PublicKeyUse::Encryption)) {
                continue;
            }
            let key = verifying_key_from_jwk(jwk)?;
            if jwk.common.key_id.is_some() && self.by_kid.contains_key(&key.kid) {
                return Err(format!("two keys have the kid {:?}", key.kid));
            }
            self.insert(key);
        }
        Ok(())
    }

    /// Adds the public keys of the certificates in a PEM bundle, and trusts the certificates
    /// as anchors of the chains tokens may carry.
    pub fn add_certificates(&mut self, pem: &[u8]) -> Result<(), String> {
        let mut found = 0;
        for cert in CertificateDer::pem_slice_iter(pem) {
            let cert = cert.map_err(|e| format!("reading PEM certificates: {e}"))?;
            let parsed = webpki::EndEntityCert::try_from(&cert)
                .map_err(|e| format!("parsing a certificate: {e}"))?;
            let spki = parsed.subject_public_key_info();
            self.insert(verifying_key_from_spki(spki.as_ref())?);
            self.certificates.add(cert)?;
            found += 1;
        }
        if found == 0 {
            return Err("no certificate in the bundle".to_owned());
        }
        Ok(())
    }

    /// Loads the JWKS file and/or certificate bundle.
    pub fn load(jwks: Option<&Path>, certificates: Option<&Path>) -> Result<Self, String> {
        let mut set = Self::default();
        if let Some(path) = jwks {
            let text = std::fs::read_to_string(path)
                .map_err(|e| format!("reading {}: {e}", path.display()))?;
            set.add_jwks(&text)
                .map_err(|e| format!("{}: {e}", path.display()))?;
        }
        if let Some(path) = certificates {
            let pem =
                std::fs::read(path).map_err(|e| format!("reading {}: {e}", path.display()))?;
            set.add_certificates(&pem)
                .map_err(|e| format!("{}: {e}", path.display()))?;
        }
        Ok(set)
    }
}

fn verifying_key_from_jwk(jwk: &Jwk) -> Result<VerifyingKey, String> {
    let algorithms = match &jwk.algorithm {
        AlgorithmParameters::OctetKey(_) => {
            return Err(
                "symmetric (oct) keys are not accepted: tokens must be signed with \
                        a private key (ES256, RS256, EdDSA)"
                    .to_owned(),
            );
        }
        AlgorithmParameters::RSA(_) => RSA_ALGS.to_vec(),
        AlgorithmParameters::EllipticCurve(ec) => match ec.curve {
            EllipticCurve::P256 => vec![Algorithm::ES256],
            EllipticCurve::P384 => vec![Algorithm::ES384],
            ref other => return Err(format!("unsupported curve {other:?}")),
        },
        AlgorithmParameters::OctetKeyPair(okp) => match okp.curve {
            EllipticCurve::Ed25519 => vec![Algorithm::EdDSA],
            ref other => return Err(format!("unsupported curve {other:?}")),
        },
    };
    let algorithms = match jwk.common.key_algorithm {
        Some(alg) => {
            let alg: Algorithm = format!("{alg}")
                .parse()
                .map_err(|_| format!("unsupported JWK alg {alg}"))?;
            if !algorithms.contains(&alg) {
                return Err(format!("JWK alg {alg:?} does not fit its key type"));
            }
            vec![alg]
        }
        None => algorithms,
    };
    let key = DecodingKey::from_jwk(jwk).map_err(|e| format!("unusable JWK: {e}"))?;
    let kid = jwk
        .common
        .key_id
        .clone()
        .unwrap_or_else(|| jwk.thumbprint(ThumbprintHash::SHA256));
    Ok(VerifyingKey {
        kid,
        key,
        algorithms,
    })
}

// DER encodings of the algorithm identifiers a SubjectPublicKeyInfo may carry.
const OID_RSA: &[u8] = &[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x01];
const OID_EC: &[u8] = &[0x2a, 0x86, 0x48, 0xce, 0x3d, 0x02, 0x01];
const OID_P256: &[u8] = &[0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07];
const OID_P384: &[u8] = &[0x2b, 0x81, 0x04, 0x00, 0x22];
const OID_ED25519: &[u8] = &[0x2b, 0x65, 0x70];

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

/// A verifying key from a DER SubjectPublicKeyInfo (a certificate's key).
pub(super) fn verifying_key_from_spki(spki: &[u8]) -> Result<VerifyingKey, String> {
    // The algorithm identifier sits in the first few dozen bytes, before the key bits.
    let head = &spki[..spki.len().min(32)];
    let pem = format!(
        "-----BEGIN PUBLIC KEY-----\n{}\n-----END PUBLIC KEY-----\n",
        base64::engine::general_purpose::STANDARD.encode(spki)
    );
    let (key, algorithms) = if contains(head, OID_RSA) {
        (DecodingKey::from_rsa_pem(pem.as_bytes()), RSA_ALGS.to_vec())
    } else if contains(head, OID_EC) && contains(head, OID_P256) {
        (
            DecodingKey::from_ec_pem(pem.as_bytes()),
            vec![Algorithm::ES256],
        )
    } else if contains(head, OID_EC) && contains(head, OID_P384) {
        (
            DecodingKey::from_ec_pem(pem.as_bytes()),
            vec![Algorithm::ES384],
        )
    } else if contains(head, OID_ED25519) {
        (
            DecodingKey::from_ed_pem(pem.as_bytes()),
            vec![Algorithm::EdDSA],
        )
    } else {
        return Err("certificate key is not RSA, EC P-256/P-384 or Ed25519".to_owned());
    };
    Ok(VerifyingKey {
        kid: libtrust_key_id(spki),
        key: key.map_err(|e| format!("certificate key: {e}"))?,
        algorithms,
    })
}

/// The libtrust key id of a DER SubjectPublicKeyInfo.
pub fn libtrust_key_id(spki: &[u8]) -> String {
    let digest = Sha256::digest(spki);
    let encoded = base32(&digest[..30]);
    let groups: Vec<&str> = (0..encoded.len())
        .step_by(4)
        .map(|i| &encoded[i..i + 4])
        .collect();
    groups.join(":")
}

/// RFC 4648 base32 without padding (`bytes.len()` a multiple of 5 here).
fn base32(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 32] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";
    let mut out = String::with_capacity(bytes.len() * 8 / 5 + 1);
    let (mut buffer, mut bits) = (0u32, 0u32);
    for &b in bytes {
        buffer = (buffer << 8) | u32::from(b);
        bits += 8;
        while bits >= 5 {
            bits -= 5;
            out.push(ALPHABET[((buffer >> bits) & 31) as usize] as char);
        }
    }
    if bits > 0 {
        out.push(ALPHABET[((buffer << (5 - bits)) & 31) as usize] as char);
    }
    out
}

/// The built-in token endpoint's private key, with its public half.
pub struct SigningKey {
    /// Algorithm the tokens are signed with.
    pub algorithm: Algorithm,
    /// The private key.
    pub encoding: EncodingKey,
    /// The public key (its `kid` is the RFC 7638 thumbprint).
    pub verifying: VerifyingKey,
    /// The public key as a JWK (what external verifiers would trust).
    pub public_jwk: serde_json::Value,
}

impl std::fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SigningKey")
            .field("algorithm", &self.algorithm)
            .field("kid", &self.verifying.kid)
            .finish_non_exhaustive()
    }
}

fn b64url(bytes: &[u8]) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

impl SigningKey {
    /// Reads a PKCS#8 PEM private key: EC P-256 (ES256), EC P-384 (ES384), Ed25519 (EdDSA)
    /// or RSA (RS256).
    pub fn from_pem(pem: &[u8]) -> Result<Self, String> {
        let der = PrivateKeyDer::from_pem_slice(pem)
            .map_err(|e| format!("reading the private key: {e}"))?;
        let PrivateKeyDer::Pkcs8(pkcs8) = &der else {
            return Err(
                "the signing key must be PKCS#8 (-----BEGIN PRIVATE KEY-----); \
                        convert it with `openssl pkcs8 -topk8 -nocrypt`"
                    .to_owned(),
            );
        };
        let bytes = pkcs8.secret_pkcs8_der();
        let (algorithm, public_jwk) = if let Ok(k) =
            EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, bytes)
        {
            (Algorithm::ES256, ec_jwk("P-256", k.public_key().as_ref()))
        } else if let Ok(k) = EcdsaKeyPair::from_pkcs8(&ECDSA_P384_SHA384_FIXED_SIGNING, bytes) {
            (Algorithm::ES384, ec_jwk("P-384", k.public_key().as_ref()))
        } else if let Ok(k) = Ed25519KeyPair::from_pkcs8_maybe_unchecked(bytes) {
            (
                Algorithm::EdDSA,
                serde_json::json!({"kty":"OKP","crv":"Ed25519","x": b64url(k.public_key().as_ref())}),
            )
        } else if let Ok(k) = RsaKeyPair::from_pkcs8(bytes) {
            let public = k.public_key();
            (
                Algorithm::RS256,
                serde_json::json!({"kty":"RSA",
                    "n": b64url(public.modulus().big_endian_without_leading_zero()),
                    "e": b64url(public.exponent().big_endian_without_leading_zero())}),
            )
        } else {
            return Err("unsupported private key: use EC P-256, P-384, Ed25519 or RSA".into());
        };
        let encoding = match algorithm {
            Algorithm::ES256 | Algorithm::ES384 => EncodingKey::from_ec_pem(pem),
            Algorithm::EdDSA => EncodingKey::from_ed_pem(pem),
            _ => EncodingKey::from_rsa_pem(pem),
        }
        .map_err(|e| format!("private key: {e}"))?;
        let jwk: Jwk = serde_json::from_value(public_jwk.clone())
            .map_err(|e| format!("public key as JWK: {e}"))?;
        let kid = jwk.thumbprint(ThumbprintHash::SHA256);
        let mut public_jwk = public_jwk;
        public_jwk["kid"] = serde_json::Value::String(kid.clone());
        public_jwk["alg"] = serde_json::Value::String(format!("{algorithm:?}"));
        Ok(Self {
            algorithm,
            encoding,
            verifying: VerifyingKey {
                kid,
                key: DecodingKey::from_jwk(&jwk).map_err(|e| format!("public key: {e}"))?,
                algorithms: vec![algorithm],
            },
            public_jwk,
        })
    }
}

fn ec_jwk(curve: &str, point: &[u8]) -> serde_json::Value {
    // Uncompressed point: 0x04 || x || y.
    let n = (point.len() - 1) / 2;
    serde_json::json!({"kty":"EC","crv":curve,
        "x": b64url(&point[1..1 + n]), "y": b64url(&point[1 + n..])})
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base32_and_libtrust_format() {
        assert_eq!(base32(b"foobar"), "MZXW6YTBOI");
        let kid = libtrust_key_id(b"any spki bytes");
        assert_eq!(kid.len(), 12 * 4 + 11);
        assert_eq!(kid.split(':').count(), 12);
    }

    #[test]
    fn refuses_symmetric_jwks() {
        let mut set = KeySet::default();
        let err = set
            .add_jwks(r#"{"keys":[{"kty":"oct","k":"c2VjcmV0","kid":"h"}]}"#)
            .unwrap_err();
        assert!(err.contains("symmetric"), "{err}");
    }

    const EC_X: &str = "f83OJ3D2xF1Bg8vub9tLe1gHMzV76e8Tus9uPHvRVEU";
    const EC_Y: &str = "x_FEzRu9m36HLN_tue659LNpXW6pCyStikYjKIWI5a0";

    fn ec_jwk(extra: &str) -> String {
        format!(r#"{{"kty":"EC","crv":"P-256","x":"{EC_X}","y":"{EC_Y}"{extra}}}"#)
    }

    #[test]
    fn encryption_keys_are_left_out_and_a_kid_names_one_key() {
        let mut set = KeySet::default();
        let doc = format!(
            r#"{{"keys":[{},{}]}}"#,
            ec_jwk(r#","kid":"sig","use":"sig""#),
            ec_jwk(r#","kid":"enc","use":"enc""#)
        );
        set.add_jwks(&doc).unwrap();
        assert!(set.get("sig").is_some());
        assert!(set.get("enc").is_none());

        let doc = format!(
            r#"{{"keys":[{},{}]}}"#,
            ec_jwk(r#","kid":"dup""#),
            ec_jwk(r#","kid":"dup""#)
        );
        let err = KeySet::default().add_jwks(&doc).unwrap_err();
        assert!(err.contains("dup"), "{err}");

        // Without a kid, a key is named by its thumbprint: the same key twice is one key.
        let doc = format!(r#"{{"keys":[{},{}]}}"#, ec_jwk(""), ec_jwk(""));
        let mut set = KeySet::default();
        set.add_jwks(&doc).unwrap();
        assert_eq!(set.len(), 1);
    }
}
