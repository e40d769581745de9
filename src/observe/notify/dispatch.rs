//! One bounded queue and one sender task per endpoint.
//!
//! A request only ever calls [`EndpointQueue::offer`], a non-blocking `try_send`: when the
//! queue is full the event is dropped and counted, so a slow or dead endpoint never slows a
//! request. Serialising and POSTing happen in the task only, a batch at a time: the task
//! takes the first queued event, lets `flush_interval` pass, takes what was queued meanwhile
//! (up to `max_batch` events in all) and sends them, in order, in one envelope, which
//! Distribution's format allows ("The envelope contains one or more events [...] the registry
//! may choose to group unrelated events and send them in the same envelope to reduce the
//! total number of requests": `docs/content/about/notifications.md` of
//! distribution/distribution, section "Envelope"). Under load an endpoint thus gets a few
//! POSTs a second instead of one per pull. It retries an envelope until the endpoint accepts
//! it: right away a few times, then, after `threshold` consecutive failures, after `backoff`,
//! doubled while the failures go on (up to a minute); events queue meanwhile, up to
//! `queue_size`, and the next envelope takes them.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use super::config::{
    ConfigError, DEFAULT_BACKOFF, DEFAULT_FLUSH_INTERVAL, DEFAULT_MAX_BATCH, DEFAULT_QUEUE_SIZE,
    DEFAULT_THRESHOLD, DEFAULT_TIMEOUT, EndpointConfig,
};
use super::event::{Action, EVENTS_MEDIA_TYPE, Event, SourceRecord, envelope};
use crate::observe::metrics::NotificationEndpointMetrics;

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
    max_batch: usize,
    flush_interval: Duration,
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
        max_batch: config.max_batch.unwrap_or(DEFAULT_MAX_BATCH).max(1),
        flush_interval: config.flush_interval.unwrap_or(DEFAULT_FLUSH_INTERVAL),
        scheme,
        source,
        metrics,
    };
    Ok((queue, tokio::spawn(task.run(receiver))))
}

impl Sender {
    async fn run(self, mut receiver: mpsc::Receiver<Arc<Event>>) {
        let mut batch = Vec::with_capacity(self.max_batch);
        while self.next_batch(&mut receiver, &mut batch).await {
            self.metrics.queue_length.dec_by(batch.len() as i64);
            let body = envelope(&batch, &self.scheme, &self.source);
            self.deliver(bytes::Bytes::from(body), batch.len()).await;
            batch.clear();
        }
    }

    /// Fills `batch` with the next events to send: waits for one, then, unless that already
    /// filled the batch, sleeps `flush_interval` and takes what was queued meanwhile, up to
    /// `max_batch`. Sleeping rather than waiting on the queue matters: a task waiting on the
    /// queue is woken by every event offered to it, while a sleeping one costs a request only
    /// the `try_send`. Returns `false` once every queue handle is dropped and the queue is
    /// drained.
    async fn next_batch(
        &self,
        receiver: &mut mpsc::Receiver<Arc<Event>>,
        batch: &mut Vec<Arc<Event>>,
    ) -> bool {
        if receiver.recv_many(batch, self.max_batch).await == 0 {
            return false;
        }
        if batch.len() < self.max_batch && !self.flush_interval.is_zero() {
            tokio::time::sleep(self.flush_interval).await;
            while batch.len() < self.max_batch {
                match receiver.try_recv() {
                    Ok(event) => batch.push(event),
                    Err(_) => break, // empty, or closed: send what we hold
                }
            }
        }
        true
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
