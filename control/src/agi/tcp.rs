//! Tokio TCP edge for [`AgiSession`].
//!
//! Two ways to drive a session:
//! - [`run`] owns the session and awaits a channel's media operations inline (a standalone
//!   client, used by tests against AGI libraries);
//! - [`pipe`] only moves bytes: the daemon keeps the session inside the sans-IO call engine
//!   and this task connects, writes what the engine sends and reports what the server says
//!   (or why the connection ended) through a callback.
//!
//! A dead or silent AGI server fails the application cleanly: [`run`] returns
//! [`AgiStatus::Failure`] (Asterisk's `AGISTATUS=FAILURE`), [`pipe`] reports
//! [`PipeEvent::Closed`] with the error, and the dialplan goes on.

use std::future::Future;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::mpsc;

use super::{
    AgiChannel, AgiEnv, AgiError, AgiIo, AgiSession, AgiTicket, AgiUrl, MediaOutcome, MediaRequest,
};
use std::collections::HashMap;

/// A channel that can also perform media operations (play, collect digits).
pub trait AgiMediaChannel: AgiChannel {
    fn perform(&mut self, req: MediaRequest) -> impl Future<Output = MediaOutcome> + Send;
}

pub use super::{AgiStatus, PipeEvent};

/// Runs one FastAGI session. `connect_timeout` bounds the TCP connect; `idle_timeout` bounds
/// the wait for each command from the server.
pub async fn run<C: AgiMediaChannel>(
    url: &AgiUrl,
    env: &AgiEnv,
    chan: &mut C,
    connect_timeout: Duration,
    idle_timeout: Duration,
) -> AgiStatus {
    let target = format!("{}:{}", url.host, url.port);
    let who = target.clone();
    let stream = match tokio::time::timeout(connect_timeout, TcpStream::connect(&target)).await {
        Ok(Ok(s)) => s,
        Ok(Err(e)) => return AgiStatus::Failure(AgiError::Connect(who, e.to_string())),
        Err(_) => return AgiStatus::Failure(AgiError::Connect(who, "connect timed out".into())),
    };
    let _ = stream.set_nodelay(true);
    let (mut rd, mut wr) = stream.into_split();
    let mut s = AgiSession::new(url, env);
    let mut buf = vec![0u8; 4096];
    let io = |e: String| AgiStatus::Failure(AgiError::Io(who.clone(), e));
    loop {
        if let Some(bytes) = s.poll_transmit() {
            if let Err(e) = wr.write_all(&bytes).await {
                return if s.hung_up() {
                    AgiStatus::Hangup
                } else {
                    io(e.to_string())
                };
            }
            continue;
        }
        if let Some(req) = s.poll_media() {
            let outcome = chan.perform(req).await;
            s.complete_media(outcome, chan);
            continue;
        }
        match tokio::time::timeout(idle_timeout, rd.read(&mut buf)).await {
            Ok(Ok(0)) => {
                return if s.hung_up() {
                    AgiStatus::Hangup
                } else {
                    AgiStatus::Success
                };
            }
            Ok(Ok(n)) => s.handle_bytes(&buf[..n], chan),
            Ok(Err(e)) => return io(e.to_string()),
            Err(_) => return io("no command within the idle timeout".into()),
        }
    }
}

/// Connects to `url` and moves bytes both ways until the server closes, the connection
/// fails, or `to_server` is closed by the engine (then the socket is closed after the
/// queued bytes are written).
///
/// `idle_timeout` bounds how long the server may stay silent after we wrote to it (it owes
/// us a command); while it waits for our reply (a long STREAM FILE, an EXEC Dial) no timer
/// runs.
pub async fn pipe(
    url: AgiUrl,
    connect_timeout: Duration,
    idle_timeout: Duration,
    mut to_server: mpsc::UnboundedReceiver<Vec<u8>>,
    mut on_event: impl FnMut(PipeEvent) + Send,
) {
    let target = format!("{}:{}", url.host, url.port);
    let fail = |e: AgiError| PipeEvent::Closed(Some(e));
    let stream = match tokio::time::timeout(connect_timeout, TcpStream::connect(&target)).await {
        Ok(Ok(s)) => s,
        Ok(Err(e)) => return on_event(fail(AgiError::Connect(target, e.to_string()))),
        Err(_) => return on_event(fail(AgiError::Connect(target, "connect timed out".into()))),
    };
    let _ = stream.set_nodelay(true);
    let (mut rd, mut wr) = stream.into_split();
    let mut buf = vec![0u8; 4096];
    // The server owes us a command from the moment we write until it sends something; each
    // turn of the loop is an event that restarts the wait.
    let mut owed = false;
    loop {
        let idle = async {
            if owed {
                tokio::time::sleep(idle_timeout).await
            } else {
                std::future::pending::<()>().await
            }
        };
        tokio::select! {
            out = to_server.recv() => match out {
                Some(bytes) => {
                    if let Err(e) = wr.write_all(&bytes).await {
                        return on_event(fail(AgiError::Io(target, e.to_string())));
                    }
                    owed = true;
                }
                None => {
                    let _ = wr.shutdown().await;
                    return;
                }
            },
            got = rd.read(&mut buf) => match got {
                Ok(0) => return on_event(PipeEvent::Closed(None)),
                Ok(n) => {
                    owed = false;
                    on_event(PipeEvent::Data(buf[..n].to_vec()));
                }
                Err(e) => return on_event(fail(AgiError::Io(target, e.to_string()))),
            },
            _ = idle => {
                return on_event(fail(AgiError::Io(
                    target,
                    format!("no command within {} s", idle_timeout.as_secs()),
                )));
            }
        }
    }
}

/// How long [`AgiEdge`] waits for a FastAGI server to accept the connection.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(3);
/// How long [`AgiEdge`] lets a FastAGI server stay silent when it owes a command.
pub const IDLE_TIMEOUT: Duration = Duration::from_secs(60);

/// The daemon's FastAGI connections: performs the engine's [`AgiIo`] requests with one
/// [`pipe`] task per connection, whose events come back on the channel given to `new`.
#[derive(Debug)]
pub struct AgiEdge {
    writers: HashMap<AgiTicket, mpsc::UnboundedSender<Vec<u8>>>,
    events: mpsc::UnboundedSender<(AgiTicket, PipeEvent)>,
}

impl AgiEdge {
    pub fn new(events: mpsc::UnboundedSender<(AgiTicket, PipeEvent)>) -> AgiEdge {
        AgiEdge {
            writers: HashMap::new(),
            events,
        }
    }

    /// Performs one request (must run inside the tokio runtime).
    pub fn handle(&mut self, io: AgiIo) {
        match io {
            AgiIo::Connect { ticket, url } => {
                let (tx, rx) = mpsc::unbounded_channel();
                self.writers.insert(ticket, tx);
                let events = self.events.clone();
                tokio::spawn(pipe(url, CONNECT_TIMEOUT, IDLE_TIMEOUT, rx, move |ev| {
                    let _ = events.send((ticket, ev));
                }));
            }
            AgiIo::Send { ticket, bytes } => {
                if let Some(w) = self.writers.get(&ticket) {
                    let _ = w.send(bytes);
                }
            }
            AgiIo::Close { ticket } => {
                // Dropping the writer ends the task once it has written what is queued.
                self.writers.remove(&ticket);
            }
        }
    }

    /// Connections open (or opening).
    pub fn open(&self) -> usize {
        self.writers.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rt() -> tokio::runtime::Runtime {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap()
    }

    fn url(port: u16) -> AgiUrl {
        AgiUrl::parse(&format!("agi://127.0.0.1:{port}/s")).unwrap()
    }

    #[test]
    fn pipe_moves_bytes_and_reports_the_close() {
        rt().block_on(async {
            let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
            let port = l.local_addr().unwrap().port();
            let server = tokio::spawn(async move {
                let (mut s, _) = l.accept().await.unwrap();
                let mut got = vec![0u8; 6];
                s.read_exact(&mut got).await.unwrap();
                s.write_all(b"ANSWER\n").await.unwrap();
                got
            });
            let (tx, rx) = mpsc::unbounded_channel();
            tx.send(b"env\n\n\n".to_vec()).unwrap();
            let mut events = Vec::new();
            pipe(
                url(port),
                Duration::from_secs(2),
                Duration::from_secs(2),
                rx,
                |e| events.push(e),
            )
            .await;
            assert_eq!(server.await.unwrap(), b"env\n\n\n");
            assert_eq!(
                events,
                [
                    PipeEvent::Data(b"ANSWER\n".to_vec()),
                    PipeEvent::Closed(None)
                ]
            );
        });
    }

    #[test]
    fn pipe_reports_a_dead_or_silent_server() {
        rt().block_on(async {
            let port = std::net::TcpListener::bind("127.0.0.1:0")
                .unwrap()
                .local_addr()
                .unwrap()
                .port();
            let (_tx, rx) = mpsc::unbounded_channel();
            let mut events = Vec::new();
            let d = Duration::from_secs(1);
            pipe(url(port), d, d, rx, |e| events.push(e)).await;
            assert!(
                matches!(
                    &events[..],
                    [PipeEvent::Closed(Some(AgiError::Connect(..)))]
                ),
                "{events:?}"
            );

            // Accepts, reads the environment, never answers: the idle timeout ends it.
            let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
            let port = l.local_addr().unwrap().port();
            let _server = tokio::spawn(async move {
                let (s, _) = l.accept().await.unwrap();
                tokio::time::sleep(Duration::from_secs(5)).await;
                drop(s);
            });
            let (tx, rx) = mpsc::unbounded_channel();
            tx.send(b"env\n\n".to_vec()).unwrap();
            let mut events = Vec::new();
            pipe(url(port), d, Duration::from_millis(200), rx, |e| {
                events.push(e)
            })
            .await;
            assert!(
                matches!(&events[..], [PipeEvent::Closed(Some(AgiError::Io(..)))]),
                "{events:?}"
            );
        });
    }
}
