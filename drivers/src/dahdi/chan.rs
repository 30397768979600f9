//! An open DAHDI channel: a D-channel carrying HDLC frames through the
//! kernel's HDLC/FCS engine, or a clear B-channel carrying A-law blocks.
//!
//! [`Channel::open_dchannel`] does what chan_dahdi/libpri do: open
//! `/dev/dahdi/channel` non-blocking, `DAHDI_SPECIFY` the channel number,
//! check with `DAHDI_GET_PARAMS` that it is a `dchan=` (HDLC with FCS) or
//! `hardhdlc=` channel, and set 32 buffers of 1024 octets, both policies
//! immediate. A `read()` on it returns one frame followed by its 2 FCS
//! octets (stripped here); a `write()` takes one frame plus 2 spare octets
//! that the kernel overwrites with the FCS (appended here).
//! [`Channel::open_bearer`] sets a block size (160 = 20 ms) and a number of
//! buffers on a clear channel; reads and writes move whole blocks.
//!
//! Signalling events (`errno` 500 on read/write) are fetched with
//! `DAHDI_GETEVENT` and queued for [`Channel::poll_event`]; the I/O is then
//! retried. No unsafe code here: every ioctl goes through [`super::ioctl`].

use std::collections::VecDeque;
use std::fs::{File, OpenOptions};
use std::io::{self, Read, Write};
use std::os::fd::{AsFd, BorrowedFd};
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

use super::abi::{self, BufferInfo, Params};
use super::ioctl;

/// The generic channel opener.
pub const CHANNEL_DEVICE: &str = "/dev/dahdi/channel";
/// Octets of the FCS that the kernel appends on read and fills in on write.
pub const FCS_LEN: usize = 2;
/// Largest frame accepted for writing (LAPD N201 260 + header 4, with room).
pub const MAX_FRAME: usize = 1024 - FCS_LEN;
/// D-channel buffers (what chan_dahdi and libpri use).
const DCHAN_BUFS: i32 = 32;
const DCHAN_BUFSIZE: i32 = 1024;

/// Errors of a DAHDI channel; each names the channel and the operation.
#[derive(Debug, thiserror::Error)]
pub enum ChannelError {
    /// A system call failed.
    #[error("dahdi channel {channo}: {op}: {source}")]
    Io {
        /// Channel number.
        channo: i32,
        /// What was being done.
        op: &'static str,
        /// The OS error.
        source: io::Error,
    },
    /// The channel is configured for another use than the one asked for.
    #[error("dahdi channel {channo}: signalling type {sigtype:#x} is not {want}")]
    WrongSignalling {
        /// Channel number.
        channo: i32,
        /// `sigtype` from DAHDI_GET_PARAMS.
        sigtype: i32,
        /// What was expected.
        want: &'static str,
    },
    /// A frame or block of a size this channel cannot carry.
    #[error("dahdi channel {channo}: {what} of {len} octets (allowed: {allowed})")]
    BadLength {
        /// Channel number.
        channo: i32,
        /// Frame or block.
        what: &'static str,
        /// Its length.
        len: usize,
        /// The allowed size(s), as text.
        allowed: String,
    },
    /// Buffer parameters out of DAHDI's limits.
    #[error("dahdi channel {channo}: {numbufs} buffers of {bufsize} octets exceed DAHDI's limits (32, 32768 in all)")]
    BadBuffers {
        /// Channel number.
        channo: i32,
        /// Buffers asked for.
        numbufs: i32,
        /// Octets per buffer.
        bufsize: i32,
    },
}

/// What a channel is used for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChannelKind {
    /// A D-channel: HDLC frames with the kernel's FCS.
    DChannel,
    /// A clear bearer channel moving blocks of `block` octets.
    Bearer {
        /// Octets per read/write.
        block: usize,
    },
}

/// Counters kept per channel.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ChannelStats {
    /// Frames or blocks read.
    pub rx: u64,
    /// Frames or blocks written.
    pub tx: u64,
    /// Writes refused because every buffer was full (EAGAIN).
    pub tx_full: u64,
    /// Events fetched with DAHDI_GETEVENT.
    pub events: u64,
}

/// An open, specified DAHDI channel.
#[derive(Debug)]
pub struct Channel {
    file: File,
    channo: i32,
    kind: ChannelKind,
    params: Params,
    events: VecDeque<i32>,
    stats: ChannelStats,
    buf: Vec<u8>,
}

impl Channel {
    /// Opens D-channel `channo` on [`CHANNEL_DEVICE`].
    pub fn open_dchannel(channo: i32) -> Result<Self, ChannelError> {
        Self::open_dchannel_at(Path::new(CHANNEL_DEVICE), channo)
    }

    /// Opens D-channel `channo` through the channel opener at `device`.
    pub fn open_dchannel_at(device: &Path, channo: i32) -> Result<Self, ChannelError> {
        let mut ch = Self::open(device, channo, ChannelKind::DChannel)?;
        let sig = ch.params.sigtype;
        if sig != abi::SIG_HDLCFCS && sig != abi::SIG_HARDHDLC {
            return Err(ChannelError::WrongSignalling {
                channo,
                sigtype: sig,
                want: "HDLC with FCS (dchan=) or hardhdlc=",
            });
        }
        ch.set_buffers(DCHAN_BUFS, DCHAN_BUFSIZE, abi::POLICY_IMMEDIATE)?;
        ch.buf = vec![0; DCHAN_BUFSIZE as usize];
        Ok(ch)
    }

    /// Opens clear channel `channo` on [`CHANNEL_DEVICE`] with `numbufs`
    /// buffers of `block` octets each way, policy immediate.
    pub fn open_bearer(channo: i32, block: usize, numbufs: i32) -> Result<Self, ChannelError> {
        Self::open_bearer_at(Path::new(CHANNEL_DEVICE), channo, block, numbufs)
    }

    /// As [`Channel::open_bearer`], through the channel opener at `device`.
    pub fn open_bearer_at(
        device: &Path,
        channo: i32,
        block: usize,
        numbufs: i32,
    ) -> Result<Self, ChannelError> {
        let bad_block = || ChannelError::BadLength {
            channo,
            what: "block",
            len: block,
            allowed: "16..=8192, a multiple of 8".into(),
        };
        if !(16..=8192).contains(&block) || !block.is_multiple_of(8) {
            return Err(bad_block());
        }
        let bufsize = i32::try_from(block).map_err(|_| bad_block())?;
        let mut ch = Self::open(device, channo, ChannelKind::Bearer { block })?;
        if ch.params.sigtype != abi::SIG_CLEAR {
            return Err(ChannelError::WrongSignalling {
                channo,
                sigtype: ch.params.sigtype,
                want: "a clear channel (bchan=/clear=)",
            });
        }
        let fd = ch.file.as_fd();
        ioctl::set_blocksize(fd, bufsize).map_err(ch.io("DAHDI_SET_BLOCKSIZE"))?;
        ch.set_buffers(numbufs, bufsize, abi::POLICY_IMMEDIATE)?;
        ch.buf = vec![0; block];
        Ok(ch)
    }

    fn open(device: &Path, channo: i32, kind: ChannelKind) -> Result<Self, ChannelError> {
        let io = |op| move |source| ChannelError::Io { channo, op, source };
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .custom_flags(libc::O_NONBLOCK)
            .open(device)
            .map_err(io("open"))?;
        ioctl::specify(file.as_fd(), channo).map_err(io("DAHDI_SPECIFY"))?;
        let params = ioctl::get_params(file.as_fd()).map_err(io("DAHDI_GET_PARAMS"))?;
        Ok(Self {
            file,
            channo,
            kind,
            params,
            events: VecDeque::new(),
            stats: ChannelStats::default(),
            buf: Vec::new(),
        })
    }

    fn io(&self, op: &'static str) -> impl FnOnce(io::Error) -> ChannelError {
        let channo = self.channo;
        move |source| ChannelError::Io { channo, op, source }
    }

    /// Sets the buffer count, size and policy (both directions).
    pub fn set_buffers(
        &mut self,
        numbufs: i32,
        bufsize: i32,
        policy: i32,
    ) -> Result<(), ChannelError> {
        let total = i64::from(numbufs) * i64::from(bufsize);
        if !(1..=abi::MAX_NUM_BUFS).contains(&numbufs)
            || bufsize < 1
            || total > i64::from(abi::MAX_BUF_SPACE)
        {
            return Err(ChannelError::BadBuffers {
                channo: self.channo,
                numbufs,
                bufsize,
            });
        }
        let bi = BufferInfo {
            txbufpolicy: policy,
            rxbufpolicy: policy,
            numbufs,
            bufsize,
            readbufs: 0,
            writebufs: 0,
        };
        ioctl::set_bufinfo(self.file.as_fd(), &bi).map_err(self.io("DAHDI_SET_BUFINFO"))
    }

    /// The buffer state as the kernel reports it.
    pub fn buffers(&self) -> Result<BufferInfo, ChannelError> {
        ioctl::get_bufinfo(self.file.as_fd()).map_err(self.io("DAHDI_GET_BUFINFO"))
    }

    /// Channel number.
    pub fn channo(&self) -> i32 {
        self.channo
    }

    /// D-channel or bearer.
    pub fn kind(&self) -> ChannelKind {
        self.kind
    }

    /// DAHDI_GET_PARAMS as read at open time (span, position, sigtype ...).
    pub fn params(&self) -> &Params {
        &self.params
    }

    /// Counters.
    pub fn stats(&self) -> ChannelStats {
        self.stats
    }

    /// Next queued DAHDI event (`abi::event::*`), if any.
    pub fn poll_event(&mut self) -> Option<i32> {
        self.events.pop_front()
    }

    /// Fetches every queued event (after `errno` 500 or POLLPRI).
    pub fn fetch_events(&mut self) -> Result<(), ChannelError> {
        for _ in 0..64 {
            let e = ioctl::get_event(self.file.as_fd()).map_err(self.io("DAHDI_GETEVENT"))?;
            if e == abi::event::NONE {
                break;
            }
            self.stats.events += 1;
            self.events.push_back(e);
        }
        Ok(())
    }

    /// Runs one read or write, fetching events and retrying on errno 500.
    /// `Ok(None)` means EAGAIN (nothing to read / no free buffer).
    fn retrying<T>(
        &mut self,
        op: &'static str,
        mut f: impl FnMut(&mut Self) -> io::Result<T>,
    ) -> Result<Option<T>, ChannelError> {
        for _ in 0..8 {
            match f(self) {
                Ok(v) => return Ok(Some(v)),
                Err(e) if e.raw_os_error() == Some(abi::ELAST) => self.fetch_events()?,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(None),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(self.io(op)(e)),
            }
        }
        Ok(None)
    }

    /// Reads one frame (without its FCS) from a D-channel; `Ok(None)` when
    /// none is waiting.
    pub fn read_frame(&mut self) -> Result<Option<Vec<u8>>, ChannelError> {
        let Some(n) = self.retrying("read", |c| c.file.read(&mut c.buf))? else {
            return Ok(None);
        };
        if n < FCS_LEN + 3 {
            return Err(ChannelError::BadLength {
                channo: self.channo,
                what: "received frame (with FCS)",
                len: n,
                allowed: "at least 5".into(),
            });
        }
        self.stats.rx += 1;
        Ok(Some(self.buf[..n - FCS_LEN].to_vec()))
    }

    /// Writes one frame (the kernel adds flags and FCS). `Ok(false)` when
    /// every transmit buffer is full: retry after POLLOUT.
    pub fn write_frame(&mut self, frame: &[u8]) -> Result<bool, ChannelError> {
        if frame.len() < 3 || frame.len() > MAX_FRAME {
            return Err(ChannelError::BadLength {
                channo: self.channo,
                what: "frame",
                len: frame.len(),
                allowed: format!("3..={MAX_FRAME}"),
            });
        }
        let mut out = Vec::with_capacity(frame.len() + FCS_LEN);
        out.extend_from_slice(frame);
        out.extend_from_slice(&[0; FCS_LEN]);
        let done = self.retrying("write", |c| c.file.write(&out))?.is_some();
        if done {
            self.stats.tx += 1;
        } else {
            self.stats.tx_full += 1;
        }
        Ok(done)
    }

    fn block(&self) -> usize {
        match self.kind {
            ChannelKind::Bearer { block } => block,
            ChannelKind::DChannel => self.buf.len(),
        }
    }

    /// Reads one block of samples into `out` (at least a block long);
    /// returns its length, `Ok(None)` when no block is ready.
    pub fn read_block(&mut self, out: &mut [u8]) -> Result<Option<usize>, ChannelError> {
        let block = self.block();
        if out.len() < block {
            return Err(ChannelError::BadLength {
                channo: self.channo,
                what: "read buffer",
                len: out.len(),
                allowed: format!(">= {block}"),
            });
        }
        let n = self.retrying("read", |c| c.file.read(&mut out[..block]))?;
        if n.is_some() {
            self.stats.rx += 1;
        }
        Ok(n)
    }

    /// Writes one block of exactly the block size. `Ok(false)` when every
    /// transmit buffer is full.
    pub fn write_block(&mut self, block: &[u8]) -> Result<bool, ChannelError> {
        let want = self.block();
        if block.len() != want {
            return Err(ChannelError::BadLength {
                channo: self.channo,
                what: "block",
                len: block.len(),
                allowed: want.to_string(),
            });
        }
        match self.retrying("write", |c| c.file.write(block))? {
            Some(n) if n == want => {
                self.stats.tx += 1;
                Ok(true)
            }
            Some(n) => Err(ChannelError::BadLength {
                channo: self.channo,
                what: "short write",
                len: n,
                allowed: want.to_string(),
            }),
            None => {
                self.stats.tx_full += 1;
                Ok(false)
            }
        }
    }
}

impl AsFd for Channel {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.file.as_fd()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn opening_a_non_dahdi_device_names_channel_and_ioctl() {
        let e = Channel::open_dchannel_at(Path::new("/dev/null"), 16).unwrap_err();
        let text = e.to_string();
        assert!(text.contains("channel 16"), "{text}");
        assert!(text.contains("DAHDI_SPECIFY"), "{text}");
        let e = Channel::open_dchannel_at(Path::new("/nonexistent/dahdi"), 47).unwrap_err();
        assert!(e.to_string().contains("open"), "{e}");
    }

    #[test]
    fn bad_block_sizes_are_refused_before_any_syscall() {
        for block in [0, 8, 12, 8200] {
            let e = Channel::open_bearer_at(Path::new("/nonexistent"), 1, block, 4).unwrap_err();
            assert!(
                matches!(e, ChannelError::BadLength { len, .. } if len == block),
                "{block}: {e}"
            );
        }
    }
}
