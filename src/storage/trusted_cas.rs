//! The CAs the object-store clients trust, checked when a driver opens.
//!
//! Both clients verify an `https://` store's certificate against the system's roots, or,
//! when `SSL_CERT_FILE` or `SSL_CERT_DIR` is set, against the certificates found there only;
//! both load them with `rustls-native-certs`, as this check does, when they are built,
//! whatever the endpoint's scheme (the S3 SDK also for its credential providers' HTTPS
//! clients). A file that is missing, unreadable or holds no certificate leaves nothing
//! trusted, and the clients then fail to build: the GCS client with an error about "the
//! system", the S3 SDK with a panic. Found here first, it is a configuration error naming
//! the variable.

use crate::error::{Error, Result};

/// The variables that replace the system's roots.
const VARIABLES: [&str; 2] = ["SSL_CERT_FILE", "SSL_CERT_DIR"];

/// Checks the CAs the store clients will trust when the environment names them: at least
/// one certificate must load. Files that fail to load beside ones that do are logged, not
/// refused (a CA directory may hold other files).
pub(crate) fn check() -> Result<()> {
    let named: Vec<&'static str> = VARIABLES
        .into_iter()
        .filter(|v| std::env::var_os(v).is_some_and(|value| !value.is_empty()))
        .collect();
    if named.is_empty() {
        return Ok(());
    }
    let loaded = rustls_native_certs::load_native_certs();
    let errors = loaded
        .errors
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join("; ");
    if loaded.certs.is_empty() {
        let why = if errors.is_empty() {
            "no PEM `BEGIN CERTIFICATE` block".to_owned()
        } else {
            errors
        };
        return Err(Error::Config {
            field: named[0],
            message: format!(
                "no CA certificate to check the store's TLS certificate against ({why})"
            ),
        });
    }
    if !errors.is_empty() {
        tracing::warn!(
            trusted = loaded.certs.len(),
            %errors,
            "some of the CA certificates named by {} could not be loaded",
            named.join(" and ")
        );
    }
    Ok(())
}
