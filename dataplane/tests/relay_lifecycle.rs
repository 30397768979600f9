//! Session lifecycle on real sockets: configuration errors, port and slot
//! exhaustion, destroy freeing ports, the media-timeout event, and shutdown.

use std::net::{SocketAddr, UdpSocket};
use std::time::Duration;

use dataplane::wire::{rtp, Pt, Ssrc};
use dataplane::{clock, Backend, Config, Dataplane, Error, Event, Mode, SessionId, Side};

const WAIT: Duration = Duration::from_secs(3);

fn first_core() -> usize {
    core_affinity::get_core_ids()
        .and_then(|c| c.first().map(|c| c.id))
        .unwrap_or(0)
}

fn config(ports: std::ops::RangeInclusive<u16>) -> Config {
    Config {
        backend: Backend::Socket,
        cores: vec![first_core()],
        rtp_ports: ports,
        media_ip: "127.0.0.1".parse().unwrap(),
        media_timeout: Duration::from_millis(300),
        max_sessions_per_worker: 8,
        xdp: None,
        control_cores: Vec::new(),
    }
}

fn packet(seq: u16) -> [u8; 32] {
    let mut b = [0xd5u8; 32];
    rtp::Repr {
        marker: false,
        payload_type: Pt::PCMA,
        sequence_number: seq,
        timestamp: 160 * u32::from(seq),
        ssrc: Ssrc(7),
    }
    .emit(&mut b)
    .unwrap();
    b
}

#[test]
fn config_errors_name_the_problem() {
    let err = |cfg: Config| Dataplane::start(cfg).expect_err("start must fail");
    let mut c = config(43_000..=43_099);
    c.cores = vec![usize::MAX / 2];
    let e = err(c);
    assert!(
        matches!(&e, Error::Config(m) if m.contains("does not exist")),
        "{e}"
    );

    let mut c = config(43_000..=43_099);
    c.cores = vec![];
    assert!(matches!(err(c), Error::Config(_)));

    let mut c = config(43_000..=43_099);
    c.backend = Backend::Uring;
    // io_uring is refused (with the probe's reason) only where the kernel lacks it.
    if let Err(why) = dataplane::io::uring::probe() {
        assert!(matches!(
            err(c),
            Error::BackendUnavailable(Backend::Uring, m) if m == why
        ));
    }

    let e = err(config(43_000..=43_002));
    assert!(
        matches!(&e, Error::Config(m) if m.contains("rtp_ports")),
        "{e}"
    );

    let mut c = config(43_000..=43_099);
    c.max_sessions_per_worker = 0;
    assert!(matches!(err(c), Error::Config(_)));

    // TEST-NET-1 is never a local address.
    let mut c = config(43_000..=43_099);
    c.media_ip = "192.0.2.1".parse().unwrap();
    assert!(matches!(err(c), Error::Io(_)));
}

#[test]
fn destroy_frees_ports_and_unknown_ids_are_errors() {
    // Exactly two port pairs: room for one session.
    let mut dp = Dataplane::start(config(43_100..=43_103)).unwrap();
    let s = dp.create_session(Mode::Relay).unwrap();
    let mut ports = [s.a.port(), s.b.port()];
    ports.sort_unstable();
    assert_eq!(ports, [43_100, 43_102]);
    assert!(matches!(
        dp.create_session(Mode::Relay),
        Err(Error::NoPorts)
    ));
    // The session's ports are really bound.
    assert!(UdpSocket::bind(s.a).is_err());
    assert!(UdpSocket::bind(SocketAddr::new(s.b.ip(), s.b.port() + 1)).is_err());

    dp.destroy(s.id).unwrap();
    assert!(matches!(dp.destroy(s.id), Err(Error::UnknownSession(id)) if id == s.id));
    assert!(matches!(
        dp.set_remote(s.id, Side::A, s.a, None),
        Err(Error::UnknownSession(_))
    ));
    assert!(matches!(
        dp.arm_timeout(SessionId(999)),
        Err(Error::UnknownSession(_))
    ));
    assert!(matches!(
        dp.set_mode(SessionId(999), Mode::Echo),
        Err(Error::UnknownSession(_))
    ));

    // The worker closes the sockets asynchronously; the ports come back.
    let deadline = clock::now() + WAIT;
    let again = loop {
        match dp.create_session(Mode::Echo) {
            Ok(a) => break a,
            Err(Error::NoPorts) if clock::now() < deadline => {
                std::thread::sleep(Duration::from_millis(2))
            }
            Err(e) => panic!("ports never freed: {e}"),
        }
    };
    assert_ne!(again.id, s.id, "ids are not reused right away");
    let mut ports2 = [again.a.port(), again.b.port()];
    ports2.sort_unstable();
    assert_eq!(ports2, ports);

    // Counters follow.
    let deadline = clock::now() + WAIT;
    while dp.stats()[0].sessions != 1 {
        assert!(
            clock::now() < deadline,
            "session count never settled: {:?}",
            dp.stats()
        );
        std::thread::yield_now();
    }
    dp.destroy(again.id).unwrap();
    let deadline = clock::now() + WAIT;
    while dp.stats()[0].sessions != 0 {
        assert!(clock::now() < deadline, "session count never reached 0");
        std::thread::yield_now();
    }
    let st = dp.stats();
    assert_eq!((st.len(), st[0].worker, st[0].core), (1, 0, first_core()));
    dp.shutdown();
}

#[test]
fn slots_run_out_before_ports() {
    let mut c = config(43_200..=43_299);
    c.max_sessions_per_worker = 2;
    let mut dp = Dataplane::start(c).unwrap();
    let a = dp.create_session(Mode::Relay).unwrap();
    let b = dp.create_session(Mode::Relay).unwrap();
    assert_ne!(a.id, b.id);
    assert!(matches!(
        dp.create_session(Mode::Relay),
        Err(Error::NoSessionSlots)
    ));
    dp.destroy(a.id).unwrap();
    dp.create_session(Mode::Relay)
        .expect("a freed slot is reusable at once");
}

#[test]
fn media_timeout_fires_once_and_only_without_media() {
    let mut dp = Dataplane::start(config(43_300..=43_399)).unwrap();
    let silent = dp.create_session(Mode::Relay).unwrap();
    let talking = dp.create_session(Mode::Echo).unwrap();
    let phone = UdpSocket::bind("127.0.0.1:0").unwrap();
    dp.set_remote(talking.id, Side::A, phone.local_addr().unwrap(), None)
        .unwrap();
    dp.set_remote(silent.id, Side::A, "127.0.0.1:9".parse().unwrap(), None)
        .unwrap();

    // Unarmed sessions never time out; arm both now.
    let armed_at = clock::now();
    dp.arm_timeout(silent.id).unwrap();
    dp.arm_timeout(talking.id).unwrap();

    let mut events = Vec::new();
    let mut seq = 0;
    let deadline = armed_at + Duration::from_millis(1200);
    let mut fired_after = None;
    while clock::now() < deadline {
        // The talking phone sends every 20 ms.
        phone.send_to(&packet(seq), talking.a).unwrap();
        seq += 1;
        while let Some(ev) = dp.poll_event() {
            if ev == (Event::MediaTimeout { id: silent.id }) && fired_after.is_none() {
                fired_after = Some(clock::now() - armed_at);
            }
            events.push(ev);
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let fired_after = fired_after.expect("silent session timed out");
    assert!(
        fired_after >= Duration::from_millis(300),
        "fired early: {fired_after:?}"
    );
    let timeouts: Vec<_> = events
        .iter()
        .filter(|e| matches!(e, Event::MediaTimeout { .. }))
        .collect();
    assert_eq!(
        timeouts,
        vec![&Event::MediaTimeout { id: silent.id }],
        "once, and not for the talker"
    );
    assert!(events.contains(&Event::FirstPacket {
        id: talking.id,
        side: Side::A
    }));
}
