//! The typed registry client every HTTP test speaks through: a base URL, a reqwest client and
//! an optional default `Authorization` header. The typed calls of the spec's endpoints live in
//! [`super::blobs`], [`super::uploads`], [`super::manifests`] and [`super::discovery`]; what
//! they do not cover goes through [`Registry::request`].

use std::future::Future;

use reqwest::header::HeaderValue;
use reqwest::{Method, RequestBuilder, Response};

/// A client of one registry.
#[derive(Clone)]
pub struct Registry {
    /// The base URL, without a trailing slash: `http://127.0.0.1:PORT`.
    pub base: String,
    /// The HTTP client (it never follows redirects, so a test sees each answer).
    pub client: reqwest::Client,
    /// Sent as `Authorization` with every request, when set.
    pub authorization: Option<HeaderValue>,
}

impl Registry {
    /// A client of the registry at `base` (`http://host:port` or `https://host:port`).
    pub fn new(base: impl Into<String>) -> Self {
        let client = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .expect("HTTP client");
        Self::with_client(base, client)
    }

    /// A client of the registry at `base` over a client built by the caller (TLS roots, ...).
    pub fn with_client(base: impl Into<String>, client: reqwest::Client) -> Self {
        Self {
            base: base.into().trim_end_matches('/').to_owned(),
            client,
            authorization: None,
        }
    }

    /// The same client, sending `value` as `Authorization` with every request
    /// (`Basic ...`, `Bearer ...`).
    pub fn authorized(&self, value: &str) -> Self {
        Self {
            authorization: Some(HeaderValue::from_str(value).expect("header value")),
            ..self.clone()
        }
    }

    /// Absolute URL of `path` (or of a `Location` value: relative or absolute).
    pub fn url(&self, path: &str) -> String {
        if path.starts_with("http://") || path.starts_with("https://") {
            path.to_owned()
        } else {
            format!("{}{}", self.base, path)
        }
    }

    /// Appends a query parameter to `location`, keeping any query it already has.
    pub fn with_query(&self, location: &str, param: &str) -> String {
        let url = self.url(location);
        let separator = if url.contains('?') { '&' } else { '?' };
        format!("{url}{separator}{param}")
    }

    /// The escape hatch: a request of any shape to `path` (or `Location`), with the default
    /// `Authorization` already set.
    pub fn request(&self, method: Method, path: &str) -> RequestBuilder {
        let req = self.client.request(method, self.url(path));
        match &self.authorization {
            Some(value) => req.header(reqwest::header::AUTHORIZATION, value.clone()),
            None => req,
        }
    }

    /// `method path` without a body or headers of its own.
    pub async fn send(&self, method: Method, path: &str) -> Response {
        self.request(method, path).fetch().await
    }

    /// `GET path`, nothing else.
    pub async fn get(&self, path: &str) -> Response {
        self.send(Method::GET, path).await
    }

    /// `GET path` with one header (`Range`, `Accept`, ...).
    pub async fn get_with(&self, path: &str, name: &str, value: &str) -> Response {
        self.request(Method::GET, path)
            .header(name, value)
            .fetch()
            .await
    }
}

/// Sending a request whose transport must not fail (the test is about the answer).
pub trait Fetch {
    /// Sends the request; panics on a transport error.
    fn fetch(self) -> impl Future<Output = Response>;
}

impl Fetch for RequestBuilder {
    async fn fetch(self) -> Response {
        self.send().await.expect("the registry answers")
    }
}
