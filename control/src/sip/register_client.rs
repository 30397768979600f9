//! The REGISTER client (RFC 3261 §10.2) a trunk uses to stay registered at its provider.
//!
//! Sans-IO: [`RegisterClient::handle_timeout`] says when a REGISTER is due and builds it;
//! the caller sends it in a client transaction, feeds the final response back through
//! [`RegisterClient::handle_response`] (which may return the same REGISTER again with digest
//! credentials) or a transaction timeout through [`RegisterClient::handle_failure`], and
//! sleeps until [`RegisterClient::poll_timeout`].
//!
//! Policy, as operators know it from Asterisk's `registration` and FreeSWITCH gateways:
//! - a 401/407 is answered once with credentials (again only if the server says the nonce
//!   went `stale`); later refreshes answer the last challenge at once with a higher `nc`;
//! - a 2xx schedules the refresh at half the granted expiry (the Contact's `expires`, else
//!   `Expires`, else what we asked);
//! - a failure (403, a second challenge, another error, no answer) retries after 30 s,
//!   doubling up to 480 s, and a registration we held lapses at its own expiry.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use super::client_auth::{new_cnonce, Challenge};
use super::{new_branch, new_tag, CSeq, Method, Request, Response};

/// First retry delay after a failure; doubles per consecutive failure.
pub const RETRY_BASE: Duration = Duration::from_secs(30);
/// Longest retry delay.
pub const RETRY_MAX: Duration = Duration::from_secs(480);

/// What a trunk registers with.
#[derive(Debug, Clone)]
pub struct RegisterParams {
    /// Our SIP address (Via, Contact).
    pub local: SocketAddr,
    /// The registrar's domain: Request-URI `sip:<domain>` and the AOR host.
    pub domain: String,
    pub username: String,
    pub password: String,
    /// Answer challenges of this realm only (`None`: any).
    pub realm: Option<String>,
    /// Seconds asked for.
    pub expiry: u32,
    pub user_agent: String,
}

/// Where the registration stands (`tandemctl show trunks`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RegState {
    /// Not registered yet, or lapsed; a REGISTER is due at `poll_timeout`.
    Unregistered,
    /// A REGISTER is in flight.
    Registering,
    /// The registrar accepted us.
    Registered,
    /// The last attempt failed; retrying with backoff.
    Rejected,
}

impl RegState {
    pub fn as_str(self) -> &'static str {
        match self {
            RegState::Unregistered => "unregistered",
            RegState::Registering => "registering",
            RegState::Registered => "registered",
            RegState::Rejected => "rejected",
        }
    }
}

/// One registration's state machine.
#[derive(Debug)]
pub struct RegisterClient {
    p: RegisterParams,
    call_id: String,
    from_tag: String,
    cseq: u32,
    state: RegState,
    /// When the next REGISTER is due (none while one is in flight).
    next_at: Option<Instant>,
    /// When the registration we hold lapses.
    expires_at: Option<Instant>,
    /// Challenges answered in the current attempt.
    answered: u8,
    challenge: Option<(&'static str, Challenge)>,
    nc: u32,
    failures: u32,
    last_status: Option<u16>,
    granted: Option<u32>,
}

impl RegisterClient {
    /// The first REGISTER is due at `now`.
    pub fn new(p: RegisterParams, now: Instant) -> RegisterClient {
        RegisterClient {
            call_id: format!("{}@{}", new_tag(), p.local.ip()),
            from_tag: new_tag(),
            cseq: 0,
            state: RegState::Unregistered,
            next_at: Some(now),
            expires_at: None,
            answered: 0,
            challenge: None,
            nc: 0,
            failures: 0,
            last_status: None,
            granted: None,
            p,
        }
    }

    pub fn state(&self) -> RegState {
        self.state
    }

    /// The status of the last final response (None before any).
    pub fn last_status(&self) -> Option<u16> {
        self.last_status
    }

    /// Seconds the registrar granted last time.
    pub fn granted(&self) -> Option<u32> {
        self.granted
    }

    /// When our registration lapses unless refreshed.
    pub fn expires_at(&self) -> Option<Instant> {
        self.expires_at
    }

    /// The user part of our Contact: INVITEs for it come from the provider.
    pub fn contact_user(&self) -> &str {
        &self.p.username
    }

    /// The next instant [`Self::handle_timeout`] has work.
    pub fn poll_timeout(&self) -> Option<Instant> {
        match (self.next_at, self.expires_at) {
            (Some(a), Some(b)) if self.state == RegState::Registered => Some(a.min(b)),
            (a, _) => a,
        }
    }

    /// A REGISTER to send when one is due.
    pub fn handle_timeout(&mut self, now: Instant) -> Option<Request> {
        if self.state == RegState::Registered && self.expires_at.is_some_and(|e| e <= now) {
            self.state = RegState::Unregistered;
            self.expires_at = None;
        }
        if !self.next_at.is_some_and(|t| t <= now) {
            return None;
        }
        self.next_at = None;
        self.answered = 0;
        if self.state != RegState::Registered {
            self.state = RegState::Registering;
        }
        Some(self.build())
    }

    /// The final response to our REGISTER. Returns a REGISTER to send at once (the answer
    /// to a challenge). Responses to an older CSeq are ignored.
    pub fn handle_response(&mut self, resp: &Response, now: Instant) -> Option<Request> {
        if resp.code < 200 || resp.cseq().is_none_or(|c| c.seq != self.cseq) {
            return None;
        }
        self.last_status = Some(resp.code);
        match resp.code {
            200..=299 => {
                let granted = self.granted_expiry(resp).max(1);
                self.granted = Some(granted);
                self.state = RegState::Registered;
                self.failures = 0;
                self.expires_at = Some(now + Duration::from_secs(granted.into()));
                self.next_at = Some(now + Duration::from_secs((granted / 2).max(1).into()));
                None
            }
            401 | 407 => {
                let ch = Challenge::from_response(resp, self.p.realm.as_deref());
                match ch {
                    Some((hdr, c)) if self.answered == 0 || c.stale && self.answered < 2 => {
                        self.answered += 1;
                        self.nc = 0;
                        self.challenge = Some((hdr, c));
                        Some(self.build())
                    }
                    _ => {
                        // Wrong credentials, or no challenge we can answer.
                        self.challenge = None;
                        self.fail(now);
                        None
                    }
                }
            }
            423 => {
                // Interval Too Brief: ask for the Min-Expires the registrar wants.
                let min = resp
                    .headers
                    .get("Min-Expires")
                    .and_then(|v| v.trim().parse::<u32>().ok());
                match min {
                    Some(m) if m > self.p.expiry && self.answered < 2 => {
                        self.answered += 1;
                        self.p.expiry = m;
                        Some(self.build())
                    }
                    _ => {
                        self.fail(now);
                        None
                    }
                }
            }
            _ => {
                self.fail(now);
                None
            }
        }
    }

    /// The REGISTER transaction timed out (no response) or could not be sent.
    pub fn handle_failure(&mut self, now: Instant) {
        self.last_status = Some(408);
        self.fail(now);
    }

    fn fail(&mut self, now: Instant) {
        self.failures += 1;
        let shift = (self.failures - 1).min(4);
        let delay = (RETRY_BASE * (1u32 << shift)).min(RETRY_MAX);
        self.next_at = Some(now + delay);
        // A registration still held keeps its own expiry; otherwise we are out.
        if !(self.state == RegState::Registered && self.expires_at.is_some_and(|e| e > now)) {
            self.state = RegState::Rejected;
            self.expires_at = None;
        }
    }

    fn granted_expiry(&self, resp: &Response) -> u32 {
        let mine = format!("{}@{}", self.p.username, self.p.local);
        let from_contact = resp
            .headers
            .get_all("Contact")
            .flat_map(|v| v.split(','))
            .find(|c| c.contains(&mine))
            .and_then(|c| {
                c.split(';')
                    .map(str::trim)
                    .find_map(|p| p.strip_prefix("expires="))
                    .and_then(|v| v.trim().parse::<u32>().ok())
            });
        from_contact
            .or_else(|| {
                resp.headers
                    .get("Expires")
                    .and_then(|v| v.trim().parse().ok())
            })
            .unwrap_or(self.p.expiry)
    }

    fn build(&mut self) -> Request {
        self.cseq += 1;
        let p = &self.p;
        let uri = format!("sip:{}", p.domain);
        let aor = format!("<sip:{}@{}>", p.username, p.domain);
        let mut r = Request::new(Method::Register, uri.clone());
        r.headers.push(
            "Via",
            format!("SIP/2.0/UDP {};branch={};rport", p.local, new_branch()),
        );
        r.headers.push("Max-Forwards", "70");
        r.headers
            .push("From", format!("{aor};tag={}", self.from_tag));
        r.headers.push("To", aor);
        r.headers.push("Call-ID", self.call_id.clone());
        r.headers.push(
            "CSeq",
            CSeq {
                seq: self.cseq,
                method: Method::Register,
            }
            .to_string(),
        );
        r.headers
            .push("Contact", format!("<sip:{}@{}>", p.username, p.local));
        r.headers.push("Expires", p.expiry.to_string());
        r.headers.push("User-Agent", p.user_agent.clone());
        if let Some((hdr, ch)) = &self.challenge {
            self.nc += 1;
            let v = ch.answer(
                &p.username,
                &p.password,
                "REGISTER",
                &uri,
                self.nc,
                &new_cnonce(),
            );
            r.headers.push(hdr, v);
        }
        r.headers.push("Content-Length", "0");
        r
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sip::digest::{challenge, verify, Algorithm, Credentials};

    #[expect(
        clippy::disallowed_methods,
        reason = "the test's fixed epoch; time then advances virtually"
    )]
    fn epoch() -> Instant {
        Instant::now()
    }

    fn client(now: Instant) -> RegisterClient {
        RegisterClient::new(
            RegisterParams {
                local: "127.0.0.1:5070".parse().unwrap(),
                domain: "127.0.0.1:5080".into(),
                username: "trunk1".into(),
                password: "pw".into(),
                realm: None,
                expiry: 600,
                user_agent: "t".into(),
            },
            now,
        )
    }

    fn reply(req: &Request, code: u16) -> Response {
        let mut r = Response::for_request(req, code);
        if code == 401 {
            r.headers.push(
                "WWW-Authenticate",
                challenge("carrier", "n1", Algorithm::Md5, false),
            );
        }
        r
    }

    #[test]
    fn challenge_then_ok_then_refresh_at_half_expiry() {
        let t0 = epoch();
        let mut c = client(t0);
        assert_eq!(c.poll_timeout(), Some(t0));
        let r1 = c.handle_timeout(t0).expect("first REGISTER due at once");
        assert!(r1.headers.get("Authorization").is_none());
        let r2 = c.handle_response(&reply(&r1, 401), t0).expect("answered");
        assert_eq!(r2.cseq().unwrap().seq, r1.cseq().unwrap().seq + 1);
        assert_eq!(r2.call_id(), r1.call_id());
        let cred = Credentials::parse(r2.headers.get("Authorization").unwrap()).unwrap();
        assert!(verify(&cred, "REGISTER", "pw"));
        let mut ok = reply(&r2, 200);
        ok.headers
            .push("Contact", "<sip:trunk1@127.0.0.1:5070>;expires=120");
        assert!(c.handle_response(&ok, t0).is_none());
        assert_eq!(c.state(), RegState::Registered);
        assert_eq!(c.granted(), Some(120));
        assert_eq!(c.poll_timeout(), Some(t0 + Duration::from_secs(60)));
        assert!(c.handle_timeout(t0 + Duration::from_secs(59)).is_none());
        let r3 = c.handle_timeout(t0 + Duration::from_secs(60)).unwrap();
        // The refresh answers the last challenge at once, with the next nonce count.
        let cred = Credentials::parse(r3.headers.get("Authorization").unwrap()).unwrap();
        assert_eq!(cred.nc.as_deref(), Some("00000002"));
    }

    #[test]
    fn second_challenge_fails_and_backs_off() {
        let t0 = epoch();
        let mut c = client(t0);
        let r1 = c.handle_timeout(t0).unwrap();
        let r2 = c.handle_response(&reply(&r1, 401), t0).unwrap();
        assert!(c.handle_response(&reply(&r2, 401), t0).is_none());
        assert_eq!(c.state(), RegState::Rejected);
        assert_eq!(c.poll_timeout(), Some(t0 + RETRY_BASE));
        let t1 = t0 + RETRY_BASE;
        let r3 = c.handle_timeout(t1).unwrap();
        c.handle_response(&reply(&r3, 403), t1);
        assert_eq!(c.poll_timeout(), Some(t1 + RETRY_BASE * 2));
        // A stale response (old CSeq) changes nothing.
        assert!(c.handle_response(&reply(&r1, 200), t1).is_none());
        assert_eq!(c.state(), RegState::Rejected);
        c.handle_failure(t1);
        assert_eq!(c.poll_timeout(), Some(t1 + RETRY_BASE * 4));
    }
}
