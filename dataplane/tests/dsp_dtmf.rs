//! DTMF detector against Q.24-style requirements: every digit over the level
//! and twist range, off-frequency rejection, talk-off on real speech, and the
//! RFC 4733 captures decoded from their pcap bytes.

use dataplane::dsp::dtmf::{
    all_digits, digit_generator, Digit, DtmfDetector, DtmfEvent, EventReceiver, EventRepr,
};
use dataplane::dsp::tones::{Cadence, Segment, ToneGenerator};
use std::path::{Path, PathBuf};

const AUDIO: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../shared/testdata/audio");
const PCAP: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../../shared/testdata/pcap/rtp"
);

/// xorshift64*: seeded, tiny, good enough for test noise and offsets.
struct Prng(u64);
impl Prng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    fn uniform(&mut self) -> f32 {
        (self.next() >> 40) as f32 / (1u64 << 24) as f32
    }
    fn gauss(&mut self) -> f32 {
        (0..4)
            .map(|_| self.uniform())
            .sum::<f32>()
            .mul_add(1.732, -2.0 * 1.732)
    }
}

fn detect(x: &[i16]) -> Vec<(Digit, u64)> {
    let mut det = DtmfDetector::default();
    let mut out = Vec::new();
    for chunk in x.chunks(160) {
        det.process(chunk, |e| {
            if let DtmfEvent::Begin { digit, at } = e {
                out.push((digit, at));
            }
        });
    }
    out
}

/// Silence-led signal with one tone pair; noise at -70 dBm0.
fn tone_pair(lo: f32, l_lo: f32, hi: f32, l_hi: f32, ms: u32, rng: &mut Prng) -> Vec<i16> {
    let lead = 400 + (rng.next() % 160) as usize;
    let mut x = vec![0i16; lead + (ms as usize + 200) * 8];
    let mut g = ToneGenerator::new(Cadence::new(
        &[Segment::dual(lo, l_lo, hi, l_hi, ms)],
        false,
    ));
    g.fill(&mut x[lead..]);
    let sigma = dataplane::dsp::dbm0_to_peak(-70.0) / 2f32.sqrt();
    for s in x.iter_mut() {
        *s = (f32::from(*s) + sigma * rng.gauss()).round() as i16;
    }
    x
}

#[test]
fn all_digits_over_levels_and_twist() {
    let mut rng = Prng(0x1234_5678);
    println!("level(dBm0) twist(dB)  detected/64 (40 ms tones, -70 dBm0 noise)");
    let mut failures = Vec::new();
    for level in [-3.0f32, -10.0, -20.0, -30.0, -36.0] {
        for twist in [-8.0f32, 0.0, 4.0] {
            let (l_lo, l_hi) = if twist >= 0.0 {
                (level - twist, level)
            } else {
                (level, level + twist)
            };
            let mut ok = 0;
            // Four random alignments of each 40 ms digit against the blocks.
            for d in all_digits().flat_map(|d| std::iter::repeat_n(d, 4)) {
                let (lo, hi) = d.freqs();
                let x = tone_pair(lo, l_lo, hi, l_hi, 40, &mut rng);
                let got = detect(&x);
                if got.len() == 1 && got[0].0 == d {
                    ok += 1;
                } else {
                    failures.push(format!("{} at {level}/{twist}: {got:?}", d.to_char()));
                }
            }
            println!("{level:>11} {twist:>9} {ok:>8}/64");
        }
    }
    assert!(failures.is_empty(), "{failures:#?}");
}

#[test]
fn frequency_tolerance() {
    let mut rng = Prng(99);
    let mut accepted = [0usize; 2];
    let mut total = [0usize; 2];
    println!("offset   detected");
    for (i, dev) in [0.015f32, 0.035].iter().enumerate() {
        for d in all_digits() {
            let (lo, hi) = d.freqs();
            // Shift one group at a time, both directions.
            for (a, b) in [
                (1.0 + dev, 1.0),
                (1.0 - dev, 1.0),
                (1.0, 1.0 + dev),
                (1.0, 1.0 - dev),
            ] {
                let x = tone_pair(lo * a, -10.0, hi * b, -10.0, 50, &mut rng);
                total[i] += 1;
                if detect(&x).iter().any(|g| g.0 == d) {
                    accepted[i] += 1;
                }
            }
        }
        println!("±{:.1}%   {}/{}", dev * 100.0, accepted[i], total[i]);
    }
    assert_eq!(accepted[0], total[0], "every ±1.5% tone must be accepted");
    assert_eq!(accepted[1], 0, "every ±3.5% tone must be rejected");
}

#[test]
fn interdigit_pause_of_40ms() {
    let mut x = vec![0i16; 500];
    for d in "159D#0".chars() {
        let d = Digit::from_char(d).unwrap();
        let start = x.len();
        x.resize(start + 640, 0);
        digit_generator(d, -20.0, -20.0, 40, 40).fill(&mut x[start..]);
    }
    x.resize(x.len() + 800, 0);
    let got: String = detect(&x).iter().map(|g| g.0.to_char()).collect();
    assert_eq!(got, "159D#0");
}

fn read_wav(path: &Path) -> Option<(u32, Vec<i16>)> {
    let data = std::fs::read(path).ok()?;
    let mut pos = 12;
    let mut rate = 0;
    while pos + 8 <= data.len() {
        let len = u32::from_le_bytes(data[pos + 4..pos + 8].try_into().ok()?) as usize;
        let body = &data[pos + 8..(pos + 8 + len).min(data.len())];
        if &data[pos..pos + 4] == b"fmt " {
            rate = u32::from_le_bytes(body[4..8].try_into().ok()?);
        } else if &data[pos..pos + 4] == b"data" {
            return Some((
                rate,
                body.chunks_exact(2)
                    .map(|c| i16::from_le_bytes([c[0], c[1]]))
                    .collect(),
            ));
        }
        pos += 8 + len + (len & 1);
    }
    None
}

fn speech_files() -> Vec<(String, Vec<i16>)> {
    let mut out = Vec::new();
    let Ok(dir) = std::fs::read_dir(AUDIO) else {
        return out;
    };
    let mut paths: Vec<PathBuf> = dir.filter_map(|e| e.ok().map(|e| e.path())).collect();
    paths.sort();
    for p in paths {
        if p.extension().and_then(|e| e.to_str()) != Some("wav") {
            continue;
        }
        let Some((rate, x)) = read_wav(&p) else {
            continue;
        };
        let x = if rate == 16_000 {
            // Half-band-ish lowpass then decimate by 2.
            x.windows(4)
                .step_by(2)
                .map(|w| {
                    ((i32::from(w[0])
                        + 3 * i32::from(w[1])
                        + 3 * i32::from(w[2])
                        + i32::from(w[3]))
                        / 8) as i16
                })
                .collect()
        } else {
            x
        };
        out.push((p.file_name().unwrap().to_string_lossy().into_owned(), x));
    }
    out
}

#[test]
fn no_talk_off_on_speech() {
    let files = speech_files();
    if files.is_empty() {
        eprintln!("skipping: no audio in {AUDIO}");
        return;
    }
    println!("{:<32} {:>8} {:>6}", "file", "seconds", "digits");
    let mut total = 0;
    for (name, x) in &files {
        // Also at +10 dB gain, where more speech clears the level threshold.
        let loud: Vec<i16> = x.iter().map(|&s| (f32::from(s) * 3.16) as i16).collect();
        let n = detect(x).len() + detect(&loud).len();
        println!("{name:<32} {:>8.1} {n:>6}", x.len() as f32 / 8000.0);
        total += n;
    }
    assert_eq!(total, 0, "false digits on speech");
}

/// Minimal pcap walk: global header, then per record Ethernet/IPv4/UDP/RTP.
/// Returns (RTP timestamp, marker, payload type, payload) per packet.
type RtpPacket = (u32, bool, u8, Vec<u8>);

fn rtp_from_pcap(data: &[u8]) -> Result<Vec<RtpPacket>, String> {
    if data.len() < 24 {
        return Err("short pcap header".into());
    }
    let le = match &data[..4] {
        [0xd4, 0xc3, 0xb2, 0xa1] | [0x4d, 0x3c, 0xb2, 0xa1] => true,
        [0xa1, 0xb2, 0xc3, 0xd4] | [0xa1, 0xb2, 0x3c, 0x4d] => false,
        m => return Err(format!("bad pcap magic {m:02x?}")),
    };
    let u32at = |b: &[u8], o: usize| {
        let a = [b[o], b[o + 1], b[o + 2], b[o + 3]];
        if le {
            u32::from_le_bytes(a)
        } else {
            u32::from_be_bytes(a)
        }
    };
    let linktype = u32at(data, 20);
    if linktype != 1 {
        return Err(format!("linktype {linktype}, expected Ethernet"));
    }
    let mut pos = 24;
    let mut out = Vec::new();
    while pos + 16 <= data.len() {
        let incl = u32at(data, pos + 8) as usize;
        let frame = data
            .get(pos + 16..pos + 16 + incl)
            .ok_or(format!("record at {pos} truncated"))?;
        pos += 16 + incl;
        let mut off = 14;
        let mut ethertype = u16::from_be_bytes([frame[12], frame[13]]);
        if ethertype == 0x8100 {
            ethertype = u16::from_be_bytes([frame[16], frame[17]]);
            off = 18;
        }
        if ethertype != 0x0800 {
            continue;
        }
        let ip = &frame[off..];
        let ihl = usize::from(ip[0] & 0x0f) * 4;
        if ip[9] != 17 {
            continue;
        }
        let udp = ip.get(ihl..).ok_or("short IP")?;
        let udp_len = usize::from(u16::from_be_bytes([udp[4], udp[5]]));
        let rtp = udp.get(8..udp_len).ok_or("short UDP")?;
        if rtp.len() < 12 || rtp[0] >> 6 != 2 {
            continue;
        }
        let cc = usize::from(rtp[0] & 0x0f);
        let mut hdr = 12 + 4 * cc;
        if rtp[0] & 0x10 != 0 {
            let ext = rtp.get(hdr + 2..hdr + 4).ok_or("short RTP extension")?;
            hdr += 4 + 4 * usize::from(u16::from_be_bytes([ext[0], ext[1]]));
        }
        let mut payload = rtp.get(hdr..).ok_or("short RTP")?.to_vec();
        if rtp[0] & 0x20 != 0 {
            let pad = usize::from(*payload.last().unwrap_or(&0));
            payload.truncate(payload.len().saturating_sub(pad));
        }
        let ts = u32::from_be_bytes([rtp[4], rtp[5], rtp[6], rtp[7]]);
        out.push((ts, rtp[1] & 0x80 != 0, rtp[1] & 0x7f, payload));
    }
    Ok(out)
}

#[test]
fn rfc4733_pcaps_decode_to_their_digits() {
    let names = [
        "0", "1", "2", "3", "4", "5", "6", "7", "8", "9", "star", "pound",
    ];
    if !Path::new(PCAP).join("sipp-dtmf_2833_0.pcap").exists() {
        eprintln!("skipping: no captures in {PCAP}");
        return;
    }
    println!("file                          digit  packets  end-packets  final-duration");
    for name in names {
        let file = format!("sipp-dtmf_2833_{name}.pcap");
        let data = std::fs::read(Path::new(PCAP).join(&file)).unwrap();
        let pkts = rtp_from_pcap(&data).unwrap();
        let mut rx = EventReceiver::new();
        let mut digits = String::new();
        let mut ends = 0;
        let mut last = None;
        for (i, (ts, marker, pt, payload)) in pkts.iter().enumerate() {
            assert_eq!(*pt, 101, "{file}: payload type");
            let r = EventRepr::from_bytes(payload).unwrap();
            assert_eq!(*marker, i == 0, "{file}: marker only on the first packet");
            if let Some(d) = rx.handle(*ts, &r) {
                digits.push(d.to_char());
            }
            ends += usize::from(r.end);
            last = Some(r);
            // Re-encoding gives the same bytes.
            let mut b = [0u8; 4];
            r.emit(&mut b).unwrap();
            assert_eq!(&b[..], &payload[..4]);
        }
        let want = match name {
            "star" => "*",
            "pound" => "#",
            d => d,
        };
        let last = last.unwrap();
        println!(
            "{file:<30} {digits:>5} {:>8} {ends:>12} {:>15}",
            pkts.len(),
            last.duration
        );
        assert_eq!(digits, want, "{file}");
        assert_eq!(ends, 3, "{file}: end packet sent three times");
        assert_eq!(last.duration, 2240);
    }
}

#[test]
fn bad_pcap_is_an_error_not_a_panic() {
    assert!(rtp_from_pcap(&[0u8; 10]).is_err());
    assert!(rtp_from_pcap(&[0xffu8; 40]).is_err());
    assert!(EventRepr::from_bytes(&[1, 2]).is_err());
}
