//! The `[tls]` and `[limits]` sections of the binary's configuration file.
//!
//! ```toml
//! [tls]
//! cert = "/etc/marina/cert.pem"       # or --tls-cert / MARINA_TLS_CERT
//! key = "/etc/marina/key.pem"         # or --tls-key / MARINA_TLS_KEY
//! client_ca = "/etc/marina/ca.pem"    # optional mTLS, or --tls-client-ca
//!
//! [limits]
//! max_connections = 1024
//! header_read_timeout = "30s"        # or whole seconds: 30
//! idle_timeout = "2m"                 # or whole seconds: 120
//! max_upload_sessions = 256           # per repository, 0 = no bound
//! drain_limit = 33554432              # bytes of a refused body read before answering
//! ```

use std::path::PathBuf;
use std::time::Duration;

use serde::de::Error as _;
use serde::{Deserialize, Deserializer};

use super::{ServeOptions, TlsFiles};
use crate::registry::RegistryOptions;

/// `[tls]`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsConfig {
    /// Certificate chain (PEM).
    pub cert: Option<PathBuf>,
    /// Private key (PEM).
    pub key: Option<PathBuf>,
    /// CA bundle for client certificates (PEM).
    pub client_ca: Option<PathBuf>,
}

impl TlsConfig {
    /// The files, when TLS is configured; an error when only one of `cert`/`key` is set.
    pub fn files(&self) -> Result<Option<TlsFiles>, String> {
        match (&self.cert, &self.key) {
            (Some(cert), Some(key)) => Ok(Some(TlsFiles {
                cert: cert.clone(),
                key: key.clone(),
                client_ca: self.client_ca.clone(),
            })),
            (None, None) if self.client_ca.is_none() => Ok(None),
            _ => Err("TLS needs both a certificate (--tls-cert) and a key (--tls-key)".into()),
        }
    }
}

/// `[limits]`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LimitsConfig {
    /// Most connections at once (at least 1).
    #[serde(default, deserialize_with = "at_least_one")]
    pub max_connections: Option<usize>,
    /// Time allowed for the TLS handshake, a new connection's first byte and each request
    /// header.
    #[serde(default, deserialize_with = "timeout")]
    pub header_read_timeout: Option<Duration>,
    /// Time without traffic after which a connection is closed.
    #[serde(default, deserialize_with = "timeout")]
    pub idle_timeout: Option<Duration>,
    /// Upload sessions per repository (0: no bound).
    pub max_upload_sessions: Option<usize>,
    /// Bytes of an unread request body drained before answering.
    pub drain_limit: Option<u64>,
}

/// A timeout of `[limits]`: whole seconds (`30`) or a duration (`"30s"`, `"2m"`, as every
/// other duration of the configuration is written). Zero is refused: it would cut every
/// connection at once.
fn timeout<'de, D: Deserializer<'de>>(de: D) -> Result<Option<Duration>, D::Error> {
    match crate::config_duration::optional(de)? {
        Some(d) if d.is_zero() => Err(D::Error::custom("a timeout must be more than 0s")),
        other => Ok(other),
    }
}

/// `max_connections`: at least 1 (0 would let no client in).
fn at_least_one<'de, D: Deserializer<'de>>(de: D) -> Result<Option<usize>, D::Error> {
    match usize::deserialize(de)? {
        0 => Err(D::Error::custom(
            "must be at least 1 (0 would let no client connect)",
        )),
        n => Ok(Some(n)),
    }
}

impl LimitsConfig {
    /// The connection limits.
    pub fn serve_options(&self) -> ServeOptions {
        let d = ServeOptions::default();
        ServeOptions {
            max_connections: self.max_connections.unwrap_or(d.max_connections),
            header_read_timeout: self.header_read_timeout.unwrap_or(d.header_read_timeout),
            idle_timeout: self.idle_timeout.unwrap_or(d.idle_timeout),
            ..d
        }
    }

    /// Applies the HTTP-layer limits to `options`.
    pub fn apply(&self, options: &mut RegistryOptions) {
        if let Some(n) = self.max_upload_sessions {
            options.max_upload_sessions = n;
        }
        if let Some(n) = self.drain_limit {
            options.drain_limit = n;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits(text: &str) -> Result<LimitsConfig, toml::de::Error> {
        toml::from_str(text)
    }

    #[test]
    fn timeouts_are_seconds_or_durations() {
        let l = limits("header_read_timeout = 3\nidle_timeout = \"1m 30s\"").unwrap();
        let o = l.serve_options();
        assert_eq!(o.header_read_timeout, Duration::from_secs(3));
        assert_eq!(o.idle_timeout, Duration::from_secs(90));
        let o = limits("").unwrap().serve_options();
        assert_eq!(o.idle_timeout, super::super::DEFAULT_IDLE_TIMEOUT);
        for bad in [
            "idle_timeout = 0",
            "idle_timeout = \"0s\"",
            "idle_timeout = \"soon\"",
            "idle_timeout = -1",
            "idle_timeout = 1.5",
            "max_connections = 0",
            "max_connections = -1",
        ] {
            assert!(limits(bad).is_err(), "{bad}");
        }
        // Errors say what is wrong in words, not in serde's terms.
        let err = limits("header_read_timeout = -5").unwrap_err().to_string();
        assert!(err.contains("cannot be negative"), "{err}");
        let err = limits("idle_timeout = true").unwrap_err().to_string();
        assert!(err.contains("whole seconds (30) or a duration"), "{err}");
        let err = limits("max_connections = 0").unwrap_err().to_string();
        assert!(err.contains("at least 1"), "{err}");
        assert_eq!(
            limits("max_connections = 1")
                .unwrap()
                .serve_options()
                .max_connections,
            1
        );
        let err = limits("header_read_timeout = \"soon\"").unwrap_err();
        assert!(err.to_string().contains("not a duration"), "{err}");
    }
}
