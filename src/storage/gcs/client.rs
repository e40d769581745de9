//! Client setup: a `gcloud-storage` client from a [`GcsConfig`], and the same credentials for
//! the driver's streamed blob reads.
//!
//! - Credentials: Application Default Credentials through `gcloud-auth`
//!   (`GOOGLE_APPLICATION_CREDENTIALS`, the gcloud user credentials file, workload identity,
//!   the metadata server), or none at all with [`GcsConfig::anonymous`] (emulators).
//! - Endpoint: [`GcsConfig::endpoint`], `https://storage.googleapis.com` by default.
//! - HTTP: one `reqwest` client (connection pool) shared by the crate's calls and the
//!   driver's streamed reads, with a connect timeout. Requests are retried by the driver
//!   (`objects.rs`), not by the client.

use std::sync::Arc;

use gcloud_storage::client::google_cloud_auth::project::Config as AuthConfig;
use gcloud_storage::client::google_cloud_auth::token::DefaultTokenSourceProvider;
use gcloud_storage::client::{Client, ClientConfig};
use gcloud_storage::http::storage_client::SCOPES;
use token_source::{TokenSource, TokenSourceProvider};

use super::config::GcsConfig;
use super::presign::{Signer, UrlBase};
use crate::error::{Error, Result};

/// How long opening a connection may take before the attempt fails (retryably): an
/// endpoint that does not answer fails requests instead of holding them.
const CONNECT_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(5);

/// What the backend talks to GCS with.
#[derive(Clone)]
pub(crate) struct Connection {
    /// The crate's client (uploads, compose, list, metadata, delete).
    pub(crate) client: Client,
    /// The HTTP client underneath it, for streamed reads.
    pub(crate) http: reqwest_gcs::Client,
    /// Where credentials come from; `None` when anonymous.
    pub(crate) tokens: Option<Arc<dyn TokenSource>>,
    /// `<endpoint>/storage/v1`.
    pub(crate) api: String,
    /// The key signed URLs are made with, if the credentials hold one.
    pub(crate) signer: Option<Signer>,
    /// Where signed URLs point.
    pub(crate) url_base: UrlBase,
}

impl std::fmt::Debug for Connection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Connection")
            .field("api", &self.api)
            .field("anonymous", &self.tokens.is_none())
            .field("signer", &self.signer)
            .finish_non_exhaustive()
    }
}

/// Builds the connection. With credentials this looks them up (reading the credentials file,
/// or asking the metadata server), and fails with a configuration error when there are none.
pub(crate) async fn connect(config: &GcsConfig) -> Result<Connection> {
    let http = reqwest_gcs::Client::builder()
        .connect_timeout(CONNECT_TIMEOUT)
        .build()
        .map_err(|e| Error::backend_source(super::error::DRIVER, "building the HTTP client", e))?;
    let mut client_config = ClientConfig {
        storage_endpoint: config.endpoint().to_owned(),
        http: Some(reqwest_middleware::ClientBuilder::new(http.clone()).build()),
        ..ClientConfig::default()
    };
    let mut signer = None;
    let tokens = if config.anonymous {
        client_config = client_config.anonymous();
        None
    } else {
        let provider = DefaultTokenSourceProvider::new(AuthConfig::default().with_scopes(&SCOPES))
            .await
            .map_err(
                |e| match std::env::var_os("GOOGLE_APPLICATION_CREDENTIALS") {
                    // A file was named: what is wrong is the file (or the token exchange with it),
                    // not the absence of credentials.
                    Some(_) => Error::Config {
                        field: "GOOGLE_APPLICATION_CREDENTIALS",
                        message: format!(
                            "the credentials file could not be used ({e}): it must hold a \
                         service-account key or authorized-user credentials"
                        ),
                    },
                    None => Error::Config {
                        field: "gcs.anonymous",
                        message: format!(
                            "no Application Default Credentials ({e}); set \
                         GOOGLE_APPLICATION_CREDENTIALS, run on Google Cloud, or set \
                         GCS_ANONYMOUS=true for an emulator"
                        ),
                    },
                },
            )?;
        // A service-account key file: its key signs URLs (`presign`).
        signer = provider.source_credentials.as_ref().and_then(|file| {
            Some(Signer::new(
                file.client_email.clone()?,
                file.private_key.clone()?,
            ))
        });
        let tokens = provider.token_source();
        client_config.project_id = provider.project_id.clone();
        client_config.token_source_provider = Some(Box::new(provider));
        Some(tokens)
    };
    Ok(Connection {
        client: Client::new(client_config),
        http,
        tokens,
        api: format!("{}/storage/v1", config.endpoint()),
        signer,
        url_base: UrlBase::of(config),
    })
}
