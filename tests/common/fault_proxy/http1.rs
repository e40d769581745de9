//! The HTTP/1.1 the fault proxy speaks: requests read whole from a client (by
//! `Content-Length` or chunked), sent on to the store, and S3 error documents.

use bytes::{Buf, BytesMut};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

/// A request as read from the client.
pub(super) struct Request {
    pub(super) method: String,
    pub(super) target: String,
    pub(super) headers: Vec<(String, String)>,
    pub(super) body: bytes::Bytes,
}

/// A connection the proxy serves: plain TCP or TLS.
pub(super) trait Socket: AsyncRead + AsyncWrite + Unpin + Send {}
impl<S: AsyncRead + AsyncWrite + Unpin + Send> Socket for S {}

/// Reads one request (head and body, by `Content-Length` or chunked); `None` at the end of
/// the connection. Answers `Expect: 100-continue` itself.
pub(super) async fn read_request(socket: &mut impl Socket, buf: &mut BytesMut) -> Option<Request> {
    let head_end = loop {
        if let Some(at) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break at;
        }
        if socket.read_buf(buf).await.ok()? == 0 {
            return None;
        }
    };
    let head = String::from_utf8(buf.split_to(head_end + 4).to_vec()).ok()?;
    let mut lines = head.split("\r\n");
    let mut first = lines.next()?.split(' ');
    let (method, target) = (first.next()?.to_owned(), first.next()?.to_owned());
    let headers: Vec<(String, String)> = lines
        .filter(|l| !l.is_empty())
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_owned()))
        .collect();
    let header = |name: &str| headers.iter().find(|(k, _)| k == name).map(|(_, v)| v);
    if header("expect").is_some_and(|v| v.eq_ignore_ascii_case("100-continue")) {
        socket
            .write_all(b"HTTP/1.1 100 Continue\r\n\r\n")
            .await
            .ok()?;
    }
    let body = if header("transfer-encoding").is_some_and(|v| v.contains("chunked")) {
        read_chunked(socket, buf).await?
    } else {
        let len: usize = header("content-length").map_or(Some(0), |v| v.parse().ok())?;
        while buf.len() < len {
            if socket.read_buf(buf).await.ok()? == 0 {
                return None;
            }
        }
        buf.split_to(len).freeze()
    };
    Some(Request {
        method,
        target,
        headers,
        body,
    })
}

async fn read_chunked(socket: &mut impl Socket, buf: &mut BytesMut) -> Option<bytes::Bytes> {
    let mut body = BytesMut::new();
    loop {
        let line_end = loop {
            if let Some(at) = buf.windows(2).position(|w| w == b"\r\n") {
                break at;
            }
            if socket.read_buf(buf).await.ok()? == 0 {
                return None;
            }
        };
        let line = std::str::from_utf8(&buf[..line_end]).ok()?.to_owned();
        buf.advance(line_end + 2);
        let size = usize::from_str_radix(line.split(';').next()?.trim(), 16).ok()?;
        while buf.len() < size + 2 {
            if socket.read_buf(buf).await.ok()? == 0 {
                return None;
            }
        }
        body.extend_from_slice(&buf[..size]);
        buf.advance(size + 2);
        if size == 0 {
            // (Trailers are not used by the clients under test.)
            return Some(body.freeze());
        }
    }
}

/// Sends the request to `upstream` (`http://host:port`); returns the response's head and
/// body as bytes to write. A `Location` starting with `relocate.0` is rewritten to start with
/// `relocate.1`, as a TLS front end rewrites its plain-HTTP server's redirects.
pub(super) async fn forward(
    client: &reqwest::Client,
    upstream: &str,
    request: &Request,
    relocate: Option<&(String, String)>,
) -> Option<(Vec<u8>, bytes::Bytes)> {
    let method = reqwest::Method::from_bytes(request.method.as_bytes()).ok()?;
    let mut outgoing = client.request(method.clone(), format!("{upstream}{}", request.target));
    // `Host` goes through as the client sent it: stores that check SigV4 signatures (Garage,
    // AWS) verify it, and the client signed the proxy's address.
    for (name, value) in &request.headers {
        if !matches!(
            name.as_str(),
            "connection" | "expect" | "transfer-encoding" | "content-length"
        ) {
            outgoing = outgoing.header(name, value);
        }
    }
    let response = outgoing.body(request.body.clone()).send().await.ok()?;
    let status = response.status();
    let mut head = format!(
        "HTTP/1.1 {} {}\r\n",
        status.as_u16(),
        status.canonical_reason().unwrap_or("")
    );
    let mut declared_len = None;
    for (name, value) in response.headers() {
        match name.as_str() {
            "content-length" => declared_len = value.to_str().ok().map(str::to_owned),
            "transfer-encoding" | "connection" => {}
            "location" => {
                let mut location = value.to_str().unwrap_or("").to_owned();
                if let Some((from, to)) = relocate
                    && let Some(rest) = location.strip_prefix(from.as_str())
                {
                    location = format!("{to}{rest}");
                }
                head.push_str(&format!("{name}: {location}\r\n"));
            }
            _ => {
                head.push_str(&format!("{name}: {}\r\n", value.to_str().unwrap_or("")));
            }
        }
    }
    let body = response.bytes().await.ok()?;
    let len = if method == reqwest::Method::HEAD {
        declared_len.unwrap_or_else(|| "0".into())
    } else {
        body.len().to_string()
    };
    head.push_str(&format!("Content-Length: {len}\r\n\r\n"));
    Some((head.into_bytes(), body))
}

/// Answers with an S3 error document.
pub(super) async fn write_error(
    socket: &mut impl Socket,
    status: u16,
    code: &str,
    message: &str,
) -> bool {
    let body = format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<Error><Code>{code}</Code>\
         <Message>{message}</Message><RequestId>injected</RequestId></Error>"
    );
    let response = format!(
        "HTTP/1.1 {status} Injected\r\nContent-Type: application/xml\r\n\
         Content-Length: {}\r\n\r\n{body}",
        body.len()
    );
    socket.write_all(response.as_bytes()).await.is_ok()
}
