//! Refresh tokens of the built-in token endpoint (the token specification's
//! `offline_token=true`, OAuth2's `access_type=offline`: `docs/spec/auth/token.md` and
//! `oauth.md` in CNCF Distribution's repository). `docker login` keeps one as its
//! `identitytoken` instead of the password, and clients exchange it for access tokens with
//! `POST <realm>` (`grant_type=refresh_token`).
//!
//! A refresh token is a JWT signed with the endpoint's own key, kept apart from access tokens
//! three ways: its audience is the realm (the token endpoint), never the service, so the
//! registry refuses it as a bearer token (`aud`); it says `"token_use": "refresh"`, which the
//! registry's verifier refuses too, should a realm and a service ever be configured alike;
//! and only the endpoint's own key verifies it, never another trusted issuer's.
//!
//! It stays valid until it expires (`refresh_lifetime`), the signing key changes, or its
//! user's htpasswd line changes or goes: it carries a fingerprint of the user's password hash
//! (`cred`, SHA-256 of the bcrypt hash, which holds a random salt: it reveals nothing that
//! would help guess the password) and the endpoint compares it with the current file at
//! every exchange. Changing a password (or removing the user) revokes every refresh token
//! issued for it, in every process reading that file.

use jsonwebtoken::{Header, Validation, decode, decode_header, encode};
use serde::{Deserialize, Serialize};

use super::keys::SigningKey;
use super::token::now;

/// The `token_use` of a refresh token.
pub const REFRESH_USE: &str = "refresh";

#[derive(Debug, Serialize, Deserialize)]
struct RefreshClaims {
    iss: String,
    sub: String,
    aud: String,
    iat: u64,
    exp: u64,
    jti: String,
    token_use: String,
    cred: String,
}

/// Where refresh tokens are valid: the issuer that signs them and the token endpoint they are
/// presented to.
#[derive(Debug, Clone, Copy)]
pub struct RefreshScope<'a> {
    /// `iss`.
    pub issuer: &'a str,
    /// `aud`: the realm, the URL of the token endpoint.
    pub realm: &'a str,
}

/// Signs a refresh token for `user`, whose password hash has the fingerprint `cred`, valid
/// for `lifetime_secs`.
pub fn mint(
    key: &SigningKey,
    scope: RefreshScope<'_>,
    user: &str,
    cred: &[u8; 16],
    lifetime_secs: u64,
) -> Result<String, jsonwebtoken::errors::Error> {
    let issued = now();
    let mut jti = [0u8; 16];
    rand::fill(&mut jti);
    let claims = RefreshClaims {
        iss: scope.issuer.to_owned(),
        sub: user.to_owned(),
        aud: scope.realm.to_owned(),
        iat: issued,
        exp: issued.saturating_add(lifetime_secs),
        jti: hex::encode(jti),
        token_use: REFRESH_USE.to_owned(),
        cred: hex::encode(cred),
    };
    let mut header = Header::new(key.algorithm);
    header.kid = Some(key.verifying.kid.clone());
    header.typ = Some("JWT".to_owned());
    encode(&header, &claims, &key.encoding)
}

/// A verified refresh token: whose it is and the fingerprint of the password hash it was
/// issued against (for the caller to compare with the current one).
#[derive(Debug, PartialEq, Eq)]
pub struct Refresh {
    /// The user.
    pub user: String,
    /// [`super::basic::Htpasswd::credential_tag`] when it was issued.
    pub cred: [u8; 16],
}

/// Verifies a refresh token with the endpoint's own key only; the error is a short reason
/// fit for a client.
pub fn verify(key: &SigningKey, scope: RefreshScope<'_>, token: &str) -> Result<Refresh, String> {
    const INVALID: &str = "invalid refresh token";
    let header = decode_header(token).map_err(|_| INVALID.to_owned())?;
    if header.kid.as_deref() != Some(key.verifying.kid.as_str())
        || !key.verifying.algorithms.contains(&header.alg)
    {
        return Err(INVALID.to_owned());
    }
    let mut validation = Validation::new(header.alg);
    validation.algorithms = vec![header.alg];
    validation.leeway = 0;
    validation.set_issuer(&[scope.issuer]);
    validation.set_audience(&[scope.realm]);
    validation.set_required_spec_claims(&["exp", "iss", "aud", "sub"]);
    let data = decode::<RefreshClaims>(token, &key.verifying.key, &validation).map_err(|e| {
        match e.kind() {
            jsonwebtoken::errors::ErrorKind::ExpiredSignature => "refresh token expired",
            _ => INVALID,
        }
        .to_owned()
    })?;
    let claims = data.claims;
    let mut cred = [0u8; 16];
    if claims.token_use != REFRESH_USE
        || claims.sub.is_empty()
        || hex::decode_to_slice(&claims.cred, &mut cred).is_err()
    {
        return Err(INVALID.to_owned());
    }
    Ok(Refresh {
        user: claims.sub,
        cred,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key() -> SigningKey {
        let pem = aws_lc_rs::signature::Ed25519KeyPair::generate_pkcs8(
            &aws_lc_rs::rand::SystemRandom::new(),
        )
        .unwrap();
        let pem = format!(
            "-----BEGIN PRIVATE KEY-----\n{}\n-----END PRIVATE KEY-----\n",
            base64::Engine::encode(&base64::engine::general_purpose::STANDARD, pem.as_ref())
        );
        SigningKey::from_pem(pem.as_bytes()).unwrap()
    }

    const SCOPE: RefreshScope<'static> = RefreshScope {
        issuer: "reg.test",
        realm: "https://reg.test/token",
    };

    #[test]
    fn a_refresh_token_names_its_user_and_credential() {
        let key = key();
        let token = mint(&key, SCOPE, "alice", &[7; 16], 3600).unwrap();
        assert_eq!(
            verify(&key, SCOPE, &token),
            Ok(Refresh {
                user: "alice".into(),
                cred: [7; 16]
            })
        );
    }

    #[test]
    fn refresh_tokens_of_another_key_realm_or_issuer_or_expired_are_refused() {
        let key = key();
        let token = mint(&key, SCOPE, "alice", &[7; 16], 3600).unwrap();
        assert!(verify(&self::key(), SCOPE, &token).is_err(), "another key");
        let elsewhere = RefreshScope {
            realm: "https://other.test/token",
            ..SCOPE
        };
        assert!(verify(&key, elsewhere, &token).is_err(), "another realm");
        let issuer = RefreshScope {
            issuer: "other",
            ..SCOPE
        };
        assert!(verify(&key, issuer, &token).is_err(), "another issuer");
        let expired = mint(&key, SCOPE, "alice", &[7; 16], 0).unwrap();
        std::thread::sleep(std::time::Duration::from_millis(1100));
        assert_eq!(
            verify(&key, SCOPE, &expired).unwrap_err(),
            "refresh token expired"
        );
        // A signature over other claims: the payload swapped for another user's.
        let bob = mint(&key, SCOPE, "bob", &[7; 16], 3600).unwrap();
        let mut parts: Vec<&str> = token.split('.').collect();
        parts[1] = bob.split('.').nth(1).unwrap();
        assert!(verify(&key, SCOPE, &parts.join(".")).is_err(), "tampered");
    }

    #[test]
    fn the_registry_refuses_a_refresh_token_as_an_access_token() {
        use super::super::keys::{KeySet, VerifyingKey};
        use super::super::token::TokenVerifier;
        let key = key();
        let mut keys = KeySet::default();
        keys.insert(VerifyingKey {
            kid: key.verifying.kid.clone(),
            key: key.verifying.key.clone(),
            algorithms: key.verifying.algorithms.clone(),
        });
        let verifier = TokenVerifier::new("reg.test", "reg.test", keys);
        // Its audience is the realm: not the service.
        let token = mint(&key, SCOPE, "alice", &[7; 16], 3600).unwrap();
        assert!(verifier.verify(&token).unwrap_err().contains("aud"));
        // A realm configured like the service: `token_use` still tells them apart.
        let alike = RefreshScope {
            issuer: "reg.test",
            realm: "reg.test",
        };
        let token = mint(&key, alike, "alice", &[7; 16], 3600).unwrap();
        assert_eq!(
            verifier.verify(&token).unwrap_err(),
            "a refresh token is not an access token"
        );
    }
}
