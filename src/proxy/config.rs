//! The `[proxy]` section of the binary's configuration file, and the environment variables
//! that set it.
//!
//! ```toml
//! [proxy]
//! remote_url = "https://registry-1.docker.io"   # or --proxy-remote-url / MARINA_PROXY_REMOTE_URL
//! username = "mirror"                            # or MARINA_PROXY_USERNAME
//! password = "…"                                 # or MARINA_PROXY_PASSWORD
//! connect_timeout = "10s"
//! read_timeout = "30s"
//! ```

use std::time::Duration;

use reqwest::header::HeaderValue;
use serde::Deserialize;

/// `[proxy]`: serve as a pull-through cache of the registry at `remote_url`.
#[derive(Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProxyConfig {
    /// The upstream registry, `http://` or `https://` with a host and an optional port
    /// (nothing else: the repositories are the cache's).
    pub remote_url: Option<String>,
    /// The user the cache authenticates as upstream (with `password`); anonymous without.
    pub username: Option<String>,
    /// The password (or token) of `username`. Never logged.
    pub password: Option<String>,
    /// Time allowed to connect to the upstream (default 10 s).
    #[serde(default, deserialize_with = "crate::config_duration::optional")]
    pub connect_timeout: Option<Duration>,
    /// Time the upstream may stay silent during an answer (default 30 s).
    #[serde(default, deserialize_with = "crate::config_duration::optional")]
    pub read_timeout: Option<Duration>,
    /// How long what the cache stores is kept (CNCF Distribution's `proxy.ttl`): garbage
    /// collections remove manifests stored longer ago, with their tags, and the blobs only
    /// they referenced; the next pull fetches them again. Default
    /// [`DEFAULT_TTL`] (7 days); `0s`: kept until deleted otherwise. See
    /// [`manifest_ttl`](Self::manifest_ttl).
    #[serde(default, deserialize_with = "crate::config_duration::optional")]
    pub ttl: Option<Duration>,
}

impl std::fmt::Debug for ProxyConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ProxyConfig")
            .field("remote_url", &self.remote_url)
            .field("username", &self.username)
            .field("password", &self.password.as_ref().map(|_| "<redacted>"))
            .field("connect_timeout", &self.connect_timeout)
            .field("read_timeout", &self.read_timeout)
            .field("ttl", &self.ttl)
            .finish()
    }
}

/// Default [`ProxyConfig::connect_timeout`].
pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// Default [`ProxyConfig::read_timeout`].
pub const DEFAULT_READ_TIMEOUT: Duration = Duration::from_secs(30);
/// Default [`ProxyConfig::ttl`]: 168 hours, as CNCF Distribution's proxy.
pub const DEFAULT_TTL: Duration = Duration::from_secs(168 * 3600);

/// The cache's credentials at the upstream.
#[derive(Clone)]
pub(crate) struct Credentials {
    username: String,
    password: String,
}

impl Credentials {
    /// `Authorization: Basic …` for these credentials, marked sensitive.
    pub(crate) fn basic(&self) -> HeaderValue {
        use base64::Engine as _;
        let encoded = base64::engine::general_purpose::STANDARD
            .encode(format!("{}:{}", self.username, self.password));
        let mut value =
            HeaderValue::try_from(format!("Basic {encoded}")).expect("base64 is a header value");
        value.set_sensitive(true);
        value
    }
}

impl ProxyConfig {
    /// Overrides the file's settings with `MARINA_PROXY_REMOTE_URL`,
    /// `MARINA_PROXY_USERNAME` and `MARINA_PROXY_PASSWORD` where set (read through `var`).
    pub fn apply_vars(mut self, var: impl Fn(&str) -> Option<String>) -> Self {
        if let Some(v) = var("MARINA_PROXY_REMOTE_URL") {
            self.remote_url = Some(v);
        }
        if let Some(v) = var("MARINA_PROXY_USERNAME") {
            self.username = Some(v);
        }
        if let Some(v) = var("MARINA_PROXY_PASSWORD") {
            self.password = Some(v);
        }
        self
    }

    /// Whether a pull-through cache is configured.
    pub fn is_enabled(&self) -> bool {
        self.remote_url.is_some()
    }

    /// The [`GcOptions::manifest_ttl`](crate::storage::GcOptions::manifest_ttl) of the
    /// cache's store: [`ttl`](Self::ttl), [`DEFAULT_TTL`] when unset, `None` for `0s`.
    pub fn manifest_ttl(&self) -> Option<Duration> {
        match self.ttl {
            None => Some(DEFAULT_TTL),
            Some(ttl) if ttl.is_zero() => None,
            Some(ttl) => Some(ttl),
        }
    }

    /// Checks the settings: an `http`/`https` URL of a host (no credentials, path or query
    /// in it), a username and a password together or neither. Returns the upstream's base
    /// URL (`scheme://host[:port]`).
    pub fn validate(&self) -> Result<Option<String>, String> {
        let Some(url) = &self.remote_url else {
            if self.username.is_some() || self.password.is_some() {
                return Err("proxy: credentials given without remote_url".into());
            }
            if self.ttl.is_some() {
                return Err("proxy.ttl: applies to a pull-through cache (remote_url) only".into());
            }
            return Ok(None);
        };
        let parsed =
            reqwest::Url::parse(url).map_err(|e| format!("proxy.remote_url: not a URL ({e})"))?;
        if !matches!(parsed.scheme(), "http" | "https") || parsed.host_str().is_none() {
            return Err("proxy.remote_url: must be an http:// or https:// URL of a host".into());
        }
        if !parsed.username().is_empty() || parsed.password().is_some() {
            return Err(
                "proxy.remote_url: put credentials in proxy.username and proxy.password \
                 (or MARINA_PROXY_USERNAME / MARINA_PROXY_PASSWORD), not in the URL"
                    .into(),
            );
        }
        if parsed.path() != "/" || parsed.query().is_some() || parsed.fragment().is_some() {
            return Err(
                "proxy.remote_url: give the registry's address only (scheme, host, port): \
                 repositories keep their names through the cache"
                    .into(),
            );
        }
        if self.username.is_some() != self.password.is_some() {
            return Err("proxy: username and password go together".into());
        }
        let zero = |d: Option<Duration>| d.is_some_and(|d| d.is_zero());
        if zero(self.connect_timeout) || zero(self.read_timeout) {
            return Err("proxy: a timeout must be more than 0s".into());
        }
        Ok(Some(parsed.origin().ascii_serialization()))
    }

    /// The credentials, when both halves are set.
    pub(crate) fn credentials(&self) -> Option<Credentials> {
        Some(Credentials {
            username: self.username.clone()?,
            password: self.password.clone()?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn with_url(url: &str) -> ProxyConfig {
        ProxyConfig {
            remote_url: Some(url.into()),
            ..ProxyConfig::default()
        }
    }

    #[test]
    fn a_registry_address_is_accepted_and_normalised() {
        assert_eq!(
            with_url("https://registry-1.docker.io").validate(),
            Ok(Some("https://registry-1.docker.io".into()))
        );
        assert_eq!(
            with_url("http://127.0.0.1:5000/").validate(),
            Ok(Some("http://127.0.0.1:5000".into()))
        );
        assert_eq!(ProxyConfig::default().validate(), Ok(None));
    }

    #[test]
    fn what_the_cache_stores_is_kept_a_week_unless_told_otherwise() {
        let mut c = with_url("https://host");
        assert_eq!(c.manifest_ttl(), Some(DEFAULT_TTL));
        c.ttl = Some(Duration::from_secs(3600));
        assert_eq!(c.manifest_ttl(), Some(Duration::from_secs(3600)));
        c.ttl = Some(Duration::ZERO);
        assert_eq!(c.manifest_ttl(), None);
    }

    #[test]
    fn urls_that_are_not_a_registry_address_are_refused() {
        for url in [
            "registry-1.docker.io",
            "ftp://host",
            "https://user:pw@host",
            "https://host/v2/library",
            "https://host?x=1",
        ] {
            assert!(with_url(url).validate().is_err(), "{url}");
        }
    }

    #[test]
    fn credentials_go_together_and_never_show_in_debug() {
        let mut c = with_url("https://host");
        c.username = Some("mirror".into());
        assert!(c.validate().is_err());
        c.password = Some("s3cret-value".into());
        assert!(c.validate().is_ok());
        assert!(!format!("{c:?}").contains("s3cret-value"));
        let only_creds = ProxyConfig {
            username: Some("u".into()),
            password: Some("p".into()),
            ..ProxyConfig::default()
        };
        assert!(only_creds.validate().is_err());
    }

    #[test]
    fn the_environment_overrides_the_file() {
        let c = with_url("https://file").apply_vars(|k| match k {
            "MARINA_PROXY_REMOTE_URL" => Some("https://env".into()),
            "MARINA_PROXY_PASSWORD" => Some("p".into()),
            _ => None,
        });
        assert_eq!(c.remote_url.as_deref(), Some("https://env"));
        assert_eq!(c.password.as_deref(), Some("p"));
        assert_eq!(c.username, None);
    }

    #[test]
    fn basic_credentials_are_encoded_and_sensitive() {
        let c = Credentials {
            username: "aladdin".into(),
            password: "opensesame".into(),
        };
        let v = c.basic();
        assert_eq!(v.to_str().unwrap(), "Basic YWxhZGRpbjpvcGVuc2VzYW1l");
        assert!(v.is_sensitive());
    }
}
