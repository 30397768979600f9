//! The DAHDI card edge of the PSTN IWF: one `driver = "dahdi"` span as open
//! `/dev/dahdi/channel` file descriptors.
//!
//! At start the span's D-channel (a `dchan=` channel: HDLC with FCS in the
//! kernel) and every configured B-channel (clear, A-law) are opened through
//! [`drivers::dahdi::Channel`]; DAHDI channel numbers are
//! `channel_base + timeslot` ([`SpanConfig::dahdi_channel`]). The D-channel
//! is checked to sit on the configured span and timeslot, so a wrong
//! `channel_base` fails at start rather than talking Q.921 on a B-channel.
//!
//! The IWF thread then moves, per loop: D-channel frames both ways (a frame
//! the kernel has no free buffer for waits in a short queue), and for each
//! call with media whole blocks of `blocksize` octets (160 = 20 ms): one
//! `read()` or `write()` per block, never per sample. A B-channel's stale
//! receive buffers are flushed when its call's media starts. Span alarms are
//! read with `DAHDI_SPANSTAT` once a second.

use std::collections::{BTreeSet, VecDeque};
use std::os::fd::AsFd;
use std::path::Path;

use drivers::dahdi::{ioctl, Channel, ChannelError};
use drivers::span::Alarms;
use drivers::SpanId;

use crate::pstn::config::SpanConfig;

use super::IwfError;

/// Receive/transmit buffers per B-channel: 8 blocks (160 ms at 20 ms blocks)
/// absorb RTP arriving in bursts without adding latency in the steady state
/// (the kernel sends a block as soon as it is written, policy immediate).
const BCHAN_BUFS: i32 = 8;
/// D-channel frames kept while the kernel's transmit buffers are full.
const MAX_PENDING: usize = 64;
/// Device errors logged per span before going quiet (they are counted).
const MAX_LOGGED: u64 = 20;

/// One open DAHDI span.
#[derive(Debug)]
pub(super) struct DahdiSpan {
    span: SpanId,
    dchan: Channel,
    /// (timeslot, channel), ascending timeslots.
    bchans: Vec<(u8, Channel)>,
    block: usize,
    pending: VecDeque<Vec<u8>>,
    /// Timeslots whose call media is flowing (flushed once when they start).
    live: BTreeSet<u8>,
    buf: Vec<u8>,
    errors: u64,
    log: VecDeque<String>,
}

impl DahdiSpan {
    /// Opens the span's channels on `/dev/dahdi/channel`.
    pub(super) fn open(cfg: &SpanConfig) -> Result<Self, IwfError> {
        Self::open_at(Path::new(drivers::dahdi::chan::CHANNEL_DEVICE), cfg)
    }

    /// Opens the span's channels through the channel opener at `device`.
    pub(super) fn open_at(device: &Path, cfg: &SpanConfig) -> Result<Self, IwfError> {
        let span = cfg.span.0;
        if !device.exists() {
            return Err(IwfError::NoDahdi {
                span,
                device: device.display().to_string(),
            });
        }
        let dch = cfg.dahdi_channel(cfg.dchannel);
        let err = |what: String| move |source: ChannelError| IwfError::Dahdi { span, what, source };
        let dchan = Channel::open_dchannel_at(device, dch).map_err(err(format!(
            "D-channel (timeslot {}, channel {dch})",
            cfg.dchannel
        )))?;
        let p = dchan.params();
        if p.spanno != i32::from(span) || p.chanpos != i32::from(cfg.dchannel) {
            return Err(IwfError::DahdiPlan {
                span,
                msg: format!(
                    "DAHDI channel {dch} is span {} position {}, not span {span} timeslot {}: \
                     check span, channels and channel_base (span {}'s timeslot 0 is \
                     channel_base = {})",
                    p.spanno,
                    p.chanpos,
                    cfg.dchannel,
                    p.spanno,
                    p.channo - p.chanpos,
                ),
            });
        }
        let mut bchans = Vec::with_capacity(cfg.bchannels.len());
        for &ts in &cfg.bchannels {
            let ch = cfg.dahdi_channel(ts);
            let c = Channel::open_bearer_at(device, ch, cfg.blocksize, BCHAN_BUFS)
                .map_err(err(format!("B-channel (timeslot {ts}, channel {ch})")))?;
            bchans.push((ts, c));
        }
        bchans.sort_by_key(|(ts, _)| *ts);
        Ok(Self {
            span: cfg.span,
            dchan,
            bchans,
            block: cfg.blocksize,
            pending: VecDeque::new(),
            live: BTreeSet::new(),
            buf: vec![0; cfg.blocksize],
            errors: 0,
            log: VecDeque::new(),
        })
    }

    fn failed(&mut self, e: &ChannelError) {
        self.errors += 1;
        if self.errors <= MAX_LOGGED {
            self.log
                .push_back(format!("pstn: span {}: {e}", self.span.0));
        }
    }

    /// Next log line (device errors).
    pub(super) fn poll_log(&mut self) -> Option<String> {
        self.log.pop_front()
    }

    /// Every D-channel frame waiting in the kernel (without FCS), in order.
    pub(super) fn recv_frames(&mut self, mut f: impl FnMut(&[u8])) {
        for _ in 0..64 {
            match self.dchan.read_frame() {
                Ok(Some(frame)) => f(&frame),
                Ok(None) => break,
                Err(e) => {
                    // A short frame (an abort) is dropped; Q.921 recovers it.
                    self.failed(&e);
                    if matches!(e, ChannelError::Io { .. }) {
                        break;
                    }
                }
            }
        }
        while let Some(ev) = self.dchan.poll_event() {
            if ev == drivers::dahdi::abi::event::ALARM || ev == drivers::dahdi::abi::event::NOALARM
            {
                self.log
                    .push_back(format!("pstn: span {}: DAHDI event {ev}", self.span.0));
            }
        }
    }

    /// Queues a D-channel frame (the kernel adds flags and FCS).
    pub(super) fn send_frame(&mut self, frame: &[u8]) {
        if self.pending.len() >= MAX_PENDING {
            self.pending.pop_front();
        }
        self.pending.push_back(frame.to_vec());
        self.flush_frames();
    }

    /// Writes queued D-channel frames while the kernel has buffers.
    pub(super) fn flush_frames(&mut self) {
        while let Some(f) = self.pending.front() {
            match self.dchan.write_frame(f) {
                Ok(true) => {
                    self.pending.pop_front();
                }
                Ok(false) => break,
                Err(e) => {
                    self.pending.pop_front();
                    self.failed(&e);
                }
            }
        }
    }

    fn bchan(&mut self, ts: u8) -> Option<&mut Channel> {
        let i = self.bchans.binary_search_by_key(&ts, |(t, _)| *t).ok()?;
        Some(&mut self.bchans[i].1)
    }

    /// The timeslots whose calls have media now: newly live ones have their
    /// stale buffers flushed (audio from before the call).
    pub(super) fn set_live(&mut self, live: BTreeSet<u8>) {
        let fresh: Vec<u8> = live.difference(&self.live).copied().collect();
        for ts in fresh {
            let Some(c) = self.bchan(ts) else { continue };
            let channo = c.channo();
            if let Err(source) = ioctl::flush(c.as_fd()) {
                self.failed(&ChannelError::Io {
                    channo,
                    op: "DAHDI_FLUSH",
                    source,
                });
            }
        }
        self.live = live;
    }

    /// Every whole block received on timeslot `ts`, in order, to `f`.
    pub(super) fn read_blocks(&mut self, ts: u8, mut f: impl FnMut(&[u8])) {
        let mut buf = std::mem::take(&mut self.buf);
        for _ in 0..BCHAN_BUFS {
            let Some(c) = self.bchan(ts) else { break };
            match c.read_block(&mut buf) {
                Ok(Some(n)) if n == self.block => f(&buf[..n]),
                Ok(Some(_)) => {}
                Ok(None) => break,
                Err(e) => {
                    self.failed(&e);
                    break;
                }
            }
        }
        self.buf = buf;
    }

    /// Writes one block on timeslot `ts`; dropped when the kernel's buffers
    /// are full (the far end then hears a gap, as with a late RTP packet).
    pub(super) fn write_block(&mut self, ts: u8, block: &[u8]) {
        let Some(c) = self.bchan(ts) else { return };
        if let Err(e) = c.write_block(block) {
            self.failed(&e);
        }
    }

    /// The span's alarms (`DAHDI_SPANSTAT`).
    pub(super) fn alarms(&mut self) -> Alarms {
        let spanno = i32::from(self.span.0);
        match ioctl::span_stat(self.dchan.as_fd(), spanno) {
            Ok(s) => {
                let raw = s.alarms;
                Alarms::from_dahdi(u32::try_from(raw).unwrap_or(0))
            }
            Err(source) => {
                let channo = self.dchan.channo();
                self.failed(&ChannelError::Io {
                    channo,
                    op: "DAHDI_SPANSTAT",
                    source,
                });
                Alarms::NONE
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn missing_device_names_span_and_device() {
        let mut cfg = SpanConfig::e1(2, 1, "from-pstn");
        cfg.driver = crate::pstn::config::Driver::Dahdi;
        let e = DahdiSpan::open_at(Path::new("/nonexistent/dahdi/channel"), &cfg).unwrap_err();
        let t = e.to_string();
        assert!(
            t.contains("span 2") && t.contains("/nonexistent/dahdi/channel"),
            "{t}"
        );
    }

    #[test]
    fn unopenable_channel_names_span_timeslot_and_channel() {
        // /dev/null opens but refuses DAHDI_SPECIFY: the error says which
        // span, timeslot and DAHDI channel (31 + 16 on span 2) failed.
        let mut cfg = SpanConfig::e1(2, 1, "from-pstn");
        cfg.driver = crate::pstn::config::Driver::Dahdi;
        let e = DahdiSpan::open_at(Path::new("/dev/null"), &cfg).unwrap_err();
        let t = e.to_string();
        assert!(
            t.contains("span 2") && t.contains("timeslot 16") && t.contains("channel 47"),
            "{t}"
        );
        assert!(t.contains("DAHDI_SPECIFY"), "{t}");
    }
}
