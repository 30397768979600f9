//! SIP over TCP and TLS through a real `tandemd` (RFC 3261 §18).
//!
//! tandemd listens on UDP, TCP and TLS (a certificate the test makes). A
//! phone registers over TCP with digest auth: the 401 and the 200 come back
//! on its connection; a keepalive ping gets a pong; a UDP caller (baresip)
//! dials it and the INVITE arrives over that same connection; the phone
//! answers 486 and the caller gets busy. Over TLS an OPTIONS is answered on
//! the TLS connection; a plain TCP client on the TLS port and a message
//! without Content-Length on TCP only close their own connections, and the
//! daemon keeps serving.

mod common;

use common::*;
use control::sip::digest::{self, Algorithm};
use control::sip::stream::{Frame, Framer, Limits};
use control::sip::{Message, Request, Response};
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::time::{Duration, Instant};

fn free_tcp_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A SIP client on one stream connection (plain TCP or anything Read + Write).
struct StreamUa<S: Read + Write> {
    s: S,
    framer: Framer,
    pongs: usize,
}

impl<S: Read + Write> StreamUa<S> {
    fn new(s: S) -> Self {
        StreamUa {
            s,
            framer: Framer::new(Limits::default()),
            pongs: 0,
        }
    }

    fn send(&mut self, text: &str) {
        self.s.write_all(text.as_bytes()).unwrap();
    }

    /// The next message on the connection (pongs are counted, not returned).
    fn recv(&mut self, secs: u64) -> Message {
        let end = Instant::now() + Duration::from_secs(secs);
        let mut buf = [0u8; 8192];
        loop {
            // A lone CRLF is the RFC 5626 pong: count it here, the framer skips it.
            match self.framer.next_frame().expect("framing") {
                Some(Frame::Message(m)) => return Message::parse(&m).expect("parse"),
                Some(Frame::Ping) => panic!("server sent a ping"),
                None => {}
            }
            assert!(Instant::now() < end, "no message within {secs} s");
            let n = match self.s.read(&mut buf) {
                Ok(0) => panic!("connection closed"),
                Ok(n) => n,
                Err(e)
                    if e.kind() == std::io::ErrorKind::WouldBlock
                        || e.kind() == std::io::ErrorKind::TimedOut =>
                {
                    continue
                }
                Err(e) => panic!("read: {e}"),
            };
            // Between messages (nothing buffered) a CRLF can only be the pong;
            // the next message may have come in the same read.
            if self.framer.buffered() == 0 && buf[..n].starts_with(b"\r\n") {
                self.pongs += 1;
                self.framer.push(&buf[2..n]);
                continue;
            }
            self.framer.push(&buf[..n]);
        }
    }
}

fn register(
    local: SocketAddr,
    transport: &str,
    server: u16,
    cseq: u32,
    auth: Option<&str>,
) -> String {
    let mut m = format!(
        "REGISTER sip:127.0.0.1:{server} SIP/2.0\r\n\
         Via: SIP/2.0/{transport} {local};rport;branch=z9hG4bK-reg{cseq}\r\n\
         Max-Forwards: 70\r\n\
         From: <sip:1001@tandem>;tag=tcp1\r\n\
         To: <sip:1001@tandem>\r\n\
         Call-ID: tcp-reg-1\r\n\
         CSeq: {cseq} REGISTER\r\n\
         Contact: <sip:1001@{local};transport={t}>\r\n\
         Expires: 300\r\n",
        t = transport.to_ascii_lowercase()
    );
    if let Some(a) = auth {
        m.push_str(&format!("Authorization: {a}\r\n"));
    }
    m.push_str("Content-Length: 0\r\n\r\n");
    m
}

fn param(h: &str, name: &str) -> Option<String> {
    let i = h.find(&format!("{name}="))? + name.len() + 1;
    let rest = &h[i..];
    if let Some(r) = rest.strip_prefix('"') {
        r.split('"').next().map(str::to_string)
    } else {
        rest.split([',', ' ']).next().map(str::to_string)
    }
}

fn authorization(resp: &Response, server: u16) -> String {
    let ch = resp
        .headers
        .get("WWW-Authenticate")
        .expect("challenge")
        .to_string();
    let realm = param(&ch, "realm").unwrap();
    let nonce = param(&ch, "nonce").unwrap();
    let uri = format!("sip:127.0.0.1:{server}");
    let r = digest::response(
        Algorithm::Md5,
        "1001",
        &realm,
        "pw1001",
        "REGISTER",
        &uri,
        &nonce,
        Some(("00000001", "c0ffee")),
    );
    let mut a = format!(
        "Digest username=\"1001\", realm=\"{realm}\", nonce=\"{nonce}\", uri=\"{uri}\", \
         response=\"{r}\", algorithm=MD5, qop=auth, nc=00000001, cnonce=\"c0ffee\""
    );
    if let Some(o) = param(&ch, "opaque") {
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
    out.push_str(&format!("To: {to};tag=tcpua\r\nContent-Length: 0\r\n\r\n"));
    out
}

#[test]
fn register_and_receive_a_call_over_tcp_options_over_tls() {
    let _g = serial();
    let (tcp_port, tls_port) = (free_tcp_port(), free_tcp_port());
    let certs = TempDir::new("tls-certs");
    let ck = rcgen::generate_simple_self_signed(vec!["localhost".into()]).unwrap();
    std::fs::write(certs.path("cert.pem"), ck.cert.pem()).unwrap();
    std::fs::write(certs.path("key.pem"), ck.key_pair.serialize_pem()).unwrap();
    let d = Daemon::start_full(
        "tcp-tls",
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

    // REGISTER over TCP: challenge and 200 on the same connection.
    let tcp = TcpStream::connect(("127.0.0.1", tcp_port)).unwrap();
    tcp.set_read_timeout(Some(Duration::from_millis(200)))
        .unwrap();
    let local = tcp.local_addr().unwrap();
    let mut ua = StreamUa::new(tcp);
    ua.send(&register(local, "TCP", tcp_port, 1, None));
    let Message::Response(r) = ua.recv(5) else {
        panic!("expected a response")
    };
    assert_eq!(r.code, 401, "{r:?}");
    let auth = authorization(&r, tcp_port);
    ua.send(&register(local, "TCP", tcp_port, 2, Some(&auth)));
    let Message::Response(r) = ua.recv(5) else {
        panic!("expected a response")
    };
    assert_eq!(r.code, 200, "{r:?}");
    let regs = d.ctl_json(&["show", "registrations"]);
    assert!(regs.to_string().contains(&local.to_string()), "{regs}");

    // Keepalive ping -> pong.
    ua.send("\r\n\r\n");

    // A UDP caller reaches the TCP phone over its connection.
    if have_baresip() {
        let mut caller = ua_args(&d, "call", 1002);
        caller.extend([s("--dial"), s("1001"), s("--no-media-check")]);
        let mut a = Ua::spawn(&d.dir, "a", &caller);
        let Message::Request(inv) = ua.recv(20) else {
            panic!("expected the INVITE")
        };
        assert_eq!(inv.method.to_string(), "INVITE");
        assert!(ua.pongs >= 1, "no pong for the keepalive ping");
        ua.send(&response_to(&inv, 486, "Busy Here"));
        let Message::Request(ack) = ua.recv(5) else {
            panic!("expected the ACK")
        };
        assert_eq!(ack.method.to_string(), "ACK");
        assert_eq!(a.wait(30), 1);
        let closed = a.event("closed").expect("closed");
        assert_eq!(closed["status"], 486, "{closed}");
    }

    // A message without Content-Length closes only that connection.
    let mut bad = TcpStream::connect(("127.0.0.1", tcp_port)).unwrap();
    bad.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    bad.write_all(b"OPTIONS sip:x SIP/2.0\r\nVia: SIP/2.0/TCP 127.0.0.1:9;branch=z9hG4bKx\r\n\r\n")
        .unwrap();
    let mut b = [0u8; 64];
    assert_eq!(bad.read(&mut b).unwrap_or(0), 0, "connection closed");

    // OPTIONS over TLS is answered on the TLS connection.
    use tokio_rustls::rustls;
    let mut roots = rustls::RootCertStore::empty();
    roots.add(ck.cert.der().clone()).unwrap();
    let provider = std::sync::Arc::new(rustls::crypto::ring::default_provider());
    let cfg = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    let conn =
        rustls::ClientConnection::new(std::sync::Arc::new(cfg), "localhost".try_into().unwrap())
            .unwrap();
    let sock = TcpStream::connect(("127.0.0.1", tls_port)).unwrap();
    sock.set_read_timeout(Some(Duration::from_millis(200)))
        .unwrap();
    let tls_local = sock.local_addr().unwrap();
    let mut tua = StreamUa::new(rustls::StreamOwned::new(conn, sock));
    tua.send(&format!(
        "OPTIONS sip:127.0.0.1:{tls_port} SIP/2.0\r\n\
         Via: SIP/2.0/TLS {tls_local};rport;branch=z9hG4bK-opt1\r\n\
         Max-Forwards: 70\r\nFrom: <sip:probe@tandem>;tag=p\r\nTo: <sip:127.0.0.1>\r\n\
         Call-ID: tls-opt-1\r\nCSeq: 1 OPTIONS\r\nContent-Length: 0\r\n\r\n"
    ));
    let Message::Response(r) = tua.recv(5) else {
        panic!("expected a response")
    };
    assert_eq!(r.code, 200, "{r:?}");

    // The daemon still serves UDP and TCP.
    let tcp2 = TcpStream::connect(("127.0.0.1", tcp_port)).unwrap();
    tcp2.set_read_timeout(Some(Duration::from_millis(200)))
        .unwrap();
    let l2 = tcp2.local_addr().unwrap();
    let mut ua2 = StreamUa::new(tcp2);
    ua2.send(&register(l2, "TCP", tcp_port, 1, None));
    let Message::Response(r) = ua2.recv(5) else {
        panic!("expected a response")
    };
    assert_eq!(r.code, 401);
}

#[test]
fn tls_listener_without_certificate_is_a_config_error() {
    let dir = TempDir::new("tls-check");
    let conf = dir.path("tandem.toml");
    std::fs::write(
        &conf,
        "[sip]\nlisten = [\"udp:127.0.0.1:5060\", \"tls:127.0.0.1:5061\"]\n",
    )
    .unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_tandemd"))
        .arg("--check-config")
        .arg(&conf)
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("tandem.toml:2") && err.contains("tls_certificate"),
        "{err}"
    );
    std::fs::write(&conf, "[sip]\nlisten = [\"tcp:127.0.0.1:5060\"]\n").unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_tandemd"))
        .arg("--check-config")
        .arg(&conf)
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("udp:"), "{err}");
}
