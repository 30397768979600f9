//! A media source played into one leg: a call-progress tone, an in-band
//! DTMF digit or a sound buffer, encoded with the leg's codec and paced at
//! the leg's ptime by the worker's clock.
//!
//! A [`Player`] is built (and all its memory allocated) on the control side,
//! moved to the worker in a command, and polled there with `now` once per
//! loop iteration. Each due packet is a complete RTP datagram handed to the
//! caller, who sends it and records it in the leg's output stream so the
//! relayed media that follows continues the same sequence and timestamp
//! (see [`crate::session::OutStream::record_generated`]).
//!
//! Pacing: packet `k` is due at `start + k * ptime` (no drift), so a late
//! worker iteration sends what is due in one go (at most [`MAX_BURST`]); a
//! worker stalled for longer than that skips the missed packets and moves
//! the RTP timestamp on by the time skipped, as a real-time source does.
//!
//! No clock reads, no allocation after [`Player::new`].

use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::codec::g711;
use crate::codec::g729::G729A;
use crate::codec::Codec;
use crate::dsp::dtmf::{digit_generator, Digit};
use crate::dsp::tones::{Cadence, ToneGenerator};
use crate::transcode::{CodecKind, LegCodec};
use crate::wire::{rtp, Pt, Ssrc};

/// Longest packet a player emits: 30 ms of G.711.
pub const MAX_PACKET: usize = rtp::HEADER_LEN + 240;
/// Packets sent at most per poll (catching up after a late iteration).
pub const MAX_BURST: u32 = 4;

/// What to play into a leg.
// Built once per playback on the control side; the size does not matter.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone)]
pub enum Source {
    /// A tone cadence (a zone's call-progress tone, see
    /// [`crate::dsp::tones::zone_tone`]), until it ends or `limit` passes.
    Tone {
        cadence: Cadence,
        limit: Option<Duration>,
    },
    /// 8 kHz 16-bit linear samples, played once. Shared: the worker never
    /// copies or frees the samples while the control plane holds them.
    Samples(Arc<[i16]>),
}

impl Source {
    /// A zone's call-progress tone by name (`dial`, `ringback`, `busy`,
    /// `congestion`, `callwaiting`), played until stopped (or its cadence
    /// ends).
    pub fn tone(zone: &str, name: &str) -> Option<Source> {
        let kind = crate::dsp::tones::ToneKind::from_name(name)?;
        let cadence = crate::dsp::tones::zone_tone(zone, kind)?;
        Some(Source::Tone {
            cadence,
            limit: None,
        })
    }

    /// Stop a tone after `limit` (no effect on samples).
    pub fn with_limit(self, limit: Duration) -> Source {
        match self {
            Source::Tone { cadence, .. } => Source::Tone {
                cadence,
                limit: Some(limit),
            },
            s => s,
        }
    }
}

/// What a player is for: a playback the control plane asked for (ends with
/// `PlaybackDone`), or an in-band digit (ends with `DigitSent`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Purpose {
    Playback,
    Digit(Digit),
}

// Lives inside a boxed `Player`, allocated once.
#[allow(clippy::large_enum_variant)]
enum Feed {
    Tone(ToneGenerator),
    Samples { buf: Arc<[i16]>, pos: usize },
}

enum Encoder {
    Mu,
    A,
    G729(Box<G729A>),
}

/// Why a player cannot be built (caller error).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum PlayerError {
    /// The leg's ptime is not 10, 20 or 30 ms.
    #[error("cannot play into a leg with ptime {0} ms (10, 20 or 30)")]
    BadPtime(u16),
    /// The leg's payload type is above 127.
    #[error("payload type {0} is out of range")]
    BadPt(u8),
}

/// Levels of generated in-band DTMF (low / high group, dBm0).
const DIGIT_LEVELS: (f32, f32) = (-8.0, -6.0);
/// Silence after an in-band digit before the next one (ms).
const DIGIT_GAP_MS: u32 = 60;

/// One source being played into one leg (see the module docs).
pub struct Player {
    feed: Feed,
    /// Samples still allowed (tone limit); `None`: unlimited.
    remaining: Option<u64>,
    enc: Encoder,
    pt: Pt,
    frame: usize,
    ptime: Duration,
    ssrc: Ssrc,
    seq: u16,
    ts: u32,
    marker: bool,
    next_due: Option<Instant>,
    done: bool,
    purpose: Purpose,
}

impl std::fmt::Debug for Player {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Player")
            .field("pt", &self.pt)
            .field("frame", &self.frame)
            .field("purpose", &self.purpose)
            .field("done", &self.done)
            .finish()
    }
}

/// One packet a player produced.
#[derive(Debug, Clone, Copy)]
pub struct Produced {
    pub seq: u16,
    pub ts: u32,
    /// Samples the packet covers (the timestamp step).
    pub step: u32,
}

impl Player {
    /// A player of `source` encoding for a leg speaking `codec` (allocates
    /// the encoder state; call on the control side).
    pub fn new(source: Source, codec: &LegCodec) -> Result<Player, PlayerError> {
        if !matches!(codec.ptime_ms, 10 | 20 | 30) {
            return Err(PlayerError::BadPtime(codec.ptime_ms));
        }
        if codec.pt > 127 {
            return Err(PlayerError::BadPt(codec.pt));
        }
        let (feed, remaining) = match source {
            Source::Tone { cadence, limit } => (
                Feed::Tone(ToneGenerator::new(cadence)),
                limit.map(|d| (d.as_micros() as u64) * 8 / 1000),
            ),
            Source::Samples(buf) => (Feed::Samples { buf, pos: 0 }, None),
        };
        let enc = match codec.codec {
            CodecKind::Pcmu => Encoder::Mu,
            CodecKind::Pcma => Encoder::A,
            CodecKind::G729 => Encoder::G729(Box::default()),
        };
        let frame = usize::from(codec.ptime_ms) * 8;
        Ok(Player {
            feed,
            remaining,
            enc,
            pt: Pt::new(codec.pt),
            frame,
            ptime: Duration::from_millis(u64::from(codec.ptime_ms)),
            ssrc: Ssrc(0),
            seq: 0,
            ts: 0,
            marker: true,
            next_due: None,
            done: false,
            purpose: Purpose::Playback,
        })
    }

    /// A player of one in-band DTMF digit held `ms` milliseconds.
    pub fn digit(digit: Digit, ms: u32, codec: &LegCodec) -> Result<Player, PlayerError> {
        let mut p = Player::new(
            Source::Tone {
                cadence: Cadence::new(&[], false),
                limit: None,
            },
            codec,
        )?;
        p.set_digit(digit, ms);
        Ok(p)
    }

    /// Replace the source with another digit, keeping the stream (used for
    /// queued digits: no allocation).
    pub fn set_digit(&mut self, digit: Digit, ms: u32) {
        let g = digit_generator(
            digit,
            DIGIT_LEVELS.0,
            DIGIT_LEVELS.1,
            ms.max(1),
            DIGIT_GAP_MS,
        );
        self.feed = Feed::Tone(g);
        self.remaining = None;
        self.done = false;
        self.purpose = Purpose::Digit(digit);
    }

    /// What this player is for.
    pub fn purpose(&self) -> Purpose {
        self.purpose
    }

    /// Samples per packet.
    pub fn frame(&self) -> usize {
        self.frame
    }

    /// Begin the stream at `now`: SSRC, first sequence number and timestamp
    /// (continuing what the leg's peer already received). The first packet
    /// is due at once and carries the marker bit.
    pub fn start(&mut self, ssrc: Ssrc, seq: u16, ts: u32, now: Instant) {
        self.ssrc = ssrc;
        self.seq = seq;
        self.ts = ts;
        self.marker = true;
        self.next_due = Some(now);
    }

    /// Whether the source has played to its end.
    pub fn is_done(&self) -> bool {
        self.done
    }

    /// Send every packet due at `now` (at most [`MAX_BURST`]) through
    /// `emit`; returns how many. Once the source ends, `is_done` is true.
    pub fn poll(&mut self, now: Instant, emit: &mut dyn FnMut(&[u8], Produced)) -> u32 {
        let Some(mut due) = self.next_due else {
            return 0;
        };
        let behind = now.saturating_duration_since(due);
        if behind > self.ptime * (MAX_BURST + 2) {
            // Stalled: skip what was missed, keep the RTP clock real time.
            let skip = (behind.as_micros() / self.ptime.as_micros().max(1)) as u32;
            self.ts = self.ts.wrapping_add(skip.wrapping_mul(self.frame as u32));
            due += self.ptime * skip;
        }
        let mut sent = 0;
        while !self.done && due <= now && sent < MAX_BURST {
            let mut buf = [0u8; MAX_PACKET];
            let Some(len) = self.packet(&mut buf) else {
                self.done = true;
                break;
            };
            emit(
                &buf[..len],
                Produced {
                    seq: self.seq,
                    ts: self.ts,
                    step: self.frame as u32,
                },
            );
            self.seq = self.seq.wrapping_add(1);
            self.ts = self.ts.wrapping_add(self.frame as u32);
            self.marker = false;
            due += self.ptime;
            sent += 1;
        }
        self.next_due = Some(due);
        sent
    }

    /// Build the next packet into `buf`; `None` once the source ended before
    /// producing any sample of it.
    fn packet(&mut self, buf: &mut [u8; MAX_PACKET]) -> Option<usize> {
        let mut pcm = [0i16; 240];
        let pcm = &mut pcm[..self.frame];
        let mut n = match &mut self.feed {
            Feed::Tone(g) => {
                if g.is_done() {
                    0
                } else {
                    g.fill(pcm)
                }
            }
            Feed::Samples { buf, pos } => {
                let take = (buf.len() - *pos).min(pcm.len());
                pcm[..take].copy_from_slice(&buf[*pos..*pos + take]);
                pcm[take..].fill(0);
                *pos += take;
                take
            }
        };
        if let Some(rem) = &mut self.remaining {
            let allowed = (*rem).min(n as u64) as usize;
            pcm[allowed..].fill(0);
            n = allowed;
            *rem -= allowed as u64;
        }
        if n == 0 {
            return None;
        }
        // The source ended inside this packet (padded with silence above).
        let ended = n < self.frame
            || match &self.feed {
                Feed::Tone(g) => g.is_done(),
                Feed::Samples { buf, pos } => *pos >= buf.len(),
            }
            || self.remaining == Some(0);
        let body = &mut buf[rtp::HEADER_LEN..];
        let len = match &mut self.enc {
            Encoder::Mu => {
                g711::encode_ulaw(pcm, &mut body[..pcm.len()]);
                pcm.len()
            }
            Encoder::A => {
                g711::encode_alaw(pcm, &mut body[..pcm.len()]);
                pcm.len()
            }
            // The frame is 80, 160 or 240 samples (checked in `new`), a
            // whole number of 10 ms frames; `body` holds 240 bytes.
            Encoder::G729(c) => c.encode(pcm, body).unwrap_or(0),
        };
        let repr = rtp::Repr {
            marker: self.marker,
            payload_type: self.pt,
            sequence_number: self.seq,
            timestamp: self.ts,
            ssrc: self.ssrc,
        };
        // `buf` is longer than the header.
        let _ = repr.emit(&mut buf[..rtp::HEADER_LEN]);
        if ended {
            self.done = true;
        }
        Some(rtp::HEADER_LEN + len)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock;
    use crate::dsp::tones::{zone_tone, ToneKind};

    fn decode(pkts: &[(Vec<u8>, Produced)]) -> Vec<i16> {
        let mut out = Vec::new();
        for (b, _) in pkts {
            let p = rtp::Packet::new_checked(&b[..]).unwrap();
            out.extend(p.payload().iter().map(|&u| g711::ulaw_to_linear(u)));
        }
        out
    }

    /// Power at `hz` relative to total power (Goertzel).
    fn share(x: &[i16], hz: f64) -> f64 {
        let w = std::f64::consts::TAU * hz / 8000.0;
        let c = 2.0 * w.cos();
        let (mut s1, mut s2) = (0.0f64, 0.0f64);
        for &v in x {
            let s0 = f64::from(v) + c * s1 - s2;
            s2 = s1;
            s1 = s0;
        }
        let p = s1 * s1 + s2 * s2 - c * s1 * s2;
        let total: f64 = x.iter().map(|&v| f64::from(v) * f64::from(v)).sum();
        2.0 * p / (x.len() as f64 * total.max(1.0))
    }

    #[test]
    fn paces_a_tone_at_ptime_with_continuous_headers() {
        let t0 = clock::now();
        let src = Source::tone("eu", "dial").unwrap();
        let mut p = Player::new(src, &LegCodec::new(CodecKind::Pcmu)).unwrap();
        p.start(Ssrc(77), 65_534, 1000, t0);
        let mut pkts = Vec::new();
        let mut emit = |b: &[u8], m: Produced| pkts.push((b.to_vec(), m));
        assert_eq!(p.poll(t0, &mut emit), 1);
        assert_eq!(p.poll(t0 + Duration::from_millis(19), &mut emit), 0);
        assert_eq!(p.poll(t0 + Duration::from_millis(20), &mut emit), 1);
        // 50 ms late: the two packets due meanwhile go out together.
        assert_eq!(p.poll(t0 + Duration::from_millis(60), &mut emit), 2);
        let hdr: Vec<_> = pkts
            .iter()
            .map(|(b, _)| {
                let p = rtp::Packet::new_checked(&b[..]).unwrap();
                (p.sequence_number(), p.timestamp(), p.marker(), p.ssrc())
            })
            .collect();
        assert_eq!(
            hdr,
            [
                (65_534, 1000, true, Ssrc(77)),
                (65_535, 1160, false, Ssrc(77)),
                (0, 1320, false, Ssrc(77)),
                (1, 1480, false, Ssrc(77))
            ]
        );
        let pcm = decode(&pkts);
        assert!(share(&pcm, 425.0) > 0.9, "{}", share(&pcm, 425.0));
        assert!(!p.is_done());
    }

    #[test]
    fn samples_end_with_a_padded_packet() {
        let t0 = clock::now();
        let buf: Arc<[i16]> = (0..400).map(|i| (i % 50) as i16 * 100).collect();
        let mut p = Player::new(
            Source::Samples(buf.clone()),
            &LegCodec::new(CodecKind::Pcmu),
        )
        .unwrap();
        p.start(Ssrc(1), 0, 0, t0);
        let mut pkts = Vec::new();
        for i in 0..10 {
            p.poll(t0 + Duration::from_millis(20 * i), &mut |b, m| {
                pkts.push((b.to_vec(), m))
            });
        }
        assert!(p.is_done());
        assert_eq!(pkts.len(), 3, "400 samples = 2.5 packets of 160");
        let pcm = decode(&pkts);
        for (a, b) in pcm.iter().zip(buf.iter()) {
            assert!((a - b).abs() <= (b.abs() / 16).max(8), "{a} vs {b}");
        }
        assert!(pcm[400..].iter().all(|&v| v.abs() < 8));
    }

    #[test]
    fn tone_limit_and_g729_and_stall_skip() {
        let t0 = clock::now();
        let cadence = zone_tone("us", ToneKind::Busy).unwrap();
        let src = Source::Tone {
            cadence,
            limit: None,
        }
        .with_limit(Duration::from_millis(100));
        let mut p = Player::new(src, &LegCodec::new(CodecKind::G729)).unwrap();
        p.start(Ssrc(1), 0, 0, t0);
        let mut lens = Vec::new();
        let mut tss = Vec::new();
        for i in 0..10 {
            p.poll(t0 + Duration::from_millis(20 * i), &mut |b, m| {
                lens.push(b.len());
                tss.push(m.ts)
            });
        }
        assert!(p.is_done());
        assert_eq!(lens, [32; 5], "100 ms of 20 ms G.729 packets");
        // A stalled worker skips the missed packets.
        let mut p = Player::new(
            Source::tone("us", "dial").unwrap(),
            &LegCodec::new(CodecKind::Pcma),
        )
        .unwrap();
        p.start(Ssrc(1), 0, 0, t0);
        let mut tss = Vec::new();
        p.poll(t0, &mut |_, m| tss.push(m.ts));
        p.poll(t0 + Duration::from_secs(1), &mut |_, m| tss.push(m.ts));
        assert_eq!(tss, [0, 8000]);
        assert!(Player::new(
            Source::tone("us", "dial").unwrap(),
            &LegCodec {
                ptime_ms: 25,
                ..LegCodec::new(CodecKind::Pcmu)
            }
        )
        .is_err());
        assert!(Source::tone("xx", "dial").is_none());
        assert!(Source::tone("us", "nope").is_none());
    }

    #[test]
    fn digit_player_plays_both_frequencies_then_ends() {
        let t0 = clock::now();
        let d = Digit::from_char('5').unwrap();
        let mut p = Player::digit(d, 100, &LegCodec::new(CodecKind::Pcmu)).unwrap();
        assert_eq!(p.purpose(), Purpose::Digit(d));
        p.start(Ssrc(1), 0, 0, t0);
        let mut pkts = Vec::new();
        for i in 0..20 {
            p.poll(t0 + Duration::from_millis(20 * i), &mut |b, m| {
                pkts.push((b.to_vec(), m))
            });
        }
        assert!(p.is_done());
        // 100 ms tone + 60 ms gap = 8 packets.
        assert_eq!(pkts.len(), 8);
        let pcm = decode(&pkts);
        let s = share(&pcm[..800], 770.0) + share(&pcm[..800], 1336.0);
        assert!(s > 0.9, "{s}");
    }
}
