//! RTP/RTCP wire formats.
//!
//! Zero-copy views over packet bytes, in the smoltcp style:
//! - [`rtp::Packet`] / [`rtcp::Packet`] wrap any `T: AsRef<[u8]>` (and
//!   `AsMut<[u8]>` for the setters). `new_checked` validates the length and the
//!   fixed fields once; after it succeeds no accessor can panic.
//! - `Repr` types carry the validated meaning and `emit` it into a buffer (used
//!   to build packets and test fixtures).
//!
//! Nothing here allocates, reads the clock or does I/O. A parse failure is the
//! unit [`Error`]: on the hot path it only bumps a drop counter.

pub mod rtcp;
pub mod rtp;

use core::fmt;

/// A packet failed validation (too short, wrong version, bad lengths).
///
/// Deliberately a unit struct: the relay only counts malformed packets, so the
/// error costs nothing to build.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Error;

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("malformed RTP/RTCP packet")
    }
}

impl std::error::Error for Error {}

/// Result of a wire parse.
pub type Result<T> = core::result::Result<T, Error>;

/// RTP synchronisation source identifier (RFC 3550 §5.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Ssrc(pub u32);

/// RTP payload type, 7 bits (RFC 3550 §5.1, RFC 3551 §6).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Pt(u8);

impl Pt {
    /// PCMU (G.711 µ-law), RFC 3551.
    pub const PCMU: Pt = Pt(0);
    /// PCMA (G.711 A-law), RFC 3551.
    pub const PCMA: Pt = Pt(8);
    /// G.729 (Annex A compatible), RFC 3551.
    pub const G729: Pt = Pt(18);

    /// A payload type from the low 7 bits of `v` (the marker bit is not part of it).
    pub const fn new(v: u8) -> Pt {
        Pt(v & 0x7f)
    }

    /// The 7-bit value.
    pub const fn get(self) -> u8 {
        self.0
    }

    /// RTP clock rate in Hz for the static payload types of RFC 3551 §6.
    ///
    /// Dynamic types (96..=127) and unassigned ones return 8000, the telephony
    /// rate: the only rate a voice gateway negotiates for dynamic audio types
    /// such as telephone-event, and a safe default for timestamp smoothing.
    pub const fn clock_rate(self) -> u32 {
        match self.0 {
            10 | 11 => 44_100,
            6 => 16_000,
            16 => 11_025,
            17 => 22_050,
            14 | 25 | 26 | 28 | 31 | 32 | 33 | 34 => 90_000,
            _ => 8_000,
        }
    }
}

/// An RTP sequence number extended to 64 bits (rollovers counted), so it
/// orders correctly across the 16-bit wrap.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SeqNo(pub u64);

impl SeqNo {
    /// The 16 bits that go on the wire.
    pub const fn wire(self) -> u16 {
        self.0 as u16
    }

    /// Extend a wire sequence number using `self` as the latest known value:
    /// picks the candidate closest to `self` (RFC 3550 Appendix A.1 logic).
    pub fn extend(self, wire: u16) -> SeqNo {
        let last = self.0;
        let base = last & !0xffff;
        let cand = base | u64::from(wire);
        // Pick among cand - 2^16, cand, cand + 2^16 the one nearest to `last`.
        let best = [
            cand.checked_sub(0x1_0000),
            Some(cand),
            cand.checked_add(0x1_0000),
        ]
        .into_iter()
        .flatten()
        .min_by_key(|c| c.abs_diff(last))
        .unwrap_or(cand);
        SeqNo(best)
    }

    /// The next sequence number.
    pub const fn next(self) -> SeqNo {
        SeqNo(self.0.wrapping_add(1))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seqno_extends_across_wrap() {
        let s = SeqNo(0xffff);
        assert_eq!(s.extend(0x0000), SeqNo(0x1_0000));
        assert_eq!(s.extend(0xfffe), SeqNo(0xfffe));
        let s = SeqNo(0x1_0002);
        assert_eq!(s.extend(0xfffd), SeqNo(0xfffd));
        assert_eq!(s.extend(0x0005), SeqNo(0x1_0005));
        assert_eq!(SeqNo(0x1_0005).wire(), 5);
        assert_eq!(SeqNo(0).extend(0x8000), SeqNo(0x8000));
    }

    #[test]
    fn pt_masks_marker_and_knows_rates() {
        assert_eq!(Pt::new(0x88), Pt::PCMA);
        assert_eq!(Pt::PCMU.clock_rate(), 8000);
        assert_eq!(Pt::new(101).clock_rate(), 8000);
        assert_eq!(Pt::new(10).clock_rate(), 44_100);
    }
}
