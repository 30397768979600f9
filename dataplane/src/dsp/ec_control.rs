//! The echo cancellers' control logic, shared by the time-domain
//! ([`super::ec`]) and frequency-domain ([`super::ec_fdaf`]) filters, which
//! differ only in how they filter and adapt:
//!
//! - tone disable (G.164/G.165 2100 Hz with phase reversals, either
//!   direction) with bypass until 250 ms of quiet;
//! - Geigel double-talk detection over the tail's far-end peak, with the
//!   threshold set from the measured echo-path gain once converged, and a
//!   30 ms hangover;
//! - the energy check that suspects undetected double talk (or a path
//!   change) when the converged foreground's residual rises towards the
//!   echo estimate;
//! - the background noise estimate (minimum statistics on the residual's
//!   power over the last 2 s);
//! - the foreground/background comparison ([`Comparator`]): copy the
//!   background when it has had the lower error for two windows running,
//!   reset it from the foreground when it diverged;
//! - the non-linear processor with comfort noise.
//!
//! Sans-IO and allocation-free after construction, like the filters.

use super::ec::EcStats;
use super::{dbm0_to_peak, Rng};

/// Geigel block for the running far-end peak.
/// Noise floor estimate at the start (power per sample, about -34 dBm0),
/// and the residual power's start: the estimate is the least residual
/// power seen over the last 2 s, so it falls to the residual's floor at
/// its first quiet moment (the bulk delay before the first echo, a pause
/// in speech). The residual power used to start at 0 and the estimate
/// followed it there on the first sample, then rose at ~7 dB/s: on echo
/// ~20 dB over the noise the steps stayed at their largest for seconds and
/// their gradient noise held the first convergence under 20 dB (the
/// anchors' bench at ERL 25: G.168 d5/d8/d9 20 dB after 3.3-3.6 s, the
/// 64 ms decay after 5.8 s).
const NOISE_START: f32 = 1e5;
/// Minimum statistics (the least of each 0.25 s sub-window, eight of them):
/// a noise level that rises is followed within 2 s. A fixed rise rate
/// instead (the estimate grew by 7 dB/s between minima) was slower where
/// it started low and stood several dB over the floor during speech.
/// Scaling the least value up by its expected bias under the mean (x1.4)
/// slowed the first convergence (talker matrix 79 -> 126 misses).
const NOISE_SUB_LEN: u32 = 2000;
const NOISE_SUBS: usize = 8;
const PEAK_BLOCK: usize = 32;
/// Double-talk hangover, samples (30 ms).
const DT_HANGOVER: u32 = 240;
/// Far power (per sample) above which adaptation runs: -50 dBm0.
pub(super) const FAR_ACTIVE_POWER: f32 = 22_670.0 * 22_670.0 * 0.5 * 1e-5;
/// Near samples smaller than this never trigger Geigel (about -60 dBm0 peak).
const NEAR_FLOOR: f32 = 25.0;

/// Per-sample verdicts for the adaptation step.
#[derive(Debug, Clone, Copy)]
pub(super) struct Flags {
    /// The far end is talking (-50 dBm0 or more, ~8 ms smoothing).
    pub(super) far_active: bool,
    /// Double talk declared (Geigel, with hangover).
    pub(super) dt: bool,
    /// The energy check suspects double talk or a path change.
    pub(super) suspect: bool,
}

/// Shared per-channel control state.
#[derive(Debug, Clone)]
pub(super) struct Controller {
    // Geigel peak tracking: maxima of completed blocks, current block max.
    peaks: Vec<f32>,
    peak_idx: usize,
    peak_cur: f32,
    peak_count: usize,
    peak_window: f32,
    dt_hang: u32,
    // Smoothed powers (one pole, ~8 ms) and slow ones (~125 ms).
    pub(super) p_efg: f32,
    p_y: f32,
    p_far: f32,
    pub(super) slow_d: f32,
    pub(super) slow_e: f32,
    slow_y: f32,
    pub(super) slow_far: f32,
    /// Geigel threshold (share of the far peak) from the slow powers.
    geigel: f32,
    /// Latched once the foreground removes `suspect_after`: double talk is
    /// declared, and the energy check runs, only from then on.
    conv_suspect: bool,
    suspect_after: f32,
    suspect_hang: u32,
    // NLP and comfort noise.
    pub(super) nlp: bool,
    pub(super) cng: bool,
    nlp_hang: u32,
    /// Background noise power (per sample) under the residual.
    pub(super) noise: f32,
    /// Minimum statistics: the least `p_efg` of each of the last
    /// [`NOISE_SUBS`] sub-windows, the least of them, and the current
    /// sub-window's least so far and its length.
    noise_mins: [f32; NOISE_SUBS],
    noise_ring_min: f32,
    noise_sub_min: f32,
    noise_sub_n: u32,
    noise_idx: usize,
    rng: Rng,
    tone_far: ToneDisabler,
    tone_near: ToneDisabler,
    pub(super) stats: EcStats,
}

impl Controller {
    /// Control state for a tail of `taps` samples; double-talk detection and
    /// the energy check start once the foreground's residual is
    /// `suspect_after` (a power ratio) below the near signal.
    pub(super) fn new(taps: usize, suspect_after: f32) -> Self {
        Controller {
            peaks: vec![0.0; taps.div_ceil(PEAK_BLOCK)],
            peak_idx: 0,
            peak_cur: 0.0,
            peak_count: 0,
            peak_window: 0.0,
            dt_hang: 0,
            p_efg: NOISE_START,
            p_y: 0.0,
            p_far: 0.0,
            slow_d: 0.0,
            slow_e: 0.0,
            slow_y: 0.0,
            slow_far: 0.0,
            geigel: 1.0,
            conv_suspect: false,
            suspect_after,
            suspect_hang: 0,
            nlp: true,
            cng: true,
            nlp_hang: 0,
            noise: NOISE_START,
            noise_mins: [NOISE_START; NOISE_SUBS],
            noise_ring_min: NOISE_START,
            noise_sub_min: NOISE_START,
            noise_sub_n: 0,
            noise_idx: 0,
            rng: Rng::new(0x2545_f491),
            tone_far: ToneDisabler::new(),
            tone_near: ToneDisabler::new(),
            stats: EcStats::default(),
        }
    }

    /// True while a 2100 Hz phase-reversed tone holds the canceller off.
    pub(super) fn is_tone_disabled(&self) -> bool {
        self.tone_far.disabled || self.tone_near.disabled
    }

    /// True once the foreground has removed `suspect_after` (latched).
    pub(super) fn has_converged(&self) -> bool {
        self.conv_suspect
    }

    /// True while double talk is declared.
    pub(super) fn is_double_talk(&self) -> bool {
        self.dt_hang > 0
    }

    /// First step of each sample: tone disablers and the far peak.
    pub(super) fn input(&mut self, x: f32, d: f32) {
        if self.tone_far.push(x) | self.tone_near.push(d) {
            self.stats.tone_disables += 1;
        }
        self.input_peak(x);
    }

    /// The tone disablers over a block of far and near samples at once
    /// (callers that use this use [`Self::input_peak`] per sample): the
    /// disable then takes effect at the end of the block, well inside
    /// G.168's one second, at a fraction of the per-sample cost.
    pub(super) fn input_tones(&mut self, x: &[f32], d: &[f32]) {
        if self.tone_far.push_block(x) | self.tone_near.push_block(d) {
            self.stats.tone_disables += 1;
        }
    }

    /// The far peak for the Geigel detector, per sample.
    #[inline]
    pub(super) fn input_peak(&mut self, x: f32) {
        self.peak_cur = self.peak_cur.max(x.abs());
        self.peak_count += 1;
        if self.peak_count == PEAK_BLOCK {
            self.peaks[self.peak_idx] = self.peak_cur;
            self.peak_idx = (self.peak_idx + 1) % self.peaks.len();
            self.peak_window = self.peaks.iter().fold(0.0, |a, &b| a.max(b));
            self.peak_cur = 0.0;
            self.peak_count = 0;
        }
    }

    /// Second step, once the foreground output `y_fg` (and its residual
    /// `e_fg = d - y_fg`) is known: powers, double talk, energy check,
    /// noise floor.
    pub(super) fn observe(&mut self, x: f32, d: f32, y_fg: f32, e_fg: f32) -> Flags {
        const S: f32 = 1.0 / 1024.0;
        self.slow_d += S * (d * d - self.slow_d);
        self.slow_e += S * (e_fg * e_fg - self.slow_e);
        self.slow_y += S * (y_fg * y_fg - self.slow_y);
        self.slow_far += S * (x * x - self.slow_far);
        self.slow_changed();
        self.observe_fast(x, d, y_fg, e_fg)
    }

    /// The slow (~125 ms) powers over a block of `n` samples at once, from
    /// the block's sums of squares: one step of `1 - (1 - 1/1024)^n`
    /// towards the block's mean. Callers that use this use
    /// [`Self::observe_fast`] per sample: the slow powers only set the
    /// convergence latches and the Geigel threshold, which then follow
    /// block by block at a fraction of the per-sample cost.
    pub(super) fn slow_block(&mut self, n: usize, x2: f32, d2: f32, y2: f32, e2: f32) {
        let k = 1.0 - (1.0 - 1.0f32 / 1024.0).powi(n as i32);
        let m = 1.0 / n as f32;
        self.slow_d += k * (d2 * m - self.slow_d);
        self.slow_e += k * (e2 * m - self.slow_e);
        self.slow_y += k * (y2 * m - self.slow_y);
        self.slow_far += k * (x2 * m - self.slow_far);
        self.slow_changed();
    }

    /// The latches and the Geigel threshold from the slow powers.
    fn slow_changed(&mut self) {
        // Before the foreground removes `suspect_after` there is little to
        // protect, and a 6 dB hybrid trips the Geigel test on its own echo
        // and stalls convergence: double talk is only declared from then on.
        // (From 10 dB on, as before, a short filter that removed 10 dB in a
        // lucky window got a threshold from a lagging, too-small echo
        // estimate, declared the echo double talk, froze all adaptation,
        // and the uncancelled echo kept it frozen for half a second.)
        // Latched: double talk itself raises the residual.
        let far_long = self.slow_far > FAR_ACTIVE_POWER;
        self.conv_suspect |= self.slow_e * self.suspect_after < self.slow_d && far_long;
        // Geigel threshold: G.168's 6 dB (0.5) until the echo path is known,
        // then twice the measured echo-path amplitude gain, so a 6 dB hybrid
        // with resonances does not trip it and a 25 dB one is guarded closely.
        self.geigel = (2.0 * (self.slow_y / self.slow_far.max(1.0)).sqrt()).clamp(0.15, 1.0);
    }

    /// [`Self::observe`] without the slow powers (see [`Self::slow_block`]).
    #[inline]
    pub(super) fn observe_fast(&mut self, x: f32, d: f32, y_fg: f32, e_fg: f32) -> Flags {
        const A: f32 = 1.0 / 64.0;
        self.p_efg += A * (e_fg * e_fg - self.p_efg);
        self.p_y += A * (y_fg * y_fg - self.p_y);
        self.p_far += A * (x * x - self.p_far);

        let far_active = self.p_far > FAR_ACTIVE_POWER;
        let far_peak = self.peak_window.max(self.peak_cur);
        if self.conv_suspect && d.abs() > self.geigel * far_peak && d.abs() > NEAR_FLOOR {
            self.dt_hang = DT_HANGOVER;
        } else if self.dt_hang > 0 {
            self.dt_hang -= 1;
        }
        let dt = self.dt_hang > 0;
        if dt {
            self.stats.dt_samples += 1;
        }
        // Energy check: the converged foreground's residual rising to within
        // 10 dB of the echo estimate means near-end speech or an echo-path
        // change (they cannot be told apart here). Adaptation continues
        // gently, and the background must then beat the foreground by 6 dB
        // to be copied: near speech cannot be cancelled from the far signal,
        // a new echo path can.
        if self.conv_suspect && self.p_efg > 0.1 * self.p_y + 16.0 * self.noise {
            self.suspect_hang = DT_HANGOVER;
        } else {
            self.suspect_hang = self.suspect_hang.saturating_sub(1);
        }
        let suspect = self.suspect_hang > 0;

        // Background noise estimate: the least residual power over the
        // last [`NOISE_SUBS`] sub-windows and the current one.
        self.noise_sub_min = self.noise_sub_min.min(self.p_efg);
        self.noise_sub_n += 1;
        if self.noise_sub_n == NOISE_SUB_LEN {
            self.noise_mins[self.noise_idx] = self.noise_sub_min;
            self.noise_idx = (self.noise_idx + 1) % NOISE_SUBS;
            self.noise_ring_min = self.noise_mins.iter().fold(f32::MAX, |a, &b| a.min(b));
            self.noise_sub_min = self.p_efg;
            self.noise_sub_n = 0;
        }
        self.noise = self.noise_ring_min.min(self.noise_sub_min).max(0.25);
        Flags {
            far_active,
            dt,
            suspect,
        }
    }

    /// Last step: the output sample for residual `e_fg` (the near sample
    /// itself while tone-disabled; comfort noise where the NLP suppresses).
    pub(super) fn output(&mut self, near: i16, e_fg: f32, f: Flags) -> i16 {
        if self.is_tone_disabled() {
            return near;
        }
        let mut out = e_fg;
        if self.nlp {
            let residual_echo = f.far_active && !f.dt && self.p_efg < 0.25 * self.p_y;
            if residual_echo {
                self.nlp_hang = 80;
            } else if self.nlp_hang > 0 && (!f.far_active || f.dt) {
                self.nlp_hang = 0;
            } else {
                self.nlp_hang = self.nlp_hang.saturating_sub(1);
            }
            if self.nlp_hang > 0 {
                self.stats.nlp_samples += 1;
                out = if self.cng {
                    self.noise.sqrt() * self.rng.noise()
                } else {
                    0.0
                };
            }
        }
        round_sat16(out)
    }
}

/// [`super::sat16`] with the same values, without the library call `f32::round`
/// makes on baseline x86-64 (no SSE4.1 rounding instruction): a fifth of
/// the controller's cost per sample. Truncate, then step away from zero on
/// a fraction of one half or more (the fraction is exact below 2^23).
#[inline]
fn round_sat16(x: f32) -> i16 {
    let c = x.clamp(-32768.0, 32767.0);
    let t = c as i32;
    let f = c - t as f32;
    (t + i32::from(f >= 0.5) - i32::from(f <= -0.5)) as i16
}

/// What the comparison window decided.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Verdict {
    /// Nothing to do.
    Keep,
    /// Copy the background to the foreground.
    CopyToForeground,
    /// The background diverged: reset it from the foreground.
    ResetBackground,
}

/// Foreground/background comparison over windows of error energy.
#[derive(Debug, Clone, Default)]
pub(super) struct Comparator {
    bg: f32,
    fg: f32,
    /// Double talk seen in the window.
    dt: bool,
    /// Far silence seen in the window.
    quiet: bool,
    suspect: bool,
    bg_better: u32,
    /// Set by the filter while its foreground removes little: one window
    /// with the lower error (far silence or not) is then enough to copy.
    pub(super) eager: bool,
}

impl Comparator {
    /// Add foreground error energy and the sample's flags.
    #[inline]
    pub(super) fn add_fg(&mut self, e2: f32, f: Flags) {
        self.fg += e2;
        self.dt |= f.dt;
        self.quiet |= !f.far_active;
        self.suspect |= f.suspect;
    }

    /// Add background error energy.
    #[inline]
    pub(super) fn add_bg(&mut self, e2: f32) {
        self.bg += e2;
    }

    /// Close the window. The background wins with 10 % less error (75 %
    /// less while the energy check suspects double talk) in two windows
    /// running without far silence (one window, far silence or not, when
    /// `eager`); it is reset when its error is 8 times the foreground's.
    pub(super) fn close(&mut self, stats: &mut EcStats) -> Verdict {
        let margin = if self.suspect { 0.25 } else { 0.9 };
        let mut v = Verdict::Keep;
        let blocked = self.dt || (self.quiet && !self.eager);
        if !blocked && self.bg < margin * self.fg {
            self.bg_better += 1;
            if self.bg_better >= 2 || self.eager {
                stats.fg_updates += 1;
                self.bg_better = 0;
                v = Verdict::CopyToForeground;
            }
        } else {
            self.bg_better = 0;
            if self.bg > 8.0 * self.fg {
                stats.bg_resets += 1;
                v = Verdict::ResetBackground;
            }
        }
        self.bg = 0.0;
        self.fg = 0.0;
        self.dt = false;
        self.quiet = false;
        self.suspect = false;
        v
    }
}

/// G.164/G.165 tone disabler: 2100 Hz holding most of the power, with a
/// phase reversal, disables; 250 ms of quiet re-enables.
#[derive(Debug, Clone)]
struct ToneDisabler {
    n: usize,
    /// The frame's correlation with the 2100 Hz cos/sin and its energy, in
    /// [`TD_LANES`] partial sums (sample `n` goes to lane `n % TD_LANES`),
    /// so a block of samples is a vector pass; sample by sample gives the
    /// same sums.
    re: [f32; TD_LANES],
    im: [f32; TD_LANES],
    energy: [f32; TD_LANES],
    /// Consecutive 10 ms frames with the tone.
    tone_frames: u32,
    last_phase: Option<f32>,
    drift: f32,
    quiet_frames: u32,
    disabled: bool,
}

/// 10 ms frames; 2100 Hz makes a whole number of cycles (21) per frame, so
/// a steady tone shows the same phase every frame.
const TD_FRAME: usize = 80;

/// Partial sums of the tone disabler's correlations.
const TD_LANES: usize = 8;

/// cos and sin of 2100 Hz over one frame (2100/8000 = 21/80 of a cycle per
/// sample).
struct TdTable {
    cos: [f32; TD_FRAME],
    sin: [f32; TD_FRAME],
}

static TD_TABLE: std::sync::LazyLock<TdTable> = std::sync::LazyLock::new(|| {
    let mut t = TdTable {
        cos: [0.0; TD_FRAME],
        sin: [0.0; TD_FRAME],
    };
    for n in 0..TD_FRAME {
        let w = std::f64::consts::TAU * 21.0 * n as f64 / 80.0;
        t.cos[n] = w.cos() as f32;
        t.sin[n] = w.sin() as f32;
    }
    t
});

/// Sum of the lanes, pairwise.
fn lanes_sum(v: &[f32; TD_LANES]) -> f32 {
    ((v[0] + v[4]) + (v[1] + v[5])) + ((v[2] + v[6]) + (v[3] + v[7]))
}

impl ToneDisabler {
    fn new() -> Self {
        ToneDisabler {
            n: 0,
            re: [0.0; TD_LANES],
            im: [0.0; TD_LANES],
            energy: [0.0; TD_LANES],
            tone_frames: 0,
            last_phase: None,
            drift: 0.0,
            quiet_frames: 0,
            disabled: false,
        }
    }

    /// Feed one sample; true on the sample where the canceller gets disabled.
    fn push(&mut self, x: f32) -> bool {
        self.push_one(&TD_TABLE, x);
        if self.n < TD_FRAME {
            return false;
        }
        self.close_frame()
    }

    /// One sample into its lane.
    #[inline]
    fn push_one(&mut self, t: &TdTable, x: f32) {
        let l = self.n % TD_LANES;
        self.re[l] += x * t.cos[self.n];
        self.im[l] -= x * t.sin[self.n];
        self.energy[l] += x * x;
        self.n += 1;
    }

    /// Feed samples; true if the canceller got disabled on one of them.
    fn push_block(&mut self, xs: &[f32]) -> bool {
        let t = &*TD_TABLE;
        let mut fired = false;
        let mut rest = xs;
        while !rest.is_empty() {
            let take = (TD_FRAME - self.n).min(rest.len());
            let (now, later) = rest.split_at(take);
            rest = later;
            let mut xs = now;
            // Whole lane groups as a vector pass once lane-aligned.
            if self.n.is_multiple_of(TD_LANES) {
                let (chunks, tail) = xs.as_chunks::<TD_LANES>();
                let n0 = self.n;
                let cs = t.cos[n0..].as_chunks::<TD_LANES>().0;
                let ss = t.sin[n0..].as_chunks::<TD_LANES>().0;
                for ((x, c), s) in chunks.iter().zip(cs).zip(ss) {
                    for i in 0..TD_LANES {
                        self.re[i] += x[i] * c[i];
                        self.im[i] -= x[i] * s[i];
                        self.energy[i] += x[i] * x[i];
                    }
                }
                self.n += chunks.len() * TD_LANES;
                xs = tail;
            }
            for &x in xs {
                self.push_one(t, x);
            }
            if self.n == TD_FRAME {
                fired |= self.close_frame();
            }
        }
        fired
    }

    /// End of a frame: tone and phase-reversal checks.
    fn close_frame(&mut self) -> bool {
        let (re, im, energy) = (
            lanes_sum(&self.re),
            lanes_sum(&self.im),
            lanes_sum(&self.energy),
        );
        let p = (re * re + im * im) * 2.0 / TD_FRAME as f32;
        let level = dbm0_to_peak(-36.0);
        let loud = energy > TD_FRAME as f32 * level * level * 0.5;
        let tone = loud && p > 0.7 * energy;
        let phase = im.atan2(re);
        self.n = 0;
        self.re = [0.0; TD_LANES];
        self.im = [0.0; TD_LANES];
        self.energy = [0.0; TD_LANES];

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
    use crate::dsp::sat16;

    #[test]
    fn round_sat16_matches_sat16() {
        let mut v = vec![f32::NAN, f32::INFINITY, f32::NEG_INFINITY, 1e9, -1e9];
        for k in -70_000..70_000 {
            let h = k as f32 * 0.5;
            v.extend([h, h - 1e-3, h + 1e-3, h.next_up(), h.next_down()]);
        }
        v.extend([0.49999997, -0.49999997, 32767.5, -32768.5, -32767.5]);
        for x in v {
            assert_eq!(round_sat16(x), sat16(x), "{x}");
        }
    }

    #[test]
    fn comparator_copies_after_two_better_windows_and_resets_on_divergence() {
        let mut stats = EcStats::default();
        let mut c = Comparator::default();
        let f = Flags {
            far_active: true,
            dt: false,
            suspect: false,
        };
        for expect in [Verdict::Keep, Verdict::CopyToForeground] {
            c.add_fg(10.0, f);
            c.add_bg(5.0);
            assert_eq!(c.close(&mut stats), expect);
        }
        c.add_fg(1.0, f);
        c.add_bg(9.0);
        assert_eq!(c.close(&mut stats), Verdict::ResetBackground);
        // Double talk in the window: never copy.
        for _ in 0..3 {
            c.add_fg(10.0, Flags { dt: true, ..f });
            c.add_bg(1.0);
            assert_eq!(c.close(&mut stats), Verdict::Keep);
        }
        assert_eq!((stats.fg_updates, stats.bg_resets), (1, 1));
    }

    #[test]
    fn eager_comparator_copies_after_one_window_despite_far_silence() {
        let mut stats = EcStats::default();
        let quiet = Flags {
            far_active: false,
            dt: false,
            suspect: false,
        };
        let mut c = Comparator::default();
        for _ in 0..3 {
            c.add_fg(10.0, quiet);
            c.add_bg(5.0);
            assert_eq!(c.close(&mut stats), Verdict::Keep);
        }
        c.eager = true;
        c.add_fg(10.0, quiet);
        c.add_bg(5.0);
        assert_eq!(c.close(&mut stats), Verdict::CopyToForeground);
        // Double talk still vetoes.
        c.add_fg(10.0, Flags { dt: true, ..quiet });
        c.add_bg(1.0);
        assert_eq!(c.close(&mut stats), Verdict::Keep);
        assert_eq!(stats.fg_updates, 1);
    }

    #[test]
    fn tone_disabler_needs_a_phase_reversal() {
        for reversals in [true, false] {
            let mut t = ToneDisabler::new();
            let a = dbm0_to_peak(-12.0);
            let mut fired = false;
            for n in 0..8000 * 2 {
                let sign = if reversals && (n / 3600) % 2 == 1 {
                    -1.0
                } else {
                    1.0
                };
                let w = std::f32::consts::TAU * 2100.0 * n as f32 / 8000.0;
                fired |= t.push(sign * a * w.sin());
            }
            assert_eq!((fired, t.disabled), (reversals, reversals));
        }
    }

    #[test]
    fn tone_disabler_by_blocks_matches_by_samples() {
        let a = dbm0_to_peak(-12.0);
        let x: Vec<f32> = (0..8000 * 2)
            .map(|n| {
                let sign = if (n / 3600) % 2 == 1 { -1.0 } else { 1.0 };
                sign * a * (std::f32::consts::TAU * 2100.0 * n as f32 / 8000.0).sin()
            })
            .collect();
        // Blocks of the canceller's size, and an odd size that starts
        // blocks off the lane grid: the same sums, bit for bit.
        for size in [64, 37] {
            let (mut one, mut blocks) = (ToneDisabler::new(), ToneDisabler::new());
            for c in x.chunks(size) {
                let by_one = c.iter().fold(false, |f, &v| f | one.push(v));
                assert_eq!(blocks.push_block(c), by_one);
                assert_eq!(blocks.disabled, one.disabled);
                assert_eq!(
                    (blocks.n, blocks.re, blocks.im, blocks.energy),
                    (one.n, one.re, one.im, one.energy)
                );
            }
            assert!(one.disabled);
        }
    }
}
