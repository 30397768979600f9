//! Mid-call offer/answer: re-INVITE relay, hold and resume (RFC 3261 §14, RFC 3264 §8,
//! RFC 6337).
//!
//! In a bridged call a re-INVITE with SDP from either party (X) is relayed as a re-INVITE to
//! the other party (Y) in Y's dialog. The offer Y sees is the SDP Tandem last gave Y (its own
//! anchored address and ports, `o=` version bumped) with X's media direction; Y's answer
//! comes back to X the same way, as Tandem's last SDP to X with Y's direction. Addresses
//! never leak across: each phone only ever sees Tandem's media address.
//!
//! Hold is what the directions say (RFC 3264 §8.4): `a=sendonly`, `a=recvonly`, `a=inactive`,
//! or the RFC 2543 `c=0.0.0.0` (the party will not receive). Once the exchange completes,
//! the dataplane forwards RTP only toward a party that agreed to receive it from a party that
//! agreed to send it ([`dataplane::Mode::OneWay`] / [`dataplane::Mode::Inactive`]), and back
//! to [`dataplane::Mode::Relay`] on `a=sendrecv`. RTCP keeps flowing.
//!
//! One exchange at a time per call: a re-INVITE from either side while one is in progress
//! is answered 491 Request Pending (glare, RFC 3261 §14.2). Y's failure (4xx-6xx) is relayed
//! to X unchanged and the media stays as it was; no answer from Y within Timer B gives X a
//! 408. A re-INVITE without SDP, or in a call that is not bridged, keeps the engine's plain
//! answer (Tandem's current SDP for that side). In-dialog OPTIONS is answered 200 with
//! Allow/Accept; UPDATE without SDP (a dialog refresh) 200; UPDATE carrying an offer 488
//! (offers are relayed by re-INVITE only).

use std::net::SocketAddr;
use std::time::Instant;

use super::{leg_transport, BState, Call, CallId, CallState, Engine, LegSide, Media, ALLOW};
use crate::sdp::{Direction, SessionDescription};
use crate::sip::transaction::TxKey;
use crate::sip::{new_branch, CSeq, Message, Method, Request, Response};

/// A re-INVITE being relayed.
pub(super) struct Pending {
    /// Who sent it (we answer them when the other side has).
    from: LegSide,
    /// Their server transaction and request.
    key: TxKey,
    req: Request,
    /// Our re-INVITE to the other side.
    out: TxKey,
    out_sdp: String,
    /// The offerer's media address and effective direction.
    offer_addr: Option<SocketAddr>,
    offer_dir: Direction,
}

/// What a description lets its sender do: its direction, less receiving when the address is
/// `0.0.0.0` (RFC 2543 hold), nothing when the audio port is 0.
pub(super) fn effective_direction(sd: &SessionDescription) -> Direction {
    let Some(m) = sd.audio() else {
        return Direction::Inactive;
    };
    if m.port == 0 {
        return Direction::Inactive;
    }
    let ip = m.connection.or(sd.connection);
    if ip.is_some_and(|ip| ip.is_unspecified()) {
        m.direction.intersect(Direction::SendOnly)
    } else {
        m.direction
    }
}

/// The dataplane mode for A's and B's effective directions: RTP goes from a party that
/// sends to a party that receives.
pub(super) fn mode_for(a: Direction, b: Direction) -> dataplane::Mode {
    let sends = |d: Direction| matches!(d, Direction::SendRecv | Direction::SendOnly);
    let receives = |d: Direction| matches!(d, Direction::SendRecv | Direction::RecvOnly);
    let a_to_b = sends(a) && receives(b);
    let b_to_a = sends(b) && receives(a);
    match (a_to_b, b_to_a) {
        (true, true) => dataplane::Mode::Relay,
        (true, false) => dataplane::Mode::OneWay(dataplane::Side::A),
        (false, true) => dataplane::Mode::OneWay(dataplane::Side::B),
        (false, false) => dataplane::Mode::Inactive,
    }
}

/// `sdp` (an SDP Tandem sent before) with its audio direction set to `dir` and the `o=`
/// version bumped. `None` if it does not parse (it is our own text: it always does).
fn with_direction(sdp: &str, dir: Direction) -> Option<String> {
    let mut sd = SessionDescription::parse(sdp).ok()?;
    for m in sd
        .media
        .iter_mut()
        .filter(|m| m.kind.eq_ignore_ascii_case("audio"))
    {
        m.direction = dir;
    }
    sd.bump_version();
    Some(sd.to_string())
}

fn other(side: LegSide) -> LegSide {
    match side {
        LegSide::A => LegSide::B,
        LegSide::B => LegSide::A,
    }
}

fn dp_side(side: LegSide) -> dataplane::Side {
    match side {
        LegSide::A => dataplane::Side::A,
        LegSide::B => dataplane::Side::B,
    }
}

/// The SDP Tandem last sent on `side`.
fn last_sdp(call: &Call, side: LegSide) -> Option<String> {
    match side {
        LegSide::A => call.a.local_sdp.clone(),
        LegSide::B => call.b.as_ref().map(|b| b.offer_sdp.clone()),
    }
}

fn set_last_sdp(call: &mut Call, side: LegSide, sdp: String) {
    match side {
        LegSide::A => call.a.local_sdp = Some(sdp),
        LegSide::B => {
            if let Some(b) = call.b.as_mut() {
                b.offer_sdp = sdp;
            }
        }
    }
}

impl<M: Media> Engine<M> {
    /// A re-INVITE from `side` of call `cid`. Returns `false` when it is not ours to relay
    /// (no SDP, call not bridged): the caller then answers it itself.
    pub(super) fn relay_reinvite(
        &mut self,
        cid: CallId,
        side: LegSide,
        key: &TxKey,
        req: &Request,
        now: Instant,
    ) -> bool {
        let y = other(side);
        let Some(call) = self.calls.get(&cid) else {
            return false;
        };
        let bridged = call.state == CallState::Bridged
            && call.b.as_ref().is_some_and(|b| b.state == BState::Answered);
        let (busy, y_sdp) = (call.reinvite.is_some(), last_sdp(call, y));
        if !bridged || req.body.is_empty() {
            return false;
        }
        if busy {
            let mut resp = self.reply(req, 491, None);
            resp.headers.set("Retry-After", "1");
            self.note(format!("call {cid}: re-INVITE crossed another one, 491"));
            self.respond(key, resp, now);
            return true;
        }
        let Some(offer) = std::str::from_utf8(&req.body)
            .ok()
            .and_then(|s| SessionDescription::parse(s).ok())
        else {
            let mut resp = self.reply(req, 488, None);
            resp.reason = "Not Acceptable Here (unparsable SDP)".into();
            self.respond(key, resp, now);
            return true;
        };
        let dir = effective_direction(&offer);
        let Some(out_sdp) = y_sdp.and_then(|s| with_direction(&s, dir)) else {
            return false;
        };
        let Some(out) = self.send_in_dialog(cid, y, Method::Invite, Some(&out_sdp), now) else {
            return false;
        };
        self.by_tx.insert(out.clone(), (cid, y));
        self.note(format!(
            "call {cid}: re-INVITE from {side:?} ({}), relayed to {y:?}",
            dir.as_str()
        ));
        if let Some(call) = self.calls.get_mut(&cid) {
            call.reinvite = Some(Pending {
                from: side,
                key: key.clone(),
                req: req.clone(),
                out,
                out_sdp,
                offer_addr: offer.audio_addr(),
                offer_dir: dir,
            });
        }
        true
    }

    /// A response to a request we sent: `true` if it was our relayed re-INVITE's.
    pub(super) fn on_reinvite_response(
        &mut self,
        cid: CallId,
        side: LegSide,
        key: &TxKey,
        resp: &Response,
        now: Instant,
    ) -> bool {
        let Some(call) = self.calls.get_mut(&cid) else {
            return false;
        };
        if call.reinvite.as_ref().is_none_or(|p| &p.out != key) {
            // A 2xx copy for a re-INVITE we already finished: ACK it again. Everything we
            // send to A is a re-INVITE; on B only the leg's own INVITE transaction is not
            // (its CSeq is 1, or 2 after a digest retry to a trunk, so match the key).
            let own_invite = side == LegSide::B && call.b.as_ref().is_some_and(|b| &b.tx == key);
            let ours = !own_invite;
            if ours && resp.is_success() && resp.cseq().is_some_and(|c| c.method == Method::Invite)
            {
                self.ack_in_dialog(cid, side, resp);
                return true;
            }
            return false;
        }
        if resp.code < 200 {
            return true;
        }
        let Some(p) = call.reinvite.take() else {
            return true;
        };
        let y = other(p.from);
        if resp.code >= 300 {
            // The transaction layer ACKed it; pass the refusal on, media unchanged.
            let mut out = self.reply(&p.req, resp.code, None);
            out.reason = resp.reason.clone();
            if let Some(ra) = resp.headers.get("Retry-After") {
                out.headers.set("Retry-After", ra.to_string());
            }
            self.note(format!(
                "call {cid}: re-INVITE refused by {y:?} with {}",
                resp.code
            ));
            self.respond(&p.key, out, now);
            return true;
        }
        self.ack_in_dialog(cid, y, resp);
        let answer = std::str::from_utf8(&resp.body)
            .ok()
            .and_then(|s| SessionDescription::parse(s).ok());
        let Some(answer) = answer else {
            self.note(format!(
                "call {cid}: re-INVITE answer from {y:?} without usable SDP"
            ));
            let out = self.reply(&p.req, 488, None);
            self.respond(&p.key, out, now);
            return true;
        };
        let ydir = effective_direction(&answer);
        let Some(call) = self.calls.get_mut(&cid) else {
            return true;
        };
        let Some(back) = last_sdp(call, p.from).and_then(|s| with_direction(&s, ydir)) else {
            return true;
        };
        set_last_sdp(call, p.from, back.clone());
        set_last_sdp(call, y, p.out_sdp.clone());
        let (adir, bdir) = match p.from {
            LegSide::A => (p.offer_dir, ydir),
            LegSide::B => (ydir, p.offer_dir),
        };
        let mode = mode_for(adir, bdir);
        if let Some(addr) = answer.audio_addr() {
            if y == LegSide::B {
                call.b_remote_media = Some(addr);
            }
        }
        if let (Some(addr), LegSide::B) = (p.offer_addr, p.from) {
            call.b_remote_media = Some(addr);
        }
        if let Some(m) = call.media {
            if let Some(addr) = p.offer_addr {
                let _ = self.media.set_remote(m.id, dp_side(p.from), addr);
            }
            if let Some(addr) = answer.audio_addr() {
                let _ = self.media.set_remote(m.id, dp_side(y), addr);
            }
            if let Err(e) = self.media.set_mode(m.id, mode) {
                self.note(format!("call {cid}: media mode: {e}"));
            }
        }
        self.note(format!(
            "call {cid}: media A {} / B {} -> {mode:?}",
            adir.as_str(),
            bdir.as_str()
        ));
        let mut out = self.reply(&p.req, 200, Some(&back));
        self.add_contact(&mut out);
        self.respond(&p.key, out, now);
        true
    }

    /// Timer B fired on a client transaction: `true` if it was our relayed re-INVITE (the
    /// offerer then gets a 408 and the media stays as it was).
    pub(super) fn on_reinvite_timeout(&mut self, key: &TxKey, now: Instant) -> bool {
        let Some(&(cid, _)) = self.by_tx.get(key) else {
            return false;
        };
        let Some(call) = self.calls.get_mut(&cid) else {
            return false;
        };
        if call.reinvite.as_ref().is_none_or(|p| &p.out != key) {
            return false;
        }
        let Some(p) = call.reinvite.take() else {
            return false;
        };
        self.note(format!("call {cid}: relayed re-INVITE not answered, 408"));
        let out = self.reply(&p.req, 408, None);
        self.respond(&p.key, out, now);
        true
    }

    /// In-dialog requests other than BYE and INVITE: OPTIONS (200 with what we allow), UPDATE
    /// without SDP (a refresh: 200), UPDATE with an offer (488), anything else (INFO...) 200.
    pub(super) fn answer_in_dialog(&mut self, key: &TxKey, req: &Request, now: Instant) {
        let mut resp = match req.method {
            Method::Options => {
                let mut r = self.reply(req, 200, None);
                r.headers.set("Allow", ALLOW);
                r.headers.set("Accept", "application/sdp");
                r
            }
            Method::Update if !req.body.is_empty() => {
                let mut r = self.reply(req, 488, None);
                r.reason = "Not Acceptable Here (send the offer in a re-INVITE)".into();
                r
            }
            _ => self.reply(req, 200, None),
        };
        if resp.code == 200 {
            self.add_contact(&mut resp);
        }
        self.respond(key, resp, now);
    }

    /// Send `method` (not ACK) in the dialog of `side`; returns its client transaction.
    fn send_in_dialog(
        &mut self,
        cid: CallId,
        side: LegSide,
        method: Method,
        sdp: Option<&str>,
        now: Instant,
    ) -> Option<TxKey> {
        let transport = leg_transport(self.calls.get(&cid)?, side);
        let call = self.calls.get_mut(&cid)?;
        let (target, from, to, call_id, seq, dest) = match side {
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
                let b = call.b.as_mut()?;
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
        let mut r = Request::new(method.clone(), target);
        r.headers
            .push("Via", self.locals.via(transport, &new_branch()));
        r.headers.push("Max-Forwards", "70");
        r.headers.push("From", from);
        r.headers.push("To", to);
        r.headers.push("Call-ID", call_id);
        r.headers.push("CSeq", CSeq { seq, method }.to_string());
        r.headers.push(
            "Contact",
            format!("<{}>", self.locals.contact_uri(transport)),
        );
        r.headers.push("Allow", ALLOW);
        r.headers.push("User-Agent", self.cfg.user_agent.clone());
        if let Some(body) = sdp {
            r.headers.push("Content-Type", "application/sdp");
            r.body = body.as_bytes().to_vec();
        }
        Some(self.tl.send_request(r, dest, now))
    }

    /// ACK a 2xx to our re-INVITE on `side` (RFC 3261 §13.2.2.4: same CSeq number, new
    /// branch, sent outside the transaction).
    fn ack_in_dialog(&mut self, cid: CallId, side: LegSide, resp: &Response) {
        let Some(call) = self.calls.get(&cid) else {
            return;
        };
        let transport = leg_transport(call, side);
        let (target, from, to, call_id, dest) = match side {
            LegSide::A => (
                call.a.remote_target.clone(),
                call.a.local_hdr.clone(),
                call.a.remote_hdr.clone(),
                call.a.call_id.clone(),
                call.a.peer,
            ),
            LegSide::B => match &call.b {
                Some(b) => (
                    b.remote_target.clone(),
                    b.local_hdr.clone(),
                    b.remote_hdr.clone(),
                    b.call_id.clone(),
                    b.dest,
                ),
                None => return,
            },
        };
        let seq = resp.cseq().map_or(1, |c| c.seq);
        let mut ack = Request::new(Method::Ack, target);
        ack.headers
            .push("Via", self.locals.via(transport, &new_branch()));
        ack.headers.push("Max-Forwards", "70");
        ack.headers.push("From", from);
        ack.headers.push("To", to);
        ack.headers.push("Call-ID", call_id);
        ack.headers.push(
            "CSeq",
            CSeq {
                seq,
                method: Method::Ack,
            }
            .to_string(),
        );
        self.tl.send_stateless(&Message::Request(ack), dest);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::call::EngineConfig;
    use crate::dialplan::Dialplan;
    use crate::sip::digest::{self, Algorithm};
    use crate::sip::transaction::TimerConfig;
    use std::collections::HashMap;
    use std::sync::Arc;
    use std::time::Duration;

    /// A dataplane double that records the modes it is set to.
    #[derive(Default)]
    struct Modes(Vec<dataplane::Mode>);

    impl Media for Modes {
        fn create_session(
            &mut self,
            _: dataplane::Mode,
        ) -> Result<dataplane::Allocated, dataplane::Error> {
            Ok(dataplane::Allocated {
                id: dataplane::SessionId(1),
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
            mode: dataplane::Mode,
        ) -> Result<(), dataplane::Error> {
            self.0.push(mode);
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

    struct W {
        e: Engine<Modes>,
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

    impl W {
        fn feed(&mut self, from: &str, text: &str) {
            self.e
                .handle_datagram(text.as_bytes(), from.parse().unwrap(), self.now);
            self.flush();
        }
        fn feed_msg(&mut self, from: &str, m: Message) {
            self.e
                .handle_datagram(&m.to_bytes(), from.parse().unwrap(), self.now);
            self.flush();
        }
        fn flush(&mut self) {
            while let Some(t) = self.e.poll_transmit() {
                self.out.push((t.dest, Message::parse(&t.bytes).unwrap()));
            }
        }
        fn advance(&mut self, ms: u64) {
            self.now += Duration::from_millis(ms);
            self.e.handle_timeout(self.now);
            self.flush();
        }
        fn take(&mut self, to: &str) -> Vec<Message> {
            let to: SocketAddr = to.parse().unwrap();
            let (mine, rest) = std::mem::take(&mut self.out)
                .into_iter()
                .partition(|(d, _)| *d == to);
            self.out = rest;
            mine.into_iter().map(|(_, m)| m).collect()
        }
        fn requests(&mut self, to: &str) -> Vec<Request> {
            self.take(to)
                .into_iter()
                .filter_map(|m| match m {
                    Message::Request(r) => Some(r),
                    _ => None,
                })
                .collect()
        }
        fn responses(&mut self, to: &str) -> Vec<Response> {
            self.take(to)
                .into_iter()
                .filter_map(|m| match m {
                    Message::Response(r) => Some(r),
                    _ => None,
                })
                .collect()
        }
    }

    fn sdp(port: u16, dir: &str) -> String {
        format!(
            "v=0\r\no=- 1 2 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n\
             m=audio {port} RTP/AVP 0\r\na=rtpmap:0 PCMU/8000\r\na={dir}\r\n"
        )
    }

    /// `method` from `user` at `from` over `transport`, answered with a challenge, then sent
    /// again with credentials.
    fn authed(w: &mut W, method: &str, user: &str, from: &str, transport: &str, target: &str) {
        let to = if method == "REGISTER" {
            format!("sip:{user}@{T}")
        } else {
            target.to_string()
        };
        let contact = format!("sip:{user}@{from};transport={}", transport.to_lowercase());
        let msg = |cseq: u32, auth: &str| {
            let body = if method == "INVITE" {
                sdp(7000, "sendrecv")
            } else {
                String::new()
            };
            format!(
                "{method} {target} SIP/2.0\r\nVia: SIP/2.0/{transport} {from};branch=z9hG4bK{method}{user}{cseq};rport\r\n\
                 Max-Forwards: 70\r\nFrom: <sip:{user}@{T}>;tag=f{user}\r\nTo: <{to}>\r\n\
                 Call-ID: {method}-{user}\r\nCSeq: {cseq} {method}\r\nContact: <{contact}>\r\n{auth}\
                 Content-Type: application/sdp\r\nContent-Length: {}\r\n\r\n{body}",
                body.len()
            )
        };
        w.feed(from, &msg(1, ""));
        let ch = w.responses(from).pop().unwrap();
        let h = if ch.code == 401 {
            "WWW-Authenticate"
        } else {
            "Proxy-Authenticate"
        };
        let challenge = ch.headers.get(h).unwrap().to_string();
        let i = challenge.find("nonce=\"").unwrap() + 7;
        let nonce = &challenge[i..i + challenge[i..].find('"').unwrap()];
        let pw = format!("pw{user}");
        let resp = digest::response(
            Algorithm::Md5,
            user,
            "tandem",
            &pw,
            method,
            target,
            nonce,
            Some(("00000001", "c")),
        );
        let header = if ch.code == 401 {
            "Authorization"
        } else {
            "Proxy-Authorization"
        };
        let auth = format!(
            "{header}: Digest username=\"{user}\", realm=\"tandem\", nonce=\"{nonce}\", uri=\"{target}\", \
             response=\"{resp}\", algorithm=MD5, qop=auth, nc=00000001, cnonce=\"c\"\r\n"
        );
        w.feed(from, &msg(2, &auth));
    }

    /// 1001 (A, UDP) calls 1002 (B, registered over TCP); the call is up. Returns the
    /// caller's To header (with Tandem's tag) and the B-leg INVITE.
    fn bridged() -> (W, String, Request) {
        let cfg = EngineConfig {
            local: T.parse().unwrap(),
            realm: "tandem".into(),
            user_agent: "t".into(),
            context: "default".into(),
            user_contexts: HashMap::new(),
            users: [
                ("1001".to_string(), "pw1001".to_string()),
                ("1002".to_string(), "pw1002".to_string()),
            ]
            .into(),
            timers: TimerConfig::default(),
            user_codecs: HashMap::new(),
            tone_zone: "us".into(),
            sounds: Arc::new(HashMap::new()),
            gateways: Vec::new(),
        };
        let plan = "[default]\nexten => _XXXX,1,Dial(SIP/${EXTEN},20)\n";
        let plan = Arc::new(Dialplan::parse(plan, "t.conf").unwrap());
        let now = epoch();
        let mut e = Engine::new(cfg, plan, Modes::default(), [1; 32], now, 1_800_000_000);
        e.set_listener(
            crate::sip::transport::Transport::Tcp,
            "127.0.0.1:5062".parse().unwrap(),
        );
        let mut w = W {
            e,
            now,
            out: Vec::new(),
        };
        authed(&mut w, "REGISTER", "1002", B, "TCP", &format!("sip:{T}"));
        assert_eq!(w.responses(B).pop().unwrap().code, 200);
        authed(&mut w, "INVITE", "1001", A, "UDP", &format!("sip:1002@{T}"));
        let inv = w.requests(B).pop().expect("B-leg INVITE");
        // Transport correctness: the B leg goes over TCP, from our TCP listener.
        let via = inv.headers.get("Via").unwrap();
        assert!(via.starts_with("SIP/2.0/TCP 127.0.0.1:5062;"), "{via}");
        let contact = inv.headers.get("Contact").unwrap();
        assert!(contact.contains(";transport=tcp"), "{contact}");
        let mut ok = Response::for_request(&inv, 200);
        ok.set_to_tag("bob");
        ok.headers
            .set("Contact", format!("<sip:1002@{B};transport=tcp>"));
        ok.headers.set("Content-Type", "application/sdp");
        ok.body = sdp(8000, "sendrecv").into_bytes();
        w.feed_msg(B, Message::Response(ok));
        let ack = w.requests(B).pop().expect("ACK to B");
        assert_eq!(ack.method, Method::Ack);
        assert!(ack.headers.get("Via").unwrap().starts_with("SIP/2.0/TCP"));
        let ok = w
            .responses(A)
            .into_iter()
            .find(|r| r.code == 200)
            .expect("200 to the caller");
        let contact = ok.headers.get("Contact").unwrap();
        assert!(!contact.contains("transport="), "UDP caller: {contact}");
        let to = ok.headers.get("To").unwrap().to_string();
        w.feed(
            A,
            &format!(
                "ACK sip:tandem@{T} SIP/2.0\r\nVia: SIP/2.0/UDP {A};branch=z9hG4bKack1;rport\r\n\
                 Max-Forwards: 70\r\nFrom: <sip:1001@{T}>;tag=f1001\r\nTo: {to}\r\n\
                 Call-ID: INVITE-1001\r\nCSeq: 2 ACK\r\nContent-Length: 0\r\n\r\n"
            ),
        );
        (w, to, inv)
    }

    fn reinvite_from_a(to: &str, seq: u32, dir: &str) -> String {
        let body = sdp(7000, dir);
        format!(
            "INVITE sip:tandem@{T} SIP/2.0\r\nVia: SIP/2.0/UDP {A};branch=z9hG4bKre{seq};rport\r\n\
             Max-Forwards: 70\r\nFrom: <sip:1001@{T}>;tag=f1001\r\nTo: {to}\r\n\
             Call-ID: INVITE-1001\r\nCSeq: {seq} INVITE\r\nContact: <sip:1001@{A}>\r\n\
             Content-Type: application/sdp\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        )
    }

    fn answer(w: &mut W, req: &Request, code: u16, dir: &str) {
        let mut r = Response::for_request(req, code);
        if code == 200 {
            r.headers.set("Content-Type", "application/sdp");
            r.body = sdp(8000, dir).into_bytes();
        }
        w.feed_msg(B, Message::Response(r));
    }

    #[test]
    fn hold_and_resume_are_relayed_and_switch_the_media() {
        let (mut w, to, first) = bridged();
        w.advance(2000);
        // Hold: A sends sendonly; B gets a re-INVITE over TCP with Tandem's SDP, sendonly.
        w.feed(A, &reinvite_from_a(&to, 3, "sendonly"));
        let re = w.requests(B).pop().expect("re-INVITE to B");
        assert_eq!(re.method, Method::Invite);
        assert_eq!(re.uri, format!("sip:1002@{B};transport=tcp"));
        assert!(re.headers.get("Via").unwrap().starts_with("SIP/2.0/TCP"));
        assert!(re.to().unwrap().tag() == Some("bob"), "in B's dialog");
        assert_eq!(re.cseq().unwrap().seq, 2);
        let body = String::from_utf8(re.body.clone()).unwrap();
        assert!(body.contains("a=sendonly"), "{body}");
        assert!(body.contains("m=audio 20002 "), "Tandem's B port: {body}");
        assert!(
            !body.contains("7000"),
            "the caller's port must not leak: {body}"
        );
        let version = |sdp: &[u8]| -> u64 {
            let sd = SessionDescription::parse(std::str::from_utf8(sdp).unwrap()).unwrap();
            sd.origin.sess_version
        };
        assert_eq!(
            version(&re.body),
            version(&first.body) + 1,
            "o= version bumped"
        );
        // Glare: B's own re-INVITE meanwhile gets 491.
        let mut b_re = Request::new(Method::Invite, format!("sip:tandem@{T}"));
        b_re.headers
            .push("Via", format!("SIP/2.0/TCP {B};branch=z9hG4bKbre1;rport"));
        b_re.headers.push("From", re.headers.get("To").unwrap());
        b_re.headers.push("To", re.headers.get("From").unwrap());
        b_re.headers.push("Call-ID", re.call_id().unwrap());
        b_re.headers.push("CSeq", "7 INVITE");
        b_re.headers.push("Content-Type", "application/sdp");
        b_re.body = sdp(8000, "sendonly").into_bytes();
        w.feed_msg(B, Message::Request(b_re));
        let r = w.responses(B);
        assert!(r.iter().any(|r| r.code == 491), "{r:?}");
        // B answers recvonly: the caller gets 200 (Tandem's A-side SDP, recvonly) and
        // the dataplane forwards A -> B only.
        answer(&mut w, &re, 200, "recvonly");
        let ack = w.requests(B).pop().expect("ACK for the re-INVITE's 200");
        assert_eq!(ack.method, Method::Ack);
        assert_eq!(ack.cseq().unwrap().seq, 2);
        let ok = w
            .responses(A)
            .into_iter()
            .find(|r| r.code == 200 && r.cseq().is_some_and(|c| c.seq == 3))
            .expect("200 to the hold re-INVITE");
        let body = String::from_utf8(ok.body.clone()).unwrap();
        assert!(body.contains("a=recvonly"), "{body}");
        assert!(body.contains("m=audio 20000 "), "{body}");
        assert_eq!(
            w.e.media.0.last(),
            Some(&dataplane::Mode::OneWay(dataplane::Side::A))
        );
        // Resume.
        w.advance(5000);
        w.feed(A, &reinvite_from_a(&to, 4, "sendrecv"));
        let re = w.requests(B).pop().expect("re-INVITE to B");
        assert!(String::from_utf8_lossy(&re.body).contains("a=sendrecv"));
        answer(&mut w, &re, 200, "sendrecv");
        assert!(w
            .responses(A)
            .iter()
            .any(|r| r.code == 200 && r.cseq().is_some_and(|c| c.seq == 4)));
        assert_eq!(w.e.media.0.last(), Some(&dataplane::Mode::Relay));
        // A refusal is relayed and leaves the media as it was.
        w.feed(A, &reinvite_from_a(&to, 5, "inactive"));
        let re = w.requests(B).pop().expect("re-INVITE to B");
        answer(&mut w, &re, 488, "");
        assert!(w.responses(A).iter().any(|r| r.code == 488));
        assert!(
            w.requests(B).iter().any(|r| r.method == Method::Ack),
            "488 ACKed"
        );
        assert_eq!(w.e.media.0.len(), 2, "{:?}", w.e.media.0);
        // No answer at all: 408 after Timer B (over TCP nothing is retransmitted).
        w.feed(A, &reinvite_from_a(&to, 6, "inactive"));
        assert_eq!(w.requests(B).len(), 1);
        w.advance(10_000);
        assert!(w.requests(B).is_empty(), "no retransmission over TCP");
        w.advance(30_000);
        assert!(w.responses(A).iter().any(|r| r.code == 408));
    }

    #[test]
    fn in_dialog_options_and_update() {
        let (mut w, to, _) = bridged();
        let req = |m: &str, body: &str| {
            format!(
                "{m} sip:tandem@{T} SIP/2.0\r\nVia: SIP/2.0/UDP {A};branch=z9hG4bK{m}{};rport\r\n\
                 From: <sip:1001@{T}>;tag=f1001\r\nTo: {to}\r\nCall-ID: INVITE-1001\r\n\
                 CSeq: 9 {m}\r\nContent-Type: application/sdp\r\nContent-Length: {}\r\n\r\n{body}",
                body.len(),
                body.len()
            )
        };
        w.feed(A, &req("OPTIONS", ""));
        let r = w.responses(A).pop().unwrap();
        assert_eq!(r.code, 200);
        assert!(r.headers.get("Allow").unwrap().contains("INVITE"));
        w.feed(A, &req("UPDATE", ""));
        assert_eq!(w.responses(A).pop().unwrap().code, 200);
        w.feed(A, &req("UPDATE", &sdp(7000, "sendonly")));
        assert_eq!(w.responses(A).pop().unwrap().code, 488);
        assert!(w.e.media.0.is_empty());
    }

    #[test]
    fn directions_map_to_dataplane_modes() {
        use Direction::*;
        assert_eq!(mode_for(SendRecv, SendRecv), dataplane::Mode::Relay);
        assert_eq!(
            mode_for(SendOnly, RecvOnly),
            dataplane::Mode::OneWay(dataplane::Side::A)
        );
        assert_eq!(
            mode_for(RecvOnly, SendOnly),
            dataplane::Mode::OneWay(dataplane::Side::B)
        );
        assert_eq!(mode_for(Inactive, SendRecv), dataplane::Mode::Inactive);
        let old_hold = SessionDescription::parse(
            "v=0\r\no=- 1 1 IN IP4 0.0.0.0\r\ns=-\r\nc=IN IP4 0.0.0.0\r\nt=0 0\r\nm=audio 7000 RTP/AVP 0\r\n",
        )
        .unwrap();
        assert_eq!(effective_direction(&old_hold), SendOnly);
    }
}
