//! `tandem-codec` end to end on the ITU G.729 Annex A vectors (skipped when
//! the shared test data is absent) and a G.711 round trip.

use std::path::{Path, PathBuf};
use std::process::Command;

const BIN: &str = env!("CARGO_BIN_EXE_tandem-codec");
const DIR: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../../shared/testdata/g729-vectors/g729a"
);

fn vec_file(name: &str, ext: &str) -> Option<PathBuf> {
    [ext.to_uppercase(), ext.to_lowercase()]
        .into_iter()
        .map(|e| Path::new(DIR).join(format!("{name}.{e}")))
        .find(|p| p.exists())
}

fn tmp(name: &str) -> PathBuf {
    let d = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("codec_cli");
    std::fs::create_dir_all(&d).unwrap();
    d.join(name)
}

fn run(args: &[&str]) {
    let out = Command::new(BIN).args(args).output().unwrap();
    assert!(
        out.status.success(),
        "{args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn g729a_vectors_through_cli() {
    if !Path::new(DIR).exists() {
        eprintln!("SKIP: G.729 vectors not found at {DIR}");
        return;
    }
    let mut checked = 0;
    for name in [
        "ALGTHM", "ERASURE", "FIXED", "LSP", "OVERFLOW", "PARITY", "PITCH", "SPEECH", "TAME",
        "TEST",
    ] {
        let (Some(bit), Some(pst)) = (vec_file(name, "bit"), vec_file(name, "pst")) else {
            continue;
        };
        let out = tmp(&format!("{name}.dec.pcm"));
        run(&[
            "g729a",
            "decode",
            bit.to_str().unwrap(),
            out.to_str().unwrap(),
        ]);
        assert!(
            std::fs::read(&out).unwrap() == std::fs::read(&pst).unwrap(),
            "{name}: decode differs"
        );
        if let Some(input) = vec_file(name, "in") {
            let enc = tmp(&format!("{name}.enc.bit"));
            run(&[
                "g729a",
                "encode",
                input.to_str().unwrap(),
                enc.to_str().unwrap(),
            ]);
            assert!(
                std::fs::read(&enc).unwrap() == std::fs::read(&bit).unwrap(),
                "{name}: encode differs"
            );
            // RTP packing round trip gives the same decoded speech.
            let rtp = tmp(&format!("{name}.rtp"));
            let rtp_pcm = tmp(&format!("{name}.rtp.pcm"));
            run(&[
                "g729a",
                "encode",
                "--rtp",
                input.to_str().unwrap(),
                rtp.to_str().unwrap(),
            ]);
            assert_eq!(
                std::fs::metadata(&rtp).unwrap().len() as usize,
                std::fs::read(&bit).unwrap().len() / 164 * 10
            );
            run(&[
                "g729a",
                "decode",
                "--rtp",
                rtp.to_str().unwrap(),
                rtp_pcm.to_str().unwrap(),
            ]);
            assert!(
                std::fs::read(&rtp_pcm).unwrap() == std::fs::read(&pst).unwrap(),
                "{name}: rtp decode differs"
            );
        }
        checked += 1;
    }
    assert!(checked > 0, "no vectors found in {DIR}");
}

#[test]
fn g711_round_trip_through_cli() {
    let pcm: Vec<i16> = (0..800)
        .map(|i| ((i * 97) % 20000 - 10000) as i16)
        .collect();
    let mut bytes = Vec::new();
    for s in &pcm {
        bytes.extend_from_slice(&s.to_le_bytes());
    }
    // Raw input (not .wav): write the samples directly.
    let raw = tmp("in.pcm");
    std::fs::write(&raw, &bytes).unwrap();
    for law in ["alaw", "ulaw"] {
        let coded = tmp(&format!("{law}.bin"));
        let back = tmp(&format!("{law}.wav"));
        run(&[
            law,
            "encode",
            raw.to_str().unwrap(),
            coded.to_str().unwrap(),
        ]);
        assert_eq!(std::fs::metadata(&coded).unwrap().len(), 800);
        run(&[
            law,
            "decode",
            coded.to_str().unwrap(),
            back.to_str().unwrap(),
        ]);
        // WAV output: 44-byte header + samples; decode error is bounded.
        let w = std::fs::read(&back).unwrap();
        assert_eq!(&w[..4], b"RIFF");
        assert_eq!(w.len(), 44 + 1600);
        for (i, c) in w[44..].chunks_exact(2).enumerate() {
            let v = i16::from_le_bytes([c[0], c[1]]) as i32;
            assert!((v - pcm[i] as i32).abs() <= (pcm[i] as i32).abs() / 16 + 16);
        }
    }
    let out = Command::new(BIN)
        .args(["g729a", "decode", "/nonexistent.bit", "/tmp/x.pcm"])
        .output()
        .unwrap();
    assert!(!out.status.success());
}
