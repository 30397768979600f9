//! Analog lines in tandemd: real baresip UAs (`sipua.py`) through `tandemd`
//! and its analog interworking function to the simulated TDM400P, driven
//! through `[analog] sim_control` and observed with `tandemctl show channels`.
//!
//! - A SIP call to 201 (Bell 202, US cadence) and to 202 (V.23 before the
//!   first ring, German cadence) rings the simulated phone with the port's
//!   cadence; the phone's caller ID decoder reads the caller's number and
//!   name (`cid_received`), and spandsp's ADSI receiver decodes the same
//!   spill from what the phone heard (when libspandsp is installed); the
//!   phone answers after two rings and echoes: the UA's audio comes back
//!   (correlation); the phone hangs up and the UA gets BYE.
//! - A phone goes off hook, hears dial tone (350 + 440 Hz by Goertzel),
//!   dials 1002 by DTMF and then by pulse, and reaches the registered UA
//!   with the port's caller ID (number and name in From).
//! - The exchange rings the FXO port with a caller ID spill made by
//!   spandsp's ADSI transmitter (our own generator without spandsp): the
//!   UA sees that number; a private caller ("P") arrives anonymous with
//!   `Privacy: id`; the far end hangs up by polarity reversal, then by busy
//!   tone, and each time the UA gets BYE.
//!
//! Skips with a message when baresip is missing.

mod common;

use common::*;
use std::net::UdpSocket;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

const PLAN: &str = "\
[default]
exten => _20X,1,Dial(DAHDI/${EXTEN:2},30)
 same => n,Hangup()
exten => _1XXX,1,Dial(SIP/${EXTEN},20)
 same => n,Hangup()
[from-analog]
exten => s,1,Dial(SIP/1002,20)
 same => n,Hangup()
";

fn analog(ctl: u16) -> String {
    format!(
        "[analog]\ncard = \"sim\"\nsim_control = \"127.0.0.1:{ctl}\"\n\
         [[analog.port]]\nport = 1\nkind = \"fxs\"\nextension = \"201\"\nzone = \"us\"\ncid = \"bell202\"\n\
         [[analog.port]]\nport = 2\nkind = \"fxs\"\nextension = \"202\"\nzone = \"de\"\ncid = \"v23\"\n\
         [[analog.port]]\nport = 3\nkind = \"fxs\"\nextension = \"203\"\ncallerid_number = \"203\"\n\
         callerid_name = \"Kitchen\"\ninterdigit_ms = 3000\n\
         [[analog.port]]\nport = 5\nkind = \"fxo\"\ncontext = \"from-analog\"\ncid = \"bell202\"\n"
    )
}

/// The simulator's control socket.
struct Sim {
    sock: UdpSocket,
    to: String,
}

impl Sim {
    fn new(port: u16) -> Sim {
        let sock = UdpSocket::bind("127.0.0.1:0").unwrap();
        sock.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
        Sim {
            sock,
            to: format!("127.0.0.1:{port}"),
        }
    }

    fn cmd(&self, c: &str) {
        self.sock.send_to(c.as_bytes(), &self.to).unwrap();
        let mut b = [0u8; 512];
        let n = self.sock.recv(&mut b).unwrap_or(0);
        let r = String::from_utf8_lossy(&b[..n]);
        assert_eq!(r, "ok", "sim command {c:?}");
    }
}

fn port_status(d: &Daemon, port: u64) -> serde_json::Value {
    d.ctl_json(&["show", "channels"])
        .as_array()
        .and_then(|a| {
            a.iter()
                .find(|c| c["type"] == "analog" && c["port"] == port)
                .cloned()
        })
        .unwrap_or_default()
}

/// Power of `hz` relative to the block's energy (1.0 for a pure tone; 0.5
/// each for two equal tones).
fn tone_fraction(x: &[i16], hz: f32) -> f32 {
    let k = 2.0 * (std::f32::consts::TAU * hz / 8000.0).cos();
    let (mut s1, mut s2, mut e) = (0f32, 0f32, 0f32);
    for &v in x {
        let v = f32::from(v);
        e += v * v;
        let s0 = v + k * s1 - s2;
        s2 = s1;
        s1 = s0;
    }
    (s1 * s1 + s2 * s2 - k * s1 * s2) * 2.0 / (x.len() as f32 * e.max(1.0))
}

fn read_s16(p: &Path) -> Vec<i16> {
    std::fs::read(p)
        .unwrap_or_default()
        .chunks_exact(2)
        .map(|b| i16::from_le_bytes([b[0], b[1]]))
        .collect()
}

fn write_s16(p: &Path, x: &[i16]) {
    let b: Vec<u8> = x.iter().flat_map(|v| v.to_le_bytes()).collect();
    std::fs::write(p, b).unwrap();
}

// ---------------------------------------------------------------------------
// spandsp (Debian libspandsp-dev), test-only C shims: ADSI transmitter and
// receiver. GPL code is only linked into these throwaway test programs.

const TX_SHIM: &str = r#"
#include <stdio.h>
#include <string.h>
#include <inttypes.h>
#include <spandsp.h>
int main(int argc, char **argv) {
    if (argc < 4) return 2;
    int std = strcmp(argv[1], "v23") == 0 ? ADSI_STANDARD_CLIP : ADSI_STANDARD_CLASS;
    adsi_tx_state_t *tx = adsi_tx_init(NULL, std);
    uint8_t msg[256]; int len;
    len = adsi_add_field(tx, msg, -1, 0x80, NULL, 0);
    len = adsi_add_field(tx, msg, len, 0x01, (const uint8_t *)"11261030", 8);
    if (strcmp(argv[2], "P") == 0)
        len = adsi_add_field(tx, msg, len, 0x04, (const uint8_t *)"P", 1);
    else
        len = adsi_add_field(tx, msg, len, 0x02, (const uint8_t *)argv[2], strlen(argv[2]));
    if (argv[3][0])
        len = adsi_add_field(tx, msg, len, 0x07, (const uint8_t *)argv[3], strlen(argv[3]));
    adsi_tx_put_message(tx, msg, len);
    int16_t buf[160]; int n, total = 0;
    while ((n = adsi_tx(tx, buf, 160)) > 0 && total < 8000 * 5) {
        fwrite(buf, 2, n, stdout); total += n;
    }
    return 0;
}
"#;

const RX_SHIM: &str = r#"
#include <stdio.h>
#include <string.h>
#include <inttypes.h>
#include <spandsp.h>
static adsi_rx_state_t *rx;
static void put_msg(void *user_data, const uint8_t *msg, int len) {
    uint8_t field_type; const uint8_t *body; int field_len; int pos = 0;
    (void) user_data;
    do {
        pos = adsi_next_field(rx, msg, len, pos, &field_type, &body, &field_len);
        if (pos > 0 && body && field_len > 0) {
            printf("%02x=", field_type);
            fwrite(body, 1, field_len, stdout);
            printf("\n");
        }
    } while (pos > 0);
}
int main(int argc, char **argv) {
    if (argc < 2) return 2;
    int std = strcmp(argv[1], "v23") == 0 ? ADSI_STANDARD_CLIP : ADSI_STANDARD_CLASS;
    rx = adsi_rx_init(NULL, std, put_msg, NULL);
    int16_t buf[160]; size_t n;
    while ((n = fread(buf, 2, 160, stdin)) > 0) adsi_rx(rx, buf, (int) n);
    return 0;
}
"#;

fn build_shim(name: &str, src: &str) -> Option<PathBuf> {
    let dir = std::env::temp_dir().join(format!("tandem-analog-tandemd-{}", std::process::id()));
    std::fs::create_dir_all(&dir).ok()?;
    let exe = dir.join(name);
    if exe.exists() {
        return Some(exe);
    }
    // Source and binary under per-thread names, the binary renamed into place:
    // a parallel test that finds `exe` never sees a half-written file.
    let tid = format!("{:?}", std::thread::current().id());
    let c = dir.join(format!("{name}.{tid}.c"));
    std::fs::write(&c, src).ok()?;
    let cc = std::env::var("CC").unwrap_or_else(|_| "cc".into());
    let tmp = dir.join(format!("{name}.{tid}"));
    match Command::new(cc)
        .arg("-O1")
        .arg("-o")
        .arg(&tmp)
        .arg(&c)
        .args(["-lspandsp", "-lm"])
        .output()
    {
        Ok(o) if o.status.success() => std::fs::rename(&tmp, &exe).ok().map(|_| exe),
        Ok(o) => {
            eprintln!(
                "NOTE {name}: spandsp shim not built (apt-get install libspandsp-dev): {}",
                String::from_utf8_lossy(&o.stderr)
                    .lines()
                    .next()
                    .unwrap_or("")
            );
            None
        }
        Err(e) => {
            eprintln!("NOTE {name}: no C compiler: {e}");
            None
        }
    }
}

/// A Bell 202 caller ID spill: spandsp's ADSI transmitter, else ours.
fn spill(number: &str, name: &str) -> (Vec<i16>, &'static str) {
    if let Some(exe) = build_shim("adsi-tx", TX_SHIM) {
        if let Ok(o) = Command::new(exe).args(["bell", number, name]).output() {
            if o.status.success() && !o.stdout.is_empty() {
                let pcm = o
                    .stdout
                    .chunks_exact(2)
                    .map(|b| i16::from_le_bytes([b[0], b[1]]))
                    .collect();
                return (pcm, "spandsp adsi_tx");
            }
        }
    }
    use dataplane::dsp::fsk::{self, Absence, CallerId, Format, FskStandard};
    let mut cid = CallerId::with_number(number, (!name.is_empty()).then_some(name));
    if number == "P" {
        cid.number = None;
        cid.number_absent = Some(Absence::Private);
    }
    let mut pcm = Vec::new();
    fsk::generate(FskStandard::Bell202, Format::Mdmf, &cid, -13.0, &mut pcm).unwrap();
    (pcm, "dataplane::dsp::fsk")
}

/// spandsp's ADSI receiver over what a phone heard: the fields as `tt=value` lines.
fn spandsp_decode(heard: &Path, standard: &str) -> Option<String> {
    let exe = build_shim("adsi-rx", RX_SHIM)?;
    let out = Command::new(exe)
        .arg(standard)
        .stdin(std::fs::File::open(heard).ok()?)
        .output()
        .ok()?;
    Some(String::from_utf8_lossy(&out.stdout).into_owned())
}

fn start(name: &str) -> (Daemon, Sim) {
    let ctl = free_udp_port();
    let d = Daemon::start(name, Some(PLAN), &analog(ctl));
    d.wait_for("analog ports listed", 10, |d| {
        port_status(d, 1)["state"] == "idle"
    });
    (d, Sim::new(ctl))
}

/// Ringing on/off edges of port `p` while `until` is false: (ms, on).
fn watch_ringing(
    d: &Daemon,
    p: u64,
    secs: u64,
    mut until: impl FnMut(&serde_json::Value) -> bool,
) -> Vec<(u128, bool)> {
    let t0 = Instant::now();
    let mut edges = Vec::new();
    let mut last = false;
    while t0.elapsed() < Duration::from_secs(secs) {
        let st = port_status(d, p);
        let on = st["ringing"] == true;
        if on != last {
            edges.push((t0.elapsed().as_millis(), on));
            last = on;
        }
        if until(&st) {
            break;
        }
        std::thread::sleep(Duration::from_millis(40));
    }
    edges
}

#[test]
fn sip_call_rings_phone_with_cadence_and_caller_id_bell202_and_v23() {
    if !have_baresip() {
        return;
    }
    let _g = serial();
    let (d, sim) = start("analog-fxs-in");
    for (ext, port, on_ms, off_ms, std) in [
        (201, 1u64, 2000u128, 4000u128, "bell"),
        (202, 2, 1000, 4000, "v23"),
    ] {
        let chirp = d.dir.path(&format!("chirp-{ext}.wav"));
        gen(&chirp, "chirp", 3.0, 7);
        let rec = d.dir.path(&format!("rec-{ext}.wav"));
        let mut caller = ua_args(&d, "call", 1001);
        caller.extend([
            s("--display"),
            s("Alice Smith"),
            s("--dial"),
            ext.to_string(),
            s("--play"),
            chirp.display().to_string(),
            s("--record"),
            rec.display().to_string(),
            s("--seconds"),
            s("30"),
            s("--allow-remote-hangup"),
        ]);
        let mut a = Ua::spawn(&d.dir, &format!("a-{ext}"), &caller);
        // Cadence: on, off, on (the phone answers after the second burst).
        let edges = watch_ringing(&d, port, 25, |st| st["off_hook"] == true);
        let st = port_status(&d, port);
        assert_eq!(
            st["off_hook"], true,
            "{ext}: phone did not answer; edges {edges:?} {st}"
        );
        assert!(edges.len() >= 3, "{ext}: ring edges {edges:?}");
        let on1 = edges[1].0 - edges[0].0;
        let off1 = edges[2].0 - edges[1].0;
        assert!(
            on1.abs_diff(on_ms) <= 300,
            "{ext}: ring burst {on1} ms, want {on_ms}: {edges:?}"
        );
        assert!(
            off1.abs_diff(off_ms) <= 300,
            "{ext}: ring pause {off1} ms, want {off_ms}: {edges:?}"
        );
        assert_eq!(st["rings"], 2, "{st}");
        // The phone's caller ID decoder.
        let cid = &st["cid_received"];
        assert_eq!(cid["number"], "1001", "{ext}: {st}");
        assert_eq!(cid["name"], "Alice Smith", "{ext}: {st}");
        // spandsp's receiver on what the phone heard (the spill, rings, answer).
        let heard = d.dir.path(&format!("heard-{ext}.raw"));
        sim.cmd(&format!("dump {port} {}", heard.display()));
        if let Some(fields) = spandsp_decode(&heard, std) {
            assert!(fields.contains("02=1001"), "{ext}: spandsp read {fields:?}");
            assert!(
                fields.contains("07=Alice Smith"),
                "{ext}: spandsp read {fields:?}"
            );
            eprintln!("{ext}: spandsp adsi_rx decoded {:?}", fields.trim());
        }
        a.wait_event("established", 10);
        // Echo: let the chirp go round, then the phone hangs up.
        std::thread::sleep(Duration::from_millis(4500));
        sim.cmd(&format!("onhook {port}"));
        let code = a.wait(15);
        let closed = a.event("closed").expect("closed");
        assert_eq!(closed["by_us"], false, "{ext}: the phone hung up: {closed}");
        assert!(code == 0, "{ext}: caller flow: {:?}", a.events());
        let v = analyze(&chirp, &rec);
        let med = v["block_corr_median"].as_f64().unwrap_or(0.0);
        assert!(med >= 0.7, "{ext}: echo from the phone does not match: {v}");
        eprintln!("{ext}: cadence {on1}/{off1} ms, echo correlation {v}");
        d.wait_for("no active calls", 10, |d| d.active_calls() == 0);
    }
}

#[test]
fn phone_dials_by_dtmf_and_pulse_and_reaches_the_ua_with_port_caller_id() {
    if !have_baresip() {
        return;
    }
    let _g = serial();
    let (d, sim) = start("analog-fxs-out");
    for how in ["dtmf", "pulse"] {
        let mut callee = ua_args(&d, "answer", 1002);
        callee.extend([s("--timeout"), s("30")]);
        let mut b = Ua::spawn(&d.dir, &format!("b-{how}"), &callee);
        b.wait_event("waiting", 15);
        d.wait_for("1002 registered", 10, |d| {
            d.ctl_json(&["show", "registrations"])
                .as_array()
                .is_some_and(|r| r.iter().any(|x| x["user"] == "1002"))
        });
        sim.cmd("offhook 3");
        std::thread::sleep(Duration::from_millis(900));
        let heard = d.dir.path(&format!("dialtone-{how}.raw"));
        sim.cmd(&format!("dump 3 {}", heard.display()));
        let x = read_s16(&heard);
        assert!(x.len() >= 4000, "{how}: heard {} samples", x.len());
        let tail = &x[x.len() - 4000..];
        let (f350, f440, f1000) = (
            tone_fraction(tail, 350.0),
            tone_fraction(tail, 440.0),
            tone_fraction(tail, 1000.0),
        );
        assert!(
            f350 > 0.3 && f440 > 0.3 && f1000 < 0.05,
            "{how}: dial tone 350/440 Hz: {f350:.2} {f440:.2} (1 kHz {f1000:.2})"
        );
        assert_eq!(port_status(&d, 3)["state"], "collecting digits");
        sim.cmd(&format!("{how} 3 1002"));
        let inc = b.wait_event("incoming", 20);
        assert!(
            inc["peer"].as_str().unwrap_or("").contains("sip:203@"),
            "{how}: {inc}"
        );
        b.wait_event("established", 10);
        let log = std::fs::read_to_string(d.dir.path(&format!("b-{how}.baresip.log")))
            .unwrap_or_default();
        assert!(
            log.contains("\"Kitchen\" <sip:203@"),
            "{how}: caller name not in From"
        );
        std::thread::sleep(Duration::from_millis(500));
        sim.cmd("onhook 3");
        let code = b.wait(15);
        let closed = b.event("closed").expect("closed");
        assert_eq!(closed["by_us"], false, "{how}: the phone hung up: {closed}");
        assert_eq!(code, 0, "{how}: callee: {:?}", b.events());
        d.wait_for("no active calls", 10, |d| d.active_calls() == 0);
        eprintln!("{how}: dial tone {f350:.2}/{f440:.2}, reached 1002 as 203 Kitchen");
    }
}

#[test]
fn fxo_inbound_caller_id_privacy_and_far_end_disconnects() {
    if !have_baresip() {
        return;
    }
    let _g = serial();
    let (d, sim) = start("analog-fxo-in");
    for (number, name, hangup) in [("2025550123", "ALICE SMITH", "polarity"), ("P", "", "busy")] {
        let mut callee = ua_args(&d, "answer", 1002);
        callee.extend([s("--timeout"), s("30")]);
        let mut b = Ua::spawn(&d.dir, &format!("b-{hangup}"), &callee);
        b.wait_event("waiting", 15);
        d.wait_for("1002 registered", 10, |d| {
            d.ctl_json(&["show", "registrations"])
                .as_array()
                .is_some_and(|r| r.iter().any(|x| x["user"] == "1002"))
        });
        let (pcm, who) = spill(number, name);
        let f = d.dir.path(&format!("spill-{hangup}.raw"));
        write_s16(&f, &pcm);
        // Short bursts: answered on ring 2 with the spill between the bursts.
        sim.cmd(&format!("ring 5 after {} 800,2500", f.display()));
        let inc = b.wait_event("incoming", 20);
        let peer = inc["peer"].as_str().unwrap_or("").to_string();
        let log = || {
            std::fs::read_to_string(d.dir.path(&format!("b-{hangup}.baresip.log")))
                .unwrap_or_default()
        };
        if number == "P" {
            assert!(peer.contains("anonymous"), "private caller: {inc}");
            assert!(log().contains("Privacy: id"), "no Privacy header");
        } else {
            assert!(peer.contains(number), "caller number from {who}: {inc}");
            assert!(
                log().contains(&format!("\"{name}\"")),
                "caller name not shown"
            );
        }
        d.wait_for("FXO port talking", 3, |d| {
            port_status(d, 5)["state"] == "talking"
        });
        let st = port_status(&d, 5);
        if number != "P" {
            assert_eq!(st["cid_received"]["number"], number, "{st}");
        } else {
            assert_eq!(st["cid_received"]["absent"], "P", "{st}");
        }
        b.wait_event("established", 10);
        std::thread::sleep(Duration::from_millis(500));
        sim.cmd(&format!("hangup 5 {hangup}"));
        let code = b.wait(15);
        let closed = b.event("closed").expect("closed");
        assert_eq!(
            closed["by_us"], false,
            "{hangup}: the line cleared: {closed}"
        );
        assert_eq!(code, 0, "{hangup}: callee: {:?}", b.events());
        d.wait_for("no active calls", 10, |d| d.active_calls() == 0);
        d.wait_for("FXO idle", 5, |d| port_status(d, 5)["state"] == "idle");
        eprintln!("fxo: caller ID by {who} ({number}), far end cleared by {hangup}");
    }
}
