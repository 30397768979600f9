//! The FreeRADIUS harness shared by the RADIUS tests: find the server, write a
//! minimal config (digest module, detail file, clients with the test secret)
//! with a given users file, and start it on a free port pair of loopback.

#![allow(dead_code)]

use std::net::UdpSocket;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub const SECRET: &str = "tandem-test-secret";

pub fn freeradius() -> Option<PathBuf> {
    ["/usr/sbin/freeradius", "/usr/sbin/radiusd"]
        .iter()
        .map(PathBuf::from)
        .find(|p| p.exists())
}

pub fn free_udp_pair() -> u16 {
    // Two consecutive free ports (auth, acct); retry a few random bases.
    for _ in 0..50 {
        let s = UdpSocket::bind("127.0.0.1:0").unwrap();
        let p = s.local_addr().unwrap().port();
        if p < 65_000 && UdpSocket::bind(("127.0.0.1", p + 1)).is_ok() {
            return p;
        }
    }
    panic!("no free UDP port pair on loopback");
}

pub struct Radiusd {
    child: Child,
}

impl Drop for Radiusd {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub fn write_config(dir: &Path, port: u16, users: &str) {
    let d = dir.display();
    std::fs::create_dir_all(dir.join("acct")).unwrap();
    std::fs::create_dir_all(dir.join("run")).unwrap();
    std::fs::write(dir.join("dictionary"), "").unwrap();
    std::fs::write(dir.join("users"), users).unwrap();
    let conf = format!(
        r#"
prefix = /usr
exec_prefix = /usr
sysconfdir = /etc
localstatedir = /var
sbindir = /usr/sbin
logdir = {d}
raddbdir = {d}
radacctdir = {d}/acct
name = freeradius
confdir = {d}
modconfdir = {d}
run_dir = {d}/run
db_dir = {d}
libdir = /usr/lib/freeradius
pidfile = {d}/run/radiusd.pid
max_request_time = 30
cleanup_delay = 2
max_requests = 1024
hostname_lookups = no
log {{
    destination = files
    file = {d}/radius.log
    auth = yes
}}
security {{
    allow_core_dumps = no
    max_attributes = 200
    reject_delay = 0
    status_server = no
}}
thread pool {{
    start_servers = 2
    max_servers = 4
    min_spare_servers = 1
    max_spare_servers = 3
    max_requests_per_server = 0
}}
client loopback {{
    ipaddr = 127.0.0.1
    secret = {SECRET}
    require_message_authenticator = yes
}}
modules {{
    files {{
        filename = {d}/users
    }}
    digest {{
    }}
    pap {{
    }}
    detail {{
        filename = {d}/acct/detail
        permissions = 0600
        header = "%t"
    }}
}}
server default {{
listen {{
    type = auth
    ipaddr = 127.0.0.1
    port = {port}
}}
listen {{
    type = acct
    ipaddr = 127.0.0.1
    port = {acct}
}}
authorize {{
    files
    digest
    pap
}}
authenticate {{
    Auth-Type PAP {{
        pap
    }}
    Auth-Type DIGEST {{
        digest
    }}
}}
preacct {{
}}
accounting {{
    detail
}}
post-auth {{
}}
}}
"#,
        acct = port + 1
    );
    std::fs::write(dir.join("radiusd.conf"), conf).unwrap();
}

pub fn start_radiusd(bin: &Path, dir: &Path) -> Radiusd {
    let log = dir.join("radius.log");
    let before = std::fs::read_to_string(&log)
        .map(|s| s.matches("Ready to process").count())
        .unwrap_or(0);
    let child = Command::new(bin)
        .args(["-f", "-d"])
        .arg(dir)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn freeradius");
    let mut r = Radiusd { child };
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let ready = std::fs::read_to_string(&log)
            .map(|s| s.matches("Ready to process").count())
            .unwrap_or(0);
        if ready > before {
            return r;
        }
        if let Ok(Some(st)) = r.child.try_wait() {
            let mut err = String::new();
            if let Some(mut e) = r.child.stderr.take() {
                use std::io::Read;
                let _ = e.read_to_string(&mut err);
            }
            let logtext = std::fs::read_to_string(&log).unwrap_or_default();
            panic!("freeradius exited ({st}): {err}\n{logtext}");
        }
        assert!(Instant::now() < deadline, "freeradius not ready in 20 s");
        std::thread::sleep(Duration::from_millis(50));
    }
}
