//! The analog interworking function: FXS and FXO ports (TDM400P class) as
//! SIP calls to the engine.
//!
//! The IWF runs one [`FxsLine`] or [`FxoLine`] per `[[analog.port]]` and
//! speaks plain SIP over loopback to tandemd's first UDP listener, as a
//! trusted gateway ([`crate::call::Gateway`]). It binds one SIP socket per
//! dialplan context its ports use, so that each port's calls enter its own
//! context; the gateways are registered with technology `ANALOG@<context>`
//! and the engine sends `Dial(DAHDI/<port>)` and `Dial(DAHDI/<port>/<number>)`
//! to the first of them (`Dial(DAHDI/g1/...)` still goes to the PRI gateway).
//!
//! | SIP (engine side) | line |
//! |---|---|
//! | INVITE `sip:5@iwf` (FXS port 5), 100, 180 | ring with the port's cadence, caller ID = PAI (else From) number and display name; `Privacy: id` sends "P" (private) |
//! | 200 + SDP | the phone went off hook |
//! | INVITE `sip:5/5551234@iwf` (FXO port 5), 100, 200 + SDP | seize, dial tone wait, DTMF `5551234` |
//! | INVITE to the engine `sip:<number>@engine`, From/PAI = port's `callerid_number`/`name` | FXS phone dialled `<number>` (DTMF or pulse, interdigit timeout) |
//! | INVITE to the engine `sip:<extension>@engine`, From/PAI = detected caller ID; private: anonymous From + `Privacy: id` | FXO line rang, caller ID decoded, answered on ring N |
//! | 180 / 200 / 4xx from the engine | ringback / talk / busy tone (FXS); hang up (FXO) |
//! | BYE / CANCEL both ways | phone hangs up (FXS); far-end disconnect by polarity reversal, loop current drop or busy tone (FXO) |
//!
//! Media: each port has an RTP socket; line audio (8 kHz linear) becomes
//! G.711 (PCMU or PCMA, as the engine's SDP chose) 20 ms packets, and RTP
//! from the engine becomes line audio.
//!
//! [`Iwf`] is the sans-IO core: SIP datagrams, line hardware events, line
//! audio and RTP in, with `now`; SIP datagrams, RTP packets and
//! [`HwCommand`]s out. [`spawn`] is the edge: a thread with the sockets and
//! the simulated TDM400P ([`drivers::analog::sim::SimCard`]) run in 1 ms
//! steps, rendering tones and caller ID with `dataplane::dsp`, decoding the
//! caller ID the simulated phones hear (`cid_received` in `tandemctl show
//! channels`), and taking simulator commands on `[analog] sim_control`.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::time::Instant;

use dataplane::codec::g711;
use dataplane::dsp::fsk::{Absence, CallerId};

use super::sipua::{self, Dialog, RtpTx, PT_PCMA, PT_PCMU};
use crate::analog::config::{AnalogConfig, Kind, PortConfig};
use crate::analog::{
    fxs::Dialplan as DigitPlan, CallInput, DialMatch, FxoLine, FxsLine, HwCommand, HwEvent,
    LineEvent,
};
use crate::sip::{Message, Method, Request, Response};

mod dahdi;
mod edge;
pub use edge::{spawn, AnalogHandle, IwfError, PortStatus};

/// Gateway technology prefix (`ANALOG@<context>`); `Dial(DAHDI/<port>)` maps to it.
pub const TECH: &str = "ANALOG";

/// Samples per RTP packet (20 ms at 8 kHz).
const PACKET: usize = 160;

/// Q.850 normal clearing.
const CAUSE_NORMAL: u8 = 16;

#[derive(Debug)]
enum Line {
    Fxs(Box<FxsLine>),
    Fxo(Box<FxoLine>),
}

impl Line {
    fn state_name(&self) -> &'static str {
        match self {
            Line::Fxs(l) => l.state_name(),
            Line::Fxo(l) => l.state_name(),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    Early,
    Answered,
    /// We cancelled our INVITE; waiting for its final response.
    Cancelling,
}

#[derive(Debug)]
struct Call {
    dialog: Dialog,
    /// Index of our SIP socket the dialog lives on.
    sock: usize,
    phase: Phase,
    remote_media: Option<SocketAddr>,
    pt: u8,
    /// Audio flows (answered, or early media for FXO dial-out).
    media: bool,
    tx: RtpTx,
}

#[derive(Debug)]
struct Port {
    cfg: PortConfig,
    line: Line,
    call: Option<Call>,
    /// Line audio waiting to fill an RTP packet.
    acc: Vec<i16>,
    /// Caller ID last decoded (FXO) for `show channels`.
    last_cid: Option<CallerId>,
}

/// The sans-IO core of the analog IWF.
pub struct Iwf {
    ports: Vec<Port>,
    /// Our SIP sockets: (context, address).
    sips: Vec<(String, SocketAddr)>,
    engine: SocketAddr,
    /// RTP address of each port's media socket (same order as the ports).
    media: Vec<SocketAddr>,
    sip_out: VecDeque<(usize, Vec<u8>)>,
    rtp_out: VecDeque<(usize, SocketAddr, Vec<u8>)>,
    hw: VecDeque<(u16, HwCommand)>,
    log: VecDeque<String>,
}

impl std::fmt::Debug for Iwf {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Iwf")
            .field("ports", &self.ports.len())
            .field("engine", &self.engine)
            .finish_non_exhaustive()
    }
}

impl Iwf {
    /// A core for `cfg`'s ports. `sips` are our SIP addresses, one per
    /// context (see [`Iwf::contexts`]); `media` the RTP address of each port
    /// in `cfg.ports` order; `dialplan` decides when an FXS phone's digits
    /// are a complete number.
    pub fn new(
        cfg: &AnalogConfig,
        dialplan: &crate::dialplan::Dialplan,
        sips: Vec<(String, SocketAddr)>,
        engine: SocketAddr,
        media: Vec<SocketAddr>,
    ) -> Result<Self, crate::analog::AnalogError> {
        let mut ports = Vec::new();
        for p in &cfg.ports {
            let line = match p.kind {
                Kind::Fxs => Line::Fxs(Box::new(FxsLine::new(
                    p.fxs(),
                    digit_plan(dialplan, &p.context),
                ))),
                Kind::Fxo => Line::Fxo(Box::new(FxoLine::new(p.fxo())?)),
            };
            ports.push(Port {
                cfg: p.clone(),
                line,
                call: None,
                acc: Vec::with_capacity(PACKET),
                last_cid: None,
            });
        }
        Ok(Iwf {
            ports,
            sips,
            engine,
            media,
            sip_out: VecDeque::new(),
            rtp_out: VecDeque::new(),
            hw: VecDeque::new(),
            log: VecDeque::new(),
        })
    }

    /// The contexts the ports use, in first-use order (one SIP socket each).
    pub fn contexts(cfg: &AnalogConfig) -> Vec<String> {
        let mut v: Vec<String> = Vec::new();
        for p in &cfg.ports {
            if !v.contains(&p.context) {
                v.push(p.context.clone());
            }
        }
        if v.is_empty() {
            v.push("default".into());
        }
        v
    }

    /// Next SIP datagram: (socket index, bytes) for the engine.
    pub fn poll_sip(&mut self) -> Option<(usize, Vec<u8>)> {
        self.sip_out.pop_front()
    }

    /// Next RTP packet: (port index, destination, bytes).
    pub fn poll_rtp(&mut self) -> Option<(usize, SocketAddr, Vec<u8>)> {
        self.rtp_out.pop_front()
    }

    /// Next command for the card: (channel, command).
    pub fn poll_hw(&mut self) -> Option<(u16, HwCommand)> {
        self.hw.pop_front()
    }

    /// Next log line.
    pub fn poll_log(&mut self) -> Option<String> {
        self.log.pop_front()
    }

    /// Calls in progress.
    pub fn call_count(&self) -> usize {
        self.ports.iter().filter(|p| p.call.is_some()).count()
    }

    /// (channel, line state, call-id, last caller ID decoded on an FXO port) per port.
    pub fn port_states(&self) -> Vec<(u16, &'static str, Option<&str>, Option<&CallerId>)> {
        self.ports
            .iter()
            .map(|p| {
                (
                    p.cfg.port,
                    p.line.state_name(),
                    p.call.as_ref().map(|c| c.dialog.call_id.as_str()),
                    p.last_cid.as_ref(),
                )
            })
            .collect()
    }

    fn note(&mut self, s: String) {
        if self.log.len() < 256 {
            self.log.push_back(s);
        }
    }

    fn send(&mut self, sock: usize, m: impl Into<Message>) {
        self.sip_out.push_back((sock, sipua::bytes(m)));
    }

    fn index(&self, chan: u16) -> Option<usize> {
        self.ports.iter().position(|p| p.cfg.port == chan)
    }

    fn sock_for(&self, context: &str) -> usize {
        self.sips
            .iter()
            .position(|(c, _)| c == context)
            .unwrap_or(0)
    }

    fn by_call_id(&self, id: &str) -> Option<usize> {
        self.ports
            .iter()
            .position(|p| p.call.as_ref().is_some_and(|c| c.dialog.call_id == id))
    }

    /// One SIP datagram that arrived on our socket `sock` from `from`
    /// (only the engine is served).
    pub fn handle_sip(&mut self, sock: usize, bytes: &[u8], from: SocketAddr, now: Instant) {
        if from != self.engine {
            self.note(format!(
                "analog iwf: ignored SIP from {from} (not the engine)"
            ));
            return;
        }
        match Message::parse(bytes) {
            Ok(Message::Request(r)) => self.on_request(sock, r, now),
            Ok(Message::Response(r)) => self.on_response(r, now),
            Err(e) => self.note(format!("analog iwf: bad SIP from {from}: {e}")),
        }
        self.pump(now);
    }

    fn on_request(&mut self, sock: usize, req: Request, now: Instant) {
        let Some(call_id) = req.call_id().map(str::to_string) else {
            self.send(
                sock,
                Response::for_request(&req, 400).with_reason("Missing Call-ID"),
            );
            return;
        };
        let known = self.by_call_id(&call_id);
        match (req.method.clone(), known) {
            (Method::Invite, None) => self.new_from_engine(sock, req, now),
            (Method::Invite, Some(i)) => {
                // A retransmission or a re-INVITE: answer as things stand.
                let Some(c) = &self.ports[i].call else { return };
                let (code, sdp) = if c.phase == Phase::Answered {
                    (
                        200,
                        Some(sipua::sdp(self.media[i], &[c.pt], "Tandem analog")),
                    )
                } else {
                    (100, None)
                };
                let mut r = c.dialog.response(code, sdp, None);
                if code == 100 {
                    r = Response::for_request(&req, 100);
                }
                self.send(sock, r);
            }
            (Method::Ack, _) => {}
            (Method::Cancel, Some(i)) => {
                self.send(sock, Response::for_request(&req, 200));
                let early_uas = self.ports[i]
                    .call
                    .as_ref()
                    .is_some_and(|c| c.dialog.role == sipua::Role::Uas && c.phase == Phase::Early);
                if early_uas {
                    if let Some(c) = &self.ports[i].call {
                        let r = c.dialog.response(487, None, None);
                        self.send(c.sock, r);
                    }
                    self.release_line(i, now);
                    self.ports[i].call = None;
                }
            }
            (Method::Bye, Some(i)) => {
                self.send(sock, Response::for_request(&req, 200));
                self.note(format!(
                    "analog iwf: port {}: the engine hung up",
                    self.ports[i].cfg.port
                ));
                self.release_line(i, now);
                self.ports[i].call = None;
            }
            (Method::Options, _) => {
                let mut r = Response::for_request(&req, 200);
                r.headers.push("Allow", "INVITE, ACK, CANCEL, BYE, OPTIONS");
                self.send(sock, r);
            }
            (_, None) => self.send(sock, Response::for_request(&req, 481)),
            (_, Some(_)) => self.send(sock, Response::for_request(&req, 501)),
        }
    }

    fn reject(&mut self, sock: usize, req: &Request, code: u16, why: &str) {
        self.note(format!("analog iwf: {} rejected {code}: {why}", req.uri));
        let mut r = Response::for_request(req, code);
        r.set_to_tag(&crate::sip::new_tag());
        self.send(sock, r);
    }

    /// An INVITE from the engine: ring an FXS phone, or dial out on an FXO line.
    fn new_from_engine(&mut self, sock: usize, req: Request, now: Instant) {
        self.send(sock, Response::for_request(&req, 100));
        let Some((chan, number)) = sipua::request_user(&req)
            .as_deref()
            .and_then(parse_resource)
        else {
            self.reject(sock, &req, 404, "expected <port> or <port>/<number>");
            return;
        };
        let Some(i) = self.index(chan) else {
            self.reject(sock, &req, 404, &format!("no analog port {chan}"));
            return;
        };
        let Some((remote_media, pt)) = sipua::pick_g711(&req.body) else {
            self.reject(sock, &req, 488, "no PCMU/PCMA audio offered");
            return;
        };
        if self.ports[i].call.is_some() || self.ports[i].line.state_name() != "idle" {
            self.reject(sock, &req, 486, &format!("port {chan} is busy"));
            return;
        }
        let Some(dialog) = Dialog::uas(req.clone(), self.sips[sock].1, self.engine) else {
            self.reject(sock, &req, 400, "no From");
            return;
        };
        let input = match (&self.ports[i].cfg.kind, number) {
            (Kind::Fxs, None) => {
                let (num, name, privacy) = sipua::caller_of(&req);
                let mut cid = CallerId::default();
                if privacy {
                    cid.number_absent = Some(Absence::Private);
                    cid.name_absent = Some(Absence::Private);
                } else {
                    match num {
                        Some(n) => cid.number = Some(n),
                        None => cid.number_absent = Some(Absence::Unavailable),
                    }
                    cid.name = name;
                }
                cid.datetime = None;
                CallInput::Incoming { caller: Some(cid) }
            }
            (Kind::Fxo, Some(n)) => CallInput::Dial { number: n },
            (Kind::Fxs, Some(_)) => {
                self.reject(
                    sock,
                    &req,
                    404,
                    &format!("port {chan} is FXS: no number to dial"),
                );
                return;
            }
            (Kind::Fxo, None) => {
                self.reject(
                    sock,
                    &req,
                    404,
                    &format!("port {chan} is FXO: give <port>/<number>"),
                );
                return;
            }
        };
        let r = match &mut self.ports[i].line {
            Line::Fxs(l) => l.handle_call(input, now),
            Line::Fxo(l) => l.handle_call(input, now),
        };
        if let Err(e) = r {
            self.reject(sock, &req, 486, &e.to_string());
            return;
        }
        let fxs = self.ports[i].cfg.kind == Kind::Fxs;
        self.note(format!(
            "analog iwf: port {chan}: {} from the engine",
            if fxs { "ringing" } else { "dialling out" }
        ));
        if fxs {
            let r = dialog.response(180, None, None);
            self.send(sock, r);
        }
        self.ports[i].call = Some(Call {
            dialog,
            sock,
            phase: Phase::Early,
            remote_media: Some(remote_media),
            pt,
            media: false,
            tx: RtpTx::default(),
        });
    }

    fn release_line(&mut self, i: usize, now: Instant) {
        let r = match &mut self.ports[i].line {
            Line::Fxs(l) => l.handle_call(CallInput::Release, now),
            Line::Fxo(l) => l.handle_call(CallInput::Release, now),
        };
        if let Err(e) = r {
            self.note(format!("analog iwf: port {}: {e}", self.ports[i].cfg.port));
        }
        self.ports[i].acc.clear();
    }

    fn on_response(&mut self, resp: Response, now: Instant) {
        let Some(i) = resp.call_id().and_then(|id| self.by_call_id(id)) else {
            return;
        };
        let Some(cseq) = resp.cseq() else { return };
        let Some(call) = &mut self.ports[i].call else {
            return;
        };
        if cseq.method != Method::Invite || call.dialog.role != sipua::Role::Uac {
            return;
        }
        let code = resp.code;
        if code < 200 {
            if code == 180 || code == 183 {
                if let Line::Fxs(l) = &mut self.ports[i].line {
                    let _ = l.handle_call(CallInput::Alerting, now);
                }
            }
            return;
        }
        let ack = call.dialog.ack(&resp);
        let sock = call.sock;
        self.send(sock, ack);
        let Some(call) = &mut self.ports[i].call else {
            return;
        };
        if resp.is_success() {
            if call.phase == Phase::Answered {
                return; // a retransmitted 200: ACKed again
            }
            if call.phase == Phase::Cancelling {
                // The line hung up meanwhile: end the dialog.
                let bye = call.dialog.request(Method::Bye, Some(CAUSE_NORMAL));
                self.send(sock, bye);
                self.ports[i].call = None;
                return;
            }
            if let Some((addr, pt)) = sipua::pick_g711(&resp.body) {
                call.remote_media = Some(addr);
                call.pt = pt;
            }
            call.media = true;
            call.phase = Phase::Answered;
            if let Line::Fxs(l) = &mut self.ports[i].line {
                let _ = l.handle_call(CallInput::Answered, now);
            }
            self.note(format!(
                "analog iwf: port {}: the engine answered",
                self.ports[i].cfg.port
            ));
        } else {
            let cancelling = call.phase == Phase::Cancelling;
            self.note(format!(
                "analog iwf: port {}: call refused {code}",
                self.ports[i].cfg.port
            ));
            self.ports[i].call = None;
            if !cancelling {
                self.release_line(i, now);
            }
        }
    }

    /// A hardware event on channel `chan`.
    pub fn handle_hw(&mut self, chan: u16, ev: HwEvent, now: Instant) {
        let Some(i) = self.index(chan) else { return };
        match &mut self.ports[i].line {
            Line::Fxs(l) => l.handle_hw(ev, now),
            Line::Fxo(l) => l.handle_hw(ev, now),
        }
        self.pump(now);
    }

    /// Line audio from channel `chan` (what the phone or the exchange line
    /// sends us, 8 kHz linear): to the line's detectors, and as RTP to the
    /// engine while the call's media flows.
    pub fn handle_audio(&mut self, chan: u16, samples: &[i16], now: Instant) {
        let Some(i) = self.index(chan) else { return };
        let p = &mut self.ports[i];
        match &mut p.line {
            Line::Fxs(l) => l.handle_audio(samples, now),
            Line::Fxo(l) => l.handle_audio(samples, now),
        }
        if let Some(c) = p.call.as_mut().filter(|c| c.media) {
            if let Some(dest) = c.remote_media {
                for &s in samples {
                    p.acc.push(s);
                    if p.acc.len() == PACKET {
                        let mut pay = [0u8; PACKET];
                        if c.pt == PT_PCMA {
                            g711::encode_alaw(&p.acc, &mut pay);
                        } else {
                            g711::encode_ulaw(&p.acc, &mut pay);
                        }
                        p.acc.clear();
                        if let Some(pkt) = c.tx.packet(c.pt, &pay) {
                            self.rtp_out.push_back((i, dest, pkt));
                        }
                    }
                }
            }
        }
        self.pump(now);
    }

    /// An RTP packet received on port index `i`'s media socket: the line
    /// audio it carries (other payload types and calls without media: none).
    pub fn handle_rtp(&mut self, i: usize, pkt: &[u8]) -> Option<(u16, Vec<i16>)> {
        let p = self.ports.get(i)?;
        p.call.as_ref().filter(|c| c.media)?;
        let pkt = dataplane::wire::rtp::Packet::new_checked(pkt).ok()?;
        let pt = pkt.payload_type().get();
        let pay = pkt.payload();
        let mut pcm = vec![0i16; pay.len()];
        match pt {
            PT_PCMU => g711::decode_ulaw(pay, &mut pcm),
            PT_PCMA => g711::decode_alaw(pay, &mut pcm),
            _ => return None,
        }
        Some((p.cfg.port, pcm))
    }

    /// Timers of the lines (interdigit, FXO ring timeout and dial delay).
    pub fn handle_timeout(&mut self, now: Instant) {
        for p in &mut self.ports {
            match &mut p.line {
                Line::Fxs(l) => {
                    if l.poll_timeout().is_some_and(|t| t <= now) {
                        l.handle_timeout(now);
                    }
                }
                Line::Fxo(l) => {
                    if l.poll_timeout().is_some_and(|t| t <= now) {
                        l.handle_timeout(now);
                    }
                }
            }
        }
        self.pump(now);
    }

    /// Drains the lines: commands to the card queue, events into SIP.
    fn pump(&mut self, now: Instant) {
        for i in 0..self.ports.len() {
            loop {
                let p = &mut self.ports[i];
                let (cmd, ev) = match &mut p.line {
                    Line::Fxs(l) => (l.poll_command(), l.poll_event()),
                    Line::Fxo(l) => (l.poll_command(), l.poll_event()),
                };
                if cmd.is_none() && ev.is_none() {
                    break;
                }
                if let Some(cmd) = cmd {
                    if matches!(cmd, HwCommand::SendDtmf(_)) {
                        self.dialled_out(i);
                    }
                    self.hw.push_back((self.ports[i].cfg.port, cmd));
                }
                if let Some(ev) = ev {
                    self.on_line_event(i, ev, now);
                }
            }
        }
    }

    /// FXO dial-out: the digits go out now; loop start gives no answer
    /// signal, so the call is answered (as Asterisk does) and the caller
    /// hears the line's progress tones.
    fn dialled_out(&mut self, i: usize) {
        let media = self.media[i];
        let Some(c) = &mut self.ports[i].call else {
            return;
        };
        if c.dialog.role == sipua::Role::Uas && c.phase == Phase::Early {
            c.phase = Phase::Answered;
            c.media = true;
            let r = c
                .dialog
                .response(200, Some(sipua::sdp(media, &[c.pt], "Tandem analog")), None);
            let sock = c.sock;
            self.send(sock, r);
        }
    }

    fn on_line_event(&mut self, i: usize, ev: LineEvent, now: Instant) {
        let chan = self.ports[i].cfg.port;
        match ev {
            LineEvent::Dialed { number } => self.call_engine_from_phone(i, number),
            LineEvent::Incoming { caller } => {
                self.ports[i].last_cid = caller.clone();
                self.call_engine_from_line(i, caller);
            }
            LineEvent::Answered => {
                let media = self.media[i];
                let Some(c) = &mut self.ports[i].call else {
                    return;
                };
                if c.dialog.role == sipua::Role::Uas && c.phase == Phase::Early {
                    c.phase = Phase::Answered;
                    c.media = true;
                    let r = c.dialog.response(
                        200,
                        Some(sipua::sdp(media, &[c.pt], "Tandem analog")),
                        None,
                    );
                    let sock = c.sock;
                    self.send(sock, r);
                    self.note(format!("analog iwf: port {chan}: answered"));
                }
            }
            LineEvent::HungUp | LineEvent::FarEndDisconnect(_) => {
                self.note(format!("analog iwf: port {chan}: line cleared ({ev:?})"));
                self.hang_up_sip(i, now);
            }
            LineEvent::Flash => self.note(format!("analog iwf: port {chan}: hook flash")),
        }
    }

    /// The line side is gone: end the SIP side as its state requires.
    fn hang_up_sip(&mut self, i: usize, _now: Instant) {
        self.ports[i].acc.clear();
        let Some(mut c) = self.ports[i].call.take() else {
            return;
        };
        match (c.dialog.role, c.phase) {
            (_, Phase::Answered) => {
                let bye = c.dialog.request(Method::Bye, Some(CAUSE_NORMAL));
                self.send(c.sock, bye);
            }
            (sipua::Role::Uas, Phase::Early) => {
                let r = c.dialog.response(480, None, Some(CAUSE_NORMAL));
                self.send(c.sock, r);
            }
            (sipua::Role::Uac, Phase::Early) => {
                let r = c.dialog.cancel(Some(CAUSE_NORMAL));
                self.send(c.sock, r);
                c.phase = Phase::Cancelling;
                c.media = false;
                // Kept until the INVITE's final response (ACK, and BYE on a 200).
                self.ports[i].call = Some(c);
            }
            (_, Phase::Cancelling) => self.ports[i].call = Some(c),
        }
    }

    /// An FXS phone dialled `number`: INVITE the engine with the port's caller ID.
    fn call_engine_from_phone(&mut self, i: usize, number: String) {
        let cfg = &self.ports[i].cfg;
        let sock = self.sock_for(&cfg.context);
        let me = self.sips[sock].1;
        let host = me;
        let user = cfg
            .callerid_number
            .clone()
            .unwrap_or_else(|| cfg.extension.clone());
        let name = cfg.callerid_name.clone();
        let from = match &name {
            Some(n) => format!("\"{}\" <sip:{user}@{host}>", n.replace('"', "")),
            None => format!("<sip:{user}@{host}>"),
        };
        let extra = vec![("P-Asserted-Identity", from.clone())];
        self.note(format!(
            "analog iwf: port {}: phone dialled {number} (caller {user})",
            cfg.port
        ));
        self.invite_engine(i, sock, &number, &from, &extra);
    }

    /// Send the engine an INVITE for `to_user` on `sock` (offering the port's
    /// RTP endpoint) and make it port `i`'s call.
    fn invite_engine(
        &mut self,
        i: usize,
        sock: usize,
        to_user: &str,
        from: &str,
        extra: &[(&str, String)],
    ) {
        let me = self.sips[sock].1;
        let sdp = sipua::sdp(self.media[i], &[PT_PCMU, PT_PCMA], "Tandem analog");
        let dialog = Dialog::uac(to_user, from, extra, sdp, me, self.engine);
        self.send(sock, dialog.invite.clone());
        self.ports[i].call = Some(Call {
            dialog,
            sock,
            phase: Phase::Early,
            remote_media: None,
            pt: PT_PCMU,
            media: false,
            tx: RtpTx::default(),
        });
    }

    /// An FXO line rang and was answered: INVITE the engine for the port's
    /// extension with the caller ID the line decoded.
    fn call_engine_from_line(&mut self, i: usize, caller: Option<CallerId>) {
        let cfg = &self.ports[i].cfg;
        let sock = self.sock_for(&cfg.context);
        let me = self.sips[sock].1;
        let number = caller
            .as_ref()
            .and_then(|c| c.number.clone())
            .filter(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()));
        let restricted = caller
            .as_ref()
            .is_some_and(|c| c.number_absent == Some(Absence::Private) && c.number.is_none());
        let name = caller
            .as_ref()
            .and_then(|c| c.name.clone())
            .map(|n| n.replace('"', ""));
        let mut extra = Vec::new();
        let from = match (&number, restricted) {
            (Some(n), false) => {
                let f = match &name {
                    Some(nm) => format!("\"{nm}\" <sip:{n}@{me}>"),
                    None => format!("<sip:{n}@{me}>"),
                };
                extra.push(("P-Asserted-Identity", f.clone()));
                f
            }
            (_, true) => {
                extra.push(("Privacy", "id".to_string()));
                "\"Anonymous\" <sip:anonymous@anonymous.invalid>".to_string()
            }
            (None, false) => format!("<sip:anonymous@{me}>"),
        };
        let extension = cfg.extension.clone();
        self.note(format!(
            "analog iwf: port {}: inbound call from {}{} to {} in {}",
            cfg.port,
            number.as_deref().unwrap_or("-"),
            if restricted { " (restricted)" } else { "" },
            cfg.extension,
            cfg.context
        ));
        self.invite_engine(i, sock, &extension, &from, &extra);
    }
}

/// The FXS digit collector's view of the dialplan: complete when the digits
/// are an extension that cannot grow, more digits while some extension could
/// still match, no match otherwise.
fn digit_plan(dp: &crate::dialplan::Dialplan, context: &str) -> DigitPlan {
    let dp = dp.clone();
    let ctx = context.to_string();
    Box::new(move |d: &str| {
        let exists = dp.exists(&ctx, d, 1);
        let longer = dp.can_match_longer(&ctx, d);
        match (exists, longer) {
            (true, false) => DialMatch::Complete,
            (_, true) => DialMatch::MoreDigits,
            (false, false) => DialMatch::NoMatch,
        }
    })
}

/// `<port>` or `<port>/<number>` (`Dial(DAHDI/5)`, `Dial(DAHDI/5/5551234)`).
pub fn parse_resource(r: &str) -> Option<(u16, Option<String>)> {
    let r = r.split('@').next().unwrap_or(r);
    let (port, num) = match r.split_once('/') {
        Some((p, n)) => (p, Some(n)),
        None => (r, None),
    };
    let port = port.parse::<u16>().ok().filter(|p| *p > 0)?;
    match num {
        None => Some((port, None)),
        Some(n)
            if !n.is_empty()
                && n.bytes()
                    .all(|b| b.is_ascii_digit() || b == b'*' || b == b'#' || b == b',') =>
        {
            Some((port, Some(n.to_string())))
        }
        Some(_) => None,
    }
}

/// Whether a Dial resource addresses an analog port (`5`, `5/5551234`)
/// rather than a PRI group (`g1/5551234`).
pub fn is_port_resource(r: &str) -> bool {
    parse_resource(r).is_some()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn cfg() -> AnalogConfig {
        #[derive(serde::Deserialize)]
        struct Doc {
            analog: crate::analog::config::RawAnalog,
        }
        let d: Doc = toml::from_str(AnalogConfig::EMBEDDED_DEFAULT).unwrap();
        AnalogConfig::from_raw(&d.analog).unwrap()
    }

    fn plan() -> crate::dialplan::Dialplan {
        crate::dialplan::Dialplan::parse(
            "[default]\nexten => _1XXX,1,Dial(SIP/${EXTEN})\nexten => 201,1,Dial(DAHDI/1)\n",
            "t",
        )
        .unwrap()
    }

    fn addr(p: u16) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], p))
    }

    fn iwf() -> Iwf {
        let c = cfg();
        let media = (0..c.ports.len() as u16).map(|i| addr(7000 + i)).collect();
        Iwf::new(
            &c,
            &plan(),
            vec![("default".into(), addr(6000))],
            addr(5060),
            media,
        )
        .unwrap()
    }

    fn sips(i: &mut Iwf) -> Vec<Message> {
        std::iter::from_fn(|| i.poll_sip())
            .map(|(_, b)| Message::parse(&b).unwrap())
            .collect()
    }

    fn invite(user: &str) -> Request {
        let mut r = Request::new(Method::Invite, format!("sip:{user}@127.0.0.1:6000"));
        r.headers
            .push("Via", "SIP/2.0/UDP 127.0.0.1:5060;branch=z9hG4bKa");
        r.headers.push("From", "\"Bob\" <sip:1001@127.0.0.1>;tag=x");
        r.headers.push("To", format!("<sip:{user}@127.0.0.1:6000>"));
        r.headers.push("Call-ID", "c-1");
        r.headers.push("CSeq", "1 INVITE");
        r.headers.push("Contact", "<sip:t@127.0.0.1:5060>");
        r.headers
            .push("P-Asserted-Identity", "\"Alice Smith\" <sip:5551234@x>");
        r.body = sipua::sdp(addr(20000), &[0], "e").into_bytes();
        r
    }

    #[test]
    fn resources() {
        assert_eq!(parse_resource("5"), Some((5, None)));
        assert_eq!(
            parse_resource("5/5551234"),
            Some((5, Some("5551234".into())))
        );
        assert_eq!(parse_resource("g1/5551234"), None);
        assert_eq!(parse_resource("0"), None);
        assert_eq!(parse_resource("5/55a"), None);
        assert!(is_port_resource("12"));
    }

    #[test]
    fn engine_invite_rings_the_phone_with_caller_id_and_answers() {
        let t0 = Instant::now();
        let mut i = iwf();
        i.handle_sip(0, &sipua::bytes(invite("1")), addr(5060), t0);
        let out = sips(&mut i);
        let codes: Vec<u16> = out
            .iter()
            .filter_map(|m| match m {
                Message::Response(r) => Some(r.code),
                _ => None,
            })
            .collect();
        assert_eq!(codes, vec![100, 180]);
        let cmds: Vec<_> = std::iter::from_fn(|| i.poll_hw()).collect();
        assert_eq!(
            cmds,
            vec![(
                1,
                HwCommand::Ring {
                    cadence: vec![2000, 4000]
                }
            )]
        );
        i.handle_hw(1, HwEvent::RingerOn, t0);
        i.handle_hw(1, HwEvent::RingerOff, t0 + Duration::from_secs(2));
        let Some((1, HwCommand::SendCallerId { cid, .. })) = i.poll_hw() else {
            panic!("caller ID after the first ring");
        };
        assert_eq!(cid.number.as_deref(), Some("5551234"));
        assert_eq!(cid.name.as_deref(), Some("Alice Smith"));
        i.handle_hw(1, HwEvent::OffHook, t0 + Duration::from_secs(7));
        let out = sips(&mut i);
        assert!(matches!(&out[..], [Message::Response(r)] if r.code == 200 && !r.body.is_empty()));
        // Audio: 160 samples make one RTP packet to the engine's address.
        i.handle_audio(1, &[1000i16; 160], t0);
        let (_, dest, pkt) = i.poll_rtp().unwrap();
        assert_eq!(dest, addr(20000));
        assert_eq!(pkt.len(), 172);
        // The phone hangs up: BYE.
        i.handle_hw(1, HwEvent::OnHook, t0 + Duration::from_secs(9));
        let out = sips(&mut i);
        assert!(matches!(&out[..], [Message::Request(r)] if r.method == Method::Bye));
        assert_eq!(i.call_count(), 0);
    }

    #[test]
    fn busy_port_and_privacy() {
        let t0 = Instant::now();
        let mut i = iwf();
        let mut inv = invite("2");
        inv.headers.push("Privacy", "id");
        i.handle_sip(0, &sipua::bytes(inv), addr(5060), t0);
        let _ = sips(&mut i);
        let mut second = invite("2");
        second.headers.set("Call-ID", "c-2");
        i.handle_sip(0, &sipua::bytes(second), addr(5060), t0);
        let out = sips(&mut i);
        assert!(matches!(out.last(), Some(Message::Response(r)) if r.code == 486));
        // Caller ID of the first call: private.
        i.handle_hw(2, HwEvent::RingerOn, t0);
        i.handle_hw(2, HwEvent::RingerOff, t0);
        let cid = std::iter::from_fn(|| i.poll_hw())
            .find_map(|(_, c)| match c {
                HwCommand::SendCallerId { cid, .. } => Some(cid),
                _ => None,
            })
            .unwrap();
        assert_eq!(cid.number_absent, Some(Absence::Private));
        assert_eq!(cid.number, None);
        // The engine cancels: 487 and the ringing stops.
        let mut cancel = Request::new(Method::Cancel, "sip:2@127.0.0.1:6000");
        cancel
            .headers
            .push("Via", "SIP/2.0/UDP 127.0.0.1:5060;branch=z9hG4bKa");
        cancel
            .headers
            .push("From", "\"Bob\" <sip:1001@127.0.0.1>;tag=x");
        cancel.headers.push("To", "<sip:2@127.0.0.1:6000>");
        cancel.headers.push("Call-ID", "c-1");
        cancel.headers.push("CSeq", "1 CANCEL");
        i.handle_sip(0, &sipua::bytes(cancel), addr(5060), t0);
        let out = sips(&mut i);
        assert!(matches!(out.last(), Some(Message::Response(r)) if r.code == 487));
        assert_eq!(i.poll_hw(), Some((2, HwCommand::RingOff)));
    }

    #[test]
    fn fxo_inbound_with_private_caller_id_invites_anonymously() {
        let t0 = Instant::now();
        let mut i = iwf();
        let mut cid = CallerId::default();
        cid.number_absent = Some(Absence::Private);
        // Drive the line through its ring count; its caller ID detector
        // hears nothing here, so feed the event path directly.
        i.ports[4].line = Line::Fxo(Box::new(FxoLine::new(i.ports[4].cfg.fxo()).unwrap()));
        i.call_engine_from_line(4, Some(cid));
        let out = sips(&mut i);
        let Some(Message::Request(r)) = out.first() else {
            panic!()
        };
        assert_eq!(r.uri, "sip:200@127.0.0.1:5060");
        assert_eq!(r.headers.get("Privacy"), Some("id"));
        assert!(r.headers.get("From").unwrap().contains("anonymous"));
        // The engine answers; then the far end disconnects (polarity): BYE.
        let mut ok = Response::for_request(r, 200);
        ok.set_to_tag("b");
        ok.headers.push("Contact", "<sip:t@127.0.0.1:5060>");
        ok.body = sipua::sdp(addr(20002), &[8], "e").into_bytes();
        i.handle_sip(0, &sipua::bytes(ok), addr(5060), t0);
        let out = sips(&mut i);
        assert!(matches!(&out[..], [Message::Request(a)] if a.method == Method::Ack));
        i.hang_up_sip(4, t0);
        let out = sips(&mut i);
        assert!(matches!(&out[..], [Message::Request(b)] if b.method == Method::Bye));
    }
}
