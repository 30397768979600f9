//! ITU-T G.729 Annex A (CS-ACELP, 8 kbit/s), written from the Recommendation
//! and bit exact to its fixed-point reference.
//!
//! Layers:
//! - [`basic_op`]: the saturating 16/32-bit operators the Recommendation is
//!   specified in; everything else is built only from them.
//! - `util`: LSP/LPC conversions, filters, LSP dequantisation, gain prediction.
//! - [`Decoder`]: parameters -> speech, with erasure concealment and the
//!   Annex A post-filter/post-processing.
//! - [`Encoder`]: speech -> parameters (pre-processing, LPC, LSP VQ, open-loop
//!   and Annex A closed-loop pitch, algebraic codebook, gain VQ, taming).
//! - [`Sid`]: Annex B SID frames decoded into comfort noise.
//! - [`bitstream`]: the 11 parameters <-> 80 bits, as RFC 3551 payload (10
//!   bytes per frame) and as the ITU serial test-vector format.
//! - [`G729A`]: both directions behind the [`Codec`](super::Codec) trait.

pub mod basic_op;
pub mod bitstream;
mod decoder;
mod encoder;
pub(crate) mod simd;
mod simd_acelp;
mod simd_lp;
mod simd_search;
mod tables;
mod util;

pub use decoder::{Decoder, Sid};
pub use encoder::Encoder;

use super::{Codec, CodecError};

/// Samples per frame (10 ms).
pub const L_FRAME: usize = 80;
/// Bytes per frame in the RFC 3551 payload.
pub const FRAME_BYTES: usize = 10;
/// Bytes of an Annex B SID (comfort noise) frame in the RFC 3551 payload.
pub const SID_BYTES: usize = 2;
/// Look-ahead of the LPC analysis, in samples (5 ms).
pub const LOOKAHEAD: usize = 40;

pub(crate) const L_SUBFR: usize = 40;
pub(crate) const M: usize = 10;
pub(crate) const MP1: usize = M + 1;
pub(crate) const PIT_MIN: usize = 20;
pub(crate) const PIT_MAX: usize = 143;
pub(crate) const L_INTERPOL: usize = 11;
pub(crate) const SHARPMAX: i16 = 13017;
pub(crate) const SHARPMIN: i16 = 3277;

/// The 11 transmitted parameters of one frame, in transmission order:
/// L0+L1 (8 bits), L2+L3 (10), P1 (8), P0 (1), C1 (13), S1 (4), GA1+GB1 (7),
/// P2 (5), C2 (13), S2 (4), GA2+GB2 (7).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Params(pub [u16; 11]);

/// G.729 Annex A encoder and decoder pair behind the [`Codec`] trait.
#[derive(Clone, Default)]
pub struct G729A {
    enc: Encoder,
    dec: Decoder,
}

impl G729A {
    /// A fresh codec (both directions in their initial state).
    pub fn new() -> Self {
        Self::default()
    }

    /// The decoder half.
    pub fn decoder_mut(&mut self) -> &mut Decoder {
        &mut self.dec
    }

    /// The encoder half.
    pub fn encoder_mut(&mut self) -> &mut Encoder {
        &mut self.enc
    }
}

impl Codec for G729A {
    fn frame_samples(&self) -> usize {
        L_FRAME
    }
    fn payload_size(&self) -> usize {
        FRAME_BYTES
    }
    fn algorithmic_delay_samples(&self) -> usize {
        L_FRAME + LOOKAHEAD
    }
    fn encode(&mut self, pcm: &[i16], out: &mut [u8]) -> Result<usize, CodecError> {
        if pcm.len() % L_FRAME != 0 {
            return Err(CodecError::PartialFrame {
                len: pcm.len(),
                frame: L_FRAME,
            });
        }
        let frames = pcm.len() / L_FRAME;
        let need = frames * FRAME_BYTES;
        if out.len() < need {
            return Err(CodecError::OutputTooSmall {
                need,
                have: out.len(),
            });
        }
        for (f, o) in pcm
            .chunks_exact(L_FRAME)
            .zip(out.chunks_exact_mut(FRAME_BYTES))
        {
            let frame: &[i16; L_FRAME] = f.try_into().map_err(|_| CodecError::PartialFrame {
                len: pcm.len(),
                frame: L_FRAME,
            })?;
            let prm = self.enc.encode_frame(frame);
            let bytes = bitstream::pack_rtp(&prm);
            o.copy_from_slice(&bytes);
        }
        Ok(need)
    }
    fn decode(&mut self, payload: &[u8], out: &mut [i16]) -> Result<usize, CodecError> {
        self.dec.decode_rtp_payload(payload, out)
    }
    fn conceal(&mut self, out: &mut [i16]) -> Result<usize, CodecError> {
        if out.len() % L_FRAME != 0 {
            return Err(CodecError::PartialFrame {
                len: out.len(),
                frame: L_FRAME,
            });
        }
        for o in out.chunks_exact_mut(L_FRAME) {
            let o: &mut [i16; L_FRAME] = o.try_into().map_err(|_| CodecError::PartialFrame {
                len: L_FRAME,
                frame: L_FRAME,
            })?;
            self.dec.decode_frame(None, o);
        }
        Ok(out.len())
    }
}
