//! SIMD kernels of the algebraic (ACELP) codebook search: whole blocks of
//! candidate pulse pairs evaluated and compared at once in AVX2 where the
//! CPU has it, else by the SSE2 kernels of [`super::simd`] (plain Rust off
//! x86_64), with the same results.
#![allow(unsafe_code)]

use super::simd::{first_best_ratio, max_abs8, mult_sign8, search8_w};

/// The first best of `R` rows by 8 candidates of the codebook search,
/// scanned row by row: candidate `(r, k)` has `sq2 = mult(ps2, ps2)` with
/// `ps2 = add(ps1[r], dn[k])`, and `a16 = round(alp1[r] + 2^RS rows[r][k]
/// + 2^CS col[k])`, one of `RS`, `CS` being 15 and the other in `1..=15`.
/// The caller proves that no partial sum of `a16` (the rounding included)
/// leaves 32 bits, so the reference's `L_mac` chain is the plain sum.
///
/// Returns `(r, k, sq2, a16)` of the first largest `sq2 / a16` (the end of
/// the reference's scan from `(sq, alp) = (-1, 1)` with `alp sq2 > sq a16`
/// when every `a16 > 0`), or `None` when some `a16 <= 0`, where the caller
/// runs the reference's scan.
#[inline(always)]
pub(crate) fn first_best_rows<const R: usize, const RS: i32, const CS: i32>(
    ps1: &[i16; R],
    alp1: &[i32; R],
    rows: &[&[i16; 8]; R],
    dn: &[i16; 8],
    col: &[i16; 8],
) -> Option<(usize, usize, i16, i16)> {
    const { assert!(R.is_power_of_two() && R <= 8) };
    const { assert!((RS == 15 && 1 <= CS && CS <= 15) || (CS == 15 && 1 <= RS && RS <= 15)) };
    #[cfg(target_arch = "x86_64")]
    {
        if super::simd::avx2() {
            // SAFETY: the CPU has AVX2 (checked at run time by `avx2`).
            return unsafe { first_best_rows_avx2::<R, RS, CS>(ps1, alp1, rows, dn, col) };
        }
    }
    first_best_rows_sse::<R, RS, CS>(ps1, alp1, rows, dn, col)
}

/// [`first_best_rows`] by the 8-lane kernels [`search8_w`] and
/// [`first_best_ratio`].
#[inline(always)]
fn first_best_rows_sse<const R: usize, const RS: i32, const CS: i32>(
    ps1: &[i16; R],
    alp1: &[i32; R],
    rows: &[&[i16; 8]; R],
    dn: &[i16; 8],
    col: &[i16; 8],
) -> Option<(usize, usize, i16, i16)> {
    let mut sq2 = [[0i16; 8]; R];
    let mut a16 = [[0i16; 8]; R];
    for r in 0..R {
        // `search8_w` weighs its `tmp` argument by 2^15.
        if CS == 15 {
            search8_w(
                ps1[r],
                alp1[r],
                dn,
                rows[r],
                RS as u32,
                col,
                &mut sq2[r],
                &mut a16[r],
            );
        } else {
            search8_w(
                ps1[r],
                alp1[r],
                dn,
                col,
                CS as u32,
                rows[r],
                &mut sq2[r],
                &mut a16[r],
            );
        }
    }
    if !a16.iter().flatten().all(|&a| a > 0) {
        return None;
    }
    let (r, k) = first_best_ratio(&sq2, &a16);
    Some((r, k, sq2[r][k], a16[r][k]))
}

/// [`first_best_rows`] with one 8-lane AVX2 register of 32-bit lanes per
/// row. Each row's candidates are `s = sq2 + 2^16 r` (the row in the high
/// half) and `a = a16` (high half zero when `a16 > 0`), so `pmaddwd(s, a')`
/// is the exact product `sq2 a16'` (both factors at most 32767) whatever
/// the row. The rows are merged by a tree (an earlier block is replaced
/// lane-wise only where the later one is strictly better: the first best
/// of an ordered scan is an associative merge), then the 8 lane winners by
/// a tree ordered by ratio, then row, then lane.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
#[inline]
fn first_best_rows_avx2<const R: usize, const RS: i32, const CS: i32>(
    ps1: &[i16; R],
    alp1: &[i32; R],
    rows: &[&[i16; 8]; R],
    dn: &[i16; 8],
    col: &[i16; 8],
) -> Option<(usize, usize, i16, i16)> {
    use std::arch::x86_64::*;
    let ld = |v: &[i16; 8]| {
        // SAFETY: the load reads exactly one 8-element array.
        unsafe { _mm_loadu_si128(v.as_ptr() as *const __m128i) }
    };
    let d = ld(dn);
    // 2^CS col[k] + 0x8000 (the rounding), shared by the rows.
    let t = _mm256_add_epi32(
        _mm256_slli_epi32::<CS>(_mm256_cvtepi16_epi32(ld(col))),
        _mm256_set1_epi32(0x8000),
    );
    let mut low = _mm256_set1_epi32(i32::MAX);
    let mut cand = [(_mm256_setzero_si256(), _mm256_setzero_si256()); R];
    for (r, c) in cand.iter_mut().enumerate() {
        // ps2 = add(ps1, dn), zero-extended: `pmaddwd` squares it exactly;
        // only (-32768)^2 >> 15 = 32768 exceeds 16 bits, and `mult`
        // saturates it to 32767.
        let ps2 = _mm256_cvtepu16_epi32(_mm_adds_epi16(_mm_set1_epi16(ps1[r]), d));
        let sq = _mm256_min_epi32(
            _mm256_srai_epi32::<15>(_mm256_madd_epi16(ps2, ps2)),
            _mm256_set1_epi32(0x7fff),
        );
        let s = _mm256_or_si256(sq, _mm256_set1_epi32((r as i32) << 16));
        // alp1 + 2^RS row + 2^CS col + 0x8000, exact by the caller's bound.
        let alp = _mm256_add_epi32(
            _mm256_add_epi32(_mm256_set1_epi32(alp1[r]), t),
            _mm256_slli_epi32::<RS>(_mm256_cvtepi16_epi32(ld(rows[r]))),
        );
        low = _mm256_min_epi32(low, alp);
        *c = (s, _mm256_srai_epi32::<16>(alp));
    }
    // a16 > 0 everywhere iff every rounded sum is at least 2^16.
    if _mm256_movemask_epi8(_mm256_cmpgt_epi32(_mm256_set1_epi32(0x10000), low)) != 0 {
        return None;
    }
    let better = |(s, a): (__m256i, __m256i), (so, ao): (__m256i, __m256i)| {
        _mm256_cmpgt_epi32(_mm256_madd_epi16(so, a), _mm256_madd_epi16(s, ao))
    };
    let sel = |m: __m256i, o: __m256i, v: __m256i| _mm256_blendv_epi8(v, o, m);
    let mut step = 1;
    while step < R {
        let mut i = 0;
        while i + step < R {
            let (w, o) = (cand[i], cand[i + step]);
            let m = better(w, o);
            cand[i] = (sel(m, o.0, w.0), sel(m, o.1, w.1));
            i += 2 * step;
        }
        step *= 2;
    }
    let (s, a) = cand[0];
    // key = 8 row + lane: the scan's order among equal ratios.
    let key = _mm256_or_si256(
        _mm256_slli_epi32::<3>(_mm256_srli_epi32::<16>(s)),
        _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7),
    );
    // Each lane takes its partner's entry where that comes first (larger
    // ratio, else smaller key). Keys differ, so the order is total and
    // partners agree; after three rounds every lane holds the winner.
    let pick = |w: (__m256i, __m256i, __m256i), o: (__m256i, __m256i, __m256i)| {
        let (x, y) = (_mm256_madd_epi16(o.0, w.1), _mm256_madd_epi16(w.0, o.1));
        let m = _mm256_or_si256(
            _mm256_cmpgt_epi32(x, y),
            _mm256_and_si256(_mm256_cmpeq_epi32(x, y), _mm256_cmpgt_epi32(w.2, o.2)),
        );
        (sel(m, o.0, w.0), sel(m, o.1, w.1), sel(m, o.2, w.2))
    };
    let mut w = (s, a, key);
    let halves = |v: __m256i| _mm256_permute4x64_epi64::<0b01_00_11_10>(v);
    w = pick(w, (halves(w.0), halves(w.1), halves(w.2)));
    let pairs = |v: __m256i| _mm256_shuffle_epi32::<0b01_00_11_10>(v);
    w = pick(w, (pairs(w.0), pairs(w.1), pairs(w.2)));
    let ones = |v: __m256i| _mm256_shuffle_epi32::<0b10_11_00_01>(v);
    w = pick(w, (ones(w.0), ones(w.1), ones(w.2)));
    let k = _mm256_cvtsi256_si32(w.2) as usize;
    let sq2 = _mm256_cvtsi256_si32(w.0) as i16;
    let a16 = _mm256_cvtsi256_si32(w.1) as i16;
    Some((k >> 3, k & 7, sq2, a16))
}

/// The track pairs `(ti, tj)` of the codebook search's correlation blocks,
/// in their order in `rr` (after the diagonal).
pub(crate) const BLOCK_TRACKS: [(usize, usize); 9] = [
    (0, 1),
    (0, 2),
    (0, 3),
    (0, 4),
    (1, 2),
    (1, 3),
    (1, 4),
    (2, 3),
    (2, 4),
];

/// The signs of the codebook search applied to its correlation blocks:
/// `blocks[b][8 ki + kj] = mult(v, MAX_16 ^ m[ti][ki] ^ m[tj][kj])` for
/// the block `b` of tracks `(ti, tj)` ([`BLOCK_TRACKS`]) and the sign masks
/// `m[t][k]` (0 or -1, -1 where the correlation `dn` at position `t + 5 k`
/// is negative): the fractional multiply by `MAX_16` where the two signs
/// agree, by `MIN_16` (the saturating negation) where they differ; and
/// `cols[b]` the transposed result (`cols[b][8 kj + ki]`), so that columns
/// read as rows. Returns the largest `|v|` of the results.
#[inline(always)]
pub(crate) fn sign_blocks(
    blocks: &mut [[i16; 64]; 9],
    cols: &mut [[i16; 64]; 9],
    m: &[[i16; 8]; 5],
) -> u16 {
    debug_assert!(m.iter().flatten().all(|&v| v == 0 || v == -1));
    #[cfg(target_arch = "x86_64")]
    {
        if super::simd::avx2() {
            // SAFETY: the CPU has AVX2 (checked at run time by `avx2`).
            return unsafe { sign_blocks_avx2(blocks, cols, m) };
        }
    }
    let mut top = 0u16;
    for (block, &(ti, tj)) in blocks.iter_mut().zip(BLOCK_TRACKS.iter()) {
        for (row, &mi) in block.as_chunks_mut::<8>().0.iter_mut().zip(m[ti].iter()) {
            let p: [i16; 8] = std::array::from_fn(|k| mi ^ m[tj][k]);
            mult_sign8(row, &p);
            top = top.max(max_abs8(row));
        }
    }
    for (col, block) in cols.iter_mut().zip(blocks.iter()) {
        for (i, v) in col.iter_mut().enumerate() {
            *v = block[8 * (i % 8) + i / 8];
        }
    }
    top
}

/// [`sign_blocks`] two rows at a time. With the signs as `±1` (`m | 1`),
/// `psignw` forms the product of a row's sign with each column's, and
/// `v -> mult(v, MAX_16)` or `mult(v, MIN_16)` is, for `g = max(v,
/// -32767)`, `psignw(g, p) - (min(g, p) > 0)`: `-g` (the saturating
/// negation) for `p = -1`; for `p = 1`, `g - 1` when `g > 0`, else `g`
/// (`(v 32767) >> 15` is `v - 1` for `v > 0` and `v` for `-32768 < v <= 0`;
/// -32767 for -32768).
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
#[inline]
fn sign_blocks_avx2(
    blocks: &mut [[i16; 64]; 9],
    cols: &mut [[i16; 64]; 9],
    m: &[[i16; 8]; 5],
) -> u16 {
    use std::arch::x86_64::*;
    let one = _mm256_set1_epi16(1);
    // The signs of track t, ±1, in both halves.
    let sv: [__m256i; 5] = std::array::from_fn(|t| {
        // SAFETY: the load reads exactly one 8-element array.
        let v = unsafe { _mm_loadu_si128(m[t].as_ptr() as *const __m128i) };
        _mm256_or_si256(_mm256_broadcastsi128_si256(v), one)
    });
    // Rows 2p (low half) and 2p + 1 (high half): `pshufb` controls that
    // repeat element 2p, resp. 2p + 1, of each half.
    let ctl: [__m256i; 4] = std::array::from_fn(|p| {
        // Byte pairs (4p, 4p + 1) and (4p + 2, 4p + 3), little-endian.
        let b = 4 * p as i16;
        let (lo, hi) = (((b + 1) << 8) | b, ((b + 3) << 8) | (b + 2));
        _mm256_setr_epi16(
            lo, lo, lo, lo, lo, lo, lo, lo, hi, hi, hi, hi, hi, hi, hi, hi,
        )
    });
    let floor = _mm256_set1_epi16(-32767);
    let zero = _mm256_setzero_si256();
    // The transposition's last step: words (r0 r2 r4 r6 r1 r3 r5 r7) of
    // each half back in order.
    let order = _mm256_setr_epi8(
        0, 1, 8, 9, 2, 3, 10, 11, 4, 5, 12, 13, 6, 7, 14, 15, 0, 1, 8, 9, 2, 3, 10, 11, 4, 5, 12,
        13, 6, 7, 14, 15,
    );
    let mut top = zero;
    for ((block, col), &(ti, tj)) in blocks
        .iter_mut()
        .zip(cols.iter_mut())
        .zip(BLOCK_TRACKS.iter())
    {
        let mut rows = [zero; 4];
        for ((pair, c), out) in block
            .as_chunks_mut::<16>()
            .0
            .iter_mut()
            .zip(ctl.iter())
            .zip(rows.iter_mut())
        {
            let p = _mm256_sign_epi16(sv[tj], _mm256_shuffle_epi8(sv[ti], *c));
            // SAFETY: the load and the store cover exactly one 16-element
            // array (two rows of the block).
            let v = unsafe { _mm256_loadu_si256(pair.as_ptr() as *const __m256i) };
            let g = _mm256_max_epi16(v, floor);
            let r = _mm256_add_epi16(
                _mm256_sign_epi16(g, p),
                _mm256_cmpgt_epi16(_mm256_min_epi16(g, p), zero),
            );
            // SAFETY: as the load above.
            unsafe { _mm256_storeu_si256(pair.as_mut_ptr() as *mut __m256i, r) };
            top = _mm256_max_epu16(top, _mm256_abs_epi16(r));
            *out = r;
        }
        // Transposed: rows[p] = (row 2p | row 2p + 1). Words interleaved,
        // then pairs: e[q] holds columns 2q (low half) and 2q + 1 (high
        // half) as qwords (rows 0 2 4 6 of 2q, of 2q + 1, rows 1 3 5 7 of
        // 2q, of 2q + 1), which `vpermq` and `order` put in place.
        let [a, b, c, d] = rows;
        let (p0, p1) = (_mm256_unpacklo_epi16(a, b), _mm256_unpackhi_epi16(a, b));
        let (q0, q1) = (_mm256_unpacklo_epi16(c, d), _mm256_unpackhi_epi16(c, d));
        let e = [
            _mm256_unpacklo_epi32(p0, q0),
            _mm256_unpackhi_epi32(p0, q0),
            _mm256_unpacklo_epi32(p1, q1),
            _mm256_unpackhi_epi32(p1, q1),
        ];
        for (out, e) in col.as_chunks_mut::<16>().0.iter_mut().zip(e) {
            let t = _mm256_shuffle_epi8(_mm256_permute4x64_epi64::<0b11_01_10_00>(e), order);
            // SAFETY: the store covers exactly one 16-element array (two
            // columns of the block).
            unsafe { _mm256_storeu_si256(out.as_mut_ptr() as *mut __m256i, t) };
        }
    }
    let t = _mm_max_epu16(
        _mm256_castsi256_si128(top),
        _mm256_extracti128_si256::<1>(top),
    );
    // The largest of 8 unsigned lanes: `phminposuw` of their complements.
    let t = _mm_minpos_epu16(_mm_xor_si128(t, _mm_set1_epi16(-1)));
    !(_mm_cvtsi128_si32(t) as u16)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::codec::g729::basic_op::*;
    use crate::codec::g729::simd::BASELINE_ONLY;
    use crate::codec::g729::util::random;

    /// The reference's scan with its saturating operators.
    fn scan<const R: usize>(
        ps1: &[i16; R],
        alp1: &[i32; R],
        rows: &[[i16; 8]; R],
        dn: &[i16; 8],
        col: &[i16; 8],
        rs: i16,
        cs: i16,
    ) -> Option<(usize, usize, i16, i16)> {
        let (mut sq, mut alp, mut found) = (-1i16, 1i16, None);
        for r in 0..R {
            for k in 0..8 {
                let ps2 = add(ps1[r], dn[k]);
                let a = l_mac(
                    l_mac(alp1[r], rows[r][k], 1 << (rs - 1)),
                    col[k],
                    1 << (cs - 1),
                );
                let (sq2, alp_16) = (mult(ps2, ps2), round(a));
                if l_msu(l_mult(alp, sq2), sq, alp_16) > 0 {
                    (sq, alp, found) = (sq2, alp_16, Some((r, k, sq2, alp_16)));
                }
            }
        }
        found
    }

    /// Random rows in the kernel's domain (no partial sum leaves 32 bits),
    /// with ties, zeros, extremes and non-positive energies.
    fn check<const R: usize, const RS: i32, const CS: i32>(seed: &mut i16, round: usize) -> bool {
        let sh = (round % 5) as i16;
        let mut rows: [[i16; 8]; R] =
            std::array::from_fn(|_| std::array::from_fn(|_| shr(random(seed), sh)));
        let mut col: [i16; 8] = std::array::from_fn(|_| shr(random(seed), sh));
        let mut dn: [i16; 8] = std::array::from_fn(|_| random(seed).saturating_abs());
        let mut ps1: [i16; R] = std::array::from_fn(|_| random(seed));
        if round % 3 == 0 {
            ps1 = ps1.map(|p| p.saturating_abs());
        }
        match round % 7 {
            // Ties: equal candidates across rows and lanes.
            0 => {
                let v = rows[0][2];
                for row in rows.iter_mut() {
                    row[2] = v;
                    row[5] = v;
                }
                col[5] = col[2];
                dn[5] = dn[2];
                ps1 = [ps1[0]; R];
            }
            // All candidates equal.
            1 => {
                rows = [[rows[0][0]; 8]; R];
                col = [col[0]; 8];
                dn = [dn[0]; 8];
                ps1 = [ps1[0]; R];
            }
            // Extremes: -32768 sums (saturating add and square).
            2 => {
                dn[3] = 0;
                ps1[0] = i16::MIN;
                dn[4] = i16::MAX;
                ps1[R - 1] = i16::MAX;
            }
            _ => {}
        }
        // Energies as large as the bound allows (or small, or negative).
        let (mr, mc) = (
            rows.iter()
                .flatten()
                .map(|v| v.unsigned_abs() as i64)
                .max()
                .unwrap_or(0),
            col.iter()
                .map(|v| v.unsigned_abs() as i64)
                .max()
                .unwrap_or(0),
        );
        let room = i32::MAX as i64 - (mr << RS) - (mc << CS) - 0x8000;
        let alp1: [i32; R] = std::array::from_fn(|_| {
            let x = random(seed) as i64;
            let v = match round % 4 {
                0 => room - x.abs(),
                1 => -room + x.abs(),
                2 => x << 10,
                _ => (room >> 1) + (x << 12),
            };
            v.clamp(-room, room) as i32
        });
        let want = scan(&ps1, &alp1, &rows, &dn, &col, RS as i16, CS as i16);
        let refs: [&[i16; 8]; R] = std::array::from_fn(|r| &rows[r]);
        let got = first_best_rows::<R, RS, CS>(&ps1, &alp1, &refs, &dn, &col);
        // Positive energies everywhere: the result is the scan's.
        let positive = (0..R).all(|r| {
            (0..8).all(|k| {
                let a = alp1[r] as i64 + ((rows[r][k] as i64) << RS) + ((col[k] as i64) << CS);
                (a + 0x8000) >> 16 > 0
            })
        });
        if positive {
            assert_eq!(got, want, "round {round}");
        } else {
            assert_eq!(got, None, "round {round}");
        }
        positive
    }

    #[test]
    fn first_best_rows_is_the_reference_scan_on_both_paths() {
        for baseline in [false, true] {
            BASELINE_ONLY.with(|b| b.set(baseline));
            let mut seed = 1234i16;
            let (mut found, mut declined) = (0, 0);
            for round in 0..3000 {
                for ok in [
                    check::<8, 13, 15>(&mut seed, round),
                    check::<2, 15, 14>(&mut seed, round),
                    check::<4, 15, 1>(&mut seed, round),
                ] {
                    if ok {
                        found += 1;
                    } else {
                        declined += 1;
                    }
                }
            }
            assert!(
                found > 3000 && declined > 1000,
                "found {found} declined {declined}"
            );
        }
        BASELINE_ONLY.with(|b| b.set(false));
    }

    #[test]
    fn sign_blocks_is_the_fractional_multiply_on_both_paths() {
        for baseline in [false, true] {
            BASELINE_ONLY.with(|b| b.set(baseline));
            let mut seed = 99i16;
            for round in 0..300 {
                let pick = |seed: &mut i16| match random(seed) & 7 {
                    0 => i16::MIN,
                    1 => i16::MAX,
                    2 => 0,
                    3 => 1,
                    4 => -1,
                    5 => -32767,
                    _ => shr(random(seed), (round % 9) as i16),
                };
                let mut blocks = [[0i16; 64]; 9];
                for v in blocks.iter_mut().flatten() {
                    *v = pick(&mut seed);
                }
                if round % 10 == 0 {
                    blocks = [[[i16::MIN, 5][round / 10 % 2]; 64]; 9];
                }
                let m: [[i16; 8]; 5] =
                    std::array::from_fn(|_| std::array::from_fn(|_| -(random(&mut seed) & 1)));
                let mut want = blocks;
                for (block, &(ti, tj)) in want.iter_mut().zip(BLOCK_TRACKS.iter()) {
                    for (i, v) in block.iter_mut().enumerate() {
                        *v = mult(*v, MAX_16 ^ m[ti][i / 8] ^ m[tj][i % 8]);
                    }
                }
                let top = want.iter().flatten().map(|v| v.unsigned_abs()).max();
                let mut cols = [[0i16; 64]; 9];
                let got = sign_blocks(&mut blocks, &mut cols, &m);
                assert_eq!(blocks, want, "round {round}");
                for (col, block) in cols.iter().zip(want.iter()) {
                    for (i, &v) in col.iter().enumerate() {
                        assert_eq!(v, block[8 * (i % 8) + i / 8], "round {round} index {i}");
                    }
                }
                assert_eq!(Some(got), top, "round {round}");
            }
        }
        BASELINE_ONLY.with(|b| b.set(false));
    }
}
