//! `tandem-bench hold` against a real `tandemd` (embedded-default users and dialplan on a free
//! port): every call is set up, carries media both ways without loss, scores a plausible MOS,
//! and the JSON report and SVG chart are written.
//!
//! `tandemd` is the binary `cargo test --workspace` builds beside this test (target/<profile>/);
//! when only `-p perf` was built, the test says so and skips.

use std::net::UdpSocket;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

fn tandemd() -> Option<PathBuf> {
    let exe = std::env::current_exe().ok()?;
    let profile_dir = exe.parent()?.parent()?;
    let p = profile_dir.join("tandemd");
    p.exists().then_some(p)
}

struct Daemon {
    child: Child,
    port: u16,
    dir: PathBuf,
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if std::thread::panicking() {
            let log = std::fs::read_to_string(self.dir.join("tandemd.log")).unwrap_or_default();
            let tail: String = log.lines().rev().take(40).collect::<Vec<_>>().join("\n");
            eprintln!("--- tandemd log (last lines, newest first) ---\n{tail}");
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn start(bin: &PathBuf) -> Daemon {
    let port = UdpSocket::bind("127.0.0.1:0")
        .and_then(|s| s.local_addr())
        .map(|a| a.port())
        .expect("free port");
    let dir = std::env::temp_dir().join(format!("tandem-bench-test-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let lo = 34_000 + (std::process::id() % 25) as u16 * 200;
    let mut cfg = format!("[sip]\nlisten = [\"udp:127.0.0.1:{port}\"]\nrealm = \"tandem\"\n");
    // The embedded default's users and passwords; the embedded dialplan (no [dialplan] file).
    for u in 1001..=1004 {
        cfg.push_str(&format!(
            "[[sip.user]]\nname = \"{u}\"\npassword = \"tandem{u}\"\n"
        ));
    }
    cfg.push_str(&format!(
        "[dataplane]\nbackend = \"socket\"\ncores = [0]\nrtp_ports = \"{lo}-{}\"\n\
         media_ip = \"127.0.0.1\"\n[mgmt]\nsocket = \"{}\"\n",
        lo + 199,
        dir.join("tandemd.sock").display()
    ));
    std::fs::write(dir.join("tandem.toml"), cfg).unwrap();
    let child = Command::new(bin)
        .arg("--config")
        .arg(dir.join("tandem.toml"))
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(dir.join("tandemd.log")).unwrap())
        .spawn()
        .expect("start tandemd");
    // Ready when the SIP port answers (an OPTIONS gets any response).
    let probe = UdpSocket::bind("127.0.0.1:0").unwrap();
    probe
        .set_read_timeout(Some(Duration::from_millis(200)))
        .unwrap();
    let opts = format!(
        "OPTIONS sip:127.0.0.1:{port} SIP/2.0\r\nVia: SIP/2.0/UDP {};branch=z9hG4bKprobe\r\n\
         From: <sip:probe@127.0.0.1>;tag=p\r\nTo: <sip:127.0.0.1>\r\nCall-ID: probe\r\n\
         CSeq: 1 OPTIONS\r\nMax-Forwards: 70\r\nContent-Length: 0\r\n\r\n",
        probe.local_addr().unwrap()
    );
    let d = Daemon { child, port, dir };
    for _ in 0..100 {
        let _ = probe.send_to(opts.as_bytes(), ("127.0.0.1", port));
        let mut b = [0u8; 2048];
        if probe.recv_from(&mut b).is_ok() {
            return d;
        }
    }
    panic!("tandemd did not answer on port {port}");
}

fn hold(d: &Daemon, codec: &str) -> serde_json::Value {
    let json = d.dir.join(format!("{codec}.json"));
    let chart = d.dir.join(format!("{codec}.svg"));
    let out = Command::new(env!("CARGO_BIN_EXE_tandem-bench"))
        .args(["hold", "--target", &format!("127.0.0.1:{}", d.port)])
        .args([
            "--calls",
            "10",
            "--rate",
            "5",
            "--duration",
            "3",
            "--codec",
            codec,
        ])
        .args([
            "--pid",
            &d.child.id().to_string(),
            "--quiet",
            "--max-time",
            "30",
        ])
        .arg("--json")
        .arg(&json)
        .arg("--chart")
        .arg(&chart)
        .output()
        .expect("run tandem-bench");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "tandem-bench {codec} failed ({:?}):\n{stdout}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("MOS"), "{stdout}");
    let svg = std::fs::read_to_string(&chart).expect("chart written");
    assert!(svg.starts_with("<?xml") && svg.trim_end().ends_with("</svg>"));
    assert!(svg.contains("<svg xmlns=\"http://www.w3.org/2000/svg\""));
    assert_eq!(svg.matches("<polyline").count(), 4, "{svg}");
    if Command::new("xmllint").arg("--version").output().is_ok() {
        let st = Command::new("xmllint")
            .args(["--noout"])
            .arg(&chart)
            .status()
            .unwrap();
        assert!(st.success(), "xmllint rejects the chart");
    }
    let text = std::fs::read_to_string(&json).expect("json written");
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("report JSON: {e}\n{text}"))
}

fn check(v: &serde_json::Value, codec: &str, min_mos: f64) {
    let n = |k: &str| {
        v[k].as_f64()
            .unwrap_or_else(|| panic!("no number {k} in {v}"))
    };
    assert_eq!(v["mode"], "hold");
    assert_eq!(v["codec"], codec);
    assert_eq!(n("attempts"), 10.0);
    assert_eq!(n("answered"), 10.0, "{}", v["failures_by_code"]);
    assert_eq!(n("failed"), 0.0);
    assert_eq!(n("completed"), 10.0);
    assert!(
        n("max_concurrent") >= 5.0,
        "max_concurrent {}",
        v["max_concurrent"]
    );
    assert!(n("attempts_per_s") > 3.0 && n("attempts_per_s") < 7.0);
    let setup = &v["setup_ms"];
    assert!(setup["p50"].as_f64().unwrap() > 0.0);
    assert!(setup["p99"].as_f64().unwrap() >= setup["p50"].as_f64().unwrap());
    let m = &v["media"];
    // 10 calls x 2 legs (caller and callee, both bench users), 3 s of 20 ms packets each way.
    assert_eq!(m["streams"], 20);
    let expected = m["expected"].as_f64().unwrap();
    // 150 packets per stream when the sender keeps time; a starved sender on a loaded machine
    // skips rather than bursts, so ask for two thirds.
    assert!(expected > 20.0 * 100.0, "expected {expected}");
    assert!(
        m["loss_pct"].as_f64().unwrap() < 0.5,
        "loss {}",
        m["loss_pct"]
    );
    assert!(m["delay_ms_p50"].as_f64().unwrap() < 20.0);
    let streams = v["streams"].as_array().unwrap();
    assert_eq!(streams.len(), 20);
    assert!(streams.iter().all(|s| s["received"].as_u64().unwrap() > 75));
    let mos = v["quality"]["mos"].as_f64().unwrap();
    assert!(mos > min_mos && mos <= 4.5, "MOS {mos}");
    assert!(v["quality"]["r_factor"].as_f64().unwrap() > 0.0);
    let cpu = &v["cpu"];
    assert!(cpu["per_core_mean_pct"].is_array(), "{cpu}");
    assert!(v["series"].as_array().unwrap().len() >= 3);
}

#[test]
fn hold_pcmu_and_g729_through_tandemd() {
    let Some(bin) = tandemd() else {
        eprintln!(
            "SKIP: tandemd not built beside this test (run `cargo build -p control --release` \
             or the workspace tests)"
        );
        return;
    };
    let d = start(&bin);
    let pcmu = hold(&d, "pcmu");
    check(&pcmu, "pcmu", 4.0);
    let g729 = hold(&d, "g729");
    // G.729A's equipment impairment (Ie 11) caps it near 4.1.
    check(&g729, "g729", 3.8);
    assert!(pcmu["quality"]["mos"].as_f64() > g729["quality"]["mos"].as_f64());
}
