//! Voice DSP on linear 8 kHz 16-bit samples.
//!
//! Everything here is pure signal processing: no clocks, no I/O, no
//! allocation after construction. Time enters as sample counts or as
//! caller-supplied timestamps, so the dataplane workers (and the tests) drive
//! it block by block.
//!
//! - [`ec`]: line echo canceller in the spirit of ITU-T G.168 (IPNLMS with a
//!   foreground/background filter pair, Geigel double-talk detection, NLP with
//!   comfort noise, 2100 Hz phase-reversal tone disable, runtime SIMD).
//! - [`dtmf`]: DTMF detection to ITU-T Q.24, generation, and RFC 4733
//!   telephone-event payloads with a sender state machine.
//! - [`tones`]: call-progress tones by zone (dial, ringback, busy, ...).
//! - [`jitter`]: adaptive jitter buffer (sans-IO `put`/`get`).
//! - [`plc`]: ITU-T G.711 Appendix I packet loss concealment.
//! - [`fsk`]: caller ID for analog lines (Bell 202, V.23, DTMF; SDMF/MDMF).
//!
//! Levels are in dBm0 with the G.711 µ-law convention: a full-scale sine is
//! +3.17 dBm0, so a 0 dBm0 sine has a peak of about 22 670 in 16-bit linear.

pub mod dtmf;
pub mod ec;
mod ec_control;
pub mod ec_fdaf;
pub mod fsk;
pub mod jitter;
pub mod plc;
mod simd;
pub mod tones;

/// Sample rate of everything in this module.
pub const SAMPLE_RATE: u32 = 8000;

/// Peak amplitude (16-bit linear) of a 0 dBm0 sine (µ-law convention).
pub const DBM0_PEAK: f32 = 22_670.0;

/// Peak amplitude of a sine at `dbm0`.
pub fn dbm0_to_peak(dbm0: f32) -> f32 {
    DBM0_PEAK * 10f32.powf(dbm0 / 20.0)
}

/// Level in dBm0 of a signal with mean power `power` (16-bit linear units squared).
pub fn power_to_dbm0(power: f32) -> f32 {
    // 0 dBm0 sine: power = peak^2 / 2.
    10.0 * (power.max(1e-10) / (DBM0_PEAK * DBM0_PEAK * 0.5)).log10()
}

/// Saturate a float sample to 16 bits.
#[inline]
pub(crate) fn sat16(x: f32) -> i16 {
    // `as` saturates float-to-int conversions (NaN becomes 0).
    x.round() as i16
}

/// Small xorshift PRNG for comfort noise and dither: deterministic, no deps.
#[derive(Debug, Clone)]
pub(crate) struct Rng(u32);

impl Rng {
    pub(crate) fn new(seed: u32) -> Self {
        Rng(seed | 1)
    }

    #[inline]
    pub(crate) fn next_u32(&mut self) -> u32 {
        let mut x = self.0;
        x ^= x << 13;
        x ^= x >> 17;
        x ^= x << 5;
        self.0 = x;
        x
    }

    /// Roughly Gaussian (sum of 4 uniforms), zero mean, unit variance
    /// (test signals; comfort noise uses [`Self::noise`]).
    #[cfg(test)]
    pub(crate) fn gauss(&mut self) -> f32 {
        let mut s = 0.0;
        for _ in 0..4 {
            s += (self.next_u32() >> 8) as f32 / (1u32 << 24) as f32;
        }
        // Sum of 4 U(0,1): mean 2, variance 4/12.
        (s - 2.0) * 1.732_050_8
    }

    /// Zero mean, unit variance white noise at a quarter of [`Self::gauss`]'s
    /// cost (one step of the generator, its two 16-bit halves summed: a
    /// triangular distribution): comfort noise, where the ear hears the
    /// spectrum and level, not the amplitude distribution.
    #[inline]
    pub(crate) fn noise(&mut self) -> f32 {
        let x = self.next_u32();
        let s = (x >> 16) as f32 + (x & 0xffff) as f32;
        // Two U(0, 65536): mean 65535, variance 2 * 65536^2 / 12.
        (s - 65535.0) * (2.449_489_7 / 65536.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn level_round_trip() {
        let p = dbm0_to_peak(-10.0);
        let power = p * p / 2.0;
        assert!((power_to_dbm0(power) + 10.0).abs() < 0.01);
        assert_eq!(sat16(40_000.0), i16::MAX);
        assert_eq!(sat16(-40_000.0), i16::MIN);
    }

    /// Mean and variance of `n` draws.
    fn moments(n: u32, mut draw: impl FnMut() -> f32) -> (f64, f64) {
        let (mut s, mut s2) = (0f64, 0f64);
        for _ in 0..n {
            let x = f64::from(draw());
            s += x;
            s2 += x * x;
        }
        let mean = s / f64::from(n);
        (mean, s2 / f64::from(n) - mean * mean)
    }

    #[test]
    fn rng_draws_have_zero_mean_and_unit_variance() {
        let mut r = Rng::new(7);
        let (mean, var) = moments(100_000, || r.gauss());
        assert!(
            mean.abs() < 0.02 && (var - 1.0).abs() < 0.05,
            "gauss {mean} {var}"
        );
        let (mean, var) = moments(200_000, || r.noise());
        assert!(
            mean.abs() < 0.01 && (var - 1.0).abs() < 0.02,
            "noise {mean} {var}"
        );
    }
}
