//! Retries the object-store drivers run themselves, with one backoff policy
//! ([`backon`]'s exponential backoff with jitter).
//!
//! The S3 SDK retries its requests by itself; what it cannot retry (a response body that
//! breaks off, a request whose body was a stream) and every request of the GCS client crate
//! (which retries nothing) are retried here. Only requests that may be sent twice go
//! through [`retried`]: see each caller for why it may.

use std::future::Future;
use std::time::Duration;

use backon::{ExponentialBuilder, Retryable as _};

use crate::error::{Error, Result};
use crate::observe::metrics::RetryCounter;

/// Attempts of one request in all, the first one included.
pub(crate) const ATTEMPTS: usize = 4;

/// The pauses between attempts: 100 ms doubled per attempt (at most 2 s), each plus a
/// random part of up to as much again, so that processes throttled together do not come
/// back together. [`ATTEMPTS`] − 1 pauses in all, at most about 1.4 s.
pub(crate) fn backoff() -> ExponentialBuilder {
    ExponentialBuilder::new()
        .with_min_delay(Duration::from_millis(100))
        .with_max_delay(Duration::from_secs(2))
        .with_max_times(ATTEMPTS - 1)
        .with_jitter()
}

/// Runs `send` until it succeeds, fails with an error retrying cannot help
/// ([`Error::is_retryable`]), or [`ATTEMPTS`] are spent; the last error is returned.
/// `driver` and `request` (`"object metadata"`) name the request in the debug log of each
/// retry, which `retries` counts.
pub(crate) async fn retried<T, F, Fut>(
    driver: &'static str,
    request: &'static str,
    retries: &RetryCounter,
    send: F,
) -> Result<T>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T>>,
{
    send.retry(backoff())
        .sleep(tokio::time::sleep)
        .when(Error::is_retryable)
        .notify(|error, pause| {
            retries.count();
            tracing::debug!(driver, request, %error, ?pause, "store request failed; sending it again");
        })
        .await
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use super::*;

    fn transient() -> Error {
        Error::Backend {
            driver: "test",
            operation: None,
            key: None,
            message: "HTTP 503".into(),
            retryable: true,
            source: None,
        }
    }

    #[test]
    fn pauses_grow_stay_bounded_and_end() {
        use backon::BackoffBuilder as _;
        let pauses: Vec<Duration> = backoff().build().collect();
        assert_eq!(pauses.len(), ATTEMPTS - 1);
        for (i, pause) in pauses.iter().enumerate() {
            let base = Duration::from_millis(100) * 2u32.pow(i as u32);
            assert!(*pause >= base && *pause < base * 2, "pause {i}: {pause:?}");
        }
    }

    #[tokio::test(start_paused = true)]
    async fn transient_failures_are_sent_again_until_success_or_the_last_attempt() {
        let sent = AtomicUsize::new(0);
        let ok = retried("test", "read", &RetryCounter::default(), || async {
            match sent.fetch_add(1, Ordering::Relaxed) {
                0 | 1 => Err(transient()),
                n => Ok(n),
            }
        })
        .await;
        assert_eq!(ok.unwrap(), 2);

        sent.store(0, Ordering::Relaxed);
        let failed: Result<()> = retried("test", "read", &RetryCounter::default(), || async {
            sent.fetch_add(1, Ordering::Relaxed);
            Err(transient())
        })
        .await;
        assert!(failed.unwrap_err().is_retryable());
        assert_eq!(sent.load(Ordering::Relaxed), ATTEMPTS);
    }

    #[tokio::test(start_paused = true)]
    async fn a_permanent_failure_is_not_sent_again() {
        let sent = AtomicUsize::new(0);
        let failed: Result<()> = retried("test", "read", &RetryCounter::default(), || async {
            sent.fetch_add(1, Ordering::Relaxed);
            Err(Error::backend("test", "HTTP 403"))
        })
        .await;
        assert!(!failed.unwrap_err().is_retryable());
        assert_eq!(sent.load(Ordering::Relaxed), 1);
    }
}
