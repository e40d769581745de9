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
//! header_read_timeout = 30            # seconds
//! idle_timeout = 120                  # seconds
//! max_upload_sessions = 256           # per repository, 0 = no bound
//! drain_limit = 33554432              # bytes of a refused body read before answering
//! ```

use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;

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
    /// Most connections at once.
    pub max_connections: Option<usize>,
    /// Seconds allowed for the TLS handshake and each request header.
    pub header_read_timeout: Option<u64>,
    /// Seconds without traffic after which a connection is closed.
    pub idle_timeout: Option<u64>,
    /// Upload sessions per repository (0: no bound).
    pub max_upload_sessions: Option<usize>,
    /// Bytes of an unread request body drained before answering.
    pub drain_limit: Option<u64>,
}

impl LimitsConfig {
    /// The connection limits.
    pub fn serve_options(&self) -> ServeOptions {
        let d = ServeOptions::default();
        ServeOptions {
            max_connections: self.max_connections.unwrap_or(d.max_connections),
            header_read_timeout: self
                .header_read_timeout
                .map_or(d.header_read_timeout, Duration::from_secs),
            idle_timeout: self
                .idle_timeout
                .map_or(d.idle_timeout, Duration::from_secs),
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
