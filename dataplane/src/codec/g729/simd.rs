//! Small exact integer kernels for the G.729 hot loops: 16x16-bit dot
//! products summed modulo 2^32 (`pmaddwd` on x86_64, where SSE2 is part of
//! the baseline, so no runtime detection is needed; plain Rust elsewhere).
//!
//! Callers use the result only where they have proven that every partial
//! sum fits in 32 bits, so wrapping and the reference's saturating
//! `L_mac` chain agree. Also [`avx2_multiversion`]: the hot kernels compiled
//! twice, for the baseline and for AVX2, picked at run time. All the
//! codec's `unsafe` is written here (the macro's dispatch expands in its
//! callers).
#![allow(unsafe_code)]

/// `avx2_multiversion! { fn name(a: A, ..) -> R = body; }` defines `name`,
/// which runs `body(a, ..)` compiled for AVX2 (with BMI1/2, FMA, LZCNT,
/// POPCNT) when the CPU has them, else as it is (SSE2). `body` is meant to
/// be `#[inline(always)]`: it is then inlined into, and compiled with the
/// features of, the AVX2 clone, so the same source runs with VEX and
/// 256-bit code generation. Results are the same either way (same source,
/// integer arithmetic; only the instructions the compiler picks differ);
/// tests compare both clones of every kernel wrapped.
macro_rules! avx2_multiversion {
    ($(
        $(#[$m:meta])*
        $vis:vis fn $name:ident($($a:ident: $t:ty),* $(,)?) $(-> $r:ty)? = $body:path;
    )*) => {$(
        $(#[$m])*
        #[inline(never)]
        #[allow(unsafe_code)]
        $vis fn $name($($a: $t),*) $(-> $r)? {
            #[cfg(target_arch = "x86_64")]
            {
                #[target_feature(enable = "avx2,bmi1,bmi2,fma,lzcnt,popcnt")]
                fn clone_avx2($($a: $t),*) $(-> $r)? {
                    $body($($a),*)
                }
                if $crate::codec::g729::simd::avx2() {
                    // SAFETY: the CPU supports every feature `clone_avx2`
                    // is compiled for (checked at run time by `avx2`).
                    return unsafe { clone_avx2($($a),*) };
                }
            }
            $body($($a),*)
        }
    )*};
}
pub(crate) use avx2_multiversion;

/// Whether this CPU runs the AVX2 clones of [`avx2_multiversion`]
/// (detected once).
#[cfg(not(target_arch = "x86_64"))]
pub(crate) fn avx2() -> bool {
    false
}

/// Whether this CPU runs the AVX2 clones of [`avx2_multiversion`]
/// (detected once).
#[cfg(target_arch = "x86_64")]
#[inline(always)]
pub(crate) fn avx2() -> bool {
    use std::sync::atomic::{AtomicU8, Ordering};
    static STATE: AtomicU8 = AtomicU8::new(0);
    #[cfg(test)]
    if BASELINE_ONLY.with(|b| b.get()) {
        return false;
    }
    match STATE.load(Ordering::Relaxed) {
        1 => true,
        2 => false,
        _ => {
            let yes = std::is_x86_feature_detected!("avx2")
                && std::is_x86_feature_detected!("bmi1")
                && std::is_x86_feature_detected!("bmi2")
                && std::is_x86_feature_detected!("fma")
                && std::is_x86_feature_detected!("lzcnt")
                && std::is_x86_feature_detected!("popcnt");
            STATE.store(if yes { 1 } else { 2 }, Ordering::Relaxed);
            yes
        }
    }
}

#[cfg(test)]
thread_local! {
    /// Tests set this to run the baseline clones on their own thread.
    pub(crate) static BASELINE_ONLY: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// `Σ_c f(a[c], b[c])` over the chunks `c` of 8 elements (4 lanes of 32
/// bits each), summed modulo 2^32, for `N` a multiple of 8.
#[cfg(target_arch = "x86_64")]
#[inline(always)]
fn sum_chunks8<const N: usize>(
    a: &[i16; N],
    b: &[i16; N],
    f: impl Fn(std::arch::x86_64::__m128i, std::arch::x86_64::__m128i) -> std::arch::x86_64::__m128i,
) -> i32 {
    use std::arch::x86_64::*;
    const { assert!(N.is_multiple_of(8)) };
    // SAFETY: SSE2 is always available on x86_64. Each unaligned load reads
    // the 8 elements `k..k + 8` with `k + 8 <= N`, inside both arrays.
    unsafe {
        let mut acc = _mm_setzero_si128();
        let mut k = 0;
        while k < N {
            let x = _mm_loadu_si128(a.as_ptr().add(k) as *const __m128i);
            let y = _mm_loadu_si128(b.as_ptr().add(k) as *const __m128i);
            acc = _mm_add_epi32(acc, f(x, y));
            k += 8;
        }
        let hi = _mm_unpackhi_epi64(acc, acc);
        let s = _mm_add_epi32(acc, hi);
        let s2 = _mm_shuffle_epi32(s, 0b01);
        _mm_cvtsi128_si32(_mm_add_epi32(s, s2))
    }
}

/// `Σ a[k] * b[k]` modulo 2^32, for `N` a multiple of 8.
#[inline(always)]
pub(crate) fn dot8n<const N: usize>(a: &[i16; N], b: &[i16; N]) -> i32 {
    const { assert!(N % 8 == 0) };
    #[cfg(target_arch = "x86_64")]
    {
        use std::arch::x86_64::*;
        // SAFETY: SSE2 is always available on x86_64. `pmaddwd` wraps only
        // when both products of a pair are (-32768)^2, and wrapping is the
        // arithmetic promised here.
        sum_chunks8(a, b, |x, y| unsafe { _mm_madd_epi16(x, y) })
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        let mut s = 0i32;
        for (x, y) in a.iter().zip(b) {
            s = s.wrapping_add(*x as i32 * *y as i32);
        }
        s
    }
}

/// `Σ a[k]^2` exactly, for `N` a multiple of 8 and at most `2^15`: each
/// `pmaddwd` lane is the sum of two squares, at most `2^31`, exact as an
/// unsigned 32-bit value; its high and low 16-bit halves are summed apart
/// (each lane's sums at most `N/8 · 2^16`, no wrap), then joined in 64 bits.
#[inline(always)]
pub(crate) fn sq_sum8n<const N: usize>(a: &[i16; N]) -> u64 {
    const { assert!(N.is_multiple_of(8) && N <= 1 << 15) };
    #[cfg(target_arch = "x86_64")]
    {
        use std::arch::x86_64::*;
        // SAFETY: SSE2 is always available on x86_64. Each unaligned load
        // reads the 8 elements `k..k + 8` with `k + 8 <= N`, inside `a`.
        unsafe {
            let mask = _mm_set1_epi32(0xffff);
            let (mut hi, mut lo) = (_mm_setzero_si128(), _mm_setzero_si128());
            let mut k = 0;
            while k < N {
                let x = _mm_loadu_si128(a.as_ptr().add(k) as *const __m128i);
                let m = _mm_madd_epi16(x, x);
                hi = _mm_add_epi32(hi, _mm_srli_epi32(m, 16));
                lo = _mm_add_epi32(lo, _mm_and_si128(m, mask));
                k += 8;
            }
            // Lane sums below 2^31: add the halves' lanes as 32-bit values
            // (4 lanes at most `N/2 · 2^16`, below 2^32 for `N <= 2^15`).
            let fold = |v: __m128i| -> u64 {
                let s = _mm_add_epi32(v, _mm_unpackhi_epi64(v, v));
                let s = _mm_add_epi32(s, _mm_shuffle_epi32(s, 0b01));
                _mm_cvtsi128_si32(s) as u32 as u64
            };
            (fold(hi) << 16) + fold(lo)
        }
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        a.iter().map(|&v| (v as i32 * v as i32) as u64).sum()
    }
}

/// `Σ |a[k]|` for `N` a multiple of 8 (exact while `N <= 2^16`).
#[inline(always)]
pub(crate) fn abs_sum8n<const N: usize>(a: &[i16; N]) -> i32 {
    const { assert!(N.is_multiple_of(8) && N <= 1 << 16) };
    #[cfg(target_arch = "x86_64")]
    {
        use std::arch::x86_64::*;
        // SAFETY: SSE2 is always available on x86_64. With the sign mask
        // `s` (0 or -1), `|x| = (x ^ s) - s` where `x ^ s` is at most 32767
        // (no 16-bit overflow, also for -32768): both are summed by
        // `pmaddwd` against ones, exactly in 32 bits.
        sum_chunks8(a, a, |x, _| unsafe {
            let one = _mm_set1_epi16(1);
            let s = _mm_srai_epi16(x, 15);
            _mm_sub_epi32(
                _mm_madd_epi16(_mm_xor_si128(x, s), one),
                _mm_madd_epi16(s, one),
            )
        })
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        a.iter().map(|v| v.unsigned_abs() as i32).sum()
    }
}

/// The largest `|v[k]|` of 8 lanes (32768 for -32768).
#[inline(always)]
pub(crate) fn max_abs8(v: &[i16; 8]) -> u16 {
    #[cfg(target_arch = "x86_64")]
    {
        use std::arch::x86_64::*;
        // SAFETY: SSE2 is always available on x86_64; the load covers one
        // 8-element array. `(x ^ s) - s` with the sign mask `s` is `|x|`
        // modulo 2^16 (0x8000 for -32768); flipping the top bit orders
        // those as signed lanes, so `pmaxsw` gives the unsigned maximum.
        unsafe {
            let x = _mm_loadu_si128(v.as_ptr() as *const __m128i);
            let s = _mm_srai_epi16(x, 15);
            let flip = _mm_set1_epi16(i16::MIN);
            let mut m = _mm_xor_si128(_mm_sub_epi16(_mm_xor_si128(x, s), s), flip);
            m = _mm_max_epi16(m, _mm_shuffle_epi32(m, 0b01_00_11_10));
            m = _mm_max_epi16(m, _mm_shuffle_epi32(m, 0b10_11_00_01));
            m = _mm_max_epi16(m, _mm_srli_epi32(m, 16));
            (_mm_cvtsi128_si32(_mm_xor_si128(m, flip)) as u32 & 0xffff) as u16
        }
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        v.iter().map(|x| x.unsigned_abs()).max().unwrap_or(0)
    }
}

/// Whether every `|v[k]| <= t` for 8 lanes of 32 bits.
#[inline(always)]
pub(crate) fn all_abs_le8(v: &[i32; 8], t: i64) -> bool {
    if !(0..1 << 31).contains(&t) {
        // Every |v[k]| is at most 2^31.
        return t >= 0;
    }
    #[cfg(target_arch = "x86_64")]
    {
        use std::arch::x86_64::*;
        // SAFETY: SSE2 is always available on x86_64; the loads cover the
        // two halves of the 8-element array. `(x ^ s) - s` is `|x|` but for
        // i32::MIN, which stays negative: a lane fails when its magnitude
        // is above `t` (below 2^31 here) or reads negative.
        unsafe {
            let t = _mm_set1_epi32(t as i32);
            let zero = _mm_setzero_si128();
            let mut bad = zero;
            for half in 0..2 {
                let x = _mm_loadu_si128(v.as_ptr().add(4 * half) as *const __m128i);
                let s = _mm_srai_epi32(x, 31);
                let a = _mm_sub_epi32(_mm_xor_si128(x, s), s);
                bad = _mm_or_si128(
                    bad,
                    _mm_or_si128(_mm_cmpgt_epi32(a, t), _mm_cmplt_epi32(a, zero)),
                );
            }
            _mm_movemask_epi8(bad) == 0
        }
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        v.iter().all(|x| x.unsigned_abs() as i64 <= t)
    }
}

/// The lane sums of four registers in one (lane `q` = the sum of
/// `acc[q]`'s four lanes, modulo 2^32), by one transpose.
#[cfg(target_arch = "x86_64")]
#[inline(always)]
fn sum4x4(acc: [std::arch::x86_64::__m128i; 4]) -> std::arch::x86_64::__m128i {
    use std::arch::x86_64::*;
    // SAFETY: SSE2 is always available on x86_64; register operations only.
    unsafe {
        let s01 = _mm_add_epi32(
            _mm_unpacklo_epi32(acc[0], acc[1]),
            _mm_unpackhi_epi32(acc[0], acc[1]),
        );
        let s23 = _mm_add_epi32(
            _mm_unpacklo_epi32(acc[2], acc[3]),
            _mm_unpackhi_epi32(acc[2], acc[3]),
        );
        _mm_add_epi32(_mm_unpacklo_epi64(s01, s23), _mm_unpackhi_epi64(s01, s23))
    }
}

/// The correlation `y[i] = Σ_{k < 40 - i} x[i + k] h[k]` (modulo 2^32) of
/// 40 samples with the 40 taps of an impulse response, for every `i`: in
/// AVX2 where the CPU has it ([`corr_tri40_avx2`]), else (SSE2) four
/// outputs at a time: the window of `x` past its end is zero, so the
/// group `4b..4b + 4` needs only the `5 - b / 2` chunks of 8 taps its
/// windows reach (120 `pmaddwd` instead of 200), and the four sums are
/// reduced together by one transpose.
#[inline(always)]
pub(crate) fn corr_tri40(x: &[i16; 40], h: &[i16; 40], y: &mut [i32; 40]) {
    #[cfg(target_arch = "x86_64")]
    {
        if avx2() {
            // SAFETY: the CPU has AVX2 (checked at run time by `avx2`).
            unsafe { corr_tri40_avx2(x, h, y) };
            return;
        }
        use std::arch::x86_64::*;
        let mut xp = [0i16; 48];
        xp[..40].copy_from_slice(x);
        // SAFETY: SSE2 is always available on x86_64. The loads of `h` read
        // 8 elements at 8c <= 32, inside its 40. Those of `xp` read 8 at
        // 4b + q + 8c with c < 5 - b / 2 and q < 4: the largest start is
        // 4b + 3 + 8 (4 - b / 2) <= 39, so every load is inside the 48
        // elements. The store writes y[4b..4b + 4] with b < 10. `pmaddwd`
        // wraps only when both products of a pair are (-32768)^2, and
        // wrapping is the arithmetic promised here.
        unsafe {
            let hv: [__m128i; 5] =
                std::array::from_fn(|c| _mm_loadu_si128(h.as_ptr().add(8 * c) as *const __m128i));
            for b in 0..10 {
                let mut acc = [_mm_setzero_si128(); 4];
                for (c, &hc) in hv.iter().enumerate().take(5 - b / 2) {
                    for (q, a) in acc.iter_mut().enumerate() {
                        let xv =
                            _mm_loadu_si128(xp.as_ptr().add(4 * b + q + 8 * c) as *const __m128i);
                        *a = _mm_add_epi32(*a, _mm_madd_epi16(xv, hc));
                    }
                }
                _mm_storeu_si128(y.as_mut_ptr().add(4 * b) as *mut __m128i, sum4x4(acc));
            }
        }
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        for (i, v) in y.iter_mut().enumerate() {
            *v = x[i..]
                .iter()
                .zip(h)
                .fold(0i32, |s, (a, b)| s.wrapping_add(*a as i32 * *b as i32));
        }
    }
}

/// [`corr_tri40`] eight outputs at a time, by tap pairs: with the sample
/// pairs `x2[j] = (x[j], x[j + 1])` (zero past the end), `pmaddwd` of
/// `x2[i + 2m]` (8 lanes `i`) and the broadcast pair `(h[2m], h[2m + 1])`
/// is the two terms `k = 2m, 2m + 1` of outputs `i..i + 8`. The outputs
/// from `i0` need only the pairs `m < 20 - i0 / 2` (the later terms are
/// zero): 60 `pmaddwd` in all.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
#[inline]
fn corr_tri40_avx2(x: &[i16; 40], h: &[i16; 40], y: &mut [i32; 40]) {
    use std::arch::x86_64::*;
    let mut xp = [0i16; 64];
    xp[..40].copy_from_slice(x);
    // x2[j] for j < 48, as (x[j], x[j + 1]) halves of 32-bit lanes.
    let mut x2 = [0i32; 48];
    for (j, out) in x2.as_chunks_mut::<16>().0.iter_mut().enumerate() {
        // SAFETY: the loads read 16 elements of `xp` from 16j and 16j + 1,
        // j < 3 (at most up to 49 < 64); the stores write the 16 elements
        // of `out`, two halves of 8.
        unsafe {
            let a = _mm256_loadu_si256(xp.as_ptr().add(16 * j) as *const __m256i);
            let b = _mm256_loadu_si256(xp.as_ptr().add(16 * j + 1) as *const __m256i);
            // Per 128-bit half: pairs 0..4 (lo) and 4..8 (hi) of the half.
            let (lo, hi) = (_mm256_unpacklo_epi16(a, b), _mm256_unpackhi_epi16(a, b));
            let first = _mm256_permute2x128_si256::<0x20>(lo, hi);
            let second = _mm256_permute2x128_si256::<0x31>(lo, hi);
            _mm256_storeu_si256(out.as_mut_ptr() as *mut __m256i, first);
            _mm256_storeu_si256(out.as_mut_ptr().add(8) as *mut __m256i, second);
        }
    }
    let hp: [__m256i; 20] = std::array::from_fn(|m| {
        _mm256_set1_epi32((h[2 * m] as u16 as i32) | ((h[2 * m + 1] as i32) << 16))
    });
    for (b, out) in y.as_chunks_mut::<8>().0.iter_mut().enumerate() {
        let mut acc = [_mm256_setzero_si256(); 2];
        for (m, &hm) in hp.iter().enumerate().take(20 - 4 * b) {
            // SAFETY: reads x2[8b + 2m..8b + 2m + 8] with m < 20 - 4b: the
            // last element is at most 8b + 38 - 8b + 7 = 45 < 48.
            let xv =
                unsafe { _mm256_loadu_si256(x2.as_ptr().add(8 * b + 2 * m) as *const __m256i) };
            acc[m % 2] = _mm256_add_epi32(acc[m % 2], _mm256_madd_epi16(xv, hm));
        }
        // SAFETY: the store writes the 8 elements of `out`.
        unsafe {
            _mm256_storeu_si256(
                out.as_mut_ptr() as *mut __m256i,
                _mm256_add_epi32(acc[0], acc[1]),
            )
        };
    }
}

/// `y[q] = Σ_k a[k] w[3 - q + k]` (modulo 2^32) for `q` in `0..4`: the
/// correlations of `a` with four windows of `w`, each one sample before
/// the previous one, the four sums reduced together by one transpose.
#[inline(always)]
pub(crate) fn dot40_down4(a: &[i16; 40], w: &[i16; 43]) -> [i32; 4] {
    #[cfg(target_arch = "x86_64")]
    {
        use std::arch::x86_64::*;
        let mut y = [0i32; 4];
        // SAFETY: SSE2 is always available on x86_64. The loads of `a`
        // read 8 elements at 8c <= 32, inside its 40; those of `w` read 8
        // at 3 - q + 8c <= 35, inside its 43. The store writes `y`.
        // `pmaddwd` wraps only when both products of a pair are
        // (-32768)^2, and wrapping is the arithmetic promised here.
        unsafe {
            let mut acc = [_mm_setzero_si128(); 4];
            for c in 0..5 {
                let av = _mm_loadu_si128(a.as_ptr().add(8 * c) as *const __m128i);
                for (q, v) in acc.iter_mut().enumerate() {
                    let wv = _mm_loadu_si128(w.as_ptr().add(3 - q + 8 * c) as *const __m128i);
                    *v = _mm_add_epi32(*v, _mm_madd_epi16(wv, av));
                }
            }
            _mm_storeu_si128(y.as_mut_ptr() as *mut __m128i, sum4x4(acc));
        }
        y
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        std::array::from_fn(|q| {
            a.iter()
                .zip(&w[3 - q..])
                .fold(0i32, |s, (x, y)| s.wrapping_add(*x as i32 * *y as i32))
        })
    }
}

/// The 20 taps of [`fir20x8`] as the ten 32-bit words that `pmaddwd`
/// multiplies with a pair of samples: `c[2p]` in the low half, `c[2p + 1]`
/// in the high half.
pub(crate) fn fir20_pairs(c: &[i16; 20]) -> [i32; 10] {
    std::array::from_fn(|p| (c[2 * p] as u16 as i32) | ((c[2 * p + 1] as i32) << 16))
}

/// Eight consecutive outputs of a 20-tap FIR at once:
/// `out[j] = sat16((Σ_k c[k] w[j + k] + 2^14) >> 15)` for `j` in `0..8`,
/// with the taps `c` given as [`fir20_pairs`] and the 32-bit sums taken
/// modulo 2^32. When every `|Σ_k c[k] w[j + k]|` is at most `2^30` this is
/// exactly the reference's `round(L_mac chain) = extract_h(L_add(2 Σ,
/// 0x8000))`: the only case where that `L_add` saturates gives a shifted
/// value of `2^15`, which the final pack saturates to the same `0x7fff`.
#[inline(always)]
pub(crate) fn fir20x8(w: &[i16; 27], c: &[i32; 10]) -> [i16; 8] {
    #[cfg(target_arch = "x86_64")]
    {
        if avx2() {
            // SAFETY: the CPU has AVX2 (checked at run time by `avx2`).
            return unsafe { fir20x8_avx2(w, c) };
        }
        use std::arch::x86_64::*;
        let mut out = [0i16; 8];
        // SAFETY: SSE2 is always available on x86_64. The loads read
        // `w[2p..2p + 8]` and `w[2p + 1..2p + 9]` for `p <= 9`, at most up to
        // index 26, inside `w`; the store writes the 8 elements of `out`.
        // `pmaddwd` wraps only for two (-32768)^2 products, and wrapping is
        // the arithmetic promised.
        unsafe {
            let mut lo = _mm_setzero_si128();
            let mut hi = _mm_setzero_si128();
            let wp = w.as_ptr();
            for (p, &pair) in c.iter().enumerate() {
                let cv = _mm_set1_epi32(pair);
                let a = _mm_loadu_si128(wp.add(2 * p) as *const __m128i);
                let b = _mm_loadu_si128(wp.add(2 * p + 1) as *const __m128i);
                lo = _mm_add_epi32(lo, _mm_madd_epi16(_mm_unpacklo_epi16(a, b), cv));
                hi = _mm_add_epi32(hi, _mm_madd_epi16(_mm_unpackhi_epi16(a, b), cv));
            }
            let r = _mm_set1_epi32(0x4000);
            lo = _mm_srai_epi32(_mm_add_epi32(lo, r), 15);
            hi = _mm_srai_epi32(_mm_add_epi32(hi, r), 15);
            _mm_storeu_si128(out.as_mut_ptr() as *mut __m128i, _mm_packs_epi32(lo, hi));
        }
        out
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        let mut out = [0i16; 8];
        for (j, o) in out.iter_mut().enumerate() {
            let mut s = 0i32;
            for (p, &pair) in c.iter().enumerate() {
                let (c0, c1) = (pair as i16 as i32, pair >> 16);
                s = s
                    .wrapping_add(c0 * w[j + 2 * p] as i32)
                    .wrapping_add(c1 * w[j + 2 * p + 1] as i32);
            }
            *o = (s.wrapping_add(0x4000) >> 15).clamp(-32768, 32767) as i16;
        }
        out
    }
}

/// [`fir20x8`] with AVX2: for each tap pair one register holds the eight
/// sample pairs `(w[2p + j], w[2p + j + 1])`, shuffled in-lane from
/// `w[2p..2p + 8]` (outputs 0..4) and `w[2p + 1..2p + 9]` (outputs 4..8).
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
fn fir20x8_avx2(w: &[i16; 27], c: &[i32; 10]) -> [i16; 8] {
    use std::arch::x86_64::*;
    let mut out = [0i16; 8];
    // SAFETY: AVX2 is enabled for this function. The loads read
    // `w[2p..2p + 8]` and `w[2p + 1..2p + 9]` for `p <= 9`, at most up to
    // index 26, inside `w`; the store writes the 8 elements of `out`.
    // `pmaddwd` wraps only for two (-32768)^2 products, and wrapping is
    // the arithmetic promised.
    unsafe {
        // Lane 0: words (j, j + 1) of `w[2p..]`, j = 0..4; lane 1: words
        // (j - 1, j) of `w[2p + 1..]`, j = 4..8.
        let pick = _mm256_setr_epi8(
            0, 1, 2, 3, 2, 3, 4, 5, 4, 5, 6, 7, 6, 7, 8, 9, //
            6, 7, 8, 9, 8, 9, 10, 11, 10, 11, 12, 13, 12, 13, 14, 15,
        );
        let mut acc = _mm256_setzero_si256();
        let wp = w.as_ptr();
        for (p, &pair) in c.iter().enumerate() {
            let lo = _mm_loadu_si128(wp.add(2 * p) as *const __m128i);
            let hi = _mm_loadu_si128(wp.add(2 * p + 1) as *const __m128i);
            let v = _mm256_inserti128_si256(_mm256_castsi128_si256(lo), hi, 1);
            let v = _mm256_shuffle_epi8(v, pick);
            acc = _mm256_add_epi32(acc, _mm256_madd_epi16(v, _mm256_set1_epi32(pair)));
        }
        let acc = _mm256_srai_epi32(_mm256_add_epi32(acc, _mm256_set1_epi32(0x4000)), 15);
        let packed = _mm_packs_epi32(
            _mm256_castsi256_si128(acc),
            _mm256_extracti128_si256(acc, 1),
        );
        _mm_storeu_si128(out.as_mut_ptr() as *mut __m128i, packed);
    }
    out
}

/// [`fir20x8`] for sixteen consecutive outputs (`w` covers their 35
/// samples): one AVX2 pass where the CPU has it, else two [`fir20x8`].
#[inline(always)]
pub(crate) fn fir20x16(w: &[i16; 35], c: &[i32; 10]) -> [i16; 16] {
    #[cfg(target_arch = "x86_64")]
    if avx2() {
        // SAFETY: the CPU has AVX2 (checked at run time by `avx2`).
        return unsafe { fir20x16_avx2(w, c) };
    }
    let mut out = [0i16; 16];
    for (h, o) in out.chunks_exact_mut(8).enumerate() {
        if let Ok(wh) = <&[i16; 27]>::try_from(&w[8 * h..8 * h + 27]) {
            o.copy_from_slice(&fir20x8(wh, c));
        }
    }
    out
}

/// [`fir20x16`] with AVX2: the in-lane unpacks put outputs 0..4 and 8..12
/// in `lo`, 4..8 and 12..16 in `hi`, and the in-lane pack restores the
/// order.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
fn fir20x16_avx2(w: &[i16; 35], c: &[i32; 10]) -> [i16; 16] {
    use std::arch::x86_64::*;
    let mut out = [0i16; 16];
    // SAFETY: AVX2 is enabled for this function. The loads read
    // `w[2p..2p + 16]` and `w[2p + 1..2p + 17]` for `p <= 9`, at most up to
    // index 34, inside `w`; the store writes the 16 elements of `out`.
    // `pmaddwd` wraps only for two (-32768)^2 products, and wrapping is
    // the arithmetic promised.
    unsafe {
        let mut lo = _mm256_setzero_si256();
        let mut hi = _mm256_setzero_si256();
        let wp = w.as_ptr();
        for (p, &pair) in c.iter().enumerate() {
            let cv = _mm256_set1_epi32(pair);
            let a = _mm256_loadu_si256(wp.add(2 * p) as *const __m256i);
            let b = _mm256_loadu_si256(wp.add(2 * p + 1) as *const __m256i);
            lo = _mm256_add_epi32(lo, _mm256_madd_epi16(_mm256_unpacklo_epi16(a, b), cv));
            hi = _mm256_add_epi32(hi, _mm256_madd_epi16(_mm256_unpackhi_epi16(a, b), cv));
        }
        let r = _mm256_set1_epi32(0x4000);
        lo = _mm256_srai_epi32(_mm256_add_epi32(lo, r), 15);
        hi = _mm256_srai_epi32(_mm256_add_epi32(hi, r), 15);
        _mm256_storeu_si256(out.as_mut_ptr() as *mut __m256i, _mm256_packs_epi32(lo, hi));
    }
    out
}

/// The synthesis filter `1/A(z)` over a block whose running sums provably
/// stay in 32 bits: for each `i`, `e = x[i] a[0] + 2^11 - Σ_{k=1..10} a[k]
/// y[i - k]` (outputs before `y[0]` read from `mem`, oldest first), then
/// `y[i] = sat16(e >> 12)`. Returns whether any `e` left
/// `[2^11 - 2^27, 2^27)` (where the reference's `L_shl`/rounding saturate).
/// Exact only under the caller's bound `2 (max|x| |a[0]| + 2^15 Σ|a[k]|)
/// <= MAX_32`; the sums wrap modulo 2^32 otherwise.
///
/// The newest tap stays scalar so the sample-to-sample dependency is one
/// multiply; taps 2..9 are one `pmaddwd` on a window of past outputs that
/// is only needed one sample later.
#[inline(always)]
pub(crate) fn syn_block(a: &[i16; 11], x: &[i16], y: &mut [i16], mem: &[i16; 10]) -> bool {
    let a0 = a[0] as i32;
    let a1 = a[1] as i32;
    let a10 = a[10] as i32;
    let lo = 0x800 - (1i32 << 27);
    // Largest `e - lo` seen, as unsigned: out of range iff >= 2^28 - 2^11.
    let mut span = 0u32;
    let mut h1 = mem[9] as i32;
    let mut h10 = mem[0] as i32;
    #[cfg(target_arch = "x86_64")]
    {
        use std::arch::x86_64::*;
        // SAFETY: SSE2 is always available on x86_64. The one load reads
        // `a[2..10]`, inside `a`; everything else is register arithmetic.
        // `pmaddwd` wraps only for two (-32768)^2 products, excluded by
        // the caller's bound like every other wrap here.
        unsafe {
            let c = _mm_loadu_si128(a.as_ptr().add(2) as *const __m128i);
            // Lanes 0..8 hold y[i - 2] .. y[i - 9].
            let mut w = _mm_set_epi16(
                mem[1], mem[2], mem[3], mem[4], mem[5], mem[6], mem[7], mem[8],
            );
            for (&xi, yi) in x.iter().zip(y.iter_mut()) {
                let p = _mm_madd_epi16(w, c);
                let p = _mm_add_epi32(p, _mm_shuffle_epi32(p, 0b01_00_11_10));
                let p = _mm_add_epi32(p, _mm_shuffle_epi32(p, 0b10_11_00_01));
                let far = _mm_cvtsi128_si32(p).wrapping_add(a10 * h10);
                let e = (xi as i32 * a0 + 0x800)
                    .wrapping_sub(far)
                    .wrapping_sub(a1 * h1);
                span = span.max(e.wrapping_sub(lo) as u32);
                let out = (e >> 12).clamp(-32768, 32767);
                *yi = out as i16;
                h10 = _mm_extract_epi16(w, 7) as i16 as i32;
                w = _mm_insert_epi16(_mm_slli_si128(w, 2), h1, 0);
                h1 = out;
            }
        }
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        let mut w = [
            mem[8], mem[7], mem[6], mem[5], mem[4], mem[3], mem[2], mem[1],
        ]
        .map(|v| v as i32);
        for (&xi, yi) in x.iter().zip(y.iter_mut()) {
            let far = (0..8)
                .fold(0i32, |s, k| s.wrapping_add(a[k + 2] as i32 * w[k]))
                .wrapping_add(a10 * h10);
            let e = (xi as i32 * a0 + 0x800)
                .wrapping_sub(far)
                .wrapping_sub(a1 * h1);
            span = span.max(e.wrapping_sub(lo) as u32);
            let out = (e >> 12).clamp(-32768, 32767);
            *yi = out as i16;
            h10 = w[7];
            w.rotate_right(1);
            w[0] = h1;
            h1 = out;
        }
    }
    span >= (1 << 28) - 0x800
}

/// `v[k] = mult(v[k], MAX_16 ^ m[k])` for 8 lanes with sign masks `m[k]`
/// of 0 or -1: the reference's fractional multiply by `MAX_16` (`(x 32767)
/// >> 15` is `x - 1` for `x > 0`, -32767 for -32768, else `x`) or by
/// `MIN_16` (the saturating negation). With `g = max(x, -32767)` both are
/// `(g ^ m) - m + (x > 0 && m == 0 ? -1 : 0)`: `g - (x > 0)` for `m = 0`,
/// `!g + 1 = -g` for `m = -1`.
#[inline(always)]
pub(crate) fn mult_sign8(v: &mut [i16; 8], m: &[i16; 8]) {
    #[cfg(target_arch = "x86_64")]
    {
        use std::arch::x86_64::*;
        // SAFETY: SSE2 is always available on x86_64; the loads and the
        // store each cover one 8-element array.
        unsafe {
            let x = _mm_loadu_si128(v.as_ptr() as *const __m128i);
            let m = _mm_loadu_si128(m.as_ptr() as *const __m128i);
            let g = _mm_max_epi16(x, _mm_set1_epi16(-32767));
            let pos = _mm_cmpgt_epi16(x, _mm_setzero_si128());
            let r = _mm_sub_epi16(_mm_xor_si128(g, m), m);
            let r = _mm_add_epi16(r, _mm_andnot_si128(m, pos));
            _mm_storeu_si128(v.as_mut_ptr() as *mut __m128i, r);
        }
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        for (x, &m) in v.iter_mut().zip(m) {
            let p = (i16::MAX ^ m) as i32;
            *x = ((*x as i32 * p) >> 15).clamp(-32768, 32767) as i16;
        }
    }
}

/// The first-stage LSP codebook search: the index of the first smallest
/// `min(Σ_k sat16(r[k] - cb[i][k])^2, 2^30)` over the 128 entries, given as
/// `groups[g][p]` = entries `4g..4g + 4`, elements `2p, 2p + 1` of each,
/// interleaved. Capping at 2^30 keeps the reference's order exactly: its
/// `L_mac` distance `2 Σ` saturates at `MAX_32` exactly when `Σ >= 2^30`.
/// The caller guarantees no difference saturates to -32768, so each pair
/// of squares is below 2^31 and the sums below stay within 32 bits.
///
/// With `CAP = false` the caller guarantees more: every `Σ_k (r[k] -
/// cb[i][k])^2 < 2^30`, so no distance reaches the cap and the clamps are
/// left out.
#[inline(always)]
pub(crate) fn lsp_stage1<const CAP: bool>(r: &[i16; 10], groups: &[[[i16; 8]; 5]; 32]) -> usize {
    #[cfg(target_arch = "x86_64")]
    {
        if avx2() {
            // SAFETY: the CPU has AVX2 (checked at run time by `avx2`).
            return unsafe { lsp_stage1_avx2::<CAP>(r, groups) };
        }
        use std::arch::x86_64::*;
        // SAFETY: SSE2 is always available on x86_64; each load reads one
        // 8-element array of `groups`, the store one 4-element array.
        unsafe {
            let cap = _mm_set1_epi32(1 << 30);
            let zero = _mm_setzero_si128();
            // min(v, 2^30) for v < 2^32 read as unsigned.
            let clamp = |v: __m128i| {
                if !CAP {
                    return v;
                }
                let small = _mm_cmpeq_epi32(_mm_srli_epi32(v, 30), zero);
                _mm_or_si128(_mm_and_si128(v, small), _mm_andnot_si128(small, cap))
            };
            let rp: [__m128i; 5] = std::array::from_fn(|p| {
                _mm_set1_epi32((r[2 * p] as u16 as i32) | ((r[2 * p + 1] as i32) << 16))
            });
            let mut best = _mm_set1_epi32(i32::MAX);
            let mut best_g = zero;
            let mut g_vec = zero;
            let one = _mm_set1_epi32(1);
            for grp in groups.iter() {
                let q: [__m128i; 5] = std::array::from_fn(|p| {
                    let c = _mm_loadu_si128(grp[p].as_ptr() as *const __m128i);
                    let t = _mm_subs_epi16(rp[p], c);
                    _mm_madd_epi16(t, t)
                });
                // Each q < 2^31 (no -32768 difference): pairs fit 32 bits.
                let a = clamp(_mm_add_epi32(q[0], q[1]));
                let b = clamp(_mm_add_epi32(q[2], q[3]));
                let c = clamp(q[4]);
                let key = clamp(_mm_add_epi32(_mm_add_epi32(a, b), c));
                // Strictly smaller only: the earlier group wins ties.
                let lt = _mm_cmplt_epi32(key, best);
                best = _mm_or_si128(_mm_and_si128(lt, key), _mm_andnot_si128(lt, best));
                best_g = _mm_or_si128(_mm_and_si128(lt, g_vec), _mm_andnot_si128(lt, best_g));
                g_vec = _mm_add_epi32(g_vec, one);
            }
            let (mut keys, mut gs) = ([0i32; 4], [0i32; 4]);
            _mm_storeu_si128(keys.as_mut_ptr() as *mut __m128i, best);
            _mm_storeu_si128(gs.as_mut_ptr() as *mut __m128i, best_g);
            (0..4)
                .map(|l| (keys[l], 4 * gs[l] as usize + l))
                .min()
                .map_or(0, |(_, i)| i)
        }
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        let mut best = (i64::MAX, 0usize);
        for (g, grp) in groups.iter().enumerate() {
            for l in 0..4 {
                let d: i64 = (0..10)
                    .map(|k| {
                        let c = grp[k / 2][2 * l + k % 2];
                        let t = r[k].saturating_sub(c) as i64;
                        t * t
                    })
                    .sum();
                best = best.min((d.min(1 << 30), 4 * g + l));
            }
        }
        best.1
    }
}

/// [`lsp_stage1`] with two groups (eight entries) per AVX2 register: lane
/// `l` of the pair `(2h, 2h + 1)` is entry `8h + l`. The cap is an
/// unsigned minimum with 2^30 (the same clamp of a value below 2^32).
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
fn lsp_stage1_avx2<const CAP: bool>(r: &[i16; 10], groups: &[[[i16; 8]; 5]; 32]) -> usize {
    use std::arch::x86_64::*;
    // SAFETY: AVX2 is enabled for this function; each load reads one
    // 8-element array of `groups`, each store one 8-element array.
    unsafe {
        let cap = _mm256_set1_epi32(1 << 30);
        // (Macros, not closures: a closure would not inherit AVX2 and its
        // intrinsics would stay out-of-line calls.)
        macro_rules! clamp {
            ($v:expr) => {
                if CAP {
                    _mm256_min_epu32($v, cap)
                } else {
                    $v
                }
            };
        }
        let mut rp = [_mm256_setzero_si256(); 5];
        for (p, v) in rp.iter_mut().enumerate() {
            *v = _mm256_set1_epi32((r[2 * p] as u16 as i32) | ((r[2 * p + 1] as i32) << 16));
        }
        let mut best = _mm256_set1_epi32(i32::MAX);
        let mut best_h = _mm256_setzero_si256();
        let mut h_vec = _mm256_setzero_si256();
        let one = _mm256_set1_epi32(1);
        for pair in groups.as_chunks::<2>().0 {
            let mut q = [_mm256_setzero_si256(); 5];
            for (p, v) in q.iter_mut().enumerate() {
                let c = _mm256_inserti128_si256(
                    _mm256_castsi128_si256(_mm_loadu_si128(pair[0][p].as_ptr() as *const __m128i)),
                    _mm_loadu_si128(pair[1][p].as_ptr() as *const __m128i),
                    1,
                );
                let t = _mm256_subs_epi16(rp[p], c);
                *v = _mm256_madd_epi16(t, t);
            }
            let a = clamp!(_mm256_add_epi32(q[0], q[1]));
            let b = clamp!(_mm256_add_epi32(q[2], q[3]));
            let c = clamp!(q[4]);
            let key = clamp!(_mm256_add_epi32(_mm256_add_epi32(a, b), c));
            // Strictly smaller only: the earlier pair wins ties.
            let lt = _mm256_cmpgt_epi32(best, key);
            best = _mm256_min_epi32(best, key);
            best_h = _mm256_blendv_epi8(best_h, h_vec, lt);
            h_vec = _mm256_add_epi32(h_vec, one);
        }
        let (mut keys, mut hs) = ([0i32; 8], [0i32; 8]);
        _mm256_storeu_si256(keys.as_mut_ptr() as *mut __m256i, best);
        _mm256_storeu_si256(hs.as_mut_ptr() as *mut __m256i, best_h);
        let mut best = (i32::MAX, usize::MAX);
        for l in 0..8 {
            best = best.min((keys[l], 8 * hs[l] as usize + l));
        }
        best.1
    }
}

/// Whether any lane `k` has `alp * sq2[k] > sq * a16[k]` (the codebook
/// search's "better" test against one fixed best `(alp, sq)`): all the
/// products are of two 16-bit values, exact in 32 bits.
#[inline(always)]
pub(crate) fn any_better8(alp: i16, sq: i16, sq2: &[i16; 8], a16: &[i16; 8]) -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        use std::arch::x86_64::*;
        // SAFETY: SSE2 is always available on x86_64; each load covers one
        // 8-element array. `pmullw`/`pmulhw` interleaved are the exact
        // 32-bit products.
        unsafe {
            let x = _mm_loadu_si128(sq2.as_ptr() as *const __m128i);
            let y = _mm_loadu_si128(a16.as_ptr() as *const __m128i);
            let va = _mm_set1_epi16(alp);
            let vs = _mm_set1_epi16(sq);
            let (xl, xh) = (_mm_mullo_epi16(x, va), _mm_mulhi_epi16(x, va));
            let (yl, yh) = (_mm_mullo_epi16(y, vs), _mm_mulhi_epi16(y, vs));
            let g0 = _mm_cmpgt_epi32(_mm_unpacklo_epi16(xl, xh), _mm_unpacklo_epi16(yl, yh));
            let g1 = _mm_cmpgt_epi32(_mm_unpackhi_epi16(xl, xh), _mm_unpackhi_epi16(yl, yh));
            _mm_movemask_epi8(_mm_or_si128(g0, g1)) != 0
        }
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        (0..8).any(|k| alp as i32 * sq2[k] as i32 > sq as i32 * a16[k] as i32)
    }
}

/// The rows `i = 39` down to 0 of [`cor_h_blocks`] as `$row!(ki, ti,
/// [tj..])` (`i = ti + 5 ki`), with the tracks `tj` of the blocks each row
/// fills: the rows of tracks 0..3 fill the blocks (ti, tj), tj > ti.
macro_rules! cor_h_row_order {
    ($row:ident) => {
        for ki in (0..8).rev() {
            $row!(ki, 4, []);
            $row!(ki, 3, []);
            $row!(ki, 2, [3, 4]);
            $row!(ki, 1, [2, 3, 4]);
            $row!(ki, 0, [1, 2, 3, 4]);
        }
    };
}

/// The correlations of the codebook search by track, for `h` with
/// `2 Σ h[n]^2 <= MAX_32`: `S(i, j) = Σ_{n = max(i, j)}^{39} h[n - i]
/// h[n - j]` summed modulo 2^32 and stored as `sat16(S >> 15)`, for the
/// pulse positions `i = ti + 5 ki`, `j = tj + 5 kj` (track, index):
/// `diag[8 t + k] = S(i, i)` (`i = t + 5 k`), and `blocks[b][8 ki + kj]`
/// for the track pairs `(ti, tj)` = (0, 1), (0, 2), (0, 3), (0, 4),
/// (1, 2), (1, 3), (1, 4), (2, 3), (2, 4) in that order. Under the bound
/// every partial sum is at most `Σ h[n]^2` in magnitude (Cauchy-Schwarz),
/// so the sums do not wrap and the value is the high half of `2 S`.
///
/// The rows `S(i, ·)` are built from `i = 39` down with `S(i, j) =
/// S(i + 1, j + 1) + h[39 - i] h[39 - j]` (`S(40, ·) = S(·, 40) = 0`),
/// the 40 columns held by track (two registers of 4 lanes per track,
/// `acc[t][k] = S(i, t + 5 k)`). Going from column `j + 1` to `j` is a
/// renaming of the tracks (`t + 1 -> t`), but for track 4, which is track
/// 0 moved by one lane (`5 (k + 1) -> 4 + 5 k`, zero past the end): the
/// registers rotate, so after five rows the names are back in place.
#[inline(always)]
pub(crate) fn cor_h_blocks(h: &[i16; 40], diag: &mut [i16; 40], blocks: &mut [[i16; 64]; 9]) {
    // Running sum of squares: S(i, i) = e[39 - i] = Σ_{m <= 39 - i} h[m]^2
    // (at most MAX_32 / 2, so `e >> 15` fits in 16 bits).
    let mut e = [0i32; 40];
    let mut s = 0i32;
    for (v, &x) in e.iter_mut().zip(h.iter()) {
        s = s.wrapping_add(x as i32 * x as i32);
        *v = s;
    }
    for (t, d) in diag.as_chunks_mut::<8>().0.iter_mut().enumerate() {
        for (k, v) in d.iter_mut().enumerate() {
            *v = (e[39 - t - 5 * k] >> 15).clamp(-32768, 32767) as i16;
        }
    }
    #[cfg(target_arch = "x86_64")]
    {
        if avx2() {
            // SAFETY: the CPU has AVX2 (checked at run time by `avx2`).
            unsafe { cor_h_rows_avx2(h, blocks) };
            return;
        }
        use std::arch::x86_64::*;
        // SAFETY: SSE2 is always available on x86_64. The loads read
        // the 16-element arrays `hz[t]` (two registers each); the stores
        // write 8 elements at `8 ki` of a 64-element block, `ki < 8`.
        unsafe {
            // hz[t] = (h[39 - t - 5 k], 0) pairs for k = 0..8: `pmaddwd`
            // with a broadcast `c` gives the 32-bit products c h[39 - j].
            let mut hz = [[0i16; 16]; 5];
            for (t, z) in hz.iter_mut().enumerate() {
                for k in 0..8 {
                    z[2 * k] = h[39 - t - 5 * k];
                }
            }
            let zl = |t: usize, half: usize| {
                _mm_loadu_si128(hz[t].as_ptr().add(8 * half) as *const __m128i)
            };
            let mut acc = [[_mm_setzero_si128(); 2]; 5];
            macro_rules! row {
                ($ki:expr, $ti:literal, [$($tj:literal),*]) => {{
                    // Physical register of logical track t: (t + 5 - ti) % 5
                    // after this row's rotation; logical 0 (slot 4 - ti)
                    // moves by one lane and becomes track 4.
                    let sh = 4 - $ti;
                    let (lo, hi) = (acc[sh][0], acc[sh][1]);
                    acc[sh][0] = _mm_or_si128(_mm_srli_si128(lo, 4), _mm_slli_si128(hi, 12));
                    acc[sh][1] = _mm_srli_si128(hi, 4);
                    let c = _mm_set1_epi16(h[39 - ($ti + 5 * $ki)]);
                    for t in 0..5 {
                        let p = (t + 5 - $ti) % 5;
                        for half in 0..2 {
                            acc[p][half] =
                                _mm_add_epi32(acc[p][half], _mm_madd_epi16(c, zl(t, half)));
                        }
                    }
                    $({
                        let p = ($tj + 5 - $ti) % 5;
                        let r = _mm_packs_epi32(
                            _mm_srai_epi32(acc[p][0], 15),
                            _mm_srai_epi32(acc[p][1], 15),
                        );
                        let b = &mut blocks[BLOCK[$ti][$tj]];
                        _mm_storeu_si128(b.as_mut_ptr().add(8 * $ki) as *mut __m128i, r);
                    })*
                }};
            }
            cor_h_row_order!(row);
        }
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        let s = |i: usize, j: usize| -> i16 {
            let acc = (i.max(j)..40).fold(0i32, |a, n| {
                a.wrapping_add(h[n - i] as i32 * h[n - j] as i32)
            });
            (acc >> 15).clamp(-32768, 32767) as i16
        };
        for ti in 0..3 {
            for tj in ti + 1..5 {
                for ki in 0..8 {
                    for kj in 0..8 {
                        blocks[BLOCK[ti][tj]][8 * ki + kj] = s(ti + 5 * ki, tj + 5 * kj);
                    }
                }
            }
        }
    }
}

/// The block of track pair (ti, tj) in [`cor_h_blocks`].
const BLOCK: [[usize; 5]; 3] = [[9, 0, 1, 2, 3], [9, 9, 4, 5, 6], [9, 9, 9, 7, 8]];

/// The off-diagonal blocks of [`cor_h_blocks`] with 8 lanes of 32 bits per
/// track (one AVX2 register each); the same rows and sums.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
fn cor_h_rows_avx2(h: &[i16; 40], blocks: &mut [[i16; 64]; 9]) {
    use std::arch::x86_64::*;
    // hz[t] = (h[39 - t - 5 k], 0) pairs for k = 0..8: `pmaddwd` with a
    // broadcast `c` gives the 32-bit products c h[39 - j].
    let mut hz = [[0i16; 16]; 5];
    for (t, z) in hz.iter_mut().enumerate() {
        for k in 0..8 {
            z[2 * k] = h[39 - t - 5 * k];
        }
    }
    // SAFETY: AVX2 is enabled for this function; each load reads one
    // 16-element array `hz[t]`, each store writes 8 elements at `8 ki` of
    // a 64-element block, `ki < 8`.
    unsafe {
        let z: [__m256i; 5] =
            std::array::from_fn(|t| _mm256_loadu_si256(hz[t].as_ptr() as *const __m256i));
        let next = _mm256_setr_epi32(1, 2, 3, 4, 5, 6, 7, 7);
        let zero = _mm256_setzero_si256();
        let mut acc = [zero; 5];
        macro_rules! row {
            ($ki:expr, $ti:literal, [$($tj:literal),*]) => {{
                // As in `cor_h_blocks`: logical track t in register
                // (t + 5 - ti) % 5 after this row's rotation.
                let sh = 4 - $ti;
                let moved = _mm256_permutevar8x32_epi32(acc[sh], next);
                acc[sh] = _mm256_blend_epi32::<0x80>(moved, zero);
                let c = _mm256_set1_epi16(h[39 - ($ti + 5 * $ki)]);
                for (t, &zt) in z.iter().enumerate() {
                    let p = (t + 5 - $ti) % 5;
                    acc[p] = _mm256_add_epi32(acc[p], _mm256_madd_epi16(c, zt));
                }
                $({
                    let v = _mm256_srai_epi32::<15>(acc[($tj + 5 - $ti) % 5]);
                    // Lanes 0..4 and 4..8 packed side by side.
                    let r = _mm256_permute4x64_epi64::<0b1000>(_mm256_packs_epi32(v, v));
                    let b = &mut blocks[BLOCK[$ti][$tj]];
                    _mm_storeu_si128(
                        b.as_mut_ptr().add(8 * $ki) as *mut __m128i,
                        _mm256_castsi256_si128(r),
                    );
                })*
            }};
        }
        cor_h_row_order!(row);
    }
}

/// `Σ_k sat16(a[k] - b[k])^2` exactly (at most 16 * 2^30, so it fits in
/// 64 bits).
#[inline(always)]
pub(crate) fn sq_dist16(a: &[i16; 16], b: &[i16; 16]) -> u64 {
    #[cfg(target_arch = "x86_64")]
    {
        use std::arch::x86_64::*;
        // SAFETY: SSE2 is always available on x86_64; the loads read
        // elements 0..8 and 8..16 of the two 16-element arrays. `psubsw` is
        // the saturating 16-bit subtraction; each `pmaddwd` lane is the sum
        // of two squares, at most 2^31, exact when read as unsigned 32 bits,
        // and the lanes are widened to 64 bits before they are added.
        unsafe {
            let z = _mm_setzero_si128();
            let mut acc = _mm_setzero_si128();
            for k in [0usize, 8] {
                let x = _mm_loadu_si128(a.as_ptr().add(k) as *const __m128i);
                let y = _mm_loadu_si128(b.as_ptr().add(k) as *const __m128i);
                let t = _mm_subs_epi16(x, y);
                let q = _mm_madd_epi16(t, t);
                acc = _mm_add_epi64(acc, _mm_unpacklo_epi32(q, z));
                acc = _mm_add_epi64(acc, _mm_unpackhi_epi32(q, z));
            }
            let hi = _mm_unpackhi_epi64(acc, acc);
            _mm_cvtsi128_si64(_mm_add_epi64(acc, hi)) as u64
        }
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        a.iter()
            .zip(b)
            .map(|(x, y)| {
                let t = x.saturating_sub(*y) as i64;
                (t * t) as u64
            })
            .sum()
    }
}

/// Eight candidates of the algebraic codebook search at once:
/// `sq2[k] = mult(ps2, ps2)` with `ps2 = add(ps1, dn[k])`, and
/// `a16[k] = round(alp1 + 2^13 row[k] + 2^15 tmp[k])` computed without
/// saturation (the caller proves that no partial sum leaves 32 bits).
#[inline(always)]
pub(crate) fn search8(
    ps1: i16,
    alp1: i32,
    dn: &[i16; 8],
    row: &[i16; 8],
    tmp: &[i16; 8],
    sq2: &mut [i16; 8],
    a16: &mut [i16; 8],
) {
    search8_w(ps1, alp1, dn, row, 13, tmp, sq2, a16)
}

/// [`search8`] with the weight of `row` a parameter: `a16[k] =
/// round(alp1 + 2^row_log2 row[k] + 2^15 tmp[k])`, for `row_log2` in
/// `1..=15` (13 in phase B of the codebook search, 14 in phase A).
#[allow(clippy::too_many_arguments)]
#[inline(always)]
pub(crate) fn search8_w(
    ps1: i16,
    alp1: i32,
    dn: &[i16; 8],
    row: &[i16; 8],
    row_log2: u32,
    tmp: &[i16; 8],
    sq2: &mut [i16; 8],
    a16: &mut [i16; 8],
) {
    debug_assert!((1..=15).contains(&row_log2));
    #[cfg(target_arch = "x86_64")]
    {
        use std::arch::x86_64::*;
        // SAFETY: SSE2 is always available on x86_64; every load and store
        // covers exactly one of the 8-element arrays. `paddsw` is the
        // saturating `add`; `pmullw`/`pmulhw` interleaved give the exact
        // 32-bit squares, shifted by 15 and packed with signed saturation
        // (only 2^15, from -32768^2, saturates, to 32767 as `mult` does).
        // Placing a 16-bit value in the high half of a 32-bit lane and
        // shifting right arithmetically by 3 (or 1) gives it times 2^13
        // (or 2^15) exactly.
        unsafe {
            let d = _mm_loadu_si128(dn.as_ptr() as *const __m128i);
            let ps2 = _mm_adds_epi16(_mm_set1_epi16(ps1), d);
            let lo = _mm_mullo_epi16(ps2, ps2);
            let hi = _mm_mulhi_epi16(ps2, ps2);
            let s0 = _mm_srai_epi32(_mm_unpacklo_epi16(lo, hi), 15);
            let s1 = _mm_srai_epi32(_mm_unpackhi_epi16(lo, hi), 15);
            _mm_storeu_si128(sq2.as_mut_ptr() as *mut __m128i, _mm_packs_epi32(s0, s1));

            let z = _mm_setzero_si128();
            let r = _mm_loadu_si128(row.as_ptr() as *const __m128i);
            let t = _mm_loadu_si128(tmp.as_ptr() as *const __m128i);
            let base = _mm_set1_epi32(alp1.wrapping_add(0x8000));
            let rsh = _mm_cvtsi32_si128(16 - row_log2 as i32);
            let a0 = _mm_add_epi32(
                base,
                _mm_add_epi32(
                    _mm_sra_epi32(_mm_unpacklo_epi16(z, r), rsh),
                    _mm_srai_epi32(_mm_unpacklo_epi16(z, t), 1),
                ),
            );
            let a1 = _mm_add_epi32(
                base,
                _mm_add_epi32(
                    _mm_sra_epi32(_mm_unpackhi_epi16(z, r), rsh),
                    _mm_srai_epi32(_mm_unpackhi_epi16(z, t), 1),
                ),
            );
            let packed = _mm_packs_epi32(_mm_srai_epi32(a0, 16), _mm_srai_epi32(a1, 16));
            _mm_storeu_si128(a16.as_mut_ptr() as *mut __m128i, packed);
        }
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        for k in 0..8 {
            let ps2 = ps1.saturating_add(dn[k]) as i32;
            sq2[k] = ((ps2 * ps2) >> 15).min(i16::MAX as i32) as i16;
            let alp2 = alp1
                .wrapping_add((row[k] as i32) << row_log2)
                .wrapping_add((tmp[k] as i32) << 15);
            a16[k] = (alp2.wrapping_add(0x8000) >> 16) as i16;
        }
    }
}

/// The second-stage LSP codebook search over 32 entries, eight at a time:
/// the index of the first smallest `min(Σ_j mult(w[j], t) t, 2^30)` with
/// `t = sub(b[j], cols[j][i])` for entry `i` (`cols` holds the five
/// elements of each entry column-wise). For weights `0 <= w[j]` every term
/// is non-negative (`mult(w, t)` has the sign of `t`) and below 2^30, so
/// the capped running sums stay in 32 bits; the reference's distance
/// `L_mac` chain `2 Σ` saturates at `MAX_32` exactly when `Σ >= 2^30`, so
/// capping keeps its order, and its `d < dmin` scan from `MAX_32` ends on
/// the first smallest key (entry 0 when all are capped).
#[inline(always)]
pub(crate) fn lsp_stage2(b: &[i16; 5], w: &[i16; 5], cols: &[[i16; 32]; 5]) -> usize {
    debug_assert!(w.iter().all(|&v| v >= 0));
    #[cfg(target_arch = "x86_64")]
    {
        use std::arch::x86_64::*;
        // SAFETY: SSE2 is always available on x86_64; each load reads the
        // 8 elements `8g..8g + 8` (g < 4) of one 32-element column, each
        // store one 4-element array. `psubsw` is `sub`; `pmullw`/`pmulhw`
        // interleaved are exact 32-bit products; `mult(w, t)` with
        // `0 <= w` fits 16 bits, so the pack does not saturate.
        unsafe {
            let cap = _mm_set1_epi32(1 << 30);
            let zero = _mm_setzero_si128();
            // min(v, 2^30) for v < 2^31.
            let clamp = |v: __m128i| {
                let small = _mm_cmpeq_epi32(_mm_srli_epi32(v, 30), zero);
                _mm_or_si128(_mm_and_si128(v, small), _mm_andnot_si128(small, cap))
            };
            let bv: [__m128i; 5] = std::array::from_fn(|j| _mm_set1_epi16(b[j]));
            let wv: [__m128i; 5] = std::array::from_fn(|j| _mm_set1_epi16(w[j]));
            let mut best = _mm_set1_epi32(i32::MAX);
            let mut best_i = zero;
            let mut idx = _mm_set_epi32(3, 2, 1, 0);
            let four = _mm_set1_epi32(4);
            for g in 0..4 {
                let (mut a0, mut a1) = (zero, zero);
                for j in 0..5 {
                    let c = _mm_loadu_si128(cols[j].as_ptr().add(8 * g) as *const __m128i);
                    let t = _mm_subs_epi16(bv[j], c);
                    let lo = _mm_mullo_epi16(wv[j], t);
                    let hi = _mm_mulhi_epi16(wv[j], t);
                    let t2 = _mm_packs_epi32(
                        _mm_srai_epi32(_mm_unpacklo_epi16(lo, hi), 15),
                        _mm_srai_epi32(_mm_unpackhi_epi16(lo, hi), 15),
                    );
                    let (ql, qh) = (_mm_mullo_epi16(t2, t), _mm_mulhi_epi16(t2, t));
                    a0 = clamp(_mm_add_epi32(a0, _mm_unpacklo_epi16(ql, qh)));
                    a1 = clamp(_mm_add_epi32(a1, _mm_unpackhi_epi16(ql, qh)));
                }
                for key in [a0, a1] {
                    // Strictly smaller only: the earlier entry wins ties.
                    let lt = _mm_cmplt_epi32(key, best);
                    best = _mm_or_si128(_mm_and_si128(lt, key), _mm_andnot_si128(lt, best));
                    best_i = _mm_or_si128(_mm_and_si128(lt, idx), _mm_andnot_si128(lt, best_i));
                    idx = _mm_add_epi32(idx, four);
                }
            }
            let (mut keys, mut is) = ([0i32; 4], [0i32; 4]);
            _mm_storeu_si128(keys.as_mut_ptr() as *mut __m128i, best);
            _mm_storeu_si128(is.as_mut_ptr() as *mut __m128i, best_i);
            (0..4)
                .map(|l| (keys[l], is[l] as usize))
                .min()
                .map_or(0, |(_, i)| i)
        }
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        let mut best = (i64::MAX, 0usize);
        for i in 0..32 {
            let d: i64 = (0..5)
                .map(|j| {
                    let t = b[j].saturating_sub(cols[j][i]) as i64;
                    ((w[j] as i64 * t) >> 15) * t
                })
                .sum();
            best = best.min((d.min(1 << 30), i));
        }
        best.1
    }
}

/// The scan the codebook search makes over `R` rows of 8 candidates, in
/// row-major order from `(sq, alp) = (-1, 1)`, replacing the best whenever
/// `alp * sq2 > sq * a16`: returns the (row, lane) it ends on. The caller
/// guarantees `sq2 >= 0` and `a16 > 0` everywhere; then the test compares
/// the exact ratios `sq2 / a16`, the first candidate always replaces the
/// start, and the scan ends on the FIRST largest ratio. That is found here
/// without data-dependent branches: a lane-wise tournament over the rows
/// (a later row replaces only when strictly better, so ties keep the
/// earlier row), then the 8 lane winners compared, ties going to the
/// earlier row, then to the earlier lane. All products are of two 16-bit
/// values, exact in 32 bits.
#[inline(always)]
pub(crate) fn first_best_ratio<const R: usize>(
    sq2: &[[i16; 8]; R],
    a16: &[[i16; 8]; R],
) -> (usize, usize) {
    debug_assert!(sq2.iter().flatten().all(|&v| v >= 0));
    debug_assert!(a16.iter().flatten().all(|&v| v > 0));
    #[cfg(target_arch = "x86_64")]
    {
        use std::arch::x86_64::*;
        // SAFETY: SSE2 is always available on x86_64; every load covers
        // exactly one 8-element array. `pmullw`/`pmulhw` interleaved are the
        // exact 32-bit products; `packs_epi32` of the all-ones/zero compare
        // masks gives 16-bit lane masks.
        unsafe {
            let ld = |v: &[i16; 8]| _mm_loadu_si128(v.as_ptr() as *const __m128i);
            let (mut s, mut a, mut r) = (ld(&sq2[0]), ld(&a16[0]), _mm_setzero_si128());
            for row in 1..R {
                let (s1, a1) = (ld(&sq2[row]), ld(&a16[row]));
                let (pl, ph) = (_mm_mullo_epi16(s1, a), _mm_mulhi_epi16(s1, a));
                let (ql, qh) = (_mm_mullo_epi16(s, a1), _mm_mulhi_epi16(s, a1));
                let g0 = _mm_cmpgt_epi32(_mm_unpacklo_epi16(pl, ph), _mm_unpacklo_epi16(ql, qh));
                let g1 = _mm_cmpgt_epi32(_mm_unpackhi_epi16(pl, ph), _mm_unpackhi_epi16(ql, qh));
                let m = _mm_packs_epi32(g0, g1);
                s = _mm_or_si128(_mm_and_si128(m, s1), _mm_andnot_si128(m, s));
                a = _mm_or_si128(_mm_and_si128(m, a1), _mm_andnot_si128(m, a));
                let rv = _mm_set1_epi16(row as i16);
                r = _mm_or_si128(_mm_and_si128(m, rv), _mm_andnot_si128(m, r));
            }
            // Then the lane winners, by a tree of three rounds: each lane
            // takes its partner's entry when that is strictly before it in
            // the scan's order (larger ratio, else earlier row, else
            // earlier lane). With `key = 8 row + lane` all keys differ, the
            // order is total and both partners keep the same entry, so the
            // tree ends on the same entry as the sequential comparison.
            // Lanes are widened to 32 bits as (v, 0) pairs: `pmaddwd` of two
            // of them is the exact product of two 16-bit values.
            let zero = _mm_setzero_si128();
            let key = _mm_add_epi16(_mm_slli_epi16(r, 3), _mm_set_epi16(7, 6, 5, 4, 3, 2, 1, 0));
            let wide = |v: __m128i| (_mm_unpacklo_epi16(v, zero), _mm_unpackhi_epi16(v, zero));
            let (s0, s1) = wide(s);
            let (a0, a1) = wide(a);
            let (k0, k1) = wide(key);
            let pick = |(s, a, k): (__m128i, __m128i, __m128i),
                        (so, ao, ko): (__m128i, __m128i, __m128i)| {
                let x = _mm_madd_epi16(so, a);
                let y = _mm_madd_epi16(s, ao);
                let m = _mm_or_si128(
                    _mm_cmpgt_epi32(x, y),
                    _mm_and_si128(_mm_cmpeq_epi32(x, y), _mm_cmplt_epi32(ko, k)),
                );
                let sel = |o: __m128i, v: __m128i| {
                    _mm_or_si128(_mm_and_si128(m, o), _mm_andnot_si128(m, v))
                };
                (sel(so, s), sel(ao, a), sel(ko, k))
            };
            let mut w = pick((s0, a0, k0), (s1, a1, k1));
            let swap2 = |(s, a, k): (__m128i, __m128i, __m128i)| {
                (
                    _mm_shuffle_epi32(s, 0b01_00_11_10),
                    _mm_shuffle_epi32(a, 0b01_00_11_10),
                    _mm_shuffle_epi32(k, 0b01_00_11_10),
                )
            };
            w = pick(w, swap2(w));
            let swap1 = |(s, a, k): (__m128i, __m128i, __m128i)| {
                (
                    _mm_shuffle_epi32(s, 0b10_11_00_01),
                    _mm_shuffle_epi32(a, 0b10_11_00_01),
                    _mm_shuffle_epi32(k, 0b10_11_00_01),
                )
            };
            w = pick(w, swap1(w));
            let k = _mm_cvtsi128_si32(w.2) as usize;
            (k >> 3, k & 7)
        }
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        let mut bs = sq2[0];
        let mut ba = a16[0];
        let mut br = [0usize; 8];
        for row in 1..R {
            for k in 0..8 {
                if sq2[row][k] as i32 * ba[k] as i32 > bs[k] as i32 * a16[row][k] as i32 {
                    bs[k] = sq2[row][k];
                    ba[k] = a16[row][k];
                    br[k] = row;
                }
            }
        }
        let mut best = 0usize;
        for k in 1..8 {
            let x = bs[k] as i32 * ba[best] as i32;
            let y = bs[best] as i32 * ba[k] as i32;
            if x > y || (x == y && br[k] < br[best]) {
                best = k;
            }
        }
        (br[best], best)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dot8n_matches_wrapping_scalar() {
        let mut seed = 1u32;
        let mut next = || {
            seed = seed.wrapping_mul(1_103_515_245).wrapping_add(12345);
            (seed >> 8) as i16
        };
        for _ in 0..200 {
            let mut a = [0i16; 24];
            let mut b = [0i16; 24];
            for k in 0..24 {
                a[k] = next();
                b[k] = next();
            }
            a[3] = i16::MIN;
            b[3] = i16::MIN;
            let want = a
                .iter()
                .zip(&b)
                .fold(0i32, |s, (x, y)| s.wrapping_add(*x as i32 * *y as i32));
            assert_eq!(dot8n(&a, &b), want);
        }
    }

    #[test]
    fn sq_dist16_matches_scalar() {
        let mut a = [i16::MIN; 16];
        let mut b = [i16::MAX; 16];
        a[1] = 1234;
        b[2] = -5;
        a[15] = i16::MAX;
        let want: u64 = a
            .iter()
            .zip(&b)
            .map(|(x, y)| {
                let t = x.saturating_sub(*y) as i64;
                (t * t) as u64
            })
            .sum();
        assert_eq!(sq_dist16(&a, &b), want);
    }

    #[test]
    fn search8_matches_scalar() {
        let dn = [0, 1, -1, i16::MAX, i16::MIN, 1000, -20000, 32000];
        let row = [i16::MIN, i16::MAX, 0, 5, -5, 300, -300, 7];
        let tmp = [i16::MAX, i16::MIN, 1, -1, 0, 999, -999, 12345];
        for ps1 in [0i16, 1, -1, 20000, -20000, i16::MIN, i16::MAX] {
            let alp1 = 123_456i32;
            let (mut sq2, mut a16) = ([0i16; 8], [0i16; 8]);
            search8(ps1, alp1, &dn, &row, &tmp, &mut sq2, &mut a16);
            for k in 0..8 {
                let ps2 = ps1.saturating_add(dn[k]) as i32;
                let want = ((ps2 * ps2) >> 15).min(i16::MAX as i32) as i16;
                assert_eq!(sq2[k], want);
                let alp2 = alp1 + ((row[k] as i32) << 13) + ((tmp[k] as i32) << 15);
                assert_eq!(a16[k], ((alp2 + 0x8000) >> 16) as i16);
            }
            let (mut sq2w, mut a16w) = ([0i16; 8], [0i16; 8]);
            search8_w(ps1, alp1, &dn, &row, 14, &tmp, &mut sq2w, &mut a16w);
            assert_eq!(sq2w, sq2);
            for k in 0..8 {
                let alp2 = alp1 + ((row[k] as i32) << 14) + ((tmp[k] as i32) << 15);
                assert_eq!(a16w[k], ((alp2 + 0x8000) >> 16) as i16);
            }
        }
    }

    #[test]
    fn lsp_stage2_matches_scalar_first_minimum() {
        let mut seed = 11u32;
        let mut next = || {
            seed = seed.wrapping_mul(1_103_515_245).wrapping_add(12345);
            (seed >> 16) as i16
        };
        let (mut capped, mut ties) = (0, 0);
        for round in 0..3000 {
            // Small ranges give ties, full ranges saturated distances.
            let sh = [12, 8, 0][round % 3];
            let mut cols = [[0i16; 32]; 5];
            for col in cols.iter_mut() {
                for v in col.iter_mut() {
                    *v = next() >> sh;
                }
            }
            let b: [i16; 5] = std::array::from_fn(|_| next() >> sh);
            let mut w: [i16; 5] = std::array::from_fn(|_| {
                let v = next();
                if sh == 0 {
                    v.saturating_abs()
                } else {
                    (v >> 1).max(0)
                }
            });
            if round % 7 == 0 {
                w[0] = i16::MAX;
                cols[0][5] = i16::MIN;
            }
            let key = |i: usize| -> i64 {
                let d: i64 = (0..5)
                    .map(|j| {
                        let t = b[j].saturating_sub(cols[j][i]) as i64;
                        ((w[j] as i64 * t) >> 15) * t
                    })
                    .sum();
                // The reference's L_mac distance, saturated.
                (2 * d).min(i32::MAX as i64)
            };
            let (mut want, mut dmin) = (0usize, i32::MAX as i64);
            for i in 0..32 {
                if key(i) < dmin {
                    dmin = key(i);
                    want = i;
                }
            }
            capped += (0..32).any(|i| key(i) == i32::MAX as i64) as u32;
            ties += (0..32)
                .filter(|&i| i != want && key(i) == dmin)
                .count()
                .min(1) as u32;
            assert_eq!(lsp_stage2(&b, &w, &cols), want, "round {round}");
        }
        assert!(capped > 10 && ties > 10, "{capped} {ties}");
        // Every distance saturated: the reference keeps entry 0.
        let b = [i16::MAX; 5];
        let cols = [[i16::MIN; 32]; 5];
        assert_eq!(lsp_stage2(&b, &[i16::MAX; 5], &cols), 0);
    }

    #[test]
    fn fir20x8_and_fir20x16_match_scalar_on_both_paths() {
        let mut seed = 12345u32;
        let mut rnd = || {
            seed = seed.wrapping_mul(1103515245).wrapping_add(12345);
            ((seed >> 8) as i32 % 65536 - 32768) as i16
        };
        let mut checked = 0;
        for baseline in [false, true] {
            BASELINE_ONLY.with(|b| b.set(baseline));
            for round in 0..400 {
                // Small coefficients keep |sum| <= 2^30 (the promised
                // domain); the last rounds push the sums to the saturating
                // edge, with samples at the 16-bit extremes.
                let scale = if round < 380 { 8 } else { 0 };
                let c: [i16; 20] = std::array::from_fn(|_| rnd() >> (scale + 4));
                let w: [i16; 35] = std::array::from_fn(|_| match round % 7 {
                    0 => i16::MAX,
                    1 => i16::MIN,
                    _ => rnd(),
                });
                let pairs = fir20_pairs(&c);
                let got16 = fir20x16(&w, &pairs);
                let got8 = fir20x8(w[..27].try_into().unwrap(), &pairs);
                for j in 0..16 {
                    let d: i64 = (0..20).map(|k| c[k] as i64 * w[j + k] as i64).sum();
                    if d.abs() > 1 << 30 {
                        continue;
                    }
                    let s = 2 * d + 0x8000;
                    let want = if s > i32::MAX as i64 {
                        0x7fff
                    } else {
                        (s >> 16) as i16
                    };
                    assert_eq!(got16[j], want, "round {round} lane {j} baseline {baseline}");
                    if j < 8 {
                        assert_eq!(got8[j], want, "round {round} lane {j} baseline {baseline}");
                    }
                    checked += 1;
                }
            }
        }
        BASELINE_ONLY.with(|b| b.set(false));
        assert!(checked > 10_000, "{checked}");
    }

    #[test]
    fn abs_sum8n_is_the_sum_of_magnitudes() {
        let mut seed = 99u32;
        for round in 0..200 {
            let a: [i16; 40] = std::array::from_fn(|k| {
                seed = seed.wrapping_mul(1_103_515_245).wrapping_add(12345);
                match round % 4 {
                    0 => (seed >> 16) as i16,
                    1 => [i16::MIN, i16::MAX, -1, 0][(seed >> 20) as usize % 4],
                    2 => i16::MIN,
                    _ => (k as i16 - 20) * 1000,
                }
            });
            let want: i32 = a.iter().map(|v| v.unsigned_abs() as i32).sum();
            assert_eq!(abs_sum8n(&a), want, "{a:?}");
        }
    }

    #[test]
    fn max_abs8_and_all_abs_le8_match_scalar() {
        let mut seed = 4242u32;
        let mut next = || {
            seed = seed.wrapping_mul(1_103_515_245).wrapping_add(12345);
            seed
        };
        let ends16 = [i16::MIN, -32767, -1, 0, 1, 32767];
        let ends32 = [i32::MIN, i32::MIN + 1, -1, 0, 1, i32::MAX];
        for round in 0..3000 {
            let v: [i16; 8] = std::array::from_fn(|_| match round % 3 {
                0 => (next() >> 16) as i16,
                1 => ends16[next() as usize % 6],
                _ => (next() >> 24) as i16,
            });
            let want = v.iter().map(|x| x.unsigned_abs()).max().unwrap_or(0);
            assert_eq!(max_abs8(&v), want, "{v:?}");
            let w: [i32; 8] = std::array::from_fn(|_| match round % 3 {
                0 => next() as i32,
                1 => ends32[next() as usize % 6],
                _ => (next() as i32) >> 8,
            });
            let m = w.iter().map(|x| x.unsigned_abs() as i64).max().unwrap_or(0);
            for t in [
                -1,
                0,
                m - 1,
                m,
                m + 1,
                i32::MAX as i64,
                1 << 40,
                (next() >> 1) as i64,
            ] {
                assert_eq!(all_abs_le8(&w, t), m <= t, "{w:?} {t}");
            }
        }
    }

    #[test]
    fn mult_sign8_is_mult_by_max16_or_min16_for_every_input() {
        // Every 16-bit value, each lane with both masks.
        for base in (i16::MIN as i32..=i16::MAX as i32).step_by(8) {
            let x: [i16; 8] = std::array::from_fn(|k| (base + k as i32) as i16);
            for m in [[0i16; 8], [-1i16; 8], [0, -1, 0, -1, -1, 0, -1, 0]] {
                let want: [i16; 8] = std::array::from_fn(|k| {
                    let p = (i16::MAX ^ m[k]) as i32;
                    ((x[k] as i32 * p) >> 15).clamp(-32768, 32767) as i16
                });
                let mut v = x;
                mult_sign8(&mut v, &m);
                assert_eq!(v, want, "{x:?} {m:?}");
            }
        }
    }

    #[test]
    fn dot40_down4_is_the_wrapping_dot_on_both_clones() {
        avx2_multiversion! {
            fn down4_mv(a: &[i16; 40], w: &[i16; 43]) -> [i32; 4] = dot40_down4;
        }
        let mut seed = 99u32;
        let mut rnd = || {
            seed = seed.wrapping_mul(1103515245).wrapping_add(12345);
            ((seed >> 8) as i32 % 65536 - 32768) as i16
        };
        for round in 0..2000 {
            let mut a: [i16; 40] = std::array::from_fn(|_| rnd());
            let mut w: [i16; 43] = std::array::from_fn(|_| rnd());
            if round % 4 == 0 {
                // Extremes: pairs of (-32768)^2 products wrap.
                a = [i16::MIN; 40];
                w.iter_mut()
                    .step_by(round % 3 + 1)
                    .for_each(|v| *v = i16::MIN);
            }
            let want: [i32; 4] = std::array::from_fn(|q| {
                (0..40).fold(0i32, |s, k| {
                    s.wrapping_add(a[k] as i32 * w[3 - q + k] as i32)
                })
            });
            for baseline in [false, true] {
                BASELINE_ONLY.with(|b| b.set(baseline));
                let got = down4_mv(&a, &w);
                BASELINE_ONLY.with(|b| b.set(false));
                assert_eq!(got, want, "round {round}");
            }
        }
    }

    #[test]
    fn lsp_stage1_matches_scalar_first_minimum() {
        let mut seed = 31u32;
        let mut rnd = |n: u32| {
            seed = seed.wrapping_mul(1103515245).wrapping_add(12345);
            (seed >> 8) % n
        };
        let (mut capped, mut unclamped) = (0, 0);
        for round in 0..300 {
            // Codebook values in [0, 30000], targets in [-2000, 32767]: no
            // difference reaches -32768 (the kernel's precondition). Small
            // spreads give close and tied distances, large ones saturate.
            let spread = [40, 3000, 30001][round % 3];
            let mut cb = [[0i16; 10]; 128];
            for e in cb.iter_mut() {
                for v in e.iter_mut() {
                    *v = rnd(spread) as i16;
                }
            }
            if round % 5 == 0 {
                cb[77] = cb[12];
                cb[5] = cb[100];
            }
            let r: [i16; 10] = std::array::from_fn(|_| {
                (rnd(spread.min(30000) + 2000) as i32 - 2000).min(32767) as i16
            });
            let mut groups = [[[0i16; 8]; 5]; 32];
            for (g, grp) in groups.iter_mut().enumerate() {
                for (p, v) in grp.iter_mut().enumerate() {
                    for l in 0..4 {
                        v[2 * l] = cb[4 * g + l][2 * p];
                        v[2 * l + 1] = cb[4 * g + l][2 * p + 1];
                    }
                }
            }
            // The reference: L_mac distances (saturating), first minimum.
            let mut want = 0;
            let mut dmin = i32::MAX;
            for (i, e) in cb.iter().enumerate() {
                let mut d = 0i32;
                for k in 0..10 {
                    let t = r[k].saturating_sub(e[k]) as i32;
                    d = d.saturating_add(2 * t * t);
                }
                capped += (d == i32::MAX) as u32;
                if d < dmin {
                    dmin = d;
                    want = i;
                }
            }
            // The AVX2 kernel (where the CPU has it) and the SSE2 one.
            let both = |f: fn(&[i16; 10], &[[[i16; 8]; 5]; 32]) -> usize| {
                [false, true].map(|baseline| {
                    BASELINE_ONLY.with(|b| b.set(baseline));
                    let i = f(&r, &groups);
                    BASELINE_ONLY.with(|b| b.set(false));
                    i
                })
            };
            assert_eq!(both(lsp_stage1::<true>), [want; 2], "round {round}");
            // Without the clamps under their precondition: the largest
            // distance from r of any point of the codebook's bounding box
            // stays below 2^30.
            let far: i64 = (0..10)
                .map(|k| {
                    let lo = cb.iter().map(|e| e[k]).min().unwrap_or(0) as i64;
                    let hi = cb.iter().map(|e| e[k]).max().unwrap_or(0) as i64;
                    let d = (r[k] as i64 - lo).max(hi - r[k] as i64);
                    d * d
                })
                .sum();
            if far < 1 << 30 {
                unclamped += 1;
                assert_eq!(both(lsp_stage1::<false>), [want; 2], "round {round}");
            }
        }
        assert!(capped > 100, "{capped}");
        assert!(unclamped > 100, "{unclamped}");
    }

    #[test]
    fn any_better8_matches_scalar() {
        let mut seed = 777u32;
        let mut rnd = || {
            seed = seed.wrapping_mul(1103515245).wrapping_add(12345);
            ((seed >> 8) as i32 % 65536 - 32768) as i16
        };
        let mut hits = 0;
        for _ in 0..2000 {
            let (alp, sq) = (rnd(), rnd());
            let sq2: [i16; 8] = std::array::from_fn(|_| rnd());
            let a16: [i16; 8] = std::array::from_fn(|_| rnd());
            let want = (0..8).any(|k| alp as i32 * sq2[k] as i32 > sq as i32 * a16[k] as i32);
            assert_eq!(any_better8(alp, sq, &sq2, &a16), want);
            hits += want as u32;
        }
        assert!(hits > 100 && hits < 2000);
        let m = [i16::MIN; 8];
        assert!(!any_better8(i16::MIN, i16::MIN, &m, &m));
        assert!(any_better8(i16::MIN, i16::MIN, &m, &[i16::MAX; 8]));
    }

    avx2_multiversion! {
        fn corr_tri40_mv(x: &[i16; 40], h: &[i16; 40], y: &mut [i32; 40]) = corr_tri40;
    }

    #[test]
    fn corr_tri40_is_the_wrapping_correlation_on_both_clones() {
        let mut seed = 3u32;
        let mut next = || {
            seed = seed.wrapping_mul(1_103_515_245).wrapping_add(12345);
            (seed >> 8) as i16
        };
        for baseline in [false, true] {
            BASELINE_ONLY.with(|b| b.set(baseline));
            for round in 0..400 {
                let mut x = [0i16; 40];
                let mut h = [0i16; 40];
                for k in 0..40 {
                    // Random, then all extreme values (sums wrap), then
                    // single impulses (each output is one product).
                    (x[k], h[k]) = match round % 3 {
                        0 => (next(), next()),
                        1 => (
                            [i16::MIN, i16::MAX][(next() & 1) as usize],
                            [i16::MIN, i16::MAX][(next() & 1) as usize],
                        ),
                        _ => (
                            if k == round % 40 { next() } else { 0 },
                            if k == (round / 40) % 40 { next() } else { 0 },
                        ),
                    };
                }
                let mut got = [0i32; 40];
                corr_tri40_mv(&x, &h, &mut got);
                for i in 0..40 {
                    let want = (0..40 - i)
                        .fold(0i32, |s, k| s.wrapping_add(x[i + k] as i32 * h[k] as i32));
                    assert_eq!(got[i], want, "round {round} i {i} baseline {baseline}");
                }
            }
        }
        BASELINE_ONLY.with(|b| b.set(false));
    }

    #[test]
    fn corr_tri40_is_the_wrapping_correlation_at_the_rails_on_both_clones() {
        use crate::codec::g729::util::random;
        for baseline in [false, true] {
            BASELINE_ONLY.with(|b| b.set(baseline));
            let mut seed = 31i16;
            for round in 0..500 {
                let gen = |seed: &mut i16| match round % 5 {
                    0 => [i16::MIN, i16::MAX][(random(seed) & 1) as usize],
                    1 => i16::MIN,
                    _ => super::super::basic_op::shr(random(seed), (round % 7) as i16),
                };
                let x: [i16; 40] = std::array::from_fn(|_| gen(&mut seed));
                let h: [i16; 40] = std::array::from_fn(|_| gen(&mut seed));
                let want: [i32; 40] = std::array::from_fn(|i| {
                    (0..40 - i).fold(0i32, |s, k| s.wrapping_add(x[i + k] as i32 * h[k] as i32))
                });
                let mut got = [0i32; 40];
                corr_tri40_mv(&x, &h, &mut got);
                assert_eq!(got, want, "round {round}");
            }
        }
        BASELINE_ONLY.with(|b| b.set(false));
    }

    avx2_multiversion! {
        fn first_best_ratio8(sq2: &[[i16; 8]; 8], a16: &[[i16; 8]; 8]) -> (usize, usize)
            = first_best_ratio::<8>;
        fn first_best_ratio2(sq2: &[[i16; 8]; 2], a16: &[[i16; 8]; 2]) -> (usize, usize)
            = first_best_ratio::<2>;
    }

    #[test]
    fn first_best_ratio_is_the_sequential_scan_on_both_clones() {
        for baseline in [false, true] {
            BASELINE_ONLY.with(|b| b.set(baseline));
            first_best_ratio_is_the_sequential_scan();
        }
        BASELINE_ONLY.with(|b| b.set(false));
    }

    fn first_best_ratio_is_the_sequential_scan() {
        let mut seed = 7u32;
        let mut next = |m: u32| {
            seed = seed.wrapping_mul(1_103_515_245).wrapping_add(12345);
            (seed >> 16) % m
        };
        for round in 0..3000 {
            // Small ranges force many equal ratios (ties), large ones the
            // full 16-bit products.
            // The last kind takes only the extreme values (largest
            // products, and equal ratios of unequal pairs such as 0/1 and
            // 0/32767).
            let (ms, ma) = match round % 4 {
                0 => (4, 3),
                1 => (50, 40),
                2 => (32768, 32767),
                _ => (0, 0),
            };
            let mut sq2 = [[0i16; 8]; 8];
            let mut a16 = [[0i16; 8]; 8];
            for r in 0..8 {
                for k in 0..8 {
                    if ms == 0 {
                        sq2[r][k] = [0, 1, 32766, 32767][next(4) as usize];
                        a16[r][k] = [1, 2, 32766, 32767][next(4) as usize];
                    } else {
                        sq2[r][k] = next(ms) as i16;
                        a16[r][k] = 1 + next(ma) as i16;
                    }
                }
            }
            let (mut sq, mut alp, mut at) = (-1i16, 1i16, None);
            for r in 0..8 {
                for k in 0..8 {
                    if alp as i32 * sq2[r][k] as i32 > sq as i32 * a16[r][k] as i32 {
                        (sq, alp, at) = (sq2[r][k], a16[r][k], Some((r, k)));
                    }
                }
            }
            assert_eq!(Some(first_best_ratio8(&sq2, &a16)), at, "round {round}");
            let two: &[[i16; 8]; 2] = sq2[..2].try_into().unwrap();
            let two_a: &[[i16; 8]; 2] = a16[..2].try_into().unwrap();
            let (mut sq, mut alp, mut at) = (-1i16, 1i16, None);
            for r in 0..2 {
                for k in 0..8 {
                    if alp as i32 * two[r][k] as i32 > sq as i32 * two_a[r][k] as i32 {
                        (sq, alp, at) = (two[r][k], two_a[r][k], Some((r, k)));
                    }
                }
            }
            assert_eq!(
                Some(first_best_ratio2(two, two_a)),
                at,
                "round {round} (2 rows)"
            );
        }
    }
}
