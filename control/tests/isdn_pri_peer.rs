//! Interop with libpri: our Q.921/Q.931 stack as the CPE side against
//! `pri-peer` (libpri 1.6, NETWORK side) over its UDP transport (one LAPD
//! frame per datagram, no FCS). Builds `../shared/peers/pri-peer` with the C
//! compiler and `-lpri` into a temporary directory (needs Debian
//! `libpri-dev`); skips with a message when that is not possible.

use std::net::UdpSocket;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

#[path = "common/pri_peer.rs"]
mod pri_peer;

use control::isdn::{CallId, Pri, PriEvent, SetupRequest, Side};
use control::q931::{Presentation, Screening};

struct Peer {
    child: Child,
    sock: UdpSocket,
    pri: Pri,
    events: Vec<PriEvent>,
}

impl Peer {
    fn spawn(exe: &PathBuf, args: &[&str]) -> Peer {
        let sock = UdpSocket::bind("127.0.0.1:0").unwrap();
        let port = UdpSocket::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let ours = sock.local_addr().unwrap();
        let mut cmd = Command::new(exe);
        cmd.args(["--role", "net", "--udp-local", &format!("127.0.0.1:{port}")])
            .args([
                "--udp-remote",
                &ours.to_string(),
                "--timeout",
                "20",
                "--linger",
                "0.5",
            ])
            .args(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::null());
        let child = pri_peer::spawn(&mut cmd);
        sock.connect(("127.0.0.1", port)).unwrap();
        let mut pri = Pri::new(Side::User);
        pri.start(Instant::now());
        let mut p = Peer {
            child,
            sock,
            pri,
            events: Vec::new(),
        };
        p.flush();
        p
    }

    fn flush(&mut self) {
        while let Some(f) = self.pri.poll_transmit() {
            let _ = self.sock.send(&f);
        }
    }

    /// Runs the stack until `f` holds or `secs` pass.
    fn until(&mut self, secs: f64, mut f: impl FnMut(&[PriEvent]) -> bool) -> bool {
        let end = Instant::now() + Duration::from_secs_f64(secs);
        let mut buf = [0u8; 512];
        loop {
            if f(&self.events) {
                return true;
            }
            let now = Instant::now();
            if now >= end {
                return false;
            }
            let wait = self
                .pri
                .poll_timeout()
                .map_or(end, |t| t.min(end))
                .saturating_duration_since(now);
            self.sock
                .set_read_timeout(Some(wait.max(Duration::from_millis(1))))
                .unwrap();
            if let Ok(n) = self.sock.recv(&mut buf) {
                self.pri.handle_frame(&buf[..n], Instant::now());
            }
            let now = Instant::now();
            if self.pri.poll_timeout().is_some_and(|t| t <= now) {
                self.pri.handle_timeout(now);
            }
            self.flush();
            self.events
                .extend(std::iter::from_fn(|| self.pri.poll_event()));
        }
    }

    fn finish(mut self) -> (bool, String) {
        // Keep serving the link while the peer winds down.
        let _ = self.until(3.0, |_| false);
        let out = self.child.wait_with_output().unwrap();
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stdout).to_string(),
        )
    }
}

fn release_of(ev: &[PriEvent], call: CallId) -> Option<u8> {
    ev.iter().find_map(|e| match e {
        PriEvent::Release { call: c, cause } if *c == call => Some(*cause),
        _ => None,
    })
}

#[test]
fn cpe_calls_libpri_network_answered() {
    let Some(exe) = pri_peer::build("pri-peer interop") else {
        return;
    };
    let mut p = Peer::spawn(
        &exe,
        &[
            "--incoming",
            "answer",
            "--expect-calling",
            "4930123",
            "--expect-pres",
            "0x21",
        ],
    );
    assert!(
        p.until(5.0, |e| e.contains(&PriEvent::LinkUp)),
        "D-channel up"
    );
    let _ = p.until(1.5, |_| false); // let libpri settle after its own link-up
    let mut req = SetupRequest::new("5551234", Some("4930123"));
    req.presentation = Presentation::Restricted;
    req.screening = Screening::UserPassed;
    let call = p.pri.setup(&req, Instant::now()).unwrap();
    p.flush();
    assert!(
        p.until(5.0, |e| e.contains(&PriEvent::Answer { call })),
        "answered: {:?}",
        p.events
    );
    assert!(p
        .events
        .iter()
        .any(|e| matches!(e, PriEvent::Proceeding { call: c, .. } if *c == call)));
    assert!(p
        .events
        .iter()
        .any(|e| matches!(e, PriEvent::Alerting { call: c, .. } if *c == call)));
    p.pri.hangup(call, 16, Instant::now()).unwrap();
    p.flush();
    assert!(p.until(5.0, |e| release_of(e, call).is_some()));
    assert_eq!(release_of(&p.events, call), Some(16));
    let (ok, out) = p.finish();
    assert!(ok, "pri-peer failed:\n{out}");
}

#[test]
fn libpri_network_calls_cpe_with_restricted_cli() {
    let Some(exe) = pri_peer::build("pri-peer interop") else {
        return;
    };
    let mut p = Peer::spawn(
        &exe,
        &[
            "--call",
            "5551234",
            "--calling",
            "0215550100",
            "--calling-ton",
            "2",
            "--pres",
            "restricted",
            "--screen",
            "network",
            "--hangup-after",
            "0.5",
            "--expect",
            "answered",
        ],
    );
    assert!(
        p.until(8.0, |e| e
            .iter()
            .any(|x| matches!(x, PriEvent::Setup { .. }))),
        "SETUP: {:?}",
        p.events
    );
    let Some(PriEvent::Setup {
        call,
        calling,
        called,
        ..
    }) = p
        .events
        .iter()
        .find(|x| matches!(x, PriEvent::Setup { .. }))
        .cloned()
    else {
        unreachable!()
    };
    assert_eq!(called, "5551234");
    let calling = calling.expect("calling party number");
    assert_eq!(calling.digits, "0215550100");
    assert_eq!(calling.ton, 2);
    assert_eq!(
        calling.pres,
        Some((Presentation::Restricted, Screening::Network))
    );
    let now = Instant::now();
    p.pri.proceeding(call, now).unwrap();
    p.pri.alerting(call, false, now).unwrap();
    p.pri.answer(call, now).unwrap();
    p.flush();
    assert!(
        p.until(3.0, |e| e.contains(&PriEvent::Answer { call })),
        "{:?}",
        p.events
    );
    assert!(p.until(5.0, |e| release_of(e, call).is_some()));
    assert_eq!(
        release_of(&p.events, call),
        Some(16),
        "network hung up with normal clearing"
    );
    let (ok, out) = p.finish();
    assert!(ok, "pri-peer failed:\n{out}");
}

#[test]
fn busy_both_ways() {
    let Some(exe) = pri_peer::build("pri-peer interop") else {
        return;
    };
    // Our call, libpri busy: DISCONNECT cause 17.
    let mut p = Peer::spawn(&exe, &["--incoming", "busy"]);
    assert!(p.until(5.0, |e| e.contains(&PriEvent::LinkUp)));
    let _ = p.until(1.5, |_| false);
    let call = p
        .pri
        .setup(&SetupRequest::new("888", Some("100")), Instant::now())
        .unwrap();
    p.flush();
    assert!(
        p.until(5.0, |e| release_of(e, call).is_some()),
        "{:?}",
        p.events
    );
    assert_eq!(release_of(&p.events, call), Some(17));
    let (ok, out) = p.finish();
    assert!(ok, "pri-peer failed:\n{out}");
    // libpri's call, we are busy: CALL PROCEEDING + DISCONNECT cause 17.
    let mut p = Peer::spawn(
        &exe,
        &[
            "--call",
            "200",
            "--calling",
            "300",
            "--expect",
            "rejected",
            "--expect-cause",
            "17",
        ],
    );
    assert!(p.until(8.0, |e| e
        .iter()
        .any(|x| matches!(x, PriEvent::Setup { .. }))));
    let Some(PriEvent::Setup { call, .. }) = p
        .events
        .iter()
        .find(|x| matches!(x, PriEvent::Setup { .. }))
        .cloned()
    else {
        unreachable!()
    };
    let now = Instant::now();
    p.pri.proceeding(call, now).unwrap();
    p.pri.hangup(call, 17, now).unwrap();
    p.flush();
    assert!(
        p.until(5.0, |e| release_of(e, call).is_some()),
        "{:?}",
        p.events
    );
    let (ok, out) = p.finish();
    assert!(ok, "pri-peer failed:\n{out}");
}
