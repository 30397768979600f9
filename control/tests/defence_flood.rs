//! A flood of INVITEs and REGISTERs with wrong credentials from one source (127.0.0.2) while
//! two real baresip UAs register and call through tandemd: the call completes, the flooder is
//! banned, the counters say so, and tandemd's memory stays bounded.

mod common;

use std::net::UdpSocket;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::{have_baresip, s, serial, ua_args, Daemon, Ua};

fn vm_rss_kb(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|t| {
            t.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1).map(str::to_string))
        })
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

fn flood_message(i: u64, target: &str, port: u16) -> String {
    let (method, hdr) = if i % 2 == 0 {
        ("REGISTER", "Authorization")
    } else {
        ("INVITE", "Proxy-Authorization")
    };
    let body = if method == "INVITE" {
        "v=0\r\no=- 1 1 IN IP4 127.0.0.2\r\ns=-\r\nc=IN IP4 127.0.0.2\r\nt=0 0\r\nm=audio 4000 RTP/AVP 0\r\n"
    } else {
        ""
    };
    let ctype = if body.is_empty() {
        ""
    } else {
        "Content-Type: application/sdp\r\n"
    };
    format!(
        "{method} sip:1002@{target} SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.2:{port};branch=z9hG4bKfl{i}\r\n\
         From: <sip:1001@{target}>;tag=fl{i}\r\nTo: <sip:1001@{target}>\r\nCall-ID: flood-{i}\r\n\
         CSeq: 1 {method}\r\nMax-Forwards: 70\r\nContact: <sip:1001@127.0.0.2:{port}>\r\n\
         {hdr}: Digest username=\"1001\", realm=\"tandem\", nonce=\"{i:064x}\", \
         uri=\"sip:{target}\", response=\"00000000000000000000000000000000\", algorithm=MD5, \
         qop=auth, nc=00000001, cnonce=\"x\"\r\n{ctype}Content-Length: {}\r\n\r\n{body}",
        body.len()
    )
}

#[test]
fn flood_with_wrong_credentials_bans_the_source_and_calls_still_complete() {
    if !have_baresip() {
        return;
    }
    let Ok(flood_sock) = UdpSocket::bind("127.0.0.2:0") else {
        eprintln!("SKIP: cannot bind 127.0.0.2 (no 127/8 loopback routing)");
        return;
    };
    let _g = serial();
    let d = Daemon::start(
        "flood",
        None,
        "[sip.limits]\nrate_per_sec = 20\nrate_burst = 40\nrate_strikes = 200\n\
         auth_failures = 10\nwindow_secs = 60\nban_secs = 120\n",
    );
    let pid = d.child.id();
    let rss_before = vm_rss_kb(pid);
    let target = d.registrar();

    let stop = Arc::new(AtomicBool::new(false));
    let sent = Arc::new(AtomicU64::new(0));
    let answered = Arc::new(AtomicU64::new(0));
    flood_sock
        .set_read_timeout(Some(Duration::from_millis(1)))
        .expect("timeout");
    let port = flood_sock.local_addr().expect("addr").port();
    let flooder = {
        let (stop, sent, answered, target) =
            (stop.clone(), sent.clone(), answered.clone(), target.clone());
        std::thread::spawn(move || {
            let end = Instant::now() + Duration::from_secs(20);
            let mut buf = [0u8; 4096];
            let mut i = 0u64;
            while Instant::now() < end && !stop.load(Ordering::Relaxed) {
                for _ in 0..20 {
                    let m = flood_message(i, &target, port);
                    if flood_sock.send_to(m.as_bytes(), &target).is_ok() {
                        sent.fetch_add(1, Ordering::Relaxed);
                    }
                    i += 1;
                }
                while let Ok((n, _)) = flood_sock.recv_from(&mut buf) {
                    if n > 0 {
                        answered.fetch_add(1, Ordering::Relaxed);
                    }
                }
            }
        })
    };
    std::thread::sleep(Duration::from_millis(500));

    // Two legitimate UAs register and call while the flood goes on.
    let mut callee = ua_args(&d, "answer", 1002);
    callee.extend([
        s("--seconds"),
        s("8"),
        s("--timeout"),
        s("40"),
        s("--no-media-check"),
    ]);
    let mut b = Ua::spawn(&d.dir, "b", &callee);
    b.wait_event("waiting", 20);
    let mut caller = ua_args(&d, "call", 1001);
    caller.extend([
        s("--dial"),
        s("1002"),
        s("--seconds"),
        s("3"),
        s("--no-media-check"),
    ]);
    let mut a = Ua::spawn(&d.dir, "a", &caller);
    a.wait_event("established", 30);
    assert_eq!(a.wait(40), 0, "caller: {:?}", a.events());
    b.wait(20);
    let flood_running = !flooder.is_finished();
    stop.store(true, Ordering::Relaxed);
    flooder.join().expect("flooder thread");
    assert!(flood_running, "the flood must last the whole call");

    let rss_after = vm_rss_kb(pid);
    let (sent, answered) = (
        sent.load(Ordering::Relaxed),
        answered.load(Ordering::Relaxed),
    );
    std::thread::sleep(Duration::from_secs(6)); // one stats period
    let log = d.log_text();
    let stats = log
        .lines()
        .filter_map(|l| l.split("sip defence stats: ").nth(1))
        .last()
        .and_then(|j| serde_json::from_str::<serde_json::Value>(j).ok())
        .unwrap_or_else(|| panic!("no defence stats in the log:\n{log}"));
    eprintln!(
        "flood: sent {sent}, answered {answered}; VmRSS {rss_before} kB -> {rss_after} kB; \
         stats {stats}"
    );
    assert!(
        log.contains("banned 127.0.0.2"),
        "flooder not banned:\n{log}"
    );
    assert!(stats["bans"].as_u64() >= Some(1), "{stats}");
    assert!(stats["auth_failures"].as_u64() >= Some(10), "{stats}");
    assert!(
        stats["dropped_banned"].as_u64().unwrap_or(0) > sent / 2,
        "most of the flood must be dropped: sent {sent}, {stats}"
    );
    assert!(
        answered < 200,
        "the flooder got {answered} answers of {sent}"
    );
    assert!(sent > 5000, "flood too weak to mean anything: {sent}");
    assert!(
        rss_after < rss_before + 30 * 1024,
        "memory grew from {rss_before} kB to {rss_after} kB"
    );
    assert!(
        !log.contains("banned 127.0.0.1"),
        "a legitimate UA was banned:\n{log}"
    );
}
