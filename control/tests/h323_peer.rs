//! Interop with h323peer (`../shared/peers/h323peer`, asn1tools PER, written
//! by no one here) on loopback: Tandem calls it and it calls Tandem, with
//! fastStart media agreed (checked by real RTP arriving at the negotiated
//! addresses) and Release Complete causes carried both ways.
//!
//! Skips with a message when Python 3 or asn1tools is missing.

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc as smpsc;
use std::time::Duration;

use control::h323::call::{CallConfig, CallEvent, H323Call, Media};
use control::h323::cause::{q850_to_sip, sip_to_q850};
use control::h323::h245::Codec;
use control::h323::net::{self, Command as Cmd};
use serde_json::Value;
use tokio::net::{TcpListener, UdpSocket};
use tokio::sync::mpsc;
use tokio::time::timeout;

const PEER: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../../shared/peers/h323peer/h323peer.py"
);

fn available() -> bool {
    if !std::path::Path::new(PEER).exists() {
        eprintln!("SKIP: {PEER} not found");
        return false;
    }
    let ok = Command::new("python3")
        .args(["-c", "import asn1tools"])
        .status()
        .is_ok_and(|s| s.success());
    if !ok {
        eprintln!("SKIP: python3 with asn1tools not available (pip install -r requirements.txt)");
    }
    ok
}

/// A running h323peer: its JSON lines arrive on `lines`.
struct Peer {
    child: Child,
    lines: smpsc::Receiver<Value>,
    seen: Vec<Value>,
}

impl Peer {
    fn spawn(args: &[&str]) -> Peer {
        let mut child = Command::new("python3")
            .arg(PEER)
            .args(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("spawn h323peer");
        let out = child.stdout.take().expect("stdout");
        let (tx, lines) = smpsc::channel();
        std::thread::spawn(move || {
            for l in BufReader::new(out).lines().map_while(Result::ok) {
                if let Ok(v) = serde_json::from_str::<Value>(&l) {
                    if tx.send(v).is_err() {
                        break;
                    }
                }
            }
        });
        Peer {
            child,
            lines,
            seen: Vec::new(),
        }
    }

    /// Waits for the first line with `event` (60 s: the ASN.1 compile is slow
    /// on a loaded machine).
    fn wait(&mut self, event: &str) -> Value {
        loop {
            let v = self
                .lines
                .recv_timeout(Duration::from_secs(60))
                .unwrap_or_else(|_| panic!("h323peer: no {event} line; saw {:?}", self.seen));
            self.seen.push(v.clone());
            if v["event"] == event {
                return v;
            }
        }
    }

    /// Exit status and every line printed.
    fn finish(mut self) -> (i32, Vec<Value>) {
        let r = self.wait("result");
        let code = self.child.wait().expect("wait").code().unwrap_or(-1);
        assert_eq!(r["code"].as_i64(), Some(i64::from(code)));
        (code, self.seen)
    }

    fn rx<'a>(seen: &'a [Value], msg: &str) -> Option<&'a Value> {
        seen.iter().find(|v| v["event"] == "rx" && v["msg"] == msg)
    }
}

fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime")
}

fn cfg(rtp: SocketAddr, codecs: &[Codec]) -> CallConfig {
    CallConfig {
        local_rtp: rtp,
        codecs: codecs.to_vec(),
        tunnelling: false,
        version: 4,
    }
}

async fn next(ev: &mut mpsc::Receiver<CallEvent>) -> CallEvent {
    timeout(Duration::from_secs(120), ev.recv())
        .await
        .expect("call event within 120 s (the peer compiles its ASN.1 first)")
        .expect("call task alive")
}

/// Sends 20 ms G.711 packets of silence to `to` for `ms` and counts the RTP
/// packets received on `sock` meanwhile.
async fn exchange_rtp(sock: &UdpSocket, to: SocketAddr, pt: u8, ms: u64) -> usize {
    let mut rx = 0;
    let mut buf = [0u8; 2048];
    for seq in 0..ms / 20 {
        let mut p = vec![0x80, pt, 0, seq as u8, 0, 0, 0, 0, 0x12, 0x34, 0x56, 0x78];
        p[7] = (seq * 160) as u8;
        p.extend(std::iter::repeat_n(0xD5, 160));
        let _ = sock.send_to(&p, to).await;
        let deadline = tokio::time::sleep(Duration::from_millis(20));
        tokio::pin!(deadline);
        loop {
            tokio::select! {
                r = sock.recv_from(&mut buf) => if let Ok((n, _)) = r {
                    if n > 12 && buf[0] >> 6 == 2 { rx += 1; }
                },
                _ = &mut deadline => break,
            }
        }
    }
    rx
}

#[test]
fn tandem_calls_h323peer_faststart_connect_release() {
    if !available() {
        return;
    }
    let mut peer = Peer::spawn(&[
        "listen",
        "--listen",
        "127.0.0.1:0",
        "--codecs",
        "pcmu,pcma",
        "--expect-calling",
        "1000",
        "--expect-called",
        "2000",
        "--tone",
        "440",
        "--expect-rtp",
        "--duration",
        "30",
        "--expect-cause",
        "16",
    ]);
    let addr: SocketAddr = peer.wait("listening")["addr"]
        .as_str()
        .expect("addr")
        .parse()
        .expect("socket address");
    let rx_rtp = rt().block_on(async {
        let rtp = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let call = H323Call::outgoing(
            cfg(
                rtp.local_addr().unwrap(),
                &[Codec::Pcma, Codec::Pcmu, Codec::G729],
            ),
            0x1234,
            *b"tandem-callid-01",
            *b"tandem-confid-01",
        );
        let (ctx, crx) = mpsc::channel(8);
        let (etx, mut erx) = mpsc::channel(32);
        let task = tokio::spawn(net::connect(addr, call, crx, etx));
        ctx.send(Cmd::Setup {
            calling: "1000".into(),
            called: "2000".into(),
            display: Some("Alice".into()),
            restricted: false,
        })
        .await
        .unwrap();
        assert_eq!(next(&mut erx).await, CallEvent::Proceeding);
        let CallEvent::Alerting(Some(m)) = next(&mut erx).await else {
            panic!("expected Alerting with the fastStart answer")
        };
        let CallEvent::Connected(Some(m2)) = next(&mut erx).await else {
            panic!("expected Connected")
        };
        assert_eq!(m, m2);
        // The peer accepts pcmu first but picks the caller's order: pcma.
        assert_eq!(m.codec, Codec::Pcma);
        let to = m.remote_rtp.expect("peer RTP address");
        let n = exchange_rtp(&rtp, to, 8, 1000).await;
        ctx.send(Cmd::Release(16)).await.unwrap();
        assert_eq!(
            next(&mut erx).await,
            CallEvent::Released {
                cause: 16,
                remote: false
            }
        );
        task.await.unwrap().unwrap();
        n
    });
    let (code, seen) = peer.finish();
    let setup = Peer::rx(&seen, "setup").expect("peer saw setup");
    assert_eq!(setup["calling"], "1000");
    assert_eq!(setup["called"], "2000");
    assert_eq!(setup["display"], "Alice");
    assert_eq!(setup["uu_calling"], "1000");
    assert_eq!(
        setup["offered"],
        serde_json::json!(["pcma", "pcmu", "g729"])
    );
    assert_eq!(Peer::rx(&seen, "releaseComplete").expect("rc")["cause"], 16);
    assert_eq!(code, 0, "h323peer result: {:?}", seen.last());
    assert!(
        rx_rtp > 10,
        "RTP from the peer reached the agreed address ({rx_rtp} packets)"
    );
}

#[test]
fn tandem_call_rejected_busy_maps_to_486() {
    if !available() {
        return;
    }
    let mut peer = Peer::spawn(&[
        "listen",
        "--listen",
        "127.0.0.1:0",
        "--scenario",
        "reject",
        "--cause",
        "17",
    ]);
    let addr: SocketAddr = peer.wait("listening")["addr"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    let ev = rt().block_on(async {
        let call = H323Call::outgoing(
            cfg("127.0.0.1:40000".parse().unwrap(), &[Codec::Pcma]),
            7,
            [9; 16],
            [8; 16],
        );
        let (_ctx, crx) = mpsc::channel(8);
        let (etx, mut erx) = mpsc::channel(32);
        let task = tokio::spawn(net::connect(addr, call, crx, etx));
        _ctx.send(Cmd::Setup {
            calling: "555".into(),
            called: "666".into(),
            display: None,
            restricted: true,
        })
        .await
        .unwrap();
        assert_eq!(next(&mut erx).await, CallEvent::Proceeding);
        let ev = next(&mut erx).await;
        task.await.unwrap().unwrap();
        ev
    });
    assert_eq!(
        ev,
        CallEvent::Released {
            cause: 17,
            remote: true
        }
    );
    assert_eq!(q850_to_sip(17), 486);
    let (code, seen) = peer.finish();
    assert_eq!(code, 0, "{seen:?}");
    assert_eq!(
        Peer::rx(&seen, "setup").unwrap()["calling_pi"],
        "restricted"
    );
}

#[test]
fn h323peer_calls_tandem_answer_and_callee_hangup() {
    if !available() {
        return;
    }
    rt().block_on(async {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let rtp = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let target = format!("127.0.0.1:{port}");
        let peer = Peer::spawn(&[
            "call",
            &target,
            "--from",
            "1000",
            "--to",
            "2000",
            "--display",
            "Bob",
            "--codecs",
            "pcma,pcmu",
            "--hangup",
            "callee",
            "--duration",
            "30",
            "--tone",
            "1000",
            "--expect-rtp",
            "--expect-codec",
            "pcmu",
            "--expect-cause",
            "16",
        ]);
        let call = H323Call::incoming(cfg(rtp.local_addr().unwrap(), &[Codec::Pcmu]), 42);
        let (ctx, crx) = mpsc::channel(8);
        let (etx, mut erx) = mpsc::channel(32);
        let task = tokio::spawn(async move { net::accept(&listener, call, crx, etx).await });
        let CallEvent::Incoming {
            called,
            calling,
            display,
            restricted,
            offered,
            media,
        } = next(&mut erx).await
        else {
            panic!("expected Incoming")
        };
        assert_eq!(called.as_deref(), Some("2000"));
        assert_eq!(calling.as_deref(), Some("1000"));
        assert_eq!(display.as_deref(), Some("Bob"));
        assert!(!restricted);
        assert_eq!(offered, vec![Codec::Pcma, Codec::Pcmu]);
        let Some(Media {
            codec: Codec::Pcmu,
            remote_rtp: Some(to),
        }) = media
        else {
            panic!("media {media:?}")
        };
        for c in [Cmd::Proceeding, Cmd::Alerting, Cmd::Connect] {
            ctx.send(c).await.unwrap();
        }
        let n = exchange_rtp(&rtp, to, 0, 1000).await;
        assert!(n > 10, "peer's RTP reached Tandem's answer address ({n})");
        ctx.send(Cmd::Release(sip_to_q850(487))).await.unwrap();
        assert_eq!(
            next(&mut erx).await,
            CallEvent::Released {
                cause: 16,
                remote: false
            }
        );
        task.await.unwrap().unwrap();
        let (code, seen) = tokio::task::spawn_blocking(|| peer.finish()).await.unwrap();
        assert_eq!(code, 0, "{seen:?}");
        let conn = Peer::rx(&seen, "connect").expect("peer saw connect");
        assert_eq!(conn["codec"], "pcmu");
        assert_eq!(conn["rtp"], rtp.local_addr().unwrap().to_string());
    });
}

#[test]
fn h323peer_call_rejected_by_tandem_with_busy() {
    if !available() {
        return;
    }
    rt().block_on(async {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let target = format!("127.0.0.1:{}", listener.local_addr().unwrap().port());
        let peer = Peer::spawn(&[
            "call",
            &target,
            "--scenario",
            "reject",
            "--expect-cause",
            "17",
        ]);
        let call = H323Call::incoming(cfg("127.0.0.1:40002".parse().unwrap(), &[Codec::Pcma]), 1);
        let (ctx, crx) = mpsc::channel(8);
        let (etx, mut erx) = mpsc::channel(32);
        let task = tokio::spawn(async move { net::accept(&listener, call, crx, etx).await });
        assert!(matches!(next(&mut erx).await, CallEvent::Incoming { .. }));
        ctx.send(Cmd::Proceeding).await.unwrap();
        ctx.send(Cmd::Release(sip_to_q850(486))).await.unwrap();
        task.await.unwrap().unwrap();
        let (code, seen) = tokio::task::spawn_blocking(|| peer.finish()).await.unwrap();
        assert_eq!(code, 0, "{seen:?}");
        assert_eq!(Peer::rx(&seen, "releaseComplete").unwrap()["cause"], 17);
    });
}
