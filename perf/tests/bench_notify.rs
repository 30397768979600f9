//! `tandemd` under systemd's notify protocol, as the appliance's unit runs it: with
//! `NOTIFY_SOCKET` pointing at a datagram socket this test reads and `WATCHDOG_USEC` set, the
//! daemon sends `READY=1` once its dataplane workers run, then `WATCHDOG=1` at half the
//! interval. (Here because tandem-bench's hold test already locates and configures tandemd.)

use std::net::UdpSocket;
use std::os::unix::net::UnixDatagram;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

#[test]
fn tandemd_notifies_ready_then_pets_the_watchdog() {
    let Some(bin) = std::env::current_exe()
        .ok()
        .and_then(|e| Some(e.parent()?.parent()?.join("tandemd")))
        .filter(|p| p.exists())
    else {
        eprintln!("SKIP: tandemd not built beside this test (cargo build -p control --release)");
        return;
    };
    let dir = std::env::temp_dir().join(format!("tandem-notify-test-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let sock_path = dir.join("notify.sock");
    let rx = UnixDatagram::bind(&sock_path).unwrap();
    rx.set_read_timeout(Some(Duration::from_millis(500)))
        .unwrap();
    let port = UdpSocket::bind("127.0.0.1:0")
        .and_then(|s| s.local_addr())
        .unwrap()
        .port();
    let lo = 39_000 + (std::process::id() % 50) as u16 * 20;
    let cfg = format!(
        "[sip]\nlisten = [\"udp:127.0.0.1:{port}\"]\n[dataplane]\nbackend = \"socket\"\n\
         cores = [0]\nrtp_ports = \"{lo}-{}\"\n[mgmt]\nsocket = \"{}\"\n",
        lo + 19,
        dir.join("tandemd.sock").display()
    );
    std::fs::write(dir.join("tandem.toml"), cfg).unwrap();
    let mut child = Command::new(&bin)
        .arg("--config")
        .arg(dir.join("tandem.toml"))
        .env("NOTIFY_SOCKET", &sock_path)
        .env("WATCHDOG_USEC", "300000")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start tandemd");
    let mut got = Vec::new();
    let end = Instant::now() + Duration::from_secs(15);
    let mut buf = [0u8; 256];
    while Instant::now() < end && got.iter().filter(|m| *m == "WATCHDOG=1").count() < 3 {
        if let Ok(n) = rx.recv(&mut buf) {
            got.push(String::from_utf8_lossy(&buf[..n]).into_owned());
        }
    }
    let _ = child.kill();
    let _ = child.wait();
    let _ = std::fs::remove_dir_all(&dir);
    assert!(
        got.first()
            .is_some_and(|m| m.lines().any(|l| l == "READY=1")),
        "first notification is not READY=1: {got:?}"
    );
    assert!(
        got.iter().filter(|m| *m == "WATCHDOG=1").count() >= 3,
        "watchdog not petted: {got:?}"
    );
}
