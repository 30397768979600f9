//! Kernels of the LP filters (synthesis filter) with a shorter
//! sample-to-sample dependency chain than the general exact kernels of
//! [`simd`](super::simd): they only cover the common case and say when
//! they cannot vouch for their result, so the caller runs the exact kernel
//! instead.
#![allow(unsafe_code)]

use super::decoder::L_H;
use super::{L_SUBFR, M, MP1};

/// One recursion of the unsaturated synthesis kernel, two outputs per
/// step. For the outputs `i` and `i + 1` one window of past outputs
/// `y[i - 3] .. y[i - 10]` serves both: `pmaddwd` with `a[3..=10]` gives
/// taps 3..10 of output `i`, with `a[4..=10]` (and 0) taps 4..10 of output
/// `i + 1`, and one reduction yields both sums. The remaining taps are
/// scalar: two for output `i`, three for output `i + 1` (one on output
/// `i`). The chain from one output to the next is one multiply, a
/// subtraction and a shift: the other terms are summed into a partial
/// value first, and an empty `asm` block keeps the compiler from folding
/// the newest output's product back into that sum (which would put more
/// additions on the chain). A window value is needed three outputs after
/// it is computed.
struct Recursion {
    #[cfg(target_arch = "x86_64")]
    c3: std::arch::x86_64::__m128i,
    #[cfg(target_arch = "x86_64")]
    c4: std::arch::x86_64::__m128i,
    #[cfg(target_arch = "x86_64")]
    w: std::arch::x86_64::__m128i,
    #[cfg(not(target_arch = "x86_64"))]
    c3: [i32; 8],
    #[cfg(not(target_arch = "x86_64"))]
    c4: [i32; 8],
    #[cfg(not(target_arch = "x86_64"))]
    w: [i32; 8],
    a1: i32,
    a2: i32,
    a3: i32,
    h1: i32,
    h2: i32,
}

/// `v` made opaque to the optimiser (no instruction), so that sums formed
/// before it are not reassociated with terms added after it.
#[inline(always)]
fn opaque(v: i32) -> i32 {
    #[allow(unused_mut)]
    let mut v = v;
    #[cfg(target_arch = "x86_64")]
    // SAFETY: a comment-only template: no instruction, no memory access.
    unsafe {
        std::arch::asm!("/* {0:e} */", inout(reg) v, options(pure, nomem, nostack, preserves_flags));
    }
    v
}

impl Recursion {
    #[inline(always)]
    fn new(a: &[i16; MP1], mem: &[i16; M]) -> Self {
        // Window lanes 0..8 hold y[i - 3] .. y[i - 10].
        #[cfg(target_arch = "x86_64")]
        // SAFETY: SSE2 is always available on x86_64; register set-up only.
        let (c3, c4, w) = unsafe {
            use std::arch::x86_64::*;
            (
                _mm_set_epi16(a[10], a[9], a[8], a[7], a[6], a[5], a[4], a[3]),
                _mm_set_epi16(0, a[10], a[9], a[8], a[7], a[6], a[5], a[4]),
                _mm_set_epi16(
                    mem[0], mem[1], mem[2], mem[3], mem[4], mem[5], mem[6], mem[7],
                ),
            )
        };
        #[cfg(not(target_arch = "x86_64"))]
        let (c3, c4, w) = (
            [a[3], a[4], a[5], a[6], a[7], a[8], a[9], a[10]].map(|v| v as i32),
            [a[4], a[5], a[6], a[7], a[8], a[9], a[10], 0].map(|v| v as i32),
            [
                mem[7], mem[6], mem[5], mem[4], mem[3], mem[2], mem[1], mem[0],
            ]
            .map(|v| v as i32),
        );
        Recursion {
            c3,
            c4,
            w,
            a1: a[1] as i32,
            a2: a[2] as i32,
            a3: a[3] as i32,
            h1: mem[9] as i32,
            h2: mem[8] as i32,
        }
    }

    /// The next two outputs `e >> 12` (unsaturated) from `xa[0]`, `xa[1]`
    /// (`x a[0] + 2^11` of the two inputs; `e = xa - Σ a[k] y[. - k]`);
    /// `xa[2..]` is not used (it lets the pair load as one vector).
    #[inline(always)]
    fn step2(&mut self, xa: &[i32; 4]) -> (i32, i32) {
        // `xa - far` for both outputs: the window sums and the input terms
        // are combined in the vector, so the scalar part only takes the
        // products of the two newest outputs.
        #[cfg(target_arch = "x86_64")]
        let (v0, v1) = {
            use std::arch::x86_64::*;
            // SAFETY: SSE2 is always available on x86_64; register
            // arithmetic and one unaligned load of the four values `xa`
            // holds. `pmaddwd` wraps only for two (-32768)^2 products,
            // excluded by the caller's bound like every other wrap here.
            unsafe {
                let p = _mm_madd_epi16(self.w, self.c3);
                let q = _mm_madd_epi16(self.w, self.c4);
                // [p0 + p2, q0 + q2, p1 + p3, q1 + q3], then its halves.
                let s = _mm_add_epi32(_mm_unpacklo_epi32(p, q), _mm_unpackhi_epi32(p, q));
                let x = _mm_loadu_si128(xa.as_ptr() as *const __m128i);
                let v = _mm_sub_epi32(_mm_sub_epi32(x, s), _mm_unpackhi_epi64(s, s));
                // The next window: y[i - 1], y[i - 2] in front.
                let w = _mm_insert_epi16(_mm_slli_si128(self.w, 4), self.h2, 1);
                self.w = _mm_insert_epi16(w, self.h1, 0);
                (
                    _mm_cvtsi128_si32(v),
                    _mm_cvtsi128_si32(_mm_shuffle_epi32(v, 1)),
                )
            }
        };
        #[cfg(not(target_arch = "x86_64"))]
        let (v0, v1) = {
            let dot = |c: &[i32; 8]| (0..8).fold(0i32, |s, k| s.wrapping_add(c[k] * self.w[k]));
            let far = (
                xa[0].wrapping_sub(dot(&self.c3)),
                xa[1].wrapping_sub(dot(&self.c4)),
            );
            self.w.rotate_right(2);
            self.w[0] = self.h1 as i16 as i32;
            self.w[1] = self.h2 as i16 as i32;
            far
        };
        // The older output's products first, the newest output's product
        // last (the only one on the chain).
        let p0 = opaque(v0.wrapping_sub(self.a2.wrapping_mul(self.h2)));
        let y0 = p0.wrapping_sub(self.a1.wrapping_mul(self.h1)) >> 12;
        let p1 = v1
            .wrapping_sub(self.a3.wrapping_mul(self.h2))
            .wrapping_sub(self.a2.wrapping_mul(self.h1));
        let p1 = opaque(p1);
        let y1 = p1.wrapping_sub(self.a1.wrapping_mul(y0)) >> 12;
        self.h2 = y0;
        self.h1 = y1;
        (y0, y1)
    }
}

/// The length of the scaled input buffers: a subframe and the two values
/// past its last pair that the last step's vector load reads (unused).
const XA_LEN: usize = L_SUBFR + 2;

/// `x[i] a[0] + 2^11` (vectorised, off the recursion's chain). The
/// arrays of the kernels live on the stack, indexed by one counter in their
/// loops (few registers: two interleaved recursions need many), are filled
/// in place (a returned array is copied) and have the block's length as a
/// constant (no loop remainders).
#[inline(always)]
fn scale_input<const N: usize>(a0: i16, x: &[i16; N], xa: &mut [i32; XA_LEN]) {
    const { assert!(N + 2 <= XA_LEN) };
    for (d, v) in xa[..N].iter_mut().zip(x) {
        *d = (*v as i32 * a0 as i32).wrapping_add(0x800);
    }
}

/// The four scaled inputs from pair `k` on (see [`Recursion::step2`]).
#[inline(always)]
fn quad(xa: &[i32; XA_LEN], k: usize) -> &[i32; 4] {
    xa[2 * k..2 * k + 4].try_into().expect("four values")
}

/// Store the unsaturated outputs as 16-bit values; when every one lies in
/// `[-32767, 32767]`, the largest |output| (else `None`). `-32768` may come
/// from an `e` just below the range where the reference neither saturates
/// nor sets Overflow: declined.
#[inline(always)]
fn store_checked<const N: usize>(out: &[i32; N], y: &mut [i16; N]) -> Option<i64> {
    // One fold of magnitudes (|v| <= 32767 exactly for v in [-32767,
    // 32767]; `i32::MIN`'s is 2^31) rather than `all`, which is not
    // vectorised, or a min and a max fold. The stores saturate (the
    // outputs are only used when they all fit): a saturating pack, where
    // a truncation is shuffled or, in the interleaved kernel, scalar.
    let m = out.iter().fold(0u32, |m, &v| m.max(v.unsigned_abs()));
    for (d, &v) in y.iter_mut().zip(out) {
        *d = v.clamp(i16::MIN as i32, i16::MAX as i32) as i16;
    }
    (m <= 32767).then_some(m as i64)
}

/// The block lengths the kernels take (a subframe, and the post-filter's
/// impulse response); `None` for any other (declined).
#[inline(always)]
fn block<'a, const N: usize>(
    x: &'a [i16],
    y: &'a mut [i16],
) -> Option<(&'a [i16; N], &'a mut [i16; N])> {
    Some((x.try_into().ok()?, y.try_into().ok()?))
}

/// The synthesis filter `1/A(z)` over a block, as
/// [`syn_block`](super::simd::syn_block) but without the per-sample
/// saturation: `y[i] = (e >> 12)` truncated to 16 bits with
/// `e = x[i] a[0] + 2^11 - Σ_{k=1..10} a[k] y[i - k]` (outputs before
/// `y[0]` read from `mem`, oldest first). Returns the largest |output|
/// when every unsaturated `e >> 12` lies in `[-32767, 32767]`: then no `e` left
/// `[2^12 - 2^27, 2^27)`, inside the range where the reference neither
/// saturates nor sets its Overflow flag, so `y` is the reference's output
/// and its Overflow flag is clear. On `None` `y` is meaningless and the
/// caller must run the exact kernel; blocks of another length than
/// `L_SUBFR` or `L_H` (or `x` and `y` of different lengths) are declined.
///
/// Exact only under the caller's bound `2 (max|x| |a[0]| + Y Σ|a[k]|)
/// <= MAX_32` (no 32-bit sum wraps), as for `syn_block`, with `Y = 2^15`
/// or the largest |value| among `mem` and the outputs found: the wrapping
/// 32-bit sums then equal the true ones whatever their order (for the
/// latter by induction over the outputs, see `util::chain_bound`).
#[inline(always)]
pub(crate) fn syn_block_unsat(
    a: &[i16; MP1],
    x: &[i16],
    y: &mut [i16],
    mem: &[i16; M],
) -> Option<i64> {
    if let Some((x, y)) = block::<L_SUBFR>(x, y) {
        unsat_n(a, x, y, mem)
    } else if let Some((x, y)) = block::<L_H>(x, y) {
        unsat_n(a, x, y, mem)
    } else {
        None
    }
}

#[inline(always)]
fn unsat_n<const N: usize>(
    a: &[i16; MP1],
    x: &[i16; N],
    y: &mut [i16; N],
    mem: &[i16; M],
) -> Option<i64> {
    const { assert!(N.is_multiple_of(2)) };
    let mut xa = [0i32; XA_LEN];
    scale_input(a[0], x, &mut xa);
    let mut r = Recursion::new(a, mem);
    let mut out = [0i32; N];
    // Two steps an iteration: the loop control and the copies that move
    // the newest outputs into place fall on every fourth output.
    for k in (0..N / 2 - 1).step_by(2) {
        (out[2 * k], out[2 * k + 1]) = r.step2(quad(&xa, k));
        (out[2 * k + 2], out[2 * k + 3]) = r.step2(quad(&xa, k + 1));
    }
    if (N / 2) % 2 == 1 {
        let k = N / 2 - 1;
        (out[2 * k], out[2 * k + 1]) = r.step2(quad(&xa, k));
    }
    store_checked(&out, y)
}

/// Two independent blocks of [`syn_block_unsat`] of the same length, their
/// recursions interleaved: each one's dependency chain hides in the other's
/// latency. Returns each block's verdict.
#[inline(always)]
pub(crate) fn syn_block_unsat2(
    a: [&[i16; MP1]; 2],
    x: [&[i16]; 2],
    y: [&mut [i16]; 2],
    mem: [&[i16; M]; 2],
) -> [Option<i64>; 2] {
    let [y0, y1] = y;
    if let (Some(b0), Some(b1)) = (block::<L_SUBFR>(x[0], y0), block::<L_SUBFR>(x[1], y1)) {
        unsat2_n(a, [b0.0, b1.0], [b0.1, b1.1], mem)
    } else if let (Some(b0), Some(b1)) = (block::<L_H>(x[0], y0), block::<L_H>(x[1], y1)) {
        unsat2_n(a, [b0.0, b1.0], [b0.1, b1.1], mem)
    } else {
        [None; 2]
    }
}

#[inline(always)]
fn unsat2_n<const N: usize>(
    a: [&[i16; MP1]; 2],
    x: [&[i16; N]; 2],
    y: [&mut [i16; N]; 2],
    mem: [&[i16; M]; 2],
) -> [Option<i64>; 2] {
    const { assert!(N.is_multiple_of(2)) };
    let [y0, y1] = y;
    let (mut xa0, mut xa1) = ([0i32; XA_LEN], [0i32; XA_LEN]);
    scale_input(a[0][0], x[0], &mut xa0);
    scale_input(a[1][0], x[1], &mut xa1);
    let mut r0 = Recursion::new(a[0], mem[0]);
    let mut r1 = Recursion::new(a[1], mem[1]);
    let (mut out0, mut out1) = ([0i32; N], [0i32; N]);
    for k in (0..N / 2 - 1).step_by(2) {
        for j in [k, k + 1] {
            (out0[2 * j], out0[2 * j + 1]) = r0.step2(quad(&xa0, j));
            (out1[2 * j], out1[2 * j + 1]) = r1.step2(quad(&xa1, j));
        }
    }
    if (N / 2) % 2 == 1 {
        let k = N / 2 - 1;
        (out0[2 * k], out0[2 * k + 1]) = r0.step2(quad(&xa0, k));
        (out1[2 * k], out1[2 * k + 1]) = r1.step2(quad(&xa1, k));
    }
    [store_checked(&out0, y0), store_checked(&out1, y1)]
}

/// The LSP polynomials F1 or F2 (Q24) of four root sets at once
/// (`roots[i][k]`: root `i` of lane `k`), coefficient `j` of lane `k` in
/// `[j][k]`: the reference's `Get_lsp_pol` of each lane, or `None` when
/// one of its operators would saturate in some lane (the same verdict as
/// the plain 64-bit form in `util`).
///
/// Each coefficient lives in one 32-bit lane. `Mpy_32_16(hi, lo, l)` with
/// `hi = v >> 16`, `lo = (v >> 1) & 0x7fff` is `2 m` with
/// `m = hi l + ((lo l) >> 15)`; both products are single 16-bit products
/// (`pmaddwd` with the root in the low half of each lane and zero above),
/// exact in 32 bits, and `|m| <= 2^30 + 2^15`. The step's `L_shl(., 1)`
/// is `t0 = 4 m`, which fits exactly when `m` lies in `[-2^29, 2^29)`;
/// then `Mpy_32_16` itself cannot have saturated (its `L_mult` only for
/// `hi = l = -32768`, where `m >= 2^30 - 2^15`) and neither its sum nor
/// its products leave 32 bits. The additions and subtractions are checked
/// for signed overflow (the sign bit of `(x ^ r) & (y ^ r)`, resp.
/// `(x ^ y) & (x ^ r)`), so a lane passes exactly when every operator of
/// the reference's chain stays in range: then its wrapping sums are the
/// true ones.
#[inline(always)]
pub(crate) fn lsp_pols4(roots: [[i16; 4]; 5]) -> Option<[[i32; 4]; 6]> {
    #[cfg(target_arch = "x86_64")]
    // SAFETY: SSE2 is always available on x86_64; register arithmetic and
    // stores into local arrays of four `i32` (16 bytes, unaligned stores).
    unsafe {
        use std::arch::x86_64::*;
        let zero = _mm_setzero_si128();
        // The root in the low 16 bits of each lane, zero above (`pmaddwd`
        // then forms one product per lane), and sign-extended.
        let l16 = |r: [i16; 4]| {
            _mm_set_epi32(
                r[3] as u16 as i32,
                r[2] as u16 as i32,
                r[1] as u16 as i32,
                r[0] as u16 as i32,
            )
        };
        let l32 = |r: [i16; 4]| _mm_set_epi32(r[3] as i32, r[2] as i32, r[1] as i32, r[0] as i32);
        let sub_ov = |x: __m128i, y: __m128i, bad: &mut __m128i| {
            let r = _mm_sub_epi32(x, y);
            let o = _mm_and_si128(_mm_xor_si128(x, y), _mm_xor_si128(x, r));
            *bad = _mm_or_si128(*bad, o);
            r
        };
        let mask = _mm_set1_epi32(0x7fff);
        let bias = _mm_set1_epi32(1 << 29);
        let mut bad = zero;
        let mut f = [zero; 6];
        f[0] = _mm_set1_epi32(1 << 24);
        // -1024 l (|l| <= 2^15: no overflow).
        f[1] = _mm_sub_epi32(zero, _mm_slli_epi32(l32(roots[0]), 10));
        // One step of root `l`: `f[fp] += f[fp - 2] - L_shl(Mpy_32_16(f[fp -
        // 1], l), 1)`.
        let step = |f: &mut [__m128i; 6], fp: usize, l: __m128i, bad: &mut __m128i| {
            let v = f[fp - 1];
            let hi = _mm_srai_epi32(v, 16);
            let lo = _mm_and_si128(_mm_srli_epi32(v, 1), mask);
            let m = _mm_add_epi32(
                _mm_madd_epi16(hi, l),
                _mm_srai_epi32(_mm_madd_epi16(lo, l), 15),
            );
            // m + 2^29 in [0, 2^30): bits 31 and 30 clear.
            let c = _mm_add_epi32(m, bias);
            *bad = _mm_or_si128(*bad, _mm_or_si128(c, _mm_slli_epi32(c, 1)));
            let t0 = _mm_slli_epi32(m, 2);
            let (x, y) = (f[fp], f[fp - 2]);
            let a = _mm_add_epi32(x, y);
            let o = _mm_and_si128(_mm_xor_si128(x, a), _mm_xor_si128(y, a));
            *bad = _mm_or_si128(*bad, o);
            f[fp] = sub_ov(a, t0, bad);
        };
        // Root `i` (2..=5) with its steps `fp = i..=2` written out, so the
        // coefficients stay in registers.
        macro_rules! root {
            ($i:literal, [$($fp:literal),*]) => {{
                let l = l16(roots[$i - 1]);
                f[$i] = f[$i - 2];
                $(step(&mut f, $fp, l, &mut bad);)*
                f[1] = sub_ov(f[1], _mm_slli_epi32(l32(roots[$i - 1]), 10), &mut bad);
            }};
        }
        root!(2, [2]);
        root!(3, [3, 2]);
        root!(4, [4, 3, 2]);
        root!(5, [5, 4, 3, 2]);
        // Every test leaves its verdict in the sign bit.
        if _mm_movemask_ps(_mm_castsi128_ps(bad)) != 0 {
            return None;
        }
        let mut out = [[0i32; 4]; 6];
        for (o, v) in out.iter_mut().zip(f) {
            _mm_storeu_si128(o.as_mut_ptr() as *mut __m128i, v);
        }
        Some(out)
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        let _ = roots;
        None
    }
}

/// LPC coefficients a[0..=10] (Q12) of the two LSP vectors whose
/// polynomials [`lsp_pols4`] formed (lanes: F1, F2 of the first, F1, F2 of
/// the second), as the reference's `Lsp_Az` tail: `f1[i] += f1[i - 1]`,
/// `f2[i] -= f2[i - 1]` (`L_add`, `L_sub`, `i = 5..1`), then
/// `a[i] = extract_l(L_shr_r(L_add(f1[i], f2[i]), 13))` and
/// `a[11 - i]` from `L_sub`. `None` when one of the additions or
/// subtractions would saturate (each is checked for signed overflow, so
/// otherwise its wrapping value is the reference's), and when an F2
/// coefficient that is subtracted is -2^31 (negated, it wraps).
#[inline(always)]
pub(crate) fn lsp_az2(f: &[[i32; 4]; 6]) -> Option<[[i16; MP1]; 2]> {
    #[cfg(target_arch = "x86_64")]
    // SAFETY: SSE2 is always available on x86_64; register arithmetic,
    // unaligned loads of the arrays of four `i32` in `f` and stores into
    // local ones.
    unsafe {
        use std::arch::x86_64::*;
        let f: [__m128i; 6] = f.map(|v| _mm_loadu_si128(v.as_ptr() as *const __m128i));
        // F2's lanes negate their older coefficient (then `L_sub` is an
        // addition, unless that coefficient is -2^31: declined).
        let neg = _mm_set_epi32(-1, 0, -1, 0);
        let mut bad = _mm_setzero_si128();
        // (`from_fn`: unrolled, in registers.)
        let g: [__m128i; 5] = std::array::from_fn(|j| {
            let (x, y) = (f[j + 1], f[j]);
            let yn = _mm_sub_epi32(_mm_xor_si128(y, neg), neg);
            bad = _mm_or_si128(bad, _mm_and_si128(_mm_and_si128(y, yn), neg));
            let r = _mm_add_epi32(x, yn);
            let o = _mm_and_si128(_mm_xor_si128(x, r), _mm_xor_si128(yn, r));
            bad = _mm_or_si128(bad, o);
            r
        });
        // Lanes 0 and 2: f1 + f2 and f1 - f2 of each vector.
        let even = _mm_set_epi32(0, -1, 0, -1);
        let round = _mm_set1_epi32(1);
        let (mut sums, mut diffs) = ([[0i32; 4]; 5], [[0i32; 4]; 5]);
        for i in 0..5 {
            let x = g[i];
            let sw = _mm_shuffle_epi32(x, 0b10_11_00_01);
            let s = _mm_add_epi32(x, sw);
            let d = _mm_sub_epi32(x, sw);
            let os = _mm_and_si128(_mm_xor_si128(x, s), _mm_xor_si128(sw, s));
            let od = _mm_and_si128(_mm_xor_si128(x, sw), _mm_xor_si128(x, d));
            bad = _mm_or_si128(bad, _mm_and_si128(_mm_or_si128(os, od), even));
            // L_shr_r(v, 13) = (v >> 13) + bit 12 of v.
            let shr_r = |v: __m128i| {
                _mm_add_epi32(
                    _mm_srai_epi32(v, 13),
                    _mm_and_si128(_mm_srli_epi32(v, 12), round),
                )
            };
            _mm_storeu_si128(sums[i].as_mut_ptr() as *mut __m128i, shr_r(s));
            _mm_storeu_si128(diffs[i].as_mut_ptr() as *mut __m128i, shr_r(d));
        }
        if _mm_movemask_ps(_mm_castsi128_ps(bad)) != 0 {
            return None;
        }
        let mut a = [[0i16; MP1]; 2];
        for (k, a) in a.iter_mut().enumerate() {
            a[0] = 4096;
            for i in 1..=5 {
                a[i] = sums[i - 1][2 * k] as i16;
                a[MP1 - i] = diffs[i - 1][2 * k] as i16;
            }
        }
        Some(a)
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        let _ = f;
        None
    }
}

#[cfg(test)]
mod tests {
    use super::super::simd::syn_block;
    use super::*;
    use crate::codec::g729::basic_op::MAX_32;
    use crate::codec::g729::simd::{avx2_multiversion, BASELINE_ONLY};

    avx2_multiversion! {
        fn unsat_mv(a: &[i16; MP1], x: &[i16], y: &mut [i16], mem: &[i16; M]) -> Option<i64>
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
                // Both block lengths (the odd number of steps of `L_H` too).
                let n = if round % 3 == 0 { L_H } else { L_SUBFR };
                let mut x: Vec<i16> = (0..n).map(|_| rnd() >> xs).collect();
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
                let ov = syn_block(&a, &x, &mut want[..n], &mem);
                let mut got = [0i16; 40];
                if let Some(ymax) = unsat_mv(&a, &x, &mut got[..n], &mem) {
                    assert!(!ov, "round {round}");
                    assert_eq!(got, want, "round {round}");
                    let m = want.iter().map(|v| v.unsigned_abs() as i64).max();
                    assert_eq!(Some(ymax), m, "round {round}");
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

    avx2_multiversion! {
        fn unsat2_mv(
            a: [&[i16; MP1]; 2],
            x: [&[i16]; 2],
            y: [&mut [i16]; 2],
            mem: [&[i16; M]; 2],
        ) -> [Option<i64>; 2] = syn_block_unsat2;
    }

    /// The interleaved kernel gives each lane the single kernel's output
    /// and verdict, on both clones; other lengths are declined.
    #[test]
    fn syn_block_unsat2_is_two_single_blocks() {
        for baseline in [false, true] {
            BASELINE_ONLY.with(|b| b.set(baseline));
            let mut seed = 11u32;
            let mut rnd = || {
                seed = seed.wrapping_mul(1103515245).wrapping_add(12345);
                ((seed >> 8) as i32 % 65536 - 32768) as i16
            };
            let mut verdicts = [0u32; 4];
            for round in 0..2000usize {
                let n = [21, L_H, L_SUBFR, L_SUBFR][round % 4];
                let mut lane = |k: usize| {
                    let ca = 2 + (round + 3 * k) % 8;
                    let xs = (round / 2 + k) % 6;
                    let mut a: [i16; MP1] = std::array::from_fn(|_| rnd() >> ca);
                    a[0] = 4096;
                    let x: Vec<i16> = (0..n).map(|_| rnd() >> xs).collect();
                    let mem: [i16; M] = std::array::from_fn(|_| rnd() >> (xs + 1));
                    (a, x, mem)
                };
                let (a0, x0, mem0) = lane(0);
                let (a1, x1, mem1) = lane(1);
                let (mut w0, mut w1) = ([0i16; 40], [0i16; 40]);
                let want = [
                    unsat_mv(&a0, &x0, &mut w0[..n], &mem0),
                    unsat_mv(&a1, &x1, &mut w1[..n], &mem1),
                ];
                let (mut g0, mut g1) = ([0i16; 40], [0i16; 40]);
                let got = unsat2_mv(
                    [&a0, &a1],
                    [&x0, &x1],
                    [&mut g0[..n], &mut g1[..n]],
                    [&mem0, &mem1],
                );
                assert_eq!(got, want, "round {round}");
                if n % 2 == 1 {
                    assert_eq!(got, [None; 2], "round {round}");
                }
                if got[0].is_some() {
                    assert_eq!(g0, w0, "round {round}");
                }
                if got[1].is_some() {
                    assert_eq!(g1, w1, "round {round}");
                }
                verdicts[got[0].is_some() as usize * 2 + got[1].is_some() as usize] += 1;
            }
            BASELINE_ONLY.with(|b| b.set(false));
            // Every combination of verdicts is exercised.
            assert!(verdicts.iter().all(|&v| v > 50), "{verdicts:?}");
        }
    }
}
