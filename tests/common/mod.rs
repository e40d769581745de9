//! Shared harness of the HTTP tests: starts the registry on a loopback port over each driver
//! (in-memory, filesystem in a temporary directory, S3 when `S3_ENDPOINT` is set and GCS when
//! `GCS_ENDPOINT` is set) and
//! offers small helpers written from the spec's request shapes.
#![allow(dead_code)]

#[cfg(feature = "gcs")]
pub mod gcs;

use std::future::Future;
use std::sync::Arc;

use marina_distribution::oci::{Digest, DigestAlgorithm};
use marina_distribution::registry::{RegistryOptions, router};
use marina_distribution::{AnyDriver, StorageConfig, StorageDriver};
use reqwest::{Response, StatusCode};

/// A running registry and a client for it.
pub struct Server {
    /// `http://127.0.0.1:PORT`
    pub base: String,
    /// `127.0.0.1:PORT`
    pub addr: String,
    /// The HTTP client.
    pub client: reqwest::Client,
    /// Which driver serves it.
    pub driver: String,
    /// The driver's minimum chunk size (`OCI-Chunk-Min-Length`), if any.
    pub chunk_min: Option<u64>,
    _dir: Option<tempfile::TempDir>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Server {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// The storage configurations every HTTP test runs against.
pub fn configs(test: &str) -> Vec<(String, StorageConfig, Option<tempfile::TempDir>)> {
    let mut out = vec![("inmemory".to_owned(), StorageConfig::inmemory(), None)];
    let dir = tempfile::tempdir().expect("tempdir");
    out.push((
        "filesystem".to_owned(),
        StorageConfig::filesystem(dir.path().join("data")),
        Some(dir),
    ));
    match std::env::var("S3_ENDPOINT") {
        Ok(endpoint_set) if !endpoint_set.is_empty() => {
            // The variables the registry itself reads.
            let mut s3 = StorageConfig::default()
                .apply_env()
                .expect("S3_* environment variables")
                .s3
                .expect("S3_ENDPOINT is set");
            let unique: u64 = rand_u64();
            s3.prefix = Some(format!("http-tests/{test}-{unique:016x}"));
            out.push(("s3".to_owned(), StorageConfig::s3(s3), None));
        }
        _ => eprintln!("NOTE: S3_ENDPOINT is not set: S3 cases of {test} were SKIPPED"),
    }
    #[cfg(feature = "gcs")]
    match gcs::config("http-tests", test) {
        Some(config) => out.push(("gcs".to_owned(), StorageConfig::gcs(config), None)),
        None => eprintln!("NOTE: GCS_ENDPOINT is not set: GCS cases of {test} were SKIPPED"),
    }
    out
}

fn rand_u64() -> u64 {
    use std::time::{SystemTime, UNIX_EPOCH};
    let t = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64);
    t ^ (std::process::id() as u64).rotate_left(32) ^ (&t as *const u64 as u64)
}

#[cfg(feature = "s3")]
async fn ensure_bucket(cfg: &StorageConfig) {
    let Some(s3) = &cfg.s3 else { return };
    let mut loader = aws_config::defaults(aws_config::BehaviorVersion::latest()).region(
        aws_config::Region::new(s3.region.clone().unwrap_or("us-east-1".into())),
    );
    if let Some(e) = &s3.endpoint {
        loader = loader.endpoint_url(e);
    }
    let conf = loader.load().await;
    let client = aws_sdk_s3::Client::from_conf(
        aws_sdk_s3::config::Builder::from(&conf)
            .force_path_style(s3.force_path_style)
            .build(),
    );
    // "Already owned by you" and similar answers are fine: the bucket exists.
    let _ = client.create_bucket().bucket(&s3.bucket).send().await;
}

#[cfg(not(feature = "s3"))]
async fn ensure_bucket(_: &StorageConfig) {}

/// Starts a registry over `config` on 127.0.0.1 with an ephemeral port.
pub async fn start(
    driver: String,
    config: StorageConfig,
    dir: Option<tempfile::TempDir>,
) -> Server {
    start_with(driver, config, dir, RegistryOptions::default()).await
}

/// [`start`] with explicit HTTP options.
pub async fn start_with(
    driver: String,
    config: StorageConfig,
    dir: Option<tempfile::TempDir>,
    mut options: RegistryOptions,
) -> Server {
    ensure_bucket(&config).await;
    options.max_manifest_size = options.max_manifest_size.min(config.max_manifest_size);
    let d = AnyDriver::from_config(&config)
        .await
        .unwrap_or_else(|e| panic!("building the {driver} driver: {e}"));
    let chunk_min = d.chunk_min_length();
    let app = router(Arc::new(d), options);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr").to_string();
    let task = tokio::spawn(async move {
        axum::serve(listener, app).await.expect("serve");
    });
    Server {
        base: format!("http://{addr}"),
        addr,
        client: reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .expect("client"),
        driver,
        chunk_min,
        _dir: dir,
        task,
    }
}

/// Runs `case` against a fresh server on every driver, naming the driver on failure.
pub async fn each_driver<F, Fut>(test: &str, case: F)
where
    F: Fn(Server) -> Fut,
    Fut: Future<Output = ()>,
{
    for (name, cfg, dir) in configs(test) {
        eprintln!("--- {test} on {name}");
        let server = start(name, cfg, dir).await;
        case(server).await;
    }
}

/// sha256 digest of `data`.
pub fn sha256(data: &[u8]) -> String {
    Digest::compute(DigestAlgorithm::Sha256, data).to_string()
}

/// sha512 digest of `data`.
pub fn sha512(data: &[u8]) -> String {
    Digest::compute(DigestAlgorithm::Sha512, data).to_string()
}

/// A deterministic pseudo-random payload.
pub fn payload(len: usize, seed: u8) -> Vec<u8> {
    let mut x: u32 = 0x9e37_79b9 ^ u32::from(seed);
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            x as u8
        })
        .collect()
}

/// A header as a string (panics with the header's name when absent).
pub fn header(resp: &Response, name: &str) -> String {
    resp.headers()
        .get(name)
        .unwrap_or_else(|| panic!("missing header {name}: {:?}", resp.headers()))
        .to_str()
        .expect("ascii header")
        .to_owned()
}

/// Asserts an error answer: status, and the spec's JSON envelope with `code`.
pub async fn assert_error(resp: Response, status: u16, code: &str) {
    let got = resp.status().as_u16();
    let headers = resp.headers().clone();
    let text = resp.text().await.expect("body");
    assert_eq!(got, status, "status; body {text}");
    let v: serde_json::Value =
        serde_json::from_str(&text).unwrap_or_else(|e| panic!("not JSON ({e}): {text:?}"));
    let errors = v["errors"]
        .as_array()
        .unwrap_or_else(|| panic!("no errors array: {text}"));
    assert!(!errors.is_empty(), "empty errors: {text}");
    assert_eq!(errors[0]["code"], code, "code in {text}");
    assert!(errors[0]["message"].is_string(), "message in {text}");
    assert_eq!(
        headers
            .get("docker-distribution-api-version")
            .map(|v| v.to_str().unwrap()),
        Some("registry/2.0")
    );
}

impl Server {
    /// Absolute URL of `path` (or of a `Location` value: relative or absolute).
    pub fn url(&self, path: &str) -> String {
        if path.starts_with("http://") || path.starts_with("https://") {
            path.to_owned()
        } else {
            format!("{}{}", self.base, path)
        }
    }

    /// Appends a query parameter to a `Location`, keeping any query it already has.
    pub fn with_query(&self, location: &str, param: &str) -> String {
        let url = self.url(location);
        if url.contains('?') {
            format!("{url}&{param}")
        } else {
            format!("{url}?{param}")
        }
    }

    /// end-4a: opens an upload session; returns its `Location`.
    pub async fn start_upload(&self, repo: &str) -> String {
        let resp = self
            .client
            .post(self.url(&format!("/v2/{repo}/blobs/uploads/")))
            .header("content-length", "0")
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), StatusCode::ACCEPTED, "{resp:?}");
        header(&resp, "location")
    }

    /// POST then PUT (monolithic); returns the digest.
    pub async fn push_blob(&self, repo: &str, data: &[u8]) -> String {
        let digest = sha256(data);
        let loc = self.start_upload(repo).await;
        let resp = self
            .client
            .put(self.with_query(&loc, &format!("digest={digest}")))
            .header("content-type", "application/octet-stream")
            .body(data.to_vec())
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), StatusCode::CREATED, "{resp:?}");
        digest
    }

    /// end-7: pushes a manifest.
    pub async fn put_manifest(
        &self,
        repo: &str,
        reference: &str,
        media_type: &str,
        body: &[u8],
    ) -> Response {
        self.client
            .put(self.url(&format!("/v2/{repo}/manifests/{reference}")))
            .header("content-type", media_type)
            .body(body.to_vec())
            .send()
            .await
            .unwrap()
    }

    /// Pushes a small image (config + one layer) and its manifest under `tag`; returns
    /// (manifest bytes, manifest digest, layer bytes, layer digest).
    pub async fn push_image(&self, repo: &str, tag: &str, seed: u8) -> Image {
        let config = format!("{{\"architecture\":\"amd64\",\"os\":\"linux\",\"seed\":{seed}}}");
        let layer = payload(3000 + usize::from(seed), seed);
        let config_digest = self.push_blob(repo, config.as_bytes()).await;
        let layer_digest = self.push_blob(repo, &layer).await;
        let manifest = image_manifest(
            &config_digest,
            config.len(),
            &[(layer_digest.as_str(), layer.len())],
            None,
        );
        let resp = self
            .put_manifest(repo, tag, OCI_MANIFEST, manifest.as_bytes())
            .await;
        assert_eq!(resp.status(), StatusCode::CREATED, "{resp:?}");
        Image {
            digest: sha256(manifest.as_bytes()),
            manifest: manifest.into_bytes(),
            layer,
            layer_digest,
            config_digest,
        }
    }
}

/// What [`Server::push_image`] pushed.
pub struct Image {
    /// Manifest bytes.
    pub manifest: Vec<u8>,
    /// Manifest digest.
    pub digest: String,
    /// Layer bytes.
    pub layer: Vec<u8>,
    /// Layer digest.
    pub layer_digest: String,
    /// Config digest.
    pub config_digest: String,
}

/// OCI image manifest media type.
pub const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
/// OCI image index media type.
pub const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";

/// An OCI image manifest (serialised by hand, with an odd spacing, so byte-exact storage is
/// observable).
pub fn image_manifest(
    config_digest: &str,
    config_size: usize,
    layers: &[(&str, usize)],
    extra: Option<&str>,
) -> String {
    let layers: Vec<String> = layers
        .iter()
        .map(|(d, s)| {
            format!(
                "{{\"mediaType\":\"application/vnd.oci.image.layer.v1.tar\",\"digest\":\"{d}\",\"size\":{s}}}"
            )
        })
        .collect();
    format!(
        "{{\n  \"schemaVersion\": 2,\n  \"mediaType\": \"{OCI_MANIFEST}\",\n  \"config\": {{\"mediaType\":\"application/vnd.oci.image.config.v1+json\",\"digest\":\"{config_digest}\",\"size\":{config_size}}},\n  \"layers\": [{}]{}\n}}\n",
        layers.join(","),
        extra.map(|e| format!(",\n  {e}")).unwrap_or_default()
    )
}
