//! TPKT framing (RFC 1006 section 6) for H.225.0 and H.245 over TCP.
//!
//! Each message is `03 00 LL LL` followed by `LLLL - 4` octets of payload.
//! [`Deframer`] takes stream bytes in arbitrary pieces and yields whole
//! payloads; it owns a bounded buffer and never panics on bad input.

/// TPKT version octet.
pub const VERSION: u8 = 3;
/// Largest payload a TPKT can carry.
pub const MAX_PAYLOAD: usize = 0xFFFF - 4;

/// Framing errors (all caused by the remote peer).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum TpktError {
    /// The first octet of a TPKT header was not 3.
    #[error("tpkt: version {0} (expected 3) at stream offset {1}")]
    BadVersion(u8, u64),
    /// The length field was below the 4-octet header size.
    #[error("tpkt: length {0} shorter than the header at stream offset {1}")]
    BadLength(u16, u64),
}

/// Appends one TPKT carrying `payload` (truncated to [`MAX_PAYLOAD`]).
pub fn frame(payload: &[u8], out: &mut Vec<u8>) {
    let p = &payload[..payload.len().min(MAX_PAYLOAD)];
    out.push(VERSION);
    out.push(0);
    out.extend_from_slice(&((p.len() + 4) as u16).to_be_bytes());
    out.extend_from_slice(p);
}

/// Reassembles TPKT payloads from a byte stream.
#[derive(Debug, Default)]
pub struct Deframer {
    buf: Vec<u8>,
    /// Stream offset of `buf[0]`, for error messages.
    offset: u64,
}

impl Deframer {
    /// An empty deframer.
    pub fn new() -> Self {
        Self::default()
    }

    /// Feeds stream bytes.
    pub fn handle(&mut self, data: &[u8]) {
        self.buf.extend_from_slice(data);
    }

    /// The next complete payload, `Ok(None)` if more bytes are needed.
    /// Empty TPKTs (keepalives) are skipped. After an error the stream is
    /// unusable: the caller closes the connection.
    pub fn poll_payload(&mut self) -> Result<Option<Vec<u8>>, TpktError> {
        loop {
            let Some(h) = self.buf.get(..4) else {
                return Ok(None);
            };
            if h[0] != VERSION {
                return Err(TpktError::BadVersion(h[0], self.offset));
            }
            let len = u16::from_be_bytes([h[2], h[3]]);
            if len < 4 {
                return Err(TpktError::BadLength(len, self.offset));
            }
            let len = usize::from(len);
            if self.buf.len() < len {
                return Ok(None);
            }
            let p = self.buf[4..len].to_vec();
            self.buf.drain(..len);
            self.offset += len as u64;
            if !p.is_empty() {
                return Ok(Some(p));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reassembles_split_and_joined_frames() {
        let mut s = Vec::new();
        frame(b"hello", &mut s);
        frame(b"", &mut s);
        frame(b"world!", &mut s);
        assert_eq!(&s[..4], &[3, 0, 0, 9]);
        let mut d = Deframer::new();
        let mut got = Vec::new();
        for chunk in s.chunks(3) {
            d.handle(chunk);
            while let Some(p) = d.poll_payload().unwrap() {
                got.push(p);
            }
        }
        assert_eq!(got, vec![b"hello".to_vec(), b"world!".to_vec()]);
    }

    #[test]
    fn rejects_bad_headers() {
        let mut d = Deframer::new();
        d.handle(&[4, 0, 0, 8]);
        assert_eq!(d.poll_payload(), Err(TpktError::BadVersion(4, 0)));
        let mut d = Deframer::new();
        d.handle(&[3, 0, 0, 2]);
        assert_eq!(d.poll_payload(), Err(TpktError::BadLength(2, 0)));
    }
}
