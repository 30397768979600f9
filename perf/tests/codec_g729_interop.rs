//! G.729A interoperability with bcg729 on real speech, scored with PESQ-NB.
//!
//! Each 8 kHz recording of `shared/testdata/audio` is encoded by Tandem and
//! by bcg729, and every bitstream is decoded by both. bcg729 (GPL, Debian
//! `libbcg729-dev`) is only used by a small C program compiled here and run
//! as a separate process; PESQ comes from PyPI `pesq` through `python3`.
//! Skips with a message when `cc`, the library or `pesq` is missing.
//! Pass: each cross decode within 0.05 MOS of the same bitstream decoded by
//! its own encoder's decoder (decoder interop), and our encoder's own
//! round trip within 0.1 MOS of bcg729's. The table also reports how far
//! each cross decode is from bcg729 decoding its own stream.

use dataplane::codec::g729::bitstream::{pack_rtp, unpack_rtp};
use dataplane::codec::g729::{Decoder, Encoder, FRAME_BYTES, L_FRAME};
use std::path::{Path, PathBuf};
use std::process::Command;

const AUDIO: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../shared/testdata/audio");
/// Natural speech only (synthetic espeak is not fit for codec scoring).
const FILES: &[&str] = &["pesq_speech_8k.wav", "ast_demo-congrats_8k.wav"];

const TOOL_C: &str = r#"
#include <stdio.h>
#include <stdint.h>
#include <string.h>
#include <bcg729/encoder.h>
#include <bcg729/decoder.h>
int main(int argc, char **argv) {
  if (argc != 4) return 2;
  FILE *in = fopen(argv[2], "rb"), *out = fopen(argv[3], "wb");
  if (!in || !out) return 3;
  if (!strcmp(argv[1], "enc")) {
    bcg729EncoderChannelContextStruct *e = initBcg729EncoderChannel(0);
    int16_t pcm[80]; uint8_t bits[10]; uint8_t len;
    while (fread(pcm, 2, 80, in) == 80) { bcg729Encoder(e, pcm, bits, &len); fwrite(bits, 1, 10, out); }
    closeBcg729EncoderChannel(e);
  } else {
    bcg729DecoderChannelContextStruct *d = initBcg729DecoderChannel();
    uint8_t bits[10]; int16_t pcm[80];
    while (fread(bits, 1, 10, in) == 10) { bcg729Decoder(d, bits, 10, 0, 0, 0, pcm); fwrite(pcm, 2, 80, out); }
    closeBcg729DecoderChannel(d);
  }
  fclose(in); fclose(out);
  return 0;
}
"#;

const PESQ_PY: &str = r#"
import sys, wave
import numpy as np
from pesq import pesq
def rd(p):
    w = wave.open(p)
    return np.frombuffer(w.readframes(w.getnframes()), dtype=np.int16).astype(np.float32)
r, d = rd(sys.argv[1]), rd(sys.argv[2])
n = min(len(r), len(d))
print("%.4f" % pesq(8000, r[:n], d[:n], 'nb'))
"#;

fn tmp_dir() -> PathBuf {
    let d = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("g729_interop");
    std::fs::create_dir_all(&d).expect("temp dir");
    d
}

/// Build the bcg729 tool, or say why not.
fn build_tool(dir: &Path) -> Result<PathBuf, String> {
    if !Path::new("/usr/include/bcg729/encoder.h").exists() {
        return Err("libbcg729-dev not installed".into());
    }
    let src = dir.join("bcg729_tool.c");
    let exe = dir.join("bcg729_tool");
    std::fs::write(&src, TOOL_C).map_err(|e| e.to_string())?;
    let out = Command::new("cc")
        .arg("-O2")
        .arg(&src)
        .arg("-o")
        .arg(&exe)
        .arg("-lbcg729")
        .output()
        .map_err(|e| format!("cc: {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "cc failed: {}",
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    Ok(exe)
}

fn pesq_available() -> bool {
    Command::new("python3")
        .args(["-c", "import pesq, numpy"])
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false)
}

fn pcm_bytes(s: &[i16]) -> Vec<u8> {
    s.iter().flat_map(|v| v.to_le_bytes()).collect()
}

fn bcg(tool: &Path, mode: &str, input: &[u8], dir: &Path, tag: &str) -> Vec<u8> {
    let i = dir.join(format!("{tag}.{mode}.in"));
    let o = dir.join(format!("{tag}.{mode}.out"));
    std::fs::write(&i, input).expect("write tool input");
    let st = Command::new(tool)
        .arg(mode)
        .arg(&i)
        .arg(&o)
        .status()
        .expect("run bcg729 tool");
    assert!(st.success(), "bcg729 tool {mode} failed");
    std::fs::read(&o).expect("tool output")
}

fn ours_enc(pcm: &[i16]) -> Vec<u8> {
    let mut e = Encoder::new();
    let mut out = Vec::new();
    for f in pcm.chunks_exact(L_FRAME) {
        let f: &[i16; L_FRAME] = f.try_into().expect("frame");
        out.extend_from_slice(&pack_rtp(&e.encode_frame(f)));
    }
    out
}

fn ours_dec(bits: &[u8]) -> Vec<i16> {
    let mut d = Decoder::new();
    let mut out = Vec::new();
    let mut o = [0i16; L_FRAME];
    for b in bits.chunks_exact(FRAME_BYTES) {
        let b: &[u8; FRAME_BYTES] = b.try_into().expect("frame bytes");
        d.decode_frame(Some(&unpack_rtp(b)), &mut o);
        out.extend_from_slice(&o);
    }
    out
}

fn pesq(dir: &Path, reference: &[i16], degraded: &[i16], tag: &str) -> f64 {
    let r = dir.join(format!("{tag}.ref.wav"));
    let d = dir.join(format!("{tag}.deg.wav"));
    perf::wav::write_pcm(&r, 8000, reference).expect("write ref wav");
    perf::wav::write_pcm(&d, 8000, degraded).expect("write deg wav");
    let out = Command::new("python3")
        .args(["-c", PESQ_PY])
        .arg(&r)
        .arg(&d)
        .output()
        .expect("python3");
    assert!(
        out.status.success(),
        "pesq failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout)
        .trim()
        .parse()
        .expect("pesq score")
}

#[test]
fn g729a_interop_with_bcg729_pesq() {
    let dir = tmp_dir();
    let tool = match build_tool(&dir) {
        Ok(t) => t,
        Err(why) => {
            eprintln!("SKIP g729a interop: bcg729 tool unavailable ({why})");
            return;
        }
    };
    if !pesq_available() {
        eprintln!("SKIP g729a interop: python3 with `pesq` and `numpy` not available");
        return;
    }
    let mut any = false;
    let mut worst = 0.0f64;
    println!(
        "{:<26} {:>9} {:>9} {:>9} {:>9}",
        "file (MOS PESQ-NB)", "bcg->bcg", "our->our", "our->bcg", "bcg->our"
    );
    for name in FILES {
        let path = Path::new(AUDIO).join(name);
        let Ok(audio) = perf::wav::read_pcm(&path) else {
            eprintln!("SKIP {name}: not found under {AUDIO}");
            continue;
        };
        assert_eq!(audio.rate, 8000, "{name}: expected 8 kHz");
        any = true;
        let pcm = &audio.samples[..audio.samples.len() / L_FRAME * L_FRAME];
        let tag = name.trim_end_matches(".wav");
        let our_bits = ours_enc(pcm);
        let bcg_bits = bcg(&tool, "enc", &pcm_bytes(pcm), &dir, tag);
        assert_eq!(our_bits.len(), bcg_bits.len(), "{name}: bitstream lengths");
        let to_pcm = |b: Vec<u8>| -> Vec<i16> {
            b.chunks_exact(2)
                .map(|c| i16::from_le_bytes([c[0], c[1]]))
                .collect()
        };
        let bb = to_pcm(bcg(&tool, "dec", &bcg_bits, &dir, &format!("{tag}.bb")));
        let ob = to_pcm(bcg(&tool, "dec", &our_bits, &dir, &format!("{tag}.ob")));
        let oo = ours_dec(&our_bits);
        let bo = ours_dec(&bcg_bits);
        let s_bb = pesq(&dir, pcm, &bb, &format!("{tag}.bb"));
        let s_oo = pesq(&dir, pcm, &oo, &format!("{tag}.oo"));
        let s_ob = pesq(&dir, pcm, &ob, &format!("{tag}.ob"));
        let s_bo = pesq(&dir, pcm, &bo, &format!("{tag}.bo"));
        println!("{name:<26} {s_bb:>9.3} {s_oo:>9.3} {s_ob:>9.3} {s_bo:>9.3}");
        assert!(s_bb > 3.0, "{name}: bcg729 reference MOS {s_bb} too low");
        // Interop: either decoder on the same bitstream scores the same.
        for (what, s, own) in [
            ("ours->bcg729 vs ours->ours", s_ob, s_oo),
            ("bcg729->ours vs bcg729->bcg729", s_bo, s_bb),
        ] {
            assert!(
                (s - own).abs() <= 0.05,
                "{name}: {what}: {s:.3} vs {own:.3}"
            );
        }
        // Our encoder (bit exact to the ITU reference) against bcg729's.
        assert!(
            (s_oo - s_bb).abs() <= 0.1,
            "{name}: ours->ours {s_oo:.3} vs bcg729->bcg729 {s_bb:.3}"
        );
        worst = worst.max((s_ob - s_bb).abs()).max((s_bo - s_bb).abs());
    }
    println!("largest |cross - bcg729->bcg729|: {worst:.3} MOS");
    if !any {
        eprintln!("SKIP g729a interop: no audio under {AUDIO}");
    }
}
