//! Voice codecs: G.711 A-law/µ-law and G.729 Annex A behind one [`Codec`] trait.
//!
//! Everything here is pure computation on caller-owned buffers: no I/O, no
//! clock, no allocation after construction. A codec instance holds the state of
//! one direction of one channel (an encoder or decoder history); the session
//! layer keeps one per leg.
//!
//! - [`g711`]: table-driven G.711, bit exact to ITU-T G.191.
//! - [`g729`]: G.729 Annex A, bit exact to the ITU-T fixed-point reference,
//!   with the ITU serial bitstream and RFC 3551 payload packing.

pub mod g711;
pub mod g729;

use core::time::Duration;

/// Sample rate of every narrowband codec here.
pub const SAMPLE_RATE: u32 = 8000;

/// Errors of the codec layer.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum CodecError {
    /// Caller error: the output buffer cannot hold the result.
    #[error("output buffer too small: need {need}, have {have}")]
    OutputTooSmall {
        /// Elements (bytes or samples) needed.
        need: usize,
        /// Elements available.
        have: usize,
    },
    /// Caller error: the PCM input is not a whole number of frames.
    #[error("input of {len} samples is not a multiple of the {frame}-sample frame")]
    PartialFrame {
        /// Samples given.
        len: usize,
        /// Samples per frame.
        frame: usize,
    },
    /// Peer error: a payload whose length is not a whole number of frames
    /// (nor a valid trailing SID frame).
    #[error("payload of {len} bytes is not a whole number of {frame}-byte frames")]
    BadPayloadLength {
        /// Bytes given.
        len: usize,
        /// Bytes per frame.
        frame: usize,
    },
    /// Peer or file error: malformed ITU serial bitstream.
    #[error("bad serial bitstream at frame {frame}: {what}")]
    BadBitstream {
        /// Index of the offending frame.
        frame: usize,
        /// What was wrong.
        what: &'static str,
    },
}

/// A narrowband voice codec working on 8 kHz 16-bit linear PCM.
///
/// Contract: `encode` takes a whole number of frames (`pcm.len()` a multiple
/// of [`frame_samples`](Codec::frame_samples)) and writes
/// `frames * payload_size()` bytes; `decode` takes a payload as carried in RTP
/// and writes the decoded samples. Both return how many elements they wrote
/// and never allocate.
pub trait Codec {
    /// Samples per frame at 8 kHz (1 for sample-based codecs such as G.711).
    fn frame_samples(&self) -> usize;

    /// Bytes of payload per frame.
    fn payload_size(&self) -> usize;

    /// Algorithmic delay (look-ahead plus frame buffering) in samples.
    fn algorithmic_delay_samples(&self) -> usize;

    /// Frame duration.
    fn frame_duration(&self) -> Duration {
        Duration::from_micros(self.frame_samples() as u64 * 1_000_000 / SAMPLE_RATE as u64)
    }

    /// Algorithmic delay as a duration.
    fn algorithmic_delay(&self) -> Duration {
        Duration::from_micros(
            self.algorithmic_delay_samples() as u64 * 1_000_000 / SAMPLE_RATE as u64,
        )
    }

    /// Encode whole frames of `pcm` into `out`; returns bytes written.
    fn encode(&mut self, pcm: &[i16], out: &mut [u8]) -> Result<usize, CodecError>;

    /// Decode one RTP payload into `out`; returns samples written.
    fn decode(&mut self, payload: &[u8], out: &mut [i16]) -> Result<usize, CodecError>;

    /// Produce `out.len()` samples for a lost packet (codec concealment where
    /// the codec has one); returns samples written.
    fn conceal(&mut self, out: &mut [i16]) -> Result<usize, CodecError>;
}
