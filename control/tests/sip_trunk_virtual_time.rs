//! SIP trunks driven with virtual time and a hand-written provider: the REGISTER client
//! (401 then 200, refresh at half the granted expiry, backoff after a refusal), an
//! outgoing call challenged with 407 and retried with Proxy-Authorization (the 407 ACKed,
//! same Call-ID, new CSeq), failure after a second challenge, caller ID and privacy on the
//! trunk, and an incoming call from the trunk taken without a challenge into its context.

mod vt;

use std::time::Duration;

use control::config::{Trunk, TrunkCallerId};
use control::sip::digest::{self, Algorithm, Credentials};
use control::sip::{Method, Request, Response};
use vt::{addr, World, PHONE_A, TANDEM};

const PROVIDER: &str = "127.0.0.1:5080";

/// The engine with `trunk` configured.
fn world(dialplan: &str, trunk: Trunk) -> World {
    let mut w = World::new(dialplan);
    let now = w.now;
    w.engine.add_trunk(trunk, now);
    w
}

fn trunk(register: bool, trust: bool) -> Trunk {
    Trunk {
        name: "provider".into(),
        host: addr(PROVIDER),
        username: "trunk1".into(),
        password: "trunkpw".into(),
        realm: None,
        register,
        register_expiry: 600,
        from_user: "5550000".into(),
        from_domain: "carrier.example".into(),
        caller_id: TrunkCallerId::Pass,
        trust,
        context: "from-provider".into(),
        codecs: None,
        outbound_proxy: None,
    }
}

const PLAN: &str = "[default]\n\
exten => _9X.,1,Dial(SIP/provider/${EXTEN:1},20)\n same => n,Hangup()\n\
[from-provider]\n\
exten => _X.,1,Answer()\n same => n,Echo()\n";

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

/// The challenge a provider sends.
fn challenged(req: &Request, code: u16, nonce: &str) -> Response {
    let mut r = Response::for_request(req, code);
    r.set_to_tag("prov");
    let h = if code == 401 {
        "WWW-Authenticate"
    } else {
        "Proxy-Authenticate"
    };
    r.headers.push(
        h,
        digest::challenge("carrier", nonce, Algorithm::Md5, false),
    );
    r
}

fn deliver(w: &mut World, resp: &Response) {
    w.engine
        .handle_datagram(&resp.to_bytes(), addr(PROVIDER), w.now);
    w.flush();
}

fn trunk_state(w: &World) -> serde_json::Value {
    serde_json::to_value(w.engine.trunks_info(w.now)).unwrap()[0].clone()
}

/// An authenticated INVITE from 1001 (display "Alice") to `exten`.
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
    let ch = last.headers.get("Proxy-Authenticate").unwrap();
    let i = ch.find("nonce=\"").unwrap() + 7;
    let nonce = ch[i..][..ch[i..].find('"').unwrap()].to_string();
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

#[test]
fn register_answers_the_401_and_refreshes_at_half_the_granted_expiry() {
    let mut w = world(PLAN, trunk(true, false));
    // The first REGISTER is due at once.
    w.advance(Duration::ZERO);
    let r1 = w.take_requests(PROVIDER);
    assert_eq!(r1.len(), 1, "{r1:?}");
    let r1 = &r1[0];
    assert_eq!(r1.method, Method::Register);
    assert_eq!(r1.uri, "sip:carrier.example");
    assert_eq!(
        r1.to().unwrap().uri.user.as_deref(),
        Some("trunk1"),
        "the AOR is the account"
    );
    assert!(r1.headers.get("Authorization").is_none());
    assert_eq!(trunk_state(&w)["state"], "registering");

    deliver(&mut w, &challenged(r1, 401, "n-reg-1"));
    let r2 = w.take_requests(PROVIDER);
    assert_eq!(r2.len(), 1, "one REGISTER with credentials: {r2:?}");
    let r2 = &r2[0];
    assert_eq!(r2.call_id(), r1.call_id(), "same Call-ID");
    assert_eq!(r2.cseq().unwrap().seq, r1.cseq().unwrap().seq + 1);
    let c = Credentials::parse(r2.headers.get("Authorization").unwrap()).unwrap();
    assert_eq!(
        (c.username.as_str(), c.realm.as_str()),
        ("trunk1", "carrier")
    );
    assert!(digest::verify(&c, "REGISTER", "trunkpw"), "{c:?}");

    let mut ok = Response::for_request(r2, 200);
    ok.headers
        .push("Contact", format!("<sip:trunk1@{TANDEM}>;expires=300"));
    deliver(&mut w, &ok);
    let s = trunk_state(&w);
    assert_eq!(s["state"], "registered", "{s}");
    assert_eq!(s["expires_s"], 300);
    assert_eq!(
        s["next_register_s"], 150,
        "refresh at half the granted 300 s"
    );

    // Nothing before 150 s; the refresh at 150 s answers the last challenge at once.
    w.advance(Duration::from_secs(149));
    assert!(w.take_requests(PROVIDER).is_empty());
    w.advance(Duration::from_secs(1));
    let r3 = w.take_requests(PROVIDER);
    assert_eq!(r3.len(), 1, "{r3:?}");
    let c = Credentials::parse(r3[0].headers.get("Authorization").unwrap()).unwrap();
    assert_eq!(c.nc.as_deref(), Some("00000002"));
    assert!(digest::verify(&c, "REGISTER", "trunkpw"));

    // A refusal keeps the registration we hold until it lapses, then retries with backoff.
    let mut no = Response::for_request(&r3[0], 403);
    no.set_to_tag("x");
    deliver(&mut w, &no);
    let s = trunk_state(&w);
    assert_eq!(s["last_status"], 403);
    assert_eq!(s["next_register_s"], 30, "retry after 30 s: {s}");
    w.advance(Duration::from_secs(30));
    let r4 = w.take_requests(PROVIDER);
    assert_eq!(r4.len(), 1);
    let mut no = Response::for_request(&r4[0], 403);
    no.set_to_tag("x");
    deliver(&mut w, &no);
    assert_eq!(trunk_state(&w)["next_register_s"], 60, "then 60 s");
    // No answer at all: the transaction times out (32 s) and the retry backs off again.
    w.advance(Duration::from_secs(60));
    assert_eq!(w.take_requests(PROVIDER).len(), 1);
    w.advance(Duration::from_secs(40));
    let s = trunk_state(&w);
    assert_eq!(s["last_status"], 408, "{s}");
    assert_eq!(
        s["state"], "registered",
        "held until its expiry at 300 s: {s}"
    );
    assert_eq!(s["expires_s"], 20);
    assert_eq!(s["next_register_s"], 20, "wakes at the expiry: {s}");
    w.advance(Duration::from_secs(20));
    let s = trunk_state(&w);
    assert_eq!(
        s["state"], "unregistered",
        "the 300 s registration lapsed: {s}"
    );
    assert_eq!(
        s["next_register_s"], 92,
        "retry 120 s after the timeout at 272 s: {s}"
    );
    w.take_requests(PROVIDER); // retransmissions
}

#[test]
fn invite_challenged_with_407_is_retried_with_credentials_and_answered() {
    let mut w = world(PLAN, trunk(false, true));
    invite(&mut w, "92001", "out-1");
    let inv = w.take_requests(PROVIDER);
    assert_eq!(inv.len(), 1, "{inv:?}");
    let inv1 = &inv[0];
    assert_eq!(inv1.uri, format!("sip:2001@{PROVIDER}"));
    let from = inv1.from().unwrap();
    assert_eq!(
        from.uri.user.as_deref(),
        Some("1001"),
        "caller number passed"
    );
    assert_eq!(from.uri.host, "carrier.example");
    let pai = inv1.headers.get("P-Asserted-Identity").unwrap();
    assert!(pai.contains("sip:1001@carrier.example"), "{pai}");
    assert!(inv1.headers.get("Privacy").is_none());

    deliver(&mut w, &challenged(inv1, 407, "n-inv-1"));
    let out = w.take_requests(PROVIDER);
    let ack = out
        .iter()
        .find(|r| r.method == Method::Ack)
        .expect("the 407 is ACKed");
    assert_eq!(ack.cseq().unwrap().seq, 1);
    assert_eq!(ack.to().unwrap().tag(), Some("prov"));
    let inv2 = out
        .iter()
        .find(|r| r.method == Method::Invite)
        .expect("INVITE again");
    assert_eq!(inv2.call_id(), inv1.call_id(), "same Call-ID");
    assert_eq!(inv2.cseq().unwrap().seq, 2, "new CSeq");
    assert_ne!(
        inv2.headers.get("Via"),
        inv1.headers.get("Via"),
        "new branch"
    );
    assert!(inv2.to().unwrap().tag().is_none());
    let c = Credentials::parse(inv2.headers.get("Proxy-Authorization").unwrap()).unwrap();
    assert_eq!(c.username, "trunk1");
    assert_eq!(c.uri, inv1.uri);
    assert!(digest::verify(&c, "INVITE", "trunkpw"));
    assert!(
        w.take_responses(PHONE_A).iter().all(|r| r.code < 200),
        "the caller sees no failure"
    );

    let mut ok = Response::for_request(inv2, 200);
    ok.set_to_tag("callee");
    ok.headers.push("Contact", format!("<sip:2001@{PROVIDER}>"));
    ok.headers.push("Content-Type", "application/sdp");
    ok.body = sdp(9000).into_bytes();
    deliver(&mut w, &ok);
    let ack = w.take_requests(PROVIDER);
    assert!(
        ack.iter()
            .any(|r| r.method == Method::Ack && r.cseq().unwrap().seq == 2),
        "the 200 is ACKed with the retried CSeq: {ack:?}"
    );
    assert!(w.take_responses(PHONE_A).iter().any(|r| r.code == 200));
    assert_eq!(trunk_state(&w)["calls_out"], 1);
}

#[test]
fn a_second_challenge_fails_the_call_with_403() {
    let mut w = world(PLAN, trunk(false, false));
    invite(&mut w, "92001", "out-2");
    let inv1 = w.take_requests(PROVIDER).remove(0);
    assert!(
        inv1.headers.get("P-Asserted-Identity").is_none(),
        "no PAI to an untrusted trunk"
    );
    deliver(&mut w, &challenged(&inv1, 407, "n1"));
    let inv2 = w
        .take_requests(PROVIDER)
        .into_iter()
        .find(|r| r.method == Method::Invite)
        .unwrap();
    deliver(&mut w, &challenged(&inv2, 407, "n2"));
    let out = w.take_requests(PROVIDER);
    assert!(
        out.iter()
            .any(|r| r.method == Method::Ack && r.cseq().unwrap().seq == 2),
        "the second 407 is ACKed too"
    );
    assert!(
        !out.iter().any(|r| r.method == Method::Invite),
        "no third INVITE: {out:?}"
    );
    let finals: Vec<u16> = w
        .take_responses(PHONE_A)
        .iter()
        .map(|r| r.code)
        .filter(|&c| c >= 200)
        .collect();
    assert_eq!(finals, vec![403], "the caller learns the trunk refused us");
}

#[test]
fn restricted_caller_goes_out_anonymous_with_the_number_asserted() {
    let mut w = world(PLAN, trunk(false, true));
    w.engine.set_user_presentation_restricted("1001", true);
    invite(&mut w, "92001", "out-3");
    let inv = w.take_requests(PROVIDER).remove(0);
    let from = inv.from().unwrap();
    assert_eq!(from.uri.user.as_deref(), Some("anonymous"));
    assert_eq!(from.uri.host, "anonymous.invalid");
    assert_eq!(inv.headers.get("Privacy"), Some("id"));
    let pai = inv.headers.get("P-Asserted-Identity").unwrap();
    assert!(pai.contains("sip:1001@carrier.example"), "{pai}");

    // Untrusted trunk: anonymous and no identity at all.
    let mut w = world(PLAN, trunk(false, false));
    w.engine.set_user_presentation_restricted("1001", true);
    invite(&mut w, "92001", "out-4");
    let inv = w.take_requests(PROVIDER).remove(0);
    assert_eq!(inv.from().unwrap().uri.user.as_deref(), Some("anonymous"));
    assert!(inv.headers.get("P-Asserted-Identity").is_none());
    assert!(!String::from_utf8_lossy(&inv.to_bytes()).contains("1001@"));
}

#[test]
fn fixed_caller_id_sends_from_user() {
    let mut t = trunk(false, false);
    t.caller_id = TrunkCallerId::Fixed;
    let mut w = world(PLAN, t);
    invite(&mut w, "92001", "out-5");
    let inv = w.take_requests(PROVIDER).remove(0);
    assert_eq!(inv.from().unwrap().uri.user.as_deref(), Some("5550000"));
}

fn inbound(w: &mut World, from: &str, ruri_user: &str, extra: &str) {
    let head = format!(
        "INVITE sip:{ruri_user}@{TANDEM} SIP/2.0\r\nVia: SIP/2.0/UDP {from};branch=z9hG4bKin{ruri_user};rport\r\n\
         Max-Forwards: 70\r\nFrom: \"Anonymous\" <sip:anonymous@anonymous.invalid>;tag=p1\r\nTo: <sip:4420@{TANDEM}>\r\n\
         Call-ID: in-{ruri_user}-{from}\r\nCSeq: 1 INVITE\r\nContact: <sip:p@{from}>\r\n{extra}"
    );
    w.send(from, &with_body(head, &sdp(9100)));
}

#[test]
fn calls_from_the_trunk_skip_the_challenge_and_run_in_its_context() {
    let pai = "P-Asserted-Identity: <sip:5551234@carrier.example>\r\nPrivacy: id\r\n";
    let mut w = world(PLAN, trunk(false, true));
    inbound(&mut w, PROVIDER, "4420", pai);
    let r = w.take_responses(PROVIDER);
    assert!(r.iter().all(|r| r.code != 407), "{r:?}");
    assert!(
        r.iter().any(|r| r.code == 200),
        "answered by Echo in from-provider: {r:?}"
    );
    assert_eq!(trunk_state(&w)["calls_in"], 1);
    let calls = serde_json::to_value(w.engine.calls_info(w.now)).unwrap();
    assert_eq!(calls[0]["context"], "from-provider", "{calls}");
    assert_eq!(
        calls[0]["caller"], "5551234",
        "a trusted trunk's PAI is the caller"
    );

    // Untrusted: the PAI is not believed.
    let mut w = world(PLAN, trunk(false, false));
    inbound(&mut w, PROVIDER, "4420", pai);
    let calls = serde_json::to_value(w.engine.calls_info(w.now)).unwrap();
    assert_eq!(calls[0]["caller"], "anonymous", "{calls}");

    // Another address is challenged like anyone else.
    let mut w = world(PLAN, trunk(false, true));
    inbound(&mut w, "127.0.0.1:5099", "4420", pai);
    assert!(w
        .take_responses("127.0.0.1:5099")
        .iter()
        .any(|r| r.code == 407));
}

#[test]
fn registered_contact_user_from_the_trunk_ip_takes_the_to_user_as_extension() {
    let mut w = world(PLAN, trunk(true, false));
    w.advance(Duration::ZERO);
    let r1 = w.take_requests(PROVIDER).remove(0);
    deliver(&mut w, &Response::for_request(&r1, 200));
    assert_eq!(trunk_state(&w)["state"], "registered");
    // Same IP, another port (the provider's second socket): our contact user is accepted.
    inbound(&mut w, "127.0.0.1:5081", "trunk1", "");
    let r = w.take_responses("127.0.0.1:5081");
    assert!(r.iter().any(|r| r.code == 200), "{r:?}");
    let calls = serde_json::to_value(w.engine.calls_info(w.now)).unwrap();
    assert_eq!(
        calls[0]["exten"], "4420",
        "the To user is the extension: {calls}"
    );
    // Another IP addressing the contact user is challenged.
    inbound(&mut w, "127.0.0.2:5080", "trunk1", "");
    assert!(w
        .take_responses("127.0.0.2:5080")
        .iter()
        .any(|r| r.code == 407));
}
