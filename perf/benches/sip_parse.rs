//! SIP codec microbenchmarks: parse a typical INVITE with SDP, a 200 OK and a REGISTER, and
//! serialise them back. Throughput is reported in bytes of SIP per second.

use criterion::{black_box, criterion_group, Criterion, Throughput};

use control::sip::Message;

const INVITE: &[u8] = b"INVITE sip:1000@tandem.example.com SIP/2.0\r\n\
Via: SIP/2.0/UDP 192.0.2.20:5060;branch=z9hG4bK-524287-1---2a1bd5b4e1e0d6d5;rport\r\n\
Max-Forwards: 70\r\n\
Contact: <sip:alice@192.0.2.20:5060;transport=udp>\r\n\
To: <sip:1000@tandem.example.com>\r\n\
From: \"Alice\" <sip:alice@tandem.example.com>;tag=2f8b1e7c\r\n\
Call-ID: ZGQ0YzE2NDU1Y2E5ZTNkZjQ2MzRmMDk4ZGQ4YTY3Nzg.\r\n\
CSeq: 2 INVITE\r\n\
Allow: INVITE, ACK, CANCEL, BYE, NOTIFY, REFER, MESSAGE, OPTIONS, INFO, SUBSCRIBE\r\n\
Content-Type: application/sdp\r\n\
Supported: replaces, norefersub, extended-refer, timer, outbound, path, X-cisco-serviceuri\r\n\
User-Agent: Z 5.6.4 v2.10.20.4_1\r\n\
Allow-Events: presence, kpml, talk\r\n\
Proxy-Authorization: Digest username=\"alice\",realm=\"tandem\",nonce=\"00000000655c2a80c4d2a1f9e0b7c3d5a4f1e2d3c4b5a6978877665544332211\",uri=\"sip:1000@tandem.example.com\",response=\"b6f1c7e4a3d2b1c0f9e8d7c6b5a49382\",cnonce=\"a1b2c3d4\",nc=00000001,qop=auth,algorithm=MD5\r\n\
Content-Length: 230\r\n\
\r\n\
v=0\r\n\
o=Z 0 1 IN IP4 192.0.2.20\r\n\
s=Z\r\n\
c=IN IP4 192.0.2.20\r\n\
t=0 0\r\n\
m=audio 8000 RTP/AVP 18 0 8 101\r\n\
a=rtpmap:18 G729/8000\r\n\
a=fmtp:18 annexb=no\r\n\
a=rtpmap:101 telephone-event/8000\r\n\
a=fmtp:101 0-16\r\n\
a=sendrecv\r\n\
a=ptime:20\r\n\
a=rtcp-mux\r\n";

const OK_200: &[u8] = b"SIP/2.0 200 OK\r\n\
Via: SIP/2.0/UDP 192.0.2.1:5060;branch=z9hG4bKa7c6d9e0f1b2c3d4;received=192.0.2.1;rport=5060\r\n\
Record-Route: <sip:192.0.2.1;lr>\r\n\
From: <sip:alice@tandem.example.com>;tag=2f8b1e7c\r\n\
To: <sip:1000@192.0.2.30>;tag=as5f3e8c21\r\n\
Call-ID: 3c4a5b6e7d8f9a0b1c2d3e4f5a6b7c8d@192.0.2.1\r\n\
CSeq: 102 INVITE\r\n\
Server: Asterisk PBX 20.5.0\r\n\
Allow: INVITE, ACK, CANCEL, OPTIONS, BYE, REFER, SUBSCRIBE, NOTIFY, INFO, PUBLISH, MESSAGE\r\n\
Supported: replaces, timer\r\n\
Contact: <sip:1000@192.0.2.30:5060>\r\n\
Content-Type: application/sdp\r\n\
Content-Length: 0\r\n\
\r\n";

const REGISTER: &[u8] = b"REGISTER sip:tandem.example.com SIP/2.0\r\n\
Via: SIP/2.0/UDP 192.0.2.20:5060;branch=z9hG4bK-524287-1---8d3f2e1a0b9c8d7e;rport\r\n\
Max-Forwards: 70\r\n\
Contact: <sip:alice@192.0.2.20:5060;rinstance=4f5e6d7c8b9a0f1e;transport=udp>\r\n\
To: <sip:alice@tandem.example.com>\r\n\
From: <sip:alice@tandem.example.com>;tag=91bd6f0e\r\n\
Call-ID: MTIzNDU2Nzg5MGFiY2RlZjEyMzQ1Njc4OTBhYmNkZWY.\r\n\
CSeq: 1 REGISTER\r\n\
Expires: 3600\r\n\
Allow: INVITE, ACK, CANCEL, BYE, NOTIFY, REFER, MESSAGE, OPTIONS, INFO, SUBSCRIBE\r\n\
User-Agent: Z 5.6.4 v2.10.20.4_1\r\n\
Allow-Events: presence, kpml, talk\r\n\
Content-Length: 0\r\n\
\r\n";

fn bench(c: &mut Criterion) {
    for (name, bytes) in [
        ("invite_sdp", INVITE),
        ("ok_200", OK_200),
        ("register", REGISTER),
    ] {
        let msg = Message::parse(bytes).unwrap_or_else(|e| panic!("{name}: {e}"));
        let mut g = c.benchmark_group(format!("sip/{name}"));
        g.throughput(Throughput::Bytes(bytes.len() as u64));
        g.bench_function("parse", |b| b.iter(|| Message::parse(black_box(bytes))));
        let mut out = Vec::with_capacity(2048);
        g.bench_function("encode", |b| {
            b.iter(|| {
                out.clear();
                black_box(&msg).encode(&mut out);
                out.len()
            })
        });
        g.finish();
    }
}

criterion_group!(benches, bench);

/// `SIP_ICOUNT=<op>:<msg>:<n>` runs one operation n times and exits, for load-independent
/// instruction counts: `SIP_ICOUNT=parse:invite_sdp:100000 perf stat -e instructions:u <bench>`
/// (subtract a run with n=0 for the fixed start-up cost).
fn icount(spec: &str) {
    let mut it = spec.split(':');
    let (op, name, n) = (
        it.next(),
        it.next(),
        it.next().and_then(|n| n.parse::<u64>().ok()),
    );
    let bytes = match name {
        Some("invite_sdp") => INVITE,
        Some("ok_200") => OK_200,
        Some("register") => REGISTER,
        _ => panic!("SIP_ICOUNT: unknown message in {spec:?}"),
    };
    let n = n.unwrap_or_else(|| panic!("SIP_ICOUNT: bad count in {spec:?}"));
    let msg = Message::parse(bytes).expect("fixture parses");
    let mut out = Vec::with_capacity(2048);
    for _ in 0..n {
        match op {
            Some("parse") => {
                black_box(Message::parse(black_box(bytes)).is_ok());
            }
            Some("encode") => {
                out.clear();
                black_box(&msg).encode(&mut out);
                black_box(out.len());
            }
            _ => panic!("SIP_ICOUNT: op must be parse or encode"),
        }
    }
}

fn main() {
    if let Ok(spec) = std::env::var("SIP_ICOUNT") {
        icount(&spec);
        return;
    }
    benches();
    Criterion::default().configure_from_args().final_summary();
}
