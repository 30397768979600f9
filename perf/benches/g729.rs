//! G.729 Annex A: time per 10 ms frame for encode and decode, and channels
//! per core = 10 ms / (encode + decode), side by side with bcg729 on the same
//! audio in the same run. Both sides are timed in thread CPU time
//! (`CLOCK_THREAD_CPUTIME_ID`) over the whole 73 s demo prompt (7334 frames,
//! best of `G729_BENCH_PASSES` passes, default 3), in alternating rounds (Tandem, bcg729, Tandem, ...;
//! `G729_BENCH_ROUNDS`, default 5), so that a shift in machine load hits
//! both; each round's ratio is printed, then the median and the ratio of each side's best
//! figures over all rounds (host noise only adds CPU time). Pin the run to one
//! core (`taskset -c 1`).
//!
//! Input: the Asterisk demo prompt (`shared/testdata/audio`), else a
//! synthetic signal. bcg729 (GPL) is never linked into Tandem: when
//! `libbcg729-dev` and `cc` are present, a small C timing program is compiled
//! into the target directory and run as a separate process (skipped with a
//! message otherwise).

use criterion::{black_box, criterion_group, criterion_main, Criterion};
use dataplane::codec::g729::{bitstream, Decoder, Encoder, Params, L_FRAME};
use perf::bench::cpu::thread_cpu_ns;
use std::path::{Path, PathBuf};
use std::process::Command;

/// Passes over the input per measurement (the best is kept), both sides:
/// `G729_BENCH_PASSES`, default 3.
fn passes() -> usize {
    std::env::var("G729_BENCH_PASSES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(3)
        .max(1)
}

fn input() -> Vec<i16> {
    let mut s = perf::wav::demo_prompt().unwrap_or_else(|| {
        (0..80_000)
            .map(|i| ((i as f64 * 0.05).sin() * 8000.0) as i16)
            .collect()
    });
    s.truncate(s.len() / L_FRAME * L_FRAME);
    s
}

/// Our encode and decode CPU time per frame in ns (best of [`passes`] over the input).
fn ours(pcm: &[i16]) -> (f64, f64) {
    let frames = pcm.len() / L_FRAME;
    let mut params = vec![Params::default(); frames];
    let (mut best_e, mut best_d) = (f64::MAX, f64::MAX);
    for _ in 0..passes() {
        let mut enc = Encoder::new();
        let t = thread_cpu_ns();
        for (f, p) in pcm.chunks_exact(L_FRAME).zip(params.iter_mut()) {
            *p = enc.encode_frame(f.try_into().unwrap());
        }
        best_e = best_e.min((thread_cpu_ns() - t) as f64 / frames as f64);
        let mut dec = Decoder::new();
        let mut out = [0i16; L_FRAME];
        let t = thread_cpu_ns();
        for p in &params {
            dec.decode_frame(Some(p), &mut out);
            black_box(&out);
        }
        best_d = best_d.min((thread_cpu_ns() - t) as f64 / frames as f64);
    }
    (best_e, best_d)
}

/// The bcg729 timing program and the input as raw PCM beside it, if
/// libbcg729-dev and a C compiler are present.
fn bcg729_program(pcm: &[i16]) -> Option<(PathBuf, PathBuf)> {
    if !Path::new("/usr/include/bcg729/encoder.h").exists() {
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
int np=c>2?atoi(v[2]):2;double be=1e30,bd=1e30;for(int r=0;r<np;r++){bcg729EncoderChannelContextStruct*e=initBcg729EncoderChannel(0);double t=ns();
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
    Some((exe, raw))
}

/// bcg729 encode/decode CPU ns per frame (best of [`passes`]) on the input.
fn bcg729(exe: &Path, raw: &Path) -> Option<(f64, f64)> {
    let out = Command::new(exe)
        .arg(raw)
        .arg(passes().to_string())
        .output()
        .ok()?;
    let text = String::from_utf8(out.stdout).ok()?;
    let mut it = text.split_whitespace().map(|v| v.parse::<f64>());
    Some((it.next()?.ok()?, it.next()?.ok()?))
}

fn median(v: &mut [f64]) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn bench(c: &mut Criterion) {
    let pcm = input();
    let rounds: usize = std::env::var("G729_BENCH_ROUNDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(5)
        .max(1);
    let reference = bcg729_program(&pcm);
    let (mut ratios, mut chans) = (Vec::new(), Vec::new());
    // Each side's least disturbed figures over all rounds (host noise only
    // ever adds CPU time): encode and decode, ours then bcg729's.
    let mut best = [f64::MAX; 4];
    for round in 1..=rounds {
        let (e, d) = ours(&pcm);
        best[0] = best[0].min(e);
        best[1] = best[1].min(d);
        chans.push(10e6 / (e + d));
        let mut line = format!(
            "round {round}: tandem G.729A encode {e:.0} + decode {d:.0} ns/frame = {:.0} full-duplex channels/core",
            10e6 / (e + d)
        );
        if let Some((be, bd)) = reference.as_ref().and_then(|(x, r)| bcg729(x, r)) {
            ratios.push((be + bd) / (e + d));
            best[2] = best[2].min(be);
            best[3] = best[3].min(bd);
            line += &format!(
                "; bcg729 {be:.0} + {bd:.0} ns/frame = {:.0} channels/core; ratio {:.2}x",
                10e6 / (be + bd),
                (be + bd) / (e + d)
            );
        }
        println!("{line}");
    }
    println!(
        "tandem G.729A: median {:.0} full-duplex channels/core over {rounds} rounds",
        median(&mut chans)
    );
    if ratios.is_empty() {
        println!("bcg729: not measured (see above)");
    } else {
        let lo = ratios.iter().copied().fold(f64::MAX, f64::min);
        let hi = ratios.iter().copied().fold(0.0, f64::max);
        println!(
            "throughput ratio tandem/bcg729 (enc+dec): median {:.2}x (rounds {lo:.2}-{hi:.2}x)",
            median(&mut ratios)
        );
        println!(
            "best of all rounds: tandem {:.0} + {:.0} ns/frame = {:.0} channels/core, bcg729 {:.0} + {:.0}: ratio {:.2}x",
            best[0],
            best[1],
            10e6 / (best[0] + best[1]),
            best[2],
            best[3],
            (best[2] + best[3]) / (best[0] + best[1])
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
