//! Frames made in the kernel: `BPF_PROG_TEST_RUN` with
//! `BPF_F_TEST_XDP_LIVE_FRAMES` (Linux >= 5.18) runs an XDP program over
//! copies of one template frame, `repeat` times per call, and whatever the
//! program returns is carried out for real: `XDP_TX` transmits the frame out
//! of the interface named as the context's ingress device. On a veth the
//! frame lands straight in the peer's receive path (which needs NAPI there:
//! an XDP program attached, GRO or threaded NAPI). No socket buffer and no
//! per-frame system call: the cheapest way to offer RTP load to a relay.
//!
//! Parts:
//! - [`ArrayMap`]: a `BPF_MAP_TYPE_ARRAY` with lookup/update from here.
//! - [`test_run_live`]: the generic live-frames call.
//! - [`generator_program`]: the RTP generator program (below) and
//!   [`LiveGen`], which loads it with its maps and runs it.
//! - [`counter_program`]: count every frame, then drop or pass it (a peer
//!   for measuring the generator alone, or to give a veth end NAPI).
//! - [`ktime_ns`]: `CLOCK_MONOTONIC`, the clock of `bpf_ktime_get_ns`.
//!
//! The generator program, per frame: reads the clock; when the caller set an
//! interval between frames and the next send time is more than a tick away,
//! drops the
//! frame (the kernel loop spins on: that is the pacing; after a stall it
//! catches up by at most the caller's window's worth of frames); else takes the frame counter, picks
//! stream `counter % streams` and increments the counter; from that stream's slot
//! (see [`stream_slot`]) writes the IPv4 addresses, header checksum, UDP
//! ports, RTP sequence number, timestamp (`seq * 160`) and SSRC, and in the
//! payload after the RTP header (see [`PAYLOAD_AT`]) the stream id, the
//! 32-bit sequence, the flags and the send time (the clock read, all
//! big-endian); advances the slot's sequence, adds flag bit 0 to the slot's
//! count of measured frames, and returns `XDP_TX`. The template must be an
//! Ethernet/IPv4 (no options)/UDP frame with UDP checksum 0 ("none") and at
//! least [`MIN_FRAME`] bytes; everything the program does not write stays
//! as in the template.
//!
//! Each `BPF_PROG_TEST_RUN` call sets up and tears down a page pool, which
//! waits for RCU: tens to hundreds of ms on a loaded machine. So a paced run
//! is one long call on a thread of its own ([`LiveGen::run`]), ended by a
//! signal ([`interrupt`]); the state the program keeps (counter, next send
//! time) and the caller's settings live in two separate map values so that
//! changing the settings meanwhile does not race with the program.
#![allow(unsafe_code)]

use std::io;
use std::mem;
use std::net::SocketAddrV4;
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::thread::RawPthread;
use std::sync::atomic::{AtomicBool, Ordering};

use super::bpf::{self, insn, sys_bpf, Attr, Insn};

const BPF_MAP_TYPE_ARRAY: u32 = 2;
const BPF_MAP_CREATE: i32 = 0;
const BPF_MAP_LOOKUP_ELEM: i32 = 1;
const BPF_MAP_UPDATE_ELEM: i32 = 2;
const BPF_PROG_TEST_RUN: i32 = 10;
const BPF_F_TEST_XDP_LIVE_FRAMES: u32 = 1 << 1;
/// Largest `batch_size` the kernel takes for live frames.
pub const MAX_BATCH: u32 = 256;

const FUNC_MAP_LOOKUP_ELEM: i32 = 1;
const FUNC_KTIME_GET_NS: i32 = 5;
const XDP_DROP: i32 = 1;
const XDP_PASS: i32 = 2;
const XDP_TX: i32 = 3;

// Opcodes (class | op | source).
const MOV64_X: u8 = 0xbf;
const MOV64_K: u8 = 0xb7;
const ADD64_K: u8 = 0x07;
const ADD64_X: u8 = 0x0f;
const SUB64_X: u8 = 0x1f;
const MUL64_K: u8 = 0x27;
const MOD64_X: u8 = 0x9f;
const AND64_K: u8 = 0x57;
const BE: u8 = 0xdc;
const LDX_W: u8 = 0x61;
const LDX_H: u8 = 0x69;
const LDX_DW: u8 = 0x79;
const STX_W: u8 = 0x63;
const STX_H: u8 = 0x6b;
const STX_DW: u8 = 0x7b;
const ST_W: u8 = 0x62;
const XADD_DW: u8 = 0xdb;
const LD_DW: u8 = 0x18;
const JEQ_K: u8 = 0x15;
const JGT_X: u8 = 0x2d;
const JGE_X: u8 = 0x3d;
const CALL: u8 = 0x85;
const EXIT: u8 = 0x95;
const PSEUDO_MAP_FD: u8 = 1;

/// Frame offsets (Ethernet 14 + IPv4 20 + UDP 8 + RTP 12).
const IP_CSUM: i16 = 24;
const IP_SRC: i16 = 26;
const UDP_PORTS: i16 = 34;
const RTP_SEQ: i16 = 44;
const RTP_TS: i16 = 46;
const RTP_SSRC: i16 = 50;
/// Where the generator's payload fields start: magic (4 bytes, left as in
/// the template), then stream id, sequence, flags (u32 each) and send time
/// (u64), big-endian.
pub const PAYLOAD_AT: usize = 54;
const P_STREAM: i16 = PAYLOAD_AT as i16 + 4;
const P_SEQ: i16 = P_STREAM + 4;
const P_FLAGS: i16 = P_SEQ + 4;
const P_TIME: i16 = P_FLAGS + 4;
/// Shortest template the generator program writes into.
pub const MIN_FRAME: usize = P_TIME as usize + 8;

/// Bytes of one stream slot and of each control value.
pub const SLOT: usize = 32;
const CTL: usize = 24;
/// Control value 0, the program's state: frame counter, next send time.
const S_COUNTER: i16 = 0;
const S_NEXT: i16 = 8;
/// Catch-up window in ns; set by the caller but read here (value 0 is
/// 24 bytes: the caller writes it before the first run only).
const S_WINDOW: i16 = 16;
/// Control value 1, the caller's settings: stream count, flags, interval
/// between frames in ns (0: flat out), tick in ns (frames due within a tick
/// go out together: fewer, fuller batches for the receiver).
const C_STREAMS: i16 = 0;
const C_FLAGS: i16 = 4;
const C_INTERVAL: i16 = 8;
const C_TICK: i16 = 16;
/// Offsets in a stream slot.
const S_SEQ: i16 = 24;
const S_MEASURED: i16 = 28;

/// A `BPF_MAP_TYPE_ARRAY` map (u32 keys, fixed-size values).
#[derive(Debug)]
pub struct ArrayMap {
    fd: OwnedFd,
    value_size: usize,
    entries: u32,
}

impl ArrayMap {
    /// Create a map of `entries` zeroed values of `value_size` bytes.
    pub fn create(name: &str, value_size: usize, entries: u32) -> io::Result<ArrayMap> {
        let vs = u32::try_from(value_size)
            .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "value size"))?;
        let mut a = Attr::new();
        a.u32(0, BPF_MAP_TYPE_ARRAY)
            .u32(4, 4)
            .u32(8, vs)
            .u32(12, entries.max(1))
            .name(28, name);
        let r = sys_bpf(BPF_MAP_CREATE, &mut a)?;
        // SAFETY: BPF_MAP_CREATE returned a new fd (r >= 0) owned by no one.
        let fd = unsafe { OwnedFd::from_raw_fd(r as RawFd) };
        Ok(ArrayMap {
            fd,
            value_size,
            entries: entries.max(1),
        })
    }

    /// The map's fd (for `ld_imm64` map references).
    pub fn fd(&self) -> BorrowedFd<'_> {
        use std::os::fd::AsFd;
        self.fd.as_fd()
    }

    fn check(&self, key: u32, len: usize) -> io::Result<()> {
        if key >= self.entries || len != self.value_size {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!(
                    "array map: key {key} of {} / value {len} bytes of {}",
                    self.entries, self.value_size
                ),
            ));
        }
        Ok(())
    }

    /// Set `map[key] = value` (`value` must be the value size).
    pub fn set(&self, key: u32, value: &[u8]) -> io::Result<()> {
        self.check(key, value.len())?;
        let mut a = Attr::new();
        a.u32(0, self.fd.as_raw_fd() as u32)
            .u64(8, std::ptr::addr_of!(key) as u64)
            .u64(16, value.as_ptr() as u64);
        sys_bpf(BPF_MAP_UPDATE_ELEM, &mut a).map(drop)
    }

    /// Read `map[key]` into `value` (the value size).
    pub fn get(&self, key: u32, value: &mut [u8]) -> io::Result<()> {
        self.check(key, value.len())?;
        let mut a = Attr::new();
        a.u32(0, self.fd.as_raw_fd() as u32)
            .u64(8, std::ptr::addr_of!(key) as u64)
            .u64(16, value.as_mut_ptr() as u64);
        sys_bpf(BPF_MAP_LOOKUP_ELEM, &mut a).map(drop)
    }
}

/// Run XDP program `prog` over `repeat` live copies of `frame`, as if
/// received on `ifindex` (queue 0), `batch` frames per kernel batch
/// (1..=[`MAX_BATCH`]). Returns the program's last return value. The kernel
/// may stop early on a pending signal (`EINTR`).
pub fn test_run_live(
    prog: BorrowedFd<'_>,
    frame: &[u8],
    ifindex: u32,
    repeat: u32,
    batch: u32,
) -> io::Result<u32> {
    // struct xdp_md: data, data_end, data_meta, ingress_ifindex,
    // rx_queue_index, egress_ifindex.
    let ctx: [u32; 6] = [0, frame.len() as u32, 0, ifindex, 0, 0];
    let mut a = Attr::new();
    a.u32(0, prog.as_raw_fd() as u32)
        .u32(8, frame.len() as u32)
        .u64(16, frame.as_ptr() as u64)
        .u32(32, repeat.max(1))
        .u32(40, mem::size_of_val(&ctx) as u32)
        .u64(48, ctx.as_ptr() as u64)
        .u32(64, BPF_F_TEST_XDP_LIVE_FRAMES)
        .u32(72, batch.clamp(1, MAX_BATCH));
    sys_bpf(BPF_PROG_TEST_RUN, &mut a)?;
    Ok(a.get_u32(4))
}

/// `CLOCK_MONOTONIC` in ns: the clock of `bpf_ktime_get_ns`.
pub fn ktime_ns() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a live timespec; CLOCK_MONOTONIC is always valid.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

/// Forward jumps to labels, resolved at the end.
struct Asm {
    code: Vec<Insn>,
    fixups: Vec<(usize, Label)>,
    labels: Vec<(Label, usize)>,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Label {
    Drop,
    Send,
    Store,
}

impl Asm {
    fn new() -> Asm {
        Asm {
            code: Vec::with_capacity(96),
            fixups: Vec::new(),
            labels: Vec::new(),
        }
    }
    fn op(&mut self, code: u8, dst: u8, src: u8, off: i16, imm: i32) {
        self.code.push(insn(code, dst, src, off, imm));
    }
    fn map(&mut self, dst: u8, fd: RawFd) {
        self.op(LD_DW, dst, PSEUDO_MAP_FD, 0, fd);
        self.op(0, 0, 0, 0, 0);
    }
    /// `r2 = &stack[off]` holding the u32 `key`, `r1 = map`, lookup.
    fn lookup(&mut self, map: RawFd, off: i16, key: i32) {
        self.op(ST_W, 10, 0, off, key);
        self.op(MOV64_X, 2, 10, 0, 0);
        self.op(ADD64_K, 2, 0, 0, i32::from(off));
        self.map(1, map);
        self.op(CALL, 0, 0, 0, FUNC_MAP_LOOKUP_ELEM);
    }
    fn jump(&mut self, code: u8, dst: u8, src: u8, imm: i32, to: Label) {
        self.fixups.push((self.code.len(), to));
        self.op(code, dst, src, 0, imm);
    }
    fn label(&mut self, l: Label) {
        self.labels.push((l, self.code.len()));
    }
    /// Append `r0 = verdict; exit` as the drop label and resolve jumps.
    fn finish(mut self, verdict: i32) -> Vec<Insn> {
        self.label(Label::Drop);
        self.op(MOV64_K, 0, 0, 0, verdict);
        self.op(EXIT, 0, 0, 0, 0);
        for &(j, to) in &self.fixups {
            let t = self
                .labels
                .iter()
                .find(|(l, _)| *l == to)
                .map_or(j + 1, |&(_, t)| t);
            // Programs are a few dozen instructions: offsets fit in i16.
            self.code[j].off = (t as i64 - j as i64 - 1) as i16;
        }
        self.code
    }
}

/// The generator program (see the module doc), with `ctl` the control map
/// (two [`CTL`]-byte values: the program's state, the caller's settings)
/// and `streams` the stream slots ([`SLOT`] bytes).
pub fn generator_program(ctl: RawFd, streams: RawFd) -> Vec<Insn> {
    let mut a = Asm::new();
    a.op(MOV64_X, 6, 1, 0, 0); // r6 = ctx
    a.lookup(ctl, -4, 0);
    a.jump(JEQ_K, 0, 0, 0, Label::Drop);
    a.op(MOV64_X, 7, 0, 0, 0); // r7 = state
    a.lookup(ctl, -8, 1);
    a.jump(JEQ_K, 0, 0, 0, Label::Drop);
    a.op(MOV64_X, 8, 0, 0, 0); // r8 = settings
    a.op(CALL, 0, 0, 0, FUNC_KTIME_GET_NS);
    a.op(MOV64_X, 9, 0, 0, 0); // r9 = now
                               // Pacing: with an interval, send only when now + tick >= next; then
                               // next = max(next + interval, now - catch-up window) (bounded catch-up).
    a.op(LDX_DW, 1, 8, C_INTERVAL, 0);
    a.jump(JEQ_K, 1, 0, 0, Label::Send);
    a.op(LDX_DW, 2, 7, S_NEXT, 0);
    a.op(LDX_DW, 4, 8, C_TICK, 0);
    a.op(ADD64_X, 4, 9, 0, 0);
    a.jump(JGT_X, 2, 4, 0, Label::Drop);
    a.op(ADD64_X, 2, 1, 0, 0);
    a.op(LDX_DW, 3, 7, S_WINDOW, 0);
    a.op(MOV64_X, 4, 9, 0, 0);
    a.op(SUB64_X, 4, 3, 0, 0);
    a.jump(JGE_X, 2, 4, 0, Label::Store);
    a.op(MOV64_X, 2, 4, 0, 0);
    a.label(Label::Store);
    a.op(STX_DW, 7, 2, S_NEXT, 0);
    a.label(Label::Send);
    a.op(LDX_DW, 1, 7, S_COUNTER, 0); // r1 = counter
    a.op(MOV64_X, 3, 1, 0, 0);
    a.op(ADD64_K, 3, 0, 0, 1);
    a.op(STX_DW, 7, 3, S_COUNTER, 0);
    a.op(LDX_W, 2, 8, C_STREAMS, 0);
    a.jump(JEQ_K, 2, 0, 0, Label::Drop);
    a.op(MOD64_X, 1, 2, 0, 0);
    a.op(LDX_W, 7, 8, C_FLAGS, 0); // r7 = flags & 1
    a.op(AND64_K, 7, 0, 0, 1);
    a.op(STX_W, 10, 1, -12, 0); // key = counter % streams
    a.op(MOV64_X, 2, 10, 0, 0);
    a.op(ADD64_K, 2, 0, 0, -12);
    a.map(1, streams);
    a.op(CALL, 0, 0, 0, FUNC_MAP_LOOKUP_ELEM);
    a.jump(JEQ_K, 0, 0, 0, Label::Drop);
    a.op(MOV64_X, 8, 0, 0, 0); // r8 = slot
    a.op(LDX_W, 2, 6, 0, 0); // r2 = data
    a.op(LDX_W, 3, 6, 4, 0); // r3 = data_end
    a.op(MOV64_X, 4, 2, 0, 0);
    a.op(ADD64_K, 4, 0, 0, MIN_FRAME as i32);
    a.jump(JGT_X, 4, 3, 0, Label::Drop);
    // Addresses, ports, checksum, SSRC, stream id: copied from the slot.
    a.op(LDX_W, 1, 8, 0, 0);
    a.op(STX_W, 2, 1, IP_SRC, 0);
    a.op(LDX_W, 1, 8, 4, 0);
    a.op(STX_W, 2, 1, IP_SRC + 4, 0);
    a.op(LDX_W, 1, 8, 8, 0);
    a.op(STX_W, 2, 1, UDP_PORTS, 0);
    a.op(LDX_H, 1, 8, 12, 0);
    a.op(STX_H, 2, 1, IP_CSUM, 0);
    a.op(LDX_W, 1, 8, 16, 0);
    a.op(STX_W, 2, 1, RTP_SSRC, 0);
    a.op(LDX_W, 1, 8, 20, 0);
    a.op(STX_W, 2, 1, P_STREAM, 0);
    // Sequence: r4 = slot.seq; slot.seq += 1.
    a.op(LDX_W, 4, 8, S_SEQ, 0);
    a.op(MOV64_X, 1, 4, 0, 0);
    a.op(ADD64_K, 1, 0, 0, 1);
    a.op(STX_W, 8, 1, S_SEQ, 0);
    a.op(MOV64_X, 1, 4, 0, 0);
    a.op(BE, 1, 0, 0, 16);
    a.op(STX_H, 2, 1, RTP_SEQ, 0);
    a.op(MOV64_X, 1, 4, 0, 0);
    a.op(MUL64_K, 1, 0, 0, 160);
    a.op(BE, 1, 0, 0, 32);
    a.op(STX_W, 2, 1, RTP_TS, 0);
    a.op(MOV64_X, 1, 4, 0, 0);
    a.op(BE, 1, 0, 0, 32);
    a.op(STX_W, 2, 1, P_SEQ, 0);
    a.op(MOV64_X, 1, 7, 0, 0);
    a.op(BE, 1, 0, 0, 32);
    a.op(STX_W, 2, 1, P_FLAGS, 0);
    // slot.measured += flag
    a.op(LDX_W, 1, 8, S_MEASURED, 0);
    a.op(ADD64_X, 1, 7, 0, 0);
    a.op(STX_W, 8, 1, S_MEASURED, 0);
    // Send time.
    a.op(MOV64_X, 1, 9, 0, 0);
    a.op(BE, 1, 0, 0, 64);
    a.op(STX_DW, 2, 1, P_TIME, 0);
    a.op(MOV64_K, 0, 0, 0, XDP_TX);
    a.op(EXIT, 0, 0, 0, 0);
    a.finish(XDP_DROP)
}

/// What [`counter_program`] does with a frame after counting it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    Drop,
    Pass,
}

/// A program that adds 1 to the u64 at `map[0]` (an [`ArrayMap`] of 8-byte
/// values) for every frame, then drops or passes it.
pub fn counter_program(map: RawFd, verdict: Verdict) -> Vec<Insn> {
    let v = match verdict {
        Verdict::Drop => XDP_DROP,
        Verdict::Pass => XDP_PASS,
    };
    let mut a = Asm::new();
    a.lookup(map, -4, 0);
    a.jump(JEQ_K, 0, 0, 0, Label::Drop);
    a.op(MOV64_K, 1, 0, 0, 1);
    a.op(XADD_DW, 0, 1, 0, 0);
    a.finish(v)
}

/// One stream's slot: `src -> dst`, with `ssrc` and `id` in the payload.
/// The IPv4 header checksum is that of `template_ip` (the template's 20-byte
/// IPv4 header) with these addresses.
pub fn stream_slot(
    template_ip: &[u8; 20],
    src: SocketAddrV4,
    dst: SocketAddrV4,
    ssrc: u32,
    id: u32,
) -> [u8; SLOT] {
    let mut ip = *template_ip;
    ip[10] = 0;
    ip[11] = 0;
    ip[12..16].copy_from_slice(&src.ip().octets());
    ip[16..20].copy_from_slice(&dst.ip().octets());
    let mut sum: u32 = ip
        .chunks_exact(2)
        .map(|w| u32::from(u16::from_be_bytes([w[0], w[1]])))
        .sum();
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    let csum = !(sum as u16);
    let mut s = [0u8; SLOT];
    s[0..4].copy_from_slice(&src.ip().octets());
    s[4..8].copy_from_slice(&dst.ip().octets());
    s[8..10].copy_from_slice(&src.port().to_be_bytes());
    s[10..12].copy_from_slice(&dst.port().to_be_bytes());
    s[12..14].copy_from_slice(&csum.to_be_bytes());
    s[16..20].copy_from_slice(&ssrc.to_be_bytes());
    s[20..24].copy_from_slice(&id.to_be_bytes());
    s
}

/// Errors of [`LiveGen::new`], naming the step.
#[derive(Debug, thiserror::Error)]
pub enum LiveError {
    #[error("template: {0}")]
    Template(String),
    #[error("{0}: {1}")]
    Sys(&'static str, io::Error),
    #[error("generator program: {0}")]
    Load(String),
}

/// The generator program loaded with its maps, sending out of one interface.
pub struct LiveGen {
    prog: OwnedFd,
    ctl: ArrayMap,
    streams: ArrayMap,
    count: u32,
    template: Vec<u8>,
    ifindex: u32,
    /// Frames per kernel batch.
    pub batch: u32,
}

impl LiveGen {
    /// Load the generator for `streams` (`(src, dst, ssrc)` each; stream id
    /// = index) sending copies of `template` out of `ifindex`.
    pub fn new(
        ifindex: u32,
        template: Vec<u8>,
        streams: &[(SocketAddrV4, SocketAddrV4, u32)],
    ) -> Result<LiveGen, LiveError> {
        if template.len() < MIN_FRAME
            || template[12..14] != [0x08, 0x00]
            || template[14] != 0x45
            || template[23] != 17
        {
            return Err(LiveError::Template(format!(
                "need Ethernet/IPv4 without options/UDP of at least {MIN_FRAME} bytes ({} given)",
                template.len()
            )));
        }
        let count = u32::try_from(streams.len())
            .ok()
            .filter(|&n| n > 0)
            .ok_or_else(|| LiveError::Template(format!("{} streams", streams.len())))?;
        let mut template = template;
        template[40] = 0; // UDP checksum: none
        template[41] = 0;
        let ctl = ArrayMap::create("txg_ctl", CTL, 2).map_err(|e| LiveError::Sys("ctl map", e))?;
        let smap = ArrayMap::create("txg_streams", SLOT, count)
            .map_err(|e| LiveError::Sys("stream map", e))?;
        let mut ip = [0u8; 20];
        ip.copy_from_slice(&template[14..34]);
        for (i, &(src, dst, ssrc)) in streams.iter().enumerate() {
            let slot = stream_slot(&ip, src, dst, ssrc, i as u32);
            smap.set(i as u32, &slot)
                .map_err(|e| LiveError::Sys("stream map update", e))?;
        }
        let code = generator_program(ctl.fd().as_raw_fd(), smap.fd().as_raw_fd());
        let prog = bpf::load_named(&code, "tandem_xdpgen").map_err(LiveError::Load)?;
        let g = LiveGen {
            prog,
            ctl,
            streams: smap,
            count,
            template,
            ifindex,
            batch: 64,
        };
        g.configure(0, 0, 0)
            .map_err(|e| LiveError::Sys("ctl map update", e))?;
        Ok(g)
    }

    fn ctl_value(&self, key: u32) -> io::Result<[u8; CTL]> {
        let mut v = [0u8; CTL];
        self.ctl.get(key, &mut v)?;
        Ok(v)
    }

    /// Set the catch-up window: after a stall (the sending thread not
    /// scheduled), at most this many ns worth of frames go out back to back.
    /// Call before [`LiveGen::run`] (it rewrites the program's state).
    pub fn set_catch_up(&self, window_ns: u64) -> io::Result<()> {
        let mut v = self.ctl_value(0)?;
        v[16..24].copy_from_slice(&window_ns.to_ne_bytes());
        self.ctl.set(0, &v)
    }

    /// Set the flags written into every following frame (bit 0: measured),
    /// the interval between frames (0: flat out) and the tick: frames due
    /// within `tick_ns` from now are sent at once, back to back.
    pub fn configure(&self, flags: u32, interval_ns: u64, tick_ns: u64) -> io::Result<()> {
        let mut v = [0u8; CTL];
        v[0..4].copy_from_slice(&self.count.to_ne_bytes());
        v[4..8].copy_from_slice(&flags.to_ne_bytes());
        v[8..16].copy_from_slice(&interval_ns.to_ne_bytes());
        v[16..24].copy_from_slice(&tick_ns.to_ne_bytes());
        self.ctl.set(1, &v)
    }

    /// Run the program until `stop` is set and [`interrupt`] reaches this
    /// thread ([`install_interrupt`] first). Sending is paced by the
    /// interval of [`LiveGen::configure`].
    pub fn run(&self, stop: &AtomicBool) -> io::Result<()> {
        while !stop.load(Ordering::Acquire) {
            match test_run_live(
                self.prog.as_fd_ref(),
                &self.template,
                self.ifindex,
                u32::MAX,
                self.batch,
            ) {
                Ok(_) => {}
                Err(e) if e.raw_os_error() == Some(libc::EINTR) => {}
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }

    /// Run the program `n` times (one system call; without an interval
    /// that sends `n` frames). Returns how many frames were sent.
    pub fn send(&self, n: u32) -> io::Result<u32> {
        let before = self.frames()?;
        match test_run_live(
            self.prog.as_fd_ref(),
            &self.template,
            self.ifindex,
            n,
            self.batch,
        ) {
            Ok(_) => {}
            Err(e) if e.raw_os_error() == Some(libc::EINTR) => {}
            Err(e) => return Err(e),
        }
        Ok((self.frames()? - before).min(u64::from(n)) as u32)
    }

    /// Frames the program has run for so far.
    pub fn frames(&self) -> io::Result<u64> {
        let v = self.ctl_value(0)?;
        let mut c = [0u8; 8];
        c.copy_from_slice(&v[0..8]);
        Ok(u64::from_ne_bytes(c))
    }

    /// Per stream: frames sent with flag bit 0 set.
    pub fn measured_sent(&self) -> io::Result<Vec<u32>> {
        let mut out = Vec::with_capacity(self.count as usize);
        let mut v = [0u8; SLOT];
        for i in 0..self.count {
            self.streams.get(i, &mut v)?;
            let at = S_MEASURED as usize;
            out.push(u32::from_ne_bytes([v[at], v[at + 1], v[at + 2], v[at + 3]]));
        }
        Ok(out)
    }
}

/// The signal [`interrupt`] sends.
const INTERRUPT: libc::c_int = libc::SIGUSR2;

extern "C" fn on_interrupt(_: libc::c_int) {}

/// Install a do-nothing handler for the signal of [`interrupt`] (without
/// `SA_RESTART`, so a blocked `BPF_PROG_TEST_RUN` returns `EINTR`).
pub fn install_interrupt() -> io::Result<()> {
    // SAFETY: a zeroed sigaction is valid (empty mask, no flags); the
    // handler is an `extern "C"` fn that does nothing, async-signal-safe.
    let r = unsafe {
        let mut sa: libc::sigaction = mem::zeroed();
        sa.sa_sigaction = on_interrupt as extern "C" fn(libc::c_int) as usize;
        libc::sigaction(INTERRUPT, &sa, std::ptr::null_mut())
    };
    if r < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Interrupt thread `t` (blocked in [`LiveGen::run`]).
pub fn interrupt(t: RawPthread) {
    // SAFETY: `t` is the id of a thread of this process that the caller
    // has not joined yet (pthread_kill on a live thread id).
    unsafe {
        libc::pthread_kill(t as libc::pthread_t, INTERRUPT);
    }
}

/// `BorrowedFd` of an `OwnedFd` without importing `AsFd` at every call.
trait AsFdRef {
    fn as_fd_ref(&self) -> BorrowedFd<'_>;
}

impl AsFdRef for OwnedFd {
    fn as_fd_ref(&self) -> BorrowedFd<'_> {
        use std::os::fd::AsFd;
        self.as_fd()
    }
}

/// A loaded [`counter_program`] and its map.
pub struct Counter {
    pub prog: OwnedFd,
    map: ArrayMap,
}

impl Counter {
    /// Load a counter that drops or passes what it counted.
    pub fn new(verdict: Verdict) -> Result<Counter, LiveError> {
        let map = ArrayMap::create("txg_count", 8, 1).map_err(|e| LiveError::Sys("map", e))?;
        let prog = bpf::load_named(
            &counter_program(map.fd().as_raw_fd(), verdict),
            "tandem_count",
        )
        .map_err(LiveError::Load)?;
        Ok(Counter { prog, map })
    }

    /// Frames counted so far.
    pub fn count(&self) -> io::Result<u64> {
        let mut v = [0u8; 8];
        self.map.get(0, &mut v)?;
        Ok(u64::from_ne_bytes(v))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::Ipv4Addr;

    fn jumps_in_range(p: &[Insn]) {
        for (i, ins) in p.iter().enumerate() {
            let class = ins.code & 0x07;
            let code = ins.code;
            if class == 0x05 && code != CALL && code != EXIT {
                let t = i as i64 + 1 + i64::from(ins.off);
                assert!(t > i as i64 && (t as usize) < p.len(), "jump {i} -> {t}");
            }
        }
    }

    #[test]
    fn programs_jump_inside_and_end_in_their_verdicts() {
        let g = generator_program(5, 6);
        jumps_in_range(&g);
        assert_eq!(g[g.len() - 2], insn(MOV64_K, 0, 0, 0, XDP_DROP));
        assert!(g.contains(&insn(MOV64_K, 0, 0, 0, XDP_TX)));
        // Map references: ctl (state, settings) then streams.
        let maps: Vec<i32> = g
            .iter()
            .filter(|i| i.code == LD_DW)
            .map(|i| i.imm)
            .collect();
        assert_eq!(maps, vec![5, 5, 6]);
        let c = counter_program(9, Verdict::Pass);
        jumps_in_range(&c);
        assert_eq!(c[c.len() - 2], insn(MOV64_K, 0, 0, 0, XDP_PASS));
    }

    #[test]
    fn slot_checksum_verifies_and_fields_are_wire_order() {
        let mut ip = [0u8; 20];
        ip[0] = 0x45;
        ip[2..4].copy_from_slice(&200u16.to_be_bytes());
        ip[6] = 0x40;
        ip[8] = 64;
        ip[9] = 17;
        let src = SocketAddrV4::new(Ipv4Addr::new(10, 231, 0, 1), 2000);
        let dst = SocketAddrV4::new(Ipv4Addr::new(10, 231, 0, 2), 20_002);
        let s = stream_slot(&ip, src, dst, 0x1000_0007, 7);
        assert_eq!(&s[0..4], &[10, 231, 0, 1]);
        assert_eq!(&s[8..12], &[0x07, 0xd0, 0x4e, 0x22]);
        assert_eq!(&s[20..24], &[0, 0, 0, 7]);
        // The header with the slot's addresses and checksum sums to 0xffff.
        let mut h = ip;
        h[10..12].copy_from_slice(&s[12..14]);
        h[12..20].copy_from_slice(&s[0..8]);
        let mut sum: u32 = h
            .chunks_exact(2)
            .map(|w| u32::from(u16::from_be_bytes([w[0], w[1]])))
            .sum();
        while sum > 0xffff {
            sum = (sum & 0xffff) + (sum >> 16);
        }
        assert_eq!(sum, 0xffff);
    }

    #[test]
    fn bad_templates_are_refused_before_any_syscall() {
        let s = SocketAddrV4::new(Ipv4Addr::LOCALHOST, 1);
        let e = LiveGen::new(1, vec![0; 20], &[(s, s, 1)]).err().unwrap();
        assert!(e.to_string().contains("at least"), "{e}");
        let mut t = vec![0u8; MIN_FRAME];
        t[12] = 0x08;
        t[14] = 0x45;
        t[23] = 17;
        let e = LiveGen::new(1, t, &[]).err().unwrap();
        assert!(e.to_string().contains("0 streams"), "{e}");
    }

    /// Loads the program (the verifier checks it) and runs it over live
    /// frames "received" on lo, where XDP_TX has nowhere to go (the frames
    /// are dropped): the counters show the round-robin and the flags.
    #[test]
    fn verifier_accepts_and_streams_go_round_robin() {
        let s = SocketAddrV4::new(Ipv4Addr::LOCALHOST, 9);
        let mut t = vec![0u8; MIN_FRAME + 20];
        t[12] = 0x08;
        t[14] = 0x45;
        t[23] = 17;
        let g = match LiveGen::new(1, t, &[(s, s, 1), (s, s, 2), (s, s, 3)]) {
            Ok(g) => g,
            Err(e) => {
                eprintln!("skipped: cannot load BPF here: {e}");
                return;
            }
        };
        g.configure(1, 0, 0).unwrap();
        match g.send(10) {
            Ok(10) => {}
            Ok(n) => panic!("{n} frames of 10"),
            Err(e) => {
                eprintln!("skipped: no live frames here: {e}");
                return;
            }
        }
        g.configure(0, 0, 0).unwrap();
        assert_eq!(g.send(2).unwrap(), 2);
        assert_eq!(g.frames().unwrap(), 12);
        assert_eq!(g.measured_sent().unwrap(), vec![4, 3, 3]);
    }
}
