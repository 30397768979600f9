//! Calls between real baresip UAs over TCP and over TLS, hold and resume mid-call, and an
//! outbound connection to a phone whose registration connection is gone.
//!
//! tandemd listens on UDP, TCP and TLS (a certificate the test makes with rcgen, for
//! 127.0.0.1; baresip trusts it through `sip_cafile`). The phones are baresip driven by
//! `tests/peers/sipua_stream.py`, a thin layer over the shared `sipua.py` that sets the
//! account transport and sends `hold`/`resume`. Skips with a message where baresip or
//! sipua.py is missing.

mod common;

use common::*;
use control::sip::digest::{self, Algorithm};
use control::sip::stream::{Frame, Framer, Limits};
use control::sip::{Message, Request, Response};
use std::fs;
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

fn free_tcp_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn driver() -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/peers/sipua_stream.py")
}

/// Start the stream driver (same output and exit codes as sipua.py).
fn spawn(dir: &TempDir, name: &str, args: &[String]) -> Ua {
    let out = dir.path(&format!("{name}.jsonl"));
    let log = dir.path(&format!("{name}.baresip.log"));
    let sipua_dir = sipua().parent().unwrap().to_path_buf();
    let child = Command::new("python3")
        .arg(driver())
        .arg("--sipua-dir")
        .arg(sipua_dir)
        .args(args)
        .arg("--log")
        .arg(&log)
        .arg("--sip-trace")
        .stdout(fs::File::create(&out).unwrap())
        .stderr(fs::File::create(dir.path(&format!("{name}.stderr"))).unwrap())
        .stdin(Stdio::null())
        .spawn()
        .expect("start sipua_stream.py");
    Ua {
        child,
        out,
        name: name.to_string(),
    }
}

/// A daemon with UDP, TCP and TLS listeners: (daemon, tcp port, tls port, CA file).
fn daemon(name: &str) -> (Daemon, u16, u16, std::path::PathBuf) {
    let (tcp_port, tls_port) = (free_tcp_port(), free_tcp_port());
    let certs = TempDir::new(&format!("{name}-certs"));
    let ck =
        rcgen::generate_simple_self_signed(vec!["127.0.0.1".into(), "localhost".into()]).unwrap();
    fs::write(certs.path("cert.pem"), ck.cert.pem()).unwrap();
    fs::write(certs.path("key.pem"), ck.key_pair.serialize_pem()).unwrap();
    let d = Daemon::start_full(
        name,
        None,
        "",
        &|_| String::new(),
        &format!(
            "listen = [\"{{udp}}\", \"tcp:127.0.0.1:{tcp_port}\", \"tls:127.0.0.1:{tls_port}\"]\n\
             tls_certificate = \"{}\"\ntls_private_key = \"{}\"\n",
            certs.path("cert.pem").display(),
            certs.path("key.pem").display()
        ),
    );
    let ca = certs.path("cert.pem");
    // Keep the certificate directory for the daemon's lifetime.
    std::mem::forget(certs);
    (d, tcp_port, tls_port, ca)
}

fn ua(mode: &str, user: u32, transport: &str, port: u16, ca: &std::path::Path) -> Vec<String> {
    vec![
        s("--transport"),
        s(transport),
        s("--cafile"),
        ca.display().to_string(),
        s(mode),
        s("--registrar"),
        format!("127.0.0.1:{port}"),
        s("--user"),
        user.to_string(),
        s("--password"),
        format!("pw{user}"),
    ]
}

fn assert_audio(reference: &std::path::Path, rec: &std::path::Path, what: &str) {
    let v = analyze(reference, rec);
    let med = v["block_corr_median"].as_f64().unwrap_or(0.0);
    assert!(
        v["ok"] == true && med >= 0.8,
        "{what}: audio does not match its source: {v}"
    );
}

/// 1002 answers, 1001 calls it, both over `transport`; audio both ways; 1001's BYE ends
/// both. Checks in the phones' SIP traces that every message went over the transport.
fn call_over(transport: &str) {
    if !have_baresip() {
        return;
    }
    let _g = serial();
    let (d, tcp, tls, ca) = daemon(&format!("baresip-{transport}"));
    let port = if transport == "tls" { tls } else { tcp };
    let chirp = d.dir.path("chirp.wav");
    let noise = d.dir.path("noise.wav");
    gen(&chirp, "chirp", 3.0, 1);
    gen(&noise, "noise", 3.0, 7);
    let (rec_a, rec_b) = (d.dir.path("rec_a.wav"), d.dir.path("rec_b.wav"));
    let mut callee = ua("answer", 1002, transport, port, &ca);
    callee.extend([
        s("--play"),
        noise.display().to_string(),
        s("--record"),
        rec_b.display().to_string(),
        s("--timeout"),
        s("40"),
    ]);
    let mut b = spawn(&d.dir, "b", &callee);
    b.wait_event("waiting", 20);
    let mut caller = ua("call", 1001, transport, port, &ca);
    caller.extend([
        s("--dial"),
        s("1002"),
        s("--play"),
        chirp.display().to_string(),
        s("--record"),
        rec_a.display().to_string(),
        s("--seconds"),
        s("5"),
    ]);
    let mut a = spawn(&d.dir, "a", &caller);
    a.wait_event("established", 20);
    // Both registrations came over the stream: their sources are connection peers, and
    // the SIP stream counters moved.
    let regs = d.ctl_json(&["show", "registrations"]);
    let contacts = regs.to_string();
    assert!(
        contacts.contains(&format!("transport={transport}")),
        "{regs}"
    );
    assert_eq!(a.wait(30), 0, "caller flow failed: {:?}", a.events());
    assert_eq!(b.wait(20), 0, "callee flow failed: {:?}", b.events());
    assert_eq!(
        b.event("closed").expect("callee closed")["by_us"],
        false,
        "the callee is released by Tandem's BYE"
    );
    assert_audio(&chirp, &rec_b, "caller -> callee");
    assert_audio(&noise, &rec_a, "callee -> caller");
    d.wait_for("no active calls", 10, |d| d.active_calls() == 0);
    // What Tandem sent the callee (INVITE, ACK, BYE) named the stream transport in Via.
    let trace = fs::read_to_string(d.dir.path("b.baresip.log")).unwrap_or_default();
    let upper = transport.to_ascii_uppercase();
    for method in ["INVITE", "ACK", "BYE"] {
        let sent = trace
            .split(&format!("{method} sip:1002"))
            .nth(1)
            .unwrap_or_else(|| panic!("no {method} in the callee's trace"));
        let via = sent
            .lines()
            .find(|l| l.to_ascii_lowercase().starts_with("via:"))
            .unwrap_or("");
        assert!(
            via.contains(&format!("SIP/2.0/{upper}")),
            "{method} to the callee: {via}"
        );
    }
    assert!(
        !trace.contains("SIP/2.0/UDP 127.0.0.1"),
        "no UDP message on a {transport} phone"
    );
}

#[test]
fn baresip_call_over_tcp_carries_audio_both_ways() {
    call_over("tcp");
}

#[test]
fn baresip_call_over_tls_carries_audio_both_ways() {
    call_over("tls");
}

/// `packets_out` of the first worker.
fn packets_out(d: &Daemon) -> u64 {
    d.ctl_json(&["show", "workers"])[0]["packets_out"]
        .as_u64()
        .unwrap_or(0)
}

/// Packets Tandem sent per second, measured over `secs`.
fn out_rate(d: &Daemon, secs: f64) -> f64 {
    let p0 = packets_out(d);
    let t0 = Instant::now();
    std::thread::sleep(Duration::from_secs_f64(secs));
    (packets_out(d) - p0) as f64 / t0.elapsed().as_secs_f64()
}

#[test]
fn hold_and_resume_over_tcp_stop_and_restart_the_held_direction() {
    if !have_baresip() {
        return;
    }
    let _g = serial();
    let (d, tcp, _, ca) = daemon("baresip-hold");
    let mut callee = ua("answer", 1002, "tcp", tcp, &ca);
    callee.extend([
        s("--play"),
        s("noise"),
        s("--timeout"),
        s("60"),
        s("--no-media-check"),
    ]);
    let mut b = spawn(&d.dir, "b", &callee);
    b.wait_event("waiting", 20);
    let mut caller = ua("call", 1001, "tcp", tcp, &ca);
    caller.extend([
        s("--dial"),
        s("1002"),
        s("--play"),
        s("noise"),
        s("--seconds"),
        s("13"),
        s("--hold-at"),
        s("4"),
        s("--resume-at"),
        s("8.5"),
        s("--no-media-check"),
    ]);
    let mut a = spawn(&d.dir, "a", &caller);
    a.wait_event("established", 20);
    std::thread::sleep(Duration::from_millis(1500));
    let before = out_rate(&d, 2.0);
    a.wait_event("hold_sent", 10);
    std::thread::sleep(Duration::from_millis(1000));
    let held = out_rate(&d, 2.5);
    a.wait_event("resume_sent", 10);
    std::thread::sleep(Duration::from_millis(1000));
    let resumed = out_rate(&d, 2.0);
    eprintln!(
        "packets out per second: before {before:.0}, on hold {held:.0}, resumed {resumed:.0}"
    );
    assert!(
        before > 70.0,
        "both directions relayed before hold: {before}"
    );
    assert!(
        held < before * 0.6,
        "on hold the held direction stops: {held} vs {before}"
    );
    assert!(
        resumed > before * 0.8,
        "resume restores both directions: {resumed} vs {before}"
    );
    assert_eq!(a.wait(30), 0, "caller flow failed: {:?}", a.events());
    b.wait(20);
    // The callee saw the hold as a re-INVITE from Tandem, sendonly, with Tandem's address.
    let trace = fs::read_to_string(d.dir.path("b.baresip.log")).unwrap_or_default();
    assert!(
        trace.contains("a=sendonly"),
        "callee never saw the hold offer"
    );
    let log = d.log_text();
    assert!(log.contains("OneWay(A)"), "{log}");
    assert!(log.contains("-> Relay"), "{log}");
    d.wait_for("no active calls", 10, |d| d.active_calls() == 0);
}

// ------------------------------------------------- outbound connection (hand-written phone)

fn param(h: &str, name: &str) -> Option<String> {
    let i = h.find(&format!("{name}="))? + name.len() + 1;
    let rest = &h[i..];
    if let Some(r) = rest.strip_prefix('"') {
        r.split('"').next().map(str::to_string)
    } else {
        rest.split([',', ' ']).next().map(str::to_string)
    }
}

fn read_message<S: Read>(s: &mut S, framer: &mut Framer, secs: u64) -> Message {
    let end = Instant::now() + Duration::from_secs(secs);
    let mut buf = [0u8; 8192];
    loop {
        if let Some(Frame::Message(m)) = framer.next_frame().expect("framing") {
            return Message::parse(&m).expect("parse");
        }
        assert!(Instant::now() < end, "no message within {secs} s");
        match s.read(&mut buf) {
            Ok(0) => panic!("connection closed"),
            Ok(n) => framer.push(&buf[..n]),
            Err(e)
                if e.kind() == std::io::ErrorKind::WouldBlock
                    || e.kind() == std::io::ErrorKind::TimedOut => {}
            Err(e) => panic!("read: {e}"),
        }
    }
}

fn register(tcp_port: u16, contact_port: u16, cseq: u32, auth: Option<&str>) -> String {
    let mut m = format!(
        "REGISTER sip:127.0.0.1:{tcp_port} SIP/2.0\r\n\
         Via: SIP/2.0/TCP 127.0.0.1:{contact_port};rport;branch=z9hG4bK-oreg{cseq}\r\n\
         Max-Forwards: 70\r\nFrom: <sip:1002@tandem>;tag=o1\r\nTo: <sip:1002@tandem>\r\n\
         Call-ID: outbound-reg\r\nCSeq: {cseq} REGISTER\r\n\
         Contact: <sip:1002@127.0.0.1:{contact_port};transport=tcp>\r\nExpires: 300\r\n"
    );
    if let Some(a) = auth {
        m.push_str(&format!("Authorization: {a}\r\n"));
    }
    m.push_str("Content-Length: 0\r\n\r\n");
    m
}

fn authorization(resp: &Response, tcp_port: u16) -> String {
    let ch = resp.headers.get("WWW-Authenticate").expect("challenge");
    let (realm, nonce) = (param(ch, "realm").unwrap(), param(ch, "nonce").unwrap());
    let uri = format!("sip:127.0.0.1:{tcp_port}");
    let r = digest::response(
        Algorithm::Md5,
        "1002",
        &realm,
        "pw1002",
        "REGISTER",
        &uri,
        &nonce,
        Some(("00000001", "c0ffee")),
    );
    let mut a = format!(
        "Digest username=\"1002\", realm=\"{realm}\", nonce=\"{nonce}\", uri=\"{uri}\", \
         response=\"{r}\", algorithm=MD5, qop=auth, nc=00000001, cnonce=\"c0ffee\""
    );
    if let Some(o) = param(ch, "opaque") {
        a.push_str(&format!(", opaque=\"{o}\""));
    }
    a
}

fn response_to(req: &Request, code: u16, reason: &str) -> String {
    let mut out = format!("SIP/2.0 {code} {reason}\r\n");
    for name in ["Via", "From", "Call-ID", "CSeq"] {
        for v in req.headers.get_all(name) {
            out.push_str(&format!("{name}: {v}\r\n"));
        }
    }
    let to = req.headers.get("To").unwrap();
    out.push_str(&format!("To: {to};tag=otcp\r\nContent-Length: 0\r\n\r\n"));
    out
}

#[test]
fn a_phone_whose_connection_closed_is_reached_on_a_new_connection_to_its_contact() {
    if !have_baresip() {
        return;
    }
    let _g = serial();
    let (d, tcp_port, _, _) = daemon("outbound-tcp");
    // The phone listens for SIP over TCP on its Contact port.
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let contact_port = listener.local_addr().unwrap().port();
    {
        let mut c = TcpStream::connect(("127.0.0.1", tcp_port)).unwrap();
        c.set_read_timeout(Some(Duration::from_millis(200)))
            .unwrap();
        let mut f = Framer::new(Limits::default());
        c.write_all(register(tcp_port, contact_port, 1, None).as_bytes())
            .unwrap();
        let Message::Response(r) = read_message(&mut c, &mut f, 5) else {
            panic!("expected a response")
        };
        assert_eq!(r.code, 401);
        let auth = authorization(&r, tcp_port);
        c.write_all(register(tcp_port, contact_port, 2, Some(&auth)).as_bytes())
            .unwrap();
        let Message::Response(r) = read_message(&mut c, &mut f, 5) else {
            panic!("expected a response")
        };
        assert_eq!(r.code, 200, "{r:?}");
    } // the registration connection closes here
    std::thread::sleep(Duration::from_millis(500));

    // A UDP caller dials 1002: Tandem opens a TCP connection to the Contact.
    let mut caller = ua_args(&d, "call", 1001);
    caller.extend([
        s("--dial"),
        s("1002"),
        s("--timeout"),
        s("15"),
        s("--no-media-check"),
    ]);
    let mut a = Ua::spawn(&d.dir, "a", &caller);
    listener.set_nonblocking(true).unwrap();
    let end = Instant::now() + Duration::from_secs(20);
    let mut conn = loop {
        match listener.accept() {
            Ok((c, _)) => break c,
            Err(_) if Instant::now() < end => std::thread::sleep(Duration::from_millis(50)),
            Err(e) => panic!(
                "Tandem never connected to the Contact: {e}; {:?}",
                a.events()
            ),
        }
    };
    conn.set_nonblocking(false).unwrap();
    conn.set_read_timeout(Some(Duration::from_millis(200)))
        .unwrap();
    let mut f = Framer::new(Limits::default());
    let Message::Request(inv) = read_message(&mut conn, &mut f, 10) else {
        panic!("expected the INVITE")
    };
    assert_eq!(inv.method.as_str(), "INVITE");
    let via = inv.headers.get("Via").unwrap();
    assert!(via.starts_with("SIP/2.0/TCP "), "{via}");
    assert!(
        via.contains(&format!(":{tcp_port};")),
        "sent-by is the TCP listener: {via}"
    );
    let contact = inv.headers.get("Contact").unwrap();
    assert!(contact.contains("transport=tcp"), "{contact}");
    conn.write_all(response_to(&inv, 486, "Busy Here").as_bytes())
        .unwrap();
    // The ACK for the 486 comes on the same connection, once.
    let Message::Request(ack) = read_message(&mut conn, &mut f, 5) else {
        panic!("expected the ACK")
    };
    assert_eq!(ack.method.as_str(), "ACK");
    assert_eq!(a.wait(30), 1);
    let closed = a.event("closed").expect("closed");
    assert_eq!(closed["status"], 486, "{closed}");
}
