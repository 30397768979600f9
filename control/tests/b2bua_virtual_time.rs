//! The call manager driven with virtual time and hand-written SIP: REGISTER
//! with digest, an authenticated INVITE, the B leg, answer, BYE, and the Dial
//! timeout (CANCEL) — no sockets, no sleeps.

mod vt;

use std::time::Duration;

use control::sip::digest::{self, Algorithm};
use control::sip::{Method, Response};
use dataplane::{Event, Mode, SessionId, Side};
use vt::*;

fn nonce_of(challenge: &str) -> String {
    let i = challenge.find("nonce=\"").expect("nonce") + 7;
    let rest = &challenge[i..];
    rest[..rest.find('"').unwrap()].to_string()
}

fn sdp(port: u16) -> String {
    format!(
        "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n\
         m=audio {port} RTP/AVP 0 8 101\r\na=rtpmap:0 PCMU/8000\r\na=rtpmap:8 PCMA/8000\r\n\
         a=rtpmap:101 telephone-event/8000\r\na=fmtp:101 0-15\r\na=ptime:20\r\na=sendrecv\r\n"
    )
}

fn with_body(head: String, body: &str) -> String {
    format!(
        "{head}Content-Type: application/sdp\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )
}

fn register(w: &mut World, user: &str, pw: &str, from: &str) -> u16 {
    let base = |cseq: u32, auth: &str| {
        format!(
            "REGISTER sip:{TANDEM} SIP/2.0\r\nVia: SIP/2.0/UDP {from};branch=z9hG4bKreg{user}{cseq};rport\r\n\
             Max-Forwards: 70\r\nFrom: <sip:{user}@{TANDEM}>;tag=r{user}\r\nTo: <sip:{user}@{TANDEM}>\r\n\
             Call-ID: reg-{user}@test\r\nCSeq: {cseq} REGISTER\r\nContact: <sip:{user}@{from}>\r\nExpires: 600\r\n\
             {auth}Content-Length: 0\r\n\r\n"
        )
    };
    w.send(from, &base(1, ""));
    let r = w.take_responses(from);
    assert_eq!(r.last().unwrap().code, 401);
    let ch = r
        .last()
        .unwrap()
        .headers
        .get("WWW-Authenticate")
        .unwrap()
        .to_string();
    let nonce = nonce_of(&ch);
    let uri = format!("sip:{TANDEM}");
    let resp = digest::response(
        Algorithm::Md5,
        user,
        "tandem",
        pw,
        "REGISTER",
        &uri,
        &nonce,
        Some(("00000001", "abc")),
    );
    let auth = format!(
        "Authorization: Digest username=\"{user}\", realm=\"tandem\", nonce=\"{nonce}\", uri=\"{uri}\", \
         response=\"{resp}\", algorithm=MD5, qop=auth, nc=00000001, cnonce=\"abc\"\r\n"
    );
    w.send(from, &base(2, &auth));
    w.take_responses(from).last().unwrap().code
}

/// An authenticated INVITE from 1001 to `exten`: returns the 407-challenged
/// then accepted INVITE's branch.
fn invite(w: &mut World, exten: &str, call_id: &str) {
    let head = |cseq: u32, auth: &str| {
        format!(
            "INVITE sip:{exten}@{TANDEM} SIP/2.0\r\nVia: SIP/2.0/UDP {PHONE_A};branch=z9hG4bKinv{call_id}{cseq};rport\r\n\
             Max-Forwards: 70\r\nFrom: \"Alice\" <sip:1001@{TANDEM}>;tag=alice\r\nTo: <sip:{exten}@{TANDEM}>\r\n\
             Call-ID: {call_id}\r\nCSeq: {cseq} INVITE\r\nContact: <sip:1001@{PHONE_A}>\r\n{auth}"
        )
    };
    w.send(PHONE_A, &with_body(head(1, ""), &sdp(7000)));
    let r = w.take_responses(PHONE_A);
    let last = r.last().unwrap();
    assert_eq!(last.code, 407, "unauthenticated INVITE is challenged");
    let nonce = nonce_of(last.headers.get("Proxy-Authenticate").unwrap());
    let to = last.headers.get("To").unwrap().to_string();
    w.send(
        PHONE_A,
        &format!(
            "ACK sip:{exten}@{TANDEM} SIP/2.0\r\nVia: SIP/2.0/UDP {PHONE_A};branch=z9hG4bKinv{call_id}1;rport\r\n\
             Max-Forwards: 70\r\nFrom: \"Alice\" <sip:1001@{TANDEM}>;tag=alice\r\nTo: {to}\r\nCall-ID: {call_id}\r\n\
             CSeq: 1 ACK\r\nContent-Length: 0\r\n\r\n"
        ),
    );
    let uri = format!("sip:{exten}@{TANDEM}");
    let resp = digest::response(
        Algorithm::Md5,
        "1001",
        "tandem",
        "pw1001",
        "INVITE",
        &uri,
        &nonce,
        Some(("00000001", "xyz")),
    );
    let auth = format!(
        "Proxy-Authorization: Digest username=\"1001\", realm=\"tandem\", nonce=\"{nonce}\", uri=\"{uri}\", \
         response=\"{resp}\", algorithm=MD5, qop=auth, nc=00000001, cnonce=\"xyz\"\r\n"
    );
    w.send(PHONE_A, &with_body(head(2, &auth), &sdp(7000)));
}

const PLAN: &str = "[default]\nexten => _1XXX,1,Dial(SIP/${EXTEN},5)\n same => n,Hangup()\nexten => 600,1,Answer()\n same => n,Echo()\n";

#[test]
fn authenticated_call_is_bridged_and_bye_releases_both_legs() {
    let mut w = World::new(PLAN);
    assert_eq!(register(&mut w, "1002", "pw1002", PHONE_B), 200);
    invite(&mut w, "1002", "call-1");
    let a_resp = w.take_responses(PHONE_A);
    assert!(
        a_resp.iter().any(|r| r.code == 100),
        "100 Trying to the caller"
    );
    assert_eq!(w.media.0.borrow().created, 1);
    assert!(w
        .media
        .0
        .borrow()
        .remotes
        .contains(&(SessionId(1), Side::A, addr("127.0.0.1:7000"))));

    // The B leg: a new INVITE to 1002's registered contact, with Tandem's media address.
    let b_inv = w.take_requests(PHONE_B);
    assert_eq!(b_inv.len(), 1);
    let inv = &b_inv[0];
    assert_eq!(inv.method, Method::Invite);
    assert_eq!(inv.uri, format!("sip:1002@{PHONE_B}"));
    let body = String::from_utf8(inv.body.clone()).unwrap();
    assert!(
        body.contains("m=audio 20006 "),
        "B offer carries Tandem's B port: {body}"
    );
    assert!(
        !body.contains("7000"),
        "the caller's address never reaches the callee: {body}"
    );
    assert!(
        inv.from().unwrap().uri.user.as_deref() == Some("1001"),
        "caller id passes through"
    );

    // 180 then 200 from the callee.
    let mut r180 = Response::for_request(inv, 180);
    r180.set_to_tag("bob");
    w.engine
        .handle_datagram(&r180.to_bytes(), addr(PHONE_B), w.now);
    w.flush();
    assert!(w.take_responses(PHONE_A).iter().any(|r| r.code == 180));
    let mut r200 = Response::for_request(inv, 200);
    r200.set_to_tag("bob");
    r200.headers.set("Contact", format!("<sip:1002@{PHONE_B}>"));
    r200.headers.set("Content-Type", "application/sdp");
    r200.body = sdp(8000).into_bytes();
    w.engine
        .handle_datagram(&r200.to_bytes(), addr(PHONE_B), w.now);
    w.flush();
    let acks = w.take_requests(PHONE_B);
    assert!(
        acks.iter().any(|r| r.method == Method::Ack),
        "200 from the callee is ACKed"
    );
    let ok = w
        .take_responses(PHONE_A)
        .into_iter()
        .find(|r| r.code == 200)
        .expect("200 to the caller");
    let body = String::from_utf8(ok.body.clone()).unwrap();
    assert!(
        body.contains("m=audio 20004 "),
        "caller sees Tandem's A port: {body}"
    );
    assert!(!body.contains("8000 RTP"), "{body}");
    assert!(w
        .media
        .0
        .borrow()
        .remotes
        .contains(&(SessionId(1), Side::B, addr("127.0.0.1:8000"))));
    assert_eq!(w.media.0.borrow().armed, vec![SessionId(1)]);
    assert_eq!(w.engine.calls_info(w.now).len(), 1);
    assert_eq!(w.engine.calls_info(w.now)[0].legs.len(), 2);

    // Caller ACKs, then hangs up.
    let to = ok.headers.get("To").unwrap().to_string();
    let dialog = |m: &str, cseq: u32, br: &str| {
        format!(
            "{m} sip:tandem@{TANDEM} SIP/2.0\r\nVia: SIP/2.0/UDP {PHONE_A};branch=z9hG4bK{br};rport\r\nMax-Forwards: 70\r\n\
             From: \"Alice\" <sip:1001@{TANDEM}>;tag=alice\r\nTo: {to}\r\nCall-ID: call-1\r\nCSeq: {cseq} {m}\r\nContent-Length: 0\r\n\r\n"
        )
    };
    w.send(PHONE_A, &dialog("ACK", 2, "ack2"));
    // The BYE's Reason (RFC 3326) is passed on to the other leg.
    let bye = dialog("BYE", 3, "bye3").replacen(
        "Content-Length",
        "Reason: Q.850;cause=16;text=\"Normal call clearing\"\r\nContent-Length",
        1,
    );
    w.send(PHONE_A, &bye);
    assert!(w.take_responses(PHONE_A).iter().any(|r| r.code == 200));
    let bye = w
        .take_requests(PHONE_B)
        .into_iter()
        .find(|r| r.method == Method::Bye)
        .expect("BYE to the callee");
    assert_eq!(bye.to().unwrap().tag(), Some("bob"));
    assert_eq!(
        bye.headers.get("Reason"),
        Some("Q.850;cause=16;text=\"Normal call clearing\"")
    );
    let mut ok_bye = Response::for_request(&bye, 200);
    ok_bye.headers.set("Content-Length", "0");
    w.engine
        .handle_datagram(&ok_bye.to_bytes(), addr(PHONE_B), w.now);
    assert!(w.engine.calls_info(w.now).is_empty());
    assert_eq!(w.media.0.borrow().destroyed, vec![SessionId(1)]);
}

#[test]
fn dial_timeout_cancels_the_callee_and_gives_the_caller_480() {
    let mut w = World::new(PLAN);
    assert_eq!(register(&mut w, "1002", "pw1002", PHONE_B), 200);
    invite(&mut w, "1002", "call-2");
    let inv = w.take_requests(PHONE_B).pop().unwrap();
    let mut r180 = Response::for_request(&inv, 180);
    r180.set_to_tag("bob");
    w.engine
        .handle_datagram(&r180.to_bytes(), addr(PHONE_B), w.now);
    w.flush();
    w.take(PHONE_A);
    w.advance(Duration::from_millis(5_100));
    let reqs = w.take_requests(PHONE_B);
    let cancel = reqs
        .iter()
        .find(|r| r.method == Method::Cancel)
        .expect("CANCEL after the Dial timeout");
    assert_eq!(
        cancel.top_via().unwrap().branch(),
        inv.top_via().unwrap().branch()
    );
    let finals: Vec<u16> = w
        .take_responses(PHONE_A)
        .iter()
        .map(|r| r.code)
        .filter(|c| *c >= 200)
        .collect();
    assert_eq!(finals, vec![480]);
    // The callee answers the CANCEL and the INVITE (487); the call is gone.
    let ok = Response::for_request(cancel, 200);
    w.engine
        .handle_datagram(&ok.to_bytes(), addr(PHONE_B), w.now);
    let mut r487 = Response::for_request(&inv, 487);
    r487.set_to_tag("bob");
    w.engine
        .handle_datagram(&r487.to_bytes(), addr(PHONE_B), w.now);
    w.flush();
    assert!(
        w.take_requests(PHONE_B)
            .iter()
            .any(|r| r.method == Method::Ack),
        "487 is ACKed"
    );
    assert!(w.engine.calls_info(w.now).is_empty());
}

#[test]
fn unregistered_callee_and_wrong_credentials() {
    let mut w = World::new(PLAN);
    // 1003 is not registered: Dial fails (CHANUNAVAIL) and the caller gets 480.
    invite(&mut w, "1003", "call-3");
    let finals: Vec<u16> = w
        .take_responses(PHONE_A)
        .iter()
        .map(|r| r.code)
        .filter(|c| *c >= 200)
        .collect();
    assert_eq!(finals, vec![480]);
    // Wrong password on REGISTER: 403 after the challenge.
    assert_eq!(register(&mut w, "1002", "wrong", PHONE_B), 403);
    assert!(w.engine.registrations_info(w.now).is_empty());
}

#[test]
fn echo_extension_answers_and_switches_the_session_to_echo() {
    let mut w = World::new(PLAN);
    invite(&mut w, "600", "call-4");
    let ok = w
        .take_responses(PHONE_A)
        .into_iter()
        .find(|r| r.code == 200)
        .expect("600 answers");
    assert!(String::from_utf8(ok.body)
        .unwrap()
        .contains("m=audio 20004 "));
    assert_eq!(w.media.0.borrow().modes, vec![(SessionId(1), Mode::Echo)]);
    // A media timeout from the dataplane hangs up with BYE and a Reason.
    w.media
        .0
        .borrow_mut()
        .events
        .push(Event::MediaTimeout { id: SessionId(1) });
    w.engine.handle_media_events(w.now);
    w.flush();
    let bye = w
        .take_requests(PHONE_A)
        .into_iter()
        .find(|r| r.method == Method::Bye)
        .expect("BYE on media timeout");
    assert!(bye.headers.get("Reason").unwrap().contains("media timeout"));
}

const GATEWAY: &str = "127.0.0.1:5999";

fn with_gateway(plan: &str) -> World {
    let mut w = World::new(plan);
    w.engine.add_gateway(control::call::Gateway {
        tech: "H323".into(),
        addr: addr(GATEWAY),
        context: "from-gw".into(),
        codecs: Vec::new(),
    });
    w
}

const GW_PLAN: &str = "[default]\nexten => _9X.,1,Dial(H323/${EXTEN:1}@10.0.0.5,20)\n\
                        [from-gw]\nexten => _1XXX,1,Dial(SIP/${EXTEN},20)\n";

#[test]
fn dial_to_a_gateway_technology_goes_to_its_sip_address_with_asserted_identity() {
    let mut w = with_gateway(GW_PLAN);
    invite(&mut w, "95551234", "gw-out-1");
    let reqs = w.take_requests(GATEWAY);
    assert_eq!(reqs.len(), 1, "one INVITE to the gateway");
    let inv = &reqs[0];
    assert_eq!(inv.method, Method::Invite);
    assert_eq!(inv.uri, format!("sip:5551234%4010.0.0.5@{GATEWAY}"));
    assert_eq!(inv.from().unwrap().uri.user.as_deref(), Some("1001"));
    let pai = inv
        .headers
        .get("P-Asserted-Identity")
        .expect("PAI to a gateway");
    assert!(pai.contains("sip:1001@"), "{pai}");
    assert!(inv.headers.get("Privacy").is_none());
    let body = String::from_utf8(inv.body.clone()).unwrap();
    assert!(body.contains("m=audio 20006 "), "anchored media: {body}");
    // The gateway's answer bridges the call like any callee's.
    let mut r200 = Response::for_request(inv, 200);
    r200.set_to_tag("gw");
    r200.headers.push("Contact", format!("<sip:gw@{GATEWAY}>"));
    r200.headers.push("Content-Type", "application/sdp");
    r200.body = sdp(9100).into_bytes();
    w.engine
        .handle_datagram(&r200.to_bytes(), addr(GATEWAY), w.now);
    w.flush();
    assert!(w.take_responses(PHONE_A).iter().any(|r| r.code == 200));
    assert!(w
        .media
        .0
        .borrow()
        .remotes
        .contains(&(SessionId(1), Side::B, addr("127.0.0.1:9100"))));
    let calls = w.engine.calls_info(w.now);
    assert_eq!(calls.len(), 1);
}

#[test]
fn gateway_call_in_is_trusted_and_privacy_hides_the_caller_from_a_phone() {
    let mut w = with_gateway(GW_PLAN);
    assert_eq!(register(&mut w, "1002", "pw1002", PHONE_B), 200);
    let head = "INVITE sip:1002@127.0.0.1:5060 SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:5999;branch=z9hG4bKgwin1\r\n\
         Max-Forwards: 70\r\nFrom: \"Anonymous\" <sip:anonymous@anonymous.invalid>;tag=gw1\r\n\
         To: <sip:1002@127.0.0.1:5060>\r\nCall-ID: gw-in-1\r\nCSeq: 1 INVITE\r\n\
         Contact: <sip:gw@127.0.0.1:5999>\r\nP-Asserted-Identity: <sip:5551234@127.0.0.1:5999>\r\n\
         Privacy: id\r\n"
        .to_string();
    w.send(GATEWAY, &with_body(head, &sdp(9200)));
    let resp = w.take_responses(GATEWAY);
    assert!(
        resp.iter().all(|r| r.code != 407 && r.code != 401),
        "a gateway is not challenged: {:?}",
        resp.iter().map(|r| r.code).collect::<Vec<_>>()
    );
    let reqs = w.take_requests(PHONE_B);
    assert_eq!(reqs.len(), 1, "the call reaches the registered phone");
    let inv = &reqs[0];
    let from = inv.from().unwrap();
    assert_eq!(
        from.uri.user.as_deref(),
        Some("anonymous"),
        "privacy applied"
    );
    assert!(
        inv.headers.get("P-Asserted-Identity").is_none(),
        "no asserted identity outside the trust domain"
    );
    assert_eq!(inv.headers.get("Privacy"), Some("id"));
    // The record keeps the real number (asserted by the trusted gateway).
    let calls = w.engine.calls_info(w.now);
    assert_eq!(calls.len(), 1);
    let shown = format!("{:?}", calls[0]);
    assert!(shown.contains("5551234"), "{shown}");

    // The same INVITE from anywhere else is challenged.
    let head = "INVITE sip:1002@127.0.0.1:5060 SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:6100;branch=z9hG4bKgwin2\r\n\
         Max-Forwards: 70\r\nFrom: <sip:5551234@127.0.0.1>;tag=x1\r\nTo: <sip:1002@127.0.0.1:5060>\r\n\
         Call-ID: gw-in-2\r\nCSeq: 1 INVITE\r\nContact: <sip:x@127.0.0.1:6100>\r\n"
        .to_string();
    w.send("127.0.0.1:6100", &with_body(head, &sdp(9300)));
    let resp = w.take_responses("127.0.0.1:6100");
    assert_eq!(resp.last().map(|r| r.code), Some(407));
}
