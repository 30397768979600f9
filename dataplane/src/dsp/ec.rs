//! Line echo canceller in the spirit of ITU-T G.168.
//!
//! Structure, per sample:
//!
//! - Two adaptive FIR filters over the far-end (Rin) history, a
//!   *background* filter that adapts with IPNLMS (proportionate NLMS:
//!   taps get step in proportion to their size, so a sparse hybrid
//!   response, a bulk delay then a few ms of dispersion, converges several
//!   times faster than with NLMS) and a *foreground* filter that produces
//!   the output and only changes by copying the background when the
//!   background has had the lower error for two windows running. Double
//!   talk that slips past the detector can only spoil the background; a
//!   background that did diverge is reset from the foreground. An echo path
//!   change makes the background better, so it is copied over: this is what
//!   lets the canceller re-converge without a detector telling it to.
//! - Step size varies with the foreground's echo return loss enhancement:
//!   large while converging, small at steady state, where a large step would
//!   leave misadjustment noise of the order of the near-end noise.
//! - Geigel double-talk detection (near > half the recent far peak) freezes
//!   background adaptation, with a hangover.
//! - Non-linear processor: when the far end talks, there is no double talk
//!   and the residual is well below the echo estimate, the residual is
//!   replaced by comfort noise at the measured background level.
//! - Tone disable (G.164/G.165): 2100 Hz with phase reversals on either
//!   direction bypasses the canceller until the line goes quiet for 250 ms.
//!
//! The last three, and the filter comparison, live in `ec_control`, shared
//! with the frequency-domain canceller [`super::ec_fdaf`].
//!
//! The filter kernel (background update fused with both filter outputs, one
//! pass over the taps) is written as plain lane-chunked loops in
//! [`super::simd`]: compiled for AVX-512 or AVX2 and chosen at runtime, else
//! the baseline build. Rust does
//! not reassociate or fuse float operations, so every variant computes the
//! same values as the scalar code.
//!
//! All memory is allocated in [`EchoCanceller::new`]; `process` allocates
//! nothing.

use super::ec_control::{Comparator, Controller, Verdict};
use super::simd::run_kernel;

/// Fewest taps accepted (32 ms at 8 kHz).
pub const MIN_TAPS: usize = 256;
/// Most taps accepted (128 ms at 8 kHz).
pub const MAX_TAPS: usize = 1024;
/// Kernel lane width; tap counts are rounded up to a multiple of it.
pub(super) const LANES: usize = 16;
/// Far history kept beyond the tail before the buffer is rewound.
const HIST_SLACK: usize = 4096;
/// Samples per IPNLMS gain update.
const GAIN_PERIOD: usize = 64;
/// Samples per foreground/background comparison window.
const CMP_WINDOW: usize = 160;

/// Which kernel build runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kernel {
    /// Baseline build (SSE2 on x86-64).
    Scalar,
    /// AVX2 + FMA build.
    Avx2,
    /// AVX-512F build.
    Avx512,
}

impl Kernel {
    /// The best kernel this CPU runs.
    pub fn detect() -> Self {
        #[cfg(target_arch = "x86_64")]
        {
            if std::arch::is_x86_feature_detected!("avx512f") {
                return Kernel::Avx512;
            }
            if std::arch::is_x86_feature_detected!("avx2") {
                return Kernel::Avx2;
            }
        }
        Kernel::Scalar
    }
}

/// Counters and state, for tests and management.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct EcStats {
    /// Background filter copied to the foreground.
    pub fg_updates: u64,
    /// Background reset from the foreground (it diverged).
    pub bg_resets: u64,
    /// Samples with double talk declared.
    pub dt_samples: u64,
    /// Samples the NLP replaced.
    pub nlp_samples: u64,
    /// Times a 2100 Hz phase-reversed tone disabled the canceller.
    pub tone_disables: u64,
}

/// Which canceller [`new_canceller`] builds.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum EcKind {
    /// [`super::ec_fdaf::FdafEchoCanceller`]: the default (a quarter of
    /// the time-domain one's cost, and faster to converge on delayed paths).
    #[default]
    Fdaf,
    /// [`EchoCanceller`], the time-domain canceller.
    TimeDomain,
}

/// What both cancellers offer, for code that picks one at run time.
pub trait LineEchoCanceller: Send {
    /// Cancel echo of `far` (Rin) in `near` (Sin) into `out` (Sout).
    fn process(&mut self, far: &[i16], near: &[i16], out: &mut [i16]);
    /// Turn the non-linear processor on or off.
    fn set_nlp(&mut self, on: bool);
    /// Number of taps in use.
    fn taps(&self) -> usize;
    /// Counters.
    fn stats(&self) -> EcStats;
    /// True while a 2100 Hz phase-reversed tone holds the canceller off.
    fn is_tone_disabled(&self) -> bool;
}

/// A canceller of `kind` with `tail_taps` taps (clamped to 256..=1024).
pub fn new_canceller(kind: EcKind, tail_taps: usize) -> Box<dyn LineEchoCanceller> {
    match kind {
        EcKind::Fdaf => Box::new(super::ec_fdaf::FdafEchoCanceller::new(tail_taps)),
        EcKind::TimeDomain => Box::new(EchoCanceller::new(tail_taps)),
    }
}

impl LineEchoCanceller for EchoCanceller {
    fn process(&mut self, far: &[i16], near: &[i16], out: &mut [i16]) {
        EchoCanceller::process(self, far, near, out)
    }
    fn set_nlp(&mut self, on: bool) {
        EchoCanceller::set_nlp(self, on)
    }
    fn taps(&self) -> usize {
        EchoCanceller::taps(self)
    }
    fn stats(&self) -> EcStats {
        EchoCanceller::stats(self)
    }
    fn is_tone_disabled(&self) -> bool {
        EchoCanceller::is_tone_disabled(self)
    }
}

/// A line echo canceller for one channel.
#[derive(Debug, Clone)]
pub struct EchoCanceller {
    taps: usize,
    kernel: Kernel,
    /// Far history; the current window is `hist[pos - taps..pos]`.
    hist: Vec<f32>,
    /// Pre-emphasised far history (same indexing), used for adaptation.
    hist_w: Vec<f32>,
    pos: usize,
    /// Energy of the pre-emphasised far window.
    x_norm: f32,
    last_x: f32,
    last_d: f32,
    w_fg: Vec<f32>,
    w_bg: Vec<f32>,
    /// IPNLMS gains (mean 1).
    gain: Vec<f32>,
    gain_count: usize,
    /// Update coefficient carried to the next sample (deferred update).
    pending: f32,
    /// Double talk, energy check, noise floor, NLP, tone disable.
    ctl: Controller,
    cmp: Comparator,
    cmp_n: usize,
    adapt: bool,
}

impl EchoCanceller {
    /// A canceller with `tail_taps` taps (clamped to 256..=1024 and rounded
    /// up to a multiple of 16), NLP and comfort noise on, best kernel for
    /// this CPU.
    pub fn new(tail_taps: usize) -> Self {
        Self::with_kernel(tail_taps, Kernel::detect())
    }

    /// As [`new`](Self::new) with a given kernel (falls back to scalar if
    /// the CPU lacks it).
    pub fn with_kernel(tail_taps: usize, kernel: Kernel) -> Self {
        let taps = tail_taps.clamp(MIN_TAPS, MAX_TAPS).div_ceil(LANES) * LANES;
        let kernel = match kernel {
            Kernel::Scalar => Kernel::Scalar,
            k if Kernel::detect() == Kernel::Avx512 => k,
            Kernel::Avx2 if Kernel::detect() == Kernel::Avx2 => Kernel::Avx2,
            _ => Kernel::Scalar,
        };
        EchoCanceller {
            taps,
            kernel,
            hist: vec![0.0; taps + 1 + HIST_SLACK],
            hist_w: vec![0.0; taps + 1 + HIST_SLACK],
            pos: taps + 1,
            x_norm: 0.0,
            last_x: 0.0,
            last_d: 0.0,
            w_fg: vec![0.0; taps],
            w_bg: vec![0.0; taps],
            gain: vec![1.0; taps],
            gain_count: 0,
            pending: 0.0,
            // The energy check starts at 10 dB of echo removed.
            ctl: Controller::new(taps, 10.0),
            cmp: Comparator::default(),
            cmp_n: 0,
            adapt: true,
        }
    }

    /// Number of taps in use.
    pub fn taps(&self) -> usize {
        self.taps
    }

    /// Kernel in use.
    pub fn kernel(&self) -> Kernel {
        self.kernel
    }

    /// Turn the non-linear processor on or off.
    pub fn set_nlp(&mut self, on: bool) {
        self.ctl.nlp = on;
    }

    /// Comfort noise (when the NLP suppresses) on, or plain silence.
    pub fn set_comfort_noise(&mut self, on: bool) {
        self.ctl.cng = on;
    }

    /// Freeze (false) or allow (true) adaptation.
    pub fn set_adaptation(&mut self, on: bool) {
        self.adapt = on;
    }

    /// True while a 2100 Hz phase-reversed tone holds the canceller off.
    pub fn is_tone_disabled(&self) -> bool {
        self.ctl.is_tone_disabled()
    }

    /// True while double talk is declared.
    pub fn is_double_talk(&self) -> bool {
        self.ctl.is_double_talk()
    }

    /// Counters.
    pub fn stats(&self) -> EcStats {
        self.ctl.stats
    }

    /// The foreground filter (for tests and diagnostics).
    pub fn coefficients(&self) -> &[f32] {
        &self.w_fg
    }

    /// Reset the filters and state (keeps the knobs).
    pub fn reset(&mut self) {
        let (nlp, cng, adapt, kernel) = (self.ctl.nlp, self.ctl.cng, self.adapt, self.kernel);
        *self = Self::with_kernel(self.taps, kernel);
        self.ctl.nlp = nlp;
        self.ctl.cng = cng;
        self.adapt = adapt;
    }

    /// Cancel echo of `far` (Rin, what was sent to the line) in `near`
    /// (Sin, what came back) into `out` (Sout). The three slices should have
    /// the same length; only the common prefix is processed.
    pub fn process(&mut self, far: &[i16], near: &[i16], out: &mut [i16]) {
        let n = far.len().min(near.len()).min(out.len());
        for i in 0..n {
            out[i] = self.sample(far[i], near[i]);
        }
    }

    fn sample(&mut self, far: i16, near: i16) -> i16 {
        let x = f32::from(far);
        let d = f32::from(near);
        self.ctl.input(x, d);

        // Far history and its energy over the tail.
        if self.pos == self.hist.len() {
            self.rewind();
        }
        // Adaptation runs on pre-emphasised far and error signals: the echo
        // path is linear, so it maps whitened far to whitened echo, and the
        // flatter spectrum speeds NLMS convergence on speech several-fold.
        let xw = x - PRE_EMPHASIS * self.last_x;
        self.last_x = x;
        let leaving = self.hist_w[self.pos - self.taps];
        self.hist[self.pos] = x;
        self.hist_w[self.pos] = xw;
        self.pos += 1;
        self.x_norm = (self.x_norm + xw * xw - leaving * leaving).max(0.0);

        // One pass: background update for the previous sample, then both outputs.
        let (y_bgw, y_bg, y_fg, norm_g) = {
            let cur = &self.hist[self.pos - self.taps..self.pos];
            let cur_w = &self.hist_w[self.pos - self.taps..self.pos];
            let prev_w = &self.hist_w[self.pos - 1 - self.taps..self.pos - 1];
            let (g, wb, wf) = (&self.gain, &mut self.w_bg, &self.w_fg);
            run_kernel(self.kernel, self.pending, g, prev_w, cur_w, cur, wb, wf)
        };
        let e_bg = d - y_bg;
        let e_fg = d - y_fg;
        // Whitened error: whitened near minus the background on whitened far.
        let d_w = d - PRE_EMPHASIS * self.last_d;
        self.last_d = d;
        let e_w = d_w - y_bgw;

        let f = self.ctl.observe(x, d, y_fg, e_fg);

        // Step for the next sample's background update.
        self.pending = if self.adapt && f.far_active && !f.dt && !self.is_tone_disabled() {
            // Large while the foreground removes little, small once it
            // removes a lot (ratio of residual to near power).
            let mut mu = (16.0 * self.ctl.slow_e / (self.ctl.slow_d + 1.0)).clamp(MU_MIN, MU_MAX);
            if f.suspect {
                mu = mu.min(MU_SUSPECT);
            }
            mu * e_w / (norm_g + self.taps as f32 * REGULARISE)
        } else {
            0.0
        };

        self.cmp.add_fg(e_fg * e_fg, f);
        self.cmp.add_bg(e_bg * e_bg);
        self.cmp_n += 1;
        if self.cmp_n == CMP_WINDOW {
            self.cmp_n = 0;
            match self.cmp.close(&mut self.ctl.stats) {
                Verdict::Keep => {}
                Verdict::CopyToForeground => self.w_fg.copy_from_slice(&self.w_bg),
                Verdict::ResetBackground => {
                    self.w_bg.copy_from_slice(&self.w_fg);
                    update_gains(&self.w_bg, &mut self.gain);
                    self.pending = 0.0;
                }
            }
        }

        self.gain_count += 1;
        if self.gain_count == GAIN_PERIOD {
            self.gain_count = 0;
            update_gains(&self.w_bg, &mut self.gain);
        }

        self.ctl.output(near, e_fg, f)
    }

    fn rewind(&mut self) {
        let keep = self.taps + 1;
        let start = self.pos - keep;
        self.hist.copy_within(start..self.pos, 0);
        self.hist_w.copy_within(start..self.pos, 0);
        self.pos = keep;
        // Recompute the window energy exactly (the running sum drifts).
        self.x_norm = self.hist_w[1..keep].iter().map(|v| v * v).sum();
    }
}

/// NLMS regularisation per tap (power units).
const REGULARISE: f32 = 100.0;
const MU_MAX: f32 = 1.0;
/// First-order pre-emphasis (whitening) coefficient for adaptation.
const PRE_EMPHASIS: f32 = 0.9;
const MU_MIN: f32 = 0.02;
/// Step cap while the energy check suspects double talk.
const MU_SUSPECT: f32 = 0.1;

/// IPNLMS gains with alpha = 0: half uniform, half proportional to
/// |w|, scaled to mean 1 so the normalisation stays ||x||^2.
fn update_gains(w: &[f32], gain: &mut [f32]) {
    let l1: f32 = w.iter().map(|v| v.abs()).sum();
    let n = w.len() as f32;
    const ALPHA: f32 = 0.5;
    let uniform = (1.0 - ALPHA) / 2.0;
    let prop = (1.0 + ALPHA) / 2.0 * n / (l1 + 1e-3);
    for (g, &v) in gain.iter_mut().zip(w) {
        *g = uniform + prop * v.abs();
    }
}

/// Kernel outputs: background on the whitened and plain far window,
/// foreground on the plain window, and the IPNLMS normaliser
/// `sum(gain * cur_w^2)`.
pub type KernelOut = (f32, f32, f32, f32);

/// Public entry to the kernel for benches and the scalar/SIMD equivalence
/// test: one fused update-and-filter step over `w_bg.len()` taps.
/// All slices must have the same length, a multiple of 16; `None` otherwise.
#[allow(clippy::too_many_arguments)]
pub fn kernel_step(
    kernel: Kernel,
    a: f32,
    gain: &[f32],
    prev_w: &[f32],
    cur_w: &[f32],
    cur: &[f32],
    w_bg: &mut [f32],
    w_fg: &[f32],
) -> Option<KernelOut> {
    let n = w_bg.len();
    let lens = [gain.len(), prev_w.len(), cur_w.len(), cur.len(), w_fg.len()];
    if !n.is_multiple_of(LANES) || lens.iter().any(|&l| l != n) {
        return None;
    }
    let kernel = if kernel != Kernel::Scalar && Kernel::detect() == Kernel::Scalar {
        Kernel::Scalar
    } else if kernel == Kernel::Avx512 && Kernel::detect() != Kernel::Avx512 {
        Kernel::Avx2
    } else {
        kernel
    };
    Some(run_kernel(kernel, a, gain, prev_w, cur_w, cur, w_bg, w_fg))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dsp::Rng;

    #[test]
    fn taps_are_clamped_and_rounded() {
        assert_eq!(EchoCanceller::new(10).taps(), 256);
        assert_eq!(EchoCanceller::new(5000).taps(), 1024);
        assert_eq!(EchoCanceller::new(300).taps(), 304);
    }

    #[test]
    fn kernels_agree() {
        let n = 1024;
        let mut rng = Rng::new(3);
        let mut v = || (0..n).map(|_| rng.gauss()).collect::<Vec<f32>>();
        let (g, xp, xw, xc, wf, wb0) = (v(), v(), v(), v(), v(), v());
        let mut w_scalar = wb0.clone();
        let s = kernel_step(Kernel::Scalar, 0.01, &g, &xp, &xw, &xc, &mut w_scalar, &wf).unwrap();
        for k in [Kernel::Avx2, Kernel::Avx512] {
            let mut w = wb0.clone();
            let r = kernel_step(k, 0.01, &g, &xp, &xw, &xc, &mut w, &wf).unwrap();
            let close = |a: f32, b: f32| (a - b).abs() <= 1e-3 * b.abs().max(1.0);
            assert!(
                close(r.0, s.0) && close(r.1, s.1) && close(r.2, s.2),
                "{k:?} {r:?} {s:?}"
            );
            assert!(close(r.3, s.3), "{k:?} {r:?} {s:?}");
            for (a, b) in w.iter().zip(&w_scalar) {
                assert!((a - b).abs() <= 1e-5 * b.abs().max(1.0));
            }
        }
        assert!(kernel_step(
            Kernel::Scalar,
            0.0,
            &g[..10],
            &xp,
            &xw,
            &xc,
            &mut w_scalar,
            &wf
        )
        .is_none());
    }

    #[test]
    fn cancels_white_noise_echo() {
        let mut ec = EchoCanceller::new(256);
        ec.set_nlp(false);
        let mut rng = Rng::new(9);
        let h = [0.0, 0.0, 0.3, -0.2, 0.1];
        let n = 16_000;
        let far: Vec<i16> = (0..n).map(|_| (rng.gauss() * 2000.0) as i16).collect();
        let near: Vec<i16> = (0..n)
            .map(|i| {
                let mut s = 0.0;
                for (k, &c) in h.iter().enumerate() {
                    if i >= k {
                        s += c * f32::from(far[i - k]);
                    }
                }
                s as i16
            })
            .collect();
        let mut out = vec![0i16; n];
        for ((f, d), o) in far
            .chunks(160)
            .zip(near.chunks(160))
            .zip(out.chunks_mut(160))
        {
            ec.process(f, d, o);
        }
        let p = |v: &[i16]| v.iter().map(|&s| f64::from(s).powi(2)).sum::<f64>();
        let erle = 10.0 * (p(&near[8000..]) / p(&out[8000..]).max(1.0)).log10();
        assert!(erle > 30.0, "ERLE {erle:.1} dB");
    }
}
