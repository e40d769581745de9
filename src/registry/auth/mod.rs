//! Access control: who is calling ([`Authorizer::authenticate`]) and what they may do
//! ([`Authorizer::authorize`]), checked once per request at the dispatcher's seam, before any
//! handler runs.
//!
//! The router is generic over the [`Authorizer`], so an embedder plugs in its own identity
//! system without `dyn` and without boxing: every method returns `impl Future + Send`.
//! [`NoAuth`] (everyone may do everything) is the default and compiles down to nothing.
//! [`Builtin`](builtin::Builtin) is the registry's own implementation: an htpasswd file with
//! rules, or bearer tokens per the Docker registry token specification (see
//! `docs/security.md`).
//!
//! Answers follow the distribution spec ("Error Codes": `UNAUTHORIZED` is 401, `DENIED` is
//! 403) and the token specification (`WWW-Authenticate: Bearer realm=...,service=...,
//! scope="repository:<name>:pull,push"`):
//! - no or invalid credentials, or a token without the scope: **401 `UNAUTHORIZED`** with a
//!   challenge naming the scope the request needs;
//! - valid credentials that the rules do not allow: **403 `DENIED`**.

pub mod basic;
pub mod builtin;
pub mod config;
pub mod issuer;
pub mod keys;
pub mod oauth;
pub mod refresh;
pub mod rules;
pub mod token;
pub mod x5c;

/// The globs of access rules, shared with immutable tags: [`crate::oci::glob`].
pub use crate::oci::glob;

use std::fmt;
use std::future::Future;
use std::sync::Arc;

use axum::http::request::Parts;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};

use super::ApiError;
use super::route::Action;
use crate::oci::RepositoryName;

/// The authenticated caller, as middleware sees it: set as a response extension on every
/// `/v2/` answer when an authorizer is configured (access logs, notifications read the actor
/// from it).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Identity {
    /// No credentials were presented.
    Anonymous,
    /// An authenticated user (the htpasswd name, or the token's `sub`).
    User(Arc<str>),
}

impl Identity {
    /// The user name, `None` for anonymous callers.
    pub fn user(&self) -> Option<&str> {
        match self {
            Self::Anonymous => None,
            Self::User(name) => Some(name),
        }
    }
}

impl fmt::Display for Identity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Anonymous => f.write_str("anonymous"),
            Self::User(name) => f.write_str(name),
        }
    }
}

/// What a request needs access to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scope<'a> {
    /// `GET /v2/`: the version check clients use to learn whether and how to authenticate.
    ApiVersion,
    /// `GET /v2/_catalog`: listing repositories (each then filtered by
    /// [`Caller::may_list`]); `registry:catalog:*` in token terms.
    Catalog,
    /// An action on one repository: `repository:<name>:<action>`.
    Repository(&'a RepositoryName, Action),
}

impl Scope<'_> {
    /// The scope in the token specification's grammar, as a challenge names it
    /// (`repository:a/b:pull`; push asks for `pull,push`, as clients need both to push).
    pub fn challenge_scope(&self) -> Option<String> {
        match self {
            Self::ApiVersion => None,
            Self::Catalog => Some("registry:catalog:*".to_owned()),
            Self::Repository(name, Action::Push) => Some(format!("repository:{name}:pull,push")),
            Self::Repository(name, action) => {
                Some(format!("repository:{name}:{}", action.as_str()))
            }
        }
    }
}

/// The outcome of [`Authorizer::authorize`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    /// Go ahead.
    Allow,
    /// 401 `UNAUTHORIZED` with a challenge: the caller is anonymous and credentials would
    /// help.
    Challenge,
    /// 401 `UNAUTHORIZED` with `error="insufficient_scope"`: the caller's token does not
    /// grant the scope; it may fetch another one (RFC 6750 §3.1; Distribution and every
    /// client treat this as a 401, not the 403 of the RFC, so the client retries).
    InsufficientScope,
    /// 403 `DENIED`: the caller is known and not allowed.
    Deny,
}

/// Why authentication failed (401 `UNAUTHORIZED`). The reason goes into the error's detail;
/// it never contains a secret.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuthFailure {
    /// A short reason: "invalid username or password", "token expired", ...
    pub reason: String,
    /// Whether a bearer token was rejected (the challenge then says `error="invalid_token"`).
    pub invalid_token: bool,
}

impl AuthFailure {
    /// A failure with the given reason.
    pub fn new(reason: impl Into<String>) -> Self {
        Self {
            reason: reason.into(),
            invalid_token: false,
        }
    }

    /// A rejected bearer token.
    pub fn invalid_token(reason: impl Into<String>) -> Self {
        Self {
            reason: reason.into(),
            invalid_token: true,
        }
    }
}

/// How a 401 challenge qualifies itself (RFC 6750 §3.1 `error=`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChallengeError {
    /// No error attribute: credentials were missing.
    None,
    /// `error="invalid_token"`: the token is expired, malformed, or not trusted.
    InvalidToken,
    /// `error="insufficient_scope"`: the token does not grant the scope.
    InsufficientScope,
}

/// Authentication and authorization, plugged into the router as a generic parameter.
///
/// The dispatcher calls [`authenticate`](Self::authenticate) once per request with the
/// request head, then [`authorize`](Self::authorize) for the scope the endpoint needs (and,
/// for a cross-repository mount, for `pull` on the source: refused, the mount falls back to
/// a normal upload session). Both run before any handler and before the body is read.
pub trait Authorizer: Send + Sync + 'static {
    /// What `authenticate` found out about the caller (a user name, a token's grants, ...).
    type Principal: Send + Sync + 'static;

    /// Identifies the caller from the request head (usually the `Authorization` header).
    /// Missing credentials are not a failure: return an anonymous principal. Presented but
    /// invalid credentials are (401).
    fn authenticate(
        &self,
        request: &Parts,
    ) -> impl Future<Output = Result<Self::Principal, AuthFailure>> + Send;

    /// Whether `principal` may access `scope`.
    fn authorize(
        &self,
        principal: &Self::Principal,
        scope: Scope<'_>,
    ) -> impl Future<Output = Decision> + Send;

    /// The identity set as a response extension; `None` adds nothing (the [`NoAuth`] case).
    fn identity(&self, principal: &Self::Principal) -> Option<Identity>;

    /// The `WWW-Authenticate` value of a 401 for `scopes`; `None` sends no challenge.
    fn challenge(&self, scopes: &[Scope<'_>], error: ChallengeError) -> Option<HeaderValue>;

    /// Whether the catalog lists `repository` to `principal` (who may list the catalog).
    /// By default, when it may pull from it.
    fn may_list(
        &self,
        principal: &Self::Principal,
        repository: &RepositoryName,
    ) -> impl Future<Output = bool> + Send {
        async move {
            self.authorize(principal, Scope::Repository(repository, Action::Pull))
                .await
                == Decision::Allow
        }
    }
}

/// No access control: every caller may do everything. The default of
/// [`router`](super::router); its checks are ready futures the compiler removes.
#[derive(Debug, Clone, Copy, Default)]
pub struct NoAuth;

impl Authorizer for NoAuth {
    type Principal = ();

    fn authenticate(&self, _: &Parts) -> impl Future<Output = Result<(), AuthFailure>> + Send {
        std::future::ready(Ok(()))
    }

    fn authorize(&self, _: &(), _: Scope<'_>) -> impl Future<Output = Decision> + Send {
        std::future::ready(Decision::Allow)
    }

    fn identity(&self, _: &()) -> Option<Identity> {
        None
    }

    fn challenge(&self, _: &[Scope<'_>], _: ChallengeError) -> Option<HeaderValue> {
        None
    }
}

/// The authenticated caller of one request, with its authorizer: what a handler that filters
/// by permission (the catalog) needs.
pub struct Caller<'a, A: Authorizer> {
    /// The authorizer.
    pub authorizer: &'a A,
    /// The caller.
    pub principal: &'a A::Principal,
}

impl<A: Authorizer> Caller<'_, A> {
    /// Whether the catalog lists `repository` to the caller ([`Authorizer::may_list`]).
    pub async fn may_list(&self, repository: &RepositoryName) -> bool {
        self.authorizer.may_list(self.principal, repository).await
    }
}

/// A refusal as the client sees it: 401 `UNAUTHORIZED` with the challenge, or 403 `DENIED`.
pub(crate) fn refusal<A: Authorizer>(
    authorizer: &A,
    decision: Decision,
    scopes: &[Scope<'_>],
    detail: &str,
) -> Response {
    let error = match decision {
        Decision::InsufficientScope => ChallengeError::InsufficientScope,
        _ => ChallengeError::None,
    };
    refusal_with(authorizer, decision, scopes, error, detail)
}

/// [`refusal`] with an explicit challenge error (`invalid_token` after a failed
/// authentication).
pub(crate) fn refusal_with<A: Authorizer>(
    authorizer: &A,
    decision: Decision,
    scopes: &[Scope<'_>],
    error: ChallengeError,
    detail: &str,
) -> Response {
    let (status, code) = match decision {
        Decision::Deny => (StatusCode::FORBIDDEN, "DENIED"),
        _ => (StatusCode::UNAUTHORIZED, "UNAUTHORIZED"),
    };
    let message = match decision {
        Decision::Deny => "requested access to the resource is denied",
        _ => "authentication required",
    };
    let mut resp = ApiError::new(status, code, message)
        .with_detail(detail)
        .into_response();
    if status == StatusCode::UNAUTHORIZED
        && let Some(challenge) = authorizer.challenge(scopes, error)
    {
        resp.headers_mut()
            .insert(header::WWW_AUTHENTICATE, challenge);
    }
    resp
}

/// The detail of a refusal: which scopes were needed (never a secret).
pub(crate) fn refusal_detail(scopes: &[Scope<'_>]) -> String {
    let names: Vec<String> = scopes.iter().filter_map(Scope::challenge_scope).collect();
    if names.is_empty() {
        "authentication required".to_owned()
    } else {
        format!("needs {}", names.join(" "))
    }
}

/// Quotes a challenge parameter value (RFC 9110 §5.6.4 quoted-string).
pub(crate) fn quote(value: &str) -> String {
    let mut out = String::with_capacity(value.len() + 2);
    out.push('"');
    for c in value.chars() {
        if c == '"' || c == '\\' {
            out.push('\\');
        }
        out.push(c);
    }
    out.push('"');
    out
}

/// A shared authorizer (the binary shares the built-in one with its token endpoint).
impl<A: Authorizer> Authorizer for Arc<A> {
    type Principal = A::Principal;

    fn authenticate(
        &self,
        request: &Parts,
    ) -> impl Future<Output = Result<Self::Principal, AuthFailure>> + Send {
        (**self).authenticate(request)
    }

    fn authorize(
        &self,
        principal: &Self::Principal,
        scope: Scope<'_>,
    ) -> impl Future<Output = Decision> + Send {
        (**self).authorize(principal, scope)
    }

    fn identity(&self, principal: &Self::Principal) -> Option<Identity> {
        (**self).identity(principal)
    }

    fn challenge(&self, scopes: &[Scope<'_>], error: ChallengeError) -> Option<HeaderValue> {
        (**self).challenge(scopes, error)
    }

    fn may_list(
        &self,
        principal: &Self::Principal,
        repository: &RepositoryName,
    ) -> impl Future<Output = bool> + Send {
        (**self).may_list(principal, repository)
    }
}
