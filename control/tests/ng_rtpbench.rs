//! rtpengine's own harness drives tandemd through the ng control protocol:
//! `rtpbench.py ng-ping`, `ng-setup` (offer/answer per call), `run` (its C
//! generator sends RTP through the relayed calls and measures loss), then
//! `ng-delete`. The harness (`../shared/anchors/rtpengine`) is copied to a
//! temporary directory at run time, where `rtpgen` is compiled (the shared
//! tree stays read-only). Skips with a message without python3, cc or the
//! anchor.

mod common;

use std::process::Command;

use common::*;

fn anchor() -> std::path::PathBuf {
    shared().join("anchors/rtpengine")
}

fn have_tools() -> bool {
    let ok = |cmd: &str| {
        Command::new(cmd)
            .arg("--version")
            .output()
            .is_ok_and(|o| o.status.success())
    };
    if !anchor().join("rtpbench.py").exists() {
        eprintln!("SKIP: {} missing", anchor().display());
        return false;
    }
    if !ok("python3") || !ok("cc") {
        eprintln!("SKIP: python3 or cc missing");
        return false;
    }
    true
}

fn bench(dir: &TempDir, args: &[&str]) -> String {
    let out = Command::new("python3")
        .arg(dir.path("rtpbench.py"))
        .args(args)
        .output()
        .expect("run rtpbench.py");
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(
        out.status.success(),
        "rtpbench.py {args:?} failed: {}\n{text}",
        String::from_utf8_lossy(&out.stderr)
    );
    text
}

#[test]
fn rtpbench_drives_tandemd_over_ng() {
    if !have_tools() {
        return;
    }
    let _guard = serial();
    let ng_port = free_udp_port();
    let mut d = Daemon::start(
        "ng-rtpbench",
        None,
        &format!("[ng]\nlisten = \"udp:127.0.0.1:{ng_port}\"\n"),
    );
    let ng = format!("127.0.0.1:{ng_port}");
    let h = TempDir::new("rtpbench-copy");
    std::fs::copy(anchor().join("rtpbench.py"), h.path("rtpbench.py")).unwrap();
    std::fs::create_dir_all(h.path("build")).unwrap();
    let cc = Command::new("cc")
        .args(["-O2", "-o"])
        .arg(h.path("build/rtpgen"))
        .arg(anchor().join("rtpgen.c"))
        .arg("-lm")
        .output()
        .unwrap();
    assert!(
        cc.status.success(),
        "compile rtpgen: {}",
        String::from_utf8_lossy(&cc.stderr)
    );

    let pong = bench(&h, &["ng-ping", "--ng", &ng]);
    assert!(pong.contains("pong"), "{pong}");

    const CALLS: usize = 10;
    let map = h.path("tandem.map");
    let map = map.to_str().unwrap();
    let setup = bench(
        &h,
        &[
            "ng-setup",
            "--ng",
            &ng,
            "--calls",
            &CALLS.to_string(),
            "--out",
            map,
        ],
    );
    assert!(setup.contains(&format!("created {CALLS} calls")), "{setup}");
    let listed = std::fs::read_to_string(map).unwrap();
    assert_eq!(
        listed.lines().filter(|l| !l.starts_with('#')).count(),
        CALLS
    );

    let pid = d.child.id().to_string();
    let run = bench(
        &h,
        &[
            "run",
            "--map",
            map,
            "--rate",
            "50",
            "--duration",
            "2",
            "--warmup",
            "0.5",
            "--nice",
            "0",
            "--gen-sleep",
            "--pid",
            &pid,
        ],
    );
    let line = run.lines().last().unwrap_or("");
    let r: serde_json::Value = serde_json::from_str(line).unwrap_or_else(|e| panic!("{e}: {run}"));
    eprintln!("rtpbench run through tandemd (ng): {line}");
    let sent = r["sent"].as_f64().or(r["sent_pps"].as_f64()).unwrap_or(0.0);
    let loss = r["loss"].as_f64().expect("loss field");
    assert!(sent > 0.0, "generator sent nothing: {line}");
    assert!(loss < 0.01, "loss {loss} through tandemd: {line}");
    assert!(r["delivered_pps"].as_f64().unwrap_or(0.0) > 0.0, "{line}");

    let workers = d.ctl_json(&["show", "workers"]);
    let out: u64 = workers
        .as_array()
        .unwrap()
        .iter()
        .map(|w| w["packets_out"].as_u64().unwrap_or(0))
        .sum();
    // 10 calls x 2 directions x 50 pps x 2.5 s.
    assert!(out >= 2000, "relayed {out} packets: {workers}");
    assert_eq!(workers[0]["backend"], "socket", "{workers}");

    let del = bench(&h, &["ng-delete", "--map", map]);
    assert!(del.contains(&format!("deleted: {CALLS} ok")), "{del}");
    let workers = d.ctl_json(&["show", "workers"]);
    d.wait_for("sessions destroyed", 5, |d| {
        d.ctl_json(&["show", "workers"])[0]["sessions"].as_u64() == Some(0)
    });
    let _ = workers;
    assert_eq!(d.terminate(), 0);
    let log = d.log_text();
    assert!(log.contains("ng stats"), "{log}");
    assert!(log.contains("\"offer\":10"), "{log}");
}

#[test]
fn ng_bad_bencode_gets_an_error_reply() {
    let ng_port = free_udp_port();
    let mut d = Daemon::start(
        "ng-bad",
        None,
        &format!("[ng]\nlisten = \"udp:127.0.0.1:{ng_port}\"\n"),
    );
    let s = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    s.set_read_timeout(Some(std::time::Duration::from_secs(3)))
        .unwrap();
    let mut buf = [0u8; 2048];
    for (msg, want) in [
        (&b"c1 d7:command4:pinge"[..], "d6:result4:ponge"),
        (
            b"c2 d7:command4:ping",
            "bencode: unexpected end of dictionary at byte 16",
        ),
        (
            b"c3 d7:command5:offer7:call-id1:xe",
            "missing or invalid key \"from-tag\"",
        ),
        (
            b"c4 d7:command6:deletee",
            "missing or invalid key \"call-id\"",
        ),
    ] {
        s.send_to(msg, ("127.0.0.1", ng_port)).unwrap();
        let (n, _) = s.recv_from(&mut buf).expect("ng reply");
        let reply = String::from_utf8_lossy(&buf[..n]).to_string();
        assert!(
            reply.starts_with(&String::from_utf8_lossy(&msg[..3]).to_string()),
            "{reply}"
        );
        assert!(reply.contains(want), "{reply}");
    }
    assert_eq!(d.terminate(), 0);
    let log = d.log_text();
    assert!(log.contains("\"errors\":3"), "{log}");
    assert!(log.contains("\"bad_bencode\":1"), "{log}");
}
