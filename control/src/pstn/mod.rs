//! The PSTN runtime: ISDN PRI spans as call legs for the call layer, sans-IO.
//!
//! [`Pstn`] owns, per configured span, one Q.921 + Q.931 instance
//! ([`crate::isdn::Pri`], user side by default, network side when configured)
//! and decides which B-channel each call uses. The call layer sees dial
//! groups and [`PstnCallId`]s, never call references or timeslots:
//!
//! - commands: [`Pstn::place_call`], [`Pstn::alert`], [`Pstn::progress`],
//!   [`Pstn::answer`], [`Pstn::release`];
//! - events ([`Pstn::poll_event`]): [`PstnEvent::Incoming`], `Proceeding`,
//!   `Alerting`, `Progress`, `Connected`, `Released { cause }` (Q.850);
//! - audio: A-law blocks per call ([`Pstn::read_audio`], [`Pstn::write_audio`])
//!   on the span's configured block size (default 160 samples = 20 ms).
//!
//! Run loop (the same contract as every sans-IO core here): feed D-channel
//! frames with [`Pstn::handle_frame`], call [`Pstn::handle_timeout`] when
//! [`Pstn::poll_timeout`] is due, drain [`Pstn::poll_transmit`] to the span's
//! D-channel and [`Pstn::poll_event`] to the call layer. [`Pstn::pump`] does
//! all of that against a [`drivers::span::Span`] in one call.
//!
//! Channel selection: outgoing calls hunt the group's spans in order, and
//! within a span the user side hunts from the highest B-channel down and the
//! network side from the lowest up, so that the two ends rarely collide. A
//! SETUP names its channel as preferred (the exchange may choose another,
//! which is then used) or exclusive, per span config. On glare the network
//! side wins (Q.931 5.2.3.1): our call moves to the channel the exchange
//! assigns. No free channel gives `Released { cause: 34 }`; no D-channel up
//! gives cause 38.
//!
//! [`exchange`] is the PSTN exchange simulator that plays the far end over a
//! simulated E1; [`config`] parses `[[pstn.span]]`; [`cause`] maps Q.850
//! causes to SIP status codes and back (RFC 3398).

pub mod cause;
pub mod config;
pub mod exchange;

use std::collections::{BTreeMap, VecDeque};
use std::time::Instant;

use drivers::span::{Alarms, Span, SpanError};
use drivers::{ChanId, SpanId};

use crate::isdn::{self, CallState, Pri, PriError, PriEvent, SetupRequest, Side};
use crate::q931::{BearerCap, Presentation, Screening};
use config::{ChannelSelection, PstnConfig, SpanConfig};

/// A PSTN call, unique across all spans of a [`Pstn`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize)]
pub struct PstnCallId(pub u32);

/// A calling party as Q.931 carries it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CallerId {
    /// Digits.
    pub number: String,
    /// Type of number (0 unknown, 1 international, 2 national, 4 subscriber).
    pub ton: u8,
    /// Presentation (restricted = the far end must not display it).
    pub presentation: Presentation,
    /// Screening indicator.
    pub screening: Screening,
}

impl CallerId {
    /// A user-provided, not screened number, presentation allowed.
    pub fn allowed(number: &str) -> Self {
        Self {
            number: number.to_string(),
            ton: 0,
            presentation: Presentation::Allowed,
            screening: Screening::UserNotScreened,
        }
    }

    /// The same number with presentation restricted.
    pub fn restricted(number: &str) -> Self {
        Self {
            presentation: Presentation::Restricted,
            ..Self::allowed(number)
        }
    }
}

/// Bearer service of an outgoing call.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Bearer {
    /// Speech (G.711 A-law), the default.
    #[default]
    Speech,
    /// 3.1 kHz audio (fax/modem), A-law.
    Audio3k1,
}

impl Bearer {
    fn cap(self) -> BearerCap {
        let mut c = BearerCap::speech_alaw();
        if self == Bearer::Audio3k1 {
            c.itc = 0x10;
        }
        c
    }
}

/// An outgoing call request from the call layer (`Dial(DAHDI/g1/number)`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlaceCall {
    /// Dial group.
    pub group: u16,
    /// Called number.
    pub called: String,
    /// Calling party, if any.
    pub calling: Option<CallerId>,
    /// Bearer service.
    pub bearer: Bearer,
}

impl PlaceCall {
    /// A speech call to `called` in `group`.
    pub fn new(group: u16, called: &str, calling: Option<CallerId>) -> Self {
        Self {
            group,
            called: called.to_string(),
            calling,
            bearer: Bearer::Speech,
        }
    }
}

/// What the PSTN runtime tells the call layer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PstnEvent {
    /// A span's D-channel came up.
    SpanUp {
        /// Span.
        span: SpanId,
    },
    /// A span's D-channel went down. Calls on it are kept (Q.931 keeps
    /// active calls across a data link failure); the runtime retries
    /// SABME every [`RELINK_INTERVAL`] until the link is back.
    SpanDown {
        /// Span.
        span: SpanId,
    },
    /// An inbound call; CALL PROCEEDING has been sent when the number is
    /// complete. Route `called` in `context`.
    Incoming {
        /// Call.
        id: PstnCallId,
        /// Span.
        span: SpanId,
        /// B-channel.
        channel: ChanId,
        /// Called number.
        called: String,
        /// Calling party, with presentation (honour `Restricted`).
        calling: Option<CallerId>,
        /// Dialplan context of the span.
        context: String,
        /// Sending complete was indicated.
        sending_complete: bool,
    },
    /// Overlap receiving: more digits of an inbound call's number. When
    /// `sending_complete`, CALL PROCEEDING has been sent; otherwise the call
    /// layer calls [`Pstn::proceeding`] once the dialplan has a match.
    Digits {
        /// Call.
        id: PstnCallId,
        /// The new digits.
        digits: String,
        /// The called number so far.
        called: String,
        /// No more digits will come.
        sending_complete: bool,
    },
    /// CALL PROCEEDING: the exchange accepted the SETUP on `channel`.
    Proceeding {
        /// Call.
        id: PstnCallId,
        /// B-channel (the exchange's choice).
        channel: ChanId,
    },
    /// ALERTING (the called party rings).
    Alerting {
        /// Call.
        id: PstnCallId,
        /// Ringback is in-band in the B-channel (early media).
        inband: bool,
    },
    /// PROGRESS.
    Progress {
        /// Call.
        id: PstnCallId,
        /// In-band information (tones/announcements) available.
        inband: bool,
    },
    /// Answered (outgoing: CONNECT; incoming: CONNECT ACKNOWLEDGE).
    Connected {
        /// Call.
        id: PstnCallId,
    },
    /// The call is gone.
    Released {
        /// Call.
        id: PstnCallId,
        /// Q.850 cause (16 normal, 17 busy, 19 no answer, 34 no circuit ...).
        cause: u8,
    },
}

/// Errors of commands (who caused it in each doc line).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum PstnError {
    /// Caller: no span in this dial group.
    #[error("pstn: no span in group {0}")]
    NoGroup(u16),
    /// Caller: unknown or already released call.
    #[error("pstn: no call {0:?}")]
    NoCall(PstnCallId),
    /// Caller: command not valid in the call state.
    #[error("pstn: {0}")]
    Pri(#[from] PriError),
    /// Caller: audio access failed (bad block length, no channel).
    #[error("pstn: audio: {0}")]
    Span(#[from] SpanError),
    /// Caller: the call has no B-channel yet.
    #[error("pstn: call {0:?} has no B-channel yet")]
    NoChannel(PstnCallId),
}

/// How long after a D-channel failure the runtime tries SABME again.
pub const RELINK_INTERVAL: std::time::Duration = std::time::Duration::from_secs(2);

struct SpanRt {
    cfg: SpanConfig,
    pri: Pri,
    up: bool,
    relink_at: Option<Instant>,
    alarms: Alarms,
    calls: BTreeMap<isdn::CallId, PstnCallId>,
}

#[derive(Debug, Clone)]
struct CallRec {
    span: usize,
    call: isdn::CallId,
    outgoing: bool,
    called: String,
    calling: Option<String>,
    connected: bool,
}

/// The PSTN runtime over all configured spans. See the module docs for the
/// run loop.
pub struct Pstn {
    spans: Vec<SpanRt>,
    calls: BTreeMap<PstnCallId, CallRec>,
    next: u32,
    events: VecDeque<PstnEvent>,
    tx: VecDeque<(SpanId, Vec<u8>)>,
}

impl std::fmt::Debug for Pstn {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pstn")
            .field("spans", &self.spans.len())
            .field("calls", &self.calls.len())
            .finish()
    }
}

impl Pstn {
    /// A runtime for every span of `cfg` (all drivers; the I/O edge decides
    /// how frames and audio reach each span).
    pub fn new(cfg: &PstnConfig) -> Self {
        Self::with_timers(cfg, isdn::LinkConfig::default(), isdn::Timers::default())
    }

    /// As [`Pstn::new`] with explicit Q.921 and Q.931 timers.
    pub fn with_timers(cfg: &PstnConfig, link: isdn::LinkConfig, timers: isdn::Timers) -> Self {
        let spans = cfg
            .spans
            .iter()
            .map(|s| {
                let mut pri = Pri::with_config(s.signalling.side(), link, timers);
                pri.set_bchannels(&s.bchannels);
                SpanRt {
                    cfg: s.clone(),
                    pri,
                    up: false,
                    relink_at: None,
                    alarms: Alarms::NONE,
                    calls: BTreeMap::new(),
                }
            })
            .collect();
        Self {
            spans,
            calls: BTreeMap::new(),
            next: 1,
            events: VecDeque::new(),
            tx: VecDeque::new(),
        }
    }

    /// Starts every D-channel (SABME).
    pub fn start(&mut self, now: Instant) {
        for s in &mut self.spans {
            s.pri.start(now);
        }
        self.collect_tx();
    }

    /// The span configs, in order.
    pub fn spans(&self) -> impl Iterator<Item = &SpanConfig> {
        self.spans.iter().map(|s| &s.cfg)
    }

    fn span_index(&self, span: SpanId) -> Option<usize> {
        self.spans.iter().position(|s| s.cfg.span == span)
    }

    /// True when the span's D-channel is established.
    pub fn span_up(&self, span: SpanId) -> bool {
        self.span_index(span).is_some_and(|i| self.spans[i].up)
    }

    /// Number of live calls.
    pub fn call_count(&self) -> usize {
        self.calls.len()
    }

    fn alloc_id(&mut self) -> PstnCallId {
        let id = PstnCallId(self.next);
        self.next = self.next.wrapping_add(1).max(1);
        id
    }

    fn hunt(&self, i: usize) -> Option<u8> {
        let s = &self.spans[i];
        let free = |c: &&u8| !s.pri.channel_busy(**c);
        match s.pri_side() {
            Side::User => s.cfg.bchannels.iter().rev().find(free).copied(),
            Side::Network => s.cfg.bchannels.iter().find(free).copied(),
        }
    }

    /// Places a call in `req.group`. The call always gets an id; when no
    /// span can take it, `Released` follows at once (cause 34 no circuit,
    /// 38 network out of order when no D-channel is up).
    pub fn place_call(&mut self, req: &PlaceCall, now: Instant) -> Result<PstnCallId, PstnError> {
        let members: Vec<usize> = (0..self.spans.len())
            .filter(|&i| self.spans[i].cfg.group == req.group)
            .collect();
        if members.is_empty() {
            return Err(PstnError::NoGroup(req.group));
        }
        let id = self.alloc_id();
        let mut any_up = false;
        for i in members {
            if !self.spans[i].up {
                continue;
            }
            any_up = true;
            let Some(ch) = self.hunt(i) else { continue };
            let s = &mut self.spans[i];
            let mut sr = SetupRequest::new(&req.called, None);
            if let Some(c) = &req.calling {
                sr.calling = Some(c.number.clone());
                sr.calling_ton = c.ton;
                sr.presentation = c.presentation;
                sr.screening = c.screening;
            }
            sr.channel = Some(ch);
            sr.exclusive = s.cfg.channel_selection == ChannelSelection::Exclusive;
            sr.bearer = req.bearer.cap();
            let call = s.pri.setup(&sr, now)?;
            s.calls.insert(call, id);
            self.calls.insert(
                id,
                CallRec {
                    span: i,
                    call,
                    outgoing: true,
                    called: req.called.clone(),
                    calling: req.calling.as_ref().map(|c| c.number.clone()),
                    connected: false,
                },
            );
            self.collect_tx();
            return Ok(id);
        }
        let cause = if any_up { 34 } else { 38 };
        self.events.push_back(PstnEvent::Released { id, cause });
        Ok(id)
    }

    fn rec(&self, id: PstnCallId) -> Result<(usize, isdn::CallId), PstnError> {
        self.calls
            .get(&id)
            .map(|c| (c.span, c.call))
            .ok_or(PstnError::NoCall(id))
    }

    /// Sends CALL PROCEEDING for an inbound call in overlap receiving (the
    /// number is complete for the dialplan). Complete SETUPs are proceeded
    /// automatically.
    pub fn proceeding(&mut self, id: PstnCallId, now: Instant) -> Result<(), PstnError> {
        let (i, c) = self.rec(id)?;
        self.spans[i].pri.proceeding(c, now)?;
        self.collect_tx();
        Ok(())
    }

    /// Sends ALERTING for an inbound call (`inband`: we play ringback).
    pub fn alert(&mut self, id: PstnCallId, inband: bool, now: Instant) -> Result<(), PstnError> {
        let (i, c) = self.rec(id)?;
        self.spans[i].pri.alerting(c, inband, now)?;
        self.collect_tx();
        Ok(())
    }

    /// Sends PROGRESS (in-band information available) for an inbound call.
    pub fn progress(&mut self, id: PstnCallId, now: Instant) -> Result<(), PstnError> {
        let (i, c) = self.rec(id)?;
        self.spans[i].pri.progress(c, now)?;
        self.collect_tx();
        Ok(())
    }

    /// Answers an inbound call (CONNECT); `Connected` follows on CONNECT ACK.
    pub fn answer(&mut self, id: PstnCallId, now: Instant) -> Result<(), PstnError> {
        let (i, c) = self.rec(id)?;
        self.spans[i].pri.answer(c, now)?;
        self.collect_tx();
        Ok(())
    }

    /// Clears a call with a Q.850 cause. `Released` follows when the far
    /// end confirms (or at once for an unanswered inbound SETUP).
    pub fn release(&mut self, id: PstnCallId, cause: u8, now: Instant) -> Result<(), PstnError> {
        let (i, c) = self.rec(id)?;
        let s = &mut self.spans[i];
        s.pri.hangup(c, cause, now)?;
        if s.pri.state(c).is_none() {
            // Rejected before any answer: gone now.
            s.calls.remove(&c);
            self.calls.remove(&id);
            self.events.push_back(PstnEvent::Released { id, cause });
        }
        self.collect_tx();
        Ok(())
    }

    /// The span and B-channel of a call, once known.
    pub fn channel(&self, id: PstnCallId) -> Option<(SpanId, ChanId)> {
        let c = self.calls.get(&id)?;
        let s = &self.spans[c.span];
        s.pri
            .channel(c.call)
            .map(|ch| (s.cfg.span, ChanId(u16::from(ch))))
    }

    /// The Q.931 state of a call.
    pub fn state(&self, id: PstnCallId) -> Option<CallState> {
        let c = self.calls.get(&id)?;
        self.spans[c.span].pri.state(c.call)
    }

    fn audio_chan(&self, id: PstnCallId) -> Result<ChanId, PstnError> {
        self.rec(id)?;
        self.channel(id)
            .map(|(_, c)| c)
            .ok_or(PstnError::NoChannel(id))
    }

    /// One received A-law block of the call's B-channel from `span` (the
    /// call's span), when a whole block is buffered.
    pub fn read_audio(
        &self,
        id: PstnCallId,
        span: &mut Span,
    ) -> Result<Option<Vec<u8>>, PstnError> {
        let ch = self.audio_chan(id)?;
        Ok(span.read_block(ch)?)
    }

    /// Queues one A-law block (exactly the block size) on the call's B-channel.
    pub fn write_audio(
        &self,
        id: PstnCallId,
        span: &mut Span,
        block: &[u8],
    ) -> Result<(), PstnError> {
        let ch = self.audio_chan(id)?;
        Ok(span.write_block(ch, block)?)
    }

    /// Drops the received audio buffered on the call's B-channel (stale
    /// samples from before the call), returning how many blocks went.
    pub fn flush_audio(&self, id: PstnCallId, span: &mut Span) -> Result<usize, PstnError> {
        let ch = self.audio_chan(id)?;
        let mut n = 0;
        while span.read_block(ch)?.is_some() {
            n += 1;
        }
        Ok(n)
    }

    /// A D-channel frame (no FCS) received on `span`.
    pub fn handle_frame(&mut self, span: SpanId, frame: &[u8], now: Instant) {
        if let Some(i) = self.span_index(span) {
            self.spans[i].pri.handle_frame(frame, now);
            self.drain(i, now);
        }
    }

    /// Fires due Q.921/Q.931 timers.
    pub fn handle_timeout(&mut self, now: Instant) {
        for i in 0..self.spans.len() {
            let s = &mut self.spans[i];
            if s.relink_at.is_some_and(|t| t <= now) {
                s.relink_at = None;
                if !s.up {
                    s.pri.start(now);
                }
            }
            if self.spans[i].pri.poll_timeout().is_some_and(|t| t <= now) {
                self.spans[i].pri.handle_timeout(now);
                self.drain(i, now);
            }
        }
    }

    /// The span's alarms as the card reports them (for `show spans`).
    pub fn set_alarms(&mut self, span: SpanId, alarms: Alarms) {
        if let Some(i) = self.span_index(span) {
            self.spans[i].alarms = alarms;
        }
    }

    /// Next D-channel frame to send, with its span.
    pub fn poll_transmit(&mut self) -> Option<(SpanId, Vec<u8>)> {
        self.collect_tx();
        self.tx.pop_front()
    }

    /// Next event for the call layer.
    pub fn poll_event(&mut self) -> Option<PstnEvent> {
        self.events.pop_front()
    }

    /// Earliest timer deadline over all spans.
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.spans
            .iter()
            .flat_map(|s| [s.pri.poll_timeout(), s.relink_at])
            .flatten()
            .min()
    }

    /// One run-loop step against a local span model: D-channel frames in,
    /// due timers, frames out, alarms.
    pub fn pump(&mut self, span: SpanId, port: &mut Span, now: Instant) {
        while let Some(f) = port.recv_frame() {
            self.handle_frame(span, &f, now);
        }
        self.handle_timeout(now);
        self.set_alarms(span, port.alarms());
        self.collect_tx();
        let mut keep = VecDeque::new();
        while let Some((s, f)) = self.tx.pop_front() {
            if s == span {
                port.send_frame(&f);
            } else {
                keep.push_back((s, f));
            }
        }
        self.tx = keep;
    }

    fn collect_tx(&mut self) {
        for s in &mut self.spans {
            while let Some(f) = s.pri.poll_transmit() {
                self.tx.push_back((s.cfg.span, f));
            }
        }
    }

    fn drain(&mut self, i: usize, now: Instant) {
        while let Some(ev) = self.spans[i].pri.poll_event() {
            self.on_pri_event(i, ev, now);
        }
        self.collect_tx();
    }

    fn on_pri_event(&mut self, i: usize, ev: PriEvent, now: Instant) {
        let span = self.spans[i].cfg.span;
        let id_of = |s: &SpanRt, c: isdn::CallId| s.calls.get(&c).copied();
        match ev {
            PriEvent::LinkUp => {
                self.spans[i].up = true;
                self.events.push_back(PstnEvent::SpanUp { span });
            }
            PriEvent::LinkDown => {
                self.spans[i].up = false;
                self.spans[i].relink_at = Some(now + RELINK_INTERVAL);
                self.events.push_back(PstnEvent::SpanDown { span });
            }
            PriEvent::Setup {
                call,
                channel,
                calling,
                called,
                sending_complete,
                ..
            } => {
                let Some(ch) = channel else { return };
                let id = self.alloc_id();
                let s = &mut self.spans[i];
                s.calls.insert(call, id);
                // Fix the channel at once so the exchange stops T303: CALL
                // PROCEEDING for a complete number, else SETUP ACKNOWLEDGE
                // and overlap receiving. Both are valid in CallPresent.
                if sending_complete {
                    let _ = s.pri.proceeding(call, now);
                } else {
                    let _ = s.pri.setup_ack(call, now);
                }
                let calling = calling.map(|p| {
                    let (presentation, screening) = p
                        .pres
                        .unwrap_or((Presentation::Allowed, Screening::UserNotScreened));
                    CallerId {
                        number: p.digits,
                        ton: p.ton,
                        presentation,
                        screening,
                    }
                });
                self.calls.insert(
                    id,
                    CallRec {
                        span: i,
                        call,
                        outgoing: false,
                        called: called.clone(),
                        calling: calling.as_ref().map(|c| c.number.clone()),
                        connected: false,
                    },
                );
                self.events.push_back(PstnEvent::Incoming {
                    id,
                    span,
                    channel: ChanId(u16::from(ch)),
                    called,
                    calling,
                    context: s.cfg.context.clone(),
                    sending_complete,
                });
            }
            PriEvent::Proceeding { call, channel } => {
                let Some(id) = id_of(&self.spans[i], call) else {
                    return;
                };
                let ch = channel.or_else(|| self.spans[i].pri.channel(call));
                if let Some(ch) = ch {
                    self.events.push_back(PstnEvent::Proceeding {
                        id,
                        channel: ChanId(u16::from(ch)),
                    });
                }
            }
            PriEvent::Alerting { call, inband } => {
                if let Some(id) = id_of(&self.spans[i], call) {
                    self.events.push_back(PstnEvent::Alerting { id, inband });
                }
            }
            PriEvent::Progress { call, inband } => {
                if let Some(id) = id_of(&self.spans[i], call) {
                    self.events.push_back(PstnEvent::Progress { id, inband });
                }
            }
            PriEvent::Answer { call } => {
                if let Some(id) = id_of(&self.spans[i], call) {
                    if let Some(r) = self.calls.get_mut(&id) {
                        r.connected = true;
                    }
                    self.events.push_back(PstnEvent::Connected { id });
                }
            }
            PriEvent::Release { call, cause } => {
                if let Some(id) = self.spans[i].calls.remove(&call) {
                    self.calls.remove(&id);
                    self.events.push_back(PstnEvent::Released { id, cause });
                }
            }
            PriEvent::Information {
                call,
                digits,
                sending_complete,
            } => {
                let Some(id) = id_of(&self.spans[i], call) else {
                    return;
                };
                let Some(r) = self.calls.get_mut(&id) else {
                    return;
                };
                r.called.push_str(&digits);
                let called = r.called.clone();
                if sending_complete {
                    let _ = self.spans[i].pri.proceeding(call, now);
                }
                self.events.push_back(PstnEvent::Digits {
                    id,
                    digits,
                    called,
                    sending_complete,
                });
            }
            PriEvent::Restarted { .. }
            | PriEvent::ProtocolError(_)
            | PriEvent::SetupAcknowledged { .. } => {}
        }
    }

    /// `show spans`: one row per span.
    pub fn show_spans(&self) -> Vec<SpanStatus> {
        self.spans
            .iter()
            .map(|s| {
                let in_use = s
                    .cfg
                    .bchannels
                    .iter()
                    .filter(|c| s.pri.channel_busy(**c))
                    .count();
                SpanStatus {
                    span: s.cfg.span.0,
                    driver: s.cfg.driver,
                    signalling: s.cfg.signalling,
                    group: s.cfg.group,
                    context: s.cfg.context.clone(),
                    dchannel_up: s.up,
                    alarms: alarm_names(s.alarms),
                    bchannels: s.cfg.bchannels.len(),
                    in_use,
                    calls: s.calls.len(),
                }
            })
            .collect()
    }

    /// `show channels`: one row per configured B-channel.
    pub fn show_channels(&self) -> Vec<ChannelStatus> {
        let mut out = Vec::new();
        for (i, s) in self.spans.iter().enumerate() {
            let calls = s.pri.calls();
            for &ch in &s.cfg.bchannels {
                let holder = calls.iter().find(|(_, _, c, _)| *c == Some(ch));
                let rec = holder.and_then(|(cid, ..)| {
                    s.calls
                        .get(cid)
                        .and_then(|id| self.calls.get(id).map(|r| (*id, r)))
                });
                out.push(ChannelStatus {
                    span: s.cfg.span.0,
                    channel: u16::from(ch),
                    state: match holder {
                        None => "idle".into(),
                        Some((_, st, _, _)) => format!("{st:?}"),
                    },
                    call: rec.map(|(id, _)| id),
                    direction: rec.map(|(_, r)| if r.outgoing { "out" } else { "in" }),
                    called: rec.map(|(_, r)| r.called.clone()),
                    calling: rec.and_then(|(_, r)| r.calling.clone()),
                    connected: rec.is_some_and(|(_, r)| r.connected && r.span == i),
                });
            }
        }
        out
    }
}

impl SpanRt {
    fn pri_side(&self) -> Side {
        self.cfg.signalling.side()
    }
}

fn alarm_names(a: Alarms) -> Vec<&'static str> {
    [
        (Alarms::LOS, "LOS"),
        (Alarms::LOF, "LOF"),
        (Alarms::AIS, "AIS"),
        (Alarms::RAI, "RAI"),
    ]
    .into_iter()
    .filter(|(b, _)| a.contains(*b))
    .map(|(_, n)| n)
    .collect()
}

/// A `show spans` row.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct SpanStatus {
    /// Span number.
    pub span: u16,
    /// Card backend.
    pub driver: config::Driver,
    /// PRI role.
    pub signalling: config::Signalling,
    /// Dial group.
    pub group: u16,
    /// Inbound context.
    pub context: String,
    /// D-channel (Q.921) established.
    pub dchannel_up: bool,
    /// Active alarms (LOS, LOF, AIS, RAI); empty = OK.
    pub alarms: Vec<&'static str>,
    /// Configured B-channels.
    pub bchannels: usize,
    /// B-channels held by a call.
    pub in_use: usize,
    /// Calls known to the call layer.
    pub calls: usize,
}

/// A `show channels` row.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct ChannelStatus {
    /// Span number.
    pub span: u16,
    /// B-channel (timeslot).
    pub channel: u16,
    /// `idle` or the Q.931 call state holding it.
    pub state: String,
    /// The call on it.
    pub call: Option<PstnCallId>,
    /// `in` or `out`.
    pub direction: Option<&'static str>,
    /// Called number.
    pub called: Option<String>,
    /// Calling number.
    pub calling: Option<String>,
    /// Answered.
    pub connected: bool,
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn pair() -> (Pstn, Pstn, Instant) {
        let mut cpe = PstnConfig::default();
        cpe.spans.push(SpanConfig::e1(1, 1, "from-pstn"));
        let mut net = cpe.clone();
        net.spans[0].signalling = config::Signalling::PriNet;
        let t0 = Instant::now();
        let mut a = Pstn::new(&cpe);
        let mut b = Pstn::new(&net);
        a.start(t0);
        b.start(t0);
        (a, b, t0)
    }

    /// Direct D-channel wiring (no E1), a few ms per hop.
    fn shuttle(a: &mut Pstn, b: &mut Pstn, now: Instant) {
        for _ in 0..8 {
            while let Some((_, f)) = a.poll_transmit() {
                b.handle_frame(SpanId(1), &f, now);
            }
            while let Some((_, f)) = b.poll_transmit() {
                a.handle_frame(SpanId(1), &f, now);
            }
        }
    }

    fn events(p: &mut Pstn) -> Vec<PstnEvent> {
        std::iter::from_fn(|| p.poll_event()).collect()
    }

    #[test]
    fn unknown_group_and_link_down() {
        let (mut a, _, t0) = pair();
        assert_eq!(
            a.place_call(&PlaceCall::new(7, "1", None), t0),
            Err(PstnError::NoGroup(7))
        );
        let id = a.place_call(&PlaceCall::new(1, "1", None), t0).unwrap();
        assert!(events(&mut a).contains(&PstnEvent::Released { id, cause: 38 }));
        assert!(matches!(a.answer(id, t0), Err(PstnError::NoCall(_))));
    }

    #[test]
    fn hunting_directions_and_glare() {
        let (mut a, mut b, t0) = pair();
        shuttle(&mut a, &mut b, t0);
        assert!(a.span_up(SpanId(1)) && b.span_up(SpanId(1)));
        events(&mut a);
        events(&mut b);
        // Both sides pick channel 31 / 1 first: no glare by construction.
        let ua = a.place_call(&PlaceCall::new(1, "100", None), t0).unwrap();
        assert_eq!(a.channel(ua), Some((SpanId(1), ChanId(31))));
        let nb = b.place_call(&PlaceCall::new(1, "200", None), t0).unwrap();
        assert_eq!(b.channel(nb), Some((SpanId(1), ChanId(1))));
        // Forced glare on channel 5: both SETUPs cross on the wire.
        let t = t0 + Duration::from_millis(10);
        shuttle(&mut a, &mut b, t);
        events(&mut a);
        events(&mut b);
        let s = &mut a.spans[0];
        let mut r = SetupRequest::new("300", None);
        r.channel = Some(5);
        let uc = s.pri.setup(&r, t).unwrap();
        let uid = a.alloc_id();
        a.spans[0].calls.insert(uc, uid);
        a.calls.insert(
            uid,
            CallRec {
                span: 0,
                call: uc,
                outgoing: true,
                called: "300".into(),
                calling: None,
                connected: false,
            },
        );
        let mut r = SetupRequest::new("400", None);
        r.channel = Some(5);
        r.exclusive = true;
        let nc = b.spans[0].pri.setup(&r, t).unwrap();
        // Collect both SETUPs before delivering either.
        let fa: Vec<_> = std::iter::from_fn(|| a.poll_transmit()).collect();
        let fb: Vec<_> = std::iter::from_fn(|| b.poll_transmit()).collect();
        for (_, f) in fa {
            b.handle_frame(SpanId(1), &f, t);
        }
        for (_, f) in fb {
            a.handle_frame(SpanId(1), &f, t);
        }
        shuttle(&mut a, &mut b, t);
        // The network's call keeps channel 5 on both ends.
        assert_eq!(b.spans[0].pri.channel(nc), Some(5));
        let ev = events(&mut a);
        let inc = ev
            .iter()
            .find_map(|e| match e {
                PstnEvent::Incoming { id, channel, .. } => Some((*id, *channel)),
                _ => None,
            })
            .unwrap();
        assert_eq!(inc.1, ChanId(5));
        // Our call moved to the channel the network assigned.
        let moved = ev
            .iter()
            .find_map(|e| match e {
                PstnEvent::Proceeding { id, channel } if *id == uid => Some(*channel),
                _ => None,
            })
            .expect("our glared call proceeds on another channel");
        assert_ne!(moved, ChanId(5));
        assert_eq!(a.channel(uid), Some((SpanId(1), moved)));
        let chans = a.show_channels();
        assert_eq!(chans.len(), 30);
        assert_eq!(chans.iter().filter(|c| c.state != "idle").count(), 4);
    }
}
