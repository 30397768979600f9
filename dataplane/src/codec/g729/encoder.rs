//! G.729 Annex A encoder: 140 Hz high-pass pre-processing, windowed
//! autocorrelation with lag window, Levinson-Durbin, LPC to LSP by Chebyshev
//! root search, two-stage LSP VQ with switched MA prediction, perceptual
//! weighting, open-loop pitch on the weighted speech, the Annex A simplified
//! closed-loop pitch and depth-first algebraic codebook search, the
//! two-stage conjugate gain VQ and the taming procedure that protects the
//! decoder's adaptive codebook from error propagation.

use super::basic_op::*;
use super::simd::{
    abs_sum8n, all_abs_le8, any_better8, avx2_multiversion, cor_h_blocks, corr_tri40, dot40_down4,
    dot8n, lsp_stage1, lsp_stage2, max_abs8, search8, sq_dist16,
};
use super::simd_acelp::{first_best_rows, sign_blocks};
use super::simd_search::{gain_dist32, lsp_stage2_pair};
use super::tables::*;
use super::util::*;
use super::{Params, L_FRAME, L_INTERPOL, L_SUBFR, M, MP1, PIT_MAX, PIT_MIN, SHARPMAX, SHARPMIN};

const L_TOTAL: usize = 240;
const L_WINDOW: usize = 240;
const SPEECH_OFF: usize = L_TOTAL - L_FRAME - 40; // present frame in old_speech
const NEW_SPEECH_OFF: usize = L_TOTAL - L_FRAME;
const WSP_OFF: usize = PIT_MAX;
const EXC_OFF: usize = PIT_MAX + L_INTERPOL;
const GAMMA1: i16 = 24576;
const GPCLIP: i16 = 15564;
const GPCLIP2: i16 = 481;
const GP0999: i16 = 16383;
const L_THRESH_ERR: i32 = 983_040_000;
const INV_COEF: i16 = -17103;
const PI04: i16 = 1029;
const PI92: i16 = 23677;
const CONST10: i16 = 10 * (1 << 11);
const CONST12: i16 = 19661;

const NB_POS: usize = 8;
const MSIZE: usize = 64;
const DIM_RR: usize = 616;
const RRI0I0: usize = 0;
const RRI1I1: usize = 8;
const RRI2I2: usize = 16;
const RRI3I3: usize = 24;
const RRI4I4: usize = 32;
const RRI0I1: usize = 40;
const RRI0I2: usize = RRI0I1 + MSIZE;
const RRI0I3: usize = RRI0I2 + MSIZE;
const RRI0I4: usize = RRI0I3 + MSIZE;
const RRI1I2: usize = RRI0I4 + MSIZE;
const RRI1I3: usize = RRI1I2 + MSIZE;
const RRI1I4: usize = RRI1I3 + MSIZE;
const RRI2I3: usize = RRI1I4 + MSIZE;
const RRI2I4: usize = RRI2I3 + MSIZE;

/// State of one G.729A encoder channel (about 1.6 KB, no heap).
#[derive(Clone)]
pub struct Encoder {
    old_speech: [i16; L_TOTAL],
    old_wsp: [i16; L_FRAME + PIT_MAX],
    old_exc: [i16; L_FRAME + PIT_MAX + L_INTERPOL],
    lsp_old: [i16; M],
    lsp_old_q: [i16; M],
    mem_w0: [i16; M],
    mem_w: [i16; M],
    mem_zero: [i16; M],
    sharp: i16,
    old_a: [i16; MP1],
    old_rc: [i16; 2],
    freq_prev: [[i16; M]; 4],
    past_qua_en: [i16; 4],
    l_exc_err: [i32; 4],
    // pre-processing high-pass
    y2_hi: i16,
    y2_lo: i16,
    y1_hi: i16,
    y1_lo: i16,
    x0: i16,
    x1: i16,
}

impl Default for Encoder {
    fn default() -> Self {
        Self::new()
    }
}

impl Encoder {
    /// An encoder in the Recommendation's initial state.
    pub fn new() -> Self {
        let lsp_old = [
            30000, 26000, 21000, 15000, 8000, 0, -8000, -15000, -21000, -26000,
        ];
        Encoder {
            old_speech: [0; L_TOTAL],
            old_wsp: [0; L_FRAME + PIT_MAX],
            old_exc: [0; L_FRAME + PIT_MAX + L_INTERPOL],
            lsp_old,
            lsp_old_q: lsp_old,
            mem_w0: [0; M],
            mem_w: [0; M],
            mem_zero: [0; M],
            sharp: SHARPMIN,
            old_a: [4096, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0],
            old_rc: [0; 2],
            freq_prev: [FREQ_PREV_RESET; 4],
            past_qua_en: [-14336; 4],
            l_exc_err: [0x4000; 4],
            y2_hi: 0,
            y2_lo: 0,
            y1_hi: 0,
            y1_lo: 0,
            x0: 0,
            x1: 0,
        }
    }

    /// Encode one 10 ms frame of 8 kHz linear PCM.
    pub fn encode_frame(&mut self, pcm: &[i16; L_FRAME]) -> Params {
        self.old_speech[NEW_SPEECH_OFF..].copy_from_slice(pcm);
        self.pre_process();
        let mut ana = [0u16; 11];

        // ---- LPC analysis and LSP quantisation ----
        let mut r_h = [0i16; MP1];
        let mut r_l = [0i16; MP1];
        autocorr(&self.old_speech, &mut r_h, &mut r_l);
        lag_window(&mut r_h, &mut r_l);
        let mut a_unq = [0i16; MP1];
        self.levinson(&r_h, &r_l, &mut a_unq);
        let mut lsp_new = [0i16; M];
        az_lsp(&a_unq, &mut lsp_new, &self.lsp_old);

        let mut lsp_new_q = [0i16; M];
        let (c0, c1) = self.qua_lsp(&lsp_new, &mut lsp_new_q);
        ana[0] = c0 as u16;
        ana[1] = c1 as u16;

        let mut aq_t = [0i16; 2 * MP1];
        int_qlpc(&self.lsp_old_q, &lsp_new_q, &mut aq_t);
        let mut ap_t = [0i16; 2 * MP1];
        {
            let (lo, hi) = ap_t.split_at_mut(MP1);
            let lo: &mut [i16; MP1] = lo.try_into().unwrap_or_else(|_| unreachable!());
            let hi: &mut [i16; MP1] = hi.try_into().unwrap_or_else(|_| unreachable!());
            weight_az(&aq_t[..MP1], GAMMA1, lo);
            weight_az(&aq_t[MP1..], GAMMA1, hi);
        }
        self.lsp_old = lsp_new;
        self.lsp_old_q = lsp_new_q;

        // ---- weighted speech and open-loop pitch ----
        let mut res = [0i16; L_FRAME];
        residu(
            &aq_t[..MP1],
            &self.old_speech,
            SPEECH_OFF,
            &mut res[..L_SUBFR],
            L_SUBFR,
        );
        residu(
            &aq_t[MP1..],
            &self.old_speech,
            SPEECH_OFF + L_SUBFR,
            &mut res[L_SUBFR..],
            L_SUBFR,
        );
        self.old_exc[EXC_OFF..].copy_from_slice(&res);
        // The weighted speech of each subframe, each alongside an
        // independent recursion of the same length (interleaved, each one
        // hides in the other's latency): the first subframe's target xn
        // (the residual through the weighted synthesis filter from its
        // memory) and the first impulse response h1. The second impulse
        // response runs alongside the first filtered adaptive codebook
        // vector y1 in the subframe loop.
        let ap1_t: [[i16; MP1]; 2] = std::array::from_fn(|sf| {
            let ap = &ap_t[sf * MP1..(sf + 1) * MP1];
            let mut ap1 = [0i16; MP1];
            ap1[0] = 4096;
            for i in 1..=M {
                ap1[i] = sub(ap[i], mult(ap[i - 1], 22938));
            }
            ap1
        });
        let mut impulse = [0i16; L_SUBFR];
        impulse[0] = 4096;
        let (res0, res1) = res.split_at(L_SUBFR);
        let (wsp0, wsp1) = self.old_wsp[WSP_OFF..WSP_OFF + L_FRAME].split_at_mut(L_SUBFR);
        let mut xn0 = [0i16; L_SUBFR];
        let mut h1_t = [[0i16; L_SUBFR]; 2];
        syn_filt2(
            [&ap1_t[0], &ap_t[..MP1]],
            [res0, res0],
            [wsp0, &mut xn0],
            [&mut self.mem_w, &mut self.mem_w0.clone()],
            [true, false],
        );
        syn_filt2(
            [&ap1_t[1], &ap_t[..MP1]],
            [res1, &impulse],
            [wsp1, &mut h1_t[0]],
            [&mut self.mem_w, &mut [0; M]],
            [true, false],
        );
        let t_op = pitch_ol_fast(&self.old_wsp);

        let mut t0_min = sub(t_op, 3);
        if t0_min < PIT_MIN as i16 {
            t0_min = PIT_MIN as i16;
        }
        let mut t0_max = add(t0_min, 6);
        if t0_max > PIT_MAX as i16 {
            t0_max = PIT_MAX as i16;
            t0_min = sub(t0_max, 6);
        }

        // ---- subframe loop ----
        for sf in 0..2 {
            let i_subfr = sf * L_SUBFR;
            let aq = &aq_t[sf * MP1..(sf + 1) * MP1];
            let _ = aq;
            let ap = &ap_t[sf * MP1..(sf + 1) * MP1];
            let pos = EXC_OFF + i_subfr;

            let mut h1 = h1_t[sf];

            let mut xn = xn0;
            if sf == 1 {
                let mut m0 = self.mem_w0;
                syn_filt(
                    ap,
                    &self.old_exc[pos..pos + L_SUBFR],
                    &mut xn,
                    &mut m0,
                    false,
                );
            }

            let mut t0_frac = 0i16;
            let t0 = pitch_fr3_fast(
                &mut self.old_exc,
                pos,
                &xn,
                &h1,
                t0_min,
                t0_max,
                sf,
                &mut t0_frac,
            );
            let index = enc_lag3(t0, t0_frac, &mut t0_min, &mut t0_max, sf);
            if sf == 0 {
                ana[2] = index as u16;
                ana[3] = parity_pitch(index) as u16;
            } else {
                ana[7] = index as u16;
            }

            let mut y1 = [0i16; L_SUBFR];
            let mut mz = self.mem_zero;
            if sf == 0 {
                syn_filt2(
                    [ap, &ap_t[MP1..]],
                    [&self.old_exc[pos..pos + L_SUBFR], &impulse],
                    [&mut y1, &mut h1_t[1]],
                    [&mut mz, &mut [0; M]],
                    [false, false],
                );
            } else {
                syn_filt(
                    ap,
                    &self.old_exc[pos..pos + L_SUBFR],
                    &mut y1,
                    &mut mz,
                    false,
                );
            }
            let mut g_coeff = [0i16; 4];
            let mut gain_pit = g_pitch(&xn, &y1, &mut g_coeff);

            let taming = self.test_err(t0, t0_frac);
            if taming && gain_pit > GPCLIP {
                gain_pit = GPCLIP;
            }

            let xn2 = sub_scaled(&xn, &y1, gain_pit);

            let mut code = [0i16; L_SUBFR];
            let mut y2 = [0i16; L_SUBFR];
            let (index, sign) = acelp_code_a(&xn2, &mut h1, t0, self.sharp, &mut code, &mut y2);
            let ci = if sf == 0 { 4 } else { 8 };
            ana[ci] = index as u16;
            ana[ci + 1] = sign as u16;

            let mut g_cs = [0i16; 5];
            let mut exp_cs = [0i16; 5];
            g_cs[0] = g_coeff[0];
            exp_cs[0] = negate(g_coeff[1]);
            g_cs[1] = negate(g_coeff[2]);
            exp_cs[1] = negate(add(g_coeff[3], 1));
            corr_xy2(&xn, &y1, &y2, &mut g_cs, &mut exp_cs);
            let (gidx, gp, gc) = self.qua_gain(&code, &g_cs, &exp_cs, taming);
            let gain_pit = gp;
            let gain_code = gc;
            ana[if sf == 0 { 6 } else { 10 }] = gidx as u16;

            self.sharp = gain_pit.clamp(SHARPMIN, SHARPMAX);

            if let Some(exc) = self.old_exc.get_mut(pos..pos + L_SUBFR) {
                if let Ok(exc) = exc.try_into() {
                    let tails =
                        [&xn, &y1, &y2].map(|v| v[L_SUBFR - M..].try_into().unwrap_or(&[0; M]));
                    subframe_end(exc, &code, tails, gain_pit, gain_code, &mut self.mem_w0);
                }
            }
            self.update_exc_err(gain_pit, t0);
        }

        self.old_speech.copy_within(L_FRAME.., 0);
        self.old_wsp.copy_within(L_FRAME.., 0);
        self.old_exc.copy_within(L_FRAME.., 0);
        Params(ana)
    }

    /// High-pass pre-processing (2nd order, 140 Hz, input / 2), state as
    /// the reference's hi/lo pairs. With these coefficients no running sum
    /// of the reference's chain can leave 32 bits:
    /// `2^16 (7807 + 3733) + 2 * 2 * 3733 + 2^16 (1899 + 3798 + 1899) < 2^31`,
    /// so plain arithmetic is exact up to the final saturating shift. The
    /// input terms are summed for the whole frame first, the recursion
    /// keeps the state in locals and the outputs are rounded after it.
    ///
    /// [`pre_process_body`](Self::pre_process_body), compiled for AVX2 where the CPU has it
    /// (`avx2_multiversion`).
    #[inline(always)]
    fn pre_process(&mut self) {
        pre_process_mv(self)
    }

    #[inline(always)]
    fn pre_process_body(&mut self) {
        let (a1, a2) = (A140[1] as i64, A140[2] as i64);
        let (b0, b1, b2) = (B140[0] as i32, B140[1] as i32, B140[2] as i32);
        let Ok(sig) = <&mut [i16; L_FRAME]>::try_from(&mut self.old_speech[NEW_SPEECH_OFF..])
        else {
            unreachable!("the new speech is one frame")
        };
        // The input terms `2 (x[i] b0 + x[i-1] b1 + x[i-2] b2)` of every
        // sample first, in lanes (plain sums, see above): only the
        // state terms are left on the sample-to-sample chain.
        let mut x = [0i16; L_FRAME + 2];
        x[..2].copy_from_slice(&[self.x1, self.x0]);
        x[2..].copy_from_slice(sig);
        let xs: [i32; L_FRAME] = std::array::from_fn(|i| {
            2 * (x[i + 2] as i32 * b0 + x[i + 1] as i32 * b1 + x[i] as i32 * b2)
        });
        // The past outputs as the 31-bit values `hi 2^15 + lo` the
        // hi/lo pairs stand for: `hi a + ((lo a) >> 15)` (Mpy_32_16 / 2) is
        // `(v a) >> 15` with `v = hi 2^15 + lo`, one multiply instead of two
        // on the sample-to-sample chain.
        let v = |h: i16, l: i16| ((h as i64) << 15) + l as i64;
        let (mut v1, mut v2) = (v(self.y1_hi, self.y1_lo), v(self.y2_hi, self.y2_lo));
        let mut ls = [0i32; L_FRAME];
        // Two samples a step (fewer register moves and loop steps); the
        // older state's term first: only the newest one's product is on
        // the chain.
        for (l, x) in ls.chunks_exact_mut(2).zip(xs.chunks_exact(2)) {
            let r = 2 * ((v2 * a2) >> 15) as i32 + x[0];
            l[0] = 2 * ((v1 * a1) >> 15) as i32 + r;
            (_, v2) = shl_state(l[0], 3);
            let r = 2 * ((v1 * a2) >> 15) as i32 + x[1];
            l[1] = 2 * ((v2 * a1) >> 15) as i32 + r;
            (_, v1) = shl_state(l[1], 3);
        }
        (self.x1, self.x0) = (x[L_FRAME], x[L_FRAME + 1]);
        for (s, &l) in sig.iter_mut().zip(&ls) {
            *s = round_shl3(l);
        }
        (self.y1_hi, self.y1_lo) = l_extract((v1 << 1) as i32);
        (self.y2_hi, self.y2_lo) = l_extract((v2 << 1) as i32);
    }

    /// [`levinson_body`](Self::levinson_body), compiled for AVX2 where the CPU has it
    /// (`avx2_multiversion`).
    #[inline(always)]
    fn levinson(&mut self, rh: &[i16; MP1], rl: &[i16; MP1], a: &mut [i16; MP1]) {
        levinson_mv(self, rh, rl, a)
    }

    #[inline(always)]
    fn levinson_body(&mut self, rh: &[i16; MP1], rl: &[i16; MP1], a: &mut [i16; MP1]) {
        match levinson_lanes(rh, rl, a) {
            Some(rc) => {
                self.old_a = *a;
                self.old_rc = rc;
            }
            None => *a = self.old_a,
        }
    }

    /// [`qua_lsp_body`](Self::qua_lsp_body), compiled for AVX2 where the CPU has it
    /// (`avx2_multiversion`).
    #[inline(always)]
    fn qua_lsp(&mut self, lsp: &[i16; M], lsp_q: &mut [i16; M]) -> (i16, i16) {
        qua_lsp_mv(self, lsp, lsp_q)
    }

    #[inline(always)]
    fn qua_lsp_body(&mut self, lsp: &[i16; M], lsp_q: &mut [i16; M]) -> (i16, i16) {
        let mut lsf = [0i16; M];
        lsp_lsf2(lsp, &mut lsf);
        let mut wegt = [0i16; M];
        get_wegt(&lsf, &mut wegt);

        let mut cand = [0usize; 2];
        let mut tindex1 = [0usize; 2];
        let mut tindex2 = [0usize; 2];
        let mut tdist = [0i32; 2];
        for mode in 0..2 {
            let mut rbuf = [0i16; M];
            lsp_prev_extract_lanes(
                lsp_ref(&lsf),
                &mut rbuf,
                &FG[mode],
                &self.freq_prev,
                &FG_SUM_INV[mode],
            );
            // pre-select first stage
            // The reference's distance is L_mac(.., t, t) summed from 0:
            // non-negative terms, so it saturates exactly when the exact sum
            // exceeds MAX_32; the first minimum wins.
            let (groups, cb_max, lo, hi) = lspcb1_groups();
            let rmin = rbuf.iter().copied().min().unwrap_or(0) as i32;
            // The largest distance from rbuf of any point in the
            // codebook's bounding box: below 2^30, no distance is capped.
            let far: i64 = (0..M)
                .map(|k| {
                    let d = (rbuf[k] as i64 - lo[k] as i64).max(hi[k] as i64 - rbuf[k] as i64);
                    d * d
                })
                .sum();
            let c = if far < 1 << 30 {
                lsp_stage1::<false>(&rbuf, groups)
            } else if rmin - cb_max > MIN_16 as i32 {
                // No difference saturates to -32768: eight-lane search.
                lsp_stage1::<true>(&rbuf, groups)
            } else {
                let mut c = 0usize;
                let mut dmin = MAX_32 as u64;
                let mut r16 = [0i16; 16];
                r16[..M].copy_from_slice(&rbuf);
                for (i, cb) in lspcb1_padded().iter().enumerate() {
                    let l = (2 * sq_dist16(&r16, cb)).min(MAX_32 as u64);
                    if l < dmin {
                        dmin = l;
                        c = i;
                    }
                }
                c
            };
            cand[mode] = c;
            let cb1 = &LSPCB1[c];
            // The two second-stage searches use the same target and
            // weights (not each other's result): run them side by side.
            let [idx1, idx2] = select_2nd_pair(&rbuf, cb1, &wegt);
            tindex1[mode] = idx1;
            let mut buf = [0i16; M];
            for j in 0..5 {
                buf[j] = add(cb1[j], LSPCB2[idx1][j]);
            }
            lsp_expand(&mut buf, GAP1, 1, 5);
            tindex2[mode] = idx2;
            for j in 5..M {
                buf[j] = add(cb1[j], LSPCB2[idx2][j]);
            }
            lsp_expand(&mut buf, GAP1, 5, M);
            lsp_expand_1_2(&mut buf, GAP2);
            tdist[mode] = lsp_wdist(&buf, &rbuf, &FG_SUM[mode], &wegt);
        }
        let mode = if l_sub(tdist[1], tdist[0]) < 0 { 1 } else { 0 };
        let c0 = shl(mode as i16, 7) | cand[mode] as i16;
        let c1 = shl(tindex1[mode] as i16, 5) | tindex2[mode] as i16;
        let mut lsf_q = [0i16; M];
        lsp_get_quant(
            cand[mode],
            tindex1[mode],
            tindex2[mode],
            mode,
            &mut self.freq_prev,
            &mut lsf_q,
        );
        lsf_lsp2(&lsf_q, lsp_q);
        (c0, c1)
    }

    fn test_err(&self, t0: i16, t0_frac: i16) -> bool {
        let t1 = if t0_frac > 0 { add(t0, 1) } else { t0 };
        let i = sub(t1, (L_SUBFR + 10) as i16).max(0);
        let zone1 = tab_zone(i as usize);
        let zone2 = tab_zone(add(t1, 8) as usize);
        let mut maxloc = -1i32;
        for i in (zone1..=zone2).rev() {
            if l_sub(self.l_exc_err[i], maxloc) > 0 {
                maxloc = self.l_exc_err[i];
            }
        }
        l_sub(maxloc, L_THRESH_ERR) > 0
    }

    fn update_exc_err(&mut self, gain_pit: i16, t0: i16) {
        let mut worst = -1i32;
        let n = sub(t0, L_SUBFR as i16);
        let step = |e: i32| -> i32 {
            let (hi, lo) = l_extract(e);
            let t = l_shl(mpy_32_16(hi, lo, gain_pit), 1);
            l_add(0x4000, t)
        };
        if n < 0 {
            let t = step(self.l_exc_err[0]);
            if l_sub(t, worst) > 0 {
                worst = t;
            }
            let t = step(t);
            if l_sub(t, worst) > 0 {
                worst = t;
            }
        } else {
            let zone1 = tab_zone(n as usize);
            let zone2 = tab_zone((t0 - 1) as usize);
            for i in zone1..=zone2 {
                let t = step(self.l_exc_err[i]);
                if l_sub(t, worst) > 0 {
                    worst = t;
                }
            }
        }
        for i in (1..4).rev() {
            self.l_exc_err[i] = self.l_exc_err[i - 1];
        }
        self.l_exc_err[0] = worst;
    }

    /// [`qua_gain_body`](Self::qua_gain_body), compiled for AVX2 where the CPU has it
    /// (`avx2_multiversion`).
    #[inline(always)]
    fn qua_gain(
        &mut self,
        code: &[i16; L_SUBFR],
        g: &[i16; 5],
        e: &[i16; 5],
        tame: bool,
    ) -> (i16, i16, i16) {
        qua_gain_mv(self, code, g, e, tame)
    }

    #[inline(always)]
    fn qua_gain_body(
        &mut self,
        code: &[i16; L_SUBFR],
        g: &[i16; 5],
        e: &[i16; 5],
        tame: bool,
    ) -> (i16, i16, i16) {
        let (gcode0, exp_gcode0) = gain_predict(&self.past_qua_en, code);

        // denominator
        let l_tmp1 = l_mult(g[0], g[2]);
        let exp1 = add(add(e[0], e[2]), 1 - 2);
        let l_tmp2 = l_mult(g[4], g[4]);
        let exp2 = add(add(e[4], e[4]), 1);
        let (l_tmp, exp) = if exp1 > exp2 {
            (l_sub(l_shr(l_tmp1, sub(exp1, exp2)), l_tmp2), exp2)
        } else {
            (l_sub(l_tmp1, l_shr(l_tmp2, sub(exp2, exp1))), exp1)
        };
        let sft = norm_l(l_tmp);
        let denom = extract_h(l_shl(l_tmp, sft));
        let exp_denom = sub(add(exp, sft), 16);
        let inv_denom = negate(div_s(16384, denom));
        let exp_inv_denom = sub(14 + 15, exp_denom);

        let num = |a0: i16, a1: i16, ea: i16, b0: i16, b1: i16, eb: i16| -> (i16, i16) {
            let l_tmp1 = l_mult(a0, a1);
            let exp1 = ea;
            let l_tmp2 = l_mult(b0, b1);
            let exp2 = eb;
            let (l_tmp, exp) = if exp1 > exp2 {
                (
                    l_sub(l_shr(l_tmp1, add(sub(exp1, exp2), 1)), l_shr(l_tmp2, 1)),
                    sub(exp2, 1),
                )
            } else {
                (
                    l_sub(l_shr(l_tmp1, 1), l_shr(l_tmp2, add(sub(exp2, exp1), 1))),
                    sub(exp1, 1),
                )
            };
            let sft = norm_l(l_tmp);
            let nume = extract_h(l_shl(l_tmp, sft));
            (nume, sub(add(exp, sft), 16))
        };
        let mut best_gain = [0i16; 2];
        let (nume, exp_nume) = num(
            g[2],
            g[1],
            add(e[2], e[1]),
            g[3],
            g[4],
            add(add(e[3], e[4]), 1),
        );
        let sft = sub(add(exp_nume, exp_inv_denom), 9 + 16 - 1);
        best_gain[0] = extract_h(l_shr(l_mult(nume, inv_denom), sft));
        if tame && best_gain[0] > GPCLIP2 {
            best_gain[0] = GPCLIP2;
        }
        let (nume, exp_nume) = num(
            g[0],
            g[3],
            add(e[0], e[3]),
            g[1],
            g[4],
            add(add(e[1], e[4]), 1),
        );
        let sft = sub(add(exp_nume, exp_inv_denom), 2 + 16 - 1);
        best_gain[1] = extract_h(l_shr(l_mult(nume, inv_denom), sft));

        let gcode0_org = if exp_gcode0 >= 4 {
            shr(gcode0, sub(exp_gcode0, 4))
        } else {
            extract_h(l_shl(l_deposit_l(gcode0), sub(4 + 16, exp_gcode0)))
        };
        let (cand1, cand2) = gbk_presel(&best_gain, gcode0_org);

        let mut exp_min = [0i16; 5];
        exp_min[0] = add(e[0], 13);
        exp_min[1] = add(e[1], 14);
        exp_min[2] = add(e[2], sub(shl(exp_gcode0, 1), 21));
        exp_min[3] = add(e[3], sub(exp_gcode0, 3));
        exp_min[4] = add(e[4], sub(exp_gcode0, 4));
        let e_min = *exp_min.iter().min().unwrap_or(&0);
        let mut coeff = [0i16; 5];
        let mut coeff_lsf = [0i16; 5];
        for i in 0..5 {
            let j = sub(exp_min[i], e_min);
            let l = l_shr(l_deposit_h(g[i]), j);
            (coeff[i], coeff_lsf[i]) = l_extract(l);
        }

        let (index1, index2) = gain_search(&coeff, &coeff_lsf, gcode0, cand1, cand2, tame);
        let gain_pit = add(GBK1[index1][0], GBK2[index2][0]);
        let l_gbk12 = l_add(GBK1[index1][1] as i32, GBK2[index2][1] as i32);
        let tmp = extract_l(l_shr(l_gbk12, 1));
        let l_acc = l_mult(tmp, gcode0);
        let l_acc = l_shl(l_acc, add(negate(exp_gcode0), -12 - 1 + 1 + 16));
        let gain_cod = extract_h(l_acc);
        gain_update(&mut self.past_qua_en, l_gbk12);
        (add(MAP1[index1] * 16, MAP2[index2]), gain_pit, gain_cod)
    }
}

/// The first-stage LSP codebook interleaved for [`lsp_stage1`] (four
/// entries per group, element pairs side by side), its largest value, and
/// the smallest and largest value of each element.
type Cb1Groups = ([[[i16; 8]; 5]; 32], i32, [i16; M], [i16; M]);
fn lspcb1_groups() -> &'static Cb1Groups {
    static TABLE: std::sync::OnceLock<Cb1Groups> = std::sync::OnceLock::new();
    TABLE.get_or_init(|| {
        let mut t = [[[0i16; 8]; 5]; 32];
        for (g, grp) in t.iter_mut().enumerate() {
            for (p, v) in grp.iter_mut().enumerate() {
                for l in 0..4 {
                    v[2 * l] = LSPCB1[4 * g + l][2 * p];
                    v[2 * l + 1] = LSPCB1[4 * g + l][2 * p + 1];
                }
            }
        }
        let max = LSPCB1.iter().flatten().copied().max().unwrap_or(0) as i32;
        let lo = std::array::from_fn(|k| LSPCB1.iter().map(|e| e[k]).min().unwrap_or(0));
        let hi = std::array::from_fn(|k| LSPCB1.iter().map(|e| e[k]).max().unwrap_or(0));
        (t, max, lo, hi)
    })
}

/// The second-stage LSP codebook column-wise for [`lsp_stage2`]: its lower
/// (elements 0..5) and upper (5..10) halves.
fn lspcb2_cols() -> &'static [[[i16; 32]; 5]; 2] {
    static TABLE: std::sync::OnceLock<[[[i16; 32]; 5]; 2]> = std::sync::OnceLock::new();
    TABLE.get_or_init(|| {
        let mut t = [[[0i16; 32]; 5]; 2];
        for (i, cb) in LSPCB2.iter().enumerate() {
            for (j, &v) in cb.iter().enumerate() {
                t[j / 5][j % 5][i] = v;
            }
        }
        t
    })
}

/// The first-stage LSP codebook padded to 16 entries per vector.
fn lspcb1_padded() -> &'static [[i16; 16]; 128] {
    static TABLE: std::sync::OnceLock<[[i16; 16]; 128]> = std::sync::OnceLock::new();
    TABLE.get_or_init(|| {
        let mut t = [[0i16; 16]; 128];
        for (p, cb) in t.iter_mut().zip(LSPCB1.iter()) {
            p[..M].copy_from_slice(cb);
        }
        t
    })
}

#[inline(always)]
fn lsp_ref(x: &[i16; M]) -> &[i16; M] {
    x
}

/// The gain codebook search of the reference over the 4 x 8 preselected
/// pairs, every step with the saturating operators (`coeff`, `coeff_lsf`
/// the distance's coefficients as `L_Extract` pairs): the first pair with
/// the smallest distance below `MAX_32`, else `(cand1, cand2)`. Under
/// `tame`, pairs with a pitch gain of 0.999 or more are left out.
fn gain_search_ref(
    coeff: &[i16; 5],
    coeff_lsf: &[i16; 5],
    gcode0: i16,
    cand1: usize,
    cand2: usize,
    tame: bool,
) -> (usize, usize) {
    let mut dist_min = MAX_32;
    let mut index1 = cand1;
    let mut index2 = cand2;
    for i in 0..4 {
        for j in 0..8 {
            let (g_pitch, g_code) = gain_pair(gcode0, cand1 + i, cand2 + j);
            if tame && g_pitch >= GP0999 {
                continue;
            }
            let g2_pitch = mult(g_pitch, g_pitch);
            let g2_code = mult(g_code, g_code);
            let g_pit_cod = mult(g_code, g_pitch);
            let n = [g2_pitch, g_pitch, g2_code, g_code, g_pit_cod];
            let mut l = mpy_32_16(coeff[0], coeff_lsf[0], n[0]);
            for k in 1..5 {
                l = l_add(l, mpy_32_16(coeff[k], coeff_lsf[k], n[k]));
            }
            if l_sub(l, dist_min) < 0 {
                dist_min = l;
                index1 = cand1 + i;
                index2 = cand2 + j;
            }
        }
    }
    (index1, index2)
}

/// The candidate gains `(g_pitch, g_code)` of the codebook pair `(i1, i2)`.
#[inline(always)]
fn gain_pair(gcode0: i16, i1: usize, i2: usize) -> (i16, i16) {
    let g_pitch = add(GBK1[i1][0], GBK2[i2][0]);
    let l_tmp = l_add(GBK1[i1][1] as i32, GBK2[i2][1] as i32);
    let tmp = extract_l(l_shr(l_tmp, 1));
    (g_pitch, mult(gcode0, tmp))
}

/// [`gain_search_ref`] with the 32 distances computed at once
/// ([`gain_dist32`], exact when it answers) and the first smallest one
/// found without branches: the key `(distance, pair number)` orders as the
/// reference's strict `<` scan does. Falls back to the reference when a
/// coefficient is -32768 (an `L_mult` could saturate) or a sum could.
#[inline(always)]
fn gain_search(
    coeff: &[i16; 5],
    coeff_lsf: &[i16; 5],
    gcode0: i16,
    cand1: usize,
    cand2: usize,
    tame: bool,
) -> (usize, usize) {
    if coeff.iter().all(|&c| c != MIN_16) && cand1 + 4 <= GBK1.len() && cand2 + 8 <= GBK2.len() {
        let mut gp = [[0i16; 8]; 4];
        let mut gc = [[0i16; 8]; 4];
        for i in 0..4 {
            for j in 0..8 {
                (gp[i][j], gc[i][j]) = gain_pair(gcode0, cand1 + i, cand2 + j);
            }
        }
        if let Some(d) = gain_dist32(coeff, coeff_lsf, &gp, &gc) {
            let mut best = i64::MAX;
            for i in 0..4 {
                for j in 0..8 {
                    let key = ((d[i][j] as i64) << 5) | (8 * i + j) as i64;
                    let skip = tame && gp[i][j] >= GP0999;
                    best = best.min(if skip { i64::MAX } else { key });
                }
            }
            if best >> 5 < MAX_32 as i64 {
                let n = (best & 31) as usize;
                return (cand1 + n / 8, cand2 + n % 8);
            }
            return (cand1, cand2);
        }
    }
    gain_search_ref(coeff, coeff_lsf, gcode0, cand1, cand2, tame)
}

fn gbk_presel(best_gain: &[i16; 2], gcode0: i16) -> (usize, usize) {
    let l_cfbg = l_mult(COEF[0][0], best_gain[0]);
    let mut l_acc = l_shr(L_COEF[1][1], 15);
    l_acc = l_add(l_cfbg, l_acc);
    let mut acc_h = extract_h(l_acc);
    let l_preg = l_mult(acc_h, gcode0);
    l_acc = l_shl(l_deposit_l(best_gain[1]), 7);
    l_acc = l_sub(l_acc, l_preg);
    acc_h = extract_h(l_shl(l_acc, 2));
    let l_tmp_x = l_mult(acc_h, INV_COEF);

    l_acc = l_shr(L_COEF[0][1], 10);
    l_acc = l_sub(l_cfbg, l_acc);
    acc_h = extract_h(l_acc);
    acc_h = mult(acc_h, gcode0);
    let l_tmp = l_mult(acc_h, COEF[1][0]);
    let l_preg = l_mult(COEF[0][0], best_gain[1]);
    l_acc = l_sub(l_tmp, l_shr(l_preg, 3));
    acc_h = extract_h(l_shl(l_acc, 2));
    let l_tmp_y = l_mult(acc_h, INV_COEF);

    let sft_y: i16 = (14 + 4 + 1) - 16;
    let sft_x: i16 = (15 + 4 + 1) - 15;
    let mut cand1 = 0usize;
    let mut cand2 = 0usize;
    if gcode0 > 0 {
        loop {
            if l_sub(l_tmp_y, l_shr(l_mult(THR1[cand1], gcode0), sft_y)) > 0 {
                cand1 += 1;
            } else {
                break;
            }
            if cand1 >= 4 {
                break;
            }
        }
        loop {
            if l_sub(l_tmp_x, l_shr(l_mult(THR2[cand2], gcode0), sft_x)) > 0 {
                cand2 += 1;
            } else {
                break;
            }
            if cand2 >= 8 {
                break;
            }
        }
    } else {
        loop {
            if l_sub(l_tmp_y, l_shr(l_mult(THR1[cand1], gcode0), sft_y)) < 0 {
                cand1 += 1;
            } else {
                break;
            }
            if cand1 == 4 {
                break;
            }
        }
        loop {
            if l_sub(l_tmp_x, l_shr(l_mult(THR2[cand2], gcode0), sft_x)) < 0 {
                cand2 += 1;
            } else {
                break;
            }
            if cand2 == 8 {
                break;
            }
        }
    }
    (cand1, cand2)
}

avx2_multiversion! {
    /// Windowed autocorrelation r[0..=10] in double precision.
    ///
    /// [`autocorr_body`], compiled for AVX2 where the CPU has it
    /// (`avx2_multiversion`).
    fn autocorr(x: &[i16; L_TOTAL], r_h: &mut [i16; MP1], r_l: &mut [i16; MP1]) = autocorr_body;
}

#[inline(always)]
fn autocorr_body(x: &[i16; L_TOTAL], r_h: &mut [i16; MP1], r_l: &mut [i16; MP1]) {
    let mut y = [0i16; L_WINDOW];
    for i in 0..L_WINDOW {
        y[i] = mult_r(x[i], HAMWINDOW[i]);
    }
    let mut sum;
    loop {
        // `l_mac_energy(1, &y)`: 1 + Σ 2 y² saturates exactly when the
        // exact sum exceeds MAX_32 (non-negative terms); formed in 64-bit
        // lanes.
        let e = 1 + 2 * y
            .iter()
            .map(|&v| (v as i32 * v as i32) as u32 as u64)
            .sum::<u64>();
        sum = e as i32;
        if e <= MAX_32 as u64 {
            break;
        }
        for v in y.iter_mut() {
            *v = shr(*v, 2);
        }
    }
    let norm = norm_l(sum);
    sum = l_shl(sum, norm);
    (r_h[0], r_l[0]) = l_extract(sum);
    // 1 + Σ 2y² did not saturate, so by Cauchy-Schwarz no running lagged
    // sum |Σ 2 y[j] y[j+i]| can reach 2^31: plain 64-bit sums are exact.
    // y followed by zeros: Σ_j y[j] y[j + i] is the dot product of y with
    // the shifted padded copy.
    let mut yp = [0i16; L_WINDOW + 16];
    yp[..L_WINDOW].copy_from_slice(&y);
    for i in 1..=M {
        let Ok(shifted) = <&[i16; L_WINDOW]>::try_from(&yp[i..i + L_WINDOW]) else {
            continue;
        };
        let s = dot8n(&y, shifted).wrapping_mul(2);
        let s = l_shl(s, norm);
        (r_h[i], r_l[i]) = l_extract(s);
    }
}

fn lag_window(r_h: &mut [i16; MP1], r_l: &mut [i16; MP1]) {
    for i in 1..=M {
        let x = mpy_32(r_h[i], r_l[i], LAG_H[i - 1], LAG_L[i - 1]);
        (r_h[i], r_l[i]) = l_extract(x);
    }
}

/// Chebyshev polynomial value at `x` (the reference's `Chebps_11`/`_10`):
/// exact 64-bit arithmetic when no operator of the reference saturates,
/// else the operator-by-operator replay.
#[inline(always)]
fn chebps(x: i16, f: &[i16; 6], q11: bool) -> i16 {
    chebps_fast(x, f, q11).unwrap_or_else(|| chebps_ref(x, f, q11))
}

/// [`chebps_ref`] in plain 64-bit arithmetic, or `None` when one of the
/// reference's operators would saturate (then the caller replays it).
/// Each running sum is checked to fit 32 bits; the products that could
/// saturate on their own are `L_mult(hi, x)` (excluded with
/// `x != -32768`) and `L_mult(b2_h, -32768)` (excluded by keeping every
/// extracted value at least `-2^31 + 2^16`, so `hi > -32768`).
#[inline(always)]
fn chebps_fast(x: i16, f: &[i16; 6], q11: bool) -> Option<i16> {
    let (b2h0, m2x, sh) = if q11 {
        (256i64, 512i64, 6)
    } else {
        (128, 256, 7)
    };
    if x == i16::MIN {
        return None;
    }
    let xl = x as i64;
    let fits = |v: i64| v == v as i32 as i64;
    let extractable = |v: i64| fits(v) && v >= i32::MIN as i64 + 0x1_0000;
    // L_mult(x, m2x) + L_mult(f[1], 4096): at most 2^25 + 2^28.
    let t = 2 * xl * m2x + 8192 * f[1] as i64;
    let (mut b1h, mut b1l) = (t >> 16, (t >> 1) & 0x7fff);
    let (mut b2h, mut b2l) = (b2h0, 0i64);
    for &fi in &f[2..5] {
        // Mpy_32_16 (its mult(lo, x) never saturates: lo >= 0), L_shl by 1,
        // then the three L_mac/L_msu.
        let s2 = 2 * (2 * b1h * xl + 2 * ((b1l * xl) >> 15));
        let s3 = s2 - 0x1_0000 * b2h;
        let s4 = s3 - 2 * b2l;
        let s5 = s4 + 8192 * fi as i64;
        if !(fits(s2) && fits(s3) && fits(s4) && extractable(s5)) {
            return None;
        }
        (b2h, b2l) = (b1h, b1l);
        (b1h, b1l) = (s5 >> 16, (s5 >> 1) & 0x7fff);
    }
    let m = 2 * b1h * xl + 2 * ((b1l * xl) >> 15);
    let s3 = m - 0x1_0000 * b2h;
    let s4 = s3 - 2 * b2l;
    let s5 = s4 + 4096 * f[5] as i64;
    if !(fits(m) && fits(s3) && fits(s4) && fits(s5)) {
        return None;
    }
    // L_shl saturates; extract_h.
    Some(((s5 << sh).clamp(i32::MIN as i64, i32::MAX as i64) >> 16) as i16)
}

/// [`chebps_fast`] at 8 abscissae at once, as independent lanes (plain
/// array code the compiler vectorises): the values, and whether
/// `chebps_fast` would have declined for at least one lane (then the
/// values are meaningless and the caller replays the points it needs).
///
/// Everything stays in 32-bit lanes. The reference's running sums of one
/// step are `s2 = 4u`, `s3 = 4t`, `s4 = 2q`, `s5 = 2r` with
/// `u = hi x + ((lo x) >> 15)`, `t = u - 2^14 b2h`, `q = 2t - b2l` and
/// `r = q + 2^12 f[i]`, so "`s` fits 32 bits" is a range test on `u`, `t`,
/// `q`, `r`; for a lane that passed the tests so far each of these fits
/// 32 bits (`|hi| < 2^15`, `0 <= lo < 2^15`), and `hi = r >> 15`,
/// `lo = r & 0x7fff`. The last step is the same with `u`, `u - 2^15 b2h`,
/// `- b2l`, `+ 2^11 f[5]` all tested against `[-2^30, 2^30)`, and the
/// saturating shift is a clamp.
///
/// The range tests are running lane maxima and minima per range (two
/// operations a value), compared with the bounds once at the end: a lane
/// that leaves a range keeps its out-of-range extreme whatever its later
/// (wrapped, meaningless) values are, so the final test sees it.
#[inline(always)]
fn chebps8(x: &[i16; 8], f: &[i16; 6], q11: bool) -> ([i16; 8], bool) {
    let (b2h0, m2x, sh) = if q11 {
        (256i32, 512i32, 6)
    } else {
        (128, 256, 7)
    };
    let xi: [i32; 8] = x.map(|v| v as i32);
    // Extremes of the values tested against [-2^29, 2^29), [-2^30, 2^30)
    // and (the new `r`) [-2^30 + 2^15, 2^30).
    let (mut max29, mut min29) = ([0i32; 8], [0i32; 8]);
    let (mut max30, mut min30, mut minr) = ([0i32; 8], [0i32; 8], [0i32; 8]);
    let (mut b1h, mut b1l) = ([0i32; 8], [0i32; 8]);
    let (mut b2h, mut b2l) = ([b2h0; 8], [0i32; 8]);
    for l in 0..8 {
        // At most 2^25 + 2^28: fits.
        let t = 2 * xi[l] * m2x + 8192 * f[1] as i32;
        b1h[l] = t >> 16;
        b1l[l] = (t >> 1) & 0x7fff;
        // x = -32768 (whose `L_mult(hi, x)` could saturate) declines.
        min29[l] = (xi[l] << 14) - 1;
    }
    for &fi in &f[2..5] {
        for l in 0..8 {
            let u = (b1h[l] * xi[l]).wrapping_add((b1l[l] * xi[l]) >> 15);
            let t = u.wrapping_sub(b2h[l] * 16384);
            let q = t.wrapping_mul(2).wrapping_sub(b2l[l]);
            let r = q.wrapping_add(4096 * fi as i32);
            max29[l] = max29[l].max(u).max(t);
            min29[l] = min29[l].min(u).min(t);
            max30[l] = max30[l].max(q).max(r);
            min30[l] = min30[l].min(q);
            minr[l] = minr[l].min(r);
            b2h[l] = b1h[l];
            b2l[l] = b1l[l];
            b1h[l] = r >> 15;
            b1l[l] = r & 0x7fff;
        }
    }
    let mut y = [0i16; 8];
    let mut bad = [false; 8];
    for l in 0..8 {
        let u = (b1h[l] * xi[l]).wrapping_add((b1l[l] * xi[l]) >> 15);
        let t = u.wrapping_sub(b2h[l] * 32768);
        let t1 = t.wrapping_sub(b2l[l]);
        let t2 = t1.wrapping_add(2048 * f[5] as i32);
        let hi = max30[l].max(u).max(t).max(t1).max(t2);
        let lo = min30[l].min(u).min(t).min(t1).min(t2);
        bad[l] = (max29[l] >= 1 << 29)
            | (min29[l] < -(1 << 29))
            | (hi >= 1 << 30)
            | (lo < -(1 << 30))
            | (minr[l] < -(1 << 30) + (1 << 15));
        // extract_h(L_shl(2 t2, sh)).
        y[l] = (t2 >> (15 - sh)).clamp(i16::MIN as i32, i16::MAX as i32) as i16;
    }
    (y, bad.iter().any(|&b| b))
}

/// [`chebps`] through the 8-lane kernel (fewer operations than the 64-bit
/// scalar form).
#[inline(always)]
fn chebps1(x: i16, f: &[i16; 6], q11: bool) -> i16 {
    match chebps8(&[x; 8], f, q11) {
        (y, false) => y[0],
        (_, true) => chebps_ref(x, f, q11),
    }
}

/// [`GRID`] padded to whole blocks of 8 with its last point.
const GRID_PADDED: [i16; 56] = {
    let mut g = [GRID[GRID.len() - 1]; 56];
    let mut i = 0;
    while i < GRID.len() {
        g[i] = GRID[i];
        i += 1;
    }
    g
};

/// The reference's `Chebps` operator by operator.
fn chebps_ref(x: i16, f: &[i16; 6], q11: bool) -> i16 {
    let (b2h0, m2x, sh) = if q11 { (256, 512, 6) } else { (128, 256, 7) };
    let mut b2_h: i16 = b2h0;
    let mut b2_l: i16 = 0;
    let mut t0 = l_mult(x, m2x);
    t0 = l_mac(t0, f[1], 4096);
    let (mut b1_h, mut b1_l) = l_extract(t0);
    for &fi in f.iter().take(5).skip(2) {
        let mut t0 = mpy_32_16(b1_h, b1_l, x);
        t0 = l_shl(t0, 1);
        t0 = l_mac(t0, b2_h, -32768);
        t0 = l_msu(t0, b2_l, 1);
        t0 = l_mac(t0, fi, 4096);
        let (b0_h, b0_l) = l_extract(t0);
        b2_l = b1_l;
        b2_h = b1_h;
        b1_l = b0_l;
        b1_h = b0_h;
    }
    let mut t0 = mpy_32_16(b1_h, b1_l, x);
    t0 = l_mac(t0, b2_h, -32768);
    t0 = l_msu(t0, b2_l, 1);
    t0 = l_mac(t0, f[5], 2048);
    t0 = l_shl(t0, sh);
    extract_h(t0)
}

/// 16-bit add/sub that also report the reference's saturation flag.
fn add_ov(a: i16, b: i16, ov: &mut bool) -> i16 {
    let r = a as i32 + b as i32;
    if r != sat16(r) as i32 {
        *ov = true;
    }
    sat16(r)
}
fn sub_ov(a: i16, b: i16, ov: &mut bool) -> i16 {
    let r = a as i32 - b as i32;
    if r != sat16(r) as i32 {
        *ov = true;
    }
    sat16(r)
}

avx2_multiversion! {
    /// [`az_lsp_body`], compiled for AVX2 where the CPU has it
    /// (`avx2_multiversion`).
    fn az_lsp(a: &[i16; MP1], lsp: &mut [i16; M], old_lsp: &[i16; M]) = az_lsp_body;
}

#[inline(always)]
fn az_lsp_body(a: &[i16; MP1], lsp: &mut [i16; M], old_lsp: &[i16; M]) {
    let mut f1 = [0i16; 6];
    let mut f2 = [0i16; 6];
    let mut ovf = false;
    f1[0] = 2048;
    f2[0] = 2048;
    for i in 0..5 {
        let mut o = false;
        let t0 = l_mac_ov(l_mult_ov(a[i + 1], 16384, &mut o), a[M - i], 16384, &mut o);
        let x = extract_h(t0);
        f1[i + 1] = sub_ov(x, f1[i], &mut o);
        let t0 = l_msu_ov(l_mult_ov(a[i + 1], 16384, &mut o), a[M - i], 16384, &mut o);
        let x = extract_h(t0);
        f2[i + 1] = add_ov(x, f2[i], &mut o);
        ovf |= o;
    }
    let q11 = !ovf;
    if ovf {
        f1[0] = 1024;
        f2[0] = 1024;
        for i in 0..5 {
            let t0 = l_mac(l_mult(a[i + 1], 8192), a[M - i], 8192);
            f1[i + 1] = sub(extract_h(t0), f1[i]);
            let t0 = l_msu(l_mult(a[i + 1], 8192), a[M - i], 8192);
            f2[i + 1] = add(extract_h(t0), f2[i]);
        }
    }
    // Both polynomials on the whole grid up front, eight points at a time
    // (the search below reads each grid point of one of them); when the
    // fast evaluation declines for a point of a block, the block is
    // replayed point by point.
    let mut grid_y = [[0i16; GRID_PADDED.len()]; 2];
    for (p, coef) in [&f1, &f2].into_iter().enumerate() {
        let blocks = grid_y[p].as_chunks_mut::<8>().0.iter_mut();
        for (ys, xs) in blocks.zip(GRID_PADDED.as_chunks::<8>().0) {
            let bad;
            (*ys, bad) = chebps8(xs, coef, q11);
            if bad {
                *ys = xs.map(|x| chebps(x, coef, q11));
            }
        }
    }
    let mut nf = 0usize;
    let mut ip = 0;
    let mut coef = &f1;
    let mut xlow = GRID[0];
    let mut ylow = grid_y[0][0];
    let mut j = 0usize;
    while nf < M && j < 50 {
        j += 1;
        let mut xhigh = xlow;
        let mut yhigh = ylow;
        xlow = GRID[j];
        ylow = grid_y[ip][j];
        if l_mult(ylow, yhigh) <= 0 {
            // Two bisection steps. The second midpoint is one of two points
            // known before the first step's sign test: all three points in
            // one evaluation, off the serial chain of two.
            let m1 = add(shr(xlow, 1), shr(xhigh, 1));
            let pts = [
                m1,
                add(shr(xlow, 1), shr(m1, 1)),
                add(shr(m1, 1), shr(xhigh, 1)),
            ];
            let xs: [i16; 8] = std::array::from_fn(|l| pts[l.min(2)]);
            let (mut ys, bad) = chebps8(&xs, coef, q11);
            if bad {
                ys = xs.map(|x| chebps(x, coef, q11));
            }
            let value = |l: usize| ys[l];
            // Lane of this step's midpoint: m1, then the lower or upper one.
            let mut l = 0;
            for _ in 0..2 {
                let (xmid, ymid) = (xs[l], value(l));
                if l_mult(ylow, ymid) <= 0 {
                    yhigh = ymid;
                    xhigh = xmid;
                    l = 1;
                } else {
                    ylow = ymid;
                    xlow = xmid;
                    l = 2;
                }
            }
            let x = sub(xhigh, xlow);
            let mut y = sub(yhigh, ylow);
            let xint = if y == 0 {
                xlow
            } else {
                let sign = y;
                y = abs_s(y);
                let exp = norm_s(y);
                y = shl(y, exp);
                y = div_s(16383, y);
                let mut t0 = l_mult(x, y);
                t0 = l_shr(t0, sub(20, exp));
                y = extract_l(t0);
                if sign < 0 {
                    y = negate(y);
                }
                let t0 = l_shr(l_mult(ylow, y), 11);
                sub(xlow, extract_l(t0))
            };
            lsp[nf] = xint;
            xlow = xint;
            nf += 1;
            if ip == 0 {
                ip = 1;
                coef = &f2;
            } else {
                ip = 0;
                coef = &f1;
            }
            ylow = chebps1(xlow, coef, q11);
        }
    }
    if nf < M {
        *lsp = *old_lsp;
    }
}

/// `extract_h(L_shl(L_mult(x, y), n))` for `0 <= x, y <= 2^15` (not both
/// `2^15`), `n <= 15`: `min(x y >> (15 - n), MAX_16)`. The saturating
/// `L_mult` then `L_shl` is `min(2^(n+1) x y, MAX_32)`; when that is
/// below the cap, its high word is `x y >> (15 - n)` (at most `MAX_16`);
/// else `x y >= 2^(30 - n)`, so `x y >> (15 - n) >= 2^15` and both sides
/// are `MAX_16`. `x y <= 2^30` fits 32 bits.
#[inline(always)]
fn mult_shl_h(x: i32, y: i32, n: u32) -> i32 {
    ((x * y) >> (15 - n)).min(MAX_16 as i32)
}

/// The weight of one LSF from its spacing `b` (`buf[i]` of the reference):
/// 2048 for `b > 0`, else the operator chain `add(extract_h(L_shl(L_mult(
/// extract_h(L_shl(L_mult(b, b), 2)), CONST10), 2)), 2048)`, branch-free
/// ([`mult_shl_h`]: `L_mult(b, b)` is that of `|b|`, also for `b =
/// -32768`, where it saturates as `2^15 * 2^15 >> 13` is capped); `add` of
/// two non-negative values is capped at `MAX_16`.
#[inline(always)]
fn wegt_lane(b: i16) -> i32 {
    let a = (b as i32).abs();
    let t = mult_shl_h(mult_shl_h(a, a, 2), CONST10 as i32, 2);
    if b > 0 {
        2048
    } else {
        (t + 2048).min(MAX_16 as i32)
    }
}

/// The LSF weights: [`wegt_lane`] of each spacing, elements 4 and 5 by
/// `extract_h(L_shl(L_mult(w, CONST12), 1))` ([`mult_shl_h`]), then all shifted left by `norm_s` of the largest.
/// Every weight is at least 2048 before the scaling (elements 4 and 5
/// `4 * 2048 * CONST12 >> 16 > 0` after it), so the largest is positive
/// and no weight shifted by its `norm_s` leaves 16 bits: the reference's
/// `shl` is the plain shift.
fn get_wegt(flsp: &[i16; M], wegt: &mut [i16; M]) {
    let mut buf = [0i16; M];
    buf[0] = sub(flsp[1], PI04 + 8192);
    for i in 1..M - 1 {
        buf[i] = sub(sub(flsp[i + 1], flsp[i - 1]), 8192);
    }
    buf[M - 1] = sub(PI92 - 8192, flsp[M - 2]);
    let mut w = buf.map(wegt_lane);
    for v in &mut w[4..6] {
        *v = mult_shl_h(*v, CONST12 as i32, 1);
    }
    let max = w.iter().copied().fold(0, i32::max);
    debug_assert!(max > 0);
    let sft = norm_s(max as i16);
    for (d, &v) in wegt.iter_mut().zip(&w) {
        *d = (v << sft) as i16;
    }
}

/// The reference's weighted distortion of the quantised vector `buf` from
/// the target `rbuf`: the `L_mac` chain from 0 of `tmp2 * tmp` with `tmp =
/// mult(sub(buf, rbuf), fg_sum)` and `tmp2 = extract_h(L_shl(L_mult(wegt,
/// tmp), 4))`. With `wegt >= 0` (as [`get_wegt`] gives it) `tmp2` has the
/// sign of `tmp` or is 0, so every term is non-negative and the chain is
/// the exact sum capped at `MAX_32` (a saturated `L_mult`, of `-32768^2`,
/// exceeds it too); each lane is branch-free (`mult` saturates only at
/// `(-2^15)^2`, `L_mult(wegt, tmp)` not at all, `L_shl` is a clamp).
/// Other weights take the chain.
#[inline(always)]
fn lsp_wdist(buf: &[i16; M], rbuf: &[i16; M], fg_sum: &[i16; M], wegt: &[i16; M]) -> i32 {
    if wegt.iter().all(|&w| w >= 0) {
        let s: i64 = (0..M)
            .map(|j| {
                let t = (buf[j].saturating_sub(rbuf[j]) as i32 * fg_sum[j] as i32) >> 15;
                let t = t.min(MAX_16 as i32) as i64;
                let l = (32 * wegt[j] as i64 * t).clamp(MIN_32 as i64, MAX_32 as i64);
                2 * (l >> 16) * t
            })
            .sum();
        return s.min(MAX_32 as i64) as i32;
    }
    let mut d = 0i32;
    for j in 0..M {
        let tmp = mult(sub(buf[j], rbuf[j]), fg_sum[j]);
        let l = l_mult(wegt[j], tmp);
        let tmp2 = extract_h(l_shl(l, 4));
        d = l_mac(d, tmp2, tmp);
    }
    d
}

/// [`select_2nd`] of the lower (`0..5`) and the upper (`5..M`) half, both
/// at once by [`lsp_stage2_pair`] when every weight is non-negative (as
/// [`get_wegt`] gives them; else each half by `select_2nd`).
#[inline(always)]
fn select_2nd_pair(rbuf: &[i16; M], cb1: &[i16; M], wegt: &[i16; M]) -> [usize; 2] {
    if wegt.iter().all(|&w| w >= 0) {
        let buf: [i16; M] = std::array::from_fn(|j| sub(rbuf[j], cb1[j]));
        return lsp_stage2_pair(&buf, wegt, lspcb2_cols());
    }
    [
        select_2nd(rbuf, cb1, wegt, 0, 5),
        select_2nd(rbuf, cb1, wegt, 5, M),
    ]
}

#[inline(always)]
fn select_2nd(rbuf: &[i16; M], cb1: &[i16; M], wegt: &[i16; M], from: usize, to: usize) -> usize {
    let mut buf = [0i16; M];
    for j in from..to {
        buf[j] = sub(rbuf[j], cb1[j]);
    }
    let mut index = 0;
    let mut dmin = MAX_32;
    // With non-negative weights every term mult(w, t) * t is >= 0, so the
    // running sum only grows and saturates exactly when the true sum
    // exceeds MAX_32 (the -32768^2 product alone exceeds it too).
    let nonneg = wegt[from..to].iter().all(|&w| w >= 0);
    if nonneg && to - from == 5 && to <= M {
        // All 32 entries eight at a time, column-wise.
        let b5: [i16; 5] = std::array::from_fn(|j| buf[from + j]);
        let w5: [i16; 5] = std::array::from_fn(|j| wegt[from + j]);
        return lsp_stage2(&b5, &w5, &lspcb2_cols()[from / 5]);
    }
    for (k, cb2) in LSPCB2.iter().enumerate() {
        let d = if nonneg {
            let mut s = 0i64;
            for j in from..to {
                let tmp = sub(buf[j], cb2[j]);
                let tmp2 = mult(wegt[j], tmp);
                s += 2 * (tmp2 as i64 * tmp as i64);
            }
            s.min(MAX_32 as i64) as i32
        } else {
            let mut d = 0i32;
            for j in from..to {
                let tmp = sub(buf[j], cb2[j]);
                let tmp2 = mult(wegt[j], tmp);
                d = l_mac(d, tmp2, tmp);
            }
            d
        };
        if l_sub(d, dmin) < 0 {
            dmin = d;
            index = k;
        }
    }
    index
}

fn lsp_expand(buf: &mut [i16; M], gap: i16, from: usize, to: usize) {
    for j in from..to {
        let diff = sub(buf[j - 1], buf[j]);
        let tmp = shr(add(diff, gap), 1);
        if tmp > 0 {
            buf[j - 1] = sub(buf[j - 1], tmp);
            buf[j] = add(buf[j], tmp);
        }
    }
}

/// `Σ x²` exactly for up to 2^33 samples: a pair of squares (each at most
/// 2^30) fits 32 unsigned bits (the `pmaddwd` lane, which wraps only past
/// `i32::MAX`), summed in 64 bits.
#[inline(always)]
fn energy64(v: &[i16]) -> i64 {
    let (pairs, rest) = v.as_chunks::<2>();
    let sq = |x: i16| x as i32 * x as i32;
    let s: u64 = pairs
        .iter()
        .map(|&[a, b]| sq(a).wrapping_add(sq(b)) as u32 as u64)
        .sum();
    s as i64 + rest.iter().map(|&x| sq(x) as i64).sum::<i64>()
}

/// The first lags of the groups of four lags `t, t + 2, t + 4, t + 6` of
/// [`pitch_ol_fast`]'s correlation table: every even lag in `20..=142`,
/// every odd one in `21..=83`.
const OL_GROUPS: [usize; 24] = [
    20, 28, 36, 44, 52, 60, 68, 76, 84, 92, 100, 108, 116, 124, 132, 136, 21, 29, 37, 45, 53, 61,
    69, 77,
];

avx2_multiversion! {
    /// Open-loop pitch on the weighted speech (`wsp[PIT_MAX..]` is the frame).
    ///
    /// [`pitch_ol_fast_body`], compiled for AVX2 where the CPU has it
    /// (`avx2_multiversion`).
    fn pitch_ol_fast(wsp: &[i16; L_FRAME + PIT_MAX]) -> i16 = pitch_ol_fast_body;
}

#[inline(always)]
fn pitch_ol_fast_body(wsp: &[i16; L_FRAME + PIT_MAX]) -> i16 {
    let mut scal = [0i16; L_FRAME + PIT_MAX];
    let mut dec = [0i16; (L_FRAME + PIT_MAX).div_ceil(2)];
    for (d, w) in dec.iter_mut().zip(wsp.iter().step_by(2)) {
        *d = *w;
    }
    let (sum, ov) = l_mac_energy(0, &dec);
    if ov {
        for i in 0..scal.len() {
            scal[i] = shr(wsp[i], 3);
        }
    } else if l_sub(sum, 1_048_576) < 0 {
        for i in 0..scal.len() {
            scal[i] = shl(wsp[i], 3);
        }
    } else {
        scal = *wsp;
    }
    // Even and odd samples apart, so every decimated sum is contiguous:
    // scal[PIT_MAX + 2m - t] for m = 0..40 (PIT_MAX is odd).
    const HALF: usize = (L_FRAME + PIT_MAX).div_ceil(2);
    let mut even = [0i16; HALF];
    let mut odd = [0i16; HALF];
    // Pairwise, without a branch per sample; the odd length leaves one
    // last even sample.
    let (pairs, last) = scal.as_chunks::<2>();
    for ((e, o), &[v0, v1]) in even.iter_mut().zip(odd.iter_mut()).zip(pairs) {
        *e = v0;
        *o = v1;
    }
    if let (Some(&v), Some(e)) = (last.first(), even.get_mut(pairs.len())) {
        *e = v;
    }
    let cur = &odd[PIT_MAX / 2..PIT_MAX / 2 + L_FRAME / 2];
    let past = |t: usize| -> &[i16] {
        let start = PIT_MAX - t;
        let half = if start % 2 == 0 { &even } else { &odd };
        &half[start / 2..start / 2 + L_FRAME / 2]
    };
    // Cauchy-Schwarz: every running sum of a correlation is at most
    // sqrt(E_cur E_half) with E_half the energy of the whole half it reads;
    // when twice that fits in 32 bits no L_mac step saturates and plain
    // 32-bit sums are exact.
    let e_half = energy64(&even).max(energy64(&odd)) as i128;
    let exact = 4 * energy64(cur) as i128 * e_half <= MAX_32 as i128 * MAX_32 as i128;
    let cur40: &[i16; L_FRAME / 2] = match cur.try_into() {
        Ok(c) => c,
        Err(_) => return PIT_MIN as i16,
    };
    // With `exact`, the correlations of the lags the searches read (all
    // even lags, the odd ones up to 83) four at a time: the lags t + 2q of
    // a group read windows of one half one sample apart, going down.
    let mut table = [0i32; PIT_MAX + 1];
    if exact {
        for &t in &OL_GROUPS {
            let start = PIT_MAX - t - 6;
            let half = if start.is_multiple_of(2) { &even } else { &odd };
            if let Some(Ok(w)) = half.get(start / 2..start / 2 + 43).map(|w| w.try_into()) {
                let y = dot40_down4(cur40, w);
                for q in 0..4 {
                    table[t + 2 * q] = y[q].wrapping_mul(2);
                }
            }
        }
    }
    let corr = |t: usize| -> i32 {
        if exact && (t.is_multiple_of(2) || t <= 83) {
            return table[t];
        }
        match (exact, past(t).try_into()) {
            (true, Ok(p)) => dot8n::<{ L_FRAME / 2 }>(cur40, p).wrapping_mul(2),
            _ => l_mac_dot(0, cur, past(t)),
        }
    };
    let norm = |t: usize, max: i32| -> i16 {
        let (s, _) = l_mac_energy(1, past(t));
        let s = inv_sqrt(s);
        let (mh, ml) = l_extract(max);
        let (eh, el) = l_extract(s);
        extract_l(mpy_32(mh, ml, eh, el))
    };
    let search = |lo: usize, hi: usize, step: usize| -> (i32, usize) {
        let mut max = MIN_32;
        let mut t = lo;
        let mut i = lo;
        while i < hi {
            // (The table holds every lag searched here.)
            let s = if exact { table[i] } else { corr(i) };
            if l_sub(s, max) > 0 {
                max = s;
                t = i;
            }
            i += step;
        }
        (max, t)
    };
    let (m, mut t1) = search(20, 40, 1);
    let mut max1 = norm(t1, m);
    let (m, t2) = search(40, 80, 1);
    let mut max2 = norm(t2, m);
    let (mut m, mut t3) = search(80, 143, 2);
    let i = t3;
    let s = corr(i + 1);
    if l_sub(s, m) > 0 {
        m = s;
        t3 = i + 1;
    }
    let s = corr(i - 1);
    if l_sub(s, m) > 0 {
        m = s;
        t3 = i - 1;
    }
    let max3 = norm(t3, m);

    let (t1s, t2s, t3s) = (t1 as i16, t2 as i16, t3 as i16);
    let mut i = sub(shl(t2s, 1), t3s);
    if sub(abs_s(i), 5) < 0 {
        max2 = add(max2, shr(max3, 2));
    }
    i = add(i, t2s);
    if sub(abs_s(i), 7) < 0 {
        max2 = add(max2, shr(max3, 2));
    }
    let mut i = sub(shl(t1s, 1), t2s);
    if sub(abs_s(i), 5) < 0 {
        max1 = add(max1, mult(max2, 6554));
    }
    i = add(i, t1s);
    if sub(abs_s(i), 7) < 0 {
        max1 = add(max1, mult(max2, 6554));
    }
    if max1 < max2 {
        max1 = max2;
        t1 = t2;
    }
    if max1 < max3 {
        t1 = t3;
    }
    t1 as i16
}

avx2_multiversion! {
    /// [`cor_h_x_body`], compiled for AVX2 where the CPU has it
    /// (`avx2_multiversion`).
    fn cor_h_x(h: &[i16; L_SUBFR], x: &[i16; L_SUBFR], d: &mut [i16; L_SUBFR]) = cor_h_x_body;
}

#[inline(always)]
fn cor_h_x_body(h: &[i16; L_SUBFR], x: &[i16; L_SUBFR], d: &mut [i16; L_SUBFR]) {
    let mut y32 = [0i32; L_SUBFR];
    // Cauchy-Schwarz: every running sum |Σ_{k<K} x[i+k] h[k]| is at most
    // sqrt(Σx² Σh²); when twice that fits in 32 bits no L_mac step (nor the
    // -32768² product) saturates and plain 32-bit sums are exact.
    let (ex, eh) = (energy64(x), energy64(h));
    if (4 * ex as i128) * (eh as i128) <= (MAX_32 as i128) * (MAX_32 as i128) {
        corr_tri40(x, h, &mut y32);
        for y in y32.iter_mut() {
            *y = y.wrapping_mul(2);
        }
    } else {
        for (i, y) in y32.iter_mut().enumerate() {
            *y = l_mac_dot(0, &x[i..], &h[..L_SUBFR - i]);
        }
    }
    let mut max = 0i32;
    for &s in y32.iter() {
        let s = l_abs(s);
        if l_sub(s, max) > 0 {
            max = s;
        }
    }
    let mut j = norm_l(max);
    if j > 16 {
        j = 16;
    }
    let j = sub(18, j);
    for i in 0..L_SUBFR {
        d[i] = extract_l(l_shr(y32[i], j));
    }
}

fn dot(x: &[i16], y: &[i16]) -> i32 {
    l_mac_dot(0, x, y)
}

/// `dot(dn, x)` (the reference's `L_mac` chain from 0) for `x` of 40
/// samples, given `dn_abs = Σ|dn[k]|`: when `2 dn_abs max|x| <= MAX_32`
/// no product nor prefix sum of the chain can saturate, so the pairwise
/// sum modulo 2^32 ([`dot8n`]) is the exact value; else the checked [`dot`].
#[inline(always)]
fn dot40(dn: &[i16; L_SUBFR], dn_abs: i64, x: &[i16]) -> i32 {
    let Some(x40) = x.first_chunk::<L_SUBFR>() else {
        return dot(dn, x);
    };
    let (lo, hi) = x40
        .iter()
        .fold((0i16, 0i16), |(lo, hi), &v| (lo.min(v), hi.max(v)));
    let xmax = (hi as i64).max(-(lo as i64));
    if 2 * dn_abs * xmax <= MAX_32 as i64 {
        // |Σ| <= 2^30: doubling is exact.
        dot8n(dn, x40).wrapping_mul(2)
    } else {
        dot(dn, x)
    }
}

avx2_multiversion! {
    /// [`pitch_fr3_fast_body`], compiled for AVX2 where the CPU has it
    /// (`avx2_multiversion`).
    #[allow(clippy::too_many_arguments)]
    fn pitch_fr3_fast(
        exc: &mut [i16],
        pos: usize,
        xn: &[i16; L_SUBFR],
        h: &[i16; L_SUBFR],
        t0_min: i16,
        t0_max: i16,
        sf: usize,
        pit_frac: &mut i16,
    ) -> i16 = pitch_fr3_fast_body;
}

#[allow(clippy::too_many_arguments)]
#[inline(always)]
fn pitch_fr3_fast_body(
    exc: &mut [i16],
    pos: usize,
    xn: &[i16; L_SUBFR],
    h: &[i16; L_SUBFR],
    t0_min: i16,
    t0_max: i16,
    sf: usize,
    pit_frac: &mut i16,
) -> i16 {
    let mut dn = [0i16; L_SUBFR];
    cor_h_x(h, xn, &mut dn);
    let dn_abs = abs_sum8n(&dn) as i64;
    let dot = |a: &[i16; L_SUBFR], x: &[i16]| dot40(a, dn_abs, x);
    // All the integer-lag windows lie in exc[pos - t0_max..pos - t0_min +
    // 40]: when `2 dn_abs max|exc|` over that span fits, every correlation
    // is the plain sum ([`dot40`]'s bound, checked once for all lags).
    let span = exc.get(pos - t0_max as usize..pos - t0_min as usize + L_SUBFR);
    let span_max = span.map_or(i64::MAX, |v| {
        v.iter().map(|x| x.unsigned_abs()).max().unwrap_or(0) as i64
    });
    let all_fit = dn_abs.saturating_mul(span_max).saturating_mul(2) <= MAX_32 as i64;
    let mut max = MIN_32;
    let mut t0 = t0_min;
    for t in t0_min..=t0_max {
        let s = pos - t as usize;
        let corr = match exc.get(s..s + L_SUBFR).map(|w| w.try_into()) {
            // |Σ| <= 2^30: doubling is exact.
            Some(Ok(w)) if all_fit => dot8n(&dn, w).wrapping_mul(2),
            _ => dot(&dn, &exc[s..s + L_SUBFR]),
        };
        if l_sub(corr, max) > 0 {
            max = corr;
            t0 = t;
        }
    }
    pred_lt_3(exc, pos, t0, 0, L_SUBFR);
    let mut max = dot(&dn, &exc[pos..pos + L_SUBFR]);
    *pit_frac = 0;
    if sf == 0 && t0 > 84 {
        return t0;
    }
    let mut tmp = [0i16; L_SUBFR];
    tmp.copy_from_slice(&exc[pos..pos + L_SUBFR]);
    pred_lt_3(exc, pos, t0, -1, L_SUBFR);
    let corr = dot(&dn, &exc[pos..pos + L_SUBFR]);
    if l_sub(corr, max) > 0 {
        max = corr;
        *pit_frac = -1;
        tmp.copy_from_slice(&exc[pos..pos + L_SUBFR]);
    }
    pred_lt_3(exc, pos, t0, 1, L_SUBFR);
    let corr = dot(&dn, &exc[pos..pos + L_SUBFR]);
    if l_sub(corr, max) > 0 {
        *pit_frac = 1;
    } else {
        exc[pos..pos + L_SUBFR].copy_from_slice(&tmp);
    }
    t0
}

avx2_multiversion! {
    /// [`g_pitch_body`], compiled for AVX2 where the CPU has it
    /// (`avx2_multiversion`).
    fn g_pitch(xn: &[i16; L_SUBFR], y1: &[i16; L_SUBFR], g_coeff: &mut [i16; 4]) -> i16 = g_pitch_body;
    /// [`corr_xy2_body`], compiled for AVX2 where the CPU has it
    /// (`avx2_multiversion`).
    fn corr_xy2(
        xn: &[i16; L_SUBFR],
        y1: &[i16; L_SUBFR],
        y2: &[i16; L_SUBFR],
        g: &mut [i16; 5],
        e: &mut [i16; 5],
    ) = corr_xy2_body;
}

#[inline(always)]
fn g_pitch_body(xn: &[i16; L_SUBFR], y1: &[i16; L_SUBFR], g_coeff: &mut [i16; 4]) -> i16 {
    let mut scaled = [0i16; L_SUBFR];
    for i in 0..L_SUBFR {
        scaled[i] = shr(y1[i], 2);
    }
    let (s, ov) = l_mac_energy(1, y1);
    let (yy, exp_yy) = if !ov {
        let e = norm_l(s);
        (round(l_shl(s, e)), e)
    } else {
        let (s, _) = l_mac_energy(1, &scaled);
        let e = norm_l(s);
        (round(l_shl(s, e)), sub(e, 4))
    };
    let mut ov = false;
    let s = l_mac_dot_ov(0, xn, y1, &mut ov);
    let (xy, exp_xy) = if !ov {
        let e = norm_l(s);
        (round(l_shl(s, e)), e)
    } else {
        let s = l_mac_dot(0, xn, &scaled);
        let e = norm_l(s);
        (round(l_shl(s, e)), sub(e, 2))
    };
    g_coeff[0] = yy;
    g_coeff[1] = sub(15, exp_yy);
    g_coeff[2] = xy;
    g_coeff[3] = sub(15, exp_xy);
    if xy <= 0 {
        g_coeff[3] = -15;
        return 0;
    }
    let xy = shr(xy, 1);
    let mut gain = div_s(xy, yy);
    let i = sub(exp_xy, exp_yy);
    gain = shr(gain, i);
    if gain > 19661 {
        gain = 19661;
    }
    gain
}

/// `x[i] - y[i] g` as the reference forms it: `sub(x[i],
/// extract_h(L_shl(L_mult(y[i], g), 1)))`. With `p = y g` (exact in 32
/// bits), `extract_h(L_shl(L_mult(y, g), 1))` is `sat16(p >> 14)`: when
/// `4p` fits, `floor(4p / 2^16) = p >> 14`; when it does not, both sides
/// saturate to the same end (also for `(-32768)^2`, whose `L_mult`
/// saturates). So the loop is branch-free 16-bit lane arithmetic.
#[inline(always)]
fn sub_scaled(x: &[i16; L_SUBFR], y: &[i16; L_SUBFR], g: i16) -> [i16; L_SUBFR] {
    std::array::from_fn(|i| {
        let t = ((y[i] as i32 * g as i32) >> 14).clamp(MIN_16 as i32, MAX_16 as i32) as i16;
        x[i].saturating_sub(t)
    })
}

fn enc_lag3(t0: i16, t0_frac: i16, t0_min: &mut i16, t0_max: &mut i16, sf: usize) -> i16 {
    if sf == 0 {
        let index = if t0 <= 85 {
            add(sub(add(add(t0, t0), t0), 58), t0_frac)
        } else {
            add(t0, 112)
        };
        *t0_min = sub(t0, 5);
        if *t0_min < PIT_MIN as i16 {
            *t0_min = PIT_MIN as i16;
        }
        *t0_max = add(*t0_min, 9);
        if *t0_max > PIT_MAX as i16 {
            *t0_max = PIT_MAX as i16;
            *t0_min = sub(*t0_max, 9);
        }
        index
    } else {
        let i = sub(t0, *t0_min);
        let i = add(add(i, i), i);
        add(add(i, 2), t0_frac)
    }
}

#[inline(always)]
fn corr_xy2_body(
    xn: &[i16; L_SUBFR],
    y1: &[i16; L_SUBFR],
    y2: &[i16; L_SUBFR],
    g: &mut [i16; 5],
    e: &mut [i16; 5],
) {
    let mut sy2 = [0i16; L_SUBFR];
    for i in 0..L_SUBFR {
        sy2[i] = shr(y2[i], 3);
    }
    let (l, _) = l_mac_energy(1, &sy2);
    let exp = norm_l(l);
    g[2] = round(l_shl(l, exp));
    e[2] = add(exp, 19 - 16);

    let l = l_mac_dot(1, xn, &sy2);
    let exp = norm_l(l);
    g[3] = negate(round(l_shl(l, exp)));
    e[3] = sub(add(exp, 10 - 16), 1);

    let l = l_mac_dot(1, y1, &sy2);
    let exp = norm_l(l);
    g[4] = round(l_shl(l, exp));
    e[4] = sub(add(exp, 10 - 16), 1);
}

/// Annex A algebraic codebook search; returns (positions index, signs).
#[inline(never)]
fn acelp_code_a(
    x: &[i16; L_SUBFR],
    h: &mut [i16; L_SUBFR],
    t0: i16,
    pitch_sharp: i16,
    code: &mut [i16; L_SUBFR],
    y: &mut [i16; L_SUBFR],
) -> (i16, i16) {
    let sharp = shl(pitch_sharp, 1);
    let t0u = t0 as usize;
    if t0u < L_SUBFR {
        for i in t0u..L_SUBFR {
            h[i] = add(h[i], mult(h[i - t0u], sharp));
        }
    }
    let mut rr = [0i16; DIM_RR];
    cor_h(h, &mut rr);
    let mut dn = [0i16; L_SUBFR];
    cor_h_x(h, x, &mut dn);
    let (index, sign) = d4i40_17_fast(&mut dn, &mut rr, h, code, y);
    if t0u < L_SUBFR {
        for i in t0u..L_SUBFR {
            code[i] = add(code[i], mult(code[i - t0u], sharp));
        }
    }
    (index, sign)
}

avx2_multiversion! {
    /// [`cor_h_body`], compiled for AVX2 where the CPU has it
    /// (`avx2_multiversion`).
    fn cor_h(hin: &[i16; L_SUBFR], rr: &mut [i16; DIM_RR]) = cor_h_body;
}

#[inline(always)]
fn cor_h_body(hin: &[i16; L_SUBFR], rr: &mut [i16; DIM_RR]) {
    let (cor, _) = l_mac_energy(0, hin);
    // `shr(x, 1)`, or `shl(x, k)` with `k = norm_l(cor) / 2` in `0..=15`
    // (`cor >= 0`): the exact `x 2^k` fits 32 bits, and `shl` is it
    // saturated to 16 bits; branch-free lanes.
    let k = if extract_h(cor) > 32000 {
        -1
    } else {
        (norm_l(cor) >> 1) as i32
    };
    let h: [i16; L_SUBFR] = std::array::from_fn(|i| {
        (((hin[i] as i32) << (k + 1)) >> 1).clamp(MIN_16 as i32, MAX_16 as i32) as i16
    });

    // Normalised energy without saturation: by Cauchy-Schwarz no running sum
    // below (diagonal or lagged) can leave the 32-bit range, so plain
    // arithmetic is exact; otherwise replay the saturating operators.
    if l_mac_energy(0, &h).1 {
        cor_h_walk(&mut SatSink { h: &h, rr, cor: 0 });
    } else {
        cor_h_exact(&h, rr);
    }
}

avx2_multiversion! {
    /// `cor_h` when no running sum can saturate (`2 Σ h[n]^2 <= MAX_32`).
    ///
    /// [`cor_h_exact_body`], compiled for AVX2 where the CPU has it
    /// (`avx2_multiversion`).
    fn cor_h_exact(h: &[i16; L_SUBFR], rr: &mut [i16; DIM_RR]) = cor_h_exact_body;
}

/// Every element of `rr` is `extract_h` of the reference's `L_mac` running
/// sum of `2 h[n - i] h[n - j]` over `n = max(i, j)..40` for the pulse
/// positions `i`, `j` of its block (the diagonal `i = j`). When
/// `2 Σ h[n]^2 <= MAX_32` no step saturates (Cauchy-Schwarz) and
/// [`cor_h_blocks`] forms them all without the reference's order.
#[inline(always)]
fn cor_h_exact_body(h: &[i16; L_SUBFR], rr: &mut [i16; DIM_RR]) {
    const _: () = assert!(RRI0I0 == 0 && RRI0I1 == 40 && RRI2I4 + MSIZE == DIM_RR);
    let (diag, rest) = rr.split_at_mut(RRI0I1);
    let (Ok(diag), Some(blocks)) = (
        <&mut [i16; L_SUBFR]>::try_from(diag),
        rest.as_chunks_mut::<MSIZE>().0.first_chunk_mut::<9>(),
    ) else {
        return;
    };
    cor_h_blocks(h, diag, blocks);
}

trait RrSink {
    fn reset(&mut self);
    fn mac(&mut self, h1: usize, h2: usize);
    fn store(&mut self, dest: usize);
}

/// Replays the reference's saturating operators.
struct SatSink<'a> {
    h: &'a [i16; L_SUBFR],
    rr: &'a mut [i16; DIM_RR],
    cor: i32,
}
impl RrSink for SatSink<'_> {
    fn reset(&mut self) {
        self.cor = 0;
    }
    fn mac(&mut self, h1: usize, h2: usize) {
        self.cor = l_mac(self.cor, self.h[h1], self.h[h2]);
    }
    fn store(&mut self, dest: usize) {
        self.rr[dest] = extract_h(self.cor);
    }
}

fn cor_h_walk<S: RrSink>(sink: &mut S) {
    // Diagonal terms.
    let mut p = [RRI0I0 + 7, RRI1I1 + 7, RRI2I2 + 7, RRI3I3 + 7, RRI4I4 + 7];
    let mut ph = 0usize;
    sink.reset();
    for _ in 0..NB_POS {
        for t in (0..5).rev() {
            sink.mac(ph, ph);
            ph += 1;
            sink.store(p[t]);
            p[t] = p[t].wrapping_sub(1);
        }
    }

    // Off-diagonal blocks: (start offset of h2, list of (table, sup?) per step)
    // Each block walks k = 0..8 with pointers decreasing by NB_POS+1.
    let ldec: isize = (NB_POS + 1) as isize;
    struct Blk {
        off: usize,
        // targets written in the inner loop, in order, with whether they start at l_fin_sup
        inner: &'static [(usize, bool)],
        // number of extra macs before the first write of the inner group
        pre: &'static [usize],
        // tail: targets written after the inner loop
        tail: &'static [(usize, usize)],
    }
    // Block 1: h offset 1.
    // inner: 2 macs -> rri2i3(sup), 1 mac -> rri1i2(sup), 1 mac -> rri0i1(sup), 1 mac -> rri0i4(inf)
    // tail: 2 macs -> rri2i3, 1 -> rri1i2, 1 -> rri0i1
    static B1: Blk = Blk {
        off: 1,
        inner: &[
            (RRI2I3, true),
            (RRI1I2, true),
            (RRI0I1, true),
            (RRI0I4, false),
        ],
        pre: &[2, 1, 1, 1],
        tail: &[(0, 2), (1, 1), (2, 1)],
    };
    static B2: Blk = Blk {
        off: 2,
        inner: &[
            (RRI2I4, true),
            (RRI1I3, true),
            (RRI0I2, true),
            (RRI1I4, false),
            (RRI0I3, false),
        ],
        pre: &[1, 1, 1, 1, 1],
        tail: &[(0, 1), (1, 1), (2, 1)],
    };
    static B3: Blk = Blk {
        off: 3,
        inner: &[
            (RRI1I4, true),
            (RRI0I3, true),
            (RRI2I4, false),
            (RRI1I3, false),
            (RRI0I2, false),
        ],
        pre: &[1, 1, 1, 1, 1],
        tail: &[(0, 1), (1, 1)],
    };
    static B4: Blk = Blk {
        off: 4,
        inner: &[
            (RRI0I4, true),
            (RRI2I3, false),
            (RRI1I2, false),
            (RRI0I1, false),
        ],
        pre: &[1, 2, 1, 1],
        tail: &[(0, 1)],
    };
    for blk in [&B1, &B2, &B3, &B4] {
        let mut l_fin_sup: isize = (MSIZE - 1) as isize;
        let mut l_fin_inf: isize = l_fin_sup - 1;
        let mut ptr_hf = blk.off;
        for k in 0..NB_POS {
            let mut ptrs = [0isize; 5];
            for (n, &(base, sup)) in blk.inner.iter().enumerate() {
                ptrs[n] = base as isize + if sup { l_fin_sup } else { l_fin_inf };
            }
            sink.reset();
            let mut h1 = 0usize;
            let mut h2 = ptr_hf;
            for _ in k + 1..NB_POS {
                for (n, &cnt) in blk.pre.iter().enumerate() {
                    for _ in 0..cnt {
                        sink.mac(h1, h2);
                        h1 += 1;
                        h2 += 1;
                    }
                    sink.store(ptrs[n] as usize);
                }
                for p in ptrs.iter_mut().take(blk.inner.len()) {
                    *p -= ldec;
                }
            }
            for &(n, cnt) in blk.tail.iter() {
                for _ in 0..cnt {
                    sink.mac(h1, h2);
                    h1 += 1;
                    h2 += 1;
                }
                sink.store(ptrs[n] as usize);
            }
            l_fin_sup -= NB_POS as isize;
            l_fin_inf -= 1;
            ptr_hf += 5;
        }
    }
}

/// The search's test `L_msu(L_mult(alp, sq2), sq, alp_16) > 0`. `sq2` is
/// `mult(x, x) >= 0` and `sq >= -1`, so neither `L_mult` can meet the one
/// saturating product (-32768)^2, and a saturating subtraction keeps the sign
/// of the exact difference: the test is the plain comparison of products.
#[inline(always)]
fn better(alp: i16, sq2: i16, sq: i16, alp_16: i16) -> bool {
    debug_assert!(sq2 >= 0 && sq >= -1);
    alp as i32 * sq2 as i32 > sq as i32 * alp_16 as i32
}

/// The innermost loop of the codebook search over one row of 8 candidates
/// (pulse positions `k` of the last track): `ps2 = add(ps1, dn[k])`,
/// `alp2 = L_mac(L_mac(alp1, rr[p + k], H8), tmp[k], H2)`, and the
/// candidate replaces the best so far (`best = (alp, sq)`) when `better`.
/// Returns the last replacement (position, sq, alp) if any.
#[inline(always)]
fn search_row(
    rr: &[i16; DIM_RR],
    p: usize,
    ps1: i16,
    alp1: i32,
    dn: &[i16; NB_POS],
    tmp: &[i16; NB_POS],
    best: (i16, i16),
) -> Option<(usize, i16, i16)> {
    let (mut alp, mut sq) = best;
    let mut found = None;
    let row: Option<&[i16; NB_POS]> = rr.get(p..p + NB_POS).and_then(|r| r.try_into().ok());
    // No L_mac step nor the rounding saturates when |alp1| plus the largest
    // possible terms stays in range; then plain 32-bit sums are exact.
    let bound = |v: &[i16; NB_POS]| v.iter().map(|x| x.unsigned_abs() as i64).max().unwrap_or(0);
    match row {
        Some(row)
            if (alp1 as i64).abs() + (bound(row) << 13) + (bound(tmp) << 15) + 0x8000
                <= MAX_32 as i64 =>
        {
            let (mut sq2, mut a16) = ([0i16; NB_POS], [0i16; NB_POS]);
            search8(ps1, alp1, dn, row, tmp, &mut sq2, &mut a16);
            // Most rows hold no candidate better than the best so far:
            // then the sequential scan below (with its hard-to-predict
            // branches) would change nothing.
            if !any_better8(alp, sq, &sq2, &a16) {
                return None;
            }
            for k in 0..NB_POS {
                if better(alp, sq2[k], sq, a16[k]) {
                    sq = sq2[k];
                    alp = a16[k];
                    found = Some((k, sq, alp));
                }
            }
        }
        _ => {
            for k in 0..NB_POS {
                let ps2 = add(ps1, dn[k]);
                let mut alp2 = l_mac(alp1, rr.get(p + k).copied().unwrap_or(0), 4096);
                alp2 = l_mac(alp2, tmp[k], 16384);
                let sq2 = mult(ps2, ps2);
                let alp_16 = round(alp2);
                if better(alp, sq2, sq, alp_16) {
                    sq = sq2;
                    alp = alp_16;
                    found = Some((k, sq, alp));
                }
            }
        }
    }
    found
}

/// Phase B of one depth-first search: 8 rows (positions of one track, with
/// `ps1`, `alp1` and the start `p3` of their `rr` row each) by the 8
/// positions of another, scanned row by row from `(sq, alp) = (-1, 1)` as
/// the reference does. Returns the last replacement (row, position, sq,
/// alp) if any. When every row passes [`search_row`]'s no-saturation bound
/// and every `alp` is positive, the scan ends on the first largest
/// `sq / alp` ([`first_best_rows`]): all 64 candidates are computed and
/// compared without the scan's branches. `rr_bound` is at least every
/// `|rr[k]|` (a bound of all rows at once, to check them in one go).
#[inline(always)]
fn phase_b(
    rr: &[i16; DIM_RR],
    ps1: &[i16; NB_POS],
    alp1: &[i32; NB_POS],
    p3: &[usize; NB_POS],
    dn: &[i16; NB_POS],
    tmp: &[i16; NB_POS],
    rr_bound: i64,
) -> Option<(usize, usize, i16, i16)> {
    let bound = |v: &[i16; NB_POS]| max_abs8(v) as i64;
    let tmp_bound = (bound(tmp) << 15) + 0x8000;
    // One check for all rows with `rr_bound` in place of each row's bound:
    // max |alp1| + (rr_bound << 13) + tmp_bound <= MAX_32.
    let all_fit = all_abs_le8(alp1, MAX_32 as i64 - (rr_bound << 13) - tmp_bound);
    let zero = [0i16; NB_POS];
    let mut rows = [&zero; NB_POS];
    let mut fast = true;
    for r in 0..NB_POS {
        let row: Option<&[i16; NB_POS]> = rr
            .get(p3[r]..p3[r] + NB_POS)
            .and_then(|v| v.try_into().ok());
        match row {
            Some(row)
                if all_fit
                    || (alp1[r] as i64).abs() + (bound(row) << 13) + tmp_bound <= MAX_32 as i64 =>
            {
                rows[r] = row;
            }
            _ => {
                fast = false;
                break;
            }
        }
    }
    if fast {
        if let Some(best) = first_best_rows::<NB_POS, 13, 15>(ps1, alp1, &rows, dn, tmp) {
            return Some(best);
        }
    }
    let (mut alp, mut sq) = (1i16, -1i16);
    let mut found = None;
    for r in 0..NB_POS {
        if let Some((k, s2, a2)) = search_row(rr, p3[r], ps1[r], alp1[r], dn, tmp, (alp, sq)) {
            sq = s2;
            alp = a2;
            found = Some((r, k, s2, a2));
        }
    }
    found
}

/// Phase A of one depth-first search: 2 rows (the two positions `i0` of
/// one track with the largest `dn`, with `ps1 = dn[i0]`, `alp1 =
/// L_mult(rr[i0][i0], H4)` and `rows[r][k] = rr[i0][i1]`) by the 8
/// positions `i1` of another (`dn[i1]`, `diag[k] = rr[i1][i1]`):
/// `ps2 = add(ps1, dn[i1])`, `alp2 = L_mac(L_mac(alp1, rows[r][k], H2),
/// diag[k], H4)`, scanned row by row from `(sq, alp) = (-1, 1)` as the
/// reference does. Returns the last replacement (row, position, ps2, sq,
/// alp) if any. When no partial sum can saturate (bounded as in
/// [`phase_b`]) and every `alp` is positive, the scan ends on the first
/// largest `sq / alp` ([`first_best_rows`]), found without branches.
/// `rr_bound` is at least every `|rows[r][k]|` and `|diag[k]|`.
#[inline(always)]
fn phase_a(
    ps1: &[i16; 2],
    alp1: &[i32; 2],
    dn: &[i16; NB_POS],
    rows: &[[i16; NB_POS]; 2],
    diag: &[i16; NB_POS],
    rr_bound: i64,
) -> Option<(usize, usize, i16, i16, i16)> {
    const H2: i16 = 16384;
    const H4: i16 = 8192;
    let bound = |v: &[i16; NB_POS]| v.iter().map(|x| x.unsigned_abs() as i64).max().unwrap_or(0);
    let alp_max = alp1
        .iter()
        .map(|a| a.unsigned_abs() as i64)
        .max()
        .unwrap_or(0);
    let all_fit = alp_max + (rr_bound << 15) + (rr_bound << 14) + 0x8000 <= MAX_32 as i64;
    if all_fit || {
        let diag_bound = (bound(diag) << 14) + 0x8000;
        (0..2)
            .all(|r| (alp1[r] as i64).abs() + (bound(&rows[r]) << 15) + diag_bound <= MAX_32 as i64)
    } {
        if let Some((r, k, sq2, a16)) =
            first_best_rows::<2, 15, 14>(ps1, alp1, &[&rows[0], &rows[1]], dn, diag)
        {
            return Some((r, k, add(ps1[r], dn[k]), sq2, a16));
        }
    }
    let (mut sq, mut alp) = (-1i16, 1i16);
    let mut found = None;
    for r in 0..2 {
        for k in 0..NB_POS {
            let ps2 = add(ps1[r], dn[k]);
            let alp2 = l_mac(l_mac(alp1[r], rows[r][k], H2), diag[k], H4);
            let sq2 = mult(ps2, ps2);
            let alp_16 = round(alp2);
            if better(alp, sq2, sq, alp_16) {
                sq = sq2;
                alp = alp_16;
                found = Some((r, k, ps2, sq2, alp_16));
            }
        }
    }
    found
}

/// `round(L_mac(L_mac(L_mult(a, H4), b, H4), c, H8))` of the codebook
/// search (H4 = 8192, H8 = 4096): with 16-bit inputs every partial sum,
/// and the rounded one, is at most `2^15 (2^14 + 2^14 + 2^13) + 2^15 <
/// 2^31` in magnitude, so no step saturates and plain sums are exact.
#[inline(always)]
fn tmp_term(a: i16, b: i16, c: i16) -> i16 {
    ((((a as i32 + b as i32) << 14) + ((c as i32) << 13) + 0x8000) >> 16) as i16
}

/// `L_mac(L_mac(L_mac(alp0, a, H8), b, H8), c, H16)` of the codebook
/// search (H8 = 4096, H16 = 2048) for `alp0 = L_mult(alp, H4)` of a 16-bit
/// `alp`: the partial sums are at most `2^29 + 2^15 (2^13 + 2^13 + 2^12) <
/// 2^31` in magnitude, so no step saturates and plain sums are exact.
#[inline(always)]
fn alp_term(alp0: i32, a: i16, b: i16, c: i16) -> i32 {
    debug_assert!(alp0.unsigned_abs() <= 1 << 29);
    alp0 + ((a as i32 + b as i32) << 13) + ((c as i32) << 12)
}

/// [`tmp_term`] of 8 lanes.
#[inline(always)]
fn tmp_terms(a: &[i16; NB_POS], b: &[i16; NB_POS], c: &[i16; NB_POS]) -> [i16; NB_POS] {
    let mut t = [0i16; NB_POS];
    for k in 0..NB_POS {
        t[k] = tmp_term(a[k], b[k], c[k]);
    }
    t
}

/// [`alp_term`] of 8 lanes.
#[inline(always)]
fn alp_terms(alp0: i32, a: &[i16; NB_POS], b: &[i16; NB_POS], c: &[i16; NB_POS]) -> [i32; NB_POS] {
    let mut t = [0i32; NB_POS];
    for k in 0..NB_POS {
        t[k] = alp_term(alp0, a[k], b[k], c[k]);
    }
    t
}

/// The position of the first largest `dn` (all >= 0) on the track of
/// positions `start, start + 5, ...`, leaving out `skip`: the reference's
/// `if dn[j] > max` scan from `max = -1`, without its data-dependent
/// branches (key = value, then the earlier position).
fn track_max(dn: &[i16; L_SUBFR], start: usize, skip: Option<usize>) -> usize {
    let mut best = i32::MIN;
    for k in 0..NB_POS {
        let j = start + 5 * k;
        let v = dn.get(j).copied().unwrap_or(0) as i32;
        let key = if skip == Some(j) {
            i32::MIN
        } else {
            (v << 4) | (15 - k as i32)
        };
        best = best.max(key);
    }
    start + 5 * (15 - (best & 15)) as usize
}

avx2_multiversion! {
    /// [`d4i40_17_fast_body`], compiled for AVX2 where the CPU has it
    /// (`avx2_multiversion`).
    fn d4i40_17_fast(
        dn: &mut [i16; L_SUBFR],
        rr: &mut [i16; DIM_RR],
        h: &[i16; L_SUBFR],
        cod: &mut [i16; L_SUBFR],
        y: &mut [i16; L_SUBFR]) -> (i16,
        i16,
    ) = d4i40_17_fast_body;
}

#[inline(always)]
fn d4i40_17_fast_body(
    dn: &mut [i16; L_SUBFR],
    rr: &mut [i16; DIM_RR],
    h: &[i16; L_SUBFR],
    cod: &mut [i16; L_SUBFR],
    y: &mut [i16; L_SUBFR],
) -> (i16, i16) {
    const H4: i16 = 8192;
    let mut sign_dn = [0i16; L_SUBFR];
    // Branch-free: the signs are data, and negate saturates as
    // saturating_abs does.
    for i in 0..L_SUBFR {
        let mask = dn[i] >> 15;
        sign_dn[i] = MAX_16 ^ mask;
        dn[i] = dn[i].saturating_abs();
    }
    // Apply signs to the cross terms: row i (track ti) of block (ti, tj) is
    // multiplied by the signs of track tj (MAX_16 or MIN_16), or their
    // inverses (MIN_16 or MAX_16) when dn[i] < 0: by MAX_16 where the signs
    // of i and j agree, else by MIN_16, i.e. by `MAX_16 ^ m_i ^ m_j` with
    // the sign masks `m` (0 or -1; see `sign_blocks`). Branch-free: the
    // signs are data. `rr_bound`, the largest |rr| (with the signs), is for
    // the searches' overflow checks.
    let mut cols = [[0i16; MSIZE]; 9];
    let rr_bound = {
        const _: () = assert!(RRI0I1 == L_SUBFR && RRI2I4 + MSIZE == DIM_RR);
        let m: [[i16; NB_POS]; 5] =
            std::array::from_fn(|t| std::array::from_fn(|k| MAX_16 ^ sign_dn[t + 5 * k]));
        let (diag, rest) = rr.split_at_mut(RRI0I1);
        let top = match rest.as_chunks_mut::<MSIZE>().0.first_chunk_mut::<9>() {
            Some(blocks) => sign_blocks(blocks, &mut cols, &m),
            None => MAX_16 as u16 + 1,
        };
        diag.iter().fold(top, |t, v| t.max(v.unsigned_abs())) as i64
    };

    // Column c of the block at `base` in rr (a row of its transpose), and
    // the 8 elements of rr from p.
    let col = |base: usize, c: usize| -> &[i16; NB_POS] {
        cols.get(base.wrapping_sub(RRI0I1) / MSIZE)
            .and_then(|b| b.get(NB_POS * c..NB_POS * c + NB_POS))
            .and_then(|v| v.try_into().ok())
            .unwrap_or(&[0; NB_POS])
    };
    let row = |p: usize| -> &[i16; NB_POS] {
        rr.get(p..p + NB_POS)
            .and_then(|v| v.try_into().ok())
            .unwrap_or(&[0; NB_POS])
    };

    // dn by track (after the signs were taken out).
    let mut dn_t = [[0i16; NB_POS]; 5];
    for (t, row) in dn_t.iter_mut().enumerate() {
        for (k, v) in row.iter_mut().enumerate() {
            *v = dn[t + 5 * k];
        }
    }
    let d5 = |i: usize| -> usize { mult(i as i16, 6554) as usize };
    let mut psk: i16 = -1;
    let mut alpk: i16 = 1;
    let (mut ip0, mut ip1, mut ip2, mut ip3) = (0usize, 1usize, 2usize, 3usize);
    let mut p_i0i34 = RRI0I3;
    let mut p_i1i34 = RRI1I3;
    let mut p_i2i34 = RRI2I3;
    let mut p_i3i34 = RRI3I3;
    let mut ix = 0usize;
    let mut iy = 0usize;
    let mut ps: i16 = 0;

    for track in 3..5usize {
        // ---- depth first search 3, phase A: tracks 2 and 3/4 ----
        let mut alp: i16 = 1;
        {
            let first = track_max(dn, 2, None);
            let i0s = [first, track_max(dn, 2, Some(first))];
            let (mut ps1, mut alp1) = ([0i16; 2], [0i32; 2]);
            let mut rows = [[0i16; NB_POS]; 2];
            for r in 0..2 {
                let j = d5(i0s[r]);
                ps1[r] = dn[i0s[r]];
                alp1[r] = l_mult(rr[RRI2I2 + j], H4);
                let p0 = p_i2i34 + (j << 3);
                rows[r] = std::array::from_fn(|k| rr[p0 + k]);
            }
            let diag: [i16; NB_POS] = std::array::from_fn(|k| rr[p_i3i34 + k]);
            if let Some((r, k, p2, _, a2)) =
                phase_a(&ps1, &alp1, &dn_t[track], &rows, &diag, rr_bound)
            {
                ps = p2;
                alp = a2;
                ix = i0s[r];
                iy = track + 5 * k;
            }
        }
        let i0 = ix;
        let i1 = iy;

        // ---- phase B: tracks 0 and 1 ----
        let ps0 = ps;
        let alp0 = l_mult(alp, H4);
        let mut sq: i16 = -1;
        let mut alp: i16 = 1;
        let tmp_vect = {
            let (a, b, c) = (col(RRI1I2, d5(i0)), col(p_i1i34, d5(i1)), row(RRI1I1));
            tmp_terms(a, b, c)
        };
        {
            let (a, b, c) = (col(RRI0I2, d5(i0)), col(p_i0i34, d5(i1)), row(RRI0I0));
            let ps1 = dn_t[0].map(|d| ps0.saturating_add(d));
            let alp1 = alp_terms(alp0, a, b, c);
            let p3: [usize; NB_POS] = std::array::from_fn(|r| RRI0I1 + NB_POS * r);
            if let Some((r, i3, s2, a2)) =
                phase_b(rr, &ps1, &alp1, &p3, &dn_t[1], &tmp_vect, rr_bound)
            {
                sq = s2;
                alp = a2;
                ix = 5 * r;
                iy = 1 + 5 * i3;
            }
        }
        let s = l_msu(l_mult(alpk, sq), psk, alp);
        if s > 0 {
            psk = sq;
            alpk = alp;
            ip2 = i0;
            ip3 = i1;
            ip0 = ix;
            ip1 = iy;
        }

        // ---- depth first search 4, phase A: tracks 3/4 and 0 ----
        let mut alp: i16 = 1;
        {
            let first = track_max(dn, track, None);
            let i0s = [first, track_max(dn, track, Some(first))];
            let (mut ps1, mut alp1) = ([0i16; 2], [0i32; 2]);
            let mut rows = [[0i16; NB_POS]; 2];
            for r in 0..2 {
                let j = d5(i0s[r]);
                ps1[r] = dn[i0s[r]];
                alp1[r] = l_mult(rr[p_i3i34 + j], H4);
                rows[r] = *col(p_i0i34, j);
            }
            let diag: [i16; NB_POS] = std::array::from_fn(|k| rr[RRI0I0 + k]);
            if let Some((r, k, p2, _, a2)) = phase_a(&ps1, &alp1, &dn_t[0], &rows, &diag, rr_bound)
            {
                ps = p2;
                alp = a2;
                ix = i0s[r];
                iy = 5 * k;
            }
        }
        let i0 = ix;
        let i1 = iy;
        let i1_offset = d5(i1) << 3;

        // ---- phase B: tracks 1 and 2 ----
        let ps0 = ps;
        let alp0 = l_mult(alp, H4);
        let mut sq: i16 = -1;
        let mut alp: i16 = 1;
        let tmp_vect = {
            let (a, b, c) = (col(p_i2i34, d5(i0)), row(RRI0I2 + i1_offset), row(RRI2I2));
            tmp_terms(a, b, c)
        };
        {
            let (a, b, c) = (col(p_i1i34, d5(i0)), row(RRI0I1 + i1_offset), row(RRI1I1));
            let ps1 = dn_t[1].map(|d| ps0.saturating_add(d));
            let alp1 = alp_terms(alp0, a, b, c);
            let p3: [usize; NB_POS] = std::array::from_fn(|r| RRI1I2 + NB_POS * r);
            if let Some((r, i3, s2, a2)) =
                phase_b(rr, &ps1, &alp1, &p3, &dn_t[2], &tmp_vect, rr_bound)
            {
                sq = s2;
                alp = a2;
                ix = 1 + 5 * r;
                iy = 2 + 5 * i3;
            }
        }
        let s = l_msu(l_mult(alpk, sq), psk, alp);
        if s > 0 {
            psk = sq;
            alpk = alp;
            ip3 = i0;
            ip0 = i1;
            ip1 = ix;
            ip2 = iy;
        }

        p_i0i34 = RRI0I4;
        p_i1i34 = RRI1I4;
        p_i2i34 = RRI2I4;
        p_i3i34 = RRI4I4;
    }

    let s0 = sign_dn[ip0];
    let s1 = sign_dn[ip1];
    let s2 = sign_dn[ip2];
    let s3 = sign_dn[ip3];
    cod.fill(0);
    cod[ip0] = shr(s0, 2);
    cod[ip1] = shr(s1, 2);
    cod[ip2] = shr(s2, 2);
    cod[ip3] = shr(s3, 2);

    // y = the pulses filtered by h, each added (or subtracted) in turn
    // with saturation: `y[i] = add(y[i], h[i - ip])` for `i >= ip`. With
    // h after 40 zeros, every pulse is a whole-vector pass (adding or
    // subtracting 0 where `i < ip` changes nothing), in the same order.
    let mut hz = [0i16; 2 * L_SUBFR];
    hz[L_SUBFR..].copy_from_slice(h);
    y.fill(0);
    for (ip, s) in [(ip0, s0), (ip1, s1), (ip2, s2), (ip3, s3)] {
        let Some(hs) = hz.get(L_SUBFR - ip..2 * L_SUBFR - ip) else {
            continue;
        };
        if s > 0 {
            for (v, &x) in y.iter_mut().zip(hs) {
                *v = v.saturating_add(x);
            }
        } else {
            for (v, &x) in y.iter_mut().zip(hs) {
                *v = v.saturating_sub(x);
            }
        }
    }

    let mut sign: i16 = 0;
    if s0 > 0 {
        sign += 1;
    }
    if s1 > 0 {
        sign += 2;
    }
    if s2 > 0 {
        sign += 4;
    }
    if s3 > 0 {
        sign += 8;
    }
    let q0 = d5(ip0) as i16;
    let q1 = d5(ip1) as i16;
    let q2 = d5(ip2) as i16;
    let i = d5(ip3) as i16;
    let j = sub(ip3 as i16, add(add(i, shl(i, 2)), 3));
    let q3 = add(shl(i, 1), j);
    let mut idx = add(q0, shl(q1, 3));
    idx = add(idx, shl(q2, 6));
    idx = add(idx, shl(q3, 9));
    (idx, sign)
}

avx2_multiversion! {
    /// The end of a subframe: the excitation `exc gp + code gc`
    /// ([`excitation`]) and the weighting filter's memory from the last
    /// `M` samples of the target `xn` and the filtered codebook vectors
    /// `y1`, `y2` ([`mem_w0_update`]); `tails` = those of `[xn, y1, y2]`.
    ///
    /// [`subframe_end_body`], compiled for AVX2 where the CPU has it
    /// (`avx2_multiversion`).
    fn subframe_end(
        exc: &mut [i16; L_SUBFR],
        code: &[i16; L_SUBFR],
        tails: [&[i16; M]; 3],
        gp: i16,
        gc: i16,
        mem_w0: &mut [i16; M],
    ) = subframe_end_body;
}

#[inline(always)]
fn subframe_end_body(
    exc: &mut [i16; L_SUBFR],
    code: &[i16; L_SUBFR],
    tails: [&[i16; M]; 3],
    gp: i16,
    gc: i16,
    mem_w0: &mut [i16; M],
) {
    excitation(exc, code, gp, gc);
    *mem_w0 = mem_w0_update(tails, gp, gc);
}

/// `sub(xn, add(extract_h(L_shl(L_mult(y1, gp), 1)),
/// extract_h(L_shl(L_mult(y2, gc), 2))))` per element, as exact 32-bit
/// lanes: each saturating `L_shl` by `n` is a clamp to
/// `[-2^(31-n), 2^(31-n))` before the shift (the same high half as the
/// saturated value), the 16-bit operators clamps.
#[inline(always)]
fn mem_w0_update(tails: [&[i16; M]; 3], gp: i16, gc: i16) -> [i16; M] {
    let [xn, y1, y2] = tails.map(widen16);
    let sat16 = |v: i32| v.clamp(MIN_16 as i32, MAX_16 as i32);
    let out: [i16; 16] = std::array::from_fn(|j| {
        let a = l_mult_lane(y1[j], gp as i32).clamp(-(1 << 30), (1 << 30) - 1);
        let b = l_mult_lane(y2[j], gc as i32).clamp(-(1 << 29), (1 << 29) - 1);
        let s = sat16(((a << 1) >> 16) + ((b << 2) >> 16));
        sat16(xn[j] - s) as i16
    });
    std::array::from_fn(|j| out[j])
}

/// `v` as 32-bit lanes, zero-padded to 16.
#[inline(always)]
fn widen16(v: &[i16; M]) -> [i32; 16] {
    std::array::from_fn(|j| v.get(j).map_or(0, |&x| x as i32))
}

/// `L_mult(a, b)` in a 32-bit lane: `2ab`, saturating only at
/// `a = b = -32768`.
#[inline(always)]
fn l_mult_lane(a: i32, b: i32) -> i32 {
    let p = a * b;
    2 * p.min((1 << 30) - 1) + i32::from(p >= 1 << 30)
}

/// [`lsp_prev_extract`] with the ten coefficients as independent 32-bit
/// lanes (every operator exact, saturation included): the four `L_msu`
/// of the MA prediction, then `extract_h(L_shl(L_mult(.., inv), 3))`,
/// whose saturating shift is a clamp to `[-2^28, 2^28)` before the shift
/// (`extract_h` of the clamped value is that of `MAX_32` / `MIN_32`).
#[inline(always)]
fn lsp_prev_extract_lanes(
    lsp: &[i16; M],
    lsp_ele: &mut [i16; M],
    fg: &[[i16; M]; 4],
    freq_prev: &[[i16; M]; 4],
    fg_sum_inv: &[i16; M],
) {
    let w = widen16;
    let mut t = w(lsp).map(|v| v << 16);
    for k in 0..4 {
        let (p, g) = (w(&freq_prev[k]), w(&fg[k]));
        for j in 0..16 {
            t[j] = t[j].saturating_sub(l_mult_lane(p[j], g[j]));
        }
    }
    let inv = w(fg_sum_inv);
    let out: [i16; 16] = std::array::from_fn(|j| {
        let l = l_mult_lane(t[j] >> 16, inv[j]);
        ((l.clamp(-(1 << 28), (1 << 28) - 1) << 3) >> 16) as i16
    });
    lsp_ele.copy_from_slice(&out[..M]);
}

/// `Mpy_32(hi1, lo1, hi2, lo2)` of each lane, operator by operator
/// (`L_mult`, two `L_mac` of `mult`), in 32-bit lanes.
#[inline(always)]
fn mpy_32_lanes(h1: &[i32; 16], l1: &[i32; 16], h2: &[i32; 16], l2: &[i32; 16]) -> [i32; 16] {
    std::array::from_fn(|j| {
        let m = l_mult_lane(h1[j], h2[j]);
        // mult: (x y) >> 15, saturating only at (-2^15)^2.
        let a = ((h1[j] * l2[j]) >> 15).min(32767);
        let b = ((l1[j] * h2[j]) >> 15).min(32767);
        m.saturating_add(2 * a).saturating_add(2 * b)
    })
}

/// [`mpy_32_lanes`] as the plain sum `2 (h1 h2 + mult(h1, l2) + mult(l1, h2))`,
/// the same value when every low word is in `0..2^15` (as `L_Extract`
/// gives them) and no lane has both high words -32768. Then `mult(h, l)`
/// lies between 0 and `h` (no `mult` saturates), so the sum `s` is within
/// `[h1 h2 + min(h1, 0) + min(h2, 0), h1 h2 + max(h1, 0) + max(h2, 0)]`:
/// for `h1, h2 >= 0` at most `(h1 + 1)(h2 + 1) - 1 < 2^30`, for opposite
/// signs at least `h2 (h1 + 1) >= -2^30` (`h1 >= 0 > h2`), for both
/// negative within `(0, 32768 * 32767]`. `L_mult` does not saturate and
/// every partial sum of the chain lies between `2 h1 h2` and `2 s`, inside
/// `[-2^31, 2^31)`, so no `L_mac` saturates either.
#[inline(always)]
fn mpy_32_lanes_plain(h1: &[i32; 16], l1: &[i32; 16], h2: &[i32; 16], l2: &[i32; 16]) -> [i32; 16] {
    let mut out = [0i32; 16];
    for j in 0..16 {
        out[j] = 2 * (h1[j] * h2[j] + ((h1[j] * l2[j]) >> 15) + ((l1[j] * h2[j]) >> 15));
    }
    out
}

/// The `L_add` chain from 0 over `terms[1..i]`, the other lanes being
/// zero: the plain sum when the magnitudes add up to less than 2^31 (no
/// partial sum can saturate then), else the chain. `|v| <= 16 (|v| >> 4)
/// + 15`, so the bound on 16 lanes is `16 S + 240 < 2^31`.
#[inline(always)]
fn lane_sum(terms: &[i32; 16], i: usize) -> i32 {
    let bound: u32 = terms.iter().map(|&v| v.unsigned_abs() >> 4).sum();
    if bound < (1 << 27) - 16 {
        terms.iter().fold(0i32, |s, &v| s.wrapping_add(v))
    } else {
        terms[1..i].iter().fold(0i32, |s, &v| l_add(s, v))
    }
}

/// The reflection coefficient `-t / alpha` of Levinson's step (`alpha`
/// as hi/lo, `|t| < alpha`), before its normalising shift.
#[inline(always)]
fn reflection(t: i32, alp_h: i16, alp_l: i16) -> i32 {
    let k = div_32(l_abs(t), alp_h, alp_l);
    if t > 0 {
        l_negate(k)
    } else {
        k
    }
}

/// The new prediction error `alpha (1 - k^2)` of Levinson's step,
/// normalised: its hi/lo and the exponent of the normalisation.
#[inline(always)]
fn prediction_error(kh: i16, kl: i16, alp_h: i16, alp_l: i16) -> (i16, i16, i16) {
    let t0 = l_sub(0x7fff_ffff, l_abs(mpy_32(kh, kl, kh, kl)));
    let (hi, lo) = l_extract(t0);
    let t0 = mpy_32(alp_h, alp_l, hi, lo);
    let exp = norm_l(t0);
    let (h, l) = l_extract(l_shl(t0, exp));
    (h, l, exp)
}

/// Levinson-Durbin recursion on the double-precision autocorrelation
/// (the reference's `Levinson`): the order-10 LP coefficients in `a` and
/// the first two reflection coefficients, or `None` when a reflection
/// coefficient reaches 32750 in magnitude (unstable filter; `a` is then
/// left to the caller).
///
/// The two inner loops of order `i` (the sum of `r[j] a[i-j]` and the
/// coefficient update `a[j] + k a[i-j]`) run as 16 lanes indexed by `j`:
/// `a[i-j]` is a window of a reversed copy of the coefficients whose
/// entries outside `1..i` are zero, so the lanes outside `1..i` give zero
/// products. Every lane computes the reference's operators exactly
/// (saturation included); the sum's `L_add` chain is a plain sum when the
/// magnitudes of its terms add up to less than 2^31 (no partial sum can
/// then saturate), else the chain itself over the lane values.
///
/// The products by the coefficients (`L_Extract` words, never both high
/// words -32768 as `|k| <= 32750`) are [`mpy_32_lanes_plain`]; those by the
/// autocorrelation are too when its low words are in `0..2^15` and no
/// high word is -32768 (always so for the encoder's own autocorrelation),
/// else operator by operator.
#[inline(always)]
fn levinson_lanes(rh: &[i16; MP1], rl: &[i16; MP1], a: &mut [i16; MP1]) -> Option<[i16; 2]> {
    if rh[1..]
        .iter()
        .zip(&rl[1..])
        .all(|(&h, &l)| h != i16::MIN && l >= 0)
    {
        levinson_lanes_with::<true>(rh, rl, a)
    } else {
        levinson_lanes_with::<false>(rh, rl, a)
    }
}

/// [`levinson_lanes`], the products by the autocorrelation in plain sums
/// when `PLAIN_R`.
#[inline(always)]
fn levinson_lanes_with<const PLAIN_R: bool>(
    rh: &[i16; MP1],
    rl: &[i16; MP1],
    a: &mut [i16; MP1],
) -> Option<[i16; 2]> {
    // Coefficient `m` of the reversed copies sits at `REV - m`; the window
    // of order `i` starts at `REV - i` (lane `j` holds `a[i-j]`).
    const REV: usize = 22;
    let lanes = |v: &[i16; MP1]| -> [i32; 16] {
        std::array::from_fn(|j| {
            if (1..MP1).contains(&j) {
                v[j] as i32
            } else {
                0
            }
        })
    };
    let (rh16, rl16) = (lanes(rh), lanes(rl));
    let mut ah = [0i32; 16];
    let mut al = [0i32; 16];
    let mut ahr = [0i32; 40];
    let mut alr = [0i32; 40];
    let mut rc = [0i16; 2];

    let mut t0 = reflection(l_comp(rh[1], rl[1]), rh[0], rl[0]);
    let (mut kh, mut kl) = l_extract(t0);
    rc[0] = kh;
    t0 = l_shr(t0, 4);
    let (h, l) = l_extract(t0);
    (ah[1], al[1]) = (h as i32, l as i32);
    (ahr[REV - 1], alr[REV - 1]) = (h as i32, l as i32);
    let (mut alp_h, mut alp_l, mut alp_exp) = prediction_error(kh, kl, rh[0], rl[0]);

    for i in 2..=M {
        let win =
            |v: &[i32; 40]| -> [i32; 16] { v[REV - i..REV - i + 16].try_into().unwrap_or([0; 16]) };
        let (wh, wl) = (win(&ahr), win(&alr));
        let products = if PLAIN_R {
            mpy_32_lanes_plain(&rh16, &rl16, &wh, &wl)
        } else {
            mpy_32_lanes(&rh16, &rl16, &wh, &wl)
        };
        let mut t0 = lane_sum(&products, i);
        t0 = l_shl(t0, 4);
        let t1 = l_comp(rh[i], rl[i]);
        t0 = l_add(t0, t1);
        let t2 = l_shl(reflection(t0, alp_h, alp_l), alp_exp);
        (kh, kl) = l_extract(t2);
        if i <= 2 {
            rc[i - 1] = kh;
        }
        if abs_s(kh) > 32750 {
            return None;
        }
        // a[j] + k a[i-j] for j in 1..i, then a[i] = t2 >> 4.
        let k = mpy_32_lanes_plain(&[kh as i32; 16], &[kl as i32; 16], &wh, &wl);
        let (nh, nl) = l_extract(l_shr(t2, 4));
        for j in 0..16 {
            // L_Comp(ah, al): `al < 2^15`, the L_mac cannot saturate.
            let c = (ah[j] << 16) + 2 * al[j];
            let t = k[j].saturating_add(c);
            if (1..i).contains(&j) {
                (ah[j], al[j]) = (t >> 16, (t >> 1) & 0x7fff);
            }
        }
        ah[i] = nh as i32;
        al[i] = nl as i32;
        for m in 1..MP1 {
            ahr[REV - m] = ah[m];
            alr[REV - m] = al[m];
        }

        let j;
        (alp_h, alp_l, j) = prediction_error(kh, kl, alp_h, alp_l);
        alp_exp = add(alp_exp, j);
    }
    a[0] = 4096;
    for i in 1..=M {
        let t0 = l_comp(ah[i] as i16, al[i] as i16);
        a[i] = round(l_shl(t0, 1));
    }
    Some(rc)
}

#[cfg(test)]
fn levinson_ref(rh: &[i16; MP1], rl: &[i16; MP1], a: &mut [i16; MP1]) -> Option<[i16; 2]> {
    let mut ah = [0i16; MP1];
    let mut al = [0i16; MP1];
    let mut anh = [0i16; MP1];
    let mut anl = [0i16; MP1];
    let mut rc = [0i16; M];

    let mut t0 = reflection(l_comp(rh[1], rl[1]), rh[0], rl[0]);
    let (mut kh, mut kl) = l_extract(t0);
    rc[0] = kh;
    t0 = l_shr(t0, 4);
    (ah[1], al[1]) = l_extract(t0);
    let (mut alp_h, mut alp_l, mut alp_exp) = prediction_error(kh, kl, rh[0], rl[0]);

    for i in 2..=M {
        let mut t0 = 0i32;
        for j in 1..i {
            t0 = l_add(t0, mpy_32(rh[j], rl[j], ah[i - j], al[i - j]));
        }
        t0 = l_shl(t0, 4);
        let t1 = l_comp(rh[i], rl[i]);
        t0 = l_add(t0, t1);
        let mut t2 = l_shl(reflection(t0, alp_h, alp_l), alp_exp);
        (kh, kl) = l_extract(t2);
        rc[i - 1] = kh;
        if abs_s(kh) > 32750 {
            return None;
        }
        for j in 1..i {
            let mut t0 = mpy_32(kh, kl, ah[i - j], al[i - j]);
            t0 = l_add(t0, l_comp(ah[j], al[j]));
            (anh[j], anl[j]) = l_extract(t0);
        }
        t2 = l_shr(t2, 4);
        (anh[i], anl[i]) = l_extract(t2);

        let j;
        (alp_h, alp_l, j) = prediction_error(kh, kl, alp_h, alp_l);
        alp_exp = add(alp_exp, j);
        ah[1..=i].copy_from_slice(&anh[1..=i]);
        al[1..=i].copy_from_slice(&anl[1..=i]);
    }
    a[0] = 4096;
    for i in 1..=M {
        let t0 = l_comp(ah[i], al[i]);
        a[i] = round(l_shl(t0, 1));
    }
    Some([rc[0], rc[1]])
}

avx2_multiversion! {
    fn levinson_mv(
        this: &mut Encoder,
        rh: &[i16; MP1],
        rl: &[i16; MP1],
        a: &mut [i16; MP1],
    ) = Encoder::levinson_body;
    fn qua_lsp_mv(
        this: &mut Encoder,
        lsp: &[i16; M],
        lsp_q: &mut [i16; M]) -> (i16,
        i16,
    ) = Encoder::qua_lsp_body;
    fn qua_gain_mv(
        this: &mut Encoder,
        code: &[i16; L_SUBFR],
        g: &[i16; 5],
        e: &[i16; 5],
        tame: bool) -> (i16,
        i16,
        i16,
    ) = Encoder::qua_gain_body;
    fn pre_process_mv(this: &mut Encoder) = Encoder::pre_process_body;
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::codec::g729::simd::{search8_w, BASELINE_ONLY};

    #[test]
    fn pre_process_is_the_operator_chain_on_both_clones() {
        for baseline in [false, true] {
            BASELINE_ONLY.with(|b| b.set(baseline));
            let mut enc = Encoder::new();
            let mut st = [0i16; 6];
            let (mut seed, mut saturated) = (5i16, 0);
            for frame in 0..600 {
                let mut want = high_pass_test_frame(frame, &mut seed);
                enc.old_speech[NEW_SPEECH_OFF..].copy_from_slice(&want);
                enc.pre_process();
                saturated += high_pass_ref(&B140, &A140, 3, 0, &mut st, &mut want);
                assert_eq!(
                    &enc.old_speech[NEW_SPEECH_OFF..],
                    &want[..],
                    "frame {frame}"
                );
            }
            BASELINE_ONLY.with(|b| b.set(false));
            assert_eq!(
                [enc.x0, enc.x1, enc.y1_hi, enc.y1_lo, enc.y2_hi, enc.y2_lo],
                st
            );
            // The saturating shift was exercised.
            assert!(saturated > 10, "{saturated}");
        }
    }

    /// The reference's weighting, operator by operator.
    fn get_wegt_ref(flsp: &[i16; M]) -> [i16; M] {
        let mut buf = [0i16; M];
        buf[0] = sub(flsp[1], PI04 + 8192);
        for i in 1..M - 1 {
            buf[i] = sub(sub(flsp[i + 1], flsp[i - 1]), 8192);
        }
        buf[M - 1] = sub(PI92 - 8192, flsp[M - 2]);
        let mut wegt = [0i16; M];
        for i in 0..M {
            if buf[i] > 0 {
                wegt[i] = 2048;
            } else {
                let tmp = extract_h(l_shl(l_mult(buf[i], buf[i]), 2));
                let tmp = extract_h(l_shl(l_mult(tmp, CONST10), 2));
                wegt[i] = add(tmp, 2048);
            }
        }
        for i in 4..6 {
            wegt[i] = extract_h(l_shl(l_mult(wegt[i], CONST12), 1));
        }
        let tmp = wegt.iter().copied().fold(0, i16::max);
        let sft = norm_s(tmp);
        wegt.map(|w| shl(w, sft))
    }

    #[test]
    fn lsp_wdist_is_the_saturating_chain() {
        let mut seed = 909i16;
        let mut capped = 0;
        for round in 0..20000 {
            let sh = (round % 4 * 4) as i16;
            let mut v: [[i16; M]; 4] =
                std::array::from_fn(|_| std::array::from_fn(|_| shr(random(&mut seed), sh)));
            if round % 3 == 0 {
                // Non-negative weights, as get_wegt gives them.
                v[3] = v[3].map(abs_s);
            }
            if round % 5 == 0 {
                let j = round / 5 % M;
                (v[0][j], v[1][j], v[2][j], v[3][j]) = (i16::MIN, i16::MAX, i16::MIN, i16::MAX);
            }
            let [buf, rbuf, fg, w] = v;
            let mut want = 0i32;
            for j in 0..M {
                let tmp = mult(sub(buf[j], rbuf[j]), fg[j]);
                let tmp2 = extract_h(l_shl(l_mult(w[j], tmp), 4));
                want = l_mac(want, tmp2, tmp);
            }
            capped += u32::from(want == MAX_32);
            assert_eq!(lsp_wdist(&buf, &rbuf, &fg, &w), want, "round {round}");
        }
        assert!(capped > 100, "capped {capped}");
    }

    #[test]
    fn wegt_lane_is_the_operator_chain_for_every_spacing() {
        for b in i16::MIN..=i16::MAX {
            let want = if b > 0 {
                2048
            } else {
                let tmp = extract_h(l_shl(l_mult(b, b), 2));
                add(extract_h(l_shl(l_mult(tmp, CONST10), 2)), 2048)
            };
            assert_eq!(wegt_lane(b), want as i32, "b {b}");
        }
    }

    #[test]
    fn get_wegt_is_the_reference() {
        let mut seed = 2026i16;
        for round in 0..20000 {
            let mut flsp: [i16; M] = std::array::from_fn(|_| random(&mut seed));
            match round % 4 {
                // Ordered LSFs in Q13 (0..pi), as the encoder has them.
                0 => {
                    for v in flsp.iter_mut() {
                        *v = (*v & 0x7fff) % 25736;
                    }
                    flsp.sort_unstable();
                }
                // Extremes: saturated spacings.
                1 => {
                    for v in flsp.iter_mut() {
                        *v = [i16::MIN, i16::MAX, 0, -1, 1][(*v as u16 % 5) as usize];
                    }
                }
                _ => {}
            }
            let mut got = [0i16; M];
            get_wegt(&flsp, &mut got);
            assert_eq!(got, get_wegt_ref(&flsp), "round {round} {flsp:?}");
        }
    }

    /// `cor_h` (scaling, then the exact or saturating correlations) is
    /// the reference's operator chain throughout, on both clones.
    #[test]
    fn cor_h_is_the_operator_chain_on_both_clones() {
        let reference = |hin: &[i16; L_SUBFR]| {
            let (cor, _) = l_mac_energy(0, hin);
            let k = shr(norm_l(cor), 1);
            let h: [i16; L_SUBFR] = std::array::from_fn(|i| {
                if extract_h(cor) > 32000 {
                    shr(hin[i], 1)
                } else {
                    shl(hin[i], k)
                }
            });
            let mut rr = [0i16; DIM_RR];
            cor_h_walk(&mut SatSink {
                h: &h,
                rr: &mut rr,
                cor: 0,
            });
            (rr, extract_h(cor) > 32000, l_mac_energy(0, &h).1)
        };
        let mut seed = 77i16;
        let mut cases: Vec<[i16; L_SUBFR]> = Vec::new();
        for n in 0..400 {
            // Energies from tiny (large shifts) to saturating.
            let sh = (n % 16) as i16;
            cases.push(std::array::from_fn(|_| shr(random(&mut seed), sh)));
            let mut spike = [0i16; L_SUBFR];
            spike[n % L_SUBFR] = [1, -1, i16::MIN, i16::MAX, 181, -182][n % 6];
            spike[(n * 7) % L_SUBFR] = shr(random(&mut seed), sh);
            cases.push(spike);
        }
        cases.push([i16::MIN; L_SUBFR]);
        cases.push([i16::MAX; L_SUBFR]);
        cases.push([0; L_SUBFR]);
        cases.push(std::array::from_fn(|i| {
            if i % 2 == 0 {
                i16::MIN
            } else {
                i16::MAX
            }
        }));
        let (mut halved, mut saturating) = (0, 0);
        for baseline in [false, true] {
            BASELINE_ONLY.with(|b| b.set(baseline));
            for hin in &cases {
                let mut rr = [0i16; DIM_RR];
                cor_h(hin, &mut rr);
                let (want, half, sat) = reference(hin);
                assert_eq!(rr, want, "{hin:?}");
                halved += usize::from(half);
                saturating += usize::from(sat);
            }
            BASELINE_ONLY.with(|b| b.set(false));
        }
        // Both scalings and both correlation paths were exercised.
        assert!(halved > 20 && saturating > 4, "{halved} {saturating}");
        assert!(halved < cases.len(), "{halved}");
    }

    /// The windowed autocorrelation is the reference's operator chain,
    /// rescaling loop included (loud inputs saturate the energy once or
    /// more), on both clones.
    #[test]
    fn autocorr_is_the_operator_chain_on_both_clones() {
        let reference = |x: &[i16; L_TOTAL]| {
            let mut y: [i16; L_WINDOW] = std::array::from_fn(|i| mult_r(x[i], HAMWINDOW[i]));
            let (mut rh, mut rl) = ([0i16; MP1], [0i16; MP1]);
            let mut rounds = 0;
            let sum = loop {
                let mut ov = false;
                let mut sum = 1;
                for &v in &y {
                    sum = l_mac_ov(sum, v, v, &mut ov);
                }
                if !ov {
                    break sum;
                }
                rounds += 1;
                for v in y.iter_mut() {
                    *v = shr(*v, 2);
                }
            };
            let norm = norm_l(sum);
            (rh[0], rl[0]) = l_extract(l_shl(sum, norm));
            for i in 1..MP1 {
                let mut s = 0;
                for j in 0..L_WINDOW - i {
                    s = l_mac(s, y[j], y[j + i]);
                }
                (rh[i], rl[i]) = l_extract(l_shl(s, norm));
            }
            (rh, rl, rounds)
        };
        let mut seed = 31i16;
        let mut rescaled = [0usize; 3];
        for baseline in [false, true] {
            BASELINE_ONLY.with(|b| b.set(baseline));
            for n in 0..600 {
                let sh = (n % 16) as i16;
                let x: [i16; L_TOTAL] = std::array::from_fn(|i| match n % 5 {
                    0 => [i16::MIN, i16::MAX][(i / (1 + n % 7)) % 2],
                    1 => i16::MIN,
                    _ => shr(random(&mut seed), sh),
                });
                let (mut rh, mut rl) = ([0i16; MP1], [0i16; MP1]);
                autocorr(&x, &mut rh, &mut rl);
                let (wh, wl, rounds) = reference(&x);
                assert_eq!((rh, rl), (wh, wl), "{x:?}");
                rescaled[rounds.min(2)] += 1;
            }
            BASELINE_ONLY.with(|b| b.set(false));
        }
        // Energies that fit, and that need one or more rescalings.
        assert!(rescaled.iter().all(|&c| c > 20), "{rescaled:?}");
    }

    #[test]
    fn pre_process_output_is_the_operator_chain() {
        let mut seed = 7i16;
        let mut vals: Vec<i32> = vec![MIN_32, MIN_32 + 1, MAX_32, MAX_32 - 1, 0, -1, 1];
        for e in [12, 13, 27, 28, 29, 30] {
            for d in -4097..=4097 {
                vals.push((1i32 << e).wrapping_add(d));
                vals.push((-(1i32 << e)).wrapping_add(d));
            }
        }
        vals.extend((0..20000).map(|_| l_mult(random(&mut seed), random(&mut seed)) >> 2));
        for &l in &vals {
            assert_eq!(round_shl3(l), round(l_shl(l, 3)), "{l}");
        }
    }

    #[test]
    fn pre_process_sums_cannot_leave_32_bits() {
        let abs = |v: &[i16]| v.iter().map(|x| x.unsigned_abs() as i64).sum::<i64>();
        let bound = (1 << 16) * abs(&A140[1..]) + 4 * abs(&A140[1..]) + (1 << 16) * abs(&B140);
        assert!(bound <= MAX_32 as i64, "{bound}");
    }

    #[test]
    #[inline(never)]
    fn cor_h_exact_matches_saturating_walk_on_both_clones() {
        // Impulse responses that take the exact path (2 Σ h^2 <= MAX_32):
        // random ones, small and scaled up to the limit, single spikes
        // of the largest magnitudes and alternating extremes; compare with
        // the step-by-step operators.
        let mut cases: Vec<[i16; L_SUBFR]> = Vec::new();
        let mut seed = 12345i16;
        for n in 0..200 {
            let mut h = [0i16; L_SUBFR];
            for v in h.iter_mut() {
                *v = shr(random(&mut seed), (n % 8) as i16);
            }
            // Decaying like a synthesis filter's response, or not.
            if n % 3 == 0 {
                for (k, v) in h.iter_mut().enumerate() {
                    *v = (*v as i32 * (40 - k as i32) / 40) as i16;
                }
            }
            let e: f64 = h.iter().map(|&v| 2.0 * (v as f64) * (v as f64)).sum();
            if n % 2 == 0 && e > 0.0 {
                let f = (MAX_32 as f64 / e).sqrt();
                for v in h.iter_mut() {
                    *v = (*v as f64 * f).trunc().clamp(-32768.0, 32767.0) as i16;
                }
            }
            cases.push(h);
        }
        for pos in [0, 1, 7, 20, 38, 39] {
            for v in [32767i16, -32767, 23170, -23170] {
                let mut h = [0i16; L_SUBFR];
                h[pos] = v;
                cases.push(h);
            }
        }
        let lim = 5181i16; // largest c with 2 * 40 c^2 <= MAX_32
        cases.push(std::array::from_fn(|k| if k % 2 == 0 { lim } else { -lim }));
        cases.push([lim; L_SUBFR]);
        cases.push([-lim; L_SUBFR]);
        let mut near_limit = 0;
        for baseline in [false, true] {
            BASELINE_ONLY.with(|b| b.set(baseline));
            for h in &cases {
                let (e, ov) = l_mac_energy(0, h);
                if ov {
                    continue;
                }
                near_limit += (e > MAX_32 / 2) as u32;
                let mut a = [0x5a5a; DIM_RR];
                let mut b = [0i16; DIM_RR];
                cor_h_exact(h, &mut a);
                cor_h_walk(&mut SatSink {
                    h,
                    rr: &mut b,
                    cor: 0,
                });
                assert_eq!(a, b, "{h:?} baseline {baseline}");
            }
            BASELINE_ONLY.with(|b| b.set(false));
        }
        assert!(near_limit > 200, "{near_limit}");
    }

    #[test]
    fn levinson_lanes_is_the_reference_recursion_on_both_clones() {
        avx2_multiversion! {
            fn lanes_mv(rh: &[i16; MP1], rl: &[i16; MP1], a: &mut [i16; MP1]) -> Option<[i16; 2]> = levinson_lanes;
        }
        let mut seed = 777i16;
        let (mut stable, mut unstable, mut plain) = (0, 0, 0);
        for round in 0..6000 {
            let (mut rh, mut rl) = ([0i16; MP1], [0i16; MP1]);
            match round % 4 {
                // Autocorrelation of a random resonant signal (the case the
                // encoder meets), through the encoder's own analysis.
                0 | 1 => {
                    let mut x = [0i16; L_TOTAL];
                    let (c1, c2) = (random(&mut seed) as i32, random(&mut seed) as i32 / 2);
                    let (mut y1, mut y2) = (0i32, 0i32);
                    let sc = (round / 4 % 12) as i16;
                    for v in x.iter_mut() {
                        let e = shr(random(&mut seed), sc) as i32;
                        let y = (e + ((c1 * y1 - c2.abs() * y2) >> 14)).clamp(-32768, 32767);
                        (y2, y1) = (y1, y);
                        *v = y as i16;
                    }
                    autocorr(&x, &mut rh, &mut rl);
                    if round % 4 == 0 {
                        lag_window(&mut rh, &mut rl);
                    }
                }
                // Random double-precision values, normalised or extreme.
                2 => {
                    rh[0] = 16384 | (random(&mut seed) & 0x3fff);
                    rl[0] = random(&mut seed) & 0x7fff;
                    for j in 1..MP1 {
                        rh[j] = match random(&mut seed) & 7 {
                            0 => i16::MIN,
                            1 => i16::MAX,
                            2 => rh[0],
                            3 => negate(rh[0]),
                            _ => random(&mut seed),
                        };
                        rl[j] = random(&mut seed) & 0x7fff;
                    }
                }
                _ => {
                    for j in 0..MP1 {
                        rh[j] = random(&mut seed);
                        rl[j] = random(&mut seed);
                    }
                }
            }
            if rh[1..]
                .iter()
                .zip(&rl[1..])
                .all(|(&h, &l)| h != i16::MIN && l >= 0)
            {
                plain += 1;
            }
            let mut want = [0i16; MP1];
            let want_rc = levinson_ref(&rh, &rl, &mut want);
            for baseline in [false, true] {
                let mut got = [0i16; MP1];
                BASELINE_ONLY.with(|b| b.set(baseline));
                let got_rc = lanes_mv(&rh, &rl, &mut got);
                BASELINE_ONLY.with(|b| b.set(false));
                assert_eq!(got_rc, want_rc, "{rh:?} {rl:?}");
                if want_rc.is_some() {
                    assert_eq!(got, want, "{rh:?} {rl:?}");
                }
            }
            if want_rc.is_some() {
                stable += 1;
            } else {
                unstable += 1;
            }
        }
        assert!(stable > 2000 && unstable > 300, "{stable} {unstable}");
        // Both ways of forming the products by the autocorrelation.
        assert!(plain > 3000 && plain < 5000, "{plain}");
    }

    /// A random 16-bit value, one time in four an extreme one (-32768,
    /// 32767, -1) and one in eight a small one.
    fn pick(seed: &mut i16) -> i16 {
        match random(seed) & 7 {
            0 => i16::MIN,
            1 => i16::MAX,
            2 => -1,
            3 => random(seed) >> 8,
            _ => random(seed),
        }
    }

    #[test]
    fn mpy_32_lanes_is_mpy_32_on_both_clones() {
        avx2_multiversion! {
            fn lanes_mv(h1: &[i32; 16], l1: &[i32; 16], h2: &[i32; 16], l2: &[i32; 16]) -> [i32; 16] = mpy_32_lanes;
        }
        let mut seed = 5i16;
        for _ in 0..4000 {
            let v: [[i16; 16]; 4] =
                std::array::from_fn(|_| std::array::from_fn(|_| pick(&mut seed)));
            let w = v.map(|x| x.map(i32::from));
            let want: [i32; 16] =
                std::array::from_fn(|j| mpy_32(v[0][j], v[1][j], v[2][j], v[3][j]));
            for baseline in [false, true] {
                BASELINE_ONLY.with(|b| b.set(baseline));
                let got = lanes_mv(&w[0], &w[1], &w[2], &w[3]);
                BASELINE_ONLY.with(|b| b.set(false));
                assert_eq!(got, want, "{v:?}");
            }
        }
    }

    #[test]
    fn mpy_32_lanes_plain_is_mpy_32_on_both_clones() {
        avx2_multiversion! {
            fn lanes_mv(h1: &[i32; 16], l1: &[i32; 16], h2: &[i32; 16], l2: &[i32; 16]) -> [i32; 16] = mpy_32_lanes_plain;
        }
        let mut seed = 17i16;
        for round in 0..20000 {
            // High words anything (-32768 in one of the two at most), low
            // words in 0..2^15 with their extremes.
            let mut h: [[i16; 16]; 2] =
                std::array::from_fn(|_| std::array::from_fn(|_| pick(&mut seed)));
            for j in 0..16 {
                if h[0][j] == i16::MIN && h[1][j] == i16::MIN {
                    h[round % 2][j] = if round % 4 < 2 { -32767 } else { 32767 };
                }
            }
            let l: [[i16; 16]; 2] = std::array::from_fn(|_| {
                std::array::from_fn(|_| match random(&mut seed) & 3 {
                    0 => 0,
                    1 => 0x7fff,
                    _ => random(&mut seed) & 0x7fff,
                })
            });
            let want: [i32; 16] =
                std::array::from_fn(|j| mpy_32(h[0][j], l[0][j], h[1][j], l[1][j]));
            let (h, l) = (h.map(|x| x.map(i32::from)), l.map(|x| x.map(i32::from)));
            for baseline in [false, true] {
                BASELINE_ONLY.with(|b| b.set(baseline));
                let got = lanes_mv(&h[0], &l[0], &h[1], &l[1]);
                BASELINE_ONLY.with(|b| b.set(false));
                assert_eq!(got, want, "{h:?} {l:?}");
            }
        }
        // Every pair of extreme high words (but -32768 twice) with extreme
        // low words.
        let ext = [i16::MIN, -32767, -1, 0, 1, 32766, i16::MAX];
        for &h1 in &ext {
            for &h2 in &ext {
                if h1 == i16::MIN && h2 == i16::MIN {
                    continue;
                }
                for (l1, l2) in [(0, 0), (0, 0x7fff), (0x7fff, 0), (0x7fff, 0x7fff)] {
                    let want = mpy_32(h1, l1, h2, l2);
                    let w = |v: i16| [v as i32; 16];
                    assert_eq!(
                        mpy_32_lanes_plain(&w(h1), &w(l1), &w(h2), &w(l2)),
                        [want; 16]
                    );
                }
            }
        }
        // Outside that domain the chain saturates where the plain sum
        // does not: why Levinson checks the autocorrelation's words.
        let w = |v: i16| [v as i32; 16];
        for (h1, l1, h2, l2) in [(i16::MIN, 0, i16::MIN, 0), (-32767, i16::MIN, i16::MIN, 0)] {
            let plain = mpy_32_lanes_plain(&w(h1), &w(l1), &w(h2), &w(l2))[0];
            assert_ne!(plain, mpy_32(h1, l1, h2, l2), "{h1} {l1} {h2} {l2}");
        }
    }

    #[test]
    fn lsp_prev_extract_lanes_is_the_reference_on_both_clones() {
        avx2_multiversion! {
            fn lanes_mv(
                lsp: &[i16; M],
                lsp_ele: &mut [i16; M],
                fg: &[[i16; M]; 4],
                freq_prev: &[[i16; M]; 4],
                fg_sum_inv: &[i16; M],
            ) = lsp_prev_extract_lanes;
        }
        let mut seed = 1234i16;
        for round in 0..6000 {
            // The codec's tables and a plausible history, or anything.
            let table = round % 2 == 0;
            let lsf: [i16; M] = std::array::from_fn(|_| pick(&mut seed));
            let prev: [[i16; M]; 4] =
                std::array::from_fn(|_| std::array::from_fn(|_| pick(&mut seed)));
            let fg: [[i16; M]; 4] = if table {
                FG[round / 2 % 2]
            } else {
                std::array::from_fn(|_| std::array::from_fn(|_| pick(&mut seed)))
            };
            let inv: [i16; M] = if table {
                FG_SUM_INV[round / 2 % 2]
            } else {
                std::array::from_fn(|_| pick(&mut seed))
            };
            let mut want = [0i16; M];
            lsp_prev_extract(&lsf, &mut want, &fg, &prev, &inv);
            for baseline in [false, true] {
                let mut got = [0i16; M];
                BASELINE_ONLY.with(|b| b.set(baseline));
                lanes_mv(&lsf, &mut got, &fg, &prev, &inv);
                BASELINE_ONLY.with(|b| b.set(false));
                assert_eq!(got, want, "{lsf:?} {prev:?} {fg:?} {inv:?}");
            }
        }
    }

    #[test]
    fn mem_w0_update_is_the_operator_chain_on_both_clones() {
        avx2_multiversion! {
            fn update_mv(tails: [&[i16; M]; 3], gp: i16, gc: i16) -> [i16; M] = mem_w0_update;
        }
        let mut seed = 4242i16;
        for _ in 0..20000 {
            let v: [[i16; M]; 3] =
                std::array::from_fn(|_| std::array::from_fn(|_| pick(&mut seed)));
            let (gp, gc) = (pick(&mut seed), pick(&mut seed));
            let want: [i16; M] = std::array::from_fn(|j| {
                let temp = extract_h(l_shl(l_mult(v[1][j], gp), 1));
                let k = extract_h(l_shl(l_mult(v[2][j], gc), 2));
                sub(v[0][j], add(temp, k))
            });
            for baseline in [false, true] {
                BASELINE_ONLY.with(|b| b.set(baseline));
                let got = update_mv([&v[0], &v[1], &v[2]], gp, gc);
                BASELINE_ONLY.with(|b| b.set(false));
                assert_eq!(got, want, "{v:?} {gp} {gc}");
            }
        }
    }

    #[test]
    fn lane_sum_is_the_saturating_chain() {
        let mut seed = 31i16;
        let (mut plain, mut chain) = (0, 0);
        for round in 0..20000 {
            let i = 2 + round % 9;
            let sc = (round / 9 % 20) as u32;
            let mut terms = [0i32; 16];
            for t in terms[1..i].iter_mut() {
                let v = ((random(&mut seed) as i32) << 16) ^ (random(&mut seed) as i32 & 0xffff);
                *t = match random(&mut seed) & 15 {
                    0 => i32::MIN,
                    1 => i32::MAX,
                    _ => v >> sc.min(31),
                };
            }
            let want = terms[1..i].iter().fold(0i32, |s, &v| l_add(s, v));
            assert_eq!(lane_sum(&terms, i), want, "{terms:?}");
            let sum: i64 = terms.iter().map(|&v| v as i64).sum();
            if sum != want as i64 {
                chain += 1;
            } else {
                plain += 1;
            }
        }
        assert!(plain > 5000 && chain > 1000, "{plain} {chain}");
    }

    #[test]
    fn chebps_fast_matches_reference_or_declines() {
        avx2_multiversion! {
            fn chebps8_mv(x: &[i16; 8], f: &[i16; 6], q11: bool) -> ([i16; 8], bool) = chebps8;
        }
        let mut seed = 4321i16;
        let (mut fast, mut declined, mut blocks_declined) = (0, 0, 0);
        for round in 0..4000 {
            // Coefficient scales from typical (Q11/Q12 LSP polynomials) to
            // saturating, and grid-like plus extreme abscissae.
            let sc = (round % 6) as i16;
            let mut f = [0i16; 6];
            for v in f.iter_mut().skip(1) {
                *v = shr(random(&mut seed), sc);
            }
            f[0] = 2048;
            let x = match round % 50 {
                0 => i16::MIN,
                1 => i16::MAX,
                2 => -32767,
                _ => random(&mut seed),
            };
            for q11 in [true, false] {
                let want = chebps_ref(x, &f, q11);
                match chebps_fast(x, &f, q11) {
                    Some(v) => {
                        assert_eq!(v, want, "{x} {f:?} {q11}");
                        fast += 1;
                    }
                    None => declined += 1,
                }
                assert_eq!(chebps(x, &f, q11), want);
                assert_eq!(chebps1(x, &f, q11), want);
                // The same point as lane `round % 8` of the 8-lane version,
                // the other lanes random or (every fourth round) all the
                // same point.
                let mut xs: [i16; 8] = std::array::from_fn(|_| random(&mut seed));
                if round % 4 == 3 {
                    xs = [x; 8];
                }
                xs[round % 8] = x;
                let fast_lanes = xs.map(|x| chebps_fast(x, &f, q11));
                let all_fast = fast_lanes.iter().all(Option::is_some);
                blocks_declined += usize::from(!all_fast);
                // Both clones (AVX2 and baseline code generation).
                for baseline in [false, true] {
                    BASELINE_ONLY.with(|b| b.set(baseline));
                    let (ys, bad) = chebps8_mv(&xs, &f, q11);
                    BASELINE_ONLY.with(|b| b.set(false));
                    // Declines exactly when some lane's scalar form does,
                    // else every lane is the scalar value.
                    assert_eq!(bad, !all_fast, "{xs:?} {f:?} {q11}");
                    if !bad {
                        assert_eq!(ys, fast_lanes.map(|v| v.unwrap_or(0)), "{xs:?} {f:?} {q11}");
                    }
                }
            }
        }
        assert!(
            blocks_declined > 100 && blocks_declined < 7000,
            "{blocks_declined}"
        );
        assert!(fast > 2000 && declined > 100, "{fast} {declined}");
    }

    #[test]
    fn dot40_is_the_saturating_chain_on_both_paths() {
        let mut seed = 99i16;
        let (mut fast, mut slow) = (0, 0);
        for round in 0..3000 {
            let (sd, sx) = ((round % 5) as i16, (round / 5 % 5) as i16);
            let dn: [i16; L_SUBFR] = std::array::from_fn(|_| shr(random(&mut seed), sd));
            let mut x: [i16; L_SUBFR] = std::array::from_fn(|_| shr(random(&mut seed), sx));
            if round % 17 == 0 {
                x[3] = i16::MIN;
            }
            let want = x
                .iter()
                .zip(&dn)
                .fold(0i32, |acc, (&a, &b)| l_mac(acc, b, a));
            let dn_abs: i64 = dn.iter().map(|v| v.unsigned_abs() as i64).sum();
            assert_eq!(dot40(&dn, dn_abs, &x), want, "round {round}");
            let xmax = x.iter().map(|v| v.unsigned_abs() as i64).max().unwrap_or(0);
            if 2 * dn_abs * xmax <= MAX_32 as i64 {
                fast += 1;
            } else {
                slow += 1;
            }
        }
        assert!(fast > 300 && slow > 300, "fast {fast} slow {slow}");
    }

    #[test]
    fn phase_a_matches_the_sequential_scan_on_both_paths() {
        // The reference scan over 2 rows of 8, every step saturating.
        let scan = |ps1: &[i16; 2],
                    alp1: &[i32; 2],
                    dn: &[i16; NB_POS],
                    rows: &[[i16; NB_POS]; 2],
                    diag: &[i16; NB_POS]| {
            let (mut sq, mut alp, mut found) = (-1i16, 1i16, None);
            for r in 0..2 {
                for k in 0..NB_POS {
                    let ps2 = add(ps1[r], dn[k]);
                    let a = l_mac(l_mac(alp1[r], rows[r][k], 16384), diag[k], 8192);
                    let (sq2, alp_16) = (mult(ps2, ps2), round(a));
                    if l_msu(l_mult(alp, sq2), sq, alp_16) > 0 {
                        (sq, alp, found) = (sq2, alp_16, Some((r, k, ps2, sq2, alp_16)));
                    }
                }
            }
            found
        };
        let mut seed = 777i16;
        let (mut fast, mut slow) = (0, 0);
        for round in 0..2000 {
            let shift = if round % 4 == 0 { 0 } else { 3 };
            let rows: [[i16; NB_POS]; 2] =
                std::array::from_fn(|_| std::array::from_fn(|_| shr(random(&mut seed), shift)));
            let diag: [i16; NB_POS] = std::array::from_fn(|_| shr(random(&mut seed), 1));
            let dn: [i16; NB_POS] =
                std::array::from_fn(|_| shr(random(&mut seed), 2).saturating_abs());
            // Ties: every 5th round repeats one candidate's values.
            let mut rows = rows;
            let mut dn = dn;
            if round % 5 == 0 {
                rows[1][3] = rows[0][3];
                dn[6] = dn[3];
                rows[1][6] = rows[0][3];
            }
            let ps1: [i16; 2] = std::array::from_fn(|_| shr(random(&mut seed), 2).saturating_abs());
            let alp1: [i32; 2] = std::array::from_fn(|_| match round % 8 {
                0 => i32::MAX - (random(&mut seed) as i32).abs(),
                1 => -(1 << 24),
                _ => (1 << 28) + ((random(&mut seed) as i32) << 10),
            });
            let want = scan(&ps1, &alp1, &dn, &rows, &diag);
            let all = rows.iter().flatten().chain(diag.iter());
            let tight = all.map(|v| v.unsigned_abs() as i64).max().unwrap_or(0);
            for rr_bound in [tight, 32768] {
                let got = phase_a(&ps1, &alp1, &dn, &rows, &diag, rr_bound);
                assert_eq!(got, want, "round {round} bound {rr_bound}");
            }
            // Which path did it take?
            let bound = |v: &[i16]| v.iter().map(|x| x.unsigned_abs() as i64).max().unwrap_or(0);
            let ok = (0..2).all(|r| {
                (alp1[r] as i64).abs() + (bound(&rows[r]) << 15) + (bound(&diag) << 14) + 0x8000
                    <= MAX_32 as i64
            });
            let mut sq2 = [[0i16; NB_POS]; 2];
            let mut a16 = [[0i16; NB_POS]; 2];
            if ok {
                for r in 0..2 {
                    search8_w(
                        ps1[r],
                        alp1[r],
                        &dn,
                        &diag,
                        14,
                        &rows[r],
                        &mut sq2[r],
                        &mut a16[r],
                    );
                }
            }
            if ok && a16.iter().flatten().all(|&a| a > 0) {
                fast += 1;
            } else {
                slow += 1;
            }
        }
        assert!(fast > 500 && slow > 200, "fast {fast} slow {slow}");
    }

    #[test]
    fn phase_b_matches_the_sequential_scan_on_both_paths() {
        // The reference scan over 8 rows of 8, every step saturating.
        let scan = |rr: &[i16; DIM_RR],
                    ps1: &[i16; NB_POS],
                    alp1: &[i32; NB_POS],
                    p3: &[usize; NB_POS],
                    dn: &[i16; NB_POS],
                    tmp: &[i16; NB_POS]| {
            let (mut sq, mut alp, mut found) = (-1i16, 1i16, None);
            for r in 0..NB_POS {
                for k in 0..NB_POS {
                    let ps2 = add(ps1[r], dn[k]);
                    let a = l_mac(l_mac(alp1[r], rr[p3[r] + k], 4096), tmp[k], 16384);
                    let (sq2, alp_16) = (mult(ps2, ps2), round(a));
                    if l_msu(l_mult(alp, sq2), sq, alp_16) > 0 {
                        (sq, alp, found) = (sq2, alp_16, Some((r, k, sq2, alp_16)));
                    }
                }
            }
            found
        };
        let mut seed = 4321i16;
        let (mut fast, mut slow) = (0, 0);
        for round in 0..400 {
            let mut rr = [0i16; DIM_RR];
            for v in rr.iter_mut() {
                *v = shr(random(&mut seed), if round % 4 == 0 { 0 } else { 3 });
            }
            let (mut ps1, mut alp1, mut p3) = ([0i16; NB_POS], [0i32; NB_POS], [0usize; NB_POS]);
            let (mut dn, mut tmp) = ([0i16; NB_POS], [0i16; NB_POS]);
            for r in 0..NB_POS {
                ps1[r] = shr(random(&mut seed), 2).saturating_abs();
                dn[r] = shr(random(&mut seed), 2).saturating_abs();
                tmp[r] = shr(random(&mut seed), 3);
                // Mostly positive energies; every 8th round a negative or
                // near-saturating one (the fallback paths).
                alp1[r] = match round % 8 {
                    0 => i32::MAX - (random(&mut seed) as i32).abs(),
                    1 => -(1 << 24),
                    _ => (1 << 28) + ((random(&mut seed) as i32) << 10),
                };
                p3[r] = RRI0I1 + NB_POS * r;
            }
            let mut sq2 = [[0i16; NB_POS]; NB_POS];
            let mut a16 = [[0i16; NB_POS]; NB_POS];
            let want = scan(&rr, &ps1, &alp1, &p3, &dn, &tmp);
            let tight = rr
                .iter()
                .map(|v| v.unsigned_abs() as i64)
                .max()
                .unwrap_or(0);
            for rr_bound in [tight, 32768] {
                let got = phase_b(&rr, &ps1, &alp1, &p3, &dn, &tmp, rr_bound);
                assert_eq!(got, want, "round {round} bound {rr_bound}");
            }
            // Which path did it take?
            let bound = |v: &[i16]| v.iter().map(|x| x.unsigned_abs() as i64).max().unwrap_or(0);
            let ok = (0..NB_POS).all(|r| {
                (alp1[r] as i64).abs()
                    + (bound(&rr[p3[r]..p3[r] + NB_POS]) << 13)
                    + (bound(&tmp) << 15)
                    + 0x8000
                    <= MAX_32 as i64
            });
            if ok {
                for r in 0..NB_POS {
                    let row: &[i16; NB_POS] = rr[p3[r]..p3[r] + NB_POS].try_into().unwrap();
                    search8(ps1[r], alp1[r], &dn, row, &tmp, &mut sq2[r], &mut a16[r]);
                }
            }
            if ok && a16.iter().flatten().all(|&a| a > 0) {
                fast += 1;
            } else {
                slow += 1;
            }
        }
        assert!(fast > 100 && slow > 50, "fast {fast} slow {slow}");
    }

    avx2_multiversion! {
        fn gain_search_mv(
            coeff: &[i16; 5],
            coeff_lsf: &[i16; 5],
            gcode0: i16,
            cand1: usize,
            cand2: usize,
            tame: bool) -> (usize,
            usize,
        ) = gain_search;
    }

    #[test]
    fn gain_search_is_the_reference_scan_on_both_clones() {
        let mut seed = 2024i16;
        for baseline in [false, true] {
            BASELINE_ONLY.with(|b| b.set(baseline));
            let mut moved = 0;
            for round in 0..4000 {
                let sh = (round % 7) as i16;
                let mut coeff: [i16; 5] = std::array::from_fn(|_| shr(random(&mut seed), sh));
                let coeff_lsf: [i16; 5] = std::array::from_fn(|_| random(&mut seed) & 0x7fff);
                match round % 13 {
                    0 => coeff[round % 5] = MIN_16,
                    1 => coeff = [MAX_16, -MAX_16, MAX_16, MAX_16, -MAX_16],
                    2 => coeff = [0; 5],
                    _ => {}
                }
                let gcode0 = match round % 5 {
                    0 => MAX_16,
                    1 => MIN_16,
                    _ => random(&mut seed),
                };
                let (cand1, cand2) = (round % 5, round / 5 % 9);
                let tame = round % 3 == 0;
                let want = gain_search_ref(&coeff, &coeff_lsf, gcode0, cand1, cand2, tame);
                let got = gain_search_mv(&coeff, &coeff_lsf, gcode0, cand1, cand2, tame);
                assert_eq!(got, want, "round {round} baseline {baseline}");
                moved += usize::from(want != (cand1, cand2));
            }
            assert!(moved > 1000, "{moved}");
        }
        BASELINE_ONLY.with(|b| b.set(false));
    }

    #[test]
    fn tmp_and_alp_terms_are_the_saturating_chains() {
        let mut seed = 31i16;
        let corners = [MIN_16, MIN_16 + 1, -1, 0, 1, MAX_16 - 1, MAX_16];
        let mut vals: Vec<i16> = corners.to_vec();
        vals.extend((0..20).map(|_| random(&mut seed)));
        for &a in &vals {
            for &b in &vals {
                for &c in &vals {
                    let want = round(l_mac(l_mac(l_mult(a, 8192), b, 8192), c, 4096));
                    assert_eq!(tmp_term(a, b, c), want, "{a} {b} {c}");
                    for alp in [MIN_16, -1, 0, 77, MAX_16, c] {
                        let alp0 = l_mult(alp, 8192);
                        let want = l_mac(l_mac(l_mac(alp0, a, 4096), b, 4096), c, 2048);
                        assert_eq!(alp_term(alp0, a, b, c), want, "{alp} {a} {b} {c}");
                    }
                }
            }
        }
    }

    #[test]
    fn energy64_is_the_exact_sum_of_squares_on_both_clones() {
        avx2_multiversion! {
            fn energy_mv(v: &[i16]) -> i64 = energy64;
        }
        let both = |v: &[i16]| {
            [false, true].map(|baseline| {
                BASELINE_ONLY.with(|b| b.set(baseline));
                let e = energy_mv(v);
                BASELINE_ONLY.with(|b| b.set(false));
                e
            })
        };
        let mut seed = 77i16;
        for n in 0..500usize {
            let len = n % 113;
            let v: Vec<i16> = (0..len)
                .map(|k| match (n + k) % 5 {
                    0 => MIN_16,
                    1 => MAX_16,
                    _ => shr(random(&mut seed), (n % 4) as i16),
                })
                .collect();
            let want: i64 = v.iter().map(|&x| x as i64 * x as i64).sum();
            assert_eq!(both(&v), [want; 2], "{v:?}");
        }
        assert_eq!(both(&[MIN_16; 112]), [112 << 30; 2]);
    }

    #[test]
    fn sub_scaled_is_the_saturating_chain() {
        let mut seed = 5i16;
        let corners = [MIN_16, MIN_16 + 1, -1, 0, 1, 16384, MAX_16];
        let mut saturated = 0;
        for round in 0..3000 {
            let sh = (round % 8) as i16;
            let mut x: [i16; L_SUBFR] = std::array::from_fn(|_| random(&mut seed));
            let mut y: [i16; L_SUBFR] = std::array::from_fn(|_| shr(random(&mut seed), sh));
            if round % 5 == 0 {
                x[round % 40] = corners[round % 7];
                y[(round + 3) % 40] = corners[(round / 7) % 7];
            }
            let g = match round % 9 {
                0 => MIN_16,
                1 => MAX_16,
                2 => 19661,
                _ => shr(random(&mut seed), (round / 64 % 6) as i16),
            };
            let want: [i16; L_SUBFR] =
                std::array::from_fn(|i| sub(x[i], extract_h(l_shl(l_mult(y[i], g), 1))));
            assert_eq!(sub_scaled(&x, &y, g), want, "round {round}");
            saturated += want.iter().filter(|&&w| w == MIN_16 || w == MAX_16).count();
        }
        assert!(saturated > 100, "{saturated}");
    }

    #[test]
    fn cor_h_x_is_the_reference_on_both_clones() {
        // The reference's Cor_h_X, operator by operator.
        let reference = |h: &[i16; L_SUBFR], x: &[i16; L_SUBFR]| {
            let mut y32 = [0i32; L_SUBFR];
            for (i, y) in y32.iter_mut().enumerate() {
                *y = (i..L_SUBFR).fold(0, |s, j| l_mac(s, x[j], h[j - i]));
            }
            let mut max = 0i32;
            for &s in y32.iter() {
                if l_sub(l_abs(s), max) > 0 {
                    max = l_abs(s);
                }
            }
            let mut j = norm_l(max);
            if j > 16 {
                j = 16;
            }
            let j = sub(18, j);
            let d: [i16; L_SUBFR] = std::array::from_fn(|i| extract_l(l_shr(y32[i], j)));
            d
        };
        let mut seed = 606i16;
        for baseline in [false, true] {
            BASELINE_ONLY.with(|b| b.set(baseline));
            for round in 0..600 {
                let (sh, sx) = ((round % 6) as i16, (round / 6 % 8) as i16);
                let mut h: [i16; L_SUBFR] = std::array::from_fn(|_| shr(random(&mut seed), sh));
                let mut x: [i16; L_SUBFR] = std::array::from_fn(|_| shr(random(&mut seed), sx));
                match round % 10 {
                    0 => x = [MIN_16; L_SUBFR],
                    1 => (h, x) = ([MAX_16; L_SUBFR], [MAX_16; L_SUBFR]),
                    2 => x = [0; L_SUBFR],
                    3 => h = [MIN_16; L_SUBFR],
                    4 => x = [1; L_SUBFR],
                    _ => {}
                }
                let mut d = [0i16; L_SUBFR];
                cor_h_x(&h, &x, &mut d);
                assert_eq!(d, reference(&h, &x), "round {round} baseline {baseline}");
            }
        }
        BASELINE_ONLY.with(|b| b.set(false));
    }

    #[test]
    fn pitch_fr3_fast_is_the_reference_search_on_both_clones() {
        // The reference's search: L_mac correlations of every lag, then the
        // fractions -1 and 1 around the best (none for a first subframe
        // lag above 84), each excitation from pred_lt_3.
        #[allow(clippy::too_many_arguments)]
        fn reference(
            exc: &mut [i16],
            pos: usize,
            xn: &[i16; L_SUBFR],
            h: &[i16; L_SUBFR],
            t0_min: i16,
            t0_max: i16,
            sf: usize,
        ) -> (i16, i16) {
            let mut dn = [0i16; L_SUBFR];
            cor_h_x(h, xn, &mut dn);
            let corr = |exc: &[i16], s: usize| -> i32 {
                (0..L_SUBFR).fold(0, |a, k| l_mac(a, dn[k], exc[s + k]))
            };
            let (mut max, mut t0) = (MIN_32, t0_min);
            for t in t0_min..=t0_max {
                let c = corr(exc, pos - t as usize);
                if l_sub(c, max) > 0 {
                    (max, t0) = (c, t);
                }
            }
            pred_lt_3(exc, pos, t0, 0, L_SUBFR);
            if sf == 0 && t0 > 84 {
                return (t0, 0);
            }
            let (mut max, mut frac) = (corr(exc, pos), 0);
            for f in [-1i16, 1] {
                let mut e = exc.to_vec();
                pred_lt_3(&mut e, pos, t0, f, L_SUBFR);
                let c = corr(&e, pos);
                if l_sub(c, max) > 0 {
                    (max, frac) = (c, f);
                }
            }
            pred_lt_3(exc, pos, t0, frac, L_SUBFR);
            (t0, frac)
        }
        let mut seed = 1717i16;
        for baseline in [false, true] {
            BASELINE_ONLY.with(|b| b.set(baseline));
            for round in 0..400 {
                let sh = (round % 4) as i16;
                let mut exc: Vec<i16> = (0..EXC_OFF + L_FRAME + L_INTERPOL)
                    .map(|_| shr(random(&mut seed), sh))
                    .collect();
                if round % 5 == 0 {
                    exc.iter_mut().step_by(3).for_each(|v| *v = MIN_16);
                }
                let xn: [i16; L_SUBFR] = std::array::from_fn(|_| random(&mut seed));
                let h: [i16; L_SUBFR] =
                    std::array::from_fn(|_| shr(random(&mut seed), (round / 4 % 6) as i16));
                let sf = round % 2;
                let t0_min = PIT_MIN as i16 + (round / 2 % 131) as i16;
                let t0_max = (t0_min + if sf == 0 { 6 } else { 9 }).min(PIT_MAX as i16);
                let pos = EXC_OFF + sf * L_SUBFR;
                let mut want_exc = exc.clone();
                let want = reference(&mut want_exc, pos, &xn, &h, t0_min, t0_max, sf);
                let mut frac = 0;
                let t0 = pitch_fr3_fast(&mut exc, pos, &xn, &h, t0_min, t0_max, sf, &mut frac);
                assert_eq!((t0, frac), want, "round {round} baseline {baseline}");
                assert_eq!(exc, want_exc, "round {round} baseline {baseline}");
            }
        }
        BASELINE_ONLY.with(|b| b.set(false));
    }

    #[test]
    fn avx2_and_baseline_clones_encode_and_decode_alike() {
        use crate::codec::g729::Decoder;
        // Real speech when the shared test audio is present, else a
        // synthetic mix of tones, noise and silence.
        let wav = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../../shared/testdata/audio/ast_demo-instruct_8k.wav"
        );
        let pcm: Vec<i16> = match std::fs::read(wav) {
            Ok(b) if b.len() > 44 + 2 * 16_000 => b[44..44 + 2 * 16_000]
                .chunks_exact(2)
                .map(|c| i16::from_le_bytes([c[0], c[1]]))
                .collect(),
            _ => {
                let mut seed = 99i16;
                (0..16_000)
                    .map(|i| {
                        let t = i as f64 / 8000.0;
                        let tone = (t * 2.0 * std::f64::consts::PI * 440.0).sin() * 9000.0;
                        let on = if (i / 2000) % 3 == 2 { 0.0 } else { 1.0 };
                        (tone * on) as i16 / 2 + shr(random(&mut seed), 3)
                    })
                    .collect()
            }
        };
        let run = |baseline: bool| {
            BASELINE_ONLY.with(|b| b.set(baseline));
            let (mut enc, mut dec) = (Encoder::new(), Decoder::new());
            let mut out = Vec::new();
            for f in pcm.chunks_exact(L_FRAME) {
                let p = enc.encode_frame(f.try_into().unwrap());
                let mut y = [0i16; L_FRAME];
                dec.decode_frame(Some(&p), &mut y);
                out.push((p, y));
            }
            BASELINE_ONLY.with(|b| b.set(false));
            out
        };
        let (fast, base) = (run(false), run(true));
        assert_eq!(fast.len(), 200);
        for (i, (a, b)) in fast.iter().zip(&base).enumerate() {
            assert_eq!(a, b, "frame {i}");
        }
        if !crate::codec::g729::simd::avx2() {
            eprintln!("note: no AVX2 on this CPU, both runs used the baseline clones");
        }
    }
}
