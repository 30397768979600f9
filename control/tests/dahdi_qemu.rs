//! Tandem's DAHDI backend against a real DAHDI kernel: boots the
//! `../shared/peers/dahdi-qemu` guest (a Debian kernel with dahdi-dkms, two
//! cross-connected E1-like `dahdi_dynamic_loc` spans) and runs in it
//!
//! - `pri-peer --role net --dahdi 16` (libpri, the exchange) on span 1,
//! - `tandem-dahdi-probe call --dchan 47` (our Q.921/Q.931, user side, over
//!   `drivers::dahdi::Channel`) on span 2, which calls 5551234, writes an
//!   A-law rising chirp on the B-channel the exchange assigned and clears,
//! - `tandem-dahdi-probe listen` on span 1's B-channels, which checks the
//!   chirp arrived intact on that timeslot and answers with a falling chirp.
//!
//! Asserts: the D-channel came up through the kernel's HDLC/FCS (SABME/UA
//! both ways), SETUP → CONNECT, both chirps octet-exact (correlation 1),
//! RELEASE with cause 16 and libpri's `answered` outcome.
//!
//! Slow (a guest boot: 5–50 s under TCG, then ~10 s), so it runs only with
//! `CI=true` or `TANDEM_DAHDI_QEMU=1`, as root (the rig installs packages and
//! builds DKMS modules on its first run). Skips with a message otherwise.

use std::path::Path;
use std::process::Command;

use serde_json::Value;

const RIG: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../../shared/peers/dahdi-qemu/run-in-guest.sh"
);

/// The guest script (busybox sh). The listener goes first: it must hold
/// span 1's B-channels before any audio flows.
const GUEST: &str = r#"
tandem-dahdi-probe listen --chans 1-15,17-31 --block 400 --timeout 60 >/tmp/listen.log 2>&1 &
lis=$!
i=0
while ! grep -q '"ev":"listening"' /tmp/listen.log && [ $i -lt 300 ]; do sleep 0.1; i=$((i+1)); done
pri-peer --role net --dahdi 16 --incoming answer --expect-called 5551234 --expect-calling 2000 \
	--expect-in answered --timeout 60 --linger 1 >/tmp/net.log 2>&1 &
net=$!
tandem-dahdi-probe call --dchan 47 --bchan-base 31 --called 5551234 --calling 2000 \
	--timeout 60 >/tmp/cpe.log 2>&1; cpe=$?
wait $lis; lisrc=$?
wait $net; netrc=$?
sed 's/^/cpe /' /tmp/cpe.log
sed 's/^/listen /' /tmp/listen.log
sed 's/^/net /' /tmp/net.log
echo "status cpe=$cpe listen=$lisrc net=$netrc"
[ $cpe = 0 ] && [ $lisrc = 0 ] && [ $netrc = 0 ]
"#;

fn enabled() -> Result<(), String> {
    let ci = std::env::var("CI").is_ok_and(|v| v == "true");
    let opt_in = std::env::var("TANDEM_DAHDI_QEMU").is_ok_and(|v| !v.is_empty() && v != "0");
    if !ci && !opt_in {
        return Err("slow qemu test; runs with CI=true or TANDEM_DAHDI_QEMU=1".into());
    }
    if !Path::new(RIG).exists() {
        return Err(format!("{RIG} not found"));
    }
    let uid = Command::new("id")
        .arg("-u")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_default();
    if uid != "0" {
        return Err(format!("needs root (uid {uid:?}) to prepare the qemu rig"));
    }
    // Idempotent: under a second once packages, modules and kernel are there.
    let prep = Command::new(RIG)
        .arg("--prepare")
        .output()
        .map_err(|e| format!("{RIG}: {e}"))?;
    if !prep.status.success() {
        let err = String::from_utf8_lossy(&prep.stderr);
        let tail: Vec<&str> = err.lines().rev().take(8).collect();
        return Err(format!(
            "qemu rig setup impossible here ({}):\n{}",
            prep.status,
            tail.into_iter().rev().collect::<Vec<_>>().join("\n")
        ));
    }
    Ok(())
}

/// JSON events of one process (`who` = cpe, listen or net).
fn events(out: &str, who: &str) -> Vec<Value> {
    let prefix = format!("{who} ");
    out.lines()
        .filter_map(|l| l.strip_prefix(&prefix))
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect()
}

fn find<'a>(ev: &'a [Value], name: &str) -> Vec<&'a Value> {
    ev.iter().filter(|e| e["ev"] == name).collect()
}

fn frame<'a>(ev: &'a [Value], dir: &str, kind: &str) -> Option<&'a Value> {
    ev.iter()
        .find(|e| e["ev"] == "frame" && e["dir"] == dir && e["kind"] == kind)
}

fn q931<'a>(ev: &'a [Value], dir: &str, msg: &str) -> Option<&'a Value> {
    ev.iter()
        .find(|e| e["ev"] == "frame" && e["dir"] == dir && e["q931"] == msg)
}

#[test]
fn cpe_on_a_real_dahdi_span_calls_libpri_and_audio_crosses_intact() {
    if let Err(why) = enabled() {
        eprintln!("SKIP dahdi_qemu: {why}");
        return;
    }
    let dir = std::env::temp_dir().join(format!("tandem-dahdi-qemu-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let script = dir.join("call.sh");
    std::fs::write(&script, GUEST).unwrap();
    let started = std::time::Instant::now();
    let out = Command::new(RIG)
        .args(["--no-install", "--timeout", "240", "--file"])
        .arg(env!("CARGO_BIN_EXE_tandem-dahdi-probe"))
        .arg("--file")
        .arg(&script)
        .args(["--", "sh", "/opt/call.sh"])
        .output()
        .expect("run-in-guest.sh");
    let _ = std::fs::remove_dir_all(&dir);
    let stdout = String::from_utf8_lossy(&out.stdout).to_string();
    let stderr = String::from_utf8_lossy(&out.stderr).to_string();
    let rig_times = stderr
        .lines()
        .filter(|l| l.contains("guest up") || l.contains("exit status"))
        .collect::<Vec<_>>()
        .join("\n");
    eprintln!(
        "dahdi_qemu: {:.1} s wall\n{rig_times}",
        started.elapsed().as_secs_f64()
    );
    let ctx = format!("--- guest output:\n{stdout}\n--- rig:\n{stderr}");
    assert_ne!(
        out.status.code(),
        Some(125),
        "the qemu rig failed (not our binary)\n{ctx}"
    );
    let cpe = events(&stdout, "cpe");
    let lis = events(&stdout, "listen");
    let net = events(&stdout, "net");

    // Our D-channel is a real dchan= channel: HDLC with FCS in the kernel.
    let ch = find(&cpe, "dahdi_channel");
    assert_eq!(ch.len(), 1, "{ctx}");
    assert_eq!(
        (&ch[0]["channel"], &ch[0]["span"], &ch[0]["sigtype"]),
        (&Value::from(47), &Value::from(2), &Value::from("0x380")),
        "{ctx}"
    );
    // Link establishment both ways through the kernel's HDLC/FCS path.
    let ours = frame(&cpe, "tx", "SABME").is_some() && frame(&cpe, "rx", "UA").is_some();
    let theirs = frame(&cpe, "rx", "SABME").is_some() && frame(&cpe, "tx", "UA").is_some();
    assert!(ours || theirs, "no SABME/UA exchange\n{ctx}");
    assert!(!find(&cpe, "dchan_up").is_empty(), "{ctx}");
    assert!(!find(&net, "dchan_up").is_empty(), "{ctx}");
    assert!(
        find(&cpe, "dahdi_event")
            .iter()
            .all(|e| e["name"] != "bad_fcs"),
        "{ctx}"
    );

    // SETUP -> CONNECT, seen by both stacks.
    assert!(q931(&cpe, "tx", "Setup").is_some(), "{ctx}");
    assert!(q931(&cpe, "rx", "Connect").is_some(), "{ctx}");
    assert!(q931(&cpe, "tx", "ConnectAck").is_some(), "{ctx}");
    let setup = find(&net, "setup");
    assert!(
        setup
            .iter()
            .any(|e| e["dir"] == "rx" && e["called"] == "5551234" && e["calling"] == "2000"),
        "libpri saw no SETUP from us\n{ctx}"
    );
    assert!(!find(&net, "connect").is_empty(), "{ctx}");
    let conn = find(&cpe, "connect");
    assert_eq!(conn.len(), 1, "{ctx}");
    let ts = conn[0]["timeslot"].as_i64().expect("timeslot");
    assert!((1..=31).contains(&ts) && ts != 16, "{ctx}");
    assert_eq!(conn[0]["channel"].as_i64(), Some(31 + ts), "{ctx}");

    // Audio: our chirp arrived on the same timeslot of span 1, octet for
    // octet, and the far end's chirp came back to us intact.
    let rx = find(&lis, "audio_rx");
    assert_eq!(rx.len(), 1, "{ctx}");
    assert_eq!(rx[0]["channel"].as_i64(), Some(ts), "wrong timeslot\n{ctx}");
    assert_eq!(rx[0]["octets"].as_i64(), Some(16_000), "{ctx}");
    assert_eq!(rx[0]["mismatches"].as_i64(), Some(0), "{ctx}");
    assert!(
        rx[0]["correlation"].as_f64().unwrap_or(0.0) >= 0.99,
        "{ctx}"
    );
    let back = find(&cpe, "audio_rx");
    assert_eq!(back.len(), 1, "{ctx}");
    assert_eq!(back[0]["intact"], true, "{ctx}");
    assert!(
        back[0]["correlation"].as_f64().unwrap_or(0.0) >= 0.99,
        "{ctx}"
    );
    let lis_done = find(&lis, "done");
    assert_eq!(lis_done.len(), 1, "{ctx}");
    assert_eq!(
        lis_done[0]["chirp_also_on"],
        Value::Array(vec![]),
        "cross-talk\n{ctx}"
    );

    // Clean clearing: DISCONNECT / RELEASE / RELEASE COMPLETE, cause 16.
    assert!(q931(&cpe, "tx", "Disconnect").is_some(), "{ctx}");
    assert!(q931(&cpe, "rx", "Release").is_some(), "{ctx}");
    assert!(q931(&cpe, "tx", "ReleaseComplete").is_some(), "{ctx}");
    let rel = find(&cpe, "release");
    assert_eq!(rel.len(), 1, "{ctx}");
    assert_eq!(rel[0]["cause"].as_i64(), Some(16), "{ctx}");
    let end = find(&net, "call_end");
    assert_eq!(end.len(), 1, "{ctx}");
    assert_eq!(end[0]["outcome"], "answered", "{ctx}");
    assert_eq!(end[0]["cause"].as_i64(), Some(16), "{ctx}");
    let net_done = find(&net, "done");
    assert_eq!(net_done.len(), 1, "{ctx}");
    assert_eq!(net_done[0]["exit"].as_i64(), Some(0), "{ctx}");
    assert_eq!(find(&cpe, "done")[0]["ok"], true, "{ctx}");
    assert!(
        stdout.contains("status cpe=0 listen=0 net=0"),
        "exit statuses\n{ctx}"
    );
    assert!(out.status.success(), "{ctx}");
}
