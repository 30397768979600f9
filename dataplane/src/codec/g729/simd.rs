//! Small exact integer kernels for the G.729 hot loops: 16x16-bit dot
//! products summed modulo 2^32 (`pmaddwd` on x86_64, where SSE2 is part of
//! the baseline, so no runtime detection is needed; plain Rust elsewhere).
//!
//! Callers use the result only where they have proven that every partial
//! sum fits in 32 bits, so wrapping and the reference's saturating
//! `L_mac` chain agree. The only `unsafe` in the codec.
#![allow(unsafe_code)]

/// `Σ a[k] * b[k]` modulo 2^32, for `N` a multiple of 8.
#[inline(always)]
pub(crate) fn dot8n<const N: usize>(a: &[i16; N], b: &[i16; N]) -> i32 {
    const { assert!(N % 8 == 0) };
    #[cfg(target_arch = "x86_64")]
    {
        use std::arch::x86_64::*;
        // SAFETY: SSE2 is always available on x86_64. Each unaligned load
        // reads the 8 elements `k..k + 8` with `k + 8 <= N`, inside both
        // arrays. `pmaddwd` wraps only when both products of a pair are
        // (-32768)^2, and wrapping is the arithmetic promised here.
        unsafe {
            let mut acc = _mm_setzero_si128();
            let mut k = 0;
            while k < N {
                let x = _mm_loadu_si128(a.as_ptr().add(k) as *const __m128i);
                let y = _mm_loadu_si128(b.as_ptr().add(k) as *const __m128i);
                acc = _mm_add_epi32(acc, _mm_madd_epi16(x, y));
                k += 8;
            }
            let hi = _mm_unpackhi_epi64(acc, acc);
            let s = _mm_add_epi32(acc, hi);
            let s2 = _mm_shuffle_epi32(s, 0b01);
            _mm_cvtsi128_si32(_mm_add_epi32(s, s2))
        }
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
}
