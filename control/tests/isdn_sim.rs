//! Both sides of our PRI stack back to back over the simulated E1: Q.931 in
//! Q.921 I-frames, HDLC with FCS-16 in TS16, G.704 framing with CRC-4, all
//! in virtual time (one tick = one 125 µs E1 frame).

use std::time::{Duration, Instant};

use control::isdn::{CallId, CallState, LinkConfig, Pri, PriEvent, SetupRequest, Side, Timers};
use control::q931::{Presentation, Screening};
use drivers::sim::BackToBack;

struct Bed {
    line: BackToBack,
    cpe: Pri,
    net: Pri,
    t0: Instant,
    cpe_ev: Vec<PriEvent>,
    net_ev: Vec<PriEvent>,
    /// D-channel cut: frames both sides send are lost.
    cut: bool,
}

impl Bed {
    fn new(seed: u64) -> Self {
        Self::with_timers(seed, Timers::default())
    }

    fn with_timers(seed: u64, timers: Timers) -> Self {
        let t0 = Instant::now();
        let mut b = Bed {
            line: BackToBack::new(true, seed),
            cpe: Pri::with_config(Side::User, LinkConfig::default(), timers),
            net: Pri::with_config(Side::Network, LinkConfig::default(), timers),
            t0,
            cpe_ev: Vec::new(),
            net_ev: Vec::new(),
            cut: false,
        };
        b.line.run(64); // frame alignment
        b.cpe.start(t0);
        b.net.start(t0);
        b
    }

    fn now(&self) -> Instant {
        self.t0 + Duration::from_micros(self.line.micros())
    }

    fn tick(&mut self) {
        let now = self.now();
        while let Some(f) = self.cpe.poll_transmit() {
            if !self.cut {
                self.line.a.span.send_frame(&f);
            }
        }
        while let Some(f) = self.net.poll_transmit() {
            if !self.cut {
                self.line.b.span.send_frame(&f);
            }
        }
        self.line.tick();
        let now2 = self.now();
        while let Some(f) = self.line.a.span.recv_frame() {
            self.cpe.handle_frame(&f, now2);
        }
        while let Some(f) = self.line.b.span.recv_frame() {
            self.net.handle_frame(&f, now2);
        }
        if self.cpe.poll_timeout().is_some_and(|t| t <= now) {
            self.cpe.handle_timeout(now);
        }
        if self.net.poll_timeout().is_some_and(|t| t <= now) {
            self.net.handle_timeout(now);
        }
        self.cpe_ev
            .extend(std::iter::from_fn(|| self.cpe.poll_event()));
        self.net_ev
            .extend(std::iter::from_fn(|| self.net.poll_event()));
    }

    /// The CPE calls `called` (from 200); the network side's handle once its
    /// SETUP arrived.
    fn offer(&mut self, called: &str) -> (CallId, CallId) {
        self.net_ev.clear();
        let t = self.now();
        let out = self
            .cpe
            .setup(&SetupRequest::new(called, Some("200")), t)
            .unwrap();
        assert!(self.until(1.0, |b| setup_of(&b.net_ev).is_some()));
        (out, setup_of(&self.net_ev).unwrap().0)
    }

    /// Both sides reported the release of their end of a call with `cause`.
    fn released_both(&self, cpe: CallId, net: CallId, cause: u8) -> bool {
        self.cpe_ev
            .contains(&PriEvent::Release { call: cpe, cause })
            && self
                .net_ev
                .contains(&PriEvent::Release { call: net, cause })
    }

    /// Runs until `f` holds or `secs` of line time pass.
    fn until(&mut self, secs: f64, mut f: impl FnMut(&Bed) -> bool) -> bool {
        let end = self.line.frames() + (secs * 8000.0) as u64;
        while self.line.frames() < end {
            if f(self) {
                return true;
            }
            self.tick();
        }
        f(self)
    }
}

fn setup_of(ev: &[PriEvent]) -> Option<(CallId, control::q931::PartyNumber, String)> {
    ev.iter().find_map(|e| match e {
        PriEvent::Setup {
            call,
            calling,
            called,
            ..
        } => Some((*call, calling.clone()?, called.clone())),
        _ => None,
    })
}

#[test]
fn call_answered_and_cleared_over_simulated_e1() {
    let mut b = Bed::new(1);
    assert!(
        b.until(2.0, |b| b.cpe.link().is_up() && b.net.link().is_up()),
        "D-channel up"
    );
    assert!(b.cpe_ev.contains(&PriEvent::LinkUp));
    let t = b.now();
    let mut req = SetupRequest::new("5551234", Some("4930123"));
    req.presentation = Presentation::Restricted;
    req.screening = Screening::UserPassed;
    req.calling_ton = 2;
    let out = b.cpe.setup(&req, t).unwrap();
    assert!(b.until(1.0, |b| setup_of(&b.net_ev).is_some()));
    let (inc, calling, called) = setup_of(&b.net_ev).unwrap();
    assert_eq!(called, "5551234");
    assert_eq!(calling.digits, "4930123");
    assert_eq!(calling.ton, 2);
    assert_eq!(
        calling.pres,
        Some((Presentation::Restricted, Screening::UserPassed))
    );
    let t = b.now();
    b.net.proceeding(inc, t).unwrap();
    b.net.alerting(inc, true, t).unwrap();
    assert!(b.until(1.0, |b| b
        .cpe_ev
        .iter()
        .any(|e| matches!(e, PriEvent::Alerting { .. }))));
    assert!(b.cpe_ev.contains(&PriEvent::Proceeding {
        call: out,
        channel: Some(1)
    }));
    assert!(b.cpe_ev.contains(&PriEvent::Alerting {
        call: out,
        inband: true
    }));
    let t = b.now();
    b.net.answer(inc, t).unwrap();
    assert!(b.until(1.0, |b| b.net_ev.contains(&PriEvent::Answer { call: inc })));
    assert!(b.cpe_ev.contains(&PriEvent::Answer { call: out }));
    assert_eq!(b.cpe.state(out), Some(CallState::Active));
    assert_eq!(b.net.state(inc), Some(CallState::Active));
    let t = b.now();
    b.cpe.hangup(out, 16, t).unwrap();
    assert!(b.until(1.0, |b| b.cpe.call_count() == 0 && b.net.call_count() == 0));
    assert!(b.released_both(out, inc, 16));
    assert_eq!(b.line.a.d_errors + b.line.b.d_errors, 0);
    assert_eq!(b.line.b.rx.counters.crc4_errors, 0);
}

#[test]
fn network_call_rejected_busy() {
    let mut b = Bed::new(2);
    assert!(b.until(2.0, |b| b.net.link().is_up() && b.cpe.link().is_up()));
    let t = b.now();
    let out = b
        .net
        .setup(&SetupRequest::new("200", Some("0215550100")), t)
        .unwrap();
    assert!(b.until(1.0, |b| setup_of(&b.cpe_ev).is_some()));
    let (inc, _, _) = setup_of(&b.cpe_ev).unwrap();
    let t = b.now();
    b.cpe.proceeding(inc, t).unwrap();
    b.cpe.hangup(inc, 17, t).unwrap();
    assert!(b.until(1.0, |b| b.cpe.call_count() == 0 && b.net.call_count() == 0));
    assert!(
        b.net_ev.contains(&PriEvent::Release {
            call: out,
            cause: 17
        }),
        "{:?}",
        b.net_ev
    );
}

#[test]
fn call_survives_dchannel_bit_errors() {
    let mut b = Bed::new(3);
    b.line.imp.dchan_flip_per_64k = 300; // ~0.5% of TS16 octets hit
    assert!(b.until(10.0, |b| b.net.link().is_up() && b.cpe.link().is_up()));
    let t = b.now();
    let out = b
        .cpe
        .setup(&SetupRequest::new("77", Some("11")), t)
        .unwrap();
    assert!(b.until(10.0, |b| setup_of(&b.net_ev).is_some()));
    let (inc, _, _) = setup_of(&b.net_ev).unwrap();
    let t = b.now();
    b.net.answer(inc, t).unwrap();
    assert!(b.until(10.0, |b| b.cpe_ev.contains(&PriEvent::Answer { call: out })));
    let t = b.now();
    b.net.hangup(inc, 16, t).unwrap();
    assert!(b.until(10.0, |b| b.cpe.call_count() == 0 && b.net.call_count() == 0));
    assert!(
        b.line.a.d_errors + b.line.b.d_errors > 0,
        "errors were injected and dropped by the FCS"
    );
}

#[test]
fn t303_expiry_clears_with_cause_102() {
    let mut b = Bed::new(4);
    assert!(b.until(2.0, |b| b.net.link().is_up() && b.cpe.link().is_up()));
    // The network side ignores the SETUP (never answers at layer 3).
    let t = b.now();
    let out = b.cpe.setup(&SetupRequest::new("99", None), t).unwrap();
    let start = b.line.frames();
    assert!(b.until(10.0, |b| b.cpe_ev.contains(&PriEvent::Release {
        call: out,
        cause: 102
    })));
    let secs = (b.line.frames() - start) as f64 / 8000.0;
    assert!((8.0..8.1).contains(&secs), "T303 twice = 8 s, took {secs}");
    // Two SETUPs arrived at the network side (first + retransmission): only one call.
    let setups = b
        .net_ev
        .iter()
        .filter(|e| matches!(e, PriEvent::Setup { .. }))
        .count();
    assert_eq!(setups, 1);
}

#[test]
fn status_enquiry_and_restart() {
    let mut b = Bed::new(5);
    assert!(b.until(2.0, |b| b.net.link().is_up() && b.cpe.link().is_up()));
    let t = b.now();
    b.net.restart(Some(5), t);
    assert!(b.until(1.0, |b| b
        .net_ev
        .contains(&PriEvent::Restarted { channel: Some(5) })));
    assert!(b.cpe_ev.contains(&PriEvent::Restarted { channel: Some(5) }));
}

/// Data link failure (EN 300 403 §5.8.8): a call still being set up is
/// cleared at once (cause 41), an active call is kept; the link comes back
/// within T309 and the call goes on to a normal clearing; a second outage
/// outlasts T309 and the call is cleared with cause 27 on both sides.
#[test]
fn t309_keeps_active_calls_across_a_dchannel_outage() {
    let timers = Timers {
        t309: Duration::from_secs(20),
        ..Timers::default()
    };
    let mut b = Bed::with_timers(6, timers);
    assert!(b.until(2.0, |b| b.net.link().is_up() && b.cpe.link().is_up()));
    // An active call ...
    let (active, inc) = b.offer("100");
    let t = b.now();
    b.net.proceeding(inc, t).unwrap();
    b.net.answer(inc, t).unwrap();
    assert!(
        b.until(1.0, |b| b.cpe.state(active) == Some(CallState::Active)
            && b.net.state(inc) == Some(CallState::Active))
    );
    // ... and one still proceeding.
    let (pending, inc2) = b.offer("101");
    let t = b.now();
    b.net.proceeding(inc2, t).unwrap();
    assert!(b.until(1.0, |b| b.cpe.state(pending)
        == Some(CallState::OutgoingProceeding)));

    // Outage: both sides notice (T203 then T200 x N200) and clear only the pending call.
    b.cut = true;
    assert!(b.until(30.0, |b| b.cpe_ev.contains(&PriEvent::LinkDown)
        && b.net_ev.contains(&PriEvent::LinkDown)));
    assert!(b.released_both(pending, inc2, 41));
    assert_eq!(b.cpe.state(active), Some(CallState::Active));
    assert_eq!(b.net.state(inc), Some(CallState::Active));
    assert_eq!(b.cpe.call_count(), 1);

    // The link comes back well within T309: the call survives and clears normally.
    b.cut = false;
    b.cpe_ev.clear();
    b.net_ev.clear();
    let t = b.now();
    b.cpe.start(t);
    assert!(b.until(5.0, |b| b.cpe.link().is_up() && b.net.link().is_up()));
    assert!(
        !b.until(25.0, |b| b.cpe.call_count() == 0 || b.net.call_count() == 0),
        "the kept call must outlive T309 once the link is back (STATUS exchanged, timer stopped)"
    );
    assert_eq!(b.cpe.state(active), Some(CallState::Active));
    assert_eq!(b.net.state(inc), Some(CallState::Active));

    // Second outage, never repaired: T309 clears the call with cause 27.
    b.cut = true;
    b.cpe_ev.clear();
    b.net_ev.clear();
    assert!(b.until(30.0, |b| b.cpe_ev.contains(&PriEvent::LinkDown)));
    let down = b.line.frames();
    assert!(b.until(60.0, |b| b.cpe.call_count() == 0));
    let held = (b.line.frames() - down) as f64 / 8000.0;
    assert!(
        (19.9..20.1).contains(&held),
        "cleared {held:.2} s after the link went down"
    );
    assert!(b.until(30.0, |b| b.net.call_count() == 0));
    assert!(b.released_both(active, inc, 27));
}
