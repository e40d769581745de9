//! How long an object store may keep the registry waiting: the object-store drivers'
//! `request_timeout_secs`, shared by S3 and GCS.
//!
//! A store that accepts a connection and then never answers (an overloaded proxy, a
//! half-open connection after a network partition) would otherwise hold the request, and
//! the client's request behind it, for ever; the connect timeout covers only endpoints that
//! refuse or do not accept connections. So:
//!
//! - **Every attempt of a store request must be answered** within the timeout, plus one
//!   second per MiB of request body (a body sent at 1 MiB/s still makes it):
//!   [`RequestTimeout::answer`], [`RequestTimeout::with_body`]. An attempt that runs out
//!   fails *retryably*, so it is sent again as a failed attempt is (the SDK's retries on
//!   S3, `storage::retry` on GCS), and after the last attempt the client gets `503`.
//! - **A streamed read fails when the store sends nothing for the timeout while the registry
//!   waits for bytes** (`StallWatch`): the clock runs only while the reader is starved,
//!   never while a slow client is still taking what was already read, and a failed read is
//!   resumed where it stopped by the [`Resumable`](super::layers::Resumable) layer.
//! - **Not bounded**: the first attempt of a streamed upload fed by a client's own body (a
//!   monolithic push), whose pace is the client's (its resends from the spill file are); and
//!   **deletes**. A delete abandoned for taking long may still be carried out by the store
//!   later, after the operation returned: after a collection released its condemned set and
//!   a push stored the object again, say, which the collection's cross-process argument
//!   ([`lifecycle`](crate::storage::lifecycle)) does not allow. So a delete waits for its
//!   answer (or for its connection to fail), as before; only a *failed* attempt is sent
//!   again.

// The timeout is configured with or without the object-store drivers; only they use the rest.
#![cfg_attr(
    not(any(feature = "s3", feature = "gcs")),
    allow(dead_code, unused_imports)
)]

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use futures::FutureExt as _;
use tokio::time::{Instant, Sleep};

use crate::error::{Error, Result};

/// Default of the drivers' `request_timeout_secs`.
pub const DEFAULT_REQUEST_TIMEOUT_SECS: u64 = 30;

/// Largest `request_timeout_secs` accepted (one hour).
pub const MAX_REQUEST_TIMEOUT_SECS: u64 = 3600;

/// Request body bytes a deadline allows per second: 1 MiB/s, well below any link a registry
/// and its store share.
const SLOWEST_BODY_RATE: u64 = 1024 * 1024;

/// How long a store may take to answer one request: see the [module](self) docs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RequestTimeout(Duration);

impl Default for RequestTimeout {
    fn default() -> Self {
        Self(Duration::from_secs(DEFAULT_REQUEST_TIMEOUT_SECS))
    }
}

impl RequestTimeout {
    /// A timeout of `answer` for requests without a body.
    pub fn new(answer: Duration) -> Self {
        Self(answer)
    }

    /// The timeout a driver configuration asks for (`None`: the default).
    pub fn from_secs(secs: Option<u64>) -> Self {
        secs.map_or_else(Self::default, |s| Self(Duration::from_secs(s)))
    }

    /// How long a request without a body, or with a small one, may wait for its answer.
    pub fn answer(self) -> Duration {
        self.0
    }

    /// How long a request sending `len` body bytes may take until it is answered: the
    /// timeout plus a second per started MiB.
    pub fn with_body(self, len: u64) -> Duration {
        self.0 + Duration::from_secs(len.div_ceil(SLOWEST_BODY_RATE))
    }

    /// Runs one attempt of a store request, failing it retryably when it takes longer than
    /// `limit`. `driver` and `request` name it in the error.
    ///
    /// A combinator rather than an `async fn`, so the attempt's future is held once, not
    /// twice (the request futures of the store clients are large, and nest).
    pub(crate) fn bound<T>(
        limit: Duration,
        driver: &'static str,
        request: &'static str,
        attempt: impl Future<Output = Result<T>>,
    ) -> impl Future<Output = Result<T>> {
        tokio::time::timeout(limit, attempt).map(move |answered| {
            answered.unwrap_or_else(|_| Err(unanswered(driver, request, limit)))
        })
    }

    /// A [`StallWatch`] for a streamed read with this timeout.
    pub(crate) fn stall_watch(self) -> StallWatch {
        StallWatch::new(self.0)
    }
}

/// Checks a configured `request_timeout_secs`; `field` names it in the error.
pub(crate) fn validate(field: &'static str, secs: Option<u64>) -> Result<()> {
    match secs {
        Some(s) if !(1..=MAX_REQUEST_TIMEOUT_SECS).contains(&s) => Err(Error::Config {
            field,
            message: format!("{s} is outside 1..={MAX_REQUEST_TIMEOUT_SECS} seconds"),
        }),
        _ => Ok(()),
    }
}

/// The retryable error of a request the store did not answer within `limit`.
pub(crate) fn unanswered(driver: &'static str, request: &'static str, limit: Duration) -> Error {
    Error::backend_transient(
        driver,
        format!("{request}: no answer within {} s", limit.as_secs_f64()),
    )
}

/// Watches a streamed response body for a store that stops sending: the clock starts when
/// the reader asks for bytes and none are there, and stops at the next chunk (or the end).
///
/// A reader passes what its body's poll gave to [`StallWatch::watch`]; only a body that
/// just ran dry costs a clock read. The timer is allocated the first time the body runs
/// dry (once per read at most), which keeps the watch, and the readers holding it, `Unpin`.
#[derive(Debug)]
pub(crate) struct StallWatch {
    timer: Option<Pin<Box<Sleep>>>,
    limit: Duration,
    /// Whether the clock runs (the body is starved since the timer's start).
    starved: bool,
}

impl StallWatch {
    /// A watch that fails a body after `limit` without bytes.
    pub(crate) fn new(limit: Duration) -> Self {
        Self {
            timer: None,
            limit,
            starved: false,
        }
    }

    /// Watches one poll of the body: what it gave when it is ready (and the clock stops),
    /// `Pending` while it is starved for less than the limit, and then the retryable error
    /// of `request` (`"GetObject body"`) of `driver`.
    #[inline]
    pub(crate) fn watch<T>(
        &mut self,
        cx: &mut Context<'_>,
        polled: Poll<T>,
        driver: &'static str,
        request: &'static str,
    ) -> Poll<Result<T>> {
        match polled {
            Poll::Ready(item) => {
                self.fed();
                Poll::Ready(Ok(item))
            }
            Poll::Pending if self.stalled(cx) => {
                Poll::Ready(Err(unanswered(driver, request, self.limit)))
            }
            Poll::Pending => Poll::Pending,
        }
    }

    /// The body returned a chunk, an error or its end: the clock stops.
    #[inline]
    fn fed(&mut self) {
        self.starved = false;
    }

    /// The body is `Pending`: starts the clock if it does not run, and whether the limit
    /// passed (`cx` is woken when it does). Must be called inside the Tokio runtime.
    fn stalled(&mut self, cx: &mut Context<'_>) -> bool {
        if !self.starved || self.timer.is_none() {
            let deadline = Instant::now() + self.limit;
            match &mut self.timer {
                Some(timer) => timer.as_mut().reset(deadline),
                None => self.timer = Some(Box::pin(tokio::time::sleep_until(deadline))),
            }
            self.starved = true;
        }
        let Some(timer) = &mut self.timer else {
            unreachable!("the timer is set above")
        };
        timer.as_mut().poll(cx).is_ready()
    }
}

#[cfg(test)]
mod tests {
    use futures::task::noop_waker_ref;

    use super::*;

    #[test]
    fn bodies_get_a_second_per_started_mib() {
        let t = RequestTimeout::new(Duration::from_secs(30));
        assert_eq!(t.with_body(0), Duration::from_secs(30));
        assert_eq!(t.with_body(1), Duration::from_secs(31));
        assert_eq!(t.with_body(8 * 1024 * 1024), Duration::from_secs(38));
        assert_eq!(
            RequestTimeout::from_secs(None).answer(),
            Duration::from_secs(30)
        );
        assert_eq!(
            RequestTimeout::from_secs(Some(5)).answer(),
            Duration::from_secs(5)
        );
    }

    #[test]
    fn configured_timeouts_are_checked() {
        assert!(validate("s3.request_timeout_secs", None).is_ok());
        assert!(validate("s3.request_timeout_secs", Some(1)).is_ok());
        assert!(validate("s3.request_timeout_secs", Some(3600)).is_ok());
        for bad in [0, 3601] {
            let e = validate("s3.request_timeout_secs", Some(bad)).unwrap_err();
            assert!(e.to_string().contains("s3.request_timeout_secs"), "{e}");
        }
    }

    #[tokio::test(start_paused = true)]
    async fn an_unanswered_attempt_fails_retryably_at_its_limit() {
        let limit = Duration::from_secs(2);
        let started = Instant::now();
        let hung = RequestTimeout::bound(limit, "test", "object metadata", async {
            std::future::pending::<Result<()>>().await
        });
        let e = hung.await.unwrap_err();
        assert!(e.is_retryable());
        assert!(
            e.to_string()
                .contains("object metadata: no answer within 2 s"),
            "{e}"
        );
        assert_eq!(started.elapsed(), limit);

        let answered = RequestTimeout::bound(limit, "test", "read", async { Ok(7) });
        assert_eq!(answered.await.unwrap(), 7);
    }

    #[tokio::test(start_paused = true)]
    async fn the_stall_clock_runs_only_while_the_body_is_starved() {
        let mut watch = StallWatch::new(Duration::from_secs(10));
        let mut cx = Context::from_waker(noop_waker_ref());
        // Starved for 9 s: not yet.
        assert!(!watch.stalled(&mut cx));
        tokio::time::advance(Duration::from_secs(9)).await;
        assert!(!watch.stalled(&mut cx));
        // A chunk arrives; then the consumer takes a minute before asking again (a slow
        // client): that minute does not count.
        watch.fed();
        tokio::time::advance(Duration::from_secs(60)).await;
        assert!(!watch.stalled(&mut cx));
        tokio::time::advance(Duration::from_secs(9)).await;
        assert!(!watch.stalled(&mut cx));
        tokio::time::advance(Duration::from_secs(1)).await;
        assert!(watch.stalled(&mut cx));
    }
}
