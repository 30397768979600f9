//! The relay switch step without I/O: packets through the session table and
//! `switch::handle_packet`, the way a worker handles a received batch (token
//! decode, slot lookup, validate, latch check, header rewrite).
//!
//! 1000 sessions, both legs signalled and latched; packets go round-robin over
//! the sessions, alternating direction, each freshly copied from a template
//! (as if just received) with its own sequence number and timestamp. Virtual
//! time advances 20 ms per round. Criterion reports time per packet
//! (throughput in elements = packets).
//!
//! Run: `cargo bench -p perf --bench relay`.

use std::hint::black_box;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use dataplane::session::{Kind, Leg, SessionTable, SlotAllocator, SocketRef};
use dataplane::switch::{self, Decision};
use dataplane::wire::{rtp, Pt, Ssrc};
use dataplane::{Mode, SessionId, Side};

const SESSIONS: usize = 1000;
/// Packets per measured iteration: one round over all sessions, both ways.
const PACKETS: usize = 2 * SESSIONS;

struct Fixture {
    table: SessionTable,
    /// Per session: (slot, phone A address, phone B address).
    calls: Vec<(u32, SocketAddr, SocketAddr)>,
    template: [u8; 12 + 160],
    epoch: Instant,
    round: u32,
}

fn addr(ip: [u8; 4], port: u16) -> SocketAddr {
    SocketAddr::from((ip, port))
}

fn fixture() -> Fixture {
    let mut table = SessionTable::with_capacity(SESSIONS);
    let mut slots = SlotAllocator::new(SESSIONS);
    let mut calls = Vec::with_capacity(SESSIONS);
    for i in 0..SESSIONS {
        let slot = slots.alloc().expect("capacity");
        let port = 20_000 + 4 * i as u16;
        let a = Leg::new(addr([127, 0, 0, 1], port), Ssrc(0x1000_0000 + i as u32));
        let b = Leg::new(addr([127, 0, 0, 1], port + 2), Ssrc(0x2000_0000 + i as u32));
        let mut s = dataplane::session::Session::new(SessionId(i as u32), Mode::Relay, a, b);
        let pa = addr([10, 0, (i >> 8) as u8, i as u8], 4000);
        let pb = addr([10, 1, (i >> 8) as u8, i as u8], 6000);
        s.a.set_remote(pa, None);
        s.b.set_remote(pb, None);
        table.insert(slot, s).expect("free slot");
        calls.push((slot.index, pa, pb));
    }
    let mut template = [0xd5u8; 12 + 160];
    rtp::Repr {
        marker: false,
        payload_type: Pt::PCMA,
        sequence_number: 0,
        timestamp: 0,
        ssrc: Ssrc(0),
    }
    .emit(&mut template)
    .expect("template fits a header");
    Fixture {
        table,
        calls,
        template,
        epoch: dataplane::clock::now(),
        round: 0,
    }
}

impl Fixture {
    /// One round: every session gets one packet each way. Returns forwards.
    fn round(&mut self) -> usize {
        let now = self.epoch + Duration::from_millis(20 * u64::from(self.round));
        let seq = self.round as u16;
        let ts = self.round.wrapping_mul(160);
        self.round += 1;
        let mut buf = self.template;
        let mut forwarded = 0;
        for (i, &(slot, pa, pb)) in self.calls.iter().enumerate() {
            for (side, src, ssrc) in [
                (Side::A, pa, 0xa000_0000 + i as u32),
                (Side::B, pb, 0xb000_0000 + i as u32),
            ] {
                buf.copy_from_slice(&self.template);
                let mut p = rtp::Packet::new_unchecked(&mut buf[..]);
                p.set_ssrc(Ssrc(ssrc));
                p.set_sequence_number(seq);
                p.set_timestamp(ts);
                // As the worker does: token -> socket -> session slot.
                let rx = SocketRef::from_token(
                    SocketRef {
                        slot,
                        side,
                        kind: Kind::Rtp,
                    }
                    .token(),
                );
                let Some(session) = self.table.by_index_mut(rx.slot) else {
                    continue;
                };
                let out = switch::handle_packet(session, rx, src, black_box(&mut buf[..]), now);
                if matches!(out.decision, Decision::Forward { .. }) {
                    forwarded += 1;
                }
                black_box(&buf);
            }
        }
        forwarded
    }
}

fn relay(c: &mut Criterion) {
    let mut g = c.benchmark_group("relay_switch");
    g.throughput(Throughput::Elements(PACKETS as u64));
    g.sample_size(30);
    g.measurement_time(Duration::from_secs(3));

    let mut f = fixture();
    // Latch every leg before measuring.
    assert_eq!(f.round(), PACKETS, "every packet forwarded");
    g.bench_function("rtp_1000_sessions_round_robin", |b| {
        b.iter(|| black_box(f.round()));
    });

    // Baseline: just the template copy and header setup, no switching.
    let template = f.template;
    g.bench_function("baseline_copy_only", |b| {
        b.iter_batched_ref(
            || [0u8; 12 + 160],
            |buf| {
                for i in 0..PACKETS {
                    buf.copy_from_slice(&template);
                    let mut p = rtp::Packet::new_unchecked(&mut buf[..]);
                    p.set_sequence_number(i as u16);
                    black_box(&buf);
                }
            },
            BatchSize::SmallInput,
        );
    });
    g.finish();
}

criterion_group!(benches, relay);
criterion_main!(benches);
