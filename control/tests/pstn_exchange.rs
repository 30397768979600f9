//! Tandem's PSTN runtime (user side) against the exchange simulator (network
//! side) over a simulated E1 (G.704 + CRC-4 framing, HDLC/FCS-16 D-channel
//! in TS16), all in virtual time: 1 ms steps of line time, no sleeps.
//!
//! Covers each exchange behaviour (event sequence and Q.850 cause), tones in
//! the B-channel, the line echo (delay and ERL measured by correlation), an
//! inbound call with presentation restricted, filling the span (31st call
//! gets 34), D-channel bit errors, and the `show spans`/`show channels` data.

use std::time::{Duration, Instant};

use control::pstn::config::{PstnConfig, SpanConfig};
use control::pstn::exchange::{
    Behaviour, Exchange, ExchangeConfig, ExchangeEvent, NumberPattern, NumberRule, SimTrunk,
};
use control::pstn::{CallerId, PlaceCall, Pstn, PstnCallId, PstnEvent};
use control::q931::{Presentation, Screening};
use dataplane::codec::g711::{alaw_to_linear, linear_to_alaw};
use drivers::{ChanId, SpanId};

struct Bed {
    trunk: SimTrunk,
    pstn: Pstn,
    ev: Vec<PstnEvent>,
    xev: Vec<ExchangeEvent>,
}

fn exchange_cfg() -> ExchangeConfig {
    let rule = |m: &str, b| NumberRule {
        pattern: NumberPattern::parse(m).unwrap(),
        behaviour: b,
    };
    ExchangeConfig {
        rules: vec![
            rule("*1", Behaviour::Answer),
            rule("*2", Behaviour::Busy),
            rule("*3", Behaviour::NoAnswer),
            rule("*4", Behaviour::Congestion),
            rule("*5", Behaviour::RingThenAnswer(Duration::from_millis(2500))),
            rule("*9", Behaviour::Unallocated),
            rule("*", Behaviour::Answer),
        ],
        tone_time: Duration::from_millis(1500),
        no_answer: Duration::from_secs(4),
        ..ExchangeConfig::default()
    }
}

impl Bed {
    fn new(cfg: ExchangeConfig, seed: u64) -> Self {
        Self::with_span(cfg, SpanConfig::e1(1, 1, "from-pstn"), seed)
    }

    fn with_span(cfg: ExchangeConfig, span: SpanConfig, seed: u64) -> Self {
        Self::with_exchange(Exchange::new(cfg), span, seed)
    }

    fn with_exchange(x: Exchange, span: SpanConfig, seed: u64) -> Self {
        let t0 = Instant::now();
        let block = span.blocksize;
        let pcfg = PstnConfig {
            spans: vec![span],
            ..PstnConfig::default()
        };
        let mut trunk = SimTrunk::with_exchange(SpanId(1), x, t0, seed);
        trunk.set_block_size(block).unwrap();
        let mut pstn = Pstn::new(&pcfg);
        pstn.start(trunk.now());
        let mut b = Bed {
            trunk,
            pstn,
            ev: Vec::new(),
            xev: Vec::new(),
        };
        assert!(
            b.until(3.0, |b| b.pstn.span_up(SpanId(1))
                && b.trunk.exchange.link_up()),
            "D-channel up"
        );
        assert!(b.ev.contains(&PstnEvent::SpanUp { span: SpanId(1) }));
        b.ev.clear();
        b.xev.clear();
        b
    }

    fn now(&self) -> Instant {
        self.trunk.now()
    }

    fn step(&mut self) {
        self.trunk.step(&mut self.pstn);
        self.ev
            .extend(std::iter::from_fn(|| self.pstn.poll_event()));
        self.xev
            .extend(std::iter::from_fn(|| self.trunk.exchange.poll_event()));
    }

    fn run(&mut self, secs: f64) {
        for _ in 0..(secs * 1000.0) as u64 {
            self.step();
        }
    }

    fn until(&mut self, secs: f64, mut f: impl FnMut(&Bed) -> bool) -> bool {
        for _ in 0..(secs * 1000.0) as u64 {
            if f(self) {
                return true;
            }
            self.step();
        }
        f(self)
    }

    fn events_of(&self, id: PstnCallId) -> Vec<PstnEvent> {
        self.ev
            .iter()
            .filter(|e| match e {
                PstnEvent::Proceeding { id: i, .. }
                | PstnEvent::Alerting { id: i, .. }
                | PstnEvent::Progress { id: i, .. }
                | PstnEvent::Connected { id: i }
                | PstnEvent::Released { id: i, .. }
                | PstnEvent::Incoming { id: i, .. } => *i == id,
                _ => false,
            })
            .cloned()
            .collect()
    }

    fn released(&self, id: PstnCallId) -> Option<u8> {
        self.ev.iter().find_map(|e| match e {
            PstnEvent::Released { id: i, cause } if *i == id => Some(*cause),
            _ => None,
        })
    }

    fn call(&mut self, called: &str) -> PstnCallId {
        let now = self.now();
        let req = PlaceCall::new(1, called, Some(CallerId::allowed("4930123")));
        self.pstn.place_call(&req, now).unwrap()
    }

    /// Reads Tandem's received audio of `id` for `secs` (writing idle blocks
    /// so the line keeps moving both ways), as linear samples.
    fn listen(&mut self, id: PstnCallId, secs: f64) -> Vec<i16> {
        let mut got = Vec::new();
        for _ in 0..(secs * 1000.0) as u64 {
            self.step();
            while let Ok(Some(b)) = self.pstn.read_audio(id, self.trunk.tandem_span()) {
                got.extend(b.iter().map(|&a| alaw_to_linear(a)));
            }
        }
        got
    }
}

/// Goertzel power at `hz` as a share of the total power of `x`.
fn goertzel_share(x: &[i16], hz: f64) -> f64 {
    let w = 2.0 * std::f64::consts::PI * hz / 8000.0;
    let (mut s1, mut s2) = (0.0f64, 0.0f64);
    for &v in x {
        let s0 = f64::from(v) + 2.0 * w.cos() * s1 - s2;
        s2 = s1;
        s1 = s0;
    }
    let p = s1 * s1 + s2 * s2 - 2.0 * w.cos() * s1 * s2;
    let total: f64 = x.iter().map(|&v| f64::from(v).powi(2)).sum();
    if total == 0.0 {
        0.0
    } else {
        2.0 * p / (x.len() as f64 * total)
    }
}

/// Over 40 ms windows: the share of windows carrying tone (above -30 dBm0)
/// and the mean share of their power at `hz`.
fn tone_share(x: &[i16], hz: f64) -> (f64, f64) {
    let wins: Vec<&[i16]> = x.chunks_exact(320).collect();
    let on: Vec<&&[i16]> = wins.iter().filter(|w| dbm0(w) > -30.0).collect();
    let share = on.iter().map(|w| goertzel_share(w, hz)).sum::<f64>() / on.len().max(1) as f64;
    (on.len() as f64 / wins.len().max(1) as f64, share)
}

fn dbm0(x: &[i16]) -> f64 {
    let p: f64 = x.iter().map(|&v| f64::from(v).powi(2)).sum::<f64>() / x.len().max(1) as f64;
    // 0 dBm0 A-law sine peak ~ 32768 * 10^(-3.14/20).
    10.0 * (p / (0.5 * (32768.0f64 * 10f64.powf(-3.14 / 20.0)).powi(2))).log10()
}

#[test]
fn answered_call_proceeds_connects_and_clears_normally() {
    let mut b = Bed::new(exchange_cfg(), 1);
    let id = b.call("0215550101");
    assert!(b.until(1.0, |b| b.ev.contains(&PstnEvent::Connected { id })));
    assert_eq!(
        b.events_of(id),
        vec![
            PstnEvent::Proceeding {
                id,
                channel: ChanId(31)
            },
            PstnEvent::Connected { id },
        ]
    );
    // The exchange saw our caller ID and the B-channel we chose.
    let offered = b.xev.iter().find_map(|e| match e {
        ExchangeEvent::Offered {
            channel,
            called,
            calling,
            ..
        } => Some((*channel, called.clone(), calling.clone())),
        _ => None,
    });
    let (ch, called, calling) = offered.expect("exchange saw the SETUP");
    assert_eq!(ch, ChanId(31));
    assert_eq!(called, "0215550101");
    assert_eq!(calling.unwrap().digits, "4930123");
    let spans = b.pstn.show_spans();
    assert_eq!(spans[0].in_use, 1);
    assert!(spans[0].dchannel_up && spans[0].alarms.is_empty());
    let now = b.now();
    b.pstn.release(id, 16, now).unwrap();
    assert!(b.until(1.0, |b| b.released(id).is_some()));
    assert_eq!(b.released(id), Some(16));
    assert!(b.until(1.0, |b| b.trunk.exchange.call_count() == 0));
    assert!(b
        .xev
        .iter()
        .any(|e| matches!(e, ExchangeEvent::Released { cause: 16, .. })));
    b.run(0.1);
    assert_eq!(b.pstn.show_spans()[0].in_use, 0);
}

#[test]
fn busy_plays_busy_tone_then_clears_with_17() {
    let mut b = Bed::new(exchange_cfg(), 2);
    let id = b.call("0215550102");
    assert!(b.until(1.0, |b| b
        .ev
        .contains(&PstnEvent::Progress { id, inband: true })));
    let audio = b.listen(id, 1.0);
    let (duty, share) = tone_share(&audio, 425.0);
    let level = dbm0(&audio);
    println!("busy: on {duty:.2} of the time, 425 Hz share {share:.2}, level {level:.1} dBm0");
    assert!(share > 0.8, "425 Hz busy tone in-band: share {share}");
    assert!((0.35..0.65).contains(&duty), "busy cadence 500/500: {duty}");
    // EU busy: 500 ms on / 500 ms off at -13 dBm0: about -16 dBm0 on average.
    assert!((-19.0..-13.0).contains(&level), "level {level}");
    assert!(b.until(2.0, |b| b.released(id).is_some()));
    assert_eq!(b.released(id), Some(17));
    let kinds: Vec<&str> = b
        .events_of(id)
        .iter()
        .map(|e| match e {
            PstnEvent::Proceeding { .. } => "proceeding",
            PstnEvent::Progress { .. } => "progress",
            PstnEvent::Released { .. } => "released",
            _ => "other",
        })
        .collect();
    assert_eq!(kinds, ["proceeding", "progress", "released"]);
}

#[test]
fn congestion_clears_with_34_and_unallocated_with_1() {
    let mut b = Bed::new(exchange_cfg(), 3);
    let id = b.call("0215550104");
    assert!(b.until(1.0, |b| b
        .ev
        .contains(&PstnEvent::Progress { id, inband: true })));
    let audio = b.listen(id, 0.5);
    let (duty, share) = tone_share(&audio, 425.0);
    assert!(share > 0.8 && (0.3..0.7).contains(&duty), "{duty} {share}");
    assert!(b.until(2.0, |b| b.released(id).is_some()));
    assert_eq!(b.released(id), Some(34));

    let id = b.call("0215550109");
    assert!(b.until(1.0, |b| b.released(id).is_some()));
    assert_eq!(b.events_of(id), vec![PstnEvent::Released { id, cause: 1 }]);
}

#[test]
fn no_answer_rings_then_clears_with_19() {
    let mut b = Bed::new(exchange_cfg(), 4);
    let id = b.call("0215550103");
    let t0 = b.now();
    assert!(b.until(1.0, |b| b
        .ev
        .contains(&PstnEvent::Alerting { id, inband: true })));
    // EU ringback: 425 Hz, 1 s on / 4 s off; listen over the first second.
    let audio = b.listen(id, 1.0);
    let (duty, share) = tone_share(&audio, 425.0);
    assert!(
        share > 0.8 && duty > 0.8,
        "ringback in-band: {duty} {share}"
    );
    assert!(b.until(5.0, |b| b.released(id).is_some()));
    let took = b.now() - t0;
    assert_eq!(b.released(id), Some(19));
    assert!(
        took >= Duration::from_secs(4) && took < Duration::from_millis(4300),
        "{took:?}"
    );
    assert!(matches!(
        b.events_of(id)[..],
        [
            PstnEvent::Proceeding { .. },
            PstnEvent::Alerting { .. },
            PstnEvent::Released { cause: 19, .. }
        ]
    ));
}

#[test]
fn ring_then_answer_connects_after_the_delay() {
    let mut b = Bed::new(exchange_cfg(), 5);
    let id = b.call("0215550105");
    let t0 = b.now();
    assert!(b.until(4.0, |b| b.ev.contains(&PstnEvent::Connected { id })));
    let took = b.now() - t0;
    assert!(
        took >= Duration::from_millis(2500) && took < Duration::from_millis(2700),
        "{took:?}"
    );
    assert!(matches!(
        b.events_of(id)[..],
        [
            PstnEvent::Proceeding { .. },
            PstnEvent::Alerting { inband: true, .. },
            PstnEvent::Connected { .. }
        ]
    ));
    // The far end hangs up: normal clearing reaches us.
    let xid = b
        .xev
        .iter()
        .find_map(|e| match e {
            ExchangeEvent::Offered { id, .. } => Some(*id),
            _ => None,
        })
        .unwrap();
    let now = b.now();
    b.trunk.exchange.hangup(xid, 16, now).unwrap();
    assert!(b.until(1.0, |b| b.released(id).is_some()));
    assert_eq!(b.released(id), Some(16));
}

/// Sends seeded noise into the B-channel for `secs` and returns (sent,
/// received) linear streams aligned to the same start.
fn send_noise(b: &mut Bed, id: PstnCallId, secs: f64) -> (Vec<i16>, Vec<i16>) {
    let block = b.pstn.spans().next().unwrap().blocksize;
    let steps_per_block = (block / 8) as u64;
    let mut rng = 0x2545_F491_4F6C_DD1Du64;
    let mut sent = Vec::new();
    let mut got = Vec::new();
    b.pstn.flush_audio(id, b.trunk.tandem_span()).unwrap();
    let steps = (secs * 1000.0) as u64;
    for k in 0..steps {
        if k % steps_per_block == 0 {
            let blk: Vec<u8> = (0..block)
                .map(|_| {
                    rng ^= rng << 13;
                    rng ^= rng >> 7;
                    rng ^= rng << 17;
                    // Uniform noise at about -10 dBm0.
                    let v = ((rng >> 40) as i32 & 0x3FFF) - 0x2000;
                    linear_to_alaw(v as i16)
                })
                .collect();
            sent.extend(blk.iter().map(|&a| alaw_to_linear(a)));
            b.pstn.write_audio(id, b.trunk.tandem_span(), &blk).unwrap();
        }
        b.step();
        while let Ok(Some(r)) = b.pstn.read_audio(id, b.trunk.tandem_span()) {
            got.extend(r.iter().map(|&a| alaw_to_linear(a)));
        }
    }
    (sent, got)
}

/// Lag (samples) of the best normalised cross-correlation of `got` against
/// `sent`, and the ERL over the aligned overlap.
fn measure(sent: &[i16], got: &[i16], max_lag: usize) -> (usize, f64, f64) {
    let n = sent.len().min(got.len()).saturating_sub(max_lag);
    let mut best = (0usize, 0f64);
    for lag in 0..max_lag {
        let mut c = 0f64;
        for i in 0..n {
            c += f64::from(sent[i]) * f64::from(got[i + lag]);
        }
        if c.abs() > best.1.abs() {
            best = (lag, c);
        }
    }
    let lag = best.0;
    let ps: f64 = sent[..n].iter().map(|&v| f64::from(v).powi(2)).sum();
    let pe: f64 = got[lag..lag + n]
        .iter()
        .map(|&v| f64::from(v).powi(2))
        .sum();
    let rho = best.1 / (ps * pe).sqrt();
    (lag, 10.0 * (ps / pe).log10(), rho)
}

fn echo_run(delay_ms: u64, erl: f32) -> (usize, f64, f64) {
    let cfg = ExchangeConfig {
        echo_delay: Duration::from_millis(delay_ms),
        echo_erl_db: erl,
        ..exchange_cfg()
    };
    let mut b = Bed::new(cfg, 6);
    let id = b.call("0215550101");
    assert!(b.until(1.0, |b| b.ev.contains(&PstnEvent::Connected { id })));
    b.run(0.1);
    let (sent, got) = send_noise(&mut b, id, 1.5);
    measure(&sent, &got, 1600)
}

#[test]
fn line_echo_returns_with_configured_delay_and_erl() {
    let (lag_a, erl_a, rho_a) = echo_run(8, 12.0);
    let (lag_b, erl_b, rho_b) = echo_run(40, 18.0);
    println!(
        "echo: delay 8 ms -> lag {lag_a} samples ({:.2} ms), ERL {erl_a:.2} dB, rho {rho_a:.3}; \
         delay 40 ms -> lag {lag_b} samples ({:.2} ms), ERL {erl_b:.2} dB, rho {rho_b:.3}; \
         transport (blocks + framing) {:.2} ms",
        lag_a as f64 / 8.0,
        lag_b as f64 / 8.0,
        (lag_a as f64 - 64.0) / 8.0
    );
    // The configured delay difference is exact (32 ms = 256 samples); the
    // rest is the round trip through two 20 ms block buffers and the E1.
    assert_eq!(lag_b - lag_a, 256);
    assert!(lag_a >= 64 && lag_a <= 64 + 8 * 60, "lag {lag_a}");
    assert!((erl_a - 12.0).abs() < 1.0, "ERL {erl_a}");
    assert!((erl_b - 18.0).abs() < 1.0, "ERL {erl_b}");
    assert!(rho_a > 0.8 && rho_b > 0.8, "{rho_a} {rho_b}");
}

#[test]
fn inbound_call_carries_restricted_calling_number() {
    let mut b = Bed::new(exchange_cfg(), 7);
    let now = b.now();
    let mut cid = CallerId::restricted("0215550199");
    cid.ton = 2;
    cid.screening = Screening::Network;
    let xid = b.trunk.exchange.originate("100", Some(&cid), now).unwrap();
    assert!(b.until(1.0, |b| b
        .ev
        .iter()
        .any(|e| matches!(e, PstnEvent::Incoming { .. }))));
    let (id, channel, called, calling, context) =
        b.ev.iter()
            .find_map(|e| match e {
                PstnEvent::Incoming {
                    id,
                    channel,
                    called,
                    calling,
                    context,
                    sending_complete: true,
                    ..
                } => Some((
                    *id,
                    *channel,
                    called.clone(),
                    calling.clone(),
                    context.clone(),
                )),
                _ => None,
            })
            .unwrap();
    assert_eq!(called, "100");
    assert_eq!(context, "from-pstn");
    let calling = calling.unwrap();
    assert_eq!(calling.number, "0215550199");
    assert_eq!(calling.ton, 2);
    assert_eq!(calling.presentation, Presentation::Restricted);
    assert_eq!(calling.screening, Screening::Network);
    // The network chose channel 1 (it hunts upwards); we honour it.
    assert_eq!(channel, ChanId(1));
    assert_eq!(b.trunk.exchange.channel(xid), Some(ChanId(1)));
    assert!(b.until(1.0, |b| b
        .xev
        .contains(&ExchangeEvent::Proceeding { id: xid })));
    let now = b.now();
    b.pstn.alert(id, false, now).unwrap();
    assert!(b.until(1.0, |b| b
        .xev
        .contains(&ExchangeEvent::Alerting { id: xid })));
    let now = b.now();
    b.pstn.answer(id, now).unwrap();
    assert!(b.until(1.0, |b| b.ev.contains(&PstnEvent::Connected { id })));
    assert!(b.xev.contains(&ExchangeEvent::Answered { id: xid }));
    let ch = b.pstn.show_channels();
    let row = ch.iter().find(|c| c.channel == 1).unwrap();
    assert_eq!(row.direction, Some("in"));
    assert!(row.connected);
    assert_eq!(row.calling.as_deref(), Some("0215550199"));
    let now = b.now();
    b.trunk.exchange.hangup(xid, 16, now).unwrap();
    assert!(b.until(1.0, |b| b.released(id).is_some()));
    assert_eq!(b.released(id), Some(16));
}

#[test]
fn thirty_calls_fill_the_span_and_the_31st_gets_34() {
    let mut b = Bed::new(exchange_cfg(), 8);
    let mut ids = Vec::new();
    for i in 0..30 {
        ids.push(b.call(&format!("02155501{i:02}1")));
        b.run(0.005);
    }
    assert!(b.until(3.0, |b| ids
        .iter()
        .all(|id| b.ev.contains(&PstnEvent::Connected { id: *id }))));
    let s = &b.pstn.show_spans()[0];
    assert_eq!((s.bchannels, s.in_use, s.calls), (30, 30, 30));
    let mut chans: Vec<u16> = ids
        .iter()
        .map(|id| b.pstn.channel(*id).unwrap().1 .0)
        .collect();
    chans.sort();
    chans.dedup();
    assert_eq!(chans.len(), 30, "30 distinct B-channels");
    assert!(!chans.contains(&16));
    assert_eq!(b.trunk.exchange.call_count(), 30);
    let extra = b.call("0215550111");
    assert_eq!(b.released(extra), None);
    b.step();
    assert_eq!(b.released(extra), Some(34));
    // The exchange cannot get a channel to us either.
    let now = b.now();
    assert!(b.trunk.exchange.originate("100", None, now).is_err());
    assert!(b.pstn.show_channels().iter().all(|c| c.state == "Active"));
    // JSON shape the lead wires into tandemctl.
    let js = serde_json::to_value(b.pstn.show_spans()).unwrap();
    assert_eq!(js[0]["in_use"], 30);
    assert_eq!(js[0]["signalling"], "pri_cpe");
    // Free one; a new call takes exactly that channel.
    let now = b.now();
    let freed = b.pstn.channel(ids[7]).unwrap().1;
    b.pstn.release(ids[7], 16, now).unwrap();
    assert!(b.until(1.0, |b| b.pstn.show_spans()[0].in_use == 29));
    let again = b.call("0215550121");
    assert!(b.until(1.0, |b| b.ev.contains(&PstnEvent::Connected { id: again })));
    assert_eq!(b.pstn.channel(again).unwrap().1, freed);
}

#[test]
fn calls_survive_dchannel_bit_errors() {
    let mut b = Bed::new(exchange_cfg(), 9);
    b.trunk.line.imp.dchan_flip_per_64k = 300; // ~0.5% of TS16 octets hit
    let mut done = 0;
    for i in 0..5 {
        let id = b.call(&format!("55500{i}1"));
        assert!(
            b.until(10.0, |b| b.ev.contains(&PstnEvent::Connected { id })),
            "call {i} connected despite bit errors"
        );
        let now = b.now();
        b.pstn.release(id, 16, now).unwrap();
        assert!(b.until(10.0, |b| b.released(id).is_some()));
        assert_eq!(b.released(id), Some(16));
        done += 1;
    }
    assert_eq!(done, 5);
    let errs = b.trunk.line.a.d_errors + b.trunk.line.b.d_errors;
    println!("bit errors: {errs} D-channel frames dropped by FCS, all calls completed");
    assert!(errs > 0, "errors were injected and dropped by the FCS");
}

#[test]
fn exclusive_selection_and_smaller_block_size() {
    let mut span = SpanConfig::e1(1, 1, "from-pstn");
    span.channel_selection = control::pstn::config::ChannelSelection::Exclusive;
    span.blocksize = 80;
    span.bchannels = vec![1, 2, 3];
    let mut b = Bed::with_span(exchange_cfg(), span, 10);
    let id = b.call("0215550101");
    assert!(b.until(1.0, |b| b.ev.contains(&PstnEvent::Connected { id })));
    assert_eq!(b.pstn.channel(id), Some((SpanId(1), ChanId(3))));
    b.run(0.1);
    b.pstn.flush_audio(id, b.trunk.tandem_span()).unwrap();
    b.run(0.1);
    let blk = b
        .pstn
        .read_audio(id, b.trunk.tandem_span())
        .unwrap()
        .unwrap();
    assert_eq!(blk.len(), 80);
    assert!(b
        .pstn
        .write_audio(id, b.trunk.tandem_span(), &[0xD5; 160])
        .is_err());
    // Only three B-channels are ours: the fourth call gets 34.
    let more: Vec<PstnCallId> = (0..3).map(|i| b.call(&format!("7{i}1"))).collect();
    b.step();
    assert_eq!(b.released(more[2]), Some(34));
    assert!(b.until(1.0, |b| b
        .ev
        .contains(&PstnEvent::Connected { id: more[1] })));
}

#[test]
fn overlap_receiving_collects_digits_from_information() {
    let mut b = Bed::new(exchange_cfg(), 11);
    let now = b.now();
    let xid = b
        .trunk
        .exchange
        .originate_overlap("1", Some(&CallerId::allowed("0215550142")), now)
        .unwrap();
    assert!(b.until(1.0, |b| b
        .xev
        .contains(&ExchangeEvent::SetupAcknowledged { id: xid })));
    let id =
        b.ev.iter()
            .find_map(|e| match e {
                PstnEvent::Incoming {
                    id,
                    called,
                    sending_complete: false,
                    ..
                } if called == "1" => Some(*id),
                _ => None,
            })
            .expect("incoming overlap call");
    assert_eq!(
        b.pstn.state(id),
        Some(control::isdn::CallState::OverlapReceiving)
    );
    let now = b.now();
    b.trunk.exchange.send_digits(xid, "00", false, now).unwrap();
    assert!(b.until(1.0, |b| b.ev.iter().any(
        |e| matches!(e, PstnEvent::Digits { called, .. } if called == "100")
    )));
    let now = b.now();
    b.trunk.exchange.send_digits(xid, "2", true, now).unwrap();
    assert!(b.until(1.0, |b| b
        .xev
        .contains(&ExchangeEvent::Proceeding { id: xid })));
    assert!(b.ev.contains(&PstnEvent::Digits {
        id,
        digits: "2".into(),
        called: "1002".into(),
        sending_complete: true
    }));
    let now = b.now();
    b.pstn.answer(id, now).unwrap();
    assert!(b.until(1.0, |b| b.ev.contains(&PstnEvent::Connected { id })));
    assert_eq!(b.pstn.show_channels()[0].called.as_deref(), Some("1002"));
}

#[test]
fn tandem_as_network_side_against_a_user_side_exchange() {
    let mut span = SpanConfig::e1(1, 1, "from-pstn");
    span.signalling = control::pstn::config::Signalling::PriNet;
    let x = Exchange::with_side(exchange_cfg(), control::isdn::Side::User);
    let mut b = Bed::with_exchange(x, span, 12);
    // The network hunts upwards.
    let id = b.call("0215550101");
    assert!(b.until(1.0, |b| b.ev.contains(&PstnEvent::Connected { id })));
    assert_eq!(b.pstn.channel(id), Some((SpanId(1), ChanId(1))));
    let busy = b.call("0215550102");
    assert!(b.until(3.0, |b| b.released(busy).is_some()));
    assert_eq!(b.released(busy), Some(17));
    // A call from the CPE into Tandem (the network).
    let now = b.now();
    let xid = b
        .trunk
        .exchange
        .originate("200", Some(&CallerId::restricted("4930777")), now)
        .unwrap();
    assert!(b.until(1.0, |b| b
        .xev
        .contains(&ExchangeEvent::Proceeding { id: xid })));
    let calling = b.ev.iter().find_map(|e| match e {
        PstnEvent::Incoming { calling, .. } => calling.clone(),
        _ => None,
    });
    assert_eq!(
        calling.map(|c| c.presentation),
        Some(Presentation::Restricted)
    );
    let now = b.now();
    b.pstn.release(id, 16, now).unwrap();
    assert!(b.until(1.0, |b| b.released(id) == Some(16)));
}

#[test]
fn cable_cut_raises_los_drops_the_dchannel_and_recovers() {
    let mut b = Bed::new(exchange_cfg(), 13);
    let id = b.call("0215550101");
    assert!(b.until(1.0, |b| b.ev.contains(&PstnEvent::Connected { id })));
    b.trunk.line.imp.cut = true;
    b.run(0.01);
    let s = &b.pstn.show_spans()[0];
    assert!(s.alarms.contains(&"LOS"), "{:?}", s.alarms);
    // T203/T200 x N200: the D-channel gives up within seconds.
    assert!(b.until(20.0, |b| b
        .ev
        .contains(&PstnEvent::SpanDown { span: SpanId(1) })));
    let down_at = b.now();
    b.trunk.line.imp.cut = false;
    assert!(b.until(10.0, |b| b
        .ev
        .contains(&PstnEvent::SpanUp { span: SpanId(1) })));
    let s = &b.pstn.show_spans()[0];
    assert!(s.alarms.is_empty() && s.dchannel_up, "{s:?}");
    println!(
        "D-channel back {:?} after it went down (cable restored then)",
        b.now() - down_at
    );
    // The active call survived the link failure; a new call works too.
    assert_eq!(b.released(id), None);
    let id2 = b.call("0215550111");
    assert!(b.until(2.0, |b| b.ev.contains(&PstnEvent::Connected { id: id2 })));
}
