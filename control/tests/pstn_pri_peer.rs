//! The PSTN runtime (`control::pstn::Pstn`, the layer the call model uses)
//! against libpri's `pri-peer` as the far end, over pri-peer's UDP transport
//! (one LAPD frame per datagram, no FCS), in real time on loopback.
//!
//! Tandem as CPE against libpri NETWORK (answered call with caller ID and
//! presentation checked by libpri, busy, an inbound call with presentation
//! restricted), and the reverse roles (Tandem NETWORK, libpri CPE). Builds
//! `../shared/peers/pri-peer` with `-lpri` (Debian `libpri-dev`) into a
//! temporary directory; skips with a message when that is not possible.

use std::net::UdpSocket;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

#[path = "common/pri_peer.rs"]
mod pri_peer;

use control::pstn::config::{PstnConfig, Signalling, SpanConfig};
use control::pstn::{CallerId, PlaceCall, Pstn, PstnCallId, PstnEvent};
use control::q931::{Presentation, Screening};
use drivers::{ChanId, SpanId};

struct Peer {
    child: Child,
    sock: UdpSocket,
    pstn: Pstn,
    events: Vec<PstnEvent>,
}

impl Peer {
    fn spawn(exe: &PathBuf, role: &str, ours: Signalling, args: &[&str]) -> Peer {
        let sock = UdpSocket::bind("127.0.0.1:0").unwrap();
        let port = UdpSocket::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let local = sock.local_addr().unwrap();
        let child = pri_peer::spawn(
            Command::new(exe)
                .args(["--role", role, "--udp-local", &format!("127.0.0.1:{port}")])
                .args(["--udp-remote", &local.to_string()])
                .args(["--timeout", "20", "--linger", "0.5"])
                .args(args)
                .stdout(Stdio::piped())
                .stderr(Stdio::null()),
        );
        sock.connect(("127.0.0.1", port)).unwrap();
        let mut span = SpanConfig::e1(1, 1, "from-pstn");
        span.signalling = ours;
        let mut pstn = Pstn::new(&PstnConfig {
            spans: vec![span],
            ..PstnConfig::default()
        });
        pstn.start(Instant::now());
        let mut p = Peer {
            child,
            sock,
            pstn,
            events: Vec::new(),
        };
        p.flush();
        p
    }

    fn flush(&mut self) {
        while let Some((_, f)) = self.pstn.poll_transmit() {
            let _ = self.sock.send(&f);
        }
    }

    /// Runs the runtime until `f` holds or `secs` pass.
    fn until(&mut self, secs: f64, mut f: impl FnMut(&[PstnEvent]) -> bool) -> bool {
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
                .pstn
                .poll_timeout()
                .map_or(end, |t| t.min(end))
                .saturating_duration_since(now);
            self.sock
                .set_read_timeout(Some(
                    wait.clamp(Duration::from_millis(1), Duration::from_millis(50)),
                ))
                .unwrap();
            if let Ok(n) = self.sock.recv(&mut buf) {
                self.pstn.handle_frame(SpanId(1), &buf[..n], Instant::now());
            }
            self.pstn.handle_timeout(Instant::now());
            self.flush();
            self.events
                .extend(std::iter::from_fn(|| self.pstn.poll_event()));
        }
    }

    fn link_up(&mut self) {
        assert!(
            self.until(5.0, |e| e.contains(&PstnEvent::SpanUp { span: SpanId(1) })),
            "D-channel up"
        );
        // libpri settles after its own link-up (see the pri-peer README).
        let _ = self.until(1.5, |_| false);
    }

    fn released(&self, id: PstnCallId) -> Option<u8> {
        self.events.iter().find_map(|e| match e {
            PstnEvent::Released { id: i, cause } if *i == id => Some(*cause),
            _ => None,
        })
    }

    fn finish(mut self) -> (bool, String) {
        let _ = self.until(3.0, |_| false);
        let out = self.child.wait_with_output().unwrap();
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stdout).to_string(),
        )
    }
}

#[test]
fn cpe_call_to_libpri_network_answered_then_busy() {
    let Some(exe) = pri_peer::build("pstn pri-peer interop") else {
        return;
    };
    let mut p = Peer::spawn(
        &exe,
        "net",
        Signalling::PriCpe,
        &[
            "--incoming",
            "answer",
            "--expect-calling",
            "4930123",
            "--expect-pres",
            "0x21",
        ],
    );
    p.link_up();
    let cid = CallerId {
        number: "4930123".into(),
        ton: 0,
        presentation: Presentation::Restricted,
        screening: Screening::UserPassed,
    };
    let now = Instant::now();
    let id = p
        .pstn
        .place_call(&PlaceCall::new(1, "5551234", Some(cid)), now)
        .unwrap();
    p.flush();
    assert!(
        p.until(5.0, |e| e.contains(&PstnEvent::Connected { id })),
        "{:?}",
        p.events
    );
    // We asked for channel 31 (preferred); libpri's choice is what counts.
    let proceeding = p.events.iter().find_map(|e| match e {
        PstnEvent::Proceeding { id: i, channel } if *i == id => Some(*channel),
        _ => None,
    });
    assert_eq!(p.pstn.channel(id).map(|c| c.1), proceeding);
    assert!(p
        .events
        .iter()
        .any(|e| matches!(e, PstnEvent::Alerting { id: i, .. } if *i == id)));
    p.pstn.release(id, 16, Instant::now()).unwrap();
    p.flush();
    assert!(p.until(5.0, |e| e
        .iter()
        .any(|x| matches!(x, PstnEvent::Released { id: i, .. } if *i == id))));
    assert_eq!(p.released(id), Some(16));
    let (ok, out) = p.finish();
    assert!(ok, "pri-peer failed:\n{out}");

    let mut p = Peer::spawn(&exe, "net", Signalling::PriCpe, &["--incoming", "busy"]);
    p.link_up();
    let id = p
        .pstn
        .place_call(&PlaceCall::new(1, "888", None), Instant::now())
        .unwrap();
    p.flush();
    assert!(p.until(5.0, |e| e
        .iter()
        .any(|x| matches!(x, PstnEvent::Released { id: i, .. } if *i == id))));
    assert_eq!(p.released(id), Some(17));
    let (ok, out) = p.finish();
    assert!(ok, "pri-peer failed:\n{out}");
}

#[test]
fn libpri_network_calls_in_with_restricted_cli() {
    let Some(exe) = pri_peer::build("pstn pri-peer interop") else {
        return;
    };
    let mut p = Peer::spawn(
        &exe,
        "net",
        Signalling::PriCpe,
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
            "--channel",
            "5",
            "--exclusive",
            "--hangup-after",
            "0.5",
            "--expect",
            "answered",
        ],
    );
    assert!(
        p.until(8.0, |e| e
            .iter()
            .any(|x| matches!(x, PstnEvent::Incoming { .. }))),
        "{:?}",
        p.events
    );
    let Some(PstnEvent::Incoming {
        id,
        channel,
        called,
        calling,
        context,
        ..
    }) = p
        .events
        .iter()
        .find(|x| matches!(x, PstnEvent::Incoming { .. }))
        .cloned()
    else {
        unreachable!()
    };
    assert_eq!(called, "5551234");
    assert_eq!(context, "from-pstn");
    assert_eq!(channel, ChanId(5), "the exchange's exclusive channel");
    let calling = calling.expect("calling party");
    assert_eq!(calling.number, "0215550100");
    assert_eq!(calling.ton, 2);
    assert_eq!(calling.presentation, Presentation::Restricted);
    assert_eq!(calling.screening, Screening::Network);
    let now = Instant::now();
    p.pstn.alert(id, false, now).unwrap();
    p.pstn.answer(id, now).unwrap();
    p.flush();
    assert!(p.until(3.0, |e| e.contains(&PstnEvent::Connected { id })));
    assert!(p.until(5.0, |e| e
        .iter()
        .any(|x| matches!(x, PstnEvent::Released { id: i, .. } if *i == id))));
    assert_eq!(p.released(id), Some(16));
    let (ok, out) = p.finish();
    assert!(ok, "pri-peer failed:\n{out}");
}

#[test]
fn tandem_network_side_to_libpri_cpe() {
    let Some(exe) = pri_peer::build("pstn pri-peer interop") else {
        return;
    };
    let mut p = Peer::spawn(
        &exe,
        "cpe",
        Signalling::PriNet,
        &["--incoming", "answer", "--expect-called", "2001"],
    );
    p.link_up();
    let id = p
        .pstn
        .place_call(
            &PlaceCall::new(1, "2001", Some(CallerId::allowed("0215550100"))),
            Instant::now(),
        )
        .unwrap();
    p.flush();
    assert!(
        p.until(5.0, |e| e.contains(&PstnEvent::Connected { id })),
        "{:?}",
        p.events
    );
    assert_eq!(p.pstn.channel(id), Some((SpanId(1), ChanId(1))));
    p.pstn.release(id, 16, Instant::now()).unwrap();
    p.flush();
    assert!(p.until(5.0, |e| e
        .iter()
        .any(|x| matches!(x, PstnEvent::Released { id: i, .. } if *i == id))));
    assert_eq!(p.released(id), Some(16));
    let (ok, out) = p.finish();
    assert!(ok, "pri-peer failed:\n{out}");
}
