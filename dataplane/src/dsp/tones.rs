//! Call-progress tones by zone, and the generator behind them and DTMF.
//!
//! A tone is a [`Cadence`]: up to [`MAX_SEGMENTS`] segments, each one or two
//! frequencies (optionally amplitude-modulated, as Japan's 400×16 Hz
//! ringback) for a duration, played once or repeated. [`ToneGenerator`]
//! renders a cadence block by block with phase-continuous oscillators and no
//! allocation.
//!
//! Zone data follows the national values collected in ITU-T E.180
//! Supplement 2 (the same public facts DAHDI's `zonedata` tabulates):
//! frequencies in Hz, on/off times in ms. Levels are per tone, in dBm0.

use super::{dbm0_to_peak, sat16, SAMPLE_RATE};

/// Most segments a cadence holds.
pub const MAX_SEGMENTS: usize = 8;

/// One step of a cadence: up to two tones (frequency 0 = unused) for `ms`
/// milliseconds (`ms == 0`: forever).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Segment {
    /// (frequency Hz, level dBm0) of each tone; frequency 0 = none.
    pub tones: [(f32, f32); 2],
    /// Amplitude-modulation frequency in Hz (0 = none), 100% depth.
    pub am_hz: f32,
    /// Duration in milliseconds; 0 means "until stopped".
    pub ms: u32,
}

impl Segment {
    /// Silence for `ms`.
    pub const fn silence(ms: u32) -> Self {
        Segment {
            tones: [(0.0, 0.0), (0.0, 0.0)],
            am_hz: 0.0,
            ms,
        }
    }

    /// One tone.
    pub const fn single(hz: f32, dbm0: f32, ms: u32) -> Self {
        Segment {
            tones: [(hz, dbm0), (0.0, 0.0)],
            am_hz: 0.0,
            ms,
        }
    }

    /// Two tones, each at its own level.
    pub const fn dual(f1: f32, l1: f32, f2: f32, l2: f32, ms: u32) -> Self {
        Segment {
            tones: [(f1, l1), (f2, l2)],
            am_hz: 0.0,
            ms,
        }
    }

    /// A tone amplitude-modulated by `am_hz` (e.g. 400×16 Hz).
    pub const fn modulated(hz: f32, dbm0: f32, am_hz: f32, ms: u32) -> Self {
        Segment {
            tones: [(hz, dbm0), (0.0, 0.0)],
            am_hz,
            ms,
        }
    }
}

/// A sequence of segments, played once or repeated.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Cadence {
    segs: [Segment; MAX_SEGMENTS],
    len: usize,
    /// Start over after the last segment.
    pub repeat: bool,
}

impl Cadence {
    /// Build from up to [`MAX_SEGMENTS`] segments (extra ones are ignored).
    pub fn new(segments: &[Segment], repeat: bool) -> Self {
        let mut segs = [Segment::silence(0); MAX_SEGMENTS];
        let len = segments.len().min(MAX_SEGMENTS);
        segs[..len].copy_from_slice(&segments[..len]);
        Cadence { segs, len, repeat }
    }

    /// The segments.
    pub fn segments(&self) -> &[Segment] {
        &self.segs[..self.len]
    }

    /// Length of one pass in samples, `None` if a segment lasts forever.
    pub fn period_samples(&self) -> Option<u64> {
        let mut n = 0u64;
        for s in self.segments() {
            if s.ms == 0 {
                return None;
            }
            n += ms_to_samples(s.ms);
        }
        Some(n)
    }
}

fn ms_to_samples(ms: u32) -> u64 {
    u64::from(ms) * u64::from(SAMPLE_RATE) / 1000
}

/// Renders a [`Cadence`] into 16-bit samples, block by block.
#[derive(Debug, Clone)]
pub struct ToneGenerator {
    cadence: Cadence,
    seg: usize,
    pos: u64,
    /// Oscillator phases in cycles (tone 1, tone 2, modulation).
    phase: [f64; 3],
    done: bool,
}

impl ToneGenerator {
    /// Start at the first segment.
    pub fn new(cadence: Cadence) -> Self {
        let done = cadence.len == 0;
        ToneGenerator {
            cadence,
            seg: 0,
            pos: 0,
            phase: [0.0; 3],
            done,
        }
    }

    /// True once a non-repeating cadence has played to its end.
    pub fn is_done(&self) -> bool {
        self.done
    }

    /// Fill `out` (silence once finished). Returns how many samples belong
    /// to the cadence (less than `out.len()` only when it ended here).
    pub fn fill(&mut self, out: &mut [i16]) -> usize {
        let mut produced = 0;
        let mut i = 0;
        while i < out.len() {
            if self.done {
                out[i..].fill(0);
                break;
            }
            let seg = self.cadence.segs[self.seg];
            let seg_len = ms_to_samples(seg.ms);
            let left = if seg.ms == 0 {
                u64::MAX
            } else {
                seg_len - self.pos
            };
            let n = ((out.len() - i) as u64).min(left) as usize;
            self.render(&seg, &mut out[i..i + n]);
            i += n;
            produced += n;
            self.pos += n as u64;
            if seg.ms != 0 && self.pos >= seg_len {
                self.pos = 0;
                self.seg += 1;
                if self.seg >= self.cadence.len {
                    if self.cadence.repeat {
                        self.seg = 0;
                    } else {
                        self.done = true;
                    }
                }
            }
        }
        produced
    }

    fn render(&mut self, seg: &Segment, out: &mut [i16]) {
        let fs = f64::from(SAMPLE_RATE);
        let amp = [
            if seg.tones[0].0 > 0.0 {
                dbm0_to_peak(seg.tones[0].1)
            } else {
                0.0
            },
            if seg.tones[1].0 > 0.0 {
                dbm0_to_peak(seg.tones[1].1)
            } else {
                0.0
            },
        ];
        let inc = [
            f64::from(seg.tones[0].0) / fs,
            f64::from(seg.tones[1].0) / fs,
            f64::from(seg.am_hz) / fs,
        ];
        for o in out.iter_mut() {
            let tau = std::f64::consts::TAU;
            let mut v = amp[0] * (tau * self.phase[0]).sin() as f32
                + amp[1] * (tau * self.phase[1]).sin() as f32;
            if seg.am_hz > 0.0 {
                v *= 0.5 * (1.0 + (tau * self.phase[2]).sin() as f32);
            }
            *o = sat16(v);
            for (ph, inc) in self.phase.iter_mut().zip(inc) {
                *ph += inc;
                if *ph >= 1.0 {
                    *ph -= 1.0;
                }
            }
        }
    }
}

/// Call-progress tone kinds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ToneKind {
    Dial,
    Ringback,
    Busy,
    Congestion,
    CallWaiting,
}

impl ToneKind {
    /// Parse a name as used on the command line.
    pub fn from_name(name: &str) -> Option<Self> {
        Some(match name.to_ascii_lowercase().as_str() {
            "dial" => ToneKind::Dial,
            "ringback" | "ring" => ToneKind::Ringback,
            "busy" => ToneKind::Busy,
            "congestion" | "reorder" => ToneKind::Congestion,
            "callwaiting" | "call-waiting" | "waiting" => ToneKind::CallWaiting,
            _ => return None,
        })
    }
}

/// Zones with tone data.
pub const ZONES: &[&str] = &["us", "uk", "eu", "de", "fr", "cn", "jp"];

/// The cadence of `kind` in `zone` (ISO-like code, lower case), or `None`
/// for an unknown zone.
pub fn zone_tone(zone: &str, kind: ToneKind) -> Option<Cadence> {
    use Segment as S;
    use ToneKind::*;
    let c = |segs: &[Segment], repeat: bool| Some(Cadence::new(segs, repeat));
    match (zone.to_ascii_lowercase().as_str(), kind) {
        // North America (ANSI T1.401 precise tones).
        ("us", Dial) => c(&[S::dual(350.0, -13.0, 440.0, -13.0, 0)], true),
        ("us", Ringback) => c(
            &[S::dual(440.0, -19.0, 480.0, -19.0, 2000), S::silence(4000)],
            true,
        ),
        ("us", Busy) => c(
            &[S::dual(480.0, -24.0, 620.0, -24.0, 500), S::silence(500)],
            true,
        ),
        ("us", Congestion) => c(
            &[S::dual(480.0, -24.0, 620.0, -24.0, 250), S::silence(250)],
            true,
        ),
        ("us", CallWaiting) => c(&[S::single(440.0, -13.0, 300), S::silence(9700)], true),
        // United Kingdom (BT SIN 350).
        ("uk", Dial) => c(&[S::dual(350.0, -13.0, 440.0, -13.0, 0)], true),
        ("uk", Ringback) => c(
            &[
                S::dual(400.0, -13.0, 450.0, -13.0, 400),
                S::silence(200),
                S::dual(400.0, -13.0, 450.0, -13.0, 400),
                S::silence(2000),
            ],
            true,
        ),
        ("uk", Busy) => c(&[S::single(400.0, -13.0, 375), S::silence(375)], true),
        ("uk", Congestion) => c(
            &[
                S::single(400.0, -13.0, 400),
                S::silence(350),
                S::single(400.0, -13.0, 225),
                S::silence(525),
            ],
            true,
        ),
        ("uk", CallWaiting) => c(&[S::single(400.0, -13.0, 100), S::silence(3000)], true),
        // CEPT / ETSI TR 101 041 recommended tones.
        ("eu", Dial) => c(&[S::single(425.0, -13.0, 0)], true),
        ("eu", Ringback) => c(&[S::single(425.0, -13.0, 1000), S::silence(4000)], true),
        ("eu", Busy) => c(&[S::single(425.0, -13.0, 500), S::silence(500)], true),
        ("eu", Congestion) => c(&[S::single(425.0, -13.0, 250), S::silence(250)], true),
        ("eu", CallWaiting) => c(
            &[
                S::single(425.0, -13.0, 200),
                S::silence(200),
                S::single(425.0, -13.0, 200),
                S::silence(4400),
            ],
            true,
        ),
        // Germany.
        ("de", Dial) => c(&[S::single(425.0, -13.0, 0)], true),
        ("de", Ringback) => c(&[S::single(425.0, -13.0, 1000), S::silence(4000)], true),
        ("de", Busy) => c(&[S::single(425.0, -13.0, 480), S::silence(480)], true),
        ("de", Congestion) => c(&[S::single(425.0, -13.0, 240), S::silence(240)], true),
        ("de", CallWaiting) => c(
            &[
                S::single(425.0, -13.0, 200),
                S::silence(200),
                S::single(425.0, -13.0, 200),
                S::silence(5000),
            ],
            true,
        ),
        // France.
        ("fr", Dial) => c(&[S::single(440.0, -13.0, 0)], true),
        ("fr", Ringback) => c(&[S::single(440.0, -13.0, 1500), S::silence(3500)], true),
        ("fr", Busy) => c(&[S::single(440.0, -13.0, 500), S::silence(500)], true),
        ("fr", Congestion) => c(&[S::single(440.0, -13.0, 250), S::silence(250)], true),
        ("fr", CallWaiting) => c(&[S::single(440.0, -13.0, 300), S::silence(10_000)], true),
        // China (YD/T 1047).
        ("cn", Dial) => c(&[S::single(450.0, -13.0, 0)], true),
        ("cn", Ringback) => c(&[S::single(450.0, -13.0, 1000), S::silence(4000)], true),
        ("cn", Busy) => c(&[S::single(450.0, -13.0, 350), S::silence(350)], true),
        ("cn", Congestion) => c(&[S::single(450.0, -13.0, 700), S::silence(700)], true),
        ("cn", CallWaiting) => c(&[S::single(450.0, -13.0, 400), S::silence(4000)], true),
        // Japan (NTT): ringback and call waiting are 400 Hz modulated by 16 Hz.
        ("jp", Dial) => c(&[S::single(400.0, -13.0, 0)], true),
        ("jp", Ringback) => c(
            &[S::modulated(400.0, -13.0, 16.0, 1000), S::silence(2000)],
            true,
        ),
        ("jp", Busy) => c(&[S::single(400.0, -13.0, 500), S::silence(500)], true),
        ("jp", Congestion) => c(&[S::single(400.0, -13.0, 500), S::silence(500)], true),
        ("jp", CallWaiting) => c(
            &[
                S::modulated(400.0, -13.0, 16.0, 500),
                S::silence(500),
                S::modulated(400.0, -13.0, 16.0, 500),
                S::silence(3500),
            ],
            true,
        ),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Power of `x` at `hz` relative to its total power (0..1).
    fn tone_fraction(x: &[i16], hz: f64) -> f64 {
        let w = std::f64::consts::TAU * hz / 8000.0;
        let (mut re, mut im, mut e) = (0.0, 0.0, 0.0);
        for (n, &s) in x.iter().enumerate() {
            let s = f64::from(s);
            re += s * (w * n as f64).cos();
            im += s * (w * n as f64).sin();
            e += s * s;
        }
        2.0 * (re * re + im * im) / x.len() as f64 / e.max(1.0)
    }

    #[test]
    fn every_zone_has_every_tone() {
        for zone in ZONES {
            for kind in [
                ToneKind::Dial,
                ToneKind::Ringback,
                ToneKind::Busy,
                ToneKind::Congestion,
                ToneKind::CallWaiting,
            ] {
                let c = zone_tone(zone, kind).expect("zone data");
                assert!(!c.segments().is_empty());
                if kind == ToneKind::Dial {
                    assert_eq!(c.period_samples(), None, "{zone} dial is continuous");
                } else {
                    assert!(
                        c.period_samples().is_some(),
                        "{zone} {kind:?} has a cadence"
                    );
                }
            }
        }
        assert!(zone_tone("xx", ToneKind::Dial).is_none());
    }

    #[test]
    fn us_busy_cadence_and_frequencies() {
        let mut g = ToneGenerator::new(zone_tone("us", ToneKind::Busy).unwrap());
        let mut buf = vec![0i16; 8000];
        assert_eq!(g.fill(&mut buf), 8000);
        // 500 ms on, 500 ms off.
        let on = &buf[..4000];
        let off = &buf[4000..];
        assert!(off.iter().all(|&s| s == 0));
        assert!(tone_fraction(on, 480.0) > 0.45 && tone_fraction(on, 620.0) > 0.45);
        let p = on.iter().map(|&s| f32::from(s).powi(2)).sum::<f32>() / 4000.0;
        // Two tones at -24 dBm0 each: -21 dBm0 total.
        assert!((crate::dsp::power_to_dbm0(p) + 21.0).abs() < 0.2);
    }

    #[test]
    fn non_repeating_cadence_ends() {
        let mut g = ToneGenerator::new(Cadence::new(
            &[Segment::single(1000.0, -10.0, 10), Segment::silence(5)],
            false,
        ));
        let mut buf = vec![1i16; 200];
        assert_eq!(g.fill(&mut buf), 120);
        assert!(g.is_done());
        assert!(buf[80..].iter().all(|&s| s == 0));
    }

    #[test]
    fn jp_ringback_is_modulated() {
        let mut g = ToneGenerator::new(zone_tone("jp", ToneKind::Ringback).unwrap());
        let mut buf = vec![0i16; 8000];
        g.fill(&mut buf);
        // The 16 Hz envelope: the 1/32 s around a modulation null is quiet.
        let env = |a: usize| {
            buf[a..a + 40]
                .iter()
                .map(|&s| i32::from(s).abs())
                .max()
                .unwrap()
        };
        assert!(env(360) < env(100) / 4, "{} {}", env(360), env(100));
    }
}
