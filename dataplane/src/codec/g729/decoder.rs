//! G.729 Annex A decoder: parameter decoding, excitation, synthesis with the
//! overflow rescaling, frame erasure concealment, the parity check on the
//! first pitch delay, the Annex A post-filter (pitch, formant, tilt, AGC) and
//! the 100 Hz high-pass post-processing.

use super::basic_op::*;
use super::bitstream::unpack_rtp;
use super::simd::{avx2_multiversion, sq_sum8n};
use super::tables::*;
use super::util::*;
use super::{CodecError, FRAME_BYTES, SID_BYTES};
use super::{Params, L_FRAME, L_INTERPOL, L_SUBFR, M, MP1, PIT_MAX, PIT_MIN, SHARPMAX, SHARPMIN};

const EXC_OFF: usize = PIT_MAX + L_INTERPOL;
const OLD_EXC_LEN: usize = L_FRAME + PIT_MAX + L_INTERPOL;

const GAMMA2_PST: i16 = 18022;
const GAMMA1_PST: i16 = 22938;
/// The factors of `weight_az` for both post-filter gammas.
const POW_G2: [i16; M] = gamma_powers(GAMMA2_PST);
const POW_G1: [i16; M] = gamma_powers(GAMMA1_PST);
const MU: i16 = 26214;
const AGC_FAC: i16 = 29491;
const AGC_FAC1: i16 = 32767 - AGC_FAC;
const GAMMAP: i16 = 16384;
const INV_GAMMAP: i16 = 21845;
const GAMMAP_2: i16 = 10923;
pub(super) const L_H: usize = 22;

/// Comfort-noise excitation RMS per 5-bit SID energy index: 4 dB steps up
/// to index 6, then 2 dB steps (`32·10^(4(i-5)/20)`, `64·10^(2(i-7)/20)`),
/// spanning the G.729 Annex B energy range.
const SID_GAIN: [i16; 32] = [
    3, 5, 8, 13, 20, 32, 51, 64, 81, 101, 128, 161, 202, 255, 321, 404, 508, 640, 806, 1014, 1277,
    1608, 2024, 2548, 3208, 4038, 5084, 6400, 8057, 10143, 12770, 16076,
];
/// Gain smoothing across SID updates: cur = 7/8 cur + 1/8 new (Q15).
const CNG_SMOOTH_OLD: i16 = 28672;
const CNG_SMOOTH_NEW: i16 = 4096;

/// The fields of one Annex B SID frame (15 bits, first bit = MSB of the
/// first byte, as carried in RTP per RFC 3551).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Sid {
    /// LSF MA predictor switch (1 bit).
    pub ma_switch: u8,
    /// First-stage LSF index (5 bits).
    pub lsf1: u8,
    /// Second-stage LSF index (4 bits).
    pub lsf2: u8,
    /// Quantised energy index (5 bits).
    pub energy: u8,
}

impl Sid {
    /// Unpack the 2-byte RTP SID payload (the 16th bit is padding).
    pub fn from_rtp(b: [u8; 2]) -> Self {
        let v = u16::from_be_bytes(b);
        Sid {
            ma_switch: (v >> 15) as u8 & 1,
            lsf1: (v >> 10) as u8 & 0x1f,
            lsf2: (v >> 6) as u8 & 0x0f,
            energy: (v >> 1) as u8 & 0x1f,
        }
    }

    /// Target comfort-noise excitation RMS for this SID's energy index.
    pub fn excitation_rms(&self) -> i16 {
        SID_GAIN[(self.energy & 0x1f) as usize]
    }
}

/// State of one G.729A decoder channel (about 1.5 KB, no heap).
#[derive(Clone)]
pub struct Decoder {
    old_exc: [i16; OLD_EXC_LEN],
    lsp_old: [i16; M],
    mem_syn: [i16; M],
    sharp: i16,
    old_t0: i16,
    gain_code: i16,
    gain_pitch: i16,
    freq_prev: [[i16; M]; 4],
    prev_ma: usize,
    prev_lsp: [i16; M],
    seed_fer: i16,
    past_qua_en: [i16; 4],
    // post-filter
    synth_buf: [i16; L_FRAME + M],
    // The post-filter's residual (and it shifted right by 2) of the past
    // PIT_MAX samples and the frame, shifted once a frame.
    res2_buf: [i16; PIT_MAX + L_FRAME],
    scal_res2_buf: [i16; PIT_MAX + L_FRAME],
    mem_syn_pst: [i16; M],
    mem_pre: i16,
    past_gain: i16,
    // post-processing high-pass
    y2_hi: i16,
    y2_lo: i16,
    y1_hi: i16,
    y1_lo: i16,
    x0: i16,
    x1: i16,
    // comfort noise (Annex B SID)
    cng_active: bool,
    cng_gain: i16,
    cng_seed: i16,
}

impl Default for Decoder {
    fn default() -> Self {
        Self::new()
    }
}

impl Decoder {
    /// A decoder in the Recommendation's initial state.
    pub fn new() -> Self {
        Decoder {
            old_exc: [0; OLD_EXC_LEN],
            lsp_old: [
                30000, 26000, 21000, 15000, 8000, 0, -8000, -15000, -21000, -26000,
            ],
            mem_syn: [0; M],
            sharp: SHARPMIN,
            old_t0: 60,
            gain_code: 0,
            gain_pitch: 0,
            freq_prev: [FREQ_PREV_RESET; 4],
            prev_ma: 0,
            prev_lsp: FREQ_PREV_RESET,
            seed_fer: 21845,
            past_qua_en: [-14336; 4],
            synth_buf: [0; L_FRAME + M],
            res2_buf: [0; PIT_MAX + L_FRAME],
            scal_res2_buf: [0; PIT_MAX + L_FRAME],
            mem_syn_pst: [0; M],
            mem_pre: 0,
            past_gain: 4096,
            y2_hi: 0,
            y2_lo: 0,
            y1_hi: 0,
            y1_lo: 0,
            x0: 0,
            x1: 0,
            cng_active: false,
            cng_gain: 0,
            cng_seed: 11111,
        }
    }

    /// Decode an Annex B SID frame into 80 samples of comfort noise: the
    /// signalled energy (smoothed over SID updates), random excitation, and
    /// the spectral envelope of the last speech frame, then the normal
    /// post-filter and post-processing, so the next speech frame continues
    /// from a consistent state.
    pub fn decode_sid(&mut self, sid: &Sid, out: &mut [i16; L_FRAME]) {
        let target = sid.excitation_rms();
        self.cng_gain = if self.cng_active {
            add(
                mult_r(self.cng_gain, CNG_SMOOTH_OLD),
                mult_r(target, CNG_SMOOTH_NEW),
            )
        } else {
            target
        };
        self.cng_active = true;
        self.comfort_noise(out);
    }

    /// Decode one RTP payload (RFC 3551 section 4.5.6): any number of
    /// 10-byte speech frames, optionally followed by one 2-byte Annex B SID
    /// frame, into 80 samples per frame. Returns the samples written.
    pub fn decode_rtp_payload(
        &mut self,
        payload: &[u8],
        out: &mut [i16],
    ) -> Result<usize, CodecError> {
        let full = payload.len() / FRAME_BYTES;
        let rest = payload.len() % FRAME_BYTES;
        if rest != 0 && rest != SID_BYTES {
            return Err(CodecError::BadPayloadLength {
                len: payload.len(),
                frame: FRAME_BYTES,
            });
        }
        let frames = full + usize::from(rest != 0);
        let need = frames * L_FRAME;
        if out.len() < need {
            return Err(CodecError::OutputTooSmall {
                need,
                have: out.len(),
            });
        }
        let have = out.len();
        let mut outs = out.chunks_exact_mut(L_FRAME);
        let mut bytes = payload.chunks_exact(FRAME_BYTES);
        for (b, o) in (&mut bytes).zip(&mut outs) {
            let (Ok(b), Ok(o)) = (
                <&[u8; FRAME_BYTES]>::try_from(b),
                <&mut [i16; L_FRAME]>::try_from(o),
            ) else {
                return Err(CodecError::BadPayloadLength {
                    len: payload.len(),
                    frame: FRAME_BYTES,
                });
            };
            let prm = unpack_rtp(b);
            self.decode_frame(Some(&prm), o);
        }
        if let [s0, s1] = *bytes.remainder() {
            let Some(Ok(o)) = outs.next().map(<&mut [i16; L_FRAME]>::try_from) else {
                return Err(CodecError::OutputTooSmall { need, have });
            };
            self.decode_sid(&Sid::from_rtp([s0, s1]), o);
        }
        Ok(need)
    }

    /// Whether the last frame was comfort noise (a SID, or no-data frames
    /// after one), so missing frames should continue it.
    pub fn in_comfort_noise(&self) -> bool {
        self.cng_active
    }

    /// One more frame of comfort noise at the current level (Annex B
    /// "no data" frame between SID updates).
    pub fn comfort_noise(&mut self, out: &mut [i16; L_FRAME]) {
        let mut az = [0i16; 2 * MP1];
        lsp_az(&self.lsp_old, &mut az[..MP1]);
        let (first, second) = az.split_at_mut(MP1);
        second.copy_from_slice(first);
        let t2 = [self.old_t0; 2];
        for sf in 0..2 {
            let pos = EXC_OFF + sf * L_SUBFR;
            // Approximately Gaussian (sum of four uniform values), scaled below.
            let mut raw = [0i16; L_SUBFR];
            let mut energy = 0i64;
            for v in raw.iter_mut() {
                let mut acc = 0i32;
                for _ in 0..4 {
                    acc += (random(&mut self.cng_seed) >> 2) as i32;
                }
                *v = acc as i16;
                energy += (*v as i64) * (*v as i64);
            }
            // Scale to RMS = cng_gain: factor = gain / rms(raw).
            let rms = isqrt((energy / L_SUBFR as i64).max(1) as u64) as i64;
            for (i, v) in raw.iter().enumerate() {
                let x = (*v as i64 * self.cng_gain as i64) / rms.max(1);
                self.old_exc[pos + i] = x.clamp(i16::MIN as i64, i16::MAX as i64) as i16;
            }
            let a = &az[sf * MP1..(sf + 1) * MP1];
            let syn = &mut self.synth_buf[M + sf * L_SUBFR..M + (sf + 1) * L_SUBFR];
            let ov = syn_filt(
                a,
                &self.old_exc[pos..pos + L_SUBFR],
                syn,
                &mut self.mem_syn,
                true,
            );
            if ov {
                // Saturated noise: restart the filter memory rather than ring.
                self.mem_syn = [0; M];
            }
        }
        self.old_exc.copy_within(L_FRAME.., 0);
        self.gain_pitch = 0;
        self.sharp = SHARPMIN;
        self.post_filter(&az, &t2);
        out.copy_from_slice(&self.synth_buf[M..]);
        self.post_process(out);
    }

    /// Decode one 10 ms frame from its parameters (`None` = erased frame)
    /// into 80 output samples.
    pub fn decode_frame(&mut self, prm: Option<&Params>, out: &mut [i16; L_FRAME]) {
        if prm.is_some() {
            self.cng_active = false;
        } else if self.cng_active {
            // Missing frames during a silence period continue the noise.
            self.comfort_noise(out);
            return;
        }
        let mut az = [0i16; 2 * MP1];
        let mut t2 = [0i16; 2];
        self.decode_synth(prm, &mut az, &mut t2);
        self.post_filter(&az, &t2);
        out.copy_from_slice(&self.synth_buf[M..]);
        self.post_process(out);
    }

    /// [`decode_synth_body`](Self::decode_synth_body), compiled for AVX2 where the CPU has it
    /// (`avx2_multiversion`).
    #[inline(always)]
    fn decode_synth(&mut self, prm: Option<&Params>, az: &mut [i16; 2 * MP1], t2: &mut [i16; 2]) {
        decode_synth_mv(self, prm, az, t2)
    }

    #[inline(always)]
    fn decode_synth_body(
        &mut self,
        prm: Option<&Params>,
        az: &mut [i16; 2 * MP1],
        t2: &mut [i16; 2],
    ) {
        let bfi = prm.is_none();
        let zero = Params::default();
        let p = prm.unwrap_or(&zero);

        // LSP decoding (or concealment) and interpolation.
        let mut lsf_q = [0i16; M];
        if !bfi {
            let mode = ((p.0[0] >> 7) & 1) as usize;
            let code0 = (p.0[0] & 0x7f) as usize;
            let code1 = ((p.0[1] >> 5) & 0x1f) as usize;
            let code2 = (p.0[1] & 0x1f) as usize;
            lsp_get_quant(code0, code1, code2, mode, &mut self.freq_prev, &mut lsf_q);
            self.prev_lsp = lsf_q;
            self.prev_ma = mode;
        } else {
            lsf_q = self.prev_lsp;
            let mut buf = [0i16; M];
            lsp_prev_extract(
                &self.prev_lsp,
                &mut buf,
                &FG[self.prev_ma],
                &self.freq_prev,
                &FG_SUM_INV[self.prev_ma],
            );
            lsp_prev_update(&buf, &mut self.freq_prev);
        }
        let mut lsp_new = [0i16; M];
        lsf_lsp2(&lsf_q, &mut lsp_new);
        int_qlpc(&self.lsp_old, &lsp_new, az);
        self.lsp_old = lsp_new;

        let mut t0: i16 = 0;
        let mut t0_frac: i16 = 0;
        for (sf, i_subfr) in [0usize, L_SUBFR].into_iter().enumerate() {
            let base = 2 + sf * 5; // index of P1 / P2 in the parameter vector
            let index = p.0[base] as i16;
            let bad_pitch = if sf == 0 {
                // P0 parity check on the first delay.
                let parity_err = (parity_pitch(index) ^ p.0[3] as i16) & 1;
                bfi || parity_err != 0
            } else {
                bfi
            };
            if !bad_pitch {
                dec_lag3(index, sf, &mut t0, &mut t0_frac);
                self.old_t0 = t0;
            } else {
                t0 = self.old_t0;
                t0_frac = 0;
                self.old_t0 = add(self.old_t0, 1);
                if self.old_t0 > PIT_MAX as i16 {
                    self.old_t0 = PIT_MAX as i16;
                }
            }
            t2[sf] = t0;

            let pos = EXC_OFF + i_subfr;
            pred_lt_3(&mut self.old_exc, pos, t0, t0_frac, L_SUBFR);

            let ci = if sf == 0 { 4 } else { 8 };
            let (c_index, s_index) = if bfi {
                let c = random(&mut self.seed_fer) & 0x1fff;
                let s = random(&mut self.seed_fer) & 0x000f;
                (c, s)
            } else {
                (p.0[ci] as i16, p.0[ci + 1] as i16)
            };
            let mut code = [0i16; L_SUBFR];
            decod_acelp(s_index, c_index, &mut code);

            let j = shl(self.sharp, 1);
            if (t0 as usize) < L_SUBFR {
                for i in t0 as usize..L_SUBFR {
                    code[i] = add(code[i], mult(code[i - t0 as usize], j));
                }
            }

            let gi = if sf == 0 { 6 } else { 10 };
            self.dec_gain(p.0[gi] as i16, &code, bfi);

            self.sharp = self.gain_pitch.clamp(SHARPMIN, SHARPMAX);

            let exc: &mut [i16; L_SUBFR] = (&mut self.old_exc[pos..pos + L_SUBFR])
                .try_into()
                .unwrap_or_else(|_| unreachable!());
            excitation(exc, &code, self.gain_pitch, self.gain_code);

            let a = &az[sf * MP1..(sf + 1) * MP1];
            let syn = &mut self.synth_buf[M + i_subfr..M + i_subfr + L_SUBFR];
            let mut mem = self.mem_syn;
            let ov = syn_filt(a, &self.old_exc[pos..pos + L_SUBFR], syn, &mut mem, false);
            if ov {
                for v in self.old_exc.iter_mut() {
                    *v = shr(*v, 2);
                }
                syn_filt(
                    a,
                    &self.old_exc[pos..pos + L_SUBFR],
                    syn,
                    &mut self.mem_syn,
                    true,
                );
            } else {
                self.mem_syn.copy_from_slice(&syn[L_SUBFR - M..]);
            }
        }
        self.old_exc.copy_within(L_FRAME.., 0);
    }

    #[inline(never)]
    fn dec_gain(&mut self, index: i16, code: &[i16; L_SUBFR], bfi: bool) {
        if bfi {
            self.gain_pitch = mult(self.gain_pitch, 29491);
            if self.gain_pitch > 29491 {
                self.gain_pitch = 29491;
            }
            self.gain_code = mult(self.gain_code, 32111);
            gain_update_erasure(&mut self.past_qua_en);
            return;
        }
        let index1 = IMAP1[(index >> 4) as usize] as usize;
        let index2 = IMAP2[(index & 15) as usize] as usize;
        self.gain_pitch = add(GBK1[index1][0], GBK2[index2][0]);
        let (gcode0, exp_gcode0) = gain_predict(&self.past_qua_en, code);
        let l_gbk12 = l_add(GBK1[index1][1] as i32, GBK2[index2][1] as i32);
        let tmp = extract_l(l_shr(l_gbk12, 1));
        let l_acc = l_mult(tmp, gcode0);
        let l_acc = l_shl(l_acc, add(negate(exp_gcode0), -12 - 1 + 1 + 16));
        self.gain_code = extract_h(l_acc);
        gain_update(&mut self.past_qua_en, l_gbk12);
    }

    /// [`post_filter_body`](Self::post_filter_body), compiled for AVX2 where the CPU has it
    /// (`avx2_multiversion`).
    #[inline(always)]
    fn post_filter(&mut self, az: &[i16; 2 * MP1], t: &[i16; 2]) {
        post_filter_mv(self, az, t)
    }

    #[inline(always)]
    fn post_filter_body(&mut self, az: &[i16; 2 * MP1], t: &[i16; 2]) {
        let mut syn_pst = [0i16; L_FRAME];
        let mut ap3_t = [[0i16; MP1]; 2];
        let mut ap4_t = [[0i16; MP1]; 2];
        for sf in 0..2 {
            let a = &az[sf * MP1..(sf + 1) * MP1];
            weight_az_pow(a, &POW_G2, &mut ap3_t[sf]);
            weight_az_pow(a, &POW_G1, &mut ap4_t[sf]);
        }
        // The impulse responses of A(z/g2)/A(z/g1) of both subframes (for
        // the tilt compensation), two independent recursions interleaved.
        let mut h_t = [[0i16; L_H]; 2];
        {
            let [h0, h1] = &mut h_t;
            syn_impulse2([&ap4_t[0], &ap4_t[1]], [&ap3_t[0], &ap3_t[1]], [h0, h1]);
        }
        for sf in 0..2 {
            let i_subfr = sf * L_SUBFR;
            let mut t0_min = sub(t[sf], 3);
            let mut t0_max = add(t0_min, 6);
            if t0_max > PIT_MAX as i16 {
                t0_max = PIT_MAX as i16;
                t0_min = sub(t0_max, 6);
            }
            let (ap3, ap4) = (ap3_t[sf], ap4_t[sf]);

            // Residual of the synthesis through A(z/GAMMA2_PST).
            let mut res2 = [0i16; L_SUBFR];
            residu(&ap3, &self.synth_buf, M + i_subfr, &mut res2, L_SUBFR);
            let base = PIT_MAX + i_subfr;
            self.res2_buf[base..base + L_SUBFR].copy_from_slice(&res2);
            for (d, &v) in self.scal_res2_buf[base..base + L_SUBFR]
                .iter_mut()
                .zip(&res2)
            {
                *d = v >> 2;
            }

            let mut res2_pst = [0i16; L_SUBFR];
            self.pit_pst_filt(base, t0_min, t0_max, &mut res2_pst);

            // Tilt compensation from the impulse response of A(z/g2)/A(z/g1).
            let h = h_t[sf];
            // The reference's L_mult then L_mac chains, i.e. the chains
            // from 0 (`L_mult(a, b)` is `L_mac(0, a, b)`), summed exactly.
            let temp1 = extract_h(tilt_energy(&h));
            let mut temp2 = extract_h(l_mac_dot(0, &h[..L_H - 1], &h[1..]));
            if temp2 <= 0 {
                temp2 = 0;
            } else {
                temp2 = mult(temp2, MU);
                temp2 = div_s(temp2, temp1);
            }
            self.preemphasis(&mut res2_pst, temp2);

            syn_filt(
                &ap4,
                &res2_pst,
                &mut syn_pst[i_subfr..i_subfr + L_SUBFR],
                &mut self.mem_syn_pst,
                true,
            );

            let sig_in: [i16; L_SUBFR] = self.synth_buf[M + i_subfr..M + i_subfr + L_SUBFR]
                .try_into()
                .unwrap_or([0; L_SUBFR]);
            let out: &mut [i16; L_SUBFR] = (&mut syn_pst[i_subfr..i_subfr + L_SUBFR])
                .try_into()
                .unwrap_or_else(|_| unreachable!());
            self.agc(&sig_in, out);
        }
        self.res2_buf.copy_within(L_FRAME.., 0);
        self.scal_res2_buf.copy_within(L_FRAME.., 0);
        self.synth_buf.copy_within(L_FRAME.., 0);
        self.synth_buf[M..].copy_from_slice(&syn_pst);
    }

    #[inline(always)]
    fn pit_pst_filt(&self, base: usize, t0_min: i16, t0_max: i16, out: &mut [i16; L_SUBFR]) {
        let sig = &self.res2_buf;
        let scal = &self.scal_res2_buf;
        let mut cor_max = MIN_32;
        let mut t0 = t0_min;
        let cur = block(&scal[base..]);
        // With `|v| <= X` over the lags' window, every running sum of a
        // correlation's `L_mac` chain is at most `2 L_SUBFR X^2`: when that
        // fits, it is twice the plain 32-bit sum.
        let lo = base.saturating_sub(t0_max.max(0) as usize);
        let x = abs_max(&scal[lo..base + L_SUBFR]);
        let plain = 2 * L_SUBFR as i64 * x * x <= MAX_32 as i64;
        for i in t0_min..=t0_max {
            let past = block(&scal[base - i as usize..]);
            let corr = if plain {
                2 * dot_plain(cur, past)
            } else {
                l_mac_dot(0, cur, past)
            };
            if l_sub(corr, cor_max) > 0 {
                cor_max = corr;
                t0 = i;
            }
        }
        let d = base - t0 as usize;
        let ener = energy_q13(1, block(&scal[d..]));
        let ener0 = energy_q13(1, cur);
        if cor_max < 0 {
            cor_max = 0;
        }
        let mut temp = cor_max;
        if ener > temp {
            temp = ener;
        }
        if ener0 > temp {
            temp = ener0;
        }
        let j = norm_l(temp);
        let mut cmax = round(l_shl(cor_max, j));
        let mut en = round(l_shl(ener, j));
        let en0 = round(l_shl(ener0, j));

        let mut temp = l_mult(cmax, cmax);
        temp = l_sub(temp, l_shr(l_mult(en, en0), 1));
        if temp < 0 {
            out.copy_from_slice(&sig[base..base + L_SUBFR]);
            return;
        }
        let (g0, gain);
        if cmax > en {
            g0 = INV_GAMMAP;
            gain = GAMMAP_2;
        } else {
            cmax = shr(mult(cmax, GAMMAP), 1);
            en = shr(en, 1);
            let i = add(cmax, en);
            if i > 0 {
                gain = div_s(cmax, i);
                g0 = sub(32767, gain);
            } else {
                g0 = 32767;
                gain = 0;
            }
        }
        for i in 0..L_SUBFR {
            out[i] = add(mult(g0, sig[base + i]), mult(gain, sig[d + i]));
        }
    }

    #[inline(always)]
    fn preemphasis(&mut self, signal: &mut [i16; L_SUBFR], g: i16) {
        // Each output from the inputs alone (the reference runs backwards
        // in place): independent, vectorised.
        let x = *signal;
        signal[0] = sub(x[0], mult(g, self.mem_pre));
        for (d, w) in signal[1..].iter_mut().zip(x.windows(2)) {
            *d = sub(w[1], mult(g, w[0]));
        }
        self.mem_pre = x[L_SUBFR - 1];
    }

    /// [`agc_body`](Self::agc_body), compiled for AVX2 where the CPU has it
    /// (`avx2_multiversion`).
    #[inline(always)]
    fn agc(&mut self, sig_in: &[i16; L_SUBFR], sig_out: &mut [i16; L_SUBFR]) {
        agc_mv(self, sig_in, sig_out)
    }

    #[inline(always)]
    fn agc_body(&mut self, sig_in: &[i16; L_SUBFR], sig_out: &mut [i16; L_SUBFR]) {
        let mut x = [0i16; L_SUBFR];
        for (x, &v) in x.iter_mut().zip(sig_out.iter()) {
            *x = v >> 2;
        }
        let s = energy_q13(0, &x);
        if s == 0 {
            self.past_gain = 0;
            return;
        }
        let mut exp = sub(norm_l(s), 1);
        let gain_out = round(l_shl(s, exp));

        let mut x = [0i16; L_SUBFR];
        for (x, &v) in x.iter_mut().zip(sig_in.iter()) {
            *x = v >> 2;
        }
        let s = energy_q13(0, &x);
        let g0 = if s == 0 {
            0
        } else {
            let i = norm_l(s);
            let gain_in = round(l_shl(s, i));
            exp = sub(exp, i);
            let mut s = l_deposit_l(div_s(gain_out, gain_in));
            s = l_shl(s, 7);
            s = l_shr(s, exp);
            s = inv_sqrt(s);
            let i = round(l_shl(s, 9));
            mult(i, AGC_FAC1)
        };
        // The gain recursion alone first (the serial part), then the
        // scaling, which vectorises.
        let mut gains = [0i16; L_SUBFR];
        let mut gain = self.past_gain;
        if gain >= 0 && (0..=MAX_16 - mult(MAX_16, AGC_FAC)).contains(&g0) {
            // From `0 <= gain <= MAX_16` neither operator saturates
            // (`mult` of a non-negative value, then at most `mult(MAX_16,
            // AGC_FAC) + g0`), and the gain stays in that range: the
            // serial chain is one multiply, shift and add.
            let mut v = gain as i32;
            for g in gains.iter_mut() {
                v = ((v * AGC_FAC as i32) >> 15) + g0 as i32;
                *g = v as i16;
            }
            gain = v as i16;
        } else {
            for g in gains.iter_mut() {
                gain = mult(gain, AGC_FAC);
                gain = add(gain, g0);
                *g = gain;
            }
        }
        for (v, &g) in sig_out.iter_mut().zip(&gains) {
            *v = agc_scale(*v, g);
        }
        self.past_gain = gain;
    }

    /// High-pass post-processing (2nd order, 100 Hz), state as the
    /// reference's hi/lo pairs.
    ///
    /// Each sample's sum `mpy_32_16(y1, a1) + mpy_32_16(y2, a2) + Σ 2 x b`
    /// is formed exactly in 64 bits. The input terms are summed for the
    /// whole frame first (vectorised, see [`hp_input_terms`]); when they
    /// leave room for any state, no running sum of the reference's chain
    /// can leave 32 bits and each sample is three terms added. Otherwise
    /// (near full-scale input) each sample checks its running sums and a
    /// sample that might saturate is replayed with the saturating
    /// operators. The state lives in locals: through `self` every sample
    /// would reload what the previous one just stored. The outputs are
    /// formed after the recursion, vectorised ([`round_shl3`]).
    ///
    /// [`post_process_body`](Self::post_process_body), compiled for AVX2 where the CPU has it
    /// (`avx2_multiversion`).
    #[inline(always)]
    fn post_process(&mut self, signal: &mut [i16; L_FRAME]) {
        post_process_mv(self, signal)
    }

    #[inline(always)]
    fn post_process_body(&mut self, signal: &mut [i16; L_FRAME]) {
        let (a1, a2) = (A100[1] as i64, A100[2] as i64);
        let (xs, roomy) = hp_input_terms([self.x1, self.x0], signal);
        // The past outputs as the 31-bit values `hi 2^15 + lo` the hi/lo
        // pairs stand for: `Mpy_32_16(hi, lo, a) = 2 (hi a + ((lo a) >> 15))
        // = 2 ((v a) >> 15)` with `v = hi 2^15 + lo`, one multiply instead
        // of two on the sample-to-sample chain.
        let v = |h: i16, l: i16| ((h as i64) << 15) + l as i64;
        let (mut v1, mut v2) = (v(self.y1_hi, self.y1_lo), v(self.y2_hi, self.y2_lo));
        let mut ls = [0i32; L_FRAME];
        if roomy {
            // Two samples a step (fewer register moves and loop steps).
            for (l, x) in ls.chunks_exact_mut(2).zip(xs.chunks_exact(2)) {
                // The older state's term first: only the newest one's
                // product is on the sample-to-sample chain.
                let r = 2 * ((v2 * a2) >> 15) + x[0] as i64;
                l[0] = (2 * ((v1 * a1) >> 15) + r) as i32;
                (_, v2) = shl_state(l[0], 2);
                let r = 2 * ((v1 * a2) >> 15) + x[1] as i64;
                l[1] = (2 * ((v2 * a1) >> 15) + r) as i32;
                (_, v1) = shl_state(l[1], 2);
            }
        } else {
            let (b0, b1, b2) = (B100[0] as i64, B100[1] as i64, B100[2] as i64);
            let (mut x0, mut x1) = (self.x0, self.x1);
            for (l, &s) in ls.iter_mut().zip(signal.iter()) {
                let x2 = x1;
                x1 = x0;
                x0 = s;
                // Every partial sum of the reference's chain is `m1` plus
                // a sum `r` of the other terms, and those are formed (with
                // their extremes) before `m1`, the only term on the
                // sample-to-sample chain, is known.
                let r2 = 2 * ((v2 * a2) >> 15);
                let r3 = r2 + 2 * x0 as i64 * b0;
                let r4 = r3 + 2 * x1 as i64 * b1;
                let r5 = r4 + 2 * x2 as i64 * b2;
                let rlo = r2.min(r3).min(r4).min(r5);
                let rhi = r2.max(r3).max(r4).max(r5);
                let m1 = 2 * ((v1 * a1) >> 15);
                *l = if m1 + rlo >= MIN_32 as i64 && m1 + rhi <= MAX_32 as i64 {
                    (m1 + r5) as i32
                } else {
                    let hl = |v: i64| ((v >> 15) as i16, (v & 0x7fff) as i16);
                    let ((y1h, y1l), (y2h, y2l)) = (hl(v1), hl(v2));
                    let mut l = mpy_32_16(y1h, y1l, A100[1]);
                    l = l_add(l, mpy_32_16(y2h, y2l, A100[2]));
                    l = l_mac(l, x0, B100[0]);
                    l = l_mac(l, x1, B100[1]);
                    l_mac(l, x2, B100[2])
                };
                v2 = v1;
                (_, v1) = shl_state(*l, 2);
            }
        }
        (self.x1, self.x0) = (signal[L_FRAME - 2], signal[L_FRAME - 1]);
        for (s, &l) in signal.iter_mut().zip(&ls) {
            *s = round_shl3(l);
        }
        (self.y1_hi, self.y1_lo) = l_extract((v1 << 1) as i32);
        (self.y2_hi, self.y2_lo) = l_extract((v2 << 1) as i32);
    }
}

/// The input terms `2 (x[i] b0 + x[i-1] b1 + x[i-2] b2)` of the
/// post-processing high-pass for each sample of `signal` (`prev` = the two
/// inputs before it, older first), and whether they leave room for any
/// state: the state terms `mpy_32_16(y1, a1)` and `mpy_32_16(y2, a2)` have
/// `|v| <= 2^30`, so together at most `2^16 (15836 + 7667)`; when every
/// running sum of the input terms (from 0, in the reference's order) lies
/// within `MAX_32` minus that, no running sum of a sample's chain can
/// leave 32 bits. Each running sum of input terms is below `2^16 30796 <
/// 2^31`: plain 32-bit lanes.
#[inline(always)]
fn hp_input_terms(prev: [i16; 2], signal: &[i16; L_FRAME]) -> ([i32; L_FRAME], bool) {
    const STATE: i32 = 2 * (1 << 15) * (A100[1] as i32 - A100[2] as i32);
    let (b0, b1, b2) = (B100[0] as i32, B100[1] as i32, B100[2] as i32);
    let mut x = [0i16; L_FRAME + 2];
    x[..2].copy_from_slice(&prev);
    x[2..].copy_from_slice(signal);
    let mut xs = [0i32; L_FRAME];
    let (mut lo, mut hi) = (0i32, 0i32);
    for (i, t) in xs.iter_mut().enumerate() {
        let p3 = 2 * b0 * x[i + 2] as i32;
        let p4 = p3 + 2 * b1 * x[i + 1] as i32;
        let p5 = p4 + 2 * b2 * x[i] as i32;
        *t = p5;
        lo = lo.min(p3.min(p4).min(p5));
        hi = hi.max(p3.max(p4).max(p5));
    }
    (xs, hi <= MAX_32 - STATE && lo >= MIN_32 + STATE)
}

/// `l_mac_energy(0, h).0` of an impulse response: `min(2 Σ h², MAX_32)`
/// (as [`l_mac_energy`] of a subframe), the sum of squares in
/// 32-bit lanes over `h` padded with zeros to a multiple of 8.
#[inline(always)]
fn tilt_energy(h: &[i16; L_H]) -> i32 {
    let mut v = [0i16; 24];
    v[..L_H].copy_from_slice(h);
    (2 * sq_sum8n(&v)).min(MAX_32 as u64) as i32
}

/// The subframe starting at `v[0]` (`v` holds at least one; the callers'
/// windows always do, checked once here rather than per access).
#[inline(always)]
fn block(v: &[i16]) -> &[i16; L_SUBFR] {
    match v.get(..L_SUBFR).map(<&[i16; L_SUBFR]>::try_from) {
        Some(Ok(b)) => b,
        _ => unreachable!("subframe window out of its buffer"),
    }
}

/// `Σ a[k] b[k]` in 32 bits, wrapping: the exact sum when the caller's
/// bound says it fits (vectorised, `pmaddwd`).
#[inline(always)]
fn dot_plain(a: &[i16; L_SUBFR], b: &[i16; L_SUBFR]) -> i32 {
    a.iter()
        .zip(b)
        .fold(0i32, |s, (&x, &y)| s.wrapping_add(x as i32 * y as i32))
}

/// `for v in x { acc = L_mac(acc, v, v) }` for `acc >= 0` and `|v| <=
/// 2^13` (values shifted right by 2): the squares sum to less than
/// `L_SUBFR 2^26 < 2^32`, exactly in unsigned 32-bit lanes; the chain
/// saturates (and stays) at `MAX_32` exactly when the true sum exceeds it,
/// as in `l_mac_energy`.
#[inline(always)]
fn energy_q13(acc: i32, x: &[i16; L_SUBFR]) -> i32 {
    debug_assert!(acc >= 0 && x.iter().all(|v| v.unsigned_abs() <= 1 << 13));
    let s = x
        .iter()
        .fold(0u32, |s, &v| s.wrapping_add((v as i32 * v as i32) as u32));
    (acc as i64 + 2 * s as i64).min(MAX_32 as i64) as i32
}

/// `extract_h(L_shl(L_mult(v, g), 3))`: with `p = v g` (|p| <= 2^30) this
/// is `p >> 12` saturated to 16 bits (`L_mult`'s one saturating case,
/// `p = 2^30`, saturates the shift too).
#[inline(always)]
fn agc_scale(v: i16, g: i16) -> i16 {
    ((v as i32 * g as i32) >> 12).clamp(MIN_16 as i32, MAX_16 as i32) as i16
}

/// Decode the pitch delay (1/3 resolution) of subframe `sf`.
pub(crate) fn dec_lag3(index: i16, sf: usize, t0: &mut i16, t0_frac: &mut i16) {
    if sf == 0 {
        if index < 197 {
            *t0 = add(mult(add(index, 2), 10923), 19);
            let i = add(add(*t0, *t0), *t0);
            *t0_frac = add(sub(index, i), 58);
        } else {
            *t0 = sub(index, 112);
            *t0_frac = 0;
        }
    } else {
        let mut t0_min = sub(*t0, 5);
        if t0_min < PIT_MIN as i16 {
            t0_min = PIT_MIN as i16;
        }
        let mut t0_max = add(t0_min, 9);
        if t0_max > PIT_MAX as i16 {
            t0_max = PIT_MAX as i16;
            t0_min = sub(t0_max, 9);
        }
        let i = sub(mult(add(index, 2), 10923), 1);
        *t0 = add(i, t0_min);
        let i3 = add(add(i, i), i);
        *t0_frac = sub(sub(index, 2), i3);
    }
}

/// Build the 4-pulse algebraic codevector (Q13) from its position index and signs.
pub(crate) fn decod_acelp(sign: i16, index: i16, cod: &mut [i16; L_SUBFR]) {
    let mut index = index;
    let mut pos = [0usize; 4];
    let i = index & 7;
    pos[0] = (i * 5) as usize;
    index >>= 3;
    let i = index & 7;
    pos[1] = (i * 5 + 1) as usize;
    index >>= 3;
    let i = index & 7;
    pos[2] = (i * 5 + 2) as usize;
    index >>= 3;
    let j = index & 1;
    index >>= 1;
    let i = index & 7;
    pos[3] = (i * 5 + 3 + j) as usize;
    cod.fill(0);
    let mut sign = sign;
    for p in pos {
        cod[p] = if sign & 1 != 0 { 8191 } else { -8192 };
        sign >>= 1;
    }
}

/// Integer square root (floor).
fn isqrt(x: u64) -> u64 {
    if x < 2 {
        return x;
    }
    let mut r = (x as f64).sqrt() as u64;
    while r * r > x {
        r -= 1;
    }
    while (r + 1) * (r + 1) <= x {
        r += 1;
    }
    r
}

avx2_multiversion! {
    fn decode_synth_mv(
        this: &mut Decoder,
        prm: Option<&Params>,
        az: &mut [i16; 2 * MP1],
        t2: &mut [i16; 2],
    ) = Decoder::decode_synth_body;
    fn post_filter_mv(
        this: &mut Decoder,
        az: &[i16; 2 * MP1],
        t: &[i16; 2],
    ) = Decoder::post_filter_body;
    fn agc_mv(
        this: &mut Decoder,
        sig_in: &[i16; L_SUBFR],
        sig_out: &mut [i16; L_SUBFR],
    ) = Decoder::agc_body;
    fn post_process_mv(
        this: &mut Decoder,
        signal: &mut [i16; L_FRAME],
    ) = Decoder::post_process_body;
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::codec::g729::simd::BASELINE_ONLY;

    /// The tilt sums of the post-filter as one exact sum each equal the
    /// reference's `L_mult` + `L_mac` chains, saturation included.
    #[test]
    fn tilt_sums_are_the_operator_chains() {
        let mut seed = 41i16;
        let (mut sat1, mut sat2) = (0, 0);
        for n in 0..3000 {
            let h: [i16; L_H] = std::array::from_fn(|k| match (n + k) % 9 {
                0 if n % 2 == 0 => i16::MIN,
                1 if n % 3 == 0 => i16::MAX,
                _ => shr(random(&mut seed), (n % 4) as i16),
            });
            let mut e = l_mult(h[0], h[0]);
            for i in 1..L_H {
                e = l_mac(e, h[i], h[i]);
            }
            let mut c = l_mult(h[0], h[1]);
            for i in 1..L_H - 1 {
                c = l_mac(c, h[i], h[i + 1]);
            }
            assert_eq!(l_mac_energy(0, &h).0, e, "{h:?}");
            assert_eq!(tilt_energy(&h), e, "{h:?}");
            assert_eq!(l_mac_dot(0, &h[..L_H - 1], &h[1..]), c, "{h:?}");
            sat1 += usize::from(e == MAX_32);
            sat2 += usize::from(c == MAX_32 || c == MIN_32);
        }
        assert!(sat1 > 100 && sat2 > 100, "{sat1} {sat2}");
    }

    avx2_multiversion! {
        fn pit_mv(
            this: &Decoder,
            base: usize,
            t0_min: i16,
            t0_max: i16,
            out: &mut [i16; L_SUBFR],
        ) = Decoder::pit_pst_filt;
        fn pre_mv(this: &mut Decoder, signal: &mut [i16; L_SUBFR], g: i16)
            = Decoder::preemphasis;
    }

    /// The reference's pitch post-filter, operator by operator.
    fn pit_ref(
        res2: &[i16],
        scal: &[i16],
        base: usize,
        t0_min: i16,
        t0_max: i16,
    ) -> [i16; L_SUBFR] {
        let (mut cor_max, mut t0) = (MIN_32, t0_min);
        for i in t0_min..=t0_max {
            let d = base - i as usize;
            let mut corr = 0;
            for j in 0..L_SUBFR {
                corr = l_mac(corr, scal[base + j], scal[d + j]);
            }
            if l_sub(corr, cor_max) > 0 {
                (cor_max, t0) = (corr, i);
            }
        }
        let d = base - t0 as usize;
        let (mut ener, mut ener0) = (1, 1);
        for j in 0..L_SUBFR {
            ener = l_mac(ener, scal[d + j], scal[d + j]);
            ener0 = l_mac(ener0, scal[base + j], scal[base + j]);
        }
        cor_max = cor_max.max(0);
        let temp = cor_max.max(ener).max(ener0);
        let j = norm_l(temp);
        let mut cmax = round(l_shl(cor_max, j));
        let mut en = round(l_shl(ener, j));
        let en0 = round(l_shl(ener0, j));
        let temp = l_sub(l_mult(cmax, cmax), l_shr(l_mult(en, en0), 1));
        if temp < 0 {
            return std::array::from_fn(|i| res2[base + i]);
        }
        let (g0, gain) = if cmax > en {
            (INV_GAMMAP, GAMMAP_2)
        } else {
            cmax = shr(mult(cmax, GAMMAP), 1);
            en = shr(en, 1);
            let i = add(cmax, en);
            if i > 0 {
                let gain = div_s(cmax, i);
                (sub(32767, gain), gain)
            } else {
                (32767, 0)
            }
        };
        std::array::from_fn(|i| add(mult(g0, res2[base + i]), mult(gain, res2[d + i])))
    }

    /// The pitch post-filter (lag search, energies, gains) and the
    /// preemphasis equal the reference on both clones, for residuals from
    /// gentle (plain sums) to full scale (saturating chains).
    #[test]
    fn pitch_postfilter_and_preemphasis_are_the_reference_on_both_clones() {
        let mut seed = 1234i16;
        let (mut plain, mut saturated) = (0, 0);
        for n in 0..3000usize {
            let mut dec = Decoder::new();
            let sh = (n % 8) as i16;
            for (k, v) in dec.res2_buf.iter_mut().enumerate() {
                *v = match n % 11 {
                    0 => i16::MIN,
                    1 => {
                        if k % 2 == 0 {
                            i16::MAX
                        } else {
                            i16::MIN
                        }
                    }
                    2 => i16::MAX,
                    _ => shr(random(&mut seed), sh),
                };
            }
            for (d, &v) in dec.scal_res2_buf.iter_mut().zip(&dec.res2_buf) {
                *d = shr(v, 2);
            }
            let t0_min = 17 + (n % 124) as i16;
            let t0_max = (t0_min + 6).min(PIT_MAX as i16);
            let base = PIT_MAX + n % 2 * L_SUBFR;
            let want = pit_ref(&dec.res2_buf, &dec.scal_res2_buf, base, t0_min, t0_max);
            let x = dec.scal_res2_buf[base - t0_max as usize..base + L_SUBFR]
                .iter()
                .map(|v| v.unsigned_abs() as i64)
                .max()
                .unwrap_or(0);
            plain += usize::from(80 * x * x <= MAX_32 as i64);
            let mut cor = 0;
            for j in 0..L_SUBFR {
                cor = l_mac(
                    cor,
                    dec.scal_res2_buf[base + j],
                    dec.scal_res2_buf[base + j],
                );
            }
            saturated += usize::from(cor == MAX_32);
            let g = if n % 7 == 0 {
                i16::MAX
            } else {
                random(&mut seed) & 0x7fff
            };
            let mem = random(&mut seed);
            let mut pre_want = want;
            let temp = pre_want[L_SUBFR - 1];
            for i in (1..L_SUBFR).rev() {
                pre_want[i] = sub(pre_want[i], mult(g, pre_want[i - 1]));
            }
            pre_want[0] = sub(pre_want[0], mult(g, mem));
            for baseline in [false, true] {
                BASELINE_ONLY.with(|b| b.set(baseline));
                let mut got = [0i16; L_SUBFR];
                pit_mv(&dec, base, t0_min, t0_max, &mut got);
                assert_eq!(got, want, "n {n}");
                dec.mem_pre = mem;
                pre_mv(&mut dec, &mut got, g);
                BASELINE_ONLY.with(|b| b.set(false));
                assert_eq!(got, pre_want, "n {n}");
                assert_eq!(dec.mem_pre, temp, "n {n}");
            }
        }
        assert!(
            plain > 500 && plain < 2500 && saturated > 300,
            "{plain} {saturated}"
        );
    }

    /// The AGC equals the reference operator by operator on both clones:
    /// silent and full-scale subframes, gains from 0 to the largest, and
    /// past gains outside the recursion's own range.
    #[test]
    fn agc_is_the_reference_on_both_clones() {
        let agc_ref = |past: i16, sig_in: &[i16; L_SUBFR], out: &mut [i16; L_SUBFR]| -> i16 {
            let mut s = 0;
            for &v in out.iter() {
                s = l_mac(s, shr(v, 2), shr(v, 2));
            }
            if s == 0 {
                return 0;
            }
            let mut exp = sub(norm_l(s), 1);
            let gain_out = round(l_shl(s, exp));
            let mut s = 0;
            for &v in sig_in {
                s = l_mac(s, shr(v, 2), shr(v, 2));
            }
            let g0 = if s == 0 {
                0
            } else {
                let i = norm_l(s);
                let gain_in = round(l_shl(s, i));
                exp = sub(exp, i);
                let s = inv_sqrt(l_shr(l_shl(l_deposit_l(div_s(gain_out, gain_in)), 7), exp));
                mult(round(l_shl(s, 9)), AGC_FAC1)
            };
            let mut gain = past;
            for v in out.iter_mut() {
                gain = add(mult(gain, AGC_FAC), g0);
                *v = extract_h(l_shl(l_mult(*v, gain), 3));
            }
            gain
        };
        let mut seed = 77i16;
        let mut lean = 0;
        for n in 0..4000usize {
            let pick = |seed: &mut i16, k: usize, sh: usize| match (n + k) % 23 {
                0 => i16::MIN,
                1 => i16::MAX,
                _ => shr(random(seed), (sh % 14) as i16),
            };
            let sig_in: [i16; L_SUBFR] = match n % 9 {
                0 => [0; L_SUBFR],
                _ => std::array::from_fn(|k| pick(&mut seed, k, n / 9)),
            };
            let out0: [i16; L_SUBFR] = match n % 13 {
                0 => [0; L_SUBFR],
                _ => std::array::from_fn(|k| pick(&mut seed, 2 * k, n / 5)),
            };
            let past = match n % 6 {
                0 => 0,
                1 => i16::MAX,
                2 => i16::MIN,
                3 => -1,
                _ => random(&mut seed) & 0x7fff,
            };
            let mut want = out0;
            let want_gain = agc_ref(past, &sig_in, &mut want);
            lean += usize::from(past >= 0);
            for baseline in [false, true] {
                BASELINE_ONLY.with(|b| b.set(baseline));
                let mut dec = Decoder::new();
                dec.past_gain = past;
                let mut got = out0;
                dec.agc(&sig_in, &mut got);
                BASELINE_ONLY.with(|b| b.set(false));
                assert_eq!(got, want, "n {n}");
                assert_eq!(dec.past_gain, want_gain, "n {n}");
            }
        }
        assert!(lean > 1000, "{lean}");
    }

    #[test]
    fn agc_scale_is_the_operator_chain() {
        let mut seed = 3i16;
        let mut vals: Vec<i16> = vec![
            i16::MIN,
            i16::MIN + 1,
            -4096,
            -1,
            0,
            1,
            4095,
            4096,
            i16::MAX,
        ];
        vals.extend((0..300).map(|_| random(&mut seed)));
        let mut saturated = 0;
        for &v in &vals {
            for &g in &vals {
                let want = extract_h(l_shl(l_mult(v, g), 3));
                assert_eq!(agc_scale(v, g), want, "{v} {g}");
                saturated += usize::from(want == i16::MAX || want == i16::MIN);
            }
        }
        assert!(saturated > 100, "{saturated}");
    }

    #[test]
    fn post_process_is_the_operator_chain_on_both_clones() {
        for baseline in [false, true] {
            BASELINE_ONLY.with(|b| b.set(baseline));
            let mut dec = Decoder::new();
            let mut st = [0i16; 6];
            let (mut seed, mut saturated, mut roomy) = (9i16, 0, 0);
            for frame in 0..600 {
                let mut want = high_pass_test_frame(frame, &mut seed);
                let mut got = want;
                roomy += usize::from(hp_input_terms([dec.x1, dec.x0], &got).1);
                dec.post_process(&mut got);
                saturated += high_pass_ref(&B100, &A100, 2, 1, &mut st, &mut want);
                assert_eq!(got, want, "frame {frame}");
            }
            BASELINE_ONLY.with(|b| b.set(false));
            assert_eq!(
                [dec.x0, dec.x1, dec.y1_hi, dec.y1_lo, dec.y2_hi, dec.y2_lo],
                st
            );
            assert!(saturated > 10, "{saturated}");
            // Both the roomy frames' plain sums and the checked samples.
            assert!(roomy > 100 && roomy < 500, "{roomy}");
        }
    }

    #[test]
    fn hp_output_is_the_operator_chain() {
        let mut seed = 5i16;
        let mut vals: Vec<i32> = vec![MIN_32, MIN_32 + 1, MAX_32, MAX_32 - 1, 0, -1, 1];
        for e in [12, 13, 28, 29, 30] {
            for d in -4097..=4097 {
                vals.push((1i32 << e).wrapping_add(d));
                vals.push((-(1i32 << e)).wrapping_add(d));
            }
        }
        vals.extend((0..20000).map(|_| l_mult(random(&mut seed), random(&mut seed)) >> 1));
        for &l in &vals {
            assert_eq!(round_shl3(l), round(l_shl(l_shl(l, 2), 1)), "{l}");
        }
    }
}
