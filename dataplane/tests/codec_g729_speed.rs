//! G.729A encode/decode cost on the Asterisk demo prompt, for profiling
//! (`perf stat`, `perf record`, callgrind) without the criterion harness.
//!
//! Ignored by default; run with
//! `cargo test -p dataplane --release --test codec_g729_speed -- --ignored --nocapture`.
//! `G729_SPEED_MODE` = `enc`, `dec` or `both` (default) picks what is repeated,
//! `G729_SPEED_REPS` how many passes over the first 2000 frames (default 5).
//! The test also checks that repeated passes give the same bitstream, so a
//! state leak between channels would fail it.

use dataplane::codec::g729::{Decoder, Encoder, Params, L_FRAME};
use std::hint::black_box;

const AUDIO: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../../shared/testdata/audio/ast_demo-instruct_8k.wav"
);

/// The samples of a 16-bit mono WAV file's `data` chunk.
fn wav_samples(bytes: &[u8]) -> Option<Vec<i16>> {
    let mut pos = 12;
    while pos + 8 <= bytes.len() {
        let len = u32::from_le_bytes(bytes[pos + 4..pos + 8].try_into().ok()?) as usize;
        let body = bytes.get(pos + 8..(pos + 8 + len).min(bytes.len()))?;
        if &bytes[pos..pos + 4] == b"data" {
            return Some(
                body.chunks_exact(2)
                    .map(|c| i16::from_le_bytes([c[0], c[1]]))
                    .collect(),
            );
        }
        pos += 8 + len + (len & 1);
    }
    None
}

fn encode_all(pcm: &[i16]) -> Vec<Params> {
    let mut enc = Encoder::new();
    pcm.chunks_exact(L_FRAME)
        .map(|f| enc.encode_frame(f.try_into().expect("80 samples")))
        .collect()
}

#[test]
#[ignore = "speed measurement; run explicitly"]
fn g729a_speed() {
    let Some(mut pcm) = std::fs::read(AUDIO).ok().and_then(|b| wav_samples(&b)) else {
        eprintln!("SKIP: {AUDIO} absent");
        return;
    };
    pcm.truncate(2000 * L_FRAME);
    let mode = std::env::var("G729_SPEED_MODE").unwrap_or_else(|_| "both".into());
    let reps: usize = std::env::var("G729_SPEED_REPS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(5);
    let frames = pcm.len() / L_FRAME;
    let reference = encode_all(&pcm);
    // Wall time: pin the run (`taskset -c 1`) and prefer `perf stat` cycles
    // on a loaded machine (`/proc/thread-self/schedstat` advances only at
    // scheduler ticks on some kernels, so it cannot time this loop).
    let t = std::time::Instant::now();
    for _ in 0..reps {
        if mode != "dec" {
            assert_eq!(encode_all(black_box(&pcm)), reference);
        }
        if mode != "enc" {
            let mut dec = Decoder::new();
            let mut out = [0i16; L_FRAME];
            for p in &reference {
                dec.decode_frame(Some(black_box(p)), &mut out);
                black_box(&out);
            }
        }
    }
    let ns = t.elapsed().as_nanos() as f64 / (frames * reps) as f64;
    println!("tandem G.729A {mode}: {ns:.0} ns/frame wall time over {frames} frames x {reps}");
}
