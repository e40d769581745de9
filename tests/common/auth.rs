//! Access-control fixtures: a CA made in the test with server and client certificates, an
//! htpasswd file, token signing keys, and a registry served over TLS with an authorizer.

use std::ops::Deref;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use jsonwebtoken::{Algorithm, EncodingKey, Header};
use marina_distribution::registry::RegistryOptions;
use marina_distribution::registry::auth::Identity;
use marina_distribution::registry::auth::builtin::Builtin;
use marina_distribution::registry::auth::config::{
    AccessRuleConfig, AuthConfig, OneOrMany, TokenConfig,
};
use marina_distribution::server::{self, ServeOptions, TlsFiles, TlsReloader};
use marina_distribution::{AnyDriver, StorageConfig};
use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DnType, IsCa, KeyPair, SignatureAlgorithm,
};
use reqwest::StatusCode;

use super::client::Registry;

/// A CA, a server certificate for `localhost` and `127.0.0.1`, and a client certificate, as
/// PEM files in a temporary directory.
pub struct Pki {
    /// Holds the files.
    pub dir: tempfile::TempDir,
    /// The CA certificate (PEM text).
    pub ca_pem: String,
    /// `ca.pem`
    pub ca: PathBuf,
    /// `server.pem`
    pub cert: PathBuf,
    /// `server.key`
    pub key: PathBuf,
    /// `client.pem`
    pub client_cert: PathBuf,
    /// `client.key`
    pub client_key: PathBuf,
}

fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, text).unwrap();
    path
}

/// Makes a fresh CA with a server and a client certificate.
pub fn pki() -> Pki {
    let dir = tempfile::tempdir().unwrap();
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params
        .distinguished_name
        .push(DnType::CommonName, "marina test CA");
    let ca = CertifiedIssuer::self_signed(ca_params, KeyPair::generate().unwrap()).unwrap();
    let leaf = |names: Vec<String>| {
        let key = KeyPair::generate().unwrap();
        let cert = CertificateParams::new(names)
            .unwrap()
            .signed_by(&key, &ca)
            .unwrap();
        (cert.pem(), key.serialize_pem())
    };
    let (server_cert, server_key) = leaf(vec!["localhost".into(), "127.0.0.1".into()]);
    let (client_cert, client_key) = leaf(vec!["client.test".into()]);
    let d = dir.path();
    Pki {
        ca_pem: ca.pem(),
        ca: write(d, "ca.pem", &ca.pem()),
        cert: write(d, "server.pem", &server_cert),
        key: write(d, "server.key", &server_key),
        client_cert: write(d, "client.pem", &client_cert),
        client_key: write(d, "client.key", &client_key),
        dir,
    }
}

/// Writes an htpasswd file (bcrypt `$2b$`, low cost for speed) with `users`.
pub fn htpasswd(dir: &Path, users: &[(&str, &str)]) -> PathBuf {
    let text: String = users
        .iter()
        .map(|(u, p)| format!("{u}:{}\n", bcrypt::hash(p, 4).unwrap()))
        .collect();
    write(dir, "htpasswd", &text)
}

/// An access rule: `users` may do `actions` on the repositories matching `repos`.
pub fn rule(repos: &str, users: &[&str], actions: &[&str]) -> AccessRuleConfig {
    AccessRuleConfig {
        repositories: OneOrMany::One(repos.to_owned()),
        users: users.iter().map(|s| s.to_string()).collect(),
        actions: actions.iter().map(|s| s.to_string()).collect(),
    }
}

/// The built-in token endpoint of the server on `port` (`AuthServer::realm`), signing with
/// `key_pem` (written into `dir`) for `service` as `issuer`.
pub fn built_in_tokens(
    port: u16,
    dir: &Path,
    key_pem: &str,
    service: &str,
    issuer: &str,
    lifetime: Option<u64>,
) -> TokenConfig {
    TokenConfig {
        realm: AuthServer::realm(port),
        service: service.into(),
        issuer: issuer.into(),
        jwks: None,
        certificates: None,
        signing_key: Some(write(dir, "token-key.pem", key_pem)),
        lifetime,
        refresh_lifetime: None,
    }
}

/// A registry issuing its own tokens with a fresh `alg` key, for `service` as `issuer`:
/// htpasswd users alice (`alice-pw`: pull, push and delete on `team/**`) and bob (`bob-pw`:
/// pull); `adjust` changes the endpoint's settings.
pub async fn issuing_server(
    alg: Algorithm,
    service: &str,
    issuer: &str,
    adjust: impl FnOnce(&mut TokenConfig),
) -> AuthServer {
    let (_, _, _, key_pem) = signing_key(alg, "issuer");
    start(Setup::default(), |port, dir| {
        let mut token = built_in_tokens(port, dir, &key_pem, service, issuer, None);
        adjust(&mut token);
        AuthConfig {
            htpasswd: Some(htpasswd(dir, &[("alice", "alice-pw"), ("bob", "bob-pw")])),
            token: Some(token),
            access: vec![
                rule("team/**", &["alice"], &["pull", "push", "delete"]),
                rule("team/**", &["bob"], &["pull"]),
            ],
        }
    })
    .await
}

/// A token signing key of the test's own authorization server.
pub struct Signer {
    /// The algorithm.
    pub alg: Algorithm,
    /// Key id.
    pub kid: String,
    /// Private key.
    pub key: EncodingKey,
}

impl Signer {
    /// Signs `claims` with this key (header `kid` and `alg` as given).
    pub fn sign(&self, claims: &serde_json::Value) -> String {
        let mut header = Header::new(self.alg);
        header.kid = Some(self.kid.clone());
        jsonwebtoken::encode(&header, claims, &self.key).unwrap()
    }
}

/// A fresh key for `alg` (ES256, RS256 or EdDSA): the signer, its public half as a JWK
/// (with `kid`), a self-signed certificate of it (PEM), and its private key (PEM).
pub fn signing_key(alg: Algorithm, kid: &str) -> (Signer, serde_json::Value, String, String) {
    let rcgen_alg: &'static SignatureAlgorithm = match alg {
        Algorithm::ES256 => &rcgen::PKCS_ECDSA_P256_SHA256,
        Algorithm::RS256 => &rcgen::PKCS_RSA_SHA256,
        Algorithm::EdDSA => &rcgen::PKCS_ED25519,
        other => panic!("no test key for {other:?}"),
    };
    let key = KeyPair::generate_for(rcgen_alg).unwrap();
    let pem = key.serialize_pem();
    let encoding = match alg {
        Algorithm::ES256 => EncodingKey::from_ec_pem(pem.as_bytes()),
        Algorithm::RS256 => EncodingKey::from_rsa_pem(pem.as_bytes()),
        _ => EncodingKey::from_ed_pem(pem.as_bytes()),
    }
    .unwrap();
    let cert = CertificateParams::new(vec!["token-signer".to_owned()])
        .unwrap()
        .self_signed(&key)
        .unwrap();
    // The key bits: the BIT STRING of the certificate's SubjectPublicKeyInfo.
    let spki = certificate_spki(&cert.pem());
    let (seq, _) = der_item(&spki);
    let (_, rest) = der_item(seq); // AlgorithmIdentifier
    let (bits, _) = der_item(rest);
    let jwk = jwk_of(alg, &bits[1..], kid);
    (
        Signer {
            alg,
            kid: kid.to_owned(),
            key: encoding,
        },
        jwk,
        cert.pem(),
        pem,
    )
}

/// A token-signing CA with an intermediate CA under it, for tokens that carry their
/// signer's certificate chain (`x5c`) instead of naming a key.
pub struct TokenCa {
    /// The root's certificate (PEM), for the registry's trusted bundle.
    pub root_pem: String,
    root: CertifiedIssuer<'static, KeyPair>,
    intermediate: CertifiedIssuer<'static, KeyPair>,
}

/// A signing key and the certificate chain its tokens carry (base64 DER, leaf first).
pub struct ChainSigner {
    /// The private key (ES256).
    pub key: EncodingKey,
    /// The `x5c` header.
    pub chain: Vec<String>,
}

impl ChainSigner {
    fn new(key: &KeyPair, chain: &[&rustls::pki_types::CertificateDer<'_>]) -> Self {
        use base64::Engine as _;
        Self {
            key: EncodingKey::from_ec_pem(key.serialize_pem().as_bytes()).unwrap(),
            chain: chain
                .iter()
                .map(|c| base64::engine::general_purpose::STANDARD.encode(c))
                .collect(),
        }
    }

    /// Signs `claims` (ES256) with the chain in the header and no `kid`.
    pub fn sign(&self, claims: &serde_json::Value) -> String {
        let mut header = Header::new(Algorithm::ES256);
        header.x5c = Some(self.chain.clone());
        jsonwebtoken::encode(&header, claims, &self.key).unwrap()
    }
}

impl TokenCa {
    /// A fresh root and intermediate (EC P-256).
    pub fn new() -> Self {
        let ca = |name: &str| {
            let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
            params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
            params.distinguished_name.push(DnType::CommonName, name);
            (params, KeyPair::generate().unwrap())
        };
        let (params, key) = ca("marina token root");
        let root = CertifiedIssuer::self_signed(params, key).unwrap();
        let (params, key) = ca("marina token intermediate");
        let intermediate = CertifiedIssuer::signed_by(params, key, &root).unwrap();
        Self {
            root_pem: root.pem(),
            root,
            intermediate,
        }
    }

    /// The root signing with its own key: its chain is its (self-signed CA) certificate.
    pub fn root_signer(&self) -> ChainSigner {
        ChainSigner::new(self.root.key(), &[self.root.der()])
    }

    /// A new key with a certificate from the root or, `via_intermediate`, from the
    /// intermediate (the chain then holds both); `expired`: valid only in 2019.
    pub fn signer(&self, via_intermediate: bool, expired: bool) -> ChainSigner {
        let key = KeyPair::generate().unwrap();
        let mut params = CertificateParams::new(vec!["token-signer".to_owned()]).unwrap();
        if expired {
            params.not_before = rcgen::date_time_ymd(2019, 1, 1);
            params.not_after = rcgen::date_time_ymd(2019, 12, 31);
        }
        let issuer = if via_intermediate {
            &self.intermediate
        } else {
            &self.root
        };
        let leaf = params.signed_by(&key, issuer).unwrap();
        if via_intermediate {
            ChainSigner::new(&key, &[leaf.der(), self.intermediate.der()])
        } else {
            ChainSigner::new(&key, &[leaf.der()])
        }
    }
}

/// The DER SubjectPublicKeyInfo of a PEM certificate.
pub fn certificate_spki(cert_pem: &str) -> Vec<u8> {
    use rustls::pki_types::CertificateDer;
    use rustls::pki_types::pem::PemObject;
    let der = CertificateDer::from_pem_slice(cert_pem.as_bytes()).unwrap();
    let cert = webpki::EndEntityCert::try_from(&der).unwrap();
    cert.subject_public_key_info().as_ref().to_vec()
}

fn b64url(bytes: &[u8]) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

/// The JWK of a raw public key (EC point, Ed25519 bytes, or PKCS#1 RSAPublicKey DER).
fn jwk_of(alg: Algorithm, bits: &[u8], kid: &str) -> serde_json::Value {
    match alg {
        Algorithm::ES256 => {
            let (x, y) = bits[1..].split_at(32);
            serde_json::json!({"kty":"EC","crv":"P-256","x":b64url(x),"y":b64url(y),"kid":kid})
        }
        Algorithm::EdDSA => {
            serde_json::json!({"kty":"OKP","crv":"Ed25519","x":b64url(bits),"kid":kid})
        }
        _ => {
            // RSAPublicKey ::= SEQUENCE { modulus INTEGER, publicExponent INTEGER }
            let (seq, _) = der_item(bits);
            let (n, rest) = der_item(seq);
            let (e, _) = der_item(rest);
            let strip = |v: &[u8]| {
                v.iter()
                    .skip_while(|b| **b == 0)
                    .copied()
                    .collect::<Vec<_>>()
            };
            serde_json::json!({"kty":"RSA","n":b64url(&strip(n)),"e":b64url(&strip(e)),"kid":kid})
        }
    }
}

/// One DER element: returns (content, rest).
fn der_item(der: &[u8]) -> (&[u8], &[u8]) {
    let mut len = der[1] as usize;
    let mut header = 2;
    if len & 0x80 != 0 {
        let n = len & 0x7f;
        len = der[2..2 + n].iter().fold(0, |a, b| (a << 8) | *b as usize);
        header += n;
    }
    (&der[header..header + len], &der[header + len..])
}

/// A registry served by the test over TLS (or plain HTTP) with access control; it
/// dereferences to a [`Registry`] client of it trusting the test CA, without credentials
/// (base `https://localhost:PORT`, or `http://127.0.0.1:PORT`).
pub struct AuthServer {
    /// The client.
    pub registry: Registry,
    /// `localhost:PORT` (the name the certificate carries).
    pub host: String,
    /// The port.
    pub port: u16,
    /// The authorizer, for reloads.
    pub authorizer: Option<Arc<Builtin>>,
    /// The TLS configuration, for reloads.
    pub tls: Option<Arc<TlsReloader>>,
    /// The certificates.
    pub pki: Pki,
    task: tokio::task::JoinHandle<()>,
}

impl Deref for AuthServer {
    type Target = Registry;

    fn deref(&self) -> &Registry {
        &self.registry
    }
}

impl Drop for AuthServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Header a test layer copies the response's [`Identity`] extension into.
pub const IDENTITY_HEADER: &str = "x-test-identity";

/// How a test server is set up.
pub struct Setup {
    /// Serve TLS.
    pub tls: bool,
    /// Require client certificates from the test CA.
    pub mtls: bool,
    /// HTTP options.
    pub options: RegistryOptions,
    /// Connection limits.
    pub serve: ServeOptions,
}

impl Default for Setup {
    fn default() -> Self {
        Self {
            tls: true,
            mtls: false,
            options: RegistryOptions::default(),
            serve: ServeOptions::default(),
        }
    }
}

/// Starts an in-memory registry; `auth` receives the bound port and the PKI directory (for
/// realms and files) and returns the access control configuration.
pub async fn start(setup: Setup, auth: impl FnOnce(u16, &Path) -> AuthConfig) -> AuthServer {
    let pki = pki();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let config = auth(port, pki.dir.path());
    let driver = AnyDriver::from_config(&StorageConfig::inmemory())
        .await
        .unwrap();
    let (app, authorizer) =
        server::registry_app(Arc::new(driver), setup.options, &config).expect("auth config");
    let app = app.layer(axum::middleware::map_response(
        |mut resp: axum::response::Response| async move {
            if let Some(id) = resp.extensions().get::<Identity>().map(ToString::to_string) {
                resp.headers_mut()
                    .insert(IDENTITY_HEADER, id.parse().unwrap());
            }
            resp
        },
    ));
    let tls = setup.tls.then(|| {
        Arc::new(
            TlsReloader::load(TlsFiles {
                cert: pki.cert.clone(),
                key: pki.key.clone(),
                client_ca: setup.mtls.then(|| pki.ca.clone()),
            })
            .unwrap(),
        )
    });
    let task = tokio::spawn({
        let tls = tls.clone();
        async move {
            server::serve(listener, app, setup.serve, tls, std::future::pending())
                .await
                .unwrap();
        }
    });
    let (base, host) = if setup.tls {
        (
            format!("https://localhost:{port}"),
            format!("localhost:{port}"),
        )
    } else {
        (
            format!("http://127.0.0.1:{port}"),
            format!("127.0.0.1:{port}"),
        )
    };
    AuthServer {
        registry: Registry::with_client(base, client(&pki, None)),
        host,
        port,
        authorizer,
        tls,
        pki,
        task,
    }
}

/// A client trusting the test CA, optionally presenting `identity` (PEM cert + key).
pub fn client(pki: &Pki, identity: Option<&[u8]>) -> reqwest::Client {
    let mut b = reqwest::Client::builder()
        .use_rustls_tls()
        .tls_built_in_root_certs(false)
        .add_root_certificate(reqwest::Certificate::from_pem(pki.ca_pem.as_bytes()).unwrap())
        .redirect(reqwest::redirect::Policy::none());
    if let Some(pem) = identity {
        b = b.identity(reqwest::Identity::from_pem(pem).unwrap());
    }
    b.build().unwrap()
}

impl AuthServer {
    /// The token realm of this server (`<base>/token`).
    pub fn realm(port: u16) -> String {
        format!("https://localhost:{port}/token")
    }

    /// The built-in token endpoint's answer (asserting a 200) to `GET /token` for `service`
    /// and `scope`, with `credentials` (user, password) if any.
    pub async fn token_answer(
        &self,
        service: &str,
        credentials: Option<(&str, &str)>,
        scope: &str,
    ) -> serde_json::Value {
        let client = match credentials {
            Some((user, password)) => self.basic(user, password),
            None => self.registry.clone(),
        };
        let resp = client
            .get(&format!("/token?service={service}&scope={scope}"))
            .await;
        assert_eq!(resp.status(), StatusCode::OK);
        serde_json::from_slice(&resp.bytes().await.unwrap()).unwrap()
    }

    /// The token of [`token_answer`](Self::token_answer).
    pub async fn token(
        &self,
        service: &str,
        credentials: Option<(&str, &str)>,
        scope: &str,
    ) -> String {
        let answer = self.token_answer(service, credentials, scope).await;
        answer["token"].as_str().unwrap().to_owned()
    }
}

impl Registry {
    /// The same client, with HTTP Basic credentials.
    pub fn basic(&self, user: &str, password: &str) -> Self {
        use base64::Engine as _;
        let pair = base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"));
        self.authorized(&format!("Basic {pair}"))
    }

    /// The same client, with a bearer token.
    pub fn bearer(&self, token: &str) -> Self {
        self.authorized(&format!("Bearer {token}"))
    }
}

/// The `WWW-Authenticate` header of a response ("" when absent).
pub fn challenge(resp: &reqwest::Response) -> String {
    resp.headers()
        .get("www-authenticate")
        .map(|v| v.to_str().unwrap().to_owned())
        .unwrap_or_default()
}
