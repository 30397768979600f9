//! Line echo canceller in the spirit of ITU-T G.168, frequency-domain
//! variant and the default ([`super::ec::EcKind`]): about a quarter of
//! speexdsp's time per sample at 1024 taps (0.20-0.25 measured side by side
//! on an AMD EPYC VM; 781 instructions per sample on the 73 s prompt, 0.22
//! of its; 892 before the foreground skipped its silent partitions, see
//! [`FG_SILENT`], and the SIMD kernels stopped asking the CPU on every
//! call, see [`super::simd::Avx2`]), same API as
//! [`super::ec`] and the same control logic (shared in `ec_control`). On
//! the test paths (0-100 ms bulk delay, 4-12 ms dispersion, ERL 6-25 dB,
//! `tests/dsp_ec.rs`) it removes 20 dB within 0.1-0.7 s of speech and
//! 41-59 dB at steady state on the default draw; over fresh draws it takes
//! 0.33 s of speech to 20 dB on average (0.47 before the pre-emphasised
//! first convergence of the short filter). The least margin is the ERL-25
//! rows' steady state (35 dB needed): over seeds 900-1079 min/p5/mean
//! 35.5/39.4/44.2 dB (34.3/38.6/43.5 with the step floor at 0.02 and no
//! extra constraint of the echo partition, see [`MU_MIN`]), over
//! 1140-1199 33.3/39.4/44.1 (32.9/38.6/43.4): a row in a few hundred
//! still ends under 35 dB, most often with no bulk delay and 12 ms of
//! dispersion.
//!
//! Other talkers and the anchors' scenes (`tests/dsp_ec.rs`:
//! `fdaf_long_scenes`, `fdaf_g168_models`, and the sweep's `EC_FAR_FILE`/
//! `EC_FAR_AT`/`EC_FAR_DBM0`): on the anchors' echo bench (110 s of a
//! synthetic voice at -24 dBov over -68 dBov noise, so the echo at ERL 25
//! stands only ~19 dB over it) the steady state at ERL 25 is 37-43 dB on a
//! dense 24-128 ms decay and the G.168 models d2-d9 (speexdsp 22-28 dB;
//! 18 dB on the 64 ms decay before the leak spared a decaying tail, 30-37
//! before the averaged foreground). Over ten 20 s segments of three
//! recordings through the sweep's paths (seeds 630-689, 10800 rows) 24
//! rows miss (138, then 83, then 22 before [`SEED_HELD`]; untouched seeds
//! 1140-1169: 16 of 5400, 49 before): 19 of them reach 20 dB after
//! 1.1-1.6 s of speech, nearly all ERL-25 rows at 50-100 ms bulk delay. On
//! the anchors' bench the time to 20 dB is 0.7-1.3 s on the G.168 models
//! and the 24/64 ms decays at ERL 6-25 (speexdsp 0.8-6.5 s; 3.3-5.8 s
//! before the noise floor fix, the affine projection and the block
//! filter's first-convergence normaliser), 3.7 s on the 128 ms decay
//! (5.8 s before the short filter's seeds waited for it to hold the echo,
//! see [`SEED_HELD`]).
//! Where the echo stands ~20 dB over the noise, 20 s runs of the G.168
//! models at ERL 25 end at 26-37 dB (18 of 72 rows under the table's
//! limits, 7 of them also slow): the open item.
//!
//! Structure:
//!
//! - A *background* adaptive filter over the far-end (Rin) history, a
//!   partitioned-block frequency-domain adaptive filter (PBFDAF, also
//!   called MDF): the tail is cut into partitions of [`BLOCK`] taps, each
//!   held as a 2*BLOCK-point spectrum, and every block of [`BLOCK`] samples
//!   the filter output, the error spectrum and the update are computed with
//!   real FFTs ([`realfft`]). Each partition's step is in proportion to
//!   its energy (the frequency-domain form of proportionate NLMS: a bulk
//!   delay then a few ms of dispersion converges faster), and the step is
//!   normalised per frequency bin by the (smoothed) far power of the blocks
//!   feeding each partition weighted the same way (the IPNLMS normaliser
//!   x'Gx, bin by bin), which whitens speech (NLMS on speech is slow because
//!   of its spectral tilt). Until the first convergence the normaliser is
//!   each block's exact far power and the shares lean to uniform
//!   ([`FIRST_ALPHA`]: the anchors' dense 64 ms decay reaches 20 dB after
//!   2.0 s instead of 5.8 s, the 128 ms one after 4.6 s instead of 7.5 s),
//!   and the step may go higher ([`FIRST_MU_MAX`]).
//!   Where the first convergence of a dense path (24-128 ms, which the
//!   short filter below cannot hold) spends its time, per 100 ms frame of
//!   `fdaf_long_scenes`' 64 ms decay: the short filter produces the output
//!   for much of the first 2 s at 5-15 dB; the background alone climbs to
//!   10-15 dB by ~1.5 s with its step at 0.25-0.35, then to 20 dB by 3-5 s
//!   with the step at 0.12-0.2 (the residual echo then stands at the
//!   noise, ~19 dB under the echo, and the step rule lowers the step);
//!   frame to frame its ERLE swings by 5-8 dB with the sound (bands not
//!   learnt yet). The short filter seeded it window after window through
//!   the first 3 s, undoing its progress: that, not the update itself,
//!   was the largest cost ([`SEED_HELD`]). The draws differ by the path,
//!   not the noise (swapping the two between the anchors' draw and ours
//!   moves the time with the path): on the anchors' draw the short filter
//!   carries the output to 20 dB by 1.3 s while the foreground gets there
//!   at ~3.7 s, on ours it stays at 5-15 dB and the output waits for the
//!   block filter (5.0 s; 16 draws: mean 4.0 s, up to 6.9 s). Both paths
//!   put the same share of their energy in the best 24 ms window (15 dB
//!   of ERLE at most, flat), so it is likely how much of the path's response in
//!   the speech's band the window holds. Tried on the
//!   update and dropped (mean time to 20 dB over 16 draws, 64 ms / 128 ms
//!   / 64 ms at ERL 10): decorrelating the partitions' far spectra along
//!   the partition axis (the far spectra of one bin in successive blocks
//!   correlate by 0.55-0.9 on this speech, 0.5 from the half-overlapped
//!   frames alone), updating with `X_p - rho X_p+1` and the error
//!   unchanged, `rho` per bin either each block's exact proportionate
//!   lag-one correlation over the partitions (a per-bin DNLMS, close to an
//!   affine projection of order 2) or its smoothed lag-one correlation:
//!   4.0/5.6/3.1 and 3.9/5.4/2.8 s against 4.0/5.6/4.1 s, and without the
//!   short filter's seeds, where the gain would show, 3.5/5.2/2.8 and
//!   3.4/5.2/2.6 against 3.0/4.5/2.1 s (likely the noise, not the input's
//!   correlation, holds the update back: the echo stands only ~20 dB over
//!   it, and the decorrelated input's smaller norm enlarges the step on
//!   it); constraining every partition every block while
//!   converging (no change: 4.0/5.9/3.8 s); a quarter of the
//!   regularisation, or uniform step shares, while converging (within
//!   0.25 s either way).
//!   The gradient constraint (the update of each partition kept to
//!   its BLOCK taps) is applied to one partition per block in turn, which
//!   costs two FFTs per block instead of two per partition; partition 0
//!   also every other block while it holds the echo (its unconstrained
//!   half stands for negative lags).
//! - A leak on the background partitions away from the echo (as the
//!   foreground's partition energies locate it), once the background
//!   removes ~5 dB: the noise every partition picks up while the error is
//!   large otherwise stays in the quiet partitions (their proportionate step
//!   is small) and caps the ERLE; on white noise over a 50 ms path this takes
//!   the steady state from ~38 dB to ~57 dB. The echo region runs from the
//!   partition before the strongest to the last of the partitions after it
//!   whose energy keeps falling (at least two): a dense path decaying over
//!   tens of ms (the anchors' "decay" scene) lost its tail to the leak
//!   otherwise and stayed at 18 dB.
//! - A *foreground* filter that produces the output and only changes by
//!   copying the background when the background has had the lower error for
//!   two windows running. Double talk that slips past the detector can only
//!   spoil the background; a background that did diverge is reset from the
//!   foreground. An echo-path change makes the background better, so it is
//!   copied over: this lets the canceller re-converge without a detector
//!   telling it to. The foreground output has no block delay: partitions
//!   1.. are convolved by FFT once per block (they only need far samples
//!   from earlier blocks) and partition 0 sample by sample in the time
//!   domain.
//! - Once converged, the foreground is the background *averaged* over up
//!   to [`AVG_WINDOWS`] comparison windows of echo in which the background
//!   did not do worse than it ([`FdafEchoCanceller::average_into_fg`]): at
//!   steady state the background's taps wander around the echo path by the
//!   gradient noise of its step, which sets the ERLE where the echo stands
//!   only ~20 dB over the near noise (the anchors' scenes: 30-35 dB with a
//!   step floor of 0.1), and their average does not, while the background
//!   keeps its step and its speed. The comparison still hands the output
//!   to a background that does better, which restarts the average. On the
//!   anchors' 110 s ERL-25 scenes: 64 ms decay 32.5 -> 39.3 dB, G.168
//!   d2/d5/d8/d9 35.5/33.4/30.2/31.3 -> 43.1/41.0/37.3/37.9 dB.
//! - The step follows the non-parametric VSS-NLMS rule: the share of the
//!   block error's amplitude above the noise floor, so large while the
//!   residual echo dominates and small at steady state.
//! - A *short* time-domain filter of [`SHORT`] taps (24 ms), proportionate
//!   NLMS sample by sample, placed at the bulk delay that a whitened
//!   cross-correlation (per partition, in the frequency domain) finds. Both
//!   sides are whitened, each spectrum by its own smoothed power (SCOT;
//!   dividing by the newest far block's power alone let loud past blocks
//!   dominate), the near block is Hann-windowed (a hard-edged frame, once
//!   whitened, put false peaks on the first and last lag of every
//!   partition), and the peak is picked over every lag of the tail, not
//!   inside the partition of most energy. Estimates off by a partition or
//!   on a repeat in the far speech (the filter then wandered after its own
//!   largest tap) made 50 ms paths reach 20 dB only after 1.1-3 s of
//!   speech. Waiting for an estimate to hold for a few windows before
//!   placing was tried and is worse: it delays every first placement. On
//!   a sparse hybrid response the short filter converges in a fraction of the time the
//!   block filter takes (whose step shares are per 64-tap partition), so
//!   it is a third candidate: it produces the output while its error is
//!   the lower, and seeds the background (its window, or the whole filter
//!   when the background is far worse) once it holds the echo
//!   ([`SEED_HELD`]). Until
//!   the foreground first removes 20 dB it adapts on pre-emphasised far
//!   and near signals (first order, `1 - c z^-1` with `c` the far speech's
//!   own lag-1 correlation over the last ~0.1 s, see [`PRE_FORGET`]), with
//!   a larger step until it first idles: NLMS on raw speech learns the low
//!   band first and the rest slowly, and on some 4-12 ms paths a short
//!   filter placed right still removed only 5-13 dB half a second later.
//!   The slow rows left (20 dB after 1.1-1.7 s, nearly all ERL 25 at
//!   50-100 ms bulk delay) are not a late placement: the delay estimate
//!   holds the true lag by ~0.2 s of speech and the short filter, which
//!   produces the output, reaches 20 dB by ~0.3 s, but each new sound
//!   (bands it has not learnt yet) drops a 100 ms frame under 20 dB again;
//!   the foreground is no better on those frames. With the coefficient
//!   taken from the far speech instead of a fixed 0.9 the talker-and-offset
//!   matrix (10 configs x 60 draws, seeds 630-689) went from 138 misses
//!   (110 slow) to 107 (82 slow), most of it on the synthetic voice (its
//!   first 20 s: 42 -> 22); on the natural-speech configs 37 -> 41 (the
//!   default prompt at 40 s 11 -> 17, the others within two either
//!   way). Once it
//!   removes echo and its largest tap sits at an edge of the window, it
//!   moves to the delay estimate (and stays put while the estimate is
//!   inside the window); only without a confident estimate does it follow
//!   its own largest tap. Following its own tap whatever the estimator said
//!   made most of the remaining slow 50 ms rows (20 dB only after 1.4-1.7
//!   s): on voiced speech a 24 ms window off the echo, or partly on it,
//!   removes 6 dB or more of a loud echo by predicting it from far speech a
//!   pitch period or two away, its largest tap lands 100-150 taps from the
//!   echo, and the window wandered from one such tap to the next for half
//!   a second while the estimator held the true delay. It goes back to the
//!   delay estimate after missing the echo for three windows running, so
//!   it relocates after an echo-path change. It idles (costs nothing, nor does
//!   the delay estimator) once, summed over ~0.5 s of windows with echo, the
//!   foreground removes 6 dB and the short filter is not clearly better, or
//!   after four such sums running in which the foreground removed 6 dB
//!   whatever the short filter does (on a long dense tail its 24 ms window
//!   stays a few dB ahead of the block filter for good, and running it
//!   costs a third more per sample); it wakes when a window of echo shows
//!   the foreground removing less than 6 dB.
//! - Until the foreground first removes 20 dB (while the short filter
//!   adapts on pre-emphasised signals), the short filter's step is a
//!   proportionate affine projection of order [`APA_ORDER`] (PAPA: `w += mu G X (X'GX +
//!   delta I)^-1 e` over the last P regressors, on the pre-emphasised
//!   signals, `delta` the NLMS step's regularisation times [`SHORT`]): NLMS
//!   on speech learns the strong low band first and the weak bands slowly,
//!   so each new sound dipped the ERLE. The P x P correlation slides (a new
//!   row per sample, recomputed once per block when the gains change), the
//!   errors of the older samples follow from the update (`e - R b`), the
//!   system is solved by Cholesky in `f64` (NLMS if a pivot is not
//!   positive). It needs the noise floor estimate to start right (the
//!   controller's minimum statistics, whose residual power starts at the
//!   floor's high start): with the floor rising from zero for
//!   seconds the step stayed at its largest, and the projection's noise
//!   amplification made the ERL-25 rows slower. Figures (seeds 630-689,
//!   talker matrix misses; G.168 at the anchors' levels, misses of 72 and
//!   mean/max time to 20 dB of the ERL-25 rows; anchors' bench d5/d8/d9
//!   time to 20 dB): NLMS 83; 20, 1.36/3.6 s; 3.6/3.5/3.3 s. Floor fix
//!   alone 106; 15, 1.46/4.7 s; 1.8/1.2/1.1 s. P = 4 without the fix: 41
//!   misses on six of the ten configs (4 with it); 21, 1.91/3.6 s. P = 4
//!   with it: 20; 15, 1.00/2.7 s; 1.2/1.1/0.9 s. P = 2: 14 misses,
//!   1.10/3.5 s; P = 8: 17, 0.95/3.4 s. Without the pre-emphasis (P = 4):
//!   11, 0.98/2.7 s on the G.168 models, but slower on the anchors' d5
//!   (2.2 s) and 128 ms decay; kept.
//!   It costs ~600 instructions per sample while it runs (P = 4). Run
//!   until the short filter first idled (seconds more of it on the 73 s
//!   prompt: 950 instructions per sample over the scene, against 892
//!   now and 855 without it) it did no better: talker matrix 21 misses
//!   against 22, G.168 at the anchors' levels the same. The anchors' dense
//!   128 ms decay (outside the issue's dispersion) went 7.5 -> 26 s to 20
//!   dB with P = 4 alone (3.8 s with P = 2): the short window wanders over
//!   a path it cannot hold and, faster now, seeds the background whole;
//!   with the block filter's first-convergence normaliser
//!   ([`FIRST_ALPHA`]) it is 5.8 s.
//! - Double talk (Geigel, energy check), NLP with comfort noise, tone
//!   disable and the filter comparison: the shared controller in
//!   `ec_control`.
//!
//! Cost (at 1024 taps on the anchors' speech scene: about 892
//! instructions per sample over its 73 s with the affine projection, 855
//! before it; 1280 and 1334 before the changes below):
//! the per-sample path does only what the output needs (head convolution,
//! the short filter while it runs, the controller's fast powers, double
//! talk and NLP); everything that is a sum over the block (window
//! energies, far activity, the controller's slow powers, the tone
//! disabler's correlations) is a vector pass at the end of the block over
//! the block's buffers. Per block, the filter outputs sum all partitions
//! in one kernel with the sums in registers, the partition energies of the
//! proportionate step come out of the update, and the real FFTs are
//! complex FFTs of half the length (`rustfft`) with their split pass in
//! AVX2 (`realfft`'s generic one cost four times the FFT itself).
//!
//! All memory (FFT plans and scratch included) is allocated in
//! [`FdafEchoCanceller::new`]; `process` allocates nothing. No `unsafe` here:
//! the complex kernels, the dot products and the FFT split passes run in
//! [`super::simd`] (an AVX2+FMA build chosen at runtime, else plain loops),
//! the other loops are fixed-width lane loops that LLVM vectorises, and
//! `rustfft` picks its SIMD code at runtime.

pub use super::ec::EcStats;
use super::ec_control::{Comparator, Controller, Flags, Verdict, FAR_ACTIVE_POWER};
use super::simd;
use super::simd::APA_MAX;
use realfft::num_complex::Complex32;
use std::sync::Arc;

/// Projection order of the short filter's affine projection during its
/// first convergence (1 would be NLMS; see the module doc for 2, 4, 8).
const APA_ORDER: usize = 4;

/// Solve `(r + delta I) a = e` over the first `p` rows (Cholesky, in
/// `f64`); None when a pivot is not clearly positive.
fn solve_spd(
    r: &[[f32; APA_MAX]; APA_MAX],
    p: usize,
    delta: f32,
    e: &[f32; APA_MAX],
) -> Option<[f64; APA_MAX]> {
    let mut l = [[0f64; APA_MAX]; APA_MAX];
    for i in 0..p {
        for j in 0..=i {
            let mut s = f64::from(r[i][j]);
            if i == j {
                s += f64::from(delta);
            }
            for (a, b) in l[i][..j].iter().zip(&l[j][..j]) {
                s -= a * b;
            }
            if i == j {
                let scale = f64::from(r[i][i]) + f64::from(delta);
                if s.is_nan() || s <= 1e-6 * scale {
                    return None;
                }
                l[i][i] = s.sqrt();
            } else {
                l[i][j] = s / l[j][j];
            }
        }
    }
    let mut a = [0f64; APA_MAX];
    for i in 0..p {
        let mut s = f64::from(e[i]);
        for k in 0..i {
            s -= l[i][k] * a[k];
        }
        a[i] = s / l[i][i];
    }
    for i in (0..p).rev() {
        let mut s = a[i];
        for k in i + 1..p {
            s -= l[k][i] * a[k];
        }
        a[i] = s / l[i][i];
    }
    Some(a)
}

/// Fewest taps accepted (32 ms at 8 kHz).
pub const MIN_TAPS: usize = 256;
/// Most taps accepted (128 ms at 8 kHz).
pub const MAX_TAPS: usize = 1024;
/// Block and partition length in samples (8 ms); tap counts are rounded up
/// to a multiple of it.
pub const BLOCK: usize = 64;
/// FFT length.
const FFT: usize = 2 * BLOCK;
/// Spectrum bins of a real FFT of length [`FFT`].
const BINS: usize = FFT / 2 + 1;
/// Most partitions.
const MAX_PARTS: usize = MAX_TAPS / BLOCK;
/// Blocks per foreground/background comparison window (24 ms).
const CMP_BLOCKS: usize = 3;

/// Half the FFT length: the real FFTs run as complex FFTs of this length.
const HALF: usize = FFT / 2;

/// Real FFTs of length [`FFT`] as complex FFTs of [`HALF`] points
/// (`rustfft`, which picks its SIMD code at runtime) on the even/odd
/// samples packed as re/im, split into the real spectrum by a pass over
/// the bin pairs `(k, HALF - k)`. This is the textbook method that
/// `realfft` also uses, but its generic split pass took about 1900
/// instructions per transform at 128 points, four times the complex FFT
/// itself; written out for `f32` it is a fraction of that, and the
/// canceller runs seven or eight of these per block.
#[derive(Clone)]
struct Fft {
    fwd: Arc<dyn rustfft::Fft<f32>>,
    inv: Arc<dyn rustfft::Fft<f32>>,
    /// `e^{-2 pi j k / FFT}` for `k` in `0..=HALF / 2`.
    tw: [Complex32; HALF / 2 + 1],
    /// The CPU runs the AVX2+FMA split passes ([`super::simd`]).
    avx2: Option<simd::Avx2>,
    scratch: Vec<Complex32>,
    /// Time-domain work buffer (the FFTs overwrite their input).
    time: Vec<f32>,
}

impl std::fmt::Debug for Fft {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Fft({FFT})")
    }
}

impl Fft {
    fn new() -> Self {
        let mut planner = rustfft::FftPlanner::<f32>::new();
        let fwd = planner.plan_fft_forward(HALF);
        let inv = planner.plan_fft_inverse(HALF);
        let n = fwd
            .get_inplace_scratch_len()
            .max(inv.get_inplace_scratch_len());
        let tw = std::array::from_fn(|k| {
            let w = -std::f64::consts::TAU * k as f64 / FFT as f64;
            Complex32::new(w.cos() as f32, w.sin() as f32)
        });
        Fft {
            fwd,
            inv,
            tw,
            avx2: simd::Avx2::detect(),
            scratch: vec![ZERO; n],
            time: vec![0.0; FFT],
        }
    }

    /// Spectrum (bins `0..=HALF`) of `self.time` into `out`.
    fn forward(&mut self, out: &mut [Complex32]) {
        let out = &mut out[..BINS];
        // z[n] = x[2n] + j x[2n + 1], then Z = FFT(z) in place.
        simd::as_pairs_mut(&mut out[..HALF]).copy_from_slice(&self.time);
        self.fwd
            .process_with_scratch(&mut out[..HALF], &mut self.scratch);
        simd::rfft_split(self.avx2, out, &self.tw);
    }

    /// Unnormalised inverse of `spec` (bins `0..=HALF`; the imaginary parts
    /// of the first and last are ignored) into `self.time`, `FFT` times the
    /// signal (`spec` is clobbered).
    fn inverse(&mut self, spec: &mut [Complex32]) {
        let spec = &mut spec[..BINS];
        simd::rfft_merge(self.avx2, spec, &self.tw);
        self.inv
            .process_with_scratch(&mut spec[..HALF], &mut self.scratch);
        self.time.copy_from_slice(simd::as_pairs(&spec[..HALF]));
    }
}

/// A line echo canceller for one channel.
#[derive(Debug, Clone)]
pub struct FdafEchoCanceller {
    taps: usize,
    /// Partitions of [`BLOCK`] taps.
    parts: usize,
    fft: Fft,
    /// Work spectrum.
    spec: Vec<Complex32>,
    /// Far spectra of the last `parts` blocks (ring, `parts * BINS`), each
    /// the FFT of that block preceded by the one before it.
    x_ring: Vec<Complex32>,
    /// Slot of the newest far spectrum.
    x_cur: usize,
    blocks: u64,
    /// Background partition spectra (`parts * BINS`).
    w_bg: Vec<Complex32>,
    /// Foreground partition spectra (partition 0 unused: see `head`).
    w_fg: Vec<Complex32>,
    /// The background averaged over the windows since it was last copied
    /// (see [`Self::average_into_fg`]).
    w_avg: Vec<Complex32>,
    /// Windows in the average since it restarted.
    avg_n: u32,
    /// Foreground partition 0 in the time domain, oldest-sample tap first.
    head: [f32; BLOCK],
    /// Per-partition step share (sums to 1).
    prop: Vec<f32>,
    /// Far samples: previous block then the current one.
    x_buf: Vec<f32>,
    /// Near samples of the current block.
    d_buf: [f32; BLOCK],
    /// Foreground output of partitions 1.. for the current block.
    tail: [f32; BLOCK],
    /// This block's foreground error, short-filter error (while it runs),
    /// and the output filter's estimate and error, per sample: summed once
    /// per block ([`FdafEchoCanceller::block_sums`]).
    e_fg: [f32; BLOCK],
    e_s: [f32; BLOCK],
    y_out: [f32; BLOCK],
    e_out: [f32; BLOCK],
    /// The short filter's step normaliser for the newest sample.
    sh_n2: f32,
    fill: usize,
    /// Far history for the head convolution; window `hist[pos - BLOCK..pos]`.
    hist: Vec<f32>,
    /// Until the foreground first removes 20 dB (latched once per block):
    /// the short filter adapts on pre-emphasised signals ([`PRE_FORGET`]),
    /// far history in `hist_w` (same layout as `hist`), the newest far and
    /// near samples in `x_last`/`d_last`, the newest pre-emphasised error in
    /// `sh_ew`, by the affine projection; the background adapts with the
    /// exact normaliser and a more uniform step share ([`FIRST_ALPHA`]).
    pre: bool,
    /// Pre-emphasis `1 - pre_c z^-1`: the far signal's first normalised
    /// autocorrelation, from `pre_r` (lags 0 and 1, smoothed per block).
    pre_c: f32,
    pre_r: [f64; 2],
    hist_w: Vec<f32>,
    x_last: f32,
    d_last: f32,
    sh_ew: f32,
    pos: usize,
    /// The last near samples (ring, newest at `d_pos - 1`).
    d_ring: [f32; D_RING],
    d_pos: usize,
    // Block flags for the adaptation decision.
    blk_hold: bool,
    blk_suspect: bool,
    /// Far silence seen in the block (for the comparator).
    blk_quiet: bool,
    blk_far: f32,
    /// Near energy of the block.
    blk_d: f32,
    /// Double talk, energy check, noise floor, NLP, tone disable.
    ctl: Controller,
    cmp: Comparator,
    cmp_n: usize,
    adapt: bool,
    /// The CPU runs the AVX2+FMA complex kernels ([`super::simd`]).
    avx2: Option<simd::Avx2>,
    /// Smoothed far power spectrum of the newest block (per bin).
    psd: [f32; BINS],
    /// `psd` as it was at each far spectrum of `x_ring` (same slots).
    psd_ring: Vec<f32>,
    /// `|X|^2` of each far spectrum of `x_ring` (same slots): the exact
    /// normaliser of the first convergence ([`Self::adapt_bg`]).
    x2_ring: Vec<f32>,
    /// Near and background-error energy per block, smoothed over far-active
    /// blocks without double talk: the background's ERLE gates the leak.
    sm_d: f32,
    sm_e: f32,
    /// Energy of each foreground partition, taken when it was last copied.
    fg_en: [f32; MAX_PARTS],
    /// The foreground partitions after 0 that hold echo (`fg_live[..fg_live_n]`,
    /// ascending): the only ones its tail convolves ([`FG_SILENT`]).
    fg_live: [usize; MAX_PARTS],
    fg_live_n: usize,
    /// Energy of each background partition, kept up to date wherever a
    /// partition changes (the update returns it; see [`Self::update_prop`]).
    bg_en: [f32; MAX_PARTS],
    /// Short time-domain filter at the bulk delay.
    sh: Short,
    /// Whitened far/near cross-spectra per partition (`parts * BINS`),
    /// exponentially forgotten: the bulk delay estimate.
    xcorr: Vec<Complex32>,
    /// Far spectra of `x_ring`, each divided by the square root of the
    /// smoothed far power at its block (same slots): the estimator's far
    /// side, whitened by its own power rather than the newest block's.
    xw_ring: Vec<Complex32>,
    /// Smoothed near power spectrum (per bin), which whitens the near side.
    psd_d: [f32; BINS],
    /// Background error, foreground error and near energy over the current
    /// comparison window.
    bg_win: f32,
    fg_win: f32,
    d_win: f32,
    /// The short filter produces the output.
    use_short: bool,
    /// Double talk declared, or suspected, in the current comparison window.
    win_dt: bool,
    win_suspect: bool,
    /// Far silence seen in the current comparison window.
    win_quiet: bool,
    /// Step regularisation, far power per sample ([`regularisation`]).
    reg: f32,
}

/// A short proportionate NLMS filter sample by sample over [`SHORT`] taps
/// starting `off` taps into the tail (where the background filter puts the
/// echo's peak): it converges in a fraction of the time the block filter
/// takes, and while it has the lower error it seeds the background.
#[derive(Debug, Clone)]
struct Short {
    /// Taps in reverse: `w[j]` multiplies `x[n - off - (SHORT - 1 - j)]`.
    w: [f32; SHORT],
    /// Proportionate step gains (mean 1), same order as `w`.
    g: [f32; SHORT],
    off: usize,
    /// Smoothed error power (for the variable step).
    p_e: f32,
    /// Error energy over the current comparison window.
    win: f32,
    /// Moved to a delay estimate at least once.
    placed: bool,
    /// Not run (the converged foreground does far better).
    idle: bool,
    /// Not idled yet: the first convergence (larger step, [`SH_MU_FIRST`]).
    first: bool,
    /// Foreground and short-filter error over the windows of echo counted
    /// in `n_win` (the idle decision).
    sum_fg: f32,
    sum_sh: f32,
    sum_d: f32,
    n_win: u32,
    /// Removed 6 dB over a window of far speech since it last moved.
    found: bool,
    /// Windows of far speech running in which it removed less than 6 dB.
    stuck: u32,
    /// Idle decisions running in which the foreground removed 6 dB.
    fg_ok: u32,
    /// Proportionate input correlation `r[i][j] = x_{n-i}' G x_{n-j}` of
    /// the last `p` regressors (of the signals it adapts on).
    r: [[f32; APA_MAX]; APA_MAX],
    /// Errors of the current taps on the last `p` samples (`e[0]` the
    /// newest, a priori).
    e: [f32; APA_MAX],
    /// `r` and `e` must be recomputed (gains, taps or window changed).
    dirty: bool,
}

impl Short {
    fn new() -> Self {
        Short {
            w: [0.0; SHORT],
            g: [1.0; SHORT],
            off: 0,
            p_e: 0.0,
            win: 0.0,
            placed: false,
            idle: false,
            first: true,
            sum_fg: 0.0,
            sum_sh: 0.0,
            sum_d: 0.0,
            n_win: 0,
            found: false,
            stuck: 0,
            fg_ok: 0,
            r: [[0.0; APA_MAX]; APA_MAX],
            e: [0.0; APA_MAX],
            dirty: true,
        }
    }

    /// Proportionate gains (IPNLMS, alpha = 0) from the taps.
    fn update_gains(&mut self) {
        let l1: f32 = self.w.iter().map(|v| v.abs()).sum();
        if l1 <= 1e-9 {
            self.g.fill(1.0);
            return;
        }
        let k = 0.5 * SHORT as f32 / l1;
        for (g, w) in self.g.iter_mut().zip(&self.w) {
            *g = 0.5 + k * w.abs();
        }
    }

    /// Move the window to start `off` taps in, keeping the taps it shares
    /// with the old window.
    fn move_to(&mut self, off: usize) {
        let old = self.w;
        self.w = [0.0; SHORT];
        let delta = off as isize - self.off as isize;
        for (j, w) in self.w.iter_mut().enumerate() {
            let src = j as isize - delta;
            if (0..SHORT as isize).contains(&src) {
                *w = old[src as usize];
            }
        }
        self.off = off;
        self.update_gains();
        self.dirty = true;
    }

    /// Tap `t` of the tail lies where the window wants its echo peak (at
    /// least [`SHORT_PRE`] / 2 taps in, [`SHORT_POST`] before the end).
    fn covers(&self, t: usize) -> bool {
        (self.off + SHORT_PRE / 2..self.off + SHORT - SHORT_POST).contains(&t)
    }

    /// Index in the window (0 = `off`) of the largest tap.
    fn peak_tap(&self) -> usize {
        let mut best = (0, 0f32);
        for (j, w) in self.w.iter().enumerate() {
            if w.abs() > best.1 {
                best = (SHORT - 1 - j, w.abs());
            }
        }
        best.0
    }

    /// Tap `t` of the whole tail, if inside the window.
    fn tap(&self, t: usize) -> Option<f32> {
        let k = t.checked_sub(self.off).filter(|&k| k < SHORT)?;
        Some(self.w[SHORT - 1 - k])
    }
}

impl super::ec::LineEchoCanceller for FdafEchoCanceller {
    fn process(&mut self, far: &[i16], near: &[i16], out: &mut [i16]) {
        FdafEchoCanceller::process(self, far, near, out)
    }
    fn set_nlp(&mut self, on: bool) {
        FdafEchoCanceller::set_nlp(self, on)
    }
    fn taps(&self) -> usize {
        FdafEchoCanceller::taps(self)
    }
    fn stats(&self) -> EcStats {
        FdafEchoCanceller::stats(self)
    }
    fn is_tone_disabled(&self) -> bool {
        FdafEchoCanceller::is_tone_disabled(self)
    }
}

/// Far history kept beyond the tail before the buffer is rewound.
const HIST_SLACK: usize = 1024;
/// Far history kept before the tail: the oldest regressors of the short
/// filter's affine projection reach `2 (APA_MAX - 1)` samples beyond it.
const HIST_PAD: usize = 2 * APA_MAX;
/// Near samples kept for the short filter's affine projection (a power of
/// two above [`APA_MAX`]).
const D_RING: usize = 2 * APA_MAX;
const ZERO: Complex32 = Complex32::new(0.0, 0.0);

impl FdafEchoCanceller {
    /// A canceller with `tail_taps` taps (clamped to 256..=1024 and rounded
    /// up to a multiple of [`BLOCK`]), NLP and comfort noise on.
    pub fn new(tail_taps: usize) -> Self {
        let taps = tail_taps.clamp(MIN_TAPS, MAX_TAPS).div_ceil(BLOCK) * BLOCK;
        let parts = taps / BLOCK;
        FdafEchoCanceller {
            taps,
            parts,
            fft: Fft::new(),
            spec: vec![ZERO; BINS],
            x_ring: vec![ZERO; parts * BINS],
            x_cur: 0,
            blocks: 0,
            w_bg: vec![ZERO; parts * BINS],
            w_fg: vec![ZERO; parts * BINS],
            w_avg: vec![ZERO; parts * BINS],
            avg_n: 1,
            head: [0.0; BLOCK],
            prop: vec![1.0 / parts as f32; parts],
            x_buf: vec![0.0; FFT],
            d_buf: [0.0; BLOCK],
            tail: [0.0; BLOCK],
            e_fg: [0.0; BLOCK],
            e_s: [0.0; BLOCK],
            y_out: [0.0; BLOCK],
            e_out: [0.0; BLOCK],
            sh_n2: 0.0,
            fill: 0,
            hist: vec![0.0; taps + HIST_PAD + HIST_SLACK],
            pre: true,
            pre_c: 0.0,
            pre_r: [0.0; 2],
            hist_w: vec![0.0; taps + HIST_PAD + HIST_SLACK],
            x_last: 0.0,
            d_last: 0.0,
            sh_ew: 0.0,
            pos: taps + HIST_PAD,
            d_ring: [0.0; D_RING],
            d_pos: 0,
            blk_hold: false,
            blk_suspect: false,
            blk_quiet: false,
            blk_far: 0.0,
            blk_d: 0.0,
            // Double-talk detection and the energy check start at 20 dB of
            // echo removed: while the filter converges a residual near the
            // echo estimate is no sign of double talk, and capping or
            // freezing the step there stalls it.
            ctl: Controller::new(taps, 100.0),
            cmp: Comparator::default(),
            cmp_n: 0,
            adapt: true,
            avx2: simd::Avx2::detect(),
            psd: [0.0; BINS],
            psd_ring: vec![0.0; parts * BINS],
            x2_ring: vec![0.0; parts * BINS],
            sm_d: 0.0,
            sm_e: 0.0,
            fg_en: [0.0; MAX_PARTS],
            fg_live: [0; MAX_PARTS],
            fg_live_n: 0,
            bg_en: [0.0; MAX_PARTS],
            sh: Short::new(),
            xcorr: vec![ZERO; parts * BINS],
            xw_ring: vec![ZERO; parts * BINS],
            psd_d: [0.0; BINS],
            bg_win: 0.0,
            fg_win: 0.0,
            d_win: 0.0,
            use_short: false,
            win_dt: false,
            win_suspect: false,
            win_quiet: false,
            reg: REGULARISE,
        }
    }

    /// Number of taps in use.
    pub fn taps(&self) -> usize {
        self.taps
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

    /// The foreground filter's impulse response, tap 0 = no delay
    /// (diagnostics: runs an FFT per partition and allocates).
    pub fn coefficients(&self) -> Vec<f32> {
        let mut fft = Fft::new();
        let mut w = vec![0f32; self.taps];
        for (k, v) in w[..BLOCK].iter_mut().enumerate() {
            *v = self.head[BLOCK - 1 - k];
        }
        let mut spec = vec![ZERO; BINS];
        // The partitions the foreground applies (the rest stay zero).
        for &p in &self.fg_live[..self.fg_live_n] {
            spec.copy_from_slice(&self.w_fg[p * BINS..(p + 1) * BINS]);
            fft.inverse(&mut spec);
            for (o, &t) in w[p * BLOCK..(p + 1) * BLOCK].iter_mut().zip(&fft.time) {
                *o = t / FFT as f32;
            }
        }
        w
    }

    /// Reset the filters and state (keeps the knobs).
    pub fn reset(&mut self) {
        let (nlp, cng, adapt) = (self.ctl.nlp, self.ctl.cng, self.adapt);
        *self = Self::new(self.taps);
        self.ctl.nlp = nlp;
        self.ctl.cng = cng;
        self.adapt = adapt;
    }

    /// Cancel echo of `far` (Rin, what was sent to the line) in `near`
    /// (Sin, what came back) into `out` (Sout). The three slices should have
    /// the same length; only the common prefix is processed. The output has
    /// no delay: `out[i]` is `near[i]` minus its echo estimate.
    pub fn process(&mut self, far: &[i16], near: &[i16], out: &mut [i16]) {
        let n = far.len().min(near.len()).min(out.len());
        for i in 0..n {
            out[i] = self.process_sample(far[i], near[i]);
        }
    }

    /// [`Self::process`] for one sample: `far` (Rin) and `near` (Sin) in,
    /// Sout out (for callers that work sample by sample).
    ///
    /// Only what the output needs runs here: the foreground (head
    /// convolution plus the tail from the block FFT), the short filter
    /// while it runs, and the controller's fast powers, double talk and
    /// NLP. The block sums (window energies, the far-activity sum, the
    /// controller's slow powers) are vector passes at the end of the block
    /// over the samples kept in `x_buf`, `d_buf`, `e_fg`, `e_s` and `y_out`.
    #[inline]
    pub fn process_sample(&mut self, far: i16, near: i16) -> i16 {
        let x = f32::from(far);
        let d = f32::from(near);
        self.ctl.input_peak(x);

        if self.pos == self.hist.len() {
            let start = self.pos - self.taps - HIST_PAD;
            self.hist.copy_within(start.., 0);
            if self.pre {
                self.hist_w.copy_within(start.., 0);
            }
            self.pos = self.taps + HIST_PAD;
        }
        self.hist[self.pos] = x;
        if self.pre {
            self.hist_w[self.pos] = x - self.pre_c * self.x_last;
            self.x_last = x;
        }
        self.pos += 1;
        let i = self.fill;
        self.x_buf[BLOCK + i] = x;
        self.d_buf[i] = d;
        self.d_ring[self.d_pos % D_RING] = d;
        self.d_pos = self.d_pos.wrapping_add(1);

        // Foreground: partitions 1.. from the block FFT, partition 0 here.
        let win = &self.hist[self.pos - BLOCK..self.pos].as_chunks::<BLOCK>().0[0];
        let y_fg = self.tail[i] + simd::dot(self.avx2, &self.head, win);
        let e_fg = d - y_fg;
        self.e_fg[i] = e_fg;
        // The output: the foreground, or the short filter (at the bulk
        // delay) while it does better: it converges first on a fresh or
        // changed echo path. Not run while idle.
        let (y_out, e_out) = if self.sh.idle {
            (y_fg, e_fg)
        } else {
            self.short_sample(d, y_fg, e_fg)
        };
        self.y_out[i] = y_out;
        self.e_out[i] = e_out;

        let f = self.ctl.observe_fast(x, d, y_out, e_out);
        self.blk_hold |= f.dt;
        self.blk_suspect |= f.suspect;
        self.blk_quiet |= !f.far_active;

        if !self.sh.idle {
            self.adapt_short(f);
        }
        self.d_last = d;

        self.fill += 1;
        if self.fill == BLOCK {
            self.fill = 0;
            self.ctl.input_tones(&self.x_buf[BLOCK..], &self.d_buf);
            self.end_block();
        }

        self.ctl.output(near, e_out, f)
    }

    /// The short filter's output for the newest sample (kept in `e_s`, its
    /// step normaliser in `sh_n2`), and the output pair `(y, e)` to use.
    fn short_sample(&mut self, d: f32, y_fg: f32, e_fg: f32) -> (f32, f32) {
        let end = self.pos - self.sh.off;
        let xs = &self.hist[end - SHORT..end];
        let (y_s, n2) = simd::short_filter(self.avx2, &self.sh.w, &self.sh.g, xs);
        let e_s = d - y_s;
        self.e_s[self.fill] = e_s;
        self.sh_n2 = n2;
        self.sh_ew = e_s;
        if self.pre {
            // The error of the same taps on the pre-emphasised signals
            // (the filter is linear: pre-emphasised echo in, pre-emphasised
            // estimate out), and the step normaliser on them.
            let xw = &self.hist_w[end - SHORT..end];
            let (y_w, n2w) = simd::short_filter(self.avx2, &self.sh.w, &self.sh.g, xw);
            self.sh_ew = d - self.pre_c * self.d_last - y_w;
            self.sh_n2 = n2w;
        }
        if APA_ORDER > 1 && self.sh.first && self.pre {
            self.apa_slide();
        }
        if self.use_short {
            (y_s, e_s)
        } else {
            (y_fg, e_fg)
        }
    }

    /// One proportionate NLMS step of the short filter on the newest sample.
    fn adapt_short(&mut self, f: Flags) {
        if !self.adapt || !f.far_active || f.dt || self.ctl.is_tone_disabled() {
            return;
        }
        let e_s = self.e_s[self.fill];
        self.sh.p_e += (e_s * e_s - self.sh.p_e) * (1.0 / 64.0);
        let mu_max = if self.sh.first {
            SH_MU_FIRST
        } else {
            SH_MU_MAX
        };
        let mut mu = (mu_max * (1.0 - (self.ctl.noise / self.sh.p_e.max(1e-3)).sqrt()))
            .clamp(SH_MU_MIN, mu_max);
        if f.suspect {
            mu = mu.min(MU_SUSPECT);
        }
        let delta = SHORT as f32 * self.reg;
        let end = self.pos - self.sh.off;
        let hist = if self.pre { &self.hist_w } else { &self.hist };
        let p = APA_ORDER;
        if p > 1 && self.sh.first && self.pre {
            // Affine projection: b = mu (R + delta I)^-1 e, w += G X b;
            // the errors left on the last p samples are then e - R b.
            let sh = &mut self.sh;
            let mut b = [0f32; APA_MAX];
            match solve_spd(&sh.r, p, delta, &sh.e) {
                Some(a) => {
                    for (bk, ak) in b.iter_mut().zip(&a) {
                        *bk = mu * *ak as f32;
                    }
                }
                None => b[0] = mu * sh.e[0] / (sh.r[0][0] + delta),
            }
            let xs = &hist[end - SHORT - (p - 1)..end];
            simd::apa_update(self.avx2, p, &mut sh.w, &sh.g, xs, &b);
            let e = sh.e;
            for (i, ei) in sh.e[..p].iter_mut().enumerate() {
                let rb: f32 = (0..p).map(|j| sh.r[i][j] * b[j]).sum();
                *ei = e[i] - rb;
            }
            return;
        }
        let c = mu * self.sh_ew / (self.sh_n2 + delta);
        let xs = &hist[end - SHORT..end];
        simd::short_update(self.avx2, &mut self.sh.w, &self.sh.g, xs, c);
    }

    /// The affine projection's correlation and error vector for the newest
    /// sample: the rows shift by one and the newest is computed (one pass
    /// over the window), the errors left on the older samples shift in
    /// behind the newest a priori error. After a change of the gains, the
    /// taps, the window or the pre-emphasis (`dirty`) both are recomputed
    /// from the history.
    fn apa_slide(&mut self) {
        let p = APA_ORDER;
        let end = self.pos - self.sh.off;
        let hist = if self.pre { &self.hist_w } else { &self.hist };
        let sh = &mut self.sh;
        if sh.dirty {
            sh.dirty = false;
            for k in 0..p {
                let xs = &hist[end - k - SHORT - (p - 1)..end - k];
                let row = simd::apa_row(self.avx2, p, &sh.g, xs);
                for (j, &v) in row[..p - k].iter().enumerate() {
                    sh.r[k][k + j] = v;
                    sh.r[k + j][k] = v;
                }
            }
            for k in 1..p {
                let xs = &hist[end - k - SHORT..end - k];
                let (y, _) = simd::short_filter(self.avx2, &sh.w, &sh.g, xs);
                let at = |j: usize| self.d_ring[self.d_pos.wrapping_sub(1 + j) % D_RING];
                let d = if self.pre {
                    at(k) - self.pre_c * at(k + 1)
                } else {
                    at(k)
                };
                sh.e[k] = d - y;
            }
        } else {
            for i in (1..p).rev() {
                for j in (1..p).rev() {
                    sh.r[i][j] = sh.r[i - 1][j - 1];
                }
                sh.e[i] = sh.e[i - 1];
            }
            let xs = &hist[end - SHORT - (p - 1)..end];
            let row = simd::apa_row(self.avx2, p, &sh.g, xs);
            for (j, &v) in row[..p].iter().enumerate() {
                sh.r[0][j] = v;
                sh.r[j][0] = v;
            }
        }
        sh.e[0] = self.sh_ew;
    }

    /// The block's sums, once per block: far activity, the comparison
    /// windows' energies, the controller's slow powers.
    fn block_sums(&mut self) {
        let sq = |v: &[f32; BLOCK]| simd::dot(self.avx2, v, v);
        let x2 = sq(&self.x_buf[BLOCK..].as_chunks::<BLOCK>().0[0]);
        let d2 = sq(&self.d_buf);
        let e2 = sq(&self.e_fg);
        self.blk_far = x2;
        self.fg_win += e2;
        self.d_win += d2;
        self.blk_d = d2;
        if !self.sh.idle {
            self.sh.win += sq(&self.e_s);
        }
        let flags = Flags {
            far_active: !self.blk_quiet,
            dt: self.blk_hold,
            suspect: self.blk_suspect,
        };
        self.cmp.add_fg(e2, flags);
        let y2 = sq(&self.y_out);
        let eo2 = if self.use_short { sq(&self.e_out) } else { e2 };
        self.ctl.slow_block(BLOCK, x2, d2, y2, eo2);
    }

    /// Ring slot of the far spectrum `p` blocks before the newest.
    fn slot(&self, p: usize) -> std::ops::Range<usize> {
        // `(x_cur - p) mod parts` without a division (p < parts).
        let s = if p <= self.x_cur {
            self.x_cur - p
        } else {
            self.x_cur + self.parts - p
        };
        s * BINS..(s + 1) * BINS
    }

    /// Once per block: new far spectrum, background output and error,
    /// adaptation, filter comparison, foreground tail for the next block.
    fn end_block(&mut self) {
        let parts = self.parts;
        self.blocks += 1;
        self.block_sums();
        // Latched: the pre-emphasised short filter and the background's
        // first-convergence step only serve the first convergence (see
        // [`PRE_FORGET`], [`FIRST_ALPHA`]).
        self.pre &= !self.ctl.has_converged();
        if self.pre && !self.sh.idle {
            self.update_pre_emphasis();
        }

        // Far spectrum of [previous block, this block].
        self.fft.time.copy_from_slice(&self.x_buf);
        self.x_buf.copy_within(BLOCK.., 0);
        self.x_cur = (self.x_cur + 1) % parts;
        let cur = self.slot(0);
        self.fft.forward(&mut self.x_ring[cur.clone()]);
        // The delay estimator's whitened copy only while the short filter
        // runs (its only user).
        let white = !self.sh.idle;
        let delta = FFT as f32 * REGULARISE;
        for ((((ps, x), r), q), xw) in self
            .psd
            .iter_mut()
            .zip(&self.x_ring[cur.clone()])
            .zip(&mut self.psd_ring[cur.clone()])
            .zip(&mut self.x2_ring[cur.clone()])
            .zip(&mut self.xw_ring[cur])
        {
            let x2 = x.norm_sqr();
            let a = if x2 > *ps { PSD_ATTACK } else { PSD_SMOOTH };
            *ps += a * (x2 - *ps);
            *r = *ps;
            *q = x2;
            if white {
                *xw = x * (1.0 / (*ps + delta).sqrt());
            }
        }

        // Background output for this block (overlap-save: last half).
        // Ring offset of the far spectrum each partition multiplies.
        let mut offs = [0usize; MAX_PARTS];
        let mut w_offs = [0usize; MAX_PARTS];
        for (p, (o, w)) in offs[..parts].iter_mut().zip(&mut w_offs).enumerate() {
            *o = self.slot(p).start;
            *w = p * BINS;
        }
        simd::cmac_parts(
            self.avx2,
            &mut self.spec,
            &self.w_bg[..parts * BINS],
            &w_offs[..parts],
            &self.x_ring,
            &offs[..parts],
        );
        self.fft.inverse(&mut self.spec);
        let mut e_bg = [0f32; BLOCK];
        let mut cmp_bg = 0.0;
        for ((e, &d), &y) in e_bg
            .iter_mut()
            .zip(&self.d_buf)
            .zip(&self.fft.time[BLOCK..])
        {
            *e = d - y * (1.0 / FFT as f32);
            cmp_bg += *e * *e;
        }
        self.cmp.add_bg(cmp_bg);
        self.bg_win += cmp_bg;
        self.win_dt |= self.blk_hold;
        self.win_suspect |= self.blk_suspect;
        if !self.sh.idle {
            self.sh.update_gains();
        }
        // New gains, window or pre-emphasis (each at most once a block).
        self.sh.dirty = true;

        let far_active = self.blk_far > BLOCK as f32 * FAR_ACTIVE_POWER;
        self.win_quiet |= !far_active;
        if far_active && !self.blk_hold {
            self.sm_d += 0.1 * (self.blk_d - self.sm_d);
            self.sm_e += 0.1 * (cmp_bg - self.sm_e);
        }
        // Held through double talk and its suspicion: near speech is
        // neither echo nor noise.
        if far_active && !self.blk_hold && !self.blk_suspect {
            self.reg = regularisation(self.ctl.slow_far, self.ctl.slow_d, self.ctl.noise);
        }
        if self.adapt && far_active && !self.blk_hold && !self.is_tone_disabled() {
            if !self.sh.idle {
                self.update_xcorr();
            }
            // Large while the foreground removes little, small once it
            // removes a lot (ratio of residual to near power).
            // Share of the residual that is echo rather than near noise.
            // Non-parametric VSS-NLMS (Benesty et al.): the step is the
            // share of the block error's amplitude that is not background
            // noise, so it is large while the residual echo dominates and
            // falls towards MU_MIN as the residual reaches the noise floor.
            let pe = cmp_bg / BLOCK as f32;
            let mu_max = if self.pre { FIRST_MU_MAX } else { MU_MAX };
            let mut mu =
                (mu_max * (1.0 - (self.ctl.noise / pe.max(1e-3)).sqrt())).clamp(MU_MIN, mu_max);
            if self.blk_suspect {
                mu = mu.min(MU_SUSPECT);
            }
            self.adapt_bg(&e_bg, mu);
        }
        // Keep one partition's update to BLOCK taps (gradient constraint),
        // in turn. Partition 0 is also constrained every other block while it
        // holds more than its share of the echo: its unconstrained half
        // stands for negative lags (far samples after the near one), which
        // speech correlates with an echo at the start of the tail; left to
        // grow between turns they cap the ERLE of a path without bulk
        // delay. The strongest partition after 0 (where the echo sits
        // after a bulk delay, or its second half without one) is also
        // constrained every other block: its unconstrained half stands for
        // the lags of the partition before it, a second copy of the echo's
        // taps of which speech excites one combination at a time, and it
        // drifted between turns (ERL-25 steady ERLE +0.3 dB mean with the
        // step floor below; one constraint per two blocks, ~1.4 % more
        // instructions per sample).
        let c = (self.blocks % parts as u64) as usize;
        self.constrain(c);
        if self.blocks.is_multiple_of(2) {
            if c != 0 && self.prop[0] * parts as f32 > 1.0 {
                self.constrain(0);
            }
            let m = self.strongest_bg();
            if m != c {
                self.constrain(m);
            }
        }
        self.update_prop();
        if self.sm_e * LEAK_GATE < self.sm_d {
            self.leak_outside_echo();
        }

        self.cmp_n += 1;
        if self.cmp_n == CMP_BLOCKS {
            self.cmp_n = 0;
            // Until the foreground first removes 20 dB, a better background
            // is copied after one window, far silence or not: there is
            // little to protect yet, and waiting for two windows of
            // unbroken far speech holds the output back while converging.
            self.cmp.eager = !self.ctl.has_converged();
            match self.cmp.close(&mut self.ctl.stats) {
                Verdict::Keep => self.average_into_fg(),
                Verdict::CopyToForeground => self.copy_bg_to_fg(),
                Verdict::ResetBackground => {
                    self.w_bg.copy_from_slice(&self.w_fg);
                    // The foreground is the average once converged: it
                    // keeps its weight (a restart would hand the output
                    // to the next few backgrounds after double talk).
                    self.w_avg.copy_from_slice(&self.w_fg);
                    self.bg_en = self.fg_en;
                    self.update_prop();
                }
            }
            self.close_short_window();
        }

        // Foreground partitions 1.. for the next block: partition p needs
        // the far spectrum p - 1 blocks before the newest. Only those that
        // hold echo (see [`FG_SILENT`]).
        let n = self.fg_live_n;
        for ((o, w), &p) in offs.iter_mut().zip(&mut w_offs).zip(&self.fg_live[..n]) {
            *o = self.slot(p - 1).start;
            *w = p * BINS;
        }
        simd::cmac_parts(
            self.avx2,
            &mut self.spec,
            &self.w_fg[..parts * BINS],
            &w_offs[..n],
            &self.x_ring,
            &offs[..n],
        );
        self.fft.inverse(&mut self.spec);
        for (t, &y) in self.tail.iter_mut().zip(&self.fft.time[BLOCK..]) {
            *t = y * (1.0 / FFT as f32);
        }
        self.blk_hold = false;
        self.blk_suspect = false;
        self.blk_quiet = false;
        if self.pre && !self.sh.idle {
            self.pre_emphasise_window();
        }
    }

    /// The pre-emphasis coefficient from this block's far samples (lags 0
    /// and 1 of the autocorrelation, smoothed by [`PRE_FORGET`] per block,
    /// the lag-1 products reaching into the previous block): the first-order
    /// predictor of the far speech of the last ~0.1 s.
    fn update_pre_emphasis(&mut self) {
        let x = &self.x_buf;
        for (k, r) in self.pre_r.iter_mut().enumerate() {
            let mut s = 0f64;
            for n in BLOCK..FFT {
                s += f64::from(x[n]) * f64::from(x[n - k]);
            }
            *r = f64::from(PRE_FORGET) * *r + s;
        }
        // A slight white-noise floor keeps the predictor below 1.
        let c = self.pre_r[1] / (self.pre_r[0] * 1.0001 + 1e3);
        if c.abs() < 1.0 {
            self.pre_c = c as f32;
        }
    }

    /// The far samples the short filter's window covers over the next
    /// block, pre-emphasised again with the current coefficient: the near
    /// sample is pre-emphasised with it, and the identity the filter relies
    /// on (the pre-emphasised echo is the echo path on the pre-emphasised
    /// far signal) holds only if both sides use the same filter. Leaving
    /// each far sample with the coefficient of its own time put the near
    /// side 50-100 ms of coefficient changes away from the far samples at
    /// the echo's lag, and the short filter converged slower than with a
    /// fixed pre-emphasis.
    fn pre_emphasise_window(&mut self) {
        let reach = SHORT + 2 * (APA_ORDER - 1);
        let lo = (self.pos + 1).saturating_sub(self.sh.off + reach).max(1);
        let hi = (self.pos + BLOCK).saturating_sub(self.sh.off).min(self.pos);
        for n in lo..hi {
            self.hist_w[n] = self.hist[n] - self.pre_c * self.hist[n - 1];
        }
    }

    /// End of a comparison window for the short filter: pick the output
    /// (foreground or short filter), seed the background with the short
    /// filter when it had the lower error, and move a short filter that
    /// removes nothing to where the delay estimator puts the echo.
    fn close_short_window(&mut self) {
        let speech = self.echo_window();
        if self.sh.idle {
            // Wake on a sign that the foreground went stale: the energy
            // check's suspicion, or a window of far speech it removes
            // less than 6 dB of.
            let stale = speech && self.fg_win > SHORT_STUCK * self.d_win;
            if stale {
                self.sh.idle = false;
                self.sh.sum_fg = 0.0;
                self.sh.sum_sh = 0.0;
                self.sh.sum_d = 0.0;
                self.sh.n_win = 0;
            }
            self.clear_windows();
            return;
        }
        // Idle once, over about half a second of windows with echo, the
        // foreground's error summed is no longer clearly above the short
        // filter's (it would not hand the output over on the sums): the
        // short filter only helps while the block filter converges, and
        // taking the output window by window on a noisy lead costs ERLE.
        if speech {
            self.sh.sum_fg += self.fg_win;
            self.sh.sum_sh += self.sh.win;
            self.sh.sum_d += self.d_win;
            self.sh.n_win += 1;
            if self.sh.n_win >= IDLE_WINDOWS {
                // The foreground must remove the 6 dB whose absence in a
                // window wakes the short filter again (no ping-pong); a
                // fixed ERLE such as "converged" would keep the short
                // filter running for good where the echo is not that far
                // above the noise.
                // After [`IDLE_AFTER`] such sums running in which the
                // foreground removes its 6 dB, it idles even where it is
                // still the better (a long dense tail: its 24 ms window
                // beats the block filter's misadjustment by a few dB): it
                // is there to bring the echo down fast, and running it for
                // good would cost a third more per sample.
                let fg_ok = self.sh.sum_fg < SHORT_STUCK * self.sh.sum_d;
                self.sh.fg_ok = if fg_ok { self.sh.fg_ok + 1 } else { 0 };
                let idle = fg_ok
                    && (self.sh.sum_sh >= SELECT_MARGIN * self.sh.sum_fg
                        || self.sh.fg_ok >= IDLE_AFTER);
                self.sh.sum_fg = 0.0;
                self.sh.sum_sh = 0.0;
                self.sh.sum_d = 0.0;
                self.sh.n_win = 0;
                if idle {
                    // An idle short filter outputs nothing: it must not
                    // be selected below.
                    self.sh.idle = true;
                    self.sh.first = false;
                    self.use_short = false;
                    self.clear_windows();
                    return;
                }
            }
        }
        // While the energy check suspects double talk the short filter
        // must do far better (it may be fitting near speech).
        let (margin, seed_margin) = if self.win_suspect {
            (MU_SUSPECT_MARGIN, MU_SUSPECT_MARGIN)
        } else {
            (SELECT_MARGIN, SEED_MARGIN)
        };
        if !self.win_dt {
            if self.sh.win < margin * self.fg_win {
                self.use_short = true;
            } else if self.fg_win < self.sh.win {
                self.use_short = false;
            }
        }
        // Seeding needs the short filter to have found the echo (6 dB
        // removed): one off the echo can still beat a background that
        // overshoots at a loud onset, and would wipe out its progress.
        // And it must hold the echo down to the noise, or remove 17 dB
        // ([`SEED_HELD`]): one whose window cannot hold the path only
        // resets the background's progress on it.
        let held = (SEED_HELD * self.ctl.noise * (CMP_BLOCKS * BLOCK) as f32)
            .max(SEED_HELD_ERLE * self.d_win);
        let better = !self.win_dt
            && self.sh.win < seed_margin * self.bg_win
            && self.sh.win < SEED_FOUND * self.d_win
            && self.sh.win < held;
        if better {
            // Far better: the background outside the window is mostly
            // noise picked up while converging, so it goes.
            let whole = self.sh.win < SEED_WHOLE * self.bg_win;
            self.seed_bg_from_short(whole);
            if whole && self.sh.win < margin * self.fg_win {
                self.ctl.stats.fg_updates += 1;
                self.copy_bg_to_fg();
            }
        }
        // A short filter that removes echo stays where it is; one that does
        // not (over a window of far speech) goes where the delay estimator
        // puts the echo.
        // One that has found the echo since it last moved must miss it for
        // [`STUCK_WINDOWS`] windows running: one window over a sound whose
        // band the filter has not learnt yet is no sign that it is off.
        if speech {
            if self.sh.win > SHORT_STUCK * self.d_win {
                self.sh.stuck += 1;
            } else {
                self.sh.stuck = 0;
                self.sh.found = true;
            }
        }
        let need = if self.sh.found { STUCK_WINDOWS } else { 1 };
        let stuck = speech && self.sh.stuck >= need;
        self.clear_windows();
        // One that removes echo follows its own taps: when its largest tap
        // sits at an edge of the window the echo runs on beyond it (it was
        // placed on a nearby estimate), so the window recentres on that tap.
        if self.sh.found && !stuck {
            let k = self.sh.peak_tap();
            if !self.sh.covers(self.sh.off + k) {
                // A confident delay estimate overrules the filter's own
                // tap: on voiced speech a short filter off the echo (or
                // beside it) removes some echo by predicting it from the far
                // speech a pitch period or two away, and its largest tap
                // then says nothing about where the echo is.
                let peak = match self.echo_peak() {
                    Some(est) if self.sh.covers(est) => return,
                    Some(est) => est,
                    None => self.sh.off + k,
                };
                let want = peak.saturating_sub(SHORT_PRE).min(self.taps - SHORT);
                if want != self.sh.off {
                    self.sh.move_to(want);
                    self.sh.stuck = 0;
                }
            }
            return;
        }
        if !stuck && self.sh.placed {
            return;
        }
        if let Some(peak) = self.echo_peak() {
            if !self.sh.covers(peak) {
                self.sh.placed = true;
                let want = peak.saturating_sub(SHORT_PRE).min(self.taps - SHORT);
                self.sh.move_to(want);
                self.sh.found = false;
                self.sh.stuck = 0;
            }
        }
    }

    /// The comparison window just ended held far speech without double
    /// talk and echo well above the noise ([`ECHO_OVER_NOISE`]): only such
    /// a window says whether a filter removes echo.
    fn echo_window(&self) -> bool {
        let n = (CMP_BLOCKS * BLOCK) as f32;
        !self.win_dt && !self.win_quiet && self.d_win > ECHO_OVER_NOISE * self.ctl.noise * n
    }

    /// Start the next comparison window.
    fn clear_windows(&mut self) {
        self.sh.win = 0.0;
        self.fg_win = 0.0;
        self.bg_win = 0.0;
        self.d_win = 0.0;
        self.win_quiet = false;
        self.win_dt = false;
        self.win_suspect = false;
    }

    /// One block of the delay estimator: `R_p = l R_p + conj(Xw_p) Dw`, a
    /// cross-correlation whose lags are the partitions' taps, with both
    /// sides whitened bin by bin by their own smoothed power (`Xw_p` the
    /// far spectrum `p` blocks back over the square root of its power then,
    /// `Dw` the near block's likewise: the SCOT weighting of a generalised
    /// cross-correlation). The near block is Hann-windowed inside its
    /// zero-padded frame: whitening a frame with hard edges spreads those
    /// edges over all lags, which put false peaks at the first and last lag
    /// of every partition.
    fn update_xcorr(&mut self) {
        for r in self.xcorr.iter_mut() {
            *r *= XCORR_FORGET;
        }
        self.fft.time[..BLOCK].fill(0.0);
        for ((t, &d), &w) in self.fft.time[BLOCK..]
            .iter_mut()
            .zip(&self.d_buf)
            .zip(&HANN)
        {
            *t = d * w;
        }
        let mut g = [ZERO; BINS];
        self.fft.forward(&mut g);
        let delta = FFT as f32 * REGULARISE;
        for (v, pd) in g.iter_mut().zip(self.psd_d.iter_mut()) {
            let d2 = v.norm_sqr();
            let a = if d2 > *pd { PSD_ATTACK } else { PSD_SMOOTH };
            *pd += a * (d2 - *pd);
            *v *= 1.0 / (*pd + delta).sqrt();
        }
        for p in 0..self.parts {
            let r = self.slot(p);
            simd::conj_update(
                self.avx2,
                &mut self.xcorr[p * BINS..(p + 1) * BINS],
                &self.xw_ring[r],
                &g,
                1.0,
            );
        }
    }

    /// Tap of the cross-correlation's peak over the whole tail (an inverse
    /// FFT per partition, only while the short filter looks for the echo).
    /// None until the peak's square stands [`XCORR_PEAK`] times above the
    /// mean square of all lags. Picking the strongest partition by energy
    /// first (cheaper) chose wrongly too often: a partition's spectrum also
    /// holds its invalid half, and after whitening the energy is spread.
    fn echo_peak(&mut self) -> Option<usize> {
        let mut best = (0, 0f32);
        let mut ss = 0f32;
        for p in 0..self.parts {
            self.spec
                .copy_from_slice(&self.xcorr[p * BINS..(p + 1) * BINS]);
            self.fft.inverse(&mut self.spec);
            for (k, v) in self.fft.time[..BLOCK].iter().enumerate() {
                ss += v * v;
                if v.abs() > best.1 {
                    best = (p * BLOCK + k, v.abs());
                }
            }
        }
        let mean = ss / self.taps as f32;
        (best.1 * best.1 > XCORR_PEAK * mean).then_some(best.0)
    }

    /// Background taps inside the short filter's window := the short
    /// filter's (the rest of the background is kept).
    fn seed_bg_from_short(&mut self, whole: bool) {
        let lo = self.sh.off;
        let hi = lo + SHORT;
        let (p_lo, p_hi) = (lo / BLOCK, (hi - 1) / BLOCK);
        if whole {
            for p in (0..self.parts).filter(|p| !(p_lo..=p_hi).contains(p)) {
                self.w_bg[p * BINS..(p + 1) * BINS].fill(ZERO);
            }
        }
        for p in p_lo..=p_hi {
            self.spec
                .copy_from_slice(&self.w_bg[p * BINS..(p + 1) * BINS]);
            self.fft.inverse(&mut self.spec);
            for (k, t) in self.fft.time[..BLOCK].iter_mut().enumerate() {
                *t = match self.sh.tap(p * BLOCK + k) {
                    Some(v) => v,
                    None if whole => 0.0,
                    None => *t * (1.0 / FFT as f32),
                };
            }
            self.fft.time[BLOCK..].fill(0.0);
            self.fft.forward(&mut self.w_bg[p * BINS..(p + 1) * BINS]);
        }
        for (p, e) in self.bg_en[..self.parts].iter_mut().enumerate() {
            *e = energy(self.avx2, &self.w_bg[p * BINS..(p + 1) * BINS]);
        }
        self.update_prop();
    }

    /// The background partition of most energy after partition 0.
    fn strongest_bg(&self) -> usize {
        let en = &self.bg_en[..self.parts];
        (1..self.parts).fold(1, |a, p| if en[p] > en[a] { p } else { a })
    }

    /// Background partition `c` := its first BLOCK taps (the rest zeroed).
    /// Its BLOCK taps stay in `self.fft.time` (see [`Self::spec_to_taps`]).
    fn constrain(&mut self, c: usize) {
        self.spec
            .copy_from_slice(&self.w_bg[c * BINS..(c + 1) * BINS]);
        self.spec_to_taps();
        self.fft.forward(&mut self.w_bg[c * BINS..(c + 1) * BINS]);
        self.bg_en[c] = energy(self.avx2, &self.w_bg[c * BINS..(c + 1) * BINS]);
    }

    /// The partition spectrum in `self.spec` as its first BLOCK taps in
    /// `self.fft.time`, the rest zeroed (forward transforms read it and
    /// leave it as it is).
    fn spec_to_taps(&mut self) {
        self.fft.inverse(&mut self.spec);
        for t in self.fft.time[..BLOCK].iter_mut() {
            *t *= 1.0 / FFT as f32;
        }
        self.fft.time[BLOCK..].fill(0.0);
    }

    /// The taps in `self.fft.time` as the foreground's zero-delay head.
    fn head_from_taps(&mut self) {
        for (k, &t) in self.fft.time[..BLOCK].iter().enumerate() {
            self.head[BLOCK - 1 - k] = t;
        }
    }

    /// One PBFDAF step on the background from this block's error.
    fn adapt_bg(&mut self, e: &[f32; BLOCK], mu: f32) {
        self.fft.time[..BLOCK].fill(0.0);
        self.fft.time[BLOCK..].copy_from_slice(e);
        self.fft.forward(&mut self.spec);
        // Per-bin normalised error: 2 mu E / (sum_p prop_p |X_p|^2 + delta),
        // the frequency-domain form of the IPNLMS normaliser x' G x: the
        // blocks that feed the partitions holding the echo set the step,
        // so a loud block 100 ms back is not updated against the power of
        // a quiet current one. Until the first convergence the far power is
        // each block's own (`x2_ring`, the exact x'Gx), after it smoothed
        // (`psd_ring`, see [`PSD_SMOOTH`] and [`FIRST_ALPHA`]).
        let delta = FFT as f32 * self.reg;
        let ring = if self.pre {
            &self.x2_ring
        } else {
            &self.psd_ring
        };
        let mut nrm = [0f32; BINS];
        for p in 0..self.parts {
            let r = self.slot(p);
            let s = self.prop[p];
            for (a, x) in nrm.iter_mut().zip(&ring[r]) {
                *a += s * x;
            }
        }
        for (g, &pk) in self.spec.iter_mut().zip(&nrm) {
            *g *= 2.0 * mu / (pk + delta);
        }
        for p in 0..self.parts {
            let r = self.slot(p);
            let s = self.prop[p];
            self.bg_en[p] = simd::conj_update_energy(
                self.avx2,
                &mut self.w_bg[p * BINS..(p + 1) * BINS],
                &self.x_ring[r],
                &self.spec,
                s,
            );
        }
    }

    /// Step shares: part uniform, part in proportion to each partition's
    /// RMS weight (IPNLMS across partitions), from the partition energies
    /// in `bg_en`: the update returns them, and whatever else changes a
    /// partition (constraint, leak, copies, seeding) updates its entry, so
    /// no pass over all partitions is needed here.
    fn update_prop(&mut self) {
        let alpha = if self.pre { FIRST_ALPHA } else { 0.0 };
        let mut total = 0.0;
        for (pr, &e) in self.prop.iter_mut().zip(&self.bg_en) {
            *pr = e.sqrt();
            total += *pr;
        }
        let m = self.parts as f32;
        if total <= 1e-6 {
            self.prop.fill(1.0 / m);
            return;
        }
        let uniform = (1.0 - alpha) / (2.0 * m);
        let k = (1.0 + alpha) / (2.0 * total);
        for pr in self.prop.iter_mut() {
            *pr = uniform + k * *pr;
        }
    }

    /// Shrink the background partitions that are away from the echo: those
    /// neither next to the foreground's strongest partition (one before, two
    /// after: a hybrid's dispersion fits there) nor within [`LEAK_BELOW`] of
    /// its energy. While the filter converges every partition picks up noise
    /// from the large error, and the proportionate step leaves that noise in
    /// the quiet partitions for a long time: it then sets the ERLE ceiling.
    /// The foreground (validated by its lower error) names the echo region,
    /// so a background that wanders cannot leak the true echo away.
    fn leak_outside_echo(&mut self) {
        let en = &self.fg_en[..self.parts];
        let (m, top) = en
            .iter()
            .enumerate()
            .fold((0, 0f32), |a, (i, &e)| if e > a.1 { (i, e) } else { a });
        if top <= 0.0 {
            return;
        }
        // The echo runs on from its strongest partition while the energy
        // keeps falling: a hybrid's tail, or a dense one decaying over tens
        // of ms, falls partition after partition, while the noise that
        // partitions pick up while converging has no such order.
        let mut end = m;
        while end + 1 < en.len() && en[end + 1] < en[end] {
            end += 1;
        }
        let end = end.max(m + 2);
        for (p, &e) in en.iter().enumerate() {
            let near_echo = p + 1 >= m && p <= end;
            if !near_echo && e < LEAK_BELOW * top {
                for w in &mut self.w_bg[p * BINS..(p + 1) * BINS] {
                    *w *= 1.0 - LEAK;
                }
                self.bg_en[p] *= (1.0 - LEAK) * (1.0 - LEAK);
            }
        }
    }

    /// Foreground := background, with partition 0 constrained to BLOCK taps
    /// (in both) and kept in the time domain for the zero-delay head.
    fn copy_bg_to_fg(&mut self) {
        self.constrain(0);
        self.head_from_taps();
        self.w_fg.copy_from_slice(&self.w_bg);
        self.w_avg.copy_from_slice(&self.w_bg);
        self.avg_n = 1;
        self.fg_en = self.bg_en;
        self.update_fg_live();
    }

    /// The foreground partitions after 0 that its tail convolves: all but
    /// those under both limits of [`FG_SILENT`].
    fn update_fg_live(&mut self) {
        let en = &self.fg_en[..self.parts];
        let top = en.iter().fold(0f32, |a, &e| a.max(e));
        // A partition's output power, from its spectrum's energy (half a
        // 2*BLOCK-point spectrum: BLOCK times its taps' energy) and the far
        // power, against the near noise.
        let audible = FG_UNDER_NOISE * self.ctl.noise * BLOCK as f32 / self.ctl.slow_far.max(1.0);
        self.fg_live_n = 0;
        for (p, &e) in en.iter().enumerate().skip(1) {
            if e > FG_SILENT * top || e > audible {
                self.fg_live[self.fg_live_n] = p;
                self.fg_live_n += 1;
            }
        }
    }

    /// Once converged, the foreground is the background averaged over the
    /// windows of echo in which the background did not do clearly worse:
    /// at steady state the background's taps wander around the echo path
    /// by the gradient noise of its step (near noise times the step), and
    /// their average does not, while the background keeps its step and so
    /// its speed on the modes speech excites one sound at a time. The
    /// comparison still hands the output to a background that does better
    /// (it converges, or the path changed), which restarts the average.
    fn average_into_fg(&mut self) {
        if !self.ctl.has_converged()
            || !self.echo_window()
            || self.win_suspect
            || self.bg_win > AVG_BG_WORSE * self.fg_win
        {
            return;
        }
        let parts = self.parts;
        self.avg_n += 1;
        let rate = 1.0 / self.avg_n.min(AVG_WINDOWS) as f32;
        for (a, &b) in self.w_avg[..parts * BINS].iter_mut().zip(&self.w_bg) {
            *a += rate * (b - *a);
        }
        // Partition 0 goes through the time domain (the zero-delay head)
        // constrained to BLOCK taps, as in `copy_bg_to_fg`.
        self.spec.copy_from_slice(&self.w_avg[..BINS]);
        self.spec_to_taps();
        self.head_from_taps();
        self.fft.forward(&mut self.w_fg[..BINS]);
        self.w_fg[BINS..parts * BINS].copy_from_slice(&self.w_avg[BINS..parts * BINS]);
        for p in 0..parts {
            self.fg_en[p] = energy(self.avx2, &self.w_fg[p * BINS..(p + 1) * BINS]);
        }
        self.update_fg_live();
    }
}

/// Taps of the short time-domain filter (24 ms: a hybrid's dispersion with
/// room for the peak estimate to be off).
const SHORT: usize = 192;
/// Taps the short filter's window keeps before the echo peak, and the
/// fewest after it before the window moves.
const SHORT_PRE: usize = 32;
const SHORT_POST: usize = 96;
/// Pre-emphasis `1 - c z^-1` of the far and near signals on which the short
/// filter adapts until the foreground first removes 20 dB. Speech has most
/// of its power below 1 kHz, and NLMS on it converges along that band first
/// and the rest slowly: on some paths drawn with 4-12 ms dispersion the
/// short filter, placed right at ~0.1 s of speech, still removed only
/// 5-13 dB half a second later, and the row reached 20 dB only after
/// 1.4-1.6 s of speech (the same path with 19 dB less loss did the same:
/// it is the path's response against the speech spectrum, not the echo
/// level or the step regularisation). Adapting on first-order
/// pre-emphasised signals (the estimate is the same filter: it is linear)
/// flattens the spectrum the step sees: mean time to 20 dB over fresh draws
/// 0.47 -> 0.36 s. Kept on longer (until the short filter first idles, or
/// for good) it cost 1-4 dB of mean steady-state ERLE and many ERL-25 rows
/// ended under 35 dB (what the short filter seeds into the background
/// stays there; not analysed further), hence only until the 20 dB mark;
/// the output and the block filter are unchanged.
///
/// The coefficient `c` was a fixed 0.9; it is now the far speech's own
/// first-order predictor (lag-1 over lag-0 autocorrelation, smoothed with
/// this forgetting factor per block, ~0.1 s), with the window's far samples
/// pre-emphasised again each block so that far and near go through the
/// same filter. A fuller whitening (order 2-8 Levinson predictors, with or
/// without bandwidth expansion) was tried: it helped the synthetic voice,
/// whose spectrum holds still, but on natural speech it slowed the first
/// convergence (slow rows over 15 draws of two natural-speech configs
/// 3 -> 15-26): equalising the bands spends the step on weak bands whose
/// echo matters little to the ERLE of a frame, while the strong ones are
/// what the 20 dB needs first.
const PRE_FORGET: f32 = 0.9;
/// Comparison windows with echo (about 0.5 s) over which the short filter's
/// error is summed against the foreground's for the idle decision.
const IDLE_WINDOWS: u32 = 20;
/// Idle decisions running in which the foreground removed 6 dB after
/// which the short filter idles whatever its own error (about 2 s of echo).
const IDLE_AFTER: u32 = 4;
/// Near power over the noise floor (12 dB) for a window to count as one
/// with echo: a filter can only be seen to remove 6 dB where there is well
/// over 6 dB of echo above the noise.
const ECHO_OVER_NOISE: f32 = 16.0;
/// Step bounds of the short filter (NLMS, variable as the block filter's).
const SH_MU_MAX: f32 = 0.5;
const SH_MU_MIN: f32 = 0.02;
/// Largest step of the short filter until it first idles (the first
/// convergence): with the pre-emphasis ([`PRE_FORGET`]), mean time to
/// 20 dB over fresh draws ~0.36 -> ~0.33 s. Not after: where double talk
/// slips past the detector, a short filter that wakes with this step fits
/// the near speech and seeds the background with it (a double-talk test
/// row lost 30 dB). Ending it with the pre-emphasis (at 20 dB removed)
/// instead gave back part of the gain: the foreground is far from done at
/// 20 dB.
const SH_MU_FIRST: f32 = 0.8;
/// The short filter takes over the output when its window error is below
/// this share of the foreground's (and hands it back once the foreground's
/// is the lower).
const SELECT_MARGIN: f32 = 0.8;
/// The short filter seeds the background when its window error is below
/// this share of the background's ...
const SEED_MARGIN: f32 = 0.5;
/// ... and of the near signal's (it has found the echo: 6 dB removed).
const SEED_FOUND: f32 = 0.25;
/// A short filter whose window error is above this share of the near
/// signal's over a window of far speech goes to the delay estimate.
const SHORT_STUCK: f32 = 0.25;
/// Below this share the background is replaced by the short filter whole.
const SEED_WHOLE: f32 = 0.25;
/// The short filter seeds the background only once its window error is
/// below this many times the noise floor's energy over the window (its
/// residual echo at most the noise), or [`SEED_HELD_ERLE`] of the near
/// energy: then it holds the echo path. On a path it cannot hold (a dense
/// decay over 24-128 ms, longer than its 24 ms window: it tops out at 5-16
/// dB of ERLE) it still beat the background through the first seconds and
/// seeded it window after window, the whole filter once or twice and then
/// its own window's taps (fitted with the rest of the path missing, so
/// biased), up to four times per 100 ms frame through the first 3 s, each
/// time undoing the background's progress on the path. With
/// [`FIRST_MU_MAX`], mean time to 20 dB over 16 draws of the anchors' kind
/// of dense decay (the first 10 s of `fdaf_long_scenes`' scene with other
/// path and noise seeds): 64 ms 4.0 -> 2.9 s, 128 ms 5.6 -> 4.2 s, 64 ms at
/// ERL 10 4.1 -> 3.8 s, 24 ms 0.9 s both; G.168 d2/d5/d8/d9 over 16 noise
/// draws 0.7/1.8/1.3/0.9 -> 0.7/1.8/1.2/1.0 s. Not seeding at all was as
/// fast on the dense decays, but the talker matrix's ERL-25 rows then ended
/// 3-4 dB lower (the short filter's taps on a path it holds are a better
/// start than the background's own); gating only the seeds of its window
/// and not the whole-filter seed made the matrix's synthetic-voice configs
/// slower (10 and 8 slow rows against 5 and 6).
const SEED_HELD: f32 = 2.0;
/// ... or once it removes 17 dB (window error under this share of the near
/// energy). With the noise rule alone, where the echo stands far above the
/// noise (the G.168 table at its default levels) the seeds waited for good
/// and the background, left to converge alone, ended lower on some ERL-25
/// rows (d3 and d8 without bulk delay: 46.1 -> 40.0 and 36.2 -> 35.0 dB),
/// though the talker matrix had 20 misses (22 before) and the dense 64 ms
/// decay at ERL 10 reached 20 dB after 1.9 s on average; with 20 dB here
/// the matrix had 23 (a 12 ms path at 100 ms bulk delay reached 20 dB
/// after 1.1 s instead of 0.8 s: the seed came a window too late).
const SEED_HELD_ERLE: f32 = 0.02;
/// Windows of far speech running (72 ms) a short filter that has found
/// the echo must remove less than 6 dB in before it moves.
const STUCK_WINDOWS: u32 = 3;
/// Forgetting factor of the delay estimator per block (~0.25 s).
const XCORR_FORGET: f32 = 0.97;
/// The delay estimate counts once its peak lag's square is this many times
/// the mean square over the tail (the first windows of speech give spiky
/// correlations with false peaks 15-50 times the mean; the echo's own stands
/// 40-100 times above once a few windows have gone in).
const XCORR_PEAK: f32 = 30.0;
/// Hann window over a block (the near side of the delay estimator).
const HANN: [f32; BLOCK] = hann();

const fn hann() -> [f32; BLOCK] {
    // cos by its Taylor series (const fn has no float intrinsics): the
    // window only weights the estimator, so a few digits are plenty.
    let mut w = [0f32; BLOCK];
    let mut k = 0;
    while k < BLOCK {
        let x = std::f64::consts::TAU * (k as f64 + 0.5) / BLOCK as f64 - std::f64::consts::PI;
        // cos(x + pi) = -cos(x), x in [-pi, pi].
        let x2 = x * x;
        let mut term = 1.0;
        let mut c = 1.0;
        let mut n = 1;
        while n < 20 {
            term *= -x2 / ((2 * n - 1) * (2 * n)) as f64;
            c += term;
            n += 1;
        }
        w[k] = (0.5 + 0.5 * c) as f32;
        k += 1;
    }
    w
}
/// Least step regularisation, in far power per sample (-53 dBm0).
const REGULARISE: f32 = 1000.0;
const MU_MAX: f32 = 0.5;
/// Floor of the block filter's step. At steady state on speech the error
/// left at ERL 25 is mostly not gradient noise: the foreground averaged
/// over its last 10 s removed only 0.5-3 dB more than the final one, and
/// capping the step by the background's block ERLE (`mu <= c sqrt(e/d)`:
/// a smaller step the further the residual lies below the echo) cost mean
/// ERLE (0.2 dB at c = 4, 1.3 dB at c = 2). It is taps off in the
/// 150-500 Hz band, which speech excites one sound at a time (within a bin
/// the partitions around the echo see nearly the same far spectrum from one
/// block to the next, so an update corrects one combination of them and
/// the rest drifts), and a larger floor corrects them sooner. ERL-25
/// steady ERLE (mean/p5 over 60 draws, 2000-2059) by floor: 0.01
/// 43.2/39.0, 0.02 43.3/38.9, 0.05 43.6/39.2, 0.1 43.7/39.4, 0.2
/// 42.0/37.8; with the echo partition's extra constraint: 0.02 43.6/38.9,
/// 0.05 43.9/39.2, 0.07 44.1/39.4, 0.1 44.0/39.7, 0.14 43.8/39.4. It now
/// equals [`MU_SUSPECT`], so a block under suspicion of double talk steps
/// at the floor; the double-talk rows end as close to or closer to their
/// ERLE before it than at 0.02.
const MU_MIN: f32 = 0.1;
/// How much lower the short filter's error must be to take the output or
/// seed the background while the energy check suspects double talk.
const MU_SUSPECT_MARGIN: f32 = 0.25;
/// Step cap while the energy check suspects double talk.
const MU_SUSPECT: f32 = 0.1;
/// Smoothing of the far power spectrum that normalises the step, per block
/// (falling, and rising). With 0.3/0.6 the normaliser followed each block's
/// spectrum so closely that every bin got nearly the full step whatever its
/// echo-to-noise ratio at the moment: on ERL-25 rows (echo ~25 dB over the
/// noise) the taps kept an error of -25 dB in the 150-500 Hz band that
/// holds most of the speech power (the foreground averaged over 10 s only
/// 1.5 dB better than the final one) and a few rows ended 31-34 dB. At 0.1 both ways the step follows the band's
/// power over ~80 ms (mean ERLE +1.2-1.5 dB at every ERL over 60 draws).
const PSD_SMOOTH: f32 = 0.1;
const PSD_ATTACK: f32 = 0.1;
/// Until the foreground first removes 20 dB the background's step is
/// normalised per bin by the exact far power of the blocks feeding each
/// partition (`sum_p g_p |X_p|^2`, the true x'Gx bin by bin), not the
/// smoothed one, and its step shares lean to uniform (IPNLMS alpha -0.5:
/// three quarters uniform, a quarter proportionate, instead of half and
/// half). The smoothed normaliser lags a bin that was quiet and turns loud
/// (its attack is 0.1 per block, so a bin 20 dB louder than before got ten
/// times the step for a few blocks) and overstates one that turned quiet:
/// the background alone, on the anchors' 64 ms dense decay with no noise,
/// swung to -10..-16 dB ERLE through its first 3 s and reached 20 dB only
/// after ~4.3 s of it; with the exact normaliser it removed 20 dB by 0.8 s.
/// On a dense path the partition energies that set the proportionate
/// shares start from the update's own noise, so a share leaning to uniform
/// spreads the early step over the whole decay (the 128 ms decay: 20 dB
/// after 8.5 s with the exact normaliser alone, 4.6 s with both). After the
/// first convergence the smoothed normaliser and half-proportionate shares
/// come back: kept for good the exact normaliser cost the ERL-25 scenes
/// 0.6-1.6 dB of steady ERLE (its full step in bins that are momentarily
/// quiet is gradient noise where the echo stands ~20 dB over the noise).
/// Tried and dropped: the per-bin larger of the smoothed and the exact
/// power (slower: 3.8 s on the 64 ms decay), the exact normaliser in every
/// block whose error stands 10 dB over the noise (switching normaliser from
/// block to block cost 4 dB of steady ERLE at ERL 6), a step floor of 0.25
/// or a regularisation a tenth as large until converged (one 20 s G.168 d8
/// row at the anchors' echo-to-noise ratio: 20 dB after 2.5 s instead of
/// 3.5 s, but ending 2.4-3.6 dB lower; the background there sits at the
/// noise floor from ~1 s on and its step at the floor, so the first 20 dB
/// waits on noise averaging, not on the step's shape), MU_MAX 0.8 until
/// converged instead of the uniform-leaning shares (64 ms decay 3.2 s, 128
/// ms 4.6 s, d5 3.6 s).
const FIRST_ALPHA: f32 = -0.5;
/// Largest step of the block filter until the foreground first removes
/// 20 dB (the same time as [`FIRST_ALPHA`]), [`MU_MAX`] after. With the
/// short filter seeding only once it holds the echo ([`SEED_HELD`]), the
/// background alone converges a dense path, and the larger step brings
/// its 20 dB sooner (measured with the seeding rule at 20 dB): mean
/// time to 20 dB over 16 draws of the dense decay, 64 ms 3.0 -> 2.7 s, 128
/// ms 4.7 -> 4.2 s, 64 ms at ERL 10 3.0 -> 2.8 s (the anchors' 128 ms decay
/// 5.8 -> 3.7 s); the G.168 models unchanged.
/// Without the seeding rule it helped less (4.0 -> 3.6 s, 5.6 -> 4.9 s,
/// 4.1 -> 3.6 s).
const FIRST_MU_MAX: f32 = 0.7;
/// Most windows the foreground's average weighs alike (about 6 s of
/// echo); from then on it forgets the oldest at that rate. On the anchors'
/// 110 s ERL-25 scenes (echo ~19 dB over the noise) the steady ERLE rose
/// with the length: 16 windows +1-2 dB, 64 +2-4, 256 +3-7.
const AVG_WINDOWS: u32 = 256;
/// A foreground partition with at most this share of the largest one's
/// energy (-45 dB) whose output would also stand [`FG_UNDER_NOISE`] under
/// the near noise is left out of the foreground's tail convolution. Away
/// from the echo the partitions hold what the background's gradient noise
/// leaves in them (the leak spares a region that keeps falling in energy),
/// and the average does not empty them: on the anchors' 64 ms decay at
/// ERL 25 (echo ~19 dB over the noise) eight such partitions sit at
/// -44..-51 dB. Left out, the foreground convolves about half its
/// partitions there (892 -> 848 instructions/sample on the 73 s prompt)
/// and the steady ERLE of the anchors' ERL-25 scenes rises 0-0.7 dB
/// (64 ms decay 39.2 -> 39.5, G.168 d2/d5/d8/d9 41.5/41.0/36.4/37.2 ->
/// 42.2/41.7/37.0/37.8; the noise they carry costs more than the echo
/// they might hold). The noise limit keeps every partition where the echo
/// stands far over the noise: there the ERLE reaches 50-60 dB and a -45 dB
/// partition of true echo counts (by the share alone the table's ERL-6
/// rows at 100 ms fell 59.7 -> 46.4 dB; with the limit the table is
/// unchanged).
const FG_SILENT: f32 = 3.16e-5;
/// See [`FG_SILENT`]: -25 dB.
const FG_UNDER_NOISE: f32 = 3.16e-3;
/// A window whose background error exceeds the foreground's by this much
/// does not enter the average (undetected double talk, divergence).
const AVG_BG_WORSE: f32 = 1.25;
/// Leak per block of a background partition away from the echo.
const LEAK: f32 = 0.1;
/// Foreground partition energy, relative to the strongest, below which a
/// partition away from it counts as away from the echo (-13 dB).
const LEAK_BELOW: f32 = 0.05;
/// The leak runs once the background removes this much (power ratio,
/// about 5 dB): before that the foreground does not yet say where the echo is,
/// and after an echo-path change the background must move freely.
const LEAK_GATE: f32 = 3.0;

/// Step regularisation (far power per sample) for far power `far`, near
/// power `near` and near noise power `noise` (per sample): the NLMS rule of
/// Benesty, Paleologu and Ciochina ("On regularization in adaptive
/// filtering", IEEE TASLP 2011), `delta = sigma_x^2 (1 + sqrt(1 + ENR)) /
/// ENR` with ENR the echo-to-noise ratio (near power over the noise, less
/// one), at least [`REGULARISE`]. The lower the echo stands above the near
/// noise, the more an update in a bin the far end barely excites is noise,
/// and without it that noise stays in the taps: on speech over a 25 dB
/// hybrid with -70 dBm0 noise it capped the steady state near 32-35 dB.
/// Loud echo (ENR 50 dB) keeps the regularisation near the floor, so the
/// convergence of a strong echo is unchanged.
fn regularisation(far: f32, near: f32, noise: f32) -> f32 {
    let noise = noise.max(1.0);
    let enr = ((near - noise) / noise).max(1e-3);
    REGULARISE.max(far * (1.0 + (1.0 + enr).sqrt()) / enr)
}

/// Sum of `|w|^2` over a partition's spectrum (`BINS` bins): the first
/// `BINS - 1` as one vector dot product of their floats, the last apart.
#[inline]
fn energy(avx2: Option<simd::Avx2>, w: &[Complex32]) -> f32 {
    let (head, last) = w.split_at(BINS - 1);
    let v = &simd::as_pairs(head).as_chunks::<{ 2 * (BINS - 1) }>().0[0];
    simd::dot(avx2, v, v) + last.iter().map(|c| c.norm_sqr()).sum::<f32>()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dsp::Rng;

    #[test]
    fn regularisation_follows_the_echo_to_noise_ratio() {
        // Loud echo over the noise: the floor. Echo 30 dB over the noise:
        // (1 + sqrt(1001)) / 1000 of the far power, about 3 %.
        assert_eq!(regularisation(1e5, 1e6, 1.0), REGULARISE);
        let r = regularisation(1e8, 1001.0 * 25.0, 25.0);
        assert!((r / 1e8 - 0.0326).abs() < 1e-3, "{r}");
        // Lower echo, more regularisation; no echo at all stays finite.
        assert!(regularisation(1e8, 101.0 * 25.0, 25.0) > 3.0 * r);
        assert!(regularisation(1e8, 0.0, 25.0).is_finite());
    }

    #[test]
    fn real_fft_matches_the_dft() {
        let mut rng = Rng::new(3);
        let x: Vec<f32> = (0..FFT).map(|_| rng.gauss() * 1000.0).collect();
        let mut fft = Fft::new();
        fft.time.copy_from_slice(&x);
        let mut spec = vec![ZERO; BINS];
        fft.forward(&mut spec);
        for (k, got) in spec.iter().enumerate() {
            let (mut re, mut im) = (0f64, 0f64);
            for (n, &v) in x.iter().enumerate() {
                let w = -std::f64::consts::TAU * (k * n) as f64 / FFT as f64;
                re += f64::from(v) * w.cos();
                im += f64::from(v) * w.sin();
            }
            let err = ((f64::from(got.re) - re).powi(2) + (f64::from(got.im) - im).powi(2)).sqrt();
            assert!(err < 0.05, "bin {k}: {got} vs {re} {im}");
        }
        // The inverse gives FFT times the signal back; both builds of the
        // split passes agree.
        let mut plain = fft.clone();
        plain.avx2 = None;
        let mut spec2 = spec.clone();
        fft.inverse(&mut spec);
        plain.inverse(&mut spec2);
        for ((&t, &u), &v) in fft.time.iter().zip(&plain.time).zip(&x) {
            assert!((t / FFT as f32 - v).abs() < 0.01, "{t} vs {v}");
            assert!((u / FFT as f32 - v).abs() < 0.01, "{u} vs {v}");
        }
        plain.time.copy_from_slice(&x);
        plain.forward(&mut spec2);
        fft.time.copy_from_slice(&x);
        fft.forward(&mut spec);
        for (a, b) in spec.iter().zip(&spec2) {
            assert!((a - b).norm() < 0.05, "{a} vs {b}");
        }
    }

    #[test]
    fn hann_table_matches_the_window() {
        for (k, &w) in HANN.iter().enumerate() {
            let want = 0.5 - 0.5 * (std::f32::consts::TAU * (k as f32 + 0.5) / BLOCK as f32).cos();
            assert!((w - want).abs() < 1e-5, "{k}: {w} vs {want}");
        }
    }

    #[test]
    fn taps_are_clamped_and_rounded() {
        assert_eq!(FdafEchoCanceller::new(10).taps(), 256);
        assert_eq!(FdafEchoCanceller::new(5000).taps(), 1024);
        assert_eq!(FdafEchoCanceller::new(300).taps(), 320);
    }

    #[test]
    fn coefficients_match_a_converged_path() {
        // White far signal through a short path at 70 ms: the foreground
        // taps end up close to the path.
        let mut ec = FdafEchoCanceller::new(1024);
        ec.set_nlp(false);
        let mut rng = Rng::new(4);
        let h = [(560usize, 0.3f32), (561, -0.2), (563, 0.1)];
        let n = 24_000;
        let far: Vec<i16> = (0..n).map(|_| (rng.gauss() * 2000.0) as i16).collect();
        let near: Vec<i16> = (0..n)
            .map(|i| {
                h.iter()
                    .filter(|&&(k, _)| i >= k)
                    .map(|&(k, c)| c * f32::from(far[i - k]))
                    .sum::<f32>() as i16
            })
            .collect();
        let mut out = vec![0i16; n];
        ec.process(&far, &near, &mut out);
        let w = ec.coefficients();
        assert_eq!(w.len(), 1024);
        for &(k, c) in &h {
            assert!((w[k] - c).abs() < 0.02, "tap {k}: {} vs {c}", w[k]);
        }
        let stray = w
            .iter()
            .enumerate()
            .filter(|(k, _)| h.iter().all(|&(j, _)| j != *k))
            .map(|(_, v)| v.abs())
            .fold(0.0, f32::max);
        assert!(stray < 0.02, "largest stray tap {stray}");
    }

    #[test]
    fn foreground_leaves_out_partitions_under_the_noise() {
        // A path at 70 ms, 25 dB of loss, 15 dB over white near noise: the
        // foreground ends up convolving the partitions around the echo
        // only, and what it leaves out costs no cancellation.
        let mut ec = FdafEchoCanceller::new(1024);
        ec.set_nlp(false);
        let mut rng = Rng::new(11);
        let h = [(560usize, 0.05f32), (562, -0.03)];
        let n = 160_000;
        let far: Vec<i16> = (0..n).map(|_| (rng.gauss() * 2000.0) as i16).collect();
        let noise: Vec<f32> = (0..n).map(|_| rng.gauss() * 20.0).collect();
        let echo: Vec<f32> = (0..n)
            .map(|i| {
                h.iter()
                    .filter(|&&(k, _)| i >= k)
                    .map(|&(k, c)| c * f32::from(far[i - k]))
                    .sum::<f32>()
            })
            .collect();
        let near: Vec<i16> = echo
            .iter()
            .zip(&noise)
            .map(|(e, v)| (e + v) as i16)
            .collect();
        let mut out = vec![0i16; n];
        ec.process(&far, &near, &mut out);
        let live = &ec.fg_live[..ec.fg_live_n];
        assert!(
            live.contains(&(560 / BLOCK)),
            "echo partition left out: {live:?}"
        );
        assert!(live.len() <= ec.parts / 2, "nothing left out: {live:?}");
        // Residual echo (output less the noise) over the last 5 s.
        let tail = n - 40_000..n;
        let res: f64 = tail
            .clone()
            .map(|i| f64::from(f32::from(out[i]) - noise[i]).powi(2))
            .sum();
        let ech: f64 = tail.map(|i| f64::from(echo[i]).powi(2)).sum();
        let erle = 10.0 * (ech / res.max(1.0)).log10();
        assert!(erle > 28.0, "ERLE {erle:.1} dB with {live:?}");
    }

    #[test]
    fn cancels_white_noise_echo() {
        let mut ec = FdafEchoCanceller::new(256);
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
