//! Fixed workloads for counting cycles/instructions on a shared machine:
//! `perf stat -e cycles,instructions target/release/deps/dsp_cost-* --ignored ec_1024`
//! (divide by the samples printed). Ignored by default: they only burn CPU.

use dataplane::dsp::dtmf::DtmfDetector;
use dataplane::dsp::ec::EchoCanceller;

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
