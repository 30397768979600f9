//! The real tandemd with `backend = "xdp"` on a veth pair in network
//! namespaces this test creates: a call set up over the ng protocol relays
//! its RTP through the AF_XDP backend (every packet, in order, SSRC
//! rewritten); `tandemctl show workers` reports the xdp backend and its
//! queue; the XDP program is attached while tandemd runs and gone after it
//! exits (SIGTERM) and after `kill -9`, and the next start succeeds.
//! Phones run as a Python script in the peer namespace. Skips with a
//! message without root, iproute2 or python3.

mod common;

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::*;

const RELAY: &str = "10.232.0.2";
const PHONE_A: &str = "10.232.0.1";
const PHONE_B: &str = "10.232.0.3";

fn ip(args: &[&str]) -> bool {
    Command::new("ip")
        .args(args)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
}

struct Netns {
    relay: String,
    peer: String,
}

impl Netns {
    fn create() -> Option<Netns> {
        if !is_root() {
            eprintln!("SKIP: xdp tandemd test needs root (network namespaces, XDP)");
            return None;
        }
        if !ip(&["-V"]) {
            eprintln!("SKIP: iproute2 missing");
            return None;
        }
        let pid = std::process::id();
        let n = Netns {
            relay: format!("tdx-td-r{pid}"),
            peer: format!("tdx-td-p{pid}"),
        };
        let (r, p) = (n.relay.as_str(), n.peer.as_str());
        let steps: &[&[&str]] = &[
            &["netns", "add", r],
            &["netns", "add", p],
            &[
                "link", "add", "xr0", "netns", r, "type", "veth", "peer", "name", "xp0", "netns", p,
            ],
            &["-n", r, "addr", "add", "10.232.0.2/24", "dev", "xr0"],
            &["-n", p, "addr", "add", "10.232.0.1/24", "dev", "xp0"],
            &["-n", p, "addr", "add", "10.232.0.3/24", "dev", "xp0"],
            &["-n", r, "link", "set", "lo", "up"],
            &["-n", p, "link", "set", "lo", "up"],
            &["-n", r, "link", "set", "xr0", "up"],
            &["-n", p, "link", "set", "xp0", "up"],
        ];
        for s in steps {
            if !ip(s) {
                eprintln!("SKIP: `ip {}` failed", s.join(" "));
                return None;
            }
        }
        for (ns, dev) in [(r, "xr0"), (p, "xp0")] {
            let t0 = Instant::now();
            while !link_show(ns, dev).contains("state UP") {
                if t0.elapsed() > Duration::from_secs(5) {
                    eprintln!("SKIP: {dev} did not come up");
                    return None;
                }
                std::thread::sleep(Duration::from_millis(10));
            }
        }
        Some(n)
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        ip(&["netns", "del", &self.relay]);
        ip(&["netns", "del", &self.peer]);
    }
}

fn link_show(ns: &str, dev: &str) -> String {
    Command::new("ip")
        .args(["-n", ns, "link", "show", dev])
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).to_string())
        .unwrap_or_default()
}

fn xdp_attached(ns: &str) -> bool {
    link_show(ns, "xr0").contains("prog/xdp")
}

/// The two phones: ng offer/answer to tandemd, then `N` RTP packets each
/// way, checked on arrival. Prints one JSON line.
const PHONES: &str = r#"
import json, socket, struct, sys, time
relay, a_ip, b_ip, ng_port, n = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4]), int(sys.argv[5])
def benc(x):
    if isinstance(x, int): return b"i%de" % x
    if isinstance(x, str): x = x.encode()
    if isinstance(x, bytes): return b"%d:%s" % (len(x), x)
    if isinstance(x, list): return b"l" + b"".join(benc(i) for i in x) + b"e"
    return b"d" + b"".join(benc(k) + benc(x[k]) for k in sorted(x)) + b"e"
def sdp(ip, port):
    return ("v=0\r\no=- 1 1 IN IP4 %s\r\ns=t\r\nc=IN IP4 %s\r\nt=0 0\r\n"
            "m=audio %d RTP/AVP 0\r\na=rtpmap:0 PCMU/8000\r\n") % (ip, ip, port)
ng = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
ng.settimeout(3)
def cmd(ck, d):
    ng.sendto(ck + b" " + benc(d), (relay, ng_port))
    r = ng.recv(65535)
    assert r.startswith(ck + b" "), r
    return r
def media(r):
    t = r.decode(errors="replace")
    port = int(t.split("m=audio ")[1].split(" ")[0])
    return port
ro = cmd(b"o1", {"command": "offer", "call-id": "x1", "from-tag": "fa", "sdp": sdp(a_ip, 5000)})
rb = media(ro)   # B sends here
ra = media(cmd(b"a1", {"command": "answer", "call-id": "x1", "from-tag": "fa", "to-tag": "tb", "sdp": sdp(b_ip, 6000)}))
sa = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); sa.bind((a_ip, 5000)); sa.settimeout(0.5)
sb = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); sb.bind((b_ip, 6000)); sb.settimeout(0.5)
for s_ in (sa, sb):  # room for all N before draining (SO_RCVBUFFORCE: root)
    s_.setsockopt(socket.SOL_SOCKET, 33, 8 << 20)
time.sleep(0.05)  # the workers apply the answer's remote address between batches
def pkt(ssrc, k):
    return struct.pack("!BBHII", 0x80, 0, k & 0xffff, 160 * k, ssrc) + struct.pack("!I", k) + b"\xff" * 156
for k in range(n):
    sa.sendto(pkt(0x1111, k), (relay, ra))
    sb.sendto(pkt(0x2222, k), (relay, rb))
    if k % 20 == 19: time.sleep(0.005)
def drain(s, src):
    got, ssrcs, order = [], set(), True
    while len(got) < n:
        try: d, f = s.recvfrom(2048)
        except socket.timeout: break
        if f != src: continue
        ssrcs.add(struct.unpack("!I", d[8:12])[0])
        got.append(struct.unpack("!I", d[12:16])[0])
    return {"n": len(got), "in_order": got == sorted(got), "ssrcs": len(ssrcs), "first": got[:1]}
out = {"to_b": drain(sb, (relay, rb)), "to_a": drain(sa, (relay, ra))}
cmd(b"d1", {"command": "delete", "call-id": "x1"})
print(json.dumps(out))
"#;

/// tandemd, killed when dropped still running: a failed check must not
/// leave it (and its XDP program) behind.
struct Daemon(std::process::Child);

impl std::ops::Deref for Daemon {
    type Target = std::process::Child;
    fn deref(&self) -> &std::process::Child {
        &self.0
    }
}

impl std::ops::DerefMut for Daemon {
    fn deref_mut(&mut self) -> &mut std::process::Child {
        &mut self.0
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        if let Ok(None) = self.0.try_wait() {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
}

fn start(ns: &Netns, dir: &TempDir, ng_port: u16) -> Daemon {
    let conf = dir.path("tandem.toml");
    std::fs::write(
        &conf,
        format!(
            "[sip]\nlisten = [\"udp:127.0.0.1:5060\"]\n\
             [dataplane]\nbackend = \"xdp\"\ncores = [0]\nrtp_ports = \"40000-40099\"\n\
             media_ip = \"{RELAY}\"\nxdp_interface = \"xr0\"\nxdp_queues = [0]\n\
             xdp_attach = \"auto\"\nxdp_zero_copy = true\n\
             [mgmt]\nsocket = \"{}\"\n[ng]\nlisten = \"udp:{RELAY}:{ng_port}\"\n",
            dir.path("tandemd.sock").display()
        ),
    )
    .unwrap();
    // `ip netns exec` execs tandemd: the child's pid is tandemd's.
    Command::new("ip")
        .args(["netns", "exec", &ns.relay])
        .arg(env!("CARGO_BIN_EXE_tandemd"))
        .arg("--config")
        .arg(&conf)
        .stdout(std::fs::File::create(dir.path("stdout.log")).unwrap())
        .stderr(std::fs::File::create(dir.path("stderr.log")).unwrap())
        .spawn()
        .map(Daemon)
        .expect("start tandemd")
}

fn ctl(dir: &TempDir, args: &[&str]) -> Option<String> {
    let o = Command::new(env!("CARGO_BIN_EXE_tandemctl"))
        .arg("--socket")
        .arg(dir.path("tandemd.sock"))
        .args(args)
        .output()
        .ok()?;
    o.status
        .success()
        .then(|| String::from_utf8_lossy(&o.stdout).to_string())
}

fn wait_ready(dir: &TempDir, child: &mut std::process::Child) {
    let t0 = Instant::now();
    while ctl(dir, &["show", "workers"]).is_none() {
        if let Ok(Some(st)) = child.try_wait() {
            panic!(
                "tandemd exited ({st}): {}",
                std::fs::read_to_string(dir.path("stderr.log")).unwrap_or_default()
            );
        }
        assert!(t0.elapsed() < Duration::from_secs(20), "tandemd not ready");
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn wait_exit(child: &mut std::process::Child) -> Option<i32> {
    let t0 = Instant::now();
    while t0.elapsed() < Duration::from_secs(15) {
        if let Ok(Some(st)) = child.try_wait() {
            return st.code();
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let _ = child.kill();
    panic!("tandemd did not exit");
}

#[test]
fn tandemd_relays_over_xdp_and_detaches() {
    let Some(ns) = Netns::create() else { return };
    if !Command::new("python3")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success())
    {
        eprintln!("SKIP: python3 missing");
        return;
    }
    // The fast path (on by default) sends with XDP_TX: the peer's veth end
    // needs an XDP program to receive those frames.
    let _peer_prog = dataplane::io::xdp::peer::attach_pass(
        Some(std::path::Path::new(&format!("/var/run/netns/{}", ns.peer))),
        "xp0",
    )
    .expect("pass program on the peer's veth end");
    let dir = TempDir::new("xdp-tandemd");
    let ng_port = 2223;
    let mut child = start(&ns, &dir, ng_port);
    wait_ready(&dir, &mut child);
    assert!(xdp_attached(&ns.relay), "program attached while running");
    let workers = ctl(&dir, &["show", "workers"]).unwrap();
    assert!(
        workers.contains("backend: xdp (configured: xdp)"),
        "{workers}"
    );

    const N: usize = 500;
    let out = Command::new("ip")
        .args(["netns", "exec", &ns.peer, "python3", "-c", PHONES])
        .args([
            RELAY,
            PHONE_A,
            PHONE_B,
            &ng_port.to_string(),
            &N.to_string(),
        ])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(
        out.status.success(),
        "phones: {}\n{text}\n{}",
        String::from_utf8_lossy(&out.stderr),
        std::fs::read_to_string(dir.path("stderr.log")).unwrap_or_default()
    );
    let r: serde_json::Value = serde_json::from_str(text.trim()).expect("phones JSON");
    eprintln!("phones through tandemd/xdp: {r}");
    let shown = ctl(&dir, &["--json", "show", "workers"]).unwrap_or_default();
    let w: serde_json::Value = serde_json::from_str(&shown).expect("workers JSON");
    assert_eq!(w[0]["backend"], "xdp", "{shown}");
    assert_eq!(w[0]["queue"], 0, "{shown}");
    assert!(
        w[0]["packets_out"].as_u64() >= Some(2 * N as u64),
        "{shown}"
    );
    for dir_ in ["to_a", "to_b"] {
        assert_eq!(r[dir_]["n"], N, "{dir_} all delivered: {r}");
        assert_eq!(r[dir_]["in_order"], true, "{dir_} in order: {r}");
        assert_eq!(r[dir_]["ssrcs"], 1, "{dir_} one rewritten SSRC: {r}");
    }

    // SIGTERM: clean exit, program detached.
    unsafe_kill(child.id(), "TERM");
    assert_eq!(wait_exit(&mut child), Some(0));
    assert!(!xdp_attached(&ns.relay), "program gone after exit");

    // kill -9: the kernel drops the BPF link with the process.
    let mut child = start(&ns, &dir, ng_port);
    wait_ready(&dir, &mut child);
    assert!(xdp_attached(&ns.relay));
    let _ = child.kill();
    let _ = child.wait();
    std::thread::sleep(Duration::from_millis(200));
    assert!(!xdp_attached(&ns.relay), "program gone after kill -9");

    // And the next start works.
    let mut child = start(&ns, &dir, ng_port);
    wait_ready(&dir, &mut child);
    assert!(xdp_attached(&ns.relay));
    unsafe_kill(child.id(), "TERM");
    assert_eq!(wait_exit(&mut child), Some(0));
    assert!(!xdp_attached(&ns.relay));
}
