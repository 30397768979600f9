//! H.225.0/H.245 decoding of real captures: h323peer's `sample-call.pcap`
//! (asn1tools encodings, fastStart) and Wireshark's `rtp_example` (a 2002
//! endpoint: no fastStart, separate H.245 channel). Every H.225 message must
//! decode and re-encode to identical bytes.

use std::collections::BTreeMap;

use control::h323::h225::{AliasAddress, Body};
use control::h323::h245::{
    decode_fast_start, fast_start_accepted, Codec, H245Message, OpenLogicalChannel,
};
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
            "callProceeding",
            "alerting",
            "connect",
            "setup",
            "releaseComplete"
        ],
        "callee stream (port 1720 sorts first), then caller"
    );
    let setup = &msgs[3].1;
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
        // asn1tools encodes the empty NULL open type (`none`) with length 0;
        // X.691 10.1.3 (and Tandem) use one zero octet. Both decode alike,
        // so OLCs with `none` compare by value, the others byte for byte.
        if o.forward_mux.is_some() {
            assert_eq!(o.encode(), raw, "OLC re-encodes byte exact");
        } else {
            assert_eq!(OpenLogicalChannel::decode(&o.encode()).unwrap(), *o);
            assert_eq!(o.encode().len(), raw.len() + 1);
        }
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
    for (sp, m) in &msgs {
        let u = m.uuie.as_ref().unwrap();
        assert_eq!(
            u.call_identifier().unwrap(),
            Some(call_id),
            "same callIdentifier"
        );
        assert_eq!(
            m.q931.cref.flag,
            *sp == 1720,
            "call reference flag set by the callee"
        );
    }
    assert_eq!(msgs[4].1.q931.cause().unwrap().value, 16);
    for (_, m) in &msgs[1..3] {
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

const TSHARK_CHECK: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../../shared/peers/h323peer/tshark-check.sh"
);

/// Writes TCP segments (one per TPKT) between 127.0.0.1:40000 (caller) and
/// 127.0.0.2:1720 as an Ethernet pcap.
fn write_pcap(segments: &[(bool, Vec<u8>)]) -> Vec<u8> {
    let mut out = Vec::new();
    for v in [0xa1b2_c3d4u32.to_le_bytes(), [2, 0, 4, 0], [0; 4], [0; 4]] {
        out.extend_from_slice(&v);
    }
    out.extend_from_slice(&65535u32.to_le_bytes());
    out.extend_from_slice(&1u32.to_le_bytes());
    let mut seq = [1000u32, 5000u32];
    for (k, (from_caller, data)) in segments.iter().enumerate() {
        let (src, dst, sp, dp) = if *from_caller {
            ([127, 0, 0, 1], [127, 0, 0, 2], 40000u16, 1720u16)
        } else {
            ([127, 0, 0, 2], [127, 0, 0, 1], 1720, 40000)
        };
        let (me, other) = if *from_caller { (0, 1) } else { (1, 0) };
        let mut f = vec![0u8; 12];
        f.extend_from_slice(&[0x08, 0x00]);
        let total = (20 + 20 + data.len()) as u16;
        f.extend_from_slice(&[
            0x45,
            0,
            (total >> 8) as u8,
            total as u8,
            0,
            0,
            0x40,
            0,
            64,
            6,
            0,
            0,
        ]);
        f.extend_from_slice(&src);
        f.extend_from_slice(&dst);
        f.extend_from_slice(&sp.to_be_bytes());
        f.extend_from_slice(&dp.to_be_bytes());
        f.extend_from_slice(&seq[me].to_be_bytes());
        f.extend_from_slice(&seq[other].to_be_bytes());
        f.extend_from_slice(&[0x50, 0x18, 0xff, 0xff, 0, 0, 0, 0]);
        f.extend_from_slice(data);
        seq[me] = seq[me].wrapping_add(data.len() as u32);
        out.extend_from_slice(&(k as u32 + 1).to_le_bytes());
        out.extend_from_slice(&0u32.to_le_bytes());
        out.extend_from_slice(&(f.len() as u32).to_le_bytes());
        out.extend_from_slice(&(f.len() as u32).to_le_bytes());
        out.extend_from_slice(&f);
    }
    out
}

/// Tandem's own H.225/H.245 encodings (fastStart offer/answer, tunnelled
/// TCS/MSD/Acks and UserInputIndication, Release Complete) decoded by
/// Wireshark's dissectors: no malformed frame, no expert warning.
#[test]
fn tandem_wire_format_passes_tshark() {
    use control::h323::call::CallConfig;
    use control::h323::H323Call;
    use std::time::Instant;
    if !std::path::Path::new(TSHARK_CHECK).exists()
        || std::process::Command::new("tshark")
            .arg("-v")
            .output()
            .is_err()
    {
        eprintln!("SKIP: tshark or {TSHARK_CHECK} not available");
        return;
    }
    let now = Instant::now();
    let cfg = |port: u16, codecs: &[Codec]| CallConfig {
        local_rtp: ([127, 0, 0, 1], port).into(),
        codecs: codecs.to_vec(),
        tunnelling: true,
        version: 4,
    };
    let mut a = H323Call::outgoing(
        cfg(
            41000,
            &[Codec::Pcma, Codec::Pcmu, Codec::G729, Codec::G729A],
        ),
        0x55,
        [1; 16],
        [2; 16],
    );
    let mut b = H323Call::incoming(cfg(41002, &[Codec::G729A, Codec::Pcmu]), 3);
    let mut segs = Vec::new();
    let pump = |a: &mut H323Call, b: &mut H323Call, from_caller: bool, segs: &mut Vec<_>| {
        while let Some(f) = a.poll_transmit() {
            b.handle_bytes(&f, now).expect("peer decodes");
            segs.push((from_caller, f));
        }
    };
    a.setup("1000", "2000", Some("Alice"), false, now).unwrap();
    pump(&mut a, &mut b, true, &mut segs);
    b.proceeding(now).unwrap();
    b.alerting(now).unwrap();
    b.connect(now).unwrap();
    pump(&mut b, &mut a, false, &mut segs);
    pump(&mut a, &mut b, true, &mut segs);
    pump(&mut b, &mut a, false, &mut segs);
    b.send_dtmf('5', Some(100)).unwrap();
    pump(&mut b, &mut a, false, &mut segs);
    a.release(16, now).unwrap();
    pump(&mut a, &mut b, true, &mut segs);
    let path = std::env::temp_dir().join(format!("tandem-h323-{}.pcap", std::process::id()));
    std::fs::write(&path, write_pcap(&segs)).unwrap();
    let out = std::process::Command::new("sh")
        .arg(TSHARK_CHECK)
        .arg("check")
        .arg(&path)
        .output()
        .expect("run tshark-check.sh");
    let text = String::from_utf8_lossy(&out.stdout);
    let _ = std::fs::remove_file(&path);
    assert!(out.status.success(), "tshark-check failed:\n{text}");
    assert!(
        text.contains(&format!("h225_frames={} ", segs.len())),
        "every frame decoded as H.225:\n{text}"
    );
    assert!(text.contains("frames_with_olc="), "{text}");
}

/// Bit flips and truncations of every sample-call message never panic the
/// TPKT/Q.931/UUIE/OLC decoders (a cheap stand-in for a fuzz run).
#[test]
fn mutated_messages_never_panic() {
    let Ok(pcap) = std::fs::read(SAMPLE) else {
        eprintln!("SKIP: {SAMPLE} not found");
        return;
    };
    let mut seeds = Vec::new();
    for s in tcp_streams(&pcap).values() {
        seeds.extend(tpkt_payloads(s));
    }
    let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
    let mut rnd = move || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x
    };
    let mut decoded = 0;
    for _ in 0..20_000 {
        let mut m = seeds[rnd() as usize % seeds.len()].clone();
        for _ in 0..1 + rnd() % 4 {
            let i = rnd() as usize % m.len();
            m[i] ^= 1 << (rnd() % 8);
        }
        if rnd() % 4 == 0 {
            let n = rnd() as usize % m.len();
            m.truncate(n);
        }
        if let Ok(h) = H225Message::parse(&m) {
            decoded += 1;
            let mut out = Vec::new();
            h.emit(&mut out);
            if let Some(Ok(Some(fs))) = h.uuie.as_ref().map(|u| u.fast_start()) {
                let _ = decode_fast_start(&fs);
            }
        }
        let _ = H245Message::decode(&m);
    }
    assert!(decoded > 100, "some mutations still decode ({decoded})");
}
