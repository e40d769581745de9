//! `GET /v2/_catalog` under access control, over TLS: a caller sees only the repositories it
//! may pull (htpasswd users and rules), pages still fill up to `n` when the storage holds
//! repositories it may not see between them, and an anonymous caller is challenged for the
//! catalog scope (`registry:catalog:*`, Docker registry token specification "Token Scope
//! Documentation").

mod common;

use common::auth::{self, Setup, challenge, rule, signing_key};
use common::{Registry, assert_error, payload, sha256};
use jsonwebtoken::Algorithm;
use marina_distribution::registry::auth::config::{AuthConfig, TokenConfig};
use reqwest::StatusCode;

/// Repositories alice may pull (`team/**`), in the catalog's order.
const VISIBLE: [&str; 5] = ["team/a", "team/b", "team/c/nested", "team/d", "team/e"];
/// Repositories she may not, sorting before hers, right before and right after them
/// (`team-x/` < `team/` < `teamz/`: names are ordered followed by `/`) and at the end.
const HIDDEN: [&str; 4] = ["alpha/x", "team-x/y", "teamz/1", "zulu/z"];

/// admin pushes everywhere; alice pulls `team/**` and nothing else.
fn access(dir: &std::path::Path, token: Option<TokenConfig>) -> AuthConfig {
    AuthConfig {
        htpasswd: Some(auth::htpasswd(
            dir,
            &[("alice", "alice-pw"), ("admin", "admin-pw")],
        )),
        token,
        access: vec![
            rule("team/**", &["alice"], &["pull"]),
            rule("**", &["admin"], &["pull", "push"]),
        ],
    }
}

/// Stores one blob in each repository, as `admin` (the client with admin's credentials
/// for it): a repository with a blob link is listed.
async fn fill(admin: impl AsyncFn(&str) -> Registry) {
    let data = payload(64, 3);
    for repo in VISIBLE.iter().chain(&HIDDEN) {
        let resp = admin(repo)
            .await
            .post_blob(repo, &sha256(&data), &data)
            .await;
        assert_eq!(resp.status(), StatusCode::CREATED, "{repo}");
    }
}

/// Follows the catalog's `Link` headers from `first` as `user`; returns the pages.
async fn pages(s: &auth::AuthServer, user: &str, first: &str) -> Vec<Vec<String>> {
    let mut next = Some(first.to_owned());
    let mut pages = Vec::new();
    while let Some(path) = next.take() {
        let resp = s.basic(user, &format!("{user}-pw")).get(&path).await;
        assert_eq!(resp.status(), StatusCode::OK, "{path}");
        if let Some(link) = resp.headers().get("link") {
            let link = link.to_str().unwrap();
            let target = link
                .strip_prefix('<')
                .and_then(|l| l.split_once(">; rel=\"next\""))
                .unwrap_or_else(|| panic!("Link header {link:?}"))
                .0;
            next = Some(target.to_owned());
        }
        let body: serde_json::Value = serde_json::from_slice(&resp.bytes().await.unwrap()).unwrap();
        let names = body["repositories"].as_array().unwrap();
        pages.push(
            names
                .iter()
                .map(|n| n.as_str().unwrap().to_owned())
                .collect(),
        );
        assert!(pages.len() <= 10, "the Link headers do not end");
    }
    pages
}

#[tokio::test]
async fn catalog_lists_only_what_the_caller_may_pull() {
    let s = auth::start(Setup::default(), |_, dir| access(dir, None)).await;
    fill(async |_| s.basic("admin", "admin-pw")).await;

    // One page: alice's repositories, in order, none of the others.
    let all = pages(&s, "alice", "/v2/_catalog").await;
    assert_eq!(all, vec![VISIBLE.to_vec()]);
    // admin sees everything (the filter is the rules', not a fixed prefix).
    let admin = pages(&s, "admin", "/v2/_catalog").await.concat();
    assert_eq!(admin.len(), VISIBLE.len() + HIDDEN.len());

    // Pages of two: each page but the last is full although hidden repositories lie between
    // and after them in the storage; together they are her list, each name once.
    let paged = pages(&s, "alice", "/v2/_catalog?n=2").await;
    let (last, full) = paged.split_last().unwrap();
    assert!(full.iter().all(|p| p.len() == 2), "{paged:?}");
    assert!(last.len() <= 2, "{paged:?}");
    assert_eq!(paged.concat(), VISIBLE.to_vec());
    // Starting after a hidden repository's name works like after any other position.
    let after = pages(&s, "alice", "/v2/_catalog?n=3&last=team-x/y").await;
    assert_eq!(after.concat(), VISIBLE.to_vec());

    // Anonymous: 401 with the Basic challenge, nothing listed.
    let resp = s.list_catalog(None, None).await;
    assert_eq!(challenge(&resp), "Basic realm=\"marina-registry\"");
    assert_error(resp, 401, "UNAUTHORIZED").await;
}

#[tokio::test]
async fn anonymous_catalog_is_challenged_for_the_catalog_scope() {
    const SERVICE: &str = "marina.test";
    const ISSUER: &str = "auth.test";
    let (_, _, _, key_pem) = signing_key(Algorithm::ES256, "issuer");
    // Another authorization server with the same name, trusted through a JWKS.
    let (external, external_jwk, _, _) = signing_key(Algorithm::ES256, "external");
    let s = auth::start(Setup::default(), |port, dir| {
        let mut tokens = auth::built_in_tokens(port, dir, &key_pem, SERVICE, ISSUER, Some(600));
        let jwks = dir.join("jwks.json");
        std::fs::write(
            &jwks,
            serde_json::json!({"keys": [external_jwk]}).to_string(),
        )
        .unwrap();
        tokens.jwks = Some(jwks);
        access(dir, Some(tokens))
    })
    .await;
    let resp = s.list_catalog(None, None).await;
    assert_eq!(
        challenge(&resp),
        format!(
            "Bearer realm=\"{}\",service=\"{SERVICE}\",scope=\"registry:catalog:*\"",
            auth::AuthServer::realm(s.port)
        )
    );
    assert_error(resp, 401, "UNAUTHORIZED").await;

    // Filled with admin's token per repository.
    fill(async |repo| {
        let scope = format!("repository:{repo}:pull,push");
        s.bearer(&s.token(SERVICE, Some(("admin", "admin-pw")), &scope).await)
    })
    .await;
    let listed = async |token: &str| {
        let resp = s.bearer(token).list_catalog(None, None).await;
        assert_eq!(resp.status(), StatusCode::OK);
        let body: serde_json::Value = serde_json::from_slice(&resp.bytes().await.unwrap()).unwrap();
        body["repositories"].clone()
    };
    // A token of the built-in endpoint with the catalog scope alone lists what the rules let
    // its subject pull (what the endpoint would grant her on asking), as Basic does.
    let token = s
        .token(SERVICE, Some(("alice", "alice-pw")), "registry:catalog:*")
        .await;
    assert_eq!(listed(&token).await, serde_json::json!(VISIBLE));
    // Another issuer's token is what it grants: the rules here did not decide it, so it
    // lists the repositories it grants pull on, and with the catalog scope alone nothing.
    let t = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let external_token = |access: serde_json::Value| {
        external.sign(
            &serde_json::json!({"iss": ISSUER, "sub": "alice", "aud": SERVICE,
            "exp": t + 300, "nbf": t - 5, "access": access}),
        )
    };
    let catalog = serde_json::json!({"type": "registry", "name": "catalog", "actions": ["*"]});
    let pull =
        |name: &str| serde_json::json!({"type": "repository", "name": name, "actions": ["pull"]});
    let token = external_token(serde_json::json!([catalog, pull("team/b"), pull("zulu/z")]));
    assert_eq!(
        listed(&token).await,
        serde_json::json!(["team/b", "zulu/z"])
    );
    let token = external_token(serde_json::json!([catalog]));
    assert_eq!(listed(&token).await, serde_json::json!([]));
}
