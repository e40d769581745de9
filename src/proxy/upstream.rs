//! The upstream registry, seen as a client sees it: manifests, blobs, tags and referrers
//! read through the distribution spec's pull endpoints, with the authentication the
//! Docker token specification describes ("How to authenticate"): a request without
//! credentials, a `401` whose `WWW-Authenticate` names a token realm, a token asked of that
//! realm (with the configured credentials as HTTP Basic, or anonymously), the request again
//! with `Authorization: Bearer`. Tokens are kept per repository until they expire; a
//! registry that challenges with `Basic` gets the credentials directly.
//!
//! Every answer is mapped to the error a client of the cache should see: `404` to the
//! spec's "unknown" codes, `401`/`403` (the upstream refusing the cache's credentials) to
//! `DENIED`, `429` to `TOOMANYREQUESTS`, anything else (and a failed connection) to a
//! retryable failure of the upstream (`503` with `Retry-After`). No error carries the
//! upstream's address or credentials; the logs get the underlying error.

use std::collections::HashMap;
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use reqwest::header::{self, HeaderMap, HeaderValue};
use reqwest::{Method, StatusCode};
use serde::Deserialize;

use super::challenge::{self, Challenge};
use super::config::Credentials;
use crate::error::{Error, Result};
use crate::observe::metrics::{ProxyMetrics, UpstreamOutcome, UpstreamRequest};
use crate::oci::{Descriptor, Digest, DigestAlgorithm, Reference, RepositoryName};
use crate::storage::{ManifestInfo, TagList};

/// The driver name upstream failures carry (see [`Error::Backend`]).
pub(crate) const UPSTREAM: &str = "upstream";

/// The manifest media types asked for (`Accept`): the OCI and Docker schema 2 ones. Not
/// `*/*`: a registry may then answer Docker's schema 1, which the spec does not know.
const MANIFEST_ACCEPT: &str = "application/vnd.oci.image.index.v1+json, \
     application/vnd.oci.image.manifest.v1+json, \
     application/vnd.docker.distribution.manifest.list.v2+json, \
     application/vnd.docker.distribution.manifest.v2+json";

/// Largest tag list or referrers answer read (a manifest's limit is the storage's).
const LIST_LIMIT: usize = 8 * 1024 * 1024;

/// How long before its expiry a token is no longer used.
const TOKEN_MARGIN: Duration = Duration::from_secs(10);

/// Most repositories whose `Authorization` is kept.
const MAX_AUTHORIZATIONS: usize = 4096;

/// The longest a token is kept, whatever the realm says.
const MAX_TOKEN_LIFETIME: Duration = Duration::from_secs(3600);

/// A token's lifetime when the realm does not say (token specification: 60 seconds).
const DEFAULT_TOKEN_LIFETIME: Duration = Duration::from_secs(60);

/// The upstream registry's client.
pub(crate) struct Upstream {
    client: reqwest::Client,
    /// `scheme://host[:port]`, without a trailing slash.
    base: String,
    credentials: Option<Credentials>,
    /// The `Authorization` that worked last, per repository, and until when.
    authorizations: Mutex<HashMap<RepositoryName, (HeaderValue, Option<Instant>)>>,
    /// Where requests are counted (registered nowhere without metrics).
    pub(crate) metrics: ProxyMetrics,
}

impl std::fmt::Debug for Upstream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Upstream")
            .field("base", &self.base)
            .field("credentials", &self.credentials.is_some())
            .finish_non_exhaustive()
    }
}

/// A failure to reach the upstream or to read its answer: retryable, logged with `source`.
pub(crate) fn unreachable(message: &str, source: reqwest::Error) -> Error {
    Error::Backend {
        driver: UPSTREAM,
        operation: None,
        key: None,
        message: message.to_owned(),
        retryable: true,
        // Without its URL: after a redirect it may be a signed one.
        source: Some(Box::new(source.without_url())),
    }
}

/// An answer of the upstream that cannot be served (it contradicts itself or the request).
pub(crate) fn bad_answer(message: impl Into<String>) -> Error {
    Error::Backend {
        driver: UPSTREAM,
        operation: None,
        key: None,
        message: message.into(),
        retryable: false,
        source: None,
    }
}

/// What an unsuccessful status means for the client; `missing` is the error of a `404`.
fn status_error(status: StatusCode, missing: impl FnOnce() -> Error) -> Error {
    match outcome_of(status) {
        UpstreamOutcome::NotFound => missing(),
        UpstreamOutcome::Denied => {
            Error::Denied("the upstream registry refused access to this repository".into())
        }
        UpstreamOutcome::Throttled => {
            Error::TooManyRequests("the upstream registry asks to slow down".into())
        }
        // A failure of the upstream may pass; a refusal of what was asked will not.
        UpstreamOutcome::Ok | UpstreamOutcome::Failed => Error::Backend {
            driver: UPSTREAM,
            operation: None,
            key: None,
            message: format!("the upstream registry answered {}", status.as_u16()),
            retryable: status.is_server_error(),
            source: None,
        },
    }
}

/// What an upstream answer's status stands for: the one place statuses are classified,
/// for the errors above and for the request counters alike.
fn outcome_of(status: StatusCode) -> UpstreamOutcome {
    match status {
        s if s.is_success() => UpstreamOutcome::Ok,
        StatusCode::NOT_FOUND => UpstreamOutcome::NotFound,
        StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN => UpstreamOutcome::Denied,
        StatusCode::TOO_MANY_REQUESTS => UpstreamOutcome::Throttled,
        _ => UpstreamOutcome::Failed,
    }
}

/// `response` when it succeeded, else what its status means (`missing` for a `404`).
fn successful(
    response: reqwest::Response,
    missing: impl FnOnce() -> Error,
) -> Result<reqwest::Response> {
    match response.status() {
        s if s.is_success() => Ok(response),
        s => Err(status_error(s, missing)),
    }
}

/// Reads a whole body of at most `limit` bytes.
async fn read_limited(mut response: reqwest::Response, limit: usize) -> Result<Bytes> {
    if response.content_length().is_some_and(|n| n > limit as u64) {
        return Err(bad_answer("the upstream answer is larger than allowed"));
    }
    let mut body = BytesMut::new();
    while let Some(chunk) = response
        .chunk()
        .await
        .map_err(|e| unreachable("reading the upstream answer failed", e))?
    {
        if body.len() + chunk.len() > limit {
            return Err(bad_answer("the upstream answer is larger than allowed"));
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body.freeze())
}

/// The `Docker-Content-Digest` of an answer, if present and valid.
fn content_digest(headers: &HeaderMap) -> Option<Digest> {
    let value = headers.get("docker-content-digest")?.to_str().ok()?;
    Digest::parse(value.trim()).ok()
}

/// The `Content-Type` of an answer, without parameters.
fn content_type(headers: &HeaderMap) -> Option<String> {
    let value = headers.get(header::CONTENT_TYPE)?.to_str().ok()?;
    Some(crate::oci::manifest::essence(value).to_owned()).filter(|t| !t.is_empty())
}

#[derive(Deserialize)]
struct TokenAnswer {
    token: Option<String>,
    access_token: Option<String>,
    expires_in: Option<u64>,
}

#[derive(Deserialize)]
struct TagsAnswer {
    tags: Option<Vec<String>>,
}

#[derive(Deserialize)]
struct IndexAnswer {
    #[serde(default)]
    manifests: Vec<Descriptor>,
}

impl Upstream {
    /// A client of the registry at `base` (`scheme://host[:port]`), giving up on a
    /// connection after `connect_timeout` and on an answer silent for `read_timeout`,
    /// counting its requests into `metrics`.
    pub(crate) fn new(
        base: &str,
        credentials: Option<Credentials>,
        connect_timeout: Duration,
        read_timeout: Duration,
        metrics: ProxyMetrics,
    ) -> Result<Self> {
        let client = reqwest::Client::builder()
            .connect_timeout(connect_timeout)
            .read_timeout(read_timeout)
            .user_agent(concat!("marina-registry/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| Error::Config {
                field: "proxy",
                message: format!("cannot build the upstream client: {e}"),
            })?;
        Ok(Self {
            client,
            base: base.trim_end_matches('/').to_owned(),
            credentials,
            authorizations: Mutex::default(),
            metrics,
        })
    }

    /// Sends `method` to `/v2/<repo>/<path>`, authenticating as the upstream asks, and
    /// counts it as `request` by the answer's status.
    async fn send(
        &self,
        request: UpstreamRequest,
        method: Method,
        repo: &RepositoryName,
        path: &str,
        query: &[(&str, &str)],
        accept: Option<&str>,
    ) -> Result<reqwest::Response> {
        let sent = self.send_uncounted(method, repo, path, query, accept).await;
        let outcome = match &sent {
            Ok(r) => outcome_of(r.status()),
            Err(_) => UpstreamOutcome::Failed,
        };
        self.metrics.record(request, outcome);
        sent
    }

    async fn send_uncounted(
        &self,
        method: Method,
        repo: &RepositoryName,
        path: &str,
        query: &[(&str, &str)],
        accept: Option<&str>,
    ) -> Result<reqwest::Response> {
        let url = format!("{}/v2/{}/{}", self.base, repo, path);
        let known = self.known_authorization(repo);
        let response = self
            .once(&method, &url, query, accept, known.clone())
            .await?;
        if response.status() != StatusCode::UNAUTHORIZED {
            return Ok(response);
        }
        // Only the upstream's own challenge is answered (not one of a host a redirect led
        // to), and never with a realm less protected than the upstream.
        let from_upstream = response.url().origin().ascii_serialization() == self.base;
        let challenge = response
            .headers()
            .get(header::WWW_AUTHENTICATE)
            .and_then(|v| v.to_str().ok())
            .and_then(challenge::parse)
            .filter(|c| from_upstream && self.may_follow(c));
        let Some(authorization) = self.authorize(repo, challenge).await? else {
            return Ok(response);
        };
        if known.as_ref() == Some(&authorization) {
            // Refused with what was just obtained again: no point in a third try.
            return Ok(response);
        }
        self.once(&method, &url, query, accept, Some(authorization))
            .await
    }

    async fn once(
        &self,
        method: &Method,
        url: &str,
        query: &[(&str, &str)],
        accept: Option<&str>,
        authorization: Option<HeaderValue>,
    ) -> Result<reqwest::Response> {
        let mut request = self.client.request(method.clone(), url).query(query);
        if let Some(accept) = accept {
            request = request.header(header::ACCEPT, accept);
        }
        if let Some(authorization) = authorization {
            request = request.header(header::AUTHORIZATION, authorization);
        }
        request
            .send()
            .await
            .map_err(|e| unreachable("the upstream registry cannot be reached", e))
    }

    /// Whether the cache may send its credentials where `challenge` says: a realm over
    /// `https`, or over `http` only when the upstream itself is.
    fn may_follow(&self, challenge: &Challenge) -> bool {
        match challenge {
            Challenge::Basic => true,
            Challenge::Bearer { realm, .. } => {
                realm.starts_with("https://") || self.base.starts_with("http://")
            }
        }
    }

    fn known_authorization(&self, repo: &RepositoryName) -> Option<HeaderValue> {
        let map = self
            .authorizations
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        let (value, until) = map.get(repo)?;
        until
            .is_none_or(|t| Instant::now() < t)
            .then(|| value.clone())
    }

    /// The `Authorization` answering `challenge` (kept for `repo`), or `None` when there is
    /// no way to answer it.
    async fn authorize(
        &self,
        repo: &RepositoryName,
        challenge: Option<Challenge>,
    ) -> Result<Option<HeaderValue>> {
        let (value, until) = match challenge {
            Some(Challenge::Basic) => match &self.credentials {
                Some(c) => (c.basic(), None),
                None => return Ok(None),
            },
            Some(Challenge::Bearer {
                realm,
                service,
                scope,
            }) => {
                // Ask for pull on this repository whatever the challenge's scope (it names
                // the operation refused, which is a pull too).
                let wanted = format!("repository:{repo}:pull");
                let scope = scope.filter(|s| s == &wanted).unwrap_or(wanted);
                let (token, lifetime) = self.token(&realm, service.as_deref(), &scope).await?;
                let mut value = HeaderValue::try_from(format!("Bearer {token}"))
                    .map_err(|_| bad_answer("the upstream token realm sent an unusable token"))?;
                value.set_sensitive(true);
                let until = Instant::now() + lifetime.saturating_sub(TOKEN_MARGIN);
                (value, Some(until))
            }
            None => return Ok(None),
        };
        let mut map = self
            .authorizations
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if map.len() >= MAX_AUTHORIZATIONS {
            // Clients choose the repository names: keep the map bounded.
            let now = Instant::now();
            map.retain(|_, (_, until)| until.is_none_or(|t| now < t));
            if map.len() >= MAX_AUTHORIZATIONS {
                map.clear();
            }
        }
        map.insert(repo.clone(), (value.clone(), until));
        Ok(Some(value))
    }

    /// A token from `realm` (token specification, "Requesting a Token"), and how long it
    /// lives.
    async fn token(
        &self,
        realm: &str,
        service: Option<&str>,
        scope: &str,
    ) -> Result<(String, Duration)> {
        let mut query = vec![("scope", scope)];
        if let Some(service) = service {
            query.push(("service", service));
        }
        let mut request = self.client.get(realm).query(&query);
        if let Some(c) = &self.credentials {
            request = request.header(header::AUTHORIZATION, c.basic());
        }
        let response = request
            .send()
            .await
            .map_err(|e| unreachable("the upstream token realm cannot be reached", e))?;
        let response = successful(response, || {
            Error::Denied("the upstream token realm refused the cache's credentials".into())
        })?;
        let body = read_limited(response, LIST_LIMIT).await?;
        let answer: TokenAnswer = serde_json::from_slice(&body)
            .map_err(|_| bad_answer("the upstream token realm sent no token"))?;
        let token = answer
            .token
            .or(answer.access_token)
            .filter(|t| !t.is_empty())
            .ok_or_else(|| bad_answer("the upstream token realm sent no token"))?;
        let lifetime = answer
            .expires_in
            .map_or(DEFAULT_TOKEN_LIFETIME, Duration::from_secs)
            .min(MAX_TOKEN_LIFETIME);
        Ok((token, lifetime))
    }

    /// A successful answer to `method` of a manifest (a `404` is `MANIFEST_UNKNOWN`).
    async fn manifest_request(
        &self,
        request: UpstreamRequest,
        method: Method,
        repo: &RepositoryName,
        reference: &Reference,
    ) -> Result<reqwest::Response> {
        let path = format!("manifests/{reference}");
        let response = self
            .send(request, method, repo, &path, &[], Some(MANIFEST_ACCEPT))
            .await?;
        successful(response, || Error::ManifestUnknown(reference.to_string()))
    }

    /// A manifest's digest, size and media type by a `HEAD`: `None` when the upstream does
    /// not name the digest (then only a `GET` tells).
    pub(crate) async fn manifest_info(
        &self,
        repo: &RepositoryName,
        reference: &Reference,
    ) -> Result<Option<ManifestInfo>> {
        let response = self
            .manifest_request(UpstreamRequest::ManifestInfo, Method::HEAD, repo, reference)
            .await?;
        let headers = response.headers();
        let (Some(digest), Some(size), Some(media_type)) = (
            content_digest(headers),
            headers
                .get(header::CONTENT_LENGTH)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.parse().ok()),
            content_type(headers),
        ) else {
            return Ok(None);
        };
        if let Reference::Digest(asked) = reference
            && asked != &digest
        {
            return Err(bad_answer(
                "the upstream registry named another digest than the one asked for",
            ));
        }
        Ok(Some(ManifestInfo {
            digest,
            size,
            media_type,
        }))
    }

    /// A manifest's bytes (at most `limit`), verified: by digest against that digest, by
    /// tag against the `Docker-Content-Digest` the upstream sent (sha256 when it sent none).
    pub(crate) async fn manifest(
        &self,
        repo: &RepositoryName,
        reference: &Reference,
        limit: usize,
    ) -> Result<crate::storage::Manifest> {
        let response = self
            .manifest_request(UpstreamRequest::Manifest, Method::GET, repo, reference)
            .await?;
        let named = content_digest(response.headers());
        let declared_type = content_type(response.headers());
        let bytes = read_limited(response, limit).await?;
        let expected = match reference {
            Reference::Digest(d) => Some(d.clone()),
            Reference::Tag(_) => named,
        };
        let algorithm = expected
            .as_ref()
            .map_or(DigestAlgorithm::Sha256, Digest::algorithm);
        let digest = Digest::compute(algorithm, &bytes);
        if expected.is_some_and(|e| e != digest) {
            return Err(bad_answer(
                "the upstream registry sent a manifest that does not match its digest",
            ));
        }
        let media_type = crate::oci::manifest::inspect(&bytes, declared_type.as_deref())
            .map_err(|_| bad_answer("the upstream registry sent an invalid manifest"))?
            .media_type;
        Ok(crate::storage::Manifest {
            info: ManifestInfo {
                digest,
                size: bytes.len() as u64,
                media_type,
            },
            bytes,
        })
    }

    /// A blob's size by a `HEAD`.
    pub(crate) async fn blob_size(&self, repo: &RepositoryName, digest: &Digest) -> Result<u64> {
        let response = self
            .send(
                UpstreamRequest::BlobSize,
                Method::HEAD,
                repo,
                &format!("blobs/{digest}"),
                &[],
                None,
            )
            .await?;
        let response = successful(response, || Error::BlobUnknown(digest.clone()))?;
        response
            .headers()
            .get(header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse().ok())
            .ok_or_else(|| bad_answer("the upstream registry did not tell the blob's size"))
    }

    /// A blob's bytes, as the upstream streams them (redirects followed; `Authorization` is
    /// not sent to another host).
    pub(crate) async fn blob(
        &self,
        repo: &RepositoryName,
        digest: &Digest,
    ) -> Result<reqwest::Response> {
        let response = self
            .send(
                UpstreamRequest::Blob,
                Method::GET,
                repo,
                &format!("blobs/{digest}"),
                &[],
                None,
            )
            .await?;
        successful(response, || Error::BlobUnknown(digest.clone()))
    }

    /// One page of a repository's tags (spec "Listing Tags"); `has_more` when the upstream
    /// linked a next page.
    pub(crate) async fn tags(
        &self,
        repo: &RepositoryName,
        n: Option<usize>,
        last: Option<&str>,
    ) -> Result<TagList> {
        let n_text = n.map(|n| n.to_string());
        let query: Vec<(&str, &str)> = [("n", n_text.as_deref()), ("last", last)]
            .into_iter()
            .filter_map(|(k, v)| Some((k, v?)))
            .collect();
        let response = self
            .send(
                UpstreamRequest::Tags,
                Method::GET,
                repo,
                "tags/list",
                &query,
                None,
            )
            .await?;
        let response = successful(response, || Error::NameUnknown(repo.to_string()))?;
        let has_more = response.headers().contains_key(header::LINK);
        let body = read_limited(response, LIST_LIMIT).await?;
        let answer: TagsAnswer = serde_json::from_slice(&body)
            .map_err(|_| bad_answer("the upstream registry sent an invalid tag list"))?;
        // Only tags a push could have made: they are written into the answer's `Link`.
        let mut tags: Vec<String> = (answer.tags.unwrap_or_default().into_iter())
            .filter(|t| crate::oci::Tag::parse(t).is_ok())
            .collect();
        let mut has_more = has_more;
        if let Some(n) = n
            && tags.len() > n
        {
            tags.truncate(n);
            has_more = true;
        }
        Ok(TagList { tags, has_more })
    }

    /// The referrers of `subject` (spec "Listing Referrers"); `None` when the upstream does
    /// not offer the API (`404`).
    pub(crate) async fn referrers(
        &self,
        repo: &RepositoryName,
        subject: &Digest,
        artifact_type: Option<&str>,
    ) -> Result<Option<Vec<Descriptor>>> {
        let path = format!("referrers/{subject}");
        let query: Vec<(&str, &str)> = artifact_type
            .map(|t| ("artifactType", t))
            .into_iter()
            .collect();
        let response = self
            .send(
                UpstreamRequest::Referrers,
                Method::GET,
                repo,
                &path,
                &query,
                None,
            )
            .await?;
        if response.status() == StatusCode::NOT_FOUND {
            return Ok(None);
        }
        let response = successful(response, || Error::NameUnknown(repo.to_string()))?;
        let body = read_limited(response, LIST_LIMIT).await?;
        let answer: IndexAnswer = serde_json::from_slice(&body)
            .map_err(|_| bad_answer("the upstream registry sent an invalid referrers list"))?;
        Ok(Some(answer.manifests))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn missing() -> Error {
        Error::BlobUnknown(Digest::compute(DigestAlgorithm::Sha256, b""))
    }

    /// What each upstream status becomes for the cache's client (and whether the cache may
    /// answer from its store instead: throttling and failures, never a refusal).
    #[test]
    fn upstream_statuses_map_to_spec_errors() {
        let of = |code: u16| status_error(StatusCode::from_u16(code).unwrap(), missing);
        assert!(matches!(of(404), Error::BlobUnknown(_)));
        assert!(matches!(of(401), Error::Denied(_)));
        assert!(matches!(of(403), Error::Denied(_)));
        assert!(matches!(of(429), Error::TooManyRequests(_)));
        for code in [500, 502, 503] {
            let e = of(code);
            assert_eq!(e.http_status(), 503, "{code}");
            assert!(e.is_retryable());
        }
        // A refusal of what was asked will not pass: not worth a retry, nor a stale answer.
        for code in [400, 405, 418] {
            let e = of(code);
            assert_eq!(e.http_status(), 500, "{code}");
            assert!(!e.is_retryable());
        }
        assert!(!of(403).is_retryable());
    }
}
