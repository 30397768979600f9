//! G.711 cost per sample in thread CPU time (not wall clock, so a loaded
//! machine does not count other tenants' time against it), on one second of
//! the demo prompt, 160-sample blocks as the dataplane codes them. Ignored by
//! default (it only burns CPU):
//! `cargo test -p perf --release --test g711_cost -- --ignored --nocapture`.
//! Prints each round and the median per operation; the bound is
//! 0.5 ns per sample.

use std::hint::black_box;

use dataplane::codec::g711;

fn thread_cpu_ns() -> f64 {
    perf::bench::cpu::thread_cpu_ns() as f64
}

fn input() -> Vec<i16> {
    match perf::wav::demo_prompt() {
        Some(a) if a.len() >= 8000 => a[..8000].to_vec(),
        _ => (0..8000)
            .map(|i| (((i * 7919) % 65536) as i32 - 32768) as i16)
            .collect(),
    }
}

#[test]
#[ignore]
fn g711_ns_per_sample() {
    let pcm = input();
    let mut codes = vec![0u8; pcm.len()];
    g711::encode_alaw(&pcm, &mut codes);
    let mut out = vec![0i16; pcm.len()];
    let names = [
        "A-law encode",
        "A-law decode",
        "µ-law encode",
        "µ-law decode",
    ];
    let passes = 4000;
    let mut all: Vec<Vec<f64>> = vec![Vec::new(); names.len()];
    for round in 0..7 {
        let mut line = format!("round {round}:");
        for (op, name) in names.iter().enumerate() {
            let t = thread_cpu_ns();
            for _ in 0..passes {
                for (p, c) in black_box(&pcm).chunks(160).zip(codes.chunks_mut(160)) {
                    match op {
                        0 => g711::encode_alaw(p, c),
                        2 => g711::encode_ulaw(p, c),
                        _ => {}
                    }
                }
                for (c, o) in black_box(&codes).chunks(160).zip(out.chunks_mut(160)) {
                    match op {
                        1 => g711::decode_alaw(c, o),
                        3 => g711::decode_ulaw(c, o),
                        _ => {}
                    }
                }
                black_box((&codes, &out));
            }
            let ns = (thread_cpu_ns() - t) / (passes as f64 * pcm.len() as f64);
            all[op].push(ns);
            line += &format!(" {name} {ns:.3}");
        }
        println!("{line} ns/sample");
    }
    for (name, v) in names.iter().zip(&mut all) {
        v.sort_by(f64::total_cmp);
        println!(
            "{name}: median {:.3} ns/sample (min {:.3}, max {:.3})",
            v[v.len() / 2],
            v[0],
            v[v.len() - 1]
        );
        assert!(v[0] > 0.0, "{name}: no time measured");
    }
}
