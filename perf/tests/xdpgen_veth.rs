//! `tandem-xdpgen` through Tandem's xdp backend (in-kernel fast path on) on a
//! veth pair between two network namespaces each test creates: a short paced
//! run in which every
//! packet of every stream comes back, once, in order, at its stream's port;
//! once with frames from the AF_XDP tx ring, once with live frames
//! (`BPF_PROG_TEST_RUN` + `XDP_TX`, skipped where the kernel lacks them).
//! Runs the two binaries as `ip netns exec` children (as
//! `scripts/relay-bench-veth.sh` does). Skips with a message without root,
//! iproute2, network namespaces or XDP.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};

const CALLS: usize = 50;
const RATE: u32 = 20_000;

// The namespaces of dataplane's AF_XDP tests: `relay` holds xr0 (10.231.0.2),
// `peer` holds xp0 (10.231.0.1), where the generator runs.
#[path = "../../dataplane/tests/xdp_netns/mod.rs"]
mod xdp_netns;
use xdp_netns::Netns;

/// Kills the relay child on drop.
struct Relay(Child);

impl Drop for Relay {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn every_packet_through_the_xdp_backend_in_order() {
    through_the_xdp_backend("gen", "xsk");
}

#[test]
fn every_live_frame_through_the_xdp_backend_in_order() {
    through_the_xdp_backend("genlive", "live");
}

fn through_the_xdp_backend(tag: &str, tx: &str) {
    let Some(ns) = Netns::create(tag) else {
        return;
    };
    let dir = std::env::temp_dir().join(format!("txg-{tag}-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let map = dir.join("calls.map");
    let calls = CALLS.to_string();
    let mut relay = Relay(
        Command::new("ip")
            .args([
                "netns",
                "exec",
                &ns.relay,
                env!("CARGO_BIN_EXE_tandem-relay-bench"),
            ])
            .args([
                "relay",
                "--backend",
                "xdp",
                "--calls",
                &calls,
                "--lifetime",
                "20",
            ])
            .args(["--ip", "10.231.0.2", "--gen-ip", "10.231.0.1"])
            .args(["--xdp-interface", "xr0", "--map"])
            .arg(&map)
            // The in-kernel fast path, handing streams over while the
            // generator sends (order must hold across the hand-over).
            .env("TANDEM_XDP_OFFLOAD", "1")
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn tandem-relay-bench"),
    );
    let mut line = String::new();
    let stdout = relay.0.stdout.take().expect("relay stdout");
    let _ = BufReader::new(stdout).read_line(&mut line);
    if !line.starts_with("ready") {
        let mut err = String::new();
        if let Some(mut e) = relay.0.stderr.take() {
            let _ = std::io::Read::read_to_string(&mut e, &mut err);
        }
        eprintln!(
            "skipped: the xdp backend did not start here: {}",
            err.trim()
        );
        return;
    }
    assert!(line.contains("backend=Xdp"), "{line}");
    let mac_out = Command::new("ip")
        .args(["-n", &ns.relay, "-o", "link", "show", "xr0"])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&mac_out.stdout).to_string();
    let mac = text
        .split_whitespace()
        .skip_while(|w| *w != "link/ether")
        .nth(1)
        .expect("xr0 MAC")
        .to_owned();

    let out = Command::new("ip")
        .args([
            "netns",
            "exec",
            &ns.peer,
            env!("CARGO_BIN_EXE_tandem-xdpgen"),
        ])
        .args(["run", "--interface", "xp0", "--relay-mac", &mac, "--map"])
        .arg(&map)
        .args(["--rate", &RATE.to_string(), "--duration", "1"])
        .args([
            "--warmup",
            "0.3",
            "--drain",
            "0.5",
            "--tx",
            tx,
            "--catch-up",
            "20000",
        ])
        .output()
        .expect("run tandem-xdpgen");
    drop(relay);
    let _ = std::fs::remove_dir_all(&dir);
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    if tx == "live" && !out.status.success() && stderr.contains("BPF_PROG_TEST_RUN") {
        eprintln!("skipped: no live frames here: {}", stderr.trim());
        return;
    }
    assert!(out.status.success(), "generator failed: {stderr}");
    let j: serde_json::Value = serde_json::from_str(stdout.trim()).expect("one JSON line");
    assert_eq!(j["tx"], tx, "{j}");
    let n = |k: &str| j[k].as_u64().unwrap_or_else(|| panic!("{k} in {j}"));
    assert_eq!(j["streams"], 2 * CALLS, "{j}");
    let sent = n("sent");
    assert!(
        sent >= u64::from(RATE) * 9 / 10,
        "paced sending: {sent} in 1 s at {RATE}/s"
    );
    // Paced, not flat out (the live generator paces in its XDP program;
    // the catch-up of 1 s of frames rides out a descheduled sender).
    assert!(
        sent <= u64::from(RATE) * 11 / 10,
        "paced sending: {sent} in 1 s at {RATE}/s"
    );
    assert_eq!(n("received"), sent, "every packet delivered: {j}");
    assert_eq!(n("reordered"), 0, "{j}");
    assert_eq!(n("duplicates"), 0, "{j}");
    assert_eq!(n("misdelivered"), 0, "{j}");
    assert_eq!(n("foreign"), 0, "{j}");
    assert_eq!(n("streams_with_loss"), 0, "{j}");
    assert!(j["lat_us"]["p50"].as_f64().is_some(), "{j}");
}
