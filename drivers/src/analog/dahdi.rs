//! Analog port operations on a real DAHDI channel: hook, ring, polarity and
//! on-hook transfer through the `int`-argument ioctls of `dahdi::ioctl`, and
//! events through `DAHDI_GETEVENT` mapped by port kind. Needs a DAHDI analog
//! card (wctdm); without one the calls fail with the kernel's error, named.
//!
//! [`AnalogChannel`] is one analog port open on `/dev/dahdi/channel`: the
//! signalling `system.conf` gave the channel is checked against the port
//! kind (an FXS port needs FXO signalling, `fxoks=`/`fxols=`/`fxogs=`, and
//! vice versa), audio moves in whole blocks in the channel's law, events
//! arrive as `errno` 500 on read/write and are fetched with
//! `DAHDI_GETEVENT`. The same code runs on a TDM400P (wctdm) and on a
//! channel bank on a T1/E1 CAS span, where hook and ring cross as robbed
//! ABCD bits (the qemu rig's `dahdi_dynamic_loc` spans do exactly that).

use std::collections::VecDeque;
use std::fs::{File, OpenOptions};
use std::io::{self, Read, Write};
use std::os::fd::{AsFd, BorrowedFd};
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

use super::{abi, AnalogError, AnalogPort, Command, Event, PortKind, Signalling};
use crate::dahdi::{abi as dabi, ioctl};
use crate::ChanId;

/// The ioctl request and `int` argument for a command, `None` for commands
/// with no single-int ioctl (`SetCadence`).
pub fn ioctl_for(cmd: &Command) -> Option<(u32, i32)> {
    use crate::dahdi::abi::req::HOOK;
    Some(match cmd {
        Command::OnHook => (HOOK, abi::hook::ONHOOK),
        Command::OffHook => (HOOK, abi::hook::OFFHOOK),
        Command::Flash => (HOOK, abi::hook::FLASH),
        Command::Ring => (HOOK, abi::hook::RING),
        Command::RingOff => (HOOK, abi::hook::RINGOFF),
        Command::SetPolarity(r) => (abi::req::SETPOLARITY, i32::from(*r)),
        Command::OnHookTransfer(ms) => (abi::req::ONHOOKTRANSFER, i32::try_from(*ms).ok()?),
        Command::SetCadence(_) => return None,
    })
}

/// Apply `cmd` to `port`'s model and to the DAHDI channel open on `fd`.
pub fn command(
    fd: BorrowedFd<'_>,
    port: &mut AnalogPort,
    cmd: &Command,
) -> Result<(), AnalogError> {
    port.apply(cmd)?;
    if let Command::SetCadence(c) = cmd {
        let raw = c.to_dahdi().ok_or_else(|| AnalogError::BadCadence {
            chan: port.chan().0,
            cadence: c.0.clone(),
        })?;
        return ioctl::set_cadence(fd, &raw).map_err(|e| AnalogError::Io {
            chan: port.chan().0,
            op: "DAHDI_SETCADENCE",
            err: e.to_string(),
        });
    }
    let Some((req, arg)) = ioctl_for(cmd) else {
        return Ok(());
    };
    let op = match cmd {
        Command::SetPolarity(_) => "DAHDI_SETPOLARITY",
        Command::OnHookTransfer(_) => "DAHDI_ONHOOKTRANSFER",
        _ => "DAHDI_HOOK",
    };
    match ioctl::int_arg(fd, req, arg) {
        Ok(_) => Ok(()),
        // A non-blocking RING returns EINPROGRESS: ringing has started.
        Err(e) if e.raw_os_error() == Some(libc::EINPROGRESS) => Ok(()),
        Err(e) => Err(AnalogError::Io {
            chan: port.chan().0,
            op,
            err: e.to_string(),
        }),
    }
}

/// The signalling of a `DAHDI_SIG_*` value, `None` for non-analog ones.
pub fn signalling_of(sigtype: i32) -> Option<Signalling> {
    Signalling::ALL
        .into_iter()
        .find(|s| s.dahdi_sig() == sigtype)
}

/// The `system.conf` line that gives channel `channo` the signalling a
/// `kind` port needs (kewl start, DAHDI's usual choice).
pub fn conf_line_for(kind: PortKind, channo: u16) -> String {
    match kind {
        PortKind::Fxs => format!("fxoks={channo}"),
        PortKind::Fxo => format!("fxsks={channo}"),
    }
}

/// One analog port open on a DAHDI channel.
#[derive(Debug)]
pub struct AnalogChannel {
    file: File,
    port: AnalogPort,
    law: i32,
    block: usize,
    events: VecDeque<i32>,
}

impl AnalogChannel {
    /// Opens DAHDI channel `channo` through the channel opener at `device`
    /// for a `kind` port, with `numbufs` buffers of `block` octets each way
    /// (policy immediate). The channel's signalling must suit the port
    /// kind; the error says which `system.conf` line to write.
    pub fn open_at(
        device: &Path,
        channo: u16,
        kind: PortKind,
        block: usize,
        numbufs: i32,
    ) -> Result<Self, AnalogError> {
        let io = |op: &'static str| {
            move |e: io::Error| AnalogError::Io {
                chan: channo,
                op,
                err: e.to_string(),
            }
        };
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .custom_flags(libc::O_NONBLOCK)
            .open(device)
            .map_err(|e| AnalogError::Io {
                chan: channo,
                op: "open",
                err: format!("{}: {e}", device.display()),
            })?;
        let fd = file.as_fd();
        ioctl::specify(fd, i32::from(channo)).map_err(io("DAHDI_SPECIFY"))?;
        let p = ioctl::get_params(fd).map_err(io("DAHDI_GET_PARAMS"))?;
        let sig = signalling_of(p.sigtype).filter(|s| s.port_kind() == kind);
        let Some(sig) = sig else {
            return Err(AnalogError::WrongSignalling {
                chan: channo,
                sigtype: p.sigtype,
                have: signalling_of(p.sigtype).map_or("not an analog signalling", |s| s.conf_key()),
                want: match kind {
                    PortKind::Fxs => "FXO signalling (fxoks/fxols/fxogs: an FXS port)",
                    PortKind::Fxo => "FXS signalling (fxsks/fxsls/fxsgs: an FXO port)",
                },
                line: conf_line_for(kind, channo),
            });
        };
        let bad = || AnalogError::Io {
            chan: channo,
            op: "DAHDI_SET_BLOCKSIZE",
            err: format!("block of {block} octets (use 16-8192, a multiple of 8)"),
        };
        if !(16..=8192).contains(&block) || !block.is_multiple_of(8) {
            return Err(bad());
        }
        let bs = i32::try_from(block).map_err(|_| bad())?;
        ioctl::set_blocksize(fd, bs).map_err(io("DAHDI_SET_BLOCKSIZE"))?;
        let bi = dabi::BufferInfo {
            txbufpolicy: dabi::POLICY_IMMEDIATE,
            rxbufpolicy: dabi::POLICY_IMMEDIATE,
            numbufs: numbufs.clamp(2, dabi::MAX_NUM_BUFS),
            bufsize: bs,
            readbufs: 0,
            writebufs: 0,
        };
        ioctl::set_bufinfo(fd, &bi).map_err(io("DAHDI_SET_BUFINFO"))?;
        Ok(AnalogChannel {
            file,
            port: AnalogPort::new(ChanId(channo), sig),
            law: p.curlaw,
            block,
            events: VecDeque::new(),
        })
    }

    /// The port model (hook, ringing, polarity as commanded and reported).
    pub fn port(&self) -> &AnalogPort {
        &self.port
    }

    /// The DAHDI channel number.
    pub fn channo(&self) -> u16 {
        self.port.chan().0
    }

    /// The channel's law: `dahdi::abi::LAW_ALAW` or μ-law.
    pub fn is_alaw(&self) -> bool {
        self.law == dabi::LAW_ALAW
    }

    /// Octets per block.
    pub fn block(&self) -> usize {
        self.block
    }

    /// Applies `cmd` to the port model and the channel (see [`command`]).
    pub fn command(&mut self, cmd: &Command) -> Result<(), AnalogError> {
        command(self.file.as_fd(), &mut self.port, cmd)
    }

    fn fetch(&mut self) -> Result<(), AnalogError> {
        for _ in 0..64 {
            let code = ioctl::get_event(self.file.as_fd()).map_err(|e| AnalogError::Io {
                chan: self.channo(),
                op: "DAHDI_GETEVENT",
                err: e.to_string(),
            })?;
            if code == abi::event::NONE {
                break;
            }
            self.events.push_back(code);
        }
        Ok(())
    }

    /// The next hardware event, in order (raw code and its analog
    /// meaning; codes without one come back as `None` meanings so the
    /// caller can log them).
    pub fn poll_event(&mut self) -> Result<Option<(i32, Option<Event>)>, AnalogError> {
        if self.events.is_empty() {
            self.fetch()?;
        }
        let Some(code) = self.events.pop_front() else {
            return Ok(None);
        };
        let ev = Event::from_dahdi(code, self.port.kind());
        if let Some(e) = &ev {
            self.port.observe(e);
        }
        Ok(Some((code, ev)))
    }

    fn retrying<T>(
        &mut self,
        op: &'static str,
        mut f: impl FnMut(&mut File) -> io::Result<T>,
    ) -> Result<Option<T>, AnalogError> {
        for _ in 0..8 {
            match f(&mut self.file) {
                Ok(v) => return Ok(Some(v)),
                Err(e) if e.raw_os_error() == Some(dabi::ELAST) => self.fetch()?,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(None),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => {
                    return Err(AnalogError::Io {
                        chan: self.channo(),
                        op,
                        err: e.to_string(),
                    })
                }
            }
        }
        Ok(None)
    }

    /// Reads one block of law-coded samples into `out` (at least a block);
    /// `Ok(None)` when none is ready. Events met on the way are queued.
    pub fn read_block(&mut self, out: &mut [u8]) -> Result<Option<usize>, AnalogError> {
        let block = self.block;
        let Some(buf) = out.get_mut(..block) else {
            return Err(AnalogError::Io {
                chan: self.channo(),
                op: "read",
                err: format!("buffer of {} octets < block {block}", out.len()),
            });
        };
        self.retrying("read", |f| f.read(buf))
    }

    /// Writes one block (exactly the block size); `Ok(false)` when every
    /// transmit buffer is full.
    pub fn write_block(&mut self, block: &[u8]) -> Result<bool, AnalogError> {
        if block.len() != self.block {
            return Err(AnalogError::Io {
                chan: self.channo(),
                op: "write",
                err: format!("block of {} octets, want {}", block.len(), self.block),
            });
        }
        Ok(self.retrying("write", |f| f.write(block))?.is_some())
    }

    /// Drops audio queued in the kernel both ways (DAHDI_FLUSH).
    pub fn flush(&mut self) -> Result<(), AnalogError> {
        ioctl::flush(self.file.as_fd()).map_err(|e| AnalogError::Io {
            chan: self.channo(),
            op: "DAHDI_FLUSH",
            err: e.to_string(),
        })
    }
}

impl AsFd for AnalogChannel {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.file.as_fd()
    }
}

/// Read one queued event (`Ok(None)` when the queue is empty or the code has
/// no analog meaning) and update the port model.
pub fn poll_event(fd: BorrowedFd<'_>, port: &mut AnalogPort) -> Result<Option<Event>, AnalogError> {
    let code = ioctl::get_event(fd).map_err(|e| AnalogError::Io {
        chan: port.chan().0,
        op: "DAHDI_GETEVENT",
        err: e.to_string(),
    })?;
    let ev = Event::from_dahdi(code, port.kind());
    if let Some(e) = &ev {
        port.observe(e);
    }
    Ok(ev)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::analog::RingCadence;

    #[test]
    fn commands_map_to_hook_ioctls() {
        let hook = crate::dahdi::abi::req::HOOK;
        assert_eq!(ioctl_for(&Command::Ring), Some((hook, 5)));
        assert_eq!(ioctl_for(&Command::OffHook), Some((hook, 1)));
        assert_eq!(
            ioctl_for(&Command::SetPolarity(true)),
            Some((abi::req::SETPOLARITY, 1))
        );
    }

    #[test]
    fn on_a_non_dahdi_fd_errors_name_the_channel() {
        let f = std::fs::File::open("/dev/null").unwrap();
        let mut p = AnalogPort::new(ChanId(3), Signalling::FxoKs);
        let e = command(f.as_fd(), &mut p, &Command::Ring).unwrap_err();
        assert!(e.to_string().starts_with("channel 3:"), "{e}");
        assert!(poll_event(f.as_fd(), &mut p).is_err());
        // The model refuses a wrong-kind command before any ioctl.
        assert!(matches!(
            command(f.as_fd(), &mut p, &Command::OffHook),
            Err(AnalogError::WrongPortKind { .. })
        ));
        let e = command(f.as_fd(), &mut p, &Command::SetCadence(RingCadence::eu())).unwrap_err();
        assert!(e.to_string().contains("DAHDI_SETCADENCE"), "{e}");
        let e = command(f.as_fd(), &mut p, &Command::SetPolarity(true)).unwrap_err();
        assert!(e.to_string().contains("DAHDI_SETPOLARITY"), "{e}");
    }

    #[test]
    fn signalling_values_round_trip() {
        for s in Signalling::ALL {
            assert_eq!(signalling_of(s.dahdi_sig()), Some(s));
        }
        assert_eq!(signalling_of(crate::dahdi::abi::SIG_CLEAR), None);
        assert_eq!(conf_line_for(PortKind::Fxs, 63), "fxoks=63");
        assert_eq!(conf_line_for(PortKind::Fxo, 67), "fxsks=67");
    }

    #[test]
    fn open_errors_name_channel_and_step() {
        let e = AnalogChannel::open_at(Path::new("/nonexistent/chan"), 5, PortKind::Fxs, 160, 4)
            .unwrap_err();
        assert!(
            e.to_string().contains("channel 5: open: /nonexistent/chan"),
            "{e}"
        );
        let e =
            AnalogChannel::open_at(Path::new("/dev/null"), 5, PortKind::Fxs, 160, 4).unwrap_err();
        assert!(e.to_string().contains("channel 5: DAHDI_SPECIFY"), "{e}");
    }
}
