//! G.729 Annex A conformance against the ITU-T test vectors (read from the
//! shared test data; skipped with a message when absent):
//! decoder(X.BIT) == X.PST and encoder(X.IN) == X.BIT, byte for byte.

use dataplane::codec::g729::{bitstream, Decoder, Encoder, L_FRAME};
use std::path::{Path, PathBuf};

const DIR: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../../shared/testdata/g729-vectors/g729a"
);

fn find(name: &str, ext: &str) -> Option<PathBuf> {
    for e in [ext.to_uppercase(), ext.to_lowercase()] {
        let p = Path::new(DIR).join(format!("{name}.{e}"));
        if p.exists() {
            return Some(p);
        }
    }
    None
}

fn pcm(bytes: &[u8]) -> Vec<i16> {
    bytes
        .chunks_exact(2)
        .map(|c| i16::from_le_bytes([c[0], c[1]]))
        .collect()
}

fn check_decoder(name: &str) -> Option<Result<usize, String>> {
    let bit = std::fs::read(find(name, "bit")?).ok()?;
    let pst = pcm(&std::fs::read(find(name, "pst")?).ok()?);
    let mut dec = Decoder::new();
    let mut out = [0i16; L_FRAME];
    let frames = bit.len() / bitstream::SERIAL_FRAME_BYTES;
    for f in 0..frames {
        let prm = bitstream::read_serial(&bit[f * bitstream::SERIAL_FRAME_BYTES..], f)
            .map_err(|e| e.to_string())
            .ok()?;
        dec.decode_frame(prm.as_ref(), &mut out);
        let want = &pst[f * L_FRAME..(f + 1) * L_FRAME];
        if out[..] != want[..] {
            let i = (0..L_FRAME).find(|&i| out[i] != want[i]).unwrap_or(0);
            return Some(Err(format!(
                "{name}: frame {f} (erased: {}) sample {i}: got {} want {}",
                prm.is_none(),
                out[i],
                want[i]
            )));
        }
    }
    Some(Ok(frames))
}

fn check_encoder(name: &str) -> Option<Result<usize, String>> {
    let input = pcm(&std::fs::read(find(name, "in")?).ok()?);
    let bit = std::fs::read(find(name, "bit")?).ok()?;
    let mut enc = Encoder::new();
    let frames = input.len() / L_FRAME;
    let mut ser = [0u8; bitstream::SERIAL_FRAME_BYTES];
    for f in 0..frames {
        let frame: &[i16; L_FRAME] = input[f * L_FRAME..(f + 1) * L_FRAME].try_into().ok()?;
        let prm = enc.encode_frame(frame);
        bitstream::write_serial(Some(&prm), &mut ser);
        let want = &bit[f * ser.len()..(f + 1) * ser.len()];
        if ser[..] != want[..] {
            let want_prm = bitstream::read_serial(want, f).ok().flatten();
            return Some(Err(format!(
                "{name}: frame {f}: got {:?} want {:?}",
                prm.0,
                want_prm.map(|p| p.0)
            )));
        }
    }
    Some(Ok(frames))
}

fn run(names: &[&str], check: fn(&str) -> Option<Result<usize, String>>) {
    if !Path::new(DIR).exists() {
        eprintln!("SKIP: G.729 vectors not found at {DIR}");
        return;
    }
    let mut failures = Vec::new();
    for n in names {
        match check(n) {
            None => eprintln!("{n}: not present, skipped"),
            Some(Ok(f)) => eprintln!("{n}: {f} frames bit exact"),
            Some(Err(e)) => failures.push(e),
        }
    }
    assert!(failures.is_empty(), "mismatches:\n{}", failures.join("\n"));
}

#[test]
fn decoder_matches_itu_vectors() {
    run(
        &[
            "ALGTHM", "ERASURE", "FIXED", "LSP", "OVERFLOW", "PARITY", "PITCH", "SPEECH", "TAME",
            "TEST",
        ],
        check_decoder,
    );
}

#[test]
fn encoder_matches_itu_vectors() {
    run(
        &["ALGTHM", "FIXED", "LSP", "PITCH", "SPEECH", "TAME", "TEST"],
        check_encoder,
    );
}
