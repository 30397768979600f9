//! Q.931 basic call control (ETSI EuroISDN) for one PRI D-channel, user
//! (CPE) or network side, sans-IO.
//!
//! [`Pri`] owns the Q.921 [`Link`] and the calls on it. Commands
//! (`setup`, `proceeding`, `alerting`, `progress`, `answer`, `hangup`,
//! `restart`) and D-channel frames (`handle_frame`) go in with `now`;
//! frames to send (`poll_transmit`), protocol-neutral [`PriEvent`]s
//! (`poll_event`) and the next deadline (`poll_timeout`) come out. Timers:
//! T303 (SETUP unanswered: resend once, then clear with cause 102), T305
//! (DISCONNECT unanswered: send RELEASE), T308 (RELEASE unanswered: resend
//! once, then free), T310 (CALL PROCEEDING without further progress:
//! DISCONNECT cause 102) and T309 (data link failure, EN 300 403 §5.8.8:
//! when the D-channel goes down, calls not yet active are cleared at once
//! with cause 41, active calls are kept for T309; if the link comes back in
//! time each kept call reports its state with STATUS (cause 31), else it is
//! cleared with cause 27). STATUS ENQUIRY is answered with STATUS; a STATUS
//! reporting the null state clears the call; RESTART is acknowledged.

use std::collections::{BTreeMap, VecDeque};
use std::time::{Duration, Instant};

use super::lapd::{Link, LinkConfig, LinkEvent, Side};
use crate::q931::{
    BearerCap, CallRef, Cause, ChannelId, Ie, Message, MsgType, PartyNumber, Presentation,
    Progress, Screening,
};

/// A call on this D-channel (local handle, not the call reference).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct CallId(pub u32);

/// Q.931 call states (ETSI numbering in the docs).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CallState {
    /// U1/N1: SETUP sent.
    CallInitiated,
    /// U3/N3: CALL PROCEEDING received.
    OutgoingProceeding,
    /// U4/N4: ALERTING received.
    CallDelivered,
    /// U6/N6: SETUP received, nothing answered yet.
    CallPresent,
    /// U7/N7: ALERTING sent.
    CallReceived,
    /// U8/N8: CONNECT sent.
    ConnectRequest,
    /// U9/N9: CALL PROCEEDING sent.
    IncomingProceeding,
    /// U10/N10: active.
    Active,
    /// U11/N12: DISCONNECT sent.
    DisconnectRequest,
    /// U19/N19: RELEASE sent.
    ReleaseRequest,
    /// U2/N2: SETUP ACKNOWLEDGE received, sending more digits (overlap sending).
    OverlapSending,
    /// U25/N25: SETUP ACKNOWLEDGE sent, receiving more digits (overlap receiving).
    OverlapReceiving,
}

impl CallState {
    /// The Q.931 call state value (for STATUS).
    pub fn value(self) -> u8 {
        match self {
            CallState::CallInitiated => 1,
            CallState::OutgoingProceeding => 3,
            CallState::CallDelivered => 4,
            CallState::CallPresent => 6,
            CallState::CallReceived => 7,
            CallState::ConnectRequest => 8,
            CallState::IncomingProceeding => 9,
            CallState::Active => 10,
            CallState::DisconnectRequest => 11,
            CallState::ReleaseRequest => 19,
            CallState::OverlapSending => 2,
            CallState::OverlapReceiving => 25,
        }
    }
}

/// What the upper layer (the call manager) hears, in the protocol-neutral style
/// of the call model.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PriEvent {
    /// D-channel up.
    LinkUp,
    /// D-channel down.
    LinkDown,
    /// An incoming call.
    Setup {
        /// Handle.
        call: CallId,
        /// B-channel offered (E1 timeslot).
        channel: Option<u8>,
        /// Exclusive channel indication.
        exclusive: bool,
        /// Calling party (with presentation/screening).
        calling: Option<PartyNumber>,
        /// Called number digits.
        called: String,
        /// Sending complete present.
        sending_complete: bool,
    },
    /// CALL PROCEEDING received; B-channel fixed.
    Proceeding {
        /// Handle.
        call: CallId,
        /// B-channel.
        channel: Option<u8>,
    },
    /// ALERTING received.
    Alerting {
        /// Handle.
        call: CallId,
        /// In-band tones available (progress indicator 1 or 8).
        inband: bool,
    },
    /// PROGRESS received.
    Progress {
        /// Handle.
        call: CallId,
        /// In-band information available.
        inband: bool,
    },
    /// CONNECT received (outgoing) or CONNECT ACKNOWLEDGE received (incoming).
    Answer {
        /// Handle.
        call: CallId,
    },
    /// The call is gone (Q.850 cause).
    Release {
        /// Handle.
        call: CallId,
        /// Cause value.
        cause: u8,
    },
    /// A RESTART was received and acknowledged, or our RESTART was acknowledged.
    Restarted {
        /// Channel, or None for the whole interface.
        channel: Option<u8>,
    },
    /// A D-channel message could not be decoded or had no place.
    ProtocolError(String),
    /// Overlap receiving: INFORMATION brought more called-number digits.
    Information {
        /// Handle.
        call: CallId,
        /// The new digits (append to the called number).
        digits: String,
        /// Sending complete present: no more digits will come.
        sending_complete: bool,
    },
    /// SETUP ACKNOWLEDGE received: send the rest of the number with
    /// [`Pri::information`].
    SetupAcknowledged {
        /// Handle.
        call: CallId,
    },
}

/// Call control errors from commands.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PriError {
    /// No such call.
    #[error("pri: no call {0:?}")]
    NoCall(CallId),
    /// Command not valid in this call state.
    #[error("pri: {cmd} not allowed in state {state:?}")]
    BadState {
        /// The command.
        cmd: &'static str,
        /// The current state.
        state: CallState,
    },
    /// No free B-channel.
    #[error("pri: no free B-channel")]
    NoChannel,
}

/// An outgoing call request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SetupRequest {
    /// Called number.
    pub called: String,
    /// Called type of number (0 unknown).
    pub called_ton: u8,
    /// Calling number, if any.
    pub calling: Option<String>,
    /// Calling type of number (0 unknown, 2 national ...).
    pub calling_ton: u8,
    /// Presentation of the calling number.
    pub presentation: Presentation,
    /// Screening indicator.
    pub screening: Screening,
    /// B-channel (None = first free).
    pub channel: Option<u8>,
    /// Exclusive channel.
    pub exclusive: bool,
    /// Bearer capability (speech, A-law by default).
    pub bearer: BearerCap,
    /// Include Sending complete (true by default; false = overlap sending,
    /// the rest follows in INFORMATION messages).
    pub sending_complete: bool,
}

impl SetupRequest {
    /// A call to `called` from `calling`, presentation allowed, user provided.
    pub fn new(called: &str, calling: Option<&str>) -> Self {
        Self {
            called: called.to_string(),
            called_ton: 0,
            calling: calling.map(str::to_string),
            calling_ton: 0,
            presentation: Presentation::Allowed,
            screening: Screening::UserNotScreened,
            channel: None,
            exclusive: false,
            bearer: BearerCap::speech_alaw(),
            sending_complete: true,
        }
    }
}

/// Q.931 timer values.
#[derive(Debug, Clone, Copy)]
pub struct Timers {
    /// T303 (4 s).
    pub t303: Duration,
    /// T305 (30 s).
    pub t305: Duration,
    /// T308 (4 s).
    pub t308: Duration,
    /// T310 (30 s).
    pub t310: Duration,
    /// T309 (90 s): how long an active call outlives a D-channel failure.
    pub t309: Duration,
}

impl Default for Timers {
    fn default() -> Self {
        Self {
            t303: Duration::from_secs(4),
            t305: Duration::from_secs(30),
            t308: Duration::from_secs(4),
            t310: Duration::from_secs(30),
            t309: Duration::from_secs(90),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Timer {
    T303,
    T305,
    T308,
    T310,
    T309,
}

#[derive(Debug)]
struct Call {
    cref: u16,
    ours: bool,
    state: CallState,
    channel: Option<u8>,
    timer: Option<(Timer, Instant)>,
    retried: bool,
    setup: Option<Message>,
    cause: u8,
}

/// One PRI D-channel: the LAPD link and Q.931 call control.
#[derive(Debug)]
pub struct Pri {
    side: Side,
    link: Link,
    timers: Timers,
    calls: BTreeMap<CallId, Call>,
    next_id: u32,
    next_cref: u16,
    events: VecDeque<PriEvent>,
    /// The B-channels this interface may use (E1 default: 1-15, 17-31).
    bchannels: Vec<u8>,
}

const ALL_BCHANNELS: [u8; 30] = [
    1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 17, 18, 19, 20, 21, 22, 23, 24, 25, 26, 27,
    28, 29, 30, 31,
];

fn inband(m: &Message) -> bool {
    m.ies
        .iter()
        .any(|i| matches!(i, Ie::Progress(p) if p.description == 1 || p.description == 8))
}

impl Pri {
    /// A D-channel for `side` with default timers.
    pub fn new(side: Side) -> Self {
        Self::with_config(side, LinkConfig::default(), Timers::default())
    }

    /// A D-channel with explicit link and call timers.
    pub fn with_config(side: Side, link: LinkConfig, timers: Timers) -> Self {
        Self {
            side,
            link: Link::new(side, link),
            timers,
            calls: BTreeMap::new(),
            next_id: 1,
            next_cref: 1,
            events: VecDeque::new(),
            bchannels: ALL_BCHANNELS.to_vec(),
        }
    }

    /// The data link.
    pub fn link(&self) -> &Link {
        &self.link
    }

    /// State of a call.
    pub fn state(&self, call: CallId) -> Option<CallState> {
        self.calls.get(&call).map(|c| c.state)
    }

    /// B-channel of a call.
    pub fn channel(&self, call: CallId) -> Option<u8> {
        self.calls.get(&call).and_then(|c| c.channel)
    }

    /// Number of calls.
    pub fn call_count(&self) -> usize {
        self.calls.len()
    }

    /// Starts the D-channel (SABME).
    pub fn start(&mut self, now: Instant) {
        self.link.start(now);
    }

    /// Restricts the B-channels this interface offers and accepts (a span
    /// configured with fewer than 30 B-channels). Incoming SETUPs naming a
    /// channel outside the set are treated as naming a busy channel.
    pub fn set_bchannels(&mut self, channels: &[u8]) {
        self.bchannels = channels.to_vec();
    }

    /// The configured B-channels.
    pub fn bchannels(&self) -> &[u8] {
        &self.bchannels
    }

    /// True when `channel` is held by a call (in any state).
    pub fn channel_busy(&self, channel: u8) -> bool {
        self.calls.values().any(|c| c.channel == Some(channel))
    }

    /// The calls on this interface: handle, state, B-channel and whether we
    /// originated it (for management views).
    pub fn calls(&self) -> Vec<(CallId, CallState, Option<u8>, bool)> {
        self.calls
            .iter()
            .map(|(id, c)| (*id, c.state, c.channel, c.ours))
            .collect()
    }

    fn free_channel(&self) -> Option<u8> {
        self.bchannels
            .iter()
            .copied()
            .find(|ch| !self.calls.values().any(|c| c.channel == Some(*ch)))
    }

    fn send(&mut self, id: CallId, mt: MsgType, ies: Vec<Ie>, now: Instant) {
        let Some(c) = self.calls.get(&id) else { return };
        let m = Message {
            ies,
            ..Message::new(
                CallRef {
                    value: c.cref,
                    flag: !c.ours,
                    len: 2,
                },
                mt,
            )
        };
        self.link.send(m.to_bytes(), now);
    }

    fn set_timer(&mut self, id: CallId, t: Option<Timer>, now: Instant) {
        let dur = |t: Timer, tm: &Timers| match t {
            Timer::T303 => tm.t303,
            Timer::T305 => tm.t305,
            Timer::T308 => tm.t308,
            Timer::T310 => tm.t310,
            Timer::T309 => tm.t309,
        };
        let tm = self.timers;
        if let Some(c) = self.calls.get_mut(&id) {
            c.timer = t.map(|t| (t, now + dur(t, &tm)));
            c.retried = false;
        }
    }

    /// Places a call: sends SETUP with sending complete.
    pub fn setup(&mut self, req: &SetupRequest, now: Instant) -> Result<CallId, PriError> {
        let channel = match req.channel {
            Some(c) => c,
            None => self.free_channel().ok_or(PriError::NoChannel)?,
        };
        let id = CallId(self.next_id);
        self.next_id += 1;
        let cref = self.next_cref;
        self.next_cref = if self.next_cref >= 0x7FFF {
            1
        } else {
            self.next_cref + 1
        };
        let mut ies = vec![
            Ie::BearerCapability(req.bearer.clone()),
            Ie::ChannelId(ChannelId::pri(channel, req.exclusive)),
        ];
        if let Some(cg) = &req.calling {
            ies.push(Ie::CallingParty(PartyNumber {
                ton: req.calling_ton,
                npi: 1,
                pres: Some((req.presentation, req.screening)),
                digits: cg.clone(),
            }));
        }
        ies.push(Ie::CalledParty(PartyNumber {
            ton: req.called_ton,
            npi: 1,
            pres: None,
            digits: req.called.clone(),
        }));
        if req.sending_complete {
            ies.push(Ie::SendingComplete);
        }
        let setup = Message {
            ies,
            ..Message::new(
                CallRef {
                    value: cref,
                    flag: false,
                    len: 2,
                },
                MsgType::Setup,
            )
        };
        self.calls.insert(
            id,
            Call {
                cref,
                ours: true,
                state: CallState::CallInitiated,
                channel: Some(channel),
                timer: None,
                retried: false,
                setup: Some(setup.clone()),
                cause: 0,
            },
        );
        self.link.send(setup.to_bytes(), now);
        self.set_timer(id, Some(Timer::T303), now);
        Ok(id)
    }

    fn incoming(&mut self, call: CallId, cmd: &'static str) -> Result<CallState, PriError> {
        let c = self.calls.get(&call).ok_or(PriError::NoCall(call))?;
        if c.ours {
            return Err(PriError::BadState {
                cmd,
                state: c.state,
            });
        }
        Ok(c.state)
    }

    fn chan_ie(&self, call: CallId) -> Vec<Ie> {
        self.channel(call)
            .map(|ch| vec![Ie::ChannelId(ChannelId::pri(ch, true))])
            .unwrap_or_default()
    }

    /// Sends CALL PROCEEDING for an incoming call (fixes the B-channel).
    pub fn proceeding(&mut self, call: CallId, now: Instant) -> Result<(), PriError> {
        let st = self.incoming(call, "proceeding")?;
        if !matches!(st, CallState::CallPresent | CallState::OverlapReceiving) {
            return Err(PriError::BadState {
                cmd: "proceeding",
                state: st,
            });
        }
        let ies = self.chan_ie(call);
        self.send(call, MsgType::CallProceeding, ies, now);
        self.set_state(call, CallState::IncomingProceeding);
        Ok(())
    }

    fn set_state(&mut self, call: CallId, s: CallState) {
        if let Some(c) = self.calls.get_mut(&call) {
            c.state = s;
        }
    }

    /// Sends ALERTING (with in-band progress when `inband`).
    pub fn alerting(&mut self, call: CallId, inband: bool, now: Instant) -> Result<(), PriError> {
        let st = self.incoming(call, "alerting")?;
        if !matches!(st, CallState::CallPresent | CallState::IncomingProceeding) {
            return Err(PriError::BadState {
                cmd: "alerting",
                state: st,
            });
        }
        let mut ies = if st == CallState::CallPresent {
            self.chan_ie(call)
        } else {
            Vec::new()
        };
        if inband {
            ies.push(Ie::Progress(Progress {
                coding: 0,
                location: self.location(),
                description: 8,
            }));
        }
        self.send(call, MsgType::Alerting, ies, now);
        self.set_state(call, CallState::CallReceived);
        Ok(())
    }

    /// Overlap receiving: answers a SETUP without Sending complete with
    /// SETUP ACKNOWLEDGE (fixing the B-channel); digits then arrive as
    /// [`PriEvent::Information`] until [`Pri::proceeding`].
    pub fn setup_ack(&mut self, call: CallId, now: Instant) -> Result<(), PriError> {
        let st = self.incoming(call, "setup_ack")?;
        if st != CallState::CallPresent {
            return Err(PriError::BadState {
                cmd: "setup_ack",
                state: st,
            });
        }
        let ies = self.chan_ie(call);
        self.send(call, MsgType::SetupAck, ies, now);
        self.set_state(call, CallState::OverlapReceiving);
        Ok(())
    }

    /// Overlap sending: more called-number digits in INFORMATION.
    pub fn information(
        &mut self,
        call: CallId,
        digits: &str,
        sending_complete: bool,
        now: Instant,
    ) -> Result<(), PriError> {
        let c = self.calls.get(&call).ok_or(PriError::NoCall(call))?;
        if !c.ours || c.state != CallState::OverlapSending {
            return Err(PriError::BadState {
                cmd: "information",
                state: c.state,
            });
        }
        let mut ies = vec![Ie::CalledParty(PartyNumber {
            ton: 0,
            npi: 1,
            pres: None,
            digits: digits.to_string(),
        })];
        if sending_complete {
            ies.push(Ie::SendingComplete);
        }
        self.send(call, MsgType::Information, ies, now);
        Ok(())
    }

    /// Sends PROGRESS with "in-band information available".
    pub fn progress(&mut self, call: CallId, now: Instant) -> Result<(), PriError> {
        let st = self.incoming(call, "progress")?;
        if !matches!(st, CallState::IncomingProceeding | CallState::CallReceived) {
            return Err(PriError::BadState {
                cmd: "progress",
                state: st,
            });
        }
        let ies = vec![Ie::Progress(Progress {
            coding: 0,
            location: self.location(),
            description: 8,
        })];
        self.send(call, MsgType::Progress, ies, now);
        Ok(())
    }

    /// Answers an incoming call (CONNECT).
    pub fn answer(&mut self, call: CallId, now: Instant) -> Result<(), PriError> {
        let st = self.incoming(call, "answer")?;
        if !matches!(
            st,
            CallState::CallPresent | CallState::IncomingProceeding | CallState::CallReceived
        ) {
            return Err(PriError::BadState {
                cmd: "answer",
                state: st,
            });
        }
        let ies = if st == CallState::CallPresent {
            self.chan_ie(call)
        } else {
            Vec::new()
        };
        self.send(call, MsgType::Connect, ies, now);
        self.set_state(call, CallState::ConnectRequest);
        Ok(())
    }

    fn location(&self) -> u8 {
        match self.side {
            Side::User => 0,
            Side::Network => 2,
        }
    }

    /// Clears a call with a Q.850 cause: RELEASE COMPLETE for an unanswered
    /// incoming SETUP, DISCONNECT otherwise.
    pub fn hangup(&mut self, call: CallId, cause: u8, now: Instant) -> Result<(), PriError> {
        let st = self.calls.get(&call).ok_or(PriError::NoCall(call))?.state;
        let ie = vec![Ie::Cause(Cause::new(cause, self.location()))];
        match st {
            CallState::CallPresent => {
                self.send(call, MsgType::ReleaseComplete, ie, now);
                self.calls.remove(&call);
            }
            CallState::DisconnectRequest | CallState::ReleaseRequest => {}
            _ => {
                if let Some(c) = self.calls.get_mut(&call) {
                    c.cause = cause;
                }
                self.send(call, MsgType::Disconnect, ie, now);
                self.set_state(call, CallState::DisconnectRequest);
                self.set_timer(call, Some(Timer::T305), now);
            }
        }
        Ok(())
    }

    /// Sends RESTART for one B-channel (or the interface when `None`).
    pub fn restart(&mut self, channel: Option<u8>, now: Instant) {
        let mut m = Message::new(CallRef::global(2), MsgType::Restart);
        if let Some(ch) = channel {
            m.ies.push(Ie::ChannelId(ChannelId::pri(ch, true)));
        }
        m.ies
            .push(Ie::RestartIndicator(if channel.is_some() { 0 } else { 7 }));
        self.link.send(m.to_bytes(), now);
    }

    /// A D-channel frame from the far end (no FCS).
    pub fn handle_frame(&mut self, frame: &[u8], now: Instant) {
        self.link.handle_frame(frame, now);
        self.drain_link(now);
    }

    fn drain_link(&mut self, now: Instant) {
        while let Some(ev) = self.link.poll_event() {
            match ev {
                LinkEvent::Established => {
                    self.link_restored(now);
                    self.events.push_back(PriEvent::LinkUp);
                }
                LinkEvent::Released => {
                    self.link_failed(now);
                    self.events.push_back(PriEvent::LinkDown);
                }
                LinkEvent::Error(_) => {}
                LinkEvent::Data(d) => match Message::parse(&d) {
                    Ok(m) => self.handle_message(m, now),
                    Err(e) => self
                        .events
                        .push_back(PriEvent::ProtocolError(e.to_string())),
                },
            }
        }
    }

    fn find(&self, cref: CallRef) -> Option<CallId> {
        // A message with flag set comes from the far end about a call we allocated.
        self.calls
            .iter()
            .find(|(_, c)| c.cref == cref.value && c.ours == cref.flag)
            .map(|(id, _)| *id)
    }

    /// DL-RELEASE indication (EN 300 403 §5.8.8): calls not in the active
    /// state are cleared internally (cause 41, temporary failure: nothing can
    /// be sent); active calls start T309 unless it already runs.
    fn link_failed(&mut self, now: Instant) {
        let ids: Vec<(CallId, CallState)> = self.calls.iter().map(|(i, c)| (*i, c.state)).collect();
        for (id, st) in ids {
            match st {
                CallState::Active => {
                    let running = matches!(
                        self.calls.get(&id).and_then(|c| c.timer),
                        Some((Timer::T309, _))
                    );
                    if !running {
                        self.set_timer(id, Some(Timer::T309), now);
                    }
                }
                // RELEASE already sent and announced: just free it.
                CallState::ReleaseRequest => {
                    self.calls.remove(&id);
                }
                _ => self.release_event(id, 41),
            }
        }
    }

    /// DL-ESTABLISH: T309 stops and each kept call tells the far end its
    /// state with STATUS (cause 31, normal unspecified).
    fn link_restored(&mut self, now: Instant) {
        let kept: Vec<(CallId, CallState)> = self
            .calls
            .iter()
            .filter(|(_, c)| matches!(c.timer, Some((Timer::T309, _))))
            .map(|(i, c)| (*i, c.state))
            .collect();
        for (id, st) in kept {
            self.set_timer(id, None, now);
            let ies = self.status_ies(31, st);
            self.send(id, MsgType::Status, ies, now);
        }
    }

    /// The IEs of a STATUS: `cause` and the call state (IE 0x14).
    fn status_ies(&self, cause: u8, st: CallState) -> Vec<Ie> {
        vec![
            Ie::Cause(Cause::new(cause, self.location())),
            Ie::Unknown {
                id: 0x14,
                data: vec![st.value()],
            },
        ]
    }

    fn release_event(&mut self, id: CallId, cause: u8) {
        self.calls.remove(&id);
        self.events.push_back(PriEvent::Release { call: id, cause });
    }

    fn reply_no_call(&mut self, m: &Message, mt: MsgType, cause: u8, now: Instant) {
        let r = Message::new(
            CallRef {
                value: m.cref.value,
                flag: !m.cref.flag,
                len: m.cref.len,
            },
            mt,
        )
        .with(Ie::Cause(Cause::new(cause, self.location())));
        self.link.send(r.to_bytes(), now);
    }

    fn handle_message(&mut self, m: Message, now: Instant) {
        if m.pd != crate::q931::PD_Q931 {
            return;
        }
        if m.cref.value == 0 {
            if m.msg_type == MsgType::Restart {
                let ch = m.channel_id().and_then(|c| c.channel);
                let affected: Vec<CallId> = self
                    .calls
                    .iter()
                    .filter(|(_, c)| ch.is_none() || c.channel == ch)
                    .map(|(id, _)| *id)
                    .collect();
                for id in affected {
                    self.release_event(id, 41);
                }
                let mut r = Message::new(
                    CallRef {
                        value: 0,
                        flag: true,
                        len: m.cref.len,
                    },
                    MsgType::RestartAck,
                );
                r.ies = m.ies.clone();
                self.link.send(r.to_bytes(), now);
                self.events.push_back(PriEvent::Restarted { channel: ch });
            } else if m.msg_type == MsgType::RestartAck {
                let ch = m.channel_id().and_then(|c| c.channel);
                self.events.push_back(PriEvent::Restarted { channel: ch });
            }
            return;
        }
        let cause = m.cause().map(|c| c.value).unwrap_or(16);
        let Some(id) = self.find(m.cref) else {
            match m.msg_type {
                MsgType::Setup if !m.cref.flag => self.incoming_setup(m, now),
                MsgType::ReleaseComplete => {}
                MsgType::Release => self.reply_no_call(&m, MsgType::ReleaseComplete, 81, now),
                MsgType::StatusEnquiry | MsgType::Status => {
                    if m.msg_type == MsgType::StatusEnquiry {
                        self.reply_no_call(&m, MsgType::ReleaseComplete, 81, now);
                    }
                }
                _ => self.reply_no_call(&m, MsgType::ReleaseComplete, 81, now),
            }
            return;
        };
        let st = self.calls.get(&id).map(|c| c.state);
        let Some(st) = st else { return };
        let update_channel = |s: &mut Self| {
            if let Some(ch) = m.channel_id().and_then(|c| c.channel) {
                if let Some(c) = s.calls.get_mut(&id) {
                    c.channel = Some(ch);
                }
            }
        };
        match m.msg_type {
            MsgType::SetupAck if st == CallState::CallInitiated => {
                update_channel(self);
                self.set_state(id, CallState::OverlapSending);
                self.set_timer(id, None, now);
                self.events
                    .push_back(PriEvent::SetupAcknowledged { call: id });
            }
            MsgType::CallProceeding
                if matches!(st, CallState::CallInitiated | CallState::OverlapSending) =>
            {
                update_channel(self);
                self.set_state(id, CallState::OutgoingProceeding);
                self.set_timer(id, Some(Timer::T310), now);
                let channel = self.channel(id);
                self.events
                    .push_back(PriEvent::Proceeding { call: id, channel });
            }
            MsgType::Alerting
                if matches!(
                    st,
                    CallState::CallInitiated
                        | CallState::OutgoingProceeding
                        | CallState::OverlapSending
                ) =>
            {
                update_channel(self);
                self.set_state(id, CallState::CallDelivered);
                self.set_timer(id, None, now);
                self.events.push_back(PriEvent::Alerting {
                    call: id,
                    inband: inband(&m),
                });
            }
            MsgType::Progress => {
                if st == CallState::OutgoingProceeding {
                    self.set_timer(id, None, now);
                }
                self.events.push_back(PriEvent::Progress {
                    call: id,
                    inband: inband(&m),
                });
            }
            MsgType::Connect
                if matches!(
                    st,
                    CallState::CallInitiated
                        | CallState::OutgoingProceeding
                        | CallState::OverlapSending
                        | CallState::CallDelivered
                ) =>
            {
                update_channel(self);
                self.set_state(id, CallState::Active);
                self.set_timer(id, None, now);
                self.send(id, MsgType::ConnectAck, Vec::new(), now);
                self.events.push_back(PriEvent::Answer { call: id });
            }
            MsgType::ConnectAck if st == CallState::ConnectRequest => {
                self.set_state(id, CallState::Active);
                self.events.push_back(PriEvent::Answer { call: id });
            }
            MsgType::Disconnect => {
                if st == CallState::DisconnectRequest {
                    // Clear collision: release.
                }
                if let Some(c) = self.calls.get_mut(&id) {
                    c.cause = cause;
                }
                let ie = vec![Ie::Cause(Cause::new(cause, self.location()))];
                self.send(id, MsgType::Release, ie, now);
                self.set_state(id, CallState::ReleaseRequest);
                self.set_timer(id, Some(Timer::T308), now);
                // The upper layer hears of the clearing now.
                self.events.push_back(PriEvent::Release { call: id, cause });
            }
            MsgType::Release => {
                self.send(id, MsgType::ReleaseComplete, Vec::new(), now);
                let announced = st == CallState::ReleaseRequest;
                self.calls.remove(&id);
                if !announced {
                    let cause = if st == CallState::DisconnectRequest {
                        m.cause().map(|c| c.value).unwrap_or(16)
                    } else {
                        cause
                    };
                    self.events.push_back(PriEvent::Release { call: id, cause });
                }
            }
            MsgType::ReleaseComplete => {
                let announced = st == CallState::ReleaseRequest;
                self.calls.remove(&id);
                if !announced {
                    self.events.push_back(PriEvent::Release { call: id, cause });
                }
            }
            MsgType::StatusEnquiry => {
                let ies = self.status_ies(30, st);
                self.send(id, MsgType::Status, ies, now);
            }
            MsgType::Status => {
                let far = m.ies.iter().find_map(|i| match i {
                    Ie::Unknown { id: 0x14, data } => data.first().map(|v| v & 0x3F),
                    _ => None,
                });
                if far == Some(0) {
                    let announced = st == CallState::ReleaseRequest;
                    self.calls.remove(&id);
                    if !announced {
                        self.events.push_back(PriEvent::Release { call: id, cause });
                    }
                }
            }
            MsgType::Information
                if matches!(st, CallState::OverlapReceiving | CallState::CallPresent) =>
            {
                let digits = m.called().map(|c| c.digits).unwrap_or_default();
                self.events.push_back(PriEvent::Information {
                    call: id,
                    digits,
                    sending_complete: m.sending_complete(),
                });
            }
            MsgType::Information | MsgType::Notify => {}
            _ => {
                // Message not compatible with the call state: answer with STATUS (cause 101).
                let ies = self.status_ies(101, st);
                self.send(id, MsgType::Status, ies, now);
            }
        }
    }

    fn incoming_setup(&mut self, m: Message, now: Instant) {
        let ch = m.channel_id();
        let requested = ch.as_ref().and_then(|c| c.channel);
        let exclusive = ch.as_ref().is_some_and(|c| c.exclusive);
        // Collision (glare): our own SETUP for this channel is still
        // unanswered. The network has priority (Q.931 5.2.3.1 / ETSI 300 102):
        // on the user side the incoming call takes the channel and our call
        // waits for the channel the network assigns in its first response.
        if self.side == Side::User {
            if let Some(c) = requested {
                let glare: Vec<CallId> = self
                    .calls
                    .iter()
                    .filter(|(_, k)| {
                        k.ours && k.channel == Some(c) && k.state == CallState::CallInitiated
                    })
                    .map(|(id, _)| *id)
                    .collect();
                for id in glare {
                    if let Some(k) = self.calls.get_mut(&id) {
                        k.channel = None;
                    }
                }
            }
        }
        let busy = |s: &Self, c: u8| {
            !s.bchannels.contains(&c) || s.calls.values().any(|k| k.channel == Some(c))
        };
        let channel = match requested {
            Some(c) if !busy(self, c) => Some(c),
            Some(_) if exclusive => None,
            _ => self.free_channel(),
        };
        let Some(channel) = channel else {
            // 44: requested channel not available; 34: no circuit.
            let cause = if exclusive { 44 } else { 34 };
            self.reply_no_call(&m, MsgType::ReleaseComplete, cause, now);
            return;
        };
        let id = CallId(self.next_id);
        self.next_id += 1;
        let called = m.called().map(|c| c.digits).unwrap_or_default();
        self.calls.insert(
            id,
            Call {
                cref: m.cref.value,
                ours: false,
                state: CallState::CallPresent,
                channel: Some(channel),
                timer: None,
                retried: false,
                setup: None,
                cause: 0,
            },
        );
        self.events.push_back(PriEvent::Setup {
            call: id,
            channel: Some(channel),
            exclusive,
            calling: m.calling(),
            called,
            sending_complete: m.sending_complete(),
        });
    }

    /// Fires expired link and call timers.
    pub fn handle_timeout(&mut self, now: Instant) {
        self.link.handle_timeout(now);
        self.drain_link(now);
        let due: Vec<(CallId, Timer, bool)> = self
            .calls
            .iter()
            .filter_map(|(id, c)| {
                c.timer
                    .filter(|(_, t)| now >= *t)
                    .map(|(k, _)| (*id, k, c.retried))
            })
            .collect();
        for (id, t, retried) in due {
            match t {
                Timer::T303 if !retried => {
                    if let Some(s) = self.calls.get(&id).and_then(|c| c.setup.clone()) {
                        self.link.send(s.to_bytes(), now);
                    }
                    self.set_timer(id, Some(Timer::T303), now);
                    if let Some(c) = self.calls.get_mut(&id) {
                        c.retried = true;
                    }
                }
                Timer::T303 => {
                    let ie = vec![Ie::Cause(Cause::new(102, self.location()))];
                    self.send(id, MsgType::ReleaseComplete, ie, now);
                    self.release_event(id, 102);
                }
                Timer::T310 => {
                    let ie = vec![Ie::Cause(Cause::new(102, self.location()))];
                    self.send(id, MsgType::Disconnect, ie, now);
                    self.set_state(id, CallState::DisconnectRequest);
                    self.set_timer(id, Some(Timer::T305), now);
                    if let Some(c) = self.calls.get_mut(&id) {
                        c.cause = 102;
                    }
                }
                Timer::T305 => {
                    let cause = self.calls.get(&id).map(|c| c.cause).unwrap_or(16);
                    let ie = vec![Ie::Cause(Cause::new(cause, self.location()))];
                    self.send(id, MsgType::Release, ie, now);
                    self.set_state(id, CallState::ReleaseRequest);
                    self.set_timer(id, Some(Timer::T308), now);
                    self.events.push_back(PriEvent::Release { call: id, cause });
                }
                Timer::T308 if !retried => {
                    let cause = self.calls.get(&id).map(|c| c.cause).unwrap_or(16);
                    let ie = vec![Ie::Cause(Cause::new(cause, self.location()))];
                    self.send(id, MsgType::Release, ie, now);
                    self.set_timer(id, Some(Timer::T308), now);
                    if let Some(c) = self.calls.get_mut(&id) {
                        c.retried = true;
                    }
                }
                Timer::T308 => {
                    // B-channel should go to maintenance; the call is freed.
                    self.calls.remove(&id);
                }
                // The link did not come back: cleared internally, cause 27
                // (destination out of order).
                Timer::T309 => self.release_event(id, 27),
            }
        }
    }

    /// Next frame to send on the D-channel.
    pub fn poll_transmit(&mut self) -> Option<Vec<u8>> {
        self.link.poll_transmit()
    }

    /// Next event.
    pub fn poll_event(&mut self) -> Option<PriEvent> {
        self.events.pop_front()
    }

    /// Earliest deadline (link or call timers).
    pub fn poll_timeout(&self) -> Option<Instant> {
        let calls = self
            .calls
            .values()
            .filter_map(|c| c.timer.map(|(_, t)| t))
            .min();
        match (self.link.poll_timeout(), calls) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }
}
