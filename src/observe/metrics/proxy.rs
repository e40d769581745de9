//! Pull-through cache metrics, recorded by [`PullThrough`](crate::proxy::PullThrough): what
//! it asked its upstream and how that went, and how often it answered from its store
//! because the upstream could not.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::registry::Registry;

/// What the cache asks its upstream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UpstreamRequest {
    /// Where a tag points, or a manifest's size and type (`HEAD` of a manifest).
    ManifestInfo,
    /// A manifest's bytes.
    Manifest,
    /// A blob's size (`HEAD` of a blob).
    BlobSize,
    /// A blob's bytes, stored into the cache.
    Blob,
    /// A page of tags.
    Tags,
    /// A referrers list.
    Referrers,
}

impl UpstreamRequest {
    const ALL: [Self; 6] = [
        Self::ManifestInfo,
        Self::Manifest,
        Self::BlobSize,
        Self::Blob,
        Self::Tags,
        Self::Referrers,
    ];

    fn as_str(self) -> &'static str {
        match self {
            Self::ManifestInfo => "manifest_info",
            Self::Manifest => "manifest",
            Self::BlobSize => "blob_size",
            Self::Blob => "blob",
            Self::Tags => "tags",
            Self::Referrers => "referrers",
        }
    }
}

/// How an upstream request ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UpstreamOutcome {
    /// Answered (a blob: stored).
    Ok,
    /// The upstream does not have it (`404`).
    NotFound,
    /// The upstream refused the cache's credentials (`401`, `403`).
    Denied,
    /// The upstream asked to slow down (`429`).
    Throttled,
    /// Unreachable, a `5xx`, or an answer that could not be served (a wrong digest).
    Failed,
}

impl UpstreamOutcome {
    const ALL: [Self; 5] = [
        Self::Ok,
        Self::NotFound,
        Self::Denied,
        Self::Throttled,
        Self::Failed,
    ];

    fn as_str(self) -> &'static str {
        match self {
            Self::Ok => "ok",
            Self::NotFound => "not_found",
            Self::Denied => "denied",
            Self::Throttled => "throttled",
            Self::Failed => "failed",
        }
    }

    /// The outcome `result` stands for.
    pub fn of<T>(result: &crate::Result<T>) -> Self {
        use crate::Error;
        match result {
            Ok(_) => Self::Ok,
            Err(Error::ManifestUnknown(_) | Error::BlobUnknown(_) | Error::NameUnknown(_)) => {
                Self::NotFound
            }
            Err(Error::Denied(_)) => Self::Denied,
            Err(Error::TooManyRequests(_)) => Self::Throttled,
            Err(_) => Self::Failed,
        }
    }
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RequestLabels {
    request: &'static str,
    outcome: &'static str,
}

/// The pull-through cache's series, resolved once (cheap to clone: counters are shared).
#[derive(Debug, Clone, Default)]
pub struct ProxyMetrics {
    /// Indexed by [`UpstreamRequest`], then [`UpstreamOutcome`] (their discriminants).
    requests: [[Counter; UpstreamOutcome::ALL.len()]; UpstreamRequest::ALL.len()],
    stale: Counter,
}

impl ProxyMetrics {
    pub(super) fn register(registry: &mut Registry) -> Self {
        let family = Family::<RequestLabels, Counter>::default();
        registry.register(
            "proxy_upstream_requests",
            "Requests of the pull-through cache to its upstream, by request (manifest_info, \
             manifest, blob_size, blob, tags, referrers) and outcome (ok, not_found, denied, \
             throttled, failed)",
            family.clone(),
        );
        let stale = Counter::default();
        registry.register(
            "proxy_stale_answers",
            "Answers of the pull-through cache from its store because the upstream could not \
             answer (a tag as last seen, stored tags or referrers)",
            stale.clone(),
        );
        let requests = std::array::from_fn(|r| {
            std::array::from_fn(|o| {
                family
                    .get_or_create(&RequestLabels {
                        request: UpstreamRequest::ALL[r].as_str(),
                        outcome: UpstreamOutcome::ALL[o].as_str(),
                    })
                    .clone()
            })
        });
        Self { requests, stale }
    }

    /// Counts one request to the upstream (nothing on a value registered nowhere).
    pub fn record(&self, request: UpstreamRequest, outcome: UpstreamOutcome) {
        self.requests[request as usize][outcome as usize].inc();
    }

    /// Counts one answer from the store in place of the upstream's.
    pub fn record_stale(&self) {
        self.stale.inc();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_are_counted_under_their_labels() {
        let mut registry = Registry::with_prefix("marina");
        let m = ProxyMetrics::register(&mut registry);
        m.record(UpstreamRequest::Blob, UpstreamOutcome::Ok);
        m.record(UpstreamRequest::Blob, UpstreamOutcome::Ok);
        m.record(UpstreamRequest::ManifestInfo, UpstreamOutcome::Throttled);
        m.record_stale();
        let mut out = String::new();
        prometheus_client::encoding::prometheus_text::encode(&mut out, &registry).unwrap();
        assert!(
            out.contains(r#"marina_proxy_upstream_requests_total{request="blob",outcome="ok"} 2"#),
            "{out}"
        );
        assert!(out.contains(
            r#"marina_proxy_upstream_requests_total{request="manifest_info",outcome="throttled"} 1"#
        ));
        assert!(out.contains("marina_proxy_stale_answers_total 1"));
        // A value registered nowhere records nothing and does not fail.
        ProxyMetrics::default().record(UpstreamRequest::Tags, UpstreamOutcome::Failed);
    }

    #[test]
    fn outcomes_follow_the_errors() {
        use crate::Error;
        let denied: crate::Result<()> = Err(Error::Denied("x".into()));
        assert_eq!(UpstreamOutcome::of(&denied), UpstreamOutcome::Denied);
        let missing: crate::Result<()> = Err(Error::NameUnknown("x".into()));
        assert_eq!(UpstreamOutcome::of(&missing), UpstreamOutcome::NotFound);
        let failed: crate::Result<()> = Err(Error::backend("upstream", "down"));
        assert_eq!(UpstreamOutcome::of(&failed), UpstreamOutcome::Failed);
        assert_eq!(UpstreamOutcome::of(&Ok(())), UpstreamOutcome::Ok);
    }
}
