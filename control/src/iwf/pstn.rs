//! The PSTN interworking function: ISDN PRI calls as SIP calls to the engine.
//!
//! The IWF runs the [`Pstn`] runtime with the `[pstn]` spans and speaks plain
//! SIP over its own loopback UDP socket to tandemd's first UDP listener, as a
//! trusted gateway ([`crate::call::Gateway`], technology `DAHDI`):
//!
//! | SIP (engine side) | Q.931 (PRI side) |
//! |---|---|
//! | INVITE `sip:g1/5551234@iwf` | `place_call` group 1, called 5551234; calling number from P-Asserted-Identity (else From), presentation restricted on `Privacy: id` unless the span forces `presentation` / `calling_number` |
//! | 100 | sent at once |
//! | 180 / 183 + SDP | ALERTING (183 when in-band), PROGRESS with in-band info |
//! | 200 + SDP (our RTP port, PCMA or PCMU) | CONNECT |
//! | 4xx-6xx + `Reason: Q.850` | DISCONNECT/RELEASE cause via [`cause::q850_to_sip`] (17 -> 486, 1 -> 404...) |
//! | BYE / CANCEL | release, cause 16 (or the `Reason: Q.850;cause=` given) |
//! | INVITE to the engine, From/PAI = calling number; restricted: anonymous From + PAI + `Privacy: id` | SETUP received |
//! | 180, 183, 200, 4xx back | alert, progress, answer, release ([`cause::sip_to_q850`]) |
//!
//! Media: each call gets one of the IWF's RTP sockets (a slot); B-channel
//! A-law blocks become RTP (PCMA, or PCMU if that is what the engine chose;
//! one packet per block, proper sequence, timestamp and SSRC) towards the
//! engine's dataplane port named in its SDP, and RTP from there becomes
//! B-channel blocks. Digits: the IWF offers and answers telephone-event; RFC
//! 4733 events from the engine are played in-band on the B-channel and DTMF
//! heard on the B-channel goes to the engine as RFC 4733 ([`super::dtmf`]).
//!
//! [`Iwf`] is the sans-IO core (SIP bytes, PSTN events and RTP payloads in,
//! SIP bytes and RTP packets out; time comes in as `now`). [`spawn`] is the
//! thin edge: one thread with the sockets, the simulated E1 trunks
//! ([`SimTrunk`] with the exchange simulator) and external D-channels
//! (`dchannel = "udp:HOST:PORT"` or `"seqpacket:/path"`, one LAPD frame per
//! datagram without FCS, as libpri's pri-peer speaks it).

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use dataplane::codec::g711::{alaw_to_ulaw, ulaw_to_alaw};
use drivers::span::Span;
use drivers::SpanId;

use crate::pstn::cause;
use crate::pstn::config::{DChannelLink, Driver, PstnConfig, SpanConfig};
use crate::pstn::exchange::SimTrunk;
use crate::pstn::{
    CallerId, ChannelStatus, PlaceCall, Pstn, PstnCallId, PstnError, PstnEvent, SpanStatus,
};
use crate::q931::{Presentation, Screening};
use crate::sip::{Message, Method, Request, Response};

use super::dtmf::{event_pt, FromLine, ToLine, PT_EVENT};
use super::sipua::{self, Dialog, RtpTx, PT_PCMA, PT_PCMU};
use dataplane::dsp::dtmf::Digit;

mod dahdi;

/// The Dial technology the IWF serves (`Dial(DAHDI/g1/5551234)`).
pub const TECH: &str = "DAHDI";

/// Which way a call goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Dir {
    /// The engine called us: SIP -> PSTN.
    Out,
    /// The PSTN called in: PSTN -> SIP.
    In,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// Before the final response.
    Early,
    /// 200 OK sent or received.
    Answered,
    /// The PSTN side is gone; (In) waiting for the final response to our CANCEL.
    Cancelling,
}

#[derive(Debug)]
struct IwCall {
    pstn: Option<PstnCallId>,
    dir: Dir,
    phase: Phase,
    /// The SIP dialog with the engine (Out: we are its UAS; In: its UAC).
    dialog: Dialog,
    slot: usize,
    remote_media: Option<SocketAddr>,
    /// Early media (183 with SDP) or answered: audio flows.
    media: bool,
    pt: u8,
    tx: RtpTx,
    rx_buf: Vec<u8>,
    block: usize,
    /// Digits: the agreed telephone-event payload type, and the converters.
    dtmf: Dtmf,
}

/// RFC 4733 <-> in-band digits of one call ([`super::dtmf`]).
#[derive(Debug, Default)]
struct Dtmf {
    pt: Option<u8>,
    to_line: ToLine,
    from_line: FromLine,
}

/// An inbound call in overlap receiving: digits are collected until Sending
/// complete or until the span's `overlap_timeout` (T302) passes without one.
#[derive(Debug)]
struct Overlap {
    id: PstnCallId,
    span: SpanId,
    called: String,
    calling: Option<CallerId>,
    deadline: Instant,
}

/// A call whose audio the edge moves: B-channel `(span, call)` <-> RTP slot.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MediaLeg {
    /// The PSTN call.
    pub call: PstnCallId,
    /// Its RTP socket (index into the ports given to [`Iwf::new`]).
    pub slot: usize,
    /// Where its RTP goes (the engine's dataplane port).
    pub remote: SocketAddr,
}

/// The sans-IO interworking core.
#[derive(Debug)]
pub struct Iwf {
    pstn: Pstn,
    cfg: PstnConfig,
    local: SocketAddr,
    engine: SocketAddr,
    ports: Vec<u16>,
    used: Vec<bool>,
    calls: Vec<IwCall>,
    /// Inbound calls still collecting digits (not offered to the engine yet).
    overlap: Vec<Overlap>,
    out: VecDeque<Vec<u8>>,
    log: VecDeque<String>,
}

impl Iwf {
    /// A core for `cfg`'s spans; `local` is our SIP address (the gateway
    /// address the engine knows), `engine` tandemd's SIP listener, `ports`
    /// the RTP ports of the edge's media sockets (one per simultaneous call).
    pub fn new(cfg: &PstnConfig, local: SocketAddr, engine: SocketAddr, ports: Vec<u16>) -> Self {
        Self::with_runtime(Pstn::new(cfg), cfg, local, engine, ports)
    }

    /// As [`Iwf::new`] with a runtime built by the caller (timers, tests).
    pub fn with_runtime(
        pstn: Pstn,
        cfg: &PstnConfig,
        local: SocketAddr,
        engine: SocketAddr,
        ports: Vec<u16>,
    ) -> Self {
        Self {
            pstn,
            cfg: cfg.clone(),
            local,
            engine,
            used: vec![false; ports.len()],
            ports,
            calls: Vec::new(),
            overlap: Vec::new(),
            out: VecDeque::new(),
            log: VecDeque::new(),
        }
    }

    /// The PRI runtime (the edge pumps its spans).
    pub fn pstn(&self) -> &Pstn {
        &self.pstn
    }

    /// The PRI runtime, mutable (D-channel frames, timers, [`SimTrunk`]).
    pub fn pstn_mut(&mut self) -> &mut Pstn {
        &mut self.pstn
    }

    /// Calls in progress (either direction).
    pub fn call_count(&self) -> usize {
        self.calls.len()
    }

    /// Next SIP datagram for the engine.
    pub fn poll_sip(&mut self) -> Option<Vec<u8>> {
        self.out.pop_front()
    }

    /// Next log line.
    pub fn poll_log(&mut self) -> Option<String> {
        self.log.pop_front()
    }

    /// The calls whose audio flows now.
    pub fn media_legs(&self) -> impl Iterator<Item = MediaLeg> + '_ {
        self.calls.iter().filter_map(|c| {
            Some(MediaLeg {
                call: c.pstn?,
                slot: c.slot,
                remote: c.remote_media.filter(|_| c.media)?,
            })
        })
    }

    fn note(&mut self, s: String) {
        if self.log.len() < 256 {
            self.log.push_back(s);
        }
    }

    fn send(&mut self, m: impl Into<Message>) {
        self.out.push_back(m.into().to_bytes());
    }

    fn alloc_slot(&mut self) -> Option<usize> {
        let i = self.used.iter().position(|u| !u)?;
        self.used[i] = true;
        Some(i)
    }

    fn by_call_id(&self, id: &str) -> Option<usize> {
        self.calls.iter().position(|c| c.dialog.call_id == id)
    }

    fn by_pstn(&self, id: PstnCallId) -> Option<usize> {
        self.calls.iter().position(|c| c.pstn == Some(id))
    }

    fn forget(&mut self, i: usize) {
        let c = self.calls.remove(i);
        if let Some(u) = self.used.get_mut(c.slot) {
            *u = false;
        }
    }

    /// One SIP datagram from `from` (only the engine is served).
    pub fn handle_sip(&mut self, bytes: &[u8], from: SocketAddr, now: Instant) {
        if from != self.engine {
            self.note(format!(
                "pstn iwf: ignored SIP from {from} (not the engine)"
            ));
            return;
        }
        match Message::parse(bytes) {
            Ok(Message::Request(r)) => self.on_request(r, now),
            Ok(Message::Response(r)) => self.on_response(r, now),
            Err(e) => self.note(format!("pstn iwf: bad SIP from {from}: {e}")),
        }
    }

    fn on_request(&mut self, req: Request, now: Instant) {
        let Some(call_id) = req.call_id().map(str::to_string) else {
            self.send(Response::for_request(&req, 400).with_reason("Missing Call-ID"));
            return;
        };
        let known = self.by_call_id(&call_id);
        match (req.method.clone(), known) {
            (Method::Invite, None) => self.new_outgoing(req, now),
            (Method::Invite, Some(_)) => {
                // A retransmission (our 100 went at once) or a re-INVITE:
                // keep the media as it is.
                let code = if self
                    .calls
                    .iter()
                    .any(|c| c.dialog.call_id == call_id && c.phase == Phase::Answered)
                {
                    200
                } else {
                    100
                };
                let mut r = Response::for_request(&req, code);
                if code == 200 {
                    if let Some(i) = self.by_call_id(&call_id) {
                        r = self.with_sdp(r, i);
                        let d = &self.calls[i].dialog;
                        r.set_to_tag(&sipua::tag_of(&d.local));
                        r.headers.push("Contact", d.contact());
                    }
                }
                self.send(r);
            }
            (Method::Ack, _) => {}
            (Method::Cancel, Some(i)) => {
                self.send(Response::for_request(&req, 200));
                if self.calls[i].dir == Dir::Out && self.calls[i].phase == Phase::Early {
                    let r = self.calls[i].dialog.response(487, None, None);
                    self.send(r);
                    let cause = sipua::reason_cause(&req.headers).unwrap_or(16);
                    self.release_pstn(i, cause, now);
                    self.forget(i);
                }
            }
            (Method::Bye, Some(i)) => {
                self.send(Response::for_request(&req, 200));
                let cause = sipua::reason_cause(&req.headers).unwrap_or(16);
                self.release_pstn(i, cause, now);
                self.forget(i);
            }
            (Method::Options, _) => {
                let mut r = Response::for_request(&req, 200);
                r.headers.push("Allow", "INVITE, ACK, CANCEL, BYE, OPTIONS");
                self.send(r);
            }
            (_, None) => {
                self.send(Response::for_request(&req, 481));
            }
            (_, Some(_)) => {
                self.send(Response::for_request(&req, 501));
            }
        }
    }

    fn release_pstn(&mut self, i: usize, cause: u8, now: Instant) {
        if let Some(id) = self.calls[i].pstn.take() {
            if let Err(e) = self.pstn.release(id, cause, now) {
                self.note(format!("pstn iwf: release {id:?}: {e}"));
            }
        }
    }

    fn reject(&mut self, req: &Request, code: u16, why: &str) {
        self.note(format!("pstn iwf: {} rejected {code}: {why}", req.uri));
        let mut r = Response::for_request(req, code);
        r.set_to_tag(&crate::sip::new_tag());
        self.send(r);
    }

    /// An INVITE from the engine: a call out to the PSTN.
    fn new_outgoing(&mut self, req: Request, now: Instant) {
        self.send(Response::for_request(&req, 100));
        let resource = sipua::request_user(&req);
        let Some((group, called)) = resource.as_deref().and_then(parse_resource) else {
            self.reject(&req, 404, "expected g<group>/<number>");
            return;
        };
        let offer = std::str::from_utf8(&req.body)
            .ok()
            .and_then(|b| crate::sdp::SessionDescription::parse(b).ok());
        let Some((remote_media, pt)) = offer.as_ref().and_then(pick_g711) else {
            self.reject(&req, 488, "no PCMA/PCMU audio offered");
            return;
        };
        let dtmf_pt = offer.as_ref().and_then(|o| o.audio()).and_then(event_pt);
        let span_cfg = self.cfg.group(group).next().cloned();
        let Some(span_cfg) = span_cfg else {
            self.reject(&req, 404, &format!("no span in group {group}"));
            return;
        };
        let calling = calling_party(&req, &span_cfg);
        let Some(dialog) = Dialog::uas(req.clone(), self.local, self.engine) else {
            self.reject(&req, 400, "missing From");
            return;
        };
        let dialog = dialog.named("pstn");
        let Some(slot) = self.alloc_slot() else {
            self.reject(&req, 503, "no free media slot");
            return;
        };
        let place = PlaceCall::new(group, &called, calling.clone());
        let id = match self.pstn.place_call(&place, now) {
            Ok(id) => id,
            Err(e) => {
                self.used[slot] = false;
                let code = match e {
                    PstnError::NoGroup(_) => 404,
                    _ => 503,
                };
                self.reject(&req, code, &e.to_string());
                return;
            }
        };
        self.note(format!(
            "pstn iwf: call {id:?} to {called} (group {group}) from {}",
            calling
                .as_ref()
                .map_or("-".into(), |c| format!("{} {:?}", c.number, c.presentation))
        ));
        self.calls.push(IwCall {
            pstn: Some(id),
            dir: Dir::Out,
            phase: Phase::Early,
            dialog,
            slot,
            remote_media: Some(remote_media),
            media: false,
            pt,
            tx: RtpTx::default(),
            rx_buf: Vec::new(),
            block: span_cfg.blocksize,
            dtmf: Dtmf {
                pt: dtmf_pt,
                ..Dtmf::default()
            },
        });
    }

    /// Our SDP for call `i`: its media slot, its payload type and
    /// telephone-event when agreed.
    fn sdp(&self, i: usize) -> String {
        let c = &self.calls[i];
        let addr = SocketAddr::new(self.local.ip(), self.ports[c.slot]);
        sipua::sdp_with_events(addr, &[c.pt], c.dtmf.pt, "Tandem PSTN")
    }

    fn with_sdp(&self, mut r: Response, i: usize) -> Response {
        r.headers.push("Content-Type", "application/sdp");
        r.body = self.sdp(i).into_bytes();
        r
    }

    fn respond(&mut self, i: usize, code: u16, with_sdp: bool, reason: Option<u8>) {
        let sdp = with_sdp.then(|| self.sdp(i));
        let r = self.calls[i].dialog.response(code, sdp, reason);
        self.send(r);
    }

    /// An in-dialog request from us (BYE, or CANCEL for an In call before answer).
    fn request(&mut self, i: usize, method: Method, reason: Option<u8>) {
        let d = &mut self.calls[i].dialog;
        let r = if method == Method::Cancel {
            d.cancel(reason)
        } else {
            d.request(method, reason)
        };
        self.send(r);
    }

    fn on_response(&mut self, resp: Response, now: Instant) {
        let Some(i) = resp.call_id().and_then(|id| self.by_call_id(id)) else {
            return;
        };
        let Some(cseq) = resp.cseq() else { return };
        if cseq.method != Method::Invite || self.calls[i].dir != Dir::In {
            return;
        }
        let code = resp.code;
        let id = self.calls[i].pstn;
        if code < 200 {
            let sdp_answer = sipua::pick_g711(&resp.body);
            let c = &mut self.calls[i];
            if let Some((addr, pt)) = sdp_answer {
                c.remote_media = Some(addr);
                c.pt = pt;
                c.media = true;
                c.dtmf.pt = answer_event_pt(&resp);
            }
            let Some(id) = id else { return };
            let r = match code {
                180 => self.pstn.alert(id, false, now),
                183 => self.pstn.progress(id, now),
                _ => Ok(()),
            };
            if let Err(e) = r {
                self.note(format!("pstn iwf: {code} for {id:?}: {e}"));
            }
            return;
        }
        let ack = self.calls[i].dialog.ack(&resp);
        self.send(ack);
        if resp.is_success() {
            if self.calls[i].phase == Phase::Answered {
                return; // a retransmitted 200: ACKed again above
            }
            let Some(id) = id else {
                // The PSTN caller hung up meanwhile: end the dialog.
                self.calls[i].phase = Phase::Answered;
                self.request(i, Method::Bye, Some(16));
                self.forget(i);
                return;
            };
            let c = &mut self.calls[i];
            if let Some((addr, pt)) = sipua::pick_g711(&resp.body) {
                c.remote_media = Some(addr);
                c.pt = pt;
                c.dtmf.pt = answer_event_pt(&resp);
            }
            c.media = true;
            c.phase = Phase::Answered;
            if let Err(e) = self.pstn.answer(id, now) {
                self.note(format!("pstn iwf: answer {id:?}: {e}"));
            }
        } else {
            let cause =
                sipua::reason_cause(&resp.headers).unwrap_or_else(|| cause::sip_to_q850(code));
            self.note(format!(
                "pstn iwf: inbound call refused {code}, cause {cause}"
            ));
            self.release_pstn(i, cause, now);
            self.forget(i);
        }
    }

    /// Drains the runtime's events into SIP.
    pub fn handle_pstn_events(&mut self, now: Instant) {
        while let Some(ev) = self.pstn.poll_event() {
            self.on_pstn_event(ev, now);
        }
    }

    fn on_pstn_event(&mut self, ev: PstnEvent, now: Instant) {
        match ev {
            PstnEvent::SpanUp { span } => self.note(format!("pstn: span {} D-channel up", span.0)),
            PstnEvent::SpanDown { span } => {
                self.note(format!("pstn: span {} D-channel down", span.0))
            }
            PstnEvent::Incoming {
                id,
                span,
                called,
                calling,
                sending_complete,
                ..
            } => {
                if sending_complete {
                    self.new_incoming(id, span, called, calling, now);
                } else {
                    self.note(format!(
                        "pstn iwf: {id:?} overlap receiving, digits so far {called:?}"
                    ));
                    let deadline = now + self.overlap_timeout(span);
                    self.overlap.push(Overlap {
                        id,
                        span,
                        called,
                        calling,
                        deadline,
                    });
                }
            }
            PstnEvent::Digits {
                id,
                called,
                sending_complete,
                ..
            } => match self.overlap.iter().position(|o| o.id == id) {
                Some(k) if sending_complete => {
                    // The runtime already sent CALL PROCEEDING.
                    let o = self.overlap.swap_remove(k);
                    self.new_incoming(id, o.span, called, o.calling, now);
                }
                Some(k) => {
                    let t = self.overlap_timeout(self.overlap[k].span);
                    let o = &mut self.overlap[k];
                    o.called = called;
                    o.deadline = now + t;
                }
                None => self.note(format!(
                    "pstn iwf: {id:?} digits after the number was complete ({called}) ignored"
                )),
            },
            PstnEvent::Proceeding { .. } => {}
            PstnEvent::Alerting { id, inband } => {
                if let Some(i) = self.by_pstn(id) {
                    if self.calls[i].dir == Dir::Out && self.calls[i].phase == Phase::Early {
                        self.calls[i].media |= inband;
                        self.respond(i, if inband { 183 } else { 180 }, inband, None);
                    }
                }
            }
            PstnEvent::Progress { id, inband } => {
                if let Some(i) = self.by_pstn(id) {
                    if self.calls[i].dir == Dir::Out
                        && self.calls[i].phase == Phase::Early
                        && inband
                    {
                        self.calls[i].media = true;
                        self.respond(i, 183, true, None);
                    }
                }
            }
            PstnEvent::Connected { id } => {
                if let Some(i) = self.by_pstn(id) {
                    if self.calls[i].dir == Dir::Out && self.calls[i].phase == Phase::Early {
                        self.calls[i].media = true;
                        self.calls[i].phase = Phase::Answered;
                        self.respond(i, 200, true, None);
                    }
                }
            }
            PstnEvent::Released { id, cause } => {
                if let Some(k) = self.overlap.iter().position(|o| o.id == id) {
                    self.overlap.swap_remove(k);
                    self.note(format!(
                        "pstn iwf: {id:?} released while collecting digits, cause {cause}"
                    ));
                    return;
                }
                let Some(i) = self.by_pstn(id) else { return };
                self.calls[i].pstn = None;
                self.note(format!("pstn iwf: {id:?} released, cause {cause}"));
                match (self.calls[i].dir, self.calls[i].phase) {
                    (_, Phase::Answered) => {
                        self.request(i, Method::Bye, Some(cause));
                        self.forget(i);
                    }
                    (Dir::Out, _) => {
                        let code = cause::q850_to_sip(cause).unwrap_or(480);
                        self.respond(i, code, false, Some(cause));
                        self.forget(i);
                    }
                    (Dir::In, Phase::Early) => {
                        self.calls[i].phase = Phase::Cancelling;
                        self.calls[i].media = false;
                        self.request(i, Method::Cancel, Some(cause));
                    }
                    (Dir::In, Phase::Cancelling) => {}
                }
            }
        }
    }

    fn overlap_timeout(&self, span: SpanId) -> Duration {
        self.cfg
            .spans
            .iter()
            .find(|s| s.span == span)
            .map_or(Duration::from_secs(10), |s| s.overlap_timeout)
    }

    /// The earliest overlap-receiving deadline (T302), if any call collects
    /// digits.
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.overlap.iter().map(|o| o.deadline).min()
    }

    /// Overlap calls whose T302 ran out: the number is as complete as it gets;
    /// CALL PROCEEDING goes to the exchange and the call to the engine (which
    /// answers an unknown number as any other: 404 -> cause 1).
    pub fn handle_timeout(&mut self, now: Instant) {
        while let Some(k) = self.overlap.iter().position(|o| o.deadline <= now) {
            let o = self.overlap.swap_remove(k);
            self.note(format!(
                "pstn iwf: {:?} no more digits after {:?}: number {:?} complete",
                o.id,
                self.overlap_timeout(o.span),
                o.called
            ));
            if let Err(e) = self.pstn.proceeding(o.id, now) {
                self.note(format!("pstn iwf: {:?} proceeding: {e}", o.id));
                continue;
            }
            self.new_incoming(o.id, o.span, o.called, o.calling, now);
        }
    }

    /// A SETUP from the PSTN: INVITE the engine.
    fn new_incoming(
        &mut self,
        id: PstnCallId,
        span: SpanId,
        called: String,
        calling: Option<CallerId>,
        now: Instant,
    ) {
        let Some(slot) = self.alloc_slot() else {
            let _ = self.pstn.release(id, 34, now);
            return;
        };
        let block = self
            .cfg
            .spans
            .iter()
            .find(|s| s.span == span)
            .map_or(drivers::span::DEFAULT_BLOCK, |s| s.blocksize);
        let host = self.local;
        let restricted = calling
            .as_ref()
            .is_some_and(|c| c.presentation != Presentation::Allowed);
        let number = calling
            .as_ref()
            .map(|c| c.number.clone())
            .filter(|n| !n.is_empty());
        let from = match (&number, restricted) {
            (Some(n), false) => format!("<sip:{n}@{host}>"),
            _ => "\"Anonymous\" <sip:anonymous@anonymous.invalid>".to_string(),
        };
        let called_user = if called.is_empty() { "s" } else { &called };
        let mut extra = Vec::new();
        if let Some(n) = &number {
            extra.push(("P-Asserted-Identity", format!("<sip:{n}@{host}>")));
        }
        if restricted {
            extra.push(("Privacy", "id".to_string()));
        }
        let offer = sipua::sdp_with_events(
            SocketAddr::new(host.ip(), self.ports[slot]),
            &[PT_PCMA, PT_PCMU],
            Some(PT_EVENT),
            "Tandem PSTN",
        );
        let dialog =
            Dialog::uac(called_user, &from, &extra, offer, host, self.engine).named("pstn");
        self.note(format!(
            "pstn iwf: inbound {id:?} {} -> {called}{}",
            number.as_deref().unwrap_or("-"),
            if restricted { " (restricted)" } else { "" }
        ));
        self.send(dialog.invite.clone());
        self.calls.push(IwCall {
            pstn: Some(id),
            dir: Dir::In,
            phase: Phase::Early,
            dialog,
            slot,
            remote_media: None,
            media: false,
            pt: PT_PCMA,
            tx: RtpTx::default(),
            rx_buf: Vec::new(),
            block,
            dtmf: Dtmf::default(),
        });
    }

    /// The RTP packet carrying one received B-channel block of `call`.
    pub fn rtp_out(&mut self, call: PstnCallId, alaw: &[u8]) -> Option<Vec<u8>> {
        let i = self.by_pstn(call)?;
        let c = &mut self.calls[i];
        let before = c.dtmf.from_line.digits;
        if let Some(pkt) = c.dtmf_out(alaw) {
            if c.dtmf.from_line.digits != before && self.log.len() < 256 {
                let d = pkt.get(12).and_then(|&e| Digit::from_event(e));
                self.log.push_back(format!(
                    "pstn iwf: {call:?}: digit {} heard in-band, sent as RFC 4733",
                    d.map_or('?', Digit::to_char)
                ));
            }
            return Some(pkt);
        }
        let ulaw = c.pt == PT_PCMU;
        c.tx.packet_with(c.pt, alaw.len(), |out| {
            for (o, a) in out.iter_mut().zip(alaw) {
                *o = if ulaw { alaw_to_ulaw(*a) } else { *a };
            }
        })
    }

    /// An RTP packet received on media `slot`: the whole A-law blocks it
    /// completes for the call's B-channel (telephone-event and other payload
    /// types are dropped).
    pub fn rtp_in(&mut self, slot: usize, pkt: &[u8]) -> Option<(PstnCallId, Vec<Vec<u8>>)> {
        let c = self.calls.iter_mut().find(|c| c.slot == slot && c.media)?;
        let id = c.pstn?;
        let p = dataplane::wire::rtp::Packet::new_checked(pkt).ok()?;
        let pt = p.payload_type().get();
        if Some(pt) == c.dtmf.pt {
            let before = c.dtmf.to_line.digits;
            let mut tone = Vec::new();
            if c.dtmf
                .to_line
                .event(p.timestamp(), p.payload(), &mut tone)
                .is_err()
            {
                return None;
            }
            c.rx_buf.extend(
                tone.iter()
                    .map(|&x| dataplane::codec::g711::linear_to_alaw(x)),
            );
            if c.dtmf.to_line.digits != before && self.log.len() < 256 {
                let d = p.payload().first().and_then(|&e| Digit::from_event(e));
                self.log.push_back(format!(
                    "pstn iwf: {id:?}: digit {} from RTP played in-band",
                    d.map_or('?', Digit::to_char)
                ));
            }
        } else if pt != PT_PCMA && pt != PT_PCMU || c.dtmf.to_line.audio(p.timestamp()) {
            return None;
        } else {
            c.rx_buf.extend(p.payload().iter().map(|&b| {
                if pt == PT_PCMU {
                    ulaw_to_alaw(b)
                } else {
                    b
                }
            }));
        }
        let mut blocks = Vec::new();
        while c.rx_buf.len() >= c.block {
            blocks.push(c.rx_buf.drain(..c.block).collect());
        }
        // A receiver far behind keeps at most a few blocks.
        if c.rx_buf.len() > 8 * c.block {
            c.rx_buf.clear();
        }
        Some((id, blocks))
    }
}

impl IwCall {
    /// A digit heard on the B-channel: the telephone-event packet to send instead
    /// of this block's audio (the RTP clock still advances by the block).
    fn dtmf_out(&mut self, alaw: &[u8]) -> Option<Vec<u8>> {
        let ev_pt = self.dtmf.pt?;
        let mut pcm = [0i16; 320];
        let pcm = pcm.get_mut(..alaw.len())?;
        dataplane::codec::g711::decode_alaw(alaw, pcm);
        let ev = self.dtmf.from_line.block(pcm, self.tx.ts())?;
        self.tx
            .event(ev_pt, ev.marker, ev.ts, &ev.payload(), alaw.len() as u32)
    }
}

/// `g<group>/<number>` (Asterisk's `DAHDI/g1/5551234`): the group and number.
pub fn parse_resource(r: &str) -> Option<(u16, String)> {
    let (g, num) = r.split_once('/')?;
    let g = g.strip_prefix(['g', 'G'])?;
    let group = g.parse::<u16>().ok().filter(|g| *g <= 63)?;
    let num = num.split('@').next().unwrap_or(num);
    if num.is_empty()
        || !num
            .bytes()
            .all(|b| b.is_ascii_digit() || b == b'*' || b == b'#')
    {
        return None;
    }
    Some((group, num.to_string()))
}

/// The calling party of an engine INVITE: P-Asserted-Identity (else From)
/// user, presentation from `Privacy` unless the span forces it.
fn calling_party(req: &Request, span: &SpanConfig) -> Option<CallerId> {
    let (user, _, privacy) = sipua::caller_of(req);
    let number = span.calling_number.clone().or(user)?;
    let presentation = span.presentation.unwrap_or(if privacy {
        Presentation::Restricted
    } else {
        Presentation::Allowed
    });
    Some(CallerId {
        number,
        ton: 0,
        presentation,
        screening: Screening::UserPassed,
    })
}

/// The engine's audio address and the G.711 payload type to use (PCMA
/// preferred: no conversion).
fn pick_g711(sdp: &crate::sdp::SessionDescription) -> Option<(SocketAddr, u8)> {
    let m = sdp.audio()?;
    let addr = sdp.media_addr(m)?;
    let pt = if m.formats.contains(&PT_PCMA) {
        PT_PCMA
    } else if m.formats.contains(&PT_PCMU) {
        PT_PCMU
    } else {
        return None;
    };
    Some((addr, pt))
}

/// The telephone-event payload type of an answer, if it kept one.
fn answer_event_pt(resp: &Response) -> Option<u8> {
    let text = std::str::from_utf8(&resp.body).ok()?;
    let sdp = crate::sdp::SessionDescription::parse(text).ok()?;
    sdp.audio().and_then(event_pt)
}

// ---------------------------------------------------------------------------
// The edge: sockets, the clock, the simulated trunks.

/// What `tandemctl show spans|channels` reads, refreshed by the IWF thread.
#[derive(Debug, Default, Clone)]
pub struct Snapshot {
    /// `show spans`.
    pub spans: Vec<SpanStatus>,
    /// `show channels`.
    pub channels: Vec<ChannelStatus>,
}

/// The running IWF: its SIP address (the gateway address) and status.
#[derive(Debug)]
pub struct IwfHandle {
    /// Our SIP address: register it with [`crate::call::Engine::add_gateway`].
    pub addr: SocketAddr,
    /// Context of inbound calls (the first span's).
    pub context: String,
    status: Arc<Mutex<Snapshot>>,
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl IwfHandle {
    /// The latest span/channel status.
    pub fn snapshot(&self) -> Snapshot {
        self.status.lock().map(|s| s.clone()).unwrap_or_default()
    }

    /// The [`crate::call::Gateway`] to register with the engine.
    pub fn gateway(&self) -> crate::call::Gateway {
        crate::call::Gateway {
            tech: TECH.into(),
            addr: self.addr,
            context: self.context.clone(),
            codecs: vec![crate::sdp::Codec::Pcma, crate::sdp::Codec::Pcmu],
        }
    }
}

impl Drop for IwfHandle {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// An IWF start-up failure.
#[derive(Debug, thiserror::Error)]
pub enum IwfError {
    /// A socket could not be opened.
    #[error("pstn: {what}: {err}")]
    Socket {
        /// Which socket.
        what: String,
        /// Why.
        err: std::io::Error,
    },
    /// A `driver = "dahdi"` span without DAHDI on this machine.
    #[error(
        "pstn: span {span}: driver dahdi needs {device}, which does not exist \
         (DAHDI modules not loaded or dahdi_cfg not run?)"
    )]
    NoDahdi {
        /// The span.
        span: u16,
        /// The missing device node.
        device: String,
    },
    /// A DAHDI channel of a span could not be opened or set up.
    #[error("pstn: span {span}: {what}: {source}")]
    Dahdi {
        /// The span.
        span: u16,
        /// Which channel (timeslot and DAHDI channel number).
        what: String,
        /// The device error (names the ioctl).
        source: drivers::dahdi::ChannelError,
    },
    /// The span's channel plan does not match the kernel's (config error).
    #[error("pstn: span {span}: {msg}")]
    DahdiPlan {
        /// The span.
        span: u16,
        /// What does not match.
        msg: String,
    },
}

#[expect(
    clippy::disallowed_methods,
    reason = "the IWF thread is an edge: it owns the clock"
)]
fn clock() -> Instant {
    Instant::now()
}

/// An external D-channel socket.
enum DChan {
    Udp(std::net::UdpSocket),
}

impl DChan {
    fn open(link: &DChannelLink) -> std::io::Result<Option<Self>> {
        match link {
            DChannelLink::Builtin => Ok(None),
            DChannelLink::Udp(a) => {
                let s = std::net::UdpSocket::bind("127.0.0.1:0")?;
                s.connect(a.as_str())?;
                s.set_nonblocking(true)?;
                Ok(Some(DChan::Udp(s)))
            }
            DChannelLink::SeqPacket(p) => Err(std::io::Error::new(
                std::io::ErrorKind::Unsupported,
                format!(
                    "seqpacket:{} is not supported yet (use udp:HOST:PORT)",
                    p.display()
                ),
            )),
        }
    }

    fn send(&mut self, f: &[u8]) {
        let DChan::Udp(s) = self;
        let _ = s.send(f);
    }

    fn recv(&mut self, buf: &mut [u8]) -> Option<usize> {
        let DChan::Udp(s) = self;
        s.recv(buf).ok()
    }
}

/// Where a span's audio and D-channel live at the edge.
enum Port {
    Sim(Box<SimTrunk>),
    External(DChan, Box<Span>),
    /// A DAHDI card: D-channel and B-channels as device fds.
    Dahdi(Box<dahdi::DahdiSpan>),
}

/// Starts the IWF thread: binds its SIP and RTP sockets on loopback, builds
/// the spans (simulated trunks with the exchange simulator, or external
/// D-channels), and talks SIP to `engine`.
pub fn spawn(cfg: &PstnConfig, engine: SocketAddr) -> Result<IwfHandle, IwfError> {
    let sock = |what: &str| {
        let w = what.to_string();
        move |err| IwfError::Socket {
            what: w.clone(),
            err,
        }
    };
    let sip = std::net::UdpSocket::bind("127.0.0.1:0").map_err(sock("SIP socket"))?;
    sip.set_nonblocking(true).map_err(sock("SIP socket"))?;
    let addr = sip.local_addr().map_err(sock("SIP socket"))?;
    let engine = if engine.ip().is_unspecified() {
        SocketAddr::new(addr.ip(), engine.port())
    } else {
        engine
    };
    let slots: usize = cfg
        .spans
        .iter()
        .map(|s| s.bchannels.len())
        .sum::<usize>()
        .max(1);
    let mut rtp = Vec::with_capacity(slots);
    for _ in 0..slots {
        let s = std::net::UdpSocket::bind("127.0.0.1:0").map_err(sock("RTP socket"))?;
        s.set_nonblocking(true).map_err(sock("RTP socket"))?;
        rtp.push(s);
    }
    let ports: Vec<u16> = rtp
        .iter()
        .filter_map(|s| s.local_addr().ok())
        .map(|a| a.port())
        .collect();
    let t0 = clock();
    let mut spans: Vec<(SpanId, Port)> = Vec::new();
    for (n, s) in cfg.spans.iter().enumerate() {
        if s.driver == Driver::Dahdi {
            spans.push((s.span, Port::Dahdi(Box::new(dahdi::DahdiSpan::open(s)?))));
            continue;
        }
        let port = match DChan::open(&s.dchannel_link)
            .map_err(sock(&format!("span {} D-channel", s.span.0)))?
        {
            Some(d) => {
                let mut sp = Span::e1_pri();
                let _ = sp.set_block_size(s.blocksize, 4);
                Port::External(d, Box::new(sp))
            }
            None => {
                let ex = crate::pstn::exchange::Exchange::with_side(
                    cfg.exchange.clone(),
                    match s.signalling.side() {
                        crate::isdn::Side::User => crate::isdn::Side::Network,
                        crate::isdn::Side::Network => crate::isdn::Side::User,
                    },
                );
                let mut t = SimTrunk::with_exchange(s.span, ex, t0, 0x5EED + n as u64);
                let _ = t.set_block_size(s.blocksize);
                Port::Sim(Box::new(t))
            }
        };
        spans.push((s.span, port));
    }
    let mut iwf = Iwf::new(cfg, addr, engine, ports);
    iwf.pstn_mut().start(t0);
    let context = cfg
        .spans
        .first()
        .map_or_else(|| "from-pstn".to_string(), |s| s.context.clone());
    let status = Arc::new(Mutex::new(Snapshot::default()));
    let stop = Arc::new(AtomicBool::new(false));
    let thread = {
        let status = status.clone();
        let stop = stop.clone();
        std::thread::Builder::new()
            .name("pstn-iwf".into())
            .spawn(move || run(iwf, sip, rtp, spans, engine, status, stop))
            .map_err(sock("thread"))?
    };
    Ok(IwfHandle {
        addr,
        context,
        status,
        stop,
        thread: Some(thread),
    })
}

/// The IWF thread's loop: every 2 ms, SIP in, D-channel frames, line time,
/// PSTN events, audio both ways, SIP out.
fn run(
    mut iwf: Iwf,
    sip: std::net::UdpSocket,
    rtp: Vec<std::net::UdpSocket>,
    mut spans: Vec<(SpanId, Port)>,
    engine: SocketAddr,
    status: Arc<Mutex<Snapshot>>,
    stop: Arc<AtomicBool>,
) {
    let mut buf = vec![0u8; 65_535];
    let mut next_status = clock();
    let mut next_alarms = clock();
    while !stop.load(Ordering::Relaxed) {
        let now = clock();
        while let Ok((n, from)) = sip.recv_from(&mut buf) {
            iwf.handle_sip(&buf[..n], from, now);
        }
        for (id, port) in &mut spans {
            match port {
                Port::External(d, _) => {
                    while let Some(n) = d.recv(&mut buf) {
                        iwf.pstn_mut().handle_frame(*id, &buf[..n], now);
                    }
                }
                Port::Dahdi(d) => d.recv_frames(|f| iwf.pstn_mut().handle_frame(*id, f, now)),
                Port::Sim(_) => {}
            }
        }
        iwf.handle_timeout(now); // T302 of overlap receiving
        iwf.pstn_mut().handle_timeout(now);
        while let Some((sid, f)) = iwf.pstn_mut().poll_transmit() {
            match spans.iter_mut().find(|(i, _)| *i == sid) {
                Some((_, Port::External(d, _))) => d.send(&f),
                Some((_, Port::Sim(t))) => t.tandem_span().send_frame(&f),
                Some((_, Port::Dahdi(d))) => d.send_frame(&f),
                None => {}
            }
        }
        for (_, port) in &mut spans {
            if let Port::Dahdi(d) = port {
                d.flush_frames();
            }
        }
        for (_, port) in &mut spans {
            if let Port::Sim(t) = port {
                t.advance_to(iwf.pstn_mut(), now);
            }
        }
        iwf.handle_pstn_events(now);
        // Audio: B-channel -> RTP.
        let legs: Vec<MediaLeg> = iwf.media_legs().collect();
        dahdi_media(&mut iwf, &mut spans, &legs, &rtp);
        for leg in &legs {
            let Some((sid, _)) = iwf.pstn().channel(leg.call) else {
                continue;
            };
            let Some(span) = span_of(&mut spans, sid) else {
                continue;
            };
            while let Ok(Some(block)) = iwf.pstn().read_audio(leg.call, span) {
                if let (Some(pkt), Some(s)) = (iwf.rtp_out(leg.call, &block), rtp.get(leg.slot)) {
                    let _ = s.send_to(&pkt, leg.remote);
                }
            }
        }
        // RTP -> B-channel (and drain idle sockets).
        for (slot, s) in rtp.iter().enumerate() {
            while let Ok(n) = s.recv(&mut buf) {
                let Some((id, blocks)) = iwf.rtp_in(slot, &buf[..n]) else {
                    continue;
                };
                let Some((sid, ch)) = iwf.pstn().channel(id) else {
                    continue;
                };
                if let Some(d) = dahdi_of(&mut spans, sid) {
                    let ts = u8::try_from(ch.0).unwrap_or(0);
                    for b in blocks {
                        d.write_block(ts, Some(&b));
                    }
                } else if let Some(span) = span_of(&mut spans, sid) {
                    for b in blocks {
                        let _ = iwf.pstn().write_audio(id, span, &b);
                    }
                }
            }
        }
        while let Some(m) = iwf.poll_sip() {
            let _ = sip.send_to(&m, engine);
        }
        while let Some(l) = iwf.poll_log() {
            tracing::info!("{l}");
        }
        for (id, port) in &mut spans {
            if let Port::Dahdi(d) = port {
                if now >= next_alarms {
                    iwf.pstn_mut().set_alarms(*id, d.alarms());
                }
                while let Some(l) = d.poll_log() {
                    tracing::warn!("{l}");
                }
            }
        }
        if now >= next_alarms {
            next_alarms = now + Duration::from_secs(1);
        }
        if now >= next_status {
            next_status = now + Duration::from_millis(100);
            if let Ok(mut s) = status.lock() {
                s.spans = iwf.pstn().show_spans();
                s.channels = iwf.pstn().show_channels();
            }
        }
        std::thread::sleep(Duration::from_millis(2));
    }
}

fn span_of(spans: &mut [(SpanId, Port)], id: SpanId) -> Option<&mut Span> {
    spans
        .iter_mut()
        .find(|(i, _)| *i == id)
        .and_then(|(_, p)| match p {
            Port::Sim(t) => Some(t.tandem_span()),
            Port::External(_, s) => Some(&mut **s),
            Port::Dahdi(_) => None,
        })
}

fn dahdi_of(spans: &mut [(SpanId, Port)], id: SpanId) -> Option<&mut dahdi::DahdiSpan> {
    spans
        .iter_mut()
        .find(|(i, _)| *i == id)
        .and_then(|(_, p)| match p {
            Port::Dahdi(d) => Some(&mut **d),
            _ => None,
        })
}

/// B-channel -> RTP for the calls on DAHDI spans: marks the live timeslots
/// (flushing stale audio of new ones), then turns every whole block the
/// kernel has into one RTP packet.
fn dahdi_media(
    iwf: &mut Iwf,
    spans: &mut [(SpanId, Port)],
    legs: &[MediaLeg],
    rtp: &[std::net::UdpSocket],
) {
    for (sid, port) in spans.iter_mut() {
        let Port::Dahdi(d) = port else { continue };
        let mine: Vec<(MediaLeg, u8)> = legs
            .iter()
            .filter_map(|l| {
                let (s, ch) = iwf.pstn().channel(l.call)?;
                (s == *sid).then(|| (*l, u8::try_from(ch.0).unwrap_or(0)))
            })
            .collect();
        d.set_live(mine.iter().map(|(_, ts)| *ts).collect());
        for (leg, ts) in mine {
            d.read_blocks(ts, |block| {
                if let (Some(pkt), Some(s)) = (iwf.rtp_out(leg.call, block), rtp.get(leg.slot)) {
                    let _ = s.send_to(&pkt, leg.remote);
                }
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resources() {
        assert_eq!(parse_resource("g1/5551234"), Some((1, "5551234".into())));
        assert_eq!(
            parse_resource("G2/0215550100"),
            Some((2, "0215550100".into()))
        );
        assert_eq!(parse_resource("1/555"), None);
        assert_eq!(parse_resource("g1/"), None);
        assert_eq!(parse_resource("g64/1"), None);
        assert_eq!(parse_resource("g1/55a"), None);
        assert_eq!(sipua::percent_decode("g1%2F555"), "g1/555");
        assert_eq!(sipua::percent_decode("100%"), "100%");
        let mut h = crate::sip::Headers::new();
        h.push("Reason", "SIP;cause=200");
        assert_eq!(sipua::reason_cause(&h), None);
        h.push("Reason", "Q.850;cause=17;text=\"busy\"");
        assert_eq!(sipua::reason_cause(&h), Some(17));
    }
}
