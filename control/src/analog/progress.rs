//! Busy and congestion tone detection on line audio, for FXO far-end
//! disconnect supervision (the exchange plays busy or congestion when the far
//! end has hung up on a loop-start line that gives no other sign).
//!
//! Each 20 ms block is classified on/off: on when the zone's tone
//! frequencies (Goertzel) carry most of the block's energy above -40 dBm0.
//! Runs of on and off are measured and compared with the zone's busy and
//! congestion cadences (from `dsp::tones`); [`BusyDetector::REQUIRED_CYCLES`]
//! matching cycles in a row mean the tone is there.

use dataplane::dsp::tones::{zone_tone, ToneKind};
use dataplane::dsp::{dbm0_to_peak, SAMPLE_RATE};

use super::AnalogError;

/// Block length: 20 ms.
const BLOCK: usize = 160;
const BLOCK_MS: u32 = 20;

/// Detects the busy or congestion tone of a zone.
#[derive(Debug, Clone)]
pub struct BusyDetector {
    /// Goertzel coefficients of the tone frequencies.
    coefs: Vec<f32>,
    /// (on ms, off ms) pairs of busy and congestion.
    cadences: Vec<(u32, u32)>,
    buf: [f32; BLOCK],
    fill: usize,
    min_energy: f32,
    on: bool,
    run_ms: u32,
    last_on_ms: Option<u32>,
    cycles: u32,
}

impl BusyDetector {
    /// Matching on/off cycles needed in a row.
    pub const REQUIRED_CYCLES: u32 = 2;

    /// A detector for `zone`'s busy and congestion tones.
    pub fn for_zone(zone: &str) -> Result<Self, AnalogError> {
        let mut coefs = Vec::new();
        let mut cadences = Vec::new();
        for kind in [ToneKind::Busy, ToneKind::Congestion] {
            let c = zone_tone(zone, kind).ok_or_else(|| AnalogError::UnknownZone(zone.into()))?;
            let segs = c.segments();
            // Every on/off pair of the cadence (UK congestion has two).
            for pair in segs.chunks_exact(2) {
                cadences.push((pair[0].ms, pair[1].ms));
            }
            for s in segs {
                for (hz, _) in s.tones {
                    if hz > 0.0 {
                        let k = 2.0 * (std::f32::consts::TAU * hz / SAMPLE_RATE as f32).cos();
                        if !coefs.iter().any(|&c: &f32| (c - k).abs() < 1e-6) {
                            coefs.push(k);
                        }
                    }
                }
            }
        }
        let a = dbm0_to_peak(-40.0);
        Ok(BusyDetector {
            coefs,
            cadences,
            buf: [0.0; BLOCK],
            fill: 0,
            min_energy: BLOCK as f32 * a * a / 2.0,
            on: false,
            run_ms: 0,
            last_on_ms: None,
            cycles: 0,
        })
    }

    /// Forget everything heard so far.
    pub fn reset(&mut self) {
        self.fill = 0;
        self.on = false;
        self.run_ms = 0;
        self.last_on_ms = None;
        self.cycles = 0;
    }

    /// Feed samples; true once the tone's cadence has been confirmed.
    pub fn process(&mut self, mut samples: &[i16]) -> bool {
        let mut found = false;
        while !samples.is_empty() {
            let n = (BLOCK - self.fill).min(samples.len());
            for (d, &s) in self.buf[self.fill..self.fill + n].iter_mut().zip(samples) {
                *d = f32::from(s);
            }
            self.fill += n;
            samples = &samples[n..];
            if self.fill == BLOCK {
                self.fill = 0;
                let on = self.classify();
                found |= self.step(on);
            }
        }
        found
    }

    fn classify(&self) -> bool {
        let energy: f32 = self.buf.iter().map(|x| x * x).sum();
        if energy < self.min_energy {
            return false;
        }
        let tone: f32 = self
            .coefs
            .iter()
            .map(|&k| {
                let (mut s1, mut s2) = (0f32, 0f32);
                for &x in &self.buf {
                    let s0 = x + k * s1 - s2;
                    s2 = s1;
                    s1 = s0;
                }
                // |X(f)|^2; a full-block sine of amplitude A gives (N A / 2)^2.
                s1 * s1 + s2 * s2 - k * s1 * s2
            })
            .sum();
        // Fraction of the block's energy in the tones (1.0 for a pure tone).
        tone * 2.0 / (BLOCK as f32 * energy) > 0.6
    }

    fn step(&mut self, on: bool) -> bool {
        if on == self.on {
            self.run_ms = self.run_ms.saturating_add(BLOCK_MS);
            return false;
        }
        let ended = self.run_ms;
        self.on = on;
        self.run_ms = BLOCK_MS;
        if on {
            // An off run ended: check the last on/off pair.
            let ok = self.last_on_ms.is_some_and(|on_ms| {
                self.cadences
                    .iter()
                    .any(|&(a, b)| near(on_ms, a) && near(ended, b))
            });
            self.cycles = if ok { self.cycles + 1 } else { 0 };
            self.cycles >= Self::REQUIRED_CYCLES
        } else {
            self.last_on_ms = Some(ended);
            false
        }
    }
}

/// Within max(60 ms, 20%) of the expected duration.
fn near(got: u32, want: u32) -> bool {
    let tol = (want / 5).max(60);
    got.abs_diff(want) <= tol
}

#[cfg(test)]
mod tests {
    use super::*;
    use dataplane::dsp::tones::ToneGenerator;

    fn render(zone: &str, kind: ToneKind, ms: usize) -> Vec<i16> {
        let mut g = ToneGenerator::new(zone_tone(zone, kind).unwrap());
        let mut v = vec![0i16; ms * 8];
        g.fill(&mut v);
        v
    }

    #[test]
    fn detects_busy_and_congestion_but_not_dial_or_ringback() {
        for zone in ["us", "eu", "uk"] {
            for kind in [ToneKind::Busy, ToneKind::Congestion] {
                let mut d = BusyDetector::for_zone(zone).unwrap();
                let pcm = render(zone, kind, 4000);
                let at = pcm.chunks(80).position(|b| d.process(b));
                assert!(at.is_some(), "{zone} {kind:?} not detected");
            }
            for kind in [ToneKind::Dial, ToneKind::Ringback] {
                let mut d = BusyDetector::for_zone(zone).unwrap();
                let pcm = render(zone, kind, 12_000);
                assert!(
                    !pcm.chunks(80).any(|b| d.process(b)),
                    "{zone} {kind:?} false busy"
                );
            }
        }
        assert!(BusyDetector::for_zone("xx").is_err());
    }
}
