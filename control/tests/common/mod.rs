//! Test harness: a real `tandemd` on loopback with a config written per test,
//! and real baresip UAs driven by `../shared/peers/sipua/sipua.py`.
#![allow(dead_code)]

use std::fs;
use std::io::{BufRead, BufReader, Read};
use std::net::UdpSocket;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU16, Ordering};
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

pub fn shared() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../shared")
}

pub fn sipua() -> PathBuf {
    shared().join("peers/sipua/sipua.py")
}

/// Tests that start baresip run one at a time (2-core machines).
static SERIAL: Mutex<()> = Mutex::new(());

pub fn serial() -> MutexGuard<'static, ()> {
    SERIAL.lock().unwrap_or_else(|e| e.into_inner())
}

/// Skip (with a message) when baresip or the peer wrapper is missing.
pub fn have_baresip() -> bool {
    let ok = Command::new("baresip")
        .arg("-h")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok()
        && sipua().exists();
    if !ok {
        eprintln!(
            "SKIP: baresip or {} missing (scripts/test.sh installs baresip-core)",
            sipua().display()
        );
    }
    ok
}

pub fn free_udp_port() -> u16 {
    let s = UdpSocket::bind("127.0.0.1:0").unwrap();
    s.local_addr().unwrap().port()
}

static RTP_BASE: AtomicU16 = AtomicU16::new(0);

fn rtp_range() -> (u16, u16) {
    // Distinct RTP ranges per daemon in this process, away from baresip's 40000-49999.
    let n = RTP_BASE.fetch_add(1, Ordering::SeqCst);
    let pid_slot = (std::process::id() % 20) as u16;
    let base = 20000 + pid_slot * 900 + n * 100;
    (base, base + 99)
}

pub struct TempDir(pub PathBuf);

impl TempDir {
    pub fn new(name: &str) -> TempDir {
        let p = std::env::temp_dir().join(format!(
            "tandem-{name}-{}-{}",
            std::process::id(),
            RTP_BASE.load(Ordering::SeqCst)
        ));
        let _ = fs::remove_dir_all(&p);
        fs::create_dir_all(&p).unwrap();
        TempDir(p)
    }
    pub fn path(&self, f: &str) -> PathBuf {
        self.0.join(f)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        if std::env::var_os("TANDEM_KEEP").is_none() {
            let _ = fs::remove_dir_all(&self.0);
        }
    }
}

pub struct Daemon {
    pub child: Child,
    pub sip_port: u16,
    pub socket: PathBuf,
    pub dir: TempDir,
    pub log: PathBuf,
}

impl Daemon {
    /// Start tandemd with users 1001-1004 (password `pw<user>`), `extra` appended to the
    /// config, and `dialplan` (extensions.conf text) if given.
    pub fn start(name: &str, dialplan: Option<&str>, extra: &str) -> Daemon {
        Daemon::start_full(name, dialplan, extra, &|_| String::new(), "")
    }

    /// [`Daemon::start`] with `user_extra(user)` appended to each `[[sip.user]]` table
    /// (e.g. `codecs = ["g729"]` for one user).
    pub fn start_with_users(
        name: &str,
        dialplan: Option<&str>,
        extra: &str,
        user_extra: &dyn Fn(u32) -> String,
    ) -> Daemon {
        Daemon::start_full(name, dialplan, extra, user_extra, "")
    }

    /// The general form: `sip_extra` goes into the `[sip]` table (extra listeners
    /// are given as `listen = [...]` there and replace the default UDP one, which is
    /// then `{udp}` in the text).
    pub fn start_full(
        name: &str,
        dialplan: Option<&str>,
        extra: &str,
        user_extra: &dyn Fn(u32) -> String,
        sip_extra: &str,
    ) -> Daemon {
        let dir = TempDir::new(name);
        let sip_port = free_udp_port();
        let (lo, hi) = rtp_range();
        let socket = dir.path("tandemd.sock");
        let udp = format!("udp:127.0.0.1:{sip_port}");
        let mut cfg = if sip_extra.contains("listen") {
            format!(
                "[sip]\nrealm = \"tandem\"\n{}\n",
                sip_extra.replace("{udp}", &udp)
            )
        } else {
            format!("[sip]\nlisten = [\"{udp}\"]\nrealm = \"tandem\"\n{sip_extra}\n")
        };
        for u in 1001..=1004u32 {
            cfg.push_str(&format!(
                "[[sip.user]]\nname = \"{u}\"\npassword = \"pw{u}\"\n{}",
                user_extra(u)
            ));
        }
        cfg.push_str(&format!(
            "[dataplane]\nbackend = \"socket\"\ncores = [0]\nrtp_ports = \"{lo}-{hi}\"\nmedia_ip = \"127.0.0.1\"\n"
        ));
        if let Some(text) = dialplan {
            fs::write(dir.path("extensions.conf"), text).unwrap();
            cfg.push_str("[dialplan]\nfile = \"extensions.conf\"\ncontext = \"default\"\n");
        }
        cfg.push_str(&format!("[mgmt]\nsocket = \"{}\"\n", socket.display()));
        cfg.push_str(extra);
        let conf = dir.path("tandem.toml");
        fs::write(&conf, cfg).unwrap();
        let log = dir.path("tandemd.log");
        let child = Command::new(env!("CARGO_BIN_EXE_tandemd"))
            .arg("--config")
            .arg(&conf)
            .stdout(Stdio::piped())
            .stderr(fs::File::create(&log).unwrap())
            .spawn()
            .expect("start tandemd");
        let mut d = Daemon {
            child,
            sip_port,
            socket,
            dir,
            log,
        };
        d.wait_ready();
        d
    }

    /// Start tandemd with no `[[sip.user]]` at all (users come from `extra`, e.g. a
    /// `[radius]` section); relative paths in `extra` resolve against the daemon's directory.
    pub fn start_no_users(name: &str, dialplan: Option<&str>, extra: &str) -> Daemon {
        let dir = TempDir::new(name);
        let sip_port = free_udp_port();
        let (lo, hi) = rtp_range();
        let socket = dir.path("tandemd.sock");
        let mut cfg =
            format!("[sip]\nlisten = [\"udp:127.0.0.1:{sip_port}\"]\nrealm = \"tandem\"\n");
        cfg.push_str(&format!(
            "[dataplane]\nbackend = \"socket\"\ncores = [0]\nrtp_ports = \"{lo}-{hi}\"\nmedia_ip = \"127.0.0.1\"\n"
        ));
        if let Some(text) = dialplan {
            fs::write(dir.path("extensions.conf"), text).unwrap();
            cfg.push_str("[dialplan]\nfile = \"extensions.conf\"\ncontext = \"default\"\n");
        }
        cfg.push_str(&format!("[mgmt]\nsocket = \"{}\"\n", socket.display()));
        cfg.push_str(extra);
        fs::write(dir.path("tandem.toml"), cfg).unwrap();
        let log = dir.path("tandemd.log");
        let child = Self::spawn_tandemd(&dir, &log);
        let mut d = Daemon {
            child,
            sip_port,
            socket,
            dir,
            log,
        };
        d.wait_ready();
        d
    }

    fn spawn_tandemd(dir: &TempDir, log: &Path) -> Child {
        let log = fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(log)
            .unwrap();
        Command::new(env!("CARGO_BIN_EXE_tandemd"))
            .arg("--config")
            .arg(dir.path("tandem.toml"))
            .stdout(Stdio::piped())
            .stderr(log)
            .spawn()
            .expect("start tandemd")
    }

    /// Stop tandemd (SIGTERM) and start it again with the same config, directory and port;
    /// the log is appended to.
    pub fn restart(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            self.terminate();
        }
        self.child = Self::spawn_tandemd(&self.dir, &self.log);
        self.wait_ready();
    }

    fn wait_ready(&mut self) {
        let out = self.child.stdout.take().unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let mut r = BufReader::new(out);
            let mut line = String::new();
            while r.read_line(&mut line).map(|n| n > 0).unwrap_or(false) {
                if line.contains("ready") {
                    let _ = tx.send(());
                }
                line.clear();
            }
        });
        if rx.recv_timeout(Duration::from_secs(20)).is_err() {
            panic!("tandemd did not become ready; log:\n{}", self.log_text());
        }
    }

    pub fn registrar(&self) -> String {
        format!("127.0.0.1:{}", self.sip_port)
    }

    pub fn log_text(&self) -> String {
        fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Run tandemctl against this daemon; returns (exit code, stdout).
    pub fn ctl(&self, args: &[&str]) -> (i32, String) {
        let out = Command::new(env!("CARGO_BIN_EXE_tandemctl"))
            .arg("--socket")
            .arg(&self.socket)
            .args(args)
            .output()
            .expect("run tandemctl");
        (
            out.status.code().unwrap_or(-1),
            String::from_utf8_lossy(&out.stdout).into_owned(),
        )
    }

    pub fn ctl_json(&self, args: &[&str]) -> serde_json::Value {
        let mut a = args.to_vec();
        a.push("--json");
        let (code, out) = self.ctl(&a);
        assert_eq!(code, 0, "tandemctl {args:?} failed: {out}");
        serde_json::from_str(&out).unwrap_or_else(|e| panic!("tandemctl json: {e}: {out}"))
    }

    /// Poll until `f` holds (bounded).
    pub fn wait_for(&self, what: &str, secs: u64, mut f: impl FnMut(&Daemon) -> bool) {
        let end = Instant::now() + Duration::from_secs(secs);
        while Instant::now() < end {
            if f(self) {
                return;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        panic!(
            "timed out waiting for {what}; tandemd log:\n{}",
            self.log_text()
        );
    }

    pub fn active_calls(&self) -> usize {
        self.ctl_json(&["show", "calls"])
            .as_array()
            .map_or(0, |a| a.len())
    }

    /// SIGTERM and wait; returns the exit code.
    pub fn terminate(&mut self) -> i32 {
        unsafe_kill(self.child.id(), "TERM");
        let end = Instant::now() + Duration::from_secs(15);
        while Instant::now() < end {
            if let Ok(Some(st)) = self.child.try_wait() {
                return st.code().unwrap_or(-1);
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.child.kill();
        panic!(
            "tandemd did not exit after SIGTERM; log:\n{}",
            self.log_text()
        );
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if std::thread::panicking() {
            eprintln!("--- tandemd log ---\n{}", self.log_text());
        }
    }
}

/// Send a signal with the `kill` command (no unsafe in tests).
pub fn unsafe_kill(pid: u32, sig: &str) {
    let _ = Command::new("kill")
        .arg(format!("-{sig}"))
        .arg(pid.to_string())
        .status();
}

/// A sipua.py process writing JSON lines to a file.
pub struct Ua {
    pub child: Child,
    pub out: PathBuf,
    pub name: String,
}

impl Ua {
    /// Starts sipua.py and waits until its baresip runs. The wrapper gives
    /// baresip 8 s to open its control port; on a loaded machine that can
    /// pass, so such a start failure is retried (up to three starts); any
    /// other outcome is the test's to judge.
    pub fn spawn(dir: &TempDir, name: &str, args: &[String]) -> Ua {
        let mut tries = 0;
        loop {
            tries += 1;
            let mut ua = Ua::spawn_once(dir, name, args);
            let end = Instant::now() + Duration::from_secs(60);
            let failed_start = loop {
                let ev = ua.events();
                if ev.iter().any(|e| e["event"] == "started") || Instant::now() > end {
                    break false;
                }
                if ev.iter().any(|e| {
                    e["event"] == "error"
                        && e["reason"]
                            .as_str()
                            .is_some_and(|r| r.starts_with("baresip start failed"))
                }) {
                    break true;
                }
                if let Ok(Some(_)) = ua.child.try_wait() {
                    break false;
                }
                std::thread::sleep(Duration::from_millis(50));
            };
            if !failed_start || tries == 3 {
                return ua;
            }
            eprintln!(
                "{name}: baresip start failed ({:?}), starting again",
                ua.events()
            );
            let _ = ua.child.kill();
            let _ = ua.child.wait();
        }
    }

    fn spawn_once(dir: &TempDir, name: &str, args: &[String]) -> Ua {
        let out = dir.path(&format!("{name}.jsonl"));
        let log = dir.path(&format!("{name}.baresip.log"));
        let child = Command::new("python3")
            .arg(sipua())
            .args(args)
            .arg("--log")
            .arg(&log)
            .arg("--sip-trace")
            .stdout(fs::File::create(&out).unwrap())
            .stderr(fs::File::create(dir.path(&format!("{name}.stderr"))).unwrap())
            .stdin(Stdio::null())
            .spawn()
            .expect("start sipua.py");
        Ua {
            child,
            out,
            name: name.to_string(),
        }
    }

    pub fn events(&self) -> Vec<serde_json::Value> {
        let mut s = String::new();
        if let Ok(mut f) = fs::File::open(&self.out) {
            let _ = f.read_to_string(&mut s);
        }
        s.lines()
            .filter_map(|l| serde_json::from_str(l).ok())
            .collect()
    }

    pub fn event(&self, name: &str) -> Option<serde_json::Value> {
        self.events().into_iter().find(|e| e["event"] == name)
    }

    pub fn wait_event(&self, name: &str, secs: u64) -> serde_json::Value {
        let end = Instant::now() + Duration::from_secs(secs);
        while Instant::now() < end {
            if let Some(e) = self.event(name) {
                return e;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        panic!(
            "{}: no '{name}' event in {secs}s; events: {:?}",
            self.name,
            self.events()
        );
    }

    /// Wait for exit; returns the exit code.
    pub fn wait(&mut self, secs: u64) -> i32 {
        let end = Instant::now() + Duration::from_secs(secs);
        while Instant::now() < end {
            if let Ok(Some(st)) = self.child.try_wait() {
                return st.code().unwrap_or(-1);
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        let _ = self.child.kill();
        panic!(
            "{}: did not exit in {secs}s; events: {:?}",
            self.name,
            self.events()
        );
    }
}

impl Drop for Ua {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            unsafe_kill(self.child.id(), "TERM");
            std::thread::sleep(Duration::from_millis(300));
            let _ = self.child.kill();
        }
        let _ = self.child.wait();
    }
}

/// `sipua.py gen`.
pub fn gen(out: &Path, kind: &str, seconds: f64, seed: u32) {
    let st = Command::new("python3")
        .arg(sipua())
        .args([
            "gen",
            &out.display().to_string(),
            "--kind",
            kind,
            "--seconds",
            &seconds.to_string(),
        ])
        .args(["--seed", &seed.to_string()])
        .stdout(Stdio::null())
        .status()
        .unwrap();
    assert!(st.success());
}

/// `sipua.py analyze REF REC`: returns the JSON verdict.
pub fn analyze(reference: &Path, rec: &Path) -> serde_json::Value {
    let out = Command::new("python3")
        .arg(sipua())
        .args([
            "analyze",
            &reference.display().to_string(),
            &rec.display().to_string(),
        ])
        .output()
        .unwrap();
    let s = String::from_utf8_lossy(&out.stdout);
    serde_json::from_str(s.trim()).unwrap_or_else(|e| panic!("analyze output {s:?}: {e}"))
}

pub fn s(v: &str) -> String {
    v.to_string()
}

/// Common UA arguments for a registered user of a test daemon.
pub fn ua_args(d: &Daemon, mode: &str, user: u32) -> Vec<String> {
    vec![
        s(mode),
        s("--registrar"),
        d.registrar(),
        s("--user"),
        user.to_string(),
        s("--password"),
        format!("pw{user}"),
    ]
}
