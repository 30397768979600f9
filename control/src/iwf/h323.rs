//! The H.323 interworking function: H.225.0 calls on one side, SIP to the call
//! engine on the other (ARCHITECTURE.md's interworking table).
//!
//! | H.323 / Q.931        | SIP                                   |
//! |----------------------|---------------------------------------|
//! | Setup (fastStart)    | INVITE (SDP offer)                    |
//! | Call Proceeding      | 100 Trying                            |
//! | Alerting             | 180 Ringing (SDP if fastStart agreed) |
//! | Progress             | 183 Session Progress                  |
//! | Connect (fastStart)  | 200 OK (SDP answer) + ACK             |
//! | Release Complete     | BYE / CANCEL / final error            |
//!
//! Release causes map with RFC 3398 ([`crate::h323::cause`]); a SIP `Reason:
//! Q.850;cause=N` header (RFC 3326) wins over the status code when present.
//! Caller identity: the calling number comes from `P-Asserted-Identity` (else
//! From) and `Privacy: id` sets presentation restricted; the other way, a
//! restricted number goes out as an anonymous From with the number in
//! `P-Asserted-Identity` and `Privacy: id` (the engine trusts its gateways).
//!
//! Media goes straight from the H.323 peer to the dataplane: the fastStart offer
//! carries the RTP address of the engine's SDP, and the SDP Tandem gets back
//! carries the peer's fastStart RTP address.
//!
//! [`H323Iwf`] is sans-IO: it takes SIP datagrams, TCP events and bytes plus
//! `now`, and returns [`Output`]s (datagrams to send, connections to open,
//! bytes to write, connections to close); [`net`] runs it on sockets. SIP
//! retransmissions are a [`TransactionLayer`]'s, so repeated requests are
//! answered idempotently.

pub mod net;

use std::collections::{HashMap, VecDeque};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::{Duration, Instant};

use super::sipua::{self, Dialog};
use crate::h323::call::{CallConfig, CallEvent, H323Call, Media};
use crate::h323::cause::{q850_to_sip, sip_to_q850};
use crate::h323::h245::Codec as H245Codec;
use crate::sdp::{Codec, SessionDescription};
use crate::sip::{
    Incoming, Message, Method, Request, Response, TransactionLayer, Transmit, TxEvent, TxKey, Uri,
};

/// Default H.225.0 call signalling port.
pub const H225_PORT: u16 = 1720;
/// How long a finished call is remembered (late retransmissions, stray 2xx).
const LINGER: Duration = Duration::from_secs(32);

/// What the IWF needs to know.
#[derive(Debug, Clone)]
pub struct IwfConfig {
    /// The IWF's own SIP address (Via, Contact, From host).
    pub sip_addr: SocketAddr,
    /// The engine's SIP address: every SIP request goes there.
    pub engine: SocketAddr,
    /// Voice codecs allowed on the H.323 side (empty: any Tandem supports).
    pub codecs: Vec<Codec>,
    /// Offer H.245 tunnelling to H.323 peers.
    pub tunnelling: bool,
}

/// One H.225.0 TCP connection (one call).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ConnId(pub u64);

/// What the edge must do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Output {
    /// Send a SIP datagram.
    Sip(Transmit),
    /// Open a TCP connection to `addr`; report with [`H323Iwf::handle_connected`] or
    /// [`H323Iwf::handle_connect_failed`].
    Connect {
        /// The call's connection.
        conn: ConnId,
        /// The H.323 peer's call signalling address.
        addr: SocketAddr,
    },
    /// Write bytes (TPKT frames) on a connection.
    Write {
        /// The connection.
        conn: ConnId,
        /// The bytes.
        bytes: Vec<u8>,
    },
    /// Close a connection once the writes before it are done.
    Close {
        /// The connection.
        conn: ConnId,
    },
}

/// Where the SIP side of a call stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum SipState {
    /// No final response yet.
    Early,
    /// CANCEL sent (we are the UAC), waiting for the INVITE's final response.
    Cancelling,
    /// 2xx sent or received.
    Answered,
    /// Final error, BYE sent or received.
    Ended,
}

/// A Setup waiting for its TCP connection.
#[derive(Debug, Clone)]
struct PendingSetup {
    calling: String,
    called: String,
    display: Option<String>,
    restricted: bool,
}

/// One call: an H.225.0 leg and a SIP dialog with the engine.
#[derive(Debug)]
struct Call {
    h323: H323Call,
    /// True when the engine called us (SIP UAS, H.323 caller).
    from_sip: bool,
    sip: SipState,
    /// The SIP dialog with the engine (none before an H.323 caller's Setup).
    dialog: Option<Dialog>,
    inv_tx: Option<TxKey>,
    /// The SDP offer's payload type per codec (SIP -> H.323 calls).
    offer_pts: Vec<(Codec, u8)>,
    /// The SDP we sent (to repeat in 2xx and re-INVITE answers).
    local_sdp: Option<String>,
    /// The caller's RTP address from the fastStart offer (H.323 -> SIP calls).
    peer_rtp: Option<SocketAddr>,
    pending: Option<PendingSetup>,
    /// The ACK for the 2xx we received (resent for each 2xx copy).
    ack: Option<Request>,
    alerted: bool,
    /// TCP gone or never opened.
    conn_closed: bool,
    close_sent: bool,
    forget_at: Option<Instant>,
}

/// The H.323 interworking function (sans-IO). See the module docs.
///
/// Run loop: feed input with `handle_*`, then drain [`H323Iwf::poll_output`]
/// and sleep until [`H323Iwf::poll_timeout`], then call
/// [`H323Iwf::handle_timeout`].
#[derive(Debug)]
pub struct H323Iwf {
    cfg: IwfConfig,
    tl: TransactionLayer,
    calls: HashMap<ConnId, Call>,
    by_call_id: HashMap<String, ConnId>,
    by_tx: HashMap<TxKey, ConnId>,
    out: VecDeque<Output>,
    next_conn: u64,
    log: Vec<String>,
}

impl H323Iwf {
    /// A new IWF.
    pub fn new(cfg: IwfConfig) -> Self {
        Self {
            cfg,
            tl: TransactionLayer::new(Default::default()),
            calls: HashMap::new(),
            by_call_id: HashMap::new(),
            by_tx: HashMap::new(),
            out: VecDeque::new(),
            next_conn: 1,
            log: Vec::new(),
        }
    }

    /// Number of calls in progress (or lingering after their end).
    pub fn calls(&self) -> usize {
        self.calls.len()
    }

    /// Next thing for the edge to do.
    pub fn poll_output(&mut self) -> Option<Output> {
        while let Some(t) = self.tl.poll_transmit() {
            self.out.push_back(Output::Sip(t));
        }
        self.out.pop_front()
    }

    /// Log lines since the last call.
    pub fn drain_log(&mut self) -> Vec<String> {
        std::mem::take(&mut self.log)
    }

    /// When [`H323Iwf::handle_timeout`] is due next.
    pub fn poll_timeout(&self) -> Option<Instant> {
        let mut next = self.tl.poll_timeout();
        for c in self.calls.values() {
            for t in [c.h323.poll_timeout(), c.forget_at].into_iter().flatten() {
                next = Some(next.map_or(t, |n: Instant| n.min(t)));
            }
        }
        next
    }

    /// Fires due timers: SIP retransmissions and timeouts, H.225.0 T303/T310/T301,
    /// and forgetting finished calls.
    pub fn handle_timeout(&mut self, now: Instant) {
        self.tl.handle_timeout(now);
        self.tx_events(now);
        let ids: Vec<ConnId> = self.calls.keys().copied().collect();
        for id in ids {
            let Some(c) = self.calls.get_mut(&id) else {
                continue;
            };
            if c.forget_at.is_some_and(|t| now >= t) {
                self.forget(id);
                continue;
            }
            if c.h323.poll_timeout().is_some_and(|t| now >= t) {
                c.h323.handle_timeout(now);
                self.drive(id, now);
            }
        }
    }

    /// A SIP datagram from `from`.
    pub fn handle_sip(&mut self, bytes: &[u8], from: SocketAddr, now: Instant) {
        let msg = match Message::parse(bytes) {
            Ok(m) => m,
            Err(e) => {
                self.note(format!(
                    "SIP from {from}: unparsable, dropped: {}",
                    e.reason
                ));
                return;
            }
        };
        match self.tl.handle(msg, from, now) {
            Incoming::Request { key, req, .. } => self.on_request(key, req, now),
            Incoming::Ack { .. } | Incoming::Absorbed => {}
            Incoming::Response { key, resp } => self.on_response(key, resp, now),
            Incoming::StrayResponse { resp, .. } => self.on_stray(resp),
        }
        self.tx_events(now);
    }

    /// A TCP connection was accepted on the H.225.0 listener: a new incoming call.
    /// `seed` is a random number (master/slave determination).
    pub fn handle_accepted(&mut self, seed: u32, _now: Instant) -> ConnId {
        let id = self.alloc_conn();
        let cfg = CallConfig {
            local_rtp: SocketAddr::from((Ipv4Addr::UNSPECIFIED, 0)),
            // No codecs: the fastStart answer waits for the engine's SDP.
            codecs: Vec::new(),
            tunnelling: self.cfg.tunnelling,
            version: 4,
        };
        let call = Call {
            h323: H323Call::incoming(cfg, seed),
            from_sip: false,
            sip: SipState::Early,
            dialog: None,
            inv_tx: None,
            offer_pts: Vec::new(),
            local_sdp: None,
            peer_rtp: None,
            pending: None,
            ack: None,
            alerted: false,
            conn_closed: false,
            close_sent: false,
            forget_at: None,
        };
        self.calls.insert(id, call);
        id
    }

    /// The outgoing TCP connection `conn` is up: send the Setup.
    pub fn handle_connected(&mut self, conn: ConnId, now: Instant) {
        let Some(c) = self.calls.get_mut(&conn) else {
            return;
        };
        if let Some(p) = c.pending.take() {
            if let Err(e) = c.h323.setup(
                &p.calling,
                &p.called,
                p.display.as_deref(),
                p.restricted,
                now,
            ) {
                self.log.push(format!("h323 {}: {e}", conn.0));
            }
        }
        self.drive(conn, now);
    }

    /// The outgoing TCP connection `conn` could not be opened: cause 27
    /// (destination out of order).
    pub fn handle_connect_failed(&mut self, conn: ConnId, now: Instant) {
        let Some(c) = self.calls.get_mut(&conn) else {
            return;
        };
        c.conn_closed = true;
        c.close_sent = true;
        c.pending = None;
        self.note(format!("h323 {}: connection failed, cause 27", conn.0));
        self.sip_release(conn, 27, now);
        self.drive(conn, now);
    }

    /// Bytes read from connection `conn`.
    pub fn handle_h225(&mut self, conn: ConnId, bytes: &[u8], now: Instant) {
        let Some(c) = self.calls.get_mut(&conn) else {
            return;
        };
        if let Err(e) = c.h323.handle_bytes(bytes, now) {
            self.log.push(format!("h323 {}: {e}", conn.0));
        }
        self.drive(conn, now);
    }

    /// Connection `conn` was closed by the peer (or failed).
    pub fn handle_closed(&mut self, conn: ConnId, now: Instant) {
        let Some(c) = self.calls.get_mut(&conn) else {
            return;
        };
        c.conn_closed = true;
        c.close_sent = true;
        c.h323.handle_closed();
        self.drive(conn, now);
    }

    // ------------------------------------------------------------ H.323 side

    /// Drains the H.323 call: frames to the socket, events mapped to SIP.
    fn drive(&mut self, id: ConnId, now: Instant) {
        loop {
            let Some(c) = self.calls.get_mut(&id) else {
                return;
            };
            while let Some(f) = c.h323.poll_transmit() {
                if !c.conn_closed {
                    self.out.push_back(Output::Write { conn: id, bytes: f });
                }
            }
            let Some(ev) = c.h323.poll_event() else {
                break;
            };
            self.on_h323_event(id, ev, now);
        }
        let Some(c) = self.calls.get_mut(&id) else {
            return;
        };
        if c.h323.is_released() && !c.close_sent {
            c.close_sent = true;
            self.out.push_back(Output::Close { conn: id });
        }
        let done_h323 = c.h323.is_released() || (c.conn_closed && c.pending.is_none());
        let done_sip = c.sip == SipState::Ended;
        if done_h323 && done_sip && c.forget_at.is_none() {
            c.forget_at = Some(now + LINGER);
        }
    }

    fn on_h323_event(&mut self, id: ConnId, ev: CallEvent, now: Instant) {
        match ev {
            CallEvent::Incoming {
                called,
                calling,
                display,
                restricted,
                ..
            } => self.h323_incoming(id, called, calling, display, restricted, now),
            CallEvent::Proceeding => {}
            CallEvent::Alerting(m) => self.h323_progress(id, 180, m, now),
            CallEvent::Progress(m) => self.h323_progress(id, 183, m, now),
            CallEvent::Connected(m) => self.h323_connected(id, m, now),
            CallEvent::Released { cause, remote } => {
                if remote {
                    self.note(format!(
                        "h323 {}: released by the peer, cause {cause}",
                        id.0
                    ));
                }
                self.sip_release(id, cause, now);
            }
            CallEvent::Dtmf { digit, .. } => {
                self.note(format!("h323 {}: DTMF {digit} (not relayed)", id.0));
            }
        }
    }

    /// Setup from an H.323 peer: INVITE to the engine.
    fn h323_incoming(
        &mut self,
        id: ConnId,
        called: Option<String>,
        calling: Option<String>,
        display: Option<String>,
        restricted: bool,
        now: Instant,
    ) {
        let cfg = self.cfg.clone();
        let Some(c) = self.calls.get_mut(&id) else {
            return;
        };
        // The offered codecs (fastStart receive proposals carry the caller's RTP).
        let mut offered: Vec<(Codec, Option<SocketAddr>)> = Vec::new();
        for p in c.h323.offer().iter().map(|o| o.summary()) {
            let Some(codec) = p.codec.map(sdp_codec) else {
                continue;
            };
            if !cfg.codecs.is_empty() && !cfg.codecs.contains(&codec) {
                continue;
            }
            match offered.iter_mut().find(|(k, _)| *k == codec) {
                Some((_, rtp)) if rtp.is_none() && p.receive => *rtp = p.rtp,
                Some(_) => {}
                None => offered.push((codec, p.receive.then_some(p.rtp).flatten())),
            }
        }
        let rtp = offered.iter().find_map(|(_, r)| *r);
        let (Some(rtp), false) = (rtp, offered.is_empty()) else {
            let _ = c.h323.release(88, now);
            c.sip = SipState::Ended;
            self.note(format!(
                "h323 {}: Setup without a usable fastStart offer, cause 88",
                id.0
            ));
            return;
        };
        c.peer_rtp = Some(rtp);
        let _ = c.h323.proceeding(now);
        let called = called.unwrap_or_default();
        let calling = calling.unwrap_or_default();
        let codecs: Vec<Codec> = offered.iter().map(|(k, _)| *k).collect();
        let sdp = build_sdp(
            rtp,
            &codecs.iter().map(|&k| (k, pt_of(k))).collect::<Vec<_>>(),
        );
        let engine = cfg.engine;
        let me = cfg.sip_addr;
        let from_uri = format!("sip:{}@{me}", user_or_anonymous(&calling));
        let from = if restricted || calling.is_empty() {
            "\"Anonymous\" <sip:anonymous@anonymous.invalid>".to_string()
        } else {
            match &display {
                Some(d) if !d.is_empty() => {
                    format!("\"{}\" <{from_uri}>", d.replace(['"', '\\'], ""))
                }
                _ => format!("<{from_uri}>"),
            }
        };
        let mut extra = Vec::new();
        if !calling.is_empty() {
            extra.push(("P-Asserted-Identity", format!("<{from_uri}>")));
        }
        if restricted {
            extra.push(("Privacy", "id".to_string()));
        }
        let dialog = Dialog::uac(
            &escape_user(&called),
            &from,
            &extra,
            sdp.clone(),
            me,
            engine,
        )
        .named("h323");
        let call_id = dialog.call_id.clone();
        let inv = dialog.invite.clone();
        let key = self.tl.send_request(inv, engine, now);
        self.note(format!(
            "h323 {}: Setup {calling} -> {called}{}: INVITE {call_id}",
            id.0,
            if restricted { " (restricted)" } else { "" }
        ));
        let Some(c) = self.calls.get_mut(&id) else {
            return;
        };
        c.dialog = Some(dialog);
        c.inv_tx = Some(key.clone());
        c.local_sdp = Some(sdp);
        self.by_call_id.insert(call_id, id);
        self.by_tx.insert(key, id);
    }

    /// Alerting or Progress from the H.323 callee: 180 or 183 to the engine.
    fn h323_progress(&mut self, id: ConnId, code: u16, media: Option<Media>, now: Instant) {
        let Some(c) = self.calls.get_mut(&id) else {
            return;
        };
        if !c.from_sip || c.sip != SipState::Early {
            return;
        }
        if code == 180 && c.alerted {
            return;
        }
        c.alerted |= code == 180;
        let sdp = media.and_then(|m| answer_sdp(c, m));
        if sdp.is_some() {
            c.local_sdp = sdp.clone();
        }
        self.respond_invite(id, code, sdp.as_deref(), None, now);
    }

    /// Connect from the H.323 callee: 200 OK with the fastStart answer's address.
    fn h323_connected(&mut self, id: ConnId, media: Option<Media>, now: Instant) {
        let Some(c) = self.calls.get_mut(&id) else {
            return;
        };
        if !c.from_sip || c.sip != SipState::Early {
            return;
        }
        let sdp = media
            .or(c.h323.media())
            .and_then(|m| answer_sdp(c, m))
            .or_else(|| c.local_sdp.clone());
        let Some(sdp) = sdp else {
            // Connected without any media agreed: nothing to answer the offer with.
            let _ = c.h323.release(65, now);
            self.note(format!("h323 {}: Connect without fastStart answer", id.0));
            self.respond_invite(id, 488, None, Some(65), now);
            return;
        };
        c.local_sdp = Some(sdp.clone());
        self.respond_invite(id, 200, Some(&sdp), None, now);
        if let Some(c) = self.calls.get_mut(&id) {
            c.sip = SipState::Answered;
        }
    }

    /// The H.323 leg ended with `cause`: end the SIP side accordingly.
    fn sip_release(&mut self, id: ConnId, cause: u8, now: Instant) {
        let Some(c) = self.calls.get_mut(&id) else {
            return;
        };
        match (c.sip, c.from_sip) {
            (SipState::Early, true) => {
                let code = q850_to_sip(cause);
                self.respond_invite(id, code, None, Some(cause), now);
            }
            (SipState::Early, false) if c.dialog.is_some() => {
                c.sip = SipState::Cancelling;
                let Some(cancel) = c.dialog.as_ref().map(|d| d.cancel(Some(cause))) else {
                    return;
                };
                let key = self.tl.send_request(cancel, self.cfg.engine, now);
                self.by_tx.insert(key, id);
            }
            (SipState::Answered, _) => self.send_bye(id, Some(cause), now),
            (SipState::Early, false) => c.sip = SipState::Ended,
            (SipState::Cancelling | SipState::Ended, _) => {}
        }
    }

    // -------------------------------------------------------------- SIP side

    fn on_request(&mut self, key: TxKey, req: Request, now: Instant) {
        let to_tag = req.to().and_then(|t| t.tag().map(str::to_string));
        let call_id = req.call_id().unwrap_or_default().to_string();
        match req.method {
            Method::Invite if to_tag.is_none() => self.sip_invite(key, req, now),
            Method::Cancel => self.sip_cancel(key, req, now),
            Method::Options if to_tag.is_none() => {
                self.respond(&key, Response::for_request(&req, 200), now)
            }
            _ if to_tag.is_some() => match self.by_call_id.get(&call_id).copied() {
                Some(id) => self.sip_in_dialog(id, key, req, now),
                None => self.respond(&key, Response::for_request(&req, 481), now),
            },
            Method::Bye => self.respond(&key, Response::for_request(&req, 481), now),
            _ => {
                let mut r = Response::for_request(&req, 405);
                r.headers.set("Allow", "INVITE, ACK, CANCEL, BYE, OPTIONS");
                self.respond(&key, r, now);
            }
        }
    }

    /// INVITE from the engine (`Dial(H323/number@host[:port])`): a Setup out.
    fn sip_invite(&mut self, key: TxKey, req: Request, now: Instant) {
        let call_id = req.call_id().unwrap_or_default().to_string();
        if self.by_call_id.contains_key(&call_id) {
            self.respond(&key, Response::for_request(&req, 482), now);
            return;
        }
        let target = Uri::parse(&req.uri)
            .ok()
            .and_then(|u| u.user)
            .map(|u| sipua::percent_decode(&u))
            .unwrap_or_default();
        let (called, addr) = match parse_target(&target) {
            Ok(t) => t,
            Err(why) => {
                self.note(format!("INVITE {call_id}: {why}, 404"));
                let r = Response::for_request(&req, 404).with_reason(format!("Not Found ({why})"));
                self.respond(&key, r, now);
                return;
            }
        };
        let offer = std::str::from_utf8(&req.body)
            .ok()
            .and_then(|s| SessionDescription::parse(s).ok());
        let Some((rtp, pts)) = offer.as_ref().and_then(|o| {
            let m = o.audio()?;
            let pts: Vec<(Codec, u8)> = m
                .formats
                .iter()
                .filter_map(|&pt| Some((m.codec(pt)?, pt)))
                .filter(|(k, _)| *k != Codec::TelephoneEvent)
                .filter(|(k, _)| self.cfg.codecs.is_empty() || self.cfg.codecs.contains(k))
                .collect();
            Some((o.audio_addr()?, pts))
        }) else {
            self.note(format!("INVITE {call_id}: no audio SDP offer, 488"));
            self.respond(&key, Response::for_request(&req, 488), now);
            return;
        };
        let mut codecs = Vec::new();
        for &(k, _) in &pts {
            for h in h245_codecs(k) {
                if !codecs.contains(&h) {
                    codecs.push(h);
                }
            }
        }
        if codecs.is_empty() {
            self.note(format!("INVITE {call_id}: no codec usable over H.323, 488"));
            self.respond(&key, Response::for_request(&req, 488), now);
            return;
        }
        // Caller identity (RFC 3325: the engine asserts it; RFC 3323 privacy).
        // H.225 carries the calling number as digits, so a non-numeric user
        // (a name, "anonymous") leaves it empty, as the other IWFs do.
        let (calling, display, restricted) = sipua::caller_of(&req);
        let calling = calling.unwrap_or_default();
        let id = self.alloc_conn();
        let (crv, ids): (u16, [[u8; 16]; 2]) = (rand::random(), rand::random());
        let cfg = CallConfig {
            local_rtp: rtp,
            codecs,
            tunnelling: self.cfg.tunnelling,
            version: 4,
        };
        let Some(dialog) = Dialog::uas(req.clone(), self.cfg.sip_addr, self.cfg.engine) else {
            self.note(format!("INVITE {call_id}: no From or Call-ID, 400"));
            let r = Response::for_request(&req, 400).with_reason("Missing From or Call-ID");
            self.respond(&key, r, now);
            return;
        };
        let call = Call {
            h323: H323Call::outgoing(cfg, crv, ids[0], ids[1]),
            from_sip: true,
            sip: SipState::Early,
            dialog: Some(dialog.named("h323")),
            inv_tx: Some(key.clone()),
            offer_pts: pts,
            local_sdp: None,
            peer_rtp: None,
            pending: Some(PendingSetup {
                calling: calling.clone(),
                called: called.clone(),
                display,
                restricted,
            }),
            ack: None,
            alerted: false,
            conn_closed: false,
            close_sent: false,
            forget_at: None,
        };
        self.note(format!(
            "INVITE {call_id}: Setup {calling} -> {called} at {addr}{}",
            if restricted { " (restricted)" } else { "" }
        ));
        self.calls.insert(id, call);
        self.by_call_id.insert(call_id, id);
        self.by_tx.insert(key, id);
        self.out.push_back(Output::Connect { conn: id, addr });
    }

    fn sip_cancel(&mut self, key: TxKey, req: Request, now: Instant) {
        let inv = self.tl.invite_for_cancel(&req);
        let id = inv.as_ref().and_then(|k| self.by_tx.get(k).copied());
        let code = if id.is_some() { 200 } else { 481 };
        self.respond(&key, Response::for_request(&req, code), now);
        let Some(id) = id else { return };
        let Some(c) = self.calls.get_mut(&id) else {
            return;
        };
        if c.sip != SipState::Early {
            return;
        }
        let cause = sipua::reason_cause(&req.headers).unwrap_or(16);
        self.note(format!(
            "h323 {}: CANCEL, Release Complete cause {cause}",
            id.0
        ));
        self.release_h323(id, cause, now);
        self.respond_invite(id, 487, None, None, now);
        self.drive(id, now);
    }

    fn sip_in_dialog(&mut self, id: ConnId, key: TxKey, req: Request, now: Instant) {
        match req.method {
            Method::Bye => {
                self.respond(&key, Response::for_request(&req, 200), now);
                let cause = sipua::reason_cause(&req.headers).unwrap_or(16);
                if let Some(c) = self.calls.get_mut(&id) {
                    c.sip = SipState::Ended;
                }
                self.note(format!(
                    "h323 {}: BYE, Release Complete cause {cause}",
                    id.0
                ));
                self.release_h323(id, cause, now);
                self.drive(id, now);
            }
            Method::Invite => {
                // A re-INVITE: the H.323 media does not change; answer with our SDP.
                let sdp = self.calls.get(&id).and_then(|c| c.local_sdp.clone());
                let mut r = Response::for_request(&req, 200);
                if let Some(d) = self.calls.get(&id).and_then(|c| c.dialog.as_ref()) {
                    r.headers.set("To", d.local.clone());
                    r.headers.set("Contact", d.contact());
                }
                if let Some(s) = sdp {
                    r.headers.set("Content-Type", "application/sdp");
                    r.body = s.into_bytes();
                }
                self.respond(&key, r, now);
            }
            _ => self.respond(&key, Response::for_request(&req, 200), now),
        }
    }

    fn on_response(&mut self, key: TxKey, resp: Response, now: Instant) {
        let Some(&id) = self.by_tx.get(&key) else {
            return;
        };
        let is_invite = resp.cseq().is_some_and(|c| c.method == Method::Invite);
        if !is_invite {
            return;
        }
        let Some(c) = self.calls.get_mut(&id) else {
            return;
        };
        if c.from_sip {
            return;
        }
        match resp.code {
            100 => {}
            101..=199 => {
                if c.sip != SipState::Early {
                    return;
                }
                if let (Some(t), Some(d)) = (resp.headers.get("To"), c.dialog.as_mut()) {
                    d.remote = t.to_string();
                }
                let had = c.h323.media().is_some();
                let media = sdp_answer(&resp).and_then(|(addr, codec)| {
                    c.h323
                        .answer_media(&h245_codecs(codec), addr)
                        .ok()
                        .flatten()
                });
                if resp.code == 183 && (media.is_some() || had) {
                    let _ = c.h323.progress(now);
                } else if !c.alerted {
                    c.alerted = true;
                    let _ = c.h323.alerting(now);
                }
            }
            200..=299 => {
                // The first 2xx learns the remote tag and target; copies get the same ACK.
                let ack = match (&c.ack, c.dialog.as_mut()) {
                    (Some(a), _) => a.clone(),
                    (None, Some(d)) => {
                        let ack = d.ack(&resp);
                        c.ack = Some(ack.clone());
                        ack
                    }
                    (None, None) => return,
                };
                self.tl
                    .send_stateless(&Message::Request(ack), self.cfg.engine);
                let Some(c) = self.calls.get_mut(&id) else {
                    return;
                };
                match c.sip {
                    SipState::Early => {
                        let media = sdp_answer(&resp).and_then(|(addr, codec)| {
                            c.h323
                                .answer_media(&h245_codecs(codec), addr)
                                .ok()
                                .flatten()
                        });
                        c.sip = SipState::Answered;
                        if media.is_none() && c.h323.media().is_none() {
                            self.note(format!("h323 {}: 2xx without usable SDP, cause 88", id.0));
                            self.release_h323(id, 88, now);
                            self.send_bye(id, Some(88), now);
                        } else {
                            let _ = c.h323.connect(now);
                            self.note(format!("h323 {}: answered, Connect", id.0));
                        }
                    }
                    // The 2xx crossed our CANCEL: the H.323 side is gone, so end it.
                    SipState::Cancelling => {
                        c.sip = SipState::Answered;
                        self.send_bye(id, None, now);
                    }
                    SipState::Answered | SipState::Ended => {}
                }
            }
            code => {
                if let Some(c) = self.calls.get_mut(&id) {
                    let early = c.sip == SipState::Early;
                    c.sip = SipState::Ended;
                    if early {
                        let cause = sipua::reason_cause(&resp.headers).unwrap_or(sip_to_q850(code));
                        self.note(format!(
                            "h323 {}: INVITE answered {code}, Release Complete cause {cause}",
                            id.0
                        ));
                        self.release_h323(id, cause, now);
                    }
                }
            }
        }
        self.drive(id, now);
    }

    /// A 2xx whose transaction is gone: ACK it again.
    fn on_stray(&mut self, resp: Response) {
        if !resp.is_success() {
            return;
        }
        let ack = resp
            .call_id()
            .and_then(|cid| self.by_call_id.get(cid))
            .and_then(|id| self.calls.get(id))
            .and_then(|c| c.ack.clone());
        if let Some(ack) = ack {
            self.tl
                .send_stateless(&Message::Request(ack), self.cfg.engine);
        }
    }

    fn tx_events(&mut self, now: Instant) {
        while let Some(ev) = self.tl.poll_event() {
            match ev {
                TxEvent::Timeout { key } => {
                    let Some(id) = self.by_tx.get(&key).copied() else {
                        continue;
                    };
                    if key.method() == &Method::Invite {
                        if let Some(c) = self.calls.get_mut(&id) {
                            if matches!(c.sip, SipState::Early | SipState::Cancelling) {
                                c.sip = SipState::Ended;
                                self.note(format!("h323 {}: INVITE timed out, cause 102", id.0));
                                self.release_h323(id, 102, now);
                                self.drive(id, now);
                            }
                        }
                    }
                }
                TxEvent::NoAck { key } => {
                    if let Some(id) = self.by_tx.get(&key).copied() {
                        self.note(format!("h323 {}: 2xx never acknowledged", id.0));
                        self.release_h323(id, 41, now);
                        self.send_bye(id, Some(41), now);
                        self.drive(id, now);
                    }
                }
                TxEvent::Terminated { key } => {
                    // The INVITE's key is kept for the call (a late 2xx copy is stray).
                    if key.method() != &Method::Invite {
                        self.by_tx.remove(&key);
                    }
                }
            }
        }
    }

    // -------------------------------------------------------------- helpers

    fn release_h323(&mut self, id: ConnId, cause: u8, now: Instant) {
        let Some(c) = self.calls.get_mut(&id) else {
            return;
        };
        if c.pending.take().is_some() || c.conn_closed {
            // Setup never sent: just drop the connection.
            if !c.close_sent {
                c.close_sent = true;
                self.out.push_back(Output::Close { conn: id });
            }
            c.conn_closed = true;
            return;
        }
        if !c.h323.is_released() && c.h323.state() != crate::h323::call::State::Null {
            let _ = c.h323.release(cause, now);
        }
    }

    /// Answers the engine's INVITE (SIP -> H.323 calls).
    fn respond_invite(
        &mut self,
        id: ConnId,
        code: u16,
        sdp: Option<&str>,
        cause: Option<u8>,
        now: Instant,
    ) {
        let Some(c) = self.calls.get_mut(&id) else {
            return;
        };
        if !c.from_sip || c.sip != SipState::Early {
            return;
        }
        let Some(d) = &c.dialog else { return };
        let r = d.response(code, sdp.map(str::to_string), cause);
        if code >= 300 {
            c.sip = SipState::Ended;
        }
        let Some(key) = c.inv_tx.clone() else {
            return;
        };
        self.respond(&key, r, now);
    }

    fn send_bye(&mut self, id: ConnId, cause: Option<u8>, now: Instant) {
        let Some(c) = self.calls.get_mut(&id) else {
            return;
        };
        if c.sip == SipState::Ended {
            return;
        }
        c.sip = SipState::Ended;
        let Some(bye) = c.dialog.as_mut().map(|d| d.request(Method::Bye, cause)) else {
            return;
        };
        self.tl.send_request(bye, self.cfg.engine, now);
    }

    fn respond(&mut self, key: &TxKey, resp: Response, now: Instant) {
        if let Err(e) = self.tl.send_response(key, resp, now) {
            self.log.push(format!("SIP response: {e}"));
        }
    }

    fn alloc_conn(&mut self) -> ConnId {
        let id = ConnId(self.next_conn);
        self.next_conn += 1;
        id
    }

    fn forget(&mut self, id: ConnId) {
        if let Some(c) = self.calls.remove(&id) {
            if let Some(d) = &c.dialog {
                self.by_call_id.remove(&d.call_id);
            }
            self.by_tx.retain(|_, v| *v != id);
        }
    }

    fn note(&mut self, s: String) {
        self.log.push(s);
    }
}

/// The SIP codec an H.245 codec carries.
fn sdp_codec(c: H245Codec) -> Codec {
    match c {
        H245Codec::Pcma => Codec::Pcma,
        H245Codec::Pcmu => Codec::Pcmu,
        H245Codec::G729 | H245Codec::G729A => Codec::G729,
    }
}

/// The H.245 codecs an SDP codec may be offered or answered as (G.729 and
/// Annex A decode each other's bitstream).
fn h245_codecs(c: Codec) -> Vec<H245Codec> {
    match c {
        Codec::Pcma => vec![H245Codec::Pcma],
        Codec::Pcmu => vec![H245Codec::Pcmu],
        Codec::G729 => vec![H245Codec::G729, H245Codec::G729A],
        Codec::TelephoneEvent => Vec::new(),
    }
}

fn pt_of(c: Codec) -> u8 {
    c.static_pt().unwrap_or(101)
}

/// Our SDP answer for the H.323 callee's fastStart answer.
fn answer_sdp(c: &Call, m: Media) -> Option<String> {
    let rtp = m.remote_rtp?;
    let codec = sdp_codec(m.codec);
    let pt = c
        .offer_pts
        .iter()
        .find(|(k, _)| *k == codec)
        .map_or(pt_of(codec), |(_, pt)| *pt);
    Some(build_sdp(rtp, &[(codec, pt)]))
}

/// An audio SDP body: RTP at `rtp`, the given codecs with their payload types.
fn build_sdp(rtp: SocketAddr, codecs: &[(Codec, u8)]) -> String {
    let ip = match rtp.ip() {
        IpAddr::V4(a) => format!("IP4 {a}"),
        IpAddr::V6(a) => format!("IP6 {a}"),
    };
    let sess = u64::from(rtp.port()) * 1000 + codecs.len() as u64;
    let pts: Vec<String> = codecs.iter().map(|(_, pt)| pt.to_string()).collect();
    let mut s = format!(
        "v=0\r\no=- {sess} 1 IN {ip}\r\ns=Tandem H.323\r\nc=IN {ip}\r\nt=0 0\r\nm=audio {} RTP/AVP {}\r\n",
        rtp.port(),
        pts.join(" ")
    );
    for (k, pt) in codecs {
        s.push_str(&format!("a=rtpmap:{pt} {}/8000\r\n", k.name()));
        if *k == Codec::G729 {
            s.push_str(&format!("a=fmtp:{pt} annexb=no\r\n"));
        }
    }
    s.push_str("a=ptime:20\r\na=sendrecv\r\n");
    s
}

/// The RTP address and codec of an SDP answer in a response.
fn sdp_answer(resp: &Response) -> Option<(SocketAddr, Codec)> {
    let sd = SessionDescription::parse(std::str::from_utf8(&resp.body).ok()?).ok()?;
    let m = sd.audio()?;
    let codec = m
        .formats
        .iter()
        .filter_map(|&pt| m.codec(pt))
        .find(|k| *k != Codec::TelephoneEvent)?;
    Some((sd.audio_addr()?, codec))
}

/// `number@host[:port]` (the Dial resource) -> number and the H.225.0 address.
/// Hosts are IP literals (`[v6]` with a port); the port defaults to 1720.
pub fn parse_target(s: &str) -> Result<(String, SocketAddr), String> {
    let (number, host) = s.rsplit_once('@').ok_or_else(|| {
        format!("Dial target \"{s}\" names no H.323 peer (use number@host[:port])")
    })?;
    if number.is_empty() {
        return Err(format!("Dial target \"{s}\" has no number"));
    }
    let addr = if let Ok(a) = host.parse::<SocketAddr>() {
        a
    } else if let Ok(ip) = host.trim_matches(['[', ']']).parse::<IpAddr>() {
        SocketAddr::new(ip, H225_PORT)
    } else {
        return Err(format!(
            "H.323 peer \"{host}\" is not IP[:port] (host names are not resolved)"
        ));
    };
    Ok((number.to_string(), addr))
}

/// A number as a SIP user part (unreserved characters kept, the rest escaped).
fn escape_user(s: &str) -> String {
    let mut out = String::new();
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-_.!~*'()&=+$,;?/#".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    if out.is_empty() {
        out.push_str("anonymous");
    }
    out
}

fn user_or_anonymous(s: &str) -> String {
    escape_user(s)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::h323::call::State;

    const ENGINE: &str = "127.0.0.1:5060";
    const ME: &str = "127.0.0.1:5999";

    fn addr(s: &str) -> SocketAddr {
        s.parse().unwrap()
    }

    fn iwf() -> H323Iwf {
        H323Iwf::new(IwfConfig {
            sip_addr: addr(ME),
            engine: addr(ENGINE),
            codecs: Vec::new(),
            tunnelling: false,
        })
    }

    fn peer_cfg(rtp: &str, codecs: &[H245Codec]) -> CallConfig {
        CallConfig {
            local_rtp: addr(rtp),
            codecs: codecs.to_vec(),
            tunnelling: false,
            version: 4,
        }
    }

    /// Everything the IWF wants done: SIP messages and H.225.0 frames.
    #[derive(Default)]
    struct Drained {
        sip: Vec<(Message, SocketAddr)>,
        frames: Vec<(ConnId, Vec<u8>)>,
        connects: Vec<(ConnId, SocketAddr)>,
        closes: Vec<ConnId>,
    }

    fn drain(i: &mut H323Iwf) -> Drained {
        let mut d = Drained::default();
        while let Some(o) = i.poll_output() {
            match o {
                Output::Sip(t) => d.sip.push((Message::parse(&t.bytes).unwrap(), t.dest)),
                Output::Write { conn, bytes } => d.frames.push((conn, bytes)),
                Output::Connect { conn, addr } => d.connects.push((conn, addr)),
                Output::Close { conn } => d.closes.push(conn),
            }
        }
        d
    }

    fn responses(d: &Drained) -> Vec<Response> {
        d.sip
            .iter()
            .filter_map(|(m, _)| match m {
                Message::Response(r) => Some(r.clone()),
                _ => None,
            })
            .collect()
    }

    fn requests(d: &Drained) -> Vec<Request> {
        d.sip
            .iter()
            .filter_map(|(m, _)| match m {
                Message::Request(r) => Some(r.clone()),
                _ => None,
            })
            .collect()
    }

    fn feed_peer(peer: &mut H323Call, d: &Drained, now: Instant) -> Vec<CallEvent> {
        for (_, f) in &d.frames {
            peer.handle_bytes(f, now).unwrap();
        }
        std::iter::from_fn(|| peer.poll_event()).collect()
    }

    fn feed_iwf(i: &mut H323Iwf, conn: ConnId, peer: &mut H323Call, now: Instant) {
        while let Some(f) = peer.poll_transmit() {
            i.handle_h225(conn, &f, now);
        }
    }

    fn sdp(port: u16) -> String {
        format!(
            "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n\
             m=audio {port} RTP/AVP 0 8 101\r\na=rtpmap:101 telephone-event/8000\r\n"
        )
    }

    /// The INVITE the engine sends for `Dial(H323/5551234@127.0.0.1:1720)`.
    fn engine_invite(privacy: bool) -> Vec<u8> {
        let mut r = Request::new(
            Method::Invite,
            format!("sip:5551234%40127.0.0.1%3A1720@{ME}"),
        );
        r.headers.push(
            "Via",
            format!("SIP/2.0/UDP {ENGINE};branch=z9hG4bKeng1;rport"),
        );
        r.headers
            .push("From", format!("\"Ann\" <sip:1001@{ENGINE}>;tag=e1"));
        r.headers.push("To", format!("<sip:5551234@{ME}>"));
        r.headers.push("Call-ID", "out-1@127.0.0.1");
        r.headers.push("CSeq", "1 INVITE");
        r.headers.push("Contact", format!("<sip:tandem@{ENGINE}>"));
        r.headers
            .push("P-Asserted-Identity", format!("<sip:1001@{ENGINE}>"));
        if privacy {
            r.headers.push("Privacy", "id");
        }
        r.headers.push("Content-Type", "application/sdp");
        r.body = sdp(20000).into_bytes();
        r.to_bytes()
    }

    #[test]
    fn invite_becomes_setup_connect_becomes_200_and_bye_releases_16() {
        let now = Instant::now();
        let mut i = iwf();
        i.handle_sip(&engine_invite(true), addr(ENGINE), now);
        let d = drain(&mut i);
        assert_eq!(responses(&d)[0].code, 100);
        assert_eq!(d.connects, vec![(ConnId(1), addr("127.0.0.1:1720"))]);
        // A retransmitted INVITE is answered again, not dialled again.
        i.handle_sip(&engine_invite(true), addr(ENGINE), now);
        let d = drain(&mut i);
        assert!(d.connects.is_empty() && responses(&d)[0].code == 100);

        i.handle_connected(ConnId(1), now);
        let d = drain(&mut i);
        let mut peer = H323Call::incoming(peer_cfg("127.0.0.1:7000", &[H245Codec::Pcma]), 5);
        let ev = feed_peer(&mut peer, &d, now);
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
        assert_eq!(called.as_deref(), Some("5551234"));
        assert_eq!(calling.as_deref(), Some("1001"));
        assert_eq!(display.as_deref(), Some("Ann"));
        assert!(*restricted, "Privacy: id");
        assert_eq!(offered, &vec![H245Codec::Pcmu, H245Codec::Pcma]);
        assert_eq!(media.unwrap().remote_rtp, Some(addr("127.0.0.1:20000")));

        peer.proceeding(now).unwrap();
        peer.alerting(now).unwrap();
        feed_iwf(&mut i, ConnId(1), &mut peer, now);
        let r = responses(&drain(&mut i));
        assert_eq!(r.len(), 1, "Call Proceeding adds nothing to 100");
        assert_eq!(r[0].code, 180);
        peer.connect(now).unwrap();
        feed_iwf(&mut i, ConnId(1), &mut peer, now);
        let r = responses(&drain(&mut i));
        assert_eq!(r[0].code, 200);
        let body = String::from_utf8(r[0].body.clone()).unwrap();
        assert!(body.contains("m=audio 7000 RTP/AVP 8\r\n"), "{body}");
        assert!(r[0].to().unwrap().tag().is_some());

        let mut bye = Request::new(Method::Bye, format!("sip:h323@{ME}"));
        bye.headers
            .push("Via", format!("SIP/2.0/UDP {ENGINE};branch=z9hG4bKbye1"));
        bye.headers
            .push("From", format!("<sip:1001@{ENGINE}>;tag=e1"));
        bye.headers
            .push("To", r[0].headers.get("To").unwrap().to_string());
        bye.headers.push("Call-ID", "out-1@127.0.0.1");
        bye.headers.push("CSeq", "2 BYE");
        i.handle_sip(&bye.to_bytes(), addr(ENGINE), now);
        let d = drain(&mut i);
        assert_eq!(responses(&d)[0].code, 200);
        assert_eq!(d.closes, vec![ConnId(1)]);
        assert!(
            feed_peer(&mut peer, &d, now).contains(&CallEvent::Released {
                cause: 16,
                remote: true
            })
        );
        // Forgotten after the linger time.
        i.handle_timeout(now + LINGER + Duration::from_secs(1));
        assert_eq!(i.calls(), 0);
    }

    #[test]
    fn busy_h323_callee_answers_486_and_cancel_releases() {
        let now = Instant::now();
        let mut i = iwf();
        i.handle_sip(&engine_invite(false), addr(ENGINE), now);
        i.handle_connected(ConnId(1), now);
        let d = drain(&mut i);
        let mut peer = H323Call::incoming(peer_cfg("127.0.0.1:7000", &[H245Codec::Pcmu]), 5);
        let ev = feed_peer(&mut peer, &d, now);
        assert!(matches!(
            &ev[0],
            CallEvent::Incoming {
                restricted: false,
                ..
            }
        ));
        peer.release(17, now).unwrap();
        feed_iwf(&mut i, ConnId(1), &mut peer, now);
        let d = drain(&mut i);
        let r = responses(&d);
        assert_eq!(r.last().unwrap().code, 486);
        assert_eq!(
            r.last().unwrap().headers.get("Reason"),
            Some("Q.850;cause=17")
        );
        assert_eq!(d.closes, vec![ConnId(1)]);
    }

    #[test]
    fn unroutable_target_and_unreachable_peer_fail_cleanly() {
        let now = Instant::now();
        let mut i = iwf();
        let inv = String::from_utf8(engine_invite(false))
            .unwrap()
            .replace("5551234%40127.0.0.1%3A1720", "5551234")
            .replace("z9hG4bKeng1", "z9hG4bKeng9")
            .replace("out-1@", "out-9@");
        i.handle_sip(inv.as_bytes(), addr(ENGINE), now);
        assert_eq!(responses(&drain(&mut i)).last().unwrap().code, 404);
        i.handle_sip(&engine_invite(false), addr(ENGINE), now);
        drain(&mut i);
        i.handle_connect_failed(ConnId(1), now);
        let r = responses(&drain(&mut i));
        assert_eq!(r.last().unwrap().code, q850_to_sip(27));
    }

    /// h323 -> SIP: the Setup becomes an INVITE with the caller's number asserted
    /// and hidden; a 486 from the engine becomes cause 17.
    #[test]
    fn setup_in_becomes_invite_and_486_becomes_cause_17() {
        let now = Instant::now();
        let mut i = iwf();
        let mut peer = H323Call::outgoing(
            peer_cfg("127.0.0.1:8000", &[H245Codec::Pcma, H245Codec::Pcmu]),
            9,
            [1; 16],
            [2; 16],
        );
        peer.setup("5557000", "1002", Some("Bob"), true, now)
            .unwrap();
        let conn = i.handle_accepted(7, now);
        feed_iwf(&mut i, conn, &mut peer, now);
        let d = drain(&mut i);
        assert_eq!(feed_peer(&mut peer, &d, now), vec![CallEvent::Proceeding]);
        let reqs = requests(&d);
        let inv = &reqs[0];
        assert_eq!(inv.method, Method::Invite);
        assert_eq!(inv.uri, format!("sip:1002@{ENGINE}"));
        assert_eq!(inv.from().unwrap().uri.user.as_deref(), Some("anonymous"));
        assert!(inv
            .headers
            .get("P-Asserted-Identity")
            .unwrap()
            .contains("sip:5557000@"));
        assert_eq!(inv.headers.get("Privacy"), Some("id"));
        let body = String::from_utf8(inv.body.clone()).unwrap();
        assert!(body.contains("m=audio 8000 RTP/AVP 8 0\r\n"), "{body}");

        let mut busy = Response::for_request(inv, 486);
        busy.set_to_tag("x");
        i.handle_sip(&busy.to_bytes(), addr(ENGINE), now);
        let d = drain(&mut i);
        assert_eq!(requests(&d)[0].method, Method::Ack);
        assert_eq!(
            feed_peer(&mut peer, &d, now),
            vec![CallEvent::Released {
                cause: 17,
                remote: true
            }]
        );
    }

    /// h323 -> SIP answered: the 200's SDP becomes the fastStart answer in Connect;
    /// then the H.323 side hangs up and the engine gets a BYE with the cause.
    #[test]
    fn setup_in_answered_connects_with_engine_media_then_release_sends_bye() {
        let now = Instant::now();
        let mut i = iwf();
        let mut peer = H323Call::outgoing(
            peer_cfg("127.0.0.1:8000", &[H245Codec::Pcma]),
            9,
            [1; 16],
            [2; 16],
        );
        peer.setup("5557000", "1002", None, false, now).unwrap();
        let conn = i.handle_accepted(7, now);
        feed_iwf(&mut i, conn, &mut peer, now);
        let d = drain(&mut i);
        feed_peer(&mut peer, &d, now);
        let inv = requests(&d)[0].clone();
        assert!(inv.headers.get("Privacy").is_none());
        assert_eq!(inv.from().unwrap().uri.user.as_deref(), Some("5557000"));
        let mut ring = Response::for_request(&inv, 180);
        ring.set_to_tag("t");
        i.handle_sip(&ring.to_bytes(), addr(ENGINE), now);
        let mut ok = Response::for_request(&inv, 200);
        ok.set_to_tag("t");
        ok.headers.push("Contact", format!("<sip:tandem@{ENGINE}>"));
        ok.headers.push("Content-Type", "application/sdp");
        ok.body = sdp(20100).replace("0 8 101", "8").into_bytes();
        i.handle_sip(&ok.to_bytes(), addr(ENGINE), now);
        let d = drain(&mut i);
        assert_eq!(requests(&d)[0].method, Method::Ack);
        let ev = feed_peer(&mut peer, &d, now);
        let m = Media {
            codec: H245Codec::Pcma,
            remote_rtp: Some(addr("127.0.0.1:20100")),
        };
        assert_eq!(
            ev,
            vec![CallEvent::Alerting(None), CallEvent::Connected(Some(m))]
        );
        assert_eq!(peer.state(), State::Active);
        // A retransmitted 200 is ACKed again.
        i.handle_sip(&ok.to_bytes(), addr(ENGINE), now);
        assert_eq!(requests(&drain(&mut i))[0].method, Method::Ack);
        peer.release(31, now).unwrap();
        feed_iwf(&mut i, conn, &mut peer, now);
        let bye = requests(&drain(&mut i))[0].clone();
        assert_eq!(bye.method, Method::Bye);
        assert_eq!(bye.uri, format!("sip:tandem@{ENGINE}"));
        assert_eq!(bye.headers.get("Reason"), Some("Q.850;cause=31"));
    }

    /// Virtual time: an INVITE the engine never answers times out (Timer B) and the
    /// H.323 caller gets cause 102.
    #[test]
    fn unanswered_invite_times_out_with_cause_102() {
        let now = Instant::now();
        let mut i = iwf();
        let mut peer = H323Call::outgoing(
            peer_cfg("127.0.0.1:8000", &[H245Codec::Pcmu]),
            9,
            [1; 16],
            [2; 16],
        );
        peer.setup("1", "1002", None, false, now).unwrap();
        let conn = i.handle_accepted(7, now);
        feed_iwf(&mut i, conn, &mut peer, now);
        let d = drain(&mut i);
        feed_peer(&mut peer, &d, now);
        let mut t = now;
        let mut invites = 0;
        while let Some(next) = i.poll_timeout() {
            if next > now + Duration::from_secs(40) {
                break;
            }
            t = next;
            i.handle_timeout(t);
            let d = drain(&mut i);
            invites += requests(&d).len();
            let ev = feed_peer(&mut peer, &d, t);
            if !ev.is_empty() {
                assert_eq!(
                    ev,
                    vec![CallEvent::Released {
                        cause: 102,
                        remote: true
                    }]
                );
                break;
            }
        }
        assert!(invites >= 5, "INVITE retransmitted ({invites})");
        assert!(t >= now + Duration::from_secs(32), "Timer B is 64*T1");
        assert!(peer.is_released());
    }

    #[test]
    fn targets_and_reasons_parse() {
        assert_eq!(
            parse_target("5551234@10.0.0.5").unwrap(),
            ("5551234".into(), addr("10.0.0.5:1720"))
        );
        assert_eq!(
            parse_target("12@127.0.0.1:1721").unwrap().1,
            addr("127.0.0.1:1721")
        );
        assert!(parse_target("12@gw.example").is_err());
        assert!(parse_target("12").is_err());
        assert_eq!(
            sipua::percent_decode("1%4010.0.0.5%3A1720"),
            "1@10.0.0.5:1720"
        );
        let mut h = crate::sip::Headers::new();
        h.push("Reason", "SIP;cause=200");
        h.push("Reason", "Q.850 ; cause=17;text=\"busy\"");
        assert_eq!(sipua::reason_cause(&h), Some(17));
    }
}
