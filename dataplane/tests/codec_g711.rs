//! G.711 exhaustive conformance: every 16-bit input and every code, checked
//! against an independent segment-table formulation of G.711/G.191, against
//! fixed points of the Recommendation, and (when `libspandsp-dev` and a C
//! compiler are present) against spandsp as an outside reference.

use dataplane::codec::g711::*;
use std::path::PathBuf;
use std::process::Command;

/// G.711 A-law quantiser, written from the segment/decision-value tables
/// (Tables 1a/1b of G.711) rather than the G.191 loop.
fn alaw_by_segments(x: i16) -> u8 {
    // 13-bit uniform code magnitude (G.711 works on 12 bits + sign for A-law).
    let mag = if x < 0 {
        (!(x as i32)) >> 4
    } else {
        (x as i32) >> 4
    }; // 0..=2047
    let (seg, mant) = if mag < 16 {
        (0, mag)
    } else {
        let seg = 31 - (mag as u32).leading_zeros() as i32 - 3; // 1..=7
        (seg, (mag >> (seg - 1)) & 0x0f)
    };
    let code = ((seg << 4) | mant) as u8 | if x >= 0 { 0x80 } else { 0 };
    code ^ 0x55
}

fn alaw_value(code: u8) -> i32 {
    let c = code ^ 0x55;
    let seg = ((c >> 4) & 7) as i32;
    let mant = (c & 0x0f) as i32;
    // Reconstruction at the middle of the decision interval, in 1/16 units of
    // the 13-bit scale times 16 (the 16-bit scale).
    let mag = if seg == 0 {
        (mant << 1) + 1
    } else {
        ((mant << 1) + 33) << (seg - 1)
    };
    let v = mag << 3;
    if c & 0x80 != 0 {
        v
    } else {
        -v
    }
}

fn ulaw_by_segments(x: i16) -> u8 {
    let mag = if x < 0 {
        (!(x as i32)) >> 2
    } else {
        (x as i32) >> 2
    };
    let biased = (mag + 33).min(0x1fff);
    let seg = 31 - (biased as u32).leading_zeros() as i32 - 5; // 0..=7
    let mant = (biased >> (seg + 1)) & 0x0f;
    let code = (((seg << 4) | mant) as u8) ^ 0x7f;
    if x >= 0 {
        code | 0x80
    } else {
        code
    }
}

fn ulaw_value(code: u8) -> i32 {
    let c = !code;
    let seg = ((c >> 4) & 7) as i32;
    let mant = (c & 0x0f) as i32;
    let mag = (((mant << 1) + 33) << seg) - 33;
    let v = mag << 2;
    if code & 0x80 != 0 {
        v
    } else {
        -v
    }
}

#[test]
fn alaw_encode_all_inputs() {
    for x in i16::MIN..=i16::MAX {
        assert_eq!(linear_to_alaw(x), alaw_compress_ref(x), "x={x}");
        assert_eq!(linear_to_alaw(x), alaw_by_segments(x), "x={x}");
    }
}

#[test]
fn ulaw_encode_all_inputs() {
    for x in i16::MIN..=i16::MAX {
        assert_eq!(linear_to_ulaw(x), ulaw_compress_ref(x), "x={x}");
        assert_eq!(linear_to_ulaw(x), ulaw_by_segments(x), "x={x}");
    }
}

#[test]
fn decode_all_codes() {
    for c in 0..=255u8 {
        assert_eq!(alaw_to_linear(c) as i32, alaw_value(c), "A code {c:#04x}");
        assert_eq!(ulaw_to_linear(c) as i32, ulaw_value(c), "µ code {c:#04x}");
        // Decoding then encoding is transparent, except µ-law's two zeros.
        assert_eq!(linear_to_alaw(alaw_to_linear(c)), c);
        if c != 0x7f {
            assert_eq!(linear_to_ulaw(ulaw_to_linear(c)), c);
        }
    }
}

#[test]
fn recommendation_fixed_points() {
    assert_eq!(linear_to_alaw(0), 0xd5);
    assert_eq!(linear_to_alaw(-1), 0x55);
    assert_eq!(linear_to_ulaw(0), 0xff);
    assert_eq!(linear_to_ulaw(-1), 0x7f);
    assert_eq!(linear_to_alaw(i16::MAX), 0xaa);
    assert_eq!(linear_to_alaw(i16::MIN), 0x2a);
    assert_eq!(linear_to_ulaw(i16::MAX), 0x80);
    assert_eq!(linear_to_ulaw(i16::MIN), 0x00);
    assert_eq!(alaw_to_linear(0xd5), 8);
    assert_eq!(alaw_to_linear(0xaa), 32256);
    assert_eq!(ulaw_to_linear(0x80), 32124);
    assert_eq!(ulaw_to_linear(0x00), -32124);
    assert_eq!(ulaw_to_linear(0xff), 0);
}

#[test]
fn law_conversion_properties() {
    for c in 0..=255u8 {
        // Conversion keeps the sign and stays close to the decoded value.
        let a = ulaw_to_alaw(c);
        assert_eq!(a & 0x80, c & 0x80, "µ {c:#04x}");
        let u = alaw_to_ulaw(c);
        assert_eq!(u & 0x80, c & 0x80, "A {c:#04x}");
        let (lu, la) = (ulaw_to_linear(c) as i32, alaw_to_linear(a) as i32);
        assert!(
            (lu - la).abs() <= lu.abs() / 8 + 64,
            "µ {c:#04x}: {lu} vs {la}"
        );
        // µ -> A -> µ is transparent for the codes G.711 maps one to one.
        if (0x30..0x70).contains(&(c & 0x7f)) {
            assert_eq!(alaw_to_ulaw(a), c, "µ {c:#04x}");
        }
    }
}

/// spandsp as an independent reference, through a tiny C program.
#[test]
fn matches_spandsp_if_present() {
    if !std::path::Path::new("/usr/include/spandsp/g711.h").exists() {
        eprintln!("SKIP: libspandsp-dev not installed (apt-get install libspandsp-dev)");
        return;
    }
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("g711_spandsp");
    std::fs::create_dir_all(&dir).unwrap();
    let src = dir.join("dump.c");
    std::fs::write(
        &src,
        r#"#include <stdint.h>
#include <stdio.h>
#include <spandsp.h>
int main(void) {
    for (int x = -32768; x < 32768; x++) printf("%d %d\n", linear_to_alaw(x), linear_to_ulaw(x));
    for (int c = 0; c < 256; c++)
        printf("%d %d %d %d\n", alaw_to_linear(c), ulaw_to_linear(c), alaw_to_ulaw(c), ulaw_to_alaw(c));
    return 0;
}
"#,
    )
    .unwrap();
    let exe = dir.join("dump");
    let cc = Command::new("cc")
        .arg("-O1")
        .arg(&src)
        .arg("-o")
        .arg(&exe)
        .arg("-lspandsp")
        .status();
    match cc {
        Ok(s) if s.success() => {}
        _ => {
            eprintln!("SKIP: could not build the spandsp reference program");
            return;
        }
    }
    let out = Command::new(&exe).output().unwrap();
    let text = String::from_utf8(out.stdout).unwrap();
    let mut lines = text.lines();
    for x in i16::MIN..=i16::MAX {
        let l = lines.next().unwrap();
        let v: Vec<i32> = l.split(' ').map(|s| s.parse().unwrap()).collect();
        assert_eq!(linear_to_alaw(x) as i32, v[0], "A-law x={x}");
        // spandsp takes the magnitude of a negative sample as -x where G.191
        // takes !x (= -x - 1): its µ-law of x is G.191's µ-law of x - 1.
        let g191 = if x < 0 && x > i16::MIN {
            linear_to_ulaw(x - 1)
        } else {
            linear_to_ulaw(x)
        };
        assert_eq!(g191 as i32, v[1], "µ-law x={x}");
    }
    for c in 0..=255u8 {
        let l = lines.next().unwrap();
        let v: Vec<i32> = l.split(' ').map(|s| s.parse().unwrap()).collect();
        assert_eq!(alaw_to_linear(c) as i32, v[0], "A code {c}");
        assert_eq!(ulaw_to_linear(c) as i32, v[1], "µ code {c}");
        assert_eq!(alaw_to_ulaw(c) as i32, v[2], "A->µ code {c}");
        assert_eq!(ulaw_to_alaw(c) as i32, v[3], "µ->A code {c}");
    }
}
