//! Registrar and location service (RFC 3261 §10.3) with digest authentication of REGISTER and
//! of other requests ([`Registrar::authenticate`], 407 challenges for INVITE and friends).
//!
//! Hardening (issue 3):
//! - SHA-256 (RFC 8760) answers are accepted; a SHA-256 challenge is offered first beside MD5
//!   when [`Registrar::set_offer_sha256`] is on (off by default: baresip 1.0 rejects it);
//! - `qop=auth` nonce counts must grow per nonce: a repeated or lower `nc` is a replay and is
//!   challenged again. The table is bounded by [`NC_TABLE_MAX`] and the nonce lifetime; when
//!   it is full the oldest-minted eighth is dropped and any nonce minted up to then is
//!   answered `stale=true` (the client retries with a fresh nonce at once), so a busy server
//!   keeps authenticating new calls and never accepts a replay of a dropped nonce;
//! - an unknown user and a wrong password get the same 403 after the same hashing work,
//!   so a scanner cannot enumerate users.
//!
//! Sans-IO: the caller passes `now` (monotonic, for binding expiry) and `now_secs` (wall-clock
//! seconds, for nonce ageing) and sends the returned response through its server transaction.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use super::digest::{self, Algorithm, Credentials, NonceMint, NonceState};
use super::message::{new_tag, NameAddr, Request, Response, Uri};

/// Default registration interval when the client asks for none (seconds).
pub const DEFAULT_EXPIRES: u32 = 3600;
/// Shorter requests are refused with 423 (seconds).
pub const MIN_EXPIRES: u32 = 60;
/// Longer requests are cut down to this (seconds).
pub const MAX_EXPIRES: u32 = 7200;
/// Nonce counts in use: nonce -> (last `nc`, mint time), and the mint time up to which
/// entries were dropped to make room.
#[derive(Debug, Default)]
struct NonceCounts {
    map: HashMap<String, (u32, u64)>,
    floor: u64,
}

/// What a nonce count says about a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Count {
    /// First use of the nonce, or a higher `nc`.
    Fresh,
    /// `nc` not above the last accepted one: a replay.
    Replay,
    /// Minted before the table dropped its oldest entries: ask for a fresh nonce (stale).
    Dropped,
}

/// Mint time of a nonce the mint has accepted (its first 16 hex digits).
fn minted_at(nonce: &str) -> u64 {
    nonce
        .get(..16)
        .and_then(|h| u64::from_str_radix(h, 16).ok())
        .unwrap_or(0)
}

/// How long a nonce stays fresh.
pub const NONCE_LIFETIME: Duration = Duration::from_secs(300);
/// Most nonces whose count is tracked at once. When full (and nothing has aged out), the
/// oldest-minted eighth is dropped and nonces minted up to then count as stale.
pub const NC_TABLE_MAX: usize = 20_000;

/// One registered contact of a user.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Binding {
    /// The Contact URI (without `<>` and header parameters).
    pub contact: String,
    /// Where the REGISTER came from (send requests here when behind NAT).
    pub source: SocketAddr,
    /// The transport the REGISTER came over (its top Via): requests to this binding use it,
    /// on the connection the REGISTER came in on while it is open.
    pub transport: super::transport::Transport,
    pub expires_at: Instant,
    pub call_id: String,
    pub cseq: u32,
    pub user_agent: Option<String>,
}

/// Outcome of [`Registrar::authenticate`].
#[derive(Debug, Clone)]
pub enum Auth {
    /// Credentials check out for `user`.
    Ok { user: String },
    /// Send this 401/407 challenge.
    Challenge(Response),
    /// Send this 403.
    Forbidden(Response),
    /// The user is not local and remote (RADIUS) authentication is on: the nonce is ours and
    /// fresh, the caller must have these credentials checked and then proceed or refuse.
    Remote(Credentials),
}

/// The first half of a REGISTER ([`Registrar::begin_register`]).
#[derive(Debug, Clone)]
pub enum RegisterStep {
    /// The final answer (challenge, refusal or, for a local user, the 200 with bindings).
    Done(Response),
    /// Have these credentials checked remotely, then call [`Registrar::finish_register`]
    /// (accepted) or answer [`Registrar::forbidden`] (rejected).
    Remote(Credentials),
}

/// Users, their bindings, and the nonce mint.
#[derive(Debug)]
pub struct Registrar {
    realm: String,
    users: HashMap<String, String>,
    mint: NonceMint,
    bindings: HashMap<String, Vec<Binding>>,
    /// Highest `nc` accepted per nonce, with the wall second it was first used. Behind a
    /// mutex because [`Registrar::authenticate`] takes `&self`.
    nonce_counts: Mutex<NonceCounts>,
    /// Offer a SHA-256 challenge (first) beside MD5.
    offer_sha256: bool,
    /// Users missing from `users` are checked remotely (RADIUS) instead of refused.
    remote: bool,
}

/// Result of checking a request's credentials, before it is turned into a response.
enum Check {
    Ok(String),
    Remote(Box<Credentials>),
    /// Challenge; `true` = stale.
    Challenge(bool),
    /// Credentials for our realm and a valid nonce, but wrong (unknown user or wrong password).
    Refuse,
}

impl Registrar {
    pub fn new(realm: String, users: HashMap<String, String>, secret: [u8; 32]) -> Registrar {
        Registrar {
            realm,
            users,
            mint: NonceMint::new(secret, NONCE_LIFETIME),
            bindings: HashMap::new(),
            nonce_counts: Mutex::new(NonceCounts::default()),
            offer_sha256: false,
            remote: false,
        }
    }

    /// Offer SHA-256 (RFC 8760) challenges, first, beside MD5. Off by default: some deployed
    /// UAs refuse a 401 that names an algorithm they do not know.
    /// Check users that are not in the local table remotely ([`Auth::Remote`]).
    pub fn set_remote_auth(&mut self, on: bool) {
        self.remote = on;
    }

    /// The 403 a remote refusal gets (the same as a local wrong password).
    pub fn forbidden(req: &Request) -> Response {
        Self::reject(req, 403, None)
    }

    pub fn set_offer_sha256(&mut self, on: bool) {
        self.offer_sha256 = on;
    }

    pub fn realm(&self) -> &str {
        &self.realm
    }

    /// Checks the credentials in `header` (Authorization or Proxy-Authorization) of `req`.
    fn check(&self, req: &Request, headers: &[&str], now_secs: u64) -> Check {
        // Only credentials for our realm count (§22.3: a request may carry several).
        let creds = headers
            .iter()
            .flat_map(|h| req.headers.get_all(h))
            .filter_map(|v| Credentials::parse(v).ok())
            .find(|c| c.realm == self.realm);
        let Some(c) = creds else {
            return Check::Challenge(false);
        };
        let state = self.mint.check(&c.nonce, now_secs);
        if state == NonceState::Invalid {
            return Check::Challenge(false);
        }
        if self.remote && !self.users.contains_key(&c.username) {
            if state == NonceState::Stale {
                return Check::Challenge(true);
            }
            return match self.count_nonce(&c, now_secs) {
                Count::Fresh => Check::Remote(Box::new(c)),
                Count::Replay => Check::Challenge(false),
                Count::Dropped => Check::Challenge(true),
            };
        }
        // Unknown user or wrong password: the same work and the same answer (403, after
        // the challenge), so the response does not tell whether the user exists.
        let (password, known) = match self.users.get(&c.username) {
            Some(p) => (p.as_str(), true),
            None => ("\u{0}no such user\u{0}", false),
        };
        let good = digest::verify(&c, req.method.as_str(), password);
        if !(good && known) {
            return Check::Refuse;
        }
        if state == NonceState::Stale {
            return Check::Challenge(true);
        }
        match self.count_nonce(&c, now_secs) {
            Count::Fresh => Check::Ok(c.username),
            Count::Replay => Check::Challenge(false),
            Count::Dropped => Check::Challenge(true),
        }
    }

    /// Records the use of `c.nonce` (valid, checked by the mint) with `c.nc`: a replay is an
    /// `nc` not above the last accepted one, or a nonce minted before the table last dropped
    /// its oldest entries (its count is no longer known).
    fn count_nonce(&self, c: &Credentials, now_secs: u64) -> Count {
        let Some(nc) = c.nc.as_deref() else {
            // No qop (RFC 2069 form): there is no count to check; the nonce lifetime bounds
            // reuse. We always offer qop=auth, so only old clients get here.
            return Count::Fresh;
        };
        let Ok(nc) = u32::from_str_radix(nc.trim(), 16) else {
            return Count::Replay;
        };
        let Ok(mut t) = self.nonce_counts.lock() else {
            return Count::Replay;
        };
        let minted = minted_at(&c.nonce);
        if let Some((last, _)) = t.map.get_mut(&c.nonce) {
            if nc <= *last {
                return Count::Replay;
            }
            *last = nc;
            return Count::Fresh;
        }
        if minted <= t.floor {
            return Count::Dropped;
        }
        if t.map.len() >= NC_TABLE_MAX {
            let life = NONCE_LIFETIME.as_secs();
            t.map
                .retain(|_, (_, m)| now_secs.saturating_sub(*m) <= life);
        }
        if t.map.len() >= NC_TABLE_MAX {
            // Drop the oldest-minted eighth (whole seconds); their nonces count as stale.
            let mut ts: Vec<u64> = t.map.values().map(|(_, m)| *m).collect();
            let k = ts.len() / 8;
            let (_, floor, _) = ts.select_nth_unstable(k);
            let floor = *floor;
            t.floor = t.floor.max(floor);
            t.map.retain(|_, (_, m)| *m > floor);
            if minted <= floor {
                return Count::Dropped;
            }
        }
        t.map.insert(c.nonce.clone(), (nc, minted));
        Count::Fresh
    }

    fn challenge(
        &self,
        req: &Request,
        code: u16,
        header: &str,
        stale: bool,
        now_secs: u64,
    ) -> Response {
        let mut r = Response::for_request(req, code);
        r.set_to_tag(&new_tag());
        let nonce = self.mint.mint(now_secs);
        // RFC 8760 §2.4: one challenge per algorithm. SHA-256 is offered only when enabled:
        // baresip/libre 1.0 fails the whole authentication (ENOSYS) when any challenge names
        // an algorithm it lacks, even with MD5 beside it. SHA-256 answers are always accepted.
        let algs: &[Algorithm] = if self.offer_sha256 {
            &[Algorithm::Sha256, Algorithm::Md5]
        } else {
            &[Algorithm::Md5]
        };
        for &alg in algs {
            r.headers
                .push(header, digest::challenge(&self.realm, &nonce, alg, stale));
        }
        r
    }

    fn reject(req: &Request, code: u16, reason: Option<&str>) -> Response {
        let mut r = Response::for_request(req, code);
        if let Some(reason) = reason {
            r.reason = format!("{} ({reason})", r.reason);
        }
        r.set_to_tag(&new_tag());
        r
    }

    /// Authenticates a non-REGISTER request (INVITE, ...): 407 with Proxy-Authenticate when it
    /// has no usable credentials. Accepts Proxy-Authorization or Authorization.
    pub fn authenticate(&self, req: &Request, now_secs: u64) -> Auth {
        match self.check(req, &["Proxy-Authorization", "Authorization"], now_secs) {
            Check::Ok(user) => Auth::Ok { user },
            Check::Remote(c) => Auth::Remote(*c),
            Check::Challenge(stale) => {
                Auth::Challenge(self.challenge(req, 407, "Proxy-Authenticate", stale, now_secs))
            }
            Check::Refuse => Auth::Forbidden(Self::reject(req, 403, None)),
        }
    }

    /// Handles one REGISTER completely and returns the final response to send.
    pub fn handle_register(
        &mut self,
        req: &Request,
        from: SocketAddr,
        now: Instant,
        now_secs: u64,
    ) -> Response {
        match self.begin_register(req, from, now, now_secs) {
            RegisterStep::Done(r) => r,
            RegisterStep::Remote(_) => Self::forbidden(req),
        }
    }

    /// A REGISTER up to authentication: a local user is handled to the end; a remote one
    /// ([`RegisterStep::Remote`]) waits for [`Registrar::finish_register`].
    pub fn begin_register(
        &mut self,
        req: &Request,
        from: SocketAddr,
        now: Instant,
        now_secs: u64,
    ) -> RegisterStep {
        let Some(to) = req.to() else {
            return RegisterStep::Done(Self::reject(req, 400, Some("bad To")));
        };
        if req.call_id().is_none() || req.cseq().is_none() {
            return RegisterStep::Done(Self::reject(req, 400, Some("bad Call-ID or CSeq")));
        }
        if !to.uri.is_sip() {
            return RegisterStep::Done(Self::reject(req, 400, Some("To is not a SIP URI")));
        }
        match self.check(req, &["Authorization"], now_secs) {
            Check::Ok(user) => RegisterStep::Done(self.finish_register(req, from, &user, now)),
            Check::Remote(c) => RegisterStep::Remote(*c),
            Check::Challenge(stale) => {
                RegisterStep::Done(self.challenge(req, 401, "WWW-Authenticate", stale, now_secs))
            }
            Check::Refuse => RegisterStep::Done(Self::reject(req, 403, None)),
        }
    }

    /// A REGISTER whose credentials for `user` were verified: update the bindings.
    pub fn finish_register(
        &mut self,
        req: &Request,
        from: SocketAddr,
        user: &str,
        now: Instant,
    ) -> Response {
        let Some(to) = req.to() else {
            return Self::reject(req, 400, Some("bad To"));
        };
        let (Some(call_id), Some(cseq)) = (req.call_id(), req.cseq()) else {
            return Self::reject(req, 400, Some("bad Call-ID or CSeq"));
        };
        let aor = to.uri.user_name().unwrap_or("").to_string();
        let user = user.to_string();
        if user != aor {
            return Self::reject(req, 403, Some("To does not match the authenticated user"));
        }

        // Parse every Contact before touching the bindings (all or nothing).
        let header_expires = match req.headers.get("Expires").map(|v| v.trim().parse::<u32>()) {
            None => None,
            Some(Ok(e)) => Some(e),
            Some(Err(_)) => return Self::reject(req, 400, Some("bad Expires")),
        };
        let contacts: Vec<&str> = req.headers.get_all("Contact").collect();
        let mut updates: Vec<(String, u32)> = Vec::new();
        if contacts.contains(&"*") {
            if contacts.len() != 1 || header_expires != Some(0) {
                return Self::reject(
                    req,
                    400,
                    Some("Contact * needs Expires: 0 and no other Contact"),
                );
            }
        } else {
            for c in &contacts {
                let Ok(na) = NameAddr::parse(c) else {
                    return Self::reject(req, 400, Some("bad Contact"));
                };
                let expires = match na.param("expires") {
                    Some(Some(v)) => match v.trim_matches('"').parse::<u32>() {
                        Ok(e) => e,
                        Err(_) => return Self::reject(req, 400, Some("bad Contact expires")),
                    },
                    Some(None) => return Self::reject(req, 400, Some("bad Contact expires")),
                    None => header_expires.unwrap_or(DEFAULT_EXPIRES),
                };
                if expires != 0 && expires < MIN_EXPIRES {
                    let mut r = Self::reject(req, 423, None);
                    r.headers.push("Min-Expires", MIN_EXPIRES.to_string());
                    return r;
                }
                updates.push((normalize(&na.uri), expires.min(MAX_EXPIRES)));
            }
        }

        let list = self.bindings.entry(user.clone()).or_default();
        list.retain(|b| b.expires_at > now);
        // §10.3 step 7: an older or repeated CSeq within the same Call-ID is out of order.
        let stale_cseq = |b: &Binding, contact: Option<&str>| {
            contact.is_none_or(|c| c == b.contact) && b.call_id == call_id && b.cseq >= cseq.seq
        };
        if contacts.contains(&"*") {
            if list.iter().any(|b| stale_cseq(b, None)) {
                return Self::reject(req, 500, Some("out-of-order CSeq"));
            }
            list.clear();
        } else {
            if updates
                .iter()
                .any(|(c, _)| list.iter().any(|b| stale_cseq(b, Some(c))))
            {
                return Self::reject(req, 500, Some("out-of-order CSeq"));
            }
            let ua = req.headers.get("User-Agent").map(str::to_string);
            for (contact, expires) in updates {
                list.retain(|b| b.contact != contact);
                if expires > 0 {
                    list.push(Binding {
                        contact,
                        source: from,
                        transport: super::transport::Transport::of_via_value(
                            req.headers.get("Via"),
                        ),
                        expires_at: now + Duration::from_secs(u64::from(expires)),
                        call_id: call_id.to_string(),
                        cseq: cseq.seq,
                        user_agent: ua.clone(),
                    });
                }
            }
        }
        if list.is_empty() {
            self.bindings.remove(&user);
        }

        let mut ok = Response::for_request(req, 200);
        ok.set_to_tag(&new_tag());
        for b in self.lookup(&user, now) {
            let left = b.expires_at.saturating_duration_since(now);
            let secs = left.as_secs() + u64::from(left.subsec_nanos() > 0);
            ok.headers
                .push("Contact", format!("<{}>;expires={secs}", b.contact));
        }
        ok
    }

    /// The live bindings of `user`.
    pub fn lookup(&self, user: &str, now: Instant) -> Vec<Binding> {
        self.bindings
            .get(user)
            .map(|l| l.iter().filter(|b| b.expires_at > now).cloned().collect())
            .unwrap_or_default()
    }

    /// Every live binding as `(user, binding)`, sorted by user.
    pub fn bindings(&self, now: Instant) -> Vec<(String, Binding)> {
        let mut v: Vec<(String, Binding)> = self
            .bindings
            .iter()
            .flat_map(|(u, l)| {
                l.iter()
                    .filter(|b| b.expires_at > now)
                    .map(move |b| (u.clone(), b.clone()))
            })
            .collect();
        v.sort_by(|a, b| a.0.cmp(&b.0).then_with(|| a.1.contact.cmp(&b.1.contact)));
        v
    }

    /// Drops expired bindings.
    pub fn expire(&mut self, now: Instant) {
        self.bindings.retain(|_, l| {
            l.retain(|b| b.expires_at > now);
            !l.is_empty()
        });
    }
}

/// Contact URIs compare by their canonical text (scheme lower-cased, parameters kept).
fn normalize(uri: &Uri) -> String {
    uri.to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sip::digest::{response, Credentials};
    use crate::sip::message::{Message, Method};

    #[allow(clippy::disallowed_methods)]
    fn epoch() -> Instant {
        Instant::now()
    }

    const T0: u64 = 1_700_000_000;

    fn src() -> SocketAddr {
        "198.51.100.7:5060".parse().unwrap()
    }

    fn registrar() -> Registrar {
        let users = HashMap::from([("alice".to_string(), "secret".to_string())]);
        Registrar::new("tandem".into(), users, [42; 32])
    }

    fn used(r: &Registrar, nonce: &str, nc: u32, now: u64) -> Count {
        let c = Credentials {
            nonce: nonce.to_string(),
            nc: Some(format!("{nc:08x}")),
            ..Credentials::default()
        };
        r.count_nonce(&c, now)
    }

    #[test]
    fn a_full_nonce_table_drops_its_oldest_and_keeps_authenticating() {
        // One call per nonce, 100 calls a second: the table fills in 200 s, well inside
        // the nonce lifetime. New calls must still authenticate.
        let r = registrar();
        let first = r.mint.mint(T0);
        assert_eq!(used(&r, &first, 1, T0), Count::Fresh);
        for i in 1..NC_TABLE_MAX as u64 {
            let t = T0 + i / 100;
            assert_eq!(used(&r, &r.mint.mint(t), 1, t), Count::Fresh, "nonce {i}");
        }
        let now = T0 + 201;
        let late = r.mint.mint(now);
        assert_eq!(
            used(&r, &late, 1, now),
            Count::Fresh,
            "a new call when full"
        );
        assert_eq!(used(&r, &late, 1, now), Count::Replay, "its replay");
        assert_eq!(used(&r, &late, 2, now), Count::Fresh, "its next count");
        // The oldest were dropped: their counts are unknown, so they are stale, never fresh.
        assert_eq!(used(&r, &first, 2, now), Count::Dropped);
        assert_eq!(used(&r, &r.mint.mint(T0 + 1), 1, now), Count::Dropped);
        let t = r.nonce_counts.lock().unwrap();
        assert!(t.map.len() < NC_TABLE_MAX && t.map.len() > NC_TABLE_MAX * 3 / 4);
    }

    fn register(user: &str, contact: &str, seq: u32) -> Request {
        let mut r = Request::new(Method::Register, "sip:tandem");
        r.headers
            .push("Via", "SIP/2.0/UDP 198.51.100.7:5060;branch=z9hG4bKr1");
        r.headers
            .push("From", format!("<sip:{user}@tandem>;tag=f1"));
        r.headers.push("To", format!("<sip:{user}@tandem>"));
        r.headers.push("Call-ID", "reg-1");
        r.headers.push("CSeq", format!("{seq} REGISTER"));
        if !contact.is_empty() {
            r.headers.push("Contact", contact);
        }
        r.headers.push("User-Agent", "softphone/1.0");
        r
    }

    /// Answers `chal` (a 401/407) the way a UA would.
    fn authorize(mut req: Request, chal: &Response, user: &str, password: &str) -> Request {
        // Each authorisation uses the next nonce count, as a UA reusing a nonce would.
        static NC: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(1);
        let nc = format!(
            "{:08x}",
            NC.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
        );
        let hdr = chal
            .headers
            .get("WWW-Authenticate")
            .or_else(|| chal.headers.get("Proxy-Authenticate"))
            .expect("challenge header");
        let mut as_creds = hdr.replacen(
            "Digest",
            "Digest username=\"x\", uri=\"x\", response=\"x\",",
            1,
        );
        as_creds = as_creds.replace("qop=\"auth\"", "qop=auth");
        let c = Credentials::parse(&as_creds).unwrap();
        let resp = response(
            Algorithm::Md5,
            user,
            &c.realm,
            password,
            req.method.as_str(),
            &req.uri,
            &c.nonce,
            Some((&nc, "abcd")),
        );
        let v = format!(
            "Digest username=\"{user}\", realm=\"{}\", nonce=\"{}\", uri=\"{}\", response=\"{resp}\", \
             algorithm=MD5, qop=auth, nc={nc}, cnonce=\"abcd\"",
            c.realm, c.nonce, req.uri
        );
        let name = if chal.code == 407 {
            "Proxy-Authorization"
        } else {
            "Authorization"
        };
        req.headers.set(name, v);
        req
    }

    fn reparse(r: &Response) -> Response {
        match Message::parse(&r.to_bytes()) {
            Ok(Message::Response(r)) => r,
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn challenge_then_ok_then_refresh_and_unregister() {
        let (now, mut reg) = (epoch(), registrar());
        let req = register("alice", "<sip:alice@10.0.0.5:5062;transport=udp>", 1);
        let chal = reparse(&reg.handle_register(&req, src(), now, T0));
        assert_eq!(chal.code, 401);
        assert!(chal.to().unwrap().tag().is_some());
        assert!(chal
            .headers
            .get("WWW-Authenticate")
            .unwrap()
            .contains("realm=\"tandem\""));
        assert!(reg.lookup("alice", now).is_empty());

        let req = authorize(
            register(
                "alice",
                "<sip:alice@10.0.0.5:5062;transport=udp>;expires=120",
                2,
            ),
            &chal,
            "alice",
            "secret",
        );
        let ok = reparse(&reg.handle_register(&req, src(), now, T0 + 1));
        assert_eq!(ok.code, 200, "{}", ok.reason);
        assert_eq!(
            ok.headers.get_all("Contact").collect::<Vec<_>>(),
            ["<sip:alice@10.0.0.5:5062;transport=udp>;expires=120"]
        );
        let b = reg.lookup("alice", now);
        assert_eq!(b.len(), 1);
        assert_eq!(b[0].contact, "sip:alice@10.0.0.5:5062;transport=udp");
        assert_eq!(b[0].source, src());
        assert_eq!(b[0].user_agent.as_deref(), Some("softphone/1.0"));

        // the same request again: its nonce count is a replay
        assert_eq!(reg.handle_register(&req, src(), now, T0 + 2).code, 401);
        // re-authorised (next nonce count), same CSeq in the same Call-ID: out of order
        let mut again = req.clone();
        again.headers.remove("Authorization");
        let again = authorize(again, &chal, "alice", "secret");
        let r = reg.handle_register(&again, src(), now, T0 + 2);
        assert_eq!(r.code, 500);

        // refresh with Expires header (huge: capped) and a second contact
        let mut req = authorize(
            register("alice", "<sip:alice@10.0.0.5:5062;transport=udp>", 3),
            &chal,
            "alice",
            "secret",
        );
        req.headers.push("Contact", "<sip:alice@10.0.0.6>");
        req.headers.push("Expires", "99999");
        let ok = reg.handle_register(&req, src(), now, T0 + 3);
        assert_eq!(ok.code, 200);
        assert_eq!(ok.headers.get_all("Contact").count(), 2);
        assert!(ok
            .headers
            .get_all("Contact")
            .all(|c| c.ends_with(";expires=7200")));
        assert_eq!(reg.bindings(now).len(), 2);

        // remove one by expires=0
        let req = authorize(
            register("alice", "<sip:alice@10.0.0.6>;expires=0", 4),
            &chal,
            "alice",
            "secret",
        );
        let ok = reg.handle_register(&req, src(), now, T0 + 4);
        assert_eq!(ok.headers.get_all("Contact").count(), 1);

        // fetch (no Contact) lists current bindings
        let req = authorize(register("alice", "", 5), &chal, "alice", "secret");
        let ok = reg.handle_register(&req, src(), now + Duration::from_secs(10), T0 + 5);
        assert_eq!(
            ok.headers.get_all("Contact").collect::<Vec<_>>(),
            ["<sip:alice@10.0.0.5:5062;transport=udp>;expires=7190"]
        );

        // Contact: * without Expires: 0 is a 400; with it, everything goes
        let req = authorize(register("alice", "*", 6), &chal, "alice", "secret");
        assert_eq!(reg.handle_register(&req, src(), now, T0 + 6).code, 400);
        let mut req = authorize(register("alice", "*", 7), &chal, "alice", "secret");
        req.headers.push("Expires", "0");
        let ok = reg.handle_register(&req, src(), now, T0 + 7);
        assert_eq!(ok.code, 200);
        assert!(ok.headers.get("Contact").is_none());
        assert!(reg.lookup("alice", now).is_empty());
    }

    #[test]
    fn wrong_password_unknown_user_and_to_mismatch() {
        let (now, mut reg) = (epoch(), registrar());
        let chal = reg.handle_register(&register("alice", "<sip:a@h>", 1), src(), now, T0);
        // wrong password and unknown user: the same 403 (no user enumeration)
        let req = authorize(register("alice", "<sip:a@h>", 2), &chal, "alice", "wrong");
        let r1 = reg.handle_register(&req, src(), now, T0);
        let req = authorize(register("alice", "<sip:a@h>", 2), &chal, "mallory", "x");
        let r2 = reg.handle_register(&req, src(), now, T0);
        assert_eq!((r1.code, r2.code), (403, 403));
        assert_eq!(r1.reason, r2.reason);
        let shape = |r: &Response| {
            let mut h: Vec<String> = r
                .headers
                .iter()
                .map(|(n, v)| match n {
                    "To" => v.split(";tag=").next().unwrap_or("").to_string(),
                    "WWW-Authenticate" => v.split("nonce=").next().unwrap_or("").to_string(),
                    _ => format!("{n}: {v}"),
                })
                .collect();
            h.sort();
            h
        };
        assert_eq!(shape(&r1), shape(&r2));
        // alice's credentials used to register bob's AOR
        let mut req = authorize(register("alice", "<sip:a@h>", 2), &chal, "alice", "secret");
        req.headers.set("To", "<sip:bob@tandem>");
        assert_eq!(reg.handle_register(&req, src(), now, T0).code, 403);
        assert!(reg.bindings(now).is_empty());
    }

    #[test]
    fn stale_and_forged_nonces() {
        let (now, mut reg) = (epoch(), registrar());
        let chal = reg.handle_register(&register("alice", "<sip:a@h>", 1), src(), now, T0);
        let req = authorize(register("alice", "<sip:a@h>", 2), &chal, "alice", "secret");
        let r = reg.handle_register(&req, src(), now, T0 + 301);
        assert_eq!(r.code, 401);
        assert!(r
            .headers
            .get("WWW-Authenticate")
            .unwrap()
            .ends_with("stale=true"));
        // a nonce from another server: fresh challenge, not stale
        let other = Registrar::new("tandem".into(), HashMap::new(), [1; 32]);
        let fake = other.challenge(&req, 401, "WWW-Authenticate", false, T0);
        let req = authorize(register("alice", "<sip:a@h>", 3), &fake, "alice", "secret");
        let r = reg.handle_register(&req, src(), now, T0);
        assert_eq!(r.code, 401);
        assert!(!r.headers.get("WWW-Authenticate").unwrap().contains("stale"));
    }

    #[test]
    fn interval_too_brief_and_bad_requests() {
        let (now, mut reg) = (epoch(), registrar());
        let chal = reg.handle_register(&register("alice", "<sip:a@h>", 1), src(), now, T0);
        let req = authorize(
            register("alice", "<sip:a@h>;expires=30", 2),
            &chal,
            "alice",
            "secret",
        );
        let r = reg.handle_register(&req, src(), now, T0);
        assert_eq!(r.code, 423);
        assert_eq!(r.headers.get("Min-Expires"), Some("60"));
        let mut req = authorize(register("alice", "<sip:a@h>", 3), &chal, "alice", "secret");
        req.headers.push("Expires", "soon");
        assert_eq!(reg.handle_register(&req, src(), now, T0).code, 400);
        let mut req = authorize(register("alice", "<sip:a@h>", 4), &chal, "alice", "secret");
        req.headers.set("To", "not a uri");
        assert_eq!(reg.handle_register(&req, src(), now, T0).code, 400);
        assert!(reg.bindings(now).is_empty());
    }

    #[test]
    fn sha256_offered_beside_md5_and_accepted() {
        let (now, mut reg) = (epoch(), registrar());
        let chal = reg.handle_register(&register("alice", "<sip:a@h>", 1), src(), now, T0);
        assert_eq!(chal.headers.get_all("WWW-Authenticate").count(), 1);
        reg.set_offer_sha256(true);
        let chal = reg.handle_register(&register("alice", "<sip:a@h>", 1), src(), now, T0);
        let offers: Vec<&str> = chal.headers.get_all("WWW-Authenticate").collect();
        assert_eq!(offers.len(), 2, "{offers:?}");
        assert!(offers[0].contains("algorithm=SHA-256"), "{offers:?}");
        assert!(offers[1].contains("algorithm=MD5"), "{offers:?}");
        let c = Credentials::parse(&offers[0].replacen(
            "Digest",
            "Digest username=\"x\", uri=\"x\", response=\"x\",",
            1,
        ))
        .unwrap();
        let mut req = register("alice", "<sip:a@h>", 2);
        let resp = response(
            Algorithm::Sha256,
            "alice",
            &c.realm,
            "secret",
            "REGISTER",
            &req.uri,
            &c.nonce,
            Some(("00000001", "ef01")),
        );
        assert_eq!(resp.len(), 64);
        req.headers.set(
            "Authorization",
            format!(
                "Digest username=\"alice\", realm=\"{}\", nonce=\"{}\", uri=\"{}\", \
                 response=\"{resp}\", algorithm=SHA-256, qop=auth, nc=00000001, cnonce=\"ef01\"",
                c.realm, c.nonce, req.uri
            ),
        );
        assert_eq!(reg.handle_register(&req, src(), now, T0).code, 200);
        // replayed (same nc, new CSeq): refused with a challenge, nc 2 accepted
        let mut again = req.clone();
        again.headers.set("CSeq", "3 REGISTER");
        assert_eq!(reg.handle_register(&again, src(), now, T0).code, 401);
    }

    #[test]
    fn expiry() {
        let (now, mut reg) = (epoch(), registrar());
        let chal = reg.handle_register(&register("alice", "<sip:a@h>", 1), src(), now, T0);
        let req = authorize(
            register("alice", "<sip:a@h>;expires=60", 2),
            &chal,
            "alice",
            "secret",
        );
        assert_eq!(reg.handle_register(&req, src(), now, T0).code, 200);
        assert_eq!(reg.lookup("alice", now + Duration::from_secs(59)).len(), 1);
        assert!(reg
            .lookup("alice", now + Duration::from_secs(60))
            .is_empty());
        assert_eq!(reg.bindings(now).len(), 1);
        reg.expire(now + Duration::from_secs(61));
        assert!(reg.bindings(now).is_empty(), "expired binding removed");
    }

    #[test]
    fn authenticate_invite() {
        let reg = registrar();
        let mut inv = register("alice", "<sip:a@h>", 1);
        inv.method = Method::Invite;
        inv.uri = "sip:1000@tandem".into();
        inv.headers.set("CSeq", "1 INVITE");
        let Auth::Challenge(chal) = reg.authenticate(&inv, T0) else {
            panic!()
        };
        assert_eq!(chal.code, 407);
        assert!(chal.headers.get("Proxy-Authenticate").is_some());
        let ok = authorize(inv.clone(), &chal, "alice", "secret");
        assert!(matches!(reg.authenticate(&ok, T0 + 10), Auth::Ok { ref user } if user == "alice"));
        // the same nonce count again is a replay: challenged
        assert!(matches!(reg.authenticate(&ok, T0 + 10), Auth::Challenge(_)));
        // a lower one too, after a higher one was used
        let higher = authorize(inv.clone(), &chal, "alice", "secret");
        assert!(matches!(
            reg.authenticate(&higher, T0 + 10),
            Auth::Ok { .. }
        ));
        assert!(matches!(reg.authenticate(&ok, T0 + 10), Auth::Challenge(_)));
        // Authorization (not Proxy-) is accepted too (fresh challenge, fresh count)
        let Auth::Challenge(chal) = reg.authenticate(&inv, T0) else {
            panic!()
        };
        let ok = authorize(inv.clone(), &chal, "alice", "secret");
        let mut www = ok.clone();
        let v = www.headers.remove_first("Proxy-Authorization").unwrap();
        www.headers.push("Authorization", v);
        assert!(matches!(reg.authenticate(&www, T0 + 10), Auth::Ok { .. }));
        let bad = authorize(inv.clone(), &chal, "alice", "nope");
        let Auth::Forbidden(r) = reg.authenticate(&bad, T0) else {
            panic!()
        };
        assert_eq!(r.code, 403);
        let ok = authorize(inv.clone(), &chal, "alice", "secret");
        let Auth::Challenge(r) = reg.authenticate(&ok, T0 + 1000) else {
            panic!()
        };
        assert!(r
            .headers
            .get("Proxy-Authenticate")
            .unwrap()
            .contains("stale=true"));
    }
}
