//! Signal processing shared by the G.729A encoder and decoder: LSP/LSF
//! conversions, LSP to LPC, interpolation, weighting, synthesis and inverse
//! filters, the adaptive codebook interpolator, LSP dequantisation, gain
//! prediction and the pseudo-random generator.

use super::basic_op::*;
use super::decoder::L_H;
use super::simd::{abs_sum8n, avx2_multiversion, dot8n, fir20_pairs, fir20x16, fir20x8, syn_block};
use super::simd_lp::{lsp_az2, lsp_pols4, syn_block_unsat, syn_block_unsat2};
use super::tables::*;
use super::{L_SUBFR, M, MP1};

pub(crate) const GAP1: i16 = 10;
pub(crate) const GAP2: i16 = 5;
pub(crate) const GAP3: i16 = 321;
pub(crate) const L_LIMIT: i16 = 40;
pub(crate) const M_LIMIT: i16 = 25681;

/// Polynomial F1 or F2 (Q24) from every other LSP starting at `lsp[off]`.
#[inline(always)]
fn get_lsp_pol(lsp: &[i16; M], off: usize) -> [i32; 6] {
    get_lsp_pol_fast(lsp, off).unwrap_or_else(|| get_lsp_pol_ref(lsp, off))
}

/// [`get_lsp_pol_ref`] in plain 64-bit arithmetic, or `None` when one of
/// the reference's operators would saturate.
#[inline(always)]
fn get_lsp_pol_fast(lsp: &[i16; M], off: usize) -> Option<[i32; 6]> {
    let roots: [[i64; 1]; 5] = std::array::from_fn(|i| [lsp[off + 2 * i] as i64]);
    Some(lsp_pols(roots)?[0])
}

/// The polynomials F1 or F2 (Q24) of `N` root sets at once (`roots[i][k]`:
/// root `i` of lane `k`), each lane the reference's `Get_lsp_pol` in plain
/// 64-bit arithmetic; the lanes are independent, so their chains run side
/// by side. `None` when one of the reference's operators would saturate in
/// some lane. `L_Extract` of a 32-bit value is exact (`hi = v >> 16`,
/// `lo = (v >> 1) & 0x7fff`); in `Mpy_32_16` `mult(lo, l)` cannot saturate
/// (`lo >= 0`), so the products, the `L_shl`, and each running sum are
/// checked to fit 32 bits.
#[inline(always)]
fn lsp_pols<const N: usize>(roots: [[i64; N]; 5]) -> Option<[[i32; 6]; N]> {
    let fits = |v: i64| v == v as i32 as i64;
    let mut f = [[0i64; N]; 6];
    f[0] = [1 << 24; N];
    f[1] = roots[0].map(|l| -1024 * l);
    let mut ok = true;
    for i in 2..=5 {
        let l = roots[i - 1];
        f[i] = f[i - 2];
        for fp in (2..=i).rev() {
            for k in 0..N {
                let v = f[fp - 1][k];
                let (hi, lo) = (v >> 16, (v >> 1) & 0x7fff);
                let p = 2 * hi * l[k];
                let m = p + 2 * ((lo * l[k]) >> 15);
                let t0 = 2 * m;
                let a = f[fp][k] + f[fp - 2][k];
                let s = a - t0;
                ok &= fits(p) & fits(m) & fits(t0) & fits(a) & fits(s);
                f[fp][k] = s;
            }
        }
        for k in 0..N {
            f[1][k] -= 1024 * l[k];
            ok &= fits(f[1][k]);
        }
    }
    ok.then(|| std::array::from_fn(|k| std::array::from_fn(|j| f[j][k] as i32)))
}

/// The reference's `Get_lsp_pol` operator by operator.
fn get_lsp_pol_ref(lsp: &[i16; M], off: usize) -> [i32; 6] {
    let mut f = [0i32; 6];
    f[0] = l_mult(4096, 2048);
    f[1] = l_msu(0, lsp[off], 512);
    for i in 2..=5 {
        let l = lsp[off + 2 * (i - 1)];
        f[i] = f[i - 2];
        let mut fp = i;
        for _ in 1..i {
            let (hi, lo) = l_extract(f[fp - 1]);
            let t0 = l_shl(mpy_32_16(hi, lo, l), 1);
            f[fp] = l_add(f[fp], f[fp - 2]);
            f[fp] = l_sub(f[fp], t0);
            fp -= 1;
        }
        f[1] = l_msu(f[1], l, 512);
    }
    f
}

avx2_multiversion! {
    /// LSP (cosine domain, Q15) to LPC coefficients a[0..=10] (Q12).
    ///
    /// [`lsp_az_body`], compiled for AVX2 where the CPU has it
    /// (`avx2_multiversion`).
    pub(crate) fn lsp_az(lsp: &[i16; M], a: &mut [i16]) = lsp_az_body;
}

/// The four polynomials F1, F2 of two LSP vectors in one pass of
/// [`lsp_pols`] (lane `k`: `lsps[k / 2]` from offset `k % 2`).
#[inline(always)]
fn get_lsp_pol4(lsps: [&[i16; M]; 2]) -> Option<[[i32; 6]; 4]> {
    let roots = lsp_roots4(lsps);
    if cfg!(target_arch = "x86_64") {
        // 32-bit lanes with overflow tests ([`lsp_pols4`]).
        lsp_pols4(roots).map(|f| pols_by_lane(&f))
    } else {
        lsp_pols(roots.map(|r| r.map(|v| v as i64)))
    }
}

/// The roots of the four polynomials of two LSP vectors (`[i][k]`: root
/// `i` of lane `k`, lane `k` from `lsps[k / 2]` at offset `k % 2`).
#[inline(always)]
fn lsp_roots4(lsps: [&[i16; M]; 2]) -> [[i16; 4]; 5] {
    std::array::from_fn(|i| std::array::from_fn(|k| lsps[k / 2][k % 2 + 2 * i]))
}

/// The coefficients of [`lsp_pols4`] (`[j][k]`) by lane (`[k][j]`).
#[inline(always)]
fn pols_by_lane(f: &[[i32; 4]; 6]) -> [[i32; 6]; 4] {
    std::array::from_fn(|k| std::array::from_fn(|j| f[j][k]))
}

#[inline(always)]
pub(crate) fn lsp_az_body(lsp: &[i16; M], a: &mut [i16]) {
    lsp_az_from_pols(get_lsp_pol(lsp, 0), get_lsp_pol(lsp, 1), a);
}

/// LPC coefficients a[0..=10] (Q12) from the polynomials F1 and F2.
#[inline(always)]
fn lsp_az_from_pols(mut f1: [i32; 6], mut f2: [i32; 6], a: &mut [i16]) {
    for i in (1..=5).rev() {
        f1[i] = l_add(f1[i], f1[i - 1]);
        f2[i] = l_sub(f2[i], f2[i - 1]);
    }
    a[0] = 4096;
    let mut j = 10;
    for i in 1..=5 {
        a[i] = extract_l(l_shr_r(l_add(f1[i], f2[i]), 13));
        a[j] = extract_l(l_shr_r(l_sub(f1[i], f2[i]), 13));
        j -= 1;
    }
}

/// `L_shl(l, n)` (`1 <= n <= 3`) as the high-pass filters of pre- and
/// post-processing apply it to their output, and the state value
/// `L_shl(l, n) >> 1` (the `hi 2^15 + lo` of its `L_Extract`). The
/// unsaturated case, `l` in `[-2^(31-n), 2^(31-n))`, is a branch rather than
/// a select, so the range test stays off the sample-to-sample chain; the
/// state is then `l 2^(n-1)`, one multiply away from the next sample.
#[inline(always)]
pub(crate) fn shl_state(l: i32, n: u32) -> (i32, i64) {
    let lim = 1i32 << (31 - n);
    if (-lim..lim).contains(&l) {
        (l << n, (l as i64) << (n - 1))
    } else {
        shl_state_sat(l, n)
    }
}

#[cold]
#[inline(never)]
fn shl_state_sat(l: i32, n: u32) -> (i32, i64) {
    let s = l_shl(l, n as i16);
    (s, (s >> 1) as i64)
}

/// LSF (Q13, 0..pi) to LSP (Q15).
pub(crate) fn lsf_lsp2(lsf: &[i16; M], lsp: &mut [i16; M]) {
    for i in 0..M {
        let freq = mult(lsf[i], 20861);
        let mut ind = shr(freq, 8);
        let offset = freq & 0x00ff;
        if ind > 63 {
            ind = 63;
        }
        let l_tmp = l_mult(SLOPE_COS[ind as usize], offset);
        lsp[i] = add(TABLE2[ind as usize], extract_l(l_shr(l_tmp, 13)));
    }
}

/// LSP (Q15) to LSF (Q13).
///
/// The reference walks the table index down from its value for the
/// previous (higher) coefficient, starting at 63, while
/// `TABLE2[ind] < lsp[i]`, stopping at 0. `TABLE2` is non-increasing from
/// `TABLE2[0] = 32767` (no `lsp[i]` exceeds it), so the entries `>= lsp[i]`
/// are the prefix `0..=last` and the walk ends at `min(ind, last)`; `last`
/// is found by a branch-free binary search (steps 32, 16, .., 1 reach 63).
pub(crate) fn lsp_lsf2(lsp: &[i16; M], lsf: &mut [i16; M]) {
    let mut ind: i16 = 63;
    for i in (0..M).rev() {
        let mut last = 0usize;
        for step in [32, 16, 8, 4, 2, 1] {
            last += step * usize::from(TABLE2[last + step] >= lsp[i]);
        }
        ind = ind.min(last as i16);
        let offset = sub(lsp[i], TABLE2[ind as usize]);
        let l_tmp = l_mult(SLOPE_ACOS[ind as usize], offset);
        let freq = add(shl(ind, 9), extract_l(l_shr(l_tmp, 12)));
        lsf[i] = mult(freq, 25736);
    }
}

/// `round(L_mult(a, b))`, also in constant expressions.
#[inline(always)]
pub(crate) const fn round_mult(a: i16, b: i16) -> i16 {
    let p = a as i32 * b as i32;
    let l = if p == 0x4000_0000 { i32::MAX } else { p << 1 };
    let r = if l > i32::MAX - 0x8000 {
        i32::MAX
    } else {
        l + 0x8000
    };
    (r >> 16) as i16
}

/// The factors `gamma^i` (`i = 1..=M`) of [`weight_az`] as the reference
/// forms them (`fac = round(L_mult(fac, gamma))` from `gamma`); a constant
/// for a constant `gamma`.
pub(crate) const fn gamma_powers(gamma: i16) -> [i16; M] {
    let mut f = [gamma; M];
    let mut i = 1;
    while i < M {
        f[i] = round_mult(f[i - 1], gamma);
        i += 1;
    }
    f
}

/// ap[i] = a[i] * gamma^i.
pub(crate) fn weight_az(a: &[i16], gamma: i16, ap: &mut [i16; MP1]) {
    weight_az_pow(a, &gamma_powers(gamma), ap);
}

/// [`weight_az`] with the factors `gamma^i` given ([`gamma_powers`]):
/// independent products, vectorised.
#[inline(always)]
pub(crate) fn weight_az_pow(a: &[i16], fac: &[i16; M], ap: &mut [i16; MP1]) {
    let Some(a) = a.get(..MP1) else {
        return;
    };
    ap[0] = a[0];
    for ((d, &v), &f) in ap[1..].iter_mut().zip(&a[1..]).zip(fac) {
        *d = round_mult(v, f);
    }
}

avx2_multiversion! {
    /// Interpolate the quantised LSPs and convert both subframes to LPC.
    ///
    /// [`int_qlpc_body`], compiled for AVX2 where the CPU has it
    /// (`avx2_multiversion`).
    pub(crate) fn int_qlpc(
        lsp_old: &[i16; M],
        lsp_new: &[i16; M],
        az: &mut [i16; 2 * MP1],
    ) = int_qlpc_body;
}

#[inline(always)]
pub(crate) fn int_qlpc_body(lsp_old: &[i16; M], lsp_new: &[i16; M], az: &mut [i16; 2 * MP1]) {
    let mut lsp = [0i16; M];
    for i in 0..M {
        lsp[i] = add(shr(lsp_new[i], 1), shr(lsp_old[i], 1));
    }
    let (az0, az1) = az.split_at_mut(MP1);
    if cfg!(target_arch = "x86_64") {
        // Polynomials and coefficients in 32-bit lanes ([`lsp_pols4`],
        // [`lsp_az2`]); the polynomials' tail as the reference when only
        // the coefficients' sums decline, everything when the polynomials
        // do.
        match lsp_pols4(lsp_roots4([&lsp, lsp_new])) {
            Some(f) => {
                if let Some([a0, a1]) = lsp_az2(&f) {
                    az0.copy_from_slice(&a0);
                    az1.copy_from_slice(&a1);
                } else {
                    let [f1, f2, g1, g2] = pols_by_lane(&f);
                    lsp_az_from_pols(f1, f2, az0);
                    lsp_az_from_pols(g1, g2, az1);
                }
            }
            None => {
                lsp_az(&lsp, az0);
                lsp_az(lsp_new, az1);
            }
        }
        return;
    }
    match get_lsp_pol4([&lsp, lsp_new]) {
        Some([f1, f2, g1, g2]) => {
            lsp_az_from_pols(f1, f2, az0);
            lsp_az_from_pols(g1, g2, az1);
        }
        None => {
            lsp_az(&lsp, az0);
            lsp_az(lsp_new, az1);
        }
    }
}

avx2_multiversion! {
    /// Synthesis filter 1/A(z) over `x` into `y` with memory `mem`; returns the
    /// reference's Overflow flag for this call.
    ///
    /// The reference saturates after every `L_msu`. With `A = Σ_{j>=1} |a[j]|`
    /// and `Y` the largest |past output| so far (a running maximum), every
    /// running sum of output `i` is bounded by `2 (|a[0] x[i]| + A Y)`; when that
    /// is at most `MAX_32` no step can saturate and a plain 32-bit dot product is
    /// exact. The block kernels run first when the memory leaves room: the
    /// unsaturated one, vouched for afterwards by the largest output it found
    /// (the common case, see [`chain_bound`]), else, when `Y <= 2^15` settles
    /// it for any outputs, the exact [`syn_block`] (SIMD). Otherwise the bound
    /// is checked per sample, and a failing sample is replayed with exact 64-bit
    /// sums and, if a running sum really leaves the range, step by step.
    ///
    /// [`syn_filt_body`], compiled for AVX2 where the CPU has it
    /// (`avx2_multiversion`).
    pub(crate) fn syn_filt(
        a: &[i16],
        x: &[i16],
        y: &mut [i16],
        mem: &mut [i16; M],
        update: bool,
    ) -> bool = syn_filt_body;
}

#[inline(always)]
pub(crate) fn syn_filt_body(
    a: &[i16],
    x: &[i16],
    y: &mut [i16],
    mem: &mut [i16; M],
    update: bool,
) -> bool {
    let lg = x.len().min(100).min(y.len());
    let a: &[i16; MP1] = match a.get(..MP1).and_then(|s| s.try_into().ok()) {
        Some(a) => a,
        None => return false,
    };
    let a_abs = abs_sum(a);
    let fits = chain_bound_sums(a[0].unsigned_abs() as i64, a_abs);
    let xmax = abs_max(&x[..lg]);
    let mmax = abs_max(mem);
    // Every output is at least as large as the memory's largest: without
    // room for that, neither block kernel can apply.
    if fits(xmax, mmax) {
        // The unsaturated kernel's shorter chain first, vouched for by the
        // outputs it found (see `chain_bound`); the exact block kernel for
        // the blocks it cannot vouch for when the bound holds for any
        // 16-bit outputs.
        let unsat = syn_block_unsat(a, &x[..lg], &mut y[..lg], mem);
        if unsat.is_some_and(|ymax| fits(xmax, mmax.max(ymax))) {
            syn_update(&y[..lg], mem, update);
            return false;
        }
        if fits(xmax, 1 << 15) {
            let ov = syn_block(a, &x[..lg], &mut y[..lg], mem);
            syn_update(&y[..lg], mem, update);
            return ov;
        }
    }
    let mut ov = false;
    let a0 = a[0] as i32;
    let c: [i32; MP1] = a.map(|v| v as i32);
    let mut ymax: i64 = mem
        .iter()
        .map(|v| v.unsigned_abs() as i64)
        .max()
        .unwrap_or(0);
    // The 10 previous outputs live in registers (h[k - 1] = y[i - k]) and
    // each output goes straight to `y`: reading back just-stored outputs
    // (or shifting a window through memory) stalls on store forwarding.
    let [m0, m1, m2, m3, m4, m5, m6, m7, m8, m9] = mem.map(|v| v as i32);
    let (mut h1, mut h2, mut h3, mut h4, mut h5) = (m9, m8, m7, m6, m5);
    let (mut h6, mut h7, mut h8, mut h9, mut h10) = (m4, m3, m2, m1, m0);
    for (&xi, yi) in x[..lg].iter().zip(y[..lg].iter_mut()) {
        let p0 = xi as i32 * a0;
        let out = if 2 * (p0.unsigned_abs() as i64 + a_abs * ymax) <= MAX_32 as i64 {
            // The older taps first: only the newest output's product is on
            // the sample-to-sample dependency chain.
            let far = (c[10] * h10)
                .wrapping_add(c[9] * h9)
                .wrapping_add((c[8] * h8).wrapping_add(c[7] * h7))
                .wrapping_add((c[6] * h6).wrapping_add(c[5] * h5))
                .wrapping_add((c[4] * h4).wrapping_add(c[3] * h3))
                .wrapping_add(c[2] * h2);
            // With e = p0 - Σ (|e| <= 2^30 here) the reference computes
            // round(L_shl(2e, 3)) = (16e + 2^15) >> 16 = (e + 2^11) >> 12,
            // saturated to 16 bits exactly when the unsaturated value
            // leaves them. Its Overflow flag is set when L_shl saturates
            // (e < -2^27 or e >= 2^27) or the rounding add does
            // (e >= 2^27 - 2^11).
            let e = (p0 + 0x800).wrapping_sub(far).wrapping_sub(c[1] * h1);
            ov |= !(0x800 - (1 << 27)..1 << 27).contains(&e);
            (e >> 12).clamp(MIN_16 as i32, MAX_16 as i32) as i16
        } else {
            let w = [h10, h9, h8, h7, h6, h5, h4, h3, h2, h1].map(|v| v as i16);
            let s = syn_sample_slow(a, &w, xi, &mut ov);
            let s = l_shl_ov(s, 3, &mut ov);
            round_ov(s, &mut ov)
        };
        *yi = out;
        (h10, h9, h8, h7, h6) = (h9, h8, h7, h6, h5);
        (h5, h4, h3, h2, h1) = (h4, h3, h2, h1, out as i32);
        ymax = ymax.max(out.unsigned_abs() as i64);
    }
    syn_update(&y[..lg], mem, update);
    ov
}

/// Whether no step of the reference's synthesis chain through `1/A(z)` can
/// saturate (nor a 32-bit sum in any order wrap) for inputs `|x| <= xmax`
/// when every past output has `|y| <= ymax`: each running sum is bounded by
/// `2 (xmax |a[0]| + ymax Σ_{k>=1} |a[k]|)`.
///
/// With `ymax = 2^15` it holds for any block up front. A block kernel that
/// computes without saturation (wrapping 32-bit sums) may also be vouched
/// for afterwards with `ymax` the largest |output| it produced (and of the
/// memory): by induction over the outputs, if the first `i` are right they
/// are bounded by `ymax`, so output `i`'s sums cannot wrap or saturate and
/// it is right too (given the kernel's own range check of the result).
///
/// Returned as a test of `(xmax, ymax)` for the filter `a`, its
/// coefficient sums formed once.
#[inline(always)]
fn chain_bound(a: &[i16; MP1]) -> impl Fn(i64, i64) -> bool {
    chain_bound_sums(a[0].unsigned_abs() as i64, abs_sum(a))
}

/// [`chain_bound`] from `|a[0]|` and `Σ_{k>=1} |a[k]|`.
#[inline(always)]
fn chain_bound_sums(a0: i64, a_abs: i64) -> impl Fn(i64, i64) -> bool {
    move |xmax, ymax| 2 * (xmax * a0 + a_abs * ymax) <= MAX_32 as i64
}

/// `Σ_{k>=1} |a[k]|` (at most `10 · 2^15`): taps 3..=10 as one vector
/// ([`abs_sum8n`]; a fold over all ten is left scalar), taps 1 and 2 apart.
#[inline(always)]
fn abs_sum(a: &[i16; MP1]) -> i64 {
    let [_, a1, a2, far @ ..] = a;
    (abs_sum8n(far) + a1.unsigned_abs() as i32 + a2.unsigned_abs() as i32) as i64
}

/// `max |v|` over a block (`2^15` for `-32768`), as a 16-bit min/max fold
/// (vectorises well): `|v| <= max(hi, -lo)`. The common lengths are made
/// constants (a fold without loop control or remainder): a subframe, and a
/// subframe with the 20 samples around it that [`pred_lt_3`] interpolates
/// from.
#[inline(always)]
pub(crate) fn abs_max(v: &[i16]) -> i64 {
    if let Ok(b) = <&[i16; L_SUBFR]>::try_from(v) {
        abs_max_fold(b)
    } else if let Ok(b) = <&[i16; L_SUBFR + 20]>::try_from(v) {
        abs_max_fold(b)
    } else {
        abs_max_fold(v)
    }
}

#[inline(always)]
fn abs_max_fold(v: &[i16]) -> i64 {
    let (lo, hi) = v
        .iter()
        .fold((0i16, 0i16), |(lo, hi), &v| (lo.min(v), hi.max(v)));
    (hi as i64).max(-(lo as i64))
}

/// The filter memory after the block `y` when `update` asks for it.
#[inline(always)]
fn syn_update(y: &[i16], mem: &mut [i16; M], update: bool) {
    if update && y.len() >= M {
        mem.copy_from_slice(&y[y.len() - M..]);
    }
}

avx2_multiversion! {
    /// Two independent [`syn_filt`] calls (`a`, `x`, `y`, `mem`, `update`
    /// per filter), with the same result, Overflow flags included. When
    /// both blocks have the same length and the common case's bound holds
    /// for both, their recursions run interleaved ([`syn_block_unsat2`]),
    /// each hiding in the other's latency; a block that kernel cannot vouch
    /// for is filtered again on its own.
    ///
    /// [`syn_filt2_body`], compiled for AVX2 where the CPU has it
    /// (`avx2_multiversion`).
    pub(crate) fn syn_filt2(
        a: [&[i16]; 2],
        x: [&[i16]; 2],
        y: [&mut [i16]; 2],
        mem: [&mut [i16; M]; 2],
        update: [bool; 2],
    ) -> [bool; 2] = syn_filt2_body;
}

#[inline(always)]
pub(crate) fn syn_filt2_body(
    a: [&[i16]; 2],
    x: [&[i16]; 2],
    y: [&mut [i16]; 2],
    mem: [&mut [i16; M]; 2],
    update: [bool; 2],
) -> [bool; 2] {
    let [y0, y1] = y;
    let [m0, m1] = mem;
    let coef = |a: &[i16]| -> Option<[i16; MP1]> { a.get(..MP1)?.try_into().ok() };
    let lg = x[0].len();
    let mut ok = [false; 2];
    if let (Some(c0), Some(c1)) = (coef(a[0]), coef(a[1])) {
        if lg <= 100 && x[1].len() == lg && y0.len() >= lg && y1.len() >= lg {
            // Each lane as in `syn_filt`: a chance only with room for its
            // memory, vouched for by its outputs (`chain_bound`).
            let (xmax, mmax) = (
                [abs_max(x[0]), abs_max(x[1])],
                [abs_max(&*m0), abs_max(&*m1)],
            );
            let fits = [chain_bound(&c0), chain_bound(&c1)];
            let pre = [fits[0](xmax[0], mmax[0]), fits[1](xmax[1], mmax[1])];
            if pre[0] || pre[1] {
                let v =
                    syn_block_unsat2([&c0, &c1], x, [&mut y0[..lg], &mut y1[..lg]], [&*m0, &*m1]);
                ok = [
                    pre[0] && v[0].is_some_and(|y| fits[0](xmax[0], mmax[0].max(y))),
                    pre[1] && v[1].is_some_and(|y| fits[1](xmax[1], mmax[1].max(y))),
                ];
            }
        }
    }
    // A block the kernel declined is filtered again on its own (rare).
    let lane = |ok: bool, a: &[i16], x: &[i16], y: &mut [i16], m: &mut [i16; M], update| {
        if ok {
            syn_update(&y[..lg], m, update);
            false
        } else {
            syn_filt(a, x, y, m, update)
        }
    };
    [
        lane(ok[0], a[0], x[0], y0, m0, update[0]),
        lane(ok[1], a[1], x[1], y1, m1, update[1]),
    ]
}

/// The first `L_H` samples of the responses of `x(z)/A(z)` (`x` the
/// coefficients of a numerator, zero memory) of two filters: the
/// post-filter's impulse responses, as two [`syn_filt`] calls of `x`
/// followed by zeros (outputs only; no memory to update, the Overflow
/// flags unused). The common case is one interleaved unsaturated kernel
/// with fixed sizes, vouched for by its outputs ([`chain_bound`]); a lane it
/// cannot vouch for is filtered again on its own.
#[inline(always)]
pub(crate) fn syn_impulse2(a: [&[i16; MP1]; 2], x: [&[i16; MP1]; 2], h: [&mut [i16; L_H]; 2]) {
    let xin: [[i16; L_H]; 2] = std::array::from_fn(|k| {
        let mut v = [0i16; L_H];
        v[..MP1].copy_from_slice(x[k]);
        v
    });
    let xmax = [abs_max(x[0]), abs_max(x[1])];
    let zero = [0i16; M];
    let [h0, h1] = h;
    let v = syn_block_unsat2(
        a,
        [&xin[0], &xin[1]],
        [&mut h0[..], &mut h1[..]],
        [&zero; 2],
    );
    for (k, h) in [h0, h1].into_iter().enumerate() {
        if !v[k].is_some_and(|y| chain_bound(a[k])(xmax[k], y)) {
            syn_filt(a[k], &xin[k], h, &mut [0; M], false);
        }
    }
}

/// One output of the synthesis filter before the final shift, exactly as the
/// reference's `L_mult`/`L_msu` chain (with its Overflow flag).
#[cold]
#[inline(never)]
fn syn_sample_slow(a: &[i16; MP1], w: &[i16; M], xi: i16, ov: &mut bool) -> i32 {
    let mut s = 2 * xi as i64 * a[0] as i64;
    let mut lo = s;
    let mut hi = s;
    for j in 1..=M {
        s -= 2 * a[j] as i64 * w[M - j] as i64;
        lo = lo.min(s);
        hi = hi.max(s);
    }
    let fits = lo >= i32::MIN as i64 && hi <= i32::MAX as i64 && xi != i16::MIN;
    if fits && !a[1..].contains(&i16::MIN) {
        s as i32
    } else {
        let mut s = l_mult_ov(xi, a[0], ov);
        for j in 1..=M {
            s = l_msu_ov(s, a[j], w[M - j], ov);
        }
        s
    }
}

avx2_multiversion! {
    /// LPC residual: filter `buf[start..start+lg]` through A(z); needs the M
    /// samples before `start`.
    ///
    /// Every running sum is bounded by `2 X Σ|a|` with `X` the largest |sample|
    /// in the input window; below `MAX_32` plain 32-bit dot products are exact.
    ///
    /// [`residu_body`], compiled for AVX2 where the CPU has it
    /// (`avx2_multiversion`).
    pub(crate) fn residu(
        a: &[i16],
        buf: &[i16],
        start: usize,
        y: &mut [i16],
        lg: usize,
    ) = residu_body;
}

#[inline(always)]
pub(crate) fn residu_body(a: &[i16], buf: &[i16], start: usize, y: &mut [i16], lg: usize) {
    let a: &[i16; MP1] = match a.get(..MP1).and_then(|s| s.try_into().ok()) {
        Some(a) => a,
        None => return,
    };
    let (Some(src), Some(y)) = (buf.get(start.wrapping_sub(M)..start + lg), y.get_mut(..lg)) else {
        return;
    };
    // Coefficients reversed and padded to 16 taps, so each output is a dot
    // product with the window win[i..i + 16] ending at buf[start + i].
    const PAD: usize = 16 - MP1;
    let mut ar = [0i16; 16];
    for j in 0..MP1 {
        ar[PAD + j] = a[M - j];
    }
    let a_abs: i64 = ar.iter().map(|v| v.unsigned_abs() as i64).sum();
    let xmax = src.iter().map(|v| v.unsigned_abs()).max().unwrap_or(0) as i64;
    let fast = 2 * a_abs * xmax <= MAX_32 as i64;
    if fast {
        if let (Ok(src), Ok(y)) = (src.try_into(), <&mut [i16; L_SUBFR]>::try_from(&mut *y)) {
            residu_block(a, src, y);
            return;
        }
    }
    let mut win = [0i16; PAD + M + 100];
    let Some(dst) = win.get_mut(PAD..PAD + src.len()) else {
        return;
    };
    dst.copy_from_slice(src);
    for (i, yi) in y.iter_mut().enumerate() {
        let w: &[i16; 16] = match win[i..i + 16].try_into() {
            Ok(w) => w,
            Err(_) => return,
        };
        let s = if fast {
            dot8n(w, &ar).wrapping_mul(2)
        } else {
            let w = &w[PAD..];
            let (s, sa) = dot_bound(w, &ar[PAD..]);
            if no_step_saturates(0, sa) {
                (2 * s) as i32
            } else {
                let mut s = l_mult(w[M], a[0]);
                for j in 1..=M {
                    s = l_mac(s, a[j], w[M - j]);
                }
                s
            }
        };
        *yi = round(l_shl(s, 3));
    }
}

/// [`residu`] of a subframe under its bound (`2 X Σ|a| <= MAX_32`, so the
/// reference's `L_mac` chain is `2 s` with `s` the plain sum, in any order
/// in 32 bits): the sums tap by tap over the whole block (vectorised, no
/// per-output reduction), then `round(L_shl(2 s, 3))` = `floor((2 s +
/// 2^12) / 2^13)` saturated to 16 bits (saturation is monotone), formed as
/// `((s >> 11) + 1) >> 1`. `src` holds the `M` samples before the block.
#[inline(always)]
fn residu_block(a: &[i16; MP1], src: &[i16; M + L_SUBFR], y: &mut [i16; L_SUBFR]) {
    let mut acc = [0i32; L_SUBFR];
    for (k, &c) in a.iter().enumerate() {
        let x: &[i16; L_SUBFR] = match src[M - k..M - k + L_SUBFR].try_into() {
            Ok(x) => x,
            Err(_) => return,
        };
        for (s, &v) in acc.iter_mut().zip(x) {
            *s = s.wrapping_add(c as i32 * v as i32);
        }
    }
    for (d, &s) in y.iter_mut().zip(&acc) {
        *d = (((s >> 11) + 1) >> 1).clamp(MIN_16 as i32, MAX_16 as i32) as i16;
    }
}

avx2_multiversion! {
    /// Adaptive codebook vector with 1/3 fractional delay, written in place at
    /// `buf[pos..pos+l]` from the past excitation before `pos`.
    ///
    /// Every running sum of an output is bounded by `2 X Σ|c|` with `X` the
    /// largest |sample| the window has seen: the old samples' maximum, raised by
    /// each new output (the window reaches into them when the delay is short).
    /// Below `MAX_32` plain 32-bit dot products are exact.
    ///
    /// [`pred_lt_3_body`], compiled for AVX2 where the CPU has it
    /// (`avx2_multiversion`).
    pub(crate) fn pred_lt_3(
        buf: &mut [i16],
        pos: usize,
        t0: i16,
        frac: i16,
        l: usize,
    ) = pred_lt_3_body;
}

/// The taps of [`pred_lt_3`] for `frac` (0..3, after the reference's
/// adjustment), built once: the 20 taps in sample order (`c[k]` weights
/// `buf[x1 - 9 + k]`), padded to 24 with zeros, the same 20 as
/// [`fir20_pairs`], and `Σ|c[k]|`.
fn pred_taps(frac: usize) -> &'static PredTaps {
    static TAPS: std::sync::OnceLock<[PredTaps; 3]> = std::sync::OnceLock::new();
    let t = TAPS.get_or_init(|| {
        std::array::from_fn(|frac| {
            let mut c = [0i16; 24];
            for i in 0..10 {
                c[9 - i] = INTER_3L[frac + 3 * i];
                c[10 + i] = INTER_3L[3 - frac + 3 * i];
            }
            let mut c20 = [0i16; 20];
            c20.copy_from_slice(&c[..20]);
            PredTaps {
                c,
                pairs: fir20_pairs(&c20),
                abs_sum: c.iter().map(|v| v.unsigned_abs() as i64).sum(),
            }
        })
    });
    &t[frac.min(2)]
}

/// See [`pred_taps`].
struct PredTaps {
    c: [i16; 24],
    pairs: [i32; 10],
    abs_sum: i64,
}

#[inline(always)]
pub(crate) fn pred_lt_3_body(buf: &mut [i16], pos: usize, t0: i16, frac: i16, l: usize) {
    let mut x0 = pos - t0 as usize;
    let mut frac = -frac;
    if frac < 0 {
        frac += 3;
        x0 -= 1;
    }
    let frac = frac as usize;
    let taps = pred_taps(frac);
    let (c, c_abs, pairs) = (&taps.c, taps.abs_sum, &taps.pairs);
    let lo = x0.saturating_sub(9).min(buf.len());
    let hi = (x0 + l + 11).min(buf.len()).max(lo);
    let mut xmax = abs_max(&buf[lo..hi]);
    let fits = |xmax: i64| 2 * c_abs * xmax <= MAX_32 as i64;
    let mut j = 0;
    // Sixteen, then eight outputs at once when their windows end before
    // the first of them (x0 + 25 < pos, x0 + 17 < pos: delay of 26, 18 or
    // more; G.729's delays are 20..143): they are independent and each
    // block is one SIMD kernel. (A macro, not a closure, so the kernels
    // are inlined with the caller's target features.)
    macro_rules! blocks {
        ($n:literal, $kernel:ident) => {
            if x0 + $n + 9 < pos && x0 >= 9 {
                while j + $n <= l && fits(xmax) {
                    let x1 = x0 + j;
                    let w: &[i16; $n + 19] =
                        match buf.get(x1 - 9..x1 + $n + 10).map(|s| s.try_into()) {
                            Some(Ok(w)) => w,
                            _ => break,
                        };
                    let out = $kernel(w, pairs);
                    match buf.get_mut(pos + j..pos + j + $n) {
                        Some(dst) => dst.copy_from_slice(&out),
                        None => return,
                    }
                    let m = out.iter().map(|v| v.unsigned_abs()).max().unwrap_or(0);
                    xmax = xmax.max(m as i64);
                    j += $n;
                }
            }
        };
    }
    blocks!(16, fir20x16);
    blocks!(8, fir20x8);
    for j in j..l {
        let x1 = x0 + j;
        let s = if fits(xmax) {
            match buf.get(x1.wrapping_sub(9)..x1 + 15).map(|s| s.try_into()) {
                Some(Ok(w)) => dot8n::<24>(w, c).wrapping_mul(2),
                _ => match buf.get(x1.wrapping_sub(9)..x1 + 11) {
                    Some(w) => dot_wrapping(w, &c[..20]).wrapping_mul(2),
                    None => return,
                },
            }
        } else {
            let w: &[i16; 20] = match buf.get(x1.wrapping_sub(9)..x1 + 11).map(|s| s.try_into()) {
                Some(Ok(w)) => w,
                _ => return,
            };
            pred_sample_slow(buf, x1, frac, w, &c[..20])
        };
        let out = round(s);
        match buf.get_mut(pos + j) {
            Some(b) => *b = out,
            None => return,
        }
        xmax = xmax.max(out.unsigned_abs() as i64);
    }
}

/// One interpolated sample exactly as the reference's `L_mac` chain.
#[cold]
#[inline(never)]
fn pred_sample_slow(buf: &[i16], x1: usize, frac: usize, w: &[i16; 20], c: &[i16]) -> i32 {
    let (s, sa) = dot_bound(w, c);
    if no_step_saturates(0, sa) {
        (2 * s) as i32
    } else {
        // Reference order: the two halves interleaved.
        let x2 = x1 + 1;
        let mut s = 0i32;
        for i in 0..10 {
            s = l_mac(s, buf[x1 - i], INTER_3L[frac + 3 * i]);
            s = l_mac(s, buf[x2 + i], INTER_3L[3 - frac + 3 * i]);
        }
        s
    }
}

/// The total excitation `exc[i] = round(L_shl(L_mac(L_mult(exc[i], gp),
/// code[i], gc), 1))`, shared by the encoder's and the decoder's subframe
/// update. Unless a gain is -32768 (then operator by operator) neither
/// product saturates and `s = exc gp + code gc` has `|s| < 2^31 - 2^15`;
/// the `L_mac` and `L_shl` chain is `sat32(4 s)` (saturation is monotone)
/// and `round` of it `sat16(floor((4 s + 2^15) / 2^16))`, i.e.
/// `sat16((s + 2^13) >> 14)`: where `4 s` saturates, `|s + 2^13| >= 2^29`
/// and the clamp gives the same end. Plain 32-bit lane arithmetic.
#[inline(always)]
pub(crate) fn excitation(exc: &mut [i16; L_SUBFR], code: &[i16; L_SUBFR], gp: i16, gc: i16) {
    if gp == MIN_16 || gc == MIN_16 {
        for (e, &c) in exc.iter_mut().zip(code) {
            *e = round(l_shl(l_mac(l_mult(*e, gp), c, gc), 1));
        }
        return;
    }
    for (e, &c) in exc.iter_mut().zip(code) {
        let s = *e as i32 * gp as i32 + c as i32 * gc as i32;
        *e = ((s + 0x2000) >> 14).clamp(MIN_16 as i32, MAX_16 as i32) as i16;
    }
}

/// The Recommendation's pseudo-random generator.
pub(crate) fn random(seed: &mut i16) -> i16 {
    *seed = extract_l(l_add(l_shr(l_mult(*seed, 31821), 1), 13849));
    *seed
}

/// Parity of the 6 MSBs of the first pitch index (the transmitted P0 bit).
pub(crate) fn parity_pitch(index: i16) -> i16 {
    let mut temp = shr(index, 1);
    let mut sum: i16 = 1;
    for _ in 0..=5 {
        temp = shr(temp, 1);
        sum = add(sum, temp & 1);
    }
    sum & 1
}

// ---- LSP quantiser state shared by encoder and decoder ----

/// [`lsp_expand_1_2`] in plain 32-bit arithmetic: the same whenever none
/// of its operators saturates, which holds for every vector built from
/// the codebooks (all index combinations are checked by a unit test), so
/// [`lsp_get_quant`] runs it.
#[inline(always)]
fn lsp_expand_plain(buf: &mut [i16; M], gap: i16) {
    for j in 1..M {
        let (lo, hi) = (buf[j - 1] as i32, buf[j] as i32);
        let tmp = (lo - hi + gap as i32) >> 1;
        if tmp > 0 {
            buf[j - 1] = (lo - tmp) as i16;
            buf[j] = (hi + tmp) as i16;
        }
    }
}

pub(crate) fn lsp_expand_1_2(buf: &mut [i16; M], gap: i16) {
    for j in 1..M {
        let diff = sub(buf[j - 1], buf[j]);
        let tmp = shr(add(diff, gap), 1);
        if tmp > 0 {
            buf[j - 1] = sub(buf[j - 1], tmp);
            buf[j] = add(buf[j], tmp);
        }
    }
}

/// `lsp[j] = extract_h(L_mult(lsp_ele[j], fg_sum[j]) + Σ_k L_mac(freq_prev[k][j],
/// fg[k][j]))`, the MA prediction. When every `Σ_k |fg[k][j]| + |fg_sum[j]|`
/// is at most `MAX_16` (the Recommendation's tables: 32765 to 32767) no
/// running sum can exceed `2 · 2^15 · MAX_16 < 2^31` and no product is
/// `(-32768)^2`: the chain is twice the plain 32-bit sum, and its high half
/// `sum >> 15` (all ten lanes at once). Other tables take the chain.
pub(crate) fn lsp_prev_compose(
    lsp_ele: &[i16; M],
    lsp: &mut [i16; M],
    fg: &[[i16; M]; 4],
    freq_prev: &[[i16; M]; 4],
    fg_sum: &[i16; M],
) {
    let mut coef = fg_sum.map(|c| c.unsigned_abs() as i32);
    for f in fg {
        for (s, &c) in coef.iter_mut().zip(f) {
            *s += c.unsigned_abs() as i32;
        }
    }
    if coef.iter().fold(0, |m, &c| m.max(c)) <= MAX_16 as i32 {
        let mut acc: [i32; M] = std::array::from_fn(|j| lsp_ele[j] as i32 * fg_sum[j] as i32);
        for (p, f) in freq_prev.iter().zip(fg) {
            for j in 0..M {
                acc[j] += p[j] as i32 * f[j] as i32;
            }
        }
        for (d, &s) in lsp.iter_mut().zip(&acc) {
            *d = (s >> 15) as i16;
        }
        return;
    }
    for j in 0..M {
        let mut acc = l_mult(lsp_ele[j], fg_sum[j]);
        for k in 0..4 {
            acc = l_mac(acc, freq_prev[k][j], fg[k][j]);
        }
        lsp[j] = extract_h(acc);
    }
}

pub(crate) fn lsp_prev_extract(
    lsp: &[i16; M],
    lsp_ele: &mut [i16; M],
    fg: &[[i16; M]; 4],
    freq_prev: &[[i16; M]; 4],
    fg_sum_inv: &[i16; M],
) {
    for j in 0..M {
        let mut t = l_deposit_h(lsp[j]);
        for k in 0..4 {
            t = l_msu(t, freq_prev[k][j], fg[k][j]);
        }
        let temp = extract_h(t);
        let t = l_mult(temp, fg_sum_inv[j]);
        lsp_ele[j] = extract_h(l_shl(t, 3));
    }
}

pub(crate) fn lsp_prev_update(lsp_ele: &[i16; M], freq_prev: &mut [[i16; M]; 4]) {
    for k in (1..4).rev() {
        freq_prev[k] = freq_prev[k - 1];
    }
    freq_prev[0] = *lsp_ele;
}

pub(crate) fn lsp_stability(buf: &mut [i16; M]) {
    for j in 0..M - 1 {
        if (buf[j + 1] as i32) - (buf[j] as i32) < 0 {
            buf.swap(j, j + 1);
        }
    }
    if buf[0] < L_LIMIT {
        buf[0] = L_LIMIT;
    }
    for j in 0..M - 1 {
        if (buf[j + 1] as i32) - (buf[j] as i32) < GAP3 as i32 {
            buf[j + 1] = add(buf[j], GAP3);
        }
    }
    if buf[M - 1] > M_LIMIT {
        buf[M - 1] = M_LIMIT;
    }
}

/// Rebuild the quantised LSF vector from codebook indices, update the MA memory.
pub(crate) fn lsp_get_quant(
    code0: usize,
    code1: usize,
    code2: usize,
    mode: usize,
    freq_prev: &mut [[i16; M]; 4],
    lspq: &mut [i16; M],
) {
    let mut buf = [0i16; M];
    for j in 0..5 {
        buf[j] = add(LSPCB1[code0][j], LSPCB2[code1][j]);
    }
    for j in 5..M {
        buf[j] = add(LSPCB1[code0][j], LSPCB2[code2][j]);
    }
    lsp_expand_plain(&mut buf, GAP1);
    lsp_expand_plain(&mut buf, GAP2);
    lsp_prev_compose(&buf, lspq, &FG[mode], freq_prev, &FG_SUM[mode]);
    lsp_prev_update(&buf, freq_prev);
    lsp_stability(lspq);
}

// ---- gain prediction ----

/// Predicted code gain from the innovation energy and past quantised energies.
pub(crate) fn gain_predict(past_qua_en: &[i16; 4], code: &[i16]) -> (i16, i16) {
    // The reference's L_mac chain of squares from 0 (exact, saturating
    // where it does: see `l_mac_energy`).
    let l_tmp = l_mac_energy(0, &code[..code.len().min(L_SUBFR)]).0;
    let (exp, frac) = log2(l_tmp);
    let mut l_tmp = mpy_32_16(exp, frac, -24660);
    l_tmp = l_mac(l_tmp, 32588, 32);
    l_tmp = l_shl(l_tmp, 10);
    for i in 0..4 {
        l_tmp = l_mac(l_tmp, PRED[i], past_qua_en[i]);
    }
    let gcode0 = extract_h(l_tmp);
    let l_tmp = l_shr(l_mult(gcode0, 5439), 8);
    let (exp, frac) = l_extract(l_tmp);
    let gcode0 = extract_l(pow2(14, frac));
    (gcode0, sub(14, exp))
}

/// `round(L_shl(l, 3))` (the high-pass filters' output): saturation is
/// monotone, so it is `floor((8 l + 2^15) / 2^16) = floor((l + 2^12) /
/// 2^13)` saturated to 16 bits, formed without overflow as
/// `((l >> 12) + 1) >> 1`.
#[inline(always)]
pub(crate) fn round_shl3(l: i32) -> i16 {
    (((l >> 12) + 1) >> 1).clamp(MIN_16 as i32, MAX_16 as i32) as i16
}

pub(crate) fn gain_update(past_qua_en: &mut [i16; 4], l_gbk12: i32) {
    for i in (1..4).rev() {
        past_qua_en[i] = past_qua_en[i - 1];
    }
    let (exp, frac) = log2(l_gbk12);
    let l_acc = l_comp(sub(exp, 13), frac);
    let tmp = extract_h(l_shl(l_acc, 13));
    past_qua_en[0] = mult(tmp, 24660);
}

pub(crate) fn gain_update_erasure(past_qua_en: &mut [i16; 4]) {
    let mut l_tmp = 0i32;
    for &e in past_qua_en.iter() {
        l_tmp = l_add(l_tmp, l_deposit_l(e));
    }
    let mut av = extract_l(l_shr(l_tmp, 2));
    av = sub(av, 4096);
    if av < -14336 {
        av = -14336;
    }
    for i in (1..4).rev() {
        past_qua_en[i] = past_qua_en[i - 1];
    }
    past_qua_en[0] = av;
}

/// The reference's second-order high-pass of pre- and post-processing,
/// operator by operator: `b`, `a` its coefficients, `n` the `L_shl` of the
/// state, `out` the further `L_shl` of the output; `st` = x0, x1, y1_hi,
/// y1_lo, y2_hi, y2_lo. Returns how many state shifts saturated.
#[cfg(test)]
pub(crate) fn high_pass_ref(
    b: &[i16; 3],
    a: &[i16; 3],
    n: i16,
    out: i16,
    st: &mut [i16; 6],
    sig: &mut [i16],
) -> usize {
    let [mut x0, mut x1, mut y1h, mut y1l, mut y2h, mut y2l] = *st;
    let mut saturated = 0;
    for s in sig.iter_mut() {
        let x2 = x1;
        x1 = x0;
        x0 = *s;
        let mut l = mpy_32_16(y1h, y1l, a[1]);
        l = l_add(l, mpy_32_16(y2h, y2l, a[2]));
        l = l_mac(l, x0, b[0]);
        l = l_mac(l, x1, b[1]);
        l = l_mac(l, x2, b[2]);
        saturated += usize::from((l as i64) << n != l_shl(l, n) as i64);
        l = l_shl(l, n);
        *s = round(l_shl(l, out));
        (y2h, y2l) = (y1h, y1l);
        (y1h, y1l) = l_extract(l);
    }
    *st = [x0, x1, y1h, y1l, y2h, y2l];
    saturated
}

/// Test input for the high-pass filters: frames from silence and gentle
/// noise to full-scale square waves and steps (the outputs that saturate).
#[cfg(test)]
pub(crate) fn high_pass_test_frame(frame: usize, seed: &mut i16) -> [i16; 80] {
    let kind = frame % 6;
    std::array::from_fn(|i| match kind {
        0 => shr(random(seed), (frame % 13) as i16),
        1 | 2 => {
            let period = 2 + frame % 37;
            if (i / period) % 2 == 0 {
                i16::MAX
            } else {
                i16::MIN
            }
        }
        3 => {
            if i < 40 {
                i16::MIN
            } else {
                i16::MAX
            }
        }
        4 => random(seed),
        _ => 0,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::codec::g729::simd::BASELINE_ONLY;

    #[test]
    fn lsp_lsf2_is_the_reference_table_walk() {
        // The search relies on the table's order.
        assert_eq!(TABLE2[0], i16::MAX);
        assert!(TABLE2.windows(2).all(|w| w[0] >= w[1]));
        let reference = |lsp: &[i16; M]| -> [i16; M] {
            let mut lsf = [0i16; M];
            let mut ind: i16 = 63;
            for i in (0..M).rev() {
                while TABLE2[ind as usize] < lsp[i] {
                    ind -= 1;
                    if ind <= 0 {
                        break;
                    }
                }
                let offset = sub(lsp[i], TABLE2[ind as usize]);
                let l_tmp = l_mult(SLOPE_ACOS[ind as usize], offset);
                let freq = add(shl(ind, 9), extract_l(l_shr(l_tmp, 12)));
                lsf[i] = mult(freq, 25736);
            }
            lsf
        };
        let mut seed = 99i16;
        let check = |lsp: [i16; M]| {
            let mut got = [0i16; M];
            lsp_lsf2(&lsp, &mut got);
            assert_eq!(got, reference(&lsp), "{lsp:?}");
        };
        // Every value in every position (the others the table's entries
        // or extremes), then random orders, ordered or not.
        for x in i16::MIN..=i16::MAX {
            let k = (x as u16 % M as u16) as usize;
            let mut lsp: [i16; M] = std::array::from_fn(|j| TABLE2[(j * 7 + k) % 64]);
            lsp[k] = x;
            check(lsp);
            lsp[(k + 3) % M] = if x & 1 == 0 { i16::MIN } else { i16::MAX };
            check(lsp);
        }
        for round in 0..20000 {
            let mut lsp: [i16; M] = std::array::from_fn(|_| random(&mut seed));
            if round % 2 == 0 {
                lsp.sort_unstable_by(|a, b| b.cmp(a));
            }
            check(lsp);
        }
    }

    #[test]
    fn excitation_is_the_operator_chain_on_both_clones() {
        avx2_multiversion! {
            fn excitation_mv(
                exc: &mut [i16; L_SUBFR],
                code: &[i16; L_SUBFR],
                gp: i16,
                gc: i16,
            ) = excitation;
        }
        let mut seed = 23i16;
        let ext = [i16::MIN, i16::MIN + 1, -1, 0, 1, 16384, i16::MAX];
        let mut saturated = 0;
        for n in 0..3000 {
            let pick = |seed: &mut i16, k: usize| {
                if (n + k) % 4 == 0 {
                    ext[(n / 4 + k) % ext.len()]
                } else {
                    shr(random(seed), (n % 5) as i16)
                }
            };
            let gp = pick(&mut seed, 0);
            let gc = pick(&mut seed, 1);
            let exc0: [i16; L_SUBFR] = std::array::from_fn(|k| pick(&mut seed, k + 2));
            let code: [i16; L_SUBFR] = std::array::from_fn(|k| pick(&mut seed, k + 3));
            for baseline in [false, true] {
                BASELINE_ONLY.with(|b| b.set(baseline));
                let mut got = exc0;
                excitation_mv(&mut got, &code, gp, gc);
                BASELINE_ONLY.with(|b| b.set(false));
                for k in 0..L_SUBFR {
                    let want = round(l_shl(l_mac(l_mult(exc0[k], gp), code[k], gc), 1));
                    assert_eq!(got[k], want, "{} {gp} {} {gc}", exc0[k], code[k]);
                    saturated += usize::from(want == i16::MAX || want == i16::MIN);
                }
            }
        }
        assert!(saturated > 1000, "{saturated}");
    }

    /// `weight_az` (and `round_mult`, `gamma_powers`) is the reference's
    /// loop of `round(L_mult)`, for any coefficients and factor, extreme
    /// ones included.
    #[test]
    fn weight_az_is_the_operator_chain() {
        let ext = [i16::MIN, i16::MIN + 1, -16384, -1, 0, 1, 16384, i16::MAX];
        for &a in &ext {
            for &b in &ext {
                assert_eq!(round_mult(a, b), round(l_mult(a, b)), "{a} {b}");
            }
        }
        let mut seed = 8i16;
        for n in 0..3000 {
            let gamma = if n % 5 == 0 {
                ext[n / 5 % ext.len()]
            } else {
                random(&mut seed)
            };
            let a: [i16; MP1] = std::array::from_fn(|k| {
                if (n + k) % 7 == 0 {
                    ext[(n + k) % ext.len()]
                } else {
                    random(&mut seed)
                }
            });
            let mut want = [0i16; MP1];
            want[0] = a[0];
            let mut fac = gamma;
            for i in 1..M {
                want[i] = round(l_mult(a[i], fac));
                fac = round(l_mult(fac, gamma));
            }
            want[M] = round(l_mult(a[M], fac));
            let mut ap = [0i16; MP1];
            weight_az(&a, gamma, &mut ap);
            assert_eq!(ap, want, "{a:?} {gamma}");
        }
    }

    /// The MA prediction of the LSF quantiser is the reference's chain for
    /// the Recommendation's tables (plain sums) and for tables beyond their
    /// bound (the chain itself), with extreme inputs, on both clones.
    #[test]
    fn lsp_prev_compose_is_the_operator_chain_on_both_clones() {
        avx2_multiversion! {
            fn compose_mv(
                lsp_ele: &[i16; M],
                lsp: &mut [i16; M],
                fg: &[[i16; M]; 4],
                freq_prev: &[[i16; M]; 4],
                fg_sum: &[i16; M],
            ) = lsp_prev_compose;
        }
        let ext = [i16::MIN, i16::MAX, -1, 0, 25681];
        let mut seed = 19i16;
        let mut saturated = 0;
        for n in 0..3000usize {
            let mut pick = |k: usize| {
                if (n + k) % 5 == 0 {
                    ext[(n / 5 + k) % ext.len()]
                } else {
                    random(&mut seed)
                }
            };
            let ele: [i16; M] = std::array::from_fn(|j| pick(j));
            let prev: [[i16; M]; 4] = std::array::from_fn(|k| std::array::from_fn(|j| pick(j + k)));
            let (fg, fg_sum) = if n % 3 == 0 {
                // Random tables, mostly beyond the bound (and `-32768`).
                let fg: [[i16; M]; 4] =
                    std::array::from_fn(|k| std::array::from_fn(|j| pick(2 * j + k)));
                (fg, std::array::from_fn(|j| pick(3 * j)))
            } else {
                (FG[n % 2], FG_SUM[n % 2])
            };
            let mut want = [0i16; M];
            for j in 0..M {
                let mut acc = l_mult(ele[j], fg_sum[j]);
                for k in 0..4 {
                    acc = l_mac(acc, prev[k][j], fg[k][j]);
                }
                saturated += usize::from(acc == MAX_32 || acc == MIN_32);
                want[j] = extract_h(acc);
            }
            for baseline in [false, true] {
                BASELINE_ONLY.with(|b| b.set(baseline));
                let mut got = [0i16; M];
                compose_mv(&ele, &mut got, &fg, &prev, &fg_sum);
                BASELINE_ONLY.with(|b| b.set(false));
                assert_eq!(got, want, "n {n}");
            }
        }
        assert!(saturated > 100, "{saturated}");
    }

    /// The reference's Pred_lt_3, operator by operator, in place.
    fn pred_ref(buf: &mut [i16], pos: usize, t0: i16, frac: i16, l: usize) {
        let mut x0 = pos - t0 as usize;
        let mut frac = -frac;
        if frac < 0 {
            frac += 3;
            x0 -= 1;
        }
        let frac = frac as usize;
        for j in 0..l {
            let (x1, x2) = (x0 + j, x0 + j + 1);
            let mut s = 0i32;
            for i in 0..10 {
                s = l_mac(s, buf[x1 - i], INTER_3L[frac + 3 * i]);
                s = l_mac(s, buf[x2 + i], INTER_3L[3 - frac + 3 * i]);
            }
            buf[pos + j] = round(s);
        }
    }

    #[test]
    fn pred_lt_3_is_the_reference_on_both_clones() {
        let mut seed = 4242i16;
        for baseline in [false, true] {
            BASELINE_ONLY.with(|b| b.set(baseline));
            for round in 0..900 {
                let sh = (round % 5) as i16;
                let mut buf: Vec<i16> = (0..210).map(|_| shr(random(&mut seed), sh)).collect();
                match round % 9 {
                    0 => buf.iter_mut().for_each(|v| *v = MAX_16),
                    1 => buf.iter_mut().for_each(|v| *v = MIN_16),
                    2 => buf
                        .iter_mut()
                        .enumerate()
                        .for_each(|(i, v)| *v = if i % 2 == 0 { MAX_16 } else { MIN_16 }),
                    _ => {}
                }
                let t0 = 20 + (round / 3 % 124) as i16;
                let frac = (round % 3) as i16 - 1;
                let pos = 160;
                let mut want = buf.clone();
                pred_ref(&mut want, pos, t0, frac, 40);
                pred_lt_3(&mut buf, pos, t0, frac, 40);
                assert_eq!(
                    buf, want,
                    "round {round} t0 {t0} frac {frac} baseline {baseline}"
                );
            }
        }
        BASELINE_ONLY.with(|b| b.set(false));
    }

    #[test]
    fn get_lsp_pol_fast_matches_reference_or_declines() {
        let mut seed = 31i16;
        let (mut fast, mut declined) = (0, 0);
        for round in 0..4000 {
            let sc = (round % 4) as i16;
            let mut lsp: [i16; M] = std::array::from_fn(|_| shr(random(&mut seed), sc));
            if round % 9 == 0 {
                // Every root at one end: the largest coefficients.
                let v = if round % 2 == 0 { i16::MIN } else { -32000 };
                lsp = [v; M];
            }
            for off in 0..2 {
                let want = get_lsp_pol_ref(&lsp, off);
                match get_lsp_pol_fast(&lsp, off) {
                    Some(f) => {
                        assert_eq!(f, want, "{lsp:?} {off}");
                        fast += 1;
                    }
                    None => declined += 1,
                }
                assert_eq!(get_lsp_pol(&lsp, off), want);
            }
        }
        assert!(fast > 2000 && declined > 20, "{fast} {declined}");
    }

    /// The four-lane polynomials are the reference's whenever no lane
    /// declines, and `int_qlpc` is the two reference conversions in every
    /// case, on both clones.
    #[test]
    fn int_qlpc_is_two_reference_conversions_on_both_clones() {
        let lsp_az_ref = |lsp: &[i16; M]| {
            let mut a = [0i16; MP1];
            let (mut f1, mut f2) = (get_lsp_pol_ref(lsp, 0), get_lsp_pol_ref(lsp, 1));
            for i in (1..=5).rev() {
                f1[i] = l_add(f1[i], f1[i - 1]);
                f2[i] = l_sub(f2[i], f2[i - 1]);
            }
            a[0] = 4096;
            for i in 1..=5 {
                a[i] = extract_l(l_shr_r(l_add(f1[i], f2[i]), 13));
                a[M + 1 - i] = extract_l(l_shr_r(l_sub(f1[i], f2[i]), 13));
            }
            a
        };
        for baseline in [false, true] {
            BASELINE_ONLY.with(|b| b.set(baseline));
            let mut seed = 77i16;
            let (mut fast, mut declined) = (0, 0);
            for round in 0..3000 {
                let mut lsp: [[i16; M]; 2] = std::array::from_fn(|k| {
                    let sc = ((round + k) % 4) as i16;
                    std::array::from_fn(|_| shr(random(&mut seed), sc))
                });
                if round % 7 == 0 {
                    // Every root of one vector at one end.
                    let v = if round % 2 == 0 { i16::MIN } else { -32000 };
                    lsp[round % 3 % 2] = [v; M];
                }
                let want = get_lsp_pol4([&lsp[0], &lsp[1]]);
                if let Some(p) = want {
                    for (k, pol) in p.iter().enumerate() {
                        assert_eq!(*pol, get_lsp_pol_ref(&lsp[k / 2], k % 2), "{lsp:?}");
                    }
                    fast += 1;
                } else {
                    declined += 1;
                }
                let mut az = [0i16; 2 * MP1];
                int_qlpc(&lsp[0], &lsp[1], &mut az);
                let mid: [i16; M] =
                    std::array::from_fn(|i| add(shr(lsp[1][i], 1), shr(lsp[0][i], 1)));
                assert_eq!(az[..MP1], lsp_az_ref(&mid), "{lsp:?}");
                assert_eq!(az[MP1..], lsp_az_ref(&lsp[1]), "{lsp:?}");
            }
            BASELINE_ONLY.with(|b| b.set(false));
            assert!(fast > 1000 && declined > 100, "{fast} {declined}");
        }
    }

    #[test]
    fn subframe_energy_is_the_l_mac_chain() {
        let mut seed = 5i16;
        let mut saturated = 0;
        for round in 0..2000 {
            let x: [i16; L_SUBFR] = std::array::from_fn(|i| match round % 7 {
                0 => i16::MIN,
                1 => i16::MAX,
                2 if i % 2 == 0 => i16::MIN,
                3 if i < round % 41 => -32767,
                3 => 0,
                4 => shr(random(&mut seed), 2),
                _ => shr(random(&mut seed), (round % 11) as i16),
            });
            let mut want = 0i32;
            for &v in &x {
                want = l_mac(want, v, v);
            }
            saturated += usize::from(want == MAX_32);
            assert_eq!(l_mac_energy(0, &x).0, want, "round {round}: {x:?}");
        }
        assert!(saturated >= 500, "{saturated}");
    }

    #[test]
    fn gain_predict_energy_is_the_l_mac_chain() {
        let mut seed = 17i16;
        let mut saturated = 0;
        for round in 0..500 {
            let code: [i16; L_SUBFR] = std::array::from_fn(|i| match round % 5 {
                0 => i16::MIN,
                1 if i % 3 == 0 => 8191,
                1 => 0,
                _ => shr(random(&mut seed), (round % 9) as i16),
            });
            let past = [-14336, random(&mut seed) >> 2, 0, 4096];
            let mut l_tmp = 0i32;
            for &c in &code {
                l_tmp = l_mac(l_tmp, c, c);
            }
            saturated += usize::from(l_tmp == MAX_32);
            let (exp, frac) = log2(l_tmp);
            let mut l = mpy_32_16(exp, frac, -24660);
            l = l_mac(l, 32588, 32);
            l = l_shl(l, 10);
            for i in 0..4 {
                l = l_mac(l, PRED[i], past[i]);
            }
            let l = l_shr(l_mult(extract_h(l), 5439), 8);
            let (exp, frac) = l_extract(l);
            let want = (extract_l(pow2(14, frac)), sub(14, exp));
            assert_eq!(gain_predict(&past, &code), want, "round {round}");
        }
        assert!(saturated >= 100, "{saturated}");
    }

    /// A test signal source: 16-bit values from a linear congruential
    /// generator.
    fn lcg(mut seed: u32) -> impl FnMut() -> i16 {
        move || {
            seed = seed.wrapping_mul(1103515245).wrapping_add(12345);
            ((seed >> 8) as i32 % 65536 - 32768) as i16
        }
    }

    /// The four-lane 32-bit polynomial kernel gives the plain 64-bit form's
    /// verdict and values, on both clones: roots from small to the rails
    /// (overflow in any one operator of some lane), -32768 included.
    #[test]
    fn lsp_pols4_is_the_plain_form_on_both_clones() {
        avx2_multiversion! {
            fn pols4_mv(r: [[i16; 4]; 5]) -> Option<[[i32; 4]; 6]> = lsp_pols4;
        }
        for baseline in [false, true] {
            BASELINE_ONLY.with(|b| b.set(baseline));
            let mut rnd = lcg(29);
            let (mut some, mut none) = (0, 0);
            for round in 0..20000usize {
                let roots: [[i16; 4]; 5] = std::array::from_fn(|_| {
                    std::array::from_fn(|_| {
                        let v = rnd();
                        match round % 6 {
                            0 => v,
                            1 => v >> 1,
                            2 => v >> 2,
                            3 => v >> 4,
                            4 => [i16::MIN, i16::MAX, -32000, 31000][(v & 3) as usize],
                            _ => (v >> 1) + if v < 0 { -16384 } else { 16384 },
                        }
                    })
                });
                let want = lsp_pols(roots.map(|r| r.map(|v| v as i64)));
                let got = pols4_mv(roots)
                    .map(|f| std::array::from_fn(|k| std::array::from_fn(|j| f[j][k])));
                assert_eq!(got, want, "{roots:?}");
                if got.is_some() {
                    some += 1;
                } else {
                    none += 1;
                }
            }
            BASELINE_ONLY.with(|b| b.set(false));
            assert!(some > 10000 && none > 1000, "{some} {none}");
        }
    }

    /// The four-lane coefficient kernel is the reference's `Lsp_Az` tail
    /// of both vectors whenever none of its sums leaves 32 bits (found in
    /// 64-bit arithmetic) and no F2 coefficient it subtracts is -2^31, and
    /// declines exactly otherwise, on both clones: polynomials from small
    /// to the rails, -2^31 included.
    #[test]
    fn lsp_az2_is_the_reference_tail_on_both_clones() {
        avx2_multiversion! {
            fn az2_mv(f: &[[i32; 4]; 6]) -> Option<[[i16; MP1]; 2]> = lsp_az2;
        }
        for baseline in [false, true] {
            BASELINE_ONLY.with(|b| b.set(baseline));
            let mut rnd = lcg(31);
            let (mut some, mut none) = (0, 0);
            for round in 0..20000usize {
                let f: [[i32; 4]; 6] = std::array::from_fn(|_| {
                    std::array::from_fn(|_| {
                        let v = ((rnd() as i32) << 16) ^ (rnd() as u16 as i32);
                        match round % 5 {
                            0 => v,
                            1 => v >> 1,
                            2 => v >> 2,
                            3 => v >> 6,
                            _ => [i32::MIN, i32::MAX, v >> 1, -(1 << 30)][(v & 3) as usize],
                        }
                    })
                });
                let lanes = pols_by_lane(&f);
                // The 64-bit sums of each vector's tail.
                let fits = |v: i64| v == v as i32 as i64;
                let overflows = [0, 2].iter().any(|&k| {
                    let (f1, f2) = (lanes[k], lanes[k + 1]);
                    (1..=5).any(|i| {
                        let g1 = f1[i] as i64 + f1[i - 1] as i64;
                        let g2 = f2[i] as i64 - f2[i - 1] as i64;
                        // (-2^31 in F2 is declined: its negation wraps.)
                        f2[i - 1] == i32::MIN
                            || !fits(g1)
                            || !fits(g2)
                            || !fits(g1 + g2)
                            || !fits(g1 - g2)
                    })
                });
                match az2_mv(&f) {
                    Some(a) => {
                        assert!(!overflows, "{f:?}");
                        for k in 0..2 {
                            let mut want = [0i16; MP1];
                            lsp_az_from_pols(lanes[2 * k], lanes[2 * k + 1], &mut want);
                            assert_eq!(a[k], want, "{f:?}");
                        }
                        some += 1;
                    }
                    None => {
                        assert!(overflows, "{f:?}");
                        none += 1;
                    }
                }
            }
            BASELINE_ONLY.with(|b| b.set(false));
            assert!(some > 5000 && none > 5000, "{some} {none}");
        }
    }

    /// For every codebook vector [`lsp_get_quant`] can build (all index
    /// combinations), the plain expansion is the saturating one, and none
    /// of the latter's operators saturates (so the plain one is exact).
    #[test]
    fn lsp_expand_plain_is_exact_on_every_codebook_vector() {
        for code0 in 0..LSPCB1.len() {
            for code1 in 0..LSPCB2.len() {
                for code2 in 0..LSPCB2.len() {
                    let buf: [i16; M] = std::array::from_fn(|j| {
                        let c = if j < 5 { code1 } else { code2 };
                        add(LSPCB1[code0][j], LSPCB2[c][j])
                    });
                    let (mut want, mut got, mut watched) = (buf, buf, buf);
                    for gap in [GAP1, GAP2] {
                        // The reference's steps, each checked not to leave
                        // 16 bits (where its operators would saturate).
                        let w = &mut watched;
                        for j in 1..M {
                            let diff = sat_free(w[j - 1] as i32 - w[j] as i32);
                            let tmp = sat_free(diff + gap as i32) >> 1;
                            if tmp > 0 {
                                w[j - 1] = sat_free(w[j - 1] as i32 - tmp) as i16;
                                w[j] = sat_free(w[j] as i32 + tmp) as i16;
                            }
                        }
                        lsp_expand_1_2(&mut want, gap);
                        lsp_expand_plain(&mut got, gap);
                        assert_eq!(got, want, "{code0} {code1} {code2}");
                        assert_eq!(watched, want, "{code0} {code1} {code2}");
                    }
                }
            }
        }
    }

    /// `v`, asserting it is a 16-bit value (no operator saturated).
    fn sat_free(v: i32) -> i32 {
        assert_eq!(v, v as i16 as i32, "saturates");
        v
    }

    /// The synthesis bound's helpers on both clones: the coefficient sum is
    /// `Σ_{k>=1} |a[k]|` and `abs_max` the largest magnitude (subframes and
    /// other lengths), for random values and the extremes (-32768 included).
    #[test]
    fn bound_helpers_are_the_plain_folds_on_both_clones() {
        avx2_multiversion! {
            fn abs_sum_mv(a: &[i16; MP1]) -> i64 = abs_sum;
        }
        avx2_multiversion! {
            fn abs_max_mv(v: &[i16]) -> i64 = abs_max;
        }
        for baseline in [false, true] {
            BASELINE_ONLY.with(|b| b.set(baseline));
            let mut rnd = lcg(808);
            for round in 0..2000 {
                let mut a: [i16; MP1] = std::array::from_fn(|_| rnd() >> (round % 16));
                let n = [L_SUBFR, M, L_SUBFR + 1, L_SUBFR + 20, 7, 0][round % 6];
                let mut x: Vec<i16> = (0..n).map(|_| rnd() >> (round % 16)).collect();
                match round % 7 {
                    0 => a.iter_mut().for_each(|v| *v = i16::MIN),
                    1 => a.iter_mut().for_each(|v| *v = i16::MAX),
                    2 => a[1 + round % M] = i16::MIN,
                    3 => x.iter_mut().take(1).for_each(|v| *v = i16::MIN),
                    4 => x.iter_mut().rev().take(1).for_each(|v| *v = i16::MAX),
                    _ => {}
                }
                let want: i64 = a[1..].iter().map(|&v| (v as i64).abs()).sum();
                assert_eq!(abs_sum_mv(&a), want, "{a:?}");
                let want = x.iter().map(|&v| (v as i64).abs()).max().unwrap_or(0);
                assert_eq!(abs_max_mv(&x), want, "{x:?}");
            }
            BASELINE_ONLY.with(|b| b.set(false));
        }
    }

    /// `residu` is the reference's `Residu` operator by operator on both
    /// clones, from gentle to saturating inputs and coefficients (both the
    /// bounded block path and the checked one), subframes and other lengths.
    #[test]
    fn residu_is_the_operator_chain_on_both_clones() {
        for baseline in [false, true] {
            BASELINE_ONLY.with(|b| b.set(baseline));
            let mut rnd = lcg(606);
            let (mut roomy, mut saturated) = (0, 0);
            for n in 0..3000usize {
                let lg = if n % 5 == 0 { 13 + n % 60 } else { L_SUBFR };
                let ca = n % 6;
                let xs = (n / 6) % 8;
                let a: [i16; MP1] = std::array::from_fn(|_| rnd() >> ca);
                let mut buf: Vec<i16> = (0..M + lg + 3).map(|_| rnd() >> xs).collect();
                match n % 13 {
                    0 => buf.iter_mut().for_each(|v| *v = i16::MIN),
                    1 => buf
                        .iter_mut()
                        .enumerate()
                        .for_each(|(i, v)| *v = if i % 2 == 0 { MAX_16 } else { MIN_16 }),
                    _ => {}
                }
                let start = M + n % 4;
                let want: Vec<i16> = (0..lg)
                    .map(|i| {
                        let mut s = l_mult(buf[start + i], a[0]);
                        for j in 1..=M {
                            s = l_mac(s, a[j], buf[start + i - j]);
                        }
                        round(l_shl(s, 3))
                    })
                    .collect();
                let mut y = vec![0i16; lg];
                residu(&a, &buf, start, &mut y, lg);
                assert_eq!(y, want, "n {n}");
                let a_abs: i64 = a.iter().map(|v| v.unsigned_abs() as i64).sum();
                let xmax = buf[start - M..start + lg]
                    .iter()
                    .map(|v| v.unsigned_abs() as i64)
                    .max()
                    .unwrap_or(0);
                roomy += usize::from(lg == L_SUBFR && 2 * a_abs * xmax <= MAX_32 as i64);
                saturated += want.iter().filter(|&&v| v == MAX_16 || v == MIN_16).count();
            }
            BASELINE_ONLY.with(|b| b.set(false));
            assert!(
                roomy > 500 && roomy < 2000 && saturated > 1000,
                "{roomy} {saturated}"
            );
        }
    }

    /// The reference's synthesis filter, operator by operator.
    fn syn_ref(a: &[i16; MP1], x: &[i16], mem: &[i16; M]) -> (Vec<i16>, bool) {
        let mut ov = false;
        let mut y = mem.to_vec();
        for &xi in x {
            let mut s = l_mult_ov(xi, a[0], &mut ov);
            for j in 1..=M {
                s = l_msu_ov(s, a[j], y[y.len() - j], &mut ov);
            }
            let s = l_shl_ov(s, 3, &mut ov);
            y.push(round_ov(s, &mut ov));
        }
        (y[M..].to_vec(), ov)
    }

    #[test]
    fn syn_filt_matches_reference_including_overflow() {
        let mut rnd = lcg(99);
        let (mut overflows, mut block_rounds, mut block_overflows) = (0, 0, 0);
        for round in 0..600 {
            // Coefficient and signal scales from gentle to saturating.
            let ca = 1 + round % 11;
            let xs = round % 7;
            let mut a: [i16; MP1] = std::array::from_fn(|_| rnd() >> ca);
            a[0] = 4096;
            let x: Vec<i16> = (0..40).map(|_| rnd() >> xs).collect();
            let mem: [i16; M] = std::array::from_fn(|_| rnd() >> (xs + 2));
            let (want, want_ov) = syn_ref(&a, &x, &mem);
            let mut y = [0i16; 40];
            let mut m = mem;
            let ov = syn_filt(&a, &x, &mut y, &mut m, true);
            assert_eq!(&y[..], &want[..], "round {round}");
            assert_eq!(ov, want_ov, "round {round}");
            assert_eq!(&m[..], &want[30..], "round {round}");
            overflows += ov as u32;
            // Which rounds the whole-block (SIMD) path took, per its bound.
            let a_abs: i64 = a[1..].iter().map(|v| v.unsigned_abs() as i64).sum();
            let xmax = x.iter().map(|v| v.unsigned_abs() as i64).max().unwrap_or(0);
            if 2 * (xmax * 4096 + a_abs * 32768) <= MAX_32 as i64 {
                block_rounds += 1;
                block_overflows += ov as u32;
            }
        }
        assert!(
            overflows > 10 && overflows < 590,
            "{overflows} {block_rounds}"
        );
        // Both paths exercised, and the block path's Overflow flag too.
        assert!(block_rounds > 100 && block_rounds < 500, "{block_rounds}");
        assert!(block_overflows > 0, "{block_overflows}");
    }

    /// Filters whose coefficients leave no room for arbitrary 16-bit
    /// outputs (`Σ|a[k]|` above `2^15`, as typical LPC filters) but whose
    /// outputs stay small: the unsaturated kernels are vouched for by the
    /// outputs they found. `syn_filt` and `syn_filt2` equal the reference
    /// (outputs, Overflow flag, memory) on both clones, near the bound's
    /// edge and beyond (outputs that grow to the rails, memories holding
    /// -32768), and both verdicts of the a-posteriori bound occur.
    #[test]
    fn syn_filt_vouched_by_its_outputs_is_the_reference_on_both_clones() {
        let bound = |a: &[i16; MP1], xmax: i64, ymax: i64| {
            let a_abs: i64 = a[1..].iter().map(|v| v.unsigned_abs() as i64).sum();
            2 * (xmax * a[0].unsigned_abs() as i64 + a_abs * ymax) <= MAX_32 as i64
        };
        let amax = |v: &[i16]| v.iter().map(|v| v.unsigned_abs() as i64).max().unwrap_or(0);
        for baseline in [false, true] {
            BASELINE_ONLY.with(|b| b.set(baseline));
            let mut rnd = lcg(2718);
            let (mut late, mut late_failed) = (0, 0);
            for round in 0..2000usize {
                let mut lane = |k: usize| {
                    // A stable filter (five pole pairs of radius 0.5 to
                    // 0.98, Q12), Σ|a[k]| mostly above 2^15: no room for
                    // any 16-bit output; a random one now and then.
                    let mut p = [1.0f64, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0];
                    for s in 0..5 {
                        let r = 0.5 + 0.48 * (rnd() as f64 + 32768.0) / 65536.0;
                        let th = std::f64::consts::PI * (rnd() as f64 + 32768.0) / 65536.0;
                        let (c1, c2) = (-2.0 * r * th.cos(), r * r);
                        for j in (1..=2 * s + 2).rev() {
                            p[j] += c1 * p[j - 1] + if j >= 2 { c2 * p[j - 2] } else { 0.0 };
                        }
                    }
                    let mut a: [i16; MP1] =
                        p.map(|v| (v * 4096.0).round().clamp(-32768.0, 32767.0) as i16);
                    if (round + k) % 7 == 0 {
                        a = std::array::from_fn(|_| rnd() >> 2);
                        a[0] = 4096;
                    }
                    let xs = 3 + (round / 3 + k) % 10;
                    let mut x: Vec<i16> = (0..40).map(|_| rnd() >> xs).collect();
                    let mut mem: [i16; M] = std::array::from_fn(|_| rnd() >> (xs + 1));
                    match (round + k) % 11 {
                        0 => mem[round % M] = i16::MIN,
                        1 => x[round % 40] = i16::MAX,
                        2 => x.iter_mut().skip(1).for_each(|v| *v = 0),
                        _ => {}
                    }
                    (a, x, mem)
                };
                let lanes = [lane(0), lane(1)];
                let mut want = Vec::new();
                for (a, x, mem) in &lanes {
                    let (w, ov) = syn_ref(a, x, mem);
                    let ymax = amax(&w).max(amax(mem));
                    if !bound(a, amax(x), 1 << 15) && !ov {
                        if bound(a, amax(x), ymax) {
                            late += 1;
                        } else {
                            late_failed += 1;
                        }
                    }
                    want.push((w, ov));
                }
                for (k, (a, x, mem)) in lanes.iter().enumerate() {
                    let (mut y, mut m) = ([0i16; 40], *mem);
                    let ov = syn_filt(a, x, &mut y, &mut m, true);
                    assert_eq!((&y[..], ov), (&want[k].0[..], want[k].1), "round {round}");
                    assert_eq!(&m[..], &want[k].0[30..], "round {round}");
                }
                let (mut y0, mut y1) = ([0i16; 40], [0i16; 40]);
                let (mut m0, mut m1) = (lanes[0].2, lanes[1].2);
                let ov = syn_filt2(
                    [&lanes[0].0, &lanes[1].0],
                    [&lanes[0].1, &lanes[1].1],
                    [&mut y0, &mut y1],
                    [&mut m0, &mut m1],
                    [true, false],
                );
                assert_eq!(
                    (&y0[..], ov[0]),
                    (&want[0].0[..], want[0].1),
                    "round {round}"
                );
                assert_eq!(
                    (&y1[..], ov[1]),
                    (&want[1].0[..], want[1].1),
                    "round {round}"
                );
                assert_eq!(&m0[..], &want[0].0[30..], "round {round}");
                assert_eq!(m1, lanes[1].2, "round {round}");
            }
            BASELINE_ONLY.with(|b| b.set(false));
            assert!(late > 500 && late_failed > 100, "{late} {late_failed}");
        }
    }

    /// `syn_impulse2` gives the reference's outputs of two filters of a
    /// zero-padded numerator from zero memory, on both clones, from gentle
    /// to saturating numerators and filters.
    #[test]
    fn syn_impulse2_is_two_reference_filters_on_both_clones() {
        avx2_multiversion! {
            fn imp_mv(
                a: [&[i16; MP1]; 2],
                x: [&[i16; MP1]; 2],
                h: [&mut [i16; L_H]; 2],
            ) = syn_impulse2;
        }
        let mut rnd = lcg(31337);
        let mut saturated = 0;
        for n in 0..2000usize {
            let mut lane = |k: usize| {
                let ca = 1 + (n + 3 * k) % 8;
                let mut a: [i16; MP1] = std::array::from_fn(|_| rnd() >> ca);
                a[0] = 4096;
                let mut x: [i16; MP1] = std::array::from_fn(|_| rnd() >> ((n / 2 + k) % 6));
                match (n + k) % 9 {
                    0 => x = [i16::MIN; MP1],
                    1 => x[0] = i16::MAX,
                    2 => a = [i16::MIN; MP1],
                    _ => {}
                }
                (a, x)
            };
            let lanes = [lane(0), lane(1)];
            let want: Vec<Vec<i16>> = lanes
                .iter()
                .map(|(a, x)| {
                    let mut xin = x.to_vec();
                    xin.resize(L_H, 0);
                    syn_ref(a, &xin, &[0; M]).0
                })
                .collect();
            saturated += want
                .iter()
                .flatten()
                .filter(|&&v| v == MAX_16 || v == MIN_16)
                .count();
            for baseline in [false, true] {
                BASELINE_ONLY.with(|b| b.set(baseline));
                let (mut h0, mut h1) = ([0i16; L_H], [0i16; L_H]);
                imp_mv(
                    [&lanes[0].0, &lanes[1].0],
                    [&lanes[0].1, &lanes[1].1],
                    [&mut h0, &mut h1],
                );
                BASELINE_ONLY.with(|b| b.set(false));
                assert_eq!(&h0[..], &want[0][..], "n {n}");
                assert_eq!(&h1[..], &want[1][..], "n {n}");
            }
        }
        assert!(saturated > 1000, "{saturated}");
    }

    /// `syn_filt2` is two `syn_filt` calls (outputs, Overflow flags,
    /// memories) on both clones: equal lengths (the interleaved kernel),
    /// odd and unequal lengths (declined to the single path), filters and
    /// signals from gentle to saturating, each lane on its own scale.
    #[test]
    fn syn_filt2_is_two_reference_filters_on_both_clones() {
        for baseline in [false, true] {
            BASELINE_ONLY.with(|b| b.set(baseline));
            let mut rnd = lcg(4242);
            let (mut paired, mut overflows) = (0, 0);
            for round in 0..1200usize {
                let lens = match round % 5 {
                    0 => [22, 22],
                    1 => [21, 21],
                    2 => [40, 22],
                    _ => [40, 40],
                };
                let mut lane = |k: usize| {
                    let ca = 1 + (round / 2 + 5 * k) % 11;
                    let xs = (round / 3 + 2 * k) % 7;
                    let mut a: [i16; MP1] = std::array::from_fn(|_| rnd() >> ca);
                    a[0] = 4096;
                    if (round + k) % 19 == 0 {
                        // A resonant filter: outputs grow to the rails.
                        a[1] = -8000;
                        a[2] = 4000;
                    }
                    let mut x: Vec<i16> = (0..lens[k]).map(|_| rnd() >> xs).collect();
                    if (round + 3 * k) % 23 == 0 {
                        x.iter_mut()
                            .for_each(|v| *v = if *v < 0 { i16::MIN } else { i16::MAX });
                    }
                    if (round + k) % 29 == 0 {
                        x.iter_mut().skip(1).for_each(|v| *v = 0);
                    }
                    let mem: [i16; M] = std::array::from_fn(|_| rnd() >> (xs + 2));
                    (a, x, mem)
                };
                let (a0, x0, mem0) = lane(0);
                let (a1, x1, mem1) = lane(1);
                let (want0, ov0) = syn_ref(&a0, &x0, &mem0);
                let (want1, ov1) = syn_ref(&a1, &x1, &mem1);
                let (mut y0, mut y1) = ([0i16; 40], [0i16; 40]);
                let (mut m0, mut m1) = (mem0, mem1);
                let update = [round % 2 == 0, round % 3 == 0];
                let ov = syn_filt2(
                    [&a0, &a1],
                    [&x0, &x1],
                    [&mut y0[..lens[0]], &mut y1[..lens[1]]],
                    [&mut m0, &mut m1],
                    update,
                );
                assert_eq!(&y0[..lens[0]], &want0[..], "round {round}");
                assert_eq!(&y1[..lens[1]], &want1[..], "round {round}");
                assert_eq!(ov, [ov0, ov1], "round {round}");
                let after = |m: &[i16; M], mem: &[i16; M], w: &[i16], up: bool| {
                    if up {
                        assert_eq!(&m[..], &w[w.len() - M..], "round {round}");
                    } else {
                        assert_eq!(m, mem, "round {round}");
                    }
                };
                after(&m0, &mem0, &want0, update[0]);
                after(&m1, &mem1, &want1, update[1]);
                overflows += (ov0 | ov1) as u32;
                // Rounds the interleaved kernel can take (both lanes under
                // the block bound, same even length).
                let bound = |a: &[i16; MP1], x: &[i16]| {
                    let a_abs: i64 = a[1..].iter().map(|v| v.unsigned_abs() as i64).sum();
                    let xmax = x.iter().map(|v| v.unsigned_abs() as i64).max().unwrap_or(0);
                    2 * (xmax * 4096 + a_abs * 32768) <= MAX_32 as i64
                };
                paired +=
                    (lens[0] == lens[1] && lens[0] % 2 == 0 && bound(&a0, &x0) && bound(&a1, &x1))
                        as u32;
            }
            BASELINE_ONLY.with(|b| b.set(false));
            assert!(paired > 100 && overflows > 50, "{paired} {overflows}");
        }
    }
}
