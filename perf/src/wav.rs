//! Minimal WAV/raw PCM file I/O for the command-line tools.
//!
//! Only what the tools need: 16-bit little-endian mono PCM in RIFF/WAVE
//! (any sample rate is read and reported; the tools expect 8 kHz), or raw
//! headerless 16-bit little-endian samples when the extension is not `.wav`.
//! Written by hand because it is ~80 lines and keeps the tools dependency-free.

use std::fs;
use std::io;
use std::path::Path;

/// Audio read from a file: samples and their rate (raw files are taken as 8 kHz).
#[derive(Debug, Clone, PartialEq)]
pub struct Audio {
    pub rate: u32,
    pub samples: Vec<i16>,
}

fn is_wav(path: &Path) -> bool {
    path.extension()
        .and_then(|e| e.to_str())
        .is_some_and(|e| e.eq_ignore_ascii_case("wav"))
}

fn bad(path: &Path, what: &str) -> io::Error {
    io::Error::new(
        io::ErrorKind::InvalidData,
        format!("{}: {what}", path.display()),
    )
}

/// Read 16-bit PCM from a `.wav` file (mono, PCM format 1) or a raw file.
pub fn read_pcm(path: &Path) -> io::Result<Audio> {
    let data = fs::read(path)?;
    if !is_wav(path) {
        if data.len() % 2 != 0 {
            return Err(bad(path, "raw PCM file has an odd number of bytes"));
        }
        let samples = data
            .chunks_exact(2)
            .map(|c| i16::from_le_bytes([c[0], c[1]]))
            .collect();
        return Ok(Audio {
            rate: 8000,
            samples,
        });
    }
    if data.len() < 12 || &data[0..4] != b"RIFF" || &data[8..12] != b"WAVE" {
        return Err(bad(path, "not a RIFF/WAVE file"));
    }
    let mut pos = 12;
    let mut fmt: Option<(u16, u16, u32, u16)> = None;
    while pos + 8 <= data.len() {
        let id = &data[pos..pos + 4];
        let len = u32::from_le_bytes([data[pos + 4], data[pos + 5], data[pos + 6], data[pos + 7]])
            as usize;
        let body_start = pos + 8;
        let body_end = body_start.saturating_add(len).min(data.len());
        let body = &data[body_start..body_end];
        if id == b"fmt " {
            if body.len() < 16 {
                return Err(bad(path, "fmt chunk too short"));
            }
            let format = u16::from_le_bytes([body[0], body[1]]);
            let channels = u16::from_le_bytes([body[2], body[3]]);
            let rate = u32::from_le_bytes([body[4], body[5], body[6], body[7]]);
            let bits = u16::from_le_bytes([body[14], body[15]]);
            fmt = Some((format, channels, rate, bits));
        } else if id == b"data" {
            let (format, channels, rate, bits) =
                fmt.ok_or_else(|| bad(path, "data chunk before fmt chunk"))?;
            if format != 1 && format != 0xfffe {
                return Err(bad(path, &format!("WAV format {format} is not PCM")));
            }
            if bits != 16 {
                return Err(bad(
                    path,
                    &format!("{bits}-bit samples; only 16-bit is supported"),
                ));
            }
            if channels == 0 {
                return Err(bad(path, "zero channels"));
            }
            // Mono: take the first channel of each frame.
            let step = 2 * channels as usize;
            let samples = body
                .chunks_exact(step)
                .map(|c| i16::from_le_bytes([c[0], c[1]]))
                .collect();
            return Ok(Audio { rate, samples });
        }
        pos = body_start + len + (len & 1);
    }
    Err(bad(path, "no data chunk"))
}

/// Write 16-bit mono PCM as `.wav` (by extension) or raw little-endian.
pub fn write_pcm(path: &Path, rate: u32, samples: &[i16]) -> io::Result<()> {
    let mut out = Vec::with_capacity(44 + samples.len() * 2);
    if is_wav(path) {
        let data_len = (samples.len() * 2) as u32;
        out.extend_from_slice(b"RIFF");
        out.extend_from_slice(&(36 + data_len).to_le_bytes());
        out.extend_from_slice(b"WAVEfmt ");
        out.extend_from_slice(&16u32.to_le_bytes());
        out.extend_from_slice(&1u16.to_le_bytes());
        out.extend_from_slice(&1u16.to_le_bytes());
        out.extend_from_slice(&rate.to_le_bytes());
        out.extend_from_slice(&(rate * 2).to_le_bytes());
        out.extend_from_slice(&2u16.to_le_bytes());
        out.extend_from_slice(&16u16.to_le_bytes());
        out.extend_from_slice(b"data");
        out.extend_from_slice(&data_len.to_le_bytes());
    }
    for s in samples {
        out.extend_from_slice(&s.to_le_bytes());
    }
    fs::write(path, out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wav_and_raw_round_trip() {
        let dir = std::env::temp_dir().join(format!("tandem-wav-{}", std::process::id()));
        fs::create_dir_all(&dir).unwrap();
        let samples: Vec<i16> = (0..1000)
            .map(|i| ((i * 37) % 20000 - 10000) as i16)
            .collect();
        for name in ["a.wav", "a.pcm"] {
            let p = dir.join(name);
            write_pcm(&p, 8000, &samples).unwrap();
            let got = read_pcm(&p).unwrap();
            assert_eq!(
                got,
                Audio {
                    rate: 8000,
                    samples: samples.clone()
                }
            );
        }
        fs::write(dir.join("bad.wav"), b"RIFF0000WAVX").unwrap();
        assert!(read_pcm(&dir.join("bad.wav")).is_err());
        fs::remove_dir_all(&dir).unwrap();
    }
}

/// The 73 s Asterisk demo prompt (real recorded speech, 8 kHz) from the shared test data, the
/// input of the codec and DSP benchmarks; `None` where the shared data is not checked out.
pub fn demo_prompt() -> Option<Vec<i16>> {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../shared/testdata/audio/ast_demo-instruct_8k.wav"
    );
    read_pcm(Path::new(path)).ok().map(|a| a.samples)
}
