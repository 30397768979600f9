//! Real UDP on 127.0.0.1: phone A speaks PCMU (20 ms), phone B speaks G.729
//! (20 ms, or 30 ms to exercise repacketisation) through a transcoding
//! session. A 1 s voiced test signal (two harmonics with a slow amplitude
//! envelope, speech-like for the G.729 coder) is sent each way; what arrives
//! is decoded and compared by normalised cross-correlation (at the best lag
//! within the codecs' delay) with what was sent. Also checks payload types,
//! telephone-event passthrough with PT remapping, output seq/ts continuity,
//! the transcoding-channel gauge and the codec CPU counters, and that setting
//! equal codecs goes back to the plain relay.
//!
//! Prints the measured CPU per transcoding channel (noisy on a shared box).

use std::net::UdpSocket;
use std::time::Duration;

use dataplane::codec::g711;
use dataplane::codec::g729::G729A;
use dataplane::codec::Codec;
use dataplane::wire::{rtp, Pt, Ssrc};
use dataplane::{clock, Backend, CodecKind, Config, Dataplane, LegCodec, Mode, Side, WorkerStats};

const WAIT: Duration = Duration::from_secs(3);

fn first_core() -> usize {
    core_affinity::get_core_ids()
        .and_then(|c| c.first().map(|c| c.id))
        .unwrap_or(0)
}

fn start(ports: std::ops::RangeInclusive<u16>) -> Dataplane {
    Dataplane::start(Config {
        backend: Backend::Auto,
        cores: vec![first_core()],
        rtp_ports: ports,
        media_ip: "127.0.0.1".parse().unwrap(),
        media_timeout: Duration::ZERO,
        max_sessions_per_worker: 8,
        xdp: None,
        control_cores: Vec::new(),
    })
    .expect("dataplane starts")
}

fn phone() -> UdpSocket {
    let s = UdpSocket::bind("127.0.0.1:0").unwrap();
    s.set_read_timeout(Some(Duration::from_millis(5))).unwrap();
    s
}

fn packet(pt: u8, ssrc: u32, seq: u16, ts: u32, marker: bool, payload: &[u8]) -> Vec<u8> {
    let mut b = vec![0u8; 12 + payload.len()];
    rtp::Repr {
        marker,
        payload_type: Pt::new(pt),
        sequence_number: seq,
        timestamp: ts,
        ssrc: Ssrc(ssrc),
    }
    .emit(&mut b)
    .unwrap();
    b[12..].copy_from_slice(payload);
    b
}

/// Voiced test signal: 200 Hz + 600 Hz with a 3 Hz envelope.
fn signal(n: usize) -> Vec<i16> {
    (0..n)
        .map(|i| {
            let t = i as f64 / 8000.0;
            let env = 0.55 + 0.45 * (2.0 * std::f64::consts::PI * 3.0 * t).sin();
            let v = (2.0 * std::f64::consts::PI * 200.0 * t).sin()
                + 0.5 * (2.0 * std::f64::consts::PI * 600.0 * t).sin();
            (v * env * 6000.0) as i16
        })
        .collect()
}

/// Best normalised cross-correlation of `got` against `sent` over lags 0..=400.
fn correlation(sent: &[i16], got: &[i16]) -> f64 {
    let mut best = 0.0f64;
    for lag in 0..=400usize {
        let n = sent.len().min(got.len().saturating_sub(lag));
        if n < 4000 {
            break;
        }
        // Skip the first 1000 samples (codec warm-up).
        let (mut xy, mut xx, mut yy) = (0.0, 0.0, 0.0);
        for i in 1000..n {
            let (x, y) = (f64::from(sent[i]), f64::from(got[i + lag]));
            xy += x * y;
            xx += x * x;
            yy += y * y;
        }
        if xx > 0.0 && yy > 0.0 {
            best = best.max(xy / (xx * yy).sqrt());
        }
    }
    best
}

struct Received {
    pcm: Vec<i16>,
    pts: Vec<u8>,
    seqs: Vec<u16>,
    tss: Vec<u32>,
    ssrcs: Vec<Ssrc>,
    events: Vec<(u8, Vec<u8>)>,
}

fn drain(sock: &UdpSocket, audio_pt: u8, dec: &mut dyn Codec, r: &mut Received) {
    let mut buf = [0u8; 2048];
    while let Ok((n, _)) = sock.recv_from(&mut buf) {
        let p = rtp::Packet::new_checked(&buf[..n]).expect("valid RTP out");
        let pt = p.payload_type().get();
        if pt == audio_pt {
            let mut out = [0i16; 960];
            let k = dec
                .decode(p.payload(), &mut out)
                .expect("decodable payload");
            r.pcm.extend_from_slice(&out[..k]);
            r.seqs.push(p.sequence_number());
            r.tss.push(p.timestamp());
            r.ssrcs.push(p.ssrc());
        } else {
            r.events.push((pt, p.payload().to_vec()));
            r.seqs.push(p.sequence_number());
        }
        r.pts.push(pt);
    }
}

fn wait_stats(dp: &Dataplane, pred: impl Fn(&WorkerStats) -> bool) -> WorkerStats {
    let deadline = clock::now() + WAIT;
    loop {
        let s = dp.stats()[0];
        if pred(&s) {
            return s;
        }
        assert!(clock::now() < deadline, "stats never matched: {s:?}");
        std::thread::sleep(Duration::from_millis(5));
    }
}

fn run_call(b_ptime: u16, ports: std::ops::RangeInclusive<u16>) {
    let mut dp = start(ports);
    let (pa, pb) = (phone(), phone());
    let s = dp.create_session(Mode::Relay).unwrap();
    dp.set_remote(s.id, Side::A, pa.local_addr().unwrap(), None)
        .unwrap();
    dp.set_remote(s.id, Side::B, pb.local_addr().unwrap(), None)
        .unwrap();
    let a_codec = LegCodec {
        dtmf_pt: Some(101),
        ..LegCodec::new(CodecKind::Pcmu)
    };
    let b_codec = LegCodec {
        ptime_ms: b_ptime,
        dtmf_pt: Some(96),
        ..LegCodec::new(CodecKind::G729)
    };
    assert!(!dp.set_codec(s.id, Side::A, a_codec).unwrap());
    assert!(dp.set_codec(s.id, Side::B, b_codec).unwrap());
    wait_stats(&dp, |w| w.transcoding_channels == 1);

    let sig = signal(8000);
    let mut enc_b = G729A::new();
    let (mut at_b, mut at_a) = (
        Received {
            pcm: vec![],
            pts: vec![],
            seqs: vec![],
            tss: vec![],
            ssrcs: vec![],
            events: vec![],
        },
        Received {
            pcm: vec![],
            pts: vec![],
            seqs: vec![],
            tss: vec![],
            ssrcs: vec![],
            events: vec![],
        },
    );
    let (mut dec_at_b, mut dec_at_a) = (G729A::new(), g711::G711::new(g711::Law::Mu));
    let frame_b = usize::from(b_ptime) * 8;
    // 50 x 20 ms from A; B sends at its own ptime. Paced at real time / 4.
    let mut next_b = 0usize;
    for i in 0..50usize {
        let chunk = &sig[i * 160..(i + 1) * 160];
        let mut mu = [0u8; 160];
        g711::encode_ulaw(chunk, &mut mu);
        let p = packet(
            0,
            0x1111,
            100 + i as u16,
            8000 + 160 * i as u32,
            i == 0,
            &mu,
        );
        pa.send_to(&p, s.a).unwrap();
        while next_b + frame_b <= (i + 1) * 160 {
            let mut g = vec![0u8; frame_b / 8];
            enc_b
                .encode(&sig[next_b..next_b + frame_b], &mut g)
                .unwrap();
            let seq = (next_b / frame_b) as u16;
            let p = packet(18, 0x2222, seq, next_b as u32, seq == 0, &g);
            pb.send_to(&p, s.b).unwrap();
            next_b += frame_b;
        }
        if i == 25 {
            // A telephone-event from A (PT 101) must reach B as PT 96.
            let ev = [1u8, 0x0a, 0x01, 0x40];
            pa.send_to(
                &packet(101, 0x1111, 10_000, 8000 + 160 * 25, true, &ev),
                s.a,
            )
            .unwrap();
        }
        std::thread::sleep(Duration::from_millis(5));
        drain(&pb, 18, &mut dec_at_b, &mut at_b);
        drain(&pa, 0, &mut dec_at_a, &mut at_a);
    }
    let deadline = clock::now() + Duration::from_millis(300);
    while clock::now() < deadline {
        drain(&pb, 18, &mut dec_at_b, &mut at_b);
        drain(&pa, 0, &mut dec_at_a, &mut at_a);
    }

    // A -> B: G.729 at B's ptime, PT 18, B's SSRC constant, contiguous ts.
    assert!(
        at_b.pcm.len() >= 7000,
        "A->B delivered {} samples",
        at_b.pcm.len()
    );
    assert!(at_b
        .tss
        .windows(2)
        .all(|w| w[1].wrapping_sub(w[0]) == frame_b as u32));
    assert!(at_b.ssrcs.windows(2).all(|w| w[0] == w[1]));
    assert!(at_b.seqs.windows(2).all(|w| w[1] == w[0].wrapping_add(1)));
    assert_eq!(at_b.events, vec![(96, vec![1u8, 0x0a, 0x01, 0x40])]);
    assert!(at_b.pts.iter().all(|&p| p == 18 || p == 96));
    // B -> A: PCMU 20 ms.
    assert!(
        at_a.pcm.len() >= 7000,
        "B->A delivered {} samples",
        at_a.pcm.len()
    );
    assert!(at_a.tss.windows(2).all(|w| w[1].wrapping_sub(w[0]) == 160));
    let (c_ab, c_ba) = (correlation(&sig, &at_b.pcm), correlation(&sig, &at_a.pcm));
    println!("ptime {b_ptime}: correlation A->B {c_ab:.3}, B->A {c_ba:.3}");
    // G.729 is a lossy analysis-by-synthesis coder with a post-filter, so the
    // waveform match is bounded by the codec itself: the reference is the
    // same signal through one direct G.729 encode/decode (no network, no
    // transcoder). The gateway path (plus one G.711 generation) must stay
    // within 0.05 of it, and above 0.6 in absolute terms.
    let reference = {
        let (mut c, mut out) = (G729A::new(), vec![0i16; sig.len()]);
        let mut bits = vec![0u8; sig.len() / 8];
        c.encode(&sig, &mut bits).unwrap();
        c.decode(&bits, &mut out).unwrap();
        correlation(&sig, &out)
    };
    println!("direct G.729 reference correlation {reference:.3}");
    for (dir, c) in [("A->B", c_ab), ("B->A", c_ba)] {
        assert!(
            c >= 0.6 && c >= reference - 0.05,
            "{dir} correlation {c}, reference {reference}"
        );
    }

    let w = dp.stats()[0];
    assert_eq!(w.transcoding_channels, 1);
    assert!(w.codec_samples >= 14_000, "{w:?}");
    let per = w
        .codec_ns_per_channel_second()
        .expect("codec time measured");
    println!(
        "codec CPU: {} ns per channel-second ({:.2}% of a core per channel; {} samples in {} ns)",
        per,
        per as f64 / 1e7,
        w.codec_samples,
        w.codec_ns
    );
    assert!(per > 0);

    // Equal codecs: back to relay, channel released.
    assert!(!dp.set_codec(s.id, Side::B, a_codec).unwrap());
    wait_stats(&dp, |w| w.transcoding_channels == 0);
    dp.set_codec(s.id, Side::B, b_codec).unwrap();
    wait_stats(&dp, |w| w.transcoding_channels == 1);
    dp.destroy(s.id).unwrap();
    wait_stats(&dp, |w| w.transcoding_channels == 0 && w.sessions == 0);
}

#[test]
fn pcmu_to_g729_20ms_both_ways() {
    run_call(20, 43_500..=43_519);
}

#[test]
fn pcmu_to_g729_repacketised_30ms() {
    run_call(30, 43_520..=43_539);
}
