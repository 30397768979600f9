//! Sound files for playback: RIFF/WAVE (16-bit PCM, G.711 µ-law or A-law; mono, 8 kHz) and
//! raw signed-linear (`.sln`/`.raw`: 16-bit little-endian, 8 kHz), decoded to the 8 kHz linear
//! samples a [`crate::Source::Samples`] plays.
//!
//! Pure: the caller reads the file (on the control side) and hands the bytes here. Every
//! error says what is wrong with the file so the operator can convert it (e.g.
//! `sox in.wav -r 8000 -c 1 -b 16 out.wav`).

use std::sync::Arc;

use crate::codec::g711;

/// How the bytes are laid out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// RIFF/WAVE with a header.
    Wav,
    /// Headerless 16-bit little-endian samples at 8 kHz.
    Raw,
}

impl Format {
    /// From a file extension: `wav` is WAVE, `sln`/`raw`/`sln8`/`pcm` raw, else `None`.
    pub fn from_extension(ext: &str) -> Option<Format> {
        match ext.to_ascii_lowercase().as_str() {
            "wav" => Some(Format::Wav),
            "sln" | "sln8" | "raw" | "pcm" => Some(Format::Raw),
            _ => None,
        }
    }
}

/// What is wrong with a sound file.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SoundError {
    /// The bytes are not a WAVE file (or it is truncated).
    #[error("not a valid WAVE file: {0}")]
    NotWave(&'static str),
    /// A WAVE encoding we do not play.
    #[error(
        "WAVE format tag {tag} with {bits} bits is not supported (16-bit PCM, mu-law or A-law)"
    )]
    Encoding { tag: u16, bits: u16 },
    /// Not mono.
    #[error("{0} channels; only mono is supported")]
    Channels(u16),
    /// Not 8 kHz.
    #[error("sample rate {0} Hz; only 8000 Hz is supported")]
    Rate(u32),
    /// A raw file with an odd length.
    #[error("raw 16-bit file has an odd number of bytes ({0})")]
    OddLength(usize),
}

/// Decode a sound file's bytes to 8 kHz linear samples.
pub fn decode(bytes: &[u8], format: Format) -> Result<Arc<[i16]>, SoundError> {
    match format {
        Format::Raw => {
            if !bytes.len().is_multiple_of(2) {
                return Err(SoundError::OddLength(bytes.len()));
            }
            Ok(bytes
                .chunks_exact(2)
                .map(|b| i16::from_le_bytes([b[0], b[1]]))
                .collect())
        }
        Format::Wav => wav(bytes),
    }
}

fn u16_at(b: &[u8], at: usize) -> Option<u16> {
    Some(u16::from_le_bytes([*b.get(at)?, *b.get(at + 1)?]))
}

fn u32_at(b: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_le_bytes([
        *b.get(at)?,
        *b.get(at + 1)?,
        *b.get(at + 2)?,
        *b.get(at + 3)?,
    ]))
}

fn wav(b: &[u8]) -> Result<Arc<[i16]>, SoundError> {
    if b.len() < 12 || &b[0..4] != b"RIFF" || &b[8..12] != b"WAVE" {
        return Err(SoundError::NotWave("no RIFF/WAVE header"));
    }
    let mut at = 12;
    let mut fmt: Option<(u16, u16, u32, u16)> = None;
    while at + 8 <= b.len() {
        let id = &b[at..at + 4];
        let len = u32_at(b, at + 4).ok_or(SoundError::NotWave("truncated chunk"))? as usize;
        let body = at + 8;
        // A data chunk may claim more than the file holds (streamed writers): clamp it.
        let end = body.saturating_add(len).min(b.len());
        match id {
            b"fmt " => {
                let f = (|| {
                    Some((
                        u16_at(b, body)?,
                        u16_at(b, body + 2)?,
                        u32_at(b, body + 4)?,
                        u16_at(b, body + 14)?,
                    ))
                })()
                .ok_or(SoundError::NotWave("short fmt chunk"))?;
                fmt = Some(f);
            }
            b"data" => {
                let (tag, channels, rate, bits) =
                    fmt.ok_or(SoundError::NotWave("data chunk before fmt chunk"))?;
                if channels != 1 {
                    return Err(SoundError::Channels(channels));
                }
                if rate != 8000 {
                    return Err(SoundError::Rate(rate));
                }
                let data = &b[body..end];
                return match (tag, bits) {
                    (1, 16) => Ok(data
                        .chunks_exact(2)
                        .map(|s| i16::from_le_bytes([s[0], s[1]]))
                        .collect()),
                    (7, 8) => Ok(data.iter().map(|&u| g711::ulaw_to_linear(u)).collect()),
                    (6, 8) => Ok(data.iter().map(|&a| g711::alaw_to_linear(a)).collect()),
                    _ => Err(SoundError::Encoding { tag, bits }),
                };
            }
            _ => {}
        }
        // Chunks are padded to an even length.
        at = body.saturating_add(len).saturating_add(len & 1);
    }
    Err(SoundError::NotWave("no data chunk"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn wave(tag: u16, channels: u16, rate: u32, bits: u16, data: &[u8]) -> Vec<u8> {
        let mut v = b"RIFF\0\0\0\0WAVE".to_vec();
        v.extend_from_slice(b"LIST\x03\0\0\0abc\0"); // odd chunk, padded
        v.extend_from_slice(b"fmt \x10\0\0\0");
        v.extend_from_slice(&tag.to_le_bytes());
        v.extend_from_slice(&channels.to_le_bytes());
        v.extend_from_slice(&rate.to_le_bytes());
        v.extend_from_slice(&(rate * u32::from(bits / 8)).to_le_bytes());
        v.extend_from_slice(&(bits / 8).to_le_bytes());
        v.extend_from_slice(&bits.to_le_bytes());
        v.extend_from_slice(b"data");
        v.extend_from_slice(&(data.len() as u32).to_le_bytes());
        v.extend_from_slice(data);
        v
    }

    #[test]
    fn decodes_pcm_ulaw_alaw_and_raw() {
        let pcm = wave(1, 1, 8000, 16, &[0x01, 0x00, 0xff, 0xff]);
        assert_eq!(&*decode(&pcm, Format::Wav).unwrap(), &[1, -1]);
        let mu = wave(7, 1, 8000, 8, &[0xff, 0x00]);
        assert_eq!(&*decode(&mu, Format::Wav).unwrap(), &[0, -32124]);
        let a = wave(6, 1, 8000, 8, &[0xd5]);
        assert_eq!(&*decode(&a, Format::Wav).unwrap(), &[8]);
        assert_eq!(
            &*decode(&[2, 0, 0, 0x80], Format::Raw).unwrap(),
            &[2, i16::MIN]
        );
        assert_eq!(Format::from_extension("WAV"), Some(Format::Wav));
        assert_eq!(Format::from_extension("sln"), Some(Format::Raw));
        assert_eq!(Format::from_extension("mp3"), None);
    }

    #[test]
    fn errors_name_the_problem() {
        assert_eq!(
            decode(&wave(1, 2, 8000, 16, &[]), Format::Wav),
            Err(SoundError::Channels(2))
        );
        assert_eq!(
            decode(&wave(1, 1, 16000, 16, &[]), Format::Wav),
            Err(SoundError::Rate(16000))
        );
        assert_eq!(
            decode(&wave(3, 1, 8000, 32, &[]), Format::Wav),
            Err(SoundError::Encoding { tag: 3, bits: 32 })
        );
        assert!(matches!(
            decode(b"RIFF", Format::Wav),
            Err(SoundError::NotWave(_))
        ));
        assert!(matches!(
            decode(&wave(1, 1, 8000, 16, &[])[..40], Format::Wav),
            Err(SoundError::NotWave(_))
        ));
        assert_eq!(
            decode(&[1, 2, 3], Format::Raw),
            Err(SoundError::OddLength(3))
        );
    }
}
