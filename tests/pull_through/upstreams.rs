//! The upstream registries of the pull-through cache tests: a real one (the registry served
//! over TLS with access control) behind a gate that can be closed, and test servers for the
//! faults a real one does not produce on demand (wrong bytes, a stall).

use crate::common::Registry;
use crate::common::auth::{self, Setup, rule};
use crate::common::manifests::Image;
use crate::common::outage_proxy::OutageProxy;
use marina_distribution::registry::auth::config::AuthConfig;

/// The service of the upstream's token endpoint.
const SERVICE: &str = "upstream.test";

/// An upstream registry, reached by the cache through a gate that can be closed (its
/// port then refuses connections and the cache's open connections are cut: the upstream
/// is gone for the cache, whatever its connection pool holds).
pub(crate) struct Upstream {
    server: auth::AuthServer,
    gate: OutageProxy,
}

impl std::ops::Deref for Upstream {
    type Target = auth::AuthServer;

    fn deref(&self) -> &auth::AuthServer {
        &self.server
    }
}

impl Upstream {
    /// The URL the cache is given (the certificate names `localhost`).
    pub(crate) fn remote(&self) -> String {
        format!("https://localhost:{}", self.gate.port)
    }

    /// Closes the gate.
    pub(crate) async fn go_away(&mut self) {
        self.gate.take_down().await;
    }
}

/// An upstream over TLS: alice pushes `team/**`, the cache's user `mirror` pulls it;
/// alice pushes `public/**` too, which anyone may pull without credentials; with
/// `tokens` the upstream issues bearer tokens (its API then takes no Basic).
pub(crate) async fn upstream(tokens: bool) -> Upstream {
    let server = upstream_server(tokens).await;
    let mut gate = OutageProxy::closed(&format!("127.0.0.1:{}", server.port)).await;
    gate.up().await;
    Upstream { server, gate }
}

async fn upstream_server(tokens: bool) -> auth::AuthServer {
    let (_, _, _, key_pem) = auth::signing_key(jsonwebtoken::Algorithm::ES256, "k");
    auth::start(Setup::default(), |port, dir| AuthConfig {
        htpasswd: Some(auth::htpasswd(
            dir,
            &[("alice", "alice-pw"), ("mirror", "mirror-pw")],
        )),
        token: tokens.then(|| auth::built_in_tokens(port, dir, &key_pem, SERVICE, SERVICE, None)),
        access: vec![
            rule("team/**", &["alice"], &["pull", "push"]),
            rule("team/**", &["mirror"], &["pull"]),
            rule("public/**", &["alice"], &["pull", "push"]),
            rule("public/**", &["anonymous"], &["pull"]),
        ],
    })
    .await
}

/// alice's client of `up` for pushing to `repo`.
pub(crate) async fn pusher(up: &Upstream, tokens: bool, repo: &str) -> Registry {
    if tokens {
        let scope = format!("repository:{repo}:pull,push");
        up.bearer(&up.token(SERVICE, Some(("alice", "alice-pw")), &scope).await)
    } else {
        up.basic("alice", "alice-pw")
    }
}

/// An upstream (see [`upstream`]) to which alice pushed one image as `repo:tag`.
pub(crate) async fn upstream_with_image(
    tokens: bool,
    repo: &str,
    tag: &str,
    seed: u8,
) -> (Upstream, Image) {
    let up = upstream(tokens).await;
    let image = pusher(&up, tokens, repo)
        .await
        .push_image(repo, tag, seed)
        .await;
    (up, image)
}

/// `app` served on 127.0.0.1, reached through a gate that can be closed.
async fn serve_behind_a_gate(app: axum::Router) -> (OutageProxy, tokio::task::JoinHandle<()>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let task = tokio::spawn(async move {
        axum::serve(listener, app).await.unwrap();
    });
    let mut gate = OutageProxy::closed(&addr.to_string()).await;
    gate.up().await;
    (gate, task)
}

/// An upstream (a fault the real one does not produce on demand: a test server) that
/// answers every manifest and blob with bytes that are not what was asked for.
pub(crate) async fn lying_upstream() -> (OutageProxy, tokio::task::JoinHandle<()>) {
    use axum::response::IntoResponse;
    let app = axum::Router::new().fallback(|uri: axum::http::Uri| async move {
        let media = if uri.path().contains("/manifests/") {
            crate::common::OCI_MANIFEST
        } else {
            "application/octet-stream"
        };
        let manifest = crate::common::image_manifest(&crate::common::sha256(b"c"), 1, &[], None);
        (
            [
                ("content-type", media),
                // A tag's digest as the upstream names it: not the bytes'.
                (
                    "docker-content-digest",
                    "sha256:0000000000000000000000000000000000000000000000000000000000000000",
                ),
            ],
            manifest,
        )
            .into_response()
    });
    serve_behind_a_gate(app).await
}

/// An upstream (a test server: a stall on demand) that answers every request with the
/// first half of `blob`, then the rest once `release` gives it a permit.
pub(crate) async fn stalling_upstream(
    blob: Vec<u8>,
    release: std::sync::Arc<tokio::sync::Semaphore>,
) -> (OutageProxy, tokio::task::JoinHandle<()>) {
    let app = axum::Router::new().fallback(move || {
        let (blob, release) = (blob.clone(), release.clone());
        async move {
            let half = blob.len() / 2;
            let first = bytes::Bytes::copy_from_slice(&blob[..half]);
            let rest = bytes::Bytes::copy_from_slice(&blob[half..]);
            let body = futures::StreamExt::chain(
                futures::stream::once(async move { Ok::<_, std::io::Error>(first) }),
                futures::stream::once(async move {
                    let _released = release.acquire().await;
                    Ok(rest)
                }),
            );
            axum::response::Response::builder()
                .header("content-length", blob.len())
                .header("content-type", "application/octet-stream")
                .body(axum::body::Body::from_stream(body))
                .unwrap()
        }
    });
    serve_behind_a_gate(app).await
}

/// The token side of [`token_upstream`]: what its realm issued and what it accepts.
#[derive(Default)]
pub(crate) struct Tokens {
    /// Tokens issued so far.
    pub(crate) issued: std::sync::atomic::AtomicUsize,
    /// The `expires_in` of the tokens it issues, in seconds.
    pub(crate) lifetime: std::sync::atomic::AtomicU64,
    /// The one token accepted: the last issued, until revoked.
    accepted: std::sync::Mutex<Option<String>>,
}

impl Tokens {
    /// Refuses the token accepted so far (as a registry does when it expired early or
    /// its key rotated).
    pub(crate) fn revoke(&self) {
        *self.accepted.lock().unwrap() = None;
    }
}

/// An upstream (a test server: tokens that expire or are revoked on demand) whose realm
/// issues bearer tokens announced as living `tokens.lifetime` seconds, and whose API
/// answers every `HEAD` of a blob with `blob`'s size to a bearer of the token last issued
/// and not revoked, else with a `401` challenge to that realm.
pub(crate) async fn token_upstream(
    blob_size: usize,
    tokens: std::sync::Arc<Tokens>,
) -> (OutageProxy, tokio::task::JoinHandle<()>) {
    use axum::http::{HeaderMap, StatusCode};
    use axum::response::IntoResponse;
    use std::sync::atomic::Ordering;
    let issuer = tokens.clone();
    let app = axum::Router::new()
        .route(
            "/token",
            axum::routing::get(move || {
                let tokens = issuer.clone();
                async move {
                    let n = tokens.issued.fetch_add(1, Ordering::SeqCst) + 1;
                    let token = format!("token-{n}");
                    *tokens.accepted.lock().unwrap() = Some(token.clone());
                    let lifetime = tokens.lifetime.load(Ordering::SeqCst);
                    axum::Json(serde_json::json!({"token": token, "expires_in": lifetime}))
                }
            }),
        )
        .fallback(move |headers: HeaderMap| {
            let tokens = tokens.clone();
            async move {
                let given = headers
                    .get("authorization")
                    .and_then(|v| v.to_str().ok())
                    .and_then(|v| v.strip_prefix("Bearer "));
                let accepted = tokens.accepted.lock().unwrap().clone();
                if given.is_some() && given == accepted.as_deref() {
                    return ([("content-length", blob_size.to_string())], "").into_response();
                }
                let host = headers.get("host").and_then(|v| v.to_str().ok()).unwrap_or("");
                let challenge = format!(
                    r#"Bearer realm="http://{host}/token",service="up",scope="repository:tok/app:pull""#
                );
                (StatusCode::UNAUTHORIZED, [("www-authenticate", challenge)]).into_response()
            }
        });
    serve_behind_a_gate(app).await
}
