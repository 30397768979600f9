//! Media applications on a session's legs: playing a tone or a sound into a
//! leg, detecting the digits a leg sends, and sending digits into a leg.
//!
//! This is what the dialplan's Playback/Background/Read/WaitExten and AGI's
//! STREAM FILE/GET DATA/WAIT FOR DIGIT need from the media path. The control
//! plane asks through [`crate::Dataplane`] (`play`, `stop_play`,
//! `detect_digits`, `send_digit`) and reads [`MediaEvent`]s back with
//! `poll_media_event` (a ring of its own, so the existing `Event` stays as
//! the call manager matches it).
//!
//! # Per leg (a [`SideMedia`] inside every [`Session`])
//!
//! - Output toward the leg: a [`Player`] (tone, sound buffer or an in-band
//!   digit) or an RFC 4733 digit being sent. While either is active the
//!   leg's output belongs to it: RTP relayed toward that leg from the other
//!   one is not sent (RTCP still is). Each generated packet is recorded in
//!   the leg's [`OutStream`](crate::session::OutStream), so the generated
//!   stream starts right after the last relayed packet (same SSRC, next
//!   sequence number, timestamp advanced by the time elapsed, marker set)
//!   and the relay continues the same way when it ends.
//! - Input from the leg: a [`Detector`] that reads RFC 4733 telephone-events
//!   and/or decodes the audio for the in-band detector, reporting each digit
//!   once with its duration.
//! - Digits to send wait in a fixed [`DigitQueue`] until the output is free
//!   (a playback finishes, the previous digit's end packets are out).
//!
//! # Memory and time
//!
//! Players, detectors and their codec states are allocated on the control
//! side and moved to the worker in a command; the worker only moves boxes
//! around. It frees a finished playback's player (and, if the control plane
//! dropped its copy, the last reference to its samples) between batches, as
//! it does for a replaced transcoder. Generated packets are paced by the
//! worker's clock, passed in as `now`; nothing here reads a clock.
//!
//! Known limits: a transcoding session's relayed stream is not renumbered
//! around a playback (the transcoder keeps its own sequence), and the codec
//! a player or detector uses is the leg's codec when it was started.

use std::net::SocketAddr;
use std::time::Instant;

use crate::digits::{DigitQueue, DigitTx, EventRx, InBand, Received};
use crate::dsp::dtmf::{Digit, EventRepr};
use crate::handle::SessionId;
use crate::player::{Player, PlayerError, Purpose};
use crate::session::{Kind, Session, SessionTable, Side, SocketRef};
use crate::transcode::{CodecKind, LegCodec};
use crate::wire::{rtcp, rtp, Pt};

pub use crate::player::Source;

/// Which digits a leg's detector reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DigitMode {
    /// Detection off.
    Off,
    /// RFC 4733 telephone-events only.
    Rfc4733,
    /// In-band tones only (decoded audio through the Q.24 detector).
    InBand,
    /// Both; in-band is switched off on the leg once it sends a
    /// telephone-event (so a phone sending both is not heard twice).
    Auto,
}

/// How a detected digit arrived.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DigitVia {
    Rfc4733,
    InBand,
}

/// Worker -> control notifications of the media applications.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MediaEvent {
    /// A `play` ended: `completed` if the source played to its end, false
    /// if it was stopped or replaced. Exactly one per `play`.
    PlaybackDone {
        id: SessionId,
        side: Side,
        completed: bool,
    },
    /// The leg on `side` sent a digit (reported once, at its end).
    Digit {
        id: SessionId,
        side: Side,
        digit: char,
        /// How long the key was held.
        duration_ms: u32,
        via: DigitVia,
    },
    /// A digit given to `send_digit` has been sent completely.
    DigitSent {
        id: SessionId,
        side: Side,
        digit: char,
    },
}

impl MediaEvent {
    /// The session the event is about.
    pub fn session(&self) -> SessionId {
        match *self {
            MediaEvent::PlaybackDone { id, .. }
            | MediaEvent::Digit { id, .. }
            | MediaEvent::DigitSent { id, .. } => id,
        }
    }
}

/// Why a media request was refused (caller error).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum MediaError {
    /// The leg's codec settings cannot be played into.
    #[error("play: {0}")]
    Player(#[from] PlayerError),
    /// Not one of `0-9 * # A-D`.
    #[error("'{0}' is not a DTMF digit (0-9, *, #, A-D)")]
    BadDigit(char),
}

/// Telephone-event payload type assumed on a leg whose codec was never set.
pub const DEFAULT_DTMF_PT: u8 = 101;

/// Control -> worker media requests (inside `worker::Command::Media`).
#[derive(Debug)]
pub enum Op {
    /// Start playing into `side` (replaces a current playback).
    Play { side: Side, player: Box<Player> },
    /// Stop the playback on `side`.
    StopPlay { side: Side },
    /// Install (`Some`) or remove the digit detector of `side`.
    Detect {
        side: Side,
        detector: Option<Box<Detector>>,
    },
    /// Send `digit` into `side` for `samples`: as RFC 4733 with payload type
    /// `pt` (packets every `interval` samples) when `pt` is set, else in-band
    /// with `player` (a digit player, or `None` when the worker already has
    /// one for this leg).
    SendDigit {
        side: Side,
        digit: Digit,
        samples: u32,
        pt: Option<u8>,
        interval: u32,
        player: Option<Box<Player>>,
    },
}

/// Input side: what the detector of a leg needs to know about its RTP.
pub struct Detector {
    mode: DigitMode,
    /// The leg's negotiated codec, if known.
    codec: Option<LegCodec>,
    /// G.729 decoder (allocated when the leg may speak G.729).
    g729: Option<Box<crate::codec::g729::G729A>>,
    rfc: EventRx,
    inband: InBand,
    rfc_seen: bool,
}

impl std::fmt::Debug for Detector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Detector")
            .field("mode", &self.mode)
            .field("codec", &self.codec)
            .finish()
    }
}

impl Detector {
    /// A detector for a leg speaking `codec` (`None`: not negotiated; then
    /// PCMU/PCMA/G.729 are told apart by static payload type and
    /// telephone-events are expected on [`DEFAULT_DTMF_PT`]). Allocates.
    pub fn new(mode: DigitMode, codec: Option<LegCodec>) -> Detector {
        let g729 = match codec {
            Some(c) if c.codec != CodecKind::G729 => None,
            _ if mode == DigitMode::Rfc4733 => None,
            _ => Some(Box::default()),
        };
        Detector {
            mode,
            codec,
            g729,
            rfc: EventRx::new(),
            inband: InBand::new(),
            rfc_seen: false,
        }
    }

    fn dtmf_pt(&self) -> Option<u8> {
        match self.codec {
            Some(c) => c.dtmf_pt,
            None => Some(DEFAULT_DTMF_PT),
        }
    }

    fn audio_kind(&self, pt: u8) -> Option<CodecKind> {
        match self.codec {
            Some(c) => (c.pt == pt).then_some(c.codec),
            None => match pt {
                0 => Some(CodecKind::Pcmu),
                8 => Some(CodecKind::Pcma),
                18 => Some(CodecKind::G729),
                _ => None,
            },
        }
    }

    /// Feed one RTP packet received on the leg.
    pub fn handle_rtp(
        &mut self,
        p: &rtp::Packet<&[u8]>,
        now: Instant,
        out: &mut dyn FnMut(Received, DigitVia),
    ) {
        let pt = p.payload_type().get();
        let rfc_on = matches!(self.mode, DigitMode::Rfc4733 | DigitMode::Auto);
        let inband_on = match self.mode {
            DigitMode::InBand => true,
            DigitMode::Auto => !self.rfc_seen,
            _ => false,
        };
        if rfc_on && self.dtmf_pt() == Some(pt) {
            if let Ok(repr) = EventRepr::from_bytes(p.payload()) {
                self.rfc_seen = true;
                self.rfc.handle(p.timestamp(), &repr, now, &mut |r| {
                    out(r, DigitVia::Rfc4733)
                });
            }
            return;
        }
        if !inband_on {
            return;
        }
        let Some(kind) = self.audio_kind(pt) else {
            return;
        };
        let payload = p.payload();
        let mut pcm = [0i16; crate::transcode::MAX_IN_SAMPLES];
        let n = match kind {
            CodecKind::Pcmu | CodecKind::Pcma => {
                let n = payload.len().min(pcm.len());
                if kind == CodecKind::Pcmu {
                    crate::codec::g711::decode_ulaw(&payload[..n], &mut pcm[..n]);
                } else {
                    crate::codec::g711::decode_alaw(&payload[..n], &mut pcm[..n]);
                }
                n
            }
            CodecKind::G729 => {
                use crate::codec::Codec;
                let Some(dec) = self.g729.as_mut() else {
                    return;
                };
                // A bad length is the peer's problem: no digits from it.
                dec.decode(payload, &mut pcm).unwrap_or(0)
            }
        };
        self.inband
            .process(&pcm[..n], &mut |r| out(r, DigitVia::InBand));
    }

    /// Close an RFC 4733 event whose end packets were lost.
    pub fn handle_timeout(&mut self, now: Instant, out: &mut dyn FnMut(Received, DigitVia)) {
        self.rfc
            .handle_timeout(now, &mut |r| out(r, DigitVia::Rfc4733));
    }
}

/// An RFC 4733 digit being sent into a leg.
#[derive(Debug, Clone)]
struct Sending {
    tx: DigitTx,
    pt: u8,
    interval: u32,
    started: Instant,
    /// Stream position (RTP timestamp) when the digit started.
    ts0: u32,
    seq: u16,
    sent: Digit,
}

/// The media applications of one leg (see the module docs).
#[derive(Debug)]
pub struct SideMedia {
    player: Option<Box<Player>>,
    /// A digit player kept for the next in-band digit (no allocation).
    spare: Option<Box<Player>>,
    sending: Option<Sending>,
    /// Digits waiting, and how to send them (RFC 4733 `pt` and interval, or
    /// in-band when `None`).
    queue: DigitQueue,
    queue_pt: Option<u8>,
    queue_interval: u32,
    detector: Option<Box<Detector>>,
}

impl SideMedia {
    const fn new() -> SideMedia {
        SideMedia {
            player: None,
            spare: None,
            sending: None,
            queue: DigitQueue::new(),
            queue_pt: None,
            queue_interval: 160,
            detector: None,
        }
    }

    /// Whether something generates the output toward this leg.
    pub fn output_busy(&self) -> bool {
        self.player.is_some() || self.sending.is_some()
    }

    fn active(&self) -> bool {
        self.output_busy() || self.detector.is_some() || !self.queue.is_empty()
    }
}

/// Media application state of a session (both legs).
#[derive(Debug)]
pub struct SessionMedia {
    sides: [SideMedia; 2],
    /// In the worker's active list.
    listed: bool,
}

impl Default for SessionMedia {
    fn default() -> Self {
        Self::new()
    }
}

const fn idx(side: Side) -> usize {
    match side {
        Side::A => 0,
        Side::B => 1,
    }
}

const SIDES: [Side; 2] = [Side::A, Side::B];

impl SessionMedia {
    /// Nothing playing, detecting or sending.
    pub const fn new() -> SessionMedia {
        SessionMedia {
            sides: [SideMedia::new(), SideMedia::new()],
            listed: false,
        }
    }

    /// One leg's state.
    pub fn side(&self, side: Side) -> &SideMedia {
        &self.sides[idx(side)]
    }

    /// Per leg (A, B): whether relayed RTP toward it is held back because a
    /// generator owns its output.
    pub fn muted(&self) -> [bool; 2] {
        [self.sides[0].output_busy(), self.sides[1].output_busy()]
    }

    /// Whether the leg's received RTP must be shown to its detector.
    pub fn detecting(&self, side: Side) -> bool {
        self.sides[idx(side)].detector.is_some()
    }

    /// Whether any application (player, digit queue/sender, detector) is
    /// attached to either leg.
    pub fn active(&self) -> bool {
        self.sides.iter().any(SideMedia::active)
    }
}

/// The worker's side: the media event ring and the sessions with active
/// media applications (preallocated).
#[derive(Debug)]
pub struct WorkerMedia {
    events: Option<rtrb::Producer<MediaEvent>>,
    active: Vec<u32>,
    /// Events lost (ring full or not attached).
    pub dropped: u64,
}

impl WorkerMedia {
    /// Room for `max_sessions` active sessions.
    pub fn new(max_sessions: usize) -> WorkerMedia {
        WorkerMedia {
            events: None,
            active: Vec::with_capacity(max_sessions),
            dropped: 0,
        }
    }

    /// Where media events go from now on.
    pub fn attach(&mut self, events: rtrb::Producer<MediaEvent>) {
        self.events = Some(events);
    }

    fn push(&mut self, ev: MediaEvent) {
        match self.events.as_mut().map(|p| p.push(ev)) {
            Some(Ok(())) => {}
            _ => self.dropped += 1,
        }
    }

    fn list(&mut self, slot: u32, media: &mut SessionMedia) {
        // The list holds at most one entry per slot (`listed`), and its
        // capacity is the table's, so this never reallocates.
        if !media.listed && self.active.len() < self.active.capacity() {
            media.listed = true;
            self.active.push(slot);
        }
    }

    /// Apply a media request to the session in `slot`.
    pub fn apply(&mut self, slot: u32, s: &mut Session, op: Op, now: Instant) {
        let id = s.id;
        match op {
            Op::Play { side, mut player } => {
                let sm = &mut s.media.sides[idx(side)];
                if let Some(old) = sm.player.take() {
                    self.finish_player(id, side, old, false, &mut s.media.sides[idx(side)]);
                }
                let (seq, ts) = stream_start(s, side, now);
                player.start(s.leg(side).out.ssrc, seq, ts, now);
                s.media.sides[idx(side)].player = Some(player);
            }
            Op::StopPlay { side } => {
                let sm = &mut s.media.sides[idx(side)];
                if sm.player.as_ref().map(|p| p.purpose()) == Some(Purpose::Playback) {
                    if let Some(old) = sm.player.take() {
                        self.finish_player(id, side, old, false, sm);
                    }
                }
            }
            Op::Detect { side, detector } => s.media.sides[idx(side)].detector = detector,
            Op::SendDigit {
                side,
                digit,
                samples,
                pt,
                interval,
                player,
            } => {
                let sm = &mut s.media.sides[idx(side)];
                if let Some(p) = player {
                    if sm.spare.is_none() {
                        sm.spare = Some(p);
                    }
                }
                sm.queue_pt = pt;
                sm.queue_interval = interval.max(1);
                if !sm.queue.push(digit, samples) {
                    tracing::warn!(session = id.0, "digit queue full, digit dropped");
                }
            }
        }
        if s.media.active() {
            self.list(slot, &mut s.media);
        }
    }

    fn finish_player(
        &mut self,
        id: SessionId,
        side: Side,
        player: Box<Player>,
        completed: bool,
        sm: &mut SideMedia,
    ) {
        match player.purpose() {
            Purpose::Playback => self.push(MediaEvent::PlaybackDone {
                id,
                side,
                completed,
            }),
            Purpose::Digit(d) => {
                self.push(MediaEvent::DigitSent {
                    id,
                    side,
                    digit: d.to_char(),
                });
                // Keep it for the next in-band digit.
                sm.spare = Some(player);
            }
        }
    }

    /// Show a received RTP datagram (already accepted by the switch) of leg
    /// `side` to its detector.
    pub fn inspect(&mut self, s: &mut Session, side: Side, bytes: &[u8], now: Instant) {
        if rtcp::is_rtcp(bytes) {
            return;
        }
        let Ok(p) = rtp::Packet::new_checked(bytes) else {
            return;
        };
        let id = s.id;
        let Some(det) = s.media.sides[idx(side)].detector.as_mut() else {
            return;
        };
        det.handle_rtp(&p, now, &mut |r, via| {
            self.push(digit_event(id, side, r, via));
        });
    }

    /// Run the media applications due at `now` (once per worker iteration):
    /// generated packets go to `emit` (socket, destination, datagram),
    /// events to the media ring.
    pub fn tick(
        &mut self,
        now: Instant,
        table: &mut SessionTable,
        emit: &mut dyn FnMut(SocketRef, SocketAddr, &[u8]),
    ) {
        let mut i = 0;
        while i < self.active.len() {
            let slot = self.active[i];
            let Some(s) = table.by_index_mut(slot) else {
                self.active.swap_remove(i);
                continue;
            };
            for side in SIDES {
                self.tick_side(slot, s, side, now, emit);
            }
            if s.media.active() {
                i += 1;
            } else {
                s.media.listed = false;
                self.active.swap_remove(i);
            }
        }
    }

    fn tick_side(
        &mut self,
        slot: u32,
        s: &mut Session,
        side: Side,
        now: Instant,
        emit: &mut dyn FnMut(SocketRef, SocketAddr, &[u8]),
    ) {
        let id = s.id;
        let from = SocketRef {
            slot,
            side,
            kind: Kind::Rtp,
        };
        let to = s.leg(side).destination(Kind::Rtp);
        if let Some(det) = s.media.sides[idx(side)].detector.as_mut() {
            det.handle_timeout(now, &mut |r, via| {
                self.push(digit_event(id, side, r, via));
            });
        }

        // Player (playback or in-band digit).
        let (media, out) = match side {
            Side::A => (&mut s.media, &mut s.a.out),
            Side::B => (&mut s.media, &mut s.b.out),
        };
        if let Some(p) = media.sides[idx(side)].player.as_mut() {
            p.poll(now, &mut |b, m| {
                out.record_generated(m.seq, m.ts, m.step, now);
                if let Some(to) = to {
                    emit(from, to, b);
                }
            });
            if p.is_done() {
                let sm = &mut s.media.sides[idx(side)];
                if let Some(p) = sm.player.take() {
                    self.finish_player(id, side, p, true, sm);
                }
            }
            return;
        }

        // Start the next queued digit once the output is free.
        if s.media.sides[idx(side)].sending.is_none() && !s.media.sides[idx(side)].queue.is_empty()
        {
            let (seq, ts) = stream_start(s, side, now);
            let ssrc = s.leg(side).out.ssrc;
            let sm = &mut s.media.sides[idx(side)];
            if let Some((digit, samples)) = sm.queue.pop() {
                match sm.queue_pt {
                    Some(pt) => {
                        let mut tx = DigitTx::new(sm.queue_interval);
                        tx.begin(digit, samples, ts);
                        sm.sending = Some(Sending {
                            tx,
                            pt,
                            interval: sm.queue_interval,
                            started: now,
                            ts0: ts,
                            seq,
                            sent: digit,
                        });
                    }
                    None => match sm.spare.take() {
                        Some(mut p) => {
                            p.set_digit(digit, samples / 8);
                            p.start(ssrc, seq, ts, now);
                            sm.player = Some(p);
                            // Its first packet goes out on the next tick.
                            return;
                        }
                        None => tracing::warn!(session = id.0, "no in-band digit player"),
                    },
                }
            }
        }

        // RFC 4733 digit in progress.
        let ssrc = s.leg(side).out.ssrc;
        let Some(mut snd) = s.media.sides[idx(side)].sending.take() else {
            return;
        };
        let elapsed = elapsed_samples(snd.started, now);
        while let Some(tx) = snd.tx.poll(elapsed) {
            let mut buf = [0u8; rtp::HEADER_LEN + 4];
            let repr = rtp::Repr {
                marker: tx.marker,
                payload_type: Pt::new(snd.pt),
                sequence_number: snd.seq,
                timestamp: tx.timestamp,
                ssrc,
            };
            // Both emits write into buffers of exactly their length.
            let _ = repr.emit(&mut buf[..rtp::HEADER_LEN]);
            let _ = tx.payload.emit(&mut buf[rtp::HEADER_LEN..]);
            s.leg_mut(side).out.record_generated(
                snd.seq,
                snd.ts0.wrapping_add(elapsed),
                snd.interval,
                now,
            );
            snd.seq = snd.seq.wrapping_add(1);
            if let Some(to) = to {
                emit(from, to, &buf);
            }
        }
        match snd.tx.digit() {
            Some(_) => s.media.sides[idx(side)].sending = Some(snd),
            None => {
                // `begin` digit is gone once idle; report the one sent.
                self.push(MediaEvent::DigitSent {
                    id,
                    side,
                    digit: snd.sent.to_char(),
                });
            }
        }
    }
}

fn digit_event(id: SessionId, side: Side, r: Received, via: DigitVia) -> MediaEvent {
    MediaEvent::Digit {
        id,
        side,
        digit: r.digit.to_char(),
        duration_ms: r.duration / 8,
        via,
    }
}

fn elapsed_samples(since: Instant, now: Instant) -> u32 {
    let us = now.saturating_duration_since(since).as_micros();
    u32::try_from(us * 8 / 1000).unwrap_or(u32::MAX)
}

/// Sequence number and timestamp a generated stream toward `side` starts
/// with: right after what the leg's peer last received from us.
fn stream_start(s: &Session, side: Side, now: Instant) -> (u16, u32) {
    let out = &s.leg(side).out;
    match out.last_sent() {
        Some((seq, ts, step, at)) => {
            let ticks = elapsed_samples(at, now).max(step).max(1);
            (seq.wrapping_add(1), ts.wrapping_add(ticks))
        }
        None => {
            // Nothing sent yet: start from values derived from the SSRC
            // (random per session) as RFC 3550 asks.
            let r = out.ssrc.0.rotate_left(11) ^ 0x9e37_79b9;
            (r as u16, r.rotate_left(16))
        }
    }
}
