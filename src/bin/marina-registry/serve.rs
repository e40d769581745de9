//! Serving: TLS, access control, notifications, the lifecycle schedule and the metrics
//! listener set up from the settings, then the registry served until a shutdown signal and
//! queued notifications let out.

use std::sync::Arc;
use std::time::Duration;

use marina_distribution::observe::health::{self, Readiness};
use marina_distribution::observe::http::ObserveLayer;
use marina_distribution::observe::metrics::Metrics;
use marina_distribution::observe::notify::{Notifier, NotifierOptions};
use marina_distribution::proxy::PullThrough;
use marina_distribution::registry::RegistryOptions;
use marina_distribution::server::{self, TlsReloader};
use marina_distribution::storage::lifecycle;
use marina_distribution::{AnyDriver, StorageDriver};

use crate::settings::Settings;

/// The registry server (no subcommand), until a shutdown signal.
pub(crate) async fn serve(
    driver: AnyDriver,
    settings: Settings,
    metrics: Option<Arc<Metrics>>,
) -> std::process::ExitCode {
    let Settings {
        listen,
        storage,
        schedule,
        tls,
        auth,
        limits,
        metrics_listen,
        notifications,
        log_format,
        read_only,
        disable_deletes,
        proxy,
    } = settings;
    let stop = |what: &str, error: &dyn std::fmt::Display, status| {
        crate::stop(log_format, what, error, status)
    };
    let tls = match tls
        .files()
        .and_then(|f| f.map(TlsReloader::load).transpose())
    {
        Ok(t) => t.map(Arc::new),
        Err(e) => return stop("TLS configuration error", &e, 2),
    };
    let driver_name = driver.driver_name();
    let mut options = RegistryOptions {
        max_manifest_size: storage.max_manifest_size,
        read_only,
        disable_deletes,
        pull_through: proxy.is_some(),
        ..RegistryOptions::default()
    };
    limits.apply(&mut options);
    let notifier = match notifications.endpoints.is_empty() {
        true => None,
        false => {
            let options = NotifierOptions {
                scheme: if tls.is_some() { "https" } else { "http" }.into(),
                source_addr: listen.to_string(),
            };
            match Notifier::start(&notifications, options, metrics.as_deref()) {
                Ok(started) => Some(started),
                Err(e) => return stop("configuration error", &e, 2),
            }
        }
    };
    let (notifier, notifier_tasks) = notifier.unzip();
    let driver = Arc::new(driver);
    let lifecycle_metrics = metrics.clone();
    let lifecycle = lifecycle::schedule::spawn(Arc::clone(&driver), schedule, move |kind, end| {
        if let Some(metrics) = &lifecycle_metrics {
            metrics.record_lifecycle(kind, &end);
        }
    });
    let app = match &proxy {
        None => server::registry_app(Arc::clone(&driver), options, &auth),
        Some(proxy) => {
            let metrics = metrics.as_deref();
            match PullThrough::new(
                Arc::clone(&driver),
                proxy,
                storage.max_manifest_size,
                metrics,
            ) {
                Ok(cache) => server::registry_app(Arc::new(cache), options, &auth),
                Err(e) => return stop("configuration error", &e, 2),
            }
        }
    };
    let (app, authorizer) = match app {
        Ok(v) => v,
        Err(e) => return stop("access control configuration error", &e, 2),
    };
    let app = app.layer(ObserveLayer::new(metrics.clone(), notifier));
    server::spawn_reloads(tls.clone(), authorizer);
    let listener = match tokio::net::TcpListener::bind(listen).await {
        Ok(l) => l,
        Err(e) => return stop(&format!("cannot listen on {listen}"), &e, 1),
    };
    if let (Some(addr), Some(metrics)) = (metrics_listen, metrics) {
        let readiness = if read_only {
            Readiness::Reads
        } else {
            Readiness::Writes
        };
        let health = health::router(metrics, Arc::clone(&driver), readiness);
        match tokio::net::TcpListener::bind(addr).await {
            Ok(l) => {
                let addr = l.local_addr().unwrap_or(addr);
                tracing::info!(
                    "metrics and health checks on http://{addr}/metrics, /healthz, /readyz"
                );
                tokio::spawn(async move { axum::serve(l, health).await });
            }
            Err(e) => return stop(&format!("cannot listen on {addr} (metrics)"), &e, 1),
        }
    }
    let addr = listener.local_addr().unwrap_or(listen);
    let where_ = match storage.storage_type {
        marina_distribution::storage::StorageType::Filesystem => {
            format!(" in {}", storage.filesystem.root_directory.display())
        }
        _ => String::new(),
    };
    let scheme = if tls.is_some() { "https" } else { "http" };
    let mode = match (&proxy, read_only) {
        (Some(proxy), _) => format!(
            ", pull-through cache of {}",
            proxy.remote_url.as_deref().unwrap_or_default()
        ),
        (None, true) => ", read-only".to_owned(),
        (None, false) => String::new(),
    };
    println!(
        "marina-registry listening on {scheme}://{addr}/v2/ ({driver_name} storage{where_}{mode})"
    );
    if let Err(e) = server::serve(
        listener,
        app,
        limits.serve_options(),
        tls,
        shutdown_signal(),
    )
    .await
    {
        return stop("server error", &e, 1);
    }
    // A collection in progress removes its condemned set (left behind, it would refuse
    // pushes of what it lists for hours).
    if let Some(lifecycle) = lifecycle
        && !lifecycle.stop(LIFECYCLE_STOP).await
    {
        tracing::warn!(
            "a garbage collection did not stop within {} s: its condemned set is left for a later collection to remove",
            LIFECYCLE_STOP.as_secs()
        );
    }
    // The router (and with it the notifier's queues) is gone: let queued events go out.
    if let Some(tasks) = notifier_tasks {
        let undelivered = tasks.finish(Duration::from_secs(5)).await;
        if undelivered > 0 {
            tracing::warn!("stopped with {undelivered} notification event(s) undelivered");
        }
    }
    tracing::info!("stopped");
    std::process::ExitCode::SUCCESS
}

/// How long a shutdown waits for a garbage collection in progress to stop.
const LIFECYCLE_STOP: Duration = Duration::from_secs(30);

pub(crate) async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {},
        () = terminate => {},
    }
    tracing::info!("shutdown requested: finishing in-flight requests");
}
