//! Digit events on a leg: RFC 4733 telephone-event receive (one report per
//! event, however many updates and end packets arrive), the in-band detector
//! on decoded audio, and the RFC 4733 sending side with a small digit queue.
//!
//! The pieces below are pure state machines: time enters as `now`
//! (wall clock of the worker, for the receive timeout) or as sample counts
//! (for the sender), nothing here reads a clock, does I/O or allocates after
//! construction. [`crate::media`] wires them to a session's legs.
//!
//! Receive rules (RFC 4733 §2.5.2): an event is identified by its RTP
//! timestamp (the event's start) and code. Its duration grows with each
//! update; the end bit marks the final duration and the end packet is sent
//! three times. We report a digit once, at its end, with its final duration.
//! If the end packets are all lost, the digit is reported when another event
//! starts or when no packet of it has arrived for [`EVENT_TIMEOUT`].

use std::time::{Duration, Instant};

use crate::dsp::dtmf::{Digit, DtmfDetector, DtmfEvent, EventRepr, EventSender, EventTx};

/// An event with no update for this long is taken as ended (lost end packets).
pub const EVENT_TIMEOUT: Duration = Duration::from_millis(300);

/// A digit received from a leg, reported once.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Received {
    pub digit: Digit,
    /// How long the key was held, in 8 kHz samples.
    pub duration: u32,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Current {
    ts: u32,
    event: u8,
    duration: u16,
    ended: bool,
    last_at: Instant,
}

/// RFC 4733 receiver: telephone-event payloads in, one [`Received`] per
/// DTMF event out (non-DTMF events, codes above 15, are ignored).
#[derive(Debug, Clone, Default)]
pub struct EventRx {
    cur: Option<Current>,
}

impl EventRx {
    /// A receiver that has seen nothing.
    pub const fn new() -> EventRx {
        EventRx { cur: None }
    }

    /// Feed one telephone-event payload with its RTP timestamp. Reports go to
    /// `out` (at most two: a previous event left open, then this one).
    pub fn handle(
        &mut self,
        ts: u32,
        repr: &EventRepr,
        now: Instant,
        out: &mut dyn FnMut(Received),
    ) {
        if let Some(c) = &mut self.cur {
            if c.ts == ts && c.event == repr.event {
                if c.ended {
                    // Repeated end packet (or a late update): already reported.
                    return;
                }
                c.duration = c.duration.max(repr.duration);
                c.last_at = now;
                if repr.end {
                    c.ended = true;
                    report(c, out);
                }
                return;
            }
            // An older event's straggler: its timestamp is before the current one.
            if (ts.wrapping_sub(c.ts) as i32) < 0 {
                return;
            }
            if !c.ended {
                // A new event while the old one never ended: its end was lost.
                c.ended = true;
                report(c, out);
            }
        }
        let c = Current {
            ts,
            event: repr.event,
            duration: repr.duration,
            ended: repr.end,
            last_at: now,
        };
        self.cur = Some(c);
        if c.ended {
            report(&c, out);
        }
    }

    /// Close an event whose end packets were lost (no packet for
    /// [`EVENT_TIMEOUT`]).
    pub fn handle_timeout(&mut self, now: Instant, out: &mut dyn FnMut(Received)) {
        if let Some(c) = &mut self.cur {
            if !c.ended && now.saturating_duration_since(c.last_at) >= EVENT_TIMEOUT {
                c.ended = true;
                report(c, out);
            }
        }
    }

    /// Whether an event is open (not ended yet).
    pub fn in_event(&self) -> bool {
        self.cur.is_some_and(|c| !c.ended)
    }
}

fn report(c: &Current, out: &mut dyn FnMut(Received)) {
    if let Some(digit) = Digit::from_event(c.event) {
        out(Received {
            digit,
            duration: u32::from(c.duration),
        });
    }
}

/// In-band detection: the Q.24 detector on decoded audio, reporting each
/// digit once at its end.
#[derive(Debug, Clone)]
pub struct InBand {
    det: DtmfDetector,
}

impl InBand {
    /// Allocates the detector's tables (control side).
    pub fn new() -> InBand {
        InBand {
            det: DtmfDetector::default(),
        }
    }

    /// Feed decoded 8 kHz samples.
    pub fn process(&mut self, pcm: &[i16], out: &mut dyn FnMut(Received)) {
        self.det.process(pcm, |e| {
            if let DtmfEvent::End {
                digit, duration, ..
            } = e
            {
                out(Received {
                    digit,
                    duration: u32::try_from(duration).unwrap_or(u32::MAX),
                });
            }
        });
    }
}

impl Default for InBand {
    fn default() -> Self {
        Self::new()
    }
}

/// Digits waiting to be sent on a leg (fixed capacity, no allocation).
#[derive(Debug, Clone, Copy)]
pub struct DigitQueue {
    /// (RFC 4733 event code, samples).
    items: [(u8, u32); DigitQueue::CAP],
    head: usize,
    len: usize,
}

impl DigitQueue {
    /// Digits a leg can have queued; more are refused.
    pub const CAP: usize = 32;

    /// Empty.
    pub const fn new() -> DigitQueue {
        DigitQueue {
            items: [(0, 0); DigitQueue::CAP],
            head: 0,
            len: 0,
        }
    }

    /// Queue a digit lasting `samples`; false when full.
    pub fn push(&mut self, digit: Digit, samples: u32) -> bool {
        if self.len == Self::CAP {
            return false;
        }
        self.items[(self.head + self.len) % Self::CAP] = (digit.event(), samples);
        self.len += 1;
        true
    }

    /// The oldest queued digit.
    pub fn pop(&mut self) -> Option<(Digit, u32)> {
        if self.len == 0 {
            return None;
        }
        let (code, samples) = self.items[self.head];
        self.head = (self.head + 1) % Self::CAP;
        self.len -= 1;
        // Only codes of real digits are ever pushed.
        Digit::from_event(code).map(|d| (d, samples))
    }

    /// Nothing queued.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Drop everything queued.
    pub fn clear(&mut self) {
        self.len = 0;
    }
}

impl Default for DigitQueue {
    fn default() -> Self {
        Self::new()
    }
}

/// Volume (-dBm0) put in generated telephone-events.
pub const SEND_VOLUME: u8 = 10;

/// RFC 4733 sender for one digit at a time, clocked in samples since the
/// digit started: begin (marker), updates every packet interval, the end
/// packet three times. Wraps [`EventSender`] with the digit's length.
#[derive(Debug, Clone)]
pub struct DigitTx {
    sender: EventSender,
    digit: Option<Digit>,
    /// RTP timestamp of the event start.
    start_ts: u32,
    /// Samples the key is held.
    length: u32,
    ended: bool,
}

impl DigitTx {
    /// Idle sender sending a packet every `interval` samples.
    pub fn new(interval: u32) -> DigitTx {
        DigitTx {
            sender: EventSender::new(interval),
            digit: None,
            start_ts: 0,
            length: 0,
            ended: false,
        }
    }

    /// Start `digit` held for `length` samples at RTP timestamp `start_ts`.
    pub fn begin(&mut self, digit: Digit, length: u32, start_ts: u32) {
        self.sender
            .handle_begin(digit.event(), SEND_VOLUME, start_ts);
        self.digit = Some(digit);
        self.start_ts = start_ts;
        self.length = length.clamp(1, 0xffff);
        self.ended = false;
    }

    /// The digit being sent, if any.
    pub fn digit(&self) -> Option<Digit> {
        self.digit
    }

    /// The packet due when `elapsed` samples have passed since `begin`.
    /// Call until `None`. Returns `None` and goes idle after the last end
    /// packet.
    pub fn poll(&mut self, elapsed: u32) -> Option<EventTx> {
        self.digit?;
        let now = self.start_ts.wrapping_add(elapsed);
        if !self.ended && elapsed >= self.length {
            self.sender
                .handle_end(self.start_ts.wrapping_add(self.length));
            self.ended = true;
        }
        let tx = self.sender.poll_transmit(now);
        if tx.is_none() && self.sender.is_idle() {
            self.digit = None;
        }
        tx
    }

    /// True once the digit's last end packet went out (or none was begun).
    pub fn is_idle(&self) -> bool {
        self.digit.is_none()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock;
    use crate::dsp::dtmf::generate_digits;

    fn ev(event: u8, end: bool, duration: u16) -> EventRepr {
        EventRepr {
            event,
            end,
            volume: 10,
            duration,
        }
    }

    fn collect(f: impl FnOnce(&mut dyn FnMut(Received))) -> Vec<(char, u32)> {
        let mut v = Vec::new();
        f(&mut |r: Received| v.push((r.digit.to_char(), r.duration)));
        v
    }

    #[test]
    fn rfc4733_end_repeated_three_times_counts_once() {
        let t0 = clock::now();
        let mut rx = EventRx::new();
        let mut got = Vec::new();
        for (i, (end, d)) in [
            (false, 160),
            (false, 320),
            (false, 480),
            (true, 640),
            (true, 640),
            (true, 640),
        ]
        .into_iter()
        .enumerate()
        {
            let now = t0 + Duration::from_millis(20 * i as u64);
            got.extend(collect(|o| rx.handle(1000, &ev(5, end, d), now, o)));
        }
        assert_eq!(got, [('5', 640)]);
        // Same digit again, a new event (new timestamp): reported again.
        let got = collect(|o| rx.handle(3000, &ev(5, true, 800), t0, o));
        assert_eq!(got, [('5', 800)]);
        // A straggler of the first event is ignored.
        assert!(collect(|o| rx.handle(1000, &ev(5, true, 640), t0, o)).is_empty());
    }

    #[test]
    fn rfc4733_lost_end_reported_on_next_event_or_timeout() {
        let t0 = clock::now();
        let mut rx = EventRx::new();
        assert!(collect(|o| rx.handle(0, &ev(1, false, 400), t0, o)).is_empty());
        assert!(rx.in_event());
        let got = collect(|o| rx.handle(4000, &ev(11, false, 160), t0, o));
        assert_eq!(got, [('1', 400)]);
        assert!(collect(|o| rx.handle_timeout(t0 + Duration::from_millis(100), o)).is_empty());
        let got = collect(|o| rx.handle_timeout(t0 + EVENT_TIMEOUT, o));
        assert_eq!(got, [('#', 160)]);
        assert!(collect(|o| rx.handle_timeout(t0 + EVENT_TIMEOUT * 2, o)).is_empty());
        // Non-DTMF events (flash = 16) are not digits.
        assert!(collect(|o| rx.handle(9000, &ev(16, true, 800), t0, o)).is_empty());
    }

    #[test]
    fn inband_reports_each_digit_once_with_duration() {
        let mut x = vec![0i16; 400];
        generate_digits("19#", -10.0, 80, 60, &mut x);
        x.extend(std::iter::repeat_n(0, 800));
        let mut det = InBand::new();
        let mut got = Vec::new();
        for chunk in x.chunks(160) {
            det.process(chunk, &mut |r| got.push(r));
        }
        let digits: String = got.iter().map(|r| r.digit.to_char()).collect();
        assert_eq!(digits, "19#");
        for r in got {
            // 80 ms = 640 samples, within the detector's block granularity.
            assert!((500..=800).contains(&r.duration), "{r:?}");
        }
    }

    #[test]
    fn sender_begin_updates_end_three_times() {
        let mut tx = DigitTx::new(160);
        tx.begin(Digit::from_char('7').unwrap(), 800, 5000);
        let mut pkts = Vec::new();
        let mut elapsed = 0;
        while !tx.is_idle() {
            while let Some(p) = tx.poll(elapsed) {
                pkts.push(p);
            }
            elapsed += 160;
            assert!(elapsed < 10_000, "sender never finished");
        }
        assert!(pkts[0].marker && !pkts[0].payload.end);
        assert!(pkts[1..].iter().all(|p| !p.marker && p.timestamp == 5000));
        let ends: Vec<_> = pkts.iter().filter(|p| p.payload.end).collect();
        assert_eq!(ends.len(), 3);
        assert!(ends.iter().all(|p| p.payload.duration == 800));
        assert!(pkts.iter().all(|p| p.payload.event == 7));
        // Updates every 160 samples while held: 0, 160, ..., 640 then 3 ends.
        assert_eq!(pkts.len(), 5 + 3);
    }

    #[test]
    fn queue_is_bounded_fifo() {
        let mut q = DigitQueue::new();
        for i in 0..DigitQueue::CAP {
            assert!(q.push(Digit::from_event((i % 16) as u8).unwrap(), i as u32));
        }
        assert!(!q.push(Digit::from_char('0').unwrap(), 0));
        assert_eq!(q.pop().map(|d| d.1), Some(0));
        assert_eq!(q.pop().map(|d| d.1), Some(1));
        q.clear();
        assert!(q.is_empty() && q.pop().is_none());
    }
}
