//! The in-kernel fast path's table: one entry per local port and family,
//! in a `BPF_MAP_TYPE_ARRAY` the XDP program reads and userspace maps into
//! its own memory (`BPF_F_MMAPABLE`), so installing a stream and reading
//! its counters are plain memory accesses, no syscall.
//!
//! An entry describes one relayed RTP stream arriving on a local port: the
//! latched source it must come from, the SSRC it must carry, and everything
//! the program writes into the frame before `XDP_TX`: Ethernet addresses,
//! the IPv4/IPv6 header (from a template, as [`super::frame::emit`] builds
//! it: TTL/hop limit 64, DF, id 0), UDP ports, SSRC, the sequence number
//! and timestamp deltas. Checksums: the IPv4 header sum of the template
//! without its length field is precomputed here, and so is the output UDP
//! pseudo header's sum: the program computes the UDP checksum afresh over
//! the rewritten datagram (an incoming frame's checksum may be unfinished,
//! `CHECKSUM_PARTIAL` from a local sender over veth).
//!
//! Hand-over (order kept per stream): an entry is off, *pending* or
//! *enabled*, in the low two bits of its state word; the upper 30 bits count
//! tickets. Every frame that matches an entry that is not off takes a ticket
//! with one atomic fetch-add on that word, and the state it read in the same
//! operation decides it: enabled, forwarded in the kernel; pending, sent to
//! the worker with the ticket in its XDP metadata ([`META_MAGIC`], ticket).
//! [`OffloadMap::install`] makes an entry pending. The worker, at the start
//! of each receive (so after it sent everything it received before),
//! promotes the entry with a compare-and-swap from "pending, next ticket
//! t + 1" to "enabled, t + 1", where t is the last ticket it saw
//! ([`OffloadMap::promote`]). The swap succeeds only if no frame took a
//! ticket since t, so every frame of the stream that went to the worker was
//! received (the rx ring is FIFO) and sent by it, or was dropped, before the
//! first frame the kernel forwards; a failed swap waits for the next ticket.
//! A frame that took no ticket (its metadata could not be added) only
//! delays the swap. Withdrawing ([`OffloadMap::disable`]) clears the state
//! bits atomically: from then on every frame goes to the worker; the
//! counter is kept, so tickets stay monotonic per entry across hand-overs
//! (a ticket seen late from an earlier hand-over cannot match a new one).
//!
//! The program writes back the last sequence number and timestamp it sent
//! and counts packets and bytes (atomic adds); the counters only grow, the
//! backend keeps the last values it read per entry.
//!
//! [`encode`] is pure; [`OffloadMap`] owns the map and its mapping.
#![allow(unsafe_code)]

use std::io;
use std::net::{IpAddr, SocketAddr};
use std::ops::RangeInclusive;
use std::os::fd::{AsRawFd, BorrowedFd, OwnedFd};
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};

use super::frame::{Mac, TTL};

/// Bytes per entry (the map's value size).
pub const ENTRY_SIZE: usize = 128;

/// Byte offsets of the entry's fields, as the program reads them. `raw`
/// fields hold the bytes as they appear in the frame; the others are
/// host-order `u32`/`u64`.
pub mod off {
    /// u32 state word: bits 0-1 the state ([`super::PENDING`],
    /// [`super::ENABLED`], 0 = off), bits 2-31 the ticket counter.
    pub const FLAGS: i16 = 0;
    /// u32 (low 16 bits): added to the sequence number.
    pub const SEQ_DELTA: i16 = 4;
    /// u32: added to the timestamp.
    pub const TS_DELTA: i16 = 8;
    /// u32: one's-complement sum of the output UDP pseudo header without
    /// its length, over little-endian 16-bit loads (as the program sums).
    pub const PSEUDO_SUM: i16 = 12;
    /// raw 2 bytes: the UDP source port the stream must come from.
    pub const MATCH_PORT: i16 = 16;
    /// raw 4 bytes: the SSRC the stream must carry.
    pub const IN_SSRC: i16 = 20;
    /// raw 4 bytes: the SSRC written.
    pub const OUT_SSRC: i16 = 24;
    /// u32: IPv4 header sum of the template without the total length.
    pub const IP4_SUM: i16 = 28;
    /// raw 16 bytes (IPv4: the first 4): the source address it must come from.
    pub const MATCH_IP: i16 = 32;
    /// raw 12 bytes: Ethernet destination and source.
    pub const ETH: i16 = 48;
    /// raw 4 bytes: UDP source and destination ports written.
    pub const PORTS: i16 = 60;
    /// raw 20 (IPv4) or 40 (IPv6) bytes: the IP header template.
    pub const IP_HDR: i16 = 64;
    /// u32, written by the program: last sequence number sent.
    pub const LAST_SEQ: i16 = 104;
    /// u32, written by the program: last timestamp sent.
    pub const LAST_TS: i16 = 108;
    /// u64, atomic: packets forwarded.
    pub const PACKETS: i16 = 112;
    /// u64, atomic: RTP bytes (UDP payload) forwarded.
    pub const BYTES: i16 = 120;
}

/// State bits of an entry being handed over to the kernel.
pub const PENDING: u32 = 2;
/// State bits of an entry the kernel forwards.
pub const ENABLED: u32 = 1;
/// State bits mask.
const STATE: u32 = 3;
/// What one ticket adds to the state word.
pub const TICKET: i32 = 4;
/// Bytes of XDP metadata on a pending frame: [`META_MAGIC`], then the
/// ticket (both host order).
pub const META_LEN: usize = 8;
/// First word of a ticket's metadata.
pub const META_MAGIC: u32 = 0x7464_6d31;

/// The ticket in the `META_LEN` bytes before a received frame, if they
/// hold one.
pub fn meta_ticket(meta: &[u8; META_LEN]) -> Option<u32> {
    let magic = u32::from_ne_bytes([meta[0], meta[1], meta[2], meta[3]]);
    (magic == META_MAGIC).then(|| u32::from_ne_bytes([meta[4], meta[5], meta[6], meta[7]]))
}

/// Everything one entry needs, with all addresses resolved.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rule {
    /// Latched source of the stream.
    pub src: SocketAddr,
    /// Local address it arrives on (the media address, not unspecified).
    pub local: SocketAddr,
    /// Local address it leaves from.
    pub out_src: SocketAddr,
    /// Where it goes.
    pub out_dst: SocketAddr,
    pub src_mac: Mac,
    pub dst_mac: Mac,
    pub in_ssrc: u32,
    pub out_ssrc: u32,
    pub seq_delta: u16,
    pub ts_delta: u32,
}

/// Why a rule cannot be expressed as an entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum RuleError {
    /// The four addresses are not all of one family.
    #[error("offload rule mixes IPv4 and IPv6")]
    Family,
    /// The local port is outside the table.
    #[error("offload port {0} outside the RTP port range")]
    Port(u16),
}

fn ip_bytes(ip: IpAddr) -> ([u8; 16], usize) {
    let mut b = [0u8; 16];
    match ip {
        IpAddr::V4(a) => {
            b[..4].copy_from_slice(&a.octets());
            (b, 4)
        }
        IpAddr::V6(a) => (a.octets(), 16),
    }
}

/// One's-complement sum of big-endian words.
fn sum_words(b: &[u8], mut acc: u64) -> u64 {
    for w in b.chunks_exact(2) {
        acc += u64::from(u16::from_be_bytes([w[0], w[1]]));
    }
    acc
}

fn fold(mut acc: u64) -> u64 {
    while acc >> 16 != 0 {
        acc = (acc & 0xffff) + (acc >> 16);
    }
    acc
}

/// One's-complement sum of little-endian words (the program's loads).
fn sum_le_words(b: &[u8], mut acc: u64) -> u64 {
    for w in b.chunks_exact(2) {
        acc += u64::from(u16::from_le_bytes([w[0], w[1]]));
    }
    acc
}

/// The entry for `rule` (its state word is left to [`OffloadMap::install`]).
pub fn encode(rule: &Rule) -> Result<[u8; ENTRY_SIZE], RuleError> {
    let v4 = rule.src.is_ipv4();
    if [rule.local, rule.out_src, rule.out_dst]
        .iter()
        .any(|a| a.is_ipv4() != v4)
    {
        return Err(RuleError::Family);
    }
    let mut e = [0u8; ENTRY_SIZE];
    let put32 = |e: &mut [u8; ENTRY_SIZE], at: i16, v: u32| {
        e[at as usize..at as usize + 4].copy_from_slice(&v.to_ne_bytes());
    };
    let raw = |e: &mut [u8; ENTRY_SIZE], at: i16, b: &[u8]| {
        e[at as usize..at as usize + b.len()].copy_from_slice(b);
    };
    put32(&mut e, off::SEQ_DELTA, u32::from(rule.seq_delta));
    put32(&mut e, off::TS_DELTA, rule.ts_delta);
    raw(&mut e, off::MATCH_PORT, &rule.src.port().to_be_bytes());
    raw(&mut e, off::IN_SSRC, &rule.in_ssrc.to_be_bytes());
    raw(&mut e, off::OUT_SSRC, &rule.out_ssrc.to_be_bytes());
    let (src_ip, n) = ip_bytes(rule.src.ip());
    raw(&mut e, off::MATCH_IP, &src_ip[..n]);
    raw(&mut e, off::ETH, &rule.dst_mac.0);
    raw(&mut e, off::ETH + 6, &rule.src_mac.0);
    let mut ports = [0u8; 4];
    ports[..2].copy_from_slice(&rule.out_src.port().to_be_bytes());
    ports[2..].copy_from_slice(&rule.out_dst.port().to_be_bytes());
    raw(&mut e, off::PORTS, &ports);

    let (out_src_ip, _) = ip_bytes(rule.out_src.ip());
    let (out_dst_ip, _) = ip_bytes(rule.out_dst.ip());
    // Pseudo header: addresses and protocol (bytes 0, 17); the program adds
    // the length.
    let p = sum_le_words(&out_src_ip[..n], sum_le_words(&out_dst_ip[..n], 0));
    let p = sum_le_words(&[0, 17], p);
    put32(&mut e, off::PSEUDO_SUM, fold(p) as u32);

    let hdr = off::IP_HDR as usize;
    if v4 {
        let ip = &mut e[hdr..hdr + 20];
        ip[0] = 0x45;
        ip[6] = 0x40; // DF
        ip[8] = TTL;
        ip[9] = 17;
        ip[12..16].copy_from_slice(&out_src_ip[..4]);
        ip[16..20].copy_from_slice(&out_dst_ip[..4]);
        let s = sum_words(ip, 0);
        put32(&mut e, off::IP4_SUM, fold(s) as u32);
    } else {
        let ip = &mut e[hdr..hdr + 40];
        ip[0] = 0x60;
        ip[6] = 17;
        ip[7] = TTL;
        ip[8..24].copy_from_slice(&out_src_ip);
        ip[24..40].copy_from_slice(&out_dst_ip);
    }
    Ok(e)
}

/// Entry index of local `port` in family `v6` for the table of `ports`.
pub fn index(ports: &RangeInclusive<u16>, v6: bool, port: u16) -> Result<u32, RuleError> {
    if !ports.contains(&port) {
        return Err(RuleError::Port(port));
    }
    let n = u32::from(*ports.end()) - u32::from(*ports.start()) + 1;
    Ok(u32::from(port - ports.start()) + if v6 { n } else { 0 })
}

/// Counters and last values of one entry.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct EntryCounts {
    pub packets: u64,
    pub bytes: u64,
    pub last_seq: u16,
    pub last_ts: u32,
}

/// The offload table: the map and its memory mapping.
pub struct OffloadMap {
    fd: OwnedFd,
    base: *mut u8,
    len: usize,
    entries: u32,
    ports: RangeInclusive<u16>,
}

// SAFETY: the mapping is shared memory owned by this value for its whole
// life; every access goes through `entry_ptr` with a bounds check. Workers
// use disjoint entries (each owns its ports); the fields the program writes
// concurrently (counters, last values) and the enable flag are accessed
// atomically; the rest is written only while the entry is disabled.
unsafe impl Send for OffloadMap {}
// SAFETY: as for Send: shared access is to disjoint entries or atomics.
unsafe impl Sync for OffloadMap {}

impl std::fmt::Debug for OffloadMap {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OffloadMap")
            .field("entries", &self.entries)
            .field("ports", &self.ports)
            .finish_non_exhaustive()
    }
}

impl OffloadMap {
    /// Create the table for local ports `ports` (both families) and map it.
    pub fn create(ports: RangeInclusive<u16>) -> io::Result<OffloadMap> {
        let n = u32::from(*ports.end()).saturating_sub(u32::from(*ports.start())) + 1;
        let entries = 2 * n;
        let fd = super::bpf::create_mmapable_array(ENTRY_SIZE as u32, entries, "tandem_offload")?;
        let page = 4096usize;
        let len = (entries as usize * ENTRY_SIZE).div_ceil(page) * page;
        // SAFETY: mapping a fresh BPF array map fd created with
        // BPF_F_MMAPABLE, shared read/write, at a kernel-chosen address; the
        // length covers the whole value area rounded to pages.
        let base = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_SHARED,
                fd.as_raw_fd(),
                0,
            )
        };
        if base == libc::MAP_FAILED {
            return Err(io::Error::last_os_error());
        }
        Ok(OffloadMap {
            fd,
            base: base.cast(),
            len,
            entries,
            ports,
        })
    }

    /// The map fd (for the program).
    pub fn fd(&self) -> BorrowedFd<'_> {
        use std::os::fd::AsFd;
        self.fd.as_fd()
    }

    /// The local port range the table covers.
    pub fn ports(&self) -> &RangeInclusive<u16> {
        &self.ports
    }

    fn entry_ptr(&self, index: u32) -> Option<*mut u8> {
        if index >= self.entries {
            return None;
        }
        // SAFETY: index < entries, so the offset is inside the mapping.
        Some(unsafe { self.base.add(index as usize * ENTRY_SIZE) })
    }

    fn atomic32(&self, index: u32, at: i16) -> Option<&AtomicU32> {
        let p = self.entry_ptr(index)?;
        // SAFETY: inside the entry, 4-aligned (entries are 128-byte aligned
        // in a page-aligned mapping, offsets are multiples of 4), and the
        // mapping lives as long as `self`.
        Some(unsafe { &*p.add(at as usize).cast::<AtomicU32>() })
    }

    fn atomic64(&self, index: u32, at: i16) -> Option<&AtomicU64> {
        let p = self.entry_ptr(index)?;
        // SAFETY: as atomic32, with 8-aligned offsets.
        Some(unsafe { &*p.add(at as usize).cast::<AtomicU64>() })
    }

    /// Write `entry` at `index` and make it pending (see the module docs;
    /// [`OffloadMap::promote`] or [`OffloadMap::enable`] turn it on). The
    /// counters, last values and ticket counter of the slot are kept.
    /// Returns false for a bad index.
    pub fn install(&self, index: u32, entry: &[u8; ENTRY_SIZE]) -> bool {
        let (Some(p), Some(state)) = (self.entry_ptr(index), self.atomic32(index, off::FLAGS))
        else {
            return false;
        };
        state.fetch_and(!STATE, Ordering::AcqRel);
        let body = 4..off::LAST_SEQ as usize;
        // SAFETY: the range lies inside the entry; the program does not
        // write these bytes. The state is off while they change, so only a
        // frame that took its ticket just before (enabled) may read a mix,
        // for the one frame in flight.
        unsafe {
            std::ptr::copy_nonoverlapping(
                entry[body.clone()].as_ptr(),
                p.add(body.start),
                body.len(),
            );
        }
        state.fetch_or(PENDING, Ordering::AcqRel);
        true
    }

    /// Promote the pending entry at `index` to enabled if `ticket` is the
    /// last ticket taken on it. Returns whether it is enabled now.
    pub fn promote(&self, index: u32, ticket: u32) -> bool {
        let Some(state) = self.atomic32(index, off::FLAGS) else {
            return false;
        };
        let next = ticket.wrapping_add(1) << 2;
        state
            .compare_exchange(
                next | PENDING,
                next | ENABLED,
                Ordering::AcqRel,
                Ordering::Acquire,
            )
            .is_ok()
    }

    /// Enable the entry at `index` unconditionally (no frame of its stream
    /// may be in flight to the worker: tests, fresh streams).
    pub fn enable(&self, index: u32) {
        if let Some(s) = self.atomic32(index, off::FLAGS) {
            s.fetch_and(!STATE, Ordering::AcqRel);
            s.fetch_or(ENABLED, Ordering::AcqRel);
        }
    }

    /// Turn the entry at `index` off (its ticket counter is kept).
    pub fn disable(&self, index: u32) {
        if let Some(s) = self.atomic32(index, off::FLAGS) {
            s.fetch_and(!STATE, Ordering::AcqRel);
        }
    }

    /// Whether the entry at `index` is enabled (forwarded in the kernel).
    pub fn enabled(&self, index: u32) -> bool {
        self.state(index) == ENABLED
    }

    /// Whether the entry at `index` is pending (being handed over).
    pub fn pending(&self, index: u32) -> bool {
        self.state(index) == PENDING
    }

    fn state(&self, index: u32) -> u32 {
        self.atomic32(index, off::FLAGS)
            .map_or(0, |f| f.load(Ordering::Acquire) & STATE)
    }

    /// Counters and last values of the entry at `index`.
    pub fn counts(&self, index: u32) -> EntryCounts {
        let g32 = |at| {
            self.atomic32(index, at)
                .map_or(0, |a| a.load(Ordering::Relaxed))
        };
        let g64 = |at| {
            self.atomic64(index, at)
                .map_or(0, |a| a.load(Ordering::Relaxed))
        };
        EntryCounts {
            packets: g64(off::PACKETS),
            bytes: g64(off::BYTES),
            last_seq: g32(off::LAST_SEQ) as u16,
            last_ts: g32(off::LAST_TS),
        }
    }
}

impl Drop for OffloadMap {
    fn drop(&mut self) {
        // SAFETY: unmapping exactly the mapping made in `create`; no
        // reference into it outlives `self`.
        unsafe {
            libc::munmap(self.base.cast(), self.len);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rule() -> Rule {
        Rule {
            src: "10.0.0.1:4000".parse().unwrap(),
            local: "10.0.0.2:20000".parse().unwrap(),
            out_src: "10.0.0.2:20002".parse().unwrap(),
            out_dst: "10.0.0.3:5000".parse().unwrap(),
            src_mac: Mac([2, 0, 0, 0, 0, 2]),
            dst_mac: Mac([2, 0, 0, 0, 0, 3]),
            in_ssrc: 0x1111_2222,
            out_ssrc: 0x3333_4444,
            seq_delta: 7,
            ts_delta: 160,
        }
    }

    #[test]
    fn entry_layout() {
        let e = encode(&rule()).unwrap();
        assert_eq!(&e[0..4], &[0; 4]);
        assert_eq!(&e[16..18], &4000u16.to_be_bytes());
        assert_eq!(&e[20..24], &0x1111_2222u32.to_be_bytes());
        assert_eq!(&e[32..36], &[10, 0, 0, 1]);
        assert_eq!(&e[48..54], &[2, 0, 0, 0, 0, 3]);
        assert_eq!(&e[60..64], &[0x4e, 0x22, 0x13, 0x88]);
        assert_eq!(&e[64..66], &[0x45, 0]);
        assert_eq!(&e[76..84], &[10, 0, 0, 2, 10, 0, 0, 3]);
    }

    #[test]
    fn hand_over_promotes_only_on_the_last_ticket() {
        let m = match OffloadMap::create(20_000..=20_009) {
            Ok(m) => m,
            Err(e) => {
                eprintln!("skipped: no BPF array map here ({e})");
                return;
            }
        };
        let e = encode(&rule()).unwrap();
        assert!(m.install(3, &e));
        assert!(m.pending(3) && !m.enabled(3));
        // Two frames take tickets 0 and 1, as the program does.
        let take = || {
            m.atomic32(3, off::FLAGS)
                .unwrap()
                .fetch_add(4, Ordering::AcqRel)
                >> 2
        };
        assert_eq!((take(), take()), (0, 1));
        assert!(!m.promote(3, 0), "ticket 1 is still in flight");
        assert!(m.promote(3, 1));
        assert!(m.enabled(3));
        // Withdraw and hand over again: tickets go on from 3.
        m.disable(3);
        assert!(!m.enabled(3) && !m.pending(3));
        assert_eq!(take(), 2);
        assert!(m.install(3, &e));
        assert!(!m.promote(3, 1), "a ticket of the earlier hand-over");
        assert_eq!(take(), 3);
        assert!(m.promote(3, 3));
        assert!(!m.promote(99, 0));
        assert_eq!(meta_ticket(&[0; META_LEN]), None);
        let mut meta = [0; META_LEN];
        meta[..4].copy_from_slice(&META_MAGIC.to_ne_bytes());
        meta[4..].copy_from_slice(&7u32.to_ne_bytes());
        assert_eq!(meta_ticket(&meta), Some(7));
    }

    #[test]
    fn mixed_families_and_ports_are_refused() {
        let r = Rule {
            out_dst: "[fd00::3]:5000".parse().unwrap(),
            ..rule()
        };
        assert_eq!(encode(&r), Err(RuleError::Family));
        assert_eq!(index(&(20_000..=20_009), false, 20_003), Ok(3));
        assert_eq!(index(&(20_000..=20_009), true, 20_003), Ok(13));
        assert_eq!(
            index(&(20_000..=20_009), true, 20_010),
            Err(RuleError::Port(20_010))
        );
    }
}
