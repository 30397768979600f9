//! G.711 throughput in ns/sample (criterion reports time per 8000-sample block
//! and elements/s; divide: ns/sample = time / 8000).
//!
//! Input: one second of the Asterisk demo prompt when present, else a
//! synthetic sweep. Reference (same machine, separate run):
//! `QUICK=1 /work/shared/anchors/codecs/run.sh` reports spandsp's ns/sample.

use criterion::{black_box, criterion_group, criterion_main, Criterion, Throughput};
use dataplane::codec::g711;

fn input() -> Vec<i16> {
    match perf::wav::demo_prompt() {
        Some(a) if a.len() >= 8000 => a[..8000].to_vec(),
        _ => (0..8000)
            .map(|i| ((i * 37 % 65536) as i32 - 32768) as i16)
            .collect(),
    }
}

fn bench(c: &mut Criterion) {
    let pcm = input();
    let mut codes = vec![0u8; pcm.len()];
    let mut out = vec![0i16; pcm.len()];
    let mut g = c.benchmark_group("g711");
    g.throughput(Throughput::Elements(pcm.len() as u64));
    g.bench_function("alaw_encode", |b| {
        b.iter(|| g711::encode_alaw(black_box(&pcm), &mut codes))
    });
    g711::encode_alaw(&pcm, &mut codes);
    g.bench_function("alaw_decode", |b| {
        b.iter(|| g711::decode_alaw(black_box(&codes), &mut out))
    });
    g.bench_function("ulaw_encode", |b| {
        b.iter(|| g711::encode_ulaw(black_box(&pcm), &mut codes))
    });
    g711::encode_ulaw(&pcm, &mut codes);
    g.bench_function("ulaw_decode", |b| {
        b.iter(|| g711::decode_ulaw(black_box(&codes), &mut out))
    });
    let mut conv = vec![0u8; codes.len()];
    g.bench_function("ulaw_to_alaw", |b| {
        b.iter(|| {
            for (o, &c) in conv.iter_mut().zip(black_box(&codes)) {
                *o = g711::ulaw_to_alaw(c);
            }
        })
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
