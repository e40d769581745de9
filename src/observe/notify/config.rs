//! The `[notifications]` configuration: endpoints to POST events to.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::Deserialize;

/// An invalid `[notifications]` setting: the field and what is wrong with it (never a
/// header's value).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid notifications configuration: {field}: {message}")]
pub struct ConfigError {
    /// The setting at fault, e.g. `notifications.endpoints.url`.
    pub field: &'static str,
    /// What is wrong, naming the endpoint.
    pub message: String,
}

type Result<T> = std::result::Result<T, ConfigError>;

/// `[notifications]`: where events go.
///
/// ```toml
/// [[notifications.endpoints]]
/// name = "ci"
/// url = "https://hooks.example.com/registry"
/// headers = { Authorization = "Bearer s3cr3t" }
/// timeout = "500ms"
/// threshold = 5
/// backoff = "1s"
/// ```
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct NotificationsConfig {
    /// The endpoints; every event goes to each one that does not ignore it.
    #[serde(default)]
    pub endpoints: Vec<EndpointConfig>,
}

/// One `[[notifications.endpoints]]` entry.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct EndpointConfig {
    /// A name, unique among the endpoints: the `endpoint` label of its metrics, and in logs.
    pub name: String,
    /// Where events are POSTed (`http://` or `https://`).
    pub url: String,
    /// Headers added to every POST, e.g. `Authorization`. A value may be a string or a list
    /// of strings (Distribution's form). Their values never appear in logs.
    #[serde(default)]
    pub headers: BTreeMap<String, HeaderValues>,
    /// How long one POST may take (`"500ms"`, `"2s"`, `"1m"`; default `"5s"`).
    #[serde(default, deserialize_with = "crate::config_duration::optional")]
    pub timeout: Option<Duration>,
    /// Consecutive failures after which the dispatcher waits `backoff` before trying again
    /// (default 3).
    #[serde(default)]
    pub threshold: Option<u32>,
    /// The wait after `threshold` consecutive failures, doubled while failures go on, up to
    /// a minute (default `"1s"`).
    #[serde(default, deserialize_with = "crate::config_duration::optional")]
    pub backoff: Option<Duration>,
    /// Events held while the endpoint is slow or down (default 8192, about 5 MiB); when full,
    /// new events are dropped and counted
    /// (`marina_notification_events_total{outcome="dropped"}`).
    #[serde(default)]
    pub queue_size: Option<usize>,
    /// The most events sent in one envelope (default 256). After the first queued event, the
    /// sender waits until this many are queued, or `flush_interval` has passed, and POSTs
    /// them together.
    #[serde(default)]
    pub max_batch: Option<usize>,
    /// How long a queued event may wait for others to share its envelope (default
    /// `"100ms"`; `"0ms"` sends what is queued right away).
    #[serde(default, deserialize_with = "crate::config_duration::optional")]
    pub flush_interval: Option<Duration>,
    /// Events this endpoint does not want.
    #[serde(default)]
    pub ignore: IgnoreConfig,
}

/// `ignore` of an endpoint: actions (`pull`, `push`, `mount`, `delete`) and target media
/// types whose events are not sent to it.
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct IgnoreConfig {
    /// Actions not sent, e.g. `["pull"]` for an endpoint interested in changes only.
    #[serde(default)]
    pub actions: Vec<String>,
    /// Target media types not sent, e.g. `["application/octet-stream"]` (blobs).
    #[serde(default)]
    pub mediatypes: Vec<String>,
}

/// A header's value, or its values.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(untagged)]
pub enum HeaderValues {
    /// One value.
    One(String),
    /// Several values, each sent as its own header line.
    Many(Vec<String>),
}

impl HeaderValues {
    /// The values, in order.
    pub fn values(&self) -> &[String] {
        match self {
            Self::One(v) => std::slice::from_ref(v),
            Self::Many(v) => v,
        }
    }
}

impl EndpointConfig {
    /// What logs show of [`url`](Self::url): its scheme, host and port only. A webhook's
    /// path, query or user info often holds its secret (a token in the path, `?key=`).
    pub fn logged_url(&self) -> String {
        match reqwest::Url::parse(&self.url) {
            Ok(url) => url.origin().ascii_serialization(),
            Err(_) => "(invalid URL)".to_owned(),
        }
    }
}

/// The defaults of [`EndpointConfig`]'s optional fields.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(5);
/// Default [`EndpointConfig::threshold`].
pub const DEFAULT_THRESHOLD: u32 = 3;
/// Default [`EndpointConfig::backoff`].
pub const DEFAULT_BACKOFF: Duration = Duration::from_secs(1);
/// The longest wait between retries ([`EndpointConfig::backoff`] doubles up to it).
pub const MAX_BACKOFF: Duration = Duration::from_secs(60);
/// Default [`EndpointConfig::queue_size`].
/// At 60 000 pulls a second, 8192 events cover 0.13 s of a POST taking longer than usual
/// (the first bench of batching, with 1024, dropped events at such moments).
pub const DEFAULT_QUEUE_SIZE: usize = 8192;
/// Default [`EndpointConfig::max_batch`].
pub const DEFAULT_MAX_BATCH: usize = 256;
/// Default [`EndpointConfig::flush_interval`].
pub const DEFAULT_FLUSH_INTERVAL: Duration = Duration::from_millis(100);

const ACTIONS: [&str; 4] = ["pull", "push", "mount", "delete"];

fn invalid(field: &'static str, message: String) -> ConfigError {
    ConfigError { field, message }
}

impl NotificationsConfig {
    /// Checks every endpoint: unique non-empty names, an `http(s)://` URL, header names and
    /// values that are valid in HTTP, positive timeout, threshold, queue size and batch size, known
    /// actions. Errors name the endpoint and the field.
    pub fn validate(&self) -> Result<()> {
        let mut names = std::collections::BTreeSet::new();
        for e in &self.endpoints {
            let name = &e.name;
            if name.trim().is_empty() {
                return Err(invalid(
                    "notifications.endpoints.name",
                    "must not be empty".into(),
                ));
            }
            if !names.insert(name.as_str()) {
                return Err(invalid(
                    "notifications.endpoints.name",
                    format!("{name:?} is used by two endpoints"),
                ));
            }
            let url = reqwest::Url::parse(&e.url)
                .map_err(|err| invalid("notifications.endpoints.url", format!("{name}: {err}")))?;
            if !matches!(url.scheme(), "http" | "https") || url.host_str().is_none() {
                return Err(invalid(
                    "notifications.endpoints.url",
                    format!("{name}: must be an http:// or https:// URL"),
                ));
            }
            for (header, values) in &e.headers {
                let valid_name = reqwest::header::HeaderName::from_bytes(header.as_bytes()).is_ok();
                let valid_values = values
                    .values()
                    .iter()
                    .all(|v| reqwest::header::HeaderValue::from_str(v).is_ok());
                if !valid_name || !valid_values {
                    // The value may be a secret: name the header only.
                    return Err(invalid(
                        "notifications.endpoints.headers",
                        format!("{name}: header {header:?} is not a valid HTTP header"),
                    ));
                }
            }
            if e.timeout.is_some_and(|t| t.is_zero()) {
                return Err(invalid(
                    "notifications.endpoints.timeout",
                    format!("{name}: must be positive"),
                ));
            }
            if let Some(backoff) = e.backoff
                && (backoff.is_zero() || backoff > MAX_BACKOFF)
            {
                return Err(invalid(
                    "notifications.endpoints.backoff",
                    format!(
                        "{name}: must be more than 0s and at most 1m (0s would retry a down \
                         endpoint without pause)"
                    ),
                ));
            }
            if e.threshold == Some(0) {
                return Err(invalid(
                    "notifications.endpoints.threshold",
                    format!("{name}: must be at least 1"),
                ));
            }
            if e.queue_size == Some(0) {
                return Err(invalid(
                    "notifications.endpoints.queue_size",
                    format!("{name}: must be at least 1"),
                ));
            }
            if e.max_batch == Some(0) {
                return Err(invalid(
                    "notifications.endpoints.max_batch",
                    format!("{name}: must be at least 1"),
                ));
            }
            if let Some(a) = e
                .ignore
                .actions
                .iter()
                .find(|a| !ACTIONS.contains(&a.as_str()))
            {
                return Err(invalid(
                    "notifications.endpoints.ignore.actions",
                    format!("{name}: unknown action {a:?} (pull, push, mount, delete)"),
                ));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> NotificationsConfig {
        toml::from_str(text).unwrap()
    }

    #[test]
    fn endpoints_parse_with_defaults_and_distribution_forms() {
        let c = parse(
            r#"
            [[endpoints]]
            name = "a"
            url = "http://127.0.0.1:9/hook"
            headers = { Authorization = "Bearer x", X-Multi = ["1", "2"] }
            timeout = "500ms"
            threshold = 5
            backoff = "2s"
            ignore = { actions = ["pull"] }
            [[endpoints]]
            name = "b"
            url = "https://hooks.example.com/"
            "#,
        );
        c.validate().unwrap();
        let a = &c.endpoints[0];
        assert_eq!(a.timeout, Some(Duration::from_millis(500)));
        assert_eq!(a.backoff, Some(Duration::from_secs(2)));
        assert_eq!(a.headers["X-Multi"].values(), ["1", "2"]);
        assert_eq!(a.ignore.actions, ["pull"]);
        assert_eq!(c.endpoints[1].timeout, None);
    }

    #[test]
    fn logs_show_an_endpoint_s_origin_only() {
        let c = parse(
            r#"
            [[endpoints]]
            name = "hook"
            url = "https://user:pw@hooks.example.com:8443/services/T0/SECRET?key=SECRET"
            "#,
        );
        assert_eq!(
            c.endpoints[0].logged_url(),
            "https://hooks.example.com:8443"
        );
    }

    #[test]
    fn invalid_endpoints_are_named() {
        // One endpoint named "a" on http://x/ with each line below added.
        let one = |line: &str| format!("[[endpoints]]\nname = \"a\"\nurl = \"http://x/\"\n{line}");
        let cases = [
            (
                "[[endpoints]]\nname = \"a\"\nurl = \"ftp://x/\"".to_owned(),
                "notifications.endpoints.url",
            ),
            (
                one("[[endpoints]]\nname = \"a\"\nurl = \"http://y/\""),
                "notifications.endpoints.name",
            ),
            (one("threshold = 0"), "notifications.endpoints.threshold"),
            (one("backoff = \"0s\""), "notifications.endpoints.backoff"),
            (one("backoff = \"2m\""), "notifications.endpoints.backoff"),
            (
                one("ignore = { actions = [\"pul\"] }"),
                "notifications.endpoints.ignore.actions",
            ),
            (
                one("headers = { \"Bad Header\" = \"secret-value\" }"),
                "notifications.endpoints.headers",
            ),
        ];
        for (text, field) in cases {
            let err = parse(&text).validate().unwrap_err();
            assert_eq!(err.field, field, "{text}: {err}");
            assert!(!err.to_string().contains("secret-value"));
        }
        assert!(
            toml::from_str::<NotificationsConfig>(
                "[[endpoints]]\nname = \"a\"\nurl = \"http://x/\"\ntimeout = \"soon\""
            )
            .is_err()
        );
    }
}
