//! The sans-IO H.225.0 call: one call on one TCP connection, either direction.
//!
//! Run loop contract (as for every Tandem protocol core): feed stream bytes
//! with [`H323Call::handle_bytes`], local commands with the command methods
//! (`setup`, `proceeding`, `alerting`, `progress`, `connect`, `release`,
//! `send_dtmf`), expired timers with [`H323Call::handle_timeout`]; after each,
//! drain [`H323Call::poll_transmit`] (TPKT frames for the socket) and
//! [`H323Call::poll_event`], then sleep until [`H323Call::poll_timeout`].
//! The call never reads the clock and never touches a socket.
//!
//! Media is negotiated with fastStart only: the caller offers
//! [`CallConfig::codecs`]; the callee picks the first offered codec it also
//! allows. A callee built with no codecs (an interworking function that must
//! first ask the far side) defers that choice: it reads the offer with
//! [`H323Call::offer`] and answers later with [`H323Call::answer_media`],
//! before or with Connect. H.245 tunnelling (when both sides set `h245Tunnelling`) carries
//! TerminalCapabilitySet/MasterSlaveDetermination and their Acks, and
//! UserInputIndication for DTMF.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use super::cause::reason_to_q850;
use super::h225::{
    protocol_identifier, AliasAddress, Body, ConnectUuie, EndpointType, NullChoice, ProgressUuie,
    ProgressingUuie, ReleaseCompleteUuie, SetupUuie, StatusUuie, UserInformation,
};
use super::h245::{
    decode_fast_start, fast_start_accepted, fast_start_answer, fast_start_offer, Codec,
    H245Message, OpenLogicalChannel,
};
use super::message::H225Message;
use super::per::Extensions;
use super::tpkt::Deframer;
use super::H323Error;
use crate::q931::{
    BearerCap, CallRef, Cause, Ie, Message, MsgType, PartyNumber, Presentation, Screening,
};

/// T303: Setup sent, nothing back.
pub const T303: Duration = Duration::from_secs(4);
/// T310: Call Proceeding received, no Alerting/Connect.
pub const T310: Duration = Duration::from_secs(30);
/// T301: Alerting received, no Connect.
pub const T301: Duration = Duration::from_secs(180);

/// Q.931 Facility message type.
const MT_FACILITY: u8 = 0x62;
/// Call state IE.
const IE_CALL_STATE: u16 = 0x14;

/// Per-call configuration.
#[derive(Debug, Clone)]
pub struct CallConfig {
    /// Where Tandem receives RTP for this call (RTCP is the next port).
    pub local_rtp: SocketAddr,
    /// Codecs Tandem offers (as caller) or accepts (as callee), in preference order.
    pub codecs: Vec<Codec>,
    /// Offer H.245 tunnelling.
    pub tunnelling: bool,
    /// H.225.0 version to announce (4 is what most gateways expect).
    pub version: u64,
}

/// Negotiated media.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Media {
    /// The codec.
    pub codec: Codec,
    /// Where to send RTP (None when the peer did not say).
    pub remote_rtp: Option<SocketAddr>,
}

/// What the call reports to the B2BUA.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CallEvent {
    /// A Setup arrived (callee side).
    Incoming {
        /// Called number (Q.931 IE, else first destinationAddress alias).
        called: Option<String>,
        /// Calling number (Q.931 IE, else first sourceAddress alias).
        calling: Option<String>,
        /// Display IE.
        display: Option<String>,
        /// Presentation restricted (Q.931 octet 3a or presentationIndicator).
        restricted: bool,
        /// Codecs in the fastStart offer, in the caller's order.
        offered: Vec<Codec>,
        /// The media Tandem chose from the offer.
        media: Option<Media>,
    },
    /// Call Proceeding received.
    Proceeding,
    /// Alerting received (with media if fastStart was answered by now).
    Alerting(Option<Media>),
    /// Progress received (early media).
    Progress(Option<Media>),
    /// Connect received.
    Connected(Option<Media>),
    /// Release Complete received or sent, or the call failed; Q.850 cause.
    Released {
        /// Q.850 cause value.
        cause: u8,
        /// True when the remote side released.
        remote: bool,
    },
    /// A DTMF digit from UserInputIndication.
    Dtmf {
        /// 0-9 # * A-D.
        digit: char,
        /// Duration in ms, when given.
        duration: Option<u16>,
    },
}

/// Call states (Q.931 names; the number is the Q.931 call state value).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum State {
    /// U0: nothing yet.
    Null,
    /// U1: Setup sent, expecting Call Proceeding/Alerting/Connect.
    ExpectProceeding,
    /// U3: Call Proceeding received, expecting Alerting/Connect.
    ExpectAlerting,
    /// U4: Alerting received, expecting Connect.
    ExpectConnect,
    /// U6: Setup received, the B2BUA decides.
    Present,
    /// U9: Call Proceeding sent.
    IncomingProceeding,
    /// U7: Alerting sent.
    Received,
    /// U10: connected.
    Active,
    /// Released (Release Complete sent or received).
    Released,
}

impl State {
    fn q931(self) -> u8 {
        match self {
            State::Null | State::Released => 0,
            State::ExpectProceeding => 1,
            State::ExpectAlerting => 3,
            State::ExpectConnect => 4,
            State::Present => 6,
            State::Received => 7,
            State::IncomingProceeding => 9,
            State::Active => 10,
        }
    }

    fn name(self) -> &'static str {
        match self {
            State::Null => "Null",
            State::ExpectProceeding => "ExpectProceeding",
            State::ExpectAlerting => "ExpectAlerting",
            State::ExpectConnect => "ExpectConnect",
            State::Present => "Present",
            State::IncomingProceeding => "IncomingProceeding",
            State::Received => "Received",
            State::Active => "Active",
            State::Released => "Released",
        }
    }
}

/// One H.225.0 call.
#[derive(Debug)]
pub struct H323Call {
    cfg: CallConfig,
    outgoing: bool,
    state: State,
    crv: u16,
    call_id: [u8; 16],
    conf_id: [u8; 16],
    deframer: Deframer,
    tx: VecDeque<Vec<u8>>,
    events: VecDeque<CallEvent>,
    timer: Option<Instant>,
    media: Option<Media>,
    /// Callee: the fastStart answer OLCs, sent in every reply.
    answer: Option<Vec<Vec<u8>>>,
    /// Callee: the caller's fastStart proposals.
    offer: Vec<OpenLogicalChannel>,
    /// Tunnelling agreed (both sides set h245Tunnelling).
    tunnel: bool,
    /// Tunnelled H.245 messages waiting for the next outgoing message.
    h245_out: Vec<Vec<u8>>,
    tcs_sent: bool,
    sent_proceeding: bool,
    msd_number: u32,
}

impl H323Call {
    /// A call Tandem places. `crv`, `call_id` and `conf_id` come from the
    /// caller's random source (this core has none).
    pub fn outgoing(cfg: CallConfig, crv: u16, call_id: [u8; 16], conf_id: [u8; 16]) -> Self {
        Self::new(cfg, true, crv & 0x7FFF, call_id, conf_id)
    }

    /// A call arriving on an accepted connection; `msd_seed` seeds the
    /// master/slave determination number.
    pub fn incoming(cfg: CallConfig, msd_seed: u32) -> Self {
        let mut c = Self::new(cfg, false, 0, [0; 16], [0; 16]);
        c.msd_number = msd_seed & 0xFF_FFFF;
        c
    }

    fn new(
        cfg: CallConfig,
        outgoing: bool,
        crv: u16,
        call_id: [u8; 16],
        conf_id: [u8; 16],
    ) -> Self {
        Self {
            msd_number: u32::from_be_bytes([0, call_id[0], call_id[1], call_id[2]]),
            cfg,
            outgoing,
            state: State::Null,
            crv,
            call_id,
            conf_id,
            deframer: Deframer::new(),
            tx: VecDeque::new(),
            events: VecDeque::new(),
            timer: None,
            media: None,
            answer: None,
            offer: Vec::new(),
            tunnel: false,
            h245_out: Vec::new(),
            tcs_sent: false,
            sent_proceeding: false,
        }
    }

    /// The current state.
    pub fn state(&self) -> State {
        self.state
    }

    /// The negotiated media, once known.
    pub fn media(&self) -> Option<Media> {
        self.media
    }

    /// Callee: the caller's fastStart proposals (empty before Setup or
    /// without fastStart).
    pub fn offer(&self) -> &[OpenLogicalChannel] {
        &self.offer
    }

    /// Callee: answers the fastStart offer now with the first offered codec
    /// in `allowed`, Tandem receiving RTP at `local_rtp`. The answer rides on
    /// every later reply (Call Proceeding, Alerting, Progress, Connect).
    /// Returns the agreed media, or `None` when no offered codec is allowed.
    pub fn answer_media(
        &mut self,
        allowed: &[Codec],
        local_rtp: SocketAddr,
    ) -> Result<Option<Media>, H323Error> {
        self.guard(
            "answer_media",
            !self.outgoing
                && matches!(
                    self.state,
                    State::Present | State::IncomingProceeding | State::Received
                ),
        )?;
        self.cfg.local_rtp = local_rtp;
        let Some((codec, remote, ans)) = fast_start_answer(&self.offer, allowed, local_rtp) else {
            return Ok(None);
        };
        self.media = Some(Media {
            codec,
            remote_rtp: remote,
        });
        self.answer = Some(ans);
        Ok(self.media)
    }

    /// True once Release Complete was sent or received.
    pub fn is_released(&self) -> bool {
        self.state == State::Released
    }

    /// Next TPKT frame to write to the socket.
    pub fn poll_transmit(&mut self) -> Option<Vec<u8>> {
        self.tx.pop_front()
    }

    /// Next event for the B2BUA.
    pub fn poll_event(&mut self) -> Option<CallEvent> {
        self.events.pop_front()
    }

    /// When [`H323Call::handle_timeout`] must be called next.
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.timer
    }

    /// A timer expired: T303/T310/T301 release the call with cause 102
    /// (recovery on timer expiry).
    pub fn handle_timeout(&mut self, now: Instant) {
        if self.timer.is_some_and(|t| now >= t) {
            self.timer = None;
            if matches!(
                self.state,
                State::ExpectProceeding | State::ExpectAlerting | State::ExpectConnect
            ) {
                self.send_release(102);
            }
        }
    }

    /// The TCP connection closed: the call ends (cause 41 temporary failure)
    /// unless it already had.
    pub fn handle_closed(&mut self) {
        if self.state != State::Released {
            self.state = State::Released;
            self.events.push_back(CallEvent::Released {
                cause: 41,
                remote: true,
            });
        }
    }

    fn guard(&self, what: &'static str, ok: bool) -> Result<(), H323Error> {
        if ok {
            Ok(())
        } else {
            Err(H323Error::ApiMisuse(what, self.state.name()))
        }
    }

    /// Sends Setup (caller side).
    pub fn setup(
        &mut self,
        calling: &str,
        called: &str,
        display: Option<&str>,
        restricted: bool,
        now: Instant,
    ) -> Result<(), H323Error> {
        self.guard("setup", self.outgoing && self.state == State::Null)?;
        let pres = if restricted {
            Presentation::Restricted
        } else {
            Presentation::Allowed
        };
        let mut bearer = BearerCap::speech_alaw();
        if self.cfg.codecs.first() == Some(&Codec::Pcmu) {
            bearer.layer1 = Some(2);
        }
        let mut q = Message::new(self.cref(), MsgType::Setup).with(Ie::BearerCapability(bearer));
        if let Some(d) = display {
            q = q.with(Ie::Display(d.to_string()));
        }
        if !calling.is_empty() {
            q = q.with(Ie::CallingParty(PartyNumber {
                ton: 0,
                npi: 1,
                pres: Some((pres, Screening::UserNotScreened)),
                digits: calling.to_string(),
            }));
        }
        q = q.with(Ie::CalledParty(PartyNumber {
            ton: 0,
            npi: 1,
            pres: None,
            digits: called.to_string(),
        }));
        let mut s = SetupUuie {
            protocol_identifier: protocol_identifier(self.cfg.version),
            h245_address: None,
            source_address: (!calling.is_empty())
                .then(|| vec![AliasAddress::DialledDigits(calling.to_string())]),
            source_info: EndpointType::tandem(),
            destination_address: Some(vec![AliasAddress::DialledDigits(called.to_string())]),
            dest_call_signal_address: None,
            dest_extra_call_info: None,
            dest_extra_crv: None,
            active_mc: false,
            conference_id: self.conf_id,
            conference_goal: NullChoice::Root(0),
            call_services: None,
            call_type: NullChoice::Root(0),
            ext: Extensions::default(),
        };
        s.set_media_wait_and_overlap(false, false);
        let mut u = UserInformation::new(Body::Setup(Box::new(s)), self.cfg.tunnelling);
        let offer = fast_start_offer(&self.cfg.codecs, self.cfg.local_rtp);
        u.set_common(&self.call_id, (!offer.is_empty()).then_some(&offer[..]));
        if restricted {
            u.set_presentation(1);
        }
        self.send(q, u);
        self.state = State::ExpectProceeding;
        self.timer = Some(now + T303);
        Ok(())
    }

    /// Sends Call Proceeding (callee side).
    pub fn proceeding(&mut self, _now: Instant) -> Result<(), H323Error> {
        self.guard("proceeding", self.state == State::Present)?;
        let body = Body::CallProceeding(self.progressing());
        self.reply(MsgType::CallProceeding, body);
        self.sent_proceeding = true;
        self.state = State::IncomingProceeding;
        Ok(())
    }

    /// Sends Alerting (callee side).
    pub fn alerting(&mut self, _now: Instant) -> Result<(), H323Error> {
        self.guard(
            "alerting",
            matches!(self.state, State::Present | State::IncomingProceeding),
        )?;
        let body = Body::Alerting(self.progressing());
        self.reply(MsgType::Alerting, body);
        self.state = State::Received;
        Ok(())
    }

    /// Sends Progress with in-band information (callee side, early media).
    pub fn progress(&mut self, _now: Instant) -> Result<(), H323Error> {
        self.guard(
            "progress",
            matches!(
                self.state,
                State::Present | State::IncomingProceeding | State::Received
            ),
        )?;
        let body = Body::Progress(ProgressUuie {
            protocol_identifier: protocol_identifier(self.cfg.version),
            destination_info: EndpointType::tandem(),
            h245_address: None,
            call_identifier: self.call_id,
            fast_start: None,
            ext: Extensions::default(),
        });
        self.reply(MsgType::Progress, body);
        Ok(())
    }

    /// Sends Connect (callee side).
    pub fn connect(&mut self, _now: Instant) -> Result<(), H323Error> {
        self.guard(
            "connect",
            matches!(
                self.state,
                State::Present | State::IncomingProceeding | State::Received
            ),
        )?;
        let body = Body::Connect(ConnectUuie {
            protocol_identifier: protocol_identifier(self.cfg.version),
            h245_address: None,
            destination_info: EndpointType::tandem(),
            conference_id: self.conf_id,
            ext: Extensions::default(),
        });
        self.reply(MsgType::Connect, body);
        self.state = State::Active;
        Ok(())
    }

    /// Sends Release Complete with a Q.850 cause; the call is over.
    pub fn release(&mut self, cause: u8, _now: Instant) -> Result<(), H323Error> {
        self.guard(
            "release",
            !matches!(self.state, State::Null | State::Released),
        )?;
        self.send_release(cause);
        Ok(())
    }

    /// Sends a DTMF digit as a tunnelled UserInputIndication `signal`.
    pub fn send_dtmf(&mut self, digit: char, duration_ms: Option<u16>) -> Result<(), H323Error> {
        self.guard("send_dtmf (needs H.245 tunnelling)", self.tunnel)?;
        self.h245_out.push(
            H245Message::UserInputSignal {
                signal: digit,
                duration: duration_ms,
            }
            .encode(),
        );
        self.flush_h245();
        Ok(())
    }

    /// Feeds bytes read from the TCP stream. Malformed input releases the
    /// call (cause 95, invalid message) and returns the error.
    pub fn handle_bytes(&mut self, data: &[u8], now: Instant) -> Result<(), H323Error> {
        self.deframer.handle(data);
        loop {
            let p = match self.deframer.poll_payload() {
                Ok(Some(p)) => p,
                Ok(None) => return Ok(()),
                Err(e) => {
                    self.fail(95);
                    return Err(e.into());
                }
            };
            match H225Message::parse(&p) {
                Ok(m) => self.handle_message(m, now),
                Err(e) => {
                    self.fail(95);
                    return Err(e);
                }
            }
        }
    }

    fn fail(&mut self, cause: u8) {
        if !matches!(self.state, State::Null | State::Released) {
            self.send_release(cause);
        } else if self.state == State::Null {
            self.state = State::Released;
            self.events.push_back(CallEvent::Released {
                cause,
                remote: false,
            });
        }
    }

    fn handle_message(&mut self, m: H225Message, now: Instant) {
        if self.state == State::Released {
            return;
        }
        let Some(u) = m.uuie.as_ref() else {
            if m.q931.msg_type == MsgType::ReleaseComplete {
                self.remote_release(m.q931.cause().map(|c| c.value), None);
            }
            return;
        };
        self.tunnel_in(u);
        if !self.outgoing && m.q931.msg_type == MsgType::Setup {
            self.incoming_setup(&m, u);
            return;
        }
        if self.outgoing && self.media.is_none() {
            if let Ok(Some(fs)) = u.fast_start() {
                if let Some((codec, rtp)) = fast_start_accepted(&decode_fast_start(&fs)) {
                    self.media = Some(Media {
                        codec,
                        remote_rtp: Some(rtp),
                    });
                }
            }
        }
        match (&u.body, self.outgoing) {
            (Body::CallProceeding(_), true) if self.state == State::ExpectProceeding => {
                self.state = State::ExpectAlerting;
                self.timer = Some(now + T310);
                self.events.push_back(CallEvent::Proceeding);
            }
            (Body::Alerting(_), true)
                if matches!(self.state, State::ExpectProceeding | State::ExpectAlerting) =>
            {
                self.state = State::ExpectConnect;
                self.timer = Some(now + T301);
                self.events.push_back(CallEvent::Alerting(self.media));
            }
            (Body::Progress(_), true) => self.events.push_back(CallEvent::Progress(self.media)),
            (Body::Connect(_), true) if self.state != State::Active => {
                self.state = State::Active;
                self.timer = None;
                self.events.push_back(CallEvent::Connected(self.media));
            }
            (Body::ReleaseComplete(r), _) => {
                let reason = match &r.reason {
                    Some(NullChoice::Root(i)) => Some(reason_to_q850(*i)),
                    _ => None,
                };
                self.remote_release(m.q931.cause().map(|c| c.value), reason);
            }
            (Body::StatusInquiry(_), _) => self.send_status(),
            _ => {}
        }
        self.flush_h245();
    }

    fn incoming_setup(&mut self, m: &H225Message, u: &UserInformation) {
        if self.state != State::Null {
            return;
        }
        let Body::Setup(s) = &u.body else { return };
        self.crv = m.q931.cref.value;
        self.call_id = u
            .call_identifier()
            .ok()
            .flatten()
            .unwrap_or(s.conference_id);
        self.conf_id = s.conference_id;
        self.tunnel = self.cfg.tunnelling && u.h245_tunnelling();
        self.state = State::Present;
        let first = |a: &Option<Vec<AliasAddress>>| {
            a.as_ref()
                .and_then(|v| v.iter().find_map(|x| x.text().map(str::to_string)))
        };
        let calling_ie = m.q931.calling();
        let restricted = calling_ie
            .as_ref()
            .and_then(|p| p.pres)
            .is_some_and(|(p, _)| p == Presentation::Restricted)
            || u.presentation().ok().flatten() == Some(1);
        let offer = decode_fast_start(&u.fast_start().ok().flatten().unwrap_or_default());
        let mut offered: Vec<Codec> = Vec::new();
        for c in offer.iter().filter_map(|o| o.summary().codec) {
            if !offered.contains(&c) {
                offered.push(c);
            }
        }
        let deferred = self.cfg.codecs.is_empty();
        let answer = if deferred {
            None
        } else {
            fast_start_answer(&offer, &self.cfg.codecs, self.cfg.local_rtp)
        };
        if let Some((codec, remote, ans)) = answer {
            self.media = Some(Media {
                codec,
                remote_rtp: remote,
            });
            self.answer = Some(ans);
        }
        self.events.push_back(CallEvent::Incoming {
            called: m
                .q931
                .called()
                .map(|p| p.digits)
                .or_else(|| first(&s.destination_address)),
            calling: calling_ie
                .map(|p| p.digits)
                .or_else(|| first(&s.source_address)),
            display: m.q931.find(|i| match i {
                Ie::Display(d) => Some(d.clone()),
                // A Display with non-IA5 octets: Latin-1, up to a NUL.
                Ie::Unknown { id: 0x28, data } => Some(
                    data.iter()
                        .take_while(|&&c| c != 0)
                        .map(|&c| char::from(c))
                        .collect(),
                ),
                _ => None,
            }),
            restricted,
            offered: offered.clone(),
            media: self.media,
        });
        self.offer = offer;
        if !deferred && !offered.is_empty() && self.media.is_none() {
            // fastStart only: nothing acceptable means no media path.
            self.send_release(88);
        }
    }

    fn remote_release(&mut self, cause: Option<u8>, reason: Option<u8>) {
        self.state = State::Released;
        self.timer = None;
        self.events.push_back(CallEvent::Released {
            cause: cause.or(reason).unwrap_or(16),
            remote: true,
        });
    }

    /// Tunnelling: note the peer's flag and answer its H.245 messages.
    fn tunnel_in(&mut self, u: &UserInformation) {
        if self.outgoing && self.cfg.tunnelling && !self.tunnel {
            self.tunnel = u.h245_tunnelling();
        }
        if !self.tunnel {
            return;
        }
        for raw in u.h245_control().unwrap_or_default() {
            match H245Message::decode(&raw) {
                Ok(H245Message::TerminalCapabilitySet { seq, .. }) => self
                    .h245_out
                    .push(H245Message::TerminalCapabilitySetAck { seq }.encode()),
                Ok(H245Message::MasterSlaveDetermination {
                    terminal_type,
                    number,
                }) => {
                    // H.245 C.2: higher terminal type is master; on a tie the
                    // number "ahead" modulo 2^24 wins.
                    const OURS: u8 = 60;
                    let they_master = terminal_type > OURS
                        || (terminal_type == OURS
                            && number.wrapping_sub(self.msd_number) & 0xFF_FFFF > 0
                            && number.wrapping_sub(self.msd_number) & 0xFF_FFFF < 0x80_0000);
                    self.h245_out.push(
                        H245Message::MasterSlaveDeterminationAck {
                            master: they_master,
                        }
                        .encode(),
                    );
                }
                Ok(H245Message::UserInputSignal { signal, duration }) => {
                    self.events.push_back(CallEvent::Dtmf {
                        digit: signal,
                        duration,
                    })
                }
                Ok(H245Message::UserInputAlphanumeric(s)) => {
                    for digit in s.chars() {
                        self.events.push_back(CallEvent::Dtmf {
                            digit,
                            duration: None,
                        });
                    }
                }
                _ => {}
            }
        }
    }

    /// Sends queued tunnelled H.245 in a Facility (body `empty`) when no
    /// other message is about to carry it.
    fn flush_h245(&mut self) {
        if !self.tunnel || self.state == State::Released || self.state == State::Null {
            return;
        }
        self.add_tcs();
        if self.h245_out.is_empty() {
            return;
        }
        let q = Message::new(self.cref(), MsgType::Other(MT_FACILITY));
        let u = UserInformation::new(Body::Empty, true);
        self.send(q, u);
    }

    fn add_tcs(&mut self) {
        if self.tunnel && !self.tcs_sent {
            self.tcs_sent = true;
            self.h245_out.push(
                H245Message::TerminalCapabilitySet {
                    seq: 1,
                    audio: self.cfg.codecs.clone(),
                }
                .encode(),
            );
            self.h245_out.push(
                H245Message::MasterSlaveDetermination {
                    terminal_type: 60,
                    number: self.msd_number,
                }
                .encode(),
            );
        }
    }

    fn cref(&self) -> CallRef {
        CallRef {
            value: self.crv,
            flag: !self.outgoing,
            len: 2,
        }
    }

    fn progressing(&self) -> ProgressingUuie {
        ProgressingUuie {
            protocol_identifier: protocol_identifier(self.cfg.version),
            destination_info: EndpointType::tandem(),
            h245_address: None,
            ext: Extensions::default(),
        }
    }

    /// Sends a callee reply carrying the fastStart answer.
    fn reply(&mut self, mt: MsgType, body: Body) {
        if self.tunnel {
            self.add_tcs();
        }
        let mut u = UserInformation::new(body, self.tunnel);
        let ans = self.answer.clone();
        u.set_common(&self.call_id, ans.as_deref());
        self.send(Message::new(self.cref(), mt), u);
    }

    fn send(&mut self, q: Message, mut u: UserInformation) {
        if self.tunnel && !self.h245_out.is_empty() {
            u.set_h245_control(&std::mem::take(&mut self.h245_out));
        }
        self.tx.push_back(H225Message::new(q, u).to_tpkt());
    }

    fn send_status(&mut self) {
        let q = Message::new(self.cref(), MsgType::Status)
            .with(Ie::Cause(Cause::new(30, 0)))
            .with(Ie::Unknown {
                id: IE_CALL_STATE,
                data: vec![self.state.q931()],
            });
        let mut u = UserInformation::new(
            Body::Status(StatusUuie {
                protocol_identifier: protocol_identifier(self.cfg.version),
                call_identifier: self.call_id,
                ext: Extensions::default(),
            }),
            self.tunnel,
        );
        u.set_common(&self.call_id, None);
        self.send(q, u);
    }

    fn send_release(&mut self, cause: u8) {
        let q = Message::new(self.cref(), MsgType::ReleaseComplete)
            .with(Ie::Cause(Cause::new(cause, 0)));
        let mut u = UserInformation::new(
            Body::ReleaseComplete(ReleaseCompleteUuie {
                protocol_identifier: protocol_identifier(self.cfg.version),
                reason: None,
                ext: Extensions::default(),
            }),
            self.tunnel,
        );
        u.set_common(&self.call_id, None);
        self.h245_out.clear();
        self.send(q, u);
        self.state = State::Released;
        self.timer = None;
        self.events.push_back(CallEvent::Released {
            cause,
            remote: false,
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg(port: u16, codecs: &[Codec], tunnelling: bool) -> CallConfig {
        CallConfig {
            local_rtp: SocketAddr::from(([127, 0, 0, 1], port)),
            codecs: codecs.to_vec(),
            tunnelling,
            version: 4,
        }
    }

    /// Moves every queued frame from `a` to `b`.
    fn pump(a: &mut H323Call, b: &mut H323Call, now: Instant) {
        while let Some(f) = a.poll_transmit() {
            b.handle_bytes(&f, now).unwrap();
        }
    }

    fn events(c: &mut H323Call) -> Vec<CallEvent> {
        std::iter::from_fn(|| c.poll_event()).collect()
    }

    #[test]
    fn two_tandems_connect_negotiate_media_and_release() {
        let now = Instant::now();
        let mut a = H323Call::outgoing(
            cfg(4000, &[Codec::Pcma, Codec::Pcmu], true),
            77,
            [1; 16],
            [2; 16],
        );
        let mut b = H323Call::incoming(cfg(5000, &[Codec::Pcmu], true), 9);
        a.setup("1000", "2000", Some("Alice"), true, now).unwrap();
        pump(&mut a, &mut b, now);
        let ev = events(&mut b);
        let CallEvent::Incoming {
            called,
            calling,
            display,
            restricted,
            offered,
            media,
        } = &ev[0]
        else {
            panic!("{ev:?}")
        };
        assert_eq!(called.as_deref(), Some("2000"));
        assert_eq!(calling.as_deref(), Some("1000"));
        assert_eq!(display.as_deref(), Some("Alice"));
        assert!(*restricted);
        assert_eq!(offered, &vec![Codec::Pcma, Codec::Pcmu]);
        assert_eq!(
            media.unwrap().remote_rtp,
            Some(([127, 0, 0, 1], 4000).into())
        );
        b.proceeding(now).unwrap();
        b.alerting(now).unwrap();
        b.connect(now).unwrap();
        pump(&mut b, &mut a, now);
        // Tunnelled TCS/MSD from both sides get acknowledged.
        pump(&mut a, &mut b, now);
        pump(&mut b, &mut a, now);
        let ev = events(&mut a);
        let m = Media {
            codec: Codec::Pcmu,
            remote_rtp: Some(([127, 0, 0, 1], 5000).into()),
        };
        assert_eq!(ev[0], CallEvent::Proceeding);
        assert_eq!(ev[1], CallEvent::Alerting(Some(m)));
        assert_eq!(ev[2], CallEvent::Connected(Some(m)));
        b.send_dtmf('7', Some(120)).unwrap();
        pump(&mut b, &mut a, now);
        assert!(events(&mut a).contains(&CallEvent::Dtmf {
            digit: '7',
            duration: Some(120)
        }));
        a.release(16, now).unwrap();
        pump(&mut a, &mut b, now);
        assert!(events(&mut b).contains(&CallEvent::Released {
            cause: 16,
            remote: true
        }));
        assert!(a.is_released() && b.is_released());
    }

    #[test]
    fn setup_unanswered_times_out_with_cause_102() {
        let now = Instant::now();
        let mut a = H323Call::outgoing(cfg(4000, &[Codec::Pcma], false), 1, [3; 16], [4; 16]);
        a.setup("1", "2", None, false, now).unwrap();
        assert!(a.poll_transmit().is_some());
        assert_eq!(a.poll_timeout(), Some(now + T303));
        a.handle_timeout(now + T303);
        assert!(a.poll_transmit().is_some(), "Release Complete sent");
        assert!(events(&mut a).contains(&CallEvent::Released {
            cause: 102,
            remote: false
        }));
    }

    #[test]
    fn no_common_codec_is_released_with_88_and_garbage_with_95() {
        let now = Instant::now();
        let mut a = H323Call::outgoing(cfg(4000, &[Codec::G729], false), 5, [5; 16], [6; 16]);
        let mut b = H323Call::incoming(cfg(5000, &[Codec::Pcma], false), 1);
        a.setup("1", "2", None, false, now).unwrap();
        pump(&mut a, &mut b, now);
        pump(&mut b, &mut a, now);
        assert!(events(&mut a).contains(&CallEvent::Released {
            cause: 88,
            remote: true
        }));
        let mut c = H323Call::outgoing(cfg(4000, &[Codec::Pcma], false), 5, [5; 16], [6; 16]);
        c.setup("1", "2", None, false, now).unwrap();
        assert!(c.handle_bytes(&[3, 0, 0, 6, 8, 2], now).is_err());
        assert!(c.is_released());
    }
}
