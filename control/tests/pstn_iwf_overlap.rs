//! Overlap receiving into the dialplan, in virtual time: the exchange
//! simulator places a call without Sending complete and sends the rest of the
//! number in INFORMATION; the PSTN interworking function collects the digits
//! and offers the call to the engine (the SIP INVITE it writes) with the whole
//! number, either when Sending complete arrives or when the span's
//! `overlap_timeout_ms` (Q.931 T302) passes after the last digit.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use control::iwf::pstn::Iwf;
use control::pstn::config::{PstnConfig, SpanConfig};
use control::pstn::exchange::{ExCallId, Exchange, ExchangeConfig, ExchangeEvent, SimTrunk};
use control::pstn::{CallerId, Pstn};
use drivers::SpanId;

struct Bed {
    trunk: SimTrunk,
    iwf: Iwf,
    /// SIP requests the IWF wrote, with the virtual time they appeared.
    sip: Vec<(Instant, String)>,
    xev: Vec<ExchangeEvent>,
}

impl Bed {
    fn new(overlap_timeout: Duration) -> Self {
        let t0 = Instant::now();
        let mut span = SpanConfig::e1(1, 1, "from-pstn");
        span.overlap_timeout = overlap_timeout;
        let cfg = PstnConfig {
            spans: vec![span],
            ..PstnConfig::default()
        };
        let trunk =
            SimTrunk::with_exchange(SpanId(1), Exchange::new(ExchangeConfig::default()), t0, 7);
        let mut pstn = Pstn::new(&cfg);
        pstn.start(trunk.now());
        let local: SocketAddr = "127.0.0.1:5071".parse().unwrap();
        let engine: SocketAddr = "127.0.0.1:5060".parse().unwrap();
        let iwf = Iwf::with_runtime(pstn, &cfg, local, engine, vec![40000, 40002]);
        let mut b = Bed {
            trunk,
            iwf,
            sip: Vec::new(),
            xev: Vec::new(),
        };
        assert!(
            b.until(3.0, |b| b.iwf.pstn().span_up(SpanId(1))
                && b.trunk.exchange.link_up()),
            "D-channel up"
        );
        b
    }

    /// One millisecond of line time, then the IWF's events and timers.
    fn step(&mut self) {
        self.trunk.step(self.iwf.pstn_mut());
        let now = self.trunk.now();
        self.iwf.handle_pstn_events(now);
        self.iwf.handle_timeout(now);
        while let Some(m) = self.iwf.poll_sip() {
            self.sip
                .push((now, String::from_utf8_lossy(&m).into_owned()));
        }
        self.xev
            .extend(std::iter::from_fn(|| self.trunk.exchange.poll_event()));
    }

    /// Steps until `f` holds (true) or `secs` of line time pass (false).
    fn until(&mut self, secs: f64, mut f: impl FnMut(&Bed) -> bool) -> bool {
        let end = self.trunk.now() + Duration::from_secs_f64(secs);
        while !f(self) {
            if self.trunk.now() >= end {
                return false;
            }
            self.step();
        }
        true
    }

    fn invites(&self) -> Vec<&(Instant, String)> {
        self.sip
            .iter()
            .filter(|(_, m)| m.starts_with("INVITE "))
            .collect()
    }

    /// The exchange calls with `first` digits and no Sending complete; returns
    /// once Tandem acknowledged the SETUP (overlap receiving).
    fn originate_overlap(&mut self, first: &str) -> ExCallId {
        let now = self.trunk.now();
        let x = self
            .trunk
            .exchange
            .originate_overlap(first, Some(&CallerId::allowed("0215550142")), now)
            .unwrap();
        assert!(self.until(1.0, |b| b
            .xev
            .contains(&ExchangeEvent::SetupAcknowledged { id: x })));
        x
    }

    fn digits(&mut self, x: ExCallId, d: &str, complete: bool) {
        let now = self.trunk.now();
        self.trunk
            .exchange
            .send_digits(x, d, complete, now)
            .unwrap();
    }
}

#[test]
fn digits_collected_until_t302_then_offered_with_the_whole_number() {
    let mut b = Bed::new(Duration::from_secs(3));
    let x = b.originate_overlap("55");
    // Digits 1.5 s apart: each restarts T302, nothing goes to the engine yet.
    for d in ["5", "1", "2"] {
        assert!(!b.until(1.5, |b| !b.invites().is_empty()), "offered early");
        b.digits(x, d, false);
    }
    let last = b.trunk.now();
    assert!(b.until(5.0, |b| !b.invites().is_empty()), "never offered");
    let (at, invite) = b.invites()[0].clone();
    let waited = at.duration_since(last).as_secs_f64();
    assert!(
        (2.9..3.2).contains(&waited),
        "offered {waited:.2} s after the last digit (T302 3 s)"
    );
    assert!(
        invite.starts_with("INVITE sip:55512@127.0.0.1:5060 SIP/2.0"),
        "{invite}"
    );
    assert_eq!(b.invites().len(), 1);
    // The exchange heard CALL PROCEEDING once the number was complete.
    assert!(b.until(1.0, |b| b
        .xev
        .contains(&ExchangeEvent::Proceeding { id: x })));
}

#[test]
fn sending_complete_offers_at_once_and_a_release_while_collecting_is_clean() {
    let mut b = Bed::new(Duration::from_secs(10));
    let x = b.originate_overlap("4");
    b.digits(x, "42", false);
    b.digits(x, "1", true);
    assert!(b.until(1.0, |b| !b.invites().is_empty()), "not offered");
    assert!(
        b.invites()[0].1.starts_with("INVITE sip:4421@"),
        "{}",
        b.invites()[0].1
    );
    assert!(b.until(1.0, |b| b
        .xev
        .contains(&ExchangeEvent::Proceeding { id: x })));

    // A second caller gives up while Tandem still collects digits: nothing
    // reaches the engine, then or after T302.
    let y = b.originate_overlap("7");
    let now = b.trunk.now();
    b.trunk.exchange.hangup(y, 16, now).unwrap();
    assert!(b
        .until(1.0, |b| b.xev.iter().any(
            |e| matches!(e, ExchangeEvent::Released { id, .. } if *id == y)
        )));
    assert!(
        !b.until(12.0, |b| b.invites().len() > 1),
        "{:?}",
        b.invites()
    );
    assert_eq!(b.iwf.call_count(), 1);
}
