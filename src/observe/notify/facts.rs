//! What the middleware keeps of a request for the event its response may cause.
//!
//! An event outlives its request by up to a flush interval, so it must not hold the request's
//! header values: those are slices of the connection's read buffer, and one of them kept
//! alive keeps the whole buffer from being reused (hyper then allocates a new one for the
//! next request, and the sender frees the old one). Short ones are copied into the event
//! ([`EventText`]); the `Host` and `User-Agent`, which may be long, are copied once: each
//! thread remembers the last ones it saw as shared strings, and the events of requests that
//! repeat them (nearly all: a client sends the same ones every time) share those.

use std::cell::RefCell;
use std::net::SocketAddr;
use std::sync::Arc;

use axum::http::{HeaderMap, Method, Uri, header};

use super::event::{EventText, RequestRecord};

/// What the middleware keeps of a request for the event its response may cause: its
/// client's address and shared copies of the few header values an event reports.
#[derive(Debug)]
pub struct RequestFacts {
    /// The request record of the event.
    pub record: RequestRecord,
    /// For a `PUT`: the request's `Content-Type` (a pushed manifest's media type).
    pub content_type: Option<EventText>,
    /// For a `PUT`: the request's `Content-Length` (a pushed manifest's size).
    pub content_length: Option<u64>,
    /// For a mount (`POST ?mount=&from=`): the source repository.
    pub mount_from: Option<EventText>,
}

impl RequestFacts {
    /// Reads the facts of a request; `id` is its request id, `addr` the client's address if
    /// known.
    pub fn of(
        method: &Method,
        uri: &Uri,
        headers: &HeaderMap,
        id: &str,
        addr: Option<SocketAddr>,
    ) -> Self {
        let mount_from = (*method == Method::POST)
            .then(|| uri.query())
            .flatten()
            .filter(|q| q.contains("mount="))
            .and_then(|q| {
                let pairs = crate::registry::query_pairs(Some(q));
                crate::registry::query_param(&pairs, "from").map(EventText::new)
            });
        let put = *method == Method::PUT;
        let host = match headers.get(header::HOST) {
            Some(host) => Some(host.to_str().unwrap_or("")),
            None => uri.authority().map(|a| a.as_str()),
        };
        let user_agent = headers
            .get(header::USER_AGENT)
            .map(|v| v.to_str().unwrap_or(""));
        let (host, user_agent) = RECENT.with_borrow_mut(|recent| {
            (
                host.map(|h| recent.host.share(h)),
                user_agent.map(|u| recent.user_agent.share(u)),
            )
        });
        Self {
            record: RequestRecord {
                id: EventText::new(id),
                addr,
                host,
                method: method.clone(),
                user_agent,
            },
            content_type: put
                .then(|| headers.get(header::CONTENT_TYPE))
                .flatten()
                .map(|v| EventText::new(v.to_str().unwrap_or(""))),
            content_length: put
                .then(|| headers.get(header::CONTENT_LENGTH))
                .flatten()
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.parse().ok()),
            mount_from,
        }
    }
}

/// The last value of one header seen on this thread.
#[derive(Default)]
struct Last(Option<Arc<str>>);

impl Last {
    /// `value` as a shared string: the last one when it is the same, else a new one that
    /// becomes the last.
    fn share(&mut self, value: &str) -> Arc<str> {
        match &self.0 {
            Some(last) if **last == *value => Arc::clone(last),
            _ => Arc::clone(self.0.insert(value.into())),
        }
    }
}

#[derive(Default)]
struct Recent {
    host: Last,
    user_agent: Last,
}

thread_local! {
    static RECENT: RefCell<Recent> = RefCell::default();
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    #[test]
    fn repeated_header_values_share_one_copy() {
        let request = |ua: &'static str| {
            let mut headers = HeaderMap::new();
            headers.insert(header::HOST, HeaderValue::from_static("reg.local:5000"));
            headers.insert(header::USER_AGENT, HeaderValue::from_static(ua));
            RequestFacts::of(
                &Method::GET,
                &Uri::from_static("/v2/a/blobs/sha256:x"),
                &headers,
                "id",
                None,
            )
            .record
        };
        let (a, b, c) = (request("one/1"), request("one/1"), request("two/2"));
        let (a_host, b_host, c_host) = (a.host.unwrap(), b.host.unwrap(), c.host.unwrap());
        assert_eq!(&*a_host, "reg.local:5000");
        assert!(Arc::ptr_eq(&a_host, &b_host) && Arc::ptr_eq(&b_host, &c_host));
        let (a_ua, b_ua, c_ua) = (
            a.user_agent.unwrap(),
            b.user_agent.unwrap(),
            c.user_agent.unwrap(),
        );
        assert!(Arc::ptr_eq(&a_ua, &b_ua));
        assert_eq!((&*b_ua, &*c_ua), ("one/1", "two/2"));
    }
}
