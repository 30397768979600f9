//! One AF_XDP socket with its own UMEM and the four rings shared with the
//! kernel: fill and completion (UMEM frame addresses), rx and tx (`xdp_desc`).
//!
//! Layout: a UMEM of [`FRAMES`] frames of [`FRAME_SIZE`] bytes; the first half
//! is lent to the kernel for receiving (through the fill ring, and returned to
//! it as soon as a received frame is copied out), the second half is a free
//! list for sending (a frame returns to it through the completion ring).
//!
//! Ring protocol (as in `<linux/if_xdp.h>` / libxdp): each ring has a
//! producer and a consumer index in shared memory. The side that produces
//! writes entries, then stores its index with `Release`; the other side loads
//! it with `Acquire` before reading entries. Indices run freely and wrap at
//! 2^32; ring sizes are powers of two.
//!
//! ABI check at startup: `XDP_MMAP_OFFSETS` must answer with the current
//! (flags-carrying) layout, else the kernel is refused.
#![allow(unsafe_code)]

use std::io;
use std::mem;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd};
use std::ptr;
use std::sync::atomic::{AtomicU32, Ordering};

/// Bytes per UMEM frame (one frame per packet; no multi-buffer).
pub const FRAME_SIZE: usize = 2048;
/// Bytes of XDP metadata [`Xsk::recv_meta`] reads before a frame.
pub const META_LEN: usize = super::offload::META_LEN;
/// Frames in a UMEM (32 MiB with 2 KiB frames).
pub const FRAMES: usize = 16384;
/// Entries per ring: the receive half of the UMEM, 8 ms at 1 Mpps, so a
/// consumer descheduled for a few ms (a loaded machine) loses nothing.
pub const RING: u32 = 8192;

/// How the socket ended up bound.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BindMode {
    /// Frames copied between kernel buffers and the UMEM.
    Copy,
    /// The driver DMA-s into the UMEM directly.
    ZeroCopy,
}

/// A mapped ring.
struct Ring {
    map: *mut u8,
    map_len: usize,
    producer: *const AtomicU32,
    consumer: *const AtomicU32,
    flags: *const AtomicU32,
    desc: *mut u8,
    mask: u32,
    /// Producer side: our producer index; consumer side: our consumer index.
    local: u32,
}

impl Ring {
    /// Map ring `pgoff` of `fd` with `entries` entries of `T`.
    fn map<T>(
        fd: BorrowedFd<'_>,
        off: &libc::xdp_ring_offset,
        pgoff: u64,
        entries: u32,
        producer_side: bool,
    ) -> io::Result<Ring> {
        let map_len = off.desc as usize + entries as usize * mem::size_of::<T>();
        // SAFETY: mapping a kernel-provided ring of an AF_XDP socket at its
        // documented page offset; the length covers exactly the descriptor
        // array the kernel sized with setsockopt. The result is checked.
        let map = unsafe {
            libc::mmap(
                ptr::null_mut(),
                map_len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_SHARED | libc::MAP_POPULATE,
                fd.as_raw_fd(),
                pgoff as libc::off_t,
            )
        };
        if map == libc::MAP_FAILED {
            return Err(io::Error::last_os_error());
        }
        let base = map.cast::<u8>();
        // SAFETY: the offsets come from XDP_MMAP_OFFSETS for this very ring
        // and lie inside the mapping; the kernel keeps the u32 indices at
        // 4-byte-aligned offsets, and AtomicU32 has u32's layout.
        let (producer, consumer, flags, desc) = unsafe {
            (
                base.add(off.producer as usize).cast::<AtomicU32>(),
                base.add(off.consumer as usize).cast::<AtomicU32>(),
                base.add(off.flags as usize).cast::<AtomicU32>(),
                base.add(off.desc as usize),
            )
        };
        let mut r = Ring {
            map: base,
            map_len,
            producer,
            consumer,
            flags,
            desc,
            mask: entries - 1,
            local: 0,
        };
        r.local = if producer_side {
            r.prod().load(Ordering::Relaxed)
        } else {
            r.cons().load(Ordering::Relaxed)
        };
        Ok(r)
    }

    fn prod(&self) -> &AtomicU32 {
        // SAFETY: points into our live mapping (see `map`).
        unsafe { &*self.producer }
    }
    fn cons(&self) -> &AtomicU32 {
        // SAFETY: points into our live mapping (see `map`).
        unsafe { &*self.consumer }
    }
    fn needs_wakeup(&self) -> bool {
        // SAFETY: points into our live mapping (see `map`).
        let f = unsafe { &*self.flags };
        f.load(Ordering::Relaxed) & libc::XDP_RING_NEED_WAKEUP != 0
    }

    /// Producer side: free entries.
    fn free(&self) -> u32 {
        let cons = self.cons().load(Ordering::Acquire);
        (self.mask + 1) - self.local.wrapping_sub(cons)
    }
    /// Consumer side: entries ready.
    fn ready(&self) -> u32 {
        self.prod().load(Ordering::Acquire).wrapping_sub(self.local)
    }

    /// Pointer to entry `idx` of type `T`.
    fn slot<T>(&self, idx: u32) -> *mut T {
        // SAFETY: `idx & mask` < entries, and the descriptor array holds
        // `entries` values of T (as mapped).
        unsafe { self.desc.cast::<T>().add((idx & self.mask) as usize) }
    }
}

impl Drop for Ring {
    fn drop(&mut self) {
        // SAFETY: `map`/`map_len` are exactly what mmap returned; no
        // reference into the ring outlives the Ring.
        unsafe {
            libc::munmap(self.map.cast(), self.map_len);
        }
    }
}

/// The UMEM area (anonymous memory registered with the socket).
struct Umem {
    base: *mut u8,
    len: usize,
}

impl Drop for Umem {
    fn drop(&mut self) {
        // SAFETY: exactly the mapping made in `Xsk::open`; the socket that
        // registered it is closed before (field order in `Xsk`).
        unsafe {
            libc::munmap(self.base.cast(), self.len);
        }
    }
}

/// An AF_XDP socket bound to one queue of one interface.
pub struct Xsk {
    fill: Ring,
    comp: Ring,
    rx: Ring,
    tx: Ring,
    /// Free send frames (UMEM addresses).
    tx_free: Vec<u64>,
    /// Descriptors written to the tx ring but not yet published.
    tx_pending: u32,
    fd: OwnedFd,
    umem: Umem,
    pub mode: BindMode,
}

fn setsockopt<T>(fd: BorrowedFd<'_>, opt: libc::c_int, v: &T) -> io::Result<()> {
    // SAFETY: `v` is a live value of the type the option expects, and the
    // length passed is its size.
    let r = unsafe {
        libc::setsockopt(
            fd.as_raw_fd(),
            libc::SOL_XDP,
            opt,
            ptr::from_ref(v).cast(),
            mem::size_of::<T>() as libc::socklen_t,
        )
    };
    if r < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

fn sock_int(fd: BorrowedFd<'_>, opt: libc::c_int, v: libc::c_int) -> io::Result<()> {
    // SAFETY: `v` is a live c_int and the length is its size.
    let r = unsafe {
        libc::setsockopt(
            fd.as_raw_fd(),
            libc::SOL_SOCKET,
            opt,
            ptr::from_ref(&v).cast(),
            mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    if r < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// `SO_PREFER_BUSY_POLL` and `SO_BUSY_POLL_BUDGET` (not in every libc).
const SO_PREFER_BUSY_POLL: libc::c_int = 69;
const SO_BUSY_POLL_BUDGET: libc::c_int = 70;

/// A new AF_XDP socket (used by `probe` too).
pub fn socket() -> io::Result<OwnedFd> {
    // SAFETY: socket() takes no pointers; constants are valid.
    let fd = unsafe { libc::socket(libc::AF_XDP, libc::SOCK_RAW | libc::SOCK_CLOEXEC, 0) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: a fresh fd owned by no one else.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

impl Xsk {
    /// Create the socket and UMEM and bind to `ifindex`/`queue`, trying
    /// zero-copy first when `zero_copy` is set and falling back to copy mode.
    /// With `busy_poll`, ask for preferred busy polling (best effort).
    pub fn open(ifindex: u32, queue: u32, zero_copy: bool, busy_poll: bool) -> io::Result<Xsk> {
        let len = FRAMES * FRAME_SIZE;
        // SAFETY: anonymous private mapping, no fd; checked below.
        let base = unsafe {
            libc::mmap(
                ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_POPULATE,
                -1,
                0,
            )
        };
        if base == libc::MAP_FAILED {
            return Err(io::Error::last_os_error());
        }
        let umem = Umem {
            base: base.cast(),
            len,
        };
        let fd = socket()?;
        let reg = libc::xdp_umem_reg {
            addr: umem.base as u64,
            len: len as u64,
            chunk_size: FRAME_SIZE as u32,
            headroom: 0,
            flags: 0,
            tx_metadata_len: 0,
        };
        setsockopt(fd.as_fd(), libc::XDP_UMEM_REG, &reg)?;
        setsockopt(fd.as_fd(), libc::XDP_UMEM_FILL_RING, &RING)?;
        setsockopt(fd.as_fd(), libc::XDP_UMEM_COMPLETION_RING, &RING)?;
        setsockopt(fd.as_fd(), libc::XDP_RX_RING, &RING)?;
        setsockopt(fd.as_fd(), libc::XDP_TX_RING, &RING)?;

        // SAFETY: xdp_mmap_offsets is plain integers; zero is valid.
        let mut off: libc::xdp_mmap_offsets = unsafe { mem::zeroed() };
        let mut olen = mem::size_of::<libc::xdp_mmap_offsets>() as libc::socklen_t;
        // SAFETY: `off` is live and writable for `olen` bytes; the kernel
        // writes at most that and reports how much it wrote.
        let r = unsafe {
            libc::getsockopt(
                fd.as_raw_fd(),
                libc::SOL_XDP,
                libc::XDP_MMAP_OFFSETS,
                ptr::addr_of_mut!(off).cast(),
                &mut olen,
            )
        };
        if r < 0 {
            return Err(io::Error::last_os_error());
        }
        if olen as usize != mem::size_of::<libc::xdp_mmap_offsets>() {
            return Err(io::Error::new(
                io::ErrorKind::Unsupported,
                format!(
                    "AF_XDP ring layout of this kernel ({olen} bytes) is not the expected {}",
                    mem::size_of::<libc::xdp_mmap_offsets>()
                ),
            ));
        }
        let desc = mem::size_of::<libc::xdp_desc>();
        if desc != 16 {
            return Err(io::Error::new(
                io::ErrorKind::Unsupported,
                "xdp_desc is not 16 bytes",
            ));
        }
        let rx = Ring::map::<libc::xdp_desc>(
            fd.as_fd(),
            &off.rx,
            libc::XDP_PGOFF_RX_RING as u64,
            RING,
            false,
        )?;
        let tx = Ring::map::<libc::xdp_desc>(
            fd.as_fd(),
            &off.tx,
            libc::XDP_PGOFF_TX_RING as u64,
            RING,
            true,
        )?;
        let fill = Ring::map::<u64>(
            fd.as_fd(),
            &off.fr,
            libc::XDP_UMEM_PGOFF_FILL_RING,
            RING,
            true,
        )?;
        let comp = Ring::map::<u64>(
            fd.as_fd(),
            &off.cr,
            libc::XDP_UMEM_PGOFF_COMPLETION_RING,
            RING,
            false,
        )?;

        if busy_poll {
            let _ = sock_int(fd.as_fd(), SO_PREFER_BUSY_POLL, 1);
            let _ = sock_int(fd.as_fd(), libc::SO_BUSY_POLL, 20);
            let _ = sock_int(fd.as_fd(), SO_BUSY_POLL_BUDGET, 64);
        }

        let mut mode = BindMode::Copy;
        let bind = |flags: u16| -> io::Result<()> {
            let sa = libc::sockaddr_xdp {
                sxdp_family: libc::AF_XDP as u16,
                sxdp_flags: flags | libc::XDP_USE_NEED_WAKEUP,
                sxdp_ifindex: ifindex,
                sxdp_queue_id: queue,
                sxdp_shared_umem_fd: 0,
            };
            // SAFETY: `sa` is a live sockaddr_xdp and the length is its size.
            let r = unsafe {
                libc::bind(
                    fd.as_raw_fd(),
                    ptr::addr_of!(sa).cast(),
                    mem::size_of::<libc::sockaddr_xdp>() as libc::socklen_t,
                )
            };
            if r < 0 {
                return Err(io::Error::last_os_error());
            }
            Ok(())
        };
        if zero_copy && bind(libc::XDP_ZEROCOPY).is_ok() {
            mode = BindMode::ZeroCopy;
        } else {
            bind(libc::XDP_COPY)?;
        }

        let half = (FRAMES / 2) as u64;
        let mut x = Xsk {
            fill,
            comp,
            rx,
            tx,
            tx_free: (half..FRAMES as u64)
                .map(|i| i * FRAME_SIZE as u64)
                .collect(),
            tx_pending: 0,
            fd,
            umem,
            mode,
        };
        // Lend the receive half to the kernel.
        let n = (half as u32).min(RING);
        let at = x.fill.local;
        for i in 0..n {
            // SAFETY: the fill ring is empty (fresh socket) and `n` <= its
            // size, so these entries are ours to write.
            unsafe {
                x.fill
                    .slot::<u64>(at.wrapping_add(i))
                    .write(u64::from(i) * FRAME_SIZE as u64)
            };
        }
        x.fill.local = at.wrapping_add(n);
        x.fill.prod().store(x.fill.local, Ordering::Release);
        Ok(x)
    }

    /// Bytes of UMEM frame `addr` (`len` of them), if inside the UMEM.
    fn frame(&self, addr: u64, len: usize) -> Option<&[u8]> {
        let a = usize::try_from(addr).ok()?;
        if a.checked_add(len)? > self.umem.len || len > FRAME_SIZE {
            return None;
        }
        // SAFETY: [a, a+len) lies inside the UMEM (checked), and the frame
        // is ours: the kernel handed it over through the rx ring (or it is a
        // free tx frame), so it does not write it meanwhile.
        Some(unsafe { std::slice::from_raw_parts(self.umem.base.add(a), len) })
    }

    /// The [`META_LEN`] bytes before received frame `addr` (inside its
    /// chunk), cleared; zeros if there is no room.
    fn take_meta(&mut self, addr: u64) -> [u8; META_LEN] {
        let mut m = [0; META_LEN];
        let Ok(a) = usize::try_from(addr) else {
            return m;
        };
        if a % FRAME_SIZE < META_LEN || a > self.umem.len {
            return m;
        }
        // SAFETY: [a - META_LEN, a) lies inside the UMEM and inside the
        // frame's own chunk (checked), which the kernel handed over through
        // the rx ring and does not touch until it is back on the fill ring.
        unsafe {
            let p = self.umem.base.add(a - META_LEN);
            ptr::copy_nonoverlapping(p, m.as_mut_ptr(), META_LEN);
            ptr::write_bytes(p, 0, META_LEN);
        }
        m
    }

    fn frame_mut(&mut self, addr: u64) -> Option<&mut [u8]> {
        let a = usize::try_from(addr).ok()?;
        if a.checked_add(FRAME_SIZE)? > self.umem.len {
            return None;
        }
        // SAFETY: inside the UMEM (checked); a free tx frame belongs to us
        // alone until it is submitted on the tx ring.
        Some(unsafe { std::slice::from_raw_parts_mut(self.umem.base.add(a), FRAME_SIZE) })
    }

    /// Receive up to `max` frames, calling `each` with the bytes of every one
    /// (the frame is given back to the kernel right after). Returns how many.
    pub fn recv(&mut self, max: usize, mut each: impl FnMut(&[u8])) -> usize {
        self.recv_meta(max, |f, _| each(f))
    }

    /// As [`Xsk::recv`], also giving the [`META_LEN`] bytes just before each
    /// frame (where XDP metadata of that length sits; zeros or leftovers
    /// otherwise: they are cleared after each frame, so a frame without
    /// metadata shows zeros).
    pub fn recv_meta(&mut self, max: usize, mut each: impl FnMut(&[u8], [u8; META_LEN])) -> usize {
        let ready = self.rx.ready().min(u32::try_from(max).unwrap_or(u32::MAX));
        if ready == 0 {
            if self.fill.needs_wakeup() {
                self.kick_rx();
            }
            return 0;
        }
        // The fill ring has room: every rx frame came out of it.
        let start = self.rx.local;
        let fill_at = self.fill.local;
        for i in 0..ready {
            // SAFETY: entries local..local+ready were published by the
            // kernel (Acquire in `ready`) and are not reused until we
            // advance the consumer index below.
            let d = unsafe { self.rx.slot::<libc::xdp_desc>(start.wrapping_add(i)).read() };
            let meta = self.take_meta(d.addr);
            if let Some(f) = self.frame(d.addr, d.len as usize) {
                each(f, meta);
            }
            let base = d.addr - d.addr % FRAME_SIZE as u64;
            // SAFETY: the fill ring holds at most RING entries and only the
            // receive half (<= RING) of frames circulates through it, so this
            // entry is free.
            unsafe { self.fill.slot::<u64>(fill_at.wrapping_add(i)).write(base) };
        }
        self.rx.local = start.wrapping_add(ready);
        self.rx.cons().store(self.rx.local, Ordering::Release);
        self.fill.local = fill_at.wrapping_add(ready);
        self.fill.prod().store(self.fill.local, Ordering::Release);
        if self.fill.needs_wakeup() {
            self.kick_rx();
        }
        ready as usize
    }

    fn kick_rx(&self) {
        // SAFETY: a zero-length recvfrom with null buffers only wakes the
        // kernel side of the socket.
        unsafe {
            libc::recvfrom(
                self.fd.as_raw_fd(),
                ptr::null_mut(),
                0,
                libc::MSG_DONTWAIT,
                ptr::null_mut(),
                ptr::null_mut(),
            );
        }
    }

    /// Take back frames the kernel finished sending.
    pub fn reclaim(&mut self) {
        let n = self.comp.ready();
        for i in 0..n {
            // SAFETY: published by the kernel (Acquire in `ready`), not yet
            // released back.
            let addr = unsafe {
                self.comp
                    .slot::<u64>(self.comp.local.wrapping_add(i))
                    .read()
            };
            self.tx_free.push(addr);
        }
        self.comp.local = self.comp.local.wrapping_add(n);
        self.comp.cons().store(self.comp.local, Ordering::Release);
    }

    /// Build a frame with `fill` (given the whole frame buffer; returns the
    /// length, or None to abandon) and queue it for sending. Returns false
    /// if no frame or ring slot is free or `fill` declined.
    pub fn push_tx(&mut self, fill: impl FnOnce(&mut [u8]) -> Option<usize>) -> bool {
        if self.tx.free() <= self.tx_pending {
            return false;
        }
        let Some(addr) = self.tx_free.pop() else {
            return false;
        };
        let Some(buf) = self.frame_mut(addr) else {
            return false;
        };
        let Some(len) = fill(buf).filter(|&l| l <= FRAME_SIZE) else {
            self.tx_free.push(addr);
            return false;
        };
        let d = libc::xdp_desc {
            addr,
            len: len as u32,
            options: 0,
        };
        // SAFETY: `free() > pending`, so this entry is not visible to the
        // kernel until we publish the producer index in `flush_tx`.
        unsafe {
            self.tx
                .slot::<libc::xdp_desc>(self.tx.local.wrapping_add(self.tx_pending))
                .write(d);
        }
        self.tx_pending += 1;
        true
    }

    /// Publish queued frames and wake the kernel to send them.
    pub fn flush_tx(&mut self) {
        if self.tx_pending == 0 {
            return;
        }
        self.tx.local = self.tx.local.wrapping_add(self.tx_pending);
        self.tx_pending = 0;
        self.tx.prod().store(self.tx.local, Ordering::Release);
        if self.mode == BindMode::Copy {
            // One wake-up sends at most a kernel batch (32 frames): go on
            // while that makes progress, so nothing waits for the next send.
            let mut left = self.tx_queued();
            while left > 0 {
                self.kick_tx();
                let now = self.tx_queued();
                if now >= left {
                    break;
                }
                left = now;
            }
        } else if self.tx.needs_wakeup() {
            self.kick_tx();
        }
    }

    /// Tell the kernel to process the tx ring (again). In copy mode one
    /// wake-up sends a bounded number of frames, so a sender that queued
    /// more than that, or whose wake-up met a full device queue, kicks
    /// again until the ring drains.
    pub fn kick_tx(&self) {
        // SAFETY: a zero-length sendto with null buffer/address only tells
        // the kernel to process the tx ring.
        unsafe {
            libc::sendto(
                self.fd.as_raw_fd(),
                ptr::null(),
                0,
                libc::MSG_DONTWAIT,
                ptr::null(),
                0,
            );
        }
    }

    /// Frames free for sending (tests and stats).
    pub fn tx_free(&self) -> usize {
        self.tx_free.len()
    }

    /// Frames published on the tx ring that the kernel has not taken yet.
    pub fn tx_queued(&self) -> u32 {
        self.tx
            .local
            .wrapping_sub(self.tx.cons().load(Ordering::Acquire))
    }
}

impl AsFd for Xsk {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }
}
