//! G.729 frame packing: the 11 parameters <-> 80 bits, as the RFC 3551
//! payload (10 bytes, first bit in the MSB of the first byte) and as the ITU
//! serial format of the test vectors (82 little-endian 16-bit words per frame:
//! sync `0x6b21`, length 80, then one word per bit, `0x0081` for 1 and
//! `0x007f` for 0; sync `0x6b20` or a zero bit word marks an erased frame).

use super::tables::BITSNO;
use super::{Params, FRAME_BYTES};
use crate::codec::CodecError;

/// Sync word of a good frame.
pub const SYNC_WORD: u16 = 0x6b21;
/// Sync word of an erased frame.
pub const SYNC_ERASED: u16 = 0x6b20;
/// Bit word for a 0.
pub const BIT_0: u16 = 0x007f;
/// Bit word for a 1.
pub const BIT_1: u16 = 0x0081;
/// Bytes of one serial frame.
pub const SERIAL_FRAME_BYTES: usize = 164;

/// The 80 bits of a frame, in transmission order.
pub fn params_to_bits(prm: &Params) -> [bool; 80] {
    let mut bits = [false; 80];
    let mut k = 0;
    for (i, &n) in BITSNO.iter().enumerate() {
        for b in (0..n).rev() {
            bits[k] = (prm.0[i] >> b) & 1 != 0;
            k += 1;
        }
    }
    bits
}

/// Parameters from the 80 bits of a frame.
pub fn bits_to_params(bits: &[bool; 80]) -> Params {
    let mut p = Params::default();
    let mut k = 0;
    for (i, &n) in BITSNO.iter().enumerate() {
        let mut v = 0u16;
        for _ in 0..n {
            v = (v << 1) | u16::from(bits[k]);
            k += 1;
        }
        p.0[i] = v;
    }
    p
}

/// RFC 3551 payload of one frame.
pub fn pack_rtp(prm: &Params) -> [u8; FRAME_BYTES] {
    let bits = params_to_bits(prm);
    let mut out = [0u8; FRAME_BYTES];
    for (k, &b) in bits.iter().enumerate() {
        if b {
            out[k / 8] |= 0x80 >> (k % 8);
        }
    }
    out
}

/// Parameters from an RFC 3551 payload frame.
pub fn unpack_rtp(bytes: &[u8; FRAME_BYTES]) -> Params {
    let mut bits = [false; 80];
    for (k, b) in bits.iter_mut().enumerate() {
        *b = bytes[k / 8] & (0x80 >> (k % 8)) != 0;
    }
    bits_to_params(&bits)
}

/// Write one ITU serial frame (`None` = erased frame).
pub fn write_serial(prm: Option<&Params>, out: &mut [u8; SERIAL_FRAME_BYTES]) {
    let (sync, bits) = match prm {
        Some(p) => (SYNC_WORD, params_to_bits(p)),
        None => (SYNC_ERASED, [false; 80]),
    };
    out[0..2].copy_from_slice(&sync.to_le_bytes());
    out[2..4].copy_from_slice(&80u16.to_le_bytes());
    for (k, &b) in bits.iter().enumerate() {
        let w = if prm.is_none() {
            0
        } else if b {
            BIT_1
        } else {
            BIT_0
        };
        out[4 + 2 * k..6 + 2 * k].copy_from_slice(&w.to_le_bytes());
    }
}

/// Read one ITU serial frame; `Ok(None)` for an erased frame. `frame` is the
/// frame number for error messages.
pub fn read_serial(bytes: &[u8], frame: usize) -> Result<Option<Params>, CodecError> {
    if bytes.len() < SERIAL_FRAME_BYTES {
        return Err(CodecError::BadBitstream {
            frame,
            what: "truncated frame",
        });
    }
    let word = |i: usize| u16::from_le_bytes([bytes[2 * i], bytes[2 * i + 1]]);
    let sync = word(0);
    if sync != SYNC_WORD && sync != SYNC_ERASED {
        return Err(CodecError::BadBitstream {
            frame,
            what: "bad sync word",
        });
    }
    if word(1) != 80 {
        return Err(CodecError::BadBitstream {
            frame,
            what: "length word is not 80",
        });
    }
    let mut bits = [false; 80];
    let mut erased = sync == SYNC_ERASED;
    for (k, b) in bits.iter_mut().enumerate() {
        let w = word(2 + k);
        if w == 0 {
            erased = true;
        }
        *b = w == BIT_1;
    }
    Ok(if erased {
        None
    } else {
        Some(bits_to_params(&bits))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rtp_and_serial_round_trip() {
        let p = Params([
            0xa5, 0x3c1, 0x9e, 1, 0x1abc, 0x9, 0x55, 0x1d, 0x0f0f, 0x6, 0x2a,
        ]);
        let bytes = pack_rtp(&p);
        assert_eq!(unpack_rtp(&bytes), p);
        // First parameter's MSB is the first bit on the wire.
        assert_eq!(bytes[0], 0xa5);
        let mut ser = [0u8; SERIAL_FRAME_BYTES];
        write_serial(Some(&p), &mut ser);
        assert_eq!(read_serial(&ser, 0), Ok(Some(p)));
        write_serial(None, &mut ser);
        assert_eq!(read_serial(&ser, 0), Ok(None));
        ser[0] = 0;
        assert!(read_serial(&ser, 3).is_err());
    }
}
