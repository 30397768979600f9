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
//! Then, in the same boot, the full path: `tandemd` (config written here)
//! runs span 2 with `driver = "dahdi"` as CPE against a fresh pri-peer NET
//! on span 1; `tandem-dahdi-probe sipcall` (a SIP UA on the guest's
//! loopback) dials `95551234`, sends the rising chirp as PCMA RTP and hangs
//! up once the falling chirp came back from `listen` on span 1 (blocks of
//! 160 octets must arrive intact both ways); a second call `95550042` is
//! cleared by the exchange (pri-peer `--hangup-after`) and reaches the UA
//! as a BYE. Causes are checked in pri-peer's JSON events.
//!
//! Then analog, still in the same boot: the span conf adds a loc-connected
//! pair of 4-channel dynamic spans carrying robbed-bit CAS, `fxoks=63-66`
//! and `fxsks=67-70` (a channel bank: DAHDI 2.11 has no software FXS/FXO
//! module, but dynamic spans carry ABCD bits and the kernel's fxoks/fxsks
//! code turns hook and ring into them and back into events). A second
//! tandemd runs `[analog] card = "dahdi"` with FXS ports 1-2 on channels
//! 63-64; `tandem-dahdi-probe phone` plays the telephones on 67-68. (a) The
//! SIP UA calls 201: the phone counts rings, decodes the Bell 202 caller ID
//! 1001, answers at ring 2, chirps cross both ways, the UA hangs up and the
//! phone hears busy tone. (b) The phone on 68 goes off hook, hears dial tone
//! (350+440 Hz), dials 600 in DTMF and its chirp comes back from Echo().
//!
//! Slow (a guest boot: 5–50 s under TCG, then ~10 s), so it runs only with
//! `CI=true` or `TANDEM_DAHDI_QEMU=1`, as root (the rig installs packages and
//! builds DKMS modules on its first run). Skips with a message otherwise.

use std::path::Path;
use std::process::Command;
use std::sync::OnceLock;

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
sleep 1
# --- part 2: SIP UA -> tandemd (span 2, driver dahdi, CPE) -> libpri NET on span 1
ifconfig lo 127.0.0.1 up
tandem-dahdi-probe listen --chans 1-15,17-31 --block 400 --match blocks --timeout 120 >/tmp/l2.log 2>&1 &
lis2=$!
i=0
while ! grep -q '"ev":"listening"' /tmp/l2.log && [ $i -lt 300 ]; do sleep 0.1; i=$((i+1)); done
pri-peer --role net --dahdi 16 --incoming answer --accept 2 --hangup-after 12 --expect-calling 1001 \
	--expect-in answered --timeout 120 --linger 1 >/tmp/n2.log 2>&1 &
net2=$!
NO_COLOR=1 tandemd --config /opt/tandem.toml >/tmp/td.out 2>/tmp/td.log &
td=$!
i=0
while ! { grep -q ready /tmp/td.out && grep -q '"ev":"dchan_up"' /tmp/n2.log; } && [ $i -lt 600 ]; do
	sleep 0.1; i=$((i+1))
done
sleep 2
tandem-dahdi-probe sipcall --server 127.0.0.1:5060 --dial 95551234 --audio 1 --hangup-after 10 \
	--timeout 60 >/tmp/ua1.log 2>&1; ua1=$?
tandem-dahdi-probe sipcall --server 127.0.0.1:5060 --dial 95550042 --hangup-after 40 --await-bye 1 \
	--timeout 60 >/tmp/ua2.log 2>&1; ua2=$?
wait $net2; net2rc=$?
kill $lis2 2>/dev/null; wait $lis2; lis2rc=$?
kill $td; wait $td
sed 's/^/ua1 /' /tmp/ua1.log
sed 's/^/ua2 /' /tmp/ua2.log
sed 's/^/l2 /' /tmp/l2.log
sed 's/^/n2 /' /tmp/n2.log
sed 's/^/td /' /tmp/td.log | tail -60
echo "status2 ua1=$ua1 ua2=$ua2 listen=$lis2rc net=$net2rc"
# --- part 3: analog. tandemd's FXS ports 1-2 are channels 63-64 (fxoks=, span 3);
# the probe's telephones sit on 67-68 (fxsks=, span 4) across robbed-bit CAS.
tandem-dahdi-probe phone --chan 67 --rings 2 --expect-cid 1001 --audio 1 --timeout 40 >/tmp/ph1.log 2>&1 &
ph1=$!
NO_COLOR=1 tandemd --config /opt/tandem-analog.toml >/tmp/ta.out 2>/tmp/ta.log &
ta=$!
i=0
while ! grep -q ready /tmp/ta.out && [ $i -lt 300 ]; do sleep 0.1; i=$((i+1)); done
tandem-dahdi-probe sipcall --server 127.0.0.1:5070 --dial 201 --audio 1 --match corr --hangup-after 15 \
	--timeout 40 >/tmp/ua3.log 2>&1; ua3=$?
wait $ph1; ph1rc=$?
tandem-dahdi-probe phone --chan 68 --originate 1 --dial 600 --audio 1 --timeout 30 >/tmp/ph2.log 2>&1; ph2rc=$?
sleep 1
kill $ta; wait $ta
sed 's/^/ph1 /' /tmp/ph1.log
sed 's/^/ua3 /' /tmp/ua3.log
sed 's/^/ph2 /' /tmp/ph2.log
sed 's/^/ta /' /tmp/ta.log | tail -60
echo "status3 ph1=$ph1rc ua3=$ua3 ph2=$ph2rc"
exit 0
"#;

/// `/etc/dahdi/system.conf` of the guest: spans 1 and 2 exactly as the
/// rig's default (the PRI cases need them), plus a loc-connected pair of
/// 4-channel spans carrying robbed-bit CAS: span 3 (63-66) `fxoks=`, the
/// FXS ports' side as on a channel bank, span 4 (67-70) `fxsks=`, where the
/// probe plays the telephones.
const SPAN_CONF: &str = "\
dynamic=loc,1:0,31,0
dynamic=loc,1:1,31,0
dynamic=loc,2:0,4,0
dynamic=loc,2:1,4,0
bchan=1-15,17-31
dchan=16
bchan=32-46,48-62
dchan=47
alaw=1-62
fxoks=63-66
fxsks=67-70
alaw=63-70
loadzone=us
defaultzone=us
";

/// The analog tandemd: `card = "dahdi"`, FXS ports 1-2 on channels 63-64
/// (`channel_base = 62`), extensions 201-202 with Bell 202 caller ID and a
/// short cadence (1 s ring, 3 s silence), 600 an echo test.
const ANALOG_TOML: &str = r#"
[sip]
listen = ["udp:127.0.0.1:5070"]
realm = "tandem"
[[sip.user]]
name = "1001"
password = "pw1001"
[dataplane]
backend = "socket"
cores = [0]
rtp_ports = "21000-21999"
media_ip = "127.0.0.1"
[dialplan]
file = "/opt/extensions-analog.conf"
context = "default"
[mgmt]
socket = "/tmp/tandemd-analog.sock"
[analog]
card = "dahdi"
channel_base = 62
[[analog.port]]
port = 1
kind = "fxs"
extension = "201"
callerid_number = "201"
cadence = [1000, 3000]
[[analog.port]]
port = 2
kind = "fxs"
extension = "202"
callerid_number = "202"
cadence = [1000, 3000]
"#;

const EXTENSIONS_ANALOG: &str = "\
[default]
exten => _20[1-2],1,Dial(DAHDI/${EXTEN:2},30)
exten => 600,1,Answer()
 same => n,Echo()
";

/// tandemd's config in the guest: one DAHDI span (2, channels 32-62 with
/// the default `channel_base`), CPE, and the demo user 1001.
const TANDEM_TOML: &str = r#"
[sip]
listen = ["udp:127.0.0.1:5060"]
realm = "tandem"
[[sip.user]]
name = "1001"
password = "pw1001"
[dataplane]
backend = "socket"
cores = [0]
rtp_ports = "20000-20999"
media_ip = "127.0.0.1"
[dialplan]
file = "/opt/extensions.conf"
context = "default"
[mgmt]
socket = "/tmp/tandemd.sock"
[[pstn.span]]
driver = "dahdi"
span = 2
signalling = "pri_cpe"
group = 1
context = "from-pstn"
channels = "bchan=1-15,17-31 dchan=16"
"#;

const EXTENSIONS: &str = "\
[default]
exten => _9X.,1,Dial(DAHDI/g1/${EXTEN:1},30)
 same => n,Hangup()
[from-pstn]
exten => _X.,1,Hangup()
";

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

/// What one guest run printed.
struct GuestRun {
    stdout: String,
    stderr: String,
    code: Option<i32>,
}

/// The guest's stdout and the context for failure messages, or `None` (the
/// reason printed) where the rig is not enabled. Fails if the rig itself broke.
fn guest_or_skip() -> Option<(&'static str, String)> {
    let run = match guest_run() {
        Ok(r) => r,
        Err(why) => {
            eprintln!("SKIP dahdi_qemu: {why}");
            return None;
        }
    };
    let ctx = format!(
        "--- guest output:\n{}\n--- rig:\n{}",
        run.stdout, run.stderr
    );
    assert_ne!(
        run.code,
        Some(125),
        "the qemu rig failed (not our binary)\n{ctx}"
    );
    Some((&run.stdout, ctx))
}

/// One boot for every case: the first test to get here runs the guest, the
/// other waits for it and reads the same output.
fn guest_run() -> Result<&'static GuestRun, String> {
    static RUN: OnceLock<Result<GuestRun, String>> = OnceLock::new();
    RUN.get_or_init(|| {
        enabled()?;
        Ok(boot())
    })
    .as_ref()
    .map_err(Clone::clone)
}

fn boot() -> GuestRun {
    let dir = std::env::temp_dir().join(format!("tandem-dahdi-qemu-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let script = dir.join("call.sh");
    std::fs::write(&script, GUEST).unwrap();
    std::fs::write(dir.join("tandem.toml"), TANDEM_TOML).unwrap();
    std::fs::write(dir.join("extensions.conf"), EXTENSIONS).unwrap();
    std::fs::write(dir.join("span.conf"), SPAN_CONF).unwrap();
    std::fs::write(dir.join("tandem-analog.toml"), ANALOG_TOML).unwrap();
    std::fs::write(dir.join("extensions-analog.conf"), EXTENSIONS_ANALOG).unwrap();
    // A stripped copy boots faster (the initramfs lives in guest RAM).
    let tandemd = dir.join("tandemd");
    let stripped = Command::new("strip")
        .arg("-o")
        .arg(&tandemd)
        .arg(env!("CARGO_BIN_EXE_tandemd"))
        .status()
        .is_ok_and(|s| s.success());
    if !stripped {
        std::fs::copy(env!("CARGO_BIN_EXE_tandemd"), &tandemd).unwrap();
    }
    let started = std::time::Instant::now();
    let out = Command::new(RIG)
        .args(["--no-install", "--timeout", "360", "--file"])
        .arg(env!("CARGO_BIN_EXE_tandem-dahdi-probe"))
        .arg("--file")
        .arg(&tandemd)
        .arg("--file")
        .arg(dir.join("tandem.toml"))
        .arg("--file")
        .arg(dir.join("extensions.conf"))
        .arg("--file")
        .arg(dir.join("tandem-analog.toml"))
        .arg("--file")
        .arg(dir.join("extensions-analog.conf"))
        .arg("--span-conf")
        .arg(dir.join("span.conf"))
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
    GuestRun {
        stdout,
        stderr,
        code: out.status.code(),
    }
}

#[test]
fn cpe_on_a_real_dahdi_span_calls_libpri_and_audio_crosses_intact() {
    let Some((stdout, ctx)) = guest_or_skip() else {
        return;
    };
    let cpe = events(stdout, "cpe");
    let lis = events(stdout, "listen");
    let net = events(stdout, "net");

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
}

#[test]
fn sip_call_through_tandemd_on_a_real_dahdi_span_to_libpri() {
    let Some((stdout, ctx)) = guest_or_skip() else {
        return;
    };
    let ua1 = events(stdout, "ua1");
    let ua2 = events(stdout, "ua2");
    let lis = events(stdout, "l2");
    let net = events(stdout, "n2");

    // tandemd brought its DAHDI D-channel up with libpri.
    assert!(!find(&net, "dchan_up").is_empty(), "{ctx}");
    // Call 1: 9 + 5551234 from user 1001 leaves as a SETUP with that CLI.
    let setups: Vec<&Value> = find(&net, "setup")
        .into_iter()
        .filter(|e| e["dir"] == "rx")
        .collect();
    assert_eq!(setups.len(), 2, "{ctx}");
    assert_eq!(
        (&setups[0]["called"], &setups[0]["calling"]),
        (&Value::from("5551234"), &Value::from("1001")),
        "{ctx}"
    );
    assert_eq!(setups[1]["called"], "5550042", "{ctx}");
    assert_eq!(find(&ua1, "connected").len(), 1, "{ctx}");
    // Audio: the UA's chirp crossed tandemd and the B-channel to span 1 ...
    let rx = find(&lis, "audio_rx");
    assert_eq!(rx.len(), 1, "no chirp on span 1\n{ctx}");
    let (found, total) = (rx[0]["blocks_found"].as_u64(), rx[0]["blocks"].as_u64());
    assert!(
        matches!((found, total), (Some(f), Some(t)) if t == 100 && f >= 90),
        "UA -> B-channel: {found:?} of {total:?} blocks intact\n{ctx}"
    );
    assert_eq!(
        find(&lis, "done")[0]["chirp_also_on"],
        Value::Array(vec![]),
        "{ctx}"
    );
    // ... and the falling chirp written on span 1 reached the UA as RTP.
    let back = find(&ua1, "audio_rx");
    assert_eq!(back.len(), 1, "{ctx}");
    let (found, total) = (back[0]["blocks_found"].as_u64(), back[0]["blocks"].as_u64());
    assert!(
        matches!((found, total), (Some(f), Some(t)) if t == 100 && f >= 90),
        "B-channel -> UA: {found:?} of {total:?} blocks intact\n{ctx}"
    );
    eprintln!(
        "full path: UA -> span 1: {}; span 1 -> UA: {}",
        rx[0], back[0]
    );
    // Clearing from the SIP side: BYE -> DISCONNECT cause 16.
    assert!(!find(&ua1, "bye_ok").is_empty(), "{ctx}");
    assert_eq!(find(&ua1, "done")[0]["ok"], true, "{ctx}");
    let ends = find(&net, "call_end");
    assert_eq!(ends.len(), 2, "{ctx}");
    assert_eq!(ends[0]["outcome"], "answered", "{ctx}");
    assert_eq!(ends[0]["cleared_by_us"], false, "{ctx}");
    assert_eq!(ends[0]["cause"].as_i64(), Some(16), "{ctx}");
    // Call 2: cleared by the exchange -> BYE to the UA.
    assert_eq!(find(&ua2, "connected").len(), 1, "{ctx}");
    // One BYE, or its retransmissions when the guest was too slow to
    // answer the first within T1 (TCG on a loaded host).
    let bye = find(&ua2, "bye_rx");
    assert!(
        !bye.is_empty(),
        "the exchange's clearing never reached the UA\n{ctx}"
    );
    // The PRI clearing cause travels with the BYE (RFC 3326).
    assert_eq!(bye[0]["reason"], "Q.850;cause=16", "{ctx}");
    assert_eq!(find(&ua2, "done")[0]["ok"], true, "{ctx}");
    assert_eq!(ends[1]["outcome"], "answered", "{ctx}");
    assert_eq!(ends[1]["cleared_by_us"], true, "{ctx}");
    assert_eq!(ends[1]["cause"].as_i64(), Some(16), "{ctx}");
    assert_eq!(find(&net, "done")[0]["exit"].as_i64(), Some(0), "{ctx}");
    assert!(
        stdout.contains("status2 ua1=0 ua2=0"),
        "exit statuses\n{ctx}"
    );
}

#[test]
fn analog_fxs_ports_of_tandemd_on_dahdi_channels_ring_answer_and_dial() {
    let Some((stdout, ctx)) = guest_or_skip() else {
        return;
    };
    let ph1 = events(stdout, "ph1");
    let ua3 = events(stdout, "ua3");
    let ph2 = events(stdout, "ph2");

    // (a) SIP UA 1001 -> 201 -> tandemd's FXS port 1 (channel 63, fxoks)
    // -> the kernel's CAS ring -> the telephone on channel 67 (fxsks).
    let start = find(&ph1, "start");
    assert_eq!(start.len(), 1, "{ctx}");
    assert_eq!(start[0]["signalling"], "fxsks", "{ctx}");
    let done = find(&ph1, "done");
    assert_eq!(done.len(), 1, "{ctx}");
    assert!(
        done[0]["rings"].as_u64().unwrap_or(0) >= 2,
        "the phone counted no rings\n{ctx}"
    );
    // Caller ID: Bell 202 FSK rendered into the channel after the first ring.
    assert_eq!(done[0]["cid"]["number"], "1001", "caller ID\n{ctx}");
    assert_eq!(find(&ph1, "answer").len(), 1, "{ctx}");
    // Audio both ways across the CAS channel, tandemd and RTP.
    // UA -> phone: 80 % of the chirp's 20 ms pieces in order (RTP jitter
    // may insert a gap); phone -> UA: 90 % of its 160-octet blocks intact
    // (the path is A-law end to end), or by correlation.
    let rx = find(&ph1, "audio_rx");
    assert_eq!(rx.len(), 1, "{ctx}");
    assert_eq!(rx[0]["ok"], true, "UA -> phone\n{ctx}");
    assert!(
        rx[0]["pieces_found"].as_u64().unwrap_or(0) >= 80,
        "UA -> phone\n{ctx}"
    );
    let back = find(&ua3, "audio_rx");
    assert_eq!(back.len(), 1, "{ctx}");
    let blocks = back[0]["blocks_found"].as_u64().unwrap_or(0);
    let pieces = back[0]["pieces_found"].as_u64().unwrap_or(0);
    assert!(blocks >= 90 || pieces >= 80, "phone -> UA\n{ctx}");
    // The UA hung up; the phone heard the disconnect.
    assert!(!find(&ua3, "bye_ok").is_empty(), "{ctx}");
    assert!(!done[0]["disconnect"].is_null(), "{ctx}");
    assert_eq!(done[0]["ok"], true, "{ctx}");
    assert_eq!(find(&ua3, "done")[0]["ok"], true, "{ctx}");

    // (b) The telephone on channel 68 goes off hook: dial tone (350+440 Hz)
    // from tandemd's FXS port 2, dials 600 in DTMF, its chirp comes back.
    assert_eq!(find(&ph2, "dial_tone").len(), 1, "no dial tone\n{ctx}");
    let echo = find(&ph2, "audio_rx");
    assert_eq!(echo.len(), 1, "{ctx}");
    assert!(
        echo[0]["pieces_found"].as_u64().unwrap_or(0) >= 80,
        "echo\n{ctx}"
    );
    assert_eq!(find(&ph2, "done")[0]["ok"], true, "{ctx}");
    assert!(
        stdout.contains("status3 ph1=0 ua3=0 ph2=0"),
        "exit statuses\n{ctx}"
    );
    eprintln!(
        "analog: UA -> phone {}; phone -> UA {}; echo {}",
        rx[0], back[0], echo[0]
    );
}
