//! One bounded queue and one sender task per endpoint.
//!
//! A request only ever calls [`EndpointQueue::offer`], a non-blocking `try_send`: when the
//! queue is full the event is dropped and counted, so a slow or dead endpoint never slows a
//! request. Serialising and POSTing happen in the task only, a batch at a time: the task
//! takes the first queued event, lets up to `flush_interval` pass while fewer than
//! `max_batch` events are queued, takes them (up to `max_batch` in all) and sends them, in
//! order, in one envelope, which Distribution's format allows ("The envelope contains one or
//! more events [...] the registry may choose to group unrelated events and send them in the
//! same envelope to reduce the total number of requests": `docs/content/about/notifications.md`
//! of distribution/distribution, section "Envelope"). Under load an endpoint thus gets one
//! POST per `max_batch` events instead of one per pull. It retries an envelope until the
//! endpoint accepts it: right away a few times, then, after `threshold` consecutive failures,
//! after `backoff`, doubled while the failures go on (up to a minute); events queue
//! meanwhile, up to `queue_size`, and the next envelope takes them.

use std::time::Duration;

use bytes::{Bytes, BytesMut};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio::time::Instant;

use super::config::{
    ConfigError, DEFAULT_BACKOFF, DEFAULT_FLUSH_INTERVAL, DEFAULT_MAX_BATCH, DEFAULT_QUEUE_SIZE,
    DEFAULT_THRESHOLD, DEFAULT_TIMEOUT, EndpointConfig, MAX_BACKOFF,
};
use super::event::{Action, EVENTS_MEDIA_TYPE, Event, SourceRecord};
use super::wire::EnvelopeWriter;
use crate::error::ErrorChain;
use crate::observe::metrics::NotificationEndpointMetrics;

/// The wait between the quick retries before `threshold` is reached.
const QUICK_RETRY: Duration = Duration::from_millis(50);
/// How often, within `flush_interval`, the sender looks whether a full batch is queued: often
/// enough that at 100 000 events a second the queue holds a batch and 500 more at most, below
/// the default `queue_size`.
const FULL_BATCH_CHECK: Duration = Duration::from_millis(5);

/// The request side of an endpoint: its filter and its queue.
#[derive(Debug)]
pub(super) struct EndpointQueue {
    ignored_actions: [bool; 4],
    ignored_media_types: Vec<String>,
    sender: mpsc::Sender<Event>,
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
    /// Whether the endpoint wants events of `action` (some media types may still be
    /// ignored).
    pub(super) fn wants_action(&self, action: Action) -> bool {
        !self.ignored_actions[action_slot(action)]
    }

    /// Whether the endpoint wants `event` (does not ignore its action or media type).
    pub(super) fn wants(&self, event: &Event) -> bool {
        if !self.wants_action(event.action) {
            return false;
        }
        let ignored_media_type = !self.ignored_media_types.is_empty()
            && event
                .target
                .media_type
                .as_ref()
                .is_some_and(|mt| self.ignored_media_types.iter().any(|i| i == mt.as_str()));
        !ignored_media_type
    }

    /// Queues `event`, or drops and counts it when the queue is full; never waits.
    pub(super) fn offer(&self, event: Event) {
        match self.sender.try_send(event) {
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
    url: reqwest::Url,
    client: reqwest::Client,
    /// The configured headers and the content type, set on every request (a client's
    /// default headers would send one value of a header given several).
    headers: reqwest::header::HeaderMap,
    threshold: u32,
    backoff: Duration,
    max_batch: usize,
    flush_interval: Duration,
    writer: EnvelopeWriter,
    metrics: NotificationEndpointMetrics,
}

/// Starts the sender task of `config` and returns its queue and the task.
///
/// Every queued event ends delivered or failed (left out of its envelope because it could
/// not be written, or still undelivered when the registry stops: see
/// [`NotifierTasks::finish`](super::NotifierTasks::finish)).
pub(super) fn start(
    config: &EndpointConfig,
    scheme: &str,
    source: &SourceRecord,
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
    let mut url = reqwest::Url::parse(&config.url).map_err(|e| ConfigError {
        field: "notifications.endpoints.url",
        message: format!("{}: {e}", config.name),
    })?;
    if headers.contains_key(reqwest::header::AUTHORIZATION) {
        // The configured header wins over credentials in the URL (which the client would
        // otherwise send as Basic in its place), as Go's HTTP client has it.
        let _ = url.set_username("");
        let _ = url.set_password(None);
    }
    let client = reqwest::Client::builder()
        .timeout(config.timeout.unwrap_or(DEFAULT_TIMEOUT))
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
        url,
        client,
        headers,
        threshold: config.threshold.unwrap_or(DEFAULT_THRESHOLD),
        backoff: config.backoff.unwrap_or(DEFAULT_BACKOFF),
        max_batch: config.max_batch.unwrap_or(DEFAULT_MAX_BATCH).max(1),
        flush_interval: config.flush_interval.unwrap_or(DEFAULT_FLUSH_INTERVAL),
        writer: EnvelopeWriter::new(scheme, source),
        metrics,
    };
    Ok((queue, tokio::spawn(task.run(receiver))))
}

impl Sender {
    async fn run(mut self, mut receiver: mpsc::Receiver<Event>) {
        let mut buffer = BytesMut::new();
        while let Some(first) = receiver.recv().await {
            self.wait_for_batch(&receiver).await;
            // Each event is written and dropped as it leaves the queue: only the JSON waits
            // for the endpoint.
            self.writer
                .begin(&mut buffer, (1 + receiver.len()).min(self.max_batch));
            let mut written = usize::from(self.writer.event(&mut buffer, &first));
            drop(first);
            let mut taken = 1;
            while taken < self.max_batch
                && let Ok(event) = receiver.try_recv()
            {
                written += usize::from(self.writer.event(&mut buffer, &event));
                taken += 1;
            }
            self.writer.end(&mut buffer);
            // An event left out (it could not be written) is counted as failed, never as
            // delivered; an envelope left empty is not sent. The events in the envelope wait
            // (`queue_length`) until it is delivered, retries included.
            self.metrics.queue_length.dec_by((taken - written) as i64);
            self.metrics.failed.inc_by((taken - written) as u64);
            if written == 0 {
                buffer.clear();
                continue;
            }
            let body = self
                .deliver(std::mem::take(&mut buffer).freeze(), written)
                .await;
            self.metrics.queue_length.dec_by(written as i64);
            // The next envelope reuses the buffer, once the HTTP client has let go of it.
            buffer = body.try_into_mut().unwrap_or_default();
            buffer.clear();
        }
    }

    /// Once an event was taken from the queue: lets up to `flush_interval` pass while fewer
    /// than `max_batch` events (that one included) are queued. It sleeps rather than waiting
    /// on the queue, looking at the queue's length every `FULL_BATCH_CHECK` meanwhile: a
    /// task waiting on the queue is woken by every event offered to it, a sleeping one
    /// costs a request only the `try_send`; and under load a full batch goes out at most
    /// `FULL_BATCH_CHECK` after it is queued, long before the queue (`queue_size`) could fill
    /// and drop events. It stops waiting when the queue closes (the server stops).
    async fn wait_for_batch(&self, receiver: &mpsc::Receiver<Event>) {
        if self.flush_interval.is_zero() {
            return;
        }
        let deadline = Instant::now() + self.flush_interval;
        let check = self.flush_interval.min(FULL_BATCH_CHECK);
        while 1 + receiver.len() < self.max_batch && !receiver.is_closed() {
            let now = Instant::now();
            if now >= deadline {
                break;
            }
            tokio::time::sleep(check.min(deadline - now)).await;
        }
    }

    /// Sends one envelope until the endpoint accepts it; returns it.
    async fn deliver(&self, body: Bytes, events: usize) -> Bytes {
        let mut failures: u32 = 0;
        loop {
            let sent = self
                .client
                .post(self.url.clone())
                .headers(self.headers.clone())
                .body(body.clone())
                .send();
            match sent.await {
                // Distribution's rule: any 2xx or 3xx answer means delivered.
                Ok(resp) if resp.status().as_u16() < 400 => {
                    self.metrics.successes.inc();
                    self.metrics.delivered.inc_by(events as u64);
                    return body;
                }
                Ok(resp) => tracing::warn!(
                    endpoint = %self.name,
                    status = resp.status().as_u16(),
                    "notification endpoint refused {events} event(s); retrying"
                ),
                // Down to the cause (refused, DNS, TLS); without the URL, whose path, query
                // or user info may hold a secret (the endpoint's name says which it is).
                Err(e) => tracing::warn!(
                    endpoint = %self.name,
                    error = %ErrorChain(&e.without_url()),
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
