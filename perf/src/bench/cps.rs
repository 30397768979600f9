//! `tandem-bench cps`: SIP call setup rate of `tandemd` as a B2BUA (no media) side by side with
//! Kamailio as a stateful proxy, in one run on the same machine.
//!
//! For each target the bench starts the server itself on free loopback ports (a generated
//! `tandem.toml`, or a generated `kamailio.cfg` with one SIP worker process so both have one
//! control core), registers users 1001-1004 through it, then drives [`Mode::Cps`]: a closed
//! window of calls, each INVITE / 100 / 180 / 200 / ACK then BYE / 200 between two bench users
//! through the target, with no RTP. The result is call setups per second for each target and
//! their ratio.
//!
//! Kamailio's script (below) is the textbook stateful proxy: `save`/`lookup` on an in-memory
//! location table, `t_relay` for every request, in-dialog requests relayed to their
//! Request-URI (the bench sends every request to its target), no authentication.
//! `tandemd` authenticates every INVITE with digest (a 401 round trip), runs its dialplan,
//! opens a B leg and allocates a media session on the dataplane: it does more per call.

use std::io::{BufRead, BufReader};
use std::net::{SocketAddr, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use super::{Account, BenchError, Mode, Options, Report};

/// A server to measure.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Target {
    Tandemd,
    Kamailio,
}

impl Target {
    pub fn name(self) -> &'static str {
        match self {
            Target::Tandemd => "tandemd",
            Target::Kamailio => "kamailio",
        }
    }
}

/// What a `cps` run needs.
#[derive(Debug, Clone)]
pub struct CpsOptions {
    pub targets: Vec<Target>,
    /// Calls per target.
    pub calls: usize,
    /// Calls in progress at most.
    pub window: usize,
    pub tandemd: PathBuf,
    pub kamailio: PathBuf,
    /// Bound on each target's placing phase.
    pub max_time: Duration,
    pub progress: bool,
}

/// One target's figures.
#[derive(Debug, Clone, serde::Serialize)]
pub struct CpsResult {
    pub target: Target,
    pub attempts: u64,
    pub answered: u64,
    pub failed: u64,
    /// Failed attempts by SIP status or reason.
    pub failures_by_code: std::collections::BTreeMap<String, u64>,
    pub completed: u64,
    /// Call setups per second over the placing phase.
    pub setups_per_s: f64,
    pub setup_ms_p50: f64,
    pub setup_ms_p99: f64,
    /// Server CPU (all its threads/processes sampled from /proc), percent of one core.
    pub server_cpu_pct: Option<f64>,
}

/// Runs every target in turn and returns their results.
pub fn run(o: &CpsOptions) -> Result<Vec<CpsResult>, BenchError> {
    let mut out = Vec::new();
    for &t in &o.targets {
        let dir = std::env::temp_dir().join(format!(
            "tandem-bench-cps-{}-{}",
            t.name(),
            std::process::id()
        ));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).map_err(|e| io("temporary directory", e))?;
        let server = start(t, o, &dir)?;
        let r = super::run::run(Options {
            mode: Mode::Cps,
            target: server.sip,
            users: users(),
            calls: o.calls,
            window: o.window,
            duration: Duration::ZERO,
            max_time: o.max_time,
            media: false,
            sources: 4,
            pid: Some(server.child.id()),
            progress: o.progress,
            ..Options::default()
        });
        drop(server);
        let _ = std::fs::remove_dir_all(&dir);
        out.push(result(t, &r?));
    }
    Ok(out)
}

/// The human summary: one line per target and the ratio.
pub fn summary(rs: &[CpsResult]) -> String {
    let mut s = String::new();
    for r in rs {
        s.push_str(&format!(
            "{:9} {:8.0} call setups/s  ({} of {} answered, {} failed{}; setup p50 {:.1} ms p99 \
             {:.1} ms{})\n",
            r.target.name(),
            r.setups_per_s,
            r.answered,
            r.attempts,
            r.failed,
            if r.failures_by_code.is_empty() {
                String::new()
            } else {
                format!(" {:?}", r.failures_by_code)
            },
            r.setup_ms_p50,
            r.setup_ms_p99,
            r.server_cpu_pct
                .map_or(String::new(), |c| format!("; server CPU {c:.0}%"))
        ));
    }
    let get = |t| rs.iter().find(|r| r.target == t);
    if let (Some(a), Some(b)) = (get(Target::Tandemd), get(Target::Kamailio)) {
        if b.setups_per_s > 0.0 {
            s.push_str(&format!(
                "ratio tandemd / kamailio: {:.2}\n",
                a.setups_per_s / b.setups_per_s
            ));
        }
    }
    s
}

fn result(target: Target, r: &Report) -> CpsResult {
    let setups_per_s = if r.attempts > 0 {
        r.attempts_per_s * r.answered as f64 / r.attempts as f64
    } else {
        0.0
    };
    CpsResult {
        target,
        attempts: r.attempts,
        answered: r.answered,
        failed: r.failed,
        failures_by_code: r.failures_by_code.clone(),
        completed: r.completed,
        setups_per_s,
        setup_ms_p50: r.setup_ms.p50,
        setup_ms_p99: r.setup_ms.p99,
        server_cpu_pct: r
            .cpu
            .as_ref()
            .map(|c| c.total_mean_pct)
            .filter(|&c| c > 0.0),
    }
}

fn users() -> Vec<Account> {
    (1001..=1004)
        .map(|u| Account {
            name: u.to_string(),
            password: format!("tandem{u}"),
        })
        .collect()
}

fn io(what: &str, source: std::io::Error) -> BenchError {
    BenchError::Io {
        what: what.to_string(),
        source,
    }
}

/// A server the bench started; killed on drop.
struct Server {
    child: Child,
    sip: SocketAddr,
}

impl Drop for Server {
    fn drop(&mut self) {
        // SIGKILL: both servers keep no state worth a clean stop here.
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn free_port() -> Result<u16, BenchError> {
    UdpSocket::bind("127.0.0.1:0")
        .and_then(|s| s.local_addr())
        .map(|a| a.port())
        .map_err(|e| io("free UDP port", e))
}

fn start(t: Target, o: &CpsOptions, dir: &Path) -> Result<Server, BenchError> {
    let port = free_port()?;
    let sip = SocketAddr::from(([127, 0, 0, 1], port));
    let (bin, args, cfg_name, cfg) = match t {
        Target::Tandemd => {
            let cfg = tandemd_config(port, dir)?;
            let path = dir.join("tandem.toml");
            (
                o.tandemd.clone(),
                vec!["--config".to_string(), path.display().to_string()],
                "tandem.toml",
                cfg,
            )
        }
        Target::Kamailio => {
            let path = dir.join("kamailio.cfg");
            (
                o.kamailio.clone(),
                vec![
                    "-f".to_string(),
                    path.display().to_string(),
                    "-DD".into(),
                    "-E".into(),
                    "-Y".into(),
                    dir.display().to_string(),
                    "-m".into(),
                    "256".into(),
                ],
                "kamailio.cfg",
                kamailio_config(port),
            )
        }
    };
    std::fs::write(dir.join(cfg_name), cfg).map_err(|e| io(cfg_name, e))?;
    if !bin.exists() {
        return Err(BenchError::Options(format!(
            "{}: {} not found (build it, or install it: apt-get install kamailio)",
            t.name(),
            bin.display()
        )));
    }
    let log = std::fs::File::create(dir.join("server.log")).map_err(|e| io("server log", e))?;
    let child = Command::new(&bin)
        .args(&args)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .map_err(|e| io(&format!("start {}", bin.display()), e))?;
    let server = Server { child, sip };
    if !answers(sip) {
        let tail = std::fs::File::open(dir.join("server.log"))
            .map(|f| {
                BufReader::new(f)
                    .lines()
                    .map_while(Result::ok)
                    .take(20)
                    .collect::<Vec<_>>()
                    .join("\n")
            })
            .unwrap_or_default();
        return Err(BenchError::Options(format!(
            "{} did not answer SIP on {sip} within 10 s:\n{tail}",
            t.name()
        )));
    }
    Ok(server)
}

/// Whether `sip` answers an OPTIONS (any response) within 10 s.
fn answers(sip: SocketAddr) -> bool {
    let Ok(probe) = UdpSocket::bind("127.0.0.1:0") else {
        return false;
    };
    let _ = probe.set_read_timeout(Some(Duration::from_millis(100)));
    let Ok(local) = probe.local_addr() else {
        return false;
    };
    let msg = format!(
        "OPTIONS sip:{sip} SIP/2.0\r\nVia: SIP/2.0/UDP {local};branch=z9hG4bKcpsprobe\r\n\
         From: <sip:probe@{local}>;tag=p\r\nTo: <sip:{sip}>\r\nCall-ID: cps-probe\r\n\
         CSeq: 1 OPTIONS\r\nMax-Forwards: 70\r\nContent-Length: 0\r\n\r\n"
    );
    let mut buf = [0u8; 4096];
    for _ in 0..100 {
        let _ = probe.send_to(msg.as_bytes(), sip);
        if probe.recv_from(&mut buf).is_ok() {
            return true;
        }
    }
    false
}

fn tandemd_config(port: u16, dir: &Path) -> Result<String, BenchError> {
    // Each call holds two RTP/RTCP port pairs (A and B side) until its session is freed: 10 000
    // ports keep 2 500 calls, far above any window (a small range answers 503 when full).
    let rtp = 20_000;
    let mut cfg = format!("[sip]\nlisten = [\"udp:127.0.0.1:{port}\"]\nrealm = \"tandem\"\n");
    for u in users() {
        cfg.push_str(&format!(
            "[[sip.user]]\nname = \"{}\"\npassword = \"{}\"\n",
            u.name, u.password
        ));
    }
    // The bench's sources are trusted (no per-source rate limit) and the caps do not bind.
    let allow: Vec<String> = (1..=4)
        .map(|k| format!("\"127.0.1.{k}\""))
        .chain(["\"127.0.0.1\"".to_string()])
        .collect();
    cfg.push_str(&format!(
        "[sip.limits]\nmax_dialogs = 100000\nmax_transactions = 100000\nallow = [{}]\n",
        allow.join(", ")
    ));
    cfg.push_str(&format!(
        "[dataplane]\nbackend = \"socket\"\ncores = [0]\nrtp_ports = \"{rtp}-{}\"\n\
         media_ip = \"127.0.0.1\"\n[mgmt]\nsocket = \"{}\"\n",
        rtp + 9_999,
        dir.join("tandemd.sock").display()
    ));
    Ok(cfg)
}

/// Kamailio 5.6 as a stateful proxy with an in-memory registrar, one SIP worker process.
fn kamailio_config(port: u16) -> String {
    format!(
        r#"#!KAMAILIO
# Generated by tandem-bench cps: a stateful proxy with an in-memory registrar.
debug=1
log_stderror=yes
children=1
listen=udp:127.0.0.1:{port}
disable_tcp=yes
enable_sctp=no
auto_aliases=no
dns=no
rev_dns=no
use_dns_cache=off
dns_try_ipv6=no
dns_try_naptr=no

loadmodule "tm.so"
loadmodule "sl.so"
loadmodule "rr.so"
loadmodule "pv.so"
loadmodule "maxfwd.so"
loadmodule "siputils.so"
loadmodule "textops.so"
loadmodule "usrloc.so"
loadmodule "registrar.so"

modparam("usrloc", "db_mode", 0)
modparam("tm", "fr_timer", 5000)

request_route {{
    if (!mf_process_maxfwd_header("10")) {{
        sl_send_reply("483", "Too Many Hops");
        exit;
    }}
    if (has_totag()) {{
        # In-dialog (ACK, BYE): the bench sends every request through us, to its
        # Request-URI (the peer's Contact).
        loose_route();
        t_relay();
        exit;
    }}
    if (is_method("CANCEL")) {{
        if (t_check_trans()) {{
            t_relay();
        }}
        exit;
    }}
    if (t_check_trans()) {{
        exit;
    }}
    if (is_method("REGISTER")) {{
        save("location");
        exit;
    }}
    if (!lookup("location")) {{
        sl_send_reply("404", "Not Found");
        exit;
    }}
    t_relay();
}}
"#
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn summary_prints_each_target_and_the_ratio() {
        let r = |target, cps| CpsResult {
            target,
            attempts: 100,
            answered: 100,
            failed: 0,
            failures_by_code: Default::default(),
            completed: 100,
            setups_per_s: cps,
            setup_ms_p50: 1.0,
            setup_ms_p99: 2.0,
            server_cpu_pct: None,
        };
        let s = summary(&[r(Target::Tandemd, 500.0), r(Target::Kamailio, 1000.0)]);
        assert!(s.contains("tandemd        500 call setups/s"), "{s}");
        assert!(s.contains("kamailio      1000 call setups/s"), "{s}");
        assert!(s.contains("ratio tandemd / kamailio: 0.50"), "{s}");
        assert!(!summary(&[r(Target::Tandemd, 5.0)]).contains("ratio"));
    }

    #[test]
    fn configs_name_the_port() {
        assert!(kamailio_config(5999).contains("listen=udp:127.0.0.1:5999"));
        let t = tandemd_config(5998, Path::new("/tmp/x")).unwrap();
        assert!(t.contains("udp:127.0.0.1:5998"));
        assert!(t.contains("\"127.0.1.4\""));
    }
}
