//! The DAHDI ioctl calls on an open channel or control file descriptor.
//!
//! The only module of the crate with unsafe code: each call passes a
//! pointer to a value of exactly the type and size the request number
//! encodes, and the pointer lives for the whole call.
#![allow(unsafe_code)]

use std::io;
use std::os::fd::{AsRawFd, BorrowedFd};

use super::abi::{self, req, BufferInfo, Params, SpanInfo};

/// `poll(2)` bits for [`poll`] (data to read, room to write, DAHDI event).
pub use libc::{POLLIN, POLLOUT, POLLPRI};

fn check(rc: libc::c_int) -> io::Result<()> {
    if rc < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(())
    }
}

/// An ioctl whose argument is an `int` passed by pointer (DAHDI convention).
pub fn int_arg(fd: BorrowedFd<'_>, request: u32, value: i32) -> io::Result<i32> {
    let mut v: libc::c_int = value;
    // SAFETY: `request` is one of the `_IOW/_IOR/_IOWR(.., int)` requests whose
    // argument is a pointer to a 4-octet int; `v` is a live, aligned c_int for
    // the duration of the call, and the kernel writes at most 4 octets to it.
    let rc = unsafe { libc::ioctl(fd.as_raw_fd(), request as _, &mut v as *mut libc::c_int) };
    check(rc)?;
    Ok(v)
}

/// DAHDI_SPECIFY: bind a `/dev/dahdi/channel` fd to channel `channo`.
pub fn specify(fd: BorrowedFd<'_>, channo: i32) -> io::Result<()> {
    int_arg(fd, req::SPECIFY, channo).map(|_| ())
}

/// DAHDI_SET_BLOCKSIZE.
pub fn set_blocksize(fd: BorrowedFd<'_>, octets: i32) -> io::Result<()> {
    int_arg(fd, req::SET_BLOCKSIZE, octets).map(|_| ())
}

/// DAHDI_GETEVENT: one queued event or 0.
pub fn get_event(fd: BorrowedFd<'_>) -> io::Result<i32> {
    int_arg(fd, req::GETEVENT, 0)
}

/// DAHDI_SETLAW.
pub fn set_law(fd: BorrowedFd<'_>, law: i32) -> io::Result<()> {
    int_arg(fd, req::SETLAW, law).map(|_| ())
}

/// DAHDI_FLUSH with `abi::FLUSH_*` bits.
pub fn flush(fd: BorrowedFd<'_>) -> io::Result<()> {
    int_arg(fd, req::FLUSH, abi::FLUSH_ALL).map(|_| ())
}

/// DAHDI_GET_PARAMS for the fd's channel.
pub fn get_params(fd: BorrowedFd<'_>) -> io::Result<Params> {
    let mut p = Params::default();
    // SAFETY: GET_PARAMS is _IOWR with size_of::<Params>() == 136 (checked in
    // abi's tests); `p` is a live #[repr(C)] Params the kernel may fill.
    let rc = unsafe { libc::ioctl(fd.as_raw_fd(), req::GET_PARAMS as _, &mut p as *mut Params) };
    check(rc)?;
    Ok(p)
}

/// DAHDI_SPANSTAT for span `spanno` (0 = this channel's span).
pub fn span_stat(fd: BorrowedFd<'_>, spanno: i32) -> io::Result<SpanInfo> {
    let mut s = SpanInfo {
        spanno,
        ..SpanInfo::default()
    };
    // SAFETY: SPANSTAT is _IOWR with size 314 == size_of::<SpanInfo>() (packed,
    // checked in abi's tests); `s` is live and writable for the call.
    let rc = unsafe { libc::ioctl(fd.as_raw_fd(), req::SPANSTAT as _, &mut s as *mut SpanInfo) };
    check(rc)?;
    Ok(s)
}

/// DAHDI_GET_BUFINFO / DAHDI_SET_BUFINFO.
pub fn set_bufinfo(fd: BorrowedFd<'_>, bi: &BufferInfo) -> io::Result<()> {
    let mut b = *bi;
    // SAFETY: SET_BUFINFO is _IOW with size 24 == size_of::<BufferInfo>(); the
    // kernel only reads `b`, which lives for the call.
    let rc = unsafe {
        libc::ioctl(
            fd.as_raw_fd(),
            req::SET_BUFINFO as _,
            &mut b as *mut BufferInfo,
        )
    };
    check(rc)
}

/// DAHDI_SETCADENCE: the ring cadence for later `DAHDI_HOOK` RINGs.
pub fn set_cadence(
    fd: BorrowedFd<'_>,
    cadence: &crate::analog::abi::RingCadence,
) -> io::Result<()> {
    let mut c = *cadence;
    // SAFETY: SETCADENCE is _IOW with size 64 == size_of::<RingCadence>()
    // (#[repr(C)] [i32; 16], checked against the header in
    // tests/analog_dahdi_abi.rs); the kernel only reads `c`, live for the call.
    let rc = unsafe {
        libc::ioctl(
            fd.as_raw_fd(),
            crate::analog::abi::req::SETCADENCE as _,
            &mut c as *mut crate::analog::abi::RingCadence,
        )
    };
    check(rc)
}

/// DAHDI_CHANNO: the channel number this fd is bound to.
pub fn chan_no(fd: BorrowedFd<'_>) -> io::Result<i32> {
    int_arg(fd, req::CHANNO, 0)
}

/// DAHDI_GET_BUFINFO: the fd's buffer policy, sizes and fill levels.
pub fn get_bufinfo(fd: BorrowedFd<'_>) -> io::Result<BufferInfo> {
    let mut b = BufferInfo::default();
    // SAFETY: GET_BUFINFO is _IOR with size 24 == size_of::<BufferInfo>()
    // (checked in abi's tests); `b` is a live, writable #[repr(C)] value.
    let rc = unsafe {
        libc::ioctl(
            fd.as_raw_fd(),
            req::GET_BUFINFO as _,
            &mut b as *mut BufferInfo,
        )
    };
    check(rc)?;
    Ok(b)
}

/// `poll(2)` over DAHDI (or any) descriptors: `fds` pairs a descriptor with
/// the `POLL*` bits wanted; returns the `revents` of each, in order.
/// `timeout_ms` < 0 waits forever. EINTR is reported as no readiness.
pub fn poll(fds: &[(BorrowedFd<'_>, i16)], timeout_ms: i32) -> io::Result<Vec<i16>> {
    let mut p: Vec<libc::pollfd> = fds
        .iter()
        .map(|(fd, events)| libc::pollfd {
            fd: fd.as_raw_fd(),
            events: *events,
            revents: 0,
        })
        .collect();
    // SAFETY: `p` is a live Vec of `p.len()` initialised pollfd structs that
    // the kernel reads and whose `revents` it writes; every fd is borrowed for
    // the call, so none can be closed meanwhile.
    let rc = unsafe { libc::poll(p.as_mut_ptr(), p.len() as libc::nfds_t, timeout_ms) };
    if rc < 0 {
        let e = io::Error::last_os_error();
        if e.kind() == io::ErrorKind::Interrupted {
            return Ok(vec![0; p.len()]);
        }
        return Err(e);
    }
    Ok(p.iter().map(|x| x.revents).collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::fd::AsFd;

    #[test]
    fn ioctl_on_a_non_dahdi_fd_fails_cleanly() {
        let f = std::fs::File::open("/dev/null").unwrap();
        let e = specify(f.as_fd(), 1).unwrap_err();
        assert!(e.raw_os_error().is_some());
        assert!(get_params(f.as_fd()).is_err());
        assert!(get_bufinfo(f.as_fd()).is_err());
        assert!(chan_no(f.as_fd()).is_err());
    }

    #[test]
    fn poll_reports_readiness_in_order() {
        let f = std::fs::File::open("/dev/null").unwrap();
        let g = std::fs::File::open("/dev/zero").unwrap();
        let r = poll(&[(f.as_fd(), libc::POLLIN), (g.as_fd(), libc::POLLIN)], 0).unwrap();
        assert_eq!(r.len(), 2);
        assert!(r.iter().all(|x| x & libc::POLLIN != 0));
        assert!(poll(&[], 0).unwrap().is_empty());
    }
}
