//! Analog port operations on a real DAHDI channel: hook, ring, polarity and
//! on-hook transfer through the `int`-argument ioctls of `dahdi::ioctl`, and
//! events through `DAHDI_GETEVENT` mapped by port kind. Needs a DAHDI analog
//! card (wctdm); without one the calls fail with the kernel's error, named.
//!
//! `DAHDI_SETCADENCE` takes a struct pointer, which only `dahdi::ioctl` may
//! pass; until it grows that call, rings use the tone zone's cadence.

use std::os::fd::BorrowedFd;

use super::{abi, AnalogError, AnalogPort, Command, Event};
use crate::dahdi::ioctl;

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
    let Some((req, arg)) = ioctl_for(cmd) else {
        return Ok(());
    };
    match ioctl::int_arg(fd, req, arg) {
        Ok(_) => Ok(()),
        // A non-blocking RING returns EINPROGRESS: ringing has started.
        Err(e) if e.raw_os_error() == Some(libc::EINPROGRESS) => Ok(()),
        Err(e) => Err(AnalogError::Io {
            chan: port.chan().0,
            op: "DAHDI_HOOK/SETPOLARITY",
            err: e.to_string(),
        }),
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
    use crate::analog::Signalling;
    use crate::ChanId;
    use std::os::fd::AsFd;

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
    }
}
