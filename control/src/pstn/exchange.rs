//! The PSTN exchange simulator: the far end of Tandem's E1 PRI trunk.
//!
//! [`Exchange`] runs the NETWORK side of PRI ([`crate::isdn::Pri`]) on one
//! span and behaves like a public exchange (C&C08 / S1240 class) towards the
//! CPE: calls to configured numbers are answered, ring then answer, ring
//! without answer (DISCONNECT 19 after `no_answer`), get busy (PROGRESS with
//! the busy tone in-band, then DISCONNECT 17) or congestion (same, 34), or
//! are unallocated (RELEASE COMPLETE 1). Tones come from
//! [`dataplane::dsp::tones`] in the configured zone, A-law encoded into the
//! B-channel. An answered call returns the caller's audio as a line echo
//! ([`LineEcho`]: a bulk delay, a short dispersive hybrid response, the
//! configured ERL). [`Exchange::originate`] places calls into Tandem with a
//! given calling number and presentation.
//!
//! Sans-IO like everything else: [`Exchange::pump`] takes the exchange's
//! [`Span`] (D-channel frames and B-channel blocks) and `now`.
//! [`SimTrunk`] wires it to Tandem's span over [`drivers::sim::BackToBack`]
//! (real G.704 framing, CRC-4, HDLC with FCS-16 in TS16) and steps line time
//! in 1 ms steps: the harness for tests and for the embedded default.

use std::collections::{BTreeMap, VecDeque};
use std::time::{Duration, Instant};

use dataplane::codec::g711::{alaw_to_linear, linear_to_alaw};
use dataplane::dsp::tones::{zone_tone, ToneGenerator, ToneKind};
use drivers::sim::BackToBack;
use drivers::span::Span;
use drivers::{ChanId, SpanId};

use super::{CallerId, Pstn};
use crate::isdn::{self, Pri, PriError, PriEvent, SetupRequest, Side};
use crate::q931::PartyNumber;

/// Which called numbers a rule applies to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NumberPattern {
    /// Exactly this number.
    Exact(String),
    /// Numbers starting with this.
    Prefix(String),
    /// Numbers ending with this.
    Suffix(String),
    /// Every number.
    Any,
}

impl NumberPattern {
    /// `"*"` any, `"*8"` suffix, `"555*"` prefix, digits exact.
    pub fn parse(s: &str) -> Result<Self, String> {
        let ok = |d: &str| {
            d.chars()
                .all(|c| c.is_ascii_digit() || c == '#' || c == '+')
        };
        let p = if s == "*" {
            NumberPattern::Any
        } else if let Some(d) = s.strip_prefix('*') {
            NumberPattern::Suffix(d.to_string())
        } else if let Some(d) = s.strip_suffix('*') {
            NumberPattern::Prefix(d.to_string())
        } else {
            NumberPattern::Exact(s.to_string())
        };
        match &p {
            NumberPattern::Exact(d) | NumberPattern::Prefix(d) | NumberPattern::Suffix(d)
                if d.is_empty() || !ok(d) =>
            {
                Err(format!(
                    "{s:?}: expected digits, \"*digits\", \"digits*\" or \"*\""
                ))
            }
            _ => Ok(p),
        }
    }

    /// True when `number` matches.
    pub fn matches(&self, number: &str) -> bool {
        match self {
            NumberPattern::Exact(d) => number == d,
            NumberPattern::Prefix(d) => number.starts_with(d.as_str()),
            NumberPattern::Suffix(d) => number.ends_with(d.as_str()),
            NumberPattern::Any => true,
        }
    }
}

/// What the exchange does with a call to a number.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Behaviour {
    /// CALL PROCEEDING, CONNECT.
    Answer,
    /// CALL PROCEEDING, PROGRESS + busy tone, DISCONNECT 17.
    Busy,
    /// CALL PROCEEDING, ALERTING + ringback, DISCONNECT 19 after `no_answer`.
    NoAnswer,
    /// CALL PROCEEDING, PROGRESS + congestion tone, DISCONNECT 34.
    Congestion,
    /// CALL PROCEEDING, ALERTING + ringback, CONNECT after the delay.
    RingThenAnswer(Duration),
    /// RELEASE COMPLETE 1 (unallocated number).
    Unallocated,
    /// A loop-around test line: CALL PROCEEDING, CONNECT, then the caller's
    /// audio comes back unchanged (no hybrid filter, no extra delay).
    Loopback,
}

/// One routing rule; the first match wins, no match is unallocated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NumberRule {
    /// Called numbers.
    pub pattern: NumberPattern,
    /// What happens.
    pub behaviour: Behaviour,
}

/// Exchange simulator settings (`[pstn.exchange]`).
#[derive(Debug, Clone, PartialEq)]
pub struct ExchangeConfig {
    /// Routing rules, first match wins.
    pub rules: Vec<NumberRule>,
    /// Bulk delay of the line echo.
    pub echo_delay: Duration,
    /// Echo return loss in dB (attenuation of the echo).
    pub echo_erl_db: f32,
    /// Tone zone.
    pub zone: String,
    /// How long busy/congestion tones play before DISCONNECT.
    pub tone_time: Duration,
    /// Ringing time before a no-answer call is cleared (cause 19).
    pub no_answer: Duration,
    /// D-channel bit errors on the simulated line: the chance per TS16
    /// octet, in 1/65536, of one flipped bit (each direction). HDLC's FCS
    /// catches them and Q.921 retransmits.
    pub bit_errors_per_64k: u32,
}

impl Default for ExchangeConfig {
    /// The demo exchange: numbers ending in 8 are busy, in 9 unallocated,
    /// anything else answers; 30 ms line echo at 12 dB ERL; EU tones.
    fn default() -> Self {
        Self {
            rules: vec![
                NumberRule {
                    pattern: NumberPattern::Suffix("8".into()),
                    behaviour: Behaviour::Busy,
                },
                NumberRule {
                    pattern: NumberPattern::Suffix("9".into()),
                    behaviour: Behaviour::Unallocated,
                },
                NumberRule {
                    pattern: NumberPattern::Any,
                    behaviour: Behaviour::Answer,
                },
            ],
            echo_delay: Duration::from_millis(30),
            echo_erl_db: 12.0,
            zone: "eu".into(),
            tone_time: Duration::from_secs(2),
            no_answer: Duration::from_secs(30),
            bit_errors_per_64k: 0,
        }
    }
}

impl ExchangeConfig {
    /// The behaviour for a called number.
    pub fn behaviour(&self, called: &str) -> Behaviour {
        self.rules
            .iter()
            .find(|r| r.pattern.matches(called))
            .map(|r| r.behaviour)
            .unwrap_or(Behaviour::Unallocated)
    }
}

/// A line echo path: the far-end hybrid reflects the signal after a bulk
/// delay, smeared over a few taps, attenuated by the ERL. The tap energy is
/// normalised so that white noise comes back exactly `erl_db` lower.
#[derive(Debug, Clone)]
pub struct LineEcho {
    hist: VecDeque<f32>,
    taps: Vec<f32>,
    delay: usize,
}

/// Shape of the hybrid's impulse response after the bulk delay (a short,
/// decaying, alternating response as measured on 2-wire loops).
const HYBRID: [f32; 5] = [1.0, -0.42, 0.2, -0.09, 0.04];

impl LineEcho {
    /// An echo `delay` long (rounded to samples) at `erl_db` below the input.
    pub fn new(delay: Duration, erl_db: f32) -> Self {
        let delay = (delay.as_micros() / 125) as usize;
        let gain = 10f32.powf(-erl_db / 20.0);
        let norm = HYBRID.iter().map(|h| h * h).sum::<f32>().sqrt();
        let taps: Vec<f32> = HYBRID.iter().map(|h| h * gain / norm).collect();
        let n = delay + taps.len();
        Self {
            hist: VecDeque::from(vec![0.0; n]),
            taps,
            delay,
        }
    }

    /// Bulk delay in samples.
    pub fn delay_samples(&self) -> usize {
        self.delay
    }

    /// Echo of one A-law block into `out` (same length).
    pub fn process(&mut self, rx: &[u8], out: &mut [u8]) {
        let n = self.hist.len();
        for (x, o) in rx.iter().zip(out.iter_mut()) {
            self.hist.pop_front();
            self.hist.push_back(f32::from(alaw_to_linear(*x)));
            // hist[n-1] is x[t]; tap k reads x[t - delay - k].
            let mut y = 0.0;
            for (k, h) in self.taps.iter().enumerate() {
                y += h * self.hist[n - 1 - self.delay - k];
            }
            *o = linear_to_alaw(y.round().clamp(-32768.0, 32767.0) as i16);
        }
    }
}

/// An exchange call handle.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ExCallId(pub u32);

/// What the exchange saw (for tests and logs).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ExchangeEvent {
    /// D-channel established.
    LinkUp,
    /// A call from Tandem arrived and was routed.
    Offered {
        /// Call.
        id: ExCallId,
        /// B-channel.
        channel: ChanId,
        /// Called number.
        called: String,
        /// Calling party as received.
        calling: Option<PartyNumber>,
        /// What the exchange does with it.
        behaviour: Behaviour,
    },
    /// Tandem acknowledged an overlap SETUP: send digits with
    /// [`Exchange::send_digits`].
    SetupAcknowledged {
        /// Call.
        id: ExCallId,
    },
    /// Tandem accepted our originated call (CALL PROCEEDING).
    Proceeding {
        /// Call.
        id: ExCallId,
    },
    /// Tandem alerted our originated call.
    Alerting {
        /// Call.
        id: ExCallId,
    },
    /// The call is connected.
    Answered {
        /// Call.
        id: ExCallId,
    },
    /// The call is gone.
    Released {
        /// Call.
        id: ExCallId,
        /// Q.850 cause.
        cause: u8,
    },
}

#[derive(Debug)]
enum Phase {
    /// We originated it; waiting for Tandem.
    Originated,
    /// Ringing towards Tandem's caller; answer or give up at a deadline.
    Ringing {
        answer_at: Option<Instant>,
        give_up: Option<Instant>,
    },
    /// Busy/congestion tone; DISCONNECT with `cause` at `clear_at`.
    Tone { clear_at: Instant, cause: u8 },
    /// Answered: echo.
    Connected,
    /// DISCONNECT sent; waiting for the release.
    Clearing,
}

#[derive(Debug)]
struct ExCall {
    pri: isdn::CallId,
    phase: Phase,
    tone: Option<ToneGenerator>,
    echo: LineEcho,
    flush: bool,
    loopback: bool,
}

/// The exchange: one network-side PRI, its calls, tones and echo.
#[derive(Debug)]
pub struct Exchange {
    cfg: ExchangeConfig,
    pri: Pri,
    calls: BTreeMap<ExCallId, ExCall>,
    by_pri: BTreeMap<isdn::CallId, ExCallId>,
    next: u32,
    events: VecDeque<ExchangeEvent>,
    up: bool,
    relink_at: Option<Instant>,
    pcm: Vec<i16>,
    /// Blocks of audio written into B-channels (tones and echo).
    pub blocks_sent: u64,
}

impl Exchange {
    /// A network-side exchange with default Q.921/Q.931 timers.
    pub fn new(cfg: ExchangeConfig) -> Self {
        Self::with_side(cfg, Side::Network)
    }

    /// An exchange playing `side` (Network normally; User to test Tandem as
    /// the network side).
    pub fn with_side(cfg: ExchangeConfig, side: Side) -> Self {
        Self {
            cfg,
            pri: Pri::new(side),
            calls: BTreeMap::new(),
            by_pri: BTreeMap::new(),
            next: 1,
            events: VecDeque::new(),
            up: false,
            relink_at: None,
            pcm: Vec::new(),
            blocks_sent: 0,
        }
    }

    /// The settings.
    pub fn config(&self) -> &ExchangeConfig {
        &self.cfg
    }

    /// Starts the D-channel.
    pub fn start(&mut self, now: Instant) {
        self.pri.start(now);
    }

    /// D-channel established.
    pub fn link_up(&self) -> bool {
        self.up
    }

    /// Live calls.
    pub fn call_count(&self) -> usize {
        self.calls.len()
    }

    /// The Q.931 engine (states, channels).
    pub fn pri(&self) -> &Pri {
        &self.pri
    }

    /// B-channel of a call.
    pub fn channel(&self, id: ExCallId) -> Option<ChanId> {
        let c = self.calls.get(&id)?;
        self.pri.channel(c.pri).map(|c| ChanId(u16::from(c)))
    }

    /// Next event.
    pub fn poll_event(&mut self) -> Option<ExchangeEvent> {
        self.events.pop_front()
    }

    fn new_call(&mut self, pri: isdn::CallId, phase: Phase) -> ExCallId {
        let id = ExCallId(self.next);
        self.next += 1;
        self.calls.insert(
            id,
            ExCall {
                pri,
                phase,
                tone: None,
                echo: LineEcho::new(self.cfg.echo_delay, self.cfg.echo_erl_db),
                flush: true,
                loopback: false,
            },
        );
        self.by_pri.insert(pri, id);
        id
    }

    /// Places a call into Tandem (network-assigned channel, exclusive).
    pub fn originate(
        &mut self,
        called: &str,
        calling: Option<&CallerId>,
        now: Instant,
    ) -> Result<ExCallId, PriError> {
        let mut req = SetupRequest::new(called, None);
        if let Some(c) = calling {
            req.calling = Some(c.number.clone());
            req.calling_ton = c.ton;
            req.presentation = c.presentation;
            req.screening = c.screening;
        }
        req.exclusive = true;
        let call = self.pri.setup(&req, now)?;
        Ok(self.new_call(call, Phase::Originated))
    }

    /// Places a call into Tandem with overlap sending: SETUP carries only
    /// `first` digits and no Sending complete; the rest goes with
    /// [`Exchange::send_digits`] after SETUP ACKNOWLEDGE.
    pub fn originate_overlap(
        &mut self,
        first: &str,
        calling: Option<&CallerId>,
        now: Instant,
    ) -> Result<ExCallId, PriError> {
        let mut req = SetupRequest::new(first, None);
        if let Some(c) = calling {
            req.calling = Some(c.number.clone());
            req.calling_ton = c.ton;
            req.presentation = c.presentation;
            req.screening = c.screening;
        }
        req.exclusive = true;
        req.sending_complete = false;
        let call = self.pri.setup(&req, now)?;
        Ok(self.new_call(call, Phase::Originated))
    }

    /// More digits of an overlap call (INFORMATION).
    pub fn send_digits(
        &mut self,
        id: ExCallId,
        digits: &str,
        complete: bool,
        now: Instant,
    ) -> Result<(), PriError> {
        let pri = self
            .calls
            .get(&id)
            .map(|c| c.pri)
            .ok_or(PriError::NoCall(isdn::CallId(0)))?;
        self.pri.information(pri, digits, complete, now)
    }

    /// Clears a call (DISCONNECT, or RELEASE COMPLETE before any answer).
    pub fn hangup(&mut self, id: ExCallId, cause: u8, now: Instant) -> Result<(), PriError> {
        let Some(c) = self.calls.get_mut(&id) else {
            return Err(PriError::NoCall(isdn::CallId(0)));
        };
        c.phase = Phase::Clearing;
        c.tone = None;
        let pri = c.pri;
        self.pri.hangup(pri, cause, now)?;
        if self.pri.state(pri).is_none() {
            self.forget(pri, cause);
        }
        Ok(())
    }

    fn forget(&mut self, pri: isdn::CallId, cause: u8) {
        if let Some(id) = self.by_pri.remove(&pri) {
            self.calls.remove(&id);
            self.events.push_back(ExchangeEvent::Released { id, cause });
        }
    }

    fn tone(&self, kind: ToneKind) -> Option<ToneGenerator> {
        zone_tone(&self.cfg.zone, kind)
            .or_else(|| zone_tone("eu", kind))
            .map(ToneGenerator::new)
    }

    fn on_setup(
        &mut self,
        call: isdn::CallId,
        channel: Option<u8>,
        called: String,
        calling: Option<PartyNumber>,
        now: Instant,
    ) {
        let behaviour = self.cfg.behaviour(&called);
        let id = self.new_call(call, Phase::Connected);
        self.events.push_back(ExchangeEvent::Offered {
            id,
            channel: ChanId(u16::from(channel.unwrap_or(0))),
            called,
            calling,
            behaviour,
        });
        // Commands below are valid in CallPresent by construction; a failure
        // would mean the call vanished, which the event loop then reports.
        if behaviour == Behaviour::Unallocated {
            let _ = self.pri.hangup(call, 1, now);
            self.forget(call, 1);
            return;
        }
        let _ = self.pri.proceeding(call, now);
        let (phase, tone) = match behaviour {
            Behaviour::Answer | Behaviour::Loopback => {
                let _ = self.pri.answer(call, now);
                if let Some(c) = self.calls.get_mut(&id) {
                    c.loopback = behaviour == Behaviour::Loopback;
                }
                (Phase::Connected, None)
            }
            Behaviour::RingThenAnswer(d) => {
                let _ = self.pri.alerting(call, true, now);
                (
                    Phase::Ringing {
                        answer_at: Some(now + d),
                        give_up: None,
                    },
                    self.tone(ToneKind::Ringback),
                )
            }
            Behaviour::NoAnswer => {
                let _ = self.pri.alerting(call, true, now);
                (
                    Phase::Ringing {
                        answer_at: None,
                        give_up: Some(now + self.cfg.no_answer),
                    },
                    self.tone(ToneKind::Ringback),
                )
            }
            Behaviour::Busy | Behaviour::Congestion => {
                let _ = self.pri.progress(call, now);
                let (kind, cause) = if behaviour == Behaviour::Busy {
                    (ToneKind::Busy, 17)
                } else {
                    (ToneKind::Congestion, 34)
                };
                (
                    Phase::Tone {
                        clear_at: now + self.cfg.tone_time,
                        cause,
                    },
                    self.tone(kind),
                )
            }
            Behaviour::Unallocated => return,
        };
        if let Some(c) = self.calls.get_mut(&id) {
            c.phase = phase;
            c.tone = tone;
        }
    }

    fn drain(&mut self, now: Instant) {
        while let Some(ev) = self.pri.poll_event() {
            match ev {
                PriEvent::LinkUp => {
                    self.up = true;
                    self.events.push_back(ExchangeEvent::LinkUp);
                }
                PriEvent::LinkDown => {
                    self.up = false;
                    self.relink_at = Some(now + super::RELINK_INTERVAL);
                }
                PriEvent::Setup {
                    call,
                    channel,
                    calling,
                    called,
                    ..
                } => self.on_setup(call, channel, called, calling, now),
                PriEvent::Proceeding { call, .. } => {
                    if let Some(&id) = self.by_pri.get(&call) {
                        self.events.push_back(ExchangeEvent::Proceeding { id });
                    }
                }
                PriEvent::SetupAcknowledged { call } => {
                    if let Some(&id) = self.by_pri.get(&call) {
                        self.events
                            .push_back(ExchangeEvent::SetupAcknowledged { id });
                    }
                }
                PriEvent::Alerting { call, .. } => {
                    if let Some(&id) = self.by_pri.get(&call) {
                        self.events.push_back(ExchangeEvent::Alerting { id });
                    }
                }
                PriEvent::Answer { call } => {
                    if let Some(&id) = self.by_pri.get(&call) {
                        if let Some(c) = self.calls.get_mut(&id) {
                            c.phase = Phase::Connected;
                            c.tone = None;
                            c.flush = true;
                        }
                        self.events.push_back(ExchangeEvent::Answered { id });
                    }
                }
                PriEvent::Release { call, cause } => self.forget(call, cause),
                PriEvent::Progress { .. }
                | PriEvent::Restarted { .. }
                | PriEvent::ProtocolError(_)
                | PriEvent::Information { .. } => {}
            }
        }
    }

    fn run_timers(&mut self, now: Instant) {
        let mut actions = Vec::new();
        for (id, c) in &self.calls {
            match c.phase {
                Phase::Ringing {
                    answer_at: Some(t), ..
                } if now >= t => actions.push((*id, None)),
                Phase::Ringing {
                    give_up: Some(t), ..
                } if now >= t => actions.push((*id, Some(19))),
                Phase::Tone { clear_at, cause } if now >= clear_at => {
                    actions.push((*id, Some(cause)))
                }
                _ => {}
            }
        }
        for (id, act) in actions {
            let Some(c) = self.calls.get_mut(&id) else {
                continue;
            };
            let pri = c.pri;
            match act {
                None => {
                    c.phase = Phase::Connected;
                    c.tone = None;
                    c.flush = true;
                    let _ = self.pri.answer(pri, now);
                }
                Some(cause) => {
                    c.phase = Phase::Clearing;
                    c.tone = None;
                    let _ = self.pri.hangup(pri, cause, now);
                }
            }
        }
    }

    /// Earliest deadline (Q.921/Q.931 timers and ringing/tone deadlines).
    pub fn poll_timeout(&self) -> Option<Instant> {
        let own = self
            .calls
            .values()
            .filter_map(|c| match c.phase {
                Phase::Ringing { answer_at, give_up } => answer_at.or(give_up),
                Phase::Tone { clear_at, .. } => Some(clear_at),
                _ => None,
            })
            .min();
        match (own, self.pri.poll_timeout()) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// One step against the exchange's span: D-channel frames in, timers,
    /// B-channel audio (tones while ringing/busy, echo once connected),
    /// frames out.
    pub fn pump(&mut self, span: &mut Span, now: Instant) {
        while let Some(f) = span.recv_frame() {
            self.pri.handle_frame(&f, now);
            self.drain(now);
        }
        if self.pri.poll_timeout().is_some_and(|t| t <= now) {
            self.pri.handle_timeout(now);
        }
        if self.relink_at.is_some_and(|t| t <= now) {
            self.relink_at = None;
            if !self.up {
                self.pri.start(now);
            }
        }
        self.drain(now);
        self.run_timers(now);
        self.drain(now);
        self.audio(span);
        while let Some(f) = self.pri.poll_transmit() {
            span.send_frame(&f);
        }
    }

    fn audio(&mut self, span: &mut Span) {
        let n = span.block_size();
        let mut out = vec![0u8; n];
        for c in self.calls.values_mut() {
            let Some(ch) = self.pri.channel(c.pri) else {
                continue;
            };
            let ch = ChanId(u16::from(ch));
            if c.flush {
                // Stale samples from before the call/answer: start clean.
                while let Ok(Some(_)) = span.read_block(ch) {}
                c.flush = false;
                continue;
            }
            while let Ok(Some(rx)) = span.read_block(ch) {
                let write = match (&c.phase, c.tone.as_mut()) {
                    (Phase::Connected, _) if c.loopback => {
                        for (o, x) in out.iter_mut().zip(&rx) {
                            *o = *x;
                        }
                        true
                    }
                    (Phase::Connected, _) => {
                        c.echo.process(&rx, &mut out);
                        true
                    }
                    (Phase::Ringing { .. } | Phase::Tone { .. }, Some(t)) => {
                        self.pcm.resize(n, 0);
                        t.fill(&mut self.pcm);
                        for (o, s) in out.iter_mut().zip(&self.pcm) {
                            *o = linear_to_alaw(*s);
                        }
                        true
                    }
                    _ => false,
                };
                if write && span.write_block(ch, &out).is_ok() {
                    self.blocks_sent += 1;
                }
            }
        }
    }
}

/// Tandem's span and the exchange wired back to back over a simulated E1,
/// stepped in 1 ms steps of line time (8 E1 frames).
#[derive(Debug)]
pub struct SimTrunk {
    /// The line: `a` is Tandem's port, `b` the exchange's.
    pub line: BackToBack,
    /// The exchange on port `b`.
    pub exchange: Exchange,
    span: SpanId,
    t0: Instant,
}

impl SimTrunk {
    /// A trunk for Tandem's `span`; line time starts at `t0` (after 8 ms of
    /// frame alignment). CRC-4 on; `seed` drives the impairment generator.
    pub fn new(span: SpanId, cfg: ExchangeConfig, t0: Instant, seed: u64) -> Self {
        Self::with_exchange(span, Exchange::new(cfg), t0, seed)
    }

    /// A trunk to an exchange built by the caller (e.g. playing the user
    /// side with [`Exchange::with_side`], when Tandem is the network side).
    pub fn with_exchange(span: SpanId, mut exchange: Exchange, t0: Instant, seed: u64) -> Self {
        let mut line = BackToBack::new(true, seed);
        line.run(64);
        line.imp.dchan_flip_per_64k = exchange.config().bit_errors_per_64k;
        exchange.start(t0 + Duration::from_micros(line.micros()));
        Self {
            line,
            exchange,
            span,
            t0,
        }
    }

    /// Sets the block size of both ports (Tandem's configured one).
    pub fn set_block_size(&mut self, block: usize) -> Result<(), drivers::span::SpanError> {
        self.line.a.span.set_block_size(block, 4)?;
        self.line.b.span.set_block_size(block, 4)
    }

    /// Current line time.
    pub fn now(&self) -> Instant {
        self.t0 + Duration::from_micros(self.line.micros())
    }

    /// Tandem's span (B-channel audio, alarms).
    pub fn tandem_span(&mut self) -> &mut Span {
        &mut self.line.a.span
    }

    /// Which span of Tandem's runtime this trunk carries.
    pub fn span_id(&self) -> SpanId {
        self.span
    }

    /// One millisecond: pump Tandem's runtime and the exchange, move 8 frames.
    pub fn step(&mut self, pstn: &mut Pstn) {
        let now = self.now();
        pstn.pump(self.span, &mut self.line.a.span, now);
        self.exchange.pump(&mut self.line.b.span, now);
        self.line.run(8);
    }

    /// Steps until line time reaches `until`.
    pub fn advance_to(&mut self, pstn: &mut Pstn, until: Instant) {
        while self.now() < until {
            self.step(pstn);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn patterns() {
        assert_eq!(NumberPattern::parse("*"), Ok(NumberPattern::Any));
        assert!(NumberPattern::parse("*8").unwrap().matches("5558"));
        assert!(!NumberPattern::parse("*8").unwrap().matches("5559"));
        assert!(NumberPattern::parse("555*").unwrap().matches("5551"));
        assert!(NumberPattern::parse("5551").unwrap().matches("5551"));
        assert!(!NumberPattern::parse("5551").unwrap().matches("55512"));
        assert!(NumberPattern::parse("5a").is_err());
        assert!(NumberPattern::parse("**").is_err());
        let d = ExchangeConfig::default();
        assert_eq!(d.behaviour("0215550108"), Behaviour::Busy);
        assert_eq!(d.behaviour("0215550109"), Behaviour::Unallocated);
        assert_eq!(d.behaviour("0215550103"), Behaviour::Answer);
        let none = ExchangeConfig {
            rules: Vec::new(),
            ..d
        };
        assert_eq!(none.behaviour("1"), Behaviour::Unallocated);
    }

    #[test]
    fn echo_delay_and_erl() {
        let mut e = LineEcho::new(Duration::from_millis(10), 12.0);
        assert_eq!(e.delay_samples(), 80);
        // A single loud sample comes back 80 samples later, 12 dB down (at
        // the first tap, scaled by the energy normalisation).
        let mut rx = vec![0xD5u8; 160];
        rx[0] = linear_to_alaw(16000);
        let mut out = vec![0u8; 160];
        e.process(&rx, &mut out);
        let y: Vec<i16> = out.iter().map(|&a| alaw_to_linear(a)).collect();
        let peak = y
            .iter()
            .enumerate()
            .max_by_key(|(_, v)| v.unsigned_abs())
            .map(|(i, _)| i)
            .unwrap();
        assert_eq!(peak, 80);
        let energy: f64 = y.iter().map(|&v| f64::from(v) * f64::from(v)).sum();
        let x = f64::from(alaw_to_linear(rx[0]));
        let erl = 10.0 * (x * x / energy).log10();
        assert!((erl - 12.0).abs() < 0.3, "ERL {erl}");
    }
}
