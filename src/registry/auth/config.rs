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
//! refresh_lifetime = 7776000                # seconds, its refresh tokens (0: none)
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
    /// Lifetime of issued refresh tokens in seconds (default 90 days; 0: none are issued).
    pub refresh_lifetime: Option<u64>,
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
/// Default lifetime of the built-in endpoint's refresh tokens: 90 days.
pub const DEFAULT_REFRESH_LIFETIME: u64 = 90 * 86_400;
/// The refresh token lifetimes accepted besides 0 (none issued), in seconds: an hour to a
/// year. A changed password revokes them earlier.
pub const REFRESH_LIFETIMES: std::ops::RangeInclusive<u64> = 3_600..=365 * 86_400;

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
        let refresh_lifetime_secs = token.refresh_lifetime.unwrap_or(DEFAULT_REFRESH_LIFETIME);
        if refresh_lifetime_secs != 0 && !REFRESH_LIFETIMES.contains(&refresh_lifetime_secs) {
            return Err(format!(
                "[auth.token] refresh_lifetime {refresh_lifetime_secs} is outside 3600 to \
                 31536000 seconds (an hour to a year; 0 issues no refresh tokens)"
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
            refresh_lifetime_secs,
        };
        Builtin::token(settings, self.htpasswd.as_deref(), rules).map(Some)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn build_with(key: &str, value: u64) -> Result<Option<Builtin>, String> {
        let text = format!(
            "[token]\nrealm = \"https://r.test/token\"\nservice = \"s\"\n\
             issuer = \"i\"\nsigning_key = \"/nonexistent/key.pem\"\n{key} = {value}"
        );
        toml::from_str::<AuthConfig>(&text).unwrap().build()
    }

    #[test]
    fn token_lifetimes_outside_a_minute_to_a_day_are_refused() {
        for refused in [0, 10, 59, 86_401, 99_999_999_999] {
            let err = build_with("lifetime", refused).unwrap_err();
            assert!(err.contains("lifetime"), "{refused}: {err}");
        }
        // Within the bounds the configuration goes on (to the missing files here).
        for accepted in [60, 300, 86_400] {
            let err = build_with("lifetime", accepted).unwrap_err();
            assert!(!err.contains("lifetime"), "{accepted}: {err}");
        }
    }

    #[test]
    fn refresh_lifetimes_outside_an_hour_to_a_year_are_refused_but_zero() {
        for refused in [1, 3_599, 365 * 86_400 + 1, i64::MAX as u64] {
            let err = build_with("refresh_lifetime", refused).unwrap_err();
            assert!(err.contains("refresh_lifetime"), "{refused}: {err}");
        }
        for accepted in [0, 3_600, 90 * 86_400, 365 * 86_400] {
            let err = build_with("refresh_lifetime", accepted).unwrap_err();
            assert!(!err.contains("lifetime"), "{accepted}: {err}");
        }
    }
}
