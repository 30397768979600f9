//! Defence of the SIP listener against floods, scanners and password guessing.
//!
//! [`Defence`] is a sans-IO gate that `control::net` consults for every datagram *before* the
//! call engine sees it, and informs about every response the engine sends. It never reads the
//! clock (`now` is a parameter) and keeps bounded state:
//!
//! - size limits: the datagram, the number of header lines and the longest header line;
//! - a per-source request rate limit (a token bucket per source IP, like Kamailio's `pike`);
//!   a source that keeps exceeding it is banned for [`Limits::ban_secs`];
//! - failed-authentication counting per source IP (requests carrying credentials answered with a
//!   fresh challenge or a 403); too many in the window bans the source;
//! - a cap on the server transactions in flight (requests seen, final response not yet sent)
//!   and on the dialogs (INVITEs that got a 2xx and no BYE yet).
//!
//! Breaches are either answered (503 with Retry-After for overload, 513 for oversize
//! messages when a response can be formed) or dropped silently; every outcome is counted in
//! [`DefenceStats`]. Banned sources are always dropped silently: answering a flooder only
//! doubles the traffic.

use std::collections::{HashMap, VecDeque};
use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use crate::sip::{CSeq, Message, Method, NameAddr, Peek, Request, Response};

/// `[sip.limits]`: the knobs of [`Defence`]. Every key is optional; see `docs/sip-limits.md`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct Limits {
    /// Largest datagram accepted, bytes. Larger ones get 513 (or are dropped).
    pub max_message_bytes: usize,
    /// Most header lines in one message.
    pub max_headers: usize,
    /// Longest single header line, bytes.
    pub max_header_bytes: usize,
    /// Sustained requests per second allowed from one source IP.
    pub rate_per_sec: u32,
    /// Burst allowed above the sustained rate.
    pub rate_burst: u32,
    /// Requests refused for rate within one `window_secs` that get a source banned.
    pub rate_strikes: u32,
    /// Failed authentications within `window_secs` that get a source banned.
    pub auth_failures: u32,
    /// The window over which strikes and failures are counted, seconds.
    pub window_secs: u64,
    /// How long a ban lasts, seconds.
    pub ban_secs: u64,
    /// Server transactions in flight across all sources; new requests above get 503.
    pub max_transactions: usize,
    /// Established dialogs; new INVITEs above get 503.
    pub max_dialogs: usize,
    /// Source IPs tracked at once (older entries are evicted). Bounds memory under a spoofed
    /// source flood.
    pub max_sources: usize,
    /// Source IPs never limited nor banned (trunks, monitoring).
    pub allow: Vec<IpAddr>,
}

impl Default for Limits {
    fn default() -> Limits {
        Limits {
            max_message_bytes: 8192,
            max_headers: 100,
            max_header_bytes: 2048,
            rate_per_sec: 20,
            rate_burst: 40,
            rate_strikes: 50,
            auth_failures: 10,
            window_secs: 60,
            ban_secs: 300,
            max_transactions: 2000,
            max_dialogs: 1000,
            max_sources: 10_000,
            allow: Vec::new(),
        }
    }
}

/// Counters of what the defence did; all monotonic since start.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct DefenceStats {
    /// Datagrams that passed to the engine.
    pub passed: u64,
    /// Dropped because the source was banned.
    pub dropped_banned: u64,
    /// Refused for the per-source rate (503 or drop).
    pub rate_limited: u64,
    /// Refused for size or header limits (513 or drop).
    pub oversize: u64,
    /// Refused because the transaction or dialog cap was reached (503).
    pub overload: u64,
    /// Failed authentications observed.
    pub auth_failures: u64,
    /// Bans imposed.
    pub bans: u64,
    /// Sources banned right now.
    pub banned_now: usize,
    /// Server transactions in flight right now.
    pub transactions: usize,
    /// Dialogs established right now.
    pub dialogs: usize,
}

/// What to do with one datagram.
#[derive(Debug)]
pub enum Verdict {
    /// Hand it to the engine.
    Pass,
    /// Send this response (to the datagram's source) and do not hand it on.
    Reply(Box<Response>),
    /// Drop it without an answer (already counted).
    Drop,
}

/// Per-source state.
#[derive(Debug)]
struct Source {
    tokens: f64,
    refilled: Instant,
    window_start: Instant,
    strikes: u32,
    failures: u32,
    banned_until: Option<Instant>,
    last_seen: Instant,
}

/// A request waiting for its final response: (Call-ID, CSeq number, method).
type TxId = (String, u32, String);

/// The gate. See the module documentation for the calling contract.
#[derive(Debug)]
pub struct Defence {
    limits: Limits,
    sources: HashMap<IpAddr, Source>,
    /// Open server transactions, with the source and whether the request carried credentials.
    open: HashMap<TxId, (IpAddr, bool, Instant)>,
    /// Insertion order of `open`, for expiry.
    open_order: VecDeque<(TxId, Instant)>,
    /// Established dialogs by Call-ID.
    dialogs: HashMap<String, Instant>,
    stats: DefenceStats,
    /// Bans imposed since the last [`Defence::drain_bans`] (bounded).
    new_bans: Vec<(IpAddr, &'static str)>,
}

/// A transaction entry older than this is forgotten (Timer F / H territory).
const TX_LIFETIME: Duration = Duration::from_secs(40);
/// A dialog not ended by BYE is forgotten after this long (bounds memory if BYEs are lost).
const DIALOG_LIFETIME: Duration = Duration::from_secs(4 * 3600);

impl Defence {
    pub fn new(limits: Limits) -> Defence {
        Defence {
            limits,
            sources: HashMap::new(),
            open: HashMap::new(),
            open_order: VecDeque::new(),
            dialogs: HashMap::new(),
            stats: DefenceStats::default(),
            new_bans: Vec::new(),
        }
    }

    /// The limits in force.
    pub fn limits(&self) -> &Limits {
        &self.limits
    }

    /// A snapshot of the counters.
    pub fn defence_stats(&self, now: Instant) -> DefenceStats {
        let mut s = self.stats.clone();
        s.banned_now = self
            .sources
            .values()
            .filter(|x| x.banned_until.is_some_and(|b| b > now))
            .count();
        s.transactions = self.open.len();
        s.dialogs = self.dialogs.len();
        s
    }

    /// Bans imposed since the last call, with the reason (for the log).
    pub fn drain_bans(&mut self) -> Vec<(IpAddr, &'static str)> {
        std::mem::take(&mut self.new_bans)
    }

    /// Whether `ip` is banned at `now`.
    pub fn is_banned(&self, ip: IpAddr, now: Instant) -> bool {
        self.sources
            .get(&ip)
            .and_then(|s| s.banned_until)
            .is_some_and(|b| b > now)
    }

    /// The cheap first test, before parsing: true (and counted) when `from` is banned and the
    /// datagram must be dropped.
    pub fn drop_banned(&mut self, from: SocketAddr, now: Instant) -> bool {
        let ip = from.ip();
        if !self.limits.allow.contains(&ip) && self.is_banned(ip, now) {
            self.stats.dropped_banned += 1;
            return true;
        }
        false
    }

    /// Judges one raw datagram from `from`. `parsed` is the parse result when the caller
    /// already parsed it (only requests are limited; responses pass unless banned/oversize).
    pub fn handle_datagram(
        &mut self,
        bytes: &[u8],
        parsed: Option<&Message>,
        from: SocketAddr,
        now: Instant,
    ) -> Verdict {
        let ip = from.ip();
        let allowed = self.limits.allow.contains(&ip);
        if !allowed && self.is_banned(ip, now) {
            self.stats.dropped_banned += 1;
            return Verdict::Drop;
        }
        if let Some(why) = self.oversize(bytes) {
            self.stats.oversize += 1;
            return match parsed {
                Some(Message::Request(r)) if r.method != Method::Ack => {
                    Verdict::Reply(Box::new(Response::for_request(r, 513).with_reason(why)))
                }
                _ => Verdict::Drop,
            };
        }
        let req = match parsed {
            Some(Message::Request(r)) => r,
            // Responses and unparsable datagrams: the engine counts and drops them.
            _ => {
                self.stats.passed += 1;
                return Verdict::Pass;
            }
        };
        if !allowed && !self.take_token(ip, now) {
            self.stats.rate_limited += 1;
            // Retransmissions of a flood are not worth an answer; one 503 per strike would
            // still amplify. Drop silently.
            return Verdict::Drop;
        }
        self.expire(now);
        let id = tx_id(req);
        let new_tx = !self.open.contains_key(&id);
        if req.method != Method::Ack && new_tx {
            let new_dialog = req.method == Method::Invite
                && req
                    .headers
                    .get("To")
                    .is_some_and(|v| matches!(NameAddr::scan_tag(v), Ok(None)));
            if self.open.len() >= self.limits.max_transactions
                || (new_dialog && self.dialogs.len() >= self.limits.max_dialogs)
            {
                self.stats.overload += 1;
                let mut r = Response::for_request(req, 503).with_reason("Service Unavailable");
                r.headers.set("Retry-After", "5");
                return Verdict::Reply(Box::new(r));
            }
            let creds = req.headers.contains("Authorization")
                || req.headers.contains("Proxy-Authorization");
            self.open.insert(id.clone(), (ip, creds, now));
            self.open_order.push_back((id, now));
            if self.open_order.len() > self.limits.max_transactions.saturating_mul(4) {
                let open = &self.open;
                self.open_order
                    .retain(|(id, t)| open.get(id).is_some_and(|(_, _, t0)| t0 == t));
            }
        }
        self.stats.passed += 1;
        Verdict::Pass
    }

    /// Informs the gate of a response the engine sends (any destination). Closes
    /// transactions, counts failed authentications and tracks dialogs.
    pub fn handle_response_sent(&mut self, resp: &Response, now: Instant) {
        if resp.code < 200 {
            return;
        }
        let Some(cseq) = resp.cseq() else { return };
        let stale = || {
            resp.headers
                .iter()
                .any(|(_, v)| contains_ignore_case(v.as_bytes(), b"stale=true"))
        };
        self.response_sent(resp.code, resp.call_id().unwrap_or(""), cseq, stale, now);
    }

    /// Informs the gate of a message the engine sends, from its bytes (our own encoding):
    /// the same as [`Self::handle_response_sent`] / [`Self::handle_request_sent`] reading
    /// only the start line, Call-ID and CSeq ([`Peek`]), not a full parse.
    pub fn handle_sent(&mut self, bytes: &[u8], now: Instant) {
        if let Some(p) = Peek::new(bytes) {
            self.handle_peeked(&p, bytes, now);
        }
    }

    /// [`Self::handle_sent`] when the caller already has the [`Peek`] of `bytes`.
    pub fn handle_peeked(&mut self, p: &Peek<'_>, bytes: &[u8], now: Instant) {
        match p.code {
            Some(code) if code >= 200 => {
                let Some(cseq) = p.cseq.and_then(|v| CSeq::parse(v).ok()) else {
                    return;
                };
                let stale = || contains_ignore_case(bytes, b"stale=true");
                self.response_sent(code, p.call_id.unwrap_or(""), cseq, stale, now);
            }
            Some(_) => {}
            None => {
                if p.method == Some("BYE") {
                    if let Some(c) = p.call_id {
                        self.dialogs.remove(c);
                    }
                }
            }
        }
    }

    /// A final response `code` for (`call_id`, `cseq`) leaves; `stale` tells whether a
    /// challenge says `stale=true`.
    fn response_sent(
        &mut self,
        code: u16,
        call_id: &str,
        cseq: CSeq,
        stale: impl FnOnce() -> bool,
        now: Instant,
    ) {
        let id = (
            call_id.to_string(),
            cseq.seq,
            cseq.method.as_str().to_string(),
        );
        let Some((ip, creds, _)) = self.open.remove(&id) else {
            return;
        };
        let challenged_again = matches!(code, 401 | 407) && !stale();
        if creds && (challenged_again || code == 403) {
            self.auth_failed(ip, now);
        }
        let call_id = id.0;
        match cseq.method {
            Method::Invite if (200..300).contains(&code) => {
                if self.dialogs.len() < self.limits.max_dialogs.saturating_mul(2) {
                    self.dialogs.insert(call_id, now);
                }
            }
            Method::Bye => {
                self.dialogs.remove(&call_id);
            }
            _ => {}
        }
    }

    /// A BYE we sent ourselves (hangup from our side) ends the dialog too.
    pub fn handle_request_sent(&mut self, req: &Request) {
        if req.method == Method::Bye {
            if let Some(c) = req.call_id() {
                self.dialogs.remove(c);
            }
        }
    }

    fn auth_failed(&mut self, ip: IpAddr, now: Instant) {
        self.stats.auth_failures += 1;
        if self.limits.allow.contains(&ip) {
            return;
        }
        let limit = self.limits.auth_failures;
        let s = self.source(ip, now);
        s.failures += 1;
        if s.failures >= limit {
            self.ban(ip, now, "failed authentications");
        }
    }

    fn ban(&mut self, ip: IpAddr, now: Instant, why: &'static str) {
        let until = now + Duration::from_secs(self.limits.ban_secs);
        if let Some(s) = self.sources.get_mut(&ip) {
            if s.banned_until.is_none_or(|b| b <= now) {
                self.stats.bans += 1;
                if self.new_bans.len() < 64 {
                    self.new_bans.push((ip, why));
                }
            }
            s.banned_until = Some(until);
            s.strikes = 0;
            s.failures = 0;
        }
    }

    fn source(&mut self, ip: IpAddr, now: Instant) -> &mut Source {
        if !self.sources.contains_key(&ip) && self.sources.len() >= self.limits.max_sources {
            self.evict(now);
        }
        let window = Duration::from_secs(self.limits.window_secs);
        let burst = f64::from(self.limits.rate_burst.max(1));
        let s = self.sources.entry(ip).or_insert(Source {
            tokens: burst,
            refilled: now,
            window_start: now,
            strikes: 0,
            failures: 0,
            banned_until: None,
            last_seen: now,
        });
        if now.saturating_duration_since(s.window_start) >= window {
            s.window_start = now;
            s.strikes = 0;
            s.failures = 0;
        }
        s.last_seen = now;
        s
    }

    /// Drops idle unbanned sources; if none, the least recently seen one.
    fn evict(&mut self, now: Instant) {
        let window = Duration::from_secs(self.limits.window_secs);
        self.sources.retain(|_, s| {
            s.banned_until.is_some_and(|b| b > now)
                || now.saturating_duration_since(s.last_seen) < window
        });
        if self.sources.len() >= self.limits.max_sources {
            if let Some(ip) = self
                .sources
                .iter()
                .min_by_key(|(_, s)| s.last_seen)
                .map(|(ip, _)| *ip)
            {
                self.sources.remove(&ip);
            }
        }
    }

    /// Token bucket; a refusal is a strike, and enough strikes in the window ban the source.
    fn take_token(&mut self, ip: IpAddr, now: Instant) -> bool {
        let rate = f64::from(self.limits.rate_per_sec);
        let burst = f64::from(self.limits.rate_burst.max(1));
        let strikes = self.limits.rate_strikes;
        let s = self.source(ip, now);
        let dt = now.saturating_duration_since(s.refilled).as_secs_f64();
        s.tokens = (s.tokens + dt * rate).min(burst);
        s.refilled = now;
        if s.tokens >= 1.0 {
            s.tokens -= 1.0;
            return true;
        }
        s.strikes += 1;
        if s.strikes >= strikes {
            self.ban(ip, now, "request rate");
        }
        false
    }

    /// Forgets transactions that never got a final response and long-lived dialogs.
    fn expire(&mut self, now: Instant) {
        while let Some((id, t)) = self.open_order.front() {
            if now.saturating_duration_since(*t) < TX_LIFETIME {
                break;
            }
            if self.open.get(id).is_some_and(|(_, _, t0)| t0 == t) {
                self.open.remove(id);
            }
            self.open_order.pop_front();
        }
        if self.dialogs.len() >= self.limits.max_dialogs {
            self.dialogs
                .retain(|_, t| now.saturating_duration_since(*t) < DIALOG_LIFETIME);
        }
    }

    fn oversize(&self, bytes: &[u8]) -> Option<&'static str> {
        if bytes.len() > self.limits.max_message_bytes {
            return Some("Message Too Large");
        }
        // One pass over the header block (up to the first CR LF CR LF), line by line.
        let mut lines = 0usize;
        let mut start = 0;
        let mut at = 0;
        loop {
            let (end, last) = match memchr::memchr(b'\n', &bytes[at..]) {
                Some(off) => {
                    let p = at + off;
                    let blank_follows = p > 0
                        && bytes[p - 1] == b'\r'
                        && bytes.get(p + 1..p + 3) == Some(&b"\r\n"[..]);
                    if blank_follows {
                        (p - 1, true)
                    } else {
                        at = p + 1;
                        (p, false)
                    }
                }
                None => (bytes.len(), true),
            };
            lines += 1;
            if end - start > self.limits.max_header_bytes {
                return Some("Message Too Large (header too long)");
            }
            if last {
                break;
            }
            start = at;
        }
        // The start line is not a header.
        if lines > self.limits.max_headers + 1 {
            return Some("Message Too Large (too many headers)");
        }
        None
    }
}

/// Whether `hay` contains `needle` (ASCII, any case), without building a lowered copy.
fn contains_ignore_case(hay: &[u8], needle: &[u8]) -> bool {
    hay.windows(needle.len())
        .any(|w| w.eq_ignore_ascii_case(needle))
}

fn tx_id(req: &Request) -> TxId {
    let (seq, m) = req
        .cseq()
        .map_or((0, req.method.as_str().to_string()), |c| {
            (c.seq, c.method.as_str().to_string())
        });
    (req.call_id().unwrap_or("").to_string(), seq, m)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[allow(clippy::disallowed_methods)]
    fn epoch() -> Instant {
        Instant::now()
    }

    fn req(method: &str, call: &str, seq: u32, auth: bool) -> Message {
        let mut s = format!(
            "{method} sip:1002@t SIP/2.0\r\nVia: SIP/2.0/UDP 10.0.0.9;branch=z9hG4bK{call}{seq}\r\n\
             From: <sip:1001@t>;tag=a\r\nTo: <sip:1002@t>\r\nCall-ID: {call}\r\n\
             CSeq: {seq} {method}\r\nMax-Forwards: 70\r\n"
        );
        if auth {
            s.push_str("Authorization: Digest username=\"x\"\r\n");
        }
        s.push_str("Content-Length: 0\r\n\r\n");
        Message::parse(s.as_bytes()).unwrap()
    }

    fn gate(d: &mut Defence, m: &Message, ip: &str, now: Instant) -> Verdict {
        let from: SocketAddr = format!("{ip}:5060").parse().unwrap();
        d.handle_datagram(&m.to_bytes(), Some(m), from, now)
    }

    fn reply(m: &Message, code: u16) -> Response {
        let Message::Request(r) = m else { panic!() };
        let mut resp = Response::for_request(r, code);
        if code == 401 {
            resp.headers.push("WWW-Authenticate", "Digest realm=\"t\"");
        }
        resp
    }

    #[test]
    fn rate_limit_then_ban_then_unban() {
        let limits = Limits {
            rate_per_sec: 10,
            rate_burst: 5,
            rate_strikes: 3,
            ban_secs: 10,
            ..Limits::default()
        };
        let mut d = Defence::new(limits);
        let t = epoch();
        for i in 0..5 {
            assert!(matches!(
                gate(&mut d, &req("OPTIONS", "c", i, false), "10.0.0.9", t),
                Verdict::Pass
            ));
        }
        for i in 5..8 {
            assert!(matches!(
                gate(&mut d, &req("OPTIONS", "c", i, false), "10.0.0.9", t),
                Verdict::Drop
            ));
        }
        assert!(d.is_banned("10.0.0.9".parse().unwrap(), t));
        // another source is unaffected
        assert!(matches!(
            gate(&mut d, &req("OPTIONS", "d", 1, false), "10.0.0.8", t),
            Verdict::Pass
        ));
        let st = d.defence_stats(t);
        assert_eq!((st.rate_limited, st.bans, st.banned_now), (3, 1, 1));
        let later = t + Duration::from_secs(11);
        assert!(matches!(
            gate(&mut d, &req("OPTIONS", "c", 9, false), "10.0.0.9", later),
            Verdict::Pass
        ));
    }

    #[test]
    fn failed_auth_bans_but_challenges_do_not() {
        let limits = Limits {
            auth_failures: 3,
            ..Limits::default()
        };
        let mut d = Defence::new(limits);
        let t = epoch();
        // plain challenges (no credentials) never count
        for i in 0..10 {
            let m = req("REGISTER", "r", i, false);
            assert!(matches!(gate(&mut d, &m, "10.0.0.9", t), Verdict::Pass));
            d.handle_response_sent(&reply(&m, 401), t);
        }
        assert_eq!(d.defence_stats(t).auth_failures, 0);
        for i in 10..13 {
            let m = req("REGISTER", "r", i, true);
            assert!(matches!(gate(&mut d, &m, "10.0.0.9", t), Verdict::Pass));
            d.handle_response_sent(&reply(&m, 401), t);
        }
        assert_eq!(d.defence_stats(t).auth_failures, 3);
        assert!(d.is_banned("10.0.0.9".parse().unwrap(), t));
        assert!(matches!(
            gate(&mut d, &req("REGISTER", "r", 20, true), "10.0.0.9", t),
            Verdict::Drop
        ));
    }

    #[test]
    fn sent_bytes_count_like_sent_messages() {
        let limits = Limits {
            auth_failures: 2,
            ..Limits::default()
        };
        let mut d = Defence::new(limits);
        let t = epoch();
        let bytes = |r: Response| Message::Response(r).to_bytes();
        // A stale challenge is not a failure; plain ones with credentials are.
        let m = req("REGISTER", "r", 1, true);
        assert!(matches!(gate(&mut d, &m, "10.0.0.9", t), Verdict::Pass));
        let mut stale = reply(&m, 401);
        stale
            .headers
            .set("WWW-Authenticate", "Digest realm=\"t\", Stale=TRUE");
        d.handle_sent(&bytes(stale), t);
        assert_eq!(d.defence_stats(t).auth_failures, 0);
        for i in 2..4 {
            let m = req("REGISTER", "r", i, true);
            assert!(matches!(gate(&mut d, &m, "10.0.0.9", t), Verdict::Pass));
            // A provisional response leaves the transaction open.
            d.handle_sent(&bytes(reply(&m, 100)), t);
            d.handle_sent(&bytes(reply(&m, 401)), t);
        }
        assert_eq!(d.defence_stats(t).auth_failures, 2);
        assert!(d.is_banned("10.0.0.9".parse().unwrap(), t));
        // Dialogs: a 2xx to INVITE opens one, our own BYE closes it.
        let a = req("INVITE", "a", 1, false);
        assert!(matches!(gate(&mut d, &a, "10.0.0.1", t), Verdict::Pass));
        d.handle_sent(&bytes(reply(&a, 200)), t);
        assert_eq!(d.defence_stats(t).dialogs, 1);
        assert_eq!(d.defence_stats(t).transactions, 0);
        let Message::Request(bye) = req("BYE", "a", 2, false) else {
            panic!()
        };
        d.handle_sent(&bye.to_bytes(), t);
        assert_eq!(d.defence_stats(t).dialogs, 0);
        d.handle_sent(b"not SIP", t);
    }

    #[test]
    fn transaction_and_dialog_caps() {
        let limits = Limits {
            max_transactions: 2,
            max_dialogs: 1,
            ..Limits::default()
        };
        let mut d = Defence::new(limits);
        let t = epoch();
        let a = req("INVITE", "a", 1, false);
        let b = req("INVITE", "b", 1, false);
        assert!(matches!(gate(&mut d, &a, "10.0.0.1", t), Verdict::Pass));
        // a retransmission is not a new transaction
        assert!(matches!(gate(&mut d, &a, "10.0.0.1", t), Verdict::Pass));
        assert!(matches!(gate(&mut d, &b, "10.0.0.2", t), Verdict::Pass));
        let c = req("OPTIONS", "c", 1, false);
        match gate(&mut d, &c, "10.0.0.3", t) {
            Verdict::Reply(r) => assert_eq!(r.code, 503),
            v => panic!("{v:?}"),
        }
        d.handle_response_sent(&reply(&a, 200), t);
        d.handle_response_sent(&reply(&b, 486), t);
        assert_eq!(d.defence_stats(t).dialogs, 1);
        // dialog cap: a second new INVITE is refused while the first call is up
        match gate(&mut d, &req("INVITE", "e", 1, false), "10.0.0.3", t) {
            Verdict::Reply(r) => assert_eq!(r.code, 503),
            v => panic!("{v:?}"),
        }
        let bye = req("BYE", "a", 2, false);
        assert!(matches!(gate(&mut d, &bye, "10.0.0.1", t), Verdict::Pass));
        d.handle_response_sent(&reply(&bye, 200), t);
        assert_eq!(d.defence_stats(t).dialogs, 0);
        assert_eq!(d.defence_stats(t).transactions, 0);
    }

    #[test]
    fn size_limits() {
        let limits = Limits {
            max_message_bytes: 600,
            max_headers: 8,
            ..Limits::default()
        };
        let mut d = Defence::new(limits);
        let t = epoch();
        let from: SocketAddr = "10.0.0.1:5060".parse().unwrap();
        let Message::Request(mut r) = req("OPTIONS", "s", 1, false) else {
            panic!()
        };
        r.headers.push("X-Pad", "x".repeat(700));
        let m = Message::Request(r.clone());
        match d.handle_datagram(&m.to_bytes(), Some(&m), from, t) {
            Verdict::Reply(resp) => assert_eq!(resp.code, 513),
            v => panic!("{v:?}"),
        }
        // too many headers, unparsed (garbage): dropped, counted
        let junk = "X: y\r\n".repeat(20);
        let v = d.handle_datagram(junk.as_bytes(), None, from, t);
        assert!(matches!(v, Verdict::Drop));
        assert_eq!(d.defence_stats(t).oversize, 2);
    }

    #[test]
    fn spoofed_source_flood_keeps_memory_bounded() {
        let limits = Limits {
            max_sources: 100,
            ..Limits::default()
        };
        let mut d = Defence::new(limits);
        let t = epoch();
        for i in 0..5000u32 {
            let ip = format!("10.{}.{}.{}", i >> 16, (i >> 8) & 0xff, i & 0xff);
            let m = req("OPTIONS", &format!("x{i}"), 1, false);
            let _ = gate(&mut d, &m, &ip, t);
            d.handle_response_sent(&reply(&m, 200), t);
        }
        assert!(d.sources.len() <= 100);
        assert_eq!(d.open.len(), 0);
    }

    #[test]
    fn oversize_one_pass_matches_the_split_reading() {
        // The reading the one-pass scan replaced: the header block ends at the first
        // CR LF CR LF; every '\n'-separated piece before it is a line.
        fn reference(bytes: &[u8], max_line: usize, max_headers: usize) -> Option<&'static str> {
            let head_end = bytes
                .windows(4)
                .position(|w| w == b"\r\n\r\n")
                .unwrap_or(bytes.len());
            let mut lines = 0usize;
            for line in bytes[..head_end].split(|&b| b == b'\n') {
                lines += 1;
                if line.len() > max_line {
                    return Some("Message Too Large (header too long)");
                }
            }
            (lines > max_headers + 1).then_some("Message Too Large (too many headers)")
        }
        let limits = Limits {
            max_headers: 3,
            max_header_bytes: 6,
            ..Limits::default()
        };
        let d = Defence::new(limits);
        let cases: &[&[u8]] = &[
            b"",
            b"\n",
            b"\r\n\r\n",
            b"\r\n\r\nbody that is long",
            b"A\r\nB\r\nC\r\nD\r\n\r\n",
            b"A\r\nB\r\nC\r\nD\r\nE\r\n\r\n",
            b"A\nB\nC\nD\nE\n\n",
            b"ABCDEF\r\n\r\n",
            b"ABCDEFG\r\n\r\n",
            b"ABCDE\r\n\r\nx",
            b"ABCDEF\r\nx",
            b"ABCDEFG",
            b"A\r\n\r\r\n\r\nB",
            b"A\r\r\n\r\n",
            b"\nABCDEFGH",
            b"A\r\nB\r\n\r\nC\r\nD\r\nE\r\nF\r\n",
        ];
        for c in cases {
            assert_eq!(
                d.oversize(c),
                reference(c, 6, 3),
                "{:?}",
                String::from_utf8_lossy(c)
            );
        }
        let invite = format!(
            "INVITE sip:1002@t SIP/2.0\r\nVia: SIP/2.0/UDP h;branch=z9hG4bK1\r\n{}\r\n",
            "X-Pad: y\r\n".repeat(120)
        );
        let d = Defence::new(Limits::default());
        assert_eq!(
            d.oversize(invite.as_bytes()),
            reference(invite.as_bytes(), 2048, 100)
        );
        assert!(d.oversize(invite.as_bytes()).is_some());
    }
}
