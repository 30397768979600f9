//! `AGI()` inside real calls through `tandemd`, against a FastAGI server written with pyst2
//! (PyPI), a library no one here wrote (`tests/peers/agi_route.py`).
//!
//! - 1001 (baresip) calls 800 → `AGI(agi://127.0.0.1:PORT/route,first)`: the script answers,
//!   GET DATA reads the digits baresip sends as RFC 4733 events, SET VARIABLE TARGET to them;
//!   the script returns and the plan does `Dial(SIP/${TARGET},20)`; 1002 answers and audio
//!   flows. The `agi_*` environment pyst2 received must carry Asterisk's names and values.
//! - An unreachable AGI server: `${AGISTATUS}` FAILURE, a log line, and the plan goes on.
//! - The caller hangs up while the script waits for a digit: the script reads `HANGUP`, and
//!   a later command is refused as on a dead channel.
//!
//! Skips with a message when baresip, python3 or pyst2 is missing.

mod common;

use common::*;
use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};

/// Every variable Asterisk's res_agi sends to a FastAGI script with one argument.
const ASTERISK_AGI_VARS: [&str; 23] = [
    "agi_network",
    "agi_network_script",
    "agi_request",
    "agi_channel",
    "agi_language",
    "agi_type",
    "agi_uniqueid",
    "agi_version",
    "agi_callerid",
    "agi_calleridname",
    "agi_callingpres",
    "agi_callingani2",
    "agi_callington",
    "agi_callingtns",
    "agi_dnid",
    "agi_rdnis",
    "agi_context",
    "agi_extension",
    "agi_priority",
    "agi_enhanced",
    "agi_accountcode",
    "agi_threadid",
    "agi_arg_1",
];

fn have_pyst2() -> bool {
    let ok = Command::new("python3")
        .args(["-c", "import asterisk.agi"])
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if !ok {
        eprintln!("SKIP: python3 with pyst2 not available (scripts/test.sh installs pyst2)");
    }
    ok
}

/// The pyst2 FastAGI server serving `conns` connections; returns it and its port.
struct AgiServer {
    child: Child,
    port: u16,
}

impl AgiServer {
    fn start(out_dir: &std::path::Path, conns: u32) -> AgiServer {
        let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/peers/agi_route.py");
        let mut child = Command::new("python3")
            .arg(script)
            .arg(out_dir)
            .arg(conns.to_string())
            .stdout(Stdio::piped())
            .spawn()
            .expect("spawn python3 agi_route.py");
        let mut line = String::new();
        BufReader::new(child.stdout.take().expect("stdout"))
            .read_line(&mut line)
            .expect("port line");
        let port = line.trim().parse().expect("AGI server port");
        AgiServer { child, port }
    }

    /// Waits for the server to serve all its connections.
    fn wait(&mut self, secs: u64) {
        for _ in 0..secs * 10 {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(std::time::Duration::from_millis(100));
        }
        panic!("the AGI server did not finish in {secs} s");
    }
}

impl Drop for AgiServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// What the script wrote about its connection (`<script>.json`).
fn report(dir: &TempDir, name: &str) -> serde_json::Value {
    let p = dir.path(&format!("{name}.json"));
    let text = std::fs::read_to_string(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}: {text}", p.display()))
}

fn start_callee(d: &Daemon, extra: &[String]) -> Ua {
    let mut callee = ua_args(d, "answer", 1002);
    callee.extend(extra.iter().cloned());
    callee.extend([s("--timeout"), s("40")]);
    let b = Ua::spawn(&d.dir, "b", &callee);
    b.wait_event("waiting", 15);
    d.wait_for("1002 registered", 10, |d| {
        d.ctl_json(&["show", "registrations"])
            .as_array()
            .is_some_and(|r| r.iter().any(|x| x["user"] == "1002"))
    });
    b
}

#[test]
fn agi_script_reads_dtmf_sets_target_and_the_plan_dials_it() {
    if !have_baresip() || !have_pyst2() {
        return;
    }
    let _g = serial();
    let tmp = TempDir::new("agi-route-server");
    let mut server = AgiServer::start(&tmp.0, 1);
    let url = format!("agi://127.0.0.1:{}/route", server.port);
    let plan = format!(
        "[default]\n\
         exten => 800,1,AGI({url},first)\n \
         same => n,GotoIf($[\"${{AGISTATUS}}\" = \"SUCCESS\"]?dial)\n \
         same => n,Hangup(21)\n \
         same => n(dial),Dial(SIP/${{TARGET}},20)\n \
         same => n,Hangup()\n"
    );
    let d = Daemon::start("agi-route", Some(&plan), "");
    let chirp = d.dir.path("chirp.wav");
    gen(&chirp, "chirp", 3.0, 5);
    let rec_a = d.dir.path("rec_a.wav");
    let mut b = start_callee(&d, &[s("--play"), chirp.display().to_string()]);

    let mut caller = ua_args(&d, "call", 1001);
    caller.extend([s("--dial"), s("800"), s("--dtmf"), s("1002")]);
    caller.extend([s("--dtmf-delay"), s("1.0"), s("--seconds"), s("8")]);
    caller.extend([s("--record"), rec_a.display().to_string()]);
    let mut a = Ua::spawn(&d.dir, "a", &caller);
    a.wait_event("established", 20);
    let sent = a.wait_event("dtmf_sent", 10);
    assert_eq!(sent["ok"], true, "{sent}");
    // The plan dials the digits the script read: 1002 gets the call.
    b.wait_event("established", 15);
    assert_eq!(a.wait(30), 0, "caller: {:?}", a.events());
    b.wait(15);
    server.wait(10);

    let v = report(&tmp, "route");
    assert!(v.get("error").is_none(), "script failed: {v}");
    assert_eq!(v["digits"], "1002", "{v}");
    assert_eq!(v["target_back"], "1002", "{v}");
    assert_eq!(
        v["status_after_answer"], 6,
        "CHANNEL STATUS after ANSWER is Up: {v}"
    );

    let env = v["env"].as_object().expect("env");
    let mut names: Vec<&str> = env.keys().map(String::as_str).collect();
    names.sort_unstable();
    let mut want = ASTERISK_AGI_VARS.to_vec();
    want.sort_unstable();
    assert_eq!(names, want, "agi_* names must be Asterisk's");
    let port = server.port;
    for (k, val) in [
        ("agi_network", "yes"),
        ("agi_network_script", "route"),
        ("agi_request", &*format!("agi://127.0.0.1:{port}/route")),
        ("agi_language", "en"),
        ("agi_type", "SIP"),
        ("agi_callerid", "1001"),
        ("agi_dnid", "800"),
        ("agi_rdnis", "unknown"),
        ("agi_context", "default"),
        ("agi_extension", "800"),
        ("agi_priority", "1"),
        ("agi_enhanced", "0.0"),
        ("agi_arg_1", "first"),
    ] {
        assert_eq!(env[k], val, "{k}: {v}");
    }
    let channel = env["agi_channel"].as_str().unwrap_or_default();
    assert!(channel.starts_with("SIP/1001-"), "agi_channel {channel}");
    let uniqueid = env["agi_uniqueid"].as_str().unwrap_or_default();
    assert!(
        uniqueid
            .split_once('.')
            .is_some_and(|(s, n)| { s.parse::<u64>().is_ok() && n.parse::<u64>().is_ok() }),
        "agi_uniqueid {uniqueid} is Asterisk's seconds.sequence"
    );

    // Audio after the bridge: the callee's chirp reaches the caller.
    let v = analyze(&chirp, &rec_a);
    let med = v["block_corr_median"].as_f64().unwrap_or(0.0);
    assert!(
        v["ok"] == true && med >= 0.8,
        "callee to caller audio after AGI: {v}"
    );
    let log = d.log_text();
    assert!(log.contains("AGI agi://127.0.0.1"), "{log}");
    assert!(log.contains("ended after"), "{log}");
}

#[test]
fn unreachable_agi_server_fails_and_caller_hangup_reaches_the_script() {
    if !have_baresip() || !have_pyst2() {
        return;
    }
    let _g = serial();
    let tmp = TempDir::new("agi-hangup-server");
    let server = AgiServer::start(&tmp.0, 1);
    // A port nobody listens on: bind, note, close.
    let dead = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let plan = format!(
        "[default]\n\
         exten => 801,1,AGI(agi://127.0.0.1:{dead}/nobody)\n \
         same => n,GotoIf($[\"${{AGISTATUS}}\" = \"FAILURE\"]?on)\n \
         same => n,Hangup(21)\n \
         same => n(on),Dial(SIP/1002,20)\n\
         exten => 802,1,AGI(agi://127.0.0.1:{}/hangup)\n \
         same => n,Hangup()\n",
        server.port
    );
    let mut server = server;
    let d = Daemon::start("agi-fail", Some(&plan), "");

    // Unreachable: the plan goes on to Dial 1002.
    let mut b = start_callee(&d, &[]);
    let mut caller = ua_args(&d, "call", 1001);
    caller.extend([s("--dial"), s("801"), s("--seconds"), s("2")]);
    let mut a = Ua::spawn(&d.dir, "a", &caller);
    b.wait_event("established", 20);
    assert_eq!(a.wait(20), 0, "caller: {:?}", a.events());
    b.wait(15);
    let log = d.log_text();
    assert!(
        log.contains(&format!("AGI agi://127.0.0.1:{dead}/nobody failed"))
            && log.contains("AGISTATUS=FAILURE"),
        "{log}"
    );

    // The caller hangs up while the script waits for a digit.
    let mut caller = ua_args(&d, "call", 1001);
    caller.extend([s("--dial"), s("802"), s("--seconds"), s("2")]);
    caller.push(s("--no-media-check"));
    let mut a = Ua::spawn(&d.dir, "a2", &caller);
    a.wait_event("established", 20);
    a.wait(20);
    server.wait(15);
    let v = report(&tmp, "hangup");
    assert!(v.get("error").is_none(), "script failed: {v}");
    assert_eq!(v["lines"][0], "HANGUP", "{v}");
    assert_eq!(v["lines"][1], "200 result=-1", "{v}");
    assert!(
        v["after_hangup"]
            .as_str()
            .is_some_and(|l| l.starts_with("511 ")),
        "a command after the hangup is refused: {v}"
    );
    d.wait_for("no active calls", 10, |d| d.active_calls() == 0);
}
