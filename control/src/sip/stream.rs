//! SIP message framing on stream transports (TCP, TLS), sans-IO.
//!
//! On a datagram transport every datagram is one message. On a stream the
//! receiver has to find where each message ends (RFC 3261 §18.3): the header
//! block ends at the first empty line and the body is exactly `Content-Length`
//! bytes, a header that is mandatory on streams. A [`Framer`] is fed the bytes
//! of one connection as they arrive and yields whole messages (header block and
//! body, ready for [`crate::sip::Message::parse`]).
//!
//! Also handled here, because they live between messages:
//! - RFC 5626 §3.5.1 keepalives: a client's double CRLF "ping" is answered with a
//!   single CRLF "pong" ([`Frame::Ping`]); a lone CRLF (the pong, or stray
//!   whitespace before a message, which RFC 3261 §7.5 says to ignore) is
//!   skipped.
//! - Limits: a header block larger than [`Limits::max_header`] or a body larger
//!   than [`Limits::max_body`] is a [`FrameError`], as is a message without a
//!   valid `Content-Length` (compact form `l` included). A framing error leaves
//!   the stream position unknown, so the connection must be closed; the error
//!   says what and at which byte offset of the connection.
//!
//! Written by hand: the job is a bounded search for `\r\n\r\n` and one header
//! value; no stream codec crate frames SIP.

use std::fmt;

/// Size limits for one message on a stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Largest start line + header block, including the empty line.
    pub max_header: usize,
    /// Largest body (`Content-Length`).
    pub max_body: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_header: 16 * 1024,
            max_body: 64 * 1024,
        }
    }
}

/// What the framer found next in the stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Frame {
    /// One whole SIP message: header block and body.
    Message(Vec<u8>),
    /// An RFC 5626 keepalive ping (CRLF CRLF); answer it with [`PONG`].
    Ping,
}

/// The keepalive answer to a [`Frame::Ping`].
pub const PONG: &[u8] = b"\r\n";

/// Why a stream can no longer be framed (close the connection).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FrameError {
    /// No empty line within the header limit.
    #[error("header block at stream offset {offset} exceeds {limit} bytes")]
    HeaderTooLarge { offset: u64, limit: usize },
    /// The message has no Content-Length, or an unparsable one.
    #[error("message at stream offset {offset}: {what}")]
    BadContentLength { offset: u64, what: &'static str },
    /// The body announced is larger than allowed.
    #[error("message at stream offset {offset}: Content-Length {len} exceeds {limit} bytes")]
    BodyTooLarge {
        offset: u64,
        len: usize,
        limit: usize,
    },
}

/// Reassembles SIP messages from the bytes of one stream connection.
pub struct Framer {
    buf: Vec<u8>,
    /// Stream offset of `buf[0]`.
    offset: u64,
    limits: Limits,
    /// Header length and body length of the message at the head, once known.
    pending: Option<(usize, usize)>,
    failed: bool,
    last_error: Option<FrameError>,
}

impl fmt::Debug for Framer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Framer")
            .field("buffered", &self.buf.len())
            .field("offset", &self.offset)
            .field("failed", &self.failed)
            .finish()
    }
}

impl Framer {
    pub fn new(limits: Limits) -> Framer {
        Framer {
            buf: Vec::new(),
            offset: 0,
            limits,
            pending: None,
            failed: false,
            last_error: None,
        }
    }

    /// Bytes received and not yet returned as frames.
    pub fn buffered(&self) -> usize {
        self.buf.len()
    }

    /// Append bytes read from the connection.
    pub fn push(&mut self, bytes: &[u8]) {
        if !self.failed {
            self.buf.extend_from_slice(bytes);
        }
    }

    /// The next complete frame, `Ok(None)` when more bytes are needed. After an
    /// error every call returns the same error.
    pub fn next_frame(&mut self) -> Result<Option<Frame>, FrameError> {
        if self.failed {
            return Err(self.error_again());
        }
        match self.frame() {
            Err(e) => {
                self.failed = true;
                self.last_error = Some(e.clone());
                Err(e)
            }
            ok => ok,
        }
    }

    fn error_again(&self) -> FrameError {
        self.last_error
            .clone()
            .unwrap_or(FrameError::BadContentLength {
                offset: self.offset,
                what: "stream already failed",
            })
    }

    fn frame(&mut self) -> Result<Option<Frame>, FrameError> {
        if self.pending.is_none() {
            // Between messages: keepalives and stray line ends.
            loop {
                if self.buf.starts_with(b"\r\n\r\n") {
                    self.consume(4);
                    return Ok(Some(Frame::Ping));
                }
                if self.buf.starts_with(b"\r\n") {
                    if self.buf.len() < 4 && b"\r\n\r\n".starts_with(&self.buf) {
                        // Could still become a ping.
                        return Ok(None);
                    }
                    self.consume(2);
                    continue;
                }
                if self.buf.first() == Some(&b'\n') {
                    self.consume(1);
                    continue;
                }
                break;
            }
            if self.buf.is_empty() || (self.buf == b"\r") {
                return Ok(None);
            }
            let Some(end) = find_header_end(&self.buf, self.limits.max_header) else {
                if self.buf.len() >= self.limits.max_header {
                    return Err(FrameError::HeaderTooLarge {
                        offset: self.offset,
                        limit: self.limits.max_header,
                    });
                }
                return Ok(None);
            };
            let body =
                content_length(&self.buf[..end]).map_err(|what| FrameError::BadContentLength {
                    offset: self.offset,
                    what,
                })?;
            if body > self.limits.max_body {
                return Err(FrameError::BodyTooLarge {
                    offset: self.offset,
                    len: body,
                    limit: self.limits.max_body,
                });
            }
            self.pending = Some((end, body));
        }
        let Some((head, body)) = self.pending else {
            return Ok(None);
        };
        if self.buf.len() < head + body {
            return Ok(None);
        }
        let msg = self.buf[..head + body].to_vec();
        self.consume(head + body);
        self.pending = None;
        Ok(Some(Frame::Message(msg)))
    }

    fn consume(&mut self, n: usize) {
        self.buf.drain(..n);
        self.offset += n as u64;
    }
}

/// Index just past the `\r\n\r\n` ending the header block, searched within `limit` bytes.
fn find_header_end(buf: &[u8], limit: usize) -> Option<usize> {
    let hay = &buf[..buf.len().min(limit)];
    hay.windows(4).position(|w| w == b"\r\n\r\n").map(|i| i + 4)
}

/// The Content-Length of a header block (long or compact name, folded lines not
/// allowed for this header). Exactly one value is accepted.
fn content_length(head: &[u8]) -> Result<usize, &'static str> {
    let text = std::str::from_utf8(head).map_err(|_| "header block is not UTF-8")?;
    let mut found: Option<usize> = None;
    // Skip the start line.
    for line in text.split("\r\n").skip(1) {
        let Some((name, value)) = line.split_once(':') else {
            continue;
        };
        let name = name.trim_end();
        if name.eq_ignore_ascii_case("content-length") || name.eq_ignore_ascii_case("l") {
            let v = value.trim();
            if v.is_empty() || v.len() > 9 || !v.bytes().all(|b| b.is_ascii_digit()) {
                return Err("Content-Length is not a number");
            }
            let n: usize = v.parse().map_err(|_| "Content-Length is not a number")?;
            if found.is_some_and(|f| f != n) {
                return Err("conflicting Content-Length headers");
            }
            found = Some(n);
        }
    }
    found.ok_or("no Content-Length (mandatory on stream transports, RFC 3261 §18.3)")
}

#[cfg(test)]
mod tests {
    use super::*;

    const INVITE: &str = "INVITE sip:1002@tandem SIP/2.0\r\nVia: SIP/2.0/TCP 10.0.0.1:5060;branch=z9hG4bK1\r\nFrom: <sip:1001@tandem>;tag=a\r\nTo: <sip:1002@tandem>\r\nCall-ID: c1\r\nCSeq: 1 INVITE\r\nMax-Forwards: 70\r\nContent-Length: 5\r\n\r\nhello";

    fn all(f: &mut Framer) -> Vec<Frame> {
        let mut v = Vec::new();
        while let Some(fr) = f.next_frame().unwrap() {
            v.push(fr);
        }
        v
    }

    #[test]
    fn one_byte_at_a_time() {
        let mut f = Framer::new(Limits::default());
        let mut got = Vec::new();
        let stream = format!("{INVITE}{INVITE}");
        for b in stream.bytes() {
            f.push(&[b]);
            got.extend(all(&mut f));
        }
        assert_eq!(got.len(), 2);
        for g in got {
            assert_eq!(g, Frame::Message(INVITE.as_bytes().to_vec()));
        }
        assert_eq!(f.buffered(), 0);
    }

    #[test]
    fn keepalives_between_messages() {
        let mut f = Framer::new(Limits::default());
        f.push(b"\r\n\r\n");
        f.push(INVITE.as_bytes());
        f.push(b"\r\n");
        f.push(b"l: 0\r\n"); // garbage start line with a compact length: still framed
        let got = all(&mut f);
        assert_eq!(got[0], Frame::Ping);
        assert_eq!(got[1], Frame::Message(INVITE.as_bytes().to_vec()));
        assert_eq!(got.len(), 2, "the pong before the last bytes is skipped");
        // A half ping waits for more bytes.
        let mut f = Framer::new(Limits::default());
        f.push(b"\r\n\r");
        assert_eq!(f.next_frame().unwrap(), None);
        f.push(b"\n");
        assert_eq!(f.next_frame().unwrap(), Some(Frame::Ping));
    }

    #[test]
    fn compact_length_and_zero_body() {
        let msg = "OPTIONS sip:t SIP/2.0\r\nl:0\r\n\r\n";
        let mut f = Framer::new(Limits::default());
        f.push(msg.as_bytes());
        assert_eq!(all(&mut f), vec![Frame::Message(msg.as_bytes().to_vec())]);
    }

    #[test]
    fn missing_or_bad_length_fails_the_stream() {
        let mut f = Framer::new(Limits::default());
        f.push(b"\r\nBYE sip:x SIP/2.0\r\nVia: x\r\n\r\n");
        let e = f.next_frame().unwrap_err();
        assert!(
            matches!(e, FrameError::BadContentLength { offset: 2, .. }),
            "{e}"
        );
        assert!(e.to_string().contains("offset 2"), "{e}");
        // Sticky.
        f.push(INVITE.as_bytes());
        assert_eq!(f.next_frame().unwrap_err(), e);

        for bad in [
            "Content-Length: -1",
            "Content-Length: 1x",
            "Content-Length: 99999999999",
        ] {
            let mut f = Framer::new(Limits::default());
            f.push(format!("BYE sip:x SIP/2.0\r\n{bad}\r\n\r\n").as_bytes());
            assert!(f.next_frame().is_err(), "{bad}");
        }
        let mut f = Framer::new(Limits::default());
        f.push(b"BYE sip:x SIP/2.0\r\nContent-Length: 1\r\nl: 2\r\n\r\nab");
        assert!(f.next_frame().is_err());
    }

    #[test]
    fn limits() {
        let lim = Limits {
            max_header: 64,
            max_body: 8,
        };
        let mut f = Framer::new(lim);
        f.push(&[b'A'; 63]);
        assert_eq!(f.next_frame().unwrap(), None);
        f.push(b"A");
        assert!(matches!(
            f.next_frame(),
            Err(FrameError::HeaderTooLarge { limit: 64, .. })
        ));
        let mut f = Framer::new(lim);
        f.push(b"BYE sip:x SIP/2.0\r\nl: 9\r\n\r\n");
        assert!(matches!(
            f.next_frame(),
            Err(FrameError::BodyTooLarge { len: 9, .. })
        ));
    }

    #[test]
    fn parses_as_sip() {
        let mut f = Framer::new(Limits::default());
        f.push(INVITE.as_bytes());
        let Some(Frame::Message(m)) = f.next_frame().unwrap() else {
            panic!("no frame");
        };
        assert!(crate::sip::Message::parse(&m).is_ok());
    }
}
