//! The `[metrics]` endpoint during a bench run: `tandemd` started with metrics on, scraped with
//! the real `curl` before and during a short `tandem-bench hold` (media both ways) and after
//! it; the call, SIP and per-worker packet counters move between scrapes, and the exposition
//! is well formed. (Here because tandem-bench's tests already locate and configure tandemd.)

use std::net::{TcpListener, UdpSocket};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

fn tandemd() -> Option<PathBuf> {
    let exe = std::env::current_exe().ok()?;
    let p = exe.parent()?.parent()?.join("tandemd");
    p.exists().then_some(p)
}

struct Daemon {
    child: Child,
    dir: PathBuf,
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if std::thread::panicking() {
            let log = std::fs::read_to_string(self.dir.join("tandemd.log")).unwrap_or_default();
            eprintln!("--- tandemd log ---\n{log}");
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn free_udp() -> u16 {
    UdpSocket::bind("127.0.0.1:0")
        .and_then(|s| s.local_addr())
        .map(|a| a.port())
        .expect("free udp port")
}

fn free_tcp() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|s| s.local_addr())
        .map(|a| a.port())
        .expect("free tcp port")
}

/// `curl -sf URL`, the body.
fn curl(url: &str) -> String {
    let out = Command::new("curl")
        .args(["-sS", "-f", "--max-time", "5", url])
        .output()
        .expect("run curl");
    assert!(
        out.status.success(),
        "curl {url}: {:?} {}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).expect("utf-8 exposition")
}

/// The value of the sample line whose name and labels are exactly `series`.
fn value(text: &str, series: &str) -> f64 {
    text.lines()
        .find_map(|l| {
            let (name, v) = l.rsplit_once(' ')?;
            (name == series).then(|| v.parse::<f64>().ok())?
        })
        .unwrap_or_else(|| panic!("no sample {series} in\n{text}"))
}

#[test]
fn metrics_counters_move_during_a_bench_run() {
    let Some(bin) = tandemd() else {
        eprintln!("SKIP: tandemd not built beside this test (cargo build -p control --release)");
        return;
    };
    if Command::new("curl").arg("--version").output().is_err() {
        eprintln!("SKIP: curl not installed (apt-get install curl)");
        return;
    }
    let sip = free_udp();
    let http = free_tcp();
    let dir = std::env::temp_dir().join(format!("tandem-metrics-test-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let lo = 36_000 + (std::process::id() % 20) as u16 * 200;
    let mut cfg = format!("[sip]\nlisten = [\"udp:127.0.0.1:{sip}\"]\nrealm = \"tandem\"\n");
    for u in 1001..=1004 {
        cfg.push_str(&format!(
            "[[sip.user]]\nname = \"{u}\"\npassword = \"tandem{u}\"\n"
        ));
    }
    cfg.push_str(&format!(
        "[dataplane]\nbackend = \"socket\"\ncores = [0]\nrtp_ports = \"{lo}-{}\"\n\
         media_ip = \"127.0.0.1\"\n[mgmt]\nsocket = \"{}\"\n[metrics]\nlisten = \"127.0.0.1:{http}\"\n",
        lo + 199,
        dir.join("tandemd.sock").display()
    ));
    std::fs::write(dir.join("tandem.toml"), cfg).unwrap();
    let child = Command::new(&bin)
        .arg("--config")
        .arg(dir.join("tandem.toml"))
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(dir.join("tandemd.log")).unwrap())
        .spawn()
        .expect("start tandemd");
    let _d = Daemon {
        child,
        dir: dir.clone(),
    };
    let url = format!("http://127.0.0.1:{http}/metrics");
    // Ready when the endpoint answers.
    let mut ready = false;
    for _ in 0..100 {
        let st = Command::new("curl")
            .args(["-s", "-f", "-o", "/dev/null", "--max-time", "1", &url])
            .status()
            .expect("run curl");
        if st.success() {
            ready = true;
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(ready, "metrics endpoint {url} never answered");

    let before = curl(&url);
    assert_eq!(value(&before, "tandem_calls_total"), 0.0);
    assert_eq!(value(&before, "tandem_calls_active"), 0.0);
    let w0 = "{worker=\"0\",core=\"0\"}";
    let pin0 = value(&before, &format!("tandem_worker_packets_in_total{w0}"));

    let bench = Command::new(env!("CARGO_BIN_EXE_tandem-bench"))
        .args(["hold", "--target", &format!("127.0.0.1:{sip}")])
        .args(["--calls", "4", "--rate", "4", "--duration", "4"])
        .args(["--quiet", "--max-time", "20"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run tandem-bench");
    // Scrape while the calls are up (placed within 1 s, held 4 s).
    std::thread::sleep(Duration::from_millis(2500));
    let during = curl(&url);
    let out = bench.wait_with_output().expect("tandem-bench finished");
    assert!(
        out.status.success(),
        "tandem-bench failed:\n{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let after = curl(&url);

    assert!(
        value(&during, "tandem_calls_active") >= 1.0,
        "no active call during the run:\n{during}"
    );
    assert!(value(&during, "tandem_registrations") >= 4.0);
    assert!(value(&during, "tandem_calls_total") >= 1.0);
    assert_eq!(value(&after, "tandem_calls_total"), 4.0, "{after}");
    assert_eq!(value(&after, "tandem_calls_active"), 0.0, "{after}");
    for c in ["tandem_sip_received_total", "tandem_sip_sent_total"] {
        assert!(
            value(&during, c) > value(&before, c) && value(&after, c) > value(&during, c),
            "{c} did not move"
        );
    }
    let pin1 = value(&during, &format!("tandem_worker_packets_in_total{w0}"));
    let pin2 = value(&after, &format!("tandem_worker_packets_in_total{w0}"));
    let pout2 = value(&after, &format!("tandem_worker_packets_out_total{w0}"));
    assert!(
        pin1 > pin0 && pin2 > pin1,
        "packets_in {pin0} -> {pin1} -> {pin2}"
    );
    // 4 calls x 2 legs x 4 s of 20 ms packets, relayed: most of 1600 in and out.
    assert!(
        pin2 > 800.0 && pout2 > 800.0,
        "packets in {pin2} out {pout2}"
    );
    assert!(after.contains("tandem_worker_drops_total{worker=\"0\",reason=\"malformed\"}"));
    assert!(after.contains("tandem_build_info{version=\""));

    // Anything but GET /metrics is refused with the right status.
    let code = |args: &[&str]| {
        let out = Command::new("curl")
            .args([
                "-s",
                "-o",
                "/dev/null",
                "-w",
                "%{http_code}",
                "--max-time",
                "5",
            ])
            .args(args)
            .output()
            .expect("run curl");
        String::from_utf8_lossy(&out.stdout).to_string()
    };
    assert_eq!(code(&[&format!("http://127.0.0.1:{http}/nope")]), "404");
    assert_eq!(code(&["-X", "POST", &url]), "405");
}
