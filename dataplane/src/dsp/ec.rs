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
//! The filter kernel (background update fused with both filter outputs, one
//! pass over the taps) is written as plain lane-chunked loops in
//! [`super::simd`]: compiled for AVX-512 or AVX2 and chosen at runtime, else
//! the baseline build. Rust does
//! not reassociate or fuse float operations, so every variant computes the
//! same values as the scalar code.
//!
//! All memory is allocated in [`EchoCanceller::new`]; `process` allocates
//! nothing.

use super::simd::run_kernel;
use super::{dbm0_to_peak, sat16, Rng};

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
/// Geigel block for the running far-end peak.
const PEAK_BLOCK: usize = 32;
/// Double-talk hangover, samples (30 ms).
const DT_HANGOVER: u32 = 240;

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
    // Geigel peak tracking: maxima of completed blocks, current block max.
    peaks: Vec<f32>,
    peak_idx: usize,
    peak_cur: f32,
    peak_count: usize,
    peak_window: f32,
    dt_hang: u32,
    // Smoothed powers (one pole, ~8 ms) and slow ones (~125 ms).
    p_d: f32,
    p_efg: f32,
    p_y: f32,
    p_far: f32,
    slow_d: f32,
    slow_e: f32,
    slow_y: f32,
    slow_far: f32,
    // Comparison window sums.
    cmp_n: usize,
    cmp_bg: f32,
    cmp_fg: f32,
    cmp_dt: bool,
    cmp_suspect: bool,
    suspect_hang: u32,
    converged: bool,
    bg_better: u32,
    // NLP and comfort noise.
    nlp: bool,
    cng: bool,
    nlp_hang: u32,
    noise: f32,
    rng: Rng,
    tone_far: ToneDisabler,
    tone_near: ToneDisabler,
    adapt: bool,
    stats: EcStats,
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
            peaks: vec![0.0; taps.div_ceil(PEAK_BLOCK)],
            peak_idx: 0,
            peak_cur: 0.0,
            peak_count: 0,
            peak_window: 0.0,
            dt_hang: 0,
            p_d: 0.0,
            p_efg: 0.0,
            p_y: 0.0,
            p_far: 0.0,
            slow_d: 0.0,
            slow_e: 0.0,
            slow_y: 0.0,
            slow_far: 0.0,
            cmp_n: 0,
            cmp_bg: 0.0,
            cmp_fg: 0.0,
            cmp_dt: false,
            cmp_suspect: false,
            suspect_hang: 0,
            converged: false,
            bg_better: 0,
            nlp: true,
            cng: true,
            nlp_hang: 0,
            noise: 1.0,
            rng: Rng::new(0x2545_f491),
            tone_far: ToneDisabler::new(),
            tone_near: ToneDisabler::new(),
            adapt: true,
            stats: EcStats::default(),
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
        self.nlp = on;
    }

    /// Comfort noise (when the NLP suppresses) on, or plain silence.
    pub fn set_comfort_noise(&mut self, on: bool) {
        self.cng = on;
    }

    /// Freeze (false) or allow (true) adaptation.
    pub fn set_adaptation(&mut self, on: bool) {
        self.adapt = on;
    }

    /// True while a 2100 Hz phase-reversed tone holds the canceller off.
    pub fn is_tone_disabled(&self) -> bool {
        self.tone_far.disabled || self.tone_near.disabled
    }

    /// True while double talk is declared.
    pub fn is_double_talk(&self) -> bool {
        self.dt_hang > 0
    }

    /// Counters.
    pub fn stats(&self) -> EcStats {
        self.stats
    }

    /// The foreground filter (for tests and diagnostics).
    pub fn coefficients(&self) -> &[f32] {
        &self.w_fg
    }

    /// Reset the filters and state (keeps the knobs).
    pub fn reset(&mut self) {
        let (nlp, cng, adapt, kernel) = (self.nlp, self.cng, self.adapt, self.kernel);
        *self = Self::with_kernel(self.taps, kernel);
        self.nlp = nlp;
        self.cng = cng;
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
        let tone_off = self.tone_far.push(x) | self.tone_near.push(d);
        if tone_off {
            self.stats.tone_disables += 1;
        }

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

        // Geigel: the far peak over the tail.
        let ax = x.abs();
        self.peak_cur = self.peak_cur.max(ax);
        self.peak_count += 1;
        if self.peak_count == PEAK_BLOCK {
            self.peaks[self.peak_idx] = self.peak_cur;
            self.peak_idx = (self.peak_idx + 1) % self.peaks.len();
            self.peak_window = self.peaks.iter().fold(0.0, |a, &b| a.max(b));
            self.peak_cur = 0.0;
            self.peak_count = 0;
        }
        let far_peak = self.peak_window.max(self.peak_cur);

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

        // Powers.
        const A: f32 = 1.0 / 64.0;
        const S: f32 = 1.0 / 1024.0;
        self.p_d += A * (d * d - self.p_d);
        self.p_efg += A * (e_fg * e_fg - self.p_efg);
        self.p_y += A * (y_fg * y_fg - self.p_y);
        self.p_far += A * (x * x - self.p_far);
        self.slow_d += S * (d * d - self.slow_d);
        self.slow_e += S * (e_fg * e_fg - self.slow_e);

        let far_active = self.p_far > FAR_ACTIVE_POWER;
        // Geigel threshold: G.168's 6 dB (0.5) until the echo path is known,
        // then twice the measured echo-path amplitude gain, so a 6 dB hybrid
        // with resonances does not trip it and a 25 dB one is guarded closely.
        self.slow_y += S * (y_fg * y_fg - self.slow_y);
        self.slow_far += S * (x * x - self.slow_far);
        // Before the foreground removes 10 dB there is nothing to protect
        // (and a 6 dB hybrid would trip the detector and stall convergence):
        // double talk is only declared once converged.
        // Latched: double talk itself raises the residual.
        self.converged |= self.slow_e * 10.0 < self.slow_d && self.slow_far > FAR_ACTIVE_POWER;
        let converged = self.converged;
        let geigel = (2.0 * (self.slow_y / self.slow_far.max(1.0)).sqrt()).clamp(0.15, 1.0);
        if converged && d.abs() > geigel * far_peak && d.abs() > NEAR_FLOOR {
            self.dt_hang = DT_HANGOVER;
        } else if self.dt_hang > 0 {
            self.dt_hang -= 1;
        }
        let dt = self.dt_hang > 0;
        if dt {
            self.stats.dt_samples += 1;
        }
        // Energy check: the converged foreground's residual rising to within
        // 10 dB of the echo estimate means near-end speech (or an echo-path
        // change: the two cannot be told apart here). Adaptation continues
        // gently, and the background must then beat the foreground by 6 dB
        // to be copied (6 dB): near speech cannot be cancelled from the far signal,
        // a new echo path can.
        let suspect = converged && self.p_efg > 0.1 * self.p_y + 16.0 * self.noise;
        if suspect {
            self.suspect_hang = DT_HANGOVER;
        } else {
            self.suspect_hang = self.suspect_hang.saturating_sub(1);
        }
        let suspect = self.suspect_hang > 0;

        // Step for the next sample's background update.
        self.pending = if self.adapt && far_active && !dt && !self.is_tone_disabled() {
            // Large while the foreground removes little, small once it
            // removes a lot (ratio of residual to near power).
            let mut mu = (16.0 * self.slow_e / (self.slow_d + 1.0)).clamp(MU_MIN, MU_MAX);
            if suspect {
                mu = mu.min(MU_SUSPECT);
            }
            mu * e_w / (norm_g + self.taps as f32 * REGULARISE)
        } else {
            0.0
        };

        self.compare_filters(e_bg, e_fg, far_active, dt, suspect);

        self.gain_count += 1;
        if self.gain_count == GAIN_PERIOD {
            self.gain_count = 0;
            update_gains(&self.w_bg, &mut self.gain);
        }

        // Background noise estimate (minimum tracking on the residual).
        if self.p_efg < self.noise {
            self.noise = self.p_efg.max(0.25);
        } else {
            self.noise *= 1.000_2;
        }

        if self.is_tone_disabled() {
            return near;
        }
        let mut out = e_fg;
        if self.nlp {
            let residual_echo = far_active && !dt && self.p_efg < 0.25 * self.p_y;
            if residual_echo {
                self.nlp_hang = 80;
            } else if self.nlp_hang > 0 && (!far_active || dt) {
                self.nlp_hang = 0;
            } else {
                self.nlp_hang = self.nlp_hang.saturating_sub(1);
            }
            if self.nlp_hang > 0 {
                self.stats.nlp_samples += 1;
                out = if self.cng {
                    self.noise.sqrt() * self.rng.gauss()
                } else {
                    0.0
                };
            }
        }
        sat16(out)
    }

    fn compare_filters(&mut self, e_bg: f32, e_fg: f32, far_active: bool, dt: bool, sus: bool) {
        self.cmp_bg += e_bg * e_bg;
        self.cmp_fg += e_fg * e_fg;
        self.cmp_dt |= dt || !far_active;
        self.cmp_suspect |= sus;
        self.cmp_n += 1;
        if self.cmp_n < CMP_WINDOW {
            return;
        }
        let margin = if self.cmp_suspect { 0.25 } else { 0.9 };
        if !self.cmp_dt && self.cmp_bg < margin * self.cmp_fg {
            self.bg_better += 1;
            if self.bg_better >= 2 {
                self.w_fg.copy_from_slice(&self.w_bg);
                self.stats.fg_updates += 1;
                self.bg_better = 0;
            }
        } else {
            self.bg_better = 0;
            if self.cmp_bg > 8.0 * self.cmp_fg {
                self.w_bg.copy_from_slice(&self.w_fg);
                update_gains(&self.w_bg, &mut self.gain);
                self.pending = 0.0;
                self.stats.bg_resets += 1;
            }
        }
        self.cmp_n = 0;
        self.cmp_bg = 0.0;
        self.cmp_fg = 0.0;
        self.cmp_dt = false;
        self.cmp_suspect = false;
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

/// Far power (per sample) above which adaptation runs: -50 dBm0.
const FAR_ACTIVE_POWER: f32 = 22_670.0 * 22_670.0 * 0.5 * 1e-5;
/// Near samples smaller than this never trigger Geigel (about -60 dBm0 peak).
const NEAR_FLOOR: f32 = 25.0;
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

/// G.164/G.165 tone disabler: 2100 Hz holding most of the power, with a
/// phase reversal, disables; 250 ms of quiet re-enables.
#[derive(Debug, Clone)]
pub(super) struct ToneDisabler {
    n: usize,
    re: f32,
    im: f32,
    energy: f32,
    /// Consecutive 10 ms frames with the tone.
    tone_frames: u32,
    last_phase: Option<f32>,
    drift: f32,
    quiet_frames: u32,
    pub(super) disabled: bool,
}

/// 10 ms frames; 2100 Hz makes a whole number of cycles (21) per frame, so
/// a steady tone shows the same phase every frame.
const TD_FRAME: usize = 80;

/// cos/sin of 2100 Hz over one frame (2100/8000 = 21/80 of a cycle per sample).
static TD_TABLE: std::sync::LazyLock<[(f32, f32); TD_FRAME]> = std::sync::LazyLock::new(|| {
    let mut t = [(0.0, 0.0); TD_FRAME];
    for (n, v) in t.iter_mut().enumerate() {
        let w = std::f64::consts::TAU * 21.0 * n as f64 / 80.0;
        *v = (w.cos() as f32, w.sin() as f32);
    }
    t
});

impl ToneDisabler {
    pub(super) fn new() -> Self {
        ToneDisabler {
            n: 0,
            re: 0.0,
            im: 0.0,
            energy: 0.0,
            tone_frames: 0,
            last_phase: None,
            drift: 0.0,
            quiet_frames: 0,
            disabled: false,
        }
    }

    /// Feed one sample; true on the sample where the canceller gets disabled.
    pub(super) fn push(&mut self, x: f32) -> bool {
        let (c, s) = TD_TABLE[self.n];
        self.re += x * c;
        self.im -= x * s;
        self.energy += x * x;
        self.n += 1;
        if self.n < TD_FRAME {
            return false;
        }
        let p = (self.re * self.re + self.im * self.im) * 2.0 / TD_FRAME as f32;
        let level = dbm0_to_peak(-36.0);
        let loud = self.energy > TD_FRAME as f32 * level * level * 0.5;
        let tone = loud && p > 0.7 * self.energy;
        let phase = self.im.atan2(self.re);
        self.n = 0;
        self.re = 0.0;
        self.im = 0.0;
        self.energy = 0.0;

        let mut fired = false;
        if tone {
            self.tone_frames += 1;
            if let Some(last) = self.last_phase {
                let step = wrap(phase - last);
                let dev = wrap(step - self.drift);
                if dev.abs() > std::f32::consts::FRAC_PI_2 {
                    // Phase reversal, after at least 100 ms of tone.
                    if self.tone_frames >= 10 && !self.disabled {
                        self.disabled = true;
                        fired = true;
                    }
                } else {
                    self.drift += 0.3 * (step - self.drift);
                }
            }
            self.last_phase = Some(phase);
        } else {
            self.tone_frames = 0;
            self.last_phase = None;
            self.drift = 0.0;
        }
        if self.disabled {
            if loud {
                self.quiet_frames = 0;
            } else {
                self.quiet_frames += 1;
                if self.quiet_frames >= 25 {
                    self.disabled = false;
                    self.quiet_frames = 0;
                }
            }
        }
        fired
    }
}

fn wrap(p: f32) -> f32 {
    use std::f32::consts::{PI, TAU};
    let mut p = p % TAU;
    if p > PI {
        p -= TAU;
    } else if p < -PI {
        p += TAU;
    }
    p
}

#[cfg(test)]
mod tests {
    use super::*;

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
