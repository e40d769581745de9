//! Bearer tokens per the Docker registry token specification, over TLS: keys from a JWKS
//! file (ES256, EdDSA) and a PEM certificate bundle (RS256, libtrust key ids), or the
//! certificate chain a token carries (`x5c`), the `access` claim deciding, and every
//! rejected token with its exact status, code and challenge;
//! then the built-in token endpoint backed by the htpasswd file and the rules.

mod common;

use common::auth::{self, IDENTITY_HEADER, Setup, Signer, challenge, signing_key};
use common::{assert_error, payload, sha256};
use jsonwebtoken::Algorithm;
use marina_distribution::registry::auth::config::{AuthConfig, TokenConfig};
use marina_distribution::registry::auth::issuer::MAX_SCOPES;
use marina_distribution::registry::auth::keys::libtrust_key_id;
use reqwest::StatusCode;
use serde_json::json;

const SERVICE: &str = "marina.test";
const ISSUER: &str = "auth.test";

fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

fn claims(access: serde_json::Value) -> serde_json::Value {
    let t = now();
    json!({"iss": ISSUER, "sub": "carol", "aud": SERVICE, "exp": t + 300, "nbf": t - 5,
           "iat": t - 5, "jti": "j1", "access": access})
}

fn repo_access(name: &str, actions: &[&str]) -> serde_json::Value {
    json!([{"type": "repository", "name": name, "actions": actions}])
}

struct Keys {
    es: Signer,
    ed: Signer,
    rs: Signer,
    es_public_pem: String,
}

async fn token_server() -> (auth::AuthServer, Keys) {
    let (es, es_jwk, es_cert, _) = signing_key(Algorithm::ES256, "es-key");
    let (ed, ed_jwk, _, _) = signing_key(Algorithm::EdDSA, "ed-key");
    let (mut rs, _, rs_cert, _) = signing_key(Algorithm::RS256, "unused");
    // Keys of the certificate bundle are named by their libtrust fingerprint.
    rs.kid = libtrust_key_id(&auth::certificate_spki(&rs_cert));
    let es_public_pem = {
        use base64::Engine as _;
        let spki = auth::certificate_spki(&es_cert);
        format!(
            "-----BEGIN PUBLIC KEY-----\n{}\n-----END PUBLIC KEY-----\n",
            base64::engine::general_purpose::STANDARD.encode(spki)
        )
    };
    let s = auth::start(Setup::default(), |port, dir| {
        let jwks = dir.join("jwks.json");
        std::fs::write(&jwks, json!({"keys": [es_jwk, ed_jwk]}).to_string()).unwrap();
        let certs = dir.join("token-certs.pem");
        std::fs::write(&certs, &rs_cert).unwrap();
        external_tokens(port, Some(jwks), Some(certs))
    })
    .await;
    (
        s,
        Keys {
            es,
            ed,
            rs,
            es_public_pem,
        },
    )
}

/// Tokens of an external authorization server, checked against a JWKS file and/or a
/// certificate bundle.
fn external_tokens(
    port: u16,
    jwks: Option<std::path::PathBuf>,
    certificates: Option<std::path::PathBuf>,
) -> AuthConfig {
    AuthConfig {
        token: Some(TokenConfig {
            realm: auth::AuthServer::realm(port),
            service: SERVICE.into(),
            issuer: ISSUER.into(),
            jwks,
            certificates,
            signing_key: None,
            lifetime: None,
            refresh_lifetime: None,
        }),
        ..AuthConfig::default()
    }
}

/// `token` is refused on a pull of `repo` as an invalid token: 401 `UNAUTHORIZED` with the
/// challenge's `error="invalid_token"`.
async fn assert_invalid_token(s: &auth::AuthServer, repo: &str, token: &str, what: &str) {
    let resp = s.bearer(token).list_tags(repo, None, None).await;
    let scope = format!("repository:{repo}:pull");
    assert_eq!(
        challenge(&resp),
        bearer_challenge(s, Some(&scope), Some("invalid_token")),
        "{what}"
    );
    let status = resp.status().as_u16();
    let text = resp.text().await.unwrap();
    assert_eq!(status, 401, "{what}: {text}");
    let v: serde_json::Value = serde_json::from_str(&text).unwrap();
    assert_eq!(v["errors"][0]["code"], "UNAUTHORIZED", "{what}");
    // The reason is the registry's, not a parser's (no serde message with its position).
    assert!(
        !text.contains("JSON error") && !text.contains("column"),
        "{what}: {text}"
    );
    let detail = v["errors"][0]["detail"].as_str().unwrap_or("");
    assert!(
        !detail.contains('{'),
        "a library's dump in {what}: {detail}"
    );
}

/// `token` passes authentication and authorization for a pull of `repo` (which does not
/// exist: 404 `NAME_UNKNOWN`).
async fn assert_accepted(s: &auth::AuthServer, repo: &str, token: &str, what: &str) {
    let resp = s.bearer(token).list_tags(repo, None, None).await;
    assert_eq!(resp.status(), StatusCode::NOT_FOUND, "{what}");
    assert_error(resp, 404, "NAME_UNKNOWN").await;
}

fn bearer_challenge(s: &auth::AuthServer, scope: Option<&str>, error: Option<&str>) -> String {
    let mut c = format!(
        "Bearer realm=\"{}\",service=\"{SERVICE}\"",
        auth::AuthServer::realm(s.port)
    );
    if let Some(scope) = scope {
        c.push_str(&format!(",scope=\"{scope}\""));
    }
    if let Some(error) = error {
        c.push_str(&format!(",error=\"{error}\""));
    }
    c
}

#[tokio::test]
async fn tokens_from_jwks_and_certificates_grant_their_access() {
    let (s, keys) = token_server().await;
    // No token: 401 with the Bearer challenge (no scope for the version check).
    let resp = s.get("/v2/").await;
    assert_eq!(challenge(&resp), bearer_challenge(&s, None, None));
    assert_error(resp, 401, "UNAUTHORIZED").await;
    // Basic credentials count as none: the client is sent to the token endpoint.
    let resp = s
        .basic("carol", "pw")
        .list_tags("tok/app", None, None)
        .await;
    assert_eq!(
        challenge(&resp),
        bearer_challenge(&s, Some("repository:tok/app:pull"), None)
    );
    assert_error(resp, 401, "UNAUTHORIZED").await;

    let data = payload(1234, 1);
    for (signer, repo) in [
        (&keys.es, "tok/es"),
        (&keys.ed, "tok/ed"),
        (&keys.rs, "tok/rs"),
    ] {
        let token = signer.sign(&claims(repo_access(repo, &["pull", "push"])));
        let client = s.bearer(&token);
        let resp = client.post_blob(repo, &sha256(&data), &data).await;
        assert_eq!(resp.status(), StatusCode::CREATED, "{:?}", signer.alg);
        assert_eq!(common::header(&resp, IDENTITY_HEADER), "carol");
        let resp = client.get_blob(repo, &sha256(&data)).await;
        assert_eq!(resp.bytes().await.unwrap(), data);
        // Not delete: 401 insufficient_scope naming the scope, so the client asks for it.
        let resp = client.delete_blob(repo, &sha256(&data)).await;
        assert_eq!(
            challenge(&resp),
            bearer_challenge(
                &s,
                Some(&format!("repository:{repo}:delete")),
                Some("insufficient_scope")
            )
        );
        assert_error(resp, 401, "UNAUTHORIZED").await;
        // The version check accepts any valid token.
        let resp = client.get("/v2/").await;
        assert_eq!(resp.status(), StatusCode::OK);
    }
    // A token for another repository: insufficient scope for this one.
    let token = keys
        .es
        .sign(&claims(repo_access("tok/other", &["pull", "push"])));
    let resp = s.bearer(&token).post_upload("tok/es").await;
    assert_eq!(
        challenge(&resp),
        bearer_challenge(
            &s,
            Some("repository:tok/es:pull,push"),
            Some("insufficient_scope")
        )
    );
    assert_error(resp, 401, "UNAUTHORIZED").await;
    // A mount names the source's pull scope too; without it the mount is a plain session.
    let (digest, from) = (sha256(&data), Some("tok/ed"));
    let resp = s.mount_blob("tok/es", &digest, from).await;
    assert_eq!(
        challenge(&resp),
        bearer_challenge(
            &s,
            Some("repository:tok/es:pull,push repository:tok/ed:pull"),
            None
        )
    );
    assert_error(resp, 401, "UNAUTHORIZED").await;
    let push_only = keys.es.sign(&claims(repo_access("tok/es", &["push"])));
    let resp = s
        .bearer(&push_only)
        .mount_blob("tok/es", &digest, from)
        .await;
    assert_eq!(resp.status(), StatusCode::ACCEPTED);
    let both = keys.es.sign(&claims(json!([
        {"type": "repository", "name": "tok/es", "actions": ["push"]},
        {"type": "repository", "name": "tok/ed", "actions": ["pull"]}
    ])));
    let resp = s.bearer(&both).mount_blob("tok/es", &digest, from).await;
    assert_eq!(resp.status(), StatusCode::CREATED);
}

#[tokio::test]
async fn rejected_tokens() {
    let (s, keys) = token_server().await;
    let access = repo_access("tok/app", &["pull"]);
    let t = now();
    let with = |patch: serde_json::Value| {
        let mut c = claims(access.clone());
        for (k, v) in patch.as_object().unwrap() {
            c[k] = v.clone();
        }
        c
    };
    let good = keys.es.sign(&claims(access.clone()));
    let b64 = |v: &serde_json::Value| {
        use base64::Engine as _;
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(v.to_string())
    };
    let payload_part = good.split('.').nth(1).unwrap().to_owned();
    let mut tampered = good.clone();
    let last = tampered.pop().unwrap();
    tampered.push(if last == 'A' { 'B' } else { 'A' });
    let other_claims = b64(&with(json!({"sub": "mallory"})));
    let swapped_payload = good.replacen(&payload_part, &other_claims, 1);
    let alg_none = format!(
        "{}.{}.",
        b64(&json!({"alg": "none", "typ": "JWT", "kid": "es-key"})),
        payload_part
    );
    // HMAC with the public key as the secret, naming the EC key: the confusion attack.
    let hmac_confusion = {
        let mut header = jsonwebtoken::Header::new(Algorithm::HS256);
        header.kid = Some("es-key".into());
        jsonwebtoken::encode(
            &header,
            &claims(access.clone()),
            &jsonwebtoken::EncodingKey::from_secret(keys.es_public_pem.as_bytes()),
        )
        .unwrap()
    };
    let unknown_kid = {
        let mut other = signing_key(Algorithm::ES256, "stranger").0;
        other.kid = "stranger".into();
        other.sign(&claims(access.clone()))
    };
    let no_kid = {
        let (signer, _, _, pem) = signing_key(Algorithm::ES256, "x");
        let _ = signer;
        jsonwebtoken::encode(
            &jsonwebtoken::Header::new(Algorithm::ES256),
            &claims(access.clone()),
            &jsonwebtoken::EncodingKey::from_ec_pem(pem.as_bytes()).unwrap(),
        )
        .unwrap()
    };
    let cases: Vec<(&str, String)> = vec![
        ("expired", keys.es.sign(&with(json!({"exp": t - 120})))),
        (
            "not yet valid",
            keys.es.sign(&with(json!({"nbf": t + 600}))),
        ),
        (
            "wrong audience",
            keys.es.sign(&with(json!({"aud": "other.service"}))),
        ),
        (
            "wrong issuer",
            keys.es.sign(&with(json!({"iss": "evil.test"}))),
        ),
        (
            "no exp",
            keys.es.sign(&{
                let mut c = claims(access.clone());
                c.as_object_mut().unwrap().remove("exp");
                c
            }),
        ),
        ("tampered signature", tampered),
        ("tampered claims", swapped_payload),
        ("alg none", alg_none),
        ("HMAC with the public key", hmac_confusion),
        ("unknown key id", unknown_kid),
        ("no key id and no certificate chain", no_kid),
        // An EdDSA token claiming the EC key's id.
        ("key of another type", {
            let mut ed = signing_key(Algorithm::EdDSA, "es-key").0;
            ed.kid = "es-key".into();
            ed.sign(&claims(access.clone()))
        }),
        ("garbage", "not-a-jwt".to_owned()),
    ];
    for (what, token) in cases {
        assert_invalid_token(&s, "tok/app", &token, what).await;
    }
    // Within the clock skew: accepted.
    let skewed = keys.es.sign(&with(json!({"exp": t - 10, "nbf": t + 10})));
    assert_accepted(&s, "tok/app", &skewed, "within the skew").await;
    // NumericDates with fractions (RFC 7519 §2): read as such, in both directions.
    let t = t as f64;
    let fractional = with(json!({"exp": t + 300.25, "nbf": t - 5.5, "iat": t - 5.5}));
    assert_accepted(
        &s,
        "tok/app",
        &keys.es.sign(&fractional),
        "fractional dates",
    )
    .await;
    let expired = keys.es.sign(&with(json!({"exp": t - 120.5})));
    assert_invalid_token(&s, "tok/app", &expired, "expired, fractional").await;
    let early = keys.es.sign(&with(json!({"nbf": t + 600.5})));
    assert_invalid_token(&s, "tok/app", &early, "not yet valid, fractional").await;
    // A malformed Authorization header is no token at all.
    let resp = s
        .authorized("Bearer")
        .list_tags("tok/app", None, None)
        .await;
    assert_eq!(
        challenge(&resp),
        bearer_challenge(&s, Some("repository:tok/app:pull"), None)
    );
    assert_error(resp, 401, "UNAUTHORIZED").await;
}

/// Tokens that carry their signer's certificate chain (`x5c`) and name no key, as
/// Distribution accepts them: trusted when the chain leads to a certificate of the bundle.
#[tokio::test]
async fn tokens_carrying_a_certificate_chain() {
    let ca = auth::TokenCa::new();
    let s = auth::start(Setup::default(), |port, dir| {
        let certs = dir.join("token-certs.pem");
        std::fs::write(&certs, &ca.root_pem).unwrap();
        external_tokens(port, None, Some(certs))
    })
    .await;
    let repo = "tok/chain";
    let access = claims(repo_access(repo, &["pull"]));
    let by_root = ca.signer(false, false);
    let via_intermediate = ca.signer(true, false);
    let unknown_kid_with_chain = {
        let mut header = jsonwebtoken::Header::new(Algorithm::ES256);
        header.kid = Some("not-a-known-key".into());
        header.x5c = Some(by_root.chain.clone());
        jsonwebtoken::encode(&header, &access, &by_root.key).unwrap()
    };
    for (what, token) in [
        ("leaf issued by the root", by_root.sign(&access)),
        (
            "leaf issued by an intermediate",
            via_intermediate.sign(&access),
        ),
        // A CA certificate of the bundle signing itself: trusted as the bundle's key is.
        (
            "the bundle's own certificate",
            ca.root_signer().sign(&access),
        ),
        (
            "an unknown kid beside a trusted chain",
            unknown_kid_with_chain,
        ),
    ] {
        assert_accepted(&s, repo, &token, what).await;
    }

    let other_ca = auth::TokenCa::new();
    let (self_signed, _, self_signed_pem, _) = signing_key(Algorithm::ES256, "x");
    let chain_of = |key: &jsonwebtoken::EncodingKey, chain: Vec<String>| auth::ChainSigner {
        key: key.clone(),
        chain,
    };
    let self_signed_der = {
        use base64::Engine as _;
        use rustls::pki_types::CertificateDer;
        use rustls::pki_types::pem::PemObject;
        let der = CertificateDer::from_pem_slice(self_signed_pem.as_bytes()).unwrap();
        base64::engine::general_purpose::STANDARD.encode(der)
    };
    let cases = [
        (
            "leaf without its intermediate",
            chain_of(&via_intermediate.key, via_intermediate.chain[..1].to_vec()),
        ),
        ("chain of another CA", other_ca.signer(true, false)),
        ("another CA's own certificate", other_ca.root_signer()),
        ("expired leaf", ca.signer(false, true)),
        (
            "a trusted chain, signed with another key",
            chain_of(&other_ca.signer(false, false).key, by_root.chain.clone()),
        ),
        (
            "a self-signed certificate outside the bundle",
            chain_of(&self_signed.key, vec![self_signed_der]),
        ),
        ("an empty chain", chain_of(&by_root.key, Vec::new())),
        (
            "a chain that is not base64",
            chain_of(&by_root.key, vec!["%%%".into()]),
        ),
        (
            "a chain that is not a certificate",
            chain_of(&by_root.key, vec!["AAAA".into()]),
        ),
        (
            "a chain too long",
            chain_of(&by_root.key, vec![by_root.chain[0].clone(); 9]),
        ),
    ];
    for (what, signer) in cases {
        assert_invalid_token(&s, repo, &signer.sign(&access), what).await;
    }
}

async fn issuing_server(alg: Algorithm) -> auth::AuthServer {
    auth::issuing_server(alg, SERVICE, ISSUER, |t| t.lifetime = Some(600)).await
}

async fn fetch_token(s: &auth::AuthServer, creds: Option<(&str, &str)>, scope: &str) -> String {
    let v = s.token_answer(SERVICE, creds, scope).await;
    assert_eq!(v["expires_in"], 600);
    assert_eq!(v["token"], v["access_token"]);
    assert!(v["issued_at"].as_str().unwrap().ends_with('Z'));
    v["token"].as_str().unwrap().to_owned()
}

#[tokio::test]
async fn built_in_token_endpoint() {
    for alg in [Algorithm::ES256, Algorithm::EdDSA, Algorithm::RS256] {
        let s = issuing_server(alg).await;
        let data = payload(777, 9);
        let digest = sha256(&data);
        let push =
            async |token: String| s.bearer(&token).post_blob("team/app", &digest, &data).await;
        let alice = fetch_token(
            &s,
            Some(("alice", "alice-pw")),
            "repository:team/app:pull,push",
        )
        .await;
        assert_eq!(push(alice).await.status(), StatusCode::CREATED, "{alg:?}");
        // bob asked for push and got only pull: not an error at the endpoint, 401
        // insufficient_scope at the registry.
        let bob = fetch_token(&s, Some(("bob", "bob-pw")), "repository:team/app:pull,push").await;
        let resp = push(bob.clone()).await;
        assert!(challenge(&resp).ends_with(",error=\"insufficient_scope\""));
        assert_error(resp, 401, "UNAUTHORIZED").await;
        let resp = s.bearer(&bob).head_blob("team/app", &digest).await;
        assert_eq!(resp.status(), StatusCode::OK);
        // Scopes separated by `+` (a form-encoded space, as Python's and Go's encoders write
        // it) are read as two.
        let plus = fetch_token(
            &s,
            Some(("alice", "alice-pw")),
            "repository:team/other:pull+repository:team/app:pull",
        )
        .await;
        let resp = s.bearer(&plus).head_blob("team/app", &digest).await;
        assert_eq!(resp.status(), StatusCode::OK, "{alg:?}");
        // Anonymous tokens grant nothing here.
        let anon = fetch_token(&s, None, "repository:team/app:pull").await;
        let resp = s.bearer(&anon).list_tags("team/app", None, None).await;
        assert_error(resp, 401, "UNAUTHORIZED").await;
        // Wrong password at the endpoint: 401 with a Basic challenge.
        let resp = s
            .basic("alice", "wrong")
            .get(&format!(
                "/token?service={SERVICE}&scope=repository:team/app:pull"
            ))
            .await;
        assert_eq!(challenge(&resp), "Basic realm=\"marina-registry\"");
        assert_eq!(resp.status(), StatusCode::UNAUTHORIZED);
        assert!(resp.text().await.unwrap().contains("\"UNAUTHORIZED\""));
        // Another service: 400.
        let resp = s
            .basic("alice", "alice-pw")
            .get("/token?service=elsewhere&scope=repository:team/app:pull")
            .await;
        assert_eq!(resp.status(), StatusCode::BAD_REQUEST);
        // Another method at the endpoint: 405 with Allow and the error envelope.
        let resp = s
            .basic("alice", "alice-pw")
            .request(reqwest::Method::PUT, "/token")
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), StatusCode::METHOD_NOT_ALLOWED);
        assert_eq!(common::header(&resp, "allow"), "GET, HEAD, POST");
        assert!(resp.text().await.unwrap().contains("\"UNSUPPORTED\""));
        // A token for hundreds of scopes (kilobytes, cached until it expires): 400; at the
        // bound it is issued.
        let scopes = |n: usize| -> String {
            (0..n)
                .map(|i| format!("scope=repository:team/a{i}:pull"))
                .collect::<Vec<_>>()
                .join("&")
        };
        let many = |n: usize| format!("/token?service={SERVICE}&{}", scopes(n));
        let resp = s
            .basic("alice", "alice-pw")
            .get(&many(MAX_SCOPES + 1))
            .await;
        assert_eq!(resp.status(), StatusCode::BAD_REQUEST);
        assert!(resp.text().await.unwrap().contains("at most"));
        let resp = s.basic("alice", "alice-pw").get(&many(MAX_SCOPES)).await;
        assert_eq!(resp.status(), StatusCode::OK);
    }
}
