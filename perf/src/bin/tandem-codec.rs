//! `tandem-codec`: run Tandem's codecs (and, via `perf::dsp_cli`, its DSP) on files.
//!
//! ```text
//! tandem-codec g729a encode IN.pcm|IN.wav OUT.bit [--rtp]
//! tandem-codec g729a decode IN.bit OUT.pcm|OUT.wav [--rtp]
//! tandem-codec alaw|ulaw encode IN.pcm|IN.wav OUT
//! tandem-codec alaw|ulaw decode IN OUT.pcm|OUT.wav
//! ```
//! PCM is 16-bit little-endian 8 kHz mono, raw or WAV by extension. G.729A
//! bitstreams are the ITU serial test-vector format by default (82 16-bit
//! words per frame), or packed RFC 3551 payload (10 bytes per frame) with
//! `--rtp`. A trailing partial PCM frame is ignored, as the ITU coder does.

use clap::{Parser, Subcommand, ValueEnum};
use dataplane::codec::g711;
use dataplane::codec::g729::{bitstream, Decoder, Encoder, FRAME_BYTES, L_FRAME};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

#[derive(Parser)]
#[command(
    name = "tandem-codec",
    about = "Encode/decode audio files with Tandem's codecs"
)]
struct Cli {
    #[command(subcommand)]
    codec: CodecCmd,
}

#[derive(Subcommand)]
enum CodecCmd {
    /// G.729 Annex A.
    G729a {
        /// encode or decode.
        op: Op,
        /// Input file.
        input: PathBuf,
        /// Output file.
        output: PathBuf,
        /// Use packed RFC 3551 payload (10 bytes/frame) instead of the ITU serial format.
        #[arg(long)]
        rtp: bool,
    },
    /// G.711 A-law (one byte per sample).
    Alaw {
        op: Op,
        input: PathBuf,
        output: PathBuf,
    },
    /// G.711 µ-law (one byte per sample).
    Ulaw {
        op: Op,
        input: PathBuf,
        output: PathBuf,
    },
}

#[derive(Clone, Copy, ValueEnum)]
enum Op {
    Encode,
    Decode,
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if let Some(code) = perf::dsp_cli::run(&args) {
        return ExitCode::from(code.clamp(0, 255) as u8);
    }
    let cli = Cli::parse();
    match run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("tandem-codec: {e}");
            ExitCode::FAILURE
        }
    }
}

fn read_audio(path: &Path) -> Result<Vec<i16>, String> {
    let a = perf::wav::read_pcm(path).map_err(|e| format!("{}: {e}", path.display()))?;
    if a.rate != 8000 {
        return Err(format!(
            "{}: sample rate {} Hz, need 8000 Hz",
            path.display(),
            a.rate
        ));
    }
    Ok(a.samples)
}

fn write_audio(path: &Path, samples: &[i16]) -> Result<(), String> {
    perf::wav::write_pcm(path, 8000, samples).map_err(|e| format!("{}: {e}", path.display()))
}

fn read_bytes(path: &Path) -> Result<Vec<u8>, String> {
    std::fs::read(path).map_err(|e| format!("{}: {e}", path.display()))
}

fn write_bytes(path: &Path, data: &[u8]) -> Result<(), String> {
    std::fs::write(path, data).map_err(|e| format!("{}: {e}", path.display()))
}

fn run(cli: Cli) -> Result<(), String> {
    match cli.codec {
        CodecCmd::G729a {
            op: Op::Encode,
            input,
            output,
            rtp,
        } => {
            let pcm = read_audio(&input)?;
            let mut enc = Encoder::new();
            let unit = if rtp {
                FRAME_BYTES
            } else {
                bitstream::SERIAL_FRAME_BYTES
            };
            let mut out = Vec::with_capacity(pcm.len() / L_FRAME * unit);
            for f in pcm.chunks_exact(L_FRAME) {
                let frame: &[i16; L_FRAME] = f.try_into().map_err(|_| "frame size".to_string())?;
                let prm = enc.encode_frame(frame);
                if rtp {
                    out.extend_from_slice(&bitstream::pack_rtp(&prm));
                } else {
                    let mut ser = [0u8; bitstream::SERIAL_FRAME_BYTES];
                    bitstream::write_serial(Some(&prm), &mut ser);
                    out.extend_from_slice(&ser);
                }
            }
            write_bytes(&output, &out)
        }
        CodecCmd::G729a {
            op: Op::Decode,
            input,
            output,
            rtp,
        } => {
            let data = read_bytes(&input)?;
            let unit = if rtp {
                FRAME_BYTES
            } else {
                bitstream::SERIAL_FRAME_BYTES
            };
            if data.len() % unit != 0 {
                return Err(format!(
                    "{}: {} bytes is not a whole number of {unit}-byte frames",
                    input.display(),
                    data.len()
                ));
            }
            let mut dec = Decoder::new();
            let mut pcm = Vec::with_capacity(data.len() / unit * L_FRAME);
            let mut frame = [0i16; L_FRAME];
            for (i, chunk) in data.chunks_exact(unit).enumerate() {
                let prm = if rtp {
                    let b: &[u8; FRAME_BYTES] =
                        chunk.try_into().map_err(|_| "frame size".to_string())?;
                    Some(bitstream::unpack_rtp(b))
                } else {
                    bitstream::read_serial(chunk, i)
                        .map_err(|e| format!("{}: {e}", input.display()))?
                };
                dec.decode_frame(prm.as_ref(), &mut frame);
                pcm.extend_from_slice(&frame);
            }
            write_audio(&output, &pcm)
        }
        CodecCmd::Alaw { op, input, output } => g711_file(op, g711::Law::A, &input, &output),
        CodecCmd::Ulaw { op, input, output } => g711_file(op, g711::Law::Mu, &input, &output),
    }
}

fn g711_file(op: Op, law: g711::Law, input: &Path, output: &Path) -> Result<(), String> {
    match op {
        Op::Encode => {
            let pcm = read_audio(input)?;
            let mut out = vec![0u8; pcm.len()];
            match law {
                g711::Law::A => g711::encode_alaw(&pcm, &mut out),
                g711::Law::Mu => g711::encode_ulaw(&pcm, &mut out),
            }
            write_bytes(output, &out)
        }
        Op::Decode => {
            let codes = read_bytes(input)?;
            let mut pcm = vec![0i16; codes.len()];
            match law {
                g711::Law::A => g711::decode_alaw(&codes, &mut pcm),
                g711::Law::Mu => g711::decode_ulaw(&codes, &mut pcm),
            }
            write_audio(output, &pcm)
        }
    }
}
