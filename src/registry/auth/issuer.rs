//! The built-in token endpoint: `GET <realm>?service=<service>&scope=<scope>...` with
//! optional HTTP Basic credentials checked against the htpasswd file, answering
//! `{"token": ..., "access_token": ..., "expires_in": ..., "issued_at": ...}` (token
//! specification, "Requesting a Token"), plus a `refresh_token` for a user who asks with
//! `offline_token=true` ([`super::refresh`]); and `POST <realm>`, the OAuth2 form of the same
//! ([`super::oauth`]). The token grants the intersection of the requested scopes and what the
//! rules allow the caller; a caller with less than it asked for is not an error ("it must not
//! be considered an error"). Wrong credentials are 401. Answers carry `Cache-Control:
//! no-store`.

use std::sync::Arc;

use axum::Router;
use axum::extract::{Request, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use jsonwebtoken::{Header, encode};
use serde::Serialize;

use super::builtin::{BASIC_REALM, Builtin, TokenSettings};
use super::keys::SigningKey;
use super::refresh::{self, RefreshScope};
use super::token::{AccessEntry, Audience, Claims, NumericDate, now};
use super::{oauth, quote};
use crate::oci::RepositoryName;
use crate::registry::route::Action;
use crate::registry::{ApiError, query_pairs, query_param};

/// The answer to `GET <realm>` (token.md, "Token Response Fields").
#[derive(Serialize)]
struct TokenResponse<'a> {
    token: &'a str,
    access_token: &'a str,
    expires_in: u64,
    issued_at: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    refresh_token: Option<&'a str>,
}

/// The router serving the token endpoint at the path of the configured realm, when the
/// authorizer issues tokens itself (`[auth.token] signing_key` with `[auth] htpasswd`).
pub fn router(auth: Arc<Builtin>) -> Option<Router> {
    let (settings, _) = auth.issuing()?;
    let path = realm_path(&settings.realm)?;
    // Another method: 405 with `Allow` and the error envelope, like the registry's own.
    let refuse = || async {
        ApiError::method_not_allowed()
            .with_header(header::ALLOW, "GET, HEAD, POST")
            .into_response()
    };
    Some(
        Router::new()
            .route(&path, get(issue).post(oauth::issue).fallback(refuse))
            .with_state(auth),
    )
}

/// The path part of a realm URL (`https://host:port/token` → `/token`).
pub fn realm_path(realm: &str) -> Option<String> {
    let rest = realm
        .strip_prefix("https://")
        .or_else(|| realm.strip_prefix("http://"))?;
    let path = rest.find('/').map_or("/", |i| &rest[i..]);
    let path = path.split('?').next().unwrap_or(path);
    (!path.is_empty()).then(|| path.to_owned())
}

/// Most scopes one token request may name.
pub const MAX_SCOPES: usize = 32;

/// A token request naming more than [`MAX_SCOPES`] scopes.
#[derive(Debug)]
pub(super) struct TooManyScopes;

impl TooManyScopes {
    /// What the client is told.
    pub(super) fn detail() -> String {
        format!("a token covers at most {MAX_SCOPES} scopes")
    }
}

/// Parses one scope (`repository:<name>:<actions>`; the name may hold a `:port`).
fn parse_scope(scope: &str) -> Option<(&str, &str, Vec<&str>)> {
    let (kind, rest) = scope.split_once(':')?;
    let (name, actions) = rest.rsplit_once(':')?;
    Some((
        kind,
        name,
        actions.split(',').filter(|a| !a.is_empty()).collect(),
    ))
}

fn action_of(name: &str) -> Option<Action> {
    match name {
        "pull" => Some(Action::Pull),
        "push" => Some(Action::Push),
        "delete" => Some(Action::Delete),
        _ => None,
    }
}

/// The rules' answer to a token request: the intersection of the scopes asked for and what
/// the rules allow `user` (anonymous: `None`). Unknown scope types, malformed scopes and
/// invalid repository names grant nothing. The scope strings may each be a space-separated
/// list (scope.md). `Err` when they name more than [`MAX_SCOPES`]: clients ask for one to
/// three; hundreds would make every verified token (cached until it expires) kilobytes
/// large.
pub(super) fn granted_access<'a>(
    auth: &Builtin,
    user: Option<&str>,
    scopes: impl IntoIterator<Item = &'a str>,
) -> Result<Vec<AccessEntry>, TooManyScopes> {
    let scopes: Vec<&str> = scopes
        .into_iter()
        .flat_map(|v| v.split(' '))
        .filter(|s| !s.is_empty())
        .collect();
    if scopes.len() > MAX_SCOPES {
        return Err(TooManyScopes);
    }
    let rules = auth.rules();
    let mut access: Vec<AccessEntry> = Vec::new();
    for scope in scopes {
        let Some((kind, name, actions)) = parse_scope(scope) else {
            continue;
        };
        match kind {
            "repository" | "repository(plugin)" => {
                if RepositoryName::parse(name).is_err() {
                    continue;
                }
                let wanted: Vec<Action> = if actions.contains(&"*") {
                    vec![Action::Pull, Action::Push, Action::Delete]
                } else {
                    actions.iter().filter_map(|a| action_of(a)).collect()
                };
                let granted = rules.granted(user, name, &wanted);
                if !granted.is_empty() {
                    access.push(AccessEntry {
                        kind: "repository".to_owned(),
                        name: name.to_owned(),
                        actions: granted.iter().map(|a| a.as_str().to_owned()).collect(),
                    });
                }
            }
            "registry" if name == "catalog" && (user.is_some() || rules.grants_anonymous()) => {
                access.push(AccessEntry {
                    kind: "registry".to_owned(),
                    name: "catalog".to_owned(),
                    actions: vec!["*".to_owned()],
                });
            }
            _ => {}
        }
    }
    Ok(access)
}

/// The granted access as an OAuth2 `scope` (space-separated `type:name:actions`).
pub(super) fn scope_text(access: &[AccessEntry]) -> String {
    let entries: Vec<String> = access
        .iter()
        .map(|e| format!("{}:{}:{}", e.kind, e.name, e.actions.join(",")))
        .collect();
    entries.join(" ")
}

/// An access token signed for `user` (anonymous: `None`) with `access`, and the second it
/// was issued at.
pub(super) fn sign_access(
    settings: &TokenSettings,
    signing: &SigningKey,
    user: Option<&str>,
    access: Vec<AccessEntry>,
) -> Result<(String, u64), ApiError> {
    let issued = now();
    let mut jti = [0u8; 16];
    rand::fill(&mut jti);
    let claims = Claims {
        iss: settings.issuer.clone(),
        sub: user.unwrap_or("").to_owned(),
        aud: Audience::One(settings.service.clone()),
        exp: NumericDate::from_secs(issued + settings.lifetime_secs),
        nbf: Some(NumericDate::from_secs(issued)),
        iat: Some(NumericDate::from_secs(issued)),
        jti: Some(hex::encode(jti)),
        token_use: None,
        access,
    };
    let mut header = Header::new(signing.algorithm);
    header.kid = Some(signing.verifying.kid.clone());
    header.typ = Some("JWT".to_owned());
    match encode(&header, &claims, &signing.encoding) {
        Ok(token) => Ok((token, issued)),
        Err(e) => Err(signing_failed(&e)),
    }
}

/// A refresh token for `user`, when the endpoint issues them and the user is in the
/// htpasswd file.
pub(super) fn sign_refresh(
    auth: &Builtin,
    settings: &TokenSettings,
    signing: &SigningKey,
    user: &str,
) -> Result<Option<String>, ApiError> {
    if settings.refresh_lifetime_secs == 0 {
        return Ok(None);
    }
    let Some(cred) = auth.credential_tag(user) else {
        return Ok(None);
    };
    refresh::mint(
        signing,
        refresh_scope(settings),
        user,
        &cred,
        settings.refresh_lifetime_secs,
    )
    .map(Some)
    .map_err(|e| signing_failed(&e))
}

/// Where the endpoint's refresh tokens are valid.
pub(super) fn refresh_scope(settings: &TokenSettings) -> RefreshScope<'_> {
    RefreshScope {
        issuer: &settings.issuer,
        realm: &settings.realm,
    }
}

fn signing_failed(e: &jsonwebtoken::errors::Error) -> ApiError {
    tracing::error!(error = %e, "signing a token failed");
    ApiError::new(
        StatusCode::INTERNAL_SERVER_ERROR,
        "UNKNOWN",
        "unknown error",
    )
}

/// A token answer: JSON that no cache may keep (RFC 6749 §5.1: `Cache-Control: no-store`,
/// `Pragma: no-cache`).
pub(super) fn token_answer(body: &impl Serialize) -> Response {
    (
        [
            (header::CONTENT_TYPE, "application/json"),
            (header::CACHE_CONTROL, "no-store"),
            (header::PRAGMA, "no-cache"),
        ],
        serde_json::to_vec(body).unwrap_or_default(),
    )
        .into_response()
}

/// `GET <realm>`: the token specification's request, HTTP Basic credentials optional.
async fn issue(State(auth): State<Arc<Builtin>>, req: Request) -> Response {
    let (parts, _) = req.into_parts();
    let Some((settings, signing)) = auth.issuing() else {
        return ApiError::not_found().into_response();
    };
    let user = match auth.basic_user(&parts).await {
        Ok(user) => user,
        Err(failure) => {
            let mut resp = ApiError::new(
                StatusCode::UNAUTHORIZED,
                "UNAUTHORIZED",
                "authentication required",
            )
            .with_detail(failure.reason)
            .into_response();
            if let Ok(v) = format!("Basic realm={}", quote(BASIC_REALM)).parse() {
                resp.headers_mut().insert(header::WWW_AUTHENTICATE, v);
            }
            return resp;
        }
    };
    // A form-encoded query (`+` for a space, as Python's and Go's URL encoders write the
    // spaces between scopes), as the Go token servers clients are written against read it.
    let query = parts.uri.query().map(|q| q.replace('+', "%20"));
    let pairs = query_pairs(query.as_deref());
    if let Some(service) = query_param(&pairs, "service")
        && service != settings.service
    {
        return ApiError::new(StatusCode::BAD_REQUEST, "UNSUPPORTED", "unknown service")
            .with_detail(format!(
                "this endpoint issues tokens for {:?}",
                settings.service
            ))
            .into_response();
    }
    let user_name = user.as_deref();
    // Several `scope` parameters, each possibly a space-separated list (scope.md).
    let scopes = pairs
        .iter()
        .filter(|(k, _)| k == "scope")
        .map(|(_, v)| v.as_str());
    let signed = granted_access(&auth, user_name, scopes)
        .map_err(|_| {
            ApiError::new(StatusCode::BAD_REQUEST, "UNSUPPORTED", "too many scopes")
                .with_detail(TooManyScopes::detail())
        })
        .and_then(|access| sign_access(settings, signing, user_name, access));
    let (token, issued) = match signed {
        Ok(signed) => signed,
        Err(e) => return e.into_response(),
    };
    // `offline_token=true`: a refresh token too (`docker login` asks for one, and keeps it
    // instead of the password). Only for a user: an anonymous caller has nothing to refresh.
    let offline =
        query_param(&pairs, "offline_token").is_some_and(|v| v.eq_ignore_ascii_case("true"));
    let refresh_token = match user_name {
        Some(user) if offline => match sign_refresh(&auth, settings, signing, user) {
            Ok(refresh) => refresh,
            Err(e) => return e.into_response(),
        },
        _ => None,
    };
    token_answer(&TokenResponse {
        token: &token,
        access_token: &token,
        expires_in: settings.lifetime_secs,
        issued_at: rfc3339(issued),
        refresh_token: refresh_token.as_deref(),
    })
}

/// `YYYY-MM-DDTHH:MM:SSZ` for seconds since the epoch.
pub(super) fn rfc3339(secs: u64) -> String {
    let days = (secs / 86_400) as i64;
    let rem = secs % 86_400;
    // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scopes_and_paths() {
        assert_eq!(
            parse_scope("repository:a/b:pull,push"),
            Some(("repository", "a/b", vec!["pull", "push"]))
        );
        assert_eq!(
            parse_scope("repository:host:5000/a:pull"),
            Some(("repository", "host:5000/a", vec!["pull"]))
        );
        assert_eq!(parse_scope("nonsense"), None);
        assert_eq!(
            realm_path("https://r.example:5000/token").as_deref(),
            Some("/token")
        );
        assert_eq!(
            realm_path("http://r/auth/t?x=1").as_deref(),
            Some("/auth/t")
        );
        assert_eq!(realm_path("https://r").as_deref(), Some("/"));
        assert_eq!(realm_path("/relative"), None);
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00Z");
        assert_eq!(rfc3339(1_257_894_000), "2009-11-10T23:00:00Z");
    }
}
