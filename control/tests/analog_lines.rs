//! Analog lines end to end in virtual time: the sans-IO line machines
//! (`control::analog`) drive the simulated TDM400P (`drivers::analog::sim`)
//! with the real DSP in between (`dsp::tones` for dial/ringback/busy tones,
//! `dsp::fsk` for caller ID, `dsp::dtmf` for digits), 1 ms at a time.
//!
//! - A phone on an FXS port hears dial tone (checked by frequency), dials
//!   1002 by DTMF and by pulse, and the line hands the number over.
//! - An incoming call rings the phone with the zone cadence; the phone's
//!   recorded audio decodes to the caller ID (Bell 202 and V.23); the phone
//!   answers after two rings.
//! - A CO line rings the FXO port with caller ID (Bell after the first
//!   ring, V.23 and DTMF before it, a private number); the line answers on
//!   ring N with the caller's number.
//! - An outgoing FXO call dials DTMF the CO can decode, and each far-end
//!   disconnect (polarity reversal, loop current drop, busy tone) ends it.

use std::time::{Duration, Instant};

use control::analog::{
    fxs::Dialplan, CallInput, CidSignalling, CidStart, DialMatch, Disconnect, FxoConfig, FxoLine,
    FxsConfig, FxsLine, HwCommand, HwEvent, LineEvent,
};
use dataplane::dsp::dtmf::{self, DtmfDetector, DtmfEvent};
use dataplane::dsp::fsk::{
    self, Absence, CallerId, CallerIdDetector, DateTime, Format, FskStandard,
};
use dataplane::dsp::tones::{zone_tone, ToneGenerator};
use drivers::analog::sim::{self, CidTiming, SimCard};
use drivers::analog::{conf, Command, Event, RingCadence};
use drivers::ChanId;

const PHONE: ChanId = ChanId(1);
const LINE: ChanId = ChanId(5);

enum Line {
    Fxs(FxsLine),
    Fxo(FxoLine),
}

/// The card, one line machine per port, and the media glue.
struct Rig {
    card: SimCard,
    t0: Instant,
    zone: &'static str,
    lines: Vec<(ChanId, Line, Option<ToneGenerator>)>,
    /// (ms, chan, event) from the line machines.
    log: Vec<(u64, ChanId, LineEvent)>,
    /// (ms, chan, event) from the card.
    hw: Vec<(u64, ChanId, Event)>,
    /// Audio still to play before the next Ring (pre-ring caller ID), ms.
    spill_ms: u64,
    /// A Ring held back until the spill has played: (due ms, chan, cadence).
    held_ring: Option<(u64, ChanId, Vec<u32>)>,
}

fn dialplan() -> Dialplan {
    Box::new(|d: &str| {
        if d.len() == 4 && d.starts_with('1') {
            DialMatch::Complete
        } else {
            DialMatch::MoreDigits
        }
    })
}

impl Rig {
    fn new(zone: &'static str, fxs: FxsConfig, fxo: FxoConfig) -> Self {
        let card = SimCard::new(&conf::parse("fxoks=1-4\nfxsks=5\n").unwrap());
        Rig {
            card,
            t0: Instant::now(),
            zone,
            lines: vec![
                (PHONE, Line::Fxs(FxsLine::new(fxs, dialplan())), None),
                (LINE, Line::Fxo(FxoLine::new(fxo).unwrap()), None),
            ],
            log: Vec::new(),
            hw: Vec::new(),
            spill_ms: 0,
            held_ring: None,
        }
    }

    fn now(&self) -> Instant {
        self.t0 + Duration::from_millis(self.card.now_ms())
    }

    fn fxs(&mut self) -> &mut FxsLine {
        match &mut self.lines[0].1 {
            Line::Fxs(l) => l,
            Line::Fxo(_) => unreachable!("port 1 is FXS"),
        }
    }

    fn fxo(&mut self) -> &mut FxoLine {
        match &mut self.lines[1].1 {
            Line::Fxo(l) => l,
            Line::Fxs(_) => unreachable!("port 5 is FXO"),
        }
    }

    fn call(&mut self, chan: ChanId, input: CallInput) {
        let now = self.now();
        let i = usize::from(chan != PHONE);
        match &mut self.lines[i].1 {
            Line::Fxs(l) => l.handle_call(input, now).unwrap(),
            Line::Fxo(l) => l.handle_call(input, now).unwrap(),
        }
        self.pump();
    }

    /// Carry commands from the machines to the card and the media path.
    fn pump(&mut self) {
        let ms = self.card.now_ms();
        for (chan, line, tone) in &mut self.lines {
            loop {
                let (cmd, ev) = match line {
                    Line::Fxs(l) => (l.poll_command(), l.poll_event()),
                    Line::Fxo(l) => (l.poll_command(), l.poll_event()),
                };
                if cmd.is_none() && ev.is_none() {
                    break;
                }
                if let Some(e) = ev {
                    self.log.push((ms, *chan, e));
                }
                let Some(cmd) = cmd else { continue };
                match cmd {
                    HwCommand::Ring { cadence } if self.spill_ms > 0 => {
                        // The edge rings only after the pre-ring spill (+200 ms).
                        self.held_ring = Some((ms + self.spill_ms + 200, *chan, cadence));
                        self.spill_ms = 0;
                    }
                    HwCommand::Ring { cadence } => {
                        self.card
                            .command(*chan, &Command::SetCadence(RingCadence(cadence)))
                            .unwrap();
                        self.card.command(*chan, &Command::Ring).unwrap();
                    }
                    HwCommand::RingOff => self.card.command(*chan, &Command::RingOff).unwrap(),
                    HwCommand::OnHook => self.card.command(*chan, &Command::OnHook).unwrap(),
                    HwCommand::OffHook => self.card.command(*chan, &Command::OffHook).unwrap(),
                    HwCommand::SetPolarity(r) => {
                        self.card.command(*chan, &Command::SetPolarity(r)).unwrap()
                    }
                    HwCommand::PlayTone(kind) => {
                        *tone = Some(ToneGenerator::new(zone_tone(self.zone, kind).unwrap()));
                    }
                    HwCommand::StopTone => *tone = None,
                    HwCommand::SendCallerId { cid, signalling } => {
                        // After the first ring: 500 ms into the silence. Before
                        // it (polarity already reversed): 300 ms after the reversal.
                        let pre_ring = !self
                            .hw
                            .iter()
                            .any(|(_, c, e)| *c == *chan && *e == Event::RingerOff);
                        let lead = if pre_ring { 2400 } else { 4000 };
                        let mut pcm = vec![0i16; lead];
                        match signalling {
                            CidSignalling::Fsk { standard, format } => {
                                fsk::generate(standard, format, &cid, -13.0, &mut pcm).unwrap()
                            }
                            CidSignalling::Dtmf => fsk::dtmf_cid_generate(&cid, -10.0, &mut pcm),
                        }
                        if pre_ring {
                            self.spill_ms = pcm.len() as u64 / 8;
                        }
                        self.card.write(*chan, &pcm).unwrap();
                    }
                    HwCommand::SendDtmf(digits) => {
                        let mut pcm = Vec::new();
                        dtmf::generate_digits(&digits, -8.0, 80, 80, &mut pcm);
                        self.card.write(*chan, &pcm).unwrap();
                    }
                }
            }
        }
    }

    /// One ms: card, events, audio, timers, commands.
    fn step(&mut self) {
        for (chan, _, tone) in &mut self.lines {
            if let Some(g) = tone {
                let mut b = [0i16; sim::SAMPLES_PER_MS];
                g.fill(&mut b);
                self.card.write(*chan, &b).unwrap();
            }
        }
        if let Some((due, chan, cadence)) = self.held_ring.take() {
            if self.card.now_ms() >= due {
                self.card
                    .command(chan, &Command::SetCadence(RingCadence(cadence)))
                    .unwrap();
                self.card.command(chan, &Command::Ring).unwrap();
            } else {
                self.held_ring = Some((due, chan, cadence));
            }
        }
        self.card.step_ms();
        let now = self.now();
        let ms = self.card.now_ms();
        while let Some((chan, e)) = self.card.poll_event() {
            self.hw.push((ms, chan, e));
            let Some(hw) = HwEvent::from_card(e) else {
                continue;
            };
            for (c, line, _) in &mut self.lines {
                if *c == chan {
                    match line {
                        Line::Fxs(l) => l.handle_hw(hw, now),
                        Line::Fxo(l) => l.handle_hw(hw, now),
                    }
                }
            }
        }
        let mut audio = Vec::new();
        for (chan, line, _) in &mut self.lines {
            audio.clear();
            self.card.read(*chan, &mut audio).unwrap();
            match line {
                Line::Fxs(l) => {
                    l.handle_audio(&audio, now);
                    if l.poll_timeout().is_some_and(|t| t <= now) {
                        l.handle_timeout(now);
                    }
                }
                Line::Fxo(l) => {
                    l.handle_audio(&audio, now);
                    if l.poll_timeout().is_some_and(|t| t <= now) {
                        l.handle_timeout(now);
                    }
                }
            }
        }
        self.pump();
    }

    fn run(&mut self, ms: u64) {
        for _ in 0..ms {
            self.step();
        }
    }

    /// Run until `pred` holds for a logged line event, at most `ms`.
    fn run_until(&mut self, ms: u64, pred: impl Fn(&LineEvent) -> bool) -> Option<u64> {
        for _ in 0..ms {
            self.step();
            if let Some((t, _, _)) = self.log.iter().find(|(_, _, e)| pred(e)) {
                return Some(*t);
            }
        }
        None
    }
}

fn caller() -> CallerId {
    CallerId {
        datetime: Some(DateTime {
            month: 11,
            day: 26,
            hour: 10,
            minute: 30,
        }),
        number: Some("2025550123".into()),
        name: Some("ALICE SMITH".into()),
        ..CallerId::default()
    }
}

/// Power of `hz` relative to the block's energy (1.0 for a pure tone).
fn tone_fraction(x: &[i16], hz: f32) -> f32 {
    let k = 2.0 * (std::f32::consts::TAU * hz / 8000.0).cos();
    let (mut s1, mut s2) = (0f32, 0f32);
    let mut e = 0f32;
    for &v in x {
        let v = f32::from(v);
        e += v * v;
        let s0 = v + k * s1 - s2;
        s2 = s1;
        s1 = s0;
    }
    (s1 * s1 + s2 * s2 - k * s1 * s2) * 2.0 / (x.len() as f32 * e.max(1.0))
}

fn dtmf_digits(pcm: &[i16]) -> String {
    let mut d = DtmfDetector::default();
    let mut s = String::new();
    d.process(pcm, |e| {
        if let DtmfEvent::Begin { digit, .. } = e {
            s.push(digit.to_char());
        }
    });
    s
}

#[test]
fn phone_hears_dial_tone_and_dials_1002_by_dtmf_and_pulse() {
    for pulse in [false, true] {
        let mut rig = Rig::new(
            "us",
            FxsConfig::for_zone("us").unwrap(),
            FxoConfig::default(),
        );
        let ph = rig.card.phone(PHONE).unwrap();
        ph.off_hook();
        ph.wait(600);
        if pulse {
            ph.dial_pulse("1002");
        } else {
            ph.dial_dtmf("1002");
        }
        let t = rig.run_until(8000, |e| matches!(e, LineEvent::Dialed { .. }));
        assert!(t.is_some(), "pulse={pulse}: no number: {:?}", rig.log);
        assert_eq!(
            rig.log[0].2,
            LineEvent::Dialed {
                number: "1002".into()
            },
            "pulse={pulse}"
        );
        // Dial tone: 350 + 440 Hz in the phone's ear after off hook, gone
        // after the first digit.
        let heard = rig.card.phone(PHONE).unwrap().heard().to_vec();
        let early = &heard[800..800 + 1600];
        let (a, b) = (tone_fraction(early, 350.0), tone_fraction(early, 440.0));
        assert!(a > 0.3 && b > 0.3, "pulse={pulse}: dial tone {a} {b}");
        assert!(tone_fraction(early, 425.0) < a, "not a 425 Hz tone");
        let late = &heard[heard.len() - 800..];
        assert!(
            late.iter().all(|&s| s == 0),
            "pulse={pulse}: dial tone still on after dialling"
        );
        // The call model answers; the phone hangs up; the line reports it.
        let now = rig.now();
        rig.fxs().handle_call(CallInput::Answered, now).unwrap();
        rig.card.phone(PHONE).unwrap().flash(500);
        assert!(
            rig.run_until(2000, |e| matches!(e, LineEvent::Flash))
                .is_some(),
            "pulse={pulse}: no flash: {:?}",
            rig.log
        );
        rig.card.phone(PHONE).unwrap().on_hook();
        assert!(rig
            .run_until(3000, |e| matches!(e, LineEvent::HungUp))
            .is_some());
    }
}

#[test]
fn incoming_call_rings_with_cadence_and_phone_decodes_caller_id() {
    for (zone, standard, on, off) in [
        ("us", FskStandard::Bell202, 2000, 4000),
        ("de", FskStandard::V23, 1000, 4000),
    ] {
        let cfg = FxsConfig::for_zone(zone).unwrap();
        let mut rig = Rig::new(zone, cfg, FxoConfig::default());
        rig.card.phone(PHONE).unwrap().answer_after_rings(Some(2));
        rig.call(
            PHONE,
            CallInput::Incoming {
                caller: Some(caller()),
            },
        );
        let t = rig.run_until(20_000, |e| matches!(e, LineEvent::Answered));
        assert!(t.is_some(), "{zone}: never answered: {:?}", rig.hw);
        let ringer: Vec<(u64, Event)> = rig
            .hw
            .iter()
            .filter(|(_, c, e)| *c == PHONE && matches!(e, Event::RingerOn | Event::RingerOff))
            .map(|&(t, _, e)| (t, e))
            .collect();
        let t0 = ringer[0].0;
        assert_eq!(
            ringer,
            vec![
                (t0, Event::RingerOn),
                (t0 + on, Event::RingerOff),
                (t0 + on + off, Event::RingerOn),
                (t0 + 2 * on + off, Event::RingerOff),
            ],
            "{zone}"
        );
        // The phone's caller ID display: decode everything it heard.
        let heard = rig.card.phone(PHONE).unwrap().heard().to_vec();
        let mut det = CallerIdDetector::new(standard);
        let mut got = Vec::new();
        det.process(&heard, |r| got.push(r));
        assert_eq!(got, vec![Ok(caller())], "{zone} {standard:?}");
        // Between the first and second ring.
        let cid_at = heard.iter().position(|&s| s != 0).unwrap() as u64 / 8;
        assert!(
            cid_at > t0 + on && cid_at < t0 + on + off,
            "{zone}: {cid_at}"
        );
    }
}

#[test]
fn fxo_answers_on_ring_n_with_the_callers_number() {
    let p = CallerId {
        number_absent: Some(Absence::Private),
        ..CallerId::default()
    };
    let cases: Vec<(&str, CidSignalling, CidTiming, CallerId, u32)> = vec![
        (
            "bell after ring 1",
            CidSignalling::Fsk {
                standard: FskStandard::Bell202,
                format: Format::Mdmf,
            },
            CidTiming::AfterFirstRing,
            caller(),
            2,
        ),
        (
            "bell sdmf private",
            CidSignalling::Fsk {
                standard: FskStandard::Bell202,
                format: Format::Sdmf,
            },
            CidTiming::AfterFirstRing,
            p.clone(),
            3,
        ),
        (
            "v23 before ring 1",
            CidSignalling::Fsk {
                standard: FskStandard::V23,
                format: Format::Mdmf,
            },
            CidTiming::BeforeFirstRing,
            caller(),
            1,
        ),
        (
            "dtmf before ring 1",
            CidSignalling::Dtmf,
            CidTiming::BeforeFirstRing,
            CallerId::with_number("0215550100", None),
            1,
        ),
    ];
    for (name, sig, timing, cid, ring_n) in cases {
        let fxo = FxoConfig {
            answer_on_ring: ring_n,
            cid: Some(sig),
            ..FxoConfig::default()
        };
        let mut rig = Rig::new("us", FxsConfig::for_zone("us").unwrap(), fxo);
        let mut pcm = Vec::new();
        match sig {
            CidSignalling::Fsk { standard, format } => {
                let f = if format == Format::Sdmf {
                    Format::Sdmf
                } else {
                    Format::Mdmf
                };
                fsk::generate(standard, f, &cid, -20.0, &mut pcm).unwrap()
            }
            CidSignalling::Dtmf => fsk::dtmf_cid_generate(&cid, -10.0, &mut pcm),
        }
        rig.card
            .line(LINE)
            .unwrap()
            .ring_in(&[2000, 4000], Some((pcm, timing)));
        let t = rig.run_until(25_000, |e| matches!(e, LineEvent::Incoming { .. }));
        assert!(t.is_some(), "{name}: not answered");
        let rings = rig
            .hw
            .iter()
            .filter(|(_, c, e)| *c == LINE && *e == Event::RingBegin)
            .count();
        assert_eq!(rings as u32, ring_n, "{name}: answered on ring {rings}");
        assert!(rig.card.line(LINE).unwrap().seized(), "{name}");
        let LineEvent::Incoming { caller: got } = &rig.log[0].2 else {
            panic!("{name}: {:?}", rig.log)
        };
        let got = got
            .clone()
            .unwrap_or_else(|| panic!("{name}: no caller ID"));
        assert_eq!(got.number, cid.number, "{name}");
        assert_eq!(got.number_absent, cid.number_absent, "{name}");
        assert_eq!(got.name, cid.name, "{name}");
        assert_eq!(rig.fxo().caller(), Some(&got));
    }
}

#[test]
fn fxo_dials_out_and_detects_each_far_end_disconnect() {
    for (how, want) in [
        (sim::Disconnect::PolarityReversal, Disconnect::Polarity),
        (sim::Disconnect::LoopCurrentDrop, Disconnect::LoopCurrent),
        (
            sim::Disconnect::BusyTone {
                hz: (480.0, 620.0),
                on_ms: 500,
                off_ms: 500,
            },
            Disconnect::Tone,
        ),
        (
            sim::Disconnect::BusyTone {
                hz: (480.0, 620.0),
                on_ms: 250,
                off_ms: 250,
            },
            Disconnect::Tone,
        ),
    ] {
        let mut rig = Rig::new(
            "us",
            FxsConfig::for_zone("us").unwrap(),
            FxoConfig::default(),
        );
        rig.call(
            LINE,
            CallInput::Dial {
                number: "5550100".into(),
            },
        );
        rig.run(3000);
        assert!(rig.card.line(LINE).unwrap().seized());
        let heard = rig.card.line(LINE).unwrap().take_heard();
        assert_eq!(dtmf_digits(&heard), "5550100", "{how:?}");
        rig.card.line(LINE).unwrap().answer(false);
        // Talk for a while: speech-like audio must not look like busy tone.
        let speech: Vec<i16> = (0..16_000)
            .map(|i| {
                let t = i as f32 / 8000.0;
                (3000.0 * (t * 6.0).sin().abs() * (std::f32::consts::TAU * 300.0 * t).sin()) as i16
            })
            .collect();
        rig.card.line(LINE).unwrap().say(&speech);
        rig.run(3000);
        assert!(rig.log.is_empty(), "{how:?}: {:?}", rig.log);
        let start = rig.card.now_ms();
        rig.card.line(LINE).unwrap().hang_up(how);
        let t = rig.run_until(6000, |e| matches!(e, LineEvent::FarEndDisconnect(_)));
        let t = t.unwrap_or_else(|| panic!("{how:?}: not detected"));
        assert_eq!(rig.log[0].2, LineEvent::FarEndDisconnect(want));
        // Polarity and loop drop at once; busy tone within a few cadences.
        let limit = if want == Disconnect::Tone { 3500 } else { 5 };
        assert!(t - start <= limit, "{how:?}: took {} ms", t - start);
        assert!(
            !rig.card.line(LINE).unwrap().seized(),
            "{how:?}: still seized"
        );
    }
}

#[test]
fn pre_ring_caller_id_to_the_phone_v23_and_dtmf() {
    use dataplane::dsp::fsk::DtmfCidDetector;
    for sig in [
        CidSignalling::Fsk {
            standard: FskStandard::V23,
            format: Format::Mdmf,
        },
        CidSignalling::Dtmf,
    ] {
        let mut cfg = FxsConfig::for_zone("uk").unwrap();
        cfg.cid = Some(sig);
        cfg.cid_start = CidStart::BeforeFirstRing;
        let mut rig = Rig::new("uk", cfg, FxoConfig::default());
        rig.card.phone(PHONE).unwrap().answer_after_rings(Some(1));
        rig.call(
            PHONE,
            CallInput::Incoming {
                caller: Some(caller()),
            },
        );
        assert!(
            rig.card.phone(PHONE).unwrap().polarity_reversed(),
            "{sig:?}: no reversal before the spill"
        );
        let t = rig.run_until(15_000, |e| matches!(e, LineEvent::Answered));
        assert!(t.is_some(), "{sig:?}: never answered");
        let first_ring = rig
            .hw
            .iter()
            .find(|(_, _, e)| *e == Event::RingerOn)
            .map(|&(t, _, _)| t)
            .unwrap();
        let heard = rig.card.phone(PHONE).unwrap().heard().to_vec();
        let spill_end = heard.iter().rposition(|&s| s != 0).unwrap() as u64 / 8;
        assert!(
            spill_end < first_ring,
            "{sig:?}: spill ends {spill_end} ms, first ring {first_ring} ms"
        );
        match sig {
            CidSignalling::Fsk { standard, .. } => {
                let mut det = CallerIdDetector::new(standard);
                let mut got = Vec::new();
                det.process(&heard, |r| got.push(r));
                assert_eq!(got, vec![Ok(caller())]);
            }
            CidSignalling::Dtmf => {
                let mut det = DtmfCidDetector::default();
                let mut got = Vec::new();
                det.process(&heard, |c| got.push(c));
                assert_eq!(got.len(), 1);
                assert_eq!(got[0].number, caller().number);
            }
        }
        // Answered: polarity back to normal.
        assert!(!rig.card.phone(PHONE).unwrap().polarity_reversed());
    }
}
