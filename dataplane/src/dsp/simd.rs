//! The echo canceller's filter kernel and the DTMF detector's block
//! correlation, and the only `unsafe` in the DSP code: the kernel body is compiled three times (baseline, AVX2+FMA,
//! AVX-512F) with `#[target_feature]`, and [`run_kernel`] calls the build
//! the CPU was found to support when the canceller was made
//! ([`Kernel::detect`] runs `is_x86_feature_detected!`). The bodies are
//! safe, lane-chunked loops that LLVM vectorises; Rust does not reassociate
//! or fuse float operations, so every build computes the same values.
#![allow(unsafe_code)]

use super::ec::{Kernel, KernelOut, LANES};
use realfft::num_complex::Complex32;

/// The fused kernel: `w_bg += a * gain * prev_w`, then returns
/// `(w_bg . cur_w, w_bg . cur, w_fg . cur)`. `prev_w` is `cur_w` one sample
/// earlier. Lengths are equal multiples of [`LANES`].
#[inline(always)]
fn kernel_body(
    a: f32,
    gain: &[f32],
    prev_w: &[f32],
    cur_w: &[f32],
    cur: &[f32],
    w_bg: &mut [f32],
    w_fg: &[f32],
) -> KernelOut {
    let mut acc_w = [0f32; LANES];
    let mut acc_b = [0f32; LANES];
    let mut acc_f = [0f32; LANES];
    let mut acc_n = [0f32; LANES];
    // Fixed-size chunks: no bounds checks in the lane loop, so it vectorises.
    let chunks = w_bg
        .as_chunks_mut::<LANES>()
        .0
        .iter_mut()
        .zip(w_fg.as_chunks::<LANES>().0)
        .zip(gain.as_chunks::<LANES>().0)
        .zip(prev_w.as_chunks::<LANES>().0)
        .zip(cur_w.as_chunks::<LANES>().0)
        .zip(cur.as_chunks::<LANES>().0);
    for (((((wb, wf), g), xp), xw), xc) in chunks {
        for i in 0..LANES {
            wb[i] += a * g[i] * xp[i];
            acc_w[i] += wb[i] * xw[i];
            acc_b[i] += wb[i] * xc[i];
            acc_f[i] += wf[i] * xc[i];
            acc_n[i] += g[i] * xw[i] * xw[i];
        }
    }
    (hsum(&acc_w), hsum(&acc_b), hsum(&acc_f), hsum(&acc_n))
}

/// Pairwise sum of the lanes (same order in every build).
#[inline(always)]
fn hsum(v: &[f32; LANES]) -> f32 {
    let mut h = [0f32; LANES / 2];
    for i in 0..LANES / 2 {
        h[i] = v[i] + v[i + LANES / 2];
    }
    let mut q = [0f32; LANES / 4];
    for i in 0..LANES / 4 {
        q[i] = h[i] + h[i + LANES / 4];
    }
    (q[0] + q[2]) + (q[1] + q[3])
}

/// Filter outputs only (no update): the same pass with `a == 0` would do,
/// but skipping the store halves the memory traffic when adaptation is off.
#[inline(always)]
fn dot3_body(gain: &[f32], cur_w: &[f32], cur: &[f32], w_bg: &[f32], w_fg: &[f32]) -> KernelOut {
    let mut acc_w = [0f32; LANES];
    let mut acc_b = [0f32; LANES];
    let mut acc_f = [0f32; LANES];
    let mut acc_n = [0f32; LANES];
    let chunks = w_bg
        .as_chunks::<LANES>()
        .0
        .iter()
        .zip(w_fg.as_chunks::<LANES>().0)
        .zip(gain.as_chunks::<LANES>().0)
        .zip(cur_w.as_chunks::<LANES>().0)
        .zip(cur.as_chunks::<LANES>().0);
    for ((((wb, wf), g), xw), xc) in chunks {
        for i in 0..LANES {
            acc_w[i] += wb[i] * xw[i];
            acc_b[i] += wb[i] * xc[i];
            acc_f[i] += wf[i] * xc[i];
            acc_n[i] += g[i] * xw[i] * xw[i];
        }
    }
    (hsum(&acc_w), hsum(&acc_b), hsum(&acc_f), hsum(&acc_n))
}

#[inline(always)]
fn body(
    a: f32,
    gain: &[f32],
    prev_w: &[f32],
    cur_w: &[f32],
    cur: &[f32],
    w_bg: &mut [f32],
    w_fg: &[f32],
) -> KernelOut {
    if a == 0.0 {
        dot3_body(gain, cur_w, cur, w_bg, w_fg)
    } else {
        kernel_body(a, gain, prev_w, cur_w, cur, w_bg, w_fg)
    }
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
fn body_avx512(
    a: f32,
    gain: &[f32],
    prev_w: &[f32],
    cur_w: &[f32],
    cur: &[f32],
    w_bg: &mut [f32],
    w_fg: &[f32],
) -> KernelOut {
    body(a, gain, prev_w, cur_w, cur, w_bg, w_fg)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
fn body_avx2(
    a: f32,
    gain: &[f32],
    prev_w: &[f32],
    cur_w: &[f32],
    cur: &[f32],
    w_bg: &mut [f32],
    w_fg: &[f32],
) -> KernelOut {
    body(a, gain, prev_w, cur_w, cur, w_bg, w_fg)
}

/// Run the kernel build chosen at construction.
#[allow(clippy::too_many_arguments)]
pub(super) fn run_kernel(
    kernel: Kernel,
    a: f32,
    gain: &[f32],
    prev_w: &[f32],
    cur_w: &[f32],
    cur: &[f32],
    w_bg: &mut [f32],
    w_fg: &[f32],
) -> KernelOut {
    // The detection macros cache their answer: one atomic load each.
    match kernel {
        #[cfg(target_arch = "x86_64")]
        Kernel::Avx512 if std::arch::is_x86_feature_detected!("avx512f") => {
            // SAFETY: the guard just checked that this CPU has AVX-512F, the
            // only feature `body_avx512` enables.
            unsafe { body_avx512(a, gain, prev_w, cur_w, cur, w_bg, w_fg) }
        }
        #[cfg(target_arch = "x86_64")]
        Kernel::Avx2 | Kernel::Avx512 if avx2_fma() => {
            // SAFETY: the guard just checked that this CPU has AVX2 and FMA,
            // the features `body_avx2` enables.
            unsafe { body_avx2(a, gain, prev_w, cur_w, cur, w_bg, w_fg) }
        }
        _ => body(a, gain, prev_w, cur_w, cur, w_bg, w_fg),
    }
}

/// DTMF block correlation: `sum_n x[n] * table[n][k]` for the 16 table
/// columns (cos and sin of the eight DTMF frequencies). Three interleaved
/// accumulator sets (the block length is a multiple of 3), so each
/// multiply-add depends on the one three samples back: the loop runs at
/// throughput rather than add latency. One row is one AVX-512 register or
/// two AVX2 ones.
#[inline(always)]
fn dtmf_body(x: &[f32], table: &[[f32; 16]]) -> [f32; 16] {
    let mut a = [[0f32; 16]; 3];
    for (xs, rows) in x.as_chunks::<3>().0.iter().zip(table.as_chunks::<3>().0) {
        for j in 0..3 {
            for k in 0..16 {
                a[j][k] += xs[j] * rows[j][k];
            }
        }
    }
    let mut acc = [0f32; 16];
    for k in 0..16 {
        acc[k] = (a[0][k] + a[1][k]) + a[2][k];
    }
    acc
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
fn dtmf_avx512(x: &[f32], table: &[[f32; 16]]) -> [f32; 16] {
    dtmf_body(x, table)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
fn dtmf_avx2(x: &[f32], table: &[[f32; 16]]) -> [f32; 16] {
    dtmf_body(x, table)
}

/// The DTMF correlation with the best build this CPU runs (same values in
/// every build: no float reassociation or fusion).
pub(super) fn dtmf_correlate(kernel: Kernel, x: &[f32], table: &[[f32; 16]]) -> [f32; 16] {
    match kernel {
        #[cfg(target_arch = "x86_64")]
        Kernel::Avx512 if std::arch::is_x86_feature_detected!("avx512f") => {
            // SAFETY: the guard just checked that this CPU has AVX-512F, the
            // only feature `dtmf_avx512` enables.
            unsafe { dtmf_avx512(x, table) }
        }
        #[cfg(target_arch = "x86_64")]
        Kernel::Avx2 | Kernel::Avx512 if avx2_fma() => {
            // SAFETY: the guard just checked that this CPU has AVX2 and FMA,
            // the features `dtmf_avx2` enables.
            unsafe { dtmf_avx2(x, table) }
        }
        _ => dtmf_body(x, table),
    }
}

/// `Complex32` values as their `re, im` pairs: the real FFT's packing of
/// even/odd samples (`z[n] = x[2n] + j x[2n + 1]`) is this view.
pub(super) fn as_pairs(z: &[Complex32]) -> &[f32] {
    // SAFETY: `Complex32` is `#[repr(C)] { re: f32, im: f32 }`: size 8,
    // alignment 4, so `z` is `2 * z.len()` contiguous, aligned f32.
    unsafe { std::slice::from_raw_parts(z.as_ptr().cast::<f32>(), 2 * z.len()) }
}

/// [`as_pairs`], mutable.
pub(super) fn as_pairs_mut(z: &mut [Complex32]) -> &mut [f32] {
    // SAFETY: as in `as_pairs`; the borrow of `z` is handed over.
    unsafe { std::slice::from_raw_parts_mut(z.as_mut_ptr().cast::<f32>(), 2 * z.len()) }
}

/// Proof that this CPU has AVX2 and FMA, the features the `*_avx2` kernels
/// below enable: only [`Avx2::detect`] makes one, after checking. Callers
/// keep an `Option<Avx2>` per canceller and pass it as `avx2`; a kernel
/// handed `Some` runs its AVX2 build without asking the CPU again (that
/// check, an atomic load and a branch per call, was ~2 % of the frequency-
/// domain canceller's instructions).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Avx2(());

impl Avx2 {
    /// `Some` where the CPU has AVX2 and FMA.
    pub(super) fn detect() -> Option<Self> {
        avx2_fma().then_some(Avx2(()))
    }
}

/// This CPU has AVX2 and FMA (see [`Avx2`]).
pub(super) fn avx2_fma() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("fma")
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        false
    }
}

/// The split pass of a real FFT of `4 m` points done as a complex FFT of
/// `m = z.len() - 1` points: `z[..m]` holds `Z`, the FFT of the packed
/// samples, and becomes bins `0..=m` of the real spectrum: `X[k] = E + W^k O`
/// with `E = (Z[k] + Z*[m-k]) / 2`, `O = (Z[k] - Z*[m-k]) / 2j` and
/// `X[m-k] = (E - W^k O)*`; `tw[k] = W^k = e^{-j pi k / m}` for `k <= m / 2`.
/// With `avx2`, four bin pairs per step; equal to the plain loop within
/// float rounding.
pub(super) fn rfft_split(avx2: Option<Avx2>, z: &mut [Complex32], tw: &[Complex32]) {
    let m = z.len() - 1;
    assert!(m.is_multiple_of(2) && tw.len() > m / 2);
    let z0 = z[0];
    z[0] = Complex32::new(z0.re + z0.im, 0.0);
    z[m] = Complex32::new(z0.re - z0.im, 0.0);
    let mut k = 1;
    #[cfg(target_arch = "x86_64")]
    if avx2.is_some() {
        // SAFETY: an `Avx2` exists only where the CPU has AVX2 and FMA, the
        // features the callee enables; it stays in bounds (see its loop).
        k = unsafe { rfft_split_avx2(z, tw) };
    }
    let _ = avx2;
    while k < m / 2 {
        let a = z[k];
        let b = z[m - k].conj();
        let e = (a + b) * 0.5;
        let d = (a - b) * 0.5;
        let t = tw[k] * Complex32::new(d.im, -d.re);
        z[k] = e + t;
        z[m - k] = (e - t).conj();
        k += 1;
    }
    z[m / 2] = z[m / 2].conj();
}

/// The inverse of [`rfft_split`] (times two): bins `0..=m` of a real
/// spectrum in `x` (imaginary parts of bins 0 and `m` ignored) become in
/// `x[..m]` the `2 Z` whose unnormalised inverse complex FFT gives the
/// packed samples times `4 m`: `2 Z[k] = 2E + 2j O` with `2E = X[k] + X*[m-k]`
/// and `2O = (X[k] - X*[m-k]) W*^k`, and for `m - k` the conjugates.
pub(super) fn rfft_merge(avx2: Option<Avx2>, x: &mut [Complex32], tw: &[Complex32]) {
    let m = x.len() - 1;
    assert!(m.is_multiple_of(2) && tw.len() > m / 2);
    let (a, b) = (x[0].re, x[m].re);
    x[0] = Complex32::new(a + b, a - b);
    let mut k = 1;
    #[cfg(target_arch = "x86_64")]
    if avx2.is_some() {
        // SAFETY: as in `rfft_split`.
        k = unsafe { rfft_merge_avx2(x, tw) };
    }
    let _ = avx2;
    while k < m / 2 {
        let u = x[k];
        let v = x[m - k].conj();
        let s = u + v;
        let d = (u - v) * tw[k].conj();
        x[k] = Complex32::new(s.re - d.im, s.im + d.re);
        x[m - k] = Complex32::new(s.re + d.im, d.re - s.im);
        k += 1;
    }
    x[m / 2] = x[m / 2].conj() * 2.0;
}

/// Four complex values in reverse order.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
fn rev4(v: std::arch::x86_64::__m256) -> std::arch::x86_64::__m256 {
    use std::arch::x86_64::*;
    _mm256_permute_ps(_mm256_permute2f128_ps::<0x01>(v, v), 0b01_00_11_10)
}

/// Complex product, four at a time (fused: within rounding of the plain one).
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
fn cmul4(a: std::arch::x86_64::__m256, b: std::arch::x86_64::__m256) -> std::arch::x86_64::__m256 {
    use std::arch::x86_64::*;
    let bsw = _mm256_permute_ps(b, 0b10_11_00_01);
    _mm256_fmaddsub_ps(
        _mm256_moveldup_ps(a),
        b,
        _mm256_mul_ps(_mm256_movehdup_ps(a), bsw),
    )
}

/// [`rfft_split`]'s pairs four at a time from `k = 1` while `k + 3 < m - k - 3`
/// (the two groups stay apart); returns the first `k` left to do.
///
/// # Safety
/// AVX2 and FMA present; `z.len() == m + 1` and `tw.len() > m / 2`.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn rfft_split_avx2(z: &mut [Complex32], tw: &[Complex32]) -> usize {
    use std::arch::x86_64::*;
    let m = z.len() - 1;
    let half = _mm256_set1_ps(0.5);
    // Sign flips: odd lanes (conjugate), even lanes.
    let odd = _mm256_setr_ps(0.0, -0.0, 0.0, -0.0, 0.0, -0.0, 0.0, -0.0);
    let mut k = 1;
    while k + 4 <= m / 2 && k + 3 < m - k - 3 {
        let p = z.as_mut_ptr().cast::<f32>();
        // SAFETY: k + 3 < m / 2 <= m - k - 3 and m - k < z.len(): both
        // groups of four are in bounds and disjoint; k + 3 < tw.len().
        unsafe {
            let a = _mm256_loadu_ps(p.add(2 * k));
            let b = _mm256_xor_ps(rev4(_mm256_loadu_ps(p.add(2 * (m - k - 3)))), odd);
            let e = _mm256_mul_ps(_mm256_add_ps(a, b), half);
            let d = _mm256_mul_ps(_mm256_sub_ps(a, b), half);
            // (d.im, -d.re)
            let o = _mm256_xor_ps(_mm256_permute_ps(d, 0b10_11_00_01), odd);
            let t = cmul4(_mm256_loadu_ps(tw.as_ptr().add(k).cast::<f32>()), o);
            _mm256_storeu_ps(p.add(2 * k), _mm256_add_ps(e, t));
            let r = _mm256_xor_ps(_mm256_sub_ps(e, t), odd);
            _mm256_storeu_ps(p.add(2 * (m - k - 3)), rev4(r));
        }
        k += 4;
    }
    k
}

/// [`rfft_merge`]'s pairs four at a time, as [`rfft_split_avx2`].
///
/// # Safety
/// As [`rfft_split_avx2`].
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn rfft_merge_avx2(x: &mut [Complex32], tw: &[Complex32]) -> usize {
    use std::arch::x86_64::*;
    let m = x.len() - 1;
    let odd = _mm256_setr_ps(0.0, -0.0, 0.0, -0.0, 0.0, -0.0, 0.0, -0.0);
    let mut k = 1;
    while k + 4 <= m / 2 && k + 3 < m - k - 3 {
        let p = x.as_mut_ptr().cast::<f32>();
        // SAFETY: as in `rfft_split_avx2`.
        unsafe {
            let u = _mm256_loadu_ps(p.add(2 * k));
            let v = _mm256_xor_ps(rev4(_mm256_loadu_ps(p.add(2 * (m - k - 3)))), odd);
            let s = _mm256_add_ps(u, v);
            let w = _mm256_xor_ps(_mm256_loadu_ps(tw.as_ptr().add(k).cast::<f32>()), odd);
            let d = cmul4(_mm256_sub_ps(u, v), w);
            // j d = (-d.im, d.re); x[k] = s + j d; x[m-k] = s* + j d*
            // = (s.re + d.im, d.re - s.im).
            let jd = _mm256_xor_ps(
                _mm256_permute_ps(d, 0b10_11_00_01),
                _mm256_setr_ps(-0.0, 0.0, -0.0, 0.0, -0.0, 0.0, -0.0, 0.0),
            );
            _mm256_storeu_ps(p.add(2 * k), _mm256_add_ps(s, jd));
            // s* + (j d)*... (s.re + d.im, -s.im + d.re) = conj(s) + (d.im, d.re)
            let dsw = _mm256_permute_ps(d, 0b10_11_00_01);
            let r = _mm256_add_ps(_mm256_xor_ps(s, odd), dsw);
            _mm256_storeu_ps(p.add(2 * (m - k - 3)), rev4(r));
        }
        k += 4;
    }
    k
}

/// `acc = sum_p a_p * b_p` (complex, bin by bin) over partitions: term `p`
/// multiplies the spectrum at `a[a_offs[p]..]` by the one at
/// `b[b_offs[p]..]`, `acc.len()` bins each (the caller picks which
/// partitions take part: the foreground skips the silent ones). With `avx2`,
/// four bins per step through every partition with the sums held in
/// registers (two accumulators, combined once per bin group): no load and
/// store of `acc` per partition, no call per partition. Equal to the plain
/// loops within float rounding.
pub(super) fn cmac_parts(
    avx2: Option<Avx2>,
    acc: &mut [Complex32],
    a: &[Complex32],
    a_offs: &[usize],
    b: &[Complex32],
    b_offs: &[usize],
) {
    let n = acc.len();
    assert_eq!(a_offs.len(), b_offs.len());
    assert!(a_offs.iter().all(|&o| o + n <= a.len()));
    assert!(b_offs.iter().all(|&o| o + n <= b.len()));
    #[cfg(target_arch = "x86_64")]
    if avx2.is_some() {
        // SAFETY: an `Avx2` exists only where the CPU has AVX2 and FMA, the
        // features the callee enables; the asserts above are the bounds it
        // relies on.
        unsafe { cmac_parts_avx2(acc, a, a_offs, b, b_offs) };
        return;
    }
    let _ = avx2;
    cmac_parts_scalar(acc, a, a_offs, b, b_offs, 0);
}

/// [`cmac_parts`] from bin `from` on, plain loops (bins outer: the AVX2
/// build leaves one bin of 65 here).
fn cmac_parts_scalar(
    acc: &mut [Complex32],
    a: &[Complex32],
    a_offs: &[usize],
    b: &[Complex32],
    b_offs: &[usize],
    from: usize,
) {
    for (k, o) in acc.iter_mut().enumerate().skip(from) {
        let mut s = Complex32::new(0.0, 0.0);
        for (&ao, &bo) in a_offs.iter().zip(b_offs) {
            let (x, y) = (a[ao + k], b[bo + k]);
            s.re += x.re * y.re - x.im * y.im;
            s.im += x.re * y.im + x.im * y.re;
        }
        *o = s;
    }
}

/// # Safety
/// AVX2 and FMA present; `a_offs` and `b_offs` of one length, with
/// `o + acc.len()` at most `a.len()` for every `o` in `a_offs` and at most
/// `b.len()` for every `o` in `b_offs`.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn cmac_parts_avx2(
    acc: &mut [Complex32],
    a: &[Complex32],
    a_offs: &[usize],
    b: &[Complex32],
    b_offs: &[usize],
) {
    use std::arch::x86_64::*;
    let n = acc.len();
    let mut i = 0;
    while i + 4 <= n {
        let mut rr = _mm256_setzero_ps();
        let mut ii = _mm256_setzero_ps();
        for (&ao, &bo) in a_offs.iter().zip(b_offs) {
            // SAFETY: i + 4 <= n, so a[ao + i..][..4] and b[bo + i..][..4]
            // are in bounds by the caller's contract; `Complex32` is
            // `#[repr(C)] { re, im }`: eight contiguous f32.
            unsafe {
                let va = _mm256_loadu_ps(a.as_ptr().add(ao + i).cast::<f32>());
                let vb = _mm256_loadu_ps(b.as_ptr().add(bo + i).cast::<f32>());
                let bsw = _mm256_permute_ps(vb, 0b10_11_00_01);
                // rr: (ar*br, ar*bi); ii: (ai*bi, ai*br).
                rr = _mm256_fmadd_ps(_mm256_moveldup_ps(va), vb, rr);
                ii = _mm256_fmadd_ps(_mm256_movehdup_ps(va), bsw, ii);
            }
        }
        // Even lanes rr - ii, odd lanes rr + ii.
        // SAFETY: i + 4 <= n = acc.len().
        unsafe {
            _mm256_storeu_ps(
                acc.as_mut_ptr().add(i).cast::<f32>(),
                _mm256_addsub_ps(rr, ii),
            )
        };
        i += 4;
    }
    cmac_parts_scalar(acc, a, a_offs, b, b_offs, i);
}

/// `w += s * conj(x) * g` (complex, bin by bin): the frequency-domain
/// canceller's update, with an AVX2 build as for [`cmac`].
#[inline]
pub(super) fn conj_update(
    avx2: Option<Avx2>,
    w: &mut [Complex32],
    x: &[Complex32],
    g: &[Complex32],
    s: f32,
) {
    #[cfg(target_arch = "x86_64")]
    if avx2.is_some() {
        // SAFETY: an `Avx2` exists only where the CPU has AVX2 and FMA, the
        // features the callee enables; it stays within the common length of
        // its slices.
        unsafe { conj_update_avx2(w, x, g, s) };
        return;
    }
    let _ = avx2;
    conj_update_scalar(w, x, g, s);
}

fn conj_update_scalar(w: &mut [Complex32], x: &[Complex32], g: &[Complex32], s: f32) {
    for ((o, x), g) in w.iter_mut().zip(x).zip(g) {
        o.re += s * (x.re * g.re + x.im * g.im);
        o.im += s * (x.re * g.im - x.im * g.re);
    }
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
fn conj_update_avx2(w: &mut [Complex32], x: &[Complex32], g: &[Complex32], s: f32) {
    use std::arch::x86_64::*;
    let n = w.len().min(x.len()).min(g.len());
    let vs = _mm256_set1_ps(s);
    let mut i = 0;
    while i + 4 <= n {
        // SAFETY: as in `cmac_avx2`: in bounds, eight contiguous f32.
        unsafe {
            let vx = _mm256_loadu_ps(x.as_ptr().add(i).cast::<f32>());
            let vg = _mm256_loadu_ps(g.as_ptr().add(i).cast::<f32>());
            let po = w.as_mut_ptr().add(i).cast::<f32>();
            let xre = _mm256_moveldup_ps(vx);
            let xim = _mm256_movehdup_ps(vx);
            let gsw = _mm256_permute_ps(vg, 0b10_11_00_01);
            // Even lanes: xr*gr + xi*gi; odd lanes: xr*gi - xi*gr.
            let prod = _mm256_fmsubadd_ps(xre, vg, _mm256_mul_ps(xim, gsw));
            _mm256_storeu_ps(po, _mm256_fmadd_ps(vs, prod, _mm256_loadu_ps(po)));
        }
        i += 4;
    }
    conj_update_scalar(&mut w[i..n], &x[i..n], &g[i..n], s);
}

/// [`conj_update`] that also returns the updated spectrum's energy
/// `sum |w|^2` (the proportionate step's partition energies come free
/// with the update instead of a second pass over every partition).
#[inline]
pub(super) fn conj_update_energy(
    avx2: Option<Avx2>,
    w: &mut [Complex32],
    x: &[Complex32],
    g: &[Complex32],
    s: f32,
) -> f32 {
    #[cfg(target_arch = "x86_64")]
    if avx2.is_some() {
        // SAFETY: an `Avx2` exists only where the CPU has AVX2 and FMA, the
        // features the callee enables; it stays within the common length of
        // its slices.
        return unsafe { conj_update_energy_avx2(w, x, g, s) };
    }
    let _ = avx2;
    conj_update_scalar(w, x, g, s);
    w.iter().map(|c| c.norm_sqr()).sum()
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
fn conj_update_energy_avx2(w: &mut [Complex32], x: &[Complex32], g: &[Complex32], s: f32) -> f32 {
    use std::arch::x86_64::*;
    let n = w.len().min(x.len()).min(g.len());
    let vs = _mm256_set1_ps(s);
    let mut en = _mm256_setzero_ps();
    let mut i = 0;
    while i + 4 <= n {
        // SAFETY: as in `cmac_avx2`: in bounds, eight contiguous f32.
        unsafe {
            let vx = _mm256_loadu_ps(x.as_ptr().add(i).cast::<f32>());
            let vg = _mm256_loadu_ps(g.as_ptr().add(i).cast::<f32>());
            let po = w.as_mut_ptr().add(i).cast::<f32>();
            let xre = _mm256_moveldup_ps(vx);
            let xim = _mm256_movehdup_ps(vx);
            let gsw = _mm256_permute_ps(vg, 0b10_11_00_01);
            let prod = _mm256_fmsubadd_ps(xre, vg, _mm256_mul_ps(xim, gsw));
            let v = _mm256_fmadd_ps(vs, prod, _mm256_loadu_ps(po));
            _mm256_storeu_ps(po, v);
            en = _mm256_fmadd_ps(v, v, en);
        }
        i += 4;
    }
    conj_update_scalar(&mut w[i..n], &x[i..n], &g[i..n], s);
    let q = _mm_add_ps(_mm256_castps256_ps128(en), _mm256_extractf128_ps::<1>(en));
    let r = _mm_add_ps(q, _mm_movehl_ps(q, q));
    let head = _mm_cvtss_f32(_mm_add_ss(r, _mm_shuffle_ps::<1>(r, r)));
    head + w[i..n].iter().map(|c| c.norm_sqr()).sum::<f32>()
}

/// Lanes of the short-filter kernels ([`short_filter`], [`short_update`]).
pub(super) const SHORT_LANES: usize = 16;

#[inline(always)]
fn short_filter_body(w: &[f32], g: &[f32], x: &[f32]) -> (f32, f32) {
    let mut acc_y = [0f32; SHORT_LANES];
    let mut acc_n = [0f32; SHORT_LANES];
    for ((a, gg), b) in w
        .as_chunks::<SHORT_LANES>()
        .0
        .iter()
        .zip(g.as_chunks::<SHORT_LANES>().0)
        .zip(x.as_chunks::<SHORT_LANES>().0)
    {
        for i in 0..SHORT_LANES {
            acc_y[i] += a[i] * b[i];
            acc_n[i] += gg[i] * (b[i] * b[i]);
        }
    }
    (hsum16(&acc_y), hsum16(&acc_n))
}

#[inline(always)]
fn hsum16(v: &[f32; SHORT_LANES]) -> f32 {
    let mut h = [0f32; 8];
    for i in 0..8 {
        h[i] = v[i] + v[i + 8];
    }
    ((h[0] + h[4]) + (h[1] + h[5])) + ((h[2] + h[6]) + (h[3] + h[7]))
}

#[inline(always)]
fn short_update_body(w: &mut [f32], g: &[f32], x: &[f32], c: f32) {
    for ((a, gg), b) in w
        .as_chunks_mut::<SHORT_LANES>()
        .0
        .iter_mut()
        .zip(g.as_chunks::<SHORT_LANES>().0)
        .zip(x.as_chunks::<SHORT_LANES>().0)
    {
        for i in 0..SHORT_LANES {
            a[i] += c * (gg[i] * b[i]);
        }
    }
}

/// [`short_filter_body`] in AVX2 intrinsics (LLVM leaves that loop's
/// two reductions scalar): the same lane order and no fusion, so the same
/// values.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
fn short_filter_avx2(w: &[f32], g: &[f32], x: &[f32]) -> (f32, f32) {
    use std::arch::x86_64::*;
    let n = w.len().min(g.len()).min(x.len()) / SHORT_LANES * SHORT_LANES;
    let (mut y0, mut y1) = (_mm256_setzero_ps(), _mm256_setzero_ps());
    let (mut n0, mut n1) = (_mm256_setzero_ps(), _mm256_setzero_ps());
    let mut i = 0;
    while i + SHORT_LANES <= n {
        // SAFETY: i + 16 <= n and every slice holds at least n values
        // (unaligned loads).
        unsafe {
            let w0 = _mm256_loadu_ps(w.as_ptr().add(i));
            let w1 = _mm256_loadu_ps(w.as_ptr().add(i + 8));
            let g0 = _mm256_loadu_ps(g.as_ptr().add(i));
            let g1 = _mm256_loadu_ps(g.as_ptr().add(i + 8));
            let x0 = _mm256_loadu_ps(x.as_ptr().add(i));
            let x1 = _mm256_loadu_ps(x.as_ptr().add(i + 8));
            y0 = _mm256_add_ps(y0, _mm256_mul_ps(w0, x0));
            y1 = _mm256_add_ps(y1, _mm256_mul_ps(w1, x1));
            n0 = _mm256_add_ps(n0, _mm256_mul_ps(g0, _mm256_mul_ps(x0, x0)));
            n1 = _mm256_add_ps(n1, _mm256_mul_ps(g1, _mm256_mul_ps(x1, x1)));
        }
        i += SHORT_LANES;
    }
    let mut acc_y = [0f32; SHORT_LANES];
    let mut acc_n = [0f32; SHORT_LANES];
    // SAFETY: each array holds 16 f32: two unaligned 8-lane stores each.
    unsafe {
        _mm256_storeu_ps(acc_y.as_mut_ptr(), y0);
        _mm256_storeu_ps(acc_y.as_mut_ptr().add(8), y1);
        _mm256_storeu_ps(acc_n.as_mut_ptr(), n0);
        _mm256_storeu_ps(acc_n.as_mut_ptr().add(8), n1);
    }
    (hsum16(&acc_y), hsum16(&acc_n))
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
fn short_update_avx2(w: &mut [f32], g: &[f32], x: &[f32], c: f32) {
    short_update_body(w, g, x, c)
}

/// `(w . x, x' G x)` (`G` the diagonal `g`) over whole chunks of
/// [`SHORT_LANES`]: the frequency-domain canceller's short time-domain
/// filter and its proportionate step normaliser (same values in every build).
#[inline]
pub(super) fn short_filter(avx2: Option<Avx2>, w: &[f32], g: &[f32], x: &[f32]) -> (f32, f32) {
    #[cfg(target_arch = "x86_64")]
    if avx2.is_some() {
        // SAFETY: an `Avx2` exists only where the CPU has AVX2 and FMA, the
        // features the callee enables; the callee is safe code.
        return unsafe { short_filter_avx2(w, g, x) };
    }
    let _ = avx2;
    short_filter_body(w, g, x)
}

/// `w += c * g * x` over whole chunks of [`SHORT_LANES`] (same values in
/// every build).
#[inline]
pub(super) fn short_update(avx2: Option<Avx2>, w: &mut [f32], g: &[f32], x: &[f32], c: f32) {
    #[cfg(target_arch = "x86_64")]
    if avx2.is_some() {
        // SAFETY: an `Avx2` exists only where the CPU has AVX2 and FMA, the
        // features the callee enables; the callee is safe code.
        unsafe { short_update_avx2(w, g, x, c) };
        return;
    }
    let _ = avx2;
    short_update_body(w, g, x, c)
}

/// Most projection order of the affine-projection kernels ([`apa_row`],
/// [`apa_update`]).
pub(super) const APA_MAX: usize = 8;
/// Lanes of the affine-projection kernels.
const APA_LANES: usize = 8;

/// Sum of 8 lanes in a fixed order.
#[inline(always)]
fn hsum8(v: &[f32; APA_LANES]) -> f32 {
    ((v[0] + v[4]) + (v[1] + v[5])) + ((v[2] + v[6]) + (v[3] + v[7]))
}

/// `r[k] = sum_i g_i x0_i xk_i` for `k < P`, where `xk` is the window of
/// `g.len()` samples ending `k` samples before the end of `xs` (`x0` the
/// newest): the first row of the proportionate input correlation.
#[inline(always)]
fn apa_row_body<const P: usize>(g: &[f32], xs: &[f32]) -> [f32; APA_MAX] {
    let n = g.len() / APA_LANES * APA_LANES;
    let xs = &xs[..n + P - 1];
    let mut acc = [[0f32; APA_LANES]; P];
    let mut i = 0;
    while i < n {
        let gg = &g[i..i + APA_LANES];
        let x0 = &xs[P - 1 + i..P - 1 + i + APA_LANES];
        let mut gx = [0f32; APA_LANES];
        for l in 0..APA_LANES {
            gx[l] = gg[l] * x0[l];
        }
        for (k, a) in acc.iter_mut().enumerate() {
            let xk = &xs[P - 1 - k + i..P - 1 - k + i + APA_LANES];
            for l in 0..APA_LANES {
                a[l] += gx[l] * xk[l];
            }
        }
        i += APA_LANES;
    }
    let mut r = [0f32; APA_MAX];
    for (o, a) in r.iter_mut().zip(&acc) {
        *o = hsum8(a);
    }
    r
}

/// `w_i += g_i sum_k b_k xk_i` (the windows `xk` as in [`apa_row_body`]).
#[inline(always)]
fn apa_update_body<const P: usize>(w: &mut [f32], g: &[f32], xs: &[f32], b: &[f32; APA_MAX]) {
    let n = w.len().min(g.len()) / APA_LANES * APA_LANES;
    let xs = &xs[..n + P - 1];
    let mut i = 0;
    while i < n {
        let mut s = [0f32; APA_LANES];
        for (k, &bk) in b[..P].iter().enumerate() {
            let xk = &xs[P - 1 - k + i..P - 1 - k + i + APA_LANES];
            for l in 0..APA_LANES {
                s[l] += bk * xk[l];
            }
        }
        let gg = &g[i..i + APA_LANES];
        let ww = &mut w[i..i + APA_LANES];
        for l in 0..APA_LANES {
            ww[l] += gg[l] * s[l];
        }
        i += APA_LANES;
    }
}

/// [`apa_row_body`] in AVX2 intrinsics (LLVM leaves the lagged windows'
/// loops scalar): the same lanes and sums, multiply then add (no fusion),
/// so the same values.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
fn apa_row_avx2<const P: usize>(g: &[f32], xs: &[f32]) -> [f32; APA_MAX] {
    use std::arch::x86_64::*;
    let n = g.len() / APA_LANES * APA_LANES;
    assert!(xs.len() >= n + P - 1);
    let mut acc = [_mm256_setzero_ps(); P];
    let mut i = 0;
    while i < n {
        // SAFETY: i + 8 <= n <= g.len(), and P - 1 + i + 8 <= xs.len() (the
        // assert above); every load is unaligned.
        unsafe {
            let x0 = _mm256_loadu_ps(xs.as_ptr().add(P - 1 + i));
            let gx = _mm256_mul_ps(_mm256_loadu_ps(g.as_ptr().add(i)), x0);
            for (k, a) in acc.iter_mut().enumerate() {
                let xk = _mm256_loadu_ps(xs.as_ptr().add(P - 1 - k + i));
                *a = _mm256_add_ps(*a, _mm256_mul_ps(gx, xk));
            }
        }
        i += APA_LANES;
    }
    let mut r = [0f32; APA_MAX];
    for (o, a) in r.iter_mut().zip(&acc) {
        let mut v = [0f32; APA_LANES];
        // SAFETY: `v` holds 8 f32 (one unaligned store).
        unsafe { _mm256_storeu_ps(v.as_mut_ptr(), *a) };
        *o = hsum8(&v);
    }
    r
}

/// [`apa_update_body`] in AVX2 intrinsics: the same order of operations
/// (no fusion), so the same taps.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
fn apa_update_avx2<const P: usize>(w: &mut [f32], g: &[f32], xs: &[f32], b: &[f32; APA_MAX]) {
    use std::arch::x86_64::*;
    let n = w.len().min(g.len()) / APA_LANES * APA_LANES;
    assert!(xs.len() >= n + P - 1);
    let bk: [__m256; P] = std::array::from_fn(|k| _mm256_set1_ps(b[k]));
    let mut i = 0;
    while i < n {
        // SAFETY: i + 8 <= n <= w.len(), g.len(), and P - 1 + i + 8 <=
        // xs.len() (the assert above); every load and store is unaligned.
        unsafe {
            let mut s = _mm256_setzero_ps();
            for (k, bv) in bk.iter().enumerate() {
                let xk = _mm256_loadu_ps(xs.as_ptr().add(P - 1 - k + i));
                s = _mm256_add_ps(s, _mm256_mul_ps(*bv, xk));
            }
            let gs = _mm256_mul_ps(_mm256_loadu_ps(g.as_ptr().add(i)), s);
            let wp = w.as_mut_ptr().add(i);
            _mm256_storeu_ps(wp, _mm256_add_ps(_mm256_loadu_ps(wp), gs));
        }
        i += APA_LANES;
    }
}

fn apa_row_p<const P: usize>(avx2: Option<Avx2>, g: &[f32], xs: &[f32]) -> [f32; APA_MAX] {
    #[cfg(target_arch = "x86_64")]
    if avx2.is_some() {
        // SAFETY: an `Avx2` exists only where the CPU has AVX2 and FMA, the
        // features the callee enables; the callee is safe code.
        return unsafe { apa_row_avx2::<P>(g, xs) };
    }
    let _ = avx2;
    apa_row_body::<P>(g, xs)
}

fn apa_update_p<const P: usize>(
    avx2: Option<Avx2>,
    w: &mut [f32],
    g: &[f32],
    xs: &[f32],
    b: &[f32; APA_MAX],
) {
    #[cfg(target_arch = "x86_64")]
    if avx2.is_some() {
        // SAFETY: an `Avx2` exists only where the CPU has AVX2 and FMA, the
        // features the callee enables; the callee is safe code.
        unsafe { apa_update_avx2::<P>(w, g, xs, b) };
        return;
    }
    let _ = avx2;
    apa_update_body::<P>(w, g, xs, b)
}

/// First row of the proportionate input correlation of an affine
/// projection of order `p` (2..=[`APA_MAX`]): `r[k] = x0' G xk`, `G` the
/// diagonal `g`, `xk` the `g.len()`-sample window of `xs` ending `k`
/// samples before its end (`xs` holds `g.len() + p - 1` samples; whole
/// chunks of 8 taps). Entries `p..` are 0. Same values in every build.
pub(super) fn apa_row(avx2: Option<Avx2>, p: usize, g: &[f32], xs: &[f32]) -> [f32; APA_MAX] {
    match p {
        2 => apa_row_p::<2>(avx2, g, xs),
        3 => apa_row_p::<3>(avx2, g, xs),
        4 => apa_row_p::<4>(avx2, g, xs),
        5 => apa_row_p::<5>(avx2, g, xs),
        6 => apa_row_p::<6>(avx2, g, xs),
        7 => apa_row_p::<7>(avx2, g, xs),
        _ => apa_row_p::<8>(avx2, g, xs),
    }
}

/// The affine-projection update `w += G sum_k b_k xk` (windows as in
/// [`apa_row`]). Same values in every build.
pub(super) fn apa_update(
    avx2: Option<Avx2>,
    p: usize,
    w: &mut [f32],
    g: &[f32],
    xs: &[f32],
    b: &[f32; APA_MAX],
) {
    match p {
        2 => apa_update_p::<2>(avx2, w, g, xs, b),
        3 => apa_update_p::<3>(avx2, w, g, xs, b),
        4 => apa_update_p::<4>(avx2, w, g, xs, b),
        5 => apa_update_p::<5>(avx2, w, g, xs, b),
        6 => apa_update_p::<6>(avx2, w, g, xs, b),
        7 => apa_update_p::<7>(avx2, w, g, xs, b),
        _ => apa_update_p::<8>(avx2, w, g, xs, b),
    }
}

/// `w . x` over whole chunks of [`SHORT_LANES`] in that many partial sums,
/// added in the order [`dot_avx2`] reduces its registers in.
#[inline(always)]
fn dot_body<const N: usize>(w: &[f32; N], x: &[f32; N]) -> f32 {
    let mut acc = [0f32; SHORT_LANES];
    for (a, b) in w
        .as_chunks::<SHORT_LANES>()
        .0
        .iter()
        .zip(x.as_chunks::<SHORT_LANES>().0)
    {
        for i in 0..SHORT_LANES {
            acc[i] += a[i] * b[i];
        }
    }
    let mut h = [0f32; 8];
    for i in 0..8 {
        h[i] = acc[i] + acc[i + 8];
    }
    let mut q = [0f32; 4];
    for i in 0..4 {
        q[i] = h[i] + h[i + 4];
    }
    (q[0] + q[2]) + (q[1] + q[3])
}

/// [`dot_body`] in AVX2 intrinsics: the same lanes and sums, multiply then
/// add (no fusion), so the same value; the lanes are added in registers.
/// Baseline x86-64 code of the plain loop took 140 instructions for 64
/// taps (unaligned SSE loads and shuffles).
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
fn dot_avx2<const N: usize>(w: &[f32; N], x: &[f32; N]) -> f32 {
    use std::arch::x86_64::*;
    let (mut y0, mut y1) = (_mm256_setzero_ps(), _mm256_setzero_ps());
    let mut i = 0;
    while i + SHORT_LANES <= N {
        // SAFETY: i + 16 <= N, the length of both arrays (unaligned loads).
        unsafe {
            let w0 = _mm256_loadu_ps(w.as_ptr().add(i));
            let w1 = _mm256_loadu_ps(w.as_ptr().add(i + 8));
            let x0 = _mm256_loadu_ps(x.as_ptr().add(i));
            let x1 = _mm256_loadu_ps(x.as_ptr().add(i + 8));
            y0 = _mm256_add_ps(y0, _mm256_mul_ps(w0, x0));
            y1 = _mm256_add_ps(y1, _mm256_mul_ps(w1, x1));
        }
        i += SHORT_LANES;
    }
    // h[i] = acc[i] + acc[i + 8]; q[i] = h[i] + h[i + 4];
    // (q[0] + q[2]) + (q[1] + q[3]).
    let h = _mm256_add_ps(y0, y1);
    let q = _mm_add_ps(_mm256_castps256_ps128(h), _mm256_extractf128_ps::<1>(h));
    let r = _mm_add_ps(q, _mm_movehl_ps(q, q));
    _mm_cvtss_f32(_mm_add_ss(r, _mm_shuffle_ps::<1>(r, r)))
}

/// `w . x` over whole chunks of [`SHORT_LANES`] (the frequency-domain
/// canceller's head convolution and its block energies; same value in
/// every build). The length is a constant, so the loop unrolls.
#[inline]
pub(super) fn dot<const N: usize>(avx2: Option<Avx2>, w: &[f32; N], x: &[f32; N]) -> f32 {
    #[cfg(target_arch = "x86_64")]
    if avx2.is_some() {
        // SAFETY: an `Avx2` exists only where the CPU has AVX2 and FMA, the
        // features the callee enables; it stays within its slices.
        return unsafe { dot_avx2(w, x) };
    }
    let _ = avx2;
    dot_body(w, x)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `acc += a * b` (complex, bin by bin), plain loop.
    fn cmac_scalar(acc: &mut [Complex32], a: &[Complex32], b: &[Complex32]) {
        for ((o, x), y) in acc.iter_mut().zip(a).zip(b) {
            o.re += x.re * y.re - x.im * y.im;
            o.im += x.re * y.im + x.im * y.re;
        }
    }

    #[test]
    fn complex_kernels_match_the_scalar_loops() {
        let v = |k: usize| -> Vec<Complex32> {
            (0..65)
                .map(|i| Complex32::new((i * k % 17) as f32 - 8.0, (i * 7 + k) as f32 % 13.0 - 6.0))
                .collect()
        };
        let (a, b) = (v(3), v(5));
        for avx2 in [None, Avx2::detect()] {
            // Three partitions over a ring of four spectra.
            let parts: Vec<Complex32> = [v(1), v(4), v(6)].concat();
            let ring: Vec<Complex32> = [v(7), v(8), v(9), v(10)].concat();
            // Partitions 2 and 0 only, in that order (a skipped one between).
            let (a_offs, offs) = ([130, 0], [65, 195]);
            let mut got = vec![Complex32::new(1.0, 1.0); 65];
            cmac_parts(avx2, &mut got, &parts, &a_offs, &ring, &offs);
            let mut want_p = vec![Complex32::new(0.0, 0.0); 65];
            for (&ao, &o) in a_offs.iter().zip(&offs) {
                cmac_scalar(&mut want_p, &parts[ao..ao + 65], &ring[o..o + 65]);
            }
            for (x, y) in got.iter().zip(&want_p) {
                assert!((x - y).norm() <= 1e-3 * (1.0 + y.norm()), "{x} vs {y}");
            }
            let mut w = v(2);
            let mut want_w = w.clone();
            conj_update(avx2, &mut w, &a, &b, 0.37);
            conj_update_scalar(&mut want_w, &a, &b, 0.37);
            let mut we = v(2);
            let en = conj_update_energy(avx2, &mut we, &a, &b, 0.37);
            let want_en: f32 = want_w.iter().map(|c| c.norm_sqr()).sum();
            assert!((en - want_en).abs() <= 1e-4 * want_en, "{en} vs {want_en}");
            assert_eq!(we, w);
            for (x, y) in w.iter().zip(&want_w) {
                assert!((x - y).norm() <= 1e-3 * (1.0 + y.norm()), "{x} vs {y}");
            }
        }
    }

    #[test]
    fn short_filter_kernels_match_every_build() {
        let x: Vec<f32> = (0..192).map(|i| ((i * 37) % 23) as f32 - 11.0).collect();
        let g: Vec<f32> = (0..192).map(|i| 0.5 + (i % 5) as f32 * 0.25).collect();
        let w0: Vec<f32> = (0..192)
            .map(|i| ((i * 11) % 7) as f32 * 0.1 - 0.3)
            .collect();
        let want_y: f32 = w0.iter().zip(&x).map(|(a, b)| a * b).sum();
        let want_n: f32 = x.iter().zip(&g).map(|(b, g)| g * (b * b)).sum();
        let mut outs = Vec::new();
        for avx2 in [None, Avx2::detect()] {
            let (y, n) = short_filter(avx2, &w0, &g, &x);
            assert!(
                (y - want_y).abs() <= 1e-3 * want_y.abs().max(1.0),
                "{y} vs {want_y}"
            );
            assert!((n - want_n).abs() <= 1e-3 * want_n, "{n} vs {want_n}");
            let mut w = w0.clone();
            short_update(avx2, &mut w, &g, &x, 0.01);
            for k in 0..192 {
                let e = w0[k] + 0.01 * (g[k] * x[k]);
                assert!((w[k] - e).abs() < 1e-5, "tap {k}: {} vs {e}", w[k]);
            }
            outs.push((y, n, w));
        }
        // No reassociation or fusion: every build gives the same values.
        assert_eq!(outs[0], outs[1]);
    }

    #[test]
    fn apa_kernels_match_the_plain_sums_in_every_build() {
        let n = 192;
        let xs: Vec<f32> = (0..n + APA_MAX + 3)
            .map(|i| ((i * 37) % 23) as f32 - 11.0)
            .collect();
        let g: Vec<f32> = (0..n).map(|i| 0.5 + (i % 5) as f32 * 0.25).collect();
        let w0: Vec<f32> = (0..n).map(|i| ((i * 11) % 7) as f32 * 0.1 - 0.3).collect();
        for p in 2..=APA_MAX {
            let xs = &xs[3..3 + n + p - 1];
            let win = |k: usize| &xs[p - 1 - k..p - 1 - k + n];
            let b: [f32; APA_MAX] =
                std::array::from_fn(|k| if k < p { 0.01 * (k as f32 - 1.5) } else { 0.0 });
            let mut outs = Vec::new();
            for avx2 in [None, Avx2::detect()] {
                let r = apa_row(avx2, p, &g, xs);
                for k in 0..APA_MAX {
                    let want: f64 = if k < p {
                        (0..n)
                            .map(|i| f64::from(g[i]) * f64::from(win(0)[i]) * f64::from(win(k)[i]))
                            .sum()
                    } else {
                        0.0
                    };
                    assert!(
                        (f64::from(r[k]) - want).abs() <= 1e-4 * want.abs().max(1.0),
                        "p {p} k {k}: {} vs {want}",
                        r[k]
                    );
                }
                let mut w = w0.clone();
                apa_update(avx2, p, &mut w, &g, xs, &b);
                for i in 0..n {
                    let s: f32 = (0..p).map(|k| b[k] * win(k)[i]).sum();
                    let e = w0[i] + g[i] * s;
                    assert!((w[i] - e).abs() < 1e-4, "p {p} tap {i}: {} vs {e}", w[i]);
                }
                outs.push((r, w));
            }
            assert_eq!(outs[0], outs[1]);
        }
    }

    #[test]
    fn dot_matches_every_build() {
        let x: Vec<f32> = (0..80).map(|i| ((i * 29) % 31) as f32 - 15.0).collect();
        let w: [f32; 64] = std::array::from_fn(|i| ((i * 13) % 9) as f32 * 0.1 - 0.4);
        // Unaligned start, as for the head window.
        let xs = &x[3..67].as_chunks::<64>().0[0];
        let want: f64 = w.iter().zip(xs).map(|(a, b)| f64::from(a * b)).sum();
        let got = [dot(None, &w, xs), dot(Avx2::detect(), &w, xs)];
        assert!((f64::from(got[0]) - want).abs() <= 1e-4 * want.abs().max(1.0));
        assert_eq!(got[0], got[1]);
    }
}
