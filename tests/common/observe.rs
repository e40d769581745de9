//! Helpers of the observability tests: a registry with the observability layer and a metrics
//! listener, a Prometheus text reader, and an HTTP sink that collects notification envelopes.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::http::{HeaderMap, StatusCode};
use marina_distribution::observe::health;
use marina_distribution::observe::http::ObserveLayer;
use marina_distribution::observe::metrics::Metrics;
use marina_distribution::observe::notify::{NotificationsConfig, Notifier, NotifierOptions};
use marina_distribution::registry::{RegistryOptions, router};
use marina_distribution::{AnyDriver, StorageConfig, StorageDriver};

use super::Server;

/// A registry with metrics (and notifications, when configured) and its metrics listener.
pub struct Observed {
    /// The registry.
    pub server: Server,
    /// `http://127.0.0.1:PORT` of the metrics listener.
    pub metrics_base: String,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Observed {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Starts a registry over `config` with metrics on, sending events to `notifications`.
pub async fn start(
    config: StorageConfig,
    dir: Option<tempfile::TempDir>,
    notifications: Option<NotificationsConfig>,
) -> Observed {
    super::ensure_bucket(&config).await;
    let metrics = Metrics::new();
    let driver = AnyDriver::from_config_with_metrics(&config, Arc::clone(&metrics))
        .await
        .expect("driver");
    let driver = Arc::new(driver);
    let notifier = notifications.map(|n| {
        let options = NotifierOptions {
            scheme: "http".into(),
            source_addr: "test-node:5000".into(),
        };
        Notifier::start(&n, options, Some(&metrics))
            .expect("notifier")
            .0
    });
    let app = router(Arc::clone(&driver), RegistryOptions::default())
        .layer(ObserveLayer::new(Some(Arc::clone(&metrics)), notifier));
    let name = driver.driver_name().to_owned();
    let chunk_min = driver.chunk_min_length();
    let server = super::serve(name, app, dir, chunk_min).await;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let metrics_base = format!("http://{}", listener.local_addr().expect("addr"));
    let health = health::router(metrics, driver, health::Readiness::Writes);
    let task = tokio::spawn(async move {
        axum::serve(listener, health).await.expect("serve");
    });
    Observed {
        server,
        metrics_base,
        task,
    }
}

impl Observed {
    /// The text of `/metrics`.
    pub async fn scrape(&self) -> String {
        let resp = reqwest::get(format!("{}/metrics", self.metrics_base))
            .await
            .expect("scrape");
        assert_eq!(resp.status(), 200);
        assert_eq!(
            resp.headers()["content-type"],
            "text/plain; version=0.0.4; charset=utf-8"
        );
        resp.text().await.expect("metrics text")
    }

    /// The status of `GET path` on the metrics listener.
    pub async fn probe(&self, path: &str) -> (u16, String) {
        let resp = reqwest::get(format!("{}{path}", self.metrics_base))
            .await
            .expect("probe");
        (
            resp.status().as_u16(),
            resp.text().await.unwrap_or_default(),
        )
    }
}

/// The value of the series written exactly as `series` (name and labels, in the order
/// the encoder writes them), or 0 when absent.
pub fn value(metrics: &str, series: &str) -> f64 {
    metrics
        .lines()
        .find_map(|line| line.strip_prefix(series)?.strip_prefix(' '))
        .map_or(0.0, |v| v.trim().parse().expect("a number"))
}

/// How the sink answers.
#[derive(Debug, Clone, Copy)]
pub enum SinkMode {
    /// 200 to every POST.
    Accept,
    /// 500 to the first `n` POSTs, then 200.
    FailFirst(usize),
    /// Never answers.
    Hang,
}

/// One POST the sink received.
#[derive(Debug, Clone)]
pub struct Delivery {
    /// Its headers.
    pub headers: HeaderMap,
    /// Its body, parsed.
    pub envelope: serde_json::Value,
    /// Whether the sink accepted it.
    pub accepted: bool,
}

/// An HTTP endpoint on 127.0.0.1 that records every POST.
pub struct Sink {
    /// Its URL.
    pub url: String,
    deliveries: Arc<Mutex<Vec<Delivery>>>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Sink {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Sink {
    /// Starts a sink answering as `mode`.
    pub async fn start(mode: SinkMode) -> Sink {
        let deliveries: Arc<Mutex<Vec<Delivery>>> = Arc::default();
        let seen = Arc::clone(&deliveries);
        let app = axum::Router::new().route(
            "/events",
            axum::routing::post(move |headers: HeaderMap, body: axum::body::Bytes| {
                let seen = Arc::clone(&seen);
                async move {
                    if let SinkMode::Hang = mode {
                        std::future::pending::<()>().await;
                    }
                    let mut seen = seen.lock().unwrap();
                    let accepted = match mode {
                        SinkMode::FailFirst(n) => seen.len() >= n,
                        _ => true,
                    };
                    seen.push(Delivery {
                        headers,
                        envelope: serde_json::from_slice(&body).expect("a JSON envelope"),
                        accepted,
                    });
                    if accepted {
                        StatusCode::OK
                    } else {
                        StatusCode::INTERNAL_SERVER_ERROR
                    }
                }
            }),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let url = format!("http://{}/events", listener.local_addr().expect("addr"));
        let task = tokio::spawn(async move {
            axum::serve(listener, app).await.expect("serve");
        });
        Sink {
            url,
            deliveries,
            task,
        }
    }

    /// Every POST received so far.
    pub fn deliveries(&self) -> Vec<Delivery> {
        self.deliveries.lock().unwrap().clone()
    }

    /// The events of accepted POSTs, in order, once `count` arrived (panics after 10 s).
    pub async fn events(&self, count: usize) -> Vec<serde_json::Value> {
        for _ in 0..200 {
            let events: Vec<serde_json::Value> = self
                .deliveries()
                .iter()
                .filter(|d| d.accepted)
                .flat_map(|d| d.envelope["events"].as_array().cloned().unwrap_or_default())
                .collect();
            if events.len() >= count {
                return events;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!(
            "the sink did not receive {count} events in 10 s: {:?}",
            self.deliveries()
        );
    }
}

/// A notifications configuration with one endpoint named `name` at `url`, plus `extra` TOML
/// lines for that endpoint.
pub fn endpoint(name: &str, url: &str, extra: &str) -> NotificationsConfig {
    toml::from_str(&format!(
        "[[endpoints]]\nname = \"{name}\"\nurl = \"{url}\"\n{extra}\n"
    ))
    .expect("notifications TOML")
}
