//! [`Parts`]: an upload body cut into parts of a fixed size, each one marked with whether more
//! bytes follow it, so a writer can hold back the last part (a resumable session's final
//! chunk must say the object's total size).

use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::{Bytes, BytesMut};
use futures::Stream;
use pin_project::pin_project;

use crate::error::Result;

/// One part, and whether it is the body's last.
#[derive(Debug)]
pub(crate) struct Part {
    /// The bytes: exactly the part size, except in the last part.
    pub(crate) bytes: Bytes,
    /// Whether no byte follows this part.
    pub(crate) last: bool,
}

/// Cuts `body` into parts of `size` bytes (the last one shorter, never empty). Holds at most
/// one part being filled plus one chunk of the body; polling it again after an interruption
/// (a `select!` that took another branch) loses nothing.
#[pin_project]
pub(crate) struct Parts<S> {
    #[pin]
    body: S,
    size: usize,
    buf: BytesMut,
    pending: Bytes,
    done: bool,
    received: u64,
}

impl<S> Parts<S> {
    /// Parts of `body`, the first one starting with `initial` (at most `size` bytes).
    pub(crate) fn new(body: S, size: usize, initial: Bytes) -> Self {
        let mut buf = BytesMut::with_capacity(size);
        buf.extend_from_slice(&initial);
        Self {
            body,
            size,
            buf,
            pending: Bytes::new(),
            done: false,
            received: 0,
        }
    }

    /// Bytes taken from the body so far (`initial` not included).
    pub(crate) fn received(&self) -> u64 {
        self.received
    }
}

impl<S: Stream<Item = Result<Bytes>>> Stream for Parts<S> {
    type Item = Result<Part>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Part>>> {
        let mut this = self.project();
        loop {
            let full = this.buf.len() >= *this.size;
            if full || (*this.done && this.pending.is_empty()) {
                // A full part goes once it is known whether bytes follow it.
                let more = !this.pending.is_empty();
                if more || *this.done {
                    if this.buf.is_empty() {
                        return Poll::Ready(None);
                    }
                    let next = BytesMut::with_capacity(if more { *this.size } else { 0 });
                    let bytes = std::mem::replace(this.buf, next).freeze();
                    return Poll::Ready(Some(Ok(Part { bytes, last: !more })));
                }
            } else if !this.pending.is_empty() {
                let take = (*this.size - this.buf.len()).min(this.pending.len());
                this.buf.extend_from_slice(&this.pending.split_to(take));
                continue;
            }
            match this.body.as_mut().poll_next(cx) {
                Poll::Pending => return Poll::Pending,
                Poll::Ready(None) => *this.done = true,
                Poll::Ready(Some(Err(e))) => return Poll::Ready(Some(Err(e))),
                Poll::Ready(Some(Ok(chunk))) => {
                    *this.received += chunk.len() as u64;
                    *this.pending = chunk;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use futures::{StreamExt, stream};

    use super::*;

    async fn cut(
        chunks: &[&'static [u8]],
        size: usize,
        initial: &'static [u8],
    ) -> Vec<(String, bool)> {
        let body = stream::iter(
            chunks
                .iter()
                .map(|c| Ok(Bytes::from_static(c)))
                .collect::<Vec<_>>(),
        );
        let parts = Parts::new(body, size, Bytes::from_static(initial));
        let mut parts = std::pin::pin!(parts);
        let mut out = Vec::new();
        while let Some(part) = parts.next().await {
            let part = part.unwrap();
            out.push((String::from_utf8(part.bytes.to_vec()).unwrap(), part.last));
        }
        out
    }

    #[tokio::test]
    async fn parts_and_the_last_one() {
        let s = |v: &[(&str, bool)]| -> Vec<(String, bool)> {
            v.iter().map(|(a, b)| (a.to_string(), *b)).collect()
        };
        assert_eq!(cut(&[], 3, b"").await, s(&[]));
        assert_eq!(cut(&[b"", b""], 3, b"").await, s(&[]));
        assert_eq!(cut(&[b"ab"], 3, b"").await, s(&[("ab", true)]));
        assert_eq!(cut(&[b"abc"], 3, b"").await, s(&[("abc", true)]));
        assert_eq!(
            cut(&[b"abc", b"", b"d"], 3, b"").await,
            s(&[("abc", false), ("d", true)])
        );
        assert_eq!(
            cut(&[b"a", b"bcdefg", b"h"], 3, b"").await,
            s(&[("abc", false), ("def", false), ("gh", true)])
        );
        assert_eq!(
            cut(&[b"abcdef"], 3, b"").await,
            s(&[("abc", false), ("def", true)])
        );
        assert_eq!(
            cut(&[b"cd"], 3, b"ab").await,
            s(&[("abc", false), ("d", true)])
        );
        assert_eq!(cut(&[], 3, b"ab").await, s(&[("ab", true)]));
    }
}
