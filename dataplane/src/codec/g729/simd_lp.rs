//! Kernels of the LP filters (synthesis filter) with a shorter
//! sample-to-sample dependency chain than the general exact kernels of
//! [`simd`](super::simd): they only cover the common case and say when
//! they cannot vouch for their result, so the caller runs the exact kernel
//! instead.
#![allow(unsafe_code)]

use super::{M, MP1};

/// The synthesis filter `1/A(z)` over a block, as
/// [`syn_block`](super::simd::syn_block) but without the per-sample
/// saturation: `y[i] = (e >> 12)` truncated to 16 bits with
/// `e = x[i] a[0] + 2^11 - Σ_{k=1..10} a[k] y[i - k]` (outputs before
/// `y[0]` read from `mem`, oldest first). Returns `true` when every
/// unsaturated `e >> 12` lies in `[-32767, 32767]`: then no `e` left
/// `[2^12 - 2^27, 2^27)`, inside the range where the reference neither
/// saturates nor sets its Overflow flag, so `y` is the reference's output
/// and its Overflow flag is clear. On `false` `y` is meaningless and the
/// caller must run the exact kernel.
///
/// Exact only under the caller's bound `2 (max|x| |a[0]| + 2^15 Σ|a[k]|)
/// <= MAX_32` (no 32-bit sum wraps), as for `syn_block`.
///
/// The two newest taps are scalar, so the chain from one output to the
/// next is one multiply, a subtraction and a shift; taps 3..10 are one
/// `pmaddwd` on a window of outputs needed only two samples later.
/// `x[i] a[0] + 2^11` is formed for the whole block up front.
#[inline(always)]
pub(crate) fn syn_block_unsat(a: &[i16; MP1], x: &[i16], y: &mut [i16], mem: &[i16; M]) -> bool {
    let n = x.len().min(y.len()).min(100);
    let (x, y) = (&x[..n], &mut y[..n]);
    let a0 = a[0] as i32;
    let mut xa = [0i32; 100];
    for (d, &v) in xa.iter_mut().zip(x) {
        *d = (v as i32 * a0).wrapping_add(0x800);
    }
    let xa = &xa[..n];
    let (a1, a2) = (a[1] as i32, a[2] as i32);
    let mut h1 = mem[9] as i32;
    let mut h2 = mem[8] as i32;
    // OR of `out + 32768`: below 2^16 iff every `out` is a 16-bit value.
    let mut range = 0u32;
    #[cfg(target_arch = "x86_64")]
    {
        use std::arch::x86_64::*;
        // SAFETY: SSE2 is always available on x86_64. The one load reads
        // `a[3..11]`, inside `a`; everything else is register arithmetic.
        // `pmaddwd` wraps only for two (-32768)^2 products, excluded by the
        // caller's bound like every other wrap here.
        unsafe {
            let c = _mm_loadu_si128(a.as_ptr().add(3) as *const __m128i);
            // Lanes 0..8 hold y[i - 3] .. y[i - 10].
            let mut w = _mm_set_epi16(
                mem[0], mem[1], mem[2], mem[3], mem[4], mem[5], mem[6], mem[7],
            );
            for (&xi, yi) in xa.iter().zip(y.iter_mut()) {
                let p = _mm_madd_epi16(w, c);
                let p = _mm_add_epi32(p, _mm_shuffle_epi32(p, 0b01_00_11_10));
                let p = _mm_add_epi32(p, _mm_shuffle_epi32(p, 0b10_11_00_01));
                let far = _mm_cvtsi128_si32(p);
                let e = xi
                    .wrapping_sub(far)
                    .wrapping_sub(a2.wrapping_mul(h2))
                    .wrapping_sub(a1.wrapping_mul(h1));
                let out = e >> 12;
                *yi = out as i16;
                range |= out.wrapping_add(32768) as u32;
                w = _mm_insert_epi16(_mm_slli_si128(w, 2), h2, 0);
                h2 = h1;
                h1 = out;
            }
        }
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        let mut w = [
            mem[7], mem[6], mem[5], mem[4], mem[3], mem[2], mem[1], mem[0],
        ]
        .map(|v| v as i32);
        for (&xi, yi) in xa.iter().zip(y.iter_mut()) {
            let far = (0..8).fold(0i32, |s, k| s.wrapping_add(a[k + 3] as i32 * w[k]));
            let e = xi
                .wrapping_sub(far)
                .wrapping_sub(a2.wrapping_mul(h2))
                .wrapping_sub(a1.wrapping_mul(h1));
            let out = e >> 12;
            *yi = out as i16;
            range |= out.wrapping_add(32768) as u32;
            w.rotate_right(1);
            w[0] = h2 as i16 as i32;
            h2 = h1;
            h1 = out;
        }
    }
    // `out = -32768` may come from an `e` just below the range: declined.
    // (A fold rather than `contains`, which is not vectorised.)
    range < 1 << 16 && !y.iter().fold(false, |m, &v| m | (v == i16::MIN))
}

#[cfg(test)]
mod tests {
    use super::super::simd::syn_block;
    use super::*;
    use crate::codec::g729::basic_op::MAX_32;
    use crate::codec::g729::simd::{avx2_multiversion, BASELINE_ONLY};

    avx2_multiversion! {
        fn unsat_mv(a: &[i16; MP1], x: &[i16], y: &mut [i16], mem: &[i16; M]) -> bool
            = syn_block_unsat;
    }

    /// Whenever the unsaturated kernel vouches for its block it equals the
    /// exact kernel with a clear Overflow flag, on both clones, from gentle
    /// to saturating inputs; both outcomes are exercised.
    #[test]
    fn syn_block_unsat_matches_exact_block_when_it_vouches() {
        for baseline in [false, true] {
            let (mut vouched, mut declined, mut declined_clean) = (0, 0, 0);
            BASELINE_ONLY.with(|b| b.set(baseline));
            let mut seed = 7u32;
            let mut rnd = || {
                seed = seed.wrapping_mul(1103515245).wrapping_add(12345);
                ((seed >> 8) as i32 % 65536 - 32768) as i16
            };
            for round in 0..3000 {
                let ca = 1 + round % 9;
                let xs = round % 6;
                let mut a: [i16; MP1] = std::array::from_fn(|_| rnd() >> ca);
                a[0] = 4096;
                if round % 13 == 0 {
                    // A resonant filter: outputs grow to the rails.
                    a[1] = -8000;
                    a[2] = 4000;
                }
                let mut x: Vec<i16> = (0..40).map(|_| rnd() >> xs).collect();
                if round % 17 == 0 {
                    x.iter_mut()
                        .for_each(|v| *v = if *v < 0 { i16::MIN } else { i16::MAX });
                }
                let mem: [i16; M] = std::array::from_fn(|_| rnd() >> (xs + 1));
                let a_abs: i64 = a[1..].iter().map(|v| v.unsigned_abs() as i64).sum();
                let xmax = x.iter().map(|v| v.unsigned_abs() as i64).max().unwrap_or(0);
                if 2 * (xmax * 4096 + a_abs * 32768) > MAX_32 as i64 {
                    continue;
                }
                let mut want = [0i16; 40];
                let ov = syn_block(&a, &x, &mut want, &mem);
                let mut got = [0i16; 40];
                if unsat_mv(&a, &x, &mut got, &mem) {
                    assert!(!ov, "round {round}");
                    assert_eq!(got, want, "round {round}");
                    vouched += 1;
                } else {
                    declined += 1;
                    declined_clean += (!ov) as u32;
                }
            }
            BASELINE_ONLY.with(|b| b.set(false));
            assert!(vouched > 500 && declined > 50, "{vouched} {declined}");
            // Blocks that only touch -32768 without overflow are declined too.
            assert!(declined_clean < declined, "{declined_clean} {declined}");
        }
    }
}
