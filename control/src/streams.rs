//! The stream edge: SIP over TCP and TLS (RFC 3261 §18, sips: on 5061).
//!
//! Glue like [`crate::net`]: it accepts connections, frames each byte stream
//! into messages with the sans-IO [`crate::sip::stream::Framer`], and hands every
//! message to the run loop as `(bytes, peer)`, the same shape a UDP datagram
//! has, so the engine and the defence gate treat both alike. Keepalive pings
//! (RFC 5626 CRLF CRLF) are answered here.
//!
//! Sending: [`StreamSet::send`] writes a message on the open connection to the
//! destination (responses go back on the connection the request came in on,
//! §18.2.2, and requests to a user reuse the connection it registered over).
//! When the destination port is not a connection's peer port (a response
//! routed by a Via without `rport` names the client's listening port), the
//! one connection open from that IP is used. `send` reports `false` when no
//! connection fits, and the caller falls back to UDP.
//!
//! Requests ([`StreamSet::send_request`]) whose top Via names TCP or TLS never fall back to
//! UDP: they go on the connection open to the destination (the flow a user registered over),
//! else on one open to the fallback address (the Request-URI's host and port: the Contact a
//! user registered), else on a new outbound connection to that address, opened in the
//! background while the message waits in its queue (RFC 3261 §18.1.1). Outbound TLS verifies
//! the peer's certificate against [`StreamSet::with_tls_client`]'s roots, by IP address.
//!
//! Limits: at most [`MAX_CONNECTIONS`] connections; a connection idle for
//! [`IDLE`] is closed; a framing error (no Content-Length, oversize message)
//! closes the connection with a log line naming the peer and what was wrong,
//! and is counted. TLS uses rustls with the certificate chain and private key
//! named in config (PEM files).

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;

use crate::sip::stream::{Frame, Framer, Limits, PONG};
use crate::sip::transport::Transport;

/// How long an outbound connection (TCP connect plus TLS handshake) may take.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// Most connections served at once; more are refused (closed at accept).
pub const MAX_CONNECTIONS: usize = 4096;
/// A connection that carries nothing for this long is closed.
pub const IDLE: Duration = Duration::from_secs(600);

/// Errors setting up a stream listener.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StreamError {
    #[error("cannot listen on {transport}:{addr}: {source}")]
    Bind {
        transport: &'static str,
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("TLS certificate {path}: {what}")]
    Certificate { path: String, what: String },
    #[error("TLS private key {path}: {what}")]
    Key { path: String, what: String },
    #[error("TLS configuration: {0}")]
    Tls(String),
}

/// Counters of the stream edge (for `show sip`).
#[derive(Debug, Default)]
pub struct StreamStats {
    pub accepted: AtomicU64,
    pub refused: AtomicU64,
    pub framing_errors: AtomicU64,
    pub tls_handshake_failures: AtomicU64,
    /// Outbound connections opened / failed.
    pub connected: AtomicU64,
    pub connect_failures: AtomicU64,
    pub messages_in: AtomicU64,
    pub messages_out: AtomicU64,
    pub pings: AtomicU64,
}

/// A snapshot of [`StreamStats`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct StreamCounts {
    pub open: usize,
    pub accepted: u64,
    pub refused: u64,
    pub framing_errors: u64,
    pub tls_handshake_failures: u64,
    pub connected: u64,
    pub connect_failures: u64,
    pub messages_in: u64,
    pub messages_out: u64,
    pub pings: u64,
}

struct Conn {
    tx: mpsc::Sender<Vec<u8>>,
}

/// The open stream connections, shared by the listeners and the run loop.
#[derive(Clone, Default)]
pub struct StreamSet {
    conns: Arc<Mutex<HashMap<SocketAddr, Conn>>>,
    stats: Arc<StreamStats>,
    /// Client side of outbound TLS connections (`None`: outbound TLS is refused).
    tls_client: Option<Arc<tokio_rustls::rustls::ClientConfig>>,
}

impl std::fmt::Debug for StreamSet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StreamSet")
            .field("open", &self.open())
            .finish()
    }
}

impl StreamSet {
    pub fn new() -> StreamSet {
        StreamSet::default()
    }

    /// Allow outbound TLS connections with this client configuration (set before the set is
    /// cloned into listeners).
    pub fn with_tls_client(mut self, cfg: Arc<tokio_rustls::rustls::ClientConfig>) -> StreamSet {
        self.tls_client = Some(cfg);
        self
    }

    /// Queue a request for a stream transport: on the connection to `dest`, else on the one
    /// to `fallback`, else on a new outbound connection to `fallback` (or `dest` when there is
    /// none), opened in the background; messages arriving on it go to `inbound` like those of
    /// accepted connections. `false`: the message could not even be queued (outbound TLS
    /// without a client configuration, or the queue is full).
    pub fn send_request(
        &self,
        dest: SocketAddr,
        fallback: Option<SocketAddr>,
        bytes: &[u8],
        transport: Transport,
        inbound: &mpsc::Sender<(Vec<u8>, SocketAddr)>,
    ) -> bool {
        if self.send(dest, bytes, false) {
            return true;
        }
        if let Some(f) = fallback {
            if self.send(f, bytes, false) {
                return true;
            }
        }
        let target = fallback.unwrap_or(dest);
        let tls = match transport {
            Transport::Tls => match &self.tls_client {
                Some(c) => Some(c.clone()),
                None => {
                    tracing::warn!("SIP tls: no client configuration to connect to {target}");
                    return false;
                }
            },
            _ => None,
        };
        let (tx, rx) = self.register(target);
        if tx.try_send(bytes.to_vec()).is_err() {
            return false;
        }
        self.stats.messages_out.fetch_add(1, Ordering::Relaxed);
        let set = self.clone();
        let inbound = inbound.clone();
        tokio::spawn(async move {
            set.connect_and_serve(target, tls, inbound, tx, rx).await;
        });
        true
    }

    async fn connect_and_serve(
        &self,
        target: SocketAddr,
        tls: Option<Arc<tokio_rustls::rustls::ClientConfig>>,
        inbound: mpsc::Sender<(Vec<u8>, SocketAddr)>,
        tx: mpsc::Sender<Vec<u8>>,
        rx: mpsc::Receiver<Vec<u8>>,
    ) {
        let name = if tls.is_some() { "tls" } else { "tcp" };
        let connected = tokio::time::timeout(CONNECT_TIMEOUT, async {
            let sock = TcpStream::connect(target).await?;
            let _ = sock.set_nodelay(true);
            Ok::<_, std::io::Error>(sock)
        })
        .await;
        let sock = match connected {
            Ok(Ok(s)) => s,
            Ok(Err(e)) => return self.connect_failed(target, name, &tx, &e.to_string()),
            Err(_) => return self.connect_failed(target, name, &tx, "timed out"),
        };
        match tls {
            None => {
                self.stats.connected.fetch_add(1, Ordering::Relaxed);
                tracing::info!("SIP tcp: connected to {target}");
                self.serve_registered(sock, target, inbound, name, tx, rx)
                    .await
            }
            Some(cfg) => {
                let server =
                    tokio_rustls::rustls::pki_types::ServerName::IpAddress(target.ip().into());
                let conn = tokio_rustls::TlsConnector::from(cfg);
                match tokio::time::timeout(CONNECT_TIMEOUT, conn.connect(server, sock)).await {
                    Ok(Ok(s)) => {
                        self.stats.connected.fetch_add(1, Ordering::Relaxed);
                        tracing::info!("SIP tls: connected to {target}");
                        self.serve_registered(s, target, inbound, name, tx, rx)
                            .await
                    }
                    Ok(Err(e)) => {
                        self.stats
                            .tls_handshake_failures
                            .fetch_add(1, Ordering::Relaxed);
                        self.connect_failed(target, name, &tx, &e.to_string())
                    }
                    Err(_) => self.connect_failed(target, name, &tx, "TLS handshake timed out"),
                }
            }
        }
    }

    /// Forget a connection that could not be opened; its queued messages are dropped (their
    /// transactions time out).
    fn connect_failed(
        &self,
        target: SocketAddr,
        name: &str,
        tx: &mpsc::Sender<Vec<u8>>,
        why: &str,
    ) {
        self.stats.connect_failures.fetch_add(1, Ordering::Relaxed);
        tracing::warn!("SIP {name}: cannot connect to {target}: {why}");
        if let Ok(mut c) = self.conns.lock() {
            if c.get(&target).is_some_and(|c| c.tx.same_channel(tx)) {
                c.remove(&target);
            }
        }
    }

    /// Connections open now.
    pub fn open(&self) -> usize {
        self.conns.lock().map(|c| c.len()).unwrap_or(0)
    }

    pub fn counts(&self) -> StreamCounts {
        let s = &self.stats;
        StreamCounts {
            open: self.open(),
            accepted: s.accepted.load(Ordering::Relaxed),
            refused: s.refused.load(Ordering::Relaxed),
            framing_errors: s.framing_errors.load(Ordering::Relaxed),
            tls_handshake_failures: s.tls_handshake_failures.load(Ordering::Relaxed),
            connected: s.connected.load(Ordering::Relaxed),
            connect_failures: s.connect_failures.load(Ordering::Relaxed),
            messages_in: s.messages_in.load(Ordering::Relaxed),
            messages_out: s.messages_out.load(Ordering::Relaxed),
            pings: s.pings.load(Ordering::Relaxed),
        }
    }

    /// Queue `bytes` on the connection whose peer is `dest`; with `same_ip`
    /// (a response whose Via names a stream transport) also on the one
    /// connection open from `dest`'s IP. `false`: no stream connection fits;
    /// send by datagram.
    pub fn send(&self, dest: SocketAddr, bytes: &[u8], same_ip: bool) -> bool {
        let Ok(conns) = self.conns.lock() else {
            return false;
        };
        let conn = conns.get(&dest).or_else(|| {
            if !same_ip {
                return None;
            }
            let mut same_ip = conns.iter().filter(|(a, _)| a.ip() == dest.ip());
            match (same_ip.next(), same_ip.next()) {
                (Some((_, c)), None) => Some(c),
                _ => None,
            }
        });
        match conn {
            Some(c) => {
                if c.tx.try_send(bytes.to_vec()).is_ok() {
                    self.stats.messages_out.fetch_add(1, Ordering::Relaxed);
                    true
                } else {
                    // Writer gone or 256 messages backed up: the peer is not reading.
                    false
                }
            }
            None => false,
        }
    }

    /// Bind a TCP (`tls = None`) or TLS listener and serve it in the background.
    /// Messages go to `inbound` as `(bytes, peer)`. Returns the bound address.
    pub async fn listen(
        &self,
        addr: SocketAddr,
        tls: Option<Arc<tokio_rustls::rustls::ServerConfig>>,
        inbound: mpsc::Sender<(Vec<u8>, SocketAddr)>,
    ) -> Result<SocketAddr, StreamError> {
        let transport = if tls.is_some() { "tls" } else { "tcp" };
        let listener = TcpListener::bind(addr)
            .await
            .map_err(|source| StreamError::Bind {
                transport,
                addr,
                source,
            })?;
        let local = listener.local_addr().unwrap_or(addr);
        let set = self.clone();
        let acceptor = tls.map(tokio_rustls::TlsAcceptor::from);
        tokio::spawn(async move {
            loop {
                let Ok((sock, peer)) = listener.accept().await else {
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                };
                if set.open() >= MAX_CONNECTIONS {
                    set.stats.refused.fetch_add(1, Ordering::Relaxed);
                    tracing::warn!(
                        "SIP {transport}: refused {peer}: {MAX_CONNECTIONS} connections open"
                    );
                    continue;
                }
                set.stats.accepted.fetch_add(1, Ordering::Relaxed);
                let _ = sock.set_nodelay(true);
                let set = set.clone();
                let inbound = inbound.clone();
                let acceptor = acceptor.clone();
                tokio::spawn(async move {
                    match acceptor {
                        None => set.serve(sock, peer, inbound, transport).await,
                        Some(acc) => {
                            match tokio::time::timeout(Duration::from_secs(10), acc.accept(sock))
                                .await
                            {
                                Ok(Ok(tls)) => set.serve(tls, peer, inbound, transport).await,
                                Ok(Err(e)) => {
                                    set.stats
                                        .tls_handshake_failures
                                        .fetch_add(1, Ordering::Relaxed);
                                    tracing::info!("SIP tls: handshake with {peer} failed: {e}");
                                }
                                Err(_) => {
                                    set.stats
                                        .tls_handshake_failures
                                        .fetch_add(1, Ordering::Relaxed);
                                    tracing::info!("SIP tls: handshake with {peer} timed out");
                                }
                            }
                        }
                    }
                });
            }
        });
        Ok(local)
    }

    /// Enter a connection in the set; its writer queue.
    fn register(&self, peer: SocketAddr) -> (mpsc::Sender<Vec<u8>>, mpsc::Receiver<Vec<u8>>) {
        let (tx, rx) = mpsc::channel::<Vec<u8>>(256);
        if let Ok(mut c) = self.conns.lock() {
            c.insert(peer, Conn { tx: tx.clone() });
        }
        (tx, rx)
    }

    async fn serve<S>(
        &self,
        stream: S,
        peer: SocketAddr,
        inbound: mpsc::Sender<(Vec<u8>, SocketAddr)>,
        transport: &'static str,
    ) where
        S: AsyncRead + AsyncWrite + Send + Unpin + 'static,
    {
        let (tx, rx) = self.register(peer);
        self.serve_registered(stream, peer, inbound, transport, tx, rx)
            .await;
    }

    async fn serve_registered<S>(
        &self,
        stream: S,
        peer: SocketAddr,
        inbound: mpsc::Sender<(Vec<u8>, SocketAddr)>,
        transport: &'static str,
        tx: mpsc::Sender<Vec<u8>>,
        mut rx: mpsc::Receiver<Vec<u8>>,
    ) where
        S: AsyncRead + AsyncWrite + Send + Unpin + 'static,
    {
        let (mut rd, mut wr) = tokio::io::split(stream);
        let writer = tokio::spawn(async move {
            while let Some(m) = rx.recv().await {
                if wr.write_all(&m).await.is_err() {
                    break;
                }
            }
            let _ = wr.shutdown().await;
        });
        let mut framer = Framer::new(Limits::default());
        let mut buf = vec![0u8; 16 * 1024];
        'conn: loop {
            let n = match tokio::time::timeout(IDLE, rd.read(&mut buf)).await {
                Ok(Ok(0)) | Ok(Err(_)) => break,
                Ok(Ok(n)) => n,
                Err(_) => {
                    tracing::info!(
                        "SIP {transport}: closing {peer}: idle for {} s",
                        IDLE.as_secs()
                    );
                    break;
                }
            };
            framer.push(&buf[..n]);
            loop {
                match framer.next_frame() {
                    Ok(None) => break,
                    Ok(Some(Frame::Ping)) => {
                        self.stats.pings.fetch_add(1, Ordering::Relaxed);
                        let _ = tx.try_send(PONG.to_vec());
                    }
                    Ok(Some(Frame::Message(m))) => {
                        self.stats.messages_in.fetch_add(1, Ordering::Relaxed);
                        if inbound.send((m, peer)).await.is_err() {
                            break 'conn;
                        }
                    }
                    Err(e) => {
                        self.stats.framing_errors.fetch_add(1, Ordering::Relaxed);
                        tracing::warn!("SIP {transport}: closing {peer}: {e}");
                        break 'conn;
                    }
                }
            }
        }
        if let Ok(mut c) = self.conns.lock() {
            // Only our own entry: the peer may have reconnected from the same port.
            if c.get(&peer).is_some_and(|c| c.tx.same_channel(&tx)) {
                c.remove(&peer);
            }
        }
        drop(tx);
        let _ = writer.await;
    }
}

/// A rustls server configuration from PEM files: the certificate chain (leaf
/// first) and its private key (PKCS#8, PKCS#1 or SEC1).
pub fn tls_config(
    cert: &Path,
    key: &Path,
) -> Result<Arc<tokio_rustls::rustls::ServerConfig>, StreamError> {
    use tokio_rustls::rustls;
    use tokio_rustls::rustls::pki_types::pem::PemObject;
    use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer};
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(cert)
        .map_err(|e| StreamError::Certificate {
            path: cert.display().to_string(),
            what: e.to_string(),
        })?
        .collect::<Result<_, _>>()
        .map_err(|e| StreamError::Certificate {
            path: cert.display().to_string(),
            what: e.to_string(),
        })?;
    if certs.is_empty() {
        return Err(StreamError::Certificate {
            path: cert.display().to_string(),
            what: "no CERTIFICATE block".into(),
        });
    }
    let key_der = PrivateKeyDer::from_pem_file(key).map_err(|e| StreamError::Key {
        path: key.display().to_string(),
        what: e.to_string(),
    })?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let cfg = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| StreamError::Tls(e.to_string()))?
        .with_no_client_auth()
        .with_single_cert(certs, key_der)
        .map_err(|e| StreamError::Tls(e.to_string()))?;
    Ok(Arc::new(cfg))
}

/// A rustls client configuration for outbound TLS that trusts the certificates in the PEM
/// file `roots` (Tandem's own chain, or a CA bundle of the private PKI its phones use).
pub fn tls_client_config(
    roots: &Path,
) -> Result<Arc<tokio_rustls::rustls::ClientConfig>, StreamError> {
    use tokio_rustls::rustls;
    use tokio_rustls::rustls::pki_types::pem::PemObject;
    use tokio_rustls::rustls::pki_types::CertificateDer;
    let what = |e: &dyn std::fmt::Display| StreamError::Certificate {
        path: roots.display().to_string(),
        what: e.to_string(),
    };
    let mut store = rustls::RootCertStore::empty();
    for c in CertificateDer::pem_file_iter(roots).map_err(|e| what(&e))? {
        store.add(c.map_err(|e| what(&e))?).map_err(|e| what(&e))?;
    }
    if store.is_empty() {
        return Err(what(&"no CERTIFICATE block"));
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let cfg = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| StreamError::Tls(e.to_string()))?
        .with_root_certificates(store)
        .with_no_client_auth();
    Ok(Arc::new(cfg))
}

/// Connect to a stream peer (used for requests to a TCP/TLS destination that has
/// no open connection). Kept for the trunk side; plain TCP only here.
pub async fn connect_tcp(
    set: &StreamSet,
    dest: SocketAddr,
    inbound: mpsc::Sender<(Vec<u8>, SocketAddr)>,
) -> std::io::Result<()> {
    let sock = TcpStream::connect(dest).await?;
    let _ = sock.set_nodelay(true);
    // Registered before this returns, so an immediate `send` finds it.
    let (tx, rx) = set.register(dest);
    let set2 = set.clone();
    tokio::spawn(async move {
        set2.serve_registered(sock, dest, inbound, "tcp", tx, rx)
            .await
    });
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const OPTIONS: &str = "OPTIONS sip:tandem SIP/2.0\r\nVia: SIP/2.0/TCP 127.0.0.1:5999;rport;branch=z9hG4bK1\r\nFrom: <sip:a@b>;tag=1\r\nTo: <sip:tandem>\r\nCall-ID: x\r\nCSeq: 1 OPTIONS\r\nContent-Length: 0\r\n\r\n";

    async fn read_some<R: AsyncRead + Unpin>(r: &mut R) -> Vec<u8> {
        let mut b = vec![0u8; 4096];
        let n = tokio::time::timeout(Duration::from_secs(5), r.read(&mut b))
            .await
            .expect("read timed out")
            .expect("read");
        b.truncate(n);
        b
    }

    #[tokio::test]
    async fn tcp_frames_messages_answers_pings_and_routes_replies() {
        let set = StreamSet::new();
        let (in_tx, mut in_rx) = mpsc::channel(16);
        let addr = set
            .listen("127.0.0.1:0".parse().unwrap(), None, in_tx)
            .await
            .unwrap();
        let mut c = TcpStream::connect(addr).await.unwrap();
        let me = c.local_addr().unwrap();
        // Two messages split across writes, with a ping in between.
        let stream = format!("{OPTIONS}\r\n\r\n{OPTIONS}");
        let (a, b) = stream.as_bytes().split_at(37);
        c.write_all(a).await.unwrap();
        tokio::time::sleep(Duration::from_millis(20)).await;
        c.write_all(b).await.unwrap();
        for _ in 0..2 {
            let (m, from) = tokio::time::timeout(Duration::from_secs(5), in_rx.recv())
                .await
                .unwrap()
                .unwrap();
            assert_eq!(m, OPTIONS.as_bytes());
            assert_eq!(from, me);
        }
        assert_eq!(read_some(&mut c).await, PONG);
        // A reply to the peer goes on its connection; to the same IP at its
        // listening port (Via without rport) too; elsewhere not.
        assert!(set.send(me, b"SIP/2.0 200 OK\r\n\r\n", false));
        assert_eq!(read_some(&mut c).await, b"SIP/2.0 200 OK\r\n\r\n");
        assert!(!set.send("127.0.0.1:5999".parse().unwrap(), b"x", false));
        assert!(set.send("127.0.0.1:5999".parse().unwrap(), b"x", true));
        assert_eq!(read_some(&mut c).await, b"x");
        assert!(!set.send("127.0.0.2:5999".parse().unwrap(), b"x", true));
        let n = set.counts();
        assert_eq!((n.open, n.messages_in, n.pings), (1, 2, 1), "{n:?}");
        // A message without Content-Length closes the connection.
        c.write_all(b"BYE sip:x SIP/2.0\r\nVia: x\r\n\r\n")
            .await
            .unwrap();
        let mut b = [0u8; 16];
        let n = tokio::time::timeout(Duration::from_secs(5), c.read(&mut b))
            .await
            .unwrap()
            .unwrap_or(0);
        assert_eq!(n, 0, "connection closed");
        tokio::time::sleep(Duration::from_millis(20)).await;
        let n = set.counts();
        assert_eq!((n.open, n.framing_errors), (0, 1), "{n:?}");
    }

    #[tokio::test]
    async fn tls_with_pem_files() {
        use tokio_rustls::rustls;
        let ck = rcgen::generate_simple_self_signed(vec!["localhost".into()]).unwrap();
        let dir = std::env::temp_dir().join(format!("tandem-tls-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let (cert, key) = (dir.join("cert.pem"), dir.join("key.pem"));
        std::fs::write(&cert, ck.cert.pem()).unwrap();
        std::fs::write(&key, ck.key_pair.serialize_pem()).unwrap();
        let server = tls_config(&cert, &key).unwrap();
        // Bad files are named in the error.
        let e = tls_config(&key, &key).unwrap_err().to_string();
        assert!(e.contains("key.pem"), "{e}");
        let e = tls_config(&dir.join("missing.pem"), &key)
            .unwrap_err()
            .to_string();
        assert!(e.contains("missing.pem"), "{e}");

        let set = StreamSet::new();
        let (in_tx, mut in_rx) = mpsc::channel(16);
        let addr = set
            .listen("127.0.0.1:0".parse().unwrap(), Some(server), in_tx)
            .await
            .unwrap();
        let mut roots = rustls::RootCertStore::empty();
        roots.add(ck.cert.der().clone()).unwrap();
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let client = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_root_certificates(roots)
            .with_no_client_auth();
        let conn = tokio_rustls::TlsConnector::from(Arc::new(client));
        let tcp = TcpStream::connect(addr).await.unwrap();
        let me = tcp.local_addr().unwrap();
        let mut tls = conn
            .connect("localhost".try_into().unwrap(), tcp)
            .await
            .unwrap();
        tls.write_all(OPTIONS.as_bytes()).await.unwrap();
        let (m, from) = tokio::time::timeout(Duration::from_secs(5), in_rx.recv())
            .await
            .unwrap()
            .unwrap();
        assert_eq!((m.as_slice(), from), (OPTIONS.as_bytes(), me));
        assert!(set.send(me, b"SIP/2.0 200 OK\r\nContent-Length: 0\r\n\r\n", false));
        assert_eq!(
            read_some(&mut tls).await,
            b"SIP/2.0 200 OK\r\nContent-Length: 0\r\n\r\n"
        );
        // A plain-TCP client on the TLS port fails the handshake and is counted.
        let mut plain = TcpStream::connect(addr).await.unwrap();
        plain.write_all(OPTIONS.as_bytes()).await.unwrap();
        let mut b = [0u8; 64];
        let _ = tokio::time::timeout(Duration::from_secs(5), plain.read(&mut b)).await;
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert_eq!(set.counts().tls_handshake_failures, 1);
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[tokio::test]
    async fn requests_open_outbound_connections_over_tcp_and_tls() {
        let set = StreamSet::new();
        let (in_tx, mut in_rx) = mpsc::channel(16);
        // The registered flow is gone (nothing open to `gone`): connect to the Contact.
        let gone: SocketAddr = "127.0.0.1:9".parse().unwrap();
        let phone = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let contact = phone.local_addr().unwrap();
        assert!(set.send_request(gone, Some(contact), b"INVITE", Transport::Tcp, &in_tx));
        let (mut s, _) = tokio::time::timeout(Duration::from_secs(5), phone.accept())
            .await
            .unwrap()
            .unwrap();
        assert_eq!(read_some(&mut s).await, b"INVITE");
        // The next request reuses it; what the phone sends comes in as from the Contact.
        assert!(set.send_request(gone, Some(contact), b"BYE", Transport::Tcp, &in_tx));
        assert_eq!(read_some(&mut s).await, b"BYE");
        s.write_all(OPTIONS.as_bytes()).await.unwrap();
        let (m, from) = tokio::time::timeout(Duration::from_secs(5), in_rx.recv())
            .await
            .unwrap()
            .unwrap();
        assert_eq!((m.as_slice(), from), (OPTIONS.as_bytes(), contact));
        // Nobody listening: counted, and the connection entry goes away.
        let dead = {
            let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
            l.local_addr().unwrap()
        };
        assert!(set.send_request(dead, None, b"x", Transport::Tcp, &in_tx));
        tokio::time::sleep(Duration::from_millis(200)).await;
        let n = set.counts();
        assert_eq!(
            (n.open, n.connected, n.connect_failures),
            (1, 1, 1),
            "{n:?}"
        );
        // TLS needs a client configuration.
        assert!(!set.send_request(dead, None, b"x", Transport::Tls, &in_tx));

        // Outbound TLS to a phone whose certificate the configured roots trust.
        let ck = rcgen::generate_simple_self_signed(vec!["127.0.0.1".into()]).unwrap();
        let dir = std::env::temp_dir().join(format!("tandem-tlsout-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let (cert, key) = (dir.join("cert.pem"), dir.join("key.pem"));
        std::fs::write(&cert, ck.cert.pem()).unwrap();
        std::fs::write(&key, ck.key_pair.serialize_pem()).unwrap();
        let acceptor = tokio_rustls::TlsAcceptor::from(tls_config(&cert, &key).unwrap());
        let set = StreamSet::new().with_tls_client(tls_client_config(&cert).unwrap());
        let phone = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let contact = phone.local_addr().unwrap();
        assert!(set.send_request(contact, None, b"INVITE", Transport::Tls, &in_tx));
        let (sock, _) = phone.accept().await.unwrap();
        let mut tls = acceptor.accept(sock).await.unwrap();
        assert_eq!(read_some(&mut tls).await, b"INVITE");
        assert!(tls_client_config(&dir.join("missing.pem")).is_err());
        let _ = std::fs::remove_dir_all(&dir);
    }
}
