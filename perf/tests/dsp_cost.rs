//! Fixed workloads for counting cycles/instructions on a shared machine:
//! `perf stat -e cycles,instructions target/release/deps/dsp_cost-* --ignored ec_1024`
//! (divide by the samples printed). Ignored by default: they only burn CPU.

use dataplane::dsp::dtmf::DtmfDetector;
use dataplane::dsp::ec::EchoCanceller;
use dataplane::dsp::ec_fdaf::FdafEchoCanceller;

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
    let near = (0..n)
        .map(|i| if i >= 300 { far[i - 300] / 5 } else { 0 })
        .collect();
    (far, near)
}

fn run_ec() {
    let n = 8000 * 60;
    let (far, near) = signals(n);
    let mut ec = EchoCanceller::new(1024);
    let mut out = vec![0i16; 160];
    for (f, d) in far.chunks(160).zip(near.chunks(160)) {
        ec.process(f, d, &mut out[..f.len()]);
    }
    println!("{n} samples processed, {:?}", ec.stats());
}

#[test]
#[ignore]
fn ec_1024() {
    run_ec();
}

#[test]
#[ignore]
fn dtmf_detect_speechlike() {
    let n = 8000 * 600;
    let (far, _) = signals(n);
    let mut det = DtmfDetector::default();
    let mut events = 0;
    det.process(&far, |_| events += 1);
    println!("{n} samples, {events} events");
}

const REAL: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../../shared/testdata/audio/ast_demo-instruct_8k.wav"
);

/// Best of `reps` timed passes of `f` over `n` samples, in ns/sample.
fn best_ns(reps: usize, n: usize, mut f: impl FnMut()) -> f64 {
    (0..reps)
        .map(|_| {
            let t = std::time::Instant::now();
            f();
            t.elapsed().as_secs_f64() * 1e9 / n as f64
        })
        .fold(f64::INFINITY, f64::min)
}

/// ns/sample on the anchors' real speech file (the same input as
/// `bench_dtmf time` and `bench_ec time` there): run beside them and quote
/// the ratio. `cargo test -p perf --release --test dsp_cost -- --ignored
/// real_speech_ns --nocapture`.
#[test]
#[ignore]
fn real_speech_ns_per_sample() {
    let Ok(audio) = perf::wav::read_pcm(std::path::Path::new(REAL)) else {
        eprintln!("skipping: {REAL} absent");
        return;
    };
    let x = audio.samples;
    let mut det = DtmfDetector::default();
    let dtmf = best_ns(15, x.len(), || {
        let mut ev = 0;
        det.process(std::hint::black_box(&x), |_| ev += 1);
        std::hint::black_box(ev);
    });
    println!("RESULT dtmf_ns_per_sample {dtmf:.2}");
    let near: Vec<i16> = (0..x.len())
        .map(|i| if i >= 300 { x[i - 300] / 5 } else { 0 })
        .collect();
    let n = x.len().min(8000 * 20);
    let mut out = vec![0i16; 160];
    let td = best_ns(3, n, || {
        let mut ec = EchoCanceller::new(1024);
        for (f, d) in x[..n].chunks(160).zip(near[..n].chunks(160)) {
            ec.process(f, d, &mut out[..f.len()]);
        }
    });
    let fd = best_ns(3, n, || {
        let mut ec = FdafEchoCanceller::new(1024);
        for (f, d) in x[..n].chunks(160).zip(near[..n].chunks(160)) {
            ec.process(f, d, &mut out[..f.len()]);
        }
    });
    println!("RESULT ec_time_domain_ns_per_sample {td:.1}");
    println!("RESULT ec_fdaf_ns_per_sample {fd:.1}");
}
