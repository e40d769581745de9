//! The status query of GCS's resumable-upload protocol, answered by the proxy: what each
//! session holds, as the store's answers to its chunks said.
//!
//! A client resuming an interrupted session asks how much it holds with a `PUT` of no body
//! and `Content-Range: bytes */*`; GCS answers `308` with `Range: bytes=0-<last>` (no `Range`
//! when it holds nothing), or the object once the session is finalized. The GCS test
//! server, fake-gcs-server, instead *finalizes* the object with the bytes it has (a
//! truncated object under the blob's name), so the proxy answers these queries itself from
//! the answers it relayed: the chunks' bytes still go to, and are stored by, the real
//! server. Queries are never faulted.

use std::collections::HashMap;
use std::sync::Mutex;

use super::http1::Request;

/// What a session holds, as its last relayed answer said.
#[derive(Clone)]
enum Holds {
    /// The bytes before this offset.
    Bytes(u64),
    /// The object: the answer that finalized it (head and body), replayed.
    Object(Vec<u8>, bytes::Bytes),
}

/// Sessions by target (path and query, which name the session).
#[derive(Default)]
pub(super) struct Sessions(Mutex<HashMap<String, Holds>>);

/// Whether `request` goes to a resumable session (`PUT …?upload_id=…`).
fn is_session_put(request: &Request) -> bool {
    request.method == "PUT" && request.target.contains("upload_id=")
}

impl Sessions {
    /// The answer to `request` if it is a status query, from what its session holds.
    pub(super) fn answer_query(&self, request: &Request) -> Option<Vec<u8>> {
        let query = is_session_put(request)
            && request.body.is_empty()
            && request
                .headers
                .iter()
                .any(|(name, value)| name == "content-range" && value == "bytes */*");
        if !query {
            return None;
        }
        let holds = self
            .0
            .lock()
            .expect("sessions")
            .get(&request.target)
            .cloned();
        Some(match holds {
            Some(Holds::Object(mut head, body)) => {
                head.extend_from_slice(&body);
                head
            }
            Some(Holds::Bytes(n)) if n > 0 => format!(
                "HTTP/1.1 308 Resume Incomplete\r\nRange: bytes=0-{}\r\nContent-Length: 0\r\n\r\n",
                n - 1
            )
            .into_bytes(),
            _ => b"HTTP/1.1 308 Resume Incomplete\r\nContent-Length: 0\r\n\r\n".to_vec(),
        })
    }

    /// Notes what the server's answer (`head`, `body`) to a relayed `request` says its
    /// session holds.
    pub(super) fn note(&self, request: &Request, head: &[u8], body: &bytes::Bytes) {
        if !is_session_put(request) {
            return;
        }
        let text = String::from_utf8_lossy(head);
        let status = text.split(' ').nth(1).unwrap_or_default();
        let holds = match status {
            "308" => {
                let last = text
                    .lines()
                    .filter_map(|line| line.split_once(':'))
                    .find(|(name, _)| name.trim().eq_ignore_ascii_case("range"))
                    .and_then(|(_, value)| value.trim().rsplit('-').next()?.parse::<u64>().ok());
                Holds::Bytes(last.map_or(0, |last| last + 1))
            }
            "200" | "201" => Holds::Object(head.to_vec(), body.clone()),
            _ => return,
        };
        self.0
            .lock()
            .expect("sessions")
            .insert(request.target.clone(), holds);
    }
}
