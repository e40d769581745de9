//! The registry's own [`Authorizer`]: an htpasswd file with rules (HTTP Basic), or bearer
//! tokens from a trusted authorization server or from the built-in token endpoint.
//!
//! - **Basic** (`[auth] htpasswd` without `[auth.token]`): users from the htpasswd file,
//!   decisions from the [`Rules`]. An anonymous caller that needs more is challenged (401);
//!   an authenticated user that the rules do not allow is denied (403 `DENIED`).
//! - **Token** (`[auth.token]`): only `Authorization: Bearer <jwt>` counts (other schemes are
//!   treated as no credentials, so the client is sent to the token endpoint); the token's
//!   `access` claim alone decides. A token without the needed scope gets 401 with
//!   `error="insufficient_scope"`, which makes clients fetch a token for it.

use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};

use axum::http::request::Parts;
use axum::http::{HeaderValue, header};

use super::basic::{Htpasswd, parse_basic};
use super::keys::{KeySet, SigningKey};
use super::rules::Rules;
use super::token::{Grants, TokenVerifier};
use super::{AuthFailure, Authorizer, ChallengeError, Decision, Identity, Scope, quote};
use crate::oci::RepositoryName;
use crate::registry::route::Action;

/// The realm of the Basic challenge.
pub const BASIC_REALM: &str = "marina-registry";

/// A value loaded from a file and replaced when the file changes.
#[derive(Debug)]
pub struct Reloadable<T> {
    path: PathBuf,
    current: RwLock<Arc<T>>,
}

impl<T> Reloadable<T> {
    /// Loads `path` with `load`.
    pub fn load(path: &Path, load: impl Fn(&Path) -> Result<T, String>) -> Result<Self, String> {
        Ok(Self {
            path: path.to_owned(),
            current: RwLock::new(Arc::new(load(path)?)),
        })
    }

    /// The current value.
    pub fn get(&self) -> Arc<T> {
        Arc::clone(&self.current.read().expect("reloadable lock"))
    }

    /// Loads the file again; on error the previous value stays.
    pub fn reload(&self, load: impl Fn(&Path) -> Result<T, String>) -> Result<(), String> {
        let fresh = load(&self.path)?;
        *self.current.write().expect("reloadable lock") = Arc::new(fresh);
        Ok(())
    }

    /// The file.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

/// Token settings (`[auth.token]`).
#[derive(Debug)]
pub struct TokenSettings {
    /// The token endpoint clients are sent to.
    pub realm: String,
    /// The service: the `aud` tokens must name.
    pub service: String,
    /// The issuer: the `iss` tokens must name.
    pub issuer: String,
    /// JWKS file of trusted keys.
    pub jwks: Option<PathBuf>,
    /// PEM certificate bundle of trusted keys.
    pub certificates: Option<PathBuf>,
    /// The built-in endpoint's signing key (its public half is trusted too).
    pub signing_key: Option<Arc<SigningKey>>,
    /// Lifetime of the tokens the built-in endpoint issues, in seconds.
    pub lifetime_secs: u64,
    /// Lifetime of the refresh tokens it issues, in seconds; 0: it issues none.
    pub refresh_lifetime_secs: u64,
}

#[derive(Debug)]
struct TokenMode {
    settings: TokenSettings,
    verifier: RwLock<Arc<TokenVerifier>>,
}

impl TokenMode {
    fn load_verifier(settings: &TokenSettings) -> Result<TokenVerifier, String> {
        let mut keys = KeySet::load(settings.jwks.as_deref(), settings.certificates.as_deref())?;
        if let Some(signing) = &settings.signing_key {
            keys.insert(super::keys::VerifyingKey {
                kid: signing.verifying.kid.clone(),
                key: signing.verifying.key.clone(),
                algorithms: signing.verifying.algorithms.clone(),
            });
        }
        if keys.is_empty() {
            return Err("[auth.token] trusts no key: set jwks, certificates or signing_key".into());
        }
        let verifier = TokenVerifier::new(&settings.issuer, &settings.service, keys);
        Ok(match &settings.signing_key {
            Some(signing) => verifier.with_local_key(signing.verifying.kid.clone()),
            None => verifier,
        })
    }
}

/// Who [`Builtin::authenticate`] found.
#[derive(Debug, Clone)]
pub enum Principal {
    /// No credentials.
    Anonymous,
    /// An htpasswd user.
    User(Arc<str>),
    /// A verified bearer token.
    Token(Arc<Grants>),
}

/// The built-in authorizer.
#[derive(Debug)]
pub struct Builtin {
    htpasswd: Option<Reloadable<Htpasswd>>,
    rules: Rules,
    token: Option<TokenMode>,
}

impl Builtin {
    /// HTTP Basic against `htpasswd`, decisions by `rules`.
    pub fn basic(htpasswd: &Path, rules: Rules) -> Result<Self, String> {
        Ok(Self {
            htpasswd: Some(Reloadable::load(htpasswd, Htpasswd::load)?),
            rules,
            token: None,
        })
    }

    /// Bearer tokens; with `htpasswd` (and a signing key in `settings`) the built-in token
    /// endpoint issues them, granting what `rules` allow.
    pub fn token(
        settings: TokenSettings,
        htpasswd: Option<&Path>,
        rules: Rules,
    ) -> Result<Self, String> {
        let verifier = TokenMode::load_verifier(&settings)?;
        Ok(Self {
            htpasswd: htpasswd
                .map(|p| Reloadable::load(p, Htpasswd::load))
                .transpose()?,
            rules,
            token: Some(TokenMode {
                settings,
                verifier: RwLock::new(Arc::new(verifier)),
            }),
        })
    }

    /// The files whose change should trigger [`reload`](Self::reload).
    pub fn watched_files(&self) -> Vec<PathBuf> {
        let mut files: Vec<PathBuf> = self.htpasswd.iter().map(|h| h.path().to_owned()).collect();
        if let Some(t) = &self.token {
            files.extend(t.settings.jwks.clone());
            files.extend(t.settings.certificates.clone());
        }
        files
    }

    /// Reads the htpasswd file and the trusted keys again (verified credentials and tokens
    /// are forgotten). On error the previous state stays and the error is returned.
    pub fn reload(&self) -> Result<(), String> {
        if let Some(h) = &self.htpasswd {
            h.reload(Htpasswd::load)?;
        }
        if let Some(t) = &self.token {
            let fresh = TokenMode::load_verifier(&t.settings)?;
            *t.verifier.write().expect("verifier lock") = Arc::new(fresh);
        }
        Ok(())
    }

    /// The rules.
    pub fn rules(&self) -> &Rules {
        &self.rules
    }

    /// Token settings, when tokens are used.
    pub fn token_settings(&self) -> Option<&TokenSettings> {
        self.token.as_ref().map(|t| &t.settings)
    }

    /// The token settings and signing key, when the registry issues tokens itself.
    pub fn issuing(&self) -> Option<(&TokenSettings, &SigningKey)> {
        let settings = self.token_settings()?;
        Some((settings, settings.signing_key.as_deref()?))
    }

    /// Checks Basic credentials against the htpasswd file: `Ok(None)` without credentials,
    /// `Ok(Some(user))` when they are right.
    ///
    /// An empty user name with an empty password (`Basic Og==`, which skopeo and containers'
    /// image library send for a registry they hold no credentials for) is no credentials:
    /// no htpasswd line can name an empty user, and such a client expects anonymous access.
    pub async fn basic_user(&self, parts: &Parts) -> Result<Option<Arc<str>>, AuthFailure> {
        let Some(value) = parts.headers.get(header::AUTHORIZATION) else {
            return Ok(None);
        };
        let (user, password) = value
            .to_str()
            .ok()
            .and_then(parse_basic)
            .ok_or_else(|| AuthFailure::new("malformed Basic credentials"))?;
        if user.is_empty() && password.is_empty() {
            return Ok(None);
        }
        self.check_password(&user, &password).await.map(Some)
    }

    /// Checks a user's password against the htpasswd file.
    pub async fn check_password(
        &self,
        user: &str,
        password: &str,
    ) -> Result<Arc<str>, AuthFailure> {
        let Some(htpasswd) = &self.htpasswd else {
            return Err(AuthFailure::new("no user database is configured"));
        };
        if htpasswd.get().verify(user, password).await {
            Ok(Arc::from(user))
        } else {
            Err(AuthFailure::new("invalid username or password"))
        }
    }

    /// The fingerprint of `user`'s current htpasswd line
    /// ([`Htpasswd::credential_tag`](super::basic::Htpasswd::credential_tag)), `None` when
    /// there is no such user.
    pub fn credential_tag(&self, user: &str) -> Option<[u8; 16]> {
        self.htpasswd.as_ref()?.get().credential_tag(user)
    }
}

fn bearer(value: &HeaderValue) -> Option<&str> {
    let s = value.to_str().ok()?;
    let (scheme, token) = s.trim().split_once(' ')?;
    scheme.eq_ignore_ascii_case("bearer").then(|| token.trim())
}

impl Authorizer for Builtin {
    type Principal = Principal;

    async fn authenticate(&self, request: &Parts) -> Result<Principal, AuthFailure> {
        let Some(token_mode) = &self.token else {
            return Ok(match self.basic_user(request).await? {
                Some(user) => Principal::User(user),
                None => Principal::Anonymous,
            });
        };
        let Some(token) = request.headers.get(header::AUTHORIZATION).and_then(bearer) else {
            return Ok(Principal::Anonymous);
        };
        let verifier = Arc::clone(&token_mode.verifier.read().expect("verifier lock"));
        verifier
            .verify(token)
            .map(Principal::Token)
            .map_err(AuthFailure::invalid_token)
    }

    async fn authorize(&self, principal: &Principal, scope: Scope<'_>) -> Decision {
        match principal {
            Principal::Token(grants) => {
                let ok = match scope {
                    Scope::ApiVersion => true,
                    Scope::Catalog => grants.catalog,
                    Scope::Repository(name, action) => grants.allows(name.as_str(), action),
                };
                if ok {
                    Decision::Allow
                } else {
                    Decision::InsufficientScope
                }
            }
            Principal::Anonymous if self.token.is_some() => Decision::Challenge,
            Principal::Anonymous => match scope {
                Scope::ApiVersion => Decision::Challenge,
                Scope::Catalog if self.rules.grants_anonymous() => Decision::Allow,
                Scope::Catalog => Decision::Challenge,
                Scope::Repository(name, action) => {
                    if self.rules.allows(None, name.as_str(), action) {
                        Decision::Allow
                    } else {
                        Decision::Challenge
                    }
                }
            },
            Principal::User(user) => match scope {
                Scope::ApiVersion | Scope::Catalog => Decision::Allow,
                Scope::Repository(name, action) => {
                    if self.rules.allows(Some(user), name.as_str(), action) {
                        Decision::Allow
                    } else {
                        Decision::Deny
                    }
                }
            },
        }
    }

    /// A token of the built-in endpoint lists what the rules let its subject pull (what the
    /// endpoint would grant it on asking), besides what the token itself grants: a
    /// `registry:catalog:*` token names no repository. Other callers: what they may pull.
    async fn may_list(&self, principal: &Principal, repository: &RepositoryName) -> bool {
        if let Principal::Token(grants) = principal
            && grants.issued_here
            && self
                .rules
                .allows(grants.subject.as_deref(), repository.as_str(), Action::Pull)
        {
            return true;
        }
        self.authorize(principal, Scope::Repository(repository, Action::Pull))
            .await
            == Decision::Allow
    }

    fn identity(&self, principal: &Principal) -> Option<Identity> {
        Some(match principal {
            Principal::Anonymous => Identity::Anonymous,
            Principal::User(user) => Identity::User(Arc::clone(user)),
            Principal::Token(grants) => grants
                .subject
                .clone()
                .map_or(Identity::Anonymous, Identity::User),
        })
    }

    fn challenge(&self, scopes: &[Scope<'_>], error: ChallengeError) -> Option<HeaderValue> {
        let Some(t) = &self.token else {
            return HeaderValue::from_str(&format!("Basic realm={}", quote(BASIC_REALM))).ok();
        };
        let mut value = format!(
            "Bearer realm={},service={}",
            quote(&t.settings.realm),
            quote(&t.settings.service)
        );
        let names: Vec<String> = scopes.iter().filter_map(Scope::challenge_scope).collect();
        if !names.is_empty() {
            value.push_str(&format!(",scope={}", quote(&names.join(" "))));
        }
        match error {
            ChallengeError::None => {}
            ChallengeError::InvalidToken => value.push_str(",error=\"invalid_token\""),
            ChallengeError::InsufficientScope => {
                value.push_str(",error=\"insufficient_scope\"");
            }
        }
        HeaderValue::from_str(&value).ok()
    }
}
