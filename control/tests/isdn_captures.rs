//! Q.931 decoding of real ISDN D-channel frames from the shared captures
//! (`testdata/pcap/isdn/i4b.trace.frames.tsv`, the LAPD frames of i4b.trace
//! as hex) and of libpri's frames in pri-peer's example event streams.

use control::isdn::lapd::Frame;
use control::q931::{Ie, Message, MsgType, Presentation};

const TSV: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../../shared/testdata/pcap/isdn/i4b.trace.frames.tsv"
);
const NET_EXAMPLE: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../../shared/peers/pri-peer/examples/net-calls-cpe.net.jsonl"
);

fn hex(s: &str) -> Option<Vec<u8>> {
    if s.len() % 2 != 0 {
        return None;
    }
    (0..s.len() / 2)
        .map(|i| u8::from_str_radix(&s[2 * i..2 * i + 2], 16).ok())
        .collect()
}

#[test]
fn i4b_trace_q931_messages() {
    let Ok(text) = std::fs::read_to_string(TSV) else {
        eprintln!("SKIP: {TSV} not found");
        return;
    };
    let mut seen = Vec::new();
    for line in text.lines().filter(|l| !l.starts_with('#')) {
        let cols: Vec<&str> = line.split('\t').collect();
        if cols.len() < 7 || cols[2] != "0" {
            continue;
        }
        let bytes = hex(cols[5]).expect("hex column");
        let frame = Frame::parse(&bytes).unwrap_or_else(|e| panic!("frame {}: {e}", cols[0]));
        let Some(info) = frame.info() else { continue };
        if frame.sapi() != 0 {
            continue; // TEI management (SAPI 63)
        }
        let m = Message::parse(info).unwrap_or_else(|e| panic!("frame {}: {e}", cols[0]));
        assert_eq!(
            m.to_bytes(),
            info,
            "frame {} re-encodes byte exact",
            cols[0]
        );
        assert!(
            cols[6]
                .to_uppercase()
                .replace(' ', "")
                .contains(&m.msg_type.to_string().to_uppercase())
                || (m.msg_type == MsgType::CallProceeding && cols[6].contains("CALL PROCEEDING"))
                || (m.msg_type == MsgType::ConnectAck && cols[6].contains("CONNECT ACKNOWLEDGE")),
            "frame {}: {:?} vs {}",
            cols[0],
            m.msg_type,
            cols[6]
        );
        if m.msg_type == MsgType::Setup {
            assert_eq!(m.cref.len, 1, "BRI call reference is one octet");
            assert!(m.sending_complete());
            assert_eq!(m.calling().unwrap().digits, "5551212");
            assert_eq!(m.called().unwrap().digits, "0205551212");
            let bc = m
                .find(|i| {
                    if let Ie::BearerCapability(b) = i {
                        Some(b.clone())
                    } else {
                        None
                    }
                })
                .unwrap();
            assert_eq!(bc.itc, 8, "unrestricted digital");
        }
        seen.push(m.msg_type);
    }
    assert_eq!(
        seen,
        vec![
            MsgType::Setup,
            MsgType::CallProceeding,
            MsgType::Alerting,
            MsgType::Connect,
            MsgType::ConnectAck
        ]
    );
}

#[test]
fn libpri_example_frames() {
    let Ok(text) = std::fs::read_to_string(NET_EXAMPLE) else {
        eprintln!("SKIP: {NET_EXAMPLE} not found");
        return;
    };
    let mut n = 0;
    for line in text.lines() {
        let Some(p) = line.find("\"hex\":\"") else {
            continue;
        };
        let rest = &line[p + 7..];
        let Some(e) = rest.find('"') else { continue };
        let bytes = hex(&rest[..e]).unwrap();
        let f = Frame::parse(&bytes).unwrap();
        let Some(info) = f.info() else { continue };
        let m = Message::parse(info).unwrap();
        assert_eq!(m.to_bytes(), info);
        if m.msg_type == MsgType::Setup {
            let cg = m.calling().unwrap();
            assert_eq!(cg.pres.map(|p| p.0), Some(Presentation::Allowed));
        }
        if m.msg_type == MsgType::Disconnect {
            assert_eq!(m.cause().unwrap().value, 16);
        }
        n += 1;
    }
    assert!(n >= 8, "{n} Q.931 messages");
}
