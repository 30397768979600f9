//! RTP fixed header (RFC 3550 §5.1): a checked view and a `Repr`.
//!
//! ```text
//!  0                   1                   2                   3
//!  0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
//! |V=2|P|X|  CC   |M|     PT      |       sequence number         |
//! |                           timestamp                           |
//! |           synchronization source (SSRC) identifier            |
//! |            contributing source (CSRC) identifiers  (CC x 32)  |
//! | [extension: profile(16) | length in words(16) | data ...]     |
//! | payload ...                        [padding ... | pad count]  |
//! ```

use super::{Error, Pt, Result, Ssrc};

mod field {
    use core::ops::Range;
    pub const VPXCC: usize = 0;
    pub const MPT: usize = 1;
    pub const SEQ: Range<usize> = 2..4;
    pub const TS: Range<usize> = 4..8;
    pub const SSRC: Range<usize> = 8..12;
    pub const CSRC_START: usize = 12;
}

/// Length of the fixed header (no CSRCs, no extension).
pub const HEADER_LEN: usize = field::CSRC_START;

/// The only RTP version in use.
pub const VERSION: u8 = 2;

/// A read/write view of an RTP packet.
#[derive(Debug, Clone)]
pub struct Packet<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> Packet<T> {
    /// Wrap without checks. Accessors may panic on a short buffer; use
    /// [`Packet::new_checked`] for anything that came from the network.
    pub const fn new_unchecked(buffer: T) -> Packet<T> {
        Packet { buffer }
    }

    /// Wrap and validate: version 2, CSRC list, extension and padding all fit.
    pub fn new_checked(buffer: T) -> Result<Packet<T>> {
        let p = Packet::new_unchecked(buffer);
        p.check_len()?;
        Ok(p)
    }

    /// Validate the buffer against the header's own length fields. After this
    /// returns `Ok`, no accessor panics.
    pub fn check_len(&self) -> Result<()> {
        let b = self.buffer.as_ref();
        if b.len() < HEADER_LEN || b[field::VPXCC] >> 6 != VERSION {
            return Err(Error);
        }
        let hl = self.header_len_unchecked().ok_or(Error)?;
        if hl > b.len() {
            return Err(Error);
        }
        if self.padding() {
            // The last byte counts the padding bytes, itself included.
            let pad = usize::from(b[b.len() - 1]);
            if pad == 0 || pad > b.len() - hl {
                return Err(Error);
            }
        }
        Ok(())
    }

    /// Header length including CSRCs and the extension; `None` if the extension
    /// header itself does not fit.
    fn header_len_unchecked(&self) -> Option<usize> {
        let b = self.buffer.as_ref();
        let mut hl = HEADER_LEN + 4 * usize::from(b[field::VPXCC] & 0x0f);
        if b[field::VPXCC] & 0x10 != 0 {
            let ext = b.get(hl..hl + 4)?;
            let words = usize::from(u16::from_be_bytes([ext[2], ext[3]]));
            hl += 4 + 4 * words;
        }
        Some(hl)
    }

    /// Consume the view, returning the buffer.
    pub fn into_inner(self) -> T {
        self.buffer
    }

    /// Version field (always 2 after `new_checked`).
    pub fn version(&self) -> u8 {
        self.buffer.as_ref()[field::VPXCC] >> 6
    }

    /// Padding (P) bit.
    pub fn padding(&self) -> bool {
        self.buffer.as_ref()[field::VPXCC] & 0x20 != 0
    }

    /// Header extension (X) bit.
    pub fn extension(&self) -> bool {
        self.buffer.as_ref()[field::VPXCC] & 0x10 != 0
    }

    /// Number of CSRC identifiers (CC).
    pub fn csrc_count(&self) -> u8 {
        self.buffer.as_ref()[field::VPXCC] & 0x0f
    }

    /// Marker (M) bit.
    pub fn marker(&self) -> bool {
        self.buffer.as_ref()[field::MPT] & 0x80 != 0
    }

    /// Payload type.
    pub fn payload_type(&self) -> Pt {
        Pt::new(self.buffer.as_ref()[field::MPT])
    }

    /// 16-bit sequence number as on the wire.
    pub fn sequence_number(&self) -> u16 {
        let b = self.buffer.as_ref();
        u16::from_be_bytes([b[field::SEQ.start], b[field::SEQ.start + 1]])
    }

    /// Media timestamp (ticks of the payload's clock rate).
    pub fn timestamp(&self) -> u32 {
        read_u32(self.buffer.as_ref(), field::TS.start)
    }

    /// Synchronisation source.
    pub fn ssrc(&self) -> Ssrc {
        Ssrc(read_u32(self.buffer.as_ref(), field::SSRC.start))
    }

    /// Offset of the payload: fixed header + CSRCs + extension.
    pub fn payload_offset(&self) -> usize {
        // check_len proved the extension header fits.
        self.header_len_unchecked().unwrap_or(HEADER_LEN)
    }

    /// Number of padding bytes at the end (0 without the P bit).
    pub fn padding_len(&self) -> usize {
        let b = self.buffer.as_ref();
        if self.padding() {
            usize::from(b[b.len() - 1])
        } else {
            0
        }
    }

    /// The payload, without header and padding.
    pub fn payload(&self) -> &[u8] {
        let b = self.buffer.as_ref();
        &b[self.payload_offset()..b.len() - self.padding_len()]
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> Packet<T> {
    /// Set the marker bit.
    pub fn set_marker(&mut self, m: bool) {
        let b = &mut self.buffer.as_mut()[field::MPT];
        *b = (*b & 0x7f) | if m { 0x80 } else { 0 };
    }

    /// Set the payload type (keeps the marker bit).
    pub fn set_payload_type(&mut self, pt: Pt) {
        let b = &mut self.buffer.as_mut()[field::MPT];
        *b = (*b & 0x80) | pt.get();
    }

    /// Set the 16-bit sequence number.
    pub fn set_sequence_number(&mut self, seq: u16) {
        self.buffer.as_mut()[field::SEQ].copy_from_slice(&seq.to_be_bytes());
    }

    /// Set the timestamp.
    pub fn set_timestamp(&mut self, ts: u32) {
        self.buffer.as_mut()[field::TS].copy_from_slice(&ts.to_be_bytes());
    }

    /// Set the SSRC.
    pub fn set_ssrc(&mut self, ssrc: Ssrc) {
        self.buffer.as_mut()[field::SSRC].copy_from_slice(&ssrc.0.to_be_bytes());
    }

    /// The payload, mutable (without header and padding).
    pub fn payload_mut(&mut self) -> &mut [u8] {
        let (start, pad) = (self.payload_offset(), self.padding_len());
        let b = self.buffer.as_mut();
        let end = b.len() - pad;
        &mut b[start..end]
    }
}

fn read_u32(b: &[u8], at: usize) -> u32 {
    u32::from_be_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}

/// A plain RTP header (no CSRCs, no extension, no padding).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Repr {
    pub marker: bool,
    pub payload_type: Pt,
    pub sequence_number: u16,
    pub timestamp: u32,
    pub ssrc: Ssrc,
}

impl Repr {
    /// Parse the header fields of a checked packet.
    pub fn parse<T: AsRef<[u8]>>(p: &Packet<T>) -> Repr {
        Repr {
            marker: p.marker(),
            payload_type: p.payload_type(),
            sequence_number: p.sequence_number(),
            timestamp: p.timestamp(),
            ssrc: p.ssrc(),
        }
    }

    /// Bytes the header takes.
    pub const fn buffer_len(&self) -> usize {
        HEADER_LEN
    }

    /// Write the header into the first [`HEADER_LEN`] bytes of `buf`.
    ///
    /// Returns `Err` if `buf` is shorter than the header.
    pub fn emit(&self, buf: &mut [u8]) -> Result<()> {
        let h = buf.get_mut(..HEADER_LEN).ok_or(Error)?;
        h[field::VPXCC] = VERSION << 6;
        let mut p = Packet::new_unchecked(h);
        p.set_marker(self.marker);
        p.set_payload_type(self.payload_type);
        p.set_sequence_number(self.sequence_number);
        p.set_timestamp(self.timestamp);
        p.set_ssrc(self.ssrc);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// V=2, M=1, PT=8 (PCMA), seq 0x1234, ts 0xdeadbeef, SSRC 0x01020304, 4 payload bytes.
    const PACKET_BYTES: [u8; 16] = [
        0x80, 0x88, 0x12, 0x34, 0xde, 0xad, 0xbe, 0xef, 0x01, 0x02, 0x03, 0x04, 0xd5, 0xd5, 0x55,
        0x55,
    ];

    /// V=2, P=1, X=1, CC=1, PT=0; CSRC; extension with 1 word; 2 payload bytes + 2 padding.
    const COMPLEX_BYTES: [u8; 32] = [
        0xb1, 0x00, 0x00, 0x01, 0x00, 0x00, 0x00, 0xa0, 0xaa, 0xbb, 0xcc, 0xdd, // fixed
        0x11, 0x22, 0x33, 0x44, // CSRC
        0xbe, 0xde, 0x00, 0x01, 0x10, 0xff, 0x00, 0x00, // extension (1 word)
        0x7f, 0x7e, 0x00, 0x02, 0x01, 0x02, // payload (6 bytes)
        0x00, 0x02, // padding: 2 bytes, the last one holds the count
    ];

    #[test]
    fn deconstruct() {
        let p = Packet::new_checked(&PACKET_BYTES[..]).unwrap();
        assert_eq!(p.version(), 2);
        assert!(!p.padding());
        assert!(!p.extension());
        assert_eq!(p.csrc_count(), 0);
        assert!(p.marker());
        assert_eq!(p.payload_type(), Pt::PCMA);
        assert_eq!(p.sequence_number(), 0x1234);
        assert_eq!(p.timestamp(), 0xdead_beef);
        assert_eq!(p.ssrc(), Ssrc(0x0102_0304));
        assert_eq!(p.payload_offset(), 12);
        assert_eq!(p.payload(), &[0xd5, 0xd5, 0x55, 0x55]);
    }

    #[test]
    fn deconstruct_csrc_extension_padding() {
        let p = Packet::new_checked(&COMPLEX_BYTES[..]).unwrap();
        assert!(p.padding());
        assert!(p.extension());
        assert_eq!(p.csrc_count(), 1);
        assert_eq!(p.ssrc(), Ssrc(0xaabb_ccdd));
        assert_eq!(p.payload_offset(), 24);
        assert_eq!(p.padding_len(), 2);
        assert_eq!(p.payload(), &[0x7f, 0x7e, 0x00, 0x02, 0x01, 0x02]);
    }

    #[test]
    fn construct_and_rewrite() {
        let mut buf = [0u8; 16];
        let repr = Repr {
            marker: true,
            payload_type: Pt::PCMA,
            sequence_number: 0x1234,
            timestamp: 0xdead_beef,
            ssrc: Ssrc(0x0102_0304),
        };
        repr.emit(&mut buf).unwrap();
        buf[12..].copy_from_slice(&PACKET_BYTES[12..]);
        assert_eq!(buf, PACKET_BYTES);

        let mut p = Packet::new_checked(&mut buf[..]).unwrap();
        p.set_ssrc(Ssrc(0xcafe_f00d));
        p.set_sequence_number(0xffff);
        p.set_timestamp(7);
        p.set_marker(false);
        assert_eq!(Repr::parse(&p).ssrc, Ssrc(0xcafe_f00d));
        assert_eq!(p.sequence_number(), 0xffff);
        assert_eq!(p.timestamp(), 7);
        assert!(!p.marker());
        assert_eq!(p.payload_type(), Pt::PCMA);
        assert_eq!(p.payload(), &PACKET_BYTES[12..]);
        assert!(Repr::parse(&p).emit(&mut [0u8; 11]).is_err());
    }

    #[test]
    fn rejects_malformed() {
        // Too short.
        assert_eq!(Packet::new_checked(&PACKET_BYTES[..11]).unwrap_err(), Error);
        // Version 1.
        let mut b = PACKET_BYTES;
        b[0] = 0x40;
        assert!(Packet::new_checked(&b[..]).is_err());
        // CSRC count larger than the packet.
        let mut b = PACKET_BYTES;
        b[0] = 0x82;
        assert!(Packet::new_checked(&b[..]).is_err());
        // Extension header that does not fit.
        let mut b = PACKET_BYTES;
        b[0] = 0x90;
        b[14] = 0x00;
        b[15] = 0x05;
        assert!(Packet::new_checked(&b[..]).is_err());
        // Extension bit with no room for the extension header at all.
        assert!(Packet::new_checked(&[0x90u8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0][..]).is_err());
        // Padding count zero, and padding longer than the payload.
        let mut b = PACKET_BYTES;
        b[0] = 0xa0;
        b[15] = 0;
        assert!(Packet::new_checked(&b[..]).is_err());
        b[15] = 5;
        assert!(Packet::new_checked(&b[..]).is_err());
        b[15] = 4;
        assert_eq!(Packet::new_checked(&b[..]).unwrap().payload(), &[] as &[u8]);
    }
}
