//! DSP cost per sample: echo cancellers at 1024 taps (time-domain adapting
//! and frozen, frequency-domain adapting) and the DTMF detector. Throughput is in samples, so
//! criterion's "time per element" is ns/sample.

use criterion::{black_box, criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use dataplane::dsp::dtmf::{generate_digits, DtmfDetector};
use dataplane::dsp::ec::EchoCanceller;
use dataplane::dsp::ec_fdaf::FdafEchoCanceller;

/// Seeded noise shaped a little like speech (low-passed), with an echo.
fn signals(n: usize) -> (Vec<i16>, Vec<i16>) {
    let mut s = 0x9e37_79b9u32;
    let mut lp = 0.0f32;
    let far: Vec<i16> = (0..n)
        .map(|_| {
            s ^= s << 13;
            s ^= s >> 17;
            s ^= s << 5;
            let u = (s >> 8) as f32 / (1u32 << 24) as f32 - 0.5;
            lp = 0.8 * lp + 0.2 * u * 20_000.0;
            lp as i16
        })
        .collect();
    let near: Vec<i16> = (0..n)
        .map(|i| {
            if i >= 300 {
                (f32::from(far[i - 300]) * 0.2) as i16
            } else {
                0
            }
        })
        .collect();
    (far, near)
}

fn bench_ec(c: &mut Criterion) {
    let block = 160;
    let (far, near) = signals(8000 * 4);
    let mut g = c.benchmark_group("ec_1024_taps");
    g.throughput(Throughput::Elements(block as u64));
    {
        for adapt in [true, false] {
            let mut ec = EchoCanceller::new(1024);
            ec.set_adaptation(adapt);
            let id = if adapt { "adapting" } else { "frozen" };
            let mut out = vec![0i16; block];
            let mut pos = 0;
            g.bench_function(BenchmarkId::from_parameter(id), |b| {
                b.iter(|| {
                    if pos + block > far.len() {
                        pos = 0;
                    }
                    ec.process(&far[pos..pos + block], &near[pos..pos + block], &mut out);
                    pos += block;
                    black_box(&out);
                })
            });
        }
    }
    {
        let mut ec = FdafEchoCanceller::new(1024);
        let mut out = vec![0i16; block];
        let mut pos = 0;
        g.bench_function(BenchmarkId::from_parameter("fdaf_adapting"), |b| {
            b.iter(|| {
                if pos + block > far.len() {
                    pos = 0;
                }
                ec.process(&far[pos..pos + block], &near[pos..pos + block], &mut out);
                pos += block;
                black_box(&out);
            })
        });
    }
    g.finish();
}

fn bench_dtmf(c: &mut Criterion) {
    let mut x = Vec::new();
    generate_digits("1234567890*#ABCD", -20.0, 50, 50, &mut x);
    let mut g = c.benchmark_group("dtmf_detect");
    g.throughput(Throughput::Elements(x.len() as u64));
    let mut det = DtmfDetector::default();
    g.bench_function("digits_and_silence", |b| {
        b.iter(|| {
            let mut n = 0;
            det.process(black_box(&x), |_| n += 1);
            black_box(n)
        })
    });
    g.finish();
}

criterion_group!(benches, bench_ec, bench_dtmf);
criterion_main!(benches);
