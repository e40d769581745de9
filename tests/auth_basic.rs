//! HTTP Basic authentication against an htpasswd file, with rules, over TLS with a CA made
//! in the test: the spec workflows with credentials, and every refusal with its exact status,
//! error code and challenge (distribution spec "Error Codes": 401 `UNAUTHORIZED`, 403
//! `DENIED`).

mod common;

use common::auth::{self, IDENTITY_HEADER, Setup, challenge, rule};
use common::{OCI_MANIFEST, Registry, assert_error, image_manifest, payload, sha256};
use marina_distribution::registry::auth::config::AuthConfig;
use reqwest::{Method, StatusCode};

const BASIC_CHALLENGE: &str = "Basic realm=\"marina-registry\"";

/// alice reads and writes `team/**`, bob reads it, admin does everything, anyone (even
/// anonymous) pulls `public/**`; `secret/**` is admin's alone.
async fn server() -> auth::AuthServer {
    auth::start(Setup::default(), |_, dir| AuthConfig {
        htpasswd: Some(auth::htpasswd(
            dir,
            &[
                ("alice", "alice-pw"),
                ("bob", "bob-pw"),
                ("admin", "admin-pw"),
            ],
        )),
        token: None,
        access: vec![
            rule("team/**", &["alice"], &["pull", "push"]),
            rule("team/**", &["bob"], &["pull"]),
            rule("**", &["admin"], &["pull", "push", "delete"]),
            rule("public/**", &["anonymous", "*"], &["pull"]),
        ],
    })
    .await
}

/// The server's client with `user`'s credentials (password `<user>-pw`).
fn user(s: &auth::AuthServer, user: &str) -> Registry {
    s.basic(user, &format!("{user}-pw"))
}

/// Pushes a blob as `user` (POST then PUT); returns the final response.
async fn push_blob(
    s: &auth::AuthServer,
    user_name: &str,
    repo: &str,
    data: &[u8],
) -> reqwest::Response {
    let client = user(s, user_name);
    let resp = client.post_upload(repo).await;
    if resp.status() != StatusCode::ACCEPTED {
        return resp;
    }
    let loc = common::header(&resp, "location");
    client.close_upload(&loc, &sha256(data), data).await
}

#[tokio::test]
async fn api_version_check_challenges_and_verifies() {
    let s = server().await;
    // No credentials: 401 with the Basic challenge (clients' login flow depends on it).
    let resp = s.get("/v2/").await;
    assert_eq!(challenge(&resp), BASIC_CHALLENGE);
    assert_error(resp, 401, "UNAUTHORIZED").await;
    // Wrong password, unknown user, malformed headers: 401, same challenge.
    for auth in [
        "Basic YWxpY2U6d3Jvbmc=",    // alice:wrong
        "Basic bWFsbG9yeTpwdw==",    // mallory:pw
        "Basic !!!not-base64",       // malformed
        "Basic YWxpY2U=",            // no colon
        "Bearer some.jwt.token",     // not accepted here
        "Digest username=\"alice\"", // another scheme
    ] {
        let resp = s.authorized(auth).get("/v2/").await;
        assert_eq!(challenge(&resp), BASIC_CHALLENGE, "{auth}");
        assert_error(resp, 401, "UNAUTHORIZED").await;
    }
    // Right credentials: 200, the identity visible to middleware.
    let resp = user(&s, "bob").get("/v2/").await;
    assert_eq!(resp.status(), StatusCode::OK);
    assert_eq!(common::header(&resp, IDENTITY_HEADER), "bob");
    // POST on /v2/: 405 with the error envelope.
    let resp = user(&s, "bob").send(Method::POST, "/v2/").await;
    assert_error(resp, 405, "UNSUPPORTED").await;
}

#[tokio::test]
async fn spec_workflow_with_credentials() {
    let s = server().await;
    let (alice, bob, admin) = (user(&s, "alice"), user(&s, "bob"), user(&s, "admin"));
    let repo = "team/app";
    let config = br#"{"architecture":"amd64","os":"linux"}"#;
    let layer = payload(5000, 1);
    for data in [&config[..], &layer] {
        let resp = push_blob(&s, "alice", repo, data).await;
        assert_eq!(resp.status(), StatusCode::CREATED, "{resp:?}");
    }
    // A chunked upload with Content-Range in the spec's form.
    let loc = alice.start_upload(repo).await;
    let chunked = payload(300, 2);
    let resp = alice.patch_chunk(&loc, 0, &chunked[..150]).await;
    assert_eq!(resp.status(), StatusCode::ACCEPTED);
    let loc = common::header(&resp, "location");
    let resp = alice
        .close_upload_at(&loc, &sha256(&chunked), 150, &chunked[150..])
        .await;
    assert_eq!(resp.status(), StatusCode::CREATED);

    let manifest = image_manifest(
        &sha256(config),
        config.len(),
        &[(sha256(&layer).as_str(), layer.len())],
        None,
    );
    let resp = alice
        .put_manifest(repo, "v1", OCI_MANIFEST, manifest.as_bytes())
        .await;
    assert_eq!(resp.status(), StatusCode::CREATED);
    assert_eq!(common::header(&resp, IDENTITY_HEADER), "alice");
    // bob pulls it: manifest, blob, tags.
    let resp = bob.get_manifest(repo, "v1").await;
    assert_eq!(resp.status(), StatusCode::OK);
    assert_eq!(resp.bytes().await.unwrap(), manifest.as_bytes());
    let resp = bob.get_blob(repo, &sha256(&layer)).await;
    assert_eq!(resp.bytes().await.unwrap(), layer);
    let resp = bob.list_tags(repo, None, None).await;
    assert_eq!(resp.status(), StatusCode::OK);
    // bob may not push (403 DENIED, no challenge: credentials would not help).
    let resp = push_blob(&s, "bob", repo, b"nope").await;
    assert_eq!(challenge(&resp), "");
    assert_error(resp, 403, "DENIED").await;
    // Nor may alice delete; admin may.
    let digest = sha256(manifest.as_bytes());
    let resp = alice.delete_manifest(repo, &digest).await;
    assert_error(resp, 403, "DENIED").await;
    let resp = admin.delete_manifest(repo, &digest).await;
    assert_eq!(resp.status(), StatusCode::ACCEPTED);
    // Anonymous: 401 with the challenge on team/**, pull allowed on public/**.
    let resp = s.list_tags(repo, None, None).await;
    assert_eq!(challenge(&resp), BASIC_CHALLENGE);
    assert_error(resp, 401, "UNAUTHORIZED").await;
    let resp = s.list_tags("public/base", None, None).await;
    assert_eq!(common::header(&resp, IDENTITY_HEADER), "anonymous");
    assert_error(resp, 404, "NAME_UNKNOWN").await;
    let resp = push_blob(&s, "anonymous-nobody", "public/base", b"x").await;
    assert_error(resp, 401, "UNAUTHORIZED").await;
    // Empty credentials (`Basic Og==`, what skopeo sends without a login) are anonymous:
    // the pull is allowed, a push is challenged.
    let empty = s.basic("", "");
    let resp = empty.list_tags("public/base", None, None).await;
    assert_eq!(common::header(&resp, IDENTITY_HEADER), "anonymous");
    assert_error(resp, 404, "NAME_UNKNOWN").await;
    let resp = empty.list_tags(repo, None, None).await;
    assert_eq!(challenge(&resp), BASIC_CHALLENGE);
    assert_error(resp, 401, "UNAUTHORIZED").await;
    // An empty user with a password is a login, and a wrong one.
    let resp = s.basic("", "pw").list_tags("public/base", None, None).await;
    assert_error(resp, 401, "UNAUTHORIZED").await;
}

#[tokio::test]
async fn mount_without_pull_on_source_falls_back_to_a_session() {
    let s = server().await;
    let secret = payload(1000, 7);
    let resp = push_blob(&s, "admin", "secret/vault", &secret).await;
    assert_eq!(resp.status(), StatusCode::CREATED);
    let digest = sha256(&secret);
    let from = Some("secret/vault");
    // alice may push to team/app but not read secret/vault: a session, exactly as if the
    // blob were unknown, and the blob is not visible in team/app.
    let alice = user(&s, "alice");
    let resp = alice.mount_blob("team/app", &digest, from).await;
    assert_eq!(resp.status(), StatusCode::ACCEPTED);
    assert!(common::header(&resp, "location").starts_with("/v2/team/app/blobs/uploads/"));
    let resp = alice.head_blob("team/app", &digest).await;
    assert_eq!(resp.status(), StatusCode::NOT_FOUND);
    // admin may read both: mounted.
    let resp = user(&s, "admin")
        .mount_blob("team/app", &digest, from)
        .await;
    assert_eq!(resp.status(), StatusCode::CREATED);
    // Anonymous: 401 (pushing needs credentials).
    let resp = s.mount_blob("team/app", &digest, from).await;
    assert_error(resp, 401, "UNAUTHORIZED").await;
}

#[tokio::test]
async fn password_change_invalidates_cached_credentials() {
    let s = server().await;
    let ok = |resp: &reqwest::Response| resp.status() == StatusCode::OK;
    assert!(ok(&user(&s, "alice").get("/v2/").await));
    // Cached now; the file changes (alice's password, bob removed) and is reloaded.
    let path = s.pki.dir.path().join("htpasswd");
    std::fs::write(
        &path,
        format!("alice:{}\n", bcrypt::hash("new-pw", 4).unwrap()),
    )
    .unwrap();
    s.authorizer.as_ref().unwrap().reload().unwrap();
    let resp = user(&s, "alice").get("/v2/").await;
    assert_error(resp, 401, "UNAUTHORIZED").await;
    let resp = user(&s, "bob").get("/v2/").await;
    assert_error(resp, 401, "UNAUTHORIZED").await;
    let renewed = s.basic("alice", "new-pw");
    assert!(ok(&renewed.get("/v2/").await));
    // A broken file keeps the previous users.
    std::fs::write(&path, "alice:$apr1$x$y\n").unwrap();
    let err = s.authorizer.as_ref().unwrap().reload().unwrap_err();
    assert!(err.contains("htpasswd -B"), "{err}");
    assert!(ok(&renewed.get("/v2/").await));
}
