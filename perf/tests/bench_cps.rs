//! `tandem-bench cps`: tandemd (B2BUA, no media) and Kamailio 5.6 (stateful proxy), each
//! started by the bench on free loopback ports, take a short closed-loop run of
//! INVITE/200/ACK/BYE calls between registered bench users; every call completes on both and
//! the summary prints each rate and the ratio.
//!
//! The full measurement (20 000 calls per target) runs with `TANDEM_BENCH_FULL=1`.
//! Kamailio comes from Debian (`apt-get install kamailio`); without it only tandemd runs.

use std::path::{Path, PathBuf};
use std::process::Command;

fn tandemd() -> Option<PathBuf> {
    let exe = std::env::current_exe().ok()?;
    let p = exe.parent()?.parent()?.join("tandemd");
    p.exists().then_some(p)
}

#[test]
fn cps_tandemd_and_kamailio_complete_every_call() {
    let Some(bin) = tandemd() else {
        eprintln!("SKIP: tandemd not built beside this test (cargo build -p control --release)");
        return;
    };
    let kamailio = Path::new("/usr/sbin/kamailio");
    let against = if kamailio.exists() {
        "tandemd,kamailio"
    } else {
        eprintln!("SKIP (kamailio part): /usr/sbin/kamailio absent (apt-get install kamailio)");
        "tandemd"
    };
    let full = std::env::var_os("TANDEM_BENCH_FULL").is_some();
    let (calls, window) = if full { (20_000, 100) } else { (300, 20) };
    let json = std::env::temp_dir().join(format!("tandem-cps-{}.json", std::process::id()));
    let out = Command::new(env!("CARGO_BIN_EXE_tandem-bench"))
        .args(["cps", "--against", against, "--quiet", "--max-time", "120"])
        .args([
            "--calls",
            &calls.to_string(),
            "--window",
            &window.to_string(),
        ])
        .arg("--tandemd")
        .arg(&bin)
        .arg("--json")
        .arg(&json)
        .output()
        .expect("run tandem-bench cps");
    let stdout = String::from_utf8_lossy(&out.stdout);
    eprintln!("{stdout}");
    assert!(
        out.status.success(),
        "tandem-bench cps failed ({:?}):\n{stdout}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    let text = std::fs::read_to_string(&json).expect("json written");
    let _ = std::fs::remove_file(&json);
    let v: serde_json::Value = serde_json::from_str(&text).expect("cps JSON");
    let rs = v.as_array().expect("one result per target");
    assert_eq!(rs.len(), against.split(',').count());
    for r in rs {
        let t = r["target"].as_str().unwrap();
        assert_eq!(r["attempts"], calls, "{t}: {r}");
        assert_eq!(r["answered"], calls, "{t}: {r}");
        assert_eq!(r["failed"], 0, "{t}: {r}");
        assert_eq!(
            r["completed"], calls,
            "{t}: every call hung up with BYE/200: {r}"
        );
        // The CPU columns are there (null when a short run used less than a clock tick).
        for k in [
            "setups_per_server_cpu_s",
            "setups_per_busiest_cpu_s",
            "server_busiest_pct",
            "bench_cpu_pct",
            "anomalies",
            "retransmissions",
        ] {
            assert!(r.get(k).is_some(), "{t}: no {k}: {r}");
        }
        let cps = r["setups_per_s"].as_f64().unwrap();
        assert!(cps > 20.0, "{t}: {cps} setups/s");
        assert!(stdout.contains(&format!("{t:9} ")), "{stdout}");
        assert!(stdout.contains("setups per server CPU-second"), "{stdout}");
    }
    if rs.len() == 2 {
        assert!(stdout.contains("ratio tandemd / kamailio: "), "{stdout}");
        for r in rs {
            let ratio = r["ratios"]["setups_per_s"].as_f64().unwrap();
            assert!(ratio > 0.0, "{r}");
        }
    }
}
