//! The bench's SIP user agents: a sans-IO engine that registers users, places calls, answers
//! the calls the gateway routes to bench users, and hangs up.
//!
//! [`Engine`] follows the workspace run-loop contract: feed it datagrams
//! ([`Engine::handle_datagram`]) and the passing of time ([`Engine::handle_timeout`]), start
//! work with [`Engine::register_all`], [`Engine::place_call`] and [`Engine::hang_up`], then
//! drain [`Engine::poll_transmit`] and [`Engine::poll_event`] and sleep until
//! [`Engine::poll_timeout`]. It never reads the clock and owns no socket: the driver
//! (`bench::run`) does, and the unit tests below drive it with virtual time against a scripted
//! gateway.
//!
//! One engine serves many local SIP sockets (`UaConfig::locals`): a call leaves from the socket
//! it is given so that load spreads over several loopback source addresses (a gateway's
//! per-source rate limit then sees many phones, not one flood).
//!
//! Reliability is that of RFC 3261 over UDP, reduced to what a load generator needs:
//! INVITE/REGISTER/BYE are retransmitted (timer A/E doubling from T1 = 500 ms) until a response
//! arrives or the setup timeout expires; the callee's 200 OK is retransmitted until the ACK
//! comes (timer G); retransmitted requests from the gateway get the last response again.

use std::collections::{BinaryHeap, HashMap, VecDeque};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use control::sdp::SessionDescription;
use control::sip::digest::{self, Algorithm};
use control::sip::{Message, Method, NameAddr, Request, Response, Uri};

/// RFC 3261 T1.
const T1: Duration = Duration::from_millis(500);
/// Retransmission interval cap (T2).
const T2: Duration = Duration::from_secs(4);

/// A bench call (one caller-side dialog), numbered in placement order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct CallId(pub u64);

/// A call the gateway delivered to a bench user (callee side).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct LegId(pub u64);

/// A user account the bench registers and calls from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Account {
    pub name: String,
    pub password: String,
}

/// Voice codec offered and sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Codec {
    Pcmu,
    Pcma,
    G729,
}

impl Codec {
    /// Static RTP payload type.
    pub fn pt(self) -> u8 {
        match self {
            Codec::Pcmu => 0,
            Codec::Pcma => 8,
            Codec::G729 => 18,
        }
    }
    /// SDP encoding name.
    pub fn name(self) -> &'static str {
        match self {
            Codec::Pcmu => "PCMU",
            Codec::Pcma => "PCMA",
            Codec::G729 => "G729",
        }
    }
}

/// Engine configuration.
#[derive(Debug, Clone)]
pub struct UaConfig {
    /// The gateway's SIP address: every request goes there.
    pub target: SocketAddr,
    /// Local SIP socket addresses, indexed by the `local` of [`Transmit`] and
    /// [`Engine::handle_datagram`].
    pub locals: Vec<SocketAddr>,
    /// Users to register (empty in trunk mode).
    pub users: Vec<Account>,
    /// Trunk mode: no REGISTER, no digest answer to a 401/407.
    pub trunk: bool,
    pub codec: Codec,
    /// Offer RFC 4733 telephone-event (payload type 101).
    pub dtmf: bool,
    /// The addresses the bench receives RTP on, one per media thread; a call's SDP names
    /// `media[media_slot(session)]` (see [`Engine::media_slot`]). Never empty.
    pub media: Vec<SocketAddr>,
    /// A call not answered within this is abandoned (failure "timeout").
    pub setup_timeout: Duration,
}

/// A datagram to send from local socket `local` to `to`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Transmit {
    pub local: usize,
    pub to: SocketAddr,
    pub data: Vec<u8>,
}

/// Why a call failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Failure {
    /// A final SIP status >= 300 (after the one digest retry).
    Status(u16),
    /// No final answer within the setup timeout.
    Timeout,
    /// The 200 OK carried no usable SDP answer.
    BadAnswer,
}

impl std::fmt::Display for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Failure::Status(c) => write!(f, "{c}"),
            Failure::Timeout => f.write_str("timeout"),
            Failure::BadAnswer => f.write_str("bad-sdp"),
        }
    }
}

/// What happened, in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// A user's REGISTER got its 200.
    Registered { user: usize },
    /// A user's REGISTER failed.
    RegisterFailed { user: usize, failure: Failure },
    /// The caller got a 2xx with an SDP answer: send media to `remote_media`.
    Answered {
        call: CallId,
        setup: Duration,
        remote_media: SocketAddr,
    },
    /// The call never got answered.
    Failed { call: CallId, failure: Failure },
    /// The caller's dialog ended (our BYE answered or timed out, or the gateway's BYE).
    Ended { call: CallId, by_gateway: bool },
    /// The gateway delivered a call to bench user `user` and we answered it.
    Incoming {
        leg: LegId,
        user: String,
        remote_media: SocketAddr,
    },
    /// The gateway ended a delivered call.
    IncomingEnded { leg: LegId },
}

/// A client transaction being retransmitted.
#[derive(Debug)]
struct Pending {
    data: Vec<u8>,
    interval: Duration,
    next: Instant,
    /// Provisional response seen (INVITE): stop retransmitting, keep the deadline.
    quiet: bool,
    deadline: Instant,
}

#[derive(Debug, PartialEq, Eq)]
enum CallState {
    Inviting { authed: bool },
    Up,
    Byeing,
}

#[derive(Debug)]
struct Call {
    local: usize,
    user: Option<usize>,
    dial: String,
    sip_call_id: String,
    from_tag: String,
    to: String,
    remote_target: String,
    cseq: u32,
    state: CallState,
    started: Instant,
    pending: Option<Pending>,
    /// Last ACK for a 2xx, resent when the 2xx is retransmitted.
    ack: Option<Vec<u8>>,
    invite: Request,
}

#[derive(Debug)]
struct Incoming {
    leg: LegId,
    local: usize,
    to: SocketAddr,
    response: Vec<u8>,
    interval: Duration,
    next: Option<Instant>,
    deadline: Instant,
}

/// What a REGISTER of a user is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum RegPhase {
    /// `Contact: *`, `Expires: 0`: drop bindings a previous run left behind (the gateway would
    /// otherwise deliver calls to dead sockets).
    Clear,
    /// Bind our contact.
    Bind,
    /// Remove our contact at the end of the run.
    Unbind,
}

#[derive(Debug)]
struct Reg {
    user: usize,
    phase: RegPhase,
    local: usize,
    sip_call_id: String,
    cseq: u32,
    authed: bool,
    pending: Option<Pending>,
}

/// Timer owners in the heap (lazy deletion: an entry whose owner is gone or whose time moved is
/// skipped).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Owner {
    Call(u64),
    Leg(u64),
    Reg(usize),
}

/// The SIP engine (see the module documentation for the run-loop contract).
#[derive(Debug)]
pub struct Engine {
    cfg: UaConfig,
    calls: HashMap<u64, Call>,
    by_sip_id: HashMap<String, u64>,
    legs: HashMap<String, Incoming>,
    regs: Vec<Reg>,
    timers: BinaryHeap<std::cmp::Reverse<(Instant, Owner)>>,
    transmits: VecDeque<Transmit>,
    events: VecDeque<Event>,
    next_call: u64,
    next_leg: u64,
    nc: u32,
    /// Recently ended callee legs (Call-ID), so a retransmitted BYE still gets 200.
    ended_legs: VecDeque<String>,
}

impl Engine {
    pub fn new(cfg: UaConfig) -> Engine {
        Engine {
            cfg,
            calls: HashMap::new(),
            by_sip_id: HashMap::new(),
            legs: HashMap::new(),
            regs: Vec::new(),
            timers: BinaryHeap::new(),
            transmits: VecDeque::new(),
            events: VecDeque::new(),
            next_call: 0,
            next_leg: 0,
            nc: 0,
            ended_legs: VecDeque::new(),
        }
    }

    /// REGISTER transactions still waiting for a final response.
    pub fn registrations_pending(&self) -> usize {
        self.regs.iter().filter(|r| r.pending.is_some()).count()
    }

    /// Calls placed and not yet ended.
    pub fn active_calls(&self) -> usize {
        self.calls.len()
    }

    /// Registers every configured user (user `i` from local socket `i % locals`): first a
    /// `Contact: *` removal of stale bindings, then our contact. [`Event::Registered`] or
    /// [`Event::RegisterFailed`] follows for each.
    pub fn register_all(&mut self, now: Instant) {
        for user in 0..self.cfg.users.len() {
            let local = user % self.cfg.locals.len().max(1);
            self.regs.push(Reg {
                user,
                phase: RegPhase::Clear,
                local,
                sip_call_id: format!("reg-{}", control::sip::new_call_id()),
                cseq: 1,
                authed: false,
                pending: None,
            });
            let req = self.register_request(user, None);
            self.send_request(Owner::Reg(user), local, req, now);
        }
    }

    /// Removes the bindings [`Engine::register_all`] made (best effort, no event).
    pub fn unregister_all(&mut self, now: Instant) {
        for i in 0..self.regs.len() {
            let (user, local) = (self.regs[i].user, self.regs[i].local);
            let r = &mut self.regs[i];
            r.phase = RegPhase::Unbind;
            r.authed = false;
            r.cseq += 1;
            let req = self.register_request(user, None);
            self.send_request(Owner::Reg(user), local, req, now);
        }
    }

    /// Places a call from `user` (an index into `users`, `None` in trunk mode) to `dial`,
    /// leaving from local socket `local`.
    pub fn place_call(
        &mut self,
        user: Option<usize>,
        dial: &str,
        local: usize,
        now: Instant,
    ) -> CallId {
        let id = self.next_call;
        self.next_call += 1;
        let local = local % self.cfg.locals.len().max(1);
        let laddr = self.cfg.locals[local];
        let from_user = user
            .and_then(|u| self.cfg.users.get(u))
            .map_or("bench", |a| a.name.as_str())
            .to_string();
        let host = self.cfg.target.ip();
        let to = format!("<sip:{dial}@{host}>");
        let sip_call_id = format!("{}@bench", control::sip::new_call_id());
        let from_tag = control::sip::new_tag();
        let mut invite = Request::new(Method::Invite, format!("sip:{dial}@{}", self.cfg.target));
        invite
            .headers
            .push("From", format!("<sip:{from_user}@{host}>;tag={from_tag}"));
        invite.headers.push("To", to.clone());
        invite.headers.push("Call-ID", sip_call_id.clone());
        invite.headers.push("CSeq", "1 INVITE");
        invite
            .headers
            .push("Contact", format!("<sip:{from_user}@{laddr}>"));
        invite.headers.push("Max-Forwards", "70");
        invite.headers.push("User-Agent", "tandem-bench");
        invite.headers.push("Content-Type", "application/sdp");
        invite.body = self.sdp(id).into_bytes();
        self.by_sip_id.insert(sip_call_id.clone(), id);
        self.calls.insert(
            id,
            Call {
                local,
                user,
                dial: dial.to_string(),
                sip_call_id,
                from_tag,
                to,
                remote_target: String::new(),
                cseq: 1,
                state: CallState::Inviting { authed: false },
                started: now,
                pending: None,
                ack: None,
                invite: invite.clone(),
            },
        );
        self.send_request(Owner::Call(id), local, invite, now);
        CallId(id)
    }

    /// Hangs up an answered call (BYE). Calls still ringing are left to their timeout.
    pub fn hang_up(&mut self, call: CallId, now: Instant) {
        let Some(c) = self.calls.get_mut(&call.0) else {
            return;
        };
        if c.state != CallState::Up {
            return;
        }
        c.state = CallState::Byeing;
        c.cseq += 1;
        let mut bye = Request::new(Method::Bye, c.remote_target.clone());
        bye.headers.push(
            "From",
            format!(
                "<sip:{}@{}>;tag={}",
                c.user
                    .and_then(|u| self.cfg.users.get(u))
                    .map_or("bench", |a| a.name.as_str()),
                self.cfg.target.ip(),
                c.from_tag
            ),
        );
        bye.headers.push("To", c.to.clone());
        bye.headers.push("Call-ID", c.sip_call_id.clone());
        bye.headers.push("CSeq", format!("{} BYE", c.cseq));
        bye.headers.push("Max-Forwards", "70");
        let local = c.local;
        self.send_request(Owner::Call(call.0), local, bye, now);
    }

    /// Handles one datagram received on local socket `local` from `from`. Garbage is ignored.
    pub fn handle_datagram(&mut self, local: usize, from: SocketAddr, data: &[u8], now: Instant) {
        match Message::parse(data) {
            Ok(Message::Response(r)) => self.handle_response(r, now),
            Ok(Message::Request(r)) => self.handle_request(local, from, r, now),
            Err(_) => {}
        }
    }

    /// Runs retransmissions and timeouts due at `now`.
    pub fn handle_timeout(&mut self, now: Instant) {
        while let Some(std::cmp::Reverse((at, owner))) = self.timers.peek().copied() {
            if at > now {
                break;
            }
            self.timers.pop();
            match owner {
                Owner::Call(id) => self.call_timer(id, now),
                Owner::Leg(_) => self.leg_timers(now),
                Owner::Reg(u) => self.reg_timer(u, now),
            }
        }
    }

    /// The next instant [`Engine::handle_timeout`] has work (may be in the past).
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.timers.peek().map(|r| r.0 .0)
    }

    pub fn poll_transmit(&mut self) -> Option<Transmit> {
        self.transmits.pop_front()
    }

    pub fn poll_event(&mut self) -> Option<Event> {
        self.events.pop_front()
    }

    /// Which media address (and so which media thread) SDP session `session` uses: the
    /// caller side of call `c` is session `c.0`, the callee side of leg `l` is
    /// [`callee_session`]`(l)`.
    pub fn media_slot(&self, session: u64) -> usize {
        (session % self.cfg.media.len().max(1) as u64) as usize
    }

    fn sdp(&self, session: u64) -> String {
        let m = self
            .cfg
            .media
            .get(self.media_slot(session))
            .copied()
            .unwrap_or(SocketAddr::from(([127, 0, 0, 1], 9)));
        let ip = m.ip();
        let port = m.port();
        let c = self.cfg.codec;
        let (fmts, mut extra) = if self.cfg.dtmf {
            (
                format!("{} 101", c.pt()),
                "a=rtpmap:101 telephone-event/8000\r\na=fmtp:101 0-15\r\n".to_string(),
            )
        } else {
            (c.pt().to_string(), String::new())
        };
        if c == Codec::G729 {
            // No Annex B (VAD/CNG): the bench sends a frame every 10 ms.
            extra.insert_str(0, "a=fmtp:18 annexb=no\r\n");
        }
        format!(
            "v=0\r\no=bench {session} 1 IN IP4 {ip}\r\ns=tandem-bench\r\nc=IN IP4 {ip}\r\n\
             t=0 0\r\nm=audio {port} RTP/AVP {fmts}\r\na=rtpmap:{} {}/8000\r\n{extra}\
             a=ptime:20\r\na=sendrecv\r\n",
            c.pt(),
            c.name()
        )
    }

    fn register_request(&mut self, user: usize, chal: Option<&Response>) -> Request {
        let Some(reg) = self.regs.iter_mut().find(|r| r.user == user) else {
            return Request::new(Method::Register, "sip:invalid");
        };
        let acct = &self.cfg.users[user];
        let laddr = self.cfg.locals[reg.local];
        let host = self.cfg.target.ip();
        let mut r = Request::new(Method::Register, format!("sip:{}", self.cfg.target));
        r.headers
            .push("From", format!("<sip:{}@{host}>;tag=r{}", acct.name, user));
        r.headers.push("To", format!("<sip:{}@{host}>", acct.name));
        r.headers.push("Call-ID", reg.sip_call_id.clone());
        r.headers.push("CSeq", format!("{} REGISTER", reg.cseq));
        let (contact, expires) = match reg.phase {
            RegPhase::Clear => ("*".to_string(), "0"),
            RegPhase::Bind => (format!("<sip:{}@{laddr}>", acct.name), "3600"),
            RegPhase::Unbind => (format!("<sip:{}@{laddr}>", acct.name), "0"),
        };
        r.headers.push("Contact", contact);
        r.headers.push("Expires", expires);
        r.headers.push("Max-Forwards", "70");
        r.headers.push("User-Agent", "tandem-bench");
        if let Some(ch) = chal {
            let (name, pw) = (acct.name.clone(), acct.password.clone());
            self.nc += 1;
            if let Some(v) = authorization(ch, &name, &pw, "REGISTER", &r.uri, self.nc) {
                let h = if ch.code == 407 {
                    "Proxy-Authorization"
                } else {
                    "Authorization"
                };
                r.headers.push(h, v);
            }
        }
        r
    }

    /// Adds a Via and queues the request with retransmission state for `owner`.
    fn send_request(&mut self, owner: Owner, local: usize, mut req: Request, now: Instant) {
        let laddr = self.cfg.locals[local];
        req.headers.push_front(
            "Via",
            format!(
                "SIP/2.0/UDP {laddr};branch={};rport",
                control::sip::new_branch()
            ),
        );
        let data = req.to_bytes();
        let deadline = now + self.cfg.setup_timeout;
        let p = Pending {
            data: data.clone(),
            interval: T1,
            next: now + T1,
            quiet: false,
            deadline,
        };
        self.timers.push(std::cmp::Reverse((p.next, owner)));
        match owner {
            Owner::Call(id) => {
                if let Some(c) = self.calls.get_mut(&id) {
                    c.pending = Some(p);
                }
            }
            Owner::Reg(u) => {
                if let Some(r) = self.regs.iter_mut().find(|r| r.user == u) {
                    r.pending = Some(p);
                }
            }
            Owner::Leg(_) => {}
        }
        self.transmits.push_back(Transmit {
            local,
            to: self.cfg.target,
            data,
        });
    }

    /// Retransmit or time out a pending transaction; returns whether it timed out.
    fn step_pending(
        p: &mut Pending,
        owner: Owner,
        local: usize,
        to: SocketAddr,
        now: Instant,
        timers: &mut BinaryHeap<std::cmp::Reverse<(Instant, Owner)>>,
        out: &mut VecDeque<Transmit>,
    ) -> bool {
        if now >= p.deadline {
            return true;
        }
        if p.next <= now {
            if !p.quiet {
                out.push_back(Transmit {
                    local,
                    to,
                    data: p.data.clone(),
                });
            }
            p.interval = (p.interval * 2).min(T2);
            p.next = now + p.interval;
        }
        let wake = if p.quiet {
            p.deadline
        } else {
            p.next.min(p.deadline)
        };
        timers.push(std::cmp::Reverse((wake, owner)));
        false
    }

    fn call_timer(&mut self, id: u64, now: Instant) {
        let Some(c) = self.calls.get_mut(&id) else {
            return;
        };
        let Some(p) = c.pending.as_mut() else {
            return;
        };
        let timed_out = Self::step_pending(
            p,
            Owner::Call(id),
            c.local,
            self.cfg.target,
            now,
            &mut self.timers,
            &mut self.transmits,
        );
        if timed_out {
            let state_bye = c.state == CallState::Byeing;
            self.remove_call(id);
            self.events.push_back(if state_bye {
                Event::Ended {
                    call: CallId(id),
                    by_gateway: false,
                }
            } else {
                Event::Failed {
                    call: CallId(id),
                    failure: Failure::Timeout,
                }
            });
        }
    }

    fn reg_timer(&mut self, user: usize, now: Instant) {
        let Some(r) = self.regs.iter_mut().find(|r| r.user == user) else {
            return;
        };
        let Some(p) = r.pending.as_mut() else {
            return;
        };
        if Self::step_pending(
            p,
            Owner::Reg(user),
            r.local,
            self.cfg.target,
            now,
            &mut self.timers,
            &mut self.transmits,
        ) {
            r.pending = None;
            if r.phase != RegPhase::Unbind {
                self.events.push_back(Event::RegisterFailed {
                    user,
                    failure: Failure::Timeout,
                });
            }
        }
    }

    fn leg_timers(&mut self, now: Instant) {
        let mut expired = Vec::new();
        for (k, l) in self.legs.iter_mut() {
            let Some(next) = l.next else { continue };
            if now >= l.deadline {
                l.next = None;
                expired.push(k.clone());
                continue;
            }
            if next <= now {
                self.transmits.push_back(Transmit {
                    local: l.local,
                    to: l.to,
                    data: l.response.clone(),
                });
                l.interval = (l.interval * 2).min(T2);
                l.next = Some(now + l.interval);
                self.timers
                    .push(std::cmp::Reverse((now + l.interval, Owner::Leg(l.leg.0))));
            }
        }
        // An answer never ACKed: the gateway gave up on it; the leg stays until its BYE or the
        // end of the run (the media thread reports it as a stream anyway).
        let _ = expired;
    }

    fn remove_call(&mut self, id: u64) {
        if let Some(c) = self.calls.remove(&id) {
            self.by_sip_id.remove(&c.sip_call_id);
        }
    }

    fn handle_response(&mut self, r: Response, now: Instant) {
        let Some(cseq) = r.cseq() else { return };
        let Some(sip_id) = r.call_id() else { return };
        if cseq.method == Method::Register {
            self.handle_register_response(sip_id.to_string(), r, now);
            return;
        }
        let Some(&id) = self.by_sip_id.get(sip_id) else {
            return;
        };
        let Some(c) = self.calls.get_mut(&id) else {
            return;
        };
        if cseq.seq != c.cseq {
            return;
        }
        match (&c.state, cseq.method) {
            (CallState::Inviting { authed }, Method::Invite) => {
                let authed = *authed;
                if r.code < 200 {
                    if let Some(p) = c.pending.as_mut() {
                        p.quiet = true;
                    }
                    return;
                }
                let to_hdr = r.headers.get("To").unwrap_or("").to_string();
                if r.code >= 300 {
                    // ACK for a non-2xx: same branch as the INVITE (the top Via of the response).
                    let ack = self.ack_for(id, &r, &to_hdr, true);
                    let c = &self.calls[&id];
                    self.transmits.push_back(Transmit {
                        local: c.local,
                        to: self.cfg.target,
                        data: ack,
                    });
                    let retry = (r.code == 401 || r.code == 407) && !authed && !self.cfg.trunk;
                    let user = c.user;
                    if retry {
                        if let Some(u) = user {
                            self.retry_invite(id, u, &r, now);
                            return;
                        }
                    }
                    self.remove_call(id);
                    self.events.push_back(Event::Failed {
                        call: CallId(id),
                        failure: Failure::Status(r.code),
                    });
                    return;
                }
                // 2xx: dialog up.
                c.to = to_hdr.clone();
                c.remote_target = r
                    .contact()
                    .map(|n| n.uri.to_string())
                    .unwrap_or_else(|| c.invite.uri.clone());
                c.pending = None;
                c.state = CallState::Up;
                let setup = now.saturating_duration_since(c.started);
                let ack = self.ack_for(id, &r, &to_hdr, false);
                let c = match self.calls.get_mut(&id) {
                    Some(c) => c,
                    None => return,
                };
                c.ack = Some(ack.clone());
                self.transmits.push_back(Transmit {
                    local: c.local,
                    to: self.cfg.target,
                    data: ack,
                });
                match remote_media(&r.body) {
                    Some(remote_media) => self.events.push_back(Event::Answered {
                        call: CallId(id),
                        setup,
                        remote_media,
                    }),
                    None => {
                        self.events.push_back(Event::Failed {
                            call: CallId(id),
                            failure: Failure::BadAnswer,
                        });
                        self.hang_up(CallId(id), now);
                    }
                }
            }
            (CallState::Up | CallState::Byeing, Method::Invite) if r.is_success() => {
                // Retransmitted 2xx: our ACK was lost.
                if let Some(ack) = c.ack.clone() {
                    self.transmits.push_back(Transmit {
                        local: c.local,
                        to: self.cfg.target,
                        data: ack,
                    });
                }
            }
            (CallState::Byeing, Method::Bye) if r.code >= 200 => {
                self.remove_call(id);
                self.events.push_back(Event::Ended {
                    call: CallId(id),
                    by_gateway: false,
                });
            }
            _ => {}
        }
    }

    fn retry_invite(&mut self, id: u64, user: usize, chal: &Response, now: Instant) {
        self.nc += 1;
        let nc = self.nc;
        let acct = self.cfg.users[user].clone();
        let Some(c) = self.calls.get_mut(&id) else {
            return;
        };
        c.cseq += 1;
        c.state = CallState::Inviting { authed: true };
        let mut inv = c.invite.clone();
        inv.headers.remove("Via");
        inv.headers.set("CSeq", format!("{} INVITE", c.cseq));
        if let Some(v) = authorization(chal, &acct.name, &acct.password, "INVITE", &inv.uri, nc) {
            let h = if chal.code == 407 {
                "Proxy-Authorization"
            } else {
                "Authorization"
            };
            inv.headers.push(h, v);
        }
        let local = c.local;
        // The setup deadline keeps counting from the first INVITE.
        let started = c.started;
        self.send_request(Owner::Call(id), local, inv, now);
        if let Some(p) = self.calls.get_mut(&id).and_then(|c| c.pending.as_mut()) {
            p.deadline = started + self.cfg.setup_timeout;
        }
    }

    fn ack_for(&self, id: u64, r: &Response, to_hdr: &str, same_branch: bool) -> Vec<u8> {
        let Some(c) = self.calls.get(&id) else {
            return Vec::new();
        };
        let uri = if same_branch {
            c.invite.uri.clone()
        } else {
            r.contact()
                .map(|n| n.uri.to_string())
                .unwrap_or_else(|| c.invite.uri.clone())
        };
        let mut ack = Request::new(Method::Ack, uri);
        let laddr = self.cfg.locals[c.local];
        let via = if same_branch {
            r.headers.get("Via").unwrap_or("").to_string()
        } else {
            format!(
                "SIP/2.0/UDP {laddr};branch={};rport",
                control::sip::new_branch()
            )
        };
        ack.headers.push("Via", via);
        if let Some(f) = c.invite.headers.get("From") {
            ack.headers.push("From", f.to_string());
        }
        ack.headers.push("To", to_hdr.to_string());
        ack.headers.push("Call-ID", c.sip_call_id.clone());
        ack.headers.push("CSeq", format!("{} ACK", c.cseq));
        ack.headers.push("Max-Forwards", "70");
        let _ = &c.dial;
        ack.to_bytes()
    }

    fn handle_register_response(&mut self, sip_id: String, r: Response, now: Instant) {
        let Some(idx) = self.regs.iter().position(|g| g.sip_call_id == sip_id) else {
            return;
        };
        if r.code < 200 {
            return;
        }
        let (user, authed, local, phase) = {
            let g = &mut self.regs[idx];
            if r.cseq().map(|c| c.seq) != Some(g.cseq) || g.pending.is_none() {
                return;
            }
            g.pending = None;
            (g.user, g.authed, g.local, g.phase)
        };
        if (r.code == 401 || r.code == 407) && !authed {
            self.regs[idx].authed = true;
            self.regs[idx].cseq += 1;
            let req = self.register_request(user, Some(&r));
            self.send_request(Owner::Reg(user), local, req, now);
            return;
        }
        match phase {
            // Stale bindings cleared (or the registrar refused `*`): bind ours.
            RegPhase::Clear => {
                let g = &mut self.regs[idx];
                g.phase = RegPhase::Bind;
                g.authed = false;
                g.cseq += 1;
                let req = self.register_request(user, None);
                self.send_request(Owner::Reg(user), local, req, now);
            }
            RegPhase::Bind if r.is_success() => self.events.push_back(Event::Registered { user }),
            RegPhase::Bind => self.events.push_back(Event::RegisterFailed {
                user,
                failure: Failure::Status(r.code),
            }),
            RegPhase::Unbind => {}
        }
    }

    fn handle_request(&mut self, local: usize, from: SocketAddr, req: Request, now: Instant) {
        let Some(sip_id) = req.call_id().map(str::to_string) else {
            return;
        };
        let to = from;
        match req.method {
            Method::Invite => {
                if let Some(l) = self.legs.get(&sip_id) {
                    // Retransmitted INVITE: the same answer again.
                    self.transmits.push_back(Transmit {
                        local: l.local,
                        to: l.to,
                        data: l.response.clone(),
                    });
                    return;
                }
                let user = Uri::parse(&req.uri)
                    .ok()
                    .and_then(|u| u.user_name().map(str::to_string))
                    .unwrap_or_default();
                let Some(remote) = remote_media(&req.body) else {
                    let r = Response::for_request(&req, 488);
                    self.respond(local, to, r);
                    return;
                };
                let leg = LegId(self.next_leg);
                self.next_leg += 1;
                let mut ok = Response::for_request(&req, 200);
                ok.set_to_tag(&control::sip::new_tag());
                let laddr = self.cfg.locals[local];
                let uname = if user.is_empty() { "bench" } else { &user };
                ok.headers.push("Contact", format!("<sip:{uname}@{laddr}>"));
                ok.headers.push("Content-Type", "application/sdp");
                ok.body = self.sdp(callee_session(leg)).into_bytes();
                let data = ok.to_bytes();
                self.transmits.push_back(Transmit {
                    local,
                    to,
                    data: data.clone(),
                });
                self.legs.insert(
                    sip_id,
                    Incoming {
                        leg,
                        local,
                        to,
                        response: data,
                        interval: T1,
                        next: Some(now + T1),
                        deadline: now + 64 * T1,
                    },
                );
                self.timers
                    .push(std::cmp::Reverse((now + T1, Owner::Leg(leg.0))));
                self.events.push_back(Event::Incoming {
                    leg,
                    user,
                    remote_media: remote,
                });
            }
            Method::Ack => {
                if let Some(l) = self.legs.get_mut(&sip_id) {
                    l.next = None;
                }
            }
            Method::Bye => {
                let ok = Response::for_request(&req, 200);
                if let Some(l) = self.legs.remove(&sip_id) {
                    self.respond(local, to, ok);
                    self.events.push_back(Event::IncomingEnded { leg: l.leg });
                    self.ended_legs.push_back(sip_id);
                    if self.ended_legs.len() > 4096 {
                        self.ended_legs.pop_front();
                    }
                } else if let Some(&id) = self.by_sip_id.get(&sip_id) {
                    self.respond(local, to, ok);
                    self.remove_call(id);
                    self.events.push_back(Event::Ended {
                        call: CallId(id),
                        by_gateway: true,
                    });
                } else if self.ended_legs.contains(&sip_id) {
                    self.respond(local, to, ok);
                } else {
                    self.respond(local, to, Response::for_request(&req, 481));
                }
            }
            Method::Cancel | Method::Options => {
                self.respond(local, to, Response::for_request(&req, 200));
            }
            _ => self.respond(local, to, Response::for_request(&req, 501)),
        }
    }

    fn respond(&mut self, local: usize, to: SocketAddr, r: Response) {
        self.transmits.push_back(Transmit {
            local,
            to,
            data: r.to_bytes(),
        });
    }
}

/// The RTP address of the first audio stream of an SDP body.
/// The SDP session number of the callee side of incoming leg `leg`.
pub fn callee_session(leg: LegId) -> u64 {
    1_000_000 + leg.0
}

fn remote_media(body: &[u8]) -> Option<SocketAddr> {
    let text = std::str::from_utf8(body).ok()?;
    let sd = SessionDescription::parse(text).ok()?;
    let a = sd.audio_addr()?;
    (a.port() != 0).then_some(a)
}

/// `Digest ...` credentials answering the challenge in `chal` (MD5, `qop=auth` when offered).
fn authorization(
    chal: &Response,
    user: &str,
    password: &str,
    method: &str,
    uri: &str,
    nc: u32,
) -> Option<String> {
    let hdr = chal
        .headers
        .get("Proxy-Authenticate")
        .or_else(|| chal.headers.get("WWW-Authenticate"))?;
    digest_credentials(hdr, user, password, method, uri, nc)
}

/// The credentials (an `Authorization` value) answering the `Digest` challenge `hdr` (a
/// `WWW-Authenticate` or `Proxy-Authenticate` value): MD5, `qop=auth` when offered.
pub fn digest_credentials(
    hdr: &str,
    user: &str,
    password: &str,
    method: &str,
    uri: &str,
    nc: u32,
) -> Option<String> {
    let params = challenge_params(hdr)?;
    let get = |k: &str| {
        params
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(k))
            .map(|(_, v)| v.as_str())
    };
    let realm = get("realm")?;
    let nonce = get("nonce")?;
    if let Some(alg) = get("algorithm") {
        if !alg.eq_ignore_ascii_case("MD5") {
            return None;
        }
    }
    let qop = get("qop").is_some_and(|q| q.split(',').any(|t| t.trim() == "auth"));
    let nc = format!("{nc:08x}");
    let cnonce = "b3nch";
    let resp = digest::response(
        Algorithm::Md5,
        user,
        realm,
        password,
        method,
        uri,
        nonce,
        qop.then_some((nc.as_str(), cnonce)),
    );
    let mut v = format!(
        "Digest username=\"{user}\", realm=\"{realm}\", nonce=\"{nonce}\", uri=\"{uri}\", \
         response=\"{resp}\", algorithm=MD5"
    );
    if qop {
        v.push_str(&format!(", qop=auth, nc={nc}, cnonce=\"{cnonce}\""));
    }
    if let Some(o) = get("opaque") {
        v.push_str(&format!(", opaque=\"{o}\""));
    }
    Some(v)
}

/// `name=value` pairs of a `Digest` challenge (quotes removed).
fn challenge_params(hdr: &str) -> Option<Vec<(String, String)>> {
    let t = hdr.trim();
    let (scheme, rest) = t.split_once([' ', '\t'])?;
    if !scheme.eq_ignore_ascii_case("Digest") {
        return None;
    }
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut quoted = false;
    let mut parts = Vec::new();
    for ch in rest.chars() {
        match ch {
            '"' => {
                quoted = !quoted;
                cur.push(ch);
            }
            ',' if !quoted => parts.push(std::mem::take(&mut cur)),
            _ => cur.push(ch),
        }
    }
    parts.push(cur);
    for p in parts {
        if let Some((k, v)) = p.split_once('=') {
            out.push((k.trim().to_string(), v.trim().trim_matches('"').to_string()));
        }
    }
    Some(out)
}

/// Only used by tests and the driver to name a user's address of record.
pub fn aor(a: &NameAddr) -> String {
    a.uri.to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t0() -> Instant {
        // A fixed epoch for virtual time; only offsets from it matter.
        #[allow(clippy::disallowed_methods)]
        let t = Instant::now();
        t
    }

    fn cfg() -> UaConfig {
        UaConfig {
            target: "127.0.0.1:5060".parse().unwrap(),
            locals: vec!["127.0.1.1:40000".parse().unwrap()],
            users: vec![
                Account {
                    name: "1001".into(),
                    password: "tandem1001".into(),
                },
                Account {
                    name: "1002".into(),
                    password: "tandem1002".into(),
                },
            ],
            trunk: false,
            codec: Codec::Pcmu,
            dtmf: false,
            media: vec!["127.0.0.1:30000".parse().unwrap()],
            setup_timeout: Duration::from_secs(5),
        }
    }

    fn parse_req(t: &Transmit) -> Request {
        match Message::parse(&t.data) {
            Ok(Message::Request(r)) => r,
            other => panic!("not a request: {other:?}"),
        }
    }

    fn parse_resp(t: &Transmit) -> Response {
        match Message::parse(&t.data) {
            Ok(Message::Response(r)) => r,
            other => panic!("not a response: {other:?}"),
        }
    }

    /// The gateway's response to `req` with `code`, optional tag, headers and body.
    fn reply(req: &Request, code: u16, extra: &[(&str, &str)], body: &str) -> Vec<u8> {
        let mut r = Response::for_request(req, code);
        if code > 100 {
            r.set_to_tag("gw");
        }
        for (k, v) in extra {
            r.headers.push(k, *v);
        }
        r.body = body.as_bytes().to_vec();
        r.to_bytes()
    }

    const GW: &str = "127.0.0.1:5060";
    const ANSWER: &str = "v=0\r\no=gw 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\n\
                          t=0 0\r\nm=audio 20002 RTP/AVP 0\r\n";

    #[test]
    fn register_clears_stale_bindings_then_answers_the_digest_challenge() {
        let now = t0();
        let mut e = Engine::new(cfg());
        e.register_all(now);
        let clear = parse_req(&e.poll_transmit().unwrap());
        assert_eq!(clear.headers.get("Contact"), Some("*"));
        assert_eq!(clear.headers.get("Expires"), Some("0"));
        let _other_user = e.poll_transmit().unwrap();
        e.handle_datagram(0, GW.parse().unwrap(), &reply(&clear, 200, &[], ""), now);
        let r1 = parse_req(&e.poll_transmit().unwrap());
        assert_eq!(r1.method, Method::Register);
        assert_eq!(
            r1.headers.get("Contact"),
            Some("<sip:1001@127.0.1.1:40000>")
        );
        let chal = reply(
            &r1,
            401,
            &[(
                "WWW-Authenticate",
                "Digest realm=\"tandem\", nonce=\"abc\", algorithm=MD5, qop=\"auth\"",
            )],
            "",
        );
        e.handle_datagram(0, GW.parse().unwrap(), &chal, now);
        let again = parse_req(&e.poll_transmit().unwrap());
        let auth = again.headers.get("Authorization").unwrap();
        let creds = digest::Credentials::parse(auth).unwrap();
        assert!(digest::verify(&creds, "REGISTER", "tandem1001"));
        assert_eq!(again.cseq().unwrap().seq, 3);
        e.handle_datagram(0, GW.parse().unwrap(), &reply(&again, 200, &[], ""), now);
        assert_eq!(e.poll_event(), Some(Event::Registered { user: 0 }));
        e.unregister_all(now);
        let un = parse_req(&e.poll_transmit().unwrap());
        assert_eq!(un.headers.get("Expires"), Some("0"));
        assert_eq!(
            un.headers.get("Contact"),
            Some("<sip:1001@127.0.1.1:40000>")
        );
    }

    #[test]
    fn call_with_407_then_answer_then_bye() {
        let now = t0();
        let mut e = Engine::new(cfg());
        let call = e.place_call(Some(0), "1002", 0, now);
        let inv = parse_req(&e.poll_transmit().unwrap());
        assert_eq!(inv.method, Method::Invite);
        assert!(std::str::from_utf8(&inv.body)
            .unwrap()
            .contains("m=audio 30000 RTP/AVP 0"));
        let chal = reply(
            &inv,
            407,
            &[(
                "Proxy-Authenticate",
                "Digest realm=\"tandem\", nonce=\"n1\", algorithm=MD5, qop=\"auth\"",
            )],
            "",
        );
        e.handle_datagram(0, GW.parse().unwrap(), &chal, now);
        let ack = parse_req(&e.poll_transmit().unwrap());
        assert_eq!(ack.method, Method::Ack);
        assert_eq!(
            ack.top_via().unwrap().branch(),
            inv.top_via().unwrap().branch()
        );
        let inv2 = parse_req(&e.poll_transmit().unwrap());
        let creds =
            digest::Credentials::parse(inv2.headers.get("Proxy-Authorization").unwrap()).unwrap();
        assert!(digest::verify(&creds, "INVITE", "tandem1001"));
        let t1 = now + Duration::from_millis(30);
        e.handle_datagram(0, GW.parse().unwrap(), &reply(&inv2, 100, &[], ""), t1);
        let t2 = now + Duration::from_millis(80);
        let ok = reply(
            &inv2,
            200,
            &[
                ("Contact", "<sip:gw@127.0.0.1:5060>"),
                ("Content-Type", "application/sdp"),
            ],
            ANSWER,
        );
        e.handle_datagram(0, GW.parse().unwrap(), &ok, t2);
        let ack2 = parse_req(&e.poll_transmit().unwrap());
        assert_eq!(ack2.method, Method::Ack);
        assert_eq!(ack2.uri, "sip:gw@127.0.0.1:5060");
        assert_eq!(
            e.poll_event(),
            Some(Event::Answered {
                call,
                setup: Duration::from_millis(80),
                remote_media: "127.0.0.1:20002".parse().unwrap()
            })
        );
        // A retransmitted 200 gets the ACK again.
        e.handle_datagram(0, GW.parse().unwrap(), &ok, t2);
        assert_eq!(parse_req(&e.poll_transmit().unwrap()).method, Method::Ack);
        e.hang_up(call, t2 + Duration::from_secs(3));
        let bye = parse_req(&e.poll_transmit().unwrap());
        assert_eq!(bye.method, Method::Bye);
        assert_eq!(bye.to().unwrap().tag(), Some("gw"));
        e.handle_datagram(0, GW.parse().unwrap(), &reply(&bye, 200, &[], ""), t2);
        assert_eq!(
            e.poll_event(),
            Some(Event::Ended {
                call,
                by_gateway: false
            })
        );
        assert_eq!(e.active_calls(), 0);
    }

    #[test]
    fn invite_is_retransmitted_then_times_out() {
        let now = t0();
        let mut e = Engine::new(cfg());
        let call = e.place_call(Some(0), "1002", 0, now);
        let first = e.poll_transmit().unwrap();
        assert_eq!(e.poll_timeout(), Some(now + T1));
        e.handle_timeout(now + T1);
        assert_eq!(e.poll_transmit().unwrap().data, first.data);
        e.handle_timeout(now + T1 * 3);
        assert_eq!(e.poll_transmit().unwrap().data, first.data);
        let mut t = now + T1 * 3;
        while e.poll_event().is_none() && t < now + Duration::from_secs(10) {
            t = e.poll_timeout().unwrap();
            e.handle_timeout(t);
        }
        assert!(t >= now + Duration::from_secs(5));
        assert_eq!(e.active_calls(), 0);
        let _ = call;
    }

    #[test]
    fn final_error_is_a_failure_with_its_code() {
        let now = t0();
        let mut c = cfg();
        c.trunk = true;
        let mut e = Engine::new(c);
        let call = e.place_call(None, "600", 0, now);
        let inv = parse_req(&e.poll_transmit().unwrap());
        e.handle_datagram(0, GW.parse().unwrap(), &reply(&inv, 503, &[], ""), now);
        assert_eq!(parse_req(&e.poll_transmit().unwrap()).method, Method::Ack);
        assert_eq!(
            e.poll_event(),
            Some(Event::Failed {
                call,
                failure: Failure::Status(503)
            })
        );
    }

    #[test]
    fn incoming_invite_is_answered_until_ack_and_bye_ends_it() {
        let now = t0();
        let mut e = Engine::new(cfg());
        let mut inv = Request::new(Method::Invite, "sip:1002@127.0.1.1:40000");
        inv.headers
            .push("Via", "SIP/2.0/UDP 127.0.0.1:5060;branch=z9hG4bKgw1");
        inv.headers.push("From", "<sip:1001@127.0.0.1>;tag=a");
        inv.headers.push("To", "<sip:1002@127.0.0.1>");
        inv.headers.push("Call-ID", "gw-call-1");
        inv.headers.push("CSeq", "1 INVITE");
        inv.body = ANSWER.as_bytes().to_vec();
        let gw: SocketAddr = GW.parse().unwrap();
        e.handle_datagram(0, gw, &inv.to_bytes(), now);
        let ok = parse_resp(&e.poll_transmit().unwrap());
        assert_eq!(ok.code, 200);
        assert!(ok.to().unwrap().tag().is_some());
        assert!(std::str::from_utf8(&ok.body)
            .unwrap()
            .contains("m=audio 30000"));
        assert_eq!(
            e.poll_event(),
            Some(Event::Incoming {
                leg: LegId(0),
                user: "1002".into(),
                remote_media: "127.0.0.1:20002".parse().unwrap()
            })
        );
        // Not ACKed: the 200 is retransmitted at T1.
        e.handle_timeout(now + T1);
        assert_eq!(parse_resp(&e.poll_transmit().unwrap()).code, 200);
        let mut ack = inv.clone();
        ack.method = Method::Ack;
        ack.body.clear();
        ack.headers.set("CSeq", "1 ACK");
        e.handle_datagram(0, gw, &ack.to_bytes(), now + T1);
        e.handle_timeout(now + T1 * 4);
        assert!(e.poll_transmit().is_none());
        let mut bye = inv.clone();
        bye.method = Method::Bye;
        bye.body.clear();
        bye.headers.set("CSeq", "2 BYE");
        e.handle_datagram(0, gw, &bye.to_bytes(), now + T1 * 5);
        assert_eq!(parse_resp(&e.poll_transmit().unwrap()).code, 200);
        assert_eq!(e.poll_event(), Some(Event::IncomingEnded { leg: LegId(0) }));
        // A retransmitted BYE still gets 200, an unknown one 481.
        e.handle_datagram(0, gw, &bye.to_bytes(), now + T1 * 5);
        assert_eq!(parse_resp(&e.poll_transmit().unwrap()).code, 200);
        bye.headers.set("Call-ID", "nope");
        e.handle_datagram(0, gw, &bye.to_bytes(), now + T1 * 5);
        assert_eq!(parse_resp(&e.poll_transmit().unwrap()).code, 481);
    }
}
