//! End-to-end calls through a real `tandemd` between real baresip UAs.
//!
//! Each test writes its own config, starts the daemon on a free loopback port
//! and drives `sipua.py` peers. Skips with a message where baresip is missing
//! (the README's test command installs it).

mod common;

use common::*;
use std::net::UdpSocket;
use std::time::Duration;

const DIAL_PLAN_SHORT_TIMEOUT: &str = "\
[default]
exten => _1XXX,1,NoOp(call to ${EXTEN} from ${CALLERID(num)})
 same => n,Dial(SIP/${EXTEN},4)
 same => n,Hangup()
exten => 600,1,Answer()
 same => n,Echo()
";

fn assert_audio(reference: &std::path::Path, rec: &std::path::Path, what: &str) {
    let v = analyze(reference, rec);
    let med = v["block_corr_median"].as_f64().unwrap_or(0.0);
    assert!(
        v["ok"] == true && med >= 0.8,
        "{what}: audio does not match its source: {v}"
    );
}

#[test]
fn call_between_registered_users_carries_audio_both_ways_and_caller_bye_ends_both() {
    if !have_baresip() {
        return;
    }
    let _g = serial();
    let d = Daemon::start("call", None, "");
    let chirp = d.dir.path("chirp.wav");
    let noise = d.dir.path("noise.wav");
    gen(&chirp, "chirp", 3.0, 1);
    gen(&noise, "noise", 3.0, 7);
    let rec_b = d.dir.path("rec_b.wav");
    let rec_a = d.dir.path("rec_a.wav");

    let mut callee = ua_args(&d, "answer", 1002);
    callee.extend([
        s("--play"),
        noise.display().to_string(),
        s("--record"),
        rec_b.display().to_string(),
    ]);
    callee.extend([s("--timeout"), s("40")]);
    let mut b = Ua::spawn(&d.dir, "b", &callee);
    b.wait_event("waiting", 15);
    d.wait_for("1002 registered", 10, |d| {
        d.ctl_json(&["show", "registrations"])
            .as_array()
            .is_some_and(|r| r.iter().any(|x| x["user"] == "1002"))
    });

    let mut caller = ua_args(&d, "call", 1001);
    caller.extend([
        s("--dial"),
        s("1002"),
        s("--play"),
        chirp.display().to_string(),
    ]);
    caller.extend([
        s("--record"),
        rec_a.display().to_string(),
        s("--seconds"),
        s("5"),
    ]);
    let mut a = Ua::spawn(&d.dir, "a", &caller);
    a.wait_event("established", 20);

    // While the call is up, the management socket shows it with both legs.
    let calls = d.ctl_json(&["show", "calls"]);
    let calls = calls.as_array().expect("array");
    assert_eq!(calls.len(), 1, "{calls:?}");
    let legs = calls[0]["legs"].as_array().unwrap();
    assert_eq!(legs.len(), 2, "{calls:?}");
    assert_eq!(legs[0]["side"], "A");
    assert_eq!(legs[1]["side"], "B");
    assert_eq!(legs[1]["user"], "1002");
    let (code, table) = d.ctl(&["show", "calls"]);
    assert_eq!(code, 0);
    assert!(table.contains("1001 -> 1002"), "{table}");

    assert_eq!(a.wait(30), 0, "caller flow failed: {:?}", a.events());
    assert_eq!(b.wait(20), 0, "callee flow failed: {:?}", b.events());
    let closed = b.event("closed").expect("callee closed");
    assert_eq!(
        closed["by_us"], false,
        "callee should have been hung up by the caller's BYE: {closed}"
    );

    assert_audio(&chirp, &rec_b, "caller -> callee");
    assert_audio(&noise, &rec_a, "callee -> caller");
    d.wait_for("no active calls", 10, |d| d.active_calls() == 0);

    // The SDP each side saw carried Tandem's address, never the other phone's.
    let workers = d.ctl_json(&["show", "workers"]);
    let w = &workers.as_array().unwrap()[0];
    assert!(w["packets_in"].as_u64().unwrap() > 200, "{w}");
    assert!(w["packets_out"].as_u64().unwrap() > 200, "{w}");
}

#[test]
fn callee_bye_ends_both_legs() {
    if !have_baresip() {
        return;
    }
    let _g = serial();
    let d = Daemon::start("callee-bye", None, "");
    let mut callee = ua_args(&d, "answer", 1002);
    callee.extend([
        s("--seconds"),
        s("2"),
        s("--timeout"),
        s("30"),
        s("--no-media-check"),
    ]);
    let mut b = Ua::spawn(&d.dir, "b", &callee);
    b.wait_event("waiting", 15);
    let mut caller = ua_args(&d, "call", 1001);
    caller.extend([
        s("--dial"),
        s("1002"),
        s("--seconds"),
        s("15"),
        s("--allow-remote-hangup"),
    ]);
    caller.push(s("--no-media-check"));
    let mut a = Ua::spawn(&d.dir, "a", &caller);
    a.wait_event("established", 20);
    assert_eq!(b.wait(20), 0, "{:?}", b.events());
    a.wait(20);
    let closed = a.event("closed").expect("caller closed");
    assert_eq!(
        closed["by_us"], false,
        "caller should be released by our BYE: {closed}"
    );
    d.wait_for("no active calls", 10, |d| d.active_calls() == 0);
}

#[test]
fn cancel_before_answer_reaches_the_callee() {
    if !have_baresip() {
        return;
    }
    let _g = serial();
    let d = Daemon::start("cancel", None, "");
    let mut callee = ua_args(&d, "answer", 1002);
    callee.extend([
        s("--answer-delay"),
        s("30"),
        s("--timeout"),
        s("40"),
        s("--no-media-check"),
    ]);
    let b = Ua::spawn(&d.dir, "b", &callee);
    b.wait_event("waiting", 15);
    let mut caller = ua_args(&d, "call", 1001);
    caller.extend([
        s("--dial"),
        s("1002"),
        s("--timeout"),
        s("4"),
        s("--no-media-check"),
    ]);
    let mut a = Ua::spawn(&d.dir, "a", &caller);
    b.wait_event("incoming", 15);
    a.wait_event("ringing", 10);
    assert_ne!(a.wait(30), 0, "caller gave up, so its flow must fail");
    let closed = b.wait_event("closed", 15);
    assert_eq!(
        closed["by_us"], false,
        "callee must see the CANCEL: {closed}"
    );
    d.wait_for("no active calls", 10, |d| d.active_calls() == 0);
}

#[test]
fn busy_callee_gives_caller_486() {
    if !have_baresip() {
        return;
    }
    let _g = serial();
    let d = Daemon::start("busy", None, "");
    let mut callee = ua_args(&d, "answer", 1002);
    callee.extend([s("--reject"), s("--timeout"), s("30")]);
    let b = Ua::spawn(&d.dir, "b", &callee);
    b.wait_event("waiting", 15);
    let mut caller = ua_args(&d, "call", 1001);
    caller.extend([s("--dial"), s("1002"), s("--no-media-check")]);
    let mut a = Ua::spawn(&d.dir, "a", &caller);
    assert_eq!(a.wait(30), 1);
    let closed = a.event("closed").expect("closed");
    assert_eq!(closed["status"], 486, "{closed}");
}

#[test]
fn unanswered_dial_times_out_with_480_and_cancels_the_callee() {
    if !have_baresip() {
        return;
    }
    let _g = serial();
    let d = Daemon::start("noanswer", Some(DIAL_PLAN_SHORT_TIMEOUT), "");
    let mut callee = ua_args(&d, "answer", 1002);
    callee.extend([
        s("--answer-delay"),
        s("30"),
        s("--timeout"),
        s("40"),
        s("--no-media-check"),
    ]);
    let b = Ua::spawn(&d.dir, "b", &callee);
    b.wait_event("waiting", 15);
    let mut caller = ua_args(&d, "call", 1001);
    caller.extend([
        s("--dial"),
        s("1002"),
        s("--timeout"),
        s("20"),
        s("--no-media-check"),
    ]);
    let mut a = Ua::spawn(&d.dir, "a", &caller);
    assert_eq!(a.wait(30), 1);
    let closed = a.event("closed").expect("closed");
    assert_eq!(closed["status"], 480, "{closed}");
    let bc = b.wait_event("closed", 10);
    assert_eq!(bc["by_us"], false, "{bc}");
}

#[test]
fn wrong_password_is_refused_after_the_challenge() {
    if !have_baresip() {
        return;
    }
    let _g = serial();
    let d = Daemon::start("wrongpw", None, "");
    let args = vec![
        s("register"),
        s("--registrar"),
        d.registrar(),
        s("--user"),
        s("1003"),
        s("--password"),
        s("not-the-password"),
    ];
    let mut ua = Ua::spawn(&d.dir, "reg", &args);
    assert_eq!(ua.wait(30), 4, "{:?}", ua.events());
    let failed = ua
        .event("registration_failed")
        .expect("registration_failed");
    assert_eq!(failed["status"], 403, "{failed}");
    // And an INVITE with wrong credentials is refused too.
    let mut caller = vec![
        s("call"),
        s("--registrar"),
        d.registrar(),
        s("--user"),
        s("1001"),
    ];
    caller.extend([
        s("--password"),
        s("bad"),
        s("--dial"),
        s("600"),
        s("--no-media-check"),
    ]);
    let mut a = Ua::spawn(&d.dir, "a", &caller);
    assert_ne!(a.wait(30), 0);
    assert!(d
        .ctl_json(&["show", "registrations"])
        .as_array()
        .unwrap()
        .is_empty());
}

#[test]
fn malformed_sip_gets_400_or_a_counted_drop_and_the_echo_call_still_works() {
    if !have_baresip() {
        return;
    }
    let _g = serial();
    let d = Daemon::start("echo", None, "");
    let sock = UdpSocket::bind("127.0.0.1:0").unwrap();
    sock.set_read_timeout(Some(Duration::from_millis(1500)))
        .unwrap();
    let target = d.registrar();
    // 1. Pure garbage: no response can be formed; it is counted as a drop.
    sock.send_to(b"\x00\x01garbage\xff\xfe not sip at all", &target)
        .unwrap();
    // 2. A request whose Content-Length is larger than the body: 400.
    let bad_cl = format!(
        "OPTIONS sip:{target} SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:9;branch=z9hG4bKbadcl\r\n\
         From: <sip:x@127.0.0.1>;tag=1\r\nTo: <sip:{target}>\r\nCall-ID: badcl@test\r\nCSeq: 1 OPTIONS\r\n\
         Max-Forwards: 70\r\nContent-Length: 500\r\n\r\nshort"
    );
    sock.send_to(bad_cl.as_bytes(), &target).unwrap();
    let mut buf = [0u8; 4096];
    let (n, _) = sock
        .recv_from(&mut buf)
        .expect("a 400 for the bad Content-Length");
    let resp = String::from_utf8_lossy(&buf[..n]);
    assert!(resp.starts_with("SIP/2.0 400"), "{resp}");
    assert!(resp.contains("badcl@test"), "{resp}");
    // 3. Truncated headers (no CSeq/Call-ID): dropped or 400, never a crash.
    sock.send_to(
        b"INVITE sip:600@127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:9\r\nFro",
        &target,
    )
    .unwrap();
    std::thread::sleep(Duration::from_millis(300));
    let sip = d.ctl_json(&["show", "sip"]);
    assert!(sip["parse_errors"].as_u64().unwrap() >= 3, "{sip}");
    assert!(sip["bad_request_sent"].as_u64().unwrap() >= 1, "{sip}");
    assert!(sip["dropped"].as_u64().unwrap() >= 1, "{sip}");

    // The daemon keeps serving: a call to 600 echoes the caller's audio.
    let chirp = d.dir.path("chirp.wav");
    gen(&chirp, "chirp", 3.0, 3);
    let rec = d.dir.path("echo.wav");
    let mut caller = ua_args(&d, "call", 1001);
    caller.extend([
        s("--dial"),
        s("600"),
        s("--play"),
        chirp.display().to_string(),
    ]);
    caller.extend([
        s("--record"),
        rec.display().to_string(),
        s("--seconds"),
        s("5"),
    ]);
    let mut a = Ua::spawn(&d.dir, "a", &caller);
    a.wait_event("established", 20);
    let calls = d.ctl_json(&["show", "calls"]);
    assert_eq!(calls[0]["exten"], "600", "{calls}");
    assert_eq!(a.wait(30), 0, "{:?}", a.events());
    assert_audio(&chirp, &rec, "echo");
}

#[test]
fn sigterm_hangs_up_active_calls_with_bye_and_exits_zero() {
    if !have_baresip() {
        return;
    }
    let _g = serial();
    let mut d = Daemon::start("sigterm", None, "");
    let mut caller = ua_args(&d, "call", 1001);
    caller.extend([
        s("--dial"),
        s("600"),
        s("--seconds"),
        s("30"),
        s("--allow-remote-hangup"),
    ]);
    caller.push(s("--no-media-check"));
    let mut a = Ua::spawn(&d.dir, "a", &caller);
    a.wait_event("established", 20);
    a.wait_event("rtp_started", 10);
    d.wait_for("the call to be up", 10, |d| d.active_calls() == 1);
    assert_eq!(d.terminate(), 0);
    a.wait(15);
    let closed = a
        .event("closed")
        .unwrap_or_else(|| panic!("caller not closed: {:?}", a.events()));
    assert_eq!(
        closed["by_us"], false,
        "the daemon must BYE the caller: {closed}"
    );
}

#[test]
fn tandemctl_hangup_ends_a_bridged_call_on_both_legs() {
    if !have_baresip() {
        return;
    }
    let _g = serial();
    let d = Daemon::start("ctl-hangup", None, "");
    let mut callee = ua_args(&d, "answer", 1002);
    callee.extend([s("--timeout"), s("40"), s("--no-media-check")]);
    let mut b = Ua::spawn(&d.dir, "b", &callee);
    b.wait_event("waiting", 15);
    let mut caller = ua_args(&d, "call", 1001);
    caller.extend([
        s("--dial"),
        s("1002"),
        s("--seconds"),
        s("30"),
        s("--allow-remote-hangup"),
    ]);
    caller.push(s("--no-media-check"));
    let mut a = Ua::spawn(&d.dir, "a", &caller);
    a.wait_event("established", 20);
    d.wait_for("the call to be up", 10, |d| {
        d.ctl_json(&["show", "calls"])
            .as_array()
            .is_some_and(|c| c.len() == 1 && c[0]["state"] == "up")
    });
    let calls = d.ctl_json(&["show", "calls"]);
    let sip_call_id = calls[0]["legs"][0]["call_id"].as_str().unwrap().to_string();
    // An unknown id is an error, a known SIP Call-ID hangs the call up.
    assert_ne!(d.ctl(&["hangup", "no-such-call"]).0, 0);
    let (code, out) = d.ctl(&["hangup", &sip_call_id]);
    assert_eq!(code, 0, "{out}");
    a.wait(15);
    b.wait(15);
    assert_eq!(a.event("closed").expect("caller closed")["by_us"], false);
    assert_eq!(b.event("closed").expect("callee closed")["by_us"], false);
    d.wait_for("no active calls", 10, |d| d.active_calls() == 0);
}
