//! The simulated TDM400P from a `system.conf`: four FXS ports with phones and
//! one FXO port with a CO line, driven in virtual time. Checks the events the
//! software would see for each far-end action, the audio paths both ways, and
//! the three CO disconnect methods.

use drivers::analog::sim::{CidTiming, Disconnect, SimCard};
use drivers::analog::{conf, Command, Event, Hook, PortKind};
use drivers::ChanId;

const CONF: &str = "\
# TDM400P: FXS modules on 1-4 (FXO signalling), FXO module on 5
fxoks=1-4
fxsks=5
echocanceller=mg2,1-5
loadzone=us
";

fn card() -> SimCard {
    SimCard::new(&conf::parse(CONF).unwrap())
}

fn drain(c: &mut SimCard) -> Vec<(u16, Event)> {
    std::iter::from_fn(|| c.poll_event())
        .map(|(ch, e)| (ch.0, e))
        .collect()
}

#[test]
fn ports_follow_system_conf() {
    let mut c = card();
    for ch in 1..=4 {
        assert_eq!(c.port(ChanId(ch)).unwrap().kind(), PortKind::Fxs);
        assert!(c.phone(ChanId(ch)).is_ok());
    }
    assert_eq!(c.port(ChanId(5)).unwrap().kind(), PortKind::Fxo);
    assert!(c.line(ChanId(5)).is_ok());
    assert!(c.port(ChanId(6)).is_err());
    assert!(c.command(ChanId(5), &Command::Ring).is_err());
    assert!(c.command(ChanId(1), &Command::OffHook).is_err());
}

#[test]
fn audio_flows_both_ways_and_the_phone_echoes() {
    let mut c = card();
    let ph = c.phone(ChanId(2)).unwrap();
    ph.set_echo(true);
    ph.off_hook();
    c.advance(10);
    assert_eq!(drain(&mut c), vec![(2, Event::OffHook)]);
    let tone: Vec<i16> = (0..800)
        .map(|i| (8000.0 * (i as f64 * 0.3).sin()) as i16)
        .collect();
    c.write(ChanId(2), &tone).unwrap();
    c.advance(100);
    let heard = c.phone(ChanId(2)).unwrap().take_heard();
    assert!(heard.windows(800).any(|w| w == tone.as_slice()));
    let mut back = Vec::new();
    c.read(ChanId(2), &mut back).unwrap();
    let e: f64 = back.iter().map(|&s| f64::from(s).powi(2)).sum();
    assert!(e > 1e9, "echo energy {e}");
}

#[test]
fn co_line_caller_id_before_and_after_first_ring() {
    let spill = vec![1234i16; 1600];
    for timing in [CidTiming::AfterFirstRing, CidTiming::BeforeFirstRing] {
        let mut c = card();
        c.line(ChanId(5))
            .unwrap()
            .ring_in(&[2000, 4000], Some((spill.clone(), timing)));
        let mut first_ring = None;
        let mut spill_at = None;
        let mut polarity_at = None;
        let mut buf = Vec::new();
        for _ in 0..8000 {
            c.step_ms();
            for (_, e) in drain(&mut c) {
                match e {
                    Event::RingBegin if first_ring.is_none() => first_ring = Some(c.now_ms()),
                    Event::Polarity => polarity_at = Some(c.now_ms()),
                    _ => {}
                }
            }
            buf.clear();
            c.read(ChanId(5), &mut buf).unwrap();
            if spill_at.is_none() && buf.contains(&1234) {
                spill_at = Some(c.now_ms());
            }
        }
        let (r, s) = (first_ring.unwrap(), spill_at.unwrap());
        match timing {
            // 2 s ring, then 500 ms.
            CidTiming::AfterFirstRing => {
                assert!((r + 2495..=r + 2505).contains(&s), "{timing:?}: {r} {s}");
                assert_eq!(polarity_at, None);
            }
            CidTiming::BeforeFirstRing => {
                assert!(s < r, "{timing:?}: spill {s} ring {r}");
                assert!(polarity_at.unwrap() < s);
            }
        }
    }
}

#[test]
fn co_disconnects_three_ways() {
    for how in [
        Disconnect::PolarityReversal,
        Disconnect::LoopCurrentDrop,
        Disconnect::BusyTone {
            hz: (480.0, 620.0),
            on_ms: 500,
            off_ms: 500,
        },
    ] {
        let mut c = card();
        c.command(ChanId(5), &Command::OffHook).unwrap();
        c.line(ChanId(5)).unwrap().answer(false);
        c.advance(100);
        drain(&mut c);
        c.line(ChanId(5)).unwrap().hang_up(how);
        c.advance(1000);
        let ev = drain(&mut c);
        let mut audio = Vec::new();
        c.read(ChanId(5), &mut audio).unwrap();
        let loud = audio.iter().filter(|s| s.abs() > 1000).count();
        match how {
            Disconnect::PolarityReversal => {
                assert_eq!(ev, vec![(5, Event::Polarity)]);
                assert_eq!(loud, 0);
            }
            Disconnect::LoopCurrentDrop => {
                assert_eq!(ev, vec![(5, Event::OnHook)]);
            }
            Disconnect::BusyTone { .. } => {
                assert!(ev.is_empty(), "{ev:?}");
                // About half of the second carries the tone.
                assert!((2000..6000).contains(&loud), "{loud} loud samples");
            }
        }
        c.command(ChanId(5), &Command::OnHook).unwrap();
        assert_eq!(c.port(ChanId(5)).unwrap().hook(), Hook::On);
        assert!(!c.line(ChanId(5)).unwrap().seized());
    }
}
