//! Bearer tokens per the Docker registry token specification (distribution's
//! `docs/spec/auth/token.md`, `jwt.md`, `scope.md`): a JWT signed by an authorization server
//! the registry trusts, whose `access` claim lists what the bearer may do.
//!
//! Verification ("Verifying the token" in `jwt.md`): the signature with the key the header's
//! `kid` names (or, without a known `kid`, the key of a certificate chain `x5c` the trusted
//! bundle vouches for: [`super::x5c`]) and one of that key's algorithms only; `iss` is the configured issuer; `aud`
//! names this service; `exp` and `nbf` (RFC 7519 NumericDates: fractions allowed) hold with
//! [`LEEWAY_SECS`] of clock skew. A verified
//! token's grants are cached by the SHA-256 of the token until it expires, so a client that
//! reuses its token pays for one signature check.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{SystemTime, UNIX_EPOCH};

use jsonwebtoken::{Validation, decode, decode_header};
use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256};

use super::keys::KeySet;
use crate::registry::route::Action;

/// Clock skew tolerated on `exp` and `nbf`, in seconds.
pub const LEEWAY_SECS: u64 = 30;

/// How many verified tokens are remembered at most.
const CACHE_CAPACITY: usize = 4096;

/// One entry of the `access` claim.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AccessEntry {
    /// Resource type: `repository` (or the deprecated `repository(plugin)`), `registry`.
    #[serde(rename = "type")]
    pub kind: String,
    /// Resource name: a repository name, or `catalog` for the `registry` type.
    pub name: String,
    /// Granted actions (`pull`, `push`, `delete`, `*`).
    #[serde(default)]
    pub actions: Vec<String>,
}

/// The claims the registry reads and the built-in endpoint writes.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Claims {
    /// Issuer.
    pub iss: String,
    /// Subject: the user, empty for anonymous.
    #[serde(default)]
    pub sub: String,
    /// Audience: the service (a string or an array).
    pub aud: Audience,
    /// Expiry.
    pub exp: NumericDate,
    /// Not before.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nbf: Option<NumericDate>,
    /// Issued at.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub iat: Option<NumericDate>,
    /// Token id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub jti: Option<String>,
    /// What the token is for: absent in access tokens; `"refresh"` in the built-in
    /// endpoint's refresh tokens, which are never accepted as access tokens.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token_use: Option<String>,
    /// What the bearer may do.
    #[serde(default)]
    pub access: Vec<AccessEntry>,
}

/// A JWT NumericDate (RFC 7519 §2): seconds since the epoch, "non-integer values can be
/// represented". Written as an integer when whole, as every issuer we know writes them.
#[derive(Debug, Clone, Copy, PartialEq, PartialOrd)]
pub struct NumericDate(f64);

impl NumericDate {
    /// Whole seconds since the epoch.
    pub fn from_secs(secs: u64) -> Self {
        Self(secs as f64)
    }

    /// Seconds since the epoch, with their fraction.
    pub fn as_secs_f64(self) -> f64 {
        self.0
    }

    /// Whole seconds since the epoch, rounded down (0 before the epoch).
    pub fn whole_secs(self) -> u64 {
        // `as` saturates: a negative date is 0, an absurdly far one u64::MAX.
        self.0.floor() as u64
    }
}

impl Serialize for NumericDate {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        const EXACT_INTEGERS: f64 = 9_007_199_254_740_992.0; // 2^53
        if self.0.fract() == 0.0 && (0.0..EXACT_INTEGERS).contains(&self.0) {
            serializer.serialize_u64(self.0 as u64)
        } else {
            serializer.serialize_f64(self.0)
        }
    }
}

impl<'de> Deserialize<'de> for NumericDate {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        // Any JSON number (serde_json reads integers into an f64 too); JSON has no NaN or
        // infinity, other formats might.
        let secs = f64::deserialize(deserializer)?;
        if !secs.is_finite() {
            return Err(serde::de::Error::custom("a NumericDate must be finite"));
        }
        Ok(Self(secs))
    }
}

/// `aud`: one string or several.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Audience {
    /// A single audience.
    One(String),
    /// Several audiences.
    Many(Vec<String>),
}

/// A set of actions, as bits.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Actions(u8);

impl Actions {
    fn bit(action: Action) -> u8 {
        match action {
            Action::Pull => 1,
            Action::Push => 2,
            Action::Delete => 4,
        }
    }

    /// Adds the actions named in a claim (`*` is all of them; unknown ones are ignored).
    fn add(&mut self, name: &str) {
        self.0 |= match name {
            "pull" => 1,
            "push" => 2,
            "delete" => 4,
            "*" => 7,
            _ => 0,
        };
    }

    /// Whether `action` is in the set.
    pub fn contains(self, action: Action) -> bool {
        self.0 & Self::bit(action) != 0
    }
}

/// What a verified token grants.
#[derive(Debug, Clone, Default)]
pub struct Grants {
    /// The `sub` claim; `None` when empty (an anonymous token).
    pub subject: Option<Arc<str>>,
    /// Actions per repository name.
    pub repositories: HashMap<String, Actions>,
    /// `registry:catalog:*`.
    pub catalog: bool,
    /// Whether the registry's own token endpoint issued the token (it was signed with the
    /// built-in signing key): the rules that decided its grants are then known here.
    pub issued_here: bool,
    /// `exp`.
    pub expires: u64,
}

impl Grants {
    /// Reads the `access` claim.
    pub fn from_claims(claims: &Claims) -> Self {
        let mut grants = Self {
            subject: (!claims.sub.is_empty()).then(|| Arc::from(claims.sub.as_str())),
            expires: claims.exp.whole_secs(),
            ..Self::default()
        };
        for entry in &claims.access {
            match entry.kind.as_str() {
                // Resource classes are deprecated and ignored (scope.md).
                "repository" | "repository(plugin)" => {
                    let set = grants.repositories.entry(entry.name.clone()).or_default();
                    for a in &entry.actions {
                        set.add(a);
                    }
                }
                "registry" if entry.name == "catalog" => {
                    grants.catalog |= entry.actions.iter().any(|a| a == "*");
                }
                _ => {}
            }
        }
        grants
    }

    /// Whether the token grants `action` on `repository`.
    pub fn allows(&self, repository: &str, action: Action) -> bool {
        self.repositories
            .get(repository)
            .is_some_and(|a| a.contains(action))
    }
}

/// Seconds since the epoch.
pub fn now() -> u64 {
    since_epoch().as_secs()
}

fn since_epoch() -> std::time::Duration {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
}

/// Checks tokens against trusted keys, an issuer and a service.
#[derive(Debug)]
pub struct TokenVerifier {
    issuer: String,
    service: String,
    keys: KeySet,
    /// The `kid` of the built-in token endpoint's key, if any.
    local_kid: Option<String>,
    cache: Mutex<HashMap<[u8; 32], Arc<Grants>>>,
}

impl TokenVerifier {
    /// A verifier trusting `keys` for tokens of `issuer` meant for `service`.
    pub fn new(issuer: impl Into<String>, service: impl Into<String>, keys: KeySet) -> Self {
        Self {
            issuer: issuer.into(),
            service: service.into(),
            keys,
            local_kid: None,
            cache: Mutex::new(HashMap::new()),
        }
    }

    /// Marks the tokens signed with the key `kid` (trusted among the verifier's keys) as
    /// issued by the registry's own token endpoint ([`Grants::issued_here`]).
    pub fn with_local_key(mut self, kid: impl Into<String>) -> Self {
        self.local_kid = Some(kid.into());
        self
    }

    /// Verifies `token`; the error is a short reason fit for a client (no key material).
    pub fn verify(&self, token: &str) -> Result<Arc<Grants>, String> {
        let id: [u8; 32] = Sha256::digest(token.as_bytes()).into();
        let now = now();
        if let Some(grants) = self.cache.lock().expect("token cache").get(&id)
            && now <= grants.expires.saturating_add(LEEWAY_SECS)
        {
            return Ok(Arc::clone(grants));
        }
        let grants = Arc::new(self.verify_uncached(token)?);
        let mut cache = self.cache.lock().expect("token cache");
        if cache.len() >= CACHE_CAPACITY {
            cache.retain(|_, g| now <= g.expires.saturating_add(LEEWAY_SECS));
            if cache.len() >= CACHE_CAPACITY {
                cache.clear();
            }
        }
        cache.insert(id, Arc::clone(&grants));
        Ok(grants)
    }

    fn verify_uncached(&self, token: &str) -> Result<Grants, String> {
        // An unknown `alg` (including "none") fails here: the header does not parse.
        // The parser's own words (serde's, with line and column) stay out of the answer.
        let header = decode_header(token).map_err(|_| {
            "malformed token, or a signing algorithm that is not accepted".to_owned()
        })?;
        // The key `kid` names; or, as Distribution allows, the leaf of a certificate chain
        // (`x5c`) the trusted bundle vouches for.
        let named = header.kid.as_deref().and_then(|kid| self.keys.get(kid));
        let key = match (named, &header.x5c) {
            (Some(key), _) => Arc::clone(key),
            (None, Some(chain)) => Arc::new(self.keys.key_of_chain(chain)?),
            (None, None) => {
                return Err(match &header.kid {
                    Some(kid) => format!("token signed with an unknown key {kid:?}"),
                    None => {
                        "token names no key (kid) and carries no certificate chain (x5c)".to_owned()
                    }
                });
            }
        };
        if !key.algorithms.contains(&header.alg) {
            return Err(format!(
                "algorithm {:?} is not accepted with key {:?}",
                header.alg, key.kid
            ));
        }
        let mut validation = Validation::new(header.alg);
        validation.algorithms = key.algorithms.clone();
        // `jsonwebtoken` reads `exp` and `nbf` as integers only: they are checked below, on
        // the claims (where `exp` is required).
        validation.validate_exp = false;
        validation.validate_nbf = false;
        validation.set_issuer(&[&self.issuer]);
        validation.set_audience(&[&self.service]);
        validation.set_required_spec_claims(&["iss", "aud"]);
        let data = decode::<Claims>(token, &key.key, &validation).map_err(|e| {
            use jsonwebtoken::errors::ErrorKind::*;
            match e.kind() {
                ExpiredSignature => "token expired".to_owned(),
                ImmatureSignature => "token not yet valid".to_owned(),
                InvalidAudience => "token is for another service (aud)".to_owned(),
                InvalidIssuer => "token from an untrusted issuer (iss)".to_owned(),
                InvalidSignature => "invalid token signature".to_owned(),
                InvalidAlgorithm => "token algorithm not accepted".to_owned(),
                Json(_) => "token claims do not parse (iss, aud and exp are required)".to_owned(),
                _ => "invalid token".to_owned(),
            }
        })?;
        if data.claims.token_use.as_deref() == Some(super::refresh::REFRESH_USE) {
            return Err("a refresh token is not an access token".to_owned());
        }
        check_validity(&data.claims, since_epoch().as_secs_f64())?;
        let mut grants = Grants::from_claims(&data.claims);
        grants.issued_here =
            named.is_some() && self.local_kid.is_some() && self.local_kid == header.kid;
        Ok(grants)
    }
}

/// `exp` and `nbf` against `now` (seconds since the epoch), with [`LEEWAY_SECS`] of skew.
fn check_validity(claims: &Claims, now: f64) -> Result<(), String> {
    let leeway = LEEWAY_SECS as f64;
    if claims.exp.as_secs_f64() + leeway < now {
        return Err("token expired".to_owned());
    }
    if let Some(nbf) = claims.nbf
        && nbf.as_secs_f64() - leeway > now
    {
        return Err("token not yet valid".to_owned());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn claims_at(exp: &str, nbf: &str) -> Claims {
        serde_json::from_str(&format!(
            r#"{{"iss":"i","aud":"s","exp":{exp},"nbf":{nbf},"iat":{nbf}}}"#
        ))
        .unwrap()
    }

    #[test]
    fn numeric_dates_may_have_fractions() {
        let now = 1_000_000.0;
        let leeway = LEEWAY_SECS as f64;
        // RFC 7519 §2: a NumericDate may be fractional; both bounds hold to the fraction.
        let c = claims_at("1000000.5", "999999.25");
        assert_eq!(c.exp.whole_secs(), 1_000_000);
        assert_eq!(check_validity(&c, now), Ok(()));
        assert_eq!(check_validity(&c, now + leeway + 0.5), Ok(()));
        assert_eq!(
            check_validity(&c, now + leeway + 0.75).unwrap_err(),
            "token expired"
        );
        let early = claims_at("1000100", "1000030.5");
        assert_eq!(check_validity(&early, now + 0.5), Ok(()));
        assert_eq!(
            check_validity(&early, now + 0.25).unwrap_err(),
            "token not yet valid"
        );
        // Whole dates are written as integers, fractions as they are.
        let written = serde_json::to_value(&c).unwrap();
        assert_eq!(written["exp"], serde_json::json!(1000000.5));
        let whole = claims_at("1000000", "999999");
        let written = serde_json::to_string(&whole).unwrap();
        assert!(written.contains(r#""exp":1000000,"#), "{written}");
        // Not a number: refused.
        assert!(serde_json::from_str::<Claims>(r#"{"iss":"i","aud":"s","exp":"soon"}"#).is_err());
    }

    #[test]
    fn grants_from_access() {
        let claims: Claims = serde_json::from_str(
            r#"{"iss":"i","sub":"","aud":["s","t"],"exp":10,
                "access":[{"type":"repository","name":"a/b","actions":["pull","push"]},
                          {"type":"repository(plugin)","name":"p","actions":["*"]},
                          {"type":"registry","name":"catalog","actions":["*"]},
                          {"type":"repository","name":"c","actions":["bogus"]}]}"#,
        )
        .unwrap();
        let g = Grants::from_claims(&claims);
        assert!(g.subject.is_none());
        assert!(g.allows("a/b", Action::Push));
        assert!(!g.allows("a/b", Action::Delete));
        assert!(g.allows("p", Action::Delete));
        assert!(!g.allows("c", Action::Pull));
        assert!(!g.allows("x", Action::Pull));
        assert!(g.catalog);
    }
}
