//! One bounded queue and one sender task per endpoint.
//!
//! A request only ever calls [`EndpointQueue::offer`], a non-blocking `try_send`: when the
//! queue is full the event is dropped and counted, so a slow or dead endpoint never slows a
//! request. The task sends what is queued in envelopes of up to [`MAX_BATCH`] events, in
//! order, and retries an envelope until the endpoint accepts it: right away a few times,
//! then, after `threshold` consecutive failures, after `backoff`, doubled while the failures
//! go on (up to a minute).

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use super::config::{
    ConfigError, DEFAULT_BACKOFF, DEFAULT_QUEUE_SIZE, DEFAULT_THRESHOLD, DEFAULT_TIMEOUT,
    EndpointConfig,
};
use super::event::{Action, EVENTS_MEDIA_TYPE, Event, SourceRecord, envelope};
use crate::observe::metrics::NotificationEndpointMetrics;

/// The most events sent in one envelope.
pub const MAX_BATCH: usize = 64;
/// The wait between the quick retries before `threshold` is reached.
const QUICK_RETRY: Duration = Duration::from_millis(50);
/// The longest wait between two attempts.
const MAX_BACKOFF: Duration = Duration::from_secs(60);

/// The request side of an endpoint: its filter and its queue.
#[derive(Debug)]
pub(super) struct EndpointQueue {
    ignored_actions: [bool; 4],
    ignored_media_types: Vec<String>,
    sender: mpsc::Sender<Arc<Event>>,
    metrics: NotificationEndpointMetrics,
}

fn action_slot(action: Action) -> usize {
    match action {
        Action::Pull => 0,
        Action::Push => 1,
        Action::Mount => 2,
        Action::Delete => 3,
    }
}

impl EndpointQueue {
    /// Queues `event` unless the endpoint ignores it; never waits.
    pub(super) fn offer(&self, event: &Arc<Event>) {
        if self.ignored_actions[action_slot(event.action)] {
            return;
        }
        if !self.ignored_media_types.is_empty()
            && let Some(mt) = event
                .target
                .media_type
                .as_ref()
                .and_then(|m| m.to_str().ok())
            && self.ignored_media_types.iter().any(|i| i == mt)
        {
            return;
        }
        match self.sender.try_send(Arc::clone(event)) {
            Ok(()) => {
                self.metrics.queued.inc();
                self.metrics.queue_length.inc();
            }
            Err(_) => {
                self.metrics.dropped.inc();
            }
        }
    }
}

/// Everything the sender task of one endpoint needs.
struct Sender {
    name: String,
    url: String,
    client: reqwest::Client,
    threshold: u32,
    backoff: Duration,
    scheme: Arc<str>,
    source: Arc<SourceRecord>,
    metrics: NotificationEndpointMetrics,
}

/// Starts the sender task of `config` and returns its queue and the task.
pub(super) fn start(
    config: &EndpointConfig,
    scheme: Arc<str>,
    source: Arc<SourceRecord>,
    metrics: NotificationEndpointMetrics,
) -> Result<(EndpointQueue, JoinHandle<()>), ConfigError> {
    let mut headers = reqwest::header::HeaderMap::new();
    for (name, values) in &config.headers {
        for value in values.values() {
            // `NotificationsConfig::validate` checked both; an invalid one is skipped.
            if let (Ok(n), Ok(mut v)) = (
                reqwest::header::HeaderName::from_bytes(name.as_bytes()),
                reqwest::header::HeaderValue::from_str(value),
            ) {
                v.set_sensitive(true);
                headers.append(n, v);
            }
        }
    }
    headers.insert(
        reqwest::header::CONTENT_TYPE,
        reqwest::header::HeaderValue::from_static(EVENTS_MEDIA_TYPE),
    );
    let client = reqwest::Client::builder()
        .timeout(config.timeout.unwrap_or(DEFAULT_TIMEOUT))
        .default_headers(headers)
        .build()
        .map_err(|e| ConfigError {
            field: "notifications.endpoints",
            message: format!("{}: cannot build the HTTP client: {e}", config.name),
        })?;
    let (sender, receiver) = mpsc::channel(config.queue_size.unwrap_or(DEFAULT_QUEUE_SIZE));
    let mut ignored_actions = [false; 4];
    for (slot, name) in ["pull", "push", "mount", "delete"].iter().enumerate() {
        ignored_actions[slot] = config.ignore.actions.iter().any(|a| a == name);
    }
    let queue = EndpointQueue {
        ignored_actions,
        ignored_media_types: config.ignore.mediatypes.clone(),
        sender,
        metrics: metrics.clone(),
    };
    let task = Sender {
        name: config.name.clone(),
        url: config.url.clone(),
        client,
        threshold: config.threshold.unwrap_or(DEFAULT_THRESHOLD),
        backoff: config.backoff.unwrap_or(DEFAULT_BACKOFF),
        scheme,
        source,
        metrics,
    };
    Ok((queue, tokio::spawn(task.run(receiver))))
}

impl Sender {
    async fn run(self, mut receiver: mpsc::Receiver<Arc<Event>>) {
        let mut batch = Vec::with_capacity(MAX_BATCH);
        loop {
            if receiver.recv_many(&mut batch, MAX_BATCH).await == 0 {
                return; // every queue handle dropped and the queue drained
            }
            self.metrics.queue_length.dec_by(batch.len() as i64);
            let body = bytes::Bytes::from(envelope(
                batch.iter().map(|e| &**e),
                &self.scheme,
                &self.source,
            ));
            self.deliver(body, batch.len()).await;
            batch.clear();
        }
    }

    /// Sends one envelope until the endpoint accepts it.
    async fn deliver(&self, body: bytes::Bytes, events: usize) {
        let mut failures: u32 = 0;
        loop {
            match self.client.post(&self.url).body(body.clone()).send().await {
                // Distribution's rule: any 2xx or 3xx answer means delivered.
                Ok(resp) if resp.status().as_u16() < 400 => {
                    self.metrics.successes.inc();
                    self.metrics.delivered.inc_by(events as u64);
                    return;
                }
                Ok(resp) => tracing::warn!(
                    endpoint = %self.name,
                    status = resp.status().as_u16(),
                    "notification endpoint refused {events} event(s); retrying"
                ),
                // The error names the URL, never the headers.
                Err(e) => tracing::warn!(
                    endpoint = %self.name,
                    error = %e.without_url(),
                    "notification endpoint unreachable; retrying {events} event(s)"
                ),
            }
            self.metrics.failures.inc();
            failures = failures.saturating_add(1);
            tokio::time::sleep(self.wait_after(failures)).await;
        }
    }

    /// The wait after `failures` consecutive failures.
    fn wait_after(&self, failures: u32) -> Duration {
        if failures < self.threshold {
            return QUICK_RETRY;
        }
        let doublings = (failures - self.threshold).min(16);
        self.backoff.saturating_mul(1 << doublings).min(MAX_BACKOFF)
    }
}
