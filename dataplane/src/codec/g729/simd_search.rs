//! SIMD kernels of the encoder's excitation search (gain quantiser), in
//! SSE2 (part of the x86_64 baseline; the AVX2 clones of the callers
//! recompile them with VEX code) with a plain Rust version elsewhere.
#![allow(unsafe_code)]

use super::simd::lsp_stage2;

/// The gain quantiser's distances of 4 x 8 candidates at once:
/// `d[r][j] = Σ_k Mpy_32_16(hi[k], lo[k], n[k])` with
/// `n = [mult(gp, gp), gp, mult(gc, gc), gc, mult(gc, gp)]` of
/// `(gp, gc) = (gp[r][j], gc[r][j])`, the reference's `L_add` chain, or
/// `None` when a running sum of some candidate leaves 32 bits (where the
/// chain would saturate). The caller guarantees `hi[k] != -32768` and
/// `lo[k] >= 0` (as `L_Extract` gives): then no `L_mult` saturates, every
/// `Mpy_32_16` is `2 hi n + 2 mult(lo, n)` with `|hi n + mult(lo, n)| <
/// 2^30`, and only the sums need watching.
#[inline(always)]
pub(crate) fn gain_dist32(
    hi: &[i16; 5],
    lo: &[i16; 5],
    gp: &[[i16; 8]; 4],
    gc: &[[i16; 8]; 4],
) -> Option<[[i32; 8]; 4]> {
    debug_assert!(hi.iter().all(|&h| h != i16::MIN) && lo.iter().all(|&l| l >= 0));
    let mut out = [[0i32; 8]; 4];
    #[cfg(target_arch = "x86_64")]
    {
        if super::simd::avx2() {
            // SAFETY: the CPU has AVX2 (checked at run time by `avx2`).
            return unsafe { gain_dist32_avx2(hi, lo, gp, gc) };
        }
        use std::arch::x86_64::*;
        // SAFETY: SSE2 is always available on x86_64; every load and store
        // covers exactly one 8-element array of `gp`, `gc` or 4 elements of
        // a row of `out`. `pmullw`/`pmulhw` interleaved are the exact
        // 32-bit products.
        unsafe {
            // `mult`: bits 15..31 of the product; only (-32768)^2 gives a
            // high half of 0x4000, whose result 0x8000 saturates to 0x7fff.
            let mult = |a: __m128i, b: __m128i| {
                let (l, h) = (_mm_mullo_epi16(a, b), _mm_mulhi_epi16(a, b));
                let r = _mm_or_si128(_mm_slli_epi16(h, 1), _mm_srli_epi16(l, 15));
                _mm_xor_si128(r, _mm_cmpeq_epi16(h, _mm_set1_epi16(0x4000)))
            };
            let ld = |v: &[i16; 8]| _mm_loadu_si128(v.as_ptr() as *const __m128i);
            let vh: [__m128i; 5] = std::array::from_fn(|k| _mm_set1_epi16(hi[k]));
            let vl: [__m128i; 5] = std::array::from_fn(|k| _mm_set1_epi16(lo[k]));
            let mut ov = _mm_setzero_si128();
            for r in 0..4 {
                let (p, c) = (ld(&gp[r]), ld(&gc[r]));
                let n = [mult(p, p), p, mult(c, c), c, mult(c, p)];
                let (mut s0, mut s1) = (_mm_setzero_si128(), _mm_setzero_si128());
                for k in 0..5 {
                    let (pl, ph) = (_mm_mullo_epi16(n[k], vh[k]), _mm_mulhi_epi16(n[k], vh[k]));
                    let m = mult(vl[k], n[k]);
                    // hi n + mult(lo, n), then doubled (|.| < 2^30).
                    let t0 = _mm_add_epi32(
                        _mm_unpacklo_epi16(pl, ph),
                        _mm_srai_epi32(_mm_unpacklo_epi16(m, m), 16),
                    );
                    let t1 = _mm_add_epi32(
                        _mm_unpackhi_epi16(pl, ph),
                        _mm_srai_epi32(_mm_unpackhi_epi16(m, m), 16),
                    );
                    let (t0, t1) = (_mm_add_epi32(t0, t0), _mm_add_epi32(t1, t1));
                    // Signed overflow of s + t: both differ in sign from the sum.
                    let (n0, n1) = (_mm_add_epi32(s0, t0), _mm_add_epi32(s1, t1));
                    let o0 = _mm_and_si128(_mm_xor_si128(n0, s0), _mm_xor_si128(n0, t0));
                    let o1 = _mm_and_si128(_mm_xor_si128(n1, s1), _mm_xor_si128(n1, t1));
                    ov = _mm_or_si128(ov, _mm_or_si128(o0, o1));
                    (s0, s1) = (n0, n1);
                }
                _mm_storeu_si128(out[r].as_mut_ptr() as *mut __m128i, s0);
                _mm_storeu_si128(out[r].as_mut_ptr().add(4) as *mut __m128i, s1);
            }
            if _mm_movemask_ps(_mm_castsi128_ps(ov)) != 0 {
                return None;
            }
        }
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        let mult = |a: i16, b: i16| ((a as i32 * b as i32) >> 15).min(i16::MAX as i32) as i16;
        for r in 0..4 {
            for j in 0..8 {
                let (p, c) = (gp[r][j], gc[r][j]);
                let n = [mult(p, p), p, mult(c, c), c, mult(c, p)];
                let mut s = 0i64;
                for k in 0..5 {
                    s += 2 * (hi[k] as i64 * n[k] as i64) + 2 * mult(lo[k], n[k]) as i64;
                    if s != s as i32 as i64 {
                        return None;
                    }
                }
                out[r][j] = s as i32;
            }
        }
    }
    Some(out)
}

/// [`gain_dist32`] with two rows of candidates per AVX2 register: the same
/// operations on 16 lanes. The 128-bit halves of the 32-bit sums hold
/// elements 0..4 (`unpacklo`) and 4..8 (`unpackhi`) of each of the two
/// rows; a cross-half permute puts each row together for the store.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
fn gain_dist32_avx2(
    hi: &[i16; 5],
    lo: &[i16; 5],
    gp: &[[i16; 8]; 4],
    gc: &[[i16; 8]; 4],
) -> Option<[[i32; 8]; 4]> {
    use std::arch::x86_64::*;
    let mut out = [[0i32; 8]; 4];
    // SAFETY: AVX2 is enabled for this function; every load reads the two
    // adjacent 8-element rows `2q`, `2q + 1` of `gp` or `gc` (16 elements),
    // every store writes one 8-element row of `out`.
    unsafe {
        let mult = |a: __m256i, b: __m256i| {
            let (l, h) = (_mm256_mullo_epi16(a, b), _mm256_mulhi_epi16(a, b));
            let r = _mm256_or_si256(_mm256_slli_epi16(h, 1), _mm256_srli_epi16(l, 15));
            _mm256_xor_si256(r, _mm256_cmpeq_epi16(h, _mm256_set1_epi16(0x4000)))
        };
        let ld =
            |v: &[[i16; 8]; 4], q: usize| _mm256_loadu_si256(v[2 * q].as_ptr() as *const __m256i);
        let vh: [__m256i; 5] = std::array::from_fn(|k| _mm256_set1_epi16(hi[k]));
        let vl: [__m256i; 5] = std::array::from_fn(|k| _mm256_set1_epi16(lo[k]));
        let mut ov = _mm256_setzero_si256();
        for q in 0..2 {
            let (p, c) = (ld(gp, q), ld(gc, q));
            let n = [mult(p, p), p, mult(c, c), c, mult(c, p)];
            let (mut s0, mut s1) = (_mm256_setzero_si256(), _mm256_setzero_si256());
            for k in 0..5 {
                let (pl, ph) = (
                    _mm256_mullo_epi16(n[k], vh[k]),
                    _mm256_mulhi_epi16(n[k], vh[k]),
                );
                let m = mult(vl[k], n[k]);
                let t0 = _mm256_add_epi32(
                    _mm256_unpacklo_epi16(pl, ph),
                    _mm256_srai_epi32(_mm256_unpacklo_epi16(m, m), 16),
                );
                let t1 = _mm256_add_epi32(
                    _mm256_unpackhi_epi16(pl, ph),
                    _mm256_srai_epi32(_mm256_unpackhi_epi16(m, m), 16),
                );
                let (t0, t1) = (_mm256_add_epi32(t0, t0), _mm256_add_epi32(t1, t1));
                let (n0, n1) = (_mm256_add_epi32(s0, t0), _mm256_add_epi32(s1, t1));
                let o0 = _mm256_and_si256(_mm256_xor_si256(n0, s0), _mm256_xor_si256(n0, t0));
                let o1 = _mm256_and_si256(_mm256_xor_si256(n1, s1), _mm256_xor_si256(n1, t1));
                ov = _mm256_or_si256(ov, _mm256_or_si256(o0, o1));
                (s0, s1) = (n0, n1);
            }
            let row_a = _mm256_permute2x128_si256(s0, s1, 0x20);
            let row_b = _mm256_permute2x128_si256(s0, s1, 0x31);
            _mm256_storeu_si256(out[2 * q].as_mut_ptr() as *mut __m256i, row_a);
            _mm256_storeu_si256(out[2 * q + 1].as_mut_ptr() as *mut __m256i, row_b);
        }
        if _mm256_movemask_ps(_mm256_castsi256_ps(ov)) != 0 {
            return None;
        }
    }
    Some(out)
}

/// Both second-stage LSP codebook searches of one first-stage candidate:
/// [`lsp_stage2`] of the lower half (`b[0..5]`, `w[0..5]`, `cols[0]`) and of
/// the upper half (`b[5..10]`, `w[5..10]`, `cols[1]`), the index of each
/// first smallest capped distance. The two searches are independent (the
/// reference runs them on the same target and weights), so in AVX2 each
/// register holds eight entries of the lower half in its low 128 bits and
/// the same eight of the upper half in its high 128 bits.
#[inline(always)]
pub(crate) fn lsp_stage2_pair(
    b: &[i16; 10],
    w: &[i16; 10],
    cols: &[[[i16; 32]; 5]; 2],
) -> [usize; 2] {
    debug_assert!(w.iter().all(|&v| v >= 0));
    #[cfg(target_arch = "x86_64")]
    {
        if super::simd::avx2() {
            // SAFETY: the CPU has AVX2 (checked at run time by `avx2`).
            return unsafe { lsp_stage2_pair_avx2(b, w, cols) };
        }
    }
    let half = |h: usize| {
        let bh: [i16; 5] = std::array::from_fn(|j| b[5 * h + j]);
        let wh: [i16; 5] = std::array::from_fn(|j| w[5 * h + j]);
        lsp_stage2(&bh, &wh, &cols[h])
    };
    [half(0), half(1)]
}

/// [`lsp_stage2_pair`] with the steps of [`lsp_stage2`] on both 128-bit
/// halves of each register (every AVX2 operation used works within the
/// halves). `mult(w, t)` with `0 <= w` is `(w t) >> 15` without
/// saturation; `pmulhrsw` gives `(w t + 2^14) >> 15` (no saturation either
/// with `0 <= w`), which is one more exactly when bit 14 of the product
/// (of its low word) is set. Every term is in
/// `[0, 2^30)`, so a capped sum plus a term stays below 2^31 and the cap is
/// a signed minimum. Each half's four lane winners are then compared by
/// (key, index).
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
fn lsp_stage2_pair_avx2(b: &[i16; 10], w: &[i16; 10], cols: &[[[i16; 32]; 5]; 2]) -> [usize; 2] {
    use std::arch::x86_64::*;
    // SAFETY: AVX2 is enabled for this function; each two-half load reads
    // the 8 elements `8g..8g + 8` (g < 4) of column `j` of both halves'
    // 32-element columns. `psubsw` is `sub`; `pmullw`/`pmulhw` interleaved
    // are exact 32-bit products.
    unsafe {
        let cap = _mm256_set1_epi32(1 << 30);
        let pair = |lo: i16, hi: i16| _mm256_setr_m128i(_mm_set1_epi16(lo), _mm_set1_epi16(hi));
        let bv: [__m256i; 5] = std::array::from_fn(|j| pair(b[j], b[5 + j]));
        let wv: [__m256i; 5] = std::array::from_fn(|j| pair(w[j], w[5 + j]));
        let mut best = _mm256_set1_epi32(i32::MAX);
        let mut best_i = _mm256_setzero_si256();
        let mut idx = _mm256_setr_epi32(0, 1, 2, 3, 0, 1, 2, 3);
        let four = _mm256_set1_epi32(4);
        for g in 0..4 {
            let term = |j: usize| {
                let c = _mm256_loadu2_m128i(
                    cols[1][j].as_ptr().add(8 * g) as *const __m128i,
                    cols[0][j].as_ptr().add(8 * g) as *const __m128i,
                );
                let t = _mm256_subs_epi16(bv[j], c);
                // mult(w, t): the rounded product less its rounding bit.
                let r = _mm256_mulhrs_epi16(wv[j], t);
                let lo = _mm256_mullo_epi16(wv[j], t);
                let t2 = _mm256_sub_epi16(r, _mm256_srli_epi16(_mm256_slli_epi16(lo, 1), 15));
                let (ql, qh) = (_mm256_mullo_epi16(t2, t), _mm256_mulhi_epi16(t2, t));
                (_mm256_unpacklo_epi16(ql, qh), _mm256_unpackhi_epi16(ql, qh))
            };
            let (mut a0, mut a1) = term(0);
            for j in 1..5 {
                let (t0, t1) = term(j);
                a0 = _mm256_min_epi32(_mm256_add_epi32(a0, t0), cap);
                a1 = _mm256_min_epi32(_mm256_add_epi32(a1, t1), cap);
            }
            for key in [a0, a1] {
                // Strictly smaller only: the earlier entry wins ties.
                let lt = _mm256_cmpgt_epi32(best, key);
                best = _mm256_blendv_epi8(best, key, lt);
                best_i = _mm256_blendv_epi8(best_i, idx, lt);
                idx = _mm256_add_epi32(idx, four);
            }
        }
        // Tournament within each half: a lane takes the other's winner
        // when that has a smaller key, or an equal key and a smaller index.
        let mut round = |other: fn(__m256i) -> __m256i| {
            let (k2, i2) = (other(best), other(best_i));
            let take = _mm256_or_si256(
                _mm256_cmpgt_epi32(best, k2),
                _mm256_and_si256(_mm256_cmpeq_epi32(best, k2), _mm256_cmpgt_epi32(best_i, i2)),
            );
            best = _mm256_blendv_epi8(best, k2, take);
            best_i = _mm256_blendv_epi8(best_i, i2, take);
        };
        round(|v| _mm256_shuffle_epi32(v, 0b01_00_11_10));
        round(|v| _mm256_shuffle_epi32(v, 0b10_11_00_01));
        let lo = _mm256_castsi256_si128(best_i);
        let hi = _mm256_extracti128_si256(best_i, 1);
        [
            _mm_cvtsi128_si32(lo) as usize,
            _mm_cvtsi128_si32(hi) as usize,
        ]
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::codec::g729::basic_op::*;
    use crate::codec::g729::simd::BASELINE_ONLY;
    use crate::codec::g729::util::random;

    /// The reference's chain: `Mpy_32_16` terms summed by `L_add`, with a
    /// flag for any sum that saturated.
    fn chain(hi: &[i16; 5], lo: &[i16; 5], gp: i16, gc: i16) -> (i32, bool) {
        let n = [mult(gp, gp), gp, mult(gc, gc), gc, mult(gc, gp)];
        let mut exact = 0i64;
        let mut sat = false;
        let mut l = mpy_32_16(hi[0], lo[0], n[0]);
        exact += l as i64;
        for k in 1..5 {
            let t = mpy_32_16(hi[k], lo[k], n[k]);
            exact += t as i64;
            sat |= exact != exact as i32 as i64;
            l = l_add(l, t);
        }
        (l, sat)
    }

    #[test]
    fn gain_dist32_is_the_saturating_chain_or_declines() {
        let mut seed = 777i16;
        let (mut fast, mut declined) = (0, 0);
        for round in 0..3000 {
            let sh = (round % 6) as i16;
            let mut hi: [i16; 5] = std::array::from_fn(|_| shr(random(&mut seed), sh));
            let lo: [i16; 5] = std::array::from_fn(|_| random(&mut seed) & 0x7fff);
            for h in hi.iter_mut() {
                if *h == i16::MIN {
                    *h = -32767;
                }
            }
            if round % 7 == 0 {
                hi[round / 7 % 5] = if round % 2 == 0 { 32767 } else { -32767 };
            }
            let mut gp: [[i16; 8]; 4] = std::array::from_fn(|_| {
                std::array::from_fn(|_| shr(random(&mut seed), (round / 6 % 4) as i16))
            });
            let gc: [[i16; 8]; 4] =
                std::array::from_fn(|_| std::array::from_fn(|_| random(&mut seed)));
            if round % 11 == 0 {
                gp[1][3] = i16::MIN;
                gp[2][5] = i16::MAX;
            }
            let want: Vec<(i32, bool)> = (0..32)
                .map(|i| chain(&hi, &lo, gp[i / 8][i % 8], gc[i / 8][i % 8]))
                .collect();
            // The AVX2 kernel (where the CPU has it) and the SSE2 one.
            for baseline in [false, true] {
                BASELINE_ONLY.with(|b| b.set(baseline));
                let got = gain_dist32(&hi, &lo, &gp, &gc);
                BASELINE_ONLY.with(|b| b.set(false));
                match got {
                    Some(d) => {
                        fast += 1;
                        for i in 0..32 {
                            assert!(!want[i].1, "round {round} lane {i}");
                            assert_eq!(d[i / 8][i % 8], want[i].0, "round {round} lane {i}");
                        }
                    }
                    None => {
                        declined += 1;
                        assert!(want.iter().any(|w| w.1), "round {round}");
                    }
                }
            }
        }
        assert!(
            fast > 300 && declined > 300,
            "fast {fast} declined {declined}"
        );
    }

    #[test]
    fn lsp_stage2_pair_is_the_reference_search_on_both_clones() {
        let mut seed = 4321i16;
        let (mut capped, mut ties) = (0, 0);
        for round in 0..3000 {
            // Small ranges give ties, full ranges saturated distances.
            let sh = [12, 8, 0][round % 3];
            let mut cols = [[[0i16; 32]; 5]; 2];
            for v in cols.iter_mut().flatten().flatten() {
                *v = shr(random(&mut seed), sh);
            }
            let b: [i16; 10] = std::array::from_fn(|_| shr(random(&mut seed), sh));
            let mut w: [i16; 10] = std::array::from_fn(|_| {
                let v = random(&mut seed);
                if sh == 0 {
                    abs_s(v)
                } else {
                    shr(v, 1).max(0)
                }
            });
            if round % 7 == 0 {
                let h = round / 7 % 2;
                w[5 * h] = i16::MAX;
                cols[h][0][round % 32] = i16::MIN;
            }
            if round % 11 == 0 {
                // Every entry of one half equal: the first one wins.
                let h = round / 11 % 2;
                for col in cols[h].iter_mut() {
                    let v = col[0];
                    col.fill(v);
                }
            }
            // The reference: the L_mac distance of each entry from 0,
            // the first `d < dmin` from MAX_32.
            let want: [usize; 2] = std::array::from_fn(|h| {
                let (mut index, mut dmin) = (0usize, i32::MAX);
                for i in 0..32 {
                    let mut d = 0i32;
                    for j in 0..5 {
                        let t = sub(b[5 * h + j], cols[h][j][i]);
                        d = l_mac(d, mult(w[5 * h + j], t), t);
                    }
                    capped += u32::from(d == i32::MAX);
                    ties += u32::from(d == dmin);
                    if l_sub(d, dmin) < 0 {
                        dmin = d;
                        index = i;
                    }
                }
                index
            });
            for baseline in [false, true] {
                BASELINE_ONLY.with(|c| c.set(baseline));
                let got = lsp_stage2_pair(&b, &w, &cols);
                BASELINE_ONLY.with(|c| c.set(false));
                assert_eq!(got, want, "round {round} baseline {baseline}");
            }
        }
        assert!(capped > 100 && ties > 100, "capped {capped} ties {ties}");
        // Every distance saturated: the reference keeps entry 0.
        let cols = [[[i16::MIN; 32]; 5]; 2];
        for baseline in [false, true] {
            BASELINE_ONLY.with(|c| c.set(baseline));
            let got = lsp_stage2_pair(&[i16::MAX; 10], &[i16::MAX; 10], &cols);
            BASELINE_ONLY.with(|c| c.set(false));
            assert_eq!(got, [0, 0]);
        }
    }
}
