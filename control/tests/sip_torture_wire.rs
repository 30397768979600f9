//! RFC 4475 / RFC 5118 torture messages sent over UDP to a running tandemd, each judged by the
//! response the RFC asks for. The daemon runs in a private network namespace (only loopback),
//! so the responses it sends to the Via ports of the messages (5060, 5061, 6050...) reach this
//! test and nothing else. Skips when `unshare -n` is not permitted.

mod common;

use std::collections::HashMap;
use std::net::{SocketAddr, UdpSocket};
use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

use common::Daemon;
use control::sip::transaction::response_dest;
use control::sip::Message;

const INNER: &str = "TANDEM_TORTURE_IN_NETNS";

fn corpus() -> Option<PathBuf> {
    let p = PathBuf::from(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../shared/testdata/sip-torture"
    ));
    if p.join("MANIFEST.md").exists() {
        Some(p)
    } else {
        eprintln!("SKIP: SIP torture corpus not found at {}", p.display());
        None
    }
}

/// What the RFC asks of us for one message.
#[derive(Debug, Clone, Copy)]
enum Want {
    /// Exactly one of these status codes.
    Code(&'static [u16]),
    /// Processed: some response, but not 400.
    Processed,
    /// No response (a response message to discard, or a request we cannot answer).
    Silence,
    /// Either a response with one of these codes or silence.
    CodeOrSilence(&'static [u16]),
}

/// RFC 4475 §3 verdicts for a UAS/registrar (see MANIFEST.md).
const RFC4475: &[(&str, Want)] = &[
    ("esc02", Want::Code(&[501])), // unknown method at an endpoint
    ("lwsdisp", Want::Code(&[200])),
    ("longreq", Want::Processed),
    ("transports", Want::Code(&[200])),
    ("noreason", Want::Silence),
    ("scalarlg", Want::Silence),
    ("ltgtruri", Want::Code(&[400])),
    ("lwsstart", Want::Code(&[400])),
    ("trws", Want::Code(&[400])),
    ("escruri", Want::Code(&[400])),
    ("baddate", Want::Processed),
    ("regbadct", Want::Code(&[400])),
    ("badaspec", Want::Code(&[400])),
    ("badvers", Want::Code(&[505])),
    ("mismatch01", Want::Code(&[400])),
    ("mismatch02", Want::Code(&[400, 501])),
    ("bigcode", Want::Silence),
    ("badbranch", Want::Code(&[200, 400])),
    ("insuf", Want::CodeOrSilence(&[400])),
    ("unkscm", Want::Code(&[416])),
    ("novelsc", Want::Code(&[416])),
    ("unksm2", Want::Code(&[400])), // registrar: non-SIP To
    ("bext01", Want::Code(&[420])),
    ("invut", Want::Code(&[415])),
    ("regaut01", Want::Code(&[401])),
    ("bcast", Want::Silence),
    ("zeromf", Want::Code(&[200])), // endpoint processes Max-Forwards: 0 normally
    ("cparam01", Want::Code(&[401])),
    ("cparam02", Want::Code(&[401])),
    ("regescrt", Want::Code(&[401])),
    ("sdp01", Want::Code(&[406])),
    ("inv2543", Want::Processed),
    ("test", Want::CodeOrSilence(&[400])),
];

/// RFC 5118 §4 verdicts.
const RFC5118: &[(&str, Want)] = &[
    ("ipv6-good", Want::Code(&[401])),
    ("ipv6-bad", Want::Code(&[400])),
    ("port-unambiguous", Want::Processed),
    ("via-received-param-no-delim", Want::Code(&[200])),
    ("ipv6-in-sdp", Want::Processed),
    ("mult-ip-in-header", Want::Processed),
    ("mult-ip-in-sdp", Want::Processed),
    ("ipv6-correct-abnf-2-colons", Want::Code(&[200])),
];

/// RFC 5118 archive files: bare LF, sometimes no final empty line or a wrong Content-Length.
/// Wire form per the MANIFEST: CRLF, terminating empty line, Content-Length of the real body.
fn rfc5118_wire(raw: &[u8]) -> Vec<u8> {
    let text = String::from_utf8_lossy(raw).replace('\n', "\r\n");
    let (head, body) = match text.split_once("\r\n\r\n") {
        Some((h, b)) => (h.to_string(), b.to_string()),
        None => (text.trim_end_matches("\r\n").to_string(), String::new()),
    };
    let head: Vec<String> = head
        .split("\r\n")
        .map(|l| {
            if l.to_ascii_lowercase().starts_with("content-length") {
                format!("Content-Length: {}", body.len())
            } else {
                l.to_string()
            }
        })
        .collect();
    format!("{}\r\n\r\n{}", head.join("\r\n"), body).into_bytes()
}

/// The Call-ID of a raw message (for matching responses), if any.
fn call_id(wire: &[u8]) -> Option<String> {
    let text = String::from_utf8_lossy(wire);
    text.split("\r\n").find_map(|l| {
        let (n, v) = l.split_once(':')?;
        let n = n.trim().to_ascii_lowercase();
        (n == "call-id" || n == "i").then(|| v.trim().to_string())
    })
}

/// Where tandemd will send the answer to `wire` sent from `from`.
fn answer_port(wire: &[u8], from: SocketAddr) -> u16 {
    let req = match Message::parse(wire) {
        Ok(Message::Request(r)) => Some(r),
        Ok(Message::Response(_)) => None,
        Err(e) => e.partial,
    };
    req.and_then(|r| r.top_via())
        .map_or(5060, |v| response_dest(&v, from).port())
}

/// Status code and Call-ID of a response our parser refuses.
fn lenient_response(bytes: &[u8]) -> Option<control::sip::Response> {
    let text = String::from_utf8_lossy(bytes);
    let code: u16 = text.strip_prefix("SIP/2.0 ")?.get(..3)?.parse().ok()?;
    let mut r = control::sip::Response::new(code);
    if let Some(c) = call_id(bytes) {
        r.headers.push("Call-ID", c);
    }
    eprintln!(
        "note: unparsable response: {:?}",
        text.lines().take(12).collect::<Vec<_>>()
    );
    Some(r)
}

struct Listener {
    socks: HashMap<u16, UdpSocket>,
}

impl Listener {
    fn sock(&mut self, port: u16) -> &UdpSocket {
        self.socks.entry(port).or_insert_with(|| {
            let s = UdpSocket::bind(("127.0.0.1", port))
                .unwrap_or_else(|e| panic!("bind 127.0.0.1:{port} in the namespace: {e}"));
            s.set_nonblocking(true).expect("nonblocking");
            s
        })
    }

    /// Responses received within `wait` whose Call-ID is `cid` (any when `cid` is None and
    /// the response's Call-ID is not one of `old`).
    fn collect(&mut self, cid: Option<&str>, old: &[String], wait: Duration) -> Vec<u16> {
        let end = Instant::now() + wait;
        let mut codes = Vec::new();
        let mut buf = vec![0u8; 65_535];
        while Instant::now() < end {
            let mut got = false;
            for s in self.socks.values() {
                while let Ok((n, _)) = s.recv_from(&mut buf) {
                    got = true;
                    let r = match Message::parse(&buf[..n]) {
                        Ok(Message::Response(r)) => r,
                        // An answer to a malformed request may itself be malformed (it echoes
                        // the request's headers): take the status line and the Call-ID.
                        _ => match lenient_response(&buf[..n]) {
                            Some(r) => r,
                            None => continue,
                        },
                    };
                    let rc = r.call_id().unwrap_or("").to_string();
                    let mine = match cid {
                        Some(c) => rc == c,
                        None => !old.contains(&rc),
                    };
                    if mine && !codes.contains(&r.code) {
                        codes.push(r.code);
                    } else if !mine && !old.contains(&rc) {
                        eprintln!(
                            "unmatched response {} Call-ID {rc:?} (want {cid:?})",
                            r.code
                        );
                    }
                }
            }
            if !codes.is_empty() && !got {
                // let a final response follow a provisional one
                std::thread::sleep(Duration::from_millis(30));
                if codes.iter().any(|c| *c >= 200) {
                    break;
                }
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        codes
    }
}

#[test]
fn torture_messages_over_udp() {
    let Some(dir) = corpus() else { return };
    if std::env::var_os(INNER).is_none() {
        let probe = Command::new("unshare")
            .args(["-n", "sh", "-c", "ip link set lo up"])
            .status();
        if !probe.is_ok_and(|s| s.success()) {
            eprintln!("SKIP: `unshare -n` (network namespace) not permitted here");
            return;
        }
        let exe = std::env::current_exe().expect("test binary path");
        let st = Command::new("unshare")
            .args(["-n", "sh", "-c", "ip link set lo up && exec \"$0\" \"$@\""])
            .arg(exe)
            .args([
                "torture_messages_over_udp",
                "--exact",
                "--nocapture",
                "--test-threads=1",
            ])
            .env(INNER, "1")
            .status()
            .expect("run the test inside the namespace");
        assert!(st.success(), "torture run in the namespace failed: {st}");
        return;
    }

    let mut daemon = Daemon::start("torture", None, "");
    let target: SocketAddr = daemon.registrar().parse().expect("daemon address");
    let mut l = Listener {
        socks: HashMap::new(),
    };
    let sender_port = {
        let s = UdpSocket::bind("127.0.0.1:0").expect("bind sender");
        let p = s.local_addr().expect("addr").port();
        drop(s);
        p
    };
    l.sock(sender_port);
    let sender_addr: SocketAddr = format!("127.0.0.1:{sender_port}").parse().unwrap();

    let mut cases: Vec<(String, Vec<u8>, Want)> = Vec::new();
    for (name, want) in RFC4475 {
        let p = dir.join("rfc4475").join(format!("{name}.dat"));
        match std::fs::read(&p) {
            Ok(b) => cases.push((format!("4475/{name}"), b, *want)),
            Err(_) => eprintln!("note: {} absent, not sent", p.display()),
        }
    }
    for (name, want) in RFC5118 {
        let p = dir.join("rfc5118").join(name);
        match std::fs::read(&p) {
            Ok(b) => cases.push((format!("5118/{name}"), rfc5118_wire(&b), *want)),
            Err(_) => eprintln!("note: {} absent, not sent", p.display()),
        }
    }
    // Every file in the folder must have a verdict here.
    for sub in ["rfc4475", "rfc5118"] {
        for e in std::fs::read_dir(dir.join(sub))
            .expect("corpus dir")
            .flatten()
        {
            let n = e
                .file_name()
                .to_string_lossy()
                .trim_end_matches(".dat")
                .to_string();
            assert!(
                cases.iter().any(|(c, _, _)| c.ends_with(&format!("/{n}"))),
                "{sub}/{n} has no verdict in this test"
            );
        }
    }

    let mut old_ids: Vec<String> = Vec::new();
    let mut table = Vec::new();
    let mut failures = Vec::new();
    for (name, wire, want) in &cases {
        let port = answer_port(wire, sender_addr);
        l.sock(port);
        let cid = call_id(wire);
        l.sock(sender_port)
            .send_to(wire, target)
            .expect("send torture message");
        let wait = match want {
            Want::Silence | Want::CodeOrSilence(_) => Duration::from_millis(400),
            _ => Duration::from_secs(3),
        };
        let codes = l.collect(cid.as_deref(), &old_ids, wait);
        let finals: Vec<u16> = codes.iter().copied().filter(|c| *c >= 200).collect();
        let ok = match want {
            Want::Code(set) => finals.len() == 1 && set.contains(&finals[0]),
            Want::Processed => !finals.is_empty() && !finals.contains(&400),
            Want::Silence => codes.is_empty(),
            Want::CodeOrSilence(set) => {
                codes.is_empty() || (finals.len() == 1 && set.contains(&finals[0]))
            }
        };
        table.push(format!(
            "{name:36} want {:28} got {:12} {}",
            format!("{want:?}"),
            if codes.is_empty() {
                "silence".to_string()
            } else {
                format!("{codes:?}")
            },
            if ok { "ok" } else { "FAIL" }
        ));
        if !ok {
            failures.push(name.clone());
        }
        if let Some(c) = cid {
            old_ids.push(c);
        }
    }
    eprintln!("torture verdicts over UDP:\n{}", table.join("\n"));

    // Still alive and serving.
    assert!(
        daemon.child.try_wait().expect("try_wait").is_none(),
        "tandemd exited during the torture run"
    );
    let opt = format!(
        "OPTIONS sip:{target} SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:{sender_port};branch=z9hG4bKalive1\r\n\
         From: <sip:probe@127.0.0.1>;tag=p1\r\nTo: <sip:{target}>\r\nCall-ID: alive-after-torture\r\n\
         CSeq: 1 OPTIONS\r\nMax-Forwards: 70\r\nContent-Length: 0\r\n\r\n"
    );
    l.sock(sender_port)
        .send_to(opt.as_bytes(), target)
        .expect("send OPTIONS");
    let codes = l.collect(
        Some("alive-after-torture"),
        &old_ids,
        Duration::from_secs(3),
    );
    assert_eq!(codes, [200], "OPTIONS after the torture run");
    assert!(failures.is_empty(), "verdicts not met: {failures:?}");
    assert_eq!(daemon.terminate(), 0, "clean exit");
}
