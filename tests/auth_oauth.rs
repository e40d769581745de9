//! The built-in token endpoint's OAuth2 side (CNCF Distribution's `docs/spec/auth/oauth.md`,
//! RFC 6749) and its refresh tokens: `POST <realm>` with a password or a refresh token,
//! `GET <realm>?offline_token=true`, every refusal with its RFC 6749 error, and refresh
//! tokens revoked by a password change or the user's removal. Over TLS, in memory.

mod common;

use common::auth::{self, challenge};
use common::{assert_error, payload, sha256};
use jsonwebtoken::Algorithm;
use marina_distribution::registry::auth::oauth::MAX_FORM;
use reqwest::StatusCode;
use serde_json::Value;

const SERVICE: &str = "marina.test";

async fn server(refresh_lifetime: Option<u64>) -> auth::AuthServer {
    auth::issuing_server(Algorithm::EdDSA, SERVICE, "marina.test", |t| {
        t.refresh_lifetime = refresh_lifetime;
    })
    .await
}

/// `POST /token` with `form` (already encoded): the status and the JSON answer, after
/// checking that no cache may keep it.
async fn post(s: &auth::AuthServer, form: &str) -> (StatusCode, Value) {
    let resp = s
        .request(reqwest::Method::POST, "/token")
        .header("content-type", "application/x-www-form-urlencoded")
        .body(form.to_owned())
        .send()
        .await
        .unwrap();
    assert_eq!(common::header(&resp, "cache-control"), "no-store", "{form}");
    assert_eq!(common::header(&resp, "pragma"), "no-cache", "{form}");
    let status = resp.status();
    (
        status,
        serde_json::from_slice(&resp.bytes().await.unwrap()).unwrap(),
    )
}

fn password_form(user: &str, password: &str, extra: &str) -> String {
    format!(
        "grant_type=password&username={user}&password={password}&service={SERVICE}\
         &client_id=marina-tests{extra}"
    )
}

fn refresh_form(token: &str, scope: &str) -> String {
    format!(
        "grant_type=refresh_token&refresh_token={token}&service={SERVICE}\
         &client_id=marina-tests&scope={scope}"
    )
}

/// Asserts an RFC 6749 §5.2 refusal.
fn assert_refused((status, body): &(StatusCode, Value), error: &str, what: &str) {
    assert_eq!(*status, StatusCode::BAD_REQUEST, "{what}: {body}");
    assert_eq!(body["error"], error, "{what}: {body}");
    assert!(body["error_description"].is_string(), "{what}: {body}");
    assert!(body.get("access_token").is_none(), "{what}: {body}");
}

/// Pushes a blob to `team/app` with `token`: its status.
async fn push_with(s: &auth::AuthServer, token: &str) -> StatusCode {
    let data = payload(321, 4);
    s.bearer(token)
        .post_blob("team/app", &sha256(&data), &data)
        .await
        .status()
}

#[tokio::test]
async fn password_grant_issues_tokens_for_what_the_rules_allow() {
    let s = server(None).await;
    // A space in the scope list written `+`, as form encoders do.
    let scope = "&scope=repository:team/app:pull,push+repository:elsewhere/x:pull";
    let (status, v) = post(&s, &password_form("alice", "alice-pw", scope)).await;
    assert_eq!(status, StatusCode::OK, "{v}");
    assert_eq!(v["token_type"], "Bearer");
    assert_eq!(
        v["scope"], "repository:team/app:pull,push",
        "granted, not asked"
    );
    assert_eq!(v["expires_in"], 300);
    assert!(v["issued_at"].as_str().unwrap().ends_with('Z'));
    assert!(v.get("refresh_token").is_none(), "online access: {v}");
    let token = v["access_token"].as_str().unwrap();
    assert_eq!(push_with(&s, token).await, StatusCode::CREATED);
    // bob asks for push, gets pull: not an error here, insufficient scope at the registry.
    let (status, v) = post(&s, &password_form("bob", "bob-pw", scope)).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(v["scope"], "repository:team/app:pull");
    assert_eq!(
        push_with(&s, v["access_token"].as_str().unwrap()).await,
        StatusCode::UNAUTHORIZED
    );
    // Without client_id (only for auditing): served all the same.
    let form = format!("grant_type=password&username=bob&password=bob-pw&service={SERVICE}");
    assert_eq!(post(&s, &form).await.0, StatusCode::OK);
    // No scope: a token that grants nothing, which is what such a request is for.
    let (status, v) = post(&s, &password_form("bob", "bob-pw", "")).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(v["scope"], "");
}

#[tokio::test]
async fn refused_token_requests() {
    let s = server(None).await;
    let scope = "&scope=repository:team/app:pull";
    let access = post(&s, &password_form("alice", "alice-pw", scope)).await.1["access_token"]
        .as_str()
        .unwrap()
        .to_owned();
    let cases: Vec<(&str, String, &str)> = vec![
        (
            "wrong password",
            password_form("alice", "bob-pw", scope),
            "invalid_grant",
        ),
        (
            "unknown user",
            password_form("carol", "carol-pw", scope),
            "invalid_grant",
        ),
        (
            "no grant_type",
            format!("username=alice&password=alice-pw&service={SERVICE}"),
            "invalid_request",
        ),
        (
            "no service",
            "grant_type=password&username=alice&password=alice-pw".into(),
            "invalid_request",
        ),
        (
            "another service",
            "grant_type=password&username=alice&password=alice-pw&service=other".into(),
            "invalid_request",
        ),
        (
            "a repeated parameter",
            password_form("alice", "alice-pw", "&username=bob"),
            "invalid_request",
        ),
        (
            "no username",
            format!("grant_type=password&password=x&service={SERVICE}"),
            "invalid_request",
        ),
        (
            "client credentials",
            format!("grant_type=client_credentials&service={SERVICE}"),
            "unsupported_grant_type",
        ),
        (
            "no refresh token",
            format!("grant_type=refresh_token&service={SERVICE}"),
            "invalid_request",
        ),
        (
            "a refresh token that is not one",
            refresh_form("not-a-token", ""),
            "invalid_grant",
        ),
        (
            "an access token as a refresh token",
            refresh_form(&access, ""),
            "invalid_grant",
        ),
        (
            "too many scopes",
            password_form(
                "alice",
                "alice-pw",
                &"&scope=repository:team/a:pull".repeat(33),
            ),
            "invalid_scope",
        ),
        (
            "a body too large",
            password_form("alice", "alice-pw", &format!("&x={}", "y".repeat(MAX_FORM))),
            "invalid_request",
        ),
    ];
    for (what, form, error) in cases {
        assert_refused(&post(&s, &form).await, error, what);
    }
    // A body that is not a form.
    let resp = s
        .request(reqwest::Method::POST, "/token")
        .header("content-type", "application/json")
        .body(r#"{"grant_type":"password"}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::BAD_REQUEST);
    let v: Value = serde_json::from_slice(&resp.bytes().await.unwrap()).unwrap();
    assert_eq!(v["error"], "invalid_request");
}

#[tokio::test]
async fn refresh_tokens_are_exchanged_until_the_password_changes() {
    let s = server(None).await;
    // `docker login`: GET with Basic credentials and offline_token=true.
    let resp = s
        .basic("alice", "alice-pw")
        .get(&format!(
            "/token?service={SERVICE}&client_id=docker&offline_token=true"
        ))
        .await;
    assert_eq!(resp.status(), StatusCode::OK);
    assert_eq!(common::header(&resp, "cache-control"), "no-store");
    let v: Value = serde_json::from_slice(&resp.bytes().await.unwrap()).unwrap();
    let alice_refresh = v["refresh_token"]
        .as_str()
        .expect("a refresh token")
        .to_owned();
    // Without offline_token, or anonymously, there is none.
    let v = s
        .token_answer(SERVICE, Some(("alice", "alice-pw")), "")
        .await;
    assert!(v.get("refresh_token").is_none(), "{v}");
    let resp = s
        .get(&format!("/token?service={SERVICE}&offline_token=true"))
        .await;
    let v: Value = serde_json::from_slice(&resp.bytes().await.unwrap()).unwrap();
    assert!(v.get("refresh_token").is_none(), "{v}");
    // The OAuth2 password grant with access_type=offline: one too.
    let (status, v) = post(&s, &password_form("bob", "bob-pw", "&access_type=offline")).await;
    assert_eq!(status, StatusCode::OK);
    let bob_refresh = v["refresh_token"]
        .as_str()
        .expect("a refresh token")
        .to_owned();

    // Exchanged for a token of any scope the rules allow; the same refresh token comes back.
    let (status, v) = post(
        &s,
        &refresh_form(&alice_refresh, "repository:team/app:pull,push"),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{v}");
    assert_eq!(v["refresh_token"], alice_refresh.as_str());
    assert_eq!(v["scope"], "repository:team/app:pull,push");
    assert_eq!(
        push_with(&s, v["access_token"].as_str().unwrap()).await,
        StatusCode::CREATED
    );
    // A refresh token is no access token at the registry.
    let resp = s
        .bearer(&alice_refresh)
        .list_tags("team/app", None, None)
        .await;
    assert!(
        challenge(&resp).contains("error=\"invalid_token\""),
        "{}",
        challenge(&resp)
    );
    assert_error(resp, 401, "UNAUTHORIZED").await;
    // Nor is it valid at another registry's endpoint (another key), nor tampered with.
    let other = server(None).await;
    assert_refused(
        &post(&other, &refresh_form(&alice_refresh, "")).await,
        "invalid_grant",
        "other key",
    );
    let mut tampered = alice_refresh.clone();
    tampered.pop();
    assert_refused(
        &post(&s, &refresh_form(&tampered, "")).await,
        "invalid_grant",
        "tampered",
    );

    // alice's password changes and bob is removed: both refresh tokens are revoked at the
    // next reload; the new password gets a new one.
    auth::htpasswd(s.pki.dir.path(), &[("alice", "new-pw")]);
    s.authorizer.as_ref().unwrap().reload().unwrap();
    for (who, token) in [("alice", &alice_refresh), ("bob", &bob_refresh)] {
        let refused = post(&s, &refresh_form(token, "repository:team/app:pull")).await;
        assert_refused(&refused, "invalid_grant", who);
        assert!(
            refused.1["error_description"]
                .as_str()
                .unwrap()
                .contains("revoked"),
            "{}",
            refused.1
        );
    }
    let (status, v) = post(
        &s,
        &password_form("alice", "new-pw", "&access_type=offline"),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    let renewed = v["refresh_token"].as_str().unwrap();
    assert_eq!(post(&s, &refresh_form(renewed, "")).await.0, StatusCode::OK);
}

#[tokio::test]
async fn refresh_lifetime_zero_issues_no_refresh_tokens() {
    let s = server(Some(0)).await;
    let (status, v) = post(
        &s,
        &password_form("alice", "alice-pw", "&access_type=offline"),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    assert!(v.get("refresh_token").is_none(), "{v}");
    let resp = s
        .basic("alice", "alice-pw")
        .get(&format!("/token?service={SERVICE}&offline_token=true"))
        .await;
    let v: Value = serde_json::from_slice(&resp.bytes().await.unwrap()).unwrap();
    assert!(v.get("refresh_token").is_none(), "{v}");
    // A refresh token of a registry that issues them (same settings otherwise): refused.
    let issuing = server(None).await;
    let (_, v) = post(
        &issuing,
        &password_form("alice", "alice-pw", "&access_type=offline"),
    )
    .await;
    let token = v["refresh_token"].as_str().unwrap();
    assert_refused(
        &post(&s, &refresh_form(token, "")).await,
        "unsupported_grant_type",
        "disabled",
    );
}
