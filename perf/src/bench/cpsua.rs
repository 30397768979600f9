//! The lean SIP user agents of `tandem-bench cps`: callers and callees of a call setup rate
//! run, cheap enough per message that one bench core outruns one server core.
//!
//! [`Lean`] is sans-IO like [`super::ua::Engine`] (datagrams and the time are fed in, datagrams
//! to send come out) but specialised for INVITE / (401 / ACK / INVITE) / 1xx / 200 / ACK /
//! BYE / 200 with no media: it never builds a message tree. Outgoing messages are written
//! straight into one reused byte buffer from per-call fields; incoming ones are read by
//! [`peek`], a single pass over the header lines that keeps byte ranges of the few headers a
//! user agent needs (top Via and every Via, Record-Route, From, To, Call-ID, CSeq, Contact,
//! the digest challenge, Content-Length) and the body.
//!
//! Still a real user agent: every response is matched to its dialog (Call-ID, From tag,
//! CSeq number and method), final errors are counted by status code, a 2xx must carry a To
//! tag, a Contact and an SDP answer with an audio address, INVITE and BYE are retransmitted
//! (T1 doubling to T2) until answered or timed out, the callee's 200 is retransmitted until
//! its ACK, retransmitted requests get the same answer again, and everything that matches
//! nothing is counted in [`Tally::anomalies`] rather than dropped silently.
//!
//! Call `n` of a run uses Call-ID `<n>.<run>@bench`, so a response finds its call by index
//! without a lookup table; calls the server delivers to bench users (its own Call-IDs) are
//! found in a hash map.

use std::cmp::Reverse;
use std::collections::{BTreeMap, BinaryHeap, HashMap, VecDeque};
use std::io::Write;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use super::ua::{digest_credentials, Account};

/// RFC 3261 T1.
const T1: Duration = Duration::from_millis(500);
/// Retransmission interval cap (T2).
const T2: Duration = Duration::from_secs(4);
/// Ended callee Call-IDs remembered for retransmitted BYEs.
const ENDED_KEEP: usize = 4096;
/// Via and Record-Route lines copied into a response at most.
const MAX_COPIED: usize = 8;

/// What the lean agents need.
#[derive(Debug, Clone)]
pub struct LeanConfig {
    /// The server: every request goes there.
    pub target: SocketAddr,
    /// Local SIP sockets; user `u` is registered from `locals[u % locals.len()]`.
    pub locals: Vec<SocketAddr>,
    /// The registered users; call `n` goes from user `2n % len` to user `2n + 1 % len`.
    pub users: Vec<Account>,
    /// The RTP address both sides offer (nothing is sent to it in a cps run).
    pub media: SocketAddr,
    /// An INVITE not answered within this fails with "timeout"; a BYE within this ends the
    /// call without counting it as completed.
    pub setup_timeout: Duration,
    /// Distinguishes the Call-IDs of runs.
    pub run: u32,
}

/// A datagram to send: `buf()[range]` from local socket `local` to `to`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Out {
    pub local: usize,
    pub to: SocketAddr,
    pub range: std::ops::Range<usize>,
}

/// The figures of a run so far.
#[derive(Debug, Clone, Default)]
pub struct Tally {
    pub attempts: u64,
    pub answered: u64,
    /// Attempts that got no answer (final error, timeout or bad SDP).
    pub failed: u64,
    pub failures_by_code: BTreeMap<String, u64>,
    /// Answered calls whose BYE got a 2xx.
    pub completed: u64,
    /// Setup time of every answered call (first INVITE to 2xx), microseconds.
    pub setup_us: Vec<u32>,
    /// Messages that matched nothing or broke a rule, by kind (see the module docs).
    pub anomalies: BTreeMap<&'static str, u64>,
    /// Requests retransmitted by the bench.
    pub retransmissions: u64,
}

impl Tally {
    fn anomaly(&mut self, what: &'static str) {
        *self.anomalies.entry(what).or_default() += 1;
    }
    fn fail(&mut self, why: String) {
        self.failed += 1;
        *self.failures_by_code.entry(why).or_default() += 1;
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum St {
    Inviting { authed: bool },
    Byeing,
}

#[derive(Debug)]
struct Call {
    caller: usize,
    callee: usize,
    local: usize,
    cseq: u32,
    state: St,
    started: Instant,
    /// The request being retransmitted.
    req: Vec<u8>,
    interval: Duration,
    next: Instant,
    /// A provisional response came: wait for the final one without retransmitting.
    quiet: bool,
    deadline: Instant,
    /// The ACK of the 2xx, resent when the 2xx is.
    ack: Vec<u8>,
}

#[derive(Debug)]
struct Leg {
    local: usize,
    from: SocketAddr,
    response: Vec<u8>,
    interval: Duration,
    /// Next retransmission of the 200 (`None` once ACKed or given up).
    next: Option<Instant>,
    deadline: Instant,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Timer {
    Call(u64),
    Leg(u64),
}

/// The lean callers and callees (see the module documentation).
#[derive(Debug)]
pub struct Lean {
    cfg: LeanConfig,
    calls: Vec<Option<Call>>,
    active: usize,
    legs: HashMap<Vec<u8>, u64>,
    leg_slab: HashMap<u64, Leg>,
    next_leg: u64,
    ended: VecDeque<Vec<u8>>,
    timers: BinaryHeap<Reverse<(Instant, Timer)>>,
    buf: Vec<u8>,
    outs: Vec<Out>,
    nc: u32,
    tally: Tally,
    /// `Call-ID` suffix of this run: `.<run>@bench`.
    suffix: Vec<u8>,
}

impl Lean {
    pub fn new(cfg: LeanConfig) -> Lean {
        let suffix = format!(".{}@bench", cfg.run).into_bytes();
        Lean {
            cfg,
            calls: Vec::new(),
            active: 0,
            legs: HashMap::new(),
            leg_slab: HashMap::new(),
            next_leg: 0,
            ended: VecDeque::new(),
            timers: BinaryHeap::new(),
            buf: Vec::with_capacity(1 << 16),
            outs: Vec::new(),
            nc: 0,
            tally: Tally::default(),
            suffix,
        }
    }

    /// Calls placed and not yet ended.
    pub fn active(&self) -> usize {
        self.active
    }

    /// Callee legs the server opened and has not ended.
    pub fn open_legs(&self) -> usize {
        self.leg_slab.len()
    }

    pub fn tally(&self) -> &Tally {
        &self.tally
    }

    /// The datagrams queued since the last [`Lean::clear_out`]: their bytes are in
    /// [`Lean::buf`].
    pub fn outs(&self) -> &[Out] {
        &self.outs
    }

    pub fn buf(&self) -> &[u8] {
        &self.buf
    }

    /// Forgets the queued datagrams (after sending them).
    pub fn clear_out(&mut self) {
        self.outs.clear();
        self.buf.clear();
    }

    /// The next instant [`Lean::handle_timeout`] has work (may be in the past).
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.timers.peek().map(|r| r.0 .0)
    }

    /// Places the next call.
    pub fn place_call(&mut self, now: Instant) {
        let id = self.calls.len() as u64;
        let n = self.cfg.users.len().max(1);
        let caller = (2 * id as usize) % n;
        let callee = (2 * id as usize + 1) % n;
        let local = caller % self.cfg.locals.len().max(1);
        let mut c = Call {
            caller,
            callee,
            local,
            cseq: 1,
            state: St::Inviting { authed: false },
            started: now,
            req: Vec::with_capacity(1024),
            interval: T1,
            next: now + T1,
            quiet: false,
            deadline: now + self.cfg.setup_timeout,
            ack: Vec::new(),
        };
        self.write_invite(id, &mut c, None);
        self.tally.attempts += 1;
        self.active += 1;
        self.send_req(id, &c);
        self.timers.push(Reverse((c.next, Timer::Call(id))));
        self.calls.push(Some(c));
    }

    /// Handles one datagram received on local socket `local` from `from`.
    pub fn handle_datagram(&mut self, local: usize, from: SocketAddr, data: &[u8], now: Instant) {
        let Some(m) = peek(data) else {
            self.tally.anomaly("malformed");
            return;
        };
        match m.start {
            Start::Response(code) => self.on_response(&m, code, now),
            Start::Request(method) => self.on_request(local, from, &m, method, now),
        }
    }

    /// Runs retransmissions and timeouts due at `now`.
    pub fn handle_timeout(&mut self, now: Instant) {
        while let Some(Reverse((at, t))) = self.timers.peek().copied() {
            if at > now {
                break;
            }
            self.timers.pop();
            match t {
                Timer::Call(id) => self.call_timer(id, at, now),
                Timer::Leg(l) => self.leg_timer(l, at, now),
            }
        }
    }

    fn call_timer(&mut self, id: u64, at: Instant, now: Instant) {
        let Some(Some(c)) = self.calls.get_mut(id as usize) else {
            return;
        };
        let wake = if c.quiet {
            c.deadline
        } else {
            c.next.min(c.deadline)
        };
        if wake != at {
            return; // superseded entry
        }
        if now >= c.deadline {
            let st = c.state;
            self.end_call(id);
            match st {
                St::Inviting { .. } => self.tally.fail("timeout".into()),
                St::Byeing => self.tally.anomaly("bye-timeout"),
            }
            return;
        }
        if !c.quiet && c.next <= now {
            let start = self.buf.len();
            self.buf.extend_from_slice(&c.req);
            self.outs.push(Out {
                local: c.local,
                to: self.cfg.target,
                range: start..self.buf.len(),
            });
            self.tally.retransmissions += 1;
            self.tally.anomaly(match c.state {
                St::Inviting { .. } => "invite-retransmitted",
                St::Byeing => "bye-retransmitted",
            });
            c.interval = (c.interval * 2).min(T2);
            c.next = now + c.interval;
        }
        let wake = if c.quiet {
            c.deadline
        } else {
            c.next.min(c.deadline)
        };
        self.timers.push(Reverse((wake, Timer::Call(id))));
    }

    fn leg_timer(&mut self, l: u64, at: Instant, now: Instant) {
        let Some(leg) = self.leg_slab.get_mut(&l) else {
            return;
        };
        if leg.next != Some(at) {
            return;
        }
        if now >= leg.deadline {
            leg.next = None;
            self.tally.anomaly("callee-200-never-acked");
            return;
        }
        let start = self.buf.len();
        self.buf.extend_from_slice(&leg.response);
        self.outs.push(Out {
            local: leg.local,
            to: leg.from,
            range: start..self.buf.len(),
        });
        self.tally.retransmissions += 1;
        self.tally.anomaly("callee-200-retransmitted");
        leg.interval = (leg.interval * 2).min(T2);
        let next = (now + leg.interval).min(leg.deadline);
        leg.next = Some(next);
        self.timers.push(Reverse((next, Timer::Leg(l))));
    }

    fn end_call(&mut self, id: u64) {
        if let Some(slot) = self.calls.get_mut(id as usize) {
            if slot.take().is_some() {
                self.active -= 1;
            }
        }
    }

    fn send_req(&mut self, _id: u64, c: &Call) {
        let start = self.buf.len();
        self.buf.extend_from_slice(&c.req);
        self.outs.push(Out {
            local: c.local,
            to: self.cfg.target,
            range: start..self.buf.len(),
        });
    }

    /// The index of call `<n>.<run>@bench`.
    fn call_index(&self, call_id: &[u8]) -> Option<u64> {
        let n = call_id.strip_suffix(self.suffix.as_slice())?;
        if n.is_empty() || n.len() > 18 || !n.iter().all(u8::is_ascii_digit) {
            return None;
        }
        Some(n.iter().fold(0u64, |a, d| a * 10 + u64::from(d - b'0')))
    }

    fn write_invite(&mut self, id: u64, c: &mut Call, auth: Option<&str>) {
        let cfg = &self.cfg;
        let (user, dial) = (&cfg.users[c.caller].name, &cfg.users[c.callee].name);
        let laddr = cfg.locals[c.local];
        let host = cfg.target.ip();
        let sdp = sdp(id, cfg.media);
        let r = &mut c.req;
        r.clear();
        let _ = write!(
            r,
            "INVITE sip:{dial}@{t} SIP/2.0\r\nVia: SIP/2.0/UDP {laddr};branch=z9hG4bK{run}x{id}x{s}i;\
             rport\r\nFrom: <sip:{user}@{host}>;tag=f{id}\r\nTo: <sip:{dial}@{host}>\r\n\
             Call-ID: {id}.{run}@bench\r\nCSeq: {s} INVITE\r\nContact: <sip:{user}@{laddr}>\r\n\
             Max-Forwards: 70\r\nUser-Agent: tandem-bench\r\nContent-Type: application/sdp\r\n",
            t = cfg.target,
            run = cfg.run,
            s = c.cseq,
        );
        if let Some(a) = auth {
            let _ = write!(r, "{a}\r\n");
        }
        let _ = write!(r, "Content-Length: {}\r\n\r\n{sdp}", sdp.len());
    }

    /// ACK (or BYE) in the dialog of call `id`; `via` is the top Via for a non-2xx ACK.
    #[allow(clippy::too_many_arguments)]
    fn write_in_dialog(
        cfg: &LeanConfig,
        out: &mut Vec<u8>,
        id: u64,
        c: &Call,
        method: &str,
        ruri: &[u8],
        to: &[u8],
        via: Option<&[u8]>,
    ) {
        let user = &cfg.users[c.caller].name;
        let host = cfg.target.ip();
        let laddr = cfg.locals[c.local];
        out.clear();
        let _ = write!(out, "{method} ");
        out.extend_from_slice(ruri);
        out.extend_from_slice(b" SIP/2.0\r\nVia: ");
        match via {
            Some(v) => out.extend_from_slice(v),
            None => {
                let k = if method == "ACK" { 'a' } else { 'b' };
                let _ = write!(
                    out,
                    "SIP/2.0/UDP {laddr};branch=z9hG4bK{}x{id}x{}{k};rport",
                    cfg.run, c.cseq
                );
            }
        }
        let _ = write!(out, "\r\nFrom: <sip:{user}@{host}>;tag=f{id}\r\nTo: ");
        out.extend_from_slice(to);
        let _ = write!(
            out,
            "\r\nCall-ID: {id}.{}@bench\r\nCSeq: {} {method}\r\nMax-Forwards: 70\r\n\
             Content-Length: 0\r\n\r\n",
            cfg.run, c.cseq
        );
    }

    fn on_response(&mut self, m: &Peek<'_>, code: u16, now: Instant) {
        let Some(id) = m.call_id.and_then(|v| self.call_index(v)) else {
            self.tally.anomaly("response-unknown-call");
            return;
        };
        let Some((seq, method)) = m.cseq.and_then(parse_cseq) else {
            self.tally.anomaly("malformed");
            return;
        };
        let tag_ok = m
            .from
            .and_then(|f| tag_of(f))
            .is_some_and(|t| t.first() == Some(&b'f') && parse_u64(&t[1..]) == Some(id));
        let Some(Some(mut c)) = self.calls.get_mut(id as usize).map(Option::take) else {
            // A late retransmission for a call already ended.
            self.tally.anomaly("response-ended-call");
            return;
        };
        // Put the call back unless it ends below.
        let keep = self.response_for(id, &mut c, m, code, seq, method, tag_ok, now);
        if keep {
            self.calls[id as usize] = Some(c);
        } else {
            self.active -= 1;
        }
    }

    /// Applies a response to call `id` (taken out of its slot); returns whether it lives on.
    #[allow(clippy::too_many_arguments)]
    fn response_for(
        &mut self,
        id: u64,
        c: &mut Call,
        m: &Peek<'_>,
        code: u16,
        seq: u32,
        method: &[u8],
        tag_ok: bool,
        now: Instant,
    ) -> bool {
        if !tag_ok {
            self.tally.anomaly("response-wrong-from-tag");
            return true;
        }
        if c.state == St::Byeing && seq + 1 == c.cseq && method == b"INVITE" && code / 100 == 2 {
            // The 2xx again: our ACK was lost or late; ACK it again.
            let ack = std::mem::take(&mut c.ack);
            self.push_out(c.local, &ack);
            c.ack = ack;
            self.tally.anomaly("2xx-retransmitted");
            return true;
        }
        if seq != c.cseq {
            self.tally.anomaly("response-old-cseq");
            return true;
        }
        match (c.state, method) {
            (St::Inviting { authed }, b"INVITE") => {
                if code < 200 {
                    c.quiet = true;
                    self.timers.push(Reverse((c.deadline, Timer::Call(id))));
                    return true;
                }
                let Some(to) = m.to else {
                    self.tally.anomaly("malformed");
                    return true;
                };
                if code >= 300 {
                    let Some(via) = m.via_top else {
                        self.tally.anomaly("malformed");
                        return true;
                    };
                    let ruri = format!("sip:{}@{}", self.cfg.users[c.callee].name, self.cfg.target);
                    let mut ack = std::mem::take(&mut c.ack);
                    Self::write_in_dialog(
                        &self.cfg,
                        &mut ack,
                        id,
                        c,
                        "ACK",
                        ruri.as_bytes(),
                        to,
                        Some(via),
                    );
                    self.push_out(c.local, &ack);
                    c.ack = ack;
                    if (code == 401 || code == 407) && !authed {
                        let Some(auth) = self.answer(c, m, code, &ruri) else {
                            self.tally.fail(format!("{code}-unanswerable-challenge"));
                            return false;
                        };
                        c.cseq += 1;
                        c.state = St::Inviting { authed: true };
                        c.quiet = false;
                        c.interval = T1;
                        c.next = now + T1;
                        self.write_invite(id, c, Some(&auth));
                        self.send_req(id, c);
                        self.timers
                            .push(Reverse((c.next.min(c.deadline), Timer::Call(id))));
                        return true;
                    }
                    self.tally.fail(code.to_string());
                    return false;
                }
                // 2xx: the dialog is up.
                if tag_of(to).is_none() {
                    self.tally.fail("2xx-without-to-tag".into());
                    return false;
                }
                let Some(target) = m.contact.and_then(contact_uri) else {
                    self.tally.fail("2xx-without-contact".into());
                    return false;
                };
                if !sdp_ok(m.body) {
                    self.tally.fail("bad-sdp".into());
                    return false;
                }
                self.tally.answered += 1;
                let us = now.saturating_duration_since(c.started).as_micros();
                self.tally
                    .setup_us
                    .push(us.min(u128::from(u32::MAX)) as u32);
                let mut ack = std::mem::take(&mut c.ack);
                Self::write_in_dialog(&self.cfg, &mut ack, id, c, "ACK", target, to, None);
                self.push_out(c.local, &ack);
                c.ack = ack;
                // Hang up at once: BYE with the next CSeq.
                c.cseq += 1;
                let mut bye = std::mem::take(&mut c.req);
                Self::write_in_dialog(&self.cfg, &mut bye, id, c, "BYE", target, to, None);
                c.req = bye;
                c.state = St::Byeing;
                c.quiet = false;
                c.interval = T1;
                c.next = now + T1;
                c.deadline = now + self.cfg.setup_timeout;
                self.send_req(id, c);
                self.timers
                    .push(Reverse((c.next.min(c.deadline), Timer::Call(id))));
                true
            }
            (St::Byeing, b"BYE") => {
                if code < 200 {
                    return true;
                }
                if (200..300).contains(&code) {
                    self.tally.completed += 1;
                } else {
                    self.tally.anomaly("bye-error-response");
                }
                false
            }
            _ => {
                self.tally.anomaly("response-out-of-state");
                true
            }
        }
    }

    fn answer(&mut self, c: &Call, m: &Peek<'_>, code: u16, ruri: &str) -> Option<String> {
        let chal = std::str::from_utf8(m.challenge?).ok()?;
        let acct = &self.cfg.users[c.caller];
        self.nc += 1;
        let v = digest_credentials(chal, &acct.name, &acct.password, "INVITE", ruri, self.nc)?;
        let h = if code == 407 {
            "Proxy-Authorization"
        } else {
            "Authorization"
        };
        Some(format!("{h}: {v}"))
    }

    fn push_out(&mut self, local: usize, data: &[u8]) {
        let start = self.buf.len();
        self.buf.extend_from_slice(data);
        self.outs.push(Out {
            local,
            to: self.cfg.target,
            range: start..self.buf.len(),
        });
    }

    fn on_request(
        &mut self,
        local: usize,
        from: SocketAddr,
        m: &Peek<'_>,
        method: &[u8],
        now: Instant,
    ) {
        let Some(call_id) = m.call_id else {
            self.tally.anomaly("malformed");
            return;
        };
        match method {
            b"INVITE" => {
                if let Some(l) = self.legs.get(call_id).and_then(|l| self.leg_slab.get(l)) {
                    let (local, to) = (l.local, l.from);
                    let resp = l.response.clone();
                    self.tally.anomaly("invite-retransmitted-to-callee");
                    self.push_to(local, to, &resp);
                    return;
                }
                if !sdp_ok(m.body) {
                    let r = self.write_response(m, 488, "Not Acceptable Here", None, None);
                    self.push_to(local, from, &r);
                    self.tally.anomaly("invite-without-sdp");
                    return;
                }
                let user = user_of(m.ruri).unwrap_or(b"bench");
                let l = self.next_leg;
                self.next_leg += 1;
                let tag = format!("l{l}");
                let laddr = self
                    .cfg
                    .locals
                    .get(local)
                    .copied()
                    .unwrap_or(self.cfg.target);
                let mut contact = b"<sip:".to_vec();
                contact.extend_from_slice(user);
                let _ = write!(contact, "@{laddr}>");
                let body = sdp(1_000_000 + l, self.cfg.media);
                let r = self.write_response(m, 200, "OK", Some((&tag, &contact)), Some(&body));
                self.push_to(local, from, &r);
                let next = now + T1;
                self.legs.insert(call_id.to_vec(), l);
                self.leg_slab.insert(
                    l,
                    Leg {
                        local,
                        from,
                        response: r,
                        interval: T1,
                        next: Some(next),
                        deadline: now + 64 * T1,
                    },
                );
                self.timers.push(Reverse((next, Timer::Leg(l))));
            }
            b"ACK" => match self
                .legs
                .get(call_id)
                .and_then(|l| self.leg_slab.get_mut(l))
            {
                Some(leg) => leg.next = None,
                None => self.tally.anomaly("ack-unknown-leg"),
            },
            b"BYE" => {
                let r = self.write_response(m, 200, "OK", None, None);
                if let Some(l) = self.legs.remove(call_id) {
                    self.leg_slab.remove(&l);
                    self.push_to(local, from, &r);
                    self.ended.push_back(call_id.to_vec());
                    if self.ended.len() > ENDED_KEEP {
                        self.ended.pop_front();
                    }
                } else if let Some(id) = self.call_index(call_id).filter(|&i| {
                    // Addressed to one of our callers (its To tag is the caller's From tag;
                    // through a proxy the callee leg has the same Call-ID).
                    matches!(self.calls.get(i as usize), Some(Some(_)))
                        && m.to.and_then(tag_of).is_some_and(|t| {
                            t.first() == Some(&b'f') && parse_u64(&t[1..]) == Some(i)
                        })
                }) {
                    // The server hung up one of our calls.
                    self.push_to(local, from, &r);
                    self.end_call(id);
                    self.tally.anomaly("call-ended-by-server");
                } else if self.ended.iter().any(|e| e.as_slice() == call_id) {
                    self.push_to(local, from, &r);
                } else {
                    let r =
                        self.write_response(m, 481, "Call/Transaction Does Not Exist", None, None);
                    self.push_to(local, from, &r);
                    self.tally.anomaly("bye-unknown-dialog");
                }
            }
            b"CANCEL" | b"OPTIONS" => {
                let r = self.write_response(m, 200, "OK", None, None);
                self.push_to(local, from, &r);
            }
            _ => {
                let r = self.write_response(m, 501, "Not Implemented", None, None);
                self.push_to(local, from, &r);
            }
        }
    }

    fn push_to(&mut self, local: usize, to: SocketAddr, data: &[u8]) {
        let start = self.buf.len();
        self.buf.extend_from_slice(data);
        self.outs.push(Out {
            local,
            to,
            range: start..self.buf.len(),
        });
    }

    /// A response to request `m`: its Via and Record-Route lines, From, To (with `tag` added
    /// when it has none and `answer` is given), Call-ID and CSeq copied; with `answer`, a
    /// Contact and an SDP body.
    fn write_response(
        &self,
        m: &Peek<'_>,
        code: u16,
        reason: &str,
        answer: Option<(&str, &[u8])>,
        body: Option<&str>,
    ) -> Vec<u8> {
        let d = m.data;
        let mut r = Vec::with_capacity(m.headers_len + 400);
        let _ = write!(r, "SIP/2.0 {code} {reason}\r\n");
        for &(a, b) in &m.vias[..m.nvias] {
            r.extend_from_slice(&d[a..b]);
            r.extend_from_slice(b"\r\n");
        }
        if code < 300 || answer.is_some() {
            for &(a, b) in &m.rrs[..m.nrrs] {
                r.extend_from_slice(&d[a..b]);
                r.extend_from_slice(b"\r\n");
            }
        }
        for l in [m.from_line, m.to_line, m.call_id_line, m.cseq_line]
            .into_iter()
            .flatten()
        {
            r.extend_from_slice(&d[l.0..l.1]);
            if Some(l) == m.to_line && code >= 200 {
                if let (Some((tag, _)), None) = (answer, m.to.and_then(tag_of)) {
                    let _ = write!(r, ";tag={tag}");
                } else if answer.is_none() && code >= 300 && m.to.and_then(tag_of).is_none() {
                    r.extend_from_slice(b";tag=e");
                }
            }
            r.extend_from_slice(b"\r\n");
        }
        if let Some((_, contact)) = answer {
            r.extend_from_slice(b"Contact: ");
            r.extend_from_slice(contact);
            r.extend_from_slice(b"\r\n");
        }
        match body {
            Some(b) => {
                let _ = write!(
                    r,
                    "Content-Type: application/sdp\r\nContent-Length: {}\r\n\r\n{b}",
                    b.len()
                );
            }
            None => r.extend_from_slice(b"Content-Length: 0\r\n\r\n"),
        }
        r
    }
}

/// The SDP both sides offer or answer (PCMU, `media` as the RTP address).
fn sdp(session: u64, media: SocketAddr) -> String {
    let ip = media.ip();
    format!(
        "v=0\r\no=bench {session} 1 IN IP4 {ip}\r\ns=tandem-bench\r\nc=IN IP4 {ip}\r\nt=0 0\r\n\
         m=audio {} RTP/AVP 0\r\na=rtpmap:0 PCMU/8000\r\na=ptime:20\r\na=sendrecv\r\n",
        media.port()
    )
}

/// The first line of a message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Start<'a> {
    Request(&'a [u8]),
    Response(u16),
}

/// What [`peek`] keeps of a message: byte ranges and slices into it.
#[derive(Debug)]
pub struct Peek<'a> {
    data: &'a [u8],
    start: Start<'a>,
    /// Request-URI (requests), empty for responses.
    ruri: &'a [u8],
    headers_len: usize,
    via_top: Option<&'a [u8]>,
    /// Whole `Via` lines (without CRLF), in order.
    vias: [(usize, usize); MAX_COPIED],
    nvias: usize,
    rrs: [(usize, usize); MAX_COPIED],
    nrrs: usize,
    from: Option<&'a [u8]>,
    from_line: Option<(usize, usize)>,
    to: Option<&'a [u8]>,
    to_line: Option<(usize, usize)>,
    call_id: Option<&'a [u8]>,
    call_id_line: Option<(usize, usize)>,
    cseq: Option<&'a [u8]>,
    cseq_line: Option<(usize, usize)>,
    contact: Option<&'a [u8]>,
    challenge: Option<&'a [u8]>,
    body: &'a [u8],
}

fn trim(mut s: &[u8]) -> &[u8] {
    while let [b' ' | b'\t', rest @ ..] = s {
        s = rest;
    }
    while let [rest @ .., b' ' | b'\t'] = s {
        s = rest;
    }
    s
}

fn find(h: &[u8], n: &[u8]) -> Option<usize> {
    h.windows(n.len()).position(|w| w == n)
}

/// One pass over a SIP message's header lines (see the module docs). `None`: not a SIP
/// message this bench can answer (no header end, a folded or nameless header line, too many
/// Via lines, a Content-Length beyond the datagram).
pub fn peek(data: &[u8]) -> Option<Peek<'_>> {
    let hend = find(data, b"\r\n\r\n")?;
    let head = &data[..hend];
    let first_end = find(head, b"\r\n").unwrap_or(head.len());
    let first = &head[..first_end];
    let (start, ruri) = if let Some(rest) = first.strip_prefix(b"SIP/2.0 ") {
        let code = rest.get(..3).and_then(parse_u64)?;
        (Start::Response(u16::try_from(code).ok()?), &first[..0])
    } else {
        let sp = first.iter().position(|&b| b == b' ')?;
        let rest = &first[sp + 1..];
        let sp2 = rest.iter().position(|&b| b == b' ')?;
        if &rest[sp2 + 1..] != b"SIP/2.0" {
            return None;
        }
        (Start::Request(&first[..sp]), &rest[..sp2])
    };
    let mut p = Peek {
        data,
        start,
        ruri,
        headers_len: hend,
        via_top: None,
        vias: [(0, 0); MAX_COPIED],
        nvias: 0,
        rrs: [(0, 0); MAX_COPIED],
        nrrs: 0,
        from: None,
        from_line: None,
        to: None,
        to_line: None,
        call_id: None,
        call_id_line: None,
        cseq: None,
        cseq_line: None,
        contact: None,
        challenge: None,
        body: &[],
    };
    let mut content_length = None;
    let mut at = first_end + 2;
    while at < hend {
        let end = at + find(&data[at..hend], b"\r\n").unwrap_or(hend - at);
        let line = &data[at..end];
        let range = (at, end);
        at = end + 2;
        if matches!(line.first(), Some(b' ' | b'\t')) {
            return None; // folded header: not produced by the servers measured
        }
        let colon = line.iter().position(|&b| b == b':')?;
        let name = trim(&line[..colon]);
        let value = trim(&line[colon + 1..]);
        let is = |full: &[u8], short: &[u8]| {
            name.eq_ignore_ascii_case(full)
                || (!short.is_empty() && name.eq_ignore_ascii_case(short))
        };
        if is(b"Via", b"v") {
            if p.nvias == MAX_COPIED {
                return None;
            }
            if p.nvias == 0 {
                // The top Via: up to the first comma of a combined line.
                let v = value
                    .split(|&b| b == b',')
                    .next()
                    .map(trim)
                    .unwrap_or(value);
                p.via_top = Some(v);
            }
            p.vias[p.nvias] = range;
            p.nvias += 1;
        } else if is(b"Record-Route", b"") {
            if p.nrrs == MAX_COPIED {
                return None;
            }
            p.rrs[p.nrrs] = range;
            p.nrrs += 1;
        } else if is(b"From", b"f") {
            p.from = Some(value);
            p.from_line = Some(range);
        } else if is(b"To", b"t") {
            p.to = Some(value);
            p.to_line = Some(range);
        } else if is(b"Call-ID", b"i") {
            p.call_id = Some(value);
            p.call_id_line = Some(range);
        } else if is(b"CSeq", b"") {
            p.cseq = Some(value);
            p.cseq_line = Some(range);
        } else if is(b"Contact", b"m") {
            p.contact.get_or_insert(value);
        } else if is(b"WWW-Authenticate", b"") || is(b"Proxy-Authenticate", b"") {
            p.challenge.get_or_insert(value);
        } else if is(b"Content-Length", b"l") {
            content_length = Some(parse_u64(value)? as usize);
        }
    }
    let rest = &data[hend + 4..];
    p.body = match content_length {
        Some(n) if n <= rest.len() => &rest[..n],
        Some(_) => return None,
        None => rest,
    };
    Some(p)
}

fn parse_u64(s: &[u8]) -> Option<u64> {
    if s.is_empty() || s.len() > 18 || !s.iter().all(u8::is_ascii_digit) {
        return None;
    }
    Some(s.iter().fold(0u64, |a, d| a * 10 + u64::from(d - b'0')))
}

/// `1 INVITE` -> (1, INVITE).
fn parse_cseq(v: &[u8]) -> Option<(u32, &[u8])> {
    let sp = v.iter().position(|&b| b == b' ' || b == b'\t')?;
    let n = u32::try_from(parse_u64(&v[..sp])?).ok()?;
    Some((n, trim(&v[sp + 1..])))
}

/// The `tag` parameter of a From/To value (after the `>` of a name-addr).
fn tag_of(v: &[u8]) -> Option<&[u8]> {
    let params = match v.iter().rposition(|&b| b == b'>') {
        Some(i) => &v[i + 1..],
        None => v,
    };
    params.split(|&b| b == b';').skip(1).find_map(|p| {
        let p = trim(p);
        let (k, val) = p.split_at(p.iter().position(|&b| b == b'=')?);
        trim(k)
            .eq_ignore_ascii_case(b"tag")
            .then(|| trim(&val[1..]))
            .filter(|t| !t.is_empty())
    })
}

/// The URI of a Contact value (`<uri>` or a bare URI up to its parameters).
fn contact_uri(v: &[u8]) -> Option<&[u8]> {
    let uri = match v.iter().position(|&b| b == b'<') {
        Some(a) => {
            let b = v[a..].iter().position(|&b| b == b'>')?;
            &v[a + 1..a + b]
        }
        None => v.split(|&b| b == b';' || b == b',').next()?,
    };
    let uri = trim(uri);
    (uri.starts_with(b"sip:") || uri.starts_with(b"sips:")).then_some(uri)
}

/// The user part of a SIP URI.
fn user_of(uri: &[u8]) -> Option<&[u8]> {
    let rest = uri.strip_prefix(b"sip:")?;
    let at = rest.iter().position(|&b| b == b'@')?;
    Some(&rest[..at]).filter(|u| !u.is_empty())
}

/// An SDP body with a connection address and an audio stream on a non-zero port.
fn sdp_ok(body: &[u8]) -> bool {
    let mut addr = false;
    let mut audio = false;
    for line in body.split(|&b| b == b'\n') {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        if let Some(c) = line
            .strip_prefix(b"c=IN IP4 ")
            .or(line.strip_prefix(b"c=IN IP6 "))
        {
            addr |= std::str::from_utf8(c)
                .ok()
                .and_then(|s| s.trim().parse::<std::net::IpAddr>().ok())
                .is_some();
        } else if let Some(m) = line.strip_prefix(b"m=audio ") {
            let port = m.split(|&b| b == b' ').next().and_then(parse_u64);
            audio |= port.is_some_and(|p| (1..=65535).contains(&p));
        }
    }
    addr && audio
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t0() -> Instant {
        // A fixed epoch for virtual time; only offsets from it matter.
        #[expect(clippy::disallowed_methods, reason = "test epoch for virtual time")]
        let t = Instant::now();
        t
    }

    fn cfg() -> LeanConfig {
        LeanConfig {
            target: "127.0.0.1:5060".parse().unwrap(),
            locals: vec![
                "127.0.1.1:4000".parse().unwrap(),
                "127.0.1.2:4000".parse().unwrap(),
            ],
            users: (1001..=1002)
                .map(|u| Account {
                    name: u.to_string(),
                    password: format!("pw{u}"),
                })
                .collect(),
            media: "127.0.0.1:7000".parse().unwrap(),
            setup_timeout: Duration::from_secs(8),
            run: 7,
        }
    }

    fn take(l: &mut Lean) -> Vec<(usize, SocketAddr, String)> {
        let v = l
            .outs()
            .iter()
            .map(|o| {
                (
                    o.local,
                    o.to,
                    String::from_utf8_lossy(&l.buf()[o.range.clone()]).into_owned(),
                )
            })
            .collect();
        l.clear_out();
        v
    }

    /// A response to `req` as a server would write it (Via, From, To, Call-ID, CSeq copied).
    fn reply(req: &str, code: u16, to_tag: Option<&str>, extra: &str, body: &str) -> Vec<u8> {
        let p = peek(req.as_bytes()).unwrap();
        let d = req.as_bytes();
        let mut r = format!("SIP/2.0 {code} X\r\n").into_bytes();
        for &(a, b) in &p.vias[..p.nvias] {
            r.extend_from_slice(&d[a..b]);
            r.extend_from_slice(b"\r\n");
        }
        for l in [p.from_line, p.to_line, p.call_id_line, p.cseq_line]
            .into_iter()
            .flatten()
        {
            r.extend_from_slice(&d[l.0..l.1]);
            if Some(l) == p.to_line {
                if let Some(t) = to_tag {
                    r.extend_from_slice(format!(";tag={t}").as_bytes());
                }
            }
            r.extend_from_slice(b"\r\n");
        }
        r.extend_from_slice(extra.as_bytes());
        r.extend_from_slice(format!("Content-Length: {}\r\n\r\n{body}", body.len()).as_bytes());
        r
    }

    const ANSWER: &str = "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\n\
                          t=0 0\r\nm=audio 30000 RTP/AVP 0\r\n";

    #[test]
    fn peek_keeps_the_headers_a_user_agent_needs() {
        let m = b"SIP/2.0 401 Unauthorized\r\nv: SIP/2.0/UDP a;branch=1, SIP/2.0/UDP b\r\n\
                  Via: SIP/2.0/UDP c\r\nf: <sip:a@h>;tag=x\r\nTo: <sip:b@h>;tag=y\r\n\
                  i: 1.7@bench\r\nCSeq: 1 INVITE\r\nWWW-Authenticate: Digest realm=\"r\"\r\n\
                  l: 3\r\n\r\nabcdef";
        let p = peek(m).unwrap();
        assert_eq!(p.start, Start::Response(401));
        assert_eq!(p.via_top, Some(&b"SIP/2.0/UDP a;branch=1"[..]));
        assert_eq!(p.nvias, 2);
        assert_eq!(p.from.and_then(tag_of), Some(&b"x"[..]));
        assert_eq!(p.to.and_then(tag_of), Some(&b"y"[..]));
        assert_eq!(p.call_id, Some(&b"1.7@bench"[..]));
        assert_eq!(p.cseq.and_then(parse_cseq), Some((1, &b"INVITE"[..])));
        assert_eq!(p.challenge, Some(&b"Digest realm=\"r\""[..]));
        assert_eq!(p.body, b"abc");
        // Not SIP, a Content-Length past the end, a folded line, no header end.
        assert!(peek(b"hello\r\n\r\n").is_none());
        assert!(peek(b"SIP/2.0 200 OK\r\nl: 9\r\n\r\nab").is_none());
        assert!(peek(b"SIP/2.0 200 OK\r\nTo: a\r\n b\r\n\r\n").is_none());
        assert!(peek(b"SIP/2.0 200 OK\r\nTo: a\r\n").is_none());
        assert!(peek(b"SIP/2.0 2x0 OK\r\n\r\n").is_none());
    }

    #[test]
    fn small_parsers() {
        assert_eq!(
            contact_uri(b"<sip:a@1.2.3.4:5>;expires=3"),
            Some(&b"sip:a@1.2.3.4:5"[..])
        );
        assert_eq!(contact_uri(b"sip:a@h;x=y"), Some(&b"sip:a@h"[..]));
        assert_eq!(contact_uri(b"<tel:1>"), None);
        assert_eq!(tag_of(b"\"a;tag=no\" <sip:a@h;tag=no>"), None);
        assert_eq!(tag_of(b"<sip:a@h> ; tag = z"), Some(&b"z"[..]));
        assert_eq!(user_of(b"sip:1003@127.0.1.2:4000"), Some(&b"1003"[..]));
        assert!(sdp_ok(ANSWER.as_bytes()));
        assert!(!sdp_ok(
            b"v=0\r\nc=IN IP4 127.0.0.1\r\nm=audio 0 RTP/AVP 0\r\n"
        ));
        assert!(!sdp_ok(
            b"v=0\r\nc=IN IP4 nowhere\r\nm=audio 4 RTP/AVP 0\r\n"
        ));
    }

    #[test]
    fn call_with_401_then_answer_then_bye() {
        let now = t0();
        let mut l = Lean::new(cfg());
        l.place_call(now);
        let out = take(&mut l);
        assert_eq!(out.len(), 1);
        let inv = &out[0].2;
        assert!(
            inv.starts_with("INVITE sip:1002@127.0.0.1:5060 SIP/2.0\r\n"),
            "{inv}"
        );
        assert!(inv.contains("Call-ID: 0.7@bench\r\n"), "{inv}");
        assert!(inv.contains("Contact: <sip:1001@127.0.1.1:4000>"), "{inv}");
        assert!(peek(inv.as_bytes()).is_some_and(|p| sdp_ok(p.body)));

        let chal = reply(
            inv,
            401,
            Some("s1"),
            "WWW-Authenticate: Digest realm=\"tandem\", nonce=\"abc\", qop=\"auth\"\r\n",
            "",
        );
        l.handle_datagram(0, cfg().target, &chal, now);
        let out = take(&mut l);
        assert_eq!(out.len(), 2, "{out:?}");
        assert!(out[0]
            .2
            .starts_with("ACK sip:1002@127.0.0.1:5060 SIP/2.0\r\n"));
        assert!(out[0].2.contains("CSeq: 1 ACK"), "{}", out[0].2);
        assert!(out[0].2.contains(";tag=s1"), "{}", out[0].2);
        let inv2 = &out[1].2;
        assert!(inv2.contains("CSeq: 2 INVITE"), "{inv2}");
        assert!(
            inv2.contains("Authorization: Digest username=\"1001\""),
            "{inv2}"
        );
        assert!(inv2.contains("nonce=\"abc\""), "{inv2}");

        // 100 then 200: ACK to the Contact, then BYE at once.
        l.handle_datagram(0, cfg().target, &reply(inv2, 100, None, "", ""), now);
        assert!(take(&mut l).is_empty());
        let ok = reply(
            inv2,
            200,
            Some("b2"),
            "Contact: <sip:gw@127.0.0.1:5060;transport=udp>\r\n",
            ANSWER,
        );
        let later = now + Duration::from_millis(3);
        l.handle_datagram(0, cfg().target, &ok, later);
        let out = take(&mut l);
        assert_eq!(out.len(), 2, "{out:?}");
        assert!(out[0]
            .2
            .starts_with("ACK sip:gw@127.0.0.1:5060;transport=udp SIP/2.0"));
        assert!(out[0].2.contains("CSeq: 2 ACK"));
        let bye = &out[1].2;
        assert!(bye.starts_with("BYE sip:gw@127.0.0.1:5060;transport=udp SIP/2.0"));
        assert!(
            bye.contains("CSeq: 3 BYE") && bye.contains("tag=b2"),
            "{bye}"
        );
        assert_eq!(l.tally().answered, 1);
        assert_eq!(l.tally().setup_us, vec![3000]);
        // A retransmitted 2xx is ACKed again, not answered twice.
        l.handle_datagram(0, cfg().target, &ok, later);
        assert_eq!(l.tally().answered, 1);
        let again = take(&mut l);
        assert_eq!(again.len(), 1);
        assert_eq!(again[0].2, out[0].2);
        assert_eq!(l.tally().anomalies.get("2xx-retransmitted"), Some(&1));
        l.handle_datagram(0, cfg().target, &reply(bye, 200, None, "", ""), later);
        assert_eq!(l.tally().completed, 1);
        assert_eq!(l.active(), 0);
        assert_eq!(l.tally().failed, 0);
    }

    #[test]
    fn errors_are_counted_by_code_and_foreign_responses_match_nothing() {
        let now = t0();
        let mut l = Lean::new(cfg());
        l.place_call(now);
        let inv = take(&mut l).remove(0).2;
        // Another run's call, and a wrong From tag: no effect on the call.
        let foreign = String::from_utf8(reply(&inv, 486, Some("x"), "", ""))
            .unwrap()
            .replace("0.7@bench", "0.8@bench");
        l.handle_datagram(0, cfg().target, foreign.as_bytes(), now);
        let wrong_tag = String::from_utf8(reply(&inv, 486, Some("x"), "", ""))
            .unwrap()
            .replace("tag=f0", "tag=f1");
        l.handle_datagram(0, cfg().target, wrong_tag.as_bytes(), now);
        assert_eq!(l.active(), 1);
        assert_eq!(l.tally().anomalies.get("response-unknown-call"), Some(&1));
        assert_eq!(l.tally().anomalies.get("response-wrong-from-tag"), Some(&1));
        l.handle_datagram(0, cfg().target, &reply(&inv, 486, Some("x"), "", ""), now);
        let out = take(&mut l);
        assert!(out.iter().any(|o| o.2.starts_with("ACK ")), "{out:?}");
        assert_eq!(l.tally().failures_by_code.get("486"), Some(&1));
        assert_eq!(l.active(), 0);
        // A 2xx without SDP fails as bad-sdp.
        l.place_call(now);
        let inv = take(&mut l).remove(0).2;
        let ok = reply(&inv, 200, Some("t"), "Contact: <sip:gw@127.0.0.1>\r\n", "");
        l.handle_datagram(0, cfg().target, &ok, now);
        assert_eq!(l.tally().failures_by_code.get("bad-sdp"), Some(&1));
        assert_eq!(l.tally().failed, 2);
    }

    #[test]
    fn invite_is_retransmitted_then_times_out() {
        let now = t0();
        let mut l = Lean::new(cfg());
        l.place_call(now);
        take(&mut l);
        l.handle_timeout(now + Duration::from_millis(499));
        assert!(take(&mut l).is_empty());
        l.handle_timeout(now + Duration::from_millis(500));
        assert_eq!(take(&mut l).len(), 1);
        l.handle_timeout(now + Duration::from_millis(1500));
        assert_eq!(take(&mut l).len(), 1);
        assert_eq!(l.tally().retransmissions, 2);
        let mut t = now;
        while l.active() > 0 && t < now + Duration::from_secs(20) {
            t = l.poll_timeout().unwrap();
            l.handle_timeout(t);
        }
        assert_eq!(l.tally().failures_by_code.get("timeout"), Some(&1));
        assert!(t >= now + Duration::from_secs(8));
    }

    #[test]
    fn through_a_proxy_a_retransmitted_callee_bye_does_not_end_the_caller() {
        let now = t0();
        let mut l = Lean::new(cfg());
        let gw = cfg().target;
        l.place_call(now);
        let inv = take(&mut l).remove(0).2;
        // The proxy forwards our INVITE (same Call-ID) to the callee, user 1002 on socket 1.
        let fwd = inv.replacen(
            "INVITE sip:1002@127.0.0.1:5060",
            "INVITE sip:1002@127.0.1.2:4000",
            1,
        );
        l.handle_datagram(1, gw, fwd.as_bytes(), now);
        let ok = take(&mut l).remove(0).2;
        l.handle_datagram(0, gw, ok.as_bytes(), now);
        let out = take(&mut l);
        let bye = &out[1].2;
        assert!(bye.starts_with("BYE sip:1002@127.0.1.2:4000 "), "{bye}");
        // Our BYE reaches the callee twice (the proxy retransmitted it).
        l.handle_datagram(1, gw, bye.as_bytes(), now);
        l.handle_datagram(1, gw, bye.as_bytes(), now);
        let out = take(&mut l);
        assert_eq!(out.len(), 2);
        assert!(out.iter().all(|o| o.2.starts_with("SIP/2.0 200 OK")));
        assert_eq!(l.active(), 1, "{:?}", l.tally().anomalies);
        l.handle_datagram(0, gw, out[0].2.as_bytes(), now);
        assert_eq!((l.active(), l.tally().completed), (0, 1));
        assert!(l.tally().anomalies.is_empty(), "{:?}", l.tally().anomalies);
        // A BYE from the server to a caller (To tag = the caller's From tag) ends it.
        l.place_call(now);
        let inv = take(&mut l).remove(0).2;
        let ok = reply(
            &inv,
            200,
            Some("b"),
            "Contact: <sip:gw@127.0.0.1>\r\n",
            ANSWER,
        );
        l.handle_datagram(0, gw, &ok, now);
        take(&mut l);
        let sbye =
            "BYE sip:1001@127.0.1.1:4000 SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1;branch=z9hG4bKs\r\n\
                    From: <sip:1002@h>;tag=b\r\nTo: <sip:1001@h>;tag=f1\r\nCall-ID: 1.7@bench\r\n\
                    CSeq: 9 BYE\r\nContent-Length: 0\r\n\r\n";
        l.handle_datagram(0, gw, sbye.as_bytes(), now);
        assert!(take(&mut l)[0].2.starts_with("SIP/2.0 200 OK"));
        assert_eq!(l.active(), 0);
        assert_eq!(l.tally().anomalies.get("call-ended-by-server"), Some(&1));
    }

    #[test]
    fn callee_answers_until_ack_and_bye_ends_the_leg() {
        let now = t0();
        let mut l = Lean::new(cfg());
        let gw: SocketAddr = "127.0.0.1:5060".parse().unwrap();
        let inv = format!(
            "INVITE sip:1002@127.0.1.2:4000 SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:5060;branch=z9hG4bKx\r\n\
             Via: SIP/2.0/UDP 10.0.0.1;branch=z9hG4bKy\r\nRecord-Route: <sip:127.0.0.1;lr>\r\n\
             From: <sip:1001@h>;tag=gw1\r\nTo: <sip:1002@h>\r\nCall-ID: gwcall\r\n\
             CSeq: 5 INVITE\r\nContact: <sip:gw@127.0.0.1:5060>\r\nContent-Length: {}\r\n\r\n{ANSWER}",
            ANSWER.len()
        );
        l.handle_datagram(1, gw, inv.as_bytes(), now);
        let out = take(&mut l);
        assert_eq!(out.len(), 1);
        let ok = &out[0].2;
        assert_eq!((out[0].0, out[0].1), (1, gw));
        assert!(ok.starts_with("SIP/2.0 200 OK\r\nVia: SIP/2.0/UDP 127.0.0.1:5060;branch=z9hG4bKx\r\nVia: SIP/2.0/UDP 10.0.0.1;branch=z9hG4bKy\r\nRecord-Route: <sip:127.0.0.1;lr>\r\n"), "{ok}");
        assert!(ok.contains("To: <sip:1002@h>;tag=l0\r\n"), "{ok}");
        assert!(
            ok.contains("CSeq: 5 INVITE\r\nContact: <sip:1002@127.0.1.2:4000>\r\n"),
            "{ok}"
        );
        assert!(peek(ok.as_bytes()).is_some_and(|p| sdp_ok(p.body)));
        // Retransmitted until the ACK; the INVITE retransmitted gets the same 200.
        l.handle_timeout(now + T1);
        assert_eq!(take(&mut l)[0].2, *ok);
        l.handle_datagram(1, gw, inv.as_bytes(), now + T1);
        assert_eq!(take(&mut l)[0].2, *ok);
        let ack =
            "ACK sip:1002@127.0.1.2:4000 SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1;branch=z9hG4bKa\r\n\
                   From: <sip:1001@h>;tag=gw1\r\nTo: <sip:1002@h>;tag=l0\r\nCall-ID: gwcall\r\n\
                   CSeq: 5 ACK\r\nContent-Length: 0\r\n\r\n";
        l.handle_datagram(1, gw, ack.as_bytes(), now + T1);
        l.handle_timeout(now + 10 * T1);
        assert!(take(&mut l).is_empty());
        let bye = ack.replace("ACK", "BYE").replace("CSeq: 5", "CSeq: 6");
        l.handle_datagram(1, gw, bye.as_bytes(), now + T1);
        let out = take(&mut l);
        assert!(out[0].2.starts_with("SIP/2.0 200 OK\r\n"), "{}", out[0].2);
        assert!(out[0].2.contains("CSeq: 6 BYE"));
        assert_eq!(l.open_legs(), 0);
        // Again (retransmitted): 200 again; an unknown dialog: 481.
        l.handle_datagram(1, gw, bye.as_bytes(), now + T1);
        assert!(take(&mut l)[0].2.starts_with("SIP/2.0 200 OK"));
        let other = bye.replace("gwcall", "nosuch");
        l.handle_datagram(1, gw, other.as_bytes(), now + T1);
        assert!(take(&mut l)[0].2.starts_with("SIP/2.0 481 "));
        assert_eq!(l.tally().anomalies.get("bye-unknown-dialog"), Some(&1));
    }
}
