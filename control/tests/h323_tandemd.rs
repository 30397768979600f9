//! H.323 through a real `tandemd`: baresip (SIP) on one side, h323peer
//! (`../shared/peers/h323peer`, asn1tools PER, written by no one here) on the
//! other, joined by the H.323 interworking function and the call engine.
//!
//! - a SIP phone dials `7<number>` -> `Dial(H323/<number>@h323peer)`: the peer
//!   sees a well-formed Setup with the caller's number and a fastStart offer,
//!   answers; audio crosses both ways (cross-correlation of known signals);
//!   either side hangs up and the other sees the mapped release;
//! - h323peer calls Tandem's H.225.0 listener and reaches registered 1002;
//! - busy and rejected calls map to SIP codes and Q.931 causes both ways;
//! - tshark decodes the captured H.225.0/H.245 of the answered calls with no
//!   malformed frame and no expert warning (the peer's `tshark-check.sh`).
//!
//! Skips with a message when baresip, Python's asn1tools or h323peer is missing;
//! the capture check skips when dumpcap cannot capture on `lo`.

mod common;

use std::io::{BufRead, BufReader};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use common::*;
use serde_json::Value;

const PEER: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../../shared/peers/h323peer/h323peer.py"
);
const TSHARK_CHECK: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../../shared/peers/h323peer/tshark-check.sh"
);

fn available() -> bool {
    if !have_baresip() {
        return false;
    }
    if !Path::new(PEER).exists() {
        eprintln!("SKIP: {PEER} not found");
        return false;
    }
    let ok = Command::new("python3")
        .args(["-c", "import asn1tools"])
        .status()
        .is_ok_and(|s| s.success());
    if !ok {
        eprintln!("SKIP: python3 with asn1tools not available (scripts/test.sh installs it)");
    }
    ok
}

/// A running h323peer; its JSON lines arrive on `lines`.
struct Peer {
    child: Child,
    lines: mpsc::Receiver<Value>,
    seen: Vec<Value>,
}

impl Peer {
    fn spawn(args: &[String]) -> Peer {
        let mut child = Command::new("python3")
            .arg(PEER)
            .args(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("spawn h323peer");
        let out = child.stdout.take().expect("stdout");
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for l in BufReader::new(out).lines().map_while(Result::ok) {
                if let Ok(v) = serde_json::from_str::<Value>(&l) {
                    if tx.send(v).is_err() {
                        break;
                    }
                }
            }
        });
        Peer {
            child,
            lines,
            seen: Vec::new(),
        }
    }

    /// Waits for the first line with `event` (the ASN.1 compile is slow on a loaded machine).
    fn wait(&mut self, event: &str, secs: u64) -> Value {
        let end = Instant::now() + Duration::from_secs(secs);
        loop {
            let left = end.saturating_duration_since(Instant::now());
            let v = self
                .lines
                .recv_timeout(left)
                .unwrap_or_else(|_| panic!("h323peer: no {event} line; saw {:?}", self.seen));
            self.seen.push(v.clone());
            if v["event"] == event {
                return v;
            }
        }
    }

    /// Exit code and every line printed.
    fn finish(mut self, secs: u64) -> (i32, Vec<Value>) {
        let r = self.wait("result", secs);
        let code = self.child.wait().expect("wait").code().unwrap_or(-1);
        assert_eq!(r["code"].as_i64(), Some(i64::from(code)), "{r}");
        (code, std::mem::take(&mut self.seen))
    }

    fn listen_port(&mut self) -> u16 {
        let addr = self.wait("listening", 60)["addr"]
            .as_str()
            .expect("addr")
            .to_string();
        addr.rsplit(':')
            .next()
            .and_then(|p| p.parse().ok())
            .expect("port")
    }
}

impl Drop for Peer {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
        }
        let _ = self.child.wait();
    }
}

fn rx<'a>(seen: &'a [Value], msg: &str) -> Option<&'a Value> {
    seen.iter().find(|v| v["event"] == "rx" && v["msg"] == msg)
}

fn strs(v: &[&str]) -> Vec<String> {
    v.iter().map(|s| s.to_string()).collect()
}

fn free_tcp_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("free tcp port")
}

/// tandemd with an `[h323]` listener on `h225` and a dialplan sending `7<number>` to the
/// H.323 peer at `peer_port`.
fn daemon(name: &str, h225: u16, peer_port: u16) -> Daemon {
    let plan = format!(
        "[default]\n\
         exten => _7X.,1,Dial(H323/${{EXTEN:1}}@127.0.0.1:{peer_port},20)\n\
          same => n,Hangup()\n\
         [from-h323]\n\
         exten => _100X,1,Dial(SIP/${{EXTEN}},20)\n\
          same => n,Hangup()\n\
         exten => 2403,1,Hangup(21)\n"
    );
    Daemon::start(
        name,
        Some(&plan),
        &format!("[h323]\nlisten = \"127.0.0.1:{h225}\"\ncontext = \"from-h323\"\n"),
    )
}

/// A dumpcap capture of TCP on `lo` for some ports; `None` (with a message) when it
/// cannot capture here.
struct Capture {
    child: Child,
    path: PathBuf,
}

impl Capture {
    fn start(path: PathBuf, ports: &[u16]) -> Option<Capture> {
        let have = Command::new("tshark")
            .arg("-v")
            .stdout(Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        if !have || !Path::new(TSHARK_CHECK).exists() {
            eprintln!("SKIP capture check: tshark or {TSHARK_CHECK} missing");
            return None;
        }
        let filter = ports
            .iter()
            .map(|p| format!("tcp port {p}"))
            .collect::<Vec<_>>()
            .join(" or ");
        let child = Command::new("dumpcap")
            .args(["-q", "-P", "-i", "lo", "-f", &filter, "-w"])
            .arg(&path)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .ok()?;
        let mut cap = Capture { child, path };
        let end = Instant::now() + Duration::from_secs(10);
        while Instant::now() < end {
            if let Ok(Some(_)) = cap.child.try_wait() {
                eprintln!("SKIP capture check: dumpcap cannot capture on lo (needs root)");
                return None;
            }
            if std::fs::metadata(&cap.path).is_ok_and(|m| m.len() > 0) {
                std::thread::sleep(Duration::from_millis(500));
                return Some(cap);
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        eprintln!("SKIP capture check: dumpcap wrote nothing");
        let _ = cap.child.kill();
        None
    }

    /// Stops the capture and runs tshark-check.sh on it; returns its report.
    fn check(mut self) -> String {
        std::thread::sleep(Duration::from_millis(500));
        unsafe_kill(self.child.id(), "INT");
        let _ = self.child.wait();
        let out = Command::new("sh")
            .arg(TSHARK_CHECK)
            .arg("check")
            .arg(&self.path)
            .output()
            .expect("run tshark-check.sh");
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        assert!(out.status.success(), "tshark-check failed:\n{text}");
        text
    }
}

fn assert_audio(reference: &Path, rec: &Path, what: &str) {
    let v = analyze(reference, rec);
    let med = v["block_corr_median"].as_f64().unwrap_or(0.0);
    assert!(
        v["ok"] == true && med >= 0.8,
        "{what}: audio does not match its source: {v}"
    );
}

/// Number of H.225.0 frames in a tshark-check report (`h225_frames=N`).
fn h225_frames(report: &str) -> usize {
    report
        .split_whitespace()
        .find_map(|w| w.strip_prefix("h225_frames="))
        .and_then(|n| n.parse().ok())
        .unwrap_or(0)
}

#[test]
fn sip_phone_calls_h323peer_audio_both_ways_and_caller_hangs_up() {
    if !available() {
        return;
    }
    let _g = serial();
    let dir = TempDir::new("h323-out-files");
    let chirp = dir.path("chirp.wav");
    let noise = dir.path("noise.wav");
    gen(&chirp, "chirp", 3.0, 1);
    gen(&noise, "noise", 3.0, 7);
    let rec_h = dir.path("rec_h323.wav");
    let rec_a = dir.path("rec_a.wav");
    let mut peer = Peer::spawn(&strs(&[
        "listen",
        "--listen",
        "127.0.0.1:0",
        "--codecs",
        "pcmu,pcma",
        "--expect-calling",
        "1001",
        "--expect-called",
        "5551234",
        "--wav",
        &noise.display().to_string(),
        "--record",
        &rec_h.display().to_string(),
        "--expect-rtp",
        "--duration",
        "40",
        "--expect-cause",
        "16",
    ]));
    let peer_port = peer.listen_port();
    let h225 = free_tcp_port();
    let cap = Capture::start(dir.path("out.pcap"), &[peer_port, h225]);
    let d = daemon("h323-out", h225, peer_port);
    let mut caller = ua_args(&d, "call", 1001);
    caller.extend(strs(&[
        "--dial",
        "75551234",
        "--play",
        &chirp.display().to_string(),
        "--record",
        &rec_a.display().to_string(),
        "--seconds",
        "5",
    ]));
    let mut a = Ua::spawn(&d.dir, "a", &caller);
    a.wait_event("established", 40);
    let calls = d.ctl_json(&["show", "calls"]);
    assert_eq!(calls.as_array().map(Vec::len), Some(1), "{calls}");
    assert!(calls.to_string().contains("H323/5551234"), "{calls}");
    assert_eq!(a.wait(40), 0, "caller flow failed: {:?}", a.events());
    let (code, seen) = peer.finish(30);
    assert_eq!(code, 0, "h323peer: {:?}", seen.last());
    let setup = rx(&seen, "setup").expect("peer saw a Setup");
    assert_eq!(setup["calling"], "1001", "{setup}");
    assert_eq!(setup["called"], "5551234", "{setup}");
    assert_eq!(setup["calling_pi"], "allowed", "{setup}");
    let offered = setup["offered"].as_array().expect("fastStart offer");
    assert!(
        offered.iter().any(|c| c == "pcmu") && offered.iter().any(|c| c == "pcma"),
        "{setup}"
    );
    assert!(
        setup["rtp"]
            .as_str()
            .is_some_and(|r| r.starts_with("127.0.0.1:")),
        "{setup}"
    );
    assert_eq!(rx(&seen, "releaseComplete").expect("release")["cause"], 16);
    let media = seen
        .iter()
        .find(|v| v["event"] == "media")
        .expect("media line");
    assert!(media["rx_packets"].as_u64().unwrap_or(0) > 100, "{media}");
    assert_audio(&chirp, &rec_h, "SIP phone -> H.323 peer");
    assert_audio(&noise, &rec_a, "H.323 peer -> SIP phone");
    d.wait_for("no active calls", 10, |d| d.active_calls() == 0);
    if let Some(cap) = cap {
        let report = cap.check();
        assert!(h225_frames(&report) >= 4, "{report}");
    }
}

#[test]
fn h323peer_hangs_up_and_the_sip_phone_gets_bye() {
    if !available() {
        return;
    }
    let _g = serial();
    let mut peer = Peer::spawn(&strs(&[
        "listen",
        "--listen",
        "127.0.0.1:0",
        "--hangup",
        "callee",
        "--duration",
        "2",
        "--cause",
        "16",
    ]));
    let peer_port = peer.listen_port();
    let d = daemon("h323-peer-bye", free_tcp_port(), peer_port);
    let mut caller = ua_args(&d, "call", 1002);
    caller.extend(strs(&[
        "--dial",
        "7200",
        "--seconds",
        "20",
        "--allow-remote-hangup",
        "--no-media-check",
    ]));
    let mut a = Ua::spawn(&d.dir, "a", &caller);
    a.wait_event("established", 40);
    let (code, seen) = peer.finish(30);
    assert_eq!(code, 0, "h323peer: {:?}", seen.last());
    assert_eq!(rx(&seen, "setup").expect("setup")["calling"], "1002");
    a.wait(30);
    let closed = a.wait_event("closed", 5);
    assert_eq!(closed["by_us"], false, "BYE from Tandem: {closed}");
    d.wait_for("no active calls", 10, |d| d.active_calls() == 0);
}

#[test]
fn h323peer_calls_a_registered_sip_phone_with_audio_and_its_number() {
    if !available() {
        return;
    }
    let _g = serial();
    let h225 = free_tcp_port();
    let d = daemon("h323-in", h225, 1);
    let chirp = d.dir.path("chirp.wav");
    let noise = d.dir.path("noise.wav");
    gen(&chirp, "chirp", 3.0, 3);
    gen(&noise, "noise", 3.0, 9);
    let rec_b = d.dir.path("rec_b.wav");
    let rec_h = d.dir.path("rec_h323.wav");
    let mut callee = ua_args(&d, "answer", 1002);
    callee.extend(strs(&[
        "--play",
        &noise.display().to_string(),
        "--record",
        &rec_b.display().to_string(),
        "--timeout",
        "60",
    ]));
    let mut b = Ua::spawn(&d.dir, "b", &callee);
    b.wait_event("waiting", 15);
    d.wait_for("1002 registered", 10, |d| {
        d.ctl_json(&["show", "registrations"])
            .as_array()
            .is_some_and(|r| r.iter().any(|x| x["user"] == "1002"))
    });
    let cap = Capture::start(d.dir.path("in.pcap"), &[h225]);
    let target = format!("127.0.0.1:{h225}");
    let peer = Peer::spawn(&strs(&[
        "call",
        &target,
        "--from",
        "5557000",
        "--to",
        "1002",
        "--display",
        "Bob",
        "--codecs",
        "pcma,pcmu",
        "--wav",
        &chirp.display().to_string(),
        "--record",
        &rec_h.display().to_string(),
        "--expect-rtp",
        "--duration",
        "5",
        "--timeout",
        "30",
    ]));
    let (code, seen) = peer.finish(90);
    assert_eq!(code, 0, "h323peer: {seen:?}");
    let incoming = b.wait_event("incoming", 5);
    assert!(
        incoming["peer"]
            .as_str()
            .is_some_and(|p| p.contains("5557000")),
        "caller number reaches the phone: {incoming}"
    );
    let conn = rx(&seen, "connect").expect("peer saw Connect");
    assert!(
        conn["rtp"]
            .as_str()
            .is_some_and(|r| r.starts_with("127.0.0.1:")),
        "{conn}"
    );
    assert_eq!(b.wait(30), 0, "callee flow failed: {:?}", b.events());
    let closed = b.event("closed").expect("callee closed");
    assert_eq!(
        closed["by_us"], false,
        "BYE mapped from Release Complete: {closed}"
    );
    assert_audio(&chirp, &rec_b, "H.323 peer -> SIP phone");
    assert_audio(&noise, &rec_h, "SIP phone -> H.323 peer");
    d.wait_for("no active calls", 10, |d| d.active_calls() == 0);
    if let Some(cap) = cap {
        let report = cap.check();
        assert!(h225_frames(&report) >= 4, "{report}");
    }
}

#[test]
fn busy_and_rejected_calls_map_codes_and_causes_both_ways() {
    if !available() {
        return;
    }
    let _g = serial();
    // H.323 busy (17) and unallocated number (1) -> SIP 486 and 404 at the phone.
    for (cause, status) in [(17, 486), (1, 404)] {
        let mut peer = Peer::spawn(&strs(&[
            "listen",
            "--listen",
            "127.0.0.1:0",
            "--scenario",
            "reject",
            "--cause",
            &cause.to_string(),
        ]));
        let peer_port = peer.listen_port();
        let d = daemon(&format!("h323-busy-{cause}"), free_tcp_port(), peer_port);
        let mut caller = ua_args(&d, "call", 1001);
        caller.extend(strs(&["--dial", "7300", "--no-media-check"]));
        let mut a = Ua::spawn(&d.dir, "a", &caller);
        assert_ne!(a.wait(40), 0, "a rejected call is no success");
        let closed = a.wait_event("closed", 5);
        assert_eq!(closed["status"], status, "cause {cause}: {closed}");
        let (code, seen) = peer.finish(30);
        assert_eq!(code, 0, "h323peer: {seen:?}");
    }
    // SIP 486 from the phone -> cause 17; a 403 (dialplan Hangup(21)) -> cause 21.
    let h225 = free_tcp_port();
    let d = daemon("h323-busy-in", h225, 1);
    let mut callee = ua_args(&d, "answer", 1003);
    callee.extend(strs(&["--reject", "--timeout", "60"]));
    let b = Ua::spawn(&d.dir, "b", &callee);
    b.wait_event("waiting", 15);
    d.wait_for("1003 registered", 10, |d| {
        d.ctl_json(&["show", "registrations"])
            .as_array()
            .is_some_and(|r| r.iter().any(|x| x["user"] == "1003"))
    });
    let target = format!("127.0.0.1:{h225}");
    for (to, cause) in [("1003", 17), ("2403", 21)] {
        let peer = Peer::spawn(&strs(&[
            "call",
            &target,
            "--to",
            to,
            "--scenario",
            "reject",
            "--expect-cause",
            &cause.to_string(),
            "--timeout",
            "30",
        ]));
        let (code, seen) = peer.finish(90);
        assert_eq!(code, 0, "to {to}: h323peer: {seen:?}");
        assert_eq!(
            rx(&seen, "releaseComplete").expect("release")["cause"],
            cause,
            "{seen:?}"
        );
    }
    assert!(b.event("incoming").is_some(), "the phone was called");
}
