//! The DSP subcommands through `dsp_cli::run`, on temporary files.

use perf::dsp_cli::run;
use perf::wav::{read_pcm, write_pcm};
use std::path::PathBuf;

fn tmp(name: &str) -> PathBuf {
    std::env::temp_dir().join(format!("tandem_dsp_cli_{}_{name}", std::process::id()))
}

fn args(v: &[&str]) -> Vec<String> {
    v.iter().map(|s| s.to_string()).collect()
}

#[test]
fn not_ours_returns_none() {
    assert_eq!(run(&args(&["encode", "x"])), None);
    assert_eq!(run(&[]), None);
}

#[test]
fn generate_then_detect_digits() {
    let wav = tmp("digits.wav");
    let p = wav.to_str().unwrap();
    assert_eq!(
        run(&args(&["dtmf-generate", "--level", "-15", "159#*0D", p])),
        Some(0)
    );
    let x = read_pcm(&wav).unwrap();
    assert_eq!(x.rate, 8000);
    assert_eq!(x.samples.len(), 7 * 1600);
    let mut det = dataplane::dsp::dtmf::DtmfDetector::default();
    let mut got = String::new();
    det.process(&x.samples, |e| {
        if let dataplane::dsp::dtmf::DtmfEvent::Begin { digit, .. } = e {
            got.push(digit.to_char());
        }
    });
    assert_eq!(got, "159#*0D");
    assert_eq!(run(&args(&["dtmf-detect", p])), Some(0));
    assert_eq!(run(&args(&["dtmf-generate", "12x", p])), Some(2));
    let _ = std::fs::remove_file(wav);
}

#[test]
fn tone_writes_the_requested_length() {
    let raw = tmp("busy.raw");
    let p = raw.to_str().unwrap();
    assert_eq!(run(&args(&["tone", "uk", "busy", "1.5", p])), Some(0));
    let x = read_pcm(&raw).unwrap();
    assert_eq!(x.samples.len(), 12_000);
    // 375 ms on, 375 ms off.
    assert!(x.samples[..3000].iter().any(|&s| s.abs() > 1000));
    assert!(x.samples[3000..6000].iter().all(|&s| s == 0));
    assert_eq!(run(&args(&["tone", "zz", "busy", "1", p])), Some(2));
    assert_eq!(run(&args(&["tone", "us", "beep", "1", p])), Some(2));
    let _ = std::fs::remove_file(raw);
}

#[test]
fn echo_cancel_removes_echo() {
    let (far, near, out) = (tmp("far.wav"), tmp("near.wav"), tmp("out.wav"));
    let mut s = 1u32;
    let mut lp = 0.0f32;
    let f: Vec<i16> = (0..8000 * 6)
        .map(|_| {
            s ^= s << 13;
            s ^= s >> 17;
            s ^= s << 5;
            lp = 0.7 * lp + 0.3 * ((s >> 8) as f32 / (1u32 << 24) as f32 - 0.5) * 16_000.0;
            lp as i16
        })
        .collect();
    let d: Vec<i16> = (0..f.len())
        .map(|i| if i >= 200 { f[i - 200] / 4 } else { 0 })
        .collect();
    write_pcm(&far, 8000, &f).unwrap();
    write_pcm(&near, 8000, &d).unwrap();
    let a = |p: &PathBuf| p.to_str().unwrap().to_string();
    let code = run(&[
        "echo-cancel".into(),
        "--tail-ms".into(),
        "64".into(),
        "--no-nlp".into(),
        a(&far),
        a(&near),
        a(&out),
    ]);
    assert_eq!(code, Some(0));
    let y = read_pcm(&out).unwrap().samples;
    let p = |v: &[i16]| {
        v.iter()
            .map(|&s| f64::from(s).powi(2))
            .sum::<f64>()
            .max(1.0)
    };
    let erle = 10.0 * (p(&d[16_000..]) / p(&y[16_000..])).log10();
    assert!(erle > 30.0, "ERLE {erle:.1} dB");
    assert_eq!(
        run(&args(&["echo-cancel", "--tail-ms", "500", "a", "b", "c"])),
        Some(2)
    );
    assert_eq!(
        run(&args(&[
            "echo-cancel",
            "/nonexistent/a.wav",
            "b.wav",
            "c.wav"
        ])),
        Some(1)
    );
    for p in [far, near, out] {
        let _ = std::fs::remove_file(p);
    }
}
