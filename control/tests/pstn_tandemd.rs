//! The PSTN in tandemd: real baresip UAs (`sipua.py`) through `tandemd` and
//! its PSTN interworking function, over a simulated E1 to the built-in
//! exchange simulator (framing, HDLC and FCS exercised, D-channel bit errors
//! injected), and over a UDP D-channel to libpri's `pri-peer` in both roles.
//!
//! Skips with a message when baresip (or, for the pri-peer tests, libpri /
//! a C compiler) is missing.

mod common;
#[path = "common/pri_peer.rs"]
mod pri_peer;

use common::*;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const PLAN: &str = "\
[default]
exten => _9X.,1,Dial(DAHDI/g1/${EXTEN:1},20)
 same => n,Hangup()
[from-pstn]
exten => _1XXX,1,Dial(SIP/${EXTEN},20)
 same => n,Hangup()
";

fn sim_pstn(extra_exchange: &str) -> String {
    format!(
        "[[pstn.span]]\nspan = 1\ngroup = 1\ncontext = \"from-pstn\"\n\
         [pstn.exchange]\ntone_ms = 400\n{extra_exchange}\n\
         [[pstn.exchange.number]]\nmatch = \"*8\"\naction = \"busy\"\n\
         [[pstn.exchange.number]]\nmatch = \"*9\"\naction = \"unallocated\"\n\
         [[pstn.exchange.number]]\nmatch = \"*\"\naction = \"loopback\"\n"
    )
}

fn wait_span_up(d: &Daemon) {
    d.wait_for("PRI span 1 D-channel up", 15, |d| {
        d.ctl_json(&["show", "spans"])
            .as_array()
            .and_then(|a| a.first().cloned())
            .is_some_and(|s| s["dchannel_up"] == true)
    });
}

/// 1001 dials `9<number>`: the call leaves over the PRI to the simulator's
/// loop-around line, and what baresip sends comes back.
fn loop_call(d: &Daemon, tag: &str) {
    let chirp = d.dir.path(&format!("chirp-{tag}.wav"));
    gen(&chirp, "chirp", 3.0, 11);
    let rec = d.dir.path(&format!("rec-{tag}.wav"));
    let mut caller = ua_args(d, "call", 1001);
    caller.extend([
        s("--dial"),
        s("95551234"),
        s("--play"),
        chirp.display().to_string(),
        s("--record"),
        rec.display().to_string(),
        s("--seconds"),
        s("4"),
    ]);
    let mut a = Ua::spawn(&d.dir, &format!("a-{tag}"), &caller);
    a.wait_event("established", 20);
    // While up: the B-channel shows the call (the status is refreshed every 100 ms).
    let busy_now = |d: &Daemon| -> (Vec<serde_json::Value>, serde_json::Value) {
        let ch = d.ctl_json(&["show", "channels"]);
        let v = ch
            .as_array()
            .map(|a| {
                a.iter()
                    .filter(|c| c["call"].is_number())
                    .cloned()
                    .collect()
            })
            .unwrap_or_default();
        (v, ch)
    };
    d.wait_for("a B-channel in use", 3, |d| !busy_now(d).0.is_empty());
    let (busy, ch) = busy_now(d);
    assert_eq!(busy.len(), 1, "{ch}");
    assert_eq!(busy[0]["called"], "5551234", "{ch}");
    assert_eq!(busy[0]["calling"], "1001", "{ch}");
    assert_eq!(busy[0]["direction"], "out", "{ch}");
    assert_eq!(a.wait(30), 0, "caller flow failed: {:?}", a.events());
    let v = analyze(&chirp, &rec);
    let med = v["block_corr_median"].as_f64().unwrap_or(0.0);
    assert!(
        v["ok"] == true && med >= 0.8,
        "{tag}: audio back from the exchange does not match: {v}"
    );
    eprintln!("{tag}: loop-around correlation {v}");
    d.wait_for("no active calls", 10, |d| d.active_calls() == 0);
    d.wait_for("B-channels idle", 10, |d| {
        d.ctl_json(&["show", "spans"])[0]["in_use"] == 0
    });
}

fn failed_call(d: &Daemon, number: &str, want: u64) {
    let mut caller = ua_args(d, "call", 1001);
    caller.extend([s("--dial"), format!("9{number}"), s("--seconds"), s("2")]);
    let mut a = Ua::spawn(&d.dir, &format!("fail-{number}"), &caller);
    let code = a.wait(30);
    assert_ne!(code, 0, "{number} should fail: {:?}", a.events());
    let closed = a.event("closed").expect("closed event");
    assert_eq!(closed["status"].as_u64(), Some(want), "{number}: {closed}");
}

#[test]
fn sim_exchange_calls_audio_busy_unallocated() {
    if !have_baresip() {
        return;
    }
    let _g = serial();
    let d = Daemon::start("pstn-sim", Some(PLAN), &sim_pstn(""));
    wait_span_up(&d);
    let (code, table) = d.ctl(&["show", "spans"]);
    assert_eq!(code, 0);
    assert!(table.contains("DCHANNEL_UP"), "{table}");
    loop_call(&d, "clean");
    failed_call(&d, "5550108", 486);
    failed_call(&d, "5550109", 404);
}

#[test]
fn sim_exchange_with_dchannel_bit_errors_still_completes() {
    if !have_baresip() {
        return;
    }
    let _g = serial();
    // About 24 flipped bits a second in TS16 each way: frames fail their
    // FCS and Q.921 recovers them.
    let d = Daemon::start(
        "pstn-ber",
        Some(PLAN),
        &sim_pstn("bit_errors_per_64k = 200"),
    );
    wait_span_up(&d);
    loop_call(&d, "ber");
    failed_call(&d, "5550108", 486);
}

// ---------------------------------------------------------------------------
// libpri's pri-peer on the D-channel (UDP transport).

struct PriPeer {
    child: Child,
    out: PathBuf,
}

impl PriPeer {
    fn spawn(exe: &PathBuf, d: &TempDir, name: &str, port: u16, args: &[&str]) -> PriPeer {
        let out = d.path(&format!("{name}.jsonl"));
        let child = pri_peer::spawn(
            Command::new(exe)
                .args(["--udp-local", &format!("127.0.0.1:{port}")])
                .args(["--linger", "0.5"])
                .args(args)
                .stdout(std::fs::File::create(&out).unwrap())
                .stderr(Stdio::null()),
        );
        PriPeer { child, out }
    }

    fn events(&self) -> Vec<serde_json::Value> {
        std::fs::read_to_string(&self.out)
            .unwrap_or_default()
            .lines()
            .filter_map(|l| serde_json::from_str(l).ok())
            .collect()
    }

    fn event(&self, ev: &str, dir: Option<&str>) -> Option<serde_json::Value> {
        self.events()
            .into_iter()
            .find(|e| e["ev"] == ev && dir.is_none_or(|d| e["dir"] == d))
    }

    fn wait_event(&self, ev: &str, secs: u64) -> serde_json::Value {
        let end = Instant::now() + Duration::from_secs(secs);
        while Instant::now() < end {
            if let Some(e) = self.event(ev, None) {
                return e;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        panic!("pri-peer: no {ev} in {secs}s: {:?}", self.events());
    }

    fn wait(&mut self, secs: u64) -> i32 {
        let end = Instant::now() + Duration::from_secs(secs);
        while Instant::now() < end {
            if let Ok(Some(st)) = self.child.try_wait() {
                return st.code().unwrap_or(-1);
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        let _ = self.child.kill();
        panic!("pri-peer did not exit: {:?}", self.events());
    }
}

impl Drop for PriPeer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn pri_daemon(name: &str, port: u16, span_extra: &str) -> Daemon {
    Daemon::start(
        name,
        Some(PLAN),
        &format!(
            "[[pstn.span]]\nspan = 1\ngroup = 1\ncontext = \"from-pstn\"\n\
             dchannel = \"udp:127.0.0.1:{port}\"\n{span_extra}\n"
        ),
    )
}

/// baresip 1001 dials 95551234 through tandemd to libpri; `hangup_by_peer`:
/// pri-peer clears after answer (cause 16), else the UA hangs up.
fn call_out_to_peer(d: &Daemon, peer: &mut PriPeer, hangup_by_peer: bool) {
    wait_span_up(d);
    // libpri settles after its own link-up (see the pri-peer README).
    std::thread::sleep(Duration::from_millis(1500));
    let mut caller = ua_args(d, "call", 1001);
    caller.extend([s("--dial"), s("95551234"), s("--seconds"), s("3")]);
    if hangup_by_peer {
        caller.push(s("--allow-remote-hangup"));
    }
    let mut a = Ua::spawn(&d.dir, "a", &caller);
    a.wait_event("established", 20);
    // pri-peer carries only the D-channel: no B-channel audio, so baresip
    // reports "no RTP received" (exit 1); the signalling is what is checked.
    let code = a.wait(30);
    let result = a.event("result").expect("result");
    assert!(
        code == 0 || result["reason"] == "no RTP received",
        "caller flow failed: {:?}",
        a.events()
    );
    let closed = a.event("closed").expect("closed");
    assert_eq!(closed["by_us"], !hangup_by_peer, "{closed}");
    let setup = peer.wait_event("setup", 5);
    assert_eq!(setup["called"], "5551234", "{setup}");
    let end = peer.wait_event("call_end", 10);
    assert_eq!(end["outcome"], "answered", "{end}");
    if !hangup_by_peer {
        // The UA's BYE became DISCONNECT 16 towards libpri.
        let disc = peer
            .event("disconnect", Some("rx"))
            .expect("DISCONNECT received");
        assert_eq!(disc["cause"], 16, "{disc}");
    }
    assert_eq!(peer.wait(30), 0, "pri-peer failed: {:?}", peer.events());
    d.wait_for("no active calls", 10, |d| d.active_calls() == 0);
}

#[test]
fn pri_peer_network_side_gets_caller_id_and_presentation() {
    if !have_baresip() {
        return;
    }
    let _g = serial();
    let Some(exe) = pri_peer::build("pri-peer") else {
        return;
    };
    let port = free_udp_port();
    let dir = TempDir::new("pri-peer-net");
    // libpri as the exchange answers and checks the calling number and the
    // configured presentation (0x21: restricted, user-provided verified).
    let mut peer = PriPeer::spawn(
        &exe,
        &dir,
        "net",
        port,
        &[
            "--role",
            "net",
            "--incoming",
            "answer",
            "--expect-calling",
            "1001",
            "--expect-pres",
            "0x21",
            "--expect-called",
            "5551234",
            "--timeout",
            "60",
        ],
    );
    let d = pri_daemon("pstn-pri-net", port, "presentation = \"restricted\"");
    call_out_to_peer(&d, &mut peer, false);
    let setup = peer.event("setup", Some("rx")).expect("setup");
    assert_eq!(setup["calling"], "1001", "{setup}");
    assert_eq!(setup["calling_pres"], "restricted", "{setup}");
    assert_eq!(setup["expectations_met"], true, "{setup}");

    // The exchange clears: the UA gets a BYE.
    let port = free_udp_port();
    let mut peer = PriPeer::spawn(
        &exe,
        &dir,
        "net2",
        port,
        &[
            "--role",
            "net",
            "--incoming",
            "answer",
            "--hangup-after",
            "1",
            "--expect-calling",
            "1001",
            "--expect-pres",
            "0x01",
            "--timeout",
            "60",
        ],
    );
    let d = pri_daemon("pstn-pri-net2", port, "");
    call_out_to_peer(&d, &mut peer, true);
    let disc = peer.event("disconnect", Some("tx")).expect("we cleared");
    assert_eq!(disc["cause"], 16, "{disc}");
}

#[test]
fn pri_peer_busy_unallocated_and_restricted_call_in() {
    if !have_baresip() {
        return;
    }
    let _g = serial();
    let Some(exe) = pri_peer::build("pri-peer") else {
        return;
    };
    let dir = TempDir::new("pri-peer-in");
    // Busy: the exchange's DISCONNECT 17 reaches the UA as 486.
    let port = free_udp_port();
    let mut peer = PriPeer::spawn(
        &exe,
        &dir,
        "busy",
        port,
        &["--role", "net", "--incoming", "busy", "--timeout", "60"],
    );
    let d = pri_daemon("pstn-pri-busy", port, "");
    wait_span_up(&d);
    std::thread::sleep(Duration::from_millis(1500));
    let mut caller = ua_args(&d, "call", 1001);
    caller.extend([s("--dial"), s("95551234"), s("--seconds"), s("2")]);
    let mut a = Ua::spawn(&d.dir, "busy-a", &caller);
    assert_ne!(a.wait(30), 0);
    let closed = a.event("closed").expect("closed");
    assert_eq!(closed["status"].as_u64(), Some(486), "{closed}");
    assert_eq!(peer.wait(30), 0, "pri-peer failed: {:?}", peer.events());
    drop(d);

    // Unallocated number: libpri clears with cause 1, the UA gets 404.
    let port = free_udp_port();
    let peer = PriPeer::spawn(
        &exe,
        &dir,
        "unallocated",
        port,
        &[
            "--role",
            "net",
            "--incoming",
            "reject",
            "--reject-cause",
            "1",
            "--timeout",
            "60",
        ],
    );
    let d = pri_daemon("pstn-pri-unalloc", port, "");
    wait_span_up(&d);
    std::thread::sleep(Duration::from_millis(1500));
    let mut caller = ua_args(&d, "call", 1001);
    caller.extend([s("--dial"), s("95550199"), s("--seconds"), s("2")]);
    let mut a = Ua::spawn(&d.dir, "unalloc-a", &caller);
    assert_ne!(a.wait(30), 0);
    let closed = a.event("closed").expect("closed");
    assert_eq!(closed["status"].as_u64(), Some(404), "{closed}");
    let disc = peer.wait_event("disconnect", 10);
    assert_eq!(disc["cause"].as_u64(), Some(1), "{disc}");
    // For cause 1 libpri clears with RELEASE COMPLETE straight after CALL
    // PROCEEDING (seen on the wire), which wants no answer, so pri-peer never
    // gets a clearing-complete event and does not exit by itself: it is
    // stopped with the daemon.
    drop(peer);
    drop(d);

    // A call in from the exchange with presentation restricted: 1002 rings
    // with an anonymous From.
    let port = free_udp_port();
    let d = pri_daemon("pstn-pri-in", port, "");
    let mut callee = ua_args(&d, "answer", 1002);
    callee.extend([s("--timeout"), s("40")]);
    let mut b = Ua::spawn(&d.dir, "b", &callee);
    b.wait_event("waiting", 15);
    d.wait_for("1002 registered", 10, |d| {
        d.ctl_json(&["show", "registrations"])
            .as_array()
            .is_some_and(|r| r.iter().any(|x| x["user"] == "1002"))
    });
    let mut peer = PriPeer::spawn(
        &exe,
        &dir,
        "in",
        port,
        &[
            "--role",
            "net",
            "--call",
            "1002",
            "--calling",
            "0215550100",
            "--calling-ton",
            "2",
            "--pres",
            "restricted",
            "--screen",
            "network",
            "--hangup-after",
            "1.5",
            "--expect",
            "answered",
            "--timeout",
            "60",
        ],
    );
    let inc = b.wait_event("incoming", 20);
    let shown = inc.to_string();
    assert!(shown.contains("anonymous"), "privacy applied: {inc}");
    assert!(!shown.contains("0215550100"), "number hidden: {inc}");
    assert_eq!(peer.wait(30), 0, "pri-peer failed: {:?}", peer.events());
    let end = peer.event("call_end", None).expect("call_end");
    assert_eq!(end["outcome"], "answered", "{end}");
    let code = b.wait(20);
    let result = b.event("result").expect("result");
    assert!(code == 0 || result["exit"] == 1, "callee: {:?}", b.events());
    let closed = b.event("closed").expect("callee closed");
    assert_eq!(closed["by_us"], false, "the exchange cleared: {closed}");
    let log = std::fs::read_to_string(d.dir.path("b.baresip.log")).unwrap_or_default();
    assert!(
        !log.contains("0215550100"),
        "the number leaked to the phone"
    );
}

#[test]
fn tandem_network_side_to_pri_peer_cpe() {
    if !have_baresip() {
        return;
    }
    let _g = serial();
    let Some(exe) = pri_peer::build("pri-peer") else {
        return;
    };
    let port = free_udp_port();
    let dir = TempDir::new("pri-peer-cpe");
    let mut peer = PriPeer::spawn(
        &exe,
        &dir,
        "cpe",
        port,
        &[
            "--role",
            "cpe",
            "--incoming",
            "answer",
            "--expect-called",
            "5551234",
            "--expect-calling",
            "1001",
            "--timeout",
            "60",
        ],
    );
    let d = pri_daemon("pstn-pri-cpe", port, "signalling = \"pri_net\"");
    call_out_to_peer(&d, &mut peer, false);
    let setup = peer.event("setup", Some("rx")).expect("setup");
    // As the network side we chose the channel: the lowest free one.
    assert_eq!(setup["channel"], 1, "{setup}");
}
