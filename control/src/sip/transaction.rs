//! The SIP transaction layer (RFC 3261 §17, with the Accepted states of RFC 6026).
//!
//! Four sans-IO state machines, one per transaction kind: [`ClientInvite`], [`ClientNonInvite`],
//! [`ServerInvite`] and [`ServerNonInvite`]. Each takes messages and `now` through `handle*`,
//! fires its timers from `handle_timeout(now)`, and is drained with `poll_transmit`,
//! `poll_event` and `poll_timeout`. Retransmissions over UDP are theirs; the caller never
//! resends a request or a final response.
//!
//! [`TransactionLayer`] owns all transactions, matches incoming messages to them (§17.1.3 and
//! §17.2.3: top Via branch + sent-by + method, ACK to its INVITE, with the RFC 2543 fallback when
//! the branch lacks the `z9hG4bK` cookie) and keeps one timer heap over all of them.
//!
//! Run-loop contract: after every `handle`, `send_*` or `handle_timeout` call, drain
//! `poll_transmit` (bytes to send) and `poll_event`, then sleep until `poll_timeout` (or the next
//! datagram) and call `handle_timeout(now)`.
//!
//! Reliable transports (RFC 3261 §17.1.1.2, §17.1.2.2, §17.2.1, §17.2.2): when the top Via of
//! the request names TCP or TLS, no request and no non-2xx final response is retransmitted
//! (Timers A, E and G are not started) and Timers D, I, J and K are zero. A 2xx to INVITE is
//! still retransmitted until its ACK arrives (§13.3.1.4 makes that the UAS core's job on every
//! transport).
//!
//! Two departures from bare RFC 3261, both asked for by the B2BUA above:
//! - a server INVITE transaction that sends a 2xx stays in Accepted and itself retransmits the
//!   2xx (T1 doubling to T2, paced by Timer G) until an ACK with the same Call-ID and CSeq number
//!   arrives (that ACK is still passed up); no ACK within 64*T1 raises [`TxEvent::NoAck`];
//! - a client INVITE transaction passes every 2xx copy up in Accepted, so the TU re-sends its ACK.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap, VecDeque};
use std::fmt;
use std::net::SocketAddr;
use std::time::Instant;

use super::message::{Message, Method, Request, Response, Via};
use super::text::{push_ip, push_u64};
use super::timer::TimerTable;
pub use super::timer::{Timer, TimerConfig};
use super::transport::Transport;

/// Identifies a transaction (RFC 3261 §17.1.3 / §17.2.3). Opaque.
///
/// The key's fields are hashed once, when it is made ([`TxKey::seal`]), with a per-process
/// random SipHash key, and `Hash` feeds only that value to the maps: a call set-up looks its
/// transactions up a few dozen times, and hashing four strings each time was ~5 % of the
/// control thread. The per-process key keeps the value unpredictable to peers, who choose
/// the branch (no hash flooding).
///
/// The fields sit behind an `Arc`: the engine and the layer copy a key a few dozen times per
/// call set-up (maps by transaction, timers, events), and each copy of three `String`s was
/// three allocations.
#[derive(Clone, Debug)]
pub struct TxKey {
    /// The fields' keyed hash (derived from them: equal keys have equal values).
    hash: u64,
    parts: std::sync::Arc<KeyParts>,
}

impl PartialEq for TxKey {
    fn eq(&self, other: &TxKey) -> bool {
        self.hash == other.hash
            && (std::sync::Arc::ptr_eq(&self.parts, &other.parts) || self.parts == other.parts)
    }
}

impl Eq for TxKey {}

/// What a [`TxKey`] is made of.
#[derive(Debug, PartialEq, Eq)]
struct KeyParts {
    /// The branch, or an RFC 2543 pseudo-branch built from Call-ID, CSeq, From tag and Via.
    branch: String,
    sent_by: String,
    /// The transaction's method; ACK maps to INVITE.
    method: Method,
    server: bool,
    /// Server side: Call-ID and CSeq number. RFC 3261 §17.2.3 matches on branch, sent-by and
    /// method only; a request that agrees on those but not on Call-ID/CSeq is a branch
    /// collision (a broken or hostile client), not a retransmission, and gets its own
    /// transaction instead of a stale cached response.
    request: String,
}

impl std::hash::Hash for TxKey {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        state.write_u64(self.hash);
    }
}

impl fmt::Display for TxKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let k = &self.parts;
        let side = if k.server { "uas" } else { "uac" };
        write!(f, "{side}:{}:{}@{}", k.method, k.branch, k.sent_by)
    }
}

impl TxKey {
    /// The transaction's method (INVITE for an INVITE transaction, even when matched by ACK).
    pub fn method(&self) -> &Method {
        &self.parts.method
    }

    pub fn is_server(&self) -> bool {
        self.parts.server
    }

    /// The key of the request `req` at the server side. ACK keys to INVITE.
    fn server(req: &Request, via: &Via) -> TxKey {
        let method = match req.method {
            Method::Ack => Method::Invite,
            ref m => m.clone(),
        };
        TxKey::server_as(req, via, method)
    }

    /// [`TxKey::server`] with the method given.
    fn server_as(req: &Request, via: &Via, method: Method) -> TxKey {
        TxKey::seal(KeyParts {
            branch: branch_or_2543(req, via),
            sent_by: via.sent_by(),
            method,
            server: true,
            request: {
                let call_id = req.call_id().unwrap_or("");
                let mut r = String::with_capacity(call_id.len() + 11);
                r.push_str(call_id);
                r.push('|');
                push_u64(&mut r, u64::from(req.cseq().map_or(0, |c| c.seq)));
                r
            },
        })
    }

    /// The key of a request we send, or of a response to it.
    fn client(via: &Via, cseq_method: &Method) -> TxKey {
        TxKey::seal(KeyParts {
            branch: via.branch().unwrap_or("").to_string(),
            sent_by: via.sent_by(),
            method: cseq_method.clone(),
            server: false,
            request: String::new(),
        })
    }

    /// The key of `parts`, its hash computed (every constructor ends here).
    fn seal(k: KeyParts) -> TxKey {
        use std::hash::BuildHasher;
        static KEY: std::sync::OnceLock<std::collections::hash_map::RandomState> =
            std::sync::OnceLock::new();
        let hash = KEY
            .get_or_init(std::collections::hash_map::RandomState::new)
            .hash_one((&k.branch, &k.sent_by, &k.method, k.server, &k.request));
        TxKey {
            hash,
            parts: std::sync::Arc::new(k),
        }
    }
}

fn branch_or_2543(req: &Request, via: &Via) -> String {
    match via.branch() {
        Some(b) if b.starts_with("z9hG4bK") && b.len() > 7 => b.to_string(),
        _ => {
            // RFC 2543 matching (§17.2.3): Request-URI, From tag, Call-ID, CSeq number, top Via.
            // To tag is left out so the ACK for a non-2xx (which carries it) still matches.
            let from_tag = req
                .from()
                .and_then(|f| f.tag().map(str::to_string))
                .unwrap_or_default();
            let seq = req.cseq().map_or(0, |c| c.seq);
            format!(
                "2543|{}|{}|{}|{}|{}",
                req.uri,
                from_tag,
                req.call_id().unwrap_or(""),
                seq,
                req.headers.get("Via").unwrap_or("")
            )
        }
    }
}

/// Bytes to send to `dest`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Transmit {
    pub dest: SocketAddr,
    pub bytes: Vec<u8>,
}

/// What [`TransactionLayer::handle`] made of a message.
#[derive(Debug, Clone)]
pub enum Incoming {
    /// A new server transaction was created for this request (never for ACK).
    Request {
        key: TxKey,
        req: Request,
        from: SocketAddr,
    },
    /// An ACK not absorbed by a server INVITE transaction in Completed: the ACK for a 2xx.
    Ack { req: Request, from: SocketAddr },
    /// A response for a client transaction: the first provisional of each code (per To tag),
    /// each final once, and every copy of a 2xx to INVITE.
    Response { key: TxKey, resp: Response },
    /// A response that matches no client transaction.
    StrayResponse { resp: Response, from: SocketAddr },
    /// Handled inside: a retransmission (last response resent), the ACK for a non-2xx, a
    /// duplicate response, or a request without a usable Via (dropped).
    Absorbed,
}

/// Transaction outcomes the TU must hear about.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TxEvent {
    /// Timer B or F fired: no final response. Treat as a 408.
    Timeout { key: TxKey },
    /// A server INVITE transaction's final response was never ACKed (Timer H, or 64*T1 after
    /// a 2xx).
    NoAck { key: TxKey },
    /// The transaction is gone.
    Terminated { key: TxKey },
}

/// Misuse of [`TransactionLayer::send_response`]. All are caused by the TU.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum TxError {
    /// No transaction with that key (it may have terminated).
    #[error("no transaction {0}")]
    UnknownTransaction(String),
    /// The key names a client transaction.
    #[error("{0} is a client transaction")]
    NotServer(String),
    /// A final response was already sent (or a non-2xx after a 2xx).
    #[error("transaction {0} already answered finally")]
    AlreadyFinal(String),
    /// Status code outside 100..=699.
    #[error("bad status code {0}")]
    BadStatus(u16),
}

/// What a state machine did with a message.
#[derive(Debug)]
enum Handled<T> {
    PassUp(T),
    Absorbed,
}

/// Events a state machine raises; the layer adds the key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MachineEvent {
    Timeout,
    NoAck,
    Terminated,
}

/// Output shared by the four machines.
#[derive(Debug)]
struct Outbox {
    dest: SocketAddr,
    transmits: VecDeque<Vec<u8>>,
    events: VecDeque<MachineEvent>,
    timers: TimerTable,
    cfg: TimerConfig,
    terminated: bool,
}

impl Outbox {
    fn new(dest: SocketAddr, cfg: TimerConfig) -> Outbox {
        Outbox {
            dest,
            transmits: VecDeque::new(),
            events: VecDeque::new(),
            timers: TimerTable::default(),
            cfg,
            terminated: false,
        }
    }

    fn terminate(&mut self) {
        if !self.terminated {
            self.terminated = true;
            self.timers.stop_all();
            self.events.push_back(MachineEvent::Terminated);
        }
    }

    fn poll_transmit(&mut self) -> Option<Transmit> {
        self.transmits.pop_front().map(|bytes| Transmit {
            dest: self.dest,
            bytes,
        })
    }
}

macro_rules! machine_polls {
    () => {
        /// Next bytes to send.
        pub fn poll_transmit(&mut self) -> Option<Transmit> {
            self.out.poll_transmit()
        }
        pub fn poll_event(&mut self) -> Option<MachineEvent> {
            self.out.events.pop_front()
        }
        /// When `handle_timeout` must next be called.
        pub fn poll_timeout(&self) -> Option<Instant> {
            self.out.timers.next_timeout()
        }
        pub fn is_terminated(&self) -> bool {
            self.out.terminated
        }
    };
}

// ---------------------------------------------------------------------------------------------
// Client INVITE (§17.1.1, RFC 6026 §7.2)

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClientInviteState {
    Calling,
    Proceeding,
    Completed,
    Accepted,
    Terminated,
}

/// Client INVITE transaction.
#[derive(Debug)]
pub struct ClientInvite {
    state: ClientInviteState,
    request: Request,
    bytes: Vec<u8>,
    /// Interval of the next Timer A.
    a_interval: std::time::Duration,
    /// ACK for the non-2xx final, resent on every final retransmission.
    ack: Option<Vec<u8>>,
    provisionals: Vec<(u16, Option<String>)>,
    /// Sent over TCP/TLS: no Timer A, Timer D zero.
    reliable: bool,
    out: Outbox,
}

impl ClientInvite {
    /// Sends `request` and starts timers A and B.
    pub fn new(request: Request, dest: SocketAddr, cfg: TimerConfig, now: Instant) -> Self {
        let bytes = request.to_bytes();
        let reliable = Transport::of_via_value(request.headers.get("Via")).is_reliable();
        let mut out = Outbox::new(dest, cfg);
        out.transmits.push_back(bytes.clone());
        if !reliable {
            out.timers.set(Timer::A, now + cfg.t1);
        }
        out.timers.set(Timer::B, now + cfg.t1x64());
        ClientInvite {
            reliable,
            state: ClientInviteState::Calling,
            request,
            bytes,
            a_interval: cfg.t1,
            ack: None,
            provisionals: Vec::new(),
            out,
        }
    }

    pub fn state(&self) -> ClientInviteState {
        self.state
    }

    fn handle(&mut self, resp: Response, now: Instant) -> Handled<Response> {
        use ClientInviteState::*;
        match (self.state, resp.code) {
            (Calling | Proceeding, 100..=199) => {
                self.state = Proceeding;
                self.out.timers.stop(Timer::A);
                self.out.timers.stop(Timer::B);
                let id = (resp.code, resp.to_tag().map(str::to_string));
                if self.provisionals.contains(&id) {
                    return Handled::Absorbed;
                }
                self.provisionals.push(id);
                Handled::PassUp(resp)
            }
            (Calling | Proceeding, 200..=299) => {
                self.state = Accepted;
                self.out.timers.stop_all();
                self.out.timers.set(Timer::M, now + self.out.cfg.t1x64());
                Handled::PassUp(resp)
            }
            (Calling | Proceeding, _) => {
                self.state = Completed;
                self.out.timers.stop_all();
                let d = if self.reliable {
                    std::time::Duration::ZERO
                } else {
                    self.out.cfg.timer_d()
                };
                self.out.timers.set(Timer::D, now + d);
                let ack = build_ack(&self.request, &resp).to_bytes();
                self.out.transmits.push_back(ack.clone());
                self.ack = Some(ack);
                Handled::PassUp(resp)
            }
            (Completed, 300..=699) => {
                if let Some(ack) = &self.ack {
                    self.out.transmits.push_back(ack.clone());
                }
                Handled::Absorbed
            }
            (Accepted, 200..=299) => Handled::PassUp(resp),
            _ => Handled::Absorbed,
        }
    }

    pub fn handle_timeout(&mut self, now: Instant) {
        while let Some(t) = self.out.timers.take_expired(now) {
            match t {
                Timer::A if self.state == ClientInviteState::Calling => {
                    self.out.transmits.push_back(self.bytes.clone());
                    self.a_interval *= 2;
                    self.out.timers.set(Timer::A, now + self.a_interval);
                }
                Timer::B => {
                    self.out.events.push_back(MachineEvent::Timeout);
                    self.state = ClientInviteState::Terminated;
                    self.out.terminate();
                }
                Timer::D | Timer::M => {
                    self.state = ClientInviteState::Terminated;
                    self.out.terminate();
                }
                _ => {}
            }
        }
    }

    machine_polls!();
}

/// The ACK for a non-2xx final response (§17.1.1.3): same Request-URI, top Via, From, Call-ID,
/// CSeq number and Route as the INVITE; To from the response.
fn build_ack(invite: &Request, resp: &Response) -> Request {
    let mut ack = Request::new(Method::Ack, invite.uri.clone());
    if let Some(v) = invite.headers.get("Via") {
        ack.headers.push("Via", v);
    }
    ack.headers.push("Max-Forwards", "70");
    if let Some(f) = invite.headers.get("From") {
        ack.headers.push("From", f);
    }
    if let Some(t) = resp.headers.get("To").or_else(|| invite.headers.get("To")) {
        ack.headers.push("To", t);
    }
    if let Some(c) = invite.call_id() {
        ack.headers.push("Call-ID", c);
    }
    let seq = invite.cseq().map_or(1, |c| c.seq);
    ack.headers.push("CSeq", format!("{seq} ACK"));
    for r in invite.headers.get_all("Route") {
        ack.headers.push("Route", r);
    }
    ack
}

// ---------------------------------------------------------------------------------------------
// Client non-INVITE (§17.1.2)

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClientNonInviteState {
    Trying,
    Proceeding,
    Completed,
    Terminated,
}

/// Client non-INVITE transaction.
#[derive(Debug)]
pub struct ClientNonInvite {
    state: ClientNonInviteState,
    bytes: Vec<u8>,
    e_interval: std::time::Duration,
    provisionals: Vec<u16>,
    /// Sent over TCP/TLS: no Timer E, Timer K zero.
    reliable: bool,
    out: Outbox,
}

impl ClientNonInvite {
    /// Sends `request` and starts timers E and F.
    pub fn new(request: &Request, dest: SocketAddr, cfg: TimerConfig, now: Instant) -> Self {
        let bytes = request.to_bytes();
        let reliable = Transport::of_via_value(request.headers.get("Via")).is_reliable();
        let mut out = Outbox::new(dest, cfg);
        out.transmits.push_back(bytes.clone());
        if !reliable {
            out.timers.set(Timer::E, now + cfg.t1);
        }
        out.timers.set(Timer::F, now + cfg.t1x64());
        ClientNonInvite {
            reliable,
            state: ClientNonInviteState::Trying,
            bytes,
            e_interval: cfg.t1,
            provisionals: Vec::new(),
            out,
        }
    }

    pub fn state(&self) -> ClientNonInviteState {
        self.state
    }

    fn handle(&mut self, resp: Response, now: Instant) -> Handled<Response> {
        use ClientNonInviteState::*;
        match (self.state, resp.code) {
            (Trying | Proceeding, 100..=199) => {
                self.state = Proceeding;
                if self.provisionals.contains(&resp.code) {
                    return Handled::Absorbed;
                }
                self.provisionals.push(resp.code);
                Handled::PassUp(resp)
            }
            (Trying | Proceeding, _) => {
                self.state = Completed;
                self.out.timers.stop_all();
                let k = if self.reliable {
                    std::time::Duration::ZERO
                } else {
                    self.out.cfg.t4
                };
                self.out.timers.set(Timer::K, now + k);
                Handled::PassUp(resp)
            }
            _ => Handled::Absorbed,
        }
    }

    pub fn handle_timeout(&mut self, now: Instant) {
        while let Some(t) = self.out.timers.take_expired(now) {
            match t {
                Timer::E if !self.reliable => {
                    self.out.transmits.push_back(self.bytes.clone());
                    self.e_interval = if self.state == ClientNonInviteState::Proceeding {
                        self.out.cfg.t2
                    } else {
                        (self.e_interval * 2).min(self.out.cfg.t2)
                    };
                    self.out.timers.set(Timer::E, now + self.e_interval);
                }
                Timer::F => {
                    self.out.events.push_back(MachineEvent::Timeout);
                    self.state = ClientNonInviteState::Terminated;
                    self.out.terminate();
                }
                Timer::K => {
                    self.state = ClientNonInviteState::Terminated;
                    self.out.terminate();
                }
                _ => {}
            }
        }
    }

    machine_polls!();
}

// ---------------------------------------------------------------------------------------------
// Server INVITE (§17.2.1, RFC 6026 §7.1)

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ServerInviteState {
    Proceeding,
    Completed,
    Confirmed,
    Accepted,
    Terminated,
}

/// Server INVITE transaction.
#[derive(Debug)]
pub struct ServerInvite {
    state: ServerInviteState,
    /// Last response sent, resent on INVITE retransmission / by Timer G.
    last: Vec<u8>,
    g_interval: std::time::Duration,
    /// In Accepted: the ACK for the 2xx arrived.
    acked: bool,
    /// Call-ID and CSeq number, to match the ACK for a 2xx.
    dialog_key: (String, u32),
    /// Received over TCP/TLS: no Timer G for a non-2xx, Timer I zero.
    reliable: bool,
    out: Outbox,
}

impl ServerInvite {
    /// Creates the transaction for `invite` and sends `100 Trying` at once.
    pub fn new(invite: &Request, dest: SocketAddr, cfg: TimerConfig) -> Self {
        let trying = Response::for_request(invite, 100).to_bytes();
        let mut out = Outbox::new(dest, cfg);
        out.transmits.push_back(trying.clone());
        ServerInvite {
            reliable: Transport::of_via_value(invite.headers.get("Via")).is_reliable(),
            state: ServerInviteState::Proceeding,
            last: trying,
            g_interval: cfg.t1,
            acked: false,
            dialog_key: (
                invite.call_id().unwrap_or("").to_string(),
                invite.cseq().map_or(0, |c| c.seq),
            ),
            out,
        }
    }

    pub fn state(&self) -> ServerInviteState {
        self.state
    }

    /// A retransmitted INVITE, or an ACK with this transaction's key.
    fn handle(&mut self, req: &Request, now: Instant) -> Handled<()> {
        use ServerInviteState::*;
        match (&req.method, self.state) {
            (Method::Ack, Completed) => {
                self.state = Confirmed;
                self.out.timers.stop_all();
                let i = if self.reliable {
                    std::time::Duration::ZERO
                } else {
                    self.out.cfg.t4
                };
                self.out.timers.set(Timer::I, now + i);
                Handled::Absorbed
            }
            // An ACK for the 2xx that reuses the INVITE branch (RFC 2543 peers).
            (Method::Ack, Accepted) => {
                self.ack_2xx();
                Handled::PassUp(())
            }
            (Method::Ack, _) => Handled::Absorbed,
            (_, Proceeding | Completed) => {
                self.out.transmits.push_back(self.last.clone());
                Handled::Absorbed
            }
            _ => Handled::Absorbed,
        }
    }

    /// The ACK for our 2xx arrived: stop retransmitting it.
    fn ack_2xx(&mut self) {
        self.acked = true;
        self.out.timers.stop(Timer::G);
    }

    fn send_response(&mut self, resp: &Response, now: Instant) -> Result<(), TxError> {
        use ServerInviteState::*;
        let bytes = resp.to_bytes();
        match (self.state, resp.code) {
            (_, c) if !(100..=699).contains(&c) => return Err(TxError::BadStatus(c)),
            (Proceeding, 100..=199) => {}
            (Proceeding | Accepted, 200..=299) => {
                if self.state == Proceeding {
                    self.state = Accepted;
                    self.g_interval = self.out.cfg.t1;
                    self.out.timers.set(Timer::G, now + self.g_interval);
                    self.out.timers.set(Timer::L, now + self.out.cfg.t1x64());
                }
            }
            (Proceeding, _) => {
                self.state = Completed;
                self.g_interval = self.out.cfg.t1;
                if !self.reliable {
                    self.out.timers.set(Timer::G, now + self.g_interval);
                }
                self.out.timers.set(Timer::H, now + self.out.cfg.t1x64());
            }
            _ => return Err(TxError::AlreadyFinal(String::new())),
        }
        self.out.transmits.push_back(bytes.clone());
        self.last = bytes;
        Ok(())
    }

    pub fn handle_timeout(&mut self, now: Instant) {
        use ServerInviteState::*;
        while let Some(t) = self.out.timers.take_expired(now) {
            match t {
                Timer::G
                    if matches!(self.state, Completed)
                        || (self.state == Accepted && !self.acked) =>
                {
                    self.out.transmits.push_back(self.last.clone());
                    self.g_interval = (self.g_interval * 2).min(self.out.cfg.t2);
                    self.out.timers.set(Timer::G, now + self.g_interval);
                }
                Timer::H => {
                    self.out.events.push_back(MachineEvent::NoAck);
                    self.state = Terminated;
                    self.out.terminate();
                }
                Timer::L => {
                    if !self.acked {
                        self.out.events.push_back(MachineEvent::NoAck);
                    }
                    self.state = Terminated;
                    self.out.terminate();
                }
                Timer::I => {
                    self.state = Terminated;
                    self.out.terminate();
                }
                _ => {}
            }
        }
    }

    machine_polls!();
}

// ---------------------------------------------------------------------------------------------
// Server non-INVITE (§17.2.2)

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ServerNonInviteState {
    Trying,
    Proceeding,
    Completed,
    Terminated,
}

/// Server non-INVITE transaction.
#[derive(Debug)]
pub struct ServerNonInvite {
    state: ServerNonInviteState,
    last: Option<Vec<u8>>,
    /// Received over TCP/TLS: Timer J zero.
    reliable: bool,
    out: Outbox,
}

impl ServerNonInvite {
    pub fn new(dest: SocketAddr, cfg: TimerConfig) -> Self {
        ServerNonInvite {
            state: ServerNonInviteState::Trying,
            last: None,
            reliable: false,
            out: Outbox::new(dest, cfg),
        }
    }

    /// The request came over TCP/TLS: Timer J is zero (RFC 3261 §17.2.2).
    pub fn with_reliable(mut self, reliable: bool) -> Self {
        self.reliable = reliable;
        self
    }

    pub fn state(&self) -> ServerNonInviteState {
        self.state
    }

    /// A retransmitted request: resend the last response, if any.
    fn handle(&mut self) -> Handled<()> {
        if let Some(last) = &self.last {
            self.out.transmits.push_back(last.clone());
        }
        Handled::Absorbed
    }

    fn send_response(&mut self, resp: &Response, now: Instant) -> Result<(), TxError> {
        use ServerNonInviteState::*;
        match (self.state, resp.code) {
            (_, c) if !(100..=699).contains(&c) => return Err(TxError::BadStatus(c)),
            (Trying | Proceeding, 100..=199) => self.state = Proceeding,
            (Trying | Proceeding, _) => {
                self.state = Completed;
                let j = if self.reliable {
                    std::time::Duration::ZERO
                } else {
                    self.out.cfg.t1x64()
                };
                self.out.timers.set(Timer::J, now + j);
            }
            _ => return Err(TxError::AlreadyFinal(String::new())),
        }
        let bytes = resp.to_bytes();
        self.out.transmits.push_back(bytes.clone());
        self.last = Some(bytes);
        Ok(())
    }

    pub fn handle_timeout(&mut self, now: Instant) {
        while let Some(t) = self.out.timers.take_expired(now) {
            if t == Timer::J {
                self.state = ServerNonInviteState::Terminated;
                self.out.terminate();
            }
        }
    }

    machine_polls!();
}

// ---------------------------------------------------------------------------------------------
// The layer

#[derive(Debug)]
#[allow(
    clippy::enum_variant_names,
    reason = "variants name the RFC 3261 transaction kinds"
)]
enum Tx {
    ClientInvite(ClientInvite),
    ClientNonInvite(ClientNonInvite),
    ServerInvite(ServerInvite),
    ServerNonInvite(ServerNonInvite),
}

macro_rules! each {
    ($tx:expr, $m:ident => $e:expr) => {
        match $tx {
            Tx::ClientInvite($m) => $e,
            Tx::ClientNonInvite($m) => $e,
            Tx::ServerInvite($m) => $e,
            Tx::ServerNonInvite($m) => $e,
        }
    };
}

#[derive(Debug)]
struct Entry {
    id: u64,
    tx: Tx,
    /// The deadline last pushed on the heap for this transaction.
    scheduled: Option<Instant>,
}

/// All transactions of one SIP endpoint. See the module docs for the run-loop contract.
#[derive(Debug)]
pub struct TransactionLayer {
    cfg: TimerConfig,
    txs: HashMap<TxKey, Entry>,
    ids: HashMap<u64, TxKey>,
    next_id: u64,
    /// Deadlines; entries may be stale (transaction gone or rescheduled): checked on pop.
    heap: BinaryHeap<Reverse<(Instant, u64)>>,
    /// Server INVITE transactions in Accepted, by Call-ID and CSeq number (for the 2xx ACK).
    accepted: HashMap<(String, u32), TxKey>,
    transmits: VecDeque<Transmit>,
    events: VecDeque<TxEvent>,
}

impl TransactionLayer {
    pub fn new(cfg: TimerConfig) -> Self {
        TransactionLayer {
            cfg,
            txs: HashMap::new(),
            ids: HashMap::new(),
            next_id: 0,
            heap: BinaryHeap::new(),
            accepted: HashMap::new(),
            transmits: VecDeque::new(),
            events: VecDeque::new(),
        }
    }

    pub fn config(&self) -> &TimerConfig {
        &self.cfg
    }

    /// Feeds one parsed message received from `from`.
    pub fn handle(&mut self, msg: Message, from: SocketAddr, now: Instant) -> Incoming {
        match msg {
            Message::Request(req) => self.handle_request(req, from, now),
            Message::Response(resp) => self.handle_response(resp, from, now),
        }
    }

    fn handle_request(&mut self, mut req: Request, from: SocketAddr, now: Instant) -> Incoming {
        let Some(mut via) = req.top_via() else {
            return Incoming::Absorbed;
        };
        // §18.2.1 received, RFC 3581 rport: so responses (built from this request) go back
        // to where the request came from.
        let mut changed = false;
        if via.rport() == Some(None) {
            via.set_param("rport", Some(from.port().to_string()));
            changed = true;
        }
        if via.host.parse::<std::net::IpAddr>().ok() != Some(from.ip()) || changed {
            let mut ip = String::with_capacity(15);
            push_ip(&mut ip, from.ip());
            via.set_param("received", Some(ip));
            changed = true;
        }
        // Match on the Via as sent (received/rport do not change branch or sent-by).
        let key = TxKey::server(&req, &via);
        if changed {
            let mut text = String::with_capacity(96);
            via.push_text(&mut text);
            req.headers.replace_first("Via", text);
        }

        if req.method == Method::Ack {
            let mut pass_up = true;
            if let Some(entry) = self.txs.get_mut(&key) {
                if let Tx::ServerInvite(t) = &mut entry.tx {
                    pass_up = matches!(t.handle(&req, now), Handled::PassUp(()));
                    self.after(&key);
                }
            }
            if pass_up {
                // The ACK for a 2xx has its own branch: match by Call-ID + CSeq number.
                let dk = (
                    req.call_id().unwrap_or("").to_string(),
                    req.cseq().map_or(0, |c| c.seq),
                );
                if let Some(k) = self.accepted.get(&dk).cloned() {
                    if let Some(Entry {
                        tx: Tx::ServerInvite(t),
                        ..
                    }) = self.txs.get_mut(&k)
                    {
                        t.ack_2xx();
                    }
                    self.after(&k);
                }
                return Incoming::Ack { req, from };
            }
            return Incoming::Absorbed;
        }

        if let Some(entry) = self.txs.get_mut(&key) {
            match &mut entry.tx {
                Tx::ServerInvite(t) => {
                    t.handle(&req, now);
                }
                Tx::ServerNonInvite(t) => {
                    t.handle();
                }
                _ => {}
            }
            self.after(&key);
            return Incoming::Absorbed;
        }

        let dest = response_dest(&via, from);
        let tx = if req.method == Method::Invite {
            Tx::ServerInvite(ServerInvite::new(&req, dest, self.cfg))
        } else {
            Tx::ServerNonInvite(
                ServerNonInvite::new(dest, self.cfg)
                    .with_reliable(Transport::of_via(&via).is_reliable()),
            )
        };
        self.insert(key.clone(), tx);
        Incoming::Request { key, req, from }
    }

    fn handle_response(&mut self, resp: Response, from: SocketAddr, now: Instant) -> Incoming {
        let (Some(via), Some(cseq)) = (resp.top_via(), resp.cseq()) else {
            return Incoming::StrayResponse { resp, from };
        };
        let key = TxKey::client(&via, &cseq.method);
        let Some(entry) = self.txs.get_mut(&key) else {
            return Incoming::StrayResponse { resp, from };
        };
        let handled = match &mut entry.tx {
            Tx::ClientInvite(t) => t.handle(resp, now),
            Tx::ClientNonInvite(t) => t.handle(resp, now),
            _ => return Incoming::StrayResponse { resp, from },
        };
        self.after(&key);
        match handled {
            Handled::PassUp(resp) => Incoming::Response { key, resp },
            Handled::Absorbed => Incoming::Absorbed,
        }
    }

    /// Starts a client transaction and sends `req` to `dest`. `req` must carry a top Via with a
    /// `z9hG4bK` branch; INVITE starts a client INVITE transaction, anything else a non-INVITE
    /// one. Never send ACK this way (use [`Self::send_stateless`]).
    pub fn send_request(&mut self, req: Request, dest: SocketAddr, now: Instant) -> TxKey {
        let via = req
            .top_via()
            .unwrap_or_else(|| Via::new("UDP", "invalid", None, ""));
        let method = req.cseq().map_or_else(|| req.method.clone(), |c| c.method);
        let key = TxKey::client(&via, &method);
        let tx = if req.method == Method::Invite {
            Tx::ClientInvite(ClientInvite::new(req, dest, self.cfg, now))
        } else {
            Tx::ClientNonInvite(ClientNonInvite::new(&req, dest, self.cfg, now))
        };
        self.insert(key.clone(), tx);
        key
    }

    /// Sends a response on a server transaction, to the request's source (Via received/rport).
    pub fn send_response(
        &mut self,
        key: &TxKey,
        resp: Response,
        now: Instant,
    ) -> Result<(), TxError> {
        let entry = self
            .txs
            .get_mut(key)
            .ok_or_else(|| TxError::UnknownTransaction(key.to_string()))?;
        let res = match &mut entry.tx {
            Tx::ServerInvite(t) => {
                let r = t.send_response(&resp, now);
                if r.is_ok() && resp.is_success() {
                    self.accepted.insert(t.dialog_key.clone(), key.clone());
                }
                r
            }
            Tx::ServerNonInvite(t) => t.send_response(&resp, now),
            _ => return Err(TxError::NotServer(key.to_string())),
        };
        self.after(key);
        res.map_err(|e| match e {
            TxError::AlreadyFinal(_) => TxError::AlreadyFinal(key.to_string()),
            e => e,
        })
    }

    /// Sends a message outside any transaction (ACK for a 2xx, a stateless 400...).
    pub fn send_stateless(&mut self, msg: &Message, dest: SocketAddr) {
        self.transmits.push_back(Transmit {
            dest,
            bytes: msg.to_bytes(),
        });
    }

    /// The server INVITE transaction a CANCEL targets (same branch and sent-by, §9.2).
    pub fn invite_for_cancel(&self, cancel: &Request) -> Option<TxKey> {
        let via = cancel.top_via()?;
        let key = TxKey::server_as(cancel, &via, Method::Invite);
        match self.txs.get(&key)?.tx {
            Tx::ServerInvite(_) => Some(key),
            _ => None,
        }
    }

    /// Fires every timer due at `now`.
    pub fn handle_timeout(&mut self, now: Instant) {
        while let Some(&Reverse((at, id))) = self.heap.peek() {
            if at > now {
                break;
            }
            self.heap.pop();
            let Some(key) = self.ids.get(&id).cloned() else {
                continue;
            };
            if let Some(entry) = self.txs.get_mut(&key) {
                if entry.scheduled == Some(at) {
                    entry.scheduled = None;
                }
                each!(&mut entry.tx, t => t.handle_timeout(now));
            }
            self.after(&key);
        }
    }

    /// The next deadline (possibly early: a spurious `handle_timeout` call is harmless).
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.heap.peek().map(|Reverse((at, _))| *at)
    }

    pub fn poll_transmit(&mut self) -> Option<Transmit> {
        self.transmits.pop_front()
    }

    pub fn poll_event(&mut self) -> Option<TxEvent> {
        self.events.pop_front()
    }

    /// Number of live transactions.
    pub fn len(&self) -> usize {
        self.txs.len()
    }

    pub fn is_empty(&self) -> bool {
        self.txs.is_empty()
    }

    fn insert(&mut self, key: TxKey, tx: Tx) {
        let id = self.next_id;
        self.next_id += 1;
        // A key collision (peer reusing a branch) replaces the old transaction.
        if let Some(old) = self.txs.insert(
            key.clone(),
            Entry {
                id,
                tx,
                scheduled: None,
            },
        ) {
            self.ids.remove(&old.id);
        }
        self.ids.insert(id, key.clone());
        self.after(&key);
    }

    /// Drains a transaction's output into the layer and reschedules or removes it.
    fn after(&mut self, key: &TxKey) {
        let Some(entry) = self.txs.get_mut(key) else {
            return;
        };
        while let Some(t) = each!(&mut entry.tx, m => m.poll_transmit()) {
            self.transmits.push_back(t);
        }
        while let Some(e) = each!(&mut entry.tx, m => m.poll_event()) {
            let key = key.clone();
            self.events.push_back(match e {
                MachineEvent::Timeout => TxEvent::Timeout { key },
                MachineEvent::NoAck => TxEvent::NoAck { key },
                MachineEvent::Terminated => TxEvent::Terminated { key },
            });
        }
        if each!(&entry.tx, m => m.is_terminated()) {
            let id = entry.id;
            if let Tx::ServerInvite(t) = &entry.tx {
                if self.accepted.get(&t.dialog_key) == Some(key) {
                    self.accepted.remove(&t.dialog_key);
                }
            }
            self.txs.remove(key);
            self.ids.remove(&id);
            return;
        }
        let next = each!(&entry.tx, m => m.poll_timeout());
        if let Some(at) = next {
            if entry.scheduled.is_none_or(|s| at < s) {
                entry.scheduled = Some(at);
                self.heap.push(Reverse((at, entry.id)));
            }
        }
    }
}

/// Where responses go (§18.2.2, RFC 3581): the source address if rport was asked for, else the
/// source IP (the `received` address) and the sent-by port.
/// Where a response to a request with top Via `via` received from `from` goes (RFC 3261
/// §18.2.2 for UDP, RFC 3581 rport).
pub fn response_dest(via: &Via, from: SocketAddr) -> SocketAddr {
    if via.rport().is_some() {
        return from;
    }
    let default_port = if via.transport == "TLS" { 5061 } else { 5060 };
    SocketAddr::new(from.ip(), via.port.unwrap_or(default_port))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sip::message::new_branch;
    use std::time::Duration;

    #[allow(clippy::disallowed_methods)]
    fn epoch() -> Instant {
        Instant::now()
    }

    const PEER: &str = "192.0.2.10:5060";
    const ME: &str = "192.0.2.1:5060";

    fn peer() -> SocketAddr {
        PEER.parse().unwrap()
    }

    fn request(method: Method, branch: &str, seq: u32) -> Request {
        let mut r = Request::new(method.clone(), "sip:bob@192.0.2.10");
        r.headers
            .push("Via", format!("SIP/2.0/UDP 192.0.2.1:5060;branch={branch}"));
        r.headers.push("Max-Forwards", "70");
        r.headers.push("From", "<sip:alice@192.0.2.1>;tag=a1");
        r.headers.push("To", "<sip:bob@192.0.2.10>");
        r.headers.push("Call-ID", "call-1");
        r.headers.push("CSeq", format!("{seq} {method}"));
        r
    }

    /// A request as received from PEER (its Via names PEER).
    fn incoming(method: Method, branch: &str, seq: u32) -> Request {
        let mut r = request(method, branch, seq);
        r.headers.set(
            "Via",
            format!("SIP/2.0/UDP 192.0.2.10:5060;branch={branch};rport"),
        );
        r
    }

    fn drain(l: &mut TransactionLayer) -> Vec<Transmit> {
        std::iter::from_fn(|| l.poll_transmit()).collect()
    }

    fn events(l: &mut TransactionLayer) -> Vec<TxEvent> {
        std::iter::from_fn(|| l.poll_event()).collect()
    }

    fn first_line(t: &Transmit) -> String {
        String::from_utf8_lossy(&t.bytes)
            .lines()
            .next()
            .unwrap_or("")
            .to_string()
    }

    /// Runs the layer from `t0` to `until` in virtual time, recording (ms offset, first line) of
    /// every transmit.
    fn run(l: &mut TransactionLayer, t0: Instant, until: Duration) -> Vec<(u128, String)> {
        let mut log = Vec::new();
        while let Some(at) = l.poll_timeout() {
            if at > t0 + until {
                break;
            }
            l.handle_timeout(at);
            for t in drain(l) {
                log.push(((at - t0).as_millis(), first_line(&t)));
            }
        }
        log
    }

    fn response_to(req: &Request, code: u16) -> Message {
        let mut r = Response::for_request(req, code);
        if code > 100 {
            r.set_to_tag("b1");
        }
        Message::Response(r)
    }

    #[test]
    fn client_invite_timer_a_and_b() {
        let t0 = epoch();
        let mut l = TransactionLayer::new(TimerConfig::default());
        let key = l.send_request(request(Method::Invite, &new_branch(), 1), peer(), t0);
        assert_eq!(drain(&mut l).len(), 1);
        let log = run(&mut l, t0, Duration::from_secs(40));
        let times: Vec<u128> = log.iter().map(|(t, _)| *t).collect();
        assert_eq!(times, [500, 1500, 3500, 7500, 15500, 31500]);
        assert!(log.iter().all(|(_, l)| l.starts_with("INVITE ")));
        assert_eq!(
            events(&mut l),
            [
                TxEvent::Timeout { key: key.clone() },
                TxEvent::Terminated { key }
            ]
        );
        assert_eq!(l.len(), 0);
    }

    #[test]
    fn client_invite_non_2xx_sends_ack() {
        let t0 = epoch();
        let mut l = TransactionLayer::new(TimerConfig::default());
        let inv = request(Method::Invite, "z9hG4bKabc", 5);
        let key = l.send_request(inv.clone(), peer(), t0);
        drain(&mut l);
        let r = l.handle(response_to(&inv, 100), peer(), t0);
        assert!(matches!(r, Incoming::Response { resp, .. } if resp.code == 100));
        // no more INVITE retransmits once Proceeding
        assert!(run(&mut l, t0, Duration::from_secs(10)).is_empty());
        let r = l.handle(response_to(&inv, 180), peer(), t0);
        assert!(matches!(r, Incoming::Response { .. }));
        assert!(matches!(
            l.handle(response_to(&inv, 180), peer(), t0),
            Incoming::Absorbed
        ));
        let r = l.handle(response_to(&inv, 486), peer(), t0);
        assert!(matches!(r, Incoming::Response { resp, .. } if resp.code == 486));
        let tx = drain(&mut l);
        assert_eq!(tx.len(), 1);
        let Message::Request(ack) = Message::parse(&tx[0].bytes).unwrap() else {
            panic!()
        };
        assert_eq!(ack.method, Method::Ack);
        assert_eq!(ack.uri, inv.uri);
        assert_eq!(ack.top_via().unwrap().branch(), Some("z9hG4bKabc"));
        assert_eq!(ack.cseq().unwrap().to_string(), "5 ACK");
        assert_eq!(ack.to().unwrap().tag(), Some("b1"));
        // retransmitted 486: absorbed, ACK resent
        assert!(matches!(
            l.handle(response_to(&inv, 486), peer(), t0),
            Incoming::Absorbed
        ));
        assert_eq!(drain(&mut l).len(), 1);
        // Timer D
        run(&mut l, t0, Duration::from_secs(33));
        assert_eq!(events(&mut l), [TxEvent::Terminated { key }]);
    }

    #[test]
    fn client_invite_2xx_accepted_passes_copies() {
        let t0 = epoch();
        let mut l = TransactionLayer::new(TimerConfig::default());
        let inv = request(Method::Invite, "z9hG4bKok", 1);
        let key = l.send_request(inv.clone(), peer(), t0);
        drain(&mut l);
        for _ in 0..3 {
            let r = l.handle(response_to(&inv, 200), peer(), t0);
            assert!(
                matches!(r, Incoming::Response { ref key, .. } if key.method() == &Method::Invite),
                "{r:?}"
            );
        }
        assert!(
            drain(&mut l).is_empty(),
            "no ACK for 2xx from the transaction"
        );
        assert!(matches!(
            l.handle(response_to(&inv, 500), peer(), t0),
            Incoming::Absorbed
        ));
        run(&mut l, t0, Duration::from_secs(31));
        assert_eq!(l.len(), 1);
        run(&mut l, t0, Duration::from_secs(33));
        assert_eq!(events(&mut l), [TxEvent::Terminated { key }]);
        assert!(matches!(
            l.handle(response_to(&inv, 200), peer(), t0),
            Incoming::StrayResponse { .. }
        ));
    }

    #[test]
    fn client_non_invite_timer_e_and_f() {
        let t0 = epoch();
        let mut l = TransactionLayer::new(TimerConfig::default());
        let key = l.send_request(request(Method::Options, &new_branch(), 1), peer(), t0);
        drain(&mut l);
        let times: Vec<u128> = run(&mut l, t0, Duration::from_secs(40))
            .iter()
            .map(|(t, _)| *t)
            .collect();
        assert_eq!(
            times,
            [500, 1500, 3500, 7500, 11500, 15500, 19500, 23500, 27500, 31500]
        );
        assert_eq!(
            events(&mut l),
            [
                TxEvent::Timeout { key: key.clone() },
                TxEvent::Terminated { key }
            ]
        );
    }

    #[test]
    fn client_non_invite_proceeding_and_completed() {
        let t0 = epoch();
        let mut l = TransactionLayer::new(TimerConfig::default());
        let bye = request(Method::Bye, "z9hG4bKbye", 2);
        let key = l.send_request(bye.clone(), peer(), t0);
        drain(&mut l);
        // retransmits at 0.5 and 1.5 s, then a 100 at 2 s: E continues every T2
        let log = run(&mut l, t0, Duration::from_millis(1900));
        assert_eq!(log.len(), 2);
        assert!(matches!(
            l.handle(response_to(&bye, 100), peer(), t0 + Duration::from_secs(2)),
            Incoming::Response { .. }
        ));
        let times: Vec<u128> = run(&mut l, t0, Duration::from_millis(12000))
            .iter()
            .map(|(t, _)| *t)
            .collect();
        assert_eq!(times, [3500, 7500, 11500]);
        let t = t0 + Duration::from_secs(12);
        assert!(matches!(
            l.handle(response_to(&bye, 200), peer(), t),
            Incoming::Response { .. }
        ));
        assert!(matches!(
            l.handle(response_to(&bye, 200), peer(), t),
            Incoming::Absorbed
        ));
        assert!(run(&mut l, t0, Duration::from_millis(16_999)).is_empty());
        assert_eq!(l.len(), 1);
        run(&mut l, t0, Duration::from_secs(17));
        assert_eq!(events(&mut l), [TxEvent::Terminated { key }]);
    }

    #[test]
    fn server_invite_non_2xx_g_h_and_ack() {
        let t0 = epoch();
        let mut l = TransactionLayer::new(TimerConfig::default());
        let inv = incoming(Method::Invite, "z9hG4bKsrv", 1);
        let Incoming::Request { key, req, from } =
            l.handle(Message::Request(inv.clone()), peer(), t0)
        else {
            panic!()
        };
        assert_eq!(from, peer());
        // 100 Trying at once, to the source (rport)
        let tx = drain(&mut l);
        assert_eq!(tx.len(), 1);
        assert_eq!(first_line(&tx[0]), "SIP/2.0 100 Trying");
        assert_eq!(tx[0].dest, peer());
        let v = req.top_via().unwrap();
        assert_eq!(v.rport(), Some(Some(5060)));
        assert_eq!(v.received(), Some("192.0.2.10"));
        // retransmitted INVITE: last response resent, absorbed
        assert!(matches!(
            l.handle(Message::Request(inv.clone()), peer(), t0),
            Incoming::Absorbed
        ));
        assert_eq!(first_line(&drain(&mut l)[0]), "SIP/2.0 100 Trying");
        let mut busy = Response::for_request(&req, 486);
        busy.set_to_tag("b1");
        l.send_response(&key, busy.clone(), t0).unwrap();
        assert_eq!(first_line(&drain(&mut l)[0]), "SIP/2.0 486 Busy Here");
        assert_eq!(
            l.send_response(&key, busy, t0),
            Err(TxError::AlreadyFinal(key.to_string()))
        );
        // Timer G: 0.5, 1.5, 3.5, 7.5, 11.5 ... H at 32 s
        let times: Vec<u128> = run(&mut l, t0, Duration::from_secs(40))
            .iter()
            .map(|(t, _)| *t)
            .collect();
        assert_eq!(
            times,
            [500, 1500, 3500, 7500, 11500, 15500, 19500, 23500, 27500, 31500]
        );
        assert_eq!(
            events(&mut l),
            [
                TxEvent::NoAck { key: key.clone() },
                TxEvent::Terminated { key }
            ]
        );

        // again, this time ACKed: ACK absorbed, G stops, I terminates after T4
        let mut l = TransactionLayer::new(TimerConfig::default());
        let Incoming::Request { key, req, .. } =
            l.handle(Message::Request(inv.clone()), peer(), t0)
        else {
            panic!()
        };
        let mut busy = Response::for_request(&req, 486);
        busy.set_to_tag("b1");
        l.send_response(&key, busy, t0).unwrap();
        drain(&mut l);
        let mut ack = incoming(Method::Ack, "z9hG4bKsrv", 1);
        ack.headers.set("To", "<sip:bob@192.0.2.10>;tag=b1");
        let t = t0 + Duration::from_millis(600);
        run(&mut l, t0, Duration::from_millis(600));
        assert!(matches!(
            l.handle(Message::Request(ack.clone()), peer(), t),
            Incoming::Absorbed
        ));
        assert!(matches!(
            l.handle(Message::Request(ack), peer(), t),
            Incoming::Absorbed
        ));
        assert!(run(&mut l, t0, Duration::from_secs(5)).is_empty());
        assert_eq!(l.len(), 1);
        run(&mut l, t0, Duration::from_millis(5600));
        assert_eq!(events(&mut l), [TxEvent::Terminated { key }]);
    }

    #[test]
    fn server_invite_2xx_retransmitted_until_ack() {
        let t0 = epoch();
        let mut l = TransactionLayer::new(TimerConfig::default());
        let inv = incoming(Method::Invite, "z9hG4bKsrv2", 7);
        let Incoming::Request { key, req, .. } =
            l.handle(Message::Request(inv.clone()), peer(), t0)
        else {
            panic!()
        };
        drain(&mut l);
        let mut ok = Response::for_request(&req, 200);
        ok.set_to_tag("b1");
        l.send_response(&key, ok, t0).unwrap();
        assert_eq!(first_line(&drain(&mut l)[0]), "SIP/2.0 200 OK");
        let times: Vec<u128> = run(&mut l, t0, Duration::from_secs(4))
            .iter()
            .map(|(t, _)| *t)
            .collect();
        assert_eq!(times, [500, 1500, 3500]);
        // INVITE retransmission in Accepted: absorbed
        assert!(matches!(
            l.handle(Message::Request(inv.clone()), peer(), t0),
            Incoming::Absorbed
        ));
        // ACK for the 2xx: new branch, same Call-ID and CSeq number: stops retransmits, passed up
        let ack = incoming(Method::Ack, "z9hG4bKnewbranch", 7);
        let t = t0 + Duration::from_secs(4);
        assert!(matches!(
            l.handle(Message::Request(ack), peer(), t),
            Incoming::Ack { .. }
        ));
        assert!(run(&mut l, t0, Duration::from_secs(40)).is_empty());
        assert_eq!(events(&mut l), [TxEvent::Terminated { key }]);

        // without an ACK: retransmits until 64*T1, then NoAck
        let mut l = TransactionLayer::new(TimerConfig::default());
        let Incoming::Request { key, req, .. } = l.handle(Message::Request(inv), peer(), t0) else {
            panic!()
        };
        let mut ok = Response::for_request(&req, 200);
        ok.set_to_tag("b1");
        l.send_response(&key, ok, t0).unwrap();
        drain(&mut l);
        let log = run(&mut l, t0, Duration::from_secs(40));
        assert_eq!(log.len(), 10);
        assert_eq!(
            events(&mut l),
            [
                TxEvent::NoAck { key: key.clone() },
                TxEvent::Terminated { key }
            ]
        );
    }

    #[test]
    fn server_non_invite_absorbs_and_j() {
        let t0 = epoch();
        let mut l = TransactionLayer::new(TimerConfig::default());
        let opt = incoming(Method::Options, "z9hG4bKo", 3);
        let Incoming::Request { key, req, .. } =
            l.handle(Message::Request(opt.clone()), peer(), t0)
        else {
            panic!()
        };
        assert!(drain(&mut l).is_empty(), "no automatic 100 for non-INVITE");
        assert!(matches!(
            l.handle(Message::Request(opt.clone()), peer(), t0),
            Incoming::Absorbed
        ));
        assert!(drain(&mut l).is_empty());
        l.send_response(&key, Response::for_request(&req, 200), t0)
            .unwrap();
        assert_eq!(drain(&mut l).len(), 1);
        assert!(matches!(
            l.handle(Message::Request(opt), peer(), t0),
            Incoming::Absorbed
        ));
        assert_eq!(first_line(&drain(&mut l)[0]), "SIP/2.0 200 OK");
        assert!(run(&mut l, t0, Duration::from_millis(31_999)).is_empty());
        assert_eq!(l.len(), 1);
        run(&mut l, t0, Duration::from_secs(32));
        assert_eq!(events(&mut l), [TxEvent::Terminated { key }]);
    }

    #[test]
    fn cancel_matches_its_invite() {
        let t0 = epoch();
        let mut l = TransactionLayer::new(TimerConfig::default());
        let inv = incoming(Method::Invite, "z9hG4bKc1", 1);
        let Incoming::Request { key: ikey, .. } = l.handle(Message::Request(inv), peer(), t0)
        else {
            panic!()
        };
        let cancel = incoming(Method::Cancel, "z9hG4bKc1", 1);
        let Incoming::Request { key: ckey, req, .. } =
            l.handle(Message::Request(cancel), peer(), t0)
        else {
            panic!()
        };
        assert_ne!(ikey, ckey);
        assert_eq!(l.invite_for_cancel(&req), Some(ikey));
        let other = incoming(Method::Cancel, "z9hG4bKzz", 1);
        assert_eq!(l.invite_for_cancel(&other), None);
    }

    #[test]
    fn rfc2543_fallback_matching() {
        let t0 = epoch();
        let mut l = TransactionLayer::new(TimerConfig::default());
        let mut inv = incoming(Method::Invite, "x", 1);
        inv.headers.set("Via", "SIP/2.0/UDP 192.0.2.10:5060");
        let Incoming::Request { key, req, .. } =
            l.handle(Message::Request(inv.clone()), peer(), t0)
        else {
            panic!()
        };
        drain(&mut l);
        assert!(matches!(
            l.handle(Message::Request(inv.clone()), peer(), t0),
            Incoming::Absorbed
        ));
        let mut busy = Response::for_request(&req, 486);
        busy.set_to_tag("b1");
        l.send_response(&key, busy, t0).unwrap();
        let mut ack = inv.clone();
        ack.method = Method::Ack;
        ack.headers.set("CSeq", "1 ACK");
        ack.headers.set("To", "<sip:bob@192.0.2.10>;tag=b1");
        assert!(matches!(
            l.handle(Message::Request(ack), peer(), t0),
            Incoming::Absorbed
        ));
    }

    #[test]
    fn responses_and_acks_without_tx() {
        let t0 = epoch();
        let mut l = TransactionLayer::new(TimerConfig::default());
        let r = request(Method::Invite, "z9hG4bKnone", 1);
        assert!(matches!(
            l.handle(response_to(&r, 200), peer(), t0),
            Incoming::StrayResponse { .. }
        ));
        let ack = incoming(Method::Ack, "z9hG4bKnone2", 1);
        assert!(matches!(
            l.handle(Message::Request(ack), peer(), t0),
            Incoming::Ack { .. }
        ));
        assert_eq!(l.len(), 0);
        let bogus = TxKey::seal(KeyParts {
            branch: "x".into(),
            sent_by: ME.into(),
            method: Method::Bye,
            server: true,
            request: String::new(),
        });
        assert!(matches!(
            l.send_response(&bogus, Response::new(200), t0),
            Err(TxError::UnknownTransaction(_))
        ));
        l.send_stateless(
            &Message::Request(request(Method::Ack, "z9hG4bKa", 1)),
            peer(),
        );
        assert_eq!(drain(&mut l).len(), 1);
    }

    #[test]
    fn branch_collision_is_a_new_transaction() {
        let mut l = TransactionLayer::new(TimerConfig::default());
        let t0 = epoch();
        let a = incoming(Method::Options, "z9hG4bKsame", 1);
        let mut b = a.clone();
        b.headers.set("Call-ID", "another-call");
        assert!(matches!(
            l.handle(Message::Request(a.clone()), peer(), t0),
            Incoming::Request { .. }
        ));
        // a true retransmission is absorbed, a collision is a new request
        assert!(matches!(
            l.handle(Message::Request(a), peer(), t0),
            Incoming::Absorbed
        ));
        assert!(matches!(
            l.handle(Message::Request(b), peer(), t0),
            Incoming::Request { .. }
        ));
    }

    #[test]
    fn response_destination_rules() {
        let from: SocketAddr = "203.0.113.5:40000".parse().unwrap();
        let v = Via::parse("SIP/2.0/UDP 10.0.0.2:5062;branch=z9hG4bK1").unwrap();
        assert_eq!(response_dest(&v, from), "203.0.113.5:5062".parse().unwrap());
        let v = Via::parse("SIP/2.0/UDP 10.0.0.2;branch=z9hG4bK1;rport").unwrap();
        assert_eq!(response_dest(&v, from), from);
        let v = Via::parse("SIP/2.0/UDP host;branch=z9hG4bK1").unwrap();
        assert_eq!(response_dest(&v, from), "203.0.113.5:5060".parse().unwrap());
    }

    #[test]
    fn reliable_transports_never_retransmit_and_end_at_once() {
        let tcp = |mut r: Request| {
            let v = r.headers.get("Via").unwrap().replace("/UDP", "/TCP");
            r.headers.set("Via", v);
            r
        };
        let t0 = epoch();
        // Client INVITE and BYE over TCP: one copy each, no Timer A/E; Timer B/F still runs.
        let mut l = TransactionLayer::new(TimerConfig::default());
        let inv = tcp(request(Method::Invite, &new_branch(), 1));
        let key = l.send_request(inv.clone(), peer(), t0);
        l.send_request(tcp(request(Method::Bye, &new_branch(), 2)), peer(), t0);
        assert_eq!(drain(&mut l).len(), 2);
        let log = run(&mut l, t0, Duration::from_secs(40));
        assert!(log.is_empty(), "retransmitted over TCP: {log:?}");
        let ev = events(&mut l);
        assert_eq!(
            ev.iter()
                .filter(|e| matches!(e, TxEvent::Timeout { .. }))
                .count(),
            2,
            "{ev:?}"
        );
        // A non-2xx final over TCP: ACK once, and the transaction ends at once (Timer D = 0).
        let mut l = TransactionLayer::new(TimerConfig::default());
        let key2 = l.send_request(inv.clone(), peer(), t0);
        drain(&mut l);
        assert!(matches!(
            l.handle(response_to(&inv, 486), peer(), t0),
            Incoming::Response { .. }
        ));
        let acks = drain(&mut l);
        assert_eq!(acks.len(), 1);
        assert!(first_line(&acks[0]).starts_with("ACK "));
        l.handle_timeout(t0);
        assert!(events(&mut l).contains(&TxEvent::Terminated { key: key2 }));
        assert!(l.is_empty());
        let _ = key;

        // Server side over TCP: a 486 is sent once (no Timer G) and an OPTIONS transaction
        // ends as soon as it is answered (Timer J = 0).
        let mut l = TransactionLayer::new(TimerConfig::default());
        let mut req = incoming(Method::Invite, &new_branch(), 1);
        let v = req.headers.get("Via").unwrap().replace("/UDP", "/TCP");
        req.headers.set("Via", v);
        let Incoming::Request { key, req, .. } = l.handle(Message::Request(req), peer(), t0) else {
            panic!("new server transaction")
        };
        drain(&mut l);
        l.send_response(&key, Response::for_request(&req, 486), t0)
            .unwrap();
        assert_eq!(drain(&mut l).len(), 1);
        let log = run(&mut l, t0, Duration::from_secs(10));
        assert!(log.is_empty(), "486 retransmitted over TCP: {log:?}");
        let mut opt = incoming(Method::Options, &new_branch(), 5);
        let v = opt.headers.get("Via").unwrap().replace("/UDP", "/TLS");
        opt.headers.set("Via", v);
        let Incoming::Request { key, req, .. } = l.handle(Message::Request(opt), peer(), t0) else {
            panic!("new server transaction")
        };
        l.send_response(&key, Response::for_request(&req, 200), t0)
            .unwrap();
        l.handle_timeout(t0);
        assert!(events(&mut l).contains(&TxEvent::Terminated { key }));
    }
}
