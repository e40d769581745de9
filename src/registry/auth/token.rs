//! Bearer tokens per the Docker registry token specification (distribution's
//! `docs/spec/auth/token.md`, `jwt.md`, `scope.md`): a JWT signed by an authorization server
//! the registry trusts, whose `access` claim lists what the bearer may do.
//!
//! Verification ("Verifying the token" in `jwt.md`): the signature with the key the header's
//! `kid` names and one of that key's algorithms only; `iss` is the configured issuer; `aud`
//! names this service; `exp` and `nbf` hold with [`LEEWAY_SECS`] of clock skew. A verified
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
    /// Expiry (seconds since the epoch).
    pub exp: u64,
    /// Not before.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nbf: Option<u64>,
    /// Issued at.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub iat: Option<u64>,
    /// Token id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub jti: Option<String>,
    /// What the bearer may do.
    #[serde(default)]
    pub access: Vec<AccessEntry>,
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
            expires: claims.exp,
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
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
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
        let header = decode_header(token).map_err(|e| format!("malformed token: {e}"))?;
        let kid = header
            .kid
            .as_deref()
            .ok_or_else(|| "token has no key id (kid)".to_owned())?;
        let key = self
            .keys
            .get(kid)
            .ok_or_else(|| format!("token signed with an unknown key {kid:?}"))?;
        if !key.algorithms.contains(&header.alg) {
            return Err(format!(
                "algorithm {:?} is not accepted with key {kid:?}",
                header.alg
            ));
        }
        let mut validation = Validation::new(header.alg);
        validation.algorithms = key.algorithms.clone();
        validation.leeway = LEEWAY_SECS;
        validation.validate_nbf = true;
        validation.set_issuer(&[&self.issuer]);
        validation.set_audience(&[&self.service]);
        validation.set_required_spec_claims(&["exp", "iss", "aud"]);
        let data = decode::<Claims>(token, &key.key, &validation).map_err(|e| {
            use jsonwebtoken::errors::ErrorKind::*;
            match e.kind() {
                ExpiredSignature => "token expired".to_owned(),
                ImmatureSignature => "token not yet valid".to_owned(),
                InvalidAudience => "token is for another service (aud)".to_owned(),
                InvalidIssuer => "token from an untrusted issuer (iss)".to_owned(),
                InvalidSignature => "invalid token signature".to_owned(),
                InvalidAlgorithm => "token algorithm not accepted".to_owned(),
                _ => format!("invalid token: {e}"),
            }
        })?;
        let mut grants = Grants::from_claims(&data.claims);
        grants.issued_here = self.local_kid.as_deref() == Some(kid);
        Ok(grants)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
