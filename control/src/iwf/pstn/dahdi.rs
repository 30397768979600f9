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
//! `read()` or `write()` per block, never per sample (a block the kernel has
//! no free buffer for, after a late loop, waits for the next one). A B-channel's stale
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
/// B-channel blocks kept per channel while the kernel's buffers are full
/// (the IWF thread was late and RTP arrived in a burst): they go out on the
/// next loops instead of being lost; beyond this the oldest is dropped.
const MAX_PENDING_BLOCKS: usize = 16;
/// D-channel frames kept while the kernel's transmit buffers are full.
const MAX_PENDING: usize = 64;
/// Device errors logged per span before going quiet (they are counted).
const MAX_LOGGED: u64 = 20;

/// One open B-channel.
#[derive(Debug)]
struct Bchan {
    ts: u8,
    ch: Channel,
    pending: VecDeque<Vec<u8>>,
    dropped: u64,
}

/// One open DAHDI span.
#[derive(Debug)]
pub(super) struct DahdiSpan {
    span: SpanId,
    dchan: Channel,
    /// (timeslot, channel, blocks waiting for a free buffer, blocks
    /// dropped), ascending timeslots.
    bchans: Vec<Bchan>,
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
            bchans.push(Bchan {
                ts,
                ch: c,
                pending: VecDeque::new(),
                dropped: 0,
            });
        }
        bchans.sort_by_key(|b| b.ts);
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
            use drivers::dahdi::abi::event;
            let what = match ev {
                event::ALARM => "alarm raised (the span's alarms are read again each second)",
                event::NOALARM => "alarm cleared",
                _ => continue,
            };
            self.log
                .push_back(format!("pstn: span {}: DAHDI {what}", self.span.0));
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

    fn bchan(&mut self, ts: u8) -> Option<&mut Bchan> {
        let i = self.bchans.binary_search_by_key(&ts, |b| b.ts).ok()?;
        Some(&mut self.bchans[i])
    }

    /// The timeslots whose calls have media now: newly live ones have their
    /// stale buffers flushed (audio from before the call); ended ones report
    /// the blocks they had to drop.
    pub(super) fn set_live(&mut self, live: BTreeSet<u8>) {
        let fresh: Vec<u8> = live.difference(&self.live).copied().collect();
        let gone: Vec<u8> = self.live.difference(&live).copied().collect();
        for ts in gone {
            let span = self.span.0;
            let Some(b) = self.bchan(ts) else { continue };
            b.pending.clear();
            if b.dropped > 0 {
                let msg = format!(
                    "pstn: span {span}: timeslot {ts}: {} audio blocks dropped (transmit buffers full)",
                    b.dropped
                );
                b.dropped = 0;
                self.log.push_back(msg);
            }
        }
        for ts in fresh {
            let Some(b) = self.bchan(ts) else { continue };
            b.pending.clear();
            let channo = b.ch.channo();
            if let Err(source) = ioctl::flush(b.ch.as_fd()) {
                self.failed(&ChannelError::Io {
                    channo,
                    op: "DAHDI_FLUSH",
                    source,
                });
            }
        }
        self.live = live;
    }

    /// Every whole block received on timeslot `ts`, in order, to `f`; then
    /// blocks still waiting to be written go out while buffers are free.
    pub(super) fn read_blocks(&mut self, ts: u8, mut f: impl FnMut(&[u8])) {
        let mut buf = std::mem::take(&mut self.buf);
        let block = self.block;
        let mut err = None;
        if let Some(b) = self.bchan(ts) {
            for _ in 0..BCHAN_BUFS {
                match b.ch.read_block(&mut buf) {
                    Ok(Some(n)) if n == block => f(&buf[..n]),
                    Ok(Some(_)) => {}
                    Ok(None) => break,
                    Err(e) => {
                        err = Some(e);
                        break;
                    }
                }
            }
        }
        self.buf = buf;
        if let Some(e) = err {
            self.failed(&e);
        }
        self.write_block(ts, None);
    }

    /// Writes one block on timeslot `ts` (or, with `None`, only what
    /// waits). A block the kernel has no buffer for waits (up to
    /// [`MAX_PENDING_BLOCKS`]), so a burst of RTP after a late loop is
    /// delayed, not lost.
    pub(super) fn write_block(&mut self, ts: u8, block: Option<&[u8]>) {
        let mut err = None;
        {
            let Some(b) = self.bchan(ts) else { return };
            if let Some(blk) = block {
                if b.pending.len() >= MAX_PENDING_BLOCKS {
                    b.pending.pop_front();
                    b.dropped += 1;
                }
                b.pending.push_back(blk.to_vec());
            }
            while let Some(blk) = b.pending.front() {
                match b.ch.write_block(blk) {
                    Ok(true) => {
                        b.pending.pop_front();
                    }
                    Ok(false) => break,
                    Err(e) => {
                        b.pending.pop_front();
                        b.dropped += 1;
                        err = Some(e);
                        break;
                    }
                }
            }
        }
        if let Some(e) = err {
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
