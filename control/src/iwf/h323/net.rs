//! The tokio edge of the H.323 IWF: its SIP UDP socket, the H.225.0 listener,
//! one reader and one writer task per TCP connection, and the clock. All
//! decisions are [`H323Iwf`]'s.

use std::collections::HashMap;
use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream, UdpSocket};
use tokio::sync::mpsc;

use super::{ConnId, H323Iwf, IwfConfig, Output};
use crate::sdp::Codec;

/// What the IWF is started with.
#[derive(Debug, Clone)]
pub struct Settings {
    /// H.225.0 listener (`[h323] listen`); `None`: outgoing calls only.
    pub listen: Option<SocketAddr>,
    /// The engine's SIP address (tandemd's first UDP listener).
    pub engine: SocketAddr,
    /// Codecs allowed on the H.323 side (empty: any).
    pub codecs: Vec<Codec>,
}

/// A running IWF: the address the engine must treat as the H.323 gateway.
#[derive(Debug)]
pub struct Handle {
    /// The IWF's SIP address.
    pub sip_addr: SocketAddr,
    /// Where H.225.0 calls are accepted, if anywhere.
    pub h225_addr: Option<SocketAddr>,
    task: tokio::task::JoinHandle<()>,
}

impl Handle {
    /// Stops the IWF (its connections drop).
    pub fn abort(&self) {
        self.task.abort();
    }
}

#[expect(clippy::disallowed_methods, reason = "the edge owns the clock")]
fn now() -> Instant {
    Instant::now()
}

/// Events from the socket tasks to the run loop.
enum Ev {
    Sip(Vec<u8>, SocketAddr),
    Accepted(TcpStream, SocketAddr),
    Connected(ConnId, io::Result<TcpStream>),
    Data(ConnId, Vec<u8>),
    Closed(ConnId),
}

/// Binds the SIP socket (on the engine's loopback side) and the H.225.0 listener,
/// and spawns the IWF. Must run inside a tokio runtime.
pub async fn spawn(s: Settings) -> io::Result<Handle> {
    let bind_ip = if s.engine.ip().is_unspecified() {
        std::net::IpAddr::from([127, 0, 0, 1])
    } else {
        s.engine.ip()
    };
    let engine = SocketAddr::new(bind_ip, s.engine.port());
    let sip = Arc::new(UdpSocket::bind(SocketAddr::new(bind_ip, 0)).await?);
    let sip_addr = sip.local_addr()?;
    let listener = match s.listen {
        Some(a) => Some(TcpListener::bind(a).await?),
        None => None,
    };
    let h225_addr = match &listener {
        Some(l) => Some(l.local_addr()?),
        None => None,
    };
    let iwf = H323Iwf::new(IwfConfig {
        sip_addr,
        engine,
        codecs: s.codecs,
        tunnelling: true,
    });
    let task = tokio::spawn(run(iwf, sip, listener));
    Ok(Handle {
        sip_addr,
        h225_addr,
        task,
    })
}

async fn run(mut iwf: H323Iwf, sip: Arc<UdpSocket>, listener: Option<TcpListener>) {
    let (tx, mut rx) = mpsc::channel::<Ev>(1024);
    {
        let sip = sip.clone();
        let tx = tx.clone();
        tokio::spawn(async move {
            let mut buf = vec![0u8; 65_535];
            loop {
                match sip.recv_from(&mut buf).await {
                    Ok((n, from)) => {
                        if tx.send(Ev::Sip(buf[..n].to_vec(), from)).await.is_err() {
                            return;
                        }
                    }
                    Err(_) => continue,
                }
            }
        });
    }
    if let Some(l) = listener {
        let tx = tx.clone();
        tokio::spawn(async move {
            loop {
                match l.accept().await {
                    Ok((s, from)) => {
                        if tx.send(Ev::Accepted(s, from)).await.is_err() {
                            return;
                        }
                    }
                    Err(e) => {
                        tracing::warn!("h323: accept failed: {e}");
                        tokio::time::sleep(Duration::from_millis(100)).await;
                    }
                }
            }
        });
    }
    let mut writers: HashMap<ConnId, mpsc::UnboundedSender<Option<Vec<u8>>>> = HashMap::new();
    // Writes queued before an outgoing connection is up.
    let mut waiting: HashMap<ConnId, Vec<Option<Vec<u8>>>> = HashMap::new();
    loop {
        let deadline = iwf.poll_timeout();
        let sleep = async {
            match deadline {
                Some(d) => tokio::time::sleep_until(d.into()).await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            ev = rx.recv() => {
                let Some(ev) = ev else { return };
                let t = now();
                match ev {
                    Ev::Sip(b, from) => iwf.handle_sip(&b, from, t),
                    Ev::Accepted(s, from) => {
                        let id = iwf.handle_accepted(rand::random(), t);
                        tracing::info!("h323: call {} from {from}", id.0);
                        start_conn(id, s, &tx, &mut writers);
                    }
                    Ev::Connected(id, Ok(s)) => {
                        start_conn(id, s, &tx, &mut writers);
                        if let (Some(w), Some(q)) = (writers.get(&id), waiting.remove(&id)) {
                            for item in q {
                                let _ = w.send(item);
                            }
                        }
                        iwf.handle_connected(id, t);
                    }
                    Ev::Connected(id, Err(e)) => {
                        tracing::info!("h323: call {}: connect failed: {e}", id.0);
                        waiting.remove(&id);
                        iwf.handle_connect_failed(id, t);
                    }
                    Ev::Data(id, b) => iwf.handle_h225(id, &b, t),
                    Ev::Closed(id) => {
                        writers.remove(&id);
                        iwf.handle_closed(id, t);
                    }
                }
            }
            _ = sleep => iwf.handle_timeout(now()),
        }
        while let Some(o) = iwf.poll_output() {
            match o {
                Output::Sip(t) => {
                    if let Err(e) = sip.send_to(&t.bytes, t.dest).await {
                        tracing::warn!("h323 iwf: SIP send to {} failed: {e}", t.dest);
                    }
                }
                Output::Connect { conn, addr } => {
                    waiting.insert(conn, Vec::new());
                    let tx = tx.clone();
                    tokio::spawn(async move {
                        let r =
                            tokio::time::timeout(Duration::from_secs(5), TcpStream::connect(addr))
                                .await
                                .unwrap_or_else(|_| {
                                    Err(io::Error::new(
                                        io::ErrorKind::TimedOut,
                                        "connect timed out",
                                    ))
                                });
                        let _ = tx.send(Ev::Connected(conn, r)).await;
                    });
                }
                Output::Write { conn, bytes } => match writers.get(&conn) {
                    Some(w) => {
                        let _ = w.send(Some(bytes));
                    }
                    None => {
                        if let Some(q) = waiting.get_mut(&conn) {
                            q.push(Some(bytes));
                        }
                    }
                },
                Output::Close { conn } => {
                    if let Some(w) = writers.remove(&conn) {
                        let _ = w.send(None);
                    } else if let Some(q) = waiting.get_mut(&conn) {
                        q.push(None);
                    }
                }
            }
        }
        for line in iwf.drain_log() {
            tracing::info!("h323 iwf: {line}");
        }
    }
}

/// Splits an established connection into a reader task (feeding the run loop)
/// and a writer task (draining its channel; `None` closes).
fn start_conn(
    id: ConnId,
    s: TcpStream,
    tx: &mpsc::Sender<Ev>,
    writers: &mut HashMap<ConnId, mpsc::UnboundedSender<Option<Vec<u8>>>>,
) {
    let _ = s.set_nodelay(true);
    let (mut rd, mut wr) = s.into_split();
    let (wtx, mut wrx) = mpsc::unbounded_channel::<Option<Vec<u8>>>();
    writers.insert(id, wtx);
    tokio::spawn(async move {
        while let Some(item) = wrx.recv().await {
            match item {
                Some(b) => {
                    if wr.write_all(&b).await.is_err() {
                        break;
                    }
                }
                None => break,
            }
        }
        let _ = wr.shutdown().await;
    });
    let tx = tx.clone();
    tokio::spawn(async move {
        let mut buf = vec![0u8; 8192];
        loop {
            match rd.read(&mut buf).await {
                Ok(0) | Err(_) => {
                    let _ = tx.send(Ev::Closed(id)).await;
                    return;
                }
                Ok(n) => {
                    if tx.send(Ev::Data(id, buf[..n].to_vec())).await.is_err() {
                        return;
                    }
                }
            }
        }
    });
}
