//! Packet loss concealment after ITU-T G.711 Appendix I.
//!
//! On a lost frame the concealer repeats the last pitch period of the
//! history (pitch found by normalised autocorrelation over 5-15 ms lags),
//! widening to two and then three periods after 10 and 20 ms so the
//! repetition does not buzz, attenuating 20 % per 10 ms after the first
//! 10 ms and going silent after 60 ms. The first good frame after a loss is
//! overlap-added with the continued synthetic signal over 4 ms plus 4 ms per
//! further 10 ms lost (at most 10 ms), so there is no click at either edge.
//! Unlike the Appendix there is no 3.75 ms output delay: the synthetic
//! signal starts as a periodic continuation of the history, which is already
//! continuous at the joint.

const HIST: usize = 390;
const MIN_PITCH: usize = 40;
const MAX_PITCH: usize = 120;
const CORR_LEN: usize = 160;

/// Concealer for one 8 kHz stream. Call [`good`](Self::good) with every
/// received frame (it may modify it, to smooth the end of a loss) and
/// [`lost`](Self::lost) for every missing one.
#[derive(Debug, Clone)]
pub struct Plc {
    hist: [f32; HIST],
    pitch: usize,
    /// Samples synthesised in the current loss (0 = not in a loss).
    erased: usize,
    /// Phase within the repeated span.
    phase: usize,
}

impl Default for Plc {
    fn default() -> Self {
        Self::new()
    }
}

impl Plc {
    /// A concealer with empty (silent) history.
    pub fn new() -> Self {
        Plc {
            hist: [0.0; HIST],
            pitch: MIN_PITCH,
            erased: 0,
            phase: 0,
        }
    }

    /// A frame arrived: smooth the joint after a loss, then remember it.
    pub fn good(&mut self, frame: &mut [i16]) {
        if self.erased > 0 {
            let extra_10ms = (self.erased.saturating_sub(80)) / 80;
            let ola = (32 + 32 * extra_10ms).min(80).min(frame.len());
            for (i, s) in frame.iter_mut().take(ola).enumerate() {
                let synth = self.synth_sample();
                let w = (i + 1) as f32 / (ola + 1) as f32;
                *s = super::sat16(w * f32::from(*s) + (1.0 - w) * synth);
            }
            self.erased = 0;
        }
        self.push(frame);
    }

    /// A frame was lost: fill `out` with the concealment.
    pub fn lost(&mut self, out: &mut [i16]) {
        if self.erased == 0 {
            self.pitch = self.find_pitch();
            self.phase = 0;
        }
        // The history stays as it was before the loss: a run of lost
        // frames keeps repeating (and fading) the last real pitch periods.
        for o in out.iter_mut() {
            *o = super::sat16(self.synth_sample());
        }
    }

    /// Next synthetic sample, advancing the loss position.
    fn synth_sample(&mut self) -> f32 {
        let periods = match self.erased {
            0..80 => 1,
            80..160 => 2,
            _ => 3,
        };
        let span = self.pitch * periods;
        let start = HIST - span;
        let v = self.hist[start + self.phase % span];
        self.phase += 1;
        let gain = if self.erased < 80 {
            1.0
        } else {
            (1.0 - 0.2 * ((self.erased - 80) as f32 / 80.0)).max(0.0)
        };
        self.erased += 1;
        v * gain
    }

    fn push(&mut self, frame: &[i16]) {
        let n = frame.len().min(HIST);
        self.hist.copy_within(n.., 0);
        for (d, &s) in self.hist[HIST - n..]
            .iter_mut()
            .zip(&frame[frame.len() - n..])
        {
            *d = f32::from(s);
        }
    }

    /// Lag in 40..=120 maximising the normalised autocorrelation of the
    /// last 20 ms.
    fn find_pitch(&self) -> usize {
        let x = &self.hist;
        let end = HIST;
        let seg = &x[end - CORR_LEN..end];
        let mut best = (MIN_PITCH, f32::MIN);
        for lag in MIN_PITCH..=MAX_PITCH {
            let past = &x[end - CORR_LEN - lag..end - lag];
            let mut c = 0.0;
            let mut e = 1.0;
            for (a, b) in seg.iter().zip(past) {
                c += a * b;
                e += b * b;
            }
            let score = c / e.sqrt();
            if score > best.1 {
                best = (lag, score);
            }
        }
        best.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn conceals_a_periodic_signal_with_its_period() {
        // 100 Hz-ish periodic signal: period 80 samples.
        let sig = |n: usize| (3000.0 * (std::f32::consts::TAU * n as f32 / 80.0).sin()) as i16;
        let mut plc = Plc::new();
        let mut n = 0;
        for _ in 0..5 {
            let mut f: Vec<i16> = (0..160).map(|i| sig(n + i)).collect();
            plc.good(&mut f);
            n += 160;
        }
        let mut out = vec![0i16; 80];
        plc.lost(&mut out);
        assert_eq!(plc.pitch, 80);
        // The first 10 ms continue the waveform closely.
        let err: i32 = (0..80)
            .map(|i| (i32::from(out[i]) - i32::from(sig(n + i))).abs())
            .max()
            .unwrap();
        assert!(err < 100, "max error {err}");
    }

    #[test]
    fn long_loss_fades_to_silence() {
        let mut plc = Plc::new();
        let mut f: Vec<i16> = (0..400).map(|i| ((i % 50) as i16 - 25) * 100).collect();
        plc.good(&mut f);
        let mut out = vec![0i16; 80];
        for _ in 0..7 {
            plc.lost(&mut out);
        }
        assert!(out.iter().all(|&s| s == 0), "silent after 60 ms");
    }
}
