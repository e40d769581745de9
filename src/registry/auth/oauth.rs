//! `POST <realm>`: the OAuth2 form of the token request (`docs/spec/auth/oauth.md` in CNCF
//! Distribution's repository, after RFC 6749). containerd (and so nerdctl and the kubelet's
//! image pulls) tries it first whenever it holds a password; docker and containers' image
//! library (skopeo, podman) use it to exchange a refresh token (`identitytoken`).
//!
//! The body is `application/x-www-form-urlencoded`, at most [`MAX_FORM`] bytes:
//! - `grant_type=password` with `username` and `password` (checked against the htpasswd file
//!   as Basic credentials are); with `access_type=offline` the answer carries a refresh
//!   token ([`super::refresh`]);
//! - `grant_type=refresh_token` with `refresh_token`: the answer carries the same refresh
//!   token back (oauth.md: "this will only return the same refresh token");
//! - `service` (required, this registry's), `client_id` (recorded in the debug log; accepted
//!   when absent, since it serves only auditing), `scope` (space-separated, as in a
//!   challenge; may be given several times).
//!
//! The answer is `{"access_token", "token_type": "Bearer", "scope", "expires_in",
//! "issued_at"}` (plus `refresh_token`), `scope` being what the token grants. Refusals are
//! RFC 6749 §5.2 errors, `400` with `{"error", "error_description"}`: `invalid_request`
//! (a parameter missing, repeated, or the body malformed), `invalid_grant` (wrong password,
//! unknown user, a refresh token that is invalid, expired or revoked), `unsupported_grant_type`,
//! `invalid_scope` (more than [`MAX_SCOPES`](super::issuer::MAX_SCOPES) scopes). containerd
//! then falls back to `GET` with Basic credentials, as it does against token servers that
//! refuse `POST`.

use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;

use super::builtin::Builtin;
use super::issuer::{
    TooManyScopes, granted_access, refresh_scope, rfc3339, sign_access, sign_refresh, token_answer,
};
use super::refresh;
use crate::registry::{ApiError, header_str, query_pairs};

/// The largest form accepted, in bytes (32 scopes of long repository names fit).
pub const MAX_FORM: usize = 64 * 1024;

/// The answer to a granted `POST` (oauth.md, "Response fields").
#[derive(Serialize)]
struct OAuthResponse<'a> {
    access_token: &'a str,
    token_type: &'static str,
    scope: String,
    expires_in: u64,
    issued_at: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    refresh_token: Option<&'a str>,
}

/// An RFC 6749 §5.2 error: `400` with `{"error", "error_description"}`.
#[derive(Debug)]
struct OAuthError {
    error: &'static str,
    description: String,
}

impl OAuthError {
    fn new(error: &'static str, description: impl Into<String>) -> Self {
        Self {
            error,
            description: description.into(),
        }
    }

    fn invalid_request(description: impl Into<String>) -> Self {
        Self::new("invalid_request", description)
    }

    fn invalid_grant(description: impl Into<String>) -> Self {
        Self::new("invalid_grant", description)
    }
}

impl IntoResponse for OAuthError {
    fn into_response(self) -> Response {
        #[derive(Serialize)]
        struct Body<'a> {
            error: &'a str,
            error_description: &'a str,
        }
        let mut resp = token_answer(&Body {
            error: self.error,
            error_description: &self.description,
        });
        *resp.status_mut() = StatusCode::BAD_REQUEST;
        resp
    }
}

/// The form's parameters, each named at most once but `scope`.
struct Form {
    pairs: Vec<(String, String)>,
}

impl Form {
    async fn read(req: Request) -> Result<Self, OAuthError> {
        let (parts, body) = req.into_parts();
        let form_type = header_str(&parts.headers, header::CONTENT_TYPE)
            .and_then(|v| v.split(';').next())
            .is_some_and(|t| {
                t.trim()
                    .eq_ignore_ascii_case("application/x-www-form-urlencoded")
            });
        if !form_type {
            return Err(OAuthError::invalid_request(
                "the body must be application/x-www-form-urlencoded",
            ));
        }
        let bytes = axum::body::to_bytes(body, MAX_FORM).await.map_err(|_| {
            OAuthError::invalid_request(format!("a form of at most {MAX_FORM} bytes"))
        })?;
        let text = std::str::from_utf8(&bytes)
            .map_err(|_| OAuthError::invalid_request("the form is not UTF-8"))?;
        // `+` is a space in a form (the scopes' separator).
        let pairs = query_pairs(Some(&text.replace('+', "%20")));
        Ok(Self { pairs })
    }

    /// The value of `name`; RFC 6749 §3.2: "parameters MUST NOT be included more than once".
    fn single(&self, name: &str) -> Result<Option<&str>, OAuthError> {
        let mut values = self.pairs.iter().filter(|(k, _)| k == name);
        let first = values.next().map(|(_, v)| v.as_str());
        if values.next().is_some() {
            return Err(OAuthError::invalid_request(format!(
                "parameter {name} given more than once"
            )));
        }
        Ok(first)
    }

    fn required(&self, name: &str) -> Result<&str, OAuthError> {
        self.single(name)?
            .filter(|v| !v.is_empty())
            .ok_or_else(|| OAuthError::invalid_request(format!("parameter {name} is required")))
    }

    fn scopes(&self) -> impl Iterator<Item = &str> {
        self.pairs
            .iter()
            .filter(|(k, _)| k == "scope")
            .map(|(_, v)| v.as_str())
    }
}

/// `POST <realm>`.
pub(super) async fn issue(State(auth): State<Arc<Builtin>>, req: Request) -> Response {
    match grant(&auth, req).await {
        Ok(resp) => resp,
        Err(Refusal::OAuth(e)) => e.into_response(),
        Err(Refusal::Api(e)) => e.into_response(),
    }
}

enum Refusal {
    OAuth(OAuthError),
    Api(ApiError),
}

impl From<OAuthError> for Refusal {
    fn from(e: OAuthError) -> Self {
        Self::OAuth(e)
    }
}

impl From<ApiError> for Refusal {
    fn from(e: ApiError) -> Self {
        Self::Api(e)
    }
}

async fn grant(auth: &Builtin, req: Request) -> Result<Response, Refusal> {
    let Some((settings, signing)) = auth.issuing() else {
        return Err(ApiError::not_found().into());
    };
    let form = Form::read(req).await?;
    let grant_type = form.required("grant_type")?;
    let service = form.required("service")?;
    if service != settings.service {
        return Err(OAuthError::invalid_request(format!(
            "unknown service: this endpoint issues tokens for {:?}",
            settings.service
        ))
        .into());
    }
    let client_id = form.single("client_id")?.unwrap_or("");
    let (user, refresh_token): (Arc<str>, Option<String>) = match grant_type {
        "password" => {
            let user = form.required("username")?;
            let password = form.single("password")?.unwrap_or("");
            let user = auth
                .check_password(user, password)
                .await
                .map_err(|f| OAuthError::invalid_grant(f.reason))?;
            let offline = form.single("access_type")? == Some("offline");
            let refresh = if offline {
                sign_refresh(auth, settings, signing, &user)?
            } else {
                None
            };
            (user, refresh)
        }
        "refresh_token" if settings.refresh_lifetime_secs > 0 => {
            let token = form.required("refresh_token")?;
            let verified = refresh::verify(signing, refresh_scope(settings), token)
                .map_err(OAuthError::invalid_grant)?;
            if auth.credential_tag(&verified.user) != Some(verified.cred) {
                return Err(OAuthError::invalid_grant(
                    "refresh token revoked: its user's password changed or the user was removed",
                )
                .into());
            }
            (Arc::from(verified.user), Some(token.to_owned()))
        }
        other => {
            let supported = if settings.refresh_lifetime_secs > 0 {
                "password, refresh_token"
            } else {
                "password"
            };
            return Err(OAuthError::new(
                "unsupported_grant_type",
                format!("grant_type {other:?} is not supported here ({supported})"),
            )
            .into());
        }
    };
    let access = granted_access(auth, Some(&user), form.scopes())
        .map_err(|TooManyScopes| OAuthError::new("invalid_scope", TooManyScopes::detail()))?;
    let scope = super::issuer::scope_text(&access);
    let (token, issued) = sign_access(settings, signing, Some(&user), access)?;
    tracing::debug!(user = %user, client_id, grant_type, "token issued");
    Ok(token_answer(&OAuthResponse {
        access_token: &token,
        token_type: "Bearer",
        scope,
        expires_in: settings.lifetime_secs,
        issued_at: rfc3339(issued),
        refresh_token: refresh_token.as_deref(),
    }))
}
