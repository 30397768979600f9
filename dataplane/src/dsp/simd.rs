//! The echo canceller's filter kernel and the DTMF detector's block
//! correlation, and the only `unsafe` in the DSP code: the kernel body is compiled three times (baseline, AVX2+FMA,
//! AVX-512F) with `#[target_feature]`, and [`run_kernel`] calls the build
//! the CPU was found to support when the canceller was made
//! ([`Kernel::detect`] runs `is_x86_feature_detected!`). The bodies are
//! safe, lane-chunked loops that LLVM vectorises; Rust does not reassociate
//! or fuse float operations, so every build computes the same values.
#![allow(unsafe_code)]

use super::ec::{Kernel, KernelOut, LANES};

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
        Kernel::Avx2 | Kernel::Avx512
            if std::arch::is_x86_feature_detected!("avx2")
                && std::arch::is_x86_feature_detected!("fma") =>
        {
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
        Kernel::Avx2 | Kernel::Avx512
            if std::arch::is_x86_feature_detected!("avx2")
                && std::arch::is_x86_feature_detected!("fma") =>
        {
            // SAFETY: the guard just checked that this CPU has AVX2 and FMA,
            // the features `dtmf_avx2` enables.
            unsafe { dtmf_avx2(x, table) }
        }
        _ => dtmf_body(x, table),
    }
}
