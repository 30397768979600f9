//! Media applications over loopback UDP: a relay session between two
//! "phones" (sockets), a tone and a sound buffer played toward one of them
//! (checked by decoding the RTP it receives: frequency by Goertzel, pacing,
//! sequence/timestamp continuity with the relayed stream), digits sent from
//! a phone as RFC 4733 and in-band tones reported exactly once each, and
//! digits sent into a leg as RFC 4733 or in-band.

use std::net::{SocketAddr, UdpSocket};
use std::sync::Arc;
use std::time::{Duration, Instant};

use dataplane::codec::g711;
use dataplane::dsp::dtmf::{generate_digits, DtmfDetector, DtmfEvent, EventRepr};
use dataplane::wire::{rtp, Pt, Ssrc};
use dataplane::{
    clock, Backend, CodecKind, Config, Dataplane, DigitMode, DigitVia, LegCodec, MediaEvent, Mode,
    SessionId, Side, Source,
};

fn first_core() -> usize {
    core_affinity::get_core_ids()
        .and_then(|c| c.first().map(|c| c.id))
        .unwrap_or(0)
}

fn start(ports: std::ops::RangeInclusive<u16>) -> Dataplane {
    Dataplane::start(Config {
        backend: Backend::Socket,
        cores: vec![first_core()],
        rtp_ports: ports,
        media_ip: "127.0.0.1".parse().unwrap(),
        media_timeout: Duration::ZERO,
        max_sessions_per_worker: 8,
        xdp: None,
        control_cores: Vec::new(),
    })
    .unwrap()
}

/// Two phones on loopback joined by a relay session: A's phone talks to
/// leg A, B's phone to leg B.
struct Call {
    dp: Dataplane,
    id: SessionId,
    pa: UdpSocket,
    pb: UdpSocket,
    leg_a: SocketAddr,
    leg_b: SocketAddr,
}

fn call(ports: std::ops::RangeInclusive<u16>) -> Call {
    let mut dp = start(ports);
    let s = dp.create_session(Mode::Relay).unwrap();
    let pa = UdpSocket::bind("127.0.0.1:0").unwrap();
    let pb = UdpSocket::bind("127.0.0.1:0").unwrap();
    for p in [&pa, &pb] {
        p.set_read_timeout(Some(Duration::from_millis(200)))
            .unwrap();
    }
    dp.set_remote(s.id, Side::A, pa.local_addr().unwrap(), None)
        .unwrap();
    dp.set_remote(s.id, Side::B, pb.local_addr().unwrap(), None)
        .unwrap();
    Call {
        dp,
        id: s.id,
        pa,
        pb,
        leg_a: s.a,
        leg_b: s.b,
    }
}

fn rtp_packet(pt: u8, marker: bool, seq: u16, ts: u32, ssrc: u32, payload: &[u8]) -> Vec<u8> {
    let mut b = vec![0u8; rtp::HEADER_LEN + payload.len()];
    rtp::Repr {
        marker,
        payload_type: Pt::new(pt),
        sequence_number: seq,
        timestamp: ts,
        ssrc: Ssrc(ssrc),
    }
    .emit(&mut b)
    .unwrap();
    b[rtp::HEADER_LEN..].copy_from_slice(payload);
    b
}

#[derive(Debug, Clone)]
struct Rx {
    at: Instant,
    seq: u16,
    ts: u32,
    ssrc: Ssrc,
    marker: bool,
    pt: u8,
    payload: Vec<u8>,
}

fn recv(sock: &UdpSocket) -> Option<Rx> {
    let mut buf = [0u8; 1500];
    let (n, _) = sock.recv_from(&mut buf).ok()?;
    let p = rtp::Packet::new_checked(&buf[..n]).ok()?;
    Some(Rx {
        at: clock::now(),
        seq: p.sequence_number(),
        ts: p.timestamp(),
        ssrc: p.ssrc(),
        marker: p.marker(),
        pt: p.payload_type().get(),
        payload: p.payload().to_vec(),
    })
}

fn recv_n(sock: &UdpSocket, n: usize) -> Vec<Rx> {
    let mut v = Vec::new();
    while v.len() < n {
        match recv(sock) {
            Some(r) => v.push(r),
            None => break,
        }
    }
    v
}

fn media_event(dp: &mut Dataplane, wait: Duration) -> Option<MediaEvent> {
    let deadline = clock::now() + wait;
    loop {
        if let Some(e) = dp.poll_media_event() {
            return Some(e);
        }
        if clock::now() > deadline {
            return None;
        }
        std::thread::sleep(Duration::from_millis(2));
    }
}

/// Share of the signal's power at `hz` (Goertzel), 0..1.
fn share(x: &[i16], hz: f64) -> f64 {
    let w = std::f64::consts::TAU * hz / 8000.0;
    let c = 2.0 * w.cos();
    let (mut s1, mut s2) = (0.0f64, 0.0f64);
    for &v in x {
        let s0 = f64::from(v) + c * s1 - s2;
        s2 = s1;
        s1 = s0;
    }
    let p = s1 * s1 + s2 * s2 - c * s1 * s2;
    let total: f64 = x.iter().map(|&v| f64::from(v) * f64::from(v)).sum();
    2.0 * p / (x.len() as f64 * total.max(1.0))
}

fn ulaw(rx: &[Rx]) -> Vec<i16> {
    rx.iter()
        .flat_map(|r| r.payload.iter().map(|&u| g711::ulaw_to_linear(u)))
        .collect()
}

/// B's phone sends `n` PCMU packets of silence to leg B (relayed to A).
fn talk_b(c: &Call, first_seq: u16, n: u16) {
    for i in 0..n {
        let seq = first_seq.wrapping_add(i);
        let p = rtp_packet(0, false, seq, 160 * u32::from(seq), 0xb0b, &[0xff; 160]);
        c.pb.send_to(&p, c.leg_b).unwrap();
        std::thread::sleep(Duration::from_millis(2));
    }
}

#[test]
fn tone_toward_a_is_paced_decodes_to_the_tone_and_splices_the_stream() {
    let mut c = call(46_200..=46_219);
    // Relayed media first: A's phone knows our stream.
    talk_b(&c, 100, 5);
    let relayed = recv_n(&c.pa, 5);
    assert_eq!(relayed.len(), 5, "relay works");
    let last = relayed.last().unwrap().clone();

    c.dp.play(c.id, Side::A, Source::tone("eu", "dial").unwrap())
        .unwrap();
    // One second of tone.
    let tone = recv_n(&c.pa, 50);
    assert_eq!(tone.len(), 50);
    // Continuity: same SSRC, next sequence number, marker on the first.
    assert_eq!(tone[0].ssrc, last.ssrc);
    assert_eq!(tone[0].seq, last.seq.wrapping_add(1));
    assert!(tone[0].marker && tone[1..].iter().all(|r| !r.marker));
    assert!(tone[0].ts.wrapping_sub(last.ts) >= 160);
    for w in tone.windows(2) {
        assert_eq!(w[1].seq, w[0].seq.wrapping_add(1));
        assert_eq!(w[1].ts, w[0].ts.wrapping_add(160));
        assert_eq!(w[1].pt, 0);
    }
    // Pacing: 49 intervals of 20 ms (the machine is shared: a wide margin).
    let span = tone[49].at.duration_since(tone[0].at);
    assert!(
        span >= Duration::from_millis(880) && span <= Duration::from_millis(1200),
        "50 packets took {span:?}"
    );
    let pcm = ulaw(&tone);
    let s425 = share(&pcm, 425.0);
    assert!(s425 > 0.9, "425 Hz share {s425}");
    assert!(share(&pcm, 1000.0) < 0.01);

    // While the tone plays, B's media is not relayed to A.
    talk_b(&c, 105, 5);
    let more = recv_n(&c.pa, 10);
    assert_eq!(more.len(), 10);
    assert!(
        more.iter().all(|r| r.payload != vec![0xff; 160]),
        "relayed media leaked into the tone"
    );
    assert_eq!(more[0].seq, tone[49].seq.wrapping_add(1));
    c.dp.stop_play(c.id, Side::A).unwrap();
    assert_eq!(
        media_event(&mut c.dp, Duration::from_secs(2)),
        Some(MediaEvent::PlaybackDone {
            id: c.id,
            side: Side::A,
            completed: false
        })
    );
    // Tone packets sent before the stop took effect.
    let mut last_tone = more[9].clone();
    while let Some(r) = recv(&c.pa) {
        assert_eq!(r.seq, last_tone.seq.wrapping_add(1));
        last_tone = r;
    }
    let tail = {
        let mut seen = Vec::new();
        talk_b(&c, 110, 3);
        seen.extend(recv_n(&c.pa, 3));
        seen
    };
    assert_eq!(tail.len(), 3);
    assert!(tail[0].marker, "relay resumes with the marker bit");
    assert_eq!(tail[0].ssrc, last.ssrc);
    assert_eq!(tail[0].seq, last_tone.seq.wrapping_add(1));
    assert!(tail[0].ts.wrapping_sub(last_tone.ts) >= 160);
    assert_eq!(tail[0].payload, vec![0xff; 160]);
    assert_eq!(tail[1].seq, tail[0].seq.wrapping_add(1));
}

#[test]
fn sound_buffer_plays_to_the_end_in_g729() {
    let mut c = call(46_220..=46_239);
    c.dp.set_codec(c.id, Side::B, LegCodec::new(CodecKind::G729))
        .unwrap();
    // 0.5 s of 600 Hz at -10 dBm0.
    let samples: Arc<[i16]> = (0..4000)
        .map(|i| ((i as f64 * std::f64::consts::TAU * 600.0 / 8000.0).sin() * 7000.0) as i16)
        .collect();
    let t0 = clock::now();
    c.dp.play(c.id, Side::B, Source::Samples(samples)).unwrap();
    let got = recv_n(&c.pb, 25);
    assert_eq!(got.len(), 25);
    assert!(got.iter().all(|r| r.pt == 18 && r.payload.len() == 20));
    assert_eq!(
        media_event(&mut c.dp, Duration::from_secs(2)),
        Some(MediaEvent::PlaybackDone {
            id: c.id,
            side: Side::B,
            completed: true
        })
    );
    assert!(clock::now().duration_since(t0) >= Duration::from_millis(450));
    assert!(recv(&c.pb).is_none(), "nothing after the end");
    let mut dec = dataplane::codec::g729::G729A::new();
    let mut pcm = Vec::new();
    for r in &got {
        let mut out = [0i16; 160];
        use dataplane::codec::Codec;
        let n = dec.decode(&r.payload, &mut out).unwrap();
        pcm.extend_from_slice(&out[..n]);
    }
    let s = share(&pcm[800..3600], 600.0);
    assert!(s > 0.8, "600 Hz share after G.729 {s}");
}

/// A's phone sends `digits` as RFC 4733 (with updates and three ends each).
fn send_rfc4733(c: &Call, digits: &str, pt: u8) {
    let mut seq = 1000u16;
    let mut ts = 8000u32;
    for ch in digits.chars() {
        let d = dataplane::dsp::dtmf::Digit::from_char(ch).unwrap();
        let mut send = |end: bool, dur: u16, marker: bool| {
            let mut pl = [0u8; 4];
            EventRepr {
                event: d.event(),
                end,
                volume: 10,
                duration: dur,
            }
            .emit(&mut pl)
            .unwrap();
            c.pa.send_to(&rtp_packet(pt, marker, seq, ts, 0xa0a, &pl), c.leg_a)
                .unwrap();
            seq = seq.wrapping_add(1);
            std::thread::sleep(Duration::from_millis(3));
        };
        send(false, 0, true);
        for k in 1..5 {
            send(false, 160 * k, false);
        }
        for _ in 0..3 {
            send(true, 800, false);
        }
        ts += 2000;
    }
}

fn collect_digits(dp: &mut Dataplane, wait: Duration) -> Vec<(char, u32, DigitVia, Side)> {
    let mut v = Vec::new();
    let deadline = clock::now() + wait;
    while clock::now() < deadline {
        match dp.poll_media_event() {
            Some(MediaEvent::Digit {
                digit,
                duration_ms,
                via,
                side,
                ..
            }) => v.push((digit, duration_ms, via, side)),
            Some(e) => panic!("unexpected {e:?}"),
            None => std::thread::sleep(Duration::from_millis(5)),
        }
    }
    v
}

#[test]
fn rfc4733_and_inband_digits_from_a_are_reported_once_each() {
    let mut c = call(46_240..=46_259);
    let a = LegCodec {
        dtmf_pt: Some(101),
        ..LegCodec::new(CodecKind::Pcmu)
    };
    c.dp.set_codec(c.id, Side::A, a).unwrap();
    c.dp.set_codec(c.id, Side::B, a).unwrap();
    c.dp.detect_digits(c.id, Side::A, DigitMode::Auto).unwrap();
    std::thread::sleep(Duration::from_millis(20));

    // In-band first (Auto turns in-band off once telephone-events arrive).
    let mut pcm = vec![0i16; 800];
    generate_digits("159*", -12.0, 80, 80, &mut pcm);
    pcm.extend(std::iter::repeat_n(0, 800));
    for (i, chunk) in pcm.chunks(160).enumerate() {
        let mut mu = [0u8; 160];
        g711::encode_ulaw(chunk, &mut mu[..chunk.len()]);
        let p = rtp_packet(
            0,
            i == 0,
            i as u16,
            160 * i as u32,
            0xa0a,
            &mu[..chunk.len()],
        );
        c.pa.send_to(&p, c.leg_a).unwrap();
        std::thread::sleep(Duration::from_millis(2));
    }
    let got = collect_digits(&mut c.dp, Duration::from_millis(600));
    let s: String = got.iter().map(|g| g.0).collect();
    assert_eq!(s, "159*", "{got:?}");
    assert!(got
        .iter()
        .all(|g| g.2 == DigitVia::InBand && g.3 == Side::A && (60..=110).contains(&g.1)));

    send_rfc4733(&c, "12#D", 101);
    let got = collect_digits(&mut c.dp, Duration::from_millis(800));
    assert_eq!(
        got,
        [
            ('1', 100, DigitVia::Rfc4733, Side::A),
            ('2', 100, DigitVia::Rfc4733, Side::A),
            ('#', 100, DigitVia::Rfc4733, Side::A),
            ('D', 100, DigitVia::Rfc4733, Side::A)
        ]
    );
    // The relay still carries everything to B (events included).
    let mut n = 0;
    while recv(&c.pb).is_some() {
        n += 1;
    }
    assert!(n >= 40, "B received {n} packets");

    // Detection off: nothing more.
    c.dp.detect_digits(c.id, Side::A, DigitMode::Off).unwrap();
    std::thread::sleep(Duration::from_millis(20));
    send_rfc4733(&c, "7", 101);
    assert!(collect_digits(&mut c.dp, Duration::from_millis(300)).is_empty());
}

#[test]
fn digits_sent_into_b_as_rfc4733_and_inband() {
    let mut c = call(46_260..=46_279);
    let with_events = LegCodec {
        dtmf_pt: Some(96),
        ..LegCodec::new(CodecKind::Pcmu)
    };
    c.dp.set_codec(c.id, Side::B, with_events).unwrap();
    c.dp.send_digit(c.id, Side::B, '4', Duration::from_millis(100))
        .unwrap();
    c.dp.send_digit(c.id, Side::B, '#', Duration::from_millis(100))
        .unwrap();
    assert!(c
        .dp
        .send_digit(c.id, Side::B, 'x', Duration::from_millis(100))
        .is_err());
    let mut pkts = Vec::new();
    while let Some(r) = recv(&c.pb) {
        pkts.push(r);
    }
    assert!(pkts.iter().all(|r| r.pt == 96));
    let evs: Vec<(u32, EventRepr, bool)> = pkts
        .iter()
        .map(|r| (r.ts, EventRepr::from_bytes(&r.payload).unwrap(), r.marker))
        .collect();
    for w in pkts.windows(2) {
        assert_eq!(w[1].seq, w[0].seq.wrapping_add(1));
    }
    let ends: Vec<_> = evs.iter().filter(|e| e.1.end).collect();
    assert_eq!(ends.len(), 6, "three end packets per digit");
    assert!(ends.iter().all(|e| e.1.duration == 800));
    let starts: Vec<_> = evs.iter().filter(|e| e.2).map(|e| e.1.event).collect();
    assert_eq!(starts, [4, 11], "one marked begin per digit");
    assert_ne!(ends[0].0, ends[3].0, "each digit has its own timestamp");
    let mut sent = Vec::new();
    while let Some(e) = media_event(&mut c.dp, Duration::from_millis(200)) {
        sent.push(e);
    }
    assert_eq!(
        sent,
        [
            MediaEvent::DigitSent {
                id: c.id,
                side: Side::B,
                digit: '4'
            },
            MediaEvent::DigitSent {
                id: c.id,
                side: Side::B,
                digit: '#'
            }
        ]
    );

    // Leg A has no telephone-event: digits go in-band in its codec.
    c.dp.set_codec(c.id, Side::A, LegCodec::new(CodecKind::Pcma))
        .unwrap();
    c.dp.send_digit(c.id, Side::A, '9', Duration::from_millis(120))
        .unwrap();
    c.dp.send_digit(c.id, Side::A, '0', Duration::from_millis(120))
        .unwrap();
    let mut pcm = Vec::new();
    while let Some(r) = recv(&c.pa) {
        assert_eq!(r.pt, 8);
        pcm.extend(r.payload.iter().map(|&a| g711::alaw_to_linear(a)));
    }
    let mut det = DtmfDetector::default();
    let mut got = String::new();
    det.process(&pcm, |e| {
        if let DtmfEvent::Begin { digit, .. } = e {
            got.push(digit.to_char());
        }
    });
    assert_eq!(got, "90");
}
