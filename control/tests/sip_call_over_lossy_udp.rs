//! Two transaction layers (caller and callee) exchange an INVITE / 180 / 200 / ACK / BYE call
//! through byte-level encode/parse, in virtual time, with the first INVITE and the first 200 OK
//! lost: the layers' own retransmissions must complete the call.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use control::sip::transaction::TimerConfig;
use control::sip::{
    new_branch, new_tag, Incoming, Message, Method, Request, Response, TransactionLayer, TxEvent,
};

#[allow(clippy::disallowed_methods)]
fn epoch() -> Instant {
    Instant::now()
}

const A: &str = "127.0.0.1:5070";
const B: &str = "127.0.0.1:5080";

struct Net {
    drop_next_invite: bool,
    drop_next_200: bool,
    a_inbox: Vec<Vec<u8>>,
    b_inbox: Vec<Vec<u8>>,
}

impl Net {
    fn carry(&mut self, layer: &mut TransactionLayer) {
        while let Some(t) = layer.poll_transmit() {
            let first = String::from_utf8_lossy(&t.bytes)
                .lines()
                .next()
                .unwrap_or("")
                .to_string();
            if first.starts_with("INVITE ") && std::mem::take(&mut self.drop_next_invite) {
                continue;
            }
            if first.starts_with("SIP/2.0 200") && std::mem::take(&mut self.drop_next_200) {
                continue;
            }
            let a: SocketAddr = A.parse().unwrap();
            if t.dest == a {
                self.a_inbox.push(t.bytes);
            } else {
                self.b_inbox.push(t.bytes);
            }
        }
    }
}

fn invite() -> Request {
    let mut r = Request::new(Method::Invite, format!("sip:bob@{B}"));
    r.headers.push(
        "Via",
        format!("SIP/2.0/UDP {A};branch={};rport", new_branch()),
    );
    r.headers.push("Max-Forwards", "70");
    r.headers
        .push("From", format!("<sip:alice@{A}>;tag={}", new_tag()));
    r.headers.push("To", format!("<sip:bob@{B}>"));
    r.headers.push("Call-ID", "lossy-call-1");
    r.headers.push("CSeq", "1 INVITE");
    r.headers.push("Contact", format!("<sip:alice@{A}>"));
    r
}

#[test]
fn call_completes_despite_losses() {
    let (a_addr, b_addr): (SocketAddr, SocketAddr) = (A.parse().unwrap(), B.parse().unwrap());
    let t0 = epoch();
    let mut now = t0;
    let mut a = TransactionLayer::new(TimerConfig::default());
    let mut b = TransactionLayer::new(TimerConfig::default());
    let mut net = Net {
        drop_next_invite: true,
        drop_next_200: true,
        a_inbox: vec![],
        b_inbox: vec![],
    };

    let inv = invite();
    let a_key = a.send_request(inv.clone(), b_addr, now);
    net.carry(&mut a);
    assert!(net.b_inbox.is_empty(), "first INVITE lost");

    let mut b_key = None;
    let mut answered_at = None;
    let mut a_got = Vec::new();
    let mut b_acks = 0;
    for _ in 0..200 {
        // deliver everything in flight
        for bytes in std::mem::take(&mut net.b_inbox) {
            let msg = Message::parse(&bytes).expect("B parses");
            match b.handle(msg, a_addr, now) {
                Incoming::Request { key, req, .. } => {
                    assert_eq!(req.method, Method::Invite);
                    let mut ringing = Response::for_request(&req, 180);
                    ringing.set_to_tag("callee");
                    b.send_response(&key, ringing, now).unwrap();
                    let mut ok = Response::for_request(&req, 200);
                    ok.set_to_tag("callee");
                    b.send_response(&key, ok, now).unwrap();
                    answered_at = Some(now);
                    b_key = Some(key);
                }
                Incoming::Ack { req, .. } => {
                    assert_eq!(req.cseq().unwrap().seq, 1);
                    b_acks += 1;
                }
                Incoming::Absorbed => {}
                other => panic!("B got {other:?}"),
            }
        }
        b.handle_timeout(now);
        net.carry(&mut b);
        for bytes in std::mem::take(&mut net.a_inbox) {
            let msg = Message::parse(&bytes).expect("A parses");
            match a.handle(msg, b_addr, now) {
                Incoming::Response { key, resp } => {
                    assert_eq!(key, a_key);
                    a_got.push(resp.code);
                    if resp.code == 200 {
                        // ACK for 2xx: new branch, sent statelessly by the TU
                        let mut ack = Request::new(Method::Ack, format!("sip:bob@{B}"));
                        ack.headers
                            .push("Via", format!("SIP/2.0/UDP {A};branch={}", new_branch()));
                        ack.headers.push("Max-Forwards", "70");
                        ack.headers.push("From", inv.headers.get("From").unwrap());
                        ack.headers.push("To", resp.headers.get("To").unwrap());
                        ack.headers.push("Call-ID", "lossy-call-1");
                        ack.headers.push("CSeq", "1 ACK");
                        a.send_stateless(&Message::Request(ack), b_addr);
                    }
                }
                Incoming::Absorbed => {}
                other => panic!("A got {other:?}"),
            }
        }
        a.handle_timeout(now);
        net.carry(&mut a);
        if b_acks > 0 && net.a_inbox.is_empty() && net.b_inbox.is_empty() {
            break;
        }
        if net.a_inbox.is_empty() && net.b_inbox.is_empty() {
            // nothing in flight: jump to the next timer (zero network latency)
            let next = [a.poll_timeout(), b.poll_timeout()]
                .into_iter()
                .flatten()
                .min();
            now = next.map_or(now, |n| n.max(now));
        }
    }
    // INVITE retransmitted by Timer A after 500 ms; 200 retransmitted by the layer 500 ms later
    assert_eq!(
        answered_at.map(|t| t - t0),
        Some(Duration::from_millis(500))
    );
    assert_eq!(a_got, [100, 180, 200]);
    assert_eq!(b_acks, 1);
    let b_key = b_key.unwrap();

    // run both sides 40 s further: no retransmission, no NoAck, transactions gone
    let end = now + Duration::from_secs(40);
    while let Some(t) = [a.poll_timeout(), b.poll_timeout()]
        .into_iter()
        .flatten()
        .min()
    {
        if t > end {
            break;
        }
        a.handle_timeout(t);
        b.handle_timeout(t);
        assert!(
            a.poll_transmit().is_none() && b.poll_transmit().is_none(),
            "no late retransmits"
        );
    }
    let b_events: Vec<TxEvent> = std::iter::from_fn(|| b.poll_event()).collect();
    assert_eq!(b_events, [TxEvent::Terminated { key: b_key }]);
    let a_events: Vec<TxEvent> = std::iter::from_fn(|| a.poll_event()).collect();
    assert_eq!(a_events, [TxEvent::Terminated { key: a_key }]);
    assert_eq!((a.len(), b.len()), (0, 0));
}
