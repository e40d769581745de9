//! The `[auth]` section of the configuration:
//!
//! ```toml
//! [auth]
//! htpasswd = "/etc/marina/htpasswd"        # or --htpasswd / MARINA_HTPASSWD
//!
//! [[auth.access]]
//! repositories = "team/**"                 # or a list of globs
//! users = ["alice", "*", "anonymous"]
//! actions = ["pull", "push", "delete"]
//!
//! [auth.token]                             # bearer tokens instead of Basic
//! realm = "https://registry.example.com/token"
//! service = "registry.example.com"
//! issuer = "auth.example.com"
//! jwks = "/etc/marina/jwks.json"           # and/or
//! certificates = "/etc/marina/token-ca.pem"
//! signing_key = "/etc/marina/token-key.pem"  # serve the token endpoint at realm's path
//! lifetime = 300                           # seconds, tokens of the built-in endpoint
//! ```

use std::path::PathBuf;
use std::sync::Arc;

use serde::Deserialize;

use super::builtin::{Builtin, TokenSettings};
use super::glob::Glob;
use super::keys::SigningKey;
use super::rules::{Rule, Rules, Subject};
use crate::registry::route::Action;

/// `[auth]`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuthConfig {
    /// htpasswd file (bcrypt).
    pub htpasswd: Option<PathBuf>,
    /// Bearer token settings.
    pub token: Option<TokenConfig>,
    /// Authorization rules.
    #[serde(default)]
    pub access: Vec<AccessRuleConfig>,
}

/// `[auth.token]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TokenConfig {
    /// The token endpoint URL sent in challenges.
    pub realm: String,
    /// The service name (`aud`).
    pub service: String,
    /// The trusted issuer (`iss`).
    pub issuer: String,
    /// JWKS file of trusted keys.
    pub jwks: Option<PathBuf>,
    /// PEM certificate bundle of trusted keys.
    pub certificates: Option<PathBuf>,
    /// Private key (PKCS#8 PEM) of the built-in token endpoint.
    pub signing_key: Option<PathBuf>,
    /// Lifetime of issued tokens in seconds (default 300).
    pub lifetime: Option<u64>,
}

/// One `[[auth.access]]` table.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AccessRuleConfig {
    /// One glob or several.
    pub repositories: OneOrMany,
    /// User names, `"*"`, `"anonymous"`.
    pub users: Vec<String>,
    /// `pull`, `push`, `delete`.
    pub actions: Vec<String>,
}

/// A string or a list of strings.
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub enum OneOrMany {
    /// One.
    One(String),
    /// Several.
    Many(Vec<String>),
}

impl OneOrMany {
    fn items(&self) -> &[String] {
        match self {
            Self::One(s) => std::slice::from_ref(s),
            Self::Many(v) => v,
        }
    }
}

/// Default lifetime of the built-in endpoint's tokens.
pub const DEFAULT_TOKEN_LIFETIME: u64 = 300;
/// The lifetimes accepted, in seconds: a minute (clients fetch a token per push or pull) to
/// a day.
pub const TOKEN_LIFETIMES: std::ops::RangeInclusive<u64> = 60..=86_400;

impl AuthConfig {
    /// Whether any access control is configured.
    pub fn is_enabled(&self) -> bool {
        self.htpasswd.is_some() || self.token.is_some() || !self.access.is_empty()
    }

    /// Whether HTTP Basic credentials travel to this registry (htpasswd users, directly or
    /// at the built-in token endpoint): then the listener must be TLS or loopback.
    pub fn uses_basic(&self) -> bool {
        self.htpasswd.is_some()
    }

    /// Passwords never travel in clear text over a network: with an htpasswd file, a
    /// listener on a non-loopback address must serve TLS.
    pub fn check_transport(&self, listen: std::net::SocketAddr, tls: bool) -> Result<(), String> {
        if self.uses_basic() && !tls && !listen.ip().is_loopback() {
            return Err(format!(
                "HTTP Basic authentication (htpasswd) needs TLS (--tls-cert, --tls-key) when \
                 listening on {listen}, which is not a loopback address"
            ));
        }
        Ok(())
    }

    /// The rules, compiled.
    pub fn rules(&self) -> Result<Rules, String> {
        let mut rules = Vec::new();
        for (i, r) in self.access.iter().enumerate() {
            let n = i + 1;
            let repositories = r
                .repositories
                .items()
                .iter()
                .map(|g| Glob::new(g))
                .collect::<Result<Vec<_>, _>>()
                .map_err(|e| format!("[[auth.access]] #{n}: {e}"))?;
            if repositories.is_empty() || r.users.is_empty() || r.actions.is_empty() {
                return Err(format!(
                    "[[auth.access]] #{n}: repositories, users and actions must not be empty"
                ));
            }
            let actions = r
                .actions
                .iter()
                .map(|a| match a.as_str() {
                    "pull" => Ok(Action::Pull),
                    "push" => Ok(Action::Push),
                    "delete" => Ok(Action::Delete),
                    other => Err(format!(
                        "[[auth.access]] #{n}: unknown action {other:?} (pull, push, delete)"
                    )),
                })
                .collect::<Result<Vec<_>, _>>()?;
            rules.push(Rule {
                repositories,
                users: r.users.iter().map(|u| Subject::parse(u)).collect(),
                actions,
            });
        }
        Ok(Rules::new(rules))
    }

    /// Builds the authorizer; `Ok(None)` when no access control is configured.
    pub fn build(&self) -> Result<Option<Builtin>, String> {
        if !self.is_enabled() {
            return Ok(None);
        }
        let rules = self.rules()?;
        let Some(token) = &self.token else {
            let Some(htpasswd) = &self.htpasswd else {
                return Err("[[auth.access]] rules need users: set [auth] htpasswd".to_owned());
            };
            return Builtin::basic(htpasswd, rules).map(Some);
        };
        let lifetime_secs = token.lifetime.unwrap_or(DEFAULT_TOKEN_LIFETIME);
        if !TOKEN_LIFETIMES.contains(&lifetime_secs) {
            return Err(format!(
                "[auth.token] lifetime {lifetime_secs} is outside 60 to 86400 seconds (a token \
                 cannot be revoked: it grants what it says until it expires)"
            ));
        }
        let signing_key = match &token.signing_key {
            Some(path) => {
                if self.htpasswd.is_none() {
                    return Err(
                        "[auth.token] signing_key (the built-in token endpoint) needs [auth] \
                         htpasswd"
                            .to_owned(),
                    );
                }
                super::issuer::realm_path(&token.realm).ok_or_else(|| {
                    format!("[auth.token] realm {:?} is not an http(s) URL", token.realm)
                })?;
                let pem =
                    std::fs::read(path).map_err(|e| format!("reading {}: {e}", path.display()))?;
                Some(Arc::new(
                    SigningKey::from_pem(&pem).map_err(|e| format!("{}: {e}", path.display()))?,
                ))
            }
            None => {
                if !self.access.is_empty() || self.htpasswd.is_some() {
                    return Err(
                        "with [auth.token] and no signing_key the tokens' access claim \
                                alone decides: [auth] htpasswd and [[auth.access]] would be \
                                ignored, remove them"
                            .to_owned(),
                    );
                }
                None
            }
        };
        let settings = TokenSettings {
            realm: token.realm.clone(),
            service: token.service.clone(),
            issuer: token.issuer.clone(),
            jwks: token.jwks.clone(),
            certificates: token.certificates.clone(),
            signing_key,
            lifetime_secs,
        };
        Builtin::token(settings, self.htpasswd.as_deref(), rules).map(Some)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn token_lifetimes_outside_a_minute_to_a_day_are_refused() {
        let with = |lifetime: u64| {
            let text = format!(
                "[token]\nrealm = \"https://r.test/token\"\nservice = \"s\"\n\
                 issuer = \"i\"\nsigning_key = \"/nonexistent/key.pem\"\nlifetime = {lifetime}"
            );
            toml::from_str::<AuthConfig>(&text).unwrap().build()
        };
        for refused in [0, 10, 59, 86_401, 99_999_999_999] {
            let err = with(refused).unwrap_err();
            assert!(err.contains("lifetime"), "{refused}: {err}");
        }
        // Within the bounds the configuration goes on (to the missing files here).
        for accepted in [60, 300, 86_400] {
            let err = with(accepted).unwrap_err();
            assert!(!err.contains("lifetime"), "{accepted}: {err}");
        }
    }
}
