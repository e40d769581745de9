//! Real clients over TLS with a CA made in the test, authenticating the way they do against
//! any registry: skopeo with `--creds` and `--cert-dir`, and the `oci-client` crate, each
//! against HTTP Basic (htpasswd) and against bearer tokens from the built-in token endpoint.
//!
//! skopeo is required: if it is missing the test FAILS, unless `MARINA_SKIP_SKOPEO=1`.

mod common;

use std::path::Path;

use common::auth::{self, Setup, rule};
use common::skopeo;
use common::{OCI_MANIFEST, Registry, sha256};
use marina_distribution::registry::auth::config::AuthConfig;
use oci_client::client::{
    Certificate, CertificateEncoding, ClientConfig, ClientProtocol, Config, ImageLayer,
};
use oci_client::secrets::RegistryAuth;
use oci_client::{Client, Reference};
use reqwest::StatusCode;

/// The service of the built-in token endpoint.
const SERVICE: &str = "marina.test";

/// alice pushes and pulls `team/**`, bob only pulls; with `tokens`, the registry issues
/// bearer tokens itself (ES256) instead of accepting Basic on its API.
async fn server(tokens: bool) -> auth::AuthServer {
    let (_, _, _, key_pem) = auth::signing_key(jsonwebtoken::Algorithm::ES256, "k");
    auth::start(Setup::default(), |port, dir| AuthConfig {
        htpasswd: Some(auth::htpasswd(
            dir,
            &[("alice", "alice-pw"), ("bob", "bob-pw")],
        )),
        token: tokens
            .then(|| auth::built_in_tokens(port, dir, &key_pem, SERVICE, "marina.test", None)),
        access: vec![
            rule("team/**", &["alice"], &["pull", "push"]),
            rule("team/**", &["bob"], &["pull"]),
        ],
    })
    .await
}

fn oci_client(s: &auth::AuthServer) -> Client {
    Client::new(ClientConfig {
        protocol: ClientProtocol::Https,
        extra_root_certificates: vec![Certificate {
            encoding: CertificateEncoding::Pem,
            data: s.pki.ca_pem.clone().into_bytes(),
        }],
        ..Default::default()
    })
}

#[tokio::test]
async fn oci_client_with_basic_and_bearer() {
    for tokens in [false, true] {
        let s = server(tokens).await;
        let client = oci_client(&s);
        let reference: Reference = format!("{}/team/oci:v1", s.host).parse().unwrap();
        let layers = vec![ImageLayer::oci_v1(common::payload(40_000, 1), None)];
        let config = Config::oci_v1(
            br#"{"architecture":"amd64","os":"linux","rootfs":{"type":"layers","diff_ids":[]}}"#
                .to_vec(),
            None,
        );
        let alice = RegistryAuth::Basic("alice".into(), "alice-pw".into());
        client
            .push(&reference, &layers, config.clone(), &alice, None)
            .await
            .unwrap_or_else(|e| panic!("push (tokens: {tokens}): {e}"));
        let bob = RegistryAuth::Basic("bob".into(), "bob-pw".into());
        let pulled = client
            .pull(
                &reference,
                &bob,
                vec![oci_client::manifest::IMAGE_LAYER_MEDIA_TYPE],
            )
            .await
            .unwrap_or_else(|e| panic!("pull (tokens: {tokens}): {e}"));
        assert_eq!(sha256(&pulled.layers[0].data), sha256(&layers[0].data));
        // bob may not push; a wrong password gets nowhere.
        let other: Reference = format!("{}/team/oci:bob", s.host).parse().unwrap();
        let fresh = oci_client(&s);
        assert!(
            fresh
                .push(&other, &layers, config.clone(), &bob, None)
                .await
                .is_err()
        );
        let wrong = RegistryAuth::Basic("alice".into(), "nope".into());
        assert!(
            oci_client(&s)
                .pull(
                    &reference,
                    &wrong,
                    vec![oci_client::manifest::IMAGE_LAYER_MEDIA_TYPE]
                )
                .await
                .is_err()
        );
    }
}

/// Pushes a small image (an empty tar layer) under `team/src:v1` with `client` (its
/// credentials); returns the manifest digest.
async fn seed_image(client: &Registry) -> String {
    let layer = vec![0u8; 1024]; // an empty tar archive
    let config = format!(
        r#"{{"architecture":"amd64","os":"linux","config":{{}},"rootfs":{{"type":"layers","diff_ids":["{}"]}}}}"#,
        sha256(&layer)
    );
    for data in [config.as_bytes(), &layer] {
        let resp = client.post_blob("team/src", &sha256(data), data).await;
        assert_eq!(resp.status(), StatusCode::CREATED);
    }
    let manifest = common::image_manifest(
        &sha256(config.as_bytes()),
        config.len(),
        &[(&sha256(&layer), 1024)],
        None,
    );
    let resp = client
        .put_manifest("team/src", "v1", OCI_MANIFEST, manifest.as_bytes())
        .await;
    assert_eq!(resp.status(), StatusCode::CREATED);
    sha256(manifest.as_bytes())
}

fn cert_dir(s: &auth::AuthServer) -> String {
    let dir = s.pki.dir.path().join("certs.d");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("ca.crt"), &s.pki.ca_pem).unwrap();
    dir.display().to_string()
}

#[tokio::test]
async fn skopeo_with_creds_and_cert_dir() {
    if !skopeo::available() {
        return;
    }
    for tokens in [false, true] {
        let s = server(tokens).await;
        let alice = ("alice", "alice-pw");
        let digest = if tokens {
            let scope = "repository:team/src:pull,push";
            seed_image(&s.bearer(&s.token(SERVICE, Some(alice), scope).await)).await
        } else {
            seed_image(&s.basic(alice.0, alice.1)).await
        };
        let certs = cert_dir(&s);
        let src = format!("docker://{}/team/src:v1", s.host);
        let dst = format!("docker://{}/team/copy:v1", s.host);
        let out = skopeo::run(&[
            "copy".into(),
            "--src-creds=bob:bob-pw".into(),
            format!("--src-cert-dir={certs}"),
            "--dest-creds=alice:alice-pw".into(),
            format!("--dest-cert-dir={certs}"),
            src.clone(),
            dst.clone(),
        ])
        .await;
        assert!(
            out.status.success(),
            "skopeo copy (tokens: {tokens}): {}",
            String::from_utf8_lossy(&out.stderr)
        );
        // skopeo reads both back: the source as pushed, the copy (its layer recompressed).
        for (image, expected) in [(&src, Some(&digest)), (&dst, None)] {
            let out = skopeo::run(&[
                "inspect".into(),
                "--creds=bob:bob-pw".into(),
                format!("--cert-dir={certs}"),
                image.clone(),
            ])
            .await;
            assert!(
                out.status.success(),
                "{}",
                String::from_utf8_lossy(&out.stderr)
            );
            let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
            if let Some(expected) = expected {
                assert_eq!(v["Digest"], expected.as_str());
            }
            assert_eq!(v["Layers"].as_array().unwrap().len(), 1);
        }
        // bob may not push: skopeo fails, the tag does not appear.
        let out = skopeo::run(&[
            "copy".into(),
            "--src-creds=bob:bob-pw".into(),
            format!("--src-cert-dir={certs}"),
            "--dest-creds=bob:bob-pw".into(),
            format!("--dest-cert-dir={certs}"),
            src.clone(),
            format!("docker://{}/team/by-bob:v1", s.host),
        ])
        .await;
        assert!(!out.status.success(), "bob pushed (tokens: {tokens})");
        // Without the CA, skopeo refuses the server's certificate.
        let out = skopeo::run(&[
            "inspect".into(),
            "--creds=bob:bob-pw".into(),
            format!("--cert-dir={}", Path::new(&certs).join("none").display()),
            dst,
        ])
        .await;
        assert!(!out.status.success());
        assert!(
            String::from_utf8_lossy(&out.stderr).contains("certificate"),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

/// After a login against a token server that issues refresh tokens, docker and containers'
/// image library keep the refresh token (`identitytoken` in the auth file) instead of the
/// password, and exchange it at `POST <realm>` (`grant_type=refresh_token`, oauth.md) for
/// each access token. A changed password revokes it: skopeo is then refused.
#[tokio::test]
async fn skopeo_with_an_identity_token() {
    if !skopeo::available() {
        return;
    }
    let s = server(true).await;
    let scope = "repository:team/src:pull,push";
    let alice = s.token(SERVICE, Some(("alice", "alice-pw")), scope).await;
    let digest = seed_image(&s.bearer(&alice)).await;
    // bob logs in as `docker login` does.
    let resp = s
        .basic("bob", "bob-pw")
        .get(&format!(
            "/token?service={SERVICE}&client_id=docker&offline_token=true"
        ))
        .await;
    assert_eq!(resp.status(), StatusCode::OK);
    let answer: serde_json::Value = serde_json::from_slice(&resp.bytes().await.unwrap()).unwrap();
    let identity_token = answer["refresh_token"].as_str().expect("a refresh token");
    let authfile = s.pki.dir.path().join("auth.json");
    // What `docker login` writes: the user without a password, and the refresh token.
    let user = {
        use base64::Engine as _;
        base64::engine::general_purpose::STANDARD.encode("bob:")
    };
    let auths = serde_json::json!({
        "auths": {&s.host: {"auth": user, "identitytoken": identity_token}}
    });
    std::fs::write(&authfile, auths.to_string()).unwrap();
    let inspect = async || {
        skopeo::run(&[
            "inspect".into(),
            format!("--authfile={}", authfile.display()),
            format!("--cert-dir={}", cert_dir(&s)),
            format!("docker://{}/team/src:v1", s.host),
        ])
        .await
    };
    let out = inspect().await;
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["Digest"], digest.as_str());
    // bob's password changes: his refresh token no longer gets him a token.
    auth::htpasswd(
        s.pki.dir.path(),
        &[("alice", "alice-pw"), ("bob", "new-bob-pw")],
    );
    s.authorizer.as_ref().unwrap().reload().unwrap();
    let out = inspect().await;
    assert!(!out.status.success(), "revoked, yet skopeo read the image");
}
