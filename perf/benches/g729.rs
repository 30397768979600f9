//! G.729 Annex A: time per 10 ms frame for encode and decode, and channels
//! per core = 10 ms / (encode + decode), side by side with bcg729 on the same
//! audio in the same run. Both sides are timed in thread CPU time (best of 5
//! passes), so that on a shared machine the other tenants' load counts less.
//!
//! Input: the Asterisk demo prompt (`shared/testdata/audio`), else a synthetic
//! signal. bcg729 (GPL) is never linked into Tandem: when `libbcg729-dev` and
//! `cc` are present, a small C timing program is compiled into the target
//! directory and run as a separate process (skipped with a message otherwise).

use criterion::{black_box, criterion_group, criterion_main, Criterion};
use dataplane::codec::g729::{bitstream, Decoder, Encoder, Params, L_FRAME};
use std::path::PathBuf;
use std::process::Command;

const AUDIO: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../../shared/testdata/audio/ast_demo-instruct_8k.wav"
);

fn input() -> Vec<i16> {
    let mut s = match perf::wav::read_pcm(std::path::Path::new(AUDIO)) {
        Ok(a) => a.samples,
        Err(_) => (0..80_000)
            .map(|i| ((i as f64 * 0.05).sin() * 8000.0) as i16)
            .collect(),
    };
    s.truncate(s.len().min(8000 * 20) / L_FRAME * L_FRAME); // at most 20 s
    s
}

/// CPU time of this thread in ns (`/proc/thread-self/schedstat`), else 0.
fn cpu_ns() -> u64 {
    std::fs::read_to_string("/proc/thread-self/schedstat")
        .ok()
        .and_then(|t| t.split_whitespace().next()?.parse().ok())
        .unwrap_or(0)
}

/// Our encode and decode CPU time per frame in ns (best of 5 passes over the input).
fn ours(pcm: &[i16]) -> (f64, f64) {
    let frames = pcm.len() / L_FRAME;
    let mut params = vec![Params::default(); frames];
    let (mut best_e, mut best_d) = (f64::MAX, f64::MAX);
    for _ in 0..5 {
        let mut enc = Encoder::new();
        let t = cpu_ns();
        for (f, p) in pcm.chunks_exact(L_FRAME).zip(params.iter_mut()) {
            *p = enc.encode_frame(f.try_into().unwrap());
        }
        best_e = best_e.min(cpu_ns().saturating_sub(t) as f64 / frames as f64);
        let mut dec = Decoder::new();
        let mut out = [0i16; L_FRAME];
        let t = cpu_ns();
        for p in &params {
            dec.decode_frame(Some(p), &mut out);
            black_box(&out);
        }
        best_d = best_d.min(cpu_ns().saturating_sub(t) as f64 / frames as f64);
    }
    (best_e, best_d)
}

/// bcg729 encode/decode CPU ns per frame on the same samples, if available.
fn bcg729(pcm: &[i16]) -> Option<(f64, f64)> {
    if !std::path::Path::new("/usr/include/bcg729/encoder.h").exists() {
        eprintln!("bcg729: SKIP (libbcg729-dev not installed)");
        return None;
    }
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target/bcg729-bench");
    std::fs::create_dir_all(&dir).ok()?;
    let src = dir.join("b.c");
    std::fs::write(
        &src,
        r#"#include <stdio.h>
#include <stdlib.h>
#include <stdint.h>
#include <time.h>
#include <bcg729/encoder.h>
#include <bcg729/decoder.h>
static double ns(void){struct timespec t;clock_gettime(CLOCK_THREAD_CPUTIME_ID,&t);return t.tv_sec*1e9+t.tv_nsec;}
int main(int c,char**v){FILE*f=fopen(v[1],"rb");if(!f)return 1;fseek(f,0,SEEK_END);long n=ftell(f)/2;fseek(f,0,SEEK_SET);
int16_t*s=malloc(n*2);if(fread(s,2,n,f)!=(size_t)n)return 1;int fr=n/80;uint8_t*b=malloc(fr*10);uint8_t*l=malloc(fr);int16_t o[80];
double be=1e30,bd=1e30;for(int r=0;r<5;r++){bcg729EncoderChannelContextStruct*e=initBcg729EncoderChannel(0);double t=ns();
for(int i=0;i<fr;i++)bcg729Encoder(e,s+i*80,b+i*10,l+i);t=(ns()-t)/fr;if(t<be)be=t;closeBcg729EncoderChannel(e);
bcg729DecoderChannelContextStruct*d=initBcg729DecoderChannel();t=ns();for(int i=0;i<fr;i++)bcg729Decoder(d,b+i*10,l[i],0,0,0,o);
t=(ns()-t)/fr;if(t<bd)bd=t;closeBcg729DecoderChannel(d);}printf("%f %f\n",be,bd);return 0;}
"#,
    )
    .ok()?;
    let exe = dir.join("b");
    let ok = Command::new("cc")
        .args(["-O2", "-o"])
        .arg(&exe)
        .arg(&src)
        .arg("-lbcg729")
        .status();
    if !matches!(ok, Ok(s) if s.success()) {
        eprintln!("bcg729: SKIP (could not build the timing program)");
        return None;
    }
    let raw = dir.join("in.pcm");
    let bytes: Vec<u8> = pcm.iter().flat_map(|s| s.to_le_bytes()).collect();
    std::fs::write(&raw, bytes).ok()?;
    let out = Command::new(&exe).arg(&raw).output().ok()?;
    let text = String::from_utf8(out.stdout).ok()?;
    let mut it = text.split_whitespace().map(|v| v.parse::<f64>());
    Some((it.next()?.ok()?, it.next()?.ok()?))
}

fn bench(c: &mut Criterion) {
    let pcm = input();
    let (e, d) = ours(&pcm);
    println!(
        "tandem G.729A: encode {:.0} ns/frame, decode {:.0} ns/frame, {:.0} full-duplex channels/core",
        e,
        d,
        10e6 / (e + d)
    );
    if let Some((be, bd)) = bcg729(&pcm) {
        println!(
            "bcg729 G.729A: encode {:.0} ns/frame, decode {:.0} ns/frame, {:.0} channels/core",
            be,
            bd,
            10e6 / (be + bd)
        );
        println!(
            "throughput ratio tandem/bcg729 (enc+dec): {:.2}x",
            (be + bd) / (e + d)
        );
    }

    let frame: [i16; L_FRAME] = pcm[L_FRAME * 100..L_FRAME * 101]
        .try_into()
        .unwrap_or([0; L_FRAME]);
    let mut g = c.benchmark_group("g729a");
    let mut enc = Encoder::new();
    g.bench_function("encode_frame", |b| {
        b.iter(|| enc.encode_frame(black_box(&frame)))
    });
    let prm = Encoder::new().encode_frame(&frame);
    let bytes = bitstream::pack_rtp(&prm);
    let mut dec = Decoder::new();
    let mut out = [0i16; L_FRAME];
    g.bench_function("decode_frame", |b| {
        b.iter(|| {
            let p = bitstream::unpack_rtp(black_box(&bytes));
            dec.decode_frame(Some(&p), &mut out)
        })
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
