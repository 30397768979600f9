//! The small SIP user agent an interworking function needs towards the call
//! engine: one INVITE dialog per call, as UAS (the engine calls the IWF) or
//! UAC (the IWF calls the engine), with the engine as the only peer.
//!
//! Sans-IO: [`Dialog`] builds the requests and responses (provisional and
//! final answers to the engine's INVITE, the ACK for our INVITE's final
//! response, in-dialog BYE, CANCEL) from what it remembers of the dialog;
//! the IWF sends the bytes. The SDP helpers describe the IWF's RTP endpoint
//! (G.711 only) and read the engine's audio address from its offer or
//! answer. [`RtpTx`] numbers the outgoing RTP stream.
//!
//! Nothing here retransmits: the engine and the IWF share loopback, where
//! datagrams are not lost; the engine's own transactions retransmit towards
//! us and the IWF answers each copy again.

use std::net::SocketAddr;

use crate::sip::{Message, Method, NameAddr, Request, Response, Uri};

/// RTP payload type of G.711 µ-law.
pub const PT_PCMU: u8 = 0;
/// RTP payload type of G.711 A-law.
pub const PT_PCMA: u8 = 8;

/// Which side of the INVITE we are.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// The engine sent the INVITE.
    Uas,
    /// We sent it.
    Uac,
}

/// One INVITE dialog with the engine.
#[derive(Debug, Clone)]
pub struct Dialog {
    /// Which side we are.
    pub role: Role,
    /// Call-ID.
    pub call_id: String,
    /// Our side (`<uri>;tag=x`), their side, their target (Contact).
    pub local: String,
    /// Their side as last seen (with their tag once known).
    pub remote: String,
    /// Where in-dialog requests go.
    pub target: String,
    /// The INVITE (theirs for a UAS, ours for a UAC).
    pub invite: Request,
    /// Our CSeq for in-dialog requests.
    pub cseq: u32,
    /// Our SIP address (Via, Contact).
    pub me: SocketAddr,
    /// The user part of our Contact (`iwf` unless [`Dialog::named`]).
    pub user: &'static str,
}

impl Dialog {
    /// The dialog of an INVITE the engine sent to us (at `me`).
    pub fn uas(invite: Request, me: SocketAddr, engine: SocketAddr) -> Option<Self> {
        let call_id = invite.call_id()?.to_string();
        let local = format!(
            "{};tag={}",
            invite.headers.get("To").unwrap_or("<sip:iwf@invalid>"),
            crate::sip::new_tag()
        );
        let remote = invite.headers.get("From")?.to_string();
        let target = invite
            .contact()
            .map(|c| c.uri.to_string())
            .unwrap_or_else(|| format!("sip:{engine}"));
        Some(Dialog {
            role: Role::Uas,
            call_id,
            local,
            remote,
            target,
            invite,
            cseq: 1,
            me,
            user: "iwf",
        })
    }

    /// A new INVITE from us (at `me`) to `user@engine`. `from` is the From
    /// value without tag (`"Name" <sip:number@host>`); `extra` headers are
    /// added as given (P-Asserted-Identity, Privacy); `sdp` is the offer.
    pub fn uac(
        user: &str,
        from: &str,
        extra: &[(&str, String)],
        sdp: String,
        me: SocketAddr,
        engine: SocketAddr,
    ) -> Self {
        let uri = format!("sip:{user}@{engine}");
        let call_id = format!("{}@{}", crate::sip::new_call_id(), me.ip());
        let local = format!("{from};tag={}", crate::sip::new_tag());
        let mut r = Request::new(Method::Invite, uri.clone());
        r.headers.push(
            "Via",
            format!("SIP/2.0/UDP {me};branch={}", crate::sip::new_branch()),
        );
        r.headers.push("Max-Forwards", "70");
        r.headers.push("From", local.clone());
        r.headers.push("To", format!("<{uri}>"));
        r.headers.push("Call-ID", call_id.clone());
        r.headers.push("CSeq", "1 INVITE");
        r.headers.push("Contact", format!("<sip:iwf@{me}>"));
        for (h, v) in extra {
            r.headers.push(h, v.clone());
        }
        r.headers.push("Content-Type", "application/sdp");
        r.body = sdp.into_bytes();
        Dialog {
            role: Role::Uac,
            call_id,
            local,
            remote: format!("<{uri}>"),
            target: uri,
            invite: r,
            cseq: 1,
            me,
            user: "iwf",
        }
    }

    /// The same dialog with `user` as our Contact's user part (`pstn`,
    /// `h323`: names the IWF in the engine's logs); a UAC's INVITE is
    /// updated too.
    pub fn named(mut self, user: &'static str) -> Self {
        self.user = user;
        if self.role == Role::Uac {
            let contact = self.contact();
            self.invite.headers.set("Contact", contact);
        }
        self
    }

    /// Our Contact header value.
    pub fn contact(&self) -> String {
        format!("<sip:{}@{}>", self.user, self.me)
    }

    /// UAS: a response to the engine's INVITE (`sdp` as body if given,
    /// `Reason: Q.850;cause=` if given).
    pub fn response(&self, code: u16, sdp: Option<String>, cause: Option<u8>) -> Response {
        let mut r = Response::for_request(&self.invite, code);
        r.set_to_tag(&tag_of(&self.local));
        if (101..300).contains(&code) {
            r.headers.push("Contact", self.contact());
        }
        if let Some(c) = cause {
            r.headers.push("Reason", format!("Q.850;cause={c}"));
        }
        if let Some(s) = sdp {
            r.headers.push("Content-Type", "application/sdp");
            r.body = s.into_bytes();
        }
        r
    }

    /// An in-dialog request (BYE), with `Reason: Q.850;cause=` if given.
    pub fn request(&mut self, method: Method, cause: Option<u8>) -> Request {
        self.cseq += 1;
        let mut r = Request::new(method.clone(), self.target.clone());
        r.headers.push(
            "Via",
            format!(
                "SIP/2.0/UDP {};branch={}",
                self.me,
                crate::sip::new_branch()
            ),
        );
        r.headers.push("Max-Forwards", "70");
        r.headers.push("From", self.local.clone());
        r.headers.push("To", self.remote.clone());
        r.headers.push("Call-ID", self.call_id.clone());
        r.headers
            .push("CSeq", format!("{} {}", self.cseq, method.as_str()));
        if let Some(c) = cause {
            r.headers.push("Reason", format!("Q.850;cause={c}"));
        }
        r
    }

    /// UAC: CANCEL of our INVITE.
    pub fn cancel(&self, cause: Option<u8>) -> Request {
        let mut r = Request::new(Method::Cancel, self.invite.uri.clone());
        for h in ["Via", "From", "To", "Call-ID"] {
            if let Some(v) = self.invite.headers.get(h) {
                r.headers.push(h, v.to_string());
            }
        }
        r.headers.push("CSeq", "1 CANCEL");
        r.headers.push("Max-Forwards", "70");
        if let Some(c) = cause {
            r.headers.push("Reason", format!("Q.850;cause={c}"));
        }
        r
    }

    /// UAC: the ACK for a final response to our INVITE (a new transaction
    /// to the target for 2xx, the INVITE's own branch otherwise). A 2xx also
    /// learns the remote tag and target.
    pub fn ack(&mut self, resp: &Response) -> Request {
        let success = resp.is_success();
        if success {
            if let Some(to) = resp.headers.get("To") {
                self.remote = to.to_string();
            }
            if let Some(t) = resp.contact() {
                self.target = t.uri.to_string();
            }
        }
        let uri = if success {
            self.target.clone()
        } else {
            self.invite.uri.clone()
        };
        let mut r = Request::new(Method::Ack, uri);
        let via = if success {
            format!(
                "SIP/2.0/UDP {};branch={}",
                self.me,
                crate::sip::new_branch()
            )
        } else {
            self.invite
                .headers
                .get("Via")
                .unwrap_or_default()
                .to_string()
        };
        r.headers.push("Via", via);
        r.headers.push("Max-Forwards", "70");
        r.headers.push("From", self.local.clone());
        r.headers.push(
            "To",
            resp.headers.get("To").unwrap_or(&self.remote).to_string(),
        );
        r.headers.push("Call-ID", self.call_id.clone());
        r.headers.push("CSeq", "1 ACK");
        r
    }
}

/// Serialize a request or response.
pub fn bytes(m: impl Into<Message>) -> Vec<u8> {
    m.into().to_bytes()
}

/// `tag` parameter of a `<uri>;tag=x` header value.
pub fn tag_of(v: &str) -> String {
    NameAddr::parse(v)
        .ok()
        .and_then(|n| n.tag().map(str::to_string))
        .unwrap_or_default()
}

/// `%XX` decoding of a URI user part (invalid escapes stay as written).
pub fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let hex = |c: u8| (c as char).to_digit(16);
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' && i + 2 < b.len() {
            if let (Some(h), Some(l)) = (hex(b[i + 1]), hex(b[i + 2])) {
                out.push((h * 16 + l) as u8);
                i += 3;
                continue;
            }
        }
        out.push(b[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// The Request-URI user part, percent-decoded.
pub fn request_user(req: &Request) -> Option<String> {
    Uri::parse(&req.uri)
        .ok()
        .and_then(|u| u.user_name().map(percent_decode))
}

/// The caller of an engine INVITE: number (P-Asserted-Identity user, else
/// From user; digits only), display name (PAI's, else From's), and whether
/// privacy was asked for (`Privacy: id|header|user`).
pub fn caller_of(req: &Request) -> (Option<String>, Option<String>, bool) {
    let pai = req
        .headers
        .get("P-Asserted-Identity")
        .and_then(|v| v.split(',').next())
        .and_then(|v| NameAddr::parse(v.trim()).ok());
    let from = req.from();
    let number = pai
        .as_ref()
        .and_then(|n| n.uri.user_name().map(percent_decode))
        .or_else(|| {
            from.as_ref()
                .and_then(|f| f.uri.user_name().map(percent_decode))
        })
        .filter(|u| !u.is_empty() && u.bytes().all(|b| b.is_ascii_digit()));
    let name = pai
        .as_ref()
        .and_then(|n| n.display.clone())
        .or_else(|| from.as_ref().and_then(|f| f.display.clone()))
        .filter(|n| !n.is_empty() && !n.eq_ignore_ascii_case("anonymous"));
    (number, name, wants_privacy(req))
}

/// The engine's audio address and the G.711 payload type to use from an
/// offer (PCMU first when both are offered in that order, else the first).
pub fn pick_g711(body: &[u8]) -> Option<(SocketAddr, u8)> {
    let text = std::str::from_utf8(body).ok()?;
    let sdp = crate::sdp::SessionDescription::parse(text).ok()?;
    let m = sdp.audio()?;
    let addr = sdp.media_addr(m)?;
    let pt = *m
        .formats
        .iter()
        .find(|p| **p == PT_PCMA || **p == PT_PCMU)?;
    Some((addr, pt))
}

/// `Reason: Q.850;cause=N` of a message's headers (RFC 3326; the first
/// Q.850 value with a cause parameter, spaces around `;` and `=` allowed).
pub fn reason_cause(headers: &crate::sip::Headers) -> Option<u8> {
    headers.get_all("Reason").find_map(|v| {
        let mut parts = v.split(';').map(str::trim);
        if !parts.next()?.eq_ignore_ascii_case("Q.850") {
            return None;
        }
        parts.find_map(|p| {
            let (k, val) = p.split_once('=')?;
            k.trim()
                .eq_ignore_ascii_case("cause")
                .then(|| val.trim().parse::<u8>().ok())
                .flatten()
        })
    })
}

/// RFC 3323 `Privacy: id` (or `header`/`user`): the caller asks for its
/// identity to be withheld.
pub fn wants_privacy(req: &Request) -> bool {
    req.headers.get_all("Privacy").any(|v| {
        v.split([';', ',']).map(str::trim).any(|t| {
            ["id", "header", "user"]
                .iter()
                .any(|p| t.eq_ignore_ascii_case(p))
        })
    })
}

/// Our SDP: audio at `addr` with the payload types `pts`, 20 ms.
pub fn sdp(addr: SocketAddr, pts: &[u8], name: &str) -> String {
    sdp_with_events(addr, pts, None, name)
}

/// [`sdp`] plus telephone-event (RFC 4733, digits 0-15) on payload type
/// `events` when given.
pub fn sdp_with_events(addr: SocketAddr, pts: &[u8], events: Option<u8>, name: &str) -> String {
    let ip = addr.ip();
    let port = addr.port();
    let fam = if ip.is_ipv4() { "IP4" } else { "IP6" };
    let mut s = format!(
        "v=0\r\no=- {port} 1 IN {fam} {ip}\r\ns={name}\r\nc=IN {fam} {ip}\r\nt=0 0\r\nm=audio {port} RTP/AVP"
    );
    for pt in pts.iter().chain(events.as_ref()) {
        s.push_str(&format!(" {pt}"));
    }
    s.push_str("\r\n");
    for pt in pts {
        let name = if *pt == PT_PCMU { "PCMU" } else { "PCMA" };
        s.push_str(&format!("a=rtpmap:{pt} {name}/8000\r\n"));
    }
    if let Some(pt) = events {
        s.push_str(&format!(
            "a=rtpmap:{pt} telephone-event/8000\r\na=fmtp:{pt} 0-15\r\n"
        ));
    }
    s.push_str("a=ptime:20\r\na=sendrecv\r\n");
    s
}

/// RTP sender state of one stream.
#[derive(Debug, Clone)]
pub struct RtpTx {
    ssrc: u32,
    seq: u16,
    ts: u32,
    first: bool,
}

impl Default for RtpTx {
    fn default() -> Self {
        Self {
            ssrc: rand::random(),
            seq: rand::random(),
            ts: rand::random(),
            first: true,
        }
    }
}

impl RtpTx {
    /// The next packet: `payload` (one sample per octet, G.711) with `pt`.
    pub fn packet(&mut self, pt: u8, payload: &[u8]) -> Option<Vec<u8>> {
        self.packet_with(pt, payload.len(), |p| p.copy_from_slice(payload))
    }

    /// The next packet with `len` payload octets (one sample each) written
    /// by `fill`, with `pt`.
    pub fn packet_with(
        &mut self,
        pt: u8,
        len: usize,
        fill: impl FnOnce(&mut [u8]),
    ) -> Option<Vec<u8>> {
        let (marker, ts) = (self.first, self.ts);
        let mut pkt = self.emit(pt, marker, ts, len)?;
        fill(&mut pkt[12..]);
        self.advance(len as u32);
        Some(pkt)
    }

    /// A telephone-event packet (RFC 4733) sent in place of `advance`
    /// samples of audio: its own marker and timestamp (the event's start),
    /// the stream's SSRC and next sequence number; the media clock still
    /// advances by `advance`.
    pub fn event(
        &mut self,
        pt: u8,
        marker: bool,
        ts: u32,
        payload: &[u8],
        advance: u32,
    ) -> Option<Vec<u8>> {
        let mut pkt = self.emit(pt, marker, ts, payload.len())?;
        pkt[12..].copy_from_slice(payload);
        self.advance(advance);
        Some(pkt)
    }

    /// The timestamp the next audio packet carries.
    pub fn ts(&self) -> u32 {
        self.ts
    }

    fn emit(&self, pt: u8, marker: bool, ts: u32, len: usize) -> Option<Vec<u8>> {
        let mut pkt = vec![0u8; 12 + len];
        let repr = dataplane::wire::rtp::Repr {
            marker,
            payload_type: dataplane::wire::Pt::new(pt),
            sequence_number: self.seq,
            timestamp: ts,
            ssrc: dataplane::wire::Ssrc(self.ssrc),
        };
        repr.emit(&mut pkt).ok()?;
        Some(pkt)
    }

    fn advance(&mut self, samples: u32) {
        self.first = false;
        self.seq = self.seq.wrapping_add(1);
        self.ts = self.ts.wrapping_add(samples);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn engine_invite() -> Request {
        let mut r = Request::new(Method::Invite, "sip:5@127.0.0.1:6000");
        r.headers
            .push("Via", "SIP/2.0/UDP 127.0.0.1:5060;branch=z9hG4bKx");
        r.headers.push("From", "\"Bob\" <sip:1001@127.0.0.1>;tag=a");
        r.headers.push("To", "<sip:5@127.0.0.1:6000>");
        r.headers.push("Call-ID", "c1");
        r.headers.push("CSeq", "1 INVITE");
        r.headers.push("Contact", "<sip:tandem@127.0.0.1:5060>");
        r.headers
            .push("P-Asserted-Identity", "\"Alice Smith\" <sip:5551234@x>");
        r
    }

    #[test]
    fn uas_dialog_answers_and_hangs_up() {
        let me: SocketAddr = "127.0.0.1:6000".parse().unwrap();
        let eng: SocketAddr = "127.0.0.1:5060".parse().unwrap();
        let mut d = Dialog::uas(engine_invite(), me, eng).unwrap();
        let ok = d.response(200, Some(sdp(me, &[PT_PCMU], "t")), None);
        let tag = tag_of(ok.headers.get("To").unwrap());
        assert!(!tag.is_empty());
        assert_eq!(ok.headers.get("Content-Type"), Some("application/sdp"));
        let bye = d.request(Method::Bye, Some(16));
        assert_eq!(bye.uri, "sip:tandem@127.0.0.1:5060");
        assert_eq!(bye.headers.get("CSeq"), Some("2 BYE"));
        assert!(bye.headers.get("From").unwrap().contains(&tag));
        assert_eq!(reason_cause(&bye.headers), Some(16));
        let (n, name, privacy) = caller_of(&d.invite);
        assert_eq!(n.as_deref(), Some("5551234"));
        assert_eq!(name.as_deref(), Some("Alice Smith"));
        assert!(!privacy);
    }

    #[test]
    fn uac_ack_learns_the_remote_tag() {
        let me: SocketAddr = "127.0.0.1:6000".parse().unwrap();
        let eng: SocketAddr = "127.0.0.1:5060".parse().unwrap();
        let mut d = Dialog::uac(
            "s",
            "<sip:555@127.0.0.1>",
            &[],
            sdp(me, &[8, 0], "t"),
            me,
            eng,
        );
        let mut ok = Response::for_request(&d.invite, 200);
        ok.set_to_tag("zz");
        ok.headers.push("Contact", "<sip:b@127.0.0.1:5070>");
        let ack = d.ack(&ok);
        assert_eq!(ack.uri, "sip:b@127.0.0.1:5070");
        assert!(d.remote.contains("tag=zz"));
        assert_eq!(pick_g711(d.invite.body.as_slice()).map(|x| x.1), Some(8));
        let mut tx = RtpTx::default();
        let p = tx.packet(0, &[0xff; 160]).unwrap();
        assert_eq!(p.len(), 172);
        assert_eq!(p[1], 0x80, "marker on the first packet, PT 0");
    }

    #[test]
    fn named_dialog_uses_its_contact_user() {
        let me: SocketAddr = "127.0.0.1:6000".parse().unwrap();
        let eng: SocketAddr = "127.0.0.1:5060".parse().unwrap();
        let d = Dialog::uac("s", "<sip:1@h>", &[], String::new(), me, eng).named("pstn");
        assert_eq!(
            d.invite.headers.get("Contact"),
            Some("<sip:pstn@127.0.0.1:6000>")
        );
        assert_eq!(d.invite.headers.get_all("Contact").count(), 1);
        let d = Dialog::uas(engine_invite(), me, eng).unwrap().named("pstn");
        let ok = d.response(180, None, None);
        assert_eq!(ok.headers.get("Contact"), Some("<sip:pstn@127.0.0.1:6000>"));
    }

    #[test]
    fn events_share_the_stream_and_keep_its_clock() {
        let mut tx = RtpTx::default();
        let a = tx.packet(8, &[0xd5; 160]).unwrap();
        let at = |p: &[u8], i: usize| u32::from_be_bytes([p[i], p[i + 1], p[i + 2], p[i + 3]]);
        let seq = |p: &[u8]| u16::from_be_bytes([p[2], p[3]]);
        let start = at(&a, 4) + 160;
        assert_eq!(tx.ts(), start);
        // An event that began one block earlier: its own timestamp and marker.
        let e = tx
            .event(101, true, start - 160, &[5, 0x8a, 0, 160], 160)
            .unwrap();
        assert_eq!(e.len(), 16);
        assert_eq!(e[1], 0x80 | 101);
        assert_eq!(at(&e, 4), start - 160);
        assert_eq!(at(&e, 8), at(&a, 8), "same SSRC");
        assert_eq!(seq(&e), seq(&a).wrapping_add(1));
        // Audio after it: no marker, the clock advanced by the event's block.
        let b = tx.packet_with(8, 160, |p| p.fill(0x55)).unwrap();
        assert_eq!(b[1], 8);
        assert_eq!(at(&b, 4), start + 160);
        assert_eq!(seq(&b), seq(&a).wrapping_add(2));
        assert!(b[12..].iter().all(|&x| x == 0x55));
        let s = sdp_with_events(me(), &[8], Some(101), "n");
        assert!(s.contains("m=audio 6000 RTP/AVP 8 101\r\n"), "{s}");
        assert!(s.contains("a=rtpmap:101 telephone-event/8000\r\na=fmtp:101 0-15\r\n"));
        assert!(!sdp(me(), &[8], "n").contains("telephone-event"));
    }

    fn me() -> SocketAddr {
        "127.0.0.1:6000".parse().unwrap()
    }
}
