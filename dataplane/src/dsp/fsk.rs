//! Caller ID for analog lines: FSK (Bell 202 and ITU-T V.23 / ETSI EN 300 659)
//! and DTMF caller ID, generation and detection.
//!
//! Layers, bottom up:
//! - [`FskStandard`]: the two 1200 bit/s modems (Bell 202: mark 1200 Hz, space
//!   2200 Hz; V.23: mark 1300 Hz, space 2100 Hz).
//! - [`modulate`]: bytes to phase-continuous FSK samples with the channel
//!   seizure (alternating bits) and mark preamble, each octet framed as start
//!   bit, 8 data bits LSB first, stop bit.
//! - [`FskDemodulator`]: sliding quadrature correlators at the mark and space
//!   frequencies give a level-independent soft bit per sample; an async UART
//!   samples it at bit centres and hands out octets with the idle (mark) time
//!   before each one.
//! - [`CallerId`] and its message codec ([`CallerId::encode`],
//!   [`CallerId::decode`]): SDMF (type 0x04) and MDMF (type 0x80) with date and
//!   time, number, name, and the absence reasons "P" (private) and "O"
//!   (unavailable); a checksum octet makes the sum of all octets 0 mod 256.
//! - [`CallerIdDetector`]: demodulator + message framing + checksum + decode.
//! - [`dtmf_cid_generate`] / [`DtmfCidDetector`]: the DTMF variant
//!   (`A<number>C`, absence `B00C` unavailable / `B10C` private).
//!
//! Facts from Telcordia GR-30 and ETSI EN 300 659-1/-2 (as summarised in
//! `shared/docs/dahdi-abi.md` section 6). No clock, no I/O: samples in, events
//! out through a callback; the detectors do not allocate after construction.

use super::dtmf::{self, Digit, DtmfDetector, DtmfEvent};
use super::{dbm0_to_peak, power_to_dbm0, sat16, SAMPLE_RATE};

/// Bit rate of both modems.
pub const BAUD: f64 = 1200.0;

/// The FSK modem used for caller ID.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum FskStandard {
    /// Bell 202 (North America): mark 1200 Hz, space 2200 Hz, sent after the first ring.
    Bell202,
    /// ITU-T V.23 as used by ETSI EN 300 659 (Europe): mark 1300 Hz, space 2100 Hz.
    V23,
}

impl FskStandard {
    /// (mark, space) frequencies in Hz.
    pub fn freqs(self) -> (f64, f64) {
        match self {
            FskStandard::Bell202 => (1200.0, 2200.0),
            FskStandard::V23 => (1300.0, 2100.0),
        }
    }

    /// Mark bits sent after the channel seizure (Bell: ~180, ETSI: 80 ± 25).
    fn mark_bits(self) -> usize {
        match self {
            FskStandard::Bell202 => 180,
            FskStandard::V23 => 80,
        }
    }
}

/// Errors decoding a caller ID message.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum CidError {
    /// The sender's message is shorter than its length octet says (or the carrier dropped).
    #[error("caller ID message truncated: {got} of {want} octets")]
    Truncated {
        /// Octets received.
        got: usize,
        /// Octets the header announced (type, length, body, checksum).
        want: usize,
    },
    /// The octets do not sum to 0 mod 256: corrupted on the line.
    #[error("caller ID checksum mismatch: octets sum to {sum:#04x}, not 0")]
    BadChecksum {
        /// Sum of all octets including the checksum, mod 256.
        sum: u8,
    },
    /// The sender used a message type we do not decode.
    #[error("unknown caller ID message type {0:#04x}")]
    UnknownType(u8),
    /// A parameter runs past the end of the message (sender error).
    #[error("caller ID parameter {param:#04x} at offset {at} overruns the message")]
    BadParameter {
        /// Parameter type octet.
        param: u8,
        /// Offset of the parameter in the message.
        at: usize,
    },
    /// A caller ID we were asked to send does not fit in one message (caller error).
    #[error("caller ID too long to encode: {0} octets")]
    TooLong(usize),
}

/// Why a number or name is absent.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Absence {
    /// "P": the caller withheld it (presentation restricted).
    Private,
    /// "O": out of area / unavailable.
    Unavailable,
}

impl Absence {
    fn code(self) -> u8 {
        match self {
            Absence::Private => b'P',
            Absence::Unavailable => b'O',
        }
    }

    fn from_code(c: u8) -> Option<Self> {
        match c {
            b'P' => Some(Absence::Private),
            b'O' => Some(Absence::Unavailable),
            _ => None,
        }
    }
}

/// Date and time of the call, local time as the network sends it (no year).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct DateTime {
    /// 1-12.
    pub month: u8,
    /// 1-31.
    pub day: u8,
    /// 0-23.
    pub hour: u8,
    /// 0-59.
    pub minute: u8,
}

impl DateTime {
    fn to_ascii(self) -> [u8; 8] {
        let mut out = [0u8; 8];
        for (i, v) in [self.month, self.day, self.hour, self.minute]
            .into_iter()
            .enumerate()
        {
            out[2 * i] = b'0' + (v / 10) % 10;
            out[2 * i + 1] = b'0' + v % 10;
        }
        out
    }

    fn from_ascii(b: &[u8]) -> Option<Self> {
        if b.len() != 8 || !b.iter().all(u8::is_ascii_digit) {
            return None;
        }
        let v = |i: usize| (b[i] - b'0') * 10 + (b[i + 1] - b'0');
        Some(DateTime {
            month: v(0),
            day: v(2),
            hour: v(4),
            minute: v(6),
        })
    }
}

/// Message format on the wire.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Format {
    /// Single data message format (type 0x04): date/time then number (Bell only).
    Sdmf,
    /// Multiple data message format (type 0x80): typed parameters.
    Mdmf,
}

/// SDMF call set-up message type.
pub const TYPE_SDMF: u8 = 0x04;
/// MDMF call set-up message type (Bell "MDMF", ETSI "call set-up").
pub const TYPE_MDMF: u8 = 0x80;
const PARAM_DATETIME: u8 = 0x01;
const PARAM_NUMBER: u8 = 0x02;
const PARAM_NUMBER_ABSENT: u8 = 0x04;
const PARAM_NAME: u8 = 0x07;
const PARAM_NAME_ABSENT: u8 = 0x08;
/// Longest message body a length octet allows.
const MAX_BODY: usize = 255;
/// Longest whole message: type, length, body, checksum.
pub const MAX_MESSAGE: usize = MAX_BODY + 3;

/// What caller ID says about a call.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
pub struct CallerId {
    /// Date and time of the call.
    pub datetime: Option<DateTime>,
    /// Calling number (digits as ASCII).
    pub number: Option<String>,
    /// Why the number is absent.
    pub number_absent: Option<Absence>,
    /// Calling name.
    pub name: Option<String>,
    /// Why the name is absent.
    pub name_absent: Option<Absence>,
}

impl CallerId {
    /// A caller ID with a number and, optionally, a name.
    pub fn with_number(number: &str, name: Option<&str>) -> Self {
        CallerId {
            number: Some(number.to_string()),
            name: name.map(str::to_string),
            ..CallerId::default()
        }
    }

    /// Encode as a complete message (type, length, body, checksum).
    pub fn encode(&self, format: Format) -> Result<Vec<u8>, CidError> {
        let mut m = vec![0u8, 0u8];
        match format {
            Format::Sdmf => {
                m[0] = TYPE_SDMF;
                m.extend_from_slice(&self.datetime.map_or(*b"01010000", DateTime::to_ascii));
                match (&self.number, self.number_absent) {
                    (Some(n), _) => m.extend_from_slice(n.as_bytes()),
                    (None, Some(a)) => m.push(a.code()),
                    (None, None) => m.push(b'O'),
                }
            }
            Format::Mdmf => {
                m[0] = TYPE_MDMF;
                let param = |m: &mut Vec<u8>, t: u8, v: &[u8]| -> Result<(), CidError> {
                    let len = u8::try_from(v.len()).map_err(|_| CidError::TooLong(v.len()))?;
                    m.push(t);
                    m.push(len);
                    m.extend_from_slice(v);
                    Ok(())
                };
                if let Some(dt) = self.datetime {
                    param(&mut m, PARAM_DATETIME, &dt.to_ascii())?;
                }
                match (&self.number, self.number_absent) {
                    (Some(n), _) => param(&mut m, PARAM_NUMBER, n.as_bytes())?,
                    (None, Some(a)) => param(&mut m, PARAM_NUMBER_ABSENT, &[a.code()])?,
                    (None, None) => {}
                }
                match (&self.name, self.name_absent) {
                    (Some(n), _) => param(&mut m, PARAM_NAME, n.as_bytes())?,
                    (None, Some(a)) => param(&mut m, PARAM_NAME_ABSENT, &[a.code()])?,
                    (None, None) => {}
                }
            }
        }
        let body = m.len() - 2;
        m[1] = u8::try_from(body).map_err(|_| CidError::TooLong(body))?;
        let sum = m.iter().fold(0u8, |a, &b| a.wrapping_add(b));
        m.push(sum.wrapping_neg());
        Ok(m)
    }

    /// Decode a complete message (type, length, body, checksum).
    pub fn decode(msg: &[u8]) -> Result<Self, CidError> {
        if msg.len() < 3 {
            return Err(CidError::Truncated {
                got: msg.len(),
                want: 3,
            });
        }
        let want = usize::from(msg[1]) + 3;
        if msg.len() < want {
            return Err(CidError::Truncated {
                got: msg.len(),
                want,
            });
        }
        let msg = &msg[..want];
        let sum = msg.iter().fold(0u8, |a, &b| a.wrapping_add(b));
        if sum != 0 {
            return Err(CidError::BadChecksum { sum });
        }
        let body = &msg[2..want - 1];
        let text = |b: &[u8]| String::from_utf8_lossy(b).into_owned();
        let mut cid = CallerId::default();
        match msg[0] {
            TYPE_SDMF => {
                if body.len() < 8 {
                    return Err(CidError::BadParameter { param: 0, at: 2 });
                }
                cid.datetime = DateTime::from_ascii(&body[..8]);
                let num = &body[8..];
                match num {
                    [c] if Absence::from_code(*c).is_some() => {
                        cid.number_absent = Absence::from_code(*c)
                    }
                    _ => cid.number = Some(text(num)),
                }
            }
            TYPE_MDMF => {
                let mut i = 0;
                while i < body.len() {
                    let at = i + 2;
                    let param = body[i];
                    let Some(&len) = body.get(i + 1) else {
                        return Err(CidError::BadParameter { param, at });
                    };
                    let end = i + 2 + usize::from(len);
                    let Some(v) = body.get(i + 2..end) else {
                        return Err(CidError::BadParameter { param, at });
                    };
                    match param {
                        PARAM_DATETIME => cid.datetime = DateTime::from_ascii(v),
                        PARAM_NUMBER => cid.number = Some(text(v)),
                        PARAM_NUMBER_ABSENT => {
                            cid.number_absent = v.first().copied().and_then(Absence::from_code)
                        }
                        PARAM_NAME => cid.name = Some(text(v)),
                        PARAM_NAME_ABSENT => {
                            cid.name_absent = v.first().copied().and_then(Absence::from_code)
                        }
                        // Other parameters (call type, redirecting number...) are skipped.
                        _ => {}
                    }
                    i = end;
                }
            }
            t => return Err(CidError::UnknownType(t)),
        }
        Ok(cid)
    }
}

/// Samples per bit, fractional.
const BIT_SAMPLES: f64 = SAMPLE_RATE as f64 / BAUD;

/// Modulate `msg` as caller ID FSK at `dbm0` into `out`: channel seizure
/// (300 alternating bits, 0 first), the mark preamble, the octets, then a few
/// mark bits so the receiver sees the last stop bit.
pub fn modulate(standard: FskStandard, msg: &[u8], dbm0: f32, out: &mut Vec<i16>) {
    let mut bits = Vec::with_capacity(300 + 180 + msg.len() * 10 + 8);
    bits.extend((0..300).map(|i| i % 2 == 1));
    bits.extend(std::iter::repeat_n(true, standard.mark_bits()));
    for &b in msg {
        bits.push(false);
        bits.extend((0..8).map(|k| b >> k & 1 == 1));
        bits.push(true);
    }
    bits.extend(std::iter::repeat_n(true, 8));
    modulate_bits(standard, &bits, dbm0, out);
}

/// Modulate raw bits (phase continuous, fractional bit timing).
pub fn modulate_bits(standard: FskStandard, bits: &[bool], dbm0: f32, out: &mut Vec<i16>) {
    let (mark, space) = standard.freqs();
    let amp = f64::from(dbm0_to_peak(dbm0));
    let n = (bits.len() as f64 * BIT_SAMPLES).round() as usize;
    let mut phase = 0.0f64;
    out.reserve(n);
    for i in 0..n {
        let bit = bits[((i as f64 / BIT_SAMPLES) as usize).min(bits.len() - 1)];
        out.push(sat16((amp * (std::f64::consts::TAU * phase).sin()) as f32));
        phase += if bit { mark } else { space } / f64::from(SAMPLE_RATE);
        phase -= phase.floor();
    }
}

/// Encode and modulate a caller ID in one go.
pub fn generate(
    standard: FskStandard,
    format: Format,
    cid: &CallerId,
    dbm0: f32,
    out: &mut Vec<i16>,
) -> Result<(), CidError> {
    let msg = cid.encode(format)?;
    modulate(standard, &msg, dbm0, out);
    Ok(())
}

/// Correlator window in samples (about one bit).
const WIN: usize = 7;
/// Weakest carrier accepted, dBm0 (spec minimum is about -40 dBm0 at the phone).
const CARRIER_ON_DBM0: f32 = -42.0;
/// Hysteresis below which the carrier counts as gone.
const CARRIER_OFF_DBM0: f32 = -47.0;

/// One octet out of the UART.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Octet {
    /// The value.
    pub value: u8,
    /// Mark bits seen between the previous octet (or carrier start) and this one.
    pub idle_bits: u32,
}

#[derive(Debug, Clone, Copy)]
enum Uart {
    Idle { mark_samples: u32 },
    Byte { start: u64, bit: u32, value: u8 },
}

/// FSK demodulator and async UART.
#[derive(Debug, Clone)]
pub struct FskDemodulator {
    /// Per-sample LO steps (cos, sin) for mark and space.
    step: [(f32, f32); 2],
    lo: [(f32, f32); 2],
    /// Last WIN products, [mark re, mark im, space re, space im].
    ring: [[f32; 4]; WIN],
    pos: usize,
    /// Smoothed power (16-bit units squared) for carrier detect.
    power: f32,
    carrier: bool,
    on_power: f32,
    off_power: f32,
    t: u64,
    uart: Uart,
    /// Mark samples before the octet being received.
    idle: u32,
}

impl FskDemodulator {
    /// A demodulator for `standard`.
    pub fn new(standard: FskStandard) -> Self {
        let (m, s) = standard.freqs();
        let st = |f: f64| {
            let w = std::f64::consts::TAU * f / f64::from(SAMPLE_RATE);
            (w.cos() as f32, w.sin() as f32)
        };
        let p = |dbm0: f32| {
            let a = dbm0_to_peak(dbm0);
            a * a / 2.0
        };
        FskDemodulator {
            step: [st(m), st(s)],
            lo: [(1.0, 0.0); 2],
            ring: [[0.0; 4]; WIN],
            pos: 0,
            power: 0.0,
            carrier: false,
            on_power: p(CARRIER_ON_DBM0),
            off_power: p(CARRIER_OFF_DBM0),
            t: 0,
            uart: Uart::Idle { mark_samples: 0 },
            idle: 0,
        }
    }

    /// Whether a carrier is present now.
    pub fn carrier(&self) -> bool {
        self.carrier
    }

    /// Level of the input in dBm0 (smoothed over about 4 ms).
    pub fn level_dbm0(&self) -> f32 {
        power_to_dbm0(self.power)
    }

    /// Feed samples. `on_octet` gets each octet; `on_carrier` each carrier change.
    pub fn process(
        &mut self,
        samples: &[i16],
        mut on_octet: impl FnMut(Octet),
        mut on_carrier: impl FnMut(bool),
    ) {
        for &x in samples {
            let x = f32::from(x);
            self.power += (x * x - self.power) * (1.0 / 32.0);
            let slot = &mut self.ring[self.pos];
            for k in 0..2 {
                let (c, s) = self.lo[k];
                slot[2 * k] = x * c;
                slot[2 * k + 1] = x * s;
                let (sc, ss) = self.step[k];
                let (nc, ns) = (c * sc - s * ss, c * ss + s * sc);
                // Renormalise the rotator so its magnitude cannot drift.
                let g = 1.5 - 0.5 * (nc * nc + ns * ns);
                self.lo[k] = (nc * g, ns * g);
            }
            self.pos = (self.pos + 1) % WIN;
            let mut acc = [0f32; 4];
            for r in &self.ring {
                for (a, v) in acc.iter_mut().zip(r) {
                    *a += v;
                }
            }
            let em = acc[0] * acc[0] + acc[1] * acc[1];
            let es = acc[2] * acc[2] + acc[3] * acc[3];
            let mark = em >= es;

            let was = self.carrier;
            if self.carrier && self.power < self.off_power {
                self.carrier = false;
            } else if !self.carrier && self.power > self.on_power {
                self.carrier = true;
            }
            if was != self.carrier {
                self.uart = Uart::Idle { mark_samples: 0 };
                on_carrier(self.carrier);
            }
            if self.carrier {
                self.uart_step(mark, &mut on_octet);
            }
            self.t += 1;
        }
    }

    fn uart_step(&mut self, mark: bool, on_octet: &mut impl FnMut(Octet)) {
        match &mut self.uart {
            Uart::Idle { mark_samples } => {
                if mark {
                    *mark_samples = mark_samples.saturating_add(1);
                } else {
                    self.idle = *mark_samples;
                    self.uart = Uart::Byte {
                        start: self.t,
                        bit: 0,
                        value: 0,
                    };
                }
            }
            Uart::Byte { start, bit, value } => {
                let centre = *start as f64 + (f64::from(*bit) + 0.5) * BIT_SAMPLES;
                if (self.t as f64) < centre.round() {
                    return;
                }
                match *bit {
                    0 if mark => {
                        // A glitch, not a start bit: back to idle, keeping the count.
                        self.uart = Uart::Idle {
                            mark_samples: self.idle,
                        };
                        return;
                    }
                    0 => {}
                    1..=8 => {
                        if mark {
                            *value |= 1 << (*bit - 1);
                        }
                    }
                    _ => {
                        let v = *value;
                        self.uart = Uart::Idle { mark_samples: 0 };
                        // A space stop bit is a framing error: the octet is dropped.
                        if mark {
                            on_octet(Octet {
                                value: v,
                                idle_bits: (f64::from(self.idle) / BIT_SAMPLES) as u32,
                            });
                        }
                        return;
                    }
                }
                *bit += 1;
            }
        }
    }
}

/// Message types that may start a caller ID message (call set-up, message
/// waiting, charge, SMS): an octet with one of these values after a mark run
/// starts message framing.
const START_TYPES: [u8; 6] = [TYPE_SDMF, 0x06, TYPE_MDMF, 0x82, 0x86, 0x89];
/// Mark bits that must precede a message's first octet: the senders give
/// 180 (Bell) or 80 ± 25 (ETSI); noise and the seizure's alternating bits
/// almost never give 40 in a row.
const MIN_PREAMBLE_MARKS: u32 = 40;

/// Streaming caller ID receiver: FSK demodulator, message framing, checksum
/// and decoding. Each complete (or broken) message comes out once.
#[derive(Debug, Clone)]
pub struct CallerIdDetector {
    demod: FskDemodulator,
    buf: [u8; MAX_MESSAGE],
    len: usize,
}

impl CallerIdDetector {
    /// A detector for `standard`.
    pub fn new(standard: FskStandard) -> Self {
        CallerIdDetector {
            demod: FskDemodulator::new(standard),
            buf: [0; MAX_MESSAGE],
            len: 0,
        }
    }

    /// Feed samples; `on_cid` gets each decoded caller ID or the reason a
    /// message was rejected (bad checksum, truncated by carrier loss).
    pub fn process(&mut self, samples: &[i16], mut on_cid: impl FnMut(Result<CallerId, CidError>)) {
        let (buf, len) = (&mut self.buf, &mut self.len);
        let finish = |buf: &[u8], len: &mut usize, on_cid: &mut dyn FnMut(_)| {
            let r = CallerId::decode(&buf[..*len]);
            *len = 0;
            on_cid(r);
        };
        let mut lost = false;
        self.demod.process(
            samples,
            |o| {
                // A message starts after a long mark run; one that starts while
                // another is being framed means the first was noise (octets of
                // a real message are at most a few mark bits apart).
                if o.idle_bits >= MIN_PREAMBLE_MARKS && START_TYPES.contains(&o.value) {
                    buf[0] = o.value;
                    *len = 1;
                    return;
                }
                if *len == 0 {
                    return;
                }
                buf[*len] = o.value;
                *len += 1;
                if *len >= 2 && *len == usize::from(buf[1]) + 3 {
                    finish(&buf[..], len, &mut on_cid);
                }
            },
            |on| lost |= !on,
        );
        if lost && *len > 0 {
            // The carrier went away mid-message (possibly mid-block; any octets
            // after it in this block belong to a new carrier and were already
            // framed above).
            finish(&buf[..], len, &mut on_cid);
        }
    }
}

/// DTMF caller ID: start digit for a number.
const DTMF_START_NUMBER: char = 'A';
/// DTMF caller ID: start digit for an absence code.
const DTMF_START_ABSENCE: char = 'B';
/// DTMF caller ID: end digit.
const DTMF_END: char = 'C';

/// Render DTMF caller ID (`A<number>C`, or `B00C` unavailable / `B10C`
/// private) into `out`: 70 ms tones, 70 ms gaps, at `dbm0` per tone.
pub fn dtmf_cid_generate(cid: &CallerId, dbm0: f32, out: &mut Vec<i16>) {
    let s = match (&cid.number, cid.number_absent) {
        (Some(n), _) => format!("{DTMF_START_NUMBER}{n}{DTMF_END}"),
        (None, Some(Absence::Private)) => format!("{DTMF_START_ABSENCE}10{DTMF_END}"),
        (None, _) => format!("{DTMF_START_ABSENCE}00{DTMF_END}"),
    };
    dtmf::generate_digits(&s, dbm0, 70, 70, out);
}

/// DTMF caller ID receiver: collects the digits between a start digit
/// (`A`/`D` number, `B` absence) and an end digit (`C` or `#`).
#[derive(Debug, Clone, Default)]
pub struct DtmfCidDetector {
    det: DtmfDetector,
    start: Option<char>,
    digits: [u8; 32],
    len: usize,
}

impl DtmfCidDetector {
    /// Feed samples; `on_cid` gets each complete caller ID.
    pub fn process(&mut self, samples: &[i16], mut on_cid: impl FnMut(CallerId)) {
        let (start, digits, len) = (&mut self.start, &mut self.digits, &mut self.len);
        self.det.process(samples, |e| {
            let DtmfEvent::Begin { digit, .. } = e else {
                return;
            };
            let c = Digit::to_char(digit);
            match (c, *start) {
                ('A' | 'B' | 'D', _) => {
                    *start = Some(c);
                    *len = 0;
                }
                ('C' | '#', Some(s)) => {
                    let d = String::from_utf8_lossy(&digits[..*len]).into_owned();
                    let mut cid = CallerId::default();
                    if s == DTMF_START_ABSENCE {
                        cid.number_absent = Some(if d == "10" {
                            Absence::Private
                        } else {
                            Absence::Unavailable
                        });
                    } else {
                        cid.number = Some(d);
                    }
                    *start = None;
                    on_cid(cid);
                }
                (_, Some(_)) if *len < digits.len() => {
                    digits[*len] = c as u8;
                    *len += 1;
                }
                _ => {}
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample_cid() -> CallerId {
        CallerId {
            datetime: Some(DateTime {
                month: 11,
                day: 26,
                hour: 9,
                minute: 5,
            }),
            number: Some("0215550100".into()),
            name: Some("ALICE SMITH".into()),
            ..CallerId::default()
        }
    }

    #[test]
    fn mdmf_encode_fixture() {
        let cid = CallerId::with_number("123", Some("AB"));
        let m = cid.encode(Format::Mdmf).unwrap();
        let want = [0x80, 9, 0x02, 3, b'1', b'2', b'3', 0x07, 2, b'A', b'B'];
        assert_eq!(&m[..11], &want);
        assert_eq!(m.iter().fold(0u8, |a, &b| a.wrapping_add(b)), 0);
        assert_eq!(CallerId::decode(&m).unwrap(), cid);
    }

    #[test]
    fn sdmf_and_absence_round_trip() {
        let cid = sample_cid();
        let m = cid.encode(Format::Sdmf).unwrap();
        assert_eq!(m[0], TYPE_SDMF);
        assert_eq!(&m[2..10], b"11260905");
        let d = CallerId::decode(&m).unwrap();
        assert_eq!(d.number, cid.number);
        assert_eq!(d.datetime, cid.datetime);
        let p = CallerId {
            number_absent: Some(Absence::Private),
            name_absent: Some(Absence::Private),
            ..CallerId::default()
        };
        for f in [Format::Sdmf, Format::Mdmf] {
            let d = CallerId::decode(&p.encode(f).unwrap()).unwrap();
            assert_eq!(d.number_absent, Some(Absence::Private), "{f:?}");
            assert_eq!(d.number, None);
        }
    }

    #[test]
    fn decode_rejects_bad_input() {
        let mut m = sample_cid().encode(Format::Mdmf).unwrap();
        assert!(matches!(
            CallerId::decode(&m[..5]),
            Err(CidError::Truncated { .. })
        ));
        m[4] ^= 1;
        assert!(matches!(
            CallerId::decode(&m),
            Err(CidError::BadChecksum { .. })
        ));
        // A parameter length that overruns the body.
        let bad = [0x80, 2, 0x02, 9];
        let sum = bad.iter().fold(0u8, |a, &b| a.wrapping_add(b));
        let mut bad = bad.to_vec();
        bad.push(sum.wrapping_neg());
        assert!(matches!(
            CallerId::decode(&bad),
            Err(CidError::BadParameter { param: 2, .. })
        ));
        let mut t = vec![0x55, 0];
        t.push(0xab);
        assert!(matches!(
            CallerId::decode(&t),
            Err(CidError::UnknownType(0x55))
        ));
    }

    #[test]
    fn fsk_round_trip_both_standards() {
        for std in [FskStandard::Bell202, FskStandard::V23] {
            let mut pcm = vec![0i16; 400];
            generate(std, Format::Mdmf, &sample_cid(), -13.0, &mut pcm).unwrap();
            pcm.extend(std::iter::repeat_n(0, 400));
            let mut got = Vec::new();
            let mut det = CallerIdDetector::new(std);
            for b in pcm.chunks(160) {
                det.process(b, |r| got.push(r));
            }
            assert_eq!(got, vec![Ok(sample_cid())], "{std:?}");
        }
    }

    #[test]
    fn dtmf_cid_round_trip() {
        let mut pcm = Vec::new();
        dtmf_cid_generate(&sample_cid(), -10.0, &mut pcm);
        let p = CallerId {
            number_absent: Some(Absence::Private),
            ..CallerId::default()
        };
        dtmf_cid_generate(&p, -10.0, &mut pcm);
        let mut got = Vec::new();
        let mut det = DtmfCidDetector::default();
        det.process(&pcm, |c| got.push(c));
        assert_eq!(got.len(), 2);
        assert_eq!(got[0].number.as_deref(), Some("0215550100"));
        assert_eq!(got[1].number_absent, Some(Absence::Private));
    }

    #[test]
    fn arbitrary_input_never_panics() {
        let mut x = 0x1234_5678u32;
        let mut next = || {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            x
        };
        for n in 0..2000 {
            let len = (next() % 40) as usize;
            let mut m: Vec<u8> = (0..len).map(|_| next() as u8).collect();
            if n % 2 == 0 && len > 2 {
                // Valid type, length and checksum, random body.
                m[0] = TYPE_MDMF;
                m[1] = (len - 3) as u8;
                let sum = m[..len - 1].iter().fold(0u8, |a, &b| a.wrapping_add(b));
                m[len - 1] = sum.wrapping_neg();
            }
            let _ = CallerId::decode(&m);
        }
        let pcm: Vec<i16> = (0..80_000).map(|_| next() as i16).collect();
        let mut det = CallerIdDetector::new(FskStandard::Bell202);
        det.process(&pcm, |_| {});
        let mut det = DtmfCidDetector::default();
        det.process(&pcm, |_| {});
    }
}
