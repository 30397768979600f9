//! RTCP (RFC 3550 §6): the common header, SR/RR sender SSRC and report
//! blocks, and compound-packet walking.
//!
//! ```text
//! |V=2|P|    RC   |   PT (200..)  |     length (words - 1)        |
//! |                  SSRC of sender (SR, RR, APP, FB)             |
//! SR: | NTP ts (64) | RTP ts (32) | packet count | octet count | blocks
//! RR: | report blocks (24 bytes each: SSRC, loss, ext. highest seq, ...)
//! ```
//!
//! A UDP datagram carries a compound packet: several RTCP packets back to
//! back, each sized by its own length field. [`Compound`] validates all of them
//! at once; after that each [`Packet`] view can be used without panics.

use core::ops::Range;

use super::{Error, Result, Ssrc};

mod field {
    use core::ops::Range;
    pub const VPRC: usize = 0;
    pub const PT: usize = 1;
    pub const LENGTH: Range<usize> = 2..4;
    pub const SSRC: Range<usize> = 4..8;
    pub const SR_RTP_TS: Range<usize> = 16..20;
    pub const SR_BLOCKS: usize = 28;
    pub const RR_BLOCKS: usize = 8;
    pub const BLOCK_LEN: usize = 24;
    /// Offset of "extended highest sequence number received" in a block.
    pub const BLOCK_EXT_SEQ: usize = 8;
}

/// Length of the common header.
pub const HEADER_LEN: usize = 4;

/// RTCP packet type (second header byte).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct PacketType(pub u8);

impl PacketType {
    /// Sender report.
    pub const SR: PacketType = PacketType(200);
    /// Receiver report.
    pub const RR: PacketType = PacketType(201);
    /// Source description.
    pub const SDES: PacketType = PacketType(202);
    /// Goodbye.
    pub const BYE: PacketType = PacketType(203);
    /// Application defined.
    pub const APP: PacketType = PacketType(204);
    /// Transport-layer feedback (RFC 4585).
    pub const RTPFB: PacketType = PacketType(205);
    /// Payload-specific feedback (RFC 4585).
    pub const PSFB: PacketType = PacketType(206);
}

/// RFC 5761 §4 demultiplexing: with rtcp-mux, a datagram on the RTP port is
/// RTCP when its second byte is 192..=223 (RTP payload types 64..=95 with the
/// marker bit, which RTP must not use).
pub fn is_rtcp(buf: &[u8]) -> bool {
    matches!(buf.get(1), Some(192..=223))
}

/// A view of one RTCP packet.
#[derive(Debug, Clone)]
pub struct Packet<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> Packet<T> {
    /// Wrap without checks.
    pub const fn new_unchecked(buffer: T) -> Packet<T> {
        Packet { buffer }
    }

    /// Wrap and validate one RTCP packet (the buffer may extend past it).
    pub fn new_checked(buffer: T) -> Result<Packet<T>> {
        let p = Packet::new_unchecked(buffer);
        p.check_len()?;
        Ok(p)
    }

    /// Version 2, the length field fits the buffer, and SR/RR report blocks
    /// fit inside the length.
    pub fn check_len(&self) -> Result<()> {
        let b = self.buffer.as_ref();
        if b.len() < HEADER_LEN || b[field::VPRC] >> 6 != 2 {
            return Err(Error);
        }
        let total = self.total_len();
        if total > b.len() {
            return Err(Error);
        }
        let min = match self.packet_type() {
            PacketType::SR => field::SR_BLOCKS + field::BLOCK_LEN * usize::from(self.count()),
            PacketType::RR => field::RR_BLOCKS + field::BLOCK_LEN * usize::from(self.count()),
            PacketType::APP | PacketType::RTPFB | PacketType::PSFB => field::SSRC.end,
            PacketType::SDES | PacketType::BYE if self.count() > 0 => field::SSRC.end,
            _ => HEADER_LEN,
        };
        if total < min {
            return Err(Error);
        }
        Ok(())
    }

    /// Version field.
    pub fn version(&self) -> u8 {
        self.buffer.as_ref()[field::VPRC] >> 6
    }

    /// Padding bit.
    pub fn padding(&self) -> bool {
        self.buffer.as_ref()[field::VPRC] & 0x20 != 0
    }

    /// Reception report count (SR/RR), source count (SDES/BYE) or subtype.
    pub fn count(&self) -> u8 {
        self.buffer.as_ref()[field::VPRC] & 0x1f
    }

    /// Packet type.
    pub fn packet_type(&self) -> PacketType {
        PacketType(self.buffer.as_ref()[field::PT])
    }

    /// Length field: size in 32-bit words minus one.
    pub fn length(&self) -> u16 {
        let b = self.buffer.as_ref();
        u16::from_be_bytes([b[field::LENGTH.start], b[field::LENGTH.start + 1]])
    }

    /// Size of this packet in bytes, header included.
    pub fn total_len(&self) -> usize {
        (usize::from(self.length()) + 1) * 4
    }

    /// The sender SSRC (SR, RR, APP, feedback) or first source (SDES chunk,
    /// BYE): whatever SSRC sits right after the header, if this type has one.
    pub fn ssrc(&self) -> Option<Ssrc> {
        self.has_ssrc()
            .then(|| Ssrc(read_u32(self.buffer.as_ref(), field::SSRC.start)))
    }

    fn has_ssrc(&self) -> bool {
        match self.packet_type() {
            PacketType::SR
            | PacketType::RR
            | PacketType::APP
            | PacketType::RTPFB
            | PacketType::PSFB => true,
            PacketType::SDES | PacketType::BYE => self.count() > 0,
            _ => false,
        }
    }

    /// SR only: the RTP timestamp matching the NTP time.
    pub fn sr_rtp_timestamp(&self) -> Option<u32> {
        (self.packet_type() == PacketType::SR)
            .then(|| read_u32(self.buffer.as_ref(), field::SR_RTP_TS.start))
    }

    /// Number of report blocks (SR/RR; 0 for other types).
    pub fn report_blocks(&self) -> usize {
        match self.packet_type() {
            PacketType::SR | PacketType::RR => usize::from(self.count()),
            _ => 0,
        }
    }

    fn block_offset(&self, i: usize) -> usize {
        let base = if self.packet_type() == PacketType::SR {
            field::SR_BLOCKS
        } else {
            field::RR_BLOCKS
        };
        base + i * field::BLOCK_LEN
    }

    /// SSRC the i-th report block is about. Panics if `i >= report_blocks()`.
    pub fn block_ssrc(&self, i: usize) -> Ssrc {
        Ssrc(read_u32(self.buffer.as_ref(), self.block_offset(i)))
    }

    /// Extended highest sequence number received, i-th report block.
    pub fn block_ext_seq(&self, i: usize) -> u32 {
        read_u32(
            self.buffer.as_ref(),
            self.block_offset(i) + field::BLOCK_EXT_SEQ,
        )
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> Packet<T> {
    /// Overwrite the SSRC after the header; no-op for types without one.
    pub fn set_ssrc(&mut self, ssrc: Ssrc) {
        if self.has_ssrc() {
            self.buffer.as_mut()[field::SSRC].copy_from_slice(&ssrc.0.to_be_bytes());
        }
    }

    /// SR only: overwrite the RTP timestamp; no-op for other types.
    pub fn set_sr_rtp_timestamp(&mut self, ts: u32) {
        if self.packet_type() == PacketType::SR {
            self.buffer.as_mut()[field::SR_RTP_TS].copy_from_slice(&ts.to_be_bytes());
        }
    }

    /// Overwrite the SSRC of the i-th report block.
    pub fn set_block_ssrc(&mut self, i: usize, ssrc: Ssrc) {
        let at = self.block_offset(i);
        self.buffer.as_mut()[at..at + 4].copy_from_slice(&ssrc.0.to_be_bytes());
    }

    /// Overwrite the extended highest sequence number of the i-th block.
    pub fn set_block_ext_seq(&mut self, i: usize, v: u32) {
        let at = self.block_offset(i) + field::BLOCK_EXT_SEQ;
        self.buffer.as_mut()[at..at + 4].copy_from_slice(&v.to_be_bytes());
    }
}

fn read_u32(b: &[u8], at: usize) -> u32 {
    u32::from_be_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}

/// A compound RTCP datagram: one or more packets back to back.
#[derive(Debug)]
pub struct Compound<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> Compound<T> {
    /// Validate every packet in the datagram. The lengths must add up to
    /// exactly the datagram size.
    pub fn new_checked(buffer: T) -> Result<Compound<T>> {
        let b = buffer.as_ref();
        if b.is_empty() {
            return Err(Error);
        }
        let mut off = 0;
        while off < b.len() {
            let p = Packet::new_checked(&b[off..])?;
            off += p.total_len();
        }
        Ok(Compound { buffer })
    }

    /// Byte range of the packet that starts at `offset`, or `None` past the end.
    /// Start with 0, then pass the previous range's `end`.
    pub fn packet_range(&self, offset: usize) -> Option<Range<usize>> {
        let b = self.buffer.as_ref();
        let rest = b.get(offset..).filter(|r| !r.is_empty())?;
        let len = Packet::new_unchecked(rest).total_len();
        Some(offset..offset + len)
    }

    /// A view of the packet at `range` (from [`Compound::packet_range`]).
    pub fn packet(&self, range: Range<usize>) -> Packet<&[u8]> {
        Packet::new_unchecked(&self.buffer.as_ref()[range])
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> Compound<T> {
    /// A mutable view of the packet at `range`.
    pub fn packet_mut(&mut self, range: Range<usize>) -> Packet<&mut [u8]> {
        Packet::new_unchecked(&mut self.buffer.as_mut()[range])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// SR (1 report block) + SDES (1 chunk, CNAME "ab").
    #[rustfmt::skip]
    const COMPOUND_BYTES: [u8; 52 + 12] = [
        // SR: V=2 RC=1, PT=200, length 12 (52 bytes)
        0x81, 0xc8, 0x00, 0x0c,
        0x11, 0x11, 0x11, 0x11,             // sender SSRC
        0xe0, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, // NTP
        0x00, 0x00, 0x10, 0x00,             // RTP ts
        0x00, 0x00, 0x00, 0x05,             // packet count
        0x00, 0x00, 0x03, 0x20,             // octet count
        0x22, 0x22, 0x22, 0x22,             // block: SSRC
        0x00, 0x00, 0x00, 0x00,             // loss
        0x00, 0x01, 0x00, 0x10,             // ext highest seq
        0x00, 0x00, 0x00, 0x00,             // jitter
        0x00, 0x00, 0x00, 0x00,             // LSR
        0x00, 0x00, 0x00, 0x00,             // DLSR
        // SDES: V=2 SC=1, PT=202, length 2 (12 bytes)
        0x81, 0xca, 0x00, 0x02,
        0x11, 0x11, 0x11, 0x11,             // chunk SSRC
        0x01, 0x02, b'a', b'b',             // CNAME "ab", then the null item in next word
    ];

    #[test]
    fn deconstruct_compound() {
        let c = Compound::new_checked(&COMPOUND_BYTES[..]).unwrap();
        let r = c.packet_range(0).unwrap();
        assert_eq!(r, 0..52);
        let sr = c.packet(r.clone());
        assert_eq!(sr.packet_type(), PacketType::SR);
        assert_eq!(sr.ssrc(), Some(Ssrc(0x1111_1111)));
        assert_eq!(sr.sr_rtp_timestamp(), Some(0x1000));
        assert_eq!(sr.report_blocks(), 1);
        assert_eq!(sr.block_ssrc(0), Ssrc(0x2222_2222));
        assert_eq!(sr.block_ext_seq(0), 0x0001_0010);
        let r = c.packet_range(r.end).unwrap();
        let sdes = c.packet(r.clone());
        assert_eq!(sdes.packet_type(), PacketType::SDES);
        assert_eq!(sdes.ssrc(), Some(Ssrc(0x1111_1111)));
        assert_eq!(sdes.sr_rtp_timestamp(), None);
        assert!(c.packet_range(r.end).is_none());
    }

    #[test]
    fn rewrite_compound() {
        let mut buf = COMPOUND_BYTES;
        let mut c = Compound::new_checked(&mut buf[..]).unwrap();
        let mut off = 0;
        while let Some(r) = c.packet_range(off) {
            off = r.end;
            let mut p = c.packet_mut(r);
            p.set_ssrc(Ssrc(0xabcd_ef01));
            p.set_sr_rtp_timestamp(0x2000);
            for i in 0..p.report_blocks() {
                p.set_block_ssrc(i, Ssrc(7));
                p.set_block_ext_seq(i, 9);
            }
        }
        assert_eq!(&buf[4..8], &[0xab, 0xcd, 0xef, 0x01]);
        assert_eq!(&buf[16..20], &[0, 0, 0x20, 0]);
        assert_eq!(&buf[28..32], &[0, 0, 0, 7]);
        assert_eq!(&buf[36..40], &[0, 0, 0, 9]);
        assert_eq!(&buf[56..60], &[0xab, 0xcd, 0xef, 0x01]);
        // Untouched: NTP and counts.
        assert_eq!(&buf[8..16], &COMPOUND_BYTES[8..16]);
        assert_eq!(&buf[20..28], &COMPOUND_BYTES[20..28]);
    }

    #[test]
    fn rejects_malformed() {
        assert!(Compound::new_checked(&[][..]).is_err());
        assert!(Compound::new_checked(&COMPOUND_BYTES[..3]).is_err());
        // Second packet truncated.
        assert!(Compound::new_checked(&COMPOUND_BYTES[..60]).is_err());
        // Wrong version.
        let mut b = COMPOUND_BYTES;
        b[0] = 0x41;
        assert!(Compound::new_checked(&b[..]).is_err());
        // SR claims 2 report blocks but its length only holds one.
        let mut b = COMPOUND_BYTES;
        b[0] = 0x82;
        assert!(Compound::new_checked(&b[..]).is_err());
        // RR shorter than its sender SSRC.
        assert!(Packet::new_checked(&[0x80u8, 0xc9, 0x00, 0x00][..]).is_err());
        // An empty RR (no blocks) is fine.
        let rr = [0x80u8, 0xc9, 0x00, 0x01, 1, 2, 3, 4];
        assert_eq!(
            Packet::new_checked(&rr[..]).unwrap().ssrc(),
            Some(Ssrc(0x0102_0304))
        );
    }

    #[test]
    fn demux() {
        assert!(is_rtcp(&COMPOUND_BYTES));
        assert!(!is_rtcp(&[0x80, 0x08]));
        assert!(!is_rtcp(&[0x80, 0x88]));
        assert!(!is_rtcp(&[0x80]));
    }
}
