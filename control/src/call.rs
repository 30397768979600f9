//! The call manager: a SIP back-to-back user agent driven by the dialplan.
//!
//! [`Engine`] is sans-IO like the protocol cores under it: datagrams and timer
//! ticks go in with `now`, datagrams to send and the next deadline come out.
//! It owns the SIP transaction layer, the registrar, the dialplan and the
//! control side of the dataplane (through the [`Media`] trait).
//!
//! A call joins an A leg (the caller's INVITE, where we are the UAS) and a B leg
//! (the INVITE we send for `Dial`, where we are the UAC). Tandem always anchors
//! media: every SDP it sends carries its own media address and a port pair from
//! the RTP range, and the dataplane session relays between the two legs.
//!
//! Authentication, authorisation and billing stay sans-IO too ([`Engine::set_aaa`]):
//! - a SIP user missing from `[[sip.user]]` is checked by RADIUS: the REGISTER or INVITE is
//!   parked, an [`AaaQuery`] comes out of [`Engine::poll_aaa`], and the edge feeds the
//!   server's verdict back with [`Engine::handle_aaa_verdict`];
//! - with `authorize_calls`, every new call is authorised (Cisco style: calling and called
//!   number, h323-conf-id) before its dialplan runs; a refusal answers 403 and the call never
//!   leaves Tandem (a server that does not answer: 503);
//! - every call that reached the dialplan yields one [`Billing::End`] (the Master.csv record
//!   and, when it was answered, the Accounting Stop); an answer yields [`Billing::Start`].
//!   The edge drains them with [`Engine::poll_billing`].
//!
//! Run loop contract (as the edge in [`crate::net`] implements it):
//! 1. feed `handle_datagram` / `handle_timeout` / `handle_media_events` /
//!    `handle_aaa_verdict` with `now`;
//! 2. drain `poll_transmit` and send each datagram; drain `poll_aaa` and `poll_billing`;
//! 3. sleep until `poll_timeout` or the next input.

mod reinvite;

use std::collections::{HashMap, HashSet, VecDeque};
use std::fmt;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use crate::aaa::packet::Attribute;
use crate::aaa::{AcctRecord, AuthOutcome, CallOrigin, ConfId, DigestFormat};
use crate::cdr::{AmaFlags, CdrRecord, Disposition};

use crate::config::Config;
use crate::dialplan::{Action, Channel, DialStatus, Dialplan, Execution, Prompt};
use crate::mgmt::{CallInfo, LegInfo, RegistrationInfo, SipStats};
use crate::sdp::{self, Codec, SessionDescription};
use crate::sip::digest::Credentials;
use crate::sip::registrar::{Auth, RegisterStep, Registrar};
use crate::sip::transaction::{Incoming, TimerConfig, TransactionLayer, Transmit, TxEvent, TxKey};
use crate::sip::transport::{Locals, Transport};
use crate::sip::{new_branch, new_tag, CSeq, Message, Method, Request, Response, Uri};

mod gateway;
mod trunk;
pub use gateway::Gateway;
mod agi;
pub use agi::AgiStats;

/// Codecs Tandem offers and accepts when it answers a call itself (Echo, Playback...).
const SUPPORTED: &[Codec] = &[Codec::Pcmu, Codec::Pcma, Codec::TelephoneEvent];
/// Voice codecs the dataplane can transcode between, in default preference order: what a
/// bridged leg may use unless the user's `codecs` restricts it.
const TRANSCODABLE: &[Codec] = &[Codec::Pcmu, Codec::Pcma, Codec::G729];
const ALLOW: &str = "INVITE, ACK, CANCEL, BYE, OPTIONS, INFO, UPDATE";

/// What the call manager needs from the dataplane. Implemented by
/// [`dataplane::Dataplane`]; a test double can stand in for unit tests.
pub trait Media {
    fn create_session(
        &mut self,
        mode: dataplane::Mode,
    ) -> Result<dataplane::Allocated, dataplane::Error>;
    fn set_remote(
        &mut self,
        id: dataplane::SessionId,
        side: dataplane::Side,
        rtp: SocketAddr,
    ) -> Result<(), dataplane::Error>;
    fn set_mode(
        &mut self,
        id: dataplane::SessionId,
        mode: dataplane::Mode,
    ) -> Result<(), dataplane::Error>;
    fn arm_timeout(&mut self, id: dataplane::SessionId) -> Result<(), dataplane::Error>;
    fn destroy(&mut self, id: dataplane::SessionId) -> Result<(), dataplane::Error>;
    fn poll_event(&mut self) -> Option<dataplane::Event>;
    fn stats(&self) -> Vec<dataplane::WorkerStats>;
    /// The negotiated codec of a leg; legs that differ are transcoded. Returns whether the
    /// session now transcodes. The default (for media doubles without codecs) ignores it.
    fn set_codec(
        &mut self,
        _id: dataplane::SessionId,
        _side: dataplane::Side,
        _codec: dataplane::LegCodec,
    ) -> Result<bool, dataplane::Error> {
        Ok(false)
    }
    /// Play a tone or sound toward the peer of leg `side` (dialplan Playback and friends).
    /// The default (media doubles) refuses, so the plan sees a failed playback.
    fn play(
        &mut self,
        _id: dataplane::SessionId,
        _side: dataplane::Side,
        _source: dataplane::Source,
    ) -> Result<(), dataplane::Error> {
        Err(dataplane::Error::UnknownSession(_id))
    }
    fn stop_play(
        &mut self,
        _id: dataplane::SessionId,
        _side: dataplane::Side,
    ) -> Result<(), dataplane::Error> {
        Ok(())
    }
    fn detect_digits(
        &mut self,
        _id: dataplane::SessionId,
        _side: dataplane::Side,
        _mode: dataplane::DigitMode,
    ) -> Result<(), dataplane::Error> {
        Ok(())
    }
    fn poll_media_event(&mut self) -> Option<dataplane::MediaEvent> {
        None
    }
}

impl Media for dataplane::Dataplane {
    fn create_session(
        &mut self,
        mode: dataplane::Mode,
    ) -> Result<dataplane::Allocated, dataplane::Error> {
        dataplane::Dataplane::create_session(self, mode)
    }
    fn set_remote(
        &mut self,
        id: dataplane::SessionId,
        side: dataplane::Side,
        rtp: SocketAddr,
    ) -> Result<(), dataplane::Error> {
        dataplane::Dataplane::set_remote(self, id, side, rtp, None)
    }
    fn set_mode(
        &mut self,
        id: dataplane::SessionId,
        mode: dataplane::Mode,
    ) -> Result<(), dataplane::Error> {
        dataplane::Dataplane::set_mode(self, id, mode)
    }
    fn arm_timeout(&mut self, id: dataplane::SessionId) -> Result<(), dataplane::Error> {
        dataplane::Dataplane::arm_timeout(self, id)
    }
    fn destroy(&mut self, id: dataplane::SessionId) -> Result<(), dataplane::Error> {
        dataplane::Dataplane::destroy(self, id)
    }
    fn poll_event(&mut self) -> Option<dataplane::Event> {
        dataplane::Dataplane::poll_event(self)
    }
    fn stats(&self) -> Vec<dataplane::WorkerStats> {
        dataplane::Dataplane::stats(self)
    }
    fn set_codec(
        &mut self,
        id: dataplane::SessionId,
        side: dataplane::Side,
        codec: dataplane::LegCodec,
    ) -> Result<bool, dataplane::Error> {
        dataplane::Dataplane::set_codec(self, id, side, codec)
    }
    fn play(
        &mut self,
        id: dataplane::SessionId,
        side: dataplane::Side,
        source: dataplane::Source,
    ) -> Result<(), dataplane::Error> {
        dataplane::Dataplane::play(self, id, side, source)
    }
    fn stop_play(
        &mut self,
        id: dataplane::SessionId,
        side: dataplane::Side,
    ) -> Result<(), dataplane::Error> {
        dataplane::Dataplane::stop_play(self, id, side)
    }
    fn detect_digits(
        &mut self,
        id: dataplane::SessionId,
        side: dataplane::Side,
        mode: dataplane::DigitMode,
    ) -> Result<(), dataplane::Error> {
        dataplane::Dataplane::detect_digits(self, id, side, mode)
    }
    fn poll_media_event(&mut self) -> Option<dataplane::MediaEvent> {
        dataplane::Dataplane::poll_media_event(self)
    }
}

/// The dataplane form of what SDP agreed for one leg. G.711/G.729 only; a ptime other
/// than 10/20/30 ms is sent at 20 ms.
fn leg_codec(n: &sdp::Negotiated) -> Option<dataplane::LegCodec> {
    let codec = match n.codec {
        Codec::Pcmu => dataplane::CodecKind::Pcmu,
        Codec::Pcma => dataplane::CodecKind::Pcma,
        Codec::G729 => dataplane::CodecKind::G729,
        Codec::TelephoneEvent => return None,
    };
    let ptime_ms = match n.ptime {
        Some(p @ (10 | 20 | 30)) => p as u16,
        _ => 20,
    };
    Some(dataplane::LegCodec {
        codec,
        pt: n.pt,
        ptime_ms,
        dtmf_pt: n.dtmf_pt,
    })
}

/// Tandem's own id for a call (shown by `tandemctl show calls`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct CallId(pub u64);

impl fmt::Display for CallId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("c")?;
        crate::sip::text::fmt_u64(f, self.0)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum LegSide {
    A,
    B,
}

/// Call progress, as seen from the caller.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum CallState {
    /// Running the dialplan (or waiting in Wait()).
    Routing,
    /// A B leg is being set up.
    Dialing,
    /// Both legs answered and bridged.
    Bridged,
    /// Answered by an application (Echo) on the A leg alone.
    InApp,
    /// Hung up; waiting for the last transactions.
    Ending,
}

/// The caller's side: we are the UAS.
struct ALeg {
    call_id: String,
    /// The caller's From header (their tag) — our To in requests we send them.
    remote_hdr: String,
    /// Our To header for this dialog (with our tag).
    local_hdr: String,
    local_tag: String,
    remote_target: String,
    peer: SocketAddr,
    invite: Request,
    tx: TxKey,
    cseq: u32,
    /// Final response sent (2xx or error).
    final_sent: bool,
    answered: bool,
    early_sdp_sent: bool,
    /// The SDP we gave the caller (for re-INVITE answers).
    local_sdp: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum BState {
    Calling,
    Early,
    Answered,
    Cancelling,
    Gone,
}

/// The callee's side: we are the UAC.
struct BLeg {
    call_id: String,
    local_hdr: String,
    remote_hdr: String,
    remote_target: String,
    dest: SocketAddr,
    invite: Request,
    tx: TxKey,
    cseq: u32,
    state: BState,
    ack: Option<Request>,
    user: String,
    offer_sdp: String,
}

struct Call {
    id: CallId,
    state: CallState,
    a: ALeg,
    b: Option<BLeg>,
    exec: Execution,
    caller_offer: Option<SessionDescription>,
    media: Option<dataplane::Allocated>,
    sess_id: u64,
    caller: String,
    exten: String,
    started: Instant,
    answered_at: Option<Instant>,
    /// Dial timeout or Wait() end.
    wake_at: Option<Instant>,
    /// SIP status of the last failed Dial, relayed to the caller on Hangup().
    last_dial_status: Option<u16>,
    /// Remote RTP address of the B leg (for show calls).
    b_remote_media: Option<SocketAddr>,
    /// Voice codecs allowed on the A leg (the authenticated caller's `codecs`).
    a_codecs: Vec<Codec>,
    /// The codecs of legs A and B when the call is transcoded.
    transcoding: Option<(Codec, Codec)>,
    /// Billing identity and the Master.csv columns gathered along the call.
    bill: CallBill,
    /// The caller asked for identity privacy (RFC 3323): callees outside the trust domain
    /// see an anonymous From.
    privacy: bool,
    /// A re-INVITE being relayed to the other leg ([`reinvite`]).
    reinvite: Option<reinvite::Pending>,
    /// The `Reason` of the BYE that ended the call (a Q.850 cause from a PSTN
    /// gateway, say), passed on in the BYE to the other leg (RFC 3326).
    bye_reason: Option<String>,
}

/// What a call's CDR and accounting records need, gathered as it runs.
#[derive(Debug, Clone)]
struct CallBill {
    uniqueid: String,
    conf_id: ConfId,
    caller_name: String,
    context: String,
    channel: String,
    dstchannel: String,
    lastapp: String,
    lastdata: String,
    start: SystemTime,
    answer: Option<SystemTime>,
}

/// Engine settings derived from [`Config`].
#[derive(Debug, Clone)]
pub struct EngineConfig {
    /// Our SIP address (Via, Contact).
    pub local: SocketAddr,
    pub realm: String,
    pub user_agent: String,
    pub context: String,
    pub user_contexts: HashMap<String, String>,
    pub users: HashMap<String, String>,
    pub timers: TimerConfig,
    /// Per-user codec restriction (`[[sip.user]] codecs`); users not listed may use any
    /// transcodable codec.
    pub user_codecs: HashMap<String, Vec<Codec>>,
    /// `[dialplan] tone_zone`: the call-progress tones Playback(tone:...) plays.
    pub tone_zone: String,
    /// Sounds the plan can play, by name (`[dialplan] sounds` directory, loaded at start).
    pub sounds: Arc<HashMap<String, Arc<[i16]>>>,
    /// Trusted interworking peers by technology ([`Engine::add_gateway`]).
    pub gateways: Vec<Gateway>,
}

impl EngineConfig {
    pub fn from_config(cfg: &Config) -> EngineConfig {
        EngineConfig {
            local: cfg.primary_listen().addr,
            realm: cfg.realm.clone(),
            user_agent: cfg.user_agent.clone(),
            context: cfg.context.clone(),
            user_contexts: cfg
                .users
                .iter()
                .filter_map(|u| u.context.clone().map(|c| (u.name.clone(), c)))
                .collect(),
            users: cfg
                .users
                .iter()
                .map(|u| (u.name.clone(), u.password.clone()))
                .collect(),
            timers: TimerConfig::default(),
            user_codecs: cfg
                .users
                .iter()
                .filter_map(|u| u.codecs.clone().map(|c| (u.name.clone(), c)))
                .collect(),
            tone_zone: cfg.tone_zone.clone(),
            sounds: Arc::new(HashMap::new()),
            gateways: Vec::new(),
        }
    }

    /// Voice codecs allowed on a leg to or from `user`.
    fn codecs_for(&self, user: &str) -> Vec<Codec> {
        self.user_codecs
            .get(user)
            .cloned()
            .unwrap_or_else(|| TRANSCODABLE.to_vec())
    }
}

/// Authentication and billing settings ([`Engine::set_aaa`]); the default is all off.
#[derive(Debug, Clone, Default)]
pub struct AaaSettings {
    /// Users missing from `[[sip.user]]` are authenticated by RADIUS (RFC 5090 digest).
    pub radius_digest: bool,
    /// Which digest attributes the Access-Request carries.
    pub digest_format: DigestFormat,
    /// Authorise each new call with a Cisco-style Access-Request before it is routed.
    pub authorize_calls: bool,
    /// NAS-IP-Address of every request.
    pub nas_ip: Option<Ipv4Addr>,
    /// Produce [`Billing`] records (CDR and/or accounting configured).
    pub billing: bool,
}

/// Ticket of a parked request, echoed by [`Engine::handle_aaa_verdict`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct AaaTicket(pub u64);

/// An Access-Request the edge must send ([`Engine::poll_aaa`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AaaQuery {
    pub ticket: AaaTicket,
    pub attributes: Vec<Attribute>,
    /// User-Password (hidden by the client with the shared secret), if any.
    pub password: Option<Vec<u8>>,
}

/// A request waiting for the RADIUS server's verdict.
struct Parked {
    key: TxKey,
    req: Request,
    from: SocketAddr,
    kind: ParkedKind,
}

enum ParkedKind {
    /// REGISTER of a RADIUS user.
    Register { user: String },
    /// INVITE of a RADIUS user (digest check).
    Invite { user: String },
    /// INVITE of an authenticated user, waiting for call authorisation.
    Authorize { user: String, conf_id: ConfId },
}

/// Billing output of the engine ([`Engine::poll_billing`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Billing {
    /// The call was answered: Accounting Start.
    Start(CallRecord),
    /// The call was released: its Master.csv record, and Accounting Stop if answered.
    End(CallRecord),
}

/// One call as billing sees it: the Master.csv columns and the accounting attributes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CallRecord {
    /// Asterisk-style unique id (`<engine start>.<n>`), also the Acct-Session-Id.
    pub uniqueid: String,
    pub conf_id: ConfId,
    pub src: String,
    pub caller_name: String,
    pub dst: String,
    pub dcontext: String,
    pub channel: String,
    pub dstchannel: String,
    pub lastapp: String,
    pub lastdata: String,
    /// The caller's signalling address.
    pub caller_addr: IpAddr,
    /// The callee's signalling address (the caller's when no B leg was reached).
    pub remote_addr: IpAddr,
    pub start: SystemTime,
    pub answer: Option<SystemTime>,
    /// Release time (`None` in a Start).
    pub end: Option<SystemTime>,
    pub disposition: Disposition,
    /// Q.850 release cause (`None` in a Start).
    pub cause: Option<u16>,
}

impl CallRecord {
    /// The Master.csv record (a Start has no end: it uses the answer time).
    pub fn cdr(&self) -> CdrRecord {
        CdrRecord {
            accountcode: String::new(),
            src: self.src.clone(),
            dst: self.dst.clone(),
            dcontext: self.dcontext.clone(),
            clid: crate::cdr::clid(&self.caller_name, &self.src),
            channel: self.channel.clone(),
            dstchannel: self.dstchannel.clone(),
            lastapp: self.lastapp.clone(),
            lastdata: self.lastdata.clone(),
            start: self.start,
            answer: self.answer,
            end: self.end.or(self.answer).unwrap_or(self.start),
            disposition: self.disposition,
            amaflags: AmaFlags::Documentation,
            uniqueid: self.uniqueid.clone(),
            userfield: String::new(),
        }
    }

    /// The accounting record (Start/Stop attributes come from [`AcctRecord::attributes`]).
    pub fn acct(&self, nas_ip: Option<Ipv4Addr>) -> AcctRecord {
        AcctRecord {
            session_id: self.uniqueid.clone(),
            calling: self.src.clone(),
            called: self.dst.clone(),
            nas_ip,
            conf_id: self.conf_id,
            origin: CallOrigin::Answer,
            call_type: "VoIP".into(),
            remote_address: Some(self.remote_addr),
            setup_time: self.start,
            connect_time: self.answer,
            disconnect_time: self.end,
            disconnect_cause: self.cause.map(|c| c.min(255) as u8),
        }
    }
}

/// The B2BUA call manager.
pub struct Engine<M: Media> {
    cfg: EngineConfig,
    tl: TransactionLayer,
    registrar: Registrar,
    dialplan: Arc<Dialplan>,
    media: M,
    calls: HashMap<CallId, Call>,
    by_sip_id: HashMap<String, (CallId, LegSide)>,
    by_tx: HashMap<TxKey, (CallId, LegSide)>,
    media_sessions: HashMap<dataplane::SessionId, CallId>,
    /// BYEs we sent and still wait a final response for (for a clean shutdown).
    pending_byes: HashSet<TxKey>,
    next_call: u64,
    shutting_down: bool,
    epoch: (Instant, u64),
    next_housekeeping: Instant,
    stats: SipStats,
    log: Vec<String>,
    aaa: AaaSettings,
    parked: HashMap<AaaTicket, Parked>,
    next_ticket: u64,
    aaa_out: VecDeque<AaaQuery>,
    billing: VecDeque<Billing>,
    /// Wall clock at a monotonic instant (CDR and accounting times).
    wall_epoch: (Instant, SystemTime),
    /// Asterisk channel sequence (`SIP/1001-00000001`).
    next_channel: u32,
    /// FastAGI sessions of `AGI()` (see the `agi` child module).
    agi: agi::AgiState,
    /// Our address per transport, for the Via and Contact of what we send.
    locals: Locals,
    /// SIP trunks and the per-user caller-ID settings ([`Engine::configure_trunks`]).
    trunks: trunk::Trunks,
}

impl<M: Media> Engine<M> {
    /// `wall_secs_at_now` is the wall clock (seconds since the Unix epoch) at `now`;
    /// the engine derives later wall times from the monotonic clock.
    pub fn new(
        cfg: EngineConfig,
        dialplan: Arc<Dialplan>,
        media: M,
        secret: [u8; 32],
        now: Instant,
        wall_secs_at_now: u64,
    ) -> Self {
        let registrar = Registrar::new(cfg.realm.clone(), cfg.users.clone(), secret);
        Engine {
            tl: TransactionLayer::new(cfg.timers),
            registrar,
            dialplan,
            media,
            calls: HashMap::new(),
            by_sip_id: HashMap::new(),
            by_tx: HashMap::new(),
            media_sessions: HashMap::new(),
            pending_byes: HashSet::new(),
            next_call: 1,
            shutting_down: false,
            epoch: (now, wall_secs_at_now),
            next_housekeeping: now + Duration::from_secs(1),
            stats: SipStats::default(),
            log: Vec::new(),
            aaa: AaaSettings::default(),
            parked: HashMap::new(),
            next_ticket: 1,
            aaa_out: VecDeque::new(),
            billing: VecDeque::new(),
            wall_epoch: (now, UNIX_EPOCH + Duration::from_secs(wall_secs_at_now)),
            next_channel: 1,
            agi: agi::AgiState::default(),
            locals: Locals::udp(cfg.local),
            trunks: trunk::Trunks::default(),
            cfg,
        }
    }

    /// A TCP or TLS listener: requests sent over that transport name it in Via and Contact.
    pub fn set_listener(&mut self, transport: Transport, addr: SocketAddr) {
        self.locals.set(transport, addr);
    }

    /// Turn on RADIUS authentication, call authorisation and billing records.
    pub fn set_aaa(&mut self, settings: AaaSettings) {
        self.registrar.set_remote_auth(settings.radius_digest);
        self.aaa = settings;
    }

    /// A finer wall clock than `new`'s seconds: `wall` is the wall time at `now`.
    pub fn set_wall_clock(&mut self, now: Instant, wall: SystemTime) {
        self.wall_epoch = (now, wall);
    }

    fn wall_time(&self, now: Instant) -> SystemTime {
        self.wall_epoch.1 + now.saturating_duration_since(self.wall_epoch.0)
    }

    /// The next Access-Request to send; answer it with [`Engine::handle_aaa_verdict`].
    pub fn poll_aaa(&mut self) -> Option<AaaQuery> {
        self.aaa_out.pop_front()
    }

    /// The next billing record (Start on answer, End on release), in call order.
    pub fn poll_billing(&mut self) -> Option<Billing> {
        self.billing.pop_front()
    }

    /// Requests waiting for a RADIUS verdict.
    pub fn parked(&self) -> usize {
        self.parked.len()
    }

    fn wall_secs(&self, now: Instant) -> u64 {
        self.epoch.1 + now.saturating_duration_since(self.epoch.0).as_secs()
    }

    /// Give the media handle back (for an orderly dataplane shutdown).
    pub fn into_media(self) -> M {
        self.media
    }

    /// The media handle, shared with other control interfaces (the ng
    /// protocol creates its own sessions on it; their events are ignored here).
    pub fn media_mut(&mut self) -> &mut M {
        &mut self.media
    }

    /// The media handle, read-only (management: backend selection).
    pub fn media(&self) -> &M {
        &self.media
    }

    /// Log lines produced since the last call (the edge prints them).
    pub fn drain_log(&mut self) -> Vec<String> {
        std::mem::take(&mut self.log)
    }

    fn note(&mut self, line: String) {
        self.log.push(line);
    }

    // ----------------------------------------------------------------- input

    /// A datagram arrived on a SIP listener.
    pub fn handle_datagram(&mut self, bytes: &[u8], from: SocketAddr, now: Instant) {
        self.handle_parsed(Message::parse(bytes), from, now);
    }

    /// [`Self::handle_datagram`] for a datagram the edge already parsed (parse once).
    pub fn handle_parsed(
        &mut self,
        parsed: Result<Message, crate::sip::ParseError>,
        from: SocketAddr,
        now: Instant,
    ) {
        self.stats.rx += 1;
        let msg = match parsed {
            Ok(m) => m,
            Err(e) => {
                self.stats.parse_errors += 1;
                match e.partial {
                    Some(req) if can_respond(&req) && req.method != Method::Ack => {
                        let mut resp = Response::for_request(&req, 400);
                        resp.reason = format!("Bad Request ({})", sanitize_reason(&e.reason));
                        self.add_server_headers(&mut resp);
                        self.stats.bad_request_sent += 1;
                        self.note(format!(
                            "SIP from {from}: malformed request, sent 400: {}",
                            e.reason
                        ));
                        self.tl.send_stateless(&Message::Response(resp), from);
                    }
                    _ => {
                        self.stats.dropped += 1;
                        self.note(format!(
                            "SIP from {from}: dropped malformed message: {}",
                            e.reason
                        ));
                    }
                }
                return;
            }
        };
        match self.tl.handle(msg, from, now) {
            Incoming::Request { key, req, from } => self.on_request(key, req, from, now),
            Incoming::Ack { req, from } => self.on_ack(req, from, now),
            Incoming::Response { key, resp } => self.on_response(key, resp, now),
            Incoming::StrayResponse { resp, from } => self.on_stray_response(resp, from),
            Incoming::Absorbed => {}
        }
    }

    /// Timers: transactions, dial timeouts, Wait(), registration expiry.
    pub fn handle_timeout(&mut self, now: Instant) {
        self.tl.handle_timeout(now);
        self.drain_tx_events(now);
        let due: Vec<CallId> = self
            .calls
            .values()
            .filter(|c| c.wake_at.is_some_and(|w| w <= now))
            .map(|c| c.id)
            .collect();
        for id in due {
            self.on_wake(id, now);
        }
        self.trunk_timers(now);
        if now >= self.next_housekeeping {
            self.registrar.expire(now);
            self.next_housekeeping = now + Duration::from_secs(1);
        }
    }

    /// Drain dataplane events (media timeout, first packet).
    pub fn handle_media_events(&mut self, now: Instant) {
        while let Some(ev) = self.media.poll_event() {
            match ev {
                dataplane::Event::MediaTimeout { id } => {
                    if let Some(&cid) = self.media_sessions.get(&id) {
                        self.note(format!(
                            "call {cid}: no RTP for the media timeout, hanging up"
                        ));
                        self.hangup(cid, HangupWhy::MediaTimeout, now);
                    }
                }
                dataplane::Event::FirstPacket { .. } => {}
            }
        }
        while let Some(ev) = self.media.poll_media_event() {
            let Some(&cid) = self.media_sessions.get(&ev.session()) else {
                continue;
            };
            if self.agi_media_event(cid, &ev, now) {
                continue;
            }
            match ev {
                dataplane::MediaEvent::Digit {
                    side: dataplane::Side::A,
                    digit,
                    ..
                } => {
                    if let Some(call) = self.calls.get_mut(&cid) {
                        call.exec.digit(digit, now);
                    }
                    self.run_dialplan(cid, now);
                }
                dataplane::MediaEvent::PlaybackDone {
                    side: dataplane::Side::A,
                    completed: true,
                    ..
                } => {
                    if let Some(call) = self.calls.get_mut(&cid) {
                        call.exec.playback_done(true, now);
                    }
                    self.run_dialplan(cid, now);
                }
                _ => {}
            }
        }
    }

    /// The next datagram to send.
    pub fn poll_transmit(&mut self) -> Option<Transmit> {
        let t = self.tl.poll_transmit();
        if t.is_some() {
            self.stats.tx += 1;
        }
        t
    }

    /// The next instant `handle_timeout` must run.
    pub fn poll_timeout(&self) -> Option<Instant> {
        let mut next = Some(self.next_housekeeping);
        let mut consider = |t: Option<Instant>| {
            if let Some(t) = t {
                next = Some(next.map_or(t, |n: Instant| n.min(t)));
            }
        };
        consider(self.tl.poll_timeout());
        consider(self.trunk_next_timeout());
        for c in self.calls.values() {
            consider(c.wake_at);
        }
        next
    }

    // ------------------------------------------------------------- requests

    fn on_request(&mut self, key: TxKey, req: Request, from: SocketAddr, now: Instant) {
        let to_tag = req.to_tag().map(str::to_string);
        let call_id = req.call_id().unwrap_or_default().to_string();
        match req.method {
            Method::Register => {
                let wall = self.wall_secs(now);
                let mut resp = match self.registrar.begin_register(&req, from, now, wall) {
                    RegisterStep::Done(r) => r,
                    RegisterStep::Remote(c) => {
                        let user = c.username.clone();
                        self.park_digest(key, req, from, &c, ParkedKind::Register { user });
                        return;
                    }
                };
                self.add_server_headers(&mut resp);
                if resp.code == 200 {
                    self.note(format!(
                        "REGISTER {} from {from}: 200",
                        req.to()
                            .and_then(|t| t.uri.user.clone())
                            .unwrap_or_default()
                    ));
                }
                self.respond(&key, resp, now);
            }
            Method::Cancel => self.on_cancel(key, req, now),
            Method::Options if to_tag.is_none() => {
                let mut resp = Response::for_request(&req, 200);
                resp.headers.set("Allow", ALLOW);
                resp.headers.set("Accept", "application/sdp");
                self.add_server_headers(&mut resp);
                self.respond(&key, resp, now);
            }
            Method::Invite if to_tag.is_none() => self.on_new_invite(key, req, from, now),
            _ if to_tag.is_some() => match self.by_sip_id.get(&call_id).copied() {
                Some((cid, side)) => self.on_in_dialog(cid, side, key, req, now),
                None => {
                    let mut resp = Response::for_request(&req, 481);
                    self.add_server_headers(&mut resp);
                    self.respond(&key, resp, now);
                }
            },
            Method::Bye => {
                let mut resp = Response::for_request(&req, 481);
                self.add_server_headers(&mut resp);
                self.respond(&key, resp, now);
            }
            _ => {
                let mut resp = Response::for_request(&req, 405);
                resp.headers.set("Allow", ALLOW);
                self.add_server_headers(&mut resp);
                self.respond(&key, resp, now);
            }
        }
    }

    fn on_new_invite(&mut self, key: TxKey, req: Request, from: SocketAddr, now: Instant) {
        let call_id = req.call_id().unwrap_or_default().to_string();
        if self.by_sip_id.contains_key(&call_id) {
            // A second INVITE with the same Call-ID and no To tag (a merged request).
            let resp = self.reply(&req, 482, None);
            self.respond(&key, resp, now);
            return;
        }
        if self.shutting_down {
            let resp = self.reply(&req, 503, None);
            self.respond(&key, resp, now);
            return;
        }
        if let Some(gw) = self.gateway_at(from) {
            let user = format!("{}/gateway", gw.tech);
            self.invite_authenticated(key, req, from, user, now);
            return;
        }
        let mut req = req;
        if let Some(user) = self.trunk_inbound(&mut req, from) {
            self.invite_authenticated(key, req, from, user, now);
            return;
        }
        let wall = self.wall_secs(now);
        let user = match self.registrar.authenticate(&req, wall) {
            Auth::Ok { user } => user,
            Auth::Remote(c) => {
                let user = c.username.clone();
                self.park_digest(key, req, from, &c, ParkedKind::Invite { user });
                return;
            }
            Auth::Challenge(mut resp) | Auth::Forbidden(mut resp) => {
                self.add_server_headers(&mut resp);
                if resp.code == 403 {
                    self.note(format!(
                        "INVITE {call_id} from {from}: authentication failed, 403"
                    ));
                }
                self.respond(&key, resp, now);
                return;
            }
        };
        self.invite_authenticated(key, req, from, user, now);
    }

    /// Park a request whose digest RADIUS must check.
    fn park_digest(
        &mut self,
        key: TxKey,
        req: Request,
        from: SocketAddr,
        c: &Credentials,
        kind: ParkedKind,
    ) {
        let attributes = crate::aaa::digest_auth_request(
            c,
            req.method.as_str(),
            self.aaa.digest_format,
            self.aaa.nas_ip,
        );
        self.note(format!(
            "{} from {from}: user {} checked by RADIUS",
            req.method, c.username
        ));
        self.park(key, req, from, kind, attributes, None);
    }

    fn park(
        &mut self,
        key: TxKey,
        req: Request,
        from: SocketAddr,
        kind: ParkedKind,
        attributes: Vec<Attribute>,
        password: Option<Vec<u8>>,
    ) {
        let ticket = AaaTicket(self.next_ticket);
        self.next_ticket += 1;
        self.parked.insert(
            ticket,
            Parked {
                key,
                req,
                from,
                kind,
            },
        );
        self.aaa_out.push_back(AaaQuery {
            ticket,
            attributes,
            password,
        });
    }

    /// The RADIUS server's verdict on a parked request: resume or refuse it.
    pub fn handle_aaa_verdict(&mut self, ticket: AaaTicket, outcome: &AuthOutcome, now: Instant) {
        let Some(p) = self.parked.remove(&ticket) else {
            return; // cancelled meanwhile
        };
        let method = p.req.method.clone();
        let refuse = |this: &mut Self, code: u16, why: &str| {
            let mut resp = this.reply(&p.req, code, None);
            resp.set_to_tag(&new_tag());
            if !why.is_empty() {
                resp.reason = format!("{} ({why})", resp.reason);
            }
            let why = if why.is_empty() {
                "refused by RADIUS"
            } else {
                why
            };
            this.note(format!("{method} from {}: {code} ({why})", p.from));
            this.respond(&p.key, resp, now);
        };
        match outcome {
            AuthOutcome::Accept(_) => {}
            AuthOutcome::Reject(msg) => {
                let why = match &p.kind {
                    ParkedKind::Authorize { .. } => "call not authorised",
                    _ => "",
                };
                let why = msg
                    .as_deref()
                    .filter(|m| !m.is_empty())
                    .map(sanitize_reason)
                    .unwrap_or_else(|| why.to_string());
                return refuse(self, 403, &why);
            }
            AuthOutcome::TimedOut => {
                return refuse(self, 503, "authentication server unreachable");
            }
        }
        match p.kind {
            ParkedKind::Register { user } => {
                let mut resp = self.registrar.finish_register(&p.req, p.from, &user, now);
                self.add_server_headers(&mut resp);
                self.note(format!(
                    "REGISTER {user} from {}: {} (RADIUS)",
                    p.from, resp.code
                ));
                self.respond(&p.key, resp, now);
            }
            ParkedKind::Invite { user } => {
                if self.shutting_down {
                    return refuse(self, 503, "shutting down");
                }
                self.invite_authenticated(p.key, p.req, p.from, user, now);
            }
            ParkedKind::Authorize { user, conf_id } => {
                if self.shutting_down {
                    return refuse(self, 503, "shutting down");
                }
                self.start_call(p.key, p.req, p.from, user, conf_id, now);
            }
        }
    }

    /// An INVITE from an authenticated user: authorise the call (if configured), then start it.
    fn invite_authenticated(
        &mut self,
        key: TxKey,
        req: Request,
        from: SocketAddr,
        user: String,
        now: Instant,
    ) {
        let conf_id = ConfId::random();
        if self.aaa.authorize_calls {
            let exten = Uri::parse(&req.uri)
                .ok()
                .and_then(|u| u.user)
                .unwrap_or_default();
            let calling = req
                .from()
                .and_then(|f| f.uri.user.clone())
                .unwrap_or_else(|| user.clone());
            let attributes =
                crate::aaa::pstn_auth_request(&calling, &exten, &conf_id, self.aaa.nas_ip);
            self.note(format!(
                "INVITE from {from}: authorising {calling} -> {exten} with RADIUS"
            ));
            let password = Some(calling.into_bytes());
            self.park(
                key,
                req,
                from,
                ParkedKind::Authorize { user, conf_id },
                attributes,
                password,
            );
            return;
        }
        self.start_call(key, req, from, user, conf_id, now);
    }

    /// Create the call for an authenticated (and authorised) INVITE and run its dialplan.
    fn start_call(
        &mut self,
        key: TxKey,
        req: Request,
        from: SocketAddr,
        user: String,
        conf_id: ConfId,
        now: Instant,
    ) {
        let call_id = req.call_id().unwrap_or_default().to_string();
        let offer = if req.body.is_empty() {
            None
        } else {
            match std::str::from_utf8(&req.body)
                .ok()
                .and_then(|s| SessionDescription::parse(s).ok())
            {
                Some(o) => Some(o),
                None => {
                    let mut resp = self.reply(&req, 400, None);
                    resp.reason = "Bad Request (unparsable SDP)".into();
                    self.respond(&key, resp, now);
                    return;
                }
            }
        };
        let Some(offer) = offer else {
            // Late offer (INVITE without SDP) is not supported yet.
            let mut resp = self.reply(&req, 488, None);
            resp.reason = "Not Acceptable Here (INVITE without SDP offer)".into();
            self.respond(&key, resp, now);
            return;
        };
        let exten = Uri::parse(&req.uri)
            .ok()
            .and_then(|u| u.user)
            .unwrap_or_default();
        let from_na = req.from();
        let gw = self
            .gateway_at(from)
            .cloned()
            .or_else(|| self.trunk_gateway(&user));
        let privacy = gateway::wants_privacy(&req) || self.trunk_user_restricted(&user);
        // A gateway is trusted: its P-Asserted-Identity is the caller even when From is
        // anonymous (RFC 3325 §9.1).
        let asserted = (gw.is_some() || self.trunk_user_trusted(&user))
            .then(|| gateway::asserted_user(&req))
            .flatten();
        let caller = asserted
            .or_else(|| from_na.as_ref().and_then(|f| f.uri.user.clone()))
            .unwrap_or_else(|| user.clone());
        let caller_name = from_na
            .as_ref()
            .and_then(|f| f.display.clone())
            .filter(|n| !(privacy && n.eq_ignore_ascii_case("anonymous")))
            .unwrap_or_default();
        let bill_name = caller_name.clone();
        let context = match &gw {
            Some(g) => g.context.clone(),
            None => self
                .cfg
                .user_contexts
                .get(&user)
                .cloned()
                .unwrap_or_else(|| self.cfg.context.clone()),
        };
        let chan = Channel {
            exten: exten.clone(),
            caller_num: caller.clone(),
            caller_name,
            vars: HashMap::new(),
        };
        let exec = match Execution::start(self.dialplan.clone(), &context, chan) {
            Ok(e) => e,
            Err(e) => {
                self.note(format!(
                    "INVITE {call_id}: {exten} in context {context}: {e}, 404"
                ));
                let resp = self.reply(&req, 404, None);
                self.respond(&key, resp, now);
                return;
            }
        };
        let media = match self.media.create_session(dataplane::Mode::Relay) {
            Ok(m) => m,
            Err(e) => {
                self.note(format!("INVITE {call_id}: no media session: {e}, 503"));
                let resp = self.reply(&req, 503, None);
                self.respond(&key, resp, now);
                return;
            }
        };
        if let Some(addr) = offer.audio_addr() {
            if let Err(e) = self.media.set_remote(media.id, dataplane::Side::A, addr) {
                self.note(format!("INVITE {call_id}: media: {e}"));
            }
        }
        let local_tag = new_tag();
        let remote_hdr = req.headers.get("From").unwrap_or_default().to_string();
        let to_value = req.headers.get("To").unwrap_or_default().to_string();
        let mut local_hdr = String::with_capacity(to_value.len() + local_tag.len() + 5);
        local_hdr.push_str(&to_value);
        local_hdr.push_str(";tag=");
        local_hdr.push_str(&local_tag);
        let remote_target = req
            .contact()
            .map(|c| c.uri.to_string())
            .unwrap_or_else(|| format!("sip:{from}"));
        let id = CallId(self.next_call);
        self.next_call += 1;
        let bill = CallBill {
            uniqueid: {
                let mut u = String::with_capacity(24);
                crate::sip::text::push_u64(&mut u, self.wall_secs(self.epoch.0));
                u.push('.');
                crate::sip::text::push_u64(&mut u, id.0);
                u
            },
            conf_id,
            caller_name: bill_name,
            context: context.clone(),
            channel: match &gw {
                Some(g) => self.channel_name_for(&g.tech, &caller),
                None => self.channel_name(&caller),
            },
            dstchannel: String::new(),
            lastapp: String::new(),
            lastdata: String::new(),
            start: self.wall_time(now),
            answer: None,
        };
        self.note(format!(
            "call {id}: {caller} -> {exten} (context {context}, Call-ID {call_id})"
        ));
        let call = Call {
            id,
            state: CallState::Routing,
            a: ALeg {
                call_id: call_id.clone(),
                remote_hdr,
                local_hdr,
                local_tag,
                remote_target,
                peer: from,
                invite: req,
                tx: key.clone(),
                cseq: 1,
                final_sent: false,
                answered: false,
                early_sdp_sent: false,
                local_sdp: None,
            },
            b: None,
            exec,
            caller_offer: Some(offer),
            media: Some(media),
            sess_id: rand::random::<u32>() as u64,
            caller,
            exten,
            started: now,
            answered_at: None,
            wake_at: None,
            last_dial_status: None,
            b_remote_media: None,
            a_codecs: match &gw {
                Some(g) if !g.codecs.is_empty() => g.codecs.clone(),
                _ => self.cfg.codecs_for(&user),
            },
            privacy,
            transcoding: None,
            bill,
            reinvite: None,
            bye_reason: None,
        };
        self.by_sip_id.insert(call_id, (id, LegSide::A));
        self.by_tx.insert(key, (id, LegSide::A));
        self.media_sessions.insert(media.id, id);
        self.calls.insert(id, call);
        self.run_dialplan(id, now);
    }

    fn on_cancel(&mut self, key: TxKey, req: Request, now: Instant) {
        let Some(invite_key) = self.tl.invite_for_cancel(&req) else {
            let resp = self.reply(&req, 481, None);
            self.respond(&key, resp, now);
            return;
        };
        let resp = self.reply(&req, 200, None);
        self.respond(&key, resp, now);
        let parked = self
            .parked
            .iter()
            .find(|(_, p)| p.key == invite_key)
            .map(|(t, _)| *t);
        if let Some(p) = parked.and_then(|t| self.parked.remove(&t)) {
            let mut resp = self.reply(&p.req, 487, None);
            resp.set_to_tag(&new_tag());
            self.note(format!(
                "INVITE from {}: cancelled while authorising",
                p.from
            ));
            self.respond(&p.key, resp, now);
            return;
        }
        if let Some(&(cid, LegSide::A)) = self.by_tx.get(&invite_key) {
            let answered = self.calls.get(&cid).is_some_and(|c| c.a.final_sent);
            if !answered {
                self.note(format!("call {cid}: cancelled by the caller"));
                self.hangup(cid, HangupWhy::CallerCancel, now);
            }
        }
    }

    fn on_in_dialog(&mut self, cid: CallId, side: LegSide, key: TxKey, req: Request, now: Instant) {
        match req.method {
            Method::Bye => {
                let resp = self.reply(&req, 200, None);
                self.respond(&key, resp, now);
                let who = if side == LegSide::A {
                    "caller"
                } else {
                    "callee"
                };
                self.note(format!("call {cid}: BYE from the {who}"));
                if let Some(c) = self.calls.get_mut(&cid) {
                    c.bye_reason = req.headers.get("Reason").map(str::to_string);
                }
                self.hangup(cid, HangupWhy::Bye(side), now);
            }
            Method::Invite => {
                if self.relay_reinvite(cid, side, &key, &req, now) {
                    return;
                }
                // Re-INVITE without SDP, or not bridged: update the media target and
                // answer with the SDP we already gave this side.
                let body = std::str::from_utf8(&req.body)
                    .ok()
                    .and_then(|s| SessionDescription::parse(s).ok());
                let (sdp, media) = match self.calls.get(&cid) {
                    Some(c) => (
                        if side == LegSide::A {
                            c.a.local_sdp.clone()
                        } else {
                            c.b.as_ref().map(|b| b.offer_sdp.clone())
                        },
                        c.media,
                    ),
                    None => (None, None),
                };
                if let (Some(sd), Some(m)) = (&body, media) {
                    if let Some(addr) = sd.audio_addr() {
                        let dside = if side == LegSide::A {
                            dataplane::Side::A
                        } else {
                            dataplane::Side::B
                        };
                        let _ = self.media.set_remote(m.id, dside, addr);
                    }
                }
                let mut resp = self.reply(&req, 200, sdp.as_deref());
                if side == LegSide::A {
                    if let Some(c) = self.calls.get(&cid) {
                        resp.headers.set("To", c.a.local_hdr.clone());
                    }
                }
                self.respond(&key, resp, now);
            }
            Method::Cancel => {}
            // INFO, UPDATE, OPTIONS in dialog.
            _ => self.answer_in_dialog(&key, &req, now),
        }
    }

    fn on_ack(&mut self, _req: Request, _from: SocketAddr, _now: Instant) {
        // ACK for our 2xx: the transaction layer has stopped retransmitting it.
    }

    // ------------------------------------------------------------ responses

    fn on_response(&mut self, key: TxKey, resp: Response, now: Instant) {
        if resp.code >= 200 {
            self.pending_byes.remove(&key);
        }
        let Some(&(cid, side)) = self.by_tx.get(&key) else {
            self.trunk_on_response(&key, &resp, now);
            return;
        };
        if self.on_reinvite_response(cid, side, &key, &resp, now) {
            return;
        }
        let is_invite = resp.cseq().is_some_and(|c| c.method == Method::Invite);
        if side != LegSide::B || !is_invite {
            return;
        }
        let code = resp.code;
        match code {
            100 => {}
            101..=199 => self.on_b_provisional(cid, resp, now),
            200..=299 => self.on_b_answer(cid, resp, now),
            401 | 407 => {
                if let Some(code) = self.trunk_retry_auth(cid, &resp, now) {
                    self.on_b_failure(cid, code, now);
                }
            }
            _ => self.on_b_failure(cid, code, now),
        }
    }

    fn on_stray_response(&mut self, resp: Response, from: SocketAddr) {
        // A retransmitted 2xx for an INVITE whose transaction is gone: re-ACK
        // if it belongs to a B leg we know.
        if resp.code / 100 != 2 || !resp.cseq().is_some_and(|c| c.method == Method::Invite) {
            return;
        }
        let Some(call_id) = resp.call_id() else {
            return;
        };
        if let Some(&(cid, LegSide::B)) = self.by_sip_id.get(call_id) {
            if let Some(ack) = self
                .calls
                .get(&cid)
                .and_then(|c| c.b.as_ref())
                .and_then(|b| b.ack.clone())
            {
                let dest = self
                    .calls
                    .get(&cid)
                    .and_then(|c| c.b.as_ref())
                    .map_or(from, |b| b.dest);
                self.tl.send_stateless(&Message::Request(ack), dest);
            }
        }
    }

    fn on_b_provisional(&mut self, cid: CallId, resp: Response, now: Instant) {
        let Some(call) = self.calls.get_mut(&cid) else {
            return;
        };
        let Some(b) = call.b.as_mut() else { return };
        if b.state == BState::Calling {
            b.state = BState::Early;
        }
        if let Some(to) = resp.headers.get("To") {
            if resp.to_tag().is_some() {
                b.remote_hdr = to.to_string();
            }
        }
        if call.a.final_sent {
            return;
        }
        let answer = if resp.body.is_empty() {
            None
        } else {
            std::str::from_utf8(&resp.body)
                .ok()
                .and_then(|s| SessionDescription::parse(s).ok())
        };
        let mut sdp_text = None;
        if let (Some(ans), Some(offer), Some(m)) = (&answer, &call.caller_offer, call.media) {
            if let Some(addr) = ans.audio_addr() {
                call.b_remote_media = Some(addr);
                let _ = self.media.set_remote(m.id, dataplane::Side::B, addr);
            }
            if let Ok(bridge) =
                sdp::derive_answer_transcoding(offer, ans, m.a, &call.a_codecs, call.sess_id)
            {
                sdp_text = Some(apply_bridge(
                    &mut self.media,
                    call,
                    m.id,
                    bridge,
                    &mut self.log,
                ));
            }
        }
        let code = if sdp_text.is_some() { 183 } else { 180 };
        if code == 183 {
            call.a.early_sdp_sent = true;
            call.a.local_sdp = sdp_text.clone();
        }
        let a_invite = call.a.invite.clone();
        let a_tx = call.a.tx.clone();
        let tag = call.a.local_tag.clone();
        let mut out = self.reply(&a_invite, code, sdp_text.as_deref());
        out.set_to_tag(&tag);
        self.add_contact(&mut out);
        self.respond(&a_tx, out, now);
    }

    fn on_b_answer(&mut self, cid: CallId, resp: Response, now: Instant) {
        let Some(call) = self.calls.get_mut(&cid) else {
            return;
        };
        let Some(b) = call.b.as_mut() else { return };
        if b.state == BState::Answered || b.state == BState::Gone {
            // Retransmitted 2xx: send the same ACK again.
            if let Some(ack) = b.ack.clone() {
                let dest = b.dest;
                self.tl.send_stateless(&Message::Request(ack), dest);
            }
            return;
        }
        let was_cancelling = b.state == BState::Cancelling;
        b.state = BState::Answered;
        if let Some(to) = resp.headers.get("To") {
            b.remote_hdr = to.to_string();
        }
        if let Some(c) = resp.contact() {
            b.remote_target = c.uri.to_string();
        }
        let mut ack = Request::new(Method::Ack, b.remote_target.clone());
        let t = Transport::of_via_value(b.invite.headers.get("Via"));
        ack.headers.push("Via", self.locals.via(t, &new_branch()));
        ack.headers.push("Max-Forwards", "70");
        ack.headers.push("From", b.local_hdr.clone());
        ack.headers.push("To", b.remote_hdr.clone());
        ack.headers.push("Call-ID", b.call_id.clone());
        ack.headers.push(
            "CSeq",
            CSeq {
                seq: b.cseq,
                method: Method::Ack,
            }
            .to_string(),
        );
        b.ack = Some(ack.clone());
        let dest = b.dest;
        self.tl.send_stateless(&Message::Request(ack), dest);
        if !was_cancelling && self.join_answered_caller(cid, &resp, now) {
            return;
        }
        let Some(call) = self.calls.get_mut(&cid) else {
            return;
        };
        if was_cancelling || call.state == CallState::Ending || call.a.final_sent {
            // The callee answered after we gave up on it: release it at once.
            self.send_bye(cid, LegSide::B, None, now);
            if let Some(c) = self.calls.get_mut(&cid) {
                if let Some(b) = c.b.as_mut() {
                    b.state = BState::Gone;
                }
            }
            self.maybe_finish(cid);
            return;
        }
        let answer = std::str::from_utf8(&resp.body)
            .ok()
            .and_then(|s| SessionDescription::parse(s).ok());
        let mut sdp_text = call.a.local_sdp.clone().filter(|_| call.a.early_sdp_sent);
        if let (Some(ans), Some(offer), Some(m)) = (&answer, &call.caller_offer, call.media) {
            if let Some(addr) = ans.audio_addr() {
                call.b_remote_media = Some(addr);
                let _ = self.media.set_remote(m.id, dataplane::Side::B, addr);
            }
            match sdp::derive_answer_transcoding(offer, ans, m.a, &call.a_codecs, call.sess_id) {
                Ok(bridge) => {
                    sdp_text = Some(apply_bridge(
                        &mut self.media,
                        call,
                        m.id,
                        bridge,
                        &mut self.log,
                    ))
                }
                Err(e) => self
                    .log
                    .push(format!("call {cid}: callee answer not usable: {e}")),
            }
        }
        let Some(sdp_text) = sdp_text else {
            self.note(format!(
                "call {cid}: callee answered without usable SDP, hanging up"
            ));
            self.hangup(cid, HangupWhy::Internal(488), now);
            return;
        };
        let Some(call) = self.calls.get_mut(&cid) else {
            return;
        };
        call.state = CallState::Bridged;
        call.answered_at = Some(now);
        call.wake_at = None;
        call.a.answered = true;
        call.a.final_sent = true;
        call.a.local_sdp = Some(sdp_text.clone());
        call.exec.dial_result(DialStatus::Answer);
        let media_id = call.media.map(|m| m.id);
        let a_invite = call.a.invite.clone();
        let a_tx = call.a.tx.clone();
        let tag = call.a.local_tag.clone();
        self.bill_answer(cid, now);
        if let Some(m) = media_id {
            let _ = self.media.arm_timeout(m);
        }
        let mut out = self.reply(&a_invite, 200, Some(&sdp_text));
        out.set_to_tag(&tag);
        self.add_contact(&mut out);
        self.respond(&a_tx, out, now);
        self.note(format!("call {cid}: answered, media bridged"));
    }

    fn on_b_failure(&mut self, cid: CallId, code: u16, now: Instant) {
        let Some(call) = self.calls.get_mut(&cid) else {
            return;
        };
        let Some(b) = call.b.as_mut() else { return };
        let cancelling = b.state == BState::Cancelling;
        b.state = BState::Gone;
        let b_call_id = b.call_id.clone();
        self.by_sip_id.remove(&b_call_id);
        if cancelling || call.state == CallState::Ending {
            // Our own CANCEL (dial timeout or caller gone) produced this 487.
            self.maybe_finish(cid);
            return;
        }
        call.wake_at = None;
        call.last_dial_status = Some(code);
        call.exec.dial_result(dial_status_for(code));
        call.state = CallState::Routing;
        self.note(format!("call {cid}: callee answered {code}"));
        self.run_dialplan(cid, now);
    }

    fn drain_tx_events(&mut self, now: Instant) {
        while let Some(ev) = self.tl.poll_event() {
            match ev {
                TxEvent::Timeout { key } => {
                    self.pending_byes.remove(&key);
                    self.trunk_tx_timeout(&key, now);
                    if self.on_reinvite_timeout(&key, now) {
                        continue;
                    }
                    if let Some(&(cid, LegSide::B)) = self.by_tx.get(&key) {
                        let is_invite = self
                            .calls
                            .get(&cid)
                            .and_then(|c| c.b.as_ref())
                            .is_some_and(|b| {
                                b.tx == key && matches!(b.state, BState::Calling | BState::Early)
                            });
                        if is_invite {
                            self.note(format!("call {cid}: callee did not respond (timeout)"));
                            self.on_b_failure(cid, 408, now);
                        }
                    }
                }
                TxEvent::NoAck { key } => {
                    if let Some(&(cid, LegSide::A)) = self.by_tx.get(&key) {
                        let answered = self.calls.get(&cid).is_some_and(|c| c.a.answered);
                        if answered {
                            self.note(format!(
                                "call {cid}: caller never ACKed our 200, hanging up"
                            ));
                            self.hangup(cid, HangupWhy::Internal(408), now);
                        }
                    }
                }
                TxEvent::Terminated { key } => {
                    self.pending_byes.remove(&key);
                    self.by_tx.remove(&key);
                }
            }
        }
    }

    // -------------------------------------------------------------- dialplan

    fn run_dialplan(&mut self, cid: CallId, now: Instant) {
        if self.agi_holds(cid, now) {
            return;
        }
        loop {
            let Some(call) = self.calls.get_mut(&cid) else {
                return;
            };
            if call.state == CallState::Ending {
                return;
            }
            let action = call.exec.next_action(now);
            // Like Asterisk's Master.csv, a failed Dial stays the last app of a call the
            // plan then hangs up (BUSY / NO ANSWER records show `Dial`).
            if let Some((app, data)) = app_of(&action) {
                if !matches!(action, Action::Hangup { .. }) || call.bill.lastapp.is_empty() {
                    call.bill.lastapp = app.to_string();
                    call.bill.lastdata = data;
                }
            }
            match action {
                Action::Answer => self.answer_a(cid, now),
                Action::Ringing => self.provisional_a(cid, 180, now),
                Action::Progress => self.provisional_a(cid, 183, now),
                Action::Echo => {
                    self.answer_a(cid, now);
                    if let Some(call) = self.calls.get_mut(&cid) {
                        call.state = CallState::InApp;
                        if let Some(m) = call.media {
                            let _ = self.media.set_mode(m.id, dataplane::Mode::Echo);
                            let _ = self.media.arm_timeout(m.id);
                        }
                    }
                    return;
                }
                Action::Wait(d) => {
                    call.wake_at = Some(now + d);
                    return;
                }
                Action::Idle { until } => {
                    call.wake_at = until;
                    return;
                }
                Action::Play(prompt) => {
                    if !self.start_prompt(cid, &prompt) {
                        if let Some(call) = self.calls.get_mut(&cid) {
                            call.exec.playback_done(false, now);
                        }
                    }
                }
                Action::StopPlay => {
                    if let Some(m) = call.media {
                        let _ = self.media.stop_play(m.id, dataplane::Side::A);
                    }
                }
                Action::DetectDigits(on) => {
                    if let Some(m) = call.media {
                        let mode = if on {
                            dataplane::DigitMode::Auto
                        } else {
                            dataplane::DigitMode::Off
                        };
                        let _ = self.media.detect_digits(m.id, dataplane::Side::A, mode);
                    }
                }
                Action::Dial {
                    targets, timeout, ..
                } => {
                    if self.start_dial(cid, &targets, timeout, now) {
                        return;
                    }
                    if let Some(call) = self.calls.get_mut(&cid) {
                        call.exec.dial_result(DialStatus::ChanUnavail);
                        call.exec.set_hangup_cause(sip_to_q850(480));
                        call.last_dial_status = Some(480);
                    }
                }
                Action::Hangup { cause } => {
                    self.hangup(cid, HangupWhy::Dialplan(cause), now);
                    return;
                }
                Action::Agi { url, args } => {
                    self.agi_start(cid, url, args, now);
                    return;
                }
            }
        }
    }

    /// Start playing `prompt` to the caller; `false` when it cannot be played (unknown
    /// sound or tone, no media session), which the plan sees as a failed playback.
    fn start_prompt(&mut self, cid: CallId, prompt: &Prompt) -> bool {
        let Some(m) = self.calls.get(&cid).and_then(|c| c.media) else {
            return false;
        };
        let source = match prompt {
            Prompt::File(name) => {
                let key = name.rsplit('/').next().unwrap_or(name);
                match self.cfg.sounds.get(key) {
                    Some(s) => dataplane::Source::Samples(Arc::clone(s)),
                    None => {
                        self.note(format!(
                            "call {cid}: sound \"{name}\" not found in the sounds directory"
                        ));
                        return false;
                    }
                }
            }
            Prompt::Tone { name, duration } => {
                match dataplane::Source::tone(&self.cfg.tone_zone, name) {
                    Some(t) => match duration {
                        Some(d) => t.with_limit(*d),
                        None => t,
                    },
                    None => {
                        self.note(format!(
                            "call {cid}: no tone \"{name}\" in zone {}",
                            self.cfg.tone_zone
                        ));
                        return false;
                    }
                }
            }
        };
        match self.media.play(m.id, dataplane::Side::A, source) {
            Ok(()) => true,
            Err(e) => {
                self.note(format!("call {cid}: playback failed: {e}"));
                false
            }
        }
    }

    fn on_wake(&mut self, cid: CallId, now: Instant) {
        let Some(call) = self.calls.get_mut(&cid) else {
            return;
        };
        call.wake_at = None;
        if call.state == CallState::Dialing {
            // Dial timeout: give up on the callee.
            self.note(format!("call {cid}: no answer within the Dial timeout"));
            self.cancel_b(cid, now);
            if let Some(call) = self.calls.get_mut(&cid) {
                call.exec.dial_result(DialStatus::NoAnswer);
                call.last_dial_status = Some(480);
                call.state = CallState::Routing;
            }
        }
        self.run_dialplan(cid, now);
    }

    /// Start the B leg for the first target that resolves. False if none did.
    fn start_dial(
        &mut self,
        cid: CallId,
        targets: &[crate::dialplan::DialTarget],
        timeout: Option<Duration>,
        now: Instant,
    ) -> bool {
        let local = self.cfg.local;
        for t in targets {
            let to = if let Some(to) = self.trunk_target(&t.tech, &t.resource) {
                to
            } else if t.tech.eq_ignore_ascii_case("SIP") {
                let user = t.resource.split('/').next().unwrap_or_default().to_string();
                let Some(binding) = self.registrar.lookup(&user, now).into_iter().next() else {
                    self.note(format!("call {cid}: Dial(SIP/{user}): not registered"));
                    continue;
                };
                gateway::DialTo {
                    tech: "SIP".into(),
                    request_uri: binding.contact.clone(),
                    to_uri: format!("sip:{user}@{}", binding_host(&binding.contact, local)),
                    dest: binding.source,
                    transport: binding.transport,
                    codecs: self.cfg.codecs_for(&user),
                    trusted: false,
                    label: user,
                }
            } else if let Some(to) = self.gateway_target(&t.tech, &t.resource) {
                to
            } else {
                self.note(format!(
                    "call {cid}: Dial({}/{}): no gateway for this technology",
                    t.tech, t.resource
                ));
                continue;
            };
            let user = to.label.clone();
            let Some(call) = self.calls.get_mut(&cid) else {
                return false;
            };
            let (Some(offer), Some(m)) = (&call.caller_offer, call.media) else {
                return false;
            };
            let b_codecs = to.codecs.clone();
            let b_offer = match sdp::derive_offer_transcoding(
                offer,
                m.b,
                &call.a_codecs,
                &b_codecs,
                call.sess_id + 1,
            ) {
                Ok(o) => o.to_string(),
                Err(e) => {
                    self.log.push(format!(
                        "call {cid}: no common codec with the caller's offer: {e}"
                    ));
                    continue;
                }
            };
            let mut call_id = new_tag();
            call_id.push('@');
            crate::sip::text::push_ip(&mut call_id, local.ip());
            let local_tag = new_tag();
            let from_na = call.a.invite.from();
            let display = from_na.as_ref().and_then(|f| f.display.clone());
            let mut from_uri = String::with_capacity(call.caller.len() + 28);
            from_uri.push_str("sip:");
            from_uri.push_str(&call.caller);
            from_uri.push('@');
            crate::sip::text::push_addr(&mut from_uri, local);
            let privacy = call.privacy;
            // RFC 3323 §4.1.1.3: an anonymous From outside the trust domain when the caller
            // asked for privacy; the trust domain gets the identity asserted (RFC 3325).
            let local_hdr = match display {
                _ if privacy && !to.trusted => {
                    format!("\"Anonymous\" <sip:anonymous@anonymous.invalid>;tag={local_tag}")
                }
                Some(d) => format!("\"{}\" <{from_uri}>;tag={local_tag}", d.replace('"', "")),
                None => {
                    let mut h = String::with_capacity(from_uri.len() + local_tag.len() + 7);
                    h.push('<');
                    h.push_str(&from_uri);
                    h.push_str(">;tag=");
                    h.push_str(&local_tag);
                    h
                }
            };
            let asserted = to.trusted.then(|| match &call.bill.caller_name {
                n if n.is_empty() => format!("<{from_uri}>"),
                n => format!("\"{}\" <{from_uri}>", n.replace('"', "")),
            });
            let to_uri = to.to_uri.clone();
            let remote_hdr = angle(&to_uri);
            let mut inv = Request::new(Method::Invite, to.request_uri.clone());
            inv.headers
                .push("Via", self.locals.via(to.transport, &new_branch()));
            inv.headers.push("Max-Forwards", "70");
            inv.headers.push("From", local_hdr.clone());
            inv.headers.push("To", remote_hdr.clone());
            inv.headers.push("Call-ID", call_id.clone());
            inv.headers.push(
                "CSeq",
                CSeq {
                    seq: 1,
                    method: Method::Invite,
                }
                .to_string(),
            );
            inv.headers
                .push("Contact", angle(&self.locals.contact_uri(to.transport)));
            if let Some(pai) = asserted {
                inv.headers.push("P-Asserted-Identity", pai);
            }
            if privacy {
                inv.headers.push("Privacy", "id");
            }
            inv.headers.push("Allow", ALLOW);
            inv.headers.push("User-Agent", self.cfg.user_agent.clone());
            inv.headers.push("Content-Type", "application/sdp");
            inv.body = b_offer.clone().into_bytes();
            let local_hdr = self
                .trunk_shape_invite(cid, &to, &mut inv)
                .unwrap_or(local_hdr);
            let tx = self.tl.send_request(inv.clone(), to.dest, now);
            let Some(call) = self.calls.get_mut(&cid) else {
                return false;
            };
            call.b = Some(BLeg {
                call_id: call_id.clone(),
                local_hdr,
                remote_hdr,
                remote_target: to.request_uri.clone(),
                dest: to.dest,
                invite: inv,
                tx: tx.clone(),
                cseq: 1,
                state: BState::Calling,
                ack: None,
                user: user.clone(),
                offer_sdp: b_offer,
            });
            call.state = CallState::Dialing;
            call.wake_at = timeout.map(|d| now + d);
            let chan = match to.tech.as_str() {
                "SIP" => format!("SIP/{user}-{:08x}", self.next_channel),
                _ => format!("{user}-{:08x}", self.next_channel),
            };
            self.next_channel += 1;
            if let Some(call) = self.calls.get_mut(&cid) {
                call.bill.dstchannel = chan;
            }
            self.by_sip_id.insert(call_id, (cid, LegSide::B));
            self.by_tx.insert(tx, (cid, LegSide::B));
            let shown = match to.tech.as_str() {
                "SIP" => format!("SIP/{user}"),
                _ => user.clone(),
            };
            self.note(format!("call {cid}: dialing {shown} at {}", to.dest));
            return true;
        }
        false
    }

    fn cancel_b(&mut self, cid: CallId, now: Instant) {
        let Some(call) = self.calls.get_mut(&cid) else {
            return;
        };
        let Some(b) = call.b.as_mut() else { return };
        if !matches!(b.state, BState::Calling | BState::Early) {
            return;
        }
        b.state = BState::Cancelling;
        let mut cancel = Request::new(Method::Cancel, b.invite.uri.clone());
        for name in ["Via", "From", "To", "Call-ID"] {
            if let Some(v) = b.invite.headers.get(name) {
                cancel.headers.push(name, v.to_string());
            }
        }
        cancel.headers.push("Max-Forwards", "70");
        cancel.headers.push(
            "CSeq",
            CSeq {
                seq: b.cseq,
                method: Method::Cancel,
            }
            .to_string(),
        );
        let dest = b.dest;
        self.tl.send_request(cancel, dest, now);
    }

    // --------------------------------------------------------------- A side

    fn answer_a(&mut self, cid: CallId, now: Instant) {
        let Some(call) = self.calls.get_mut(&cid) else {
            return;
        };
        if call.a.final_sent {
            return;
        }
        let (Some(offer), Some(m)) = (&call.caller_offer, call.media) else {
            return;
        };
        let sdp_text = match sdp::answer(offer, m.a, SUPPORTED, call.sess_id) {
            Ok((ans, _neg)) => ans.to_string(),
            Err(e) => {
                self.log.push(format!("call {cid}: cannot answer: {e}"));
                self.hangup(cid, HangupWhy::Internal(488), now);
                return;
            }
        };
        call.a.final_sent = true;
        call.a.answered = true;
        call.a.local_sdp = Some(sdp_text.clone());
        call.answered_at = Some(now);
        self.bill_answer(cid, now);
        let Some(call) = self.calls.get_mut(&cid) else {
            return;
        };
        let a_invite = call.a.invite.clone();
        let a_tx = call.a.tx.clone();
        let tag = call.a.local_tag.clone();
        let mut out = self.reply(&a_invite, 200, Some(&sdp_text));
        out.set_to_tag(&tag);
        self.add_contact(&mut out);
        self.respond(&a_tx, out, now);
    }

    fn provisional_a(&mut self, cid: CallId, code: u16, now: Instant) {
        let Some(call) = self.calls.get_mut(&cid) else {
            return;
        };
        if call.a.final_sent {
            return;
        }
        let mut sdp_text = None;
        if code == 183 {
            if let (Some(offer), Some(m)) = (&call.caller_offer, call.media) {
                sdp_text = sdp::answer(offer, m.a, SUPPORTED, call.sess_id)
                    .ok()
                    .map(|(a, _)| a.to_string());
            }
            call.a.early_sdp_sent = sdp_text.is_some();
            call.a.local_sdp = sdp_text.clone();
        }
        let a_invite = call.a.invite.clone();
        let a_tx = call.a.tx.clone();
        let tag = call.a.local_tag.clone();
        let mut out = self.reply(&a_invite, code, sdp_text.as_deref());
        out.set_to_tag(&tag);
        self.add_contact(&mut out);
        self.respond(&a_tx, out, now);
    }

    // ---------------------------------------------------------------- hangup

    fn hangup(&mut self, cid: CallId, why: HangupWhy, now: Instant) {
        self.agi_hangup(cid);
        let Some(call) = self.calls.get_mut(&cid) else {
            return;
        };
        if call.state == CallState::Ending {
            return;
        }
        call.state = CallState::Ending;
        call.wake_at = None;
        let (_, cause) = release_of(call, why);
        call.exec.run_hangup_handler(Some(cause));
        self.bill_end(cid, why, now);
        let Some(call) = self.calls.get_mut(&cid) else {
            return;
        };
        // B leg.
        let b_state = call.b.as_ref().map(|b| b.state);
        match b_state {
            Some(BState::Calling | BState::Early) => self.cancel_b(cid, now),
            Some(BState::Answered) if why != HangupWhy::Bye(LegSide::B) => {
                let reason = call.bye_reason.clone().or_else(|| why.reason());
                self.send_bye(cid, LegSide::B, reason, now)
            }
            _ => {}
        }
        let Some(call) = self.calls.get_mut(&cid) else {
            return;
        };
        if let Some(b) = call.b.as_mut() {
            if b.state == BState::Answered {
                b.state = BState::Gone;
            }
        }
        // A leg.
        if call.a.answered {
            if why != HangupWhy::Bye(LegSide::A) {
                let reason = call.bye_reason.clone().or_else(|| why.reason());
                self.send_bye(cid, LegSide::A, reason, now);
            }
        } else if !call.a.final_sent {
            let code = match why {
                HangupWhy::CallerCancel => 487,
                HangupWhy::Dialplan(Some(cause)) => q850_to_sip(cause),
                HangupWhy::Dialplan(None) => call.last_dial_status.map(relay_status).unwrap_or(480),
                HangupWhy::Internal(code) => code,
                HangupWhy::Shutdown => 503,
                HangupWhy::Admin => 480,
                HangupWhy::MediaTimeout | HangupWhy::Bye(_) => 480,
            };
            call.a.final_sent = true;
            let a_invite = call.a.invite.clone();
            let a_tx = call.a.tx.clone();
            let tag = call.a.local_tag.clone();
            let mut out = self.reply(&a_invite, code, None);
            out.set_to_tag(&tag);
            self.respond(&a_tx, out, now);
        }
        self.maybe_finish(cid);
    }

    fn send_bye(&mut self, cid: CallId, side: LegSide, reason: Option<String>, now: Instant) {
        let ua = self.cfg.user_agent.clone();
        let Some(call) = self.calls.get_mut(&cid) else {
            return;
        };
        let transport = leg_transport(call, side);
        let (target, from, to, call_id, cseq, dest) = match side {
            LegSide::A => {
                call.a.cseq += 1;
                (
                    call.a.remote_target.clone(),
                    call.a.local_hdr.clone(),
                    call.a.remote_hdr.clone(),
                    call.a.call_id.clone(),
                    call.a.cseq,
                    call.a.peer,
                )
            }
            LegSide::B => {
                let Some(b) = call.b.as_mut() else { return };
                b.cseq += 1;
                (
                    b.remote_target.clone(),
                    b.local_hdr.clone(),
                    b.remote_hdr.clone(),
                    b.call_id.clone(),
                    b.cseq,
                    b.dest,
                )
            }
        };
        let mut bye = Request::new(Method::Bye, target);
        bye.headers
            .push("Via", self.locals.via(transport, &new_branch()));
        bye.headers.push("Max-Forwards", "70");
        bye.headers.push("From", from);
        bye.headers.push("To", to);
        bye.headers.push("Call-ID", call_id);
        bye.headers.push(
            "CSeq",
            CSeq {
                seq: cseq,
                method: Method::Bye,
            }
            .to_string(),
        );
        bye.headers.push("User-Agent", ua);
        if let Some(r) = reason {
            bye.headers.push("Reason", r);
        }
        let key = self.tl.send_request(bye, dest, now);
        self.pending_byes.insert(key);
    }

    /// Remove the call once nothing more can happen on it.
    fn maybe_finish(&mut self, cid: CallId) {
        let Some(call) = self.calls.get(&cid) else {
            return;
        };
        if call.state != CallState::Ending {
            return;
        }
        if call
            .b
            .as_ref()
            .is_some_and(|b| b.state == BState::Cancelling)
        {
            return; // wait for the 487 (or a crossing 200 to release)
        }
        let Some(call) = self.calls.remove(&cid) else {
            return;
        };
        if let Some(m) = call.media {
            self.media_sessions.remove(&m.id);
            let _ = self.media.destroy(m.id);
        }
        self.by_sip_id.remove(&call.a.call_id);
        if let Some(b) = &call.b {
            self.by_sip_id.remove(&b.call_id);
        }
        self.by_tx.retain(|_, (c, _)| *c != cid);
        let talk = call
            .answered_at
            .map(|t| t.saturating_duration_since(call.started));
        match talk {
            Some(_) => self.note(format!("call {cid}: ended")),
            None => self.note(format!("call {cid}: ended unanswered")),
        }
    }

    // --------------------------------------------------------------- billing

    fn channel_name(&mut self, user: &str) -> String {
        self.channel_name_for("SIP", user)
    }

    fn channel_name_for(&mut self, tech: &str, user: &str) -> String {
        let n = self.next_channel;
        self.next_channel += 1;
        format!("{tech}/{user}-{n:08x}")
    }

    fn record_of(&self, call: &Call) -> CallRecord {
        let caller_addr = call.a.peer.ip();
        CallRecord {
            uniqueid: call.bill.uniqueid.clone(),
            conf_id: call.bill.conf_id,
            src: call.caller.clone(),
            caller_name: call.bill.caller_name.clone(),
            dst: call.exten.clone(),
            dcontext: call.bill.context.clone(),
            channel: call.bill.channel.clone(),
            dstchannel: call.bill.dstchannel.clone(),
            lastapp: call.bill.lastapp.clone(),
            lastdata: call.bill.lastdata.clone(),
            caller_addr,
            remote_addr: call.b.as_ref().map_or(caller_addr, |b| b.dest.ip()),
            start: call.bill.start,
            answer: call.bill.answer,
            end: None,
            disposition: Disposition::Answered,
            cause: None,
        }
    }

    /// The call was answered (by the callee or by an application): Accounting Start.
    fn bill_answer(&mut self, cid: CallId, now: Instant) {
        let wall = self.wall_time(now);
        let Some(call) = self.calls.get_mut(&cid) else {
            return;
        };
        if call.bill.answer.is_some() {
            return;
        }
        call.bill.answer = Some(wall);
        if self.aaa.billing {
            let Some(call) = self.calls.get(&cid) else {
                return;
            };
            let rec = self.record_of(call);
            self.billing.push_back(Billing::Start(rec));
        }
    }

    /// The call is being released: its CDR (and Accounting Stop when answered).
    fn bill_end(&mut self, cid: CallId, why: HangupWhy, now: Instant) {
        if !self.aaa.billing {
            return;
        }
        let Some(call) = self.calls.get(&cid) else {
            return;
        };
        let (disposition, cause) = release_of(call, why);
        let mut rec = self.record_of(call);
        rec.end = Some(self.wall_time(now));
        rec.disposition = disposition;
        rec.cause = Some(cause);
        self.billing.push_back(Billing::End(rec));
    }

    // ------------------------------------------------------------ management

    /// Hang up a call by Tandem id (`c12`) or either leg's SIP Call-ID.
    pub fn hangup_by_id(&mut self, id: &str, now: Instant) -> bool {
        let cid = self
            .calls
            .values()
            .find(|c| {
                c.id.to_string() == id
                    || c.a.call_id == id
                    || c.b.as_ref().is_some_and(|b| b.call_id == id)
            })
            .map(|c| c.id);
        match cid {
            Some(cid) => {
                self.note(format!("call {cid}: hung up by the operator"));
                self.hangup(cid, HangupWhy::Admin, now);
                true
            }
            None => false,
        }
    }

    /// Stop taking calls and tear down the active ones.
    pub fn begin_shutdown(&mut self, now: Instant) {
        self.shutting_down = true;
        let parked: Vec<Parked> = self.parked.drain().map(|(_, p)| p).collect();
        for p in parked {
            let mut resp = self.reply(&p.req, 503, None);
            resp.set_to_tag(&new_tag());
            self.respond(&p.key, resp, now);
        }
        let ids: Vec<CallId> = self.calls.keys().copied().collect();
        for cid in ids {
            self.hangup(cid, HangupWhy::Shutdown, now);
        }
    }

    /// True once shutdown has been requested and no call or BYE is pending.
    pub fn is_drained(&self) -> bool {
        self.shutting_down && self.calls.is_empty() && self.pending_byes.is_empty()
    }

    pub fn calls_info(&self, now: Instant) -> Vec<CallInfo> {
        let mut v: Vec<CallInfo> = self
            .calls
            .values()
            .map(|c| {
                let mut legs = vec![LegInfo {
                    side: "A".into(),
                    call_id: c.a.call_id.clone(),
                    peer: c.a.peer.to_string(),
                    user: c.caller.clone(),
                    state: if c.a.answered {
                        "answered"
                    } else if c.a.final_sent {
                        "ended"
                    } else {
                        "ringing"
                    }
                    .into(),
                    local_media: c.media.map(|m| m.a.to_string()),
                    remote_media: c
                        .caller_offer
                        .as_ref()
                        .and_then(|o| o.audio_addr())
                        .map(|a| a.to_string()),
                }];
                if let Some(b) = &c.b {
                    legs.push(LegInfo {
                        side: "B".into(),
                        call_id: b.call_id.clone(),
                        peer: b.dest.to_string(),
                        user: b.user.clone(),
                        state: match b.state {
                            BState::Calling => "calling",
                            BState::Early => "early",
                            BState::Answered => "answered",
                            BState::Cancelling => "cancelling",
                            BState::Gone => "ended",
                        }
                        .into(),
                        local_media: c.media.map(|m| m.b.to_string()),
                        remote_media: c.b_remote_media.map(|a| a.to_string()),
                    });
                }
                CallInfo {
                    id: c.id.to_string(),
                    state: match c.state {
                        CallState::Routing => "routing",
                        CallState::Dialing => "dialing",
                        CallState::Bridged => "up",
                        CallState::InApp => "app",
                        CallState::Ending => "ending",
                    }
                    .into(),
                    caller: c.caller.clone(),
                    exten: c.exten.clone(),
                    context: c.exec.context().to_string(),
                    duration_s: now.saturating_duration_since(c.started).as_secs(),
                    answered_s: c
                        .answered_at
                        .map(|t| now.saturating_duration_since(t).as_secs()),
                    media_session: c.media.map(|m| m.id.0),
                    worker: c.media.map(|m| m.worker),
                    legs,
                }
            })
            .collect();
        v.sort_by(|a, b| a.id.cmp(&b.id));
        v
    }

    pub fn registrations_info(&self, now: Instant) -> Vec<RegistrationInfo> {
        let mut v: Vec<RegistrationInfo> = self
            .registrar
            .bindings(now)
            .into_iter()
            .map(|(user, b)| RegistrationInfo {
                user,
                contact: b.contact.clone(),
                source: b.source.to_string(),
                expires_s: b.expires_at.saturating_duration_since(now).as_secs(),
                user_agent: b.user_agent.clone(),
            })
            .collect();
        v.sort_by(|a, b| a.user.cmp(&b.user).then(a.contact.cmp(&b.contact)));
        v
    }

    pub fn worker_stats(&self) -> Vec<dataplane::WorkerStats> {
        self.media.stats()
    }

    pub fn sip_stats(&self) -> SipStats {
        let mut s = self.stats;
        s.active_calls = self.calls.len() as u64;
        s.transactions = self.tl.len() as u64;
        s
    }

    // --------------------------------------------------------------- helpers

    fn respond(&mut self, key: &TxKey, resp: Response, now: Instant) {
        if let Err(e) = self.tl.send_response(key, resp, now) {
            self.note(format!("SIP: cannot send response on {key}: {e}"));
        }
    }

    fn reply(&self, req: &Request, code: u16, sdp: Option<&str>) -> Response {
        let mut resp = Response::for_request(req, code);
        self.add_server_headers(&mut resp);
        if let Some(body) = sdp {
            resp.headers.set("Content-Type", "application/sdp");
            resp.body = body.as_bytes().to_vec();
        }
        resp
    }

    fn add_server_headers(&self, resp: &mut Response) {
        resp.headers.set("Server", self.cfg.user_agent.clone());
    }

    /// Contact (on the transport the request came over, its Via) and Allow of a response.
    fn add_contact(&self, resp: &mut Response) {
        let t = Transport::of_via_value(resp.headers.get("Via"));
        resp.headers
            .set("Contact", angle(&self.locals.contact_uri(t)));
        resp.headers.set("Allow", ALLOW);
    }
}

/// The transport of a call's leg: the top Via of the INVITE that opened it (the caller's
/// for A, ours for B).
fn leg_transport(call: &Call, side: LegSide) -> Transport {
    let invite = match side {
        LegSide::A => &call.a.invite,
        LegSide::B => match &call.b {
            Some(b) => &b.invite,
            None => return Transport::Udp,
        },
    };
    Transport::of_via_value(invite.headers.get("Via"))
}

/// Why a call is being torn down.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum HangupWhy {
    Bye(LegSide),
    CallerCancel,
    Dialplan(Option<u16>),
    MediaTimeout,
    Internal(u16),
    Shutdown,
    Admin,
}

impl HangupWhy {
    /// RFC 3326 Reason header for the BYEs we send.
    fn reason(self) -> Option<String> {
        match self {
            HangupWhy::MediaTimeout => Some("Q.850;cause=16;text=\"media timeout\"".into()),
            HangupWhy::Shutdown => Some("Q.850;cause=16;text=\"gateway shutting down\"".into()),
            HangupWhy::Admin => Some("Q.850;cause=16;text=\"hung up by operator\"".into()),
            HangupWhy::Dialplan(Some(c)) => Some(format!("Q.850;cause={c}")),
            _ => None,
        }
    }
}

/// Program the dataplane for how the callee's answer joins the legs, and return our answer
/// to the caller. A transcoded call whose answer changes back to a common codec (a later
/// 183/200 with other SDP) goes back to the relay.
fn apply_bridge<M: Media>(
    media: &mut M,
    call: &mut Call,
    id: dataplane::SessionId,
    bridge: sdp::Bridge,
    log: &mut Vec<String>,
) -> String {
    match bridge {
        sdp::Bridge::Relay(answer) => {
            if call.transcoding.take().is_some() {
                // Equal codecs on both legs put the session back on the relay.
                if let Some(c) = sdp::Negotiated::from_answer(&answer, &answer)
                    .ok()
                    .as_ref()
                    .and_then(leg_codec)
                {
                    let _ = media.set_codec(id, dataplane::Side::A, c);
                    let _ = media.set_codec(id, dataplane::Side::B, c);
                }
            }
            answer.to_string()
        }
        sdp::Bridge::Transcode {
            answer,
            caller,
            callee,
        } => {
            if let (Some(a), Some(b)) = (leg_codec(&caller), leg_codec(&callee)) {
                let r = media
                    .set_codec(id, dataplane::Side::A, a)
                    .and_then(|_| media.set_codec(id, dataplane::Side::B, b));
                match r {
                    Ok(_) => {
                        log.push(format!(
                            "call {}: transcoding {} <-> {}",
                            call.id,
                            caller.codec.name(),
                            callee.codec.name()
                        ));
                        call.transcoding = Some((caller.codec, callee.codec));
                    }
                    Err(e) => log.push(format!("call {}: cannot transcode: {e}", call.id)),
                }
            }
            answer.to_string()
        }
    }
}

/// The Asterisk application name and data of a dialplan step (CDR `lastapp`/`lastdata`).
fn app_of(action: &Action) -> Option<(&'static str, String)> {
    Some(match action {
        Action::Answer => ("Answer", String::new()),
        Action::Dial {
            targets,
            timeout,
            options,
        } => {
            let t: Vec<String> = targets
                .iter()
                .map(|t| format!("{}/{}", t.tech, t.resource))
                .collect();
            let mut data = t.join("&");
            if timeout.is_some() || !options.is_empty() {
                data.push(',');
                if let Some(d) = timeout {
                    data.push_str(&d.as_secs().to_string());
                }
            }
            if !options.is_empty() {
                data.push(',');
                data.push_str(options);
            }
            ("Dial", data)
        }
        Action::Hangup { cause } => ("Hangup", cause.map(|c| c.to_string()).unwrap_or_default()),
        Action::Echo => ("Echo", String::new()),
        Action::Agi { url, .. } => ("AGI", url.request.clone()),
        Action::Ringing => ("Ringing", String::new()),
        Action::Progress => ("Progress", String::new()),
        Action::Wait(d) => ("Wait", format!("{}", d.as_secs_f64())),
        Action::Play(Prompt::File(f)) => ("Playback", f.clone()),
        Action::Play(Prompt::Tone { name, .. }) => ("Playtones", name.clone()),
        Action::StopPlay | Action::DetectDigits(_) | Action::Idle { .. } => return None,
    })
}

/// The CDR disposition and Q.850 cause of a call released for `why`.
/// Unanswered calls follow Asterisk: a busy callee is BUSY, a callee that did not answer (or
/// a caller who gave up ringing) NO ANSWER, anything else FAILED.
fn release_of(call: &Call, why: HangupWhy) -> (Disposition, u16) {
    if call.bill.answer.is_some() {
        let cause = match why {
            HangupWhy::Dialplan(Some(c)) => c,
            HangupWhy::Internal(code) => sip_to_q850(code),
            HangupWhy::MediaTimeout => 41,
            _ => 16,
        };
        return (Disposition::Answered, cause);
    }
    let dial = call.exec.var("DIALSTATUS");
    let code = call.last_dial_status;
    match (why, dial) {
        (HangupWhy::Dialplan(Some(17)), _) | (_, Some("BUSY")) => (Disposition::Busy, 17),
        (HangupWhy::CallerCancel, _) => (Disposition::NoAnswer, 16),
        (_, Some("NOANSWER")) => (Disposition::NoAnswer, 19),
        (HangupWhy::Dialplan(Some(c)), _) => match Disposition::from_q850(c) {
            Disposition::Congestion => (Disposition::Failed, c),
            d => (d, c),
        },
        (HangupWhy::Internal(code), _) => (Disposition::Failed, sip_to_q850(code)),
        (HangupWhy::Shutdown, None) => (Disposition::Failed, 16),
        (_, Some(_)) => (Disposition::Failed, code.map_or(20, sip_to_q850)),
        (_, None) => (Disposition::NoAnswer, 16),
    }
}

/// SIP final status -> Q.850 cause (RFC 3398 section 7.2.6.1).
pub fn sip_to_q850(code: u16) -> u16 {
    match code {
        401 | 402 | 403 | 407 | 603 => 21,
        404 | 485 | 604 => 1,
        405 => 63,
        406 | 415 | 501 => 79,
        408 | 504 => 102,
        410 => 22,
        480 => 18,
        482 | 483 => 25,
        484 => 28,
        486 | 600 => 17,
        487 => 16,
        502 => 38,
        503 => 34,
        606 => 58,
        400 | 481 | 500 => 41,
        _ => 127,
    }
}

fn can_respond(req: &Request) -> bool {
    ["Via", "From", "To", "Call-ID", "CSeq"]
        .iter()
        .all(|h| req.headers.get(h).is_some())
}

fn sanitize_reason(s: &str) -> String {
    s.chars().filter(|c| !c.is_control()).take(80).collect()
}

/// Where to send a stateless reply: the top Via's received/rport rules, else the source.
fn binding_host(contact: &str, local: SocketAddr) -> String {
    Uri::parse(contact)
        .map(|u| match u.port {
            Some(p) => {
                let mut h = u.host;
                h.push(':');
                crate::sip::text::push_u64(&mut h, u64::from(p));
                h
            }
            None => u.host,
        })
        .unwrap_or_else(|_| local.to_string())
}

/// `<uri>` (a name-addr without display name or parameters).
fn angle(uri: &str) -> String {
    let mut s = String::with_capacity(uri.len() + 2);
    s.push('<');
    s.push_str(uri);
    s.push('>');
    s
}

/// SIP final status -> Asterisk DIALSTATUS.
fn dial_status_for(code: u16) -> DialStatus {
    match code {
        486 | 600 | 603 => DialStatus::Busy,
        408 | 480 | 487 => DialStatus::NoAnswer,
        404 | 410 | 484 | 604 => DialStatus::ChanUnavail,
        _ => DialStatus::Congestion,
    }
}

/// The status a caller gets when the dialplan hangs up after a failed Dial
/// without a cause: the callee's own answer, with our-side conditions folded.
fn relay_status(code: u16) -> u16 {
    match code {
        487 => 480,
        c if (300..700).contains(&c) => c,
        _ => 480,
    }
}

/// Q.850 cause -> SIP status (RFC 3398 section 8.2.1).
pub fn q850_to_sip(cause: u16) -> u16 {
    match cause {
        1..=3 => 404,
        16 => 480,
        17 => 486,
        18 => 408,
        19 | 20 => 480,
        21 | 55 | 57 | 87 => 403,
        22 => 410,
        23 => 410,
        26 => 404,
        27 => 502,
        28 => 484,
        29 => 501,
        31 => 480,
        34 | 38 | 41 | 42 | 47 | 58 | 88 => 503,
        65 | 79 => 488,
        69 => 501,
        102 => 504,
        _ => 500,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn q850_mapping_follows_rfc3398() {
        assert_eq!(q850_to_sip(17), 486);
        assert_eq!(q850_to_sip(1), 404);
        assert_eq!(q850_to_sip(19), 480);
        assert_eq!(q850_to_sip(34), 503);
        assert_eq!(q850_to_sip(127), 500);
    }

    #[test]
    fn dial_status_mapping() {
        assert_eq!(dial_status_for(486), DialStatus::Busy);
        assert_eq!(dial_status_for(480), DialStatus::NoAnswer);
        assert_eq!(dial_status_for(503), DialStatus::Congestion);
        assert_eq!(relay_status(487), 480);
        assert_eq!(relay_status(486), 486);
    }

    // ------------------------------------------------- billing and RADIUS (virtual time)

    use crate::aaa::packet::attr;
    use crate::sip::digest::{self, Algorithm};

    /// A dataplane double: sessions on fixed ports, nothing else.
    #[derive(Default)]
    struct NoMedia(u32);

    impl Media for NoMedia {
        fn create_session(
            &mut self,
            _mode: dataplane::Mode,
        ) -> Result<dataplane::Allocated, dataplane::Error> {
            self.0 += 1;
            Ok(dataplane::Allocated {
                id: dataplane::SessionId(self.0),
                worker: 0,
                a: SocketAddr::from(([127, 0, 0, 1], 20000)),
                b: SocketAddr::from(([127, 0, 0, 1], 20002)),
            })
        }
        fn set_remote(
            &mut self,
            _: dataplane::SessionId,
            _: dataplane::Side,
            _: SocketAddr,
        ) -> Result<(), dataplane::Error> {
            Ok(())
        }
        fn set_mode(
            &mut self,
            _: dataplane::SessionId,
            _: dataplane::Mode,
        ) -> Result<(), dataplane::Error> {
            Ok(())
        }
        fn arm_timeout(&mut self, _: dataplane::SessionId) -> Result<(), dataplane::Error> {
            Ok(())
        }
        fn destroy(&mut self, _: dataplane::SessionId) -> Result<(), dataplane::Error> {
            Ok(())
        }
        fn poll_event(&mut self) -> Option<dataplane::Event> {
            None
        }
        fn stats(&self) -> Vec<dataplane::WorkerStats> {
            Vec::new()
        }
    }

    const T: &str = "127.0.0.1:5060";
    const A: &str = "127.0.0.1:6001";
    const B: &str = "127.0.0.1:6002";
    const WALL: u64 = 1_800_000_000;
    const PLAN: &str = "[default]\nexten => _XXXX,1,Dial(SIP/${EXTEN},5)\n same => n,Hangup()\n";

    struct W {
        e: Engine<NoMedia>,
        now: Instant,
        out: Vec<(SocketAddr, Message)>,
    }

    #[expect(
        clippy::disallowed_methods,
        reason = "the test's fixed epoch; time then advances virtually"
    )]
    fn epoch() -> Instant {
        Instant::now()
    }

    fn world(aaa: AaaSettings) -> W {
        let cfg = EngineConfig {
            local: T.parse().unwrap(),
            realm: "tandem".into(),
            user_agent: "t".into(),
            context: "default".into(),
            user_contexts: HashMap::new(),
            users: [("1001".to_string(), "pw1001".to_string())].into(),
            timers: TimerConfig::default(),
            user_codecs: HashMap::new(),
            tone_zone: "us".into(),
            sounds: Arc::new(HashMap::new()),
            gateways: Vec::new(),
        };
        let now = epoch();
        let plan = Arc::new(Dialplan::parse(PLAN, "t.conf").unwrap());
        let mut e = Engine::new(cfg, plan, NoMedia::default(), [1; 32], now, WALL);
        e.set_aaa(aaa);
        W {
            e,
            now,
            out: Vec::new(),
        }
    }

    impl W {
        fn send(&mut self, from: &str, text: &str) {
            self.e
                .handle_datagram(text.as_bytes(), from.parse().unwrap(), self.now);
            self.flush();
        }
        fn flush(&mut self) {
            while let Some(t) = self.e.poll_transmit() {
                self.out.push((t.dest, Message::parse(&t.bytes).unwrap()));
            }
        }
        fn advance(&mut self, secs: u64) {
            self.now += Duration::from_secs(secs);
            self.e.handle_timeout(self.now);
            self.flush();
        }
        fn responses(&mut self, to: &str) -> Vec<Response> {
            let to: SocketAddr = to.parse().unwrap();
            let (mine, rest) = std::mem::take(&mut self.out)
                .into_iter()
                .partition(|(d, _)| *d == to);
            self.out = rest;
            mine.into_iter()
                .filter_map(|(_, m)| match m {
                    Message::Response(r) => Some(r),
                    _ => None,
                })
                .collect()
        }
        fn requests(&mut self, to: &str) -> Vec<Request> {
            let to: SocketAddr = to.parse().unwrap();
            let (mine, rest) = std::mem::take(&mut self.out)
                .into_iter()
                .partition(|(d, _)| *d == to);
            self.out = rest;
            mine.into_iter()
                .filter_map(|(_, m)| match m {
                    Message::Request(r) => Some(r),
                    _ => None,
                })
                .collect()
        }
    }

    fn sdp_body(port: u16) -> String {
        format!(
            "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n\
             m=audio {port} RTP/AVP 0\r\na=rtpmap:0 PCMU/8000\r\n"
        )
    }

    /// A request from `user` at `from`, challenged once, then sent with credentials.
    /// Returns the responses to the authenticated one.
    fn authed(w: &mut W, method: &str, user: &str, pw: &str, from: &str, target: &str) {
        let header = if method == "REGISTER" {
            "Authorization"
        } else {
            "Proxy-Authorization"
        };
        let to = if method == "REGISTER" {
            format!("sip:{user}@{T}")
        } else {
            target.to_string()
        };
        let msg = |cseq: u32, auth: &str| {
            let body = if method == "INVITE" {
                sdp_body(7000)
            } else {
                String::new()
            };
            format!(
                "{method} {target} SIP/2.0\r\nVia: SIP/2.0/UDP {from};branch=z9hG4bK{method}{user}{cseq}\r\n\
                 Max-Forwards: 70\r\nFrom: <sip:{user}@{T}>;tag=f{user}\r\nTo: <{to}>\r\n\
                 Call-ID: {method}-{user}\r\nCSeq: {cseq} {method}\r\nContact: <sip:{user}@{from}>\r\n{auth}\
                 Content-Type: application/sdp\r\nContent-Length: {}\r\n\r\n{body}",
                body.len()
            )
        };
        w.send(from, &msg(1, ""));
        let ch = w.responses(from).pop().unwrap();
        assert!(ch.code == 401 || ch.code == 407, "{}", ch.code);
        let challenge = ch
            .headers
            .get(if ch.code == 401 {
                "WWW-Authenticate"
            } else {
                "Proxy-Authenticate"
            })
            .unwrap()
            .to_string();
        let i = challenge.find("nonce=\"").unwrap() + 7;
        let nonce = &challenge[i..i + challenge[i..].find('"').unwrap()];
        let resp = digest::response(
            Algorithm::Md5,
            user,
            "tandem",
            pw,
            method,
            target,
            nonce,
            Some(("00000001", "c")),
        );
        let auth = format!(
            "{header}: Digest username=\"{user}\", realm=\"tandem\", nonce=\"{nonce}\", uri=\"{target}\", \
             response=\"{resp}\", algorithm=MD5, qop=auth, nc=00000001, cnonce=\"c\"\r\n"
        );
        w.send(from, &msg(2, &auth));
    }

    fn answer_b(w: &mut W, code: u16) -> Request {
        let inv = w.requests(B).pop().expect("B leg INVITE");
        let mut r = Response::for_request(&inv, code);
        r.set_to_tag("bob");
        if code == 200 {
            r.headers.set("Contact", format!("<sip:1002@{B}>"));
            r.headers.set("Content-Type", "application/sdp");
            r.body = sdp_body(8000).into_bytes();
        }
        w.e.handle_datagram(&r.to_bytes(), B.parse().unwrap(), w.now);
        w.flush();
        inv
    }

    fn billing(w: &mut W) -> Vec<Billing> {
        std::iter::from_fn(|| w.e.poll_billing()).collect()
    }

    /// Local user 1002 registered at B (no RADIUS).
    fn with_callee(aaa: AaaSettings) -> W {
        let mut w = world(aaa);
        w.e.cfg.users.insert("1002".into(), "pw1002".into());
        w.e.registrar = Registrar::new("tandem".into(), w.e.cfg.users.clone(), [1; 32]);
        w.e.registrar.set_remote_auth(w.e.aaa.radius_digest);
        authed(&mut w, "REGISTER", "1002", "pw1002", B, &format!("sip:{T}"));
        assert_eq!(w.responses(B).pop().unwrap().code, 200);
        w
    }

    fn billing_on() -> AaaSettings {
        AaaSettings {
            billing: true,
            nas_ip: Some(Ipv4Addr::LOCALHOST),
            ..AaaSettings::default()
        }
    }

    #[test]
    fn answered_call_bills_start_and_stop_with_virtual_session_time() {
        let mut w = with_callee(billing_on());
        w.advance(1);
        authed(
            &mut w,
            "INVITE",
            "1001",
            "pw1001",
            A,
            &format!("sip:1002@{T}"),
        );
        w.advance(2); // ringing for 2 s
        answer_b(&mut w, 200);
        let start = billing(&mut w);
        let [Billing::Start(s)] = start.as_slice() else {
            panic!("{start:?}")
        };
        assert_eq!(s.answer, Some(UNIX_EPOCH + Duration::from_secs(WALL + 3)));
        assert_eq!(s.start, UNIX_EPOCH + Duration::from_secs(WALL + 1));
        let ok = w.responses(A).into_iter().find(|r| r.code == 200).unwrap();
        let to = ok.headers.get("To").unwrap().to_string();
        w.send(
            A,
            &format!(
                "ACK sip:tandem@{T} SIP/2.0\r\nVia: SIP/2.0/UDP {A};branch=z9hG4bKack1\r\n\
                 Max-Forwards: 70\r\nFrom: <sip:1001@{T}>;tag=f1001\r\nTo: {to}\r\n\
                 Call-ID: INVITE-1001\r\nCSeq: 2 ACK\r\nContent-Length: 0\r\n\r\n"
            ),
        );
        w.advance(42);
        assert!(
            w.requests(A).is_empty(),
            "no BYE from Tandem: the call is up"
        );
        w.send(
            A,
            &format!(
                "BYE sip:tandem@{T} SIP/2.0\r\nVia: SIP/2.0/UDP {A};branch=z9hG4bKbye1\r\n\
                 Max-Forwards: 70\r\nFrom: <sip:1001@{T}>;tag=f1001\r\nTo: {to}\r\n\
                 Call-ID: INVITE-1001\r\nCSeq: 3 BYE\r\nContent-Length: 0\r\n\r\n"
            ),
        );
        let end = billing(&mut w);
        let [Billing::End(r)] = end.as_slice() else {
            panic!("{end:?}")
        };
        assert_eq!(r.disposition, Disposition::Answered);
        assert_eq!(r.cause, Some(16));
        assert_eq!(r.uniqueid, s.uniqueid);
        assert_eq!(r.conf_id, s.conf_id);
        let cdr = r.cdr();
        assert_eq!((cdr.duration(), cdr.billsec()), (44, 42));
        assert_eq!(cdr.lastapp, "Dial");
        assert_eq!(cdr.lastdata, "SIP/1002,5");
        assert!(cdr.dstchannel.starts_with("SIP/1002-"), "{cdr:?}");
        let stop = r
            .acct(Some(Ipv4Addr::LOCALHOST))
            .attributes(crate::aaa::AcctStatus::Stop, r.end.unwrap());
        assert!(stop.contains(&Attribute::int(attr::ACCT_SESSION_TIME, 42)));
        assert!(stop.contains(&Attribute::int(attr::ACCT_TERMINATE_CAUSE, 1)));
        assert!(stop.contains(&Attribute::text(attr::CALLED_STATION_ID, "1002")));
    }

    #[test]
    fn busy_and_no_answer_dispositions() {
        let mut w = with_callee(billing_on());
        authed(
            &mut w,
            "INVITE",
            "1001",
            "pw1001",
            A,
            &format!("sip:1002@{T}"),
        );
        answer_b(&mut w, 486);
        let b = billing(&mut w);
        let [Billing::End(r)] = b.as_slice() else {
            panic!("{b:?}")
        };
        assert_eq!((r.disposition, r.cause), (Disposition::Busy, Some(17)));
        assert_eq!(r.answer, None);

        let mut w = with_callee(billing_on());
        authed(
            &mut w,
            "INVITE",
            "1001",
            "pw1001",
            A,
            &format!("sip:1002@{T}"),
        );
        w.advance(6); // past Dial's 5 s
        let b = billing(&mut w);
        let [Billing::End(r)] = b.as_slice() else {
            panic!("{b:?}")
        };
        assert_eq!(r.disposition, Disposition::NoAnswer);
        assert_eq!(r.cdr().duration(), 6);
        // Billing off: nothing queues up.
        let mut w = with_callee(AaaSettings::default());
        authed(
            &mut w,
            "INVITE",
            "1001",
            "pw1001",
            A,
            &format!("sip:1002@{T}"),
        );
        answer_b(&mut w, 486);
        assert!(billing(&mut w).is_empty());
    }

    #[test]
    fn radius_user_register_is_parked_until_the_verdict() {
        let mut w = world(AaaSettings {
            radius_digest: true,
            ..AaaSettings::default()
        });
        authed(&mut w, "REGISTER", "2001", "secret", A, &format!("sip:{T}"));
        assert!(w.responses(A).is_empty(), "parked: no answer yet");
        let q = w.e.poll_aaa().expect("an Access-Request");
        assert!(q
            .attributes
            .contains(&Attribute::text(attr::USER_NAME, "2001")));
        assert!(q
            .attributes
            .contains(&Attribute::text(attr::DIGEST_METHOD, "REGISTER")));
        assert_eq!(w.e.parked(), 1);
        w.advance(1);
        w.e.handle_aaa_verdict(q.ticket, &AuthOutcome::Accept(vec![]), w.now);
        w.flush();
        assert_eq!(w.responses(A).pop().unwrap().code, 200);
        assert_eq!(w.e.registrar.lookup("2001", w.now).len(), 1);
        // A second verdict for the same ticket is ignored.
        w.e.handle_aaa_verdict(q.ticket, &AuthOutcome::Accept(vec![]), w.now);
        w.flush();
        assert!(w.responses(A).is_empty());

        // Wrong password: RADIUS rejects, 403, no binding.
        authed(&mut w, "REGISTER", "2002", "guess", B, &format!("sip:{T}"));
        let q = w.e.poll_aaa().unwrap();
        w.e.handle_aaa_verdict(q.ticket, &AuthOutcome::Reject(None), w.now);
        w.flush();
        assert_eq!(w.responses(B).pop().unwrap().code, 403);
        assert!(w.e.registrar.lookup("2002", w.now).is_empty());
        // Local users never go to RADIUS.
        authed(&mut w, "REGISTER", "1001", "pw1001", A, &format!("sip:{T}"));
        assert!(w.e.poll_aaa().is_none());
        assert_eq!(w.responses(A).pop().unwrap().code, 200);
    }

    #[test]
    fn rejected_authorisation_keeps_the_call_inside() {
        let mut w = with_callee(AaaSettings {
            authorize_calls: true,
            billing: true,
            ..AaaSettings::default()
        });
        authed(
            &mut w,
            "INVITE",
            "1001",
            "pw1001",
            A,
            &format!("sip:1002@{T}"),
        );
        let q = w.e.poll_aaa().expect("authorisation request");
        assert!(q
            .attributes
            .contains(&Attribute::text(attr::CALLED_STATION_ID, "1002")));
        w.e.handle_aaa_verdict(
            q.ticket,
            &AuthOutcome::Reject(Some("no credit".into())),
            w.now,
        );
        w.flush();
        let r = w.responses(A).pop().unwrap();
        assert_eq!(r.code, 403);
        assert!(r.reason.contains("no credit"), "{}", r.reason);
        assert!(w.requests(B).is_empty(), "the call never left");
        assert!(billing(&mut w).is_empty());

        // Accepted: the call proceeds with the conf id of the authorisation.
        w.advance(1);
        let mut w2 = with_callee(AaaSettings {
            authorize_calls: true,
            billing: true,
            ..AaaSettings::default()
        });
        authed(
            &mut w2,
            "INVITE",
            "1001",
            "pw1001",
            A,
            &format!("sip:1002@{T}"),
        );
        let q = w2.e.poll_aaa().unwrap();
        w2.e.handle_aaa_verdict(q.ticket, &AuthOutcome::Accept(vec![]), w2.now);
        w2.flush();
        answer_b(&mut w2, 200);
        let b = billing(&mut w2);
        let [Billing::Start(s)] = b.as_slice() else {
            panic!("{b:?}")
        };
        let conf = Attribute::cisco(
            crate::aaa::packet::cisco::H323_CONF_ID,
            "h323-conf-id",
            &s.conf_id.to_string(),
        );
        assert!(q.attributes.contains(&conf), "same h323-conf-id");
        // Without RADIUS digest, an unknown user is refused locally.
        authed(&mut w2, "INVITE", "1003", "x", A, &format!("sip:1002@{T}"));
        assert_eq!(
            w2.responses(A).pop().unwrap().code,
            403,
            "unknown local user"
        );
    }
}
