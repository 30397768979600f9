//! Q.921 LAPD for a PRI D-channel: point-to-point, SAPI 0, TEI 0, modulo 128.
//!
//! [`Frame`] is the wire codec (address, control, information; no flags or
//! FCS, which belong to the HDLC layer in `drivers::hdlc` or the kernel).
//! [`Link`] is the sans-IO data link: `start`/`send`/`handle_frame`/
//! `handle_timeout` in, `poll_transmit`/`poll_event`/`poll_timeout` out.
//! It implements multiple-frame establishment (SABME/UA), release
//! (DISC/UA/DM), I-frame sequencing with V(S)/V(R)/V(A), RR/RNR/REJ, timer
//! recovery, and the timers T200 (retransmission, N200 tries) and T203
//! (idle link check). C/R follows Q.921: commands from the network side
//! carry C/R = 1, from the user side C/R = 0; responses the opposite.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

/// LAPD codec errors.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LapdError {
    /// Fewer octets than address + control.
    #[error("lapd: frame of {0} octets is too short")]
    TooShort(usize),
    /// Address extension bits wrong (EA0 must be 0, EA1 1).
    #[error("lapd: bad address extension bits {0:#04x} {1:#04x}")]
    BadAddress(u8, u8),
}

/// Frame kind with its sequence numbers and poll/final bit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[allow(missing_docs)]
pub enum Kind {
    I {
        ns: u8,
        nr: u8,
        p: bool,
    },
    Rr {
        nr: u8,
        pf: bool,
    },
    Rnr {
        nr: u8,
        pf: bool,
    },
    Rej {
        nr: u8,
        pf: bool,
    },
    Sabme {
        p: bool,
    },
    Ua {
        f: bool,
    },
    Disc {
        p: bool,
    },
    Dm {
        f: bool,
    },
    Frmr {
        f: bool,
    },
    Ui {
        p: bool,
    },
    Xid {
        pf: bool,
    },
    /// Unknown control octet.
    Other(u8),
}

/// A LAPD frame.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Frame {
    /// Service access point (0 = call control, 63 = TEI management).
    pub sapi: u8,
    /// C/R bit as on the wire.
    pub cr: bool,
    /// Terminal endpoint identifier (0 on PRI).
    pub tei: u8,
    /// Control field.
    pub kind: Kind,
    /// Information field (I, UI, FRMR, XID).
    pub info: Vec<u8>,
}

impl Frame {
    /// Parses address + control + information. Never panics.
    pub fn parse(b: &[u8]) -> Result<Frame, LapdError> {
        if b.len() < 3 {
            return Err(LapdError::TooShort(b.len()));
        }
        if b[0] & 1 != 0 || b[1] & 1 != 1 {
            return Err(LapdError::BadAddress(b[0], b[1]));
        }
        let sapi = b[0] >> 2;
        let cr = b[0] & 2 != 0;
        let tei = b[1] >> 1;
        let c = b[2];
        let two = |b: &[u8]| -> Result<u8, LapdError> {
            b.get(3).copied().ok_or(LapdError::TooShort(b.len()))
        };
        let (kind, hdr) = if c & 1 == 0 {
            let o = two(b)?;
            (
                Kind::I {
                    ns: c >> 1,
                    nr: o >> 1,
                    p: o & 1 != 0,
                },
                4,
            )
        } else if c & 3 == 1 {
            let o = two(b)?;
            let (nr, pf) = (o >> 1, o & 1 != 0);
            let k = match c {
                0x01 => Kind::Rr { nr, pf },
                0x05 => Kind::Rnr { nr, pf },
                0x09 => Kind::Rej { nr, pf },
                other => Kind::Other(other),
            };
            (k, 4)
        } else {
            let pf = c & 0x10 != 0;
            let k = match c & !0x10 {
                0x6F => Kind::Sabme { p: pf },
                0x63 => Kind::Ua { f: pf },
                0x43 => Kind::Disc { p: pf },
                0x0F => Kind::Dm { f: pf },
                0x87 => Kind::Frmr { f: pf },
                0x03 => Kind::Ui { p: pf },
                0xAF => Kind::Xid { pf },
                _ => Kind::Other(c),
            };
            (k, 3)
        };
        Ok(Frame {
            sapi,
            cr,
            tei,
            kind,
            info: b[hdr..].to_vec(),
        })
    }

    /// SAPI.
    pub fn sapi(&self) -> u8 {
        self.sapi
    }

    /// The information field of I and UI frames.
    pub fn info(&self) -> Option<&[u8]> {
        matches!(self.kind, Kind::I { .. } | Kind::Ui { .. }).then_some(self.info.as_slice())
    }

    /// Encodes the frame.
    pub fn emit(&self, out: &mut Vec<u8>) {
        out.push(self.sapi << 2 | u8::from(self.cr) << 1);
        out.push(self.tei << 1 | 1);
        let pf = |b: bool| u8::from(b);
        match self.kind {
            Kind::I { ns, nr, p } => out.extend([ns << 1, nr << 1 | pf(p)]),
            Kind::Rr { nr, pf: f } => out.extend([0x01, nr << 1 | pf(f)]),
            Kind::Rnr { nr, pf: f } => out.extend([0x05, nr << 1 | pf(f)]),
            Kind::Rej { nr, pf: f } => out.extend([0x09, nr << 1 | pf(f)]),
            Kind::Sabme { p } => out.push(0x6F | pf(p) << 4),
            Kind::Ua { f } => out.push(0x63 | pf(f) << 4),
            Kind::Disc { p } => out.push(0x43 | pf(p) << 4),
            Kind::Dm { f } => out.push(0x0F | pf(f) << 4),
            Kind::Frmr { f } => out.push(0x87 | pf(f) << 4),
            Kind::Ui { p } => out.push(0x03 | pf(p) << 4),
            Kind::Xid { pf: f } => out.push(0xAF | pf(f) << 4),
            Kind::Other(c) => out.push(c),
        }
        out.extend_from_slice(&self.info);
    }

    /// Encodes into a new buffer.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut v = Vec::new();
        self.emit(&mut v);
        v
    }
}

/// Which side of the interface this link plays.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Side {
    /// User / CPE (commands have C/R = 0).
    User,
    /// Network (commands have C/R = 1).
    Network,
}

/// Link parameters.
#[derive(Debug, Clone, Copy)]
pub struct LinkConfig {
    /// Retransmission timer (1 s).
    pub t200: Duration,
    /// Maximum time without frames (10 s).
    pub t203: Duration,
    /// Maximum retransmissions (3).
    pub n200: u32,
    /// Window size (7 on PRI SAPI 0).
    pub k: u8,
}

impl Default for LinkConfig {
    fn default() -> Self {
        Self {
            t200: Duration::from_secs(1),
            t203: Duration::from_secs(10),
            n200: 3,
            k: 7,
        }
    }
}

/// Link state (Q.921 SDL state numbers in the docs).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LinkState {
    /// 4: TEI assigned, link released.
    Released,
    /// 5: SABME sent.
    AwaitingEstablishment,
    /// 6: DISC sent.
    AwaitingRelease,
    /// 7: multiple frame established.
    Established,
    /// 8: timer recovery (enquiry outstanding).
    TimerRecovery,
}

/// Events for layer 3.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LinkEvent {
    /// DL-ESTABLISH indication/confirm.
    Established,
    /// DL-RELEASE indication/confirm (also after N200 failures).
    Released,
    /// DL-DATA indication: a layer 3 message.
    Data(Vec<u8>),
    /// MDL-ERROR indication (Q.921 error code letter and text).
    Error(&'static str),
}

/// The sans-IO LAPD data link entity (SAPI 0, TEI 0).
#[derive(Debug)]
pub struct Link {
    side: Side,
    cfg: LinkConfig,
    state: LinkState,
    vs: u8,
    vr: u8,
    va: u8,
    rc: u32,
    peer_busy: bool,
    reject_sent: bool,
    t200: Option<Instant>,
    t203: Option<Instant>,
    queue: VecDeque<Vec<u8>>,
    unacked: VecDeque<(u8, Vec<u8>)>,
    tx: VecDeque<Vec<u8>>,
    events: VecDeque<LinkEvent>,
    /// Frames received that could not be parsed or were for another SAPI/TEI.
    pub dropped: u64,
}

fn inc(v: u8) -> u8 {
    (v + 1) % 128
}

fn dist(from: u8, to: u8) -> u8 {
    (to + 128 - from) % 128
}

impl Link {
    /// A released link for `side`.
    pub fn new(side: Side, cfg: LinkConfig) -> Self {
        Self {
            side,
            cfg,
            state: LinkState::Released,
            vs: 0,
            vr: 0,
            va: 0,
            rc: 0,
            peer_busy: false,
            reject_sent: false,
            t200: None,
            t203: None,
            queue: VecDeque::new(),
            unacked: VecDeque::new(),
            tx: VecDeque::new(),
            events: VecDeque::new(),
            dropped: 0,
        }
    }

    /// Current state.
    pub fn state(&self) -> LinkState {
        self.state
    }

    /// True in multiple-frame established (or timer recovery).
    pub fn is_up(&self) -> bool {
        matches!(
            self.state,
            LinkState::Established | LinkState::TimerRecovery
        )
    }

    /// (V(S), V(R), V(A)).
    pub fn vars(&self) -> (u8, u8, u8) {
        (self.vs, self.vr, self.va)
    }

    fn cmd_cr(&self) -> bool {
        self.side == Side::Network
    }

    fn out(&mut self, command: bool, kind: Kind, info: &[u8]) {
        let cr = if command {
            self.cmd_cr()
        } else {
            !self.cmd_cr()
        };
        let f = Frame {
            sapi: 0,
            cr,
            tei: 0,
            kind,
            info: info.to_vec(),
        };
        self.tx.push_back(f.to_bytes());
    }

    fn establish(&mut self, now: Instant) {
        self.state = LinkState::AwaitingEstablishment;
        self.rc = 0;
        self.out(true, Kind::Sabme { p: true }, &[]);
        self.t200 = Some(now + self.cfg.t200);
        self.t203 = None;
    }

    /// DL-ESTABLISH request: bring the link up (sends SABME).
    pub fn start(&mut self, now: Instant) {
        if self.state == LinkState::Released {
            self.establish(now);
        }
    }

    /// DL-RELEASE request (sends DISC).
    pub fn stop(&mut self, now: Instant) {
        if self.is_up() {
            self.state = LinkState::AwaitingRelease;
            self.rc = 0;
            self.out(true, Kind::Disc { p: true }, &[]);
            self.t200 = Some(now + self.cfg.t200);
            self.t203 = None;
        }
    }

    /// DL-DATA request: queue a layer 3 message (establishes the link if needed).
    pub fn send(&mut self, info: Vec<u8>, now: Instant) {
        self.queue.push_back(info);
        if self.state == LinkState::Released {
            self.establish(now);
        }
        self.push_iframes(now);
    }

    fn push_iframes(&mut self, now: Instant) {
        if self.state != LinkState::Established || self.peer_busy {
            return;
        }
        while dist(self.va, self.vs) < self.cfg.k {
            let Some(info) = self.queue.pop_front() else {
                break;
            };
            let ns = self.vs;
            self.out(
                true,
                Kind::I {
                    ns,
                    nr: self.vr,
                    p: false,
                },
                &info,
            );
            self.unacked.push_back((ns, info));
            self.vs = inc(self.vs);
            if self.t200.is_none() {
                self.t200 = Some(now + self.cfg.t200);
            }
            self.t203 = None;
        }
    }

    fn reset_vars(&mut self) {
        self.vs = 0;
        self.vr = 0;
        self.va = 0;
        self.peer_busy = false;
        self.reject_sent = false;
        // Unacknowledged messages are offered again after (re-)establishment.
        while let Some((_, info)) = self.unacked.pop_back() {
            self.queue.push_front(info);
        }
    }

    fn now_established(&mut self, now: Instant) {
        let was_up = self.is_up();
        self.reset_vars();
        self.state = LinkState::Established;
        self.t200 = None;
        self.t203 = Some(now + self.cfg.t203);
        self.rc = 0;
        if !was_up {
            self.events.push_back(LinkEvent::Established);
        }
        self.push_iframes(now);
    }

    fn released(&mut self) {
        let notify = self.state != LinkState::Released;
        self.state = LinkState::Released;
        self.t200 = None;
        self.t203 = None;
        if notify {
            self.events.push_back(LinkEvent::Released);
        }
    }

    fn ack_to(&mut self, nr: u8, now: Instant) -> bool {
        if dist(self.va, nr) > dist(self.va, self.vs) {
            self.events
                .push_back(LinkEvent::Error("J: N(R) sequence error"));
            self.establish(now);
            return false;
        }
        while self.va != nr {
            self.unacked.pop_front();
            self.va = inc(self.va);
        }
        true
    }

    fn after_ack(&mut self, now: Instant) {
        if self.va == self.vs {
            self.t200 = None;
            self.t203 = Some(now + self.cfg.t203);
        } else {
            self.t200 = Some(now + self.cfg.t200);
        }
    }

    fn retransmit_from(&mut self, nr: u8, now: Instant) {
        // V(S) := N(R): send the unacknowledged frames again.
        self.vs = nr;
        let frames: Vec<(u8, Vec<u8>)> = self.unacked.iter().cloned().collect();
        for (ns, info) in frames {
            self.out(
                true,
                Kind::I {
                    ns,
                    nr: self.vr,
                    p: false,
                },
                &info,
            );
            self.vs = inc(ns);
        }
        if !self.unacked.is_empty() {
            self.t200 = Some(now + self.cfg.t200);
        }
    }

    /// A frame from the peer (address + control + info, no FCS).
    pub fn handle_frame(&mut self, bytes: &[u8], now: Instant) {
        let Ok(f) = Frame::parse(bytes) else {
            self.dropped += 1;
            return;
        };
        if f.sapi != 0 || f.tei != 0 {
            self.dropped += 1;
            return;
        }
        // A command from the peer carries the peer's command C/R.
        let is_cmd = f.cr != self.cmd_cr();
        match f.kind {
            Kind::Sabme { p } => {
                self.out(false, Kind::Ua { f: p }, &[]);
                if self.state == LinkState::AwaitingRelease {
                    return;
                }
                self.now_established(now);
            }
            Kind::Disc { p } => {
                if self.state == LinkState::Released
                    || self.state == LinkState::AwaitingEstablishment
                {
                    self.out(false, Kind::Dm { f: p }, &[]);
                } else {
                    self.out(false, Kind::Ua { f: p }, &[]);
                }
                self.queue.clear();
                self.unacked.clear();
                self.released();
            }
            Kind::Ua { .. } => match self.state {
                LinkState::AwaitingEstablishment => self.now_established(now),
                LinkState::AwaitingRelease => self.released(),
                _ => self
                    .events
                    .push_back(LinkEvent::Error("C/D: unsolicited UA")),
            },
            Kind::Dm { f: fin } => match self.state {
                LinkState::AwaitingEstablishment if fin => self.released(),
                LinkState::AwaitingRelease => self.released(),
                LinkState::Established | LinkState::TimerRecovery => {
                    self.events
                        .push_back(LinkEvent::Error("E: DM received, re-establishing"));
                    self.establish(now);
                }
                _ => {}
            },
            Kind::I { ns, nr, p } if self.is_up() => {
                if ns == self.vr {
                    self.vr = inc(self.vr);
                    self.reject_sent = false;
                    self.events.push_back(LinkEvent::Data(f.info.clone()));
                    if p {
                        self.out(
                            false,
                            Kind::Rr {
                                nr: self.vr,
                                pf: true,
                            },
                            &[],
                        );
                    } else if self.queue.is_empty() || self.peer_busy {
                        self.out(
                            false,
                            Kind::Rr {
                                nr: self.vr,
                                pf: false,
                            },
                            &[],
                        );
                    }
                } else if !self.reject_sent {
                    self.reject_sent = true;
                    self.out(false, Kind::Rej { nr: self.vr, pf: p }, &[]);
                } else if p {
                    self.out(
                        false,
                        Kind::Rr {
                            nr: self.vr,
                            pf: true,
                        },
                        &[],
                    );
                }
                if self.ack_to(nr, now) {
                    if self.state == LinkState::Established {
                        self.after_ack(now);
                    }
                    self.t203 = self.t203.or(Some(now + self.cfg.t203));
                    self.push_iframes(now);
                }
            }
            Kind::Rr { nr, pf } | Kind::Rnr { nr, pf } | Kind::Rej { nr, pf } if self.is_up() => {
                self.peer_busy = matches!(f.kind, Kind::Rnr { .. });
                if is_cmd && pf {
                    self.out(
                        false,
                        Kind::Rr {
                            nr: self.vr,
                            pf: true,
                        },
                        &[],
                    );
                }
                if !self.ack_to(nr, now) {
                    return;
                }
                if self.state == LinkState::TimerRecovery {
                    if !is_cmd && pf {
                        self.state = LinkState::Established;
                        self.rc = 0;
                        self.t200 = None;
                        self.retransmit_from(nr, now);
                        self.after_ack(now);
                    }
                } else if matches!(f.kind, Kind::Rej { .. }) {
                    self.retransmit_from(nr, now);
                    self.after_ack(now);
                } else {
                    self.after_ack(now);
                }
                if self.t203.is_none() && self.t200.is_none() {
                    self.t203 = Some(now + self.cfg.t203);
                }
                self.push_iframes(now);
            }
            Kind::I { p, .. }
            | Kind::Rr { pf: p, .. }
            | Kind::Rnr { pf: p, .. }
            | Kind::Rej { pf: p, .. } => {
                // Not established: answer commands with P=1 by DM F=1.
                if is_cmd && p && self.state == LinkState::Released {
                    self.out(false, Kind::Dm { f: true }, &[]);
                }
            }
            Kind::Frmr { .. } => {
                self.events.push_back(LinkEvent::Error("K: FRMR received"));
                if self.is_up() {
                    self.establish(now);
                }
            }
            Kind::Ui { .. } | Kind::Xid { .. } | Kind::Other(_) => self.dropped += 1,
        }
    }

    /// Fires expired timers.
    pub fn handle_timeout(&mut self, now: Instant) {
        if self.t200.is_some_and(|t| now >= t) {
            self.t200 = None;
            match self.state {
                LinkState::AwaitingEstablishment => {
                    if self.rc < self.cfg.n200 {
                        self.rc += 1;
                        self.out(true, Kind::Sabme { p: true }, &[]);
                        self.t200 = Some(now + self.cfg.t200);
                    } else {
                        self.events
                            .push_back(LinkEvent::Error("G: no answer to SABME after N200"));
                        self.queue.clear();
                        self.released();
                    }
                }
                LinkState::AwaitingRelease => {
                    if self.rc < self.cfg.n200 {
                        self.rc += 1;
                        self.out(true, Kind::Disc { p: true }, &[]);
                        self.t200 = Some(now + self.cfg.t200);
                    } else {
                        self.events
                            .push_back(LinkEvent::Error("H: no answer to DISC after N200"));
                        self.released();
                    }
                }
                LinkState::Established => {
                    self.state = LinkState::TimerRecovery;
                    self.rc = 1;
                    self.out(
                        true,
                        Kind::Rr {
                            nr: self.vr,
                            pf: true,
                        },
                        &[],
                    );
                    self.t200 = Some(now + self.cfg.t200);
                }
                LinkState::TimerRecovery => {
                    if self.rc < self.cfg.n200 {
                        self.rc += 1;
                        self.out(
                            true,
                            Kind::Rr {
                                nr: self.vr,
                                pf: true,
                            },
                            &[],
                        );
                        self.t200 = Some(now + self.cfg.t200);
                    } else {
                        self.events
                            .push_back(LinkEvent::Error("I: no answer to enquiry after N200"));
                        self.establish(now);
                    }
                }
                LinkState::Released => {}
            }
        }
        if self.t203.is_some_and(|t| now >= t) {
            self.t203 = None;
            if self.state == LinkState::Established {
                self.state = LinkState::TimerRecovery;
                self.rc = 0;
                self.out(
                    true,
                    Kind::Rr {
                        nr: self.vr,
                        pf: true,
                    },
                    &[],
                );
                self.t200 = Some(now + self.cfg.t200);
            }
        }
    }

    /// Next frame to send (address + control + info; the HDLC layer adds FCS).
    pub fn poll_transmit(&mut self) -> Option<Vec<u8>> {
        self.tx.pop_front()
    }

    /// Next event for layer 3.
    pub fn poll_event(&mut self) -> Option<LinkEvent> {
        self.events.pop_front()
    }

    /// Earliest timer deadline.
    pub fn poll_timeout(&self) -> Option<Instant> {
        match (self.t200, self.t203) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pump(
        a: &mut Link,
        b: &mut Link,
        now: Instant,
        drop_ab: &mut dyn FnMut(&[u8]) -> bool,
    ) -> usize {
        let mut n = 0;
        loop {
            let mut moved = false;
            while let Some(f) = a.poll_transmit() {
                if !drop_ab(&f) {
                    b.handle_frame(&f, now);
                }
                moved = true;
                n += 1;
            }
            while let Some(f) = b.poll_transmit() {
                a.handle_frame(&f, now);
                moved = true;
                n += 1;
            }
            if !moved {
                return n;
            }
        }
    }

    fn events(l: &mut Link) -> Vec<LinkEvent> {
        std::iter::from_fn(|| l.poll_event()).collect()
    }

    #[test]
    fn frame_codec_matches_libpri_bytes() {
        let f = Frame::parse(&[0x02, 0x01, 0x7F]).unwrap();
        assert_eq!(
            (f.sapi, f.cr, f.tei, f.kind),
            (0, true, 0, Kind::Sabme { p: true })
        );
        let f = Frame::parse(&[0x00, 0x01, 0x01, 0x02]).unwrap();
        assert_eq!(f.kind, Kind::Rr { nr: 1, pf: false });
        let b = [0x02, 0x01, 0x04, 0x06, 0x08, 0x02, 0x00, 0x01, 0x45];
        let f = Frame::parse(&b).unwrap();
        assert_eq!(
            f.kind,
            Kind::I {
                ns: 2,
                nr: 3,
                p: false
            }
        );
        assert_eq!(f.info(), Some(&b[4..]));
        assert_eq!(f.to_bytes(), b);
        assert_eq!(Frame::parse(&[0x02]), Err(LapdError::TooShort(1)));
        assert_eq!(
            Frame::parse(&[0x03, 0x01, 0x7F]),
            Err(LapdError::BadAddress(3, 1))
        );
        assert!(
            Frame::parse(&[0x02, 0x01, 0x00]).is_err(),
            "I frame without second control octet"
        );
    }

    #[test]
    fn establish_exchange_and_window() {
        let t0 = Instant::now();
        let mut u = Link::new(Side::User, LinkConfig::default());
        let mut n = Link::new(Side::Network, LinkConfig::default());
        u.start(t0);
        let sabme = u.poll_transmit().unwrap();
        assert_eq!(sabme, vec![0x00, 0x01, 0x7F], "user command C/R = 0");
        n.handle_frame(&sabme, t0);
        assert_eq!(
            n.poll_transmit().unwrap(),
            vec![0x00, 0x01, 0x73],
            "network response C/R = 0"
        );
        u.handle_frame(&[0x00, 0x01, 0x73], t0);
        assert!(u.is_up() && n.is_up());
        assert_eq!(events(&mut u), vec![LinkEvent::Established]);
        assert_eq!(events(&mut n), vec![LinkEvent::Established]);
        for i in 0..20u8 {
            u.send(vec![8, 2, 0, i, 5], t0);
        }
        // Only k = 7 I-frames go before an acknowledgement.
        let mut first = Vec::new();
        while let Some(f) = u.poll_transmit() {
            first.push(f);
        }
        assert_eq!(first.len(), 7);
        for f in &first {
            n.handle_frame(f, t0);
        }
        pump(&mut u, &mut n, t0, &mut |_| false);
        let got: Vec<u8> = events(&mut n)
            .into_iter()
            .filter_map(|e| {
                if let LinkEvent::Data(d) = e {
                    Some(d[3])
                } else {
                    None
                }
            })
            .collect();
        assert_eq!(got, (0..20).collect::<Vec<u8>>());
        assert_eq!(u.vars().0, 20);
        assert_eq!(u.vars().2, 20, "all acknowledged");
        assert_eq!(n.vars().1, 20);
        // T203 is running on an idle link.
        assert_eq!(u.poll_timeout(), Some(t0 + Duration::from_secs(10)));
    }

    #[test]
    fn lost_iframe_recovered_by_rej_or_t200() {
        let t0 = Instant::now();
        let mut u = Link::new(Side::User, LinkConfig::default());
        let mut n = Link::new(Side::Network, LinkConfig::default());
        u.start(t0);
        pump(&mut u, &mut n, t0, &mut |_| false);
        let _ = (events(&mut u), events(&mut n));
        // Lose the first I-frame: the second triggers REJ.
        u.send(b"\x08\x02\x00\x01\x05A".to_vec(), t0);
        u.send(b"\x08\x02\x00\x01\x05B".to_vec(), t0);
        let mut dropped = false;
        pump(&mut u, &mut n, t0, &mut |f| {
            if !dropped && f.len() > 4 {
                dropped = true;
                return true;
            }
            false
        });
        let d: Vec<_> = events(&mut n);
        assert_eq!(d.len(), 2, "{d:?}");
        assert_eq!(d[0], LinkEvent::Data(b"\x08\x02\x00\x01\x05A".to_vec()));
        // Lose the only I-frame: T200 expiry -> RR P=1 enquiry -> retransmission.
        u.send(b"\x08\x02\x00\x01\x05C".to_vec(), t0);
        let _lost = u.poll_transmit().unwrap();
        assert_eq!(u.poll_timeout(), Some(t0 + Duration::from_secs(1)));
        let t1 = t0 + Duration::from_secs(1);
        u.handle_timeout(t1);
        assert_eq!(u.state(), LinkState::TimerRecovery);
        pump(&mut u, &mut n, t1, &mut |_| false);
        assert_eq!(u.state(), LinkState::Established);
        assert_eq!(
            events(&mut n),
            vec![LinkEvent::Data(b"\x08\x02\x00\x01\x05C".to_vec())]
        );
        assert_eq!(u.vars().2, 3);
    }

    #[test]
    fn sabme_retries_n200_then_release() {
        let t0 = Instant::now();
        let mut u = Link::new(Side::User, LinkConfig::default());
        u.start(t0);
        let mut t = t0;
        let mut sabmes = 0;
        while u.poll_transmit().is_some() {
            sabmes += 1;
        }
        for _ in 0..5 {
            if let Some(d) = u.poll_timeout() {
                t = d;
                u.handle_timeout(t);
                while u.poll_transmit().is_some() {
                    sabmes += 1;
                }
            }
        }
        assert_eq!(sabmes, 4, "first SABME + N200 retries");
        assert_eq!(u.state(), LinkState::Released);
        assert_eq!(t, t0 + Duration::from_secs(4));
        let ev = events(&mut u);
        assert!(ev.contains(&LinkEvent::Released), "{ev:?}");
    }

    #[test]
    fn t203_idle_enquiry_and_disc() {
        let t0 = Instant::now();
        let mut u = Link::new(Side::User, LinkConfig::default());
        let mut n = Link::new(Side::Network, LinkConfig::default());
        n.start(t0);
        pump(&mut n, &mut u, t0, &mut |_| false);
        let t1 = t0 + Duration::from_secs(10);
        u.handle_timeout(t1);
        let enq = u.poll_transmit().unwrap();
        assert_eq!(
            enq,
            vec![0x00, 0x01, 0x01, 0x01],
            "RR command P=1 from user"
        );
        n.handle_frame(&enq, t1);
        let resp = n.poll_transmit().unwrap();
        assert_eq!(
            resp,
            vec![0x00, 0x01, 0x01, 0x01],
            "RR response F=1 from network (C/R 0)"
        );
        u.handle_frame(&resp, t1);
        assert_eq!(u.state(), LinkState::Established);
        // Enquiry never answered: N200 then re-establish.
        let t2 = t1 + Duration::from_secs(10);
        u.handle_timeout(t2);
        // T203 enquiry (RC 0), then N200 retransmissions on T200.
        for k in 1..=3 {
            u.handle_timeout(t2 + Duration::from_secs(k));
            assert_eq!(u.state(), LinkState::TimerRecovery);
        }
        u.handle_timeout(t2 + Duration::from_secs(4));
        assert_eq!(u.state(), LinkState::AwaitingEstablishment);
        // Release from the network side.
        let _ = events(&mut u);
        while u.poll_transmit().is_some() {}
        n.stop(t2);
        pump(&mut n, &mut u, t2, &mut |_| false);
        assert_eq!(n.state(), LinkState::Released);
    }

    #[test]
    fn garbage_is_dropped() {
        let t0 = Instant::now();
        let mut u = Link::new(Side::User, LinkConfig::default());
        u.handle_frame(&[], t0);
        u.handle_frame(&[0xFC, 0xFF, 0x03, 0x0F], t0);
        u.handle_frame(&[0x00, 0x03, 0x7F], t0); // TEI 1
        assert_eq!(u.dropped, 3);
        assert_eq!(u.state(), LinkState::Released);
    }
}
