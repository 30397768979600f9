//! H.225.0/H.245 decoding of real captures: h323peer's `sample-call.pcap`
//! (asn1tools encodings, fastStart) and Wireshark's `rtp_example` (a 2002
//! endpoint: no fastStart, separate H.245 channel). Every H.225 message must
//! decode and re-encode to identical bytes.

use std::collections::BTreeMap;

use control::h323::h225::{AliasAddress, Body};
use control::h323::h245::{decode_fast_start, fast_start_accepted, Codec, H245Message};
use control::h323::tpkt::Deframer;
use control::h323::H225Message;
use control::q931::MsgType;

const SAMPLE: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../../shared/peers/h323peer/sample-call.pcap"
);
const RTP_EXAMPLE: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../../shared/testdata/pcap/h323/rtp_example.raw.gz"
);

/// TCP payloads of an Ethernet/IPv4 pcap, concatenated per (src port, dst
/// port) in capture order (the captures have no retransmissions).
fn tcp_streams(pcap: &[u8]) -> BTreeMap<(u16, u16), Vec<u8>> {
    let le = match pcap.get(..4) {
        Some([0xd4, 0xc3, 0xb2, 0xa1]) => true,
        Some([0xa1, 0xb2, 0xc3, 0xd4]) => false,
        _ => panic!("not a pcap file"),
    };
    let u32_at = |b: &[u8], i: usize| {
        let a = [b[i], b[i + 1], b[i + 2], b[i + 3]];
        if le {
            u32::from_le_bytes(a)
        } else {
            u32::from_be_bytes(a)
        }
    };
    assert_eq!(u32_at(pcap, 20), 1, "Ethernet link type");
    let mut out: BTreeMap<(u16, u16), Vec<u8>> = BTreeMap::new();
    let mut i = 24;
    while i + 16 <= pcap.len() {
        let incl = u32_at(pcap, i + 8) as usize;
        let frame = &pcap[i + 16..(i + 16 + incl).min(pcap.len())];
        i += 16 + incl;
        if frame.len() < 14 + 20 || frame[12..14] != [0x08, 0x00] {
            continue;
        }
        let ip = &frame[14..];
        let ihl = usize::from(ip[0] & 0x0F) * 4;
        let total = usize::from(u16::from_be_bytes([ip[2], ip[3]])).min(ip.len());
        if ip[9] != 6 || total < ihl + 20 {
            continue;
        }
        let tcp = &ip[ihl..total];
        let off = usize::from(tcp[12] >> 4) * 4;
        let sp = u16::from_be_bytes([tcp[0], tcp[1]]);
        let dp = u16::from_be_bytes([tcp[2], tcp[3]]);
        if tcp.len() > off {
            out.entry((sp, dp))
                .or_default()
                .extend_from_slice(&tcp[off..]);
        }
    }
    out
}

fn tpkt_payloads(stream: &[u8]) -> Vec<Vec<u8>> {
    let mut d = Deframer::new();
    d.handle(stream);
    std::iter::from_fn(|| d.poll_payload().expect("TPKT framing")).collect()
}

/// Decodes every H.225 message on the streams touching `port`, asserting a
/// byte-exact re-encode.
fn h225_messages(streams: &BTreeMap<(u16, u16), Vec<u8>>, port: u16) -> Vec<(u16, H225Message)> {
    let mut all = Vec::new();
    for (&(sp, dp), s) in streams {
        if sp != port && dp != port {
            continue;
        }
        for p in tpkt_payloads(s) {
            let m = H225Message::parse(&p).unwrap_or_else(|e| panic!("{sp}->{dp}: {e}"));
            let mut again = Vec::new();
            m.emit(&mut again);
            assert_eq!(
                again, p,
                "{sp}->{dp} {:?} re-encodes byte exact",
                m.q931.msg_type
            );
            all.push((sp, m));
        }
    }
    all
}

#[test]
fn h323peer_sample_call_decodes_and_reencodes() {
    let Ok(pcap) = std::fs::read(SAMPLE) else {
        eprintln!("SKIP: {SAMPLE} not found");
        return;
    };
    let msgs = h225_messages(&tcp_streams(&pcap), 1720);
    let names: Vec<&str> = msgs
        .iter()
        .map(|(_, m)| m.uuie.as_ref().map_or("none", |u| u.body.name()))
        .collect();
    assert_eq!(
        names,
        [
            "setup",
            "releaseComplete",
            "callProceeding",
            "alerting",
            "connect"
        ],
        "caller stream first (lower port order), then callee"
    );
    let setup = &msgs[0].1;
    assert_eq!(setup.q931.calling().unwrap().digits, "1000");
    assert_eq!(setup.q931.called().unwrap().digits, "2000");
    let u = setup.uuie.as_ref().unwrap();
    let Body::Setup(s) = &u.body else { panic!() };
    assert_eq!(
        s.source_address.as_deref(),
        Some(&[AliasAddress::DialledDigits("1000".into())][..])
    );
    let fs = decode_fast_start(&u.fast_start().unwrap().unwrap());
    assert_eq!(fs.len(), 6);
    for (o, raw) in fs.iter().zip(u.fast_start().unwrap().unwrap()) {
        assert_eq!(o.encode(), raw, "OLC re-encodes byte exact");
    }
    let offered: Vec<Codec> = fs.iter().filter_map(|o| o.summary().codec).collect();
    assert_eq!(
        offered,
        [
            Codec::Pcma,
            Codec::Pcma,
            Codec::Pcmu,
            Codec::Pcmu,
            Codec::G729,
            Codec::G729
        ]
    );
    let call_id = u.call_identifier().unwrap().unwrap();
    for (_, m) in &msgs[1..] {
        let u = m.uuie.as_ref().unwrap();
        assert_eq!(
            u.call_identifier().unwrap(),
            Some(call_id),
            "same callIdentifier"
        );
        assert!(m.q931.cref.flag != (m.q931.msg_type == MsgType::ReleaseComplete));
    }
    assert_eq!(msgs[1].1.q931.cause().unwrap().value, 16);
    for (_, m) in &msgs[3..] {
        let fs = decode_fast_start(&m.uuie.as_ref().unwrap().fast_start().unwrap().unwrap());
        let (codec, rtp) = fast_start_accepted(&fs).unwrap();
        assert_eq!(codec, Codec::Pcma);
        assert_eq!(rtp.ip().to_string(), "127.0.0.1");
    }
}

#[test]
fn wireshark_rtp_example_h225_and_h245_decode() {
    let Ok(out) = std::process::Command::new("gzip")
        .arg("-dc")
        .arg(RTP_EXAMPLE)
        .output()
    else {
        eprintln!("SKIP: gzip not available");
        return;
    };
    if !out.status.success() {
        eprintln!("SKIP: {RTP_EXAMPLE} not readable");
        return;
    }
    let streams = tcp_streams(&out.stdout);
    let msgs = h225_messages(&streams, 1720);
    let types: Vec<MsgType> = msgs.iter().map(|(_, m)| m.q931.msg_type).collect();
    assert_eq!(
        types,
        [
            MsgType::CallProceeding,
            MsgType::Alerting,
            MsgType::Connect,
            MsgType::Setup
        ]
    );
    let connect = &msgs[2].1;
    let h245 = connect
        .uuie
        .as_ref()
        .unwrap()
        .h245_address()
        .unwrap()
        .unwrap();
    let h245 = h245.socket().unwrap();
    assert_eq!(h245.port(), 1232);
    let setup = msgs[3].1.uuie.as_ref().unwrap();
    assert!(!setup.h245_tunnelling());
    assert!(setup.fast_start().unwrap().is_none());
    // The separate H.245 channel: every PDU decodes; MSD/TCS are recognised.
    let mut seen = Vec::new();
    for (&(sp, dp), s) in &streams {
        if sp != h245.port() && dp != h245.port() {
            continue;
        }
        for p in tpkt_payloads(s) {
            let m = H245Message::decode(&p).unwrap_or_else(|e| panic!("H.245 {sp}->{dp}: {e}"));
            if let H245Message::MasterSlaveDetermination { .. }
            | H245Message::MasterSlaveDeterminationAck { .. }
            | H245Message::TerminalCapabilitySetAck { .. } = m
            {
                assert_eq!(m.encode(), p, "{m:?} re-encodes byte exact");
            }
            seen.push(std::mem::discriminant(&m));
        }
    }
    for want in [
        H245Message::TerminalCapabilitySet {
            seq: 0,
            audio: vec![],
        },
        H245Message::TerminalCapabilitySetAck { seq: 0 },
        H245Message::MasterSlaveDetermination {
            terminal_type: 0,
            number: 0,
        },
        H245Message::MasterSlaveDeterminationAck { master: false },
    ] {
        assert!(
            seen.contains(&std::mem::discriminant(&want)),
            "{want:?} seen"
        );
    }
}
