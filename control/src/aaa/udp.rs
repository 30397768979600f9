//! Tokio UDP edge for [`RadiusClient`] plus the [`Spool`]: the run loop that owns the socket
//! and the clock.
//!
//! [`Accounting`] is what the call manager talks to: `record()` spools a request durably and
//! hands it to the client; a background task sends it, retries across servers and deletes it
//! from the spool when acknowledged. [`authenticate`]-style requests go through
//! [`RadiusHandle::auth`], which resolves to the server's verdict.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use tokio::net::UdpSocket;
use tokio::sync::{mpsc, oneshot};

use super::client::{ClientConfig, Event, RadiusClient, RequestId};
use super::packet::Attribute;
use super::spool::{Spool, SpoolError, SpoolSeq};

/// The verdict of an Access-Request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AuthOutcome {
    Accept(Vec<Attribute>),
    Reject(Option<String>),
    TimedOut,
}

enum Cmd {
    Auth(
        Vec<Attribute>,
        Option<Vec<u8>>,
        oneshot::Sender<AuthOutcome>,
    ),
    Acct(SpoolSeq, Vec<Attribute>),
}

/// Cloneable handle to a running RADIUS task.
#[derive(Debug, Clone)]
pub struct RadiusHandle {
    tx: mpsc::UnboundedSender<Cmd>,
    spool: Arc<Mutex<Option<Spool>>>,
}

impl std::fmt::Debug for Cmd {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Cmd")
    }
}

#[expect(clippy::disallowed_methods, reason = "the UDP edge owns the clock")]
fn now() -> Instant {
    Instant::now()
}

impl RadiusHandle {
    /// Binds a loopback/any UDP socket at `bind`, opens the spool and queues every record
    /// left in it (in order) before anything new. Spawns the run loop on the current runtime.
    pub async fn start(
        cfg: ClientConfig,
        bind: SocketAddr,
        spool: &Path,
    ) -> Result<RadiusHandle, SpoolError> {
        RadiusHandle::start_with(cfg, bind, Some(spool)).await
    }

    /// [`RadiusHandle::start`] with an optional spool: without one (authentication only),
    /// [`RadiusHandle::record`] fails with [`SpoolError::NoSpool`].
    pub async fn start_with(
        cfg: ClientConfig,
        bind: SocketAddr,
        spool: Option<&Path>,
    ) -> Result<RadiusHandle, SpoolError> {
        let spool = match spool {
            Some(p) => Some(Spool::open(p)?),
            None => None,
        };
        let sock = UdpSocket::bind(bind)
            .await
            .map_err(|source| SpoolError::Io {
                path: "<udp socket>".into(),
                source,
            })?;
        let (tx, rx) = mpsc::unbounded_channel();
        for (seq, attrs) in spool.iter().flat_map(|s| s.pending()) {
            let _ = tx.send(Cmd::Acct(seq, attrs.to_vec()));
        }
        let spool = Arc::new(Mutex::new(spool));
        tokio::spawn(run(RadiusClient::new(cfg), sock, rx, spool.clone()));
        Ok(RadiusHandle { tx, spool })
    }

    /// Sends an Access-Request and waits for the verdict.
    pub async fn auth(&self, attributes: Vec<Attribute>, password: Option<Vec<u8>>) -> AuthOutcome {
        let (tx, rx) = oneshot::channel();
        if self.tx.send(Cmd::Auth(attributes, password, tx)).is_err() {
            return AuthOutcome::TimedOut;
        }
        rx.await.unwrap_or(AuthOutcome::TimedOut)
    }

    /// Spools an accounting request durably, then queues it for sending.
    pub fn record(&self, attributes: Vec<Attribute>) -> Result<SpoolSeq, SpoolError> {
        let seq = {
            let mut s = self.spool.lock().unwrap_or_else(|e| e.into_inner());
            s.as_mut().ok_or(SpoolError::NoSpool)?.append(&attributes)?
        };
        let _ = self.tx.send(Cmd::Acct(seq, attributes));
        Ok(seq)
    }

    /// Records not yet acknowledged by a server.
    pub fn spooled(&self) -> usize {
        self.spool
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .as_ref()
            .map_or(0, Spool::len)
    }
}

async fn run(
    mut client: RadiusClient,
    sock: UdpSocket,
    mut rx: mpsc::UnboundedReceiver<Cmd>,
    spool: Arc<Mutex<Option<Spool>>>,
) {
    let mut auth_waiters: HashMap<RequestId, oneshot::Sender<AuthOutcome>> = HashMap::new();
    let mut acct_seqs: HashMap<RequestId, SpoolSeq> = HashMap::new();
    let mut buf = vec![0u8; 4096];
    loop {
        while let Some(t) = client.poll_transmit() {
            let _ = sock.send_to(&t.payload, t.destination).await;
        }
        while let Some(ev) = client.poll_event() {
            match ev {
                Event::AuthAccepted { id, attributes } => {
                    if let Some(w) = auth_waiters.remove(&id) {
                        let _ = w.send(AuthOutcome::Accept(attributes));
                    }
                }
                Event::AuthRejected { id, reply_message } => {
                    if let Some(w) = auth_waiters.remove(&id) {
                        let _ = w.send(AuthOutcome::Reject(reply_message));
                    }
                }
                Event::AuthTimedOut { id } => {
                    if let Some(w) = auth_waiters.remove(&id) {
                        let _ = w.send(AuthOutcome::TimedOut);
                    }
                }
                Event::AcctAcknowledged { id } => {
                    if let Some(seq) = acct_seqs.remove(&id) {
                        let mut s = spool.lock().unwrap_or_else(|e| e.into_inner());
                        if let Some(Err(e)) = s.as_mut().map(|s| s.ack(seq)) {
                            tracing::warn!("{e}");
                        }
                    }
                }
            }
        }
        let deadline = client.poll_timeout();
        let sleep = async {
            match deadline {
                Some(d) => tokio::time::sleep_until(d.into()).await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            cmd = rx.recv() => match cmd {
                Some(Cmd::Auth(attrs, pw, w)) => {
                    let id = client.send_auth(attrs, pw, now());
                    auth_waiters.insert(id, w);
                }
                Some(Cmd::Acct(seq, attrs)) => {
                    let id = client.send_acct(attrs, now());
                    acct_seqs.insert(id, seq);
                }
                None => return,
            },
            r = sock.recv_from(&mut buf) => {
                if let Ok((n, from)) = r {
                    client.handle_datagram(from, &buf[..n], now());
                }
            }
            () = sleep => client.handle_timeout(now()),
        }
    }
}
